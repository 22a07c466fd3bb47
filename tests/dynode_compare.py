"""Run one model file under dyngen and under the real dynode 0.4, and compare.

"Porting a dynode model is changing an import": :func:`load_model_source` reads a
model file written against dyngen and, for the ``"dynode"`` backend, swaps its
``from dyngen import ...`` lines for the same names from ``dynode`` (``System`` is
dynode's ``SystemInterface``).  Only ``where`` is kept from dyngen: on plain numbers it
is ``np.where`` returning a float, so the dynode run never touches dyngen's compiler.

:func:`run` records every state, der, input and output of every system in the tree
with the backend's own ``Recorder`` (plus an observer that keeps ``(t, y)``), and
:func:`assert_same_runs` compares two such runs within 1e-8 relative.
"""

from __future__ import annotations

import ast
import itertools
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

import dynode
import dyngen
from dynode.simulation import collect_states, dispatch_states

RTOL = 1e-8
ATOL = 1e-10

BACKENDS = ("dyngen", "dynode")

# What each dyngen name is under dynode.  ``where`` stays dyngen's (numeric path).
_DYNODE_NAMES = {
    "System": "SystemInterface",
    "SystemInterface": "SystemInterface",
    "Simulation": "Simulation",
    "Recorder": "Recorder",
    "connect_signals": "connect_signals",
}
_KEEP_FROM_DYNGEN = {"where"}

_counter = itertools.count()


# ----------------------------------------------------------------------------- loading


def port_to_dynode(source: str) -> str:
    """The same model source with its dyngen imports replaced by dynode's.

    Each ``from dyngen import ...`` statement becomes one line (padded with blank
    lines, so line numbers do not move).  Any other use of dyngen is an error: a
    model that needs more than the import swap is not a fair comparison.
    """
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    for node in reversed(tree.body):  # bottom-up, so earlier line numbers stay valid
        if isinstance(node, ast.Import) and any(a.name.split(".")[0] == "dyngen" for a in node.names):
            raise ValueError(f"line {node.lineno}: use `from dyngen import ...` in model files")
        if not (isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "dyngen"):
            continue
        if node.module != "dyngen":
            raise ValueError(f"line {node.lineno}: model files import from `dyngen` only")
        from_dynode, from_dyngen = [], []
        for alias in node.names:
            local = alias.asname or alias.name
            if alias.name in _KEEP_FROM_DYNGEN:
                from_dyngen.append(alias.name if local == alias.name else f"{alias.name} as {local}")
            elif alias.name in _DYNODE_NAMES:
                target = _DYNODE_NAMES[alias.name]
                from_dynode.append(target if target == local else f"{target} as {local}")
            else:
                raise ValueError(f"line {node.lineno}: dynode has no counterpart of dyngen.{alias.name}")
        statements = []
        if from_dynode:
            statements.append("from dynode import " + ", ".join(from_dynode))
        if from_dyngen:
            statements.append("from dyngen import " + ", ".join(from_dyngen))
        span = node.end_lineno - node.lineno + 1
        replacement = ["; ".join(statements) + "\n"] + ["\n"] * (span - 1)
        lines[node.lineno - 1:node.end_lineno] = replacement
    return "".join(lines)


def load_model_source(path: str | Path, backend: str) -> types.ModuleType:
    """Execute a model file as a fresh module, for ``backend`` "dyngen" or "dynode"."""
    if backend not in BACKENDS:
        raise ValueError(backend)
    path = Path(path).resolve()
    source = path.read_text(encoding="utf-8")
    if backend == "dynode":
        source = port_to_dynode(source)
    name = f"_model_{backend}_{path.stem}_{next(_counter)}"
    module = types.ModuleType(name)
    module.__file__ = str(path)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    exec(compile(source, str(path), "exec"), module.__dict__)
    return module


def build_simulation(path: str | Path, backend: str, builder: str = "build", *args: Any) -> Any:
    """``module.build(*args)`` of a model file under ``backend``, checked for the right classes."""
    module = load_model_source(path, backend)
    sim = getattr(module, builder)(*args)
    expected_sim = dyngen.Simulation if backend == "dyngen" else dynode.Simulation
    expected_sys = dyngen.System if backend == "dyngen" else dynode.SystemInterface
    assert type(sim) is expected_sim, f"{path}: build() returned a {type(sim)}"
    for _, system in walk(sim.systems):
        assert isinstance(system, expected_sys), f"{type(system)} is not a {expected_sys}"
        if backend == "dynode":
            assert not isinstance(system, dyngen.System)
    if backend == "dyngen":
        sim.model_file = str(Path(path).resolve())
    return sim


# ----------------------------------------------------------------------------- running


