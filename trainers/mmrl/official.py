"""What exists only to match the official MMRL code (github yunncheng/MMRL) bit for bit.

- Its image encoder holds one more random tensor right after ``proj`` (MMRL: P_v^r, MMRL++: the LoRA
  factor A), drawn inside CLIP's construction, which the official code runs twice: ``replay_construction``
  draws the same and returns the first construction's tensor, the model's initial value.
- Its checkpoints hold the whole model (frozen CLIP included, optionally under ``module.``) and an
  optimizer with one group over all of the model's parameters: ``filter_state_dict`` picks MMRL's tensors
  out of such files and ``filter_optimizer_state`` maps the optimizer state onto our learner, so a run
  resumes from an official folder.
A new method never imports this.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from yacs.config import CfgNode

from clip.model import CLIP

from ..base import ConfigError
from ..replay import replay_clip_construction
from .model import MMRLParts


def replay_construction(clip_model: CLIP, settings: CfgNode, parts: type[MMRLParts] = MMRLParts) -> Tensor:
    """Draw what the official code's two CLIP constructions draw; the first one's extra tensor is our init."""
    draw = parts(settings).projection_init
    init = replay_clip_construction(clip_model, draw)
    replay_clip_construction(clip_model, draw)
    assert init is not None
    return init


def filter_state_dict(state_dict: Mapping[str, Tensor], learner: nn.Module) -> dict[str, Tensor]:
    """The learner's tensors out of an official checkpoint's state dict (which also holds the frozen CLIP,
    ignored here, as CLIP's weights come from the backbone file) or out of one of ours."""
    own = learner.state_dict()
    return {k: v for k, v in state_dict.items() if k in own}


# The buffers in the official model's state dict; every other key there is a parameter.
OFFICIAL_BUFFERS = frozenset({"prompt_embeddings"})


def filter_optimizer_state(
    optimizer_state: Mapping[str, Any] | None, state_dict: Mapping[str, Tensor], learner: nn.Module, source: str
) -> Mapping[str, Any] | None:
    """An official optimizer state re-indexed onto the learner's parameters.

    The official optimizer has one group over ALL the model's parameters, frozen CLIP included, in
    the order of its state dict without the buffers, and state (AdamW: step, exp_avg, exp_avg_sq)
    for the trainable ones only. The group's settings (lr, betas, weight_decay, initial_lr...) are kept.
    """
    if optimizer_state is None:
        return None
    print(f"An official checkpoint ({source}): resuming from its trainable tensors and their optimizer state")
    keys = (k.removeprefix("module.") for k in state_dict)
    names = [k for k in keys if k not in OFFICIAL_BUFFERS]
    sizes = [len(g["params"]) for g in optimizer_state["param_groups"]]
    if sizes != [len(names)]:
        raise ConfigError(
            f"{source}: the optimizer has groups of {sizes} parameters; "
            f"an official checkpoint has one group over the model's {len(names)} parameters"
        )
    group = optimizer_state["param_groups"][0]
    ours = {name: i for i, (name, _) in enumerate(learner.named_parameters())}
    name_of = dict(zip(group["params"], names))
    return {
        "state": {ours[name_of[i]]: state for i, state in optimizer_state["state"].items()},
        "param_groups": [{**group, "params": list(ours.values())}],
    }
