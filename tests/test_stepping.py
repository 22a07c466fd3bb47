"""Stepping from Python: ``for k in range(n): controller(); sim.simulate(dt, dt)``.

A call repeated on the same model reuses its prepared compiled run
(``simulation._Stepping``, ``compiled.PreparedRun``) and checks the tree with the
watch's quick test (``fingerprint._Identities``).  Whatever a user changes between two
calls -- a state, an input, a global, a helper's defaults or code, a class attribute, a
method, a plain attribute, a system, a connection, the call's own arguments -- must
be integrated exactly as a fresh call would: the loops are compared with dynode's same
loop (tests/stepping_model.py under both), and the watch with the full fingerprint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import dyngen.runtime.simulation as simulation_module
from dyngen import Simulation, System
from dyngen.errors import RebuildWarning, SolverError
from dyngen.runtime import specialize
from dyngen.runtime.fingerprint import StructureWatch

from dynode_compare import load_model_source

MODEL = Path(__file__).with_name("stepping_model.py")
RTOL, ATOL = 1e-8, 1e-10


def load(backend: str) -> tuple[Any, Any]:
    """The model module (a fresh one per call) and its ``build()`` under ``backend``."""
    module = load_model_source(MODEL, backend)
    sim = module.build()
    if backend == "dyngen":
        sim.model_file = str(MODEL)
    return module, sim


def controller(sim: Any, k: int) -> None:
    """Writes every plant's input from its states (a parameter: no rebuild)."""
    for system in sim.systems:
        system.inputs.u = -0.8 * system.states.v + 0.05 * k


def state_values(sim: Any) -> list[float]:
    return [float(value) for system in sim.systems for value in (system.states.x, system.states.v)]


def stepping_loop(
    module: Any, sim: Any, steps: int = 30, dt: float = 0.1, edit: Callable | None = None, at: int = 10,
    call: Callable[[int], dict] | None = None,
) -> list[list[float]]:  # fmt: skip
    """The controller loop; ``edit(module, sim)`` before step ``at``; ``call(k)``: the
    keyword arguments of step k's ``simulate``. Returns the states after every step."""
    rows = []
    for k in range(steps):
        if edit is not None and k == at:
            edit(module, sim)
        controller(sim, k)
        sim.simulate(dt, dt, **(call(k) if call else {}))
        rows.append(state_values(sim))
    return rows


def assert_same_rows(ours: list[list[float]], theirs: list[list[float]]) -> None:
    assert len(ours) == len(theirs)
    for k, (a, b) in enumerate(zip(ours, theirs)):
        assert len(a) == len(b), f"step {k}: {len(a)} states, dynode {len(b)}"
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=ATOL, err_msg=f"step {k}")


def both(edit: Callable | None = None, **options: Any) -> tuple[list, list]:
    """The loop under dyngen and under dynode."""
    return tuple(stepping_loop(*load(backend), edit=edit, **options) for backend in ("dyngen", "dynode"))  # type: ignore


# --- edits between two calls -------------------------------------------------------


def _halved(value, limit=2.0):  # a helper's new code (same signature, no free variables)
    return 0.5 * value


def _stiff_do_step(self, time):  # a method put on the class between two calls
    self.ders.x = self.states.v
    self.ders.v = -4.0 * self.states.x - 0.1 * self.states.v + self.inputs.u + self.inputs.w
    self.outputs.x = self.states.x


def _brake(system, time):  # a connection added between two calls: u is no longer the controller's
    system.inputs.u = -0.5 * system.states.x


def _set(owner_of: Callable, name: str, value: Any) -> Callable:
    return lambda module, sim: setattr(owner_of(module, sim), name, value)


# Each edit changes what the next call integrates; dyngen must see it as dynode does.
EDITS = {
    "a state set": lambda module, sim: setattr(sim.systems[0].states, "x", 0.5),
    "a state replaced by an array": lambda module, sim: sim.systems[1].states.__setitem__("v", np.array([0.25])),
    "a state changed in place": lambda module, sim: sim.systems[1].states["x"].__setitem__(0, -0.5),
    "a global read by do_step": _set(lambda m, s: m, "GAIN", 3.0),
    "a global replaced by an int": _set(lambda m, s: m, "GAIN", 2),
    "a global read by a connection": _set(lambda m, s: m, "OFFSET", 0.7),
    "a helper's default": _set(lambda m, s: m.saturate, "__defaults__", (0.5,)),
    "a helper's code": _set(lambda m, s: m.saturate, "__code__", _halved.__code__),
    "a class attribute": _set(lambda m, s: m.Plant, "damping", 0.9),
    "a method replaced on the class": _set(lambda m, s: m.Plant, "do_step", _stiff_do_step),
    "a system added": lambda module, sim: sim.add_system(module.Plant(x0=-1.0)),
    "a connection added": lambda module, sim: sim.systems[0].add_pre_connection(_brake),
}
QUICK = ("a state set", "a state changed in place", "a global read by do_step", "a helper's default")  # the rest: slow


