"""ImageNet-A: natural adversarial examples of 200 ImageNet classes (test only; labels 0..199)."""
from dassl.data.datasets import DATASET_REGISTRY

from .utils import EvalOnlyDataset


@DATASET_REGISTRY.register()
class ImageNetA(EvalOnlyDataset):
    dataset_dir = "imagenet-adversarial"
    image_folder = "imagenet-a"
