"""Models that keep flat state vectors and read them as grids (``reshape``/``ravel``), for
tests/test_reshape.py (issue 15).  Loaded under dyngen and, with the import swapped,
under dynode (see dynode_compare).

- ``build_flat_gray_scott(n, m, form)``: Gray–Scott on a periodic n x m grid with both
  species in one flat state ``y`` of 2nm elements, as people port it from
  ``scipy.integrate.solve_ivp``: ``form="slices"`` reads ``y[:nm].reshape(n, m)`` and
  ``y[nm:].reshape(n, m)`` and writes ``np.concatenate([du.ravel(), dv.ravel()])``;
  ``form="stack"`` reads ``y.reshape(2, n, m)`` and writes ``np.stack([du, dv]).ravel()``;
  ``form="scaled"`` reads as ``"slices"`` and writes ``speed * np.concatenate([...])``;
  ``form="damped"`` writes ``np.concatenate([...]) - 0.01 * self.states.y`` (a term of the
  flat state itself) with ``dv`` a plain slice of a flat computation (``ravel(order="F")``
  of a Fortran-order view: the same elements).
- ``build_flat_field(n, m)``: a 2-D state read flat (``u.ravel()``) for a 1-D stencil
  along the flattened index, its der written back with ``.reshape(n, m)``; a flat
  output (``u.ravel()`` times a constant grid, module data) that a second system reads
  through ``connect_signals`` and reshapes to a grid for its own der (a 2-D state),
  with a flat parameter vector read as a grid; an output written from a rolled grid
  (``np.roll(u, 1, axis=0).ravel()``), recorded.
"""

import numpy as np

from dyngen import Simulation, System, connect_signals


class FlatGrayScott(System):
    def __init__(self, n, m, form):
        super().__init__()
        self.n, self.m, self.form = n, m, form
        self.speed = 1.25
        x = np.linspace(0.0, 1.0, n)[:, None]
        y = np.linspace(0.0, 1.0, m)[None, :]
        bump = np.exp(-40.0 * ((x - 0.5) ** 2 + (y - 0.45) ** 2))
        u = 1.0 - 0.5 * bump
        v = 0.25 * bump + 0.01 * np.cos(3.0 * x) * np.sin(2.0 * y)
        self.states.y = np.concatenate([u.ravel(), v.ravel()])
        self.ders.y = np.zeros(2 * n * m)
        self.inputs.Du = 0.16
        self.inputs.Dv = 0.08
        self.inputs.F = 0.035
        self.inputs.k = 0.065

    def do_step(self, time):
        n, m = self.n, self.m
        if self.form != "stack":
            u = self.states.y[: n * m].reshape(n, m)
            v = self.states.y[n * m :].reshape(n, m)
        else:
            uv = self.states.y.reshape(2, n, m)
            u, v = uv[0], uv[1]
        lap_u = np.roll(u, 1, axis=0) + np.roll(u, -1, axis=0) + np.roll(u, 1, axis=1) + np.roll(u, -1, axis=1) - 4 * u
        lap_v = np.roll(v, 1, axis=0) + np.roll(v, -1, axis=0) + np.roll(v, 1, axis=1) + np.roll(v, -1, axis=1) - 4 * v
        uvv = u * v * v
        du = self.inputs.Du * lap_u - uvv + self.inputs.F * (1 - u)
        dv = self.inputs.Dv * lap_v + uvv - (self.inputs.F + self.inputs.k) * v
        if self.form == "slices":
            self.ders.y = np.concatenate([du.ravel(), dv.ravel()])
        elif self.form == "scaled":
            self.ders.y = self.speed * np.concatenate([du.ravel(), dv.ravel()])
        elif self.form == "damped":
            dv_flat = dv.T.ravel(order="F")  # Fortran order of the transpose: C order of dv
            self.ders.y = np.concatenate([du.ravel(), dv_flat]) - 0.01 * self.states.y
        else:
            self.ders.y = np.stack([du, dv]).ravel()


def build_flat_gray_scott(n=12, m=10, form="slices"):
    sim = Simulation()
    sim.add_system(FlatGrayScott(n, m, form))
    return sim


class Field(System):
    def __init__(self, n, m):
        super().__init__()
        self.n, self.m = n, m
        i = np.arange(n * m).reshape(n, m)
        self.states.u = np.sin(0.3 * i) + 0.1 * np.cos(0.05 * i * i)
        self.ders.u = np.zeros((n, m))
        self.outputs.flat = np.zeros(n * m)
        self.outputs.rolled = np.zeros(n * m)
        self.weights = 1.5 + np.cos(0.7 * i)  # a constant grid (module data)

    def do_step(self, time):
        f = self.states.u.ravel()
        chain = np.roll(f, 1) - 2 * f + np.roll(f, -1)  # neighbours along the flattened index
        self.ders.u = (0.5 * chain - 0.1 * f**3).reshape(self.n, self.m)
        self.outputs.flat = (2.0 * self.states.u * self.weights).ravel()
        self.outputs.rolled = np.roll(self.states.u, 1, axis=0).ravel()


class Follower(System):
    def __init__(self, n, m):
        super().__init__()
        self.n, self.m = n, m
        self.states.w = np.zeros((n, m))
        self.ders.w = np.zeros((n, m))
        self.inputs.flat = np.zeros(n * m)
        self.inputs.rates = np.linspace(0.5, 1.5, n * m)  # a parameter vector, read as a grid

    def do_step(self, time):
        grid = self.inputs.flat.reshape(self.n, self.m)
        rates = self.inputs.rates.reshape(self.n, self.m)
        self.ders.w = rates * np.tanh(grid - self.states.w) + 0.2 * (np.roll(grid, 1, axis=1) - grid)


def build_flat_field(n=12, m=10):
    field, follower = Field(n, m), Follower(n, m)
    follower.add_pre_connection(connect_signals(field.outputs, "flat", follower.inputs, "flat"))
    sim = Simulation()
    sim.add_system(field)
    sim.add_system(follower)
    return sim
