"""lower, mixed: an element of a reduction along axes read by element code, as a sum of its own.

Many small components reading single elements of a reduction along an axis of a grid
(each oscillator driven by one column's mean: ``grid.outputs.colmean[k]``) would stop
the loops over instances (``lower_mixed``: element code may read scalars, not arrays
of reductions).  Each element read becomes a reduction over the whole summand
restricted to that element's row: a scalar (``np.sum`` of column ``k``), which the
loops over instances read from ``v`` like any sum over an array, with its Jacobian as
a low-rank term (one column of ``U`` and ``V`` per element read).  The array of the
reduction stays for the array code that reads it.
"""

from __future__ import annotations

from dataclasses import replace

import sympy as sp

from .arrays import box_size
from .ir import REDUCTION_KIND, FlatModel, Reduction, Segment


MAX_ELEMENT_SUMS = 64  # beyond: as many loops and columns of U and V (Woodbury solves a system that size)


def element_reads_as_sums(flat: FlatModel) -> FlatModel | None:
    """``flat`` with every element of a reduction along axes that element code reads (at a
    constant index) replaced by a reduction of its own; None when there is none, when
    element code reads such an array otherwise, or when it reads more than
    ``MAX_ELEMENT_SUMS`` elements."""
    by_name = {r.symbol.name: r for _, r in flat.reductions if r.shape}
    made: dict[sp.Symbol, tuple[str, Reduction]] = {}  # the read -> (its reduction's name, the sum)
    for a in flat.assignments:
        for symbol in sorted({s for e in a.exprs for s in e.free_symbols}, key=lambda s: s.name):
            offset = flat.offsets.get(symbol)
            if symbol in made or offset is None:
                continue
            if offset.ref.kind != REDUCTION_KIND or offset.ref.key not in by_name or any(axis >= 0 for axis, _ in offset.index):
                return None  # a read this does not cover: lower_mixed says why
            made[symbol] = (offset.ref.key, _element(by_name[offset.ref.key], tuple(k for _, k in offset.index)))
    if not made or len(made) > MAX_ELEMENT_SUMS:
        return None
    reductions = []
    for position, r in flat.reductions:  # each element's sum right after its array's
        reductions.append((position, r))
        reductions += [(position, s) for name, s in made.values() if name == r.symbol.name]
    subs = {read: s.symbol for read, (_, s) in made.items()}
    assignments = tuple(replace(a, exprs=tuple(e.xreplace(subs) for e in a.exprs)) for a in flat.assignments)
    return replace(flat, assignments=assignments, reductions=tuple(reductions))


def _element(reduction: Reduction, cell: tuple[int, ...]) -> Reduction:
    """``reduction`` at ``cell`` of its array: the same summand over the cells of that row."""
    kept = [a for a in range(len(reduction.shape) + len(reduction.axes)) if a not in reduction.axes]
    segments = []
    for segment in reduction.segments:
        lo, hi = list(segment.lo), list(segment.hi)
        for a, k in zip(kept, cell):
            lo[a], hi[a] = max(lo[a], k), min(hi[a], k + 1)
        if box_size(tuple(zip(lo, hi))):
            segments.append(Segment(tuple(lo), tuple(hi), segment.expr))
    size = sum(box_size(tuple(zip(s.lo, s.hi))) for s in segments)
    name = f"{reduction.symbol.name}_at_{'_'.join(map(str, cell))}"
    return Reduction(sp.Symbol(name, real=True), size, tuple(segments), reduction.location, reduction.op)

