"""Integrators behind one small interface (scipy's ``ode`` for now).

A later backend (compiled loops inside the generated module) implements the same
``Integrator`` protocol, so the simulation loop does not change.
"""

from __future__ import annotations

import warnings
from typing import Callable, Protocol

import numpy as np

from ..errors import DyngenError, JacobianWarning, SolverError, external_stacklevel

RhsFunction = Callable[[float, np.ndarray], np.ndarray]
JacFunction = Callable[[float, np.ndarray], np.ndarray]

SCIPY_ODE_METHODS = ("dopri5", "dop853", "vode", "lsoda")
SOLVE_IVP_METHODS = ("BDF", "Radau", "LSODA", "RK45", "RK23", "DOP853")
# Above this size a Jacobian this sparse is handed to solve_ivp as a CSC matrix.
SPARSE_MIN_STATES = 100
SPARSE_MAX_DENSITY = 0.1
DENSE_MAX_STATES = 10_000  # a dense Jacobian of more states takes over 800 MB (and an O(n^3) LU)

# scipy 1.17.0 replaced the f2py wrapper of vode by a C translation that fails on stiff
# models: its Jacobian callback memcpy's the C-ordered array into DVODE's column-major
# matrix (vode reads the transpose: scipy issue 24933, PR 24934, released in 1.18.0),
# and even given the transpose, or no Jacobian at all (its own finite differences), its
# BDF iteration fails where 1.16 converges: on y' = A y with A = [[-1, 0], [1e3, -1e3]]
# to t = 5 at rtol 1e-8, 6,021 steps, 359 convergence failures and 764 Jacobians
# (finite differences: 9,072 steps), where scipy 1.16.3 takes 301 steps, no failure
# and 6 Jacobians.  Handing it J.T cannot compensate.  Excluding 1.17 is no way out
# either: dyngen's compiled dopri5/dop853 reproduce 1.17's translation of those, which
# differs from 1.16's Fortran (other first steps and failure codes).  So vode gets the
# documented Jacobian, and a vode failure on these releases says why and what to use.
# lsoda's wrapper copies with strides and is not affected.
VODE_BROKEN_RELEASES = ((1, 17), (1, 18))  # [first affected, first fixed)


def scipy_release(version: str) -> tuple[int, int]:
    """``(major, minor)`` of a scipy version string ("1.17.1", "1.18.0rc1", "1.18.0.dev0+...")."""
    major, minor = version.split(".")[:2]
    return int(major), int("".join(c for c in minor if c.isdigit()) or 0)


def vode_is_broken(version: str | None = None) -> bool:
    """Whether this scipy's ``ode(...).set_integrator("vode")`` is the broken 1.17 one."""
    if version is None:  # scipy is imported by the methods that run in it, not by import dyngen
        import scipy

        version = scipy.__version__
    first_affected, first_fixed = VODE_BROKEN_RELEASES
    return first_affected <= scipy_release(version) < first_fixed


def vode_hint(method: str) -> str:
    """What a vode failure on the broken scipy releases should add (else "")."""
    if method != "vode" or not vode_is_broken():
        return ""
    import scipy

    return (
        f"; scipy {scipy.__version__}'s vode fails on stiff models whatever Jacobian it is given (scipy issue "
        "24933 and more, see VODE_BROKEN_RELEASES in dyngen/runtime/integrators.py): use 'lsoda', 'rodas4', "
        "'BDF' or 'Radau', or scipy 1.16"
    )


def non_finite_states(y: np.ndarray, state_name: Callable[[int], str]) -> str:
    """``"; non-finite state(s): a.states.x, ..."`` for the message of a failure, or ""."""
    bad = np.flatnonzero(~np.isfinite(y))
    if bad.size == 0:
        return ""
    names = ", ".join(state_name(int(i)) for i in bad[:5])
    return f"; non-finite state(s): {names}" + (f" and {bad.size - 5} more" if bad.size > 5 else "")


class Integrator(Protocol):
    t: float
    y: np.ndarray

    def advance(self, t_end: float) -> None:
        """Integrate to ``t_end``; raise SolverError if that fails."""


