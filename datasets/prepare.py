"""Download, verify, extract and lay out the datasets; ``--check`` reports what a data tree lacks.

    python -m datasets.prepare --root DATA [NAME ...]            # CoOp's 15 when no NAME
    python -m datasets.prepare --root DATA dg                    # MetaPrompt's 4 DG datasets (DomainNet: 18 GB)
    python -m datasets.prepare --root DATA --check [NAME ...]    # exit status 1 when anything is wrong
    python -m datasets.prepare --root DATA --mirror URL dtd      # every file as URL/<published name>

NAME is a folder (``oxford_pets``), a DATASET.NAME (``OxfordPets``), a config name (``caltech101``) or
a group (``coop``: the 15, ``dg``: PACS, OfficeHome, VLCS, DomainNet).
Sources, checksums and layouts are declared in ``datasets/sources.py``; this module is the machinery.
Every step is idempotent: files already in place (their extracted folders present, or a verified
download) are skipped, so an interrupted run is simply run again (a ``.part`` download resumes).
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import pickle
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dassl.utils.tools import read_json

from .dg import DGDataset
from .download import DownloadError, extract, extract_member, gdrive_download, http_download, removing, verify
from .sources import DATASET_SPECS, GROUPS, DatasetSpec, FileSpec, Source, find_spec
from .utils import REBUILT_SUFFIX, DatasetError, read_lines

__all__ = ["Result", "prepare", "check", "main", "resolve"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")
READY, DOWNLOADED, MANUAL, FAILED = "ready", "downloaded", "manual step needed", "failed"


@dataclass
class Result:
    """The outcome for one dataset: a status of the summary table and the lines that explain it."""

    name: str
    status: str = READY
    details: list[str] = field(default_factory=list)


@dataclass
class Options:
    root: str
    mirror: str = ""
    checksum: bool = True
    keep_archives: bool = False
    quiet: bool = False


def resolve(names: Sequence[str]) -> list[DatasetSpec]:
    """Specs for the given names (CoOp's 15 when empty); an unknown name is a user error, raised before any work."""
    if not names:
        names = ["coop"]
    specs, unknown = [], []
    for name in names:
        if name.lower() in GROUPS:
            specs += [s for s in DATASET_SPECS if s.group == name.lower()]
            continue
        spec = find_spec(name)
        (specs.append(spec) if spec else unknown.append(name))
    if unknown:
        known = ", ".join([s.folder for s in DATASET_SPECS] + list(GROUPS))
        raise DatasetError(f"unknown dataset {', '.join(unknown)}: use a folder, DATASET.NAME or group ({known})")
    return list(dict.fromkeys(specs))


def log(msg: str) -> None:
    print(msg, flush=True)


# ------------------------------------------------------------------------------------------ fetching


def _sources(f: FileSpec, opts: Options) -> list[Source]:
    if opts.mirror:
        return [Source(f"{opts.mirror.rstrip('/')}/{f.name}", note="mirror")]
    return list(f.sources)


def _fetch_source(src: Source, f: FileSpec, dest: str, opts: Options) -> None:
    """Bring ``f`` to ``dest`` from one source, verified; raise DownloadError otherwise."""
    md5, sha256, size = (f.md5, f.sha256, f.size) if opts.checksum else ("", "", 0)
    if src.member:  # the source serves an archive that contains the file
        outer = os.path.join(os.path.dirname(dest), ".downloads", src.name or os.path.basename(src.url))
        os.makedirs(os.path.dirname(outer), exist_ok=True)
        _download(src, outer, opts)
        try:
            verify(outer + ".part", md5=src.md5 if opts.checksum else "")
        except DownloadError:
            os.remove(outer + ".part")
            raise
        with removing(outer + ".part"):
            extract_member(outer + ".part", src.member, dest)
    else:
        _download(src, dest, opts)
    try:
        verify(dest + ".part", md5=md5, sha256=sha256, size=size)
    except DownloadError:
        os.remove(dest + ".part")  # a wrong file is never resumed
        raise
    os.replace(dest + ".part", dest)


def _download(src: Source, dest: str, opts: Options) -> None:
    if src.gdrive:
        gdrive_download(src.gdrive, dest, quiet=opts.quiet)
    else:
        http_download(src.url, dest, quiet=opts.quiet)


def fetch_file(f: FileSpec, dataset_dir: str, opts: Options, res: Result) -> tuple[str, Source | None] | None:
    """The verified file in ``dataset_dir`` (already there, or fetched from the first source that works).

    Returns (path, source used or None when it was already there), or None after recording a manual
    step or a failure in ``res``.
    """
    dest = os.path.join(dataset_dir, f.name)
    if os.path.exists(dest):
        try:
            if opts.checksum:
                verify(dest, md5=f.md5, sha256=f.sha256, size=f.size)
            return dest, None
        except DownloadError as e:
            log(f"  {f.name}: the file present is not the published one ({e}); fetching it again")
            os.remove(dest)
    errors = []
    for src in _sources(f, opts):
        where = src.url or f"Google Drive id {src.gdrive}"
        log(f"  {f.name} <- {where}" + (f" ({src.note})" if src.note else ""))
        try:
            _fetch_source(src, f, dest, opts)
            if not f.checksum_known:
                log(f"  {f.name}: no published checksum known; accepted as complete")
            return dest, src
        except DownloadError as e:
            log(f"  {f.name}: failed from {where}: {e}")
            errors.append(f"{where}: {e}")
    if f.manual:
        res.details.append(f"manual step: {f.name}: {f.manual.format(dest=dest)}; then run this command again")
        _worse(res, MANUAL)
    else:
        tried = "; ".join(errors) or "no source"
        res.details.append(f"{f.name}: every source failed ({tried}); use --mirror URL or put it at {dest}")
        _worse(res, FAILED)
    return None


def _worse(res: Result, status: str) -> None:
    order = [READY, DOWNLOADED, MANUAL, FAILED]
    if order.index(status) > order.index(res.status):
        res.status = status


def _move_into(src_dir: str, dest_dir: str) -> None:
    """Move the entries of ``src_dir`` into ``dest_dir``, merging folders that exist on both sides."""
    os.makedirs(dest_dir, exist_ok=True)
    for entry in os.listdir(src_dir):
        src, dest = os.path.join(src_dir, entry), os.path.join(dest_dir, entry)
        if os.path.isdir(src) and os.path.isdir(dest):
            _move_into(src, dest)
        else:
            if os.path.isdir(dest):
                shutil.rmtree(dest)
            os.replace(src, dest)


def unpack(archive: str, dataset_dir: str, take: str, dest: str) -> None:
    """Extract into a temporary folder beside the data, then move ``take``'s contents to ``dest``.

    A half-extracted archive therefore never looks like a finished dataset.
    """
    tmp = os.path.join(dataset_dir, f".extract-{os.path.basename(archive)}")
    if os.path.exists(tmp):
        shutil.rmtree(tmp)
    log(f"  extracting {os.path.basename(archive)}")
    with removing(tmp):
        extract(archive, tmp)
        inner = os.path.join(tmp, take) if take else tmp
        if not os.path.isdir(inner):
            found = sorted(os.listdir(tmp))[:5]
            raise DownloadError(f"{os.path.basename(archive)} has no {take}/ (top level: {found})")
        _move_into(inner, os.path.join(dataset_dir, dest) if dest else dataset_dir)


def place(f: FileSpec, dataset_dir: str, opts: Options, res: Result) -> bool:
    """Fetch (and extract) one file unless what it provides is already there; True when something was done."""
    if f.provides and all(os.path.exists(os.path.join(dataset_dir, p)) for p in f.provides):
        return False
    got = fetch_file(f, dataset_dir, opts, res)
    if got is None:
        return False
    path, src = got
    if f.extract:
        take = src.take if src is not None and src.take is not None else f.take
        dest = src.dest if src is not None and src.dest is not None else f.dest
        try:
            unpack(path, dataset_dir, take, dest)
        except DownloadError as e:
            res.details.append(f"{f.name}: {e}")
            _worse(res, FAILED)
            return False
        if src is not None and not opts.keep_archives:
            os.remove(path)  # ours to delete; a file the user put there is kept
    elif f.dest:
        target = os.path.join(dataset_dir, f.dest)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(path, target)
    return True


# --------------------------------------------------------------------------------------- conversions


def _images_in(path: str) -> list[str]:
    return [e.name for e in os.scandir(path) if e.is_file() and e.name.lower().endswith(IMAGE_EXTS)]


def convert_imagenet_train_tars(spec: DatasetSpec, ddir: str, opts: Options, res: Result) -> bool:
    """ILSVRC2012_img_train.tar holds one tar per class: unpack each into its wnid folder."""
    train = os.path.join(ddir, "images", "train")
    tars = sorted(glob.glob(os.path.join(train, "n*.tar")))
    for t in tars:
        wnid = os.path.basename(t)[:-4]
        unpack(t, train, "", wnid)
        os.remove(t)
    return bool(tars)


def _val_labels_from_kaggle(ddir: str) -> dict[str, str] | None:
    path = os.path.join(ddir, "LOC_val_solution.csv")
    if not os.path.exists(path):
        return None
    with open(path, newline="") as f:
        return {row["ImageId"] + ".JPEG": row["PredictionString"].split()[0] for row in csv.DictReader(f)}


def _val_labels_from_devkit(devkit: str) -> dict[str, str]:
    """The devkit's ground truth (ILSVRC2012 ids, one line per val image in name order) and meta.mat (id -> wnid)."""
    import tarfile

    from .utils import load_mat

    with tarfile.open(devkit) as tar:
        names = {m.name.split("/", 1)[-1]: m for m in tar.getmembers()}
        truth = tar.extractfile(names["data/ILSVRC2012_validation_ground_truth.txt"])
        meta = tar.extractfile(names["data/meta.mat"])
        if truth is None or meta is None:
            raise DownloadError("devkit lacks data/ILSVRC2012_validation_ground_truth.txt or data/meta.mat")
        ids = [int(line) for line in truth.read().decode().split()]
        tmp = devkit + ".meta.mat"
        with open(tmp, "wb") as out:
            out.write(meta.read())
    with removing(tmp):
        synsets = load_mat(tmp, "ImageNet")["synsets"]
    id_to_wnid = {int(i): str(w) for i, w in zip(synsets["ILSVRC2012_ID"], synsets["WNID"], strict=True)}
    return {f"ILSVRC2012_val_{n:08d}.JPEG": id_to_wnid[i] for n, i in enumerate(ids, start=1)}


def convert_imagenet_sort_val(spec: DatasetSpec, ddir: str, opts: Options, res: Result) -> bool:
    """Move loose val images into wnid folders, from Kaggle's LOC_val_solution.csv or the devkit labels."""
    val = os.path.join(ddir, "images", "val")
    if not os.path.isdir(val):
        return False
    loose = _images_in(val)
    if not loose:
        return False
    labels = _val_labels_from_kaggle(ddir)
    if labels is None:
        devkit = next(f for f in spec.files if f.name.startswith("ILSVRC2012_devkit"))
        got = fetch_file(devkit, ddir, opts, res)
        if got is None:
            res.details.append(f"images/val holds {len(loose)} images not sorted into class folders (needs the devkit)")
            return False
        labels = _val_labels_from_devkit(got[0])
    unknown = [n for n in loose if n not in labels]
    if unknown:
        res.details.append(f"images/val: {len(unknown)} images have no label (e.g. {unknown[0]}); left in place")
        _worse(res, FAILED)
    for name in loose:
        if name in labels:
            os.makedirs(os.path.join(val, labels[name]), exist_ok=True)
            os.replace(os.path.join(val, name), os.path.join(val, labels[name], name))
    log(f"  sorted {len(loose) - len(unknown)} val images into {len(set(labels.values()))} class folders")
    return True


def convert_flatten_cars(spec: DatasetSpec, ddir: str, opts: Options, res: Result) -> bool:
    """Kaggle's copy nests cars_train/cars_train and cars_test/cars_test: lift the inner folder."""
    done = False
    for name in ("cars_train", "cars_test"):
        nested = os.path.join(ddir, name, name)
        if os.path.isdir(nested):
            _move_into(nested, os.path.join(ddir, name))
            os.rmdir(nested)
            done = True
    return done


def convert_flatten_partitions(spec: DatasetSpec, ddir: str, opts: Options, res: Result) -> bool:
    """Partitions.zip may unpack into Partitions/; the loader reads ClassName.txt etc. in sun397/."""
    nested = os.path.join(ddir, "Partitions")
    if os.path.isdir(nested) and not os.path.exists(os.path.join(ddir, "ClassName.txt")):
        _move_into(nested, ddir)
        os.rmdir(nested)
        return True
    return False


def convert_copy_classnames(spec: DatasetSpec, ddir: str, opts: Options, res: Result) -> bool:
    """The ImageNet variants read ImageNet's classnames.txt from their own folder: copy it there."""
    dest = os.path.join(ddir, "classnames.txt")
    if os.path.exists(dest):
        return False
    imagenet = os.path.join(opts.root, "imagenet")
    os.makedirs(imagenet, exist_ok=True)
    classnames = next(f for f in DATASET_SPECS[0].files if f.name == "classnames.txt")
    if fetch_file(classnames, imagenet, opts, res) is None:
        return False
    tmp = dest + ".part"
    shutil.copyfile(os.path.join(imagenet, "classnames.txt"), tmp)
    os.replace(tmp, dest)
    log(f"  copied imagenet/classnames.txt into {spec.folder}/")
    return True


CONVERSIONS: dict[str, Callable[[DatasetSpec, str, Options, Result], bool]] = {
    "imagenet_train_tars": convert_imagenet_train_tars,
    "imagenet_sort_val": convert_imagenet_sort_val,
    "flatten_cars": convert_flatten_cars,
    "flatten_partitions": convert_flatten_partitions,
    "copy_classnames": convert_copy_classnames,
}


def replace_rebuilt_split(spec: DatasetSpec, ddir: str, opts: Options, res: Result) -> bool:
    """A split file built here (marker beside it) gives way to the published one when that can be fetched.

    The rebuilt file stays when the fetch fails; the few-shot caches drawn from it are deleted on success.
    """
    log(f"  {spec.split_file} was rebuilt here, not published: fetching the published one")
    f = next(f for f in spec.files if f.name == spec.split_file)
    tmp = os.path.join(ddir, ".published-split")
    os.makedirs(tmp, exist_ok=True)
    with removing(tmp):
        probe = Result(spec.name)
        if fetch_file(f, tmp, opts, probe) is None:
            res.details.append(f"{spec.split_file} is still the one rebuilt here (the published file: {probe.details})")
            return False
        os.replace(os.path.join(tmp, spec.split_file), os.path.join(ddir, spec.split_file))
    os.remove(os.path.join(ddir, spec.split_file + REBUILT_SUFFIX))
    shutil.rmtree(os.path.join(ddir, "split_fewshot"), ignore_errors=True)
    log(f"  replaced the rebuilt {spec.split_file} by the published one; deleted split_fewshot/ drawn from it")
    return True


def prepare_one(spec: DatasetSpec, opts: Options) -> Result:
    """Every file of one dataset, then its conversions; the rebuild-only files only when the split is missing."""
    res = Result(spec.name)
    ddir = os.path.join(opts.root, spec.folder)
    os.makedirs(ddir, exist_ok=True)
    log(f"== {spec.name} ({ddir})")
    did = False
    split = os.path.join(ddir, spec.split_file) if spec.split_file else ""
    try:
        if split and os.path.exists(split + REBUILT_SUFFIX):
            did |= replace_rebuilt_split(spec, ddir, opts, res)
        for f in [f for f in spec.files if not f.for_rebuild and f.provides]:
            did |= place(f, ddir, opts, res)
        if split and not os.path.exists(split):
            for f in [f for f in spec.files if f.for_rebuild]:
                did |= place(f, ddir, opts, res)
            if res.status in (READY, DOWNLOADED):
                res.details.append(f"{spec.split_file} unavailable: the loader rebuilds it (NOT the published split)")
        for name in spec.convert:
            did |= CONVERSIONS[name](spec, ddir, opts, res)
    except (DownloadError, DatasetError, OSError, KeyError, ValueError) as e:  # one dataset's fault, not the run's
        res.details.append(str(e).splitlines()[0] if str(e) else type(e).__name__)
        _worse(res, FAILED)
    if did:
        _worse(res, DOWNLOADED)
    missing = [p for p in spec.needs if not os.path.exists(os.path.join(ddir, p))]
    if missing and res.status in (READY, DOWNLOADED):
        res.details.append(f"still missing: {', '.join(missing)}")
        _worse(res, FAILED)
    return res


def prepare(names: Sequence[str], opts: Options) -> list[Result]:
    """Prepare each dataset in turn; one that needs a manual step or fails does not stop the others."""
    results = []
    for spec in resolve(names):
        results.append(prepare_one(spec, opts))
        for line in results[-1].details:
            log(f"  {line}")
    return results


def summary(results: Sequence[Result]) -> str:
    """The table printed at the end: dataset, status, detail."""
    def detail(r: Result) -> str:
        if not r.details:
            return "-"
        first = r.details[0] if len(r.details[0]) <= 160 else r.details[0][:157] + "..."
        return first + (f" (+{len(r.details) - 1} more above)" if len(r.details) > 1 else "")

    rows = [(r.name, r.status, detail(r)) for r in results]
    w0 = max(len("dataset"), *(len(r[0]) for r in rows))
    w1 = max(len("status"), *(len(r[1]) for r in rows))
    lines = [f"{'dataset':<{w0}}  {'status':<{w1}}  detail", f"{'-' * w0}  {'-' * w1}  ------"]
    lines += [f"{a:<{w0}}  {b:<{w1}}  {c}" for a, b, c in rows]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ checking


def _stale_caches(ddir: str) -> list[str]:
    """Few-shot pickles (and ImageNet's scan cache) that name images no longer on disk."""
    problems = []
    caches = sorted(glob.glob(os.path.join(ddir, "split_fewshot", "*.pkl")))
    caches += [p for p in [os.path.join(ddir, "preprocessed.pkl")] if os.path.exists(p)]
    for path in caches:
        try:
            with open(path, "rb") as f:
                data = pickle.load(f)  # our own cache files (the loaders read them the same way)
            paths = [d.impath for split in data.values() for d in split]
        except Exception as e:  # unreadable or foreign: it would break the run too
            problems.append(f"cache {path} cannot be read ({type(e).__name__}): delete it (it is rebuilt)")
            continue
        gone = [p for p in paths if not os.path.exists(p)]
        if gone:
            problems.append(
                f"stale cache {path}: {len(gone)} of {len(paths)} image paths no longer exist (e.g. {gone[0]}): "
                "delete it (it is rebuilt on the next run)"
            )
    return problems


def _check_split(spec: DatasetSpec, ddir: str, info: list[str], problems: list[str]) -> None:
    split = os.path.join(ddir, spec.split_file)
    if not os.path.exists(split):
        problems.append(f"{spec.split_file} missing: run `python -m datasets.prepare --root DATA {spec.folder}` "
                        "(without it the loader rebuilds a split that is NOT the published one)")  # fmt: skip
        return
    if os.path.exists(split + REBUILT_SUFFIX):
        info.append(f"note: {spec.split_file} was rebuilt here, not the published file (prepare fetches that one)")
    try:
        data = read_json(split)
    except ValueError as e:
        problems.append(f"{spec.split_file} is not valid json ({e}): delete it and run prepare again")
        return
    prefix = os.path.join(ddir, spec.image_folder)
    names: dict[int, str] = {}
    for part in ("train", "val", "test"):
        items = data.get(part, [])
        gone = [p for p, _, _ in items if not os.path.exists(os.path.join(prefix, p))]
        for _, label, cname in items:
            names.setdefault(int(label), cname)
        info.append(f"{part}: {len(items) - len(gone)} of {len(items)} images of the split file on disk")
        if gone:
            problems.append(
                f"{part}: {len(gone)} of {len(items)} images missing under {prefix} (e.g. {gone[0]}): "
                f"re-extract the images (`python -m datasets.prepare --root DATA {spec.folder}`)"
            )
    shown = ", ".join(names[k] for k in sorted(names)[:5])
    info.append(f"{len(names)} classes: {shown}{', ...' if len(names) > 5 else ''}")


def _check_folders(spec: DatasetSpec, ddir: str, info: list[str], problems: list[str]) -> None:
    """Datasets without a split file: class folders (ImageNet and variants) or FGVC's lists."""
    fix = f"run `python -m datasets.prepare --root DATA {spec.folder}`"
    if spec.name == "FGVCAircraft":
        classes = read_lines(os.path.join(ddir, "variants.txt"))
        for part in ("train", "val", "test"):
            lines = read_lines(os.path.join(ddir, f"images_variant_{part}.txt"))
            ids = [ln.split(" ")[0] for ln in lines]
            gone = [i for i in ids if not os.path.exists(os.path.join(ddir, "images", i + ".jpg"))]
            info.append(f"{part}: {len(lines) - len(gone)} of {len(lines)} listed images on disk")
            if gone:
                problems.append(f"{part}: {len(gone)} listed images missing in images/ (e.g. {gone[0]}.jpg): {fix}")
        info.append(f"{len(classes)} classes: {', '.join(classes[:5])}{', ...' if len(classes) > 5 else ''}")
        return
    classnames = os.path.join(ddir, "classnames.txt")
    names = dict(ln.split(" ", 1) for ln in read_lines(classnames)) if os.path.exists(classnames) else {}
    dirs = ["images/train", "images/val"] if spec.name == "ImageNet" else [spec.image_folder]
    for d in dirs:
        path = os.path.join(ddir, d)
        folders = sorted(e.name for e in os.scandir(path) if e.is_dir())
        count = sum(len(_images_in(os.path.join(path, f))) for f in folders)
        info.append(f"{d}: {count} images in {len(folders)} class folders")
        loose = _images_in(path)
        if loose:
            problems.append(
                f"{d} holds {len(loose)} images not sorted into class folders: run "
                f"`python -m datasets.prepare --root DATA {spec.folder}` (with ILSVRC2012_devkit_t12.tar.gz or "
                "Kaggle's LOC_val_solution.csv in imagenet/)"
            )
        unknown = [f for f in folders if f not in names] if spec.name != "ImageNetV2" else []
        if names and unknown:
            problems.append(f"{d}: folders {unknown[:3]} have no line in classnames.txt: use ImageNet's classnames.txt")
        if not folders and not loose:
            problems.append(f"{d} is empty: run `python -m datasets.prepare --root DATA {spec.folder}`")
    if names:
        info.append(f"{len(names)} class names: {', '.join(list(names.values())[:5])}, ...")


def _check_domains(spec: DatasetSpec, ddir: str, info: list[str], problems: list[str]) -> None:
    """DG datasets: every part of every domain as the loader reads it (split lists or class folders)."""
    from dassl.data.datasets import DATASET_REGISTRY

    cls = DATASET_REGISTRY.get(spec.name)
    assert issubclass(cls, DGDataset)
    parts = dict.fromkeys(p for part in (cls.train_part, cls.val_part, cls.test_part)
                          for p in (cls.all_parts if part == "all" else (part,)))  # fmt: skip
    classes: dict[int, str] = {}
    for domain in cls.domains:
        counts = []
        for part in parts:
            try:
                records = cls.read_part(ddir, domain, part)
            except DatasetError as e:
                problems.append(str(e).split(". See ")[0])
                continue
            gone = [path for path, _, _ in records if not os.path.exists(path)]
            for _, label, cname in records:
                classes.setdefault(label, cname)
            counts.append(f"{part} {len(records) - len(gone)}" + (f" of {len(records)}" if gone else ""))
            if gone:
                problems.append(
                    f"{domain} {part}: {len(gone)} of {len(records)} listed images missing (e.g. {gone[0]}): "
                    f"re-extract (`python -m datasets.prepare --root DATA {spec.folder}`)"
                )
        info.append(f"{domain}: {', '.join(counts) or 'nothing readable'} images")
    shown = ", ".join(classes[k] for k in sorted(classes)[:5])
    info.append(f"{len(classes)} classes: {shown}{', ...' if len(classes) > 5 else ''}")


def check_one(spec: DatasetSpec, root: str) -> tuple[list[str], list[str]]:
    """(info lines, problem lines) for one dataset; each problem line names its fix."""
    ddir = os.path.join(root, spec.folder)
    info: list[str] = []
    problems: list[str] = []
    fix = f"run `python -m datasets.prepare --root DATA {spec.folder}`"
    if not os.path.isdir(ddir):
        return info, [f"folder {ddir} missing: {fix}"]
    missing = [p for p in spec.needs if not os.path.exists(os.path.join(ddir, p))]
    for p in missing:
        problems.append(f"{p} missing in {ddir}: {fix}")
    if spec.group == "dg":
        if not missing:
            _check_domains(spec, ddir, info, problems)
    elif spec.split_file:
        if not missing:
            _check_split(spec, ddir, info, problems)
        elif not os.path.exists(os.path.join(ddir, spec.split_file)):
            problems.append(f"{spec.split_file} missing: {fix}")
    elif not missing:
        _check_folders(spec, ddir, info, problems)
    problems += _stale_caches(ddir)
    return info, problems


def check(names: Sequence[str], root: str) -> int:
    """Print what is present and one line per problem; the number of problems."""
    total = 0
    for spec in resolve(names):
        info, problems = check_one(spec, root)
        log(f"== {spec.name} ({os.path.join(root, spec.folder)}): {'OK' if not problems else 'PROBLEMS'}")
        for line in info:
            log(f"  {line}")
        for line in problems:
            log(f"  problem: {line}")
        total += len(problems)
    log(f"{total} problem(s)" if total else "all checked datasets are complete")
    return total


# ------------------------------------------------------------------------------------------------ CLI


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m datasets.prepare", description=__doc__.split("\n")[0])
    parser.add_argument(
        "names", nargs="*", metavar="NAME", help="datasets (folder, DATASET.NAME, or group coop / dg); default: coop"
    )
    parser.add_argument("--root", required=True, help="the dataset root (DATASET.ROOT / --root of train.py)")
    parser.add_argument("--check", action="store_true", help="only report what is present and what is wrong")
    parser.add_argument("--mirror", default="", help="fetch every file as URL/<published file name>")
    parser.add_argument("--no-checksum", action="store_true", help="accept files whose size/checksum differ")
    parser.add_argument("--keep-archives", action="store_true", help="keep downloaded archives after extraction")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    args = parser.parse_args(argv)
    root = os.path.abspath(os.path.expanduser(args.root))
    try:
        if args.mirror and not args.mirror.startswith(("http://", "https://", "file://")):
            raise DatasetError(f"--mirror must be an http(s):// or file:// URL, got {args.mirror!r}")
        resolve(args.names)
        if args.check:
            if not os.path.isdir(root):
                raise DatasetError(f"dataset root {root} does not exist")
            return 1 if check(args.names, root) else 0
        os.makedirs(root, exist_ok=True)
        if not os.access(root, os.W_OK):
            raise DatasetError(f"dataset root {root} is not writable")
    except (DatasetError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    opts = Options(root, args.mirror, not args.no_checksum, args.keep_archives, args.quiet)
    results = prepare(args.names, opts)
    log("\n" + summary(results))
    return 0 if all(r.status in (READY, DOWNLOADED) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
