"""Plain numeric attributes of systems traced as parameters (``Simulation.make_parameter``).

A model reads constants such as ``self.max_tilt`` in ``do_step``; traced, they become
numbers in the generated module, so changing one rebuilds the model.  An attribute
named ``"<system path>.<attribute>"`` can instead be traced as a parameter: while the
model is traced, a data descriptor on the system's class (it takes precedence over
the instance's ``__dict__``) hands the tracer's symbol to reads of that attribute of
that system, records the read as a read of a signal (as a container read is), and
leaves every other object of the class alone; the class is restored afterwards.  The
module then reads the value from the parameter vector, which ``gather_parameters``
fills from the attribute at each run.

No sympy here: ``Simulation`` resolves names with it on a warm start.
"""

from __future__ import annotations

import difflib
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np

from .errors import UsageError

_MISSING = object()


def is_number(value: Any) -> bool:
    """An int or float (numpy's too), not a bool: what a parameter attribute may hold."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def numeric_attributes(systems: list[Any]) -> dict[tuple[int, str], tuple[Any, Any]]:
    """Every plain number a system of the tree (subsystems too) holds as a public
    attribute of its own: ``(id(system), name) -> (system, value)``."""
    found: dict[tuple[int, str], tuple[Any, Any]] = {}
    stack = list(systems)
    while stack:
        system = stack.pop()
        stack.extend(getattr(system, "subsystems", ()))
        for name, value in vars(system).items():
            if name[:1] != "_" and is_number(value):
                found[(id(system), name)] = (system, value)
    return found


def _close(word: str, choices: list[str]) -> str:
    matches = difflib.get_close_matches(word, choices, n=4, cutoff=0.5)
    return f"; did you mean {' or '.join(repr(m) for m in matches)}?" if matches else ""


def resolve(name: Any, nodes: list[Any]) -> tuple[Any, str, str]:
    """The system, its path and the attribute that ``name`` ("<system path>.<attribute>",
    paths as in the module's ``SYSTEMS``) names; a ``UsageError`` that says what is wrong
    (with close matches) when it is not a plain numeric attribute of a system."""
    usage = "make_parameter(name): name is '<system path>.<attribute>' (e.g. 'Quad.max_tilt')"
    if not isinstance(name, str) or "." not in name:
        return _fail(f"{usage}, not {name!r}")
    path, attribute = name.rsplit(".", 1)
    systems = {node.path: node.system for node in nodes}
    if path not in systems:
        path, attribute = _split_container_name(name, systems)
        if path not in systems:
            return _fail(f"make_parameter({name!r}): the model has no system {path!r}{_close(path, list(systems))} "
                         f"(system paths: {', '.join(list(systems)[:8])}{', ...' if len(systems) > 8 else ''})")
        kind, key = attribute.split(".", 1)
        container = getattr(systems[path], kind)
        if not dict.__contains__(container, key):
            known = [k for k in dict.keys(container) if isinstance(k, str)]
            return _fail(
                f"make_parameter({name!r}): {path} has no {kind} {key!r}{_close(key, known)} "
                f"(its {kind}: {', '.join(known) or 'none'})"
            )
        why = {
            "inputs": "an input that no connection drives is a parameter already: changing it needs no rebuild",
            "states": "a state is set before a run (system.states.<key> = ...; see also Simulation.reset()) "
                      "and needs no rebuild",
        }.get(kind, "only plain attributes of a system (self.k = 1.0 in __init__) can be made parameters")
        return _fail(f"make_parameter({name!r}): {kind}.{key} is an entry of a container, not a plain attribute; {why}")
    system = systems[path]
    own = vars(system)
    numbers = sorted(k for k, v in own.items() if not k.startswith("_") and is_number(v))
    if attribute not in own or attribute.startswith("_"):
        cls_value = getattr(type(system), attribute, _MISSING)
        if cls_value is not _MISSING and is_number(cls_value):
            return _fail(
                f"make_parameter({name!r}): {attribute} is an attribute of the class {type(system).__name__}, "
                f"shared by all its systems; set it on the system instead (self.{attribute} = ... in __init__, "
                f"or system.{attribute} = ...) to make it a parameter of {path}"
            )
        return _fail(
            f"make_parameter({name!r}): {path} ({type(system).__name__}) has no attribute {attribute!r}"
            f"{_close(attribute, numbers)} (its numeric attributes: {', '.join(numbers) or 'none'})"
        )
    value = own[attribute]
    if not is_number(value):
        hint = (
            "an array can be a parameter as an input: self.inputs." + attribute + " = ... (an input no connection "
            "drives is read at every run)" if isinstance(value, (np.ndarray, list, tuple)) else
            "only an attribute that holds a number (int or float) can be a parameter"
        )  # fmt: skip
        return _fail(f"make_parameter({name!r}): {path}.{attribute} holds {value!r} ({type(value).__name__}); {hint}")
    return system, path, attribute


def _split_container_name(name: str, systems: dict[str, Any]) -> tuple[str, str]:
    """``"P.inputs.k"`` -> (``"P"``, ``"inputs.k"``) when ``P`` is a system; else the
    name split at its last dot."""
    for kind in ("states", "ders", "inputs", "outputs"):
        marker = f".{kind}."
        if marker in name:
            path, key = name.split(marker, 1)
            if path in systems:
                return path, f"{kind}.{key}"
    return tuple(name.rsplit(".", 1))  # type: ignore[return-value]


def _fail(message: str) -> Any:
    raise UsageError(message)


class _TracedAttribute:
    """A data descriptor placed on a class while its model is traced: reads of the
    attribute of the systems in ``refs`` go to ``read``; everything else sees the
    instance's own value (or the class's)."""

    def __init__(self, name: str, original: Any, read: Callable[[Any, Any], Any]) -> None:
        self.name = name
        self.original = original
        self.read = read
        self.refs: dict[int, Any] = {}

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            if self.original is _MISSING:
                raise AttributeError(self.name)
            return self.original
        ref = self.refs.get(id(obj))
        own = obj.__dict__
        if ref is not None:
            return self.read(ref, own.get(self.name))
        if self.name in own:
            return own[self.name]
        if self.original is _MISSING:
            raise AttributeError(self.name)
        getter = getattr(type(self.original), "__get__", None)
        return getter(self.original, obj, owner) if getter is not None else self.original

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__[self.name] = value

    def __delete__(self, obj: Any) -> None:
        del obj.__dict__[self.name]


@contextmanager
def traced_attributes(promoted: list[tuple[Any, str, Any]], read: Callable[[Any, Any], Any]) -> Iterator[None]:
    """While it lasts, ``system.<name>`` of every ``(system, name, ref)`` in ``promoted``
    is ``read(ref, value)`` (the tracer's symbol); the classes are restored at the end."""
    placed: dict[tuple[type, str], _TracedAttribute] = {}
    try:
        for system, name, ref in promoted:
            cls = type(system)
            descriptor = placed.get((cls, name))
            if descriptor is None:
                descriptor = _TracedAttribute(name, vars(cls).get(name, _MISSING), read)
                type.__setattr__(cls, name, descriptor)
                placed[(cls, name)] = descriptor
            descriptor.refs[id(system)] = ref
        yield
    finally:
        for (cls, name), descriptor in placed.items():
            if descriptor.original is _MISSING:
                type.__delattr__(cls, name)
            else:
                type.__setattr__(cls, name, descriptor.original)
