"""Where a cell of a protocol (one seed folder) stands; the one answer the scripts, the grid and the report share."""

from __future__ import annotations

import os
import os.path as osp

from tools.run_lock import holder

from .results import read_result

RUNNING = "running"  # a live run holds the folder (tools/run_lock.py): leave it alone
FINISHED = "finished"  # it holds a test result (metrics.json, else a result block in log.txt)
INCOMPLETE = "incomplete"  # it was started and holds no test result (killed, failed, or between epochs)
NOT_STARTED = "not started"  # no folder, or an empty one


def cell_status(path: str) -> str:
    """``RUNNING``, ``FINISHED``, ``INCOMPLETE`` or ``NOT_STARTED`` for the seed folder ``path``.

    Every runner leaves a running cell alone and skips a finished one; an incomplete one is run again
    (train.py resumes from its last checkpoint). Not for the process that holds the folder itself.
    """
    if holder(path) is not None:
        return RUNNING
    if not osp.isdir(path) or not os.listdir(path):
        return NOT_STARTED
    return FINISHED if read_result(path) is not None else INCOMPLETE
