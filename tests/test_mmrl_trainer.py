"""The MMRL / MMRLpp trainers on a tiny random CLIP and a synthetic dataset: training touches only
the learnable tensors, checkpoints use the official keys both ways, bad settings fail clearly, and
a seeded run reproduces numbers of the official implementation."""

from __future__ import annotations

import os.path as osp

import pytest
import torch
from tiny import seeded_state_dict, tiny_clip_config, without_data

import datasets  # noqa: F401  (registers the datasets)
import trainers  # noqa: F401  (registers the trainers)
from clip.model import CLIP
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from datasets.synthetic import make_dataset
from trainers.base import ConfigError
from trainers.config import extend_cfg
from trainers.mmrl import LEARNER_NAME, MMRL, MMRLpp

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Unequal widths (d_v 128, d_t 64, d_out 32) so that a swapped dimension cannot go unnoticed.
TINY = tiny_clip_config(embed_dim=32, vision_width=128)


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory) -> str:
    torch.manual_seed(0)
    path = str(tmp_path_factory.mktemp("clip") / "tiny.pt")
    torch.save(CLIP(TINY).state_dict(), path)
    return path


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("data"))
    make_dataset("OxfordPets", root, n_classes=4, n_train=4, n_val=1, n_test=2)
    return root


def make_cfg(tiny_path: str, root: str, trainer: str = "MMRL", opts: list | None = None):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join(REPO, "configs", "trainers", trainer, "vit_b16.yaml"))
    cfg.merge_from_list(
        [
            "TRAINER.NAME", trainer,
            "DATASET.NAME", "OxfordPets",
            "DATASET.ROOT", root,
            "DATALOADER.NUM_WORKERS", 0,
            "DATALOADER.TRAIN_X.BATCH_SIZE", 4,
            "INPUT.SIZE", (32, 32),
            "MODEL.BACKBONE.PATH", tiny_path,
            f"TRAINER.{trainer}.REP_DIM", 32,
            "OUTPUT_DIR", osp.join(root, "out"),
        ]
        + (opts or [])
    )  # fmt: skip
    return cfg


def build(tiny_path, root, trainer="MMRL", opts=None, seed=1):
    torch.manual_seed(seed)
    return build_trainer(make_cfg(tiny_path, root, trainer, opts))


def official_keys(trainer: str, n_layers: int = 7) -> set[str]:
    """The trainable keys of the official checkpoints, written out by hand."""
    keys = {"representation_learner.compound_rep_tokens"}
    for m in "vt":
        if trainer == "MMRL":
            layer = f"representation_learner.compound_rep_tokens_r2{m}proj.{{}}.{{}}"
            keys |= {layer.format(i, p) for i in range(n_layers) for p in ("weight", "bias")}
        else:
            keys.add(f"representation_learner.srra_r2{m}proj.weight")
            layer = f"representation_learner.srra_r2{m}proj.srra.{{}}.{{}}"
            keys |= {layer.format(i, p) for i in range(n_layers) for p in ("A", "B", "bias")}
    image = {"image_encoder.proj_rep"} if trainer == "MMRL" else {"image_encoder.A", "image_encoder.B"}
    return keys | image


