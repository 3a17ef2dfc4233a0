"""MetaPrompt (Zhao et al., TIP 2024): ``Meta_B2N`` and ``Meta_DG``; ``official.py`` holds what exists only
to read the official code's checkpoints."""

from .model import MetaPromptModel, build_metaprompt
from .trainer import Meta_B2N, Meta_DG

__all__ = ["MetaPromptModel", "Meta_B2N", "Meta_DG", "build_metaprompt"]
