"""Contrastive pretraining of a tiny CLIP on the source domain, cached by a hash of its settings.

The model is the project's own ``clip.model.CLIP`` at a small width (12 layers in both towers, as
MMRL's REP_LAYERS 6..12 need), trained with CLIP's exact symmetric InfoNCE loss and learnable
temperature (CLIP's init 1/0.07, clamped at 100). In this short run the scale only reaches about
18, whereas MMRL scores with a fixed 100 (real CLIP's final value); starting it at 100 instead
halved what the tiny model learned, so it is left to CLIP's recipe. The weights are saved as a
plain state dict, which the trainers load with ``MODEL.BACKBONE.PATH``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import tempfile
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from clip import clip
from clip.model import CLIP, CLIPConfig

from .world import WorldConfig, source_pool

# CLIP's input normalisation, as in the trainer YAMLs (INPUT.PIXEL_MEAN / PIXEL_STD).
PIXEL_MEAN = (0.48145466, 0.4578275, 0.40821073)
PIXEL_STD = (0.26862954, 0.26130258, 0.27577711)
CACHE_VERSION = 1  # bump when the world or the training code changes what a cached model would be


@dataclass(frozen=True)
class PretrainConfig:
    """Model size and optimisation of the tiny CLIP."""

    width: int = 64  # both towers; a multiple of 64 (heads = width // 64)
    embed_dim: int = 64
    patch: int = 8
    layers: int = 12
    per_concept: int = 200  # source images rendered once per concept, then sampled with replacement
    steps: int = 600
    batch_size: int = 48  # at most one image per concept, so CLIP's loss sees no false negatives
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup: int = 50
    seed: int = 0


def clip_config(world: WorldConfig, cfg: PretrainConfig) -> CLIPConfig:
    return CLIPConfig(
        embed_dim=cfg.embed_dim,
        image_resolution=world.image_size,
        vision_layers=cfg.layers,
        vision_width=cfg.width,
        vision_patch_size=cfg.patch,
        context_length=77,  # the trainers tokenize to 77
        vocab_size=49408,  # OpenAI's BPE, so the real tokenizer serves the demo too
        transformer_width=cfg.width,
        transformer_heads=cfg.width // 64,
        transformer_layers=cfg.layers,
    )


def cache_key(world: WorldConfig, cfg: PretrainConfig) -> str:
    """Hash of what the pretrained weights depend on (the target domain's settings are not)."""
    source = {k: v for k, v in dataclasses.asdict(world).items() if not k.startswith("target_")}
    settings = {"world": source, "pretrain": dataclasses.asdict(cfg), "version": CACHE_VERSION}
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def default_cache_dir() -> str:
    return os.environ.get("MMRL_DEMO_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "mmrl_demo"))


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 N x H x W x 3 -> normalised float N x 3 x H x W, as the trainer's test transform gives."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return (x - mean) / std


def tokenize_trimmed(texts: list[str]) -> torch.Tensor:
    """Tokens cut after the longest EOT: with the causal mask, the EOT features are unchanged."""
    tokens = clip.tokenize(texts)
    return tokens[:, : int(tokens.argmax(dim=-1).max()) + 1]


def clip_loss(model: CLIP, images: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """CLIP's loss: mean of the image->text and text->image cross-entropies over the batch."""
    logits_per_image, logits_per_text = model(images, tokens)
    labels = torch.arange(images.shape[0])
    return (F.cross_entropy(logits_per_image, labels) + F.cross_entropy(logits_per_text, labels)) / 2


def _optimizer(model: CLIP, cfg: PretrainConfig) -> torch.optim.Optimizer:
    """AdamW; as CLIP, no weight decay on gains, biases, embeddings and the temperature."""
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.ndim >= 2 and "embedding" not in n]
    rest = [p for n, p in params if not (p.ndim >= 2 and "embedding" not in n)]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.98), eps=1e-6)


def _lr(step: int, cfg: PretrainConfig) -> float:
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.5 * cfg.lr * (1 + math.cos(math.pi * progress))


def pretrain(world: WorldConfig, cfg: PretrainConfig) -> CLIP:
    """Render the source pool, then train a tiny CLIP on it from scratch."""
    torch.manual_seed(cfg.seed)
    n_concepts = len(world.classes())
    with tqdm(total=cfg.per_concept * n_concepts, desc="render source images", unit="img") as bar:
        images, captions = source_pool(world, cfg.per_concept, cfg.seed, bar)
    pixels = to_tensor(images)
    tokens = tokenize_trimmed(captions)
    model = CLIP(clip_config(world, cfg)).train()
    # The world uses a few dozen of the 49408 token rows: the text tower learns on top of fixed
    # random token vectors, which spares a fifth of every step (the table's dense AdamW update).
    model.token_embedding.requires_grad_(False)
    optim = _optimizer(model, cfg)
    generator = torch.Generator().manual_seed(cfg.seed)
    max_scale = math.log(100)
    batch_size = min(cfg.batch_size, n_concepts)
    with tqdm(range(cfg.steps), desc="pretrain tiny CLIP", unit="step") as bar:
        for step in bar:
            for group in optim.param_groups:
                group["lr"] = _lr(step, cfg)
            concepts = torch.randperm(n_concepts, generator=generator)[:batch_size]
            idx = concepts * cfg.per_concept + torch.randint(cfg.per_concept, (len(concepts),), generator=generator)
            loss = clip_loss(model, pixels[idx], tokens[idx])
            optim.zero_grad(set_to_none=True)
            loss.backward()
            optim.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, max_scale)
            if step % 10 == 0:
                bar.set_postfix(loss=f"{loss.item():.3f}", scale=f"{model.logit_scale.exp().item():.1f}")
    return model.eval()


def _atomic_save(state_dict: dict, path: str) -> None:
    """Write to a temporary file in the same folder, then rename: no reader sees a partial file."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    os.close(fd)
    try:
        torch.save(state_dict, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise


def pretrained_weights(world: WorldConfig, cfg: PretrainConfig, cache_dir: str | None = None) -> tuple[str, bool]:
    """Path of the cached tiny CLIP for these settings, pretraining it first if needed; (path, was cached)."""
    path = os.path.join(cache_dir or default_cache_dir(), f"tiny_clip-{cache_key(world, cfg)}.pt")
    if os.path.isfile(path):
        return path, True
    start = time.time()
    model = pretrain(world, cfg)
    _atomic_save(model.state_dict(), path)
    print(f"Pretrained in {time.time() - start:.0f} s; saved to {path}")
    return path, False
