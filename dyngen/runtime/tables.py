"""A single run's recorded signals as a table: named float arrays over time.

The names are the generated module's (``"<system path>.<alias>"``, e.g.
``"VanDerPol.states.x"``); one column per element of a vector signal is
``"<name>[i]"`` (the flat C-order index, as ``STATE_NAMES`` names elements).  The
table needs numpy only; ``to_dataframe``/``to_xarray`` need the ``tables`` extra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ..errors import DyngenError
from ..extras import require


@dataclass(frozen=True)
class Signal:
    """One recorded signal: its name (``"<system>.<key>"``) and its samples, shape
    ``(n_times, *shape)``."""

    name: str
    values: np.ndarray
    system: str = ""  # the system's path
    key: str = ""  # the Recorder's alias (e.g. "states.x")

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of one sample (``()`` for a scalar)."""
        return self.values.shape[1:]

    def columns(self) -> Iterator[tuple[str, np.ndarray]]:
        """``(name, samples)`` per element: the name itself for a scalar, else ``name[i]``."""
        if self.shape == ():
            yield self.name, self.values
            return
        flat = self.values.reshape(len(self.values), -1)
        for i in range(flat.shape[1]):
            yield f"{self.name}[{i}]", flat[:, i]


@dataclass(frozen=True)
class Table:
    """Sample times and the signals recorded at them, in the order they were stored."""

    time: np.ndarray
    signals: tuple[Signal, ...]

    def columns(self) -> list[tuple[str, np.ndarray]]:
        """Every scalar column, ``time`` first (a CSV's header and columns)."""
        return [("time", self.time)] + [column for signal in self.signals for column in signal.columns()]

    def to_dataframe(self, purpose: str = "to_dataframe()") -> Any:
        """A ``pandas.DataFrame``: index ``time``, one column per element."""
        pd = require("pandas", "tables", purpose)
        columns = self.columns()[1:]
        frame = pd.DataFrame({name: values for name, values in columns}, index=pd.Index(self.time, name="time"))
        return frame

    def to_xarray(self, purpose: str = "to_xarray()") -> Any:
        """An ``xarray.Dataset``: coordinate ``time``, one variable per signal, a
        vector signal's axes as dims ``<name>.dim_0``, ``<name>.dim_1``, ..."""
        xr = require("xarray", "tables", purpose)
        variables = {}
        for signal in self.signals:
            dims = ("time", *(f"{signal.name}.dim_{axis}" for axis in range(len(signal.shape))))
            variables[signal.name] = (dims, signal.values)
        return xr.Dataset(variables, coords={"time": ("time", self.time)})


def recorder_table(results: dict, stores: dict, paths: dict[int, str]) -> Table:
    """The table of a Recorder's ``results`` (``{system: {"time": [...], alias: [...]}}``),
    its ``stores`` (``{system: [(attribute, alias)]}``: the order of the columns) and
    the systems' paths (``{id(system): path}``, learnt when a Simulation ran it)."""
    time: np.ndarray | None = None
    signals: list[Signal] = []
    seen: dict[str, str] = {}
    for system, stored in stores.items():
        series = results.get(system)
        if series is None:  # stored, never run
            continue
        path = paths.get(id(system)) or _fallback_path(system)
        times = np.asarray(series["time"], dtype=np.float64)
        if time is None:
            time = times
        elif not np.array_equal(time, times):
            raise DyngenError(
                f"the Recorder holds {len(times)} samples of {path} and {len(time)} of another system: a system "
                "was stored after a run had begun; store every system before the first simulate() (or use one "
                "Recorder per run)"
            )
        for attribute, alias in dict.fromkeys(stored):  # a store repeated: one column
            name = f"{path}.{alias}"
            if name in seen:
                raise DyngenError(f"two recorded signals are both named {name!r}; give one another alias in store()")
            seen[name] = attribute
            signals.append(Signal(name, _samples(name, series[alias], len(times)), path, alias))
    if time is None:
        time = np.empty(0)
    return Table(time, tuple(signals))


def _samples(name: str, values: list, n_times: int) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        kinds = sorted({type(v).__name__ for v in values})
        raise DyngenError(
            f"{name} is recorded as {', '.join(kinds)}, not numbers of one shape: a table holds numeric "
            "signals only; record numeric states, inputs or outputs"
        ) from None
    if array.ndim == 0 or len(array) != n_times:
        raise DyngenError(f"{name} has {np.size(array)} samples for {n_times} sample times")
    return array


def _fallback_path(system: Any) -> str:
    """A system no Simulation has run with this Recorder: its name or class name."""
    name = getattr(system, "name", None)
    return name if isinstance(name, str) and name else type(system).__name__
