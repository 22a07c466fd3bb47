"""A cheap structural fingerprint of a system tree.

``simulate()`` re-traces only when this changes: a new system, subsystem or
connection, a container key or shape, a non-numeric input, or a plain attribute of
a system (constants such as ``self.k`` are compiled into the equations).  Numeric
input values are not part of it: they are runtime parameters.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from ..trace import numeric_value
from ..tree import walk


def _value_key(value: Any) -> Any:
    array = numeric_value(value)
    if array is not None:
        return ("n", array.shape)
    if value is None or isinstance(value, (str, bool, np.bool_)):
        return ("c", repr(value))
    return ("o", id(value))


def _attribute_key(value: Any) -> Any:
    if isinstance(value, (int, float, complex, str, bool, type(None))):
        return repr(value)
    if isinstance(value, np.ndarray) and value.dtype != object:
        return (value.shape, hashlib.sha1(np.ascontiguousarray(value).tobytes()).hexdigest())
    if isinstance(value, (tuple, list)) and len(value) < 64:
        return tuple(_attribute_key(v) for v in value)
    return ("o", id(value))


def _function_key(func: Any) -> Any:
    cells = getattr(func, "__closure__", None) or ()
    contents = []
    for cell in cells:
        try:
            contents.append(_attribute_key(cell.cell_contents))
        except ValueError:  # empty cell
            contents.append(None)
    return (id(func), tuple(contents))


def fingerprint(systems: list[Any]) -> tuple:
    """Everything about the tree that would change the generated module."""
    parts = []
    for node in walk(systems):
        system = node.system
        containers = tuple(
            tuple((key, _value_key(value)) for key, value in getattr(system, kind).raw_items())
            for kind in ("states", "ders", "inputs", "outputs")
        )
        connections = tuple(
            (_function_key(f), tuple(id(d) for d in deps))
            for table in (system._pre_connections, system._post_connections)
            for f, deps in table.items()
        )
        attributes = tuple(
            (name, _attribute_key(value)) for name, value in vars(system).items() if not name.startswith("_")
        )
        parts.append((node.path, id(system), type(system), containers, connections, attributes))
    return tuple(parts)
