"""train.py: config precedence and one-line errors for mistakes a user can make."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import train
from dassl.utils import UserError
from datasets.synthetic import make_dataset

REPO = Path(__file__).resolve().parents[1]
DTD = str(REPO / "configs" / "datasets" / "dtd.yaml")
EUROSAT = str(REPO / "configs" / "datasets" / "eurosat.yaml")
MMRL_CFG = str(REPO / "configs" / "trainers" / "MMRL" / "vit_b16.yaml")


def cfg_of(argv: list[str]):
    return train.setup_cfg(train.build_parser().parse_args(argv))


def test_precedence_yaml_then_dataset_settings_then_opts() -> None:
    base = ["--trainer", "MMRL", "--dataset-config-file", EUROSAT, "--config-file", MMRL_CFG, "--seed", "2"]
    cfg = cfg_of(base)
    assert cfg.SEED == 2
    assert cfg.OPTIM.LR == 1e-3  # from the trainer YAML
    assert cfg.TRAINER.MMRL.REG_WEIGHT == 0.01  # EuroSAT's setting beats the YAML's 1.0
    assert cfg.TRAINER.MMRL.REP_DIM == 2048
    cfg = cfg_of(base + ["TRAINER.MMRL.REG_WEIGHT", "3.5", "TASK", "FS"])
    assert cfg.TRAINER.MMRL.REG_WEIGHT == 3.5  # the command line wins
    assert cfg.TASK == "FS"


def test_task_on_the_command_line_selects_the_dataset_settings() -> None:
    mmrlpp = str(REPO / "configs" / "trainers" / "MMRLpp" / "vit_b16.yaml")
    base = ["--trainer", "MMRLpp", "--dataset-config-file", EUROSAT, "--config-file", mmrlpp]
    assert cfg_of(base + ["TASK", "B2N"]).TRAINER.MMRLpp.BETA == 0.2
    assert cfg_of(base + ["TASK", "CD"]).TRAINER.MMRLpp.BETA == 0.3


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--trainer", "MMRLx", "--dataset-config-file", DTD], "unknown trainer 'MMRLx'.*available: .*MMRL, MMRLpp, "),
        (["--trainer", "MMRL", "--dataset-config-file", "configs/datasets/nope.yaml"], "nope.yaml: no such file"),
        (["--trainer", "MMRL", "--dataset-config-file", DTD, "OPTIM.NOPE", "1"], "Non-existent key: OPTIM.NOPE"),
        (["--trainer", "MMRL", "--dataset-config-file", DTD, "OPTIM.LR"], "KEY VALUE pairs"),
        (["--trainer", "MMRL", "--dataset-config-file", DTD, "TASK", "XYZ"], "TASK must be"),
    ],
)
def test_config_mistakes_are_user_errors(argv: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):
        cfg_of(argv)


def test_errors_print_one_line_without_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    make_dataset("DescribableTextures", str(data))
    (data / "dtd" / "split_zhou_DescribableTextures.json").unlink()
    (data / "dtd" / "images").rename(data / "dtd" / "imgs")  # the image folder is missing too
    argv = [sys.executable, str(REPO / "train.py"), "--root", str(data), "--trainer", "MMRL"]
    argv += ["--dataset-config-file", DTD, "--config-file", MMRL_CFG, "--output-dir", str(tmp_path / "out")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "dtd/images" in last and "README.md#data" in last
