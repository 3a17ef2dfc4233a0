"""parse_test_res.py's summary of one ``<CFG>`` folder: each seed's value, their mean and std, into ``parse.txt``.

Values come from each seed folder's result (``tools/protocols/results.py``): ``metrics.json``'s unrounded
numbers where a run wrote one, else its log's, so the summary and the report agree to the last digit.
The printed format is upstream's (``* accuracy: 71.23% +- 0.45%``), which the official tools read.
"""

from __future__ import annotations

import os.path as osp
import sys
from typing import TextIO

from dassl.utils.tools import atomic_write, listdir_nohidden
from tools.protocols.logs import END_SIGNAL
from tools.protocols.results import read_result

from .stats import mean_std

SUMMARY_FILE = "parse.txt"


class SummaryError(Exception):
    """A folder without any finished run to summarise."""


def summarize(directory: str, keyword: str = "accuracy", ci95: bool = False, out: TextIO | None = None) -> float:
    """Print and write ``directory/parse.txt``: the ``keyword`` of every finished seed folder, mean and std.

    Returns the mean; unfinished seed folders are listed and left out.
    """
    out = out or sys.stdout
    print(f"Parsing files in {directory}", file=out)
    lines, values = [], []
    for sub in listdir_nohidden(directory, sort=True):
        path = osp.join(directory, sub)
        if not osp.isdir(path):
            continue
        notes: list[str] = []
        result = read_result(path, notes)
        value = result.value(keyword) if result is not None else None
        if value is None:
            lines += [f"skipped {note}" for note in notes if note.startswith("unfinished")]
            continue
        values.append(value)
        lines.append(f"file: {osp.join(path, result.source)}. {keyword}: {value:.2f}%. ")
    if not values:
        raise SummaryError(
            f"no finished run with '* {keyword}:' in {directory}/*/ (a metrics.json, or a log.txt with a "
            f"'{END_SIGNAL}' block)"
        )
    mean, std = mean_std(values, ci95)
    lines += ["===", f"Summary of directory: {directory}", f"* {keyword}: {mean:.2f}% +- {std:.2f}%", "==="]
    print("\n".join(lines), file=out, flush=True)
    with atomic_write(osp.join(directory, SUMMARY_FILE)) as f:
        f.write("\n".join(lines))
    return mean
