"""A cheap structural fingerprint of a system tree.

``simulate()`` re-traces only when this changes: a new system, subsystem or
connection, a container key or shape, a non-numeric input, or any plain value the
traced code can read as a constant -- attributes of the systems (``self.k``, also
inside dicts, lists, tuples and plain objects), class attributes, closure cells,
defaults, bound-method objects, and the module globals (and attributes of modules)
named by ``do_step``, the connections and the functions they call.  Numeric input
values are not part of it: they are runtime parameters.  What it cannot see (state
reached through library objects, or more than 4096 items) is frozen at build time;
``Simulation.rebuild()`` forces a fresh build.

``StructureWatch`` is what ``simulate()`` holds: the fingerprint, and a check of
whether it may have changed that costs a few microseconds, plus about 2 µs per
connection function of the model's own (edits made through dyngen's objects are
counted by ``containers.Edits``; the rest is keyed again).

``structure_key`` is the fingerprint with every identity replaced by what it stands
for (a system by its place in the tree, a function by its code, a class by its
name), hashed: it names the model across processes, so that a warm start finds its
generated module without tracing.  A model with something only an identity can
describe (an opaque object) has no such key and is traced.  The watch's fingerprint
names objects the same way (and adds the ids of the tree's systems and containers),
so a fresh Simulation computes one fingerprint for both.
"""

from __future__ import annotations

import dis
import hashlib
import operator
import os
import sys
from functools import lru_cache, partial
from itertools import chain, repeat
from pathlib import Path
from types import BuiltinFunctionType, CodeType, FunctionType, MappingProxyType, ModuleType
from typing import Any, Callable, Iterator

import numpy as np

from ..attributes import is_number
from ..errors import library_roots
from ..containers import Edits, ParameterContainer
from ..system import System
from ..shared import numba_python_function, numeric_value, template_dir

_SCALAR = ("n", ())


def _value_key(value: Any, ident: Callable[[Any], Any]) -> Any:
    kind = type(value)
    if kind is float or kind is int:  # the common cases first: this runs for every value
        return _SCALAR
    if kind is np.ndarray and value.dtype.kind == "f":
        return ("n", value.shape)
    array = numeric_value(value)
    if array is not None:
        return ("n", array.shape)
    return ("c", _attribute_key(value, ident))  # a non-numeric value baked into the model


_NUMBER_TYPES = frozenset((float, int))
_ARRAY_TYPE = frozenset((np.ndarray,))
_FLOAT64 = frozenset((np.dtype(np.float64),))
_DTYPE = operator.attrgetter("dtype")
_SHAPE = operator.attrgetter("shape")
_NO_ENTRIES = ((), ())
_SCALAR_KINDS = tuple(((),) * count for count in range(64))  # the kinds of 0..63 numbers, made once


def _value_kind(value: Any, ident: Callable[[Any], Any]) -> Any:
    """``_value_key`` in short: a number's shape (``()`` for a float or an int), or
    ``("c", key)`` for a non-numeric value."""
    kind = type(value)
    if kind is float or kind is int:
        return ()
    if kind is np.ndarray and value.dtype.kind == "f":
        return value.shape
    array = numeric_value(value)
    if array is not None:
        return array.shape
    return ("c", _attribute_key(value, ident))


def _container_key(container: dict, ident: Callable[[Any], Any], volatile: list | None) -> tuple:
    """A container's keys and the kind of each value (``_value_kind``); a value whose
    kind can change in place (a list, an object) is added to ``volatile``.  Numbers
    and float arrays, what containers hold, are classified in C."""
    values = dict.values(container)
    if not values:
        return _NO_ENTRIES
    types = set(map(type, values))
    if types <= _NUMBER_TYPES:
        count = len(values)
        return (tuple(container), _SCALAR_KINDS[count] if count < len(_SCALAR_KINDS) else ((),) * count)
    if types == _ARRAY_TYPE and set(map(_DTYPE, values)) == _FLOAT64:  # (other float arrays: below)
        return (tuple(container), tuple(map(_SHAPE, values)))
    kinds = []
    for value in values:
        kind = _value_kind(value, ident)
        kinds.append(kind)
        if volatile is not None and not _fixed_value(value):
            volatile.append((partial(_value_kind, value, ident), kind))
    return (tuple(container), tuple(kinds))


_MAX_ITEMS = 4096
# Callables without data of their own: builtins and numpy's ufuncs.
_FIXED_CALLABLES = (BuiltinFunctionType, np.ufunc)


def _is_library_function(value: Any) -> bool:
    """A builtin, a ufunc, or a function a library exports by its name (``np.sum``):
    nothing of the model's is inside it."""
    if isinstance(value, _FIXED_CALLABLES):
        return True
    module, name = getattr(value, "__module__", None), getattr(value, "__name__", None)
    if not isinstance(module, str) or not isinstance(name, str) or not _is_library(module):
        return False
    return getattr(sys.modules.get(module), name, None) is value
_PLAIN_NUMBERS = frozenset((float, int, bool))
_MAX_DEPTH = 6
# Functions of these packages are not followed: what they read is not the model's.
_LIBRARIES = ("numpy", "scipy", "sympy", "numba", "math", "builtins", "dyngen", "dynode", "collections", "functools")
# A System's own bookkeeping; its contents are fingerprinted separately.
_SYSTEM_INTERNALS = frozenset(
    ("_subs", "_states", "_ders", "_inputs", "_outputs", "_pre_connections", "_post_connections", "_events")
)


def _is_library(module_name: str | None) -> bool:
    return not module_name or module_name.split(".")[0] in _LIBRARIES


