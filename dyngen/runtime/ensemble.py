"""Ensembles: one built model run for many members, in compiled code, on every core.

``Simulation.ensemble`` is the user's entry point; this module does the work:

* ``member_values`` turns ``grid=`` / ``members=`` into one row of values per member;
* ``EnsemblePlan`` is what every member shares and what each one changes (initial
  states and parameters as (members x n) arrays, in the module's layout), picklable
  and free of module objects, so that it can travel to another process;
* ``run_chunk`` runs members ``[start, stop)`` of a plan, each exactly the run a
  single ``simulate()`` makes (the same compiled routine: ``ensemble_<method>`` loops
  over ``run_<method>``), into one preallocated block per kind of result;
* ``run_threads`` runs a plan in chunks on a pool of threads: the compiled routines
  release the GIL, so the chunks run in parallel;
* ``to_dataset`` labels the blocks as an ``xarray.Dataset``.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, NamedTuple, Sequence

import numpy as np

from ..errors import ArgumentError, DyngenError, EnsembleWarning, SolverError
from .compiled import EXPLICIT_METHODS, REASONS, STATUS_SUCCESS, _settings_arguments, compiled_routine
from .ensemble_events import (
    DEFAULT_MAX_EVENTS, STATUS_CHATTER, STATUS_TERMINAL, chatter_reason, check_event_ensemble, event_settings,
    event_variables, has_events, last_events, value_columns, warn_truncated,
)
from .specialize import add_time
from .stiff import _REASONS as RODAS4_REASONS
from .stiff import linear_solver_option, rodas4_settings, uses_sparse_lu

COMPILED_METHODS = (*EXPLICIT_METHODS, "rodas4")
# A member the Python fallback (scipy's methods, rodas4 with a sparse LU) saw fail
STATUS_SOLVER_ERROR = -100


class Signal(NamedTuple):
    """A signal of the module by name: in y ("states"), p ("parameters") or out ("observed")."""

    name: str
    vector: str
    start: int
    stop: int
    shape: tuple[int, ...]  # the shape a member's value has (() for a scalar)
    kind: str  # "states", "inputs", "outputs" or "ders"
    element: bool  # one element of a vector signal ("...[i]")


class Names(NamedTuple):
    """The module's signals by name: what a member may set, what an ensemble may record."""

    settable: dict[str, Signal]  # initial states and parameters
    recordable: dict[str, Signal]  # states and observed signals


def module_names(module: Any) -> Names:
    """Every name the module's tables give, to its place: ``"<path>.states.<key>"``
    (STATES), ``"<path>.inputs.<key>"`` (PARAMETERS; OBSERVED too), ``"<path>.outputs.<key>"``,
    ``"<path>.ders.<key>"`` (OBSERVED), and ``"...[i]"`` for each element of a vector.
    A one-element state or der (dynode reads it as a float) is a scalar."""
    names = Names({}, {})
    tables = (("states", module.STATES), ("parameters", module.PARAMETERS), ("observed", module.OBSERVED))
    for vector, table in tables:
        for path, entries in table.items():
            for key, (start, stop, shape) in entries.items():
                kind, name = ("states", f"{path}.states.{key}") if vector == "states" else (key.split(".", 1)[0], f"{path}.{key}")
                # a one-element state or der is a float to dynode's Recorder (read as an attribute)
                shape = () if kind in ("states", "ders") and stop - start == 1 else tuple(shape)
                found = [Signal(name, vector, start, stop, shape, kind, False)]
                if shape and stop - start > 1:
                    for i, place in enumerate(np.ndindex(*shape)):
                        element = f"{name}[{', '.join(map(str, place))}]"
                        found.append(Signal(element, vector, start + i, start + i + 1, (), kind, True))
                for signal in found:
                    if vector != "observed":
                        names.settable[signal.name] = signal
                    if vector != "parameters":
                        names.recordable[signal.name] = signal
    return names


def _unknown_name(name: str, known: Iterable[str], what: str) -> ArgumentError:
    import difflib

    close = difflib.get_close_matches(name, list(known), n=4, cutoff=0.5)
    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
    return ArgumentError(f"ensemble: {name!r} is not {what} of this model{hint} (the module's STATE_NAMES, "
                         "PARAMETER_NAMES and OBSERVED_NAMES list them)")  # fmt: skip


