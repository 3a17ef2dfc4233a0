"""End-to-end checks of dassl.engine on a tiny registered dataset (8x8 colour images) and a 2-layer MLP."""
from __future__ import annotations

import math
import os
import os.path as osp
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from dassl.config import get_cfg_default
from dassl.data.datasets import DATASET_REGISTRY, DatasetBase, Datum
from dassl.engine import TRAINER_REGISTRY, TrainerX, build_trainer
from dassl.engine.checkpoints import checkpoint_path, selection_of
from dassl.evaluation import ModelSelection
from dassl.metrics import compute_accuracy
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import UserError

N_CLASSES = 3
COLOURS = [(200, 40, 40), (40, 200, 40), (40, 40, 200)]


@DATASET_REGISTRY.register()
class TinyDasslColours(DatasetBase):
    """Images under DATASET.ROOT/<split>/<label>_<i>.png; the label is the dominant colour."""

    def __init__(self, cfg):
        def read(split):
            folder = osp.join(cfg.DATASET.ROOT, split)
            names = sorted(os.listdir(folder))
            return [Datum(osp.join(folder, n), int(n.split("_")[0]), 0, f"colour{n.split('_')[0]}") for n in names]

        super().__init__(train_x=read("train"), val=read("val"), test=read("test"))


class _Crash(Exception):
    pass


