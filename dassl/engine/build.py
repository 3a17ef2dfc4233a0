"""Trainer registry and factory (``TRAINER.NAME``)."""
from __future__ import annotations

from typing import Any

from yacs.config import CfgNode

from dassl.utils import Registry, check_availability

TRAINER_REGISTRY = Registry("TRAINER")


def build_trainer(cfg: CfgNode) -> Any:
    """Instantiate the trainer registered as ``cfg.TRAINER.NAME`` (its module must have been imported)."""
    check_availability(cfg.TRAINER.NAME, TRAINER_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print(f"Loading trainer: {cfg.TRAINER.NAME}")
    return TRAINER_REGISTRY.get(cfg.TRAINER.NAME)(cfg)
