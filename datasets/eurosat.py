"""EuroSAT (RGB): 10 land-use classes of Sentinel-2 tiles, one folder per class."""
from dassl.data.datasets import DATASET_REGISTRY

from .utils import SplitDataset, Splits, read_and_split_data

# CamelCase folder names -> the descriptive names CoOp prompts with.
NEW_CNAMES = {
    "AnnualCrop": "Annual Crop Land",
    "Forest": "Forest",
    "HerbaceousVegetation": "Herbaceous Vegetation Land",
    "Highway": "Highway or Road",
    "Industrial": "Industrial Buildings",
    "Pasture": "Pasture Land",
    "PermanentCrop": "Permanent Crop Land",
    "Residential": "Residential Buildings",
    "River": "River",
    "SeaLake": "Sea or Lake",
}


@DATASET_REGISTRY.register()
class EuroSAT(SplitDataset):
    dataset_dir = "eurosat"
    image_folder = "2750"
    split_file = "split_zhou_EuroSAT.json"

    def build_split(self) -> Splits:
        return read_and_split_data(self.image_dir, new_cnames=NEW_CNAMES)
