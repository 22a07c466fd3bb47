"""Lazy array expressions for tracing vector states as whole arrays.

While a component's ``do_step`` is traced, each vector state is a ``Base`` node and
each scalar parameter a ``Scalar``.  numpy operations on them build a small DAG:

    Base(name, n)          a state vector (leaf)
    Slice(src, start, n)   src[start:start+n], constant bounds, step 1
    Concat(parts)          np.concatenate of arrays and length-1 scalar parts
    Map(op, args)          an elementwise op (arithmetic or ufunc); args are arrays
                           of one length n, or scalars (sympy expressions)
    Scalar(expr)           a scalar: parameter, time, constant-index read u[k],
                           a reduction np.sum(x) (a symbol defined in Trace.sums)

Nothing is ever expanded per element here; ``segments.py`` lowers a node to a few
(start, stop, sympy expression of the loop index) pieces.  Anything the lowering
cannot express (fancy indexing, strided slices, a Python ``if`` on an array, ...)
raises ``TraceError`` saying what to write instead.
"""

from __future__ import annotations

import numbers
from types import SimpleNamespace

import numpy as np
import sympy as sp


class TraceError(Exception):
    pass


# ----------------------------------------------------------------- symbols
# Every symbol the tracer makes is registered in META with what it stands for.
META: dict[sp.Symbol, tuple] = {}


def _symbol(name: str, meta: tuple) -> sp.Symbol:
    s = sp.Symbol(name, real=True)
    META[s] = meta
    return s


def rel(base: str, k: int) -> sp.Symbol:
    """base[i + k], i the loop index: u_m1, u_p0, u_p1, ..."""
    return _symbol(f"{base}_{'m' if k < 0 else 'p'}{abs(k)}", ("rel", base, k))


def absolute(base: str, m: int) -> sp.Symbol:
    """base[m], a constant element: u_at0."""
    return _symbol(f"{base}_at{m}", ("abs", base, m))


def param(name: str) -> sp.Symbol:
    return _symbol(name, ("param", name))


TIME = _symbol("t", ("time",))

# ----------------------------------------------------------------- operations
# numpy ufunc name -> (arity, sympy builder).  Python operators use the same table.
OPS = {
    "add": (2, lambda a, b: a + b),
    "subtract": (2, lambda a, b: a - b),
    "multiply": (2, lambda a, b: a * b),
    "divide": (2, lambda a, b: a / b),
    "true_divide": (2, lambda a, b: a / b),
    "power": (2, lambda a, b: a**b),
    "negative": (1, lambda a: -a),
    "positive": (1, lambda a: a),
    "square": (1, lambda a: a**2),
    "absolute": (1, sp.Abs),
    "sqrt": (1, sp.sqrt),
    "exp": (1, sp.exp),
    "log": (1, sp.log),
    "sin": (1, sp.sin),
    "cos": (1, sp.cos),
    "tan": (1, sp.tan),
    "sinh": (1, sp.sinh),
    "cosh": (1, sp.cosh),
    "tanh": (1, sp.tanh),
    "arctan": (1, sp.atan),
    "arcsin": (1, sp.asin),
    "arccos": (1, sp.acos),
}
SMALL_CONSTANT = 64  # numeric arrays up to this length may be concatenated (element-wise)


class Trace:
    """What one trace collects besides the ders: the reductions, in creation order."""

    current: "Trace | None" = None

    def __init__(self) -> None:
        self.sums: list[tuple[sp.Symbol, "ArrayExpr"]] = []

    def add_sum(self, x: "ArrayExpr") -> sp.Symbol:
        s = _symbol(f"sum{len(self.sums)}", ("sum", len(self.sums)))
        self.sums.append((s, x))
        return s


def _operand(x):
    """A Lazy node stays; numbers become sympy numbers; anything else is refused."""
    if isinstance(x, Lazy):
        return x
    if isinstance(x, (bool, np.bool_)):
        raise TraceError("booleans cannot take part in a traced array expression")
    if isinstance(x, (numbers.Integral, np.integer)):
        return sp.Integer(int(x))
    if isinstance(x, (numbers.Real, np.floating)):
        return sp.Float(float(x))
    if isinstance(x, np.ndarray) and x.ndim == 0:
        return _operand(x.item())
    if isinstance(x, (np.ndarray, list, tuple)):
        raise TraceError(
            f"a numeric {type(x).__name__} of length {len(x)} cannot be combined elementwise "
            "with a traced array in this prototype (constant arrays would need a table in the "
            "generated module); use scalars, or np.concatenate small constants into the result"
        )
    raise TraceError(f"a {type(x).__name__} cannot take part in a traced array expression")