def _attribute_key(value: Any, ident: Callable[[Any], Any], depth: int = 0, seen: set | None = None) -> Any:
    """A key that changes when a plain data value changes, also inside containers and
    plain objects (what cannot be looked into, by identity).  ``seen``: the functions
    and classes already being keyed (a function reachable from its own globals)."""
    if isinstance(value, ParameterContainer):  # a system's container: its values are signals
        return ("container", ident(value))
    if isinstance(value, System):  # fingerprinted on its own
        return ("system", ident(value))
    if isinstance(value, (int, float, complex, str, bool, type(None), np.number, np.bool_)):
        return repr(value)
    if isinstance(value, np.ndarray) and value.dtype != object:
        return (value.shape, str(value.dtype), hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest())
    if type(value) in (tuple, list):
        kinds = set(map(type, value))
        if kinds <= _PLAIN_NUMBERS:
            if len(kinds) <= 1 and not (float in kinds and 0.0 in value):  # compared at C speed, any length
                return (type(value).__name__, kinds.pop().__name__ if kinds else "", tuple(value))
            # 1 == 1.0 == True and -0.0 == 0.0: equal tuples must mean equal text (structure_key)
            return (type(value).__name__, tuple(map(repr, value)))
    if depth < _MAX_DEPTH:
        if isinstance(value, (tuple, list, set, frozenset)) and len(value) <= _MAX_ITEMS:
            items = sorted(value, key=repr) if isinstance(value, (set, frozenset)) else value
            return (type(value).__name__, tuple(_attribute_key(v, ident, depth + 1, seen) for v in items))
        if isinstance(value, dict) and len(value) <= _MAX_ITEMS:
            return ("dict", tuple((_key_of_key(k, ident, depth, seen), _attribute_key(v, ident, depth + 1, seen))
                                  for k, v in value.items()))  # fmt: skip
        if callable(value) and hasattr(value, "__code__"):
            return _function_key(value, ident, seen)
        if isinstance(value, type) and not _is_library(value.__module__):
            return _class_key(value, ident, seen)
        attributes = getattr(value, "__dict__", None)
        if (
            isinstance(attributes, dict)
            and not isinstance(value, (type, type(np)))
            and not _is_library(type(value).__module__)
            and len(attributes) <= _MAX_ITEMS
        ):  # a plain object of the model's (a dataclass of parameters, say)
            return ("object", type(value).__qualname__, _attribute_key(attributes, ident, depth + 1, seen))
    if _is_library_function(value):
        return ("library function", getattr(value, "__module__", None), getattr(value, "__qualname__", None))
    return ("o", ident(value))


def _key_of_key(key: Any, ident: Callable[[Any], Any], depth: int, seen: set | None = None) -> Any:
    """A dict key: plain ones by repr, objects (a System, say) by what names them."""
    if isinstance(key, (str, int, float, bool, type(None))):
        return repr(key)
    return _attribute_key(key, ident, depth + 1, seen)


@lru_cache(maxsize=4096)
def _global_names(code: Any) -> tuple[str, ...]:
    """Names a code object (and the functions and lambdas inside it) may read as globals."""
    names = list(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names.extend(_global_names(const))
    return tuple(dict.fromkeys(names))


def _function_key(func: Any, ident: Callable[[Any], Any], seen: set | None = None) -> Any:
    """Identity of a function plus every plain value it can read as a constant:
    closure cells, defaults, the object of a bound method, globals (also attributes
    of modules it names) and the functions it calls, outside library packages."""
    seen = set() if seen is None else seen
    if isinstance(func, partial):  # the function and the arguments it binds (keywords: a mutable dict)
        return (
            "partial", _function_key(func.func, ident, seen),
            _attribute_key(func.args, ident, 0, seen), _attribute_key(dict(func.keywords), ident, 0, seen),
        )  # fmt: skip
    owner = getattr(func, "__self__", None)
    func = getattr(func, "__func__", func)
    func = numba_python_function(func) or func  # a numba helper: keyed by its Python function
    if not hasattr(func, "__code__") and callable(func) and not isinstance(func, type):
        # a callable object: its attributes and its class's __call__
        return ("callable", _attribute_key(func, ident, 0, seen), _class_key(type(func), ident, seen))
    if id(func) in seen or not hasattr(func, "__code__"):
        return ("o", ident(func))
    seen.add(id(func))
    parts: list = [
        ident(func),
        _attribute_key(getattr(func, "__defaults__", None), ident, 0, seen),
        _attribute_key(getattr(func, "__kwdefaults__", None), ident, 0, seen),
    ]
    if not _is_library(getattr(func, "__module__", None)):  # attributes set on the model's own functions
        parts.append(_attribute_key(getattr(func, "__dict__", None) or None, ident, 0, seen))
    if owner is not None and not isinstance(owner, type):
        parts.append(_attribute_key(owner, ident, 0, seen))
    for cell in getattr(func, "__closure__", None) or ():
        try:
            contents = cell.cell_contents
        except ValueError:  # empty cell
            parts.append(None)
            continue
        parts.append(_attribute_key(contents, ident, 0, seen))
    globals_ = getattr(func, "__globals__", {})
    names = _global_names(func.__code__)
    for name in names:
        if name not in globals_:
            continue
        value = globals_[name]
        if isinstance(value, type(np)):  # a module: the attributes of it that the code names
            if not _is_library(value.__name__):
                for attribute in names:
                    if attribute in vars(value):
                        inner = vars(value)[attribute]
                        if callable(inner) and hasattr(inner, "__code__"):
                            parts.append((name, attribute, _function_key(inner, ident, seen)))
                        elif isinstance(inner, type):
                            if not _is_library(inner.__module__):
                                parts.append((name, attribute, _class_key(inner, ident, seen)))
                        elif not isinstance(inner, type(np)) and not _is_library_function(inner):
                            parts.append((name, attribute, _attribute_key(inner, ident, 0, seen)))
        elif callable(value) and hasattr(value, "__code__"):
            if not _is_library(getattr(value, "__module__", None)):  # the model's own helpers
                parts.append((name, _function_key(value, ident, seen)))
        elif isinstance(value, type):
            if not _is_library(value.__module__):  # the model's own classes (a helper's methods)
                parts.append((name, _class_key(value, ident, seen)))
        elif not _is_library_function(value):  # data, or an object with a __call__
            parts.append((name, _attribute_key(value, ident, 0, seen)))
    return tuple(parts)


_FRAMEWORK_MODULES = ("dyngen", "dynode", "abc", "builtins")


def _class_key(cls: type, ident: Callable[[Any], Any], seen: set | None = None) -> Any:
    """Class attributes and the constants read by the class's methods."""
    seen = set() if seen is None else seen
    if id(cls) in seen:
        return ("class", ident(cls))
    seen.add(id(cls))
    parts = []
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] in _FRAMEWORK_MODULES:
            continue
        for name, value in vars(klass).items():
            if name.startswith("__") or name == "_abc_impl":  # ABCMeta's cache of every class
                continue
            if callable(value) or isinstance(value, (staticmethod, classmethod)):
                parts.append((name, _function_key(value, ident, seen)))
            elif not isinstance(value, property):
                parts.append((name, _attribute_key(value, ident, 0, seen)))
    return (ident(cls), tuple(parts))


