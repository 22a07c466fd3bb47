"""Structural sharing: group a flat model's assignments into kernels over instances.

Assignments made by the same function to the same signal key with the same traced
expressions -- up to *which* systems' signals they read -- form one group.  A group
is emitted once, as a loop over its instances; each instance reads its operands
from ``y``, ``p`` or the signal vector ``v`` (laid out as ``OBSERVED``) at per-instance
start indices.

The roles that make expressions comparable across instances are the function's
reads in first-read order: the k-th signal a function read is operand k, whichever
system it belongs to.  Groups are ordered by dataflow; when the grouping makes a
cycle between groups (an algebraic chain through instances of one group),
``group`` returns None and the model is lowered unrolled.

Plain copies (``outputs.x = states.x``, ``connect_signals``) are resolved away for
the readers: they read the copied value at its source.

Numbers do not split a group: assignments that differ only in the numeric constants
of their expressions (the weights a closure per synapse closes over, a class's
attribute set differently per object) share one loop, and each constant that differs
between the instances becomes an operand read from a table of per-instance values
(module data), ``source == "c"``.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from dataclasses import dataclass
from typing import Iterator

import sympy as sp

from .flatten import relative_location
from .interp import InterpTable
from .ir import Assignment, FlatModel, FunctionInfo, SignalRef
from .naming import NameRegistry, sanitize
from .terms import SumSplit, split

KERNEL_MIN_INSTANCES = 4  # a model with a group this large is lowered as kernels
_CSE_NAME = re.compile(r"c\d+\Z")
_RESERVED_LOCALS = {"i", "v", "values", "dy", "out"}
CONSTANTS = "constants"  # the SignalRef kind of a per-instance constant (an operand from "c")
_UNORDERED = (sp.Add, sp.Mul, sp.Min, sp.Max, sp.And, sp.Or)  # whose args sympy sorts (by value too)


@dataclass(frozen=True)
class Operand:
    """A signal read by every instance of a group: ``source[starts[i] + j]``, j < size."""

    name: str  # the kernel's local (element j: f"{name}_{j}" when size > 1)
    source: str  # "y" | "p" | "v", or "c": a constant, ``starts`` its value per instance
    size: int
    starts: tuple[int, ...] | tuple[float, ...]  # per instance
    ref: SignalRef  # the first instance's signal, for comments (kind CONSTANTS: a constant)

    def symbols(self) -> tuple[sp.Symbol, ...]:
        if self.size == 1:
            return (sp.Symbol(self.name, real=True),)
        return tuple(sp.Symbol(f"{self.name}_{j}", real=True) for j in range(self.size))


@dataclass(frozen=True)
class Terms:
    """The terms a group's signal adds up, a different number per instance (a closure
    per synapse): term ``q`` reads its operands at ``starts[q]`` and adds into instance
    ``owners[q]``'s signal."""

    operands: tuple[Operand, ...]  # read only "y", "p" or "c"
    expr: sp.Basic  # in the operands' symbols
    owners: tuple[int, ...]

    @property
    def n(self) -> int:
        return len(self.owners)


@dataclass(frozen=True)
class Group:
    """One kernel: the same assignment made for ``len(refs)`` instances."""

    name: str  # "k0", "k1", ... in dataflow order
    function: FunctionInfo  # the first instance's
    refs: tuple[SignalRef, ...]  # the signal written, per instance
    assignments: tuple[Assignment, ...]
    operands: tuple[Operand, ...]
    exprs: tuple[sp.Basic, ...]  # per element, in the operands' symbols and t
    out_starts: tuple[int, ...]  # per instance: the signal's start in v (= OBSERVED)
    state_starts: tuple[int, ...] | None  # ders: per instance, the start of its state in y
    copy_of: int | None  # the operand this signal is a plain copy of, if any
    terms: Terms | None = None  # exprs + the sum of these (exprs then read only "y", "p", "c")

    @property
    def size(self) -> int:
        return len(self.exprs)

    @property
    def n(self) -> int:
        return len(self.refs)


def local_name(ref: SignalRef, registry: NameRegistry, size: int) -> str:
    """A kernel's readable local for a signal: ``x`` (a state), ``input_mu``, ``output_y``
    (``constant_0`` for a per-instance constant)."""
    if ref.kind == CONSTANTS:
        base = f"const{ref.key}"
    else:
        base = sanitize(ref.key) if ref.kind == "states" else f"{ref.kind[:-1]}_{sanitize(ref.key)}"
    if _CSE_NAME.match(base):
        base += "_"
    return registry.unique_family(base, size)  # element j of a vector is f"{name}_{j}"


