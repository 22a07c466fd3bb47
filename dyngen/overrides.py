"""Values set by name from the command line: ``--set NAME=VALUE`` and ``--arg NAME=VALUE``.

Names are the generated module's: ``"<system path>.inputs.<key>"`` (a parameter: an
input no connection drives), ``"<system path>.states.<key>"`` (an initial state),
an element of either (``"Particle2D.states.q[1]"``), or ``"<system path>.<attribute>"``
(a plain numeric attribute of a system, set before the model is built).
"""

from __future__ import annotations

import ast
import difflib
import re
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .errors import ArgumentError
from .tree import walk

_ELEMENT = re.compile(r"^(?P<base>.+)\[(?P<index>\s*\d+\s*(?:,\s*\d+\s*)*)\]$")


def split_assignment(text: str, option: str) -> tuple[str, str]:
    """``"NAME=VALUE"`` -> ``("NAME", "VALUE")``, or an ArgumentError saying what to write."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise ArgumentError(f"{option} {text!r}: write {option} NAME=VALUE (e.g. {option} VanDerPol.inputs.mu=2.5)")
    return name.strip(), value.strip()


def parse_literal(text: str) -> Any:
    """A Python literal (``2.5``, ``[1, 2]``, ``'wide'``, ``True``); any other text is a string."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return text


def parse_number(option: str, name: str, text: str) -> float | np.ndarray:
    """A number (``2.5``, ``1e-3``, ``nan``, ``inf``) or a list of numbers (a float array)."""
    try:
        return float(text)
    except ValueError:
        pass
    value = parse_literal(text)
    array = None
    if isinstance(value, (list, tuple)):
        try:
            array = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            array = None
    if array is None or array.dtype == object:
        raise ArgumentError(
            f"{option} {name}={text}: {text!r} is not a number; write a number (e.g. {name}=2.5) "
            "or, for an array, a list of numbers in brackets (e.g. [1.0, 2.0])"
        )
    return array


@dataclass(frozen=True)
class Target:
    """What a name refers to: the system, ``kind`` ("states", "inputs" or "attribute"),
    the key (or attribute name) and an element index (or None for the whole value)."""

    name: str
    path: str
    system: Any
    kind: str
    key: str
    index: tuple[int, ...] | None

    def current(self) -> Any:
        if self.kind == "attribute":
            return getattr(self.system, self.key)
        return getattr(self.system, self.kind)[self.key]

    def assign(self, value: float | np.ndarray, option: str) -> None:
        """Set the value (checked against the shape of the one it replaces)."""
        current = self.current()
        if self.kind == "attribute":
            if np.ndim(value) != 0:
                raise ArgumentError(f"{option} {self.name}: it is a number; give one number, not {value.tolist()!r}")
            setattr(self.system, self.key, int(value) if type(current) is int and float(value).is_integer() else float(value))
            return
        container = getattr(self.system, self.kind)
        shape = np.shape(current)
        if self.index is not None:
            array = np.array(current, dtype=np.float64)
            if len(self.index) != array.ndim or any(i >= n for i, n in zip(self.index, array.shape)):
                raise ArgumentError(
                    f"{option} {self.name}: {self.path}.{self.kind}.{self.key} has shape {array.shape}; "
                    f"the index {list(self.index)} is outside it"
                )
            if np.ndim(value) != 0:
                raise ArgumentError(f"{option} {self.name}: one element takes one number")
            array[self.index] = value
            container[self.key] = array
            return
        if np.size(value) != int(np.prod(shape)) or (np.ndim(value) != 0 and np.shape(value) != shape and shape != ()):
            raise ArgumentError(
                f"{option} {self.name}: it holds values of shape {shape}, the value given has shape {np.shape(value)}"
            )
        if shape == ():
            container[self.key] = float(value)
        else:
            container[self.key] = np.array(value, dtype=np.float64).reshape(shape)


