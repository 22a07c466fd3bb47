"""Symbolic stand-ins for time, states and inputs while a model is traced.

``Sym`` wraps one sympy expression; ``SymArray`` is an object ``ndarray`` whose
elements are ``Sym``.  Both take part in numpy's dispatch (``__array_ufunc__`` and
``__array_function__``), so the user's ``do_step`` runs unchanged: arithmetic,
comparisons, numpy ufuncs, indexing, slicing, unpacking, ``np.concatenate``,
``np.sum``, ``np.dot``/``@`` and ``np.where`` all build sympy expressions.  Whatever
cannot be traced raises a :class:`~dyngen.errors.TraceError` saying what to write
instead.
"""

from __future__ import annotations

import numbers
from contextvars import ContextVar
from typing import Any, Callable

import numpy as np
import sympy as sp
from sympy.codegen import cfunctions
from sympy.functions.elementary.piecewise import piecewise_fold
from sympy.logic.boolalg import ITE, Boolean, BooleanAtom

from .errors import TraceError, user_frame_location
from .expr_size import check_conditional, check_fold
from .extremes import maximum, minimum

# --------------------------------------------------------------------------- values


def to_expr(value: Any) -> sp.Basic:
    """The sympy form of a traced value (a ``Sym``, a number or a bool)."""
    if isinstance(value, Sym):
        return value.expr
    if isinstance(value, (bool, np.bool_)):
        return sp.true if value else sp.false
    if isinstance(value, (numbers.Integral, np.integer)):
        return sp.Integer(int(value))
    if isinstance(value, (numbers.Real, np.floating)):
        return sp.Float(float(value))  # 53 bits: the exact double
    if isinstance(value, sp.Basic):
        return value
    raise TraceError(
        f"a value of type {type(value).__name__} ({_short_repr(value)}) cannot take part "
        "in a traced expression",
        "only numbers, numeric numpy arrays, states, inputs and outputs can be combined",
        user_frame_location(),
    )


def _short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def numeric(expr: sp.Basic) -> sp.Expr:
    """A boolean used as a number is 1 or 0, as in numpy."""
    if isinstance(expr, BooleanAtom):
        return sp.Integer(1) if expr else sp.Integer(0)
    if _is_condition(expr):
        return sp.Piecewise((sp.Integer(1), unfolded(expr)), (sp.Integer(0), True))
    return expr


def boolean(expr: sp.Basic) -> sp.Basic:
    """A number used as a condition is true when non-zero, as in numpy."""
    if _is_condition(expr):
        return unfolded(expr)
    return unfolded(sp.Ne(expr, 0))


def unfolded(condition: sp.Basic) -> sp.Basic:
    """``condition`` with no Piecewise inside: what sympy makes of a Piecewise's
    condition, made quickly.

    A condition on a conditional value (``where(a > 0, a, b) > 1``) becomes a
    Piecewise of conditions (``piecewise_fold``), which sympy's ``ExprCondPair``
    then rewrites as nested ``ITE`` by a general method that grows steeply with the
    arms' size (8 s for one condition on a sum of two clipped ``where``s).  The
    folded arms are tried in order, so the nested ``ITE`` is built here directly.
    """
    if not isinstance(condition, sp.Basic) or not condition.has(sp.Piecewise):
        return condition
    check_fold(condition)
    folded = piecewise_fold(condition)
    if not isinstance(folded, sp.Piecewise):
        return folded
    result: sp.Basic = sp.false  # no arm holds (a fold of a Piecewise without a default)
    for arm, holds in reversed(folded.args):
        result = arm if holds == sp.true else ITE(holds, arm, result)
    return result


def _is_condition(expr: sp.Basic) -> bool:
    # sympy's Symbol is a Boolean too; a condition is a Boolean that is not an Expr.
    return isinstance(expr, Boolean) and not isinstance(expr, sp.Expr)


