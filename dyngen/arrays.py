"""Array form of large arrays while a model is traced: lazy nodes that lower to boxes.

A state, input or output of at least ``ARRAY_MIN`` elements (any shape: a vector, a
2-D or 3-D grid, a matrix) reaches ``do_step`` as a ``Base`` node instead of an
object array of element symbols.  numpy operations on it build a small graph, never
one sympy expression per element:

    Base(signal)              the array itself
    Slice(src, starts, shape) src[a:a + n, b:b + m, ...] (constant bounds, step 1)
    Take(src, axis, k)        src[..., k, ...]: one axis fewer
    NewAxis(src, axis)        src[..., None, ...]: a new axis of length 1
    Broadcast(src, shape)     length-1 axes repeated (numpy broadcasting)
    Transpose(src, axes)      src.transpose(axes)
    Concat(parts, axis)       np.concatenate along an axis
    Map(fn, args, shape)      an elementwise operation over arrays of one shape and scalars
    Fill(shape, expr)         one value everywhere (np.zeros_like, ones_like, full_like)
    Small(values)             a small constant or element-form array, element by element
    Base(constant signal)     a larger constant numpy array: module data read by index

``pieces()`` lowers a node to ``(box, expr)`` pairs: for every index ``(i, j, ...)``
in the box, the element is ``expr``, in which a *relative symbol* stands for a read
such as ``base[i + 1, j]`` (``ir.Offset``).  Every concatenate boundary is a cut
along its axis; the sympy work grows with the number of boxes, not with the size.
What the array form cannot express raises ``ArrayTraceError`` saying what to write
instead; the tracer then traces small arrays element by element (``trace.py``).
"""

from __future__ import annotations

import hashlib
import itertools
import numbers
import sys
from contextvars import ContextVar
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import sympy as sp

from .errors import _BOUNDARIES, CodegenError, TraceError, is_model_code, user_frame_location
from .extremes import maximum, minimum
from .interp import np_interp
from .ir import (
    CONSTANT_KIND,
    REDUCTION_KIND,
    ConstantArray,
    ElementSymbols,
    Offset,
    Reduction,
    Segment,
    Signal,
    SignalRef,
    View,
    view_ref,
)
from .naming import sanitize
from .symbolic import UFUNCS, Sym, SymArray, _norm, as_object_array, boolean, count_element_read, install_operators, is_symbolic, numeric, to_expr

ARRAY_MIN = 64  # arrays of at least this many elements are traced in array form
SMALL_PART = 64  # element-form (object) arrays up to this size may be combined with an array
INLINE_CONSTANT_MAX = 8  # numeric constant arrays up to this size are inlined (numbers, one box each);
# larger ones are module data (``ArrayContext.constant``), read by index in the loops
MATERIALIZE_REPEATS = 8  # an array broadcast to this many times its size is computed once first
# a vector signal of at least this many elements (under ARRAY_MIN) whose elements meet the array
# form is traced in array form too (PromoteSignals); smaller ones are boxes of one element each
PROMOTE_MIN = 8
# ... and one of at least this many elements that a reduction over a whole vector reads
# (np.sum/np.max/np.min/np.prod/np.mean, a dot product) is promoted too, whatever meets it:
# element by element every derivative that reads the reduction reads all its elements (a
# dense Jacobian of n² entries; np.sum of 60 elements lowered in 29 s, np.max in 14 s), in
# array form it is one low-rank term (0.2 s)
REDUCE_PROMOTE_MIN = 16

Box = tuple[tuple[int, int], ...]  # (lo, hi) per axis
Index = tuple[tuple[int, int], ...]  # per axis of a signal: (loop axis, k) or (-1, k): see ir.Offset
Piece = tuple[Box, sp.Basic]

LOOP_NAMES = "ijklmn"  # the loop indices of axes 0, 1, ... (in symbol names and comments)


class ArrayTraceError(TraceError):
    """The array form cannot express an operation (the element form may)."""


class _MissingMethod(ArrayTraceError, AttributeError):
    """A numpy method traced arrays do not have (``a.repeat``): a clear error, and still
    an AttributeError for ``hasattr`` and ``getattr(..., default)``."""


# The array context of the model being traced, when it has arrays in array form
# (``trace._trace`` sets it): numeric constants combined with traced scalars use it.
ACTIVE_ARRAYS: ContextVar["ArrayContext | None"] = ContextVar("dyngen_active_arrays", default=None)


def _error(problem: str, hint: str) -> ArrayTraceError:
    return ArrayTraceError(problem, hint, user_frame_location())


def box_size(box: Box) -> int:
    """The cells of ``box``; 0 when it is empty (an intersection may leave ``hi < lo`` on an axis)."""
    size = 1
    for lo, hi in box:
        size *= max(hi - lo, 0)
    return size


def index_text(index: Index) -> str:
    """``i+1, j`` for ``((0, 1), (1, 0))``; constants as numbers."""
    parts = []
    for axis, k in index:
        if axis < 0:
            parts.append(str(k))
        else:
            name = LOOP_NAMES[axis] if axis < len(LOOP_NAMES) else f"i{axis}"
            parts.append(f"{name}{k:+d}" if k else name)
    return ", ".join(parts)


class ArrayContext:
    """The relative symbols of one trace: ``symbol <-> (signal, index)``."""

    def __init__(self, array_min: int = ARRAY_MIN) -> None:
        # values of at least this many elements stay in array form (the tracer's threshold;
        # lower when small vectors are promoted: PromoteSignals, trace.trace)
        self.array_min = array_min
        # element symbol -> size of its signal, for the vector signals traced element by element
        # (under array_min): one of them meeting the array form is promoted (PromoteSignals)
        self.small_signals: dict[sp.Symbol, int] = {}
        self.offsets: dict[sp.Symbol, Offset] = {}
        self.reductions: list[Reduction] = []
        self.constant_arrays: list[ConstantArray] = []
        self.work = 0  # elements of the elementwise operations and reductions built (the element form's cost)
        self._relative: dict[tuple[SignalRef, Index], sp.Symbol] = {}
        self._signals: dict[SignalRef, Signal] = {}
        self._constants: dict[str, tuple["LazyArray", np.ndarray]] = {}  # data key -> (node, values)
        self._constant_values: dict[SignalRef, np.ndarray] = {}
        self.views: dict[SignalRef, View] = {}  # view ref -> what it views (``reshape`` of a signal)
        self._view_roots: dict[SignalRef, Signal] = {}  # the signals views view

    def constant(self, values: np.ndarray, origin: str = "") -> "LazyArray":
        """A constant numeric array as module data (one array per distinct content), or
        one number everywhere when its values are all equal."""
        flat = np.ascontiguousarray(values, dtype=np.float64).reshape(-1)
        bits = flat.view(np.uint64)
        if flat.size and (bits == bits[0]).all():  # every value the same (bit for bit): a number
            return Fill(self, tuple(values.shape), sp.Float(float(flat[0])))
        digest = hashlib.sha256(repr(values.shape).encode("ascii") + flat.astype("<f8").tobytes()).hexdigest()
        known = self._constants.get(digest)
        if known is not None:
            return known[0]
        taken = {c.name for c in self.constant_arrays}
        base = "CONST_" + sanitize(origin.rsplit(".", 1)[-1]).upper() if origin else "CONST"
        name, k = (base, 2) if origin else (f"CONST_{len(taken)}", len(taken) + 1)
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        data = flat.copy()
        data.flags.writeable = False
        constant = ConstantArray(name, tuple(values.shape), data, digest, origin, user_frame_location())
        self.constant_arrays.append(constant)
        signal = Signal(constant.ref, constant.shape, ElementSymbols(name, constant.size))
        self._signals[signal.ref] = signal
        self._constant_values[signal.ref] = data
        node = Base(self, signal)
        self._constants[digest] = (node, data)
        return node

    def view(self, signal: Signal, offset: int, size: int, shape: tuple[int, ...]) -> "LazyArray":
        """Elements ``offset .. offset + size - 1`` of ``signal`` (C order) as an array of
        ``shape``: the signal itself when that is its shape, else a ``View`` of it."""
        if signal.ref in self.views:  # a view of a view: of the signal it views
            outer = self.views[signal.ref]
            root, offset = self._view_roots[outer.base], outer.offset + offset
        else:
            root = self._view_roots.setdefault(signal.ref, signal)
        if offset == 0 and size == root.size and tuple(shape) == root.shape:
            return Base(self, root)
        view = View(root.ref, offset, tuple(shape))
        ref = view_ref(view, root.size)
        self.views[ref] = view
        if root.ref.kind == CONSTANT_KIND:  # module data read with another shape: the same data
            self._constant_values[ref] = self._constant_values[root.ref][offset : offset + size]
        # (relative reads are named after the view: views of one signal must not share them)
        return Base(self, Signal(ref, tuple(shape), root.symbols.view(offset, size, f"{root.symbols.name}:{ref.key}")))

    def reduction(self, value: "LazyArray", op: str = "sum") -> sp.Symbol:
        """A scalar symbol for ``op`` over every element of ``value``, the reduced values kept as boxes."""
        symbol = sp.Symbol(f"r{len(self.reductions)}", real=True)
        self.reductions.append(Reduction(symbol, value.size, finish(value), user_frame_location(), op))
        return symbol

    def partial_reduction(self, value: "LazyArray", op: str, axes: tuple[int, ...]) -> "LazyArray":
        """``op`` of ``value`` along ``axes``: an array the generated code computes first
        (a local array ``r<k>``), read like a signal."""
        symbol = sp.Symbol(f"r{len(self.reductions)}", real=True)
        shape = tuple(n for a, n in enumerate(value.shape) if a not in axes)
        size = int(np.prod(shape))
        self.reductions.append(Reduction(symbol, value.size, finish(value), user_frame_location(), op, shape, axes))
        signal = Signal(SignalRef("", REDUCTION_KIND, symbol.name), shape, ElementSymbols(symbol.name, size))
        self._signals[signal.ref] = signal
        return Base(self, signal)

    def materialize(self, value: "LazyArray") -> "LazyArray":
        """``value`` computed once into a local array (before it is broadcast: ``sin(x)[None, :]``
        read by every row would evaluate ``sin`` once per row otherwise)."""
        return self.partial_reduction(value, "sum", ())

    def relative(self, signal: Signal, index: Index) -> sp.Symbol:
        """The symbol of ``signal[index]``; an element symbol when every axis is constant."""
        if all(axis < 0 for axis, _ in index) and signal.ref.kind != REDUCTION_KIND:
            flat = 0
            for (_, k), extent in zip(index, signal.shape):
                flat = flat * extent + k
            if signal.ref.kind == CONSTANT_KIND:  # an element of a constant: its number
                return sp.Float(float(self._constant_values[signal.ref][flat]))
            return signal.symbols[flat]
        symbol = self._relative.get((signal.ref, index))
        if symbol is None:
            # not an identifier: it cannot be any signal's name (it is never printed)
            name = f"{signal.symbols.name}[{index_text(index)}]"
            symbol = self._relative[(signal.ref, index)] = sp.Symbol(name, real=True)
            self.offsets[symbol] = Offset(signal.ref, index)
            self._signals[signal.ref] = signal
        return symbol

    def remap(self, expr: sp.Basic, change: Callable[[Index], Index]) -> sp.Basic:
        """``expr`` with every relative read's index changed by ``change``."""
        subs = {
            s: self.relative(self._signals[o.ref], change(o.index))
            for s in expr.free_symbols if (o := self.offsets.get(s)) is not None
        }  # fmt: skip
        return expr.xreplace(subs) if subs else expr

    def shift(self, expr: sp.Basic, deltas: Sequence[int]) -> sp.Basic:
        """``e(i, j, ...) -> e(i + deltas[0], j + deltas[1], ...)``."""
        if not any(deltas):
            return expr
        return self.remap(expr, lambda index: tuple((a, k + deltas[a]) if a >= 0 else (a, k) for a, k in index))

    def fix(self, expr: sp.Basic, axis: int, value: int, keep: bool = False) -> sp.Basic:
        """``expr`` with loop index ``axis`` set to ``value``; the later axes renumbered
        down (the axis is gone) unless ``keep``."""
        def change(index: Index) -> Index:
            out = []
            for a, k in index:
                if a == axis:
                    out.append((-1, k + value))
                elif a > axis and not keep:
                    out.append((a - 1, k))
                else:
                    out.append((a, k))
            return tuple(out)

        return self.remap(expr, change)

    def insert_axis(self, expr: sp.Basic, axis: int) -> sp.Basic:
        """``expr`` as a value with a new loop axis at ``axis`` (that it does not read)."""
        return self.remap(expr, lambda index: tuple((a + 1, k) if a >= axis else (a, k) for a, k in index))

    def permute(self, expr: sp.Basic, axes: Sequence[int]) -> sp.Basic:
        """``expr`` of ``src`` as an element of ``src.transpose(axes)``."""
        new = {old: position for position, old in enumerate(axes)}
        return self.remap(expr, lambda index: tuple((new[a], k) if a >= 0 else (a, k) for a, k in index))

    def at(self, expr: sp.Basic, cell: Sequence[int]) -> sp.Basic:
        """``e(cell)`` at constant indices: relative reads become element symbols."""
        return self.remap(expr, lambda index: tuple((-1, k + cell[a]) if a >= 0 else (a, k) for a, k in index))

    def signal(self, ref: SignalRef) -> Signal:
        return self._signals[ref]


