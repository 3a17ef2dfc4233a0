"""Top-k accuracy, the ``acc`` column of the training progress lines."""
from __future__ import annotations

import torch

__all__ = ["compute_accuracy"]


def compute_accuracy(
    output: torch.Tensor | tuple | list, target: torch.Tensor, topk: tuple[int, ...] = (1,)
) -> list[torch.Tensor]:
    """Percentage of rows whose label is among the ``k`` highest scores, one 1-element tensor per ``k``.

    A tuple/list ``output`` (a model returning several heads) is scored on its first element.
    """
    if isinstance(output, (tuple, list)):
        output = output[0]
    maxk = max(topk)
    pred = output.topk(maxk, 1, True, True)[1].t()  # (maxk, batch)
    correct = pred.eq(target.view(1, -1).expand_as(pred))
    batch_size = target.size(0)
    return [correct[:k].reshape(-1).float().sum(0, keepdim=True).mul_(100.0 / batch_size) for k in topk]
