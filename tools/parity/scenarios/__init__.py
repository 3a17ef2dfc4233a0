"""The scenarios of every method, by family; ``SCENARIOS`` lists them all in a stable order."""

from __future__ import annotations

from ..scenario import Scenario
from . import adapters, coop, deep, kgcoop, mmrl, resnet

SCENARIOS: list[Scenario] = [*coop.SCENARIOS, *kgcoop.SCENARIOS, *deep.SCENARIOS, *adapters.SCENARIOS,
                             *mmrl.SCENARIOS, *resnet.SCENARIOS]  # fmt: skip


def methods() -> list[str]:
    """The methods that have scenarios, in catalogue order."""
    return list(dict.fromkeys(s.method for s in SCENARIOS))


def of(method: str) -> list[Scenario]:
    return [s for s in SCENARIOS if s.method == method]
