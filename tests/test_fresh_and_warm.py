"""What makes a fresh Simulation and a warm start cheap must not make them stale.

A fresh ``Simulation`` of a model built before in the process finds its module by the
structure key without tracing; the key remembers file digests (by size, mtime in ns
and inode) and the keys of classes and functions (while every object they were
computed from is the same).  Builds are counted: an edit between two runs in one
process is a build, an unchanged model is none.  A warm start (a new process, a
cached model) imports neither sympy nor jinja2.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import dyngen.pipeline as pipeline

MODEL = textwrap.dedent(
    """\
    from dyngen import Simulation, System
    import fresh_helpers

    SCALE = 1.0  # a module global that do_step reads


    class Decay(System):
        bias = 0.0  # a class attribute, read as a constant

        def __init__(self):
            super().__init__()
            self.states.x = 1.0
            self.helper = fresh_helpers.Rate()

        def do_step(self, time):
            self.ders.x = -SCALE * self.helper.rate() * self.states.x + self.bias


    def simulation():
        sim, decay = Simulation(), Decay()
        sim.add_system(decay)
        return sim, decay
    """
)
# The method of a helper object's class: only the digest of this file's text sees it.
HELPERS = "class Rate:\n    gain = 0.5\n\n    def rate(self):\n        return self.gain\n"


@pytest.fixture()
def counted_builds(monkeypatch) -> list[str]:
    """The names of the models built (traced and rendered, or found by their text) from now on."""
    built: list[str] = []
    original = pipeline._build

    def counting(systems, **kwargs):
        built.append(kwargs["name"])
        return original(systems, **kwargs)

    monkeypatch.setattr(pipeline, "_build", counting)
    return built


@pytest.fixture()
def model(tmp_path: Path, monkeypatch):
    """The model and its helper module, imported from tmp_path (no bytecode: an edit
    within the same second, of the same size, must reach the reloaded module)."""
    (tmp_path / "fresh_model.py").write_text(MODEL)
    (tmp_path / "fresh_helpers.py").write_text(HELPERS)
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    module = importlib.import_module("fresh_model")
    yield module, tmp_path
    for name in ("fresh_model", "fresh_helpers"):
        sys.modules.pop(name, None)


def _final_x(module) -> float:
    sim, decay = module.simulation()
    sim.simulate(1.0, 0.5, rtol=1e-10, atol=1e-12)
    return float(decay.states.x)


def test_an_edit_between_two_runs_in_one_process_is_rebuilt_and_an_unchanged_model_is_not(
    model, counted_builds: list[str]
) -> None:
    module, folder = model
    assert _final_x(module) == pytest.approx(np.exp(-0.5), rel=1e-8)
    assert len(counted_builds) == 1
    assert _final_x(module) == pytest.approx(np.exp(-0.5), rel=1e-8)  # a fresh Simulation: no build
    assert len(counted_builds) == 1

    helpers = folder / "fresh_helpers.py"
    before = helpers.stat()
    helpers.write_text(HELPERS.replace("gain = 0.5", "gain = 2.0"))  # same size
    second = before.st_mtime_ns // 10**9 * 10**9
    os.utime(helpers, ns=(second + 500_000_000, second + 500_000_000))  # in the same second as before
    assert helpers.stat().st_size == before.st_size
    if helpers.stat().st_mtime_ns == before.st_mtime_ns and helpers.stat().st_ino == before.st_ino:
        os.utime(helpers, ns=(second + 250_000_000, second + 250_000_000))
    importlib.reload(sys.modules["fresh_helpers"])
    assert _final_x(module) == pytest.approx(np.exp(-2.0), rel=1e-8)  # seen: rebuilt
    assert len(counted_builds) == 2

    os.utime(helpers)  # touched, text unchanged: the same module, no build
    assert _final_x(module) == pytest.approx(np.exp(-2.0), rel=1e-8)
    assert len(counted_builds) == 2


def test_a_fresh_simulation_sees_a_class_attribute_or_global_edited_since_the_last(
    model, counted_builds: list[str]
) -> None:
    module, _ = model
    assert _final_x(module) == pytest.approx(np.exp(-0.5), rel=1e-8)
    module.Decay.bias = 0.25  # the remembered class key must not be used now
    expected = 0.5 + 0.5 * np.exp(-0.5)  # x' = -0.5 x + 0.25
    assert _final_x(module) == pytest.approx(expected, rel=1e-8)
    module.Decay.bias = 0.0
    module.SCALE = 2.0  # a global of do_step
    assert _final_x(module) == pytest.approx(np.exp(-1.0), rel=1e-8)
    module.SCALE = 1.0  # back: the first module again, found without a build
    builds = len(counted_builds)
    assert _final_x(module) == pytest.approx(np.exp(-0.5), rel=1e-8)
    assert len(counted_builds) == builds == 3


def _vanderpol_pair(x0: list[float], t: float) -> np.ndarray:
    """examples/coupled_vanderpol.py's equations by scipy (tight tolerances): the final
    (x1, y1, x2, y2) from (x1, y1, x2, y2) = ``x0``."""
    from scipy.integrate import solve_ivp

    def rhs(time: float, y: np.ndarray) -> list[float]:
        x1, y1, x2, y2 = y
        forcing = 1.2 * np.sin(0.8 * time)
        return [y1, 1.0 * (1 - x1**2) * y1 - x1 + forcing, y2, 0.5 * (1 - x2**2) * y2 - x2 + x1]

    return solve_ivp(rhs, (0.0, t), x0, method="DOP853", rtol=1e-12, atol=1e-12).y[:, -1]


def test_fresh_simulations_bound_by_a_known_plan_run_and_reset_their_own_systems(
    counted_builds: list[str], monkeypatch, request
) -> None:
    """From the second Simulation of a tree structure on, the module is bound without
    walking the tree (runtime/model.py's plan) and found without a build: each must
    still read, write and reset its own systems."""
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parent.parent / "examples"))
    if "coupled_vanderpol" not in sys.modules:  # imported here: removed again after the test
        request.addfinalizer(lambda: sys.modules.pop("coupled_vanderpol", None))
    example = importlib.import_module("coupled_vanderpol")

    def final(sim) -> np.ndarray:
        return np.array([float(s.states[k][0]) for s in sim.systems for k in ("x", "y")])

    first = example.build()
    first.simulate(3.0, 0.5, rtol=1e-11, atol=1e-12)
    builds = len(counted_builds)
    sims = [example.build() for _ in range(3)]
    sims[2].systems[1].states.x = 0.3  # another initial value: the same structure
    for sim in sims:
        sim.simulate(3.0, 0.5, rtol=1e-11, atol=1e-12)
    assert len(counted_builds) == builds  # found, not built
    np.testing.assert_allclose(final(first), _vanderpol_pair([2.0, 0.0, 0.0, 1.0], 3.0), rtol=1e-8, atol=1e-9)
    assert np.array_equal(final(sims[0]), final(first)) and np.array_equal(final(sims[1]), final(first))
    np.testing.assert_allclose(final(sims[2]), _vanderpol_pair([2.0, 0.0, 0.3, 1.0], 3.0), rtol=1e-8, atol=1e-9)
    assert float(sims[2].systems[0].outputs.x) == final(sims[2])[0]  # written back to its own systems
    sims[2].reset()
    assert list(final(sims[2])) == [2.0, 0.0, 0.3, 1.0] and final(first)[2] != 0.3
    sims[2].simulate(3.0, 0.5, rtol=1e-11, atol=1e-12)  # stepping on from the reset
    np.testing.assert_allclose(final(sims[2]), _vanderpol_pair([2.0, 0.0, 0.3, 1.0], 3.0), rtol=1e-8, atol=1e-9)


WARM_SCRIPT = textwrap.dedent(
    """\
    import json, sys
    import dyngen
    after_import = sorted(m for m in ("sympy", "jinja2", "scipy.integrate") if m in sys.modules)
    from fresh_model import simulation
    sim, decay = simulation()
    result = sim.compile()
    sim.simulate(1.0, 0.5)
    print(json.dumps({"after_import": after_import, "stages": sorted(result.timings),
                      "loaded": sorted(m for m in ("sympy", "jinja2", "scipy.integrate") if m in sys.modules)}))
    """
)


def test_a_warm_start_imports_neither_sympy_nor_jinja2(tmp_path: Path) -> None:
    (tmp_path / "fresh_model.py").write_text(MODEL)
    (tmp_path / "fresh_helpers.py").write_text(HELPERS)
    (tmp_path / "run.py").write_text(WARM_SCRIPT)
    env = dict(os.environ, DYNGEN_CACHE_DIR=str(tmp_path / "cache"))

    def run() -> dict:
        done = subprocess.run([sys.executable, "run.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.splitlines()[-1])

    cold = run()
    assert "trace" in cold["stages"] and "sympy" in cold["loaded"]  # the build needs it
    warm = run()
    assert warm["stages"] == ["load"]
    assert warm["after_import"] == [] and warm["loaded"] == []


def _edit_in_the_same_second(path: Path, old: str, new: str) -> None:
    """Write ``path`` with ``old`` replaced by ``new`` (same size), its modification time
    in the same second as before: only the size, time in ns and inode can tell."""
    before = path.stat()
    path.write_text(path.read_text().replace(old, new))
    assert path.stat().st_size == before.st_size
    second = before.st_mtime_ns // 10**9 * 10**9
    for offset in (500_000_000, 250_000_000):
        os.utime(path, ns=(second + offset, second + offset))
        if path.stat().st_mtime_ns != before.st_mtime_ns or path.stat().st_ino != before.st_ino:
            return


def test_a_module_imported_after_the_first_build_changes_the_watched_files(
    model, counted_builds: list[str]
) -> None:
    """The user's files are found again when sys.modules changes (and stat'ed by their
    encoded paths, made with them): a module of the user's imported later, edited
    and reloaded, is seen, and so is an edit of a file watched before."""
    module, folder = model
    assert _final_x(module) == pytest.approx(np.exp(-0.5), rel=1e-8)
    (folder / "late_helpers.py").write_text("FACTOR = 1.0\n")
    importlib.invalidate_caches()
    late = importlib.import_module("late_helpers")
    try:
        assert _final_x(module) == pytest.approx(np.exp(-0.5), rel=1e-8)  # a new file of the user's: a new key
        builds = len(counted_builds)
        _edit_in_the_same_second(folder / "late_helpers.py", "1.0", "2.0")
        importlib.reload(late)
        assert _final_x(module) == pytest.approx(np.exp(-0.5), rel=1e-8)
        assert len(counted_builds) == builds + 1  # its text is in the key: found by its text, traced again
        _edit_in_the_same_second(folder / "fresh_helpers.py", "gain = 0.5", "gain = 2.0")
        importlib.reload(sys.modules["fresh_helpers"])
        assert _final_x(module) == pytest.approx(np.exp(-2.0), rel=1e-8)  # seen: rebuilt
        assert len(counted_builds) == builds + 2
        assert _final_x(module) == pytest.approx(np.exp(-2.0), rel=1e-8)  # unchanged: no build
        assert len(counted_builds) == builds + 2
    finally:
        sys.modules.pop("late_helpers", None)


def test_the_settings_of_each_fresh_simulation_make_its_key(model, counted_builds: list[str]) -> None:
    """A Simulation's name, model file and options are part of its structure key
    (remembered per absolute model file): each fresh Simulation gets its own."""
    module, folder = model

    def compiled(**settings):
        sim, _ = module.simulation()
        for name, value in settings.items():
            setattr(sim, name, value)
        return sim.compile()

    first = compiled()
    builds = len(counted_builds)
    assert compiled().module is first.module and len(counted_builds) == builds
    renamed = compiled(model_name="renamed_decay")
    assert renamed.module is not first.module and renamed.module.__name__ != first.module.__name__
    compiled(model_file=str(folder / "fresh_helpers.py"))  # another (absolute) model file: another key
    assert len(counted_builds) == builds + 2
    assert compiled(model_name="renamed_decay").module is renamed.module and compiled().module is first.module
    assert len(counted_builds) == builds + 2
