"""Tracing the events of a model (``System.add_event``) into ``EventSpec``s.

A condition is traced like a connection, after every ``do_step`` and connection:
its value is one sympy expression of states, inputs, outputs and time.  An action
is traced the same way, but may write states and parameter inputs (inputs no
connection drives); what it writes is kept as expressions of the values before the
event.
"""

from __future__ import annotations

from types import MethodType
from typing import TYPE_CHECKING, Any

import numpy as np
import sympy as sp

from .calls import entry_point
from .errors import TraceError, location_boundary, user_frame_location
from .ir import EventSpec, FunctionInfo, SignalRef
from .symbolic import Sym, as_object_array, flatten_traced
from .system import callable_name
from .tree import function_location

if TYPE_CHECKING:
    from .trace import Tracer
    from .tree import SystemNode

_RESULT_KIND = "event"  # the kind of the SignalRef a condition's value is kept under while it is traced


def trace_events(tracer: "Tracer", nodes: list["SystemNode"], order: int) -> tuple[EventSpec, ...]:
    """Every system's events (state order, then the order they were added), traced
    with ``tracer`` after the model's functions (its hooks still set)."""
    events = []
    for node in nodes:
        for event in getattr(node.system, "_events", {}).values():
            events.append(_trace_event(tracer, node, event, order))
    return tuple(events)


def _trace_event(tracer: "Tracer", node: "SystemNode", event: Any, order: int) -> EventSpec:
    condition = _trace_condition(tracer, node, event, order)
    resets: tuple = ()
    locations: tuple = ()
    if event.action is not None:
        resets, locations = _trace_action(tracer, node, event, order)
    return EventSpec(
        system=node.path,
        name=event.name,
        direction=event.direction,
        terminal=event.terminal,
        condition=condition,
        resets=resets,
        location=function_location(event.condition),
        action_location=function_location(event.action) if event.action is not None else None,
        added_at=event.location,
        reset_locations=locations,
    )


@location_boundary
def _trace_condition(tracer: "Tracer", node: "SystemNode", event: Any, order: int) -> sp.Basic:
    info = FunctionInfo(node.path, "event condition", callable_name(event.condition), function_location(event.condition), order)
    result = SignalRef(node.path, _RESULT_KIND, event.name)
    target = _entry(event.condition, node.system)

    def condition(system: Any, time: Any) -> None:
        value = target(system, time)
        tracer.frame.local[result] = _scalar(value, info)

    def no_writes(ref: SignalRef) -> None:
        raise TraceError(
            f"the event condition {info.name} writes {ref}; a condition only computes the value whose zero "
            "crossing is the event",
            "return that value (e.g. `return self.states.h`), and write states or inputs in the event's action",
            user_frame_location(),
        )

    frame = _explore(tracer, info, condition, node.system, no_writes)
    return frame.local[result].expr


@location_boundary
def _trace_action(tracer: "Tracer", node: "SystemNode", event: Any, order: int) -> tuple[tuple, tuple]:
    """What the action writes, (ref, expressions) each, and where it writes each."""
    info = FunctionInfo(node.path, "event action", callable_name(event.action), function_location(event.action), order)

    def check(ref: SignalRef) -> None:
        if ref.kind == "ders":
            problem, hint = "ders are what do_step computes", f"reset the state instead: self.states.{ref.key} = ..."
        elif ref.kind == "outputs":
            problem, hint = "outputs are what do_step and connections compute", "write a state or a parameter input"
        elif ref.kind == "inputs" and ref in tracer.written:
            problem = "that input is driven by a connection, so the action's value would be overwritten at once"
            hint = "write a parameter input (one no connection drives), or the state the connection reads"
        elif ref not in tracer.signals:
            problem, hint = f"{ref.system} has no such {ref.kind[:-1]}", f"set {ref.kind}.{ref.key} in __init__ first"
        else:
            return
        raise TraceError(
            f"the event action {info.name} writes {ref}: {problem}", hint, user_frame_location()
        )

    frame = _explore(tracer, info, _entry(event.action, node.system), node.system, check)
    resets = []
    for ref, value in frame.local.items():
        signal = tracer.signals[ref]
        try:
            shape, exprs = flatten_traced(value)
        except TraceError:
            raise
        except Exception:  # a lazy array-form value
            raise TraceError(
                f"the event action {info.name} writes {ref} as a large array",
                "events may reset scalars and arrays of fewer than 64 elements",
                frame.write_locations.get(ref),
            ) from None
        if len(exprs) != signal.size:
            raise TraceError(
                f"the event action {info.name} writes {ref} with {len(exprs)} element(s), but it has {signal.size}",
                "keep a signal's shape: write a value of the shape it has",
                frame.write_locations.get(ref),
            )
        resets.append((ref, tuple(exprs)))
    return tuple(resets), tuple(frame.write_locations.get(ref) for ref, _ in resets)


def _entry(func: Any, system: Any) -> Any:
    """What the tracer calls as ``func(system, time)``: a bound method of the system
    itself (``self.add_event(self.hit_ground, self.bounce)``) is called as ``method(time)``."""
    target = entry_point(func)
    if isinstance(func, MethodType) and func.__self__ is system:
        return lambda _system, time: target(time)
    return target


def _explore(tracer: "Tracer", info: FunctionInfo, target: Any, system: Any, check: Any) -> Any:
    tracer.event_check = check
    try:
        return tracer.explore(info, target, system)
    finally:
        tracer.event_check = None
        tracer.frame = None


def _scalar(value: Any, info: FunctionInfo) -> Sym:
    """A condition's value as one traced scalar, or a TraceError that says why not."""
    if isinstance(value, Sym):
        expr = value.expr
    elif isinstance(value, (bool, np.bool_)) or value is None:
        expr = None
    elif isinstance(value, (int, float, np.number)):
        expr = sp.Float(float(value))
    elif isinstance(value, (np.ndarray, list, tuple)) and np.size(np.asarray(value, dtype=object)) == 1:
        expr = flatten_traced(as_object_array(value))[1][0]
    else:
        expr = None
        if hasattr(value, "shape") and int(np.prod(value.shape)) != 1:
            raise TraceError(
                f"the event condition {info.name} returns a value of shape {tuple(value.shape)}; a condition is one number",
                "return one scalar (e.g. `return self.states.h`, or `return self.states.x[2] - 1.0`); "
                "add one event per element that can cross",
                user_frame_location() or info.location,
            )
    if expr is None or not isinstance(expr, sp.Expr) or not expr.free_symbols:
        raise TraceError(
            f"the event condition {info.name} returns {value!r}, not a number whose zero crossing is the event",
            "return a difference such as `self.states.h - 0.0` or `self.states.T - self.inputs.T_on`, "
            "not a comparison or a constant",
            user_frame_location() or info.location,
        )
    return Sym(expr)
