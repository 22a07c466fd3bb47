"""dynode 0.4's public API in dyngen: names and import paths, the state/der vector
methods, the built-in exception classes, constant ders and any callable as a
connection -- each checked against the real dynode running the same code.

The models are defined once per library (``_models(lib)``), so dynode and dyngen run
exactly the same class bodies; only the base class differs.
"""

from __future__ import annotations

import functools
import importlib
import types
from typing import Any
from unittest import mock

import numpy as np
import pytest

import dynode
import dynode.simulation
import dyngen
from dyngen.errors import ModelError, TraceError, UsageError

# A model that behaves differently from dynode warns; none of these should.
pytestmark = pytest.mark.filterwarnings("error::dyngen.DyngenWarning")

LIBS = {"dynode": dynode, "dyngen": dyngen}
TIGHT = {"atol": 1e-11, "rtol": 1e-11, "nsteps": 100000}
THIS_FILE = __file__.rsplit("/", 1)[-1]


def _models(lib: types.ModuleType) -> types.SimpleNamespace:
    """The test models, written once against ``lib``'s ``SystemInterface``."""

    class Pair(lib.SystemInterface):
        """A scalar and a vector state; ders named apart from the states (paired by position)."""

        def __init__(self, x0: float = 1.0) -> None:
            super().__init__()
            self.states.x = x0
            self.states.q = [1.0, 2.0, 3.0]
            self.ders.dx = 0.0
            self.ders.dq = [0.0, 0.0, 0.0]
            self.inputs.k = 0.5

        def do_step(self, time):
            self.ders.dx = -self.inputs.k * self.states.x
            self.ders.dq = -self.states.q

    class Composite(lib.SystemInterface):
        def __init__(self) -> None:
            super().__init__()
            self.add_subsystem(Pair(2.0))
            self.add_subsystem(Pair(3.0))
            self.states.z = np.array([[1.0, 2.0], [3.0, 4.0]])
            self.ders.z = np.zeros((2, 2))

        def do_step(self, time):
            self.ders.z = -2.0 * self.states.z

    class Drift(lib.SystemInterface):
        """``x`` and ``r`` have ders only __init__ sets (dynode integrates them as constant
        derivatives); ``v`` follows ``x`` and reads the constant der ``dx`` itself."""

        def __init__(self) -> None:
            super().__init__()
            self.states.x = 1.0
            self.states.v = 0.0
            self.states.r = [0.0, 1.0, 2.0]
            self.ders.dx = 0.5
            self.ders.dv = 0.0
            self.ders.dr = [1.0, -1.0, 0.25]

        def do_step(self, time):
            self.ders.dv = self.states.x - self.states.v + 0.1 * self.ders.dx

    class Conveyor(lib.SystemInterface):
        """A vector long enough for the array form, moved at constant speeds."""

        def __init__(self, n: int = 70) -> None:
            super().__init__()
            self.states.p = np.zeros(n)
            self.ders.p = np.linspace(0.0, 1.0, n)
            self.states.s = np.ones(n)
            self.ders.s = np.zeros(n)

        def do_step(self, time):
            self.ders.s = -self.states.s

    class MissingDer(lib.SystemInterface):
        """Three state elements, two der elements: dynode's 'Mismatch in number of states and ders!'."""

        def __init__(self) -> None:
            super().__init__()
            self.states.x = [1.0, 2.0]
            self.states.y = 0.0
            self.ders.dx = 0.0
            self.ders.dy = 0.0

        def do_step(self, time):
            pass

    class Plant(lib.SystemInterface):
        """x'' = f_spring + f_damp + f_drive, the forces set by three connections."""

        def __init__(self) -> None:
            super().__init__()
            self.states.x = 1.0
            self.states.v = 0.0
            self.ders.x = 0.0
            self.ders.v = 0.0
            self.inputs.f_spring = 0.0
            self.inputs.f_damp = 0.0
            self.inputs.f_drive = 0.0

        def do_step(self, time):
            self.ders.x = self.states.v
            self.ders.v = self.inputs.f_spring + self.inputs.f_damp + self.inputs.f_drive

    class Spring:
        """A connection object: ``__call__`` plus a bound method used as a second connection."""

        def __init__(self, k: float) -> None:
            self.k = k

        def __call__(self, system, time):
            system.inputs.f_spring = -self.k * system.states.x

        def damper(self, system, time):
            system.inputs.f_damp = -0.2 * system.states.v

    def drive(system, time, amplitude, omega=1.0):
        system.inputs.f_drive = amplitude * np.sin(omega * time)

    return types.SimpleNamespace(**{k: v for k, v in locals().items() if k != "lib"})