def apply(op: str, *args):
    """Elementwise op on Lazy nodes and numbers: a Scalar, or a Map over one length."""
    if op not in OPS:
        raise TraceError(
            f"np.{op} is not supported by the array tracer; supported: {', '.join(sorted(OPS))}"
        )
    arity, fn = OPS[op]
    args = [_operand(a) for a in args]
    lengths = {a.n for a in args if isinstance(a, ArrayExpr)}
    if not lengths:
        return Scalar(fn(*(a.expr if isinstance(a, Scalar) else a for a in args)))
    if len(lengths - {1}) > 1:
        raise TraceError(
            f"np.{op} of arrays of lengths {sorted(lengths)}: elementwise operations need "
            "equal lengths (only scalars and length-1 arrays broadcast)"
        )
    n = max(lengths)
    if n > 1:  # numpy broadcasting of a length-1 array: its only element
        args = [a[0] if isinstance(a, ArrayExpr) and a.n == 1 else a for a in args]
    args = [a.expr if isinstance(a, Scalar) else a for a in args]
    return Map(op, fn, tuple(args), n)


# ----------------------------------------------------------------- nodes
class Lazy:
    """Operators and numpy dispatch shared by Scalar and ArrayExpr."""

    __array_priority__ = 1000

    def __add__(self, o): return apply("add", self, o)
    def __radd__(self, o): return apply("add", o, self)
    def __sub__(self, o): return apply("subtract", self, o)
    def __rsub__(self, o): return apply("subtract", o, self)
    def __mul__(self, o): return apply("multiply", self, o)
    def __rmul__(self, o): return apply("multiply", o, self)
    def __truediv__(self, o): return apply("true_divide", self, o)
    def __rtruediv__(self, o): return apply("true_divide", o, self)
    def __pow__(self, o): return apply("power", self, o)
    def __rpow__(self, o): return apply("power", o, self)
    def __neg__(self): return apply("negative", self)
    def __pos__(self): return self
    def __abs__(self): return apply("absolute", self)

    def _compare(self, other):
        raise TraceError(
            "comparisons of traced values are not supported by the array tracer prototype "
            "(np.where/np.maximum would lower to a Piecewise per segment)"
        )

    __lt__ = __le__ = __gt__ = __ge__ = _compare
    __eq__ = __ne__ = _compare  # type: ignore[assignment]
    __hash__ = object.__hash__

    def __bool__(self):
        raise TraceError(
            "a Python `if`/`and`/`or` on a traced value: the branch would be fixed at trace "
            "time; compute both branches and combine them arithmetically"
        )

    def __array__(self, *args, **kwargs):
        raise TraceError(
            "a traced value was converted to a numpy array (np.asarray, np.array, a list of "
            "traced scalars, ...); build arrays with np.concatenate instead"
        )

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs:
            raise TraceError(
                f"np.{ufunc.__name__}.{method} with {sorted(kwargs)} is not supported; "
                "call the ufunc plainly, without out=/where=/reduce"
            )
        return apply(ufunc.__name__, *inputs)

    def __array_function__(self, func, types, args, kwargs):
        handler = FUNCTIONS.get(func)
        if handler is None:
            raise TraceError(
                f"np.{func.__name__} is not supported by the array tracer; supported: "
                f"{', '.join('np.' + f.__name__ for f in FUNCTIONS)}"
            )
        return handler(*args, **kwargs)


class Scalar(Lazy):
    def __init__(self, expr: sp.Expr) -> None:
        self.expr = sp.sympify(expr)

    def __repr__(self) -> str:
        return f"Scalar({self.expr})"


class ArrayExpr(Lazy):
    n: int

    @property
    def shape(self) -> tuple[int]:
        return (self.n,)

    ndim = 1
    size = property(lambda self: self.n)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        raise TraceError(
            "iterating over a traced array (a Python for loop or unpacking) would trace it "
            "element by element; use slices and elementwise operations"
        )

    def __setitem__(self, key, value):
        raise TraceError(
            "item assignment to a traced array is not supported; build the array with "
            "np.concatenate of slices and boundary values"
        )

    def __getitem__(self, key):
        if isinstance(key, tuple) and len(key) == 1:
            key = key[0]
        if isinstance(key, (numbers.Integral, np.integer)) and not isinstance(key, (bool, np.bool_)):
            k = int(key) + (self.n if key < 0 else 0)
            if not 0 <= k < self.n:
                raise TraceError(f"index {int(key)} is out of bounds for a traced array of length {self.n}")
            from segments import element  # the lowering knows every element's expression

            return Scalar(element(self, k))
        if isinstance(key, slice):
            for b in (key.start, key.stop, key.step):
                if b is not None and not isinstance(b, (numbers.Integral, np.integer)):
                    raise TraceError(f"slice bounds must be constant integers, not {b!r}")
            start, stop, step = key.indices(self.n)
            if step != 1:
                raise TraceError(
                    f"the strided slice [{key.start}:{key.stop}:{key.step}] is not supported by "
                    "the array tracer prototype (only step 1)"
                )
            length = max(stop - start, 0)
            if start == 0 and length == self.n:
                return self
            if isinstance(self, Slice):  # a slice of a slice is one slice
                return Slice(self.src, self.start + start, length)
            return Slice(self, start, length)
        raise TraceError(
            f"indexing a traced array with {type(key).__name__} ({key!r}) is not supported: "
            "only constant integers and constant basic slices (fancy/boolean indexing would "
            "make the lowering data-dependent)"
        )


