"""Array form of large vectors while a model is traced: lazy nodes that lower to segments.

A 1-D state, input or output of at least ``ARRAY_MIN`` elements reaches ``do_step``
as a ``Base`` node instead of an object array of element symbols.  numpy operations
on it build a small graph, never one sympy expression per element:

    Base(signal)           the vector itself
    Slice(src, start, n)   src[start:start + n] (constant bounds, step 1)
    Concat(parts)          np.concatenate of arrays and scalars (a scalar is one element)
    Map(fn, args, n)       an elementwise operation over arrays of length n and scalars
    Fill(n, expr)          np.zeros_like / ones_like / full_like

``segments(node)`` lowers a node to ``(start, stop, expr)`` pieces: for ``start <= i
< stop`` element ``i`` is ``expr``, in which a *relative symbol* stands for
``base[i + k]``.  Every concatenate boundary is a cut; the sympy work grows with the
number of cuts, not with the length.  What the array form cannot express raises
``ArrayTraceError`` saying what to write instead; the tracer then traces small
vectors element by element (``trace.py``).
"""

from __future__ import annotations

import numbers
from typing import Any, Callable

import numpy as np
import sympy as sp

from .errors import CodegenError, TraceError, user_frame_location
from .interp import np_interp
from .ir import Offset, Reduction, Segment, Signal, SignalRef
from .symbolic import UFUNCS, Sym, SymArray, boolean, install_operators, numeric, to_expr

ARRAY_MIN = 64  # 1-D vectors of at least this many elements are traced in array form
SMALL_PART = 64  # constant lists/arrays up to this length may be concatenated to an array

Piece = tuple[int, int, sp.Basic]


class ArrayTraceError(TraceError):
    """The array form cannot express an operation (the element form may)."""


def _error(problem: str, hint: str) -> ArrayTraceError:
    return ArrayTraceError(problem, hint, user_frame_location())


class ArrayContext:
    """The relative symbols of one trace: ``symbol <-> (signal, offset)``."""

    def __init__(self) -> None:
        self.offsets: dict[sp.Symbol, Offset] = {}
        self.reductions: list[Reduction] = []
        self._relative: dict[tuple[SignalRef, int], sp.Symbol] = {}
        self._signals: dict[SignalRef, Signal] = {}

    def reduction(self, value: "LazyArray") -> sp.Symbol:
        """A scalar symbol for ``np.sum(value)``, its summand kept as segments."""
        symbol = sp.Symbol(f"r{len(self.reductions)}", real=True)
        self.reductions.append(Reduction(symbol, value.n, finish(value), user_frame_location()))
        return symbol

    def relative(self, signal: Signal, k: int) -> sp.Symbol:
        """The symbol of ``signal[i + k]``, ``i`` the loop index."""
        symbol = self._relative.get((signal.ref, k))
        if symbol is None:
            # not an identifier: it cannot be any signal's name (it is never printed)
            name = f"{signal.symbols.name}[i{k:+d}]" if k else f"{signal.symbols.name}[i]"
            symbol = self._relative[(signal.ref, k)] = sp.Symbol(name, real=True)
            self.offsets[symbol] = Offset(signal.ref, k)
            self._signals[signal.ref] = signal
        return symbol

    def shift(self, expr: sp.Basic, d: int) -> sp.Basic:
        """``e(i) -> e(i + d)``."""
        if d == 0:
            return expr
        subs = {
            s: self.relative(self._signals[o.ref], o.offset + d)
            for s in expr.free_symbols if (o := self.offsets.get(s)) is not None
        }  # fmt: skip
        return expr.xreplace(subs) if subs else expr

    def at(self, expr: sp.Basic, i: int) -> sp.Basic:
        """``e(i)`` at a constant ``i``: relative reads become element symbols."""
        subs = {
            s: self._signals[o.ref].symbols[o.offset + i]
            for s in expr.free_symbols if (o := self.offsets.get(s)) is not None
        }  # fmt: skip
        return expr.xreplace(subs) if subs else expr

    def size(self, ref: SignalRef) -> int:
        return self._signals[ref].size


