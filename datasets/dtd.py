"""DTD: 47 texture categories, one image folder per category."""
from dassl.data.datasets import DATASET_REGISTRY

from .utils import SplitDataset, Splits, read_and_split_data


@DATASET_REGISTRY.register()
class DescribableTextures(SplitDataset):
    dataset_dir = "dtd"
    image_folder = "images"
    split_file = "split_zhou_DescribableTextures.json"

    def build_split(self) -> Splits:
        return read_and_split_data(self.image_dir)
