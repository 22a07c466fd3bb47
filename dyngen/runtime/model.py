"""A loaded generated module bound to the system objects it was built from."""

from __future__ import annotations

import operator
from collections import deque
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

    # (slots: a fresh Simulation makes one; made, read and freed faster than a __dict__)
    __slots__ = (
        "module", "_observe", "n_states", "_plan", "_flat", "_dynode_order", "_state_buffer", "_observed_buffer",
        "_containers", "_state_slots", "_state_views", "_computed_containers", "_float_slots", "_array_slots",
        "_array_views", "_computed_keys", "_float_index", "_state_views_at", "_derivatives_at", "_signals_at",
        "_keys_seen_at", "_parameters", "_parameters_at", "_paths", "_states", "_parameter_entries", "_observed",
        "_computed", "_by_signal",
    )  # fmt: skip

    def __init__(
        self, module: ModuleType, systems: list[Any], structure: str | None = None, flat: list[Any] | None = None
    ) -> None:  # fmt: skip
        """Bind ``module`` to the tree ``systems``.  ``structure`` (the tree's
        ``structure_key``) and ``flat`` (its systems in walk order, subsystems first):
        a tree of a structure bound to this module before is bound by the plan made
        then (the walk, its checks and the path lookups are done once per structure)."""
        self.module = module
        self._observe = module.observe
        layout, plans = _binding(module)
        self.n_states = layout.n_states
        self._plan, self._flat = plan, flat = _plan(module, layout, plans, systems, structure, flat)
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
        self._state_buffer = buffer = np.zeros(self.n_states)
        self._observed_buffer = observed_buffer = np.zeros(layout.n_observed)
        # every container a slot reads or writes, once
        self._containers = containers = list(map(getattr, map(flat.__getitem__, plan.container_systems), plan.container_attributes))
        container = containers.__getitem__
        views = _views(buffer, plan.state_views)
        self._state_slots = _new(_Slots, (list(map(container, plan.state_containers)), plan.state_keys, views))
        self._state_views = _new(_Views, (
            list(map(container, plan.state_group_containers)),
            [dict(zip(keys, map(views.__getitem__, positions))) for keys, positions in plan.state_group_entries],
        ))  # fmt: skip
        # both, written with one map(): floats first, then arrays
        self._computed_containers = computed = list(map(container, plan.computed_containers))
        float_containers, array_containers = computed[: plan.n_floats], computed[plan.n_floats :]
        self._float_slots = _new(_Slots, (float_containers, plan.float_keys, ()))
        self._array_slots = _new(_Slots, (array_containers, plan.array_keys, ()))
        self._array_views = _views(observed_buffer, plan.array_views)  # views of the observed buffer; copied at every write-back
        self._computed_keys = plan.computed_keys
        self._float_index = plan.float_index  # read only
        self._state_views_at = -1  # Edits.states after the last write-back
        self._derivatives_at = self._signals_at = -1  # Edits.derivatives, Edits.signals after the last write-back
        self._keys_seen_at = -1  # Edits.structure when every written key was last seen present
        self._parameters: np.ndarray | None = None  # the last gathered, while Edits.signals stands
        self._parameters_at = -1
        self._paths: dict[int, str] | None = None  # the properties' values, once made
        self._states: list[Entry] | None = None
        self._parameter_entries: list[Entry] | None = None
        self._observed: list[Entry] | None = None
        self._computed: list[Entry] | None = None
        self._by_signal: dict[tuple[int, str, str], Entry] | None = None

    # The entries, made when first asked for (a fresh Simulation's run needs only the
    # slots).  Kept in attributes set in __init__, not by cached_property (which needs an
    # instance __dict__).
    @property
    def paths(self) -> dict[int, str]:
        """Each system's path, by its id (Recorder tables)."""
        if self._paths is None:
            self._paths = dict(zip(map(id, self._flat), self._plan.paths))
        return self._paths

    def _entries(self, rows: tuple[tuple[int, tuple], ...]) -> list[Entry]:
        flat = self._flat
        return [_new(Entry, (flat[i], *row)) for i, row in rows]

    @property
    def states(self) -> list[Entry]:
        if self._states is None:
            self._states = self._entries(self._plan.states)
        return self._states

    @property
    def parameters(self) -> list[Entry]:
        if self._parameter_entries is None:
            self._parameter_entries = self._entries(self._plan.parameters)
        return self._parameter_entries

    @property
    def observed(self) -> list[Entry]:
        if self._observed is None:
            self._observed = self._entries(self._plan.observed)
        return self._observed

    @property
    def computed(self) -> list[Entry]:
        """The observed signals a write-back sets (not parameters)."""
        if self._computed is None:
            observed = self.observed
            self._computed = [observed[i] for i in self._plan.computed]
        return self._computed

    def remembered(self) -> tuple[list[Any], list[Any], tuple[str, ...]]:
        """What ``Simulation.reset`` restores, as parallel lists (systems, containers,
        keys): the states, the computed signals, and the inputs an event's action
        writes (a mode)."""
        plan = self._plan
        return (
            list(map(self._flat.__getitem__, plan.remembered_systems)),
            list(map(self._containers.__getitem__, plan.remembered_containers)),
            plan.remembered_keys,
        )  # fmt: skip

    @property
    def by_signal(self) -> dict[tuple[int, str, str], Entry]:
        """Every state and observed signal by (id of its system, kind, key): what
        Recorders look up (made when one first asks)."""
        if self._by_signal is None:
            self._by_signal = {(id(e.system), e.kind, e.key): e for e in self.states + self.observed}
        return self._by_signal

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

    def states_to_advance(self) -> np.ndarray:
        """The state vector for a run that advances it in place and then calls
        ``write_back`` with it: the buffer the containers' states are views of, while
        they are (the run moves them, as the write-back would), else the states
        gathered anew (before the first write-back, when no container holds a view of the
        buffer yet: into the buffer, so that the write-back need not copy them there)."""
        if Edits.states == self._state_views_at:
            return self._state_buffer
        if self._state_views_at == -1:
            buffer = self._state_buffer
            try:  # the states' bytes (float64 arrays, see gather_states) joined into the buffer, in C
                memoryview(buffer).cast("B")[:] = bytearray().join(self._state_slots.get_all())
                return buffer
            except (TypeError, ValueError):  # not C-contiguous, or another size: gather_states says what
                pass
        return self.gather_states()

    def peek_parameters(self) -> np.ndarray:
        """``gather_parameters()`` without its copy when it is known: read it only."""
        if self._parameters is not None and Edits.signals == self._parameters_at:
            return self._parameters
        return self.gather_parameters(copy=False)

    def gather_parameters(self, copy: bool = True) -> np.ndarray:
        """The parameter vector; ``copy=False``: the one kept (while no signal is
        edited), to be read only."""
        if self._parameters is not None and Edits.signals == self._parameters_at:
            return self._parameters.copy() if copy else self._parameters
        scalars = self._plan.scalar_parameters
        if scalars is not None:  # every parameter a float of a container, in order: one read each, in C
            values = list(map(dict.__getitem__, map(self._containers.__getitem__, scalars[0]), scalars[1]))
            if set(map(type, values)) <= _FLOAT_ONLY:
                p = np.array(values, dtype=np.float64)
                self._parameters, self._parameters_at = p.copy() if copy else p, Edits.signals
                return p
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
            self._parameters, self._parameters_at = p.copy() if copy else p, Edits.signals
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
        buffer, observed, edits = self._state_buffer, self._observed_buffer, Edits
        if y is not buffer:  # (states_to_advance: a run advanced the buffer itself)
            buffer[:] = y
        self._observe(t, buffer, p, observed)
        added = False
        if edits.states != self._state_views_at:  # a state was set (or removed: a structure edit)
            self._state_views.place()
        if edits.derivatives != self._derivatives_at or edits.signals != self._signals_at:  # an entry replaced or removed
            if edits.structure != self._keys_seen_at:  # only a structure edit removes a key
                added = not (self._array_slots.all_present() and self._float_slots.all_present())
        values = observed[self._float_index].tolist()
        if self._array_views:  # copies: an array an observer kept stays as it was (and holds no large buffer)
            values += map(_copy_array, self._array_views)
        any(map(_setitem, self._computed_containers, self._computed_keys, values))  # None each: runs them all
        self._keys_seen_at = edits.structure
        # other models of these systems must not trust their views or parameters now
        signals = edits.signals
        parameters_current = signals == self._parameters_at
        edits.states = self._state_views_at = edits.states + 1
        edits.derivatives = self._derivatives_at = edits.derivatives + 1
        edits.signals = self._signals_at = signals = signals + 1
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


