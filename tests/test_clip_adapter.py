"""CLIP-Adapter (trainers/clip_adapter): seeded runs pinned to the official code on a ResNet and a ViT, its
checkpoints in the official layout, the adapter sized by the backbone, the class features encoded once."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from recorded_run import recorded_train
from tiny import tiny_clip_config, tiny_resnet_state_dict

from clip.model import CLIP
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from datasets.synthetic import make_dataset
from trainers.base import ConfigError
from trainers.config import extend_cfg

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs" / "trainers" / "CLIP_Adapter"


@pytest.fixture(scope="module")
def world(tiny_clip, tmp_path_factory) -> Path:
    """Tiny CLIPs with 1024-d features (the size the release writes in its code), ResNet and ViT, the tests'
    64-d tiny ViT, and an 8-class synthetic DTD."""
    root = tmp_path_factory.mktemp("clip_adapter_world")
    torch.save(tiny_resnet_state_dict(0, embed_dim=1024), root / "rn1024.pt")
    torch.manual_seed(0)
    torch.save(CLIP(tiny_clip_config(embed_dim=1024)).state_dict(), root / "vit1024.pt")
    shutil.copyfile(tiny_clip, root / "vit64.pt")  # the suite's tiny CLIP (tests/conftest.py)
    make_dataset("dtd", str(root / "data"), n_classes=8, n_train=4, n_val=2, n_test=3, size=32, seed=0)
    return root


COMMON = ["DATALOADER.NUM_WORKERS", "0", "INPUT.SIZE", "(32, 32)", "TRAIN.PRINT_FREQ", "1"]
COMMON += ["TEST.PER_CLASS_RESULT", "True", "DATALOADER.TEST.BATCH_SIZE", "8"]
# A large learning rate: on a random CLIP the adapter then moves the predictions within a few epochs.
TRAIN = ["DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "3", "OPTIM.LR", "5.0"]
B2N = ["DATASET.NUM_SHOTS", "4", "DATALOADER.TRAIN_X.BATCH_SIZE", "4", "OPTIM.MAX_EPOCH", "2", "OPTIM.LR", "5.0"]
# name: (CLIP file, config file, base run for --model-dir (--load-epoch 2 --eval-only), options).
RUNS = {
    "rn_train": ("rn1024.pt", "rn50_ep50", "", TRAIN),
    "rn_base": ("rn1024.pt", "rn50", "", [*B2N, "DATASET.SUBSAMPLE_CLASSES", "base"]),
    "rn_new": ("rn1024.pt", "rn50", "rn_base", [*B2N, "DATASET.SUBSAMPLE_CLASSES", "new"]),
    "vit_train": ("vit1024.pt", "vit_b16_ep50", "", TRAIN),
    "vit64_patched": ("vit64.pt", "vit_b16", "", TRAIN),
}

# From the official runs: gaopengcuhk/CLIP-Adapter @ 08d07f8 (its clip_adapter.py put in KaiyangZhou/CoOp
# @ ff61507's trainers/ and imported in train.py, as its README says) on upstream KaiyangZhou/Dassl.pytorch
# @ c61a1b5, CPU, fp32, one thread (torch 2.14.1, x86-64), on the world above, with the command lines of RUNS:
#   python train.py --root <world>/data --seed 1 --trainer CLIP_Adapter --dataset-config-file
#   configs/datasets/dtd.yaml --config-file configs/trainers/CLIP_Adapter/<file>.yaml --output-dir <run>
#   [--model-dir <base run> --load-epoch 2 --eval-only] <options> <COMMON>
# where configs/trainers/CLIP_Adapter/ holds CoOp's files (what CoOp's scripts read for that trainer). Run-time
# patches only: clip._download returning the tiny file, .cuda() a no-op and .to("cuda") to the CPU, Dassl's
# schedulers' `verbose` dropped (torch 2.14), torch.load(weights_only=False), stand-ins for tabulate / wilds /
# tensorboard; for vit64_patched also the release's hard-coded Adapter(1024, 4) given 64 (unpatched it stops:
# "mat1 and mat2 shapes cannot be multiplied (4x64 and 1024x256)"). Ours runs the same lines with
# MODEL.BACKBONE.PATH <tiny file> and EXACT True. Per step: the loss at full precision, the accuracy and the lr
# after the step (compared as printed, 4 digits); per class: correct of 3; per test image (in test-loader order):
# the predicted class. Side by side, every test logit was equal bit for bit too, and so were the runs evaluating
# the official checkpoints.
# Regenerate: python -m tools.parity CLIP_Adapter --scenario rn_train --scenario rn_base_to_new --scenario vit_train
# --scenario vit64_adapter_width --write-pins (vit64_patched: its adapter_width shim sizes the release's 1024 by the
# world's features).
WARMUP = [1e-05] * 7 + [5.0] * 8 + [3.75] * 8 + [1.2500000000000004]
OFFICIAL = {
    "rn_train": {
        "loss": [2.104123115539551, 2.0268287658691406, 2.0803842544555664, 2.0467257499694824, 2.137929916381836,
                 2.114612340927124, 2.1224467754364014, 2.128261089324951, 2.147068500518799, 1.9289641380310059,
                 2.666560173034668, 1.6740448474884033, 1.318215012550354, 1.4437021017074585, 1.5986539125442505,
                 1.843230962753296, 1.3725398778915405, 1.4466137886047363, 1.0907796621322632, 0.8526140451431274,
                 1.0337468385696411, 1.3439348936080933, 1.2629777193069458, 1.6674408912658691],
        "acc": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 50.0, 25.0, 25.0, 25.0, 25.0, 50.0, 25.0, 0.0, 25.0,
                25.0, 75.0, 50.0, 50.0, 25.0, 0.0],
        "lr": WARMUP, "correct": [3, 0, 0, 3, 0, 3, 3, 1],
        "predicted": [0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 3, 3, 5, 5, 5, 5, 5, 5, 6, 6, 6, 6, 7, 6],
    },
    "rn_base": {
        "loss": [1.3951690196990967, 1.4051378965377808, 1.438085675239563, 1.3371164798736572, 1.3396457433700562,
                 1.4860893487930298, 1.1647298336029053, 2.0718040466308594],
        "acc": [25.0, 25.0, 0.0, 50.0, 75.0, 0.0, 25.0, 25.0], "lr": [1e-05] * 3 + [5.0] * 4 + [2.5],
        "correct": [0, 3, 0, 3], "predicted": [1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3],
    },
    "rn_new": {
        "loss": [], "acc": [], "lr": [], "correct": [0, 3, 0, 0], "predicted": [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    },
    "vit_train": {
        "loss": [2.0142173767089844, 2.137763023376465, 1.9290539026260376, 2.025071620941162, 1.9780880212783813,
                 2.045694351196289, 2.1511857509613037, 2.0251922607421875, 2.0641372203826904, 1.992324948310852,
                 1.0872091054916382, 2.987977981567383, 2.2801833152770996, 2.6356372833251953, 2.0426793098449707,
                 1.6629321575164795, 1.5283393859863281, 1.3644163608551025, 1.255397915840149, 1.3160215616226196,
                 1.3775089979171753, 1.6383863687515259, 1.5647311210632324, 1.382549524307251],
        "acc": [25.0, 0.0, 50.0, 50.0, 50.0, 0.0, 0.0, 25.0, 0.0, 50.0, 50.0, 0.0, 50.0, 0.0, 25.0, 25.0, 50.0, 25.0,
                75.0, 25.0, 50.0, 50.0, 25.0, 50.0],
        "lr": WARMUP, "correct": [3, 0, 0, 3, 0, 3, 3, 0],
        "predicted": [0, 0, 0, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 5, 5, 5, 6, 6, 6, 6, 6, 6],
    },
    "vit64_patched": {
        "loss": [2.3607304096221924, 2.0407135486602783, 1.8957324028015137, 2.362968921661377, 2.3109350204467773,
                 2.3055436611175537, 1.8526250123977661, 1.914554238319397, 2.3758862018585205, 2.167079448699951,
                 1.9793682098388672, 2.5714666843414307, 1.7693753242492676, 2.203853130340576, 1.4895447492599487,
                 1.5867115259170532, 1.2620224952697754, 1.3477555513381958, 1.5412747859954834, 1.3158817291259766,
                 1.310676097869873, 1.4763586521148682, 1.2916233539581299, 1.2133510112762451],
        "acc": [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 25.0, 25.0, 0.0, 25.0, 0.0, 50.0, 25.0, 50.0, 50.0,
                25.0, 75.0, 75.0, 25.0, 75.0, 75.0],
        "lr": WARMUP, "correct": [3, 3, 0, 3, 3, 0, 3, 1],
        "predicted": [0, 0, 0, 1, 1, 1, 3, 3, 3, 3, 3, 3, 4, 4, 4, 6, 6, 6, 6, 6, 6, 6, 7, 6],
    },
}  # fmt: skip
def run(world: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """train.py in-process on the world, as the official run; every step at full precision, per-class counts."""
    weights, config, model_dir, opts = RUNS[name]
    argv = ["--root", str(world / "data"), "--seed", "1", "--trainer", "CLIP_Adapter"]
    argv += ["--output-dir", str(world / name)]
    argv += ["--dataset-config-file", str(REPO / "configs/datasets/dtd.yaml")]
    argv += ["--config-file", str(CONFIGS / f"{config}.yaml")]
    if model_dir:
        argv += ["--model-dir", str(world / model_dir), "--load-epoch", "2", "--eval-only"]
    opts = [*opts, *COMMON, "MODEL.BACKBONE.PATH", str(world / weights), "EXACT", "True"]
    return recorded_train([*argv, *opts], world / name, monkeypatch)


@pytest.mark.parametrize("names", [("rn_train",), ("rn_base", "rn_new"), ("vit_train",), ("vit64_patched",)])
def test_seeded_runs_equal_the_official_code_bit_for_bit(world, names, monkeypatch):
    for name in names:  # base-to-new: the new classes are scored with the base run's checkpoint
        got, expected = run(world, name, monkeypatch), OFFICIAL[name]
        assert {**got, "lr": None} == {**expected, "lr": None}, name
        assert got["lr"] == pytest.approx(expected["lr"], rel=1e-4), name  # the lrs the official log prints
    if names[0] == "rn_base":
        saved = torch.load(world / "rn_base" / "clip_adapter" / "model.pth.tar-2", weights_only=False)
        shapes = {k: tuple(v.shape) for k, v in saved["state_dict"].items()}
        assert shapes == {"fc.0.weight": (256, 1024), "fc.2.weight": (1024, 256)}  # the official checkpoint's


def build(world: Path, tmp_path: Path, weights: str, *opts: str):
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(str(REPO / "configs/datasets/dtd.yaml"))
    cfg.merge_from_file(str(CONFIGS / "vit_b16.yaml"))
    cfg.merge_from_list(["TRAINER.NAME", "CLIP_Adapter", "DATASET.ROOT", str(world / "data"), "DATASET.NUM_SHOTS",
                         "1", "OUTPUT_DIR", str(tmp_path), "MODEL.BACKBONE.PATH", str(world / weights), *COMMON,
                         *opts])  # fmt: skip
    cfg.freeze()
    return build_trainer(cfg)


@pytest.mark.parametrize("weights, width", [("rn1024.pt", 1024), ("vit64.pt", 64)])
def test_the_adapter_is_sized_by_the_backbone_s_features(world, tmp_path, weights, width):
    """Two bias-free maps d -> d/4 -> d (the release writes d = 1024): 2 d^2 / 4 learnable values."""
    t = build(world, tmp_path, weights)
    shapes = [tuple(p.shape) for p in t.model.learner.parameters()]
    assert shapes == [(width // 4, width), (width, width // 4)]
    assert sum(p.numel() for p in t.model.learner.parameters()) == width * width // 2


def test_ratio_zero_is_zero_shot_clip(world, tmp_path):
    """f* = RATIO A(f) + (1 - RATIO) f: with RATIO 0 the logits are zero-shot CLIP's with the same template."""
    images = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    adapter = build(world, tmp_path / "a", "vit64.pt", "TRAINER.CLIP_ADAPTER.RATIO", "0.0")
    cfg = adapter.cfg.clone()
    cfg.defrost()
    cfg.TRAINER.NAME, cfg.OUTPUT_DIR = "ZeroshotCLIP", str(tmp_path / "z")
    zero_shot = build_trainer(cfg)
    with torch.no_grad():
        torch.testing.assert_close(adapter.model(images), zero_shot.model(images), rtol=1e-5, atol=1e-5)


