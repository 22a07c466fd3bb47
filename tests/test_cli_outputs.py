"""``dyngen run``'s files (.csv, .nc, .parquet), --set, --arg, --plot and progress, and
``Recorder.to_dataframe()``/``to_xarray()``: driven in-process with click's CliRunner
and compared with the same model run in-process by ``simulate()`` with a Recorder."""

from __future__ import annotations

import csv
import io
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

from dyngen import Recorder
from dyngen.cli import main
from dyngen.modelfile import load_model
from dyngen.run_progress import RunProgress, simulate_with_progress

MODEL = textwrap.dedent(
    '''\
    """Damped oscillators with a vector state, a vector output and a plain attribute."""

    import numpy as np

    from dyngen import Simulation, System


    class Osc(System):
        def __init__(self, k):
            super().__init__()
            self.gain = 1.0  # a plain attribute (a constant of the build)
            self.inputs.k = k
            self.inputs.c = 0.1
            self.states.q = np.array([1.0, 0.0])
            self.states.phase = 0.0
            self.outputs.energy = 0.0
            self.outputs.velocity = np.zeros(2)

        def do_step(self, time):
            x, v = self.states.q
            k = self.inputs.k
            self.ders.q = np.array([v, -k * x - self.inputs.c * v])
            self.ders.phase = self.gain
            self.outputs.energy = 0.5 * (v * v + k * x * x)
            self.outputs.velocity = np.array([v, -v])


    def build(n=1, k=1.0):
        sim = Simulation()
        for _ in range(n):
            sim.add_system(Osc(k))
        return sim
    '''
)
SIGNALS = ("states.q", "states.phase", "inputs.k", "inputs.c", "outputs.energy", "outputs.velocity")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "osc.py"
    path.write_text(MODEL)
    return path


def invoke(args: list, cwd: Path) -> Result:
    """``dyngen ARGS`` in this process (relative paths from the current folder)."""
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.output}"
    return result


def reference(model: Path, t: float, dt: float, *, build_args=None, setup=None, **options) -> dict[str, np.ndarray]:
    """The run in-process: every signal of every system recorded, by column name."""
    sim = load_model(model, build_args=build_args)
    if setup:
        setup(sim.systems)
    rec = Recorder()
    for system in sim.systems:
        for signal in SIGNALS:
            rec.store(system, signal)
    sim.add_observer(rec)
    sim.simulate(t, dt, **options)
    return dict(rec.table().columns())


def set_values(systems) -> None:
    systems[0].inputs.k = 2.5
    systems[0].states.q = np.array([0.5, 0.25])


SET_ARGS = ["--set", "Osc.inputs.k=2.5", "--set", "Osc.states.q=[0.5, 0.25]"]
COLUMNS = [
    "time", "Osc.states.q[0]", "Osc.states.q[1]", "Osc.states.phase", "Osc.inputs.k", "Osc.inputs.c",
    "Osc.outputs.energy", "Osc.outputs.velocity[0]", "Osc.outputs.velocity[1]",
]  # fmt: skip


def read_back(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".csv":
        with path.open(newline="") as handle:
            rows = list(csv.reader(handle))
        return {name: np.array([float(r[i]) for r in rows[1:]]) for i, name in enumerate(rows[0])}
    if path.suffix == ".parquet":
        import pandas as pd

        frame = pd.read_parquet(path)
        return {"time": frame.index.to_numpy(), **{c: frame[c].to_numpy() for c in frame.columns}}
    import xarray as xr

    with xr.open_dataset(path, engine="h5netcdf") as ds:
        columns = {"time": ds["time"].values}
        for name, variable in ds.data_vars.items():
            values = variable.values
            if values.ndim == 1:
                columns[name] = values
            else:
                assert variable.dims == ("time", f"{name}.dim_0")
                columns.update({f"{name}[{i}]": values[:, i] for i in range(values.shape[1])})
        return columns


@pytest.mark.parametrize("suffix", [".csv", ".nc", ".parquet"])
def test_each_format_reads_back_as_simulate_with_the_values_set(model: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"run{suffix}"
    ok(invoke(["run", model, "--t", "3", "--dt", "0.25", *SET_ARGS, "-o", out], tmp_path))
    got = read_back(out)
    assert list(got) == COLUMNS
    expected = reference(model, 3.0, 0.25, setup=set_values)
    for name in COLUMNS:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)  # the same bits
    assert got["Osc.inputs.k"][0] == 2.5 and got["Osc.states.q[1]"][0] == 0.25
    default = reference(model, 3.0, 0.25)
    assert not np.allclose(default["Osc.states.q[0]"], got["Osc.states.q[0]"])  # --set changed the run


def test_stdout_csv_states_first_and_states_only(model: Path, tmp_path: Path) -> None:
    result = ok(invoke(["run", model, "--t", "1", "--dt", "0.5", "--states-only"], tmp_path))
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0] == COLUMNS[:4]
    assert [float(r[0]) for r in rows[1:]] == [0.0, 0.5, 1.0]


