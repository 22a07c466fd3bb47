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
    memo: dict[int, tuple[sp.Basic, int]] = {}  # by id: the inputs keep every node alive

    def rebuilt(expr: sp.Basic, args: tuple) -> tuple[sp.Basic, int]:
        new_args, height, same = [], 0, True
        for arg in args:
            if arg.args:
                new, h = shallow(arg)
                same = same and new is arg
                height = h if h > height else height
            else:
                new = arg
            new_args.append(new)
        return (expr if same else expr.func(*new_args)), height + 1

    def shallow(expr: sp.Basic) -> tuple[sp.Basic, int]:
        found = memo.get(id(expr))
        if found is not None:
            return found
        value, height = rebuilt(expr, expr.args)
        if height > max_height and isinstance(value, sp.Expr):  # not a condition or a (value, cond) pair
            temporary = next(symbols)
            out.append((temporary, value))
            value, height = temporary, 0
        memo[id(expr)] = (value, height)
        return value, height

    def top(expr: sp.Basic) -> sp.Basic:  # the statement itself stays where it is
        return rebuilt(expr, expr.args)[0] if expr.args else expr

    for symbol, expr in replacements:
        value = top(expr)
        out.append((symbol, value))
    return out, [top(expr) for expr in reduced]
