"""CoOp and CoCoOp: prompt layout, checkpoint names, user errors, and seeded runs pinned to the
official implementation (KaiyangZhou/CoOp on upstream Dassl, CPU fp32).

The pinned numbers come from the official code run on the world rebuilt here: the tiny CLIP of
``tiny_clip_config()`` drawn after ``torch.manual_seed(0)`` and the synthetic DTD of
``make_dataset("dtd", root, n_classes=8, n_train=4, n_val=2, n_test=3, size=32, seed=0)``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from yacs.config import CfgNode

import train
from clip import clip
from clip.model import CLIP
from dassl.utils import UserError
from tests.tiny import tiny_clip_config
from trainers.coop.cocoop import CoCoOp, CoCoOpPromptLearner
from trainers.coop.coop import CoOp, CoOpPromptLearner

REPO = Path(__file__).resolve().parents[1]
COMMON = ["DATALOADER.NUM_WORKERS", "0", "INPUT.SIZE", "(32, 32)", "TRAIN.PRINT_FREQ", "1"]
COMMON += ["TEST.PER_CLASS_RESULT", "True", "OPTIM.MAX_EPOCH", "2", "DATALOADER.TEST.BATCH_SIZE", "8"]
STEP = re.compile(r"batch \[\d+/\d+\].* loss ([\d.]+) \([\d.]+\)(?: acc ([\d.]+) \([\d.]+\))? lr ([\d.e+-]+)")
PER_CLASS = re.compile(r"\* class: \d+ \((\w+)\)\ttotal: \d+\tcorrect: (\d+)")

# From the official runs (steps.jsonl at full precision; "* class" lines: correct out of 3 per class). Each entry
# is printed again by the command above it (tools/parity; values within the tolerance of check_against_official).
WARMUP_LR = [1e-05] * 3 + [0.002] * 4 + [0.001]
OFFICIAL = {
    # python -m tools.parity CoOp --scenario middle --write-pins
    "coop_middle": {
        "loss": [2.0100174, 2.0130129, 2.2330298, 2.2466364, 2.0715170, 1.9389851, 2.1730077, 1.9657576],
        "acc": [0.0, 0.0, 25.0, 25.0, 50.0, 50.0, 0.0, 50.0],
        "lr": WARMUP_LR,
        "correct": [0, 0, 3, 0, 0, 3, 3, 0],
    },
    # python -m tools.parity CoOp --scenario csc --write-pins
    "coop_csc": {
        "loss": [2.6115067, 2.1022315, 1.9585655, 2.1439474, 2.1994512, 1.5549716, 1.5286415, 1.2774862],
        "acc": [0.0, 50.0, 25.0, 25.0, 25.0, 25.0, 25.0, 25.0],
        "lr": WARMUP_LR,
        "correct": [3, 3, 1, 3, 3, 0, 0, 3],
    },
    # python -m tools.parity CoOp --scenario ctxv1_base_to_new --write-pins (coop_ctxv1_base and _new)
    "coop_ctxv1_base": {
        "loss": [1.5166192, 1.5780960, 1.5213950, 1.4757242, 1.2465739, 1.2930115, 1.2230465, 1.3470720],
        "acc": [50.0, 50.0, 50.0, 50.0, 75.0, 50.0, 50.0, 25.0],
        "lr": WARMUP_LR,
        "correct": [3, 3, 0, 0],
    },
    "coop_ctxv1_new": {"correct": [0, 0, 0, 0]},
    # python -m tools.parity CoCoOp --scenario batch1_base_to_new --write-pins (cocoop_base and _new)
    "cocoop_base": {
        "loss": [
            1.9695535,
            0.9209341,
            2.6702986,
            0.8773203,
            2.0124467,
            0.6748823,
            0.6216673,
            2.7113855,
            1.9816965,
            2.4619644,
            2.3952818,
            1.5496186,
            0.9631943,
            0.8256749,
            0.9936342,
            0.7853954,
        ],  # fmt: skip
        "acc": [None] * 16,  # the official CoCoOp prints no accuracy
        "lr": [1e-05] * 7 + [0.002] * 8 + [0.001],
        "correct": [3, 3, 0, 0],
    },
    "cocoop_new": {"correct": [0, 0, 0, 3]},
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, tiny_clip: str, synthetic_data) -> Path:
    """The parity world (tests/conftest.py): tiny CLIP weights and the synthetic DTD, beside the runs' folders."""
    root = tmp_path_factory.mktemp("coop")
    (root / "tiny.pt").symlink_to(tiny_clip)
    (root / "data").symlink_to(synthetic_data("dtd", n_classes=8, n_train=4, n_val=2, n_test=3, size=32, seed=0))
    return root


