"""Lookup tables: ``np.interp(x, xp, fp, left, right, period)`` on traced ``x``.

The tables ``xp`` and ``fp`` must be constants when the model is traced (numpy
arrays or lists held as attributes, globals or closure values).  A call becomes
``Interp(x, table)``: ``table`` is an :class:`InterpTable`, a sympy atom that
holds the (checked, float64) data and compares by it; its derivative is
``InterpSlope(x, table)``, the slope of the segment ``x`` lies in.  The printer
prints both as calls to small ``@njit`` helpers that the module template emits,
with the tables as module-level arrays (never unrolled into a Piecewise).

The semantics are numpy's (``numpy/_core/src/multiarray/compiled_base.c``): the
segment of ``x`` is the last ``j`` with ``xp[j] <= x`` (so at a breakpoint, and
at repeated ``xp``, the rightmost equal point is used), ``left``/``right`` outside
the table, NaN stays NaN, and with a ``period`` the table is sorted and extended
by one point on each side exactly as ``np.interp`` does it.  The slope is the
derivative from the right: 0 outside the table and at ``x == xp[-1]``.
"""

from __future__ import annotations

import hashlib
import numbers
import os
from typing import Any

import numpy as np
import sympy as sp

from .errors import SourceLocation, TraceError, user_frame_location
from .symbolic import _elementwise, is_symbolic, numeric, to_expr

HINT_CONSTANT = (
    "np.interp's tables (xp, fp) and left, right, period must be numbers known when the model is "
    "built: hold the table as an attribute (self.xp = np.array([...])), a module global or a closure "
    "value; scale the result instead of the table (k * np.interp(x, xp, fp)), and write a traced "
    "left/right as np.where(x < xp[0], left, np.interp(x, xp, fp))"
)


class InterpTable(sp.AtomicExpr):
    """The constant data of one ``np.interp`` call, as a sympy atom (compared by content).

    ``xp``/``fp`` are float64 tuples (with a period: already reduced, sorted and
    extended as numpy does); ``period`` is 0.0 without one.  ``location`` is the
    model line of the call (for the generated module's comment).  ``data_key``
    names the arrays alone, ``key`` also ``left``, ``right`` and ``period``.
    """

    is_number = False

    def __new__(
        cls,
        xp: tuple[float, ...],
        fp: tuple[float, ...],
        left: float,
        right: float,
        period: float,
        location: SourceLocation | None,
    ) -> "InterpTable":
        obj = super().__new__(cls)
        obj.xp, obj.fp, obj.left, obj.right, obj.period, obj.location = xp, fp, left, right, period, location
        size = len(xp).to_bytes(8, "little")
        obj.data_key = hashlib.sha256(size + np.array((*xp, *fp), dtype="<f8").tobytes()).hexdigest()
        options = np.array((left, right, period), dtype="<f8").tobytes()
        obj.key = hashlib.sha256(obj.data_key.encode("ascii") + options).hexdigest()
        return obj

    def _hashable_content(self) -> tuple:
        return (self.key, self.location)

    def structure(self) -> str:
        """An exact text of the table's data and call line (for the model's digest)."""
        where = "?" if self.location is None else f"{os.path.basename(self.location.file)}:{self.location.line}"
        return f"InterpTable({self.key},{where})"

    def evaluate(self, x: float) -> float:
        """``np.interp`` of one number, by numpy itself."""
        if self.period:
            x = np.remainder(x, self.period)
        return float(np.interp(x, np.array(self.xp), np.array(self.fp), self.left, self.right))

    def slope(self, x: float) -> float:
        """The derivative from the right at ``x`` (the generated helper's rule)."""
        if self.period:
            x = float(np.remainder(x, self.period))
        xp, fp = self.xp, self.fp
        if np.isnan(x):
            return x
        if len(xp) == 1 or not xp[0] <= x < xp[-1]:
            return 0.0
        j = int(np.searchsorted(xp, x, side="right")) - 1
        return (fp[j + 1] - fp[j]) / (xp[j + 1] - xp[j])

    def _sympystr(self, printer: Any) -> str:
        return f"table_{self.key[:8]}"

    def _eval_derivative(self, symbol: sp.Symbol) -> sp.Expr:
        return sp.S.Zero


def _real_number(x: sp.Expr) -> bool:
    """A constant ``x`` (NaN and infinities included) that the table can be read at now."""
    return x is sp.nan or bool(x.is_Number and x.is_extended_real)


