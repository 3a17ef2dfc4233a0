"""Learnable parameters of every registered method at ViT-B/16, for README's methods table.

Each method's model is built by its own registered factory, with its published base-to-novel config (else
few-shot, 16 shots), on one random CLIP of ViT-B/16 shapes (built once, ~600 MB).

    python -m benchmarks.param_counts
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from yacs.config import CfgNode

from benchmarks.bench_mmrl import ARCHS
from clip.model import CLIP
from dassl.config import get_cfg_default
from trainers.config import clip_trainers, extend_cfg

REPO = Path(__file__).resolve().parents[1]

VIT_B16 = ARCHS["vit_b16"]
CLASSES = [f"class {i}" for i in range(10)]


def config_for(name: str, dataset: str = "imagenet") -> CfgNode:
    """The method's published base-to-novel config (else few-shot, 16 shots) on ``dataset``, in fp32."""
    cls = clip_trainers()[name]
    folder = REPO / "configs" / "trainers" / name
    protocols = yaml.safe_load((folder / "protocols.yaml").read_text())
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "datasets" / f"{dataset}.yaml"))
    entry = next(protocols[p] for p in ("base2new", "few_shot", "cross_datasets") if p in protocols)
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
    torch.manual_seed(0)
    clip_model = CLIP(VIT_B16).eval().requires_grad_(False)
    counts = {name: learnable(name, clip_model) for name in sorted(clip_trainers())}
    print("\n".join(f"{name:20s} {count:>12,}" for name, count in counts.items()))


if __name__ == "__main__":
    main()
