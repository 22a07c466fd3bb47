"""A variable-order BDF/NDF on the sparse Jacobian that keeps its LU across steps (``integrator="sparse_bdf"``).

The method is scipy's ``BDF`` (Shampine & Reichelt's NDF, orders 1-5, the solution held
as modified divided differences ``D`` on an equidistant grid, rescaled when h changes);
what differs is when the iteration matrix ``c I - J`` (``c = alpha_k / h``) is
factorised, as CVODE decides it:

- a new Jacobian (``module.jac_values``, and ``jac_lowrank`` for ``J = S + U Vᵀ``) and
  SuperLU factor only when c moved by more than ``REFACTOR_RATIO`` from the factor's,
  after ``REFACTOR_STEPS`` steps, or when Newton's iteration fails with an old one;
  meanwhile Newton's corrections with the old factor are scaled by ``2 / (1 + ratio)``
  (``ratio``: the factor's c over this step's; the right scaling is 1 for non-stiff
  components and ``1 / ratio`` for stiff ones, and this is their harmonic mean);
- while ``||J|| <= NONSTIFF * c`` for this step's c and the factor's (early steps, tiny h),
  both iteration matrices are ``c I`` to 20%: the factor is kept whatever c does, and
  corrections are not scaled;
- after an accepted step h grows only by ``KEEP_GROWTH`` or more (else it stays, and
  with it c and the factor: growing by 1.5-2x would cost a new LU for few steps saved);
  it shrinks only after a failed step;
- Newton stops when its correction, shrunk by the estimated convergence rate, is below
  ``NEWTON_TOL`` of what the error test allows (at most ``NEWTON_MAXITER`` iterations).

scipy's BDF takes a new LU at every change of h or order, 5-6 steps apart: on a 2-D
reaction-diffusion grid of 32,768 states, where one sparse LU costs 40 triangular
solves, this one takes about a fifth of its LUs (benchmarks/README.md, "stiff_sparse").
It is written here rather than driven through scipy's ``BDF`` because that solver's
factorisation policy is inside its private ``_step_impl``.  The linear algebra is
sparse_stiff.py's (``CscPattern``, ``factor_shifted``: the minimum-degree SuperLU, and
Woodbury for a low-rank part).  States between steps come from the BDF interpolating
polynomial, as solve_ivp's dense output.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np

from ..errors import DyngenError, SolverError
from .integrators import DENSE_MAX_STATES, SPARSE_MAX_DENSITY, check_without_jacobian, non_finite_states
from .sparse_stiff import CscPattern, factor_shifted

SPARSE_BDF_OPTIONS = ("rtol", "atol", "first_step", "max_step", "nsteps")
MAX_ORDER = 5
NEWTON_MAXITER = 4
NEWTON_TOL = 0.03  # of the error test's bound, in its norm (CVODE: 0.1)
REFACTOR_RATIO = 1.5  # a new LU when c = alpha_k / h moved by more than this factor from the factor's
REFACTOR_STEPS = 50  # ... or after this many steps with the same Jacobian
KEEP_GROWTH = 2.0  # after an accepted step h grows by at least this factor, or stays
# While ||J|| <= NONSTIFF * c for both c's, c I - J is c I to 20%: the kept factor serves any c (unscaled).
NONSTIFF = 0.2
MIN_FACTOR, MAX_FACTOR = 0.2, 10.0

# Shampine & Reichelt's NDF coefficients, as scipy's BDF (kappa = 0: the BDF of that order).
KAPPA = np.array([0.0, -0.1850, -1.0 / 9.0, -0.0823, -0.0415, 0.0])
GAMMA = np.concatenate(([0.0], np.cumsum(1.0 / np.arange(1, MAX_ORDER + 1))))
ALPHA = (1.0 - KAPPA) * GAMMA
ERROR_CONST = KAPPA * GAMMA + 1.0 / np.arange(1, MAX_ORDER + 2)

_REASONS = {
    "nsteps": "more than nsteps steps were needed (pass a larger nsteps=...)",
    "small": "the step size became too small",
    "singular": "the iteration matrix c I - J is singular",
}


def sparse_bdf_settings(options: dict) -> tuple[object, object, float, int, float | None]:
    """``(rtol, atol, max_step, nsteps, first_step)`` from the user's options (rtol and
    atol scalars or per-state vectors)."""
    unknown = sorted(set(options) - set(SPARSE_BDF_OPTIONS))
    if unknown:
        raise DyngenError(f"integrator 'sparse_bdf' does not take {unknown}; it takes {list(SPARSE_BDF_OPTIONS)}")
    rtol = options.get("rtol", 1e-6)
    atol = options.get("atol", 1e-12)
    rtol = float(rtol) if np.ndim(rtol) == 0 else np.asarray(rtol, dtype=float)
    atol = float(atol) if np.ndim(atol) == 0 else np.asarray(atol, dtype=float)
    if np.any(np.asarray(rtol) <= 0) or np.any(np.asarray(atol) < 0):
        raise DyngenError(f"integrator 'sparse_bdf': rtol must be > 0 and atol >= 0 (got rtol={rtol!r}, atol={atol!r})")
    max_step = float(options.get("max_step") or np.inf)
    first_step = options.get("first_step") or None
    return rtol, atol, max_step, int(options.get("nsteps", 100_000)), None if first_step is None else float(first_step)


def check_sparse_jacobian(module: object) -> None:
    """Refuse a model whose Jacobian is genuinely dense at a size no LU can afford."""
    n, nnz = int(module.N_STATES), int(module.JAC_NNZ)
    if n > DENSE_MAX_STATES and nnz > SPARSE_MAX_DENSITY * n * n:
        raise DyngenError(
            f"integrator 'sparse_bdf' factorises the Jacobian, and this model's is dense ({nnz} of its {n * n} "
            f"entries may be non-zero): for {n} states use 'dopri5' or 'dop853' (explicit)"
        )


def change_D(D: np.ndarray, order: int, factor: float) -> None:
    """Rescale the differences ``D[:order + 1]`` from step h to ``factor * h`` (scipy's BDF)."""
    R = _compute_R(order, factor)
    U = _compute_R(order, 1.0)
    D[: order + 1] = np.einsum("jk,jn->kn", R @ U, D[: order + 1])


def _compute_R(order: int, factor: float) -> np.ndarray:
    I = np.arange(1, order + 1)[:, None]
    J = np.arange(1, order + 1)
    M = np.zeros((order + 1, order + 1))
    M[1:, 1:] = (I - 1 - factor * J) / I
    M[0] = 1.0
    return np.cumprod(M, axis=0)


def _norm(x: np.ndarray) -> float:
    """The RMS norm.  (Products with vectors of the state's length are einsum's, not BLAS's:
    numpy's threaded BLAS took 14 ms for one such dot product at 32,768 states on the
    shared 2-core machine, as much as the solves.)"""
    return math.sqrt(float(np.einsum("i,i->", x, x)) / x.size)


class SparseBdfIntegrator:
    """BDF/NDF of orders 1-5 with a kept SuperLU factor of ``c I - J`` (the ``Integrator``
    protocol; ``restart()`` after a parameter change).

    It steps freely up to ``t_bound`` (the last output time) and gives the state at each
    ``advance(t_end)`` from the interpolating polynomial of the step that covers it.
    ``stats`` counts steps, rejected steps (error test), Newton failures, rhs and
    Jacobian evaluations, factorizations and solves.
    """

    def __init__(
        self, module: object, p: np.ndarray, t0: float, y0: np.ndarray, t_bound: float, options: dict,
        state_name: Callable[[int], str],
    ) -> None:  # fmt: skip
        self._rtol, self._atol, self._max_step, self._nsteps, self._first_step = sparse_bdf_settings(options)
        if getattr(module, "NO_JACOBIAN", None):
            check_without_jacobian("sparse_bdf", int(module.N_STATES), module.NO_JACOBIAN)  # (refuses)
        check_sparse_jacobian(module)
        n = int(module.N_STATES)
        self._module, self._p, self._n = module, p, n
        self._pattern = CscPattern(n, module.JAC_ROWS, module.JAC_COLS)
        self._jac = np.empty(int(module.JAC_NNZ))
        rank = int(getattr(module, "N_LOWRANK", 0))  # J = S + U V^T
        self._U = np.zeros((n, rank)) if rank else None
        self._V = np.zeros((n, rank)) if rank else None
        self._dy = np.empty(n)
        self._rows = np.asarray(module.JAC_ROWS, dtype=np.int64)
        self._jac_norm = np.inf  # ||J||_inf (a bound with a low-rank part) at the last Jacobian
        self._t_bound = float(t_bound)
        self._state_name = state_name
        self.stats = dict.fromkeys(
            ("steps", "rejected", "newton_failures", "rhs", "jacobians", "factorizations", "solves"), 0
        )
        self.t = float(t0)
        self.y = np.array(y0, dtype=float)
        self._start(self.t, self.y)

    # -- the Integrator protocol ------------------------------------------------
    def advance(self, t_end: float) -> None:
        """Step until a step covers ``t_end``; the state there from the interpolating polynomial."""
        start = self.t
        t_end = float(t_end)
        if t_end > self._t_bound:
            raise DyngenError(f"sparse_bdf: t_end = {t_end!r} is past t_bound = {self._t_bound!r}, where it stops")
        while self._t < t_end:
            reason = self._step()
            if reason is not None:
                raise SolverError(
                    f"sparse_bdf failed between t = {start!r} and t = {t_end!r} (reached t = {self._t!r}): "
                    f"{_REASONS[reason]}{non_finite_states(self._D[0], self._state_name)}"
                )
        self.y = self._D[0].copy() if self._t == t_end else self._interpolate(t_end)
        self.t = t_end
        if not np.all(np.isfinite(self.y)):
            raise SolverError(
                f"sparse_bdf: the state is not finite at t = {self.t!r}{non_finite_states(self.y, self._state_name)}"
            )

    def restart(self) -> None:
        """Start afresh (order 1, a new Jacobian) at the current output time: the parameters have changed."""
        if self.t < self._t_bound:
            self._start(self.t, self.y)

    # -- the method ---------------------------------------------------------------
    def _rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        self._module.rhs(t, y, self._p, self._dy)
        self.stats["rhs"] += 1
        return self._dy.copy()

    def _start(self, t0: float, y0: np.ndarray) -> None:
        f0 = self._rhs(t0, y0)
        h = self._first_step if self._first_step is not None else self._initial_step(t0, y0, f0)
        h = min(h, self._max_step, max(self._t_bound - t0, 0.0)) or min(self._max_step, 1e-6)
        self._t, self._h, self._order = t0, h, 1
        self._D = np.zeros((MAX_ORDER + 3, self._n))
        self._D[0] = y0
        self._D[1] = f0 * h
        self._equal_steps = 0
        self._solver: object | None = None  # the factor of c_lu I - J
        self._c_lu = 0.0
        self._jac_steps = 0  # steps since the Jacobian was evaluated
        self._jac_current = False  # the Jacobian was evaluated for the step being tried
        self._rate = 1.0  # Newton's convergence rate, estimated over the steps with this factor

    def _initial_step(self, t0: float, y0: np.ndarray, f0: np.ndarray) -> float:
        """Hairer, Norsett & Wanner's starting step for a first-order error estimate (as solve_ivp)."""
        span = self._t_bound - t0
        if span <= 0.0:
            return 1e-6
        scale = self._atol + self._rtol * np.abs(y0)
        d0, d1 = _norm(y0 / scale), _norm(f0 / scale)
        h0 = 1e-6 if d0 < 1e-5 or d1 < 1e-5 else 0.01 * d0 / d1
        h0 = min(h0, span)
        f1 = self._rhs(t0 + h0, y0 + h0 * f0)
        d2 = _norm((f1 - f0) / scale) / h0
        h1 = max(1e-6, h0 * 1e-3) if d1 <= 1e-15 and d2 <= 1e-15 else (0.01 / max(d1, d2)) ** 0.5
        return min(100.0 * h0, h1, span)

    def _refactor(self, t: float, y: np.ndarray, c: float, new_jacobian: bool) -> bool:
        """A new factor of ``c I - J`` (with a new Jacobian at (t, y) if asked); False if singular."""
        module = self._module
        if new_jacobian:
            module.jac_values(t, y, self._p, self._jac)
            if self._U is not None:
                module.jac_lowrank(t, y, self._p, self._U, self._V)
            self.stats["jacobians"] += 1
            self._jac_norm = float(np.bincount(self._rows, weights=np.abs(self._jac), minlength=self._n).max(initial=0.0))
            if self._U is not None:
                self._jac_norm += float(np.abs(self._U).max(axis=0) @ np.abs(self._V).sum(axis=0))
            self._jac_steps = 0
            self._jac_current = True
        self._solver = factor_shifted(self._pattern, self._jac, c, self._U, self._V)
        self._c_lu = c
        self._rate = 1.0
        self.stats["factorizations"] += 1
        return self._solver is not None

    def _nonstiff(self, c: float) -> bool:
        """Whether ``c I - J`` and the factor's ``c_lu I - J`` are both ``c I`` to NONSTIFF."""
        return self._jac_norm <= NONSTIFF * min(c, self._c_lu)

    def _newton(
        self, t_new: float, y_predict: np.ndarray, c: float, psi: np.ndarray, scale: np.ndarray, order: int
    ) -> tuple[bool, int, np.ndarray, np.ndarray]:
        """Solve ``y - h/alpha f(y) = y_predict - psi`` (in the difference d = y - y_predict)
        with the kept factor: ``(converged, iterations, y, d)``."""
        solver, c_lu = self._solver, self._c_lu
        ratio = c_lu / c  # the factor's gamma over this step's (gamma = 1/c)
        # CVODE's correction for an old gamma (1 when the factor is current or both matrices are c I to 10%)
        scaling = 1.0 if self._nonstiff(c) else 2.0 / (1.0 + ratio)
        bound = NEWTON_TOL / ERROR_CONST[order]
        y = y_predict.copy()
        d = np.zeros(self._n)
        rate = self._rate
        previous = 0.0
        for k in range(NEWTON_MAXITER):
            f = self._rhs(t_new, y)
            if not np.all(np.isfinite(f)):
                return False, k + 1, y, d
            # (c_lu I - J) dy = c_lu (f / c - psi - d): the Newton step with the old matrix
            b = ratio * f
            b -= c_lu * (psi + d)
            dy = solver.solve(b)  # type: ignore[attr-defined]
            self.stats["solves"] += 1
            if scaling != 1.0:
                dy *= scaling
            dy_norm = _norm(dy / scale)
            if k > 0:
                if dy_norm > 2.0 * previous or not math.isfinite(dy_norm):  # diverges
                    return False, k + 1, y, d
                rate = max(0.3 * rate, dy_norm / previous) if previous > 0.0 else rate
            y += dy
            d += dy
            if dy_norm * min(1.0, rate) <= bound or dy_norm == 0.0:
                self._rate = rate
                return True, k + 1, y, d
            previous = dy_norm
        return False, NEWTON_MAXITER, y, d

    def _step(self) -> str | None:
        """One accepted step (after rejected tries); None, or the reason it failed."""
        stats, D = self.stats, self._D
        t, order = self._t, self._order
        if stats["steps"] >= self._nsteps:
            return "nsteps"
        min_step = 10.0 * abs(np.nextafter(t, np.inf) - t)
        h = self._h
        if h > self._max_step:
            change_D(D, order, self._max_step / h)
            h, self._equal_steps = self._max_step, 0
        elif h < min_step:
            change_D(D, order, min_step / h)
            h, self._equal_steps = min_step, 0
        atol, rtol = self._atol, self._rtol
        while True:
            if h < min_step:
                return "small"
            t_new = t + h
            if t_new > self._t_bound:
                t_new = self._t_bound
                change_D(D, order, (t_new - t) / h)
                self._equal_steps = 0
            h = t_new - t
            y_predict = np.sum(D[: order + 1], axis=0)
            scale = atol + rtol * np.abs(y_predict)
            psi = np.einsum("k,kn->n", GAMMA[1 : order + 1], D[1 : order + 1]) / ALPHA[order]
            c = ALPHA[order] / h
            if (
                self._solver is None or self._jac_steps >= REFACTOR_STEPS
                or not (1.0 / REFACTOR_RATIO <= c / self._c_lu <= REFACTOR_RATIO or self._nonstiff(c))
            ):  # fmt: skip
                if not self._refactor(t, D[0], c, new_jacobian=not self._jac_current):
                    return "singular"
            while True:
                converged, iterations, y_new, d = self._newton(t_new, y_predict, c, psi, scale, order)
                if converged or (self._jac_current and self._c_lu == c):
                    break
                stats["newton_failures"] += 1  # with an old Jacobian or factor: both new, the same h
                if not self._refactor(t_new, y_predict, c, new_jacobian=not self._jac_current):
                    return "singular"
            if not converged:
                stats["newton_failures"] += 1
                h *= 0.5
                change_D(D, order, 0.5)
                self._equal_steps = 0
                continue
            safety = 0.9 * (2 * NEWTON_MAXITER + 1) / (2 * NEWTON_MAXITER + iterations)
            scale = atol + rtol * np.abs(y_new)
            error_norm = _norm(ERROR_CONST[order] * d / scale)
            if error_norm > 1.0 or not math.isfinite(error_norm):
                stats["rejected"] += 1
                factor = max(MIN_FACTOR, safety * error_norm ** (-1.0 / (order + 1))) if math.isfinite(error_norm) else 0.25
                h *= factor
                change_D(D, order, factor)
                self._equal_steps = 0
                continue
            break
        # accepted: D^{j+1} y_n = D^j y_n - D^j y_{n-1}, and d = D^{k+1} y_n
        stats["steps"] += 1
        self._jac_steps += 1
        self._jac_current = False
        self._t, self._h = t_new, h
        self._equal_steps += 1
        D[order + 2] = d - D[order + 1]
        D[order + 1] = d
        for i in reversed(range(order + 1)):
            D[i] += D[i + 1]
        if self._equal_steps < order + 1:
            return None
        # a new order and step size (scipy's BDF), but h grows by KEEP_GROWTH or more, or stays
        error_m = _norm(ERROR_CONST[order - 1] * D[order] / scale) if order > 1 else np.inf
        error_p = _norm(ERROR_CONST[order + 1] * D[order + 2] / scale) if order < MAX_ORDER else np.inf
        with np.errstate(divide="ignore"):
            factors = np.array([error_m, error_norm, error_p]) ** (-1.0 / np.arange(order, order + 3))
        new_order = order + int(np.argmax(factors)) - 1
        factor = min(MAX_FACTOR, safety * float(np.max(factors)))
        if factor < KEEP_GROWTH:
            factor = 1.0
        if new_order != order or factor != 1.0:
            self._order = new_order
            if factor != 1.0:
                change_D(D, new_order, factor)
                self._h = h * factor
            self._equal_steps = 0
        return None

    def _interpolate(self, t: float) -> np.ndarray:
        """The BDF polynomial of the last step at ``t`` (scipy's ``BdfDenseOutput``)."""
        order, h, D = self._order, self._h, self._D
        steps = np.arange(order)
        x = (t - (self._t - h * steps)) / (h * (1 + steps))
        return D[0] + np.einsum("k,kn->n", np.cumprod(x), D[1 : order + 1])
