"""Running averages behind the training progress lines."""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

__all__ = ["AverageMeter", "MetricMeter"]


class AverageMeter:
    """Last value and running mean (or an exponential moving average with ``ema=True``)."""

    def __init__(self, ema: bool = False) -> None:
        self.ema = ema
        self.reset()

    def reset(self) -> None:
        self.val = 0.0
        self.avg = 0.0
        self.sum = 0.0
        self.count = 0

    def update(self, val: float | torch.Tensor, n: int = 1) -> None:
        if isinstance(val, torch.Tensor):
            val = val.item()
        self.val = val
        self.sum += val * n
        self.count += n
        self.avg = self.avg * 0.9 + val * 0.1 if self.ema else self.sum / self.count


class MetricMeter:
    """One AverageMeter per key of the dicts that ``forward_backward`` returns."""

    def __init__(self, delimiter: str = " ") -> None:
        self.meters: defaultdict[str, AverageMeter] = defaultdict(AverageMeter)
        self.delimiter = delimiter

    def update(self, input_dict: dict[str, Any] | None) -> None:
        if input_dict is None:
            return
        if not isinstance(input_dict, dict):
            raise TypeError("Input to MetricMeter.update() must be a dictionary")
        for k, v in input_dict.items():
            self.meters[k].update(v)

    def __str__(self) -> str:
        return self.delimiter.join(f"{k} {m.val:.4f} ({m.avg:.4f})" for k, m in self.meters.items())
