"""The linear solves of the sparse rodas4 (``sparse_stiff.py``): ``(c I - J) k = b``, c = 1/(h gamma).

- ``DirectStages`` (``linear_solver="direct"``, the default): a new SuperLU factor of
  ``c I - J`` at every step (and after every rejected step); every stage is one solve
  with it.  Exact to rounding.
- ``KrylovStages`` (``linear_solver="krylov"``): the factor is kept across steps and
  serves as the preconditioner of GMRES on the *exact* iteration matrix of the step
  (the Jacobian at the step's start and the step's own c): the method stays RODAS4, only
  the linear solves are iterative.  A stage is accepted when GMRES's (preconditioned)
  residual — an estimate of the error of the stage vector — is below ``KRYLOV_TOL`` in
  the error norm of the step control (``atol + rtol |y|``, root mean square), i.e. a
  small fraction of what the step's error estimate may be.  A new factor is made when
  c has moved too far from the factor's, when a stage needed more than ``SLOW_ITERATIONS``
  iterations (at the next step), and when GMRES does not converge in ``MAX_ITERATIONS``
  (at once, for the current matrix: then the stage is solved directly, exactly).  A
  stage that does not converge even with the fresh factor stops the run (status -7),
  never a silently wrong answer; so does a solve with a fresh factor whose residual shows
  that the factor does not solve its matrix.  GMRES starts from the caller's guess (the
  last step's stage vector), and the stages of one step share their Krylov directions
  (GCRO: each stage's pairs ``u``, ``M⁻¹A u`` are projected out for the later ones).
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

KRYLOV_TOL = 1e-3  # stage error allowed, in units of the step's error tolerance (RMS)
MAX_ITERATIONS = 8  # GMRES iterations (each one solve with the old factor) before a new factor
SLOW_ITERATIONS = 4  # more than this in a stage: a new factor at the next step
MAX_SHIFT = 0.3  # a new factor when c moved by more than this fraction from the factor's
RECYCLE = True  # the directions of a step's earlier stages augment GMRES for its later ones
MAX_RECYCLED = 40
DIRECT_BACKWARD_ERROR = 1e-9  # |b - A x| allowed for a solve with a fresh factor, relative to |b| + |A| |x|


# Products with length-n vectors by einsum, not BLAS: on the shared 2-core machine BLAS's
# threads made these thin products cost more than the triangular solves (128x128: 13 s of 49).


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.einsum("i,i->", a, b))


def _rows_dot(M: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``M @ v`` for a few long rows."""
    return np.einsum("ki,i->k", M, v)


def _combine(coefficients: np.ndarray, M: np.ndarray) -> np.ndarray:
    """``coefficients @ M``: a combination of a few long rows."""
    return np.einsum("k,ki->i", coefficients, M)


class DirectStages:
    """A new factor of ``c I - J`` per step (``linear_solver="direct"``)."""

    def __init__(self, factor: Callable[[float], object | None]) -> None:
        self._factor = factor
        self._lu: object | None = None
        self.stats = {"factorizations": 0, "solves": 0}

    def new_jacobian(self) -> None:
        """The Jacobian was evaluated at a new point."""

    def prepare(self, c: float, weights: np.ndarray) -> bool:
        """Ready the solves with ``c I - J``; False if that matrix is singular."""
        self._lu = self._factor(c)
        self.stats["factorizations"] += 1
        return self._lu is not None

    def solve(self, b: np.ndarray, guess: np.ndarray | None = None) -> np.ndarray | None:
        self.stats["solves"] += 1
        return self._lu.solve(b)  # type: ignore[union-attr]


