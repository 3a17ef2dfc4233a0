"""What all datasets share: split files, split building, few-shot caches, base/new classes, errors.

Every step reproduces CoOp's datasets (and so the official MMRL ones, which are copies), including
the order in which Python's ``random`` is consumed: train.py seeds it, then the dataset optionally
shuffles while building a missing split, then samples the few-shot subset when its cache is missing.
A dataset file only declares its folders and how to read its annotations.
"""
from __future__ import annotations

import fcntl
import math
import os
import random
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from dassl.data.datasets import DatasetBase, Datum
from dassl.user_files import read_text
from dassl.utils.tools import (
    UserError,
    listdir_nohidden,
    mkdir_if_missing,
    remove_stale_temps,
    write_json,
    write_pickle,
)

from .data_files import DOC, CacheUnreadable, read_cache, read_classnames, read_split_file

__all__ = [
    "DOC",
    "REBUILT_SUFFIX",
    "DatasetError",
    "EvalOnlyDataset",
    "SplitDataset",
    "Splits",
    "check_images_exist",
    "fewshot_split",
    "find_dataset_dir",
    "load_mat",
    "load_or_create",
    "read_and_split_data",
    "read_class_folders",
    "read_classnames",
    "read_lines",
    "read_split",
    "read_wnid_folders",
    "require",
    "split_trainval",
    "subfolders",
    "subsample_classes",
    "write_split",
]

REBUILT_SUFFIX = ".rebuilt"  # marker beside a split file that was built here, not downloaded
T = TypeVar("T")
Splits = tuple[list[Datum], list[Datum] | None, list[Datum]]


class DatasetError(UserError, ValueError):
    """Data missing or malformed on disk; the message names the path and where the layout is described."""


def require(path: str, what: str, dataset: str, hint: str = "") -> str:
    """Return ``path`` if it exists, else raise a DatasetError naming it."""
    if not os.path.exists(path):
        raise DatasetError(f"{dataset}: {what} not found: {path}. {hint}{' ' if hint else ''}See {DOC}.")
    return path


def find_dataset_dir(cfg: Any, folder: str, dataset: str) -> str:
    """Absolute ``DATASET.ROOT/folder``; a missing root and a missing folder get different messages."""
    root = os.path.abspath(os.path.expanduser(cfg.DATASET.ROOT))
    require(root, "dataset root (DATASET.ROOT, --root)", dataset)
    return require(os.path.join(root, folder), "dataset folder", dataset)


