"""MetaPrompt's training batch (the in-domain step and the domain-split steps): ``EXACT True`` against the
default path, on CPU with a random CLIP of ViT-B/16 shapes (fp32), the published config of each trainer.

A batch is ``forward_backward`` of the trainer: Meta_B2N runs the in-domain step (both towers) and up to
two episodes over the class halves (text tower: a meta-train step and a meta-test gradient each);
Meta_DG the in-domain step and one episode per source domain (image tower). ``EXACT True`` encodes the
frozen image features again in each B2N meta pass and runs the text prompts at 77 positions; the default
reuses the batch's frozen features and cuts the prompts. (The official forward also runs the tower a meta
pass does not train; both paths here skip it, which changes no number.) FLOPs are counted on one batch
of each path; times are medians of the paths interleaved batch by batch, the same batch and RNG state.

    python -m benchmarks.bench_metaprompt                                  # Meta_B2N and Meta_DG
    python -m benchmarks.bench_metaprompt --trainers Meta_B2N --classes 50 --batch-size 8 --repeats 3
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from types import SimpleNamespace

import torch

from benchmarks import bench_mmrl as b  # the FLOP counter
from benchmarks.bench_speed import IMAGENET
from benchmarks.param_counts import VIT_B16, config_for
from clip.model import CLIP
from dassl.optim import build_optimizer
from trainers.config import clip_trainers
from trainers.metaprompt.trainer import MetaPromptTrainer

PATHS = ("exact", "default")


def trainer_for(name: str, clip_model: CLIP, classes: list[str], exact: bool) -> MetaPromptTrainer:
    """The trainer's step around a fresh model: its model, optimizer and settings, no data or scheduler."""
    cfg = config_for(name, "dtd")
    cfg.EXACT = exact
    clip_model.exact = exact
    torch.manual_seed(0)
    model = clip_trainers()[name].model_factory(cfg, classes, clip_model)
    trainer: MetaPromptTrainer = object.__new__(clip_trainers()[name])
    trainer.cfg, trainer.model, trainer.device = cfg, model, torch.device("cpu")
    trainer._models, trainer._optims = {"model": model.learner}, {"model": build_optimizer(model.learner, cfg.OPTIM)}
    trainer.dm = SimpleNamespace(dataset=SimpleNamespace(classnames=classes))
    trainer.batch_idx, trainer.num_batches = 0, 2  # not the epoch's last batch: no scheduler step
    model.zero_shot()
    return trainer


def measure(name: str, classes: int, batch: int, repeats: int, clip_model: CLIP) -> dict[str, dict[str, float]]:
    names = IMAGENET[:classes]
    generator = torch.Generator().manual_seed(1)
    data = {
        "img": torch.randn(batch, 3, 224, 224, generator=generator),
        "label": torch.randint(classes, (batch,), generator=generator),
        "domain": torch.arange(batch) % 3,  # three source domains, as a DG batch of PACS, VLCS or OfficeHome
    }
    trainers = {p: trainer_for(name, clip_model, names, p == "exact") for p in PATHS}

    def step(path: str) -> None:
        clip_model.exact = path == "exact"
        random.seed(0)  # the same class halves on both paths
        trainers[path].forward_backward(data)

    flops = {p: b.count_flops(lambda p=p: step(p)) / batch / 1e9 for p in PATHS}
    times: dict[str, list[float]] = {p: [] for p in PATHS}
    for _ in range(repeats):
        for path in PATHS:
            start = time.perf_counter()
            step(path)
            times[path].append(time.perf_counter() - start)
    return {"gflops": flops, "seconds": {p: statistics.median(t) for p, t in times.items()},
            "ratio": statistics.median(e / d for e, d in zip(times["exact"], times["default"]))}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trainers", nargs="+", default=["Meta_B2N", "Meta_DG"], choices=["Meta_B2N", "Meta_DG"])
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, fp32 CPU, ViT-B/16 shapes, "
          f"{args.classes} classes, batch {args.batch_size}")  # fmt: skip
    torch.manual_seed(0)
    clip_model = CLIP(VIT_B16).requires_grad_(False)
    for name in args.trainers:
        m = measure(name, args.classes, args.batch_size, args.repeats, clip_model)
        f, t = m["gflops"], m["seconds"]
        print(f"{name:9s} GFLOP/img: exact {f['exact']:7.1f}  default {f['default']:7.1f} "
              f"({f['exact'] / f['default']:.2f}x)   batch: exact {t['exact']:.2f} s  default {t['default']:.2f} s "
              f"({m['ratio']:.2f}x)", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
