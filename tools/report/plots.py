"""The report's pictures (matplotlib, an optional extra imported only here): few-shot curves and base-to-novel bars."""

from __future__ import annotations

import math
import os.path as osp
from typing import Any

from dassl.utils.tools import atomic_write
from tools import paper_numbers

from .aggregate import DISPLAY, Results, average
from .stats import harmonic_mean

PLOT_HINT = 'few-shot plots skipped: matplotlib is not installed (pip install -e ".[plots]")'


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
