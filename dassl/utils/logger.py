"""Tee ``print`` output to a log file: parse_test_res.py reads results back from ``log.txt``."""
from __future__ import annotations

import os
import os.path as osp
import sys
import time
from typing import Any, TextIO

from .tools import mkdir_if_missing

__all__ = ["Logger", "setup_logger"]


class Logger:
    """A stdout stand-in writing to the console and to ``fpath``; flushes reach the disk."""

    def __init__(self, fpath: str | None = None, console: TextIO | None = None) -> None:
        self.console = console if console is not None else sys.stdout
        self.file = None
        if fpath is not None:
            mkdir_if_missing(osp.dirname(fpath))
            self.file = open(fpath, "w")

    def write(self, msg: str) -> None:
        self.console.write(msg)
        if self.file is not None:
            self.file.write(msg)

    def flush(self) -> None:
        self.console.flush()
        if self.file is not None:
            self.file.flush()
            os.fsync(self.file.fileno())

    def close(self) -> None:
        """Close the log file only; the console belongs to the interpreter."""
        if self.file is not None:
            self.file.close()
            self.file = None

    def __getattr__(self, name: str) -> Any:
        # isatty(), encoding, ... as the console reports them
        if name == "console":  # not yet set (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.console, name)


def setup_logger(output: str | None = None) -> None:
    """Send stdout also to ``output`` (a .txt/.log path, or a directory -> ``<dir>/log.txt``).

    An existing log is never overwritten: the new one gets a ``-%Y-%m-%d-%H-%M-%S`` suffix.
    """
    if output is None:
        return
    fpath = output if output.endswith((".txt", ".log")) else osp.join(output, "log.txt")
    if osp.exists(fpath):
        fpath += time.strftime("-%Y-%m-%d-%H-%M-%S")
    console = sys.stdout
    if isinstance(console, Logger):  # a second call redirects instead of writing to both files
        console.close()
        console = console.console
    sys.stdout = Logger(fpath, console)
