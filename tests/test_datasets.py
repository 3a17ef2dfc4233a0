"""Datasets layer: loaders on synthetic data, splits, few-shot sampling as upstream, caches, errors."""
from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import random

import pytest
import yaml
from PIL import ImageStat
from yacs.config import CfgNode as CN

import datasets  # noqa: F401  (registers the 15 datasets)
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum, base_dataset, build_dataset
from dassl.utils.tools import read_image
from datasets.synthetic import CONFIG_NAMES, DATASETS, DG_DATASETS, make_dataset
from datasets.utils import DatasetError, read_split, subsample_classes, write_split

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEST_ONLY = ("ImageNetV2", "ImageNetSketch", "ImageNetA", "ImageNetR")
EXPECTED_NAMES = {
    "ImageNet": ["tench", "goldfish", "great white shark", "tiger shark"],
    "Caltech101": ["face", "motorbike", "accordion", "airplane"],
    "OxfordPets": ["abyssinian", "american_bulldog", "bengal", "beagle"],
    "StanfordCars": ["2012 Tesla Model S Sedan", "2012 BMW M3 Coupe", "2007 Volvo 240 Sedan", "2009 Spyker C8 Coupe"],
    "OxfordFlowers": ["pink primrose", "hard-leaved pocket orchid", "canterbury bells", "sweet pea"],
    "Food101": ["apple_pie", "baby_back_ribs", "baklava", "beef_carpaccio"],
    "FGVCAircraft": ["707-320", "A300B4", "Boeing 717", "F/A-18"],
    "SUN397": ["abbey", "outdoor apartment_building", "shop bakery", "ballroom"],
    "DescribableTextures": ["banded", "blotchy", "braided", "bubbly"],
    "EuroSAT": ["Annual Crop Land", "Forest", "Herbaceous Vegetation Land", "Highway or Road"],
    "UCF101": ["Apply_Eye_Makeup", "Archery", "Baby_Crawling", "Balance_Beam"],
    "ImageNetV2": ["tench", "goldfish", "great white shark", "tiger shark"],
    "ImageNetSketch": ["tench", "goldfish", "great white shark", "tiger shark"],
    "ImageNetA": ["goldfish", "tiger shark", "electric ray", "rooster"],  # every other class, relabelled 0..3
    "ImageNetR": ["goldfish", "tiger shark", "electric ray", "rooster"],
}


def make_cfg(root: str, name: str, shots: int = -1, subsample: str = "all", seed: int = 1) -> CN:
    cfg = CN()
    cfg.SEED = seed
    cfg.VERBOSE = False
    cfg.DATASET = CN()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    return cfg


