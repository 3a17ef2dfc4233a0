"""Bad input never ends in a traceback: each failure a user can cause is one ``error:`` line naming the file
or key and the fix, from train.py's real command line (a subprocess, as a user runs it)."""

from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys

import pytest

from datasets.synthetic import make_dataset
from trainers.mmrl import LEARNER_NAME

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tiny_clip, synthetic_data) -> tuple[str, str]:
    """(tiny CLIP weights file, data root) of the shared world (tests/conftest.py)."""
    return tiny_clip, synthetic_data("dtd", n_classes=2, n_train=2, n_val=1, n_test=1)


def train(setup: tuple[str, str], out: str, *extra: str, flags: tuple[str, ...] = ()) -> tuple[str, str]:
    """(the last line on stderr, all of stderr) of a failing train.py run."""
    tiny, root = setup
    cmd = [
        sys.executable, osp.join(REPO, "train.py"), "--root", root, "--seed", "1", "--trainer", "MMRL",
        "--dataset-config-file", osp.join(REPO, "configs/datasets/dtd.yaml"),
        "--config-file", osp.join(REPO, "configs/trainers/MMRL/vit_b16.yaml"), "--output-dir", out, *flags,
        "MODEL.BACKBONE.PATH", tiny, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
        "OPTIM.MAX_EPOCH", "1", "TRAINER.MMRL.REP_DIM", "16", *extra,
    ]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode != 0, result.stdout[-1000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr.strip().splitlines()[-1], result.stderr


def test_value_out_of_range(setup, tmp_path):
    line, _ = train(setup, str(tmp_path / "out"), "OPTIM.LR", "-0.1")
    assert line == "error: OPTIM.LR must be a number > 0, got -0.1"
    assert not (tmp_path / "out").exists()  # stopped before anything was written


def test_output_dir_that_cannot_be_written(setup, tmp_path):
    (tmp_path / "a_file").write_text("")
    line, _ = train(setup, str(tmp_path / "a_file" / "run"))
    assert line.startswith(f"error: cannot write to --output-dir {tmp_path / 'a_file' / 'run'}: ")
    assert line.endswith("choose a folder you can write to")


def test_undecodable_image_in_a_loader_worker(setup, tmp_path):
    tiny, root = setup
    data = tmp_path / "data"
    make_dataset("dtd", str(data), n_classes=2, n_train=2, n_val=1, n_test=1)
    images = sorted((data / "dtd" / "images").rglob("*.jpg"))
    for image in images:  # every image, so the first batch of the worker meets one
        image.write_bytes(b"not a jpeg")
    line, _ = train((tiny, str(data)), str(tmp_path / "out"), "DATALOADER.NUM_WORKERS", "1")
    assert line.startswith("error: Cannot read image ") and str(data) in line
    assert line.endswith("Re-download or remove this file.")


def test_truncated_clip_weights(setup, tmp_path):
    tiny, root = setup
    cut = tmp_path / "cut.pt"
    cut.write_bytes(open(tiny, "rb").read()[:5000])
    line, _ = train((str(cut), root), str(tmp_path / "out"))
    assert line.startswith(f"error: {cut} (MODEL.BACKBONE.PATH): truncated or corrupt (")
    assert line.endswith("pass OpenAI's file (e.g. ViT-B-16.pt) or a CLIP state dict saved with torch.save")
    assert not (tmp_path / "out").exists()  # found before the data, the model and the output folder


def test_truncated_checkpoint(setup, tmp_path):
    folder = tmp_path / "model" / LEARNER_NAME
    folder.mkdir(parents=True)
    (folder / "model.pth.tar-1").write_bytes(b"PK\x03\x04 cut short")
    line, _ = train(setup, str(tmp_path / "out"), flags=("--model-dir", str(tmp_path / "model"), "--eval-only"))
    assert line.startswith(f"error: cannot read the checkpoint {folder / 'model.pth.tar-1'} (")
    assert "truncated or corrupt. Delete it" in line


def test_corrupt_resume_state(setup, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "resume.pth.tar").write_bytes(b"\x00" * 100)
    line, _ = train(setup, str(out))
    assert line.startswith(f"error: cannot read the checkpoint {out / 'resume.pth.tar'} (")


def test_full_disk(setup, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True)
    assert mounted.returncode == 0, f"this test needs root to mount a tiny tmpfs: {mounted.stderr}"
    try:
        line, _ = train(setup, str(disk / "run"))
    finally:
        subprocess.run(["umount", str(disk)], check=True)
    assert line.startswith("error: no space left on the device while writing ")
    assert line.endswith("free space or use another --output-dir")


def test_every_shipped_config_passes_the_value_checks():
    import glob

    from dassl.config import get_cfg_default
    from dassl.config.checks import check_cfg_values
    from trainers.config import extend_cfg

    files = sorted(glob.glob(osp.join(REPO, "configs", "trainers", "*", "*.yaml")))
    not_configs = ("protocols.yaml", "datasets.yaml", "templates.yaml")
    files = [f for f in files if osp.basename(f) not in not_configs]
    assert len(files) >= 8
    for path in files:
        cfg = get_cfg_default()
        extend_cfg(cfg)
        cfg.merge_from_file(osp.join(REPO, "configs", "datasets", "dtd.yaml"))
        cfg.merge_from_file(path)
        check_cfg_values(cfg)