class KrylovStages:
    """GMRES preconditioned by a kept factor of an older ``c' I - J'`` (``linear_solver="krylov"``).

    ``factor(c)`` factorises ``c I - J`` for the current Jacobian (None if singular);
    ``matvec(c, x)`` is ``(c I - J) x`` for the current Jacobian, ``jac_norm()`` the
    infinity norm of J (for the residual check of direct solves).
    """

    def __init__(
        self, factor: Callable[[float], object | None], matvec: Callable[[float, np.ndarray], np.ndarray], n: int,
        jac_norm: Callable[[], float],
    ) -> None:
        self._factor, self._matvec, self._n, self._jac_norm = factor, matvec, n, jac_norm
        self._norm = 1.0  # the infinity norm of c I - J at the factor
        self._lu: object | None = None
        self._c_lu = 0.0  # the c of the factor
        self._exact = False  # the factor is of this step's matrix: solve directly
        self._refactor = True
        self._c = 0.0
        self._w = np.ones(n)
        self.stats = {"factorizations": 0, "solves": 0, "gmres_iterations": 0, "gmres_failures": 0, "slow_stages": 0}
        self._forget()

    def new_jacobian(self) -> None:
        self._exact = False

    def prepare(self, c: float, weights: np.ndarray) -> bool:
        self._c, self._w = c, weights
        self._forget()
        if self._exact and c == self._c_lu:
            return True
        self._exact = False
        if self._refactor or self._lu is None or abs(c - self._c_lu) > MAX_SHIFT * self._c_lu:
            return self._new_factor()
        return True

    def _new_factor(self) -> bool:
        self._forget()
        self._norm = self._c + self._jac_norm()
        self._lu = self._factor(self._c)
        self.stats["factorizations"] += 1
        self._c_lu, self._exact, self._refactor = self._c, True, False
        return self._lu is not None

    def solve(self, b: np.ndarray, guess: np.ndarray | None = None) -> np.ndarray | None:
        """The stage vector, or None if the matrix is singular or GMRES fails even with a fresh factor."""
        if self._exact:
            return self._direct(b)
        x, iterations = self._gmres(b, x0=guess)
        self.stats["gmres_iterations"] += iterations
        if iterations > SLOW_ITERATIONS:
            self.stats["slow_stages"] += 1
            self._refactor = True
        if x is not None:
            return x
        self.stats["gmres_failures"] += 1
        if not self._new_factor():
            return None
        return self._direct(b)

    def _direct(self, b: np.ndarray) -> np.ndarray | None:
        """One solve with a factor of this very matrix, checked by its residual (one product):
        None if the factor does not solve the matrix (a near-singular or wrong factor)."""
        self.stats["solves"] += 1
        x = self._lu.solve(b)  # type: ignore[union-attr]
        residual = np.abs(b - self._matvec(self._c, x)).max()
        size = np.abs(b).max() + self._norm * np.abs(x).max()
        return x if residual <= DIRECT_BACKWARD_ERROR * size else None

    def _forget(self) -> None:
        """Drop the recycled directions (they belong to one matrix, factor and weights)."""
        self._U = self._C = self._WC = np.zeros((0, self._n))

    def _gmres(
        self, b: np.ndarray, x0: np.ndarray | None = None, max_iterations: int = MAX_ITERATIONS
    ) -> tuple[np.ndarray | None, int]:
        """Left-preconditioned GMRES in the weighted RMS norm, augmented by the directions
        of the step's earlier stages (GCRO: pairs u, c = M⁻¹A u with the c orthonormal);
        (x, iterations), x None if unconverged."""
        lu, w, c, n = self._lu, self._w, self._c, self._n
        U, C, WC = self._U, self._C, self._WC
        stats = self.stats

        def psolve(v: np.ndarray) -> np.ndarray:
            stats["solves"] += 1
            return lu.solve(v)  # type: ignore[union-attr]

        x = np.zeros(n) if x0 is None else x0.copy()
        z = psolve(b if x0 is None else b - self._matvec(c, x0))  # the preconditioned residual
        if C.shape[0]:  # the best x + U a: the residual orthogonal to the c's
            a = _rows_dot(WC, w * z) / n
            x += _combine(a, U)
            z -= _combine(a, C)
        wz = w * z
        beta = math.sqrt(_dot(wz, wz) / n)
        if not math.isfinite(beta):
            return None, 0
        if beta <= KRYLOV_TOL:
            return x, 0
        V, WV = np.empty((max_iterations + 1, n)), np.empty((max_iterations + 1, n))
        V[0], WV[0] = z / beta, wz / beta
        H = np.zeros((max_iterations + 1, max_iterations))
        B = np.zeros((C.shape[0], max_iterations))
        for j in range(max_iterations):
            q = psolve(self._matvec(c, V[j]))
            wq = w * q
            if C.shape[0]:
                B[:, j] = _rows_dot(WC, wq) / n
                q -= _combine(B[:, j], C)
                wq -= _combine(B[:, j], WC)
            for i in range(j + 1):
                H[i, j] = _dot(WV[i], wq) / n
                q -= H[i, j] * V[i]
                wq -= H[i, j] * WV[i]
            H[j + 1, j] = math.sqrt(_dot(wq, wq) / n)
            rhs = np.zeros(j + 2)
            rhs[0] = beta
            y = np.linalg.lstsq(H[: j + 2, : j + 1], rhs, rcond=None)[0]
            residual = float(np.linalg.norm(H[: j + 2, : j + 1] @ y - rhs))
            if not math.isfinite(residual):
                return None, j + 1
            breakdown = H[j + 1, j] <= 1e-14 * beta
            if not breakdown:
                V[j + 1], WV[j + 1] = q / H[j + 1, j], wq / H[j + 1, j]
            if residual <= KRYLOV_TOL or breakdown:
                x += _combine(y, V[: j + 1])
                if C.shape[0]:
                    x -= _combine(B[:, : j + 1] @ y, U)
                self._recycle(V, WV, H, B, j + 1, breakdown)
                return x, j + 1
        return None, max_iterations

    def _recycle(self, V: np.ndarray, WV: np.ndarray, H: np.ndarray, B: np.ndarray, k: int, breakdown: bool) -> None:
        """Add the k Arnoldi directions to the recycled pairs: M⁻¹A (V_k - U B) = V_k+1 H = (V_k+1 Q) R."""
        if not RECYCLE or self._C.shape[0] + k > MAX_RECYCLED:
            return
        rows = k if breakdown else k + 1
        Q, R = np.linalg.qr(H[:rows, :k])
        if not np.all(np.isfinite(R)) or np.abs(np.diag(R)).min() <= 1e-12 * np.abs(R).max():
            return
        Rinv = np.linalg.inv(R)
        basis = V[:k] - np.einsum("kj,ki->ji", B[:, :k], self._U) if self._U.shape[0] else V[:k]
        self._U = np.vstack((self._U, np.einsum("jl,ji->li", Rinv, basis)))
        self._C = np.vstack((self._C, np.einsum("jl,ji->li", Q, V[:rows])))
        self._WC = np.vstack((self._WC, np.einsum("jl,ji->li", Q, WV[:rows])))