# What binding learns of a loaded module, kept in its namespace (a fresh Simulation of a
# model built before reads its tables once; a WeakKeyDictionary's lookup makes a weakref
# each time): its _Layout, and per structure_key the plan the trees of that structure bind by.
_BINDING = "_dyngen_binding"


def _binding(module: ModuleType) -> tuple[_Layout, dict[str, "_Plan"]]:
    known = module.__dict__.get(_BINDING)
    if known is None:
        known = module.__dict__[_BINDING] = (_read_layout(module), {})
    return known


def _layout(module: ModuleType) -> _Layout:
    return _binding(module)[0]


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


class _Plan(NamedTuple):
    """How a module binds to a tree of one structure, by the index of each signal's
    system among the tree's systems in walk order (``flat``); made from the walk of
    the first tree of that structure bound."""

    paths: tuple[str, ...]  # of flat[i]
    states: tuple[tuple[int, tuple], ...]  # per entry: (index in flat, layout row)
    parameters: tuple[tuple[int, tuple], ...]
    observed: tuple[tuple[int, tuple], ...]
    computed: tuple[int, ...]  # indices into observed: the signals a write-back sets
    # every container used below, by the index of its system in flat and its attribute
    # (a System's "_states" for "states"...; what the fingerprint reads)
    container_systems: tuple[int, ...]
    container_attributes: tuple[str, ...]
    state_containers: tuple[int, ...]  # per state in the order of y: index into containers
    state_keys: tuple[str, ...]
    state_views: "_ViewPlan"  # the states' views of the state buffer, in the order of y
    state_group_containers: tuple[int, ...]  # per container of states: its index into containers,
    state_group_entries: tuple[tuple[tuple[str, ...], tuple[int, ...]], ...]  # and its (keys, positions)
    computed_containers: tuple[int, ...]  # the computed signals: the scalar ones, then the arrays
    computed_keys: tuple[str, ...]
    n_floats: int  # how many of them are scalars
    float_keys: tuple[str, ...]
    float_index: np.ndarray  # their places in the observed vector (read only)
    array_keys: tuple[str, ...]
    array_views: "_ViewPlan"  # the computed arrays' views of the observed buffer
    # every parameter a scalar of a container, the k-th at place k: (indices into containers, keys); else None
    scalar_parameters: tuple[tuple[int, ...], tuple[str, ...]] | None
    remembered_systems: tuple[int, ...]  # CompiledModel.remembered: indices into flat,
    remembered_containers: tuple[int, ...]  # into containers,
    remembered_keys: tuple[str, ...]  # and the keys


