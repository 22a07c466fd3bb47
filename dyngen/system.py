"""The modeling API: a drop-in replacement for dynode 0.4's ``SystemInterface``."""

from __future__ import annotations

from abc import ABC, abstractmethod
from functools import partial, wraps
from graphlib import TopologicalSorter
from typing import Any, Callable, NamedTuple

import numpy as np

from .shared import SESSION, warn_build_time
from .containers import DerivativeContainer, Edits, ParameterContainer, VariableContainer
from .errors import TraceError, UsageError, user_frame_location


class TrackedList(list):
    """A list that counts its in-place edits as structure edits (``Edits``): the
    subsystems of a system and the systems of a simulation are handed out as they
    are, as dynode does, and may be edited by the caller."""


def _counted(name: str) -> Callable:
    method = getattr(list, name)

    @wraps(method)
    def edit(self: TrackedList, *args: Any, **kwargs: Any) -> Any:
        Edits.note_structure()
        return method(self, *args, **kwargs)

    return edit


for _name in (
    "append", "extend", "insert", "remove", "pop", "clear", "sort", "reverse",
    "__setitem__", "__delitem__", "__iadd__", "__imul__",
):  # fmt: skip
    setattr(TrackedList, _name, _counted(_name))
del _name


class System(ABC):
    """A dynamical component: states with derivatives, inputs, outputs, subsystems.

    Subclass it and implement ``do_step(time)``, exactly as with dynode's
    ``SystemInterface``.  dyngen traces ``do_step`` and the connection functions
    symbolically; see the README for what may be written inside them.
    """

    def __init__(self) -> None:
        super().__init__()
        self._subs: list[System] = TrackedList()
        self._states = VariableContainer()
        self._ders = DerivativeContainer()
        self._inputs = ParameterContainer()
        self._outputs = ParameterContainer()
        self._pre_connections: dict[Callable, list[Callable]] = {}
        self._post_connections: dict[Callable, list[Callable]] = {}
        self._events: dict[Callable, Event] = {}

    @property
    def states(self) -> VariableContainer:
        """States of this system (scalars or arrays; attribute and key access)."""
        return self._states

    @property
    def ders(self) -> VariableContainer:
        """Time derivatives of the states, written by ``do_step``."""
        return self._ders

    @property
    def inputs(self) -> ParameterContainer:
        """Inputs: parameters, or signals driven by connections."""
        return self._inputs

    @property
    def outputs(self) -> ParameterContainer:
        """Outputs: signals computed by ``do_step`` or connections."""
        return self._outputs

    def __setattr__(self, name: str, value: Any) -> None:
        Edits.note_structure()  # an attribute may be read by do_step as a constant
        if SESSION.get() is not None:  # set by do_step or a connection while it is traced
            warn_build_time(
                f"sets the attribute {name!r} of a system",
                "keep values that change while the model runs in states or outputs "
                "(self.outputs.x = ...), and count or record in an observer",
            )
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        Edits.note_structure()
        object.__delattr__(self, name)

    # State/der handling (dynode's vector: subsystems first, then own entries) -----
    def _refuse_while_traced(self, name: str) -> None:
        if self._states._dyngen_hook is not None:
            raise TraceError(
                f"{name}() works on the numeric containers and cannot be traced",
                "read and write states and ders by key or attribute (self.states.x, self.ders.x = ...)",
                user_frame_location(),
            )

    def get_states(self) -> np.ndarray:
        """All states of this system and its subsystems as one flat vector, in dynode's
        order (subsystems first, then this system's states in insertion order)."""
        self._refuse_while_traced("get_states")
        parts = [sub.get_states() for sub in self._subs]
        parts.extend(value for _, value in self._states.raw_items())
        return np.concatenate(parts, axis=None) if parts else np.array(parts)

    def dispatch_states(self, idx: int, states: np.ndarray) -> int:
        """Write ``states[idx:]`` into the states of the subsystems and then of this
        system, in place, as dynode does; returns the index after the last one used."""
        self._refuse_while_traced("dispatch_states")
        for sub in self._subs:
            idx = sub.dispatch_states(idx, states)
        for _, value in self._states.raw_items():
            jdx = idx + value.size
            value[:] = np.asarray(states[idx:jdx]).reshape(value.shape)
            idx = jdx
        Edits.states += 1  # written in place: simulate() must gather the states again
        return idx

    def get_ders(self, idx: int, ders: np.ndarray) -> int:
        """Write the ders of the subsystems and then of this system into ``ders[idx:]``,
        as dynode does; returns the index after the last one written."""
        self._refuse_while_traced("get_ders")
        for sub in self._subs:
            idx = sub.get_ders(idx, ders)
        for _, value in self._ders.raw_items():
            jdx = idx + value.size
            ders[idx:jdx] = value.flatten()
            idx = jdx
        return idx

    # Subsystems -------------------------------------------------------------
    def add_subsystem(self, sub_system: "System") -> None:
        """Add a subsystem; its states come before this system's own.

        Raises ``UsageError`` (a ValueError, as in dynode) if it is the system itself.
        """
        if sub_system is self:
            raise UsageError(
                f"Cant have self as subsystem to self! ({type(self).__name__}.add_subsystem was given "
                "the system itself; add a separate instance)",
                user_frame_location(),
            )
        if sub_system not in self._subs:
            self._subs.append(sub_system)

    @property
    def subsystems(self) -> list["System"]:
        """The subsystems, in the order they were added."""
        return self._subs

    # Connections ------------------------------------------------------------
    def _add_connection(
        self,
        table: dict[Callable, list[Callable]],
        kind: str,
        connection_func: Callable,
        dependees: list[Callable] | None,
    ) -> Callable[[], None]:
        if connection_func in table:
            raise UsageError(
                f"This {kind}-connection has already been added! ({callable_name(connection_func)} is "
                f"already a {kind}-connection of this {type(self).__name__}; add each connection once)",
                user_frame_location(),
            )
        # as dynode: the dependees are kept as given, and read when the connections are sorted
        table[connection_func] = dependees or getattr(connection_func, "dependees", [])
        Edits.note_structure()

        def _remove() -> None:
            del table[connection_func]
            Edits.note_structure()

        return _remove

    def add_pre_connection(
        self, connection_func: Callable, dependees: list[Callable] | None = None
    ) -> Callable[[], None]:
        """Add ``connection_func(system, time)`` to run before ``do_step``.

        Returns a function that removes the connection again.
        """
        return self._add_connection(self._pre_connections, "pre", connection_func, dependees)

    def add_post_connection(
        self, connection_func: Callable, dependees: list[Callable] | None = None
    ) -> Callable[[], None]:
        """Add ``connection_func(system, time)`` to run after ``do_step``.

        Returns a function that removes the connection again.
        """
        return self._add_connection(self._post_connections, "post", connection_func, dependees)

    # Events -----------------------------------------------------------------
    def add_event(
        self,
        condition: Callable,
        action: Callable | None = None,
        direction: int = 0,
        terminal: bool = False,
        name: str | None = None,
    ) -> Callable[[], None]:
        """Add an event: ``condition(system, time)`` returns a scalar whose zero
        crossing is the event; ``action(system, time)`` (optional) then writes states
        and parameter inputs (a reset, a mode flipped).  Bound methods of this system
        are called as ``method(time)``.  ``direction`` +1 fires only
        on rising crossings, -1 only on falling ones, 0 on both; ``terminal`` stops
        the run at the event.  Both functions are traced like connections.

        Returns a function that removes the event again.
        """
        where = user_frame_location()
        if not callable(condition):
            raise UsageError(f"add_event: condition must be a function condition(system, time), not {condition!r}", where)
        if action is not None and not callable(action):
            raise UsageError(f"add_event: action must be a function action(system, time) or None, not {action!r}", where)
        if direction not in (-1, 0, 1) or isinstance(direction, bool):
            raise UsageError(
                f"add_event: direction must be +1 (rising), -1 (falling) or 0 (both), not {direction!r}", where
            )
        if not isinstance(terminal, (bool, np.bool_)):
            raise UsageError(f"add_event: terminal must be True or False, not {terminal!r}", where)
        if name is not None and (not isinstance(name, str) or not name):
            raise UsageError(f"add_event: name must be a non-empty string, not {name!r}", where)
        if condition in self._events:
            raise UsageError(
                f"This event has already been added! ({callable_name(condition)} is already an event "
                f"condition of this {type(self).__name__}; add each event once)",
                where,
            )
        taken = {e.name for e in self._events.values()}
        label = name or _default_event_name(condition, taken)
        if label in taken:
            raise UsageError(
                f"this {type(self).__name__} already has an event named {label!r}; give add_event a distinct name=",
                where,
            )
        self._events[condition] = Event(condition, action, int(direction), bool(terminal), label, where)
        Edits.note_structure()

        def _remove() -> None:
            del self._events[condition]
            Edits.note_structure()

        return _remove

    @property
    def pre_connections(self) -> list[Callable]:
        """Pre-connections in dynode's execution order (topologically sorted)."""
        return list(TopologicalSorter(self._pre_connections).static_order())

    @property
    def post_connections(self) -> list[Callable]:
        """Post-connections in dynode's execution order (topologically sorted)."""
        return list(TopologicalSorter(self._post_connections).static_order())

    @property
    def connections(self) -> list[Callable]:
        """All connections: pre then post, each topologically sorted."""
        return self.pre_connections + self.post_connections

    def _step(self, time: float) -> None:
        """One numerical evaluation in dynode's imperative order (interpreted path)."""
        for sub in self._subs:
            sub._step(time)
        for con in self.pre_connections:
            con(self, time)
        self.do_step(time)
        for con in self.post_connections:
            con(self, time)

    @abstractmethod
    def do_step(self, time: float) -> None:
        """Compute ``ders`` (and outputs) from states and inputs at ``time``."""


