"""Running a model with events (``System.add_event``): the integrators that locate
them, the event log, and dynode's observer loop around them.

``dopri5``, ``dop853`` and ``rodas4`` locate events in compiled code (the
``*_advance_events`` routines, see "Events" in templates/integrators.py.j2);
``dopri5`` and ``dop853`` step continuously over the whole run (the samples come from
the steps' continuous extensions, only an action restarts them), as one compiled call
when every observer is a Recorder, else one per observer interval; scipy's ``solve_ivp`` methods locate them on
the solver's dense output with the same bracketing method, calling the module's
compiled ``events`` and ``apply_event``.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, NamedTuple

import numpy as np

from ..errors import DyngenError, SolverError
from .compiled import EXPLICIT_METHODS, compiled_routine, explicit_settings, failure, work_rows
from .integrators import (
    DENSE_MAX_STATES,
    SOLVE_IVP_METHODS,
    check_dense_jacobian,
    check_without_jacobian,
    dynode_options,
    jacobian_callable,
    lowrank_rank,
    non_finite_states,
)
from .model import CompiledModel
from .specialize import add_time
from .stiff import check_rodas4_result, linear_solver_option, rodas4_settings, uses_sparse_lu

EVENT_METHODS = (*EXPLICIT_METHODS, "rodas4", *SOLVE_IVP_METHODS)
LOG_CAPACITY = 256  # events one compiled call logs before it returns to have its log read (> EVENT_REPEAT_MAX)
EVENT_WORK_ROWS = 15
EVENT_CTL_SIZE = 11  # templates/integrators.py.j2: the stepper kept between calls
_CTL_MODE, _CTL_T_NEXT = 0, 7
_TERMINAL, _LOG_FULL, _CHATTER = 2, 3, -7
_REPEAT_MAX = 100  # templates/integrators.py.j2: EVENT_REPEAT_MAX
_SAME_TIME = 1e-10  # templates/integrators.py.j2: EVENT_SAME_TIME


class EventRecord(NamedTuple):
    """One event that fired: when, whose, and the values its action wrote (before and after)."""

    time: float
    system: str  # the system's path
    event: str  # the event's name
    before: dict[str, Any]  # "path.states.key" / "path.inputs.key" -> its value before the action
    after: dict[str, Any]  # ... and after it
    terminal: bool = False

    def __str__(self) -> str:
        changes = ", ".join(f"{k}: {self.before[k]!r} -> {self.after[k]!r}" for k in self.before)
        return f"t = {self.time!r}: {self.system}.{self.event}" + (f" ({changes})" if changes else "") + (
            " [terminal]" if self.terminal else ""
        )


class EventTable:
    """A module's EVENTS, with where each action's writes are in y and p."""

    def __init__(self, module: Any) -> None:
        self.events = tuple(module.EVENTS)
        self.kinds = np.array([[e[2], int(e[3])] for e in self.events], dtype=np.int64).reshape(len(self.events), 2)
        self.n = int(module.N_STATES)
        self.m = int(module.N_PARAMETERS)
        places: dict[str, tuple[str, int, int, tuple]] = {}
        for path, entries in module.STATES.items():
            for key, (start, stop, shape) in entries.items():
                places[f"{path}.states.{key}"] = ("y", start, stop, tuple(shape))
        for path, entries in module.PARAMETERS.items():
            for key, (start, stop, shape) in entries.items():
                places[f"{path}.{key}"] = ("p", start, stop, tuple(shape))
        n, m = self.n, self.m
        # per event: (name, place before, place after, shape or None for a scalar) in a log row
        self.writes = [
            [(name, (start if vector == "y" else n + start), (n + m + start if vector == "y" else 2 * n + m + start),
              stop - start, None if shape in ((), (1,)) else shape)
             for name in e[5] if name in places for vector, start, stop, shape in (places[name],)]
            for e in self.events
        ]  # fmt: skip
        self.labels = [(e[0], e[1], bool(e[3])) for e in self.events]
        # what a compiled run takes, made once: sizes, empty sample blocks, work rows per method
        self.n_observed = int(module.N_OBSERVED)
        self.no_samples, self.no_observed = np.empty((0, self.n)), np.empty((0, self.n_observed))
        self.work_rows = {method: work_rows(method) for method in EXPLICIT_METHODS}

    def record(self, t: float, which: int, values: np.ndarray) -> EventRecord:
        """The EventRecord of a row of the compiled log: y, p before; y, p after."""
        before, after = {}, {}
        for name, b, a, size, shape in self.writes[which]:
            if shape is None:
                before[name], after[name] = float(values[b]), float(values[a])
            else:
                before[name], after[name] = values[b:b + size].reshape(shape).copy(), values[a:a + size].reshape(shape).copy()
        system, name, terminal = self.labels[which]
        return EventRecord(float(t), system, name, before, after, terminal)


def event_table(module: Any) -> EventTable:
    """The module's EventTable (read once per loaded module)."""
    table = module.__dict__.get("_dyngen_event_table")
    if table is None:
        table = module.__dict__.setdefault("_dyngen_event_table", EventTable(module))
    return table


