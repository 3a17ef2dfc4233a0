"""The trainer hierarchy: ``TrainerBase`` (models, checkpoints, loop) -> ``SimpleTrainer`` -> ``TrainerX``.

Method trainers override hooks (``build_model``, ``forward_backward``, ``model_inference``,
``parse_batch_*``, ``load_checkpoint_into``, ...). Behaviour that shapes the numbers follows upstream
Dassl: the order of the loop, when checkpoints and tests happen, and that the base classes
never step the LR scheduler — ``forward_backward`` calls ``self.update_lr()`` after the last
batch of each epoch (the CoOp/MMRL convention), so every scheduler step is the trainer's own.
"""
from __future__ import annotations

import datetime
import functools
import os
import os.path as osp
import time
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from tqdm import tqdm
from yacs.config import CfgNode

from dassl import compat
from dassl.data import DataManager
from dassl.engine.checkpoints import checkpoint_path, selection_of
from dassl.engine.preflight import nothing_to_resume
from dassl.engine.resume_state import RESUME_FILE, RESUME_KEYS, rng_state, set_rng_state
from dassl.evaluation import ModelSelection, build_evaluator, run_metadata
from dassl.utils import (
    AverageMeter,
    MetricMeter,
    UserError,
    load_checkpoint,
    load_scheduler_state,
    mkdir_if_missing,
    resume_from_checkpoint,
    save_atomic,
    save_checkpoint,
    tolist_if_not,
)
from dassl.utils.crash_points import crash_point

__all__ = ["TrainerBase", "SimpleTrainer", "TrainerX"]


def _record_selection(trainer: TrainerBase, directory: str, epoch: int | None) -> None:
    """What ``load_model`` records, for an upstream trainer's own ``load_model`` (dassl/compat.py)."""
    names = trainer.get_model_names()
    if names:
        trainer.model_selection = selection_of(checkpoint_path(osp.join(directory, names[0]), epoch), epoch, directory)


