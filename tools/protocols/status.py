"""Where a cell of a protocol (one seed folder) stands; the one answer the scripts, the grid and the report share."""

from __future__ import annotations

import os
import os.path as osp

from .results import read_result

FINISHED = "finished"  # it holds a test result (metrics.json, else a result block in log.txt)
INCOMPLETE = "incomplete"  # it was started and holds no test result (killed, failed, or between epochs)
NOT_STARTED = "not started"  # no folder, or an empty one


def cell_status(path: str) -> str:
    """``FINISHED``, ``INCOMPLETE`` or ``NOT_STARTED`` for the seed folder ``path``.

    A finished cell is skipped by every runner; an incomplete one is run again (train.py resumes from its
    last checkpoint).
    """
    if not osp.isdir(path) or not os.listdir(path):
        return NOT_STARTED
    return FINISHED if read_result(path) is not None else INCOMPLETE
