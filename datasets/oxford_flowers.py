"""Oxford Flowers-102: images jpg/image_NNNNN.jpg; class names from cat_to_name.json.

Without the split file the split is rebuilt as CoOp does, from imagelabels.mat (scipy, the ``data``
extra): image i (1-based) has label labels[i-1]; classes are taken in the order their label first
appears in that file; each class's images are shuffled and split 50/20/30 (Python's ``round``).
"""
import os
import random

import numpy as np

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .data_files import DOC, read_name_map
from .utils import DatasetError, SplitDataset, Splits, load_mat


@DATASET_REGISTRY.register()
class OxfordFlowers(SplitDataset):
    dataset_dir = "oxford_flowers"
    image_folder = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
    rebuild_inputs = "imagelabels.mat and cat_to_name.json"

    def build_split(self) -> Splits:
        label_file = self.need(os.path.join(self.dataset_dir, "imagelabels.mat"), "label file")
        names = read_name_map(self.need(os.path.join(self.dataset_dir, "cat_to_name.json"), "class-name file"),
                              f"download cat_to_name.json again (python -m datasets.prepare, see {DOC})")  # fmt: skip
        by_label: dict[int, list[str]] = {}
        for index, label in enumerate(np.atleast_1d(load_mat(label_file, self.name)["labels"]), start=1):
            by_label.setdefault(int(label), []).append(os.path.join(self.image_dir, f"image_{index:05d}.jpg"))
        print("Splitting into 50% train, 20% val, and 30% test")
        train: list[Datum] = []
        val: list[Datum] = []
        test: list[Datum] = []
        for label, paths in by_label.items():
            random.shuffle(paths)
            n_train, n_val = round(len(paths) * 0.5), round(len(paths) * 0.2)
            if min(n_train, n_val, len(paths) - n_train - n_val) <= 0:
                raise DatasetError(f"{self.name}: class {label} has {len(paths)} images, too few to split.")
            if str(label) not in names:
                raise DatasetError(f"{self.name}: label {label} has no name in cat_to_name.json.")
            parts = (paths[:n_train], paths[n_train : n_train + n_val], paths[n_train + n_val :])
            for dest, part in zip((train, val, test), parts, strict=True):
                dest.extend(Datum(p, label - 1, classname=names[str(label)]) for p in part)
        return train, val, test