_new = tuple.__new__  # a NamedTuple made without its Python-level __new__
_setitem = dict.__setitem__  # a container's entry, stored as it is (no conversion, no count)
_copy_array = np.ndarray.copy
_FLOAT_ONLY = frozenset((float,))

def _plan(
    module: ModuleType, layout: _Layout, plans: dict[str, _Plan], systems: list[Any], structure: str | None,
    flat: list[Any] | None,
) -> tuple[_Plan, list[Any]]:  # fmt: skip
    """The plan that binds ``module`` (its ``_binding``: ``layout``, ``plans``) to
    ``systems``, and the tree's systems in walk order.  Known by the structure key
    (which names the tree's systems, classes, names, containers and shapes: what the
    walk's paths and checks depend on), the plan is used without walking the tree
    again; else it is made from a walk."""
    if structure is not None and flat is not None:
        known = plans.get(structure)
        if known is not None and len(known.paths) == len(flat) and len(set(map(id, flat))) == len(flat):
            return known, flat
    nodes = walk(systems)  # the checks: dynode systems, a system in the tree twice, clashing paths
    walked = [n.system for n in nodes]
    made = _make_plan(module, layout, walked, [n.path for n in nodes])
    if structure is not None and flat is not None and len(flat) == len(walked) and all(map(operator.is_, flat, walked)):
        if len(plans) >= 64:
            plans.clear()
        plans[structure] = made
    return made, walked


