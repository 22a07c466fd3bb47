"""lower, low-rank part: the Jacobian through reductions over whole arrays.

A derivative that reads ``m = sum(g(u))`` (``np.sum``, ``np.mean``, ``@`` of vectors
over a whole array; also ``np.max``/``np.min``/``np.prod``) depends on every element the
reduction reads: its Jacobian is dense.  By the chain rule it is ``J = S + U Vᵀ``:
``S`` the sparse part (stencils, as without the reduction), and one column of ``U`` and
``V`` per reduction ``m_k`` (the rank ``r`` is the number of reductions the derivatives read):

- ``U[i, k] = ∂f_i/∂m_k``, evaluated element by element like the derivatives;
- ``V[j, k] = ∂m_k/∂y_j``: for a sum, the summand's derivative (for ``np.mean(u)``:
  ``1/n``); for a maximum or minimum, the summand's derivative at the first cell that
  attains it (found at run time: one-hot for ``np.max(u)``); for a product, the summand's
  derivative times the product of the other factors (prefix and suffix products).

``lower`` numbers each reduction a derivative reaches with a virtual column ``n + k``
of the gradient, so the chain rule through scalars and loops gives ``U`` for free
(through a sum along an axis too: ``lower_arrays._ReductionChain``);
this module says which reductions qualify (``LowRank.column``) and writes the loops of
``V`` (``weight_code``).  Nested reductions are the chain rule again: a summand that
reads another sum over a whole array adds a multiple of that one's ``V`` column; one
that reads the array of a reduction along axes (a row mean) goes back through it in
reverse mode.  A derivative in element form that reads an element of the array of a
reduction along axes gets its entries from ``lower_arrays.array_jacobian``'s loops
(``element_reads``).
"""

from __future__ import annotations

from typing import Callable

import sympy as sp

from .arrays import Box, box_size, index_text
from .flatten import relative_location
from .ir import REDUCTION_KIND, Block, FlatModel, Offset, Reduction, Statement
from .lower_arrays import (INDEX, ArrayCode, Empty, Full, NoJacobian, Places, Temporaries, _loop_indices, _no_element_reads,
                           _span, emit, extreme_steps, flat_index, state_array_refs, strides)

_V = sp.IndexedBase("V")


def _where(reduction: Reduction, flat: FlatModel) -> str:
    return relative_location(reduction.location, flat.source_root)


class LowRank:
    """The reductions over whole arrays that the derivatives read, in the order they are met:
    reduction ``k`` is the virtual column ``n_states + k`` of the gradient."""

    def __init__(self, flat: FlatModel, n_states: int) -> None:
        self.flat = flat
        self.n_states = n_states
        self.reductions: list[Reduction] = []

    def __len__(self) -> int:
        return len(self.reductions)

    def doc(self) -> str:
        """The docstring of the generated ``lowrank_values``."""
        sums = "; ".join(f"{r.op} {k}: {_where(r, self.flat)}" for k, r in enumerate(self.reductions))
        return (f"Add the low-rank part of the Jacobian, J = S + U V^T (S: jac_values), into ``U`` and ``V`` (zeroed): "
                f"U[:, k] = d(dy)/d(reduction k), V[:, k] = d(reduction k)/dy ({sums}).")  # fmt: skip

    def column(self, reduction: Reduction) -> int:
        """The virtual column of ``reduction``; ``NoJacobian`` if it is not a reduction over a whole array."""
        where = _where(reduction, self.flat)
        if reduction.shape:
            what = f"along axis {', '.join(map(str, reduction.axes))}" if reduction.axes else "computed once"
            raise NoJacobian(
                f"code traced element by element reads the array of np.{reduction.op} {what} over "
                f"{reduction.size} elements ({where}) where dyngen does not place it; it derives it where array "
                "code reads it (e.g. the small vector in an expression with the grid, as in `v[:, None] * u`)"
            )  # fmt: skip
        if reduction.op not in _WEIGHTS:
            raise NoJacobian(f"a derivative depends on np.{reduction.op} over {reduction.size} elements ({where}), "
                             "which dyngen cannot derive")  # fmt: skip
        if reduction not in self.reductions:
            self.reductions.append(reduction)
        return self.n_states + self.reductions.index(reduction)


