"""GPU check of MMRL / MMRL++: one command, at most 8 minutes on one GPU, nothing downloaded.

A random CLIP of ViT-B/16 shapes (224 px; or a local OpenAI file with ``--weights``) and synthetic
images. Sections, each failing soft (an error is reported in its table and the others still run):

- ``env``: the GPU, torch, CUDA and cuDNN versions, the cuDNN / TF32 flags in force;
- ``numerics``: the AMP and fp16 paths against the recompute-everything reference (``official``, the
  official code's structure, ``bench_mmrl.reference_forward``) on the same weights and batch, and all
  of them against that reference in fp32 on the same (for fp16: the fp16-rounded) weights: max |dlogit|
  and argmax agreement, for a training forward (autocast as the trainer) and an evaluation forward;
- ``memory``: peak GPU memory of one AMP training step at 1000 classes, batch 32: default,
  ``TEXT_CHUNK``, ``EXACT True``;
- ``inference``: images/s at batch 100 (Table 6's FPS setting), text features cached as both codes do;
- ``train``: ms/image of a training step (forward, MMRL loss, backward, AdamW, as
  ``CLIPTrainer.forward_backward``) of the official structure, ``EXACT True`` and the default, in AMP
  and fp16, at DTD-like (24 classes, batch 4) and ImageNet (1000 classes, batch 32, Table 6) settings;
  speed-ups are medians of per-round ratios against the official structure timed in the same process.

Time is budgeted: ``--budget`` seconds from the start of the process (default 420 s, so the run ends
within 8 minutes); each section gets a share of what is left, and each timing group runs as many
interleaved rounds as fit in its share (at least ``min_rounds``), measured on its first timed round.
What does not fit is reported as skipped. The JSON is rewritten after every section (atomically).

    python -m benchmarks.gpu_check                                 # on a GPU: <= 8 min
    python -m benchmarks.gpu_check --weights ViT-B-16.pt --json output/gpu_check_real.json   # real CLIP weights
    python -m benchmarks.gpu_check --smoke                         # CPU, tiny shapes, ~30 s (the tests run it)
"""

from __future__ import annotations

import argparse
import copy
import datetime
import gc
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from yacs.config import CfgNode

from benchmarks import bench_mmrl as b
from benchmarks.bench_speed import DTD, imagenet_like
from clip.clip import load_state_dict_from_file
from clip.model import CLIP, CLIPConfig, build_model, convert_weights
from dassl.optim import build_optimizer
from trainers.base import grad_scaler
from trainers.mmrl import MMRLModel, Outputs, mmrl_loss

STARTED = time.monotonic()
PATHS = ("official", "exact", "default")  # the official structure, EXACT True, the default
LABELS = {"official": "official structure", "exact": "EXACT True", "default": "default"}
LOGIT_FIELDS = ("logits", "logits_fusion")
# fp32 agreement bound (logits span +-100; fp32 rounding is ~1e-5) and the factor by which a path may
# exceed the official structure's own error against fp32 before the check flags it.
FP32_ATOL = 1e-3
ERROR_FACTOR = 4.0
SECTIONS = ("env", "numerics", "memory", "inference", "train")
WEIGHTS = {"env": 0.0, "numerics": 0.1, "memory": 0.15, "inference": 0.15, "train": 0.6}  # budget shares


@dataclass(frozen=True)
class Shapes:
    """The sizes of one mode: the full check (ViT-B/16) or the smoke run (tiny CLIP)."""

    arch: CLIPConfig
    train: dict[str, tuple[str, list[str], int]]  # setting -> (dataset, class names, batch)
    eval_classes: int
    eval_batch: int
    memory_classes: int
    memory_batch: int
    memory_chunk: int
    numerics_batch: int
    min_rounds: int
    max_rounds: int