@TRAINER_REGISTRY.register()
class TinyDasslMLP(TrainerX):
    """CoOp-style: forward_backward steps the optimizer, and the scheduler after the epoch's last batch."""

    crash_after_epoch: int | None = None

    def build_model(self):
        self.model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 16), nn.ReLU(), nn.Linear(16, self.num_classes))
        self.optim = build_optimizer(self.model, self.cfg.OPTIM)
        self.sched = build_lr_scheduler(self.optim, self.cfg.OPTIM)
        self.register_model("model", self.model, self.optim, self.sched)
        self.epoch_lrs: list[float] = []
        self.batch_losses: dict[int, list[float]] = {}

    def forward_backward(self, batch):
        image, label, _ = self.parse_batch_train(batch)
        if self.batch_idx == 0:
            self.epoch_lrs.append(self.get_current_lr())
        output = self.model(image)
        loss = F.cross_entropy(output, label)
        self.model_backward_and_update(loss)
        self.batch_losses.setdefault(self.epoch, []).append(loss.item())
        if self.batch_idx + 1 == self.num_batches:
            self.update_lr()
        return {"loss": loss.item(), "acc": compute_accuracy(output, label)[0].item()}

    def after_epoch(self):
        super().after_epoch()
        if self.crash_after_epoch is not None and self.epoch + 1 == self.crash_after_epoch:
            raise _Crash


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_colours")
    rng = np.random.default_rng(0)
    for split, per_class in (("train", 8), ("val", 4), ("test", 4)):
        os.makedirs(root / split)
        for label, colour in enumerate(COLOURS):
            for i in range(per_class):
                pixels = np.clip(np.array(colour) + rng.normal(0, 40, (8, 8, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(root / split / f"{label}_{i}.png")
    return str(root)


def make_cfg(data_root, out_dir, **overrides):
    cfg = get_cfg_default()
    cfg.DATASET.NAME = "TinyDasslColours"
    cfg.DATASET.ROOT = data_root
    cfg.OUTPUT_DIR = str(out_dir)
    cfg.TRAINER.NAME = "TinyDasslMLP"
    cfg.USE_CUDA = False
    cfg.INPUT.SIZE = (8, 8)
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.TRAIN_X.BATCH_SIZE = 4
    cfg.DATALOADER.TEST.BATCH_SIZE = 5
    cfg.OPTIM.NAME = "adamw"
    cfg.OPTIM.LR = 0.01
    cfg.OPTIM.MAX_EPOCH = 4
    cfg.OPTIM.LR_SCHEDULER = "cosine"
    cfg.OPTIM.WARMUP_EPOCH = 1
    cfg.OPTIM.WARMUP_TYPE = "constant"
    cfg.OPTIM.WARMUP_CONS_LR = 1e-5
    for key, value in overrides.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return cfg


def build(cfg, seed=0):
    torch.manual_seed(seed)
    return build_trainer(cfg)


def test_training_loss_falls_lr_schedule_checkpoint_and_final_test(data_root, tmp_path, capsys):
    cfg = make_cfg(data_root, tmp_path, **{"OPTIM.MAX_EPOCH": 6})
    trainer = build(cfg)
    assert trainer.device == torch.device("cpu")
    assert (trainer.num_classes, trainer.lab2cname[2]) == (3, "colour2")
    trainer.train()
    out = capsys.readouterr().out

    first, last = np.mean(trainer.batch_losses[0]), np.mean(trainer.batch_losses[5])
    assert last < 0.5 * first

    # constant warmup for 1 epoch, then cosine restarted at k = 0 over MAX_EPOCH epochs
    expected = [1e-5] + [0.5 * 0.01 * (1 + math.cos(math.pi * (e - 1) / 6)) for e in range(1, 6)]
    assert trainer.epoch_lrs == pytest.approx(expected, rel=1e-12)

    ckpt_path = tmp_path / "model" / "model.pth.tar-6"
    assert ckpt_path.is_file()
    assert (tmp_path / "model" / "checkpoint").read_text() == "model.pth.tar-6\n"
    assert not (tmp_path / "model" / "model.pth.tar-5").exists()  # CHECKPOINT_FREQ 0: last epoch only
    ckpt = torch.load(ckpt_path, weights_only=True)
    assert set(ckpt) == {"state_dict", "epoch", "optimizer", "scheduler", "val_result"}
    assert ckpt["epoch"] == 6 and ckpt["val_result"] is None
    assert torch.equal(ckpt["state_dict"]["3.weight"], trainer.model[3].weight)
    assert ckpt["scheduler"]["successor"]["last_epoch"] == 5

    # 24 training images / batch 4 = 6 batches; PRINT_FREQ 10 > 6, so every batch is reported
    assert re.search(
        r"^epoch \[1/6\] batch \[1/6\] time \d+\.\d{3} \(\d+\.\d{3}\) data \d+\.\d{3} \(\d+\.\d{3}\) "
        r"loss \d+\.\d{4} \(\d+\.\d{4}\) acc \d+\.\d{4} \(\d+\.\d{4}\) lr 1\.0000e-05 eta \d+:\d\d:\d\d$",
        out,
        re.M,
    )
    assert len(re.findall(r"^epoch \[\d/6\] batch", out, re.M)) == 36
    assert "Deploy the last-epoch model" in out and "Evaluate on the *test* set" in out
    assert re.search(r"^\* total: 12$", out, re.M)


def test_resume_continues_at_saved_epoch_and_matches_uninterrupted_run(data_root, tmp_path, capsys):
    overrides = {"TRAIN.CHECKPOINT_FREQ": 1, "TEST.NO_TEST": True, "DATALOADER.TRAIN_X.SAMPLER": "SequentialSampler"}
    full = build(make_cfg(data_root, tmp_path / "full", **overrides))
    full.train()

    interrupted = build(make_cfg(data_root, tmp_path / "cut", **overrides))
    interrupted.crash_after_epoch = 2
    with pytest.raises(_Crash):
        interrupted.train()
    assert (tmp_path / "cut" / "model" / "model.pth.tar-2").is_file()
    assert not (tmp_path / "cut" / "model" / "model.pth.tar-3").exists()

    resumed = build(make_cfg(data_root, tmp_path / "cut", **overrides), seed=123)  # weights come from the file
    resumed.train()
    out = capsys.readouterr().out
    assert "Resuming after epoch 2" in out  # the crashed run's resume.pth.tar (RNG states included)
    assert sorted(resumed.batch_losses) == [2, 3]  # epochs 0 and 1 were not re-run
    assert resumed.epoch_lrs == full.epoch_lrs[2:]
    for p_full, p_resumed in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p_full, p_resumed)


def test_resume_from_other_directory_via_cfg_resume(data_root, tmp_path, capsys):
    first = build(make_cfg(data_root, tmp_path / "a", **{"OPTIM.MAX_EPOCH": 2, "TEST.NO_TEST": True}))
    first.train()
    cfg = make_cfg(data_root, tmp_path / "b", **{"OPTIM.MAX_EPOCH": 2, "TEST.NO_TEST": True})
    cfg.RESUME = str(tmp_path / "a")
    second = build(cfg)
    second.train()
    assert second.batch_losses == {}  # already at MAX_EPOCH: nothing left to train
    assert "=> result" not in capsys.readouterr().out  # NO_TEST


def test_best_val_saves_best_and_deploys_it(data_root, tmp_path, capsys):
    trainer = build(make_cfg(data_root, tmp_path, **{"TEST.FINAL_MODEL": "best_val", "OPTIM.MAX_EPOCH": 3}))
    trainer.train()
    out = capsys.readouterr().out
    assert out.count("Evaluate on the *val* set") == 3
    assert "Deploy the model with the best val performance" in out
    best = torch.load(tmp_path / "model" / "model-best.pth.tar", weights_only=True)
    val_accs = [float(a) for a in re.findall(r"^\* accuracy: ([\d.]+)%", out, re.M)[:3]]
    assert best["val_result"] == pytest.approx(max(val_accs), abs=0.05) == trainer.best_result
    assert 1 <= best["epoch"] <= 3
    assert (tmp_path / "model" / "model.pth.tar-3").is_file()


def test_load_model_reads_epoch_or_best_and_skips_rebuilt_buffers(data_root, tmp_path, capsys):
    trainer = build(make_cfg(data_root, tmp_path, **{"OPTIM.MAX_EPOCH": 1, "TEST.NO_TEST": True}))
    trainer.train()
    saved = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    ckpt = torch.load(tmp_path / "model" / "model.pth.tar-1", weights_only=True)
    ckpt["state_dict"]["token_prefix"] = torch.zeros(1)
    torch.save(ckpt, tmp_path / "model" / "model.pth.tar-1")

    other = build(make_cfg(data_root, tmp_path / "other"), seed=7)
    assert not torch.equal(other.model[1].weight, saved["1.weight"])
    other.load_model(str(tmp_path), epoch=1)
    assert 'Loading weights to model from "' in capsys.readouterr().out
    for k, v in other.model.state_dict().items():
        assert torch.equal(v, saved[k])
    other.load_model(str(tmp_path))  # no best checkpoint: the last epoch saved
    assert other.model_selection == ModelSelection("last", 1, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="model.pth.tar-5"):
        other.load_model(str(tmp_path), epoch=5)
    other.load_model("")  # no directory: a note, no error
    assert "skipped" in capsys.readouterr().out


def test_one_rule_picks_the_checkpoint_and_names_what_it_was(tmp_path):
    for name in ("model.pth.tar-2", "model.pth.tar-10", "model.pth.tar-9"):
        (tmp_path / name).touch()
    last = checkpoint_path(str(tmp_path))
    assert last.endswith("model.pth.tar-10")  # the last epoch, not the last name
    assert selection_of(last, None, "run") == ModelSelection("last", 10, osp.abspath("run"))
    assert checkpoint_path(str(tmp_path), 2).endswith("model.pth.tar-2")
    assert selection_of(checkpoint_path(str(tmp_path), 2), 2, "run").selection == "epoch"
    torch.save({"epoch": 7}, tmp_path / "model-best.pth.tar")
    best = checkpoint_path(str(tmp_path))
    assert best.endswith("model-best.pth.tar") and selection_of(best, None, "run").as_dict()["epoch"] == 7
    with pytest.raises(UserError, match="--load-epoch 3"):
        checkpoint_path(str(tmp_path), 3)
    with pytest.raises(UserError, match="--model-dir must be .* holds prompt_learner/"):
        checkpoint_path(str(tmp_path / "missing" / "prompt_learner"))


def test_test_split_val_and_model_modes(data_root, tmp_path, capsys):
    trainer = build(make_cfg(data_root, tmp_path))
    acc = trainer.test(split="val")
    out = capsys.readouterr().out
    assert "Evaluate on the *val* set" in out and re.search(r"^\* total: 12$", out, re.M)
    assert acc == pytest.approx(float(re.search(r"^\* accuracy: ([\d.]+)%", out, re.M).group(1)), abs=0.05)
    assert not trainer.model.training
    trainer.set_model_mode("train")
    assert trainer.model.training
    with pytest.raises(KeyError):
        trainer.set_model_mode("bogus")
    with pytest.raises(KeyError):
        trainer.get_model_names("nope")
    with pytest.raises(KeyError, match="duplicate"):
        trainer.register_model("model", trainer.model)


def test_detect_anomaly_rejects_nan_loss(data_root, tmp_path):
    trainer = build(make_cfg(data_root, tmp_path))
    with pytest.raises(FloatingPointError):
        trainer.model_backward(torch.tensor(float("nan"), requires_grad=True))


def test_build_trainer_unknown_name_lists_registered(data_root, tmp_path):
    cfg = make_cfg(data_root, tmp_path)
    cfg.TRAINER.NAME = "TinyDasslMPL"
    with pytest.raises(ValueError, match=r"TinyDasslMLP.*but got \[TinyDasslMPL\].*do you mean \[TinyDasslMLP\]"):
        build_trainer(cfg)


def test_data_manager_attributes_and_summary(data_root, tmp_path, capsys):
    from dassl.data import DataManager

    cfg = make_cfg(data_root, tmp_path, **{"DATALOADER.TRAIN_X.BATCH_SIZE": 5})
    dm = DataManager(cfg)
    out = capsys.readouterr().out
    assert (dm.num_classes, dm.num_source_domains, dm.lab2cname) == (3, 0, {0: "colour0", 1: "colour1", 2: "colour2"})
    assert dm.train_loader_u is None
    assert len(dm.train_loader_x) == 24 // 5  # the short last batch is dropped in training
    assert (len(dm.val_loader), len(dm.test_loader)) == (3, 3)  # ... and kept in testing
    batch = next(iter(dm.test_loader))
    assert batch["img"].shape == (5, 3, 8, 8) and batch["index"].tolist() == [0, 1, 2, 3, 4]
    table = ["-" * 9 + "  " + "-" * 16, "Dataset    TinyDasslColours", "# classes  3", "# train_x  24", "# val      12"]
    assert "\n".join(table) in out and "# test     12\n" + table[0] in out
