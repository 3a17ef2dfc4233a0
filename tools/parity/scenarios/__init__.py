"""The scenarios of every method, by family; ``SCENARIOS`` lists them all in a stable order."""

from __future__ import annotations

from ..scenario import Scenario
from . import adapters, clip_adapter, coop, deep, kgcoop, metaprompt, mmrl, provp, resnet, tcp

SCENARIOS: list[Scenario] = [*coop.SCENARIOS, *kgcoop.SCENARIOS, *deep.SCENARIOS, *adapters.SCENARIOS,
                             *mmrl.SCENARIOS, *tcp.SCENARIOS, *provp.SCENARIOS,
                             *metaprompt.SCENARIOS, *clip_adapter.SCENARIOS,
                             *resnet.SCENARIOS]  # fmt: skip


def methods() -> list[str]:
    """The methods that have scenarios, in catalogue order."""
    return list(dict.fromkeys(s.method for s in SCENARIOS))


def of(method: str) -> list[Scenario]:
    return [s for s in SCENARIOS if s.method == method]
