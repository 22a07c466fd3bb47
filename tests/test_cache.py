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
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from dyngen.errors import RebuildWarning
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
        report = {"reused": result.reused, "path": str(result.path), "digest": result.digest,
                  "stages": sorted(result.timings)}
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert after is not before and after.digest != before.digest
    a.k = 2.5  # a plain attribute constant: rebuilt, and the user is told how to avoid that
    with pytest.warns(RebuildWarning, match=r"Osc\[0\]\.k changed \(2\.0 -> 2\.5\).*make_parameter\('Osc\[0\]\.k'\)"):
        assert sim.compile().digest != after.digest


@pytest.mark.slow
def test_a_second_simulate_does_not_retrace(model, cache: Path) -> None:
    sim = model.make()
    build = sim.compile()
    sim.simulate(0.5, 0.25)
    assert sim.compile() is build


# -- determinism -----------------------------------------------------------------------


@pytest.mark.slow
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


@pytest.fixture(scope="module")
def built_alone(tmp_path_factory) -> str:
    """The module text one process writes building the "base" model alone into a fresh
    cache (the text does not depend on the model's folder: locations are relative)."""
    folder = tmp_path_factory.mktemp("alone")
    (folder / "model.py").write_text(MODEL)
    return Path(run_model(folder / "model.py", folder / "cache", "base")["path"]).read_text()


@pytest.mark.slow
@pytest.mark.parametrize("round_", range(3))
def test_concurrent_builds_of_one_model(model_file: Path, tmp_path: Path, round_: int, built_alone: str) -> None:
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
    assert built_alone == text


# -- cache_dir= ------------------------------------------------------------------------


@pytest.mark.slow
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


# -- the structure key: a warm start without tracing ----------------------------------