def is_lazy(value: Any) -> bool:
    return isinstance(value, LazyArray)


# ------------------------------------------------------------------ elementwise maths


def _shape_text(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape)) if len(shape) != 1 else f"{shape[0]} elements"


def broadcast_to(value: "LazyArray", shape: tuple[int, ...]) -> "LazyArray":
    """``value`` broadcast to ``shape`` by numpy's rules (new leading axes, length-1 axes repeated)."""
    while value.ndim < len(shape):
        value = NewAxis(value, 0)
    if value.shape == shape:
        return value
    return Broadcast(value, shape)


def _small_array(ctx: ArrayContext, a: Any) -> np.ndarray:
    """An element-form (object) array that meets the array form; raises ``PromoteSignals``
    when it is computed from small vector signals, which the array form can read as well."""
    array = a.view(np.ndarray) if isinstance(a, SymArray) else np.asarray(a, dtype=object)
    if any(isinstance(x, LazyArray) for x in array.flat):
        raise _error("a list holding a traced large array", "use np.concatenate or np.stack to join arrays")
    if ctx.small_signals and array.size >= PROMOTE_MIN:
        sizes = {
            ctx.small_signals[symbol]
            for x in array.flat if isinstance(x, Sym)
            for symbol in x.expr.free_symbols if symbol in ctx.small_signals
        }  # fmt: skip
        if sizes:
            raise PromoteSignals(min(sizes))
    return array


class PromoteSignals(Exception):
    """A small vector signal (under the array form's threshold, traced element by element)
    meets the array form: the model is traced again with signals of at least ``size``
    elements in array form (``trace.trace``).  Never reaches the user.  ``reduction``: it
    was met by a reduction over a whole vector (``promote_reduction``) or an outer
    operation (``promote_outer``), which the element form could have traced too."""

    def __init__(self, size: int, reduction: bool = False) -> None:
        super().__init__(size)
        self.size = size
        self.reduction = reduction


# The small vector signals of the element-form trace that reductions may promote
# (``trace.trace`` sets it, ``promote_reduction`` reads it): element symbol -> signal size.
PROMOTABLE: ContextVar["dict[sp.Symbol, int] | None"] = ContextVar("dyngen_promotable", default=None)


def promote_reduction(values: Any) -> None:
    """Raise ``PromoteSignals`` if ``values`` (the elements a reduction over a whole vector
    reads) hold at least ``REDUCE_PROMOTE_MIN`` elements computed from small vector signals
    of that size or more: the array form derives the reduction as one low-rank term."""
    small = PROMOTABLE.get()
    if not small:
        return
    flat = [x for x in np.asarray(values, dtype=object).flat if isinstance(x, Sym)]
    if len(flat) >= REDUCE_PROMOTE_MIN:
        _promote_small_signals(flat, small)


def promote_outer(operands: list[np.ndarray]) -> None:
    """Raise ``PromoteSignals`` if the operands of an elementwise operation that broadcasts
    them into a result at least twice as large as each (``th[None, :] - th[:, None]``,
    ``np.subtract.outer``: the caller checks the sizes) read small vector signals of at
    least ``REDUCE_PROMOTE_MIN`` elements: element by element it builds n² expressions and
    a dense Jacobian derived entry by entry (all-to-all coupling of 63 oscillators: 49 s),
    in array form it is one loop nest (about 1 s)."""
    small = PROMOTABLE.get()
    if small:
        _promote_small_signals((x for a in operands for x in a.flat if isinstance(x, Sym)), small)


def _promote_small_signals(elements: Iterable[Sym], small: dict[sp.Symbol, int]) -> None:
    """``PromoteSignals`` for the smallest signal of ``REDUCE_PROMOTE_MIN`` elements or more that ``elements`` read."""
    sizes = {small[s] for x in elements for s in x.expr.free_symbols if small.get(s, 0) >= REDUCE_PROMOTE_MIN}
    if sizes:
        raise PromoteSignals(min(sizes), reduction=True)


def numeric_constant(value: Any) -> np.ndarray | None:
    """``value`` as a float64 array when it is a constant numeric array (or list of
    numbers) that float64 holds exactly; None otherwise (traced values, objects, complex)."""
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            return None
        array = value
    elif isinstance(value, (list, tuple)):
        if is_symbolic(value):
            return None
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):  # ragged
            return None
        if array.dtype.kind not in "biuf":
            return None
    else:
        return None
    if array.dtype.kind in "iu":
        as_float = array.astype(np.float64)
        if not (as_float == array).all():  # an integer beyond 2**53
            return None
        return as_float
    return array.astype(np.float64, copy=False)


def _origin(value: Any) -> str:
    """What the model's code calls ``value`` (``W``, ``self.W``), found by identity among
    the locals, the attributes of the locals (and their classes) and the globals of the
    innermost model frame; "" when it is a value the model computed."""
    frame = sys._getframe(1)
    while frame is not None and not is_model_code(frame.f_code.co_filename):
        if frame.f_code in _BOUNDARIES:
            return ""
        frame = frame.f_back
    if frame is None:
        return ""
    scopes: list[tuple[str, dict]] = [("", frame.f_locals)]
    for local, obj in list(frame.f_locals.items()):
        if isinstance(obj, (type, LazyArray, np.ndarray)):
            continue
        try:
            scopes += [(f"{local}.", vars(obj)), (f"{local}.", vars(type(obj)))]
        except TypeError:  # no __dict__
            continue
    scopes.append(("", frame.f_globals))
    for prefix, scope in scopes:
        for name, obj in scope.items():
            if obj is value and isinstance(name, str) and not name.startswith("__"):
                return prefix + name
    return ""


