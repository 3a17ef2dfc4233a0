"""Size, speed and exactness of MMRL / MMRL++ on CPU, with a random CLIP of real ViT-B/16 shapes.

The trainer's model (``trainers.mmrl.MMRLModel``) reuses frozen work: the text blocks before the
first REP_LAYER run once, the image blocks before it serve both the MMRL and the zero-shot pass, and
text features are kept at inference. This script times a training step (forward, loss, backward,
AdamW) and inference of that model against a plain reference that recomputes everything through
clip's public API, as the official code does, and fails when their logits or gradients differ: a
speed-up must never change a result. A third path, ``cut``, is the trainer's default fast mode (prompts
cut after the longest EOT, a shared text prefix computed once, the last image block at the positions read:
exact in real arithmetic, equal up to rounding); the other two paths are what ``EXACT True`` runs.
FLOPs are counted on fake tensors (shapes only, no compute); at ImageNet scale they give the RTX
4090 projection, calibrated on the paper's timing of the official code (see docs/speed.md).

    python -m benchmarks.bench_mmrl                  # ViT-B/16, 10 classes: 2-5 min on 2 (shared) cores
    python -m benchmarks.bench_mmrl --classes 100    # the text side over 100 prompts: ~8 min
    python -m benchmarks.bench_mmrl --quick          # tiny CLIP, ~15 s
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode
from yacs.config import CfgNode

from clip import clip
from clip.model import CLIP, CLIPConfig, causal_mask
from dassl.config import get_cfg_default
from dassl.optim import build_optimizer
from trainers.config import extend_cfg
from trainers.mmrl import MMRL, MMRLModel, MMRLpp, Outputs, mmrl_loss
from trainers.prompts import class_prompts

REPO = Path(__file__).resolve().parents[1]
ARCHS = {
    "vit_b16": CLIPConfig(
        embed_dim=512,
        image_resolution=224,
        vision_layers=12,
        vision_width=768,
        vision_patch_size=16,
        context_length=77,
        vocab_size=49408,
        transformer_width=512,
        transformer_heads=8,
        transformer_layers=12,
    ),
    # The tests' tiny CLIP: 12 layers, so REP_LAYERS 6..12 apply unchanged.
    "tiny": CLIPConfig(
        embed_dim=32,
        image_resolution=32,
        vision_layers=12,
        vision_width=128,
        vision_patch_size=8,
        context_length=77,
        vocab_size=49408,
        transformer_width=64,
        transformer_heads=1,
        transformer_layers=12,
    ),
}
TRAINERS: dict[str, type[MMRL]] = {"mmrl": MMRL, "mmrlpp": MMRLpp}
TRAINERS_BY_NAME = {cls.__name__: cls for cls in TRAINERS.values()}
PATHS = ("optimized", "reference", "cut")
LOGITS = ("logits", "logits_rep", "logits_fusion")

# Paper (CVPR 2025): MMRL, ViT-B/16, RTX 4090, ImageNet (official config: batch 32, 1000 classes, AMP).
PAPER_PARAMS = 4_992_000
PAPER_TRAIN_MS_PER_IMAGE = 5.3
PAPER_EVAL_IMAGES_PER_S = 762.0
RTX4090_PEAK_TFLOPS = 165.2  # dense FP16 tensor cores, FP32 accumulation (what AMP uses); spec sheet
IMAGENET_BATCH, IMAGENET_CLASSES = 32, 1000

# fp32 on CPU: the paths may differ by GEMM blocking only, ~1e-5 on logits that span +-100.
LOGIT_ATOL = 1e-3
GRAD_RTOL = 1e-3


def config_for(method: str) -> CfgNode:
    """The method's official vit_b16 config (fp32: AMP needs CUDA), for the ImageNet templates."""
    cls = TRAINERS[method]
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "trainers" / cls.NODE / "vit_b16.yaml"))
    cfg.TRAINER[cls.NODE].PREC = "fp32"
    cfg.DATASET.NAME = "ImageNet"
    cfg.TRAINER.NAME = cls.__name__
    cfg.EXACT = True  # the "optimized" path: the official op order; "cut" is the default fast path
    return cfg


