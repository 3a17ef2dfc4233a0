"""What exists only to read the official MetaPrompt code's files (github Vill-Lab/2024-TIP-MetaPrompt).

Its checkpoints (``<output>/model/model.pth.tar-<epoch>``, Dassl's layout) hold the whole model: the two
prompt tensors under our names (``prompt_learner.ctx``, ``vision_prompt_learner.ctx``) and every frozen
CLIP tensor again under the official wrappers' names, which are skipped on load. Their optimizer state
covers every CLIP parameter too and is not mapped: they are evaluated, not resumed.
A new method never imports this.
"""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

from ..deep_prompts.official import refuse_optimizer_state

__all__ = ["FROZEN_PREFIXES", "filter_state_dict", "refuse_optimizer_state"]

# The official model's frozen parts: CLIP itself (``model.``) and the references its wrappers keep.
FROZEN_PREFIXES = (
    "model.",
    "image_encoder.",
    "text_encoder.",
    "logit_scale",
    "vision_prompt_learner.visual.",
    "vision_prompt_learner.conv1.",
    "vision_prompt_learner.class_embedding",
    "vision_prompt_learner.positional_embedding",
)


def filter_state_dict(state_dict: Mapping[str, Tensor], learner: nn.Module) -> dict[str, Tensor]:
    """Ours, or an official whole-model file without its frozen CLIP."""
    own = learner.state_dict().keys()
    return {k: v for k, v in state_dict.items() if k in own or not k.startswith(FROZEN_PREFIXES)}
