"""Running a scenario on each side: the official code (its folder as working directory, upstream Dassl on
the path, the launcher's shims) and ours (this repository's root), in subprocesses started by the launcher.

Sides: ``official``; ``exact`` (ours with ``EXACT True``, compared bit for bit); ``default`` (ours as a user
runs it, reported as a distance). Each side works in ``<work>/<method>/<scenario>/<side>/``: its own copy
of the world's data, one output folder, log and record folder per run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

from .scenario import Scenario

LAUNCH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "launch.py")
DRIVERS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "drivers.py")
OURS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SIDES = ("official", "exact", "default")


@dataclass(frozen=True)
class Paths:
    """Where each side's code is: the official code folder, upstream Dassl, more folders the official side
    imports from, our repository (its root holds our train.py), and single files the official side imports
    under a module name (CLIP-Adapter's trainer, meant to be dropped into CoOp's ``trainers/``)."""

    code: str
    dassl: str = ""
    extra: tuple[str, ...] = ()
    ours: str = OURS
    modules: tuple[str, ...] = ()  # NAME=FILE: files of another repository imported as module NAME


@dataclass
class Outcome:
    """One run on one side: its console output, the recorder's folder and the exit status."""

    log: str
    record: str
    returncode: int


def environment(threads: int, extra: tuple[str, ...] = ()) -> dict[str, str]:
    """The subprocess environment: the same thread count on every side (CPU sums over long rows depend on
    it), nothing imported from the caller's PYTHONPATH except ``extra``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads), PYTHONUNBUFFERED="1")
    if extra:
        env["PYTHONPATH"] = os.pathsep.join(extra)
    return env


def launch(side: str, cwd: str, record: str, script: list[str], log: str, threads: int, clip: str = "",
           paths: Paths | None = None, timeout: float | None = None,
           shims: tuple[str, ...] = ()) -> Outcome:  # fmt: skip
    """Run ``script`` (a path and its arguments) under the launcher; console output goes to ``log``."""
    cmd = [sys.executable, LAUNCH, "--side", "official" if side == "official" else "ours", "--record", record]
    if side == "official":
        cmd += ["--clip", clip] + (["--dassl", paths.dassl] if paths and paths.dassl else [])
        cmd += [arg for shim in shims for arg in ("--shim", shim)]
        cmd += [arg for module in (paths.modules if paths else ()) for arg in ("--module", module)]
    cmd += ["--", *script]
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "w") as f:
        f.write("$ (cd " + cwd + " && " + " ".join(cmd) + ")\n")
        f.flush()
        try:
            done = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                                  env=environment(threads, paths.extra if paths and side == "official" else ()),
                                  timeout=timeout)  # fmt: skip
            code = done.returncode
        except subprocess.TimeoutExpired:
            f.write(f"\n[tools.parity] killed after {timeout} s\n")
            code = -9
    with open(log) as f:
        return Outcome(f.read(), record, code)


def run_side(scenario: Scenario, side: str, world_dir: str, work: str, paths: Paths, threads: int,
             timeout: float | None = None) -> dict[str, Outcome]:  # fmt: skip
    """Every run of ``scenario`` on ``side``; a run whose predecessor failed is not started."""
    from .worlds import side_copy

    base = os.path.join(work, side)
    official_base = os.path.join(work, "official")
    root = side_copy(world_dir, base)
    clip = os.path.join(world_dir, "clip.pt")
    cwd = paths.code if side == "official" else paths.ours
    ours_opts = [] if side == "official" else ["MODEL.BACKBONE.PATH", clip, *scenario.ours_opts]
    if side == "exact":
        ours_opts += ["EXACT", "True"]
    outcomes: dict[str, Outcome] = {}
    for run in scenario.runs:
        model_dir = ""
        if run.model_dir:
            if outcomes.get(run.model_dir) is not None and outcomes[run.model_dir].returncode:
                break
            model_dir = os.path.join(official_base if run.official_model else base, "out", run.model_dir)
        out = os.path.join(base, "out", run.name)
        args = scenario.train_args(run, root, out, model_dir, side == "official")
        record, log = os.path.join(base, "rec", run.name), os.path.join(base, "logs", run.name + ".log")
        script = ["train.py", *args, *ours_opts]
        outcomes[run.name] = launch(side, cwd, record, script, log, threads, clip, paths, timeout, scenario.shims)
        if outcomes[run.name].returncode:
            break
    return outcomes


def run_driver(scenario: Scenario, side: str, world_dir: str, work: str, paths: Paths, threads: int,
               timeout: float | None = None) -> tuple[Outcome, dict | None]:  # fmt: skip
    """The scenario's recipe on ``side``: its outcome and the values it printed (None if it failed)."""
    base = os.path.join(work, side)
    clip = os.path.join(world_dir, "clip.pt")
    cwd = paths.code if side == "official" else paths.ours
    result = os.path.join(base, "values.json")
    if os.path.exists(result):
        os.remove(result)
    args = [DRIVERS, scenario.driver, "--side", "official" if side == "official" else "ours", "--clip", clip]
    args += ["--out", result, "--args", json.dumps(scenario.driver_args)]
    if side == "exact":
        args.append("--exact")
    outcome = launch(side, cwd, os.path.join(base, "rec"), args, os.path.join(base, "driver.log"), threads, clip,
                     paths, timeout, scenario.shims)  # fmt: skip
    if outcome.returncode or not os.path.exists(result):
        return outcome, None
    with open(result) as f:
        return outcome, json.load(f)
