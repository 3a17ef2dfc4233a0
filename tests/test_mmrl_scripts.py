"""The shell protocols: scripts/{mmrl,mmrlpp}/*.sh and the top-level base_to_novel.sh,
cross_datasets.sh, few_shot.sh.

First with a stand-in interpreter that records each command (the exact train.py command lines,
the official output layout, skipping, the result tables), then for real on synthetic data with a
tiny CLIP: every script family trains/tests end to end and parse_test_res.py reads the logs.
"""

from __future__ import annotations

import os
import os.path as osp
import stat
import subprocess
import sys

import pytest
import torch

from clip.model import CLIP, CLIPConfig

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
EXTRA = ["MODEL.BACKBONE.PATH", "/w/tiny.pt", "INPUT.SIZE", "(32, 32)"]

# Records its arguments (protocol.py and tools.run_lock run for real); "train.py" writes a finished log,
# "parse_test_res.py" a parse.txt whose accuracy is the number of seed folders (so the tables show
# which folders were summarised).
STUB = r"""#!/bin/bash
script=$(basename -- "$1")
if [ "$script" = protocol.py ] || [ "$2" = tools.run_lock ]; then exec "$REAL_PYTHON" "$@"; fi
printf '%s\n' "$*" >> "$STUB_LOG"
if [ "$script" = -m ]; then exit 0; fi
shift
if [ "$script" = train.py ]; then
    prev=
    for a in "$@"; do if [ "$prev" = --output-dir ]; then out=$a; fi; prev=$a; done
    mkdir -p "$out" && printf '=> result\n* accuracy: 50.0%%\n' > "$out/log.txt"
else
    n=$(ls -d "$1"/seed* | wc -l)
    printf '* accuracy: %s.00%% +- 0.00%%\n' "$n" > "$1/parse.txt"
fi
"""


