"""MMRL (CVPR 2025) and MMRL++: model.py (the model and its factory), trainer.py (the Dassl trainer),
official.py (what exists only to match the official code: draw order, checkpoint layout), mmrlpp.py
(MMRL++ as a delta)."""

from .mmrlpp import MMRLpp, MMRLppParts, build_mmrlpp
from .model import (
    MMRLModel,
    MMRLParts,
    MultiModalRepresentationLearner,
    Outputs,
    RepresentationLearner,
    RepresentationProjection,
    TokenInjector,
    build_mmrl,
    mmrl_loss,
    scored_logits,
)
from .trainer import LEARNER_NAME, MMRL

__all__ = [
    "LEARNER_NAME",
    "MMRL",
    "MMRLModel",
    "MMRLParts",
    "MMRLpp",
    "MMRLppParts",
    "MultiModalRepresentationLearner",
    "Outputs",
    "RepresentationLearner",
    "RepresentationProjection",
    "TokenInjector",
    "build_mmrl",
    "build_mmrlpp",
    "mmrl_loss",
    "scored_logits",
]
