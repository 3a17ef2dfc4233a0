"""Train or evaluate a trainer on a dataset: the official MMRL / CoOp command line.

    python train.py --root DATA --seed 1 --trainer MMRL \
        --dataset-config-file configs/datasets/dtd.yaml \
        --config-file configs/trainers/MMRL/vit_b16.yaml \
        --output-dir output/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1 \
        DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base TASK B2N

Where each setting comes from, and in which order: docs/configuration.md.
"""
from __future__ import annotations

import argparse
import errno
import os
import os.path as osp
import sys
import tempfile

import torch
from yacs.config import CfgNode

import datasets  # noqa: F401  (registers the datasets)
import trainers  # noqa: F401  (registers the trainers)
from dassl import compat
from dassl.config import get_cfg_default
from dassl.config.checks import check_cfg_values
from dassl.config.config_file import merge_config_file
from dassl.data.datasets import DATASET_REGISTRY
from dassl.engine import TRAINER_REGISTRY, TrainerBase, build_trainer
from dassl.engine.preflight import check_input_files
from dassl.engine.run_record import write_run_record
from dassl.utils import UserError, collect_env_info, remove_stale_temps, set_random_seed, setup_logger
from tools.run_lock import LOCKED_EXIT, FolderLocked, RunLock
from trainers.config import apply_dataset_layer, dataset_layer, extend_cfg, flat_config, keep_trainer_node, yaml_keys


class UsageError(UserError):
    """A mistake in the command line or config, reported as one line without a traceback."""


def print_args(args: argparse.Namespace, cfg: CfgNode) -> None:
    print("***************\n** Arguments **\n***************")
    for key in sorted(vars(args)):
        print(f"{key}: {getattr(args, key)}")
    print("************\n** Config **\n************")
    print(cfg)


def reset_cfg(cfg: CfgNode, args: argparse.Namespace) -> None:
    """Copy the explicit command-line flags into the config (upstream's reset_cfg)."""
    if args.train_epoch:
        cfg.OPTIM.MAX_EPOCH = args.train_epoch
    if args.root:
        cfg.DATASET.ROOT = args.root
    if args.output_dir:
        cfg.OUTPUT_DIR = args.output_dir
    if args.resume:
        cfg.RESUME = args.resume
    if args.seed is not None and args.seed >= 0:
        cfg.SEED = args.seed
    if args.source_domains:
        cfg.DATASET.SOURCE_DOMAINS = args.source_domains
    if args.target_domains:
        cfg.DATASET.TARGET_DOMAINS = args.target_domains
    if args.transforms:
        cfg.INPUT.TRANSFORMS = args.transforms
    if args.trainer:
        cfg.TRAINER.NAME = args.trainer
    if args.backbone:
        cfg.MODEL.BACKBONE.NAME = args.backbone
    compat.apply_upstream_flags(cfg, args)


def _merge_file(cfg: CfgNode, path: str, flag: str) -> None:
    merge_config_file(cfg, path, flag)


def _task_from_opts(opts: list[str], default: str) -> str:
    """TASK selects the per-dataset settings, which are applied before the opts themselves."""
    for key, value in zip(opts[0::2], opts[1::2]):
        if key == "TASK":
            return value
    return default


def configure(args: argparse.Namespace) -> tuple[CfgNode, list[str]]:
    """The run's config, and the lines saying what the per-dataset layer changed (docs/configuration.md)."""
    cfg = get_cfg_default()
    extend_cfg(cfg)
    set_by: dict[str, str] = {}  # key -> the file or flag that set it last
    for path, flag in ((args.dataset_config_file, "--dataset-config-file"), (args.config_file, "--config-file")):
        if path:
            _merge_file(cfg, path, flag)
            set_by.update(dict.fromkeys(yaml_keys(path), path))
    before = flat_config(cfg)
    reset_cfg(cfg, args)
    set_by.update({k: "a command-line flag" for k, v in flat_config(cfg).items() if before[k] != v})
    opts = list(args.opts or [])
    if opts and opts[0] == "--":
        opts = opts[1:]
    if len(opts) % 2:
        raise UsageError(f"trailing options must be KEY VALUE pairs, got an odd number: {opts}")
    report: list[str] = []
    try:
        layer = dataset_layer(cfg.TRAINER.NAME, cfg.DATASET.NAME, _task_from_opts(opts, cfg.TASK))
        if layer is not None:
            report = apply_dataset_layer(cfg, layer, set_by, opts)
        cfg.merge_from_list(opts)
    except (KeyError, ValueError, AssertionError) as e:
        raise UsageError(f"bad config option: {e}") from e
    check_names(cfg)
    keep_trainer_node(cfg)
    check_cfg_values(cfg)
    cfg.freeze()
    return cfg, report


def setup_cfg(args: argparse.Namespace) -> CfgNode:
    return configure(args)[0]


def check_names(cfg: CfgNode) -> None:
    """Fail on an unknown trainer or dataset, or a dataset's bad settings, before any data or weights are touched."""
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY:
        known = ", ".join(sorted(TRAINER_REGISTRY.registered_names()))
        raise UsageError(f"unknown trainer '{cfg.TRAINER.NAME}' (--trainer); available: {known}")
    if cfg.DATASET.NAME not in DATASET_REGISTRY:
        known = ", ".join(sorted(DATASET_REGISTRY.registered_names()))
        raise UsageError(
            f"unknown dataset '{cfg.DATASET.NAME}' (DATASET.NAME, set by --dataset-config-file); available: {known}"
        )
    check_dataset = getattr(DATASET_REGISTRY.get(cfg.DATASET.NAME), "check_cfg", None)
    if check_dataset is not None:  # e.g. the held-out domain of a DG dataset (--target-domains, DATASET.ID)
        check_dataset(cfg)


