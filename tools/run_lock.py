"""One live run per output folder: an OS file lock on ``<folder>/.run.lock``, held for the run's lifetime.

train.py takes the lock before it writes anything into its ``--output-dir``; a second run on that folder
stops at once, naming the holder (host, PID, start time and SLURM job, which the holder writes into the
lock file). The lock is ``flock(2)`` on an open file: the kernel drops it when the process ends in any
way (``kill -9`` included), so a stale lock cannot outlive its process; the file itself stays behind
and means nothing once unlocked. docs/reliability.md says what holds on NFS and other shared file systems.

The grid and the protocol scripts ask :func:`holder` (or ``python -m tools.run_lock status DIR``) to
tell a running cell from a failed one, and :func:`prepare` moves an unfinished log aside under the
lock, so a live run's log is never touched. Standard library only: the shell scripts call it cheaply.

    python -m tools.run_lock status DIR    # exit 0: free; 75 and the holder on stdout: in use
    python -m tools.run_lock prepare DIR   # free: move DIR/log.txt aside, exit 0; in use: 75 and the holder
"""

from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import os.path as osp
import socket
import sys
import time
from dataclasses import dataclass

__all__ = ["LOCK_FILE", "LOCKED_EXIT", "FolderLocked", "Holder", "RunLock", "holder", "prepare"]

LOCK_FILE = ".run.lock"
LOCKED_EXIT = 75  # sysexits' EX_TEMPFAIL: "try again later", not a failure of the run
RETRY_S = 0.5  # a status probe holds a shared lock for microseconds: retry that long before giving up


@dataclass(frozen=True)
class Holder:
    """Who holds a folder: what the holding process wrote into the lock file (empty while it starts)."""

    host: str = ""
    pid: int = 0
    started: str = ""
    slurm_job: str = ""

    def __str__(self) -> str:
        if not self.pid:
            return "a run that is starting (its details are not written yet)"
        job = f", SLURM job {self.slurm_job}" if self.slurm_job else ""
        return f"host {self.host}, PID {self.pid}, started {self.started}{job}"


class FolderLocked(Exception):
    """The folder is held by another live run."""

    def __init__(self, folder: str, by: Holder) -> None:
        self.folder, self.holder = folder, by
        super().__init__(f"{folder} is in use by another run ({by}): wait for it to end, or use another --output-dir")


def _read_holder(fd: int) -> Holder:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return Holder(str(data.get("host", "")), int(data.get("pid", 0)), str(data.get("started", "")),
                      str(data.get("slurm_job", "")))  # fmt: skip
    except (OSError, ValueError, TypeError, AttributeError):
        return Holder()


# The locks this process holds: real path of the lock file -> [descriptor, number of RunLocks sharing it].
_held: dict[str, list[int]] = {}


def _forget_in_child() -> None:
    """In a forked child (a data loader worker): close the inherited descriptors. The parent keeps its locks,
    and they end with the parent itself, not seconds later with its orphaned workers after a kill -9."""
    for fd, _ in _held.values():
        os.close(fd)
    _held.clear()


os.register_at_fork(after_in_child=_forget_in_child)


class RunLock:
    """The exclusive lock of one output folder, held until :meth:`release` or the end of the process.

    Re-entrant within a process (train.main called twice on one folder, as notebooks and the demo do).
    The lock file is opened once per process: on NFS, where ``flock`` is emulated with POSIX record locks,
    closing any descriptor of the file in the holding process would drop the lock.
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.path = osp.join(folder, LOCK_FILE)
        self.key: str | None = None

    def acquire(self) -> RunLock:
        """Take the lock (creating the folder) or raise :class:`FolderLocked` naming the holder.

        A file system without locks (some NFS and Lustre mounts) gets a warning, and the run goes on unlocked.
        """
        os.makedirs(self.folder, exist_ok=True)
        key = osp.realpath(self.path)
        if key in _held:
            _held[key][1] += 1
            self.key = key
            return self
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + RETRY_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                by = _read_holder(fd)
                os.close(fd)
                raise FolderLocked(self.folder, by) from None
            except OSError as e:  # ENOLCK, EOPNOTSUPP, ENOSYS: no locks on this file system
                print(f"warning: cannot lock {self.path} ({e.strerror}): this file system has no file locks, "
                      "so nothing stops a second run in this folder", file=sys.stderr)  # fmt: skip
                os.close(fd)
                return self
        _held[key], self.key = [fd, 1], key
        info = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "slurm_job": os.environ.get("SLURM_JOB_ID", ""),
        }
        os.ftruncate(fd, 0)  # in place: replacing the file would lose the lock
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        return self

    def release(self) -> None:
        key, self.key = self.key, None
        entry = _held.get(key) if key else None
        if entry is not None:
            entry[1] -= 1
            if entry[1] == 0:
                os.close(entry[0])
                del _held[key]

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder(folder: str) -> Holder | None:
    """The live run holding ``folder`` (another process), or None when it is free or has never been run.

    Not for the holding process itself: on NFS, the probe's closing its descriptor would drop the lock.
    """
    try:
        fd = os.open(osp.join(folder, LOCK_FILE), os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: probes never block each other
    except BlockingIOError:
        return _read_holder(fd)
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        return None
    finally:
        os.close(fd)
    return None


def prepare(folder: str) -> Holder | None:
    """Before a rerun of an unfinished cell: if free, move its ``log.txt`` aside and return None.

    Done under the lock, so the log of a run that starts meanwhile is never moved: train.py opens its
    log only while holding the lock. In use: nothing is touched and the holder is returned.
    """
    if not osp.isdir(folder):
        return None
    try:
        lock = RunLock(folder).acquire()
    except FolderLocked as e:
        return e.holder
    try:
        log = osp.join(folder, "log.txt")
        if osp.isfile(log):
            os.replace(log, f"{log}.incomplete-{time.strftime('%Y%m%d-%H%M%S')}")
    finally:
        lock.release()
    return None


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("status", "prepare"):
        print("usage: python -m tools.run_lock status|prepare DIR", file=sys.stderr)
        return 2
    command, folder = argv
    by = holder(folder) if command == "status" else prepare(folder)
    if by is None:
        return 0
    print(by)
    return LOCKED_EXIT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
