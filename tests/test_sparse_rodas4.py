"""rodas4 with a sparse LU (dyngen/runtime/sparse_stiff.py) for large sparse models.

The sparse path is the compiled dense RODAS4 with other linear algebra: both must take
the same steps and agree to rounding.  References: scipy's Radau at rtol 1e-12 on a
hand-written right-hand side, and the exact solution of a linear system
(``expm_multiply``).
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from scipy import sparse
from scipy.integrate import solve_ivp
from scipy.sparse.linalg import expm_multiply

from dyngen import DyngenError, Recorder, Simulation, SolverError, System
from dyngen.runtime import stiff
from dyngen.runtime.integrators import DENSE_MAX_STATES
from dyngen.runtime.sparse_stiff import CscPattern, SparseRosenbrockIntegrator

A, B, ALPHA = 1.0, 3.0, 0.02


class Brusselator1D(System):
    """Hairer & Wanner's BRUSS: u' = A + u^2 v - (B + 1) u + alpha u_xx, v' = B u - u^2 v + alpha v_xx
    on n interior points of [0, 1], u = 1 and v = 3 at both ends."""

    def __init__(self, n: int = 100) -> None:
        super().__init__()
        x = np.arange(1, n + 1) / (n + 1)
        self.states.u = 1.0 + np.sin(2 * np.pi * x)
        self.states.v = np.full(n, 3.0)
        self.inputs.c = ALPHA * (n + 1) ** 2

    def do_step(self, time):
        u, v, c = self.states.u, self.states.v, self.inputs.c
        lap_u = np.concatenate(([1.0], u[:-1])) - 2.0 * u + np.concatenate((u[1:], [1.0]))
        lap_v = np.concatenate(([3.0], v[:-1])) - 2.0 * v + np.concatenate((v[1:], [3.0]))
        uuv = u * u * v
        self.ders.u = A + uuv - (B + 1.0) * u + c * lap_u
        self.ders.v = B * u - uuv + c * lap_v


def brusselator_reference(n: int, times: np.ndarray) -> np.ndarray:
    """Radau at rtol 1e-12 on the same equations written by hand: y = [u, v] at ``times``."""
    c = ALPHA * (n + 1) ** 2
    x = np.arange(1, n + 1) / (n + 1)
    second = sparse.diags([np.ones(n - 1), -2.0 * np.ones(n), np.ones(n - 1)], [-1, 0, 1])

    def rhs(t, y):
        u, v = y[:n], y[n:]
        ends_u, ends_v = np.zeros(n), np.zeros(n)
        ends_u[[0, -1]], ends_v[[0, -1]] = 1.0, 3.0
        uuv = u * u * v
        return np.concatenate((A + uuv - (B + 1) * u + c * (second @ u + ends_u), B * u - uuv + c * (second @ v + ends_v)))

    def jac(t, y):
        u, v = y[:n], y[n:]
        return sparse.bmat([
            [sparse.diags(2 * u * v - (B + 1)) + c * second, sparse.diags(u * u)],
            [sparse.diags(B - 2 * u * v), sparse.diags(-u * u) + c * second],
        ], format="csc")  # fmt: skip

    y0 = np.concatenate((1.0 + np.sin(2 * np.pi * x), np.full(n, 3.0)))
    solution = solve_ivp(rhs, (0.0, times[-1]), y0, method="Radau", jac=jac, rtol=1e-12, atol=1e-12, t_eval=times)
    assert solution.success
    return solution.y.T


def brusselator(n: int = 100) -> tuple[Simulation, Brusselator1D]:
    sim, system = Simulation(), Brusselator1D(n)
    sim.add_system(system)
    return sim, system


def test_the_csc_pattern_adds_repeated_entries_and_the_diagonal() -> None:
    rows, cols = np.array([0, 2, 1, 0, 2]), np.array([0, 0, 2, 0, 1])
    values = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    pattern = CscPattern(3, rows, cols)
    expected = 7.0 * np.eye(3) - sparse.coo_matrix((values, (rows, cols)), shape=(3, 3)).toarray()
    np.testing.assert_array_equal(pattern.matrix(pattern.values(values, 7.0)).toarray(), expected)


def test_large_sparse_models_take_the_sparse_path() -> None:
    sim, _ = brusselator(100)
    module = sim.module
    assert module.N_STATES == 200 and stiff.uses_sparse_lu(module)
    small, _ = brusselator(64)
    assert not stiff.uses_sparse_lu(small.module)  # 128 states: the compiled dense LU


@pytest.mark.slow
def test_sparse_and_dense_rodas4_take_the_same_steps() -> None:
    sim, _ = brusselator(100)
    module, model = sim.module, sim._model
    p, y0 = model.gather_parameters(), model.gather_states()
    options = {"rtol": 1e-7, "atol": 1e-9}
    dense = stiff.CompiledRosenbrockIntegrator(module, p, 0.0, y0, options, model.state_name)
    ours = SparseRosenbrockIntegrator(module, p, 0.0, y0, options, model.state_name)
    for t_end in (0.5, 1.0, 3.0, 10.0):
        dense.advance(t_end)
        ours.advance(t_end)
        assert ours.t == dense.t == t_end
        np.testing.assert_allclose(ours.y, dense.y, rtol=1e-10, atol=1e-12)
    assert ours.stats[0] == dense.stats[0] > 50  # the same steps, and the same rejections
    assert ours.stats[1] == dense.stats[1]


@pytest.mark.slow
def test_sparse_rodas4_reaches_the_radau_reference() -> None:
    sim, system = brusselator(100)
    recorder = Recorder()
    recorder.store(system, "states.u")
    recorder.store(system, "states.v")
    sim.add_observer(recorder)
    sim.simulate(10.0, 1.0, integrator="rodas4", rtol=1e-8, atol=1e-10)
    times = np.array(recorder.results[system]["time"])
    ours = np.hstack((np.array(recorder.results[system]["states.u"]), np.array(recorder.results[system]["states.v"])))
    reference = brusselator_reference(100, times)
    np.testing.assert_allclose(ours, reference, rtol=1e-5, atol=1e-6)
    assert np.abs(reference[-1] - reference[0]).max() > 1.0  # the solution moves: the comparison means something


class DiffusionDecay(System):
    """u' = d (u[i-1] - 2 u[i] + u[i+1]) - u with zero-flux ends: linear, stiff, tridiagonal."""

    def __init__(self, n: int) -> None:
        super().__init__()
        x = np.linspace(0.0, 1.0, n)
        self.states.u = np.exp(-(((x - 0.3) / 3e-4) ** 2)) + x
        self.inputs.d = 200.0

    def do_step(self, time):
        u = self.states.u
        left = np.concatenate(([u[0]], u[:-1]))
        right = np.concatenate((u[1:], [u[-1]]))
        self.ders.u = self.inputs.d * (left - 2.0 * u + right) - u