def is_lazy(value: Any) -> bool:
    return isinstance(value, LazyArray)


# ------------------------------------------------------------------ elementwise maths


def _scalar(value: Any) -> sp.Basic:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    elif isinstance(value, (list, tuple)):
        value = value[0]
    return to_expr(value)


def elementwise(fn: Callable[..., sp.Basic], *args: Any) -> Any:
    """``fn`` applied elementwise to lazy arrays, scalars and small arrays (numpy broadcasting)."""
    ctx = next(a.ctx for a in args if isinstance(a, LazyArray))
    operands: list[Any] = []
    small: list[np.ndarray] = []
    for a in args:
        if isinstance(a, LazyArray):
            operands.append(a)
        elif isinstance(a, (np.ndarray, list, tuple)) and np.size(a) != 1:
            if any(isinstance(x, LazyArray) for x in (a if isinstance(a, (list, tuple)) else ())):
                raise _error("a list holding a traced large vector", "use np.concatenate to join vectors")
            array = a.view(np.ndarray) if isinstance(a, SymArray) else np.asarray(a)
            if array.ndim != 1:
                raise _error(
                    f"a {array.ndim}-D array combined with a traced large vector",
                    "large vectors are traced as 1-D arrays: combine them with scalars and 1-D arrays",
                )
            operands.append(array)
            small.append(array)
        else:
            operands.append(_scalar(a))
    lengths = {o.n for o in operands if isinstance(o, LazyArray)} | {len(o) for o in small}
    if len(lengths - {1}) > 1:
        raise _error(
            f"an elementwise operation on arrays of lengths {sorted(lengths)}",
            "elementwise operations need equal lengths (only scalars and length-1 arrays broadcast)",
        )
    n = max(lengths)
    if small:
        if n >= ARRAY_MIN:
            raise _error(
                f"a constant array of length {n} combined elementwise with a traced large vector",
                "make it an input (self.inputs.c = array): a large input is a parameter vector, "
                "read as c[i] in the loop (and can be changed between runs)",
            )
        from .symbolic import _elementwise  # small: element form, as any object array

        return _elementwise(fn, *[to_elements(o) if isinstance(o, LazyArray) else o for o in operands])
    if n > 1:  # numpy broadcasts a length-1 array: its only element
        operands = [o.element(0) if isinstance(o, LazyArray) and o.n == 1 else o for o in operands]
    return Map(ctx, fn, tuple(operands), n)


def to_elements(value: LazyArray) -> SymArray:
    """A (small) lazy array as the object array of its elements."""
    out = np.empty(value.n, dtype=object)
    for k in range(value.n):
        out[k] = Sym(value.element(k))
    return out.view(SymArray)


def _operator(ufunc: np.ufunc, reflected: bool = False) -> Callable[[Any, Any], Any]:
    fn = UFUNCS[ufunc]
    if reflected:
        return lambda self, other: elementwise(fn, other, self)
    return lambda self, other: elementwise(fn, self, other)


def _unsupported_function(name: str) -> ArrayTraceError:
    return _error(
        f"{name} of a traced large vector (at least {ARRAY_MIN} elements, traced in array form) "
        "is not supported yet",
        "build the value with slicing, np.concatenate, np.roll, np.diff, np.where and "
        "elementwise arithmetic/ufuncs, np.sum, np.mean and np.dot/@ of vectors",
    )


# ----------------------------------------------------------------------- the nodes


