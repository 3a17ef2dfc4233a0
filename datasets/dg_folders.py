"""Class-folder parts of the DG releases (Office-Home, VLCS), listed exactly as Dassl's readers list them.

``<domain folder>/<part>/<class folder>/*.jpg``: class folders in sorted order give the labels, images
come in ``glob`` order (the directory's order on disk, which MetaPrompt's few-shot draw depends on, so
the same tree gives the same draw as the official code on the same file system). Only ``.jpg`` files
are read, as upstream. A plain file among the class folders is an error here: upstream would count it
as a class and shift every later label.
"""
from __future__ import annotations

import glob
import os

from dassl.utils.tools import listdir_nohidden

from .dg import DGDataset, Record, dg_error

__all__ = ["read_class_folders"]


def read_class_folders(
    cls: type[DGDataset], dataset_dir: str, domain_folder: str, part: str, max_classes: int = 0
) -> list[Record]:
    """(image path, label, class folder) of one part; errors name the folder and the fix."""
    path = os.path.join(dataset_dir, domain_folder, part)
    if not os.path.isdir(path):
        raise cls.missing(dataset_dir, path, f"folder of domain {domain_folder}, part {part}")
    folders = sorted(listdir_nohidden(path))
    files = [f for f in folders if not os.path.isdir(os.path.join(path, f))]
    if files:
        raise dg_error(
            cls.__name__,
            f"{os.path.join(path, files[0])} is a file among the class folders; move it away (the official loader "
            "would count it as a class and shift the labels)",
        )
    if max_classes and len(folders) > max_classes:
        raise dg_error(cls.__name__, f"{path} holds {len(folders)} class folders; the release has {max_classes}")
    records = []
    for label, folder in enumerate(folders):
        for impath in glob.glob(os.path.join(glob.escape(os.path.join(path, folder)), "*.jpg")):
            records.append((impath, label, folder))
    return records
