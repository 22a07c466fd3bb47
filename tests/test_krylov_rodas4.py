"""rodas4 with ``linear_solver="krylov"`` (dyngen/runtime/stage_solvers.py): GMRES on each
step's exact iteration matrix, preconditioned by a kept SuperLU factor.

References: scipy's Radau at rtol 1e-12 on the 1-D Brusselator written by hand
(``test_sparse_rodas4.brusselator_reference``), the direct path (a new LU per step), and
``spsolve`` for single solves.  A solve that does not converge must stop the run with a
clear error, never return a wrong state.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import sparse
from scipy.sparse.linalg import splu, spsolve

from dyngen import DyngenError, Recorder, SolverError
from dyngen.runtime import sparse_stiff, stiff
from dyngen.runtime.sparse_stiff import SparseRosenbrockIntegrator
from dyngen.runtime.stage_solvers import KRYLOV_TOL, KrylovStages
from test_sparse_rodas4 import brusselator, brusselator_reference


def stage_solver(J: sparse.csc_matrix, c: float) -> KrylovStages:
    n = J.shape[0]
    identity = sparse.identity(n, format="csc")
    return KrylovStages(
        lambda c_: splu((c_ * identity - J).tocsc()), lambda c_, x: c_ * x - J @ x, n, lambda: float(abs(J).sum(axis=1).max())
    )


def test_gmres_with_an_old_factor_solves_the_new_matrix_to_the_tolerance() -> None:
    rng = np.random.default_rng(1)
    n = 300
    J = sparse.diags([np.ones(n - 1), -2.0 * np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="csc") * 1e3
    J = (J + sparse.random(n, n, density=0.01, random_state=rng) * 5.0).tocsc()
    solver = stage_solver(J, 100.0)
    weights = 1.0 / (1e-8 + 1e-6 * rng.uniform(0.5, 2.0, n))
    assert solver.prepare(100.0, weights)  # a fresh factor: a direct solve
    b = rng.normal(size=n)
    np.testing.assert_allclose(solver.solve(b), spsolve((100.0 * sparse.identity(n) - J).tocsc(), b), rtol=1e-12)
    assert solver.stats == {"factorizations": 1, "solves": 1, "gmres_iterations": 0, "gmres_failures": 0, "slow_stages": 0}

    J2 = (J + sparse.diags(rng.uniform(-3.0, 3.0, n))).tocsc()  # the next step: a new Jacobian and c
    solver._matvec = lambda c_, x: c_ * x - J2 @ x
    solver.new_jacobian()
    assert solver.prepare(110.0, weights)
    x = solver.solve(b)
    exact = spsolve((110.0 * sparse.identity(n) - J2).tocsc(), b)
    error = np.sqrt(np.mean((weights * (x - exact)) ** 2))
    assert error <= KRYLOV_TOL and np.sqrt(np.mean((weights * exact) ** 2)) > 1e3  # far below the solution's size
    assert solver.stats["factorizations"] == 1 and solver.stats["gmres_iterations"] >= 1

    first = solver.stats["solves"] - 1  # the next stage of the step: the first one's directions are recycled
    b2 = b + rng.normal(size=n) * 0.1
    x2 = solver.solve(b2)
    exact2 = spsolve((110.0 * sparse.identity(n) - J2).tocsc(), b2)
    assert np.sqrt(np.mean((weights * (x2 - exact2)) ** 2)) <= KRYLOV_TOL
    assert solver.stats["solves"] - 1 - first < first


def test_a_stage_that_does_not_converge_gets_a_fresh_factor() -> None:
    rng = np.random.default_rng(2)
    n = 200
    J = (sparse.diags([np.ones(n - 1), -2.0 * np.ones(n), np.ones(n - 1)], [-1, 0, 1]) * 1e3).tocsc()
    solver = stage_solver(J, 1.0)
    weights = np.full(n, 1e6)
    assert solver.prepare(1.0, weights)
    J2 = (J + sparse.random(n, n, density=0.05, random_state=rng) * 3e3).tocsc()  # far from the factor's matrix
    solver._matvec = lambda c_, x: c_ * x - J2 @ x
    solver._factor = lambda c_: splu((c_ * sparse.identity(n) - J2).tocsc())
    solver.new_jacobian()
    assert solver.prepare(1.2, weights)
    b = rng.normal(size=n)
    x = solver.solve(b)
    np.testing.assert_allclose(x, spsolve((1.2 * sparse.identity(n) - J2).tocsc(), b), rtol=1e-9)
    assert solver.stats["gmres_failures"] == 1 and solver.stats["factorizations"] == 2


@pytest.mark.slow
def test_krylov_rodas4_reaches_the_radau_reference_with_fewer_factorizations() -> None:
    results = {}
    for choice in ("direct", "krylov"):
        sim, system = brusselator(100)  # 200 states: the sparse path
        recorder = Recorder()
        recorder.store(system, "states.u")
        recorder.store(system, "states.v")
        sim.add_observer(recorder)
        sim.simulate(10.0, 1.0, integrator="rodas4", rtol=1e-8, atol=1e-10, linear_solver=choice)
        times = np.array(recorder.results[system]["time"])
        results[choice] = np.hstack((np.array(recorder.results[system]["states.u"]), np.array(recorder.results[system]["states.v"])))
    reference = brusselator_reference(100, times)
    for choice, ours in results.items():
        np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6, err_msg=choice)
    np.testing.assert_allclose(results["krylov"], results["direct"], rtol=1e-6, atol=1e-7)
    assert np.abs(reference[-1] - reference[0]).max() > 1.0  # the solution moves

    sim, _ = brusselator(100)
    module, model = sim.compile().module, sim._model
    ours = SparseRosenbrockIntegrator(
        module, model.gather_parameters(), 0.0, model.gather_states(),
        {"rtol": 1e-8, "atol": 1e-10, "linear_solver": "krylov"}, model.state_name,
    )  # fmt: skip
    ours.advance(10.0)
    stats = ours.linear_stats
    assert set(stats) == {"factorizations", "solves", "gmres_iterations", "gmres_failures", "slow_stages"}
    assert stats["factorizations"] < ours.stats[0] / 2 and stats["gmres_iterations"] > ours.stats[0]


def test_the_direct_path_reports_one_factorization_a_step() -> None:
    sim, _ = brusselator(100)
    module, model = sim.compile().module, sim._model
    ours = SparseRosenbrockIntegrator(
        module, model.gather_parameters(), 0.0, model.gather_states(), {"rtol": 1e-6, "atol": 1e-8}, model.state_name
    )
    ours.advance(1.0)
    assert ours.linear_stats == {"factorizations": ours.stats[0], "solves": 6 * ours.stats[0]}


def test_krylov_takes_the_sparse_path_even_for_a_small_model() -> None:
    sim, _ = brusselator(10)  # 20 states: the compiled dense path by default
    module, model = sim.compile().module, sim._model
    args = (module, model.gather_parameters(), 0.0, model.gather_states())
    assert not stiff.uses_sparse_lu(module)
    assert isinstance(stiff.rodas4_integrator(*args, {"linear_solver": "krylov"}, model.state_name), SparseRosenbrockIntegrator)
    assert isinstance(stiff.rodas4_integrator(*args, {"linear_solver": "direct"}, model.state_name), stiff.CompiledRosenbrockIntegrator)
    with pytest.raises(DyngenError, match=r"linear_solver='cg' is not one of \['direct', 'krylov'\]"):
        stiff.rodas4_integrator(*args, {"linear_solver": "cg"}, model.state_name)


def test_an_unconverged_solve_stops_the_run_with_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A factor that does not solve its matrix (here: of the diagonal only): GMRES fails,
    the fresh factor too, and the run stops with status -7 instead of going on."""

    def diagonal_only(matrix: sparse.csc_matrix) -> object:
        return splu(sparse.diags(matrix.diagonal()).tocsc())

    monkeypatch.setattr(sparse_stiff, "factor_iteration_matrix", diagonal_only)
    sim, _ = brusselator(100)
    with pytest.raises(SolverError, match=r"rodas4 failed between t = 0.0 and t = 1.0 .*linear solve .*did not converge"):
        sim.simulate(1.0, 1.0, integrator="rodas4", linear_solver="krylov")


def test_krylov_with_events_is_refused_not_ignored() -> None:
    from test_events import Ball, simulated

    sim = simulated(Ball())
    with pytest.raises(DyngenError, match=r"rodas4 with events runs with the dense LU only: linear_solver='krylov'"):
        sim.simulate(1.0, 0.5, integrator="rodas4", linear_solver="krylov")


@pytest.mark.slow
def test_an_ensemble_runs_krylov_member_by_member_on_the_sparse_path() -> None:
    results = {}
    for choice in ("direct", "krylov"):  # 20 states: direct is the compiled dense ensemble
        sim, _ = brusselator(10)
        results[choice] = sim.ensemble(
            1.0, 0.5, grid={"Brusselator1D.inputs.c": [2.0, 2.5]}, integrator="rodas4", rtol=1e-8, atol=1e-10,
            linear_solver=choice,
        )  # fmt: skip
    for key in ("Brusselator1D.states.u", "Brusselator1D.states.v"):
        np.testing.assert_allclose(np.asarray(results["krylov"][key]), np.asarray(results["direct"][key]), rtol=1e-7, atol=1e-8)
