"""Simulation.ensemble: every member is the run a single simulate() makes, bit for bit.

The reference for each member is a fresh model with that member's values set on the
systems and a Recorder on ``simulate()``; the ensemble runs all members in compiled
chunks on threads (or member by member for scipy's methods).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import ensemble_model as model
from dyngen import ArgumentError, DyngenError, Recorder
from dyngen import EnsembleWarning

pytestmark = pytest.mark.slow  # numba compiles the ensemble routines

SIGNALS = {  # name -> (system index, Recorder attribute)
    "VanDerPol.states.x": (0, "states.x"),
    "VanDerPol.states.y": (0, "states.y"),
    "VanDerPol.outputs.x": (0, "outputs.x"),
    "Particle.states.q": (1, "states.q"),
    "Particle.outputs.energy": (1, "outputs.energy"),
}


def set_values(sim, values: dict) -> None:
    """Set a member's values on the systems, as a user would by hand."""
    leader, follower = sim.systems
    for name, value in values.items():
        system = leader if name.startswith("VanDerPol") else follower
        _, kind, key = name.split(".")
        if "[" in key:
            key, index = key[:-1].split("[")
            getattr(system, kind)[key][int(index)] = value
        elif kind == "states" and key in ("x", "y"):
            system.states[key] = float(value)
        else:
            getattr(system, kind)[key] = np.array(value) if np.ndim(value) else float(value)


def single_run(values: dict, t: float, dt: float, integrator: str = "dopri5", **options) -> dict:
    """One simulate() of a fresh model with ``values`` set: {signal name: (samples, ...) array}, and "time"."""
    sim = model.build()
    set_values(sim, values)
    recorder = Recorder()
    for index, attribute in SIGNALS.values():
        recorder.store(sim.systems[index], attribute)
    sim.add_observer(recorder)
    try:
        sim.simulate(t, dt, integrator=integrator, **options)
    except DyngenError:
        pass  # the samples up to the failure are kept
    results = recorder.results
    series = {name: np.array(results[sim.systems[i]][a]) for name, (i, a) in SIGNALS.items()}
    series["time"] = np.array(results[sim.systems[0]]["time"])
    return series


def member_values(ds, j: int, names: list[str]) -> dict:
    label = {n: f"{n}(t0)" if ".states." in n else n for n in names}
    return {n: ds.coords[label[n]].values[j] for n in names}


@pytest.mark.parametrize("integrator", ["dopri5", "dop853", "rodas4"])
def test_grid_members_equal_single_runs_bit_for_bit(integrator):
    sim = model.build()
    mu = [0.5, 1.0, 2.5]
    x0 = [-1.0, 2.0]
    ds = sim.ensemble(
        3.0, 0.1, grid={"VanDerPol.inputs.mu": mu, "VanDerPol.states.x": x0}, integrator=integrator,
        threads=2, chunk_size=2, rtol=1e-8,
    )  # fmt: skip
    assert ds.sizes["member"] == 6 and ds.sizes["time"] == 31
    assert list(ds.coords["VanDerPol.inputs.mu"].values) == [0.5, 0.5, 1.0, 1.0, 2.5, 2.5]  # first name slowest
    assert list(ds.coords["VanDerPol.states.x(t0)"].values) == x0 * 3
    assert (ds["status"].values == 1).all() and (ds["reason"].values == "").all()
    for j in range(6):
        expected = single_run(member_values(ds, j, ["VanDerPol.inputs.mu", "VanDerPol.states.x"]), 3.0, 0.1,
                              integrator, rtol=1e-8)  # fmt: skip
        for name in SIGNALS:
            np.testing.assert_array_equal(ds[name].values[j], expected[name], err_msg=f"member {j}: {name}")
        np.testing.assert_allclose(ds["time"].values, expected["time"], rtol=1e-15, atol=0)
        assert ds["t_reached"].values[j] == expected["time"][-1]


def test_the_simulation_itself_is_unchanged_and_continues_as_before():
    sim = model.build()
    sim.simulate(1.0, 0.5)
    before = (sim.systems[0].states.x, sim.systems[1].states.q.copy(), sim._t)
    ds = sim.ensemble(1.0, 0.25, members={"VanDerPol.inputs.mu": [1.5, 2.0]})  # member 0: the model's own mu
    assert (sim.systems[0].states.x, sim._t) == (before[0], before[2])
    np.testing.assert_array_equal(sim.systems[1].states.q, before[1])
    # members start where the simulation is (t = 1, not recorded: as a simulate() from there)
    assert ds.attrs["t0"] == 1.0 and ds.sizes["time"] == 4
    np.testing.assert_allclose(ds["time"].values, [1.25, 1.5, 1.75, 2.0], rtol=1e-15)
    sim.simulate(1.0, 0.25)  # the simulation's own next run is member 0
    assert sim.systems[0].states.x == ds["VanDerPol.states.x"].values[0, -1]
    assert sim.systems[0].states.x != ds["VanDerPol.states.x"].values[1, -1]


