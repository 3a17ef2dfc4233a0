"""Aggregating runs into cells (one method, dataset, shot count and phase over seeds): statistics and flags."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from tools.paper_numbers import DATASET_NAMES

from .collect import Run, classify, name_methods
from .stats import mean_std

# Dataset labels: the paper's names (one map, tools/paper_numbers.py) in the order of its tables, then the
# multi-source DG benchmarks, which have no table there.
DISPLAY = {
    **{stem: name for stem, name in DATASET_NAMES.items() if stem != "average"},
    "pacs": "PACS", "vlcs": "VLCS", "office_home": "OfficeHome", "domainnet": "DomainNet",
    "average": DATASET_NAMES["average"],
}  # fmt: skip
ORDER = [d for d in DISPLAY if d != "average"]


@dataclass
class Cell:
    """The seeds of one method on one dataset / phase / shot count, with their statistics."""

    values: dict[int, float]
    expected: list[int]
    outlier_points: float

    @property
    def mean(self) -> float:
        return mean_std(list(self.values.values()))[0]

    @property
    def std(self) -> float:
        return mean_std(list(self.values.values()))[1]

    @property
    def missing(self) -> list[int]:
        return [s for s in self.expected if s not in self.values]

    @property
    def outliers(self) -> list[int]:
        seeds = sorted(self.values)
        if len(seeds) == 2:
            a, b = (self.values[s] for s in seeds)
            return seeds if abs(a - b) > self.outlier_points else []
        if len(seeds) < 3:
            return []
        median = statistics.median(self.values.values())
        return [s for s in seeds if abs(self.values[s] - median) > self.outlier_points]

    def text(self) -> str:
        marks = ("†" if self.missing else "") + ("‡" if self.outliers else "")
        std = f" ± {self.std:.2f}" if len(self.values) > 1 else ""
        return f"{self.mean:.2f}{std}{marks}"



@dataclass
class Results:
    """Cells by (protocol, method, dataset, shots, phase), and what to flag."""

    cells: dict[tuple[str, str, str, int, str], Cell]
    runs: list[Run]
    notes: list[str]

    def methods(self, protocol: str) -> list[str]:
        return sorted({k[1] for k in self.cells if k[0] == protocol}, key=str.lower)

    def datasets(self, protocol: str, phase: str | None = None) -> list[str]:
        found = {k[2] for k in self.cells if k[0] == protocol and (phase is None or k[4] == phase)}
        return sorted(found, key=lambda d: (ORDER.index(d) if d in ORDER else len(ORDER), d))

    def shots(self, protocol: str) -> list[int]:
        return sorted({k[3] for k in self.cells if k[0] == protocol})

    def get(self, protocol: str, method: str, dataset: str, phase: str, shots: int | None = None) -> Cell | None:
        if shots is not None:
            return self.cells.get((protocol, method, dataset, shots, phase))
        found = [c for k, c in self.cells.items() if k[:3] == (protocol, method, dataset) and k[4] == phase]
        return found[0] if len(found) == 1 else None


def aggregate(runs: list[Run], notes: list[str], seeds: Sequence[int] | None, outlier_points: float) -> Results:
    """Group the runs into cells; expected seeds per method and protocol unless given."""
    values: dict[tuple[str, str, str, int, str], dict[int, float]] = defaultdict(dict)
    seen: dict[tuple[str, str], set[int]] = defaultdict(set)
    for r in runs:
        key = (r.protocol, r.method, r.dataset, r.shots, r.phase)
        if r.seed in values[key]:
            notes.append(f"duplicate: {r.path} (seed {r.seed} already counted for this cell)")
            continue
        values[key][r.seed] = r.accuracy
        seen[(r.protocol, r.method)].add(r.seed)
    cells = {
        key: Cell(vals, sorted(seeds) if seeds else sorted(seen[(key[0], key[1])]), outlier_points)
        for key, vals in values.items()
    }
    return Results(cells, runs, notes)


def average(cells: list[Cell]) -> tuple[float, float | None]:
    """Mean of the cells' means; std over the seeds every cell has (None with fewer than 2)."""
    mean = sum(c.mean for c in cells) / len(cells)
    common = set.intersection(*(set(c.values) for c in cells))
    if len(common) < 2:
        return mean, None
    per_seed = [sum(c.values[s] for c in cells) / len(cells) for s in sorted(common)]
    return mean, mean_std(per_seed)[1]


def results_of(runs: list[Run], notes: list[str], seeds: Sequence[int] | None, outlier_points: float) -> Results:
    """The runs classified by protocol and phase, named and grouped into cells."""
    classify(runs)
    name_methods(runs)
    return aggregate(runs, notes, seeds, outlier_points)