@pytest.mark.slow
def test_a_new_process_finds_the_module_without_tracing(model_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = run_model(model_file, cache, "conn", "--simulate")
    assert first["reused"] is False and "trace" in first["stages"]
    second = run_model(model_file, cache, "conn", "--simulate")
    assert second["reused"] is True and second["stages"] == ["load"]  # no trace, no flatten
    assert second["digest"] == first["digest"] and second["final"] == first["final"]
    other = run_model(model_file, cache, "k")  # another structure: traced and built
    assert other["reused"] is False and other["digest"] != first["digest"]


@pytest.fixture(scope="module")
def first_state_run(tmp_path_factory) -> tuple[Path, Path, dict]:
    """The model file, the cache its first run in a new process wrote, and that run's
    report ("state" variant, simulated): shared by the edits below, each of which runs
    on a copy of that cache and puts the file back."""
    folder = tmp_path_factory.mktemp("edited")
    model_file = folder / "model.py"
    model_file.write_text(MODEL)
    first = run_model(model_file, folder / "pristine", "state", "--simulate")
    assert first["reused"] is False and "trace" in first["stages"]
    return model_file, folder / "pristine", first


@pytest.mark.slow
@pytest.mark.parametrize(
    ("old", "new"),
    [("where(x > 0.9, -0.1, 0.0)", "where(x > 0.9, -0.2, 0.0)"),  # a constant in the traced code
     ("np.tanh(x[0])", "np.sin(x[0])"),  # the function it calls
     ("def do_step(self, time):", "def do_step(self, time):\n        pass")],  # lines move
)  # fmt: skip
def test_editing_the_model_code_is_a_new_structure(first_state_run, tmp_path: Path, old: str, new: str) -> None:
    model_file, pristine, first = first_state_run
    cache = tmp_path / "cache"
    shutil.copytree(pristine, cache)  # as the first run left it
    text = model_file.read_text()
    assert old in text
    try:
        model_file.write_text(text.replace(old, new))
        second = run_model(model_file, cache, "state", "--simulate")
    finally:
        model_file.write_text(text)  # back to the first code: its module again, without tracing
    assert second["reused"] is False and "trace" in second["stages"]
    assert second["digest"] != first["digest"]
    third = run_model(model_file, cache, "state", "--simulate")
    assert third["stages"] == ["load"] and third["digest"] == first["digest"] and third["final"] == first["final"]


HELPED_MODEL = textwrap.dedent(
    """\
    import json

    from dyngen import Simulation, System
    import helpers


    class Decay(System):
        def __init__(self):
            super().__init__()
            self.states.x = 1.0
            self.helper = helpers.Rate()

        @property
        def bias(self):
            return 0.0

        def do_step(self, time):
            self.ders.x = -self.helper.rate() * self.states.x + self.bias


    if __name__ == "__main__":
        sim, decay = Simulation(), Decay()
        sim.add_system(decay)
        result = sim.compile()
        sim.simulate(1.0, 0.5, rtol=1e-10, atol=1e-12)
        print(json.dumps({"stages": sorted(result.timings), "digest": result.digest, "x": float(decay.states.x)}))
    """
)
HELPERS = textwrap.dedent(
    """\
    class Rate:
        gain = 0.5

        def rate(self):
            return self.gain
    """
)


def run_helped(folder: Path, cache: Path) -> dict:
    """HELPED_MODEL run in a new process (no bytecode written: an edit within the
    second of the last run, of the same size, must not meet a stale .pyc)."""
    env = dict(os.environ, DYNGEN_CACHE_DIR=str(cache), PYTHONDONTWRITEBYTECODE="1")
    done = subprocess.run([sys.executable, "model.py"], cwd=folder, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def first_helped_run(tmp_path_factory) -> tuple[Path, Path, dict]:
    """HELPED_MODEL's folder, the cache its first run wrote and that run's report:
    shared by the edits below, each of which runs on a copy of that cache."""
    folder = tmp_path_factory.mktemp("helped")
    (folder / "model.py").write_text(HELPED_MODEL)
    (folder / "helpers.py").write_text(HELPERS)
    first = run_helped(folder, folder / "pristine")
    assert first["x"] == pytest.approx(np.exp(-0.5), rel=1e-8)
    return folder, folder / "pristine", first


@pytest.mark.slow
@pytest.mark.parametrize(
    ("file", "old", "new", "rate", "bias"),
    [("helpers.py", "gain = 0.5", "gain = 2.0", 2.0, 0.0),  # a class attribute of a helper object's class
     ("helpers.py", "return self.gain", "return 4 * self.gain", 2.0, 0.0),  # its method, in another module
     ("model.py", "return 0.0", "return 0.25", 0.5, 0.25)],  # a property of the system
)  # fmt: skip
def test_edits_of_code_the_key_does_not_reach_are_a_new_structure(
    first_helped_run, tmp_path: Path, file: str, old: str, new: str, rate: float, bias: float
) -> None:
    folder, pristine, first = first_helped_run
    cache = tmp_path / "cache"
    shutil.copytree(pristine, cache)  # as the first run left it
    assert run_helped(folder, cache)["stages"] == ["load"]  # unchanged: found by its key
    edited = folder / file
    text = edited.read_text()
    assert old in text
    try:
        edited.write_text(text.replace(old, new))
        second = run_helped(folder, cache)
    finally:
        edited.write_text(text)
    assert "trace" in second["stages"] and second["digest"] != first["digest"]
    expected = bias / rate + (1 - bias / rate) * np.exp(-rate)
    assert second["x"] == pytest.approx(expected, rel=1e-8)


def test_spec_and_flat_of_a_module_found_by_structure_are_traced_on_demand(model, cache: Path) -> None:
    first = model.make("conn").compile()
    second = model.make("conn").compile()
    assert second.reused and "trace" not in second.timings and second.kernel is None
    assert second.flat.digest == first.flat.digest
    assert module_digest(second.flat.digest) == second.digest
    assert [s.path for s in second.spec.systems] == [s.path for s in first.spec.systems]


def test_a_module_cached_by_another_generator_is_written_again(model, cache: Path, monkeypatch) -> None:
    """A new dyngen whose lowering differs (same templates, same version) must not
    reuse the modules an older one cached for the same model."""
    import dyngen.render as render
    import dyngen.runtime.fingerprint as fingerprint

    old = model.make().compile()
    monkeypatch.setattr(render, "generator_digest", lambda: "another generator")
    monkeypatch.setattr(fingerprint, "_dyngen_source_digest", lambda: "another generator")
    new = model.make().compile()
    assert new.flat.digest == old.flat.digest  # the same model ...
    assert new.digest != old.digest and new.path != old.path and not new.reused  # ... another module
    assert sorted(modules_in(cache)) == sorted([old.path, new.path])


def test_rebuild_traces_even_when_the_structure_is_known(model, cache: Path) -> None:
    model.make().compile()
    sim = model.make()
    assert "trace" not in sim.compile().timings
    assert "trace" in sim.rebuild().timings


def test_a_model_holding_an_opaque_object_is_traced_every_time(model, cache: Path) -> None:
    from dyngen.runtime.fingerprint import structure_key

    sims = [model.make(), model.make()]
    for sim in sims:
        sim.systems[0].generator = np.random.default_rng(0)  # a library object: only its identity names it
    assert structure_key(sims[0].systems, ()) is None
    assert structure_key(model.make().systems, ()) is not None
    assert "trace" in sims[0].compile().timings
    second = sims[1].compile()
    assert second.reused and "trace" in second.timings


def test_structure_key_sees_constants_of_connection_functions(model) -> None:
    from dyngen.runtime.fingerprint import structure_key

    gains = {"k": 0.5}

    def push(system, time, *, gain=0.5):
        system.inputs.f = gain * gains["k"] * np.sin(time)

    sim = model.make()
    sim.systems[1].add_pre_connection(push)
    keys = [structure_key(sim.systems, ())]
    push.__kwdefaults__["gain"] = 2.0  # a keyword-only default
    keys.append(structure_key(sim.systems, ()))
    gains["k"] = 3.0  # a value inside a closure cell
    keys.append(structure_key(sim.systems, ()))
    assert None not in keys and len(set(keys)) == 3
    assert structure_key(sim.systems, ()) == keys[-1]  # and stable while nothing changes


def test_a_warm_start_repeats_the_warnings_of_the_build(cache: Path) -> None:
    from dyngen import DyngenWarning, Simulation, System

    class Swapped(System):
        def __init__(self) -> None:
            super().__init__()
            self.states.x = 1.0
            self.states.v = 0.0

        def do_step(self, time):
            self.ders.v = -self.states.x
            self.ders.x = self.states.v

    for expected_stages in (None, ["load"]):
        sim = Simulation()
        sim.add_system(Swapped())
        with pytest.warns(DyngenWarning, match="ders are ordered"):
            result = sim.compile()
        if expected_stages is not None:
            assert sorted(result.timings) == expected_stages


@pytest.mark.slow
def test_structure_keys_do_not_depend_on_the_hash_seed(model_file: Path, tmp_path: Path) -> None:
    entries = []
    for seed in ("1", "2"):
        cache = tmp_path / f"cache-{seed}"
        run_model(model_file, cache, "conn", seed=seed)
        entries.append(sorted(p.name for p in (cache / "structures").iterdir()))
    assert entries[0] == entries[1] and len(entries[0]) == 1


@pytest.mark.slow
def test_a_damaged_cache_entry_is_rebuilt(model_file: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = Path(run_model(model_file, cache, "base")["path"])
    text = path.read_text()
    path.write_text(text[: len(text) // 3])  # header intact, body cut off
    report = run_model(model_file, cache, "base", "--simulate")
    assert report["reused"] is False
    assert path.read_text() == text
