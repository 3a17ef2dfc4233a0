"""SUN397: scene classes such as /a/apartment_building/outdoor, read as "outdoor apartment_building"."""
import os

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .utils import SplitDataset, Splits, read_lines, split_trainval


@DATASET_REGISTRY.register()
class SUN397(SplitDataset):
    dataset_dir = "sun397"
    image_folder = "SUN397"
    split_file = "split_zhou_SUN397.json"

    def build_split(self) -> Splits:
        class_file = self.need(os.path.join(self.dataset_dir, "ClassName.txt"), "class list")
        cname2lab = {line[1:]: i for i, line in enumerate(read_lines(class_file))}  # "/a/abbey" -> "a/abbey"
        trainval, test = self.read_list(cname2lab, "Training_01.txt"), self.read_list(cname2lab, "Testing_01.txt")
        return *split_trainval(trainval), test

    def read_list(self, cname2lab: dict[str, int], name: str) -> list[Datum]:
        """Lines ``/<letter>/<class path>/<image>``; the name drops the letter and reverses the rest."""
        items = []
        for line in read_lines(self.need(os.path.join(self.dataset_dir, name), "partition list")):
            imname = line[1:]
            folder = os.path.dirname(imname)
            classname = " ".join(folder.split("/")[1:][::-1])
            items.append(Datum(os.path.join(self.image_dir, imname), cname2lab[folder], classname=classname))
        return items
