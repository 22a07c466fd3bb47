"""Issue 16 (first part): no user file is overwritten, no edited cached module is run,
every meaningless argument is a clear error, and a half-ported model says what to change.

Each test failed on the code before these fixes (checked on main at a64337d).
"""

from __future__ import annotations

import os
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import dynode
from dyngen import Recorder, Simulation, System
from dyngen.cli import main as cli_main
from dyngen.errors import DyngenWarning, ModelError, OutputError
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


def test_build_never_writes_over_a_file_the_model_imports(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(PENDULUM_WITH_HELPER)
    (tmp_path / "helper.py").write_text(HELPER)
    for extra in ([], ["--force"]):
        refused(run_cli(["build", "model.py", "-o", ".", "--name", "helper", *extra], tmp_path), "helper.py", "imports")
    assert (tmp_path / "helper.py").read_text() == HELPER


def test_build_never_writes_over_a_file_dyngen_did_not_generate(tmp_path: Path) -> None:
    (tmp_path / "model.py").write_text(PENDULUM)
    (tmp_path / "out").mkdir()
    mine = tmp_path / "out" / "model.py"
    mine.write_text("# my notes, not a generated module\n")
    for extra in ([], ["--force"]):
        refused(run_cli(["build", "model.py", "-o", "out", *extra], tmp_path), str(Path("out") / "model.py"), "did not write")
    assert mine.read_text() == "# my notes, not a generated module\n"
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["model.py"]  # no temporary file left


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
