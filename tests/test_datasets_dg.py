"""MetaPrompt's domain-generalisation datasets (PACSFS, OfficeHomeFS, VLCSFS, DomainNetFS) on synthetic copies
of their releases: domains, classes, labels, splits and few-shot draws as the official loaders give them,
the held-out domain from DATASET.ID or --target-domains, and one error line per mistake.

Where expected values come from: the counts follow from the layout ``make_dataset`` writes (class c of
domain d has n_train + (c + d) % 2 train images, see datasets/synthetic.py) and the official rules
(MetaPrompt ca99607 datasets/{pacs,office_home,vlcs,domainnet}.py on Dassl c61a1b5): PACS's target test
set is train_kfold + crossval_kfold minus the undecodable sketch; DomainNet's val set is the sources'
test lists; labels from 1 in PACS lists, from 0 in DomainNet's, sorted folder position for Office-Home /
VLCS. The ``OFFICIAL_*`` pins were printed by MetaPrompt's own loaders run on the same synthetic trees
(upstream Dassl, outside this repo); the same harness found all four loaders identical to ours on 90
settings (every target; shots -1/1/2/5; seeds 1-3; item order, labels, domains, names, random state).
"""
from __future__ import annotations

import contextlib
import io
import os
import pickle
import random
import re
import subprocess
import sys
from collections import Counter

import pytest
from yacs.config import CfgNode as CN

import datasets  # noqa: F401  (registers the datasets)
import train
from dassl.data.datasets import build_dataset
from datasets.dg import DatasetError, resolve_domains
from datasets.synthetic import DG_DATASETS, make_dataset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = {"n_classes": 4, "n_train": 4, "n_val": 2, "n_test": 3, "size": 8}
DOMAINS = {
    "PACSFS": ["art_painting", "cartoon", "photo", "sketch"],
    "OfficeHomeFS": ["art", "clipart", "product", "real_world"],
    "VLCSFS": ["caltech", "labelme", "pascal", "sun"],
    "DomainNetFS": ["clipart", "infograph", "painting", "quickdraw", "real", "sketch"],
}
CLASSNAMES = {
    "PACSFS": ["dog", "elephant", "giraffe", "guitar"],
    "OfficeHomeFS": ["alarm_clock", "backpack", "batteries", "bed"],  # folder names lower-cased
    "VLCSFS": ["bird", "car", "chair", "dog"],  # folders 0..3, named by MetaPrompt's VLCSFS
    "DomainNetFS": ["aircraft_carrier", "airplane", "alarm_clock", "ambulance"],
}
FOLDERS = {"PACSFS": "pacs", "OfficeHomeFS": "office_home", "VLCSFS": "vlcs", "DomainNetFS": "domainnet"}

# MetaPrompt's PACSFS, DATASET.ID 3 (sketch held out), NUM_SHOTS 2, seed 1: the train images per source
# domain, class by class (file stems), and random.random() right after the build.
OFFICIAL_PACS_2SHOT = {
    "art_painting": ["t001_dog", "t002_dog", "t000_elephant", "t002_elephant", "t000_giraffe", "t001_giraffe",
                     "t003_guitar", "t004_guitar"],
    "cartoon": ["t003_dog", "t001_dog", "t000_elephant", "t001_elephant", "t000_giraffe", "t003_giraffe",
                "t003_guitar", "t002_guitar"],
    "photo": ["t000_dog", "t002_dog", "t003_elephant", "t002_elephant", "t001_giraffe", "t002_giraffe",
              "t000_guitar", "t002_guitar"],
}  # fmt: skip
OFFICIAL_PACS_2SHOT_RANDOM_AFTER = 0.8955753946414917
# MetaPrompt's DomainNetFS, DATASET.ID 2 (painting held out), NUM_SHOTS 2, seed 1: the first two source domains.
OFFICIAL_DOMAINNET_2SHOT = {
    "clipart": ["clipart_000_tr0001", "clipart_000_tr0002", "clipart_001_tr0000", "clipart_001_tr0002",
                "clipart_002_tr0000", "clipart_002_tr0001", "clipart_003_tr0003", "clipart_003_tr0004"],
    "infograph": ["infograph_000_tr0003", "infograph_000_tr0001", "infograph_001_tr0000", "infograph_001_tr0001",
                  "infograph_002_tr0000", "infograph_002_tr0003", "infograph_003_tr0003", "infograph_003_tr0002"],
}  # fmt: skip
OFFICIAL_DOMAINNET_2SHOT_RANDOM_AFTER = 0.7327658089218658


