"""dassl.utils: checkpoint files (ours and upstream's), weight loading, logging, meters."""
from __future__ import annotations

import math
import os
import pickle
import sys
from collections import OrderedDict

import pytest
import torch
import torch.nn as nn
from torch.optim.lr_scheduler import LRScheduler

from dassl.config import get_cfg_default
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import (
    AverageMeter,
    CheckpointError,
    MetricMeter,
    check_availability,
    count_num_param,
    load_checkpoint,
    load_pretrained_weights,
    resume_from_checkpoint,
    save_checkpoint,
    setup_logger,
)


def warmup_cosine_cfg():
    cfg = get_cfg_default().OPTIM
    cfg.NAME, cfg.LR, cfg.MAX_EPOCH = "adamw", 1e-3, 10
    cfg.LR_SCHEDULER, cfg.WARMUP_EPOCH, cfg.WARMUP_TYPE = "cosine", 1, "constant"
    return cfg


def trained(cfg, n_epochs):
    model = nn.Linear(3, 2)
    opt = build_optimizer(model, cfg)
    sched = build_lr_scheduler(opt, cfg)
    for _ in range(n_epochs):
        model(torch.ones(1, 3)).sum().backward()
        opt.step()
        sched.step()
    return model, opt, sched


def test_save_checkpoint_layout_pointer_best_and_no_temp_files(tmp_path):
    model = nn.Linear(3, 2)
    state = {"state_dict": OrderedDict(("module." + k, v) for k, v in model.state_dict().items()), "epoch": 3}
    save_checkpoint(state, str(tmp_path / "m"), is_best=True)
    assert sorted(os.listdir(tmp_path / "m")) == ["checkpoint", "model-best.pth.tar", "model.pth.tar-3"]
    assert (tmp_path / "m" / "checkpoint").read_text() == "model.pth.tar-3\n"
    assert (tmp_path / "m" / "model-best.pth.tar").read_bytes() == (tmp_path / "m" / "model.pth.tar-3").read_bytes()
    loaded = load_checkpoint(str(tmp_path / "m" / "model.pth.tar-3"))
    assert list(loaded["state_dict"]) == ["weight", "bias"]  # "module." stripped

    best_only = {"state_dict": model.state_dict(), "epoch": 4}
    save_checkpoint(best_only, str(tmp_path / "m"), model_name="model-best.pth.tar")
    assert (tmp_path / "m" / "checkpoint").read_text() == "model-best.pth.tar\n"
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        load_checkpoint(str(tmp_path / "nothing.pth"))


def test_resume_restores_model_optimizer_scheduler(tmp_path):
    cfg = warmup_cosine_cfg()
    model, opt, sched = trained(cfg, 3)
    save_checkpoint(
        {"state_dict": model.state_dict(), "epoch": 3, "optimizer": opt.state_dict(), "scheduler": sched.state_dict()},
        str(tmp_path),
    )
    model2, opt2, sched2 = trained(cfg, 0)
    assert resume_from_checkpoint(str(tmp_path), model2, opt2, sched2) == 3
    assert torch.equal(model2.weight, model.weight)
    assert opt2.state_dict()["state"][0]["exp_avg"].equal(opt.state_dict()["state"][0]["exp_avg"])
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 3 / 10)), rel=1e-12)


def test_upstream_checkpoint_with_pickled_scheduler_loads_weights_only(tmp_path, monkeypatch):
    cfg = warmup_cosine_cfg()
    model, opt, sched = trained(cfg, 3)  # epochs 0..2 done; epoch 3 runs at 0.5*lr*(1+cos(2pi/10))
    # upstream's warmup state_dict(): the whole __dict__ but the optimizer, so the CosineAnnealingLR
    # object (holding the AdamW object) is pickled inside
    upstream_sched = LRScheduler.state_dict(sched)
    assert type(upstream_sched["successor"]).__name__ == "CosineAnnealingLR"
    path = tmp_path / "model.pth.tar-3"
    torch.save(
        {"state_dict": model.state_dict(), "epoch": 3, "optimizer": opt.state_dict(), "scheduler": upstream_sched,
         "val_result": None},
        path,
    )
    with pytest.raises(pickle.UnpicklingError):
        torch.load(path, weights_only=True)

    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    ckpt = load_checkpoint(str(path))
    assert calls and all(w is True for w in calls)
    assert torch.equal(ckpt["state_dict"]["weight"], model.weight)

    model2, opt2, sched2 = trained(cfg, 0)
    opt2.load_state_dict(ckpt["optimizer"])
    sched2.load_state_dict(ckpt["scheduler"])
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 2 / 10)), rel=1e-12)
    sched2.step()
    assert opt2.param_groups[0]["lr"] == pytest.approx(0.5e-3 * (1 + math.cos(math.pi * 3 / 10)), rel=1e-12)


class Payload:
    def __reduce__(self):
        return (os.getcwd, ())


def test_other_pickled_objects_stay_rejected(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "x": Payload()}, path)
    with pytest.raises(CheckpointError, match="pickles Python objects that are not weights"):
        load_checkpoint(str(path))


def test_load_pretrained_weights_matches_names_and_shapes(tmp_path, capsys):
    src = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    dst = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 5))
    torch.save({"state_dict": {"module." + k: v for k, v in src.state_dict().items()}}, tmp_path / "w.pth")
    old_head = dst[1].weight.clone()
    load_pretrained_weights(dst, str(tmp_path / "w.pth"))
    assert torch.equal(dst[0].weight, src[0].weight) and torch.equal(dst[1].weight, old_head)
    out = capsys.readouterr().out
    assert "Layers discarded due to unmatched keys or size: ['1.weight', '1.bias']" in out
    assert count_num_param(dst) == 3 * 4 + 4 + 4 * 5 + 5
    assert count_num_param(params=[dst[0].weight, {"params": dst[0].bias}]) == 16


def test_setup_logger_tees_and_never_overwrites(tmp_path):
    saved = sys.stdout
    try:
        setup_logger(str(tmp_path))
        print("first run")
        sys.stdout.flush()
        setup_logger(str(tmp_path))
        print("second run")
        sys.stdout.flush()
    finally:
        sys.stdout.close()
        sys.stdout = saved
    assert (tmp_path / "log.txt").read_text() == "first run\n"
    others = [f for f in os.listdir(tmp_path) if f.startswith("log.txt-")]
    assert len(others) == 1 and (tmp_path / others[0]).read_text() == "second run\n"


def test_meters_and_availability():
    meter = MetricMeter()
    meter.update({"loss": torch.tensor(2.0), "acc": 50.0})
    meter.update({"loss": 1.0, "acc": 100.0})
    assert str(meter) == "loss 1.0000 (1.5000) acc 100.0000 (75.0000)"
    ema = AverageMeter(ema=True)
    ema.update(10.0)
    assert ema.avg == pytest.approx(1.0)
    with pytest.raises(TypeError):
        meter.update([1.0])
    with pytest.raises(ValueError, match=r"do you mean \[cosine\]"):
        check_availability("cosin", ["single_step", "cosine"])