def test_class_features_are_encoded_once(world, tmp_path):
    """The release encodes the class prompts in every forward pass; they never change, so here once."""
    t = build(world, tmp_path, "rn1024.pt")
    passes = []
    t.model.clip.transformer.register_forward_pre_hook(lambda module, args: passes.append(1))
    batch = next(iter(t.train_loader_x))
    t.set_model_mode("train")
    t.batch_idx, t.num_batches = 0, 2  # in an epoch of 2 batches, the first
    for _ in range(3):
        t.forward_backward(batch)
    t.set_model_mode("eval")
    with torch.no_grad():
        t.model_inference(batch["img"])
    assert len(passes) == 1


@pytest.mark.parametrize("opts, message", [
    (["TRAINER.CLIP_ADAPTER.RATIO", "1.5"], "TRAINER.CLIP_ADAPTER.RATIO must be within 0 and 1, got 1.5"),
    (["TRAINER.CLIP_ADAPTER.REDUCTION", "128"], "TRAINER.CLIP_ADAPTER.REDUCTION 128 leaves no bottleneck for the "
                                                "backbone's 64 features: set it to at most 64"),
])  # fmt: skip
def test_settings_that_cannot_be_built_are_refused(world, tmp_path, opts, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        build(world, tmp_path, "vit64.pt", *opts)


def test_the_adapter_trains_in_fp32_beside_a_half_precision_clip(world, tmp_path):
    """PREC fp16 (CUDA) runs CLIP in half precision; the adapter, its gradients and the logits stay fp32."""
    model = build(world, tmp_path, "vit64.pt").model
    image_features, text_features = torch.randn(2, 64).half(), torch.randn(8, 64).half()
    logits = model.logits(image_features, text_features)
    logits.sum().backward()
    assert logits.dtype == torch.float32
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in model.learner.parameters())
