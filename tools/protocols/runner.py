"""Running a protocol's cells one after another in the foreground, as the official shell scripts do.

A finished cell is skipped, and so is a running one (another live run holds its folder: tools/run_lock.py);
an incomplete one runs again (train.py resumes from its last checkpoint; the earlier attempt's ``log.txt``
is kept as ``log.txt.incomplete-<time>``, moved under the folder's lock). Each ``<CFG>`` folder is
summarised by parse_test_res.py's summary once its cells are done. The first failing run stops the
protocol with its exit code: running the same command again carries on where it stopped.
"""

from __future__ import annotations

import os
import os.path as osp
import shlex
import subprocess
import sys
from collections.abc import Sequence
from itertools import groupby
from typing import TextIO

from tools.report.summary import summarize
from tools.run_lock import LOCKED_EXIT, holder, prepare

from .plan import Cell
from .settings import REPO, ProtocolError
from .status import FINISHED, RUNNING, cell_status


def launch(output_dir: str, args: Sequence[str], python: str = sys.executable, log: str | None = None) -> int:
    """Run train.py with ``args`` for the cell ``output_dir``; its output to ``log`` (appended) or ours.

    An earlier attempt's ``log.txt`` is kept aside first, under the folder's lock. Returns train.py's exit
    code, or ``LOCKED_EXIT`` (75) when another live run holds the folder (then nothing is touched).
    """
    os.makedirs(output_dir, exist_ok=True)
    if prepare(output_dir) is not None:
        return LOCKED_EXIT
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
        group = list(group)
        for cell in group:
            status = cell_status(cell.output_dir)
            if status == FINISHED:
                print(f"Skip {cell.output_dir} (already holds a result)", file=out, flush=True)
                continue
            if status == RUNNING:
                print(f"Skip {cell.output_dir} (running: {holder(cell.output_dir) or 'another run'})", file=out,
                      flush=True)  # fmt: skip
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
            if code == LOCKED_EXIT:  # another run took the folder meanwhile (train.py said which)
                print(f"Skip {cell.output_dir} (running elsewhere)", file=out, flush=True)
            elif code != 0:
                print(f"Stopped: train.py exited with code {code} for {cell.output_dir} (run again to resume)",
                      file=out, flush=True)  # stdout: train.py's own error line stays the last one on stderr
                return code
        if not dry_run and any(cell_status(c.output_dir) == FINISHED for c in group):
            summarize(folder, out=out)
    return 0
