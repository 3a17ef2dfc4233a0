"""The config of every registered method, collected from the methods themselves.

``extend_cfg`` adds TASK, DATASET.SUBSAMPLE_CLASSES and each registered ``CLIPTrainer``'s node
(``add_config``) with its official defaults; the YAML files under ``configs/trainers/`` then set the
values actually used. ``get_dataset_specified_config`` returns a method's published per-dataset
settings (``dataset_settings``) as a flat ``[KEY, VALUE, ...]`` list, which ``train.py`` merges after
the YAML files and before the command-line ``KEY VALUE`` options, so the command line still wins.
"""

from __future__ import annotations

from yacs.config import CfgNode

import trainers  # noqa: F401  (imports, and so registers, every method)
from dassl.engine import TRAINER_REGISTRY

from .base import TASKS, CLIPTrainer


def clip_trainers() -> dict[str, type[CLIPTrainer]]:
    """Every registered trainer built on ``CLIPTrainer``, by name."""
    found = {}
    for name in TRAINER_REGISTRY.registered_names():
        cls = TRAINER_REGISTRY.get(name)
        if isinstance(cls, type) and issubclass(cls, CLIPTrainer):
            found[name] = cls
    return found


def extend_cfg(cfg: CfgNode) -> None:
    """Add TASK, DATASET.SUBSAMPLE_CLASSES and every method's config node (official defaults)."""
    cfg.DATASET.SUBSAMPLE_CLASSES = "all"  # all, base or new
    cfg.TASK = "B2N"  # B2N, FS or CD; selects the per-dataset settings and, for MMRL, the scored logits
    # False (default): methods skip work whose result is never read (README "Speed"), which moves
    # logits by float rounding only. True: the official code's exact op order, bit for bit.
    cfg.EXACT = False
    for cls in clip_trainers().values():
        cls.add_config(cfg)


def get_dataset_specified_config(dataset: str, trainer: str, task: str) -> list:
    """The method's published per-dataset settings as ``[KEY, VALUE, ...]`` (``[]`` when it has none)."""
    if task not in TASKS:
        raise ValueError(f"TASK must be one of {', '.join(TASKS)}, got {task!r}")
    cls = clip_trainers().get(trainer)
    if cls is None:
        return []
    flat: list = []
    for key, value in cls.dataset_settings(dataset, task).items():
        flat += [key, value]
    return flat
