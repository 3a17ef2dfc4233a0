"""Evaluator registry and factory (``TEST.EVALUATOR``)."""
from __future__ import annotations

from typing import Any

from yacs.config import CfgNode

from dassl.utils import Registry, check_availability

EVALUATOR_REGISTRY = Registry("EVALUATOR")


def build_evaluator(cfg: CfgNode, **kwargs: Any) -> Any:
    check_availability(cfg.TEST.EVALUATOR, EVALUATOR_REGISTRY.registered_names())
    if cfg.VERBOSE:
        print(f"Loading evaluator: {cfg.TEST.EVALUATOR}")
    return EVALUATOR_REGISTRY.get(cfg.TEST.EVALUATOR)(cfg, **kwargs)