def _systems(systems: list[Any]) -> Iterator[Any]:
    for system in systems:
        yield from _systems(getattr(system, "subsystems", ()))
        yield system


_SUBSYSTEMS = operator.attrgetter("subsystems")


def _walk_order(systems: list[Any]) -> list[Any]:
    """``list(_systems(systems))``; without the recursion when no system has subsystems."""
    try:
        if not any(map(_SUBSYSTEMS, systems)):
            return list(systems)
    except AttributeError:  # not a System (the build reports it)
        pass
    return list(_systems(systems))


def fingerprint(
    systems: list[Any], ident: Callable[[Any], Any] = id, volatile: list | None = None,
    parameters: frozenset[tuple[int, str]] = frozenset(), numbers: dict | None = None,
) -> tuple:  # fmt: skip
    """Everything about the tree that would change the generated module.

    ``ident`` names the objects the key refers to by identity (systems, containers,
    functions, classes, opaque values): ``id`` within one process.
    ``volatile``, when given, receives ``(recompute, key)`` for every part of the
    fingerprint that can change without an edit ``Edits`` counts (see
    ``StructureWatch``).
    ``parameters``: the ``(id(system), attribute)`` of attributes traced as parameters
    (``Simulation.make_parameter``): keyed by kind and shape, as numeric inputs are,
    not by value.
    ``numbers``, when given, receives ``attributes.numeric_attributes(systems)`` (the
    systems' attributes are read here anyway).
    Written for speed: flat lists, and plain floats and float arrays classified
    without the generic checks.
    """
    parts: list = []
    classes: dict[type, Any] = {}
    functions: dict[int, Any] = {}  # one connection function is often shared by many systems
    append = parts.append

    def function_key(func: Callable) -> Any:
        """A connection's or an event's function, keyed once per fingerprint."""
        key = functions.get(id(func))
        if key is None:
            if _is_dyngen_function(func):  # its key cannot change (see _is_dyngen_function)
                key = functions[id(func)] = _dyngen_function_key(func, ident)
                return key
            key, watch = _remembered_key(func, ident, False)
            functions[id(func)] = key
            if volatile is not None:
                volatile.append((watch or _RootsWatch.of_function(func, key, ident), key))
        return key

    flat = getattr(ident, "flat", None)  # _PersistentIdentity walked the tree already
    for system in _systems(systems) if flat is None else flat:
        cls = type(system)
        class_key = classes.get(cls)
        if class_key is None:
            if not isinstance(system, System):  # the build reports it
                append(("not a system", ident(system)))
                continue
            class_key, watch = _remembered_key(cls, ident, True)
            classes[cls] = class_key
            if volatile is not None:  # class attributes, and the globals its methods read
                volatile.append((watch or _RootsWatch.of_class(cls, class_key, ident), class_key))
        subs, states, ders, inputs, outputs, pre, post = _SYSTEM_PARTS(system)
        parts += (
            ident(system), len(subs), class_key, _container_key(states, ident, volatile),
            _container_key(ders, ident, volatile), _container_key(inputs, ident, volatile),
            _container_key(outputs, ident, volatile),
        )  # fmt: skip
        for func, dependees in pre.items():
            parts += (function_key(func), tuple(map(ident, dependees)) if dependees else ())
        append("|")
        for func, dependees in post.items():
            parts += (function_key(func), tuple(map(ident, dependees)) if dependees else ())
        attributes = vars(system)
        events = attributes.get("_events")
        if not events and attributes.keys() <= _SYSTEM_INTERNALS:  # the common case: nothing more
            parts += _END_OF_PLAIN_SYSTEM
            continue
        append("|")
        if events:  # System.add_event: functions as connections
            for event in events.values():
                for func in (event.condition, event.action):
                    append(None if func is None else function_key(func))
                append((event.direction, event.terminal, event.name))
        if attributes.keys() <= _SYSTEM_INTERNALS:  # the common case: no attributes of the model's
            append("||")
            continue
        for name, value in attributes.items():
            if name not in _SYSTEM_INTERNALS:
                if numbers is not None and name[:1] != "_" and is_number(value):
                    numbers[(id(system), name)] = (system, value)
                append(name)
                if parameters and (id(system), name) in parameters:  # a parameter: its value is not structure
                    append(("parameter", _value_key(value, ident)))
                    continue
                append(_attribute_key(value, ident))
                if volatile is not None and not _fixed(value):
                    volatile.append((partial(_attribute_key, value, ident), parts[-1]))
        append("||")
    return tuple(parts)


_END_OF_PLAIN_SYSTEM = ("|", "||")  # after the post-connections of a system without events or attributes
# What the fingerprint reads of every system, in one call
_SYSTEM_PARTS = operator.attrgetter("_subs", "_states", "_ders", "_inputs", "_outputs", "_pre_connections", "_post_connections")
_ATOMS = (int, float, complex, str, bytes, bool, type(None), np.number, np.bool_)