def test_learnable_count_matches_formula(tiny_path, data_root, capsys):
    d_r, d_v, d_t, d_out, n = 32, 128, 64, 32, 7  # REP_DIM, the tiny CLIP's widths, REP_LAYERS 6..12
    mmrl = build(tiny_path, data_root, "MMRL")
    expected = 5 * d_r + n * (d_r * d_v + d_v) + n * (d_r * d_t + d_t) + d_v * d_out
    assert sum(p.numel() for p in mmrl.model.learner.parameters()) == expected
    assert f"Learnable parameters: {expected:,}" in capsys.readouterr().out
    pp = build(tiny_path, data_root, "MMRLpp")
    # shared W; per layer a bias, A (d x 4), B (4 x d_r); the LoRA of P_v^r with PROJ_LORA_DIM 64
    visual = d_v * d_r + n * (d_v + d_v * 4 + 4 * d_r)
    text = d_t * d_r + n * (d_t + d_t * 4 + 4 * d_r)
    expected = 5 * d_r + visual + text + d_v * 64 + 64 * d_out
    assert sum(p.numel() for p in pp.model.learner.parameters()) == expected


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_reg_loss_picks_the_distance_of_both_regularisers(tiny_path, data_root, trainer):
    """TRAINER.<T>.REG_LOSS (the paper's Table 9): cosine by default; l1 / mse change only the two regularisers,
    each the mean over the elements of |f - f0| or (f - f0)^2, computed here by hand."""
    assert MMRL.DEFAULTS["REG_LOSS"] == MMRLpp.DEFAULTS["REG_LOSS"] == "cosine"
    image, label = torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 1])
    losses, lam = {}, 2.0
    for kind in ("default", "cosine", "l1", "mse"):
        opts = [f"TRAINER.{trainer}.REG_WEIGHT", lam] + ([f"TRAINER.{trainer}.REG_LOSS", kind] * (kind != "default"))
        t = build(tiny_path, data_root, trainer, opts)
        assert t.settings.REG_LOSS == ("cosine" if kind == "default" else kind)
        with torch.no_grad():
            losses[kind] = t.compute_loss(image, label)[0].float()
            out, w0 = t.model(image, zero_shot=True), t.text_features_zs
    f, f0, w = out.image_features.float(), out.image_features_zs.float(), out.text_features.float()
    w0 = w0.float()
    cos = (1 - (f * f0).sum(1) / (f.norm(dim=1) * f0.norm(dim=1))).mean() + (
        1 - (w * w0).sum(1) / (w.norm(dim=1) * w0.norm(dim=1))).mean()  # fmt: skip
    l1 = (f - f0).abs().mean() + (w - w0).abs().mean()
    mse = ((f - f0) ** 2).mean() + ((w - w0) ** 2).mean()
    assert torch.equal(losses["default"], losses["cosine"])
    ce = losses["cosine"] - lam * cos  # the cross-entropy terms, the same in every run
    torch.testing.assert_close(losses["l1"], ce + lam * l1, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(losses["mse"], ce + lam * mse, rtol=1e-5, atol=1e-6)
    assert abs(float(l1 - cos)) > 1e-3 and abs(float(mse - cos)) > 1e-3  # far above the tolerance: told apart


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_a_step_trains_the_learnable_tensors_only(tiny_path, data_root, trainer):
    t = build(tiny_path, data_root, trainer)
    learner, clip_model = t.model.learner, t.model.clip
    assert {id(p) for p in t.model.parameters()} == {id(p) for p in learner.parameters()} | {
        id(p) for p in clip_model.parameters()
    }
    assert [id(p) for g in t.optim.param_groups for p in g["params"]] == [id(p) for p in learner.parameters()]
    learner_before = {k: v.clone() for k, v in learner.state_dict().items()}
    clip_before = {k: v.clone() for k, v in clip_model.state_dict().items()}

    t.set_model_mode("train")
    t.num_batches = 10
    batch = next(iter(t.train_loader_x))
    for t.batch_idx in range(2):  # two steps: MMRL++'s A factors get a gradient once B is not 0
        summary = t.forward_backward(batch)
    assert set(summary) == {"loss", "acc"} and summary["loss"] > 0

    for name, p in learner.named_parameters():
        assert p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0, name
        assert not torch.equal(p.detach(), learner_before[name]), name
    for name, p in clip_model.named_parameters():
        assert not p.requires_grad and p.grad is None, name
    assert all(torch.equal(v, clip_before[k]) for k, v in clip_model.state_dict().items())


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_checkpoint_holds_only_trainable_tensors_under_official_keys(tiny_path, data_root, tmp_path, trainer):
    t = build(tiny_path, data_root, trainer)
    t.save_model(0, str(tmp_path))
    path = tmp_path / LEARNER_NAME / "model.pth.tar-1"
    state = torch.load(path, weights_only=True)["state_dict"]
    assert set(state) == official_keys(trainer)
    assert osp.getsize(path) < 2_000_000  # the tiny CLIP itself would be ~60 MB

    other = build(tiny_path, data_root, trainer, seed=2)
    images = next(iter(t.test_loader))["img"]
    with torch.no_grad():
        assert not torch.equal(other.model(images).logits_rep, t.model(images).logits_rep)
        other.load_model(str(tmp_path))  # no best model: the last epoch
        torch.testing.assert_close(other.model(images).logits_rep, t.model(images).logits_rep, rtol=0, atol=0)


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_official_checkpoint_layout_loads(tiny_path, data_root, tmp_path, trainer):
    source = build(tiny_path, data_root, trainer, seed=3)
    with torch.no_grad():
        for p in source.model.learner.parameters():
            p.add_(0.01 * torch.randn_like(p))  # MMRL++'s B would otherwise be 0
    tensors = source.model.learner.state_dict()
    # The official state dict: the whole CustomCLIP, frozen CLIP included, from DataParallel.
    official = {f"module.{k}": v.clone() for k, v in tensors.items()}
    official["module.prompt_embeddings"] = torch.zeros(4, 77, 64)
    official["module.image_encoder.conv1.weight"] = torch.zeros(64, 3, 8, 8)
    official["module.image_encoder.proj"] = torch.zeros(64, 64)
    official["module.text_encoder.transformer.resblocks.0.attn.in_proj_weight"] = torch.zeros(192, 64)
    folder = tmp_path / LEARNER_NAME
    folder.mkdir()
    checkpoint = {"state_dict": official, "epoch": 5, "optimizer": None, "scheduler": None, "val_result": None}
    torch.save(checkpoint, folder / "model.pth.tar-5")

    loaded = build(tiny_path, data_root, trainer, seed=4)
    loaded.load_model(str(tmp_path), epoch=5)
    direct = build(tiny_path, data_root, trainer, seed=5)
    direct.model.learner.load_state_dict(tensors)
    images = next(iter(loaded.test_loader))["img"]
    loaded.set_model_mode("eval")
    direct.set_model_mode("eval")
    with torch.no_grad():
        a, b = loaded.model_inference(images), direct.model_inference(images)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
@pytest.mark.parametrize("chunk", [0, 1])
def test_fast_mode_changes_only_rounding(tiny_path, data_root, trainer, chunk):
    """The default fast path (prompts cut after the longest EOT, a shared text prefix computed once, the
    last image block at the read positions only, optionally the text in checkpointed chunks) equals the
    official op order (EXACT True) up to float rounding: logits, loss and the updated tensors."""
    exact = build(tiny_path, data_root, trainer, opts=["EXACT", True], seed=3)
    fast = build(tiny_path, data_root, trainer, opts=[f"TRAINER.{trainer}.TEXT_CHUNK", chunk], seed=3)
    longest_eot = int(exact.model.tokenized_prompts.argmax(dim=-1).max())
    assert exact.model.tokenized_prompts.shape[1] == 77
    assert fast.model.tokenized_prompts.shape[1] == longest_eot + 1 < 77
    torch.testing.assert_close(fast.text_features_zs, exact.text_features_zs, rtol=0, atol=1e-5)
    images = next(iter(exact.test_loader))["img"]
    exact.set_model_mode("eval")
    fast.set_model_mode("eval")
    with torch.no_grad():
        torch.testing.assert_close(fast.model_inference(images), exact.model_inference(images), rtol=0, atol=1e-4)
    batch = next(iter(exact.train_loader_x))
    exact.set_model_mode("train")
    fast.set_model_mode("train")
    exact.num_batches = fast.num_batches = 100
    exact.batch_idx = fast.batch_idx = 0
    loss_exact, loss_fast = exact.forward_backward(batch)["loss"], fast.forward_backward(batch)["loss"]
    assert abs(loss_exact - loss_fast) < 1e-5
    for a, b in zip(exact.model.learner.parameters(), fast.model.learner.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def save_checkpoint_of(tiny_path, data_root, folder, opts):
    build(tiny_path, data_root, "MMRL", opts).save_model(0, str(folder))


def test_checkpoint_with_other_rep_dim_names_key_and_values(tiny_path, data_root, tmp_path):
    save_checkpoint_of(tiny_path, data_root, tmp_path, ["TRAINER.MMRL.REP_DIM", 48])
    t = build(tiny_path, data_root)  # REP_DIM 32
    with pytest.raises(ValueError) as err:
        t.load_model(str(tmp_path))
    message = str(err.value)
    assert "representation_learner.compound_rep_tokens" in message
    assert "REP_DIM=48" in message and "TRAINER.MMRL.REP_DIM=32" in message


def test_checkpoint_with_other_rep_layers_is_rejected(tiny_path, data_root, tmp_path):
    save_checkpoint_of(tiny_path, data_root, tmp_path, ["TRAINER.MMRL.REP_LAYERS", [9, 10, 11, 12]])
    t = build(tiny_path, data_root)
    with pytest.raises(ValueError, match=r"maps for 4 layers .*REP_LAYERS=\[6, 7, 8, 9, 10, 11, 12\] has 7"):
        t.load_model(str(tmp_path))


def test_checkpoint_of_the_other_method_is_rejected(tiny_path, data_root, tmp_path):
    save_checkpoint_of(tiny_path, data_root, tmp_path, [])
    t = build(tiny_path, data_root, "MMRLpp")
    with pytest.raises(ConfigError, match="srra_r2vproj.weight"):
        t.load_model(str(tmp_path))


@pytest.mark.parametrize(
    "opts, message",
    [
        (["TRAINER.MMRL.REP_LAYERS", [7, 6]], "strictly increasing"),
        (["TRAINER.MMRL.REP_LAYERS", [0, 6]], "integers from 1"),
        (["TRAINER.MMRL.REP_LAYERS", []], "is empty"),
        (["TRAINER.MMRL.PREC", "bf16"], "PREC must be"),
        (["TRAINER.MMRL.REG_LOSS", "l2"], "TRAINER.MMRL.REG_LOSS is 'l2': use one of cosine, l1, mse"),
        (["TASK", "DG"], "TASK must be"),
    ],
)
def test_bad_settings_fail_before_the_data_is_read(tiny_path, tmp_path, opts, message):
    cfg = make_cfg(tiny_path, str(tmp_path / "no-such-root"), opts=opts)  # reading data would fail differently
    with pytest.raises(ConfigError, match=message):
        build_trainer(cfg)


@pytest.mark.parametrize(
    "opts, message",
    [
        (["TRAINER.MMRL.REP_LAYERS", [6, 13]], r"in 1\.\.12"),
        (["INPUT.SIZE", (224, 224)], r"INPUT.SIZE=\(224, 224\) but the CLIP backbone takes 32x32"),
        (["MODEL.BACKBONE.PATH", "/no/such/clip.pt"], r"MODEL.BACKBONE.PATH /no/such/clip.pt.*does not exist"),
    ],
)
def test_settings_that_need_the_weights_fail_before_the_model_is_built(tiny_path, data_root, opts, message):
    """The dataset is checked first (so a wrong --root never waits for a download), then the weights."""
    cfg = make_cfg(tiny_path, data_root, opts=opts)
    with pytest.raises(ConfigError, match=message):
        build_trainer(cfg)


# Regenerate: python -m tools.parity MMRL --scenario seeded --write-pins (MMRLpp likewise).
# Produced by the official implementation (github.com/yunncheng/MMRL @ 27d8821, trainers/mmrl.py
# and mmrlpp.py, run on CPU in fp32) on exactly the setup of the test below: its build order
# (two CLIP constructions, then the learner), three AdamW steps of its forward_backward, then its
# eval-mode forward. Our run matched it bit for bit; the tolerance only absorbs other CPUs' rounding.
OFFICIAL = {
    "MMRL": {
        "losses": [5.529159069061279, 6.547415256500244, 4.792952060699463],
        "fusion0": [-9.14148, -7.89838, -8.88265, -9.83016, -13.83815],
        "logits5": [-19.18581, -17.72807, -17.77635, -19.15086, -17.09341],
    },
    "MMRLpp": {
        "losses": [7.084930419921875, 6.699108600616455, 6.555107116699219],
        "fusion0": [-5.55239, -10.67166, -8.57408, -11.09421, -15.47454],
        "logits5": [-16.57516, -19.10988, -17.12658, -20.84067, -21.60673],
    },
}


@pytest.mark.parametrize("trainer", ["MMRL", "MMRLpp"])
def test_seeded_run_reproduces_the_official_implementation(tmp_path, trainer):
    torch.save(seeded_state_dict(TINY), tmp_path / "tiny.pt")
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_list(["TRAINER.NAME", trainer, "DATASET.NAME", "OxfordPets", "INPUT.SIZE", (32, 32)])
    cfg.merge_from_list(["MODEL.BACKBONE.PATH", str(tmp_path / "tiny.pt"), "OPTIM.NAME", "adamw", "OPTIM.LR", 1e-3])
    settings = {"N_REP_TOKENS": 5, "REP_DIM": 48, "REP_LAYERS": [6, 7, 8, 9, 10, 11, 12], "ALPHA": 0.7}
    settings.update({"PREC": "fp32", "REG_WEIGHT": 2.0, "BETA": 0.6, "PROJ_LORA_DIM": 8, "RES_LORA_DIM": 4})
    cfg.TRAINER[trainer].update({k: v for k, v in settings.items() if k in cfg.TRAINER[trainer]})

    # The reference run fed fixed tensors: the trainer's data hook gives only the class names.
    classnames = ["red_apple", "dog", "cat", "house", "tree"]

    cfg.freeze()
    torch.manual_seed(7)
    t = without_data(MMRLpp if trainer == "MMRLpp" else MMRL, classnames)(cfg)

    g = torch.Generator().manual_seed(0)
    images = torch.randn(3, 4, 3, 32, 32, generator=g)
    labels = torch.tensor([[0, 1, 2, 3], [4, 0, 1, 2], [3, 4, 0, 1]])
    t.set_model_mode("train")
    t.num_batches = 100
    losses = []
    for t.batch_idx in range(3):
        losses.append(t.forward_backward({"img": images[t.batch_idx], "label": labels[t.batch_idx]})["loss"])
    t.set_model_mode("eval")
    with torch.no_grad():
        out = t.model(torch.randn(6, 3, 32, 32, generator=g))
    expected = OFFICIAL[trainer]
    assert losses == pytest.approx(expected["losses"], rel=1e-5)
    assert out.logits_fusion[0].tolist() == pytest.approx(expected["fusion0"], abs=1e-4)
    assert out.logits[5].tolist() == pytest.approx(expected["logits5"], abs=1e-4)
