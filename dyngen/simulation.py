"""dynode's ``dynode.simulation`` import path: ``Simulation`` (implemented in
``dyngen.runtime.simulation``) and dynode's helpers that move values between a list
of systems and one flat vector, in dynode's layout."""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import ModelError
from .runtime.simulation import Simulation
from .system import SystemInterface

__all__ = ["Simulation", "SystemInterface", "collect_states", "dispatch_states", "collect_ders"]


def collect_states(systems: list[Any]) -> np.ndarray:
    """The states of ``systems`` (and their subsystems) as one vector, as dynode lays it out."""
    return np.concatenate([system.get_states() for system in systems], axis=None)


def _mismatch(vector: np.ndarray, used: int, what: str) -> ModelError:
    return ModelError(
        f"Mismatch in number of states and ders! ({what} has {len(vector)} elements, the "
        f"systems' containers hold {used}; every state needs a der of its size, in the same order)"
    )


def dispatch_states(states: np.ndarray, systems: list[Any]) -> None:
    """Write ``states`` into the systems' state containers, in place, as dynode does.

    Raises ``ModelError`` (a RuntimeError, as in dynode) when the sizes differ.
    """
    idx = 0
    for system in systems:
        idx = system.dispatch_states(idx, states)
    if len(states) != idx:
        raise _mismatch(states, idx, "the state vector")


def collect_ders(ders: np.ndarray, systems: list[Any]) -> None:
    """Write the systems' ders into ``ders``, as dynode does.

    Raises ``ModelError`` (a RuntimeError, as in dynode) when the sizes differ.
    """
    idx = 0
    for system in systems:
        idx = system.get_ders(idx, ders)
    if len(ders) != idx:
        raise _mismatch(ders, idx, "the der vector")