MODELS = {name: _models(lib) for name, lib in LIBS.items()}


def _simulate(lib: str, system: Any, t: float, dt: float) -> tuple[Any, list[np.ndarray]]:
    sim = LIBS[lib].Simulation()
    sim.add_system(system)
    seen: list[np.ndarray] = []
    sim.add_observer(lambda time, y: seen.append(np.array(y)))
    sim.simulate(t, dt, **TIGHT)
    return sim, seen


# ----------------------------------------------------------------- names and paths

# What dynode's modules show besides its API: helpers they import for themselves.
_HELPER_IMPORTS = {"Callable", "List", "Optional", "Type", "Union", "Sequence", "np", "ode", "partial",
                   "ABC", "abstractmethod", "TopologicalSorter", "deepcopy", "attrgetter", "defaultdict"}  # fmt: skip


@pytest.mark.parametrize("module", ["", ".system", ".containers", ".simulation", ".recorder"])
def test_every_public_dynode_name_is_in_dyngen_at_the_same_path(module: str) -> None:
    theirs = importlib.import_module("dynode" + module)
    ours = importlib.import_module("dyngen" + module)
    names = [n for n in dir(theirs) if not n.startswith("_") and n not in _HELPER_IMPORTS]
    assert names  # the filter keeps dynode's API
    missing = [n for n in names if not hasattr(ours, n)]
    assert missing == []
    for name in names:  # submodules are submodules, classes classes, functions functions
        assert isinstance(getattr(ours, name), types.ModuleType) == isinstance(getattr(theirs, name), types.ModuleType)
        assert callable(getattr(ours, name)) == callable(getattr(theirs, name)), name
    # the helpers skipped above are not dynode's API: imports of typing, numpy, scipy...
    assert all(getattr(getattr(theirs, n), "__module__", "") != theirs.__name__ for n in _HELPER_IMPORTS if hasattr(theirs, n))


def test_top_level_aliases_are_the_same_objects() -> None:
    assert dyngen.simulation.Simulation is dyngen.Simulation is dyngen.runtime.simulation.Simulation
    assert dyngen.recorder.Recorder is dyngen.Recorder
    assert dyngen.VariableContainer is dyngen.containers.VariableContainer
    assert set(dyngen.AnyContainer.__args__) == {dyngen.VariableContainer, dyngen.ParameterContainer}


# ------------------------------------------------------------- the vector methods


def test_get_states_dispatch_states_and_get_ders_walk_the_tree_as_dynode_does() -> None:
    vectors = {}
    for lib, models in MODELS.items():
        system = models.Composite()
        states = system.get_states()
        new = np.arange(states.size, dtype=float) * 0.5 - 3.0
        used = system.dispatch_states(0, new)
        system.do_step(0.0)  # plain containers: do_step runs as Python
        for sub in system.subsystems:
            sub.do_step(0.0)
        ders = np.full(states.size + 2, np.nan)
        end = system.get_ders(1, ders)
        vectors[lib] = (states, used, system.get_states(), ders, end, system.subsystems[1].states.q.copy())
    for ours, theirs in zip(vectors["dyngen"], vectors["dynode"]):
        np.testing.assert_array_equal(ours, theirs)
    assert vectors["dyngen"][1] == 12  # 2 x (1 + 3) states of the subsystems, then z's 4
    np.testing.assert_array_equal(vectors["dyngen"][2], np.arange(12) * 0.5 - 3.0)


