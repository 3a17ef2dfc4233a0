"""Food-101: 101 dishes, one image folder per dish."""
from dassl.data.datasets import DATASET_REGISTRY

from .utils import SplitDataset, Splits, read_and_split_data


@DATASET_REGISTRY.register()
class Food101(SplitDataset):
    dataset_dir = "food-101"
    image_folder = "images"
    split_file = "split_zhou_Food101.json"

    def build_split(self) -> Splits:
        return read_and_split_data(self.image_dir)
