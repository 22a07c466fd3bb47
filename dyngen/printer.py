"""The one printer: sympy expressions -> nopython-safe Python text.

A ``PythonCodePrinter`` that prints floats so they round-trip exactly, uses only
the ``math`` module, and refuses (loudly) anything it has no translation for.
"""

from __future__ import annotations

import math
import re

import sympy as sp
from mpmath.libmp import finf as mpf_inf
from mpmath.libmp import fninf as mpf_ninf
from mpmath.libmp import fzero
from sympy.printing.pycode import PythonCodePrinter

from .errors import CodegenError
from .interp import InterpTable

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _out_of_range(expr: sp.Float, what: str) -> str:
    return (
        f"the constant {sp.Float(expr, 6)} (folded from the model's constants) {what} a float64; "
        "the model would compute something else than written: regroup the expression so that "
        "constants are combined within the float range"
    )


def float_text(value: float) -> str:
    """A float as source that round-trips exactly (inf and nan via math)."""
    if math.isnan(value):
        return "math.nan"
    if math.isinf(value):
        return "math.inf" if value > 0 else "(-math.inf)"
    return repr(float(value))


class NumbaPrinter(PythonCodePrinter):
    """Prints expressions for ``@njit`` functions."""

    printmethod = "_dyngen_numba"

    def __init__(self) -> None:
        super().__init__({"fully_qualified_modules": True, "allow_unknown_functions": False})
        # np.interp tables printed so far, by their arrays: (module-level name, table, call sites)
        self.interp_tables: dict[str, tuple[str, InterpTable, list]] = {}

    def _print_Float(self, expr: sp.Float) -> str:
        value = float(expr)
        if math.isnan(value):
            return "math.nan"
        exact = expr._mpf_
        if math.isinf(value) and exact not in (mpf_inf, mpf_ninf):
            raise CodegenError(_out_of_range(expr, "overflows"))
        if value == 0.0 and exact != fzero:
            raise CodegenError(_out_of_range(expr, "underflows"))
        if math.isinf(value):
            return "math.inf" if value > 0 else "(-math.inf)"
        return repr(value)

    def _print_Infinity(self, expr: sp.Basic) -> str:
        return "math.inf"

    def _print_NegativeInfinity(self, expr: sp.Basic) -> str:
        return "(-math.inf)"

    def _print_NaN(self, expr: sp.Basic) -> str:
        return "math.nan"

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        if not _IDENTIFIER.match(expr.name):
            raise CodegenError(f"internal error: unsafe identifier {expr.name!r}")
        return expr.name

    def _print_not_supported(self, expr: sp.Basic) -> str:
        raise CodegenError(
            f"the code generator has no translation for {type(expr).__name__} ({expr}); "
            "use the functions listed in the README's 'modeling form'"
        )

    _print_Heaviside = _print_not_supported
    _print_DiracDelta = _print_not_supported
    _print_Derivative = _print_not_supported
    _print_Subs = _print_not_supported

    # numpy's float semantics (NaN propagates, no conversion to int) for these:
    def _print_floor(self, expr: sp.Basic) -> str:
        return f"np.floor({self._print(expr.args[0])})"

    def _print_ceiling(self, expr: sp.Basic) -> str:
        return f"np.ceil({self._print(expr.args[0])})"

    def _print_sign(self, expr: sp.Basic) -> str:
        return f"np.sign({self._print(expr.args[0])})"

    def _print_RoundHalfEven(self, expr: sp.Basic) -> str:
        return f"np.rint({self._print(expr.args[0])})"

    def _nested(self, function: str, args: tuple) -> str:
        """``function`` (a binary ufunc) over ``args`` as a balanced tree: nested
        log2(n) deep, not n (Python's parser allows 200 nested brackets)."""
        if len(args) == 1:
            return self._print(args[0])
        half = len(args) // 2
        return f"{function}({self._nested(function, args[:half])}, {self._nested(function, args[half:])})"

    def _arg_extreme(self, function: str, args: tuple) -> str:
        items = ", ".join(float_text(float(a)) if a.is_Number else self._print(a) for a in args)
        return f"{function}(np.array(({items},)))"

    def _print_ArgMaxOf(self, expr: sp.Basic) -> str:
        return self._arg_extreme("np.argmax", expr.args)

    def _print_ArgMinOf(self, expr: sp.Basic) -> str:
        return self._arg_extreme("np.argmin", expr.args)

    def _print_Min(self, expr: sp.Basic) -> str:
        return self._nested("np.minimum", expr.args)

    def _print_Max(self, expr: sp.Basic) -> str:
        return self._nested("np.maximum", expr.args)

    def _print_Integer(self, expr: sp.Integer) -> str:
        value = int(expr)
        if -(2**63) < value < 2**63:
            return str(value)
        return repr(float(value))  # beyond int64: numba cannot type it; the maths is float

    def _interp_table(self, table: InterpTable) -> str:
        entry = self.interp_tables.get(table.data_key)
        if entry is None:
            entry = self.interp_tables[table.data_key] = (f"INTERP_{len(self.interp_tables)}", table, [])
        if table.location not in entry[2]:
            entry[2].append(table.location)
        return entry[0]

    def _print_Interp(self, expr: sp.Basic) -> str:
        x, table = expr.args
        name = self._interp_table(table)
        return (
            f"interp_value({self._print(x)}, {name}_XP, {name}_FP, {float_text(table.left)}, "
            f"{float_text(table.right)}, {float_text(table.period)})"
        )

    def _print_InterpSlope(self, expr: sp.Basic) -> str:
        x, table = expr.args
        name = self._interp_table(table)
        return f"interp_slope({self._print(x)}, {name}_XP, {name}_FP, {float_text(table.period)})"

    _print_InterpTable = _print_not_supported

    def _print_Mod(self, expr: sp.Basic) -> str:
        a, b = (self._print(arg) for arg in expr.args)
        return f"np.remainder({a}, {b})"


def print_expr(printer: NumbaPrinter, expr: sp.Basic) -> str:
    """Print one expression; only ``math`` (and ``np``, printed directly) may be needed."""
    text = printer.doprint(expr)
    modules = set(printer.module_imports)
    if modules - {"math"}:
        raise CodegenError(f"internal error: expression {expr} needs modules {sorted(modules)}")
    return text
