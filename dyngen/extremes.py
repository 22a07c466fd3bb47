"""Maxima and minima of many traced values, built without sympy's pairwise comparisons.

sympy's ``Max(a_1, .., a_n)`` compares every pair of its arguments each time it is
built (``_find_localzeros``: a difference, ``factor_terms`` and an assumption query per
pair), and it is built again by every ``xreplace``/``subs`` that goes through it
(grouping, copies, the Jacobian): a 24-element ``np.max`` in element form took minutes
of lowering.  ``MaxOf``/``MinOf`` are the same functions (subclasses: printed,
differentiated and hidden from the Jacobian as sympy's) that only flatten nested
extremes, fold the numbers and drop repeated arguments: linear work, however often
they are rebuilt (also for two arguments: ``np.clip`` chains compared their nested
extremes through assumptions, seconds per element).

Their derivative is the one-hot of the first extreme argument (in the node's order of
its arguments): ``first_extreme_weights`` compares every argument with one index,
``ArgMaxOf``/``ArgMinOf`` (printed as one ``np.argmax``/``np.argmin``, shared by CSE),
instead of every pair of arguments.
"""

from __future__ import annotations

from typing import Any

import sympy as sp


def _build(cls: type, base: type, args: tuple, assumptions: dict[str, Any]) -> sp.Basic:
    """``cls(*args)`` (a subclass of ``base``, sympy's Max or Min) in linear work."""
    assumptions.pop("evaluate", None)
    kept: dict[sp.Basic, None] = {}  # in order, without repeats
    numbers: list[sp.Basic] = []
    stack = [sp.sympify(a) for a in reversed(args)]
    while stack:
        arg = stack.pop()
        if isinstance(arg, base):  # Max(a, Max(b, c)) = Max(a, b, c)
            stack.extend(reversed(arg.args))
        elif arg.is_Number:
            numbers.append(arg)
        else:
            kept[arg] = None
    if numbers:
        number = base(*numbers)  # sympy's own fold of the constants (cheap)
        if number == base.zero:  # Max(oo, ...) = oo
            return number
        if number != base.identity:
            kept[number] = None
    if len(kept) <= 1:
        return next(iter(kept)) if kept else base.identity
    obj = sp.Expr.__new__(cls, *sp.ordered(kept))
    obj._argset = frozenset(kept)
    return obj


class _SymbolsOnce:
    """Free symbols taken once per node: a node of n arguments sits in every Jacobian
    entry it reaches (n² entries for a dense block), and sympy walks it again each time."""

    @property
    def free_symbols(self) -> set[sp.Basic]:
        found = self.__dict__.get("_dyngen_free_symbols")
        if found is None:
            found = self.__dict__["_dyngen_free_symbols"] = set().union(*(a.free_symbols for a in self.args))
        return set(found)


class MaxOf(_SymbolsOnce, sp.Max):
    """``Max`` of two or more arguments, built in linear work (module docstring)."""

    def __new__(cls, *args: Any, **assumptions: Any) -> sp.Basic:
        return _build(cls, sp.Max, args, assumptions)

    def fdiff(self, argindex: int = 1) -> sp.Basic:
        if len(self.args) == 2:  # Heaviside(a_k - a_other), as sympy's
            k = argindex - 1
            return _step(self.args[k] - self.args[1 - k])
        return first_extreme_weight(self, argindex - 1)


class MinOf(_SymbolsOnce, sp.Min):
    """``Min`` of two or more arguments, built in linear work (module docstring)."""

    def __new__(cls, *args: Any, **assumptions: Any) -> sp.Basic:
        return _build(cls, sp.Min, args, assumptions)

    def fdiff(self, argindex: int = 1) -> sp.Basic:
        if len(self.args) == 2:  # Heaviside(a_other - a_k), as sympy's
            k = argindex - 1
            return _step(self.args[1 - k] - self.args[k])
        return first_extreme_weight(self, argindex - 1)


def _step(d: sp.Basic) -> sp.Basic:
    """Heaviside(d) as lower._clean_derivative writes it (0 below, 1/2 at 0, 1 above), built
    without evaluating the comparisons: sympy's would ask the assumptions of ``d``, a
    nested extreme in np.clip chains (a tenth of a second per element and level)."""
    return sp.Piecewise(
        (sp.S.Zero, sp.StrictLessThan(d, 0, evaluate=False)),
        (sp.S.Half, sp.Eq(d, 0, evaluate=False)),
        (sp.S.One, True),
        evaluate=False,
    )


def maximum(*args: Any) -> sp.Basic:
    """The maximum of ``args`` (a ``MaxOf``, or the one argument left)."""
    return MaxOf(*args)


def minimum(*args: Any) -> sp.Basic:
    """The minimum of ``args`` (a ``MinOf``, or the one argument left)."""
    return MinOf(*args)


class ArgMaxOf(_SymbolsOnce, sp.Function):
    """The index of the first largest argument (``np.argmax`` of them): an integer."""

    is_integer = True
    is_nonnegative = True

    def fdiff(self, argindex: int = 1) -> sp.Basic:
        return sp.S.Zero


class ArgMinOf(_SymbolsOnce, sp.Function):
    """The index of the first smallest argument (``np.argmin`` of them): an integer."""

    is_integer = True
    is_nonnegative = True

    def fdiff(self, argindex: int = 1) -> sp.Basic:
        return sp.S.Zero


def first_extreme_weight(node: sp.Basic, k: int) -> sp.Basic:
    """d node / d a_k for a Max (Min) of arguments a_1..a_n: 1 where a_k is the first
    largest (smallest) argument in the node's order of them, else 0 (one-hot, as the
    array form's weights; where arguments tie, one subgradient of several)."""
    index = (ArgMaxOf if isinstance(node, sp.Max) else ArgMinOf)(*node.args)
    return sp.Piecewise((sp.S.One, sp.Eq(index, k)), (sp.S.Zero, True))


def first_extreme_weights(node: sp.Basic) -> list[sp.Basic]:
    """``first_extreme_weight`` of every argument of ``node`` (one index, n comparisons)."""
    return [first_extreme_weight(node, k) for k in range(len(node.args))]
