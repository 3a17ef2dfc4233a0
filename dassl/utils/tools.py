"""Small file-system and reproducibility helpers shared by the engine and the datasets."""
from __future__ import annotations

import json
import os
import os.path as osp
import pickle
import random
import re
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from difflib import SequenceMatcher
from typing import Any

import numpy as np
import torch
from PIL import Image

from dassl.errors import UserError

from .crash_points import crash_point

__all__ = [
    "UserError",
    "ImageReadError",
    "mkdir_if_missing",
    "check_isfile",
    "read_json",
    "write_json",
    "atomic_write",
    "remove_stale_temps",
    "write_pickle",
    "read_pickle",
    "set_random_seed",
    "read_image",
    "collect_env_info",
    "listdir_nohidden",
    "get_most_similar_str_to_a_from_b",
    "check_availability",
    "tolist_if_not",
]


class ImageReadError(UserError, OSError):
    """An image that is missing or cannot be decoded; names the file (also when raised in a loader worker)."""


def mkdir_if_missing(dirname: str) -> None:
    """Create ``dirname`` (and parents); safe when several jobs race to create it."""
    if dirname:
        os.makedirs(dirname, exist_ok=True)


def check_isfile(fpath: str) -> bool:
    """Return whether ``fpath`` is a file, warning when it is not (upstream behaviour)."""
    isfile = osp.isfile(fpath)
    if not isfile:
        warnings.warn(f'No file found at "{fpath}"', stacklevel=2)
    return isfile


_UMASK = os.umask(0o022)
os.umask(_UMASK)  # read once: the permissions an ordinary open() would give a new file
TEMP_SUFFIX = ".tmp"
TEMP_NAME = re.compile(r"\..+\.[A-Za-z0-9_]{8}" + re.escape(TEMP_SUFFIX))  # atomic_write's mkstemp names


@contextmanager
def atomic_write(fpath: str, mode: str = "w") -> Iterator[Any]:
    """Open a temp file beside ``fpath`` and rename it into place only when the block succeeds.

    A crash or a parallel job therefore never leaves a half-written file at ``fpath``.
    """
    dirname = osp.dirname(osp.abspath(fpath))
    mkdir_if_missing(dirname)
    fd, tmp = tempfile.mkstemp(dir=dirname, prefix="." + osp.basename(fpath) + ".", suffix=TEMP_SUFFIX)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide results and checkpoints from a shared group
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        crash_point("write:" + osp.basename(fpath))
        os.replace(tmp, fpath)
        _fsync_dir(dirname)
    except BaseException:
        if osp.exists(tmp):
            os.remove(tmp)
        raise


def _fsync_dir(dirname: str) -> None:
    """Make the rename itself durable (a node loss right after it keeps the new file); best effort."""
    try:
        fd = os.open(dirname, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_stale_temps(where: str) -> list[str]:
    """Delete the temp files that writes killed before their rename left behind; returns their paths.

    ``where``: a folder (and its sub-folders) no other process writes into (train.py holds its output
    folder's lock), or a file path, for the temps of that file only (whose writer holds its lock).
    """
    if not osp.isdir(where):
        folder, base = osp.split(where)
        names = os.listdir(folder) if osp.isdir(folder) else []
        stale = [osp.join(folder, n) for n in names if TEMP_NAME.fullmatch(n) and n.startswith(f".{base}.")]
        for path in stale:
            with suppress(FileNotFoundError):
                os.remove(path)
        return stale
    removed = []
    for dirpath, _, files in os.walk(where):
        for name in files:
            if TEMP_NAME.fullmatch(name):
                with suppress(FileNotFoundError):
                    os.remove(osp.join(dirpath, name))
                    removed.append(osp.join(dirpath, name))
    return removed


def read_json(fpath: str) -> Any:
    with open(fpath) as f:
        return json.load(f)


def write_json(obj: Any, fpath: str) -> None:
    """Write ``obj`` as indented json, atomically."""
    with atomic_write(fpath) as f:
        json.dump(obj, f, indent=4, separators=(",", ": "))


def read_pickle(fpath: str) -> Any:
    with open(fpath, "rb") as f:
        return pickle.load(f)


def write_pickle(obj: Any, fpath: str) -> None:
    """Pickle ``obj`` atomically (protocol 4, readable by every supported Python)."""
    with atomic_write(fpath, "wb") as f:
        pickle.dump(obj, f, protocol=4)


def set_random_seed(seed: int) -> None:
    """Seed every generator upstream seeds: Python, NumPy, torch (CPU and CUDA)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def read_image(path: str) -> Image.Image:
    """Open an image as RGB; a missing or unreadable file raises an error naming it."""
    if not osp.exists(path):
        raise ImageReadError(f"Image not found: {path}. Re-download it, or check DATASET.ROOT.")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except Exception as e:  # PIL raises several types for corrupt files
        raise ImageReadError(f"Cannot read image {path}: {e}. Re-download or remove this file.") from e


def collect_env_info() -> str:
    """One block with the versions that matter for reproducing a run."""
    import platform
    import sys

    import torchvision

    lines = [
        f"Python: {sys.version.split()[0]} ({platform.platform()})",
        f"PyTorch: {torch.__version__}",
        f"Torchvision: {torchvision.__version__}",
        f"NumPy: {np.__version__}",
        f"Pillow: {Image.__version__}",
        f"CUDA available: {torch.cuda.is_available()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"GPU: {torch.cuda.get_device_name(0)}")
    return "\n".join(lines)


def listdir_nohidden(path: str, sort: bool = False) -> list[str]:
    """List ``path`` without entries starting with a dot."""
    items = [f for f in os.listdir(path) if not f.startswith(".")]
    if sort:
        items.sort()
    return items


def get_most_similar_str_to_a_from_b(a: str, b: list[str]) -> str:
    """The entry of ``b`` closest to ``a``: the "did you mean" in error messages."""
    return max(b, key=lambda s: SequenceMatcher(None, a, s).ratio(), default="")


def check_availability(requested: str, available: list[str]) -> None:
    """Raise a ValueError naming the choices (and the likeliest typo fix) if ``requested`` is not one."""
    if requested not in available:
        guess = get_most_similar_str_to_a_from_b(requested, available)
        raise ValueError(f"Expected one of {available}, but got [{requested}] (do you mean [{guess}]?)")


def tolist_if_not(x: Any) -> list:
    return x if isinstance(x, list) else [x]
