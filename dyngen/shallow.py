"""Common subexpressions, with no statement nested deeper than Python can parse.

A chain of a few hundred ``where(...)`` is one expression as tall as the chain; printed
as nested conditional expressions it exceeds the parser's limit of 200 nested
parentheses ("too many nested parentheses"). :func:`cse` is ``sympy.cse`` followed by
:func:`split_tall`, which moves every subexpression taller than ``MAX_HEIGHT`` into
a temporary of its own, so each statement stays short and the chain becomes a
sequence of assignments.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import sympy as sp

MAX_HEIGHT = 24  # expression-tree levels per statement (a where is two: Piecewise, ExprCondPair)

Replacements = list[tuple[sp.Symbol, sp.Basic]]


def cse(exprs: list[sp.Basic], symbols: Iterable[sp.Symbol]) -> tuple[Replacements, list[sp.Basic]]:
    """``sympy.cse(exprs, symbols, order="none")`` whose statements are at most
    ``MAX_HEIGHT`` tall; temporaries (from ``symbols``) come before their first use."""
    if not exprs:
        return [], []
    symbols = iter(symbols)
    replacements, reduced = sp.cse(exprs, symbols=symbols, order="none")
    return split_tall(replacements, reduced, symbols)


def split_tall(
    replacements: Replacements, reduced: list[sp.Basic], symbols: Iterator[sp.Symbol], max_height: int = MAX_HEIGHT
) -> tuple[Replacements, list[sp.Basic]]:
    """The same assignments, with every value subexpression taller than ``max_height``
    assigned to a new temporary first. Expressions that are short enough are kept as
    they are (the same objects)."""
    out: Replacements = []
    memo: dict[sp.Basic, tuple[sp.Basic, int]] = {}

    def rebuilt(expr: sp.Basic) -> tuple[sp.Basic, int]:
        parts = [shallow(arg) for arg in expr.args]
        args = tuple(part for part, _ in parts)
        same = all(new is old for new, old in zip(args, expr.args))
        return (expr if same else expr.func(*args)), 1 + max((h for _, h in parts), default=0)

    def shallow(expr: sp.Basic) -> tuple[sp.Basic, int]:
        if expr in memo:
            return memo[expr]
        if not expr.args:
            result: tuple[sp.Basic, int] = (expr, 0)
        else:
            value, height = rebuilt(expr)
            if height > max_height and isinstance(value, sp.Expr):  # not a condition or a (value, cond) pair
                temporary = next(symbols)
                out.append((temporary, value))
                result = (temporary, 0)
            else:
                result = (value, height)
        memo[expr] = result
        return result

    def top(expr: sp.Basic) -> sp.Basic:  # the statement itself stays where it is
        return expr if not expr.args else rebuilt(expr)[0]

    for symbol, expr in replacements:
        value = top(expr)
        out.append((symbol, value))
    return out, [top(expr) for expr in reduced]