class _Log:
    """The arrays a compiled routine logs events into (see "Events" in the templates)."""

    def __init__(self, table: EventTable) -> None:
        self.table = table
        self.t = np.empty(LOG_CAPACITY)
        self.which = np.empty(LOG_CAPACITY, dtype=np.int64)
        self.values = np.empty((LOG_CAPACITY, 2 * (table.n + table.m)))

    def arguments(self, ew: np.ndarray, eg: np.ndarray) -> tuple:
        return self.table.kinds, ew, eg, self.t, self.which, self.values

    def drain(self, count: int, into: list[EventRecord]) -> None:
        record = self.table.record
        into.extend(map(record, self.t[:count].tolist(), self.which[:count].tolist(), self.values[:count]))

    def defer(self, count: int, sim: Any, last: bool = False) -> None:
        """Keep the log's first ``count`` rows in ``sim._event_chunks``, made EventRecords
        only when ``sim.events`` is read (50 records cost a whole ball's run); ``last``:
        the log is not written again, its rows are kept without a copy."""
        if count:
            rows = (self.t[:count], self.which[:count], self.values[:count])
            sim._event_chunks.append((self.table, *(rows if last else (a.copy() for a in rows))))


def flush_event_chunks(sim: Any) -> None:
    """Make the compiled runs' deferred log rows EventRecords, in ``sim._event_log``."""
    chunks, sim._event_chunks = sim._event_chunks, []
    for table, t, which, values in chunks:
        sim._event_log.extend(map(table.record, t.tolist(), which.tolist(), values))


def _chatter_error(method: str, t: float, records: list[EventRecord]) -> SolverError:
    last = records[-1] if records else None
    which = f" ({last.system}.{last.event})" if last else ""
    return SolverError(
        f"{method}: {_REPEAT_MAX} events in a row at t = {float(t)!r}{which}: an action makes a condition cross zero "
        "again at once (chattering, or a Zeno point such as a ball coming to rest); let the action move the "
        "state clear of the condition's zero (e.g. set a mode input that switches the condition), or use a "
        "terminal event to stop there"
    )


