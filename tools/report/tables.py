"""The report's tables, one structure (title, header, rows, CSV rows) that render.py writes as text, Markdown,
LaTeX and CSV: base-to-novel, cross-dataset, domain generalisation and few-shot, each beside the paper."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tools import paper_numbers
from tools.protocols.layout import DATASETS, DG_TARGETS, SOURCE, TRANSFER_TARGETS

from .aggregate import DISPLAY, Cell, Results, average
from .collect import Run
from .stats import harmonic_mean, mean_std

PROTOCOL_TITLES = {"base2new": "Base-to-novel", "cross_datasets": "Cross-dataset", "few_shot": "Few-shot",
                   "dg": "Multi-source DG"}


def _fmt(value: float | None, std: float | None = None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f}" + (f" ± {std:.2f}" if std is not None else "")


def _delta(ours: float | None, paper: float | None) -> str:
    return "-" if ours is None or paper is None else f"{ours - paper:+.2f}"



@dataclass
class Table:
    """One table: its protocol (base2new, cross_datasets, few_shot), title, header and rows, and its CSV rows."""

    protocol: str
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
    table = Table("base2new", "Base-to-novel generalisation (accuracy %, mean ± std over seeds)", header, [])
    datasets = res.datasets("base2new")
    for dataset in [*datasets, "average"]:
        for m in methods:
            if dataset == "average":
                paired = {
                    d: (b, n)
                    for d in datasets
                    if (b := res.get("base2new", m, d, "base")) and (n := res.get("base2new", m, d, "novel"))
                }
                if len(paired) < 2:  # the average of one dataset would only repeat its row
                    continue
                pairs = list(paired.values())
                # The paper's average is over its 11 datasets: beside a partial average it would mislead.
                complete = set(paired) == set(DATASETS)
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
    if all(cell == "-" for row in table.rows for cell in row[5:]):  # no dataset or method of the paper's
        table.header, table.rows = table.header[:5], [row[:5] for row in table.rows]
    return table


def _shots(res: Results, protocol: str, method: str, dataset: str) -> int | None:
    found = {k[3] for k in res.cells if k[:3] == (protocol, method, dataset)}
    return found.pop() if len(found) == 1 else None


def transfer_table(res: Results, name: str, targets: Sequence[str], title: str) -> Table | None:
    """ImageNet source, the targets and their average; a paper row and a difference row per method."""
    methods = res.methods("cross_datasets")
    tested = [d for d in res.datasets("cross_datasets", "target") if d != SOURCE]
    if name == "domain_generalization":
        present = [d for d in tested if d in DG_TARGETS]
    else:  # the 10 targets, and any other dataset that is not an ImageNet variant
        present = [d for d in tested if d not in DG_TARGETS]
    if not methods or not present:
        return None
    columns = [SOURCE, *present]
    header = ["Method", *(DISPLAY.get(d, d) for d in columns), "Average"]
    table = Table("cross_datasets", title, header, [])
    lookup = paper_numbers.cross_dataset if name == "cross_dataset" else paper_numbers.domain_generalization
    for m in methods:
        cells = {d: res.get("cross_datasets", m, d, "source" if d == SOURCE else "target") for d in columns}
        if not any(cells[d] for d in present):
            continue
        target_cells = [cells[d] for d in present if cells[d]]
        avg, avg_std = average(target_cells)
        complete = len(target_cells) == len(targets)
        ours = [cells[d].text() if cells[d] else "-" for d in columns]
        ours.append(_fmt(avg, avg_std) + ("" if complete else f" ({len(target_cells)} of {len(targets)})"))
        table.rows.append([m, *ours])
        # the paper's average is over all its targets: beside a partial average it would mislead
        paper = [lookup(m, d) for d in columns] + [lookup(m, "average") if complete else None]
        if any(p is not None for p in paper):
            means = [cells[d].mean if cells[d] else None for d in columns] + [avg if complete else None]
            table.rows.append([f"{m} (paper)", *(_fmt(p) for p in paper)])
            table.rows.append([f"{m} (Δ)", *(_delta(o, p) for o, p in zip(means, paper))])
        for d, p in zip(columns, paper):
            table.csv_rows.append(_csv_row("cross_datasets", name, m, d, _shots(res, "cross_datasets", m, d),
                                           "accuracy", cells[d], paper=p))  # fmt: skip
        table.csv_rows.append(_csv_row("cross_datasets", name, m, "average", None, "accuracy", mean=avg, std=avg_std,
                                       paper=paper[-1]))  # fmt: skip
    return table


def few_shot_tables(res: Results) -> list[Table]:
    """Accuracy per number of shots: one table per dataset, then the average over datasets."""
    methods, shots = res.methods("few_shot"), res.shots("few_shot")
    if not methods:
        return []
    tables = []
    header_shots = [f"{k}-shot" for k in shots]
    datasets = res.datasets("few_shot")
    # The paper's average is over its 11 datasets: beside a partial average it would mislead.
    complete = set(DATASETS) <= set(datasets)
    for dataset in [*datasets, "average"]:
        title = f"Few-shot: {DISPLAY.get(dataset, dataset)} (accuracy %)"
        table = Table("few_shot", title, ["Method", *header_shots], [])
        for m in methods:
            if dataset == "average":
                row, paper_row, means = [], [], []
                for k in shots:
                    cells = [c for d in datasets if (c := res.get("few_shot", m, d, "accuracy", k))]
                    mean, std = average(cells) if cells else (None, None)
                    whole = len(cells) == len(datasets)
                    row.append(_fmt(mean, std) + ("" if whole else f" ({len(cells)} of {len(datasets)})") if cells
                               else "-")  # fmt: skip
                    paper_row.append(paper_numbers.few_shot(m, "average", k) if complete else None)
                    means.append(mean if whole else None)
                    table.csv_rows.append(_csv_row("few_shot", "few_shot", m, "average", k, "accuracy", mean=mean,
                                                   std=std, paper=paper_row[-1] if whole else None))  # fmt: skip
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
                table.rows.append([f"{m} (Δ)", *(_delta(o, p) for o, p in zip(means, paper_row))])
        if table.rows:
            tables.append(table)
    return tables


def build_tables(res: Results) -> list[Table]:
    tables = [
        base_to_novel_table(res),
        transfer_table(res, "cross_dataset", TRANSFER_TARGETS,
                       "Cross-dataset evaluation: ImageNet source, 10 targets (accuracy %)"),  # fmt: skip
        transfer_table(res, "domain_generalization", DG_TARGETS,
                       "Domain generalisation: ImageNet source, 4 variants (accuracy %)"),  # fmt: skip
    ]
    return [t for t in tables if t is not None] + few_shot_tables(res) + multi_source_tables(res)


def multi_source_tables(res: Results) -> list[Table]:
    """Multi-source domain generalisation (leave one domain out), one table per dataset: per method and shot
    count, the accuracy on each held-out domain and their average (the average of the domains' seed means;
    its ± is over the seeds every domain has). MMRL's paper has no such table: no paper columns."""
    tables = []
    for dataset in res.datasets("dg"):
        domains = sorted({k[4] for k in res.cells if k[0] == "dg" and k[2] == dataset})
        title = (f"Multi-source domain generalisation: {DISPLAY.get(dataset, dataset)}, each domain held out "
                 "(accuracy % on it, mean ± std over seeds)")  # fmt: skip
        table = Table("dg", title, ["Method", "Shots", *domains, "Average"], [])
        for m in res.methods("dg"):
            for k in res.shots("dg"):
                cells = {d: res.get("dg", m, dataset, d, k) for d in domains}
                if not any(cells.values()):
                    continue
                held = [c for c in cells.values() if c]
                mean, std = average(held)
                part = "" if len(held) == len(domains) else f" ({len(held)} of {len(domains)})"
                table.rows.append([m, str(k), *(c.text() if c else "-" for c in cells.values()),
                                   _fmt(mean, std) + part])  # fmt: skip
                table.csv_rows += [
                    _csv_row("dg", "multi_source_dg", m, dataset, k, d, c) for d, c in cells.items() if c
                ]
                table.csv_rows.append(_csv_row("dg", "multi_source_dg", m, dataset, k, "average", mean=mean, std=std))
        tables.append(table)
    return tables


def flags(res: Results) -> list[str]:
    """Missing seeds, outliers, rebuilt split files, unusual model selections, skipped folders."""
    out = []
    for (protocol, method, dataset, shots, phase), cell in sorted(res.cells.items()):
        setting = {"few_shot": f"{shots}-shot", "dg": f"{shots}-shot, {phase} held out"}.get(protocol, phase)
        where = f"{PROTOCOL_TITLES[protocol]} {method} {dataset} {setting}"
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
