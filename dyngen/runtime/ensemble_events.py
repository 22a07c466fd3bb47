"""Ensembles of models with events (``System.add_event``): the parts ``ensemble.py``
adds for them.

The member loop itself is compiled: ``ensemble_<method>_events`` (templates/
integrators.py.j2) calls ``run_<method>_events`` once per member, exactly as a single
``simulate()`` of the model calls it (``events._run_compiled``), and
``ensemble_rodas4_events`` calls ``rodas4_advance_events`` per observer interval as
``events.CompiledEventIntegrator`` does, so every member is that run, bit for bit.  This module

* checks what can run (dopri5, dop853 and rodas4 with a dense LU, on threads or on
  Dask as ``ensemble_dask`` sends any chunk; scipy's methods are refused with what to
  use instead) and makes the routine's settings;
* gives a chunk its scratch (the event work arrays and a log, as a single run has);
* says why a member failed (chattering: the events' own error);
* makes the per-member event information of the Dataset: ``event_time`` and
  ``event_id`` (member, event), ``event_before`` and ``event_after`` (member, event,
  event_value: the values the actions write, as ``sim.events``' ``before``/``after``),
  the ``event_name`` and ``event_value`` coordinates, ``event_count``, ``stopped`` and
  ``t_stop``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

import numpy as np

from ..errors import ArgumentError, DyngenError, EnsembleWarning
from .compiled import EXPLICIT_METHODS, explicit_settings
from .stiff import uses_sparse_lu
from .events import EVENT_WORK_ROWS, LOG_CAPACITY, EventRecord, _chatter_error, _continuous_options, event_table

COMPILED_EVENT_METHODS = (*EXPLICIT_METHODS, "rodas4")
STATUS_TERMINAL = 2  # templates/integrators.py.j2: EVENT_TERMINAL (a terminal event stopped the member)
STATUS_CHATTER = -7  # EVENT_CHATTER
DEFAULT_MAX_EVENTS = 100

if TYPE_CHECKING:
    from .ensemble import Blocks


def has_events(module: Any) -> bool:
    """Whether the module's model declares events."""
    return bool(module.__dict__.get("N_EVENTS"))


def check_event_ensemble(method: str, module: Any, max_events: Any) -> int:
    """Refuse what ensembles of a model with events cannot run yet, saying what to use;
    returns ``max_events`` checked."""
    if method not in COMPILED_EVENT_METHODS:
        raise DyngenError(
            f"ensemble: integrator {method!r} does not run a model with events (System.add_event) in an ensemble "
            "yet; use integrator='dopri5', 'dop853' or 'rodas4' (compiled: on threads or Dask), or simulate() in a "
            f"loop with sim.reset() between the runs for {method!r}"
        )
    if method == "rodas4" and uses_sparse_lu(module):  # as simulate() with events
        raise DyngenError(
            "ensemble: rodas4 with events needs the dense LU (fewer than 150 states, or a dense Jacobian); "
            "use 'dopri5' or 'dop853' for this model's ensemble, or BDF/Radau with simulate() in a loop"
        )
    if isinstance(max_events, bool) or not isinstance(max_events, (int, np.integer)) or max_events < 0:
        raise ArgumentError(f"ensemble: max_events must be a non-negative integer, not {max_events!r}")
    return int(max_events)


def event_settings(method: str, options: Mapping[str, Any], fixed_step: bool, observer_dt: float) -> tuple:
    """The compiled routine's option arguments, as ``simulate()`` makes them for a model
    with events (dopri5/dop853: one continuous integration over the run,
    ``events._continuous_options``; rodas4: as without events)."""
    if method == "rodas4":
        from .ensemble import plan_settings

        return plan_settings(method, options, fixed_step, observer_dt)
    return explicit_settings(method, _continuous_options(observer_dt, fixed_step, dict(options))).arguments()


def chunk_scratch(module: Any) -> tuple:
    """``kinds, ew, eg, log_t, log_i, log_v`` for one compiled call (one chunk of members
    on one thread): what ``events._run_compiled`` gives a single run."""
    table = event_table(module)
    n_events = len(table.events)
    return (
        table.kinds, np.zeros((EVENT_WORK_ROWS, table.n)), np.zeros((3, n_events)), np.empty(LOG_CAPACITY),
        np.empty(LOG_CAPACITY, dtype=np.int64), np.empty((LOG_CAPACITY, 2 * (table.n + table.m))),
    )  # fmt: skip


class ValueColumns(NamedTuple):
    """What the members' ``event_before``/``event_after`` keep: every place of y and p
    (concatenated, as a log row's halves) that some event's action writes."""

    names: list[str]  # "path.states.key" / "path.inputs.key", "...[i, j]" for an element of an array
    columns: np.ndarray  # int64: the places in (y, p)
    written: np.ndarray  # bool (N_EVENTS, columns): which event writes which column (the others are NaN)


