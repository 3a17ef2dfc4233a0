"""Rebuilt split files (StanfordCars and OxfordFlowers from their MATLAB labels, against CoOp's rule written
out by hand here), the loud rebuilt-split flag, and the ImageFolder dataset for your own data."""
from __future__ import annotations

import contextlib
import io
import json
import os
import random
import sys

import pytest
from PIL import Image

import datasets  # noqa: F401  (registers the datasets)
from dassl.config import get_cfg_default
from dassl.data.datasets import build_dataset
from datasets.synthetic import make_dataset, write_flowers_labels
from datasets.utils import DatasetError
from tests.test_datasets import build, items, make_cfg

pytest.importorskip("scipy.io")


def expected_trainval(trainval: list[tuple[str, int, str]], seed_state) -> tuple[list, list]:
    """CoOp's OxfordPets.split_trainval: per label in first-appearance order, shuffle the indices,
    the first round(n * 0.2) go to val."""
    random.setstate(seed_state)
    by_label: dict[int, list[int]] = {}
    for i, (_, y, _) in enumerate(trainval):
        by_label.setdefault(y, []).append(i)
    train, val = [], []
    for idxs in by_label.values():
        n_val = round(len(idxs) * 0.2)
        random.shuffle(idxs)
        for k, i in enumerate(idxs):
            (val if k < n_val else train).append(trainval[i])
    return train, val


def test_stanford_cars_split_rebuilt_from_the_devkit_as_coop(tmp_path, capsys):
    ddir = make_dataset("stanford_cars", tmp_path, size=8, with_split=False)
    # By hand: the synthetic devkit lists cars_train/00001.jpg.. class by class (8 train + 2 val images per
    # class go to cars_train, 3 per class to cars_test) with names "<make model> <year>".
    names = ["2012 Tesla Model S Sedan", "2012 BMW M3 Coupe", "2007 Volvo 240 Sedan", "2009 Spyker C8 Coupe"]
    trainval = [(os.path.join(ddir, "cars_train", f"{10 * y + k + 1:05d}.jpg"), y, names[y]) for y in range(4)
                for k in range(10)]  # fmt: skip
    test = [(os.path.join(ddir, "cars_test", f"{3 * y + k + 1:05d}.jpg"), y, names[y]) for y in range(4)
            for k in range(3)]  # fmt: skip
    random.seed(1)
    train, val = expected_trainval(trainval, random.getstate())

    random.seed(1)
    ds = build_dataset(make_cfg(tmp_path, "StanfordCars", seed=1))  # not silenced: the warning is printed
    assert (items(ds.train_x), items(ds.val), items(ds.test)) == (train, val, test)
    assert ds.split_rebuilt is True and "not the published file" in ds.split_source
    out = capsys.readouterr().out
    assert "WARNING: StanfordCars: using a REBUILT split" in out
    split = json.load(open(os.path.join(ddir, "split_zhou_StanfordCars.json")))
    assert split["test"][0] == ["cars_test/00001.jpg", 0, "2012 Tesla Model S Sedan"]  # CoOp's relative paths
    # A later run reads the file, and still says it is not the published one.
    again = build(tmp_path, "StanfordCars", seed=2)
    assert items(again.train_x) == train and again.split_rebuilt is True


def test_oxford_flowers_split_rebuilt_from_imagelabels_as_coop(tmp_path):
    ddir = make_dataset("oxford_flowers", tmp_path, n_classes=3, n_train=6, n_val=2, n_test=2, size=8,
                        with_split=False)  # fmt: skip
    # Relabel the 30 images so that classes first appear in the order 3, 1, 2 and are interleaved.
    labels = [3, 1, 2] * 10
    write_flowers_labels(ddir, labels)
    cat = json.load(open(os.path.join(ddir, "cat_to_name.json")))
    random.seed(7)
    tracker: dict[int, list[str]] = {}
    for i, y in enumerate(labels):
        tracker.setdefault(y, []).append(os.path.join(ddir, "jpg", f"image_{i + 1:05d}.jpg"))
    train, val, test = [], [], []
    for y, paths in tracker.items():
        random.shuffle(paths)
        n_train, n_val = round(len(paths) * 0.5), round(len(paths) * 0.2)
        train += [(p, y - 1, cat[str(y)]) for p in paths[:n_train]]
        val += [(p, y - 1, cat[str(y)]) for p in paths[n_train : n_train + n_val]]
        test += [(p, y - 1, cat[str(y)]) for p in paths[n_train + n_val :]]

    ds = build(tmp_path, "OxfordFlowers", seed=7)
    assert (items(ds.train_x), items(ds.val), items(ds.test)) == (train, val, test)
    assert ds.split_rebuilt and "imagelabels.mat" in ds.split_source
    assert os.path.exists(os.path.join(ddir, "split_zhou_OxfordFlowers.json.rebuilt"))


