"""The tiny CLIP shapes (ViT and ResNet) the test suite builds random models from."""
from __future__ import annotations

import types
from collections.abc import Sequence

import torch

from clip.model import CLIPConfig
from tools.parity.worlds import TINY, random_clip  # the tool's worlds are built the same way


def tiny_clip_config(**overrides: int) -> CLIPConfig:
    """12 layers per tower (MMRL's default REP_LAYERS 6..12 apply), width 64 (one head), 32-px images."""
    return CLIPConfig(**{**TINY, **overrides})


def tiny_resnet_config(**overrides: object) -> CLIPConfig:
    """A ResNet CLIP with the text tower of ``tiny_clip_config`` and 32-px images: stem width 4, stages
    of 2, 1, 1, 1 blocks (one without a shortcut projection), 1x1 final map, attention pooling 256 wide
    with 4 heads, 64-d features."""
    fields = dict(vars(tiny_clip_config()), vision_layers=(2, 1, 1, 1), vision_width=8, vision_patch_size=None)
    fields.update(overrides)
    return CLIPConfig(**fields)


def tiny_resnet_state_dict(seed: int = 0, **overrides: object) -> dict[str, torch.Tensor]:
    """Weights of a random ``tiny_resnet_config(**overrides)`` CLIP whose image features depend on the image.

    Drawn as OpenAI's construction after ``torch.manual_seed(seed)``. Through PyTorch's default init the
    signal fades block after block (and OpenAI's init zeroes each block's last BatchNorm scale), so
    features would be the projections' biases alone. As if trained instead: every BatchNorm gets a random
    scale and shift, then running statistics measured on 16 random images (one training-mode pass in
    float64, so the same on any machine and thread count); all drawn from a generator seeded with ``seed``.
    """
    return random_clip(tiny_resnet_config(**overrides), seed).state_dict()


def seeded_state_dict(config: CLIPConfig | None = None, seed: int = 123) -> dict[str, torch.Tensor]:
    """The weights of the official implementations' pins: a random CLIP (``tiny_clip_config()`` unless given)
    drawn after ``torch.manual_seed(seed)``, plus 0.02 noise so that no weight keeps its init value; the
    parity tool's ``SEEDED*`` worlds (tools/parity/worlds.py)."""
    return random_clip(config or tiny_clip_config(), seed, noise=0.02).state_dict()


def without_data(trainer: type, classnames: Sequence[str]) -> type:
    """``trainer`` built without a dataset: the class names are all a method's build needs, and the
    seeded-run tests (the official implementations' pins) feed each step's tensors by hand."""

    class WithoutData(trainer):
        def build_data_loader(self) -> None:
            self.dm = types.SimpleNamespace(dataset=types.SimpleNamespace(classnames=list(classnames)))
            self.lab2cname = dict(enumerate(classnames))

    return WithoutData