@pytest.mark.slow
def test_a_20000_state_sparse_model_runs_with_rodas4() -> None:
    """Refused before (a dense 20000 x 20000 Jacobian: 3.2 GB); the exact solution is exp(t A) u0."""
    n = 20_000
    sim, system = Simulation(), DiffusionDecay(n)
    sim.add_system(system)
    u0 = system.states.u.copy()
    assert n > DENSE_MAX_STATES
    sim.simulate(0.05, 0.025, integrator="rodas4", rtol=1e-8, atol=1e-10)
    second = sparse.diags([np.ones(n - 1), -2.0 * np.ones(n), np.ones(n - 1)], [-1, 0, 1], format="lil")
    second[0, 0] = second[-1, -1] = -1.0
    exact = expm_multiply(0.05 * (200.0 * second.tocsc() - sparse.identity(n, format="csc")), u0)
    np.testing.assert_allclose(system.states.u, exact, rtol=1e-6, atol=1e-7)
    assert np.abs(system.states.u - u0).max() > 0.1  # the peak spreads: the comparison means something


def test_rodas4_still_refuses_a_huge_dense_jacobian() -> None:
    n = DENSE_MAX_STATES + 1
    dense = types.SimpleNamespace(N_STATES=n, JAC_NNZ=n * n // 5)
    with pytest.raises(DyngenError, match=r"'rodas4'.*Jacobian is dense.*'dopri5'"):
        stiff.rodas4_integrator(dense, np.zeros(0), 0.0, np.zeros(n), {}, str)
    with pytest.raises(DyngenError, match=r"'rodas4' does not take \['order'\]"):
        stiff.rodas4_integrator(dense, np.zeros(0), 0.0, np.zeros(n), {"order": 3}, str)


@pytest.mark.parametrize("model", ["Blowup", "GoesNaN"])
def test_sparse_rodas4_fails_as_the_dense_one_does(model: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import test_stiff

    messages = []
    for threshold in (10**9, 0):  # the dense path, then the sparse one for the same small model
        monkeypatch.setattr(stiff, "SPARSE_RODAS4_MIN_STATES", threshold)
        sim = Simulation()
        sim.add_system(getattr(test_stiff, model)())
        with pytest.raises(SolverError) as info:
            sim.simulate(2.0, 0.25, integrator="rodas4")
        messages.append(str(info.value))
    assert messages[0] == messages[1]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["BDF", "Radau"])
def test_bdf_and_radau_factorise_the_sparse_jacobian_as_rodas4_does(method: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from dyngen.runtime import sparse_stiff

    factored = []
    original = sparse_stiff.factor_iteration_matrix
    monkeypatch.setattr(sparse_stiff, "factor_iteration_matrix", lambda matrix: factored.append(matrix.shape) or original(matrix))
    sim, system = brusselator(100)
    sim.simulate(2.0, 1.0, integrator=method, rtol=1e-9, atol=1e-11)
    assert factored and set(factored) == {(200, 200)}
    reference = brusselator_reference(100, np.array([0.0, 2.0]))[-1]
    np.testing.assert_allclose(np.concatenate((system.states.u, system.states.v)), reference, rtol=1e-6, atol=1e-7)