FULL = Shapes(
    b.ARCHS["vit_b16"],
    {"dtd": ("DescribableTextures", DTD[:24], 4), "imagenet": ("ImageNet", imagenet_like(1000), 32)},
    eval_classes=1000, eval_batch=100, memory_classes=1000, memory_batch=32, memory_chunk=100,
    numerics_batch=32, min_rounds=3, max_rounds=30,
)  # fmt: skip
# The smallest CLIP with 12 layers per tower (MMRL's REP_LAYERS 6..12) and one attention head each.
SMOKE_ARCH = CLIPConfig(embed_dim=32, image_resolution=32, vision_layers=12, vision_width=64, vision_patch_size=16,
                        context_length=77, vocab_size=49408, transformer_width=32, transformer_heads=1,
                        transformer_layers=12)  # fmt: skip
SMOKE = Shapes(
    SMOKE_ARCH,
    {"dtd": ("DescribableTextures", DTD[:24], 4), "imagenet": ("ImageNet", imagenet_like(40), 8)},
    eval_classes=40, eval_batch=10, memory_classes=40, memory_batch=8, memory_chunk=16,
    numerics_batch=8, min_rounds=1, max_rounds=1,
)  # fmt: skip


class Clock:
    """The process-wide deadline and the share of it a section or a group may use."""

    def __init__(self, budget_s: float, start: float = STARTED) -> None:
        self.deadline = start + budget_s

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def until(self, end: float) -> float:
        """Seconds to ``end`` (a ``time.monotonic`` value), never past the deadline."""
        return min(end, self.deadline) - time.monotonic()


def plan_rounds(first_round_s: float, budget_s: float, least: int, most: int) -> int:
    """Timed rounds for a group whose first round took ``first_round_s``: as many as fit, within bounds."""
    fit = int(budget_s / first_round_s) if first_round_s > 0 else most
    return max(least, min(most, fit))


def sync(device: torch.device) -> None:
    """Wait for the device's queued work, so a wall-clock interval covers it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def free(device: torch.device) -> None:
    """Release what the last group left (after an out-of-memory error too)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def autocast(prec: str, device: torch.device) -> AbstractContextManager:
    """The training step's autocast: ``CLIPTrainer`` runs ``torch.autocast("cuda")`` (fp16) for PREC amp.
    On the CPU (smoke) the same fp16 autocast, so the branch runs everywhere."""
    return torch.autocast(device.type, dtype=torch.float16) if prec == "amp" else nullcontext()


def scaler_for(prec: str, device: torch.device) -> torch.amp.GradScaler | None:
    """The trainer's GradScaler for amp (CUDA), a CPU one in the smoke run, none otherwise."""
    if prec != "amp":
        return None
    return grad_scaler() if device.type == "cuda" else torch.amp.GradScaler("cpu")


class Clips:
    """One CLIP for the whole run and its precision variants, each built once.

    fp32 and amp run the fp32 weights (the trainer's ``.float()``); fp16 runs the weights cast by
    ``convert_weights``, as the official code's ``clip.build_model`` leaves them; ``reference(prec)`` is
    an fp32 copy of the same values (for fp16: the rounded ones), the numerics' ground truth.
    """

    def __init__(self, arch: CLIPConfig, device: torch.device, weights: str = "") -> None:
        torch.manual_seed(0)
        base = build_model(load_state_dict_from_file(weights)) if weights else CLIP(arch)
        self.device = device
        self.fp32 = base.float().eval().requires_grad_(False).to(device)
        self._fp16: CLIP | None = None
        self._fp16_as_fp32: CLIP | None = None

    def get(self, prec: str) -> CLIP:
        if prec != "fp16":
            return self.fp32
        if self._fp16 is None:
            self._fp16 = copy.deepcopy(self.fp32)
            convert_weights(self._fp16)
        return self._fp16

    def reference(self, prec: str) -> CLIP:
        if prec != "fp16":
            return self.fp32
        if self._fp16_as_fp32 is None:
            self._fp16_as_fp32 = copy.deepcopy(self.get("fp16")).float()
        return self._fp16_as_fp32