def as_sym(value: Any) -> Any:
    """Wrap an element of a traced array so it supports the traced operations."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    return value if isinstance(value, Sym) else Sym(to_expr(value))


def is_symbolic(value: Any) -> bool:
    """True for ``Sym``/``SymArray`` and arrays or lists that contain them."""
    if isinstance(value, (Sym, SymArray)) or _is_lazy(value):
        return True
    if isinstance(value, np.ndarray):
        return value.dtype == object and any(isinstance(v, Sym) for v in value.flat)
    if isinstance(value, (list, tuple)):
        return any(is_symbolic(v) for v in value)
    return False


def as_object_array(value: Any) -> np.ndarray:
    """A plain object ndarray of ``Sym`` elements (numbers wrapped)."""
    if isinstance(value, SymArray):
        array = value.view(np.ndarray)
    else:
        array = np.asarray(value, dtype=object) if not isinstance(value, np.ndarray) else value
        if array.dtype != object:
            array = array.astype(object)
    out = np.empty(array.shape, dtype=object)
    for index, element in np.ndenumerate(array):
        out[index] = as_sym(element)
    return out


def wrap_result(value: Any) -> Any:
    """Turn the result of a numpy call on object arrays back into traced values."""
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            return as_sym(value.item())
        return as_object_array(value).view(SymArray)
    return as_sym(value)


# ------------------------------------------------------------------ the element form's cost


class ElementFormTooLarge(TraceError):
    """The element form (a fallback from the array form) would build too many expressions."""


class ElementBudget:
    """How many scalar operations the element form may build while it stands in for the
    array form (``trace.trace``): past ``limit`` it stops with ``ElementFormTooLarge``,
    before the work that would take minutes (tracing, then the Jacobian and CSE of every
    element) is done."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def spend(self, n: int, what: str = "", ahead: bool = False) -> None:
        """Count ``n`` operations (``ahead``: only check that ``n`` more would fit, for an
        operation whose scalar steps are counted one by one as they run)."""
        if not ahead:
            self.used += n
        if self.used + (n if ahead else 0) > self.limit:
            raise ElementFormTooLarge(
                f"the element form would build more than {self.limit:,} scalar operations"
                + (f" ({what})" if what else ""),
                "",
                user_frame_location(),
            )


ELEMENT_BUDGET: ContextVar[ElementBudget | None] = ContextVar("dyngen_element_budget", default=None)


def _spend(n: int, what: str = "", ahead: bool = False) -> None:
    budget = ELEMENT_BUDGET.get()
    if budget is not None:
        budget.spend(n, what, ahead)


# Single elements of arrays that one traced function may read one at a time (``u[i]``
# in a Python loop) while the array form is on: each read becomes its own expression,
# Jacobian entry and line of compiled code, which numba compiles for seconds per
# hundred.  Measured without the limit (benchmarks/element_reads.py --limit 0, to the
# end of a first simulate, load 2-4): a stencil loop over 100 cells (400 reads) 4.4 s,
# 300 (1,200) 17 s, 1,000 (4,000) 109 s; a double loop over 20 phases (800 reads) 6 s,
# 30 (1,800) 11 s, 64 (8,192) 62 s.
# Past this many the trace stops at the read (in ~1 s) with what to write instead.
ELEMENT_READS_MAX = 1000


class TooManyElementReads(TraceError):
    """A traced function reads more than ``ELEMENT_READS_MAX`` single array elements one at a time."""