class ScipyOdeIntegrator:
    """``scipy.integrate.ode`` set up exactly as dynode 0.4 sets it up."""

    def __init__(
        self,
        rhs: RhsFunction,
        jac: JacFunction | None,
        t0: float,
        y0: np.ndarray,
        method: str,
        options: dict,
        state_name: Callable[[int], str],
        forced_first_step: float | None = None,
    ) -> None:
        """``forced_first_step``: the observer_dt that dynode's rule made the first step
        (None when the user chose it), named in the error if the first interval fails."""
        if method not in SCIPY_ODE_METHODS:
            raise DyngenError(
                f"unknown integrator {method!r}; choose one of {', '.join(SCIPY_ODE_METHODS)}"
            )
        self._method = method
        self._state_name = state_name
        self._forced_first_step = forced_first_step
        self._first_interval = True
        from scipy.integrate import ode  # imported here: the compiled methods need no scipy

        self._solver = ode(rhs, jac)
        self._solver.set_initial_value(y0, t=t0)
        try:
            self._solver.set_integrator(method, **options)
        except TypeError as exc:
            raise DyngenError(f"integrator {method!r} does not take these options: {exc}") from None

    @property
    def t(self) -> float:
        return float(self._solver.t)

    @property
    def y(self) -> np.ndarray:
        return self._solver.y

    def advance(self, t_end: float) -> None:
        start = self.t
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # scipy's own failure warning
            self._solver.integrate(t_end)
        if not self._solver.successful():
            code = self._solver.get_return_code()
            reason = getattr(self._solver._integrator, "messages", {}).get(code, f"return code {code}")
            raise SolverError(
                f"{self._method} failed between t = {start!r} and t = {t_end!r} (reached t = {self.t!r}): "
                f"{reason}{non_finite_states(self._solver.y, self._state_name)}{self._first_step_hint()}"
                f"{vode_hint(self._method)}"
            )
        if not np.all(np.isfinite(self._solver.y)):
            raise SolverError(
                f"{self._method}: the state is not finite at t = {self.t!r}"
                f"{non_finite_states(self._solver.y, self._state_name)}"
            )
        self._first_interval = False

    def _first_step_hint(self) -> str:
        """Why lsoda may fail at once: dynode makes its first step observer_dt."""
        if self._method != "lsoda" or not self._first_interval or self._forced_first_step is None:
            return ""
        dt = self._forced_first_step
        return (
            f"; lsoda started with a first step of observer_dt = {dt!r} (dynode forces first_step = observer_dt), "
            "which is far too large for a stiff model: pass your own, e.g. "
            f"simulate(t, {dt!r}, integrator='lsoda', first_step=0.0) (0.0: lsoda chooses it), or use "
            "integrator='rodas4', 'BDF' or 'Radau'"
        )


class SolveIvpIntegrator:
    """One ``scipy.integrate`` OdeSolver (BDF, Radau, LSODA, ...) over the whole run.

    Unlike scipy's ``ode`` it is not restarted at every observer interval: the
    solver steps freely and the state at each output time comes from its dense
    output, so multistep methods keep their order and step size.
    """

    def __init__(
        self,
        rhs: RhsFunction,
        jac: Callable[[float, np.ndarray], object] | None,
        t0: float,
        y0: np.ndarray,
        t_bound: float,
        method: str,
        options: dict,
        state_name: Callable[[int], str],
    ) -> None:
        from scipy.integrate import BDF, DOP853, LSODA, RK23, RK45, Radau
        from scipy.sparse import issparse

        solvers = {"BDF": BDF, "Radau": Radau, "LSODA": LSODA, "RK45": RK45, "RK23": RK23, "DOP853": DOP853}
        self._method = method
        self._state_name = state_name
        if method in ("BDF", "Radau", "LSODA") and jac is not None:
            options = {"jac": jac, **options}

        def start(t: float, y: np.ndarray) -> object:
            solver = solvers[method](rhs, t, np.array(y, dtype=float), t_bound, **options)
            if method in ("BDF", "Radau") and issparse(getattr(solver, "J", None)):
                use_sparse_lu(solver)
            return solver

        self._start = start
        try:
            self._solver = self._start(t0, y0)
        except TypeError as exc:
            raise DyngenError(f"integrator {method!r} does not take these options: {exc}") from None
        self.t = float(t0)
        self.y = np.array(y0, dtype=float)

    def restart(self) -> None:
        """Start afresh at the current output time (the parameters have changed)."""
        if self.t < self._solver.t_bound:
            self._solver = self._start(self.t, self.y)

    def advance(self, t_end: float) -> None:
        solver = self._solver
        while solver.t < t_end and solver.status == "running":
            try:
                message = solver.step()
            except (ValueError, ArithmeticError, np.linalg.LinAlgError) as exc:  # e.g. NaN in the Jacobian
                self._fail(t_end, f"{type(exc).__name__}: {exc}")
            if solver.status == "failed":
                self._fail(t_end, message or "step failed")
        if solver.t < t_end:
            self._fail(t_end, "the solver stopped before the end time")
        self.y = solver.y.copy() if solver.t == t_end else solver.dense_output()(t_end)
        self.t = float(t_end)
        if not np.all(np.isfinite(self.y)):
            raise SolverError(
                f"{self._method}: the state is not finite at t = {self.t!r}{non_finite_states(self.y, self._state_name)}"
            )

    def _fail(self, t_end: float, message: str) -> None:
        raise SolverError(
            f"{self._method} failed before t = {float(t_end)!r} (reached t = {float(self._solver.t)!r}): "
            f"{message}{non_finite_states(self._solver.y, self._state_name)}"
        )