@dataclass
class Members:
    """The members' values: ``values[name]`` is (members, *shape), in the order given;
    ``grid`` the names of a product grid (empty for zipped members); ``states`` the
    names that are initial states (the others are parameters)."""

    count: int
    values: dict[str, np.ndarray]
    grid: tuple[str, ...] = ()
    states: frozenset[str] = frozenset()

    @classmethod
    def of(cls, count: int, values: dict[str, np.ndarray], known: Mapping[str, Signal], grid: tuple[str, ...] = ()) -> "Members":
        return cls(count, values, grid, frozenset(name for name in values if known[name].vector == "states"))


def member_values(
    grid: Mapping[str, Any] | None, members: Mapping[str, Any] | None, n_members: int | None,
    known: Mapping[str, Signal],
) -> Members:
    """The members ``Simulation.ensemble`` was given (a function of the index already
    called: ``called_members``), checked against the module's names."""
    if grid is not None and members is not None:
        raise ArgumentError("ensemble: give grid= (every combination) or members= (member by member), not both")
    if grid is None and members is None:
        raise ArgumentError("ensemble: give grid={name: values, ...} or members={name: values, ...} (or a function of the index)")
    if n_members is not None:
        raise ArgumentError("ensemble: n_members= goes with members=<a function of the index> only")
    given = grid if grid is not None else members
    if not isinstance(given, Mapping) or not given:
        raise ArgumentError(f"ensemble: expected a non-empty dict {{name: values}}, not {given!r}")
    if members is not None:
        lengths = {name: np.shape(v)[0] if np.ndim(v) else 1 for name, v in given.items()}
        if len(set(lengths.values())) != 1:
            raise ArgumentError(f"ensemble: members= needs as many values for every name; got {lengths}")
        count = next(iter(lengths.values()))
        return Members.of(count, _checked(dict(given), known, count), known)
    axes = {name: _grid_axis(name, values, known) for name, values in given.items()}
    shape = tuple(len(axis) for axis in axes.values())
    count = math.prod(shape)
    index = np.unravel_index(np.arange(count), shape)  # C order: the first name varies slowest
    table = {name: axis[index[i]] for i, (name, axis) in enumerate(axes.items())}
    return Members.of(count, _checked(table, known, count), known, tuple(axes))


def called_members(members: Callable[[int], Mapping[str, Any]], n_members: Any) -> dict[str, list]:
    """``members(i)`` for every member, once each (a function that draws random values
    gives each member one draw), as ``{name: [value of member i, ...]}``."""
    if n_members is None or isinstance(n_members, bool) or not isinstance(n_members, (int, np.integer)) or n_members < 1:
        raise ArgumentError(f"ensemble: members= is a function; give n_members= (a positive integer), not {n_members!r}")
    rows = [members(i) for i in range(int(n_members))]
    names = list(rows[0]) if isinstance(rows[0], Mapping) else []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or list(row) != names:
            raise ArgumentError(
                f"ensemble: members({i}) returned {row!r}; every call must return a dict with the same names "
                f"as members(0): {names}"
            )
    return {name: [row[name] for row in rows] for name in names}


def _grid_axis(name: str, values: Any, known: Mapping[str, Signal]) -> np.ndarray:
    signal = _settable(name, known)
    axis = np.asarray(values, dtype=float)
    if axis.ndim == 0:
        axis = axis.reshape(1)
    if axis.shape[1:] != signal.shape or axis.shape[0] == 0:
        raise ArgumentError(
            f"ensemble: grid[{name!r}] has shape {np.shape(values)}; it takes a list of values, each of shape "
            f"{signal.shape} ({'a number' if signal.shape == () else 'an array'})"
        )
    return axis


def _settable(name: str, known: Mapping[str, Signal]) -> Signal:
    signal = known.get(name)
    if signal is None:
        raise _unknown_name(name, known, "an initial state or a parameter (an input no connection drives)")
    return signal


def _checked(table: Mapping[str, Any], known: Mapping[str, Signal], count: int) -> dict[str, np.ndarray]:
    checked = {}
    for name, values in table.items():
        signal = _settable(name, known)
        try:
            array = np.asarray(values, dtype=float)
        except (TypeError, ValueError):
            raise ArgumentError(f"ensemble: the values of {name!r} are not numbers of one shape: {values!r}") from None
        if array.shape != (count, *signal.shape):
            raise ArgumentError(
                f"ensemble: {name!r} has values of shape {array.shape}; {count} members of shape {signal.shape} "
                f"need {(count, *signal.shape)}"
            )
        checked[name] = array
    return checked


