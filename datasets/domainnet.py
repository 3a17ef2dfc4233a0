"""DomainNet (Peng et al., ICCV 2019), cleaned release: 6 domains x 345 classes, from its split lists.

Layout: ``domainnet/<domain>/<class>/<image>`` (the official zips) and ``domainnet/splits/<domain>_{train,test}.txt``
with lines ``<domain>/<class>/<image> <label from 0>``. Sources give train (``_train``) and val (their
``_test`` lists); the target's test set is its ``_test`` list, as in MetaPrompt's DomainNetFS. The class
name is the folder name. The official painting_train.txt has no t-shirt image (class 327).
"""
import os

from dassl.data.datasets import DATASET_REGISTRY

from .dg import DGDataset, Record, dg_error
from .utils import read_lines


@DATASET_REGISTRY.register()
class DomainNetFS(DGDataset):
    dataset_dir = "domainnet"
    domains = ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"]
    train_part, val_part, test_part = "train", "test", "test"

    @classmethod
    def read_part(cls, dataset_dir: str, domain: str, part: str) -> list[Record]:
        path = os.path.join(dataset_dir, "splits", f"{domain}_{part}.txt")
        if not os.path.isfile(path):
            raise cls.missing(dataset_dir, path, f"split list of domain {domain}")
        records = []
        for n, line in enumerate(read_lines(path), start=1):
            fields = line.split(" ")
            if len(fields) != 2 or not fields[1].isdigit() or fields[0].count("/") < 2:
                raise dg_error(cls.__name__, f"{path} line {n} is not '<domain>/<class>/<image> <label>': {line!r}")
            rel, label = fields
            records.append((os.path.join(dataset_dir, rel), int(label), rel.split("/")[1]))
        return records

