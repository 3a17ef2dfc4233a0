"""The MMRL trainer: config node, loss and decoupled inference on ``CLIPTrainer``.

The checkpoint is the ``MultiModalRepresentationLearner`` module, which holds only the trainable
tensors, under the official implementation's key names (so both codes load each other's files).
Its published per-dataset values are ``configs/trainers/MMRL/datasets.yaml``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor, nn
from yacs.config import CfgNode

from clip.model import CLIPConfig
from dassl.engine import TRAINER_REGISTRY

from ..base import CLIPTrainer, ConfigError
from . import official
from .model import REG_LOSSES, MMRLModel, build_mmrl, check_rep_layers, mmrl_loss, scored_logits

# Name under which the learnable module is registered: checkpoints live at
# <output_dir>/MultiModalRepresentationLearner/model.pth.tar-<epoch>, as in the official code.
LEARNER_NAME = "MultiModalRepresentationLearner"
# Per-layer map keys: ...r2vproj.<i>.weight (MMRL), ...r2vproj.srra.<i>.A (MMRL++).
_MAP_KEY = re.compile(r"^representation_learner\.(?:compound_rep_tokens_r2[vt]proj|srra_r2[vt]proj\.srra)\.(\d+)\.")


def check_checkpoint_config(state_dict: Mapping[str, Tensor], settings: CfgNode, node: str, source: str) -> None:
    """Fail with the config key and both values when a checkpoint was trained with other settings."""
    tokens = state_dict.get("representation_learner.compound_rep_tokens")
    if tokens is not None:
        for dim, name in ((0, "N_REP_TOKENS"), (1, "REP_DIM")):
            if tokens.shape[dim] != settings[name]:
                raise ConfigError(
                    f"{source}: representation_learner.compound_rep_tokens has shape {tuple(tokens.shape)}, i.e. "
                    f"{name}={tokens.shape[dim]}, but TRAINER.{node}.{name}={settings[name]} "
                    f"(pass TRAINER.{node}.{name} {tokens.shape[dim]} to use this checkpoint)"
                )
    layers = {int(m.group(1)) for key in state_dict if (m := _MAP_KEY.match(key))}
    if layers and len(layers) != len(settings.REP_LAYERS):
        raise ConfigError(
            f"{source}: the checkpoint has representation maps for {len(layers)} layers "
            f"(representation_learner.*.{min(layers)}..{max(layers)}), but TRAINER.{node}.REP_LAYERS="
            f"{list(settings.REP_LAYERS)} has {len(settings.REP_LAYERS)}"
        )


@TRAINER_REGISTRY.register()
class MMRL(CLIPTrainer):
    """MMRL on Dassl's TrainerX. MMRL++ (mmrlpp.py) differs only by its parts (``MMRLParts``) and settings."""

    NODE = "MMRL"
    DEFAULTS = {  # the keys MMRL and MMRL++ share, with the official defaults (the YAML files set the values used)
        "ALPHA": 0.7,  # weight of the class-token branch, in the loss and in the fused logits
        "REG_WEIGHT": 1.0,  # lambda of the two regularisers towards zero-shot CLIP
        # Ours, not the official code's (which has cosine only): the regularisers' distance, cosine, l1 or mse
        # (the paper's Table 9 compares them).
        "REG_LOSS": "cosine",
        "REP_LAYERS": [],  # 1-based layers that receive representation tokens, e.g. [6, ..., 12]
        "REP_DIM": 512,  # d_r, width of the representation space R
        "N_REP_TOKENS": 5,  # K, number of representation tokens
        "PREC": "fp16",  # fp16, fp32 or amp
        # Ours, not the official code's: run the text side this many classes at a time, recomputed in
        # backward, to bound memory at large class counts (ImageNet); 0: all classes at once.
        "TEXT_CHUNK": 0,
    }
    LEARNER_NAME = LEARNER_NAME
    model_factory = staticmethod(build_mmrl)
    replay_construction = staticmethod(official.replay_construction)
    filter_state_dict = staticmethod(official.filter_state_dict)
    filter_optimizer_state = staticmethod(official.filter_optimizer_state)
    model: MMRLModel

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        settings, node = cfg.TRAINER[self.NODE], f"TRAINER.{self.NODE}"
        for name in ("N_REP_TOKENS", "REP_DIM"):
            if settings[name] < 1:
                raise ConfigError(f"{node}.{name} must be at least 1, got {settings[name]}")
        check_rep_layers(settings.REP_LAYERS, f"{node}.REP_LAYERS")
        if settings.REG_LOSS not in REG_LOSSES:
            raise ConfigError(f"{node}.REG_LOSS is {settings.REG_LOSS!r}: use one of {', '.join(REG_LOSSES)}")

    def check_architecture(self, arch: CLIPConfig) -> None:
        depth = min(arch.vision_layers, arch.transformer_layers)
        check_rep_layers(self.settings.REP_LAYERS, f"TRAINER.{self.NODE}.REP_LAYERS", depth)

    @property
    def text_features_zs(self) -> Tensor:
        """Zero-shot CLIP's normalised features of the class prompts (w0), the text regulariser's target."""
        return self.model.text_features_zs()

    def compute_loss(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        settings = self.settings
        out = self.model(image, zero_shot=True)
        loss = mmrl_loss(out, label, self.text_features_zs, settings.ALPHA, settings.REG_WEIGHT, settings.REG_LOSS)
        return loss, out.logits_fusion

    def model_inference(self, input: Tensor) -> Tensor:
        cfg = self.cfg
        return scored_logits(self.model(input), cfg.TASK, cfg.DATASET.SUBSAMPLE_CLASSES, cfg.DATASET.NAME)

    def learner_state(self, learner: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
        """The base's, after a check naming the config key a checkpoint of other settings disagrees on."""
        given = {k.removeprefix("module."): v for k, v in state_dict.items()}
        check_checkpoint_config(given, self.settings, self.NODE, source)
        return super().learner_state(learner, given, source)