def value_columns(module: Any) -> ValueColumns:
    """The module's ValueColumns, in the order of the events and of their writes
    (``EventTable.writes``: the keys of ``EventRecord.before``)."""
    table = event_table(module)
    names: list[str] = []
    places: dict[int, int] = {}  # place in (y, p) -> column
    by_event: list[list[int]] = []
    for writes in table.writes:
        columns = []
        for name, before, _, size, shape in writes:
            labels = [name] if shape is None else [f"{name}[{', '.join(map(str, i))}]" for i in np.ndindex(*shape)]
            for place, label in zip(range(before, before + size), labels):
                if place not in places:
                    places[place] = len(names)
                    names.append(label)
                columns.append(places[place])
        by_event.append(columns)
    written = np.zeros((len(table.writes), len(names)), dtype=bool)
    for k, columns in enumerate(by_event):
        written[k, columns] = True
    return ValueColumns(names, np.array(list(places), dtype=np.int64), written)


def event_names(module: Any) -> list[str]:
    """Each event as ``"<system path>.<event name>"``, in the module's EVENTS order."""
    return [f"{system}.{name}" for system, name, *_ in module.EVENTS]


def chatter_reason(method: str, module: Any, t: float, last: int) -> str:
    """A chattering member's reason (``last``: its last logged event, -1 if unknown)."""
    records = []
    if last >= 0:
        system, name, *_ = module.EVENTS[last]
        records.append(EventRecord(t, system, name, {}, {}))
    return str(_chatter_error(method, t, records))


def last_events(event_i: np.ndarray, event_count: np.ndarray) -> np.ndarray:
    """Each member's last logged event (-1 when none was kept)."""
    kept = np.minimum(event_count, event_i.shape[1])
    last = np.full(event_count.shape, -1, dtype=np.int64)
    some = kept > 0
    last[some] = event_i[np.flatnonzero(some), kept[some] - 1]
    return last


def event_variables(module: Any, blocks: "Blocks") -> tuple[dict, dict]:
    """The Dataset's variables and coordinates of the members' events (``to_dataset``'s
    ``extra``): ``event_time``/``event_id`` (member, event;
    NaN / -1 past a member's last), the ``event_name`` coordinate (``event_id`` indexes
    it), ``event_before``/``event_after`` (member, event, event_value: the value of each
    place an action writes, before and after the action; NaN where that event does not
    write it, and past a member's last event), the ``event_value`` coordinate naming
    those places, ``event_count`` (every event, also those past ``max_events``),
    ``stopped`` (a terminal event ended the member) and ``t_stop`` (when the member's
    run ended: its terminal event, else the last output time; NaN for a failed member)."""
    event_count, status = blocks.event_count, blocks.status
    kept = np.minimum(event_count, blocks.event_t.shape[1])
    width = int(kept.max()) if kept.size else 0
    times, ids = blocks.event_t[:, :width].copy(), blocks.event_i[:, :width].copy()
    before, after = blocks.event_before[:, :width].copy(), blocks.event_after[:, :width].copy()
    past = np.arange(width)[None, :] >= kept[:, None]
    times[past], ids[past] = np.nan, -1
    values = value_columns(module)
    unwritten = np.ones((*ids.shape, len(values.names)), dtype=bool)
    unwritten[~past] = ~values.written[ids[~past]]
    before[unwritten], after[unwritten] = np.nan, np.nan
    finished = (status == 1) | (status == STATUS_TERMINAL)
    per_value = ("member", "event", "event_value")
    variables = {
        "event_time": (("member", "event"), times), "event_id": (("member", "event"), ids),
        "event_before": (per_value, before), "event_after": (per_value, after),
        "event_count": ("member", event_count), "stopped": ("member", status == STATUS_TERMINAL),
        "t_stop": ("member", np.where(finished, blocks.t_reached, np.nan)),
    }  # fmt: skip
    coordinates = {
        "event_name": ("event_name", np.array(event_names(module), dtype=str)),
        "event_value": ("event_value", np.array(values.names, dtype=str)),
    }
    return variables, coordinates


def warn_truncated(event_count: np.ndarray, max_events: int) -> None:
    """Say when members had more events than ``max_events`` keeps (their count is whole;
    ``max_events=0`` asked for the counts alone: nothing to say)."""
    over = np.flatnonzero(event_count > max_events)
    if over.size and max_events > 0:
        warnings.warn(
            f"ensemble: {over.size} members had more than max_events={max_events} events (member {int(over[0])}: "
            f"{int(event_count[over[0]])}); event_time and event_id keep each member's first {max_events}, "
            "event_count counts them all; give max_events= to keep more",
            EnsembleWarning, stacklevel=4,
        )  # fmt: skip