def as_constant(ctx: ArrayContext, value: Any) -> "LazyArray | None":
    """``value`` as a lazy node when it is a numeric constant array of more than
    ``INLINE_CONSTANT_MAX`` values (module data, or one number); None otherwise.
    A transpose or a slice (step 1) of another array is read from that array's data."""
    array = numeric_constant(value)
    if array is None or array.size <= INLINE_CONSTANT_MAX:
        return None
    view = _view_of_base(ctx, value)
    if view is not None:
        return view
    return ctx.constant(array, _origin(value))


def _view_of_base(ctx: ArrayContext, value: Any) -> "LazyArray | None":
    """``value`` as ``base.T`` or ``base[a:b, c:d, ...]`` of the C-contiguous array it views
    (``W.T``, ``K[1:]``), so that the module holds the data once; None for anything else."""
    base = value.base if isinstance(value, np.ndarray) else None
    if not isinstance(base, np.ndarray) or base.dtype != value.dtype or not base.flags.c_contiguous:
        return None
    if numeric_constant(base) is None or base.ndim != value.ndim or base.size <= INLINE_CONSTANT_MAX:
        return None
    offset = value.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    if value.ndim > 1 and offset == 0 and value.shape == base.shape[::-1] and value.strides == base.strides[::-1]:
        source = ctx.constant(numeric_constant(base), _origin(base))
        return source.transpose() if isinstance(source, LazyArray) else None
    if value.strides != base.strides or offset < 0:
        return None
    starts = []
    for stride in base.strides:  # C order: the offset's digits along each axis
        start, offset = divmod(offset, stride) if stride else (0, offset)
        starts.append(start)
    if offset or any(a + n > m for a, n, m in zip(starts, value.shape, base.shape)):
        return None
    source = ctx.constant(numeric_constant(base), _origin(base))
    if isinstance(source, Fill):
        return Fill(ctx, value.shape, source.value)
    return Slice(source, tuple(starts), tuple(value.shape))


def with_large_constant(fn: Callable[..., sp.Basic], args: tuple) -> Any:
    """``fn`` of traced scalars and a numeric constant array of at least ``ARRAY_MIN``
    values (``k * W``) in array form, when the model being traced has arrays in array
    form; None otherwise (the element form then makes one expression per element)."""
    ctx = ACTIVE_ARRAYS.get()
    if ctx is None:
        return None
    constants = [numeric_constant(a) for a in args if isinstance(a, (np.ndarray, list, tuple))]
    if not constants or any(c is None for c in constants) or max(c.size for c in constants) < ctx.array_min:
        return None
    try:
        int(np.prod(np.broadcast_shapes(*(c.shape for c in constants))))
    except ValueError:
        return None  # numpy's error, from the element form
    return elementwise(fn, *args, ctx=ctx)


def elementwise(fn: Callable[..., sp.Basic], *args: Any, ctx: ArrayContext | None = None) -> Any:
    """``fn`` applied elementwise to lazy arrays, scalars and small arrays (numpy broadcasting);
    constant numeric arrays of more than ``INLINE_CONSTANT_MAX`` values are module data."""
    ctx = ctx if ctx is not None else next(a.ctx for a in args if isinstance(a, LazyArray))
    try:
        shapes = [a.shape if isinstance(a, (LazyArray, np.ndarray)) else np.asarray(a, dtype=object).shape
                  for a in args if isinstance(a, (LazyArray, np.ndarray, list, tuple))]  # fmt: skip
        large = int(np.prod(np.broadcast_shapes(*shapes))) >= ctx.array_min
    except (ValueError, TraceError):
        large = False  # reported below (shapes that do not broadcast, a list holding a traced array)
    operands: list[Any] = []
    for a in args:
        if isinstance(a, LazyArray):
            operands.append(a)
        elif isinstance(a, (np.ndarray, list, tuple)) and np.size(a) != 1:
            constant = as_constant(ctx, a) if large else None
            operands.append(constant if constant is not None else _small_array(ctx, a))
        elif isinstance(a, (np.ndarray, list, tuple)):
            operands.append(Fill(ctx, np.shape(a), _scalar(a)))
        else:
            operands.append(_scalar(a))
    try:
        shape = np.broadcast_shapes(*(o.shape for o in operands if not isinstance(o, sp.Basic)))
    except ValueError:
        shapes = ", ".join(str(tuple(o.shape)) for o in operands if not isinstance(o, sp.Basic))
        raise TraceError(
            f"operands could not be broadcast together with shapes {shapes} (a ValueError in numpy)",
            "make the shapes agree: index with None (a[:, None]) to add an axis",
            user_frame_location(),
        ) from None
    size = int(np.prod(shape))
    ctx.work += size
    if size < ctx.array_min and any(isinstance(o, np.ndarray) for o in operands):
        # small, with element-form operands: element form, as any object array (a small
        # value of lazy arrays alone stays lazy: ``2 * np.max(u, axis=0)`` broadcast back
        # over the grid is one loop nest, not one line per element)
        from .symbolic import _elementwise

        return _elementwise(fn, *[to_elements(o) if isinstance(o, LazyArray) else o for o in operands])
    converted = []
    for o in operands:
        if isinstance(o, np.ndarray):
            if o.size > SMALL_PART:
                raise _error(
                    f"an array of {o.size} traced elements (element form, shape {o.shape}) combined "
                    "elementwise with a traced large array",
                    "build it with array operations on the large array (slices, np.concatenate, "
                    "elementwise maths), or keep it a constant numpy array (module data)",
                )
            o = Small(ctx, o)
        if isinstance(o, LazyArray) and o.size * MATERIALIZE_REPEATS <= size and _costly(o):
            o = ctx.materialize(o)
        converted.append(broadcast_to(o, shape) if isinstance(o, LazyArray) else o)
    return Map(ctx, fn, tuple(converted), shape)


def _costly(value: "LazyArray") -> bool:
    """Whether broadcasting ``value`` would repeat function calls (one box only: a
    materialized array's Jacobian inlines its expression)."""
    pieces = value.pieces()
    return len(pieces) == 1 and bool(pieces[0][1].atoms(sp.Function))


def _scalar(value: Any) -> sp.Basic:
    if isinstance(value, np.ndarray):
        value = value.reshape(-1)[0]
    elif isinstance(value, (list, tuple)):
        value = np.asarray(value, dtype=object).reshape(-1)[0]
    return to_expr(value)


def to_elements(value: "LazyArray") -> SymArray:
    """A (small) lazy array as the object array of its elements."""
    out = np.empty(value.shape, dtype=object)
    for cell in np.ndindex(*value.shape):
        out[cell] = Sym(value.element(cell))
    return out.view(SymArray)


def _operator(ufunc: np.ufunc, reflected: bool = False) -> Callable[[Any, Any], Any]:
    fn = UFUNCS[ufunc]
    if reflected:
        return lambda self, other: elementwise(fn, other, self)
    return lambda self, other: elementwise(fn, self, other)


def _unsupported_function(name: str) -> ArrayTraceError:
    return _error(
        f"{name} of a traced large array (at least {ARRAY_MIN} elements, traced in array form) "
        "is not supported yet",
        "build the value with slicing, np.concatenate/np.stack, np.roll, np.pad, np.diff, np.where, "
        "np.clip, broadcasting (a[:, None]), .T/np.transpose, elementwise arithmetic/ufuncs, "
        "reductions (np.sum, np.mean, np.prod, np.max, np.min, whole or with axis=), "
        "@/np.dot/np.einsum and np.linalg.norm, and write what is left with those (e.g. np.cumsum(u, "
        "axis=1) as u @ np.triu(np.ones((m, m))), a product with a constant matrix)",
    )


def _numpy_name(func: Any) -> str:
    """``np.linalg.norm``, ``np.fft.fft``, ``np.cumsum``: a numpy function as the user wrote it."""
    name = getattr(func, "__name__", str(func))
    module = (getattr(func, "__module__", "") or "").split(".")
    return f"np.{module[1]}.{name}" if module[0] == "numpy" and module[1:2] in (["linalg"], ["fft"]) else f"np.{name}"


def _axis(axis: Any, ndim: int, what: str) -> int:
    if not isinstance(axis, (numbers.Integral, np.integer)) or isinstance(axis, (bool, np.bool_)):
        raise _error(f"{what} with axis={axis!r}", "pass a constant integer axis")
    if not -ndim <= axis < ndim:
        raise TraceError(
            f"{what}: axis {axis} is out of bounds for an array of dimension {ndim} (an AxisError in numpy)",
            f"use an axis from {-ndim} to {ndim - 1}",
            user_frame_location(),
        )
    return int(axis) % ndim


# ----------------------------------------------------------------------- the nodes


