"""lower, array part: the loop nests of arrays traced in array form.

Each ``ArrayAssignment`` is a list of boxes.  The arrays one function writes with
the same shape are fused: cut at their common boundaries, so that one loop nest per
box writes all of them and CSE shares their common work.  A box of several elements
becomes nested ``for i in range(...)``, ``for j in range(...)``, ... over its axes
longer than one (temporaries that depend on no loop index hoisted before them); a
one-element box becomes plain lines.  The Jacobian of a loop nest is a few blocks:
one per relative read (``d dy[i, j] / d u[i + 1, j]``: a diagonal with an offset in
the flattened index) and one per scalar it depends on, by the chain rule through
the element assignments.  The blocks' pattern is built with ``np.arange`` when the
module is imported, never printed element by element.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator, Sequence

import sympy as sp

from .arrays import LOOP_NAMES, Box, box_size, combine, index_text, merge
from .flatten import relative_location
from .ir import (
    CONSTANT_KIND, REDUCTION_KIND, ArrayAssignment, Block, FlatModel, JacBlock, Offset, Reduction, SignalRef, Slot, Statement, View,
    view_ref,
)  # fmt: skip
from .shallow import cse

INDEX = sp.Symbol("i", integer=True)
LOOP_INDICES = tuple(sp.Symbol(name, integer=True) for name in LOOP_NAMES)
_Y = sp.IndexedBase("y")
_P = sp.IndexedBase("p")
_DY = sp.IndexedBase("dy")
_OUT = sp.IndexedBase("out")
_VALUES = sp.IndexedBase("values")
_U = sp.IndexedBase("U")

Gradient = Callable[[sp.Symbol], dict[int, sp.Basic]]
Target = Callable[[tuple[sp.Basic, ...]], sp.Basic]  # the loop indices of a box -> where its element goes


def strides(shape: Sequence[int]) -> tuple[int, ...]:
    """C-order strides (in elements) of an array of ``shape``."""
    out, step = [], 1
    for extent in reversed(shape):
        out.append(step)
        step *= extent
    return tuple(reversed(out))


def flat_index(shape: Sequence[int], index: Sequence[sp.Basic]) -> sp.Basic:
    return sp.Add(*(s * i for s, i in zip(strides(shape), index)))


def summand_shape(reduction: Reduction) -> tuple[int, ...]:
    """The summand's whole shape (its segments tile it)."""
    return tuple(max(s.hi[a] for s in reduction.segments) for a in range(len(reduction.segments[0].hi)))


@dataclass
class ArrayCode:
    """The array loops of one generated function, and the scalars they read."""

    blocks: list[Block] = field(default_factory=list)
    roots: list[sp.Basic] = field(default_factory=list)  # computed or loaded before the loops
    jac_blocks: list[JacBlock] = field(default_factory=list)
    # (k, placeholder column, d(reduction k)/d(signal)): V's entries through a placeholder's signal
    # (``lower_mixed``: a sum of instance signals), for the caller to write
    through: list[tuple[int, int, sp.Symbol]] = field(default_factory=list)


class Places:
    """Where the arrays a relative symbol reads live (``y`` or ``p``), and their element symbols."""

    def __init__(self, flat: FlatModel) -> None:
        self.offsets = dict(flat.offsets)  # with the reads that inline_copies makes
        self._relative = {(o.ref, o.index): s for s, o in flat.offsets.items()}
        self._reductions = {r.symbol.name: r.symbol for _, r in flat.reductions}
        self._made_reads: dict[sp.Symbol, sp.Symbol] = {}  # a read made here -> its reduction's symbol
        self.copies = {
            reduction_ref(r): r.segments[0].expr for _, r in flat.reductions if r.shape and not r.axes
        }  # fmt: skip
        self.vector: dict[SignalRef, tuple[sp.IndexedBase, Slot]] = {}
        for slot in flat.states:
            self.vector[slot.ref] = (_Y, slot)
        for slot in flat.parameters:
            self.vector[slot.ref] = (_P, slot)
        for _, reduction in flat.reductions:  # arrays of reductions along axes: local arrays
            if reduction.shape:
                ref = reduction_ref(reduction)
                self.vector[ref] = (sp.IndexedBase(reduction.symbol.name), Slot(ref, 0, reduction.shape, ()))
        self.constants = {c.ref: c.values for c in flat.constant_arrays}
        for c in flat.constant_arrays:  # module data, flattened: CONST_W[n*i + j]
            self.vector[c.ref] = (sp.IndexedBase(c.name), Slot(c.ref, 0, c.shape, ()))
        for ref, view in flat.views.items():  # a signal read with another shape: inside its slot
            if view.base in self.vector:
                base, slot = self.vector[view.base]
                self.vector[ref] = (base, view_slot(view, slot, ref))
            if view.base in self.constants:
                self.constants[ref] = self.constants[view.base][view.offset : view.offset + view.size]

    def relative(self, offset: Offset) -> sp.Symbol:
        """The relative symbol of a read (made here when the trace did not make it)."""
        symbol = self._relative.get((offset.ref, offset.index))
        if symbol is None:
            symbol = sp.Symbol(f"{offset.ref}[{index_text(offset.index)}]", real=True)
            self._relative[(offset.ref, offset.index)] = symbol
            self.offsets[symbol] = offset
            if offset.ref.key in self._reductions and offset.ref.kind == REDUCTION_KIND:  # (not a jac_through_* array)
                self._made_reads[symbol] = self._reductions[offset.ref.key]
        return symbol

    def as_roots(self, code: "ArrayCode") -> "ArrayCode":
        """``code`` with the reads of a reduction's array made here (not by the trace: the
        lowering that computes what the roots need does not know them) standing for that
        reduction (``tanh(np.max(u, axis=0))`` inlined into a Jacobian factor reads the max)."""
        if self._made_reads:
            code.roots = [r.xreplace(self._made_reads) for r in code.roots]
        return code

    def inline_copies(self, expr: sp.Basic) -> sp.Basic:
        """``expr`` with each read of an array computed once (``arrays.materialize``)
        replaced by that array's expression at the read's index (for the Jacobian)."""
        subs = {}
        for s in expr.free_symbols:
            o = self.offsets.get(s)
            if o is None or o.ref not in self.copies:
                continue
            inner = self.copies[o.ref]
            subs[s] = inner.xreplace({
                q: self.relative(Offset(oq.ref, tuple(_compose(a, k, o.index) for a, k in oq.index)))
                for q in inner.free_symbols if (oq := self.offsets.get(q)) is not None
            })  # fmt: skip
        return expr.xreplace(subs) if subs else expr

    def at(self, expr: sp.Basic, cell: Sequence[int]) -> sp.Basic:
        """``e(cell)`` at constant indices: relative symbols become element symbols."""
        subs = {}
        for s in expr.free_symbols:
            o = self.offsets.get(s)
            if o is not None:
                base, slot = self.vector[o.ref]
                flat = flat_index(slot.shape, [k + (cell[a] if a >= 0 else 0) for a, k in o.index])
                if o.ref.kind == CONSTANT_KIND:  # an element of a constant: its number
                    subs[s] = sp.Float(float(self.constants[o.ref][int(flat)]))
                else:
                    subs[s] = base[flat] if o.ref.kind == REDUCTION_KIND else slot.symbols[int(flat)]
        return expr.xreplace(subs) if subs else expr

    def indexed(self, offset: Offset, loop: Sequence[sp.Basic]) -> sp.Indexed:
        """The read ``offset`` as an element of ``y``/``p`` for the loop indices ``loop``."""
        base, slot = self.vector[offset.ref]
        index = [k + (loop[a] if a >= 0 else 0) for a, k in offset.index]
        return base[slot.start + flat_index(slot.shape, index)]

    def column(self, offset: Offset, box: Box) -> tuple[int, tuple[int, ...]]:
        """The read's position in ``y`` at the box's first cell, and its stride per box axis."""
        slot = self.vector[offset.ref][1]
        slot_strides = strides(slot.shape)
        start = slot.start + sum(s * (k + (box[a][0] if a >= 0 else 0)) for s, (a, k) in zip(slot_strides, offset.index))
        per_axis = tuple(sum(s for s, (a, _) in zip(slot_strides, offset.index) if a == b) for b in range(len(box)))
        return start, per_axis


