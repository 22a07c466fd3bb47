"""An ensemble's result blocks, labelled as an ``xarray.Dataset`` (views, not copies)."""

from __future__ import annotations

from typing import Any, Collection, Mapping, Sequence

import numpy as np

from ..extras import require
from .ensemble import Blocks, EnsemblePlan, Members, Signal, kept_columns


def require_xarray() -> Any:
    """xarray, or the error that names the extra to install."""
    return require("xarray", "tables", "Simulation.ensemble (it returns an xarray.Dataset)")


def to_dataset(
    plan: EnsemblePlan, members: Members, blocks: Blocks, record: Sequence[Signal], reasons: Sequence[str],
    attrs: Mapping[str, Any], extra: tuple[Mapping[str, Any], Mapping[str, Any]] = ({}, {}),
) -> Any:  # fmt: skip
    """The Dataset of an ensemble: dims ``member``, ``time`` (and ``<name>.dim_<i>`` for
    the axes of vector signals); one variable per recorded signal, (member, time,
    *shape), NaN past a failed member's last sample; the swept values as coordinates on
    ``member`` (an initial state's as ``"<name>(t0)"``; a swept parameter is not repeated
    as a variable); ``status`` (1; 2: a terminal event stopped the member; else the
    failure code), ``reason`` and ``t_reached`` per member; ``extra``: more
    variables and coordinates (a model's events: ``ensemble_events.event_variables``),
    in the one Dataset built."""
    xr = require_xarray()
    _blank_after_failures(blocks)
    ok = np.flatnonzero(blocks.status == 1)
    # each member's sample times differ from these at most by the rounding of its last step
    times = blocks.times[ok[0]] if ok.size else _nominal_times(plan)
    data: dict[str, Any] = {}
    for signal, first in zip(record, kept_columns(record)[2]):
        if signal.kind == "inputs" and signal.name in members.values:  # swept: the coordinate of that name
            continue
        block = blocks.Y if signal.vector == "states" else blocks.OUT
        if signal.shape == ():
            values = block[:, :, first]
        else:
            width = signal.stop - signal.start
            values = block[:, :, first:first + width].reshape((*block.shape[:2], *signal.shape))
        dims = ("member", "time", *(f"{signal.name}.dim_{i}" for i in range(len(signal.shape))))
        data[signal.name] = (dims, values)
    data["status"] = ("member", blocks.status)
    data["reason"] = ("member", np.array(reasons, dtype=str))
    data["t_reached"] = ("member", blocks.t_reached)
    coords: dict[str, Any] = {"member": np.arange(plan.count), "time": times}
    for name, values in members.values.items():
        label = coordinate_name(name, members.states)
        coords[label] = (("member", *(f"{label}.dim_{i}" for i in range(values.ndim - 1))), values)
    grid = [coordinate_name(name, members.states) for name in members.grid]
    data.update(extra[0])
    coords.update(extra[1])
    return xr.Dataset(data, coords=coords, attrs={**attrs, "grid": grid})


def coordinate_name(name: str, states: Collection[str]) -> str:
    """The coordinate of a swept value: the parameter's name, or ``"<state>(t0)"`` for
    an initial state (the state's own name is its recorded series)."""
    return f"{name}(t0)" if name in states else name


def _blank_after_failures(blocks: Blocks) -> None:
    """NaN where a failed member stored no sample (the blocks are not initialised)."""
    for j in np.flatnonzero(blocks.count < blocks.times.shape[1]):
        k = int(blocks.count[j])
        blocks.times[j, k:] = np.nan
        blocks.Y[j, k:] = np.nan
        if blocks.OUT.shape[1]:
            blocks.OUT[j, k:] = np.nan


def _nominal_times(plan: EnsemblePlan) -> np.ndarray:
    """The sample times when no member succeeded: t0 (when recorded), t0 + dt, ..., added up as the loop does."""
    times, t = [], plan.t0
    if plan.record_initial:
        times.append(t)
    for _ in range(plan.n_intervals):
        t += plan.observer_dt
        times.append(t)
    return np.array(times)
