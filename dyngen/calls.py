"""Calls inside traced functions: ``math``, builtins, numba helpers and side effects.

``do_step`` and the connections are traced by running them once with symbolic
stand-ins.  Some of what they call cannot take a symbolic value as it is: ``math.sin``
and ``float()`` want a real float, a numba ``@njit`` helper wants numbers, a fresh
``np.zeros(n)`` holds only floats.  So the user's functions are compiled again from
their source (``convert``) with every call ``f(a, b)`` routed through
``traced_call(f, a, b)``, which

- gives ``math.*``, ``float``, ``int``, ``round``, ``min`` and ``max`` their numpy
  meaning on traced values (plain numbers still go to the originals);
- traces numba dispatchers (``njit``, ``jit``, ``vectorize``) through their Python
  function, and the model's own helper functions and methods the same way
  (converted in turn);
- gives fresh arrays (``np.zeros``, ``np.ones``, ``np.full``, ``np.empty`` and the
  ``*_like`` forms) and ``np.array([...])`` of traced values as traced arrays, so they
  can be filled element by element and used with every traced operation;
- warns (``DyngenWarning``, with file:line) where something would run only once, at
  build time: ``print``, ``logging``, ``open``, a traced value turned into text or
  passed to a callable that is not traced, or stored where it outlives the call.

Python control flow on traced values (``if``, ``and``, ``while``...) is not rewritten:
``branches.py`` explores both outcomes of every decision instead.  A function whose
source cannot be read (a lambda, code typed at a prompt) runs as it is.
"""

from __future__ import annotations

import ast
import builtins
import copy
import functools
import inspect
import linecache
import logging
import math
import sys
import textwrap
import types
import weakref
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Callable, Iterator

import numpy as np
import sympy as sp

from .branches import explore_pure
from .containers import ParameterContainer
from .errors import SourceLocation, TraceError, is_model_code, user_frame_location
from .extremes import maximum, minimum
from .shared import SESSION, TraceSession, numba_python_function, warn_build_time
from .symbolic import Sym, SymArray, as_object_array, as_sym, is_symbolic, numeric, select, to_expr

CALL_NAME = "__dyngen_call__"
# Builtins that look at their caller's frame: a call through traced_call would see ours.
_FRAME_BUILTINS = frozenset(("super", "locals", "globals", "vars", "dir", "eval", "exec", "breakpoint"))


# --------------------------------------------------------------------------- session


# TraceSession, SESSION and warn_build_time live in shared.py (no sympy there).


_RECORD_INSTEAD = "record values with a Recorder or an observer (Simulation.add_observer) instead"


def check_receivers(session: TraceSession) -> None:
    """Warn for lists, dicts and sets that got a traced value and outlive the traced call
    (an attribute of the system, a module global): that storage happened once."""
    receivers, session.receivers = session.receivers, []
    for receiver, name, location in receivers:
        # referenced by: the tuple, the loop variable and getrefcount's argument
        if sys.getrefcount(receiver) > 3:
            warn_build_time(
                f"{name}() stores a traced value in a {type(receiver).__name__} that outlives the call",
                "keep values in the system's outputs (self.outputs.x = ...) and " + _RECORD_INSTEAD,
                location,
            )
        del receiver


# --------------------------------------------------------------------------- conversion