@dataclass(frozen=True)
class EnsemblePlan:
    """What every member shares, and each member's initial state and parameters
    (rows of ``y0`` and ``p``, in the module's layout).  Picklable: no module object."""

    method: str
    settings: tuple  # the compiled routine's option arguments (explicit or rodas4)
    t0: float
    observer_dt: float
    n_intervals: int
    record_initial: bool
    keep_states: np.ndarray  # int64: the places in y kept at every sample (Blocks.Y's columns)
    keep_observed: np.ndarray  # int64: the places in observe's out kept (Blocks.OUT's columns)
    y0: np.ndarray  # (members, N_STATES)
    p: np.ndarray  # (members, N_PARAMETERS)
    events: bool = False  # the model has events: ensemble_<method>_events (ensemble_events.py)
    max_events: int = 0  # events kept per member (Blocks.event_t's columns)
    # int64: the places in (y, p) whose values before and after each event are kept
    # (Blocks.event_before's columns: every place an action writes, ensemble_events.value_columns)
    event_cols: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))

    @property
    def count(self) -> int:
        return int(self.y0.shape[0])

    @property
    def n_samples(self) -> int:
        return self.n_intervals + (1 if self.record_initial else 0)

    @property
    def with_observed(self) -> bool:
        return self.keep_observed.size > 0

    @property
    def compiled(self) -> bool:
        return self.method in COMPILED_METHODS and bool(self.settings)


class Blocks(NamedTuple):
    """The results of members ``[start, start + len)``: one block per kind."""

    times: np.ndarray  # (m, samples)
    Y: np.ndarray  # (m, samples, kept states)
    OUT: np.ndarray  # (m, samples, kept observed signals) or (m, 0, 0) without observed signals
    count: np.ndarray  # (m,) int64: samples stored
    status: np.ndarray  # (m,) int64: 1, or the failure code
    t_reached: np.ndarray  # (m,)
    y_end: np.ndarray  # (m, N_STATES): the state reached
    stats: np.ndarray  # (m, 4) int64: the method's counters
    event_t: np.ndarray  # (m, max_events): the times of a member's first events ((m, 0) without events)
    event_i: np.ndarray  # (m, max_events) int64: which event (the module's EVENTS order)
    event_count: np.ndarray  # (m,) int64: every event of the member
    event_before: np.ndarray  # (m, max_events, event_cols): the values the actions write, before each event
    event_after: np.ndarray  # (m, max_events, event_cols): ... and after it

    @classmethod
    def empty(cls, plan: EnsemblePlan, m: int | None = None) -> "Blocks":
        m = plan.count if m is None else m
        k, n_states = plan.n_samples, plan.y0.shape[1]
        return cls(  # the samples: only the kept columns (a 4-signal record of 10,000 x 201 samples is 64 MB)
            np.empty((m, k)), np.empty((m, k, plan.keep_states.size)),
            np.empty((m, k if plan.with_observed else 0, plan.keep_observed.size)),
            np.zeros(m, dtype=np.int64), np.zeros(m, dtype=np.int64), np.empty(m), np.empty((m, n_states)),
            np.zeros((m, 4), dtype=np.int64), np.empty((m, plan.max_events)),
            np.empty((m, plan.max_events), dtype=np.int64), np.zeros(m, dtype=np.int64),
            np.empty((m, plan.max_events, plan.event_cols.size)), np.empty((m, plan.max_events, plan.event_cols.size)),
        )  # fmt: skip

    def rows(self, start: int, stop: int) -> "Blocks":
        return Blocks(*(block[start:stop] for block in self))


