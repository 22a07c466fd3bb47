"""dynode's ``Recorder``, fed from the compiled model's vectors."""

from __future__ import annotations

from collections import defaultdict
from copy import deepcopy
from operator import attrgetter
from typing import Any, Callable

import numpy as np


class Recorder:
    """An observer that stores chosen states, ders, inputs and outputs over time.

    ``store(system, "states.x")`` then ``results[system]["states.x"]`` (and
    ``results[system]["time"]``), exactly as dynode's Recorder.
    """

    def __init__(self) -> None:
        self._results: defaultdict = defaultdict(lambda: defaultdict(list))
        self._stores: defaultdict = defaultdict(list)

    @property
    def results(self) -> dict:
        """The recorded series: ``{system: {"time": [...], key: [...]}}``."""
        return dict(self._results)

    def store(self, system: Any, attribute: str, alias: str | None = None) -> None:
        """Record ``attribute`` (such as ``"states.x"``) of ``system`` under ``alias``.

        Raises AttributeError/KeyError if the attribute does not exist (as dynode).
        """
        attrgetter(attribute)(system)
        self._stores[system].append((attribute, alias or attribute))

    def __call__(self, time: float, _states: Any) -> None:
        """Record from the systems' containers (dynode's behaviour)."""
        for system, stores in self._stores.items():
            self._results[system]["time"].append(time)
            for attribute, key in stores:
                self._results[system][key].append(deepcopy(attrgetter(attribute)(system)))

    def _bind(self, model: Any) -> "BoundRecorder":
        return BoundRecorder(self, model)


class BoundRecorder:
    """A Recorder resolved against a compiled model: records straight from y/out."""

    def __init__(self, recorder: Recorder, model: Any) -> None:
        self.recorder = recorder
        self.needs_observed = False
        self.needs_sync = False
        self.plan: list[tuple[Any, list[tuple[str, Callable]]]] = []
        self.columns: list[tuple[Any, list[tuple[str, Any]]]] = []
        for system, stores in recorder._stores.items():
            readers = []
            for attribute, key in stores:
                readers.append((key, self._reader(model, system, attribute)))
            self.plan.append((system, readers))
            self.columns.append((system, [(key, self._column(model, system, a)) for a, key in stores]))

    def _column(self, model: Any, system: Any, attribute: str) -> tuple[str, Any] | None:
        kind, _, key = attribute.partition(".")
        entry = model.by_signal.get((id(system), kind, key))
        if entry is None:
            return None
        return ("y" if kind == "states" else "out"), entry

    def _reader(self, model: Any, system: Any, attribute: str) -> Callable:
        kind, _, key = attribute.partition(".")
        entry = model.by_signal.get((id(system), kind, key))
        if entry is None:  # not a compiled signal: read the synced container
            self.needs_sync = True
            getter = attrgetter(attribute)
            return lambda y, out: deepcopy(getter(system))
        if kind == "states":
            return lambda y, out: entry.value(y, as_attribute=True)
        self.needs_observed = True
        return lambda y, out: entry.value(out, as_attribute=True)

    def record_many(self, times: np.ndarray, Y: np.ndarray, OUT: np.ndarray | None) -> None:
        """Append many samples at once (rows of ``Y``/``OUT``), as ``record`` would."""
        results = self.recorder._results
        count = len(times)
        for system, columns in self.columns:
            series = results[system]
            series["time"].extend(times.tolist())
            for key, (source, entry) in columns:
                block = (Y if source == "y" else OUT)[:, entry.start:entry.stop]
                if entry.shape == () or (entry.kind in ("states", "ders") and block.shape[1] == 1):
                    series[key].extend(block[:, 0].tolist())
                else:
                    series[key].extend(block.reshape((count, *entry.shape)).copy())

    def record(self, time: float, y: np.ndarray, out: np.ndarray | None) -> None:
        results = self.recorder._results
        for system, readers in self.plan:
            series = results[system]
            series["time"].append(time)
            for key, read in readers:
                series[key].append(read(y, out))
