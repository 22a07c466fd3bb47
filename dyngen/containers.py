"""dynode-compatible containers for states, ders, inputs and outputs.

They behave exactly like dynode 0.4's containers (dicts with attribute access;
states/ders stored as float arrays, attribute access of a one-element array gives a
scalar).  While dyngen traces a model, a *hook* is attached to each container and
every read and write goes to the tracer instead of the dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any, Protocol

import numpy as np


class ContainerHook(Protocol):
    """What the tracer implements to see reads and writes of a container."""

    def read(self, container: "ParameterContainer", key: Any, as_attribute: bool) -> Any: ...

    def write(self, container: "ParameterContainer", key: Any, value: Any) -> None: ...


# While a model is traced: the hook for containers that are not part of the model
# (per thread/context, so concurrent builds do not see each other's).
FOREIGN_HOOK: ContextVar[ContainerHook | None] = ContextVar("dyngen_foreign_hook", default=None)


class _Edits:
    """Counts of edits of model objects in this process, for ``simulate()``'s cheap checks.

    ``states``, ``derivatives`` and ``signals`` count the writes of entries of states,
    of ders and of inputs/outputs containers (through the container's API, or by a
    write-back of ``simulate()``); ``structure`` counts the edits that may change the
    generated module: a new or removed key, a value whose kind (float, array shape,
    other) changed, a system attribute, a subsystem or a connection.  Code that compares a
    count with the one it saw may skip work it would otherwise repeat; any edit it
    cannot see (a class attribute, a module global, a list mutated in place) it must
    check itself.

    One instance, ``Edits``, with ``__slots__``: its counts are read and written on every
    ``simulate()`` and container write (a class attribute written invalidates the
    interpreter's attribute caches of the class; a slot is read and written directly).
    """

    __slots__ = ("states", "derivatives", "signals", "structure")

    def __init__(self) -> None:
        self.states = 0
        self.derivatives = 0
        self.signals = 0
        self.structure = 0

    def note_structure(self) -> None:
        self.structure += 1
        self.states += 1
        self.derivatives += 1
        self.signals += 1


Edits = _Edits()


def _same_kind(old: Any, new: Any) -> bool:
    """Whether replacing ``old`` by ``new`` keeps what the generated module was built
    for: floats (and ints) stay numbers, float arrays keep their shape."""
    kind = type(new)
    if kind is float or kind is int:
        return type(old) is float or type(old) is int
    if kind is np.ndarray and type(old) is np.ndarray:
        return new.shape == old.shape and new.dtype.kind == "f" and old.dtype.kind == "f"
    return False


_MISSING = object()


class MissingKeyError(KeyError, AttributeError):
    """A key that is not in the container (a KeyError, as in dynode, and an AttributeError)."""


class ParameterContainer(dict):
    """Inputs and outputs: any value, readable and writable as attributes and keys."""

    @property
    def _dyngen_hook(self) -> ContainerHook | None:
        return self.__dict__.get("_hook") or FOREIGN_HOOK.get()

    def __getattr__(self, key: str) -> Any:
        if key.startswith("__"):
            raise AttributeError(key)
        return self._get(key, as_attribute=True)

    def __setattr__(self, key: str, value: Any) -> None:
        self[key] = value

    def __getitem__(self, key: Any) -> Any:
        return self._get(key, as_attribute=False)

    def __setitem__(self, key: Any, value: Any) -> None:
        hook = self._dyngen_hook
        if hook is not None:
            hook.write(self, key, value)
        else:
            self._store(key, self._convert(value))

    def _store(self, key: Any, value: Any) -> None:
        """Store a converted value and count the edit (see ``Edits``)."""
        if not _same_kind(dict.get(self, key, _MISSING), value):
            Edits.structure += 1
        self._count_write()
        dict.__setitem__(self, key, value)

    @staticmethod
    def _count_write() -> None:
        Edits.signals += 1

    def _get(self, key: Any, as_attribute: bool) -> Any:
        hook = self._dyngen_hook
        if hook is not None:
            return hook.read(self, key, as_attribute)
        try:
            value = dict.__getitem__(self, key)
        except KeyError:
            raise MissingKeyError(key) from None
        return self._present(value, as_attribute)

    @staticmethod
    def _convert(value: Any) -> Any:
        return value

    @staticmethod
    def _present(value: Any, as_attribute: bool) -> Any:
        return value

    # dict's own methods read and write the storage directly: while a model is traced
    # they must go through the hook too, or fail clearly.
    def get(self, key: Any, default: Any = None) -> Any:
        if self._dyngen_hook is not None:
            return self[key] if dict.__contains__(self, key) or self._hook_knows(key) else default
        return self._present(dict.get(self, key), False) if dict.__contains__(self, key) else default

    def items(self):
        if self._dyngen_hook is not None:
            return [(key, self[key]) for key in dict.keys(self)]
        return dict.items(self)

    def values(self):
        if self._dyngen_hook is not None:
            return [self[key] for key in dict.keys(self)]
        return dict.values(self)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def __ior__(self, other: Any) -> "ParameterContainer":
        self.update(other)
        return self

    def setdefault(self, key: Any, default: Any = None) -> Any:
        if not dict.__contains__(self, key):
            self[key] = default
        return self[key]

    def _hook_knows(self, key: Any) -> bool:
        knows = getattr(self._dyngen_hook, "knows", None)
        return bool(knows and knows(self, key))

    def _refuse_while_traced(self, name: str) -> None:
        if self._dyngen_hook is not None:
            from .errors import TraceError, user_frame_location

            raise TraceError(
                f"container.{name}() cannot be traced",
                "read and assign entries by key or attribute (self.outputs.y = ...)",
                user_frame_location(),
            )

    def pop(self, *args: Any) -> Any:
        self._refuse_while_traced("pop")
        Edits.note_structure()
        return dict.pop(self, *args)

    def popitem(self) -> Any:
        self._refuse_while_traced("popitem")
        Edits.note_structure()
        return dict.popitem(self)

    def clear(self) -> None:
        self._refuse_while_traced("clear")
        Edits.note_structure()
        dict.clear(self)

    def __delitem__(self, key: Any) -> None:
        self._refuse_while_traced("__delitem__")
        Edits.note_structure()
        dict.__delitem__(self, key)

    def copy(self) -> dict:
        if self._dyngen_hook is not None:
            return dict(self.items())
        return type(self)(dict.items(self)) if type(self) is ParameterContainer else _copy_variables(self)

    def raw_items(self):
        """Items as stored, bypassing any tracing hook."""
        return dict.items(self)

    def raw_get(self, key: Any) -> Any:
        """A stored value, bypassing any tracing hook."""
        return dict.__getitem__(self, key)

    def raw_set(self, key: Any, value: Any) -> None:
        """Store a value, bypassing any tracing hook (conversions still apply)."""
        self._store(key, self._convert(value))


class VariableContainer(ParameterContainer):
    """States (and, as ``DerivativeContainer``, ders): scalars, lists or arrays, always
    stored as float arrays."""

    @staticmethod
    def _count_write() -> None:
        Edits.states += 1

    @staticmethod
    def _convert(value: Any) -> np.ndarray:
        kind = type(value)
        if kind is np.ndarray:  # the common cases first: a store is what a sweep repeats
            return np.array(value, dtype=float)
        if kind is float or kind is int:
            return np.array([value], dtype=float)
        if np.isscalar(value):
            value = np.atleast_1d(value)
        if not isinstance(value, (Sequence, np.ndarray)):
            raise TypeError("States/Ders must be scalars, lists or np.ndarrays!")
        return np.array(value, dtype=float)

    @staticmethod
    def _present(value: Any, as_attribute: bool) -> Any:
        if as_attribute and (value.size if type(value) is np.ndarray else np.size(value)) == 1:
            return value.item()
        return value


class DerivativeContainer(VariableContainer):
    """Ders: a ``VariableContainer`` whose writes ``Edits.derivatives`` counts, apart
    from the states' (``simulate()`` leaves its views in both, and need not place them
    again in ders that nobody wrote when only states were set)."""

    @staticmethod
    def _count_write() -> None:
        Edits.derivatives += 1


def _copy_variables(container: ParameterContainer) -> ParameterContainer:
    copy = type(container)()
    for key, value in dict.items(container):
        dict.__setitem__(copy, key, np.array(value))
    return copy


def set_hook(container: ParameterContainer, hook: ContainerHook | None) -> None:
    """Attach (or with None, detach) a tracing hook."""
    container.__dict__["_hook"] = hook
