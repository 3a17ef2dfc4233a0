"""The base of every CLIP-based trainer: what a method needs and should not write again.

A method is a ``CLIPTrainer`` subclass registered in dassl's ``TRAINER_REGISTRY`` that declares
- ``NODE`` and ``DEFAULTS``: its config node ``cfg.TRAINER.<NODE>`` and that node's keys with the
  official defaults (its per-dataset values, if any, are ``configs/trainers/<TRAINER>/datasets.yaml``);
  ``EXTRA_KEYS`` only for keys its official files set outside the node;
- ``LEARNER_NAME``, the name its learnable module is registered (and checkpointed) under;
- ``model_factory(cfg, classnames, clip_model, *, template=None) -> nn.Module``, a plain function that
  builds the model around a frozen CLIP (``template``: the dataset's own prompt template, if it brings
  one); the model's ``learner`` attribute holds every trained tensor;
- ``compute_loss`` (and ``model_inference`` if the model's output is not the logits to score).

Only to match its official code bit for bit, a method also names plain functions of its ``official.py``
(``replay_construction``, ``replay_after_factory``, ``filter_state_dict``, ``filter_optimizer_state``), and
for the benchmark of the official test step it states that step (``OFFICIAL_TEST_STEP``, with
``official_test_step`` where its model's forward does less than the official one).

The base does the rest: CLIP weights and their checks, precision, freezing, the learnable
parameter report, the optimizer and scheduler, the training step (AMP included), strict learner
checkpoints (ours and the official code's, ``--load-epoch``, ``model-best``) and resuming.
"""

from __future__ import annotations

import functools
import operator
import os.path as osp
import pickle
import zipfile
from collections.abc import Callable, Iterable, Mapping
from contextlib import nullcontext
from typing import Any, ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, VIT, CLIPConfig, build_model, config_from_state_dict
from dassl.engine import TrainerX
from dassl.evaluation import ModelSelection
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import UserError, load_checkpoint, load_pretrained_weights
from dassl.utils.torchtools import first_sentence, state_dict_of

from .feature_cache import FeatureCache
from .replay import build_clip_without_drawing

TASKS = ("B2N", "FS", "CD")  # base-to-novel, few-shot, cross-dataset (and domain generalisation)
SUBSAMPLES = ("all", "base", "new")
PRECISIONS = ("fp16", "fp32", "amp")

ModelFactory = Callable[..., nn.Module]
LossTerms = Tensor | Mapping[str, Tensor]  # a loss, or named terms summed in order (each printed)
# Parity with the official code (plain functions of a method's official.py):
ReplayConstruction = Callable[[CLIP, CfgNode], Any]  # (CLIP built without drawing, settings) -> factory's init
Replay = Callable[[CLIP, CfgNode], None]  # draws after the factory, as the official build does
StateFilter = Callable[[Mapping[str, Tensor], nn.Module], dict[str, Tensor]]  # official layout -> learner's keys
OptimizerFilter = Callable[[Mapping[str, Any] | None, Mapping[str, Tensor], nn.Module, str], Any]


class ConfigError(UserError, ValueError):
    """A config value or checkpoint that does not fit the model; names the key and the fix."""


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def grad_scaler() -> torch.amp.GradScaler:
    try:
        return torch.amp.GradScaler("cuda")
    except (AttributeError, TypeError):  # torch < 2.3
        return torch.cuda.amp.GradScaler()


