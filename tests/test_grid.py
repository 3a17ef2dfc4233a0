"""tools.grid: the cells and command lines of the protocol scripts, each cell run as its own job (our local
pool and submitit's local executor), tests after their training cell, finished cells skipped, failed ones rerun."""

from __future__ import annotations

import os
import os.path as osp
import subprocess
import sys

import pytest

from tools.grid import LOG
from tools.protocols import FINISHED, cell_status

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope="module")
def setup(tiny_clip, synthetic_data) -> tuple[str, str]:
    """(tiny CLIP weights file, data root) of the shared world (tests/conftest.py)."""
    return tiny_clip, synthetic_data("dtd", n_classes=4, n_train=2, n_val=1, n_test=1)


def grid(setup, out, *args: str) -> subprocess.CompletedProcess:
    tiny, root = setup
    opts = ["MODEL.BACKBONE.PATH", tiny, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
            "OPTIM.MAX_EPOCH", "1", "TRAINER.MMRL.REP_DIM", "16"]  # fmt: skip
    cmd = [sys.executable, "-m", "tools.grid", "--root", root, "--output", str(out), "--no-report", "--interval", "0.2"]
    cmd += [*args, "--", *opts]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_local_grid_runs_skips_and_reruns(setup, tmp_path):
    out = tmp_path / "out"
    result = grid(setup, out, "--protocol", "base2new", "--methods", "MMRL", "--datasets", "dtd",
                  "--seeds", "1", "2", "--jobs", "2")  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Grid finished: 4 cells done, 0 failed" in result.stdout
    folders = [out / f"base2new/{phase}/dtd/shots_16/MMRL/vit_b16/seed{s}" for phase in ("train_base", "test_new")
               for s in (1, 2)]  # fmt: skip
    for folder in folders:
        assert cell_status(str(folder)) == FINISHED and "=> result" in (folder / "log.txt").read_text()
    assert "Loaded weights to MultiModalRepresentationLearner" in (folders[2] / "log.txt").read_text()

    # A killed test cell (a log, no result) runs again; the finished cells are not touched.
    (folders[3] / "metrics.json").unlink()
    (folders[3] / "log.txt").write_text("killed\n")
    before = {f: (f / LOG).stat().st_mtime_ns for f in folders[:3]}
    result = grid(setup, out, "--protocol", "base2new", "--methods", "MMRL", "--datasets", "dtd",
                  "--seeds", "1", "2", "--jobs", "2")  # fmt: skip
    assert result.returncode == 0 and cell_status(str(folders[3])) == FINISHED
    assert {f: (f / LOG).stat().st_mtime_ns for f in folders[:3]} == before
    assert list(folders[3].glob("log.txt.incomplete-*"))


def test_failed_cells_are_reported_and_their_tests_not_run(setup, tmp_path):
    bad = grid(setup, tmp_path / "out", "--protocol", "base2new", "--methods", "MMRL", "--datasets",
               "eurosat", "--seeds", "1", "--retries", "0")  # fmt: skip  (no eurosat data: the cell fails)
    assert bad.returncode == 1 and "Grid finished: 0 cells done, 2 failed" in bad.stdout
    assert not (tmp_path / "out/base2new/test_new/eurosat/shots_16/MMRL/vit_b16/seed1" / LOG).exists()


def test_submitit_local_executor(setup, tmp_path):
    out = tmp_path / "out"
    result = grid(setup, out, "--protocol", "few_shot", "--methods", "MMRL", "--datasets", "dtd", "--seeds", "1",
                  "--shots", "1", "--executor", "submitit-local", "--time", "10", "--cpus-per-job", "1")  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    folder = out / "few_shot/dtd/shots_1/MMRL/vit_b16_few_shot/seed1"
    assert cell_status(str(folder)) == FINISHED and "=> result" in (folder / "log.txt").read_text()
    assert list((out / ".submitit").iterdir())  # submitit's own job folder
