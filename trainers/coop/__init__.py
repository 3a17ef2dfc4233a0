"""CoOp, CoCoOp and zero-shot CLIP (github KaiyangZhou/CoOp). ``coop.py`` holds the prompt learner
the CoOp family reuses (see its docstring for the API)."""

from .cocoop import CoCoOp, CoCoOpModel, CoCoOpPromptLearner, build_cocoop, cocoop_node
from .coop import (
    CoOp,
    CoOpModel,
    CoOpPromptLearner,
    PromptModel,
    PromptTokens,
    build_coop,
    context_init,
    coop_node,
    cosine_logits,
)
from .zsclip import ZeroshotCLIP, ZeroshotCLIP2, ZeroshotModel, build_zeroshot

__all__ = [
    "CoCoOp",
    "CoCoOpModel",
    "CoCoOpPromptLearner",
    "CoOp",
    "CoOpModel",
    "CoOpPromptLearner",
    "PromptModel",
    "PromptTokens",
    "PromptTrainer",
    "ZeroshotCLIP",
    "ZeroshotCLIP2",
    "ZeroshotModel",
    "build_cocoop",
    "build_coop",
    "build_zeroshot",
    "cocoop_node",
    "context_init",
    "coop_node",
    "cosine_logits",
]