def test_zipped_members_function_members_and_vector_values():
    sim = model.build()
    stiffness = np.array([[1.0, 2.0], [3.0, 0.5], [2.0, 2.0]])
    by_arrays = sim.ensemble(2.0, 0.5, members={"Particle.inputs.stiffness": stiffness, "Particle.states.q[3]": [0.1, 0.2, 0.3]})
    by_function = sim.ensemble(
        2.0, 0.5, members=lambda i: {"Particle.inputs.stiffness": stiffness[i], "Particle.states.q[3]": [0.1, 0.2, 0.3][i]},
        n_members=3,
    )  # fmt: skip
    assert by_arrays["Particle.states.q"].dims == ("member", "time", "Particle.states.q.dim_0")
    np.testing.assert_array_equal(by_arrays["Particle.states.q"].values, by_function["Particle.states.q"].values)
    np.testing.assert_array_equal(by_arrays.coords["Particle.inputs.stiffness"].values, stiffness)
    for j in range(3):
        expected = single_run({"Particle.inputs.stiffness": stiffness[j], "Particle.states.q[3]": by_arrays.coords["Particle.states.q[3](t0)"].values[j]}, 2.0, 0.5)  # fmt: skip
        np.testing.assert_array_equal(by_arrays["Particle.states.q"].values[j], expected["Particle.states.q"])
        np.testing.assert_array_equal(by_arrays["Particle.outputs.energy"].values[j], expected["Particle.outputs.energy"])


def test_a_failing_member_is_reported_and_the_others_are_intact():
    sim = model.build()
    mu = [1.0, 1e6, 2.0]  # the second is far too stiff for 60 explicit steps
    with pytest.warns(EnsembleWarning, match=r"1 of 3 members failed \(member 1: larger nsteps is needed"):
        ds = sim.ensemble(2.0, 1.0, members={"VanDerPol.inputs.mu": mu}, nsteps=60, threads=2, chunk_size=1)
    assert list(ds["status"].values) == [1, -2, 1]
    assert ds["reason"].values[1] == "larger nsteps is needed" and ds["t_reached"].values[1] < 2.0
    assert np.isnan(ds["VanDerPol.states.x"].values[1, -1])  # nothing stored past the failure
    for j in (0, 2):
        expected = single_run({"VanDerPol.inputs.mu": mu[j]}, 2.0, 1.0, nsteps=60)
        np.testing.assert_array_equal(ds["VanDerPol.states.x"].values[j], expected["VanDerPol.states.x"])
    failed = single_run({"VanDerPol.inputs.mu": mu[1]}, 2.0, 1.0, nsteps=60)
    stored = len(failed["time"])
    np.testing.assert_array_equal(ds["VanDerPol.states.x"].values[1, :stored], failed["VanDerPol.states.x"])


def test_scipy_methods_run_member_by_member_with_the_same_results():
    sim = model.build()
    ds = sim.ensemble(1.0, 0.5, members={"VanDerPol.inputs.mu": [0.5, 3.0]}, integrator="BDF", record="VanDerPol.states.x")
    assert list(ds.data_vars) == ["VanDerPol.states.x", "status", "reason", "t_reached"]
    block = ds["VanDerPol.states.x"].values.base  # the one preallocated block holds only what is recorded
    assert block is not None and block.size == 2 * 3
    for j, mu in enumerate([0.5, 3.0]):
        expected = single_run({"VanDerPol.inputs.mu": mu}, 1.0, 0.5, "BDF")
        np.testing.assert_array_equal(ds["VanDerPol.states.x"].values[j], expected["VanDerPol.states.x"])


def test_record_all_keeps_inputs_and_ders_and_a_swept_parameter_is_a_coordinate():
    sim = model.build()
    ds = sim.ensemble(0.5, 0.25, grid={"VanDerPol.inputs.mu": [1.0, 2.0]}, record="all")
    assert "VanDerPol.inputs.mu" not in ds.data_vars  # the coordinate of that name
    np.testing.assert_array_equal(ds["Particle.inputs.force"].values, ds["VanDerPol.outputs.x"].values)
    np.testing.assert_array_equal(ds["VanDerPol.ders.x"].values, ds["VanDerPol.states.y"].values)


