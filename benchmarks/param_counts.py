"""Learnable parameters of every registered method at ViT-B/16, and at RN50 for the methods that run on it,
for README's methods table.

Each method's model is built by its own registered factory, with its published base-to-novel config (else
few-shot, 16 shots), on one random CLIP of ViT-B/16 shapes and one of RN50 shapes (built once each, ~600 and
~400 MB).

    python -m benchmarks.param_counts
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from yacs.config import CfgNode

from benchmarks.bench_mmrl import ARCHS
from clip.model import CLIP, RESNET, CLIPConfig
from dassl.config import get_cfg_default
from trainers.config import clip_trainers, extend_cfg

REPO = Path(__file__).resolve().parents[1]

VIT_B16 = ARCHS["vit_b16"]
RN50 = CLIPConfig(  # OpenAI's RN50.pt, as its tensor shapes give it
    embed_dim=1024,
    image_resolution=224,
    vision_layers=(3, 4, 6, 3),
    vision_width=64,
    vision_patch_size=None,
    context_length=77,
    vocab_size=49408,
    transformer_width=512,
    transformer_heads=8,
    transformer_layers=12,
)
CLASSES = [f"class {i}" for i in range(10)]


def config_for(name: str, dataset: str = "imagenet") -> CfgNode:
    """The method's published base-to-novel config (else few-shot, 16 shots) on ``dataset``, in fp32."""
    cls = clip_trainers()[name]
    folder = REPO / "configs" / "trainers" / name
    protocols = yaml.safe_load((folder / "protocols.yaml").read_text())
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "datasets" / f"{dataset}.yaml"))
    entry = next(protocols[p] for p in ("base2new", "few_shot", "cross_datasets", "dg") if p in protocols)
    config = entry["config"] if isinstance(entry["config"], str) else entry["config"][max(entry["config"])]
    cfg.merge_from_file(str(folder / f"{config}.yaml"))
    cfg.merge_from_list(["TRAINER.NAME", name, *[str(v) for v in entry.get("opts", [])]])
    if cls.NODE and "PREC" in cfg.TRAINER.get(cls.NODE, {}):
        cfg.TRAINER[cls.NODE].PREC = "fp32"
    return cfg


def learnable(name: str, clip_model: CLIP) -> int:
    model = clip_trainers()[name].model_factory(config_for(name), CLASSES, clip_model)
    return sum(p.numel() for p in model.learner.parameters() if p.requires_grad)


def main() -> None:
    names = sorted(clip_trainers())
    counts: dict[str, dict[str, int]] = {}
    for arch, config in (("ViT-B/16", VIT_B16), ("RN50", RN50)):
        torch.manual_seed(0)
        clip_model = CLIP(config).eval().requires_grad_(False)
        runs = [n for n in names if config.family in clip_trainers()[n].BACKBONES]
        counts[arch] = {name: learnable(name, clip_model) for name in runs}
        del clip_model
    print(f"{'method':20s} {'ViT-B/16':>12} {'RN50':>12}")
    for name in names:
        cells = [f"{counts[a][name]:>12,}" if name in counts[a] else f"{'-':>12}" for a in ("ViT-B/16", "RN50")]
        print(f"{name:20s} " + " ".join(cells) + ("" if RESNET in clip_trainers()[name].BACKBONES else "  (ViT only)"))


if __name__ == "__main__":
    main()