@pytest.mark.slow
def test_dispatch_states_writes_in_place_and_the_next_run_starts_from_it() -> None:
    system = MODELS["dyngen"].Pair()
    sim, _ = _simulate("dyngen", system, 0.5, 0.5)
    q = system.states.q
    system.dispatch_states(0, np.array([4.0, 1.0, 1.0, 1.0]))
    assert system.states.q is q  # dynode writes into the arrays the containers hold
    np.testing.assert_array_equal(q, [1.0, 1.0, 1.0])
    sim.simulate(1.0, 1.0, **TIGHT)
    np.testing.assert_allclose(system.states.x, 4.0 * np.exp(-0.5), rtol=1e-9)
    np.testing.assert_allclose(system.states.q, np.exp(-1.0) * np.ones(3), rtol=1e-9)


def test_the_vector_methods_inside_do_step_are_a_trace_error() -> None:
    class Peeks(dyngen.SystemInterface):
        def __init__(self) -> None:
            super().__init__()
            self.states.x = 1.0
            self.ders.x = 0.0

        def do_step(self, time):
            self.ders.x = -self.get_states()[0]  # <peek>

    sim = dyngen.Simulation()
    sim.add_system(Peeks())
    with pytest.raises(TraceError, match="get_states") as info:
        sim.simulate(1.0, 0.1)
    assert f"{THIS_FILE}:{info.value.location.line}" in str(info.value)
    assert "<peek>" in open(info.value.location.file).read().splitlines()[info.value.location.line - 1]


def test_module_level_vector_functions_match_dynode() -> None:
    results = {}
    for lib, models in MODELS.items():
        simulation = importlib.import_module(f"{lib}.simulation")
        systems = [models.Pair(), models.Composite()]
        y = simulation.collect_states(systems)
        simulation.dispatch_states(y[::-1].copy(), systems)
        ders = np.zeros(y.size)
        simulation.collect_ders(ders, systems)
        with pytest.raises(RuntimeError):
            simulation.dispatch_states(np.zeros(y.size + 1), systems)
        with pytest.raises(RuntimeError):
            simulation.collect_ders(np.zeros(y.size + 1), systems)
        results[lib] = (y, simulation.collect_states(systems), ders)
    for ours, theirs in zip(results["dyngen"], results["dynode"]):
        np.testing.assert_array_equal(ours, theirs)


# ------------------------------------------------------------------- exceptions


def _raised(call) -> BaseException:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the class is what is compared
        return exc
    raise AssertionError("no exception")


def _api_misuses(lib: str) -> dict[str, Any]:
    models, package = MODELS[lib], LIBS[lib]

    def system_twice():
        sim, system = package.Simulation(), models.Pair()
        sim.add_system(system)
        sim.add_system(system)  # <twice>

    def observer_twice():
        sim, observer = package.Simulation(), print
        sim.add_observer(observer)
        sim.add_observer(observer)

    def connection_twice(kind):
        def add():
            system, connection = models.Plant(), models.Spring(1.0)
            getattr(system, f"add_{kind}_connection")(connection)
            getattr(system, f"add_{kind}_connection")(connection)

        return add

    def self_as_subsystem():
        system = models.Pair()
        system.add_subsystem(system)

    def missing_der():
        sim = package.Simulation()
        sim.add_system(models.MissingDer())
        sim.simulate(1.0, 0.1)

    def no_systems():
        package.Simulation().simulate(1.0, 0.1)

    return {
        "system twice": system_twice, "observer twice": observer_twice,
        "pre-connection twice": connection_twice("pre"), "post-connection twice": connection_twice("post"),
        "self as subsystem": self_as_subsystem, "states and ders do not pair up": missing_der,
        "no systems": no_systems,
    }  # fmt: skip


def _dynode_mismatch() -> None:
    """What dynode's simulate() raises for MissingDer before scipy's dopri5 masks it
    (as 'ValueError: Function to integrate must not return a tuple')."""
    systems = [MODELS["dynode"].MissingDer()]
    dynode.simulation.collect_ders(np.zeros_like(dynode.simulation.collect_states(systems)), systems)


