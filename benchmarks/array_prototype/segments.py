"""Lower a lazy array expression to segments: [(start, stop, expr of the loop index i)].

In a segment every element ``i`` (start <= i < stop) is one sympy expression whose
relative symbols ``u_m1, u_p0, u_p1`` read ``u[i-1], u[i], u[i+1]``; absolute symbols
``u_at0`` read ``u[0]``; parameters, time and reduction symbols are scalars.
The work (and the sympy calls) is per segment, never per element:

    Base     one segment (0, n, u_p0)
    Slice    clip the source's segments to [a, b), renumber by -a, shift offsets by +a
    Concat   each array part's segments moved by +off (offsets shifted by -off);
             a scalar part is a length-1 segment -- concatenate boundaries become cuts
    Map      cut at the union of the arguments' cuts, apply the op per interval
"""

from __future__ import annotations

import sympy as sp

from lazyarray import META, ArrayExpr, Base, Concat, Map, Scalar, Slice, absolute, rel

_MEMO: dict[int, tuple[ArrayExpr, list]] = {}  # id(node) -> (node, segments): a DAG is lowered once


def _kind(s: sp.Basic) -> str:
    return META.get(s, ("",))[0]


def shift(expr: sp.Expr, d: int) -> sp.Expr:
    """e(i) -> e(i + d): base[i + k] becomes base[i + k + d]."""
    if d == 0:
        return expr
    return expr.xreplace({s: rel(META[s][1], META[s][2] + d) for s in expr.free_symbols if _kind(s) == "rel"})


def at(expr: sp.Expr, i: int) -> sp.Expr:
    """e(i) at a constant i: base[i + k] becomes the element base[i + k]."""
    return expr.xreplace({s: absolute(META[s][1], META[s][2] + i) for s in expr.free_symbols if _kind(s) == "rel"})


def segments(node: ArrayExpr) -> list[tuple[int, int, sp.Expr]]:
    hit = _MEMO.get(id(node))
    if hit is None:
        hit = _MEMO[id(node)] = (node, [seg for seg in _segments(node) if seg[0] < seg[1]])
    return hit[1]


def _segments(node: ArrayExpr) -> list:
    if isinstance(node, Base):
        return [(0, node.n, rel(node.name, 0))]
    if isinstance(node, Slice):
        a, b = node.start, node.start + node.n
        return [(max(s, a) - a, min(t, b) - a, shift(e, a)) for s, t, e in segments(node.src) if s < b and t > a]
    if isinstance(node, Concat):
        out, off = [], 0
        for part in node.parts:
            if isinstance(part, Scalar):
                out.append((off, off + 1, part.expr))
                off += 1
            else:
                out += [(s + off, t + off, shift(e, -off)) for s, t, e in segments(part)]
                off += part.n
        return out
    if isinstance(node, Map):
        return combine(node.fn, [segments(a) if isinstance(a, ArrayExpr) else a for a in node.args], node.n)
    raise TypeError(node)


def combine(fn, args: list, n: int) -> list:
    """fn applied per interval of the merged cuts; an arg is a segment list or a constant."""
    cuts = sorted({0, n} | {c for a in args if isinstance(a, list) for s, t, _ in a for c in (s, t)})
    ptr = [0] * len(args)
    out = []
    for lo, hi in zip(cuts, cuts[1:]):
        exprs = []
        for j, a in enumerate(args):
            if isinstance(a, list):
                while a[ptr[j]][1] <= lo:
                    ptr[j] += 1
                exprs.append(a[ptr[j]][2])
            else:
                exprs.append(a)
        out.append((lo, hi, fn(*exprs)))
    return out


def element(node: ArrayExpr, k: int) -> sp.Expr:
    """node[k] for a constant k, as an expression of absolute elements."""
    for s, t, e in segments(node):
        if s <= k < t:
            return at(e, k)
    raise IndexError(k)


def as_segments(value, n: int) -> list:
    """A der's value (array, Scalar or number) as segments of length n."""
    if isinstance(value, ArrayExpr):
        if value.n != n:
            raise ValueError(f"a der of length {value.n} for a state of length {n}")
        return segments(value)
    return [(0, n, value.expr if isinstance(value, Scalar) else sp.sympify(value))]


def fuse(values: list, n: int) -> list[tuple[int, int, tuple]]:
    """Segments of several arrays of one length at their common cuts, finalized:
    equal neighbours merged, length-1 segments made absolute (no loop needed)."""
    fused = combine(lambda *es: es, [as_segments(v, n) for v in values], n)
    merged: list = []
    for s, t, es in fused:
        if merged and merged[-1][2] == es and merged[-1][1] == s:
            merged[-1] = (merged[-1][0], t, es)
        else:
            merged.append((s, t, es))
    return [(s, t, tuple(at(e, s) for e in es) if t - s == 1 else es) for s, t, es in merged]


def check_bounds(segs: list, sizes: dict[str, int]) -> None:
    """Every relative read of every segment stays inside its base array."""
    for s, t, es in segs:
        for e in es:
            for sym in e.free_symbols:
                if _kind(sym) == "rel":
                    _, base, k = META[sym]
                    assert 0 <= s + k and t - 1 + k < sizes[base], (s, t, sym)


def partials(expr: sp.Expr) -> list[tuple[sp.Symbol, sp.Expr]]:
    """(symbol, d expr / d symbol) for every array-element or reduction symbol, non-zero."""
    out = []
    for sym in sorted(expr.free_symbols, key=lambda s: s.name):
        if _kind(sym) in ("rel", "abs", "sum"):
            d = sp.diff(expr, sym)
            if d != 0:
                out.append((sym, d))
    return out