class Base(ArrayExpr):
    def __init__(self, name: str, n: int) -> None:
        self.name, self.n = name, n

    def __repr__(self) -> str:
        return f"{self.name}[{self.n}]"


class Slice(ArrayExpr):
    def __init__(self, src: ArrayExpr, start: int, n: int) -> None:
        self.src, self.start, self.n = src, start, n

    def __repr__(self) -> str:
        return f"{self.src!r}[{self.start}:{self.start + self.n}]"


class Concat(ArrayExpr):
    def __init__(self, parts: tuple) -> None:  # parts: ArrayExpr or Scalar (length 1)
        self.parts = parts
        self.n = sum(p.n if isinstance(p, ArrayExpr) else 1 for p in parts)

    def __repr__(self) -> str:
        return f"concat({', '.join(map(repr, self.parts))})"


class Map(ArrayExpr):
    def __init__(self, op: str, fn, args: tuple, n: int) -> None:
        self.op, self.fn, self.args, self.n = op, fn, args, n

    def __repr__(self) -> str:
        return f"{self.op}({', '.join(map(repr, self.args))})"


# ----------------------------------------------------------------- numpy functions
def _concatenate(arrays, axis=0, out=None, **kwargs):
    if axis != 0 or out is not None or kwargs:
        raise TraceError("np.concatenate of traced 1-D arrays supports only axis=0, no out=")
    parts = []
    for item in arrays:
        if isinstance(item, ArrayExpr):
            parts.append(item)
        elif isinstance(item, (list, tuple)) or isinstance(item, np.ndarray) and item.ndim == 1:
            if len(item) > SMALL_CONSTANT:
                raise TraceError(f"np.concatenate: constant part of length {len(item)} > {SMALL_CONSTANT}")
            for x in item:
                x = _operand(x)
                if isinstance(x, ArrayExpr):
                    raise TraceError("np.concatenate: a list part must hold scalars, not arrays")
                parts.append(x if isinstance(x, Scalar) else Scalar(x))
        elif isinstance(item, Scalar) or np.ndim(item) == 0:
            raise TraceError("np.concatenate: zero-dimensional values cannot be concatenated; wrap them in a list: [x]")
        else:
            raise TraceError(f"np.concatenate: cannot concatenate a {type(item).__name__}")
    return Concat(tuple(parts))


def _sum(a, axis=None, dtype=None, out=None, **kwargs):
    if axis not in (None, 0) or out is not None or dtype is not None or kwargs:
        raise TraceError("np.sum of a traced array supports only the whole-array sum")
    if isinstance(a, Scalar):
        return a
    if Trace.current is None:
        raise TraceError("np.sum outside a trace")
    return Scalar(Trace.current.add_sum(a))


def _mean(a, axis=None, **kwargs):
    return _sum(a, axis, **kwargs) / (a.n if isinstance(a, ArrayExpr) else 1)


FUNCTIONS = {np.concatenate: _concatenate, np.sum: _sum, np.mean: _mean}


# ----------------------------------------------------------------- tracing a component
class Traced(SimpleNamespace):
    """states: [(name, n)], params: [name], ders: {state: ArrayExpr | Scalar}, sums."""


def trace(component) -> Traced:
    """Call ``component.do_step`` once with lazy stand-ins; restore the component after."""
    states = dict(vars(component.states))
    params = dict(vars(component.params))
    ctx = Trace()
    Trace.current = ctx
    try:
        component.states = SimpleNamespace(**{k: Base(k, len(np.atleast_1d(v))) for k, v in states.items()})
        component.params = SimpleNamespace(**{k: Scalar(param(k)) for k in params})
        component.ders = SimpleNamespace()
        component.do_step(Scalar(TIME))
        ders = dict(vars(component.ders))
    finally:
        Trace.current = None
        component.states, component.params = SimpleNamespace(**states), SimpleNamespace(**params)
    missing = set(states) - set(ders)
    if missing or set(ders) - set(states):
        raise TraceError(f"ders must match states; missing {sorted(missing)}, extra {sorted(set(ders) - set(states))}")
    return Traced(
        states=[(k, len(np.atleast_1d(v))) for k, v in states.items()],
        params=list(params),
        ders=ders,
        sums=ctx.sums,
    )
