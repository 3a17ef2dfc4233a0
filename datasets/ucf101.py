"""UCF101 as still images (the middle frame of each clip); action names are split at capitals."""
import os
import re

from dassl.data.datasets import DATASET_REGISTRY, Datum

from .utils import SplitDataset, Splits, read_lines, split_trainval


@DATASET_REGISTRY.register()
class UCF101(SplitDataset):
    dataset_dir = "ucf101"
    image_folder = "UCF-101-midframes"
    split_file = "split_zhou_UCF101.json"

    def build_split(self) -> Splits:
        cname2lab = {}
        class_file = self.need(os.path.join(self.dataset_dir, "ucfTrainTestlist", "classInd.txt"), "class list")
        for line in read_lines(class_file):
            label, action = line.split(" ")
            cname2lab[action] = int(label) - 1
        trainval, test = self.read_list(cname2lab, "trainlist01.txt"), self.read_list(cname2lab, "testlist01.txt")
        return *split_trainval(trainval), test

    def read_list(self, cname2lab: dict[str, int], name: str) -> list[Datum]:
        """Lines ``<Action>/<clip>.avi [label]``; frames live in ``<Split_Action>/<clip>.jpg``."""
        items = []
        for line in read_lines(self.need(os.path.join(self.dataset_dir, "ucfTrainTestlist", name), "split list")):
            action, clip = line.split(" ")[0].split("/")
            classname = "_".join(re.findall("[A-Z][^A-Z]*", action))
            impath = os.path.join(self.image_dir, classname, clip.replace(".avi", ".jpg"))
            items.append(Datum(impath, cname2lab[action], classname=classname))
        return items
