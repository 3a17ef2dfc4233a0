"""Nothing lost on a crash: a training run killed with SIGKILL and started again with the same command
line ends with exactly the tensors and per-class results of a run that never stopped, with random data
order and augmentation in the main process and in a loader worker."""

from __future__ import annotations

import os
import os.path as osp
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from trainers.mmrl import LEARNER_NAME

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
EPOCHS = 4


@pytest.fixture(scope="module")
def setup(tiny_clip, synthetic_data) -> tuple[str, str]:
    """(tiny CLIP weights file, data root) of the shared world (tests/conftest.py)."""
    return tiny_clip, synthetic_data("OxfordPets", n_classes=4, n_train=6, n_val=1, n_test=2)


def command(setup: tuple[str, str], out: str, workers: int) -> list[str]:
    tiny, root = setup
    return [
        sys.executable, osp.join(REPO, "train.py"), "--root", root, "--seed", "1", "--trainer", "MMRL",
        "--dataset-config-file", osp.join(REPO, "configs/datasets/oxford_pets.yaml"),
        "--config-file", osp.join(REPO, "configs/trainers/MMRL/vit_b16.yaml"), "--output-dir", out,
        "MODEL.BACKBONE.PATH", tiny, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", str(workers),
        "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", str(EPOCHS), "DATASET.NUM_SHOTS", "4",
        "TEST.PER_CLASS_RESULT", "True", "TRAINER.MMRL.REP_DIM", "32",
    ]  # fmt: skip


def env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def epoch_saved(out: str) -> bool:
    return osp.isfile(osp.join(out, "resume.pth.tar"))


def final_state(out: str) -> dict[str, torch.Tensor]:
    return torch.load(osp.join(out, LEARNER_NAME, f"model.pth.tar-{EPOCHS}"), weights_only=True)["state_dict"]


def results(out: str) -> list[str]:
    """Result lines of the newest log (a rerun writes log.txt-<time> beside the old log.txt, as upstream)."""
    newest = max((f for f in os.listdir(out) if f.startswith("log.txt")), key=lambda f: osp.getmtime(osp.join(out, f)))
    log = open(osp.join(out, newest)).read()
    return re.findall(r"^\* (?:class:.*|accuracy:.*|correct:.*)$", log, flags=re.M)


@pytest.mark.parametrize("workers", [0, 1])
def test_killed_run_continues_to_the_same_result(setup, tmp_path, workers):
    reference, crashed = str(tmp_path / "reference"), str(tmp_path / "crashed")
    subprocess.run(command(setup, reference, workers), env=env(), check=True, capture_output=True)

    proc = subprocess.Popen(command(setup, crashed, workers), env=env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.time() + 120
    while not epoch_saved(crashed) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert osp.isfile(osp.join(crashed, "resume.pth.tar")), "the run was not killed mid-training"
    assert not osp.isfile(osp.join(crashed, LEARNER_NAME, f"model.pth.tar-{EPOCHS}"))

    rerun = subprocess.run(command(setup, crashed, workers), env=env(), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert "Resuming after epoch" in rerun.stdout
    expected, got = final_state(reference), final_state(crashed)
    assert expected.keys() == got.keys() and all(torch.equal(expected[k], got[k]) for k in expected)
    assert results(crashed) == results(reference) and len(results(reference)) == 6
    assert not osp.isfile(osp.join(crashed, "resume.pth.tar"))  # a finished run keeps what the config asks
