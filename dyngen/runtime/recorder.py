"""dynode's ``Recorder``, fed from the compiled model's vectors."""

from __future__ import annotations

from collections import defaultdict
from copy import deepcopy
from operator import attrgetter
from typing import Any

import numpy as np

from .tables import Table, recorder_table


class Recorder:
    """An observer that stores chosen states, ders, inputs and outputs over time.

    ``store(system, "states.x")`` then ``results[system]["states.x"]`` (and
    ``results[system]["time"]``), exactly as dynode's Recorder.
    """

    def __init__(self) -> None:
        self._results: defaultdict = defaultdict(lambda: defaultdict(list))
        self._stores: defaultdict = defaultdict(list)
        self._paths: dict[int, str] = {}  # id(system) -> its path in the model, learnt when run

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

    def table(self) -> Table:
        """The recorded signals as named float arrays (numpy only): ``Table.time`` and
        ``Table.signals``, named ``"<system path>.<alias>"`` as in the generated module."""
        return recorder_table(self._results, self._stores, self._paths)

    def to_dataframe(self) -> Any:
        """The recorded signals as a ``pandas.DataFrame``: index ``time``, columns
        ``"<system path>.<alias>"`` (``"VanDerPol.states.x"``), one column per element of
        a vector signal (``"Particle2D.states.q[0]"``). Needs ``pip install "dyngen[tables]"``."""
        return self.table().to_dataframe("Recorder.to_dataframe()")

    def to_xarray(self) -> Any:
        """The recorded signals as an ``xarray.Dataset``: coordinate ``time``, one variable
        per signal named ``"<system path>.<alias>"``, vector signals with dims
        ``"<name>.dim_0"``, .... Needs ``pip install "dyngen[tables]"``."""
        return self.table().to_xarray("Recorder.to_xarray()")


class BoundRecorder:
    """A Recorder resolved against a compiled model: records straight from y/out."""

    def __init__(self, recorder: Recorder, model: Any) -> None:
        self.recorder = recorder
        paths = getattr(model, "paths", {})
        recorder._paths.update((id(system), paths[id(system)]) for system in recorder._stores if id(system) in paths)
        # per system: (result key, "y" | "out" | None, entry or None, attribute path)
        self.plan: list[tuple[Any, list[tuple[str, str | None, Any, str]]]] = []
        for system, stores in recorder._stores.items():
            resolved = []
            for attribute, key in stores:
                kind, _, name = attribute.partition(".")
                entry = model.by_signal.get((id(system), kind, name))
                source = None if entry is None else ("y" if kind == "states" else "out")
                resolved.append((key, source, entry, attribute))
            self.plan.append((system, resolved))
        sources = {source for _, resolved in self.plan for _, source, _, _ in resolved}
        self.needs_observed = "out" in sources
        self.needs_sync = None in sources  # not a compiled signal: read the synced container

    def record_many(self, times: np.ndarray, Y: np.ndarray, OUT: np.ndarray | None) -> None:
        """Append many samples at once (rows of ``Y``/``OUT``), as ``record`` would."""
        results = self.recorder._results
        for system, resolved in self.plan:
            series = results[system]
            series["time"].extend(times.tolist())
            for key, source, entry, _ in resolved:
                series[key].extend(entry.values(Y if source == "y" else OUT, as_attribute=True))

    def record(self, time: float, y: np.ndarray, out: np.ndarray | None) -> None:
        results = self.recorder._results
        for system, resolved in self.plan:
            series = results[system]
            series["time"].append(time)
            for key, source, entry, attribute in resolved:
                if entry is None:
                    series[key].append(deepcopy(attrgetter(attribute)(system)))
                else:
                    series[key].append(entry.value(y if source == "y" else out, as_attribute=True))
