"""Tables (and few-shot curves) of a whole output tree, ours or the official code's, beside the paper's.

    python -m tools.report OUTPUT_DIR [--out DIR] [--seeds 1 2 3] [--outlier-points 3]

Writes ``report.md``, ``report.csv`` and ``report.tex`` (and ``few_shot.png`` / ``.pdf`` and
``base_to_novel.png`` / ``.pdf`` when matplotlib is installed: ``pip install -e ".[plots]"``) into
OUTPUT_DIR or ``--out``.

Runs are the ``seed<S>`` folders of the protocol layout (scripts/protocols.sh, the official one)::

    base2new/train_base/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>
    base2new/test_<sub>/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>
    few_shot/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>

A run's result is its ``metrics.json`` (a test-split evaluation) or else the last result block of
its ``log.txt`` (parsed by parse_test_res.py). Config names are never assumed. Which protocol a
``base2new/`` run belongs to:

1. its TASK (metrics.json, else the config printed in log.txt): ``CD`` is cross-dataset /
   domain generalisation, ``B2N`` base-to-novel;
2. without TASK: the runs of one TRAINER/CFG are cross-dataset when they test a dataset they did
   not train on while the only dataset they trained on is imagenet, or when they test an
   ImageNet variant (imagenetv2, imagenet_sketch, imagenet_a, imagenet_r); otherwise base-to-novel.

Base-to-novel: a run is "base" or "novel" by its DATASET.SUBSAMPLE_CLASSES (else train_base is base,
test_new is novel). Cross-dataset: imagenet in train_base is the source, test_* runs are targets.

Statistics: mean ± population std over seeds (as parse_test_res.py). HM per dataset is the
harmonic mean of the mean base and mean novel accuracy; the average row is the mean over the
datasets having both, and its HM is the HM of the two averages (as the papers). Expected seeds
are ``--seeds`` or else every seed seen for that method in that protocol; a cell lacking some is
flagged. Outliers: with 3 or more seeds, a seed more than ``--outlier-points`` (default 3)
accuracy points from the median of the cell's seeds (the median, not the mean, so the outlier does
not hide itself); with 2 seeds, a gap above that threshold flags both (which one is off is unknown).
When one method has several configs in one table cell, the config with most runs keeps the
method's name and the others are shown as ``METHOD (CFG)``.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import os
import os.path as osp
import re
import statistics
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from dassl.evaluation.metrics_file import METRICS_FILE, read_metrics
from dassl.utils import UserError
from dassl.utils.tools import atomic_write
from parse_test_res import last_evaluated_split, mean_std, parse_log, parse_logged_config, parse_per_class
from tools import paper_numbers

BASE_TO_NOVEL_DATASETS = [
    "imagenet", "caltech101", "oxford_pets", "stanford_cars", "oxford_flowers", "food101",
    "fgvc_aircraft", "sun397", "dtd", "eurosat", "ucf101",
]  # fmt: skip
CROSS_DATASET_TARGETS = BASE_TO_NOVEL_DATASETS[1:]
DG_TARGETS = ["imagenetv2", "imagenet_sketch", "imagenet_a", "imagenet_r"]
DISPLAY = {
    "imagenet": "ImageNet", "caltech101": "Caltech101", "oxford_pets": "OxfordPets",
    "stanford_cars": "StanfordCars", "oxford_flowers": "Flowers102", "food101": "Food101",
    "fgvc_aircraft": "FGVCAircraft", "sun397": "SUN397", "dtd": "DTD", "eurosat": "EuroSAT",
    "ucf101": "UCF101", "imagenetv2": "ImageNet-V2", "imagenet_sketch": "ImageNet-S",
    "imagenet_a": "ImageNet-A", "imagenet_r": "ImageNet-R", "average": "Average",
}  # fmt: skip
ORDER = BASE_TO_NOVEL_DATASETS + DG_TARGETS
PROTOCOL_TITLES = {"base2new": "Base-to-novel", "cross_dataset": "Cross-dataset", "few_shot": "Few-shot"}
PLOT_HINT = 'few-shot plots skipped: matplotlib is not installed (pip install -e ".[plots]")'


class ReportError(UserError):
    """An output tree the report cannot read (not a folder, no runs); printed as one error line."""


@dataclass
class Run:
    """One evaluated seed folder."""

    path: str
    tree: str  # base2new | few_shot
    stage: str  # train_base | test_new | ... ("" in few_shot)
    dataset: str
    shots: int
    trainer: str
    cfg: str
    seed: int
    accuracy: float
    macro_f1: float | None = None
    per_class: list[dict[str, Any]] = field(default_factory=list)
    source: str = "log.txt"
    task: str | None = None
    subsample: str | None = None
    split_rebuilt: bool = False
    split_source: str | None = None
    selection: str | None = None
    epoch: int | None = None
    protocol: str = ""  # base2new | cross_dataset | few_shot
    phase: str = ""  # base | novel (base2new), source | target (cross_dataset), accuracy (few_shot)
    method: str = ""  # display name (trainer, or "trainer (cfg)")


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


# ---- Reading the tree.


def _find_runs(root: str) -> Iterable[tuple[str, list[str]]]:
    for dirpath, dirnames, _ in os.walk(root):
        dirnames.sort()
        if re.fullmatch(r"seed-?\d+", osp.basename(dirpath)):
            dirnames[:] = []
            yield dirpath, osp.abspath(dirpath).split(os.sep)  # absolute: a sub-tree may be given


def _layout(parts: list[str]) -> tuple[str, str] | None:
    """(tree, stage) of a seed folder's path parts, or None if it is not a protocol folder."""
    if len(parts) < 6 or not re.fullmatch(r"shots_\d+", parts[-4]):
        return None
    if parts[-6] == "few_shot":
        return "few_shot", ""
    if len(parts) >= 7 and parts[-7] == "base2new" and re.fullmatch(r"train_base|test_\w+", parts[-6]):
        return "base2new", parts[-6]
    return None


