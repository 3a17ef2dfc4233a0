"""ImageNetV2 (matched frequency): folders 0..999 named by ImageNet label (test only)."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .utils import EvalOnlyDataset, read_class_folders, require


@DATASET_REGISTRY.register()
class ImageNetV2(EvalOnlyDataset):
    dataset_dir = "imagenetv2"
    image_folder = "imagenetv2-matched-frequency-format-val"

    def read_data(self, classnames: dict[str, str]) -> list[Datum]:
        """Label i is folder ``str(i)`` and line i of classnames.txt (upstream hard-codes 1000 classes)."""
        folders = [str(label) for label in range(len(classnames))]
        for folder in folders:
            require(os.path.join(self.image_dir, folder), "class folder", type(self).__name__)
        return read_class_folders(self.image_dir, folders, list(classnames.values()))
