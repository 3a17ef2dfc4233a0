"""ImageNet-Sketch: sketches of the 1000 ImageNet classes (test only)."""
from dassl.data.datasets import DATASET_REGISTRY

from .utils import EvalOnlyDataset


@DATASET_REGISTRY.register()
class ImageNetSketch(EvalOnlyDataset):
    dataset_dir = "imagenet-sketch"
    image_folder = "images"