@dataclass
class Context:
    args: argparse.Namespace
    shapes: Shapes
    device: torch.device
    clock: Clock
    clips: Clips | None = None

    def clip(self) -> Clips:
        if self.clips is None:
            self.clips = Clips(self.shapes.arch, self.device, self.args.weights)
        return self.clips


# ----------------------------------------------------------------------------------------------
# Models and steps.


def node(cfg: CfgNode) -> CfgNode:
    return cfg.TRAINER[b.TRAINERS_BY_NAME[cfg.TRAINER.NAME].NODE]


def build(method: str, clip_model: CLIP, dataset: str, names: list[str], exact: bool = True, chunk: int = 0):
    """(model, cfg): the method's registered factory with its vit_b16 config, ``EXACT`` and ``TEXT_CHUNK``."""
    cfg = b.config_for(method)
    cfg.DATASET.NAME = dataset
    cfg.EXACT = exact
    node(cfg).TEXT_CHUNK = chunk
    model = b.TRAINERS_BY_NAME[cfg.TRAINER.NAME].model_factory(cfg, names, clip_model)
    return model.to(clip_model.logit_scale.device), cfg


def default_twin(exact: MMRLModel) -> MMRLModel:
    """The default (fast) model on the same CLIP and learner, so one optimizer serves both."""
    return MMRLModel(exact.clip, exact.learner, exact.rep_layers, exact.tokenized_prompts, exact.alpha,
                     exact.injector, exact=False, text_chunk=exact.text_chunk)  # fmt: skip


def forward(path: str, exact: MMRLModel, default: MMRLModel, image: Tensor, zero_shot: bool,
            text: Tensor | None = None) -> Outputs:  # fmt: skip
    if path == "official":
        return b.reference_forward(exact, image, zero_shot=zero_shot, text=text)
    return (exact if path == "exact" else default)(image, zero_shot=zero_shot)


def zero_shot_text(model: MMRLModel) -> Tensor:
    """w0 as ``MMRLModel.text_features_zs``: the frozen CLIP's normalised features of the class prompts (77 tokens)."""
    with torch.no_grad():
        return b.normalise(model.clip.encode_text(model.tokenized_prompts))


