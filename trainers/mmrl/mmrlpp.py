"""MMRL++: MMRL with shared residual maps, progressive tokens and a low-rank representation projection.

Only what differs from MMRL (model.py, trainer.py) is here:
- SRRA: one shared weight W per modality plus, per layer, a low-rank residual A_i B_i and a bias
  b_i: F_i(x) = x (W + A_i B_i)^T + b_i. W and every b_i start from the same nn.Linear.
- PRC: at REP_LAYERS after the first, the K slots become beta * new + (1 - beta) * previous outputs.
- P_v^r = P_v^c (frozen) + A B with B = 0 at init, so P_v^r starts equal to CLIP's projection.
Official checkpoint keys: representation_learner.srra_r2{v,t}proj.weight,
representation_learner.srra_r2{v,t}proj.srra.<i>.{A,B,bias}, image_encoder.{A,B}.
"""

from __future__ import annotations

import functools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from dassl.engine import TRAINER_REGISTRY

from . import official
from .model import MMRLParts, RepresentationLearner, TokenInjector, build_mmrl
from .trainer import MMRL


def _lora_factor(rows: int, rank: int) -> Tensor:
    """A (rows x rank), kaiming-uniform with a = sqrt(5) (nn.Linear's rule, fan_in = rank)."""
    a = torch.zeros(rows, rank)
    nn.init.kaiming_uniform_(a, a=math.sqrt(5))
    return a


class ResidualAligner(nn.Module):
    """The per-layer part of an SRRA map: A (out x r), B (r x in, zeros) and a bias."""

    def __init__(self, out_dim: int, in_dim: int, rank: int, bias: Tensor):
        super().__init__()
        self.A = nn.Parameter(_lora_factor(out_dim, rank))
        self.B = nn.Parameter(torch.zeros(rank, in_dim))
        self.bias = nn.Parameter(bias.detach().clone())

    def forward(self, x: Tensor, weight: Tensor) -> Tensor:
        return F.linear(x, weight + self.A @ self.B, self.bias)


class SharedResidualMaps(nn.Module):
    """F_i(x) = x (W + A_i B_i)^T + b_i for i = 0..n-1, W shared; W and each b_i copied from ``base``."""

    def __init__(self, base: nn.Linear, n_layers: int, rank: int):
        super().__init__()
        self.weight = nn.Parameter(base.weight.detach().clone())
        out_dim, in_dim = base.weight.shape
        self.srra = nn.ModuleList(ResidualAligner(out_dim, in_dim, rank, base.bias) for _ in range(n_layers))

    def forward(self, x: Tensor, index: int) -> Tensor:
        return self.srra[index](x, self.weight)


class SRRALearner(RepresentationLearner):
    """R as in MMRL, with SRRA maps. Drawn in order: R, both Linears, the visual A_i, the text A_i."""

    def build_maps(self, visual: nn.Linear, text: nn.Linear, n_layers: int, rank: int) -> None:
        self.srra_r2vproj = SharedResidualMaps(visual, n_layers, rank)
        self.srra_r2tproj = SharedResidualMaps(text, n_layers, rank)

    def map_visual(self, r: Tensor, index: int) -> Tensor:
        return self.srra_r2vproj(r, index)

    def map_text(self, r: Tensor, index: int) -> Tensor:
        return self.srra_r2tproj(r, index)


class LoRAProjection(nn.Module):
    """P_v^r = P_v^c + A B: CLIP's frozen class-token projection plus a trainable low-rank update."""

    def __init__(self, a: Tensor, out_dim: int):
        super().__init__()
        self.A = nn.Parameter(a)
        self.B = nn.Parameter(torch.zeros(a.shape[1], out_dim))

    def forward(self, x: Tensor, class_proj: Tensor) -> Tensor:
        return x @ (class_proj + self.A @ self.B).to(x.dtype)


class BlendingInjector(TokenInjector):
    """At later REP_LAYERS the slots keep (1 - beta) of what the previous block made of them."""

    def __init__(self, tokens, layers, beta: float):
        super().__init__(tokens, layers)
        self.beta = beta

    def update(self, new: Tensor, previous: Tensor) -> Tensor:
        return self.beta * new + (1 - self.beta) * previous


class MMRLppParts(MMRLParts):
    NODE = "MMRLpp"

    def representation_learner(self, n_tokens, rep_dim, visual_dim, text_dim, n_layers) -> nn.Module:
        return SRRALearner(n_tokens, rep_dim, visual_dim, text_dim, n_layers, rank=self.settings.RES_LORA_DIM)

    def projection_init(self, width: int, out_dim: int) -> Tensor:
        return _lora_factor(width, self.settings.PROJ_LORA_DIM)

    def projection(self, init: Tensor, out_dim: int) -> nn.Module:
        return LoRAProjection(init, out_dim)

    def injector(self):
        return functools.partial(BlendingInjector, beta=self.settings.BETA)


build_mmrlpp = functools.partial(build_mmrl, parts=MMRLppParts)


@TRAINER_REGISTRY.register()
class MMRLpp(MMRL):
    """MMRL++; config under TRAINER.MMRLpp (adds BETA, RES_LORA_DIM, PROJ_LORA_DIM), per-dataset values in
    configs/trainers/MMRLpp/datasets.yaml."""

    NODE = "MMRLpp"
    DEFAULTS = {
        **MMRL.DEFAULTS,
        "BETA": 0.9,  # weight of the new tokens when blended with the previous layer's
        "PROJ_LORA_DIM": 64,  # rank of the low-rank update of the representation projection
        "RES_LORA_DIM": 4,  # rank of the per-layer residual of the shared maps
    }
    model_factory = staticmethod(build_mmrlpp)
    replay_construction = staticmethod(functools.partial(official.replay_construction, parts=MMRLppParts))
