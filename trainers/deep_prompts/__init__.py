"""Deep prompts: MaPLe, IVLP, VPT and PromptSRC on one mechanism (``mechanism.py``); ``official.py``
holds what exists only to match the official code (draw order, checkpoint layout)."""

from .ivlp import IVLP, build_ivlp
from .maple import MaPLe, build_maple
from .promptsrc import PromptSRC, build_promptsrc
from .vpt import VPT, build_vpt

__all__ = ["IVLP", "VPT", "MaPLe", "PromptSRC", "build_ivlp", "build_maple", "build_promptsrc", "build_vpt"]
