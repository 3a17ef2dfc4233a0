"""What exists only to match the official MMRL code (github yunncheng/MMRL): its checkpoint layout.

The official checkpoints hold the whole model (frozen CLIP included, optionally under ``module.``)
and an optimizer with one group over all of the model's parameters. These functions pick MMRL's
tensors out of such files, check they were trained with the same settings, and map the optimizer
state onto our learner so a run resumes from an official folder. A new method never imports this.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn
from yacs.config import CfgNode

from ..base import ConfigError

# Per-layer map keys, official layout: ...r2vproj.<i>.weight (MMRL), ...r2vproj.srra.<i>.A (MMRL++).
_MAP_KEY = re.compile(r"^representation_learner\.(?:compound_rep_tokens_r2[vt]proj|srra_r2[vt]proj\.srra)\.(\d+)\.")


def check_checkpoint_config(state_dict: Mapping[str, Tensor], settings: CfgNode, node: str, source: str) -> None:
    """Fail with the config key and both values when a checkpoint was trained with other settings."""
    tokens = state_dict.get("representation_learner.compound_rep_tokens")
    if tokens is not None:
        for dim, name in ((0, "N_REP_TOKENS"), (1, "REP_DIM")):
            if tokens.shape[dim] != settings[name]:
                raise ConfigError(
                    f"{source}: representation_learner.compound_rep_tokens has shape {tuple(tokens.shape)}, i.e. "
                    f"{name}={tokens.shape[dim]}, but TRAINER.{node}.{name}={settings[name]} "
                    f"(pass TRAINER.{node}.{name} {tokens.shape[dim]} to use this checkpoint)"
                )
    layers = {int(m.group(1)) for key in state_dict if (m := _MAP_KEY.match(key))}
    if layers and len(layers) != len(settings.REP_LAYERS):
        raise ConfigError(
            f"{source}: the checkpoint has representation maps for {len(layers)} layers "
            f"(representation_learner.*.{min(layers)}..{max(layers)}), but TRAINER.{node}.REP_LAYERS="
            f"{list(settings.REP_LAYERS)} has {len(settings.REP_LAYERS)}"
        )


def pick_learner_tensors(
    learner: nn.Module, state_dict: Mapping[str, Tensor], settings: CfgNode, node: str, source: str
) -> dict[str, Tensor]:
    """The learner's tensors out of an official checkpoint's state dict (which also holds the frozen
    CLIP, ignored here, as CLIP's weights come from the backbone file) or out of one of ours."""
    given = {k.removeprefix("module."): v for k, v in state_dict.items()}
    check_checkpoint_config(given, settings, node, source)
    missing = [k for k in learner.state_dict() if k not in given]
    if missing:
        raise ConfigError(f"{source} lacks {missing} (a checkpoint of another method, MMRL vs MMRL++?)")
    return {k: given[k] for k in learner.state_dict()}


# The buffers in the official model's state dict; every other key there is a parameter.
OFFICIAL_BUFFERS = frozenset({"prompt_embeddings"})


def learner_optimizer_state(
    optimizer_state: Mapping[str, Any], state_dict: Mapping[str, Tensor], learner: nn.Module, source: str
) -> dict[str, Any]:
    """An official optimizer state re-indexed onto the learner's parameters.

    The official optimizer has one group over ALL the model's parameters, frozen CLIP included, in
    the order of its state dict without the buffers, and state (AdamW: step, exp_avg, exp_avg_sq)
    for the trainable ones only. The group's settings (lr, betas, weight_decay, initial_lr...) are kept.
    """
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
