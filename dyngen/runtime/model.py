"""A loaded generated module bound to the system objects it was built from."""

from __future__ import annotations

import weakref
from collections import deque
from dataclasses import dataclass
from functools import cached_property
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from ..containers import Edits
from ..errors import DyngenError
from ..ir import ATTRIBUTE_KIND
from ..attributes import is_number
from ..shared import numeric_value
from ..tree import walk


class Entry(NamedTuple):
    """One signal in a flat vector: its system, container, key and place."""

    system: Any
    path: str
    kind: str
    key: str
    start: int
    stop: int
    shape: tuple[int, ...]

    def _is_scalar(self, as_attribute: bool) -> bool:
        # dynode: a one-element state or der read as an attribute is a float
        one = self.stop - self.start == 1
        return self.shape == () or (as_attribute and self.kind in ("states", "ders") and one)

    def value(self, vector: np.ndarray, as_attribute: bool) -> Any:
        """The signal as dynode would present it, from a flat vector."""
        chunk = vector[self.start:self.stop]
        if self._is_scalar(as_attribute):
            return float(chunk[0])
        return chunk.reshape(self.shape).copy()

    def values(self, rows: np.ndarray, as_attribute: bool) -> list:
        """``value`` of every row of ``rows`` (samples x vector), at once."""
        block = rows[:, self.start:self.stop]
        if self._is_scalar(as_attribute):
            return block[:, 0].tolist()
        return list(block.reshape((len(block), *self.shape)).copy())


