"""The compiled explicit integrators, behind ``Integrator``.

``dopri5_advance`` and ``dop853_advance`` (dyngen's shared ``compiled_methods``, or
a module's own: ``compiled_routine``): Hairer's DOPRI5 and DOP853 as scipy's
``ode("dopri5")`` / ``ode("dop853")`` run them, in machine code (see
templates/integrators.py.j2).  One ``advance`` is one scipy ``integrate()`` call:
the same first step, step-size control, failure codes and floating-point
operations, except that the error norm adds its squares in another (fixed) order,
so trajectories agree with scipy's to rounding.
``run_dopri5`` / ``run_dop853`` run dynode's whole observer loop at once;
``run_recorded`` calls them.
"""

from __future__ import annotations

import operator
import time
from dataclasses import dataclass
from functools import lru_cache, partial
from types import MappingProxyType
from typing import Callable, Mapping, NamedTuple

import numpy as np

from ..errors import DyngenError, SolverError
from .integrators import non_finite_states
from .specialize import add_time, decision_stands, own_decision, own_integrators

EXPLICIT_METHODS = ("dopri5", "dop853")
# The keyword arguments scipy's ode takes for these methods ("method" and
# "verbosity" are accepted and ignored, as scipy ignores them).
EXPLICIT_OPTIONS = (
    "rtol", "atol", "nsteps", "max_step", "first_step", "safety", "ifactor", "dfactor", "beta",
    "method", "verbosity",
)  # fmt: skip

# The status codes of the compiled routines: scipy's messages where scipy has one.
STATUS_SUCCESS = 1
STATUS_NOT_FINITE = -6  # the run_* drivers only: the generated INTEGRATION_NOT_FINITE
REASONS = {
    1: "computation successful",
    -2: "larger nsteps is needed",
    -3: "step size becomes too small",
    -4: "problem is probably stiff (interrupted)",
    -6: "the state is not finite",
    -11: "input is not consistent (nsteps must not be negative)",
    -12: "input is not consistent (y, p, work, stats or a sample array does not fit the model)",
    -15: "input is not consistent (safety must lie between 1e-4 and 1)",
    -16: "input is not consistent (beta must not exceed 0.2)",
}


@dataclass(frozen=True)
class ExplicitSettings:
    """scipy's ode options for dopri5/dop853, in the order the compiled routines take them."""

    rtol: float
    atol: float
    first_step: float
    max_step: float
    safety: float
    ifactor: float
    dfactor: float
    beta: float
    nsteps: int

    def arguments(self) -> tuple:
        return (
            self.rtol, self.atol, self.first_step, self.max_step, self.safety, self.ifactor,
            self.dfactor, self.beta, self.nsteps,
        )  # fmt: skip


# scipy's defaults (scipy.integrate._ode.dopri5 / dop853).
_DEFAULTS = {
    "dopri5": dict(rtol=1e-6, atol=1e-12, nsteps=500, max_step=0.0, first_step=0.0, safety=0.9, ifactor=10.0, dfactor=0.2, beta=0.0),
    "dop853": dict(rtol=1e-6, atol=1e-12, nsteps=500, max_step=0.0, first_step=0.0, safety=0.9, ifactor=6.0, dfactor=0.3, beta=0.0),
}  # fmt: skip


def explicit_settings(method: str, options: dict) -> ExplicitSettings:
    """scipy's ``set_integrator(method, **options)`` for dopri5/dop853, checked
    (remembered for the last few sets of options: simulate() asks on every call)."""
    try:
        # with the types: 500 and 500.0 are equal keys, but nsteps=500.0 is refused
        return _remembered_settings(method, tuple((k, type(v), v) for k, v in sorted(options.items())))
    except TypeError:  # an unhashable option value: checked below, and refused
        return _explicit_settings(method, options)