class ElementReads:
    """Counts the single elements of arrays one traced function reads one at a time
    (``SymArray``/``LazyArray`` indexed down to a scalar) and stops it past ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0

    def read(self, shape: tuple[int, ...]) -> None:
        """Count one read of an element of an array of ``shape``."""
        self.count += 1
        if self.count > self.limit:
            raise TooManyElementReads(
                f"the function reads more than {self.limit:,} single elements of arrays one at a time (here an "
                f"element of an array of shape {shape}): built element by element, such a model takes minutes "
                "to trace and compile",
                "whole-array operations: slices or np.roll for neighbours (u[:-2] - 2 * u[1:-1] + u[2:]), "
                "broadcasting and reductions for all-to-all coupling (np.sum(np.sin(theta[None, :] - "
                "theta[:, None]), axis=1)), a weight matrix with W @ x; dyngen traces those as whole arrays, in "
                "seconds at any size (Simulation(arrays=False) builds it element by element anyway)",
                user_frame_location(),
            )


ELEMENT_READS: ContextVar[ElementReads | None] = ContextVar("dyngen_element_reads", default=None)


def count_element_read(shape: tuple[int, ...]) -> None:
    """Count a read of one element of an array of ``shape`` (when a trace counts them)."""
    reads = ELEMENT_READS.get()
    if reads is not None:
        reads.read(shape)


DENSE_MIN = 8  # a scalar read by every element of an array counts as dense coupling from this many symbols


def _spend_dense(size: int, args: tuple) -> None:
    """Count the Jacobian entries of ``size`` elements that each read a scalar computed from
    many elements (a reduction: np.max(u), np.sum(u), u @ w): ``size`` times its symbols, a
    dense block that the element form derives entry by entry."""
    for arg in args:
        if isinstance(arg, Sym) or (isinstance(arg, np.ndarray) and arg.size == 1 and isinstance(arg.flat[0], Sym)):
            reads = len(to_expr(arg if isinstance(arg, Sym) else arg.flat[0]).free_symbols)
            if reads >= DENSE_MIN:
                _spend(size * reads, f"{size:,} elements each read a value computed from {reads:,} others "
                       f"(a reduction such as np.max, np.sum or a dot product): a dense Jacobian of "
                       f"{size * reads:,} entries, each derived on its own")  # fmt: skip


# ------------------------------------------------------------------ elementwise maths


def _is_lazy(value: Any) -> bool:
    """A large vector in array form (``arrays.LazyArray``)."""
    return getattr(type(value), "_dyngen_lazy", False)


def _elementwise(fn: Callable[..., sp.Basic], *args: Any) -> Any:
    if any(_is_lazy(a) for a in args):
        from .arrays import elementwise  # the array form of large vectors

        return elementwise(fn, *args)
    if not any(isinstance(a, (np.ndarray, list, tuple)) for a in args):
        _spend(1)
        return Sym(fn(*(to_expr(a) for a in args)))
    if any(isinstance(a, Sym) for a in args) and not any(isinstance(a, SymArray) for a in args):
        from .arrays import with_large_constant  # k * W: a large constant array in array form

        result = with_large_constant(fn, args)
        if result is not None:
            return result
    operands = [as_object_array(a) for a in args]
    arrays = np.broadcast_arrays(*operands)
    if len(operands) > 1 and arrays[0].size >= 2 * max(a.size for a in operands):  # an outer operation
        _promote_outer(operands)
    _spend(arrays[0].size, f"an elementwise operation on {arrays[0].size} elements")
    if ELEMENT_BUDGET.get() is not None:
        _spend_dense(arrays[0].size, args)
    out = np.empty(arrays[0].shape, dtype=object)
    for index in np.ndindex(out.shape):
        out[index] = Sym(fn(*(a[index].expr for a in arrays)))
    return out.view(SymArray) if out.ndim else out.item()


def _num(fn: Callable[..., sp.Basic]) -> Callable[..., sp.Basic]:
    return lambda *xs: fn(*(numeric(x) for x in xs))


def _bool(fn: Callable[..., sp.Basic]) -> Callable[..., sp.Basic]:
    return lambda *xs: fn(*(boolean(x) for x in xs))


def _bitwise(logical: Callable[..., sp.Basic]) -> Callable[..., sp.Basic]:
    def apply(*xs: sp.Basic) -> sp.Basic:
        if all(_is_condition(x) for x in xs):
            return logical(*xs)
        raise TraceError(
            "bitwise operators (&, |, ~, ^) on numbers cannot be traced",
            "use them only on conditions, e.g. where((x > 0) & (v < 1), a, b)",
            user_frame_location(),
        )

    return apply


def _floor_divide(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    return sp.floor(a / b)


class RoundHalfEven(sp.Function):
    """``np.rint`` and Python's ``round(x)``: the nearest integer, halves to even."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Basic:
        return sp.Integer(0)


def _trunc(a: sp.Expr) -> sp.Expr:
    return sp.Piecewise((sp.floor(a), a >= 0), (sp.ceiling(a), True))


def _copysign(a: sp.Expr, b: sp.Expr) -> sp.Expr:
    return sp.Piecewise((sp.Abs(a), b >= 0), (-sp.Abs(a), True))


UFUNCS: dict[np.ufunc, Callable[..., sp.Basic]] = {
    np.add: _num(lambda a, b: a + b),
    np.subtract: _num(lambda a, b: a - b),
    np.multiply: _num(lambda a, b: a * b),
    np.true_divide: _num(lambda a, b: a / b),
    np.floor_divide: _num(_floor_divide),
    np.remainder: _num(lambda a, b: a - b * sp.floor(a / b)),  # numpy's float remainder
    np.fmod: _num(lambda a, b: a - b * sp.sign(a / b) * sp.floor(sp.Abs(a / b))),
    np.power: _num(lambda a, b: a**b),
    np.float_power: _num(lambda a, b: a**b),
    np.negative: _num(lambda a: -a),
    np.positive: _num(lambda a: a),
    np.absolute: _num(sp.Abs),
    np.fabs: _num(sp.Abs),
    np.square: _num(lambda a: a**2),
    np.reciprocal: _num(lambda a: 1 / a),
    np.sqrt: _num(sp.sqrt),
    np.cbrt: _num(lambda a: sp.sign(a) * sp.Abs(a) ** sp.Rational(1, 3)),
    np.exp: _num(sp.exp),
    np.exp2: _num(lambda a: 2**a),
    np.expm1: _num(cfunctions.expm1),
    np.log: _num(sp.log),
    np.log2: _num(lambda a: sp.log(a, 2)),
    np.log10: _num(lambda a: sp.log(a, 10)),
    np.log1p: _num(cfunctions.log1p),
    np.sin: _num(sp.sin),
    np.cos: _num(sp.cos),
    np.tan: _num(sp.tan),
    np.arcsin: _num(sp.asin),
    np.arccos: _num(sp.acos),
    np.arctan: _num(sp.atan),
    np.arctan2: _num(sp.atan2),
    np.hypot: _num(cfunctions.hypot),
    np.sinh: _num(sp.sinh),
    np.cosh: _num(sp.cosh),
    np.tanh: _num(sp.tanh),
    np.arcsinh: _num(sp.asinh),
    np.arccosh: _num(sp.acosh),
    np.arctanh: _num(sp.atanh),
    np.deg2rad: _num(lambda a: a * sp.pi / 180),
    np.rad2deg: _num(lambda a: a * 180 / sp.pi),
    np.radians: _num(lambda a: a * sp.pi / 180),
    np.degrees: _num(lambda a: a * 180 / sp.pi),
    np.trunc: _num(_trunc),
    np.rint: _num(RoundHalfEven),
    np.copysign: _num(_copysign),
    np.minimum: _num(minimum),
    np.maximum: _num(maximum),
    np.fmin: _num(minimum),
    np.fmax: _num(maximum),
    np.sign: _num(sp.sign),
    np.floor: _num(sp.floor),
    np.ceil: _num(sp.ceiling),
    np.less: _num(sp.Lt),
    np.less_equal: _num(sp.Le),
    np.greater: _num(sp.Gt),
    np.greater_equal: _num(sp.Ge),
    np.equal: _num(sp.Eq),
    np.not_equal: _num(sp.Ne),
    np.logical_and: _bool(sp.And),
    np.logical_or: _bool(sp.Or),
    np.logical_xor: _bool(sp.Xor),
    np.logical_not: _bool(sp.Not),
    np.bitwise_and: _bitwise(sp.And),
    np.bitwise_or: _bitwise(sp.Or),
    np.bitwise_xor: _bitwise(sp.Xor),
    np.invert: _bitwise(sp.Not),
}


