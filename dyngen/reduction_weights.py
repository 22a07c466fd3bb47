"""lower, Jacobian through ``np.max``/``np.min``/``np.prod`` along axes: the weight of each cell.

A derivative that reads ``T = op(S, axis=...)`` (at its own cell, or broadcast back over
a grid) gets ``∂T[r]/∂S[c]`` times what the summand ``S`` reads, for each cell ``c``
of row ``r`` (``lower_arrays._ReductionChain``).  For a sum the weight is 1; here:

- ``max``/``min``: 1 at the first cell of the row attaining the extreme, 0 elsewhere
  (``jac_arg{k}[r]``, found by a pass over the summand before the entries);
- ``prod``: the product of the row's other factors (``jac_others{k}[c]``: prefix
  products in a forward pass, suffix products in a backward one, so a zero factor is
  exact: no division).

The passes are plain loop nests over the summand's whole box (every axis, C order),
written once per reduction in the function that needs them.
"""

from __future__ import annotations

from typing import Sequence

import sympy as sp

from .ir import Block, Reduction, Statement
from .lower_arrays import LOOP_INDICES, ArrayCode, Full, Places, flat_index, summand_shape


class AxisWeights:
    """The weights of the reductions along axes that one function's entries read."""

    def __init__(self, places: Places, code: ArrayCode) -> None:
        self.places, self.code = places, code
        self._made: dict[str, object] = {}

    def weigh(self, reduction: Reduction, value: sp.Basic, summand_loop: Sequence[sp.Basic]) -> sp.Basic:
        """``value`` (``∂f/∂T · ∂S/∂y`` at the summand cell ``summand_loop``) times ``∂T/∂S`` there."""
        if reduction.op == "sum":
            return value
        name = reduction.symbol.name
        if name not in self._made:
            self._made[name] = self._passes(reduction)
        shape, kept = summand_shape(reduction), _kept(reduction)
        cell, row = flat_index(shape, summand_loop), flat_index(reduction.shape, [summand_loop[a] for a in kept])
        made = self._made[name]
        if reduction.op == "prod":
            return value * made[cell]  # type: ignore[index]
        return sp.Piecewise((value, sp.Eq(made[row], cell)), (sp.S.Zero, True))  # type: ignore[index]

    def _passes(self, reduction: Reduction) -> sp.IndexedBase:
        shape, kept = summand_shape(reduction), _kept(reduction)
        symbol, size = reduction.symbol.name, 1
        for extent in shape:
            size *= extent
        rows = 1
        for extent in reduction.shape:
            rows *= extent
        loops = LOOP_INDICES[: len(shape)]
        title = f"{symbol} = {reduction.op} along axis {', '.join(map(str, reduction.axes))}"
        for segment in reduction.segments:
            self.code.roots.append(self.places.inline_copies(segment.expr))
        if reduction.op == "prod":
            others, factors = sp.IndexedBase(f"jac_others_{symbol}"), sp.IndexedBase(f"jac_factors_{symbol}")
            prefix, suffix = sp.IndexedBase(f"jac_prefix_{symbol}"), sp.IndexedBase(f"jac_suffix_{symbol}")
            self.code.blocks.append(Block(f"{title}: the products of each row's other factors (prefix products)", (
                Statement(sp.Symbol(others.name), Full(size, sp.Float(0.0))), Statement(sp.Symbol(factors.name), Full(size, sp.Float(0.0))),
                Statement(sp.Symbol(prefix.name), Full(rows, sp.Float(1.0))), Statement(sp.Symbol(suffix.name), Full(rows, sp.Float(1.0))),
            )))  # fmt: skip
            for segment, value in self._summands(reduction):
                cell, row = flat_index(shape, loops), flat_index(reduction.shape, [loops[a] for a in kept])
                self._loop(f"{symbol}: forward", segment, (
                    Statement(others[cell], prefix[row]), Statement(factors[cell], value),
                    Statement(prefix[row], prefix[row] * factors[cell]),
                ))  # fmt: skip
            back = [hi - 1 - x for x, hi in zip(loops, shape)]  # the whole box, from its last cell
            cell, row = flat_index(shape, back), flat_index(reduction.shape, [back[a] for a in kept])
            self._loop(f"{symbol}: backward (suffix products)", (tuple(0 for _ in shape), shape), (
                Statement(others[cell], others[cell] * suffix[row]), Statement(suffix[row], suffix[row] * factors[cell]),
            ))  # fmt: skip
            return others
        best, arg = sp.IndexedBase(f"jac_best_{symbol}"), sp.IndexedBase(f"jac_arg_{symbol}")
        start = sp.S.NegativeInfinity if reduction.op == "max" else sp.S.Infinity
        self.code.blocks.append(Block(f"{title}: the first cell of each row attaining the {reduction.op}imum", (
            Statement(sp.Symbol(best.name), Full(rows, start)), Statement(sp.Symbol(arg.name), Full(rows, sp.Integer(-1))),
        )))  # fmt: skip
        found = sp.Symbol(f"jac_found_{symbol}")
        for segment, value in self._summands(reduction):
            cell, row = flat_index(shape, loops), flat_index(reduction.shape, [loops[a] for a in kept])
            better = value > best[row] if reduction.op == "max" else value < best[row]
            self._loop(f"{symbol}: {reduction.op}imum", segment, (
                Statement(found, better),
                Statement(arg[row], sp.Piecewise((cell, found), (arg[row], True))),
                Statement(best[row], sp.Piecewise((value, found), (best[row], True))),
            ))  # fmt: skip
        return arg

    def _summands(self, reduction: Reduction) -> list[tuple[tuple, sp.Basic]]:
        """Each segment's box (lo, hi) and its summand read at the loop indices."""
        out = []
        loops = LOOP_INDICES[: len(summand_shape(reduction))]
        for segment in reduction.segments:
            if any(hi <= lo for lo, hi in zip(segment.lo, segment.hi)):
                continue
            summand = self.places.inline_copies(segment.expr)
            subs = {s: self.places.indexed(o, loops) for s in summand.free_symbols if (o := self.places.offsets.get(s)) is not None}
            out.append(((segment.lo, segment.hi), summand.xreplace(subs)))
        return out

    def _loop(self, title: str, box: tuple, statements: tuple[Statement, ...]) -> None:
        lo, hi = box
        names = [str(x) for x in LOOP_INDICES[: len(lo)]]
        self.code.blocks.append(Block(title, statements, loops=tuple(zip(names, lo, hi))))


def _kept(reduction: Reduction) -> list[int]:
    return [a for a in range(len(reduction.shape) + len(reduction.axes)) if a not in reduction.axes]