def make_cfg(root, name: str, shots: int = -1, seed: int = 1, id_: int = -1, sources=(), targets=(), subsample="all"):
    cfg = CN()
    cfg.SEED = seed
    cfg.VERBOSE = False
    cfg.DATASET = CN()
    cfg.DATASET.ROOT = str(root)
    cfg.DATASET.NAME = name
    cfg.DATASET.NUM_SHOTS = shots
    cfg.DATASET.SUBSAMPLE_CLASSES = subsample
    cfg.DATASET.ID = id_
    cfg.DATASET.SOURCE_DOMAINS = list(sources)
    cfg.DATASET.TARGET_DOMAINS = list(targets)
    return cfg


def build(root, name: str, **kwargs):
    """Seed Python's random as train.py does, then build; (dataset, printed text)."""
    random.seed(kwargs.get("seed", 1))
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        ds = build_dataset(make_cfg(root, name, **kwargs))
    return ds, out.getvalue()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("dg")
    for name in DG_DATASETS:
        make_dataset(name, str(root), **SIZES)
    return root


def n_train(name: str, domain: str, c: int) -> int:
    """Train images of class c in ``domain`` as the synthetic release holds them (see the module docstring)."""
    d = DOMAINS[name].index(domain)
    n = SIZES["n_train"] + (c + d) % 2
    if name == "DomainNetFS" and domain == "painting" and c == 3:
        return 0  # painting_train.txt lacks the last class, as the release lacks t-shirt
    return n


def expected_counts(name: str, target: str, part: str) -> Counter:
    """(domain index, label) -> images of ``part`` (train / val / test) for leave-``target``-out."""
    sources = [d for d in DOMAINS[name] if d != target]
    counts: Counter = Counter()
    if part == "test":
        for c in range(4):
            if name == "PACSFS":  # train_kfold + crossval_kfold; the broken sketch dog is skipped
                n = n_train(name, target, c) + SIZES["n_val"]
            elif name == "OfficeHomeFS":  # train/ + val/
                n = n_train(name, target, c) + SIZES["n_val"]
            else:  # VLCS test/, DomainNet <target>_test.txt
                n = SIZES["n_test"]
            counts[0, c] = n
        return counts
    for i, domain in enumerate(sources):
        for c in range(4):
            if part == "train":
                n = n_train(name, domain, c)
            else:
                n = SIZES["n_test"] if name == "DomainNetFS" else SIZES["n_val"]
            if n:
                counts[i, c] = n
    return counts


def domain_of(root, name: str, impath: str) -> str:
    """The domain folder an image sits in (PACS keeps them under images/; VLCS's are upper case)."""
    parts = os.path.relpath(impath, os.path.join(root, FOLDERS[name])).split(os.sep)
    return (parts[1] if name == "PACSFS" else parts[0]).lower()


def groups(items) -> Counter:
    return Counter((d.domain, d.label) for d in items)


@pytest.mark.parametrize("name", DG_DATASETS)
@pytest.mark.parametrize("held_out", [0, 2])
def test_domains_classes_labels_and_splits(world, name, held_out):
    target = DOMAINS[name][held_out]
    ds, printed = build(world, name, id_=held_out)
    sources = [d for d in DOMAINS[name] if d != target]
    assert (ds.source_domains, ds.target_domains) == (sources, [target])
    assert f"target (held-out) domain {target}; sources {', '.join(sources)}" in printed
    assert ds.classnames == CLASSNAMES[name] and ds.num_classes == 4
    for part, items in (("train", ds.train_x), ("val", ds.val), ("test", ds.test)):
        assert groups(items) == expected_counts(name, target, part), part
        for d in items:  # the domain label is the position of the image's domain among the sources (test: 0)
            assert d.classname == CLASSNAMES[name][d.label]
            assert domain_of(world, name, d.impath) == ([target] if part == "test" else sources)[d.domain]
            assert os.path.isfile(d.impath) and not d.impath.endswith("n02103406_4068-1.png")
    if name == "OfficeHomeFS":  # only *.jpg files are images to the official reader
        assert not any(d.impath.endswith(".png") for d in ds.train_x + ds.test)


