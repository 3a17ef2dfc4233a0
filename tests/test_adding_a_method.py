"""docs/adding_a_method.md is true: its blocks are the worked example's files (CLIP-Adapter), whole; a copy of
the repository without the method's two folders, with the page's blocks written in, gives a method that
``train.py`` trains, checkpoints and evaluates; and nothing else in the repository names the method."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import torch
from tiny import tiny_resnet_state_dict

from datasets.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[1]
FOLDERS = {"trainers/clip_adapter", "configs/trainers/CLIP_Adapter"}
NAMES = ("CLIP_Adapter", "clip_adapter")  # the trainer and its package


def source_files() -> list[str]:
    """The repository's files: git's list, or (outside a git checkout) every file but outputs and caches."""
    try:
        return subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        skip = {".git", "output", "__pycache__", ".pytest_cache"}
        return [str(p.relative_to(REPO)) for p in REPO.rglob("*") if not skip & set(p.relative_to(REPO).parts)]


def doc_files() -> dict[str, str]:
    """The page's code blocks headed by a "# <path>" line, by path; a file shown in several blocks (the later
    ones headed "# <path> (continued)") is their concatenation, two blank lines apart."""
    text = (REPO / "docs" / "adding_a_method.md").read_text()
    files: dict[str, str] = {}
    for path, continued, body in re.findall(r"```(?:python|yaml)\n# (\S+)( \(continued\))?\n(.*?)```", text, re.S):
        assert bool(continued) == (path in files), f"{path}: the first block of a file, and only it, has no mark"
        files[path] = files[path] + "\n\n" + body if continued else body
    return files


def in_method(name: str) -> bool:
    return any(name.startswith(folder + "/") for folder in FOLDERS)


def test_the_page_shows_the_method_s_files_whole():
    files = doc_files()
    assert {Path(p).parent.as_posix() for p in files} == FOLDERS
    for path, body in files.items():
        assert body == (REPO / path).read_text(), f"the page's {path} is not the repository's"
    code = {name for name in source_files() if in_method(name) and name.endswith(".py")}
    assert code <= set(files), f"the page leaves out {sorted(code - set(files))}"


def test_nothing_outside_the_method_names_it():
    """Outside its two folders, only its tests, the documentation and its side-by-side scenarios against the
    official code (``tools/parity/``, optional: the method trains without them) may name the method."""
    naming = []
    for name in source_files():
        path = REPO / name
        optional = name.startswith(("tests/", "tools/parity/")) or name.endswith(".md")
        if in_method(name) or optional or not path.is_file():
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if any(n in text for n in NAMES):
            naming.append(name)
    assert not naming, f"a new method must not need these files edited: {naming}"


def test_the_page_s_files_alone_make_the_method(tmp_path):
    repo = tmp_path / "repo"
    for name in source_files():
        if not name.startswith("tests/") and not in_method(name) and (REPO / name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, repo / name)
    for path, body in doc_files().items():
        (repo / path).parent.mkdir(parents=True, exist_ok=True)
        (repo / path).write_text(body)

    torch.save(tiny_resnet_state_dict(0), tmp_path / "tiny_rn.pt")
    make_dataset("dtd", str(tmp_path / "data"), n_classes=4, n_train=4, n_val=2, n_test=2)
    common = [sys.executable, "train.py", "--root", str(tmp_path / "data"), "--seed", "1",
              "--trainer", "CLIP_Adapter", "--dataset-config-file", "configs/datasets/dtd.yaml",
              "--config-file", "configs/trainers/CLIP_Adapter/rn50.yaml"]  # fmt: skip
    opts = ["MODEL.BACKBONE.PATH", str(tmp_path / "tiny_rn.pt"), "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS",
            "0", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([*common, "--output-dir", str(tmp_path / "run"), *opts], cwd=repo, capture_output=True,
                         text=True, env=env)  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "Parameters to be updated: ['fc.0.weight', 'fc.2.weight']" in log
    assert (tmp_path / "run" / "clip_adapter" / "model.pth.tar-1").is_file()
    accuracy = re.findall(r"^\* accuracy: ([\d.]+)%", log, flags=re.M)[-1]

    evaluation = subprocess.run([*common, "--output-dir", str(tmp_path / "eval"), "--model-dir", str(tmp_path / "run"),
                                 "--eval-only", *opts], cwd=repo, capture_output=True, text=True, env=env)  # fmt: skip
    assert evaluation.returncode == 0, evaluation.stderr[-2000:]
    assert f"* accuracy: {accuracy}%" in (tmp_path / "eval" / "log.txt").read_text()