class LazyArray:
    """A traced 1-D vector in array form (see the module docstring)."""

    __array_priority__ = 1000
    ndim = 1
    _dyngen_lazy = True  # recognised by symbolic.py without importing this module

    def __init__(self, ctx: ArrayContext, n: int) -> None:
        self.ctx = ctx
        self.n = n
        self._pieces: list[Piece] | None = None

    @property
    def shape(self) -> tuple[int]:
        return (self.n,)

    @property
    def size(self) -> int:
        return self.n

    def __len__(self) -> int:
        return self.n

    @property
    def T(self) -> "LazyArray":  # noqa: N802 - numpy's name
        return self

    def copy(self) -> "LazyArray":
        return self

    def ravel(self) -> "LazyArray":
        return self

    flatten = ravel

    __hash__ = object.__hash__  # the binary operators: install_operators below

    def __neg__(self) -> "LazyArray":
        return elementwise(UFUNCS[np.negative], self)

    def __pos__(self) -> "LazyArray":
        return self

    def __abs__(self) -> "LazyArray":
        return elementwise(UFUNCS[np.absolute], self)

    def __invert__(self) -> "LazyArray":
        return elementwise(UFUNCS[np.invert], self)

    def __matmul__(self, other: Any) -> Any:
        return _dot(self, other)

    def __rmatmul__(self, other: Any) -> Any:
        return _dot(other, self)

    def sum(self, axis: Any = None, **kwargs: Any) -> Sym:
        return _sum(self, axis, **kwargs)

    def mean(self, axis: Any = None, **kwargs: Any) -> Sym:
        return _mean(self, axis, **kwargs)

    def dot(self, other: Any) -> Any:
        return _dot(self, other)

    def __bool__(self) -> bool:
        raise _error(
            "Python `if`, `and`, `or` or `not` on a traced vector: its truth is only known when the model runs",
            "np.where(condition, a, b) works elementwise on vectors",
        )

    def __iter__(self) -> Any:
        raise _error(
            f"iterating over a traced large vector (a Python loop, unpacking or a list of its "
            f"{self.n} elements) would trace it element by element",
            "use slices (u[1:] - u[:-1]), np.concatenate and elementwise operations",
        )

    def __setitem__(self, key: Any, value: Any) -> None:
        raise _error(
            "item assignment to a traced large vector (lap[1:-1] = ...)",
            "build the vector whole: lap = np.concatenate(([u[1] - u[0]], u[2:] - 2 * u[1:-1] + u[:-2], [u[-2] - u[-1]]))",
        )

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise _error(
            "a traced large vector was converted to a numpy array (np.asarray, np.array, np.zeros(...) filled in, ...)",
            "build vectors with np.concatenate, slicing and elementwise operations",
        )

    def __float__(self) -> float:
        raise _error("float() of a traced vector", "use numpy functions (np.sin, ...) elementwise")

    def __index__(self) -> int:
        raise _error("indexing with a traced vector", "index vectors with constants only (u[0], u[1:-1])")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n})"

    # -- numpy dispatch -------------------------------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method == "__call__" and not kwargs and ufunc in UFUNCS:
            return elementwise(UFUNCS[ufunc], *inputs)
        if method == "__call__" and ufunc is np.matmul and not kwargs and len(inputs) == 2:
            return _dot(*inputs)
        if method == "reduce" and ufunc is np.add and not kwargs and len(inputs) == 1:
            return _sum(inputs[0])
        if method == "reduce" or ufunc is np.matmul:
            raise _unsupported_function(f"np.{ufunc.__name__}{'.' + method if method != '__call__' else ''}")
        if kwargs:
            raise _error(
                f"np.{ufunc.__name__}(..., {', '.join(f'{k}=' for k in kwargs)}) on a traced vector",
                f"assign the result instead: z = np.{ufunc.__name__}(...)",
            )
        raise _error(
            f"np.{ufunc.__name__} is not supported on traced values",
            "use arithmetic, comparisons and the ufuncs listed in the README's 'modeling form'",
        )

    def __array_function__(self, func: Callable, types: tuple, args: tuple, kwargs: dict) -> Any:
        handler = _FUNCTIONS.get(func)
        if handler is None:
            raise _unsupported_function(f"np.{getattr(func, '__name__', func)}")
        return handler(*args, **kwargs)

    # -- indexing -------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, tuple) and len(key) == 1:
            key = key[0]
        if isinstance(key, (numbers.Integral, np.integer)) and not isinstance(key, (bool, np.bool_)):
            k = int(key) + (self.n if key < 0 else 0)
            if not 0 <= k < self.n:
                raise TraceError(
                    f"index {int(key)} is out of bounds for a vector of {self.n} elements (an IndexError in numpy)",
                    f"use an index from {-self.n} to {self.n - 1}",
                    user_frame_location(),
                )
            return Sym(self.element(k))
        if isinstance(key, slice):
            for bound in (key.start, key.stop, key.step):
                if bound is not None and not isinstance(bound, (numbers.Integral, np.integer)):
                    raise _error(f"the slice bound {bound!r} is not a constant integer", "slice with constants only")
            start, stop, step = key.indices(self.n)
            if step != 1:
                raise _error(
                    f"the strided slice [{key.start}:{key.stop}:{key.step}] of a traced large vector",
                    "use slices with step 1 (np.flip and strides are not supported in array form yet)",
                )
            length = max(stop - start, 0)
            if start == 0 and length == self.n:
                return self
            if isinstance(self, Slice):
                return Slice(self.src, self.start + start, length)
            return Slice(self, start, length)
        raise _error(
            f"indexing a traced large vector with {type(key).__name__} ({key!r})",
            "index with constant integers and constant slices (fancy or boolean indexing would depend on values)",
        )

    def element(self, k: int) -> sp.Basic:
        """Element ``k`` as an expression of scalars and element symbols."""
        for start, stop, expr in self.pieces():
            if start <= k < stop:
                return self.ctx.at(expr, k)
        raise IndexError(k)

    def pieces(self) -> list[Piece]:
        """The segments of this node (memoised: a shared subexpression is lowered once)."""
        if self._pieces is None:
            self._pieces = [piece for piece in self._lower() if piece[0] < piece[1]]
        return self._pieces

    def _lower(self) -> list[Piece]:
        raise NotImplementedError


