"""``--write-pins``: the official side's values in the form the tests pin them.

Each formatter turns one pinned target's values (a train.py run's log and record, or a driver's values)
into the Python literal the test holds; the caller prints it under a line naming the test and target.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import torch

from .compare import printed, recorded_outputs, recorded_steps

CORRECT = re.compile(r"\tcorrect: (\d+)")
LR = re.compile(r" lr (\S+)")


def r5(values: list[float]) -> list[float]:
    return [round(v, 5) for v in values]


def train_steps(log: str, record: str) -> dict[str, Any]:
    """tests/test_coop.py: losses at full precision (7 decimals), accuracies, lrs, correct per class."""
    p = printed(log)
    correct = [int(m.group(1)) for line in p.per_class if (m := CORRECT.search(line))]
    if not p.steps:
        return {"correct": correct}
    steps = recorded_steps(record)
    return {
        "loss": [round(s["loss"], 7) for s in steps],
        "acc": [s.get("acc") for s in steps],
        "lr": [float(m.group(1)) for line in p.steps if (m := LR.search(line))],
        "correct": correct,
    }


def correct(log: str, record: str) -> list[int]:
    return [int(m.group(1)) for line in printed(log).per_class if (m := CORRECT.search(line))]


def seeded_run(log: str, record: str) -> dict[str, Any]:
    """tests/test_resnet_clip.py: losses at full precision, accuracies (None where a trainer reports none), lrs,
    correct per class, and the predicted class of every test image in loader order (all evaluations)."""
    p, steps = printed(log), recorded_steps(record)
    outputs = recorded_outputs(record)
    return {
        "loss": [s["loss"] for s in steps], "acc": [s.get("acc") for s in steps],
        "lr": [float(m.group(1)) for line in p.steps if (m := LR.search(line))],
        "correct": correct(log, record), "predicted": [int(k) for o in outputs for k in o.argmax(dim=1)],
    }  # fmt: skip


def zs_features(v: dict) -> list[float]:
    return r5(v["features"][2][:6])


def kgcoop(v: dict) -> dict[str, Any]:
    steps = [[loss, acc, lr] for loss, acc, lr in zip(v["losses"], v["accs"], v["lrs"])]
    return {"steps": steps, "logits": [r5(row) for row in v["all"]]}


def deep(v: dict) -> dict[str, Any]:
    return {"losses": v["losses"], "lrs": v["lrs"], "logits0": r5(v["logits0"]), "logits5": r5(v["logits5"])}


def mma(v: dict) -> dict[str, Any]:
    return {"losses": v["losses"], "logits0": r5(v["logits0"]), "logits5": r5(v["logits5"]),
            "shared12_w00": v["shared12_w00"], "text5_up_b0": v["text5_up_b0"]}  # fmt: skip


def mmrl(v: dict) -> dict[str, Any]:
    return {"losses": v["losses"], "fusion0": r5(v["fusion0"]), "logits5": r5(v["logits5"])}


def release(v: dict) -> dict[str, Any]:
    predictions = [max(range(len(row)), key=row.__getitem__) for row in v["all"]]
    return {"losses": v["losses"], "accs": v["accs"], "logits0": v["logits0"], "logits5": v["logits5"],
            "predictions": predictions}  # fmt: skip


def tcp(v: dict) -> dict[str, Any]:
    """tests/test_tcp.py: (loss, acc, lr) per step, then the eval logits, at full precision."""
    return {"steps": [[loss, acc, lr] for loss, acc, lr in zip(v["losses"], v["accs"], v["lrs"])], "logits": v["all"]}


def provp(v: dict) -> dict[str, Any]:
    return {"steps": v["summaries"], "lrs": v["lrs"], "logits0": v["logits0"], "logits5": v["logits5"],
            "next_draw": v["next_draw"]}  # fmt: skip


def metaprompt(log: str, record: str) -> dict[str, Any]:
    """tests/test_metaprompt.py: full-precision losses and accuracies, printed lrs, correct per class, the sum
    (float64) and first row of the test outputs (a test-only run: no step values)."""
    p, steps = printed(log), recorded_steps(record)
    logits = torch.cat(recorded_outputs(record))
    out: dict[str, Any] = {}
    if steps:
        out = {"loss": [s["loss"] for s in steps], "acc": [s["acc"] for s in steps],
               "lr": [float(m.group(1)) for line in p.steps if (m := LR.search(line))]}  # fmt: skip
    return {**out, "correct": correct(log, record), "logits_sum": logits.double().sum().item(),
            "logits0": logits[0].tolist()}  # fmt: skip


def clip_adapter(log: str, record: str) -> dict[str, Any]:
    """tests/test_clip_adapter.py: full-precision losses, accuracies, printed lrs, correct per class, and the
    predicted class of each test image (test-loader order)."""
    p, steps = printed(log), recorded_steps(record)
    return {"loss": [s["loss"] for s in steps], "acc": [s["acc"] for s in steps],
            "lr": [float(m.group(1)) for line in p.steps if (m := LR.search(line))], "correct": correct(log, record),
            "predicted": torch.cat(recorded_outputs(record)).argmax(1).tolist()}  # fmt: skip


RUN_FORMS: dict[str, Callable[[str, str], Any]] = {
    "train_steps": train_steps, "correct": correct, "metaprompt": metaprompt, "clip_adapter": clip_adapter,
    "seeded_run": seeded_run,
}  # fmt: skip
DRIVER_FORMS: dict[str, Callable[[dict], Any]] = {
    "zs_features": zs_features, "kgcoop": kgcoop, "deep": deep, "mma": mma, "mmrl": mmrl, "release": release,
    "tcp": tcp, "provp": provp,
}  # fmt: skip
