"""Models whose derivatives read sums over whole arrays, for tests/test_lowrank.py:
their Jacobian is J = S + U Vᵀ (a sparse part and one low-rank term per sum).

- ``build_mean_field(n)``: mean-field Allen–Cahn on a periodic 1-D grid,
  ``du = D lap(u) + u - u³ - k (u - mean(u))``, plus a scalar state driven by a
  weighted sum ``np.sum(w * u**2)`` (a summand that is not linear) and a second
  sum in the derivatives (two low-rank terms).
- ``build_grid_mean(n, m)``: a periodic 2-D grid relaxing to its mean, scaled by a sum
  over a sub-grid (``np.sum(u[1:-1, 2:] ** 2)``); with ``axis=1``, to its row means
  (``u.mean(axis=1)[:, None]``: one sum per row, broadcast: a dense block per row in
  the sparse part), with ``axis=0`` to its column means (``np.sum(u, axis=0)[None, :]``).
- ``build_max_field(n, nested)``: a diffusion relaxing to ``np.max(u)`` (a low-rank
  term), or with ``nested`` to the variance (a sum of a sum: two low-rank terms).
- ``build_extremes(shape, op)``: a diffusion on a 1-D field or a 2-D grid relaxing to
  ``np.max``/``np.min``/``np.amax``/``np.amin``/``u.max()``/``np.prod`` of a summand, or
  (``nested``) of summands that read other reductions (a variance, two deep).
"""

import numpy as np

from dyngen import Simulation, System


class MeanField(System):
    def __init__(self, n):
        super().__init__()
        x = np.linspace(0.0, 1.0, n, endpoint=False)
        self.states.u = 0.6 * np.sin(2 * np.pi * x) + 0.3 * np.cos(6 * np.pi * x)
        self.states.e = 0.1
        self.ders.u = np.zeros(n)
        self.ders.e = 0.0
        self.inputs.D = 0.5 * n * n / 400.0
        self.inputs.k = 2.0
        self.inputs.w = np.linspace(0.5, 1.5, n)

    def do_step(self, time):
        u = self.states.u
        lap = np.roll(u, 1) - 2.0 * u + np.roll(u, -1)
        m = u.mean()
        energy = np.sum(self.inputs.w * u**2) / u.size
        self.ders.u = self.inputs.D * lap + u - u**3 - self.inputs.k * (u - m) - 0.1 * energy * u
        self.ders.e = energy - self.states.e


class GridMean(System):
    def __init__(self, n, m, axis=None):
        super().__init__()
        x = np.linspace(0.0, 1.0, n)[:, None]
        y = np.linspace(0.0, 1.0, m)[None, :]
        self.states.u = np.sin(3 * x + 2 * y) + 0.2 * np.cos(5 * x * y)
        self.ders.u = np.zeros((n, m))
        self.inputs.D = 0.3
        self.inputs.k = 1.5
        self.axis = axis

    def do_step(self, time):
        u = self.states.u
        lap = np.roll(u, 1, axis=0) + np.roll(u, -1, axis=0) + np.roll(u, 1, axis=1) + np.roll(u, -1, axis=1) - 4 * u
        inner = np.sum(u[1:-1, 2:] ** 2)  # a sum over a sub-grid: V is zero outside it
        if self.axis == 1:
            mean = u.mean(axis=1)[:, None]  # each row's mean, broadcast over the columns
        elif self.axis == 0:
            mean = np.sum(u, axis=0)[None, :] / u.shape[0]  # each column's mean, broadcast over the rows
        else:
            mean = u.mean()
        self.ders.u = self.inputs.D * lap - self.inputs.k * (u - mean) * (1.0 + 0.01 * inner) - 0.5 * u**3


class MaxField(System):
    def __init__(self, n, nested=False):
        super().__init__()
        self.states.u = np.linspace(-1.0, 1.0, n)
        self.ders.u = np.zeros(n)
        self.nested = nested

    def do_step(self, time):
        u = self.states.u
        if self.nested:  # a sum of a sum: the variance
            coupling = np.mean((u - np.mean(u)) ** 2)
        else:
            coupling = np.max(u)
        self.ders.u = np.roll(u, 1) - 2.0 * u + np.roll(u, -1) - (u - coupling)


def build_mean_field(n=200):
    sim = Simulation()
    sim.add_system(MeanField(n))
    return sim