class _ViewPlan(NamedTuple):
    """Views of a buffer: the slices, and the shape of each view (None: the 1-d slice
    itself); ``reshaped``: whether any has a shape."""

    slices: tuple[slice, ...]
    shapes: tuple[tuple | None, ...]
    reshaped: bool


def _view_plan(places: list[tuple[int, int, tuple]]) -> _ViewPlan:
    """The ``_ViewPlan`` of views at ``(start, stop, shape of the value)``."""
    shapes = tuple(None if shape == (stop - start,) else tuple(shape) for start, stop, shape in places)
    return _ViewPlan(tuple(slice(start, stop) for start, stop, _ in places), shapes, any(s is not None for s in shapes))


def _views(buffer: np.ndarray, plan: _ViewPlan) -> list[np.ndarray]:
    """The views of ``buffer`` that ``plan`` places (the slices taken in C)."""
    views = list(map(buffer.__getitem__, plan.slices))
    if plan.reshaped:
        views = [view if shape is None else view.reshape(shape) for view, shape in zip(views, plan.shapes)]
    return views


# The attribute of a System that holds each kind of container (what the fingerprint reads)
_CONTAINER_ATTRIBUTES = {"states": "_states", "ders": "_ders", "inputs": "_inputs", "outputs": "_outputs"}


