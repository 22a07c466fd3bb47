"""A 2-D state whose derivative mixes reductions along an axis, small slices and joins,
for tests/test_axis_reductions.py (issue 15).

Loaded under dyngen and, with the import swapped, under dynode (see dynode_compare).
Each case is one line a user would write; the reduced arrays (a row's mean, a column's
maximum, a 1-column slice) are smaller than the array form's threshold (64 elements) on a
12x10 grid, which is what these cases are about: broadcast back over the grid, they
must stay loop nests (the same lines at every grid size), computed before they are read.
"""

import numpy as np

from dyngen import Simulation, System

CASES = {  # case -> d/dt u of (u, w); w is a small vector state (its own case only)
    # a row's mean and a column's maximum, with coefficients (2 * max: a small array of its own)
    "row_mean_and_column_max": lambda u, w: -u + np.mean(u, axis=1)[:, None] - 2 * np.max(u, axis=0),
    # np.stack then a sum over the stacked axis, plus a 1-column slice broadcast over the columns
    "stack_sum_and_column": lambda u, w: -3 * u + np.stack((u, np.roll(u, 1, axis=0))).sum(axis=0) + 0.3 * u[:, :1],
    # a periodic shift by np.concatenate, plus the same 1-column slice
    "concatenate_and_column": lambda u, w: np.concatenate((u[-1:], u[:-1]), axis=0) - 2 * u + 0.3 * u[:, :1],
    # row sums and column sums, each scaled
    "row_and_column_sums": lambda u, w: -u + 0.02 * np.sum(u, axis=1)[:, None] - 0.01 * np.sum(u, axis=0),
    # products of small reduced arrays before they meet the grid
    "min_times_max": lambda u, w: -u + 0.5 * (np.min(u, axis=1)[:, None] * np.tanh(np.max(u, axis=0))),
    # keepdims=True instead of [:, None], and row norms (np.linalg.norm with axis=)
    "keepdims_and_norm": lambda u, w: (
        -u + 0.1 * np.sum(u, axis=1, keepdims=True) - 0.5 * np.max(u, axis=0, keepdims=True)
        + 0.05 * np.linalg.norm(u, axis=1, keepdims=True)
    ),
    # reductions of matrix products (a reduction reading another along the axis it reduces)
    "sum_of_a_product": lambda u, w: -u + 0.1 * (u @ coupling(u.shape[1])).sum(axis=1)[:, None],
    "product_of_a_product": lambda u, w: -u + 0.1 * (np.sin(u) @ coupling(u.shape[1])) @ coupling(u.shape[1]),
    "max_of_a_product": lambda u, w: -u + 0.1 * np.max(u @ coupling(u.shape[1]), axis=0),
    "gram_product_shifted": lambda u, w: -u + 0.1 * np.roll((u @ u.T) @ u, 1, axis=0) / u.size,
    # the grid's maximum and the minimum of a product: accumulations over the whole array
    "extremes_of_the_grid": lambda u, w: -u + 0.1 * np.max(u) - 0.1 * np.min(u @ coupling(u.shape[1])),
    # with a vector state of fewer than 8 elements (element form) broadcast over the columns
    "stack_sum_and_small_vector": lambda u, w: (
        -3 * u + np.stack((u, np.roll(u, 1, axis=0))).sum(axis=0) + 0.3 * w[:, None] + 0.3 * u[:, :1]
    ),
}
NO_JACOBIAN_CASES = {  # what dyngen does not derive (yet): the module says why
    "max_then_sum": lambda u, w: -u + 0.01 * np.max(u @ coupling(u.shape[1]), axis=0).sum(),
    "product_of_three": lambda u, w: -u + 0.1 * ((u @ coupling(u.shape[1])) @ coupling(u.shape[1])) @ coupling(u.shape[1]),
}
SMALL_VECTOR_CASES = {"stack_sum_and_small_vector"}


def coupling(m):
    """A constant m x m matrix (the same numbers under dyngen and dynode)."""
    k = np.arange(m)
    return np.cos(np.add.outer(k, 2 * k)) / m  # built with 7 rows: w stays in the element form


class Grid(System):
    def __init__(self, n, m, case):
        super().__init__()
        x = np.linspace(0.0, 1.0, n)[:, None]
        y = np.linspace(0.0, 1.0, m)[None, :]
        self.states.u = 0.5 + 0.4 * np.sin(3.0 * x + 2.0 * np.pi * y) + 0.2 * np.cos(5.0 * x * y)
        self.ders.u = np.zeros((n, m))
        if case in SMALL_VECTOR_CASES:
            self.states.w = np.linspace(-0.5, 0.5, n)
            self.ders.w = np.zeros(n)
        self.case = case

    def do_step(self, time):
        w = self.states.w if self.case in SMALL_VECTOR_CASES else None
        self.ders.u = {**CASES, **NO_JACOBIAN_CASES}[self.case](self.states.u, w)
        if w is not None:
            self.ders.w = -w + 0.1 * np.mean(self.states.u, axis=1)


def build(n=12, m=10, case="row_mean_and_column_max"):
    sim = Simulation()
    sim.add_system(Grid(n, m, case))
    return sim


class Profiled(Grid):
    """A grid with small outputs reduced along an axis (a column's mean, a row's maximum)."""

    def __init__(self, n, m):
        super().__init__(n, m, "row_mean_and_column_max")
        self.outputs.colmean = np.zeros(m)
        self.outputs.rowmax = np.zeros(n)

    def do_step(self, time):
        u = self.states.u
        self.ders.u = 0.2 * (np.roll(u, 1, axis=1) - u) - 0.3 * u
        self.outputs.colmean = u.mean(axis=0)
        self.outputs.rowmax = 2.0 * np.max(u, axis=1)


class Oscillator(System):
    def __init__(self, k):
        super().__init__()
        self.inputs.k = k
        self.inputs.drive = 0.0
        self.states.x = 1.0
        self.states.v = 0.0
        self.ders.x = 0.0
        self.ders.v = 0.0

    def do_step(self, time):
        self.ders.x = self.states.v
        self.ders.v = -self.inputs.k * self.states.x - 0.1 * self.states.v + self.inputs.drive


def build_with_oscillators(n=12, m=10, oscillators=40, readers=False):
    """The profiled grid beside many small oscillators; with ``readers``, each one is
    driven by an element of the grid's column means and one of its row maxima."""
    grid = Profiled(n, m)
    sim = Simulation()
    sim.add_system(grid)
    for q in range(oscillators):
        osc = Oscillator(1.0 + 0.01 * q)
        if readers:
            def drive(system, time, column=q % m, row=q % n):
                system.inputs.drive = grid.outputs.colmean[column] - 0.1 * grid.outputs.rowmax[row]

            osc.add_pre_connection(drive)
        sim.add_system(osc)
    return sim