SystemInterface = System


class Event(NamedTuple):
    """One ``add_event``: the condition, the action and how the crossing counts."""

    condition: Callable
    action: Callable | None
    direction: int  # +1 rising, -1 falling, 0 both
    terminal: bool
    name: str
    location: Any  # where add_event was called (a SourceLocation, or None)


def callable_name(func: Any) -> str:
    """A readable name of any callable: a function's or bound method's qualified name,
    ``partial(f)``, or ``Class.__call__`` for a callable object.  Reads only what it
    needs, never an attribute a mock would invent."""
    if isinstance(func, partial):
        return f"partial({callable_name(func.func)})"
    name = getattr(func, "__qualname__", None)
    if isinstance(name, str):
        return name
    return f"{type(func).__qualname__}.__call__"


def _default_event_name(condition: Any, taken: set[str]) -> str:
    """An event's name when add_event gets none: the condition function's name (a
    lambda's: ``event<k>``), numbered when another event of the system has it."""
    name = getattr(condition, "__name__", None)
    base = name if isinstance(name, str) and name.isidentifier() else f"event{len(taken)}"
    label, k = base, 1
    while label in taken:
        label, k = f"{base}_{k}", k + 1
    return label


def connect_signals(
    first: ParameterContainer, first_key: str, second: ParameterContainer, second_key: str
) -> Callable[..., None]:
    """A connection that copies ``first[first_key]`` into ``second[second_key]``.

    Use it as a pre- or post-connection, as in dynode.
    """

    def connect(*args: Any, **kwargs: Any) -> None:
        setattr(second, second_key, getattr(first, first_key))

    connect._dyngen_signal_link = (first, first_key, second, second_key)  # type: ignore[attr-defined]
    connect._dyngen_origin = user_frame_location()  # type: ignore[attr-defined]
    return connect