class CompiledEventIntegrator:
    """dopri5/dop853/rodas4 with the model's events, compiled: ``advance`` is one compiled
    call per observer interval (more only when more than LOG_CAPACITY events fire in it).

    dopri5 and dop853 step on continuously from ``t0`` to ``t_stop`` (the run's last
    output time): each ``advance`` goes on with the stepper the last one left and reads
    the state at the output time from the step's continuous extension; an event's
    action, or ``restart()`` (an observer changed a parameter), starts afresh.  rodas4
    shortens its last step to land on each output time."""

    def __init__(
        self, module: Any, p: np.ndarray, t0: float, y0: np.ndarray, method: str, options: dict,
        state_name: Callable[[int], str], records: list[EventRecord], specialize: bool = True,
        t_stop: float = math.inf, observer_dt: float = math.inf,
    ) -> None:  # fmt: skip
        n = int(module.N_STATES)
        self._module, self._method, self._p, self._state_name = module, method, p, state_name
        self._records = records
        self._log = _Log(event_table(module))
        self._ew = np.zeros((EVENT_WORK_ROWS, n))
        self._eg = np.zeros((3, len(self._log.table.events)))
        self.t = float(t0)
        self.y = np.array(y0, dtype=np.float64)
        self.stopped = False  # a terminal event stopped the run
        if method == "rodas4":
            if linear_solver_option(options) == "krylov":
                raise DyngenError(
                    "rodas4 with events runs with the dense LU only: linear_solver='krylov' is for the "
                    "sparse path without events; drop it, or use BDF or Radau"
                )
            if uses_sparse_lu(module):
                instead = "BDF or Radau"
                if lowrank_rank(module) and n > DENSE_MAX_STATES:  # scipy would need S + U V^T dense
                    instead = "'dopri5'/'dop853' (explicit), or rodas4 without events (sparse LU and Woodbury)"
                raise DyngenError(
                    "rodas4 with events needs the dense LU (fewer than 150 states, or a dense Jacobian); "
                    f"use {instead} for this model"
                )
            check_dense_jacobian("rodas4", n, int(module.JAC_NNZ), lowrank_rank(module))
            self._rtol, self._atol, self._max_step, self._nsteps, self._h = rodas4_settings(options)
            self._routine = compiled_routine(module, "rodas4_advance_events", jac=True, specialize=specialize, events=True)
            self._arrays = (np.zeros((5, n)), np.zeros((6, n)), np.zeros((n, n)), np.zeros(n, dtype=np.int64))
            self.stats = np.zeros(4, dtype=np.int64)
        else:
            self._settings = explicit_settings(method, options).arguments()
            self._routine = compiled_routine(module, f"{method}_advance_events", specialize=specialize, events=True)
            self._work = np.empty((work_rows(method), n))
            self.stats = np.zeros(4, dtype=np.int64)
            self._t_stop, self._observer_dt = float(t_stop), float(observer_dt)
            self._ctl = np.zeros(EVENT_CTL_SIZE)
            self._ctl[_CTL_T_NEXT] = self.t + self._observer_dt
            self._x = self.t  # the stepper's time, and its state (ahead of the last output time)
            self._y = self.y.copy()
            self._times, self._Y, self._OUT = np.empty(1), np.empty((1, n)), np.empty((1, 0))

    def restart(self) -> None:
        """Start afresh from the last output (an observer changed a parameter there)."""
        if self._method != "rodas4":
            self._ctl[_CTL_MODE] = 0.0
            self._x = self.t
            self._y[:] = self.y

    def advance(self, t_end: float) -> None:
        start, t_end = self.t, float(t_end)
        while True:
            begin = time.perf_counter()
            if self._method == "rodas4":
                t, self._h, status, count = self._routine(
                    self.t, self.y, t_end, self._p, self._h, self._rtol, self._atol, self._max_step, self._nsteps,
                    *self._arrays, self.stats, *self._log.arguments(self._ew, self._eg),
                )  # fmt: skip
            else:
                t, status, count, stored = self._routine(
                    self._x, self._y, self._t_stop, self._p, *self._settings, self._work, self.stats,
                    *self._log.arguments(self._ew, self._eg), self._ctl, 1, self._observer_dt, True, False,
                    self._times, self._Y, self._OUT,
                )  # fmt: skip
                self._x = float(t)
                if stored:  # the output time
                    t, self.y = self._times[0], self._Y[0].copy()
                else:  # an event that stops the run, or a failure: where the stepper is
                    self.y = self._y.copy()
            add_time(self._module, time.perf_counter() - begin)
            self.t = float(t)
            self._log.drain(count, self._records)
            if status == _LOG_FULL:
                continue
            if status == _TERMINAL:
                self.stopped = True
                return
            if status == _CHATTER:
                raise _chatter_error(self._method, self.t, self._records)
            if self._method == "rodas4":
                check_rodas4_result(int(status), start, t_end, self.t, self.y, self._state_name)
            elif status != 1:
                raise failure(self._method, int(status), start, t_end, self.t, self.y, self._state_name)
            elif not np.all(np.isfinite(self.y)):
                raise failure(self._method, -6, start, t_end, self.t, self.y, self._state_name)
            return