def _settings_arguments(method: str, options: Mapping) -> tuple:
    """``explicit_settings(method, options).arguments()``; read-only options (simulate()'s
    stepping path keeps its own) are known by identity, the rest by ``explicit_settings``'s memory."""
    if type(options) is MappingProxyType:
        last = _LAST_ARGUMENTS[0]
        if last is not None and last[0] is options and last[1] == method:
            return last[2]
        known = explicit_settings(method, options).arguments()
        _LAST_ARGUMENTS[0] = (options, method, known)
        return known
    return explicit_settings(method, options).arguments()


_LAST_ARGUMENTS: list = [None]


@lru_cache(maxsize=64)
def _remembered_settings(method: str, options: tuple) -> ExplicitSettings:
    return _explicit_settings(method, {k: v for k, _, v in options})


def _explicit_settings(method: str, options: dict) -> ExplicitSettings:
    if method not in EXPLICIT_METHODS:
        raise DyngenError(f"no compiled explicit integrator {method!r}; choose one of {', '.join(EXPLICIT_METHODS)}")
    unknown = sorted(set(options) - set(EXPLICIT_OPTIONS))
    if unknown:
        raise DyngenError(
            f"integrator {method!r} does not take {', '.join(map(repr, unknown))}; "
            f"it takes {', '.join(EXPLICIT_OPTIONS)}"
        )
    values = {**_DEFAULTS[method], **{k: v for k, v in options.items() if k not in ("method", "verbosity")}}
    converted: dict = {}
    for name, value in values.items():
        try:
            if name == "nsteps":
                converted[name] = operator.index(value)
            elif np.ndim(value) != 0:
                raise TypeError("not a scalar")
            else:
                converted[name] = float(value)
        except (TypeError, ValueError):
            kind = "an integer" if name == "nsteps" else "a real number (one value for all states)"
            raise DyngenError(f"integrator {method!r}: {name} must be {kind}, not {value!r}") from None
    return ExplicitSettings(**converted)


def compiled_routine(
    module: object, name: str, observe: bool = False, jac: bool = False, specialize: bool = True, events: bool = False
) -> Callable:
    """``name`` (``dopri5_advance``, ``run_dop853``, ``rodas4_advance``...) for this module,
    called with the arguments of the standalone module's routine: the module's own
    (``dyngen build --standalone``, or ``specialize``: given to a small model that has
    run long enough, see ``specialize.py``), else dyngen's shared one with the
    addresses of the module's compiled functions in front (``observe``/``jac``: those too)."""
    namespace = module.__dict__
    if specialize:
        own_integrators(module)
    own = namespace.get(name)
    if own is not None:
        return own
    routines = namespace.get(_SHARED_ROUTINES)
    if routines is None:
        routines = namespace.setdefault(_SHARED_ROUTINES, {})
    key = (name, observe, jac, events)
    routine = routines.get(key)
    if routine is None:
        from .first_class import model_functions, shared_routine

        routine = partial(shared_routine(name), model_functions(module).addresses(observe=observe, jac=jac, events=events))
        routines[key] = routine  # the module keeps its dispatchers, so the addresses, alive
    return routine


_SHARED_ROUTINES = "_dyngen_shared_routines"


def work_rows(method: str) -> int:
    """Rows of the work array ``<method>_advance`` takes."""
    from . import compiled_methods

    return int(getattr(compiled_methods, f"{method.upper()}_WORK_ROWS"))


def failure(
    method: str, status: int, start: float, t_end: float, reached: float, y: np.ndarray,
    state_name: Callable[[int], str],
) -> SolverError:  # fmt: skip
    """The SolverError for a failed interval, worded as ScipyOdeIntegrator words it."""
    if status == STATUS_NOT_FINITE:
        return SolverError(f"{method}: the state is not finite at t = {reached!r}{non_finite_states(y, state_name)}")
    reason = REASONS.get(status, f"return code {status}")
    return SolverError(
        f"{method} failed between t = {start!r} and t = {t_end!r} (reached t = {reached!r}): "
        f"{reason}{non_finite_states(y, state_name)}"
    )


