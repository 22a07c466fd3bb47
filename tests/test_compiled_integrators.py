"""The compiled dopri5/dop853 of every generated module reproduce scipy's ``ode``.

The reference is scipy's ``ode`` driven exactly as dynode 0.4 drives it, with the
generated ``rhs``: ``set_integrator(method, first_step=observer_dt, ...)`` (plus
``atol=inf`` for fixed steps), then one ``integrate(t + observer_dt)`` per
observer interval.  The compiled drivers must give the same sample times and
states (to 1e-9 relative; they add the error norm's squares in another order, so
the last bits differ), the same failure codes at the same times, and the same
number of right-hand-side evaluations.

About that count: scipy's DOP853 (its C translation) reads an uninitialised
variable before every step and, depending on what the stack holds, evaluates
f(x, y) once more per step -- the same value, so results do not change.  For
dop853 the tests therefore compare with the count the routine reports itself
(``iwork[16]``, which counts one evaluation too many when first_step is given).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose
from scipy.integrate import ode

from dyngen import DyngenError, Simulation, SolverError, System
from dyngen.modelfile import load_model
from dyngen.runtime.compiled import (
    STATUS_NOT_FINITE,
    CompiledExplicitIntegrator,
    explicit_settings,
    run_recorded,
)
from dyngen.runtime import compiled_methods
from dyngen.runtime.integrators import ScipyOdeIntegrator, dynode_options, run_observed

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
METHODS = ("dopri5", "dop853")
RTOL, ATOL = 1e-9, 1e-12


# --------------------------------------------------------------------------- models


class BlowUp(System):
    """dx/dt = x**2 from x = 1: x = 1 / (1 - t) leaves every bound at t = 1."""

    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0
        self.ders.x = 0.0

    def do_step(self, time):
        self.ders.x = self.states.x**2


class StiffRelaxation(System):
    """dx/dt = -k (x - cos t): stiff for large k, so explicit methods crawl."""

    def __init__(self, k: float = 1e4) -> None:
        super().__init__()
        self.states.x = 0.0
        self.ders.x = 0.0
        self.inputs.k = k

    def do_step(self, time):
        self.ders.x = -self.inputs.k * (self.states.x - np.cos(time))


class Frozen(System):
    """A state that never changes (so an infinite start value stays infinite) and a decay."""

    def __init__(self) -> None:
        super().__init__()
        self.states.frozen = 0.0
        self.states.z = 1.0
        self.ders.frozen = 0.0
        self.ders.z = 0.0

    def do_step(self, time):
        self.ders.frozen = 0.0 * time
        self.ders.z = -self.states.z


_MODULES: dict = {}


def module_of(key: str | Path, standalone: bool = False):
    """The generated module of an example file or of one of the models above (built
    once), ``standalone``: with its own compiled integrators."""
    if (key, standalone) not in _MODULES:
        if isinstance(key, Path):
            simulation = load_model(key)
        else:
            simulation = Simulation(standalone=standalone)
            simulation.add_system({"blow_up": BlowUp, "stiff": StiffRelaxation, "frozen": Frozen}[key]())
            simulation.model_name = f"compiled_integrators_{key}"
        _MODULES[key, standalone] = simulation.compile().module
    return _MODULES[key, standalone]


def state_namer(module):
    return lambda i: module.STATE_NAMES[i]


# --------------------------------------------------------------------------- the reference


class ScipyRun:
    """dynode's loop on scipy's ode with the generated rhs, counting evaluations."""

    def __init__(self, module, method, t0, y0, p, duration, observer_dt, options, record_initial=True):
        dy = np.zeros(module.N_STATES)
        self.calls = 0  # evaluations scipy really made
        self.reported = 0  # evaluations the routine reports, without its phantom hinit count

        def f(t, y):
            self.calls += 1
            module.rhs(t, y, p, dy)
            return dy

        solver = ode(f)
        solver.set_initial_value(np.array(y0, dtype=float), t0)
        solver.set_integrator(method, **options)
        phantom = 1 if options.get("first_step", 0.0) != 0.0 else 0
        times, states = ([t0], [np.array(y0, dtype=float)]) if record_initial else ([], [])
        self.status = 1
        for _ in range(int(duration / observer_dt)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                solver.integrate(solver.t + observer_dt)
            code = solver.get_return_code()
            if code > -10:  # an input error leaves the counters untouched
                self.reported += int(solver._integrator.iwork[16]) - phantom
            if not solver.successful():
                self.status = code
                break
            times.append(solver.t)
            states.append(solver.y.copy())
        self.times = np.array(times)
        self.Y = np.array(states).reshape(len(times), module.N_STATES)
        self.t_reached = solver.t
        self.y = solver.y.copy()


def assert_same_run(reference: ScipyRun, run, method: str) -> None:
    assert run.status == reference.status
    assert run.times.shape == reference.times.shape
    assert_allclose(run.times, reference.times, rtol=RTOL, atol=ATOL)
    assert_allclose(run.Y, reference.Y, rtol=RTOL, atol=ATOL)
    assert_allclose(run.t_reached, reference.t_reached, rtol=RTOL, atol=ATOL)
    assert_allclose(run.y, reference.y, rtol=RTOL, atol=ATOL)
    evaluations = int(run.stats[0])
    assert evaluations == reference.reported
    if method == "dopri5":
        assert evaluations == reference.calls
    else:
        assert reference.calls >= evaluations  # scipy's extra, identical evaluations (see top)


# --------------------------------------------------------------------------- the examples

SETTINGS = {
    # name: (observer_dt, dynode's fixed_step, scipy options)
    "default": (0.1, False, {}),
    "coarse": (1.0, False, {}),  # long intervals: many steps and rejections per call
    "tight": (0.1, False, {"rtol": 1e-10, "atol": 1e-12}),
    "fixed_step": (0.05, True, {}),
    "max_step": (0.5, False, {"max_step": 0.03}),
}


# Every example's module with the default setting; the other settings, which exercise
# the driver (rejections, tolerances, fixed and bounded steps: the same code in every
# module), on three examples: a small nonlinear one, a kernel ring, and the 400-state
# array form (the error norm over many elements).
THOROUGH = ("vanderpol", "oscillator_ring", "reaction_diffusion")
CASES = [
    pytest.param(example, setting, id=f"{example.stem}-{setting}",
                 marks=() if (example.stem, setting) == ("vanderpol", "default") else pytest.mark.slow)
    for example in EXAMPLES
    for setting in sorted(SETTINGS)
    if setting == "default" or example.stem in THOROUGH
]  # fmt: skip


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("example", "setting"), CASES)
def test_examples_match_scipy(example: Path, method: str, setting: str) -> None:
    module = module_of(example)
    observer_dt, fixed_step, kwargs = SETTINGS[setting]
    options = dynode_options(observer_dt, fixed_step, kwargs)
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    reference = ScipyRun(module, method, 0.0, y0, p, 10.0, observer_dt, options)
    run = run_recorded(module, method, 0.0, y0, p, 10.0, observer_dt, options, True, True)
    assert reference.status == 1
    assert len(run.times) == int(10.0 / observer_dt) + 1
    assert_same_run(reference, run, method)
    # the observed signals are observe() at every sample
    out = np.empty(module.N_OBSERVED)
    for k in (0, len(run.times) // 2, len(run.times) - 1):
        module.observe(run.times[k], run.Y[k], p, out)
        assert np.array_equal(run.OUT[k], out)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_run_that_does_not_start_at_zero(method: str) -> None:
    """dynode records no initial sample unless t == 0; the intervals start at t0."""
    module = module_of(EXAMPLES[0])
    options = dynode_options(0.25, False, {})
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    reference = ScipyRun(module, method, 3.0, y0, p, 5.0, 0.25, options, record_initial=False)
    run = run_recorded(module, method, 3.0, y0, p, 5.0, 0.25, options, False, False)
    assert run.OUT is None
    assert len(run.times) == 20
    assert_same_run(reference, run, method)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_run_without_states_kept_takes_the_same_steps(method: str) -> None:
    """simulate() without observers keeps no samples of the state: the run is the
    same one, only Y is not written."""
    module = module_of(EXAMPLES[0])
    options = dynode_options(0.25, False, {})
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    kept = run_recorded(module, method, 0.0, y0, p, 5.0, 0.25, options, True, True)
    bare = run_recorded(module, method, 0.0, y0, p, 5.0, 0.25, options, True, False, with_states=False)
    assert bare.Y is None and bare.OUT is None
    assert np.array_equal(bare.times, kept.times) and len(bare.times) == 21
    assert np.array_equal(bare.y, kept.y) and np.array_equal(bare.y, kept.Y[-1])
    assert np.array_equal(bare.stats, kept.stats) and bare.t_reached == kept.t_reached


# --------------------------------------------------------------------------- failures


@pytest.mark.parametrize("method", METHODS)
def test_too_many_steps_fails_like_scipy(method: str) -> None:
    module = module_of(ROOT / "examples" / "coupled_vanderpol.py")
    options = dynode_options(0.5, False, {"nsteps": 1})
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    reference = ScipyRun(module, method, 0.0, y0, p, 20.0, 0.5, options)
    run = run_recorded(module, method, 0.0, y0, p, 20.0, 0.5, options, True, False)
    assert reference.status == -2
    assert_same_run(reference, run, method)
    error = run.error(method, 0.0, 0.5, state_namer(module))
    assert isinstance(error, SolverError) and "larger nsteps is needed" in str(error)


@pytest.mark.slow
@pytest.mark.parametrize("fixed_step", [False, True])
@pytest.mark.parametrize("observer_dt", [0.1, 0.5])
@pytest.mark.parametrize("method", METHODS)
def test_blow_up_fails_like_scipy(method: str, observer_dt: float, fixed_step: bool) -> None:
    module = module_of("blow_up")
    options = dynode_options(observer_dt, fixed_step, {})
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    reference = ScipyRun(module, method, 0.0, y0, p, 2.0, observer_dt, options)
    run = run_recorded(module, method, 0.0, y0, p, 2.0, observer_dt, options, True, False)
    assert reference.status < 0
    assert_same_run(reference, run, method)
    assert 1.0 <= run.t_reached < 1.0 + observer_dt + 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_the_integrator_raises_scipys_failure(method: str) -> None:
    """CompiledExplicitIntegrator fails where ScipyOdeIntegrator fails, with the same words."""
    module = module_of("blow_up")
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    options = dynode_options(0.1, False, {})
    dy = np.zeros(module.N_STATES)

    def f(t, y):
        module.rhs(t, y, p, dy)
        return dy

    solvers = (
        CompiledExplicitIntegrator(module, p, 0.0, y0, method, options, state_namer(module)),
        ScipyOdeIntegrator(f, None, 0.0, y0, method, options, state_namer(module)),
    )
    failures = []
    for solver in solvers:
        with pytest.raises(SolverError) as info:
            for _ in range(20):
                solver.advance(solver.t + 0.1)
        failures.append((solver.t, str(info.value)))
    pattern = rf"{method} failed between t = (\S+) and t = (\S+) \(reached t = (\S+)\): step size becomes too small$"
    times = []
    for t_reached, message in failures:
        match = re.fullmatch(pattern, message)
        assert match, message
        times.append([float(match[1]), float(match[2]), float(match[3]), t_reached])
    assert_allclose(times[0], times[1], rtol=RTOL)
    assert 0.9 < times[0][0] < 1.0 < times[0][2] < times[0][1]


@pytest.mark.slow
def test_stiffness_detection_like_scipy() -> None:
    module = module_of("stiff")
    options = dynode_options(1.0, False, {"nsteps": 100_000})
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    reference = ScipyRun(module, "dopri5", 0.0, y0, p, 1.0, 1.0, options)
    run = run_recorded(module, "dopri5", 0.0, y0, p, 1.0, 1.0, options, True, False)
    assert reference.status == -4
    assert_same_run(reference, run, "dopri5")


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_stiff_problem_over_long_intervals_like_scipy(method: str) -> None:
    module = module_of("stiff")
    options = dynode_options(0.5, False, {"nsteps": 100_000})
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    p[:] = 2e3
    reference = ScipyRun(module, method, 0.0, y0, p, 2.0, 0.5, options)
    run = run_recorded(module, method, 0.0, y0, p, 2.0, 0.5, options, True, False)
    assert_same_run(reference, run, method)


@pytest.mark.slow
@pytest.mark.parametrize(
    "kwargs, status", [({"nsteps": -1}, -11), ({"safety": 1.5}, -15), ({"beta": 0.3}, -16), ({"safety": 2.0, "beta": 0.3}, -16)]
)
@pytest.mark.parametrize("method", METHODS)
def test_inconsistent_options_fail_like_scipy(method: str, kwargs: dict, status: int) -> None:
    module = module_of("stiff")
    options = dynode_options(0.1, False, kwargs)
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    reference = ScipyRun(module, method, 0.0, y0, p, 1.0, 0.1, options)
    run = run_recorded(module, method, 0.0, y0, p, 1.0, 0.1, options, True, False)
    assert reference.status == run.status == status
    assert run.t_reached == 0.0 and len(run.times) == 1
    assert "input is not consistent" in str(run.error(method, 0.0, 0.1, state_namer(module)))


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_arrays_that_do_not_fit_the_model_are_refused_before_any_step(method: str) -> None:
    """A standalone module's loops run to N_STATES (a constant): what the module's
    user passes is checked against it, never read or written past its end."""
    module = module_of("frozen", standalone=True)  # two states
    n, rows = module.N_STATES, getattr(module, f"{method.upper()}_WORK_ROWS")
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    settings = explicit_settings(method, {}).arguments()
    advance = getattr(module, f"{method}_advance")
    stats = np.zeros(4, dtype=np.int64)
    work = np.empty((rows, n))
    bad_calls = [
        (np.ones(n + 1), p, np.empty((rows, n + 1)), stats), (y0.copy(), p, np.empty((rows - 1, n)), stats),
        (y0.copy(), p, np.empty((rows, n - 1)), stats), (y0.copy(), np.append(p, 0.0), work, stats),
        (y0.copy(), p, work, np.zeros(3, dtype=np.int64)),
    ]  # fmt: skip
    for y, p_, work_, stats_ in bad_calls:
        before = y.copy()
        assert advance(0.0, y, 1.0, p_, *settings, work_, stats_) == (0.0, -12)
        assert np.array_equal(y, before) and not stats_.any()
    run = getattr(module, f"run_{method}")
    good = dict(p=p, times=np.empty(11), Y=np.empty((11, n)), OUT=np.empty((11, module.N_OBSERVED)), stats=stats)
    bad = [("times", np.empty(10)), ("Y", np.empty((11, n + 1))), ("OUT", np.empty((10, module.N_OBSERVED))),
           ("p", np.append(p, 0.0)), ("stats", np.zeros(3, dtype=np.int64))]  # fmt: skip
    for name, value in bad:
        a = {**good, name: value}
        k, status, t = run(0.0, y0.copy(), a["p"], 0.1, 10, *settings, True, True, True, a["times"], a["Y"], a["OUT"], a["stats"])
        assert (k, status, t) == (0, -12, 0.0), name
    k, status, t = run(0.0, y0.copy(), p, 0.1, 10, *settings, True, True, True, *list(good.values())[1:])
    assert (k, status) == (11, 1) and t == pytest.approx(1.0)  # the same arrays, fitting, run
    compiled = CompiledExplicitIntegrator(module, p, 0.0, y0, method, {}, state_namer(module))
    compiled._work = np.empty((rows, n + 1))
    with pytest.raises(SolverError, match="does not fit the model"):
        compiled.advance(0.1)


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_a_state_that_is_not_finite_stops_the_run(method: str) -> None:
    """scipy succeeds with an infinite state here; dyngen stops, naming the state."""
    module = module_of("frozen")
    options = dynode_options(0.1, False, {})
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    y0[0] = np.inf
    reference = ScipyRun(module, method, 0.0, y0, p, 1.0, 0.1, options)
    assert reference.status == 1 and np.isinf(reference.y[0])
    run = run_recorded(module, method, 0.0, y0, p, 1.0, 0.1, options, True, True)
    assert run.status == STATUS_NOT_FINITE
    assert len(run.times) == 1  # the initial sample only
    assert run.t_reached == reference.times[1]
    message = str(run.error(method, 0.0, 0.1, state_namer(module)))
    assert "not finite" in message and "Frozen.states.frozen" in message
    compiled = CompiledExplicitIntegrator(module, p, 0.0, y0, method, options, state_namer(module))
    with pytest.raises(SolverError, match=r"not finite at t = 0\.1.*Frozen\.states\.frozen"):
        compiled.advance(0.1)


# --------------------------------------------------------------------------- the Integrator


@pytest.mark.parametrize("method", METHODS)
def test_automatic_first_step_like_scipy(method: str) -> None:
    """Without first_step both guess it (Hairer's HINIT) at every call."""
    module = module_of(ROOT / "examples" / "coupled_vanderpol.py")
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    reference = ScipyRun(module, method, 0.0, y0, p, 5.0, 0.5, {})
    compiled = CompiledExplicitIntegrator(module, p, 0.0, y0, method, {}, state_namer(module))
    times, states = [0.0], [y0.copy()]
    for _ in range(10):
        compiled.advance(compiled.t + 0.5)
        times.append(compiled.t)
        states.append(compiled.y.copy())
    assert_allclose(times, reference.times, rtol=RTOL, atol=ATOL)
    assert_allclose(np.array(states), reference.Y, rtol=RTOL, atol=ATOL)
    assert compiled.stats[0] == reference.reported
    if method == "dopri5":
        assert compiled.stats[0] == reference.calls


@pytest.mark.parametrize("method", METHODS)
def test_the_integrator_under_dynodes_loop(method: str) -> None:
    """CompiledExplicitIntegrator is a drop-in Integrator for run_observed."""
    module = module_of(ROOT / "examples" / "coupled_vanderpol.py")
    y0, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    options = dynode_options(0.2, False, {"rtol": 1e-8})
    dy = np.zeros(module.N_STATES)

    def f(t, y):
        module.rhs(t, y, p, dy)
        return dy

    samples: dict = {"compiled": [], "scipy": []}
    solvers = {
        "compiled": CompiledExplicitIntegrator(module, p, 0.0, y0, method, options, state_namer(module)),
        "scipy": ScipyOdeIntegrator(f, None, 0.0, y0, method, options, state_namer(module)),
    }
    for name, solver in solvers.items():
        into = samples[name]
        run_observed(solver, 0.0, 4.0, 0.2, lambda t, y, *_, into=into: into.append((t, y.copy())) is not None)
    assert len(samples["compiled"]) == len(samples["scipy"]) == 21
    for (t1, y1), (t2, y2) in zip(samples["compiled"], samples["scipy"]):
        assert_allclose(t1, t2, rtol=RTOL, atol=ATOL)
        assert_allclose(y1, y2, rtol=RTOL, atol=ATOL)


def test_options_are_scipys() -> None:
    settings = explicit_settings("dopri5", {"verbosity": 1, "method": "adams", "first_step": 0.1})
    assert settings.first_step == 0.1 and settings.ifactor == 10.0 and settings.dfactor == 0.2
    assert explicit_settings("dop853", {}).ifactor == 6.0
    with pytest.raises(DyngenError, match="does not take 'order'"):
        explicit_settings("dopri5", {"order": 4})
    with pytest.raises(DyngenError, match="atol must be a real number"):
        explicit_settings("dop853", {"atol": [1e-6, 1e-8]})
    with pytest.raises(DyngenError, match="nsteps must be an integer"):
        explicit_settings("dopri5", {"nsteps": 100.5})
    with pytest.raises(DyngenError, match="no compiled explicit integrator"):
        explicit_settings("vode", {})
    module = module_of("stiff")
    with pytest.raises(DyngenError, match="does not take"):
        CompiledExplicitIntegrator(module, module.DEFAULT_PARAMETERS, 0.0, module.DEFAULT_STATES, "dopri5", {"tol": 1}, str)


def test_coefficients_are_the_routines_doubles() -> None:
    module = compiled_methods  # the standalone modules carry the same lines (test_shared_integrators)
    assert module._DOPRI5_A51 == 19372.0 / 6561.0
    assert module._DOPRI5_E5 == -17253.0 / 339200.0
    assert module._DOP853_A1110 == float("-3.0467644718982195003823669022e0")
    assert module._DOP853_ER12 == float("-0.2235530786388629525884427845e-01")


def test_the_error_norms_sum_of_squares_adds_every_element() -> None:
    """_sum_of_squares interleaves eight partial sums and adds a tail: every length
    from 0 to 40 must give the plain sum to rounding."""
    module = compiled_methods
    rng = np.random.default_rng(7)
    for n in range(41):
        x = rng.normal(size=n) * 10.0 ** rng.integers(-3, 4, size=n)
        assert module._sum_of_squares(x, n) == pytest.approx(float(np.sum(x * x)), rel=1e-14, abs=0.0)
