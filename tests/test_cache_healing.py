"""Issue 16 (cache part): a damaged cache entry heals itself, a cache folder that
cannot be written falls back to a private one, and library code is in the structure key.

The damage tests run the model in a new process (a process imports a module and
loads numba's cache once): one build is shared, and each test damages a copy of
its cache.  Each failed on the code before these fixes ("marshal data too short",
a raw ``UnpicklingError`` from numba).
"""

from __future__ import annotations

import errno
import json
import marshal
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from dyngen import CacheWarning, Simulation, System

MODEL = textwrap.dedent(
    """\
    import json

    from dyngen import Simulation, System


    class Decay(System):
        def __init__(self):
            super().__init__()
            self.inputs.k = 2.0
            self.states.x = 1.0
            self.ders.x = 0.0

        def do_step(self, time):
            self.ders.x = -self.inputs.k * self.states.x


    if __name__ == "__main__":
        sim = Simulation()
        sim.add_system(decay := Decay())
        result = sim.compile()
        sim.simulate(1.0, 0.5)
        print(json.dumps({"x": decay.states.x, "stages": sorted(result.timings), "path": str(result.path)}))
    """
)


def run(folder: Path, cache: Path) -> tuple[dict, str]:
    """Run the model in a new process; its report and its stderr."""
    env = dict(os.environ, DYNGEN_CACHE_DIR=str(cache), PYTHONWARNINGS="always")
    done = subprocess.run(
        [sys.executable, "model.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["x"] == pytest.approx(np.exp(-2.0), rel=1e-6)
    return report, done.stderr


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """The model's folder and a cache holding its module, bytecode and numba cache."""
    folder = tmp_path_factory.mktemp("healing")
    (folder / "model.py").write_text(MODEL)
    cache = folder / "pristine"
    report, _ = run(folder, cache)
    assert "trace" in report["stages"]
    return folder, cache


def damaged_copy(built: tuple[Path, Path], name: str) -> Path:
    folder, pristine = built
    cache = folder / name
    shutil.copytree(pristine, cache)
    return cache


def numba_file(cache: Path, pattern: str) -> Path:
    (found,) = (cache / "__pycache__").glob(pattern)
    return found


@pytest.mark.slow
def test_a_truncated_pyc_is_removed_and_written_again(built) -> None:
    cache = damaged_copy(built, "pyc")
    (pyc,) = (cache / "__pycache__").glob("*.pyc")
    whole = pyc.read_bytes()
    pyc.write_bytes(whole[: len(whole) // 2])
    report, stderr = run(built[0], cache)
    assert "CacheWarning" in stderr and pyc.name in stderr, stderr
    assert report["stages"] == ["load"]  # found by its key: nothing traced, only reloaded
    marshal.loads(pyc.read_bytes()[16:])  # written again, whole
    _, stderr = run(built[0], cache)  # healed: a third process has nothing to say
    assert "Warning" not in stderr, stderr


@pytest.mark.slow
def test_a_truncated_numba_index_is_removed_and_compiled_again(built) -> None:
    cache = damaged_copy(built, "nbi")
    # raw_rhs: the entry the shared integrators load (it holds rhs's code: rhs's own is not read)
    index = numba_file(cache, "*.raw_rhs-*.nbi")
    whole = index.read_bytes()
    index.write_bytes(whole[: len(whole) // 2])
    _, stderr = run(built[0], cache)
    assert "CacheWarning" in stderr and index.name in stderr and "raw_rhs" in stderr, stderr
    assert index.stat().st_size > len(whole) // 2  # written again by numba


@pytest.mark.slow
def test_garbage_in_a_numba_data_file_is_removed_and_compiled_again(built) -> None:
    cache = damaged_copy(built, "nbc")
    data = numba_file(cache, "*.observe-*.nbc")
    data.write_bytes(os.urandom(300))
    _, stderr = run(built[0], cache)
    assert "CacheWarning" in stderr and "observe" in stderr, stderr
    assert data.read_bytes()[:2] != b"" and data.stat().st_size != 300


# -- a cache folder that cannot be written: a private temporary cache, with a warning --


class Decay(System):
    def __init__(self) -> None:
        super().__init__()
        self.inputs.k = 2.0
        self.states.x = 1.0
        self.ders.x = 0.0

    def do_step(self, time: float) -> None:
        self.ders.x = -self.inputs.k * self.states.x


def simulate_in(cache: Path) -> tuple[Simulation, Decay]:
    sim = Simulation(cache_dir=cache)
    sim.add_system(decay := Decay())
    sim.simulate(1.0, 0.5)
    assert decay.states.x == pytest.approx(np.exp(-2.0), rel=1e-6)
    return sim, decay


def writes_are_refused(folder: Path) -> bool:
    try:
        (folder / "probe").write_text("")
    except OSError:
        return True
    (folder / "probe").unlink()
    return False


def fail_under(monkeypatch, folder: Path, code: int, where: str) -> None:
    """Writes under ``folder`` fail with ``code``: at the temporary file's creation
    (``mkstemp``, as a read-only folder does) or after its text was written (``fsync``,
    as a full disk does)."""
    inside = str(folder.resolve()) + os.sep

    def refuse() -> None:
        raise OSError(code, os.strerror(code))

    if where == "mkstemp":
        real = tempfile.mkstemp

        def mkstemp(*args, **kwargs):
            if str(Path(kwargs.get("dir") or os.getcwd()).resolve()).startswith(inside[:-1]):
                refuse()
            return real(*args, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    else:
        real_fsync = os.fsync

        def fsync(fd: int) -> None:
            if os.readlink(f"/proc/self/fd/{fd}").startswith(inside):
                refuse()
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync)


@pytest.mark.slow
def test_a_read_only_cache_falls_back_to_a_private_one(tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "read-only"
    cache.mkdir()
    cache.chmod(0o500)
    if not writes_are_refused(cache):  # root writes anyway: what a read-only file system says
        fail_under(monkeypatch, cache, errno.EROFS, "mkstemp")
    try:
        with pytest.warns(CacheWarning, match=f"module cache {cache} cannot be written .*(Read-only|Permission)"):
            sim, _ = simulate_in(cache)
        private = sim.compile().path.parent
        assert private != cache and private.name.startswith("dyngen-cache-")
        assert list(cache.iterdir()) == []
        with warnings.catch_warnings():  # the next model of this process goes there directly
            warnings.simplefilter("error", CacheWarning)
            again, _ = simulate_in(cache)
        assert again.compile().reused and again.compile().path.parent == private
    finally:
        cache.chmod(0o700)


def test_a_full_disk_leaves_nothing_half_written(tmp_path: Path, monkeypatch) -> None:
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to know which file a descriptor writes")
    cache = tmp_path / "full"
    fail_under(monkeypatch, cache, errno.ENOSPC, "fsync")
    sim = Simulation(cache_dir=cache)
    sim.add_system(Decay())
    with pytest.warns(CacheWarning, match=f"module cache {cache} cannot be written .*No space left on device"):
        result = sim.compile()  # (the read-only test runs a module of the private cache)
    assert result.path.parent != cache and result.module.N_STATES == 1
    assert list(cache.rglob("*")) == []  # the temporary file was removed


@pytest.mark.slow
def test_a_cache_that_is_a_file_falls_back_and_the_private_cache_is_removed_at_exit(built) -> None:
    folder = built[0]
    (folder / "a-file").write_text("not a folder\n")
    report, stderr = run(folder, folder / "a-file")
    assert "CacheWarning" in stderr and f"{folder / 'a-file'} is a file, not a folder" in stderr, stderr
    private = Path(report["path"]).parent
    assert private.name.startswith("dyngen-cache-") and not private.exists()
    assert (folder / "a-file").read_text() == "not a folder\n"


# -- the structure key covers the library code the traced functions call ----------------

LIBRARY = textwrap.dedent(
    """\
    class Helper:
        def gain(self):
            return 0.5
    """
)

LIBRARY_MODEL = textwrap.dedent(
    """\
    import json

    from dyngen import Simulation, System
    from helperlib import Helper


    class Decay(System):
        def __init__(self):
            super().__init__()
            self.helper = Helper()
            self.states.x = 1.0
            self.ders.x = 0.0

        def do_step(self, time):
            self.ders.x = -self.helper.gain() * self.states.x


    if __name__ == "__main__":
        sim = Simulation()
        sim.add_system(decay := Decay())
        result = sim.compile()
        sim.simulate(1.0, 0.5)
        print(json.dumps({"x": decay.states.x, "stages": sorted(result.timings)}))
    """
)


@pytest.mark.slow
def test_an_edited_method_of_an_installed_library_is_a_new_structure(tmp_path: Path) -> None:
    # an installed package: in the user site-packages of PYTHONUSERBASE (a library root)
    base = tmp_path / "userbase"
    code = "import site, sys; print(site.getusersitepackages())"
    env = dict(os.environ, PYTHONUSERBASE=str(base), DYNGEN_CACHE_DIR=str(tmp_path / "cache"))
    site_packages = Path(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip())
    (site_packages / "helperlib").mkdir(parents=True)
    library = site_packages / "helperlib" / "__init__.py"
    library.write_text(LIBRARY)
    env["PYTHONPATH"] = os.pathsep.join([str(site_packages), env.get("PYTHONPATH", "")])
    (tmp_path / "model.py").write_text(LIBRARY_MODEL)

    def run_it() -> dict:
        done = subprocess.run([sys.executable, "model.py"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    first = run_it()
    assert first["x"] == pytest.approx(np.exp(-0.5), rel=1e-6)
    assert run_it()["stages"] == ["load"]  # unchanged: found by its key, no trace
    library.write_text(LIBRARY.replace("0.5", "2.0 * 1.0"))  # (another size: Python's .pyc sees it too)
    second = run_it()
    assert "trace" in second["stages"]
    assert second["x"] == pytest.approx(np.exp(-2.0), rel=1e-6)


# -- memory: modules no Simulation holds are released -------------------------------------


class FastDecay(Decay):
    rate = 3.0

    def do_step(self, time: float) -> None:
        self.ders.x = -self.rate * self.states.x


@pytest.mark.slow
def test_a_module_no_simulation_holds_is_released(tmp_path: Path, monkeypatch) -> None:
    import gc
    import weakref

    from dyngen import cache

    monkeypatch.setattr(cache, "UNUSED_KEPT", 0)  # keep no unused module (default: a few)
    held, _ = simulate_in(tmp_path)  # compiled and run; kept
    dropped, _ = simulate_in(tmp_path / "other")  # the same model in another cache: another module
    module = weakref.ref(dropped.module)
    rhs = weakref.ref(dropped.module.rhs)
    del dropped
    gc.collect()
    other = Simulation(cache_dir=tmp_path)
    other.add_system(FastDecay())
    other.compile()  # loading a module releases the unused ones
    gc.collect()
    assert module() is None and rhs() is None  # with its numba dispatchers and compiled code
    assert not [name for name in sys.modules if name.startswith("dyngen_generated.")]
    # the held one keeps its compiled code, and runs
    assert held.module.raw_rhs.overloads  # (the entry the shared integrators run: rhs compiled into it)
    held.simulate(1.0, 0.5)
    assert held.systems[0].states.x == pytest.approx(np.exp(-4.0), rel=1e-6)
    # the released model again: loaded again (numba's on-disk cache), right answer
    simulate_in(tmp_path / "other")


def test_numba_failing_to_save_its_cache_warns_and_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    from dyngen.cache import import_file
    from dyngen.numba_cache import guard

    source = tmp_path / "square_mod.py"
    source.write_text("from numba import njit\n\n\n@njit(cache=True)\ndef square(x):\n    return x * x\n")
    module = import_file("dyngen_test_square_mod", source)
    guard(module)
    real = os.replace

    def replace(src, dst, *args, **kwargs):
        if str(dst).startswith(str(tmp_path)) and str(dst).endswith((".nbi", ".nbc")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)
    try:
        with pytest.warns(CacheWarning, match="could not save its compiled square.*No space left on device"):
            assert module.square(3.0) == 9.0
    finally:
        sys.modules.pop("dyngen_test_square_mod", None)
    assert [p.name for p in (tmp_path / "__pycache__").iterdir() if "nb" in p.suffix] == []
