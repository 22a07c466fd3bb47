"""Walking a system tree: readable paths and dynode's evaluation order."""

from __future__ import annotations

import inspect
from functools import partial
from types import CodeType
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .errors import ModelError, SourceLocation
from .system import System, callable_name


@dataclass(frozen=True)
class SystemNode:
    path: str
    system: Any  # a dyngen.System (or anything with dynode's interface)


@dataclass(frozen=True)
class FunctionCall:
    """One call dynode makes per RHS evaluation: ``do_step`` or a connection."""

    node: SystemNode
    kind: str  # "do_step" | "pre-connection" | "post-connection"
    func: Callable


def _attribute_names(parent: Any) -> dict[int, str]:
    names: dict[int, str] = {}
    for attr, value in vars(parent).items():
        if attr.startswith("_"):
            continue
        if isinstance(value, (list, tuple)):
            for i, item in enumerate(value):
                names.setdefault(id(item), f"{attr}[{i}]")
        elif isinstance(value, dict):
            for key, item in value.items():
                names.setdefault(id(item), f"{attr}[{key!r}]")
        else:
            names.setdefault(id(value), attr)
    return names


def _names_for(systems: Iterable[Any], named: dict[int, str]) -> list[str]:
    systems = list(systems)
    counts: dict[str, int] = {}  # plain dicts: this runs for every new Simulation
    for system in systems:
        cls = type(system).__name__
        counts[cls] = counts.get(cls, 0) + 1
    seen: dict[str, int] = {}
    names = []
    for system in systems:
        own = getattr(system, "name", None)
        if isinstance(own, str) and own:
            names.append(own)
        elif id(system) in named:
            names.append(named[id(system)])
        else:
            cls = type(system).__name__
            names.append(cls if counts[cls] == 1 else f"{cls}[{seen.get(cls, 0)}]")
            seen[cls] = seen.get(cls, 0) + 1
    if len(set(names)) == len(names):
        return names
    duplicates = {n for n, c in Counter(names).items() if c > 1}
    for n in duplicates:  # two systems that claim the same name: number them
        k = 0
        for i, name in enumerate(names):
            if name == n:
                names[i] = f"{n}[{k}]"
                k += 1
    return names


def check_not_dynode(system: Any, path: str) -> None:
    """Refuse a system of the real dynode package (a half-ported model): its containers
    are not dyngen's, so dyngen can neither trace nor run it."""
    if isinstance(system, System):
        return
    cls = type(system)
    base = next((c for c in cls.__mro__ if (c.__module__ or "").split(".")[0] == "dynode"), None)
    if base is None:
        return
    try:
        _, line = inspect.getsourcelines(cls)
        where = f" (defined at {inspect.getsourcefile(cls)}:{line})"
    except (OSError, TypeError):
        where = ""
    raise ModelError(
        f"{path} is a dynode system, not a dyngen one: its class {cls.__qualname__}{where} derives from "
        f"{base.__module__}.{base.__qualname__}; dyngen compiles only its own systems: in the model, import "
        "SystemInterface from dyngen instead of dynode (`from dyngen import SystemInterface`; likewise "
        "Simulation, Recorder and connect_signals)"
    )


def walk(systems: list[Any]) -> list[SystemNode]:
    """All systems in dynode's state order: subsystems before their parent."""
    nodes: list[SystemNode] = []
    seen: dict[int, str] = {}

    def visit(system: Any, path: str) -> None:
        check_not_dynode(system, path)
        if not hasattr(system, "do_step") or not hasattr(system, "states"):
            raise ModelError(f"{path} is a {type(system).__name__}, not a dyngen.System")
        if id(system) in seen:
            raise ModelError(
                f"the same system object is in the model twice, as {seen[id(system)]!r} and "
                f"{path!r}; its states would be integrated twice. Create a separate instance "
                "for each place."
            )
        seen[id(system)] = path
        subs = list(system.subsystems)
        for sub, name in zip(subs, _names_for(subs, _attribute_names(system))):
            visit(sub, f"{path}.{name}")
        nodes.append(SystemNode(path, system))

    for system, name in zip(systems, _names_for(systems, {})):
        visit(system, name)
    paths = [n.path for n in nodes]
    clashes = [] if len(set(paths)) == len(paths) else sorted(p for p, count in Counter(paths).items() if count > 1)
    if clashes:
        raise ModelError(
            f"two systems have the same path {clashes[0]!r} (a `name` attribute that contains '.' "
            "or repeats another system's path?); give them distinct names"
        )
    return nodes


def _sorted_connections(system: Any, kind: str) -> list[Callable]:
    if isinstance(system, System):
        return system.pre_connections if kind == "pre" else system.post_connections
    from graphlib import TopologicalSorter

    table = system._pre_connections if kind == "pre" else system._post_connections
    return list(TopologicalSorter(table).static_order())


def evaluation_order(systems: list[Any], nodes: list[SystemNode]) -> list[FunctionCall]:
    """The calls of one dynode RHS evaluation, in dynode's order."""
    by_id = {id(n.system): n for n in nodes}
    calls: list[FunctionCall] = []

    def step(system: Any) -> None:
        for sub in system.subsystems:
            step(sub)
        node = by_id[id(system)]
        for con in _sorted_connections(system, "pre"):
            calls.append(FunctionCall(node, "pre-connection", con))
        calls.append(FunctionCall(node, "do_step", type(system).do_step))
        for con in _sorted_connections(system, "post"):
            calls.append(FunctionCall(node, "post-connection", con))

    for system in systems:
        step(system)
    return calls


def function_location(func: Callable) -> SourceLocation | None:
    """Where a function is defined (for connect_signals: where it was called)."""
    origin = getattr(func, "_dyngen_origin", None)
    if origin is not None:
        return origin
    while isinstance(func, partial):
        func = func.func
    try:
        func = inspect.unwrap(func)
    except ValueError:  # a cycle of __wrapped__
        pass
    code = getattr(func, "__code__", None)
    if not isinstance(code, CodeType):  # a callable object: its class's __call__
        code = getattr(getattr(type(func), "__call__", None), "__code__", None)
    if not isinstance(code, CodeType):  # a builtin
        return None
    return SourceLocation(code.co_filename, code.co_firstlineno)


def function_name(call: FunctionCall) -> str:
    if call.kind == "do_step":
        return f"{type(call.node.system).__name__}.do_step"
    link = getattr(call.func, "_dyngen_signal_link", None)
    if link is not None:
        return "connect_signals"
    return callable_name(call.func)