def test_published_split_is_not_flagged(tmp_path):
    make_dataset("oxford_flowers", tmp_path, size=8)
    ds = build(tmp_path, "OxfordFlowers")
    assert ds.split_rebuilt is False and ds.split_source is None


def test_rebuild_without_scipy_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    make_dataset("oxford_flowers", tmp_path, size=8, with_split=False)
    monkeypatch.setitem(sys.modules, "scipy.io", None)  # as if the data extra were not installed
    with pytest.raises(DatasetError) as err:
        build(tmp_path, "OxfordFlowers")
    assert 'pip install -e ".[data]"' in str(err.value) and "\n" not in str(err.value)


# --- ImageFolder: your own data ------------------------------------------------------------------------


def write_images(folder, n: int, colour: int) -> None:
    os.makedirs(folder, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (8, 8), (colour, 0, 0)).save(os.path.join(folder, f"{i:03d}.jpg"))


def folder_cfg(root, path, shots=-1, subsample="all", seed=1, **folder):
    cfg = get_cfg_default()
    cfg.merge_from_file(os.path.join(os.path.dirname(__file__), "..", "configs", "datasets", "folder.yaml"))
    cfg.SEED = seed
    cfg.VERBOSE = False
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.FOLDER.PATH = str(path)
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    for k, v in folder.items():
        cfg.DATASET.FOLDER[k.upper()] = v
    cfg.INPUT.SIZE = (8, 8)
    cfg.DATALOADER.NUM_WORKERS = 0
    return cfg


def build_folder(cfg):
    random.seed(cfg.SEED)
    with contextlib.redirect_stdout(io.StringIO()):
        return build_dataset(cfg)


def test_image_folder_builds_split_fewshot_and_base_new(tmp_path):
    data = tmp_path / "my_data"
    for c, name in enumerate(["cat", "dog", "red_fox", "zebra"]):
        write_images(data / name, 10, 40 * c)
    (data / "names.txt").write_text("cat cat\ndog dog\nred_fox red fox\nzebra zebra\n")
    ds = build_folder(folder_cfg(tmp_path, "my_data", CLASSNAMES="names.txt", TEMPLATE="a photo of a {}, an animal."))
    assert ds.classnames == ["cat", "dog", "red fox", "zebra"] and (len(ds.train_x), len(ds.val), len(ds.test)) == (
        20, 8, 12)  # fmt: skip
    assert ds.template == "a photo of a {}, an animal." and ds.split_rebuilt is False
    split = json.load(open(data / "split.json"))
    assert split["train"][0][0].startswith(("cat/", "dog/", "red_fox/", "zebra/"))

    base = build_folder(folder_cfg(tmp_path, data, shots=2, subsample="base", CLASSNAMES="names.txt"))
    new = build_folder(folder_cfg(tmp_path, data, shots=2, subsample="new", CLASSNAMES="names.txt"))
    assert base.classnames == ["cat", "dog"] and new.classnames == ["red fox", "zebra"]
    assert len(base.train_x) == 4 and len(new.test) == 6
    assert os.path.exists(data / "split_fewshot" / "shot_2-seed_1.pkl")
    # The written split is reused: the same test set whatever the seed.
    assert items(build_folder(folder_cfg(tmp_path, data, seed=5)).test) == items(ds.test)


def test_image_folder_with_train_test_folders_through_the_data_manager(tmp_path):
    from dassl.data import DataManager

    data = tmp_path / "pre_split"
    for c, name in enumerate(["a", "b", "c"]):
        write_images(data / "train" / name, 5, 60 * c)
        write_images(data / "test" / name, 2, 60 * c)
    cfg = folder_cfg(tmp_path, data, shots=4)
    random.seed(1)
    with contextlib.redirect_stdout(io.StringIO()):
        dm = DataManager(cfg)
    assert dm.num_classes == 3 and dm.lab2cname == {0: "a", 1: "b", 2: "c"}
    assert len(dm.dataset.train_x) == 12 and len(dm.dataset.test) == 6 and len(dm.dataset.val) == 3
    assert all("/test/" in d.impath for d in dm.dataset.test)
    batch = next(iter(dm.test_loader))
    assert batch["img"].shape[1:] == (3, 8, 8)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DatasetError, match=r"DATASET.FOLDER.PATH is empty"):
        build_folder(folder_cfg(tmp_path, ""))
    with pytest.raises(DatasetError, match=r"dataset folder not found"):
        build_folder(folder_cfg(tmp_path, "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no class sub-folders"):
        build_folder(folder_cfg(tmp_path, "empty"))
    write_images(tmp_path / "d" / "x", 5, 0)
    with pytest.raises(DatasetError, match=r'TEMPLATE must contain "\{\}"'):
        build_folder(folder_cfg(tmp_path, "d", TEMPLATE="no slot"))