def run_chunk(
    module: Any, plan: EnsemblePlan, start: int, stop: int, into: Blocks | None = None,
    fallback: Callable[[int, np.ndarray, np.ndarray, Blocks], None] | None = None, specialize: bool = True,
) -> Blocks:  # fmt: skip
    """Run members ``[start, stop)`` of ``plan`` into ``into`` (their rows of the
    blocks; new blocks when None) and return those rows.  The compiled methods
    run in one compiled call (GIL released); the others through ``fallback``.
    ``specialize``: as ``compiled.compiled_routine`` (a small model that has run
    long enough gets its own integrators, the same numbers faster)."""
    blocks = into if into is not None else Blocks.empty(plan, stop - start)
    blocks.y_end[:] = plan.y0[start:stop]
    if not plan.compiled:
        if fallback is None:
            raise DyngenError(f"ensemble: integrator {plan.method!r} runs member by member in this process only")
        for j in range(stop - start):
            fallback(start + j, blocks.y_end[j], plan.p[start + j], blocks.rows(j, j + 1))
        return blocks
    name = f"ensemble_{plan.method}" + ("_events" if plan.events else "")
    routine = compiled_routine(
        module, name, observe=plan.with_observed, jac=plan.method == "rodas4", specialize=specialize, events=plan.events
    )  # fmt: skip
    p = np.array(plan.p[start:stop])  # a copy: events' actions may write parameters (modes)
    events: tuple = ()
    if plan.events:
        from .ensemble_events import chunk_scratch

        events = (
            *chunk_scratch(module), blocks.event_t, blocks.event_i, blocks.event_count, plan.event_cols,
            blocks.event_before, blocks.event_after,
        )  # fmt: skip
    begin = time.perf_counter()
    status = routine(
        plan.t0, blocks.y_end, p, plan.observer_dt, plan.n_intervals, *plan.settings, plan.record_initial,
        plan.keep_states, plan.keep_observed, blocks.times, blocks.Y, blocks.OUT, blocks.count, blocks.status,
        blocks.t_reached, blocks.stats, *events,
    )  # fmt: skip
    add_time(module, time.perf_counter() - begin)
    if status != STATUS_SUCCESS:
        raise DyngenError(f"ensemble: the result blocks do not fit the model (status {status}); this is a dyngen bug")
    return blocks


def chunk_bounds(count: int, threads: int, chunk_size: int | None) -> list[tuple[int, int]]:
    """Members in chunks: ``chunk_size`` each, or about 8 per thread (at most 2,000
    members each, so progress shows) when not given."""
    if chunk_size is None:
        chunk_size = max(1, min(2000, math.ceil(count / (8 * threads))))
    return [(a, min(a + chunk_size, count)) for a in range(0, count, chunk_size)]


def run_threads(
    module: Any, plan: EnsemblePlan, blocks: Blocks, threads: int, chunk_size: int | None,
    progress: Callable[[int, int], None] | None, fallback: Callable | None = None, specialize: bool = True,
) -> None:  # fmt: skip
    """All members of ``plan`` into ``blocks``, in chunks, on ``threads`` threads."""
    # Member 0 alone first: the routine is chosen (shared or the model's own: ``specialize``)
    # and compiled, or loaded from numba's cache, once, before the threads start (a whole
    # chunk here would run while the other threads wait); the threads take the same one.
    run_chunk(module, plan, 0, 1, blocks.rows(0, 1), fallback, specialize)
    done = 1
    if progress is not None:
        progress(done, plan.count)
    rest = [(a + 1, b + 1) for a, b in chunk_bounds(plan.count - 1, threads, chunk_size)]
    if not rest:
        return
    if threads <= 1 or not plan.compiled:  # the Python fallback holds the GIL: threads would not help
        for a, b in rest:
            run_chunk(module, plan, a, b, blocks.rows(a, b), fallback, False)
            done += b - a
            if progress is not None:
                progress(done, plan.count)
        return
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="dyngen-ensemble") as pool:
        futures = {pool.submit(run_chunk, module, plan, a, b, blocks.rows(a, b), None, False): (a, b) for a, b in rest}
        for future in as_completed(futures):
            future.result()
            a, b = futures[future]
            done += b - a
            if progress is not None:
                progress(done, plan.count)


def default_threads() -> int:
    """The cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def failure_reason(method: str, status: int) -> str:
    """The words for a member's status code."""
    if status == STATUS_SUCCESS:
        return ""
    if method == "rodas4" and status in RODAS4_REASONS:
        return RODAS4_REASONS[status]
    return REASONS.get(status, f"status {status}")


def plan_settings(method: str, options: Mapping[str, Any], fixed_step: bool, observer_dt: float) -> tuple:
    """The compiled routine's option arguments for ``method`` (empty: not a compiled method)."""
    from .integrators import dynode_options

    if method in EXPLICIT_METHODS:
        return tuple(_settings_arguments(method, dynode_options(observer_dt, fixed_step, dict(options))))
    if method == "rodas4":
        if fixed_step:
            raise DyngenError("fixed_step=True needs dopri5 or dop853, not 'rodas4'")
        rtol, atol, max_step, nsteps, h0 = rodas4_settings(dict(options))
        return (h0, rtol, atol, max_step, nsteps)
    return ()