def read_run(path: str, parts: list[str], tree: str, stage: str, notes: list[str]) -> Run | None:
    """The run's result from metrics.json (test split) or log.txt; None (with a note) if it has none."""
    common = dict(
        path=path,
        tree=tree,
        stage=stage,
        dataset=parts[-5],
        shots=int(parts[-4].split("_")[1]),
        trainer=parts[-3],
        cfg=parts[-2],
        seed=int(parts[-1][4:]),
    )
    metrics_path, log_path = osp.join(path, METRICS_FILE), osp.join(path, "log.txt")
    if osp.isfile(metrics_path):
        m = read_metrics(metrics_path)  # one that cannot be read stops the report with an error line naming it
        phase = m.get("phase") or {}
        if phase.get("split", "test") != "test":
            notes.append(f"unfinished: {path} (its last evaluation is on the {phase.get('split')} split)")
            return None
        model, split = m.get("model") or {}, m.get("split") or {}
        return Run(
            **common,
            accuracy=float(m["accuracy"]),
            macro_f1=m.get("macro_f1"),
            per_class=list(m.get("per_class") or []),
            source=METRICS_FILE,
            task=phase.get("task"),
            subsample=phase.get("subsample"),
            split_rebuilt=bool(split.get("rebuilt", False)),
            split_source=split.get("source"),
            selection=model.get("selection"),
            epoch=model.get("epoch"),
        )
    if not osp.isfile(log_path):
        notes.append(f"no result: {path} (neither metrics.json nor log.txt)")
        return None
    accuracy = parse_log(log_path, "accuracy")
    if accuracy is None:
        notes.append(f"unfinished: {path} (log.txt has no result block)")
        return None
    if last_evaluated_split(log_path) == "val":  # a best_val run stopped before its final test
        notes.append(f"unfinished: {path} (the last result in log.txt is on the val split)")
        return None
    logged = parse_logged_config(log_path, ["TASK", "DATASET.SUBSAMPLE_CLASSES"])
    return Run(
        **common,
        accuracy=accuracy,
        macro_f1=parse_log(log_path, "macro_f1"),
        per_class=parse_per_class(log_path),
        task=logged.get("TASK"),
        subsample=logged.get("DATASET.SUBSAMPLE_CLASSES"),
    )


def collect_runs(root: str) -> tuple[list[Run], list[str]]:
    """Every run with a result under ``root``, and notes on the folders left out."""
    runs, notes = [], []
    for path, parts in _find_runs(root):
        layout = _layout(parts)
        if layout is None:
            notes.append(f"skipped: {path} (not in the protocol layout)")
            continue
        run = read_run(path, parts, *layout, notes)
        if run is not None:
            runs.append(run)
    return runs, notes


