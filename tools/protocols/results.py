"""A run folder's result: its ``metrics.json`` (a test-split evaluation), else its ``log.txt``.

``metrics.json`` holds the evaluator's unrounded numbers; ``log.txt`` only their printed (rounded) form,
so a folder with both is read from ``metrics.json``: every table (``parse_test_res.py``, the report, the
demo) then shows the same mean and std. A run whose last evaluation is on the validation split (a
``best_val`` run stopped before its final test) has no result yet. A ``metrics.json`` or ``log.txt`` that
cannot be read stops the reader with a ``FileError`` naming the file and the fix (docs/reliability.md).
"""

from __future__ import annotations

import os.path as osp
from dataclasses import dataclass, field
from typing import Any

from dassl.evaluation.metrics_file import METRICS_FILE, read_metrics

from .logs import last_evaluated_split, parse_log, parse_logged_config, parse_per_class

LOG_FILE = "log.txt"


@dataclass
class RunResult:
    """One evaluated seed folder: its numbers and the facts a table needs to place it."""

    path: str
    source: str  # metrics.json | log.txt
    accuracy: float
    macro_f1: float | None = None
    per_class: list[dict[str, Any]] = field(default_factory=list)
    task: str | None = None  # B2N | CD | FS (the run's TASK), None if it did not say
    subsample: str | None = None  # all | base | new (DATASET.SUBSAMPLE_CLASSES)
    split_rebuilt: bool = False
    split_source: str | None = None
    selection: str | None = None  # last | best_val | epoch | initial
    epoch: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict, repr=False)

    def value(self, keyword: str) -> float | None:
        """A metric by its printed keyword (``accuracy``, ``error``, ``macro_f1``, ...), unrounded when it can be."""
        if self.source == METRICS_FILE and isinstance(self.metrics.get(keyword), (int, float)):
            return float(self.metrics[keyword])
        log = osp.join(self.path, LOG_FILE)
        return parse_log(log, keyword) if osp.isfile(log) else None


def read_result(path: str, notes: list[str] | None = None) -> RunResult | None:
    """The result of the seed folder ``path``, or None (with the reason appended to ``notes``) if it has none."""
    notes = notes if notes is not None else []
    metrics_path, log_path = osp.join(path, METRICS_FILE), osp.join(path, LOG_FILE)
    if osp.isfile(metrics_path):
        m = read_metrics(metrics_path)  # one that cannot be read is a FileError naming it and the fix
        phase = m.get("phase") or {}
        if phase.get("split", "test") != "test":
            notes.append(f"unfinished: {path} (its last evaluation is on the {phase.get('split')} split)")
            return None
        model, split = m.get("model") or {}, m.get("split") or {}
        return RunResult(
            path=path,
            source=METRICS_FILE,
            accuracy=float(m["accuracy"]),
            macro_f1=m.get("macro_f1"),
            per_class=list(m.get("per_class") or []),
            task=phase.get("task"),
            subsample=phase.get("subsample"),
            split_rebuilt=bool(split.get("rebuilt", False)),
            split_source=split.get("source"),
            selection=model.get("selection"),
            epoch=model.get("epoch"),
            metrics=m,
        )
    if not osp.isfile(log_path):
        notes.append(f"no result: {path} (neither metrics.json nor log.txt)")
        return None
    accuracy = parse_log(log_path, "accuracy")
    if accuracy is None:
        notes.append(f"unfinished: {path} (log.txt has no result block)")
        return None
    if last_evaluated_split(log_path) == "val":
        notes.append(f"unfinished: {path} (the last result in log.txt is on the val split)")
        return None
    logged = parse_logged_config(log_path, ["TASK", "DATASET.SUBSAMPLE_CLASSES"])
    return RunResult(
        path=path,
        source=LOG_FILE,
        accuracy=accuracy,
        macro_f1=parse_log(log_path, "macro_f1"),
        per_class=parse_per_class(log_path),
        task=logged.get("TASK"),
        subsample=logged.get("DATASET.SUBSAMPLE_CLASSES"),
    )
