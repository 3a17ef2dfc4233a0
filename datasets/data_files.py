"""The files of a dataset folder, read and checked: split files, class-name files and the pickled caches.

A split file or class-name file that cannot be used is a :class:`~dassl.user_files.FileError` naming it,
its line where there is one, and the fix. A cache (``split_fewshot/shot_K-seed_S.pkl``, ImageNet's
``preprocessed.pkl``) that cannot be used is a :class:`CacheUnreadable`, which the caller answers by
rebuilding the cache: it is ours, made from the data, and rebuilding it draws the same random numbers
as building it the first time. Caches are unpickled with an allow-list (the data record only), so a
foreign pickle is refused instead of run.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from dassl.data.datasets import Datum
from dassl.user_files import FileError, describe, read_bytes, read_json, read_text, schema_error

__all__ = [
    "CacheUnreadable",
    "read_cache",
    "read_classnames",
    "read_name_map",
    "read_split_file",
]

DOC = "README.md#data"
CLASSNAMES_FIX = f"download ImageNet's classnames.txt again (python -m datasets.prepare, see {DOC})"
SPLIT_KEYS = ("train", "val", "test")
ITEM = "[image path relative to the image folder, label, class name]"


def read_split_file(path: str, fix: str) -> dict[str, list[list]]:
    """A split_zhou json: {"train", "val", "test"} lists of [image path, label, class name] items."""
    data = read_json(path, fix)
    if not isinstance(data, dict) or any(k not in data for k in SPLIT_KEYS):
        expected = 'a split file {"train": [...], "val": [...], "test": [...]}'
        raise schema_error(path, expected, "it holds " + describe(data), fix)
    for key in SPLIT_KEYS:
        items = data[key]
        if not isinstance(items, list):
            raise schema_error(path, "a split file", f'"{key}" is {describe(items)}', fix)
        for i, item in enumerate(items):
            if not (
                isinstance(item, list)
                and len(item) == 3
                and isinstance(item[0], str)
                and isinstance(item[1], int)
                and not isinstance(item[1], bool)
                and item[1] >= 0
                and isinstance(item[2], str)
            ):
                raise schema_error(path, "a split file", f'"{key}" item {i} is {str(item)[:80]}, expected {ITEM}', fix)
    return data


def read_classnames(path: str, fix: str = CLASSNAMES_FIX) -> dict[str, str]:
    """``<folder> <class name>`` per line (ImageNet's classnames.txt), in file order; blank lines skipped."""
    names: dict[str, str] = {}
    first_line: dict[str, int] = {}
    for number, raw in enumerate(read_text(path, fix).splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        folder, _, name = line.partition(" ")
        if not name.strip():
            raise FileError(path, f"line {number} is {line!r}, expected '<folder> <class name>'", fix, line=number)
        if folder in names:
            raise FileError(path, f"folder {folder} is listed twice (lines {first_line[folder]} and {number})", fix,
                            line=number)  # fmt: skip
        names[folder], first_line[folder] = name, number
    if not names:
        raise FileError(path, "is empty", fix)
    return names


def read_name_map(path: str, fix: str) -> dict[str, str]:
    """A json {label: class name} (Oxford Flowers' cat_to_name.json)."""
    data = read_json(path, fix)
    if not isinstance(data, dict) or not data or not all(isinstance(v, str) for v in data.values()):
        raise schema_error(path, "a mapping of labels to class names", "it holds " + describe(data), fix)
    return {str(k): v for k, v in data.items()}


class CacheUnreadable(Exception):
    """A cache file that cannot be used as it is; the caller rebuilds it."""

    def __init__(self, path: str, reason: str) -> None:
        self.path, self.reason = path, reason
        super().__init__(f"{path} cannot be used ({reason})")


class _DataUnpickler(pickle.Unpickler):
    """Only the data record: a cache holds dicts and lists of ``Datum`` (ours or upstream Dassl's)."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("dassl.data.datasets.base_dataset", "Datum"):
            return Datum
        raise pickle.UnpicklingError(f"it pickles {module}.{name}, not data records")


def read_cache(path: str, keys: tuple[str, ...]) -> dict[str, list[Datum]]:
    """A cache {key: [Datum, ...]} holding at least ``keys``; anything else is :class:`CacheUnreadable`."""
    try:
        data = _DataUnpickler(io.BytesIO(read_bytes(path, "delete it"))).load()
    except FileError as e:
        raise CacheUnreadable(path, e.problem) from None
    except Exception as e:  # a truncated or foreign pickle fails in many ways (EOFError, UnpicklingError, ...)
        raise CacheUnreadable(path, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__) from None
    if not isinstance(data, dict) or any(k not in data for k in keys):
        raise CacheUnreadable(path, f"expected a mapping with {list(keys)}, it holds {describe(data)}")
    for key, items in data.items():
        if not isinstance(items, list) or not all(
            isinstance(d, Datum) and isinstance(getattr(d, "_impath", None), str) for d in items
        ):
            raise CacheUnreadable(path, f'"{key}" is not a list of data records')
    return data
