"""Issue 16: observers that keep array entries of ders and outputs without copying.

Under dynode every RHS evaluation stores a new der array (its containers copy what
they are given) and a new output array, so an observer that appends
``sys.ders.x`` / ``sys.outputs.y`` keeps one distinct array per call; a state array is
updated in place, so every kept ``sys.states.x`` is the same array. dyngen wrote ders
and outputs in place too: every kept entry showed the last value. Small vectors (3
elements, unrolled) and a large one (80, traced in array form); Recorders unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dynode_compare import build_simulation

MODEL = Path(__file__).resolve().parent / "observer_arrays_model.py"


@pytest.mark.parametrize("n", [3, pytest.param(80, marks=pytest.mark.slow)])
def test_kept_entries_are_what_dynode_keeps(n: int) -> None:
    sims = {backend: build_simulation(MODEL, backend, "build", n) for backend in ("dyngen", "dynode")}
    for sim in sims.values():
        sim.simulate(1.0, 0.25)
    ours, theirs = sims["dyngen"].kept, sims["dynode"].kept
    assert len(ours) == len(theirs) == 5
    for kept in (ours, theirs):
        assert len({id(x) for x, _, _ in kept}) == 1  # the state: one array, updated in place
        assert len({id(dx) for _, dx, _ in kept}) == 5  # ders and outputs: a new array per call
        assert len({id(y) for _, _, y in kept}) == 5
    # at t = 0 dynode shows the containers' initial values (no RHS has run yet; README)
    for (x, dx, y), (x_, dx_, y_) in zip(ours[1:], theirs[1:]):
        np.testing.assert_allclose(x, x_, rtol=1e-8)
        np.testing.assert_allclose(dx, dx_, rtol=1e-8)
        np.testing.assert_allclose(y, y_, rtol=1e-8)
    times = np.arange(1, 5) * 0.25
    x0 = np.linspace(1.0, 2.0, n)
    expected_y = [2.0 * x0 * np.exp(-0.5 * t) + t for t in times]
    np.testing.assert_allclose([y for _, _, y in ours[1:]], expected_y, rtol=1e-6)
    # the Recorders (deep copies in dynode, samples in dyngen) agree as well
    for key in ("ders.x", "outputs.y"):
        got = [np.asarray(v) for v in sims["dyngen"].recorder.results[sims["dyngen"].system][key][1:]]
        want = [np.asarray(v) for v in sims["dynode"].recorder.results[sims["dynode"].system][key][1:]]
        np.testing.assert_allclose(got, want, rtol=1e-8)