def kept_columns(record: Sequence[Signal]) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """The places in y and in out that ``record`` keeps (``EnsemblePlan.keep_states`` and
    ``keep_observed``), and where each recorded signal's first column is in its block."""
    places: dict[str, list[int]] = {"states": [], "observed": []}
    offsets = []
    for signal in record:
        kept = places[signal.vector]
        offsets.append(len(kept))
        kept.extend(range(signal.start, signal.stop))
    return np.array(places["states"], dtype=np.int64), np.array(places["observed"], dtype=np.int64), offsets


def _attribute_names(requested: Sequence[str], settable: Mapping[str, Signal], module: Any) -> list[str]:
    """The requested names that are not the module's but ``"<system path>.<attribute>"``
    of one of its systems: ``Simulation.make_parameter`` makes them parameters."""
    systems = set(module.SYSTEMS)
    found = []
    for name in requested:
        path, _, attribute = name.rpartition(".")
        if name not in settable and path in systems and attribute.isidentifier():
            found.append(name)
    return found


def recorded_signals(record: str | Sequence[str] | None, known: Mapping[str, Signal]) -> list[Signal]:
    """The signals to keep: by name, or every state and output (``None``), or every
    state and observed signal (``"all"``: inputs and ders too)."""
    if record is None or record == "all":
        kinds = ("states", "outputs") if record is None else ("states", "outputs", "inputs", "ders")
        return [s for s in known.values() if not s.element and s.kind in kinds]
    if isinstance(record, str):
        record = [record]
    chosen = []
    for name in record:
        signal = known.get(name)
        if signal is None:
            raise _unknown_name(name, known, "a state or an observed signal (input, output, der)")
        chosen.append(signal)
    return chosen