def _illinois(g: Callable[[float], float], a: float, fa: float, b: float, fb: float, tol: float) -> float:
    """A root of g in [a, b] (g(a) = fa, g(b) = fb of opposite signs, or fb == 0) by the
    Illinois method (bisecting when it stalls), returned on b's side (where the condition
    has crossed); the same steps as the compiled _locate_event."""
    side, width = 0, b - a
    if fb == 0.0:
        return b
    for it in range(200):
        if b - a <= tol:
            break
        c = (a * fb - b * fa) / (fb - fa)
        if it % 4 == 3:  # every 4th step: bisect if the last ones did not halve the bracket
            if b - a > 0.5 * width:
                c = 0.5 * (a + b)
            width = b - a
        if not a < c < b:
            c = 0.5 * (a + b)
        fc = g(c)
        if fc == 0.0:
            return c
        if (fc > 0.0) == (fb > 0.0):
            b, fb = c, fc
            if side == -1:
                fa *= 0.5
            side = -1
        else:
            a, fa = c, fc
            if side == 1:
                fb *= 0.5
            side = 1
    return b


def _crossing(g0: float, g1: float, direction: int) -> bool:
    if g0 < 0.0 <= g1:
        return direction >= 0
    if g0 > 0.0 >= g1:
        return direction <= 0
    return False


