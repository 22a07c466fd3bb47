"""Python control flow, math, builtins, numba helpers and small vectors on traced
values: the same unchanged code under dyngen and under the real dynode 0.4."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import dynode_compare
from dynode_compare import assert_same_runs, build_simulation, run_both
from dynode.simulation import collect_ders, collect_states, dispatch_states
from dyngen import Simulation, System, TraceError
from dyngen.branches import MAX_DECISIONS
from numba import njit

MODEL = Path(__file__).with_name("control_flow_model.py")


def both(builder: str, t: float, dt: float, **options):
    """Run under both; dynode is not primed (its first ders/outputs sample is __init__'s)."""
    return run_both(lambda backend: build_simulation(MODEL, backend, builder), t, dt, prime=False, **options)


def assert_same_rhs(builder: str, samples: int = 300, t_max: float = 60.0) -> None:
    """The generated rhs equals dynode's evaluation of the same code (to rounding) at
    random states and times, on every side of every branch."""
    ours = build_simulation(MODEL, "dyngen", builder).module
    systems = build_simulation(MODEL, "dynode", builder).systems
    y0 = collect_states(systems)
    np.testing.assert_array_equal(ours.DEFAULT_STATES, y0)  # the same layout
    p = ours.DEFAULT_PARAMETERS.copy()
    rng = np.random.default_rng(1)
    expected, actual = np.empty_like(y0), np.empty_like(y0)
    for _ in range(samples):
        y = y0 + rng.uniform(-1.0, 1.0, y0.size) * (np.abs(y0) + 1.0)
        t = rng.uniform(0.0, t_max)
        dispatch_states(y, systems)
        for system in systems:
            system._step(t)
        collect_ders(expected, systems)
        ours.rhs(t, y, p, actual)
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-14, err_msg=f"t={t}, y={y}")


@pytest.fixture
def step_tolerance(monkeypatch):
    """Trajectories across discontinuities: the two integrators take equally valid but
    different steps near each switch (their arithmetic agrees to rounding only), so the
    runs agree to the integration tolerance, not to 1e-8; the rhs is compared exactly."""
    monkeypatch.setattr(dynode_compare, "RTOL", 1e-6)
    monkeypatch.setattr(dynode_compare, "ATOL", 1e-8)


@pytest.mark.slow
def test_if_elif_else_nested_ifs_early_return_and_builtins_match_dynode(step_tolerance) -> None:
    assert_same_rhs("build")
    ours, theirs = both("build", 60.0, 0.25, rtol=1e-10, atol=1e-12)
    assert_same_runs(ours, theirs, signals_from=1)
    # the branches really switched during the run (else the test would prove little)
    spring = theirs.series["0:OneSidedSpring"]["outputs.contact"]
    assert {-1.0, 0.0, 1.0} <= set(spring.tolist())
    power = theirs.series["1:Thermostat"]["outputs.power"]
    assert {0.0, 0.5, 1.0, 1.5, 0.75} <= set(power.tolist())
    h = theirs.series["2:EarlyReturn"]["states.h"]
    assert h.max() > 0.5 and h.min() < 0.0


@pytest.mark.slow
def test_an_if_on_a_parameter_stays_a_runtime_choice() -> None:
    sim = build_simulation(MODEL, "dyngen")
    thermostat = sim.systems[1]
    sim.simulate(5.0, 1.0)
    module = sim.module
    thermostat.states.T = 12.0
    thermostat.inputs.enabled = 0.0  # the heater off: no rebuild, the other branch
    sim.simulate(5.0, 1.0)
    assert sim.module is module
    # with the heater off the temperature follows dT/dt = 0.2 (outside(t) - T) alone
    from scipy.integrate import solve_ivp

    outside = lambda t: 5.0 + 3.0 * math.cos(2 * math.pi * t / 24.0)  # noqa: E731
    reference = solve_ivp(lambda t, T: 0.2 * (outside(t) - T), (5.0, 10.0), [12.0], rtol=1e-10, atol=1e-12)
    assert thermostat.states.T == pytest.approx(reference.y[0, -1], rel=1e-6)


@pytest.mark.slow
def test_numba_helpers_and_a_filled_np_zeros_match_dynode_within_1e10() -> None:
    assert_same_rhs("build_numba")
    ours, theirs = both("build_numba", 10.0, 0.5, rtol=1e-12, atol=1e-14)
    assert ours.observed_y.shape == theirs.observed_y.shape
    np.testing.assert_allclose(ours.observed_y, theirs.observed_y, rtol=0, atol=1e-10)
    assert_same_runs(ours, theirs, signals_from=1)


@pytest.mark.slow
def test_small_vectors_of_traced_values_take_every_vector_operation(step_tolerance) -> None:
    assert_same_rhs("build_vectors")
    ours, theirs = both("build_vectors", 8.0, 0.25, rtol=1e-10, atol=1e-12)
    assert_same_runs(ours, theirs, signals_from=1)
    wrench = theirs.series["0:Rotor"]["outputs.wrench"]
    assert np.abs(wrench).max() > 0.3  # the limits were reached