class Interp(sp.Function):
    """``np.interp(x, table...)``: see :class:`InterpTable`."""

    nargs = 2

    @classmethod
    def eval(cls, x: sp.Expr, table: InterpTable) -> sp.Expr | None:
        if _real_number(x):
            return sp.Float(table.evaluate(float(x)))
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        if argindex == 1:
            return InterpSlope(*self.args)
        return sp.S.Zero

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real


class InterpSlope(sp.Function):
    """d Interp(x, table) / dx: the slope of the segment ``x`` lies in (0 outside)."""

    nargs = 2

    @classmethod
    def eval(cls, x: sp.Expr, table: InterpTable) -> sp.Expr | None:
        if _real_number(x):
            return sp.Float(table.slope(float(x)))
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.S.Zero  # piecewise constant


# ----------------------------------------------------------------------- np.interp


def _error(problem: str, hint: str = HINT_CONSTANT) -> TraceError:
    return TraceError(problem, hint, user_frame_location())


def _constant_vector(value: Any, name: str) -> np.ndarray:
    if is_symbolic(value):
        raise _error(f"np.interp with a traced table {name} (it depends on states, inputs or time)")
    try:
        array = np.asarray(value)
    except Exception:  # noqa: BLE001 - an object numpy cannot take
        array = np.asarray(None)
    if array.dtype.kind == "c":
        raise _error(f"np.interp with a complex table {name}", "use real tables (interpolate .real and .imag apart)")
    if array.dtype.kind not in "biuf":
        raise _error(
            f"np.interp's {name} is not a numeric table ({type(value).__name__})", "pass numbers: a list or a numpy array"
        )
    if array.ndim != 1:
        raise _error(f"np.interp's {name} has shape {array.shape}", "pass a 1-D table, as numpy requires")
    return array.astype(np.float64)


def _constant_number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if is_symbolic(value):
        raise _error(f"np.interp with a traced {name}")
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (numbers.Real, np.floating, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return float(value)
    raise _error(f"np.interp's {name}={value!r} is not a real number", "pass a float (or leave it out)")


def make_table(xp: Any, fp: Any, left: Any = None, right: Any = None, period: Any = None) -> InterpTable:
    """The checked table of one ``np.interp`` call, prepared as ``np.interp`` prepares it."""
    xp_, fp_ = _constant_vector(xp, "xp"), _constant_vector(fp, "fp")
    left_, right_ = _constant_number(left, "left"), _constant_number(right, "right")
    period_ = _constant_number(period, "period")
    if xp_.size == 0:
        raise _error("np.interp with an empty table xp", "numpy refuses it: give at least one point")
    if xp_.size != fp_.size:
        raise _error(f"np.interp's xp ({xp_.size} points) and fp ({fp_.size} points) differ in length",
                     "numpy refuses it: give one fp value per xp point")  # fmt: skip
    if np.isnan(xp_).any():
        raise _error("np.interp's table xp holds NaN", "remove those points from xp and fp")
    if period_ is not None:
        if period_ == 0.0 or not np.isfinite(period_):
            raise _error(f"np.interp with period={period_}", "numpy needs a finite, non-zero period")
        period_ = abs(period_)
        left_ = right_ = None  # numpy ignores them with a period
        xp_ = np.remainder(xp_, period_)  # exactly numpy's preparation (np.interp's Python part)
        order = np.argsort(xp_)
        xp_, fp_ = xp_[order], fp_[order]
        xp_ = np.concatenate((xp_[-1:] - period_, xp_, xp_[0:1] + period_))
        fp_ = np.concatenate((fp_[-1:], fp_, fp_[0:1]))
    elif (np.diff(xp_) < 0).any():
        k = int(np.argmax(np.diff(xp_) < 0))
        raise _error(
            f"np.interp's table xp is not increasing (xp[{k}] = {float(xp_[k])!r} > "
            f"xp[{k + 1}] = {float(xp_[k + 1])!r}); numpy does not check this and returns meaningless values",
            "sort the table: order = np.argsort(xp); np.interp(x, xp[order], fp[order])",
        )
    return InterpTable(
        tuple(map(float, xp_)),
        tuple(map(float, fp_)),
        float(fp_[0]) if left_ is None else left_,
        float(fp_[-1]) if right_ is None else right_,
        period_ or 0.0,
        user_frame_location(),
    )


def np_interp(x: Any, xp: Any, fp: Any, left: Any = None, right: Any = None, period: Any = None) -> Any:
    """``np.interp`` with a traced ``x`` (a scalar, a small array or a vector in array form)."""
    table = make_table(xp, fp, left, right, period)
    return _elementwise(lambda e: Interp(numeric(to_expr(e)), table), x)