def load_mat(path: str, dataset: str) -> dict[str, Any]:
    """Read a MATLAB label file (squeezed) with scipy, the optional ``data`` extra imported only here."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DatasetError(
            f'{dataset}: reading {os.path.basename(path)} (to rebuild the missing split file) needs scipy: '
            f'pip install -e ".[data]" (or download the published split file, see {DOC}).'
        ) from None
    try:
        return loadmat(path, squeeze_me=True)
    except Exception as e:  # scipy raises ValueError / MatReadError / OSError for corrupt files
        raise DatasetError(f"{dataset}: cannot read {path} as a MATLAB file ({e}). See {DOC}.") from None


def read_lines(path: str) -> list[str]:
    """Stripped non-empty lines of an annotation file."""
    text = read_text(path, f"download the dataset again, see {DOC}")
    return [line.strip() for line in text.splitlines() if line.strip()]


SPLIT_FIX = f"delete it and download the published file again (python -m datasets.prepare, see {DOC})"


def read_split(filepath: str, path_prefix: str, fix: str = SPLIT_FIX) -> Splits:
    """Read a split_zhou json: items are [path relative to ``path_prefix``, label, classname]."""
    print(f"Reading split from {filepath}")
    split = read_split_file(filepath, fix)

    def convert(items: list) -> list[Datum]:
        return [Datum(impath=os.path.join(path_prefix, p), label=int(y), classname=c) for p, y, c in items]

    return convert(split["train"]), convert(split["val"]), convert(split["test"])


def write_split(train: list[Datum], val: list[Datum], test: list[Datum], filepath: str, path_prefix: str) -> None:
    """Write the split_zhou json with paths relative to ``path_prefix`` (atomically)."""

    def extract(items: list[Datum]) -> list[list]:
        return [[os.path.relpath(d.impath, path_prefix), d.label, d.classname] for d in items]

    write_json({"train": extract(train), "val": extract(val), "test": extract(test)}, filepath)
    print(f"Saved split to {filepath}")


@contextmanager
def _exclusive(path: str) -> Iterator[None]:
    """Hold an inter-process lock for producing ``path``.

    The lock file is removed only once ``path`` exists; every holder re-checks ``path`` first, so a
    process that waited on the removed lock file reads the result instead of producing it again.
    """
    lock_path = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.lock")
    mkdir_if_missing(os.path.dirname(path))
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if os.path.exists(path):
                with suppress(FileNotFoundError):
                    os.remove(lock_path)


def load_or_create(path: str, create: Callable[[], T], read: Callable[[str], T], write: Callable[[T, str], None]) -> T:
    """Read the cache at ``path``, or create and write it (atomically, one process at a time).

    Reading consumes no random numbers; creating does, as upstream. Concurrent jobs never see a
    partial file (``write`` renames into place) and only one of them does the work. A cache that
    ``read`` finds unusable (:class:`CacheUnreadable`) is rebuilt the same way, with a warning line.
    """
    if os.path.exists(path):
        try:
            return read(path)
        except CacheUnreadable as e:
            print(f"warning: {e}: rebuilding it")
    with _exclusive(path):
        if os.path.exists(path):  # made by another job meanwhile, or still the unusable file
            try:
                return read(path)
            except CacheUnreadable:
                pass
        remove_stale_temps(path)  # left by a job killed while writing it; none can be writing now
        obj = create()
        write(obj, path)
        return obj


def read_and_split_data(
    image_dir: str,
    p_trn: float = 0.5,
    p_val: float = 0.2,
    ignored: Sequence[str] = (),
    new_cnames: dict[str, str] | None = None,
) -> Splits:
    """Split a folder-per-class tree 50/20/30 per class, as CoOp's DTD does.

    Categories are sorted; images keep ``os.listdir`` order before ``random.shuffle`` (as upstream,
    so a given filesystem and seed reproduce CoOp's split); counts use Python's ``round``.
    """
    categories = sorted(c for c in listdir_nohidden(image_dir) if c not in ignored)
    print(f"Splitting into {p_trn:.0%} train, {p_val:.0%} val, and {1 - p_trn - p_val:.0%} test")
    train: list[Datum] = []
    val: list[Datum] = []
    test: list[Datum] = []
    for label, category in enumerate(categories):
        category_dir = os.path.join(image_dir, category)
        images = [os.path.join(category_dir, im) for im in listdir_nohidden(category_dir)]
        random.shuffle(images)
        n_train = round(len(images) * p_trn)
        n_val = round(len(images) * p_val)
        if min(n_train, n_val, len(images) - n_train - n_val) <= 0:
            raise DatasetError(f"{category_dir}: {len(images)} images are too few to split into train/val/test.")
        classname = (new_cnames or {}).get(category, category)
        parts = (images[:n_train], images[n_train : n_train + n_val], images[n_train + n_val :])
        for dest, ims in zip((train, val, test), parts, strict=True):
            dest.extend(Datum(impath=im, label=label, classname=classname) for im in ims)
    return train, val, test


def split_trainval(trainval: list[Datum], p_val: float = 0.2) -> tuple[list[Datum], list[Datum]]:
    """Hold out ``round(n * p_val)`` shuffled items per label (labels in first-appearance order), as CoOp."""
    print(f"Splitting trainval into {1 - p_val:.0%} train and {p_val:.0%} val")
    tracker: dict[int, list[int]] = defaultdict(list)
    for idx, item in enumerate(trainval):
        tracker[item.label].append(idx)
    train: list[Datum] = []
    val: list[Datum] = []
    for label, idxs in tracker.items():
        n_val = round(len(idxs) * p_val)
        if n_val <= 0:
            raise DatasetError(f"Class {label} has {len(idxs)} trainval images: too few to hold out {p_val:.0%}.")
        random.shuffle(idxs)
        for n, idx in enumerate(idxs):
            (val if n < n_val else train).append(trainval[idx])
    return train, val


def fewshot_split(
    dataset: DatasetBase, train: list[Datum], val: list[Datum] | None, num_shots: int, seed: int, cache_dir: str
) -> tuple[list[Datum], list[Datum] | None]:
    """K items per class from train and min(K, 4) from val, cached in ``shot_{K}-seed_{SEED}.pkl``.

    The cache holds {"train", "val"} ({"train"} when there is no val, i.e. ImageNet) and is written
    before base/new subsampling, so the base and new runs of a seed share it. ``num_shots < 1`` keeps all.
    """
    if num_shots < 1:
        return train, val

    def create() -> dict[str, list[Datum]]:
        data = {"train": dataset.generate_fewshot_dataset(train, num_shots=num_shots)}
        if val is not None:
            data["val"] = dataset.generate_fewshot_dataset(val, num_shots=min(num_shots, 4))
        print(f"Saving few-shot split to {path}")
        return data

    def read(p: str) -> dict[str, list[Datum]]:
        data = read_cache(p, ("train", "val") if val is not None else ("train",))
        print(f"Loading few-shot split from {p}")
        return data

    path = os.path.join(cache_dir, f"shot_{num_shots}-seed_{seed}.pkl")
    data = load_or_create(path, create, read, write_pickle)
    return data["train"], (data["val"] if val is not None else None)


def subsample_classes(*args: list[Datum], subsample: str = "all") -> Sequence[list[Datum]]:
    """Keep the base (first ceil(n/2) sorted train labels) or new (the rest) classes, relabelled from 0."""
    if subsample not in ("all", "base", "new"):
        raise DatasetError(f'DATASET.SUBSAMPLE_CLASSES must be "all", "base" or "new", got "{subsample}".')
    if subsample == "all":
        return args
    labels = sorted({item.label for item in args[0]})
    m = math.ceil(len(labels) / 2)
    selected = labels[:m] if subsample == "base" else labels[m:]
    relabeler = {y: y_new for y_new, y in enumerate(selected)}
    print(f"Subsampling {subsample} classes ({len(selected)} of {len(labels)})")
    return [
        [Datum(impath=d.impath, label=relabeler[d.label], classname=d.classname) for d in data if d.label in relabeler]
        for data in args
    ]


def subfolders(path: str) -> list[str]:
    """Sorted names of the directories in ``path`` (stray files such as README.txt are skipped)."""
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def read_class_folders(image_dir: str, folders: Sequence[str], classnames: Sequence[str]) -> list[Datum]:
    """All images of ``image_dir/folders[i]`` with label i; file order is ``os.listdir``'s, as upstream."""
    items = []
    for label, (folder, classname) in enumerate(zip(folders, classnames, strict=True)):
        class_dir = os.path.join(image_dir, folder)
        items += [Datum(os.path.join(class_dir, im), label, classname=classname) for im in listdir_nohidden(class_dir)]
    return items


def read_wnid_folders(dataset: str, image_dir: str, classnames: dict[str, str], text_file: str) -> list[Datum]:
    """ImageNet-style class folders: label = index in the sorted folder list, name from ``text_file``."""
    folders = subfolders(image_dir)
    unknown = [f for f in folders if f not in classnames]
    if unknown:
        raise DatasetError(f"{dataset}: folders {unknown[:5]} of {image_dir} have no line in {text_file}. See {DOC}.")
    return read_class_folders(image_dir, folders, [classnames[f] for f in folders])


def check_images_exist(dataset: str, dataset_dir: str, *splits: list[Datum] | None, doc: str = DOC) -> None:
    """Fail before training, listing a few examples, when images named by the splits are not on disk."""
    paths = {d.impath for split in splits for d in split or []}
    missing = sorted(p for p in paths if not os.path.exists(p))
    if missing:
        examples = ", ".join(missing[:5])
        raise DatasetError(
            f"{dataset}: {len(missing)} of {len(paths)} images are missing on disk, e.g. {examples}: "
            f"check that the images are extracted under {dataset_dir} as {doc} shows. The caches "
            "(split_fewshot/*.pkl, ImageNet's preprocessed.pkl) store absolute paths: delete them if the data moved."
        )


class SplitDataset(DatasetBase):
    """A CoOp dataset with a train/val/test split: split json (or built), few-shot, base/new.

    Subclasses declare ``dataset_dir`` (folder under DATASET.ROOT), ``image_folder`` (what split paths
    are relative to; "" for the dataset folder), ``split_file`` ("" = no json, ``build_split`` runs
    every time) and override ``build_split`` when the split can be made from the raw download.
    """

    image_folder = "images"
    split_file = ""

    def __init__(self, cfg: Any) -> None:
        self.dataset_dir = find_dataset_dir(cfg, self.dataset_dir, self.name)
        image_dir = os.path.normpath(os.path.join(self.dataset_dir, self.image_folder))
        self.image_dir = require(image_dir, "image folder", self.name)
        self.split_path = os.path.join(self.dataset_dir, self.split_file) if self.split_file else ""
        self.split_fewshot_dir = os.path.join(self.dataset_dir, "split_fewshot")
        self.seed = cfg.SEED

        train, val, test = self.load_splits()
        train, val = fewshot_split(self, train, val, cfg.DATASET.NUM_SHOTS, cfg.SEED, self.split_fewshot_dir)
        val = test if val is None else val  # no val split (ImageNet): validate on the test set, as upstream
        subsample = cfg.DATASET.get("SUBSAMPLE_CLASSES", "all")
        train, val, test = subsample_classes(train, val, test, subsample=subsample)
        check_images_exist(self.name, self.dataset_dir, train, val, test)
        super().__init__(train_x=train, val=val, test=test)

    @property
    def name(self) -> str:
        return type(self).__name__

    def need(self, path: str, what: str) -> str:
        """``require`` for inputs of ``build_split``, saying that the split file would spare them."""
        hint = ""
        if self.split_file and not os.path.exists(self.split_path):
            hint = f"It is needed to build {self.split_file}, which is missing too; downloading that file is simpler."
        return require(path, what, self.name, hint)

    # Set on every instance: ``split_rebuilt`` is True when the split file in use was built here (now or
    # by an earlier run, see REBUILT_SUFFIX) instead of being the published one; ``split_source`` then
    # says from what. The run's metrics.json reports both (dassl/evaluation/metrics_file.py).
    split_rebuilt: bool = False
    split_source: str | None = None
    rebuild_inputs = "the raw annotations"

    def load_splits(self) -> Splits:
        """The split json if present, else ``build_split`` written to it (seed-dependent, as upstream).

        Upstream silently writes a rebuilt split under the official name; here a marker file beside it
        (``<split file>.rebuilt``) keeps saying so in every later run, and a warning line is printed.
        """
        if not self.split_path:
            return self.build_split()
        built = []

        def create() -> Splits:
            splits = self.build_split()
            built.append(True)
            return splits

        def write(splits: Splits, path: str) -> None:
            write_split(*splits, path, self.image_dir)
            write_json({"rebuilt_from": self.rebuild_inputs}, path + REBUILT_SUFFIX)

        marker = self.split_path + REBUILT_SUFFIX
        fix = (f"delete it and {os.path.basename(marker)}: the next run rebuilds it" if os.path.exists(marker)
               else SPLIT_FIX)  # fmt: skip
        splits = load_or_create(self.split_path, create, lambda p: read_split(p, self.image_dir, fix), write)
        if built or os.path.exists(marker):
            self.split_rebuilt = True
            self.split_source = (
                f"{self.split_file} rebuilt here from {self.rebuild_inputs} by CoOp's rule "
                f"(seed {self.seed}{'' if built else ', an earlier run'}), not the published file"
            )
            print(
                f"WARNING: {self.name}: using a REBUILT split ({self.split_source}); numbers are not comparable "
                f"with published ones. Download the published {self.split_file} (python -m datasets.prepare "
                f"--root DATA {self.dataset_name_for_prepare}) and delete split_fewshot/ to use it."
            )
        return splits

    @property
    def dataset_name_for_prepare(self) -> str:
        return os.path.basename(self.dataset_dir)

    def build_split(self) -> Splits:
        """Make the split from the raw download; by default the published split file is required."""
        raise DatasetError(
            f"{self.name}: split file not found: {self.split_path}. Download {self.split_file} into "
            f"{self.dataset_dir} (this dataset's split cannot be rebuilt here). See {DOC}."
        )


class EvalOnlyDataset(DatasetBase):
    """An ImageNet variant used for testing only: one folder per class, names from ``classnames.txt``.

    The class-name file sits in the variant's own folder (a copy of ImageNet's). No few-shot and no
    base/new split, as upstream; ``read_data`` lists the images (default: sorted wnid folders).
    """

    image_folder = "images"

    def __init__(self, cfg: Any) -> None:
        name = type(self).__name__
        self.dataset_dir = find_dataset_dir(cfg, self.dataset_dir, name)
        self.image_dir = require(os.path.join(self.dataset_dir, self.image_folder), "image folder", name)
        self.classnames_file = os.path.join(self.dataset_dir, "classnames.txt")
        hint = "Copy imagenet/classnames.txt there."
        classnames = read_classnames(require(self.classnames_file, "class-name file", name, hint))
        data = self.read_data(classnames)
        super().__init__(train_x=data, test=data)

    def read_data(self, classnames: dict[str, str]) -> list[Datum]:
        return read_wnid_folders(type(self).__name__, self.image_dir, classnames, self.classnames_file)