def _make_plan(module: ModuleType, layout: _Layout, flat: list[Any], paths: list[str]) -> _Plan:
    index = {path: i for i, path in enumerate(paths)}

    def placed(rows: list[tuple]) -> tuple[tuple[int, tuple], ...]:
        return tuple((index[row[0]], row) for row in rows)

    states, parameters, observed = placed(layout.states), placed(layout.parameters), placed(layout.observed)
    parameter_keys = {(i, row[1], row[2]) for i, row in parameters}
    computed = tuple(k for k, (i, row) in enumerate(observed) if (i, row[1], row[2]) not in parameter_keys)
    containers: dict[tuple[int, str], int] = {}

    def container(i: int, kind: str) -> int:
        return containers.setdefault((i, kind), len(containers))

    in_order = [states[k] for k in sorted(range(len(states)), key=lambda k: states[k][1][3])]  # the order of y
    state_containers = tuple(container(i, "states") for i, _ in in_order)
    groups: dict[int, tuple[list[str], list[int]]] = {}
    for position, (c, (_, row)) in enumerate(zip(state_containers, in_order)):
        keys, positions = groups.setdefault(c, ([], []))
        keys.append(row[2])
        positions.append(position)
    floats = [observed[k] for k in computed if observed[k][1][5] == ()]
    arrays = [observed[k] for k in computed if observed[k][1][5] != ()]
    float_index = np.array([row[3] for _, row in floats], dtype=np.intp)
    float_index.flags.writeable = False
    float_containers = tuple(container(i, row[1]) for i, row in floats)
    array_containers = tuple(container(i, row[1]) for i, row in arrays)
    # reset() restores the states, the computed signals, and the inputs an event's action writes (a mode)
    written = {name for event in module.__dict__.get("EVENTS", ()) for name in event[5]}
    by_actions = [(i, row) for i, row in parameters if f"{row[0]}.{row[1]}.{row[2]}" in written]
    remembered = [*states, *(observed[k] for k in computed), *by_actions]
    remembered_containers = tuple(container(i, row[1]) for i, row in remembered)
    in_place = all(
        row[1] != ATTRIBUTE_KIND and row[5] == () and (row[3], row[4]) == (k, k + 1) for k, (_, row) in enumerate(parameters)
    ) and len(parameters) == layout.n_parameters  # fmt: skip
    scalar_parameters = (
        (tuple(container(i, row[1]) for i, row in parameters), tuple(row[2] for _, row in parameters)) if in_place else None
    )  # fmt: skip
    float_keys, array_keys = tuple(row[2] for _, row in floats), tuple(row[2] for _, row in arrays)
    return _Plan(
        paths=tuple(paths), states=states, parameters=parameters, observed=observed, computed=computed,
        container_systems=tuple(i for i, _ in containers),
        container_attributes=tuple(_CONTAINER_ATTRIBUTES.get(kind, kind) for _, kind in containers),
        state_containers=state_containers, state_keys=tuple(row[2] for _, row in in_order),
        state_views=_view_plan([(row[3], row[4], np.shape(flat[i].states.raw_get(row[2]))) for i, row in in_order]),
        state_group_containers=tuple(groups),
        state_group_entries=tuple((tuple(keys), tuple(positions)) for keys, positions in groups.values()),
        computed_containers=float_containers + array_containers, computed_keys=float_keys + array_keys,
        n_floats=len(float_containers), float_keys=float_keys, float_index=float_index, array_keys=array_keys,
        array_views=_view_plan([(row[3], row[4], row[5]) for _, row in arrays]),
        scalar_parameters=scalar_parameters,
        remembered_systems=tuple(i for i, _ in remembered), remembered_containers=remembered_containers,
        remembered_keys=tuple(row[2] for _, row in remembered),
    )  # fmt: skip


def dynode_order(module: ModuleType) -> np.ndarray:
    """Where each element of dynode's vector is in the module's y: STATES lists the
    states in dynode's order (a grouped model packs them in y, see layout.py)."""
    ranges = [np.arange(start, stop, dtype=np.intp) for signals in module.STATES.values() for start, stop, _ in signals.values()]
    return np.concatenate(ranges) if ranges else np.empty(0, dtype=np.intp)


def state_names_in_dynode_order(module: ModuleType) -> list[str]:
    """The names of the elements of the vector observers get (dynode's layout)."""
    return [str(module.STATE_NAMES[i]) for i in dynode_order(module)]


class _Slots(NamedTuple):
    """Container entries as parallel lists (container, key, and a value each, when fixed),
    read and written with the per-entry dict calls run in C by map()."""

    containers: list[Any]
    keys: Any  # a list or tuple
    values: Any

    def get_all(self) -> list[Any]:
        return list(map(dict.__getitem__, self.containers, self.keys))

    def set_all(self, values: list[Any]) -> None:
        any(map(dict.__setitem__, self.containers, self.keys, values))  # None each: runs them all

    def all_present(self) -> bool:
        return all(map(dict.__contains__, self.containers, self.keys))


class _Views(NamedTuple):
    """Fixed values (views of the buffers) to place in containers, grouped by
    container: one ``dict.update`` each instead of one call per entry."""

    containers: list[Any]
    entries: list[dict]

    def place(self) -> None:
        deque(map(dict.update, self.containers, self.entries), maxlen=0)