class LazyArray:
    """A traced large array in array form (see the module docstring)."""

    __array_priority__ = 1000
    _dyngen_lazy = True  # recognised by symbolic.py without importing this module

    def __init__(self, ctx: ArrayContext, shape: tuple[int, ...]) -> None:
        self.ctx = ctx
        self.shape = tuple(int(n) for n in shape)
        self._pieces: list[Piece] | None = None

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of unsized object")
        return self.shape[0]

    @property
    def T(self) -> "LazyArray":  # noqa: N802 - numpy's name
        return self.transpose()

    def transpose(self, *axes: Any) -> "LazyArray":
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        if not axes:
            axes = tuple(reversed(range(self.ndim)))
        axes = tuple(_axis(a, self.ndim, "transpose") for a in axes)
        if sorted(axes) != list(range(self.ndim)):
            raise TraceError(f"transpose axes {axes} do not match the array", "give each axis once", user_frame_location())
        return self if axes == tuple(range(self.ndim)) else Transpose(self, axes)

    def swapaxes(self, a: int, b: int) -> "LazyArray":
        axes = list(range(self.ndim))
        a, b = _axis(a, self.ndim, "swapaxes"), _axis(b, self.ndim, "swapaxes")
        axes[a], axes[b] = axes[b], axes[a]
        return self.transpose(axes)

    def copy(self) -> "LazyArray":
        return self

    def ravel(self, order: str = "C") -> "LazyArray":
        return _reshape(self, (-1,), order)

    def flatten(self, order: str = "C") -> "LazyArray":
        return _reshape(self, (-1,), order)

    def reshape(self, *shape: Any, order: str = "C") -> "LazyArray":
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return _reshape(self, shape, order)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("dtype", "base", "flags", "strides", "real", "imag"):
            raise AttributeError(name)
        raise _MissingMethod(
            f"a traced array in array form has no {name!r} (ndarray.{name} is not traced)",
            "write it with what the array form takes (slices, np.concatenate/np.stack, broadcasting, "
            "elementwise maths, reductions: see the README), or a constant numpy array for constant data",
            user_frame_location(),
        )

    def squeeze(self, axis: Any = None) -> "LazyArray":
        return _reshape(self, tuple(n for a, n in enumerate(self.shape) if n != 1 or axis is not None and a != axis % self.ndim))

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

    def sum(self, axis: Any = None, **kwargs: Any) -> Any:
        return _reduce("sum")(self, axis, **kwargs)

    def prod(self, axis: Any = None, **kwargs: Any) -> Any:
        return _reduce("prod")(self, axis, **kwargs)

    def max(self, axis: Any = None, **kwargs: Any) -> Any:
        return _reduce("max")(self, axis, **kwargs)

    def min(self, axis: Any = None, **kwargs: Any) -> Any:
        return _reduce("min")(self, axis, **kwargs)

    def mean(self, axis: Any = None, **kwargs: Any) -> Any:
        return _mean(self, axis, **kwargs)

    def dot(self, other: Any) -> Any:
        return _dot(self, other)

    def __bool__(self) -> bool:
        raise _error(
            "Python `if`, `and`, `or` or `not` on a traced array: its truth is only known when the model runs",
            "np.where(condition, a, b) works elementwise on arrays",
        )

    def __iter__(self) -> Any:
        raise _error(
            f"iterating over a traced large array (a Python loop, unpacking or a list of its "
            f"{self.shape[0] if self.shape else 0} rows) would trace it element by element",
            "use slices (u[1:] - u[:-1]), np.roll, np.concatenate and elementwise operations",
        )

    def __setitem__(self, key: Any, value: Any) -> None:
        if self.ndim == 1:
            raise _error(
                "item assignment to a traced large array (lap[1:-1] = ...)",
                "build the array whole: lap = np.concatenate(([u[1] - u[0]], u[2:] - 2 * u[1:-1] + u[:-2], [u[-2] - u[-1]])), "
                "or with np.roll/np.pad",
            )
        raise _error(
            f"item assignment to a traced large array of {self.ndim} dimensions (lap[1:-1, 1:-1] = ...)",
            "build the array whole, e.g. with walls: w = np.pad(u, 1, mode='edge'); lap = w[2:, 1:-1] + w[:-2, 1:-1] + "
            "w[1:-1, 2:] + w[1:-1, :-2] - 4 * u (mode='wrap' for periodic, np.roll(u, 1, axis=0) alike); "
            "a boundary row of its own: np.concatenate((top[None, :], u[1:]), axis=0)",
        )

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise _error(
            "a traced large array was converted to a numpy array (np.asarray, np.array, np.zeros(...) filled in, ...)",
            "build arrays with np.concatenate, slicing and elementwise operations",
        )

    def __float__(self) -> float:
        raise _error("float() of a traced array", "use numpy functions (np.sin, ...) elementwise")

    def __index__(self) -> int:
        raise _error("indexing with a traced array", "index arrays with constants only (u[0], u[1:-1])")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(shape={self.shape})"

    # -- numpy dispatch -------------------------------------------------------
    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        if method == "__call__" and not kwargs and ufunc in UFUNCS:
            return elementwise(UFUNCS[ufunc], *inputs)
        if method == "__call__" and ufunc is np.matmul and not kwargs and len(inputs) == 2:
            return _dot(*inputs)
        if method == "reduce" and ufunc in _REDUCING_UFUNCS and len(inputs) == 1:
            return _reduce(_REDUCING_UFUNCS[ufunc])(inputs[0], **kwargs)
        if method == "outer" and ufunc in UFUNCS and not kwargs and len(inputs) == 2:
            a, b = (x if isinstance(x, LazyArray) else np.asarray(x, dtype=object) for x in inputs)
            return elementwise(UFUNCS[ufunc], _expand_to(a, a.ndim + b.ndim, 0), _expand_to(b, a.ndim + b.ndim, a.ndim))
        if method != "__call__" or ufunc is np.matmul:
            raise _unsupported_function(f"np.{ufunc.__name__}{'.' + method if method != '__call__' else ''}")
        if kwargs:
            raise _error(
                f"np.{ufunc.__name__}(..., {', '.join(f'{k}=' for k in kwargs)}) on a traced array",
                f"assign the result instead: z = np.{ufunc.__name__}(...)",
            )
        raise _error(
            f"np.{ufunc.__name__} is not supported on traced values",
            "use arithmetic, comparisons and the ufuncs listed in the README's 'modeling form'",
        )

    def __array_function__(self, func: Callable, types: tuple, args: tuple, kwargs: dict) -> Any:
        handler = _FUNCTIONS.get(func)
        if handler is None:
            raise _unsupported_function(_numpy_name(func))
        return handler(*args, **kwargs)

    # -- indexing -------------------------------------------------------------
    def __getitem__(self, key: Any) -> Any:
        items = list(key) if isinstance(key, tuple) else [key]
        for item in items:
            _check_index(item)
        real = sum(1 for item in items if item is not None and item is not Ellipsis)
        if real > self.ndim:
            raise TraceError(
                f"too many indices for an array of shape {self.shape}: {real} given (an IndexError in numpy)",
                f"index with at most {self.ndim} indices",
                user_frame_location(),
            )
        if any(item is Ellipsis for item in items):
            at = next(k for k, item in enumerate(items) if item is Ellipsis)
            items[at : at + 1] = [slice(None)] * (self.ndim - real)
        else:
            items += [slice(None)] * (self.ndim - real)
        value, axis = self, 0
        for item in items:
            if item is None:
                value, axis = NewAxis(value, axis), axis + 1
            elif isinstance(item, slice):
                value, axis = _slice_axis(value, axis, item), axis + 1
            elif isinstance(item, (numbers.Integral, np.integer)) and not isinstance(item, (bool, np.bool_)):
                n = value.shape[axis]
                k = int(item) + (n if item < 0 else 0)
                if not 0 <= k < n:
                    raise TraceError(
                        f"index {int(item)} is out of bounds for axis {axis} with size {n} (an IndexError in numpy)",
                        f"use an index from {-n} to {n - 1}",
                        user_frame_location(),
                    )
                value = Take(value, axis, k)
            else:
                raise _error(
                    f"indexing a traced large array with {type(item).__name__} ({item!r})",
                    "index with constant integers, constant slices and None (fancy or boolean "
                    "indexing would depend on values)",
                )
        if value.ndim == 0:
            count_element_read(self.shape)
            return Sym(value.element(()))
        return value

    def element(self, cell: Sequence[int] | int) -> sp.Basic:
        """Element ``cell`` (a tuple of indices; an int in 1-D) as an expression of scalars and element symbols."""
        if isinstance(cell, (numbers.Integral, np.integer)):
            cell = (int(cell),)
        cell = tuple(cell)
        for box, expr in self.pieces():
            if all(lo <= c < hi for c, (lo, hi) in zip(cell, box)):
                return self.ctx.at(expr, cell)
        raise IndexError(cell)

    def pieces(self) -> list[Piece]:
        """The boxes of this node (memoised: a shared subexpression is lowered once)."""
        if self._pieces is None:
            self._pieces = merge([piece for piece in self._lower() if box_size(piece[0]) > 0])
        return self._pieces

    def _lower(self) -> list[Piece]:
        raise NotImplementedError


install_operators(LazyArray, _operator)


def _full(shape: tuple[int, ...]) -> Box:
    return tuple((0, n) for n in shape)


class Base(LazyArray):
    def __init__(self, ctx: ArrayContext, signal: Signal) -> None:
        super().__init__(ctx, signal.shape)
        self.signal = signal

    def _lower(self) -> list[Piece]:
        return [(_full(self.shape), self.ctx.relative(self.signal, tuple((a, 0) for a in range(self.ndim))))]


class Slice(LazyArray):
    def __init__(self, src: LazyArray, starts: tuple[int, ...], shape: tuple[int, ...]) -> None:
        super().__init__(src.ctx, shape)
        self.src, self.starts = src, starts

    def _lower(self) -> list[Piece]:
        out = []
        for box, expr in self.src.pieces():
            new = tuple(
                (max(lo, a) - a, min(hi, a + n) - a) for (lo, hi), a, n in zip(box, self.starts, self.shape)
            )  # fmt: skip
            if box_size(new) > 0:
                out.append((new, self.ctx.shift(expr, self.starts)))
        return out


