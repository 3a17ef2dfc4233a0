"""What exists only to model the official CLIP-Adapter code (github gaopengcuhk/CLIP-Adapter), where ours
does less work for the same numbers. A new method never imports this.

Nothing is needed to reproduce its runs: its build draws CLIP's construction then the adapter's two
layers, as ours; its checkpoints hold the adapter's ``fc.0.weight`` / ``fc.2.weight``, as ours. Only its
forward pass encodes the class prompts again every time, which the benchmark of the official test step
(benchmarks/bench_eval.py) repeats through ``official_forward``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    from .clip_adapter import CLIPAdapterModel


def official_forward(model: CLIPAdapterModel, image: Tensor) -> Tensor:
    """The official model's forward: the class prompts through the text tower again, then the logits."""
    return model.logits(model.image_features(image), model.encode_prompts())
