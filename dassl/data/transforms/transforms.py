"""Image pipelines named by ``INPUT.TRANSFORMS``.

Random ops draw from the generators in the order they are composed, so the order below is
upstream's (and fixed, whatever order the config lists the names in); the test pipeline is
resize-shorter-side + center crop, as upstream.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torchvision.transforms.functional as F
from PIL import Image
from torchvision.transforms import (
    CenterCrop,
    ColorJitter,
    Compose,
    GaussianBlur,
    InterpolationMode,
    Normalize,
    RandomApply,
    RandomCrop,
    RandomGrayscale,
    RandomHorizontalFlip,
    RandomResizedCrop,
    Resize,
    ToTensor,
)
from yacs.config import CfgNode

__all__ = [
    "AVAI_CHOICES",
    "INTERPOLATION_MODES",
    "random_steps",
    "Random2DTranslation",
    "InstanceNormalization",
    "Cutout",
    "GaussianNoise",
    "build_transform",
]

# Upstream's auto/rand-augment policies; not carried by this compact dassl.
_POLICIES = ["imagenet_policy", "cifar10_policy", "svhn_policy", "randaugment", "randaugment_fixmatch", "randaugment2"]

AVAI_CHOICES = [
    "random_flip",
    "random_resized_crop",
    "normalize",
    "instance_norm",
    "random_crop",
    "random_translation",
    "center_crop",  # accepted for compatibility: the test pipeline always center-crops
    "cutout",
    "gaussian_noise",
    "colorjitter",
    "randomgrayscale",
    "gaussian_blur",
]

INTERPOLATION_MODES = {
    "bilinear": InterpolationMode.BILINEAR,
    "bicubic": InterpolationMode.BICUBIC,
    "nearest": InterpolationMode.NEAREST,
}


class Random2DTranslation:
    """With probability ``p``: enlarge by 1/8 and crop ``height x width`` at random; else plain resize."""

    def __init__(
        self, height: int, width: int, p: float = 0.5, interpolation: InterpolationMode = InterpolationMode.BILINEAR
    ) -> None:
        self.height = height
        self.width = width
        self.p = p
        self.interpolation = interpolation

    def __call__(self, img: Image.Image) -> Image.Image:
        if random.uniform(0, 1) > self.p:
            return F.resize(img, [self.height, self.width], interpolation=self.interpolation)
        new_w, new_h = int(round(self.width * 1.125)), int(round(self.height * 1.125))
        img = F.resize(img, [new_h, new_w], interpolation=self.interpolation)
        left = int(round(random.uniform(0, new_w - self.width)))
        top = int(round(random.uniform(0, new_h - self.height)))
        return F.crop(img, top, left, self.height, self.width)


class InstanceNormalization:
    """Standardise each channel of a (C, H, W) tensor by its own mean and std."""

    def __init__(self, eps: float = 1e-8) -> None:
        self.eps = eps

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        flat = img.reshape(img.shape[0], -1)
        mean = flat.mean(1).view(-1, 1, 1)
        std = flat.std(1).view(-1, 1, 1)
        return (img - mean) / (std + self.eps)


class Cutout:
    """Zero ``n_holes`` squares of side ``length`` (clipped at the border) centred at random pixels."""

    def __init__(self, n_holes: int = 1, length: int = 16) -> None:
        self.n_holes = n_holes
        self.length = length

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        h, w = img.size(1), img.size(2)
        mask = np.ones((h, w), np.float32)
        half = self.length // 2
        for _ in range(self.n_holes):
            y, x = np.random.randint(h), np.random.randint(w)
            y1, y2 = np.clip(y - half, 0, h), np.clip(y + half, 0, h)
            x1, x2 = np.clip(x - half, 0, w), np.clip(x + half, 0, w)
            mask[y1:y2, x1:x2] = 0
        return img * torch.from_numpy(mask).expand_as(img)


class GaussianNoise:
    """With probability ``p`` add N(mean, std) noise to a tensor image."""

    def __init__(self, mean: float = 0.0, std: float = 0.15, p: float = 0.5) -> None:
        self.mean = mean
        self.std = std
        self.p = p

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        if random.uniform(0, 1) > self.p:
            return img
        return img + torch.randn(img.size()) * self.std + self.mean


def build_transform(cfg: CfgNode, is_train: bool = True, choices: Sequence[str] | None = None) -> Compose | None:
    """The train or test pipeline for ``choices`` (default ``cfg.INPUT.TRANSFORMS``); None if ``INPUT.NO_TRANSFORM``."""
    if cfg.INPUT.NO_TRANSFORM:
        print("Note: no transform is applied!")
        return None
    if choices is None:
        choices = cfg.INPUT.TRANSFORMS
    for choice in choices:
        if choice in _POLICIES:
            raise NotImplementedError(f"Transform {choice!r} (an augmentation policy) is not available in this dassl")
        if choice not in AVAI_CHOICES:
            raise ValueError(f"Unknown transform {choice!r}; available: {AVAI_CHOICES}")
    if cfg.INPUT.INTERPOLATION not in INTERPOLATION_MODES:
        modes = list(INTERPOLATION_MODES)
        raise ValueError(f"INPUT.INTERPOLATION must be one of {modes}, got {cfg.INPUT.INTERPOLATION}")
    build = _build_transform_train if is_train else _build_transform_test
    return Compose(build(cfg, choices))


def _build_transform_train(cfg: CfgNode, choices: Sequence[str]) -> list[Callable]:
    print("Building transform_train")
    inp = cfg.INPUT
    size = inp.SIZE
    interp = INTERPOLATION_MODES[inp.INTERPOLATION]
    steps: list[tuple[str, Callable]] = []
    if "random_crop" not in choices and "random_resized_crop" not in choices:
        steps.append((f"resize to {size[0]}x{size[1]}", Resize(size, interpolation=interp)))
    if "random_translation" in choices:
        steps.append(("random translation", Random2DTranslation(size[0], size[1])))
    if "random_crop" in choices:
        steps.append((f"random crop (padding = {inp.CROP_PADDING})", RandomCrop(size, padding=inp.CROP_PADDING)))
    if "random_resized_crop" in choices:
        steps.append(
            (
                f"random resized crop (size={size}, scale={inp.RRCROP_SCALE})",
                RandomResizedCrop(size, scale=inp.RRCROP_SCALE, interpolation=interp),
            )
        )
    if "random_flip" in choices:
        steps.append(("random flip", RandomHorizontalFlip()))
    if "colorjitter" in choices:
        b, c, s, h = inp.COLORJITTER_B, inp.COLORJITTER_C, inp.COLORJITTER_S, inp.COLORJITTER_H
        steps.append(
            (
                f"color jitter (brightness={b}, contrast={c}, saturation={s}, hue={h})",
                ColorJitter(brightness=b, contrast=c, saturation=s, hue=h),
            )
        )
    if "randomgrayscale" in choices:
        steps.append(("random gray scale", RandomGrayscale(p=inp.RGS_P)))
    if "gaussian_blur" in choices:
        steps.append((f"gaussian blur (kernel={inp.GB_K})", RandomApply([GaussianBlur(inp.GB_K)], p=inp.GB_P)))
    steps.append(("to torch tensor of range [0, 1]", ToTensor()))
    if "cutout" in choices:
        steps.append(
            (
                f"cutout (n_holes={inp.CUTOUT_N}, length={inp.CUTOUT_LEN})",
                Cutout(inp.CUTOUT_N, inp.CUTOUT_LEN),
            )
        )
    steps += _normalize_step(cfg, choices)
    if "gaussian_noise" in choices:
        steps.append(
            (f"gaussian noise (mean={inp.GN_MEAN}, std={inp.GN_STD})", GaussianNoise(inp.GN_MEAN, inp.GN_STD))
        )
    return _announce(steps + _instance_norm_step(choices))


def _build_transform_test(cfg: CfgNode, choices: Sequence[str]) -> list[Callable]:
    print("Building transform_test")
    size = cfg.INPUT.SIZE
    interp = INTERPOLATION_MODES[cfg.INPUT.INTERPOLATION]
    steps: list[tuple[str, Callable]] = [
        (f"resize the smaller edge to {max(size)}", Resize(max(size), interpolation=interp)),
        (f"{size[0]}x{size[1]} center crop", CenterCrop(size)),
        ("to torch tensor of range [0, 1]", ToTensor()),
    ]
    return _announce(steps + _normalize_step(cfg, choices) + _instance_norm_step(choices))


def _normalize_step(cfg: CfgNode, choices: Sequence[str]) -> list[tuple[str, Callable]]:
    if "normalize" not in choices:
        return []
    mean, std = cfg.INPUT.PIXEL_MEAN, cfg.INPUT.PIXEL_STD
    return [(f"normalization (mean={mean}, std={std})", Normalize(mean=mean, std=std))]


def _instance_norm_step(choices: Sequence[str]) -> list[tuple[str, Callable]]:
    return [("instance normalization", InstanceNormalization())] if "instance_norm" in choices else []


# Steps whose output is a function of their input alone (no random draw): a pipeline of these gives an
# image the same tensor in every epoch, so what a frozen model computes from it can be kept.
DETERMINISTIC_STEPS = (Resize, CenterCrop, ToTensor, Normalize, InstanceNormalization)


def random_steps(transform: Callable | Sequence[Callable] | None) -> list[str]:
    """The steps of ``transform`` that may give an image another result each time it is read.

    A step counts as deterministic only if it is one of ``DETERMINISTIC_STEPS`` (nested ``Compose``
    and lists are walked): any other step, a custom one included, is reported, as is a missing
    transform (the loaders would return PIL images). Empty: the pipeline is deterministic.
    """
    if transform is None:
        return ["no transform (INPUT.NO_TRANSFORM)"]
    if isinstance(transform, (list, tuple)):
        return [name for step in transform for name in random_steps(step)]
    if isinstance(transform, Compose):
        return random_steps(transform.transforms)
    return [] if type(transform) in DETERMINISTIC_STEPS else [type(transform).__name__]


def _announce(steps: list[tuple[str, Callable]]) -> list[Callable]:
    """Print one ``+ <step>`` line per op (the pipeline then shows in log.txt) and return the ops."""
    for desc, _ in steps:
        print(f"+ {desc}")
    return [op for _, op in steps]
