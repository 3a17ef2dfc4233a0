"""A grid of runs (methods x datasets x seeds x shots x phase), each cell its own job, locally or on SLURM.

    python -m tools.grid --protocol base2new --methods CoOp MMRL --datasets dtd eurosat --seeds 1 2 3 \\
        --root DATA --output OUT --executor local --gpus 0 1 -- MODEL.BACKBONE.PATH /models/ViT-B-16.pt
    python -m tools.grid ... --executor slurm --partition gpu --time 240 --gpus-per-job 1
    python -m tools.grid --ablation lambda --methods MMRL --root DATA --output OUT ...   # a declared ablation

Every cell is a command line of the protocol's run plan (``tools/protocols``, the one the shell scripts run,
settings from each method's protocols.yaml) into the same output tree, so a grid and the scripts share
results. A finished cell (it holds a test result) is skipped; a failed or killed one runs again and
resumes from its last epoch; one whose folder a live run holds (tools/run_lock.py: a requeued job's first
copy, another grid, a script) is running elsewhere: watched, never started. A cell's train.py output goes
to ``grid.out`` in its folder.
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
from collections.abc import Callable
from dataclasses import dataclass

from dassl.utils import UserError
from tools.protocols import FINISHED, PROTOCOLS, ProtocolError, cell_status, plan
from tools.protocols.ablation import PROTOCOL as ABLATION_PROTOCOL
from tools.protocols.ablation import ablation_plan
from tools.protocols.plan import Cell
from tools.protocols.settings import REPO
from tools.run_lock import LOCKED_EXIT, holder

LOG = "grid.out"  # each cell's train.py output, in its folder


class GridError(UserError):
    """A grid that cannot run as asked (unknown method, missing extra, bad option)."""


@dataclass
class Job:
    """A cell of the plan as the grid runs it: its state and attempts."""

    cell: Cell
    state: str = "pending"  # pending, running, done, failed
    attempts: int = 0
    elsewhere: str | None = None  # running, but in another process that holds the folder (tools/run_lock.py)

    @property
    def name(self) -> str:
        return self.cell.name

    @property
    def output_dir(self) -> str:
        return self.cell.output_dir


def launch_command(python: str, cell: Cell) -> list[str]:
    """The command a job runs: one cell through ``python -m tools.protocols launch`` (from the repository)."""
    return [python, "-m", "tools.protocols", "launch", cell.output_dir, "--log", osp.join(cell.output_dir, LOG),
            "--python", python, "--", *cell.args]  # fmt: skip


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
        env = {**os.environ, **({"CUDA_VISIBLE_DEVICES": gpu} if gpu is not None else {})}
        self.running[cell.output_dir] = (subprocess.Popen(launch_command(python, cell), cwd=REPO, env=env), gpu)

    def poll(self) -> dict[str, int]:
        """Exit codes of the cells that ended since the last call, by output folder."""
        ended = {d: p.returncode for d, (p, _) in self.running.items() if p.poll() is not None}
        for d in ended:
            del self.running[d]
        return ended


class SubmititPool:
    """Each cell a submitit job: on SLURM (``cluster=None``) or submitit's local executor (``"local"``).

    A job runs the cell's launch command from the repository folder, so nothing of this repository needs to
    be installed where it runs.
    """

    def __init__(self, folder: str, cluster: str | None, parameters: dict, parallel: int):
        try:
            import submitit
        except ImportError as e:
            raise GridError('the slurm executor needs submitit: pip install -e ".[slurm]"') from e
        self.submitit = submitit
        self.executor = submitit.AutoExecutor(folder=folder, cluster=cluster)
        self.executor.update_parameters(**parameters)
        self.parallel = parallel
        self.jobs: dict[str, object] = {}

    def free(self) -> int:
        return self.parallel - len(self.jobs)

    def start(self, cell: Cell, python: str) -> None:
        self.executor.update_parameters(name=cell.name.replace("/", "_"))
        command = self.submitit.helpers.CommandFunction(launch_command(python, cell), cwd=REPO, verbose=False)
        self.jobs[cell.output_dir] = self.executor.submit(command)

    def poll(self) -> dict[str, int]:
        ended = {}
        for d, job in list(self.jobs.items()):
            if job.done():
                try:
                    job.result()
                    ended[d] = 0
                except Exception:  # train.py failed, or the job did (killed, preempted, out of time)
                    ended[d] = 1
                del self.jobs[d]
        return ended


def progress_table(jobs: list[Job]) -> str:
    counts = {s: sum(j.state == s for j in jobs) for s in ("done", "running", "pending", "failed")}
    lines = [" ".join(f"{k} {v}" for k, v in counts.items()) + f"  (of {len(jobs)})"]
    lines += [f"  running  {j.name}" + (f" (elsewhere: {j.elsewhere})" if j.elsewhere else "")
              for j in jobs if j.state == "running"]  # fmt: skip
    lines += [f"  failed   {j.name} (see {osp.join(j.output_dir, LOG)})" for j in jobs if j.state == "failed"]
    return "\n".join(lines)


def run_grid(cells: list[Cell], pool: LocalPool | SubmititPool, python: str, retries: int = 1,
             interval: float = 2.0, show: Callable[[str], None] = print) -> list[Job]:  # fmt: skip
    """Run every cell not finished yet, tests after their training cell, ``retries`` reruns of a failed cell.

    A cell whose folder another live run holds is shown as running elsewhere and watched, never started or
    failed; when that run ends the cell is done (it holds a result) or pending again (it was killed).
    """
    jobs = [Job(c, "done" if cell_status(c.output_dir) == FINISHED else "pending") for c in cells]
    by_dir = {j.output_dir: j for j in jobs}
    shown = ""
    while any(j.state in ("pending", "running") for j in jobs):
        for d, code in pool.poll().items():
            job = by_dir[d]
            by = holder(d) if code != 0 else None
            if code == LOCKED_EXIT or by is not None:  # it lost the folder to a run that started meanwhile
                job.attempts -= 1
                job.state, job.elsewhere = "running", str(by or "another run")
            elif code == 0 and cell_status(d) == FINISHED:
                job.state = "done"
            else:
                job.state = "pending" if job.attempts <= retries else "failed"
        for j in jobs:
            if j.elsewhere is not None:
                if holder(j.output_dir) is None:
                    j.elsewhere, j.state = None, "done" if cell_status(j.output_dir) == FINISHED else "pending"
                continue
            if j.state != "pending" or pool.free() <= 0:
                continue
            waits_for = by_dir.get(j.cell.after) if j.cell.after else None
            if waits_for is not None and waits_for.state != "done":
                if waits_for.state == "failed":
                    j.state = "failed"
                continue
            by = holder(j.output_dir)
            if by is not None:
                j.state, j.elsewhere = "running", str(by)
                continue
            j.state, j.attempts = "running", j.attempts + 1
            pool.start(j.cell, python)
        table = progress_table(jobs)
        if table != shown:
            show(table)
            shown = table
        time.sleep(interval)
    return jobs


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    opts: list[str] = []
    if "--" in argv:
        opts, argv = argv[argv.index("--") + 1 :], argv[: argv.index("--")]
    p = argparse.ArgumentParser(prog="python -m tools.grid", description=__doc__.splitlines()[0])
    p.add_argument("--protocol", choices=PROTOCOLS, help="required unless --ablation (base2new)")
    p.add_argument("--ablation", default=None, help="a declared ablation of the methods (their protocols.yaml)")
    p.add_argument("--values", nargs="+", default=None, help="the ablation's values to run (default: all)")
    p.add_argument("--methods", nargs="+", required=True)
    p.add_argument("--datasets", nargs="+", default=None, help="default: all of the protocol's")
    p.add_argument("--seeds", nargs="+", type=int, default=None, help="default: 1 2 3, or the ablation's")
    p.add_argument("--shots", nargs="+", type=int, default=None,
                   help="shots per class of few_shot and dg (default: 1 2 4 8 16; dg: 1 5)")
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
    if not osp.isdir(args.root):
        raise GridError(f"--root {args.root}: no such folder (see README.md#data)")
    output, root = osp.abspath(args.output), osp.abspath(args.root)
    if args.protocol is None and args.ablation is None:
        raise GridError("give --protocol (base2new, cross_datasets, few_shot) or --ablation NAME")
    try:
        if args.ablation is not None:
            if args.protocol not in (None, ABLATION_PROTOCOL):
                raise ProtocolError(f"--ablation runs on {ABLATION_PROTOCOL}, not {args.protocol}")
            cells = ablation_plan(args.methods, args.ablation, output, root, args.datasets, args.seeds, opts,
                                  values=args.values)  # fmt: skip
        else:
            cells = plan(args.protocol, args.methods, output, root, args.datasets, args.seeds or [1, 2, 3], args.shots,
                         opts)  # fmt: skip
    except ProtocolError as e:
        raise GridError(str(e)) from e

    if args.executor == "local":
        slots: list[str | None] = list(args.gpus) if args.gpus else [None] * max(1, args.jobs)
        pool: LocalPool | SubmititPool = LocalPool(slots)
    else:
        params = {"timeout_min": args.time, "cpus_per_task": args.cpus_per_job}
        if args.executor == "slurm":
            params.update(slurm_partition=args.partition, gpus_per_node=args.gpus_per_job, mem_gb=args.mem_gb)
        folder = osp.join(output, ".submitit")
        pool = SubmititPool(folder, "local" if args.executor == "submitit-local" else "slurm", params, args.parallel)
    jobs = run_grid(cells, pool, args.python, retries=args.retries, interval=args.interval)
    failed = [j for j in jobs if j.state == "failed"]
    print(f"Grid finished: {len(jobs) - len(failed)} cells done, {len(failed)} failed")
    if not args.no_report:
        show = "ablation" if args.ablation is not None else args.protocol
        subprocess.call([args.python, "-m", "tools.report", output, "--show", show], cwd=REPO)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except UserError as e:
        sys.exit(f"error: {e}")