def _supported_ufunc_names() -> str:
    return ", ".join(sorted(f"np.{u.__name__}" for u in UFUNCS))


def _apply_ufunc(ufunc: np.ufunc, method: str, inputs: tuple, kwargs: dict) -> Any:
    out = kwargs.pop("out", None)
    if out is not None and len(out) == 1 and isinstance(out[0], np.ndarray) and out[0].dtype == object:
        # an in-place operator on a traced array (d += 1.0, d[1:] *= k): compute, then store
        result = _apply_ufunc(ufunc, method, inputs, kwargs)
        target = out[0]
        target[...] = as_object_array(result) if isinstance(result, (np.ndarray, Sym)) else result
        return target
    if out is not None:
        raise TraceError(
            f"np.{ufunc.__name__}(..., out=...) cannot be traced",
            "assign the result instead: z = np.%s(...)" % ufunc.__name__,
            user_frame_location(),
        )
    if method == "__call__" and ufunc is np.matmul:
        if ELEMENT_BUDGET.get() is not None:  # before a large constant becomes one Sym per element
            _spend(2 * _product_cost(*inputs), "a matrix product", ahead=True)
        return wrap_result(np.matmul(*(as_object_array(a) for a in inputs)))
    if method == "__call__" and ufunc in UFUNCS:
        return _elementwise(UFUNCS[ufunc], *inputs)
    if method == "outer" and ufunc in UFUNCS and not kwargs and len(inputs) == 2:  # np.subtract.outer(a, b)
        a, b = (as_object_array(x) for x in inputs)
        return _elementwise(UFUNCS[ufunc], a.reshape(a.shape + (1,) * b.ndim), b)
    if method == "reduce" and ufunc in _EXTREME_REDUCE:  # u.max(), np.maximum.reduce(u)
        defaults = {"dtype": None, "keepdims": False, "where": True}
        options = {k: v for k, v in kwargs.items() if k not in defaults or v is not defaults[k]}
        return _CUSTOM_FUNCTIONS[_EXTREME_REDUCE[ufunc]](*inputs, **{"axis": 0, **options})
    if method == "reduce" and ufunc in (np.add, np.multiply):
        plain = [as_object_array(a) for a in inputs]
        if kwargs.get("axis", 0) is None or plain[0].ndim == 1:  # u.sum(), np.add.reduce(u)
            _promote_reduction(plain[0])
        return wrap_result(getattr(ufunc, method)(*plain, **kwargs))
    raise TraceError(
        f"np.{ufunc.__name__}{'' if method == '__call__' else '.' + method} is not "
        "supported on symbolic values",
        f"use one of the supported functions: {_supported_ufunc_names()}",
        user_frame_location(),
    )


# ------------------------------------------------------------------ numpy functions


def where(condition: Any, x: Any, y: Any) -> Any:
    """``np.where`` that also works on traced values (emitted as a conditional).

    On plain numbers it is ``np.where`` (a scalar result is a float).
    """
    if is_symbolic(condition) or is_symbolic(x) or is_symbolic(y):
        return _elementwise(
            lambda c, a, b: check_conditional(sp.Piecewise((numeric(a), boolean(c)), (numeric(b), True))),
            condition,
            x,
            y,
        )
    result = np.where(condition, x, y)
    return result.item() if result.ndim == 0 else result


