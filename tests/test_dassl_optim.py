"""dassl.optim: optimizer settings and the per-epoch learning rates of every scheduler/warmup mix."""
from __future__ import annotations

import io
import math

import pytest
import torch
import torch.nn as nn

from dassl.config import get_cfg_default
from dassl.optim import build_lr_scheduler, build_optimizer
from dassl.utils import CheckpointError, load_scheduler_state

LR = 0.002


def optim_cfg(**kw):
    cfg = get_cfg_default().OPTIM
    cfg.NAME = "adamw"
    cfg.LR = LR
    for k, v in kw.items():
        cfg[k] = v
    return cfg


def epoch_lrs(cfg, n_epochs=None):
    """LR in effect during each epoch, stepping the scheduler once per epoch like the trainers do."""
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, cfg)
    sched = build_lr_scheduler(opt, cfg)
    lrs = []
    for _ in range(n_epochs or cfg.MAX_EPOCH):
        lrs.append(opt.param_groups[0]["lr"])
        model(torch.ones(1, 2)).sum().backward()
        opt.step()
        sched.step()
    return lrs


def cosine(k, max_epoch):
    return 0.5 * LR * (1 + math.cos(math.pi * k / max_epoch))


def test_cosine_with_constant_warmup():
    cfg = optim_cfg(LR_SCHEDULER="cosine", MAX_EPOCH=10, WARMUP_EPOCH=1, WARMUP_TYPE="constant", WARMUP_CONS_LR=1e-5)
    expected = [1e-5] + [cosine(e - 1, 10) for e in range(1, 10)]
    assert epoch_lrs(cfg) == pytest.approx(expected, rel=1e-12)


def test_cosine_with_linear_warmup():
    cfg = optim_cfg(LR_SCHEDULER="cosine", MAX_EPOCH=8, WARMUP_EPOCH=3, WARMUP_TYPE="linear", WARMUP_MIN_LR=1e-5)
    expected = [1e-5, LR / 3, 2 * LR / 3] + [cosine(e - 3, 8) for e in range(3, 8)]
    assert epoch_lrs(cfg) == pytest.approx(expected, rel=1e-12)


def test_warmup_without_recount_continues_the_cosine_recursion():
    # successor starts at last_epoch = 2 with LR; each step scales by (1+cos(pi e/6)) / (1+cos(pi (e-1)/6))
    cfg = optim_cfg(
        LR_SCHEDULER="cosine", MAX_EPOCH=6, WARMUP_EPOCH=2, WARMUP_TYPE="constant", WARMUP_RECOUNT=False
    )
    expected = [1e-5, 1e-5, LR] + [LR * (1 + math.cos(math.pi * e / 6)) / 1.5 for e in range(3, 6)]
    assert epoch_lrs(cfg) == pytest.approx(expected, rel=1e-12)


def test_step_schedulers():
    assert epoch_lrs(optim_cfg(MAX_EPOCH=3), n_epochs=5) == pytest.approx([LR, LR, LR, LR * 0.1, LR * 0.1])
    multi = optim_cfg(LR_SCHEDULER="multi_step", STEPSIZE=(1, 3), GAMMA=0.5, MAX_EPOCH=4)
    assert epoch_lrs(multi) == pytest.approx([LR, LR / 2, LR / 2, LR / 4])
    with pytest.raises(ValueError, match="scheduler must be one of"):
        epoch_lrs(optim_cfg(LR_SCHEDULER="poly"))
    with pytest.raises(ValueError, match="WARMUP_TYPE"):
        epoch_lrs(optim_cfg(WARMUP_EPOCH=1, WARMUP_TYPE="exp"))


def test_warmup_state_is_plain_data_and_restores_mid_run():
    cfg = optim_cfg(LR_SCHEDULER="cosine", MAX_EPOCH=6, WARMUP_EPOCH=1, WARMUP_TYPE="constant")
    model = nn.Linear(2, 2)
    opt = build_optimizer(model, cfg)
    sched = build_lr_scheduler(opt, cfg)
    for _ in range(3):
        opt.step()
        sched.step()
    buf = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)  # no allow-list needed
    assert isinstance(state["scheduler"]["successor"], dict)

    opt2 = build_optimizer(nn.Linear(2, 2), cfg)
    sched2 = build_lr_scheduler(opt2, cfg)
    opt2.load_state_dict(state["optimizer"])
    sched2.load_state_dict(state["scheduler"])
    for e in range(3, 6):
        assert opt2.param_groups[0]["lr"] == pytest.approx(cosine(e - 1, 6), rel=1e-12)
        opt2.step()
        sched2.step()


