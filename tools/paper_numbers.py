"""Published numbers, read from ``tools/paper_numbers.csv`` (its header names the paper and each table).

The data are the paper's, as printed, one row per number with its source (paper, table). This module
only reads them: ``lookup`` / ``numbers`` select by method, protocol, dataset, shots, metric and
setting; ``base_to_novel``, ``cross_dataset``, ``domain_generalization``, ``few_shot``, ``compute``
and ``ablation`` give the shapes the report prints. Methods may be named as the paper does (``CLIP``,
``MMA``) or as trainers are (``ZeroshotCLIP``, ``MultiModalAdapter``); datasets as the paper does
(``ImageNet-Sketch``) or by their config stems (``imagenet_sketch``, ``configs/datasets/<stem>.yaml``),
``average`` for the paper's average rows.
"""

from __future__ import annotations

import csv
import os.path as osp
from dataclasses import dataclass
from functools import lru_cache

DATA_FILE = osp.join(osp.dirname(osp.abspath(__file__)), "paper_numbers.csv")
PAPERS = {"MMRL": "MMRL (Guo & Gu, CVPR 2025, arXiv:2503.08497)"}
PAPER = PAPERS["MMRL"]
PROTOCOLS = ("base2new", "cross_dataset", "domain_generalization", "few_shot", "compute", "ablation")
COLUMNS = ["paper", "table", "protocol", "method", "dataset", "shots", "setting", "metric", "value"]

# Trainer names (TRAINER.NAME / output folders) whose paper row has another name.
METHOD_ALIASES: dict[str, str] = {
    "ZeroshotCLIP": "CLIP",
    "ZeroShotCLIP": "CLIP",
    "ZSCLIP": "CLIP",
    "LinearProbeCLIP": "Linear probe CLIP",
    "LinearProbe": "Linear probe CLIP",
    "MultiModalAdapter": "MMA",
    "MMRLpp": "MMRL++",
}

# Config stems -> the paper's dataset names.
DATASET_NAMES: dict[str, str] = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "Flowers102", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT", "ucf101": "UCF101",
    "imagenetv2": "ImageNetV2", "imagenet_sketch": "ImageNet-Sketch", "imagenet_a": "ImageNet-A",
    "imagenet_r": "ImageNet-R", "average": "Average",
}  # fmt: skip

_SUFFIXES = {"K": 1e3, "M": 1e6, "B": 1e9}


@dataclass(frozen=True)
class PaperNumber:
    """One published number: where it was printed, what it measures, and its text as printed."""

    paper: str
    table: str
    protocol: str
    method: str
    dataset: str
    shots: int | None
    setting: str
    metric: str
    text: str

    @property
    def value(self) -> float | None:
        """The number (``"3.555M"`` -> 3555000.0); None for a text entry (Table 6's modality)."""
        text = self.text
        scale = _SUFFIXES.get(text[-1:], 1.0)
        try:
            return float(text[:-1] if scale != 1.0 else text) * scale
        except ValueError:
            return None

    @property
    def source(self) -> str:
        return f"{PAPERS.get(self.paper, self.paper)}, {self.table}"


def paper_method(method: str) -> str:
    """The paper's name for a trainer (``ZeroshotCLIP`` -> ``CLIP``); others unchanged."""
    return METHOD_ALIASES.get(method, method)


def paper_dataset(dataset: str) -> str:
    """The paper's name for a config stem (``imagenet_sketch`` -> ``ImageNet-Sketch``); others unchanged."""
    return DATASET_NAMES.get(dataset, dataset)


