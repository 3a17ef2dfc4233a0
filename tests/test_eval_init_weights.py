"""``train.py --eval-only`` with ``MODEL.INIT_WEIGHTS`` and no ``--model-dir`` evaluates those weights, for every
registered trainer with a learner to fill; with neither, a trainable method still stops with the usual line.

Each trainable method: its learner's tensors moved off their init and saved (as a checkpoint, or as a bare
state dict); the command line (train.main, in process) must end with exactly those tensors in the learner,
score what the same weights score when loaded by hand, and record the file in metrics.json.
"""

from __future__ import annotations

import json
import os.path as osp
import sys

import pytest
import torch
import yaml

import train
from dassl.engine import build_trainer
from dassl.utils import set_random_seed
from datasets.synthetic import make_dataset
from trainers.base import ConfigError
from trainers.config import clip_trainers

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAINERS = sorted(clip_trainers())
TRAINABLE = [n for n in TRAINERS if clip_trainers()[n].TRAINABLE]


@pytest.fixture(scope="module")
def setup(tiny_clip, tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("weights")
    make_dataset("dtd", str(root / "data"), n_classes=4, n_train=4, n_val=2, n_test=2)
    return tiny_clip, str(root / "data")  # the suite's tiny CLIP (tests/conftest.py)


def argv(name: str, setup: tuple[str, str], out: str, *flags: str, opts: tuple[str, ...] = ()) -> list[str]:
    """train.py's arguments for ``name`` with its base-to-novel (else 16-shot) config from protocols.yaml."""
    with open(osp.join(REPO, "configs", "trainers", name, "protocols.yaml")) as f:
        entry = (lambda p: p.get("base2new") or p.get("few_shot") or p["dg"])(yaml.safe_load(f))
    config = entry["config"] if isinstance(entry["config"], str) else entry["config"][max(entry["config"])]
    tiny, root = setup
    return [
        "--root", root, "--seed", "1", "--trainer", name, "--output-dir", out, *flags,
        "--dataset-config-file", osp.join(REPO, "configs", "datasets", "dtd.yaml"),
        "--config-file", osp.join(REPO, "configs", "trainers", name, f"{config}.yaml"),
        *[str(v) for v in entry.get("opts", [])],
        "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "MODEL.BACKBONE.PATH", tiny,
        "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0", "DATALOADER.TEST.BATCH_SIZE", "4",
        "TEST.PER_CLASS_RESULT", "True", *opts,
    ]  # fmt: skip


def run_main(args: list[str]):
    """train.main in process (it redirects stdout into the run's log: put it back)."""
    stdout = sys.stdout
    try:
        return train.main(train.build_parser().parse_args(args))
    finally:
        if sys.stdout is not stdout:
            sys.stdout.close()
        sys.stdout = stdout


@pytest.mark.parametrize("name", TRAINABLE)
def test_eval_only_scores_the_init_weights(name, setup, tmp_path):
    set_random_seed(1)
    reference = build_trainer(train.setup_cfg(train.build_parser().parse_args(argv(name, setup, str(tmp_path / "r")))))
    learner = reference.model.learner
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in learner.parameters():
            p.add_(torch.randn(p.shape, generator=g))
    weights = {k: v.clone() for k, v in learner.state_dict().items()}
    path = str(tmp_path / "released.pth")
    bare = TRAINABLE.index(name) % 2  # half of them as a bare state dict, half as a checkpoint
    torch.save(weights if bare else {"state_dict": weights, "epoch": 7}, path)
    expected = reference.test()

    out = tmp_path / "eval"
    trainer = run_main(argv(name, setup, str(out), "--eval-only", opts=("MODEL.INIT_WEIGHTS", path)))
    got = trainer.model.learner.state_dict()
    assert got.keys() == weights.keys() and all(torch.equal(got[k], weights[k]) for k in weights)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["accuracy"] == pytest.approx(expected, abs=1e-9)
    assert metrics["model"] == {"selection": "weights", "epoch": None if bare else 7, "model_dir": path}
    assert f'Evaluating the weights of MODEL.INIT_WEIGHTS "{path}"' in (out / "log.txt").read_text()


@pytest.mark.parametrize("name", TRAINERS)
def test_eval_only_without_weights(name, setup, tmp_path):
    args = argv(name, setup, str(tmp_path / "eval"), "--eval-only")
    if name in TRAINABLE:
        with pytest.raises(train.UsageError) as info:
            run_main(args)
        assert str(info.value) == "--eval-only needs --model-dir (the output folder of a training run)"
        assert not (tmp_path / "eval").exists()
    else:  # nothing to train: evaluated as it is
        run_main(args)
        assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["model"]["selection"] == "initial"


def test_weights_that_fill_part_of_the_learner_are_refused(setup, tmp_path):
    name = "CoCoOp"
    trainer = build_trainer(train.setup_cfg(train.build_parser().parse_args(argv(name, setup, str(tmp_path / "r")))))
    state = trainer.model.learner.state_dict()
    first = next(k for k in state if k not in trainer.REBUILT_KEYS)
    torch.save({k: v for k, v in state.items() if k != first}, tmp_path / "partial.pth")
    partial = tmp_path / "partial.pth"
    with pytest.raises(ConfigError, match=rf"missing keys \['{first}'\]"):
        run_main(argv(name, setup, str(tmp_path / "eval"), "--eval-only", opts=("MODEL.INIT_WEIGHTS", str(partial))))


def test_masked_adapter_release_with_its_prefix_is_loaded(setup, tmp_path):
    """The release's whole model (adapter under ``adapter.``, beside CLIP) given as MODEL.INIT_WEIGHTS fills the
    adapter, in training as in evaluation (upstream's name matching would load nothing)."""
    args = argv("MaskedMHAAdapter", setup, str(tmp_path / "r"))
    reference = build_trainer(train.setup_cfg(train.build_parser().parse_args(args)))
    g = torch.Generator().manual_seed(5)
    adapter = {k: torch.randn(v.shape, generator=g) for k, v in reference.model.learner.state_dict().items()}
    release = {f"adapter.{k}": v for k, v in adapter.items()} | {"_clip.logit_scale": torch.tensor(4.6)}
    torch.save(release, tmp_path / "release.pth")
    opts = ("MODEL.INIT_WEIGHTS", str(tmp_path / "release.pth"))
    for trainer in (
        build_trainer(train.setup_cfg(train.build_parser().parse_args([*args, *opts]))),
        run_main(argv("MaskedMHAAdapter", setup, str(tmp_path / "eval"), "--eval-only", opts=opts)),
    ):
        got = trainer.model.learner.state_dict()
        assert all(torch.equal(got[k], v) for k, v in adapter.items())


def test_the_eval_run_folder_rebuilds_the_evaluated_model(setup, tmp_path):
    """tools.run_model.load_run on the folder of an --eval-only MODEL.INIT_WEIGHTS run loads those weights."""
    from tools.run_model import load_run

    args = train.build_parser().parse_args(argv("MMRL", setup, str(tmp_path / "r")))
    reference = build_trainer(train.setup_cfg(args))
    g = torch.Generator().manual_seed(4)
    weights = {k: v + torch.randn(v.shape, generator=g) for k, v in reference.model.learner.state_dict().items()}
    torch.save(weights, tmp_path / "released.pth")
    run_main(argv("MMRL", setup, str(tmp_path / "eval"), "--eval-only",
                  opts=("MODEL.INIT_WEIGHTS", str(tmp_path / "released.pth"))))  # fmt: skip
    got = load_run(str(tmp_path / "eval"), device="cpu").trainer.model.learner.state_dict()
    assert all(torch.equal(got[k], v) for k, v in weights.items())
