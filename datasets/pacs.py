"""PACS (Li et al., ICCV 2017): 4 domains x 7 classes, read from the kfold split lists of Dassl's release.

Layout: ``pacs/images/<domain>/<class>/<image>`` and ``pacs/splits/<domain>_{train,crossval,test}_kfold.txt``
with lines ``<domain>/<class>/<image> <label from 1>``. Sources give ``train`` (train_kfold) and val
(crossval_kfold); the target's test set is train_kfold followed by crossval_kfold (test_kfold is not
read), as in MetaPrompt's PACSFS and Dassl's PACS. The class name is the folder name.
"""
import os

from dassl.data.datasets import DATASET_REGISTRY

from .dg import DGDataset, Record, dg_error
from .utils import read_lines

# One sketch image of the release cannot be decoded; Dassl's and MetaPrompt's loaders skip it.
ERROR_PATHS = ("sketch/dog/n02103406_4068-1.png",)


@DATASET_REGISTRY.register()
class PACSFS(DGDataset):
    dataset_dir = "pacs"
    domains = ["art_painting", "cartoon", "photo", "sketch"]
    train_part, val_part, test_part = "train", "crossval", "all"
    all_parts = ("train", "crossval")

    @classmethod
    def read_part(cls, dataset_dir: str, domain: str, part: str) -> list[Record]:
        path = os.path.join(dataset_dir, "splits", f"{domain}_{part}_kfold.txt")
        if not os.path.isfile(path):
            raise cls.missing(dataset_dir, path, f"split list of domain {domain}")
        records = []
        for n, line in enumerate(read_lines(path), start=1):
            fields = line.split(" ")
            if len(fields) != 2 or not fields[1].isdigit():
                raise dg_error(cls.__name__, f"{path} line {n} is not '<domain>/<class>/<image> <label>': {line!r}")
            rel, label = fields
            if rel in ERROR_PATHS:
                continue
            records.append((os.path.join(dataset_dir, "images", rel), int(label) - 1, rel.split("/")[-2]))
        return records
