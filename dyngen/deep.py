"""Builds of deeply nested expressions: retried on a thread with a large stack.

sympy walks expressions recursively, so a few hundred nested ``where``/``np.where``
(a lookup written as a chain, a long piecewise function) exceed Python's recursion
limit while tracing, differentiating, CSE-ing or printing. A build that fails that way
runs once more on a worker thread with a large C stack and a high recursion limit;
every other build runs as it always did, on the caller's thread.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from typing import Callable, TypeVar

from .errors import DyngenError

T = TypeVar("T")

DEEP_STACK_BYTES = 1 << 30  # reserved address space, touched only as deep as the build goes
DEEP_RECURSION_LIMIT = 400_000


def failed_on_recursion(error: BaseException) -> bool:
    """Whether ``error`` is, or was caused by, a RecursionError."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, RecursionError):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def run_with_deep_stack(fn: Callable[[], T]) -> T:
    """``fn()`` on a worker thread with a large stack and recursion limit (in the
    caller's context variables); returns its result or raises its exception."""
    context = contextvars.copy_context()
    outcome: dict[str, object] = {}

    def target() -> None:
        try:
            outcome["value"] = context.run(fn)
        except BaseException as exc:  # handed to the caller's thread
            outcome["error"] = exc

    previous_limit = sys.getrecursionlimit()
    previous_size = threading.stack_size(DEEP_STACK_BYTES)
    try:
        worker = threading.Thread(target=target, name="dyngen-deep-build", daemon=True)
        worker.start()
    finally:
        threading.stack_size(previous_size)
    sys.setrecursionlimit(max(previous_limit, DEEP_RECURSION_LIMIT))
    try:
        worker.join()
    finally:
        sys.setrecursionlimit(previous_limit)
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


def deep_retry(fn: Callable[[], T], what: str) -> T:
    """``fn()``; if it fails on Python's recursion limit, ``fn()`` again with a deep stack.

    If even that is not enough, a DyngenError says that ``what`` nests too deeply (a
    TraceError from the user's code, such as an endless recursion, is raised as it is).
    """
    try:
        return fn()
    except (RecursionError, DyngenError) as error:
        if not failed_on_recursion(error):
            raise
    try:
        return run_with_deep_stack(fn)
    except RecursionError:  # (a TraceError, e.g. the user's own endless recursion, says where)
        raise DyngenError(
            f"{what}: an expression nests too deeply to compile ({DEEP_RECURSION_LIMIT} Python frames were not "
            "enough); split a long chain of where(...) into a lookup (np.interp, a table index) or intermediate "
            "outputs"
        ) from None