def _clip(a: Any, a_min: Any, a_max: Any, **_: Any) -> Any:
    result = a
    if a_min is not None:
        result = _elementwise(UFUNCS[np.maximum], result, a_min)
    if a_max is not None:
        result = _elementwise(UFUNCS[np.minimum], result, a_max)
    return result


def _norm(x: Any, ord: Any = None, axis: Any = None, keepdims: bool = False) -> Any:
    """``np.linalg.norm``: the 2-norm of vectors (along ``axis``) and the Frobenius norm,
    as ``sqrt(sum(x**2))`` (element form and array form alike)."""
    array = as_object_array(x) if isinstance(x, (list, tuple, np.ndarray, Sym)) else x  # (else a lazy array)
    vector = (axis is None and array.ndim == 1) or isinstance(axis, (int, np.integer))
    if not (ord is None or (ord == 2 and vector) or (ord == "fro" and not vector)):
        raise TraceError(
            f"np.linalg.norm with ord={ord!r} cannot be traced (only the 2-norm of vectors and the Frobenius norm)",
            "write the norm you need explicitly, e.g. np.max(np.abs(v), axis=1) for ord=np.inf",
            user_frame_location(),
        )
    return np.sqrt(np.sum(array * array, axis=axis, keepdims=keepdims))


def _extreme(fn: Callable[..., sp.Basic]) -> Callable[..., Any]:
    def reduce(a: Any, axis: Any = None, keepdims: bool = False, **kwargs: Any) -> Any:
        if kwargs or not (axis is None or isinstance(axis, (int, np.integer))):
            raise TraceError(
                "np.max/np.min with out, initial, where or several axes cannot be traced",
                "np.max(a) or np.max(a, axis=k); np.maximum/np.minimum elementwise",
                user_frame_location(),
            )
        array = as_object_array(a)
        if axis is None or array.ndim == 1:
            _promote_reduction(array)
        _spend(array.size, f"np.max/np.min over {array.size:,} elements")
        if axis is None:
            value = Sym(fn(*(numeric(e.expr) for e in array.flat)))
            return as_object_array([value]).reshape((1,) * array.ndim).view(SymArray) if keepdims else value
        moved = np.moveaxis(array, int(axis), -1)
        out = np.empty(moved.shape[:-1], dtype=object)
        for index in np.ndindex(*out.shape):
            out[index] = Sym(fn(*(numeric(e.expr) for e in moved[index])))
        if keepdims:
            out = np.expand_dims(out, int(axis) % array.ndim)
        return out.view(SymArray) if out.ndim else out[()]

    return reduce


def _promote_reduction(values: Any) -> None:
    from .arrays import promote_reduction  # (arrays.py imports this module)

    promote_reduction(values)


def _promote_outer(operands: list[np.ndarray]) -> None:
    from .arrays import promote_outer  # (arrays.py imports this module)

    promote_outer(operands)


def _whole_reduction(func: Callable, args: tuple, kwargs: dict) -> Any:
    """The values that ``func(*args, **kwargs)`` reduces over a whole vector, if it does
    (np.sum/np.prod/np.mean without an axis or of a vector, a dot product of two vectors)."""
    if func in (np.sum, np.prod, np.mean) and args:
        axis = kwargs.get("axis", args[1] if len(args) > 1 else None)
        return args[0] if axis is None or np.ndim(args[0]) == 1 else None
    if func in (np.dot, np.vdot, np.inner) and len(args) == 2 and np.ndim(args[0]) == np.ndim(args[1]) == 1:
        return [args[0], args[1]]
    return None


def _interp(*args: Any, **kwargs: Any) -> Any:
    from .interp import np_interp  # lookup tables (interp.py imports this module)

    return np_interp(*args, **kwargs)


_CUSTOM_FUNCTIONS: dict[Callable, Callable] = {
    np.interp: _interp,
    np.where: where,
    np.clip: _clip,
    np.linalg.norm: _norm,
    np.max: _extreme(maximum),
    np.min: _extreme(minimum),
    np.amax: _extreme(maximum),
    np.amin: _extreme(minimum),
}

_EXTREME_REDUCE = {np.maximum: np.max, np.fmax: np.max, np.minimum: np.min, np.fmin: np.min}

# These work on object arrays with the elements' own operators (only + - * /),
# so numpy's implementation is used as it is.
_STRUCTURAL_FUNCTIONS = {
    np.concatenate, np.stack, np.hstack, np.vstack, np.column_stack, np.reshape,
    np.ravel, np.transpose, np.flip, np.fliplr, np.flipud, np.roll, np.diff,
    np.sum, np.prod, np.mean, np.dot, np.vdot, np.inner, np.outer, np.cross,
    np.cumsum, np.cumprod, np.trace, np.copy, np.atleast_1d, np.atleast_2d,
    np.squeeze, np.expand_dims, np.append, np.repeat, np.tile, np.swapaxes,
    np.moveaxis, np.broadcast_to, np.zeros_like, np.ones_like, np.full_like,
    np.array_split, np.split, np.take, np.matmul, np.kron, np.triu, np.tril,
    np.diag, np.size, np.shape, np.ndim, np.pad, np.einsum,
}  # fmt: skip