@pytest.fixture
def stub(tmp_path):
    path = tmp_path / "python"
    path.write_text(STUB)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "commands.txt"
    env = dict(os.environ, PYTHON=str(path), STUB_LOG=str(log), DATA="/d", OUTPUT=str(tmp_path / "out"), SEEDS="1 2")
    env["REAL_PYTHON"] = sys.executable

    def run(script, *args, **env_overrides):
        log.write_text("")
        result = subprocess.run(
            ["bash", osp.join(REPO, script), *args], env={**env, **env_overrides}, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
        short = [line.replace(REPO, "R").replace(str(tmp_path / "out"), "O") for line in log.read_text().splitlines()]
        return short, result.stdout

    return run


def train(*args: str) -> str:
    return " ".join(["R/train.py --root /d", *args, *EXTRA])


def test_base2new_commands(stub):
    commands, _ = stub("scripts/mmrl/base2new_train.sh", "dtd", *EXTRA)
    common = "--trainer MMRL --dataset-config-file R/configs/datasets/dtd.yaml"
    common += " --config-file R/configs/trainers/MMRL/vit_b16.yaml"
    assert commands == [
        train("--seed 1", common, "--output-dir O/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1",
              "DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base TASK B2N"),
        train("--seed 2", common, "--output-dir O/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed2",
              "DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES base TASK B2N"),
        "R/parse_test_res.py O/base2new/train_base/dtd/shots_16/MMRL/vit_b16",
    ]  # fmt: skip
    commands, _ = stub("scripts/mmrlpp/base2new_test.sh", "imagenet", SEEDS="3")
    model = "O/base2new/train_base/imagenet/shots_16/MMRLpp/vit_b16_imagenet/seed3"
    assert commands[0] == " ".join(
        [
            "R/train.py --root /d --seed 3 --trainer MMRLpp --dataset-config-file R/configs/datasets/imagenet.yaml",
            "--config-file R/configs/trainers/MMRLpp/vit_b16_imagenet.yaml",
            "--output-dir O/base2new/test_new/imagenet/shots_16/MMRLpp/vit_b16_imagenet/seed3",
            f"--model-dir {model} --eval-only DATASET.NUM_SHOTS 16 DATASET.SUBSAMPLE_CLASSES new TASK B2N",
        ]
    )


def test_cross_dataset_commands(stub):
    commands, _ = stub("scripts/mmrl/cross_datasets_train.sh", SEEDS="1")
    assert commands[0].endswith(
        "--config-file R/configs/trainers/MMRL/vit_b16_cross_datasets.yaml "
        "--output-dir O/base2new/train_base/imagenet/shots_16/MMRL/vit_b16_cross_datasets/seed1 "
        "DATASET.NUM_SHOTS 16 TASK CD TRAINER.MMRL.REG_WEIGHT 0.2 TRAINER.MMRL.REP_DIM 512"
    )
    commands, _ = stub("scripts/mmrl/cross_datasets_test.sh", "eurosat", *EXTRA, SEEDS="1")
    assert "--output-dir O/base2new/test_new/eurosat/shots_16/MMRL/vit_b16_cross_datasets/seed1" in commands[0]
    assert commands[0].endswith(
        "--model-dir O/base2new/train_base/imagenet/shots_16/MMRL/vit_b16_cross_datasets/seed1 --eval-only "
        "DATASET.NUM_SHOTS 16 TASK CD TRAINER.MMRL.REG_WEIGHT 0.2 TRAINER.MMRL.REP_DIM 512 " + " ".join(EXTRA)
    )
    commands, _ = stub("scripts/mmrlpp/cross_datasets_test.sh", "eurosat", SEEDS="1")
    assert commands[0].endswith("--eval-only DATASET.NUM_SHOTS 16 TASK CD")


def test_few_shot_commands(stub):
    commands, _ = stub("scripts/mmrlpp/few_shot.sh", "eurosat", SHOTS="1 4", SEEDS="1")
    assert [c.split("--output-dir ")[1] for c in commands if "train.py" in c] == [
        "O/few_shot/eurosat/shots_1/MMRLpp/vit_b16_few_shot/seed1 DATASET.NUM_SHOTS 1 TASK FS",
        "O/few_shot/eurosat/shots_4/MMRLpp/vit_b16_few_shot/seed1 DATASET.NUM_SHOTS 4 TASK FS",
    ]
    commands, _ = stub("scripts/mmrl/few_shot.sh", "imagenet", SHOTS="16", SEEDS="1")
    assert "--config-file R/configs/trainers/MMRL/vit_b16_imagenet.yaml" in commands[0]


def test_finished_runs_are_skipped_and_unfinished_ones_rerun(stub, tmp_path):
    stub("scripts/mmrl/base2new_train.sh", "dtd")
    unfinished = tmp_path / "out/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed2"
    (unfinished / "log.txt").write_text("epoch [1/10] ... crashed\n")
    commands, out = stub("scripts/mmrl/base2new_train.sh", "dtd")
    assert "Skip O/base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1" in out.replace(str(tmp_path / "out"), "O")
    assert [c for c in commands if "train.py" in c] == [c for c in commands if "seed2 " in c]
    assert len([c for c in commands if "train.py" in c]) == 1
    assert [p.name.startswith("log.txt.incomplete-") for p in unfinished.glob("log.txt.*")] == [True]


def rows(out: str) -> dict[str, list[str]]:
    """Table rows by their first cell (``average`` rows of few-shot tables by method)."""
    table = {}
    for line in out.splitlines():
        cells = line.split()
        if cells and cells[0] == "average" and len(cells) > 1 and not cells[1][0].isdigit():
            table[f"average {cells[1]}"] = cells[2:]
        elif cells:
            table[cells[0]] = cells[1:]
    return table


def test_top_level_scripts_run_every_dataset_and_print_the_table(stub):
    commands, out = stub("base_to_novel.sh", "MMRLpp", *EXTRA, DATASETS="dtd imagenet")
    trains = [c for c in commands if "train.py" in c]
    assert len(trains) == 8 and all(c.endswith(" ".join(EXTRA)) for c in trains)  # 2 datasets x 2 seeds x train/test
    table = rows(out)
    assert table["dtd"] == ["2.00"] * 3  # 2 seed folders summarised per cell
    assert table["average"] == ["2.00"] * 3
    _, out = stub("cross_datasets.sh", "MMRL", DATASETS="dtd imagenet_a")
    table = rows(out)
    assert table["imagenet(source)"] == ["2.00"] and table["dtd"] == ["2.00"] and table["imagenet_a"] == ["2.00"]
    assert out.splitlines()[-2:] == [f"{'cross-dataset avg':<20} {'2.00':>12}", f"{'domain-gen. avg':<20} {'2.00':>12}"]
    commands, out = stub("few_shot.sh", "MMRL", DATASETS="dtd", SHOTS="1 2")
    assert len([c for c in commands if "train.py" in c]) == 4
    assert "1-shot   2-shot" in out and rows(out)["dtd"] == ["MMRL", "2.00", "2.00"]


def test_methods_side_by_side(stub, tmp_path):
    commands, out = stub("base_to_novel.sh", "MMRL,MMRLpp", DATASETS="dtd", SEEDS="1")
    trainers = [c.split("--trainer ")[1].split()[0] for c in commands if "train.py" in c]
    assert trainers == ["MMRL", "MMRL", "MMRLpp", "MMRLpp"]  # train base + test new, method by method
    assert commands[-1] == "-m tools.report O"  # the report of the whole tree ends the script
    assert "MMRL base" in out and "MMRLpp base" in out
    # One seed folder each, except MMRLpp's new-class test, removed: its novel and HM cells are empty.
    (tmp_path / "out/base2new/test_new/dtd/shots_16/MMRLpp/vit_b16/parse.txt").unlink()
    result = subprocess.run(
        [sys.executable, osp.join(REPO, "scripts/protocol.py"), "table", "base2new", "--methods", "MMRL", "MMRLpp",
         "--datasets", "dtd", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert rows(result.stdout)["dtd"] == ["1.00", "1.00", "1.00", "1.00", "-", "-"]


@pytest.mark.parametrize("script", ["scripts/mmrl/few_shot.sh", "few_shot.sh"])
def test_missing_data_root_is_a_clear_error(stub, script):
    result = subprocess.run(
        ["bash", osp.join(REPO, script), "MMRL" if script == "few_shot.sh" else "dtd"],
        env={k: v for k, v in os.environ.items() if k != "DATA"},
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "set DATA=/path/to/datasets, see README.md#data" in result.stderr


def test_unknown_method_is_rejected(stub):
    script = osp.join(REPO, "base_to_novel.sh")
    result = subprocess.run(["bash", script, "NoSuchMethod"], capture_output=True, text=True)
    assert result.returncode != 0
    assert "error: 'NoSuchMethod' has no configs/trainers/NoSuchMethod/protocols.yaml; methods: " in result.stderr
    assert "MMRL MMRLpp" in result.stderr


# ---- for real: train.py and parse_test_res.py on synthetic data


DATASET_CONFIGS = ["dtd", "imagenet", "imagenetv2", "oxford_pets"]


@pytest.mark.skipif(
    not all(osp.isfile(osp.join(REPO, "configs", "datasets", f"{d}.yaml")) for d in DATASET_CONFIGS),
    reason="configs/datasets/*.yaml are not in the tree yet",
)
def test_every_script_family_runs_end_to_end(tmp_path):
    from datasets.synthetic import make_dataset

    for name in DATASET_CONFIGS:
        make_dataset(name, str(tmp_path / "data"), n_classes=4, n_train=4, n_val=1, n_test=2)
    torch.manual_seed(0)
    config = CLIPConfig(64, 32, 12, 64, 8, 77, 49408, 64, 1, 12)
    torch.save(CLIP(config).state_dict(), tmp_path / "tiny.pt")
    tiny = ["MODEL.BACKBONE.PATH", str(tmp_path / "tiny.pt"), "INPUT.SIZE", "(32, 32)", "OPTIM.MAX_EPOCH", "1"]
    tiny += ["DATALOADER.NUM_WORKERS", "0"]
    env = dict(os.environ, DATA=str(tmp_path / "data"), OUTPUT=str(tmp_path / "out"), SEEDS="1", SHOTS="2")
    env.update(PYTHON=sys.executable, OMP_NUM_THREADS="1")  # tiny tensors: threads only add waiting

    def run(script: str, *args: str) -> None:
        result = subprocess.run(["bash", osp.join(REPO, script), *args, *tiny], env=env, capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    run("scripts/mmrl/base2new_train.sh", "dtd")
    run("scripts/mmrl/base2new_test.sh", "dtd")
    run("scripts/mmrlpp/cross_datasets_train.sh")
    run("scripts/mmrlpp/cross_datasets_test.sh", "imagenetv2")
    run("scripts/mmrl/few_shot.sh", "oxford_pets")

    out = tmp_path / "out"
    runs = {
        "base2new/train_base/dtd/shots_16/MMRL/vit_b16": 2,  # 4 classes: 2 base, 2 new, 2 test images each
        "base2new/test_new/dtd/shots_16/MMRL/vit_b16": 2,
        "base2new/train_base/imagenet/shots_16/MMRLpp/vit_b16_cross_datasets": 4,
        "base2new/test_new/imagenetv2/shots_16/MMRLpp/vit_b16_cross_datasets": 4,
        "few_shot/oxford_pets/shots_2/MMRL/vit_b16_few_shot": 4,
    }
    for folder, n_classes in runs.items():
        log = (out / folder / "seed1" / "log.txt").read_text()
        assert "=> result" in log and f"* total: {2 * n_classes}" in log, folder
        assert "* accuracy: " in (out / folder / "parse.txt").read_text(), folder
    checkpoint = out / "base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1/MultiModalRepresentationLearner"
    assert (checkpoint / "model.pth.tar-1").is_file()
    test_log = out / "base2new/test_new/dtd/shots_16/MMRL/vit_b16/seed1/log.txt"
    assert "Loaded weights to MultiModalRepresentationLearner" in test_log.read_text()
