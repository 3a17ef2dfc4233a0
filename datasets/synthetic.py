"""Tiny synthetic stand-ins for the 15 datasets and the 4 DG ones, written in their real on-disk layouts.

Tests, the demo and the parity harness need every loader to run without the real downloads::

    from datasets.synthetic import make_dataset
    make_dataset("dtd", root)           # -> root/dtd with images/ and split_zhou_DescribableTextures.json
    cfg.DATASET.ROOT = root; cfg.DATASET.NAME = "DescribableTextures"

Images are small JPEGs of class-coloured noise (the mean colour identifies the class, so a model can
learn something). Each class gets ``n_train`` + ``n_val`` + ``n_test`` images, assigned to the split
json in that order; test-only ImageNet variants get ``n_test`` per class, ImageNet ``n_train`` in
images/train and ``n_test`` in images/val. Annotation files (trainval lists, variants.txt,
classnames.txt, ...) are always written, the split json only with ``with_split`` (without it, loaders
build the split). The MATLAB label files of StanfordCars (devkit) and OxfordFlowers (imagelabels.mat)
are written when scipy (the ``data`` extra) is installed.
The DG datasets (``DG_DATASETS``: PACS, OfficeHome, VLCS, DomainNet) write every domain of the release,
with ``n_train`` images per class and domain in train (one more for every other class and domain),
``n_val`` in val (PACS crossval, OfficeHome val, VLCS crossval) and ``n_test`` in the parts only a
target reads (VLCS test, DomainNet test); ``DATASETS`` lists the 15 others.
Class names are real ones of each dataset (generic ones once a short list of those runs out). Only Pillow and
the standard library are used, and the global ``random`` state is left untouched.
"""
from __future__ import annotations

import colorsys
import json
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from .domainnet import DomainNetFS
from .eurosat import NEW_CNAMES
from .office_home import OfficeHomeFS
from .pacs import ERROR_PATHS, PACSFS
from .vlcs import VLCSFS

__all__ = [
    "DATASETS", "DG_DATASETS", "CONFIG_NAMES", "make_dataset", "make_all", "write_cars_mats", "write_flowers_labels",
]

# (split, path as the split json stores it, label, classname)
Record = tuple[str, str, int, str]

IMAGENET_CLASSES = [
    ("n01440764", "tench"),
    ("n01443537", "goldfish"),
    ("n01484850", "great white shark"),
    ("n01491361", "tiger shark"),
    ("n01494475", "hammerhead shark"),
    ("n01496331", "electric ray"),
    ("n01498041", "stingray"),
    ("n01514668", "rooster"),
]
POOLS = {
    "DescribableTextures": ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked"],
    "Food101": ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio", "beet_salad", "bibimbap", "churros"],
    "Caltech101": ["Faces", "Motorbikes", "accordion", "airplanes", "anchor", "ant", "barrel", "bass"],
    "OxfordPets": ["Abyssinian", "american_bulldog", "Bengal", "beagle", "Birman", "boxer", "British_Shorthair"],
    "StanfordCars": ["2012 Tesla Model S Sedan", "2012 BMW M3 Coupe", "2007 Volvo 240 Sedan", "2009 Spyker C8 Coupe"],
    "OxfordFlowers": ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea", "tiger lily"],
    "FGVCAircraft": ["707-320", "A300B4", "Boeing 717", "F/A-18", "DC-10", "ATR-42", "C-130", "Cessna 172"],
    "SUN397": ["a/abbey", "a/apartment_building/outdoor", "b/bakery/shop", "b/ballroom", "c/campus", "k/kitchen"],
    "UCF101": ["ApplyEyeMakeup", "Archery", "BabyCrawling", "BalanceBeam", "Basketball", "BlowDryHair", "YoYo"],
}
# Caltech folders renamed by the loader (see datasets/caltech101.py).
CALTECH_RENAMES = {"airplanes": "airplane", "Faces": "face", "Leopards": "leopard", "Motorbikes": "motorbike"}