@pytest.mark.parametrize(
    "arguments, message",
    [
        (dict(grid={"VanDerPol.inputs.muu": [1.0]}), r"'VanDerPol.inputs.muu' is not an initial state or a parameter.*did you mean 'VanDerPol.inputs.mu'"),
        (dict(grid={"Particle.inputs.force": [1.0]}), r"'Particle.inputs.force' is not an initial state or a parameter"),
        (dict(grid={"VanDerPol.inputs.mu": [1.0]}, members={"VanDerPol.inputs.mu": [1.0]}), "not both"),
        (dict(), r"give grid="),
        (dict(members={"VanDerPol.inputs.mu": [1.0, 2.0], "VanDerPol.states.x": [1.0]}), "as many values for every name"),
        (dict(members=lambda i: {"VanDerPol.inputs.mu": 1.0}), "give n_members="),
        (dict(grid={"Particle.inputs.stiffness": [1.0, 2.0]}), r"each of shape \(2,\)"),
        (dict(grid={"VanDerPol.inputs.mu": [1.0]}, record=["VanDerPol.outputs.z"]), "did you mean 'VanDerPol.outputs.x'"),
        (dict(grid={"VanDerPol.inputs.mu": [1.0]}, threads=0), "threads must be a positive integer"),
        (dict(grid={"VanDerPol.inputs.mu": [1.0]}, integrator="rodas4", fixed_step=True), "fixed_step=True needs dopri5"),
    ],
)  # fmt: skip
def test_bad_arguments_say_what_to_write(arguments, message):
    sim = model.build()
    with pytest.raises(DyngenError, match=message):
        sim.ensemble(1.0, 0.5, **arguments)


def test_unknown_names_are_argument_errors():
    with pytest.raises(ArgumentError):
        model.build().ensemble(1.0, 0.5, grid={"nothing": [1.0]})


def test_progress_is_called_per_chunk_up_to_the_total():
    calls = []
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model.build().ensemble(0.5, 0.5, grid={"VanDerPol.inputs.mu": np.linspace(1, 2, 7)}, chunk_size=3,
                               threads=2, progress=lambda done, total: calls.append((done, total)))  # fmt: skip
    assert [total for _, total in calls] == [7, 7, 7]
    done = [d for d, _ in calls]
    assert done[-1] == 7 and done == sorted(done)
    assert sorted(np.diff([0, *done]).tolist()) == [1, 3, 3]  # chunks of 3, 3 and 1, in the order they finish


def test_a_plain_attribute_is_swept_as_a_parameter_built_once():
    """``"<system path>.<attribute>"``: made a parameter (one build), then set per member;
    each member equals a fresh model built with that value (a constant in its module)."""
    import params_model

    sim = params_model.build_tilt()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RebuildWarning: nothing is rebuilt per value
        ds = sim.ensemble(1.0, 0.25, grid={"Tilt.k": [1.0, 2.0, 3.5]}, record="Tilt.states.x")
    assert "Tilt.k" in sim.module.PARAMETER_NAMES and sim.systems[0].k == 2.0
    for j, k in enumerate([1.0, 2.0, 3.5]):
        fresh = params_model.build_tilt()
        fresh.systems[0].k = k
        recorder = Recorder()
        recorder.store(fresh.systems[0], "states.x")
        fresh.add_observer(recorder)
        fresh.simulate(1.0, 0.25)
        assert "Tilt.k" not in fresh.module.PARAMETER_NAMES
        np.testing.assert_allclose(ds["Tilt.states.x"].values[j], recorder.results[fresh.systems[0]]["states.x"], rtol=1e-13)


def test_without_xarray_the_error_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "xarray", None)  # import xarray raises ImportError
    with pytest.raises(DyngenError, match=r'Simulation.ensemble .*needs xarray, which is not installed.*pip install "dyngen\[tables\]"'):
        model.build().ensemble(1.0, 0.5, grid={"VanDerPol.inputs.mu": [1.0]})


def test_a_function_of_the_member_index_is_called_once_per_member():
    """A Monte-Carlo function drawing from a generator gives each member one draw."""
    rng = np.random.default_rng(7)
    calls = []

    def draw(i):
        calls.append(i)
        return {"VanDerPol.inputs.mu": rng.uniform(0.5, 2.0)}

    ds = model.build().ensemble(0.5, 0.5, members=draw, n_members=4, record="VanDerPol.states.x")
    assert calls == [0, 1, 2, 3]
    np.testing.assert_array_equal(ds.coords["VanDerPol.inputs.mu"].values, np.random.default_rng(7).uniform(0.5, 2.0, 4))