@pytest.mark.parametrize(
    "edit", [e if e in QUICK else pytest.param(e, marks=pytest.mark.slow) for e in EDITS]
)  # fmt: skip
def test_an_edit_between_two_calls_is_integrated_as_dynode_does(edit: str) -> None:
    ours, theirs = both(EDITS[edit])
    assert_same_rows(ours, theirs)
    assert ours[9] != ours[10]


def test_a_plain_attribute_changed_between_calls_is_a_rebuild_and_integrated() -> None:
    def stiffer(module: Any, sim: Any) -> None:
        sim.systems[0].stiffness = 3.0

    with pytest.warns(RebuildWarning, match=r"stiffness changed \(2.0 -> 3.0\)"):
        ours = stepping_loop(*load("dyngen"), edit=stiffer)
    assert_same_rows(ours, stepping_loop(*load("dynode"), edit=stiffer))


def test_a_controller_loop_equals_dynodes_and_reuses_one_prepared_run(monkeypatch) -> None:
    made = []
    real = simulation_module.PreparedRun

    def counting(*args: Any, **kwargs: Any) -> Any:
        made.append(args[2:4])  # (t, observer_dt)
        return real(*args, **kwargs)

    monkeypatch.setattr(simulation_module, "PreparedRun", counting)
    ours, theirs = both(steps=40)
    assert_same_rows(ours, theirs)
    assert made == [(0.1, 0.1)]  # one prepared run for the 40 calls


# --- the call's own arguments --------------------------------------------------------


def test_int_and_float_times_step_alike() -> None:
    as_float = stepping_loop(*load("dyngen"), steps=6, dt=1.0)
    as_int = stepping_loop(*load("dyngen"), steps=6, dt=1)  # type: ignore[arg-type]
    assert as_int == as_float  # bit for bit: the same numbers
    module, sim = load("dyngen")
    mixed = []
    for k, dt in enumerate([1, 1.0, np.float64(1.0), 1, True, 1.0]):
        controller(sim, k)
        sim.simulate(dt, dt)
        mixed.append(state_values(sim))
    assert mixed == as_float
    assert_same_rows(as_int, stepping_loop(*load("dynode"), steps=6, dt=1))


def test_changing_the_integrator_and_options_between_calls_as_dynode() -> None:
    calls = [{}, {"integrator": "dop853"}, {"rtol": 1e-9, "atol": 1e-11}, {"fixed_step": True}, {}, {"integrator": "dop853"}]

    def call(k: int) -> dict:
        return calls[k % len(calls)]

    ours, theirs = both(steps=18, dt=0.05, call=call)
    assert_same_rows(ours, theirs)


def test_a_changed_step_or_length_is_a_new_run() -> None:
    module, sim = load("dyngen")
    reference_module, reference = load("dynode")
    for target in (sim, reference):
        for t, dt in [(0.1, 0.1), (0.1, 0.1), (0.3, 0.1), (0.3, 0.1), (0.2, 0.05), (0.1, 0.1)]:
            controller(target, 0)
            target.simulate(t, dt)
    np.testing.assert_allclose(state_values(sim), state_values(reference), rtol=RTOL, atol=ATOL)
    assert sim._t == pytest.approx(reference._t, rel=1e-12)


def test_an_observer_added_between_calls_is_called_as_in_dynode() -> None:
    seen: dict[str, list] = {"dyngen": [], "dynode": []}
    removers: dict[str, Callable] = {}

    def edit_for(backend: str) -> Callable:
        def add(module: Any, sim: Any) -> None:
            removers[backend] = sim.add_observer(lambda t, y: seen[backend].append((t, np.array(y))))

        return add

    rows = {}
    for backend in ("dyngen", "dynode"):
        module, sim = load(backend)
        first = stepping_loop(module, sim, steps=8, edit=edit_for(backend), at=3)
        removers[backend]()
        rows[backend] = first + stepping_loop(module, sim, steps=4)
    assert_same_rows(rows["dyngen"], rows["dynode"])
    assert len(seen["dyngen"]) == len(seen["dynode"]) == 5
    for (t, y), (t_ref, y_ref) in zip(seen["dyngen"], seen["dynode"]):
        assert t == pytest.approx(t_ref, rel=1e-12)
        np.testing.assert_allclose(y, y_ref, rtol=RTOL, atol=ATOL)


def test_ders_read_before_a_call_keep_their_values_states_follow() -> None:
    """As in dynode: ders are new arrays at every evaluation, states are updated in place."""
    for backend in ("dyngen", "dynode"):
        module, sim = load(backend)
        stepping_loop(module, sim, steps=3)
        held_der = sim.systems[0].ders["v"]
        before = held_der.copy()
        held_state = sim.systems[0].states["x"]
        stepping_loop(module, sim, steps=2)
        assert np.array_equal(held_der, before), backend
        assert sim.systems[0].ders["v"] is not held_der
        if backend == "dyngen":  # (dynode: in place too, through its solver's vector)
            assert held_state is sim.systems[0].states["x"]


def test_reset_between_loops_repeats_the_first_loop_bit_for_bit() -> None:
    module, sim = load("dyngen")
    first = stepping_loop(module, sim, steps=12)
    sim.reset()  # back to t = 0: the run records its start again (a prepared run from zero)
    assert stepping_loop(module, sim, steps=12) == first


