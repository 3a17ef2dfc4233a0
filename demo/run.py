"""The demo end to end: world -> tiny CLIP -> zero-shot -> MMRL / MMRL++ base-to-novel -> table, report, picture.

Every number, zero-shot CLIP's (ZeroshotCLIP) as MMRL's, comes from the project's real command line
(train.py, through ``demo.launch`` which only registers the demo dataset, then parse_test_res.py and the
report) on a dataset in the real on-disk layout; only the world and the backbone are small. Runs of
different (method, seed) go in parallel lanes of one thread each: the models are so small that a second
thread per process costs more than it gives (measured), while two processes use two cores fully.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from dassl.utils.tools import atomic_write
from tools.protocols.layout import config_dir, seed_dir
from tools.protocols.results import read_result
from tools.protocols.settings import ProtocolError, display_name, setting
from tools.report import Table, build_tables, load_results, make_report, render_text
from tools.report.aggregate import DISPLAY

from .dataset import DATASET_DIR, SPLIT_FILE
from .pretrain import PretrainConfig, pretrained_weights
from .world import WorldConfig, write_target_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATASET_CONFIG = os.path.join(REPO, "demo", "demo_shapes.yaml")
ZERO_SHOT = "Zero-shot tiny CLIP"
ZERO_SHOT_TRAINER = "ZeroshotCLIP"
BATCH_LINE = re.compile(r"epoch \[(\d+)/(\d+)\] batch \[(\d+)/(\d+)\]")


@dataclass(frozen=True)
class Settings:
    """One demo profile: the world, the pretraining and the base-to-novel runs."""

    world: WorldConfig = field(default_factory=WorldConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    images_per_class: tuple[int, int, int] = (24, 4, 25)  # train, val, test
    shots: int = 16
    epochs: int = 10
    batch_size: int = 32
    seeds: tuple[int, ...] = (1, 2, 3)
    methods: tuple[str, ...] = ("MMRL", "MMRLpp")

    def train_batches(self) -> int:
        """Training batches of one run (the loader drops the last partial batch)."""
        n_base = math.ceil(len(self.world.classes()) / 2)
        items = n_base * min(self.shots, self.images_per_class[0])
        return self.epochs * max(1, items // self.batch_size)


FULL = Settings()
# The test's profile: 24 classes, a shorter pretraining, one seed (the two methods run side by side).
QUICK = Settings(
    world=WorldConfig(n_patterns=3),
    pretrain=PretrainConfig(per_concept=150, steps=500),
    images_per_class=(16, 2, 20),
    seeds=(1,),
)


def base2new_config(method: str) -> str:
    """The method's published base-to-novel config file (its protocols.yaml)."""
    try:
        config = setting(method, "base2new", DATASET_DIR).config
    except ProtocolError as e:
        raise RuntimeError(str(e)) from e
    return os.path.join(REPO, "configs", "trainers", method, f"{config}.yaml")


class Demo:
    """Paths and train.py command lines of one demo under ``out``."""

    def __init__(self, settings: Settings, out: str):
        self.s = settings
        self.out = os.path.abspath(out)
        self.data_root = os.path.join(self.out, "data")
        self.weights = ""  # the tiny CLIP, set once pretrained or found in the cache

    def run_dir(self, stage: str, method: str, seed: int | None = None) -> str:
        """The official tree: output/base2new/{train_base,test_new}/<dataset>/shots_K/<trainer>/<config>/seed<S>."""
        cfg = os.path.splitext(os.path.basename(base2new_config(method)))[0]
        path = config_dir(os.path.join(self.out, "output"), "base2new", stage, DATASET_DIR, self.s.shots, method, cfg)
        return path if seed is None else seed_dir(path, seed)

    def flags(self, method: str, seed: int) -> list[str]:
        """train.py flags: the demo dataset's YAML and the official trainer YAML."""
        return [
            "--root", self.data_root,
            "--seed", str(seed),
            "--trainer", method,
            "--dataset-config-file", DATASET_CONFIG,
            "--config-file", base2new_config(method),
        ]  # fmt: skip

    def backbone_opts(self, method: str) -> list[str]:
        """Options fitting the official trainer YAML to the tiny backbone and a CPU."""
        size = self.s.world.image_size
        return [
            "TASK", "B2N",
            "MODEL.BACKBONE.PATH", self.weights,
            "INPUT.SIZE", f"({size}, {size})",
            "USE_CUDA", "False",  # fp32 on the CPU, as the demo is measured
            "DATALOADER.NUM_WORKERS", "0",
        ]  # fmt: skip

    def opts(self, method: str, subsample: str) -> list[str]:
        return [
            *self.backbone_opts(method),
            "DATASET.NUM_SHOTS", str(self.s.shots),
            "DATASET.SUBSAMPLE_CLASSES", subsample,
            "DATALOADER.TRAIN_X.BATCH_SIZE", str(self.s.batch_size),
            "OPTIM.MAX_EPOCH", str(self.s.epochs),
        ]  # fmt: skip

    def zero_shot_command(self, stage: str, seed: int) -> list[str]:
        """Zero-shot CLIP as the base-to-novel protocol runs it: ``--eval-only`` on base (train_base) or new."""
        out = ["--output-dir", self.run_dir(stage, ZERO_SHOT_TRAINER, seed), "--eval-only"]
        subsample = "base" if stage == "train_base" else "new"
        return [*self.flags(ZERO_SHOT_TRAINER, seed), *out, *self.opts(ZERO_SHOT_TRAINER, subsample)]

    def train_command(self, method: str, seed: int) -> list[str]:
        out = ["--output-dir", self.run_dir("train_base", method, seed)]
        return [*self.flags(method, seed), *out, *self.opts(method, "base")]

    def test_command(self, method: str, seed: int) -> list[str]:
        out = ["--output-dir", self.run_dir("test_new", method, seed)]
        model = ["--model-dir", self.run_dir("train_base", method, seed), "--load-epoch", str(self.s.epochs)]
        return [*self.flags(method, seed), *out, *model, "--eval-only", *self.opts(method, "new")]