def run_ensemble(
    simulation: Any, t: float, observer_dt: float, grid: Mapping[str, Any] | None,
    members: Mapping[str, Any] | Callable[[int], Mapping[str, Any]] | None, n_members: int | None,
    record: str | Sequence[str] | None, integrator: str, fixed_step: bool, threads: int | None,
    chunk_size: int | None, progress: Callable[[int, int], None] | None, options: dict, client: Any = None,
    max_events: int | None = None,
) -> Any:  # fmt: skip
    """``Simulation.ensemble``: see its docstring."""
    from .ensemble_dataset import require_xarray, to_dataset
    from .integrators import run_observed
    from .simulation import _canonical_method, check_run_arguments

    require_xarray()  # before any work
    if client is not None:
        from .ensemble_dask import require_distributed, run_dask

        require_distributed()
    check_run_arguments(t, observer_dt)
    t, observer_dt = float(t), float(observer_dt)
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1):
        raise ArgumentError(f"ensemble: threads must be a positive integer, not {threads!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1):
        raise ArgumentError(f"ensemble: chunk_size must be a positive integer, not {chunk_size!r}")
    simulation.compile()
    model = simulation._model
    module = model.module
    if model.n_states == 0:
        raise DyngenError("ensemble: the model has no states to integrate")
    if callable(members):  # called once per member, here: its names may be attributes to promote
        members, n_members = called_members(members, n_members), None
    names = module_names(module)
    attributes = _attribute_names([*(grid if grid is not None else members or {})], names.settable, module)
    if attributes:  # plain attributes of systems: traced as parameters (one build), then set per member
        simulation.make_parameter(*attributes)
        model = simulation._model
        module = model.module
        names = module_names(module)
    chosen = member_values(grid, members, n_members, names.settable)
    signals_kept = recorded_signals(record, names.recordable)
    method = _canonical_method(integrator)
    options = model.options_in_module_layout(options) if options else {}
    events = has_events(module)
    krylov = method == "rodas4" and linear_solver_option(options) == "krylov"
    if events:  # ensemble_events.py: the compiled methods only, with simulate()'s settings for events
        if krylov:
            raise DyngenError(
                "ensemble: rodas4 with events runs with the dense LU only: linear_solver='krylov' is for the "
                "sparse path; drop the option (or use dopri5/dop853) for this model's ensemble"
            )
        max_events = check_event_ensemble(method, module, DEFAULT_MAX_EVENTS if max_events is None else max_events)
        settings: tuple = event_settings(method, options, fixed_step, observer_dt)
    elif method == "rodas4" and not getattr(module, "NO_JACOBIAN", None) and (uses_sparse_lu(module) or krylov):
        settings = ()  # SuperLU, member by member (sparse_stiff.py)
    else:
        settings = plan_settings(method, options, fixed_step, observer_dt)
    if method == "rodas4" and getattr(module, "NO_JACOBIAN", None):
        from .integrators import check_without_jacobian

        check_without_jacobian(method, model.n_states, module.NO_JACOBIAN)  # (refuses)
    t0 = float(simulation._t)
    y0 = np.tile(model.gather_states(), (chosen.count, 1))
    p = np.tile(model.gather_parameters(), (chosen.count, 1))
    for name, values in chosen.values.items():
        signal = names.settable[name]
        target = y0 if signal.vector == "states" else p
        target[:, signal.start:signal.stop] = values.reshape(chosen.count, -1)
    keep_states, keep_observed, _ = kept_columns(signals_kept)
    plan = EnsemblePlan(
        method, settings, t0, observer_dt, int(t / observer_dt), t0 == 0, keep_states, keep_observed, y0, p,
        events, max_events if events else 0, *([value_columns(module).columns] if events else []),
    )
    blocks = Blocks.empty(plan)
    out = np.empty(int(module.N_OBSERVED))
    reasons = [""] * plan.count

    def one_member(j: int, y: np.ndarray, p_j: np.ndarray, rows: Blocks) -> None:
        """A member on a method that is not compiled, as simulate() runs it."""
        solver = simulation._integrator(model, p_j.copy(), y.copy(), t, observer_dt, fixed_step, method, dict(options))
        stored = 0

        def keep(time: float, state: np.ndarray, _may_stop: bool) -> bool:
            nonlocal stored
            rows.times[0, stored] = time
            rows.Y[0, stored] = state[keep_states]
            if plan.with_observed:
                module.observe(time, np.array(state), p_j, out)
                rows.OUT[0, stored] = out[keep_observed]
            stored += 1
            return False

        status = STATUS_SUCCESS
        try:
            run_observed(solver, t0, t, observer_dt, keep)
        except SolverError as error:
            status, reasons[j] = STATUS_SOLVER_ERROR, str(error)
        rows.count[0], rows.status[0], rows.t_reached[0] = stored, status, solver.t
        rows.y_end[0] = solver.y

    specialize = simulation.standalone is not False
    if client is not None:  # chunks as tasks of a Dask cluster (ensemble_dask.py)
        run_dask(module, plan, blocks, client, threads, chunk_size, progress, specialize)
    else:
        run_threads(module, plan, blocks, threads or default_threads(), chunk_size, progress, one_member, specialize)
    failed = np.flatnonzero((blocks.status != STATUS_SUCCESS) & ~(events & (blocks.status == STATUS_TERMINAL)))
    last = last_events(blocks.event_i, blocks.event_count) if events else None
    for j in failed:
        if events and blocks.status[j] == STATUS_CHATTER:
            reasons[j] = chatter_reason(method, module, float(blocks.t_reached[j]), int(last[j]))
        elif not reasons[j]:
            reasons[j] = failure_reason(method, int(blocks.status[j]))
    if failed.size:
        shown = "; ".join(f"member {j}: {reasons[j]} (t = {float(blocks.t_reached[j])!r})" for j in failed[:5])
        more = f"; and {failed.size - 5} more" if failed.size > 5 else ""
        warnings.warn(
            f"ensemble: {failed.size} of {plan.count} members failed ({shown}{more}); their samples stop where "
            "they failed (NaN after), the other members are complete; see the Dataset's status and reason",
            EnsembleWarning, stacklevel=3,
        )  # fmt: skip
    attrs = {
        "model": str(module.MODEL_NAME), "model_hash": str(module.MODEL_HASH), "integrator": method,
        "t0": t0, "observer_dt": observer_dt, "fixed_step": int(fixed_step),
    }  # fmt: skip
    extra: tuple[dict, dict] = ({}, {})
    if events:
        warn_truncated(blocks.event_count, plan.max_events)
        extra = event_variables(module, blocks)
    return to_dataset(plan, chosen, blocks, signals_kept, reasons, attrs, extra)