def build_grid_mean(n=12, m=10, axis=None):
    sim = Simulation()
    sim.add_system(GridMean(n, m, axis))
    return sim


def build_max_field(n=100, nested=False):
    sim = Simulation()
    sim.add_system(MaxField(n, nested))
    return sim


class Extremes(System):
    """Reductions that are not sums, over a 1-D field (``shape=(n,)``) or a 2-D grid:
    ``op`` is "max", "min", "amax", "amin", "method_max" (``u.max()``), "prod", "nested", or "all"
    (a maximum, a minimum and a product together, of summands that are not linear)."""

    def __init__(self, shape, op):
        super().__init__()
        size = int(np.prod(shape))
        x = np.linspace(0.0, 1.0, size).reshape(shape)
        self.states.u = 0.5 + 0.4 * np.sin(5.0 * x + 0.3) * np.cos(2.0 * x)
        self.ders.u = np.zeros(shape)
        self.inputs.k = 0.8
        self.op = op

    def do_step(self, time):
        u = self.states.u
        axes = range(u.ndim)
        lap = sum(np.roll(u, 1, axis=a) - 2.0 * u + np.roll(u, -1, axis=a) for a in axes)
        if self.op == "max":
            coupling = np.max(u)
        elif self.op == "min":
            coupling = np.min(u)
        elif self.op == "amax":
            coupling = np.amax(u**2)
        elif self.op == "amin":
            coupling = np.amin(np.sin(u) + u)
        elif self.op == "method_max":
            coupling = u.max()
        elif self.op == "prod":
            coupling = np.prod(1.0 + 0.05 * u)
        elif self.op == "nested":  # reductions whose summands read other reductions, two deep
            m1 = u.mean()
            m2 = np.mean((u - m1) ** 2)
            coupling = np.max((u - m1) ** 2) + np.sum((u - m1) ** 2 / (1.0 + m2)) / u.size + np.prod(1.0 + 0.01 * (u - m2))
        else:
            coupling = 0.3 * np.max(u**2) - 0.5 * np.min(u) + 0.2 * np.prod(1.0 + 0.01 * u * u)
        self.ders.u = lap - self.inputs.k * (u - coupling) * (1.0 + 0.1 * u)


def build_extremes(shape=(12, 10), op="max"):
    sim = Simulation()
    sim.add_system(Extremes(tuple(shape) if not isinstance(shape, int) else (shape,), op))
    return sim


class ExtremesAlongAxes(System):
    """``np.max``/``np.min``/``np.prod`` along an axis of a grid ``u``: broadcast back over
    the grid (``u.max(axis=1)[:, None]``: a dense block per row in the sparse part), and
    read at its own cell by a vector ``v`` of the kept axis (``np.amax(u**2, axis=1)``);
    ``op="shifted"``: each row reads the previous row's maximum (shifted dense blocks)."""

    def __init__(self, n, m, op):
        super().__init__()
        x = np.linspace(0.0, 1.0, n * m).reshape(n, m)
        self.states.u = 0.5 + 0.4 * np.sin(5.0 * x + 0.3) * np.cos(2.0 * x)
        self.states.v = np.linspace(0.2, 0.4, n)
        self.ders.u = np.zeros((n, m))
        self.ders.v = np.zeros(n)
        self.op = op

    def do_step(self, time):
        u, v = self.states.u, self.states.v
        lap = np.roll(u, 1, axis=0) + np.roll(u, -1, axis=0) + np.roll(u, 1, axis=1) + np.roll(u, -1, axis=1) - 4 * u
        if self.op == "max":
            rows, own = u.max(axis=1)[:, None], np.amax(u**2 + v[:, None], axis=1)
        elif self.op == "min":
            rows, own = np.min(u, axis=0)[None, :], np.amin(np.sin(u), axis=1)
        elif self.op == "shifted":  # each row reads the previous row's maximum
            rows, own = np.roll(u.max(axis=1), 1)[:, None], v
        else:
            rows, own = 0.5 * np.prod(1.0 + 0.05 * u, axis=1)[:, None], 0.5 * np.prod(1.0 + 0.1 * u * v[:, None], axis=1)
        self.ders.u = lap - 0.8 * (u - rows) * (1.0 + 0.1 * u)
        self.ders.v = own - v


def build_extremes_along_axes(n=12, m=10, op="max"):
    sim = Simulation()
    sim.add_system(ExtremesAlongAxes(n, m, op))
    return sim
