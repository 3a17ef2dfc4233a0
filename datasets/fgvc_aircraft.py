"""FGVC-Aircraft (variant level, 100 classes): the official train/val/test lists are the split."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .utils import SplitDataset, Splits, read_lines


@DATASET_REGISTRY.register()
class FGVCAircraft(SplitDataset):
    dataset_dir = "fgvc_aircraft"
    image_folder = "images"

    def build_split(self) -> Splits:
        classnames = read_lines(self.need(os.path.join(self.dataset_dir, "variants.txt"), "variant list"))
        cname2lab = {c: i for i, c in enumerate(classnames)}
        train, val, test = (self.read_list(cname2lab, f"images_variant_{s}.txt") for s in ("train", "val", "test"))
        return train, val, test

    def read_list(self, cname2lab: dict[str, int], name: str) -> list[Datum]:
        """Lines ``<image id> <variant name, may contain spaces>``."""
        items = []
        for line in read_lines(self.need(os.path.join(self.dataset_dir, name), "split list")):
            imname, *words = line.split(" ")
            classname = " ".join(words)
            impath = os.path.join(self.image_dir, imname + ".jpg")
            items.append(Datum(impath, cname2lab[classname], classname=classname))
        return items
