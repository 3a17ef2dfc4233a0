"""Test-only fault injection: kill the run with SIGKILL at a named point, to prove that a rerun recovers.

``DASSL_CRASH_AT=<point>[@<n>]`` kills the process the ``n``-th time (default: the first) it reaches
``crash_point(<point>)``. Points: ``train_batch`` (a training step), ``test_batch`` (an evaluation
batch), ``load_item`` (a data loader reading an image: in a worker, the worker kills the main process
first, as a lost node would) and ``write:<file name>`` (inside an atomic write, after the temp file is
complete and before it is renamed into place). Unset, a call is one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

__all__ = ["CRASH_ENV", "crash_point"]

CRASH_ENV = "DASSL_CRASH_AT"
_reached: dict[str, int] = {}


def crash_point(name: str) -> None:
    """SIGKILL the run here if ``DASSL_CRASH_AT`` names this point and this is the n-th time it is reached."""
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    point, _, nth = spec.partition("@")
    if point != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] != int(nth or 1):
        return
    import torch.utils.data

    if torch.utils.data.get_worker_info() is not None:  # a loader worker: the run is its parent
        os.kill(os.getppid(), signal.SIGKILL)
    os.kill(os.getpid(), signal.SIGKILL)
