"""Nothing lost on a crash: a protocol cell killed with SIGKILL at a chosen point and started again with the same
command line ends with exactly the tensors and the metrics.json of a run that never stopped, and no final
file name ever holds half a file.

The cell is the base-to-novel training cell of tools.grid / scripts/protocols.sh (MMRL on DTD, seed 1) on a
tiny random CLIP and synthetic images, for 3 epochs of 4 steps, with random data order and augmentation
in a loader worker (and, once, in the main process). ``DASSL_CRASH_AT`` (dassl/utils/crash_points.py)
kills it deterministically: in the loader worker while it reads images, while the few-shot cache, an
epoch's resume state, the final checkpoint or metrics.json is being written (the temp file complete, not
yet renamed), mid-epoch, and during the final test.
"""

from __future__ import annotations

import json
import os
import os.path as osp
import pickle
import subprocess
import sys
from typing import Any

import pytest
import torch

from dassl.utils import load_checkpoint
from dassl.utils.crash_points import CRASH_ENV
from dassl.utils.tools import TEMP_NAME
from datasets.data_files import read_cache
from tools.protocols import plan
from trainers.mmrl import LEARNER_NAME

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
EPOCHS = 3
CACHE = "shot_4-seed_1.pkl"


@pytest.fixture(scope="module")
def setup(tiny_clip, synthetic_data) -> tuple[str, str]:
    """(tiny CLIP weights file, data root) of the shared world (tests/conftest.py)."""
    return tiny_clip, synthetic_data("dtd", n_classes=4, n_train=5, n_val=1, n_test=2)


def command(setup: tuple[str, str], out: str, workers: int) -> list[str]:
    """The grid's (= the protocol scripts') command line of the cell, with the tiny model and data appended."""
    tiny, root = setup
    cell = next(c for c in plan("base2new", ["MMRL"], out, root, ["dtd"], [1], []) if c.name.endswith("train_base"))
    args = list(cell.args)
    args[args.index("--output-dir") + 1] = out
    return [
        sys.executable, osp.join(REPO, "train.py"), *args,
        "MODEL.BACKBONE.PATH", tiny, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", str(workers),
        "DATALOADER.TRAIN_X.BATCH_SIZE", "2", "OPTIM.MAX_EPOCH", str(EPOCHS), "DATASET.NUM_SHOTS", "4",
        "TRAINER.MMRL.REP_DIM", "32",
    ]  # fmt: skip


