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


def test_a_truncated_numba_index_is_removed_and_compiled_again(built) -> None:
    cache = damaged_copy(built, "nbi")
    index = numba_file(cache, "*.run_dopri5-*.nbi")
    whole = index.read_bytes()
    index.write_bytes(whole[: len(whole) // 2])
    _, stderr = run(built[0], cache)
    assert "CacheWarning" in stderr and index.name in stderr and "run_dopri5" in stderr, stderr
    assert index.stat().st_size > len(whole) // 2  # written again by numba
    _, stderr = run(built[0], cache)
    assert "Warning" not in stderr, stderr


def test_garbage_in_a_numba_data_file_is_removed_and_compiled_again(built) -> None:
    cache = damaged_copy(built, "nbc")
    data = numba_file(cache, "*.observe-*.nbc")
    data.write_bytes(os.urandom(300))
    _, stderr = run(built[0], cache)
    assert "CacheWarning" in stderr and "observe" in stderr, stderr
    assert data.read_bytes()[:2] != b"" and data.stat().st_size != 300
