"""Stanford Cars: split paths start with cars_train/ or cars_test/. Building the split needs the .mat
annotations (scipy), so the split file is required."""
from dassl.data.datasets import DATASET_REGISTRY

from .utils import SplitDataset


@DATASET_REGISTRY.register()
class StanfordCars(SplitDataset):
    dataset_dir = "stanford_cars"
    image_folder = ""
    split_file = "split_zhou_StanfordCars.json"