class _Reads:
    """Where a summand's derivatives go: for each read of a state, the column of ``V``
    (and its strides over the segment's box) and ``∂summand/∂read``; for each read of a
    scalar or of the array of a reduction along axes, that read and ``∂summand/∂read``."""

    def __init__(self, flat: FlatModel, places: Places, clean: Callable[[sp.Basic], sp.Basic]) -> None:
        self.places, self.clean = places, clean
        self.state_arrays = state_array_refs(flat)

    def of(self, summand: sp.Basic, box: Box) -> tuple[list[tuple[int | sp.Symbol, tuple[int, ...] | None, sp.Basic, str]],
                                                      list[tuple[Offset, sp.Basic]]]:  # fmt: skip
        """``(column, column strides, ∂summand/∂read, label)`` for each read of a state array by ``summand``
        over ``box`` (for a read of a scalar, the scalar and strides ``None``), and
        ``(offset, ∂summand/∂read)`` for each read of an array of a reduction along axes."""
        found, along = [], []
        for read in sorted(summand.free_symbols, key=lambda s: s.name):
            offset = self.places.offsets.get(read)
            if offset is not None and offset.ref not in self.state_arrays and offset.ref.kind != REDUCTION_KIND:
                continue  # a parameter or constant array
            derivative = self.clean(sp.diff(summand, read))
            if derivative == 0:
                continue
            if offset is not None and offset.ref.kind == REDUCTION_KIND:
                along.append((offset, derivative))
            elif offset is not None:
                column, column_strides = self.places.column(offset, box)
                found.append((column, column_strides, derivative, f"{offset.ref}[{index_text(offset.index)}]"))
            else:  # a scalar: its column None (summed over the cells, then times its gradient)
                found.append((read, None, derivative, str(read)))
        return found, along


def _position(box: Box, first: int) -> Callable[[tuple], sp.Basic]:
    """The cell's number in the reduction's order (C order within a segment, segments one after another)."""
    box_strides = strides(tuple(hi - lo for lo, hi in box))
    return lambda loop: first + sp.Add(*(s * (x - lo) for s, x, (lo, _) in zip(box_strides, loop, box)))


