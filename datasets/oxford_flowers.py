"""Oxford Flowers-102. Building the split needs imagelabels.mat (scipy), so the split file is required."""
from dassl.data.datasets import DATASET_REGISTRY

from .utils import SplitDataset


@DATASET_REGISTRY.register()
class OxfordFlowers(SplitDataset):
    dataset_dir = "oxford_flowers"
    image_folder = "jpg"
    split_file = "split_zhou_OxfordFlowers.json"