@pytest.mark.parametrize("case", list(_api_misuses("dyngen")))
def test_errors_are_the_built_in_class_dynode_raises(case: str) -> None:
    dynode_case = _dynode_mismatch if case == "states and ders do not pair up" else _api_misuses("dynode")[case]
    theirs = _raised(dynode_case)
    ours = _raised(_api_misuses("dyngen")[case])
    assert type(theirs) in (ValueError, RuntimeError)
    assert isinstance(ours, type(theirs))
    assert isinstance(ours, dyngen.DyngenError)
    assert str(theirs).split("(")[0].strip() in str(ours)  # dynode's words, then where and what to do


def test_usage_errors_name_the_line_of_the_call() -> None:
    error = _raised(_api_misuses("dyngen")["system twice"])
    assert isinstance(error, UsageError)
    assert f"{THIS_FILE}:" in str(error) and error.location.line > 0
    source = open(error.location.file).read().splitlines()[error.location.line - 1]
    assert "<twice>" in source


def test_a_der_bigger_than_its_state_is_a_runtime_error() -> None:
    """dynode's collect_ders fails here on numpy's broadcast (a ValueError) before its
    own RuntimeError check; dyngen reports every pairing problem as that RuntimeError."""
    systems = [MODELS["dynode"].Pair()]
    systems[0].ders.dx = [0.0, 0.0]
    with pytest.raises(ValueError):
        dynode.simulation.collect_ders(np.zeros_like(dynode.simulation.collect_states(systems)), systems)

    class Bad(dyngen.SystemInterface):
        def __init__(self) -> None:
            super().__init__()
            self.states.x = 0.0
            self.ders.dx = [0.0, 0.0]

        def do_step(self, time):
            pass

    sim = dyngen.Simulation()
    sim.add_system(Bad())
    with pytest.raises(RuntimeError, match="Mismatch in number of states and ders") as info:
        sim.simulate(1.0, 0.1)
    assert isinstance(info.value, ModelError) and "Bad.__init__ sets" in str(info.value)


# ----------------------------------------------------------------- constant ders