install_operators(LazyArray, _operator)


class Base(LazyArray):
    def __init__(self, ctx: ArrayContext, signal: Signal) -> None:
        super().__init__(ctx, signal.size)
        self.signal = signal

    def _lower(self) -> list[Piece]:
        return [(0, self.n, self.ctx.relative(self.signal, 0))]


class Slice(LazyArray):
    def __init__(self, src: LazyArray, start: int, n: int) -> None:
        super().__init__(src.ctx, n)
        self.src, self.start = src, start

    def _lower(self) -> list[Piece]:
        a, b = self.start, self.start + self.n
        return [
            (max(s, a) - a, min(t, b) - a, self.ctx.shift(e, a))
            for s, t, e in self.src.pieces() if s < b and t > a
        ]  # fmt: skip


class Concat(LazyArray):
    def __init__(self, ctx: ArrayContext, parts: tuple[LazyArray | sp.Basic, ...]) -> None:
        super().__init__(ctx, sum(p.n if isinstance(p, LazyArray) else 1 for p in parts))
        self.parts = parts

    def _lower(self) -> list[Piece]:
        out: list[Piece] = []
        offset = 0
        for part in self.parts:
            if isinstance(part, LazyArray):
                out += [(s + offset, t + offset, self.ctx.shift(e, -offset)) for s, t, e in part.pieces()]
                offset += part.n
            else:
                out.append((offset, offset + 1, part))
                offset += 1
        return out


class Map(LazyArray):
    def __init__(self, ctx: ArrayContext, fn: Callable[..., sp.Basic], args: tuple, n: int) -> None:
        super().__init__(ctx, n)
        self.fn, self.args = fn, args

    def _lower(self) -> list[Piece]:
        return combine(self.fn, [a.pieces() if isinstance(a, LazyArray) else a for a in self.args], self.n)


class Pieces(LazyArray):
    """A vector another function computed, as its segments (reading it composes them)."""

    def __init__(self, ctx: ArrayContext, n: int, segments: tuple[Segment, ...]) -> None:
        super().__init__(ctx, n)
        self.segments = segments

    def _lower(self) -> list[Piece]:
        return [(s.start, s.stop, s.expr) for s in self.segments]


