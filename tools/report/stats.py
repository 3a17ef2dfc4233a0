"""The statistics every results table uses: mean and std over seeds, and the harmonic mean of base and novel.

The std is the population std (NumPy's default, ``np.std``), as upstream's parse_test_res.py prints it;
``--ci95`` there is its 95% half-width, ``1.96 * std / sqrt(n)``.
"""

from __future__ import annotations

import math


def mean_std(values: list[float], ci95: bool = False) -> tuple[float, float]:
    """Mean and population std of ``values``; with ``ci95`` the 95% confidence half-width instead of the std."""
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    if ci95:
        std = 1.96 * std / math.sqrt(len(values))
    return mean, std


def harmonic_mean(a: float, b: float) -> float:
    """HM of base and novel accuracy, the papers' summary of base-to-novel generalisation."""
    return 2 * a * b / (a + b) if a + b > 0 else 0.0
