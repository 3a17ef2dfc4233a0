"""Office-Home (Venkateswara et al., CVPR 2017), Dassl's DG release: 4 domains x 65 classes, class folders.

Layout: ``office_home/<domain>/{train,val}/<Class>/<image>.jpg`` (Dassl ships it as ``office_home_dg/``;
MetaPrompt's loader reads ``office_home/``). Sources give train and val; the target's test set is
its train folder followed by its val folder. In each part the labels are the positions of the class
folders in sorted order, the images are the ``*.jpg`` files in directory order (``glob``'s order,
which the few-shot draw depends on), and the class name is the folder name in lower case (Dassl's
DigitsDG reader, which MetaPrompt's OfficeHomeFS uses).
"""
from dassl.data.datasets import DATASET_REGISTRY

from .dg import DGDataset, Record
from .dg_folders import read_class_folders


@DATASET_REGISTRY.register()
class OfficeHomeFS(DGDataset):
    dataset_dir = "office_home"
    domains = ["art", "clipart", "product", "real_world"]
    train_part, val_part, test_part = "train", "val", "all"
    all_parts = ("train", "val")
    other_names = ("office_home_dg",)

    @classmethod
    def read_part(cls, dataset_dir: str, domain: str, part: str) -> list[Record]:
        found = read_class_folders(cls, dataset_dir, domain, part)
        return [(path, label, folder.lower()) for path, label, folder in found]
