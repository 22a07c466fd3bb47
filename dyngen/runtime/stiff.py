"""RODAS4 behind ``Integrator``: compiled with a dense LU, or with a sparse LU for large sparse models."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

from ..errors import DyngenError, SolverError
from .compiled import compiled_routine
from .specialize import add_time
from .integrators import SPARSE_MAX_DENSITY, check_dense_jacobian, lowrank_rank, non_finite_states

RODAS4_OPTIONS = ("rtol", "atol", "first_step", "max_step", "nsteps", "linear_solver")
LINEAR_SOLVERS = ("direct", "krylov")
# From this many states a sparse Jacobian (at most SPARSE_MAX_DENSITY of the entries)
# is factorised sparse (sparse_stiff.py): the dense n^3/3 LU of the compiled loop costs
# more than SuperLU plus the Python stage loop from about here (benchmarks/README.md).
SPARSE_RODAS4_MIN_STATES = 150
_REASONS = {
    -2: "more than nsteps steps were needed (pass a larger nsteps=...)",
    -3: "the step size became too small",
    -5: "the iteration matrix I/(h*gamma) - J is singular",
    -6: "the state became non-finite",
    -7: "a stage's linear solve (GMRES with linear_solver='krylov') did not converge even with a new factor",
    -12: "y, p, stats or a work array does not fit the model",
}


def rodas4_settings(options: dict) -> tuple[float, float, float, int, float]:
    """``(rtol, atol, max_step, nsteps, first_step)`` from the user's options."""
    unknown = sorted(set(options) - set(RODAS4_OPTIONS))
    if unknown:
        raise DyngenError(f"integrator 'rodas4' does not take {unknown}; it takes {list(RODAS4_OPTIONS)}")
    return (
        float(options.get("rtol", 1e-6)), float(options.get("atol", 1e-12)), float(options.get("max_step", 0.0)),
        int(options.get("nsteps", 100_000)), float(options.get("first_step") or 1e-6),
    )  # fmt: skip


def linear_solver_option(options: dict) -> str:
    """The ``linear_solver`` option of rodas4: 'direct' (a new LU per step, the default) or
    'krylov' (GMRES preconditioned by a kept LU; sparse path only)."""
    choice = options.get("linear_solver") or "direct"
    if choice not in LINEAR_SOLVERS:
        raise DyngenError(f"rodas4: linear_solver={choice!r} is not one of {list(LINEAR_SOLVERS)}")
    return choice


def check_rodas4_result(
    status: int, start: float, t_end: float, t: float, y: np.ndarray, state_name: Callable[[int], str]
) -> None:
    """Raise the SolverError of a rodas4 run that stopped with ``status`` != 1, or
    that ended with a non-finite state."""
    if status != 1:
        raise SolverError(
            f"rodas4 failed between t = {start!r} and t = {t_end!r} (reached t = {t!r}): "
            f"{_REASONS.get(status, f'status {status}')}{non_finite_states(y, state_name)}"
        )
    if not np.all(np.isfinite(y)):
        raise SolverError(f"rodas4: the state is not finite at t = {t!r}{non_finite_states(y, state_name)}")


def uses_sparse_lu(module: object) -> bool:
    """Whether rodas4 factorises this module's iteration matrix sparse."""
    n = int(module.N_STATES)
    return n >= SPARSE_RODAS4_MIN_STATES and int(module.JAC_NNZ) <= SPARSE_MAX_DENSITY * n * n


def rodas4_integrator(
    module: object, p: np.ndarray, t0: float, y0: np.ndarray, options: dict, state_name: Callable[[int], str],
    specialize: bool = True,
) -> "CompiledRosenbrockIntegrator":
    """RODAS4 for this model: the sparse LU for a large sparse Jacobian, else the
    compiled dense one (refused above DENSE_MAX_STATES states: the Jacobian is dense)."""
    rodas4_settings(options)  # the options first, whatever the model
    if uses_sparse_lu(module) or linear_solver_option(options) == "krylov":
        from .sparse_stiff import SparseRosenbrockIntegrator

        return SparseRosenbrockIntegrator(module, p, t0, y0, options, state_name)
    check_dense_jacobian("rodas4", int(module.N_STATES), int(module.JAC_NNZ), lowrank_rank(module))
    return CompiledRosenbrockIntegrator(module, p, t0, y0, options, state_name, specialize)


class CompiledRosenbrockIntegrator:
    """RODAS4 in machine code (``rodas4_advance``: ``compiled.compiled_routine``), using the exact Jacobian.

    The step size is carried from one output interval to the next; output times are
    reached exactly by shortening the last step of each interval.
    """

    def __init__(
        self, module: object, p: np.ndarray, t0: float, y0: np.ndarray, options: dict,
        state_name: Callable[[int], str], specialize: bool = True,
    ) -> None:  # fmt: skip
        self._rtol, self._atol, self._max_step, self._nsteps, self._h = rodas4_settings(options)
        n = int(module.N_STATES)
        self._module = module
        self._advance = compiled_routine(module, "rodas4_advance", jac=True, specialize=specialize)
        self._p = p
        self._work = np.zeros((5, n))
        self._k = np.zeros((6, n))
        self._lu = np.zeros((n, n))
        self._piv = np.zeros(n, dtype=np.int64)
        self.stats = np.zeros(4, dtype=np.int64)  # steps, rejected, rhs calls, jac calls
        self._state_name = state_name
        self.t = float(t0)
        self.y = np.array(y0, dtype=float)

    def advance(self, t_end: float) -> None:
        start = self.t
        begin = time.perf_counter()
        t, h, status = self._advance(
            self.t, self.y, t_end, self._p, self._h, self._rtol, self._atol, self._max_step,
            self._nsteps, self._work, self._k, self._lu, self._piv, self.stats,
        )  # fmt: skip
        add_time(self._module, time.perf_counter() - begin)
        self.t, self._h = float(t), float(h)
        check_rodas4_result(status, start, t_end, self.t, self.y, self._state_name)