def build(root: str, name: str, shots: int = -1, subsample: str = "all", seed: int = 1, reseed: bool = True):
    """Build like train.py: seed Python's random first (unless the caller controls it)."""
    if reseed:
        random.seed(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        return build_dataset(make_cfg(root, name, shots, subsample, seed))


def items(data: list[Datum] | None) -> list[tuple[str, int, str]]:
    return [(d.impath, d.label, d.classname) for d in data or []]


def per_label(data: list[Datum]) -> dict[int, list[Datum]]:
    groups: dict[int, list[Datum]] = {}
    for d in data:
        groups.setdefault(d.label, []).append(d)
    return groups


@pytest.mark.parametrize("name", DATASETS)
def test_synthetic_dataset_loads(tmp_path, name):
    make_dataset(name, tmp_path, size=8)
    ds = build(tmp_path, name)
    assert ds.classnames == EXPECTED_NAMES[name]
    assert ds.num_classes == 4 and ds.lab2cname == dict(enumerate(EXPECTED_NAMES[name]))
    if name in TEST_ONLY:
        assert (len(ds.train_x), ds.val, len(ds.test)) == (12, None, 12)
    elif name == "ImageNet":  # the official val set is the test set and also validates
        assert (len(ds.train_x), len(ds.val), len(ds.test)) == (32, 12, 12)
    else:
        assert (len(ds.train_x), len(ds.val), len(ds.test)) == (32, 8, 12)
    for split in (ds.train_x, ds.val, ds.test):
        assert all(os.path.isfile(d.impath) and d.classname == ds.lab2cname[d.label] for d in split or [])


BUILDS_SPLIT = ("DescribableTextures", "Caltech101", "EuroSAT", "Food101", "OxfordPets", "SUN397", "UCF101")


@pytest.mark.parametrize("name", BUILDS_SPLIT)
def test_missing_split_is_built_and_saved(tmp_path, name):
    ddir = make_dataset(name, tmp_path, size=8, with_split=False)
    ds = build(tmp_path, name)
    assert ds.classnames == EXPECTED_NAMES[name]
    counts = [len(s) // 4 for s in (ds.train_x, ds.val, ds.test)]
    # 13 images per class split 50/20/30 with Python's round (6.5 -> 6); trainval 10 -> 20 % val = 2
    assert counts == ([6, 3, 4] if name in BUILDS_SPLIT[:4] else [8, 2, 3])
    split_file = os.path.join(ddir, f"split_zhou_{name}.json")
    again = build(tmp_path, name, seed=2)  # now read from the json: same split whatever the seed
    assert [items(getattr(ds, s)) for s in ("train_x", "val", "test")] == [
        items(getattr(again, s)) for s in ("train_x", "val", "test")
    ]
    assert sorted(os.listdir(ddir)).count(os.path.basename(split_file)) == 1
    assert not [f for f in os.listdir(ddir) if f.endswith((".tmp", ".lock"))]


def test_built_split_follows_coop_procedure(tmp_path):
    """Sorted categories, os.listdir order, random.shuffle per category, round() counts (seeded first)."""
    ddir = make_dataset("dtd", tmp_path, n_train=5, n_val=3, n_test=3, size=8, with_split=False)
    ds = build(tmp_path, "DescribableTextures", seed=7)
    random.seed(7)
    image_dir = os.path.join(ddir, "images")
    expected: dict[str, list] = {"train": [], "val": [], "test": []}
    for label, cat in enumerate(sorted(os.listdir(image_dir))):
        ims = [os.path.join(image_dir, cat, f) for f in os.listdir(os.path.join(image_dir, cat))]
        random.shuffle(ims)  # 11 images: round(5.5) = 6 train, round(2.2) = 2 val, 3 test
        for split, part in zip(expected, (ims[:6], ims[6:8], ims[8:]), strict=True):
            expected[split] += [(p, label, cat) for p in part]
    assert [items(ds.train_x), items(ds.val), items(ds.test)] == list(expected.values())
    saved = json.load(open(os.path.join(ddir, "split_zhou_DescribableTextures.json")))
    assert saved["val"][0] == [os.path.relpath(expected["val"][0][0], image_dir), expected["val"][0][1], "banded"]


@pytest.mark.parametrize("n_classes, n_base", [(4, 2), (5, 3)])
def test_base_new_subsampling(tmp_path, n_classes, n_base):
    make_dataset("dtd", tmp_path, n_classes=n_classes, size=8)
    full = build(tmp_path, "DescribableTextures")
    base = build(tmp_path, "DescribableTextures", subsample="base")
    new = build(tmp_path, "DescribableTextures", subsample="new")
    assert base.classnames == full.classnames[:n_base] and new.classnames == full.classnames[n_base:]
    for attr in ("train_x", "val", "test"):
        whole, b, n = (items(getattr(d, attr)) for d in (full, base, new))
        assert b == [x for x in whole if x[1] < n_base]
        assert n == [(p, y - n_base, c) for p, y, c in whole if y >= n_base]


def test_subsample_classes_rejects_unknown_mode():
    with pytest.raises(DatasetError, match="SUBSAMPLE_CLASSES"):
        subsample_classes([Datum("a.jpg", 0)], subsample="novel")


def _hand_items() -> list[Datum]:
    labels = [2, 0, 2, 1, 0, 2, 1, 0, 2, 1, 0, 2]
    return [Datum(f"img{i}.jpg", y, classname=f"c{y}") for i, y in enumerate(labels)]


def test_fewshot_matches_upstream_rule_by_hand():
    data = _hand_items()
    random.seed(1)
    got = DatasetBase.generate_fewshot_dataset(DatasetBase.__new__(DatasetBase), data, num_shots=2)
    random.seed(1)
    expected = []
    for label in (2, 0, 1):  # the order in which labels first appear
        expected += random.sample([d for d in data if d.label == label], 2)
    assert [d.impath for d in got] == [d.impath for d in expected]
    # the same draws written out, so a change in Python's sampler is noticed too
    assert [d.impath for d in got] == ["img2.jpg", "img0.jpg", "img7.jpg", "img1.jpg", "img6.jpg", "img9.jpg"]


def test_fewshot_small_class_keeps_all_without_random_numbers():
    data = _hand_items()  # 3 to 5 items per class
    base = DatasetBase.__new__(DatasetBase)
    random.seed(3)
    state = random.getstate()
    assert base.generate_fewshot_dataset(data, num_shots=6) == [d for y in (2, 0, 1) for d in data if d.label == y]
    assert random.getstate() == state
    got = base.generate_fewshot_dataset(data, num_shots=6, repeat=True)
    random.setstate(state)
    assert got == [d for y in (2, 0, 1) for d in random.choices([d for d in data if d.label == y], k=6)]
    assert base.generate_fewshot_dataset(data, num_shots=-1) is data


def test_fewshot_dataset_matches_hand_sampling_and_is_deterministic(tmp_path):
    ddir = make_dataset("oxford_pets", tmp_path, n_val=5, size=8)
    train, val, _ = read_split(os.path.join(ddir, "split_zhou_OxfordPets.json"), os.path.join(ddir, "images"))
    ds = build(tmp_path, "OxfordPets", shots=3, seed=1)
    random.seed(1)
    expected_train = [d for g in per_label(train).values() for d in random.sample(g, 3)]
    expected_val = [d for g in per_label(val).values() for d in random.sample(g, 3)]  # min(K, 4)
    assert items(ds.train_x) == items(expected_train) and items(ds.val) == items(expected_val)

    other = build(tmp_path, "OxfordPets", shots=3, seed=2)
    assert items(other.train_x) != items(ds.train_x)
    os.remove(os.path.join(ddir, "split_fewshot", "shot_3-seed_1.pkl"))
    assert items(build(tmp_path, "OxfordPets", shots=3, seed=1).train_x) == items(ds.train_x)


def test_fewshot_cache_round_trip_consumes_no_random_numbers(tmp_path):
    ddir = make_dataset("dtd", tmp_path, size=8)
    first = build(tmp_path, "DescribableTextures", shots=2, subsample="base", seed=1)
    cache = os.path.join(ddir, "split_fewshot", "shot_2-seed_1.pkl")
    data = pickle.load(open(cache, "rb"))
    assert set(data) == {"train", "val"}
    assert len({d.label for d in data["train"]}) == 4  # written before base/new subsampling
    random.seed(99)
    state = random.getstate()
    second = build(tmp_path, "DescribableTextures", shots=2, subsample="base", seed=1, reseed=False)
    assert random.getstate() == state
    assert items(second.train_x) == items(first.train_x) and items(second.val) == items(first.val)
    assert not [f for f in os.listdir(os.path.dirname(cache)) if f != "shot_2-seed_1.pkl"]


def test_imagenet_caches_scan_and_fewshot_train_only(tmp_path):
    ddir = make_dataset("imagenet", tmp_path, size=8)
    ds = build(tmp_path, "ImageNet", shots=2)
    assert len(ds.train_x) == 8 and items(ds.val) == items(ds.test)
    assert set(pickle.load(open(os.path.join(ddir, "split_fewshot", "shot_2-seed_1.pkl"), "rb"))) == {"train"}
    extra = os.path.join(ddir, "images", "val", "n01440764", "extra.JPEG")
    os.link(ds.test[0].impath, extra)  # a new file is not seen: the scan comes from preprocessed.pkl
    assert extra not in {d.impath for d in build(tmp_path, "ImageNet").test}


def test_test_only_variants_skip_readme_and_use_sorted_folder_index(tmp_path):
    ddir = make_dataset("imagenet_r", tmp_path, size=8)
    assert os.path.isfile(os.path.join(ddir, "imagenet-r", "README.txt"))
    ds = build(tmp_path, "ImageNetR")
    folders = sorted(f for f in os.listdir(os.path.join(ddir, "imagenet-r")) if f.startswith("n"))
    labels = {os.path.basename(os.path.dirname(d.impath)): d.label for d in ds.test}
    assert labels == {f: i for i, f in enumerate(folders)}


def test_pickle_of_upstream_datum_loads(tmp_path, monkeypatch):
    """Few-shot pickles made by upstream hold dassl.data.datasets.base_dataset.Datum with these attributes."""

    class UpstreamDatum:
        def __init__(self, impath, label, classname):
            self._impath, self._label, self._domain, self._classname = impath, label, 0, classname

    ddir = make_dataset("dtd", tmp_path, size=8)
    ours = build(tmp_path, "DescribableTextures")
    UpstreamDatum.__module__, UpstreamDatum.__qualname__ = "dassl.data.datasets.base_dataset", "Datum"
    with monkeypatch.context() as m:
        m.setattr(base_dataset, "Datum", UpstreamDatum)
        pick = [UpstreamDatum(d.impath, d.label, d.classname) for d in ours.train_x[::8]]
        blob = pickle.dumps({"train": pick, "val": pick[:2]}, protocol=pickle.HIGHEST_PROTOCOL)
    os.makedirs(os.path.join(ddir, "split_fewshot"))
    with open(os.path.join(ddir, "split_fewshot", "shot_1-seed_5.pkl"), "wb") as f:
        f.write(blob)
    ds = build(tmp_path, "DescribableTextures", shots=1, seed=5)
    assert all(type(d) is Datum for d in ds.train_x)
    assert items(ds.train_x) == items(ours.train_x[::8]) and ds.train_x[0].domain == 0


def test_split_json_round_trip(tmp_path):
    prefix = str(tmp_path / "images")
    train = [Datum(os.path.join(prefix, "a", "1.jpg"), 0, classname="a")]
    path = str(tmp_path / "split.json")
    write_split(train, train, train, path, prefix)
    assert json.load(open(path))["train"] == [["a/1.jpg", 0, "a"]]
    assert [items(s) for s in read_split(path, prefix)] == [items(train)] * 3


# --- bad input: one clear message each ------------------------------------------------------------


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset root .*nowhere.*README\.md#data"):
        build(tmp_path / "nowhere", "DescribableTextures")


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"dataset folder not found: .*dtd\. See README\.md#data"):
        build(tmp_path, "DescribableTextures")


@pytest.mark.parametrize(("name", "mat"), [("OxfordFlowers", "imagelabels.mat"), ("StanfordCars", "cars_meta.mat")])
def test_missing_split_and_label_files(tmp_path, name, mat):
    ddir = make_dataset(name, tmp_path, size=8, with_split=False)
    for folder, _, files in os.walk(ddir):
        if mat in files:
            os.remove(os.path.join(folder, mat))
    with pytest.raises(DatasetError, match=rf"{mat}.*split_zhou_{name}\.json.*README\.md#data"):
        build(tmp_path, name)


def test_missing_annotations_when_split_missing(tmp_path):
    ddir = make_dataset("oxford_pets", tmp_path, size=8, with_split=False)
    os.remove(os.path.join(ddir, "annotations", "trainval.txt"))
    with pytest.raises(DatasetError, match=r"trainval\.txt.*split_zhou_OxfordPets\.json.*README\.md#data"):
        build(tmp_path, "OxfordPets")


@pytest.mark.parametrize("name", ["ImageNet", "ImageNetA"])
def test_missing_classnames_file(tmp_path, name):
    ddir = make_dataset(name, tmp_path, size=8)
    os.remove(os.path.join(ddir, "classnames.txt"))
    with pytest.raises(DatasetError, match=r"class-name file not found: .*classnames\.txt.*README\.md#data"):
        build(tmp_path, name)


def test_images_missing_on_disk_are_reported_before_training(tmp_path):
    ddir = make_dataset("dtd", tmp_path, size=8)
    gone = sorted(os.path.join(ddir, "images", "braided", f"braided_000{i}.jpg") for i in (3, 9))
    for p in gone:
        os.remove(p)
    with pytest.raises(DatasetError) as err:
        build(tmp_path, "DescribableTextures")
    msg = str(err.value)
    assert "2 of 52 images are missing" in msg and gone[0] in msg and gone[1] in msg and "README.md#data" in msg


def test_unreadable_image_names_the_file(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(OSError, match="broken.jpg"):
        read_image(str(bad))


def test_unknown_dataset_name_lists_registered():
    with pytest.raises(ValueError, match=r'Unknown dataset "Nope".*DescribableTextures.*import datasets'):
        build_dataset(make_cfg("/tmp", "Nope"))


# --- configs and the synthetic generator ---------------------------------------------------------


def test_dataset_configs_name_registered_datasets():
    cfg_dir = os.path.join(REPO, "configs", "datasets")
    names = {f[:-5]: yaml.safe_load(open(os.path.join(cfg_dir, f)))["DATASET"]["NAME"] for f in os.listdir(cfg_dir)}
    names.pop("folder")  # the generic dataset for your own data (tests/test_datasets_splits.py)
    assert names == CONFIG_NAMES
    assert set(names.values()) == set(DATASETS) | set(DG_DATASETS) <= set(DATASET_REGISTRY.registered_names())


def test_synthetic_images_encode_the_class_and_keep_global_random(tmp_path):
    random.seed(0)
    state = random.getstate()
    make_dataset("eurosat", tmp_path, n_classes=3, size=16, seed=4)
    assert random.getstate() == state
    ds = build(tmp_path, "EuroSAT")
    means: dict[int, list[list[float]]] = {}
    for d in ds.train_x:
        means.setdefault(d.label, []).append(ImageStat.Stat(read_image(d.impath)).mean)

    def dist(a: list[float], b: list[float]) -> float:
        return max(abs(x - y) for x, y in zip(a, b, strict=True))

    spread = max(dist(m, ms[0]) for ms in means.values() for m in ms)  # within a class: noise only
    gap = min(dist(means[y][0], means[z][0]) for y, z in ((0, 1), (0, 2), (1, 2)))
    assert len(means) == 3 and spread < 25 < 100 < gap
