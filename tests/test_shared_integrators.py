"""dyngen's shared compiled integrators (runtime/compiled_methods.py) against a
standalone module's own: the same routines from the same templates, so the same
trajectories to the last bit; compiled once, whatever the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dyngen import Recorder, Simulation, System
from dyngen.modelfile import load_model
from dyngen.render import compiled_methods_path, compiled_methods_text
from dyngen.runtime.compiled import work_rows
from dyngen.runtime.first_class import SIGNATURES, model_functions, shared_routine

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "coupled_vanderpol.py"


def recorded_run(standalone: bool, integrator: str) -> tuple[dict, object]:
    simulation = load_model(EXAMPLE)
    simulation.standalone = standalone
    recorder = Recorder()
    for system in simulation.systems:
        recorder.store(system, "states.x")
        recorder.store(system, "outputs.x")
        recorder.store(system, "ders.y")
    simulation.add_observer(recorder)
    simulation.simulate(5.0, 0.05, integrator=integrator)
    return recorder.results, simulation.compile().module


@pytest.mark.slow  # a standalone module per method: numba compiles its integrators
@pytest.mark.parametrize("integrator", ["dopri5", "dop853", "rodas4"])
def test_standalone_and_default_modules_give_identical_trajectories(integrator: str) -> None:
    shared, default_module = recorded_run(False, integrator)
    own, standalone_module = recorded_run(True, integrator)
    assert not hasattr(default_module, "run_dopri5") and hasattr(standalone_module, "run_dopri5")
    assert default_module.MODEL_HASH != standalone_module.MODEL_HASH  # two cache entries
    assert len(shared) == len(own) == 2
    for (_, a), (_, b) in zip(shared.items(), own.items(), strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert len(a[key]) == 101
            assert np.array_equal(np.asarray(a[key]), np.asarray(b[key])), key  # bit for bit


class Decay(System):
    def __init__(self, rate: float) -> None:
        super().__init__()
        self.states.x = 1.0
        self.ders.x = 0.0
        self.inputs.rate = rate

    def do_step(self, time):
        self.ders.x = -self.inputs.rate * self.states.x


class Growth(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.a = 1.0
        self.states.b = 2.0
        self.ders.a = 0.0
        self.ders.b = 0.0
        self.inputs.k = 0.1

    def do_step(self, time):
        self.ders.a = self.inputs.k * self.states.b
        self.ders.b = 0.2 * self.states.a


def test_one_compiled_routine_serves_every_model() -> None:
    """Models of different sizes run on the one compiled signature of each routine (no
    compile per model), each with its own right answer."""
    for system, check in (
        (Decay(2.0), lambda s: s.states.x == pytest.approx(np.exp(-2.0), rel=1e-6)),
        (Growth(), lambda s: s.states.a == pytest.approx(np.cosh(np.sqrt(0.02)) + 2 * 0.1 / np.sqrt(0.02) * np.sinh(np.sqrt(0.02)), rel=1e-6)),
    ):  # fmt: skip
        simulation = Simulation()
        simulation.add_system(system)
        simulation.simulate(1.0, 0.5)
        assert check(system)
    assert len(shared_routine("run_dopri5").overloads) == 1
    assert list(shared_routine("run_dopri5").signatures) == [SIGNATURES["run_dopri5"].args]


def test_the_shared_routines_refuse_arrays_that_do_not_fit_before_any_step() -> None:
    simulation = Simulation()
    simulation.add_system(Growth())
    module = simulation.compile().module
    functions = model_functions(module).addresses(observe=True)
    n, rows = module.N_STATES, work_rows("dopri5")
    settings = (1e-6, 1e-12, 0.0, 0.0, 0.9, 10.0, 0.2, 0.0, 500)
    advance = shared_routine("dopri5_advance")
    stats = np.zeros(4, dtype=np.int64)
    p = module.DEFAULT_PARAMETERS
    work = np.empty((rows, n))
    for y, p_, work_, stats_ in (
        (module.DEFAULT_STATES.copy(), p, np.empty((rows - 1, n)), stats),
        (module.DEFAULT_STATES.copy(), p, np.empty((rows, n + 1)), stats),
        (module.DEFAULT_STATES.copy(), p, work, np.zeros(3, np.int64)),
        (np.ones(n + 1), p, np.empty((rows, n + 1)), stats),  # y longer than the model's: rhs would write past dy
        (module.DEFAULT_STATES.copy(), p[:-1], work, stats),  # rhs would read past p
    ):  # fmt: skip
        before = y.copy()
        assert advance(functions, 0.0, y, 1.0, p_, *settings, work_, stats_) == (0.0, -12)
        assert np.array_equal(y, before) and not stats_.any()
    run = shared_routine("run_dopri5")
    good = dict(times=np.empty(11), Y=np.empty((11, n)), OUT=np.empty((11, module.N_OBSERVED)), stats=stats)
    for name, value in [
        ("times", np.empty(10)), ("Y", np.empty((11, n + 1))), ("OUT", np.empty((10, module.N_OBSERVED))),
        ("OUT", np.empty((11, module.N_OBSERVED - 1))), ("stats", np.zeros(3, np.int64)),
    ]:  # fmt: skip
        a = {**good, name: value}
        y = module.DEFAULT_STATES.copy()
        assert run(functions, 0.0, y, p, 0.1, 10, *settings, True, True, True, *a.values()) == (0, -12, 0.0), name
    assert run(functions, 0.0, module.DEFAULT_STATES.copy(), p[:-1], 0.1, 10, *settings, True, True, True, *good.values())[1] == -12
    # a function not compiled yet (address 0) is refused, never called
    without_observe = functions.copy()
    without_observe[2:4] = 0
    assert run(without_observe, 0.0, module.DEFAULT_STATES.copy(), p, 0.1, 10, *settings, True, True, True, *good.values())[1] == -12
    assert run(without_observe, 0.0, module.DEFAULT_STATES.copy(), p, 0.1, 10, *settings, True, True, False, *good.values())[1] == 1
    without_rhs = functions.copy()
    without_rhs[0:2] = 0
    assert advance(without_rhs, 0.0, module.DEFAULT_STATES.copy(), 1.0, p, *settings, work, stats) == (0.0, -12)
    rodas4 = shared_routine("rodas4_advance")
    n_ = module.N_STATES
    rodas4_arrays = (np.zeros((5, n_)), np.zeros((6, n_)), np.zeros((n_, n_)), np.zeros(n_, np.int64), np.zeros(4, np.int64))
    assert rodas4(functions, 0.0, module.DEFAULT_STATES.copy(), 1.0, p, 0.01, 1e-6, 1e-9, 0.0, 100, *rodas4_arrays)[2] == -12  # no jac yet
    k, status, t = run(functions, 0.0, module.DEFAULT_STATES.copy(), p, 0.1, 10, *settings, True, True, True, *good.values())
    assert (k, status) == (11, 1) and t == pytest.approx(1.0)


def test_the_committed_shared_routines_are_the_templates_rendering() -> None:
    """runtime/compiled_methods.py is written from the templates (render.write_compiled_methods)."""
    assert compiled_methods_path().read_text(encoding="utf-8") == compiled_methods_text()



@pytest.mark.slow  # numba compiles one shared routine in an empty cache (~10 s)
def test_compiling_a_shared_routine_shows_no_numba_experimental_feature_warning(tmp_path: Path) -> None:
    """numba warns "First-class function type feature is experimental" when it compiles a
    routine that takes the model's functions as values (the event routines do): a note
    on dyngen's own choice that a user cannot act on, so it is not shown."""
    import os
    import subprocess
    import sys

    script = (
        "import warnings\n"
        "from numba.core.errors import NumbaExperimentalFeatureWarning\n"
        "warnings.simplefilter('error', NumbaExperimentalFeatureWarning)\n"
        "from dyngen.runtime.first_class import shared_routine\n"
        "shared_routine('run_dopri5_events')\n"
    )
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba")}  # compiled here, not loaded
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
