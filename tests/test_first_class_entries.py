"""The raw entries dyngen's shared integrators call (``raw_rhs``... through
``first_class.ModelEntry``): the plain functions' numbers bit for bit, and through them
the same trajectories as a module's own integrators (``--standalone``) and as dynode.

coupled_vanderpol (4 states) runs in the shared DOPRI5/DOP853's small-state variant
(loops to min(n, 8)), oscillator_ring (16 states) in the variant with loops to n.
"""

from __future__ import annotations

import types
from pathlib import Path

import numpy as np
import pytest
from numba import njit
from numba.core.errors import TypingError

import ensemble_events_model
from dynode_compare import assert_same_runs, build_simulation, run_both
from dyngen import Recorder
from dyngen.runtime.compiled_methods import SMALL_STATES
from dyngen.runtime.first_class import (
    apply_function, events_function, jac_function, model_functions, observe_function, rhs_function,
)  # fmt: skip

ROOT = Path(__file__).resolve().parent.parent
SMALL = ROOT / "examples" / "coupled_vanderpol.py"
LARGER = ROOT / "examples" / "oscillator_ring.py"
EXAMPLES = [SMALL, LARGER]
IDS = [p.stem for p in EXAMPLES]


@njit
def through_entries(functions, t, y, p, dy, out, J):  # noqa: ANN001, ANN201
    """rhs, observe and jac called as the shared integrators call them."""
    rhs_function(functions)(t, y, p, dy)
    observe_function(functions)(t, y, p, out)
    jac_function(functions)(t, y, p, J)


@njit
def events_through_entries(functions, t, y, p, g, which):  # noqa: ANN001, ANN201
    events_function(functions)(t, y, p, g)
    apply_function(functions)(which, t, y, p)


def shared_module(path: Path) -> object:
    sim = build_simulation(path, "dyngen")
    sim.standalone = False
    return sim.compile().module


def test_the_examples_cover_both_variants() -> None:
    sizes = [shared_module(path).N_STATES for path in EXAMPLES]
    assert sizes[0] <= SMALL_STATES < sizes[1]


@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_the_raw_entries_give_the_plain_functions_numbers_bit_for_bit(example: Path) -> None:
    module = shared_module(example)
    assert not hasattr(module, "run_dopri5")  # the shared integrators' module, not a standalone one
    functions = model_functions(module).addresses(observe=True, jac=True)
    n, m = module.N_STATES, module.N_OBSERVED
    rng = np.random.default_rng(7)
    for _ in range(5):
        t = float(rng.uniform(0.0, 10.0))
        y = module.DEFAULT_STATES + rng.normal(size=n)
        p = module.DEFAULT_PARAMETERS * rng.uniform(0.5, 1.5, size=module.N_PARAMETERS)
        dy, out, J = np.full(n, np.nan), np.full(m, np.nan), np.full((n, n), np.nan)
        through_entries(functions, t, y, p, dy, out, J)
        plain = np.empty(n), np.empty(m), np.empty((n, n))
        module.rhs(t, y, p, plain[0])
        module.observe(t, y, p, plain[1])
        module.jac(t, y, p, plain[2])
        for got, expected in zip((dy, out, J), plain):
            assert np.array_equal(got, expected)
        assert np.isfinite(dy).all() and np.isfinite(J).all()


def test_the_event_entries_give_the_plain_functions_numbers_bit_for_bit() -> None:
    sim = ensemble_events_model.build_thermostat()  # actions that write states and parameters
    sim.standalone = False
    module = sim.compile().module
    functions = model_functions(module).addresses(events=True)
    rng = np.random.default_rng(3)
    for which in range(module.N_EVENTS):
        t = float(rng.uniform(0.0, 5.0))
        y = module.DEFAULT_STATES + rng.normal(size=module.N_STATES)
        p = module.DEFAULT_PARAMETERS.copy()
        g, y_entry, p_entry = np.full(module.N_EVENTS, np.nan), y.copy(), p.copy()
        events_through_entries(functions, t, y_entry, p_entry, g, which)
        expected_g = np.empty(module.N_EVENTS)
        module.events(t, y, p, expected_g)
        module.apply_event(which, t, y, p)
        assert np.array_equal(g, expected_g)
        assert np.array_equal(y_entry, y) and np.array_equal(p_entry, p)