def batch(shapes: Shapes, clip_model: CLIP, size: int, classes: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Synthetic images (normal noise, as normalised pixels) and labels, the same on every device."""
    g = torch.Generator().manual_seed(size * 1000 + classes)
    px = clip_model.visual.input_resolution
    image = torch.randn(size, 3, px, px, generator=g)
    return image.to(device), torch.randint(classes, (size,), generator=g).to(device)


class Step:
    """One training step of a path, as ``CLIPTrainer.forward_backward``: autocast for amp, the MMRL loss,
    zero_grad, backward (scaled for amp), the optimizer step, ``loss.item()`` (the log line's sync)."""

    def __init__(self, prec: str, device: torch.device, exact: MMRLModel, default: MMRLModel, cfg: CfgNode,
                 image: Tensor, label: Tensor) -> None:  # fmt: skip
        self.prec, self.device, self.exact, self.default = prec, device, exact, default
        self.image, self.label = image, label
        self.settings = node(cfg)
        self.w0 = zero_shot_text(exact)
        self.optim = build_optimizer(exact.learner, cfg.OPTIM)
        self.scaler = scaler_for(prec, device)
        self.finite: dict[str, bool] = {}

    def __call__(self, path: str) -> float:
        s = self.settings
        with autocast(self.prec, self.device):
            out = forward(path, self.exact, self.default, self.image, zero_shot=True)
            loss = mmrl_loss(out, self.label, self.w0, s.ALPHA, s.REG_WEIGHT)
        self.optim.zero_grad()
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optim)
            self.scaler.update()
        else:
            loss.backward()
            self.optim.step()
        value = loss.item()
        self.finite[path] = self.finite.get(path, True) and math.isfinite(value)
        return value


def interleaved(runs: dict[str, Callable[[], object]], end: float, shapes: Shapes,
                device: torch.device) -> tuple[dict[str, list[float]], int]:  # fmt: skip
    """Seconds of each run: one untimed warm-up round (cuDNN autotuning, allocations, caches), then
    rounds of all runs back to back, as many as fit before ``end`` (planned on the first timed round)."""
    for run in runs.values():
        run()
    sync(device)
    times: dict[str, list[float]] = {p: [] for p in runs}
    rounds, target, start = 0, shapes.max_rounds, time.monotonic()
    while rounds < target:
        for path, run in runs.items():
            sync(device)
            t0 = time.perf_counter()
            run()
            sync(device)
            times[path].append(time.perf_counter() - t0)
        rounds += 1
        if rounds == 1:
            now = time.monotonic()
            target = plan_rounds(now - start, end - start, shapes.min_rounds, shapes.max_rounds)
    return times, rounds


def paired_speedup(times: dict[str, list[float]], path: str) -> float:
    """Median over rounds of official time / path time (each pair timed back to back)."""
    return statistics.median(o / t for o, t in zip(times["official"], times[path]))


# ----------------------------------------------------------------------------------------------
# Sections. Each returns its rows; a row that fails carries "error", one skipped for time "skipped".


def describe(e: BaseException) -> str:
    text = f"{type(e).__name__}: {e}".replace("\n", " ")
    return text if len(text) <= 300 else text[:297] + "..."


def groups(ctx: Context, items: list[dict], end: float, run: Callable[[dict, float], dict]) -> list[dict]:
    """``run(row, row_end)`` for each row, the section's time left (to ``end``) shared among the rows left,
    ``row_end`` a ``time.monotonic`` value; soft: a row that raises says why and the next one runs."""
    rows = []
    for i, row in enumerate(items):
        row_end = time.monotonic() + ctx.clock.until(end) / (len(items) - i)
        if ctx.clock.left() <= 0:
            rows.append({**row, "skipped": "out of time (--budget)"})
            continue
        try:
            rows.append({**row, **run(row, row_end)})
        except Exception as e:  # fail soft: the row says why, the next one runs
            rows.append({**row, "error": describe(e)})
        finally:
            free(ctx.device)
        done = rows[-1]
        status = done.get("error") or done.get("skipped") or "ok"
        print(f"  {' '.join(str(v) for v in row.values())}: {status}", flush=True)
    return rows


def env_section(ctx: Context, end: float) -> list[dict]:
    device = ctx.device
    info: dict[str, Any] = {
        "device": str(device), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "python": platform.python_version(), "gpu": None,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "weights": ctx.args.weights or f"random ({ctx.args.mode} shapes)", "cpu_threads": torch.get_num_threads(),
    }  # fmt: skip
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, capability=f"{p.major}.{p.minor}", memory_gib=round(p.total_memory / 2**30, 1))
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=20)  # fmt: skip
            info["driver"] = smi.stdout.strip().splitlines()[int(device.index or 0)]
        except (OSError, IndexError, subprocess.SubprocessError) as e:
            info["driver"] = f"unknown ({describe(e)})"
    return [info]


def compare(out: Outputs, ref: Outputs) -> dict[str, Any]:
    """Max |dlogit| over both scored branches, and their worst argmax agreement, against ``ref``."""
    diff, agree, finite = 0.0, 1.0, True
    for f in LOGIT_FIELDS:
        x, r = getattr(out, f).detach().float(), getattr(ref, f).detach().float()
        finite = finite and bool(torch.isfinite(x).all())
        diff = max(diff, (x - r).abs().max().item())
        agree = min(agree, (x.argmax(dim=-1) == r.argmax(dim=-1)).float().mean().item())
    return {"max_abs_dlogit": diff, "argmax_agreement": agree, "finite": finite}


