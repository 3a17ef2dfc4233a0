"""docs/adding_a_method.md is true: its files, written into a copy of the repository and nothing else
changed there, give a method that ``train.py`` trains, checkpoints and evaluates."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from tiny import tiny_clip_config

from clip.model import CLIP
from datasets.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[1]


def source_files() -> list[str]:
    """The repository's files: git's list, or (outside a git checkout) every file but outputs and caches."""
    try:
        return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", "output", "__pycache__", ".pytest_cache"}
        return [str(p.relative_to(REPO)) for p in REPO.rglob("*") if not skip & set(p.relative_to(REPO).parts)]


def doc_files() -> dict[str, str]:
    """The page's code blocks that start with a "# <path>" line, by path."""
    text = (REPO / "docs" / "adding_a_method.md").read_text()
    blocks = re.findall(r"```(?:python|yaml)\n# (\S+)\n(.*?)```", text, flags=re.S)
    return {path: body for path, body in blocks}


def test_the_worked_example_is_one_folder_and_one_config_folder_and_runs(tmp_path):
    files = doc_files()
    folders = {Path(p).parent.as_posix() for p in files}
    assert folders == {"trainers/feature_adapter", "configs/trainers/FeatureAdapter"}, folders
    repo = tmp_path / "repo"
    for name in source_files():
        if not name.startswith("tests/") and (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, repo / name)
    for path, body in files.items():
        assert not (repo / path).exists(), f"{path} would overwrite a file of the repository"
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(body)

    torch.manual_seed(0)
    torch.save(CLIP(tiny_clip_config()).state_dict(), tmp_path / "tiny.pt")
    make_dataset("dtd", str(tmp_path / "data"), n_classes=4, n_train=4, n_val=2, n_test=2)
    common = [sys.executable, "train.py", "--root", str(tmp_path / "data"), "--seed", "1",
              "--trainer", "FeatureAdapter", "--dataset-config-file", "configs/datasets/dtd.yaml",
              "--config-file", "configs/trainers/FeatureAdapter/vit_b16.yaml"]  # fmt: skip
    opts = ["MODEL.BACKBONE.PATH", str(tmp_path / "tiny.pt"), "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
            "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([*common, "--output-dir", str(tmp_path / "run"), *opts], cwd=repo, capture_output=True,
                         text=True, env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    log = (tmp_path / "run" / "log.txt").read_text()
    yaml_file = "configs/trainers/FeatureAdapter/vit_b16.yaml"
    assert f"  TRAINER.FEATURE_ADAPTER.RATIO = 0.5  (replaces 0.2, set in {yaml_file})" in log  # datasets.yaml
    assert (tmp_path / "run" / "adapter" / "model.pth.tar-1").is_file()
    accuracy = re.findall(r"^\* accuracy: ([\d.]+)%", log, flags=re.M)[-1]

    evaluation = subprocess.run([*common, "--output-dir", str(tmp_path / "eval"), "--model-dir", str(tmp_path / "run"),
                                 "--eval-only", *opts], cwd=repo, capture_output=True, text=True, env=env)  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    assert f"* accuracy: {accuracy}%" in (tmp_path / "eval" / "log.txt").read_text()
