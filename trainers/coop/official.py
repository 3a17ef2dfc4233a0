"""What exists only to match the official KgCoOp code (github htyao89/KgCoOp) bit for bit.

The official KgCoOp builds, after its context, a bias vector, a second full CLIP and a meta-network
it never uses (of a hard-coded width 512, ViT-B/16's embedding width, whatever the backbone), so
every number drawn afterwards (data order, augmentation) depends on them; its checkpoints and
optimizer states hold those unused tensors. CoOp, CoCoOp and zero-shot CLIP need nothing here: a
plain build draws what theirs draw, and their checkpoints are ours. A new method never imports this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from clip.model import CLIP

from ..replay import replay_clip_construction

UNUSED_KEYS = ("bias_vectors", "meta_net.")  # official checkpoint keys of the modules never used
UNUSED_WIDTH = 512


def replay_kgcoop_build(clip_model: CLIP, settings: CfgNode) -> None:
    """Draw what the official build draws after the context: ``bias_vectors``, a second CLIP construction,
    ``meta_net`` (its three Linears), in that order."""
    with torch.no_grad():
        torch.empty(1, UNUSED_WIDTH, dtype=clip_model.dtype).normal_(std=0.02)
        replay_clip_construction(clip_model)
        nn.Linear(UNUSED_WIDTH, UNUSED_WIDTH)
        nn.Linear(UNUSED_WIDTH, UNUSED_WIDTH // 4, bias=False)
        nn.Linear(UNUSED_WIDTH // 4, UNUSED_WIDTH, bias=False)


def filter_kgcoop_state_dict(state_dict: Mapping[str, Tensor], learner: nn.Module) -> dict[str, Tensor]:
    """An official state dict without the unused ``bias_vectors`` and ``meta_net`` (ours pass unchanged)."""
    return {k: v for k, v in state_dict.items() if not k.startswith(UNUSED_KEYS)}


def kgcoop_optimizer_state(
    optimizer_state: Mapping[str, Any] | None, state_dict: Mapping[str, Tensor], learner: nn.Module, source: str
) -> Mapping[str, Any] | None:
    """The official optimizer state reduced to ``ctx``'s entry.

    Its one group holds the official prompt learner's parameters: ``ctx`` first, then ``bias_vectors``
    and ``meta_net``'s, which never get a gradient (so no state). The scheduler state needs no mapping.
    """
    if optimizer_state is None or [len(g["params"]) for g in optimizer_state["param_groups"]] == [1]:
        return optimizer_state
    (group,) = optimizer_state["param_groups"]
    ctx_id = group["params"][0]
    state = {0: optimizer_state["state"][ctx_id]} if ctx_id in optimizer_state["state"] else {}
    print(f"An official checkpoint ({source}): resuming from its ctx and ctx's optimizer state")
    return {"state": state, "param_groups": [{**group, "params": [0]}]}
