"""``integrator="sparse_bdf"`` (dyngen/runtime/sparse_bdf.py): a BDF/NDF on the sparse
Jacobian that keeps its SuperLU factor across steps.

References, all independent of it: scipy's Radau at rtol 1e-10/1e-12 on right-hand
sides written by hand (the 2-D Brusselator of ``benchmarks/brusselator.py``, the 1-D
Brusselator of test_sparse_rodas4.py), the exact solution of a linear chain
(``expm_multiply``), and DOP853 at rtol 1e-10 on the mean-field model of
test_lowrank.py (a Jacobian S + U Vᵀ: Woodbury with the kept factor).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import sparse
from scipy.integrate import solve_ivp
from scipy.sparse.linalg import expm_multiply

from dyngen import DyngenError, Recorder, Simulation, SolverError, System
from dyngen.cli import main
from dyngen.runtime import sparse_bdf
from dyngen.runtime.integrators import DENSE_MAX_STATES
from dyngen.runtime.sparse_bdf import SparseBdfIntegrator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import brusselator  # noqa: E402  (benchmarks/brusselator.py: the issue's 2-D model)


class Chain(System):
    """A stiff linear chain: u' = d (u[i-1] - 2 u[i] + u[i+1]) - u + s, zero at both ends,
    with a source ``s`` (a parameter) and outputs read only by observers."""

    def __init__(self, n: int = 120) -> None:
        super().__init__()
        x = np.linspace(0.0, 1.0, n)
        self.states.u = np.sin(np.pi * x) + np.exp(-(((x - 0.3) / 0.05) ** 2))
        self.inputs.d = 0.5 * (n + 1) ** 2
        self.inputs.s = 2.0
        self.outputs.total = 0.0
        self.outputs.left = 0.0

    def do_step(self, time):
        u = self.states.u
        left = np.concatenate(([0.0], u[:-1]))
        right = np.concatenate((u[1:], [0.0]))
        self.ders.u = self.inputs.d * (left - 2.0 * u + right) - u + self.inputs.s
        self.outputs.total = np.sum(u)
        self.outputs.left = u[0]


def chain_exact(system: Chain, u0: np.ndarray, s: float, t: float) -> np.ndarray:
    """u(t) = u* + exp(t A)(u0 - u*), A u* = -s."""
    n = u0.size
    A = system.inputs.d * sparse.diags([np.ones(n - 1), -2.0 * np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="csc")
    A = A - sparse.identity(n, format="csc")
    steady = sparse.linalg.spsolve(A, -s * np.ones(n))
    return steady + expm_multiply(t * A, u0 - steady)


def record(sim: Simulation, system: System, *signals: str) -> Recorder:
    recorder = Recorder()
    for signal in signals:
        recorder.store(system, signal)
    sim.add_observer(recorder)
    return recorder


def test_the_2d_brusselator_reaches_the_radau_reference_at_every_output_time() -> None:
    n = 12  # 288 states, 6 Jacobian entries a row
    sim = brusselator.build(n)
    system = sim.systems[0]
    y0 = np.concatenate((system.states.u.ravel(), system.states.v.ravel()))
    recorder = record(sim, system, "states.u", "states.v")
    sim.simulate(1.0, 0.125, integrator="sparse_bdf", rtol=1e-7, atol=1e-9)
    times = np.array(recorder.results[system]["time"])
    np.testing.assert_array_equal(times, 0.125 * np.arange(9))  # the requested times, exactly (added up)
    ours = np.hstack([np.array(recorder.results[system][k]).reshape(len(times), -1) for k in ("states.u", "states.v")])
    reference = solve_ivp(
        brusselator.rhs_numpy(n), (0.0, 1.0), y0, method="Radau", rtol=1e-10, atol=1e-12, t_eval=times,
        jac_sparsity=brusselator.sparsity(n),
    )  # fmt: skip
    assert reference.success
    np.testing.assert_allclose(ours, reference.y.T, rtol=1e-5, atol=1e-6)
    assert np.abs(reference.y[:, -1] - y0).max() > 1.0  # the solution moves: the comparison means something
    np.testing.assert_array_equal(ours[-1, : n * n], system.states.u.ravel())  # the final state, written back


def test_the_1d_brusselator_reaches_the_radau_reference_with_few_factorizations() -> None:
    from test_sparse_rodas4 import Brusselator1D, brusselator_reference

    sim = Simulation()
    sim.add_system(Brusselator1D(100))
    module, model = sim.module, sim._model
    p, y0 = model.gather_parameters(), model.gather_states()
    solver = SparseBdfIntegrator(module, p, 0.0, y0, 10.0, {"rtol": 1e-8, "atol": 1e-10}, model.state_name)
    times = np.array([0.5, 1.0, 2.5, 2.6, 10.0])  # two output times inside one step, the end
    states = []
    for t in times:
        solver.advance(t)
        assert solver.t == t
        states.append(solver.y.copy())
    reference = brusselator_reference(100, np.concatenate(([0.0], times)))[1:]
    np.testing.assert_allclose(np.array(states), reference, rtol=1e-5, atol=1e-6)
    stats = solver.stats
    assert stats["steps"] > 100  # (reuse is the point:) a factor serves several steps
    assert stats["factorizations"] < stats["steps"] / 4
    assert stats["solves"] < 2 * stats["steps"] and stats["rhs"] == stats["solves"] + 2  # (+2: the first step's choice)


def test_a_new_factor_every_step_gives_the_same_answer_to_the_tolerance(monkeypatch: pytest.MonkeyPatch) -> None:
    """The kept factor (with CVODE's scaling of its corrections) against a fresh factor at
    every step: the same solution to the tolerance, with a fraction of the factorizations."""
    sim = brusselator.build(10)
    module, model = sim.module, sim._model
    p, y0 = model.gather_parameters(), model.gather_states()
    options = {"rtol": 1e-6, "atol": 1e-8}
    kept = SparseBdfIntegrator(module, p, 0.0, y0, 1.0, options, model.state_name)
    kept.advance(1.0)
    monkeypatch.setattr(sparse_bdf, "REFACTOR_STEPS", 1)
    monkeypatch.setattr(sparse_bdf, "NONSTIFF", 0.0)
    fresh = SparseBdfIntegrator(module, p, 0.0, y0, 1.0, options, model.state_name)
    fresh.advance(1.0)
    assert fresh.stats["factorizations"] >= fresh.stats["steps"] > 50
    assert kept.stats["factorizations"] < kept.stats["steps"] / 5
    np.testing.assert_allclose(kept.y, fresh.y, rtol=0, atol=2e-5)  # the states reach 2-4


def test_outputs_inputs_and_an_observer_change_of_a_parameter() -> None:
    sim, system = Simulation(), Chain(120)
    sim.add_system(system)
    u0 = system.states.u.copy()
    recorder = record(sim, system, "states.u", "outputs.total", "outputs.left", "inputs.s")
    seen = []

    def controller(t: float, y: np.ndarray) -> None:  # from t = 0.2 on, the source is 5
        seen.append(t)
        if t == 0.2:
            system.inputs.s = 5.0

    sim.add_observer(controller)
    sim.simulate(0.4, 0.05, integrator="sparse_bdf", rtol=1e-8, atol=1e-10)
    results = recorder.results[system]
    times, u = np.array(results["time"]), np.array(results["states.u"])
    assert seen == list(times) and len(times) == 9
    np.testing.assert_allclose(results["outputs.total"], u.sum(axis=1), rtol=1e-12)
    np.testing.assert_array_equal(results["outputs.left"], u[:, 0])
    assert results["inputs.s"][:4] == [2.0] * 4 and results["inputs.s"][5:] == [5.0] * 4
    switched = chain_exact(system, u0, 2.0, 0.2)
    expected = [chain_exact(system, u0, 2.0, t) if t <= 0.2 else chain_exact(system, switched, 5.0, t - 0.2) for t in times]
    np.testing.assert_allclose(u, np.array(expected), rtol=1e-6, atol=1e-7)
    assert np.abs(u[-1] - u0).max() > 0.5


def test_the_low_rank_jacobian_is_solved_with_the_kept_factor() -> None:
    from test_lowrank import mean_field_reference, run, simulation

    sim = simulation("build_mean_field", 200)  # J = S + U Vᵀ, rank 2
    module = sim.compile().module
    assert module.N_LOWRANK == 2
    p, y0 = sim._model.gather_parameters(), sim._model.gather_states()
    times, ours = run(sim, "sparse_bdf", 2.0, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ours, mean_field_reference(module, p, y0, times), rtol=2e-5, atol=2e-6)
    solver = SparseBdfIntegrator(module, p, 0.0, y0, 2.0, {"rtol": 1e-8, "atol": 1e-10}, sim._model.state_name)
    solver.advance(2.0)
    assert solver.stats["factorizations"] < solver.stats["steps"] / 3


def test_the_command_line_runs_it(tmp_path: Path) -> None:
    model = tmp_path / "chain.py"
    model.write_text(
        "import numpy as np\nfrom dyngen import Simulation\nfrom test_sparse_bdf import Chain\n\n"
        "def build():\n    sim = Simulation()\n    sim.add_system(Chain(40))\n    return sim\n"
    )
    out = tmp_path / "out.csv"
    result = CliRunner().invoke(
        main, ["run", str(model), "--t", "0.2", "--dt", "0.1", "--integrator", "sparse_bdf", "--rtol", "1e-8",
               "--atol", "1e-10", "-o", str(out)], catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = out.read_text().splitlines()
    assert len(rows) == 4 and rows[0].startswith("time,Chain.states.u[0]")
    system = Chain(40)
    last = np.array([float(v) for v in rows[-1].split(",")[1:41]])
    np.testing.assert_allclose(last, chain_exact(system, system.states.u.copy(), 2.0, 0.2), rtol=1e-6, atol=1e-7)


def test_options_and_models_it_cannot_take_are_refused() -> None:
    sim, system = Simulation(), Chain(20)
    sim.add_system(system)
    with pytest.raises(DyngenError, match=r"'sparse_bdf' does not take \['order'\]; it takes \['rtol'"):
        sim.simulate(0.1, 0.1, integrator="sparse_bdf", order=3)
    with pytest.raises(DyngenError, match=r"fixed_step=True needs .*not 'sparse_bdf'"):
        sim.simulate(0.1, 0.1, fixed_step=True, integrator="sparse_bdf")
    with pytest.raises(DyngenError, match=r"rtol must be > 0"):
        sim.simulate(0.1, 0.1, integrator="sparse_bdf", rtol=0.0)
    model = sim._model
    solver = SparseBdfIntegrator(sim.module, model.gather_parameters(), 0.0, model.gather_states(), 0.5, {}, str)
    with pytest.raises(DyngenError, match=r"t_end = 0.6 is past t_bound = 0.5"):
        solver.advance(0.6)
    n = DENSE_MAX_STATES + 1
    dense = types.SimpleNamespace(N_STATES=n, JAC_NNZ=n * n // 5, NO_JACOBIAN=None)
    with pytest.raises(DyngenError, match=r"'sparse_bdf'.*Jacobian.*dense.*'dopri5'"):
        SparseBdfIntegrator(dense, np.zeros(0), 0.0, np.zeros(n), 1.0, {}, str)
    none = types.SimpleNamespace(N_STATES=1, NO_JACOBIAN="np.max along axis 1 (model.py:3)")
    with pytest.raises(DyngenError, match=r"'sparse_bdf' needs the model's Jacobian.*np.max along axis 1.*'dopri5'"):
        SparseBdfIntegrator(none, np.zeros(0), 0.0, np.zeros(1), 1.0, {}, str)


def test_a_model_without_a_jacobian_is_refused_by_simulate() -> None:
    from dynode_compare import build_simulation

    model = Path(__file__).resolve().parent / "nested_model.py"
    sim = build_simulation(model, "dyngen", "build", 12, 80, "three_levels")  # no Jacobian yet
    with pytest.raises(DyngenError, match=r"'sparse_bdf' needs the model's Jacobian.*'dopri5'"):
        sim.simulate(0.1, 0.1, integrator="sparse_bdf")


def test_a_blow_up_names_the_time_and_the_state() -> None:
    from test_stiff import Blowup

    sim = Simulation()
    sim.add_system(Blowup())
    with pytest.raises(SolverError, match=r"sparse_bdf failed between t = 0.75 and t = 1.0 \(reached t = 0.9"):
        sim.simulate(2.0, 0.25, integrator="sparse_bdf")
