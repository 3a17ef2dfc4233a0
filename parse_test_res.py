"""Summarise test results over seeds: mean and std (or 95% CI) of a metric, upstream's command line.

Layout read (upstream's): ``DIR/seed1/``, ``DIR/seed2/``, ...; with ``--multi-exp`` one level more,
``DIR/<experiment>/seed*/``, averaged over experiments at the end. A seed folder's value is its
``metrics.json``'s (unrounded) where the run wrote one, else the LAST ``* <keyword>: x%`` line after a
``=> result`` line of its ``log.txt`` (the official code's runs); a run whose last evaluation is on the
validation split is left out. The std is the population std (upstream's ``np.std``). The summary is
printed and written to ``DIR/parse.txt`` (``tools/report/summary.py``).

    python parse_test_res.py output/base2new/train_base/dtd/shots_16/MMRL/vit_b16
    python parse_test_res.py output/few_shot/dtd --multi-exp --ci95
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

from dassl.errors import UserError
from dassl.utils.tools import listdir_nohidden
from tools.report.summary import SummaryError, summarize


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Summarise ``DIR`` (or each experiment of it); returns {keyword: mean} (averaged over experiments)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directory", type=str, help="folder holding seed*/ (or experiments with --multi-exp)")
    parser.add_argument("--ci95", action="store_true", help="report the 95%% confidence interval instead of the std")
    parser.add_argument(
        "--test-log", action="store_true", help="logs come from --eval-only runs (accepted for upstream compatibility)"
    )
    parser.add_argument("--multi-exp", action="store_true", help="average over the experiment folders in directory")
    parser.add_argument("--keyword", default="accuracy", type=str, help="metric to read (accuracy, error, macro_f1)")
    args = parser.parse_args(argv)

    if not osp.isdir(args.directory):
        raise SystemExit(f"error: {args.directory} is not a directory")
    experiments = [args.directory]
    if args.multi_exp:
        experiments = [osp.join(args.directory, e) for e in listdir_nohidden(args.directory, sort=True)]
        experiments = [e for e in experiments if osp.isdir(e)]
    try:
        means = [summarize(e, args.keyword, args.ci95) for e in experiments]
    except SummaryError as e:
        raise SystemExit(f"error: {e}") from None
    average = sum(means) / len(means)
    if args.multi_exp:
        print(f"Average performance\n* {args.keyword}: {average:.2f}%")
    return {args.keyword: average}


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except UserError as e:  # a log or metrics.json that cannot be read: one line naming it and the fix
        sys.exit(f"error: {e}")
