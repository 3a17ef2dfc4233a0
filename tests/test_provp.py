"""ProVP (trainers/provp): its official code's numbers from the same seed, its progressive prompts, its loss
terms, the official fork's model selection on the test set, its keys outside its node, its size at ViT-B/16."""

from __future__ import annotations

import json
import os.path as osp
import re
import subprocess
import sys

import pytest
import torch
from tiny import seeded_state_dict, tiny_clip_config, without_data

import trainers.base
from clip.model import CLIP, CLIPConfig, build_model
from dassl.config import get_cfg_default
from datasets.synthetic import make_dataset
from trainers.base import ConfigError
from trainers.config import extend_cfg, keep_trainer_node
from trainers.provp import ProVP, build_provp
from trainers.provp.model import ALPHA, ProgressiveHooks, init_bound

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(REPO, "configs", "trainers", "ProVP")
CLASSNAMES = ["red_apple", "dog", "cat", "house", "tree"]
# The official code hard-codes ViT-B/16's 12 image blocks and width 768: its world has them, and a tiny text tower.
OFFICIAL_CLIP = tiny_clip_config(vision_width=768, vision_patch_size=16)

# Printed by the OFFICIAL code (github MCG-NJU/ProVP @837b8fb with its forked Dassl, CPU, fp32; run-time
# patches only: an empty trainers.vpclip, clip._download returning this CLIP, the warmup scheduler's
# `verbose`, full checkpoint loads) for the recipe of run_recipe() on its own ProVP trainer and config,
# ProVP-Ref with vit_b16_b2n_ep100.yaml (2026-12-05); ours with EXACT True printed the same values, bit for
# bit, and drew the same next random number. Regenerate: python -m tools.parity ProVP --scenario seeded --write-pins
OFFICIAL = {
    "steps": [
        {"xe_loss": 1.7020049095153809, "ref_loss": 1.3129578828811646, "acc": 25.0},
        {"xe_loss": 1.5927226543426514, "ref_loss": 1.3347878456115723, "acc": 0.0},
        {"xe_loss": 1.700131893157959, "ref_loss": 1.3418687582015991, "acc": 50.0},
        {"xe_loss": 1.6496601104736328, "ref_loss": 1.3147201538085938, "acc": 25.0},
    ],
    "lrs": [1e-05, 0.1, 0.1, 0.05],
    "logits0": [0.963731586933136, -0.07844432443380356, 0.041739605367183685, 1.0126138925552368, 0.2104930579662323],
    "logits5": [1.3242732286453247, 0.20762528479099274, 0.351815402507782, 1.3364795446395874, 0.5309109687805176],
    "next_draw": 0.3715372085571289,
}


def seeded_weights(config: CLIPConfig) -> dict[str, torch.Tensor]:
    """The pins' seeded CLIP (tests/tiny.py), as the recipe's file holds it."""
    return seeded_state_dict(config)


def make_cfg(*opts: object) -> object:
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join(CONFIGS, "vit_b16_b2n_ep100.yaml"))
    cfg.merge_from_list(["TRAINER.NAME", "ProVP", "DATASET.NAME", "DescribableTextures", "INPUT.SIZE", (32, 32)])
    cfg.merge_from_list(["MODEL.BACKBONE.PATH", "seeded", "OPTIM.MAX_EPOCH", 2, "TRAINER.COOP.PREC", "fp32"])
    cfg.merge_from_list(list(opts))
    keep_trainer_node(cfg)
    cfg.freeze()
    return cfg


def fixed_trainer(cfg: object) -> ProVP:
    torch.manual_seed(7)
    return without_data(ProVP, CLASSNAMES)(cfg)


def run_recipe(t: ProVP) -> dict:
    """Two epochs of two hand-fed batches of four images, then six images in eval mode."""
    g = torch.Generator().manual_seed(0)
    images = torch.randn(4, 4, 3, 32, 32, generator=g)
    labels = torch.tensor([[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1], [2, 3, 4, 0]])
    t.set_model_mode("train")
    t.num_batches = 2
    steps, lrs = [], []
    for i in range(4):
        t.epoch, t.batch_idx = divmod(i, 2)
        steps.append(t.forward_backward({"img": images[i], "label": labels[i]}))
        lrs.append(t.get_current_lr())
    t.set_model_mode("eval")
    with torch.no_grad():
        logits = t.model_inference(torch.randn(6, 3, 32, 32, generator=g))
    return {"steps": steps, "lrs": lrs, "logits0": logits[0].tolist(), "logits5": logits[5].tolist(),
            "next_draw": torch.rand(1).item()}  # fmt: skip


