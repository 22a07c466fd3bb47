"""dynode-compatible containers for states, ders, inputs and outputs.

They behave exactly like dynode 0.4's containers (dicts with attribute access;
states/ders stored as float arrays, attribute access of a one-element array gives a
scalar).  While dyngen traces a model, a *hook* is attached to each container and
every read and write goes to the tracer instead of the dict.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np


class ContainerHook(Protocol):
    """What the tracer implements to see reads and writes of a container."""

    def read(self, container: "ParameterContainer", key: Any, as_attribute: bool) -> Any: ...

    def write(self, container: "ParameterContainer", key: Any, value: Any) -> None: ...


class MissingKeyError(KeyError, AttributeError):
    """A key that is not in the container (a KeyError, as in dynode, and an AttributeError)."""


class ParameterContainer(dict):
    """Inputs and outputs: any value, readable and writable as attributes and keys."""

    _dyngen_hook: ContainerHook | None = None

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
            dict.__setitem__(self, key, self._convert(value))

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

    def raw_items(self):
        """Items as stored, bypassing any tracing hook."""
        return dict.items(self)

    def raw_get(self, key: Any) -> Any:
        """A stored value, bypassing any tracing hook."""
        return dict.__getitem__(self, key)

    def raw_set(self, key: Any, value: Any) -> None:
        """Store a value, bypassing any tracing hook (conversions still apply)."""
        dict.__setitem__(self, key, self._convert(value))


class VariableContainer(ParameterContainer):
    """States and ders: scalars, lists or arrays, always stored as float arrays."""

    @staticmethod
    def _convert(value: Any) -> np.ndarray:
        if np.isscalar(value):
            value = np.atleast_1d(value)
        if not isinstance(value, (Sequence, np.ndarray)):
            raise TypeError("States/Ders must be scalars, lists or np.ndarrays!")
        return np.array(value, dtype=float)

    @staticmethod
    def _present(value: Any, as_attribute: bool) -> Any:
        if as_attribute and np.size(value) == 1:
            return value.item()
        return value


def set_hook(container: ParameterContainer, hook: ContainerHook | None) -> None:
    """Attach (or with None, detach) a tracing hook."""
    object.__setattr__(container, "_dyngen_hook", hook)
