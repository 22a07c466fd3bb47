"""The compiled RODAS4 integrator of the generated module, behind ``Integrator``."""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import DyngenError, SolverError
from .integrators import non_finite_states

RODAS4_OPTIONS = ("rtol", "atol", "first_step", "max_step", "nsteps")
_REASONS = {
    -2: "more than nsteps steps were needed (pass a larger nsteps=...)",
    -3: "the step size became too small",
    -5: "the iteration matrix I/(h*gamma) - J is singular",
    -6: "the state became non-finite",
    -12: "y, p, stats or a work array does not fit the model",
}


class CompiledRosenbrockIntegrator:
    """RODAS4 in machine code (``module.rodas4_advance``), using the exact Jacobian.

    The step size is carried from one output interval to the next; output times are
    reached exactly by shortening the last step of each interval.
    """

    def __init__(
        self, module: object, p: np.ndarray, t0: float, y0: np.ndarray, options: dict,
        state_name: Callable[[int], str],
    ) -> None:  # fmt: skip
        unknown = sorted(set(options) - set(RODAS4_OPTIONS))
        if unknown:
            raise DyngenError(f"integrator 'rodas4' does not take {unknown}; it takes {list(RODAS4_OPTIONS)}")
        n = int(module.N_STATES)
        self._advance = module.rodas4_advance
        self._p = p
        self._rtol = float(options.get("rtol", 1e-6))
        self._atol = float(options.get("atol", 1e-12))
        self._max_step = float(options.get("max_step", 0.0))
        self._nsteps = int(options.get("nsteps", 100_000))
        self._h = float(options.get("first_step") or 1e-6)
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
        t, h, status = self._advance(
            self.t, self.y, t_end, self._p, self._h, self._rtol, self._atol, self._max_step,
            self._nsteps, self._work, self._k, self._lu, self._piv, self.stats,
        )  # fmt: skip
        self.t, self._h = float(t), float(h)
        if status != 1:
            raise SolverError(
                f"rodas4 failed between t = {start!r} and t = {t_end!r} (reached t = {self.t!r}): "
                f"{_REASONS.get(status, f'status {status}')}{non_finite_states(self.y, self._state_name)}"
            )
        if not np.all(np.isfinite(self.y)):
            raise SolverError(
                f"rodas4: the state is not finite at t = {self.t!r}{non_finite_states(self.y, self._state_name)}"
            )
