"""VLCS (Torralba and Efros, CVPR 2011; Fang et al.'s 5-class version), Dassl's release: class folders.

Layout: ``vlcs/<DOMAIN>/{train,crossval,test}/<class folder>/<image>.jpg`` with upper-case domain folders
(Dassl ships it as ``VLCS/``; MetaPrompt's loader reads ``vlcs/``). Sources give train and val
(crossval); the target's test set is its ``test`` folder (not ``full``). Labels are the positions of
the class folders in sorted order and the class names MetaPrompt's VLCSFS assigns to them (the release
numbers its folders); images are the ``*.jpg`` files in directory order.
"""
from dassl.data.datasets import DATASET_REGISTRY

from .dg import DGDataset, Record
from .dg_folders import read_class_folders

CLASSNAMES = ("bird", "car", "chair", "dog", "person")


@DATASET_REGISTRY.register()
class VLCSFS(DGDataset):
    dataset_dir = "vlcs"
    domains = ["caltech", "labelme", "pascal", "sun"]
    train_part, val_part, test_part = "train", "crossval", "test"
    other_names = ("VLCS",)

    @classmethod
    def read_part(cls, dataset_dir: str, domain: str, part: str) -> list[Record]:
        found = read_class_folders(cls, dataset_dir, domain.upper(), part, max_classes=len(CLASSNAMES))
        return [(path, label, CLASSNAMES[label]) for path, label, _ in found]
