"""Reading what a run printed and recorded, and comparing two sides.

Compared, in this order, and the first difference reported with both lines:
1. every printed training step (``epoch [e/E] batch [b/B] ... loss ... acc ... lr ...``), without the
   timing fields, in one canonical form (``canonical_step``: the 2022 Dassl ProVP forked prints another);
2. the per-class lines (``* class: <k> (<name>)  total  correct  acc``);
3. the result block (``* total``, ``* correct``, ``* accuracy``, ``* error``, ``* macro_f1``);
4. the recorded training-step values at full precision, and the recorded test outputs, bit for bit.

The exact side must be equal in all four. The default side is reported as a distance: the largest
|difference| of a test output (logit), and whether the per-class counts are equal.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

import torch

# A step line: upstream Dassl prints "epoch [1/3] batch [1/3] time .. data .. loss 1.2754 (1.2754) acc ..
# lr 1.0000e-05 eta ..", the 2022 Dassl that ProVP forked "epoch [1/3][1/3]\ttime ..\tdata ..\teta ..\tloss ..
# \tlr 1.000000e-05" (and 2-decimal percentages): both are compared in one canonical form.
STEP = re.compile(r"^epoch \[(\d+)/(\d+)\](?: batch )?\[(\d+)/(\d+)\]")
METER = re.compile(r"(\w+) (-?[\d.]+(?:e[-+]?\d+)?) \((-?[\d.]+(?:e[-+]?\d+)?)\)")
LR = re.compile(r"\blr (\S+)")
PERCENT = re.compile(r"(-?\d+\.\d+)%")
PER_CLASS = re.compile(r"^\* class: ")
RESULT = re.compile(r"^\* (total|correct|accuracy|error|macro_f1): ")


def canonical_step(line: str) -> str:
    """A printed step without its timing fields: ``epoch [e/E] batch [b/B] <meters> lr <4-digit mantissa>``."""
    m = STEP.match(line)
    assert m is not None
    meters = " ".join(f"{k} {v} ({avg})" for k, v, avg in METER.findall(line) if k not in ("time", "data"))
    lr = LR.search(line)
    return f"epoch [{m[1]}/{m[2]}] batch [{m[3]}/{m[4]}] {meters}" + (f" lr {float(lr[1]):.4e}" if lr else "")


def canonical_percent(line: str) -> str:
    """Percentages with one decimal, as upstream Dassl prints them (the 2022 Dassl printed two)."""
    return PERCENT.sub(lambda m: f"{float(m[1]):.1f}%", line)


@dataclass
class Printed:
    """The compared lines of one run's console output."""

    steps: list[str] = field(default_factory=list)
    per_class: list[str] = field(default_factory=list)
    result: list[str] = field(default_factory=list)


def printed(log: str) -> Printed:
    """Steps without their timing fields, per-class lines and the result block(s) of a console log."""
    out = Printed()
    for line in log.splitlines():
        line = line.rstrip()
        if STEP.match(line):
            out.steps.append(canonical_step(line))
        elif PER_CLASS.match(line):
            out.per_class.append(canonical_percent(line))
        elif RESULT.match(line):
            out.result.append(canonical_percent(line))
    return out


def recorded_steps(record: str) -> list[dict]:
    path = os.path.join(record, "steps.jsonl")
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def recorded_outputs(record: str) -> list[torch.Tensor]:
    """The test outputs of each evaluation, in order."""
    outputs, k = [], 0
    while os.path.exists(path := os.path.join(record, f"logits-{k}.pt")):
        outputs.append(torch.load(path, weights_only=True))
        k += 1
    return outputs


def first_difference(what: str, official: list[str], ours: list[str]) -> str | None:
    """``None`` if equal, else a line naming the first differing item with both versions."""
    for i, (a, b) in enumerate(zip(official, ours)):
        if a != b:
            return f"{what} {i + 1} differs:\n    official: {a}\n    ours:     {b}"
    if len(official) != len(ours):
        n = min(len(official), len(ours))
        extra = official[n] if len(official) > n else ours[n]
        side = "official" if len(official) > n else "ours"
        missing = "ours" if side == "official" else "official"
        return f"{what}: {len(official)} official vs {len(ours)} ours; first one {missing} lacks ({side}):\n    {extra}"
    return None


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    if a.shape != b.shape:
        return float("inf")
    return float((a.double() - b.double()).abs().max()) if a.numel() else 0.0


@dataclass
class Verdict:
    """The comparison of one run: ``difference`` is None when equal."""

    steps: int
    classes: int
    difference: str | None
    max_logit: float


def compare_run(official_log: str, official_rec: str, ours_log: str, ours_rec: str) -> Verdict:
    """Everything printed and recorded, official against ours; the first difference if any."""
    a, b = printed(official_log), printed(ours_log)
    difference = (
        first_difference("step", a.steps, b.steps)
        or first_difference("per-class line", a.per_class, b.per_class)
        or first_difference("result line", a.result, b.result)
    )
    if difference is None and not a.result:
        difference = "no result block in either log (did the run finish?)"
    if difference is None:
        sa, sb = recorded_steps(official_rec), recorded_steps(ours_rec)
        difference = first_difference("recorded step", [json.dumps(s) for s in sa], [json.dumps(s) for s in sb])
    oa, ob = recorded_outputs(official_rec), recorded_outputs(ours_rec)
    worst = max((max_abs(x, y) for x, y in zip(oa, ob)), default=0.0)
    if len(oa) != len(ob):
        worst = float("inf")
    if difference is None:
        for k, (x, y) in enumerate(zip(oa, ob)):
            if x.shape != y.shape or not torch.equal(x, y):
                difference = f"test outputs of evaluation {k + 1}: max |difference| {max_abs(x, y):.3g}, not bit-equal"
                break
        if difference is None and len(oa) != len(ob):
            difference = f"{len(oa)} official evaluations recorded vs {len(ob)} ours"
    return Verdict(len(a.steps), len(a.per_class), difference, worst)


def distance(official_log: str, official_rec: str, ours_log: str, ours_rec: str) -> tuple[float, bool, int]:
    """The default path's report: (max |Δ logit|, per-class counts equal, printed steps that differ)."""
    a, b = printed(official_log), printed(ours_log)
    oa, ob = recorded_outputs(official_rec), recorded_outputs(ours_rec)
    worst = max((max_abs(x, y) for x, y in zip(oa, ob)), default=0.0) if len(oa) == len(ob) else float("inf")
    steps = sum(x != y for x, y in zip(a.steps, b.steps)) + abs(len(a.steps) - len(b.steps))
    return worst, a.per_class == b.per_class and bool(a.per_class) == bool(b.per_class), steps


def compare_values(official: dict, ours: dict, path: str = "") -> str | None:
    """A driver's values (JSON), exactly: the first differing leaf, or None."""
    if isinstance(official, dict) and isinstance(ours, dict):
        for key in official.keys() | ours.keys():
            if key not in official or key not in ours:
                return f"{path}{key}: only in {'official' if key in official else 'ours'}"
            if (d := compare_values(official[key], ours[key], f"{path}{key}.")) is not None:
                return d
        return None
    if isinstance(official, list) and isinstance(ours, list):
        if len(official) != len(ours):
            return f"{path.rstrip('.')}: {len(official)} official values vs {len(ours)} ours"
        for i, (x, y) in enumerate(zip(official, ours)):
            if (d := compare_values(x, y, f"{path}{i}.")) is not None:
                return d
        return None
    if official != ours:
        return f"{path.rstrip('.')}: official {official!r}, ours {ours!r}"
    return None