def classify(runs: list[Run]) -> None:
    """Set each run's protocol and phase (rules in the module docstring)."""
    groups: dict[tuple[str, str], list[Run]] = defaultdict(list)
    for r in runs:
        if r.tree == "few_shot":
            r.protocol, r.phase = "few_shot", "accuracy"
        else:
            groups[(r.trainer, r.cfg)].append(r)
    for group in groups.values():
        trained = {r.dataset for r in group if r.stage == "train_base"}
        tested = {r.dataset for r in group if r.stage != "train_base"}
        group_cd = (bool(tested - trained) and "imagenet" in trained and trained <= {"imagenet"}) or bool(
            tested & set(DG_TARGETS)
        )
        for r in group:
            task = (r.task or "").upper()
            cd = task == "CD" or (task != "B2N" and group_cd)
            if cd:
                r.protocol, r.phase = "cross_dataset", "source" if r.stage == "train_base" else "target"
            else:
                r.protocol = "base2new"
                sub = (r.subsample or "").lower()
                if sub not in ("base", "new"):
                    sub = "base" if r.stage in ("train_base", "test_base") else "new"
                r.phase = "base" if sub == "base" else "novel"


def name_methods(runs: list[Run]) -> None:
    """Method names: the trainer, or ``trainer (cfg)`` for a minority config sharing a cell."""
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    cells: dict[tuple, set[str]] = defaultdict(set)
    for r in runs:
        counts[(r.protocol, r.trainer, r.cfg)] += 1
        cells[(r.protocol, r.trainer, r.dataset, r.shots, r.phase)].add(r.cfg)
    for r in runs:
        cfgs = cells[(r.protocol, r.trainer, r.dataset, r.shots, r.phase)]
        main = max(sorted(cfgs), key=lambda c: counts[(r.protocol, r.trainer, c)])
        r.method = r.trainer if r.cfg == main else f"{r.trainer} ({r.cfg})"


# ---- Aggregation.


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


def harmonic_mean(a: float, b: float) -> float:
    """HM of base and novel accuracy, the papers' summary of base-to-novel generalisation."""
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def average(cells: list[Cell]) -> tuple[float, float | None]:
    """Mean of the cells' means; std over the seeds every cell has (None with fewer than 2)."""
    mean = sum(c.mean for c in cells) / len(cells)
    common = set.intersection(*(set(c.values) for c in cells))
    if len(common) < 2:
        return mean, None
    per_seed = [sum(c.values[s] for c in cells) / len(cells) for s in sorted(common)]
    return mean, mean_std(per_seed)[1]


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _delta(ours: float | None, paper: float | None) -> str:
    return "-" if ours is None or paper is None else f"{ours - paper:+.2f}"


# ---- Tables: one structure rendered as Markdown, LaTeX and CSV rows.


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    csv_rows: list[dict[str, Any]] = field(default_factory=list)


def _csv_row(protocol: str, table: str, method: str, dataset: str, shots: int | None, metric: str,
             cell: Cell | None = None, mean: float | None = None, std: float | None = None,
             paper: float | None = None) -> dict[str, Any]:  # fmt: skip
    if cell is not None:
        mean, std = cell.mean, (cell.std if len(cell.values) > 1 else None)
    return {
        "protocol": protocol,
        "table": table,
        "method": method,
        "dataset": dataset,
        "shots": shots if shots is not None else "",
        "metric": metric,
        "mean": "" if mean is None else f"{mean:.4f}",
        "std": "" if std is None else f"{std:.4f}",
        "n_seeds": len(cell.values) if cell else "",
        "values": ";".join(f"{s}:{v:.2f}" for s, v in sorted(cell.values.items())) if cell else "",
        "missing_seeds": " ".join(map(str, cell.missing)) if cell else "",
        "outlier_seeds": " ".join(map(str, cell.outliers)) if cell else "",
        "paper": "" if paper is None else f"{paper:.2f}",
        "delta": "" if mean is None or paper is None else f"{mean - paper:.4f}",
    }