def run(cmd: list[str], crash: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop(CRASH_ENV, None)
    if crash:
        env[CRASH_ENV] = crash
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def outcome(out: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the final checkpoint, metrics.json without the time and folder it was written in, and the config hash,
    which covers OUTPUT_DIR)."""
    checkpoint = load_checkpoint(osp.join(out, LEARNER_NAME, f"model.pth.tar-{EPOCHS}"))
    with open(osp.join(out, "metrics.json")) as f:
        metrics = json.load(f)
    for key in ("written_at", "output_dir", "config_sha256"):
        metrics.pop(key)
    return checkpoint, metrics


def same(a: Any, b: Any) -> bool:
    """Equal, tensors bit for bit, through nested dicts and lists."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def check_no_half_files(*folders: str) -> list[str]:
    """Every file under its final name reads completely; returns the temp files left beside them."""
    temps = []
    for folder in folders:
        for dirpath, _, files in os.walk(folder):
            for name in files:
                path = osp.join(dirpath, name)
                if TEMP_NAME.fullmatch(name):
                    temps.append(path)
                elif ".pth.tar" in name:
                    load_checkpoint(path)
                elif name == "checkpoint":
                    assert osp.isfile(osp.join(dirpath, open(path).read().strip()))
                elif name.endswith(".json") or name.endswith(".rebuilt"):
                    json.load(open(path))
                elif name.endswith(".pkl"):
                    read_cache(path, ("train",))
    return temps


@pytest.fixture(scope="module")
def reference(setup, tmp_path_factory) -> dict[int, tuple[dict[str, Any], dict[str, Any]]]:
    """The uninterrupted run's outcome, with the loader in a worker (1) and in the main process (0)."""
    results = {}
    for workers in (1, 0):
        out = str(tmp_path_factory.mktemp(f"reference{workers}"))
        result = run(command(setup, out, workers))
        assert result.returncode == 0, result.stderr[-2000:]
        results[workers] = outcome(out)
    return results


POINTS = [
    # (crash point, loader workers, final file that must not exist after the kill, resume epoch kept)
    (f"write:{CACHE}", 1, CACHE, None),  # data loading: the few-shot cache being written
    ("load_item@5", 1, "resume.pth.tar", None),  # data loading in the worker, first epoch
    ("train_batch@6", 1, f"model.pth.tar-{EPOCHS}", 1),  # mid-epoch (epoch 2 of 3)
    ("train_batch@6", 0, f"model.pth.tar-{EPOCHS}", 1),  # the same, the loader in the main process
    ("write:resume.pth.tar@2", 1, f"model.pth.tar-{EPOCHS}", 1),  # epoch 2's resume state being written
    (f"write:model.pth.tar-{EPOCHS}", 1, f"model.pth.tar-{EPOCHS}", 2),  # the final checkpoint being written
    ("test_batch@1", 1, "metrics.json", EPOCHS),  # during the final test
    ("write:metrics.json", 1, "metrics.json", EPOCHS),  # the results being written
]


@pytest.mark.parametrize("point, workers, absent, kept", POINTS, ids=[f"{p[0]}-w{p[1]}" for p in POINTS])
def test_killed_cell_reruns_to_the_same_result(setup, reference, tmp_path, point, workers, absent, kept):
    out = str(tmp_path / "out")
    cache_dir = osp.join(setup[1], "dtd", "split_fewshot")
    if absent == CACHE:
        os.remove(osp.join(cache_dir, CACHE))  # made by the reference runs: this run must write it
    cmd = command(setup, out, workers)

    killed = run(cmd, crash=point)
    assert killed.returncode == -9, killed.stderr[-2000:]
    temps = check_no_half_files(out, cache_dir)
    where = cache_dir if absent == CACHE else osp.join(out, LEARNER_NAME) if ".pth.tar-" in absent else out
    assert not osp.exists(osp.join(where, absent))
    if point.startswith("write:"):  # the kill came between the complete temp file and its rename
        target = point.removeprefix("write:").split("@")[0]
        assert [osp.basename(t).removesuffix(".tmp").rsplit(".", 1)[0] for t in temps] == [f".{target}"]
    resume = osp.join(out, "resume.pth.tar")
    assert (load_checkpoint(resume)["epoch"] if osp.exists(resume) else None) == kept
    if absent == "metrics.json":  # a log showing a result implies a complete metrics.json (written first)
        assert "=> result" not in open(osp.join(out, "log.txt")).read()

    rerun = run(cmd)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    if kept:
        assert f"Resuming after epoch {kept} " in rerun.stdout
    checkpoint, metrics = outcome(out)
    expected_checkpoint, expected_metrics = reference[workers]
    assert same(checkpoint, expected_checkpoint)
    assert metrics == expected_metrics
    assert check_no_half_files(out, cache_dir) == []  # the rerun removed what the kill left
    assert not osp.exists(resume)  # a finished run keeps only what the config asks for
    with open(osp.join(cache_dir, CACHE), "rb") as f:
        assert pickle.load(f)["train"]  # the cache holds the few-shot split (read back by every run)


def test_resuming_with_another_schedule_is_refused_before_training(setup, tmp_path):
    """A rerun that changes OPTIM.MAX_EPOCH would follow the saved cosine (torch restores its T_max), past its end
    upwards: one error line naming the file and the change, and the saved state is left for the right rerun."""
    out = str(tmp_path / "out")
    cmd = command(setup, out, 0)
    assert run(cmd, crash="train_batch@6").returncode == -9  # resume state after epoch 1
    longer = run([*cmd, "OPTIM.MAX_EPOCH", "5"])
    assert longer.returncode == 1
    last = longer.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {osp.join(out, 'resume.pth.tar')} was written with another learning-rate "
                           f"schedule (successor.T_max {float(EPOCHS)} -> 5.0)"), longer.stderr[-2000:]  # fmt: skip
    assert "Traceback" not in longer.stderr and "epoch [2/5]" not in longer.stdout
    assert load_checkpoint(osp.join(out, "resume.pth.tar"))["epoch"] == 1  # (MMRL's config warms up 1 epoch)

    assert run(cmd).returncode == 0  # finished; then asked for more epochs from its last checkpoint
    more = run([*cmd, "OPTIM.MAX_EPOCH", "5"])
    assert more.returncode == 1 and "Traceback" not in more.stderr
    assert more.stderr.strip().splitlines()[-1].startswith(
        f"error: {osp.join(out, LEARNER_NAME, f'model.pth.tar-{EPOCHS}')} was written with another learning-rate "
        f"schedule (successor.T_max {float(EPOCHS)} -> 5.0)"
    )