def build_model(cfg: CfgNode, clip_model: CLIP, n_classes: int) -> MMRLModel:
    """The model as training builds it (the method's registered factory), minus the RNG replay."""
    classnames = [f"class {i}" for i in range(n_classes)]
    return TRAINERS_BY_NAME[cfg.TRAINER.NAME].model_factory(cfg, classnames, clip_model)


def with_prompts(model: MMRLModel, prompts: Tensor) -> MMRLModel:
    """The same CLIP and learner (so one optimizer serves both) in the default fast mode (prompts cut,
    shared text prefix, last image block at the read positions), with its own caches."""
    return MMRLModel(model.clip, model.learner, model.rep_layers, prompts, model.alpha, model.injector, exact=False)


def cut_prompts(prompts: Tensor) -> Tensor:
    """Prompts cut after the longest EOT: under the causal mask no kept position sees the padding."""
    return prompts[:, : int(prompts.argmax(dim=-1).max()) + 1]


def normalise(x: Tensor) -> Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def reference_forward(model: MMRLModel, image: Tensor, zero_shot: bool, text: Tensor | None = None) -> Outputs:
    """``MMRLModel.forward`` with nothing reused: both towers run all blocks through clip's public API
    (tokens injected with ``inject``), the text features are recomputed on every call and f_0 comes
    from a separate full zero-shot pass -- the work the official implementation does in training.
    ``text``: class features kept from an earlier call, as the official test step keeps them."""
    clip_model, prompts = model.clip, model.tokenized_prompts
    visual_tokens, text_tokens = model.learner.representation_learner()
    k = text_tokens[0].shape[0]
    w = text
    if w is None:
        words = clip_model.encode_text_tokens(prompts, inject=model.injector(text_tokens, model.rep_layers))
        w = words[torch.arange(len(prompts), device=prompts.device), prompts.argmax(dim=-1) + k]
        w = w @ clip_model.text_projection
    tokens = clip_model.visual.forward_tokens(image, inject=model.injector(visual_tokens, model.rep_layers))
    f_c = tokens[:, 0] @ clip_model.visual.proj
    f_r = model.learner.image_encoder(tokens[:, 1 : 1 + k].mean(dim=1), clip_model.visual.proj)
    f_0 = None
    if zero_shot:
        with torch.no_grad():
            f_0 = normalise(clip_model.encode_image(image))
    f_c, f_r, w = normalise(f_c), normalise(f_r), normalise(w)
    logits, logits_rep = (100.0 * f_c) @ w.t(), (100.0 * f_r) @ w.t()
    fusion = model.alpha * logits + (1 - model.alpha) * logits_rep
    return Outputs(logits, logits_rep, fusion, f_c, w, f_0)


@dataclass
class Case:
    """One method at one class count: the method's model, its cut twin, a fixed batch and w0."""

    cfg: CfgNode
    model: MMRLModel
    cut: MMRLModel
    image: Tensor
    label: Tensor
    w0: Tensor  # zero-shot text features, normalised

    def forward(self, path: str) -> Outputs:
        if path == "reference":
            return reference_forward(self.model, self.image, zero_shot=True)
        return (self.model if path == "optimized" else self.cut)(self.image, zero_shot=True)

    def loss_backward(self, path: str) -> Outputs:
        """Forward, loss and backward of ``MMRL.forward_backward`` (fp32); gradients left in ``.grad``."""
        s = self.cfg.TRAINER[TRAINERS_BY_NAME[self.cfg.TRAINER.NAME].NODE]
        out = self.forward(path)
        mmrl_loss(out, self.label, self.w0, s.ALPHA, s.REG_WEIGHT).backward()
        return out

    def prime(self) -> None:
        """Fill the text-trunk caches: a one-time cost per class set, timed and counted nowhere."""
        self.model.text_trunk()
        self.cut.text_trunk()


