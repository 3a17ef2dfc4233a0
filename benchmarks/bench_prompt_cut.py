"""The prompt cut for the prompt-learning methods: a training step with prompts cut after the longest EOT
(the default) against the official 77 positions (``EXACT True``), on CPU with a random CLIP of ViT-B/16
shapes (fp32), at the ImageNet-like setting of ``bench_speed.py`` (124 ImageNet class names, batch 4).
``--backbone rn50``: the same on a random CLIP of RN50 shapes for the methods that run on it (CoOp by
default), whose ``EXACT True`` also pools the image features from every query as the official code.

Each method's model comes from its registered factory with its published base-to-novel config. A step is
the model's forward, cross-entropy on its logits and the backward; parts of a method's own loss that use
frozen features computed outside ``forward`` (KgCoOp's teacher, PromptSRC's frozen passes) are left out,
so for PromptSRC the ratio is an upper bound. Frozen features a forward reads (TCP's class features, the
meta-network's input) are computed once at build, before anything is measured. FLOPs are counted on the
first (warm-up) step of each path,
independent of the machine's load; times are medians of the paths interleaved repeat by repeat.

    python -m benchmarks.bench_prompt_cut                     # ~12 min on 2 cores
    python -m benchmarks.bench_prompt_cut --methods CoOp --repeats 5
    python -m benchmarks.bench_prompt_cut --backbone rn50
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from benchmarks import bench_mmrl as b  # the FLOP counter
from benchmarks.bench_speed import IMAGENET
from benchmarks.param_counts import RN50, VIT_B16, config_for
from clip.model import CLIP, RESNET
from trainers.config import clip_trainers
from trainers.text_cache import FrozenFeatures

# PromptSRC is IVLP's prompts plus losses; its build alone encodes 60 templates x 124 classes at ViT-B/16
# (minutes on a CPU), so it is measured only when asked for (--methods PromptSRC).
METHODS = ("CoOp", "CoCoOp", "KgCoOp", "TCP", "IVLP", "MaPLe", "MultiModalAdapter", "Meta_B2N", "Meta_DG")
PATHS = ("exact", "cut")
BACKBONES = {"vit_b16": (VIT_B16, METHODS), "rn50": (RN50, ("CoOp",))}


def build(name: str, clip_model: CLIP) -> torch.nn.Module:
    """The method's model; frozen features it computes once (MetaPrompt's zero-shot head, KgCoOp's teacher)
    are computed here, outside the measured steps."""
    model = clip_trainers()[name].model_factory(config_for(name, "imagenet"), IMAGENET, clip_model).train()
    if clip_model.config.family == RESNET:
        clip_model.eval()  # as the trainers keep it: BatchNorm on its statistics
    for frozen in [v for v in vars(model).values() if isinstance(v, FrozenFeatures)]:
        frozen()  # one-time work, not a training step's
    return model


def step(model: torch.nn.Module, clip_model: CLIP, cut: bool, image: torch.Tensor, label: torch.Tensor) -> None:
    clip_model.exact = not cut
    out = model(image)
    logits = out[0] if isinstance(out, tuple) else out
    F.cross_entropy(logits, label).backward()
    model.zero_grad(set_to_none=True)


def measure(name: str, batch: int, repeats: int, clip_model: CLIP) -> dict[str, dict[str, float]]:
    """GFLOPs per image (counted on the warm-up round) and median seconds per step of each path."""
    torch.manual_seed(0)
    model = build(name, clip_model)
    size = clip_model.config.image_resolution
    image, label = torch.randn(batch, 3, size, size), torch.randint(len(IMAGENET), (batch,))
    flops = {p: b.count_flops(lambda p=p: step(model, clip_model, p == "cut", image, label)) / batch / 1e9
             for p in PATHS}  # fmt: skip
    times: dict[str, list[float]] = {p: [] for p in PATHS}
    for _ in range(repeats):
        for path in PATHS:
            start = time.perf_counter()
            step(model, clip_model, path == "cut", image, label)
            times[path].append(time.perf_counter() - start)
    return {"gflops": flops, "seconds": {p: statistics.median(t) for p, t in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", choices=sorted(BACKBONES), default="vit_b16")
    parser.add_argument("--methods", nargs="+", choices=sorted(clip_trainers()), help="default: all measured ones")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    config, methods = BACKBONES[args.backbone]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU, {args.backbone} shapes, "
          f"{len(IMAGENET)} ImageNet classes, batch {args.batch_size}")  # fmt: skip
    torch.manual_seed(0)
    clip_model = CLIP(config).eval().requires_grad_(False)
    for name in args.methods or methods:
        m = measure(name, args.batch_size, args.repeats, clip_model)
        f, t = m["gflops"], m["seconds"]
        line = f"{name:18s} GFLOP/img: exact {f['exact']:7.1f}  cut {f['cut']:7.1f} ({f['exact'] / f['cut']:.2f}x)"
        line += f"   step: exact {t['exact']:.2f} s  cut {t['cut']:.2f} s ({t['exact'] / t['cut']:.2f}x)"
        print(line, flush=True)

if __name__ == "__main__":
    main()
