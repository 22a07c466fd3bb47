"""Constant numpy arrays combined with traced large arrays, for tests/test_constant_arrays.py.

Loaded under dyngen and, with the import swapped, under dynode (see dynode_compare).
Every constant here is a plain numpy array the model reads — never an input — so in
array form it becomes module data of the generated module (``CONST_<name>``).

- ``build_kuramoto(n, form)``: ``d theta/dt = OMEGA + k * coupling`` with a constant
  weight matrix; ``form`` picks where the constants live and how the coupling is written:
  ``"global"`` (module globals, ``W @ np.sin(theta)``: the model of issue 15),
  ``"attribute"`` (``self.W``, ``np.dot`` and traced ``@`` constant transposed),
  ``"matvec"`` (``self.W @ np.sin(theta)``: the issue's model at any n, for benchmarks),
  ``"closure"`` (a helper made by a factory closes over the matrix: ``np.einsum``),
  ``"broadcast"`` (a constant matrix elementwise with ``sin(theta[None, :] - theta[:, None])``,
  summed along axis 1), ``"scaled"`` (``(k * self.W) @ np.sin(theta)``: a traced scalar
  times the constant matrix), ``"strided"`` (``theta[::-1]``: not in the array form; at n = 300
  the element form would be 90,000 products, so the build must stop at once),
  ``"late_strided"`` (the same after the product: refused before the element form starts).
- ``build_scaled(n)``: a constant vector times a traced vector (``K * x``), a constant
  added (``OMEGA + ...``), a constant concatenated, a reduction of a constant product, a
  boolean constant as the condition of ``np.where``.
"""

import numpy as np

from dyngen import Simulation, System


def weights(n):
    rng = np.random.default_rng(n)
    return rng.normal(size=(n, n)) / n, rng.normal(size=n), rng.uniform(0.0, 2.0 * np.pi, n)


N_GLOBAL = 70
W, OMEGA, THETA0 = weights(N_GLOBAL)  # module globals, read by Kuramoto(form="global")


def make_coupling(matrix):
    def coupling(s):
        return np.einsum("ij,j->i", matrix, s)

    return coupling


class Kuramoto(System):
    CLASS_OMEGA = None  # set per size by build_kuramoto (a class attribute)

    def __init__(self, n, form):
        super().__init__()
        w, omega, theta0 = weights(n)
        self.states.theta = theta0.copy()
        self.ders.theta = np.zeros(n)
        self.inputs.k = 1.5
        self.form = form
        self.W = w
        self.omega = omega
        self.coupling = make_coupling(w)
        self.n = n

    def do_step(self, time):
        th = self.states.theta
        k = self.inputs.k
        if self.form == "global":
            self.ders.theta = OMEGA + k * (W @ np.sin(th))
        elif self.form == "attribute":
            half = 0.5 * np.dot(self.W, np.sin(th)) + 0.5 * (np.sin(th) @ self.W.T)
            self.ders.theta = self.omega + k * half
        elif self.form == "closure":
            self.ders.theta = type(self).CLASS_OMEGA + k * self.coupling(np.sin(th))
        elif self.form == "matvec":  # the model, with the constants held by the system
            self.ders.theta = self.omega + k * (self.W @ np.sin(th))
        elif self.form == "scaled":  # a traced scalar times the constant matrix, then @
            self.ders.theta = self.omega + (k * self.W) @ np.sin(th)
        elif self.form == "broadcast":
            # sum_j W[i, j] sin(theta_j - theta_i): the constant matrix elementwise with a traced grid
            self.ders.theta = self.omega + k * np.sum(self.W * np.sin(th[None, :] - th[:, None]), axis=1)
        elif self.form == "strided":  # reversed order (a strided slice is not in the array form)
            self.ders.theta = self.omega + k * (self.W @ np.sin(th[::-1]))
        else:  # "late_strided": the same after the matrix product
            self.ders.theta = self.omega + k * (self.W @ np.sin(th))[::-1]


def build_kuramoto(n=70, form="global"):
    if form == "global" and n != N_GLOBAL:
        raise ValueError(f"the globals are made for n = {N_GLOBAL}")
    Kuramoto.CLASS_OMEGA = weights(n)[1]
    sim = Simulation()
    sim.add_system(Kuramoto(n, form))
    return sim


class Scaled(System):
    def __init__(self, n):
        super().__init__()
        x = np.linspace(0.0, 1.0, n)
        self.states.u = np.cos(3.0 * x)
        self.ders.u = np.zeros(n)
        self.K = 1.0 + x**2  # a constant rate per cell
        self.OMEGA = np.sin(5.0 * x)  # a constant forcing per cell
        self.EDGE = np.full(n - 2, 0.25)  # equal values: one number, not data
        self.WALL = np.array([0.5, -0.5])
        self.MASK = x > 0.5  # a boolean constant: a condition per cell
        self.outputs.total = 0.0
        self.outputs.flux = np.zeros(n)

    def do_step(self, time):
        u = self.states.u
        inner = np.concatenate(([u[1] - u[0]], u[2:] - 2.0 * u[1:-1] + u[:-2], [u[-2] - u[-1]]))
        damping = np.where(self.MASK, 0.3 * u, 0.0)
        self.ders.u = self.OMEGA - self.K * u + inner + self.WALL[0] * np.concatenate(([0.0], self.EDGE * u[1:-1], [0.0])) - damping
        self.outputs.total = np.sum(self.K * u)
        self.outputs.flux = np.concatenate((self.K[:1], self.K[1:] * np.tanh(u[1:])))


def build_scaled(n=120):
    sim = Simulation()
    sim.add_system(Scaled(n))
    return sim