def test_an_entry_refuses_arrays_it_cannot_pass_as_a_pointer() -> None:
    """A strided view has no single data pointer of consecutive values: refused when numba compiles the call."""
    module = shared_module(SMALL)
    functions = model_functions(module).addresses()

    @njit
    def strided(functions, y, p, dy):  # noqa: ANN001, ANN202
        rhs_function(functions)(0.0, y[::2], p, dy)

    with pytest.raises(TypingError):
        strided(functions, np.zeros(2 * module.N_STATES), module.DEFAULT_PARAMETERS, np.zeros(module.N_STATES))


def test_an_exception_in_the_entry_propagates_to_the_caller() -> None:
    """A model function that raises (a module without a Jacobian raises in jac) raises
    through the entry's call as in a direct call."""

    @njit
    def raw_rhs(t, y, n_y, p, n_p, dy, n_dy):  # noqa: ANN001, ANN202
        raise ValueError("no derivatives here")

    module = types.SimpleNamespace(N_STATES=2, N_PARAMETERS=1, N_OBSERVED=0, raw_rhs=raw_rhs)
    functions = model_functions(module).addresses()
    with pytest.raises(ValueError, match="no derivatives here"):
        through_rhs(functions, np.zeros(2), np.zeros(1), np.zeros(2))


@njit
def through_rhs(functions, y, p, dy):  # noqa: ANN001, ANN201
    rhs_function(functions)(0.0, y, p, dy)


def recorded(example: Path, standalone: bool, integrator: str) -> dict:
    sim = build_simulation(example, "dyngen")
    sim.standalone = standalone
    recorder = Recorder()
    for system in sim.systems:
        recorder.store(system, "states")
        recorder.store(system, "outputs")
    sim.add_observer(recorder)
    sim.simulate(5.0, 0.05, integrator=integrator)
    module = sim.compile().module
    assert hasattr(module, "run_dopri5") == standalone
    return {(i, key): np.asarray(values) for i, (_, series) in enumerate(recorder.results.items()) for key, values in series.items()}


@pytest.mark.slow  # a standalone module per example: numba compiles its own integrators
@pytest.mark.parametrize("integrator", ["dopri5", "dop853"])
@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_simulate_on_the_shared_integrators_equals_the_modules_own_bit_for_bit(example: Path, integrator: str) -> None:
    shared = recorded(example, False, integrator)
    own = recorded(example, True, integrator)
    assert shared.keys() == own.keys()
    for key in shared:
        assert shared[key].shape[0] == 101
        assert np.array_equal(shared[key], own[key]), key


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["dopri5", "dop853"])
@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_simulate_on_the_shared_integrators_matches_dynode(example: Path, integrator: str) -> None:
    def make(backend: str) -> object:
        sim = build_simulation(example, backend)
        if backend == "dyngen":
            sim.standalone = False  # the shared integrators, whatever the model has run before
        return sim

    ours, theirs = run_both(make, 5.0, 0.05, integrator=integrator)
    assert len(ours.observed_t) == 101
    assert_same_runs(ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["dopri5", "dop853"])
@pytest.mark.parametrize("example", EXAMPLES, ids=IDS)
def test_an_ensemble_on_the_shared_integrators_equals_one_on_the_modules_own(example: Path, integrator: str) -> None:
    results = []
    for standalone in (False, True):
        sim = build_simulation(example, "dyngen")
        sim.standalone = standalone
        path, entries = next(iter(sim.compile().module.PARAMETERS.items()))
        name = f"{path}.{next(iter(entries))}"  # the first system's first parameter (mu)
        results.append(sim.ensemble(3.0, 0.1, members={name: [0.5, 1.0, 2.0, 3.5]}, integrator=integrator, threads=2, chunk_size=1))
    shared, own = results
    assert (shared["status"].values == 1).all()
    assert set(shared.data_vars) == set(own.data_vars)
    for variable in shared.data_vars:
        np.testing.assert_array_equal(shared[variable].values, own[variable].values, err_msg=variable)
