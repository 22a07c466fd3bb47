"""Stiff integration with the generated Jacobian: compiled RODAS4 and scipy's solvers.

References are scipy's Radau at rtol 1e-12 on a hand-written right-hand side.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import dyngen
from dyngen import Recorder, Simulation, SolverError, System
from dyngen.runtime import compiled_methods


class Robertson(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.c = np.array([1.0, 0.0, 0.0])
        self.inputs.k = np.array([0.04, 3e7, 1e4])

    def do_step(self, time):
        c1, c2, c3 = self.states.c
        k1, k2, k3 = self.inputs.k
        self.ders.c = np.array([-k1 * c1 + k3 * c2 * c3, k1 * c1 - k3 * c2 * c3 - k2 * c2**2, k2 * c2**2])


def robertson_rhs(t, c):
    return [-0.04 * c[0] + 1e4 * c[1] * c[2], 0.04 * c[0] - 1e4 * c[1] * c[2] - 3e7 * c[1] ** 2, 3e7 * c[1] ** 2]


class Lag(System):
    """dx/dt = (u - x) / tau: one link of a stiff chain (time constants 1 ... 1e-6)."""

    def __init__(self, tau: float) -> None:
        super().__init__()
        self.inputs.tau = tau
        self.inputs.u = 0.0
        self.states.x = 0.0
        self.outputs.x = 0.0

    def do_step(self, time):
        self.ders.x = (self.inputs.u - self.states.x) / self.inputs.tau
        self.outputs.x = self.states.x


def driver(system, time):
    system.inputs.u = np.sin(time) + 0.5 * np.cos(3.0 * time)


def stiff_chain(n: int = 12) -> tuple[Simulation, list[Lag]]:
    taus = np.logspace(0, -6, n)
    lags = [Lag(float(tau)) for tau in taus]
    lags[0].add_pre_connection(driver)
    for previous, lag in zip(lags, lags[1:]):
        lag.add_pre_connection(dyngen.connect_signals(previous.outputs, "x", lag.inputs, "u"))
    sim = Simulation()
    for lag in lags:
        sim.add_system(lag)
    return sim, lags


def chain_reference(n: int, times: np.ndarray) -> np.ndarray:
    taus = np.logspace(0, -6, n)

    def rhs(t, x):
        u = np.concatenate([[np.sin(t) + 0.5 * np.cos(3.0 * t)], x[:-1]])
        return (u - x) / taus

    def jac(t, x):
        return np.diag(-1 / taus) + np.diag(1 / taus[1:], -1)

    sol = solve_ivp(rhs, (0, times[-1]), np.zeros(n), method="Radau", jac=jac, rtol=1e-12, atol=1e-14, t_eval=times)
    return sol.y.T


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rodas4", "BDF", "Radau", "LSODA"])
def test_robertson_reaches_the_reference(method: str) -> None:
    sim = Simulation()
    system = Robertson()
    sim.add_system(system)
    recorder = Recorder()
    recorder.store(system, "states.c")
    sim.add_observer(recorder)
    sim.simulate(1e5, 1e4, integrator=method, rtol=1e-6, atol=1e-10)
    times = np.array(recorder.results[system]["time"])
    ours = np.array(recorder.results[system]["states.c"])
    reference = solve_ivp(robertson_rhs, (0, 1e5), [1, 0, 0], method="Radau", rtol=1e-12, atol=1e-16, t_eval=times)
    assert np.allclose(times, np.arange(11) * 1e4)
    # the requested tolerance, with room for error accumulation over 11 outputs
    np.testing.assert_allclose(ours, reference.y.T, rtol=1e-4, atol=1e-9)
    assert abs(sum(system.states.c) - 1.0) < 1e-8  # mass is conserved


@pytest.mark.slow
@pytest.mark.parametrize("method", ["rodas4", "BDF"])
def test_stiff_chain_reaches_the_reference(method: str) -> None:
    sim, lags = stiff_chain()
    recorder = Recorder()
    for lag in lags:
        recorder.store(lag, "states.x")
    sim.add_observer(recorder)
    sim.simulate(5.0, 0.5, integrator=method, rtol=1e-8, atol=1e-10)
    ours = np.array([recorder.results[lag]["states.x"] for lag in lags]).T
    reference = chain_reference(len(lags), np.array(recorder.results[lags[0]]["time"]))
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-7)


def test_rodas4_is_not_slowed_down_by_pivoting() -> None:
    # The chain's iteration matrix needs row interchanges; a wrong LU solve makes
    # the error control reject step after step (it once needed ~400k steps here).
    sim, lags = stiff_chain()
    sim.compile()
    solver = dyngen.runtime.stiff.CompiledRosenbrockIntegrator(
        sim.module, sim._model.gather_parameters(), 0.0, sim._model.gather_states(), {"rtol": 1e-8, "atol": 1e-10},
        sim._model.state_name,
    )
    solver.advance(5.0)
    steps, rejected = solver.stats[0], solver.stats[1]
    assert steps < 2000 and rejected < steps / 4, solver.stats


def test_compiled_lu_solves_pivoted_systems() -> None:
    module = compiled_methods
    rng = np.random.default_rng(1)
    for n in (1, 2, 5, 9):
        a = rng.normal(size=(n, n))
        b = rng.normal(size=n)
        lu, piv, x = a.copy(), np.zeros(n, dtype=np.int64), b.copy()
        assert module._lu_factor(lu, piv)
        module._lu_solve(lu, piv, x)
        np.testing.assert_allclose(a @ x, b, atol=1e-11)
    assert not module._lu_factor(np.zeros((3, 3)), np.zeros(3, dtype=np.int64))


class Blowup(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0

    def do_step(self, time):
        self.ders.x = self.states.x**2  # x = 1/(1 - t): infinite at t = 1


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dopri5", "dop853", "rodas4", "BDF"])
def test_a_blow_up_names_the_time(method: str) -> None:
    sim = Simulation()
    sim.add_system(Blowup())
    with pytest.raises(dyngen.SolverError) as info:
        sim.simulate(2.0, 0.25, integrator=method)
    message = str(info.value)
    assert message.startswith(method)
    reached = float(message.split("reached t = ")[1].split(")")[0])
    assert 0.75 <= reached <= 1.01  # the pole is at t = 1; explicit steps may land just past it


class GoesNaN(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.ok = 1.0
        self.states.bad = 1.0

    def do_step(self, time):
        self.ders.ok = -self.states.ok
        self.ders.bad = np.sqrt(self.states.bad - 1.5)  # NaN from the start


@pytest.mark.slow
@pytest.mark.parametrize("method", ["dopri5", "dop853", "rodas4", "BDF", "lsoda"])
def test_a_non_finite_state_is_named_by_its_system_path(method: str) -> None:
    sim = Simulation()
    sim.add_system(GoesNaN())
    with pytest.raises(dyngen.SolverError) as info:
        sim.simulate(1.0, 0.25, integrator=method)
    message = str(info.value)
    assert "GoesNaN.states.bad" in message
    assert "GoesNaN.states.ok" not in message


class Diffusion(System):
    """A 1-D diffusion-decay line of 120 cells: a large, tridiagonal (sparse) Jacobian."""

    def __init__(self, n: int = 120) -> None:
        super().__init__()
        self.states.u = np.linspace(0.0, 1.0, n)
        self.inputs.d = 50.0

    def do_step(self, time):
        u = self.states.u
        left = np.concatenate([[u[0]], u[:-1]])
        right = np.concatenate([u[1:], [u[-1]]])
        self.ders.u = self.inputs.d * (left - 2.0 * u + right) - u


@pytest.mark.slow
def test_large_sparse_models_get_a_sparse_jacobian_that_equals_the_dense_one() -> None:
    from scipy import sparse

    from dyngen.runtime.integrators import jacobian_callable

    sim, system = Simulation(), Diffusion()
    sim.add_system(system)
    module = sim.module
    p = sim._model.gather_parameters()
    y = np.sin(np.arange(module.N_STATES, dtype=float))
    J = jacobian_callable(module, p)(0.0, y)
    assert sparse.issparse(J) and J.format == "csc"
    assert J.nnz == module.JAC_NNZ < 0.1 * module.N_STATES**2
    dense = np.empty((module.N_STATES, module.N_STATES))
    module.jac(0.0, y, p, dense)
    np.testing.assert_array_equal(J.toarray(), dense)
    # and BDF with it reaches the same answer as the compiled RODAS4
    sim.simulate(1.0, 0.5, integrator="BDF", rtol=1e-8, atol=1e-10)
    with_bdf = system.states.u.copy()
    system.states.u = np.linspace(0.0, 1.0, module.N_STATES)
    sim._t = 0
    sim.simulate(1.0, 0.5, integrator="rodas4", rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(with_bdf, system.states.u, rtol=1e-5, atol=1e-8)


@pytest.mark.slow
@pytest.mark.parametrize("standalone", [False, True])
def test_rodas4_refuses_arrays_that_do_not_fit_the_model(standalone: bool) -> None:
    sim, _ = stiff_chain(3)
    sim.standalone = standalone  # the module's own rodas4, or dyngen's shared one
    sim.compile()
    y0 = sim._model.gather_states()
    solver = dyngen.runtime.stiff.CompiledRosenbrockIntegrator(
        sim.module, sim._model.gather_parameters(), 0.0, y0, {}, sim._model.state_name
    )
    fitting = solver._lu, solver._p
    for name, bad in [("_lu", np.zeros((2, 2))), ("_p", solver._p[:-1])]:  # the loops run to N_STATES = 3
        setattr(solver, name, bad)
        with pytest.raises(SolverError, match="does not fit the model"):
            solver.advance(1.0)
        assert solver.t == 0.0 and np.array_equal(solver.y, y0) and not solver.stats.any()
        solver._lu, solver._p = fitting
    solver.advance(1.0)
    assert solver.t == 1.0
