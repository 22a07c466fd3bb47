"""Issue 16: vode on a stiff model (NOT fixed with scipy 1.17.x: see below).

scipy 1.17.0 and 1.17.1 replaced vode's wrapper by a C translation that fails on stiff
models: it reads the Jacobian transposed (scipy issue 24933, PR 24934, fixed for
1.18.0), and even given the transpose, or no Jacobian, its BDF iteration fails where
1.16 converges (runtime/integrators.py: VODE_BROKEN_RELEASES). Handing it ``J.T``
cannot compensate, and excluding 1.17 is no way out (dyngen's compiled dopri5/dop853
reproduce 1.17's translation of those, not 1.16's), so on those releases the vode case
is an expected failure whose error says why and what to use. References: scipy's
Radau at rtol 1e-10.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy
from scipy.integrate import ode, solve_ivp

from dyngen import DyngenError, Simulation
from dyngen.runtime import integrators
from dyngen.runtime.integrators import scipy_release, vode_is_broken
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


@pytest.mark.slow
@pytest.mark.parametrize(
    "method",
    [
        pytest.param("vode", marks=pytest.mark.xfail(
            vode_is_broken(), strict=True, raises=DyngenError,
            reason="scipy 1.17.x's vode fails on stiff models whatever Jacobian it is given")),
        "lsoda",
    ],
)  # fmt: skip
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


@pytest.mark.slow
def test_jacobian_orientation_on_this_scipy() -> None:
    """lsoda converges with the documented ``jac[i, j] = d f_i / d y_j`` on every
    version; vode too, except on the broken releases, where neither orientation
    converges as it should (test_vode_on_the_broken_releases_is_broken_either_way)."""
    assert jacobian_calls("lsoda", transpose=False) * 20 < jacobian_calls("lsoda", transpose=True)
    if not vode_is_broken():
        assert jacobian_calls("vode", transpose=False) * 20 < jacobian_calls("vode", transpose=True)


@pytest.mark.skipif(not vode_is_broken(), reason="only the broken scipy releases")
def test_vode_on_the_broken_releases_is_broken_either_way() -> None:
    """Why dyngen cannot compensate: on a stiff linear model (lower-triangular,
    eigenvalues -1 and -1e3) this scipy's vode has hundreds of Newton convergence
    failures with the documented J, with J.T and with its own finite differences
    (scipy 1.16.3: none, 301 steps, 6 Jacobians)."""
    A = np.array([[-1.0, 0.0], [1e3, -1e3]])

    def convergence_failures(M: np.ndarray | None) -> int:
        solver = ode(lambda t, y: A @ y, None if M is None else (lambda t, y: M.copy()))
        solver.set_integrator("vode", method="bdf", rtol=1e-8, atol=1e-12, nsteps=100_000, with_jacobian=True)
        solver.set_initial_value([1.0, 0.0], 0.0)
        solver.integrate(5.0)
        assert solver.successful()
        return int(solver._integrator.iwork[20])  # NCFN

    for M in (A, np.ascontiguousarray(A.T), None):
        assert convergence_failures(M) > 100


@pytest.mark.parametrize(
    "version, broken",
    [("1.16.3", False), ("1.17.0", True), ("1.17.0rc2", True), ("1.17.1", True), ("1.18.0", False),
     ("1.18.0rc1", False), ("1.18.2", False), ("2.0.0", False), ("1.10.1", False)],
)  # fmt: skip
def test_affected_versions(version: str, broken: bool) -> None:
    assert vode_is_broken(version) is broken


def test_installed_scipy_release_is_parsed() -> None:
    assert scipy_release(scipy.__version__) == tuple(int(x) for x in scipy.__version__.split(".")[:2])


def test_a_vode_failure_on_the_broken_releases_says_why_and_what_to_use(monkeypatch) -> None:
    monkeypatch.setattr(integrators, "vode_is_broken", lambda version=None: True)
    sim = Simulation()
    sim.add_system(Robertson())
    with pytest.raises(DyngenError, match=r"vode failed .*fails on stiff models whatever Jacobian.*'lsoda', 'rodas4'"):
        sim.simulate(1.0, 0.5, integrator="vode", nsteps=5)  # fails on any scipy: too few steps