def max_diff(a: Tensor | None, b: Tensor | None) -> float:
    return 0.0 if a is None else (a - b).abs().max().item()


def check_training(case: Case, paths: list[str], optim: torch.optim.Optimizer) -> dict[str, tuple[float, float]]:
    """One forward + backward of every path at the same parameters, compared with the reference:
    {path: (max |logit diff|, max |grad diff| / max |grad|)}. Also every path's first (warm-up) pass."""
    params = [p for p in case.model.learner.parameters() if p.requires_grad]
    results = {}
    for path in paths:
        optim.zero_grad()
        out = case.loss_backward(path)
        results[path] = (out, torch.cat([p.grad.flatten() for p in params]))
    out_ref, grads_ref = results["reference"]
    diffs = {}
    for path, (out, grads) in results.items():
        logit = max(max_diff(getattr(out, f), getattr(out_ref, f)) for f in LOGITS)
        logit = max(logit, max_diff(out.image_features_zs, out_ref.image_features_zs))
        diffs[path] = (logit, (grads - grads_ref).abs().max().item() / grads_ref.abs().max().item())
    optim.step()  # the timed steps and the inference check then run on moved parameters
    return diffs


def time_training(case: Case, paths: list[str], optim, warmup: int, repeats: int) -> dict[str, list[float]]:
    """Seconds per full training step (forward, loss, backward, AdamW step), per path.

    Paths are interleaved repeat by repeat, so a change in the machine's load hits them alike.
    """
    times: dict[str, list[float]] = {path: [] for path in paths}
    for i in range(warmup + repeats):
        for path in paths:
            start = time.perf_counter()
            optim.zero_grad()
            case.loss_backward(path)
            optim.step()
            if i >= warmup:
                times[path].append(time.perf_counter() - start)
    return times


@torch.no_grad()
def time_inference(model: MMRLModel, image: Tensor, warmup: int, repeats: int) -> tuple[list[float], float]:
    """Seconds per inference batch with the text features cached, and the max |logit diff| between that
    cached output and the reference, which recomputes the text features from the current (trained)
    parameters: a stale cache would show here."""
    for _ in range(max(warmup, 1)):  # the first call fills the text-feature cache
        out = model(image)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(image)
        times.append(time.perf_counter() - start)
    ref = reference_forward(model, image, zero_shot=False)
    return times, max(max_diff(getattr(out, f), getattr(ref, f)) for f in LOGITS)


# ----------------------------------------------------------------------------------------------
# FLOPs on fake tensors: shapes only, no compute, so any batch and class count is affordable.


