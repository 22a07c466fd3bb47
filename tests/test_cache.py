"""The content-hash module cache: naming, reuse across processes, what changes the
hash and what does not, determinism, concurrent builds, and ``cache_dir=``.

Every test uses its own cache folder under ``tmp_path`` (through ``DYNGEN_CACHE_DIR``
or ``Simulation(cache_dir=...)``).
"""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dyngen.render import module_digest

_SCRIPT = Path(sys.executable).with_name("dyngen")
DYNGEN = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-c", "from dyngen.cli import main; main()"]

MODEL = textwrap.dedent(
    '''\
    """Two oscillators with vector states, a forcing closure and optional extras.

    ``make(variant)`` builds structural variants of the same model; ``python model.py
    VARIANT [--simulate]`` prints what ``Simulation.compile()`` returned as JSON.
    """

    import json
    import sys

    import numpy as np

    from dyngen import Simulation, System, connect_signals, where


    class Osc(System):
        def __init__(self, k=2.0, n=2, extra=False):
            super().__init__()
            self.k = k
            self.states.x = np.linspace(1.0, 0.5, n)
            self.states.v = np.zeros(n)
            if extra:
                self.states.e = 0.0
            self.inputs.mu = 0.3
            self.inputs.f = 0.0
            self.outputs.x0 = 0.0

        def do_step(self, time):
            x = self.states.x
            v = self.states.v
            self.ders.x = v
            self.ders.v = -self.k * x - self.inputs.mu * v + self.inputs.f + where(x > 0.9, -0.1, 0.0)
            self.outputs.x0 = x[0]
            if "e" in self.states:
                self.ders.e = -self.states.e + np.tanh(x[0])


    def make(variant="base", cache_dir=None):
        a = Osc(n=3 if variant == "shape" else 2, k=2.5 if variant == "k" else 2.0)
        b = Osc(extra=variant == "state")
        if variant == "mu":
            a.inputs.mu = 0.9
        if variant == "x0":
            a.states.x = np.array([2.0, 0.1])

        def force(system, time):
            system.inputs.f = 0.5 * np.sin(time)

        a.add_pre_connection(force)
        if variant == "conn":
            b.add_pre_connection(connect_signals(a.outputs, "x0", b.inputs, "f"))
        sim = Simulation(cache_dir=cache_dir)
        sim.add_system(a)
        sim.add_system(b)
        return sim


    def build():
        return make()


    if __name__ == "__main__":
        sim = make(sys.argv[1])
        result = sim.compile()
        report = {"reused": result.reused, "path": str(result.path), "digest": result.digest}
        if "--simulate" in sys.argv:
            sim.simulate(1.0, 0.25)
            report["final"] = [float(v) for s in sim.systems for v in np.concatenate([s.states.x, s.states.v])]
        print(json.dumps(report))
    '''
)

STRUCTURAL = ["conn", "state", "shape", "k"]
NON_STRUCTURAL = ["mu", "x0"]


@pytest.fixture
def model_file(tmp_path: Path) -> Path:
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return path