def stems(items, domain_index: int) -> list[str]:
    return [os.path.splitext(os.path.basename(d.impath))[0] for d in items if d.domain == domain_index]


def test_pacs_fewshot_draw_is_the_official_one(world):
    ds, _ = build(world, "PACSFS", id_=3, shots=2)
    after = random.random()
    for i, domain in enumerate(["art_painting", "cartoon", "photo"]):
        assert stems(ds.train_x, i) == OFFICIAL_PACS_2SHOT[domain]
    assert after == OFFICIAL_PACS_2SHOT_RANDOM_AFTER  # the same number of draws, in the same order
    assert groups(ds.val) == Counter({(i, c): 2 for i in range(3) for c in range(4)})  # min(K, 4) per group
    assert groups(ds.test) == expected_counts("PACSFS", "sketch", "test")  # never sampled


def test_domainnet_fewshot_draw_is_the_official_one(world):
    ds, _ = build(world, "DomainNetFS", id_=2, shots=2)
    after = random.random()
    assert stems(ds.train_x, 0) == OFFICIAL_DOMAINNET_2SHOT["clipart"]
    assert stems(ds.train_x, 1) == OFFICIAL_DOMAINNET_2SHOT["infograph"]
    assert after == OFFICIAL_DOMAINNET_2SHOT_RANDOM_AFTER


@pytest.mark.parametrize("name", ["OfficeHomeFS", "VLCSFS"])
def test_fewshot_takes_k_per_domain_and_class(world, name):
    """Class-folder releases list images in directory order (file-system dependent), so the picks are not
    pinned; the group sizes are: K per (domain, class) of train, min(K, 4) of val, the whole test set."""
    full, _ = build(world, name, id_=1)
    ds, printed = build(world, name, id_=1, shots=5)
    target = DOMAINS[name][1]
    assert groups(ds.train_x) == Counter({g: min(5, n) for g, n in expected_counts(name, target, "train").items()})
    assert groups(ds.val) == Counter({g: min(4, n) for g, n in expected_counts(name, target, "val").items()})
    assert {d.impath for d in ds.train_x} <= {d.impath for d in full.train_x}
    assert [d.impath for d in ds.test] == [d.impath for d in full.test]
    assert "Creating a 5-shot dataset" in printed
    cache = os.path.join(world, FOLDERS[name], "split_fewshot", "1_shot_5-seed_1.pkl")
    assert os.path.isfile(cache)  # MetaPrompt's cache name: {DATASET.ID}_shot_{K}-seed_{SEED}.pkl
    with open(cache, "rb") as f:
        assert set(pickle.load(f)) == {"train", "val"}


def test_cache_is_reused_without_drawing(world, tmp_path):
    make_dataset("PACSFS", str(tmp_path), **SIZES)
    first, _ = build(tmp_path, "PACSFS", id_=0, shots=1, seed=7)
    random.seed(123)
    state = random.getstate()
    with contextlib.redirect_stdout(io.StringIO()) as out:
        again = build_dataset(make_cfg(tmp_path, "PACSFS", id_=0, shots=1, seed=7))
    assert random.getstate() == state and "Loading few-shot split from" in out.getvalue()
    assert [d.impath for d in again.train_x] == [d.impath for d in first.train_x]


def test_target_flag_equals_the_id_and_sources_keep_the_official_order(world):
    by_id, _ = build(world, "PACSFS", id_=3, shots=2, seed=2)
    by_flag, _ = build(world, "PACSFS", targets=["sketch"], shots=2, seed=2)
    shuffled, _ = build(world, "PACSFS", sources=["photo", "art_painting", "cartoon"], targets=["sketch"], shots=2,
                        seed=2)  # fmt: skip
    for ds in (by_flag, shuffled):
        assert ds.source_domains == ["art_painting", "cartoon", "photo"]
        for part in ("train_x", "val", "test"):
            assert [(d.impath, d.label, d.domain) for d in getattr(ds, part)] == [
                (d.impath, d.label, d.domain) for d in getattr(by_id, part)]  # fmt: skip