class CompiledModel:
    """Moves values between the systems' containers and the module's flat vectors."""

    def __init__(self, module: ModuleType, systems: list[Any]) -> None:
        self.module = module
        self._observe = module.observe
        layout = _layout(module)
        self.n_states = layout.n_states
        nodes = {n.path: n.system for n in walk(systems)}
        self.paths = {id(system): path for path, system in nodes.items()}  # system -> its path (Recorder tables)
        self.states = [Entry(nodes[row[0]], *row) for row in layout.states]
        self.parameters = [Entry(nodes[row[0]], *row) for row in layout.parameters]
        self.observed = [Entry(nodes[row[0]], *row) for row in layout.observed]
        parameter_keys = {(id(e.system), e.kind, e.key) for e in self.parameters}
        self.computed = [e for e in self.observed if (id(e.system), e.kind, e.key) not in parameter_keys]
        # The states simulate() leaves in the containers are views of a buffer that lives
        # as long as this object (updated in place, as dynode's are); array ders and
        # outputs are new arrays at every write-back (dynode's are new at every RHS
        # evaluation: an observer may keep them); floats are set one by one.  The entries are kept
        # as parallel lists (_Slots): map() runs the per-entry dict calls in C, in a
        # third of the time of a Python loop (400 states: 94 -> 30 us per gather), and
        # the views are placed one dict.update per container (_Views: 400 states of
        # 200 containers, 24 -> 9 us): the states' when states were set, the others'
        # (ders, array signals) when those were.
        self._dynode_order = layout.dynode_order  # None: y is dynode's vector (nothing packed)
        self._state_buffer = np.zeros(self.n_states)
        self._observed_buffer = np.zeros(layout.n_observed)
        in_order = sorted(self.states, key=lambda e: e.start)  # gathered in the order of y
        self._state_slots = _Slots(
            [e.system.states for e in in_order],
            [e.key for e in in_order],
            [self._view(self._state_buffer, e, np.shape(e.system.states.raw_get(e.key))) for e in in_order],
        )
        arrays = [e for e in self.computed if e.shape != ()]
        self._array_slots = _Slots([getattr(e.system, e.kind) for e in arrays], [e.key for e in arrays], [])
        # views of the observed buffer; copied at every write-back
        self._array_views = [self._view(self._observed_buffer, e, e.shape) for e in arrays]
        self._state_views = _Views.of(self._state_slots)
        floats = [e for e in self.computed if e.shape == ()]
        self._float_slots = _Slots([getattr(e.system, e.kind) for e in floats], [e.key for e in floats], [])
        self._float_index = np.array([e.start for e in floats], dtype=np.intp)
        # both, written with one map(): floats first, then arrays
        self._computed_slots = _Slots(self._float_slots.containers + self._array_slots.containers,
                                      self._float_slots.keys + self._array_slots.keys, [])  # fmt: skip
        self._state_views_at = -1  # Edits.states after the last write-back
        self._signal_views_at = (-1, -1)  # Edits.derivatives, Edits.signals after the last write-back
        self._keys_seen_at = -1  # Edits.structure when every written key was last seen present
        self._parameters: np.ndarray | None = None  # the last gathered, while Edits.signals stands
        self._parameters_at = -1

    @cached_property
    def by_signal(self) -> dict[tuple[int, str, str], Entry]:
        """Every state and observed signal by (id of its system, kind, key): what
        Recorders look up (made when one first asks)."""
        return {(id(e.system), e.kind, e.key): e for e in self.states + self.observed}

    @staticmethod
    def _view(buffer: np.ndarray, entry: "Entry", shape: tuple) -> np.ndarray:
        return buffer[entry.start:entry.stop].reshape(shape)

    def in_dynode_order(self, y: np.ndarray) -> np.ndarray:
        """``y`` (or samples x states) as dynode lays it out, system by system: what
        observers are given."""
        return y if self._dynode_order is None else y[..., self._dynode_order]

    def from_dynode_order(self, y: np.ndarray) -> np.ndarray:
        """The inverse of ``in_dynode_order``: an observer's vector (or samples x
        states) laid out as the module's y."""
        if self._dynode_order is None:
            return y
        packed = np.empty_like(y)
        packed[..., self._dynode_order] = y
        return packed

    def options_in_module_layout(self, options: dict) -> dict:
        """Solver options with per-state ``atol``/``rtol`` vectors, which users write in
        dynode's layout (as their observers see ``y``), moved to the module's y."""
        if self._dynode_order is None:
            return options
        moved = dict(options)
        for key in ("atol", "rtol"):
            value = options.get(key)
            if value is not None and np.ndim(value) == 1 and np.size(value) == self.n_states:
                moved[key] = self.from_dynode_order(np.asarray(value, dtype=float))
        return moved

    def gather_states(self) -> np.ndarray:
        if Edits.states == self._state_views_at:  # the containers hold the views of the buffer
            return self._state_buffer.copy()
        values = self._state_slots.get_all()  # float64 arrays of the built shapes (the containers
        # convert what they are given; Edits sees other shapes; a value stored past their API is
        # not supported: its bytes would be read as float64)
        try:  # their bytes joined, in C: a third of the time of np.concatenate (400 states: 23 -> 7 us)
            y = np.frombuffer(bytearray().join(values), dtype=np.float64)
        except TypeError:  # an array that is not C-contiguous (a Fortran-ordered matrix)
            y = np.concatenate(values, axis=None, dtype=np.float64) if values else np.empty(0)
        if y.size != self.n_states:  # Edits counts every change of shape made through the containers
            raise DyngenError(
                f"the states hold {y.size} values, the model was built for {self.n_states}: an entry was "
                "stored past the containers' API; store it as system.states.key = value"
            )
        return y if y.flags.aligned else y.copy()  # numba takes aligned arrays only

    def peek_states(self) -> np.ndarray:
        """``gather_states()`` without its copy when the buffer is current: for a caller
        that only reads it (and does not keep it past the next write-back)."""
        if Edits.states == self._state_views_at:
            return self._state_buffer
        return self.gather_states()

    def peek_parameters(self) -> np.ndarray:
        """``gather_parameters()`` without its copy when it is known: read it only."""
        if self._parameters is not None and Edits.signals == self._parameters_at:
            return self._parameters
        return self.gather_parameters()

    def gather_parameters(self) -> np.ndarray:
        if self._parameters is not None and Edits.signals == self._parameters_at:
            return self._parameters.copy()
        p = np.empty(_layout(self.module).n_parameters)
        only_floats = True
        for e in self.parameters:
            if e.kind == ATTRIBUTE_KIND:  # a plain attribute (an assignment is an Edits.signals edit too)
                raw = getattr(e.system, e.key)
                if type(raw) is float or is_number(raw):
                    p[e.start] = raw
                    continue
                raise DyngenError(
                    f"{e.path}.{e.key} holds {raw!r}; it is a parameter of the model (make_parameter), "
                    "so it must hold a number (int or float)"
                )
            raw = getattr(e.system, e.kind).raw_get(e.key)
            if e.shape == () and type(raw) is float:  # the common case, fast
                p[e.start] = raw
                continue
            only_floats = False  # an array or a list can change in place: gather it every time
            value = numeric_value(raw)
            if value is None or value.size != e.stop - e.start:
                raise DyngenError(
                    f"{e.kind}.{e.key} of {type(e.system).__name__} holds {raw!r}; it was a numeric "
                    f"value of shape {e.shape} when the model was built"
                )
            p[e.start:e.stop] = value.ravel()
        if only_floats:
            self._parameters, self._parameters_at = p.copy(), Edits.signals
        return p

    def observe(self, t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
        out = np.empty(self._observed_buffer.shape[0])
        self.module.observe(t, y, p, out)
        return out

    def write_back(self, t: float, y: np.ndarray, p: np.ndarray) -> bool:
        """Leave the values at ``(t, y)`` in every container, as dynode does (arrays
        are updated in place from the second time on, as dynode's are).

        Returns True when a container got a key it did not have (e.g. ders that
        ``__init__`` did not create).
        """
        self._state_buffer[:] = y
        self._observe(t, self._state_buffer, p, self._observed_buffer)
        added = False
        if Edits.states != self._state_views_at:  # a state was set (or removed: a structure edit)
            self._state_views.place()
        if (Edits.derivatives, Edits.signals) != self._signal_views_at:  # an entry was replaced or removed
            if Edits.structure != self._keys_seen_at:  # only a structure edit removes a key
                added = not (self._array_slots.all_present() and self._float_slots.all_present())
        values = self._observed_buffer[self._float_index].tolist()
        if self._array_views:  # copies: an array an observer kept stays as it was (and holds no large buffer)
            values += map(np.ndarray.copy, self._array_views)
        self._computed_slots.set_all(values)
        self._keys_seen_at = Edits.structure
        # other models of these systems must not trust their views or parameters now
        signals = Edits.signals
        parameters_current = signals == self._parameters_at
        Edits.states = self._state_views_at = Edits.states + 1
        Edits.derivatives = derivatives = Edits.derivatives + 1
        Edits.signals = signals = signals + 1
        self._signal_views_at = (derivatives, signals)
        if parameters_current:  # this write-back changed no parameter
            self._parameters_at = signals
        return added

    def explain_failure(self, t: float, p: np.ndarray) -> str:
        """Why a solver may have stopped where the containers now are: the states
        whose derivative is not finite there ("" when all are finite)."""
        y = self.gather_states()
        dy = np.empty(self.n_states)
        self.module.rhs(t, y, p, dy)
        bad = np.flatnonzero(~np.isfinite(dy))
        if bad.size == 0:
            return ""
        names = ", ".join(self.state_name(int(i)) for i in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        return f"; the derivative is not finite there for: {names}{more}"

    def state_name(self, index: int) -> str:
        return str(self.module.STATE_NAMES[index])


class _Layout(NamedTuple):
    """What a CompiledModel takes from its module, the same for every binding: the
    sizes and, per signal, (path, kind, key, start, stop, shape)."""

    n_states: int
    n_observed: int
    n_parameters: int
    states: list[tuple]
    parameters: list[tuple]
    observed: list[tuple]
    dynode_order: np.ndarray | None  # None: y is dynode's vector


# Per loaded module (a fresh Simulation of a model built before reads its tables once).
_LAYOUTS: "weakref.WeakKeyDictionary[ModuleType, _Layout]" = weakref.WeakKeyDictionary()


def _layout(module: ModuleType) -> _Layout:
    known = _LAYOUTS.get(module)
    if known is None:
        known = _LAYOUTS[module] = _read_layout(module)
    return known


def _read_layout(module: ModuleType) -> _Layout:
    def rows(table: dict, kind: str | None) -> list[tuple]:
        found = []
        for path, signals in table.items():
            for name, (start, stop, shape) in signals.items():
                if kind:
                    entry_kind, key = kind, name
                elif "." in name:
                    entry_kind, key = name.split(".", 1)
                else:  # a plain attribute traced as a parameter (Simulation.make_parameter)
                    entry_kind, key = ATTRIBUTE_KIND, name
                found.append((path, entry_kind, key, start, stop, tuple(shape)))
        return found

    n_states = int(module.N_STATES)
    states = rows(module.STATES, "states")
    stops = [0] + [row[4] for row in sorted(states, key=lambda row: row[3])]
    if any(row[3] != stop for row, stop in zip(sorted(states, key=lambda row: row[3]), stops)) or stops[-1] != n_states:
        raise DyngenError(f"{module.__name__}: its STATES table does not cover the state vector once; rebuild it")
    order = dynode_order(module)
    return _Layout(
        n_states, int(module.N_OBSERVED), int(module.N_PARAMETERS), states, rows(module.PARAMETERS, None),
        rows(module.OBSERVED, None), None if np.array_equal(order, np.arange(n_states)) else order,
    )  # fmt: skip


def dynode_order(module: ModuleType) -> np.ndarray:
    """Where each element of dynode's vector is in the module's y: STATES lists the
    states in dynode's order (a grouped model packs them in y, see layout.py)."""
    ranges = [np.arange(start, stop, dtype=np.intp) for signals in module.STATES.values() for start, stop, _ in signals.values()]
    return np.concatenate(ranges) if ranges else np.empty(0, dtype=np.intp)


def state_names_in_dynode_order(module: ModuleType) -> list[str]:
    """The names of the elements of the vector observers get (dynode's layout)."""
    return [str(module.STATE_NAMES[i]) for i in dynode_order(module)]


@dataclass(frozen=True)
class _Slots:
    """Container entries as parallel lists (container, key, and a value each, when fixed),
    read and written with the per-entry dict calls run in C by map()."""

    containers: list[Any]
    keys: list[Any]
    values: list[Any]

    def get_all(self) -> list[Any]:
        return list(map(dict.__getitem__, self.containers, self.keys))

    def set_all(self, values: list[Any]) -> None:
        any(map(dict.__setitem__, self.containers, self.keys, values))  # None each: runs them all

    def all_present(self) -> bool:
        return all(map(dict.__contains__, self.containers, self.keys))


@dataclass(frozen=True)
class _Views:
    """Fixed values (views of the buffers) to place in containers, grouped by
    container: one ``dict.update`` each instead of one call per entry."""

    containers: list[Any]
    entries: list[dict]

    @classmethod
    def of(cls, slots: _Slots) -> "_Views":
        grouped: dict[int, tuple[Any, dict]] = {}
        for container, key, value in zip(slots.containers, slots.keys, slots.values):
            grouped.setdefault(id(container), (container, {}))[1][key] = value
        return cls([c for c, _ in grouped.values()], [e for _, e in grouped.values()])

    def place(self) -> None:
        deque(map(dict.update, self.containers, self.entries), maxlen=0)