@pytest.fixture(scope="module")
def official_world() -> dict[str, torch.Tensor]:
    return seeded_weights(OFFICIAL_CLIP)


def test_seeded_run_with_exact_is_the_official_run_bit_for_bit(official_world, monkeypatch):
    monkeypatch.setattr(trainers.base, "load_clip", lambda cfg: official_world)
    assert run_recipe(fixed_trainer(make_cfg("EXACT", True))) == OFFICIAL


def test_seeded_run_by_default_differs_by_rounding_only(official_world, monkeypatch):
    monkeypatch.setattr(trainers.base, "load_clip", lambda cfg: official_world)
    got = run_recipe(fixed_trainer(make_cfg()))
    for ours, official in zip(got["steps"], OFFICIAL["steps"], strict=True):
        assert ours == pytest.approx(official, rel=1e-5)
    assert got["lrs"] == OFFICIAL["lrs"] and got["next_draw"] == OFFICIAL["next_draw"]
    # The text features cut at the EOT round otherwise; the lr of 0.1 grows that to ~1e-5 in four steps.
    assert got["logits0"] == pytest.approx(OFFICIAL["logits0"], abs=1e-4)
    assert got["logits5"] == pytest.approx(OFFICIAL["logits5"], abs=1e-4)


def test_prompts_are_inserted_after_the_class_token_then_blended_into_their_rows():
    layers, n, width, batch = 3, 6, 4, 2
    prompts = torch.randn(layers, n, width)
    x = torch.randn(5, batch, width)  # class token + 4 patches, sequence-first
    hooks = ProgressiveHooks(prompts)
    first = hooks.before(1, x)
    assert first.shape == (5 + n, batch, width)
    for b in range(batch):
        assert torch.equal(first[0, b], x[0, b]) and torch.equal(first[1 + n :, b], x[1:, b])
        assert torch.equal(first[1 : 1 + n, b], prompts[0])
    y = torch.randn_like(first)  # the output of block 1
    second = hooks.before(2, y)
    assert torch.equal(second[0], y[0]) and torch.equal(second[1 + n :], y[1 + n :])
    for b in range(batch):
        torch.testing.assert_close(second[1 : 1 + n, b], 0.01 * y[1 : 1 + n, b] + 0.99 * prompts[1], rtol=0, atol=1e-6)
    assert hooks.before(layers + 1, y) is y  # no prompts beyond the last layer
    assert ALPHA == 0.01


def test_four_prompts_or_fewer_are_not_inserted_but_blended_into_the_first_patches():
    prompts = torch.randn(2, 3, 4)
    x = torch.randn(5, 1, 4)
    hooks = ProgressiveHooks(prompts)
    assert hooks.before(1, x) is x
    second = hooks.before(2, x)
    torch.testing.assert_close(second[1:4, 0], 0.01 * x[1:4, 0] + 0.99 * prompts[1], rtol=0, atol=1e-6)
    assert torch.equal(second[4:], x[4:]) and torch.equal(second[0], x[0])


@pytest.mark.parametrize(("n_ctx", "expected"), [(16, 147_456), (50, 460_800)])
def test_learnable_parameters_at_vit_b16(n_ctx, expected):
    """12 blocks x N_CTX x 768: MMRL's Table 6 gives ProVP 0.147 M, the base-to-novel setting (16 prompts)."""
    from benchmarks.param_counts import VIT_B16

    with torch.device("meta"):
        model = build_provp(make_cfg("TRAINER.COOP.N_CTX", n_ctx), CLASSNAMES, CLIP(VIT_B16).requires_grad_(False))
    assert sum(p.numel() for p in model.learner.parameters() if p.requires_grad) == expected


def test_prompts_start_uniform_within_the_official_bound():
    """The official bound sqrt(6 / (3 * 14 * 14 + width)) (patch 14 hard-coded), drawn after CLIP's draws."""
    torch.manual_seed(0)
    model = build_provp(make_cfg(), CLASSNAMES, CLIP(tiny_clip_config()).requires_grad_(False))
    prompts = model.learner.prompt_embeddings
    assert prompts.shape == (12, 16, 64)
    bound = (6 / (3 * 14 * 14 + 64)) ** 0.5
    assert init_bound(64) == pytest.approx(bound, rel=1e-15)
    assert prompts.abs().max() <= bound and prompts.abs().max() > 0.95 * bound


