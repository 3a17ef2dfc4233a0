"""MMA, the Multi-Modal Adapter of Yang et al. (CVPR 2024), registered as ``MultiModalAdapter``."""

from .mma import MMAModel, MultiModalAdapter, build_mma

__all__ = ["MMAModel", "MultiModalAdapter", "build_mma"]
