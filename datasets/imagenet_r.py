"""ImageNet-R: renditions (art, cartoons, ...) of 200 ImageNet classes (test only; labels 0..199)."""
from dassl.data.datasets import DATASET_REGISTRY

from .utils import EvalOnlyDataset


@DATASET_REGISTRY.register()
class ImageNetR(EvalOnlyDataset):
    dataset_dir = "imagenet-rendition"
    image_folder = "imagenet-r"