def load_clip(cfg: CfgNode) -> dict[str, Tensor]:
    """CLIP's state dict read from MODEL.BACKBONE.PATH, or named by MODEL.BACKBONE.NAME (downloaded once)."""
    name, path = cfg.MODEL.BACKBONE.NAME, cfg.MODEL.BACKBONE.PATH
    if path:
        if not osp.isfile(path):
            raise ConfigError(
                f"MODEL.BACKBONE.PATH {path} does not exist: fix the path, or leave it empty to download {name}"
            )
        try:
            state_dict = clip.load_state_dict_from_file(path)
            config_from_state_dict(state_dict)
        except (OSError, RuntimeError, ValueError, KeyError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as e:
            raise ConfigError(
                f"cannot get the CLIP weights (MODEL.BACKBONE.PATH {path}): {first_sentence(e)}: the file is "
                "truncated or not a CLIP checkpoint; pass OpenAI's file (e.g. ViT-B-16.pt) or a CLIP state dict "
                "saved with torch.save"
            ) from e
        return state_dict
    if clip.model_family(name) is None:
        raise ConfigError(
            f"MODEL.BACKBONE.NAME {name!r} is not a published CLIP ({', '.join(clip.available_models())}); "
            "name one of them, or pass a weights file with MODEL.BACKBONE.PATH"
        )
    try:
        return clip.load_clip_state_dict(name)
    except (OSError, RuntimeError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise ConfigError(
            f"cannot get the CLIP weights of {name}: {str(e).rstrip('.')}. Without network access, download "
            f"{name}'s file elsewhere and pass it with MODEL.BACKBONE.PATH /path/to/file.pt"
        ) from e


class CLIPTrainer(TrainerX):
    """A Dassl ``TrainerX`` around a frozen CLIP and one learnable module (see the module docstring)."""

    NODE: ClassVar[str | None] = None  # cfg.TRAINER.<NODE>; None for a method without settings
    # The node's keys with the official defaults (the YAML files set the values used). A method that
    # shares another's node (KgCoOp on CoOp's TRAINER.COOP) names it and extends its DEFAULTS.
    DEFAULTS: ClassVar[Mapping[str, Any]] = {}
    # Full keys outside the node that the official config files or scripts set (ProVP's OPTIM.USE_REF), with
    # their defaults: added to the config like the node, and dropped from the runs of other methods.
    EXTRA_KEYS: ClassVar[Mapping[str, Any]] = {}
    LEARNER_NAME: ClassVar[str] = "prompt_learner"
    TRAINABLE: ClassVar[bool] = True  # False: nothing to train (zero-shot), --eval-only needs no --model-dir
    # Image-tower families the method runs on ("ViT", "ResNet": clip.model.VIT, RESNET); others are refused
    # before any work. ViT only unless a method says more (most reach into the ViT's blocks).
    BACKBONES: ClassVar[tuple[str, ...]] = (VIT,)
    LOG_ACCURACY: ClassVar[bool] = True  # False: the training log shows the loss only, as the official trainer
    # The model's method (images) -> features whose result depends on the image alone (a frozen, unprompted
    # image tower): computed once per image of each split with a deterministic transform (feature_cache.py).
    FROZEN_IMAGE_FEATURES: ClassVar[str | None] = None
    model_factory: ClassVar[ModelFactory]

    # Parity with the official code, from the method's official.py (None: nothing to replay or map).
    # replay_construction: the official CLIP construction draws the model's initial values among its own
    # draws; given our CLIP built without drawing, it draws the same and returns those values, which the
    # factory gets as ``init``. replay_after_factory: what the official build draws after the model's own
    # tensors. filter_state_dict: the learner's tensors out of an official checkpoint's state dict.
    # filter_optimizer_state: an official optimizer state mapped onto the learner (resuming from it).
    replay_construction: ClassVar[ReplayConstruction | None] = None
    replay_after_factory: ClassVar[Replay | None] = None
    filter_state_dict: ClassVar[StateFilter | None] = None
    filter_optimizer_state: ClassVar[OptimizerFilter | None] = None
    # What the official code computes per test batch, in words ("every batch" / "for every image": how often
    # it encodes the text), for the benchmark of the official test step (benchmarks/bench_eval.py).
    # official_test_step(model, image) -> logits: that work on our modules where the model's forward does less
    # (keeps text features the official code encodes again); None: the model's forward at 77 tokens does it.
    OFFICIAL_TEST_STEP: ClassVar[str] = ""
    official_test_step: ClassVar[Callable[[nn.Module, Tensor], Tensor] | None] = None

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
        family = clip.model_family(cfg.MODEL.BACKBONE.NAME)
        if family is not None and not cfg.MODEL.BACKBONE.PATH:  # a file given is checked once read
            self.check_backbone(cfg, family, f"MODEL.BACKBONE.NAME {cfg.MODEL.BACKBONE.NAME}")

    def check_backbone(self, cfg: CfgNode, family: str, source: str) -> None:
        """Refuse a backbone family the method does not run on, naming the ones it does."""
        if family in self.BACKBONES:
            return
        names = [m for m in clip.available_models() if clip.model_family(m) in self.BACKBONES]
        raise ConfigError(
            f"{source} is a {family} CLIP, but {cfg.TRAINER.NAME} runs on {' and '.join(self.BACKBONES)} "
            f"backbones only ({', '.join(names)}): choose one of those"
        )

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
        path = cfg.MODEL.BACKBONE.PATH
        self.check_backbone(cfg, arch.family, f"MODEL.BACKBONE.PATH {path}" if path else cfg.MODEL.BACKBONE.NAME)
        size = tuple(cfg.INPUT.SIZE)
        if size != (arch.image_resolution, arch.image_resolution):
            raise ConfigError(
                f"INPUT.SIZE={size} but the CLIP backbone takes {arch.image_resolution}x{arch.image_resolution} "
                f"images; set INPUT.SIZE ({arch.image_resolution}, {arch.image_resolution})"
            )
        self.check_architecture(arch)
        return state_dict

    def build_clip(self) -> tuple[CLIP, Any]:
        """The frozen CLIP in the run's precision, and the initial values its construction drew for the
        model (``replay_construction``; None without one).

        Building CLIP draws the random numbers OpenAI's construction draws, as the official trainers'
        ``clip.build_model`` does. ``exact`` (``EXACT True``) runs prompts over all 77 positions (and a
        ResNet's pooling from every query); by default they stop after the longest EOT (see CLIP).
        OpenAI's weights are fp16: fp32 and amp cast up.
        """
        cfg = self.cfg
        source = f", weights: {cfg.MODEL.BACKBONE.PATH}" if cfg.MODEL.BACKBONE.PATH else ""
        print(f"Loading CLIP (backbone: {cfg.MODEL.BACKBONE.NAME}{source})")
        state_dict = self.load_clip_weights()
        init = None
        if self.replay_construction is None:
            clip_model = build_model(state_dict, exact=cfg.EXACT)
        else:
            clip_model = build_clip_without_drawing(lambda: build_model(state_dict, exact=cfg.EXACT))
            init = self.replay_construction(clip_model, self.settings)
        if self.prec in ("fp32", "amp"):
            clip_model.float()
        return clip_model.requires_grad_(False), init

    def dataset_template(self) -> str | None:
        """The prompt template the dataset brings itself (ImageFolder's DATASET.FOLDER.TEMPLATE), if any."""
        return getattr(self.dm.dataset, "template", "") or None

    # ---- Model.
    def build_model(self) -> None:
        cfg = self.cfg
        self.prec = self.precision()
        clip_model, init = self.build_clip()
        print(f"Building {cfg.TRAINER.NAME}")
        build_args: dict[str, Any] = {"template": self.dataset_template()}
        if self.replay_construction is not None:
            build_args["init"] = init
        self.model = type(self).model_factory(cfg, list(self.dm.dataset.classnames), clip_model, **build_args)
        if self.replay_after_factory is not None:
            self.replay_after_factory(clip_model, self.settings)
        self.model.to(self.device)
        self.feature_cache = self.build_feature_cache()
        learner = self.model.learner
        names = [name for name, p in learner.named_parameters() if p.requires_grad]
        print(f"Parameters to be updated: {names}")
        n_clip = sum(p.numel() for p in clip_model.parameters())
        print(f"Learnable parameters: {count_parameters(learner):,} (CLIP: {n_clip:,} frozen)")
        if cfg.MODEL.INIT_WEIGHTS:
            self.init_learner(learner, cfg.MODEL.INIT_WEIGHTS)
        if self.TRAINABLE:
            self.optim = self.make_optimizer(learner)
            self.sched = build_lr_scheduler(self.optim, cfg.OPTIM)
            self.register_model(self.LEARNER_NAME, learner, self.optim, self.sched)
        self.scaler = grad_scaler() if self.prec == "amp" else None

    def build_feature_cache(self) -> FeatureCache | None:
        """The cache over the model's ``FROZEN_IMAGE_FEATURES`` method, unless FEATURE_CACHE.ENABLED is False."""
        settings = self.cfg.FEATURE_CACHE
        if self.FROZEN_IMAGE_FEATURES is None or not settings.ENABLED:
            return None
        cache = FeatureCache(settings.MAX_MB, exact=self.cfg.EXACT)
        cache.install(self.model, self.FROZEN_IMAGE_FEATURES)
        return cache

    def batches(self, split: str, loader: Iterable[Any]) -> Iterable[Any]:
        """The batches of a pass, through the frozen-feature cache when the method declares one."""
        cache = getattr(self, "feature_cache", None)
        return loader if cache is None else cache.batches(split, loader)

    def make_optimizer(self, learner: nn.Module) -> torch.optim.Optimizer:
        """Hook: the optimizer of the learner. Upstream's: ``build_optimizer`` from OPTIM."""
        return build_optimizer(learner, self.cfg.OPTIM)

    def init_learner(self, learner: nn.Module, path: str) -> None:
        """Hook: start from MODEL.INIT_WEIGHTS. Upstream's: copy the tensors whose names and shapes match."""
        load_pretrained_weights(learner, path)

    # ---- Training and inference.
    def parse_batch_train(self, batch: dict) -> tuple[Tensor, Tensor]:
        return batch["img"].to(self.device), batch["label"].to(self.device)

    def compute_loss(self, image: Tensor, label: Tensor) -> tuple[LossTerms, Tensor]:
        """(loss, logits for the printed accuracy) of one batch. Default: cross-entropy of the model's logits.

        The loss may be named terms ({"xe_loss": ..., "ref_loss": ...}): their sum, in order, is trained
        and each is printed under its name (as an official trainer prints them).
        """
        logits = self.model(image)
        return F.cross_entropy(logits, label), logits

    def forward_backward(self, batch: dict) -> dict[str, float]:
        image, label = self.parse_batch_train(batch)
        with torch.autocast("cuda") if self.prec == "amp" else nullcontext():
            terms, logits = self.compute_loss(image, label)
        named = terms if isinstance(terms, Mapping) else {"loss": terms}
        loss = functools.reduce(operator.add, named.values())
        self.optim.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            self.detect_anomaly(loss)
            loss.backward()
            self.optim.step()
        summary = {name: term.item() for name, term in named.items()}
        if self.LOG_ACCURACY:
            summary["acc"] = compute_accuracy(logits, label)[0].item()
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

        Accepts ours and, through ``filter_state_dict``, the official layout (either optionally under
        ``module.``); the rebuilt buffers are taken from the current model.
        """
        given = {k.removeprefix("module."): v for k, v in state_dict.items()}
        if self.filter_state_dict is not None:
            given = self.filter_state_dict(given, learner)
        given = {k: v for k, v in given.items() if k not in self.REBUILT_KEYS}
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

    def load_checkpoint_into(self, name: str, checkpoint: dict[str, Any], path: str) -> None:
        """Ours or an official checkpoint (``--model-dir``, ``--load-epoch``), strictly."""
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
        adapted = dict(checkpoint)
        if self.filter_optimizer_state is not None:
            adapted["optimizer"] = self.filter_optimizer_state(
                checkpoint.get("optimizer"), checkpoint["state_dict"], learner, path
            )
        adapted["state_dict"] = self.learner_state(learner, checkpoint["state_dict"], path)
        return adapted