class CompiledExplicitIntegrator:
    """scipy's ``ode("dopri5"/"dop853")`` in machine code (``module.<method>_advance``).

    Takes scipy's option names and defaults; every ``advance`` is one fresh call of
    the routine, as every scipy ``integrate()`` is.  ``stats`` counts right-hand-side
    evaluations, steps, accepted and rejected steps over all calls.
    """

    def __init__(
        self, module: object, p: np.ndarray, t0: float, y0: np.ndarray, method: str, options: dict,
        state_name: Callable[[int], str], specialize: bool = True,
    ) -> None:  # fmt: skip
        self._settings = explicit_settings(method, options).arguments()
        self._module = module
        self._advance = compiled_routine(module, f"{method}_advance", specialize=specialize)
        self._method = method
        self._p = np.ascontiguousarray(p, dtype=np.float64)
        self._state_name = state_name
        self.t = float(t0)
        self.y = np.array(y0, dtype=np.float64)
        rows = work_rows(method)
        self._work = np.empty((rows, self.y.shape[0]))
        self.stats = np.zeros(4, dtype=np.int64)  # rhs evaluations, steps, accepted, rejected

    def advance(self, t_end: float) -> None:
        start, t_end = self.t, float(t_end)
        begin = time.perf_counter()
        t, status = self._advance(self.t, self.y, t_end, self._p, *self._settings, self._work, self.stats)
        add_time(self._module, time.perf_counter() - begin)
        self.t = float(t)
        if status != STATUS_SUCCESS:
            raise failure(self._method, int(status), start, t_end, self.t, self.y, self._state_name)
        if not np.all(np.isfinite(self.y)):
            raise failure(self._method, STATUS_NOT_FINITE, start, t_end, self.t, self.y, self._state_name)


class RecordedRun(NamedTuple):
    """What ``run_recorded`` returns; the first five fields are the samples and the outcome."""

    times: np.ndarray  # (k,) the sample times
    Y: np.ndarray | None  # (k, N_STATES) the states at those times, or None when not asked for
    OUT: np.ndarray | None  # (k, N_OBSERVED) observe's signals, or None when not asked for
    status: int  # 1, or the failure code (REASONS)
    t_reached: float  # where the integration stopped
    y: np.ndarray  # the state at t_reached
    stats: np.ndarray  # rhs evaluations, steps, accepted and rejected steps

    def error(self, method: str, t0: float, observer_dt: float, state_name: Callable[[int], str]) -> SolverError | None:
        """The SolverError a failed run stands for (as ``advance`` would raise it), else None."""
        if self.status == STATUS_SUCCESS:
            return None
        start = float(self.times[-1]) if len(self.times) else float(t0)
        return failure(method, self.status, start, start + observer_dt, self.t_reached, self.y, state_name)


@lru_cache(maxsize=64)
def _no_rows(width: int) -> np.ndarray:
    """A (0, width) array: where a run keeps no samples (never written, so shared)."""
    return np.empty((0, width))