class SolveIvpEventIntegrator:
    """One of scipy's OdeSolvers (BDF, Radau, LSODA, RK45, RK23, DOP853) stepping freely,
    as ``SolveIvpIntegrator``, with the model's events located on each step's dense
    output (as ``solve_ivp(events=...)`` does, but on the crossed side of the root, to
    about 4 ulp) and applied there; the solver restarts after each event."""

    def __init__(
        self, module: Any, p: np.ndarray, t0: float, y0: np.ndarray, t_bound: float, method: str, options: dict,
        state_name: Callable[[int], str], records: list[EventRecord],
    ) -> None:  # fmt: skip
        from scipy.integrate import BDF, DOP853, LSODA, RK23, RK45, Radau

        solvers = {"BDF": BDF, "Radau": Radau, "LSODA": LSODA, "RK45": RK45, "RK23": RK23, "DOP853": DOP853}
        rhs, n = module.rhs, int(module.N_STATES)
        dy = np.zeros(n)

        def f(t: float, y: np.ndarray) -> np.ndarray:
            rhs(t, y, p, dy)
            return dy.copy()

        if method in ("BDF", "Radau", "LSODA") and not getattr(module, "NO_JACOBIAN", None):  # (else finite differences)
            if method == "LSODA":
                check_dense_jacobian(method, n, int(module.JAC_NNZ), lowrank_rank(module))
            options = {"jac": jacobian_callable(module, p, sparse=method != "LSODA"), **options}
        self._make = lambda t, y: solvers[method](f, t, np.array(y, dtype=float), t_bound, **options)
        try:
            self._solver = self._make(t0, y0)
        except TypeError as exc:
            raise DyngenError(f"integrator {method!r} does not take these options: {exc}") from None
        self._module, self._p, self._method, self._state_name = module, p, method, state_name
        self._table = event_table(module)
        self._records = records
        self._g = np.zeros(len(self._table.events))
        self._g0 = self._conditions(t0, self._solver.y)
        self._repeats, self._t_event = 0, -math.inf
        self._pending: tuple | None = None
        self._stepped = False
        self._t_bound = float(t_bound)
        self.t = float(t0)
        self.y = np.array(y0, dtype=float)
        self.stopped = False

    def _conditions(self, t: float, y: np.ndarray) -> np.ndarray:
        self._module.events(t, np.ascontiguousarray(y, dtype=float), self._p, self._g)
        return self._g.copy()

    def advance(self, t_end: float) -> None:
        while not self.stopped:
            if self._pending is not None:  # an event located in the last step
                t_e, which, y_e, sol = self._pending
                if t_e > t_end:  # after this output time: the state there is from before it
                    self._output(t_end, sol(t_end))
                    return
                self._pending = None
                self._fire(t_e, which, y_e)
                continue
            solver = self._solver
            if solver.t >= t_end:
                if self._stepped:
                    self._output(t_end, solver.y.copy() if solver.t == t_end else solver.dense_output()(t_end))
                else:  # restarted at an event at t_end: the state after its action
                    self.t = float(t_end)
                return
            self._step(solver, t_end)

    def _step(self, solver: Any, t_end: float) -> None:
        """One solver step; an event in it becomes ``_pending``."""
        t_old = solver.t
        message = solver.step()
        if solver.status == "failed":
            raise SolverError(
                f"{self._method} failed before t = {float(t_end)!r} (reached t = {float(solver.t)!r}): "
                f"{message or 'step failed'}{non_finite_states(solver.y, self._state_name)}"
            )
        self._stepped = True
        g1 = self._conditions(solver.t, solver.y)
        kinds = self._table.kinds
        crossing = [k for k in range(len(g1)) if _crossing(self._g0[k], g1[k], kinds[k, 0])]
        if not crossing:
            self._g0 = g1
            return
        sol = solver.dense_output()
        h = solver.t - t_old
        tol = max(4 * 2.2e-16 * max(abs(t_old), abs(solver.t)) / h, 4 * 2.2e-16)
        best, which = 2.0, -1
        for k in crossing:
            theta = _illinois(
                lambda c: self._conditions(t_old + c * h, sol(t_old + c * h))[k], 0.0, self._g0[k], 1.0, g1[k], tol
            )  # fmt: skip
            if theta < best:
                best, which = theta, k
        t_e = float(solver.t) if best >= 1.0 else t_old + best * h
        y_e = np.array(solver.y if best >= 1.0 else sol(t_e), dtype=float)
        self._pending = (t_e, which, y_e, sol)

    def _fire(self, t_e: float, which: int, y: np.ndarray) -> None:
        """Apply event ``which`` at ``(t_e, y)``, log it, and restart the solver there."""
        before = np.concatenate((y, self._p))
        self._module.apply_event(which, t_e, y, self._p)
        self._records.append(self._table.record(t_e, which, np.concatenate((before, y, self._p))))
        self._repeats = self._repeats + 1 if t_e - self._t_event <= _SAME_TIME * max(1.0, abs(t_e)) else 0
        self._t_event = t_e
        if self._repeats >= _REPEAT_MAX:
            raise _chatter_error(self._method, t_e, self._records)
        self.t, self.y = float(t_e), y
        if self._table.kinds[which, 1]:
            self.stopped = True
            return
        self._g0 = self._conditions(t_e, y)
        if t_e < self._t_bound:
            self._solver = self._make(t_e, y)
        self._stepped = False

    def _output(self, t: float, y: np.ndarray) -> None:
        self.t, self.y = float(t), np.array(y, dtype=float)
        if not np.all(np.isfinite(self.y)):
            raise SolverError(
                f"{self._method}: the state is not finite at t = {self.t!r}{non_finite_states(self.y, self._state_name)}"
            )


