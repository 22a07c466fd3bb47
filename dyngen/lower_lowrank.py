"""lower, low-rank part: the Jacobian through sums over whole arrays.

A derivative that reads ``m = sum(g(u))`` (``np.sum``, ``np.mean``, ``@`` of vectors
over a whole array) depends on every element the sum reads: its Jacobian is dense.
By the chain rule it is ``J = S + U Vᵀ``: ``S`` the sparse part (stencils, as
without the sum), and one column of ``U`` and ``V`` per sum ``m_k`` (the rank ``r``
is the number of such sums the derivatives read):

- ``U[i, k] = ∂f_i/∂m_k``, evaluated element by element like the derivatives;
- ``V[j, k] = ∂m_k/∂y_j``, the summand's derivative (for ``np.mean(u)``: ``1/n``).

``lower`` numbers each sum a derivative reaches with a virtual column ``n + k``
of the gradient, so the chain rule through scalars and loops gives ``U`` for free;
this module says which reductions qualify (``LowRank.column``) and writes the loops of
``V`` (``weight_code``).  Products, maxima, minima, reductions along axes read other
than at their own cell, and sums of sums are left without a Jacobian, with a note
naming the construct.
"""

from __future__ import annotations

from typing import Callable

import sympy as sp

from .arrays import box_size, index_text
from .flatten import relative_location
from .ir import REDUCTION_KIND, FlatModel, Reduction
from .lower_arrays import ArrayCode, Places, Temporaries, emit

_V = sp.IndexedBase("V")


class NoJacobian(Exception):
    """The derivatives depend on a construct dyngen cannot derive: ``note`` says which."""

    def __init__(self, note: str) -> None:
        self.note = note
        super().__init__(note)


def _where(reduction: Reduction, flat: FlatModel) -> str:
    return relative_location(reduction.location, flat.source_root)


class LowRank:
    """The sums over whole arrays that the derivatives read, in the order they are met:
    sum ``k`` is the virtual column ``n_states + k`` of the gradient."""

    def __init__(self, flat: FlatModel, n_states: int) -> None:
        self.flat = flat
        self.n_states = n_states
        self.reductions: list[Reduction] = []

    def __len__(self) -> int:
        return len(self.reductions)

    def column(self, reduction: Reduction) -> int:
        """The virtual column of ``reduction``; ``NoJacobian`` if it is not a sum over a whole array."""
        where = _where(reduction, self.flat)
        if reduction.shape:
            what = f"along axis {', '.join(map(str, reduction.axes))}" if reduction.axes else "computed once"
            raise NoJacobian(
                f"a derivative reads the array of np.{reduction.op} {what} over {reduction.size} elements ({where}) "
                "other than at its own cell (or from element code); dyngen derives sums along an axis only where "
                "each cell reads its own sum"
            )  # fmt: skip
        if reduction.op != "sum":
            raise NoJacobian(
                f"a derivative depends on np.{reduction.op} over {reduction.size} elements ({where}); dyngen derives "
                "the Jacobian through sums and means (a low-rank term) but not through np.prod, np.max or np.min"
            )  # fmt: skip
        if reduction not in self.reductions:
            self.reductions.append(reduction)
        return self.n_states + self.reductions.index(reduction)


def weight_code(flat: FlatModel, lowrank: LowRank, gradient: Callable, clean: Callable[[sp.Basic], sp.Basic]) -> ArrayCode:
    """The loops that add ``∂m_k/∂y`` into column ``k`` of ``V`` (zeroed by the caller)."""
    code, places, temporaries = ArrayCode(), Places(flat), Temporaries("w")
    state_arrays = {slot.ref for slot in flat.states}
    n = lowrank.n_states
    for k, reduction in enumerate(lowrank.reductions):
        where = _where(reduction, flat)
        nested = NoJacobian(
            f"the summand of the sum over {reduction.size} elements ({where}) reads another reduction "
            "(a sum of sums): dyngen has no Jacobian for nested reductions yet"
        )  # fmt: skip
        for segment in reduction.segments:
            box = tuple(zip(segment.lo, segment.hi))
            if box_size(box) == 0:
                continue
            summand = places.inline_copies(segment.expr)
            for read in sorted(summand.free_symbols, key=lambda s: s.name):
                offset = places.offsets.get(read)
                if offset is not None and offset.ref.kind == REDUCTION_KIND:
                    raise nested
                if offset is not None and offset.ref not in state_arrays:
                    continue  # a parameter or constant array
                derivative = clean(sp.diff(summand, read))
                if derivative == 0:
                    continue
                if offset is not None:
                    column, column_strides = places.column(offset, box)
                    columns = [(column, column_strides, sp.S.One, f"{offset.ref}[{index_text(offset.index)}]")]
                else:
                    columns = []
                    for j, g in sorted(gradient(read).items()):
                        if j >= n:
                            raise nested
                        columns.append((j, (0,) * len(box), g, f"y[{j}]"))
                for column, column_strides, g, label in columns:

                    def entry(loop: tuple, at: int = column, st: tuple = column_strides, kk: int = k) -> sp.Basic:
                        return _V[at + sp.Add(*(s * (x - lo) for s, x, (lo, _) in zip(st, loop, box))), kk]

                    accumulator = sp.Symbol("jac_acc", real=True)
                    title = f"V[:, {k}] += d({reduction.symbol})/d({label}) ({where})"
                    emit(places, temporaries, title, box, [(entry, accumulator + derivative * g, "")], code,
                          accumulator, entry)  # fmt: skip
    return code