def test_frozen_features_come_from_fp32_weights_when_clip_runs_in_fp16():
    torch.manual_seed(0)
    weights = CLIP(tiny_clip_config()).state_dict()
    half, full = build_model(weights).requires_grad_(False), build_model(weights).float().requires_grad_(False)
    cfg = make_cfg("OPTIM.USE_REF", True)
    model = build_provp(cfg, CLASSNAMES, half)
    assert model.reference is not None and model.reference.conv1.weight.dtype == torch.float32
    assert build_provp(cfg, CLASSNAMES, full).reference is None  # fp32: the frozen CLIP itself
    image = torch.randn(2, 3, 32, 32)
    expected = full.encode_image(image)
    assert torch.equal(model.frozen_features(image), expected / expected.norm(dim=-1, keepdim=True))


def test_keys_outside_the_node_belong_to_provp_runs_only():
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join(CONFIGS, "vit_b16.yaml"))  # sets OPTIM.USE_REF True
    cfg.merge_from_list(["LOSS.LAMBDA", 1.0, "TRAINER.COOP.CSC", False])  # the official scripts' options
    coop = cfg.clone()
    coop.TRAINER.NAME = "CoOp"
    keep_trainer_node(coop)
    assert "USE_REF" not in coop.OPTIM and "LOSS" not in coop
    cfg.TRAINER.NAME = "ProVP"
    keep_trainer_node(cfg)
    assert cfg.OPTIM.USE_REF is True and cfg.LOSS.LAMBDA == 1.0
    assert set(cfg.TRAINER.COOP) == {"N_CTX", "PREC", "SELECT_ON_TEST"}


@pytest.mark.parametrize(
    ("opts", "message"),
    [
        (["TEST.FINAL_MODEL", "best_val"], "use one of them"),
        (["TRAIN.PRINT_FREQ", 5], "no epoch would be tested"),
    ],
)
def test_selection_on_the_test_set_refuses_what_it_cannot_run(opts, message):
    cfg = make_cfg("TRAINER.COOP.SELECT_ON_TEST", True, *opts)
    with pytest.raises(ConfigError, match=message):
        ProVP.check_cfg(object.__new__(ProVP), cfg)


@pytest.fixture(scope="module")
def tiny_world(tiny_clip, tmp_path_factory) -> tuple[str, str]:
    root = tmp_path_factory.mktemp("provp")
    make_dataset("dtd", str(root / "data"), n_classes=4, n_train=4, n_val=2, n_test=3)
    return tiny_clip, str(root / "data")  # the suite's tiny CLIP (tests/conftest.py)


def train_py(tiny_world: tuple[str, str], out: str, *opts: str) -> str:
    tiny, root = tiny_world
    cmd = [sys.executable, osp.join(REPO, "train.py"), "--root", root, "--seed", "1", "--trainer", "ProVP",
           "--dataset-config-file", osp.join(REPO, "configs", "datasets", "dtd.yaml"),
           "--config-file", osp.join(CONFIGS, "vit_b16_b2n_ep100.yaml"), "--output-dir", out,
           "MODEL.BACKBONE.PATH", tiny, "INPUT.SIZE", "(32, 32)", "DATALOADER.NUM_WORKERS", "0",
           "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "DATASET.NUM_SHOTS", "4", "OPTIM.MAX_EPOCH", "3", "OPTIM.LR", "2.0",
           "TRAINER.COOP.N_CTX", "8", *opts]  # fmt: skip
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]
    return open(osp.join(out, "log.txt")).read()


def test_selection_on_the_test_set_reports_the_best_epoch(tiny_world, tmp_path):
    """The official fork's protocol: a test after every epoch, the best kept and tested again at the end."""
    log = train_py(tiny_world, str(tmp_path / "run"), "TRAINER.COOP.SELECT_ON_TEST", "True")
    accuracies = [float(a) for a in re.findall(r"^\* accuracy: ([\d.]+)%", log, flags=re.M)]
    assert len(accuracies) == 3 + 1  # every epoch, then the deployed model
    best = max(accuracies[:3])
    assert accuracies[3] == best
    metrics = json.load(open(tmp_path / "run" / "metrics.json"))
    assert metrics["model"]["selection"] == "best_test"
    assert metrics["model"]["epoch"] == accuracies.index(best) + 1  # the first of equal results
    assert (tmp_path / "run" / "Prompt_learner" / "model-best.pth.tar").is_file()


def test_by_default_the_last_epoch_is_reported_and_nothing_is_tested_before(tiny_world, tmp_path):
    log = train_py(tiny_world, str(tmp_path / "run"))
    assert len(re.findall(r"^\* accuracy: ", log, flags=re.M)) == 1
    assert "xe_loss" in log and "ref_loss" in log  # ProVP-Ref's terms, printed as the official trainer does
    metrics = json.load(open(tmp_path / "run" / "metrics.json"))
    assert metrics["model"] == {"selection": "last", "epoch": 3, "model_dir": None}
    assert not (tmp_path / "run" / "Prompt_learner" / "model-best.pth.tar").exists()