def weight_code(flat: FlatModel, lowrank: LowRank, gradient: Callable, clean: Callable[[sp.Basic], sp.Basic]) -> ArrayCode:
    """The loops that add ``∂m_k/∂y`` into column ``k`` of ``V`` (zeroed by the caller):

    - a sum: the summand's derivative at every cell;
    - a maximum (minimum): the summand's derivative at the first cell that attains it
      (found at run time by a pass over the cells: ``V[:, k]`` is one-hot for ``max(u)``);
    - a product ``∏ s_c``: ``∏_{c' ≠ c} s_c'`` times the summand's derivative at each cell,
      the products of the others from prefix and suffix products (no division, so a zero
      factor is exact);
    - a summand that reads a scalar ``x`` (an element signal): ``d = Σ_c w_c ∂s_c/∂x``
      summed once over the cells (``w_c`` the weights above), then ``V[:, k] += d ∂x/∂y``;
      where ``x`` is another reduction over a whole array ``m_j`` (a variance), by the
      chain rule ``V[:, k] += d V[:, j]`` once ``V[:, j]`` is complete; where it is a sum
      of instance signals (``lower_mixed``), its placeholder column goes to
      ``code.through`` for the caller's loop over the terms;
    - a summand that reads the array of a reduction along axes ``T = op(S, axis=...)``
      (``np.mean((u - u.mean(axis=1)[:, None])**2)``): reverse mode through ``T``: a local
      array ``jac_adj{k}_T`` gathers ``Σ_c w_c ∂s_c/∂T[t]`` per element ``t`` of ``T``, then
      a loop over the cells ``c'`` of ``S`` adds ``jac_adj[t(c')] ∂T/∂S(c') ∂S(c')/∂y`` into
      ``V[:, k]`` (``∂T/∂S`` from ``reduction_weights``), and what ``S`` reads of other
      reductions goes on the same way (a sum over a whole array: into the chain above; the
      array of another reduction along axes: into its own ``jac_adj``, handled after).
    """
    from .reduction_weights import AxisWeights  # (that module builds on lower_arrays)

    code, places, temporaries = ArrayCode(), Places(flat), Temporaries("w")
    axis_weights = AxisWeights(places, code)
    along_axes = {r.symbol.name: (q, r) for q, (_, r) in enumerate(flat.reductions) if r.shape}
    chained: list[tuple[int, int, sp.Symbol]] = []  # V[:, k] += c * V[:, j]
    reads = _Reads(flat, places, clean)
    for k, reduction in enumerate(lowrank.reductions):  # (the list grows as summands meet other reductions)
        where = _where(reduction, flat)
        segments, first = [], 0
        for segment in reduction.segments:
            box = tuple(zip(segment.lo, segment.hi))
            if box_size(box) == 0:
                continue
            summand = places.inline_copies(segment.expr)
            segments.append((box, summand, _position(box, first), reads.of(summand, box)))
            first += box_size(box)
        weight = _WEIGHTS[reduction.op](code, places, temporaries, reduction, k, segments, first)
        adjoints: dict[str, sp.IndexedBase] = {}  # reductions along axes the summands read -> d(m_k)/d(element)
        scalars: dict[sp.Symbol, sp.Symbol] = {}  # scalars the summands read -> d(m_k)/d(scalar)

        def scatter(box: Box, found: tuple[list, list], value: Callable[[sp.Basic], sp.Basic], what: str,
                    k: int = k, adjoints: dict = adjoints, scalars: dict = scalars) -> None:  # fmt: skip
            """Add ``value(∂/∂read)`` of each read over ``box`` into ``V[:, k]``, a chain coefficient or an adjoint."""
            columns, along = found
            for column, column_strides, derivative, label in columns:
                if column_strides is None:  # a scalar: d(m_k)/d(scalar) = sum over the cells of w_c ds_c/d(scalar)
                    if column not in scalars:
                        scalars[column] = sp.Symbol(f"jac_d{k}_{len(scalars)}", real=True)
                        code.blocks.append(Block(f"d(reduction {k})/d({label}), summed below", (Statement(scalars[column], sp.Float(0.0)),)))
                    coefficient = scalars[column]
                    title = f"d(reduction {k})/d({label}) ({what})"
                    emit(places, temporaries, title, box, [(lambda loop, c=coefficient: c, coefficient + value(derivative), "")],
                         code, coefficient)  # fmt: skip
                    continue

                def entry(loop: tuple, at: int = column, st: tuple = column_strides, b: Box = box) -> sp.Basic:
                    return _V[at + sp.Add(*(s * (x - lo) for s, x, (lo, _) in zip(st, loop, b))), k]

                accumulator = sp.Symbol("jac_acc", real=True)
                title = f"V[:, {k}] += d(reduction {k})/d({label}) ({what})"
                emit(places, temporaries, title, box, [(entry, accumulator + value(derivative), "")], code, accumulator, entry)
            for offset, derivative in along:
                name = offset.ref.key
                if name not in adjoints:
                    _, inner = along_axes[name]
                    if inner.op not in _WEIGHTS:
                        raise NoJacobian(f"the summand of the {reduction.op} over {reduction.size} elements ({where}) reads "
                                         f"np.{inner.op} along an axis ({_where(inner, flat)}), which dyngen cannot derive")  # fmt: skip
                    adjoints[name] = sp.IndexedBase(f"jac_adj{k}_{name}")
                    code.blocks.append(Block(f"d(reduction {k})/d({name}[...]), accumulated below",
                                             (Statement(sp.Symbol(adjoints[name].name), Full(box_size(tuple((0, e) for e in inner.shape)), sp.Float(0.0))),)))  # fmt: skip
                shape = along_axes[name][1].shape

                def element(loop: tuple, base: sp.IndexedBase = adjoints[name], index: tuple = offset.index,
                            shape: tuple = shape) -> sp.Basic:  # fmt: skip
                    return base[flat_index(shape, [kk + (loop[a] if a >= 0 else 0) for a, kk in index])]

                accumulator = sp.Symbol("jac_acc", real=True)
                title = f"d(reduction {k})/d({name}[{index_text(offset.index)}]) ({what})"
                emit(places, temporaries, title, box, [(element, accumulator + value(derivative), "")], code, accumulator, element)

        for box, summand, position, found in segments:
            scatter(box, found, lambda d, p=position, b=box: weight(p, d, b), f"{reduction.op} {reduction.symbol}, {where}")
        done: set[str] = set()
        while set(adjoints) - done:  # the last reduction first: one read by another is earlier in the flat model
            name = max(set(adjoints) - done, key=lambda x: along_axes[x][0])
            done.add(name)
            inner, adjoint = along_axes[name][1], adjoints[name]
            kept = [a for a in range(len(inner.shape) + len(inner.axes)) if a not in inner.axes]
            for segment in inner.segments:
                box = tuple(zip(segment.lo, segment.hi))
                if box_size(box) == 0:
                    continue
                loop = _loop_indices(box)
                row = adjoint[flat_index(inner.shape, [loop[a] for a in kept])]
                found = reads.of(places.inline_copies(segment.expr), box)
                scatter(box, found, lambda d, row=row, loop=loop, inner=inner: axis_weights.weigh(inner, row * d, loop),
                        f"through {inner.op} {inner.symbol} along axis {', '.join(map(str, inner.axes))}, {_where(inner, flat)}")  # fmt: skip
        for read, coefficient in scalars.items():  # V[:, k] += d(m_k)/d(scalar) * d(scalar)/dy
            updates = []
            _no_element_reads(gradient(read))
            for j, g in sorted(gradient(read).items()):
                if j >= lowrank.n_states:  # another reduction over a whole array: the chain rule through V[:, j - n]
                    chain = _chain_symbol(code, chained, k, j - lowrank.n_states)
                    updates.append(Statement(chain, chain + coefficient * g))
                elif j < 0:  # a placeholder (lower_mixed: a sum of instance signals), left to the caller
                    code.through.append((k, j, coefficient))
                else:
                    updates.append(Statement(_V[j, k], _V[j, k] + coefficient * g, f"d(reduction {k})/d(y[{j}]) through {read}"))
                code.roots.append(g)
            if updates:
                code.blocks.append(Block(f"V[:, {k}] += d(reduction {k})/d({read}) * d({read})/dy", tuple(updates)))
    code.blocks += _chain_blocks(chained, lowrank.n_states)
    return places.as_roots(code)


