"""Nested reductions on a grid, for tests/test_nested_reductions.py (issue 15).

``build(n, m, case)``: ``n`` communities of ``m`` members each (a 2-D state ``u[n, m]``,
diffusing along a ring within each community), plus one level ``v[n]`` per community.
The coupling is a reduction whose summand reads another reduction.  With
``scaled=False`` the levels do not scale the grid's coupling: ``v`` (under 64
elements) then stays in the element form, its derivatives reading single elements of
the reductions along axes.

- ``"row_of_global"``: each community's spread about the global mean,
  ``np.mean((u - u.mean())**2, axis=1)``, read broadcast by ``u`` (``[:, None]``) and at
  its own cell by ``v``; also ``np.sum(u * np.mean(u), axis=1)[:, None]``;
- ``"global_of_rows"``: the total within-community variance,
  ``np.mean((u - u.mean(axis=1)[:, None])**2)``, a sum over the grid whose summand reads
  the row means;
- ``"shifted"``: each community relaxes to the previous community's mean
  (``np.roll(u.mean(axis=1), 1)[:, None]``, a reduction along an axis read at another row),
  and ``v`` follows the next community's maximum (``np.roll(np.max(u, axis=1), -1)``);
- ``"rows_of_rows"``: reductions along an axis whose summands read the row means: the
  previous row's spread about its mean (``np.roll(np.mean((u - rows)**2, axis=1), 1)``)
  and the row maxima of ``u * rows``;
- ``"cross"``: row sums weighted by the column means (``np.sum(u * u.mean(axis=0)[None, :],
  axis=1)``): with 64 columns or more, derived through the column means at every cell of
  the row sums (every level depends on every cell); with fewer, each column's mean is its
  own segment, read at a constant;
- ``"three_levels"``: the same with the column means of ``u`` weighted by the row means:
  three reductions nested (with 64 columns or more: no Jacobian yet, the module says why);
- ``"deep"``: the three at once, with a sum over the grid of a summand that reads the
  row spreads about the global mean (three levels), and the row maxima of a summand
  that reads the global mean.
"""

import numpy as np

from dyngen import Simulation, System


class Communities(System):
    def __init__(self, n, m, case, scaled=True):
        super().__init__()
        self.scaled = scaled
        x = np.linspace(0.0, 1.0, n)[:, None]
        y = np.linspace(0.0, 1.0, m, endpoint=False)[None, :]
        self.states.u = 0.5 + 0.4 * np.sin(3.0 * x + 2.0 * np.pi * y) + 0.2 * np.cos(5.0 * x * y + 1.0)
        self.states.v = np.linspace(0.1, 0.4, n)
        self.ders.u = np.zeros((n, m))
        self.ders.v = np.zeros(n)
        self.inputs.D = 0.4
        self.inputs.k = 1.2
        self.case = case

    def do_step(self, time):
        u, v, k = self.states.u, self.states.v, self.inputs.k
        lap = np.roll(u, 1, axis=1) - 2.0 * u + np.roll(u, -1, axis=1)
        if self.case == "row_of_global":
            g = u.mean()
            spread = np.mean((u - g) ** 2, axis=1)
            pull = np.sum(u * np.mean(u), axis=1)[:, None] / u.shape[1]
            du = -k * (u - pull) * (1.0 + spread[:, None]) - 0.2 * u**3
            dv = spread - v
        elif self.case == "global_of_rows":
            rows = u.mean(axis=1)[:, None]
            within = np.mean((u - rows) ** 2)
            du = -k * (u - rows) - 0.5 * within * u * (1.0 + v[:, None])
            dv = within * np.tanh(v) - v
        elif self.case == "shifted":
            previous = np.roll(u.mean(axis=1), 1)[:, None]
            du = -k * (u - previous) * (1.0 + 0.1 * u)
            dv = np.roll(np.max(u, axis=1), -1) - v
        elif self.case == "rows_of_rows":
            rows = u.mean(axis=1)[:, None]
            spread = np.mean((u - rows) ** 2, axis=1)
            du = -k * (u - rows) * (1.0 + np.roll(spread, 1)[:, None])
            dv = np.max(u * rows, axis=1) - v
        elif self.case == "cross":  # row sums weighted by the column means
            du = -k * (u - u.mean())
            dv = np.sum(u * u.mean(axis=0)[None, :], axis=1) / u.shape[1] - v
        elif self.case == "three_levels":  # row sums of u times column means weighted by the row means
            du = -k * (u - u.mean())
            columns = np.mean(u * u.mean(axis=1)[:, None], axis=0)
            dv = 2.5 * np.sum(u * columns[None, :], axis=1) / u.shape[1] - v
        else:
            g = u.mean()
            spread = np.mean((u - g) ** 2, axis=1)
            rows = u.mean(axis=1)[:, None]
            within = np.mean((u - rows) ** 2)
            deep = np.sum(u**2 * spread[:, None]) / u.size
            previous = np.roll(spread, 1)[:, None]
            du = -k * (u - g) * (1.0 + previous) - 0.3 * within * u - 0.2 * deep * u
            dv = np.max((u - g) ** 2, axis=1) - within * v
        if self.scaled:  # each community's level scales its coupling (v meets the grid: array form)
            du = du * (1.0 + 0.2 * v[:, None])
        self.ders.u = self.inputs.D * lap + du
        self.ders.v = dv


def build(n=12, m=10, case="row_of_global", scaled=True):
    sim = Simulation()
    sim.add_system(Communities(n, m, case, scaled))
    return sim
