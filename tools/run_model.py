"""A finished run as a model: ``load_run(RUN_DIR)`` rebuilds it from the folder alone, without its dataset.

A run folder written by ``train.py`` holds ``config.yaml`` and ``classnames.txt`` (dassl/engine/run_record.py)
and, for a training run, the learner's checkpoints (``<learner>/model.pth.tar-<epoch>``). An evaluation
run (``--eval-only --model-dir``) holds no checkpoint: its ``metrics.json`` names the folder and epoch it
loaded, and the model is loaded from there. Methods with nothing to train (zero-shot CLIP) need none.

    model = load_run("output/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1")
    probs = model([Image.open("a.jpg")])            # (1, n_classes), the run's test transform applied
    model.predict([Image.open("a.jpg")], topk=3)    # [[("banded", 0.91), ...]]

The model is the run's trainer built around a stand-in for its dataset (the class names and, for
ImageFolder, the prompt template from the config); scoring goes through the trainer's own
``model_inference``, so predictions are what the run's evaluation computes on the same images.
"""
from __future__ import annotations

import contextlib
import io
import os.path as osp
from collections.abc import Sequence
from types import SimpleNamespace

import torch
from PIL import Image
from torch import Tensor
from yacs.config import CfgNode

import datasets  # noqa: F401  (registers the datasets)
from dassl.config import get_cfg_default
from dassl.config.config_file import merge_config_file
from dassl.data.datasets import DATASET_REGISTRY
from dassl.data.transforms import build_transform
from dassl.engine import TRAINER_REGISTRY
from dassl.engine.run_record import CLASSNAMES_FILE, CONFIG_FILE, read_classnames
from dassl.evaluation.metrics_file import METRICS_FILE, read_metrics
from dassl.utils import UserError
from datasets.folder import ImageFolder
from trainers.base import CLIPTrainer
from trainers.config import extend_cfg, keep_trainer_node

ImageInput = Image.Image | Tensor | Sequence[Image.Image]


class RunError(UserError):
    """A run folder or an input the model cannot use; one line naming the file and the fix."""


def run_config(run_dir: str) -> CfgNode:
    """The run's resolved config, read from ``config.yaml`` over today's defaults."""
    path = osp.join(run_dir, CONFIG_FILE)
    if not osp.isfile(path):
        raise RunError(
            f"{path}: no such file; runs write it since the run record was added: evaluate the checkpoint once "
            f"with train.py --eval-only --model-dir {run_dir} (same config) and pass that output folder"
        )
    cfg = get_cfg_default()
    extend_cfg(cfg)
    merge_config_file(cfg, path, "the run's config")  # a fault names the file and line
    if cfg.TRAINER.NAME not in TRAINER_REGISTRY:
        raise RunError(f"{path}: TRAINER.NAME {cfg.TRAINER.NAME!r} is not a registered trainer")
    if cfg.DATASET.NAME not in DATASET_REGISTRY:
        raise RunError(f"{path}: DATASET.NAME {cfg.DATASET.NAME!r} is not a registered dataset")
    keep_trainer_node(cfg)  # as train.py: the method's own keys (a shared node's other methods add theirs)
    return cfg


def run_classnames(run_dir: str) -> list[str]:
    path = osp.join(run_dir, CLASSNAMES_FILE)
    if not osp.isfile(path):
        raise RunError(f"{path}: no such file (the run's class names, written by train.py beside log.txt)")
    return read_classnames(path)


def checkpoint_source(run_dir: str, trainer_cls: type[CLIPTrainer], epoch: int | None) -> tuple[str, int | None]:
    """(folder holding the learner's checkpoints, epoch or None for the default) for ``run_dir``."""
    if not getattr(trainer_cls, "TRAINABLE", True) or osp.isdir(osp.join(run_dir, trainer_cls.LEARNER_NAME)):
        return run_dir, epoch
    metrics = osp.join(run_dir, METRICS_FILE)
    model = (read_metrics(metrics).get("model") or {}) if osp.isfile(metrics) else {}
    if model.get("selection") == "weights":  # --eval-only of MODEL.INIT_WEIGHTS: the run's config names the file
        return "", None
    source = model.get("model_dir")
    if not source or osp.abspath(source) == osp.abspath(run_dir):
        raise RunError(
            f"{run_dir} holds no checkpoint ({trainer_cls.LEARNER_NAME}/) and its metrics.json names no model "
            "folder: pass the training run's output folder"
        )
    if epoch is None and model.get("selection") == "epoch":
        epoch = model.get("epoch")
    return source, epoch


