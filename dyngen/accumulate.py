"""Signals that several connections add into (``dst.inputs.i_syn += ...``, one per synapse).

dynode runs a system's connections one after the other, so a signal that the first
writer sets and every later writer increments (``+=``, reading the value the one
before left) holds their sum.  ``merge`` folds such a chain into one write, by the
last writer (the value every later reader sees): the first writer's value with each
increment added, in dynode's order.  A signal written by several functions in any
other way stays an error of ``flatten``.
"""

from __future__ import annotations

from dataclasses import replace

import sympy as sp

from .ir import ModelSpec, SignalRef, TracedFunction, Write


def merge(spec: ModelSpec) -> ModelSpec:
    """``spec`` with every chain of increments to one signal folded into one write."""
    found: dict[SignalRef, list[tuple[TracedFunction, Write]]] = {}
    for fn in spec.functions:
        for w in fn.writes:
            if isinstance(w, Write):
                found.setdefault(w.ref, []).append((fn, w))
    symbols = {s.ref: tuple(s.symbols) for s in spec.signals if not s.array}
    folded: dict[SignalRef, tuple[TracedFunction, Write, list[SignalRef]]] = {}
    members: dict[SignalRef, list[TracedFunction]] = {}
    for ref, writers in found.items():
        if len(writers) < 2 or ref not in symbols:
            continue
        writers = sorted(writers, key=lambda item: item[0].info.order)
        if not _increments(ref, symbols[ref], writers):
            continue
        value = writers[0][1].exprs
        for _, w in writers[1:]:
            mapping = dict(zip(symbols[ref], value))
            value = tuple(sp.sympify(e).xreplace(mapping) for e in w.exprs)
        last_fn, last_write = writers[-1]
        reads: list[SignalRef] = []
        for fn, _ in writers:
            reads += [r for r in fn.reads if r != ref and r not in reads]
        folded[ref] = (last_fn, replace(last_write, exprs=value), reads)
        members[ref] = [fn for fn, _ in writers]
    if not folded:
        return spec
    chained: dict[int, set[SignalRef]] = {}  # per function (by id): the chains it is part of
    for ref, fns in members.items():
        for fn in fns:
            chained.setdefault(id(fn), set()).add(ref)
    functions = []
    for fn in spec.functions:
        writes = []
        reads = [r for r in fn.reads if r not in chained.get(id(fn), ())]  # the sum so far: within the chain
        for w in fn.writes:
            if w.ref not in folded:
                writes.append(w)
            elif folded[w.ref][0] is fn:  # (identity: equal functions compare field by field)
                writes.append(folded[w.ref][1])
                reads += [r for r in folded[w.ref][2] if r not in reads]
        functions.append(replace(fn, reads=tuple(reads), writes=tuple(writes)))
    return replace(spec, functions=tuple(functions))


def _increments(ref: SignalRef, own: tuple[sp.Symbol, ...], writers: list[tuple[TracedFunction, Write]]) -> bool:
    """The first writer does not read ``ref``; every later one reads it (its value so far)."""
    first_fn, _ = writers[0]
    if ref in first_fn.reads:
        return False
    own_set = set(own)
    for fn, w in writers[1:]:
        if ref not in fn.reads or not any(own_set & sp.sympify(e).free_symbols for e in w.exprs):
            return False
    return True