@dataclass
class _Writer:
    """Writes one dataset's files; ``classes`` come from the pools, extended with generic names."""

    dataset_dir: str
    n_classes: int
    n_train: int
    n_val: int
    n_test: int
    size: int
    rng: random.Random

    def names(self, pool: list[str], generic: str) -> list[str]:
        extra = [generic.format(i) for i in range(len(pool), self.n_classes)]
        return (pool + extra)[: self.n_classes]

    def splits(self) -> list[str]:
        """The split of each image of one class, in file order."""
        return ["train"] * self.n_train + ["val"] * self.n_val + ["test"] * self.n_test

    def image(self, rel: str, label: int) -> None:
        """A JPEG whose mean colour is the class's hue, plus per-image noise."""
        path = os.path.join(self.dataset_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        hue = label / max(self.n_classes, 1)
        base = Image.new("RGB", (self.size, self.size), tuple(int(255 * v) for v in colorsys.hsv_to_rgb(hue, 0.8, 0.9)))
        noise = Image.frombytes("RGB", (self.size, self.size), self.rng.randbytes(self.size * self.size * 3))
        Image.blend(base, noise, 0.3).save(path, format="JPEG", quality=90)

    def text(self, rel: str, lines: list[str]) -> None:
        path = os.path.join(self.dataset_dir, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write("".join(line + "\n" for line in lines))

    def folder_tree(self, image_folder: str, folders: list[str], classnames: list[str]) -> list[Record]:
        """``image_folder/<folder>/<folder>_NNNN.jpg`` for every class."""
        records = []
        for label, (folder, cname) in enumerate(zip(folders, classnames, strict=True)):
            for i, split in enumerate(self.splits()):
                rel = f"{folder}/{folder}_{i:04d}.jpg"
                self.image(os.path.join(image_folder, rel), label)
                records.append((split, rel, label, cname))
        return records


def _dtd(w: _Writer) -> list[Record]:
    folders = sorted(w.names(POOLS["DescribableTextures"], "texture{:03d}"))
    return w.folder_tree("images", folders, folders)


def _food101(w: _Writer) -> list[Record]:
    folders = sorted(w.names(POOLS["Food101"], "dish_{:03d}"))
    return w.folder_tree("images", folders, folders)


def _caltech101(w: _Writer) -> list[Record]:
    folders = sorted(w.names(POOLS["Caltech101"], "object_{:03d}"))
    for ignored in ("BACKGROUND_Google", "Faces_easy"):  # present in the real download, skipped by the loader
        for i in range(2):
            w.image(f"101_ObjectCategories/{ignored}/image_{i:04d}.jpg", 0)
    return w.folder_tree("101_ObjectCategories", folders, [CALTECH_RENAMES.get(f, f) for f in folders])


def _eurosat(w: _Writer) -> list[Record]:
    folders = sorted(w.names(list(NEW_CNAMES), "Landuse{:03d}"))
    return w.folder_tree("2750", folders, [NEW_CNAMES.get(f, f) for f in folders])


def _oxford_pets(w: _Writer) -> list[Record]:
    breeds = w.names(POOLS["OxfordPets"], "breed_{:03d}")
    records, trainval, test = [], [], []
    for label, breed in enumerate(breeds):
        for i, split in enumerate(w.splits()):
            imname = f"{breed}_{i + 1}"
            w.image(f"images/{imname}.jpg", label)
            species = 1 if breed[0].isupper() else 2  # cats are capitalised in the real data
            (test if split == "test" else trainval).append(f"{imname} {label + 1} {species} {label + 1}")
            records.append((split, f"{imname}.jpg", label, breed.lower()))
    w.text("annotations/trainval.txt", trainval)
    w.text("annotations/test.txt", test)
    return records


def _stanford_cars(w: _Writer) -> list[Record]:
    records, counters = [], {"cars_train": 0, "cars_test": 0}
    names = w.names(POOLS["StanfordCars"], "2000 Generic Car {:03d}")
    annos: dict[str, list[tuple[str, int]]] = {"cars_train": [], "cars_test": []}
    for label, cname in enumerate(names):
        for split in w.splits():
            folder = "cars_test" if split == "test" else "cars_train"
            counters[folder] += 1
            rel = f"{folder}/{counters[folder]:05d}.jpg"
            w.image(rel, label)
            records.append((split, rel, label, cname))
            annos[folder].append((os.path.basename(rel), label + 1))
    # The devkit stores "Tesla Model S Sedan 2012"; CoOp moves the year to the front.
    devkit_names = [" ".join(c.split(" ")[1:] + c.split(" ")[:1]) for c in names]
    write_cars_mats(w.dataset_dir, annos["cars_train"], annos["cars_test"], devkit_names)
    return records


def write_cars_mats(
    dataset_dir: str, train: list[tuple[str, int]], test: list[tuple[str, int]], class_names: list[str]
) -> bool:
    """Stanford Cars' devkit files (``devkit/cars_train_annos.mat``, ``devkit/cars_meta.mat``) and
    ``cars_test_annos_withlabels.mat`` in the devkit's layout: a 1xN struct array with bbox fields,
    ``class`` (1-based) and ``fname``. Needs scipy (the ``data`` extra); returns False without it."""
    try:
        from scipy.io import savemat
    except ImportError:
        return False
    import numpy as np

    fields = ["bbox_x1", "bbox_y1", "bbox_x2", "bbox_y2", "class", "fname"]

    def struct(rows: list[tuple[str, int]]) -> np.ndarray:
        arr = np.zeros((1, len(rows)), dtype=[(f, "O") for f in fields])
        for i, (fname, cls) in enumerate(rows):
            arr[0, i] = (np.array([[1]]), np.array([[1]]), np.array([[8]]), np.array([[8]]), np.array([[cls]]), fname)
        return arr

    names = np.empty((1, len(class_names)), dtype=object)
    for i, name in enumerate(class_names):
        names[0, i] = name
    os.makedirs(os.path.join(dataset_dir, "devkit"), exist_ok=True)
    savemat(os.path.join(dataset_dir, "devkit", "cars_train_annos.mat"), {"annotations": struct(train)})
    savemat(os.path.join(dataset_dir, "cars_test_annos_withlabels.mat"), {"annotations": struct(test)})
    savemat(os.path.join(dataset_dir, "devkit", "cars_meta.mat"), {"class_names": names})
    return True


def write_flowers_labels(dataset_dir: str, labels: list[int]) -> bool:
    """Oxford Flowers' ``imagelabels.mat``: a 1xN double array, label (1-based) of image_{i+1:05d}.jpg.
    Needs scipy (the ``data`` extra); returns False without it."""
    try:
        from scipy.io import savemat
    except ImportError:
        return False
    import numpy as np

    savemat(os.path.join(dataset_dir, "imagelabels.mat"), {"labels": np.array([labels], dtype=np.float64)})
    return True


def _oxford_flowers(w: _Writer) -> list[Record]:
    names = w.names(POOLS["OxfordFlowers"], "flower {:03d}")
    records, k = [], 0
    for label, cname in enumerate(names):
        for split in w.splits():
            k += 1
            w.image(f"jpg/image_{k:05d}.jpg", label)
            records.append((split, f"image_{k:05d}.jpg", label, cname))
    with open(os.path.join(w.dataset_dir, "cat_to_name.json"), "w") as f:
        json.dump({str(i + 1): c for i, c in enumerate(names)}, f)
    write_flowers_labels(w.dataset_dir, [label + 1 for label, _ in enumerate(names) for _split in w.splits()])
    return records


def _fgvc_aircraft(w: _Writer) -> list[Record]:
    variants = w.names(POOLS["FGVCAircraft"], "Variant {:03d}")
    lines: dict[str, list[str]] = {"train": [], "val": [], "test": []}
    k = 1000000
    for label, variant in enumerate(variants):
        for split in w.splits():
            k += 1
            w.image(f"images/{k:07d}.jpg", label)
            lines[split].append(f"{k:07d} {variant}")
    w.text("variants.txt", variants)
    for split, split_lines in lines.items():
        w.text(f"images_variant_{split}.txt", split_lines)
    return []


def _sun397(w: _Writer) -> list[Record]:
    classes = sorted(w.names(POOLS["SUN397"], "z/zone_{:03d}"))
    records, trainval, test = [], [], []
    for label, cls in enumerate(classes):
        cname = " ".join(cls.split("/")[1:][::-1])
        for i, split in enumerate(w.splits()):
            rel = f"{cls}/sun_{label:03d}{i:05d}.jpg"
            w.image(f"SUN397/{rel}", label)
            (test if split == "test" else trainval).append(f"/{rel}")
            records.append((split, rel, label, cname))
    w.text("ClassName.txt", [f"/{c}" for c in classes])
    w.text("Training_01.txt", trainval)
    w.text("Testing_01.txt", test)
    return records


def _ucf101(w: _Writer) -> list[Record]:
    actions = sorted(w.names(POOLS["UCF101"], "Action{:03d}"))
    records, trainval, test = [], [], []
    for label, action in enumerate(actions):
        cname = "_".join(re.findall("[A-Z][^A-Z]*", action))
        for i, split in enumerate(w.splits()):
            clip = f"v_{action}_g{i + 1:02d}_c01"
            w.image(f"UCF-101-midframes/{cname}/{clip}.jpg", label)
            if split == "test":
                test.append(f"{action}/{clip}.avi")
            else:
                trainval.append(f"{action}/{clip}.avi {label + 1}")
            records.append((split, f"{cname}/{clip}.jpg", label, cname))
    w.text("ucfTrainTestlist/classInd.txt", [f"{i + 1} {a}" for i, a in enumerate(actions)])
    w.text("ucfTrainTestlist/trainlist01.txt", trainval)
    w.text("ucfTrainTestlist/testlist01.txt", test)
    return records


def _imagenet_classes(n: int) -> list[tuple[str, str]]:
    """Sorted (wnid, name) pairs: the real first ImageNet classes, then made-up ones."""
    extra = [(f"n9{i:07d}", f"object {i}") for i in range(len(IMAGENET_CLASSES), n)]
    return (IMAGENET_CLASSES + extra)[:n]


def _wnid_tree(w: _Writer, image_folder: str, classes: list[tuple[str, str]], per_class: int) -> None:
    for label, (wnid, _) in enumerate(classes):
        for i in range(per_class):
            w.image(f"{image_folder}/{wnid}/{wnid}_{i:05d}.JPEG", label)


def _imagenet(w: _Writer) -> list[Record]:
    classes = _imagenet_classes(w.n_classes)
    w.text("classnames.txt", [f"{wnid} {name}" for wnid, name in classes])
    _wnid_tree(w, "images/train", classes, w.n_train)
    _wnid_tree(w, "images/val", classes, w.n_test)
    return []


def _imagenet_sketch(w: _Writer) -> list[Record]:
    classes = _imagenet_classes(w.n_classes)
    w.text("classnames.txt", [f"{wnid} {name}" for wnid, name in classes])
    _wnid_tree(w, "images", classes, w.n_test)
    return []


def _imagenet_subset(image_folder: str) -> Callable[[_Writer], list[Record]]:
    """ImageNet-A/-R: every other class of a list twice as long (like 200 of 1000), plus a README.txt."""

    def make(w: _Writer) -> list[Record]:
        classes = _imagenet_classes(2 * w.n_classes)
        w.text("classnames.txt", [f"{wnid} {name}" for wnid, name in classes])
        _wnid_tree(w, image_folder, classes[1::2], w.n_test)
        w.text(f"{image_folder}/README.txt", ["Synthetic stand-in."])
        return []

    return make


def _imagenetv2(w: _Writer) -> list[Record]:
    classes = _imagenet_classes(w.n_classes)
    w.text("classnames.txt", [f"{wnid} {name}" for wnid, name in classes])
    for label in range(w.n_classes):
        for i in range(w.n_test):
            w.image(f"imagenetv2-matched-frequency-format-val/{label}/{label:04d}{i:04d}.jpeg", label)
    return []


# --- MetaPrompt's domain-generalisation datasets (datasets/dg.py) -------------------------------------
# Every domain holds every class (DomainNet's painting train list lacks one, as the release lacks t-shirt);
# class c of domain d has n_train + (c + d) % 2 train images, so groups differ in size across domains.

DG_POOLS = {
    "PACSFS": ["dog", "elephant", "giraffe", "guitar", "horse", "house", "person"],
    "OfficeHomeFS": ["Alarm_Clock", "Backpack", "Batteries", "Bed", "Bike", "Bottle", "Bucket", "Calculator"],
    "VLCSFS": ["0", "1", "2", "3", "4"],  # the release numbers its class folders (bird, car, chair, dog, person)
    "DomainNetFS": ["aircraft_carrier", "airplane", "alarm_clock", "ambulance", "angel", "animal_migration", "ant"],
}


def _dg_classes(w: _Writer, name: str) -> list[str]:
    pool = DG_POOLS[name]
    if w.n_classes > len(pool):
        raise ValueError(f"synthetic {name} has at most {len(pool)} classes, asked for {w.n_classes}")
    return pool[: w.n_classes]


def _pacs(w: _Writer) -> list[Record]:
    """images/<domain>/<class>/<image> and splits/<domain>_{train,crossval,test}_kfold.txt (labels from 1);
    test_kfold lists the whole domain and is not read. Sketches are .png, and sketch_train_kfold.txt lists
    the undecodable sketch/dog/n02103406_4068-1.png of the release, which the loaders skip."""
    classes = _dg_classes(w, "PACSFS")
    for d, domain in enumerate(PACSFS.domains):
        ext = ".png" if domain == "sketch" else ".jpg"
        lines: dict[str, list[str]] = {"train": [], "crossval": []}
        for c, cls in enumerate(classes):
            n = {"train": w.n_train + (c + d) % 2, "crossval": w.n_val}
            for part in ("train", "crossval"):
                for i in range(n[part]):
                    rel = f"{domain}/{cls}/{part[0]}{i:03d}_{cls}{ext}"
                    w.image(f"images/{rel}", c)
                    lines[part].append(f"{rel} {c + 1}")
            if domain == "sketch" and cls == "dog":
                broken = ERROR_PATHS[0]
                os.makedirs(os.path.dirname(os.path.join(w.dataset_dir, "images", broken)), exist_ok=True)
                with open(os.path.join(w.dataset_dir, "images", broken), "wb") as f:
                    f.write(b"not an image")
                lines["train"].append(f"{broken} {c + 1}")
        for part, part_lines in lines.items():
            w.text(f"splits/{domain}_{part}_kfold.txt", part_lines)
        w.text(f"splits/{domain}_test_kfold.txt", lines["train"] + lines["crossval"])
    return []


def _class_folder_domains(w: _Writer, name: str, domains: list[str], parts: tuple[str, ...]) -> None:
    """<domain>/<part>/<class>/<image>.jpg for the first two parts (train, val); a third part gets n_test."""
    classes = _dg_classes(w, name)
    for d, domain in enumerate(domains):
        for c, cls in enumerate(classes):
            counts = (w.n_train + (c + d) % 2, w.n_val, w.n_test)
            for part, n in zip(parts, counts, strict=False):
                for i in range(n):
                    w.image(f"{domain}/{part}/{cls}/{domain}_{part}_{c:02d}_{i:04d}.jpg", c)


def _office_home(w: _Writer) -> list[Record]:
    """<domain>/{train,val}/<Class>/*.jpg, plus one .png per domain that the loaders ignore (only *.jpg)."""
    _class_folder_domains(w, "OfficeHomeFS", OfficeHomeFS.domains, ("train", "val"))
    for domain in OfficeHomeFS.domains:
        w.image(f"{domain}/train/{DG_POOLS['OfficeHomeFS'][0]}/not_read.png", 0)
    return []


def _vlcs(w: _Writer) -> list[Record]:
    """<DOMAIN>/{train,crossval,test}/<0..4>/*.jpg (the release's full/ folder, never read, is left out)."""
    _class_folder_domains(w, "VLCSFS", [d.upper() for d in VLCSFS.domains], ("train", "crossval", "test"))
    return []


def _domainnet(w: _Writer) -> list[Record]:
    """<domain>/<class>/<image>.jpg and splits/<domain>_{train,test}.txt (labels from 0); painting_train.txt
    lacks the last class, as the release's lacks t-shirt."""
    classes = _dg_classes(w, "DomainNetFS")
    for d, domain in enumerate(DomainNetFS.domains):
        lines: dict[str, list[str]] = {"train": [], "test": []}
        for c, cls in enumerate(classes):
            for part, n in (("train", w.n_train + (c + d) % 2), ("test", w.n_test)):
                for i in range(n):
                    rel = f"{domain}/{cls}/{domain}_{c:03d}_{part[:2]}{i:04d}.jpg"
                    w.image(rel, c)
                    if not (domain == "painting" and part == "train" and c == len(classes) - 1):
                        lines[part].append(f"{rel} {c}")
        for part, part_lines in lines.items():
            w.text(f"splits/{domain}_{part}.txt", part_lines)
    return []


# registry name -> (config file stem, folder under the root, writer, split json name or "")
LAYOUTS: dict[str, tuple[str, str, Callable[[_Writer], list[Record]], str]] = {
    "ImageNet": ("imagenet", "imagenet", _imagenet, ""),
    "Caltech101": ("caltech101", "caltech-101", _caltech101, "split_zhou_Caltech101.json"),
    "OxfordPets": ("oxford_pets", "oxford_pets", _oxford_pets, "split_zhou_OxfordPets.json"),
    "StanfordCars": ("stanford_cars", "stanford_cars", _stanford_cars, "split_zhou_StanfordCars.json"),
    "OxfordFlowers": ("oxford_flowers", "oxford_flowers", _oxford_flowers, "split_zhou_OxfordFlowers.json"),
    "Food101": ("food101", "food-101", _food101, "split_zhou_Food101.json"),
    "FGVCAircraft": ("fgvc_aircraft", "fgvc_aircraft", _fgvc_aircraft, ""),
    "SUN397": ("sun397", "sun397", _sun397, "split_zhou_SUN397.json"),
    "DescribableTextures": ("dtd", "dtd", _dtd, "split_zhou_DescribableTextures.json"),
    "EuroSAT": ("eurosat", "eurosat", _eurosat, "split_zhou_EuroSAT.json"),
    "UCF101": ("ucf101", "ucf101", _ucf101, "split_zhou_UCF101.json"),
    "ImageNetV2": ("imagenetv2", "imagenetv2", _imagenetv2, ""),
    "ImageNetSketch": ("imagenet_sketch", "imagenet-sketch", _imagenet_sketch, ""),
    "ImageNetA": ("imagenet_a", "imagenet-adversarial", _imagenet_subset("imagenet-a"), ""),
    "ImageNetR": ("imagenet_r", "imagenet-rendition", _imagenet_subset("imagenet-r"), ""),
}
DATASETS = tuple(LAYOUTS)
DG_LAYOUTS: dict[str, tuple[str, str, Callable[[_Writer], list[Record]], str]] = {
    "PACSFS": ("pacs", "pacs", _pacs, ""),
    "OfficeHomeFS": ("office_home", "office_home", _office_home, ""),
    "VLCSFS": ("vlcs", "vlcs", _vlcs, ""),
    "DomainNetFS": ("domainnet", "domainnet", _domainnet, ""),
}
DG_DATASETS = tuple(DG_LAYOUTS)
LAYOUTS.update(DG_LAYOUTS)
CONFIG_NAMES = {stem: name for name, (stem, *_rest) in LAYOUTS.items()}


def make_dataset(
    name: str,
    root: str,
    n_classes: int = 4,
    n_train: int = 8,
    n_val: int = 2,
    n_test: int = 3,
    size: int = 32,
    seed: int = 0,
    with_split: bool = True,
) -> str:
    """Write a synthetic ``name`` dataset under ``root`` and return its folder.

    ``name`` is a DATASET.NAME (``"DescribableTextures"``, ``"PACSFS"``) or a config file stem (``"dtd"``).
    Splitting needs a few images per class (50/20/30 per class with rounding, 20 % val of
    trainval), so keep ``n_train + n_val + n_test >= 5`` when ``with_split`` is False. ``seed``
    only changes the noise. An existing folder is written over, not cleared.
    """
    name = CONFIG_NAMES.get(name, name)
    if name not in LAYOUTS:
        raise ValueError(f"Unknown dataset {name!r}; choose from {', '.join(LAYOUTS)} or {', '.join(CONFIG_NAMES)}")
    _, folder, write, split_file = LAYOUTS[name]
    dataset_dir = os.path.join(os.path.abspath(root), folder)
    writer = _Writer(dataset_dir, n_classes, n_train, n_val, n_test, size, random.Random(f"{name}-{seed}"))
    records = write(writer)
    if split_file and with_split:
        split = {s: [[rel, y, c] for s2, rel, y, c in records if s2 == s] for s in ("train", "val", "test")}
        with open(os.path.join(dataset_dir, split_file), "w") as f:
            json.dump(split, f, indent=4)
    return dataset_dir


def make_all(root: str, **kwargs: int | bool) -> dict[str, str]:
    """Every dataset under one ``root`` (the same keyword arguments as ``make_dataset``); name -> folder."""
    return {name: make_dataset(name, root, **kwargs) for name in DATASETS}