class RunModel:
    """A run's trained model: PIL images (the run's test transform) or preprocessed tensors in, scores out."""

    def __init__(self, trainer: CLIPTrainer, classnames: list[str]) -> None:
        self.trainer = trainer
        self.cfg: CfgNode = trainer.cfg
        self.classnames = classnames
        self.device: torch.device = trainer.device
        with contextlib.redirect_stdout(io.StringIO()):
            self.preprocess = build_transform(self.cfg, is_train=False)
        trainer.set_model_mode("eval")

    def batch(self, images: ImageInput) -> Tensor:
        """One input batch: PIL images through the test transform, tensors (N, 3, H, W) as they are."""
        if isinstance(images, Image.Image):
            images = [images]
        if isinstance(images, Tensor):
            batch = images.unsqueeze(0) if images.dim() == 3 else images
            size = tuple(self.cfg.INPUT.SIZE)
            if batch.dim() != 4 or batch.shape[1] != 3 or tuple(batch.shape[2:]) != size:
                raise RunError(
                    f"a tensor of shape {tuple(images.shape)}: tensors are taken as preprocessed images "
                    f"(N, 3, {size[0]}, {size[1]}); pass PIL images to have the run's test transform applied"
                )
        else:
            batch = torch.stack([self.preprocess(image.convert("RGB")) for image in images])
        return batch.to(self.device)

    @torch.no_grad()
    def logits(self, images: ImageInput) -> Tensor:
        """The scores the run's evaluation computes (``model_inference``), as float32 on the CPU."""
        return self.trainer.model_inference(self.batch(images)).float().cpu()

    def __call__(self, images: ImageInput) -> Tensor:
        """Class probabilities (N, n_classes): the softmax of the logits."""
        return self.logits(images).softmax(dim=-1)

    def predict(self, images: ImageInput, topk: int = 5) -> list[list[tuple[str, float]]]:
        """The ``topk`` most probable classes of each image, as (class name, probability), best first."""
        probs, labels = self(images).topk(min(topk, len(self.classnames)), dim=-1)
        return [
            [(self.classnames[i], float(p)) for p, i in zip(row_p.tolist(), row_i.tolist())]
            for row_p, row_i in zip(probs, labels)
        ]


def _without_dataset(cls: type[CLIPTrainer], classnames: list[str], template: str) -> type[CLIPTrainer]:
    """The trainer class with a stand-in for its data manager: the class names, no images."""

    class RunTrainer(cls):  # type: ignore[misc, valid-type]
        def build_data_loader(self) -> None:
            self.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=list(classnames), template=template))
            self.train_loader_x = self.train_loader_u = self.val_loader = self.test_loader = None
            self.num_classes = len(classnames)
            self.num_source_domains = 1
            self.lab2cname = dict(enumerate(classnames))

    RunTrainer.__name__ = RunTrainer.__qualname__ = cls.__name__
    return RunTrainer


def build_run_trainer(cfg: CfgNode, classnames: list[str], verbose: bool = False) -> CLIPTrainer:
    """The trainer of ``cfg`` built for ``classnames`` without reading its dataset (nothing loaded yet)."""
    cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    template = cfg.DATASET.FOLDER.TEMPLATE if DATASET_REGISTRY.get(cfg.DATASET.NAME) is ImageFolder else ""
    with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()):
        return _without_dataset(cls, classnames, template)(cfg)


def load_run(
    run_dir: str,
    classnames: Sequence[str] | None = None,
    epoch: int | None = None,
    device: str | None = None,
    verbose: bool = False,
) -> RunModel:
    """The model of a run folder, its checkpoint loaded.

    ``classnames``: score these classes instead of the run's (methods whose learned tensors do not depend
    on the class list; scored as the protocols score novel classes). ``epoch``: that checkpoint instead of
    the run's default (best on val if saved, else the last). ``device``: "cpu", "cuda" (default: CUDA when
    there is one). ``verbose``: show the trainer's build output.
    """
    if not osp.isdir(run_dir):
        raise RunError(f"{run_dir}: no such directory (pass the output folder of a train.py run)")
    cfg = run_config(run_dir)
    cls = TRAINER_REGISTRY.get(cfg.TRAINER.NAME)
    names = run_classnames(run_dir)
    if classnames is not None:
        if not cls.scores_new_classes(cfg):
            raise RunError(
                f"{cfg.TRAINER.NAME} cannot score classes it was not trained on (its learned tensors hold one "
                f"slice per trained class): predict without new class names"
            )
        names = list(classnames)
        # New classes are scored as the base-to-novel protocol scores novel ones (MMRL: class-token logits).
        cfg.merge_from_list(["TASK", "B2N", "DATASET.SUBSAMPLE_CLASSES", "new"])
    if not names:
        raise RunError(f"{run_dir}: no class names to score")
    if device is not None:
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise RunError(f"device {device!r}: CUDA is not available here; use cpu")
        cfg.USE_CUDA = device.startswith("cuda")
    cfg.freeze()
    source, epoch = checkpoint_source(run_dir, cls, epoch)
    trainer = build_run_trainer(cfg, names, verbose)
    if getattr(trainer, "TRAINABLE", True):
        with contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO()):
            if source:
                trainer.load_model(source, epoch=epoch)
            else:
                trainer.load_init_weights()
    return RunModel(trainer, names)

