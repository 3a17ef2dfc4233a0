"""Kept for upstream code only: what lets trainers and configs written for upstream Dassl run here.

Nothing of this repository's methods depends on it. Here:
- ``add_upstream_trainer_nodes``: the config nodes of upstream's own DA / DG / SSL trainers (MCD, ...,
  FIXMATCH), which no trainer here reads, so that their YAML files still merge;
- ``add_upstream_flags`` / ``apply_upstream_flags``: ``--head`` (no model here has a classifier head);
- ``records_model_selection``: an upstream trainer overrides ``load_model`` (CoOp's do) instead of the
  engine's ``load_checkpoint_into`` hook; the override still reports which model it loaded (metrics.json);
- ``evaluate``: an upstream-style evaluator's ``evaluate()`` takes no run metadata.
"""
from __future__ import annotations

import argparse
import functools
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from yacs.config import CfgNode as CN

from dassl.utils import UserError


def add_upstream_trainer_nodes(trainer: CN) -> None:
    """Upstream's DA / DG / SSL trainer nodes with upstream's defaults, under ``cfg.TRAINER``."""
    trainer.MCD = CN({"N_STEP_F": 4})
    trainer.MME = CN({"LMDA": 0.1})
    trainer.CDAC = CN({"CLASS_LR_MULTI": 10, "RAMPUP_COEF": 30, "RAMPUP_ITRS": 1000, "TOPK_MATCH": 5,
                       "P_THRESH": 0.95, "STRONG_TRANSFORMS": ()})  # fmt: skip
    trainer.SE = CN({"EMA_ALPHA": 0.999, "CONF_THRE": 0.95, "RAMPUP": 300})
    trainer.M3SDA = CN({"LMDA": 0.5, "N_STEP_F": 4})
    trainer.DAEL = CN({"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()})
    trainer.CROSSGRAD = CN({"EPS_F": 1.0, "EPS_D": 1.0, "ALPHA_F": 0.5, "ALPHA_D": 0.5})
    trainer.DDAIG = CN({"G_ARCH": "", "LMDA": 0.3, "CLAMP": False, "CLAMP_MIN": -1.0, "CLAMP_MAX": 1.0,
                        "WARMUP": 0, "ALPHA": 0.5})  # fmt: skip
    trainer.DAELDG = CN({"WEIGHT_U": 0.5, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()})
    trainer.DOMAINMIX = CN({"TYPE": "crossdomain", "ALPHA": 1.0, "BETA": 1.0})
    trainer.ENTMIN = CN({"LMDA": 1e-3})
    trainer.MEANTEACHER = CN({"WEIGHT_U": 1.0, "EMA_ALPHA": 0.999, "RAMPUP": 5})
    trainer.MIXMATCH = CN({"WEIGHT_U": 100.0, "TEMP": 2.0, "MIXUP_BETA": 0.75, "RAMPUP": 20000})
    trainer.FIXMATCH = CN({"WEIGHT_U": 1.0, "CONF_THRE": 0.95, "STRONG_TRANSFORMS": ()})


def add_upstream_flags(parser: argparse.ArgumentParser) -> None:
    """Upstream train.py's flags that no trainer here reads."""
    parser.add_argument("--head", type=str, default="", help="name of head (upstream)")


def apply_upstream_flags(cfg: CN, args: argparse.Namespace) -> None:
    if args.head:
        cfg.MODEL.HEAD.NAME = args.head


def records_model_selection(load_model: Callable[..., Any], record: Callable[[Any, str, int | None], None]) -> Any:
    """``load_model`` followed by ``record(trainer, directory, epoch)`` (an upstream trainer's override)."""

    @functools.wraps(load_model)
    def wrapper(self: Any, directory: str, epoch: int | None = None, *args: Any, **kwargs: Any) -> Any:
        out = load_model(self, directory, epoch, *args, **kwargs)
        if directory:
            try:
                record(self, directory, epoch)
            except UserError:  # a layout our resolver does not know: the selection stays unknown
                pass
        return out

    return wrapper


def evaluate(evaluator: Any, run_info: Mapping[str, Any]) -> Any:
    """``evaluator.evaluate(run_info=...)``; an upstream-style evaluator gets no metadata (its printed block only)."""
    if "run_info" in inspect.signature(evaluator.evaluate).parameters:
        return evaluator.evaluate(run_info=run_info)
    return evaluator.evaluate()
