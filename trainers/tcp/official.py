"""What exists only to match the official TCP code (github htyao89/Textual-based_Class-aware_prompt_tuning)
bit for bit: the random numbers its build draws.

The official prompt learner draws its context, then builds a second full CLIP (for the frozen class
features), then its meta-network; so the meta-network's initial values, and every number drawn later (data
order, augmentation), depend on that second construction. Our CLIP is built without drawing; this draws
what the official build draws up to the meta-network, and hands the context to the factory, which draws
the meta-network itself. Its checkpoints need no mapping: their keys are ours.
"""

from __future__ import annotations

import torch
from yacs.config import CfgNode

from clip.model import CLIP

from ..replay import replay_clip_construction


def replay_construction(clip_model: CLIP, settings: CfgNode) -> torch.Tensor | None:
    """Draw the first CLIP's construction, the random context (none with CTX_INIT), the second CLIP's
    construction; return the context.

    It is drawn in fp32: the official draw in CLIP's dtype takes the same numbers, and in fp16 gives
    their rounding, which the factory applies (``tests/test_tcp.py`` checks both).
    """
    width = clip_model.ln_final.weight.shape[0]
    with torch.no_grad():
        replay_clip_construction(clip_model)
        ctx = None if settings.CTX_INIT else torch.empty(settings.N_CTX, width).normal_(std=0.02)
        replay_clip_construction(clip_model)
    return ctx