def detached(out: Outputs) -> Outputs:
    return Outputs(*(None if t is None else t.detach() for t in out))


def numerics_rows(ctx: Context, method: str, prec: str) -> list[dict]:
    """Train and eval forwards of every path at ``prec``, against the official structure in fp32."""
    clips, device, shapes = ctx.clip(), ctx.device, ctx.shapes
    dataset, names, _ = shapes.train["imagenet"]
    exact, _ = build(method, clips.get(prec), dataset, names)
    default = default_twin(exact)
    learner32 = copy.deepcopy(exact.learner).float()
    ref32 = MMRLModel(clips.reference(prec), learner32, exact.rep_layers, exact.tokenized_prompts, exact.alpha,
                      exact.injector, exact=True)  # fmt: skip
    image, _ = batch(shapes, clips.fp32, shapes.numerics_batch, len(names), device)
    rows = []
    for stage, zero_shot in (("train", True), ("eval", False)):
        # Training forward: autocast for amp, gradients on. Evaluation: no grad and no autocast, as both
        # codes' test loops (so an amp run evaluates in fp32).
        # One graph at a time (detached outputs kept): 1000 classes with gradients are large.
        with torch.enable_grad() if zero_shot else torch.no_grad():
            truth = detached(b.reference_forward(ref32, image, zero_shot=zero_shot))
            outs = {}
            for p in PATHS:
                with autocast(prec, device) if zero_shot else nullcontext():
                    outs[p] = detached(forward(p, exact, default, image, zero_shot))
        official_error = compare(outs["official"], truth)["max_abs_dlogit"]
        for path in PATHS:
            row = {"stage": stage, "path": path, "dtype": str(outs[path].logits.dtype).removeprefix("torch."),
                   **compare(outs[path], truth)}  # fmt: skip
            row["vs_official_max_abs_dlogit"] = compare(outs[path], outs["official"])["max_abs_dlogit"]
            bound = max(ERROR_FACTOR * official_error, FP32_ATOL)
            row["verdict"] = "ok" if row["finite"] and row["max_abs_dlogit"] <= bound else "CHECK"
            rows.append(row)
    return rows


def numerics_section(ctx: Context, end: float) -> list[dict]:
    items = [{"method": m, "prec": p} for m in ctx.args.methods for p in ctx.args.precs]

    def run(row: dict, row_end: float) -> dict:
        return {"paths": numerics_rows(ctx, row["method"], row["prec"])}

    return groups(ctx, items, end, run)


def memory_section(ctx: Context, end: float) -> list[dict]:
    shapes, device = ctx.shapes, ctx.device
    configs = {"default": (False, 0), f"TEXT_CHUNK {shapes.memory_chunk}": (False, shapes.memory_chunk),
               "EXACT True": (True, 0)}  # fmt: skip
    items = [{"method": m, "prec": ctx.args.memory_prec, "config": c} for m in ctx.args.methods for c in configs]

    def run(row: dict, row_end: float) -> dict:
        clips = ctx.clip()
        clip_model = clips.get(row["prec"])
        names = imagenet_like(shapes.memory_classes)
        exact_flag, chunk = configs[row["config"]]
        model, cfg = build(row["method"], clip_model, "ImageNet", names, exact=exact_flag, chunk=chunk)
        image, label = batch(shapes, clip_model, shapes.memory_batch, len(names), device)
        step = Step(row["prec"], device, model, model, cfg, image, label)  # "exact" below: this model, its config
        step("exact")  # the first step: one-time caches and the optimizer's state, not measured
        sync(device)
        result: dict[str, Any] = {"classes": len(names), "batch": shapes.memory_batch}
        if device.type == "cuda":
            before = torch.cuda.memory_allocated(device)
            torch.cuda.reset_peak_memory_stats(device)
            step("exact")  # the model's own path (default, chunked or exact, by its config)
            sync(device)
            peak = torch.cuda.max_memory_allocated(device)
            result.update(peak_gib=peak / 2**30, step_gib=(peak - before) / 2**30,
                          reserved_gib=torch.cuda.max_memory_reserved(device) / 2**30)  # fmt: skip
        else:
            step("exact")
            result.update(peak_gib=None, step_gib=None, note="peak memory is measured on CUDA only")
        result["finite"] = step.finite["exact"]
        return result

    return groups(ctx, items, end, run)