# The keys of classes and connection functions computed before (_remembered_key), by (id, persistent
# identity or not): (the object, its watch, its key).  Kept while the watch's quick test
# says that every object the key was computed from is still there (only when none is
# a system or a container, whose keys depend on the tree and on edits Edits counts).
# The last item: whether the key names an object by its id (``_PersistentIdentity.opaque``);
# a guard: a remembered key's roots are all fixed (atoms, library objects), which
# ``_PersistentIdentity`` names without ids, so this is not expected to be True.
_KNOWN_KEYS: dict[tuple[int, bool], tuple[Any, "_RootsWatch", Any, bool]] = {}


def _remembered_key(obj: Any, ident: Callable[[Any], Any], is_class: bool) -> tuple[Any, "_RootsWatch | None"]:
    """``_class_key(obj, ident)`` or ``_function_key(obj, ident)`` (of a function dyngen
    did not make: ``_is_dyngen_function``), remembered across fingerprints (every fresh
    Simulation of a model built before computes one), and the ``_RootsWatch`` that
    watches it (None when it is not remembered)."""
    compute = _class_key if is_class else _function_key
    persistent = isinstance(ident, _PersistentIdentity)
    if ident is not id and not persistent:
        return compute(obj, ident), None
    slot = (id(obj), persistent)
    known = _KNOWN_KEYS.get(slot)
    if known is not None and known[0] is obj and known[1].same():
        if known[3]:
            ident.opaque = True  # type: ignore[attr-defined]
        return known[2], known[1]
    if persistent:  # whether this key names something by its id
        opaque_before, ident.opaque = ident.opaque, False  # type: ignore[attr-defined]
    key = compute(obj, ident)
    opaque = persistent and ident.opaque  # type: ignore[attr-defined]
    if persistent:
        ident.opaque = opaque_before or opaque  # type: ignore[attr-defined]
    watch = (_RootsWatch.of_class if is_class else _RootsWatch.of_function)(obj, key, ident)
    if watch.same is not None and not any(isinstance(r, (System, ParameterContainer)) for r in watch.roots):
        if len(_KNOWN_KEYS) >= 4096:
            _KNOWN_KEYS.clear()
        _KNOWN_KEYS[slot] = (obj, watch, key, opaque)
    return key, watch


def _dyngen_function_key(func: Any, ident: Callable[[Any], Any]) -> Any:
    """The key of a function dyngen made (``connect_signals``): its code, defaults and
    closure contents (it reads no globals of the model's); ``_function_key`` for
    anything but a plain function with full cells."""
    if type(func) is not FunctionType:
        return _function_key(func, ident)
    try:
        contents = tuple(map(_cell_contents, func.__closure__ or ()))
    except ValueError:  # an empty cell
        return _function_key(func, ident)
    defaults = func.__defaults__
    return (
        "dyngen", ident(func), None if defaults is None else _attribute_key(defaults, ident),
        tuple([
            repr(value) if type(value) is str else ("container", ident(value))
            if isinstance(value, ParameterContainer) else _attribute_key(value, ident)
            for value in contents
        ]),  # (connect_signals' keys and containers first, as _attribute_key keys them)
    )  # fmt: skip


def _fixed_value(value: Any) -> bool:
    """Whether a container value's key can change only by a new value (a counted edit)."""
    kind = type(value)
    if kind is float or kind is int:
        return True
    return (kind is np.ndarray and value.dtype.kind in "fiub") or isinstance(value, _ATOMS)


def _fixed(value: Any, depth: int = 0) -> bool:
    """Whether ``_attribute_key(value)`` can change only by an assignment that replaces
    ``value`` (a counted edit): atoms, systems, containers, library functions and
    classes, and tuples of them.  Lists, dicts, arrays, plain objects and the model's
    own functions and classes (their globals) are not."""
    if isinstance(value, (ParameterContainer, System, *_ATOMS)):
        return True
    if type(value) in (tuple, frozenset):
        return depth < _MAX_DEPTH and len(value) <= _MAX_ITEMS and all(_fixed(v, depth + 1) for v in value)
    if isinstance(value, type):
        return _is_library(value.__module__)
    return _is_library_function(value)


def _is_dyngen_function(func: Any) -> bool:
    """A function dyngen made (``connect_signals``): it reads no globals of the
    model's and never rebinds its closure, so its key cannot change."""
    module = getattr(func, "__module__", None)
    return (
        isinstance(module, str) and (module == "dyngen" or module.startswith("dyngen.")) and hasattr(func, "__code__")
    )  # fmt: skip


_ABSENT = object()


def _function_roots(func: Any) -> list | None:
    """The objects ``_function_key(func)`` reads directly (code, defaults, the bound
    object, closure contents, the globals its code names, its ``__dict__``), or None
    when the function has none of these (a callable object)."""
    if isinstance(func, partial):
        return None  # its keywords are a dict that can change in place: keyed again every time
    owner = getattr(func, "__self__", None)
    inner = getattr(func, "__func__", func)
    inner = numba_python_function(inner) or inner
    code = getattr(inner, "__code__", None)
    if not isinstance(code, CodeType):
        return None
    try:  # read as _function_key reads them: with getattr (a numba dispatcher has no closure)
        contents = [cell.cell_contents for cell in getattr(inner, "__closure__", None) or ()]
    except ValueError:  # an empty cell
        return None
    attributes = getattr(inner, "__dict__", None) or {}
    names = _global_names(code)
    globals_ = getattr(inner, "__globals__", None) or {}
    return [
        code, getattr(inner, "__defaults__", None), getattr(inner, "__kwdefaults__", None), owner, *contents,
        *attributes.keys(), *attributes.values(), *map(globals_.get, names, repeat(_ABSENT, len(names))),
    ]  # fmt: skip


def _fixed_root(root: Any) -> bool:
    """A root whose key cannot change in place (see ``_fixed``)."""
    return (
        root is _ABSENT or isinstance(root, CodeType) or _fixed(root)
        or (isinstance(root, ModuleType) and _is_library(root.__name__))
    )  # fmt: skip


def _fixed_function_roots(func: Any) -> list | None:
    """``_function_roots(func)`` when none of them can change in place, else None."""
    roots = _function_roots(func)
    return roots if roots is not None and all(map(_fixed_root, roots)) else None