def _check_index(item: Any) -> None:
    """A clear error for an index array (numpy's fancy and boolean indexing)."""
    if not isinstance(item, (list, np.ndarray, LazyArray, SymArray)):
        return
    if isinstance(item, (LazyArray, SymArray)) or np.asarray(item).dtype == np.bool_:
        raise _error(
            "indexing a traced large array with a boolean mask or a traced array (it picks elements by their values)",
            "write np.where(mask, u, 0.0) to zero what the mask leaves out, or use constant slices",
        )
    values = np.asarray(item)
    raise _error(
        f"indexing a traced large array with an integer array ({np.array2string(values.reshape(-1)[:6], separator=', ')}"
        f"{', ...' if values.size > 6 else ''}: numpy's fancy indexing)",
        "use constant slices (u[2:5]), or write the reordering with np.concatenate of slices "
        "(u[[3, 0, 1, 2]] is np.concatenate((u[3:4], u[0:3])))",
    )


def _slice_axis(value: LazyArray, axis: int, key: slice) -> LazyArray:
    for bound in (key.start, key.stop, key.step):
        if bound is not None and not isinstance(bound, (numbers.Integral, np.integer)):
            raise _error(f"the slice bound {bound!r} is not a constant integer", "slice with constants only")
    start, stop, step = key.indices(value.shape[axis])
    if step != 1:
        raise _error(
            f"the strided slice [{key.start}:{key.stop}:{key.step}] of a traced large array",
            "use slices with step 1 (np.flip and strides are not supported in array form yet)",
        )
    length = max(stop - start, 0)
    if start == 0 and length == value.shape[axis]:
        return value
    starts = [0] * value.ndim
    starts[axis] = start
    shape = list(value.shape)
    shape[axis] = length
    if isinstance(value, Slice):
        merged = tuple(a + b for a, b in zip(value.starts, starts))
        return Slice(value.src, merged, tuple(shape))
    return Slice(value, tuple(starts), tuple(shape))


class Take(LazyArray):
    def __init__(self, src: LazyArray, axis: int, k: int) -> None:
        super().__init__(src.ctx, src.shape[:axis] + src.shape[axis + 1 :])
        self.src, self.axis, self.k = src, axis, k

    def _lower(self) -> list[Piece]:
        a = self.axis
        return [
            (box[:a] + box[a + 1 :], self.ctx.fix(expr, a, self.k))
            for box, expr in self.src.pieces() if box[a][0] <= self.k < box[a][1]
        ]  # fmt: skip


class NewAxis(LazyArray):
    def __init__(self, src: LazyArray, axis: int) -> None:
        super().__init__(src.ctx, src.shape[:axis] + (1,) + src.shape[axis:])
        self.src, self.axis = src, axis

    def _lower(self) -> list[Piece]:
        a = self.axis
        return [(box[:a] + ((0, 1),) + box[a:], self.ctx.insert_axis(expr, a)) for box, expr in self.src.pieces()]


class Broadcast(LazyArray):
    def __init__(self, src: LazyArray, shape: tuple[int, ...]) -> None:
        super().__init__(src.ctx, shape)
        self.src = src

    def _lower(self) -> list[Piece]:
        out = []
        for box, expr in self.src.pieces():
            new = list(box)
            for a, (n, m) in enumerate(zip(self.src.shape, self.shape)):
                if n == 1 and m != 1:  # the only index along it is 0
                    expr = self.ctx.fix(expr, a, 0, keep=True)
                    new[a] = (0, m)
            out.append((tuple(new), expr))
        return out


class Transpose(LazyArray):
    def __init__(self, src: LazyArray, axes: tuple[int, ...]) -> None:
        super().__init__(src.ctx, tuple(src.shape[a] for a in axes))
        self.src, self.axes = src, axes

    def _lower(self) -> list[Piece]:
        return [(tuple(box[a] for a in self.axes), self.ctx.permute(expr, self.axes)) for box, expr in self.src.pieces()]


class Concat(LazyArray):
    def __init__(self, ctx: ArrayContext, parts: tuple[LazyArray, ...], axis: int = 0) -> None:
        shape = list(parts[0].shape)
        shape[axis] = sum(p.shape[axis] for p in parts)
        super().__init__(ctx, tuple(shape))
        self.parts, self.axis = parts, axis

    def _lower(self) -> list[Piece]:
        out: list[Piece] = []
        offset, a = 0, self.axis
        deltas = [0] * self.ndim
        for part in self.parts:
            deltas[a] = -offset
            for box, expr in part.pieces():
                new = box[:a] + ((box[a][0] + offset, box[a][1] + offset),) + box[a + 1 :]
                out.append((new, self.ctx.shift(expr, deltas)))
            offset += part.shape[a]
        return out


class Map(LazyArray):
    def __init__(self, ctx: ArrayContext, fn: Callable[..., sp.Basic], args: tuple, shape: tuple[int, ...]) -> None:
        super().__init__(ctx, shape)
        self.fn, self.args = fn, args

    def _lower(self) -> list[Piece]:
        return combine(self.fn, [a.pieces() if isinstance(a, LazyArray) else a for a in self.args], self.shape)


class Pieces(LazyArray):
    """An array another function computed, as its boxes (reading it composes them)."""

    def __init__(self, ctx: ArrayContext, shape: tuple[int, ...], segments: tuple[Segment, ...]) -> None:
        super().__init__(ctx, shape)
        self.segments = segments

    def _lower(self) -> list[Piece]:
        return [(tuple(zip(s.lo, s.hi)), s.expr) for s in self.segments]


class Fill(LazyArray):
    def __init__(self, ctx: ArrayContext, shape: tuple[int, ...], value: sp.Basic) -> None:
        super().__init__(ctx, shape)
        self.value = value

    def _lower(self) -> list[Piece]:
        return [(_full(self.shape), self.value)]


class Small(LazyArray):
    """A small constant (or element-form) array: one box per element."""

    def __init__(self, ctx: ArrayContext, values: np.ndarray) -> None:
        super().__init__(ctx, values.shape)
        self.values = values

    def _lower(self) -> list[Piece]:
        return [
            (tuple((c, c + 1) for c in cell), numeric(to_expr(self.values[cell])))
            for cell in np.ndindex(*self.shape)
        ]  # fmt: skip


class Reshaped(LazyArray):
    """``src.reshape(shape)`` that moves elements between axes and is no view of a signal
    (``lap.ravel()`` of a stencil).  A write takes it whole (``written_parts``: the der of a
    flat state written from its grid); anything else reading it is an error."""

    def __init__(self, src: LazyArray, shape: tuple[int, ...]) -> None:
        super().__init__(src.ctx, shape)
        self.src = src
        self.error = _error(
            f"reshape of a traced array of shape {src.shape} into {shape} that moves elements between axes: "
            "in array form, only a contiguous run of a signal's elements (a state, input or constant, "
            "whole or sliced along its first axes), or elementwise maths of such runs, is read with "
            "another shape; this value is computed otherwise (np.roll, a transpose, broadcasting, "
            "np.concatenate, a reduction, ...)",
            "reshape the signal itself and compute from that (u = self.states.y[:n*m].reshape(n, m)); "
            "a computed value of another shape can only be written whole to a der or output "
            "(self.ders.y = lap.ravel(), or np.concatenate of such parts, with elementwise maths "
            "inside each part); or give the state its final shape in __init__",
        )

    def _lower(self) -> list[Piece]:
        if self.size > SMALL_PART:
            raise self.error
        values = to_elements(self.src).view(np.ndarray).reshape(self.shape)
        return Small(self.ctx, values).pieces()


def written_parts(value: LazyArray) -> list[tuple[int, LazyArray]] | None:
    """A value written whole as ``(offset, part)``: each part in its own shape, its elements
    at ``offset ..`` of the written signal in C order; None when no part moves elements
    between axes (the value is written as it is)."""
    parts, moved = _parts(value)
    return parts if moved else None


def _parts(node: LazyArray, offset: int = 0) -> tuple[list[tuple[int, LazyArray]], bool]:
    """``written_parts`` of ``node`` from ``offset``, and whether a part moved elements."""
    if isinstance(node, Reshaped):
        return _parts(node.src, offset)[0], True
    if isinstance(node, NewAxis) and node.axis == 0:
        return _parts(node.src, offset)
    if isinstance(node, Concat) and node.axis == 0:
        parts, moved = [], False
        for part in node.parts:
            more, part_moved = _parts(part, offset)
            parts, moved, offset = parts + more, moved or part_moved, offset + part.size
        return parts, moved
    if isinstance(node, Map):  # elementwise maths of such values (-lap.ravel()): per part
        split = [_parts(a) if isinstance(a, LazyArray) else None for a in node.args]
        layout = next((tuple((o, p.shape) for o, p in s[0]) for s in split if s is not None and s[1]), None)
        if layout is not None:
            columns = [[a] * len(layout) if s is None else _split(a, s[0], layout) for a, s in zip(node.args, split)]
            if all(c is not None for c in columns):
                return [(offset + o, Map(node.ctx, node.fn, tuple(c[k] for c in columns), shape))
                        for k, (o, shape) in enumerate(layout)], True  # fmt: skip
    return [(offset, node)], False


