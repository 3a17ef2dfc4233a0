"""Resuming MMRL training: from an official checkpoint (upstream Dassl's layout, see SPEC §6) and from
one of ours, a run cut after epoch 1 ends with the same tensors as an uninterrupted run."""

from __future__ import annotations

import os.path as osp
import pickle
import shutil

import pytest
import torch
from tiny import tiny_clip_config

import datasets  # noqa: F401  (registers the datasets)
import trainers  # noqa: F401  (registers the trainers)
from clip.model import CLIP
from dassl.config import get_cfg_default
from dassl.engine import build_trainer
from datasets.synthetic import make_dataset
from trainers.config import extend_cfg
from trainers.mmrl import LEARNER_NAME

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = tiny_clip_config()
N_CLASSES = 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> tuple[str, str]:
    """(tiny CLIP file, data root): 4 classes x 2 training images, i.e. 2 batches per epoch."""
    root = tmp_path_factory.mktemp("resume")
    torch.manual_seed(0)
    torch.save(CLIP(TINY).state_dict(), root / "tiny.pt")
    make_dataset("OxfordPets", str(root), n_classes=N_CLASSES, n_train=2, n_val=1, n_test=1)
    return str(root / "tiny.pt"), str(root)


def build(setup: tuple[str, str], output_dir: str, resume: str = ""):
    """3 epochs (1 of constant warmup, then cosine); fixed data order and no random augmentation,
    so a resumed run sees the batches the uninterrupted one saw."""
    tiny_path, root = setup
    cfg = get_cfg_default()
    extend_cfg(cfg)
    cfg.merge_from_file(osp.join(REPO, "configs", "trainers", "MMRL", "vit_b16.yaml"))
    cfg.merge_from_list(
        [
            "TRAINER.NAME", "MMRL",
            "TRAINER.MMRL.REP_DIM", 32,
            "DATASET.NAME", "OxfordPets",
            "DATASET.ROOT", root,
            "DATALOADER.NUM_WORKERS", 0,
            "DATALOADER.TRAIN_X.SAMPLER", "SequentialSampler",
            "INPUT.SIZE", (32, 32),
            "INPUT.TRANSFORMS", ["normalize"],
            "MODEL.BACKBONE.PATH", tiny_path,
            "OPTIM.MAX_EPOCH", 3,
            "TRAIN.CHECKPOINT_FREQ", 1,
            "TEST.NO_TEST", True,
            "OUTPUT_DIR", output_dir,
            "RESUME", resume,
        ]
    )  # fmt: skip
    torch.manual_seed(1)
    return build_trainer(cfg)


@pytest.fixture(scope="module")
def uninterrupted(setup):
    trainer = build(setup, osp.join(setup[1], "full"))
    trainer.train()
    return trainer


def official_layout(trainer, ours: dict) -> dict:
    """Our checkpoint as the official code writes it: the state dict of the whole model (frozen CLIP
    without token_embedding, the trainables, a ``prompt_embeddings`` buffer first) in the official
    order; ONE optimizer group over all its parameters with state for the trainables only; the
    warmup scheduler's state holding its successor as a pickled CosineAnnealingLR."""
    clip_model, learner = trainer.model.clip, trainer.model.learner
    trainables = ours["state_dict"]
    visual = {f"image_encoder.{k}": v for k, v in clip_model.visual.state_dict().items()}
    text = {
        f"text_encoder.{k}": v
        for k, v in clip_model.state_dict().items()
        if not k.startswith(("visual.", "token_embedding.", "logit_scale"))
    }
    head = ("class_embedding", "positional_embedding", "proj")
    state_dict = {"prompt_embeddings": torch.zeros(N_CLASSES, 77, TINY.transformer_width)}
    state_dict |= {k: v for k, v in trainables.items() if k.startswith("representation_learner.")}
    state_dict |= {f"image_encoder.{k}": visual[f"image_encoder.{k}"] for k in head}
    state_dict |= {k: v for k, v in trainables.items() if k.startswith("image_encoder.")}
    state_dict |= visual | text

    params = list(state_dict)[1:]  # every key but the buffer
    ours_params = [name for name, _ in learner.named_parameters()]
    (group,) = ours["optimizer"]["param_groups"]
    optimizer = {
        "state": {params.index(ours_params[i]): s for i, s in ours["optimizer"]["state"].items()},
        "param_groups": [{**group, "params": list(range(len(params)))}],
    }

    successor = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.AdamW(learner.parameters()), T_max=3)
    successor.load_state_dict(ours["scheduler"]["successor"])
    scheduler = {**ours["scheduler"], "successor": successor}
    assert len(params) > 10 * len(ours_params) and len(optimizer["state"]) == len(ours_params)
    return {**ours, "state_dict": state_dict, "optimizer": optimizer, "scheduler": scheduler}


@pytest.mark.parametrize("layout", ["ours", "official"])
def test_resume_after_epoch_1_ends_like_the_uninterrupted_run(setup, uninterrupted, tmp_path, layout, capsys):
    source = osp.join(setup[1], "full", LEARNER_NAME)
    folder = tmp_path / "cut" / LEARNER_NAME
    folder.mkdir(parents=True)
    shutil.copy(osp.join(source, "model.pth.tar-1"), folder)
    (folder / "checkpoint").write_text("model.pth.tar-1\n")
    if layout == "official":
        ours = torch.load(folder / "model.pth.tar-1", weights_only=True)
        torch.save(official_layout(uninterrupted, ours), folder / "model.pth.tar-1")
        with pytest.raises(pickle.UnpicklingError):  # upstream's pickled scheduler, as in real files
            torch.load(folder / "model.pth.tar-1", weights_only=True)

    resumed = build(setup, str(tmp_path / "out"), resume=str(tmp_path / "cut"))
    resumed.train()
    out = capsys.readouterr().out
    assert "Previous epoch: 1" in out and "epoch [1/3]" not in out and "epoch [3/3] batch [2/2]" in out
    assert ("An official checkpoint" in out) == (layout == "official")

    expected, got = uninterrupted.model.learner.state_dict(), resumed.model.learner.state_dict()
    assert all(torch.equal(got[k], v) for k, v in expected.items())
    expected, got = uninterrupted.optim.state_dict(), resumed.optim.state_dict()
    assert got["param_groups"] == expected["param_groups"]  # lr, initial_lr, betas, weight_decay...
    for i, state in expected["state"].items():
        assert all(torch.equal(got["state"][i][k], v) for k, v in state.items())  # step, exp_avg, exp_avg_sq
    assert resumed.sched.state_dict() == uninterrupted.sched.state_dict()
