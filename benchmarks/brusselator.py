"""Stiff Brusselator reaction-diffusion models (Hairer & Wanner II, BRUSS-2D) in dyngen.

    u' = 1 + u^2 v - 4.4 u + alpha lap(u),   v' = 3.4 u - u^2 v + alpha lap(v)

``Brusselator2D``: an N x N periodic grid on the unit square, held as *flat* vectors
of N*N elements per species (row-major: element i*N + j is grid point (i, j)), since
the array form takes 1-D vectors today.  The Laplacian shifts the flat vector by +-N
(the rows: exactly periodic) and by +-1 (the columns), whose wrap across a row end is
repaired by ``np.where`` with two constant 0/1 mask vectors (inputs): the first and
the last column.  ``rhs_numpy`` is the same right-hand side in plain numpy (the
reference), ``sparsity`` the true Jacobian pattern.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

from dyngen import Simulation, System


def initial_state(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Hairer & Wanner's initial values u = 22 y (1 - y)^1.5, v = 27 x (1 - x)^1.5."""
    x = np.arange(n) / n
    X, Y = np.meshgrid(x, x, indexing="xy")  # row i is y = x[i], column j is x = x[j]
    return (22.0 * Y * (1.0 - Y) ** 1.5).ravel(), (27.0 * X * (1.0 - X) ** 1.5).ravel()


class Brusselator2D(System):
    def __init__(self, n: int = 128, alpha: float = 0.1) -> None:
        super().__init__()
        u, v = initial_state(n)
        self.states.u = u
        self.states.v = v
        self.inputs.alpha = alpha
        self.inputs.inv_dx2 = float(n * n)  # 1 / dx^2 with dx = 1/n
        column = np.tile(np.arange(n), n)
        self.inputs.first_col = (column == 0).astype(float)
        self.inputs.last_col = (column == n - 1).astype(float)
        self.n = n

    def do_step(self, time):
        u, v, n = self.states.u, self.states.v, self.n
        first, last = self.inputs.first_col > 0.5, self.inputs.last_col > 0.5
        c = self.inputs.alpha * self.inputs.inv_dx2

        def lap(w):
            west = np.where(first, np.roll(w, 1 - n), np.roll(w, 1))  # w[i, j-1], periodic in j
            east = np.where(last, np.roll(w, n - 1), np.roll(w, -1))  # w[i, j+1]
            return np.roll(w, n) + np.roll(w, -n) + west + east - 4.0 * w

        uuv = u * u * v
        self.ders.u = 1.0 + uuv - 4.4 * u + c * lap(u)
        self.ders.v = 3.4 * u - uuv + c * lap(v)


def build(n: int = 128, alpha: float = 0.1) -> Simulation:
    sim = Simulation()
    sim.add_system(Brusselator2D(n, alpha))
    return sim


def rhs_numpy(n: int, alpha: float = 0.1):
    """The same right-hand side in numpy on the 2-D grid (y = [u.ravel(), v.ravel()])."""
    c = alpha * n * n

    def lap(w):
        return np.roll(w, 1, 0) + np.roll(w, -1, 0) + np.roll(w, 1, 1) + np.roll(w, -1, 1) - 4.0 * w

    def f(t, y):
        u, v = y[: n * n].reshape(n, n), y[n * n:].reshape(n, n)
        uuv = u * u * v
        return np.concatenate(((1.0 + uuv - 4.4 * u + c * lap(u)).ravel(), (3.4 * u - uuv + c * lap(v)).ravel()))

    return f


def sparsity(n: int) -> sparse.csc_matrix:
    """The true Jacobian pattern: the 5-point periodic stencil per species, u-v coupling at each point."""
    one = sparse.identity(n, format="csr")
    shift = sparse.csr_matrix(np.roll(np.eye(n), 1, axis=1)) + sparse.csr_matrix(np.roll(np.eye(n), -1, axis=1))
    grid = sparse.kron(one, shift) + sparse.kron(shift, one) + sparse.identity(n * n)
    block = sparse.identity(n * n)
    return sparse.bmat([[grid, block], [block, grid]], format="csc").astype(bool)