def _split(node: LazyArray, parts: list[tuple[int, LazyArray]], layout: tuple) -> list[LazyArray] | None:
    """``node`` cut into the parts of ``layout`` (``(offset, shape)`` each), or None."""
    if tuple((o, p.shape) for o, p in parts) == layout:
        return [p for _, p in parts]
    flat = _reshape(node, (node.size,)) if node.ndim != 1 else node
    out = []
    for o, shape in layout:
        size = int(np.prod(shape))
        piece = flat if size == node.size else Slice(flat, (o,), (size,))
        piece = _reshape(piece, shape) if piece.shape != shape else piece
        if isinstance(piece, Reshaped):
            return None
        out.append(piece)
    return out


def combine(fn: Callable[..., Any], args: list, shape: tuple[int, ...]) -> list[Piece]:
    """``fn`` per cell of the merged cuts; an arg is a piece list or a constant."""
    cuts = []
    for a in range(len(shape)):
        axis_cuts = {0, shape[a]}
        for arg in args:
            if isinstance(arg, list):
                for box, _ in arg:
                    axis_cuts.update(box[a])
        cuts.append(sorted(axis_cuts))
    out = []
    for cell in itertools.product(*(list(zip(c, c[1:])) for c in cuts)):
        corner = tuple(lo for lo, _ in cell)
        values = []
        for arg in args:
            if isinstance(arg, list):
                values.append(_covering(arg, corner))
            else:
                values.append(arg)
        out.append((tuple(cell), fn(*values)))
    return out


def _covering(pieces: list[Piece], corner: tuple[int, ...]) -> sp.Basic:
    for box, expr in pieces:
        if all(lo <= c < hi for c, (lo, hi) in zip(corner, box)):
            return expr
    raise CodegenError(f"internal error: no box covers {corner}")


def merge(pieces: list[Piece]) -> list[Piece]:
    """Neighbouring boxes with equal expressions joined (along each axis in turn)."""
    if not pieces or len(pieces[0][0]) == 0:
        return pieces
    ndim = len(pieces[0][0])
    changed = True
    while changed and len(pieces) > 1:
        changed = False
        for a in range(ndim):
            ordered = sorted(pieces, key=lambda p: (tuple(b for k, b in enumerate(p[0]) if k != a), p[0][a]))
            out: list[Piece] = []
            for box, expr in ordered:
                if out:
                    last_box, last_expr = out[-1]
                    same_rest = all(last_box[k] == box[k] for k in range(ndim) if k != a)
                    if same_rest and last_box[a][1] == box[a][0] and last_expr == expr:
                        out[-1] = (last_box[:a] + ((last_box[a][0], box[a][1]),) + last_box[a + 1 :], expr)
                        changed = True
                        continue
                out.append((box, expr))
            pieces = out
    return sorted(pieces, key=lambda p: tuple(lo for lo, _ in p[0]))


# ------------------------------------------------------------------ numpy functions


def _context(args: tuple) -> ArrayContext:
    for a in args:
        if isinstance(a, LazyArray):
            return a.ctx
        if isinstance(a, (list, tuple)):
            for b in a:
                if isinstance(b, LazyArray):
                    return b.ctx
    raise AssertionError("no traced array among the arguments")


def _as_part(ctx: ArrayContext, item: Any, what: str) -> LazyArray:
    """A part of a concatenation as a lazy array (constants: a Small node)."""
    if isinstance(item, LazyArray):
        return item
    if isinstance(item, Sym) or np.ndim(item) == 0 and not isinstance(item, (list, tuple)):
        raise TraceError(
            f"{what} of a scalar (zero-dimensional arrays cannot be concatenated in numpy)",
            "wrap it in a list: np.concatenate(([u[-1]], u, [u[0]]))",
            user_frame_location(),
        )
    constant = as_constant(ctx, item)
    if constant is not None:
        return constant
    array = _small_array(ctx, item)
    if array.size > SMALL_PART:
        raise _error(
            f"{what} of an array of {array.size} traced elements (element form) with a traced large array",
            "build it with array operations on the large array, or keep it a constant numpy array (module data)",
        )
    return Small(ctx, array)


def _operand(ctx: ArrayContext, value: Any) -> Any:
    """An operand of a product: lazy as it is, a larger numeric constant as module data,
    anything else as a small (object) array."""
    if isinstance(value, LazyArray):
        return value
    constant = as_constant(ctx, value)
    return constant if constant is not None else _small_array(ctx, value)


def _concatenate(arrays: Any, axis: Any = 0, out: Any = None, **kwargs: Any) -> LazyArray:
    if out is not None or kwargs:
        raise _error("np.concatenate of traced arrays with out or dtype", "concatenate plainly")
    ctx = _context((arrays,))
    parts = [_as_part(ctx, item, "np.concatenate") for item in arrays]
    if axis is None:
        parts = [p.ravel() for p in parts]
        axis = 0
    ndim = parts[0].ndim
    if any(p.ndim != ndim for p in parts):
        raise TraceError(
            "np.concatenate of arrays with different numbers of dimensions (a ValueError in numpy): "
            + ", ".join(str(p.shape) for p in parts),
            "give every part the same number of dimensions (index with None to add one)",
            user_frame_location(),
        )
    axis = _axis(axis, ndim, "np.concatenate")
    for p in parts:
        if p.shape[:axis] + p.shape[axis + 1 :] != parts[0].shape[:axis] + parts[0].shape[axis + 1 :]:
            raise TraceError(
                f"np.concatenate along axis {axis} of arrays of shapes {[p.shape for p in parts]} "
                "(a ValueError in numpy): the other axes must agree",
                "make the other axes' lengths equal",
                user_frame_location(),
            )
    parts = [p for p in parts if p.shape[axis] > 0]
    return parts[0] if len(parts) == 1 else Concat(ctx, tuple(parts), axis)


def _stack(arrays: Any, axis: Any = 0, out: Any = None, **kwargs: Any) -> LazyArray:
    ctx = _context((arrays,))
    parts = [_as_part(ctx, item, "np.stack") for item in arrays]
    axis = _axis(axis, parts[0].ndim + 1, "np.stack")
    return _concatenate([NewAxis(p, axis) for p in parts], axis=axis, out=out, **kwargs)


def _hstack(arrays: Any, **kwargs: Any) -> LazyArray:
    ctx = _context((arrays,))
    parts = [[x] if np.ndim(x) == 0 else x for x in arrays]
    lazy = [_as_part(ctx, p, "np.hstack") for p in parts]
    return _concatenate(lazy, axis=0 if lazy[0].ndim == 1 else 1, **kwargs)


def _vstack(arrays: Any, **kwargs: Any) -> LazyArray:
    ctx = _context((arrays,))
    lazy = [_as_part(ctx, p, "np.vstack") for p in arrays]
    return _concatenate([p[None, :] if p.ndim == 1 else p for p in lazy], axis=0, **kwargs)


_REDUCING_UFUNCS = {np.add: "sum", np.multiply: "prod", np.maximum: "max", np.minimum: "min"}
_SMALL_REDUCE = {"sum": sp.Add, "prod": sp.Mul, "max": maximum, "min": minimum}


def _reduce(op: str) -> Callable[..., Any]:
    def reduce(a: Any, axis: Any = None, dtype: Any = None, out: Any = None, keepdims: bool = False, **kwargs: Any) -> Any:
        if not isinstance(a, LazyArray):
            return getattr(np, "amax" if op == "max" else "amin" if op == "min" else op)(a, axis=axis)
        if dtype is not None or out is not None or kwargs:
            raise _error(f"np.{op} of a traced array with dtype, out, initial or where", f"np.{op}(u) or np.{op}(u, axis=k)")
        axes = tuple(range(a.ndim)) if axis is None else axis if isinstance(axis, tuple) else (axis,)
        axes = tuple(sorted({_axis(x, a.ndim, f"np.{op}") for x in axes}))
        if a.size < a.ctx.array_min:  # small: the reduction of its elements
            value = _small_reduction(op, a, axes)
        else:
            a.ctx.work += a.size
            value = a.ctx.partial_reduction(a, op, axes) if len(axes) < a.ndim else Sym(a.ctx.reduction(a, op))
        return _keep_dims(value, axes) if keepdims else value

    return reduce


def _keep_dims(value: Any, axes: tuple[int, ...]) -> Any:
    """A reduction's ``value`` with its reduced ``axes`` back as length-1 axes (``keepdims=True``)."""
    if isinstance(value, LazyArray):
        for axis in axes:  # (ascending: each lands where it was)
            value = NewAxis(value, axis)
        return value
    array = value.view(np.ndarray) if isinstance(value, np.ndarray) else as_object_array([value]).reshape(())
    return np.expand_dims(array, axes).view(SymArray)


def _small_reduction(op: str, a: "LazyArray", axes: tuple[int, ...]) -> Any:
    """``op`` along ``axes`` of a small lazy array, element by element (a Sym, or a SymArray)."""
    kept = [k for k in range(a.ndim) if k not in axes]
    out = np.empty(tuple(a.shape[k] for k in kept), dtype=object)
    for cell in np.ndindex(*out.shape):
        elements = []
        for inner in np.ndindex(*(a.shape[k] for k in axes)):
            full = [0] * a.ndim
            for k, c in zip(kept, cell):
                full[k] = c
            for k, c in zip(axes, inner):
                full[k] = c
            elements.append(a.element(tuple(full)))
        out[cell] = Sym(_SMALL_REDUCE[op](*elements))
    return out[()] if out.ndim == 0 else out.view(SymArray)


def _mean(a: Any, axis: Any = None, **kwargs: Any) -> Any:
    if not isinstance(a, LazyArray):
        return np.mean(a, axis=axis, **kwargs)
    total = _reduce("sum")(a, axis, **kwargs)
    count = 1
    for x in (range(a.ndim) if axis is None else axis if isinstance(axis, tuple) else (axis,)):
        count *= a.shape[_axis(x, a.ndim, "np.mean")]
    return total / count


