"""Default configuration (``get_cfg_default``) with upstream Dassl's keys and values."""
from yacs.config import CfgNode

from .defaults import _C as cfg_default

__all__ = ["get_cfg_default", "clean_cfg"]


def get_cfg_default() -> CfgNode:
    """A fresh, mutable copy of the defaults; callers extend and merge into it."""
    return cfg_default.clone()


def clean_cfg(cfg: CfgNode, trainer: str) -> None:
    """Drop the sub-nodes of other trainers so ``print(cfg)`` shows only what the run uses."""
    for key in list(cfg.TRAINER.keys()):
        if key not in ("NAME", trainer.upper()):
            cfg.TRAINER.pop(key, None)