def run_recorded(
    module: object, method: str, t0: float, y0: np.ndarray, p: np.ndarray, duration: float,
    observer_dt: float, options: dict, record_initial: bool, with_observed: bool, with_states: bool = True,
    specialize: bool = True,
) -> RecordedRun:  # fmt: skip
    """dynode's whole simulate loop in one compiled call.

    ``options`` are the ones scipy's ``set_integrator`` would get (dynode's
    adjustments included: ``first_step=observer_dt``, ``atol=inf`` for fixed
    steps).  Integrates ``int(duration / observer_dt)`` intervals of ``observer_dt``
    from ``t0``, recording the initial sample when ``record_initial``; stops at the
    first failure (the samples before it are returned).  The sample times are
    always kept; the states only ``with_states`` (a run without observers needs
    none: at 400 states, 200 samples are 640 kB written), observe's signals only
    ``with_observed``.
    """
    settings = _settings_arguments(method, options)
    run = compiled_routine(module, f"run_{method}", observe=with_observed, specialize=specialize)
    n_states, n_observed = module.N_STATES, module.N_OBSERVED
    n_intervals = int(duration / observer_dt)
    n_samples = n_intervals + (1 if record_initial else 0)
    y = np.array(y0, dtype=np.float64)
    p = np.ascontiguousarray(p, dtype=np.float64)
    times = np.empty(n_samples)
    Y = np.empty((n_samples, n_states)) if with_states else _no_rows(n_states)
    OUT = np.empty((n_samples, n_observed)) if with_observed else _no_rows(n_observed)
    stats = np.zeros(4, dtype=np.int64)
    begin = time.perf_counter()
    k, status, t = run(
        float(t0), y, p, float(observer_dt), n_intervals, *settings, bool(record_initial), bool(with_states),
        bool(with_observed), times, Y, OUT, stats,
    )  # fmt: skip
    add_time(module, time.perf_counter() - begin)
    k = int(k)
    return RecordedRun(
        times[:k], Y[:k] if with_states else None, OUT[:k] if with_observed else None, int(status), float(t), y, stats
    )


class PreparedRun:
    """``run_recorded`` without samples (a run without observers), its arguments made
    once: what ``simulate()`` repeats when Python steps a model
    (``for k in range(n): controller(); sim.simulate(dt, dt)``).

    ``run(t0, y, p)`` integrates ``y`` in place and returns (samples, status, time
    reached).  The routine is the one ``compiled_routine`` gives now: chosen again
    when that may change (a small model given its own integrators, ``specialize.py``).
    """

    __slots__ = ("module", "method", "observer_dt", "times", "stats", "_arguments", "_from_zero", "_namespace", "_own", "_specialize", "_routine")

    def __init__(
        self, module: object, method: str, duration: float, observer_dt: float, options: Mapping, specialize: bool
    ) -> None:  # fmt: skip
        self.module, self.method, self._specialize = module, method, specialize
        self._namespace = module.__dict__
        self.observer_dt = float(observer_dt)
        n_intervals = int(duration / observer_dt)
        n_states = module.N_STATES
        self.times = np.empty(n_intervals + 1)  # with the initial sample (a run from t = 0)
        self.stats = np.zeros(4, dtype=np.int64)  # added up over the runs (read by nobody)
        # the routine's arguments after (t0, y, p), made once: record_initial False, and True
        # (run_recorded's start == 0: a run from t = 0 stores its start as the first sample)
        head = (self.observer_dt, n_intervals, *_settings_arguments(method, options))
        tail = (False, False, self.times, _no_rows(n_states), _no_rows(module.N_OBSERVED), self.stats)
        self._arguments, self._from_zero = (*head, False, *tail), (*head, True, *tail)
        self._choose()

    def _choose(self) -> None:
        self._routine = compiled_routine(self.module, f"run_{self.method}", observe=False, specialize=self._specialize)
        self._own = own_decision(self._namespace)

    def run(self, t0: float, y: np.ndarray, p: np.ndarray) -> tuple[int, int, float]:
        if not decision_stands(self._namespace, self._own, self._specialize):
            self._choose()
        begin = time.perf_counter()
        k, status, t = self._routine(t0, y, p, *(self._arguments if t0 != 0 else self._from_zero))
        add_time(self.module, time.perf_counter() - begin)
        return k, status, t

    def error(
        self, k: int, status: int, t0: float, reached: float, y: np.ndarray, state_name: Callable[[int], str]
    ) -> SolverError:  # fmt: skip
        """The SolverError of a failed ``run`` of ``y`` (as ``RecordedRun.error`` words it)."""
        failed = RecordedRun(self.times[:k], None, None, int(status), float(reached), y, self.stats)
        return failed.error(self.method, t0, self.observer_dt, state_name)