def base_to_novel_table(res: Results) -> Table | None:
    """Per dataset and method: base, novel, HM (ours), the paper's, and the differences."""
    methods = res.methods("base2new")
    if not methods:
        return None
    header = ["Dataset", "Method", "Base", "Novel", "HM", "Paper base", "Paper novel", "Paper HM",
              "Δ base", "Δ novel", "Δ HM"]  # fmt: skip
    table = Table("Base-to-novel generalisation (accuracy %, mean ± std over seeds)", header, [])
    datasets = res.datasets("base2new")
    for dataset in [*datasets, "average"]:
        for m in methods:
            if dataset == "average":
                paired = {
                    d: (b, n)
                    for d in datasets
                    if (b := res.get("base2new", m, d, "base")) and (n := res.get("base2new", m, d, "novel"))
                }
                if not paired:
                    continue
                pairs = list(paired.values())
                # The paper's average is over its 11 datasets: beside a partial average it would mislead.
                complete = set(paired) == set(BASE_TO_NOVEL_DATASETS)
                base, base_std = average([b for b, _ in pairs])
                novel, novel_std = average([n for _, n in pairs])
                n = len(pairs)
                label = "Average" if complete else f"Average ({n} dataset{'s' * (n > 1)})"
                base_text, novel_text = _fmt(base, base_std), _fmt(novel, novel_std)
                b_cell = n_cell = None
            else:
                b_cell, n_cell = res.get("base2new", m, dataset, "base"), res.get("base2new", m, dataset, "novel")
                if b_cell is None and n_cell is None:
                    continue
                base = b_cell.mean if b_cell else None
                novel = n_cell.mean if n_cell else None
                label = DISPLAY.get(dataset, dataset)
                base_text = b_cell.text() if b_cell else "-"
                novel_text = n_cell.text() if n_cell else "-"
            hm = harmonic_mean(base, novel) if base is not None and novel is not None else None
            paper = paper_numbers.base_to_novel(m, dataset) if dataset != "average" or complete else None
            pb, pn, ph = paper if paper else (None, None, None)
            table.rows.append([label, m, base_text, novel_text, _fmt(hm), _fmt(pb), _fmt(pn), _fmt(ph),
                               _delta(base, pb), _delta(novel, pn), _delta(hm, ph)])  # fmt: skip
            if dataset == "average":
                table.csv_rows += [
                    _csv_row("base2new", "base_to_novel", m, dataset, 16, "base", mean=base, std=base_std, paper=pb),
                    _csv_row("base2new", "base_to_novel", m, dataset, 16, "novel", mean=novel, std=novel_std,
                             paper=pn),  # fmt: skip
                ]
            else:
                table.csv_rows += [
                    _csv_row("base2new", "base_to_novel", m, dataset, _shots(res, "base2new", m, dataset), "base",
                             b_cell, paper=pb),  # fmt: skip
                    _csv_row("base2new", "base_to_novel", m, dataset, _shots(res, "base2new", m, dataset), "novel",
                             n_cell, paper=pn),  # fmt: skip
                ]
            table.csv_rows.append(_csv_row("base2new", "base_to_novel", m, dataset, None, "hm", mean=hm, paper=ph))
    return table


def _shots(res: Results, protocol: str, method: str, dataset: str) -> int | None:
    found = {k[3] for k in res.cells if k[:3] == (protocol, method, dataset)}
    return found.pop() if len(found) == 1 else None


