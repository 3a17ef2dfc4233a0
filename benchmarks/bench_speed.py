"""Training-step and evaluation speed of MMRL / MMRL++ against the official code's structure, and peak
memory at 1000 classes, on CPU with a random CLIP of real ViT-B/16 shapes (fp32).

Three paths of the same model and parameters, timed interleaved (repeat by repeat) so that the load of
a shared machine hits them alike; a speed-up is the median over repeats of the paired ratio:
- ``official``: the work the official implementation does per step, pinned here as its structure on our
  modules (``bench_mmrl.reference_forward``): both towers run all 12 blocks on full 77+K-token prompts,
  the text features are recomputed every step, f_0 comes from a separate full zero-shot image pass;
- ``exact``: ``EXACT True``, bit for bit the official numbers (frozen trunks computed once);
- ``fast``: the default (prompts cut after the longest EOT, a shared text prefix computed once, the last
  image block at the read positions only), equal to ``exact`` up to float rounding.

Settings: batch 4; "dtd" = DTD's 47 names, 24 base classes, "{} texture.";
"imagenet" = the first 124 ImageNet classes (CLIP's names), "a photo of a {}." (ImageNet's
classes-per-image ratio at batch 4 is 1000/32 ≈ 31 per image; 124 / 4 = 31).

    python -m benchmarks.bench_speed                       # both presets, MMRL: ~10 min on 2 shared cores
    python -m benchmarks.bench_speed --methods mmrl mmrlpp --repeats 5
    python -m benchmarks.bench_speed --memory              # + peak RSS of one step at 1000 classes
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from benchmarks import bench_mmrl as b  # its configs and the official structure, reference_forward
from dassl.optim import build_optimizer
from trainers.mmrl import MMRLModel, mmrl_loss

DTD = (
    "banded blotchy braided bubbly bumpy chequered cobwebbed cracked crosshatched crystalline dotted fibrous "
    "flecked freckled frilly gauzy grid grooved honeycombed interlaced knitted lacelike lined marbled matted "
    "meshed paisley perforated pitted pleated polka-dotted porous potholed scaly smeared spiralled sprinkled "
    "stained stratified striped studded swirly veined waffled woven wrinkled zigzagged"
).split()
IMAGENET = [
    "tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark", "electric ray", "stingray",
    "rooster", "hen", "ostrich", "brambling", "goldfinch", "house finch", "junco", "indigo bunting",
    "American robin", "bulbul", "jay", "magpie", "chickadee", "American dipper", "kite (bird of prey)",
    "bald eagle", "vulture", "great grey owl", "fire salamander", "smooth newt", "newt", "spotted salamander",
    "axolotl", "American bullfrog", "tree frog", "tailed frog", "loggerhead sea turtle", "leatherback sea turtle",
    "mud turtle", "terrapin", "box turtle", "banded gecko", "green iguana", "Carolina anole",
    "desert grassland whiptail lizard", "agama", "frilled-necked lizard", "alligator lizard", "Gila monster",
    "European green lizard", "chameleon", "Komodo dragon", "Nile crocodile", "American alligator", "triceratops",
    "worm snake", "ring-necked snake", "eastern hog-nosed snake", "smooth green snake", "kingsnake", "garter snake",
    "water snake", "vine snake", "night snake", "boa constrictor", "African rock python", "Indian cobra",
    "green mamba", "sea snake", "Saharan horned viper", "eastern diamondback rattlesnake", "sidewinder rattlesnake",
    "trilobite", "harvestman", "scorpion", "yellow garden spider", "barn spider", "European garden spider",
    "southern black widow", "tarantula", "wolf spider", "tick", "centipede", "black grouse", "ptarmigan",
    "ruffed grouse", "prairie grouse", "peafowl", "quail", "partridge", "african grey parrot", "macaw",
    "sulphur-crested cockatoo", "lorikeet", "coucal", "bee eater", "hornbill", "hummingbird", "jacamar", "toucan",
    "duck", "red-breasted merganser", "goose", "black swan", "tusker", "echidna", "platypus", "jellyfish",
    "sea anemone", "brain coral", "flatworm", "nematode", "conch", "snail", "slug", "sea slug", "chiton",
    "chambered nautilus", "Dungeness crab", "rock crab", "fiddler crab", "red king crab", "American lobster",
    "spiny lobster", "crayfish", "hermit crab", "isopod",
]  # fmt: skip


def imagenet_like(n: int) -> list[str]:
    """``n`` distinct class names of ImageNet's lengths: the 124 above with " 0", " 1", ... appended."""
    return [f"{name} {i // len(IMAGENET)}" for i, name in enumerate(IMAGENET * (n // len(IMAGENET) + 1))][:n]


PRESETS = {
    "dtd": ("DescribableTextures", DTD[:24]),
    "imagenet": ("ImageNet", IMAGENET[:124]),
    "imagenet1000": ("ImageNet", imagenet_like(1000)),  # ImageNet's class count (its own batch is 32)
}
PATHS = ("official", "exact", "fast")


def models(method: str, dataset: str, names: list[str], clip_model) -> tuple[MMRLModel, MMRLModel, object]:
    """(exact model, fast twin on the same learner, cfg): built by the method's registered factory."""
    cfg = b.config_for(method)
    cfg.DATASET.NAME = dataset
    exact = b.TRAINERS_BY_NAME[cfg.TRAINER.NAME].model_factory(cfg, names, clip_model)
    fast = MMRLModel(clip_model, exact.learner, exact.rep_layers, exact.tokenized_prompts, exact.alpha,
                     exact.injector, exact=False)  # fmt: skip
    return exact, fast, cfg


def step(path: str, exact: MMRLModel, fast: MMRLModel, image, label, w0, s) -> None:
    if path == "official":
        out = b.reference_forward(exact, image, zero_shot=True)
    else:
        out = (exact if path == "exact" else fast)(image, zero_shot=True)
    mmrl_loss(out, label, w0, s.ALPHA, s.REG_WEIGHT).backward()


def interleaved(runs: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each run, ``repeats`` rounds of all runs back to back after one warm-up round."""
    times: dict[str, list[float]] = {p: [] for p in runs}
    for i in range(repeats + 1):
        for path, run in runs.items():
            start = time.perf_counter()
            run()
            if i:
                times[path].append(time.perf_counter() - start)
    return times


def bench_training(method: str, preset: str, batch: int, repeats: int) -> dict:
    dataset, names = PRESETS[preset]
    torch.manual_seed(0)
    clip_model = b.CLIP(b.ARCHS["vit_b16"]).eval().requires_grad_(False)
    exact, fast, cfg = models(method, dataset, names, clip_model)
    s = cfg.TRAINER[b.TRAINERS_BY_NAME[cfg.TRAINER.NAME].NODE]
    with torch.no_grad():
        w0 = b.normalise(clip_model.encode_text(exact.tokenized_prompts))
    image = torch.randn(batch, 3, 224, 224)
    label = torch.randint(len(names), (batch,))
    optim = build_optimizer(exact.learner, cfg.OPTIM)
    exact.text_trunk(), fast.text_trunk()  # one-time caches, counted nowhere

    def train_step(path: str) -> None:
        optim.zero_grad()
        step(path, exact, fast, image, label, w0, s)
        optim.step()

    times = interleaved({p: functools.partial(train_step, p) for p in PATHS}, repeats)
    return {
        "method": method, "preset": preset, "classes": len(names), "batch": batch,
        "prompt_len_fast": fast.tokenized_prompts.shape[1], "seconds": times,
        # Each repeat times the paths back to back: the median of those paired ratios follows the machine's
        # load changes less than a ratio of medians does.
        "speedup_vs_official": {
            p: statistics.median(o / t for o, t in zip(times["official"], times[p])) for p in PATHS
        },
    }  # fmt: skip


@torch.no_grad()
def bench_eval(method: str, preset: str, batch: int, repeats: int) -> dict:
    """Images per second with the text features cached (as both codes do at test time)."""
    dataset, names = PRESETS[preset]
    torch.manual_seed(0)
    clip_model = b.CLIP(b.ARCHS["vit_b16"]).eval().requires_grad_(False)
    exact, fast, _ = models(method, dataset, names, clip_model)
    image = torch.randn(batch, 3, 224, 224)
    with torch.no_grad():
        text = exact(image[:1]).text_features  # fills the text caches
        fast(image[:1])

    runs = {
        # The official test step: the full image pass with tokens, the text features kept.
        "official": lambda: b.reference_forward(exact, image, zero_shot=False, text=text),
        "exact": lambda: exact(image),
        "fast": lambda: fast(image),
    }
    with torch.no_grad():  # as Dassl's test loop
        times = interleaved(runs, repeats)
    return {p: batch / statistics.median(t) for p, t in times.items()}


def flops(method: str, preset: str, batch: int) -> dict[str, float]:
    """GFLOPs per image of one training step of each path, counted on fake tensors (shapes only)."""
    dataset, names = PRESETS[preset]
    with b.fake_mode() as mode:
        with mode:
            clip_model = b.CLIP(b.ARCHS["vit_b16"]).requires_grad_(False)
        exact, fast, cfg = models(method, dataset, names, clip_model)
        s = cfg.TRAINER[b.TRAINERS_BY_NAME[cfg.TRAINER.NAME].NODE]
        with mode:
            w0 = torch.zeros(len(names), clip_model.text_projection.shape[1])
            image, label = torch.zeros(batch, 3, 224, 224), torch.zeros(batch, dtype=torch.long)
            exact.text_trunk(), fast.text_trunk()
            counted = {p: b.count_flops(lambda p=p: step(p, exact, fast, image, label, w0, s)) for p in PATHS}
    return {p: v / batch / 1e9 for p, v in counted.items()}


def peak_memory(method: str, classes: int, chunk: int, exact: bool) -> float:
    """Peak RSS (GB) of a fresh process that runs one training step at ``classes`` ImageNet-like classes."""
    code = f"""
import resource, torch
import benchmarks.bench_mmrl as b, benchmarks.bench_speed as s
from trainers.mmrl import mmrl_loss
torch.manual_seed(0)
clip_model = b.CLIP(b.ARCHS["vit_b16"]).eval().requires_grad_(False)
names = s.imagenet_like({classes})
cfg = b.config_for({method!r}); cfg.DATASET.NAME = "ImageNet"; cfg.EXACT = {exact}
cfg.TRAINER[b.TRAINERS_BY_NAME[cfg.TRAINER.NAME].NODE].TEXT_CHUNK = {chunk}
model = b.TRAINERS_BY_NAME[cfg.TRAINER.NAME].model_factory(cfg, names, clip_model)
with torch.no_grad():
    w0 = b.normalise(clip_model.encode_text(model.tokenized_prompts[:, :77]))
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out = model(torch.randn(32, 3, 224, 224), zero_shot=True)
mmrl_loss(out, torch.zeros(32, dtype=torch.long), w0, 0.7, 1.0).backward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, before / 2**20)
"""
    repo = Path(__file__).resolve().parents[1]  # python -c imports from its working folder
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    return float(out.stdout.split()[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", nargs="+", choices=sorted(b.TRAINERS), default=["mmrl"])
    p.add_argument("--presets", nargs="+", choices=sorted(PRESETS), default=["dtd", "imagenet"])
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--memory", action="store_true", help="also peak RSS of one step at 1000 classes, batch 32")
    p.add_argument("--flops-only", action="store_true", help="count FLOPs (shapes only, seconds), time nothing")
    p.add_argument("--json", default="")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    report: dict = {"train": [], "eval": [], "memory": []}
    t0 = time.time()
    print(f"torch {torch.__version__}, {args.threads} threads, fp32 CPU, ViT-B/16 shapes, random weights")
    for method in args.methods:
        for preset in args.presets:
            f = flops(method, preset, args.batch_size)
            report.setdefault("flops", []).append({"method": method, "preset": preset, "gflop_per_img": f})
            print(f"flops {method:7s} {preset:9s} GFLOP/img: " + "  ".join(
                f"{k} {v:.1f} ({f['official'] / v:.2f}x)" for k, v in f.items()))  # fmt: skip
            if args.flops_only:
                continue
            r = bench_training(method, preset, args.batch_size, args.repeats)
            report["train"].append(r)
            med = {k: statistics.median(v) for k, v in r["seconds"].items()}
            print(f"train {method:7s} {preset:9s} {r['classes']:4d} classes: " + "  ".join(
                f"{k} {med[k]:.2f} s ({r['speedup_vs_official'][k]:.2f}x)" for k in PATHS))  # fmt: skip
        if args.flops_only:
            continue
        e = bench_eval(method, "imagenet", args.eval_batch_size, args.repeats)
        report["eval"].append({"method": method, **e})
        print(f"eval  {method:7s} img/s: " + "  ".join(f"{k} {v:.1f}" for k, v in e.items()))
        if args.memory:
            for chunk, exact in ((0, False), (100, False)):
                gb = peak_memory(method, 1000, chunk, exact)
                report["memory"].append({"method": method, "classes": 1000, "chunk": chunk, "peak_gb": gb})
                print(f"memory {method:7s} 1000 classes, batch 32, fast, TEXT_CHUNK {chunk}: peak RSS {gb:.2f} GB")
    print(f"wall time {time.time() - t0:.0f} s, max RSS of this process "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GB")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
