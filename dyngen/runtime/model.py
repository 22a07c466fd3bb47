"""A loaded generated module bound to the system objects it was built from."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import DyngenError
from ..trace import numeric_value
from ..tree import walk


@dataclass(frozen=True)
class Entry:
    """One signal in a flat vector: its system, container, key and place."""

    system: Any
    path: str
    kind: str
    key: str
    start: int
    stop: int
    shape: tuple[int, ...]

    def _is_scalar(self, as_attribute: bool) -> bool:
        # dynode: a one-element state or der read as an attribute is a float
        one = self.stop - self.start == 1
        return self.shape == () or (as_attribute and self.kind in ("states", "ders") and one)

    def value(self, vector: np.ndarray, as_attribute: bool) -> Any:
        """The signal as dynode would present it, from a flat vector."""
        chunk = vector[self.start:self.stop]
        if self._is_scalar(as_attribute):
            return float(chunk[0])
        return chunk.reshape(self.shape).copy()

    def values(self, rows: np.ndarray, as_attribute: bool) -> list:
        """``value`` of every row of ``rows`` (samples x vector), at once."""
        block = rows[:, self.start:self.stop]
        if self._is_scalar(as_attribute):
            return block[:, 0].tolist()
        return list(block.reshape((len(block), *self.shape)).copy())


class CompiledModel:
    """Moves values between the systems' containers and the module's flat vectors."""

    def __init__(self, module: ModuleType, systems: list[Any]) -> None:
        self.module = module
        nodes = {n.path: n.system for n in walk(systems)}
        self.states = self._entries(module.STATES, nodes, "states")
        self.parameters = self._entries(module.PARAMETERS, nodes, None)
        self.observed = self._entries(module.OBSERVED, nodes, None)
        parameter_keys = {(id(e.system), e.kind, e.key) for e in self.parameters}
        self.computed = [e for e in self.observed if (id(e.system), e.kind, e.key) not in parameter_keys]
        self.by_signal = {(id(e.system), e.kind, e.key): e for e in self.states + self.observed}
        # (container, key, start, stop, shape) for the write-back after a run
        self._state_slots = [
            (e.system.states, e.key, e.start, e.stop, np.shape(e.system.states.raw_get(e.key))) for e in self.states
        ]
        self._signal_slots = [(getattr(e.system, e.kind), e.key, e.start, e.stop, e.shape) for e in self.computed]

    @staticmethod
    def _entries(table: dict, nodes: dict[str, Any], kind: str | None) -> list[Entry]:
        entries = []
        for path, signals in table.items():
            for name, (start, stop, shape) in signals.items():
                entry_kind, key = (kind, name) if kind else name.split(".", 1)
                entries.append(Entry(nodes[path], path, entry_kind, key, start, stop, tuple(shape)))
        return entries

    @property
    def n_states(self) -> int:
        return int(self.module.N_STATES)

    def gather_states(self) -> np.ndarray:
        y = np.empty(self.n_states)
        for container, key, start, stop, _ in self._state_slots:
            value = dict.__getitem__(container, key)
            if stop - start == 1:
                y[start] = value.flat[0]
            else:
                y[start:stop] = value.ravel()
        return y

    def gather_parameters(self) -> np.ndarray:
        p = np.empty(int(self.module.N_PARAMETERS))
        for e in self.parameters:
            raw = getattr(e.system, e.kind).raw_get(e.key)
            if e.shape == () and type(raw) is float:  # the common case, fast
                p[e.start] = raw
                continue
            value = numeric_value(raw)
            if value is None or value.size != e.stop - e.start:
                raise DyngenError(
                    f"{e.kind}.{e.key} of {type(e.system).__name__} holds {raw!r}; it was a numeric "
                    f"value of shape {e.shape} when the model was built"
                )
            p[e.start:e.stop] = value.ravel()
        return p

    def observe(self, t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
        out = np.empty(int(self.module.N_OBSERVED))
        self.module.observe(t, y, p, out)
        return out

    def write_back(self, t: float, y: np.ndarray, p: np.ndarray) -> bool:
        """Leave the values at ``(t, y)`` in every container, as dynode does.

        Returns True when a container got a key it did not have (e.g. ders that
        ``__init__`` did not create).
        """
        y = np.array(y, dtype=np.float64)
        for container, key, start, stop, shape in self._state_slots:
            dict.__setitem__(container, key, y[start:stop].reshape(shape))  # views of a private copy
        out = self.observe(t, y, p)
        added = False
        for container, key, start, stop, shape in self._signal_slots:
            added = added or key not in container
            dict.__setitem__(container, key, float(out[start]) if shape == () else out[start:stop].reshape(shape))
        return added

    def explain_failure(self, t: float, p: np.ndarray) -> str:
        """Why a solver may have stopped where the containers now are: the states
        whose derivative is not finite there ("" when all are finite)."""
        y = self.gather_states()
        dy = np.empty(self.n_states)
        self.module.rhs(t, y, p, dy)
        bad = np.flatnonzero(~np.isfinite(dy))
        if bad.size == 0:
            return ""
        names = ", ".join(self.state_name(int(i)) for i in bad[:5])
        more = f" and {bad.size - 5} more" if bad.size > 5 else ""
        return f"; the derivative is not finite there for: {names}{more}"

    def state_name(self, index: int) -> str:
        return str(self.module.STATE_NAMES[index])