def _compose(axis: int, k: int, outer: tuple[tuple[int, int], ...]) -> tuple[int, int]:
    """One axis of a read inside an array computed once, seen from the reader: the
    array's axis ``axis`` (+ ``k``) is read at ``outer[axis]``."""
    if axis < 0:
        return (axis, k)
    outer_axis, outer_k = outer[axis]
    return (outer_axis, outer_k + k)


def reduction_ref(reduction: Reduction) -> SignalRef:
    """The ref that reads of the array a reduction along axes computes use (``arrays.py``)."""
    return SignalRef("", REDUCTION_KIND, reduction.symbol.name)


class Empty(sp.Function):
    """``np.empty(n)``: a local array that a loop fills (printed, never simplified)."""

    def _dyngen_numba(self, printer: object) -> str:
        return f"np.empty({int(self.args[0])})"


class Full(sp.Function):
    """``np.full(n, value)``: a local array's first value (printed, never simplified)."""

    def _dyngen_numba(self, printer: object) -> str:
        n, value = self.args
        return f"np.full({int(n)}, {printer._print(value)})"  # type: ignore[attr-defined]


class ExtremeStep(sp.Function):
    """``ExtremeStep(acc, x, 1)``: one step ``acc = max(acc, x)`` of an accumulation loop
    (``-1``: min), printed as a conditional that keeps numpy's NaN propagation (a NaN
    ``x`` or ``acc`` wins).  ``np.maximum`` there made LLVM compile for minutes, or
    forever, on loop nests such as 16 x 16 or 24 x 20 cells (its unrolling decides).
    ``x`` is a plain symbol (the cell's value, computed on the line before)."""

    def _dyngen_numba(self, printer: object) -> str:
        acc, x = (printer._print(a) for a in self.args[:2])  # type: ignore[attr-defined]
        keep = ">=" if self.args[2] > 0 else "<="
        return f"{acc} if {acc} {keep} {x} or {acc} != {acc} else {x}"


def extreme_steps(accumulator: sp.Symbol, target: Target, summand: sp.Basic, cell: sp.Symbol, op: str) -> list[tuple[Target, sp.Basic, str]]:
    """A max/min accumulation's loop body: the cell's value on a line of its own (``cell``),
    then ``ExtremeStep`` into ``target``."""
    sign = sp.Integer(1 if op == "max" else -1)
    return [(lambda loop: cell, summand, ""), (target, ExtremeStep(accumulator, cell, sign), "")]


@dataclass(frozen=True)
class _Box:
    """One fused box: the same cells of every array of a fused set."""

    box: Box
    exprs: tuple[sp.Basic, ...]


def _fused(assignments: list[ArrayAssignment]) -> Iterator[tuple[list[ArrayAssignment], list[_Box]]]:
    """The assignments in sets of one function and one shape, cut at their common boundaries."""
    sets: dict[tuple[int, tuple[int, ...]], list[ArrayAssignment]] = {}
    for a in assignments:
        sets.setdefault((a.function.order, a.shape), []).append(a)
    for members in sets.values():
        shape = members[0].shape
        pieces = [[(tuple(zip(s.lo, s.hi)), s.expr) for s in a.segments] for a in members]
        merged = merge(combine(lambda *es: sp.Tuple(*es), pieces, shape))
        yield members, [_Box(box, tuple(exprs)) for box, exprs in merged]


class Temporaries:
    """CSE temporary names of one function: a0, a1, ... for the array loops, s0, s1, ...
    for the reductions (the element part uses c0, c1, ...)."""

    def __init__(self, prefix: str = "a") -> None:
        self.prefix = prefix
        self.count = 0

    def cse(self, exprs: list[sp.Basic]) -> tuple[list[tuple[sp.Symbol, sp.Basic]], list[sp.Basic]]:
        """CSE over ``exprs``, blind to the values of their floats: sympy's choice of common
        subexpressions depends on them (``0.5 / n`` from a mean: a grid of 120 cells and one of
        12,000 got different temporaries), so each float is a placeholder symbol meanwhile,
        named in the order the floats are met (the same at every array size)."""
        floats: dict[sp.Float, sp.Symbol] = {}
        for expr in exprs:
            for node in sp.preorder_traversal(expr):
                if isinstance(node, sp.Float) and node not in floats:
                    floats[node] = sp.Symbol(f"_float{len(floats)}", real=True)
        if floats:
            exprs = [e.xreplace(floats) for e in exprs]
        symbols = sp.numbered_symbols(self.prefix, start=self.count)
        replacements, reduced = cse(exprs, symbols)
        self.count += len(replacements)
        if floats:
            back = {symbol: value for value, symbol in floats.items()}
            replacements = [(s, e.xreplace(back)) for s, e in replacements]
            reduced = [e.xreplace(back) for e in reduced]
        return replacements, reduced


def _span(box: Box) -> str:
    """``elements 1..98`` (1-D), ``elements [1:99, 0:100]`` (n-D), ``element 5`` / ``element [0, 3]``."""
    if box_size(box) == 1:
        cell = [lo for lo, _ in box]
        return f"element {cell[0]}" if len(box) == 1 else f"element [{', '.join(map(str, cell))}]"
    if len(box) == 1:
        return f"elements {box[0][0]}..{box[0][1] - 1}"
    return "elements [" + ", ".join(f"{lo}:{hi}" for lo, hi in box) + "]"


def _title(flat: FlatModel, members: list[ArrayAssignment], box: Box) -> str:
    fn = members[0].function
    where = relative_location(fn.location, flat.source_root)
    return f"{fn.system}: {fn.name} [{fn.kind}] ({where}), {_span(box)}"


def _loop_indices(box: Box) -> tuple[sp.Basic, ...]:
    """Per axis: its loop index, or the constant where the box is one element long."""
    return tuple(LOOP_INDICES[a] if hi - lo > 1 else sp.Integer(lo) for a, (lo, hi) in enumerate(box))


def _cell_comment(comment: str, loop: Sequence[sp.Basic]) -> str:
    """A statement's comment (``... x[i]``, ``... x[i, j]``) with the box's constant indices in."""
    marker = "[" + ", ".join(LOOP_NAMES[: len(loop)]) + "]"
    if comment.endswith(marker):
        return comment[: -len(marker)] + "[" + ", ".join(str(x) for x in loop) + "]"
    return comment