def train_py(world: Path, name: str, trainer: str, config: str, *opts: str, model_dir: str = "") -> str:
    """Run train.py in-process as the parity run did; its log."""
    argv = ["--root", str(world / "data"), "--seed", "1", "--trainer", trainer]
    argv += ["--dataset-config-file", str(REPO / "configs/datasets/dtd.yaml")]
    argv += ["--config-file", str(REPO / f"configs/trainers/{trainer}/{config}.yaml")]
    argv += ["--output-dir", str(world / name)]
    if model_dir:
        argv += ["--model-dir", str(world / model_dir), "--load-epoch", "2", "--eval-only"]
    train.main(train.build_parser().parse_args([*argv, *opts, *COMMON, "MODEL.BACKBONE.PATH", str(world / "tiny.pt")]))
    sys.stdout.flush()  # dassl's logger tees stdout into log.txt
    return (world / name / "log.txt").read_text()


def check_against_official(stdout: str, expected: dict) -> None:
    """Printed steps (loss to 4 decimals, acc, lr) and per-class test counts as the official run."""
    steps = STEP.findall(stdout)
    if "loss" in expected:
        assert [float(loss) for loss, _, _ in steps] == pytest.approx(expected["loss"], abs=6e-5)
        assert [float(acc) if acc else None for _, acc, _ in steps] == expected["acc"]
        assert [float(lr) for _, _, lr in steps] == pytest.approx(expected["lr"], rel=1e-6)
    else:
        assert steps == []
    assert [int(n) for _, n in PER_CLASS.findall(stdout)] == expected["correct"]


def test_coop_random_context_middle_and_csc_reproduce_the_official_runs(world: Path) -> None:
    shots = ["TRAINER.COOP.N_CTX", "16", "DATASET.NUM_SHOTS", "2", "TRAINER.COOP.PREC", "fp32"]
    shots += ["DATALOADER.TRAIN_X.BATCH_SIZE", "4"]
    out = train_py(world, "middle", "CoOp", "vit_b16", *shots, "TRAINER.COOP.CLASS_TOKEN_POSITION", "middle")
    check_against_official(out, OFFICIAL["coop_middle"])
    out = train_py(world, "csc", "CoOp", "vit_b16", *shots, "TRAINER.COOP.CSC", "True")
    check_against_official(out, OFFICIAL["coop_csc"])


def test_coop_word_init_base_to_new_reproduces_the_official_runs(world: Path) -> None:
    opts = ["DATASET.NUM_SHOTS", "4", "TRAINER.COOP.PREC", "fp32", "DATALOADER.TRAIN_X.BATCH_SIZE", "4"]
    out = train_py(world, "b2n_base", "CoOp", "vit_b16_ctxv1", *opts, "DATASET.SUBSAMPLE_CLASSES", "base")
    check_against_official(out, OFFICIAL["coop_ctxv1_base"])
    saved = torch.load(world / "b2n_base/prompt_learner/model.pth.tar-2", weights_only=False)["state_dict"]
    assert set(saved) == {"ctx", "token_prefix", "token_suffix"}  # the official checkpoint's keys
    new = ["DATASET.SUBSAMPLE_CLASSES", "new"]
    out = train_py(world, "b2n_new", "CoOp", "vit_b16_ctxv1", *opts, *new, model_dir="b2n_base")
    check_against_official(out, OFFICIAL["coop_ctxv1_new"])


def test_cocoop_batch1_base_to_new_reproduces_the_official_runs(world: Path) -> None:
    opts = ["DATASET.NUM_SHOTS", "2", "TRAINER.COCOOP.PREC", "fp32"]
    config = "vit_b16_c4_ep10_batch1_ctxv1"
    out = train_py(world, "cc_base", "CoCoOp", config, *opts, "DATASET.SUBSAMPLE_CLASSES", "base")
    check_against_official(out, OFFICIAL["cocoop_base"])
    saved = torch.load(world / "cc_base/prompt_learner/model.pth.tar-2", weights_only=False)["state_dict"]
    linears = {f"meta_net.linear{i}.{p}" for i in (1, 2) for p in ("weight", "bias")}
    assert set(saved) == {"ctx", "token_prefix", "token_suffix", *linears}
    new = ["DATASET.SUBSAMPLE_CLASSES", "new"]
    out = train_py(world, "cc_new", "CoCoOp", config, *opts, *new, model_dir="cc_base")
    check_against_official(out, OFFICIAL["cocoop_new"])


def coop_cfg(**settings: object) -> CfgNode:
    cfg = CfgNode()
    cfg.TRAINER = CfgNode()
    cfg.TRAINER.COOP = CfgNode(CoOp.DEFAULTS)
    cfg.TRAINER.COOP.update(settings)
    return cfg


