"""The report's pictures (matplotlib, an optional extra imported only here): few-shot curves and base-to-novel bars."""

from __future__ import annotations

import math
import os.path as osp
from dataclasses import dataclass
from typing import Any

from dassl.utils.tools import atomic_write
from tools import paper_numbers
from tools.protocols.layout import DATASETS
from tools.protocols.settings import display_name

from .aggregate import DISPLAY, Results, average
from .stats import harmonic_mean, mean_std

PLOT_HINT = 'few-shot plots skipped: matplotlib is not installed (pip install -e ".[plots]")'


def plot_few_shot(res: Results, out_dir: str) -> list[str]:
    """Accuracy vs shots, one panel per dataset and the average, one line per method with a band of one std
    over seeds either side; the paper's curve of the same method dashed, in the same colour.

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
    # the paper's average is over its 11 datasets: beside a partial average it would mislead
    complete = set(DATASETS) <= set(panels)
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
            if xs:  # the line through the means, the band one std over seeds either side
                ax.plot(xs, ys, marker="o", ms=3, lw=1.4, color=colour, label=method_label(m))
                if any(es):
                    ax.fill_between(xs, [y - e for y, e in zip(ys, es)], [y + e for y, e in zip(ys, es)],
                                    color=colour, alpha=0.2, lw=0)  # fmt: skip
            paper = [(k, p) for k in shots if (p := paper_numbers.few_shot(m, dataset, k)) is not None]
            if paper and (dataset != "average" or complete):
                ax.plot(*zip(*paper), ls="--", lw=1, marker="x", ms=3, color=colour,
                        label=f"{method_label(m)} (paper)")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xticks(shots, [str(k) for k in shots])
        partial = dataset == "average" and not complete
        ax.set_title(f"Average ({len(panels) - 1} datasets)" if partial else DISPLAY.get(dataset, dataset), fontsize=10)
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
    fig.suptitle("Few-shot: mean over seeds, band one std over seeds; dashed: the paper", fontsize=10)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    return _save_figure(fig, out_dir, "few_shot")


def method_label(method: str) -> str:
    """A legend's name: the paper's name of the trainer (MMRLpp -> MMRL++), a minority config kept (``M (cfg)``)."""
    trainer, sep, rest = method.partition(" (")
    return display_name(trainer) + sep + rest


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


def _is_zero_shot(method: str) -> bool:
    """Zero-shot CLIP (ZeroshotCLIP, its template ensemble ZeroshotCLIP2, the aliases): the reference bar."""
    trainer = method.split(" (")[0]
    return trainer.startswith("ZeroshotCLIP") or paper_numbers.paper_method(trainer) == "CLIP"


def _per_seed(res: Results, method: str, datasets: list[str]) -> dict[int, tuple[float, float]]:
    """Seed -> (base, novel) averaged over ``datasets``, for the seeds every one of their cells has."""
    cells = [(res.get("base2new", method, d, "base"), res.get("base2new", method, d, "novel")) for d in datasets]
    common = set.intersection(*(set(b.values) & set(n.values) for b, n in cells))
    return {
        s: (sum(b.values[s] for b, _ in cells) / len(cells), sum(n.values[s] for _, n in cells) / len(cells))
        for s in sorted(common)
    }


def base_to_novel_points(res: Results) -> dict[str, dict[str, tuple[float, float, float]]]:
    """method -> dataset (and "average" over the datasets it has both phases of) -> (base, novel, HM)."""
    return {m: {d: bar.means for d, bar in rows.items()} for m, rows in base_to_novel_bars(res).items()}


@dataclass
class Bar:
    """One method on one dataset (or the average): mean base, novel, HM and their spread over seeds."""

    means: tuple[float, float, float]
    stds: tuple[float | None, float | None, float | None]  # None with fewer than two seeds


def base_to_novel_bars(res: Results) -> dict[str, dict[str, Bar]]:
    """method -> dataset (and "average" over the datasets it has both phases of) -> Bar.

    Base and novel spread: the population std of the cell's seeds (for the average, of the per-seed
    averages); HM spread: that of the per-seed HMs, over the seeds having both phases.
    """
    bars: dict[str, dict[str, Bar]] = {}
    for m in res.methods("base2new"):
        paired = {}
        for d in res.datasets("base2new"):
            b, n = res.get("base2new", m, d, "base"), res.get("base2new", m, d, "novel")
            if b and n:
                paired[d] = (b, n)
        if not paired:
            continue
        rows = {}
        for d, (b, n) in paired.items():
            rows[d] = Bar((b.mean, n.mean, harmonic_mean(b.mean, n.mean)), (
                b.std if len(b.values) > 1 else None, n.std if len(n.values) > 1 else None, _hm_std(res, m, [d])
            ))  # fmt: skip
        if len(paired) > 1:
            base, base_std = average([b for b, _ in paired.values()])
            novel, novel_std = average([n for _, n in paired.values()])
            rows["average"] = Bar((base, novel, harmonic_mean(base, novel)),
                                  (base_std, novel_std, _hm_std(res, m, list(paired))))  # fmt: skip
        bars[m] = rows
    return bars


def _hm_std(res: Results, method: str, datasets: list[str]) -> float | None:
    seeds = _per_seed(res, method, datasets)
    return mean_std([harmonic_mean(b, n) for b, n in seeds.values()])[1] if len(seeds) > 1 else None


def plot_base_to_novel(res: Results, out_dir: str) -> list[str]:
    """Base, novel and HM accuracy as grouped bars (one group per dataset, one bar per method).

    Zero-shot CLIP comes first, in grey: its runs when the tree has them, else the paper's CLIP row
    (hatched) where the paper has the dataset. Error bars: the spread over seeds. Black ticks: the
    paper's value of that method on that dataset.
    """
    bars = base_to_novel_bars(res)
    if not bars:
        return []
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(PLOT_HINT.replace("few-shot", "base-to-novel"))
        return []
    groups = [d for d in [*res.datasets("base2new"), "average"] if any(d in rows for rows in bars.values())]
    # the paper's average is over its 11 datasets: beside a partial average it would mislead
    paper_groups = set(groups) if set(DATASETS) <= set(groups) else set(groups) - {"average"}
    zero_shot = [m for m in bars if _is_zero_shot(m)]
    methods = zero_shot + [m for m in bars if m not in zero_shot]
    # the paper's zero-shot CLIP where the tree has none of its own
    paper_clip = {} if zero_shot else {
        d: p for d in groups if d in paper_groups and (p := paper_numbers.base_to_novel("CLIP", d))
    }
    columns = (["CLIP (paper)"] if paper_clip else []) + methods
    width = 0.8 / len(columns)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    greys = ["0.55", "0.75", "0.35"]
    colour = {c: greys[i % 3] if c == "CLIP (paper)" or c in zero_shot else colours[i % len(colours)]
              for i, c in enumerate(columns)}  # fmt: skip
    labels_on_bars = len(groups) * len(columns) <= 12
    n_datasets = len(groups) - ("average" in groups)
    names = [DISPLAY[d] if d == "average" and "average" in paper_groups else
             f"Average ({n_datasets} datasets)" if d == "average" else DISPLAY.get(d, d) for d in groups]  # fmt: skip
    width_in = max(4.5, 0.2 * len(groups) * len(columns) + 2.5)
    fig, axes = plt.subplots(3, 1, figsize=(width_in, 7.5), sharex=True, squeeze=False)
    for k, (ax, title) in enumerate(zip(axes.flat, ("Base", "Novel", "HM"))):
        for i, c in enumerate(columns):
            offset = (i - (len(columns) - 1) / 2) * width
            if c == "CLIP (paper)":
                xs = [g + offset for g, d in enumerate(groups) if d in paper_clip]
                ys = [paper_clip[d][k] for d in groups if d in paper_clip]
                drawn = ax.bar(xs, ys, width=width, color="white", edgecolor=colour[c], hatch="///",
                               label="zero-shot CLIP (paper)")  # fmt: skip
            else:
                present = [(g + offset, d, bars[c][d]) for g, d in enumerate(groups) if d in bars[c]]
                xs = [x for x, _, _ in present]
                errs = [bar.stds[k] or 0.0 for _, _, bar in present]
                drawn = ax.bar(xs, [bar.means[k] for _, _, bar in present], width=width, color=colour[c],
                               label=method_label(c), yerr=errs if any(errs) else None, capsize=2,
                               error_kw={"lw": 0.8})  # fmt: skip
                paper = [(x, p[k]) for x, d, _ in present
                         if d in paper_groups and (p := paper_numbers.base_to_novel(c, d))]  # fmt: skip
                if paper:
                    ax.scatter(*zip(*paper), marker="_", s=max(30.0, 400 * width), color="black", zorder=3,
                               label="published (MMRL paper, Table 1)")  # fmt: skip
            if labels_on_bars:
                ax.bar_label(drawn, fmt="%.1f", fontsize=7, padding=2)
        ax.set_xticks(range(len(groups)), names, fontsize=8)
        ax.set_ylabel(f"{title} accuracy (%)", fontsize=8)
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    handles, labels = [], []
    for ax in axes.flat:  # one legend entry per label over the three panels
        for h, lab in zip(*ax.get_legend_handles_labels()):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    ncol = min(len(labels), max(3, int(width_in / 1.6)))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    where = f" on {names[0]}" if len(groups) == 1 else ""
    fig.suptitle(f"Base-to-novel{where}: mean over seeds,\nerror bars one std over seeds", fontsize=10)
    fig.tight_layout(rect=(0, 0.03 * math.ceil(len(labels) / ncol) + 0.01, 1, 1))
    return _save_figure(fig, out_dir, "base_to_novel")