class TrainerBase:
    """Registered models with their optimizers/schedulers, checkpoint I/O and the epoch loop."""

    # Buffers a trainer's models rebuild from the class names (CoOp's token prefix/suffix): a checkpoint
    # of other classes must not override them, and they need not be in a checkpoint.
    REBUILT_KEYS: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "load_model" in cls.__dict__:  # upstream-only: an own loader (ours override load_checkpoint_into)
            cls.load_model = compat.records_model_selection(cls.__dict__["load_model"], _record_selection)

    def __init__(self) -> None:
        # The model test() scores, written to metrics.json: set by load_model, after_epoch, after_train.
        self.model_selection = ModelSelection()
        self._models: OrderedDict[str, nn.Module] = OrderedDict()
        self._optims: OrderedDict[str, Any] = OrderedDict()
        self._scheds: OrderedDict[str, Any] = OrderedDict()
        self._writer: Any = None

    def register_model(
        self, name: str = "model", model: nn.Module | None = None, optim: Any = None, sched: Any = None
    ) -> None:
        """Make ``model`` (and its optimizer/scheduler) part of saving, loading, mode switches and LR steps.

        ``name`` is also the checkpoint sub-folder: ``<output_dir>/<name>/model.pth.tar-<epoch>``.
        """
        for attr in ("_models", "_optims", "_scheds"):
            if self.__dict__.get(attr) is None:
                raise AttributeError(f"Cannot register a model before super().__init__() call (missing {attr})")
        if name in self._models:
            raise KeyError(f"Found duplicate model names: {name}")
        self._models[name] = model
        self._optims[name] = optim
        self._scheds[name] = sched

    def get_model_names(self, names: str | list[str] | None = None) -> list[str]:
        registered = list(self._models.keys())
        if names is None:
            return registered
        names = tolist_if_not(names)
        unknown = [n for n in names if n not in registered]
        if unknown:
            raise KeyError(f"Unknown model names {unknown}; registered: {registered}")
        return names

    def save_model(
        self,
        epoch: int,
        directory: str,
        is_best: bool = False,
        val_result: float | None = None,
        model_name: str = "",
    ) -> None:
        """Save every registered model; the stored epoch is ``epoch + 1``, the epoch to resume at."""
        for name in self.get_model_names():
            optim, sched = self._optims[name], self._scheds[name]
            save_checkpoint(
                {
                    "state_dict": self._models[name].state_dict(),
                    "epoch": epoch + 1,
                    "optimizer": optim.state_dict() if optim is not None else None,
                    "scheduler": sched.state_dict() if sched is not None else None,
                    "val_result": val_result,
                },
                osp.join(directory, name),
                is_best=is_best,
                model_name=model_name,
            )

    def resume_model_if_exist(self, directory: str) -> int:
        """Restore every model from ``directory`` if all have a folder there; returns the start epoch."""
        names = self.get_model_names()
        if not all(osp.exists(osp.join(directory, name)) for name in names):
            print("No checkpoint found, train from scratch")
            return 0
        print(f"Found checkpoint at {directory} (will resume training)")
        start_epoch = 0
        for name in names:
            start_epoch = resume_from_checkpoint(
                osp.join(directory, name),
                self._models[name],
                self._optims[name],
                self._scheds[name],
                adapt=functools.partial(self.adapt_checkpoint, name),
            )
        return start_epoch

    def adapt_checkpoint(self, name: str, checkpoint: dict[str, Any], path: str) -> dict[str, Any]:
        """Hook: the checkpoint at ``path`` to resume model ``name`` from, in that model's layout.

        Method trainers override it to accept files of another implementation; here unchanged.
        """
        return checkpoint

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load every registered model from ``<directory>/<name>/`` and record which checkpoint (metrics.json).

        The file is ``checkpoint_path``'s: ``model.pth.tar-<epoch>`` if given, else ``model-best.pth.tar``,
        else the last epoch saved. How a checkpoint goes into a model is ``load_checkpoint_into``'s business.
        """
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        paths = [checkpoint_path(osp.join(directory, name), epoch) for name in self.get_model_names()]
        for name, path in zip(self.get_model_names(), paths):
            self.load_checkpoint_into(name, load_checkpoint(path, keys=("state_dict", "epoch")), path)
        if paths:
            self.model_selection = selection_of(paths[0], epoch, directory)

    def load_checkpoint_into(self, name: str, checkpoint: dict[str, Any], path: str) -> None:
        """Hook: put the checkpoint read from ``path`` into model ``name``.

        Here non-strict, without the ``REBUILT_KEYS``, so a checkpoint holding only trainable tensors
        restores into the full model.
        """
        state_dict = {k: v for k, v in checkpoint["state_dict"].items() if k not in self.REBUILT_KEYS}
        print(f'Loading weights to {name} from "{path}" (epoch = {checkpoint["epoch"]})')
        unexpected = self._models[name].load_state_dict(state_dict, strict=False).unexpected_keys
        if unexpected:
            print(f"Ignored {len(unexpected)} keys the model does not have, e.g. {unexpected[:5]}")

    def set_model_mode(self, mode: str = "train", names: str | list[str] | None = None) -> None:
        if mode not in ("train", "test", "eval"):
            raise KeyError(f"mode must be train, test or eval, got {mode}")
        for name in self.get_model_names(names):
            self._models[name].train(mode == "train")

    def update_lr(self, names: str | list[str] | None = None) -> None:
        """Step the schedulers once: called by ``forward_backward`` after an epoch's last batch."""
        for name in self.get_model_names(names):
            if self._scheds[name] is not None:
                self._scheds[name].step()

    def detect_anomaly(self, loss: torch.Tensor) -> None:
        if not torch.isfinite(loss).all():
            raise FloatingPointError("Loss is infinite or NaN!")

    def init_writer(self, log_dir: str) -> None:
        """Open a TensorBoard writer when tensorboard is installed; without it scalars are dropped."""
        if self._writer is not None:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            print("tensorboard is not installed: scalars are not written")
            return
        print(f"Initialize tensorboard (log_dir={log_dir})")
        self._writer = SummaryWriter(log_dir=log_dir)

    def close_writer(self) -> None:
        if self._writer is not None:
            self._writer.close()

    def write_scalar(self, tag: str, scalar_value: float, global_step: int | None = None) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, scalar_value, global_step)

    def train(self, start_epoch: int, max_epoch: int) -> None:
        """Run epochs ``start_epoch .. max_epoch - 1``; ``before_train`` may move the start (resume)."""
        self.start_epoch = start_epoch
        self.max_epoch = max_epoch
        self.before_train()
        for epoch in range(self.start_epoch, self.max_epoch):
            self.epoch = epoch
            self.before_epoch()
            self.run_epoch()
            self.after_epoch()
        self.after_train()

    def before_train(self) -> None:
        pass

    def after_train(self) -> None:
        pass

    def before_epoch(self) -> None:
        pass

    def after_epoch(self) -> None:
        pass

    def run_epoch(self) -> None:
        raise NotImplementedError

    def batches(self, split: str, loader: Iterable[Any]) -> Iterable[Any]:
        """Hook: the batches of one pass over ``split`` ("train", "val" or "test"), read from ``loader``.

        Both loops read through it, so a trainer can prepare the loader before its iterator starts (and
        its workers copy the dataset) and see each batch before the model does; here the loader itself.
        """
        return loader

    def test(self, split: str | None = None) -> float:
        raise NotImplementedError

    def parse_batch_train(self, batch: dict[str, Any]) -> Any:
        raise NotImplementedError

    def parse_batch_test(self, batch: dict[str, Any]) -> Any:
        raise NotImplementedError

    def forward_backward(self, batch: dict[str, Any]) -> dict[str, float]:
        raise NotImplementedError

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def model_zero_grad(self, names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].zero_grad()

    def model_backward(self, loss: torch.Tensor) -> None:
        self.detect_anomaly(loss)
        loss.backward()

    def model_update(self, names: str | list[str] | None = None) -> None:
        for name in self.get_model_names(names):
            if self._optims[name] is not None:
                self._optims[name].step()

    def model_backward_and_update(self, loss: torch.Tensor, names: str | list[str] | None = None) -> None:
        self.model_zero_grad(names)
        self.model_backward(loss)
        self.model_update(names)