def transfer_table(res: Results, name: str, targets: list[str], title: str) -> Table | None:
    """ImageNet source, the targets and their average; a paper row and a difference row per method."""
    methods = res.methods("cross_dataset")
    tested = [d for d in res.datasets("cross_dataset", "target") if d != "imagenet"]
    if name == "domain_generalization":
        present = [d for d in tested if d in DG_TARGETS]
    else:  # the 10 targets, and any other dataset that is not an ImageNet variant
        present = [d for d in tested if d not in DG_TARGETS]
    if not methods or not present:
        return None
    columns = ["imagenet", *present]
    header = ["Method", *(DISPLAY.get(d, d) for d in columns), "Average"]
    table = Table(title, header, [])
    lookup = paper_numbers.cross_dataset if name == "cross_dataset" else paper_numbers.domain_generalization
    for m in methods:
        cells = {d: res.get("cross_dataset", m, d, "source" if d == "imagenet" else "target") for d in columns}
        if not any(cells[d] for d in present):
            continue
        target_cells = [cells[d] for d in present if cells[d]]
        avg, avg_std = average(target_cells)
        complete = len(target_cells) == len(targets)
        ours = [cells[d].text() if cells[d] else "-" for d in columns]
        ours.append(_fmt(avg, avg_std) + ("" if complete else f" ({len(target_cells)} of {len(targets)})"))
        table.rows.append([m, *ours])
        paper = [lookup(m, d) for d in columns] + [lookup(m, "average")]
        if any(p is not None for p in paper):
            means = [cells[d].mean if cells[d] else None for d in columns] + [avg if complete else None]
            table.rows.append([f"{m} (paper)", *(_fmt(p) for p in paper)])
            table.rows.append([f"{m} (Δ)", *(_delta(o, p) for o, p in zip(means, paper))])
        for d, p in zip(columns, paper):
            table.csv_rows.append(_csv_row("cross_dataset", name, m, d, _shots(res, "cross_dataset", m, d),
                                           "accuracy", cells[d], paper=p))  # fmt: skip
        table.csv_rows.append(_csv_row("cross_dataset", name, m, "average", None, "accuracy", mean=avg, std=avg_std,
                                       paper=paper[-1] if complete else None))  # fmt: skip
    return table


def few_shot_tables(res: Results) -> list[Table]:
    """Accuracy per number of shots: one table per dataset, then the average over datasets."""
    methods, shots = res.methods("few_shot"), res.shots("few_shot")
    if not methods:
        return []
    tables = []
    header_shots = [f"{k}-shot" for k in shots]
    for dataset in [*res.datasets("few_shot"), "average"]:
        table = Table(f"Few-shot: {DISPLAY.get(dataset, dataset)} (accuracy %)", ["Method", *header_shots], [])
        for m in methods:
            if dataset == "average":
                row, paper_row = [], []
                n_datasets = len(res.datasets("few_shot"))
                for k in shots:
                    cells = [c for d in res.datasets("few_shot") if (c := res.get("few_shot", m, d, "accuracy", k))]
                    mean, std = average(cells) if cells else (None, None)
                    part = "" if len(cells) == n_datasets else f" ({len(cells)} of {n_datasets})"
                    row.append(_fmt(mean, std) + part if cells else "-")
                    paper_row.append(paper_numbers.few_shot(m, "average", k))
                    table.csv_rows.append(_csv_row("few_shot", "few_shot", m, "average", k, "accuracy", mean=mean,
                                                   std=std, paper=paper_row[-1]))  # fmt: skip
                means = [None] * len(shots)
            else:
                cells = [res.get("few_shot", m, dataset, "accuracy", k) for k in shots]
                if not any(cells):
                    continue
                row = [c.text() if c else "-" for c in cells]
                paper_row = [paper_numbers.few_shot(m, dataset, k) for k in shots]
                means = [c.mean if c else None for c in cells]
                for k, c, p in zip(shots, cells, paper_row):
                    table.csv_rows.append(_csv_row("few_shot", "few_shot", m, dataset, k, "accuracy", c, paper=p))
            table.rows.append([m, *row])
            if any(p is not None for p in paper_row):
                table.rows.append([f"{m} (paper)", *(_fmt(p) for p in paper_row)])
                if dataset != "average":
                    table.rows.append([f"{m} (Δ)", *(_delta(o, p) for o, p in zip(means, paper_row))])
        if table.rows:
            tables.append(table)
    return tables


def build_tables(res: Results) -> list[Table]:
    tables = [
        base_to_novel_table(res),
        transfer_table(res, "cross_dataset", CROSS_DATASET_TARGETS,
                       "Cross-dataset evaluation: ImageNet source, 10 targets (accuracy %)"),  # fmt: skip
        transfer_table(res, "domain_generalization", DG_TARGETS,
                       "Domain generalisation: ImageNet source, 4 variants (accuracy %)"),  # fmt: skip
    ]
    return [t for t in tables if t is not None] + few_shot_tables(res)


