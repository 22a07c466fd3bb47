"""Models with n-D array states (2-D and 3-D grids), for tests/test_grids.py (issue 15).

Loaded under dyngen and, with the import swapped, under dynode (see dynode_compare).

- ``build_gray_scott(n, m)``: the Gray–Scott reaction–diffusion on a periodic n x m
  grid, written the natural way: 2-D states, a 5-point Laplacian with ``np.roll``
  along both axes, scalar inputs.
- ``build_grid_ops(n, m)``: a heat equation on an n x m grid with insulated
  (``np.pad(mode="edge")``) walls on axis 0, a fixed-value wall (``mode="constant"``)
  on axis 1 and a periodic copy (``mode="wrap"``); a space-varying conductivity (a 2-D
  input, i.e. a parameter grid), a row profile broadcast over the columns
  (``a[:, None]``, from a 1-D vector state) and a column profile from the transpose
  (``a[None, :]``, ``.T``); slicing on both axes; ``np.concatenate``/``np.stack`` along
  an axis; ``np.where``/``np.clip``; whole-array reductions (``np.sum``, ``np.mean``,
  ``np.max``, ``np.min``, ``np.prod``) into a scalar state and outputs; a 2-D output.
- ``build_cube(n)``: a 3-D state diffusing along its last axis (``np.roll(axis=2)``,
  ``np.diff`` with ``axis=``, with ``prepend=``/``append=`` a plane, a number or a traced
  element, and ``n=0``), mixed along it
  by a constant matrix (a stack of matrices ``@`` a matrix, and ``@`` a vector) and
  relaxing towards the mean of its first plane.
"""

import numpy as np

from dyngen import Simulation, System


class GrayScott(System):
    def __init__(self, n, m):
        super().__init__()
        x = np.linspace(0.0, 1.0, n)[:, None]
        y = np.linspace(0.0, 1.0, m)[None, :]
        bump = np.exp(-40.0 * ((x - 0.5) ** 2 + (y - 0.45) ** 2))
        self.states.u = 1.0 - 0.5 * bump
        self.states.v = 0.25 * bump + 0.01 * np.cos(3.0 * x) * np.sin(2.0 * y)
        self.ders.u = np.zeros((n, m))
        self.ders.v = np.zeros((n, m))
        self.inputs.Du = 0.16
        self.inputs.Dv = 0.08
        self.inputs.F = 0.035
        self.inputs.k = 0.065

    def do_step(self, time):
        u, v = self.states.u, self.states.v
        lap_u = np.roll(u, 1, axis=0) + np.roll(u, -1, axis=0) + np.roll(u, 1, axis=1) + np.roll(u, -1, axis=1) - 4 * u
        lap_v = np.roll(v, 1, axis=0) + np.roll(v, -1, axis=0) + np.roll(v, 1, axis=1) + np.roll(v, -1, axis=1) - 4 * v
        uvv = u * v * v
        self.ders.u = self.inputs.Du * lap_u - uvv + self.inputs.F * (1 - u)
        self.ders.v = self.inputs.Dv * lap_v + uvv - (self.inputs.F + self.inputs.k) * v


def build_gray_scott(n=12, m=10):
    sim = Simulation()
    sim.add_system(GrayScott(n, m))
    return sim


class GridOps(System):
    def __init__(self, n, m):
        super().__init__()
        x = np.linspace(0.0, 1.0, n)[:, None]
        y = np.linspace(0.0, 1.0, m)[None, :]
        self.states.T = np.sin(np.pi * x) * (1.0 + 0.5 * np.cos(2.0 * np.pi * y)) + 0.1 * x * y
        self.ders.T = np.zeros((n, m))
        self.states.profile = np.linspace(-0.5, 0.5, n)
        self.ders.profile = np.zeros(n)
        self.states.level = 0.2
        self.ders.level = 0.0
        self.inputs.kappa = 0.5 + 0.25 * np.cos(np.pi * x) * np.sin(np.pi * y) + 0.0 * y
        self.inputs.wall = 0.3
        self.outputs.flux = np.zeros((n - 2, m))
        self.outputs.total = 0.0
        self.outputs.spread = 0.0
        self.outputs.product = 0.0
        self.outputs.corner = 0.0

    def do_step(self, time):
        T = self.states.T
        insulated = np.pad(T, ((1, 1), (0, 0)), mode="edge")  # axis 0: zero-flux walls
        walled = np.pad(T, ((0, 0), (1, 1)), mode="constant", constant_values=self.inputs.wall)
        periodic = np.pad(T, 1, mode="wrap")
        lap = (insulated[2:, :] - 2 * T + insulated[:-2, :]) + (walled[:, 2:] - 2 * T + walled[:, :-2])
        lap = lap + 0.1 * (periodic[1:-1, 2:] - periodic[1:-1, :-2])
        rows = self.states.profile[:, None]  # broadcast over columns
        columns = T.T[:, 0][None, :]  # the first row (a column of the transpose) over the columns
        source = np.where(T > 0.5, -0.2 * (T - 0.5), 0.05) + 0.02 * rows * columns
        self.ders.T = self.inputs.kappa * lap + np.clip(source, -0.1, 0.1) - 0.1 * self.states.level
        self.ders.profile = np.mean(T) - self.states.profile + 0.1 * np.concatenate(([T[0, 0]], T[1:, -1] - T[:-1, -1]))
        self.ders.level = np.sum(T[1:-1, 1:-1]) / T.size - self.states.level
        stacked = np.stack((T[0, :], T[-1, :]), axis=0)
        self.outputs.flux = T[2:, :] - T[:-2, :]
        self.outputs.total = np.sum(stacked) + np.concatenate((T[:, :2], T[:, -2:]), axis=1).sum()
        self.outputs.spread = np.max(T) - np.min(T)
        self.outputs.product = np.prod(1.0 + 0.01 * T)
        self.outputs.corner = T[-1, -1] + T[0, -1]