@pytest.mark.parametrize(
    "position, text",
    [("end", "X X X X {}."), ("middle", "X X {} X X."), ("front", "{} X X X X.")],
)
def test_class_token_position_places_the_name_as_the_text_would(position: str, text: str) -> None:
    torch.manual_seed(0)
    clip_model = CLIP(tiny_clip_config(transformer_layers=1, vision_layers=1)).float()
    names = ["red_apple", "dog", "sea_lion"]
    learner = CoOpPromptLearner(coop_cfg(N_CTX=4, CLASS_TOKEN_POSITION=position), names, clip_model)
    with torch.no_grad():
        learner.ctx.copy_(clip_model.token_embeddings(clip.tokenize("X X X X"))[0, 1:5])
        expected = clip_model.token_embeddings(clip.tokenize([text.format(n.replace("_", " ")) for n in names]))
        assert torch.equal(learner(), expected)
        assert torch.equal(learner.eot, clip.tokenize([text.format(n.replace("_", " ")) for n in names]).argmax(-1))


def test_word_init_and_class_specific_shapes() -> None:
    torch.manual_seed(0)
    clip_model = CLIP(tiny_clip_config(transformer_layers=1, vision_layers=1)).float()
    words = CoOpPromptLearner(coop_cfg(CTX_INIT="a_photo of"), ["cat", "dog"], clip_model)
    assert torch.equal(words.ctx.data, clip_model.token_embeddings(clip.tokenize("a photo of"))[0, 1:4])
    csc = CoOpPromptLearner(coop_cfg(N_CTX=3, CSC=True), ["cat", "dog"], clip_model)
    assert csc.ctx.shape == (2, 3, 64) and csc().shape == (2, 77, 64)
    assert not torch.equal(csc()[0, 1:4], csc()[1, 1:4])  # one context per class
    cfg = CfgNode()
    cfg.TRAINER = CfgNode()
    cfg.TRAINER.COCOOP = CfgNode(CoCoOp.DEFAULTS)
    cc = CoCoOpPromptLearner(cfg, ["cat", "dog"], clip_model)
    image_features = torch.randn(3, 64)
    prompts = cc(image_features)
    assert prompts.shape == (3, 2, 77, 64)
    bias = cc.meta_net(image_features)  # each image shifts every context vector by its bias
    assert torch.allclose(prompts[:, 0, 1:17], cc.ctx.unsqueeze(0) + bias.unsqueeze(1))


@pytest.mark.parametrize(
    "opts, message",
    [
        (["TRAINER.COOP.CLASS_TOKEN_POSITION", "left"], "CLASS_TOKEN_POSITION must be one of end, middle, front"),
        (["TRAINER.COOP.N_CTX", "0"], "TRAINER.COOP.N_CTX must be at least 1"),
    ],
)
def test_config_mistakes_are_user_errors_before_clip_is_read(world: Path, opts: list[str], message: str) -> None:
    with pytest.raises(UserError, match=message):  # train.py prints it as one "error:" line
        train_py(world, "err", "CoOp", "vit_b16", *opts, "MODEL.BACKBONE.PATH", str(world / "missing.pt"))


@pytest.mark.parametrize("position", ["end", "middle", "front"])
@pytest.mark.parametrize("csc", [False, True])
def test_prompts_computed_with_a_shared_prefix_give_the_full_features_and_gradients(position: str, csc: bool):
    """The fast text path (SOS and a common context computed once) against all 77 positions. A class-specific
    context starts with the same values in every class: only SOS may be shared, or its gradients would mix."""
    torch.manual_seed(0)
    clip_model = CLIP(tiny_clip_config(transformer_heads=4)).float().requires_grad_(False)
    names = ["red_apple", "dog", "sea_lion", "cat", "ox"]
    learner = CoOpPromptLearner(coop_cfg(N_CTX=4, CSC=csc, CLASS_TOKEN_POSITION=position), names, clip_model)
    if csc:
        with torch.no_grad():
            learner.ctx.copy_(learner.ctx[:1].expand_as(learner.ctx))
    weights = torch.randn(len(names), 64, generator=torch.Generator().manual_seed(1))
    results = []
    for cut in (True, False):
        clip_model.exact = not cut
        learner.ctx.grad = None
        features = clip_model.encode_text_embeddings(learner(), learner.eot, shared=learner.shared)
        (features * weights).sum().backward()
        results.append((features.detach(), learner.ctx.grad.clone()))
    assert learner.shared == (1 if csc else {"end": 5, "middle": 3, "front": 1}[position])
    torch.testing.assert_close(results[0][0], results[1][0], rtol=1e-5, atol=1e-5)
    scale = float(results[1][1].abs().max())  # gradients reach ~100: float rounding scales with them
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-5, atol=1e-5 * scale)