def write_parameters(model: CompiledModel, p: np.ndarray, before: np.ndarray) -> None:
    """Leave the parameters the events' actions changed in the systems' inputs."""
    if p.tobytes() == before.tobytes():  # no action wrote a parameter (0.1 us; the loop below takes 4)
        return
    for e in model.parameters:
        value = p[e.start:e.stop]
        if np.array_equal(value, before[e.start:e.stop]):
            continue
        container = getattr(e.system, e.kind)
        container[e.key] = float(value[0]) if e.shape == () else value.reshape(e.shape).copy()


def simulate_with_events(
    sim: Any, model: CompiledModel, t: float, observer_dt: float, fixed_step: bool, integrator: str, kwargs: dict
) -> float:
    """``Simulation.simulate`` for a model with events: dynode's observer loop (one
    compiled call for the whole run when every observer is a Recorder), the events
    logged into ``sim.events``; a terminal
    event ends the run at its time (observers see that last state) and its time is
    returned."""
    method = integrator
    if method not in EVENT_METHODS:
        raise DyngenError(
            f"integrator {integrator!r} cannot locate the model's events; use one of {', '.join(EVENT_METHODS)}"
        )
    y0 = model.gather_states()
    p = model.gather_parameters()
    p_before = p.copy()
    if kwargs:
        kwargs = model.options_in_module_layout(kwargs)
    start = float(sim._t)
    records = sim.events  # (earlier runs' deferred rows first)
    module = model.module
    specialize = sim.standalone is not False
    recorders = sim._plain_recorders(model) if sim._observers else []
    if method in EXPLICIT_METHODS and recorders is not None and not any(r.needs_sync for r in recorders):
        options = _continuous_options(observer_dt, fixed_step, kwargs)
        return _run_compiled(sim, model, method, options, recorders, y0, p, p_before, start, t, observer_dt)
    t_stop = start
    for _ in range(int(t / observer_dt)):  # the last output time, added up as the compiled loop adds them
        t_stop += observer_dt
    no_jacobian = getattr(module, "NO_JACOBIAN", None)
    if no_jacobian and method in ("rodas4", "BDF", "Radau", "LSODA"):
        check_without_jacobian(method, model.n_states, no_jacobian)  # refused, or scipy's finite differences
    if method in EXPLICIT_METHODS:
        solver = CompiledEventIntegrator(
            module, p, start, y0, method, _continuous_options(observer_dt, fixed_step, kwargs), model.state_name,
            records, specialize, t_stop, observer_dt,
        )  # fmt: skip
    elif fixed_step:
        raise DyngenError(f"fixed_step=True needs dopri5 or dop853, not {method!r}")
    elif method == "rodas4":
        solver = CompiledEventIntegrator(module, p, start, y0, method, kwargs, model.state_name, records, specialize)
    else:
        solver = SolveIvpEventIntegrator(module, p, start, y0, t_stop, method, kwargs, model.state_name, records)
    notify = sim._notifier(model, p, getattr(solver, "restart", None))
    try:
        if start == 0:
            notify(start, solver.y, False)
        for _ in range(int(t / observer_dt)):
            solver.advance(solver.t + observer_dt)
            if not np.array_equal(p, p_before):  # an action set a parameter: the inputs show it
                write_parameters(model, p, p_before)
                p_before[:] = p
            if notify(solver.t, solver.y, True) or solver.stopped:
                break
    except SolverError as error:
        sim._finish(model, solver.t, solver.y, p)
        write_parameters(model, p, p_before)
        raise SolverError(f"{error}{model.explain_failure(solver.t, p)}") from None
    sim._finish(model, solver.t, solver.y, p)
    return solver.t


_SETTINGS: dict[tuple, tuple] = {}  # _run_settings' memory: simulate() asks on every call


def _run_settings(method: str, options: dict) -> tuple:
    """``explicit_settings(method, options).arguments()``, remembered for the last few
    sets of options (options of plain numbers; other values are not remembered)."""
    try:
        key = (method, *((k, type(v), v) for k, v in options.items()))
        known = _SETTINGS.get(key)
    except TypeError:  # an unhashable value: checked (and refused) by explicit_settings
        return explicit_settings(method, options).arguments()
    if known is None:
        known = explicit_settings(method, options).arguments()
        if len(_SETTINGS) >= 16:
            _SETTINGS.clear()
        _SETTINGS[key] = known
    return known