def local_registry() -> NameRegistry:
    """A registry that keeps locals off the loop index, the arrays and builtins."""
    registry = NameRegistry()
    for name in _RESERVED_LOCALS:
        registry.unique(name)
    return registry


class _Layout:
    """Where every signal lives: y (states), p (parameters) or v (written signals)."""

    def __init__(self, flat: FlatModel, extra: dict[SignalRef, tuple[str, int, sp.Symbol]] | None = None) -> None:
        self.source: dict[SignalRef, tuple[str, int]] = {}
        for slot in flat.states:
            self.source[slot.ref] = ("y", slot.start)
        for slot in flat.parameters:
            self.source[slot.ref] = ("p", slot.start)
        self.out_start = {slot.ref: slot.start for slot in flat.observed}
        for a in flat.assignments:
            self.source[a.ref] = ("v", self.out_start[a.ref])
        self.owner: dict[sp.Symbol, SignalRef] = {}
        for slot in (*flat.states, *flat.parameters, *flat.observed):
            if not slot.array:  # (an element of an array in array form: one of ``extra``)
                for symbol in slot.symbols:
                    self.owner[symbol] = slot.ref
        state_start = {slot.ref: slot.start for slot in flat.states}
        self.der_state = {
            SignalRef(path, "ders", der_key): state_start[SignalRef(path, "states", state_key)]
            for path, state_key, der_key in flat.der_keys
        }
        self.symbols = {slot.ref: slot.symbols for slot in (*flat.states, *flat.parameters, *flat.observed)}
        for ref, (source, start, symbol) in (extra or {}).items():  # single values no slot holds
            self.source[ref] = (source, start)
            self.owner[symbol] = ref
            self.symbols[ref] = (symbol,)
        self.at = {place: ref for ref, place in self.source.items()}

    def plain(self, ref: SignalRef) -> bool:
        """Whether ``ref`` is a state or a parameter (no group computes it)."""
        return self.source[ref][0] in ("y", "p")


def _operand_refs(a: Assignment, layout: _Layout, time: sp.Symbol) -> list[SignalRef] | None:
    """The signals ``a`` reads, in the function's read order; None if that is unclear."""
    used = {layout.owner.get(s) for e in a.exprs for s in e.free_symbols if s != time}
    if None in used:
        return None
    refs = [r for r in a.reads if r in used]
    return refs if set(refs) == used else None


def _shape(expr: sp.Basic, names: dict[sp.Symbol, str], memo: dict) -> tuple[str, tuple[sp.Float, ...]]:
    """An exact text of ``expr`` with every float written ``F`` and symbols by ``names``,
    and the floats in the order of that text.

    The args of sums and products are listed in the order of their texts (sympy sorts
    them by their coefficients' values too), so two expressions that differ only in
    their floats give the same text.  Where that order is ambiguous (two args of the
    same text with floats), the floats are written out: such expressions group only
    with identical ones.
    """
    found = memo.get(expr)
    if found is not None:
        return found
    if isinstance(expr, sp.Float):
        found = ("F", (expr,))
    elif isinstance(expr, sp.Symbol):
        found = (names.get(expr, expr.name), ())
    elif isinstance(expr, sp.Rational):
        found = (f"Q{expr.p}/{expr.q}", ())
    elif isinstance(expr, InterpTable):
        found = (expr.structure(), ())
    elif not expr.args:
        found = (type(expr).__name__, ())
    else:
        parts = [_shape(arg, names, memo) for arg in expr.args]
        if isinstance(expr, _UNORDERED):
            parts.sort(key=lambda part: part[0])
            texts = [text for text, _ in parts]
            if len(set(texts)) < len(texts) and any(values for _, values in parts):
                parts = [(f"{text}{list(map(float, values))}", ()) for text, values in parts]
        text = f"{type(expr).__name__}({','.join(text for text, _ in parts)})"
        found = (text, tuple(v for _, values in parts for v in values))
    memo[expr] = found
    return found


def _with_floats(expr: sp.Basic, names: dict[sp.Symbol, str], memo: dict, floats: Iterator[sp.Basic]) -> sp.Basic:
    """``expr`` with its floats replaced, in ``_shape``'s order, by ``floats``."""
    if isinstance(expr, sp.Float):
        return next(floats)
    if not expr.args or not _shape(expr, names, memo)[1]:
        return expr
    args = list(expr.args)
    order = range(len(args))
    if isinstance(expr, _UNORDERED):
        order = sorted(order, key=lambda k: _shape(args[k], names, memo)[0])
    for k in order:
        args[k] = _with_floats(args[k], names, memo, floats)
    return expr.func(*args)