def check_writable(directory: str) -> None:
    """The output folder must take files (log, checkpoints, results) before hours of training start."""
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UsageError(
            f"cannot write to --output-dir {directory}: {e.strerror or e}; choose a folder you can write to"
        ) from e


def error_line(e: BaseException) -> str:
    """One line for a failure the user can fix; the errors a data loader worker re-raises carry the
    worker's traceback in their message, of which only the last line is the user's business."""
    if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
        where = e.filename or "output files"
        return f"no space left on the device while writing {where}: free space or use another --output-dir"
    if isinstance(e, OSError) and e.errno in (errno.EACCES, errno.EROFS, errno.EPERM):
        return f"permission denied: {e.filename}: make it writable or choose another folder"
    message = str(e)
    if "Original Traceback" in message:
        message = message.strip().splitlines()[-1].split(": ", 1)[-1]
    return message


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--root", type=str, default="", help="folder holding the datasets")
    p.add_argument("--output-dir", type=str, default="", help="output directory")
    p.add_argument("--resume", type=str, default="", help="checkpoint directory to resume training from")
    p.add_argument("--seed", type=int, default=-1, help="a non-negative value fixes all random seeds")
    p.add_argument("--source-domains", type=str, nargs="+", help="source domains for DA/DG")
    p.add_argument("--target-domains", type=str, nargs="+", help="target domains for DA/DG")
    p.add_argument("--transforms", type=str, nargs="+", help="data augmentation methods")
    p.add_argument("--config-file", type=str, default="", help="trainer config file")
    p.add_argument("--dataset-config-file", type=str, default="", help="dataset config file")
    p.add_argument("--trainer", type=str, default="", help="trainer name (see README: methods)")
    p.add_argument("--backbone", type=str, default="", help="backbone name, e.g. ViT-B/16")
    p.add_argument("--eval-only", action="store_true", help="evaluation only")
    p.add_argument("--model-dir", type=str, default="", help="load the model from this directory (eval-only)")
    p.add_argument("--train-epoch", type=int, help="override OPTIM.MAX_EPOCH")
    p.add_argument("--load-epoch", type=int, help="checkpoint epoch to evaluate (default: last / best)")
    p.add_argument("--no-train", action="store_true", help="build everything but do not train")
    compat.add_upstream_flags(p)
    p.add_argument("opts", default=None, nargs=argparse.REMAINDER, help="config overrides as KEY VALUE pairs")
    return p


def lock_output_dir(directory: str) -> RunLock:
    """Hold the output folder for this process's lifetime: a second run on it stops (tools/run_lock.py)."""
    try:
        lock = RunLock(directory).acquire()
    except OSError as e:
        raise UsageError(
            f"cannot write to --output-dir {directory}: {e.strerror or e}; choose a folder you can write to"
        ) from e
    removed = remove_stale_temps(directory)
    if removed:
        print(f"Removed {len(removed)} unfinished temp file(s) of a killed run in {directory}")
    return lock


def main(args: argparse.Namespace) -> TrainerBase:
    """One run: checks, the output folder's lock (held until the process ends), then train or evaluate.

    Returns the trainer, so in-process callers (tests, notebooks) can look at what was run.
    """
    cfg, dataset_settings = configure(args)
    trainable = getattr(TRAINER_REGISTRY.get(cfg.TRAINER.NAME), "TRAINABLE", True)
    if args.eval_only and not args.model_dir and trainable and not cfg.MODEL.INIT_WEIGHTS:
        raise UsageError("--eval-only needs --model-dir (the output folder of a training run)")
    if not args.eval_only and not trainable and not args.no_train:
        raise UsageError(f"{cfg.TRAINER.NAME} has nothing to train: run it with --eval-only")
    if args.model_dir and not osp.isdir(args.model_dir):
        raise UsageError(f"--model-dir {args.model_dir}: no such directory")
    check_input_files(cfg)
    lock_output_dir(cfg.OUTPUT_DIR)  # before anything is written into it
    check_writable(cfg.OUTPUT_DIR)
    if cfg.SEED >= 0:
        print(f"Setting fixed seed: {cfg.SEED}")
        set_random_seed(cfg.SEED)
    setup_logger(cfg.OUTPUT_DIR)
    if torch.cuda.is_available() and cfg.USE_CUDA:
        torch.backends.cudnn.benchmark = True
    print_args(args, cfg)
    if dataset_settings:
        print("\n".join(dataset_settings))
    print("Collecting env info ...")
    print(f"** System info **\n{collect_env_info()}\n")

    trainer = build_trainer(cfg)
    write_run_record(cfg.OUTPUT_DIR, cfg, trainer.dm.dataset.classnames)
    if args.eval_only:
        if not args.model_dir and cfg.MODEL.INIT_WEIGHTS and trainable:
            trainer.load_init_weights()
        else:
            trainer.load_model(args.model_dir, epoch=args.load_epoch)
        trainer.test()
        return trainer
    if not args.no_train:
        trainer.train()
    return trainer


def cli() -> None:
    """The command line: a mistake the user can fix ends in one ``error:`` line; a held folder in exit code 75."""
    try:
        main(build_parser().parse_args())
    except FolderLocked as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(LOCKED_EXIT)
    except UserError as e:
        sys.exit(f"error: {error_line(e)}")
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EROFS, errno.EPERM):
            raise
        sys.exit(f"error: {error_line(e)}")


if __name__ == "__main__":
    cli()