class Fill(LazyArray):
    def __init__(self, ctx: ArrayContext, n: int, value: sp.Basic) -> None:
        super().__init__(ctx, n)
        self.value = value

    def _lower(self) -> list[Piece]:
        return [(0, self.n, self.value)]


def combine(fn: Callable[..., Any], args: list, n: int) -> list[Piece]:
    """``fn`` per interval of the merged cuts; an arg is a piece list or a constant."""
    cuts = sorted({0, n} | {c for a in args if isinstance(a, list) for s, t, _ in a for c in (s, t)})
    position = [0] * len(args)
    out = []
    for lo, hi in zip(cuts, cuts[1:]):
        values = []
        for j, a in enumerate(args):
            if isinstance(a, list):
                while a[position[j]][1] <= lo:
                    position[j] += 1
                values.append(a[position[j]][2])
            else:
                values.append(a)
        out.append((lo, hi, fn(*values)))
    return out


# ------------------------------------------------------------------ numpy functions


def _context(args: tuple) -> ArrayContext:
    for a in args:
        if isinstance(a, LazyArray):
            return a.ctx
        if isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, LazyArray):
                    return b.ctx
    raise AssertionError("no traced vector among the arguments")


def _concatenate(arrays: Any, axis: Any = 0, out: Any = None, **kwargs: Any) -> LazyArray:
    if axis != 0 or out is not None or kwargs:
        raise _error("np.concatenate of traced vectors with axis, out or dtype", "concatenate 1-D vectors plainly")
    ctx = _context((arrays,))
    parts: list[LazyArray | sp.Basic] = []
    for item in arrays:
        if isinstance(item, LazyArray):
            parts.append(item)
            continue
        if isinstance(item, Sym) or np.ndim(item) == 0 and not isinstance(item, (list, tuple)):
            raise TraceError(
                "np.concatenate of a scalar (zero-dimensional arrays cannot be concatenated in numpy)",
                "wrap it in a list: np.concatenate(([u[-1]], u, [u[0]]))",
                user_frame_location(),
            )
        if isinstance(item, (list, tuple)) and any(isinstance(x, LazyArray) for x in item):
            raise _error("np.concatenate of a list that holds a traced vector", "pass the vectors themselves")
        array = item.view(np.ndarray) if isinstance(item, SymArray) else np.asarray(item, dtype=object)
        if array.ndim != 1:
            raise _error(f"np.concatenate of a {array.ndim}-D part with traced vectors", "concatenate 1-D parts")
        if array.size > SMALL_PART:
            raise _error(
                f"np.concatenate of a constant array of {array.size} elements with a traced vector",
                "make it an input (self.inputs.c = array) so that it becomes a parameter vector",
            )
        parts += [numeric(to_expr(x)) for x in array]
    return Concat(ctx, tuple(parts))


def _sum(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, **kwargs: Any) -> Any:
    if axis not in (None, 0, -1) or dtype is not None or out is not None or kwargs:
        raise _error("np.sum of a traced vector with dtype, out, keepdims or where", "sum the whole vector: np.sum(u)")
    if not isinstance(a, LazyArray):
        return np.sum(a)
    if a.n < ARRAY_MIN:  # a short slice: the sum of its elements
        return Sym(sp.Add(*(a.element(k) for k in range(a.n))))
    return Sym(a.ctx.reduction(a))


def _mean(a: Any, axis: Any = None, **kwargs: Any) -> Any:
    return _sum(a, axis, **kwargs) / len(a)


def _dot(a: Any, b: Any, out: Any = None) -> Any:
    """``np.dot``/``@`` with a traced vector: the sum of the elementwise product."""
    if out is not None:
        raise _error("np.dot(..., out=...) of a traced vector", "assign the result instead")
    if any(not isinstance(x, LazyArray) and np.ndim(x) > 1 for x in (a, b)):
        raise _error("a matrix product of a traced large vector with a matrix", "write the sums explicitly")
    if any(not isinstance(x, LazyArray) and np.ndim(x) == 0 for x in (a, b)):
        return a * b  # numpy: a scalar times a vector
    return _sum(a * b)


