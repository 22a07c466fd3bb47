"""Fail fast on element-by-element loops over arrays (issue 15).

A Python loop that reads an array's elements one at a time (``u[i - 1]``, ``theta[j]``)
makes one expression, Jacobian entry and line of compiled code per read: a double loop
over 64 phases built for 38-62 s, a stencil loop over 1,000 cells 43-109 s (most of it numba
compiling the unrolled code).  With the array form on, the trace counts such reads and
stops past ``symbolic.ELEMENT_READS_MAX`` within about a second, at the user's line,
saying what to write instead.  Below the limit the loop form builds and matches dynode
and its whole-array twin; ``Simulation(arrays=False)`` builds it anyway.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from dynode_compare import assert_same_runs, build_simulation, run
from dyngen import symbolic
from dyngen.errors import TraceError
from finite_differences import central_differences

HERE = Path(__file__).resolve().parent
CHAIN = HERE / "element_reads_model.py"
GRIDS = HERE / "grids_model.py"


def _line_of(path: Path, text: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def _refused(sim, cache: Path) -> tuple[str, float]:
    sim.cache_dir = str(cache)
    start = time.perf_counter()
    with pytest.raises(TraceError) as caught:
        sim.compile()
    return str(caught.value), time.perf_counter() - start


@pytest.mark.parametrize("n", [40, 64])  # phases in the element form, and in the array form
def test_a_double_loop_over_the_phases_is_refused_at_its_line_within_seconds(n: int, tmp_path: Path) -> None:
    sim = build_simulation(GRIDS, "dyngen", "build_plain_kuramoto", n, "loops")
    message, seconds = _refused(sim, tmp_path)
    assert seconds < 20.0  # (about 1 s; it built for 21-38 s before)
    assert f"more than {symbolic.ELEMENT_READS_MAX:,} single elements of arrays" in message
    assert f"grids_model.py:{_line_of(GRIDS, 'pull = pull + np.sin(theta[j] - theta[i])')}" in message
    assert "PlainKuramoto.do_step" in message
    assert "theta[None, :] - theta[:, None]" in message and "np.roll" in message
    assert not list(tmp_path.rglob("*.py"))  # nothing written to the cache


def test_a_stencil_loop_over_a_thousand_cells_is_refused_and_its_array_twin_builds(tmp_path: Path) -> None:
    message, seconds = _refused(build_simulation(CHAIN, "dyngen", "build_loop_chain", 1000, "loop"), tmp_path / "a")
    assert seconds < 20.0
    assert f"element_reads_model.py:{_line_of(CHAIN, 'ders[i] = self.inputs.D')}" in message
    assert "shape (1000,)" in message
    twin = build_simulation(CHAIN, "dyngen", "build_loop_chain", 1000, "roll")
    twin.cache_dir = str(tmp_path / "b")
    assert twin.compile().module.N_STATES == 1000


@pytest.mark.slow  # dynode, both forms, a module's numba compile
def test_under_the_limit_the_loop_matches_dynode_its_array_twin_and_finite_differences() -> None:
    ours = run(build_simulation(CHAIN, "dyngen", "build_loop_chain", 100, "loop"), "dyngen", 2.0, 0.5)
    theirs = run(build_simulation(CHAIN, "dynode", "build_loop_chain", 100, "loop"), "dynode", 2.0, 0.5)
    assert_same_runs(ours, theirs)
    twin = run(build_simulation(CHAIN, "dyngen", "build_loop_chain", 100, "roll"), "dyngen", 2.0, 0.5)
    np.testing.assert_allclose(ours.observed_y, twin.observed_y, rtol=1e-12, atol=1e-12)
    module = build_simulation(CHAIN, "dyngen", "build_loop_chain", 100, "loop").compile().module
    y = module.DEFAULT_STATES + np.random.default_rng(3).normal(0.0, 0.2, module.N_STATES)
    p = module.DEFAULT_PARAMETERS
    J = np.zeros((module.N_STATES, module.N_STATES))
    module.jac(0.0, y, p, J)
    np.testing.assert_allclose(J, central_differences(module, 0.0, y, p), rtol=1e-6, atol=1e-7)


@pytest.mark.slow  # two builds and a run
def test_arrays_false_builds_a_loop_past_the_limit(monkeypatch, tmp_path: Path) -> None:
    """The limit applies to the array form only: ``Simulation(arrays=False)`` is the way to
    build such a model element by element anyway (here with the limit lowered to 100)."""
    monkeypatch.setattr("dyngen.trace.ELEMENT_READS_MAX", 100)
    message, _ = _refused(build_simulation(CHAIN, "dyngen", "build_loop_chain", 50, "loop"), tmp_path / "a")
    assert "more than 100 single elements" in message and "Simulation(arrays=False)" in message
    sim = build_simulation(CHAIN, "dyngen", "build_loop_chain", 50, "loop")
    sim.arrays = False
    sim.cache_dir = str(tmp_path / "b")
    ours = run(sim, "dyngen", 1.0, 0.5)
    theirs = run(build_simulation(CHAIN, "dynode", "build_loop_chain", 50, "loop"), "dynode", 1.0, 0.5)
    assert_same_runs(ours, theirs)
