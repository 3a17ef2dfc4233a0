"""The embedded demo: its dataset loads like a real one, and its shortened run shows MMRL learning.

The end-to-end test runs ``bash demo.sh --quick`` (smaller world, shorter pretraining, one seed)
from scratch in a temporary folder: about two minutes on two CPU cores.
"""

from __future__ import annotations

import json
import os
import os.path as osp
import subprocess
import sys

import pytest

from datasets.utils import read_split, subsample_classes
from demo.dataset import SPLIT_FILE
from demo.pretrain import PretrainConfig, cache_key
from demo.run import QUICK, ZERO_SHOT
from demo.world import WorldConfig, write_target_dataset

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
MARGIN = 5.0  # points of base accuracy MMRL must gain over zero-shot (the quick run gains about 20)


def test_target_dataset_is_in_the_coop_layout_with_sorted_labels(tmp_path):
    world = WorldConfig(n_colours=2, n_patterns=2)
    names = write_target_dataset(world, str(tmp_path), SPLIT_FILE, (3, 1, 2), seed=0)
    assert names == ["blue_checks", "blue_diagonals", "cyan_checks", "cyan_diagonals"]
    train, val, test = read_split(str(tmp_path / SPLIT_FILE), str(tmp_path / "images"))
    assert (len(train), len(val), len(test)) == (12, 4, 8)
    assert all(osp.isfile(d.impath) for d in train + val + test)
    assert [d.classname for d in test[::2]] == names
    base, new = subsample_classes(test, subsample="base")[0], subsample_classes(test, subsample="new")[0]
    assert {d.classname for d in base} == {"blue_checks", "blue_diagonals"}
    assert {d.classname for d in new} == {"cyan_checks", "cyan_diagonals"}


def test_pretraining_cache_key_ignores_the_target_domain():
    world = WorldConfig()
    shifted = WorldConfig(target_clutter=0.0)
    assert cache_key(world, PretrainConfig()) == cache_key(shifted, PretrainConfig())
    assert cache_key(world, PretrainConfig()) != cache_key(WorldConfig(n_patterns=3), PretrainConfig())
    assert cache_key(world, PretrainConfig()) != cache_key(world, PretrainConfig(steps=1))


@pytest.fixture(scope="module")
def quick_demo(tmp_path_factory):
    """``bash demo.sh --quick`` from scratch: its stdout and results.json."""
    tmp = tmp_path_factory.mktemp("demo")
    cmd = ["bash", osp.join(REPO, "demo.sh"), "--quick", "--out", str(tmp / "out"), "--cache-dir", str(tmp / "cache")]
    result = subprocess.run(cmd, env={**os.environ, "PYTHON": sys.executable}, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    with open(tmp / "out" / "results.json") as f:
        return result.stdout, json.load(f), tmp / "out"


def test_quick_demo_mmrl_beats_zero_shot_on_base(quick_demo):
    _, results, _ = quick_demo
    rows = results["rows"]
    assert rows["MMRL"]["base"] > rows[ZERO_SHOT]["base"] + MARGIN, rows
    chance = 100 / (len(QUICK.world.classes()) // 2)
    assert rows[ZERO_SHOT]["base"] > chance, "the tiny CLIP should transfer, if imperfectly"


def test_quick_demo_prints_the_three_row_table(quick_demo):
    stdout, results, _ = quick_demo
    table = stdout[stdout.index("Base-to-novel on DemoShapes") :].splitlines()
    assert table[1].split() == ["Base", "Novel", "HM"]
    assert [line.split("  ")[0] for line in table[2:5]] == [ZERO_SHOT, "MMRL", "MMRL++"]
    assert f"{results['rows']['MMRL']['base']:.2f}" in table[3]


def test_quick_demo_went_through_train_py_and_parse_test_res(quick_demo):
    _, _, out = quick_demo
    for method in ("MMRL", "MMRLpp"):
        for stage in ("train_base", "test_new"):
            folder = out / "output" / "base2new" / stage / "demo_shapes" / "shots_16" / method / "vit_b16"
            assert (folder / "parse.txt").is_file()
            log = (folder / "seed1" / "log.txt").read_text()
            assert "=> result" in log and "* accuracy:" in log
        checkpoints = out / "output" / "base2new" / "train_base" / "demo_shapes" / "shots_16" / method / "vit_b16"
        assert (checkpoints / "seed1" / "MultiModalRepresentationLearner" / "model.pth.tar-10").is_file()


def test_quick_demo_ends_with_the_report_and_its_picture(quick_demo):
    stdout, results, out = quick_demo
    assert "base_to_novel.png" in results["report"] and (out / "base_to_novel.png").stat().st_size > 1000
    # One number per cell: the printed table, parse_test_res.py's parse.txt and the report show the same.
    row = next(line for line in (out / "report.md").read_text().splitlines() if "| MMRL |" in line)
    base, novel = (cell.strip() for cell in row.split("|")[3:5])  # | dataset | method | base | novel | ...
    printed = next(line for line in stdout[stdout.index("Base-to-novel on DemoShapes") :].splitlines()
                   if line.startswith("MMRL "))  # fmt: skip
    assert printed.split()[1:3] == [base, novel]
    folder = out / "output" / "base2new" / "{}" / "demo_shapes" / "shots_16" / "MMRL" / "vit_b16" / "parse.txt"
    for stage, value in (("train_base", base), ("test_new", novel)):
        parse_txt = open(str(folder).format(stage)).read()
        assert f"* accuracy: {value}% +- 0.00%" in parse_txt  # one seed
    assert f"{results['rows']['MMRL']['base']:.2f}" == base
