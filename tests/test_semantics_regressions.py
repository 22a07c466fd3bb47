"""Behaviours a code review found wrong once: each test pins the fixed behaviour."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import numpy as np
import pytest

import dyngen
from dyngen import Simulation, System


def rhs_of(system: System, y: np.ndarray, t: float = 0.0) -> np.ndarray:
    sim = Simulation()
    sim.add_system(system)
    module = sim.module
    dy = np.empty(module.N_STATES)
    module.rhs(t, np.asarray(y, dtype=float), sim._model.gather_parameters(), dy)
    return dy


class FloatMaths(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = np.array([1e20, np.nan, 3e19, 0.7, -2.3, 7.5])

    def do_step(self, time):
        x = self.states.x
        self.ders.x = np.array([
            np.floor(x[0]), np.minimum(x[1], 1.0), np.fmod(x[2], 3.0), x[3] % 0.5,
            np.sign(x[1]), np.ceil(x[5]) + x[4] * 10**20,
        ])  # fmt: skip


def test_floor_min_sign_fmod_keep_numpys_float_semantics() -> None:
    y = np.array([1e20, np.nan, 3e19, 0.7, -2.3, 7.5])
    expected = [np.floor(y[0]), np.minimum(y[1], 1.0), np.fmod(y[2], 3.0), y[3] % 0.5, np.sign(y[1]),
                np.ceil(y[5]) + y[4] * 1e20]  # fmt: skip
    np.testing.assert_array_equal(rhs_of(FloatMaths(), y), expected)


class Modulo(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 0.7

    def do_step(self, time):
        self.ders.x = -(self.states.x % 0.5) + np.fmod(self.states.x, 0.3)


@pytest.mark.slow
def test_jacobian_of_remainders_is_emitted_and_right() -> None:
    sim = Simulation()
    sim.add_system(Modulo())
    J = np.empty((1, 1))
    sim.module.jac(0.0, np.array([0.7]), sim._model.gather_parameters(), J)
    assert J[0, 0] == pytest.approx(0.0)  # -1 + 1 away from the jumps
    sim.simulate(0.5, 0.25, integrator="rodas4")  # compiles and runs with the Jacobian


class DictMethods(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0
        self.inputs.k = 1.0

    def do_step(self, time):
        k = self.inputs.get("k", 5.0)
        scale = self.inputs.get("missing", 1.0)
        x = self.states.get("x")[0]
        self.ders.x = -k * scale * x
        self.outputs.update(y=2.0 * x, z=sum(self.inputs.values()))


@pytest.mark.slow
def test_dict_methods_are_traced_not_frozen() -> None:
    sim = Simulation()
    system = DictMethods()
    sim.add_system(system)
    sim.simulate(1.0, 0.5, rtol=1e-10, atol=1e-12)
    assert system.states.x == pytest.approx(np.exp(-1.0), rel=1e-8)
    assert system.outputs.y == pytest.approx(2 * np.exp(-1.0), rel=1e-8)
    system.inputs.k = 2.0  # a parameter, read through .get(): no rebuild, takes effect
    system.states.x = 1.0
    sim._t = 0
    sim.simulate(1.0, 0.5, rtol=1e-10, atol=1e-12)
    assert system.states.x == pytest.approx(np.exp(-2.0), rel=1e-8)
    assert system.outputs.z == pytest.approx(2.0)


class Popper(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0

    def do_step(self, time):
        self.ders.x = -self.states.x
        self.ders.pop("x")


def test_container_methods_that_cannot_be_traced_say_so() -> None:
    sim = Simulation()
    sim.add_system(Popper())
    with pytest.raises(dyngen.TraceError, match=r"pop\(\) cannot be traced"):
        sim.simulate(1.0, 0.5)


CONFIG = types.ModuleType("dyngen_test_config")
CONFIG.K = 1.0
sys.modules[CONFIG.__name__] = CONFIG


@dataclass
class Params:
    k: float = 1.0


class Gain:
    def __init__(self) -> None:
        self.g = 0.0

    def connect(self, system, time):
        system.inputs.u = self.g


class Constants(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0
        self.inputs.u = 0.0
        self.inputs.table = {"g": 1.0}
        self._k = 1.0
        self.params = Params()
        self.long = [1.0] * 5000

    def do_step(self, time):
        self.ders.x = (
            -self._k * self.params.k * self.inputs.table["g"] * CONFIG.K * self.long[-1] * self.states.x
            + self.inputs.u
        )


@pytest.mark.slow
@pytest.mark.parametrize(
    "change",
    ["system._k = 2.0", "system.params.k = 2.0", "system.inputs.table['g'] = 2.0", "gain.g = 0.5",
     "CONFIG.K = 2.0", "system.long[-1] = 2.0"],
)  # fmt: skip
def test_constants_changed_anywhere_the_code_reads_them_rebuild(change: str) -> None:
    CONFIG.K = 1.0
    sim, system, gain = Simulation(), Constants(), Gain()
    system.add_pre_connection(gain.connect)
    sim.add_system(system)
    before = sim.compile()
    assert sim.compile() is before  # nothing changed: no rebuild
    exec(change)
    after = sim.compile()
    assert after is not before and after.digest != before.digest
    sim.simulate(1.0, 1.0, rtol=1e-10, atol=1e-12)
    rate = (2.0 if change != "gain.g = 0.5" else 1.0)
    u = 0.5 if change == "gain.g = 0.5" else 0.0
    assert system.states.x == pytest.approx(u / rate + (1 - u / rate) * np.exp(-rate), rel=1e-7)
    CONFIG.K = 1.0


class Tank(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.h = 0.0
        self.inputs.inflow = 1.0

    def do_step(self, time):
        self.ders.h = self.inputs.inflow


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["dopri5", "rodas4", "lsoda", "BDF"])
def test_an_observer_that_changes_a_parameter_acts_like_a_controller(integrator: str) -> None:
    sim, tank = Simulation(), Tank()
    sim.add_system(tank)

    def valve(t, y):
        if t >= 1.0:
            tank.inputs.inflow = 0.0

    sim.add_observer(valve)
    sim.simulate(3.0, 0.5, integrator=integrator)
    assert tank.states.h == pytest.approx(1.0, rel=1e-9)  # dynode: 1.0


class Decay(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0

    def do_step(self, time):
        self.ders.x = -self.states.x


def test_a_hostile_model_name_is_made_safe(tmp_path) -> None:
    sim = Simulation(cache_dir=tmp_path / "cache")
    sim.add_system(Decay())
    sim.model_name = 'm"""; raise SystemExit("INJECTED"); """/../escape'
    result = sim.compile()
    assert result.path.parent == tmp_path / "cache"
    assert "INJECTED" in result.path.name and "/" not in result.path.name.replace("INJECTED", "")
    text = result.path.read_text()
    assert 'raise SystemExit("INJECTED")' not in text


class InPlace(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = np.array([1.0, 2.0, 3.0])

    def do_step(self, time):
        x = self.states.x
        d = x * 1.0
        d += 1.0
        d[0] += x[1]
        d[1:] *= -2.0
        self.ders.x = d


def test_in_place_operators_on_traced_arrays() -> None:
    np.testing.assert_array_equal(rhs_of(InPlace(), [1.0, 2.0, 3.0]), [4.0, -6.0, -8.0])


class Named(System):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.states.x = 1.0

    def do_step(self, time):
        self.ders.x = -self.states.x


def test_colliding_system_paths_are_a_model_error() -> None:
    parent = Named("a")
    parent.b = Named("inner")
    del parent.b.name  # named by its attribute: path "a.b"
    parent.add_subsystem(parent.b)
    sim = Simulation()
    sim.add_system(parent)
    sim.add_system(Named("a.b"))
    with pytest.raises(dyngen.ModelError, match="same path 'a.b'"):
        sim.compile()


class _Rules:
    """A module-level object that holds the function which reads it (a cycle)."""


RULES = _Rules()
RULES.scale = 2.0


def _scaled_decay(system: System) -> object:
    return -RULES.scale * system.states.x


RULES.rule = _scaled_decay


class RuledDecay(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0

    def do_step(self, time):
        self.ders.x = RULES.rule(self)


def test_a_global_object_holding_the_function_that_reads_it_is_fingerprinted() -> None:
    """Once a RecursionError in the structural check (and the structure key)."""
    from dyngen.runtime.fingerprint import fingerprint, structure_key

    system = RuledDecay()
    assert fingerprint([system]) == fingerprint([system])
    key = structure_key([system], ("ruled",))
    assert key is not None and key == structure_key([system], ("ruled",))
    assert rhs_of(system, [1.0])[0] == -2.0
    try:
        RULES.scale = 3.0  # a constant inside the cycle: a new key and a rebuild
        assert structure_key([system], ("ruled",)) != key
        assert rhs_of(RuledDecay(), [1.0])[0] == -3.0
    finally:
        RULES.scale = 2.0
