"""Caltech-101: object folders; the background clutter and the duplicate face folders are left out."""
from dassl.data.datasets import DATASET_REGISTRY

from .utils import SplitDataset, Splits, read_and_split_data

IGNORED = ("BACKGROUND_Google", "Faces_easy")
# Folder names that read badly in a prompt.
NEW_CNAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@DATASET_REGISTRY.register()
class Caltech101(SplitDataset):
    dataset_dir = "caltech-101"
    image_folder = "101_ObjectCategories"
    split_file = "split_zhou_Caltech101.json"

    def build_split(self) -> Splits:
        return read_and_split_data(self.image_dir, ignored=IGNORED, new_cnames=NEW_CNAMES)
