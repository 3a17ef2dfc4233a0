"""A small image–text world: coloured patterns with captions, in two visual domains.

A concept is a (colour, pattern) pair, e.g. "red stripes": a blob on a background, filled with the
pattern in that colour. Patterns are local (stripes, dots, ...), so a ViT with 8-pixel patches
learns them in minutes on a CPU, where global shape needs far longer.

The *source* domain plays the part of CLIP's web data: every concept, on plain grey backgrounds,
captioned with a few templates. The *target* domain is what the few-shot dataset is made of: the
same concepts under a fixed domain shift (another light, a cluttered background, coarser
patterns). Zero-shot transfer from source to target is real (the concepts and their names are
shared) but imperfect (the pixels moved), the regime where MMRL should help on the base classes
and keep zero-shot behaviour on the new ones.
"""

from __future__ import annotations

import json
import math
import os
import random
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

# Sorted names. With the B2N rule (the first half of the sorted labels is base), blue..orange are
# the base colours and pink..yellow the new ones: a new class pairs a known pattern with a colour
# the few-shot training never showed.
COLOURS: dict[str, tuple[int, int, int]] = {
    "blue": (40, 80, 230),
    "cyan": (40, 215, 225),
    "green": (40, 175, 60),
    "orange": (245, 140, 25),
    "pink": (250, 140, 200),
    "purple": (140, 50, 205),
    "red": (225, 35, 35),
    "yellow": (240, 225, 40),
}
PATTERNS = ("checks", "diagonals", "dots", "grid", "stripes", "waves")
CAPTION_TEMPLATES = (
    "a photo of a {}.",  # the template the trainer uses for a dataset without its own
    "a {}.",
    "a photo of a {size} {}.",
    "a {size} {} on a {bg} background.",
    "a picture of the {}.",
)
SUPERSAMPLE = 2  # drawn at 2x and box-downsampled, for anti-aliased edges


@dataclass(frozen=True)
class WorldConfig:
    """Everything that decides the pixels and the class list; ``target_*`` only shape the target domain."""

    n_colours: int = len(COLOURS)
    n_patterns: int = len(PATTERNS)
    image_size: int = 32
    blob_size: tuple[float, float] = (0.5, 0.95)  # blob diameter, fraction of the image
    source_period: tuple[float, float] = (4.0, 6.0)  # pattern period in pixels
    # Target domain: a fixed shift that the pretraining never showed.
    target_period: tuple[float, float] = (4.5, 7.0)
    target_light: tuple[float, float, float] = (1.0, 0.8, 0.55)  # warm light, per RGB channel
    target_clutter: float = 0.3  # opacity of the colourful background

    def classes(self) -> list[tuple[str, str]]:
        """(colour, pattern) pairs in the sorted order of their class names."""
        colours = sorted(COLOURS)[: self.n_colours]
        patterns = PATTERNS[: self.n_patterns]
        return sorted(((c, p) for c in colours for p in patterns), key=class_name)


def class_name(concept: tuple[str, str]) -> str:
    """Folder/class name as the real datasets spell it ("_" becomes a space in prompts)."""
    return f"{concept[0]}_{concept[1]}"


@lru_cache(maxsize=4)
def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (y, x) of a ``size`` x ``size`` image."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    return y, x


def pattern_mask(pattern: str, size: int, period: float, rng: random.Random) -> np.ndarray:
    """Where the pattern shows its colour (1) or its dark tone (0), on a ``size`` x ``size`` grid."""
    y, x = _grid(size)
    x = x + rng.uniform(0, period)
    y = y + rng.uniform(0, period)

    def phase(v: np.ndarray) -> np.ndarray:
        return (v / period) % 1.0

    if pattern == "checks":
        return ((phase(x) < 0.5) ^ (phase(y) < 0.5)).astype(np.float32)
    if pattern == "diagonals":
        return (phase((x + y) / math.sqrt(2)) < 0.5).astype(np.float32)
    if pattern == "dots":
        dx, dy = phase(x) - 0.5, phase(y) - 0.5
        return (dx * dx + dy * dy < 0.09).astype(np.float32)
    if pattern == "grid":
        return ((phase(x) < 0.3) | (phase(y) < 0.3)).astype(np.float32)
    if pattern == "stripes":
        return (phase(y) < 0.5).astype(np.float32)
    if pattern == "waves":
        return (phase(y + 0.35 * period * np.sin(2 * math.pi * x / (2 * period))) < 0.5).astype(np.float32)
    raise ValueError(f"unknown pattern {pattern!r}")


def _blob(size: int, diameter: float, rng: random.Random) -> np.ndarray:
    """A filled ellipse mask (aspect up to 1.3) at a random position that keeps it in the image."""
    rx = diameter / 2 * rng.uniform(0.85, 1.15)
    ry = diameter / 2 * rng.uniform(0.85, 1.15)
    cx = rng.uniform(min(rx, size / 2), max(size - rx, size / 2))
    cy = rng.uniform(min(ry, size / 2), max(size - ry, size / 2))
    y, x = _grid(size)
    return (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1).astype(np.float32)


