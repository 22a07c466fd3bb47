"""Simulation.ensemble of models with events: every member is the run a single
simulate() makes, bit for bit (samples, event times, the values before and after each
action, stop time), the bounce times
match the closed form, a terminal event stops its member alone, a chattering member
fails alone, a Dask cluster gives the threaded run's Dataset, files keep or name the
event arrays, and what is not supported yet is refused with what to use instead.

The reference for each member is a fresh model with that member's values set on the
systems, a Recorder on ``simulate()`` and its ``sim.events``.
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import pytest

import ensemble_events_model as model
from dyngen import DyngenError, EnsembleWarning, Recorder, SolverError

SIGNALS = ("states.h", "states.v", "outputs.energy")
TOL = dict(rtol=1e-10, atol=1e-10)
RECORDED = {"Sawtooth": ("states.x",), "Thermostat": ("states.T", "inputs.on"), "Refill": ("states.w",)}


def single_run(
    build, values: dict, t: float, dt: float, integrator: str = "dopri5", **options
) -> tuple[dict, list, float]:
    """One simulate() of a fresh model with ``values`` (``"Ball.inputs.e"``...) set: its
    recorded series (and "time"), its event log and the time it returned."""
    sim = build()
    system = sim.systems[0]
    for name, value in values.items():
        _, kind, key = name.split(".")
        getattr(system, kind)[key] = float(value)
    recorder = Recorder()
    for attribute in SIGNALS if isinstance(system, model.Ball) else RECORDED[type(system).__name__]:
        recorder.store(system, attribute)
    sim.add_observer(recorder)
    try:
        reached = sim.simulate(t, dt, integrator=integrator, **options)
    except SolverError:
        reached = math.nan
    results = recorder.results[system]
    return {name: np.array(series) for name, series in results.items()}, sim.events, reached


def members_of(ds, j: int, names: list[str]) -> dict:
    return {n: float(ds.coords[f"{n}(t0)" if ".states." in n else n].values[j]) for n in names}


def assert_member_is_the_single_run(ds, j: int, expected: dict, events: list, signals=SIGNALS, system="Ball") -> None:
    kept = int(np.sum(~np.isnan(ds[f"{system}.{signals[0]}"].values[j])))
    for signal in signals:
        series = ds[f"{system}.{signal}"].values[j]
        # the single run's Recorder also has the sample at a terminal event: the ensemble's t_stop
        np.testing.assert_array_equal(series[:kept], expected[signal][:kept], err_msg=f"member {j}: {signal}")
        assert np.isnan(series[kept:]).all()
    n = int(ds["event_count"].values[j])
    assert n == len(events)
    np.testing.assert_array_equal(ds["event_time"].values[j, :n], [r.time for r in events])
    names = list(ds["event_name"].values)
    assert [names[i] for i in ds["event_id"].values[j, :n]] == [f"{r.system}.{r.event}" for r in events]
    assert np.isnan(ds["event_time"].values[j, n:]).all() and (ds["event_id"].values[j, n:] == -1).all()
    assert_values_are_the_records(ds, j, events)


def flat_values(ds, values: dict) -> np.ndarray:
    """A record's ``before`` (or ``after``) as a row over the Dataset's ``event_value``
    (``"name[i, j]"`` for an element of an array; NaN where the event writes nothing)."""
    row = np.full(ds.sizes["event_value"], np.nan)
    columns = list(ds["event_value"].values)
    for name, value in values.items():
        if np.ndim(value) == 0:
            row[columns.index(name)] = value
        else:
            for index in np.ndindex(*np.shape(value)):
                row[columns.index(f"{name}[{', '.join(map(str, index))}]")] = value[index]
    return row


def assert_values_are_the_records(ds, j: int, events: list) -> None:
    """Member j's event_before/event_after: its first events' EventRecords, bit for bit."""
    assert ds["event_before"].dims == ("member", "event", "event_value")
    kept = min(len(events), ds.sizes["event"])
    for e, record in enumerate(events[:kept]):
        np.testing.assert_array_equal(ds["event_before"].values[j, e], flat_values(ds, record.before), err_msg=f"{j}, {e}")
        np.testing.assert_array_equal(ds["event_after"].values[j, e], flat_values(ds, record.after), err_msg=f"{j}, {e}")
    assert np.isnan(ds["event_before"].values[j, kept:]).all() and np.isnan(ds["event_after"].values[j, kept:]).all()


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["dopri5", "dop853", "rodas4"])
def test_grid_members_equal_single_runs_bit_for_bit(integrator: str) -> None:
    sim = model.build()
    grid = {"Ball.inputs.e": [0.8, 0.9], "Ball.states.h": [3.0, 10.0]}  # no Zeno point before t = 6
    ds = sim.ensemble(6.0, 0.25, grid=grid, integrator=integrator, threads=2, chunk_size=1, **TOL)
    assert ds.sizes["member"] == 4 and (ds["status"].values == 1).all() and not ds["stopped"].values.any()
    assert ds["event_time"].dims == ("member", "event") and list(ds["event_name"].values) == ["Ball.ground"]
    for j in range(4):
        expected, events, reached = single_run(model.build, members_of(ds, j, list(grid)), 6.0, 0.25, integrator, **TOL)
        assert_member_is_the_single_run(ds, j, expected, events)
        np.testing.assert_array_equal(ds["time"].values, expected["time"])
        assert ds["t_stop"].values[j] == ds["t_reached"].values[j] == reached


@pytest.mark.slow
def test_bounce_times_match_the_closed_form_for_each_restitution_and_height() -> None:
    restitution = np.array([0.7, 0.8, 0.9, 0.95])  # no Zeno point before t = 6
    heights = np.array([10.0, 4.0, 10.0, 2.0])
    ds = model.build().ensemble(
        6.0, 1.0, members={"Ball.inputs.e": restitution, "Ball.states.h": heights}, threads=2, **TOL
    )  # fmt: skip
    for j, (e, h0) in enumerate(zip(restitution, heights)):
        t, v, expected = math.sqrt(2 * h0 / model.G), math.sqrt(2 * model.G * h0), []
        while t <= 6.0:
            expected.append(t)
            v *= e
            t += 2 * v / model.G
        assert ds["event_count"].values[j] == len(expected)
        found = ds["event_time"].values[j, : len(expected)]
        np.testing.assert_allclose(found, expected, rtol=1e-9, atol=0, err_msg=f"member {j} (e = {e}, h0 = {h0})")


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["dop853", "rodas4"])
def test_a_terminal_event_stops_its_member_early_and_the_others_run_on(integrator: str) -> None:
    sim = model.build(stop=True)
    ends = [2.2, 3.0, 9.0]
    ds = sim.ensemble(8.0, 0.5, members={"Ball.inputs.t_end": ends}, integrator=integrator, threads=2, chunk_size=1)
    np.testing.assert_array_equal(ds["stopped"].values, [True, True, False])
    np.testing.assert_array_equal(ds["status"].values, [2, 2, 1])
    assert (ds["reason"].values == "").all()
    np.testing.assert_allclose(ds["t_stop"].values, [2.2, 3.0, 8.0], rtol=1e-12)
    names = list(ds["event_name"].values)
    assert names == ["Ball.ground", "Ball.time_is_up"]
    for j, t_end in enumerate(ends):
        expected, events, reached = single_run(
            lambda: model.build(stop=True), {"Ball.inputs.t_end": t_end}, 8.0, 0.5, integrator
        )  # fmt: skip
        assert ds["t_stop"].values[j] == reached
        assert_member_is_the_single_run(ds, j, expected, events)
        times, h = ds["time"].values, ds["Ball.states.h"].values[j]
        assert not np.isnan(h[times < reached]).any()
        if ds["stopped"].values[j]:  # NaN from the stop on; the Recorder's last sample is at the terminal event
            assert np.isnan(h[times >= reached]).all()
            assert expected["time"][-1] == reached
            assert names[ds["event_id"].values[j, len(events) - 1]] == "Ball.time_is_up"


@pytest.mark.slow
def test_a_chattering_member_fails_with_its_reason_and_the_others_are_kept() -> None:
    sim = model.build_sawtooth()
    resets = [1.0, 1e-300, 0.5]
    with pytest.warns(EnsembleWarning, match=r"1 of 3 members failed \(member 1: dopri5: 100 events in a row"):
        ds = sim.ensemble(3.0, 0.5, members={"Sawtooth.inputs.reset": resets}, threads=2, chunk_size=1, max_events=200)
    np.testing.assert_array_equal(ds["status"].values, [1, -7, 1])
    assert "again at once" in ds["reason"].values[1] and "Sawtooth.zero" in ds["reason"].values[1]
    assert np.isnan(ds["t_stop"].values[1]) and ds["t_reached"].values[1] == pytest.approx(1.0)
    for j in (0, 2):
        expected, events, _ = single_run(model.build_sawtooth, {"Sawtooth.inputs.reset": resets[j]}, 3.0, 0.5)
        assert_member_is_the_single_run(ds, j, expected, events, signals=("states.x",), system="Sawtooth")
    np.testing.assert_allclose(ds["event_time"].values[2, :4], [1.0, 1.5, 2.0, 2.5], rtol=1e-12)


@pytest.mark.slow
def test_modes_that_actions_write_are_each_members_own() -> None:
    sim = model.build_thermostat()
    powers = [2.0, 3.0, 1.5]
    ds = sim.ensemble(60.0, 0.5, members={"Thermostat.inputs.power": powers}, record="all", threads=2, chunk_size=1)
    assert sim.systems[0].inputs.on == 1.0  # the simulation's own mode is left as it was
    assert (ds["status"].values == 1).all() and (ds["event_count"].values > 3).all()
    for j, power in enumerate(powers):
        expected, events, _ = single_run(model.build_thermostat, {"Thermostat.inputs.power": power}, 60.0, 0.5)
        assert_member_is_the_single_run(ds, j, expected, events, signals=RECORDED["Thermostat"], system="Thermostat")


@pytest.mark.slow
def test_an_action_that_writes_an_array_keeps_each_element_before_and_after() -> None:
    factors = [2.0, 3.0]
    ds = model.build_refill().ensemble(3.0, 0.5, members={"Refill.inputs.factor": factors}, threads=2, chunk_size=1, **TOL)
    assert list(ds["event_value"].values) == [f"Refill.states.w[{i}]" for i in range(3)]
    np.testing.assert_array_equal(ds["event_count"].values, [4, 3])  # every ln 1.5 + k ln(factor)
    for j, factor in enumerate(factors):
        _, events, _ = single_run(model.build_refill, {"Refill.inputs.factor": factor}, 3.0, 0.5, **TOL)
        np.testing.assert_array_equal(ds["event_time"].values[j, : len(events)], [r.time for r in events])
        assert_values_are_the_records(ds, j, events)
        np.testing.assert_allclose(ds["event_before"].values[j, 0], [1 / 1.5, 2 / 1.5, 2.0], rtol=1e-9)
        np.testing.assert_array_equal(ds["event_after"].values[j, :3], factor * ds["event_before"].values[j, :3])


def test_more_events_than_max_events_keeps_the_first_and_counts_all() -> None:
    sim = model.build_sawtooth()
    members = {"Sawtooth.inputs.reset": [0.25, 1.0, 1.0], "Sawtooth.states.x": [1.0, 1.0, 5.0]}
    with pytest.warns(EnsembleWarning, match=r"more than max_events=2 events"):
        ds = sim.ensemble(3.0, 0.5, members=members, max_events=2, threads=1)
    assert ds.sizes["event"] == 2
    np.testing.assert_array_equal(ds["event_count"].values, [8, 2, 0])  # at 1, 1.25, ..., 2.75; at 1, 2; none
    np.testing.assert_allclose(ds["event_time"].values[:2], [[1.0, 1.25], [1.0, 2.0]], rtol=1e-12)
    assert list(ds["event_value"].values) == ["Sawtooth.states.x"]
    np.testing.assert_array_equal(ds["event_after"].values[:, :, 0], [[0.25, 0.25], [1.0, 1.0], [np.nan, np.nan]])
    for j in range(3):  # the first two of 8 events, both of 2, none: the single runs' records
        values = {name: values[j] for name, values in members.items()}
        _, events, _ = single_run(model.build_sawtooth, values, 3.0, 0.5)
        assert len(events) == ds["event_count"].values[j]
        assert_values_are_the_records(ds, j, events)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # max_events=0: the counts alone, as asked
        counts = sim.ensemble(3.0, 0.5, members={"Sawtooth.inputs.reset": [0.25, 1.0]}, max_events=0, threads=1)
    assert counts.sizes["event"] == 0 and counts["event_before"].shape == (2, 0, 1)
    np.testing.assert_array_equal(counts["event_count"].values, [8, 2])


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        (dict(integrator="Radau"), r"integrator 'Radau' does not run a model with events .* use integrator='dopri5'"),
        (dict(integrator="BDF"), r"integrator 'BDF' does not run a model with events .*sim\.reset\(\)"),
        (dict(integrator="rodas4", linear_solver="krylov"), r"dense LU only: linear_solver='krylov' is for the sparse"),
    ],
)
def test_what_ensembles_of_event_models_do_not_run_yet_is_refused(arguments: dict, words: str) -> None:
    sim = model.build_sawtooth()
    with pytest.raises(DyngenError, match=words):
        sim.ensemble(1.0, 0.5, members={"Sawtooth.inputs.reset": [1.0]}, **arguments)


@pytest.mark.slow
def test_on_a_dask_cluster_the_members_and_their_events_are_the_threaded_runs(tmp_path) -> None:
    """Two worker processes (their own module cache): chunks of members with bounces and
    terminal events come back as the threaded run's Dataset, bit for bit."""
    distributed = pytest.importorskip("distributed")
    sim = model.build(stop=True)
    members = {"Ball.inputs.e": np.linspace(0.8, 0.95, 12), "Ball.inputs.t_end": np.linspace(2.0, 9.0, 12)}
    threaded = sim.ensemble(6.0, 0.25, members=members, threads=2, **TOL)
    assert 0 < threaded["stopped"].values.sum() < 12
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0",
        env={"DYNGEN_CACHE_DIR": str(tmp_path)}, silence_logs=50,
    ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
        on_dask = sim.ensemble(6.0, 0.25, members=members, client=client, chunk_size=5, **TOL)
    assert set(on_dask.data_vars) == set(threaded.data_vars)
    for name in threaded.data_vars:
        np.testing.assert_array_equal(on_dask[name].values, threaded[name].values, err_msg=name)


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_tables_say_they_leave_out_the_per_event_arrays_and_netcdf_keeps_them(tmp_path, suffix: str) -> None:
    xr = pytest.importorskip("xarray")
    from dyngen.outputs import write_dataset

    ds = model.build_sawtooth().ensemble(2.0, 0.5, members={"Sawtooth.inputs.reset": [0.5, 1.0]})
    with pytest.warns(
        EnsembleWarning, match=r"no place for event_time \('member', 'event'\), event_id .*, event_before \('member', 'event', 'event_value'\), event_after"
    ):  # fmt: skip
        write_dataset(ds, str(tmp_path / f"out{suffix}"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_dataset(ds, str(tmp_path / "out.nc"))
    back = xr.load_dataset(tmp_path / "out.nc", engine="h5netcdf")
    np.testing.assert_array_equal(back["event_time"].values, ds["event_time"].values)
    np.testing.assert_array_equal(back["event_count"].values, ds["event_count"].values)
    assert list(back["event_name"].values) == ["Sawtooth.zero"]
    for name in ("event_before", "event_after"):  # (member, event, event_value), NaN past a member's last
        assert back[name].dims == ("member", "event", "event_value")
        np.testing.assert_array_equal(back[name].values, ds[name].values)
    assert list(back["event_value"].values) == ["Sawtooth.states.x"]


@pytest.mark.slow
def test_dyngen_sweep_of_a_model_with_events_writes_them_to_netcdf_and_warns_for_csv(tmp_path) -> None:
    """``dyngen sweep``'s work (``run_sweep``): the ensemble's event arrays in the .nc
    file, equal to an ensemble's; a .csv says it leaves them out."""
    xr = pytest.importorskip("xarray")
    from dyngen.sweeps import run_sweep

    path = str(Path(model.__file__))
    arguments = dict(build_args={}, integrator="dopri5", options={}, fixed_step=False, record=None, threads=1,
                     workers=None, scheduler=None, plot_file=None)  # fmt: skip
    run_sweep(path, 3.0, 0.5, ["Ball.inputs.e=0.5:0.9:3"], output=str(tmp_path / "s.nc"), **arguments)
    back = xr.load_dataset(tmp_path / "s.nc", engine="h5netcdf")
    direct = model.build().ensemble(3.0, 0.5, grid={"Ball.inputs.e": np.linspace(0.5, 0.9, 3)})
    np.testing.assert_array_equal(back["event_time"].values, direct["event_time"].values)
    np.testing.assert_array_equal(back["Ball.states.h"].values, direct["Ball.states.h"].values)
    with pytest.warns(EnsembleWarning, match=r"no place for event_time"):
        run_sweep(path, 3.0, 0.5, ["Ball.inputs.e=0.5:0.9:3"], output=str(tmp_path / "s.csv"), **arguments)
    header = (tmp_path / "s.csv").read_text().splitlines()[0].split(",")
    assert {"event_count", "t_stop", "stopped"} <= set(header) and "event_time" not in header
