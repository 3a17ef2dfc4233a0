"""Running a protocol's cells one after another in the foreground, as the official shell scripts do.

A finished cell is skipped; an incomplete one runs again (train.py resumes from its last checkpoint; the
earlier attempt's ``log.txt`` is kept as ``log.txt.incomplete-<time>``). Each ``<CFG>`` folder is
summarised by parse_test_res.py's summary once its cells are done. The first failing run stops the
protocol with its exit code: running the same command again carries on where it stopped.
"""

from __future__ import annotations

import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from itertools import groupby
from typing import TextIO

from tools.report.summary import summarize

from .plan import Cell
from .settings import REPO, ProtocolError
from .status import FINISHED, cell_status


def launch(output_dir: str, args: Sequence[str], python: str = sys.executable, log: str | None = None) -> int:
    """Run train.py with ``args`` for the cell ``output_dir``; its output to ``log`` (appended) or ours.

    An earlier attempt's ``log.txt`` is kept aside first. Returns train.py's exit code.
    """
    os.makedirs(output_dir, exist_ok=True)
    previous = osp.join(output_dir, "log.txt")
    if osp.isfile(previous):
        os.replace(previous, f"{previous}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
    command = [python, osp.join(REPO, "train.py"), *args]
    if log is None:
        return subprocess.call(command)
    with open(log, "a") as out:
        return subprocess.call(command, stdout=out, stderr=subprocess.STDOUT)


def command_line(cell: Cell, python: str) -> str:
    """The cell's train.py command as a shell line."""
    return shlex.join([python, osp.join(REPO, "train.py"), *cell.args])


def run_cells(cells: Sequence[Cell], python: str = sys.executable, dry_run: bool = False,
              out: TextIO | None = None) -> int:  # fmt: skip
    """Run the cells in order, skipping finished ones, summarising each ``<CFG>`` folder; 0 or the failing code.

    With ``dry_run`` the command lines of the cells still to run are printed instead.
    """
    out = out or sys.stdout
    for folder, group in groupby(cells, key=lambda c: c.folder):
        for cell in group:
            if cell_status(cell.output_dir) == FINISHED:
                print(f"Skip {cell.output_dir} (already holds a result)", file=out, flush=True)
                continue
            if dry_run:
                print(command_line(cell, python), file=out, flush=True)
                continue
            if cell.after is not None and cell_status(cell.after) != FINISHED:
                raise ProtocolError(
                    f"{cell.output_dir} evaluates the model of {cell.after}, which has not finished training: "
                    "run the training first"
                )
            code = launch(cell.output_dir, cell.args, python)
            if code != 0:
                print(f"Stopped: train.py exited with code {code} for {cell.output_dir} (run again to resume)",
                      file=out, flush=True)  # stdout: train.py's own error line stays the last one on stderr
                return code
        if not dry_run:
            summarize(folder, out=out)
    return 0
