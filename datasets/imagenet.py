"""ImageNet-1k: wnid folders under images/train and images/val; the official val set is the test set."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum
from dassl.utils.tools import write_pickle

from .data_files import read_cache
from .utils import SplitDataset, Splits, load_or_create, read_classnames, read_wnid_folders


@DATASET_REGISTRY.register()
class ImageNet(SplitDataset):
    dataset_dir = "imagenet"
    image_folder = "images"

    def load_splits(self) -> Splits:
        """Scanning 1.3M files is slow, so the scan is cached in preprocessed.pkl, as upstream."""
        path = os.path.join(self.dataset_dir, "preprocessed.pkl")
        data = load_or_create(path, self.scan, lambda p: read_cache(p, ("train", "test")), write_pickle)
        return data["train"], None, data["test"]

    def scan(self) -> dict[str, list[Datum]]:
        text_file = self.need(os.path.join(self.dataset_dir, "classnames.txt"), "class-name file")
        classnames = read_classnames(text_file)
        data = {}
        for split, folder in (("train", "train"), ("test", "val")):  # the official val set serves as test set
            image_dir = self.need(os.path.join(self.image_dir, folder), "image folder")
            data[split] = read_wnid_folders(self.name, image_dir, classnames, text_file)
        return data