def test_a_subset_of_sources_has_its_own_cache(world):
    ds, _ = build(world, "VLCSFS", sources=["sun", "caltech"], targets=["pascal"], shots=1)
    assert ds.source_domains == ["caltech", "sun"] and ds.target_domains == ["pascal"]
    assert {d.domain for d in ds.train_x} == {0, 1}
    assert os.path.isfile(os.path.join(world, "vlcs", "split_fewshot", "2_caltech+sun_shot_1-seed_1.pkl"))


def test_an_id_wins_over_the_lists_as_in_metaprompts_yaml(world):
    """MetaPrompt's own YAML sets ID 0 with sketch as target: the ID holds out art_painting, with a note."""
    ds, printed = build(world, "PACSFS", id_=0, sources=["art_painting", "cartoon", "photo"], targets=["sketch"])
    assert ds.target_domains == ["art_painting"] and ds.source_domains == ["cartoon", "photo", "sketch"]
    assert "Note: DATASET.ID 0 holds out art_painting" in printed and "are not used" in printed
    _, quiet = build(world, "PACSFS", id_=3, sources=["art_painting", "cartoon", "photo"], targets=["sketch"])
    assert "Note:" not in quiet


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "PACSFS: no held-out domain: pass --target-domains DOMAIN (e.g. --target-domains sketch) or "
             "DATASET.ID N (0 = art_painting, 1 = cartoon, 2 = photo, 3 = sketch)"),
        ({"targets": ["sketch", "photo"]}, "--target-domains names 2 domains (sketch, photo); leave-one-domain-out"),
        ({"targets": ["skecth"]}, "unknown domain 'skecth' in --target-domains (DATASET.TARGET_DOMAINS); the "
                                  "domains are art_painting, cartoon, photo, sketch"),
        ({"sources": ["art"], "targets": ["sketch"]}, "unknown domain 'art' in --source-domains"),
        ({"id_": 4}, "DATASET.ID 4 is out of range: the held-out domain is one of 0 = art_painting"),
        ({"sources": ["sketch", "photo"], "targets": ["sketch"]}, "'sketch' is both a source"),
        ({"sources": ["photo", "photo"], "targets": ["sketch"]}, "--source-domains lists a domain twice"),
        ({"id_": 3, "subsample": "base"}, "DATASET.SUBSAMPLE_CLASSES base: domain generalisation has no base/new"),
    ],
)  # fmt: skip
def test_bad_domain_choices_are_one_message(world, kwargs, message):
    with pytest.raises(DatasetError) as err:
        build(world, "PACSFS", **kwargs)
    assert message in str(err.value) and str(err.value).endswith("See docs/data.md#multi-source-domain-generalisation.")


def test_resolution_needs_no_files():
    """train.py checks the choice before any file is read (the root does not exist here)."""
    choice, _ = resolve_domains("DomainNetFS", DOMAINS["DomainNetFS"], make_cfg("/nowhere", "", targets=["real"]))
    assert (choice.target, choice.target_id) == ("real", 4)
    assert choice.sources == ("clipart", "infograph", "painting", "quickdraw", "sketch")


def test_missing_domain_files_name_the_path_and_the_fix(tmp_path):
    ddir = make_dataset("PACSFS", str(tmp_path), **SIZES)
    os.remove(os.path.join(ddir, "splits", "photo_crossval_kfold.txt"))
    with pytest.raises(DatasetError, match=r"split list of domain photo not found: .*photo_crossval_kfold\.txt; "
                                           r"run `python -m datasets\.prepare --root .* pacs`"):  # fmt: skip
        build(tmp_path, "PACSFS", id_=3)
    os.remove(os.path.join(ddir, "splits", "sketch_test_kfold.txt"))  # never read: the target's test set is
    build(tmp_path, "PACSFS", targets=["sketch"], sources=["art_painting", "cartoon"])  # its train + crossval
    ddir = make_dataset("VLCSFS", str(tmp_path), **SIZES)
    os.rename(os.path.join(ddir, "SUN", "test"), os.path.join(ddir, "SUN", "full"))
    with pytest.raises(DatasetError, match=r"folder of domain SUN, part test not found: .*SUN/test"):
        build(tmp_path, "VLCSFS", targets=["sun"])


