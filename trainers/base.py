"""The base of every CLIP-based trainer: what a method needs and should not write again.

A method is a ``CLIPTrainer`` subclass registered in dassl's ``TRAINER_REGISTRY`` that declares
- ``NODE`` (its config namespace ``cfg.TRAINER.<NODE>``), ``add_config`` (that node's keys and
  defaults) and ``dataset_settings`` (its published per-dataset values);
- ``LEARNER_NAME``, the name its learnable module is registered (and checkpointed) under;
- ``model_factory(cfg, classnames, clip_model) -> nn.Module``, a plain function that builds the
  model around a frozen CLIP; the model's ``learner`` attribute holds every trained tensor;
- ``compute_loss`` (and ``model_inference`` if the model's output is not the logits to score).

The base does the rest: CLIP weights and their checks, precision, freezing, the learnable
parameter report, the optimizer and scheduler, the training step (AMP included), strict learner
checkpoints (ours and the official code's, ``--load-epoch``, ``model-best``) and resuming.
"""

from __future__ import annotations

import os
import os.path as osp
import re
import zipfile
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, CLIPConfig, build_model, config_from_state_dict
from dassl.engine import TrainerX
from dassl.evaluation import ModelSelection
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import UserError, load_checkpoint, load_pretrained_weights
from dassl.utils.torchtools import first_sentence, state_dict_of

from .prompts import set_dataset_template

TASKS = ("B2N", "FS", "CD")  # base-to-novel, few-shot, cross-dataset (and domain generalisation)
SUBSAMPLES = ("all", "base", "new")
PRECISIONS = ("fp16", "fp32", "amp")

ModelFactory = Callable[[CfgNode, list[str], CLIP], nn.Module]


class ConfigError(UserError, ValueError):
    """A config value or checkpoint that does not fit the model; names the key and the fix."""


def checkpoint_file(folder: str, epoch: int | None = None) -> str:
    """``model.pth.tar-<epoch>`` if given, else ``model-best.pth.tar``, else the last epoch saved."""
    if not osp.isdir(folder):
        raise ConfigError(
            f'No checkpoint folder "{folder}": --model-dir must be the output folder of a training run '
            f"(which holds {osp.basename(folder)}/)"
        )
    files = sorted(os.listdir(folder))
    if epoch is not None:
        path = osp.join(folder, f"model.pth.tar-{epoch}")
        if not osp.isfile(path):
            raise ConfigError(f'No checkpoint "{path}" (--load-epoch {epoch}); {folder} holds {files}')
        return path
    if "model-best.pth.tar" in files:
        return osp.join(folder, "model-best.pth.tar")
    epochs = [int(m.group(1)) for f in files if (m := re.fullmatch(r"model\.pth\.tar-(\d+)", f))]
    if not epochs:
        raise ConfigError(f"No model.pth.tar-<epoch> or model-best.pth.tar in {folder} (it holds {files})")
    return osp.join(folder, f"model.pth.tar-{max(epochs)}")


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no argument
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


def grad_scaler() -> torch.amp.GradScaler:
    try:
        return torch.amp.GradScaler("cuda")
    except (AttributeError, TypeError):  # torch < 2.3
        return torch.cuda.amp.GradScaler()


def load_clip(cfg: CfgNode) -> dict[str, Tensor]:
    """CLIP's state dict named by MODEL.BACKBONE (downloaded once) or read from MODEL.BACKBONE.PATH."""
    name, path = cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH
    try:
        state_dict = clip.load_clip_state_dict(name, path)
        config_from_state_dict(state_dict)
    except (OSError, RuntimeError, ValueError, KeyError, NotImplementedError, EOFError, zipfile.BadZipFile) as e:
        source = f"MODEL.BACKBONE.PATH {path}" if path else name
        if path and osp.isfile(path) and not isinstance(e, NotImplementedError):
            raise ConfigError(
                f"cannot get the CLIP weights ({source}): {first_sentence(e)}: the file is truncated or not a CLIP "
                "checkpoint; pass OpenAI's file (e.g. ViT-B-16.pt) or a CLIP state dict saved with torch.save"
            ) from e
        raise ConfigError(
            f"cannot get the CLIP weights ({source}): {e}. "
            "Without network access, pass a local OpenAI checkpoint with MODEL.BACKBONE.PATH /path/to/file.pt"
        ) from e
    return state_dict


