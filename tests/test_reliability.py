"""Issue 16 (first part): no user file is overwritten, no edited cached module is run,
every meaningless argument is a clear error, and a half-ported model says what to change.

Each test failed on the code before these fixes (checked on main at a64337d).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dynode
from dyngen import Recorder, Simulation, System
from dyngen.cli import main as cli_main
from dyngen import ArgumentError, DyngenWarning, ModelError, OutputError
from dyngen.ir import BuildOptions
from dyngen.pipeline import build
from test_cli import PENDULUM, ok, run_cli

HELPER = "GRAVITY = 9.81\n"
PENDULUM_WITH_HELPER = PENDULUM.replace("import numpy as np\n", "import numpy as np\nfrom helper import GRAVITY\n", 1)


def refused(result, *needles: str) -> str:
    """The CLI run ended with `error: ...`, exit 2, no traceback; returns stderr."""
    assert result.returncode == 2, f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.stderr.startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr, result.stderr
    return result.stderr


# -- 1. data loss: dyngen build never writes over a file it did not generate ----------


@pytest.mark.slow
def test_build_into_the_model_folder_keeps_the_model_file(tmp_path: Path) -> None:
    model = tmp_path / "model.py"
    model.write_text(PENDULUM)
    stderr = refused(run_cli(["build", "model.py", "-o", "."], tmp_path), "model.py", "-o DIR", "--name")
    assert "model file" in stderr
    assert model.read_text() == PENDULUM
    # --force never overrides this, and nothing else was written there
    refused(run_cli(["build", "model.py", "-o", ".", "--force"], tmp_path), "model file")
    assert model.read_text() == PENDULUM
    assert sorted(p.name for p in tmp_path.iterdir() if p.name not in ("cache", "__pycache__")) == ["model.py"]


@pytest.mark.slow
def test_build_never_writes_over_a_file_the_model_imports(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(PENDULUM_WITH_HELPER)
    (tmp_path / "helper.py").write_text(HELPER)
    for extra in ([], ["--force"]):
        refused(run_cli(["build", "model.py", "-o", ".", "--name", "helper", *extra], tmp_path), "helper.py", "imports")
    assert (tmp_path / "helper.py").read_text() == HELPER


@pytest.mark.slow
def test_build_never_writes_over_a_file_dyngen_did_not_generate(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(PENDULUM)
    (tmp_path / "out").mkdir()
    mine = tmp_path / "out" / "model.py"
    mine.write_text("# my notes, not a generated module\n")
    for extra in ([], ["--force"]):
        refused(run_cli(["build", "model.py", "-o", "out", *extra], tmp_path), str(Path("out") / "model.py"), "did not write")
    assert mine.read_text() == "# my notes, not a generated module\n"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.py"]  # no temporary file left


@pytest.mark.slow
def test_build_replaces_another_models_module_only_with_force(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(PENDULUM)
    (tmp_path / "other.py").write_text(PENDULUM.replace("0.25", "0.5"))
    ok(run_cli(["build", "other.py", "-o", "out"], tmp_path))
    theirs = (tmp_path / "out" / "other.py").read_text()
    refused(run_cli(["build", "model.py", "-o", "out", "--name", "other"], tmp_path), "other.py", "--force")
    assert (tmp_path / "out" / "other.py").read_text() == theirs
    ok(run_cli(["build", "model.py", "-o", "out", "--name", "other", "--force"], tmp_path))
    assert "# model: model.py" in (tmp_path / "out" / "other.py").read_text()
    # its own module is rebuilt without --force
    ok(run_cli(["build", "model.py", "-o", "out", "--name", "other"], tmp_path))


class Decay(System):
    def __init__(self, k: float = 2.0) -> None:
        super().__init__()
        self.inputs.k = k
        self.states.x = 1.0
        self.ders.x = 0.0

    def do_step(self, time: float) -> None:
        self.ders.x = -self.inputs.k * self.states.x


def test_the_pipeline_refuses_a_foreign_file_before_tracing(tmp_path: Path) -> None:
    foreign = tmp_path / "decay.py"
    foreign.write_text("x = 1\n")
    with pytest.raises(OutputError, match="did not write"):
        build([Decay()], name="decay", source_root=str(tmp_path), model_file="<interactive>",
              options=BuildOptions(output_dir=str(tmp_path), force=True))  # fmt: skip
    assert foreign.read_text() == "x = 1\n"
    # a module built from no model file is rebuilt in place without force
    for _ in range(2):
        build([Decay()], name="decay2", source_root=str(tmp_path), model_file="<interactive>",
              options=BuildOptions(output_dir=str(tmp_path), always_render=True))  # fmt: skip


# -- 2. an edited cached module is rebuilt, not run --------------------------------------


def test_an_edited_cached_module_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    first = Simulation(cache_dir=tmp_path)
    first.add_system(Decay())
    path = first.compile().path
    original = path.read_text(encoding="utf-8")
    # an edit that keeps the header and the trailer hash lines intact
    tampered = original.replace("\nimport numpy as np\n", "\nimport numpy as np\nTAMPERED = True\n", 1)
    assert tampered != original
    path.write_text(tampered, encoding="utf-8")
    second = Simulation(cache_dir=tmp_path)
    second.add_system(Decay())
    with pytest.warns(DyngenWarning, match=f"{path.name}.*changed after dyngen wrote it.*rebuilding"):
        result = second.compile()
    assert result.path == path and not result.reused
    assert path.read_text(encoding="utf-8") == original
    assert not hasattr(result.module, "TAMPERED")
    # a third start finds it whole again: no warning
    third = Simulation(cache_dir=tmp_path)
    third.add_system(Decay())
    with warnings.catch_warnings():
        warnings.simplefilter("error", DyngenWarning)
        assert third.compile().path == path


def test_a_truncated_cached_module_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    first = Simulation(cache_dir=tmp_path)
    first.add_system(Decay())
    path = first.compile().path
    original = path.read_text(encoding="utf-8")
    path.write_text(original[: len(original) // 2], encoding="utf-8")
    second = Simulation(cache_dir=tmp_path)
    second.add_system(Decay())
    with pytest.warns(DyngenWarning, match=f"{path.name}.*truncated"):
        second.compile()
    assert path.read_text(encoding="utf-8") == original


# -- 3. bad arguments ------------------------------------------------------------------

BAD_RUNS = [
    (-1.0, 0.1, "negative"),
    (1.0, 0.0, "observer_dt = 0.0"),
    (1.0, -0.1, "observer_dt = -0.1"),
    (float("nan"), 0.1, "t .* is nan"),
    (1.0, float("nan"), "observer_dt .* is nan"),
    (float("inf"), 0.1, "t .* is inf"),
    (1.0, float("inf"), "observer_dt .* is inf"),
    ("1", 0.1, "must be a number"),
]


@pytest.mark.parametrize("recorder_only", [False, True], ids=["observer", "recorder-only"])
@pytest.mark.parametrize("t, observer_dt, message", BAD_RUNS)
def test_simulate_refuses_meaningless_times(t, observer_dt, message: str, recorder_only: bool) -> None:
    sim = Simulation()
    decay = Decay()
    sim.add_system(decay)
    seen: list[float] = []
    sim.add_observer(Recorder() if recorder_only else (lambda time, y: seen.append(time)))
    with pytest.raises(ValueError, match=f"simulate\\(\\): .*{message}") as caught:
        sim.simulate(t, observer_dt)
    assert isinstance(caught.value, ArgumentError)  # a DyngenError too: the CLI prints it without a traceback
    assert seen == [] and decay.states.x == 1.0 and sim._t == 0


class DynodeDecay(dynode.SystemInterface):
    def __init__(self) -> None:
        super().__init__()
        self.inputs.k = 2.0
        self.states.x = 1.0
        self.ders.x = 0.0

    def do_step(self, time: float) -> None:
        self.ders.x = -self.inputs.k * self.states.x


def test_observer_dt_longer_than_t_observes_the_start_as_dynode_does() -> None:
    runs = {}
    for name, simulation, system in (("dyngen", Simulation(), Decay()), ("dynode", dynode.Simulation(), DynodeDecay())):
        simulation.add_system(system)
        seen: list[tuple[float, float]] = []
        simulation.add_observer(lambda time, y, seen=seen: seen.append((time, float(y[0]))))
        reached = simulation.simulate(0.5, 1.0)
        runs[name] = (float(reached), seen, system.states.x)
    assert runs["dyngen"] == runs["dynode"] == (0.0, [(0.0, 1.0)], 1.0)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, needle",
    [(["--t", "1", "--dt", "0"], "observer_dt = 0.0"), (["--t", "nan", "--dt", "0.1"], "is nan")],
    ids=["dt-0", "t-nan"],
)
def test_cli_run_refuses_meaningless_times(tmp_path: Path, args: list[str], needle: str) -> None:
    (tmp_path / "model.py").write_text(PENDULUM)
    refused(run_cli(["run", "model.py", *args, "--csv", "out.csv"], tmp_path), needle)
    assert not (tmp_path / "out.csv").exists()


def _invoke(args: list[str], cwd: Path) -> object:
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli_main, args, catch_exceptions=True)
    finally:
        os.chdir(old)


def test_cli_output_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(PENDULUM)
    (tmp_path / "out").write_text("not a folder\n")
    result = _invoke(["build", "model.py", "-o", "out"], tmp_path)
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert result.stderr.startswith("error: cannot write the module to out") and "out is a file" in result.stderr
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert (tmp_path / "out").read_text() == "not a folder\n"


def test_cli_output_folder_that_cannot_be_written(tmp_path: Path, monkeypatch) -> None:
    """A read-only folder (as root, which this runs as, permissions do not stop writes:
    the refusal the system gives is simulated)."""
    import dyngen.write

    (tmp_path / "model.py").write_text(PENDULUM)
    (tmp_path / "out").mkdir()

    def read_only(*args, **kwargs):  # noqa: ANN002, ANN003
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(dyngen.write.tempfile, "mkstemp", read_only)
    result = _invoke(["build", "model.py", "-o", "out"], tmp_path)
    assert result.exit_code == 2, (result.exit_code, result.stderr, result.exception)
    assert result.stderr.startswith("error: cannot write out") and "Permission denied" in result.stderr, result.stderr
    assert "-o DIR" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.slow
def test_cli_csv_in_a_folder_that_is_a_file(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(PENDULUM)
    (tmp_path / "file").write_text("x\n")
    refused(run_cli(["run", "model.py", "--t", "0.1", "--dt", "0.1", "--csv", "file/x.csv"], tmp_path), "file/x.csv", "--csv FILE")
    assert (tmp_path / "file").read_text() == "x\n"


LONG = "V" + "x" * 319


@pytest.mark.slow
def test_cli_a_320_character_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(PENDULUM)
    refused(run_cli(["build", "model.py", "-o", "out", "--name", LONG], tmp_path), "--name is 320 characters")
    assert not (tmp_path / "out").exists()


def test_a_320_character_class_name_names_a_cache_file(tmp_path: Path) -> None:
    namespace: dict = {"System": System}
    exec(f"class {LONG}(System):\n    def __init__(self):\n        super().__init__()\n        self.states.x = 1.0\n"
         "        self.ders.x = 0.0\n    def do_step(self, t):\n        self.ders.x = -self.states.x\n", namespace)  # fmt: skip
    sim = Simulation(cache_dir=tmp_path)
    sim.add_system(namespace[LONG]())
    path = sim.compile().path
    assert path.parent == tmp_path and len(path.name) <= 120 and path.name.startswith("vxxxx")


# -- 4. a half-ported model ------------------------------------------------------------


def test_a_dynode_system_in_a_dyngen_simulation_says_what_to_change() -> None:
    sim = Simulation()
    with pytest.raises(ModelError, match="DynodeDecay is a dynode system.*import SystemInterface from dyngen instead of dynode"):
        sim.add_system(DynodeDecay())


def test_a_dynode_subsystem_says_which_system_it_is() -> None:
    parent = Decay()
    parent.child = DynodeDecay()
    parent.add_subsystem(parent.child)
    sim = Simulation()
    sim.add_system(parent)
    with pytest.raises(ModelError, match=r"Decay\.child is a dynode system.*test_reliability\.py:\d+.*from dyngen import SystemInterface"):
        sim.simulate(1.0, 0.1)


# -- 5. lsoda on a stiff model: dynode's forced first step is named, and can be overridden


class Robertson(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.c = np.array([1.0, 0.0, 0.0])
        self.inputs.k = np.array([0.04, 3e7, 1e4])

    def do_step(self, time: float) -> None:
        c1, c2, c3 = self.states.c
        k1, k2, k3 = self.inputs.k
        self.ders.c = np.array([-k1 * c1 + k3 * c2 * c3, k1 * c1 - k3 * c2 * c3 - k2 * c2**2, k2 * c2**2])


@pytest.mark.slow
def test_lsoda_failing_on_the_forced_first_step_says_so_and_first_step_overrides_it() -> None:
    from scipy.integrate import solve_ivp

    from dyngen import SolverError

    sim = Simulation()
    system = Robertson()
    sim.add_system(system)
    with pytest.raises(SolverError, match=r"first step of observer_dt = 10000.0 \(dynode forces.*first_step=0.0"):
        sim.simulate(1e5, 1e4, integrator="lsoda", rtol=1e-6, atol=1e-10)  # dynode fails here too
    sim, system = Simulation(), Robertson()
    sim.add_system(system)
    sim.simulate(1e5, 1e4, integrator="lsoda", rtol=1e-6, atol=1e-10, first_step=0.0)

    def rhs(t, c):  # noqa: ANN001, ANN202
        return [-0.04 * c[0] + 1e4 * c[1] * c[2], 0.04 * c[0] - 1e4 * c[1] * c[2] - 3e7 * c[1] ** 2, 3e7 * c[1] ** 2]

    reference = solve_ivp(rhs, (0, 1e5), [1, 0, 0], method="Radau", rtol=1e-12, atol=1e-16).y[:, -1]
    np.testing.assert_allclose(system.states.c, reference, rtol=1e-4, atol=1e-9)
