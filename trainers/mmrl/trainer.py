"""The MMRL trainer: config node, per-dataset settings, loss and decoupled inference on ``CLIPTrainer``.

The checkpoint is the ``MultiModalRepresentationLearner`` module, which holds only the trainable
tensors, under the official implementation's key names (so both codes load each other's files).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from clip.model import CLIP, CLIPConfig, build_model
from dassl.engine import TRAINER_REGISTRY

from ..base import CLIPTrainer, ConfigError
from ..replay import build_clip_without_drawing, replay_clip_construction
from .model import MMRLModel, MMRLParts, build_mmrl, check_rep_layers, mmrl_loss, scored_logits
from .official import learner_optimizer_state, pick_learner_tensors

# Name under which the learnable module is registered: checkpoints live at
# <output_dir>/MultiModalRepresentationLearner/model.pth.tar-<epoch>, as in the official code.
LEARNER_NAME = "MultiModalRepresentationLearner"


def mmrl_node() -> CfgNode:
    """The keys MMRL and MMRL++ share, with the official defaults (the YAML files set the values used)."""
    node = CfgNode()
    node.ALPHA = 0.7  # weight of the class-token branch, in the loss and in the fused logits
    node.REG_WEIGHT = 1.0  # lambda of the two cosine regularisers towards zero-shot CLIP
    node.REP_LAYERS = []  # 1-based layers that receive representation tokens, e.g. [6, ..., 12]
    node.REP_DIM = 512  # d_r, width of the representation space R
    node.N_REP_TOKENS = 5  # K, number of representation tokens
    node.PREC = "fp16"  # fp16, fp32 or amp
    # Ours, not the official code's: run the text side this many classes at a time, recomputed in
    # backward, to bound memory at large class counts (ImageNet); 0: all classes at once.
    node.TEXT_CHUNK = 0
    return node


# REG_WEIGHT of MMRL per dataset, the same for every task.
_MMRL_SETTINGS = {
    "StanfordCars": {"REG_WEIGHT": 7.0},
    "FGVCAircraft": {"REG_WEIGHT": 6.0},
    "SUN397": {"REG_WEIGHT": 6.0},
    "DescribableTextures": {"REG_WEIGHT": 6.0},
    "Food101": {"REG_WEIGHT": 5.0},
    "OxfordFlowers": {"REG_WEIGHT": 4.0},
    "UCF101": {"REG_WEIGHT": 3.0},
    "ImageNet": {"REG_WEIGHT": 0.5},
    "Caltech101": {"REG_WEIGHT": 0.5},
    "OxfordPets": {"REG_WEIGHT": 0.2},
    "EuroSAT": {"REP_DIM": 2048, "REG_WEIGHT": 0.01},
}


@TRAINER_REGISTRY.register()
class MMRL(CLIPTrainer):
    """MMRL on Dassl's TrainerX. MMRL++ (mmrlpp.py) differs only by its ``PARTS`` and settings."""

    NODE = "MMRL"
    LEARNER_NAME = LEARNER_NAME
    PARTS: type[MMRLParts] = MMRLParts
    model_factory = staticmethod(build_mmrl)
    model: MMRLModel

    @classmethod
    def add_config(cls, cfg: CfgNode) -> None:
        cfg.TRAINER.MMRL = mmrl_node()

    @classmethod
    def dataset_settings(cls, dataset: str, task: str) -> dict[str, Any]:
        return {f"TRAINER.MMRL.{k}": v for k, v in _MMRL_SETTINGS.get(dataset, {}).items()}

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        s, node = cfg.TRAINER[self.NODE], f"TRAINER.{self.NODE}"
        for name in ("N_REP_TOKENS", "REP_DIM"):
            if s[name] < 1:
                raise ConfigError(f"{node}.{name} must be at least 1, got {s[name]}")
        check_rep_layers(s.REP_LAYERS, f"{node}.REP_LAYERS")

    def check_architecture(self, arch: CLIPConfig) -> None:
        depth = min(arch.vision_layers, arch.transformer_layers)
        check_rep_layers(self.settings.REP_LAYERS, f"TRAINER.{self.NODE}.REP_LAYERS", depth)

    def construct_clip(self, state_dict: dict[str, Tensor]) -> CLIP:
        """Our CLIP, with the random draws of the official code's two CLIP constructions replayed.

        The official image encoder holds one more random tensor right after ``proj`` (MMRL: P_v^r,
        MMRL++: the LoRA factor A) that no weight file overwrites: the first construction's is our init.
        """
        clip_model = build_clip_without_drawing(lambda: build_model(state_dict))
        parts = self.PARTS(self.settings)
        self._projection_init = replay_clip_construction(clip_model, parts.projection_init)
        replay_clip_construction(clip_model, parts.projection_init)
        return clip_model

    def make_model(self, classnames: list[str], clip_model: CLIP) -> nn.Module:
        return build_mmrl(self.cfg, classnames, clip_model, self.PARTS, self._projection_init)

    def after_build(self) -> None:
        """Frozen zero-shot text features w0 (same template, no tokens)."""
        with torch.no_grad():
            w0 = self.model.clip.encode_text(self.model.tokenized_prompts)
            self.text_features_zs = w0 / w0.norm(dim=-1, keepdim=True)

    def compute_loss(self, image: Tensor, label: Tensor) -> tuple[Tensor, Tensor]:
        s = self.settings
        out = self.model(image, zero_shot=True)
        return mmrl_loss(out, label, self.text_features_zs, s.ALPHA, s.REG_WEIGHT), out.logits_fusion

    def model_inference(self, input: Tensor) -> Tensor:
        cfg = self.cfg
        return scored_logits(self.model(input), cfg.TASK, cfg.DATASET.SUBSAMPLE_CLASSES, cfg.DATASET.NAME)

    def learner_state(self, learner: nn.Module, state_dict: Mapping[str, Tensor], source: str) -> dict[str, Tensor]:
        picked = pick_learner_tensors(learner, state_dict, self.settings, self.NODE, source)
        return super().learner_state(learner, picked, source)

    def adapt_checkpoint(self, name: str, checkpoint: dict[str, Any], path: str) -> dict[str, Any]:
        """Resume from official checkpoints too: their trainable tensors and optimizer state, mapped.

        Ours (exactly the learner's keys) pass unchanged. The scheduler state (upstream pickles the
        successor scheduler into it) is read by the scheduler itself, and the epoch needs no mapping.
        """
        learner = self._models[name]
        state_dict = checkpoint["state_dict"]
        if state_dict.keys() == learner.state_dict().keys():
            return checkpoint
        print("An official checkpoint: resuming from its trainable tensors and their optimizer state")
        return {
            **checkpoint,
            "state_dict": self.learner_state(learner, state_dict, path),
            "optimizer": learner_optimizer_state(checkpoint["optimizer"], state_dict, learner, path),
        }