def inference_section(ctx: Context, end: float) -> list[dict]:
    shapes, device = ctx.shapes, ctx.device
    items = [{"method": m, "prec": p} for m in ctx.args.methods for p in ctx.args.precs]

    @torch.no_grad()
    def run(row: dict, row_end: float) -> dict:
        clip_model = ctx.clip().get(row["prec"])
        names = imagenet_like(shapes.eval_classes)
        exact, _ = build(row["method"], clip_model, "ImageNet", names)
        default = default_twin(exact)
        exact.eval(), default.eval()
        image, _ = batch(shapes, clip_model, shapes.eval_batch, len(names), device)
        text = exact(image[:1]).text_features  # fills the text caches: the official code keeps them too
        default(image[:1])
        runs = {p: (lambda p=p: forward(p, exact, default, image, zero_shot=False, text=text)) for p in PATHS}
        times, rounds = interleaved(runs, row_end, shapes, device)
        return {"classes": len(names), "batch": shapes.eval_batch, "rounds": rounds,
                "images_per_s": {p: shapes.eval_batch / statistics.median(t) for p, t in times.items()},
                "speedup": {p: paired_speedup(times, p) for p in PATHS}}  # fmt: skip

    return groups(ctx, items, end, run)


def train_section(ctx: Context, end: float) -> list[dict]:
    shapes, device = ctx.shapes, ctx.device
    items = [{"method": m, "setting": s, "prec": p} for m in ctx.args.methods for s in shapes.train
             for p in ctx.args.precs]  # fmt: skip

    def run(row: dict, row_end: float) -> dict:
        clip_model = ctx.clip().get(row["prec"])
        dataset, names, size = shapes.train[row["setting"]]
        exact, cfg = build(row["method"], clip_model, dataset, names)
        default = default_twin(exact)
        image, label = batch(shapes, clip_model, size, len(names), device)
        step = Step(row["prec"], device, exact, default, cfg, image, label)
        times, rounds = interleaved({p: (lambda p=p: step(p)) for p in PATHS}, row_end, shapes, device)
        return {"classes": len(names), "batch": size, "rounds": rounds,
                "ms_per_image": {p: 1e3 * statistics.median(t) / size for p, t in times.items()},
                "speedup": {p: paired_speedup(times, p) for p in PATHS}, "finite": step.finite}  # fmt: skip

    return groups(ctx, items, end, run)


RUNNERS: dict[str, Callable[[Context, float], list[dict]]] = {
    "env": env_section, "numerics": numerics_section, "memory": memory_section,
    "inference": inference_section, "train": train_section,
}  # fmt: skip


def run_section(ctx: Context, name: str, runner: Callable[[Context, float], list[dict]], end: float) -> dict:
    """The section's entry: status ok / partial (a row failed or was skipped) / failed (it raised) / skipped."""
    start = time.monotonic()
    if ctx.clock.left() <= 0 and name != "env":  # the environment costs nothing: always reported
        return {"status": "skipped", "error": "out of time (--budget)", "rows": [], "seconds": 0.0}
    try:
        rows = runner(ctx, end)
        partial = any("error" in r or "skipped" in r for r in rows)
        entry: dict[str, Any] = {"status": "partial" if partial else "ok", "rows": rows}
    except Exception as e:  # fail soft: the section says why, the next one runs
        entry = {"status": "failed", "error": describe(e), "traceback": traceback.format_exc(limit=-4), "rows": []}
    finally:
        free(ctx.device)
    entry["seconds"] = time.monotonic() - start
    return entry


