"""Linear-probe CLIP (CoOp's ``lpclip``) as the trainer ``LinearProbeCLIP``."""

from .linear_probe import LinearProbeCLIP, build_linear_probe

__all__ = ["LinearProbeCLIP", "build_linear_probe"]
