from .transforms import AVAI_CHOICES, INTERPOLATION_MODES, build_transform, random_steps

__all__ = ["AVAI_CHOICES", "INTERPOLATION_MODES", "build_transform", "random_steps"]