class SimpleTrainer(TrainerBase):
    """Config-driven trainer: data, model, evaluator, checkpoints per ``TRAIN.*`` and tests per ``TEST.*``."""

    def __init__(self, cfg: CfgNode) -> None:
        super().__init__()
        self.check_cfg(cfg)
        self.device = torch.device("cuda" if torch.cuda.is_available() and cfg.USE_CUDA else "cpu")
        self.start_epoch = self.epoch = 0
        self.max_epoch = cfg.OPTIM.MAX_EPOCH
        self.output_dir = cfg.OUTPUT_DIR
        self.cfg = cfg
        self.build_data_loader()
        self.build_model()
        self.build_evaluator()
        self.best_result = -np.inf

    def check_cfg(self, cfg: CfgNode) -> None:
        """Hook: assert the config settings a trainer relies on (runs before anything is built)."""

    def build_data_loader(self) -> None:
        """Set ``dm``, the loaders, ``num_classes``, ``num_source_domains`` and ``lab2cname``."""
        dm = DataManager(self.cfg, custom_tfm_train=self.train_transform())
        self.train_loader_x = dm.train_loader_x
        self.train_loader_u = dm.train_loader_u
        self.val_loader = dm.val_loader
        self.test_loader = dm.test_loader
        self.num_classes = dm.num_classes
        self.num_source_domains = dm.num_source_domains
        self.lab2cname = dm.lab2cname
        self.dm = dm

    def train_transform(self) -> Any:
        """Hook: the training images' transform; None: the one ``INPUT.TRANSFORMS`` names."""
        return None

    def build_model(self) -> None:
        """Hook: build the model, its optimizer and scheduler, and ``register_model`` them."""
        raise NotImplementedError(f"{type(self).__name__} must implement build_model()")

    def build_evaluator(self) -> None:
        self.evaluator = build_evaluator(self.cfg, lab2cname=self.lab2cname)

    def train(self) -> None:  # type: ignore[override]
        super().train(self.start_epoch, self.max_epoch)

    def extra_state(self) -> dict[str, Any]:
        """Hook: trainer state beyond models, optimizers and schedulers that a resumed run needs."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Hook: restore what ``extra_state`` returned."""

    def save_resume_state(self) -> None:
        """Replace ``<output_dir>/resume.pth.tar`` with the state at the start of the next epoch."""
        state = {
            "epoch": self.epoch + 1,
            "models": {
                name: {
                    "state_dict": self._models[name].state_dict(),
                    "optimizer": self._optims[name].state_dict() if self._optims[name] is not None else None,
                    "scheduler": self._scheds[name].state_dict() if self._scheds[name] is not None else None,
                }
                for name in self.get_model_names()
            },
            "best_result": float(self.best_result),
            "extra": self.extra_state(),
            "rng": rng_state(),  # last: nothing may draw between this and the next epoch
        }
        mkdir_if_missing(self.output_dir)
        save_atomic(state, osp.join(self.output_dir, RESUME_FILE))

    def resume_state_if_exist(self, directory: str) -> int | None:
        """Continue from ``<directory>/resume.pth.tar`` if a crashed run left one; returns the start epoch."""
        path = osp.join(directory, RESUME_FILE)
        if not osp.isfile(path):
            return None
        state = load_checkpoint(path, keys=RESUME_KEYS)
        if sorted(state["models"]) != sorted(self.get_model_names()):
            raise UserError(f"{path} holds models {sorted(state['models'])}, this trainer has "
                            f"{self.get_model_names()}: delete it or use another --output-dir")
        for name, saved in state["models"].items():
            self._models[name].load_state_dict(saved["state_dict"])
            if saved["optimizer"] is not None:
                self._optims[name].load_state_dict(saved["optimizer"])
            if saved["scheduler"] is not None:
                load_scheduler_state(self._scheds[name], saved["scheduler"], path)
        self.best_result = state["best_result"]
        self.load_extra_state(state["extra"])
        set_rng_state(state["rng"])
        print(f'Resuming after epoch {state["epoch"]} from "{path}" (models, optimizers, random generators)')
        return state["epoch"]

    def before_train(self) -> None:
        directory = self.cfg.RESUME or self.cfg.OUTPUT_DIR
        start = self.resume_state_if_exist(directory)
        if start is None and self.cfg.RESUME:  # asked to resume: a folder without checkpoints is an error
            missing = [n for n in self.get_model_names() if not osp.isfile(osp.join(directory, n, "checkpoint"))]
            if missing:
                raise UserError(nothing_to_resume(directory, missing))
        self.start_epoch = self.resume_model_if_exist(directory) if start is None else start
        writer_dir = osp.join(self.output_dir, "tensorboard")
        mkdir_if_missing(writer_dir)
        self.init_writer(writer_dir)
        self.time_start = time.time()

    def after_train(self) -> None:
        print("Finish training")
        if not self.cfg.TEST.NO_TEST:
            self.deploy_final_model()
            self.test()
        elapsed = datetime.timedelta(seconds=round(time.time() - self.time_start))
        print(f"Elapsed: {elapsed}")
        resume_file = osp.join(self.output_dir, RESUME_FILE)
        if osp.isfile(resume_file):  # finished: keep only the checkpoints the config asks for
            os.remove(resume_file)
        self.close_writer()

    def deploy_final_model(self) -> None:
        """Hook: put the model the final test scores in place (and record which one it is)."""
        if self.cfg.TEST.FINAL_MODEL == "best_val":
            print("Deploy the model with the best val performance")
            self.load_model(self.output_dir)  # records ModelSelection("best_val", <its epoch>)
        else:
            print("Deploy the last-epoch model")
            self.model_selection = ModelSelection("last", self.max_epoch)

    def after_epoch(self) -> None:
        """With ``best_val``: validate and keep the best; save every CHECKPOINT_FREQ epochs and the last."""
        last_epoch = self.epoch + 1 == self.max_epoch
        freq = self.cfg.TRAIN.CHECKPOINT_FREQ
        meet_checkpoint_freq = freq > 0 and (self.epoch + 1) % freq == 0

        if not self.cfg.TEST.NO_TEST and self.cfg.TEST.FINAL_MODEL == "best_val":
            self.model_selection = ModelSelection("epoch", self.epoch + 1)
            curr_result = self.test(split="val")
            if curr_result > self.best_result:
                self.best_result = curr_result
                self.save_model(self.epoch, self.output_dir, val_result=curr_result, model_name="model-best.pth.tar")

        if meet_checkpoint_freq or last_epoch:
            self.save_model(self.epoch, self.output_dir)
        self.save_resume_state()

    @torch.no_grad()
    def test(self, split: str | None = None) -> float:
        """Evaluate on ``split`` (default TEST.SPLIT; "val" falls back to test without a val set); returns accuracy.

        The evaluator prints upstream's result block and writes ``<OUTPUT_DIR>/metrics.json`` with
        the run's metadata (``evaluation_run_info``).
        """
        self.set_model_mode("eval")
        self.evaluator.reset()
        split = split or self.cfg.TEST.SPLIT
        if split == "val" and self.val_loader is not None:
            data_loader = self.val_loader
        else:
            split = "test"
            data_loader = self.test_loader
        print(f"Evaluate on the *{split}* set")

        for batch in tqdm(self.batches(split, data_loader), total=len(data_loader)):
            input, label = self.parse_batch_test(batch)
            self.evaluator.process(self.model_inference(input), label)
            crash_point("test_batch")

        results = compat.evaluate(self.evaluator, self.evaluation_run_info(split))
        for k, v in results.items():
            self.write_scalar(f"{split}/{k}", v, self.epoch)
        return list(results.values())[0]

    def evaluation_run_info(self, split: str) -> dict[str, Any]:
        """What metrics.json records besides the numbers: config, phase, evaluated model, split file."""
        dataset = getattr(getattr(self, "dm", None), "dataset", None)
        return run_metadata(self.cfg, split, getattr(self, "model_selection", None), dataset)

    def model_inference(self, input: torch.Tensor) -> torch.Tensor:
        return self.model(input)

    def parse_batch_test(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def get_current_lr(self, names: str | list[str] | None = None) -> float:
        """LR of the first param group of the first (or first named) model's optimizer."""
        name = self.get_model_names(names)[0]
        return self._optims[name].param_groups[0]["lr"]


class TrainerX(SimpleTrainer):
    """Trainer on labelled data (``train_loader_x``) only."""

    def run_epoch(self) -> None:
        self.set_model_mode("train")
        losses = MetricMeter()
        batch_time = AverageMeter()
        data_time = AverageMeter()
        self.num_batches = len(self.train_loader_x)
        print_freq = self.cfg.TRAIN.PRINT_FREQ

        end = time.time()
        for batch_idx, batch in enumerate(self.batches("train", self.train_loader_x)):
            self.batch_idx = batch_idx
            data_time.update(time.time() - end)
            loss_summary = self.forward_backward(batch)
            crash_point("train_batch")
            batch_time.update(time.time() - end)
            losses.update(loss_summary)

            if (self.batch_idx + 1) % print_freq == 0 or self.num_batches < print_freq:
                nb_remain = self.num_batches - self.batch_idx - 1 + (self.max_epoch - self.epoch - 1) * self.num_batches
                eta = datetime.timedelta(seconds=int(batch_time.avg * nb_remain))
                print(
                    f"epoch [{self.epoch + 1}/{self.max_epoch}] "
                    f"batch [{self.batch_idx + 1}/{self.num_batches}] "
                    f"time {batch_time.val:.3f} ({batch_time.avg:.3f}) "
                    f"data {data_time.val:.3f} ({data_time.avg:.3f}) "
                    f"{losses} "
                    f"lr {self.get_current_lr():.4e} "
                    f"eta {eta}"
                )

            n_iter = self.epoch * self.num_batches + self.batch_idx
            for name, meter in losses.meters.items():
                self.write_scalar("train/" + name, meter.avg, n_iter)
            self.write_scalar("train/lr", self.get_current_lr(), n_iter)
            end = time.time()

    def parse_batch_train(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device), batch["domain"].to(self.device)
