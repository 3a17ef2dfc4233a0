"""What exists only to match the official deep-prompt code bit for bit (github
muzairkhattak/multimodal-prompt-learning for MaPLe, IVLP and VPT; muzairkhattak/PromptSRC).

- The official IVLP, VPT and PromptSRC draw their independent prompts inside CLIP's constructor,
  interleaved with CLIP's own random init; PromptSRC then builds two more CLIPs. The trainers replay
  those draws (``replay_construction``, ``replay_promptsrc_build``) so a seeded run starts from the
  official values and draws the official data order. A plain factory draws the prompts alone.
- Official checkpoints hold the whole model: the frozen CLIP is skipped on load (``filter_state_dict``);
  their optimizer state covers the whole model and is not mapped (``refuse_optimizer_state``).
  PromptSRC's hold no GPA sum and a frozen CLIP averaged by GPA (``frozen_clip_state``).
A new method never imports this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NoReturn

import torch
from torch import Tensor, nn
from yacs.config import CfgNode

from clip.model import CLIP

from ..base import ConfigError
from ..replay import replay_clip_construction
from .mechanism import IndependentInit, PromptShape

# Official checkpoints hold the whole model: the keys of its frozen parts, skipped on load.
FROZEN_PREFIXES = ("image_encoder.", "text_encoder.", "logit_scale", "prompt_learner.ZS_image_encoder.")


def replay_construction(clip_model: CLIP, settings: CfgNode) -> IndependentInit:
    """Draw what the official CLIP constructor draws, the independent prompts among it; returns the prompts."""
    init = IndependentInit()
    widths = clip_model.visual.conv1.weight.shape[0], clip_model.ln_final.weight.shape[0]
    replay_clip_construction(clip_model, site=PromptShape.of(settings).draw_at(init, *widths))
    return init


def replay_promptsrc_build(clip_model: CLIP, settings: CfgNode) -> None:
    """What the official PromptSRC draws after its learner: two more CLIP constructions."""
    for _ in range(2):
        replay_clip_construction(clip_model)


def filter_state_dict(state_dict: Mapping[str, Tensor], learner: nn.Module) -> dict[str, Tensor]:
    """Ours, or an official whole-model file without its frozen CLIP."""
    own = learner.state_dict().keys()
    return {k: v for k, v in state_dict.items() if k in own or not k.startswith(FROZEN_PREFIXES)}


def filter_promptsrc_state_dict(state_dict: Mapping[str, Tensor], learner: nn.Module) -> dict[str, Tensor]:
    """As ``filter_state_dict``; an official file has no GPA sum (``gpa.*``, ours only): an empty one."""
    kept = filter_state_dict(state_dict, learner)
    if not any(k.startswith("gpa.") for k in kept):
        kept.update({k: torch.zeros_like(v) for k, v in learner.state_dict().items() if k.startswith("gpa.")})
    return kept


def frozen_clip_state(state_dict: Mapping[str, Tensor], learner: nn.Module) -> dict[str, Tensor]:
    """The frozen CLIP tensors of an official PromptSRC file, under our CLIP's names (GPA averaged them);
    empty for ours."""
    state = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if any(k.startswith("gpa.") for k in state):
        return {}
    learner_keys = set(learner.state_dict())
    renames = (("image_encoder.", "visual."), ("text_encoder.", ""), ("logit_scale", "logit_scale"))
    frozen = {}
    for key, value in state.items():
        for old, new in renames:
            if key.startswith(old) and key not in learner_keys:
                frozen[new + key.removeprefix(old)] = value
    return frozen


def refuse_optimizer_state(
    optimizer_state: Mapping[str, Any] | None, state_dict: Mapping[str, Tensor], learner: nn.Module, source: str
) -> NoReturn:
    """An official file's optimizer state covers the whole model, which is not mapped: no resuming from it."""
    raise ConfigError(
        f"{source} is not a checkpoint of ours (an official one?): training cannot resume from it; "
        "evaluate it with --eval-only --model-dir, or train into another --output-dir"
    )