def _roll(a: LazyArray, shift: Any, axis: Any = None) -> LazyArray:
    if axis not in (None, 0) or not isinstance(shift, (numbers.Integral, np.integer)):
        raise _error("np.roll of a traced vector by a non-constant shift or along an axis", "roll 1-D vectors by a constant")
    s = int(shift) % a.n
    return a if s == 0 else Concat(a.ctx, (a[a.n - s:], a[: a.n - s]))


def _diff(a: LazyArray, n: int = 1, axis: int = -1, **kwargs: Any) -> LazyArray:
    if axis not in (-1, 0) or kwargs:
        raise _error("np.diff of a traced vector with prepend/append or along an axis", "write u[1:] - u[:-1]")
    for _ in range(n):
        a = a[1:] - a[:-1]
    return a


def _fill(value: Callable[[tuple], sp.Basic]) -> Callable[..., LazyArray]:
    def like(a: LazyArray, *args: Any, **kwargs: Any) -> LazyArray:
        if kwargs.get("shape") not in (None, a.shape) or kwargs.get("dtype") is not None:
            raise _error("np.*_like of a traced vector with another shape or dtype", "keep its shape")
        return Fill(a.ctx, a.n, value(args or tuple(v for k, v in kwargs.items() if k == "fill_value")))

    return like


def _where(condition: Any, x: Any, y: Any) -> LazyArray:
    return elementwise(lambda c, a, b: sp.Piecewise((numeric(a), boolean(c)), (numeric(b), True)), condition, x, y)


def _clip(a: Any, a_min: Any, a_max: Any, **kwargs: Any) -> Any:
    if kwargs:
        raise _error("np.clip of a traced vector with out or other options", "assign the result instead")
    result = a
    if a_min is not None:
        result = elementwise(UFUNCS[np.maximum], result, a_min)
    if a_max is not None:
        result = elementwise(UFUNCS[np.minimum], result, a_max)
    return result


_FUNCTIONS: dict[Callable, Callable] = {
    np.concatenate: _concatenate,
    np.hstack: lambda arrays, **kwargs: _concatenate([[x] if np.ndim(x) == 0 else x for x in arrays], **kwargs),
    np.roll: _roll,
    np.diff: _diff,
    np.where: _where,
    np.clip: _clip,
    np.interp: np_interp,  # a constant table (interp.py)
    np.copy: lambda a, **kwargs: a,
    np.zeros_like: _fill(lambda args: sp.Float(0.0)),
    np.ones_like: _fill(lambda args: sp.Float(1.0)),
    np.full_like: _fill(lambda args: numeric(to_expr(args[0]))),
    np.sum: _sum,
    np.mean: _mean,
    np.dot: _dot,
    np.inner: _dot,
    np.vdot: _dot,
    np.matmul: _dot,
    np.size: lambda a, axis=None: a.n,
    np.shape: lambda a: a.shape,
    np.ndim: lambda a: 1,
}


# ------------------------------------------------------------------ written values


def finish(value: LazyArray) -> tuple[Segment, ...]:
    """The segments a vector is written with: numbers, equal neighbours merged,
    one-element segments at their constant index; every read inside its vector."""
    merged: list[list] = []
    for start, stop, expr in value.pieces():
        expr = numeric(expr)
        if merged and merged[-1][2] == expr and merged[-1][1] == start:
            merged[-1][1] = stop
        else:
            merged.append([start, stop, expr])
    segments = tuple(
        Segment(start, stop, value.ctx.at(expr, start) if stop - start == 1 else expr)
        for start, stop, expr in merged
    )  # fmt: skip
    for segment in segments:
        for symbol in segment.expr.free_symbols:
            offset = value.ctx.offsets.get(symbol)
            if offset is not None and not (
                0 <= segment.start + offset.offset and segment.stop - 1 + offset.offset < value.ctx.size(offset.ref)
            ):
                raise CodegenError(f"internal error: segment {segment} reads {offset} outside the vector")
    return segments