class _RouteCalls(ast.NodeTransformer):
    """``f(a, *b, k=c)`` -> ``__dyngen_call__(f, a, *b, k=c)``."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id in _FRAME_BUILTINS:
            return node
        routed = ast.Call(func=ast.Name(CALL_NAME, ast.Load()), args=[node.func, *node.args], keywords=node.keywords)
        return ast.copy_location(routed, node)


class _Mangle(ast.NodeTransformer):
    """Private names (``self.__x``) as the class body compiled them (``self._Cls__x``)."""

    def __init__(self, class_name: str) -> None:
        self.prefix = "_" + class_name.lstrip("_")

    def _mangled(self, name: str) -> str:
        return self.prefix + name if name.startswith("__") and not name.endswith("__") else name

    def visit_Attribute(self, node: ast.Attribute) -> ast.AST:
        self.generic_visit(node)
        node.attr = self._mangled(node.attr)
        return node

    def visit_Name(self, node: ast.Name) -> ast.AST:
        node.id = self._mangled(node.id)
        return node


_UNCONVERTIBLE = 0x20 | 0x80 | 0x100 | 0x200  # generator, coroutine, iterable coroutine, async generator


def _converted_code(code: types.CodeType) -> tuple[types.CodeType, tuple[str, ...]] | None:
    """The code of ``code``'s function with its calls routed, and the globals it assigns;
    None when its source cannot be read back."""
    # code objects compare equal across files (co_filename is not compared)
    return _converted_code_in(code.co_filename, code)


@functools.lru_cache(maxsize=None)
def _converted_code_in(filename: str, code: types.CodeType) -> tuple[types.CodeType, tuple[str, ...]] | None:
    if code.co_flags & _UNCONVERTIBLE or code.co_name == "<lambda>":
        return None
    try:
        lines, first = _source_lines(code)
        tree = ast.parse(textwrap.dedent("".join(lines)))
    except (OSError, TypeError, SyntaxError, IndentationError):
        return None
    function = tree.body[0] if len(tree.body) == 1 else None
    if not isinstance(function, ast.FunctionDef) or function.name != code.co_name:
        return None  # the file changed since the function was defined
    function.decorator_list = []
    ast.increment_lineno(function, first - 1)
    assigned_globals = tuple(name for node in ast.walk(function) if isinstance(node, ast.Global) for name in node.names)
    qualname = code.co_qualname.split(".")
    if len(qualname) >= 2 and qualname[-2] != "<locals>":
        function = _Mangle(qualname[-2]).visit(function)
    as_written = _compile_inner(copy.deepcopy(function), code)
    if as_written is None or _fingerprint(as_written) != _fingerprint(code):
        return None  # the source read back is not what runs (the file was edited since)
    inner = _compile_inner(_RouteCalls().visit(function), code)
    if inner is None:
        return None
    return inner.replace(co_qualname=code.co_qualname), assigned_globals


def _source_lines(code: types.CodeType) -> tuple[list[str], int]:
    """``inspect.getsourcelines(code)``, read through ``linecache`` when the file is there:
    ``inspect`` first maps every loaded module to its file (``getmodule``: about 70 ms
    at the first call in a process with numpy, sympy and numba loaded), which only a
    module without a file on disk needs."""
    linecache.checkcache(code.co_filename)  # an edited file is read again
    lines = linecache.getlines(code.co_filename)
    if not lines:
        return inspect.getsourcelines(code)
    first = code.co_firstlineno  # 3.11: the first decorator's line, as inspect uses it
    if not 0 < first <= len(lines):
        raise OSError("line number out of range")
    return inspect.getblock(lines[first - 1 :]), first


def _fingerprint(code: types.CodeType) -> tuple:
    """What two compilations of the same source share (the bytecode itself may differ
    with the surrounding module: 3.11 compiles ``module.f()`` after an import otherwise)."""
    return (
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        tuple(c for c in code.co_consts if not isinstance(c, types.CodeType)),
        # (the prologue stands at the first decorator's line, or at the def's)
        tuple(sorted({line for _, _, line in code.co_lines()} - {None, code.co_firstlineno})),
    )


def _compile_inner(function: ast.FunctionDef, code: types.CodeType) -> types.CodeType | None:
    """The code of ``function`` compiled inside a factory that makes ``code``'s free
    variables (and ``__dyngen_call__``) free variables of it too."""
    factory = ast.parse(f"def __dyngen_factory__({', '.join((CALL_NAME, *code.co_freevars))}):\n    pass").body[0]
    factory.body = [function, ast.Return(ast.Name(function.name, ast.Load()))]
    module = ast.fix_missing_locations(ast.Module(body=[factory], type_ignores=[]))
    try:
        compiled = compile(module, code.co_filename, "exec", dont_inherit=True)
    except SyntaxError:
        return None
    factory_code = next(c for c in compiled.co_consts if isinstance(c, types.CodeType))
    return next(c for c in factory_code.co_consts if isinstance(c, types.CodeType) and c.co_name == code.co_name)


_CALL_CELL: Any = None  # types.CellType(traced_call), made below
# per function: (its code, defaults and keyword defaults when converted, the conversion)
_converted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_GLOBALS_ASSIGNED: dict[types.CodeType, tuple[str, ...]] = {}


def convert(function: types.FunctionType) -> types.FunctionType | None:
    """``function`` compiled again with its calls routed through ``traced_call``, or
    None when its source is not available.  Made again when the function's code,
    defaults or keyword defaults were replaced since (a user's edit between two
    builds: the conversion carries them)."""
    done = _converted.get(function)
    if (
        done is not None and done[0] is function.__code__ and done[1] is function.__defaults__
        and done[2] is function.__kwdefaults__
    ):  # fmt: skip
        return done[3]
    result = _converted_code(function.__code__)
    new = None
    if result is not None:
        code, assigned = result
        cells = dict(zip(function.__code__.co_freevars, function.__closure__ or ()))
        cells[CALL_NAME] = _CALL_CELL
        if all(name in cells for name in code.co_freevars):
            closure = tuple(cells[name] for name in code.co_freevars)
            new = types.FunctionType(code, function.__globals__, function.__name__, function.__defaults__, closure)
            new.__kwdefaults__ = function.__kwdefaults__
            new.__qualname__ = function.__qualname__
            if assigned:
                _GLOBALS_ASSIGNED[code] = assigned
    _converted[function] = (function.__code__, function.__defaults__, function.__kwdefaults__, new)
    return new


def _merge_results(condition: sp.Basic, if_true: Any, if_false: Any) -> Any:
    """The return values of the two sides of a decision inside a pure helper."""
    if isinstance(if_true, tuple) and isinstance(if_false, tuple) and len(if_true) == len(if_false):
        return tuple(_merge_results(condition, a, b) for a, b in zip(if_true, if_false))
    if not isinstance(if_true, (np.ndarray, Sym)):
        if_true = as_sym(if_true)
    if not isinstance(if_false, (np.ndarray, Sym)):
        if_false = as_sym(if_false)
    try:
        return select(condition, if_true, if_false)
    except ValueError:
        raise TraceError(
            "a helper returns values of different shapes depending on a traced condition",
            "return the same shape on every path",
            user_frame_location(),
        ) from None


def _numba_helper(py_func: types.FunctionType) -> Callable:
    """An ``njit``/``jit`` helper: traced through its Python function.  Called with
    scalars only, it can do nothing but return a value (nopython code cannot reach
    Python objects), so its decisions are explored on their own."""
    function = convert(py_func) or py_func

    def call(*args: Any, **kwargs: Any) -> Any:
        if kwargs or any(isinstance(a, (np.ndarray, list, tuple, dict)) for a in args):
            return function(*args, **kwargs)
        return explore_pure(function, _merge_results, *args)

    return call


def _elementwise_python(py_func: types.FunctionType) -> Callable:
    """A ``vectorize``d scalar function applied to traced arrays element by element."""
    scalar = convert(py_func) or py_func

    def apply(*args: Any) -> Any:
        if not any(isinstance(a, (np.ndarray, list, tuple)) for a in args):
            return explore_pure(scalar, _merge_results, *args)
        arrays = np.broadcast_arrays(*(as_object_array(a) for a in args))
        out = np.empty(arrays[0].shape, dtype=object)
        for index in np.ndindex(out.shape):
            out[index] = as_sym(explore_pure(scalar, _merge_results, *(a[index] for a in arrays)))
        return out.view(SymArray)

    return apply


def traceable(func: Any) -> Callable | None:
    """What to call instead of ``func`` so that its body is traced too: the model's own
    functions, methods, callable objects and partials (converted), and numba
    dispatchers (their Python function, converted); None for anything else."""
    if isinstance(func, types.FunctionType):
        return convert(func) if is_model_code(func.__code__.co_filename) else None
    if isinstance(func, types.MethodType):
        inner = traceable(func.__func__)
        return types.MethodType(inner, func.__self__) if inner is not None else None
    if isinstance(func, functools.partial):
        inner = traceable(func.func)
        return functools.partial(inner, *func.args, **func.keywords) if inner is not None else None
    py_func = numba_python_function(func)
    if py_func is not None:
        if getattr(func, "_dispatcher", None) is not None:  # vectorize: elementwise on arrays
            return _elementwise_python(py_func)
        return _numba_helper(py_func)
    if isinstance(func, type) or isinstance(func, (types.BuiltinFunctionType, np.ufunc)):
        return None
    call = getattr(type(func), "__call__", None)
    if isinstance(call, types.FunctionType) and is_model_code(call.__code__.co_filename):
        inner = convert(call)
        return types.MethodType(inner, func) if inner is not None else None
    return None


# --------------------------------------------------------------------------- replacements


def _symbolic_args(args: tuple, kwargs: dict) -> bool:
    return any(is_symbolic(a) for a in args) or any(is_symbolic(v) for v in kwargs.values())


def _numpy_meaning(original: Callable, ufunc: Callable) -> Callable:
    def replacement(*args: Any, **kwargs: Any) -> Any:
        if _symbolic_args(args, kwargs):
            return ufunc(*args, **kwargs)
        return original(*args, **kwargs)

    return replacement


def _math_log(x: Any, base: Any = None) -> Any:
    if not _symbolic_args((x, base), {}):
        return math.log(x) if base is None else math.log(x, base)
    return np.log(x) if base is None else np.log(x) / np.log(base)


def _scalar_only(name: str, x: Any) -> Any:
    if isinstance(x, SymArray):
        if x.size != 1:
            raise TypeError(f"only length-1 arrays can be converted to Python scalars ({name}())")
        return x.view(np.ndarray).flat[0]
    return x


def _float(x: Any = 0.0) -> Any:
    if is_symbolic(x):
        return Sym(numeric(to_expr(_scalar_only("float", x))))
    return builtins.float(x)


def _int(x: Any = 0, *args: Any) -> Any:
    if not args and is_symbolic(x):
        e = numeric(to_expr(_scalar_only("int", x)))
        return Sym(sp.Piecewise((sp.floor(e), e >= 0), (sp.ceiling(e), True)))  # toward zero
    return builtins.int(x, *args)


def _extreme(original: Callable, sympy_fn: Callable) -> Callable:
    def replacement(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not isinstance(args[0], (list, tuple, np.ndarray, Sym)) and not is_symbolic(args[0]):
            try:  # max(u[i] for i in ...): a generator is read once
                args = (list(args[0]),)
            except TypeError:  # not iterable: Python's own error
                return original(*args, **kwargs)
        values = args[0] if len(args) == 1 else args
        if kwargs or not args or not _symbolic_args(tuple(values), {}):
            return original(*args, **kwargs)
        return Sym(sympy_fn(*(numeric(to_expr(as_sym(v))) for v in values)))

    return replacement


FRESH_MAX = 2000  # a larger fresh array in a traced function is refused (as trace.ELEMENT_FALLBACK_MAX)


def _fresh(make: Callable) -> Callable:
    """np.zeros & co. inside a traced function: a traced array, so that its elements
    can be assigned traced values (float dtype only)."""

    def replacement(*args: Any, **kwargs: Any) -> Any:
        if _symbolic_args(args, kwargs) or kwargs.get("dtype", float) not in (float, np.float64, None):
            return make(*args, **kwargs)
        array = make(*args, **kwargs)
        if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
            return array
        if array.size > FRESH_MAX:  # fail fast: filled in, it would be traced element by element for minutes
            raise TraceError(
                f"np.{make.__name__}(...) makes a fresh array of {array.size:,} elements inside a traced "
                f"function: its elements would be traced one by one (a build of minutes)",
                "build the value whole from the states, as the array form traces it: slices with "
                "constant bounds, np.roll/np.pad (stencils on grids), np.concatenate/np.stack, np.where, "
                "broadcasting (a[:, None]) and elementwise maths",
                user_frame_location(),
            )
        return as_object_array(array).view(SymArray)

    return replacement


def _traced_array(make: Callable) -> Callable:
    """np.array([...]) of traced values: a traced array (a plain object array would
    take numpy's object loops, which compare elements with Python ``if``)."""

    def replacement(*args: Any, **kwargs: Any) -> Any:
        result = make(*args, **kwargs)
        if isinstance(result, np.ndarray) and result.dtype == object and not isinstance(result, SymArray):
            if any(isinstance(v, Sym) for v in result.flat):
                return as_object_array(result).view(SymArray)
        return result

    return replacement


def _build_time_only(original: Callable, what: str, instead: str) -> Callable:
    def replacement(*args: Any, **kwargs: Any) -> Any:
        warn_build_time(what, instead)
        return original(*args, **kwargs)

    return replacement


_MATH_AS_NUMPY = {
    "sin": np.sin, "cos": np.cos, "tan": np.tan, "asin": np.arcsin, "acos": np.arccos,
    "atan": np.arctan, "atan2": np.arctan2, "sinh": np.sinh, "cosh": np.cosh, "tanh": np.tanh,
    "asinh": np.arcsinh, "acosh": np.arccosh, "atanh": np.arctanh, "exp": np.exp,
    "expm1": np.expm1, "log10": np.log10, "log2": np.log2, "log1p": np.log1p,
    "sqrt": np.sqrt, "pow": np.power, "fabs": np.fabs, "floor": np.floor, "ceil": np.ceil,
    "trunc": np.trunc, "hypot": np.hypot, "copysign": np.copysign, "degrees": np.degrees,
    "radians": np.radians, "fmod": np.fmod, "cbrt": np.cbrt, "exp2": np.exp2,
}  # fmt: skip


def _replacements() -> dict[int, tuple[Any, Callable]]:
    table: dict[Any, Callable] = {
        getattr(math, name): _numpy_meaning(getattr(math, name), ufunc)
        for name, ufunc in _MATH_AS_NUMPY.items()
        if hasattr(math, name)
    }
    table[math.log] = _math_log
    table.update({
        builtins.float: _float, builtins.int: _int,
        builtins.min: _extreme(builtins.min, minimum), builtins.max: _extreme(builtins.max, maximum),
    })  # fmt: skip
    for make in (np.zeros, np.ones, np.empty, np.full, np.zeros_like, np.ones_like, np.empty_like, np.full_like):
        table[make] = _fresh(make)
    for make in (np.array, np.asarray, np.asanyarray):
        table[make] = _traced_array(make)
    table[builtins.print] = _build_time_only(builtins.print, "print(...) runs", _RECORD_INSTEAD)
    table[builtins.open] = _build_time_only(
        builtins.open, "open(...) runs", "write files from an observer, or after simulate()"
    )
    table[builtins.input] = _build_time_only(builtins.input, "input(...) runs", "set inputs before simulate()")
    return {id(original): (original, replacement) for original, replacement in table.items()}


_REPLACEMENTS = _replacements()

# Callables that may receive traced values: they compute, nothing is kept or shown.
_PURE_BUILTINS = frozenset(
    id(f) for f in (
        len, isinstance, issubclass, range, enumerate, zip, sum, any, all, sorted, reversed, iter,
        next, getattr, setattr, hasattr, map, filter, divmod, pow, abs, round, callable, type, id, hash,
        list, tuple, dict, set, frozenset, slice, bool, complex,
    )
)  # fmt: skip
_PURE_MODULES = ("numpy", "dyngen", "sympy", "math", "operator", "functools", "itertools", "copy", "numba")
_STORING_METHODS = frozenset(("append", "extend", "insert", "add", "update", "setdefault", "__setitem__", "appendleft"))


def _module_of(func: Any) -> str:
    owner = getattr(func, "__self__", None)
    module = getattr(func, "__module__", None)
    if module is None and owner is not None and not isinstance(owner, types.ModuleType):
        module = type(owner).__module__
    if module is None and isinstance(owner, types.ModuleType):
        module = owner.__name__
    return module or ""


def _check_side_effects(func: Any, args: tuple, kwargs: dict) -> None:
    """Warn where an untraced call would run only at build time."""
    if isinstance(func, logging.Logger) or isinstance(getattr(func, "__self__", None), logging.Logger) or (
        _module_of(func).split(".")[0] == "logging"
    ):
        warn_build_time(f"the logging call {_name(func)}(...) runs", _RECORD_INSTEAD)
        return
    if id(func) in _PURE_BUILTINS or not _symbolic_args(args, kwargs):
        return
    if isinstance(func, type):
        if func is str or issubclass(func, str):
            warn_build_time("str() turns a traced value into text", _RECORD_INSTEAD)
        return
    owner = getattr(func, "__self__", None)
    name = getattr(func, "__name__", "")
    if isinstance(owner, ParameterContainer):
        return  # the model's own containers: their writes are traced
    if isinstance(owner, (list, dict, set)) and name in _STORING_METHODS:
        session = SESSION.get()
        if session is not None:
            session.receivers.append((owner, f"{type(owner).__name__}.{name}", user_frame_location()))
        return
    if isinstance(owner, (list, dict, set, tuple, np.ndarray)):
        return  # reading methods of containers and arrays (index, count, copy, sum, ...)
    if isinstance(owner, str):
        warn_build_time(f"str.{name}() turns a traced value into text", _RECORD_INSTEAD)
        return
    if _module_of(func).split(".")[0] in _PURE_MODULES:
        return
    if isinstance(func, types.FunctionType) and is_model_code(func.__code__.co_filename):
        return  # the model's own function that cannot be converted (a lambda): it computes
    warn_build_time(
        f"{_name(func)}(...) is given a traced value, and dyngen does not trace into it: it runs with "
        "symbolic stand-ins",
        "write the computation in do_step (or a helper function of the model, or an @njit helper), "
        "or move the call to an observer",
    )


def _name(func: Any) -> str:
    return getattr(func, "__qualname__", None) or getattr(func, "__name__", None) or type(func).__name__


def traced_call(func: Any, /, *args: Any, **kwargs: Any) -> Any:
    """Every call inside a converted function comes here; see the module docstring."""
    entry = _REPLACEMENTS.get(id(func))
    if entry is not None and entry[0] is func:
        return entry[1](*args, **kwargs)
    target = traceable(func)
    if target is not None:
        _warn_assigned_globals(func, target)
        return target(*args, **kwargs)
    _check_side_effects(func, args, kwargs)
    packages = _LIBRARY_CALLS.get()
    if packages is not None and not isinstance(func, (types.BuiltinFunctionType, np.ufunc)):
        packages.update(_packages_of(func))
    return func(*args, **kwargs)


# While a build records them: the packages of the code the traced functions called as
# it is (library code; see ``recording_library_calls``).
_LIBRARY_CALLS: ContextVar[set[str] | None] = ContextVar("dyngen_library_calls", default=None)


@contextmanager
def recording_library_calls() -> Iterator[set[str]]:
    """Collect, in the set this yields, the top-level packages of every callable the
    traced code calls without tracing into it (library functions, classes and
    methods): what the model's module depends on beyond its own code
    (``runtime.fingerprint.library_dependencies``).  Names only: no reference to a
    callable (or the object it is bound to) is kept."""
    packages: set[str] = set()
    token = _LIBRARY_CALLS.set(packages)
    try:
        yield packages
    finally:
        _LIBRARY_CALLS.reset(token)


def _packages_of(func: Any) -> set[str]:
    """The top-level packages of ``func``'s module, of its function (a method), and of
    the class of the object it is bound to."""
    owner = getattr(func, "__self__", None)
    candidates = (
        getattr(getattr(func, "__func__", func), "__module__", None),
        type(func).__module__,
        None if owner is None or isinstance(owner, types.ModuleType) else type(owner).__module__,
    )
    return {c.split(".")[0] for c in candidates if isinstance(c, str)}


_CALL_CELL = types.CellType(traced_call)


def _warn_assigned_globals(func: Any, target: Callable) -> None:
    code = getattr(getattr(target, "__func__", target), "__code__", None)
    assigned = _GLOBALS_ASSIGNED.get(code) if code is not None else None
    if assigned:
        warn_build_time(
            f"{_name(func)} assigns the global{'s' if len(assigned) > 1 else ''} {', '.join(assigned)}",
            "keep state that changes while the model runs in states, or count evaluations in an observer",
            SourceLocation(code.co_filename, code.co_firstlineno),
        )


def entry_point(func: Callable) -> Callable:
    """The callable the tracer runs for a do_step or connection ``func``: converted when
    its source is available, else ``func`` itself."""
    target = traceable(func)
    if target is None:
        return func
    _warn_assigned_globals(func, target)
    return target
