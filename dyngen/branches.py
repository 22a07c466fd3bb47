"""Python control flow on traced values: every outcome of every decision, merged.

A traced function runs with symbolic stand-ins, so ``if x > limit:`` has no answer
while it is traced.  ``Sym.__bool__`` asks the ``Brancher`` of the current run, which
answers from a recorded *path* (a list of decisions) and takes ``True`` for a decision
it has not seen yet.  ``explore`` runs the function once per path, depth first, so
that every combination of outcomes is run exactly once, and folds the results back
together at each decision: ``merge(condition, if_true, if_false)``, which the tracer
turns into ``where(condition, ...)`` for every value the function wrote.

This gives Python's own semantics to everything that decides through ``bool()``:
``if``/``elif``/``else``, early ``return``, ``and``/``or``/``not``, ``a if c else b``,
``min``/``max`` over traced values, in the traced function and in whatever it calls.
A decision already taken on a path (the same condition again) is not taken twice.
A loop that keeps deciding on traced values (``while x > 0:``) has no finite set of
paths: it is refused with the line of the loop.
"""

from __future__ import annotations

import ast
import linecache
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, TypeVar

import sympy as sp

from .errors import SourceLocation, TraceError, user_frame_location

# More decisions than this on one path: a loop on a traced value, or a model that
# should select with where(...).  More paths than this in one function: too many.
MAX_DECISIONS = 64
MAX_PATHS = 4096

Result = TypeVar("Result")


@dataclass(frozen=True)
class Decision:
    """One ``bool()`` of a traced condition on a path, and the outcome taken."""

    condition: sp.Basic
    outcome: bool
    location: SourceLocation | None


@dataclass
class Brancher:
    """Answers ``bool()`` of traced conditions for one run of a traced function."""

    prefix: list[bool]
    taken: list[Decision] = field(default_factory=list)
    known: dict[sp.Basic, bool] = field(default_factory=dict)

    def decide(self, condition: sp.Basic) -> bool:
        if condition == sp.true or condition == sp.false:
            return bool(condition == sp.true)
        if condition in self.known:
            return self.known[condition]
        location = user_frame_location()
        if len(self.taken) >= MAX_DECISIONS:
            raise _too_many_decisions(location)
        index = len(self.taken)
        outcome = self.prefix[index] if index < len(self.prefix) else True
        self.taken.append(Decision(condition, outcome, location))
        self.known[condition] = outcome
        return outcome


BRANCHER: ContextVar[Brancher | None] = ContextVar("dyngen_brancher", default=None)


def decide(condition: sp.Basic) -> bool | None:
    """The outcome of ``bool(condition)`` on the current path (None when no function is
    being traced with branches)."""
    brancher = BRANCHER.get()
    return None if brancher is None else brancher.decide(condition)


def explore(
    run: Callable[[list[bool]], tuple[Result, list[Decision]]],
    merge: Callable[[Decision, Result, Result], Result],
) -> Result:
    """Run every path of a traced function once and merge the results.

    ``run(prefix)`` runs the function with the decisions ``prefix`` taken first (and
    ``True`` for any later one) and returns its result and all its decisions.
    ``merge(decision, if_true, if_false)`` combines the results of the two sides of
    ``decision``.
    """
    runs = 0

    def subtree(prefix: list[bool]) -> Result:
        nonlocal runs
        runs += 1
        if runs > MAX_PATHS:
            raise TraceError(
                f"the Python `if`s (or and/or/min/max) on traced values here combine into more than "
                f"{MAX_PATHS} paths, which dyngen would each trace",
                "select with dyngen.where(condition, a, b) / np.where / np.clip for the conditions "
                "that do not depend on each other",
            )
        result, taken = run(prefix)
        for index in range(len(taken) - 1, len(prefix) - 1, -1):
            decision = taken[index]
            other = subtree([d.outcome for d in taken[:index]] + [not decision.outcome])
            result = merge(decision, result, other) if decision.outcome else merge(decision, other, result)
        return result

    return subtree([])


def explore_pure(function: Callable[..., Any], merge: Callable[[sp.Basic, Any, Any], Any], *args: Any) -> Any:
    """``function(*args)`` for a function whose only effect is its result (a numba
    helper of scalars, a ``vectorize``d function): its decisions are explored on their
    own and merged at its return value (``merge(condition, if_true, if_false)``), so a
    loop that calls it per element does not multiply the paths of the caller.  What the
    caller's path has decided already is not decided again."""
    outer = BRANCHER.get()

    def run(prefix: list[bool]) -> tuple[Any, list[Decision]]:
        brancher = Brancher(list(prefix), known=dict(outer.known) if outer is not None else {})
        token = BRANCHER.set(brancher)
        try:
            return function(*args), brancher.taken
        finally:
            BRANCHER.reset(token)

    return explore(run, lambda decision, a, b: merge(decision.condition, a, b))


def run_with(prefix: list[bool], function: Callable[[], Any]) -> list[Decision]:
    """Call ``function()`` on the path ``prefix``; the decisions it took."""
    brancher = Brancher(list(prefix))
    token = BRANCHER.set(brancher)
    try:
        function()
    finally:
        BRANCHER.reset(token)
    return brancher.taken


def _too_many_decisions(location: SourceLocation | None) -> TraceError:
    if location is not None and _in_while_condition(location):
        return TraceError(
            "a `while` loop whose condition depends on a traced value: how often it runs is only known "
            "when the model runs",
            "loop a constant number of times (for i in range(n)) and select with where(...), or "
            "compute the result in closed form",
            location,
        )
    return TraceError(
        f"more than {MAX_DECISIONS} Python decisions (`if`, and/or, min/max) on traced values in one "
        "evaluation: a loop whose trip count depends on a traced value, or conditions that should be "
        "elementwise selections",
        "select with dyngen.where(condition, a, b), np.where, np.clip, np.minimum/np.maximum",
        location,
    )


def _in_while_condition(location: SourceLocation) -> bool:
    source = "".join(linecache.getlines(location.file))
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return False
    for node in ast.walk(tree):
        if isinstance(node, ast.While) and node.test.lineno <= location.line <= (node.test.end_lineno or 0):
            return True
    return False
