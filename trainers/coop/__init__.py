"""The CoOp family (github KaiyangZhou/CoOp, htyao89/KgCoOp): CoOp, CoCoOp, KgCoOp and zero-shot CLIP.
``coop.py`` holds the prompt learner the family reuses (see its docstring for the API)."""

from .cocoop import CoCoOp, build_cocoop
from .coop import CoOp, CoOpPromptLearner, build_coop
from .kgcoop import KgCoOp, build_kgcoop
from .zsclip import ZeroshotCLIP, ZeroshotCLIP2, build_zeroshot

__all__ = [
    "CoCoOp",
    "CoOp",
    "CoOpPromptLearner",
    "KgCoOp",
    "ZeroshotCLIP",
    "ZeroshotCLIP2",
    "build_cocoop",
    "build_coop",
    "build_kgcoop",
    "build_zeroshot",
]
