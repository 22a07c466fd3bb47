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
