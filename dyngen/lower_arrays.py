"""lower, array part: the loops of vectors traced in array form.

Each ``ArrayAssignment`` is a list of segments.  The vectors one function writes
with the same length are fused: cut at their common boundaries, so that one loop
per segment writes all of them and CSE shares their common work.  A segment of
several elements becomes ``for i in range(start, stop)`` (temporaries that do not
depend on ``i`` hoisted before it); a one-element segment becomes plain lines.
The Jacobian of a loop is a few blocks: a band per relative read (``d dy[i] /
d y[i + k]``) and a column per scalar it depends on, by the chain rule through the
element assignments.  The blocks' pattern is built with ``np.arange`` when the
module is imported, never printed element by element.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import sympy as sp

from .arrays import combine
from .flatten import relative_location
from .ir import ArrayAssignment, Block, FlatModel, JacBlock, Offset, Reduction, SignalRef, Slot, Statement
from .shallow import cse

INDEX = sp.Symbol("i", integer=True)
_Y = sp.IndexedBase("y")
_P = sp.IndexedBase("p")
_DY = sp.IndexedBase("dy")
_OUT = sp.IndexedBase("out")
_VALUES = sp.IndexedBase("values")

Gradient = Callable[[sp.Symbol], dict[int, sp.Basic]]


@dataclass
class ArrayCode:
    """The array loops of one generated function, and the scalars they read."""

    blocks: list[Block] = field(default_factory=list)
    roots: list[sp.Basic] = field(default_factory=list)  # computed or loaded before the loops
    jac_blocks: list[JacBlock] = field(default_factory=list)


class Places:
    """Where the vectors a relative symbol reads live (``y`` or ``p``), and their element symbols."""

    def __init__(self, flat: FlatModel) -> None:
        self.offsets = flat.offsets
        self.vector: dict[SignalRef, tuple[sp.IndexedBase, Slot]] = {}
        for slot in flat.states:
            self.vector[slot.ref] = (_Y, slot)
        for slot in flat.parameters:
            self.vector[slot.ref] = (_P, slot)

    def at(self, expr: sp.Basic, i: int) -> sp.Basic:
        """``e(i)`` at a constant ``i``: relative symbols become element symbols."""
        subs = {s: self.vector[o.ref][1].symbols[o.offset + i] for s in expr.free_symbols if (o := self.offsets.get(s))}
        return expr.xreplace(subs) if subs else expr

    def indexed(self, offset: Offset) -> sp.Indexed:
        base, slot = self.vector[offset.ref]
        return base[INDEX + slot.start + offset.offset]


@dataclass(frozen=True)
class _Interval:
    """One fused segment: elements [start, stop) of every vector of a fused set."""

    start: int
    stop: int
    exprs: tuple[sp.Basic, ...]


def _fused(assignments: list[ArrayAssignment]) -> Iterator[tuple[list[ArrayAssignment], list[_Interval]]]:
    """The assignments in sets of one function and one length, cut at their common boundaries."""
    sets: dict[tuple[int, int], list[ArrayAssignment]] = {}
    for a in assignments:
        sets.setdefault((a.function.order, a.size), []).append(a)
    for members in sets.values():
        n = members[0].size
        pieces = [[(s.start, s.stop, s.expr) for s in a.segments] for a in members]
        intervals = [_Interval(lo, hi, exprs) for lo, hi, exprs in combine(lambda *es: es, pieces, n)]
        merged: list[_Interval] = []
        for interval in intervals:
            if merged and merged[-1].exprs == interval.exprs and merged[-1].stop == interval.start:
                merged[-1] = _Interval(merged[-1].start, interval.stop, interval.exprs)
            else:
                merged.append(interval)
        yield members, merged


class Temporaries:
    """CSE temporary names of one function: a0, a1, ... for the array loops, s0, s1, ...
    for the sums (the element part uses c0, c1, ...)."""

    def __init__(self, prefix: str = "a") -> None:
        self.prefix = prefix
        self.count = 0

    def cse(self, exprs: list[sp.Basic]) -> tuple[list[tuple[sp.Symbol, sp.Basic]], list[sp.Basic]]:
        symbols = sp.numbered_symbols(self.prefix, start=self.count)
        replacements, reduced = cse(exprs, symbols)
        self.count += len(replacements)
        return replacements, reduced


def _title(flat: FlatModel, members: list[ArrayAssignment], interval: _Interval) -> str:
    fn = members[0].function
    where = relative_location(fn.location, flat.source_root)
    elements = f"element {interval.start}" if interval.stop - interval.start == 1 else f"elements {interval.start}..{interval.stop - 1}"
    return f"{fn.system}: {fn.name} [{fn.kind}] ({where}), {elements}"


def _emit(
    places: Places,
    temporaries: Temporaries,
    title: str,
    interval: _Interval,
    targets: list[tuple[Callable[[sp.Basic], sp.Basic], sp.Basic, str]],
    code: ArrayCode,
    accumulator: sp.Symbol | None = None,
) -> None:
    """Blocks computing ``target(i) = expr`` over the interval (a loop, or lines for one
    element); ``accumulator``: a symbol the loop updates (never hoisted out of it)."""
    if interval.stop - interval.start == 1:
        i = interval.start
        exprs = [places.at(expr, i) for _, expr, _ in targets]
        replacements, reduced = temporaries.cse(exprs)
        statements = [Statement(s, e) for s, e in replacements]
        statements += [
            Statement(target(sp.Integer(i)), e, _at_index(comment, i)) for (target, _, comment), e in zip(targets, reduced)
        ]
        code.roots += exprs
        code.blocks.append(Block(title, tuple(statements)))
        return
    exprs = [expr for _, expr, _ in targets]
    replacements, reduced = temporaries.cse(exprs)
    varying = set(places.offsets) | ({accumulator} if accumulator is not None else set())
    hoisted, body = [], []
    for symbol, expr in replacements:
        if expr.free_symbols & varying:
            varying.add(symbol)
            body.append((symbol, expr))
        else:
            hoisted.append(Statement(symbol, expr))
            code.roots.append(expr)
    subs = {s: places.indexed(places.offsets[s]) for e in exprs for s in e.free_symbols if s in places.offsets}
    body_statements = [Statement(s, e.xreplace(subs)) for s, e in body]
    body_statements += [
        Statement(target(INDEX), e.xreplace(subs), comment) for (target, _, comment), e in zip(targets, reduced)
    ]
    code.roots += [e for _, e in body] + list(reduced)
    if hoisted:
        code.blocks.append(Block(title, tuple(hoisted)))
        title = f"for each element {interval.start}..{interval.stop - 1}"
    code.blocks.append(Block(title, tuple(body_statements), loop=interval.stop, start=interval.start))


def _at_index(comment: str, i: int) -> str:
    """A loop statement's comment (``... x[i]``) for element ``i``."""
    return comment[:-3] + f"[{i}]" if comment.endswith("[i]") else comment


