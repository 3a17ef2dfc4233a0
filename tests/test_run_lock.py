"""One live run per output folder (tools/run_lock.py): with real processes, a holder killed by SIGKILL, the
grid and the protocol scripts treating a held cell as running."""

from __future__ import annotations

import os
import os.path as osp
import signal
import socket
import subprocess
import sys
import time

import pytest

from tools.protocols import FINISHED, RUNNING, cell_status
from tools.run_lock import LOCK_FILE, LOCKED_EXIT, FolderLocked, RunLock, holder, prepare

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
HOLD = ("import sys, time; from tools.run_lock import RunLock; RunLock(sys.argv[1]).acquire(); "
        "print('held', flush=True); time.sleep(600)")


@pytest.fixture(scope="module")
def setup(tiny_clip, synthetic_data) -> tuple[str, str]:
    """(tiny CLIP weights file, data root) of the shared world (tests/conftest.py)."""
    return tiny_clip, synthetic_data("dtd", n_classes=2, n_train=2, n_val=1, n_test=1)


def command(setup: tuple[str, str], out: str, epochs: int, workers: int = 0) -> list[str]:
    tiny, root = setup
    return [
        sys.executable, osp.join(REPO, "train.py"), "--root", root, "--seed", "1", "--trainer", "MMRL",
        "--dataset-config-file", osp.join(REPO, "configs/datasets/dtd.yaml"),
        "--config-file", osp.join(REPO, "configs/trainers/MMRL/vit_b16.yaml"), "--output-dir", out,
        "MODEL.BACKBONE.PATH", tiny, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", str(workers),
        "OPTIM.MAX_EPOCH", str(epochs), "TRAINER.MMRL.REP_DIM", "16", "DATASET.NUM_SHOTS", "2",
    ]  # fmt: skip


