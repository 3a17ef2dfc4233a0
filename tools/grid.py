"""A grid of runs (methods x datasets x seeds x shots x phase), each cell its own job, locally or on SLURM.

    python -m tools.grid --protocol base2new --methods CoOp MMRL --datasets dtd eurosat --seeds 1 2 3 \\
        --root DATA --output OUT --executor local --gpus 0 1 -- MODEL.BACKBONE.PATH /models/ViT-B-16.pt
    python -m tools.grid ... --executor slurm --partition gpu --time 240 --gpus-per-job 1

Every cell is the command line the protocol scripts run (scripts/protocols.sh, settings from each method's
protocols.yaml) into the same output tree, so a grid and the scripts share results. A cell that finished
(its ``grid.done`` marker) is skipped; a failed or killed one runs again and resumes from its last epoch; one
whose folder a live run holds (tools/run_lock.py: a requeued job's first copy, another grid) is running.
Test cells (new classes, cross-dataset targets) start once the cell that trains their model is done.
``local`` runs N cells at once (one per GPU of --gpus, or --jobs on CPU); ``slurm`` submits each cell as a
SLURM job through submitit (``pip install -e ".[slurm]"``); ``submitit-local`` is submitit's local executor,
the same path without a cluster. A progress table is redrawn while cells run; the report ends the grid.
"""

from __future__ import annotations

import argparse
import os
import os.path as osp
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from dassl.utils import UserError, atomic_write
from tools.run_lock import LOCKED_EXIT, holder, prepare

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(REPO, "scripts"))
from protocol import ProtocolError, run_folder, settings  # noqa: E402  (scripts/protocol.py, shared with the shell scripts)

DONE = "grid.done"


class GridError(UserError):
    """A grid that cannot run as asked (unknown method, missing extra, bad option)."""


@dataclass
class Cell:
    """One train.py run of the grid: its arguments, its folder and the cell it waits for."""

    name: str
    args: list[str]
    output_dir: str
    after: str | None = None  # output_dir of the cell that trains this cell's model
    state: str = "pending"  # pending, running, done, failed
    attempts: int = 0
    elsewhere: str | None = None  # running, but in another process that holds the folder (tools/run_lock.py)
    log: str = field(default="", repr=False)

    @property
    def done(self) -> bool:
        return osp.isfile(osp.join(self.output_dir, DONE))


def _cell(method: str, dataset: str, seed: int, config: str, out: str, flags: list[str], opts: list[str]) -> list[str]:
    return [
        "--root", "{root}", "--seed", str(seed), "--trainer", method,
        "--dataset-config-file", osp.join(REPO, "configs", "datasets", f"{dataset}.yaml"),
        "--config-file", osp.join(REPO, "configs", "trainers", method, f"{config}.yaml"),
        "--output-dir", out, *flags, *opts,
    ]  # fmt: skip


def plan(protocol: str, methods: Iterable[str], datasets: Iterable[str], seeds: Iterable[int],
         shots: Iterable[int], output: str) -> list[Cell]:  # fmt: skip
    """The cells of a protocol, in the output tree and with the command lines of scripts/protocols.sh."""
    cells: list[Cell] = []
    for method in methods:
        for seed in seeds:
            if protocol == "base2new":
                for dataset in datasets:
                    cfg, eval_only, opts = settings(method, protocol, dataset)
                    tail = osp.join(dataset, "shots_16", method, cfg, f"seed{seed}")
                    train_dir = osp.join(output, "base2new", "train_base", tail)
                    test_dir = osp.join(output, "base2new", "test_new", tail)
                    common = ["DATASET.NUM_SHOTS", "16", "TASK", "B2N"]
                    train_flags = ["--eval-only"] if eval_only else []
                    test_flags = ["--eval-only"] if eval_only else ["--model-dir", train_dir, "--eval-only"]
                    cells.append(Cell(f"{method}/{dataset}/seed{seed}/train_base", _cell(
                        method, dataset, seed, cfg, train_dir, train_flags,
                        [*common, "DATASET.SUBSAMPLE_CLASSES", "base", *opts]), train_dir))  # fmt: skip
                    cells.append(Cell(f"{method}/{dataset}/seed{seed}/test_new", _cell(
                        method, dataset, seed, cfg, test_dir, test_flags,
                        [*common, "DATASET.SUBSAMPLE_CLASSES", "new", *opts]), test_dir, after=train_dir))  # fmt: skip
            elif protocol == "cross_datasets":
                cfg, eval_only, opts = settings(method, protocol, "imagenet")
                folder = run_folder(method, protocol, "imagenet", cfg)
                model = osp.join(output, "base2new", "train_base", "imagenet", "shots_16", method, folder)
                model = osp.join(model, f"seed{seed}")
                common = ["DATASET.NUM_SHOTS", "16", "TASK", "CD"]
                cells.append(Cell(f"{method}/imagenet/seed{seed}/train", _cell(
                    method, "imagenet", seed, cfg, model, ["--eval-only"] if eval_only else [],
                    [*common, *opts]), model))  # fmt: skip
                for dataset in datasets:
                    cfg, eval_only, opts = settings(method, protocol, dataset)
                    folder = run_folder(method, protocol, dataset, cfg)
                    out = osp.join(output, "base2new", "test_new", dataset, "shots_16", method, folder, f"seed{seed}")
                    flags = ["--eval-only"] if eval_only else ["--model-dir", model, "--eval-only"]
                    cells.append(Cell(f"{method}/{dataset}/seed{seed}/test", _cell(
                        method, dataset, seed, cfg, out, flags, [*common, *opts]), out, after=model))  # fmt: skip
            else:
                for dataset in datasets:
                    for k in shots:
                        cfg, eval_only, opts = settings(method, protocol, dataset, k)
                        out = osp.join(output, "few_shot", dataset, f"shots_{k}", method, cfg, f"seed{seed}")
                        cells.append(Cell(f"{method}/{dataset}/{k}-shot/seed{seed}", _cell(
                            method, dataset, seed, cfg, out, ["--eval-only"] if eval_only else [],
                            ["DATASET.NUM_SHOTS", str(k), "TASK", "FS", *opts]), out))  # fmt: skip
    return cells