@pytest.mark.slow
def test_a_der_only_init_sets_is_a_constant_derivative_read_at_each_run() -> None:
    """Four copies of Drift (lowered as one loop over the copies) and a vector in array
    form: each constant der is a parameter, so a new value needs no rebuild."""
    runs = {}
    for lib, models in MODELS.items():
        drifts, conveyor = [models.Drift() for _ in range(4)], models.Conveyor()
        sim = LIBS[lib].Simulation()
        for system in [*drifts, conveyor]:
            sim.add_system(system)
        seen: list[np.ndarray] = []
        sim.add_observer(lambda time, y: seen.append(np.array(y)))
        sim.simulate(2.0, 0.5, **TIGHT)
        module = getattr(sim, "module", None)
        drifts[0].ders.dx = -1.0  # a new slope, as a parameter: no rebuild
        drifts[2].ders.dr = [0.0, 2.0, -2.0]
        conveyor.ders.p = np.full(70, -0.5)
        sim.simulate(1.0, 0.5, **TIGHT)
        assert getattr(sim, "module", None) is module
        runs[lib] = (np.array(seen), conveyor.states.p.copy(), drifts[0].ders.dx, drifts[2].ders.dr.copy())
    np.testing.assert_allclose(runs["dyngen"][0], runs["dynode"][0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(runs["dyngen"][1], runs["dynode"][1], rtol=0, atol=1e-10)
    assert runs["dyngen"][2] == runs["dynode"][2] == -1.0
    np.testing.assert_array_equal(runs["dyngen"][3], runs["dynode"][3])
    # closed forms: x = 1 + 0.5 t up to t = 2, then 2 - (t - 2); r = r0 + c t; p = c t
    y = runs["dyngen"][0]
    times = np.arange(len(y)) * 0.5
    np.testing.assert_allclose(y[:, 0], np.where(times <= 2, 1 + 0.5 * times, 2 - (times - 2)), atol=1e-12)
    np.testing.assert_allclose(y[:, 5], 1 + 0.5 * times, atol=1e-12)  # the second copy keeps its slope
    np.testing.assert_allclose(y[4, 2:5], [2.0, -1.0, 2.5], atol=1e-12)
    np.testing.assert_allclose(y[6, 12:15], [2.0, 1.0, 0.5], atol=1e-12)  # the third copy's new r slope
    np.testing.assert_allclose(runs["dyngen"][1], np.linspace(0.0, 1.0, 70) * 2 - 0.5, atol=1e-12)


def test_reading_a_der_before_the_function_that_writes_it_is_still_refused() -> None:
    class ReadsFirst(dyngen.SystemInterface):
        def __init__(self) -> None:
            super().__init__()
            self.states.x = 1.0
            self.ders.x = 0.0
            self.outputs.seen = 0.0

        def do_step(self, time):
            self.outputs.seen = self.ders.x  # <stale>
            self.ders.x = -self.states.x

    sim = dyngen.Simulation()
    sim.add_system(ReadsFirst())
    with pytest.raises(TraceError, match="before any function has written it") as info:
        sim.simulate(1.0, 0.1)
    assert f"{THIS_FILE}:" in str(info.value)
    line = open(info.value.location.file).read().splitlines()[info.value.location.line - 1]
    assert "<stale>" in line


# -------------------------------------------------------------- any callable


def test_any_callable_can_be_added_without_touching_its_attributes() -> None:
    for lib, models in MODELS.items():
        system = models.Plant()
        strict = mock.Mock(spec=["__call__"])  # reading any other attribute would fail
        remove = system.add_pre_connection(strict)
        remove()
        loose = mock.Mock()  # its invented `dependees` is kept as given, not iterated at add time
        system.add_post_connection(loose)
        with pytest.raises(ValueError):
            system.add_post_connection(loose)
        system.add_pre_connection(len)  # a builtin
        system.add_pre_connection(functools.partial(models.drive, amplitude=1.0))
        assert strict.call_count == 0 and loose.call_count == 0, lib


@pytest.mark.slow
def test_a_callable_object_a_bound_method_and_a_partial_as_connections_give_dynodes_results() -> None:
    runs = {}
    for lib, models in MODELS.items():
        plant, spring = models.Plant(), models.Spring(4.0)
        drive = functools.partial(models.drive, amplitude=0.3, omega=2.0)
        plant.add_pre_connection(spring)
        plant.add_pre_connection(spring.damper, dependees=[spring])
        plant.add_pre_connection(drive, dependees=[spring.damper])
        sim, seen = _simulate(lib, plant, 3.0, 0.5)
        drive.keywords["amplitude"] = 1.5  # edited in place: the next run uses it
        sim.simulate(2.0, 0.5, **TIGHT)
        runs[lib] = (np.array(seen), plant.get_states())
    np.testing.assert_allclose(runs["dyngen"][0], runs["dynode"][0], rtol=0, atol=1e-10)
    np.testing.assert_allclose(runs["dyngen"][1], runs["dynode"][1], rtol=0, atol=1e-10)


def test_connection_names_and_locations_in_the_trace() -> None:
    from dyngen.tree import FunctionCall, SystemNode, function_location, function_name

    models = MODELS["dyngen"]
    node = SystemNode("plant", models.Plant())
    spring = models.Spring(1.0)
    cases = {
        "_models.<locals>.Spring.__call__": spring,
        "_models.<locals>.Spring.damper": spring.damper,
        "partial(_models.<locals>.drive)": functools.partial(models.drive, amplitude=1.0),
        "len": len,
    }
    for expected, func in cases.items():
        assert function_name(FunctionCall(node, "pre-connection", func)) == expected
    assert function_location(spring).line == models.Spring.__call__.__code__.co_firstlineno
    assert function_location(cases["partial(_models.<locals>.drive)"]).line == models.drive.__code__.co_firstlineno
    assert function_location(len) is None