def build_grid_ops(n=12, m=10):
    sim = Simulation()
    sim.add_system(GridOps(n, m))
    return sim


class Cube(System):
    def __init__(self, n):
        super().__init__()
        a, b, c = np.meshgrid(np.arange(3), np.arange(4), np.arange(n), indexing="ij")
        self.states.q = np.cos(0.3 * a + 0.2 * b) * np.sin(2 * np.pi * c / n) + 0.05 * a
        self.ders.q = np.zeros((3, 4, n))
        self.outputs.gradient = np.zeros((3, 4, n - 1))

    def do_step(self, time):
        q = self.states.q
        along = np.roll(q, 1, axis=2) - 2 * q + np.roll(q, -1, axis=-1)
        mix = np.cos(np.add.outer(np.arange(q.shape[2]), 2 * np.arange(q.shape[2]))) / q.shape[2]  # a constant matrix
        periodic = np.diff(q, axis=0, prepend=q[-1:])  # q[a] - q[a - 1], around axis 0
        self.ders.q = 0.3 * along + 0.1 * (np.mean(q[0]) - q) + 0.05 * np.tanh(q) @ mix + 0.1 * periodic
        self.ders.q -= 0.02 * np.diff(q, axis=1, prepend=0.0) + 0.02 * (q @ mix[0])[..., None]
        self.ders.q -= 0.01 * np.diff(q, axis=1, append=q[0, 0, 0]) + 0.01 * np.diff(q, n=0, axis=0, prepend=0.0)
        self.outputs.gradient = np.diff(q, axis=2)


def build_cube(n=8):
    sim = Simulation()
    sim.add_system(Cube(n))
    return sim


class Kuramoto(System):
    """``n`` phase oscillators coupled all-to-all through a weight matrix (a 2-D input).

    ``form`` selects how the coupling is written: ``"broadcast"`` (``sin(theta[None, :] -
    theta[:, None])`` weighted and summed along axis 1), ``"matrix"`` (``W @ sin`` and
    ``W @ cos``, by the angle-difference identity) or ``"einsum"``.
    """

    def __init__(self, n, form):
        super().__init__()
        rng = np.random.default_rng(1)
        self.states.theta = rng.uniform(0.0, 2.0 * np.pi, n)
        self.ders.theta = np.zeros(n)
        self.inputs.omega = rng.normal(0.0, 0.5, n)
        self.inputs.K = 1.5
        self.inputs.W = rng.uniform(0.0, 1.0, (n, n))
        self.form = form
        self.outputs.order = 0.0
        self.outputs.pull = np.zeros(n)

    def do_step(self, time):
        theta = self.states.theta
        n = len(theta)
        s, c = np.sin(theta), np.cos(theta)
        if self.form == "broadcast":
            coupling = np.sum(self.inputs.W * np.sin(theta[None, :] - theta[:, None]), axis=1)
        elif self.form == "matrix":
            coupling = (self.inputs.W @ s) * c - (self.inputs.W @ c) * s
        else:
            coupling = np.einsum("ij,j->i", self.inputs.W, s) * c - np.einsum("ij,j->i", self.inputs.W, c) * s
        self.ders.theta = self.inputs.omega + self.inputs.K / n * coupling
        self.outputs.order = np.sqrt(np.mean(c) ** 2 + np.mean(s) ** 2)
        self.outputs.pull = self.inputs.W.mean(axis=0) * s + np.max(self.inputs.W, axis=1) * c


def build_kuramoto(n=80, form="broadcast"):
    sim = Simulation()
    sim.add_system(Kuramoto(n, form))
    return sim


class PlainKuramoto(System):
    """``n`` phase oscillators coupled all-to-all with equal weights, no large array in the
    model: under the array form's 64 elements the phases are traced element by element
    until the outer difference promotes them (``form``: ``"broadcast"``,
    ``theta[None, :] - theta[:, None]``, or ``"outer"``, ``np.subtract.outer``); ``"loops"``
    writes the pairs as a Python double loop over the elements (element form throughout)."""

    def __init__(self, n, form):
        super().__init__()
        rng = np.random.default_rng(2)
        self.states.theta = rng.uniform(0.0, 2.0 * np.pi, n)
        self.ders.theta = np.zeros(n)
        self.inputs.omega = rng.normal(0.0, 0.5, n)
        self.inputs.K = 1.2
        self.form = form

    def do_step(self, time):
        theta = self.states.theta
        n = len(theta)
        if self.form == "loops":
            ders = np.zeros(n)
            for i in range(n):
                pull = 0.0
                for j in range(n):
                    pull = pull + np.sin(theta[j] - theta[i])
                ders[i] = self.inputs.omega[i] + self.inputs.K / n * pull
            self.ders.theta = ders
            return
        if self.form == "broadcast":
            difference = theta[None, :] - theta[:, None]
        else:
            difference = np.subtract.outer(theta, theta).T
        self.ders.theta = self.inputs.omega + self.inputs.K / n * np.sum(np.sin(difference), axis=1)


def build_plain_kuramoto(n=40, form="broadcast"):
    sim = Simulation()
    sim.add_system(PlainKuramoto(n, form))
    return sim