@lru_cache(maxsize=4)
def load(path: str = DATA_FILE) -> tuple[PaperNumber, ...]:
    """Every row of the data file (``#`` lines are its header); a malformed row raises naming its line."""
    rows: list[PaperNumber] = []
    with open(path, newline="") as f:
        lines = [(i, line) for i, line in enumerate(f, start=1) if not line.startswith("#")]
    reader = csv.reader(line for _, line in lines)
    header = next(reader)
    if header != COLUMNS:
        raise ValueError(f"{path}: columns {header}, expected {COLUMNS}")
    for (line_no, _), row in zip(lines[1:], reader):
        where = f"{path}:{line_no}"
        if len(row) != len(COLUMNS):
            raise ValueError(f"{where}: {len(row)} fields, expected {len(COLUMNS)}")
        entry = dict(zip(COLUMNS, row))
        if entry["protocol"] not in PROTOCOLS:
            raise ValueError(f"{where}: protocol {entry['protocol']!r} is not one of {', '.join(PROTOCOLS)}")
        if not entry["value"] or not entry["table"]:
            raise ValueError(f"{where}: a number needs its value and its table")
        shots_text, text = entry.pop("shots"), entry.pop("value")
        shots = int(shots_text) if shots_text else None
        if (shots is None) == (entry["protocol"] == "few_shot"):
            raise ValueError(f"{where}: shots are given for few_shot rows, and only for them")
        rows.append(PaperNumber(**entry, shots=shots, text=text))
    return tuple(rows)


def numbers(
    method: str | None = None,
    protocol: str | None = None,
    dataset: str | None = None,
    metric: str | None = None,
    shots: int | None = None,
    setting: str | None = None,
) -> list[PaperNumber]:
    """The published numbers matching every filter given, in the data file's order."""
    if protocol is not None and protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
    want = {
        "method": None if method is None else paper_method(method),
        "protocol": protocol,
        "dataset": None if dataset is None else paper_dataset(dataset),
        "metric": metric,
        "shots": shots,
        "setting": setting,
    }
    return [n for n in load() if all(v is None or getattr(n, k) == v for k, v in want.items())]


@lru_cache(maxsize=4)
def _cells(path: str = DATA_FILE) -> dict[tuple, PaperNumber]:
    cells: dict[tuple, PaperNumber] = {}
    for n in load(path):
        key = (n.method, n.protocol, n.dataset, n.metric, n.shots, n.setting)
        if key in cells:
            raise ValueError(f"{path}: two rows for one cell {key}")
        cells[key] = n
    return cells


def lookup(
    method: str, protocol: str, dataset: str, metric: str, shots: int | None = None, setting: str = ""
) -> PaperNumber | None:
    """The one published number of that cell, or None if the paper has none."""
    return _cells().get((paper_method(method), protocol, paper_dataset(dataset), metric, shots, setting))


def _value(method: str, protocol: str, dataset: str, metric: str, shots: int | None = None) -> float | None:
    number = lookup(method, protocol, dataset, metric, shots)
    return None if number is None else number.value


def base_to_novel(method: str, dataset: str) -> tuple[float, float, float] | None:
    """Table 1: (base, novel, HM), or None."""
    values = [_value(method, "base2new", dataset, m) for m in ("base", "novel", "hm")]
    return None if None in values else (values[0], values[1], values[2])


def cross_dataset(method: str, dataset: str) -> float | None:
    """Table 2: accuracy on the source (``imagenet``), a target, or the targets' ``average``."""
    return _value(method, "cross_dataset", dataset, "accuracy")


def domain_generalization(method: str, dataset: str) -> float | None:
    """Table 3: accuracy on ImageNet or one of its four variants."""
    return _value(method, "domain_generalization", dataset, "accuracy")


def few_shot(method: str, dataset: str, shots: int) -> float | None:
    """Tables 10/11: accuracy with ``shots`` training images per class."""
    return _value(method, "few_shot", dataset, "accuracy", shots)


def compute(method: str) -> dict[str, PaperNumber]:
    """Table 6: the method's compute figures by metric (empty if the table has no row for it)."""
    return {n.metric: n for n in numbers(method, "compute")}


def ablation(method: str, name: str) -> dict[float, dict[str, float]]:
    """Table 8 and the like: ``{value of the hyperparameter: {dataset: HM}}`` for ``setting`` ``<name>=<value>``."""
    table: dict[float, dict[str, float]] = {}
    for n in numbers(method, "ablation", metric="hm"):
        key, _, value = n.setting.partition("=")
        if key == name and n.value is not None:
            table.setdefault(float(value), {})[n.dataset] = n.value
    return table