def use_sparse_lu(solver: object) -> None:
    """Make a solve_ivp ``BDF``/``Radau`` with a sparse Jacobian factorise its iteration
    matrices as dyngen's rodas4 does (``factor_iteration_matrix``: a minimum-degree
    ordering; scipy's default COLAMD fills in twice as much).  ``solver.lu`` is the
    function both call for every factorisation (scipy 1.4 and later)."""
    from .sparse_stiff import factor_iteration_matrix

    def lu(matrix: object) -> object:
        solver.nlu += 1
        return factor_iteration_matrix(matrix.tocsc())

    solver.lu = lu


def check_dense_jacobian(method: str, n: int, nnz: int | None = None, lowrank: int = 0) -> None:
    """Refuse a method that factors a dense Jacobian when ``n`` states make it unaffordable.

    ``nnz`` (the Jacobian's entries) tells a sparse Jacobian, which other methods can
    use, from a genuinely dense one, which only explicit methods can afford.  ``lowrank``
    (the module's ``N_LOWRANK``) is the rank of a low-rank part ``U Vᵀ`` next to the
    sparse ``S`` (sums over whole arrays): only rodas4's sparse LU with Woodbury uses it.
    """
    if n <= DENSE_MAX_STATES:
        return
    cost = f"the dense {n} x {n} Jacobian ({n * n * 8 / 1e9:.1f} GB and an O(n^3) factorization per step)"
    if nnz is not None and nnz > SPARSE_MAX_DENSITY * n * n:
        raise DyngenError(
            f"integrator {method!r} would work with {cost}, and this model's Jacobian is dense ({nnz} of its "
            f"{n * n} entries may be non-zero): for {n} states use 'dopri5' or 'dop853' (explicit)"
        )
    if lowrank:
        sparse_part = f"{nnz} entries" if nnz is not None else "sparse"
        raise DyngenError(
            f"integrator {method!r} works with {cost}; this model's Jacobian is a sparse part ({sparse_part}) plus "
            f"a rank-{lowrank} term U Vᵀ (its derivatives read reductions over whole arrays): for {n} states use "
            f"'rodas4' without events (a sparse LU of the sparse part, the rank-{lowrank} term by the Woodbury "
            "identity), 'sparse_bdf' (the same linear algebra, its LU kept across steps) or 'dopri5'/'dop853' "
            "(explicit); solve_ivp's 'BDF'/'Radau' would need it dense too"
        )  # fmt: skip
    raise DyngenError(
        f"integrator {method!r} works with {cost}; for {n} states use 'rodas4', or solve_ivp's 'BDF' or "
        "'Radau', which use the sparse Jacobian, 'sparse_bdf' (a BDF that keeps its sparse LU across steps: "
        "the fastest on large stiff grids), or 'dopri5'/'dop853' (explicit)"
    )


def lowrank_rank(module: object) -> int:
    """The rank of the module's low-rank Jacobian part (``N_LOWRANK``; 0 in modules without one)."""
    return int(getattr(module, "N_LOWRANK", 0))


# scipy's methods that approximate a Jacobian they are not given (vode: with with_jacobian=True)
FINITE_DIFFERENCE_METHODS = ("BDF", "Radau", "LSODA", "lsoda", "vode")


