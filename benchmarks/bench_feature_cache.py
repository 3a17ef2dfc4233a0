"""The frozen-feature cache on the masked-MHA adapter's published recipe: per epoch and end to end.

The recipe (``configs/trainers/MaskedMHAAdapter/vit_b16.yaml``): batch 256, no augmentation, the val set
evaluated after every epoch (``TEST.FINAL_MODEL best_val``), up to 200 epochs, 8 loader workers. Two
trainers of it run in one process on the same random CLIP of ViT-B/16 shapes (224 px) and the same
synthetic DTD-like dataset (JPEGs of class-coloured noise), one with ``FEATURE_CACHE.ENABLED False``, and
their epochs are interleaved: ``uncached`` encodes every training and val image in every epoch (the
release's work); ``cached`` encodes them in its first epoch and then reads no image.

An epoch is timed as the trainer runs it: ``run_epoch`` (the loader, the training steps) and
``after_epoch`` (the val pass, the best-val checkpoint, the resume state). The dataset is reduced (the CPU
encodes about one image per second), so the end-to-end figures are extrapolations from the measured
epochs, stated as such: 200 epochs = the first epoch + 199 later ones, plus one test pass (the same in
both: the test split's first pass), whose cost is the uncached per-image cost of a val pass.
FLOPs per epoch: the adapter's work is counted over one cached epoch (``FlopCounterMode``; the same
in both paths), and the image tower's per image on one image, times the images an epoch encodes.

    python -m benchmarks.bench_feature_cache                 # ViT-B/16 shapes, 24 classes: ~5 min on 1 core
    python -m benchmarks.bench_feature_cache --per-class 2 --epochs 4 --json out.json
    python -m benchmarks.bench_feature_cache --smoke         # tiny CLIP, 32 px, seconds (the test suite runs it)
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from yacs.config import CfgNode

from benchmarks import bench_mmrl as b
from clip.model import CLIP, CLIPConfig
from dassl.config import get_cfg_default
from dassl.optim import build_optimizer
from dassl.utils import set_random_seed
from datasets.synthetic import make_dataset
from trainers.config import extend_cfg
from trainers.logits import l2_normalize
from trainers.masked_mha_adapter.masked_mha_adapter import MaskedMHAAdapter, adapted_logits

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "trainers" / "MaskedMHAAdapter" / "vit_b16.yaml"
PATHS = ("uncached", "cached")
EPOCHS_END_TO_END = 200  # the recipe's MAX_EPOCH


@dataclass
class Setting:
    arch: CLIPConfig
    size: int  # image side, px
    classes: int
    per_class: int  # training and val images per class
    epochs: int  # epochs measured per path
    workers: int


# The smoke CLIP: widths of 64, which a state dict's inferred head count (width // 64) needs.
SMOKE_ARCH = CLIPConfig(embed_dim=64, image_resolution=32, vision_layers=12, vision_width=64, vision_patch_size=16,
                        context_length=77, vocab_size=49408, transformer_width=64, transformer_heads=1,
                        transformer_layers=12)  # fmt: skip
FULL = Setting(b.ARCHS["vit_b16"], 224, classes=24, per_class=1, epochs=3, workers=8)
SMOKE = Setting(SMOKE_ARCH, 32, classes=4, per_class=2, epochs=3, workers=0)
ADAPTER_BATCH = 64  # the adapter's per-image costs are measured at this batch (linear in it)


@dataclass(frozen=True)
class Scenario:
    """A dataset of the recipe at its real size (CoOp's splits, 16 shots, base classes)."""

    name: str
    classes: int
    train: int  # few-shot training images
    val: int  # images evaluated after every epoch
    test: int  # images of the final test pass

    @property
    def used(self) -> int:
        """Training images an epoch uses: whole batches of 256 (the loader drops the rest)."""
        return self.train if self.train < 256 else self.train // 256 * 256


SCENARIOS = (
    # DTD: 47 classes, CoOp's split 60 / 24 / 36 images per class; few-shot val min(16, 4) per class.
    Scenario("DTD, base classes", 24, 24 * 16, 24 * 4, 24 * 36),
    # ImageNet: no val split, so val is the test set (50 images per class), as upstream.
    Scenario("ImageNet, base classes", 500, 500 * 16, 500 * 50, 500 * 50),
)


class InMemoryWeights(MaskedMHAAdapter):
    """The recipe's trainer with CLIP's weights given in memory (no file, nothing downloaded)."""

    state_dict_given: dict[str, Tensor] = {}

    def load_clip_weights(self) -> dict[str, Tensor]:
        return self.state_dict_given


def recipe_cfg(setting: Setting, root: Path, path: str) -> CfgNode:
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(str(REPO / "configs" / "datasets" / "dtd.yaml"))
    cfg.merge_from_file(str(RECIPE))
    cfg.merge_from_list([
        "TRAINER.NAME", "MaskedMHAAdapter", "DATASET.ROOT", str(root / "data"), "DATASET.NUM_SHOTS", -1,
        "INPUT.SIZE", (setting.size, setting.size), "DATALOADER.NUM_WORKERS", setting.workers,
        "OUTPUT_DIR", str(root / path), "FEATURE_CACHE.ENABLED", path == "cached", "SEED", 1,
    ])  # fmt: skip
    cfg.freeze()
    return cfg


@contextlib.contextmanager
def quiet(log: Path) -> Iterator[None]:
    """The trainers' own output (steps, results, progress bars) goes to ``log``, not the report."""
    with open(log, "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def build(setting: Setting, root: Path, path: str, log: Path) -> MaskedMHAAdapter:
    set_random_seed(1)
    with quiet(log):
        trainer = InMemoryWeights(recipe_cfg(setting, root, path))
        trainer.max_epoch = EPOCHS_END_TO_END
        trainer.before_train()
    return trainer


def encoded(trainer: MaskedMHAAdapter) -> int:
    """Images the image tower has encoded so far (every call of the model's frozen method)."""
    cache = trainer.feature_cache
    return cache.computed if cache is not None else trainer.encoded_uncached


def count_uncached(trainer: MaskedMHAAdapter) -> None:
    """Count the uncached trainer's image-tower rows too (it has no cache to count them)."""
    trainer.encoded_uncached = 0
    encode = trainer.model.image_features

    def counted(image: Tensor) -> Tensor:
        trainer.encoded_uncached += len(image)
        return encode(image)

    trainer.model.image_features = counted


def epoch(trainer: MaskedMHAAdapter, index: int, log: Path) -> dict[str, float]:
    """One epoch as ``TrainerBase.train`` runs it; seconds of its two halves and the images it encoded."""
    trainer.epoch = index
    before = encoded(trainer)
    with quiet(log):
        trainer.before_epoch()
        start = time.perf_counter()
        trainer.run_epoch()
        middle = time.perf_counter()
        trainer.after_epoch()
        end = time.perf_counter()
    return {
        "train_s": middle - start, "val_s": end - middle, "total_s": end - start, "encoded": encoded(trainer) - before
    }


def encode_gflop(trainer: MaskedMHAAdapter, size: int) -> float:
    """GFLOPs of the image tower for one image."""
    clip_model = trainer.model.clip
    image = torch.randn(1, 3, size, size)
    with torch.no_grad():
        return b.count_flops(lambda: clip_model.encode_image(image.type(clip_model.dtype))) / 1e9


def adapter_gflop(trainer: MaskedMHAAdapter, index: int, log: Path) -> float:
    """GFLOPs of a cached epoch (every image held): the adapter's steps and val pass, the same in both paths."""
    with b.FlopCounterMode(display=False) as counter, b.sdpa_kernel(b.SDPBackend.MATH):
        epoch(trainer, index, log)
    return counter.get_total_flops() / 1e9


def adapter_costs(trainer: MaskedMHAAdapter, classes: int, repeats: int = 3) -> dict[str, float]:
    """Seconds and GFLOPs per image of the adapter alone at ``classes`` classes: a training step (forward,
    cross-entropy, backward, the recipe's Adam) and an evaluation, on random features (the work does not
    depend on their values), median of ``repeats`` after a warm-up."""
    model = trainer.model
    adapter = copy.deepcopy(model.learner).train()
    optim = build_optimizer(adapter, trainer.cfg.OPTIM)
    g = torch.Generator().manual_seed(0)
    dim = model.clip.text_projection.shape[1]
    images = l2_normalize(torch.randn(ADAPTER_BATCH, dim, generator=g))
    texts = l2_normalize(torch.randn(classes, dim, generator=g))
    labels = torch.randint(classes, (ADAPTER_BATCH,), generator=g)

    def train_step() -> None:
        loss = F.cross_entropy(adapted_logits(adapter, images, texts, model.blend, model.clip.logit_scale), labels)
        optim.zero_grad()
        loss.backward()
        optim.step()

    def evaluate() -> None:
        with torch.no_grad():
            adapted_logits(adapter, images, texts, model.blend, model.clip.logit_scale)

    costs = {}
    for name, fn in (("train", train_step), ("val", evaluate)):
        fn()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        costs[f"{name}_s"] = statistics.median(times) / ADAPTER_BATCH
        costs[f"{name}_gflop"] = b.count_flops(fn) / 1e9 / ADAPTER_BATCH
    return costs


def extrapolate(report: dict[str, Any], scenario: Scenario, adapter: dict[str, float]) -> dict[str, Any]:
    """The recipe at ``scenario``'s size from the measured costs (see the module docstring).

    Per image: ``image`` = what the uncached path pays more per epoch and image (reading, transforming,
    encoding), the measured later-epoch difference; ``adapter`` = the adapter's step or evaluation at the
    scenario's class count. Per epoch, the cached path pays the measured later-epoch cost of the reduced
    run (loader, val bookkeeping, checkpoints) plus the adapter's work; each image is encoded once by
    default (its first pass), the test images once in both paths.
    """
    s, later = report["setting"], report["later_epoch_s"]
    image_s = (later["uncached"] - later["cached"]) / (s["train_images"] + s["val_images"])
    encode = report["gflop_per_image_encode"]
    n = scenario
    adapter_s = n.used * adapter["train_s"] + n.val * adapter["val_s"]
    adapter_gflop = n.used * adapter["train_gflop"] + n.val * adapter["val_gflop"]
    cached_epoch = later["cached"] + adapter_s
    epoch_s = {"cached": cached_epoch, "uncached": cached_epoch + (n.used + n.val) * image_s}
    epoch_gflop = {"cached": adapter_gflop, "uncached": adapter_gflop + (n.used + n.val) * encode}
    once = n.train + n.val  # images the cached path encodes over the run
    test_s, test_gflop = n.test * (image_s + adapter["val_s"]), n.test * (encode + adapter["val_gflop"])
    train_s = {
        "uncached": EPOCHS_END_TO_END * epoch_s["uncached"],
        "cached": EPOCHS_END_TO_END * epoch_s["cached"] + once * image_s,
    }
    train_gflop = {
        "uncached": EPOCHS_END_TO_END * epoch_gflop["uncached"],
        "cached": EPOCHS_END_TO_END * epoch_gflop["cached"] + once * encode,
    }
    return {
        "scenario": n.__dict__ | {"used_per_epoch": n.used},
        "image_s": image_s,
        "adapter": adapter,
        "epoch_s": epoch_s,
        "epoch_gflop": epoch_gflop,
        "training_s": train_s,
        "training_speedup": train_s["uncached"] / train_s["cached"],
        "training_gflop_ratio": train_gflop["uncached"] / train_gflop["cached"],
        "with_test_speedup": (train_s["uncached"] + test_s) / (train_s["cached"] + test_s),
        "with_test_gflop_ratio": (train_gflop["uncached"] + test_gflop) / (train_gflop["cached"] + test_gflop),
    }


def run(setting: Setting, workdir: Path) -> dict[str, Any]:
    torch.manual_seed(0)
    weights = CLIP(setting.arch).state_dict()
    InMemoryWeights.state_dict_given = weights
    make_dataset("dtd", str(workdir / "data"), n_classes=setting.classes, n_train=setting.per_class,
                 n_val=setting.per_class, n_test=setting.per_class, size=setting.size, seed=0)  # fmt: skip
    log = workdir / "trainers.log"
    trainers = {path: build(setting, workdir, path, log) for path in PATHS}
    count_uncached(trainers["uncached"])
    n_train, n_val = len(trainers["cached"].dm.dataset.train_x), len(trainers["cached"].dm.dataset.val)
    epochs: dict[str, list[dict[str, float]]] = {path: [] for path in PATHS}
    for i in range(setting.epochs):
        for path in PATHS:
            epochs[path].append(epoch(trainers[path], i, log))
            row = epochs[path][-1]
            print(f"  {path:8s} epoch {i + 1}: {row['total_s']:.2f} s ({row['encoded']} images encoded)", flush=True)
    per_image = encode_gflop(trainers["cached"], setting.size)
    adapter = adapter_gflop(trainers["cached"], setting.epochs, log)
    report = summarize(setting, epochs, n_train, n_val, per_image, adapter)
    report["extrapolated"] = [
        extrapolate(report, scenario, adapter_costs(trainers["cached"], scenario.classes)) for scenario in SCENARIOS
    ]
    return report


def summarize(
    setting: Setting, epochs: dict[str, list[dict[str, float]]], n_train: int, n_val: int, encode: float, adapter: float
) -> dict[str, Any]:
    """Measured epochs, the GFLOPs, and the 200-epoch extrapolation of each path."""
    later = {path: statistics.median(e["total_s"] for e in rows[1:]) for path, rows in epochs.items()}
    first = {path: rows[0]["total_s"] for path, rows in epochs.items()}
    # The final test pass: the test split's first pass in both paths, at the uncached per-image cost of a val pass.
    val_per_image = statistics.median(e["val_s"] for e in epochs["uncached"]) / n_val
    test_s = n_val * val_per_image  # the synthetic test split has as many images as the val split
    end_to_end = {path: first[path] + (EPOCHS_END_TO_END - 1) * later[path] + test_s for path in PATHS}
    gflop = {
        "uncached": adapter + (n_train + n_val) * encode,
        "cached_first": adapter + (n_train + n_val) * encode,
        "cached_later": adapter,
    }
    gflop_end_to_end = {
        "uncached": EPOCHS_END_TO_END * gflop["uncached"] + n_val * encode,
        "cached": gflop["cached_first"] + (EPOCHS_END_TO_END - 1) * gflop["cached_later"] + n_val * encode,
    }
    return {
        "setting": {
            "arch": setting.arch.__dict__, "image_px": setting.size, "classes": setting.classes,
            "train_images": n_train, "val_images": n_val, "batch": 256, "val_batch": 100,
            "workers": setting.workers, "epochs_measured": setting.epochs,
        },  # fmt: skip
        "epochs": epochs,
        "first_epoch_s": first,
        "later_epoch_s": later,
        "epoch_speedup": later["uncached"] / later["cached"],
        "test_pass_s": test_s,
        "end_to_end_s": end_to_end,
        "end_to_end_speedup": end_to_end["uncached"] / end_to_end["cached"],
        "gflop_per_image_encode": encode,
        "gflop_per_epoch": gflop,
        "gflop_end_to_end": gflop_end_to_end,
        "gflop_end_to_end_ratio": gflop_end_to_end["uncached"] / gflop_end_to_end["cached"],
    }


def markdown(report: dict[str, Any]) -> str:
    s, first, later = report["setting"], report["first_epoch_s"], report["later_epoch_s"]
    g, e2e = report["gflop_per_epoch"], report["end_to_end_s"]
    lines = [
        f"{s['classes']} classes, {s['train_images']} training and {s['val_images']} val images at {s['image_px']} px "
        f"(batch {s['batch']}, val batch {s['val_batch']}, {s['workers']} workers), {s['epochs_measured']} epochs "
        "measured per path, interleaved",
        "",
        "| path | epoch 1 (s) | later epochs (s, median) | GFLOP epoch 1 | GFLOP later | "
        f"{EPOCHS_END_TO_END} epochs + test (s, extrapolated) |",
        "|---|---|---|---|---|---|",
        f"| uncached | {first['uncached']:.2f} | {later['uncached']:.2f} | {g['uncached']:.1f} | {g['uncached']:.1f} "
        f"| {e2e['uncached']:.0f} |",
        f"| cached | {first['cached']:.2f} | {later['cached']:.3f} | {g['cached_first']:.1f} | {g['cached_later']:.3f} "
        f"| {e2e['cached']:.0f} |",
        "",
        f"Later epochs: {report['epoch_speedup']:.1f}x faster; end to end ({EPOCHS_END_TO_END} epochs and the test "
        f"pass): {report['end_to_end_speedup']:.1f}x by wall-clock, {report['gflop_end_to_end_ratio']:.1f}x by FLOPs "
        f"(image tower: {report['gflop_per_image_encode']:.2f} GFLOP per image).",
        "",
        f"Extrapolated to the recipe's datasets ({EPOCHS_END_TO_END} epochs, default settings: each image encoded "
        "once; adapter costs measured at the dataset's class count):",
        "",
        "| dataset | classes | train (per epoch) / val / test images | epoch uncached (s) | epoch cached (s) "
        f"| {EPOCHS_END_TO_END} epochs: speed-up (FLOPs) | with the final test (FLOPs) |",
        "|---|---|---|---|---|---|---|",
    ]
    for x in report["extrapolated"]:
        n, e = x["scenario"], x["epoch_s"]
        lines.append(
            f"| {n['name']} | {n['classes']} | {n['train']} ({n['used_per_epoch']}) / {n['val']} / {n['test']} "
            f"| {e['uncached']:.1f} | {e['cached']:.2f} "
            f"| {x['training_speedup']:.0f}x ({x['training_gflop_ratio']:.0f}x) "
            f"| {x['with_test_speedup']:.0f}x ({x['with_test_gflop_ratio']:.0f}x) |"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny CLIP at 32 px, 4 classes, no workers: seconds")
    p.add_argument("--classes", type=int, help="classes of the synthetic dataset (default 24, DTD's base classes)")
    p.add_argument("--per-class", type=int, help="training and val images per class (default 1)")
    p.add_argument("--epochs", type=int, help="epochs measured per path (at least 2; default 3)")
    p.add_argument("--workers", type=int, help="loader workers (default: the recipe's 8; 0 with --smoke)")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1: on a shared CPU more threads "
                   "spin against the other jobs, slower for both paths)")
    p.add_argument("--json", default="output/bench_feature_cache.json", help="where the numbers go")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base = SMOKE if args.smoke else FULL
    setting = Setting(
        base.arch, base.size, args.classes or base.classes, args.per_class or base.per_class,
        args.epochs or base.epochs, base.workers if args.workers is None else args.workers,
    )  # fmt: skip
    if setting.epochs < 2:
        print("error: --epochs must be at least 2 (the first epoch and a later one)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        report = run(setting, Path(tmp))
    report["machine"] = {"torch": torch.__version__, "threads": args.threads, "cpus": os.cpu_count(),
                         "device": "cpu", "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    report["markdown"] = markdown(report)
    print(report["markdown"])
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    b.write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
