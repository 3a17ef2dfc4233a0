"""ImageFolder: your own images as a dataset, chosen by config alone (``configs/datasets/folder.yaml``).

Layout under ``DATASET.FOLDER.PATH`` (absolute, or relative to ``DATASET.ROOT``)::

    my_data/<class>/<image>                      one folder per class, or
    my_data/{train,val,test}/<class>/<image>     the split given by folders (val optional: 20 % of train)
    my_data/split.json                           optional split_zhou file (DATASET.FOLDER.SPLIT_FILE)
    my_data/classnames.txt                       optional "<folder> <class name>" lines (DATASET.FOLDER.CLASSNAMES)

Without a split file one is made (class folders: 50/20/30 per class with the run's seed, as CoOp's
DTD; train/val/test folders: as given) and written to SPLIT_FILE, so later runs and seeds share it.
Few-shot caches go to ``my_data/split_fewshot/``; base/new subsampling works as for every dataset.
``DATASET.FOLDER.TEMPLATE`` is exposed as ``dataset.template`` for trainers that read it.
"""
from __future__ import annotations

import os
from typing import Any

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .utils import (
    DOC,
    DatasetError,
    SplitDataset,
    Splits,
    load_or_create,
    read_and_split_data,
    read_class_folders,
    read_classnames,
    read_split,
    split_trainval,
    subfolders,
    write_split,
)

SPLIT_DIRS = ("train", "val", "test")
REWRITE_SPLIT = "delete it: the next run writes a new one from the class folders"


@DATASET_REGISTRY.register()
class ImageFolder(SplitDataset):
    image_folder = ""

    def __init__(self, cfg: Any) -> None:
        opts = cfg.DATASET.get("FOLDER", None)
        path = str(opts.PATH) if opts is not None else ""
        if not path:
            raise DatasetError(
                "ImageFolder: DATASET.FOLDER.PATH is empty: set it to a folder of class sub-folders, e.g. "
                f"DATASET.FOLDER.PATH /data/my_data. See {DOC}."
            )
        self.dataset_dir = os.path.expanduser(path)
        self.split_file = str(opts.SPLIT_FILE or "")
        self.classnames_file = str(opts.CLASSNAMES or "")
        self.template = str(opts.TEMPLATE or "")
        if self.template and self.template.count("{}") != 1:
            raise DatasetError(f'ImageFolder: DATASET.FOLDER.TEMPLATE must contain "{{}}" once, got "{self.template}".')
        super().__init__(cfg)

    def load_splits(self) -> Splits:
        """The split file if present, else built and written there: your own data has no published split."""
        if not self.split_path:
            splits = self.build_split()
        else:
            splits = load_or_create(
                self.split_path,
                self.build_split,
                lambda p: read_split(p, self.image_dir, REWRITE_SPLIT),
                lambda s, p: write_split(*s, p, self.image_dir),
            )
        self.split_rebuilt = False
        self.split_source = f"own data: {self.split_path or 'class folders'}"
        return splits

    def display_names(self, folders: list[str]) -> list[str]:
        if not self.classnames_file:
            return folders
        path = self.need(os.path.join(self.dataset_dir, self.classnames_file), "class-name file")
        names = read_classnames(path, "fix it: one '<folder> <class name>' line per class folder")
        missing = [f for f in folders if f not in names]
        if missing:
            raise DatasetError(f"ImageFolder: folders {missing[:5]} have no line in {path}. See {DOC}.")
        return [names[f] for f in folders]

    def build_split(self) -> Splits:
        present = [d for d in SPLIT_DIRS if os.path.isdir(os.path.join(self.dataset_dir, d))]
        if "train" in present and "test" in present:
            folders = subfolders(os.path.join(self.dataset_dir, "train"))
            names = self.display_names(folders)
            parts = {}
            for d in present:
                split_dir = os.path.join(self.dataset_dir, d)
                unknown = sorted(set(subfolders(split_dir)) - set(folders))
                if unknown:
                    raise DatasetError(f"ImageFolder: {split_dir} has classes {unknown[:5]} that train/ lacks.")
                parts[d] = []
                for label, (folder, name) in enumerate(zip(folders, names, strict=True)):
                    if os.path.isdir(os.path.join(split_dir, folder)):
                        parts[d] += [Datum(x.impath, label, classname=name) for x in
                                     read_class_folders(split_dir, [folder], [name])]  # fmt: skip
            if "val" not in parts:
                parts["train"], parts["val"] = split_trainval(parts["train"])
            return parts["train"], parts["val"], parts["test"]
        folders = [f for f in subfolders(self.dataset_dir) if f != "split_fewshot"]
        if not folders:
            raise DatasetError(f"ImageFolder: no class sub-folders in {self.dataset_dir}. See {DOC}.")
        names = self.display_names(folders)
        ignored = [f for f in os.listdir(self.dataset_dir) if f not in folders]
        return read_and_split_data(self.dataset_dir, ignored=ignored, new_cnames=dict(zip(folders, names)))