# ----------------------------------------------------------------------------------------------
# Markdown.


def fmt(x: float | None, spec: str = ".2f") -> str:
    return "-" if x is None else format(x, spec)


def problem(row: dict) -> str | None:
    if "error" in row:
        return f"failed: {row['error']}"
    if "skipped" in row:
        return f"skipped: {row['skipped']}"
    return None


def markdown(report: dict) -> str:
    s, lines = report["sections"], []

    def table(title: str, header: list[str], body: list[list[str]]) -> None:
        lines.extend(["", f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)])
        lines.extend("| " + " | ".join(r) + " |" for r in body)

    meta = report["meta"]
    lines.append(f"`{meta['command']}` ({meta['date']}, {meta['mode']}, budget {meta['budget_s']:.0f} s)")
    table("Sections", ["section", "status", "seconds", "note"],
          [[n, e["status"], fmt(e.get("seconds"), ".0f"), e.get("error", "")] for n, e in s.items()])  # fmt: skip
    if s.get("env", {}).get("rows"):
        env = s["env"]["rows"][0]
        keys = ["gpu", "capability", "memory_gib", "driver", "torch", "cuda", "cudnn", "cudnn_benchmark",
                "tf32_matmul", "tf32_cudnn", "weights"]  # fmt: skip
        table("Environment", keys, [[str(env.get(k, "-")) for k in keys]])
    body = []
    for r in s.get("numerics", {}).get("rows", []):
        if problem(r):
            body.append([r["method"], r["prec"], problem(r), "", "", "", "", "", ""])
            continue
        for p in r["paths"]:
            body.append([r["method"], r["prec"], p["stage"], LABELS[p["path"]], p["dtype"],
                         f"{p['max_abs_dlogit']:.2e}", f"{p['argmax_agreement']:.3f}",
                         f"{p['vs_official_max_abs_dlogit']:.2e}", p["verdict"]])  # fmt: skip
    table("Numerics: each path vs the official structure in fp32 on the same weights and batch",
          ["method", "prec", "forward", "path", "dtype", "max abs dlogit", "argmax agreement",
           "max abs dlogit vs official at prec", "verdict"], body)  # fmt: skip
    body = [[r["method"], r["prec"], r["config"], *([problem(r), "", ""] if problem(r) else
             [fmt(r["peak_gib"]), fmt(r["step_gib"]), "yes" if r["finite"] else "NO"])]
            for r in s.get("memory", {}).get("rows", [])]  # fmt: skip
    table("Peak memory of one training step (GiB; step = peak minus what was allocated before it)",
          ["method", "prec", "config", "peak", "step", "finite loss"], body)  # fmt: skip
    body = []
    for r in s.get("inference", {}).get("rows", []):
        if problem(r):
            body.append([r["method"], r["prec"], problem(r), "", "", "", ""])
            continue
        ips, up = r["images_per_s"], r["speedup"]
        body.append([r["method"], r["prec"], *(f"{ips[p]:.0f}" for p in PATHS),
                     f"{up['default']:.2f}x", str(r["rounds"])])  # fmt: skip
    table("Inference, images/s (no grad, text features cached; amp evaluates in fp32, as both codes)",
          ["method", "prec", *(LABELS[p] for p in PATHS), "default vs official", "rounds"], body)  # fmt: skip
    body = []
    for r in s.get("train", {}).get("rows", []):
        if problem(r):
            body.append([r["method"], r["setting"], r["prec"], problem(r), "", "", "", "", "", ""])
            continue
        ms, up = r["ms_per_image"], r["speedup"]
        finite = "yes" if all(r["finite"].values()) else "NO: " + ", ".join(p for p, f in r["finite"].items() if not f)
        body.append([r["method"], f"{r['setting']} ({r['classes']} classes, batch {r['batch']})", r["prec"],
                     *(f"{ms[p]:.2f}" for p in PATHS), f"{up['exact']:.2f}x", f"{up['default']:.2f}x",
                     str(r["rounds"]), finite])  # fmt: skip
    table("Training step, ms/image (forward, loss, backward, AdamW)",
          ["method", "setting", "prec", *(LABELS[p] for p in PATHS), "EXACT vs official", "default vs official",
           "rounds", "finite loss"], body)  # fmt: skip
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny CLIP and class counts (CPU: seconds); the tests run it")
    p.add_argument("--device", help="cuda (default when available) or cpu")
    p.add_argument("--budget", type=float, help="seconds from the start for everything (420; smoke 900)")
    p.add_argument("--json", default="output/gpu_check.json", help="results, rewritten after each section")
    p.add_argument("--weights", default="", help="a local OpenAI CLIP file (ViT-B-16.pt) instead of random weights")
    p.add_argument("--methods", nargs="+", choices=sorted(b.TRAINERS), default=sorted(b.TRAINERS))
    p.add_argument("--precs", nargs="+", choices=("fp32", "amp", "fp16"), help="(amp fp16; smoke fp32 amp fp16)")
    p.add_argument("--memory-prec", default="amp", choices=("fp32", "amp", "fp16"))
    p.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    p.add_argument("--threads", type=int, help="torch CPU threads (smoke: 1)")
    args = p.parse_args(argv)
    if args.device is None:
        args.device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if args.budget is None:
        args.budget = 900.0 if args.smoke else 420.0  # smoke: fixed rounds; the budget only guards a hang
    if args.precs is None:
        args.precs = ["fp32", "amp", "fp16"] if args.smoke else ["amp", "fp16"]
    if args.threads is None and args.smoke:
        args.threads = 1
    args.mode = "smoke (tiny CLIP)" if args.smoke else "ViT-B/16"
    return args