def _class_roots(cls: type, fixed: bool = False) -> list | None:
    """The objects ``_class_key(cls)`` reads: the attributes of the model's classes in
    its MRO, and the roots of their methods; None when a method has none (with
    ``fixed``: also when one of them can change in place)."""
    roots: list = [cls.__mro__]
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] in _FRAMEWORK_MODULES:
            continue
        for name, value in vars(klass).items():
            if name.startswith("__") or name == "_abc_impl":
                continue
            roots += (name, value)
            if callable(value) or isinstance(value, (staticmethod, classmethod)):
                inner = (_fixed_function_roots if fixed else _function_roots)(value)
                if inner is None:
                    return None
                roots += inner
            elif fixed and not isinstance(value, property) and not _fixed(value):
                return None
    return roots


class _RootsWatch:
    """The key of a function or class, known without recomputing it while every
    object it was computed from (its roots) is the same object; used only when
    none of them can change in place.  Otherwise (a global naming a module, or a
    function or class of the model's; a list; a plain object) the key is computed
    again every time."""

    def __init__(
        self, obj: Any, key: Any, ident: Callable, roots_of: Callable, compute: Callable, roots: list | None,
        identities: _Identities | None = None,
    ) -> None:  # fmt: skip
        self.obj, self.key, self.ident, self.roots_of, self.compute = obj, key, ident, roots_of, compute
        self.roots = roots
        # the quick test (StructureWatch merges those of its watches into one)
        self.identities = identities if roots is not None else None
        self.same = None if self.identities is None else self.identities.same

    @classmethod
    def of_function(cls, func: Any, key: Any, ident: Callable) -> "_RootsWatch":
        roots = _fixed_function_roots(func)
        return cls(func, key, ident, _function_roots, _function_key, roots, roots and _function_identities(func))

    @classmethod
    def of_class(cls, klass: type, key: Any, ident: Callable) -> "_RootsWatch":
        roots = _class_roots(klass, fixed=True)
        return cls(klass, key, ident, _class_roots, _class_key, roots, roots and _class_identities(klass))

    def __call__(self) -> Any:
        if self.same is not None and self.same():  # the quick test: nothing it reads was replaced
            return self.key
        if self.roots is not None:
            roots = self.roots_of(self.obj)
            if roots is not None and len(roots) == len(self.roots) and all(map(operator.is_, roots, self.roots)):
                return self.key
        return self.compute(self.obj, self.ident)


_cell_contents = operator.attrgetter("cell_contents")  # ValueError for an empty cell


class _Identities:
    """A quick test that objects still hold what they held: attributes and entries
    (of dicts and class dicts) by identity, sizes, and names a dict must not hold.
    One C-level getter per object (``attrgetter``/``itemgetter`` of all its names at
    once), every value read compared in one pass; the tests of a watch's classes and
    functions are merged into one (``extend``)."""

    __slots__ = ("getters", "objects", "held", "sized", "sizes", "keys", "absent")

    def __init__(self) -> None:
        self.getters: list = []  # getters[i](objects[i]): a tuple of values, held[...] by identity
        self.objects: list = []
        self.held: list = []
        self.sized: list = []  # len(sized[i]) == sizes[i]
        self.sizes: list = []
        self.keys: list = []  # keys[i] (a dict's live keys view) holds none of absent[i]
        self.absent: list = []

    def _read(self, getter: Callable, obj: Any, names: tuple) -> None:
        if len(names) == 1:  # a getter of one name returns the value, not a tuple: read it twice
            names *= 2
        getter = getter(*names)
        self.getters.append(getter)
        self.objects.append(obj)
        self.held.extend(getter(obj))

    def attributes(self, obj: Any, *names: str) -> None:
        self._read(operator.attrgetter, obj, names)

    def entries(self, mapping: Any, names: Any, absent: Any = ()) -> None:
        """``mapping`` (a dict, or a class's mappingproxy: bound to its dict for good)
        holds ``names`` (the same values) and none of ``absent``."""
        names = tuple(names)
        if names:
            self._read(operator.itemgetter, mapping, names)
        if absent:
            self.keys.append(mapping.keys())
            self.absent.append(frozenset(absent))

    def size(self, sized: Any) -> None:
        self.sized.append(sized)
        self.sizes.append(len(sized))

    def extend(self, other: "_Identities") -> None:
        for name in self.__slots__:
            getattr(self, name).extend(getattr(other, name))

    def same(self) -> bool:
        try:  # a value gone (KeyError), an empty closure cell (ValueError): not the same
            return (
                all(map(operator.is_, chain.from_iterable(map(operator.call, self.getters, self.objects)), self.held))
                and list(map(len, self.sized)) == self.sizes
                and all(map(_isdisjoint, self.keys, self.absent))
            )  # fmt: skip
        except (KeyError, ValueError, AttributeError):
            return False


_isdisjoint = type({}.keys()).isdisjoint