def _offset_target(base: sp.IndexedBase, offset: int) -> Callable[[sp.Basic], sp.Basic]:
    return lambda i: base[i + offset]


def reduction_blocks(flat: FlatModel, reduction: Reduction, places: Places, temporaries: Temporaries) -> list[Block]:
    """``r = 0.0``, then ``r = r + summand(i)`` over each segment of the summand."""
    code = ArrayCode()
    where = relative_location(reduction.location, flat.source_root)
    title = f"{reduction.symbol} = sum over {reduction.size} elements ({where})"
    code.blocks.append(Block(title, (Statement(reduction.symbol, sp.Float(0.0)),)))
    symbol = reduction.symbol
    for segment in reduction.segments:
        interval = _Interval(segment.start, segment.stop, ())
        span = f"elements {segment.start}..{segment.stop - 1}" if segment.stop - segment.start > 1 else f"element {segment.start}"
        _emit(places, temporaries, f"{symbol}: {span}", interval, [(lambda i: symbol, symbol + segment.expr, "")], code, symbol)
    return code.blocks


def _der_rows(flat: FlatModel) -> dict[SignalRef, Slot]:
    """Each der computed in array form -> the slot in ``y`` of the state it belongs to."""
    return {der: slot for slot in flat.states if (der := flat.array_ders.get(slot.ref)) is not None}


