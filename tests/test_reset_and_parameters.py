"""One model, many runs by hand: ``Simulation.reset()`` and ``Simulation.make_parameter()``.

Models: ``tests/params_model.py``.  References: the first run itself (a reset run
repeats it bit for bit), a fresh dyngen build with the new value, and a fresh
dynode run (dynode has no reset: a new simulation is its "reset").
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

import dyngen.runtime.simulation as simulation_module
from dyngen import Recorder, RebuildWarning, UsageError
from dynode_compare import assert_same_runs, build_simulation, load_model_source, run

MODEL = Path(__file__).with_name("params_model.py")


def _record(sim, system, t=3.0, dt=0.25, **options):
    """One run with a new Recorder of the system's states and output; the samples as arrays."""
    recorder = Recorder()
    for name in ("states.x", "states.v", "outputs.y", "ders.x"):
        recorder.store(system, name)
    remove = sim.add_observer(recorder)
    sim.simulate(t, dt, **options)
    remove()
    return {key: np.asarray(values) for key, values in recorder.results[system].items()}


def _assert_identical(first: dict, second: dict) -> None:
    assert first.keys() == second.keys()
    for key in first:
        assert first[key].shape == second[key].shape, key
        assert np.array_equal(first[key], second[key]), key  # bit for bit


@pytest.fixture
def builds(monkeypatch):
    """Counts the builds the Simulations make (``pipeline.build`` calls)."""
    calls = []
    original = simulation_module.build

    def counted(*args, **kwargs):
        calls.append(kwargs.get("options"))
        return original(*args, **kwargs)

    monkeypatch.setattr(simulation_module, "build", counted)
    return calls


@pytest.mark.parametrize("integrator", ["dopri5", "vode"])
def test_reset_repeats_the_first_run_bit_for_bit(integrator):
    sim = build_simulation(MODEL, "dyngen", "build_tilt")
    tilt = sim.systems[0]
    first = _record(sim, tilt, integrator=integrator)
    end = (sim._t, tilt.states.x, tilt.states.v.copy(), tilt.outputs.y, tilt.ders.v.copy())
    assert end[0] == 3.0 and tilt.states.x != 1.0
    for _ in range(2):  # the snapshot is a copy: the run between does not change it
        sim.reset()
        assert sim._t == 0 and tilt.states.x == 1.0 and tilt.outputs.y == 0.0 and tilt.ders.x == 0.0
        assert np.array_equal(tilt.states.v, [0.0, 1.0]) and np.array_equal(tilt.ders.v, [0.0, 0.0])
        _assert_identical(first, _record(sim, tilt, integrator=integrator))
        assert (sim._t, tilt.states.x, tilt.outputs.y) == (end[0], end[1], end[3])
        assert np.array_equal(tilt.states.v, end[2]) and np.array_equal(tilt.ders.v, end[4])


def test_reset_is_a_fresh_start_as_in_dynode():
    """Run, reset, change an input (reset leaves parameters alone), run: as a fresh dynode run with that input."""
    sim = build_simulation(MODEL, "dyngen", "build_tilt")
    sim.simulate(2.0, 0.5)
    sim.systems[0].inputs.u = 0.2
    sim.reset()
    assert sim.systems[0].inputs.u == 0.2
    ours = run(sim, "dyngen", 3.0, 0.25)
    dynode_sim = build_simulation(MODEL, "dynode", "build_tilt")
    dynode_sim.systems[0].inputs.u = 0.2
    assert_same_runs(ours, run(dynode_sim, "dynode", 3.0, 0.25))


def test_reset_keeps_observers_and_what_they_recorded():
    sim = build_simulation(MODEL, "dyngen", "build_tilt")
    tilt = sim.systems[0]
    recorder = Recorder()
    recorder.store(tilt, "states.x")
    sim.add_observer(recorder)
    seen = []
    sim.add_observer(lambda t, y: seen.append((t, y[0])))  # not a Recorder: stepped from Python
    sim.simulate(1.0, 0.5)
    sim.reset()
    sim.simulate(1.0, 0.5)
    assert recorder.results[tilt]["time"] == [0.0, 0.5, 1.0, 0.0, 0.5, 1.0]
    xs = recorder.results[tilt]["states.x"]
    assert xs[:3] == xs[3:] and xs[0] == 1.0
    assert seen[:3] == seen[3:] and [t for t, _ in seen] == [0.0, 0.5, 1.0] * 2