@lru_cache(maxsize=4096)
def _loaded_globals(code: CodeType) -> frozenset[str]:
    """The names a code object (and the functions, lambdas and class bodies inside it)
    loads as globals or builtins (LOAD_GLOBAL, LOAD_NAME); the rest of ``co_names``
    are attribute names."""
    names = {i.argval for i in dis.get_instructions(code) if i.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if isinstance(const, CodeType):
            names |= _loaded_globals(const)
    return frozenset(names)


def _function_identities(func: Any) -> _Identities | None:
    """For a plain Python function (or a bound method, or a numba dispatcher of one): the
    identities ``_function_roots(func)`` holds -- its code, defaults, closure contents,
    attributes, and its globals by name: every name of ``_global_names`` the globals
    hold now (``_function_key`` keys them), and the names it loads as globals that they
    do not hold (a global that would now shadow a builtin); None for other callables."""
    if isinstance(func, partial):
        return None
    inner = getattr(func, "__func__", func)
    inner = numba_python_function(inner) or inner
    if not isinstance(inner, FunctionType):
        return None
    test = _Identities()
    test.attributes(inner, "__code__", "__defaults__", "__kwdefaults__", "__dict__")  # (__dict__: made on first read)
    for cell in inner.__closure__ or ():  # read-only: the same cells (and globals) for the function's life
        try:
            test.attributes(cell, "cell_contents")
        except ValueError:  # an empty cell
            return None
    attributes = inner.__dict__
    test.size(attributes)
    test.entries(attributes, attributes)
    globals_ = inner.__globals__
    code = inner.__code__
    names = _global_names(code)
    loaded = _loaded_globals(code)
    test.entries(globals_, [n for n in names if n in globals_], [n for n in names if n in loaded and n not in globals_])
    return test


def _same_function(func: Any) -> Callable[[], bool] | None:
    """For a plain Python function (or a bound method, or a numba dispatcher of one): a
    quick test that every object ``_function_roots(func)`` holds is still the one it
    holds now (a code, default, closure cell, attribute or global replaced: False);
    None for other callables (``_function_identities``)."""
    test = _function_identities(func)
    return None if test is None else test.same


def _class_identities(cls: type) -> _Identities | None:
    """The identities ``_class_key(cls)`` is computed from: the class's MRO, the size of
    the dict of each of the model's classes in it and the attributes it keys (not the
    dunders), and those of their methods (``_function_identities``); None when a
    method has none."""
    test = _Identities()
    test.attributes(cls, "__mro__")
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] in _FRAMEWORK_MODULES:
            continue
        attributes = vars(klass)
        test.size(attributes)
        keyed = [name for name in attributes if not (name.startswith("__") or name == "_abc_impl")]
        test.entries(attributes, keyed)
        for name in keyed:
            value = attributes[name]
            if callable(value) or isinstance(value, (staticmethod, classmethod)):
                inner = _function_identities(value)
                if inner is None:
                    return None
                test.extend(inner)
    return test


def _same_class(cls: type) -> Callable[[], bool] | None:
    """A quick test that the class's MRO, every attribute of the model's classes in it
    (by identity) and what their methods read are the objects they are now."""
    test = _class_identities(cls)
    return None if test is None else test.same


class StructureWatch:
    """The fingerprint of a tree, and a cheap test of whether it may have changed.

    ``simulate()`` runs the test before every run.  Edits made through dyngen's API
    (container entries, system attributes, subsystems, connections, the systems of
    a simulation) are counted by ``Edits``; while the count stands, only what the
    count cannot see is keyed again: each class (class attributes and the globals
    its methods read), each of the model's connection functions (globals, closure
    cells, defaults), and each value a system holds that can change in place (a
    list, a dict, an array, a plain object).  Everything else is the same objects
    as when the fingerprint was taken.
    """

    __slots__ = ("_edits", "_volatile", "numbers", "_tree", "_names", "_key", "flat", "persistent", "_tests", "_quick")

    def __init__(self, systems: list[Any], parameters: frozenset[tuple[int, str]] = frozenset()) -> None:
        self._edits = Edits.structure
        self._volatile: list[tuple[Callable[[], Any], Any]] = []
        ident = _PersistentIdentity(systems)
        # the systems' plain numeric attributes now (attributes.numeric_attributes)
        self.numbers: dict[tuple[int, str], tuple[Any, Any]] = {}
        tree = fingerprint(systems, ident, self._volatile, parameters, self.numbers)
        # The fingerprint names objects as structure_key does (one fingerprint serves
        # both: a fresh Simulation computes it once), plus the tree's own objects: a
        # system or container replaced by an equal one is a change for the bindings.
        self._tree, self._names, self._key = tree, ident.names, None  # key: made when first asked for
        self.flat = ident.flat  # the tree's systems in walk order (CompiledModel binds by them)
        self.persistent = None if ident.opaque else tree  # what structure_key hashes
        # per volatile part: the quick identity test of a function or class watch (or
        # None), then the part computed again when that fails; and the quick tests merged
        # into one, with the parts that have none (made at the first test: a fresh
        # Simulation's first run needs none)
        self._tests: list[tuple[Callable[[], bool] | None, Callable[[], Any], Any]] | None = None
        self._quick: tuple[_Identities, list[tuple[Callable[[], Any], Any]]] | None = None

    def adopt(self, equal: tuple) -> None:
        """Keep ``equal``, a fingerprint equal to this one's (``persistent``), instead:
        fresh Simulations of one model then share one, made and compared once."""
        self._tree = self.persistent = equal

    @property
    def key(self) -> tuple:
        """The fingerprint, and the ids of the tree's systems and containers."""
        if self._key is None:
            self._key = (self._tree, tuple(self._names))
        return self._key

    def unchanged(self) -> bool:
        """True when the fingerprint is certainly still ``key``; False when it may differ."""
        if Edits.structure != self._edits:
            return False
        quick = self._quick
        if quick is None:
            quick = self._quick = self._merged()
        if quick[0].same():  # every class and function watched: nothing it reads was replaced
            for recompute, key in quick[1]:  # the values that can change in place: keyed again
                if recompute() != key:
                    return False
            return True
        for same, recompute, key in self._tests:  # something was: which, and does it change the key
            if (same is None or not same()) and recompute() != key:
                return False
        return True

    def _merged(self) -> tuple[_Identities, list[tuple[Callable[[], Any], Any]]]:
        """The quick tests of the volatile parts as one (``_Identities``), and the parts
        that have none; sets ``_tests``, the parts one by one."""
        merged, others = _Identities(), []
        self._tests = []
        for recompute, key in self._volatile:
            identities = recompute.identities if isinstance(recompute, _RootsWatch) else None
            self._tests.append((None if identities is None else identities.same, recompute, key))
            if identities is None:
                others.append((recompute, key))
            else:
                merged.extend(identities)
        return merged, others


@lru_cache(maxsize=4096)
def _code_key(code: CodeType) -> tuple:
    """What a code object does and where it is (its lines are in the module's comments)."""
    consts = tuple(
        _code_key(c) if isinstance(c, CodeType) else repr(sorted(c, key=repr)) if isinstance(c, frozenset) else repr(c)
        for c in code.co_consts
    )
    return (
        code.co_filename, code.co_qualname, code.co_firstlineno, code.co_code, consts, code.co_names,
        code.co_varnames, code.co_freevars, code.co_cellvars, code.co_flags, code.co_linetable,
    )  # fmt: skip


