"""The ablation tables: one per ablation under ``<output>/ablation/<name>/``, each value's base-to-novel tree
read as the base-to-novel table is (``tools/protocols/ablation.py`` writes them), beside the paper's numbers.

Rows are per dataset (then their average), one per method and value (``MMRL lambda=0.5``): base, novel and
HM over seeds, the paper's HM for that value (``tools/paper_numbers.csv``, setting ``<name>=<value>``) and
the difference. The paper prints per-dataset HMs only (MMRL's Table 8), so the average row has none.
"""

from __future__ import annotations

from collections.abc import Sequence

from tools import paper_numbers
from tools.protocols.layout import DATASETS, find_ablation_dirs

from .aggregate import DISPLAY, ORDER, Results, average, results_of
from .collect import collect_runs
from .stats import harmonic_mean
from .tables import Table, _csv_row, _delta, _fmt, flags

PROTOCOL = "ablation"  # the tables' protocol (python -m tools.report --show ablation)


def _number(label: str) -> float | None:
    try:
        return float(label)
    except ValueError:
        return None


def _order(labels: Sequence[str]) -> list[str]:
    """Numeric values in increasing order, words alphabetically."""
    if all(_number(v) is not None for v in labels):
        return sorted(labels, key=lambda v: float(v))
    return sorted(labels)


def paper_source(method: str, name: str) -> str:
    """Where the paper prints this ablation (``Table 8``), or ``not published``."""
    tables = sorted({n.table for n in paper_numbers.numbers(method, "ablation")
                     if n.setting.partition("=")[0] == name})  # fmt: skip
    return ", ".join(tables) or "not published"


def _paper(method: str, name: str, label: str) -> dict[str, float]:
    """The paper's HM per dataset (its names) for this value, {} if it prints none."""
    value = _number(label)
    return {} if value is None else paper_numbers.ablation(method, name).get(value, {})


def _dataset_row(table: Table, setting: str, res: Results, method: str, dataset: str, paper: dict[str, float]) -> None:
    b, n = res.get("base2new", method, dataset, "base"), res.get("base2new", method, dataset, "novel")
    if b is None and n is None:
        return
    hm = harmonic_mean(b.mean, n.mean) if b and n else None
    ph = paper.get(paper_numbers.paper_dataset(dataset))
    table.rows.append([DISPLAY.get(dataset, dataset), setting, b.text() if b else "-", n.text() if n else "-",
                       _fmt(hm), _fmt(ph), _delta(hm, ph)])  # fmt: skip
    table.csv_rows += [_csv_row(PROTOCOL, table.title, setting, dataset, 16, "base", b),
                       _csv_row(PROTOCOL, table.title, setting, dataset, 16, "novel", n),
                       _csv_row(PROTOCOL, table.title, setting, dataset, None, "hm", mean=hm, paper=ph)]  # fmt: skip


def _average_row(table: Table, setting: str, res: Results, method: str, datasets: list[str]) -> None:
    """Mean base and novel over the datasets with both, and the HM of the two (as the base-to-novel table)."""
    cells = [(res.get("base2new", method, d, "base"), res.get("base2new", method, d, "novel")) for d in datasets]
    paired = [(b, n) for b, n in cells if b is not None and n is not None]
    if not paired:
        return
    base, base_std = average([b for b, _ in paired])
    novel, novel_std = average([n for _, n in paired])
    hm = harmonic_mean(base, novel)
    n = len(paired)
    complete = {d for d, (b, m) in zip(datasets, cells) if b and m} == set(DATASETS)
    label = "Average" if complete else f"Average ({n} dataset{'s' * (n > 1)})"
    table.rows.append([label, setting, _fmt(base, base_std), _fmt(novel, novel_std), _fmt(hm), "-", "-"])
    table.csv_rows.append(_csv_row(PROTOCOL, table.title, setting, "average", None, "hm", mean=hm))


Ablations = dict[str, dict[str, Results]]  # name -> value (folder name) -> that value's results


def load_ablations(root: str, seeds: Sequence[int] | None = None, outlier_points: float = 3.0) -> Ablations:
    """The finished runs of every ablation value under ``root/ablation/``, grouped into cells as the report does."""
    found: Ablations = {}
    for name, label, folder in find_ablation_dirs(root):
        runs, notes = collect_runs(folder)
        if runs:
            found.setdefault(name, {})[label] = results_of(runs, notes, seeds, outlier_points)
    return found


def ablation_flags(found: Ablations) -> list[str]:
    """The flags of each value's cells (missing and outlier seeds, ...), each line naming its ablation and value."""
    return [f"ablation {name}={label}: {line}" for name, by_value in found.items()
            for label in _order(list(by_value)) for line in flags(by_value[label])]  # fmt: skip


def ablation_tables(found: Ablations) -> list[Table]:
    """One table per ablation (none when there is none)."""
    tables = []
    for name, by_value in found.items():
        methods = sorted({m for res in by_value.values() for m in res.methods("base2new")}, key=str.lower)
        sources = "; ".join(f"{m}: {paper_source(m, name)}" for m in methods)
        title = f"Ablation {name} (base-to-novel, accuracy %, mean ± std over seeds; paper HM: {sources})"
        header = ["Dataset", "Setting", "Base", "Novel", "HM", "Paper HM", "Δ HM"]
        table = Table(PROTOCOL, title, header, [])
        datasets = sorted({d for res in by_value.values() for d in res.datasets("base2new")},
                          key=lambda d: (ORDER.index(d) if d in ORDER else len(ORDER), d))  # fmt: skip
        labels = _order(list(by_value))
        for dataset in datasets:
            for method in methods:
                for label in labels:
                    paper = _paper(method, name, label)
                    _dataset_row(table, f"{method} {name}={label}", by_value[label], method, dataset, paper)
        for method in methods:
            for label in labels:
                _average_row(table, f"{method} {name}={label}", by_value[label], method, datasets)
        tables.append(table)
    return tables
