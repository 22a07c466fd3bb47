"""Gray-Scott reaction-diffusion on a 1-D grid, written the way a user would,
plus two hand-written @njit right-hand sides to compare against."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
from numba import njit


class Component:
    """A minimal dynode-style component: states, ders, params containers and do_step."""

    def __init__(self) -> None:
        self.states, self.ders, self.params = SimpleNamespace(), SimpleNamespace(), SimpleNamespace()


class GrayScott(Component):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.states.u = np.ones(n)
        self.states.v = np.zeros(n)
        self.params.Du, self.params.Dv = 2e-5, 1e-5
        self.params.F, self.params.k = 0.04, 0.06
        self.params.dx = 1.0 / n

    def do_step(self, t):
        u, v, p = self.states.u, self.states.v, self.params
        lap_u = np.concatenate(([u[1] - u[0]], u[2:] - 2 * u[1:-1] + u[:-2], [u[-2] - u[-1]])) / p.dx**2
        lap_v = np.concatenate(([v[1] - v[0]], v[2:] - 2 * v[1:-1] + v[:-2], [v[-2] - v[-1]])) / p.dx**2
        self.ders.u = p.Du * lap_u - u * v**2 + p.F * (1 - u)
        self.ders.v = p.Dv * lap_v + u * v**2 - (p.F + p.k) * v


def numeric_rhs(component, t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Run the user's do_step on plain numpy arrays (the reference semantics)."""
    states, params = dict(vars(component.states)), dict(vars(component.params))
    start = 0
    for name, value in states.items():
        n = len(np.atleast_1d(value))
        setattr(component.states, name, y[start : start + n].copy())
        start += n
    for j, name in enumerate(params):
        setattr(component.params, name, float(p[j]))
    component.ders = SimpleNamespace()
    try:
        component.do_step(t)
        return np.concatenate([np.broadcast_to(getattr(component.ders, k), np.shape(v)) for k, v in states.items()])
    finally:
        component.states, component.params = SimpleNamespace(**states), SimpleNamespace(**params)


@njit(error_model="numpy")
def rhs_vectorised(t, y, p, dy):
    n = y.size // 2
    u, v = y[:n], y[n:]
    Du, Dv, F, k, dx = p[0], p[1], p[2], p[3], p[4]
    lap_u = np.empty(n)
    lap_u[0] = u[1] - u[0]
    lap_u[1:-1] = u[2:] - 2 * u[1:-1] + u[:-2]
    lap_u[-1] = u[-2] - u[-1]
    lap_v = np.empty(n)
    lap_v[0] = v[1] - v[0]
    lap_v[1:-1] = v[2:] - 2 * v[1:-1] + v[:-2]
    lap_v[-1] = v[-2] - v[-1]
    uvv = u * v**2
    dy[:n] = Du * (lap_u / dx**2) - uvv + F * (1 - u)
    dy[n:] = Dv * (lap_v / dx**2) + uvv - (F + k) * v


@njit(error_model="numpy")
def rhs_loop(t, y, p, dy):
    n = y.size // 2
    Du, Dv, F, k, dx = p[0], p[1], p[2], p[3], p[4]
    h2 = dx**2
    for i in range(n):
        u, v = y[i], y[n + i]
        if i == 0:
            lu, lv = y[1] - u, y[n + 1] - v
        elif i == n - 1:
            lu, lv = y[n - 2] - u, y[2 * n - 2] - v
        else:
            lu = y[i + 1] - 2 * u + y[i - 1]
            lv = y[n + i + 1] - 2 * v + y[n + i - 1]
        uvv = u * v * v
        dy[i] = Du * (lu / h2) - uvv + F * (1 - u)
        dy[n + i] = Dv * (lv / h2) + uvv - (F + k) * v


@njit(error_model="numpy")
def rhs_loop_peeled(t, y, p, dy):
    """The loop with the boundary elements peeled off: no branch in the interior loop."""
    n = y.size // 2
    Du, Dv, F, k, dx = p[0], p[1], p[2], p[3], p[4]
    h2 = dx**2
    for i in (0, n - 1):
        u, v = y[i], y[n + i]
        j = 1 if i == 0 else n - 2
        uvv = u * v * v
        dy[i] = Du * ((y[j] - u) / h2) - uvv + F * (1 - u)
        dy[n + i] = Dv * ((y[n + j] - v) / h2) + uvv - (F + k) * v
    for i in range(1, n - 1):
        u, v = y[i], y[n + i]
        uvv = u * v * v
        dy[i] = Du * ((y[i + 1] - 2 * u + y[i - 1]) / h2) - uvv + F * (1 - u)
        dy[n + i] = Dv * ((y[n + i + 1] - 2 * v + y[n + i - 1]) / h2) + uvv - (F + k) * v
