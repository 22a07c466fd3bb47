"""The ``dyngen`` command, driven in subprocesses on small model files.

Every subprocess gets its own ``DYNGEN_CACHE_DIR`` under ``tmp_path``, so nothing is
written to the user's cache or to the repository.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dynode_compare import build_simulation
from dyngen import Recorder
from dyngen.modelfile import load_model

# The console script installed next to this interpreter; else the click group itself.
_SCRIPT = Path(sys.executable).with_name("dyngen")
DYNGEN = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-c", "from dyngen.cli import main; main()"]


PENDULUM = textwrap.dedent(
    '''\
    """A damped, forced pendulum with an observed energy output."""

    import numpy as np

    from dyngen import Simulation, System


    class Pendulum(System):
        def __init__(self):
            super().__init__()
            self.inputs.g = 9.81
            self.inputs.damping = 0.25
            self.states.theta = 0.4
            self.states.omega = -0.3
            self.outputs.energy = 0.0

        def do_step(self, time):
            th = self.states.theta
            om = self.states.omega
            self.ders.theta = om
            self.ders.omega = -self.inputs.g * np.sin(th) - self.inputs.damping * om + 0.5 * np.cos(time)
            self.outputs.energy = 0.5 * om**2 + self.inputs.g * (1.0 - np.cos(th))


    def build():
        sim = Simulation()
        sim.add_system(Pendulum())
        return sim
    '''
)


def pendulum_rhs(t: float, y: np.ndarray, g: float = 9.81, damping: float = 0.25) -> np.ndarray:
    """The derivative of PENDULUM, by hand."""
    th, om = y
    return np.array([om, -g * np.sin(th) - damping * om + 0.5 * np.cos(t)])


def run_cli(args, tmp_path: Path, cwd: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, DYNGEN_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run(
        [*DYNGEN, *map(str, args)],
        cwd=cwd or tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture
def pendulum(tmp_path: Path) -> Path:
    path = tmp_path / "model.py"
    path.write_text(PENDULUM)
    return path


@pytest.fixture
def built(tmp_path: Path, pendulum: Path) -> Path:
    """``dyngen build model.py -o out``; returns out/model.py."""
    ok(run_cli(["build", pendulum.name, "-o", "out"], tmp_path))
    return tmp_path / "out" / "model.py"


# -- build --------------------------------------------------------------------------

STANDALONE_CHECK = textwrap.dedent(
    '''\
    import importlib.abc
    import importlib.util
    import json
    import sys

    BLOCKED = {"dyngen", "sympy", "scipy", "jinja2", "click"}


    class Block(importlib.abc.MetaPathFinder):
        """Make the compiler's own dependencies unimportable: only numpy and numba remain."""

        def find_spec(self, name, path, target=None):
            if name.partition(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"blocked: {name}", name=name)
            return None


    sys.meta_path.insert(0, Block())
    import numpy as np

    spec = importlib.util.spec_from_file_location("standalone_model", sys.argv[1])
    m = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(m)

    n = m.N_STATES
    rng = np.random.default_rng(1)
    p = m.DEFAULT_PARAMETERS.copy()
    report = {"points": [], "blocked_loaded": sorted(k for k in sys.modules if k.partition(".")[0] in BLOCKED)}
    for _ in range(5):
        t = float(rng.uniform(0.0, 3.0))
        y = m.DEFAULT_STATES + rng.normal(0.0, 0.7, n)
        dy = np.empty(n)
        m.rhs(t, y, p, dy)
        J = np.empty((n, n))
        m.jac(t, y, p, J)
        fd = np.empty((n, n))
        for j in range(n):
            h = 1e-6 * max(1.0, abs(y[j]))
            up, down = y.copy(), y.copy()
            up[j] += h
            down[j] -= h
            a, b = np.empty(n), np.empty(n)
            m.rhs(t, up, p, a)
            m.rhs(t, down, p, b)
            fd[:, j] = (a - b) / (2 * h)
        out = np.empty(m.N_OBSERVED)
        m.observe(t, y, p, out)
        report["points"].append(
            {"t": t, "y": y.tolist(), "dy": dy.tolist(), "J": J.tolist(), "fd": fd.tolist(), "out": out.tolist()}
        )
    report["observed_names"] = list(m.OBSERVED_NAMES)
    report["state_names"] = list(m.STATE_NAMES)
    report["parameters"] = p.tolist()
    print(json.dumps(report))
    '''
)


@pytest.mark.slow
def test_build_writes_a_standalone_module(tmp_path: Path, built: Path) -> None:
    assert built.is_file()
    checker = tmp_path / "check_standalone.py"
    checker.write_text(STANDALONE_CHECK)
    # -I: no user site, no PYTHON* variables, no script/cwd on sys.path.
    result = subprocess.run(
        [sys.executable, "-I", str(checker), str(built)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "numba-cache")),
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["blocked_loaded"] == []
    assert report["state_names"] == ["Pendulum.states.theta", "Pendulum.states.omega"]
    assert report["parameters"] == [9.81, 0.25]
    names = report["observed_names"]
    for point in report["points"]:
        t, y = point["t"], np.array(point["y"])
        expected = pendulum_rhs(t, y)
        np.testing.assert_allclose(point["dy"], expected, rtol=1e-13, atol=1e-13)
        np.testing.assert_allclose(point["J"], point["fd"], rtol=1e-6, atol=1e-6)
        out = dict(zip(names, point["out"]))
        assert out["Pendulum.inputs.g"] == 9.81
        assert out["Pendulum.inputs.damping"] == 0.25
        assert out["Pendulum.outputs.energy"] == pytest.approx(0.5 * y[1] ** 2 + 9.81 * (1 - np.cos(y[0])), rel=1e-13)
        assert [out["Pendulum.ders.theta"], out["Pendulum.ders.omega"]] == pytest.approx(expected, rel=1e-13)


@pytest.mark.slow
def test_build_twice_leaves_the_file_untouched(tmp_path: Path, pendulum: Path, built: Path) -> None:
    before = built.stat()
    text = built.read_text()
    ok(run_cli(["build", pendulum.name, "-o", "out"], tmp_path))
    after = built.stat()
    assert after.st_mtime_ns == before.st_mtime_ns
    assert after.st_ino == before.st_ino
    assert built.read_text() == text
    # A real change is written (and only the module and numba's cache are in out/).
    pendulum.write_text(PENDULUM.replace("0.5 * np.cos(time)", "0.75 * np.cos(time)"))
    ok(run_cli(["build", pendulum.name, "-o", "out"], tmp_path))
    assert "0.75" in built.read_text() and built.read_text() != text
    assert sorted(p.name for p in built.parent.iterdir() if p.name != "__pycache__") == ["model.py"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "stage, marker",
    [("spec", "ModelSpec model"), ("flat", "FlatModel model"), ("kernel", "Kernel model"), ("source", None)],
)
def test_build_emit_prints_the_stage(tmp_path: Path, pendulum: Path, stage: str, marker: str | None) -> None:
    result = ok(run_cli(["build", pendulum.name, "-o", "out", "--emit", stage], tmp_path))
    written = (tmp_path / "out" / "model.py").read_text()
    assert "wrote" in result.stderr and "wrote" not in result.stdout  # stdout is only the stage
    if marker is None:
        assert result.stdout.rstrip("\n") == written.rstrip("\n")
    else:
        assert result.stdout.startswith(marker)
        assert "Pendulum" in result.stdout
        assert "@njit" not in result.stdout  # an intermediate form, not the module
    if stage == "flat":
        assert "y[0:1] Pendulum.states.theta" in result.stdout
        assert "p[0:1] Pendulum.inputs.g" in result.stdout
    if stage == "kernel":
        assert "def rhs(t, y, p, dy):" in result.stdout and "def observe(t, y, p, out):" in result.stdout
        assert "def jac" in result.stdout


@pytest.mark.slow
def test_build_timings(tmp_path: Path, pendulum: Path) -> None:
    result = ok(run_cli(["build", pendulum.name, "-o", "out", "--timings"], tmp_path))
    lines = result.stdout.splitlines()
    assert lines[0].startswith("wrote ")
    timed = {line.split()[0]: float(line.split()[1]) for line in lines[1:] if line.rstrip().endswith(" ms")}
    assert {"trace", "flatten", "lower", "render", "write"} <= set(timed)
    assert all(v >= 0 for v in timed.values())


@pytest.mark.slow
def test_show_prints_what_build_writes(tmp_path: Path, pendulum: Path, built: Path) -> None:
    shown = ok(run_cli(["show", pendulum.name], tmp_path)).stdout
    assert shown == built.read_text()
    # show writes nothing: no default generated/ folder appears
    assert not (tmp_path / "generated").exists()


# -- run and verify -----------------------------------------------------------------


@pytest.mark.slow
def test_run_csv_matches_simulate_with_a_recorder(tmp_path: Path, pendulum: Path, monkeypatch) -> None:
    csv_file = tmp_path / "states.csv"
    result = ok(run_cli(["run", pendulum.name, "--t", "2", "--dt", "0.25", "--csv", csv_file.name], tmp_path))
    assert result.stdout == ""
    with csv_file.open(newline="") as handle:
        rows = list(csv.reader(handle))
    header, values = rows[0], np.array(rows[1:], dtype=float)[:, :3]
    # the states first (what run wrote before it wrote inputs and outputs), then the inputs and outputs
    assert header == ["time", "Pendulum.states.theta", "Pendulum.states.omega", "Pendulum.inputs.g",
                      "Pendulum.inputs.damping", "Pendulum.outputs.energy"]  # fmt: skip

    monkeypatch.setenv("DYNGEN_CACHE_DIR", str(tmp_path / "cache-inprocess"))
    sim = load_model(pendulum)
    system = sim.systems[0]
    rec = Recorder()
    rec.store(system, "states.theta")
    rec.store(system, "states.omega")
    sim.add_observer(rec)
    sim.simulate(2, 0.25)
    results = rec.results[system]
    assert values.shape == (9, 3)
    np.testing.assert_allclose(values[:, 0], results["time"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(values[:, 1], results["states.theta"], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(values[:, 2], results["states.omega"], rtol=1e-10, atol=1e-12)
    assert values[0, 1:].tolist() == [0.4, -0.3]


@pytest.mark.slow
def test_run_to_stdout(tmp_path: Path, pendulum: Path) -> None:
    result = ok(run_cli(["run", pendulum.name, "--t", "1", "--dt", "0.5"], tmp_path))
    rows = list(csv.reader(result.stdout.splitlines()))
    assert rows[0][:3] == ["time", "Pendulum.states.theta", "Pendulum.states.omega"]
    assert [float(r[0]) for r in rows[1:]] == [0.0, 0.5, 1.0]


@pytest.mark.slow
def test_verify_passes_on_a_good_model(tmp_path: Path, pendulum: Path) -> None:
    result = ok(run_cli(["verify", pendulum.name, "--t", "2", "--dt", "0.1"], tmp_path))
    assert "max abs diff" in result.stdout and "max rel diff" in result.stdout
    assert "states:" in result.stdout and "signals:" in result.stdout
    assert "OK: largest relative difference" in result.stdout


@pytest.mark.slow
def test_run_and_verify_give_dynodes_vector_where_the_module_packs_states(tmp_path: Path) -> None:
    """The ring's module packs the states of its 8 oscillators (x of every one, then
    y); ``run`` still writes dynode's vector in dynode's order, and ``verify`` compares
    the compiled run with the interpreted one state by state."""
    ring = Path(__file__).resolve().parent.parent / "examples" / "oscillator_ring.py"
    csv_file = tmp_path / "ring.csv"
    ok(run_cli(["run", ring, "--t", "2", "--dt", "0.5", "--csv", csv_file.name], tmp_path))
    with csv_file.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][:17] == ["time", *(f"RingOscillator[{k}].states.{key}" for k in range(8) for key in ("x", "y"))]
    rows = [row[:17] for row in rows]
    dynode_sim = build_simulation(ring, "dynode")
    observed: list[list[float]] = []
    dynode_sim.add_observer(lambda t, y: observed.append([t, *y]) and False)
    dynode_sim.simulate(2, 0.5)
    np.testing.assert_allclose(np.array(rows[1:], dtype=float), np.array(observed), rtol=1e-8, atol=1e-10)

    result = ok(run_cli(["verify", ring, "--t", "2", "--dt", "0.1"], tmp_path))
    assert "OK: largest relative difference" in result.stdout


@pytest.mark.slow
def test_run_sets_a_parameter_writes_parquet_and_plots(tmp_path: Path, pendulum: Path) -> None:
    """The console script end to end: rodas4 with --set and --rtol/--atol, a Parquet file
    and a PNG; the states equal scipy's solution of the pendulum with g = 3."""
    pd = pytest.importorskip("pandas")
    from scipy.integrate import solve_ivp

    result = ok(run_cli(["run", pendulum.name, "--t", "2", "--dt", "0.25", "--integrator", "rodas4", "--rtol", "1e-10",
                         "--atol", "1e-12", "--set", "Pendulum.inputs.g=3", "-o", "out.parquet", "--plot", "out.png"],
                        tmp_path))  # fmt: skip
    assert "wrote 9 rows x 6 columns to out.parquet" in result.stderr
    frame = pd.read_parquet(tmp_path / "out.parquet")
    assert frame["Pendulum.inputs.g"].tolist() == [3.0] * 9
    times = frame.index.to_numpy()
    exact = solve_ivp(lambda t, y: pendulum_rhs(t, y, g=3.0), (0, 2), [0.4, -0.3], t_eval=times, rtol=1e-12, atol=1e-14,
                      method="DOP853")  # fmt: skip
    np.testing.assert_allclose(frame["Pendulum.states.theta"], exact.y[0], rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(frame["Pendulum.states.omega"], exact.y[1], rtol=1e-7, atol=1e-9)
    assert (tmp_path / "out.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_sweep_writes_csv_of_every_member(tmp_path: Path, pendulum: Path) -> None:
    """The console script: a sweep over g and the damping, in long form; every member
    equals scipy's solution with its values."""
    from scipy.integrate import solve_ivp

    result = ok(run_cli(["sweep", pendulum.name, "--t", "1", "--dt", "0.25", "--set", "Pendulum.inputs.g=1:9:3",
                         "--set", "Pendulum.inputs.damping=0,0.5", "--rtol", "1e-10", "--atol", "1e-12",
                         "-o", "sweep.csv"], tmp_path))  # fmt: skip
    assert "wrote 6 members x 5 samples to sweep.csv" in result.stderr
    with (tmp_path / "sweep.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 30
    for member in range(6):
        mine = [r for r in rows if int(r["member"]) == member]
        g, damping = float(mine[0]["Pendulum.inputs.g"]), float(mine[0]["Pendulum.inputs.damping"])
        assert (g, damping) == ([1.0, 5.0, 9.0][member // 2], [0.0, 0.5][member % 2])  # the first name slowest
        times = [float(r["time"]) for r in mine]
        exact = solve_ivp(lambda t, y: pendulum_rhs(t, y, g, damping), (0, 1), [0.4, -0.3], t_eval=times,
                          rtol=1e-12, atol=1e-14, method="DOP853")  # fmt: skip
        np.testing.assert_allclose([float(r["Pendulum.states.theta"]) for r in mine], exact.y[0], rtol=1e-7, atol=1e-9)
        assert all(r["status"] == "1" and r["reason"] == "" for r in mine)


# -- errors -------------------------------------------------------------------------

BAD_IF = textwrap.dedent(
    """\
    from dyngen import Simulation, System


    class Bad(System):
        def __init__(self):
            super().__init__()
            self.states.x = 1.0

        def do_step(self, time):
            x = self.states.x
            while x > 1.0:
                x = x / 2
            self.ders.x = -x


    def build():
        sim = Simulation()
        sim.add_system(Bad())
        return sim
    """
)

NO_BUILD = "from dyngen import System\n\nX = 1\n"

BUILD_RAISES = textwrap.dedent(
    """\
    from dyngen import Simulation


    def build():
        sim = Simulation()
        raise ValueError("no such configuration: 'wide'")
    """
)


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), start=1) if needle in line)


ERROR_CASES = {
    # name: (file contents or None for a missing file, expected text, needle for the line)
    "python_if": (BAD_IF, "`while` loop whose condition depends on a traced value", "while x > 1.0"),
    "no_build": (NO_BUILD, "must define build()", None),
    "build_raises": (BUILD_RAISES, "ValueError: no such configuration", "raise ValueError"),
    "missing_file": (None, "no such model file", None),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, command",
    [(case, "build") for case in sorted(ERROR_CASES)]
    + [("python_if", "show"), ("python_if", "run"), ("build_raises", "verify"), ("missing_file", "run")],
)
def test_errors_exit_2_without_traceback(tmp_path: Path, case: str, command: str) -> None:
    text, expected, needle = ERROR_CASES[case]
    model = tmp_path / f"{case}.py"
    if text is not None:
        model.write_text(text)
    args = {
        "build": ["build", model.name, "-o", "out"],
        "show": ["show", model.name],
        "run": ["run", model.name, "--t", "1", "--dt", "0.5", "--csv", "states.csv"],
        "verify": ["verify", model.name],
    }[command]
    result = run_cli(args, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    assert result.stderr.startswith("error: "), result.stderr
    assert expected in result.stderr
    assert model.name in result.stderr
    if needle is not None:
        assert f"{model.name}:{_line_of(text, needle)}" in result.stderr
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    assert not (tmp_path / "states.csv").exists()
    assert not (tmp_path / "generated").exists()
    if command == "show":
        assert result.stdout == ""


@pytest.mark.slow
def test_run_model_without_states_is_a_clean_error(tmp_path: Path) -> None:
    model = tmp_path / "stateless.py"
    model.write_text(
        textwrap.dedent(
            """\
            from dyngen import System


            class Gain(System):
                def __init__(self):
                    super().__init__()
                    self.inputs.u = 1.0
                    self.outputs.y = 0.0

                def do_step(self, time):
                    self.outputs.y = 2.0 * self.inputs.u


            def build():
                return Gain()
            """
        )
    )
    result = run_cli(["run", model.name, "--t", "1", "--dt", "0.5"], tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")


@pytest.mark.slow
def test_build_respects_the_umask(tmp_path: Path, pendulum: Path) -> None:
    env = dict(os.environ, DYNGEN_CACHE_DIR=str(tmp_path / "cache"))
    subprocess.run(
        [sys.executable, "-c", "import os; os.umask(0o022); from dyngen.cli import main; main()",
         "build", pendulum.name, "-o", "out"],
        cwd=tmp_path, env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert (tmp_path / "out" / "model.py").stat().st_mode & 0o777 == 0o644


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = ok(run_cli(["--help"], tmp_path))
    for command in ("build", "show", "run", "verify", "sweep"):
        assert command in result.stdout