@lru_cache(maxsize=4096)
def _code_digest(code: CodeType) -> str:
    """``_code_key`` hashed: the structure key's text holds this, not the bytecode."""
    return hashlib.sha256(repr(_code_key(code)).encode("utf-8")).hexdigest()


_CONTAINER_ATTRIBUTES = (("states", "_states"), ("ders", "_ders"), ("inputs", "_inputs"), ("outputs", "_outputs"))
_CONTAINERS = operator.attrgetter(*(attribute for _, attribute in _CONTAINER_ATTRIBUTES))


def _names_of(index: int) -> tuple[tuple, tuple[tuple, ...]]:
    """The names of the system at ``index`` and of its containers (made once per index:
    every fingerprint of a tree that large uses them)."""
    while len(_NAMES) <= index:
        at = len(_NAMES)
        _NAMES.append((("system", at), tuple(("container", at, kind) for kind, _ in _CONTAINER_ATTRIBUTES)))
    return _NAMES[index]


_NAMES: list[tuple[tuple, tuple[tuple, ...]]] = []


class _PersistentIdentity:
    """Names that mean the same object in another process: a system by its place in
    the tree, a container by its system's place and kind, a function by its code, a
    class by its module and name.  Any other object is named by its id, and ``opaque``
    is set: such a fingerprint names the model in this process only."""

    __slots__ = ("opaque", "names", "flat")

    def __init__(self, systems: list[Any]) -> None:
        self.opaque = False
        self.names: dict[int, Any] = {}
        self.flat = _walk_order(systems)  # the tree's systems in walk order, subsystems first
        names = self.names
        for index, system in enumerate(self.flat):
            known = _NAMES[index] if index < len(_NAMES) else _names_of(index)
            names[id(system)] = known[0]
            try:
                containers = _CONTAINERS(system)
            except AttributeError:  # not a System (the build reports it)
                containers = tuple(getattr(system, attribute, None) for _, attribute in _CONTAINER_ATTRIBUTES)
            if None in containers:
                names.update((id(c), name) for c, name in zip(containers, known[1]) if c is not None)
            else:
                names.update(zip(map(id, containers), known[1]))

    def __call__(self, obj: Any) -> Any:
        known = self.names.get(id(obj))
        if known is not None:
            return known
        if type(obj) is FunctionType:  # the common case first
            return ("function", _code_digest(obj.__code__))
        if isinstance(obj, type):
            return ("class", obj.__module__, obj.__qualname__)
        code = getattr(getattr(obj, "__func__", obj), "__code__", None)
        if isinstance(code, CodeType):
            return ("function", _code_digest(code))
        self.opaque = True
        return ("o", id(obj))




# What _user_sources_digest learnt: per module name, the module object and the real
# path of its file when it is one of the user's (else None); per file, its stamp
# (size, modification time in ns, inode) and the hash of its text; the sys.modules
# the user's files were last found in (``_modules_mark``) and those files; and the
# digest of the last set of (file, stamp).
_USER_FILE_OF: dict[str, tuple[Any, str | None]] = {}
_FILE_HASHES: dict[str, tuple[tuple[int, int, int], bytes]] = {}
_USER_FILES: list[Any] = [None, (), ()]  # [mark, sorted real paths, the same encoded (os.stat takes them faster)]
_SOURCES_DIGEST: list[Any] = [None, None, ""]  # [(path, ...), (stamp, ...), digest]


def _user_file(name: str, module: Any, roots: tuple[str, ...]) -> str | None:
    if name.split(".")[0] in ("dyngen", "dyngen_generated"):  # in _dyngen_source_digest; or generated
        return None
    path = getattr(module, "__file__", None)
    if isinstance(path, str) and path.endswith(".py") and not path.startswith(roots):
        real = os.path.realpath(path)
        if not real.startswith(roots):
            return real
    return None


def _stamp(path: str) -> tuple[int, int, int] | None:
    """What changes when a file is written or replaced: its size, modification time
    (ns) and inode; None when it cannot be looked at."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return (status.st_size, status.st_mtime_ns, status.st_ino)


def _file_hash(path: str, stamp: tuple[int, int, int] | None = None) -> bytes:
    """The hash of a file's text, read again only when its stamp (size, time, inode) changed."""
    stamp = stamp or _stamp(path)
    if stamp is None:
        return b"<unreadable>"
    known = _FILE_HASHES.get(path)
    if known is not None and known[0] == stamp:
        return known[1]
    try:
        data = Path(path).read_bytes()
    except OSError:
        return b"<unreadable>"
    digest = hashlib.sha256(data).digest()
    if _stamp(path) == stamp:  # not written while it was read (else: read again next time)
        _FILE_HASHES[path] = (stamp, digest)
    return digest


def _modules_mark() -> tuple[int, str | None, Any]:
    """A cheap sign that ``sys.modules`` changed: its length and its last entry (a
    module imported, or removed and imported again, is added at the end)."""
    modules = sys.modules
    last = next(reversed(modules), None)
    return (len(modules), last, modules.get(last) if last is not None else None)


def _user_files() -> tuple[str, ...]:
    """``user_source_files``, sorted; sys.modules is scanned again only when it changed
    (``_modules_mark``): a process holds a thousand modules or more."""
    mark = _modules_mark()
    known = _USER_FILES[0]
    if known is not None and known[0] == mark[0] and known[1] == mark[1] and known[2] is mark[2]:
        return _USER_FILES[1]
    roots = library_roots()
    files = set()
    modules = dict(sys.modules)
    if len(_USER_FILE_OF) > len(modules):  # forget modules no longer loaded (and release them)
        for name in [n for n in _USER_FILE_OF if n not in modules]:
            del _USER_FILE_OF[name]
    for name, module in modules.items():
        entry = _USER_FILE_OF.get(name)
        if entry is None or entry[0] is not module:
            entry = _USER_FILE_OF[name] = (module, _user_file(name, module, roots))
        if entry[1] is not None:
            files.add(entry[1])
    paths = tuple(sorted(files))
    _USER_FILES[:] = [mark, paths, tuple(map(os.fsencode, paths))]
    return paths