@pytest.fixture
def model(model_file: Path):
    """The model file imported in this process (for make())."""
    spec = importlib.util.spec_from_file_location(f"cache_model_{id(model_file)}", model_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def cache(tmp_path: Path, monkeypatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("DYNGEN_CACHE_DIR", str(folder))
    return folder


def run_model(model_file: Path, cache: Path, *args: str, seed: str | None = None) -> dict:
    env = dict(os.environ, DYNGEN_CACHE_DIR=str(cache))
    if seed is not None:
        env["PYTHONHASHSEED"] = seed
    result = subprocess.run(
        [sys.executable, str(model_file), *args],
        cwd=model_file.parent, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)


def modules_in(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.py"))


# -- naming and reuse ----------------------------------------------------------------


def test_first_simulate_builds_name_hash16_in_the_cache(model, cache: Path) -> None:
    sim = model.make()
    assert not cache.exists() or modules_in(cache) == []
    sim.simulate(0.5, 0.25)
    [path] = modules_in(cache)  # simulate() built the module
    result = sim.compile()
    assert result.path == path
    assert re.fullmatch(r"osc_[0-9a-f]{16}\.py", path.name), path.name
    assert path.name == f"osc_{result.digest[:16]}.py"
    assert len(result.digest) == 64
    assert result.module.MODEL_HASH == result.digest == module_digest(result.flat.digest)
    assert f"# model hash: {result.digest}\n" in path.read_text()
    # a second Simulation of the same model in this process reuses the module too
    again = model.make().compile()
    assert again.reused is True and again.path == path
    assert modules_in(cache) == [path]


def test_a_new_process_reuses_the_module(model_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = run_model(model_file, cache, "base")
    assert first["reused"] is False
    path = Path(first["path"])
    assert path.parent == cache
    stat = path.stat()
    second = run_model(model_file, cache, "base", "--simulate")
    assert second["reused"] is True
    assert second["path"] == first["path"] and second["digest"] == first["digest"]
    assert path.stat().st_mtime_ns == stat.st_mtime_ns
    assert path.stat().st_ino == stat.st_ino
    assert modules_in(cache) == [path]
    assert np.all(np.isfinite(second["final"]))


# -- what changes the hash -----------------------------------------------------------


@pytest.mark.parametrize("variant", NON_STRUCTURAL)
def test_parameter_and_initial_values_keep_the_hash(model, cache: Path, variant: str) -> None:
    base = model.make("base").compile()
    other = model.make(variant).compile()
    assert other.flat.digest == base.flat.digest
    assert other.path == base.path and other.reused is True
    assert modules_in(cache) == [base.path]


@pytest.mark.parametrize("variant", STRUCTURAL)
def test_structural_changes_give_a_new_hash(model, cache: Path, variant: str) -> None:
    base = model.make("base").compile()
    other = model.make(variant).compile()
    assert other.flat.digest != base.flat.digest
    assert other.path != base.path and other.reused is False
    assert sorted(modules_in(cache)) == sorted([base.path, other.path])


def test_all_structural_variants_are_distinct(model, cache: Path) -> None:
    digests = {variant: model.make(variant).compile().flat.digest for variant in ["base", *STRUCTURAL]}
    assert len(set(digests.values())) == len(digests), digests


def test_changing_a_parameter_needs_no_rebuild(model, cache: Path) -> None:
    sim = model.make()
    build = sim.compile()
    mtime = build.path.stat().st_mtime_ns
    a = sim.systems[0]
    a.inputs.mu = 0.9
    assert sim.compile() is build  # same structure: no re-trace, no rebuild
    sim.simulate(1.0, 0.25)
    assert sim.compile().path == build.path
    assert sim.compile().flat.digest == build.flat.digest
    assert build.path.stat().st_mtime_ns == mtime
    assert modules_in(cache) == [build.path]

    slow, fast = model.make("base"), model.make("mu")  # mu = 0.3 and mu = 0.9 from the start
    slow.simulate(1.0, 0.25)
    fast.simulate(1.0, 0.25)
    assert not np.allclose(a.states.x, slow.systems[0].states.x)  # the new mu took effect ...
    np.testing.assert_allclose(a.states.x, fast.systems[0].states.x, rtol=1e-12)  # ... fully
    assert modules_in(cache) == [build.path]


def test_a_structural_change_rebuilds_the_same_simulation(model, cache: Path) -> None:
    sim = model.make()
    before = sim.compile()
    a, b = sim.systems
    from dyngen import connect_signals

    b.add_pre_connection(connect_signals(a.outputs, "x0", b.inputs, "f"))
    after = sim.compile()
    assert after is not before and after.flat.digest != before.flat.digest
    a.k = 2.5  # a plain attribute constant
    assert sim.compile().flat.digest != after.flat.digest


def test_a_second_simulate_does_not_retrace(model, cache: Path) -> None:
    sim = model.make()
    build = sim.compile()
    sim.simulate(0.5, 0.25)
    assert sim.compile() is build


# -- determinism -----------------------------------------------------------------------


def test_hash_and_text_do_not_depend_on_the_hash_seed(model_file: Path, tmp_path: Path) -> None:
    shown, digests = {}, {}
    for seed in ("1", "2"):
        env = dict(os.environ, DYNGEN_CACHE_DIR=str(tmp_path / f"cache-show-{seed}"), PYTHONHASHSEED=seed)
        result = subprocess.run(
            [*DYNGEN, "show", model_file.name],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        shown[seed] = result.stdout
        digests[seed] = run_model(model_file, tmp_path / f"cache-{seed}", "conn", seed=seed)
    assert shown["1"] == shown["2"]
    assert digests["1"]["digest"] == digests["2"]["digest"]
    assert Path(digests["1"]["path"]).name == Path(digests["2"]["path"]).name
    text_1 = Path(digests["1"]["path"]).read_text()
    text_2 = Path(digests["2"]["path"]).read_text()
    assert text_1 == text_2
    header = re.search(r"^# model hash: ([0-9a-f]{64})$", shown["1"], re.MULTILINE)
    assert header is not None


# -- concurrency -----------------------------------------------------------------------


@pytest.mark.parametrize("round_", range(3))
def test_concurrent_builds_of_one_model(model_file: Path, tmp_path: Path, round_: int) -> None:
    cache = tmp_path / f"race-{round_}"
    env = dict(os.environ, DYNGEN_CACHE_DIR=str(cache))
    procs = [
        subprocess.Popen(
            [sys.executable, str(model_file), "base", "--simulate"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        assert proc.returncode == 0, err
        assert "Traceback" not in err
    reports = [json.loads(out) for out, _ in outputs]
    assert reports[0]["digest"] == reports[1]["digest"]
    assert reports[0]["path"] == reports[1]["path"]
    assert reports[0]["final"] == reports[1]["final"]
    [module] = modules_in(cache)
    assert str(module) == reports[0]["path"]
    leftovers = [p for p in cache.rglob("*") if p.is_file() and (".tmp" in p.name or p.name.startswith("."))]
    assert leftovers == []
    text = module.read_text()
    ast.parse(text)
    assert f"MODEL_HASH = {reports[0]['digest']!r}" in text
    # complete: the same text as one process building alone into a fresh cache
    alone = run_model(model_file, tmp_path / f"alone-{round_}", "base")
    assert Path(alone["path"]).read_text() == text


# -- cache_dir= ------------------------------------------------------------------------


def test_cache_dir_argument_overrides_the_environment(model, tmp_path: Path, monkeypatch) -> None:
    from_env = tmp_path / "from-env"
    explicit = tmp_path / "explicit"
    monkeypatch.setenv("DYNGEN_CACHE_DIR", str(from_env))
    sim = model.make(cache_dir=explicit)
    sim.simulate(0.5, 0.25)
    [path] = modules_in(explicit)
    assert sim.compile().path == path
    assert not from_env.exists() or modules_in(from_env) == []
    # and a str works as well as a Path
    other = model.make(cache_dir=str(explicit)).compile()
    assert other.path == path and other.reused is True


def test_environment_variable_is_used_without_cache_dir(model, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "env-only"
    monkeypatch.setenv("DYNGEN_CACHE_DIR", str(folder))
    result = model.make().compile()
    assert result.path.parent == folder
    assert modules_in(folder) == [result.path]


def test_a_damaged_cache_entry_is_rebuilt(model_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = Path(run_model(model_file, cache, "base")["path"])
    text = path.read_text()
    path.write_text(text[: len(text) // 3])  # header intact, body cut off
    report = run_model(model_file, cache, "base", "--simulate")
    assert report["reused"] is False
    assert path.read_text() == text
