"""Evaluation speed of every registered method against its official test step: images/s, no grad.

Each method's model comes from its registered factory with its published config (fp32), on one random
CLIP of ViT-B/16 shapes. Two paths of the same model and weights, interleaved round by round:

- ``official``: what the official code computes per test batch, on our modules in the official op order
  (``EXACT True``: prompts at 77 tokens). Read from the official repositories: CoOp, CoCoOp and KgCoOp
  (KaiyangZhou/CoOp, htyao89/KgCoOp), TCP (htyao89/Textual-based_Class-aware_prompt_tuning), IVLP and MaPLe
  (muzairkhattak/multimodal-prompt-learning), PromptSRC (muzairkhattak/PromptSRC) and MetaPrompt
  (Vill-Lab/2024-TIP-MetaPrompt, which also runs the frozen image tower beside the prompted one) encode the
  text of every class again for every batch (CoCoOp for every image); zero-shot CLIP, VPT, ProVP
  (MCG-NJU/ProVP), MMA (ZjjConan/Multi-Modal-Adapter, after its first batch) and the masked-MHA adapter
  (dqmis/clip-mma) keep their text features; MMRL (yunncheng/MMRL) keeps them after its first batch and runs
  all 12 image blocks; lpclip scores image features with scikit-learn's decision function (float64 numpy).
  Each trainer states it (``OFFICIAL_TEST_STEP``, and where its model's forward does less,
  ``official_test_step``); ``OFFICIAL_STEP`` holds the statements of the methods written before trainers
  declared them.
- ``ours``: the trainer's own ``model_inference`` under ``torch.no_grad()``, as Dassl's test loop, with
  the default settings (``EXACT False``).

The one-time work of both (text features kept after the first batch, frozen features encoded at build)
is done at build and in an untimed warm-up round; a second untimed round counts each path's FLOPs per
image. A speed-up is the median over rounds of the paired ratio official time / ours time.

Default setting: the first 40 ImageNet class names ("a photo of a {}.") at batch 4, i.e. ImageNet's 10
classes per image at Table 6's test batch of 100 (1000 / 100): the text work per image that the
per-batch text encoders of CoOp, KgCoOp, IVLP, MaPLe and PromptSRC pay there.

    python -m benchmarks.bench_eval                          # all methods, ~30 min on 1 of the shared cores
    python -m benchmarks.bench_eval --methods CoOp MMRL --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from benchmarks import bench_mmrl as b
from benchmarks.bench_speed import IMAGENET
from benchmarks.param_counts import VIT_B16, config_for
from clip.model import CLIP, CLIPConfig
from trainers.base import CLIPTrainer
from trainers.config import clip_trainers
from trainers.mmrl import scored_logits

PATHS = ("official", "ours")
RECOMPUTE = "text of every class at 77 tokens, every batch; image tower"
PROMPTED = "prompted text of every class at 77 tokens, every batch; prompted image tower"
OFFICIAL_STEP = {
    "CoOp": RECOMPUTE,
    "CoCoOp": "text of every class at 77 tokens for every image; image tower",
    "KgCoOp": RECOMPUTE + "; cosine to the frozen class features",
    "TCP": RECOMPUTE + " (class-aware tokens from the meta-net before block 9)",
    "IVLP": PROMPTED,
    "MaPLe": PROMPTED,
    "PromptSRC": PROMPTED,
    "VPT": "text features fixed at build; prompted image tower",
    "ProVP": "text features fixed at build; prompted image tower",
    "ZeroshotCLIP": "text features fixed at build; image tower",
    "ZeroshotCLIP2": "ensembled text features fixed at build; image tower",
    "MultiModalAdapter": "text features kept after the first batch; adapted image tower",
    "MaskedMHAAdapter": "text features precomputed; image tower; adapter over classes + image",
    "LinearProbeCLIP": "image tower; scikit-learn decision function (float64 numpy)",
    "MMRL": "text features kept after the first batch; image tower, all 12 blocks, with the tokens",
    "MMRLpp": "text features kept after the first batch; image tower, all 12 blocks, with the tokens",
    "Meta_B2N": PROMPTED + " and the frozen one; zero-shot head encoded at build",
    "Meta_DG": PROMPTED + " and the frozen one; zero-shot head encoded at build",
}


def official_step(name: str) -> str:
    """The method's official test step in words: its trainer's statement, else ``OFFICIAL_STEP``'s ("?": none)."""
    return clip_trainers()[name].OFFICIAL_TEST_STEP or OFFICIAL_STEP.get(name, "?")


