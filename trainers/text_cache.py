"""Text features kept between forward passes, one implementation per kind.

- ``FrozenFeatures``: features of fixed prompts through the frozen CLIP (zero-shot classifiers, the
  targets of regularisers), or any other output of frozen parts on fixed inputs. Computed on first use
  where the model runs, outside autocast (or, if asked, in the caller's autocast state), and again only
  when the model moves to another device or dtype (or the autocast state changes).
- ``UnchangedCache``: features of learned prompts at evaluation, kept while no learned tensor changes
  (an optimizer step, a load or a move changes a tensor's version or storage); never during training.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor


class FrozenFeatures:
    """``compute()``'s result, recomputed only for another (device, dtype) of ``anchor``, a parameter of the
    frozen model (a module's ``.to()`` and ``.float()`` keep its parameter objects).

    ``follow_autocast``: computed in the caller's autocast state, and again when it changes (a part of
    a forward pass that must round as the rest does); otherwise always outside autocast.
    """

    def __init__(self, compute: Callable[[], Tensor], anchor: Tensor, follow_autocast: bool = False) -> None:
        self.compute, self.anchor, self.follow_autocast = compute, anchor, follow_autocast
        self._cached: tuple[tuple, Tensor] | None = None

    def __call__(self) -> Tensor:
        ref = self.anchor
        key = (ref.device, ref.dtype, self.follow_autocast and autocast_enabled(ref.device.type))
        if self._cached is None or self._cached[0] != key:
            # A plain tensor, usable in later training steps even when first asked for in inference mode.
            autocast = nullcontext() if self.follow_autocast else torch.autocast(ref.device.type, enabled=False)
            with torch.inference_mode(False), torch.no_grad(), autocast:
                self._cached = (key, self.compute())
        return self._cached[1]


def autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except TypeError:  # torch < 2.4 takes no argument
        return torch.is_autocast_enabled() if device_type == "cuda" else torch.is_autocast_cpu_enabled()


class UnchangedCache:
    """The last result of a computation on ``params``, reused at evaluation while none of them changed."""

    def __init__(self) -> None:
        self._cached: tuple[tuple, object] | None = None
        self._suspended = False

    def get(self, params: Iterable[Tensor], compute: Callable[[], object]) -> object:
        """``compute()``; with grad disabled, the last result if ``params`` are unchanged since."""
        if self._suspended:
            return compute()
        if torch.is_grad_enabled():
            self._cached = None
            return compute()
        params = list(params)
        key = tuple((p.data_ptr(), p._version, p.dtype) for p in params)
        key += (autocast_enabled(params[0].device.type),)
        if self._cached is None or self._cached[0] != key:
            self._cached = (key, compute())
        return self._cached[1]

    def clear(self) -> None:
        self._cached = None

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Inside, every ``get`` computes and keeps nothing; the kept result is untouched (for a caller that
        must redo the work, e.g. a benchmark's path of a code that keeps nothing)."""
        self._suspended = True
        try:
            yield
        finally:
            self._suspended = False