def check_without_jacobian(method: str, n: int, reason: str) -> None:
    """For a model without an analytic Jacobian (``reason``: its ``NO_JACOBIAN``): refuse a
    method that needs one (the compiled ``rodas4``, ``sparse_bdf``), or a finite-difference
    matrix of more than ``DENSE_MAX_STATES`` states; otherwise say (``JacobianWarning``) that
    scipy approximates it, as it does for every dynode model, and run."""
    if method not in FINITE_DIFFERENCE_METHODS:
        other = "'BDF', 'Radau' or 'LSODA' (scipy's finite-difference Jacobian) or " if n <= DENSE_MAX_STATES else ""
        raise DyngenError(
            f"integrator {method!r} needs the model's Jacobian, which this model does not have: {reason}; "
            f"use {other}'dopri5' or 'dop853'"
        )
    if n > DENSE_MAX_STATES:
        raise DyngenError(
            f"integrator {method!r} would approximate this model's Jacobian by finite differences as a dense "
            f"{n} x {n} matrix ({n * n * 8 / 1e9:.1f} GB, {n} rhs calls each time); the model has no analytic "
            f"Jacobian: {reason}; for {n} states use 'dopri5' or 'dop853' (explicit)"
        )
    how = (
        "'vode' runs without this model's Jacobian, as under dynode (which gives it none): functional iteration "
        "with method='adams' (the default), finite differences of rhs with with_jacobian=True (method='bdf', for "
        "a stiff model)"
        if method == "vode"
        else f"{method!r} approximates this model's Jacobian by finite differences of rhs ({n} rhs calls per "
        f"Jacobian, a dense {n} x {n} matrix), as scipy does for every dynode model"
    )
    warnings.warn(
        f"{how}; dyngen derives no analytic Jacobian for it: {reason}", JacobianWarning,
        stacklevel=external_stacklevel(),
    )


def jacobian_callable(
    module: object, p: np.ndarray, sparse: bool = True
) -> Callable[[float, np.ndarray], object]:
    """The generated Jacobian as scipy wants it: dense, or CSC for large sparse models
    (when the method takes one: ``sparse``)."""
    n = int(module.N_STATES)
    if lowrank_rank(module):  # J = S + U V^T is dense: scipy gets it dense, if affordable
        if n > DENSE_MAX_STATES:
            raise DyngenError(
                f"this model's derivatives read sums over whole arrays, so its Jacobian is dense ({n} x {n}: "
                f"a sparse part plus a rank-{module.N_LOWRANK} term); scipy's solvers take it only as a matrix, which "
                f"is unaffordable above {DENSE_MAX_STATES} states: use 'rodas4' or 'sparse_bdf' (sparse LU with the "
                "low-rank term, Woodbury) or 'dopri5'/'dop853' (explicit)"
            )  # fmt: skip
        sparse = False
    if sparse and n >= SPARSE_MIN_STATES and module.JAC_NNZ <= SPARSE_MAX_DENSITY * n * n:
        from scipy.sparse import csc_matrix

        rows, cols = module.JAC_ROWS, module.JAC_COLS
        values = np.empty(module.JAC_NNZ)

        def sparse(t: float, y: np.ndarray) -> object:
            module.jac_values(t, y, p, values)
            return csc_matrix((values.copy(), (rows, cols)), shape=(n, n))

        return sparse

    def dense(t: float, y: np.ndarray) -> np.ndarray:
        J = np.empty((n, n))
        module.jac(t, y, p, J)
        return J

    return dense


def forces_first_step(fixed_step: bool, options: dict) -> bool:
    """Whether the run starts with dynode's ``first_step = observer_dt``: always with
    ``fixed_step`` (it is the step), otherwise unless the user gave ``first_step``."""
    return fixed_step or "first_step" not in options


def dynode_options(observer_dt: float, fixed_step: bool, options: dict) -> dict:
    """dynode's adjustments: first step = observer_dt; fixed steps via atol = inf.

    Unlike dynode, which overwrites it, a ``first_step`` the user gives is kept (without
    ``fixed_step``): the way out when ``observer_dt`` is too large a first step (lsoda
    on a stiff model).
    """
    options = dict(options)
    if forces_first_step(fixed_step, options):
        options["first_step"] = observer_dt
    if fixed_step:
        options["atol"] = np.inf
    return options


def run_observed(
    solver: Integrator,
    t0: float,
    duration: float,
    observer_dt: float,
    notify: Callable[[float, np.ndarray, bool], bool],
) -> float:
    """dynode's loop: notify at t0 (only when t0 == 0), then every ``observer_dt``.

    ``notify(t, y, may_stop)`` returning True stops the run; at t0 every observer is
    called and what they return is ignored (``may_stop`` is False), as in dynode.
    Returns the time reached.
    """
    if t0 == 0:
        notify(float(t0), solver.y, False)
    for _ in range(int(duration / observer_dt)):
        solver.advance(solver.t + observer_dt)
        if notify(solver.t, solver.y, True):
            break
    return solver.t