def resolve(systems: list[Any], name: str, option: str = "--set") -> Target:
    """The target of ``name``, or an ArgumentError listing the names closest to it."""
    nodes = walk(systems)
    base, index = name, None
    match = _ELEMENT.match(name)
    if match:
        base = match["base"]
        index = tuple(int(i) for i in match["index"].split(","))
    candidates = [n for n in nodes if base.startswith(n.path + ".")]
    for node in sorted(candidates, key=lambda n: len(n.path), reverse=True):
        rest = base[len(node.path) + 1:]
        kind, _, key = rest.partition(".")
        if kind in ("states", "inputs") and key in getattr(node.system, kind, {}):
            return Target(name, node.path, node.system, kind, key, index)
        if kind in ("outputs", "ders") and key in getattr(node.system, kind, {}):
            raise ArgumentError(
                f"{option} {name}: {kind} are computed by the model; set a parameter "
                f"({node.path}.inputs.KEY) or an initial state ({node.path}.states.KEY)"
            )
        if "." not in rest and index is None and _is_number(getattr(node.system, rest, None)):
            return Target(name, node.path, node.system, "attribute", rest, None)
    close = difflib.get_close_matches(base, settable_names(nodes), n=5, cutoff=0.5)
    hint = f"; did you mean {' or '.join(close)}?" if close else f"; names look like {_example(nodes)}"
    raise ArgumentError(f"{option} {name}: the model has no such parameter, state or numeric attribute{hint}")


def settable_names(nodes: list[Any]) -> list[str]:
    """Every name ``--set`` could take (before knowing which inputs connections drive)."""
    names = []
    for node in nodes:
        for kind in ("states", "inputs"):
            names += [f"{node.path}.{kind}.{key}" for key in getattr(node.system, kind, {})]
        names += [f"{node.path}.{attr}" for attr, value in vars(node.system).items()
                  if not attr.startswith("_") and _is_number(value)]  # fmt: skip
    return names


def _example(nodes: list[Any]) -> str:
    return ", ".join(settable_names(nodes)[:3]) or "<system path>.inputs.<key>"


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) or isinstance(value, np.floating)


def check_parameters(targets: list[Target], parameters: dict, option: str = "--set") -> None:
    """After the build: an input a connection drives is not a parameter (the value set
    would be overwritten); ``parameters`` is the module's ``PARAMETERS`` table."""
    for target in targets:
        if target.kind == "inputs" and f"inputs.{target.key}" not in parameters.get(target.path, {}):
            raise ArgumentError(
                f"{option} {target.name}: a connection drives {target.path}.inputs.{target.key}, so it is not a "
                "parameter (the value would be overwritten); set a parameter or a state of the system that drives it"
            )


def parse_sweep(option: str, name: str, text: str) -> np.ndarray | None:
    """The values of a swept name: ``START:STOP:COUNT`` (``COUNT`` evenly spaced values,
    both ends included) or ``V1,V2,...``; None for one value (not swept)."""
    if ":" in text:
        parts = text.split(":")
        try:
            if len(parts) != 3:
                raise ValueError
            start, stop, count = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise ArgumentError(
                f"{option} {name}={text}: write a range as START:STOP:COUNT (e.g. {name}=0.5:2.5:5, COUNT a whole number)"
            ) from None
        if count < 1:
            raise ArgumentError(f"{option} {name}={text}: COUNT must be at least 1")
        return np.linspace(start, stop, count)
    if "," in text and not text.lstrip().startswith(("[", "(")):
        try:
            return np.array([float(v) for v in text.split(",")])
        except ValueError:
            raise ArgumentError(f"{option} {name}={text}: write a list of numbers as V1,V2,... (e.g. {name}=1,2.5,4)") from None
    return None


def apply_settings(simulation: Any, settings: Sequence[str], option: str = "--set") -> list[Target]:
    """Set every ``NAME=VALUE`` of ``settings`` on the simulation's systems, then build
    and check that every input set is a parameter."""
    targets = []
    for text in settings:
        name, value = split_assignment(text, option)
        target = resolve(simulation.systems, name, option)
        target.assign(parse_number(option, name, value), option)
        targets.append(target)
    check_parameters(targets, simulation.module.PARAMETERS, option)
    return targets