class Blowup(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0

    def do_step(self, time):
        self.ders.x = self.states.x**2  # x = 1 / (1 - t): infinite at t = 1


def test_a_failed_step_raises_as_a_run_with_options_does() -> None:
    errors = []
    for options in ({}, {"rtol": 1e-6}):  # the prepared run; run_recorded (options given)
        sim = Simulation()
        sim.add_system(Blowup())
        for _ in range(3):
            sim.simulate(0.3, 0.1, **options)
        with pytest.raises(SolverError) as failure:
            for _ in range(3):
                sim.simulate(0.3, 0.1, **options)
        errors.append((str(failure.value), sim._t, sim.systems[0].states.x))
    assert errors[0] == errors[1]
    assert errors[0][0].startswith("dopri5 failed between t = 0.99")


@pytest.mark.slow  # the model's own integrators are compiled (about 3 s)
def test_a_loop_moves_to_the_models_own_integrators_when_given_them(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("DYNGEN_CACHE_DIR", str(tmp_path))
    reference = load("dyngen")
    plain = stepping_loop(*reference, steps=10) + stepping_loop(*reference, steps=10)
    module, sim = load("dyngen")
    first = stepping_loop(module, sim, steps=10)
    assert "run_dopri5" not in vars(sim.module)
    monkeypatch.setattr(specialize, "SPECIALIZE_AFTER", 0.0)
    rest = stepping_loop(module, sim, steps=10)
    assert "run_dopri5" in vars(sim.module)  # the loop's next call took them
    assert first + rest == plain  # bit for bit


# --- the watch's quick test --------------------------------------------------------------

SCALE = 1  # an int: replaced by an equal float, the key changes (its text does)


def link(system, time, gain=1.0):  # a connection: keyed, and reads only numbers and builtins
    system.inputs.u = gain * abs(system.states.x) * SCALE


def _other_link(system, time, gain=1.0):
    system.inputs.u = gain * system.states.x


class Base:
    bias = 0.0


class OtherBase:
    bias = 1.0


class Shaped(Base, System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0
        self.inputs.u = 0.0
        self.add_pre_connection(link)

    def do_step(self, time):
        self.ders.x = -np.tanh(self.states.x) * abs(self.inputs.u) + self.bias


def _other_do_step(self, time):
    self.ders.x = -self.states.x


WATCH_EDITS: dict[str, Callable[[], None]] = {
    "a global shadows a builtin the model calls": lambda: globals().__setitem__("abs", lambda value: 2 * value),
    "an int global replaced by an equal float": lambda: globals().__setitem__("SCALE", 1.0),
    "a default replaced": lambda: setattr(link, "__defaults__", (2.0,)),
    "keyword defaults set": lambda: setattr(link, "__kwdefaults__", {"offset": 1.0}),
    "the code replaced": lambda: setattr(link, "__code__", _other_link.__code__),
    "an attribute set on the connection": lambda: setattr(link, "note", 1.0),
    "a base class's attribute": lambda: setattr(Base, "bias", 2.0),
    "the bases replaced": lambda: setattr(Shaped, "__bases__", (OtherBase, System)),
    "a method replaced": lambda: setattr(Shaped, "do_step", _other_do_step),
    "a class attribute added": lambda: setattr(Shaped, "extra", 1.0),
}


def _restore_watched() -> None:
    global SCALE
    globals().pop("abs", None)
    SCALE = 1
    link.__defaults__, link.__kwdefaults__, link.__code__ = (1.0,), None, _LINK_CODE
    vars(link).pop("note", None)
    Base.bias = 0.0
    Shaped.__bases__ = (Base, System)
    Shaped.do_step = _SHAPED_DO_STEP
    if "extra" in vars(Shaped):
        del Shaped.extra


_LINK_CODE = link.__code__
_SHAPED_DO_STEP = Shaped.do_step


def quick_watch(systems: list) -> StructureWatch:
    """A watch of ``systems`` whose class and connection are checked by the quick test alone."""
    watch = StructureWatch(systems)
    assert watch.unchanged() and watch.unchanged()
    merged, others = watch._quick
    assert merged.held and not others
    return watch


@pytest.mark.parametrize("edit", list(WATCH_EDITS))
def test_the_quick_test_sees_every_edit_of_what_the_model_reads(edit: str) -> None:
    _restore_watched()
    try:
        systems = [Shaped()]
        watch = quick_watch(systems)
        WATCH_EDITS[edit]()
        assert StructureWatch(systems).key != watch.key  # the edit matters ...
        assert not watch.unchanged()  # ... and the quick test sees it
    finally:
        _restore_watched()


def test_the_quick_test_passes_what_the_key_does_not_read() -> None:
    """A dunder of the class (not keyed), an attribute name the code never loads as a
    global: the fingerprint is the same, and so is the quick test's answer."""
    _restore_watched()
    systems = [Shaped()]
    watch = quick_watch(systems)
    Shaped.__doc__ = "edited"
    try:
        assert watch.unchanged()
        assert StructureWatch(systems).key == watch.key
    finally:
        Shaped.__doc__ = None
