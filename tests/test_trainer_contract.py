"""One contract for every registered CLIP trainer (timm's ``test_models`` idea): a method that registers
itself is tested here without this file naming it.

For each trainer, with its own base-to-novel config from ``protocols.yaml`` on a tiny CLIP (ViT, and ResNet for
the trainers that run on one) and a synthetic dataset: it builds; training changes exactly the tensors it
declares learnable (``model.learner``) and nothing of CLIP; its checkpoint restores the same tensors into a
fresh trainer; ``train.py --eval-only`` from the run's folder scores exactly what the trained model scored; a
checkpoint of another shape is refused with one clear error.
"""

from __future__ import annotations

import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
import yaml
from tiny import tiny_resnet_state_dict

import datasets  # noqa: F401  (registers the datasets)
from clip.model import CLIP, RESNET, VIT
from dassl.config import get_cfg_default
from dassl.engine import TrainerX, build_trainer
from dassl.utils import set_random_seed
from trainers.base import ConfigError
from trainers.config import clip_trainers, extend_cfg

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TRAINERS = sorted(clip_trainers())


def cases(trainable: bool = False) -> list:
    """(trainer, backbone family) for every trainer on a ViT, and on a ResNet where it runs on one."""
    names = [n for n in TRAINERS if clip_trainers()[n].TRAINABLE or not trainable]
    return [pytest.param(n, VIT, id=n) for n in names] + [
        pytest.param(n, RESNET, id=f"{n}-ResNet") for n in names if RESNET in clip_trainers()[n].BACKBONES
    ]


@pytest.fixture(scope="module")
def setup(request, tmp_path_factory, tiny_clip, synthetic_data) -> tuple[str, str]:
    """(tiny CLIP file of the backbone family, data root with a 4-class synthetic DTD), from tests/conftest.py."""
    data = synthetic_data("dtd", n_classes=4, n_train=4, n_val=2, n_test=2)
    if getattr(request, "param", VIT) != RESNET:
        return tiny_clip, data
    path = tmp_path_factory.mktemp("contract-resnet") / "tiny.pt"
    torch.save(tiny_resnet_state_dict(0), path)
    return str(path), data


def base2new_config(trainer: str) -> tuple[str, list[str]]:
    """The method's base-to-novel config and options; for a few-shot-only method, its 16-shot one; for a
    domain-generalisation-only one (Meta_DG), its DG one."""
    with open(osp.join(REPO, "configs", "trainers", trainer, "protocols.yaml")) as f:
        protocols = yaml.safe_load(f)
    entry = protocols.get("base2new") or protocols.get("few_shot") or protocols["dg"]
    config = entry["config"] if isinstance(entry["config"], str) else entry["config"][max(entry["config"])]
    opts = [str(v) for v in entry.get("opts", [])]
    return osp.join(REPO, "configs", "trainers", trainer, f"{config}.yaml"), opts


def tiny_opts(setup: tuple[str, str], output_dir: str) -> list[str]:
    tiny, root = setup
    return [
        "DATASET.ROOT", root, "DATASET.NUM_SHOTS", "2", "DATASET.SUBSAMPLE_CLASSES", "base", "TASK", "B2N",
        "MODEL.BACKBONE.PATH", tiny, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
        "DATALOADER.TRAIN_X.BATCH_SIZE", "2", "DATALOADER.TEST.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "1",
        "TEST.PER_CLASS_RESULT", "True", "OUTPUT_DIR", output_dir,
    ]  # fmt: skip


def build(trainer: str, setup: tuple[str, str], output_dir: str, extra: list[str] = ()):
    config_file, opts = base2new_config(trainer)
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join(REPO, "configs", "datasets", "dtd.yaml"))
    cfg.merge_from_file(config_file)
    cfg.merge_from_list(["TRAINER.NAME", trainer, *opts, *tiny_opts(setup, output_dir), *extra])
    cfg.freeze()
    set_random_seed(1)
    return build_trainer(cfg)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("name, setup", cases(), indirect=["setup"])
def test_training_changes_exactly_the_declared_learnables(name, setup, tmp_path):
    t = build(name, setup, str(tmp_path / "run"))
    params = dict(t.model.named_parameters())  # each tensor once, whatever the module's attribute names
    declared = {id(p) for p in t.model.learner.parameters() if p.requires_grad}
    if not t.TRAINABLE:
        assert not declared, f"{name} trains nothing but declares learnable tensors"
        with pytest.raises(ConfigError, match="--eval-only"):
            t.train()
        return
    assert declared, f"{name} declares no learnable tensor"
    frozen = [n for n, p in params.items() if id(p) not in declared and p.requires_grad]
    assert not frozen, f"{name}: tensors outside model.learner require grad: {frozen}"
    before = {n: p.detach().clone() for n, p in params.items()}
    t.train()
    changed = {id(p) for n, p in params.items() if not torch.equal(before[n], p.detach())}
    surprises = [n for n, p in params.items() if id(p) in changed ^ declared]
    assert changed == declared, f"{name}: changed but not declared, or declared but unchanged: {surprises}"