class CLIPTrainer(TrainerX):
    """A Dassl ``TrainerX`` around a frozen CLIP and one learnable module (see the module docstring)."""

    NODE: ClassVar[str | None] = None  # cfg.TRAINER.<NODE>; None for a method without settings
    LEARNER_NAME: ClassVar[str] = "prompt_learner"
    # Buffers of the learner rebuilt from the class names (CoOp's token prefix/suffix): a checkpoint
    # of other classes must not override them, and they need not be in a checkpoint.
    REBUILT_KEYS: ClassVar[tuple[str, ...]] = ()
    TRAINABLE: ClassVar[bool] = True  # False: nothing to train (zero-shot), --eval-only needs no --model-dir
    model_factory: ClassVar[ModelFactory]

    # ---- Config: declared by each method, collected by trainers/config.py.
    @classmethod
    def add_config(cls, cfg: CfgNode) -> None:
        """Add the method's node ``cfg.TRAINER.<NODE>`` with the official defaults (keep existing keys)."""

    @classmethod
    def dataset_settings(cls, dataset: str, task: str) -> dict[str, Any]:
        """The method's published per-dataset settings as ``{full config key: value}``."""
        return {}

    @classmethod
    def scores_new_classes(cls, cfg: CfgNode) -> bool:
        """Whether the trained model can score class names it was not trained on (``tools.predict --classnames``).

        True unless a learned tensor holds one slice per trained class: CoOp's class-specific contexts
        (``CSC`` without ``CTX_INIT``, in any method node with those keys); a per-class head says False.
        """
        node = cfg.TRAINER.get(cls.NODE) if cls.NODE else None
        return not (node is not None and node.get("CSC", False) and not node.get("CTX_INIT", ""))

    @property
    def settings(self) -> CfgNode:
        return self.cfg.TRAINER[self.NODE] if self.NODE else CfgNode()

    def check_cfg(self, cfg: CfgNode) -> None:
        """Everything checkable from the config alone, before the data and the model are built."""
        node = cfg.TRAINER.get(self.NODE) if self.NODE else None
        if node is not None and "PREC" in node and node.PREC not in PRECISIONS:
            raise ConfigError(f"TRAINER.{self.NODE}.PREC must be one of {', '.join(PRECISIONS)}, got {node.PREC!r}")
        if cfg.TASK not in TASKS:
            raise ConfigError(f"TASK must be one of {', '.join(TASKS)}, got {cfg.TASK!r}")
        subsample = cfg.DATASET.SUBSAMPLE_CLASSES
        if subsample not in SUBSAMPLES:
            raise ConfigError(f"DATASET.SUBSAMPLE_CLASSES must be one of {', '.join(SUBSAMPLES)}, got {subsample!r}")

    # ---- CLIP.
    def precision(self) -> str:
        """The method's PREC; fp16 and amp need CUDA, elsewhere the run is fp32 (and says so)."""
        prec = self.settings.get("PREC", "fp16")
        if self.device.type != "cuda" and prec != "fp32":
            print(f"PREC {prec} needs CUDA: running in fp32 on {self.device.type}")
            return "fp32"
        return prec

    def check_architecture(self, arch: CLIPConfig) -> None:
        """Hook: method checks of the backbone's shape (e.g. a layer index within its depth)."""

    def load_clip_weights(self) -> dict[str, Tensor]:
        """CLIP's state dict, checked against the config before anything is built from it.

        Called after the dataset is built, so a missing dataset is reported before a download starts.
        """
        cfg = self.cfg
        state_dict = load_clip(cfg)
        arch = config_from_state_dict(state_dict)
        size = tuple(cfg.INPUT.SIZE)
        if size != (arch.image_resolution, arch.image_resolution):
            raise ConfigError(
                f"INPUT.SIZE={size} but the CLIP backbone takes {arch.image_resolution}x{arch.image_resolution} "
                f"images; set INPUT.SIZE ({arch.image_resolution}, {arch.image_resolution})"
            )
        self.check_architecture(arch)
        return state_dict

    def construct_clip(self, state_dict: dict[str, Tensor]) -> CLIP:
        """Hook: the CLIP module. Building it draws the random numbers OpenAI's construction draws,
        as the official trainers' ``clip.build_model`` does; a method whose official code draws
        otherwise replays that instead."""
        return build_model(state_dict)

    def build_clip(self) -> CLIP:
        """The frozen CLIP in the run's precision (OpenAI's weights are fp16: fp32 and amp cast up)."""
        cfg = self.cfg
        source = f", weights: {cfg.MODEL.BACKBONE.PATH}" if cfg.MODEL.BACKBONE.PATH else ""
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME}{source})")
        clip_model = self.construct_clip(self.load_clip_weights())
        clip_model.cut_text = not cfg.EXACT  # prompts cut after the longest EOT: see CLIP
        if self.prec in ("fp32", "amp"):
            clip_model.float()
        return clip_model.requires_grad_(False)

    # ---- Model.
    def build_model(self) -> None:
        cfg = self.cfg
        self.prec = self.precision()
        if getattr(self.dm.dataset, "template", ""):  # a dataset that brings its own prompt (ImageFolder)
            set_dataset_template(cfg.DATASET.NAME, self.dm.dataset.template)
        clip_model = self.build_clip()
        print(f"Building {cfg.TRAINER.NAME}")
        self.model = self.make_model(list(self.dm.dataset.classnames), clip_model)
        self.model.to(self.device)
        self.after_build()
        learner = self.model.learner
        names = [name for name, p in learner.named_parameters() if p.requires_grad]
        print(f"Parameters to be updated: {names}")
        n_clip = sum(p.numel() for p in clip_model.parameters())
        print(f"Learnable parameters: {count_parameters(learner):,} (CLIP: {n_clip:,} frozen)")
        if cfg.MODEL.INIT_WEIGHTS:
            self.init_learner(learner, cfg.MODEL.INIT_WEIGHTS)
        if self.TRAINABLE:
            self.optim = build_optimizer(learner, cfg.OPTIM)
            self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
            self.register_model(self.LEARNER_NAME, learner, self.optim, self.sched)
        self.scaler = grad_scaler() if self.prec == "amp" else None

    def init_learner(self, learner: nn.Module, path: str) -> None:
        """Hook: start from MODEL.INIT_WEIGHTS. Upstream's: copy the tensors whose names and shapes match."""
        load_pretrained_weights(learner, path)

    def make_model(self, classnames: list[str], clip_model: CLIP) -> nn.Module:
        """Hook: the model; by default the method's plain ``model_factory``."""
        return type(self).model_factory(self.cfg, classnames, clip_model)

    def after_build(self) -> None:
        """Hook: work once the model is on its device (e.g. frozen zero-shot features)."""

    # ---- Training and inference.
    def parse_batch_train(self, batch: dict) -> tuple[Tensor, Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def compute_loss(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        """(loss, logits for the printed accuracy) of one batch. Default: cross-entropy of the model's logits."""
        logits = self.model(image)
        return F.cross_entropy(logits, label), logits

    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        with torch.autocast("cuda") if self.prec == "amp" else nullcontext():
            loss, logits = self.compute_loss(image, label)
        self.optim.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            self.detect_anomaly(loss)
            loss.backward()
            self.optim.step()
        summary = {"loss": loss.item(), "acc": compute_accuracy(logits, label)[0].item()}
        if (self.batch_idx + 1) == self.num_batches:
            self.update_lr()
        return summary

    def train(self) -> None:  # type: ignore[override]
        if not self.TRAINABLE:
            raise ConfigError(f"{self.cfg.TRAINER.NAME} has nothing to train: run it with --eval-only")
        super().train()

    # ---- Checkpoints.
    def extra_state(self) -> dict[str, Any]:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        if self.scaler is not None and "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])

    def learner_state(self, learner: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
        """The learner's tensors out of a checkpoint's state dict, checked key by key and shape by shape.

        Accepts ours and the official layout (optionally under ``module.``); the rebuilt buffers are
        taken from the current model. A method whose official files hold more (the frozen CLIP, ...)
        overrides this to pick its tensors out.
        """
        given = {k.removeprefix("module."): v for k, v in state_dict.items() if k not in self.REBUILT_KEYS}
        expected = {k: v for k, v in learner.state_dict().items() if k not in self.REBUILT_KEYS}
        missing = [k for k in expected if k not in given]
        unexpected = [k for k in given if k not in expected]
        if missing or unexpected:
            raise ConfigError(
                f"{source} does not fit {self.cfg.TRAINER.NAME}'s {self.LEARNER_NAME}: missing keys {missing}, "
                f"unexpected keys {unexpected} (a checkpoint of another method or config?)"
            )
        for key, value in expected.items():
            if given[key].shape != value.shape:
                raise ConfigError(
                    f"{source}: {key} has shape {tuple(given[key].shape)}, the model expects {tuple(value.shape)} "
                    "(trained with other settings or another MODEL.BACKBONE?)"
                )
        return {**learner.state_dict(), **given}

    def load_model(self, directory: str, epoch: int | None = None) -> None:
        """Load our checkpoints or the official ones (``--model-dir``, ``--load-epoch``).

        ``epoch`` given: ``model.pth.tar-<epoch>``; else ``model-best.pth.tar`` if there is one
        (upstream Dassl's default), else the last epoch saved (what a default run leaves).
        """
        if not directory:
            print("Note that load_model() is skipped as no pretrained model is given")
            return
        for name in self.get_model_names():
            path = checkpoint_file(osp.join(directory, name), epoch)
            checkpoint = load_checkpoint(path, keys=("state_dict", "epoch"))
            learner = self._models[name]
            learner.load_state_dict(self.learner_state(learner, checkpoint["state_dict"], path))
            print(f'Loaded weights to {name} from "{path}" (epoch = {checkpoint["epoch"]})')

    def load_init_weights(self) -> None:
        """``--eval-only`` without ``--model-dir``: the learner is MODEL.INIT_WEIGHTS, every tensor of it.

        Strict, unlike the name-matching load of ``build_model`` (upstream's, for initialising training):
        weights that fill only part of the learner would score a half-random model.
        """
        path = self.cfg.MODEL.INIT_WEIGHTS
        checkpoint = load_checkpoint(path)
        state_dict = state_dict_of(checkpoint, path)
        learner = self.model.learner
        learner.load_state_dict(self.learner_state(learner, state_dict, f"MODEL.INIT_WEIGHTS {path}"))
        epoch = checkpoint.get("epoch") if isinstance(checkpoint, dict) else None
        self.model_selection = ModelSelection("weights", epoch if isinstance(epoch, int) else None, osp.abspath(path))
        print(f'Evaluating the weights of MODEL.INIT_WEIGHTS "{path}"')

    def adapt_checkpoint(self, name: str, checkpoint: dict[str, Any], path: str) -> dict[str, Any]:
        """Resume from a checkpoint in the official layout too (ours pass unchanged)."""
        learner = self._models[name]
        if checkpoint["state_dict"].keys() == learner.state_dict().keys():
            return checkpoint
        return {**checkpoint, "state_dict": self.learner_state(learner, checkpoint["state_dict"], path)}