def _chain_symbol(code: ArrayCode, chained: list[tuple[int, int, sp.Symbol]], k: int, j: int) -> sp.Symbol:
    """``jac_chain{k}_{j}`` = d(reduction k)/d(reduction j), set to 0 where first used."""
    chain = sp.Symbol(f"jac_chain{k}_{j}", real=True)
    if not any(c == chain for _, _, c in chained):
        code.blocks.append(Block(f"d(reduction {k})/d(reduction {j}), summed below", (Statement(chain, sp.Float(0.0)),)))
        chained.append((k, j, chain))
    return chain


def _chain_blocks(chained: list[tuple[int, int, sp.Symbol]], n: int) -> list[Block]:
    """``V[:, k] += c V[:, j]`` for each nested reduction, each column ``j`` once it is complete
    (every ``V[:, j] += ...`` into it written before)."""
    blocks, pending = [], list(chained)
    while pending:
        ready = next(item for item in pending if not any(k == item[1] for k, _, _ in pending))
        pending.remove(ready)
        k, j, chain = ready
        update = Statement(_V[INDEX, k], _V[INDEX, k] + chain * _V[INDEX, j])
        blocks.append(Block(f"V[:, {k}] += d(reduction {k})/d(reduction {j}) * V[:, {j}] (the chain rule)", (update,),
                            loops=(("i", 0, n),)))  # fmt: skip
    return blocks


Segments = list  # [(box, summand, position(loop), reads)] of one reduction, in its order
Weight = Callable[[Callable, sp.Basic, Box], sp.Basic]  # (position, ∂summand/∂y, box) -> the V entry