@pytest.mark.parametrize("name, setup", cases(trainable=True), indirect=["setup"])
def test_checkpoint_round_trip_and_eval_only(name, setup, tmp_path):
    run = tmp_path / "run"
    t = build(name, setup, str(run))
    t.train()  # saves the last epoch and tests the final model
    trained = snapshot(t.model.learner)
    accuracy = t.test()

    fresh = build(name, setup, str(tmp_path / "fresh"))
    assert any(not torch.equal(v, fresh.model.learner.state_dict()[k]) for k, v in trained.items())
    fresh.load_model(str(run), epoch=1)
    loaded = fresh.model.learner.state_dict()
    assert trained.keys() == loaded.keys() and all(torch.equal(trained[k], loaded[k]) for k in trained)

    # The command line: --eval-only from the run's folder scores what the trained model scored.
    config_file, opts = base2new_config(name)
    out = tmp_path / "eval"
    cmd = [sys.executable, osp.join(REPO, "train.py"), "--seed", "1", "--trainer", name,
           "--dataset-config-file", osp.join(REPO, "configs", "datasets", "dtd.yaml"), "--config-file", config_file,
           "--model-dir", str(run), "--load-epoch", "1", "--eval-only", *opts, *tiny_opts(setup, str(out))]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    log = (out / "log.txt").read_text()
    assert f"* accuracy: {accuracy:.1f}%" in log
    assert len(re.findall(r"^\* class: ", log, flags=re.M)) == 2  # the 2 base classes


@pytest.mark.parametrize("name, setup", cases(trainable=True), indirect=["setup"])
def test_a_checkpoint_of_other_shapes_is_refused(name, setup, tmp_path):
    t = build(name, setup, str(tmp_path / "run"))
    state = t.model.learner.state_dict()
    key = next(k for k, v in state.items() if v.dim() >= 1 and k not in t.REBUILT_KEYS)
    bad = {**state, key: torch.zeros(*[s + 1 for s in state[key].shape])}
    with pytest.raises(ConfigError, match=re.escape(key)):
        t.learner_state(t.model.learner, bad, "other.pth")


@pytest.mark.parametrize("name, setup", cases(), indirect=["setup"])
def test_default_cuts_prompts_and_exact_gives_the_same_logits(name, setup, tmp_path):
    """By default every CLIP in the model runs prompts only up to the longest EOT; ``EXACT True`` runs the
    official 77 positions. Same initial state (same seed): the same logits up to float rounding."""
    fast = build(name, setup, str(tmp_path / "fast"))
    exact = build(name, setup, str(tmp_path / "exact"), ["EXACT", "True"])
    clips = [[m for m in t.model.modules() if isinstance(m, CLIP)] for t in (fast, exact)]
    assert clips[0] and not any(c.exact for c in clips[0]) and all(c.exact for c in clips[1])
    images = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    logits = []
    for t in (fast, exact):
        t.set_model_mode("eval")
        with torch.no_grad():
            logits.append(t.model_inference(images))
    torch.testing.assert_close(logits[0], logits[1], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", TRAINERS)
def test_no_trainer_sits_more_than_four_classes_below_trainerx(name):
    """A method is a short chain over the base (CLIPTrainer, at most a family base, at most one variant)."""
    mro = clip_trainers()[name].__mro__
    assert mro.index(TrainerX) <= 4, f"{name}: {[c.__name__ for c in mro[: mro.index(TrainerX)]]}"


@pytest.mark.parametrize(
    "name, setup", [c for c in cases() if clip_trainers()[c.values[0]].FROZEN_IMAGE_FEATURES], indirect=["setup"]
)
def test_declared_frozen_image_features_depend_on_the_image_alone(name, setup, tmp_path):
    """What a method declares frozen (computed once per image by the feature cache) does not move when the
    learned tensors do, and an image's features do not depend on the other images of its batch."""
    t = build(name, setup, str(tmp_path / "run"))
    frozen = getattr(t.model, t.FROZEN_IMAGE_FEATURES)
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = frozen(images)
        for p in t.model.learner.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(1)).to(p.dtype))
        assert torch.equal(frozen(images), before)
        torch.testing.assert_close(frozen(images[2:]), before[2:], rtol=1e-5, atol=1e-6)
