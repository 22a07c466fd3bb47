"""flatten: ModelSpec -> FlatModel.

Lays out one state vector (dynode's order) and one parameter vector, checks that
every state has a derivative of its shape, and orders all written signals by
dataflow (a topological sort of the traced reads and writes).  A cycle of
instantaneous dependencies is an algebraic loop.
"""

from __future__ import annotations

import hashlib
import heapq
import os
from dataclasses import dataclass

import sympy as sp

from .accumulate import merge
from .errors import AlgebraicLoopError, ModelError
from .interp import InterpTable
from .ir import (
    ATTRIBUTE_KIND,
    REDUCTION_KIND,
    ArrayAssignment,
    ArrayWrite,
    Assignment,
    EventSpec,
    FlatModel,
    ModelSpec,
    Signal,
    SignalRef,
    Slot,
    TracedFunction,
    Write,
    symbol_names,
)
from .trace import TIME
from .version import __version__


def relative_location(location, root: str) -> str:
    """``file:line`` with the file relative to the model's folder where possible."""
    if location is None:
        return "?"
    path = location.file
    if not path.startswith("<"):
        try:
            rel = os.path.relpath(path, root)
        except ValueError:
            rel = path
        path = os.path.basename(path) if rel.startswith("..") else rel
    return f"{path.replace(os.sep, '/')}:{location.line}"


def _writers(spec: ModelSpec) -> dict[SignalRef, tuple[TracedFunction, Write]]:
    found: dict[SignalRef, list[tuple[TracedFunction, Write]]] = {}
    for fn in spec.functions:
        for write in fn.writes:
            view = spec.views.get(write.ref)  # a part written to a view (``ders.y = lap.ravel()``): of its signal
            ref = write.ref if view is None else view.base
            if not any(f is fn for f, _ in found.get(ref, ())):
                found.setdefault(ref, []).append((fn, write))
    for ref, writers in found.items():
        if len(writers) > 1:
            where = "\n".join(
                f"    {fn.info.name} of {fn.info.system!r} ({relative_location(w.location, spec.source_root)})"
                for fn, w in writers
            )
            raise ModelError(
                f"{ref} is written by {len(writers)} functions:\n{where}\n"
                "  dynode would keep whichever runs last, which depends on evaluation order; "
                "write each signal in exactly one place (combine the values in one function)"
            )
    by_ref = {ref: writers[0] for ref, writers in found.items()}
    by_ref.update((w.ref, (fn, w)) for fn in spec.functions for w in fn.writes if w.ref in spec.views)
    return by_ref


def _layout(signals: list[Signal], start: int = 0) -> tuple[Slot, ...]:
    slots = []
    for signal in signals:
        slots.append(Slot(signal.ref, start, signal.shape, signal.symbols))
        start += signal.size
    return tuple(slots)


def _pair_ders(spec: ModelSpec, signals: dict[SignalRef, Signal], writers) -> tuple[dict[SignalRef, SignalRef], list[str]]:
    """Which der is the derivative of which state, per system.

    Every der counts, written by a function or only set in ``__init__`` (dynode
    integrates such a der as a constant derivative; here it is a runtime parameter).
    By name when every state has a der of its name; otherwise, when the ders are
    named differently (dynode's README writes ``ders.dx`` for ``states.x``), by
    position in container order, exactly as dynode pairs them.  Ders that do not pair
    up are a ``ModelError``, a RuntimeError as dynode's "Mismatch in number of states
    and ders!".
    """
    pairs: dict[SignalRef, SignalRef] = {}
    warnings: list[str] = []
    for system in spec.systems:
        where = f"system {system.path!r} ({system.class_name})"
        ders = [k for k in system.der_keys if SignalRef(system.path, "ders", k) in signals]
        written = [k for k in ders if SignalRef(system.path, "ders", k) in writers]
        named = [k for k in system.state_keys if k in ders]
        if len(named) == len(system.state_keys):
            keys = list(system.state_keys)
            extra = [k for k in ders if k not in system.state_keys]
            if extra:
                raise ModelError(
                    f"Mismatch in number of states and ders! {where}: {_der_origin(spec, system, extra[0], writers)} "
                    f"ders {extra} but there are no such states (states: {list(system.state_keys)}); "
                    "add the state in __init__ or use an output for a value that is not integrated"
                )
            in_order = [k for k in ders if k in system.state_keys]
            if in_order != keys:
                warnings.append(
                    f"{where}: ders are ordered {in_order} but states {keys}; dynode pairs them by "
                    "position (silently mixing up derivatives), dyngen pairs them by name"
                )
        elif not named and len(ders) == len(system.state_keys):
            keys = ders  # dynode's pairing: by position
        else:
            missing = [k for k in system.state_keys if k not in ders]
            raise ModelError(
                f"Mismatch in number of states and ders! {where}: state {missing[0]!r} has no derivative "
                f"({len(system.state_keys)} states {list(system.state_keys)}, {len(ders)} ders {ders}); "
                f"{system.class_name}.do_step ({relative_location(system.location, spec.source_root)}) must "
                f"assign self.ders.{missing[0]} (or self.ders[{missing[0]!r}]), or __init__ set it to a "
                "constant derivative"
                + (f" (ders written: {written})" if written else "")
            )
        for state_key, der_key in zip(system.state_keys, keys):
            state_ref = SignalRef(system.path, "states", state_key)
            der_ref = SignalRef(system.path, "ders", der_key)
            state, der = signals[state_ref], signals[der_ref]
            if der.size != state.size:
                raise ModelError(
                    f"Mismatch in number of states and ders! {where}: state {state_key!r} has {state.size} "
                    f"element(s) (shape {state.shape}) but {_der_origin(spec, system, der_key, writers)} its "
                    f"der {der_key!r} with {der.size} (shape {der.shape}); a der must have the shape of its state"
                )
            pairs[state_ref] = der_ref
    return pairs, warnings


