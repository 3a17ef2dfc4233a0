"""Your own data through the real command line: ImageFolder chosen by config alone, base-to-novel with MMRL,
and the user's prompt template reaching the method's prompts (``DATASET.FOLDER.TEMPLATE``)."""

from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys

import torch
from PIL import Image

import datasets  # noqa: F401  (registers the datasets, ImageFolder included)
from clip import clip
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from trainers.config import extend_cfg

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CLASSES = ["sparrow", "blue_jay", "owl", "heron"]


def make_folder(root) -> None:
    for c, name in enumerate(CLASSES):
        os.makedirs(root / "birds" / name)
        for i in range(6):
            Image.new("RGB", (32, 32), (60 * c, 20 * i, 100)).save(root / "birds" / name / f"{i}.jpg")


def test_own_folder_through_train_py_with_its_template(tiny_clip, tmp_path):
    make_folder(tmp_path)
    opts = ["DATASET.FOLDER.PATH", "birds", "DATASET.FOLDER.TEMPLATE", "a photo of a {}, a type of bird.",
            "MODEL.BACKBONE.PATH", tiny_clip, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
            "OPTIM.MAX_EPOCH", "1", "DATASET.NUM_SHOTS", "2", "TRAINER.MMRL.REP_DIM", "16"]  # fmt: skip
    common = [sys.executable, osp.join(REPO, "train.py"), "--root", str(tmp_path), "--seed", "1", "--trainer", "MMRL",
              "--dataset-config-file", osp.join(REPO, "configs/datasets/folder.yaml"),
              "--config-file", osp.join(REPO, "configs/trainers/MMRL/vit_b16.yaml")]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    train = subprocess.run([*common, "--output-dir", str(tmp_path / "base"), *opts, "DATASET.SUBSAMPLE_CLASSES",
                            "base"], capture_output=True, text=True, env=env)  # fmt: skip
    assert train.returncode == 0, train.stderr[-2000:]
    # Before training, the run says what MMRL's per-dataset values did (nothing for the user's own data).
    log = (tmp_path / "base" / "log.txt").read_text()
    block = "Per-dataset settings: configs/trainers/MMRL/datasets.yaml (ImageFolder, TASK B2N)\n"
    assert block + "  none for ImageFolder under TASK B2N\n" in log
    assert log.index(block) < log.index("Building MMRL")
    test = subprocess.run([*common, "--output-dir", str(tmp_path / "new"), "--model-dir", str(tmp_path / "base"),
                           "--eval-only", *opts, "DATASET.SUBSAMPLE_CLASSES", "new"], capture_output=True, text=True,
                          env=env)  # fmt: skip
    assert test.returncode == 0, test.stderr[-2000:]
    assert "* total: 4" in (tmp_path / "new" / "log.txt").read_text()  # 2 new classes x 2 test images

    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join(REPO, "configs/datasets/folder.yaml"))
    cfg.merge_from_file(osp.join(REPO, "configs/trainers/MMRL/vit_b16.yaml"))
    cfg.merge_from_list(["TRAINER.NAME", "MMRL", "DATASET.ROOT", str(tmp_path), *opts])
    trainer = build_trainer(cfg)
    names = ["blue jay", "heron", "owl", "sparrow"]  # labels follow the sorted class folders
    expected = clip.tokenize([f"a photo of a {n}, a type of bird." for n in names])
    prompts = trainer.model.tokenized_prompts
    assert torch.equal(prompts, expected[:, : prompts.shape[1]])