def group(flat: FlatModel, extra: dict[SignalRef, tuple[str, int, sp.Symbol]] | None = None) -> tuple[Group, ...] | None:
    """Group the assignments; None when the model must be lowered unrolled.

    ``extra``: single values that no slot of ``flat`` holds -- an element of an array in
    array form, a sum over one (``lower_mixed``) -- by the ref the assignments' ``reads``
    name them with: (source, start, symbol).
    """
    layout = _Layout(flat, extra)
    reads: dict[SignalRef, list[SignalRef]] = {}
    for a in flat.assignments:
        refs = _operand_refs(a, layout, flat.time)
        if refs is None:
            return None
        reads[a.ref] = refs
    floats: dict[SignalRef, tuple[sp.Float, ...]] = {}  # per assignment, in _shape's order
    first = _partition(flat, layout, reads, {}, floats)
    # Sums of equal terms group by their term's structure where that joins assignments
    # that differ only in their number of terms, and no one number is most of them (a
    # chain's end with one neighbour fewer stays a group of its own).
    splits = _sums(flat, layout, reads, first)
    sum_keys = {ref: _sum_key(found, layout) for ref, found in splits.items()}
    joined: dict[tuple, Counter] = {}
    for ref, key in sum_keys.items():
        joined.setdefault(key, Counter())[first[ref]] += 1
    summed = {ref: key for ref, key in sum_keys.items()
              if len(joined[key]) > 1 and 2 * max(joined[key].values()) < sum(joined[key].values())}  # fmt: skip
    members = _partition(flat, layout, reads, summed, floats) if summed else first
    by_group: dict[int, list[tuple[Assignment, list[SignalRef]]]] = {}
    assignment = {a.ref: a for a in flat.assignments}
    for ref, index in members.items():
        by_group.setdefault(index, []).append((assignment[ref], reads[ref]))
    grouped = _aligned([by_group[k] for k in sorted(by_group)])
    group_of = {a.ref: g for g, m in enumerate(grouped) for a, _ in m}
    order = _dataflow_order(grouped, group_of)
    if order is None:
        return None
    built = [_build(f"k{n}", grouped[g], layout, splits, summed, floats, flat.source_root) for n, g in enumerate(order)]
    return tuple(_resolve_copies(built, layout))


def _site(a: Assignment) -> tuple:
    fn = a.function
    return (fn.kind, fn.name, fn.location, a.ref.kind, a.ref.key)


def _partition(flat: FlatModel, layout: _Layout, reads, summed: dict[SignalRef, tuple], floats: dict) -> dict[SignalRef, int]:
    """Each assignment's group index (in order of first appearance); the key of those in
    ``summed`` is given, the floats of the others are kept in ``floats``."""
    keys: dict[tuple, int] = {}
    group_of: dict[SignalRef, int] = {}
    for a in flat.assignments:
        key = summed.get(a.ref)
        if key is None:
            refs = reads[a.ref]
            names, memo = _role_names(refs, layout), {}
            shapes = tuple(_shape(e, names, memo) for e in a.exprs)
            floats[a.ref] = tuple(v for _, values in shapes for v in values)
            key = (*_site(a), len(a.exprs), tuple(text for text, _ in shapes), _descriptors(refs, layout, group_of))
        group_of[a.ref] = keys.setdefault(key, len(keys))
    return group_of


def _sums(flat: FlatModel, layout: _Layout, reads, first: dict[SignalRef, int]) -> dict[SignalRef, SumSplit]:
    """The sums of equal terms (reading states and parameters only) made where the
    assignments of one function and signal fall into several groups, none of them
    most of the assignments."""
    sizes: dict[tuple, Counter] = {}
    for a in flat.assignments:
        sizes.setdefault(_site(a), Counter())[first[a.ref]] += 1
    found: dict[SignalRef, SumSplit] = {}
    for a in flat.assignments:
        counts = sizes[_site(a)]
        if a.ref.kind == "ders" or len(counts) < 2 or 2 * max(counts.values()) >= sum(counts.values()):
            continue
        parts = split(a, reads[a.ref], layout.symbols, layout.plain, _shape)
        if parts is not None and all(layout.plain(ref) for ref in parts.rest_refs):
            found[a.ref] = parts
    return found


