"""CLIP's scores, one implementation for every method: ``scale`` times the cosine of images and classes."""

from __future__ import annotations

from torch import Tensor


def l2_normalize(x: Tensor) -> Tensor:
    """Unit rows, written as CLIP and the official trainers write it (``x / x.norm``: the same rounding)."""
    return x / x.norm(dim=-1, keepdim=True)


def clip_logits(scale: Tensor | float, image_features: Tensor, text_features: Tensor, normalize: bool = True) -> Tensor:
    """(images, classes) logits ``scale * image @ text.T``, both normalised first unless ``normalize`` is False.

    ``scale`` is ``logit_scale.exp()`` for most methods (MMRL: a fixed 100). A method that needs the
    normalised features too, or normalises otherwise (MMA: ``F.normalize``), passes unit features.
    """
    if normalize:
        image_features, text_features = l2_normalize(image_features), l2_normalize(text_features)
    return scale * image_features @ text_features.t()