def _product_cost(a: Any, b: Any) -> int:
    """The multiplications of ``a @ b`` (``np.dot``): one per element of ``a`` and column of ``b``."""
    a_shape, b_shape = _shape(a), _shape(b)
    a_size, b_size = int(np.prod(a_shape)), int(np.prod(b_shape))
    if not a_shape or not b_shape:
        return max(a_size, b_size)
    return a_size * (b_shape[-1] if len(b_shape) >= 2 else 1)


def _shape(value: Any) -> tuple[int, ...]:
    return value.shape if isinstance(value, np.ndarray) else np.asarray(value, dtype=object).shape


def _einsum_cost(args: tuple) -> int:
    subscripts, *operands = args
    if not isinstance(subscripts, str) or "." in subscripts:
        return 0
    extents: dict[str, int] = {}
    for term, operand in zip(subscripts.split("->")[0].split(","), operands):
        extents.update(zip(term.strip(), _shape(operand)))
    return int(np.prod(list(extents.values()))) if extents else 0


_PRODUCTS: dict[Callable, Callable[[tuple], int]] = {
    np.dot: lambda args: _product_cost(args[0], args[1]),
    np.matmul: lambda args: _product_cost(args[0], args[1]),
    np.inner: lambda args: _product_cost(args[0], np.asarray(args[1], dtype=object).T),  # (small: a copy is cheap)
    np.outer: lambda args: int(np.prod(_shape(args[0])) * np.prod(_shape(args[1]))),
    np.kron: lambda args: int(np.prod(_shape(args[0])) * np.prod(_shape(args[1]))),
    np.einsum: _einsum_cost,
}


def _plain(value: Any, nested: bool = False) -> Any:
    if isinstance(value, SymArray) or (isinstance(value, Sym) and not nested):
        return as_object_array(value)
    if isinstance(value, (list, tuple)) and any(is_symbolic(v) for v in value):
        return type(value)(_plain(v, nested=True) for v in value)
    return value


def _apply_function(func: Callable, args: tuple, kwargs: dict) -> Any:
    if any(_is_lazy(a) or isinstance(a, (list, tuple)) and any(_is_lazy(b) for b in a) for a in args):
        return NotImplemented  # numpy then asks the large vector (arrays.LazyArray)
    if func in _CUSTOM_FUNCTIONS:
        return _CUSTOM_FUNCTIONS[func](*args, **kwargs)
    if func in _PRODUCTS and len(args) >= 2 and ELEMENT_BUDGET.get() is not None:
        _spend(2 * _PRODUCTS[func](args), f"np.{func.__name__}", ahead=True)
    reduced = _whole_reduction(func, args, kwargs)
    if reduced is not None:
        values = [as_object_array(v) for v in reduced] if isinstance(reduced, list) else as_object_array(reduced)
        _promote_reduction(values)
        _spend(int(np.size(values)), f"np.{func.__name__} over {int(np.size(values)):,} elements")
    if func in _STRUCTURAL_FUNCTIONS:
        result = func(*(_plain(a) for a in args), **{k: _plain(v) for k, v in kwargs.items()})
        if func in (np.size, np.shape, np.ndim):  # plain ints (a shape is not traced values)
            return result
        if isinstance(result, (list, tuple)):
            return type(result)(wrap_result(r) for r in result)
        return wrap_result(result)
    name = getattr(func, "__name__", repr(func))
    if name in _ORDERING:
        raise TraceError(
            f"np.{name} of traced values cannot be compiled: it orders them (or picks by rank), and the order "
            "changes with the values while the generated code is fixed",
            _ORDERING[name],
            user_frame_location(),
        )
    raise TraceError(
        f"np.{name} is not supported on symbolic values",
        "use arithmetic, numpy ufuncs (np.sin, np.exp, ...), np.where, np.sum, np.dot/@, "
        "np.concatenate, slicing and constant indexing",
        user_frame_location(),
    )


_EXTREMES_INSTEAD = "np.max/np.min (or np.maximum/np.minimum of two) where the largest or smallest value is what is needed"
_ORDERING = {  # numpy functions that order traced values: what to write instead
    "sort": f"{_EXTREMES_INSTEAD}; a model that needs sorted values (an order statistic) is not an ODE dyngen compiles",
    "argsort": f"{_EXTREMES_INSTEAD}; indices that depend on the state cannot index the state in generated code",
    "argmax": f"{_EXTREMES_INSTEAD}, or np.where(u == np.max(u), a, b) to select at the maximum",
    "argmin": f"{_EXTREMES_INSTEAD}, or np.where(u == np.min(u), a, b) to select at the minimum",
    "median": f"{_EXTREMES_INSTEAD}, or np.mean if a central value will do",
    "percentile": _EXTREMES_INSTEAD,
    "quantile": _EXTREMES_INSTEAD,
    "partition": _EXTREMES_INSTEAD,
    "unique": "keep the values as they are (np.unique's length depends on the values)",
}