def _der_origin(spec: ModelSpec, system, key: str, writers) -> str:
    """Who gives a der its value: the function that writes it, or ``__init__``."""
    found = writers.get(SignalRef(system.path, "ders", key))
    if found is None:
        return f"{system.class_name}.__init__ sets"
    fn, write = found
    return f"{fn.info.name} ({relative_location(write.location, spec.source_root)}) writes"


def _is_parameter(signal: Signal, writers, spec: ModelSpec, der_of: dict[SignalRef, SignalRef]) -> bool:
    """A runtime parameter: an input or output no function writes, a der only
    ``__init__`` sets (a constant derivative), read from its container at each run, or
    an attribute traced as a parameter (``Simulation.make_parameter``)."""
    ref = signal.ref
    if ref in writers or ref not in spec.defaults:
        return False
    return ref.kind in ("inputs", "outputs", ATTRIBUTE_KIND) or (ref.kind == "ders" and ref in der_of.values())


@dataclass(frozen=True)
class _Node:
    """One thing computed in dataflow order: an element signal, or a sum over a vector."""

    key: object  # the signal's ref, or the sum's symbol
    exprs: tuple[sp.Basic, ...]
    priority: tuple[int, int]  # among ready nodes: dynode's evaluation order
    label: str  # for an algebraic loop's description
    origin: str


def _write_nodes(writes: list[tuple[TracedFunction, Write]], spec: ModelSpec) -> list[_Node]:
    return [
        _Node(w.ref, w.exprs, (fn.info.order, n), str(w.ref),
              f"is computed by {fn.info.name} of {fn.info.system!r} ({relative_location(w.location, spec.source_root)})")
        for n, (fn, w) in enumerate(writes)
    ]  # fmt: skip


def _reduction_nodes(spec: ModelSpec) -> list[_Node]:
    return [
        _Node(r.symbol, tuple(s.expr for s in r.segments), (-1, n), f"np.sum ({relative_location(r.location, spec.source_root)})",
              "is a sum over a vector")
        for n, r in enumerate(spec.reductions)
    ]  # fmt: skip