def scheduler(cfg):
    """(optimizer, scheduler) as a trainer builds them for ``cfg``."""
    opt = build_optimizer(nn.Linear(2, 2), cfg)
    return opt, build_lr_scheduler(opt, cfg)


def stepped_state(cfg, steps: int = 2) -> tuple[dict, dict]:
    """The optimizer's and the scheduler's state after ``steps`` epochs, as a resumed run reads them."""
    opt, sched = scheduler(cfg)
    for _ in range(steps):
        opt.step()
        sched.step()
    return opt.state_dict(), sched.state_dict()


@pytest.mark.parametrize("warmup", [0, 1])
def test_resuming_refuses_a_schedule_built_from_other_settings(warmup):
    """torch's load_state_dict would keep the saved T_max: a resumed cosine restarts upwards past its old end."""
    cfg = optim_cfg(LR_SCHEDULER="cosine", MAX_EPOCH=4, WARMUP_EPOCH=warmup, WARMUP_TYPE="constant")
    saved_optimizer, saved = stepped_state(cfg)
    t_max = "successor.T_max" if warmup else "T_max"
    with pytest.raises(CheckpointError, match=rf"^run/resume.pth.tar was written with another learning-rate schedule "
                                              rf"\({t_max} 4.0 -> 8.0\).*OPTIM settings"):  # fmt: skip
        load_scheduler_state(scheduler(optim_cfg(**{**cfg, "MAX_EPOCH": 8}))[1], saved, "run/resume.pth.tar")
    with pytest.raises(CheckpointError, match=r"base_lrs \[0.002\] -> \[0.01\]"):
        load_scheduler_state(scheduler(optim_cfg(**{**cfg, "LR": 0.01}))[1], saved, "run/resume.pth.tar")

    opt, same = scheduler(cfg)
    opt.load_state_dict(saved_optimizer)  # as the trainer restores them: the optimizer, then its scheduler
    load_scheduler_state(same, saved, "run/resume.pth.tar")  # same settings: the progress is restored
    opt.step()
    same.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(cosine(3 - warmup, 4), rel=1e-12)


def test_resuming_compares_upstreams_pickled_successor_and_ignores_progress_keys():
    """Upstream Dassl pickles the warmup's successor object; keys one torch version writes alone are not settings."""
    cfg = optim_cfg(LR_SCHEDULER="cosine", MAX_EPOCH=4, WARMUP_EPOCH=1, WARMUP_TYPE="constant")
    _, sched = scheduler(cfg)
    upstream = {**sched.state_dict(), "successor": sched.successor, "verbose": False}
    with pytest.raises(CheckpointError, match=r"schedule \(successor.T_max 4.0 -> 2.0\)"):
        load_scheduler_state(scheduler(optim_cfg(**{**cfg, "MAX_EPOCH": 2}))[1], upstream, "model.pth.tar-1")
    load_scheduler_state(scheduler(cfg)[1], upstream, "model.pth.tar-1")


def test_optimizer_defaults_and_choices():
    model = nn.Linear(2, 2)
    adamw = build_optimizer(model, optim_cfg())
    group = adamw.param_groups[0]
    assert isinstance(adamw, torch.optim.AdamW)
    assert (group["lr"], group["weight_decay"], group["betas"]) == (LR, 5e-4, (0.9, 0.999))
    sgd = build_optimizer(model, optim_cfg(NAME="sgd", SGD_NESTEROV=True)).param_groups[0]
    assert (sgd["momentum"], sgd["dampening"], sgd["nesterov"]) == (0.9, 0, True)
    assert build_optimizer(model, optim_cfg(NAME="amsgrad")).param_groups[0]["amsgrad"] is True
    assert build_optimizer(model, optim_cfg(NAME="rmsprop")).param_groups[0]["alpha"] == 0.99
    only_bias = build_optimizer(model, optim_cfg(), param_groups=[model.bias])
    assert only_bias.param_groups[0]["params"] == [model.bias]
    with pytest.raises(ValueError, match="optim must be one of"):
        build_optimizer(model, optim_cfg(NAME="lamb"))


def test_staged_lr_groups():
    model = nn.Sequential()
    model.add_module("backbone", nn.Linear(2, 2))
    model.add_module("head", nn.Linear(2, 1))
    opt = build_optimizer(model, optim_cfg(NAME="sgd", STAGED_LR=True, NEW_LAYERS=("head",), BASE_LR_MULT=0.1))
    base, new = opt.param_groups
    assert base["lr"] == pytest.approx(LR * 0.1) and new["lr"] == LR
    assert base["params"] == list(model.backbone.parameters()) and new["params"] == list(model.head.parameters())