def _sum_weight(code: ArrayCode, places: Places, temporaries: Temporaries, reduction: Reduction, k: int,
                segments: Segments, n: int) -> Weight:  # fmt: skip
    return lambda position, derivative, box: derivative


def _extreme_weight(start: sp.Basic) -> Callable[..., Weight]:
    """``max``/``min`` (from ``start``): a pass finds the extreme, a second one the first
    cell attaining it (``jac_arg{k}``; one pass of selects carried from cell to cell made
    LLVM compile for minutes, or forever, on loop nests such as 16 x 16 cells); the
    entries are the summand's derivative there, zero elsewhere."""

    def weight(code: ArrayCode, places: Places, temporaries: Temporaries, reduction: Reduction, k: int,
               segments: Segments, n: int) -> Weight:  # fmt: skip
        symbol, op = reduction.symbol, reduction.op
        best, arg = sp.Symbol(f"jac_best{k}", real=True), sp.Symbol(f"jac_arg{k}", integer=True)
        cell = sp.Symbol(f"jac_cell{k}", real=True)
        code.blocks.append(Block(f"{symbol}: the {op}imum, then the first cell attaining it, for V[:, {k}]",
                                 (Statement(best, start), Statement(arg, sp.Integer(-1)))))  # fmt: skip
        for box, summand, _, _ in segments:
            emit(places, temporaries, f"{symbol}: {_span(box)}", box, extreme_steps(best, lambda cells: best, summand, cell, op),
                 code, best)  # fmt: skip
        for box, summand, position, _ in segments:
            first = sp.And(sp.Lt(arg, 0), sp.Eq(summand, best))
            targets = [(lambda cells: arg, sp.Piecewise((position(_loop_indices(box)), first), (arg, True)), "")]
            emit(places, temporaries, f"{symbol}: the first cell, {_span(box)}", box, targets, code, arg)
        return lambda position, derivative, box: sp.Piecewise(
            (derivative, sp.Eq(position(_loop_indices(box)), arg)), (sp.S.Zero, True)
        )

    return weight


def _prod_weight(code: ArrayCode, places: Places, temporaries: Temporaries, reduction: Reduction, k: int,
                 segments: Segments, n: int) -> Weight:  # fmt: skip
    """``prod``: ``others[c] = ∏_{c' < c} s_c' · ∏_{c' > c} s_c'``, by a forward pass (the
    prefix products, and the factors) and a backward one over the cells' numbers."""
    symbol = reduction.symbol
    others, factors = sp.IndexedBase(f"jac_others{k}"), sp.IndexedBase(f"jac_factors{k}")
    prefix, suffix = sp.Symbol(f"jac_prefix{k}", real=True), sp.Symbol(f"jac_suffix{k}", real=True)
    code.blocks.append(Block(f"{symbol}: the products of the other factors, for V[:, {k}]: prefix products",
                             (Statement(sp.Symbol(others.name), Empty(n)), Statement(sp.Symbol(factors.name), Empty(n)),
                              Statement(prefix, sp.Float(1.0)))))  # fmt: skip
    for box, summand, position, _ in segments:
        loop = _loop_indices(box)
        targets = [(lambda cells, at=position: others[at(cells)], prefix, ""),
                   (lambda cells, at=position: factors[at(cells)], summand, ""),
                   (lambda cells: prefix, prefix * summand, "")]  # fmt: skip
        emit(places, temporaries, f"{symbol}: {_span(box)}", box, targets, code, prefix)
    back = n - 1 - INDEX
    code.blocks.append(Block(f"{symbol}: times the suffix products", (Statement(suffix, sp.Float(1.0)),)))
    code.blocks.append(Block(f"{symbol}: for each cell, from the last", (
        Statement(others[back], others[back] * suffix), Statement(suffix, suffix * factors[back])), loops=(("i", 0, n),)))  # fmt: skip
    return lambda position, derivative, box: derivative * others[position(_loop_indices(box))]


_WEIGHTS: dict[str, Callable[..., Weight]] = {
    "sum": _sum_weight,
    "max": _extreme_weight(sp.S.NegativeInfinity),
    "min": _extreme_weight(sp.S.Infinity),
    "prod": _prod_weight,
}