def flags(res: Results) -> list[str]:
    """Missing seeds, outliers, rebuilt split files, unusual model selections, skipped folders."""
    out = []
    for (protocol, method, dataset, shots, phase), cell in sorted(res.cells.items()):
        where = f"{PROTOCOL_TITLES[protocol]} {method} {dataset} " + (
            f"{shots}-shot" if protocol == "few_shot" else phase
        )
        if cell.missing:
            out.append(f"† missing seeds {', '.join(map(str, cell.missing))}: {where} "
                       f"(has {', '.join(map(str, sorted(cell.values)))})")  # fmt: skip
        for s in cell.outliers:
            out.append(f"‡ outlier seed {s}: {where} = {cell.values[s]:.2f} "
                       f"(median of its seeds {statistics.median(cell.values.values()):.2f})")  # fmt: skip
    trained = {(r.dataset, r.shots, r.trainer, r.cfg, r.seed): r.epoch for r in res.runs if r.selection == "last"}
    for r in res.runs:
        if r.split_rebuilt:
            out.append(f"split rebuilt (not the published split file): {r.path}"
                       + (f" (from {r.split_source})" if r.split_source else ""))  # fmt: skip
        # The official protocols test novel classes with --load-epoch <last epoch>: only another epoch is news.
        final = trained.get((r.dataset, r.shots, r.trainer, r.cfg, r.seed))
        if r.selection == "epoch" and (final is None or r.epoch != final):
            out.append(f"model of a given epoch ({r.epoch}) evaluated, not the final one: {r.path}")
        if r.selection == "best_test":  # e.g. ProVP's TRAINER.COOP.SELECT_ON_TEST (its official protocol)
            out.append(f"model selected on the test set (the best of its epochs, {r.epoch}): {r.path}")
    return out + res.notes


# ---- Rendering.


def render_markdown(tables: list[Table], flag_lines: list[str], res: Results, root: str) -> str:
    from_metrics = sum(r.source == METRICS_FILE for r in res.runs)
    lines = [
        "# Results report",
        "",
        f"Output tree: `{root}`; {len(res.runs)} runs ({from_metrics} from metrics.json, "
        f"{len(res.runs) - from_metrics} from log.txt). Paper numbers: {paper_numbers.PAPER}"
        " (`tools/paper_numbers.py`; `-` where not entered). Δ = ours − paper.",
        "† missing seeds, ‡ outlier seed (see Flags).",
        "",
    ]
    for t in tables:
        lines += [f"## {t.title}", "", "| " + " | ".join(t.header) + " |", "|" + "---|" * len(t.header)]
        lines += ["| " + " | ".join(row) + " |" for row in t.rows]
        lines.append("")
    lines += ["## Flags", ""] + ([f"- {f}" for f in flag_lines] or ["- none"])
    return "\n".join(lines) + "\n"


def _tex_escape(text: str) -> str:
    text = text.replace("\\", r"\textbackslash{}")
    for ch in "&%$#_{}":
        text = text.replace(ch, "\\" + ch)
    return (text.replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("†", r"$^\dagger$")
            .replace("‡", r"$^\ddagger$").replace("−", "-"))  # fmt: skip


def render_latex(tables: list[Table]) -> str:
    """One booktabs table per protocol table (needs \\usepackage{booktabs})."""
    out = [f"% Generated by python -m tools.report; paper numbers: {paper_numbers.PAPER}", ""]
    for t in tables:
        out += [
            r"\begin{table}[t]",
            r"\centering",
            r"\resizebox{\linewidth}{!}{%",
            r"\begin{tabular}{ll" + "c" * (len(t.header) - 2) + "}" if t.header[0] == "Dataset"
            else r"\begin{tabular}{l" + "c" * (len(t.header) - 1) + "}",
            r"\toprule",
            " & ".join(_tex_escape(h) for h in t.header) + r" \\",
            r"\midrule",
        ]
        out += [" & ".join(_tex_escape(c) for c in row) + r" \\" for row in t.rows]
        out += [r"\bottomrule", r"\end{tabular}}", rf"\caption{{{_tex_escape(t.title)}}}", r"\end{table}", ""]
    return "\n".join(out)


CSV_FIELDS = ["protocol", "table", "method", "dataset", "shots", "metric", "label", "classname", "mean", "std",
              "n_seeds", "values", "missing_seeds", "outlier_seeds", "paper", "delta"]  # fmt: skip


