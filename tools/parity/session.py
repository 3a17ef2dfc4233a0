"""One scenario run on every side and compared: the report the CLI prints, and the summary table."""

from __future__ import annotations

import os
import pprint
import shutil
import time
from dataclasses import dataclass, field

from . import compare, repos, runner, worlds
from .pins import DRIVER_FORMS, RUN_FORMS
from .scenario import Pin, Scenario


@dataclass
class Report:
    """What one scenario gave: the exact verdict (None: equal) and the default path's distance."""

    scenario: Scenario
    difference: str | None = None
    failed: str | None = None
    lines: list[str] = field(default_factory=list)
    max_logit: float | None = None
    counts_equal: bool | None = None
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "FAILED" if self.failed else "DIFFERENT" if self.difference else "EQUAL"


@dataclass(frozen=True)
class Setting:
    """How a scenario is run: the code folders, the work folder, the sides and the options."""

    paths: runner.Paths
    work: str
    threads: int = 1
    default: bool = True
    write_pins: bool = False
    timeout: float | None = None

    @property
    def sides(self) -> list[str]:
        return ["official", "exact"] + (["default"] if self.default else [])


def run_scenario(s: Scenario, setting: Setting) -> Report:
    """Every side of one scenario, compared; the report's lines are what the CLI prints."""
    start = time.time()
    report = Report(s)
    world_dir = worlds.build(s.world, os.path.join(setting.work, "worlds"))
    base = os.path.join(setting.work, "runs", s.method, s.name)
    shutil.rmtree(base, ignore_errors=True)
    (driver_report if s.driver else train_report)(report, world_dir, base, setting)
    report.seconds = time.time() - start
    return report


def driver_report(report: Report, world_dir: str, base: str, setting: Setting) -> None:
    """A driver scenario: its values on each side, the exact side compared leaf by leaf."""
    s = report.scenario
    values: dict[str, dict] = {}
    for side in setting.sides:
        outcome, got = runner.run_driver(s, side, world_dir, base, setting.paths, setting.threads, setting.timeout)
        if got is None:
            report.failed = f"{side} side failed (exit {outcome.returncode}):\n" + tail(outcome.log)
            break
        values[side] = got
    if report.failed is None:
        report.difference = compare.compare_values(values["official"], values["exact"])
        verdict = "EQUAL" if report.difference is None else "DIFFERENT"
        report.lines.append(f"  values     {verdict} ({', '.join(sorted(values['official']))})")
        if setting.default:
            report.max_logit = max_difference(values["official"], values["default"])
    if setting.write_pins and "official" in values:
        for pin in s.pins:
            report.lines.append(pin_text(s, pin, DRIVER_FORMS[pin.form](values["official"])))


def train_report(report: Report, world_dir: str, base: str, setting: Setting) -> None:
    """A train.py scenario: each run official against exact; the default side's distance."""
    s, sides = report.scenario, setting.sides
    outcomes = {
        side: runner.run_side(s, side, world_dir, base, setting.paths, setting.threads, setting.timeout)
        for side in sides
    }
    for run in s.runs:
        got = {side: outcomes[side].get(run.name) for side in sides}
        broken = [side for side, o in got.items() if o is None or o.returncode]
        if broken:
            o = got[broken[0]]
            why = "not started" if o is None else f"exit {o.returncode}:\n" + tail(o.log)
            report.failed = f"run {run.name}: {broken[0]} side {why}"
            break
        off, ex = got["official"], got["exact"]
        v = compare.compare_run(off.log, off.record, ex.log, ex.record)
        verdict = "EQUAL" if v.difference is None else "DIFFERENT"
        line = f"  {run.name:<13} {verdict}  {v.steps} steps, {v.classes} classes"
        if setting.default:
            d = got["default"]
            worst, counts, steps = compare.distance(off.log, off.record, d.log, d.record)
            report.max_logit = max(report.max_logit or 0.0, worst)
            report.counts_equal = (report.counts_equal is not False) and counts
            line += f"; default: max |Δ logit| {worst:.2g}, counts {'equal' if counts else 'DIFFER'}"
            line += f", {steps} printed steps differ" if steps else ""
        report.lines.append(line)
        if v.difference and report.difference is None:
            report.difference = f"run {run.name}: {v.difference}"
    if setting.write_pins:
        for pin in s.pins:
            o = outcomes["official"].get(pin.run)
            if o is not None and not o.returncode:
                report.lines.append(pin_text(s, pin, RUN_FORMS[pin.form](o.log, o.record)))


def max_difference(a: dict, b: dict) -> float:
    """The largest |difference| between two drivers' outputs (their logits rows)."""
    worst = 0.0
    for k in ("all", "fusion0", "logits5"):
        if k in a and k in b:
            x, y = a[k], b[k]
            rows = zip(x, y) if x and isinstance(x[0], list) else [(x, y)]
            worst = max([worst, *(abs(p - q) for r, t in rows for p, q in zip(r, t))])
    return worst


def pin_text(s: Scenario, pin: Pin, value: object) -> str:
    head = f"# {pin.test} {pin.target}  (regenerate: {s.command()} --write-pins)"
    return head + "\n" + pprint.pformat(value, width=110, sort_dicts=False)


def tail(log: str, n: int = 15) -> str:
    return "\n".join("      " + line for line in log.rstrip().splitlines()[-n:])


def header(s: Scenario) -> str:
    repo = repos.REPOS[s.repo]
    return f"{s.label}  [{repo.short}]  {s.world.describe()}" + (f"\n  {s.note}" if s.note else "")


def summary_table(reports: list[Report]) -> str:
    """The markdown table of docs/parity.md: one row per scenario."""
    rows = ["| method | scenario | official | EXACT True | default: max abs logit diff, per-class counts |",
            "|---|---|---|---|---|"]  # fmt: skip
    for r in reports:
        d = "not run" if r.max_logit is None else f"{r.max_logit:.2g}"
        if r.counts_equal is not None:
            d += ", equal" if r.counts_equal else ", differ"
        repo = repos.REPOS[r.scenario.repo].short
        rows.append(f"| {r.scenario.method} | {r.scenario.name} | {repo} | {r.status} | {d} |")
    return "\n".join(rows)