def run_cell(python: str, args: list[str], output_dir: str, env: dict[str, str]) -> int:
    """Run one cell's train.py (also inside a SLURM job); mark it done on success. Returns the exit code.

    A folder held by a live run (a requeued job's first copy, another grid) is left alone: LOCKED_EXIT.
    """
    os.makedirs(output_dir, exist_ok=True)
    if not osp.isfile(osp.join(output_dir, DONE)) and prepare(output_dir) is not None:  # keeps an old log aside
        return LOCKED_EXIT
    with open(osp.join(output_dir, "grid.out"), "a") as out:
        code = subprocess.call([python, osp.join(REPO, "train.py"), *args], stdout=out, stderr=subprocess.STDOUT,
                               env={**os.environ, **env}, cwd=REPO)  # fmt: skip
    if code == 0:
        with atomic_write(osp.join(output_dir, DONE)) as f:
            f.write("finished\n")
    return code


class LocalPool:
    """N cells at once as subprocesses, each pinned to one GPU of ``gpus`` (or none, on CPU)."""

    def __init__(self, slots: list[str | None]):
        self.slots = slots
        self.running: dict[str, tuple[subprocess.Popen, str | None]] = {}

    def free(self) -> int:
        return len(self.slots) - len(self.running)

    def start(self, cell: Cell, python: str) -> None:
        used = {gpu for _, gpu in self.running.values()}
        gpu = next(g for g in self.slots if g not in used) if None not in self.slots else None
        env = {"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {}
        code = (f"import sys; sys.path.insert(0, {REPO!r}); from tools.grid import run_cell; "
                f"sys.exit(run_cell({python!r}, {cell.args!r}, {cell.output_dir!r}, {env!r}))")  # fmt: skip
        self.running[cell.output_dir] = (subprocess.Popen([python, "-c", code], cwd=REPO), gpu)

    def poll(self) -> dict[str, int]:
        """Exit codes of the cells that ended since the last call, by output folder."""
        ended = {d: p.returncode for d, (p, _) in self.running.items() if p.poll() is not None}
        for d in ended:
            del self.running[d]
        return ended


class SubmititPool:
    """Each cell a submitit job: on SLURM (``cluster=None``) or submitit's local executor (``"local"``)."""

    def __init__(self, folder: str, cluster: str | None, parameters: dict, parallel: int):
        try:
            import submitit
        except ImportError as e:
            raise GridError('the slurm executor needs submitit: pip install -e ".[slurm]"') from e
        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        self.executor.update_parameters(**parameters)
        self.parallel = parallel
        self.jobs: dict[str, object] = {}

    def free(self) -> int:
        return self.parallel - len(self.jobs)

    def start(self, cell: Cell, python: str) -> None:
        self.executor.update_parameters(name=cell.name.replace("/", "_"))
        self.jobs[cell.output_dir] = self.executor.submit(run_cell, python, cell.args, cell.output_dir, {})

    def poll(self) -> dict[str, int]:
        ended = {}
        for d, job in list(self.jobs.items()):
            if job.done():
                try:
                    ended[d] = job.result()
                except Exception:  # the job itself failed (killed, preempted, out of time)
                    ended[d] = 1
                del self.jobs[d]
        return ended


def progress_table(cells: list[Cell]) -> str:
    counts = {s: sum(c.state == s for c in cells) for s in ("done", "running", "pending", "failed")}
    lines = [" ".join(f"{k} {v}" for k, v in counts.items()) + f"  (of {len(cells)})"]
    lines += [f"  running  {c.name}" + (f" (elsewhere: {c.elsewhere})" if c.elsewhere else "")
              for c in cells if c.state == "running"]  # fmt: skip
    lines += [f"  failed   {c.name} (see {osp.join(c.output_dir, 'grid.out')})" for c in cells if c.state == "failed"]
    return "\n".join(lines)


def run_grid(cells: list[Cell], pool: LocalPool | SubmititPool, python: str, retries: int = 1,
             interval: float = 2.0, show: Callable[[str], None] = print) -> list[Cell]:  # fmt: skip
    """Run every cell not yet done, tests after their training cell, ``retries`` reruns of a failed cell.

    A cell whose folder another live run holds is shown as running elsewhere and watched, never started
    or failed; when that run ends the cell is done (its marker) or pending again (it was killed).
    """
    by_dir = {c.output_dir: c for c in cells}
    for c in cells:
        c.state = "done" if c.done else "pending"
    shown = ""
    while any(c.state in ("pending", "running") for c in cells):
        for d, code in pool.poll().items():
            cell = by_dir[d]
            if code == LOCKED_EXIT:  # it lost the folder to a run that started meanwhile: not a failure
                cell.attempts -= 1
                cell.state, cell.elsewhere = "running", str(holder(d) or "another run")
                continue
            cell.state = "done" if code == 0 else ("pending" if cell.attempts <= retries else "failed")
        for c in cells:
            if c.elsewhere is not None:
                if holder(c.output_dir) is None:
                    c.elsewhere, c.state = None, "done" if c.done else "pending"
                continue
            if c.state != "pending" or pool.free() <= 0:
                continue
            waits_for = by_dir.get(c.after) if c.after else None
            if waits_for is not None and waits_for.state != "done":
                if waits_for.state == "failed":
                    c.state = "failed"
                continue
            by = holder(c.output_dir)
            if by is not None:
                c.state, c.elsewhere = "running", str(by)
                continue
            c.state, c.attempts = "running", c.attempts + 1
            pool.start(c, python)
        table = progress_table(cells)
        if table != shown:
            show(table)
            shown = table
        time.sleep(interval)
    return cells


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts: list[str] = []
    if "--" in argv:
        opts, argv = argv[argv.index("--") + 1 :], argv[: argv.index("--")]
    p = argparse.ArgumentParser(prog="python -m tools.grid", description=__doc__.splitlines()[0])
    p.add_argument("--protocol", required=True, choices=("base2new", "cross_datasets", "few_shot"))
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--datasets", nargs="+", required=True)
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2, 3])
    p.add_argument("--shots", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    p.add_argument("--root", required=True, help="the datasets folder (train.py --root)")
    p.add_argument("--output", required=True)
    p.add_argument("--executor", choices=("local", "slurm", "submitit-local"), default="local")
    p.add_argument("--gpus", nargs="*", default=None, help="local: GPU ids, one cell per GPU at a time")
    p.add_argument("--jobs", type=int, default=1, help="local without --gpus: cells at once (CPU)")
    p.add_argument("--retries", type=int, default=1, help="reruns of a failed cell before it is reported")
    p.add_argument("--partition", default=None)
    p.add_argument("--time", type=int, default=24 * 60, help="slurm: minutes per job")
    p.add_argument("--gpus-per-job", type=int, default=1)
    p.add_argument("--cpus-per-job", type=int, default=8)
    p.add_argument("--mem-gb", type=int, default=32)
    p.add_argument("--parallel", type=int, default=64, help="slurm: jobs queued at once")
    p.add_argument("--python", default=sys.executable)
    p.add_argument("--interval", type=float, default=2.0, help="seconds between progress checks")
    p.add_argument("--no-report", action="store_true")
    args = p.parse_args(argv)
    if len(opts) % 2:
        raise GridError(f"options after -- must be KEY VALUE pairs, got {opts}")
    if not osp.isdir(args.root):
        raise GridError(f"--root {args.root}: no such folder (see README.md#data)")
    try:
        cells = plan(args.protocol, args.methods, args.datasets, args.seeds, args.shots, os.path.abspath(args.output))
    except ProtocolError as e:
        raise GridError(str(e)) from e
    for c in cells:
        c.args = [a.replace("{root}", os.path.abspath(args.root)) for a in c.args] + opts

    if args.executor == "local":
        slots: list[str | None] = list(args.gpus) if args.gpus else [None] * max(1, args.jobs)
        pool: LocalPool | SubmititPool = LocalPool(slots)
    else:
        params = {"timeout_min": args.time, "cpus_per_task": args.cpus_per_job}
        if args.executor == "slurm":
            params.update(slurm_partition=args.partition, gpus_per_node=args.gpus_per_job, mem_gb=args.mem_gb)
        folder = osp.join(os.path.abspath(args.output), ".submitit")
        pool = SubmititPool(folder, "local" if args.executor == "submitit-local" else "slurm", params, args.parallel)
    cells = run_grid(cells, pool, args.python, retries=args.retries, interval=args.interval)
    failed = [c for c in cells if c.state == "failed"]
    print(f"Grid finished: {len(cells) - len(failed)} cells done, {len(failed)} failed")
    if not args.no_report:
        subprocess.call([args.python, "-m", "tools.report", os.path.abspath(args.output)], cwd=REPO)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:
        sys.exit(f"error: {e}")
