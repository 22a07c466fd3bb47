"""A model without an analytic Jacobian still runs with scipy's implicit methods.

Some array models have no Jacobian dyngen can derive yet (their module's
``NO_JACOBIAN`` says why; here ``tests/nested_model.py``'s ``"three_levels"`` case, row
sums weighted by the column means of a 12 x 80 grid, themselves weighted by the row means).  ``BDF``, ``Radau``, ``LSODA`` and
``lsoda`` then approximate it by finite differences of ``rhs``, as scipy does for every
dynode model (``vode`` runs as under dynode), and say so once (``JacobianWarning``); the
compiled ``rodas4`` and ``sparse_bdf``, which need it, are refused with an error naming
the methods that run.  Checked against dynode running the same file (a tight run, and
the same ``lsoda``), also with an event located by ``BDF``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dyngen import DyngenError, JacobianWarning, Simulation
from dyngen.runtime.integrators import DENSE_MAX_STATES, check_without_jacobian
from dynode_compare import build_simulation, run
from nested_model import Communities

MODEL = Path(__file__).resolve().parent / "nested_model.py"
SIZE = (12, 80)  # 80 columns: three reductions nested, not derived
REASON = (r"; dyngen derives no analytic Jacobian for it: "
          r"d/dt \w+\.states\.v reads np\.sum along axis 1 \([\w/]*nested_model\.py:\d+\)")


def three_levels(backend: str) -> object:
    return build_simulation(MODEL, backend, "build", *SIZE, "three_levels")


@pytest.fixture(scope="module")
def tight_dynode() -> np.ndarray:
    return run(three_levels("dynode"), "dynode", 1.0, 0.25, rtol=1e-11, atol=1e-13).observed_y


@pytest.mark.parametrize(
    "method, options",
    [("BDF", {}), ("Radau", {}), ("LSODA", {}), ("lsoda", {}), ("vode", {"method": "bdf", "with_jacobian": True})],
)
def test_scipy_methods_approximate_it_and_reach_dynode(method: str, options: dict, tight_dynode: np.ndarray) -> None:
    sim = three_levels("dyngen")
    with pytest.warns(JacobianWarning, match=REASON) as caught:
        ours = run(sim, "dyngen", 1.0, 0.25, integrator=method, rtol=1e-9, atol=1e-11, **options)
    said = str(caught[0].message)
    expected = "approximates this model's Jacobian by finite differences"
    if method == "vode":
        expected = "runs without this model's Jacobian, as under dynode"
    assert said.startswith(f"'{method}' {expected}")
    np.testing.assert_allclose(ours.observed_y, tight_dynode, rtol=1e-6, atol=1e-8)


def test_lsoda_without_a_jacobian_is_dynodes_lsoda() -> None:
    """dynode gives lsoda no Jacobian: dyngen's lsoda on such a model is set up the same
    (finite differences inside LSODA), so the runs agree far below the tolerance."""
    with pytest.warns(JacobianWarning):
        ours = run(three_levels("dyngen"), "dyngen", 1.0, 0.25, integrator="lsoda", rtol=1e-7, atol=1e-9)
    theirs = run(three_levels("dynode"), "dynode", 1.0, 0.25, integrator="lsoda", rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(ours.observed_y, theirs.observed_y, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("method", ["rodas4", "sparse_bdf"])
def test_methods_that_need_it_are_refused_naming_those_that_run(method: str) -> None:
    sim = three_levels("dyngen")
    before = sim.systems[0].states.v.copy()
    with pytest.raises(DyngenError, match=rf"'{method}' needs the model's Jacobian, which this model does not have: "
                       r"d/dt Communities\.states\.v .*use 'BDF', 'Radau' or 'LSODA' \(scipy's finite-difference "
                       r"Jacobian\) or 'dopri5' or 'dop853'"):  # fmt: skip
        sim.simulate(0.5, 0.25, integrator=method)
    np.testing.assert_array_equal(sim.systems[0].states.v, before)  # nothing ran


def test_finite_differences_of_a_huge_model_are_refused() -> None:
    n = DENSE_MAX_STATES + 1
    with pytest.raises(DyngenError, match=rf"'BDF' would approximate .* dense {n} x {n} matrix .*'dopri5' or 'dop853'"):
        check_without_jacobian("BDF", n, "np.sum along axis 1 (model.py:3)")
    with pytest.raises(DyngenError, match=r"'rodas4' needs the model's Jacobian.*\(model\.py:3\); use 'dopri5' or 'dop853'$"):
        check_without_jacobian("rodas4", n, "np.sum along axis 1 (model.py:3)")


class Threshold(Communities):
    """The three_levels model, stopped when the first community's level (0.1 at t = 0) rises to 0.2."""

    def __init__(self) -> None:
        super().__init__(*SIZE, "three_levels")
        self.add_event(self.high, direction=1, terminal=True)

    def high(self, t):
        return self.states.v[0] - 0.2


@pytest.mark.slow
def test_an_event_is_located_with_finite_differences() -> None:
    def crossing(method: str, **options: float) -> float:
        sim = Simulation()
        sim.add_system(Threshold())
        sim.simulate(5.0, 0.5, integrator=method, **options)
        (record,) = sim.events
        assert record.terminal and record.event == "high"
        return record.time

    reference = crossing("dop853", rtol=1e-12, atol=1e-14)
    assert 0.5 < reference < 2.0
    with pytest.warns(JacobianWarning, match=REASON):
        assert crossing("BDF", rtol=1e-9, atol=1e-11) == pytest.approx(reference, rel=1e-6)
    with pytest.raises(DyngenError, match=r"'rodas4' needs the model's Jacobian.*'BDF', 'Radau' or 'LSODA'"):
        crossing("rodas4")


def test_the_warning_says_what_finite_differences_cost() -> None:
    with pytest.warns(JacobianWarning, match=r"^'Radau' approximates this model's Jacobian by finite differences of rhs "
                      r"\(3 rhs calls per Jacobian, a dense 3 x 3 matrix\), .*: why$"):  # fmt: skip
        check_without_jacobian("Radau", 3, "why")


@pytest.mark.slow
def test_an_ensemble_runs_it_with_finite_differences_member_by_member() -> None:
    """Each member equals a single BDF run with its value (the same finite differences);
    rodas4 is refused before any member runs."""
    k = [0.8, 1.6]
    with pytest.warns(JacobianWarning, match=REASON):
        ds = three_levels("dyngen").ensemble(0.5, 0.25, members={"Communities.inputs.k": k}, integrator="BDF", rtol=1e-8)
    assert (ds["status"].values == 1).all()
    for j, value in enumerate(k):
        sim = three_levels("dyngen")
        sim.systems[0].inputs.k = value
        with pytest.warns(JacobianWarning):
            single = run(sim, "dyngen", 0.5, 0.25, integrator="BDF", rtol=1e-8)
        np.testing.assert_array_equal(ds["Communities.states.v"].values[j], single.series["0:Communities"]["states.v"])
    with pytest.raises(DyngenError, match=r"'rodas4' needs the model's Jacobian.*'BDF', 'Radau' or 'LSODA'"):
        three_levels("dyngen").ensemble(0.5, 0.25, members={"Communities.inputs.k": k}, integrator="rodas4")