def test_reset_before_any_run_and_with_a_system_added_later():
    sim = build_simulation(MODEL, "dyngen", "build_chain")
    sim.reset()  # nothing to do yet
    first = sim.systems[0]
    sim.simulate(1.0, 0.5)
    late = build_simulation(MODEL, "dyngen", "build_tilt").systems[0]
    late.states.x = 0.5
    sim.add_system(late)
    sim.simulate(1.0, 0.5)  # a rebuild; the late system's start is recorded here, at t = 1
    assert sim._t == 2.0 and late.states.x != 0.5
    sim.reset()
    assert sim._t == 0 and first.states.x == 0.2 and first.states.y == 0.0
    assert late.states.x == 0.5 and np.array_equal(late.states.v, [0.0, 1.0])


def test_a_changed_attribute_warns_once_and_rebuilds(builds):
    sim = build_simulation(MODEL, "dyngen", "build_tilt")
    tilt = sim.systems[0]
    sim.simulate(1.0, 0.5)
    tilt.k = 3.0
    sim.reset()
    with pytest.warns(RebuildWarning) as caught:
        sim.simulate(1.0, 0.5)
    messages = [str(w.message) for w in caught if issubclass(w.category, RebuildWarning)]
    assert len(messages) == 1 and len(builds) == 2
    assert "Tilt.k changed (2.0 -> 3.0)" in messages[0]
    assert "sim.make_parameter('Tilt.k')" in messages[0]
    assert caught[0].filename == __file__  # points at the user's simulate() call
    tilt.k = 2.5
    tilt.unused = 7.0  # another attribute: reported once too (the model need not read it)
    sim.reset()
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        sim.simulate(1.0, 0.5)
    texts = [str(w.message) for w in again if issubclass(w.category, RebuildWarning)]
    assert len(builds) == 3 and len(texts) == 1 and texts[0].startswith("Tilt.unused changed")


def test_make_parameter_changes_take_effect_without_a_rebuild(builds):
    sim = build_simulation(MODEL, "dyngen", "build_tilt")
    tilt = sim.systems[0]
    sim.make_parameter("Tilt.max_tilt")
    module = sim.module
    assert "Tilt.max_tilt" in module.PARAMETER_NAMES
    assert module.PARAMETERS["Tilt"]["max_tilt"][2] == ()
    assert len(builds) == 1 and builds[0].parameters == ("Tilt.max_tilt",)
    sim.make_parameter("Tilt.max_tilt")  # already one: nothing to do
    assert len(builds) == 1
    before = _record(sim, tilt)
    tilt.max_tilt = 0.1
    sim.reset()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RebuildWarning)
        after = _record(sim, tilt)
    assert len(builds) == 1 and sim.module is module
    assert not np.allclose(before["states.x"], after["states.x"])
    fresh = build_simulation(MODEL, "dyngen", "build_tilt", 2.0, 0.1)  # max_tilt = 0.1 as a constant
    reference = _record(fresh, fresh.systems[0])
    assert "Tilt.max_tilt" not in fresh.module.PARAMETER_NAMES  # a build without it is another module
    for key in reference:
        np.testing.assert_allclose(after[key], reference[key], rtol=1e-13, atol=1e-15, err_msg=key)
    tilt.max_tilt = 0.2
    sim.reset()
    ours = run(sim, "dyngen", 3.0, 0.25)
    assert len(builds) == 2 and sim.module is module  # (1 + the fresh build above)
    assert_same_runs(ours, run(build_simulation(MODEL, "dynode", "build_tilt", 2.0, 0.2), "dynode", 3.0, 0.25))