def _sum_key(found: SumSplit, layout: _Layout) -> tuple:
    """(The rest's operands are states and parameters: no group computes them.)"""
    a = found.assignment
    rest = _shape(found.rest, _role_names(found.rest_refs, layout), {})[0]
    return (*_site(a), "sum", rest, found.term_text, _descriptors(found.rest_refs, layout, {}))


def _descriptors(refs: list[SignalRef], layout: _Layout, group_of: dict[SignalRef, int]) -> tuple:
    return tuple((layout.source[ref][0], len(layout.symbols[ref]), group_of.get(ref)) for ref in refs)


def _role_names(refs: list[SignalRef], layout: _Layout) -> dict[sp.Symbol, str]:
    """The k-th signal read is operand k, whichever system it belongs to."""
    return {symbol: f"_r{k}_{j}" for k, ref in enumerate(refs) for j, symbol in enumerate(layout.symbols[ref])}


def _aligned(members: list[list[tuple[Assignment, list[SignalRef]]]]) -> list[list[tuple[Assignment, list[SignalRef]]]]:
    """Split a group whose systems are exactly those of two or more smaller groups into
    those parts (``ders.x`` of 200 oscillators, when 100 of them compute ``ders.y`` one
    way and 100 another): each part can then share a loop with its smaller group, one
    pass over each system's data instead of two."""
    systems = [frozenset(a.ref.system for a, _ in m) for m in members]
    candidates = sorted(
        {s for s in systems if len(s) >= KERNEL_MIN_INSTANCES}, key=lambda s: (-len(s), min(s), len(s))
    )
    result = []
    for m, own in zip(members, systems):
        parts: list[frozenset] = []
        covered: frozenset = frozenset()
        for candidate in candidates:
            if len(candidate) < len(own) and candidate <= own and not candidate & covered:
                parts.append(candidate)
                covered |= candidate
        if len(parts) < 2 or covered != own:
            result.append(m)
            continue
        split = [[item for item in m if item[0].ref.system in part] for part in parts]
        position = {id(item[0]): k for k, item in enumerate(m)}
        result += sorted(split, key=lambda part: position[id(part[0][0])])  # the original order
    return result


def _dataflow_order(members, group_of: dict[SignalRef, int]) -> list[int] | None:
    deps = [{group_of[r] for _, refs in m for r in refs if r in group_of} for m in members]
    if any(g in d for g, d in enumerate(deps)):
        return None
    users: list[list[int]] = [[] for _ in members]
    for g, d in enumerate(deps):
        for h in d:
            users[h].append(g)
    remaining = [len(d) for d in deps]
    ready = [g for g in range(len(members)) if not remaining[g]]
    heapq.heapify(ready)  # ties: the order of the first instance's assignment
    order = []
    while ready:
        g = heapq.heappop(ready)
        order.append(g)
        for u in users[g]:
            remaining[u] -= 1
            if not remaining[u]:
                heapq.heappush(ready, u)
    return order if len(order) == len(members) else None


def _build(name: str, instances, layout: _Layout, splits: dict[SignalRef, SumSplit], summed, floats: dict, root: str) -> Group:
    instances = sorted(instances, key=lambda item: layout.out_start[item[0].ref])  # system order
    first = instances[0][0]
    registry = local_registry()
    terms = None
    if first.ref in summed:
        parts = [splits[a.ref] for a, _ in instances]
        operands, exprs = _shared([((p.rest,), p.rest_refs) for p in parts], layout, registry, first.function, root)
        items = [((term,), refs) for p in parts for term, refs in p.terms]
        term_operands, (term,) = _shared(items, layout, registry, first.function, root)
        owners = tuple(k for k, p in enumerate(parts) for _ in p.terms)
        terms = Terms(tuple(term_operands), term, owners)
    else:
        items = [(a.exprs, refs) for a, refs in instances]
        known = [floats[a.ref] for a, _ in instances]
        operands, exprs = _shared(items, layout, registry, first.function, root, known)
    copy_of = next(
        (k for k, op in enumerate(operands) if op.size == len(exprs) and exprs == op.symbols()),
        None,
    )
    refs = tuple(a.ref for a, _ in instances)
    return Group(
        name=name,
        function=first.function,
        refs=refs,
        assignments=tuple(a for a, _ in instances),
        operands=tuple(operands),
        exprs=exprs,
        out_starts=tuple(layout.out_start[r] for r in refs),
        state_starts=tuple(layout.der_state[r] for r in refs) if first.ref.kind == "ders" else None,
        copy_of=copy_of,
        terms=terms,
    )