def check_args(args: argparse.Namespace) -> str | None:
    """The first problem a user can fix, as one line, before anything is built."""
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        return "no CUDA device: run on a GPU, or with --smoke for the CPU check (--device cpu: the full check, hours)"
    if args.weights and not os.path.isfile(args.weights):
        return f"--weights {args.weights}: no such file (a local OpenAI CLIP file; nothing is downloaded)"
    if args.weights and args.smoke:
        return "--weights needs the full shapes: drop --smoke"
    return None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    problem_line = check_args(args)
    if problem_line:
        print(f"error: {problem_line}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as train.py
    ctx = Context(args, SMOKE if args.smoke else FULL, device, Clock(args.budget))
    report: dict[str, Any] = {
        "meta": {"command": "python -m benchmarks.gpu_check " + " ".join(sys.argv[1:] if argv is None else argv),
                 "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                 "mode": args.mode, "budget_s": args.budget,
                 "methods": args.methods, "precs": args.precs},
        "sections": {},
    }  # fmt: skip
    names = [n for n in SECTIONS if n in args.sections]
    for i, name in enumerate(names):
        share = sum(WEIGHTS[n] for n in names[i:])
        end = time.monotonic() + max(ctx.clock.left(), 0) * (WEIGHTS[name] / share if share else 1.0)
        print(f"[{time.monotonic() - STARTED:5.0f} s] {name}", flush=True)
        report["sections"][name] = run_section(ctx, name, RUNNERS[name], end)
        report["meta"]["wall_s"] = time.monotonic() - STARTED
        report["markdown"] = markdown(report)
        b.write_json(args.json, report)
    print(report["markdown"])
    print(f"\nwall time {report['meta']['wall_s']:.0f} s; JSON: {args.json}")
    flagged = any(p["verdict"] != "ok" for r in report["sections"].get("numerics", {}).get("rows", [])
                  for p in r.get("paths", []))  # fmt: skip
    failed = any(e["status"] == "failed" for e in report["sections"].values())
    return 1 if failed or flagged else 0


if __name__ == "__main__":
    sys.exit(main())