# ----------------------------------------------------------------------- the proxies


def _warn_text() -> None:
    from .calls import warn_build_time

    warn_build_time(
        "a traced value is turned into text (str(), an f-string, format or print)",
        "the text holds symbols, not numbers; record values with a Recorder or an observer instead",
    )


def _not_a_number(what: str) -> TraceError:
    return TraceError(
        f"{what} of a symbolic value, in code dyngen does not trace (a lambda, a library function, "
        "or a float array being filled): the value is only known when the model runs",
        "math.*, float(), int() and np.zeros(...) filled element by element work in do_step, the "
        "connections and the model's own helper functions; elsewhere use numpy functions (np.sin, ...)",
        user_frame_location(),
    )


class _Traced:
    """numpy dispatch shared by ``Sym`` and ``SymArray``."""

    __array_priority__ = 1000

    def __array_ufunc__(self, ufunc: np.ufunc, method: str, *inputs: Any, **kwargs: Any) -> Any:
        return _apply_ufunc(ufunc, method, inputs, kwargs)

    def __array_function__(self, func: Callable, types: tuple, args: tuple, kwargs: dict) -> Any:
        return _apply_function(func, args, kwargs)


# Python's binary operators as the ufuncs they stand for: (method name, ufunc, reflected)
OPERATORS: tuple[tuple[str, np.ufunc, bool], ...] = (
    ("__add__", np.add, False),
    ("__radd__", np.add, True),
    ("__sub__", np.subtract, False),
    ("__rsub__", np.subtract, True),
    ("__mul__", np.multiply, False),
    ("__rmul__", np.multiply, True),
    ("__truediv__", np.true_divide, False),
    ("__rtruediv__", np.true_divide, True),
    ("__floordiv__", np.floor_divide, False),
    ("__rfloordiv__", np.floor_divide, True),
    ("__mod__", np.remainder, False),
    ("__rmod__", np.remainder, True),
    ("__pow__", np.power, False),
    ("__rpow__", np.power, True),
    ("__lt__", np.less, False),
    ("__le__", np.less_equal, False),
    ("__gt__", np.greater, False),
    ("__ge__", np.greater_equal, False),
    ("__eq__", np.equal, False),
    ("__ne__", np.not_equal, False),
    ("__and__", np.bitwise_and, False),
    ("__rand__", np.bitwise_and, True),
    ("__or__", np.bitwise_or, False),
    ("__ror__", np.bitwise_or, True),
    ("__xor__", np.bitwise_xor, False),
    ("__rxor__", np.bitwise_xor, True),
)


def install_operators(cls: type, method: Callable[[np.ufunc, bool], Callable[[Any, Any], Any]]) -> None:
    """Give ``cls`` every operator of ``OPERATORS``, made by ``method(ufunc, reflected)``."""
    for name, ufunc, reflected in OPERATORS:
        setattr(cls, name, method(ufunc, reflected))


def _binary(ufunc: np.ufunc, reflected: bool = False) -> Callable[[Any, Any], Any]:
    fn = UFUNCS[ufunc]
    if reflected:
        return lambda self, other: _dispatch_binary(fn, other, self)
    return lambda self, other: _dispatch_binary(fn, self, other)


def _dispatch_binary(fn: Callable, a: Any, b: Any) -> Any:
    return _elementwise(fn, a, b)


