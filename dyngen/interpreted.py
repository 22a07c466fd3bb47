"""The interpreted path: evaluate ``do_step`` and connections numerically, as dynode.

``verify`` runs a model both ways (interpreted and compiled) from the same initial
values and reports the largest difference in states and observed signals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .containers import Edits
from .errors import DyngenError, user_traceback_location
from .runtime.integrators import ScipyOdeIntegrator, dynode_options, run_observed
from .runtime.model import CompiledModel
from .runtime.simulation import Simulation
from .tree import walk


class InterpretedModel:
    """dynode's RHS: states into the containers, ``_step`` in order, ders out (by name)."""

    def __init__(self, systems: list[Any], compiled: CompiledModel) -> None:
        self.systems = systems
        self.layout = compiled
        self.der_keys = compiled.module.DERIVATIVE_KEYS

    def evaluate(self, t: float, y: np.ndarray) -> None:
        for e in self.layout.states:
            e.system.states.raw_set(e.key, y[e.start:e.stop].reshape(e.system.states.raw_get(e.key).shape))
        for system in self.systems:
            system._step(t)

    def rhs(self, t: float, y: np.ndarray) -> np.ndarray:
        try:
            self.evaluate(t, y)
            dy = np.empty_like(y)
            for e in self.layout.states:
                der_key = self.der_keys[e.path][e.key]
                dy[e.start:e.stop] = np.asarray(e.system.ders.raw_get(der_key), dtype=float).ravel()
        except Exception as exc:
            location = user_traceback_location(exc.__traceback__)
            where = f" at {location}" if location else ""
            raise DyngenError(
                f"the interpreted evaluation (as dynode runs the model) failed at t = {t!r}{where}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        return dy

    def observe(self, t: float, y: np.ndarray) -> np.ndarray:
        self.evaluate(t, y)
        out = np.empty(int(self.layout.module.N_OBSERVED))
        for e in self.layout.observed:
            value = getattr(e.system, e.kind).raw_get(e.key)
            out[e.start:e.stop] = np.asarray(value, dtype=float).ravel()
        return out


@dataclass(frozen=True)
class VerifyReport:
    samples: int
    max_abs_state: float
    max_rel_state: float
    worst_state: str
    max_abs_signal: float
    max_rel_signal: float
    worst_signal: str

    @property
    def max_rel(self) -> float:
        return max(self.max_rel_state, self.max_rel_signal)

    def __str__(self) -> str:
        return (
            f"compared {self.samples} samples, interpreted (dynode's evaluation) vs compiled:\n"
            f"  states:  max abs diff {self.max_abs_state:.3e}, max rel diff {self.max_rel_state:.3e}"
            f"  (worst: {self.worst_state})\n"
            f"  signals: max abs diff {self.max_abs_signal:.3e}, max rel diff {self.max_rel_signal:.3e}"
            f"  (worst: {self.worst_signal})"
        )


def _snapshot(systems: list[Any]) -> list[tuple[dict, dict]]:
    saved = []
    for node in walk(systems):
        for kind in ("states", "ders", "inputs", "outputs"):
            container = getattr(node.system, kind)
            saved.append((container, {k: np.copy(v) if isinstance(v, np.ndarray) else v for k, v in container.raw_items()}))
    return saved


def _restore(saved: list) -> None:
    for container, items in saved:
        dict.clear(container)
        dict.update(container, items)
    Edits.note_structure()  # written past the containers' API: tell simulate() to look again


def _vector_scale(a: np.ndarray, b: np.ndarray, names: tuple[str, ...]) -> np.ndarray:
    """Per sample and column: the largest magnitude of the column's signal (all its elements) then."""
    magnitude = np.maximum(np.abs(a), np.abs(b))
    scale = np.empty_like(magnitude)
    signals = [name.rsplit("[", 1)[0] if name.endswith("]") else name for name in names]
    start = 0
    for stop in range(1, len(names) + 1):
        if stop == len(names) or signals[stop] != signals[start]:
            scale[:, start:stop] = magnitude[:, start:stop].max(axis=1, keepdims=True)
            start = stop
    return scale


def _compare(a: np.ndarray, b: np.ndarray, names: tuple[str, ...], atol: float) -> tuple[float, float, str]:
    """Largest absolute and relative difference; an element of a vector is measured
    against the vector's largest element at that time (a near-zero element of a
    vector differs by rounding only relative to the vector)."""
    if a.size == 0:
        return 0.0, 0.0, "-"
    diff = np.abs(a - b)
    rel = diff / np.maximum(_vector_scale(a, b, names), atol)
    if not rel.max() > 0:
        return 0.0, 0.0, "-"
    worst = np.unravel_index(int(np.argmax(rel)), rel.shape)
    return float(diff.max()), float(rel.max()), str(names[worst[-1]])


def verify(
    simulation: Simulation,
    t: float,
    observer_dt: float,
    integrator: str = "dopri5",
    atol_floor: float = 1e-12,
    **options: Any,
) -> VerifyReport:
    """Run the model interpreted and compiled from the same start; compare (a model with
    events: the samples before its first event, which the interpreted run does not have)."""
    saved = _snapshot(simulation.systems)
    start_time = simulation._t
    compiled_samples: list[tuple[float, np.ndarray]] = []
    remove = simulation.add_observer(lambda time, y: compiled_samples.append((time, y.copy())))
    logged = len(simulation.events)
    try:
        simulation.simulate(t, observer_dt, integrator=integrator, **options)
    finally:
        remove()
        simulation._t = start_time
        _restore(saved)
        fired = simulation.events[logged:]
        del simulation.events[logged:]  # verify leaves no events in the log
    if fired:  # the interpreted run has no events: compare the samples before the first one
        compiled_samples = [(time, y) for time, y in compiled_samples if time < fired[0].time]
    model = simulation._model
    p = model.gather_parameters()
    interpreted = InterpretedModel(simulation.systems, model)
    solver = ScipyOdeIntegrator(
        interpreted.rhs, None, start_time, model.gather_states(), integrator,
        dynode_options(observer_dt, False, model.options_in_module_layout(options)), model.state_name,
    )  # fmt: skip
    interpreted_samples: list[tuple[float, np.ndarray]] = []
    try:
        run_observed(
            solver, start_time, t, observer_dt,
            lambda time, y, may_stop: interpreted_samples.append((time, y.copy())) and False,
        )  # fmt: skip
        compiled_samples = [(time, model.from_dynode_order(y)) for time, y in compiled_samples]
        interpreted_samples = interpreted_samples[: len(compiled_samples)]
        y_compiled = np.array([y for _, y in compiled_samples])
        y_interpreted = np.array([y for _, y in interpreted_samples])
        out_compiled = np.array([model.observe(time, y, p) for time, y in compiled_samples])
        out_interpreted = np.array([interpreted.observe(time, y) for time, y in compiled_samples])
    finally:
        _restore(saved)
    module = model.module
    s_abs, s_rel, s_name = _compare(y_compiled, y_interpreted, module.STATE_NAMES, atol_floor)
    o_abs, o_rel, o_name = _compare(out_compiled, out_interpreted, module.OBSERVED_NAMES, atol_floor)
    return VerifyReport(len(compiled_samples), s_abs, s_rel, s_name, o_abs, o_rel, o_name)
