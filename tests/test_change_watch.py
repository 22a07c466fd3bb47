"""simulate()'s per-call work: the cheap check for model changes
(``fingerprint.StructureWatch`` with the edit counts of ``containers.Edits``) and the
values moved between the containers and the runs (``runtime.model.CompiledModel``).

Every edit that changes the fingerprint must be seen by the cheap check; values edited
between runs (in place or not, through one simulation or another) must be the ones
integrated.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import dyngen.runtime.simulation as simulation_module
from dyngen import Simulation, System, connect_signals
from dyngen.runtime.fingerprint import StructureWatch

GAIN = 1.0
PULL = 0.0  # read by a connection
WEIGHTS = [1.0]  # read by a connection; a list can change in place


def pull(system, time):
    system.inputs.u = PULL * system.states.x * WEIGHTS[0]


def scale(x):  # a helper that do_step calls: the globals it reads are part of the model
    return GAIN * x


class Decay(System):
    rate = 1.0  # a class attribute, read as a constant

    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0
        self.inputs.u = 0.0
        self.inputs.c = [1.0, 2.0]
        self.outputs.y = 0.0
        self.table = {"k": 1.0}
        self.weights = [1.0]

    def do_step(self, time):
        self.ders.x = -self.rate * scale(self.states.x) * self.table["k"] * self.weights[0] + self.inputs.u
        self.outputs.y = self.states.x + self.inputs.c[1]


def gain_link(gain: float):
    """A connection whose constant lives in its closure, and a way to change it."""

    def link(system, time):
        system.inputs.u = gain * system.states.x

    def set_gain(value: float) -> None:
        nonlocal gain
        gain = value

    return link, set_gain


def restore_globals() -> None:
    global GAIN, PULL
    GAIN, PULL = 1.0, 0.0
    WEIGHTS[0] = 1.0
    Decay.rate = 1.0


def edit_global(name: str) -> None:
    globals()[name] = 2.0


# Each edit changes what the generated module would be (the test checks that the full
# fingerprint changes), and only some of them pass through dyngen's API.
EDITS = {
    "class attribute": lambda sim, a, b, extra: setattr(Decay, "rate", 2.0),
    "global read by a helper": lambda sim, a, b, extra: edit_global("GAIN"),
    "global read by a connection": lambda sim, a, b, extra: edit_global("PULL"),
    "global list read by a connection, in place": lambda sim, a, b, extra: WEIGHTS.__setitem__(0, 2.0),
    "dict attribute, in place": lambda sim, a, b, extra: a.table.__setitem__("k", 2.0),
    "list attribute, in place": lambda sim, a, b, extra: a.weights.__setitem__(0, 2.0),
    "attribute": lambda sim, a, b, extra: setattr(a, "table", {"k": 3.0}),
    "attribute deleted": lambda sim, a, b, extra: delattr(a, "weights"),
    "closure cell": lambda sim, a, b, extra: extra["set_gain"](0.5),
    "new state": lambda sim, a, b, extra: setattr(a.states, "z", 0.0),
    "state shape": lambda sim, a, b, extra: setattr(a.states, "x", np.ones(3)),
    "input removed": lambda sim, a, b, extra: a.inputs.pop("u"),
    "inputs |=": lambda sim, a, b, extra: a.inputs.__ior__({"v": 1.0}),
    "list input, in place": lambda sim, a, b, extra: a.inputs.c.append(3.0),
    "input becomes text": lambda sim, a, b, extra: setattr(a.inputs, "u", "fast"),
    "subsystems.append": lambda sim, a, b, extra: a.subsystems.append(Decay()),
    "systems.append": lambda sim, a, b, extra: sim.systems.append(Decay()),
    "connection added": lambda sim, a, b, extra: b.add_pre_connection(connect_signals(a.outputs, "y", b.inputs, "u")),
    "connection removed": lambda sim, a, b, extra: extra["remove"](),
}


def two_decays() -> tuple[Simulation, Decay, Decay, dict]:
    sim, a, b = Simulation(), Decay(), Decay()
    link, set_gain = gain_link(1.0)
    remove = a.add_pre_connection(link)
    b.add_pre_connection(pull)
    sim.add_system(a)
    sim.add_system(b)
    return sim, a, b, {"set_gain": set_gain, "remove": remove}


@pytest.mark.parametrize("edit", list(EDITS))
def test_every_edit_that_changes_the_fingerprint_is_seen(edit: str) -> None:
    restore_globals()
    try:
        sim, a, b, extra = two_decays()
        watch = StructureWatch(sim.systems)
        assert watch.unchanged()
        EDITS[edit](sim, a, b, extra)
        assert StructureWatch(sim.systems).key != watch.key  # the edit matters ...
        assert not watch.unchanged()  # ... and the cheap check sees it
    finally:
        restore_globals()


def test_values_edited_through_the_api_keep_the_cheap_check() -> None:
    sim, a, b, _ = two_decays()
    watch = StructureWatch(sim.systems)
    a.states.x = 3.0
    a.inputs.u = 0.5
    b.outputs.y = 2
    b.states.x = np.array([4.0])
    assert watch.unchanged()
    assert StructureWatch(sim.systems).key == watch.key
    a.inputs.c = np.array([4.0, 5.0])  # a list replaced: looked at again (conservative) ...
    assert not watch.unchanged()
    assert StructureWatch(sim.systems).key == watch.key  # ... and found the same


@pytest.mark.slow
def test_simulate_checks_without_the_full_fingerprint_until_something_changes(monkeypatch) -> None:
    restore_globals()
    sim, a, b, _ = two_decays()
    sim.simulate(0.5, 0.1)
    build = sim.compile()
    calls = []
    full = simulation_module.StructureWatch

    def counting(systems, *parameters):
        calls.append(1)
        return full(systems, *parameters)

    monkeypatch.setattr(simulation_module, "StructureWatch", counting)
    a.states.x = 2.0  # values only
    sim.simulate(0.5, 0.1)
    assert calls == [] and sim.compile() is build
    try:
        Decay.rate = 2.0
        sim.simulate(0.5, 0.1)
        assert calls and sim.compile() is not build  # seen, and rebuilt
    finally:
        restore_globals()


class Vector(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.v = np.ones(3)
        self.inputs.k = np.ones(3)

    def do_step(self, time):
        self.ders.v = -self.inputs.k * self.states.v


@pytest.mark.slow
def test_in_place_edits_between_runs_are_integrated() -> None:
    sim, system = Simulation(), Vector()
    sim.add_system(system)
    sim.simulate(1.0, 0.5, rtol=1e-10, atol=1e-12)
    system.states.v[1] = 5.0  # in place, on what the last run left in the container
    system.inputs.k[2] = 2.0  # in place, a parameter vector
    sim.simulate(1.0, 0.5, rtol=1e-10, atol=1e-12)
    expected = [np.exp(-2.0), 5.0 * np.exp(-1.0), np.exp(-1.0) * np.exp(-2.0)]
    np.testing.assert_allclose(system.states.v, expected, rtol=1e-8)


@pytest.mark.slow
def test_a_state_array_read_after_a_run_follows_the_next_runs_as_in_dynode() -> None:
    """dynode writes the states back into the containers' arrays in place."""
    sim, system = Simulation(), Vector()
    sim.add_system(system)
    sim.simulate(1.0, 0.5)
    held = system.states["v"]
    sim.simulate(1.0, 0.5)
    assert held is system.states["v"]
    np.testing.assert_allclose(held, np.exp(-2.0), rtol=1e-5)