def _dot(a: Any, b: Any, out: Any = None) -> Any:
    """``np.dot``/``@`` with a traced array: products and sums along the contracted axis."""
    if out is not None:
        raise _error("np.dot(..., out=...) of a traced array", "assign the result instead")
    if any(np.ndim(x) == 0 and not isinstance(x, LazyArray) for x in (a, b)):
        return a * b  # numpy: a scalar times an array
    ctx = _context((a, b))
    a, b = _operand(ctx, a), _operand(ctx, b)
    if b.ndim > 2:
        raise _error("a matrix product with a right operand of more than 2 dimensions (np.dot and @ differ there)",
                     "use np.einsum with explicit subscripts: for a 2-D a, np.dot(a, b) is np.einsum('ij,kjm->ikm', a, b) "
                     "and a @ b is np.einsum('ij,kjm->kim', a, b)")  # fmt: skip
    inner_a, inner_b = a.shape[-1], b.shape[0]
    if inner_a != inner_b:
        raise TraceError(
            f"matrix product of shapes {a.shape} and {b.shape}: {inner_a} != {inner_b} (a ValueError in numpy)",
            "make the contracted lengths agree",
            user_frame_location(),
        )
    if a.ndim == 1 and b.ndim == 1:
        return _reduce("sum")(a * b)
    if b.ndim == 1:  # a matrix, or a stack of them, times a vector
        return _reduce("sum")(a * b, axis=-1)
    if a.ndim == 1:
        return _reduce("sum")(a[:, None] * b, axis=0)
    return _reduce("sum")(a[..., None] * b, axis=-2)  # (a stack of matrices times one: @ and np.dot agree)


def _einsum(subscripts: Any, *operands: Any, **kwargs: Any) -> Any:
    """``np.einsum`` with explicit letters (``"ij,j->i"``, ``"ij,jk->ik"``, ``"i,i->"``):
    the operands broadcast over every letter, multiplied, summed over the letters not kept."""
    if kwargs or not isinstance(subscripts, str) or "." in subscripts:
        raise _error("np.einsum with options, ellipsis or non-string subscripts", "write the subscripts out: 'ij,j->i'")
    text = subscripts.replace(" ", "")
    inputs, _, output = text.partition("->")
    terms = inputs.split(",")
    if "->" not in text:
        letters = "".join(terms)
        output = "".join(sorted(c for c in set(letters) if letters.count(c) == 1))
    if len(terms) != len(operands) or any(len(set(t)) != len(t) for t in terms):
        raise _error(f"np.einsum({subscripts!r}) with {len(operands)} operands or a repeated letter in one operand",
                     "one term per operand, each letter at most once per operand")  # fmt: skip
    summed = sorted({c for t in terms for c in t} - set(output))
    order = list(output) + summed
    product: Any = None
    ctx = _context(operands)
    for term, operand in zip(terms, operands):
        value = _operand(ctx, operand)
        if value.ndim != len(term):
            raise TraceError(f"np.einsum: the term {term!r} does not match an operand of shape {value.shape}",
                             "give one letter per axis", user_frame_location())  # fmt: skip
        # the operand's axes in the order of ``order``, new axes where it lacks a letter
        value = value.transpose([term.index(c) for c in order if c in term]) if value.ndim > 1 else value
        key = tuple(slice(None) if c in term else None for c in order)
        value = value[key]
        product = value if product is None else product * value
    if not summed:
        return product
    return _reduce("sum")(product, axis=tuple(range(len(output), len(order))))


def _roll(a: LazyArray, shift: Any, axis: Any = None) -> LazyArray:
    if isinstance(shift, (tuple, list)) or isinstance(axis, (tuple, list)):
        shifts = shift if isinstance(shift, (tuple, list)) else [shift] * len(axis)
        axes = axis if isinstance(axis, (tuple, list)) else [axis] * len(shifts)
        if len(shifts) != len(axes):
            raise TraceError("np.roll: shift and axis have different lengths (a ValueError in numpy)",
                             "give one shift per axis", user_frame_location())  # fmt: skip
        for s, x in zip(shifts, axes):
            a = _roll(a, s, x)
        return a
    if not isinstance(shift, (numbers.Integral, np.integer)):
        raise _error("np.roll of a traced array by a non-constant shift", "roll by a constant integer")
    if axis is None:
        if a.ndim != 1:
            raise _error("np.roll of a traced n-D array without axis= (a roll of the flattened array)",
                         "roll along an axis: np.roll(u, 1, axis=0)")  # fmt: skip
        axis = 0
    axis = _axis(axis, a.ndim, "np.roll")
    n = a.shape[axis]
    s = int(shift) % n if n else 0
    if s == 0:
        return a
    head = (slice(None),) * axis
    return Concat(a.ctx, (a[head + (slice(n - s, None),)], a[head + (slice(0, n - s),)]), axis)


def _pad(a: LazyArray, pad_width: Any, mode: str = "constant", **kwargs: Any) -> LazyArray:
    widths = np.broadcast_to(np.asarray(pad_width, dtype=object), (a.ndim, 2))
    if any(not isinstance(w, (numbers.Integral, np.integer)) or w < 0 for w in widths.flat):
        raise _error(f"np.pad with pad_width={pad_width!r}", "pad with constant non-negative integers")
    value = kwargs.pop("constant_values", 0)
    if kwargs or mode not in ("constant", "edge", "wrap"):
        raise _error(f"np.pad of a traced array with mode={mode!r} or options {sorted(kwargs)}",
                     "use mode 'constant' (with constant_values=c), 'edge' or 'wrap'")  # fmt: skip
    if np.ndim(value) != 0:
        raise _error("np.pad with per-axis constant_values", "pad with one constant value")
    for axis in range(a.ndim):
        before, after = int(widths[axis][0]), int(widths[axis][1])
        if not before and not after:
            continue
        n = a.shape[axis]
        head = (slice(None),) * axis
        parts = []
        for width, at_start in ((before, True), (after, False)):
            if not width:
                parts.append(None)
                continue
            if mode == "constant":
                shape = a.shape[:axis] + (width,) + a.shape[axis + 1 :]
                parts.append(Fill(a.ctx, shape, numeric(to_expr(value))))
            elif mode == "edge":
                edge = a[head + (slice(0, 1) if at_start else slice(n - 1, n),)]
                parts.append(Broadcast(edge, a.shape[:axis] + (width,) + a.shape[axis + 1 :]))
            else:  # wrap
                if width > n:
                    raise _error("np.pad(mode='wrap') wider than the array", "pad by at most the axis length")
                parts.append(a[head + (slice(n - width, n) if at_start else slice(0, width),)])
        a = Concat(a.ctx, tuple(p for p in (parts[0], a, parts[1]) if p is not None), axis)
    return a


def _diff(a: LazyArray, n: int = 1, axis: int = -1, prepend: Any = np._NoValue, append: Any = np._NoValue) -> LazyArray:
    axis = _axis(axis, a.ndim, "np.diff")
    if n == 0:
        return a  # (numpy: prepend and append are then ignored)
    if prepend is not np._NoValue or append is not np._NoValue:  # joined to ``a`` along the axis first
        edge = a.shape[:axis] + (1,) + a.shape[axis + 1 :]  # (a scalar is one slice of that shape)
        parts = [Fill(a.ctx, edge, numeric(to_expr(x))) if np.ndim(x) == 0 else x
                 for x in (prepend, a, append) if x is not np._NoValue]  # fmt: skip
        a = _concatenate(parts, axis=axis)
    head = (slice(None),) * axis
    for _ in range(n):
        a = a[head + (slice(1, None),)] - a[head + (slice(None, -1),)]
    return a


