"""Range and choice checks of the engine's config values, run before any data or weights are touched.

A value out of range otherwise surfaces late and deep (an empty loader, a scheduler's ZeroDivisionError,
an unknown optimizer after a model download); here it is one message naming the key and what it takes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from yacs.config import CfgNode

from dassl.data.transforms import AVAI_CHOICES, INTERPOLATION_MODES
from dassl.optim.lr_scheduler import AVAI_SCHEDS
from dassl.optim.optimizer import AVAI_OPTIMS
from dassl.utils import UserError

SAMPLERS = ("RandomSampler", "SequentialSampler", "RandomDomainSampler", "SeqDomainSampler", "RandomClassSampler")


class ConfigValueError(UserError, ValueError):
    """A config value outside what the engine accepts."""


def _get(cfg: CfgNode, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def _rules() -> list[tuple[str, Callable[[Any], bool], str]]:
    def is_int(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    return [
        ("OPTIM.NAME", lambda v: v in AVAI_OPTIMS, f"one of {', '.join(AVAI_OPTIMS)}"),
        ("OPTIM.LR", lambda v: is_number(v) and v > 0, "a number > 0"),
        ("OPTIM.MAX_EPOCH", lambda v: is_int(v) and v >= 1, "an integer >= 1"),
        ("OPTIM.WEIGHT_DECAY", lambda v: is_number(v) and v >= 0, "a number >= 0"),
        ("OPTIM.MOMENTUM", lambda v: is_number(v) and 0 <= v < 1, "a number in [0, 1)"),
        ("OPTIM.LR_SCHEDULER", lambda v: v in AVAI_SCHEDS, f"one of {', '.join(AVAI_SCHEDS)}"),
        ("OPTIM.WARMUP_EPOCH", lambda v: is_int(v) and v >= -1, "an integer >= -1 (-1, the default, or 0: no warmup)"),
        ("OPTIM.WARMUP_TYPE", lambda v: v in ("constant", "linear"), "constant or linear"),
        ("OPTIM.WARMUP_CONS_LR", lambda v: is_number(v) and v > 0, "a number > 0"),
        ("DATALOADER.TRAIN_X.BATCH_SIZE", lambda v: is_int(v) and v >= 1, "an integer >= 1"),
        ("DATALOADER.TEST.BATCH_SIZE", lambda v: is_int(v) and v >= 1, "an integer >= 1"),
        ("DATALOADER.NUM_WORKERS", lambda v: is_int(v) and v >= 0, "an integer >= 0"),
        ("DATALOADER.TRAIN_X.SAMPLER", lambda v: v in SAMPLERS, f"one of {', '.join(SAMPLERS)}"),
        ("DATASET.NUM_SHOTS", lambda v: is_int(v) and v >= -1, "an integer >= 1, or -1 / 0 for all images"),
        ("INPUT.SIZE", lambda v: len(v) == 2 and all(is_int(s) and s >= 1 for s in v), "two integers >= 1"),
        ("INPUT.INTERPOLATION", lambda v: v in INTERPOLATION_MODES, f"one of {', '.join(INTERPOLATION_MODES)}"),
        ("INPUT.TRANSFORMS", lambda v: all(t in AVAI_CHOICES for t in v), f"a list of {', '.join(AVAI_CHOICES)}"),
        ("TEST.FINAL_MODEL", lambda v: v in ("last_step", "best_val"), "last_step or best_val"),
        ("TEST.SPLIT", lambda v: v in ("val", "test"), "val or test"),
        ("TRAIN.PRINT_FREQ", lambda v: is_int(v) and v >= 1, "an integer >= 1"),
        ("TRAIN.CHECKPOINT_FREQ", lambda v: is_int(v) and v >= 0, "an integer >= 0 (0: only the last epoch)"),
    ]


def check_cfg_values(cfg: CfgNode) -> None:
    """Raise ``ConfigValueError`` naming the first key whose value the engine cannot use."""
    for key, ok, expected in _rules():
        value = _get(cfg, key)
        try:
            good = ok(value)
        except TypeError:
            good = False
        if not good:
            raise ConfigValueError(f"{key} must be {expected}, got {value!r}")