# --------------------------------------------------------------------------- refusals


class OneArmDer(System):
    def __init__(self):
        super().__init__()
        self.states.x = 1.0

    def do_step(self, time):
        if self.states.x > 0.5:  # <decision>
            self.ders.x = -1.0  # <one-arm>


def _line(tag: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if f"# <{tag}>" in text)


def test_a_der_written_in_one_arm_only_names_both_lines(tmp_path) -> None:
    sim = Simulation(cache_dir=tmp_path)
    sim.add_system(OneArmDer())
    with pytest.raises(TraceError) as info:
        sim.simulate(1.0, 0.1)
    message = str(info.value)
    assert f"test_control_flow.py:{_line('one-arm')}" in message
    assert f"test_control_flow.py:{_line('decision')}" in message
    assert "else" in message
    assert not list(tmp_path.glob("*.py"))  # nothing written


@njit
def saturate(value, limit):
    if value > limit:
        return limit
    if value < -limit:
        return -limit
    return value


class SaturatedElements(System):
    """A scalar @njit helper with ifs, called for each of 40 elements: its decisions are
    explored per call (2**80 paths if they multiplied)."""

    def __init__(self):
        super().__init__()
        self.states.q = np.linspace(-2.0, 2.0, 40)

    def do_step(self, time):
        q = self.states.q
        d = np.zeros(q.shape[0])
        for i in range(q.shape[0]):
            d[i] = -saturate(q[i], 1.0)
        self.ders.q = d


@pytest.mark.slow
def test_a_scalar_numba_helper_called_per_element_keeps_its_branches_to_itself(tmp_path) -> None:
    sim = Simulation(cache_dir=tmp_path)
    system = SaturatedElements()
    sim.add_system(system)
    sim.simulate(0.5, 0.5, rtol=1e-10, atol=1e-12)
    q0 = np.linspace(-2.0, 2.0, 40)
    # |q| > 1 moves toward 1 at unit speed, then (like |q| <= 1 from the start) decays exponentially
    reach = np.maximum(np.abs(q0) - 1.0, 0.0)  # the time to reach |q| = 1
    expected = np.where(
        reach >= 0.5, q0 - 0.5 * np.sign(q0), np.sign(q0) * np.minimum(np.abs(q0), 1.0) * np.exp(-(0.5 - reach))
    )
    np.testing.assert_allclose(system.states.q, expected, rtol=1e-6, atol=1e-9)


class ManyBranches(System):
    def __init__(self, n):
        super().__init__()
        self.states.q = np.ones(n)

    def do_step(self, time):
        q = self.states.q
        d = np.zeros(len(q))
        for i in range(len(q)):
            if q[i] > 0.5:  # <many>
                d[i] = -q[i]
            else:
                d[i] = q[i]
        self.ders.q = d


def test_too_many_branch_combinations_fail_fast_with_the_line(tmp_path) -> None:
    sim = Simulation(cache_dir=tmp_path)
    sim.add_system(ManyBranches(MAX_DECISIONS + 1))
    with pytest.raises(TraceError) as info:
        sim.simulate(1.0, 0.1)
    assert f"test_control_flow.py:{_line('many')}" in str(info.value)
    assert "where" in str(info.value)


@pytest.mark.slow
def test_a_few_branches_per_element_are_fine() -> None:
    sim = Simulation()
    system = ManyBranches(4)  # 16 paths
    system.states.q = np.array([1.0, 0.2, 0.9, -0.3])
    sim.add_system(system)
    sim.simulate(0.5, 0.5)
    q0 = np.array([1.0, 0.2, 0.9, -0.3])
    expected = np.where(q0 > 0.5, q0 * np.exp(-0.5), q0 * np.exp(0.5))  # no element crosses 0.5
    np.testing.assert_allclose(system.states.q, expected, rtol=1e-6)


@pytest.mark.slow
def test_a_model_file_edited_after_import_runs_the_code_python_loaded(tmp_path, monkeypatch) -> None:
    """The tracer compiles functions again from their source; a file edited since it was
    imported must not be traced in place of the code that Python runs."""
    import importlib

    source = tmp_path / "edited_model.py"
    source.write_text(
        "from dyngen import System\n\n"
        "class Decay(System):\n"
        "    def __init__(self):\n"
        "        super().__init__()\n"
        "        self.states.x = 1.0\n\n"
        "    def do_step(self, time):\n"
        "        self.ders.x = -self.states.x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("edited_model")
    source.write_text(source.read_text().replace("-self.states.x", "2.0 * self.states.x"))
    sim = Simulation(cache_dir=tmp_path / "cache")
    system = module.Decay()
    sim.add_system(system)
    sim.simulate(1.0, 0.5)
    assert system.states.x == pytest.approx(math.exp(-1.0), rel=1e-6)