def test_missing_images_are_listed_before_training(tmp_path):
    ddir = make_dataset("DomainNetFS", str(tmp_path), **SIZES)
    os.remove(os.path.join(ddir, "real", "airplane", "real_001_te0001.jpg"))
    # 157 = 85 train (18 per source, 13 in painting) + 60 val (the sources' test lists) + 12 test
    missing = r"(?s)1 of 157 images are missing on disk.*real_001_te0001\.jpg.*docs/data\.md"
    with pytest.raises(DatasetError, match=missing):
        build(tmp_path, "DomainNetFS", targets=["real"])


def test_dassl_folder_names_get_a_rename_hint(tmp_path):
    make_dataset("OfficeHomeFS", str(tmp_path), **SIZES)
    os.rename(tmp_path / "office_home", tmp_path / "office_home_dg")
    hint = r"\(office_home_dg/ is there: MetaPrompt's loader reads office_home/, rename or symlink it\)"
    with pytest.raises(DatasetError, match=r"dataset folder not found: .*office_home " + hint):
        build(tmp_path, "OfficeHomeFS", id_=0)


def test_stray_file_among_class_folders_and_malformed_lines(tmp_path):
    ddir = make_dataset("VLCSFS", str(tmp_path), **SIZES)
    open(os.path.join(ddir, "CALTECH", "train", "readme.txt"), "w").close()
    with pytest.raises(DatasetError, match=r"readme\.txt is a file among the class folders"):
        build(tmp_path, "VLCSFS", id_=3)
    ddir = make_dataset("DomainNetFS", str(tmp_path), **SIZES)
    with open(os.path.join(ddir, "splits", "sketch_test.txt"), "a") as f:
        f.write("sketch/angel.jpg\n")
    with pytest.raises(DatasetError, match=r"sketch_test\.txt line 13 is not '<domain>/<class>/<image> <label>'"):
        build(tmp_path, "DomainNetFS", targets=["sketch"])


def run_train(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, os.path.join(REPO, "train.py"), *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip


def test_train_py_bad_target_is_one_error_line(tmp_path):
    cfg = os.path.join(REPO, "configs", "datasets", "pacs.yaml")
    base = ["--root", str(tmp_path), "--trainer", "ZeroshotCLIP", "--dataset-config-file", cfg, "--eval-only",
            "--output-dir", str(tmp_path / "out")]  # fmt: skip
    for extra, expected in (
        (["--target-domains", "sketches"], "error: PACSFS: unknown domain 'sketches' in --target-domains"),
        (["--source-domains", "photo", "--target-domains", "photo"], "error: PACSFS: 'photo' is both a source"),
        ([], "error: PACSFS: no held-out domain: pass --target-domains DOMAIN"),
        (["DATASET.ID", "9"], "error: PACSFS: DATASET.ID 9 is out of range"),
    ):
        result = run_train(*base, *extra)
        assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
        assert result.stderr.strip().splitlines()[-1].startswith(expected), result.stderr[-500:]
    assert not (tmp_path / "out").exists()  # stopped before anything was written


def test_a_held_out_domain_runs_end_to_end(tiny_clip, tmp_path):
    """Zero-shot CLIP (tiny, random weights) evaluated on the held-out sketch domain through train.py: the
    summary names the resolved domains and the per-class totals are the target's test set."""
    make_dataset("PACSFS", str(tmp_path / "data"), **SIZES)
    argv = ["--root", str(tmp_path / "data"), "--seed", "1", "--trainer", "ZeroshotCLIP", "--eval-only"]
    argv += ["--dataset-config-file", os.path.join(REPO, "configs/datasets/pacs.yaml"), "--target-domains", "sketch"]
    argv += ["--config-file", os.path.join(REPO, "configs/trainers/ZeroshotCLIP/vit_b16.yaml")]
    argv += ["--output-dir", str(tmp_path / "out"), "DATALOADER.NUM_WORKERS", "0", "INPUT.SIZE", "(32, 32)"]
    argv += ["TEST.PER_CLASS_RESULT", "True", "MODEL.BACKBONE.PATH", tiny_clip]
    with contextlib.redirect_stdout(io.StringIO()):
        train.main(train.build_parser().parse_args(argv))
    sys.stdout.flush()
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "['art_painting', 'cartoon', 'photo']" in log and "['sketch']" in log
    totals = [int(n) for n in re.findall(r"\* class: \d+ .*\ttotal: (\d+)", log)]
    assert totals == [expected_counts("PACSFS", "sketch", "test")[0, c] for c in range(4)] == [7, 6, 7, 6]
