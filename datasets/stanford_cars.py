"""Stanford Cars: split paths start with cars_train/ or cars_test/ (relative to the dataset folder).

Without the split file the split is rebuilt as CoOp does, from the devkit's MATLAB annotations
(scipy, the ``data`` extra): the official train images are split 80/20 into train/val per class
(``split_trainval``), the official test images are the test set, and a class name is the devkit's
name with its trailing year moved to the front ("Tesla Model S Sedan 2012" -> "2012 Tesla Model S Sedan").
"""
import os

import numpy as np

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .utils import SplitDataset, Splits, load_mat, split_trainval


def year_first(name: str) -> str:
    """CoOp's class name: the last word of the devkit name (the year) moved to the front."""
    *words, year = str(name).split(" ")
    return " ".join([year, *words])


@DATASET_REGISTRY.register()
class StanfordCars(SplitDataset):
    dataset_dir = "stanford_cars"
    image_folder = ""
    split_file = "split_zhou_StanfordCars.json"
    rebuild_inputs = "devkit/cars_train_annos.mat, cars_test_annos_withlabels.mat and devkit/cars_meta.mat"

    def build_split(self) -> Splits:
        train_annos = self.need(os.path.join(self.dataset_dir, "devkit", "cars_train_annos.mat"), "train annotations")
        test_annos = self.need(os.path.join(self.dataset_dir, "cars_test_annos_withlabels.mat"), "test annotations")
        meta = self.need(os.path.join(self.dataset_dir, "devkit", "cars_meta.mat"), "class-name file")
        names = [year_first(n) for n in np.atleast_1d(load_mat(meta, self.name)["class_names"])]
        trainval = self.read_annotations("cars_train", train_annos, names)
        test = self.read_annotations("cars_test", test_annos, names)
        return *split_trainval(trainval), test

    def read_annotations(self, folder: str, path: str, names: list[str]) -> list[Datum]:
        """Records in file order; ``class`` is 1-based."""
        annos = load_mat(path, self.name)["annotations"]
        fnames, classes = np.atleast_1d(annos["fname"]), np.atleast_1d(annos["class"])
        items = []
        for fname, cls in zip(fnames, classes, strict=True):
            label = int(cls) - 1
            items.append(Datum(os.path.join(self.dataset_dir, folder, str(fname)), label, classname=names[label]))
        return items