@contextmanager
def fake_mode() -> Iterator[FakeTensorMode]:
    """A fake-tensor mode to enter around CLIP, inputs and counted calls; the learner is built outside it,
    stays real and is converted on use. Fake tensors still say device "cpu", so the trainer's autocast
    checks work; but clip.model caches causal masks per (length, device, dtype), and masks made in fake
    mode would leak into later real runs, so that cache is emptied on the way out."""
    try:
        yield FakeTensorMode(allow_non_fake_inputs=True)
    finally:
        causal_mask.cache_clear()


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs of ``fn``, attention through the math backend, whose matmuls the counter sees."""
    with FlopCounterMode(display=False) as counter, sdpa_kernel(SDPBackend.MATH):
        fn()
    return counter.get_total_flops()


def flops_per_image(
    method: str, arch: CLIPConfig, batch: int, prompts: Tensor, paths: list[str], with_eval: bool
) -> dict[str, float]:
    """GFLOPs per image of one training step of each path (and of inference with cached text features).

    Left out: the optimizer (~10 FLOPs per learnable parameter, < 0.1 %) and the one-time caches.
    ``prompts`` are real token ids (N, 77): the cut path's shapes (prompt length, shared prefix, EOT
    groups) depend on their content. About two seconds per count, whatever the shapes.
    """
    with fake_mode() as mode:
        with mode:
            clip_model = CLIP(arch).requires_grad_(False)
            w0 = torch.zeros(len(prompts), arch.embed_dim)
        case = new_case(method, clip_model, prompts, cut_prompts(prompts), w0, batch)
        with mode:
            case.prime()
            flops = {path: count_flops(lambda p=path: case.loss_backward(p)) for path in paths}
            if with_eval:
                with torch.no_grad():
                    case.model(case.image[:1])  # fills the text-feature cache
                    flops["eval"] = count_flops(lambda: case.model(case.image))
    return {key: value / batch / 1e9 for key, value in flops.items()}


def new_case(method: str, clip_model: CLIP, prompts: Tensor, cut: Tensor, w0: Tensor, batch: int) -> Case:
    cfg = config_for(method)
    model = build_model(cfg, clip_model, len(prompts))
    size = clip_model.visual.input_resolution
    image, label = torch.randn(batch, 3, size, size), torch.randint(len(prompts), (batch,))
    return Case(cfg, model, with_prompts(model, cut), image, label, w0)


def learnable_params(method: str) -> int:
    """At ViT-B/16, on a fake CLIP (nothing of CLIP's size is allocated)."""
    arch = ARCHS["vit_b16"]
    with fake_mode() as mode:
        with mode:
            clip_model = CLIP(arch)
        model = build_model(config_for(method), clip_model, 1)
    return sum(p.numel() for p in model.learner.parameters() if p.requires_grad)


def projection() -> dict[str, float]:
    """MMRL on an RTX 4090 at ImageNet scale, by FLOPs (see README): the paper's 5.3 ms/img is the official
    code, i.e. our reference path's work, done at some achieved FLOP rate; the other paths are assumed to
    run at that same rate. The eval rate likewise from the paper's 762 img/s."""
    from bench_speed import imagenet_like  # bench_speed imports this module

    prompts = clip.tokenize(class_prompts("ImageNet", imagenet_like(IMAGENET_CLASSES)))
    flops = flops_per_image("mmrl", ARCHS["vit_b16"], IMAGENET_BATCH, prompts, list(PATHS), with_eval=True)
    train_tflops = flops["reference"] / PAPER_TRAIN_MS_PER_IMAGE  # GFLOP per ms = TFLOP/s
    eval_tflops = flops["eval"] * PAPER_EVAL_IMAGES_PER_S / 1e3
    result = {f"{key}_gflop_per_image": value for key, value in flops.items()}
    result["cut_prompt_len"] = cut_prompts(prompts).shape[1]
    result.update({f"{path}_ms_per_image": flops[path] / train_tflops for path in PATHS})
    result.update(
        {
            "train_tflops": train_tflops,
            "train_utilisation": train_tflops / RTX4090_PEAK_TFLOPS,
            "eval_tflops": eval_tflops,
            "eval_utilisation": eval_tflops / RTX4090_PEAK_TFLOPS,
        }
    )
    return result


# ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny CLIP: a < 30 s smoke run (other defaults in brackets)")
    p.add_argument("--methods", nargs="+", choices=sorted(TRAINERS), default=sorted(TRAINERS))
    p.add_argument("--paths", nargs="+", choices=PATHS, default=list(PATHS), help="reference always runs: the check")
    p.add_argument("--classes", nargs="+", type=int, help="class prompts the text side runs on (10; quick 10 50)")
    p.add_argument("--batch-size", type=int, help="training images per step (2; quick 4)")
    p.add_argument("--eval-batch-size", type=int, help="images per inference call (2; quick 32)")
    p.add_argument("--repeats", type=int, default=3, help="timed steps per path; the median is reported")
    p.add_argument("--warmup", type=int, help="untimed steps per path after the check pass, a warm-up too (0; quick 1)")
    p.add_argument("--threads", type=int, help="torch threads (2; quick 1: tiny tensors only gain synchronisation)")
    p.add_argument("--flops", action=argparse.BooleanOptionalAction, help="count FLOPs, GPU projection (on; quick off)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="also write the results to this file (atomically)")
    args = p.parse_args(argv)
    if args.quick:
        defaults = dict(classes=[10, 50], batch_size=4, eval_batch_size=32, warmup=1, threads=1, flops=False)
    else:
        defaults = dict(classes=[10], batch_size=2, eval_batch_size=2, warmup=0, threads=2, flops=True)
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.arch = "tiny" if args.quick else "vit_b16"
    args.paths = [p for p in PATHS if p in args.paths or p == "reference"]
    return args


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    arch = ARCHS[args.arch]
    report: dict = {
        "arch": args.arch,
        "threads": args.threads,
        "torch": torch.__version__,
        "classes": args.classes,
        "batch_size": args.batch_size,
        "eval_batch_size": args.eval_batch_size,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "load_before": os.getloadavg(),
        "params_vit_b16": {method: learnable_params(method) for method in args.methods},
        "train": [],
        "eval": [],
    }
    clip_model = CLIP(arch).eval().requires_grad_(False)
    for method in args.methods:
        for n_classes in args.classes:
            prompts = clip.tokenize(class_prompts("ImageNet", [f"class {i}" for i in range(n_classes)]))
            cut = cut_prompts(prompts)
            with torch.no_grad():  # zero-shot w0, computed once as in MMRL.build_model (cut: same values)
                w0 = normalise(clip_model.encode_text(cut))
            case = new_case(method, clip_model, prompts, cut, w0, args.batch_size)
            optim = build_optimizer(case.model.learner, case.cfg.OPTIM)
            case.prime()
            diffs = check_training(case, args.paths, optim)
            times = time_training(case, args.paths, optim, args.warmup, args.repeats)
            with_eval = n_classes == args.classes[0]  # cached text: inference barely depends on the class count
            flops = {}
            if args.flops:
                flops = flops_per_image(method, arch, args.batch_size, prompts, args.paths, with_eval)
            for path in args.paths:
                report["train"].append(
                    {
                        "method": method,
                        "classes": n_classes,
                        "path": path,
                        "prompt_len": cut.shape[1] if path == "cut" else arch.context_length,
                        "ms_per_image": 1e3 * statistics.median(times[path]) / args.batch_size,
                        "ms_per_image_all": [1e3 * t / args.batch_size for t in times[path]],
                        "gflop_per_image": flops.get(path),
                        "max_logit_diff": diffs[path][0],
                        "grad_rel_diff": diffs[path][1],
                    }
                )
            if with_eval:
                image = torch.randn(args.eval_batch_size, 3, arch.image_resolution, arch.image_resolution)
                eval_times, eval_diff = time_inference(case.model, image, args.warmup, args.repeats)
                report["eval"].append(
                    {
                        "method": method,
                        "classes": n_classes,
                        "images_per_s": args.eval_batch_size / statistics.median(eval_times),
                        "images_per_s_all": [args.eval_batch_size / t for t in eval_times],
                        "gflop_per_image": flops.get("eval"),
                        "max_logit_diff": eval_diff,
                    }
                )
    if args.flops:
        report["projection_rtx4090"] = projection()
    report["load_after"] = os.getloadavg()
    report["passed"] = all(r["max_logit_diff"] <= LOGIT_ATOL for r in report["train"] + report["eval"]) and all(
        r["grad_rel_diff"] <= GRAD_RTOL for r in report["train"]
    )
    return report


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def print_report(r: dict) -> None:
    loads = [", ".join(f"{x:.2f}" for x in r[key]) for key in ("load_before", "load_after")]
    print(f"\nMMRL benchmark: random {r['arch']} CLIP, fp32, CPU, {r['threads']} threads, torch {r['torch']}")
    print(
        f"train batch {r['batch_size']}, eval batch {r['eval_batch_size']}, check pass + {r['warmup']} warm-up, "
        f"median of {r['repeats']}; load average (1/5/15 min) {loads[0]} -> {loads[1]}"
    )

    print(f"\nLearnable parameters at ViT-B/16 (paper, MMRL: {PAPER_PARAMS / 1e6:.3f} M)")
    for method, n in r["params_vit_b16"].items():
        print(f"  {method:7s} {n:>10,d}  ({n / 1e6:.3f} M)")

    print("\nTraining step (forward + loss + backward + AdamW), per image; max|dlogit|, grad rel: vs reference")
    print(
        f"  {'method':7s} {'N':>4s} {'path':9s} {'ms/img':>9s} {'min..max':>17s} {'speed-up':>8s} {'GFLOP/img':>9s} "
        f"{'max|dlogit|':>11s} {'grad rel':>9s}"
    )
    ref = {(t["method"], t["classes"]): t["ms_per_image"] for t in r["train"] if t["path"] == "reference"}
    for t in r["train"]:
        spread = f"{min(t['ms_per_image_all']):.1f}..{max(t['ms_per_image_all']):.1f}"
        speedup = ref[t["method"], t["classes"]] / t["ms_per_image"]
        print(
            f"  {t['method']:7s} {t['classes']:4d} {t['path']:9s} {t['ms_per_image']:9.1f} {spread:>17s} "
            f"{speedup:7.2f}x {fmt(t['gflop_per_image'], '9.1f')} {t['max_logit_diff']:11.1e} "
            f"{t['grad_rel_diff']:9.1e}"
        )

    print("\nInference with cached text features (max|dlogit|: cached output vs reference, after training steps)")
    for e in r["eval"]:
        print(
            f"  {e['method']:7s} {e['images_per_s']:8.2f} img/s ({min(e['images_per_s_all']):.2f}.."
            f"{max(e['images_per_s_all']):.2f})  {fmt(e['gflop_per_image'], '.1f')} GFLOP/img  "
            f"max|dlogit| {e['max_logit_diff']:.1e}"
        )

    p = r.get("projection_rtx4090")
    if p:
        print(
            f"\nPROJECTION, not a measurement: MMRL on an RTX 4090, ImageNet (batch {IMAGENET_BATCH}, "
            f"{IMAGENET_CLASSES} ImageNet-like classes, cut prompts {p['cut_prompt_len']} tokens), "
            "FLOP rate calibrated on "
            f"the paper's {PAPER_TRAIN_MS_PER_IMAGE} ms/img (= reference path) and "
            f"{PAPER_EVAL_IMAGES_PER_S:.0f} img/s"
        )
        for path in PATHS:
            print(
                f"  train {path:9s} {p[f'{path}_gflop_per_image']:6.1f} GFLOP/img -> "
                f"{p[f'{path}_ms_per_image']:4.2f} ms/img"
            )
        print(
            f"  implied rates: train {p['train_tflops']:.0f} TFLOP/s ({p['train_utilisation']:.0%} of the "
            f"{RTX4090_PEAK_TFLOPS} peak); eval {p['eval_gflop_per_image']:.1f} GFLOP/img x 762 img/s = "
            f"{p['eval_tflops']:.0f} TFLOP/s ({p['eval_utilisation']:.0%})"
        )

    verdict = "PASS" if r["passed"] else "FAIL"
    print(f"\n{verdict}: every path vs reference, max|dlogit| <= {LOGIT_ATOL:g} and grad rel diff <= {GRAD_RTOL:g}")


def write_json(path: str, data: dict) -> None:
    """Atomically (temporary file in the same folder, then rename): a reader never sees half a file."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".bench_mmrl.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.chmod(tmp, 0o644)  # mkstemp makes it private
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    report = run(args)
    report["wall_s"] = time.perf_counter() - start
    print_report(report)
    print(f"wall time {report['wall_s']:.0f} s")
    if args.json:
        write_json(args.json, report)
    return 0 if report["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
