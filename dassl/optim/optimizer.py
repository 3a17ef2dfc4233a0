"""Optimizer factory driven by the ``OPTIM`` config node."""
from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import torch
import torch.nn as nn
from yacs.config import CfgNode

__all__ = ["AVAI_OPTIMS", "build_optimizer"]

AVAI_OPTIMS = ["adam", "amsgrad", "sgd", "rmsprop", "radam", "adamw"]


def _staged_param_groups(model: nn.Module, new_layers: Any, lr: float, base_lr_mult: float) -> list[dict]:
    """Children named in ``new_layers`` train at ``lr``; all other children at ``lr * base_lr_mult``."""
    if not isinstance(model, nn.Module):
        raise TypeError("When staged_lr is True, model given to build_optimizer() must be an instance of nn.Module")
    if isinstance(model, nn.DataParallel):
        model = model.module
    new_layers = [new_layers] if isinstance(new_layers, str) else list(new_layers)
    if not new_layers:
        warnings.warn("new_layers is empty (staged_lr is useless)", stacklevel=3)
    base_params, new_params = [], []
    for name, module in model.named_children():
        (new_params if name in new_layers else base_params).extend(module.parameters())
    return [{"params": base_params, "lr": lr * base_lr_mult}, {"params": new_params}]


def build_optimizer(
    model: nn.Module | Iterable[Any], optim_cfg: CfgNode, param_groups: Iterable[Any] | None = None
) -> torch.optim.Optimizer:
    """Build ``optim_cfg.NAME`` over ``param_groups`` if given, else over ``model`` (a module or parameters).

    With a module, every parameter is handed over, frozen ones included, as upstream does:
    those never get a gradient, so the optimizer skips them.
    """
    name = optim_cfg.NAME
    lr = optim_cfg.LR
    wd = optim_cfg.WEIGHT_DECAY
    betas = (optim_cfg.ADAM_BETA1, optim_cfg.ADAM_BETA2)
    if name not in AVAI_OPTIMS:
        raise ValueError(f"optim must be one of {AVAI_OPTIMS}, but got {name}")

    if param_groups is not None and optim_cfg.STAGED_LR:
        warnings.warn(
            "staged_lr will be ignored, if you need to use staged_lr, please bind it with param_groups yourself.",
            stacklevel=2,
        )
    if param_groups is None:
        if optim_cfg.STAGED_LR:
            param_groups = _staged_param_groups(model, optim_cfg.NEW_LAYERS, lr, optim_cfg.BASE_LR_MULT)
        else:
            param_groups = model.parameters() if isinstance(model, nn.Module) else model

    if name in ("adam", "amsgrad"):
        return torch.optim.Adam(param_groups, lr=lr, weight_decay=wd, betas=betas, amsgrad=name == "amsgrad")
    if name == "sgd":
        return torch.optim.SGD(
            param_groups,
            lr=lr,
            momentum=optim_cfg.MOMENTUM,
            weight_decay=wd,
            dampening=optim_cfg.SGD_DAMPNING,
            nesterov=optim_cfg.SGD_NESTEROV,
        )
    if name == "rmsprop":
        return torch.optim.RMSprop(
            param_groups, lr=lr, momentum=optim_cfg.MOMENTUM, weight_decay=wd, alpha=optim_cfg.RMSPROP_ALPHA
        )
    if name == "radam":
        return torch.optim.RAdam(param_groups, lr=lr, weight_decay=wd, betas=betas)
    return torch.optim.AdamW(param_groups, lr=lr, weight_decay=wd, betas=betas)