def hold(folder: str) -> subprocess.Popen:
    """Another process holding ``folder`` until it is killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, folder], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        time.sleep(0.05)


def test_second_run_stops_naming_the_holder_and_a_killed_holder_frees_the_folder(setup, tmp_path):
    out = str(tmp_path / "out")
    first = subprocess.Popen(command(setup, out, epochs=200, workers=1), env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        wait_for(lambda: osp.isfile(osp.join(out, "resume.pth.tar")))  # training, with a loader worker forked
        assert holder(out).pid == first.pid
        second = subprocess.run(command(setup, out, epochs=1), env=ENV, capture_output=True, text=True)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    assert second.returncode == LOCKED_EXIT and "Traceback" not in second.stderr
    assert second.stderr.strip().splitlines() == [
        f"error: {out} is in use by another run (host {socket.gethostname()}, PID {first.pid}, started "
        f"{holder_started(out)}): wait for it to end, or use another --output-dir"
    ]
    assert sorted(f for f in os.listdir(out) if f.startswith("log.txt")) == ["log.txt"]  # the second wrote nothing
    assert "** Arguments **" not in second.stdout

    # SIGKILL leaves no stale lock, not even for the moments the orphaned loader worker lives on.
    assert holder(out) is None
    os.remove(osp.join(out, "resume.pth.tar"))  # (a 200-epoch schedule: resumed with 1 epoch it would be refused)
    rerun = subprocess.run(command(setup, out, epochs=1), env=ENV, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr[-2000:]


def holder_started(folder: str) -> str:
    import json

    with open(osp.join(folder, LOCK_FILE)) as f:
        return json.load(f)["started"]


def test_lock_probe_prepare_and_cli(tmp_path):
    folder = str(tmp_path / "cell")
    assert holder(folder) is None and prepare(folder) is None  # never run
    os.makedirs(folder)
    (tmp_path / "cell" / "log.txt").write_text("epoch [1/5]\n")
    proc = hold(folder)
    try:
        by = holder(folder)
        assert by.pid == proc.pid and by.host == socket.gethostname()
        assert prepare(folder) == by and (tmp_path / "cell" / "log.txt").is_file()  # a live run's log stays
        status = subprocess.run([sys.executable, "-m", "tools.run_lock", "status", folder], cwd=REPO,
                                capture_output=True, text=True)  # fmt: skip
        assert status.returncode == LOCKED_EXIT and f"PID {proc.pid}" in status.stdout
        with pytest.raises(FolderLocked):
            RunLock(folder).acquire()
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert subprocess.run([sys.executable, "-m", "tools.run_lock", "status", folder], cwd=REPO).returncode == 0
    assert prepare(folder) is None
    assert not (tmp_path / "cell" / "log.txt").exists() and list((tmp_path / "cell").glob("log.txt.incomplete-*"))
    with RunLock(folder):  # free again, and held by this process inside the block
        status = subprocess.run([sys.executable, "-m", "tools.run_lock", "status", folder], cwd=REPO,
                                capture_output=True, text=True)  # fmt: skip
        assert status.returncode == LOCKED_EXIT and f"PID {os.getpid()}," in status.stdout
        RunLock(folder).acquire().release()  # re-entrant in one process (train.main called twice)
        assert subprocess.run([sys.executable, "-m", "tools.run_lock", "status", folder], cwd=REPO).returncode == 75
    assert holder(folder) is None


def test_protocol_script_skips_a_held_cell(tmp_path):
    folder = tmp_path / "out" / "few_shot" / "dtd" / "shots_1" / "MMRL" / "vit_b16_few_shot" / "seed1"
    folder.mkdir(parents=True)
    (folder / "log.txt").write_text("epoch [1/5]\n")
    proc = hold(str(folder))
    try:
        assert cell_status(str(folder)) == RUNNING
        env = {**ENV, "PYTHON": sys.executable, "DATA": str(tmp_path), "OUTPUT": str(tmp_path / "out"), "SEEDS": "1",
               "SHOTS": "1"}  # fmt: skip
        result = subprocess.run(["bash", "scripts/mmrl/few_shot.sh", "dtd"], cwd=REPO, capture_output=True, text=True,
                                env=env)  # fmt: skip
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"Skip {folder} (running: {holder_text(proc.pid)}")
    assert (folder / "log.txt").read_text() == "epoch [1/5]\n"  # neither moved aside nor written


def holder_text(pid: int) -> str:
    return f"host {socket.gethostname()}, PID {pid}, started "


def test_grid_waits_for_a_cell_held_elsewhere(setup, tmp_path):
    tiny, root = setup
    out = tmp_path / "out"
    held = out / "base2new/train_base/dtd/shots_16/MMRL/vit_b16/seed1"
    held.mkdir(parents=True)
    proc = hold(str(held))
    opts = ["MODEL.BACKBONE.PATH", tiny, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
            "OPTIM.MAX_EPOCH", "1", "TRAINER.MMRL.REP_DIM", "16", "DATASET.NUM_SHOTS", "2"]  # fmt: skip
    cmd = [sys.executable, "-m", "tools.grid", "--root", root, "--output", str(out), "--no-report", "--interval",
           "0.2", "--protocol", "base2new", "--methods", "MMRL", "--datasets", "dtd", "--seeds", "1",
           "--retries", "0", "--", *opts]  # fmt: skip
    log = tmp_path / "grid.txt"
    with open(log, "w") as f:
        grid = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=f, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "(elsewhere: host " in log.read_text())
        time.sleep(1.0)  # a few polls: the grid keeps waiting, and starts neither the cell nor its test
        assert grid.poll() is None and not (held / "grid.out").exists()
        assert not (out / "base2new/test_new/dtd/shots_16/MMRL/vit_b16/seed1/grid.out").exists()
    finally:
        proc.send_signal(signal.SIGKILL)  # the other run dies: the grid runs the cell itself (it resumes)
        proc.wait()
    assert grid.wait(timeout=300) == 0, log.read_text()[-3000:]
    text = log.read_text()
    assert f"running  MMRL/dtd/seed1/train_base (elsewhere: {holder_text(proc.pid)}" in text
    assert "Grid finished: 2 cells done, 0 failed" in text and "failed   " not in text
    assert cell_status(str(held)) == FINISHED