def _reshape(a: LazyArray, shape: Any, order: str = "C") -> LazyArray:
    """``a.reshape(shape, order=order)``.  Adding or dropping length-1 axes is a view of
    the same boxes; moving elements between axes is a ``View`` of a signal's elements (a
    state read as a grid), pushed through elementwise operations, or a ``Reshaped`` value
    that only a write takes whole (``self.ders.y = lap.ravel()``).  Fortran order is C
    order of the axes reversed."""
    if not isinstance(shape, (tuple, list)):
        shape = (shape,)
    shape = tuple(int(n) for n in shape)
    if order == "F":
        return _reshape(a.transpose(), shape[::-1]).transpose()
    if order != "C":
        raise _error(f"reshape or ravel of a traced array with order={order!r} (numpy's order then depends on how "
                     "the array lies in memory)", "write order='C' (the default) or order='F'")  # fmt: skip
    if shape.count(-1) > 1:
        raise TraceError("can only specify one unknown dimension (a ValueError in numpy)",
                         "give every length but one", user_frame_location())  # fmt: skip
    if shape.count(-1) == 1:
        known = int(np.prod([n for n in shape if n != -1])) or 1
        shape = tuple(a.size // known if n == -1 else n for n in shape)
    if int(np.prod(shape)) != a.size:
        numpy_shape = "(" + ",".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"
        raise TraceError(f"cannot reshape array of size {a.size} into shape {numpy_shape} (a ValueError in numpy)",
                         "keep the number of elements", user_frame_location())  # fmt: skip
    if tuple(n for n in shape if n != 1) != tuple(n for n in a.shape if n != 1):
        return _move_elements(a, shape)
    value = a
    for axis in reversed(range(value.ndim)):  # drop every length-1 axis ...
        if value.shape[axis] == 1:
            value = Take(value, axis, 0)
    for axis, n in enumerate(shape):  # ... and add the wanted ones
        if n == 1:
            value = NewAxis(value, axis)
    return value


def _move_elements(a: LazyArray, shape: tuple[int, ...]) -> LazyArray:
    if isinstance(a, Reshaped):
        return a.src if a.src.shape == shape else _reshape(a.src, shape)
    if isinstance(a, Fill):
        return Fill(a.ctx, shape, a.value)
    if isinstance(a, Small):
        return Small(a.ctx, a.values.reshape(shape))
    region = _contiguous_region(a)
    if region is not None:
        return a.ctx.view(*region, shape)
    if isinstance(a, Slice) and isinstance(a.src, Map):  # slicing commutes with elementwise maths
        src = a.src
        a = Map(a.ctx, src.fn, tuple(Slice(x, a.starts, a.shape) if isinstance(x, LazyArray) else x for x in src.args), a.shape)
    if isinstance(a, Map):
        args = [_reshape(x, shape) if isinstance(x, LazyArray) else x for x in a.args]
        if not any(isinstance(x, Reshaped) for x in args):
            return Map(a.ctx, a.fn, tuple(args), shape)
    aligned = _aligned_reshape(a, shape)
    return aligned if aligned is not None else Reshaped(a, shape)


def _aligned_reshape(a: LazyArray, shape: tuple[int, ...]) -> LazyArray | None:
    """``a.reshape(shape)`` when ``a`` is one expression over its whole box whose every
    read is a contiguous run of a signal, cell by cell (an elementwise value another
    function computed: a connection's output): the same expression of views."""
    try:
        pieces = a.pieces()
    except ArrayTraceError:
        return None
    if len(pieces) != 1 or pieces[0][0] != _full(a.shape):
        return None
    expr = pieces[0][1]
    ctx = a.ctx
    subs = {}
    for symbol in expr.free_symbols:
        offset = ctx.offsets.get(symbol)
        if offset is None:
            continue
        signal = ctx.signal(offset.ref)
        loops = [axis for axis, _ in offset.index if axis >= 0]
        if loops != list(range(a.ndim)) or signal.ref.kind == REDUCTION_KIND:
            return None  # (a read that broadcasts or permutes the loop axes)
        starts = [k for _, k in offset.index]
        extents = [a.shape[axis] if axis >= 0 else 1 for axis, _ in offset.index]
        first, size = _run(signal.shape, starts, extents)
        if size != a.size:
            return None
        subs[symbol] = ctx.view(signal, first, size, shape).pieces()[0][1]
    return Pieces(ctx, shape, (Segment(tuple(0 for _ in shape), shape, expr.xreplace(subs)),))


def _run(shape: Sequence[int], starts: Sequence[int], extents: Sequence[int]) -> tuple[int, int]:
    """``(first, size)`` of the box ``starts`` + ``extents`` of an array of ``shape`` in C
    order when its elements are one contiguous run, else ``(first, -1)``."""
    box_strides = [int(np.prod(shape[b + 1 :])) for b in range(len(shape))]
    first = sum(s * k for s, k in zip(box_strides, starts))
    last = sum(s * (k + n - 1) for s, k, n in zip(box_strides, starts, extents))
    size = int(np.prod(extents))
    return first, size if last - first + 1 == size else -1


def _contiguous_region(a: LazyArray) -> tuple[Signal, int, int] | None:
    """``(signal, offset, size)`` when ``a`` is elements ``offset .. offset + size - 1`` of a
    signal in C order (the signal itself, a slice along its first axes, one row of it)."""
    starts: list[int] = []
    extents: list[int] = []
    axes: list[int] = []  # the signal's axis of each of a's axes

    def walk(node: LazyArray) -> Signal | None:
        if isinstance(node, Base):
            starts[:], extents[:], axes[:] = [0] * node.ndim, list(node.shape), list(range(node.ndim))
            return node.signal
        if isinstance(node, (Slice, Take)):
            signal = walk(node.src)
            if signal is None:
                return None
            if isinstance(node, Slice):
                for axis, (start, n) in enumerate(zip(node.starts, node.shape)):
                    starts[axes[axis]] += start
                    extents[axes[axis]] = n
            else:
                starts[axes[node.axis]] += node.k
                extents[axes[node.axis]] = 1
                del axes[node.axis]
            return signal
        return None

    signal = walk(a)
    if signal is None or signal.ref.kind == REDUCTION_KIND:
        return None
    first, size = _run(signal.shape, starts, extents)
    return (signal, first, size) if size == a.size else None


def _expand_to(a: Any, ndim: int, first: int) -> Any:
    """``a`` with its axes at ``first..`` of ``ndim`` (the others new, of length 1)."""
    if not isinstance(a, LazyArray):
        return a.reshape((1,) * first + a.shape + (1,) * (ndim - first - a.ndim))
    for _ in range(first):
        a = NewAxis(a, 0)
    while a.ndim < ndim:
        a = NewAxis(a, a.ndim)
    return a


def _fill(value: Callable[[tuple], sp.Basic]) -> Callable[..., LazyArray]:
    def like(a: LazyArray, *args: Any, **kwargs: Any) -> LazyArray:
        if kwargs.get("shape") not in (None, a.shape) or kwargs.get("dtype") is not None:
            raise _error("np.*_like of a traced array with another shape or dtype", "keep its shape")
        return Fill(a.ctx, a.shape, value(args or tuple(v for k, v in kwargs.items() if k == "fill_value")))

    return like


def _where(condition: Any, x: Any, y: Any) -> LazyArray:
    return elementwise(lambda c, a, b: sp.Piecewise((numeric(a), boolean(c)), (numeric(b), True)), condition, x, y)


def _clip(a: Any, a_min: Any, a_max: Any, **kwargs: Any) -> Any:
    if kwargs:
        raise _error("np.clip of a traced array with out or other options", "assign the result instead")
    result = a
    if a_min is not None:
        result = elementwise(UFUNCS[np.maximum], result, a_min)
    if a_max is not None:
        result = elementwise(UFUNCS[np.minimum], result, a_max)
    return result


_FUNCTIONS: dict[Callable, Callable] = {
    np.concatenate: _concatenate,
    np.stack: _stack,
    np.hstack: _hstack,
    np.vstack: _vstack,
    np.roll: _roll,
    np.pad: _pad,
    np.diff: _diff,
    np.where: _where,
    np.clip: _clip,
    np.interp: np_interp,  # a constant table (interp.py)
    np.copy: lambda a, **kwargs: a,
    np.transpose: lambda a, axes=None: a.transpose(axes) if axes is not None else a.transpose(),
    np.swapaxes: lambda a, x, y: a.swapaxes(x, y),
    np.reshape: lambda a, shape=None, order="C", **kwargs: _reshape(a, kwargs.get("newshape", shape), order),
    np.ravel: lambda a, order="C": _reshape(a, (-1,), order),
    np.squeeze: lambda a, axis=None: a.squeeze(axis),
    np.expand_dims: lambda a, axis: NewAxis(a, _axis(axis, a.ndim + 1, "np.expand_dims")),
    np.broadcast_to: lambda a, shape, **kwargs: broadcast_to(a, tuple(shape)),
    np.zeros_like: _fill(lambda args: sp.Float(0.0)),
    np.ones_like: _fill(lambda args: sp.Float(1.0)),
    np.full_like: _fill(lambda args: numeric(to_expr(args[0]))),
    np.sum: _reduce("sum"),
    np.prod: _reduce("prod"),
    np.max: _reduce("max"),
    np.amax: _reduce("max"),
    np.min: _reduce("min"),
    np.amin: _reduce("min"),
    np.mean: _mean,
    np.dot: _dot,
    np.inner: _dot,
    np.vdot: _dot,
    np.matmul: _dot,
    np.einsum: _einsum,
    np.linalg.norm: _norm,
    np.outer: lambda a, b, out=None: elementwise(UFUNCS[np.multiply], _expand_to(_ravel_any(a), 2, 0), _expand_to(_ravel_any(b), 2, 1)),
    np.size: lambda a, axis=None: a.size if axis is None else a.shape[axis],
    np.shape: lambda a: a.shape,
    np.ndim: lambda a: a.ndim,
}


def _ravel_any(a: Any) -> Any:
    return a.ravel() if isinstance(a, LazyArray) else np.asarray(a, dtype=object).ravel()


# ------------------------------------------------------------------ written values


def finish(value: LazyArray) -> tuple[Segment, ...]:
    """The boxes an array is written with: numbers, equal neighbours merged,
    one-element boxes at their constant index; every read inside its array."""
    pieces = merge([(box, numeric(expr)) for box, expr in value.pieces()])
    segments = tuple(
        Segment(tuple(lo for lo, _ in box), tuple(hi for _, hi in box),
                value.ctx.at(expr, tuple(lo for lo, _ in box)) if box_size(box) == 1 else expr)
        for box, expr in pieces
    )  # fmt: skip
    for segment in segments:
        for symbol in segment.expr.free_symbols:
            offset = value.ctx.offsets.get(symbol)
            if offset is None:
                continue
            shape = value.ctx.signal(offset.ref).shape
            for (axis, k), extent in zip(offset.index, shape):
                lo, hi = (k, k) if axis < 0 else (segment.lo[axis] + k, segment.hi[axis] - 1 + k)
                if not (0 <= lo and hi < extent):
                    raise CodegenError(f"internal error: segment {segment} reads {offset} outside the array")
    return segments
