"""The Jacobian of a generated module's rhs by central differences (a test reference)."""

from __future__ import annotations

from typing import Any

import numpy as np


def central_differences(module: Any, t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """d(rhs)/dy by central differences, column by column."""
    n = module.N_STATES
    J = np.empty((n, n))
    plus, minus = np.empty(n), np.empty(n)
    for j in range(n):
        h = 1e-6 * max(1.0, abs(y[j]))
        yp, ym = y.copy(), y.copy()
        yp[j] += h
        ym[j] -= h
        module.rhs(t, yp, p, plus)
        module.rhs(t, ym, p, minus)
        J[:, j] = (plus - minus) / (yp[j] - ym[j])
    return J


def random_point(module: Any, seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    """A time, states near the defaults and parameters within 20% of theirs (``seed``)."""
    rng = np.random.default_rng(seed)
    y = module.DEFAULT_STATES + rng.normal(0.0, 0.3, module.N_STATES)
    p = module.DEFAULT_PARAMETERS * rng.uniform(0.8, 1.2, module.N_PARAMETERS)
    return 0.7, y, p


def relative(actual: np.ndarray, expected: np.ndarray) -> float:
    """The largest difference relative to the largest expected value."""
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))