class Sym(_Traced):
    """A traced scalar: one sympy expression."""

    __slots__ = ("expr",)

    def __init__(self, expr: sp.Basic):
        self.expr = expr

    def __repr__(self) -> str:
        return f"Sym({self.expr})"

    __hash__ = object.__hash__  # the binary operators: install_operators below

    def __neg__(self) -> "Sym":
        return _elementwise(UFUNCS[np.negative], self)

    def __pos__(self) -> "Sym":
        return self

    def __abs__(self) -> "Sym":
        return _elementwise(UFUNCS[np.absolute], self)

    def __invert__(self) -> "Sym":
        return _elementwise(UFUNCS[np.invert], self)

    def __bool__(self) -> bool:
        from .branches import decide  # Python control flow: both outcomes are traced

        outcome = decide(boolean(self.expr))
        if outcome is None:
            raise TraceError(
                "Python `if`, `and`, `or`, `not`, `min()` or `max()` on a symbolic value outside "
                "a traced function: its truth is only known when the model runs",
                "dyngen.where(condition, value_if_true, value_if_false) (or np.where)",
                user_frame_location(),
            )
        return outcome

    def __str__(self) -> str:
        _warn_text()
        return f"Sym({self.expr})"

    def __format__(self, spec: str) -> str:
        _warn_text()
        return format(str(self.expr), spec)

    def __float__(self) -> float:
        raise _not_a_number("float() or math.*")

    def __int__(self) -> int:
        raise _not_a_number("int()")

    def __index__(self) -> int:
        raise TraceError(
            "indexing or a range with a symbolic value",
            "index vectors with constants only (x[0], x[1:3]); use where(...) to select",
            user_frame_location(),
        )

    def __complex__(self) -> complex:
        raise _not_a_number("complex()")

    def __round__(self, ndigits: Any = None) -> Any:
        if ndigits is None:
            return Sym(RoundHalfEven(numeric(self.expr)))
        scale = sp.Integer(10) ** int(ndigits)
        return Sym(RoundHalfEven(numeric(self.expr) * scale) / scale)

    # numpy calls these methods on object arrays that are not SymArray
    def conjugate(self) -> "Sym":
        return self

    @property
    def real(self) -> "Sym":
        return self

    def item(self) -> "Sym":
        return self


def _install_object_loop_methods() -> None:
    # A plain np.array([sym, sym]) is an object array: numpy then calls e.g. x.sin().
    for ufunc, fn in UFUNCS.items():
        if ufunc.nin == 1 and not hasattr(Sym, ufunc.__name__):
            setattr(Sym, ufunc.__name__, lambda self, _fn=fn: _elementwise(_fn, self))


_install_object_loop_methods()


install_operators(Sym, _binary)


class SymArray(_Traced, np.ndarray):
    """A traced vector/array: an object ndarray of ``Sym``."""

    def __bool__(self) -> bool:
        if self.size == 1:
            return bool(self.view(np.ndarray).flat[0])
        raise TraceError(
            "Python `if` on a symbolic array",
            "dyngen.where(condition, a, b) works elementwise on arrays",
            user_frame_location(),
        )

    def __float__(self) -> float:
        raise _not_a_number("float() or math.*")

    def __index__(self) -> int:
        raise TraceError(
            "indexing with a symbolic array",
            "index vectors with constants only (x[0], x[1:3])",
            user_frame_location(),
        )

    def __repr__(self) -> str:
        return f"SymArray({[str(e.expr) for e in self.view(np.ndarray).flat]}, shape={self.shape})"

    def __getitem__(self, index: Any) -> Any:
        result = np.ndarray.__getitem__(self, index)
        if isinstance(result, np.ndarray):
            return result
        count_element_read(self.shape)
        return as_sym(result)


def symbols_like(names: list[str], shape: tuple[int, ...]) -> Any:
    """A traced value of ``shape`` whose elements are new real symbols ``names``."""
    elements = [Sym(sp.Symbol(name, real=True)) for name in names]
    if shape == ():
        return elements[0]
    array = np.empty(len(elements), dtype=object)
    for i, element in enumerate(elements):
        array[i] = element
    return array.reshape(shape).view(SymArray)


def flatten_traced(value: Any) -> tuple[tuple[int, ...], tuple[sp.Basic, ...]]:
    """Shape and flattened (C order) sympy elements of a traced or numeric value."""
    if isinstance(value, (np.ndarray, list, tuple)):
        array = as_object_array(value)
        return array.shape, tuple(numeric(e.expr) for e in array.flat)
    return (), (numeric(to_expr(value)),)


def select(condition: sp.Basic, if_true: Any, if_false: Any) -> Any:
    """``where(condition, if_true, if_false)`` for two traced values of the same shape (the
    sides of a Python decision, ``branches.py``); equal elements stay as they are.
    Raises ValueError when the shapes differ."""
    if if_true is if_false:
        return if_true
    if _is_lazy(if_true) or _is_lazy(if_false):
        from .arrays import elementwise

        return elementwise(lambda c, a, b: _pick(c, a, b), Sym(condition), if_true, if_false)
    if isinstance(if_true, Sym) and isinstance(if_false, Sym):
        return Sym(_pick(condition, if_true.expr, if_false.expr))
    a, b = as_object_array(if_true), as_object_array(if_false)
    if a.shape != b.shape:
        raise ValueError("different shapes")
    out = np.empty(a.shape, dtype=object)
    for index in np.ndindex(a.shape):
        out[index] = Sym(_pick(condition, a[index].expr, b[index].expr))
    return out.view(SymArray) if isinstance(if_true, SymArray) or isinstance(if_false, SymArray) else out


def _pick(condition: sp.Basic, a: sp.Basic, b: sp.Basic) -> sp.Basic:
    if a == b:
        return a
    return check_conditional(sp.Piecewise((numeric(a), unfolded(condition)), (numeric(b), True)))
