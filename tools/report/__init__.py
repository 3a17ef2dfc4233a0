"""Tables (and pictures) of a whole output tree, ours or the official code's, beside the paper's.

    python -m tools.report OUTPUT_DIR [--out DIR] [--seeds 1 2 3] [--outlier-points 3] [--show base2new]

Prints the tables (``--show``: only those of the given protocols; ``--show none``: none) and writes
``report.md``, ``report.csv`` and ``report.tex`` (and ``few_shot.png`` / ``.pdf`` and
``base_to_novel.png`` / ``.pdf`` when matplotlib is installed: ``pip install -e ".[plots]"``) into
OUTPUT_DIR or ``--out``. The package: ``collect`` (the seed folders and their protocol), ``aggregate``
(cells over seeds), ``tables``, ``render`` (text, Markdown, LaTeX, CSV), ``plots``, ``summary``
(parse_test_res.py's per-folder summary).

Runs are the ``seed<S>`` folders of the protocol layout (``tools/protocols/layout.py``)::

    base2new/train_base/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>
    base2new/test_<sub>/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>
    few_shot/<dataset>/shots_<K>/<TRAINER>/<CFG>/seed<S>

A run's result is its ``metrics.json`` (a test-split evaluation, unrounded) or else the last result
block of its ``log.txt`` (``tools/protocols/results.py``). Config names are never assumed. Which
protocol a ``base2new/`` run belongs to:

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
import os.path as osp
import sys
from collections.abc import Sequence

from dassl.utils import UserError
from dassl.utils.tools import atomic_write
from tools.protocols.layout import PROTOCOLS

from .ablations import ablation_flags, ablation_tables, load_ablations
from .aggregate import Results, results_of
from .collect import Run, collect_runs
from .plots import PLOT_HINT, base_to_novel_points, plot_base_to_novel, plot_few_shot
from .render import render_csv, render_latex, render_markdown, render_text
from .tables import Table, build_tables, detail_rows, flags

__all__ = [
    "PLOT_HINT", "ReportError", "Results", "Run", "Table", "base_to_novel_points", "build_tables", "collect_runs",
    "load_results", "main", "make_report", "render_text", "results_of",
]  # fmt: skip


class ReportError(UserError):
    """An output tree the report cannot read (not a folder, no runs); printed as one error line."""


def load_results(root: str, seeds: Sequence[int] | None = None, outlier_points: float = 3.0) -> Results:
    """The finished runs under ``root``, classified and grouped into cells (what every table is built from)."""
    if not osp.isdir(root):
        raise ReportError(f"{root} is not a directory (give the output folder of the protocol scripts)")
    runs, notes = collect_runs(root)
    if not runs and not load_ablations(root):
        raise ReportError(
            f"no finished runs under {root}: expected seed<S> folders in base2new/train_base/..., "
            "base2new/test_new/... or few_shot/... holding metrics.json or a log.txt with a result"
        )
    return results_of(runs, notes, seeds, outlier_points)


def make_report(
    root: str,
    out_dir: str | None = None,
    seeds: Sequence[int] | None = None,
    outlier_points: float = 3.0,
    show: Sequence[str] | None = None,
) -> list[str]:
    """Read the tree under ``root``, write the report files into ``out_dir`` (default ``root``).

    The tables of the protocols in ``show`` (all when None) are printed first.
    """
    res = load_results(root, seeds, outlier_points)
    ablations = load_ablations(root, seeds, outlier_points)  # OUTPUT/ablation/<name>/<value>/: their own trees
    tables = build_tables(res) + ablation_tables(ablations)
    flag_lines = flags(res) + ablation_flags(ablations)
    shown = [t for t in tables if show is None or t.protocol in show]
    if shown:
        print("\n\n".join(render_text(t) for t in shown) + "\n")
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
    print(f"{len(res.runs)} runs, {len(flag_lines)} flags; wrote {', '.join(written)}")
    return written


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        prog="python -m tools.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("output_dir", help="the output tree (OUTPUT of the protocol scripts)")
    p.add_argument("--out", default=None, help="folder for the report files (default: OUTPUT_DIR)")
    p.add_argument("--seeds", type=int, nargs="+", default=None, help="expected seeds (default: all seen)")
    p.add_argument("--outlier-points", type=float, default=3.0, help="outlier threshold in accuracy points")
    p.add_argument("--show", nargs="+", choices=[*PROTOCOLS, "ablation", "none"], default=None,
                   help="print only the tables of these protocols (default: all)")  # fmt: skip
    args = p.parse_args(argv)
    try:
        if args.outlier_points <= 0:
            raise ReportError(f"--outlier-points must be positive, got {args.outlier_points}")
        make_report(args.output_dir, args.out, args.seeds, args.outlier_points, args.show)
    except UserError as e:
        sys.exit(f"error: {e}")
    except OSError as e:
        sys.exit(f"error: cannot write the report: {e}")