def _emit(
    places: Places,
    temporaries: Temporaries,
    title: str,
    box: Box,
    targets: list[tuple[Target, sp.Basic, str]],
    code: ArrayCode,
    accumulator: sp.Symbol | None = None,
    accumulated: Target | None = None,
) -> None:
    """Blocks computing ``target(i, j, ...) = expr`` over the box (a loop nest, or lines
    for one element); ``accumulator``: a symbol the loop updates (never hoisted out of it),
    standing for ``accumulated(i, j, ...)`` when that is given (an array element)."""
    loop = _loop_indices(box)
    if accumulated is not None:
        targets = [(target, expr.xreplace({accumulator: accumulated(loop)}), comment) for target, expr, comment in targets]
        accumulator = None
    if box_size(box) == 1:
        cell = [lo for lo, _ in box]
        exprs = [places.at(expr, cell) for _, expr, _ in targets]
        replacements, reduced = temporaries.cse(exprs)
        statements = [Statement(s, e) for s, e in replacements]
        statements += [
            Statement(target(loop), e, _cell_comment(comment, loop)) for (target, _, comment), e in zip(targets, reduced)
        ]
        # (the relative reads too: ``places.at`` made a read of a reduction's array an element of
        # a local array, which names no reduction; the read still needs it computed first)
        code.roots += exprs + [expr for _, expr, _ in targets]
        code.blocks.append(Block(title, tuple(statements)))
        return
    exprs = [expr for _, expr, _ in targets]
    replacements, reduced = temporaries.cse(exprs)
    varying = set(places.offsets) | set(LOOP_INDICES) | ({accumulator} if accumulator is not None else set())
    hoisted, body = [], []
    for symbol, expr in replacements:
        if expr.free_symbols & varying:
            varying.add(symbol)
            body.append((symbol, expr))
        else:
            hoisted.append(Statement(symbol, expr))
            code.roots.append(expr)
    subs = {s: places.indexed(places.offsets[s], loop) for e in exprs for s in e.free_symbols if s in places.offsets}
    body_statements = [Statement(s, e.xreplace(subs)) for s, e in body]
    body_statements += [
        Statement(target(loop), e.xreplace(subs), _cell_comment(comment, loop))
        for (target, _, comment), e in zip(targets, reduced)
    ]  # fmt: skip
    code.roots += [e for _, e in body] + list(reduced)
    if hoisted:
        code.blocks.append(Block(title, tuple(hoisted)))
        title = f"for each {_span(box)[len('elements '):]}" if len(box) > 1 else f"for each element {box[0][0]}..{box[0][1] - 1}"
    loops = tuple((LOOP_NAMES[a], lo, hi) for a, (lo, hi) in enumerate(box) if hi - lo > 1)
    code.blocks.append(Block(title, tuple(body_statements), loops=loops))


emit = _emit  # (lower_lowrank writes its loops with it)


def _array_target(base: sp.IndexedBase, slot_start: int, shape: Sequence[int]) -> Target:
    return lambda loop: base[slot_start + flat_index(shape, loop)]


def _element_comment(ref: object, ndim: int) -> str:
    return f"{ref}[{', '.join(LOOP_NAMES[:ndim])}]" if ndim else str(ref)


# Gradient columns from ELEMENT_READ down: an element of the array of a reduction along axes
# that element code reads (``lower``), written by ``array_jacobian``'s ``element_reads``
ELEMENT_READ = -(1 << 40)


def _no_element_reads(columns: Iterable[int]) -> None:
    if any(j <= ELEMENT_READ for j in columns):
        raise NoJacobian("a scalar that array code (or a sum over a whole array) reads depends on an element of the array "
                         "of a reduction along an axis: dyngen has no Jacobian for that yet")  # fmt: skip


MAX_BLOCK_ENTRIES = 20_000_000  # Jacobian entries of the array loops (one block, or all): 480 MB of values and pattern
_WEIGHTED = ("sum", "max", "min", "prod")  # reductions along axes with a Jacobian (reduction_weights)
_REDUCTION_START = {"sum": sp.Float(0.0), "prod": sp.Float(1.0), "max": sp.S.NegativeInfinity, "min": sp.S.Infinity}
_REDUCTION_STEP = {"sum": sp.Add, "prod": sp.Mul}


def reduction_blocks(flat: FlatModel, reduction: Reduction, places: Places, temporaries: Temporaries) -> list[Block]:
    """``r = 0.0``, then ``r = r + summand(i, ...)`` over each box of the summand (or ``*``,
    ``max``, ``min``); along axes, ``r`` is a local array and element ``r[kept indices]``
    accumulates."""
    code = ArrayCode()
    where = relative_location(reduction.location, flat.source_root)
    symbol = reduction.symbol
    start = _REDUCTION_START[reduction.op]

    def steps(accumulator: sp.Symbol, target: Target, summand: sp.Basic) -> list[tuple[Target, sp.Basic, str]]:
        """The loop body's statements: ``acc = acc + summand`` (``*``), or for max/min the
        cell's value on a line of its own, then ``ExtremeStep``."""
        if reduction.op in _REDUCTION_STEP:
            return [(target, _REDUCTION_STEP[reduction.op](accumulator, summand), "")]
        return extreme_steps(accumulator, target, summand, sp.Symbol(f"{symbol.name}_cell", real=True), reduction.op)

    if not reduction.shape:
        title = f"{symbol} = {reduction.op} over {reduction.size} elements ({where})"
        code.blocks.append(Block(title, (Statement(symbol, start),)))
        for segment in reduction.segments:
            box = tuple(zip(segment.lo, segment.hi))
            _emit(places, temporaries, f"{symbol}: {_span(box)}", box, steps(symbol, lambda loop: symbol, segment.expr),
                  code, symbol)  # fmt: skip
        return code.blocks
    size = 1
    for extent in reduction.shape:
        size *= extent
    kept = [a for a in range(len(reduction.shape) + len(reduction.axes)) if a not in reduction.axes]
    base = sp.IndexedBase(symbol.name)

    def element(loop: tuple[sp.Basic, ...]) -> sp.Basic:
        return base[flat_index(reduction.shape, [loop[a] for a in kept])]

    if not reduction.axes:  # an array computed once before it is broadcast (arrays.materialize)
        title = f"{symbol} = an array of shape {reduction.shape} computed once, read many times ({where})"
        code.blocks.append(Block(title, (Statement(symbol, Empty(size)),)))
        for segment in reduction.segments:
            box = tuple(zip(segment.lo, segment.hi))
            _emit(places, temporaries, f"{symbol}: {_span(box)}", box, [(element, segment.expr, "")], code)
        return code.blocks
    title = (f"{symbol} = {reduction.op} along axis {', '.join(map(str, reduction.axes))} of "
             f"{reduction.size} elements, shape {reduction.shape} ({where})")  # fmt: skip
    code.blocks.append(Block(title, (Statement(symbol, Full(size, start)),)))
    accumulator = sp.Symbol(f"{symbol.name}_acc", real=True)  # stands for r[kept indices] in the body

    for segment in reduction.segments:
        box = tuple(zip(segment.lo, segment.hi))
        _emit(places, temporaries, f"{symbol}: {_span(box)}", box, steps(accumulator, element, segment.expr),
              code, accumulator, element)  # fmt: skip
    return code.blocks


def view_slot(view: View, slot: Slot, ref: SignalRef | None = None) -> Slot:
    """Where the view ``view`` of the signal in ``slot`` lives (named ``ref``, else as a view of ``slot.ref``)."""
    if ref is None:
        ref = view_ref(View(slot.ref, view.offset, view.shape), slot.stop - slot.start)
    symbols = slot.symbols.view(view.offset, view.size) if slot.array else ()
    return Slot(ref, slot.start + view.offset, view.shape, symbols)


def state_array_refs(flat: FlatModel) -> set[SignalRef]:
    """The refs whose reads are reads of states: each state, and each view of one."""
    refs = {slot.ref for slot in flat.states}
    return refs | {ref for ref, view in flat.views.items() if view.base in refs}


def _der_rows(flat: FlatModel) -> dict[SignalRef, Slot]:
    """Each der computed in array form (or a view of one: ``ders.y = lap.ravel()``) -> the
    slot in ``y`` of the state it belongs to (or of that view of the state)."""
    rows = {der: slot for slot in flat.states if (der := flat.array_ders.get(slot.ref)) is not None}
    rows.update((ref, view_slot(view, rows[view.base])) for ref, view in flat.views.items() if view.base in rows)
    return rows