def _draw(
    background: np.ndarray, concept: tuple[str, str], period: float, extent: float, rng: random.Random
) -> np.ndarray:
    """Paint the concept (blob of diameter ``extent`` x image) over a supersampled float background."""
    big = background.shape[0]
    blob = _blob(big, extent * big, rng)[..., None]
    colour = np.array([min(255, max(0, v + rng.randint(-15, 15))) for v in COLOURS[concept[0]]], dtype=np.float32)
    on = pattern_mask(concept[1], big, period * SUPERSAMPLE, rng)[..., None]
    fill = colour * (0.3 + 0.7 * on)  # the pattern's dark tone is the colour at 30 %
    return background * (1 - blob) + fill * blob


def _downsample(image: np.ndarray) -> np.ndarray:
    big = image.shape[0]
    small = image.reshape(big // SUPERSAMPLE, SUPERSAMPLE, big // SUPERSAMPLE, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(small, 0, 255).astype(np.uint8)


def render_source(cfg: WorldConfig, concept: tuple[str, str], rng: random.Random) -> tuple[np.ndarray, str]:
    """A source-domain image (uint8 H x W x 3) and a caption whose words describe this very image."""
    big = cfg.image_size * SUPERSAMPLE
    grey = rng.randint(20, 200)
    background = np.full((big, big, 3), grey, dtype=np.float32)
    extent = rng.uniform(*cfg.blob_size)
    image = _draw(background, concept, rng.uniform(*cfg.source_period), extent, rng)
    size = "small" if extent < sum(cfg.blob_size) / 2 else "large"
    bg = "dark" if grey < 110 else "light"
    caption = rng.choice(CAPTION_TEMPLATES).format(f"{concept[0]} {concept[1]}", size=size, bg=bg)
    return _downsample(image), caption


def _clutter(size: int, rng: random.Random) -> np.ndarray:
    """Low-frequency colourful noise: random colours on a coarse grid, upsampled smoothly."""
    grid = rng.choice((3, 4, 6))
    cells = np.array([[rng.randint(0, 255) for _ in range(3)] for _ in range(grid * grid)], dtype=np.uint8)
    image = Image.fromarray(cells.reshape(grid, grid, 3)).resize((size, size), Image.BICUBIC)
    return np.asarray(image, dtype=np.float32)


def render_target(cfg: WorldConfig, concept: tuple[str, str], rng: random.Random) -> np.ndarray:
    """A target-domain image: cluttered background, coarser pattern, warm light."""
    big = cfg.image_size * SUPERSAMPLE
    grey = np.full((big, big, 3), rng.randint(40, 170), dtype=np.float32)
    background = (1 - cfg.target_clutter) * grey + cfg.target_clutter * _clutter(big, rng)
    image = _draw(background, concept, rng.uniform(*cfg.target_period), rng.uniform(*cfg.blob_size), rng)
    return _downsample(image * np.array(cfg.target_light, dtype=np.float32))


def source_pool(cfg: WorldConfig, per_concept: int, seed: int, progress=None) -> tuple[np.ndarray, list[str]]:
    """``per_concept`` source images of every concept (uint8, concept-major: image i shows concept
    ``i // per_concept``) with their captions."""
    rng = random.Random(seed)
    concepts = cfg.classes()
    n = per_concept * len(concepts)
    images = np.empty((n, cfg.image_size, cfg.image_size, 3), dtype=np.uint8)
    captions = []
    for i in range(n):
        images[i], caption = render_source(cfg, concepts[i // per_concept], rng)
        captions.append(caption)
        if progress is not None:
            progress.update(1)
    return images, captions


def write_target_dataset(
    cfg: WorldConfig, dataset_dir: str, split_file: str, counts: tuple[int, int, int], seed: int, progress=None
) -> list[str]:
    """Write the target domain as a CoOp dataset: ``images/<class>/<n>.png`` plus the split json.

    ``counts`` = images per class in (train, val, test). Labels follow the sorted class names, as
    every real dataset's do. The json is written last, so a complete json means complete images.
    Returns the class names.
    """
    rng = random.Random(seed)
    split: dict[str, list] = {"train": [], "val": [], "test": []}
    names = []
    for label, concept in enumerate(cfg.classes()):
        name = class_name(concept)
        names.append(name)
        os.makedirs(os.path.join(dataset_dir, "images", name), exist_ok=True)
        n = 0
        for part, count in zip(split, counts):
            for _ in range(count):
                rel = f"{name}/{n:04d}.png"
                Image.fromarray(render_target(cfg, concept, rng)).save(os.path.join(dataset_dir, "images", rel))
                split[part].append([rel, label, name])
                n += 1
                if progress is not None:
                    progress.update(1)
    tmp = os.path.join(dataset_dir, split_file + ".tmp")
    with open(tmp, "w") as f:
        json.dump(split, f)
    os.replace(tmp, os.path.join(dataset_dir, split_file))
    return names