def detail_rows(res: Results) -> list[dict[str, Any]]:
    """Per cell: macro F1 and each class's accuracy over seeds (CSV only: ImageNet has 1000 classes)."""
    by_cell: dict[tuple[str, str, str, int, str], list[Run]] = defaultdict(list)
    for r in res.runs:
        by_cell[(r.protocol, r.method, r.dataset, r.shots, r.phase)].append(r)
    rows = []
    for (protocol, method, dataset, shots, phase), runs in sorted(by_cell.items()):
        base = {"protocol": protocol, "table": "details", "method": method, "dataset": dataset, "shots": shots}
        f1 = {r.seed: r.macro_f1 for r in runs if r.macro_f1 is not None}
        if f1:
            mean, std = mean_std(list(f1.values()))
            rows.append({**base, "metric": f"{phase}_macro_f1", "mean": f"{mean:.4f}", "std": f"{std:.4f}",
                         "n_seeds": len(f1), "values": ";".join(f"{k}:{v:.2f}" for k, v in sorted(f1.items()))})
        classes: dict[int, dict[int, float]] = defaultdict(dict)
        names: dict[int, str] = {}
        for r in runs:
            for c in r.per_class:
                classes[int(c["label"])][r.seed] = float(c["acc"])
                names.setdefault(int(c["label"]), c.get("classname") or "")
        for label, accs in sorted(classes.items()):
            mean, std = mean_std(list(accs.values()))
            rows.append({**base, "metric": f"{phase}_class_acc", "label": label, "classname": names[label],
                         "mean": f"{mean:.4f}", "std": f"{std:.4f}", "n_seeds": len(accs),
                         "values": ";".join(f"{k}:{v:.2f}" for k, v in sorted(accs.items()))})
    return rows


