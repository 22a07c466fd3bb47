"""How long a traced expression is when written out as a tree, and a build-time error
when a conditional makes it explode.

sympy shares equal subexpressions, so ``x = where(s > k, x + 1, x)`` in a loop is a
small graph, but every later stage (free symbols, substitution, differentiation,
printing) walks it as a tree, which doubles in size per iteration: 90 iterations
never finish. :func:`check_conditional` stops the trace at the line that does it.
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

from .errors import TraceError, user_frame_location

MAX_WRITTEN_OUT = 200_000  # tree nodes of one conditional's value
# conditionals (Piecewise, counted written out) that one condition may read: folding the
# condition over their cases (symbolic.unfolded) multiplies them (2^n arms for n
# independent ones); a chain of 6 np.where on the value they test took 227 s to be refused
MAX_FOLDED = 16
_SIZES: dict[sp.Basic, int] = {}  # memo across calls, bounded: it never holds more than 20,000 nodes


def written_out_size(expr: sp.Basic, cap: int = MAX_WRITTEN_OUT) -> int:
    """Nodes of ``expr`` as a tree (shared subexpressions counted at each use),
    saturating at ``cap + 1``; linear in the size of the graph."""
    if len(_SIZES) > 20_000:
        _SIZES.clear()
    return _written_out(expr, lambda node: 1, cap, _SIZES)


def _written_out(expr: sp.Basic, weight: Callable[[sp.Basic], int], cap: int, memo: dict[sp.Basic, int]) -> int:
    """The sum of ``weight`` over the nodes of ``expr`` as a tree (each use counted), saturating
    at ``cap + 1``: one walk of the graph, each node's count kept in ``memo``."""
    stack: list[tuple[sp.Basic, bool]] = [(expr, False)]
    while stack:
        node, expanded = stack.pop()
        if node in memo:
            continue
        if not node.args:
            memo[node] = weight(node)
        elif expanded:
            memo[node] = min(cap + 1, weight(node) + sum(memo[a] for a in node.args))
        else:
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if a not in memo)
    return memo[expr]


def check_conditional(value: sp.Basic) -> sp.Basic:
    """``value`` (a conditional), or a TraceError at the user's line when it is too
    long written out to compile."""
    if written_out_size(value) <= MAX_WRITTEN_OUT:
        return value
    raise TraceError(
        f"this conditional's value is over {MAX_WRITTEN_OUT:,} terms long when written out: a value that appears "
        "in both branches (or in the branch and the condition) and is updated in a loop doubles in length at "
        "every iteration, e.g. x = where(s > k, x + 1, x)",
        "write the update so that the previous value appears once, e.g. x = x + where(s > k, 1.0, 0.0)",
        user_frame_location(),
    )


def conditionals_written_out(expr: sp.Basic, cap: int = MAX_FOLDED) -> int:
    """Piecewise nodes of ``expr`` as a tree (each use counted), saturating at ``cap + 1``;
    linear in the size of the graph."""
    return _written_out(expr, lambda node: 1 if isinstance(node, sp.Piecewise) else 0, cap, {})


def check_fold(condition: sp.Basic) -> None:
    """A TraceError at the user's line when ``condition`` reads too many conditional
    values to be folded over their cases (before the folding, which would take minutes)."""
    if conditionals_written_out(condition) <= MAX_FOLDED:
        return
    raise TraceError(
        f"this condition reads more than {MAX_FOLDED} conditional values (np.where/dyngen.where, "
        "if/else on traced values), counted each time they are used: dyngen folds a condition over the cases "
        "of each one, which multiplies them (a value tested, then selected by where in a loop, doubles them "
        "at every iteration, e.g. x = where(x > k, x - 1, x + 1))",
        "test values that are not themselves selected by where (the inputs, not the result), or write the "
        "update so that the previous value appears once, e.g. x = x + where(s > k, -1.0, 1.0)",
        user_frame_location(),
    )