def test_the_parameters_are_part_of_the_build_identity():
    """Equal models with and without the parameter build to two modules; the structure
    key finds each one's own (the second with it is loaded without tracing)."""
    model = load_model_source(MODEL, "dyngen")  # one module: its classes are the same in every build
    with_it = model.build_tilt()
    with_it.make_parameter("Tilt.max_tilt")
    without = model.build_tilt()
    assert "Tilt.max_tilt" not in without.module.PARAMETER_NAMES
    again = model.build_tilt()
    again.make_parameter("Tilt.max_tilt")
    assert again.module is with_it.module and again._build.front._stages is None  # not traced


def test_make_parameter_of_one_copy_of_a_class():
    sim = build_simulation(MODEL, "dyngen", "build_chain")
    sim.make_parameter("Osc[1].c")
    module = sim.module
    sim.systems[1].c = 2.0
    ours = run(sim, "dyngen", 4.0, 0.5)
    assert sim.module is module and module.PARAMETER_NAMES[-1] == "Osc[1].c"
    dynode_sim = build_simulation(MODEL, "dynode", "build_chain")
    dynode_sim.systems[1].c = 2.0
    assert_same_runs(ours, run(dynode_sim, "dynode", 4.0, 0.5))


def test_make_parameter_of_a_subsystem_read_by_its_parent():
    """z' = gain * k - z, z(0) = 0: z(t) = gain * k * (1 - exp(-t)), with Holder.gain and
    the subsystem's Holder.tilt.k (read by the parent's do_step) as parameters."""
    sim = build_simulation(MODEL, "dyngen", "build_holder")
    holder = sim.systems[0]
    sim.make_parameter("Holder.gain", "Holder.tilt.k")
    module = sim.module
    assert {"Holder.gain", "Holder.tilt.k"} <= set(module.PARAMETER_NAMES)
    for gain, k in ((0.5, 2.0), (1.0, 4.0), (-0.3, 1.5)):
        holder.gain, holder.tilt.k = gain, k
        sim.reset()
        sim.simulate(1.0, 0.5, rtol=1e-10, atol=1e-12)
        assert holder.states.z == pytest.approx(gain * k * (1 - np.exp(-1.0)), rel=1e-9)
    assert sim.module is module


def test_a_python_if_on_a_parameter_switches_without_a_rebuild(builds):
    sim = build_simulation(MODEL, "dyngen", "build_switch")
    switch = sim.systems[0]
    sim.make_parameter("Switch.k")
    for k in (1.0, 4.0, 2.0, 9.0):
        switch.k = k
        sim.reset()
        sim.simulate(1.0, 1.0, rtol=1e-10, atol=1e-12)
        rate = k if k > 2.5 else np.sqrt(k)
        assert switch.states.x == pytest.approx(np.exp(-rate), rel=1e-9)
    assert len(builds) == 1


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Tilt.max_tlit", "has no attribute 'max_tlit'; did you mean 'max_tilt'?"),
        ("Tlit.max_tilt", "the model has no system 'Tlit'; did you mean 'Tilt'?"),
        ("max_tilt", "name is '<system path>.<attribute>'"),
        ("Tilt.inputs.u", "an input that no connection drives is a parameter already"),
        ("Tilt.label", "holds 'tilt' (str); only an attribute that holds a number"),
        ("Tilt.unused", "the model does not read Tilt.unused"),
        ("Tilt.n", "not where Python needs a number at build time (range(), an index"),
    ],
)
def test_make_parameter_errors(name, expected, builds):
    sim = build_simulation(MODEL, "dyngen", "build_tilt")
    sim.simulate(0.5, 0.5)
    module = sim.module
    with pytest.raises(UsageError) as error:
        sim.make_parameter(name)
    assert expected in str(error.value)
    assert sim._parameters == {} and sim.module is module  # as it was
    sim.simulate(0.5, 0.5)
    assert sim.module is module and len(builds) in (1, 2)  # 2: the failed trace (unread, untraceable)


def test_make_parameter_of_a_class_attribute():
    sim = build_simulation(MODEL, "dyngen", "build_tilt")
    type(sim.systems[0]).shared = 1.5
    try:
        with pytest.raises(UsageError, match="shared is an attribute of the class Tilt"):
            sim.make_parameter("Tilt.shared")
    finally:
        del type(sim.systems[0]).shared