def render_csv(tables: list[Table], details: Sequence[dict[str, Any]] = ()) -> str:
    """Long format: one row per (table, method, dataset, shots, metric), then the per-class details."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n", restval="")
    writer.writeheader()
    for t in tables:
        writer.writerows(t.csv_rows)
    writer.writerows(details)
    return buf.getvalue()


def plot_few_shot(res: Results, out_dir: str) -> list[str]:
    """Accuracy vs shots, one panel per dataset and the average, one line per method (paper: dashed).

    Returns the files written; matplotlib is optional and imported only here.
    """
    methods, shots = res.methods("few_shot"), res.shots("few_shot")
    if not methods:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(PLOT_HINT)
        return []
    panels = [*res.datasets("few_shot"), "average"]
    ncols = min(4, len(panels))
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.8 * nrows), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, dataset in zip(axes.flat, panels):
        for i, m in enumerate(methods):
            xs, ys, es = [], [], []
            for k in shots:
                if dataset == "average":
                    cells = [c for d in panels[:-1] if (c := res.get("few_shot", m, d, "accuracy", k))]
                    if len(cells) != len(panels) - 1:
                        continue
                    mean, std = average(cells)
                else:
                    cell = res.get("few_shot", m, dataset, "accuracy", k)
                    if cell is None:
                        continue
                    mean, std = cell.mean, cell.std if len(cell.values) > 1 else None
                xs.append(k)
                ys.append(mean)
                es.append(std or 0.0)
            colour = colours[i % len(colours)]
            if xs:
                ax.errorbar(xs, ys, yerr=es, marker="o", ms=3, lw=1.2, capsize=2, color=colour, label=m)
            paper = [(k, p) for k in shots if (p := paper_numbers.few_shot(m, dataset, k)) is not None]
            if paper:
                ax.plot(*zip(*paper), ls="--", lw=1, color=colour, label=f"{m} (paper)")
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        ax.set_title(DISPLAY.get(dataset, dataset), fontsize=10)
        ax.set_xlabel("shots per class", fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save_figure(fig, out_dir, "few_shot")


def _save_figure(fig: Any, out_dir: str, stem: str) -> list[str]:
    """``<stem>.png`` and ``<stem>.pdf``, each written atomically; the figure is closed."""
    import matplotlib.pyplot as plt

    written = []
    for ext in ("png", "pdf"):
        path = osp.join(out_dir, f"{stem}.{ext}")
        with atomic_write(path, "wb") as f:
            fig.savefig(f, format=ext, dpi=150)
        written.append(path)
    plt.close(fig)
    return written


def base_to_novel_points(res: Results) -> dict[str, dict[str, tuple[float, float, float]]]:
    """method -> dataset (and "average" over the datasets it has both phases of) -> (base, novel, HM)."""
    points: dict[str, dict[str, tuple[float, float, float]]] = {}
    for m in res.methods("base2new"):
        pairs = {}
        for d in res.datasets("base2new"):
            b, n = res.get("base2new", m, d, "base"), res.get("base2new", m, d, "novel")
            if b and n:
                pairs[d] = (b.mean, n.mean)
        if not pairs:
            continue
        rows = {d: (b, n, harmonic_mean(b, n)) for d, (b, n) in pairs.items()}
        if len(pairs) > 1:
            base = sum(b for b, _ in pairs.values()) / len(pairs)
            novel = sum(n for _, n in pairs.values()) / len(pairs)
            rows["average"] = (base, novel, harmonic_mean(base, novel))
        points[m] = rows
    return points


def plot_base_to_novel(res: Results, out_dir: str) -> list[str]:
    """Base, novel and HM accuracy as grouped bars (one group per dataset, one bar per method)."""
    points = base_to_novel_points(res)
    if not points:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(PLOT_HINT.replace("few-shot", "base-to-novel"))
        return []
    groups = [d for d in [*res.datasets("base2new"), "average"] if any(d in rows for rows in points.values())]
    methods = list(points)
    width = 0.8 / len(methods)
    fig, axes = plt.subplots(1, 3, figsize=(max(9.0, 1.1 * len(groups) * 3), 3.2), squeeze=False)
    for k, (ax, title) in enumerate(zip(axes.flat, ("Base", "Novel", "HM"))):
        for i, m in enumerate(methods):
            xs = [g + (i - (len(methods) - 1) / 2) * width for g, d in enumerate(groups) if d in points[m]]
            ys = [points[m][d][k] for d in groups if d in points[m]]
            ax.bar(xs, ys, width=width, label=m)
        ax.set_xticks(range(len(groups)), [DISPLAY.get(d, d) for d in groups], rotation=30, ha="right", fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    return _save_figure(fig, out_dir, "base_to_novel")


def results_of(runs: list[Run], notes: list[str], seeds: Sequence[int] | None, outlier_points: float) -> Results:
    """The runs classified by protocol and phase, named and grouped into cells."""
    classify(runs)
    name_methods(runs)
    return aggregate(runs, notes, seeds, outlier_points)


def make_report(
    root: str, out_dir: str | None = None, seeds: Sequence[int] | None = None, outlier_points: float = 3.0
) -> list[str]:
    """Read the tree under ``root``, write the report files into ``out_dir`` (default ``root``)."""
    if not osp.isdir(root):
        raise ReportError(f"{root} is not a directory (give the output folder of the protocol scripts)")
    runs, notes = collect_runs(root)
    if not runs:
        raise ReportError(
            f"no finished runs under {root}: expected seed<S> folders in base2new/train_base/..., "
            "base2new/test_new/... or few_shot/... holding metrics.json or a log.txt with a result"
        )
    res = results_of(runs, notes, seeds, outlier_points)
    tables = build_tables(res)
    flag_lines = flags(res)
    out_dir = out_dir or root
    written = []
    for name, text in (
        ("report.md", render_markdown(tables, flag_lines, res, root)),
        ("report.csv", render_csv(tables, detail_rows(res))),
        ("report.tex", render_latex(tables)),
    ):
        path = osp.join(out_dir, name)
        with atomic_write(path) as f:
            f.write(text)
        written.append(path)
    written += plot_few_shot(res, out_dir) + plot_base_to_novel(res, out_dir)
    print(f"{len(runs)} runs, {len(flag_lines)} flags; wrote {', '.join(written)}")
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m tools.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("output_dir", help="the output tree (OUTPUT of the protocol scripts)")
    p.add_argument("--out", default=None, help="folder for the report files (default: OUTPUT_DIR)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="expected seeds (default: all seen)")
    p.add_argument("--outlier-points", type=float, default=3.0, help="outlier threshold in accuracy points")
    args = p.parse_args(argv)
    try:
        if args.outlier_points <= 0:
            raise ReportError(f"--outlier-points must be positive, got {args.outlier_points}")
        make_report(args.output_dir, args.out, args.seeds, args.outlier_points)
    except UserError as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        sys.exit(f"error: cannot write the report: {e}")


if __name__ == "__main__":
    main()
