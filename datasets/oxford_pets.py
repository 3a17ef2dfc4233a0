"""Oxford-IIIT Pets: 37 breeds; the breed is the image name without its trailing number."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .utils import SplitDataset, Splits, read_lines, split_trainval


@DATASET_REGISTRY.register()
class OxfordPets(SplitDataset):
    dataset_dir = "oxford_pets"
    image_folder = "images"
    split_file = "split_zhou_OxfordPets.json"

    def build_split(self) -> Splits:
        trainval, test = self.read_list("trainval.txt"), self.read_list("test.txt")
        return *split_trainval(trainval), test

    def read_list(self, name: str) -> list[Datum]:
        """Lines ``<image name> <class id from 1> <species> <breed id>``."""
        items = []
        for line in read_lines(self.need(os.path.join(self.dataset_dir, "annotations", name), "annotation list")):
            imname, label, _, _ = line.split(" ")
            breed = "_".join(imname.split("_")[:-1]).lower()
            items.append(Datum(os.path.join(self.image_dir, imname + ".jpg"), int(label) - 1, classname=breed))
        return items