def _continuous_options(observer_dt: float, fixed_step: bool, kwargs: dict) -> dict:
    """dynode's options for one integration over the whole run: its first step is
    observer_dt (as dynode's first interval); with fixed_step, every step is
    observer_dt long (max_step), as dynode's intervals are."""
    options = dynode_options(observer_dt, fixed_step, kwargs)
    if fixed_step and not options.get("max_step"):
        options["max_step"] = observer_dt
    return options


def _run_compiled(
    sim: Any, model: CompiledModel, method: str, options: dict, recorders: list, y0: np.ndarray, p: np.ndarray,
    p_before: np.ndarray, start: float, duration: float, observer_dt: float,
) -> float:  # fmt: skip
    """The whole run in compiled code (``run_<method>_events``), Recorders filled from its
    samples; called again only when more than LOG_CAPACITY events fired since the last call."""
    module = model.module
    settings = _run_settings(method, options)
    with_observed = any(r.needs_observed for r in recorders)
    with_states = bool(recorders)
    run = compiled_routine(
        module, f"run_{method}_events", observe=with_observed, specialize=sim.standalone is not False, events=True
    )  # fmt: skip
    table = event_table(module)
    n, n_observed = table.n, table.n_observed
    remaining = int(duration / observer_dt)
    record_initial = start == 0
    rows = remaining + (1 if record_initial else 0) + 1  # + 1: the sample at a terminal event
    times = np.empty(rows)
    Y = np.empty((rows, n)) if with_states else table.no_samples
    OUT = np.empty((rows, n_observed)) if with_observed else table.no_observed
    log = _Log(table)
    # the scratch, zeroed: ew, eg, ctl in one block (numba takes the views as it takes arrays)
    scratch = np.zeros(EVENT_WORK_ROWS * n + 3 * len(table.events) + EVENT_CTL_SIZE)
    ew = scratch[: EVENT_WORK_ROWS * n].reshape(EVENT_WORK_ROWS, n)
    eg = scratch[EVENT_WORK_ROWS * n : -EVENT_CTL_SIZE].reshape(3, len(table.events))
    ctl = scratch[-EVENT_CTL_SIZE:]
    stats = np.zeros(4, dtype=np.int64)
    work = np.empty((table.work_rows[method], n))
    ctl[_CTL_T_NEXT] = start + observer_dt
    y = np.array(y0, dtype=np.float64)
    t, stored = start, 0
    while True:
        begin = time.perf_counter()
        k, status, t, logged = run(
            t, y, p, observer_dt, remaining, *settings, record_initial, with_states, with_observed,
            times[stored:], Y[stored:] if with_states else Y, OUT[stored:] if with_observed else OUT, stats,
            *log.arguments(ew, eg), ctl, work,
        )  # fmt: skip
        add_time(module, time.perf_counter() - begin)
        log.defer(logged, sim, last=status != _LOG_FULL)
        stored, remaining = stored + int(k), remaining - (int(k) - (1 if record_initial else 0))
        record_initial = False
        if status != _LOG_FULL:
            break
    for recorder in recorders:
        recorder.record_many(times[:stored], Y[:stored] if with_states else None, OUT[:stored] if with_observed else None)
    t = float(t)
    sim._finish(model, t, y, p)
    write_parameters(model, p, p_before)
    if status == _CHATTER:
        raise SolverError(f"{_chatter_error(method, t, sim.events)}{model.explain_failure(t, p)}")
    if status not in (1, _TERMINAL):
        interval_start = float(times[stored - 1]) if stored else start
        error = failure(method, int(status), interval_start, interval_start + observer_dt, t, y, model.state_name)
        raise SolverError(f"{error}{model.explain_failure(t, p)}")
    return t
