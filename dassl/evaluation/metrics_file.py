"""``metrics.json``: one evaluation's results and the facts needed to place it in a table.

``log.txt`` keeps upstream's printed block for ``parse_test_res.py`` and the official tools; this
file adds what a log only implies (which model was evaluated, on which split file, with which
resolved config) so ``python -m tools.report`` can aggregate runs without guessing from paths.
It is replaced atomically (temp file + ``os.replace``): a reader never sees half a file, and a
killed run leaves the previous evaluation's file intact.

Fields (``schema`` 1)::

    accuracy, error, macro_f1, total, correct, perclass_accuracy   (percent / counts)
    per_class: [{label, classname, total, correct, acc}, ...]
    dataset (DATASET.NAME), method (TRAINER.NAME), seed (SEED), shots (DATASET.NUM_SHOTS)
    phase: {subsample: all|base|new|None, task: B2N|FS|CD|None, split: test|val}
    model: {selection: last|best_val|best_test|epoch|initial|weights, epoch: int|None, model_dir: str|None}
    config_sha256: sha256 of the resolved config as dumped (cfg.dump())
    split: {rebuilt: bool, source: str|None}    (whether the dataset's split file was rebuilt here)
    domains: {source: [...], target: [...]}|None (a domain-generalisation dataset's trained and held-out
             domains; None for a dataset without domains)
    output_dir, written_at (UTC, ISO 8601)
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os.path as osp
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from yacs.config import CfgNode

from dassl.user_files import describe, read_json, schema_error
from dassl.utils import atomic_write

__all__ = [
    "METRICS_FILE",
    "SCHEMA_VERSION",
    "ModelSelection",
    "config_sha256",
    "per_class_table",
    "run_metadata",
    "write_metrics",
    "read_metrics",
]

METRICS_FILE = "metrics.json"
SCHEMA_VERSION = 1
SELECTIONS = ("last", "best_val", "best_test", "epoch", "initial", "weights")


@dataclass(frozen=True)
class ModelSelection:
    """Which model an evaluation scored, so a table can say "last epoch" vs "best on val".

    ``last``: the final epoch of a training run; ``best_val``: ``model-best.pth.tar``; ``best_test``: the
    epoch that scored best on the test split itself (an official protocol some methods published); ``epoch``:
    a given epoch (``--load-epoch``, or the model at the end of an epoch during training);
    ``initial``: the model as built, nothing loaded (zero-shot CLIP, an untrained learner);
    ``weights``: the learner filled from the file MODEL.INIT_WEIGHTS (``model_dir`` holds that file's path).
    ``epoch`` counts completed training epochs (the number in ``model.pth.tar-<epoch>``).
    """

    selection: str = "initial"
    epoch: int | None = None
    model_dir: str | None = None

    def __post_init__(self) -> None:
        if self.selection not in SELECTIONS:
            raise ValueError(f"model selection must be one of {SELECTIONS}, got {self.selection!r}")

    def as_dict(self) -> dict[str, Any]:
        return {"selection": self.selection, "epoch": self.epoch, "model_dir": self.model_dir}


def config_sha256(cfg: CfgNode) -> str:
    """Hash of the resolved config as ``cfg.dump()`` writes it: equal hashes, equal settings."""
    return hashlib.sha256(cfg.dump().encode("utf-8")).hexdigest()


def per_class_table(
    y_true: Sequence[int], y_pred: Sequence[int], lab2cname: Mapping[int, str] | None = None
) -> list[dict[str, Any]]:
    """Per-class total / correct / accuracy (%) for every label in ``y_true``, sorted by label."""
    totals: dict[int, list[int]] = {}
    for t, p in zip(y_true, y_pred):
        entry = totals.setdefault(int(t), [0, 0])
        entry[0] += 1
        entry[1] += int(t == p)
    return [
        {
            "label": label,
            "classname": lab2cname.get(label) if lab2cname else None,
            "total": total,
            "correct": correct,
            "acc": 100.0 * correct / total,
        }
        for label, (total, correct) in sorted(totals.items())
    ]


def run_metadata(
    cfg: CfgNode, split: str, model: ModelSelection | None = None, dataset: Any = None
) -> dict[str, Any]:
    """The run's side of ``metrics.json``: what was evaluated, how, and with which config.

    ``dataset`` is the Dassl dataset object; a split file rebuilt here (not the published one) is
    announced by the dataset as ``split_rebuilt`` / ``split_source`` attributes.
    """
    model = model or ModelSelection()
    return {
        "dataset": cfg.DATASET.NAME,
        "method": cfg.TRAINER.NAME,
        "seed": cfg.SEED,
        "shots": cfg.DATASET.NUM_SHOTS,
        "phase": {
            "subsample": cfg.DATASET.get("SUBSAMPLE_CLASSES"),
            "task": cfg.get("TASK"),
            "split": split,
        },
        "model": model.as_dict(),
        "config_sha256": config_sha256(cfg),
        "split": {
            "rebuilt": bool(getattr(dataset, "split_rebuilt", False)),
            "source": getattr(dataset, "split_source", None),
        },
        "domains": _domains(dataset),
        "output_dir": osp.abspath(cfg.OUTPUT_DIR),
    }


def _domains(dataset: Any) -> dict[str, list[str]] | None:
    """The source and target domains a DG dataset resolved (``DATASET.ID`` or the domain lists), if it has them."""
    target = getattr(dataset, "target_domains", None)
    if not target:
        return None
    return {"source": list(getattr(dataset, "source_domains", [])), "target": list(target)}


def write_metrics(path: str, results: Mapping[str, Any], run_info: Mapping[str, Any]) -> None:
    """Replace ``path`` atomically with the results and the run's metadata."""
    payload = {"schema": SCHEMA_VERSION, **results, **run_info}
    payload["written_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    with atomic_write(path) as f:
        json.dump(payload, f, indent=2)
        f.write("\n")


READ_FIX = (
    "it was changed after the run wrote it (runs replace it atomically): rerun the run's command to write it "
    "again, or delete it (the report then reads log.txt)"
)
_NUMBER = (int, float)
_SECTIONS = {"phase": dict, "model": dict, "split": dict, "per_class": list}


def read_metrics(path: str) -> dict[str, Any]:
    """Load a ``metrics.json`` and check the fields readers use; a FileError names the file and the fix."""
    data = read_json(path, READ_FIX)
    if not isinstance(data, dict):
        raise schema_error(path, "a metrics.json", "it holds " + describe(data), READ_FIX)
    accuracy = data.get("accuracy")
    if not isinstance(accuracy, _NUMBER) or isinstance(accuracy, bool):
        raise schema_error(path, "a metrics.json", f"accuracy is {accuracy!r}, expected a number", READ_FIX)
    if not isinstance(data.get("macro_f1", 0.0), (*_NUMBER, type(None))):
        raise schema_error(path, "a metrics.json", f"macro_f1 is {data['macro_f1']!r}, expected a number", READ_FIX)
    for key, kind in _SECTIONS.items():
        if data.get(key) is not None and not isinstance(data[key], kind):
            raise schema_error(path, "a metrics.json", f"{key} is {describe(data[key])}", READ_FIX)
    for i, row in enumerate(data.get("per_class") or []):
        if not isinstance(row, dict) or not all(isinstance(row.get(k), _NUMBER) for k in ("total", "correct", "acc")):
            raise schema_error(path, "a metrics.json", f"per_class row {i} is {str(row)[:60]}", READ_FIX)
    return data
