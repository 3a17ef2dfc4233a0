"""LR schedulers of the ``OPTIM`` node, stepped once per epoch by the trainer.

Upstream's warmup wrappers hand ``verbose`` to ``LRScheduler`` positionally (a crash on
current torch) and pickle the successor scheduler object into ``state_dict()`` (rejected by
weights-only loading). These keep upstream's learning rates epoch for epoch, run on every
torch >= 2.1, store the successor as its plain ``state_dict()`` and still accept upstream's
pickled form.

With ``WARMUP_EPOCH = W`` the learning rate used in epoch ``e`` (0-based) is the warmup value
for ``e < W``, then the successor's sequence from its start: cosine gives
``0.5 * LR * (1 + cos(pi * (e - W) / MAX_EPOCH))`` when ``WARMUP_RECOUNT`` is on.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.optim.lr_scheduler import LRScheduler
from yacs.config import CfgNode

__all__ = [
    "AVAI_SCHEDS",
    "ConstantWarmupScheduler",
    "LinearWarmupScheduler",
    "build_lr_scheduler",
]

AVAI_SCHEDS = ["single_step", "multi_step", "cosine"]


class _BaseWarmupScheduler(LRScheduler):
    """Own learning rates for ``warmup_epoch`` epochs, then hands every step to ``successor``."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, successor: LRScheduler, warmup_epoch: int, last_epoch: int = -1
    ) -> None:
        self.successor = successor
        self.warmup_epoch = warmup_epoch
        super().__init__(optimizer, last_epoch=last_epoch)

    def warmup_lr(self) -> list[float]:
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        if self.last_epoch >= self.warmup_epoch:
            return self.successor.get_last_lr()
        return self.warmup_lr()

    def step(self, epoch: int | None = None) -> None:
        # Past warmup our own counter stops and the successor counts from its start
        # (the step that ends warmup only copies the successor's initial LR).
        if self.last_epoch >= self.warmup_epoch:
            self.successor.step(epoch)
            self._last_lr = self.successor.get_last_lr()
        else:
            super().step(epoch)

    def state_dict(self) -> dict[str, Any]:
        """Plain data only: the successor is stored as its own ``state_dict()``."""
        state = {k: v for k, v in self.__dict__.items() if k not in ("optimizer", "successor")}
        state["successor"] = self.successor.state_dict()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Accepts ours and upstream's form (the successor pickled as an object, see load_checkpoint)."""
        state = dict(state_dict)
        successor = state.pop("successor")
        if not isinstance(successor, dict):
            successor = {k: v for k, v in vars(successor).items() if k != "optimizer"}
        self.successor.load_state_dict(successor)
        self.__dict__.update(state)


class ConstantWarmupScheduler(_BaseWarmupScheduler):
    """``cons_lr`` during warmup."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        cons_lr: float,
        last_epoch: int = -1,
    ) -> None:
        self.cons_lr = cons_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def warmup_lr(self) -> list[float]:
        return [self.cons_lr for _ in self.base_lrs]


class LinearWarmupScheduler(_BaseWarmupScheduler):
    """``min_lr`` in the first epoch, then ``base_lr * epoch / warmup_epoch``."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        successor: LRScheduler,
        warmup_epoch: int,
        min_lr: float,
        last_epoch: int = -1,
    ) -> None:
        self.min_lr = min_lr
        super().__init__(optimizer, successor, warmup_epoch, last_epoch)

    def warmup_lr(self) -> list[float]:
        if self.last_epoch == 0:
            return [self.min_lr for _ in self.base_lrs]
        return [lr * self.last_epoch / self.warmup_epoch for lr in self.base_lrs]


def build_lr_scheduler(optimizer: torch.optim.Optimizer, optim_cfg: CfgNode) -> LRScheduler:
    """``LR_SCHEDULER`` over ``MAX_EPOCH`` epochs, wrapped in a warmup scheduler when ``WARMUP_EPOCH > 0``."""
    name = optim_cfg.LR_SCHEDULER
    stepsize = optim_cfg.STEPSIZE
    max_epoch = optim_cfg.MAX_EPOCH
    if name not in AVAI_SCHEDS:
        raise ValueError(f"scheduler must be one of {AVAI_SCHEDS}, but got {name}")

    if name == "single_step":
        if isinstance(stepsize, (list, tuple)):
            stepsize = stepsize[-1]
        if not isinstance(stepsize, int):
            raise TypeError(f"For single_step lr_scheduler, stepsize must be an integer, but got {type(stepsize)}")
        if stepsize <= 0:
            stepsize = max_epoch
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=stepsize, gamma=optim_cfg.GAMMA)
    elif name == "multi_step":
        if not isinstance(stepsize, (list, tuple)):
            raise TypeError(f"For multi_step lr_scheduler, stepsize must be a list, but got {type(stepsize)}")
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=stepsize, gamma=optim_cfg.GAMMA)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, float(max_epoch))

    if optim_cfg.WARMUP_EPOCH <= 0:
        return scheduler
    if not optim_cfg.WARMUP_RECOUNT:
        scheduler.last_epoch = optim_cfg.WARMUP_EPOCH
    if optim_cfg.WARMUP_TYPE == "constant":
        return ConstantWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_CONS_LR)
    if optim_cfg.WARMUP_TYPE == "linear":
        return LinearWarmupScheduler(optimizer, scheduler, optim_cfg.WARMUP_EPOCH, optim_cfg.WARMUP_MIN_LR)
    raise ValueError(f"WARMUP_TYPE must be constant or linear, but got {optim_cfg.WARMUP_TYPE}")