def walk(systems: list[Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(path, system) for the whole tree, subsystems before their parent (dynode's order)."""
    out = []
    for i, system in enumerate(systems):
        path = f"{prefix}{i}:{type(system).__name__}"
        out += walk(system.subsystems, path + "/")
        out.append((path, system))
    return out


def prime_dynode(sim: Any) -> None:
    """One dynode RHS evaluation at the current time, exactly like dynode's ``func``.

    dynode computes inputs and outputs lazily, inside the RHS.  Before the first
    evaluation its containers hold whatever ``__init__`` put there, so its t=0
    observation of inputs/outputs is not the value at (0, y0) (and outputs that
    ``__init__`` does not create cannot even be stored).  dyngen's observer evaluates
    them at (0, y0).  Priming dynode with the evaluation at (t0, y0) makes both
    record the same, well-defined values; states and the dynamics are unaffected.
    """
    y0 = collect_states(sim.systems)
    dispatch_states(y0, sim.systems)
    for system in sim.systems:
        system._step(sim._t)


def _numeric(value: Any) -> bool:
    try:
        array = np.asarray(value)
    except Exception:  # pragma: no cover - exotic values
        return False
    return array.dtype.kind in "biuf"


def signal_names(system: Any) -> list[str]:
    """Every numeric ``states.*``, ``ders.*``, ``inputs.*``, ``outputs.*`` of a system."""
    names = []
    for kind in ("states", "ders", "inputs", "outputs"):
        container = getattr(system, kind)
        for key, value in dict.items(container):
            if isinstance(key, str) and _numeric(value):
                names.append(f"{kind}.{key}")
    return names


@dataclass
class Run:
    """What one backend produced for one model."""

    backend: str
    t_end: float
    paths: list[str]
    series: dict[str, dict[str, np.ndarray]]  # path -> attribute -> samples
    shapes: dict[str, dict[str, list[tuple[int, ...]]]]
    observed_t: np.ndarray
    observed_y: np.ndarray
    final: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def run(
    sim: Any,
    backend: str,
    t: float,
    observer_dt: float,
    *,
    fixed_step: bool = False,
    integrator: str = "dopri5",
    prime: bool = True,
    before: Callable[[Any], None] | None = None,
    segments: int = 1,
    **kwargs: Any,
) -> Run:
    """Simulate ``sim`` and record everything; ``segments`` > 1 splits ``t`` into calls.

    ``before(sim)`` runs between segments (from the second on), e.g. to change a
    parameter.
    """
    if backend == "dynode" and prime:
        prime_dynode(sim)
    nodes = walk(sim.systems)
    recorder = (dyngen.Recorder if backend == "dyngen" else dynode.Recorder)()
    for _, system in nodes:
        for name in signal_names(system):
            recorder.store(system, name)
    ts, ys = [], []

    def keep(time: float, y: np.ndarray) -> None:
        ts.append(time)
        ys.append(np.array(y, dtype=float, copy=True))

    sim.add_observer(recorder)
    sim.add_observer(keep)
    t_end = None
    for segment in range(segments):
        if segment and before is not None:
            before(sim)
        t_end = sim.simulate(t / segments, observer_dt, fixed_step=fixed_step, integrator=integrator, **kwargs)

    results = recorder.results
    series: dict[str, dict[str, np.ndarray]] = {}
    shapes: dict[str, dict[str, list[tuple[int, ...]]]] = {}
    final: dict[str, dict[str, np.ndarray]] = {}
    for path, system in nodes:
        recorded = results[system]
        series[path] = {key: np.asarray(values, dtype=float) for key, values in recorded.items()}
        shapes[path] = {key: [np.shape(v) for v in values] for key, values in recorded.items()}
        final[path] = {
            f"{kind}.{key}": np.array(value, dtype=float)
            for kind in ("states", "inputs", "outputs")
            for key, value in dict.items(getattr(system, kind))
            if isinstance(key, str) and _numeric(value)
        }
    return Run(
        backend=backend,
        t_end=float(t_end),
        paths=[p for p, _ in nodes],
        series=series,
        shapes=shapes,
        observed_t=np.asarray(ts, dtype=float),
        observed_y=np.asarray(ys, dtype=float),
        final=final,
    )


def run_both(make: Callable[[str], Any], t: float, observer_dt: float, **options: Any) -> tuple[Run, Run]:
    """``make(backend)`` builds a fresh simulation; run it under both backends."""
    return tuple(run(make(backend), backend, t, observer_dt, **options) for backend in BACKENDS)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- comparing


def assert_close(actual: Any, expected: Any, what: str) -> None:
    np.testing.assert_allclose(actual, expected, rtol=RTOL, atol=ATOL, err_msg=what)


def assert_same_runs(ours: Run, theirs: Run, final_signals: bool = True, signals_from: int = 0) -> None:
    """dyngen's run (``ours``) reproduces dynode's (``theirs``) within 1e-8 relative.

    ``signals_from=1`` skips the first sample of ders/inputs/outputs (for an unprimed
    dynode run, whose t0 values are whatever ``__init__`` left in the containers).
    """
    assert ours.paths == theirs.paths, "the system trees differ"
    assert ours.t_end == theirs.t_end
    # The observers got the same times and the same state vectors (dynode's layout).
    assert ours.observed_t.shape == theirs.observed_t.shape
    assert_close(ours.observed_t, theirs.observed_t, "observer times")
    assert ours.observed_y.shape == theirs.observed_y.shape, "state vector layout differs"
    assert_close(ours.observed_y, theirs.observed_y, "state vectors passed to observers")
    for path in ours.paths:
        mine, dyn = ours.series[path], theirs.series[path]
        assert sorted(mine) == sorted(dyn), f"{path}: recorded keys differ"
        for key in dyn:
            # Same presentation as dynode: floats for one-element states, arrays otherwise.
            assert ours.shapes[path][key] == theirs.shapes[path][key], f"{path} {key}: value shapes differ"
            start = 0 if key in ("time",) or key.startswith("states.") else signals_from
            assert_close(mine[key][start:], dyn[key][start:], f"{path} {key}")
        # After simulate, the containers hold the final values in both.
        states = [k for k in theirs.final[path] if k.startswith("states.")]
        for key in theirs.final[path] if final_signals else states:
            assert key in ours.final[path], f"{path}: {key} missing after simulate"
            assert ours.final[path][key].shape == theirs.final[path][key].shape, f"{path} final {key} shape"
            assert_close(ours.final[path][key], theirs.final[path][key], f"{path} final {key}")

