"""Issue 16: vode on a stiff model, whatever way this scipy reads a user's Jacobian.

scipy 1.17.0 and 1.17.1 read the Jacobian handed to ``ode(...).set_integrator("vode")``
transposed (scipy issue 24933, fixed by PR 24934 for 1.18.0); dyngen hands those
versions ``J.T``. Before the fix, vode stopped on Robertson's kinetics ("Excess work
done") with scipy 1.17.1. References: scipy's Radau at rtol 1e-10.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy
from scipy.integrate import ode, solve_ivp

from dyngen import Simulation
from dyngen.runtime.integrators import scipy_release, vode_reads_jacobian_transposed
from test_stiff import Robertson, robertson_rhs


def robertson_jac(t: float, c: np.ndarray) -> np.ndarray:
    """The documented convention: jac[i, j] = d f_i / d c_j (not symmetric)."""
    return np.array(
        [
            [-0.04, 1e4 * c[2], 1e4 * c[1]],
            [0.04, -1e4 * c[2] - 6e7 * c[1], -1e4 * c[1]],
            [0.0, 6e7 * c[1], 0.0],
        ]
    )


def reference(times: np.ndarray) -> np.ndarray:
    sol = solve_ivp(
        robertson_rhs, (0.0, times[-1]), [1.0, 0.0, 0.0], method="Radau",
        jac=robertson_jac, rtol=1e-10, atol=1e-14, t_eval=times,
    )  # fmt: skip
    return sol.y.T


@pytest.mark.parametrize("method", ["vode", "lsoda"])
def test_scipy_ode_stiff_methods_solve_robertson(method: str) -> None:
    sim = Simulation()
    system = Robertson()
    sim.add_system(system)
    times, states = [], []
    sim.add_observer(lambda t, y: times.append(t) or states.append(y.copy()))
    options = {"method": "bdf"} if method == "vode" else {}  # a stiff model: BDF (adams is the default)
    sim.simulate(40.0, 4.0, integrator=method, rtol=1e-7, atol=1e-12, **options)  # default nsteps
    expected = reference(np.array(times))
    np.testing.assert_allclose(np.array(states), expected, rtol=2e-5, atol=1e-11)


def jacobian_calls(method: str, transpose: bool) -> int:
    """Jacobian evaluations of scipy's own ``ode`` on Robertson up to t = 40."""
    calls = 0

    def jac(t: float, c: np.ndarray) -> np.ndarray:
        nonlocal calls
        calls += 1
        J = robertson_jac(t, c)
        return np.ascontiguousarray(J.T) if transpose else J

    solver = ode(robertson_rhs, jac).set_integrator(method, rtol=1e-6, atol=1e-10, nsteps=100_000)
    solver.set_initial_value([1.0, 0.0, 0.0], 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for t in np.linspace(0.4, 40.0, 100):
            solver.integrate(t)
    assert solver.successful()
    return calls


def test_the_version_check_matches_what_this_scipy_does() -> None:
    """The orientation the check picks for vode is the one this scipy converges with;
    lsoda takes the documented one on every version."""
    right = vode_reads_jacobian_transposed()
    assert jacobian_calls("vode", transpose=right) * 20 < jacobian_calls("vode", transpose=not right)
    assert jacobian_calls("lsoda", transpose=False) * 20 < jacobian_calls("lsoda", transpose=True)


@pytest.mark.parametrize(
    "version, transposed",
    [("1.16.3", False), ("1.17.0", True), ("1.17.0rc2", True), ("1.17.1", True), ("1.18.0", False),
     ("1.18.0rc1", False), ("1.18.2", False), ("2.0.0", False), ("1.10.1", False)],
)  # fmt: skip
def test_affected_versions(version: str, transposed: bool) -> None:
    assert vode_reads_jacobian_transposed(version) is transposed


def test_installed_scipy_release_is_parsed() -> None:
    assert scipy_release(scipy.__version__) == tuple(int(x) for x in scipy.__version__.split(".")[:2])
