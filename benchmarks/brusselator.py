"""Stiff Brusselator reaction-diffusion models (Hairer & Wanner II, BRUSS-2D) in dyngen.

    u' = 1 + u^2 v - 4.4 u + alpha lap(u),   v' = 3.4 u - u^2 v + alpha lap(v)

``Brusselator2D``: an N x N periodic grid on the unit square, written the natural
way: 2-D states (row i is y = i/N, column j is x = j/N) and a 5-point Laplacian with
``np.roll`` along both axes.  In ``y`` each species is its grid in C order (element
i*N + j is grid point (i, j)).  ``rhs_numpy`` is the same right-hand side in plain numpy
(the reference), ``sparsity`` the true Jacobian pattern.
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
        self.states.u = u.reshape(n, n)
        self.states.v = v.reshape(n, n)
        self.inputs.alpha = alpha
        self.inputs.inv_dx2 = float(n * n)  # 1 / dx^2 with dx = 1/n

    def do_step(self, time):
        u, v = self.states.u, self.states.v
        c = self.inputs.alpha * self.inputs.inv_dx2

        def lap(w):
            return np.roll(w, 1, axis=0) + np.roll(w, -1, axis=0) + np.roll(w, 1, axis=1) + np.roll(w, -1, axis=1) - 4.0 * w

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
