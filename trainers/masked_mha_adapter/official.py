"""What exists only to load the release's files (github dqmis/clip-mma): its whole-model checkpoints
hold the adapter under ``adapter.``, next to the frozen CLIP. A new method never imports this."""

from __future__ import annotations

from collections.abc import Mapping

from torch import Tensor, nn

RELEASE_PREFIX = "adapter."


def filter_release_state_dict(state_dict: Mapping[str, Tensor], learner: nn.Module) -> dict[str, Tensor]:
    """Ours or the adapter module's own state dict unchanged; a whole release model: its adapter's tensors."""
    if any(k.startswith(RELEASE_PREFIX) for k in state_dict):
        return {k.removeprefix(RELEASE_PREFIX): v for k, v in state_dict.items() if k.startswith(RELEASE_PREFIX)}
    return dict(state_dict)