def _copy_block(title: str, target: sp.IndexedBase, target_start: int, source: Slot, comment: str) -> Block:
    """``target[...] = p[...]`` over a whole parameter array (one loop over its flattened index)."""
    copy = Statement(target[INDEX + target_start], _P[INDEX + source.start], f"{comment}[i]")
    return Block(title, (copy,), loops=(("i", 0, source.stop - source.start),))


def array_rhs(flat: FlatModel) -> ArrayCode:
    """The loops that write the derivatives of the arrays in array form into ``dy``."""
    code, places, temporaries = ArrayCode(), Places(flat), Temporaries()
    der_rows = _der_rows(flat)
    ders = [a for a in flat.array_assignments if a.ref in der_rows]

    def target(ref: SignalRef) -> tuple[Target, str]:
        slot = der_rows[ref]
        return _array_target(_DY, slot.start, slot.shape), "d/dt " + _element_comment(slot.ref, len(slot.shape))

    _emit_assignments(flat, ders, target, code, places, temporaries)
    for slot in flat.parameters:  # a der array only __init__ sets: a constant derivative
        if slot.array and slot.ref in der_rows:
            state = der_rows[slot.ref]
            code.blocks.append(_copy_block(f"{slot.ref} (a constant der array)", _DY, state.start, slot, f"d/dt {state.ref}"))
    return places.as_roots(code)


def _emit_assignments(
    flat: FlatModel, assignments: list, target: Callable, code: ArrayCode, places: Places, temporaries: Temporaries
) -> None:
    """The fused loops of ``assignments``; ``target(ref)`` is (where element (i, ...) goes, its comment)."""
    for members, boxes in _fused(assignments):
        for fused in boxes:
            targets = []
            for a, expr in zip(members, fused.exprs):
                where, comment = target(a.ref)
                targets.append((where, expr, comment))
            _emit(places, temporaries, _title(flat, members, fused.box), fused.box, targets, code)


def array_observe(flat: FlatModel) -> ArrayCode:
    """The loops that write the arrays in array form (and large parameters) into ``out``."""
    code, places, temporaries = ArrayCode(), Places(flat), Temporaries()
    out = {slot.ref: slot for slot in flat.observed if slot.array}
    out.update((ref, view_slot(view, out[view.base], ref)) for ref, view in flat.views.items() if view.base in out)
    computed = [a for a in flat.array_assignments if a.ref in out]

    def target(ref: SignalRef) -> tuple[Target, str]:
        slot = out[ref]
        return _array_target(_OUT, slot.start, slot.shape), _element_comment(ref, len(slot.shape))

    _emit_assignments(flat, computed, target, code, places, temporaries)
    written = {a.ref for a in flat.array_assignments} | {flat.views[a.ref].base for a in flat.array_assignments if a.ref in flat.views}
    for slot in flat.parameters:
        if slot.array and slot.ref in out and slot.ref not in written:
            code.blocks.append(_copy_block(f"{slot.ref} (a parameter array)", _OUT, out[slot.ref].start, slot, str(slot.ref)))
    return places.as_roots(code)


def array_jacobian(flat: FlatModel, gradient: Gradient, clean: Callable[[sp.Basic], sp.Basic], first: int,
                   n_states: int | None = None, lowrank: bool = False,
                   element_reads: Sequence[tuple[Slot, sp.Symbol, sp.Basic]] = ()) -> ArrayCode:  # fmt: skip
    """The loops that write the Jacobian entries of the array derivatives into ``values``.

    Entries are numbered from ``first`` (after the element entries), block by block;
    within a block, in the C order of its box's cells (the order of the loop nest).
    A gradient column ``n_states + k`` is sum ``k`` of the low-rank part
    (``lower_lowrank``): skipped here, and with ``lowrank`` the only entries written,
    added into ``U[row, k]`` instead.  ``element_reads``: ``(the state's slot, the read,
    d(der)/d(read))`` for each derivative in element form that reads an element of the
    array of a reduction along an axis: its entries through that reduction, after the rest.
    """
    code, places, temporaries = ArrayCode(), Places(flat), Temporaries()
    state_arrays = state_array_refs(flat)
    der_rows = _der_rows(flat)
    ders = [a for a in flat.array_assignments if a.ref in der_rows]
    chain = _ReductionChain(flat, places, temporaries, gradient, clean, code, n_states, lowrank)
    virtual = n_states if n_states is not None else float("inf")
    position = first
    for members, boxes in _fused(ders):
        for fused in boxes:
            box = fused.box
            n = box_size(box)
            single = n == 1
            box_shape = tuple(hi - lo for lo, hi in box)
            box_strides = strides(box_shape)
            cell = [lo for lo, _ in box]
            targets = []
            for a, expr in zip(members, fused.exprs):
                expr = places.inline_copies(expr)
                state = der_rows[a.ref]
                der_strides = strides(state.shape)
                row = state.start + sum(s * lo for s, (lo, _) in zip(der_strides, box))
                for symbol in sorted(expr.free_symbols, key=lambda s: s.name):  # through reductions along axes
                    offset = places.offsets.get(symbol)
                    if offset is not None and offset.ref.kind == REDUCTION_KIND:
                        partial = clean(sp.diff(expr, symbol))
                        if partial != 0:
                            position = chain.entries(symbol, partial, box, state, position)
                expr = places.at(expr, cell) if single else expr
                for symbol in sorted(expr.free_symbols, key=lambda s: s.name):
                    offset = places.offsets.get(symbol)
                    if offset is not None:
                        if offset.ref not in state_arrays or lowrank:
                            continue  # a parameter array (a constant), or a reduction (above)
                        column, column_strides = places.column(offset, box)
                        columns = [(column, column_strides, sp.S.One)]
                        read = f"{offset.ref}[{index_text(offset.index)}]"
                    else:
                        _no_element_reads(gradient(symbol))
                        columns = [(j, (0,) * len(box), g) for j, g in sorted(gradient(symbol).items())
                                   if (j >= virtual) == lowrank]  # fmt: skip
                    if not columns:
                        continue
                    partial = clean(sp.diff(expr, symbol))
                    if partial == 0:
                        continue
                    for column, column_strides, g in columns:
                        if lowrank:  # U[row, k] += d(d/dt x)/d(m_k)
                            row_of = _array_target(_U, state.start, state.shape)

                            def u_entry(loop: tuple[sp.Basic, ...], rows: Target = row_of, k: int = column - virtual) -> sp.Basic:
                                return _U[rows(loop).indices[0], k]

                            accumulator = sp.Symbol("jac_acc", real=True)
                            label = f"U[:, {column - virtual}] += d(d/dt {_element_comment(state.ref, len(box))})/d(sum {column - virtual})"
                            _emit(places, temporaries, label, box, [(u_entry, accumulator + partial * g, "")], code,
                                  accumulator, u_entry)  # fmt: skip
                            continue
                        label_read = read if offset is not None else f"y[{column}]"
                        rows_text = _element_comment(state.ref, len(box)) if not single else f"{state.ref}[{', '.join(map(str, cell))}]"
                        label = f"d(d/dt {rows_text})/d({label_read})"

                        def target(loop: tuple[sp.Basic, ...], at: int = position) -> sp.Basic:
                            return _VALUES[at + sp.Add(*(s * (x - lo) for s, x, (lo, _) in zip(box_strides, loop, box)))]

                        targets.append((target, partial * g, label))
                        code.jac_blocks.append(JacBlock(row, column, box_shape, tuple(der_strides), column_strides))
                        position += n
            if targets:
                _emit(places, temporaries, _title(flat, members, box), box, targets, code)
    for state, read, partial in element_reads:  # d/dt v[3] = f(T[3]): T's row 3, one entry per summand cell
        position = chain.entries(read, partial, (), state, position)
    if position - first > MAX_BLOCK_ENTRIES:  # (the blocks' patterns are built when the module is imported)
        raise NoJacobian(f"the Jacobian's loop nests would write {position - first:,} entries, more than the "
                         f"{MAX_BLOCK_ENTRIES:,} dyngen writes: dense blocks through reductions along axes, e.g. one per "
                         "element of a reduction that a scalar adds up (np.max(u @ W, axis=0).sum()) or reads")  # fmt: skip
    return places.as_roots(code)


