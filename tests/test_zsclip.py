"""Zero-shot CLIP (ZeroshotCLIP, ZeroshotCLIP2): class features and test counts pinned to the official
implementation (KaiyangZhou/CoOp, CPU fp32), on the world rebuilt here (tiny CLIP of
``tiny_clip_config()`` after ``torch.manual_seed(0)``; synthetic data of ``make_dataset(name, root,
n_classes=8, n_train=4, n_val=2, n_test=3, size=32, seed=0)``)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch
from yacs.config import CfgNode

import train
from clip.model import CLIP, build_model
from datasets.synthetic import make_dataset
from tests.tiny import tiny_clip_config
from trainers.coop import build_zeroshot
from trainers.coop.zsclip import build_zeroshot_ensemble

REPO = Path(__file__).resolve().parents[1]
DTD = ["banded", "blotchy", "braided", "bubbly", "bumpy", "chequered", "cobwebbed", "cracked"]
IMAGENET = ["tench", "goldfish", "great white shark", "tiger shark", "hammerhead shark", "electric ray"]
IMAGENET += ["stingray", "rooster"]
# text_features[2, :6] of the official runs (init_learnables.pt of zs_dtd, zs2_dtd, zs_imagenet, zs2_imagenet).
# Regenerate: python -m tools.parity ZeroshotCLIP --scenario features_describabletextures --write-pins (and
# features_imagenet; ZeroshotCLIP2 likewise).
OFFICIAL_FEATURES = {
    ("ZeroshotCLIP", "DescribableTextures"): [-0.06938, -0.0712, 0.21003, 0.02117, 0.15448, 0.157],
    ("ZeroshotCLIP2", "DescribableTextures"): [-0.01932, -0.04854, 0.12726, -0.00953, 0.15537, 0.09217],
    ("ZeroshotCLIP", "ImageNet"): [0.07542, -0.14196, 0.13178, 0.00386, 0.09911, 0.04854],
    ("ZeroshotCLIP2", "ImageNet"): [0.08879, -0.06833, 0.13065, 0.01171, 0.14671, 0.08631],
}
# Correct test images (out of 3) per class of the official runs zs_imagenet and zs2_imagenet.
# Regenerate: python -m tools.parity ZeroshotCLIP --scenario imagenet --write-pins (ZeroshotCLIP2 likewise).
OFFICIAL_CORRECT = {"ZeroshotCLIP": [0, 0, 3, 0, 0, 0, 3, 3], "ZeroshotCLIP2": [0, 0, 3, 0, 0, 0, 1, 0]}
BUILD = {"ZeroshotCLIP": build_zeroshot, "ZeroshotCLIP2": build_zeroshot_ensemble}


def tiny_clip() -> CLIP:
    torch.manual_seed(0)
    return CLIP(tiny_clip_config())


def built_clip() -> CLIP:
    """The tiny CLIP as a run builds it: OpenAI's fp16 weights, cast up to fp32 on CPU."""
    return build_model(tiny_clip().state_dict()).float()


def features(trainer: str, dataset: str, clip_model: CLIP) -> torch.Tensor:
    cfg = CfgNode({"DATASET": CfgNode({"NAME": dataset})})
    model = BUILD[trainer](cfg, DTD if dataset == "DescribableTextures" else IMAGENET, clip_model)
    return model.text_features()


@pytest.mark.parametrize("trainer, dataset", list(OFFICIAL_FEATURES))
def test_class_features_are_the_official_ones(trainer: str, dataset: str) -> None:
    text = features(trainer, dataset, built_clip())
    assert text.shape == (8, 64)
    assert text[2, :6].tolist() == pytest.approx(OFFICIAL_FEATURES[trainer, dataset], abs=1e-5)
    assert torch.allclose(text.norm(dim=-1), torch.ones(8))


def test_the_ensemble_does_not_grow_from_one_build_to_the_next() -> None:
    # The official class attribute grows by each dataset's template; a second build here is unchanged.
    clip_model = built_clip()
    first = features("ZeroshotCLIP2", "DescribableTextures", clip_model)
    features("ZeroshotCLIP2", "OxfordPets", clip_model)
    assert torch.equal(features("ZeroshotCLIP2", "DescribableTextures", clip_model), first)
    cfg = CfgNode({"DATASET": CfgNode({"NAME": "ImageNet"})})
    assert len(build_zeroshot_ensemble(cfg, DTD, clip_model).prompts) == 7  # no own template for ImageNet
    cfg.DATASET.NAME = "EuroSAT"
    prompts = build_zeroshot_ensemble(cfg, ["Forest"], clip_model).prompts
    assert len(prompts) == 8 and prompts[-1] == ["a centered satellite photo of Forest."]


@pytest.mark.parametrize("trainer", ["ZeroshotCLIP", "ZeroshotCLIP2"])
def test_eval_only_on_imagenet_gives_the_official_counts(tmp_path: Path, trainer: str) -> None:
    torch.save(tiny_clip().state_dict(), tmp_path / "tiny.pt")
    make_dataset("imagenet", str(tmp_path / "data"), n_classes=8, n_train=4, n_val=2, n_test=3, size=32, seed=0)
    argv = ["--root", str(tmp_path / "data"), "--seed", "1", "--trainer", trainer, "--eval-only"]
    argv += ["--dataset-config-file", str(REPO / "configs/datasets/imagenet.yaml")]
    argv += ["--config-file", str(REPO / f"configs/trainers/{trainer}/vit_b16.yaml")]
    argv += ["--output-dir", str(tmp_path / "out"), "DATALOADER.NUM_WORKERS", "0", "INPUT.SIZE", "(32, 32)"]
    argv += ["TEST.PER_CLASS_RESULT", "True", "DATALOADER.TEST.BATCH_SIZE", "8"]
    train.main(train.build_parser().parse_args([*argv, "MODEL.BACKBONE.PATH", str(tmp_path / "tiny.pt")]))
    sys.stdout.flush()  # dassl's logger tees stdout into log.txt
    log = (tmp_path / "out" / "log.txt").read_text()
    assert [int(n) for n in re.findall(r"\* class: \d+ .*\tcorrect: (\d+)", log)] == OFFICIAL_CORRECT[trainer]