class Bench:
    """One method's trainer (its hooks and ``model_inference``, without data) around a built model."""

    def __init__(self, name: str, clip_model: CLIP, classnames: list[str], device: torch.device) -> None:
        cls = clip_trainers()[name]
        cfg = config_for(name, "imagenet")
        clip_model.exact = cfg.EXACT  # what CLIPTrainer.build_clip sets
        # Evaluation needs no gradient anywhere (and the FLOP counter's module hooks fail on prompt views otherwise).
        model = cls.model_factory(cfg, classnames, clip_model).to(device).eval().requires_grad_(False)
        trainer: CLIPTrainer = object.__new__(cls)  # only the model hooks are used: no data, no optimizer
        trainer.cfg, trainer.model, trainer.device = cfg, model, device
        self.name, self.trainer, self.model, self.clip = name, trainer, model, clip_model
        self.kept_text: Tensor | None = None

    def ours(self, image: Tensor) -> Tensor:
        self.clip.exact = self.trainer.cfg.EXACT
        return self.trainer.model_inference(image)

    def official(self, image: Tensor) -> Tensor:
        """The official test step's work (``OFFICIAL_STEP``), in the official op order."""
        self.clip.exact = True  # prompts at 77 tokens, as the official text encoders run them
        model, name = self.model, self.name
        if name in ("MMRL", "MMRLpp"):
            if self.kept_text is None:  # the official code keeps the first batch's text features
                self.kept_text = b.reference_forward(model, image[:1], zero_shot=False).text_features
            out = b.reference_forward(model, image, zero_shot=False, text=self.kept_text)
            cfg = self.trainer.cfg
            return scored_logits(out, cfg.TASK, cfg.DATASET.SUBSAMPLE_CLASSES, cfg.DATASET.NAME)
        if name == "KgCoOp":
            with model.eval_text.suspended():  # the official code encodes the class prompts in every test batch
                logits, text = model(image)
            teacher = model.teacher() / model.teacher().norm(dim=-1, keepdim=True)
            _score = 1.0 - torch.mean(F.cosine_similarity(text, teacher, dim=1, eps=1e-07))  # as the official
            return logits
        if name == "TCP":  # the official forward encodes the prompts again for every batch
            return model(image, text=model.class_features())[0]
        if name in ("Meta_B2N", "Meta_DG"):  # ours keeps the class features at evaluation; the official forward
            frozen = model.frozen_image_features(image)  # encodes them again for every batch
            return 0.5 * (model.image_logits(image) + model.text_logits(frozen))
        if name == "LinearProbeCLIP":
            features = self.clip.encode_image(image.type(self.clip.dtype)).double().cpu().numpy()
            head = model.learner
            decision = features @ head.weight.detach().cpu().numpy().T + head.bias.detach().cpu().numpy()
            return torch.from_numpy(np.ascontiguousarray(decision))
        step = type(self.trainer).official_test_step
        if step is not None:  # the method models the official work itself (its official.py)
            return step(model, image)
        # The model's own forward with 77-token prompts is the official work: text again every batch
        # where the official code does that (ours keeps it at evaluation: suspended here), kept where it
        # keeps it (checked per method in the tests).
        if OFFICIAL_STEP[name].startswith((RECOMPUTE, PROMPTED)) and hasattr(model, "eval_text"):
            with model.eval_text.suspended():
                return model(image)
        return model(image)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def measure(bench: Bench, image: Tensor, repeats: int) -> dict:
    """Seconds of ``repeats`` interleaved rounds after a warm-up round (the one-time work: text features kept
    after the first batch) and a round that counts each path's GFLOPs per image (the steady state)."""
    device = image.device
    runs: dict[str, Callable[[], Tensor]] = {
        "official": lambda: bench.official(image),
        "ours": lambda: bench.ours(image),
    }
    for run in runs.values():
        run()
    flops = {p: b.count_flops(run) / len(image) / 1e9 for p, run in runs.items()}
    times: dict[str, list[float]] = {p: [] for p in PATHS}
    for _ in range(repeats):
        for path, run in runs.items():
            sync(device)
            start = time.perf_counter()
            run()
            sync(device)
            times[path].append(time.perf_counter() - start)
    return {
        "gflop_per_image": flops,
        "images_per_s": {p: len(image) / statistics.median(t) for p, t in times.items()},
        "speedup": statistics.median(o / t for o, t in zip(times["official"], times["ours"])),
        "seconds": times,
    }


def run(names: list[str], arch: CLIPConfig, classes: list[str], batch: int, repeats: int,
        device: torch.device) -> list[dict]:  # fmt: skip
    torch.manual_seed(0)
    clip_model = CLIP(arch).eval().requires_grad_(False).to(device)
    size = arch.image_resolution
    image = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    rows = []
    for name in names:
        start = time.perf_counter()
        torch.manual_seed(0)
        bench = Bench(name, clip_model, classes, device)
        built = time.perf_counter() - start
        row = {"method": name, "official_step": official_step(name), "build_s": built,
               **measure(bench, image, repeats)}  # fmt: skip
        rows.append(row)
        ips, f = row["images_per_s"], row["gflop_per_image"]
        print(f"{name:18s} official {ips['official']:7.2f} img/s ({f['official']:6.1f} GFLOP/img)   "
              f"ours {ips['ours']:7.2f} img/s ({f['ours']:6.1f})   {row['speedup']:.2f}x", flush=True)  # fmt: skip
        del bench
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| method | official test step | official img/s | ours img/s | ours vs official | GFLOP/img official | ours |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ips, f = r["images_per_s"], r["gflop_per_image"]
        lines.append(f"| {r['method']} | {r['official_step']} | {ips['official']:.2f} | {ips['ours']:.2f} | "
                     f"{r['speedup']:.2f}x | {f['official']:.1f} | {f['ours']:.1f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", choices=sorted(clip_trainers()), default=sorted(clip_trainers()))
    p.add_argument("--classes", type=int, default=40, help="the first N ImageNet class names (at most 124)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3, help="timed rounds after the warm-up round")
    # One thread: on a shared, oversubscribed CPU every parallel op of 2 threads waits for both to be scheduled,
    # which penalises many small ops (the cut text path) far more than a few large ones.
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--json", default="")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    load = os.getloadavg()
    print(f"torch {torch.__version__}, {args.threads} threads, fp32 {device}, ViT-B/16 shapes, random weights, "
          f"{args.classes} ImageNet classes, batch {args.batch_size}, {args.repeats} rounds; load {load}")  # fmt: skip
    rows = run(args.methods, VIT_B16, IMAGENET[: args.classes], args.batch_size, args.repeats, device)
    print(f"load {os.getloadavg()}\n\n" + markdown(rows))
    if args.json:
        b.write_json(args.json, {"args": vars(args), "load_before": load, "rows": rows})


if __name__ == "__main__":
    main()