@pytest.mark.slow
def test_two_simulations_of_the_same_systems_take_turns() -> None:
    restore_globals()
    one, two = Simulation(), Simulation()
    system = Decay()
    one.add_system(system)
    two.add_system(system)
    other = Decay()  # the second simulation's model differs: another system after it
    two.add_system(other)
    for sim in (one, two, one, two):
        sim.simulate(0.5, 0.5, rtol=1e-10, atol=1e-12)
        assert system.outputs.y == pytest.approx(system.states.x + 2.0)
    assert system.states.x == pytest.approx(np.exp(-2.0), rel=1e-8)
    assert other.states.x == pytest.approx(np.exp(-1.0), rel=1e-8)


@pytest.mark.slow
def test_states_replaced_between_runs_are_gathered_in_the_layout_order() -> None:
    """A sweep: every run starts from states set anew (floats, lists, arrays) on a tree
    that mixes one-element and vector states; each run integrates what was set."""
    restore_globals()
    sim, vector, decay = Simulation(), Vector(), Decay()
    vector.add_subsystem(decay)
    sim.add_system(vector)
    sim.add_system(Decay())
    sim.simulate(0.5, 0.5)
    for start in (2.0, -1.0, 0.25):
        sim.systems[1].states.x = start
        vector.states.v = [start, 2.0 * start, 3.0 * start]
        decay.states["x"] = np.array([-start])
        sim.simulate(1.0, 0.5, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(vector.states.v, np.array([1.0, 2.0, 3.0]) * start * np.exp(-1.0), rtol=1e-8)
        # Decay: x' = -x + u with u = 0 (no connection): x(1) = x(0) / e
        assert decay.states.x == pytest.approx(-start * np.exp(-1.0), rel=1e-8)
        assert sim.systems[1].states.x == pytest.approx(start * np.exp(-1.0), rel=1e-8)


@pytest.mark.parametrize(("first", "second"), [([1, 2], [1.0, 2.0]), ([0.0, 1.0], [-0.0, 1.0]), ([1, 0], [True, False])])
def test_number_lists_that_compare_equal_but_read_differently_are_different_structures(first, second) -> None:
    """structure_key remembers its hash by the key: equal keys must mean equal text."""
    from dyngen.runtime.fingerprint import structure_key

    def key(weights: list) -> str | None:
        system = Decay()
        system.weights = weights
        return structure_key([system], ("context",))

    assert first == second
    assert key(first) == key(list(first)) != key(second)
    assert key([]) is not None and key([]) != key(())


class Guarded(Decay):
    lock = threading.Lock()  # an object only its identity describes


def test_an_opaque_object_gives_no_structure_key_on_every_new_tree() -> None:
    """The watch names objects as structure_key does; an object named by its id makes the
    key process-local, for the first tree and for the next one."""
    from dyngen.runtime.fingerprint import structure_key

    for _ in range(2):
        systems = [Guarded()]
        watch = StructureWatch(systems)
        assert watch.persistent is None
        assert structure_key(systems, ("context",)) is None
        assert structure_key(systems, ("context",), watch=watch) is None
    assert structure_key([Decay()], ("context",)) is not None


def test_a_system_replaced_by_an_equal_one_changes_the_watch_not_the_structure() -> None:
    from dyngen.runtime.fingerprint import structure_key

    first, second = StructureWatch([Decay()]), StructureWatch([Decay()])
    assert first.key != second.key  # the bindings must follow the new objects
    assert first.persistent == second.persistent is not None
    assert structure_key([Decay()], ("c",)) == structure_key([Decay()], ("c",), watch=second)


def _linked(source_key: str, target_key: str = "u", reversed_: bool = False) -> list[Decay]:
    """Two Decays, the second's input ``target_key`` driven by the first's output
    ``source_key`` through connect_signals (or the first's by the second's)."""
    a, b = Decay(), Decay()
    a.outputs.z = 0.0
    source, target = (b, a) if reversed_ else (a, b)
    target.add_pre_connection(connect_signals(source.outputs, source_key, target.inputs, target_key))
    return [a, b]


def test_connect_signals_is_keyed_by_its_keys_and_containers() -> None:
    """connect_signals' closures are keyed without the generic checks: its keys by repr,
    its containers by their place in the tree, as _attribute_key keys them."""
    from dyngen.runtime.fingerprint import _attribute_key, _PersistentIdentity, _dyngen_function_key

    systems = _linked("y")
    ident = _PersistentIdentity(systems)
    link = next(iter(systems[1]._pre_connections))
    contents = tuple(_attribute_key(cell.cell_contents, ident) for cell in link.__closure__)
    assert _dyngen_function_key(link, ident)[3] == contents
    same = StructureWatch(_linked("y")).persistent
    assert same == StructureWatch(systems).persistent
    for other in (_linked("z"), _linked("y", "c"), _linked("y", reversed_=True)):  # another key, input, direction
        assert StructureWatch(other).persistent != same


def test_fresh_watches_share_an_equal_fingerprint_and_not_an_edited_one() -> None:
    """structure_key gives a watch the equal fingerprint it keyed before (fresh
    Simulations of one model share it); a tree that differs keeps its own."""
    from dyngen.runtime.fingerprint import structure_key

    restore_globals()
    try:
        first, second = [Decay()], [Decay()]
        one, two = StructureWatch(first), StructureWatch(second)
        assert one.persistent is not two.persistent
        key = structure_key(first, ("c",), watch=one)
        assert structure_key(second, ("c",), watch=two) == key
        assert two.persistent is one.persistent and two.key != one.key  # shared; the bindings still their own
        Decay.rate = 2.0  # a class attribute: a new fingerprint, not the shared one
        third = [Decay()]
        watch = StructureWatch(third)
        assert structure_key(third, ("c",), watch=watch) != key and watch.persistent != one.persistent
    finally:
        restore_globals()
