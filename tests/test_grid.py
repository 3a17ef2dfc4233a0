"""tools.grid: the cells and command lines of the protocol scripts, each cell run as its own job (our local
pool and submitit's local executor), tests after their training cell, finished cells skipped, failed ones rerun."""

from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from tiny import tiny_clip_config

from clip.model import CLIP
from datasets.synthetic import make_dataset
from tools.grid import DONE, plan

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("grid")
    torch.manual_seed(0)
    torch.save(CLIP(tiny_clip_config()).state_dict(), root / "tiny.pt")
    make_dataset("dtd", str(root / "data"), n_classes=4, n_train=2, n_val=1, n_test=1)
    return str(root / "tiny.pt"), str(root / "data")


def grid(setup, out, *args: str) -> subprocess.CompletedProcess:
    tiny, root = setup
    opts = ["MODEL.BACKBONE.PATH", tiny, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
            "OPTIM.MAX_EPOCH", "1", "TRAINER.MMRL.REP_DIM", "16"]  # fmt: skip
    cmd = [sys.executable, "-m", "tools.grid", "--root", root, "--output", str(out), "--no-report", "--interval", "0.2"]
    cmd += [*args, "--", *opts]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_plan_matches_the_protocol_scripts(tmp_path):
    cells = plan("base2new", ["MMRL"], ["dtd", "imagenet"], [1], [], str(tmp_path))
    assert [c.name for c in cells] == [
        "MMRL/dtd/seed1/train_base", "MMRL/dtd/seed1/test_new",
        "MMRL/imagenet/seed1/train_base", "MMRL/imagenet/seed1/test_new",
    ]  # fmt: skip
    train, test = cells[2], cells[3]
    assert train.output_dir == str(tmp_path / "base2new/train_base/imagenet/shots_16/MMRL/vit_b16_imagenet/seed1")
    assert test.after == train.output_dir and test.args[test.args.index("--model-dir") + 1] == train.output_dir
    assert test.args[-6:] == ["DATASET.NUM_SHOTS", "16", "TASK", "B2N", "DATASET.SUBSAMPLE_CLASSES", "new"]
    cd = plan("cross_datasets", ["MMRL"], ["eurosat"], [2], [], str(tmp_path))
    assert cd[1].after == cd[0].output_dir
    assert cd[0].args[-4:] == ["TRAINER.MMRL.REG_WEIGHT", "0.2", "TRAINER.MMRL.REP_DIM", "512"]
    # A method whose cross-dataset config is its base-to-novel one gets its own folder (no shared results).
    b2n = plan("base2new", ["MaskedMHAAdapter"], ["imagenet"], [1], [], str(tmp_path))
    xd = plan("cross_datasets", ["MaskedMHAAdapter"], ["dtd"], [1], [], str(tmp_path))
    assert b2n[0].output_dir.endswith("train_base/imagenet/shots_16/MaskedMHAAdapter/vit_b16/seed1")
    assert xd[0].output_dir.endswith("train_base/imagenet/shots_16/MaskedMHAAdapter/vit_b16_cross_datasets/seed1")
    assert "configs/trainers/MaskedMHAAdapter/vit_b16.yaml" in " ".join(xd[0].args)
    fs = plan("few_shot", ["MMRLpp"], ["dtd"], [1, 2], [1, 4], str(tmp_path))
    assert len(fs) == 4 and fs[-1].output_dir.endswith("few_shot/dtd/shots_4/MMRLpp/vit_b16_few_shot/seed2")


def test_local_grid_runs_skips_and_reruns(setup, tmp_path):
    out = tmp_path / "out"
    result = grid(setup, out, "--protocol", "base2new", "--methods", "MMRL", "--datasets", "dtd",
                  "--seeds", "1", "2", "--jobs", "2")  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Grid finished: 4 cells done, 0 failed" in result.stdout
    folders = [out / f"base2new/{phase}/dtd/shots_16/MMRL/vit_b16/seed{s}" for phase in ("train_base", "test_new")
               for s in (1, 2)]  # fmt: skip
    for folder in folders:
        assert (folder / DONE).is_file() and "=> result" in (folder / "log.txt").read_text()
    assert "Loaded weights to MultiModalRepresentationLearner" in (folders[2] / "log.txt").read_text()

    # A killed test cell (log, no marker) runs again; the finished cells are not touched.
    (folders[3] / DONE).unlink()
    before = {f: (f / "grid.out").stat().st_mtime_ns for f in folders[:3]}
    result = grid(setup, out, "--protocol", "base2new", "--methods", "MMRL", "--datasets", "dtd",
                  "--seeds", "1", "2", "--jobs", "2")  # fmt: skip
    assert result.returncode == 0 and (folders[3] / DONE).is_file()
    assert {f: (f / "grid.out").stat().st_mtime_ns for f in folders[:3]} == before
    assert list(folders[3].glob("log.txt.incomplete-*"))


def test_failed_cells_are_reported_and_their_tests_not_run(setup, tmp_path):
    bad = grid(setup, tmp_path / "out", "--protocol", "base2new", "--methods", "MMRL", "--datasets",
               "eurosat", "--seeds", "1", "--retries", "0")  # fmt: skip  (no eurosat data: the cell fails)
    assert bad.returncode == 1 and "Grid finished: 0 cells done, 2 failed" in bad.stdout
    assert not (tmp_path / "out/base2new/test_new/eurosat/shots_16/MMRL/vit_b16/seed1/grid.out").exists()


def test_submitit_local_executor(setup, tmp_path):
    out = tmp_path / "out"
    result = grid(setup, out, "--protocol", "few_shot", "--methods", "MMRL", "--datasets", "dtd", "--seeds", "1",
                  "--shots", "1", "--executor", "submitit-local", "--time", "10", "--cpus-per-job", "1")  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    folder = out / "few_shot/dtd/shots_1/MMRL/vit_b16_few_shot/seed1"
    assert (folder / DONE).is_file() and "=> result" in (folder / "log.txt").read_text()
    assert list((out / ".submitit").iterdir())  # submitit's own job folder
