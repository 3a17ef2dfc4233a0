"""The trainer the four deep-prompt methods share: depth checks, a loss-only log (as the official
trainers print) and the official checkpoint layout (``official.py``)."""

from __future__ import annotations

from yacs.config import CfgNode

from clip.model import CLIPConfig

from ..base import CLIPTrainer
from . import official
from .mechanism import check_depth


class DeepPromptTrainer(CLIPTrainer):
    """What the four deep-prompt trainers share: depth checks, loss-only log, official checkpoints."""

    DEPTH_KEYS: tuple[tuple[str, str, int], ...] = ()  # (key of a depth, "vision" or "text", its minimum)
    LOG_ACCURACY = False
    filter_state_dict = staticmethod(official.filter_state_dict)
    filter_optimizer_state = staticmethod(official.refuse_optimizer_state)

    def check_cfg(self, cfg: CfgNode) -> None:
        super().check_cfg(cfg)
        for key, _, least in self.DEPTH_KEYS:
            check_depth(cfg.TRAINER[self.NODE][key], least, None, f"TRAINER.{self.NODE}.{key}")

    def check_architecture(self, arch: CLIPConfig) -> None:
        layers = {"vision": arch.vision_layers, "text": arch.transformer_layers}
        for key, tower, least in self.DEPTH_KEYS:
            check_depth(self.settings[key], least, layers[tower], f"TRAINER.{self.NODE}.{key}")