class NoJacobian(Exception):
    """The derivatives depend on a construct dyngen cannot derive: ``note`` says which."""

    def __init__(self, note: str) -> None:
        self.note = note
        super().__init__(note)


class _ReductionChain:
    """Jacobian entries of a derivative through ``T = sum(S, axis=...)`` that it reads
    (``d/dt x[i] = f(T[i])``): by the chain rule, ``f'(T[i])`` times ``dS(i, j)/dy`` for
    each read of the summand ``S``.

    Read at its own cell: a read of a state along a reduced axis (``theta[j]``) gives one
    entry per cell of the summand (a dense block: all-to-all coupling); a read along kept
    axes only (``theta[i]``) or a scalar's gradient gives one entry per row, accumulated
    over the reduced axes.  Read broadcast (``T[:, None]``) or at another cell
    (``np.roll(T, 1)[:, None]``): one entry per derivative cell and summand cell (dense
    blocks), a scalar's gradient accumulated per derivative cell.  For ``max``/``min``/``prod``
    each entry is weighted by ``∂T/∂S`` at the summand's cell (``reduction_weights``: one-hot
    of the arg-max, products of the other factors).

    A summand that reads a sum over a whole array ``m_k`` (``np.mean((u - u.mean())**2,
    axis=1)``) reaches the low-rank part: its gradient column ``n_states + k`` is skipped
    here, and with ``lowrank`` those are the only entries written, accumulated into
    ``U[row, k]`` (``Σ_j f'(T[i]) ∂S(i, j)/∂m_k``).  A summand that reads the array of another
    reduction along an axis ``R`` at its kept indices goes through it (``_through``).
    """

    def __init__(self, flat: FlatModel, places: Places, temporaries: Temporaries, gradient: Gradient,
                 clean: Callable[[sp.Basic], sp.Basic], code: ArrayCode, n_states: int | None = None,
                 lowrank: bool = False) -> None:  # fmt: skip
        self.flat, self.places, self.temporaries = flat, places, temporaries
        self.n_states, self.lowrank = n_states, lowrank
        self.gradient, self.clean, self.code = gradient, clean, code
        self.state_arrays = state_array_refs(flat)
        from .reduction_weights import AxisWeights  # (that module builds on this one)

        self.weights = AxisWeights(places, code)
        self._adjoints: dict[tuple[str, Offset], SignalRef] = {}  # (T, the read of R) -> its jac_through array

    def _scalar_columns(self, read: sp.Symbol) -> list[tuple[int, sp.Basic]]:
        """The gradient of a scalar a summand reads: its state columns, or with ``lowrank``
        its sums over whole arrays (``column - n_states`` of ``U``)."""
        virtual = self.n_states if self.n_states is not None else float("inf")
        _no_element_reads(self.gradient(read))
        return [(j, g) for j, g in sorted(self.gradient(read).items()) if (j >= virtual) == self.lowrank]

    def _u_entry(self, state: Slot, column: int, rows: Callable[[tuple], sp.Basic]) -> Target:
        """``U[row, k]`` for the derivative cell ``rows(loop)`` (a tuple of its indices) and gradient column ``column``."""
        k = column - (self.n_states or 0)
        return lambda loop: _U[state.start + flat_index(state.shape, rows(loop)), k]

    def _accumulate(self, label: str, box: Box, value: sp.Basic, entry: Target) -> None:
        accumulator = sp.Symbol("jac_acc", real=True)
        _emit(self.places, self.temporaries, label, box, [(entry, accumulator + value, "")], self.code, accumulator, entry)

    def entries(self, symbol: sp.Symbol, partial: sp.Basic, box: Box, state: Slot, position: int) -> int:
        offset = self.places.offsets[symbol]
        reduction = next(r for _, r in self.flat.reductions if r.symbol.name == offset.ref.key)
        where = relative_location(reduction.location, self.flat.source_root)
        identity = tuple((d, 0) for d in range(len(box)))
        summands = [(g, self.places.inline_copies(g.expr)) for g in reduction.segments]
        if reduction.op not in _WEIGHTED:
            raise NoJacobian(f"d/dt {state.ref} reads np.{reduction.op} along axis {', '.join(map(str, reduction.axes))} "
                             f"over {reduction.size} elements ({where}): dyngen cannot derive np.{reduction.op}")  # fmt: skip
        axes = [a for a, _ in offset.index if a >= 0]
        placed = len(set(axes)) == len(axes) and all(a >= 0 or 0 <= k < reduction.shape[d] for d, (a, k) in enumerate(offset.index))
        if not placed:
            raise NoJacobian(f"d/dt {state.ref} reads the array of np.{reduction.op} along axis "
                             f"{', '.join(map(str, reduction.axes))} ({where}) at {index_text(offset.index)}: no Jacobian yet")  # fmt: skip
        inner = sorted({(s, o) for _, e in summands for s in e.free_symbols
                        if (o := self.places.offsets.get(s)) is not None and o.ref.kind == REDUCTION_KIND}, key=lambda so: so[0].name)  # fmt: skip
        for read, inner_offset in inner:  # the summand reads another reduction along axes: through it first
            position = self._through(reduction, offset, read, inner_offset, summands, partial, box, state, position)
        if offset.index != identity or reduction.shape != state.shape:  # broadcast, or at another cell: dense blocks
            return self._broadcast(offset, reduction, summands, partial, box, state, position)
        kept = [a for a in range(len(reduction.shape) + len(reduction.axes)) if a not in reduction.axes]
        der_strides = strides(state.shape)
        self.code.roots.append(partial)  # what the factor reads (a reduction it reads is computed first)
        for segment, summand in summands:
            sub = list(zip(segment.lo, segment.hi))
            for d, a in enumerate(kept):  # the cells of the summand whose kept index is in the der box
                sub[a] = (max(sub[a][0], box[d][0]), min(sub[a][1], box[d][1]))
            sub_box = tuple(sub)
            if box_size(sub_box) == 0:
                continue
            loop = _loop_indices(sub_box)
            # the derivative's factor, read at the summand's kept indices
            factor = partial.xreplace({
                s: self.places.indexed(o, tuple(loop[a] for a in kept))
                for s in partial.free_symbols if (o := self.places.offsets.get(s)) is not None
            })  # fmt: skip
            row = state.start + sum(st * sub_box[a][0] for st, a in zip(der_strides, kept))
            row_strides = [0] * len(sub_box)
            for st, a in zip(der_strides, kept):
                row_strides[a] = st
            weigh = lambda value, at=loop: self.weights.weigh(reduction, value, at)  # noqa: E731 - d(op)/d(summand)
            for read in sorted(summand.free_symbols, key=lambda s: s.name):
                position = self._read(read, summand, factor, sub_box, kept, row, tuple(row_strides), position, state, weigh)
        return position

    def _through(self, reduction: Reduction, offset: Offset, read: sp.Symbol, inner: Offset, summands: list,
                 partial: sp.Basic, box: Box, state: Slot, position: int) -> int:  # fmt: skip
        """The entries of ``d/dt x = f(T[...])`` through ``R``, the array of another reduction along
        axes that ``T``'s summand reads at its kept indices (``np.sum(u * u.mean(axis=1)[:, None],
        axis=1)``): ``a[t] = Σ_c ∂T[t]/∂S(c) ∂S(c)/∂R[r(t)]`` over the cells ``c`` of row ``t``
        (a local array, ``jac_through_*``), then the entries of ``f'(T) a[t]`` times ``∂R[r(t)]/∂y``
        as for a read of ``R`` at ``r(t)`` (``entries`` again: ``R``'s own reads, and the
        reductions it reads in turn).  A read of ``R`` that moves along ``T``'s reduced axes
        (``(u @ W) @ W``) goes through ``_through_cells``."""
        kept = [a for a in range(len(reduction.shape) + len(reduction.axes)) if a not in reduction.axes]
        if any(a >= 0 and a not in kept for a, _ in inner.index):
            return self._through_cells(reduction, offset, read, inner, summands, partial, box, state, position)
        through = self._adjoint(reduction, read, inner, summands, per_cell=False)
        # R read by the derivative cell: T's summand reads R at its kept indices, the derivative reads T at ``offset``
        composite = []
        for a, k in inner.index:
            if a < 0:
                composite.append((a, k))
                continue
            b, k2 = offset.index[kept.index(a)]
            composite.append((b, k + k2) if b >= 0 else (-1, k + k2))
        adjoint = self.places.relative(Offset(through, offset.index))
        return self.entries(self.places.relative(Offset(inner.ref, tuple(composite))), partial * adjoint, box, state, position)

    def _adjoint(self, reduction: Reduction, read: sp.Symbol, inner: Offset, summands: list, per_cell: bool) -> SignalRef:
        """The local array ``jac_through_*`` of ``∂T/∂S(c) ∂S(c)/∂R`` for ``T``'s summand's read
        ``read`` of ``R``: summed over each row of ``T`` (``T``'s shape), or ``per_cell``
        (the summand's whole shape: one value per cell)."""
        key = (reduction.symbol.name, inner)
        if key in self._adjoints:
            return self._adjoints[key]
        kept = [a for a in range(len(reduction.shape) + len(reduction.axes)) if a not in reduction.axes]
        shape = summand_shape(reduction) if per_cell else reduction.shape
        name = f"jac_through_{reduction.symbol.name}_{len(self._adjoints)}"
        ref = SignalRef("", REDUCTION_KIND, name)
        base = sp.IndexedBase(name)
        self.places.vector[ref] = (base, Slot(ref, 0, shape, ()))
        self._adjoints[key] = ref
        what = "at cell c of its summand" if per_cell else "over row t, summed below"
        cell = "c" if per_cell else "t"
        self.code.blocks.append(Block(f"{name}[{cell}] = d({reduction.symbol})/d({inner.ref.key}) {what}",
                                      (Statement(sp.Symbol(name), Full(box_size(tuple((0, e) for e in shape)), sp.Float(0.0))),)))  # fmt: skip
        for segment, summand in summands:
            seg_box = tuple(zip(segment.lo, segment.hi))
            if box_size(seg_box) == 0:
                continue
            derivative = self.clean(sp.diff(summand, read))
            if derivative == 0:
                continue
            loop = _loop_indices(seg_box)

            def element(cells: tuple, b: sp.IndexedBase = base) -> sp.Basic:
                return b[flat_index(shape, cells if per_cell else [cells[a] for a in kept])]

            accumulator = sp.Symbol("jac_acc", real=True)
            value = self.weights.weigh(reduction, derivative, loop)
            _emit(self.places, self.temporaries, f"{name}: {_span(seg_box)}", seg_box, [(element, accumulator + value, "")],
                  self.code, accumulator, element)  # fmt: skip
        return ref

    def _through_cells(self, reduction: Reduction, offset: Offset, read: sp.Symbol, inner: Offset, summands: list,
                       partial: sp.Basic, box: Box, state: Slot, position: int) -> int:  # fmt: skip
        """The entries of ``d/dt x = f(T[...])`` through ``R = op(S', axis=...)``, read by ``T``'s
        summand at cells that move along ``T``'s reduced axes (``(u @ W) @ W``,
        ``np.max(u @ W, axis=0)``, ``(u @ W).sum(axis=1)``): ``a[c] = ∂T/∂S(c) ∂S(c)/∂R[r(c)]``
        per cell ``c`` of ``T``'s summand (``_adjoint``), then for each read of ``S'``
        one loop nest over the derivative's cells, ``T``'s reduced axes and ``R``'s:
        ``f'(T) a[c] ∂R[r(c)]/∂S'(r(c), k) ∂S'/∂y``, one entry per (row, column) the
        loop reaches, accumulated over the axes that move neither."""
        inner_reduction = next(r for _, r in self.flat.reductions if r.symbol.name == inner.ref.key)
        adjoint = self.places.vector[self._adjoint(reduction, read, inner, summands, per_cell=True)][0]
        full = summand_shape(reduction)
        t_kept = [a for a in range(len(full)) if a not in reduction.axes]
        r_kept = [a for a in range(len(summand_shape(inner_reduction))) if a not in inner_reduction.axes]
        n_der = len(box)
        # T's summand axis -> (derivative axis, shift) or a constant; its other axes get loops of their own
        der_axis = {a: offset.index[p] for p, a in enumerate(t_kept) if offset.index[p][0] >= 0}
        fixed = {a: offset.index[p][1] for p, a in enumerate(t_kept) if offset.index[p][0] < 0}
        t_free = [a for a in range(len(full)) if a not in der_axis]
        n_axes = n_der + len(t_free) + len(inner_reduction.axes)
        where = relative_location(inner_reduction.location, self.flat.source_root)
        chain = (f"np.{reduction.op} along axis {', '.join(map(str, reduction.axes))} "
                 f"({relative_location(reduction.location, self.flat.source_root)}) of np.{inner_reduction.op} along axis "
                 f"{', '.join(map(str, inner_reduction.axes))} ({where})")  # fmt: skip
        if n_axes > len(LOOP_INDICES):
            raise NoJacobian(f"d/dt {state.ref} reads {chain}: {n_axes} nested axes, more than the {len(LOOP_INDICES)} "
                             "a loop nest has: no Jacobian yet")  # fmt: skip
        self.code.roots.append(partial)
        inner_summands = [(g, self.places.inline_copies(g.expr)) for g in inner_reduction.segments]
        label = (f"d(d/dt {_element_comment(state.ref, n_der)})/d({{}}) through {reduction.symbol} = np.{reduction.op} "
                 f"of {inner_reduction.symbol} = np.{inner_reduction.op} ({where})")  # fmt: skip
        for t_segment, summand in summands:
            if self.clean(sp.diff(summand, read)) == 0:
                continue
            for r_segment, inner_summand in inner_summands:
                ranges = list(box) + [(max(t_segment.lo[a], fixed[a]), min(t_segment.hi[a], fixed[a] + 1)) if a in fixed
                                      else (t_segment.lo[a], t_segment.hi[a]) for a in t_free]  # fmt: skip
                ranges += [(r_segment.lo[a], r_segment.hi[a]) for a in inner_reduction.axes]
                # T's summand cell as (composite axis or None, shift): bound to a derivative axis, or a loop of its own
                t_at = {a: (d, shift) for a, (d, shift) in der_axis.items()}
                t_at.update({a: (n_der + k, 0) for k, a in enumerate(t_free)})
                for a, (d, shift) in t_at.items():  # the cell must lie in T's segment
                    lo, hi = ranges[d]
                    ranges[d] = (max(lo, t_segment.lo[a] - shift), min(hi, t_segment.hi[a] - shift))
                r_at: dict[int, tuple[int | None, int]] = {}  # R's summand axis -> (composite axis or None, shift)
                for p, (a, k) in enumerate(inner.index):
                    r_at[r_kept[p]] = (t_at[a][0], t_at[a][1] + k) if a >= 0 else (None, k)
                for k, a in enumerate(inner_reduction.axes):
                    r_at[a] = (n_der + len(t_free) + k, 0)
                empty = False
                for a, (d, shift) in r_at.items():  # R's cell must lie in R's segment
                    if d is None:
                        empty = empty or not r_segment.lo[a] <= shift < r_segment.hi[a]
                    else:
                        lo, hi = ranges[d]
                        ranges[d] = (max(lo, r_segment.lo[a] - shift), min(hi, r_segment.hi[a] - shift))
                composite = tuple(ranges)
                if empty or box_size(composite) == 0:
                    continue
                loop = _loop_indices(composite)
                t_loop = [loop[t_at[a][0]] + t_at[a][1] for a in range(len(full))]
                r_loop = [(loop[d] if d is not None else 0) + shift for d, shift in (r_at[a] for a in range(len(r_at)))]
                factor = partial.xreplace({
                    s: self.places.indexed(o, loop[:n_der]) for s in partial.free_symbols if (o := self.places.offsets.get(s)) is not None
                }) * adjoint[flat_index(full, t_loop)]  # fmt: skip
                for q in sorted(inner_summand.free_symbols, key=lambda s: s.name):
                    position = self._cell_read(q, inner_summand, inner_reduction, factor, composite, loop, r_loop,
                                               label, chain, state, position)  # fmt: skip
        return position

    def _cell_read(self, q: sp.Symbol, inner_summand: sp.Basic, inner_reduction: Reduction, factor: sp.Basic, composite: Box,
                   loop: tuple[sp.Basic, ...], r_loop: list[sp.Basic], label: str, chain: str, state: Slot,
                   position: int) -> int:  # fmt: skip
        """The entries of one read ``q`` of ``R``'s summand for ``_through_cells`` (``label``
        with ``{}`` for what is read; ``chain`` names ``T`` of ``R`` for errors)."""
        n_der = len(state.shape)
        o = self.places.offsets.get(q)
        if o is not None and o.ref.kind == REDUCTION_KIND:
            if self.clean(sp.diff(inner_summand, q)) == 0:
                return position
            raise NoJacobian(f"d/dt {state.ref} reads {chain}, whose summand reads a third reduction: no Jacobian yet for three "
                             "reductions nested that way (where two of them are products of constant matrices, multiply "
                             "those first: u @ (W @ W) is one reduction)")  # fmt: skip
        if o is not None and (o.ref not in self.state_arrays or self.lowrank):
            return position  # a parameter array (a constant); with lowrank, states give no U entry
        if o is None and not self._scalar_columns(q):
            return position  # a constant, or (without lowrank) only sums over whole arrays
        derivative = self.clean(sp.diff(inner_summand, q))
        if derivative == 0:
            return position
        self.code.roots.append(derivative)  # (a reduction it reads is computed first)
        value = self.weights.weigh(inner_reduction, factor * derivative.xreplace({
            s: self.places.indexed(p, r_loop) for s in derivative.free_symbols if (p := self.places.offsets.get(s)) is not None
        }), r_loop)  # fmt: skip
        row = state.start + flat_index(state.shape, loop[:n_der])
        if o is None:
            columns = [(sp.Integer(j), g, f"y[{j}]") for j, g in self._scalar_columns(q)]
        else:
            at = ", ".join(str(k + (r_loop[a] if a >= 0 else 0)) for a, k in o.index)
            columns = [(self.places.indexed(o, r_loop).indices[0], sp.S.One, f"{o.ref}[{at}]")]
        for column, g, read_text in columns:
            if self.lowrank:  # U[row, k] += ..., over every axis but the derivative's
                entry = self._u_entry(state, int(column), lambda cells: cells[:n_der])
                self._accumulate(label.format(f"sum {int(column) - (self.n_states or 0)}"), composite, value * g, entry)
                continue
            position = self._block(label.format(read_text), composite, loop, row, column, value * g, position)
        return position

    def _block(self, label: str, box: Box, loop: tuple[sp.Basic, ...], row: sp.Basic, column: sp.Basic, value: sp.Basic,
               position: int) -> int:  # fmt: skip
        """Entries ``value`` at (``row``, ``column``), affine in the loop indices of ``box``: one
        per cell of the axes that move the row or the column, summed over the others."""
        lows = {x: lo for x, (lo, _) in zip(loop, box)}
        moving = [a for a, x in enumerate(loop) if x.is_Symbol and (row.coeff(x) != 0 or column.coeff(x) != 0)]
        shape = tuple(box[a][1] - box[a][0] for a in moving)
        block_strides = strides(shape)

        def target(cells: tuple[sp.Basic, ...], at: int = position) -> sp.Basic:
            return _VALUES[at + sp.Add(*(s * (cells[a] - box[a][0]) for s, a in zip(block_strides, moving)))]

        count = box_size(tuple(box[a] for a in moving))
        if count > MAX_BLOCK_ENTRIES:
            raise NoJacobian(f"{label}: {count:,} entries (every element depends on nearly every other: "
                             f"a dense Jacobian), more than the {MAX_BLOCK_ENTRIES:,} dyngen writes")  # fmt: skip
        if count == box_size(box):  # every cell its own entry
            _emit(self.places, self.temporaries, label, box, [(target, value, "")], self.code)
        else:
            self._zero(label, position, count)
            self._accumulate(label, box, value, target)
        self.code.jac_blocks.append(JacBlock(int(row.xreplace(lows)), int(column.xreplace(lows)), shape,
                                             tuple(int(row.coeff(loop[a])) for a in moving),
                                             tuple(int(column.coeff(loop[a])) for a in moving)))  # fmt: skip
        return position + count

    def _zero(self, label: str, position: int, count: int) -> None:
        """``values[position:position + count] = 0``: entries accumulated below."""
        if count > 1:
            self.code.blocks.append(Block(f"{label}: accumulated below", (Statement(_VALUES[INDEX + position], sp.Float(0.0)),),
                                          loops=(("i", 0, count),)))  # fmt: skip
        else:
            self.code.blocks.append(Block(f"{label}: accumulated below", (Statement(_VALUES[position], sp.Float(0.0)),)))

    def _broadcast(self, offset: Offset, reduction: Reduction, summands: list, partial: sp.Basic, box: Box, state: Slot,
                   position: int) -> int:  # fmt: skip
        """``d/dt x[i, j] = f(T[i + s])`` with ``T = sum(S, axis=1)`` (``s`` a constant
        shift: ``np.roll``; 0 when broadcast): for each cell of the derivative and each
        reduced cell of the summand read at the derivative's kept indices, one entry
        ``f'(T[i + s]) dS(i + s, j')/du`` (a dense block per row); a scalar the summand
        reads, one entry per derivative cell accumulated over the reduced cells (its
        state columns here, or with ``lowrank`` its sums over whole arrays into ``U``).
        One loop nest over the derivative's box and the reduced axes."""
        n_der = len(box)
        kept = [a for a in range(len(reduction.shape) + len(reduction.axes)) if a not in reduction.axes]
        # summand axis -> (derivative axis, shift); the others (reduced, or kept but read at a constant) get loops of their own
        der_axis = {a: offset.index[d] for d, a in enumerate(kept) if offset.index[d][0] >= 0}
        fixed = {a: offset.index[d][1] for d, a in enumerate(kept) if offset.index[d][0] < 0}
        reduced = [a for a in range(len(kept) + len(reduction.axes)) if a not in der_axis]
        der_strides = strides(state.shape)
        self.code.roots.append(partial)
        for segment, summand in summands:
            combined = list(box)
            for a, (d, shift) in der_axis.items():  # the derivative cells whose kept index (+ shift) is in the segment
                combined[d] = (max(box[d][0], segment.lo[a] - shift), min(box[d][1], segment.hi[a] - shift))
            combined += [(max(segment.lo[a], fixed[a]), min(segment.hi[a], fixed[a] + 1)) if a in fixed
                         else (segment.lo[a], segment.hi[a]) for a in reduced]  # fmt: skip
            if any(hi <= lo for lo, hi in combined):
                continue
            combined_box = tuple(combined)
            loop = _loop_indices(combined_box)
            axis_of = {a: der_axis[a][0] if a in der_axis else n_der + reduced.index(a) for a in range(len(segment.lo))}
            shift_of = {a: der_axis[a][1] if a in der_axis else 0 for a in range(len(segment.lo))}
            summand_loop = [loop[axis_of[a]] + shift_of[a] for a in range(len(segment.lo))]
            factor = partial.xreplace({
                s: self.places.indexed(o, loop[:n_der]) for s in partial.free_symbols if (o := self.places.offsets.get(s)) is not None
            })  # fmt: skip
            shape = tuple(hi - lo for lo, hi in combined_box)
            row = state.start + sum(st * lo for st, (lo, _) in zip(der_strides, combined_box))
            row_strides = tuple(der_strides) + (0,) * len(reduced)
            der_box = combined_box[:n_der]
            read_as = f"through {reduction.op} along axis {', '.join(map(str, reduction.axes))} ({reduction.symbol})"
            for read in sorted(summand.free_symbols, key=lambda s: s.name):
                o = self.places.offsets.get(read)
                if o is not None and (o.ref not in self.state_arrays or self.lowrank):
                    continue  # a parameter array (a constant); with lowrank, states give no U entry
                if o is None and not self._scalar_columns(read):
                    continue  # a constant, or (without lowrank) only sums over whole arrays
                derivative = self.clean(sp.diff(summand, read))
                if derivative == 0:
                    continue
                self.code.roots.append(derivative)  # (a reduction it reads is computed first)
                value = (factor * derivative).xreplace({
                    s: self.places.indexed(q, summand_loop) for s in derivative.free_symbols
                    if (q := self.places.offsets.get(s)) is not None
                })  # fmt: skip
                value = self.weights.weigh(reduction, value, summand_loop)
                if o is None:  # a scalar: accumulated per derivative cell
                    position = self._scalar(read, value, combined_box, der_box, state, row, der_strides, position, read_as)
                    continue
                slot = self.places.vector[o.ref][1]
                slot_strides = strides(slot.shape)
                column = slot.start + sum(st * (k + (combined_box[axis_of[a]][0] + shift_of[a] if a >= 0 else 0))
                                          for st, (a, k) in zip(slot_strides, o.index))  # fmt: skip
                column_strides = [0] * len(combined_box)
                for st, (a, _) in zip(slot_strides, o.index):
                    if a >= 0:
                        column_strides[axis_of[a]] += st
                block_strides = strides(shape)

                def target(cells: tuple[sp.Basic, ...], at: int = position, st: tuple = block_strides,
                           b: Box = combined_box) -> sp.Basic:  # fmt: skip
                    return _VALUES[at + sp.Add(*(s * (x - lo) for s, x, (lo, _) in zip(st, cells, b)))]

                label = f"d(d/dt {_element_comment(state.ref, n_der)})/d({o.ref}[{index_text(o.index)}]) {read_as}"
                _emit(self.places, self.temporaries, label, combined_box, [(target, value, "")], self.code)
                self.code.jac_blocks.append(JacBlock(row, column, shape, row_strides, tuple(column_strides)))
                position += box_size(combined_box)
        return position

    def _scalar(self, read: sp.Symbol, value: sp.Basic, combined_box: Box, der_box: Box, state: Slot, row: int,
                der_strides: tuple[int, ...], position: int, read_as: str) -> int:  # fmt: skip
        """``value · ∂read/∂y_j`` summed over the reduced cells, one entry per derivative cell
        (column ``j``: the same for every cell), or into ``U`` with ``lowrank``."""
        n_der = len(der_box)
        count = box_size(der_box)
        der_shape = tuple(hi - lo for lo, hi in der_box)
        for column, g in self._scalar_columns(read):
            label = f"d(d/dt {_element_comment(state.ref, n_der)})/d(y[{column}]) {read_as}"
            if self.lowrank:
                entry = self._u_entry(state, column, lambda loop: loop[:n_der])
                self._accumulate(label.replace(f"y[{column}]", f"sum {column - (self.n_states or 0)}"), combined_box, value * g, entry)
                continue
            self._zero(label, position, count)
            st = strides(der_shape)

            def entry(loop: tuple[sp.Basic, ...], at: int = position, st: tuple = st) -> sp.Basic:
                return _VALUES[at + sp.Add(*(s * (x - lo) for s, x, (lo, _) in zip(st, loop[:n_der], der_box)))]

            self._accumulate(label, combined_box, value * g, entry)
            self.code.jac_blocks.append(JacBlock(row, column, der_shape, tuple(der_strides), (0,) * n_der))
            position += count
        return position

    def _read(self, read: sp.Symbol, summand: sp.Basic, factor: sp.Basic, sub_box: Box, kept: list[int], row: int,
              row_strides: tuple[int, ...], position: int, state: Slot, weigh: Callable) -> int:  # fmt: skip
        offset = self.places.offsets.get(read)
        if offset is not None and (offset.ref not in self.state_arrays or self.lowrank):
            return position  # a parameter array (a constant); with lowrank, states give no U entry
        if offset is not None:
            column, column_strides = self.places.column(offset, sub_box)
            columns = [(column, column_strides, sp.S.One, f"{offset.ref}[{index_text(offset.index)}]")]
        else:
            columns = [(j, (0,) * len(sub_box), g, f"y[{j}]") for j, g in self._scalar_columns(read)]
        if not columns:
            return position
        derivative = self.clean(sp.diff(summand, read))
        if derivative == 0:
            return position
        for column, column_strides, g, label_read in columns:
            value = weigh(factor * derivative * g)
            if self.lowrank:  # U[row, k] += f'(T[i]) dS(i, j)/d(m_k), over the reduced cells
                label = f"U[:, {column - (self.n_states or 0)}] += d(d/dt {_element_comment(state.ref, len(kept))})/d(sum) through a sum along an axis"
                entry = self._u_entry(state, column, lambda loop: tuple(loop[a] for a in kept))
                self._accumulate(label, sub_box, value, entry)
                continue
            label = f"d(d/dt {_element_comment(state.ref, len(kept))})/d({label_read}) through a sum"
            reduced = [a for a in range(len(sub_box)) if a not in kept]
            if any(column_strides[a] for a in reduced):  # one entry per summand cell
                shape = tuple(hi - lo for lo, hi in sub_box)
                box_strides = strides(shape)

                def target(loop: tuple[sp.Basic, ...], at: int = position, st: tuple = box_strides) -> sp.Basic:
                    return _VALUES[at + sp.Add(*(s * (x - lo) for s, x, (lo, _) in zip(st, loop, sub_box)))]

                _emit(self.places, self.temporaries, label, sub_box, [(target, value, "")], self.code)
                self.code.jac_blocks.append(JacBlock(row, column, shape, row_strides, column_strides))
                position += box_size(sub_box)
                continue
            # one entry per row (kept cell), accumulated over the reduced axes
            kept_box = tuple(sub_box[a] for a in kept)
            kept_shape = tuple(hi - lo for lo, hi in kept_box)
            count = box_size(kept_box)
            kept_strides = strides(kept_shape)
            self._zero(label, position, count)

            def entry(loop: tuple[sp.Basic, ...], at: int = position, st: tuple = kept_strides) -> sp.Basic:
                return _VALUES[at + sp.Add(*(s * (loop[a] - lo) for s, a, (lo, _) in zip(st, kept, kept_box)))]

            self._accumulate(label, sub_box, value, entry)
            self.code.jac_blocks.append(JacBlock(
                row, column, kept_shape, tuple(row_strides[a] for a in kept), tuple(column_strides[a] for a in kept)
            ))  # fmt: skip
            position += count
        return position
