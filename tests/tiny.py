"""The tiny CLIP shapes the test suite builds random models from."""
from __future__ import annotations

from clip.model import CLIPConfig


def tiny_clip_config(**overrides: int) -> CLIPConfig:
    """12 layers per tower (MMRL's default REP_LAYERS 6..12 apply), width 64 (one head), 32-px images."""
    fields = dict(
        embed_dim=64,
        image_resolution=32,
        vision_layers=12,
        vision_width=64,
        vision_patch_size=8,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=12,
    )
    fields.update(overrides)
    return CLIPConfig(**fields)