def _shared(items, layout: _Layout, registry: NameRegistry, fn: FunctionInfo, root: str,
            floats: list | None = None) -> tuple[list[Operand], tuple[sp.Basic, ...]]:
    """The operands and expressions of ``items`` (each: expressions and the signals they
    read, all of one structure): the first item's, each operand with its start per
    item, and each float that differs between the items an operand of its values."""
    first_exprs, first_refs = items[0]
    operands = []
    roles: dict[sp.Symbol, sp.Symbol] = {}
    for k, ref in enumerate(first_refs):
        starts = tuple(layout.source[refs[k]][1] for _, refs in items)
        size = len(layout.symbols[ref])
        operand = Operand(local_name(ref, registry, size), layout.source[ref][0], size, starts, ref)
        operands.append(operand)
        roles.update(zip(layout.symbols[ref], operand.symbols()))
    if floats is None:
        floats = []
        for exprs, refs in items:
            names, memo = _role_names(refs, layout), {}
            floats.append(tuple(v for e in exprs for v in _shape(e, names, memo)[1]))
    exprs = first_exprs
    if len(items) > 1 and floats[0]:
        exprs = _constants_as_operands(items, floats, layout, operands, registry, fn, root)
    return operands, tuple(e.xreplace(roles) for e in exprs)


def _constants_as_operands(items, floats, layout: _Layout, operands: list[Operand], registry: NameRegistry,
                           fn: FunctionInfo, root: str) -> tuple[sp.Basic, ...]:
    """The first item's expressions with each float that differs between the items
    replaced by an operand of per-item values (appended to ``operands``)."""
    first_exprs, first_refs = items[0]
    by_values: dict[tuple[float, ...], sp.Symbol] = {}
    replacements = []
    for column in zip(*floats):
        if all(v == column[0] for v in column):
            replacements.append(column[0])
            continue
        values = tuple(float(v) for v in column)
        symbol = by_values.get(values)
        if symbol is None:
            where = relative_location(fn.location, root)
            ref = SignalRef(f"{fn.name} ({where})", CONSTANTS, str(len(by_values)))
            operand = Operand(local_name(ref, registry, 1), "c", 1, values, ref)
            operands.append(operand)
            symbol = by_values[values] = operand.symbols()[0]
        replacements.append(symbol)
    names, memo = _role_names(first_refs, layout), {}
    feed = iter(replacements)
    return tuple(_with_floats(e, names, memo, feed) for e in first_exprs)


def _resolve_copies(groups: list[Group], layout: _Layout) -> Iterator[Group]:
    """Readers of plain copies read the source instead; equal operands merge."""
    copies: dict[int, tuple[str, int]] = {}  # v start of a copied signal -> its source
    for g in groups:
        registry = local_registry()
        operands: list[Operand] = []
        by_place: dict[tuple[str, tuple[int, ...], int], Operand] = {}
        renames: dict[sp.Symbol, sp.Symbol] = {}
        for op in g.operands:
            places = [copies.get(s, (op.source, s)) if op.source == "v" else (op.source, s) for s in op.starts]
            source = {src for src, _ in places}
            if len(source) != 1:  # copies of different kinds of source: keep reading v
                places = [(op.source, s) for s in op.starts]
                source = {op.source}
            starts = tuple(s for _, s in places)
            place = (source.pop(), starts, op.size)
            merged = by_place.get(place)
            if merged is None:
                ref = op.ref
                if place[0] != op.source:  # name it after the signal it really reads
                    ref = layout.at.get((place[0], starts[0]), op.ref)
                merged = Operand(local_name(ref, registry, op.size), place[0], op.size, starts, ref)
                by_place[place] = merged
                operands.append(merged)
            renames.update(zip(op.symbols(), merged.symbols()))
        exprs = tuple(e.xreplace(renames) for e in g.exprs)
        copy_of = None
        if g.copy_of is not None:
            target = renames[g.operands[g.copy_of].symbols()[0]]
            copy_of = next(k for k, op in enumerate(operands) if op.symbols()[0] == target)
            src = operands[copy_of]
            for start, source_start in zip(g.out_starts, src.starts):
                copies[start] = (src.source, source_start)
        yield Group(g.name, g.function, g.refs, g.assignments, tuple(operands), exprs,
                    g.out_starts, g.state_starts, copy_of, g.terms)  # fmt: skip