def _topological(nodes: list[_Node], owner: dict[sp.Symbol, object]) -> list[int]:
    index = {node.key: i for i, node in enumerate(nodes)}
    deps: list[set[int]] = []
    for node in nodes:
        needed = set()
        for expr in node.exprs:
            for symbol in expr.free_symbols:
                key = owner.get(symbol)
                if key in index:
                    needed.add(index[key])
        deps.append(needed)
    users: list[list[int]] = [[] for _ in nodes]
    remaining = [len(d) for d in deps]
    for i, d in enumerate(deps):
        for j in d:
            users[j].append(i)
    ready = [nodes[i].priority + (i,) for i in range(len(nodes)) if remaining[i] == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        i = heapq.heappop(ready)[-1]
        order.append(i)
        for u in users[i]:
            remaining[u] -= 1
            if remaining[u] == 0:
                heapq.heappush(ready, nodes[u].priority + (u,))
    if len(order) < len(nodes):
        stuck = {i for i in range(len(nodes)) if remaining[i] > 0}
        raise AlgebraicLoopError(_describe_cycle(stuck, deps, nodes))
    return order


def _describe_cycle(stuck: set[int], deps: list[set[int]], nodes: list[_Node]) -> str:
    start = min(stuck)
    path, seen = [start], {start: 0}
    node = start
    while True:
        node = min(j for j in deps[node] if j in stuck)
        if node in seen:
            cycle = path[seen[node]:] + [node]
            break
        seen[node] = len(path)
        path.append(node)
    cycle.reverse()  # show it in the direction the values flow
    chain = " -> ".join(nodes[i].label for i in cycle)
    lines = [f"algebraic loop: {chain}"]
    for i in cycle[:-1]:
        lines.append(f"    {nodes[i].label} {nodes[i].origin}")
    lines.append(
        "  each of these signals needs the next one within the same evaluation; break the "
        "loop with a state (e.g. a first-order lag) or solve the equations in one function"
    )
    return "\n".join(lines)


def _stale_reads(spec: ModelSpec, writers) -> list[str]:
    """One warning per signal and reading line: read before its writer runs (in dynode's
    order); the systems that read it there are listed (the first few), not one warning each."""
    found: dict[tuple, list[str]] = {}
    for fn in spec.functions:
        for ref in fn.reads:
            if ref not in writers:
                continue
            writer, write = writers[ref]
            if writer.info.order >= fn.info.order:
                key = (str(ref), fn.info.name, relative_location(fn.info.location, spec.source_root), writer.info.name,
                       writer.info.system, relative_location(write.location, spec.source_root))  # fmt: skip
                found.setdefault(key, []).append(fn.info.system)
    warnings = []
    for (ref, name, read_at, writer_name, writer_system, write_at), readers in found.items():
        shown = ", ".join(map(repr, readers[:3])) + (f" and {len(readers) - 3} more systems" if len(readers) > 3 else "")
        warnings.append(
            f"{ref} is read by {name} of {shown} ({read_at}) before {writer_name} of {writer_system!r} "
            f"({write_at}) writes it; dynode would use the value left over from the previous evaluation, "
            "dyngen uses the current value (to silence this, make the writer run first in dynode's order: "
            "add systems in dataflow order, use a post-connection, or list it in `dependees`)"
        )
    return warnings


def _structure(expr: sp.Basic, memo: dict[sp.Basic, str]) -> str:
    """An exact, unambiguous text of an expression tree (like ``srepr``, many times faster)."""
    text = memo.get(expr)
    if text is None:
        if isinstance(expr, sp.Symbol):
            text = expr.name
        elif isinstance(expr, sp.Float):
            text = f"F{expr._mpf_}"
        elif isinstance(expr, sp.Rational):
            text = f"Q{expr.p}/{expr.q}"
        elif isinstance(expr, InterpTable):  # a lookup table: its data and call line
            text = expr.structure()
        elif not expr.args:
            text = type(expr).__name__
        else:
            text = f"{type(expr).__name__}({','.join(_structure(a, memo) for a in expr.args)})"
        memo[expr] = text
    return text


def _digest(parts: list[str]) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(part.encode("utf-8"))
        hasher.update(b"\0")
    return hasher.hexdigest()


def flatten(spec: ModelSpec) -> FlatModel:
    """Flatten a traced model; see the module docstring."""
    spec = merge(spec)  # a signal that connections add into (``+=``): one write of the sum
    signals = {s.ref: s for s in spec.signals}
    writers = _writers(spec)
    der_of, warnings = _pair_ders(spec, signals, writers)
    warnings = list(spec.notices) + warnings

    state_signals = [signals[SignalRef(s.path, "states", k)] for s in spec.systems for k in s.state_keys]
    states = _layout(state_signals)
    parameter_signals = [s for s in spec.signals if _is_parameter(s, writers, spec, der_of)]
    parameters = _layout(parameter_signals)

    writes = [(fn, w) for fn in spec.functions for w in fn.writes if isinstance(w, Write)]
    owner: dict[sp.Symbol, object] = {sym: s.ref for s in spec.signals if not s.array for sym in s.symbols}
    owner.update((r.symbol, r.symbol) for r in spec.reductions)
    by_name = {r.symbol.name: r.symbol for r in spec.reductions}  # reads of a reduction along axes
    owner.update((s, by_name[o.ref.key]) for s, o in spec.offsets.items() if o.ref.kind == REDUCTION_KIND)
    order = _topological(_write_nodes(writes, spec) + _reduction_nodes(spec), owner)
    assignments, reductions = [], []
    for i in order:
        if i >= len(writes):  # a sum: computed after the assignments before it
            reductions.append((len(assignments), spec.reductions[i - len(writes)]))
            continue
        fn, write = writes[i]
        assignments.append(Assignment(write.ref, signals[write.ref].symbols, write.exprs, fn.info, write.location, fn.reads))
    assignments = tuple(assignments)
    # Vectors in array form read only states, parameters and element signals (trace
    # checks it), so they come after every element assignment.
    array_assignments = tuple(
        ArrayAssignment(w.ref, spec.views[w.ref].shape if w.ref in spec.views else signals[w.ref].shape, w.segments,
                        fn.info, w.location)
        for fn in spec.functions for w in fn.writes if isinstance(w, ArrayWrite)
    )  # fmt: skip
    warnings += _stale_reads(spec, writers)

    array_ders = {slot.ref: der_of[slot.ref] for slot in states if signals[der_of[slot.ref]].array}
    derivatives = tuple(
        sym
        for slot in states
        for sym in ((None,) * (slot.stop - slot.start) if slot.ref in array_ders else signals[der_of[slot.ref]].symbols)
    )
    by_container: dict[tuple[str, str], list[SignalRef]] = {}
    for signal in spec.signals:
        by_container.setdefault((signal.ref.system, signal.ref.kind), []).append(signal.ref)
    observed_signals = [
        signals[ref]
        for system in spec.systems
        for kind in ("inputs", "outputs", "ders")
        for ref in by_container.get((system.path, kind), ())
        if ref in writers or ref in spec.defaults
    ]
    observed = _layout(observed_signals)

    default_parameters = tuple(v for s in parameter_signals for v in spec.defaults[s.ref])
    default_states = tuple(v for s in state_signals for v in spec.defaults[s.ref])

    parts = [f"dyngen {__version__}", spec.name]
    parts += [f"y {slot.ref} {slot.start} {slot.shape} {symbol_names(slot.symbols)} der {der_of[slot.ref].key}" for slot in states]
    parts += [f"p {slot.ref} {slot.start} {slot.shape} {symbol_names(slot.symbols)}" for slot in parameters]
    parts += [f"out {slot.ref} {slot.start} {slot.shape} {symbol_names(slot.symbols)}" for slot in observed]
    memo: dict[sp.Basic, str] = {}
    for a in assignments:
        parts.append(
            f"{a.ref} {[s.name for s in a.symbols]} = {[_structure(e, memo) for e in a.exprs]} "
            f"by {a.function.name} {a.function.kind} {a.function.system} "
            f"{relative_location(a.function.location, spec.source_root)} "
            f"{relative_location(a.location, spec.source_root)}"
        )
    for b in array_assignments:
        parts.append(
            f"{b.ref} {b.shape} = {[(g.lo, g.hi, _structure(g.expr, memo)) for g in b.segments]} "
            f"by {b.function.name} {b.function.kind} {b.function.system} "
            f"{relative_location(b.function.location, spec.source_root)} "
            f"{relative_location(b.location, spec.source_root)}"
        )
    parts += [f"{r.op} after {k} {r.symbol} {r.size} {r.shape} {r.axes} {[(g.lo, g.hi, _structure(g.expr, memo)) for g in r.segments]} "
              f"{relative_location(r.location, spec.source_root)}" for k, r in reductions]
    parts += [f"offset {symbol.name} {o.ref} {o.index}" for symbol, o in sorted(spec.offsets.items(), key=lambda x: x[0].name)]
    parts += [f"system {s.path} {s.class_name} {relative_location(s.location, spec.source_root)}" for s in spec.systems]
    parts += [f"constant {ref} {text}" for ref, text in spec.constants]
    parts += [f"constant array {c.name} {c.shape} {c.key} {c.origin} {relative_location(c.location, spec.source_root)}"
              for c in spec.constant_arrays]
    parts += [f"warning {w}" for w in warnings]
    parts += [_event_text(e, memo, spec.source_root) for e in spec.events]  # (none: the digest of a model without events)

    return FlatModel(
        name=spec.name,
        source_root=spec.source_root,
        time=TIME,
        states=states,
        parameters=parameters,
        default_parameters=default_parameters,
        default_states=default_states,
        assignments=assignments,
        derivatives=derivatives,
        der_keys=tuple((slot.ref.system, slot.ref.key, der_of[slot.ref].key) for slot in states),
        observed=observed,
        systems=spec.systems,
        warnings=tuple(warnings),
        digest=_digest(parts),
        array_assignments=array_assignments,
        array_ders=array_ders,
        reductions=tuple(reductions),
        offsets=dict(spec.offsets),
        events=spec.events,
        constant_arrays=spec.constant_arrays,
        views=dict(spec.views),
    )


def _event_text(event: EventSpec, memo: dict, root: str) -> str:
    """The digest's text of one event."""
    resets = [(str(ref), [_structure(e, memo) for e in exprs]) for ref, exprs in event.resets]
    resets += [relative_location(where, root) for where in event.reset_locations]
    return (
        f"event {event.system} {event.name} {event.direction} {event.terminal} {_structure(event.condition, memo)} "
        f"{resets} {relative_location(event.location, root)} {relative_location(event.action_location, root)}"
    )