@pytest.mark.parametrize("integrator", ["rodas4", "BDF", "lsoda", "dop853"])
def test_integrators_and_tolerances_as_simulate(model: Path, tmp_path: Path, integrator: str) -> None:
    out = tmp_path / "run.csv"
    ok(invoke(["run", model, "--t", "2", "--dt", "0.5", "--integrator", integrator, "--rtol", "1e-9", "--atol",
               "1e-11", "-o", out], tmp_path))  # fmt: skip
    got = read_back(out)
    expected = reference(model, 2.0, 0.5, integrator=integrator, rtol=1e-9, atol=1e-11)
    for name in COLUMNS:
        np.testing.assert_allclose(got[name], expected[name], rtol=1e-12, atol=1e-14, err_msg=name)
    # and the solution itself: q = e^(-t/20) (cos wt + sin(wt)/(20 w)), w^2 = 1 - 1/400
    w = np.sqrt(1 - 1 / 400)
    time = got["time"]
    np.testing.assert_allclose(got["Osc.states.q[0]"], np.exp(-time / 20) * (np.cos(w * time) + np.sin(w * time) / (20 * w)),
                               rtol=1e-6, atol=1e-8)  # fmt: skip


def test_set_a_plain_attribute_and_an_element(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.csv"
    ok(invoke(["run", model, "--t", "1", "--dt", "0.5", "--set", "Osc.gain=3", "--set", "Osc.states.q[1]=0.5", "-o", out],
              tmp_path))  # fmt: skip
    got = read_back(out)

    def setup(systems) -> None:
        systems[0].gain = 3
        systems[0].states.q = np.array([1.0, 0.5])

    expected = reference(model, 1.0, 0.5, setup=setup)
    for name in COLUMNS:
        np.testing.assert_array_equal(got[name], expected[name], err_msg=name)
    np.testing.assert_allclose(got["Osc.states.phase"], 3 * got["time"], rtol=1e-12)


def test_arg_passes_build_arguments(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run.csv"
    ok(invoke(["run", model, "--t", "1", "--dt", "0.5", "--arg", "n=2", "--arg", "k=4.0", "-o", out], tmp_path))
    got = read_back(out)
    assert "Osc[1].states.q[0]" in got and "Osc[0].inputs.k" in got
    expected = reference(model, 1.0, 0.5, build_args={"n": 2, "k": 4.0})
    assert set(got) == set(expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name], values, err_msg=name)
    assert got["Osc[1].inputs.k"].tolist() == [4.0] * 3


def test_plot_is_a_png(model: Path, tmp_path: Path) -> None:
    png = tmp_path / "run.png"
    result = ok(invoke(["run", model, "--t", "2", "--dt", "0.1", "--plot", png, "-o", tmp_path / "r.csv"], tmp_path))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 5000
    assert "drew" in result.output


ERRORS = {
    "unknown name": (["--set", "Osc.inputs.kk=1"], "did you mean Osc.inputs.k"),
    "an output": (["--set", "Osc.outputs.energy=1"], "outputs are computed by the model"),
    "bad value": (["--set", "Osc.inputs.k=fast"], "'fast' is not a number"),
    "bad shape": (["--set", "Osc.states.q=[1, 2, 3]"], "shape (2,)"),
    "no equals": (["--set", "Osc.inputs.k"], "write --set NAME=VALUE"),
    "unknown suffix": (["-o", "run.txt"], "unknown file format '.txt'"),
    "plot suffix": (["--plot", "run.jpg"], "name a .png file"),
    "unknown build argument": (["--arg", "size=3"], "build() takes no argument 'size'; it takes: n=1, k=1.0"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_errors(model: Path, tmp_path: Path, case: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args, expected = ERRORS[case]
    result = invoke(["run", model, "--t", "1", "--dt", "0.5", *args], tmp_path)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and expected in result.output, result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.iterdir())  # nothing written


def test_a_missing_extra_names_the_pip_command(model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # import pyarrow now fails
    result = invoke(["run", model, "--t", "1", "--dt", "0.5", "-o", tmp_path / "r.parquet"], tmp_path)
    assert result.exit_code == 2
    assert 'pip install "dyngen[tables]"' in result.output and "pyarrow" in result.output
    monkeypatch.setitem(sys.modules, "pandas", None)
    rec = Recorder()
    with pytest.raises(ImportError, match=r'Recorder.to_dataframe\(\) needs pandas.*pip install "dyngen\[tables\]"'):
        rec.to_dataframe()


# -- Recorder tables ------------------------------------------------------------------


def test_recorder_to_dataframe_and_to_xarray(model: Path) -> None:
    sim = load_model(model, build_args={"n": 2})
    first, second = sim.systems
    rec = Recorder()
    rec.store(first, "states.q")
    rec.store(second, "outputs.energy", "E")
    sim.add_observer(rec)
    sim.simulate(1.0, 0.25)
    frame = rec.to_dataframe()
    assert list(frame.columns) == ["Osc[0].states.q[0]", "Osc[0].states.q[1]", "Osc[1].E"]
    assert frame.index.name == "time" and frame.index.tolist() == rec.results[first]["time"]
    np.testing.assert_array_equal(frame["Osc[0].states.q[1]"], [q[1] for q in rec.results[first]["states.q"]])
    np.testing.assert_array_equal(frame["Osc[1].E"], rec.results[second]["E"])
    ds = rec.to_xarray()
    assert ds["Osc[0].states.q"].dims == ("time", "Osc[0].states.q.dim_0")
    np.testing.assert_array_equal(ds["Osc[0].states.q"].values, np.array(rec.results[first]["states.q"]))
    np.testing.assert_array_equal(ds["time"].values, rec.results[second]["time"])


# -- progress -----------------------------------------------------------------------


def test_progress_segments_give_the_same_bits_and_report(model: Path, monkeypatch) -> None:
    monkeypatch.delenv("DYNGEN_PROGRESS", raising=False)  # a StringIO: the log form
    def run(segmented: bool) -> tuple[dict, str]:
        sim = load_model(model)
        rec = Recorder()
        rec.store(sim.systems[0], "states.q")
        rec.store(sim.systems[0], "outputs.energy")
        sim.add_observer(rec)
        stream = io.StringIO()
        if segmented:  # segments of one output interval each
            progress = RunProgress("osc", 5.0, stream=stream, delay=0.0, every=0.0)
            simulate_with_progress(sim, 5.0, 0.1, progress, segment_seconds=1e-12)
        else:
            sim.simulate(5.0, 0.1)
        return dict(rec.table().columns()), stream.getvalue()

    whole, _ = run(False)
    parts, text = run(True)
    assert list(parts) == list(whole)
    for name in whole:
        np.testing.assert_array_equal(parts[name], whole[name], err_msg=name)
    lines = text.splitlines()
    assert len(lines) > 40 and lines[-1].startswith("dyngen [osc] run: done, t = 5")
    assert "100% t = 5 of 5" in lines[-2]


# -- sweep ----------------------------------------------------------------------------

SWEEP = ["--t", "2", "--dt", "0.5", "--set", "Osc.inputs.k=1:3:3", "--set", "Osc.states.phase=0,0.5"]


def sweep_reference(model: Path):
    """The same grid by Simulation.ensemble in-process (Osc.inputs.c = 0.2 for every member)."""
    sim = load_model(model)
    sim.systems[0].inputs.c = 0.2
    return sim.ensemble(2.0, 0.5, grid={"Osc.inputs.k": np.linspace(1, 3, 3), "Osc.states.phase": [0.0, 0.5]})


@pytest.mark.parametrize("suffix", [".nc", ".parquet", ".csv"])
def test_sweep_formats_read_back_as_the_ensemble(model: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"sweep{suffix}"
    result = ok(invoke(["sweep", model, *SWEEP, "--set", "Osc.inputs.c=0.2", "-o", out], tmp_path))
    assert f"wrote 6 members x 5 samples to {out}" in result.output
    expected = sweep_reference(model)
    if suffix == ".nc":
        import xarray as xr

        with xr.open_dataset(out, engine="h5netcdf") as got:
            for name in ("Osc.states.q", "Osc.outputs.energy", "status", "Osc.inputs.k", "Osc.states.phase(t0)"):
                np.testing.assert_array_equal(got[name].values, expected[name].values, err_msg=name)
            assert list(got["Osc.inputs.k"].values) == [1, 1, 2, 2, 3, 3]
        return
    import pandas as pd

    frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert len(frame) == 6 * 5
    assert frame["member"].tolist() == [m for m in range(6) for _ in range(5)]
    np.testing.assert_array_equal(frame["Osc.inputs.k"].to_numpy(), np.repeat(expected["Osc.inputs.k"].values, 5))
    q = expected["Osc.states.q"].values.reshape(30, 2)
    np.testing.assert_array_equal(frame["Osc.states.q[1]"].to_numpy(), q[:, 1])
    np.testing.assert_array_equal(frame["Osc.outputs.energy"].to_numpy(), expected["Osc.outputs.energy"].values.ravel())
    # a member is the run simulate() makes with its values
    single = reference(model, 2.0, 0.5, setup=lambda s: (setattr(s[0].inputs, "k", 3.0), setattr(s[0].inputs, "c", 0.2),
                                                          setattr(s[0].states, "phase", 0.5)))  # fmt: skip
    last = frame[frame["member"] == 5]
    np.testing.assert_array_equal(last["Osc.states.q[0]"].to_numpy(), single["Osc.states.q[0]"])
    np.testing.assert_array_equal(last["Osc.states.phase"].to_numpy(), single["Osc.states.phase"])


@pytest.mark.parametrize("swept", [1, 2])
def test_sweep_plots(model: Path, tmp_path: Path, swept: int) -> None:
    png = tmp_path / "sweep.png"
    ok(invoke(["sweep", model, *SWEEP[: 4 + 2 * swept], "-o", tmp_path / "s.nc", "--plot", png], tmp_path))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


SWEEP_ERRORS = {
    "nothing swept": (["--set", "Osc.inputs.k=2"], "needs at least one swept name"),
    "bad range": (["--set", "Osc.inputs.k=1:3"], "write a range as START:STOP:COUNT"),
    "bad list": (["--set", "Osc.inputs.k=1,x"], "write a list of numbers as V1,V2"),
    "unknown swept name": (["--set", "Osc.inputs.kk=1:2:2"], "Osc.inputs.k"),
    "three names plotted": (["--set", "Osc.inputs.k=1,2", "--set", "Osc.inputs.c=1,2", "--set", "Osc.states.phase=0,1",
                             "--plot", "s.png"], "one or two names"),  # fmt: skip
    "unknown suffix": (["--set", "Osc.inputs.k=1,2", "-o", "s.xlsx"], "unknown file format '.xlsx'"),
}


@pytest.mark.parametrize("case", sorted(SWEEP_ERRORS))
def test_sweep_errors(model: Path, tmp_path: Path, case: str, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    args, expected = SWEEP_ERRORS[case]
    if "-o" not in args:
        args = [*args, "-o", "s.nc"]
    result = invoke(["sweep", model, "--t", "1", "--dt", "0.5", *args], tmp_path)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and expected in result.output, result.output
    assert not list(tmp_path.iterdir())


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_run_progress_forms(monkeypatch) -> None:
    """Silent under a second; then a bar redrawn in place (terminal) or a line every
    ``every`` seconds (elsewhere); DYNGEN_PROGRESS=0 silences both."""
    for setting, expected_form in (("1", "terminal"), ("", "log"), ("0", "off")):
        monkeypatch.setenv("DYNGEN_PROGRESS", setting)
        stream, clock = io.StringIO(), FakeClock()
        progress = RunProgress("m", 10.0, stream=stream, every=5.0, clock=clock)
        assert progress.form == expected_form
        clock.now = 0.5
        progress.update(2.0)
        assert stream.getvalue() == ""  # under a second
        for now, done in ((1.0, 4.0), (2.0, 5.0), (6.5, 8.0)):
            clock.now = now
            progress.update(done)
        progress.close()
        text = stream.getvalue()
        if expected_form == "terminal":
            assert text.count("\r") == 4 and text.endswith("\n")
            assert "[" + "#" * 12 + "." * 18 + "]  40% t = 4 of 10 (1.0 s, about 1.5 s left)" in text
        elif expected_form == "log":
            assert text.splitlines() == [
                "dyngen [m] run:  40% t = 4 of 10 (1.0 s, about 1.5 s left)",  # then nothing for 5 s
                "dyngen [m] run:  80% t = 8 of 10 (6.5 s, about 1.6 s left)",
                "dyngen [m] run: done, t = 10 in 6.5 s",
            ]
        else:
            assert text == ""


def test_sweep_record_threads_and_a_scipy_method(model: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.nc"
    ok(invoke(["sweep", model, *SWEEP[:6], "--record", "Osc.outputs.energy", "--threads", "1", "--integrator", "BDF",
               "--rtol", "1e-8", "-o", out], tmp_path))  # fmt: skip
    import xarray as xr

    with xr.open_dataset(out, engine="h5netcdf") as got:
        assert [n for n in got.data_vars if n.startswith("Osc.")] == ["Osc.outputs.energy"]
        single = reference(model, 2.0, 0.5, setup=lambda s: setattr(s[0].inputs, "k", 2.0), integrator="BDF", rtol=1e-8)
        np.testing.assert_array_equal(got["Osc.outputs.energy"].values[1], single["Osc.outputs.energy"])


@pytest.mark.slow
def test_sweep_on_a_local_dask_cluster(model: Path, tmp_path: Path) -> None:
    """--workers 2: a LocalCluster of 2 worker processes gives the threaded run's numbers."""
    out = tmp_path / "dask.nc"
    ok(invoke(["sweep", model, *SWEEP, "--set", "Osc.inputs.c=0.2", "--workers", "2", "-o", out], tmp_path))
    import xarray as xr

    expected = sweep_reference(model)
    with xr.open_dataset(out, engine="h5netcdf") as got:
        for name in ("Osc.states.q", "Osc.outputs.energy", "status", "Osc.inputs.k", "Osc.states.phase(t0)"):
            np.testing.assert_array_equal(got[name].values, expected[name].values, err_msg=name)


def test_sweep_dask_options_are_checked_before_running(model: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    both = invoke(["sweep", model, *SWEEP, "--workers", "2", "--scheduler", "tcp://127.0.0.1:1", "-o", "s.nc"], tmp_path)
    assert both.exit_code == 2 and "not both" in both.output
    threads = invoke(["sweep", model, *SWEEP, "--workers", "2", "--threads", "2", "-o", "s.nc"], tmp_path)
    assert threads.exit_code == 2 and "give one of them" in threads.output
    monkeypatch.setitem(sys.modules, "distributed", None)
    missing = invoke(["sweep", model, *SWEEP, "--workers", "2", "-o", "s.nc"], tmp_path)
    assert missing.exit_code == 2 and 'pip install "dyngen[dask]"' in missing.output
    assert not list(tmp_path.iterdir())


def test_sweep_a_plain_attribute(model: Path, tmp_path: Path) -> None:
    """Osc.gain (a plain attribute: d phase/dt = gain) is made a parameter and swept."""
    out = tmp_path / "s.nc"
    ok(invoke(["sweep", model, "--t", "2", "--dt", "0.5", "--set", "Osc.gain=0.5,1,2", "-o", out], tmp_path))
    import xarray as xr

    with xr.open_dataset(out, engine="h5netcdf") as got:
        np.testing.assert_array_equal(got["Osc.gain"].values, [0.5, 1.0, 2.0])
        time = got["time"].values
        np.testing.assert_allclose(got["Osc.states.phase"].values, np.outer([0.5, 1.0, 2.0], time), rtol=1e-12)