def array_rhs(flat: FlatModel) -> ArrayCode:
    """The loops that write the derivatives of the vectors in array form into ``dy``."""
    code, places, temporaries = ArrayCode(), Places(flat), Temporaries()
    der_rows = _der_rows(flat)
    ders = [a for a in flat.array_assignments if a.ref in der_rows]
    _emit_assignments(
        flat, ders, lambda ref: (_offset_target(_DY, der_rows[ref].start), f"d/dt {der_rows[ref].ref}[i]"),
        code, places, temporaries,
    )  # fmt: skip
    for slot in flat.parameters:  # a der vector only __init__ sets: a constant derivative
        if slot.array and slot.ref in der_rows:
            state = der_rows[slot.ref]
            copy = Statement(_DY[INDEX + state.start], _P[INDEX + slot.start], f"d/dt {state.ref}[i]")
            code.blocks.append(Block(f"{slot.ref} (a constant der vector)", (copy,), loop=slot.stop - slot.start))
    return code


def _emit_assignments(
    flat: FlatModel, assignments: list, target: Callable, code: ArrayCode, places: Places, temporaries: Temporaries
) -> None:
    """The fused loops of ``assignments``; ``target(ref)`` is (where element i goes, its comment)."""
    for members, intervals in _fused(assignments):
        for interval in intervals:
            targets = []
            for a, expr in zip(members, interval.exprs):
                where, comment = target(a.ref)
                targets.append((where, expr, comment))
            _emit(places, temporaries, _title(flat, members, interval), interval, targets, code)


def array_observe(flat: FlatModel) -> ArrayCode:
    """The loops that write the vectors in array form (and large parameters) into ``out``."""
    code, places, temporaries = ArrayCode(), Places(flat), Temporaries()
    out = {slot.ref: slot for slot in flat.observed if slot.array}
    computed = [a for a in flat.array_assignments if a.ref in out]
    _emit_assignments(
        flat, computed, lambda ref: (_offset_target(_OUT, out[ref].start), f"{ref}[i]"), code, places, temporaries
    )
    written = {a.ref for a in flat.array_assignments}
    for slot in flat.parameters:
        if slot.array and slot.ref in out and slot.ref not in written:
            target = out[slot.ref]
            copy = Statement(_OUT[INDEX + target.start], _P[INDEX + slot.start], f"{slot.ref}[i]")
            code.blocks.append(Block(f"{slot.ref} (a parameter vector)", (copy,), loop=slot.stop - slot.start))
    return code


def array_jacobian(flat: FlatModel, gradient: Gradient, clean: Callable[[sp.Basic], sp.Basic], first: int) -> ArrayCode:
    """The loops that write the Jacobian entries of the array derivatives into ``values``.

    Entries are numbered from ``first`` (after the element entries), block by block.
    """
    code, places, temporaries = ArrayCode(), Places(flat), Temporaries()
    state_vectors = {slot.ref: slot for slot in flat.states}
    der_rows = _der_rows(flat)
    ders = [a for a in flat.array_assignments if a.ref in der_rows]
    position = first
    for members, intervals in _fused(ders):
        for interval in intervals:
            n = interval.stop - interval.start
            single = n == 1
            targets = []
            for a, expr in zip(members, interval.exprs):
                row = der_rows[a.ref].start + interval.start
                expr = places.at(expr, interval.start) if single else expr
                for symbol in sorted(expr.free_symbols, key=lambda s: s.name):
                    offset = places.offsets.get(symbol)
                    if offset is not None:
                        if offset.ref not in state_vectors:
                            continue  # a parameter vector: a constant
                        column = state_vectors[offset.ref].start + interval.start + offset.offset
                        columns = [(column, 1, sp.S.One)]
                    else:
                        columns = [(j, 0, g) for j, g in sorted(gradient(symbol).items())]
                    if not columns:
                        continue
                    partial = clean(sp.diff(expr, symbol))
                    if partial == 0:
                        continue
                    for column, step, g in columns:
                        value = partial * g
                        if step:
                            read = f"{offset.ref}[i{offset.offset:+d}]" if offset.offset else f"{offset.ref}[i]"
                        else:
                            read = f"y[{column}]"
                        label = f"d(d/dt {der_rows[a.ref].ref}[{'i' if not single else interval.start}])/d({read})"
                        targets.append((_offset_target(_VALUES, position - interval.start), value, label))
                        code.jac_blocks.append(JacBlock(row, column, step, n))
                        position += n
            if targets:
                span = _Interval(interval.start, interval.stop, ())
                _emit(places, temporaries, _title(flat, members, span), span, targets, code)
    return code