def user_source_files() -> set[str]:
    """The real paths of every loaded Python file that is not an installed library
    nor dyngen's: the model file and every module of the user's it imports."""
    return set(_user_files())


def _user_sources_digest() -> str:
    """The text of every loaded Python file that is not an installed library: the
    model file and every module of the user's it imports.

    Code the key does not reach (the methods of a helper object's class, a property,
    a numba helper's globals) is covered this way: any edit of the user's sources is
    a new key.  Costs a stat per file while neither sys.modules nor any file changed:
    a file's text is hashed again only when its size, modification time (ns) or inode
    changed, an edit that keeps all three within the file system's clock tick is not seen.
    """
    files = _user_files()
    try:  # (the stats in C: a stat per file is most of what this costs when nothing changed)
        stamps = tuple(map(_STAMP, map(os.stat, _USER_FILES[2])))
    except OSError:  # a file gone: None, and nothing remembered
        stamps = tuple(map(_stamp, files))
    known = _SOURCES_DIGEST
    if files == known[0] and stamps == known[1]:
        return known[2]
    hasher = hashlib.sha256()
    for path, stamp in zip(files, stamps):
        hasher.update(path.encode("utf-8") + b"\0" + _file_hash(path, stamp) + b"\0")
    digest = hasher.hexdigest()
    if None not in stamps:
        _SOURCES_DIGEST[:] = [files, stamps, digest]
    return digest


_STAMP = operator.attrgetter("st_size", "st_mtime_ns", "st_ino")  # _stamp of a stat result


def library_dependencies(packages: set[str]) -> dict[str, str]:
    """The files (real path -> SHA-256) of the installed packages whose code the traced
    functions called (``calls.recording_library_calls``): every loaded module of each
    such package, outside numpy, scipy, sympy, numba, dyngen, dynode and the standard
    library.

    The structure key cannot reach them (a method of a library object's class, and
    everything it calls in its package): a module found by the key is used only while
    these files are unchanged (``dependencies_unchanged``).  The user's own files are in
    the key already (``_user_sources_digest``).
    """
    packages = set(packages) - {*_LIBRARIES, *sys.stdlib_module_names, "dyngen_generated", "__main__"}
    if not packages:
        return {}
    roots = library_roots()
    files = {}
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if name.split(".")[0] in packages and isinstance(path, str) and os.path.abspath(path).startswith(roots):
            real = os.path.realpath(path)
            files[real] = _file_hash(real).hex()
    return dict(sorted(files.items()))


def dependencies_unchanged(files: dict[str, str]) -> bool:
    """Whether the files ``library_dependencies`` recorded still hold the same text."""
    return not files or all(_file_hash(path).hex() == digest for path, digest in files.items())


@lru_cache(maxsize=1)
def _dyngen_source_digest() -> str:
    """dyngen's own code and templates: what traces, derives and renders the model."""
    package = Path(__file__).resolve().parent.parent
    hasher = hashlib.sha256()
    for path in sorted([*package.rglob("*.py"), *Path(template_dir()).glob("*.j2")]):
        hasher.update(path.name.encode("utf-8") + b"\0" + path.read_bytes() + b"\0")
    return hasher.hexdigest()


@lru_cache(maxsize=1)
def sympy_version() -> str:
    """sympy's version, read from its ``release.py`` without importing sympy (a warm
    start does not need it: 0.2 s); imported only if that file cannot be read."""
    import importlib.util
    import re

    try:
        spec = importlib.util.find_spec("sympy")
        if spec is not None and spec.origin:
            text = Path(spec.origin).with_name("release.py").read_text(encoding="utf-8")
            found = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", text, re.MULTILINE)
            if found:
                return found.group(1)
    except (OSError, ImportError, ValueError):
        pass
    import sympy

    return str(sympy.__version__)


def structure_key(
    systems: list[Any], context: tuple, parameters: frozenset[tuple[int, str]] = frozenset(),
    watch: StructureWatch | None = None,
) -> str | None:  # fmt: skip
    """A hash that names the model's structure across processes, or None when the
    tree holds an object only its identity can describe.

    ``context`` is everything else the generated module depends on (its name, the
    model file's folder, the build options).  dyngen's source, the text of the
    user's loaded source files, and the Python, numpy and sympy versions are added
    here.  ``parameters``: as for ``fingerprint`` (their names belong in ``context``).
    ``watch``: a ``StructureWatch`` of these systems and parameters taken now, whose
    fingerprint is used instead of computing it again.
    """
    if watch is None:
        ident = _PersistentIdentity(systems)
        key = fingerprint(systems, ident, None, parameters)
        if ident.opaque:
            return None
    elif watch.persistent is None:
        return None
    else:
        key = watch.persistent
    whole = (key, context, _dyngen_source_digest(), _user_sources_digest(), sys.version, np.__version__, sympy_version())
    known = _STRUCTURE_HASHES.get(whole)  # a fresh Simulation of a model keyed before: no repr, no sha256
    if known is None:
        if len(_STRUCTURE_HASHES) >= 256:
            _STRUCTURE_HASHES.clear()
        known = _STRUCTURE_HASHES[whole] = (hashlib.sha256(repr(whole).encode("utf-8")).hexdigest(), key)
    elif watch is not None:  # the watch keeps the equal fingerprint known before (its own is let go now)
        watch.adopt(known[1])
    return known[0]


# structure_key's hashes by the key itself: equal keys have equal text (numbers whose
# equality is looser than their text, 1 == 1.0 or -0.0 == 0.0, are keyed by repr)
_STRUCTURE_HASHES: dict[tuple, tuple[str, tuple]] = {}  # (the hash, the fingerprint in the key)
