"""A cheap structural fingerprint of a system tree.

``simulate()`` re-traces only when this changes: a new system, subsystem or
connection, a container key or shape, a non-numeric input, or any plain value the
traced code can read as a constant -- attributes of the systems (``self.k``, also
inside dicts, lists and tuples), class attributes, closure cells and the module
globals named by ``do_step``, the connections and the methods and functions they
call.  Numeric input values are not part of it: they are runtime parameters.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import Any, Iterator

import numpy as np

from ..containers import ParameterContainer
from ..system import System
from ..trace import numeric_value


_SCALAR = ("n", ())


def _value_key(value: Any) -> Any:
    kind = type(value)
    if kind is float or kind is int:  # the common cases first: this runs for every value
        return _SCALAR
    if kind is np.ndarray and value.dtype.kind == "f":
        return ("n", value.shape)
    array = numeric_value(value)
    if array is not None:
        return ("n", array.shape)
    if value is None or isinstance(value, (str, bool, np.bool_)):
        return ("c", repr(value))
    return ("o", id(value))


_MAX_ITEMS = 256


def _attribute_key(value: Any, depth: int = 0) -> Any:
    """A key that changes when a plain data value changes (objects: by identity)."""
    if isinstance(value, ParameterContainer):  # a system's container: its values are signals
        return ("container", id(value))
    if isinstance(value, (int, float, complex, str, bool, type(None), np.number, np.bool_)):
        return repr(value)
    if isinstance(value, np.ndarray) and value.dtype != object:
        return (value.shape, str(value.dtype), hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest())
    if depth < 4 and isinstance(value, (tuple, list)) and len(value) <= _MAX_ITEMS:
        return (type(value).__name__, tuple(_attribute_key(v, depth + 1) for v in value))
    if depth < 4 and isinstance(value, dict) and len(value) <= _MAX_ITEMS:
        return ("dict", tuple((repr(k), _attribute_key(v, depth + 1)) for k, v in value.items()))
    return ("o", id(value))


@lru_cache(maxsize=4096)
def _global_names(code: Any) -> tuple[str, ...]:
    """Names a code object (and the functions and lambdas inside it) may read as globals."""
    names = list(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names.extend(_global_names(const))
    return tuple(dict.fromkeys(names))


def _function_key(func: Any, seen: set | None = None) -> Any:
    """Identity of a function plus every plain value it can read as a constant."""
    seen = set() if seen is None else seen
    func = getattr(func, "__func__", func)
    if id(func) in seen or not hasattr(func, "__code__"):
        return ("o", id(func))
    seen.add(id(func))
    parts: list = [id(func)]
    for cell in getattr(func, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # empty cell
            parts.append(None)
            continue
        parts.append(_function_key(contents, seen) if callable(contents) and hasattr(contents, "__code__") else _attribute_key(contents))
    globals_ = getattr(func, "__globals__", {})
    for name in _global_names(func.__code__):
        if name in globals_:
            value = globals_[name]
            if callable(value) and hasattr(value, "__code__"):
                if getattr(value, "__module__", None) == func.__module__:  # the model's own helpers
                    parts.append((name, _function_key(value, seen)))
            elif not callable(value) and not isinstance(value, type(np)):
                parts.append((name, _attribute_key(value)))
    return tuple(parts)


def _class_key(cls: type) -> Any:
    """Class attributes and the constants read by the class's methods."""
    parts = []
    seen: set = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith(("dyngen", "dynode", "abc", "builtins")):
            continue
        for name, value in vars(klass).items():
            if name.startswith("__"):
                continue
            if callable(value) or isinstance(value, (staticmethod, classmethod)):
                parts.append((name, _function_key(value, seen)))
            elif not isinstance(value, property):
                parts.append((name, _attribute_key(value)))
    return (id(cls), tuple(parts))


def _systems(systems: list[Any]) -> Iterator[Any]:
    for system in systems:
        yield from _systems(getattr(system, "subsystems", ()))
        yield system


def fingerprint(systems: list[Any]) -> tuple:
    """Everything about the tree that would change the generated module.

    Runs before every ``simulate()``, so it is written for speed: flat lists, and
    plain floats and float arrays classified without the generic checks.
    """
    parts: list = []
    classes: dict[type, Any] = {}
    append = parts.append
    for system in _systems(systems):
        if not isinstance(system, System):  # the build reports it
            append(("not a system", id(system)))
            continue
        cls = type(system)
        if cls not in classes:
            classes[cls] = _class_key(cls)
        append(id(system))
        append(len(system._subs))
        append(classes[cls])
        for container in (system._states, system._ders, system._inputs, system._outputs):
            for key, value in dict.items(container):
                append(key)
                append(_value_key(value))
            append("|")
        for table in (system._pre_connections, system._post_connections):
            for func, dependees in table.items():
                append(_function_key(func))
                append(tuple(map(id, dependees)))
            append("|")
        for name, value in vars(system).items():
            if name[0] != "_":
                append(name)
                append(_attribute_key(value))
        append("||")
    return tuple(parts)