def _launch(args: list[str], on_line: Callable[[str], None] | None = None) -> None:
    """Run train.py (``python -m demo.launch args``) on one thread; fail with the output's tail."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-m", "demo.launch", *args]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-40:]
        if on_line is not None:
            on_line(line)
    if proc.wait() != 0:
        raise RuntimeError(f"this run failed:\n  {format_command(args)}\n" + "\n".join(tail))


def _parse_results(directory: str, test_log: bool) -> None:
    """parse_test_res.py on one config folder, as the official scripts end: it writes parse.txt."""
    cmd = [sys.executable, os.path.join(REPO, "parse_test_res.py"), directory] + (["--test-log"] if test_log else [])
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    summary = [line for line in result.stdout.splitlines() if line.startswith("* accuracy:")]
    if result.returncode != 0 or not summary:
        raise RuntimeError(f"parse_test_res.py failed on {directory}:\n{result.stdout}{result.stderr}")
    print(f"{directory}: {summary[-1]}")


def format_command(args: list[str]) -> str:
    return "python -m demo.launch " + " ".join(f'"{a}"' if " " in a else a for a in args)


def _phase(title: str) -> None:
    print(f"\n== {title} ==", flush=True)


def run_methods(demo: Demo, jobs: int) -> None:
    """Every (method, seed): train on the base classes, then evaluate on the new ones."""
    chains = [(m, seed) for m in demo.s.methods for seed in demo.s.seeds]
    lock = threading.Lock()
    bar = tqdm(total=len(chains) * demo.s.train_batches(), desc="training (all runs)", unit="batch")

    def chain(method: str, seed: int) -> None:
        done = 0

        def on_line(line: str) -> None:  # the trainer's "epoch [e/E] batch [b/B]" lines move the bar
            nonlocal done
            match = BATCH_LINE.search(line)
            if match:
                epoch, _, batch, n_batches = map(int, match.groups())
                now = (epoch - 1) * n_batches + batch
                with lock:
                    bar.update(now - done)
                done = now

        start = time.time()
        _launch(demo.train_command(method, seed), on_line)
        _launch(demo.test_command(method, seed))
        seconds = time.time() - start
        with lock:
            bar.write(f"  {display_name(method)} seed {seed}: trained on base, evaluated on new, in {seconds:.0f} s")

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        for future in [pool.submit(chain, m, seed) for m, seed in chains]:
            future.result()
    bar.close()


def demo_table(settings: Settings, tree: str) -> tuple[Table, dict[str, dict]]:
    """The demo's table: zero-shot CLIP's and each method's row of the report's base-to-novel table (the same
    cells, so the same numbers as the report and parse_test_res.py); and those numbers, unrounded."""
    res = load_results(tree)
    report = next(t for t in build_tables(res) if t.protocol == "base2new")
    table = Table(
        "base2new",
        f"Base-to-novel on DemoShapes ({settings.shots} shots; mean ± std over {len(settings.seeds)} seed(s))",
        ["", "Base", "Novel", "HM"],
        [],
    )
    rows: dict[str, dict] = {}
    label = DISPLAY.get(DATASET_DIR, DATASET_DIR)
    for m, name in ((ZERO_SHOT_TRAINER, ZERO_SHOT), *((m, display_name(m)) for m in settings.methods)):
        table.rows += [[name, *row[2:5]] for row in report.rows if row[:2] == [label, m]]
        base, new = (res.get("base2new", m, DATASET_DIR, phase) for phase in ("base", "novel"))
        rows[name] = {"base": base.mean, "base_std": base.std, "new": new.mean, "new_std": new.std}
    return table, rows


def _clean(demo: Demo) -> None:
    """Remove what an earlier demo left in ``out`` (train.py would resume from it), and only that."""
    shutil.rmtree(os.path.join(demo.data_root, DATASET_DIR), ignore_errors=True)
    shutil.rmtree(os.path.join(demo.out, "output"), ignore_errors=True)


def run(settings: Settings, out: str, cache_dir: str | None, jobs: int) -> dict:
    """The five phases; returns (and writes to ``out``/results.json) the table's numbers and the timings."""
    torch.set_num_threads(1)
    demo = Demo(settings, out)
    timings: dict[str, float] = {}
    t0 = time.time()

    n_classes = len(settings.world.classes())
    _phase(f"1/5 World: {n_classes} classes (colour x pattern); the target domain is shifted")
    _clean(demo)
    dataset_dir = os.path.join(demo.data_root, DATASET_DIR)
    with tqdm(total=n_classes * sum(settings.images_per_class), desc="write target dataset", unit="img") as bar:
        write_target_dataset(settings.world, dataset_dir, SPLIT_FILE, settings.images_per_class, 1, bar)
    print(f"DemoShapes in the CoOp layout (images/<class>/, {SPLIT_FILE}): {dataset_dir}")
    timings["world"] = time.time() - t0

    _phase("2/5 Tiny CLIP: contrastive pretraining on the source domain")
    t = time.time()
    demo.weights, cached = pretrained_weights(settings.world, settings.pretrain, cache_dir)
    if cached:
        print(f"From the cache: {demo.weights}")
    timings["pretrain"] = time.time() - t

    _phase("3/5 Zero-shot tiny CLIP on the target test split (ZeroshotCLIP, base and new classes)")
    t = time.time()
    seed = settings.seeds[0]  # nothing is trained, nothing random: one seed
    for stage in ("train_base", "test_new"):
        _launch(demo.zero_shot_command(stage, seed))
        print(f"{stage}: {read_result(demo.run_dir(stage, ZERO_SHOT_TRAINER, seed)).accuracy:.2f}%")
    timings["zero_shot"] = time.time() - t

    methods = " and ".join(display_name(m) for m in settings.methods)
    _phase(f"4/5 {methods}: base-to-novel, {settings.shots} shots, seeds {list(settings.seeds)}")
    print("Each run is train.py's command line (demo.launch only registers DemoShapes), e.g.")
    method = settings.methods[0]
    print(f"  {format_command(demo.train_command(method, seed))}\n  {format_command(demo.test_command(method, seed))}")
    t = time.time()
    run_methods(demo, jobs)
    timings["runs"] = time.time() - t

    _phase("5/5 parse_test_res.py over the seeds, and the report")
    for m in settings.methods:
        _parse_results(demo.run_dir("train_base", m), test_log=False)
        _parse_results(demo.run_dir("test_new", m), test_log=True)
    tree = os.path.join(demo.out, "output")
    table, rows = demo_table(settings, tree)
    zero_shot = rows[ZERO_SHOT]
    timings["total"] = time.time() - t0

    print("\n" + render_text(table))
    for m in settings.methods:
        row = rows[display_name(m)]
        print(
            f"{display_name(m)} vs zero-shot: base {row['base'] - zero_shot['base']:+.2f} (fused logits), "
            f"novel {row['new'] - zero_shot['new']:+.2f} (class-token logits only: decoupled inference)"
        )
    print("\nThe report of the output tree (what base_to_novel.sh ends with):")
    report_files = make_report(tree, out_dir=demo.out, show=())
    times = ", ".join(f"{k} {v:.0f} s" for k, v in timings.items())
    print(f"Times: {times}" + (" (tiny CLIP from the cache)" if cached else ""))
    results = {
        "rows": rows,
        "timings": timings,
        "pretrain_cached": cached,
        "settings": dataclasses.asdict(settings),
        "report": [os.path.relpath(path, demo.out) for path in report_files],
    }
    with atomic_write(os.path.join(demo.out, "results.json")) as f:
        json.dump(results, f, indent=2)
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bash demo.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the test's shortened profile (smaller world, 1 seed)")
    parser.add_argument("--out", default=os.path.join(REPO, "demo_output"), help="data, runs and results.json")
    parser.add_argument("--cache-dir", help="where the pretrained tiny CLIP is cached (default ~/.cache/mmrl_demo)")
    parser.add_argument("--methods", nargs="+", help="trainers to run (default: MMRL MMRLpp), e.g. CoOp MMRL")
    parser.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="runs in parallel, 1 thread each")
    args = parser.parse_args(argv)
    try:
        settings = QUICK if args.quick else FULL
        if args.methods:
            settings = dataclasses.replace(settings, methods=tuple(args.methods))
        run(settings, args.out, args.cache_dir, max(1, args.jobs))
    except RuntimeError as e:
        sys.exit(f"error: {e}")
