"""Every bad model gives its own dyngen error, pointing at the offending line.

Each error names the system path, the function and the model's ``file:line`` (the
line numbers are found from the ``# <tag>`` markers in this file, never hard-coded)
and says what to write instead.  A model that fails to build leaves nothing in the
module cache.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import dyngen
from dyngen import (
    AlgebraicLoopError,
    DyngenError,
    DyngenWarning,
    ModelError,
    Simulation,
    SolverError,
    System,
    TraceError,
    connect_signals,
    where,
)

HERE = Path(__file__).resolve()
FILE = HERE.name


def line_of(tag: str) -> int:
    """The line of this file that ends with the marker comment ``# <tag>``."""
    marker = "# <" + tag + ">"
    hits = [n for n, text in enumerate(HERE.read_text().splitlines(), 1) if text.rstrip().endswith(marker)]
    assert len(hits) == 1, f"marker {marker!r} found {len(hits)} times"
    return hits[0]


def at(tag: str) -> str:
    """``test_errors.py:<line>`` of a marker, as error messages show it."""
    return f"{FILE}:{line_of(tag)}"


def build_fails(cache: Path, *systems, error: type[Exception] = DyngenError) -> Exception:
    """Build the model in a private cache; it must raise ``error`` and write nothing."""
    sim = Simulation(cache_dir=cache)
    for system in systems:
        sim.add_system(system)
    with pytest.raises(error) as info:
        sim.compile()
    leftovers = sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) if cache.exists() else []
    assert leftovers == [], f"a failed build left files in the cache: {leftovers}"
    return info.value


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


# --------------------------------------------------------------------------- models


class Base(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0
        self.inputs.u = 0.0
        self.outputs.y = 0.0


class IfOnVector(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.q = [1.0, 2.0]

    def do_step(self, time):
        q = self.states.q
        self.ders.q = -q if q > 0 else q  # <if-vector>


class Interp(Base):
    def do_step(self, time):
        self.ders.x = np.interp(self.states.x, [0.0, 1.0], [0.0, self.states.x])  # <interp>


class IndexList(Base):
    def __init__(self) -> None:
        super().__init__()
        self.table = [1.0, 2.0]

    def do_step(self, time):
        self.ders.x = self.table[self.states.x]  # <index-list>


class IndexArray(Base):
    def __init__(self) -> None:
        super().__init__()
        self.table = np.array([1.0, 2.0])

    def do_step(self, time):
        self.ders.x = self.table[self.states.x]  # <index-array>


class WhileOnState(Base):
    def do_step(self, time):
        x, n = self.states.x, 0.0
        while x > 1.0:  # <while>
            x = x / 2
            n += 1
        self.ders.x = -n


class RangeOfState(Base):
    def do_step(self, time):
        total = 0.0
        for i in range(self.states.x):  # <range>
            total += i
        self.ders.x = total


class WritesState(Base):
    def do_step(self, time):
        self.states.x = 2.0  # <write-state>
        self.ders.x = 0.0


class ReadsDerFirst(Base):
    def __init__(self) -> None:
        super().__init__()
        self.ders.x = 0.0  # dynode would read this stale value in do_step

    def do_step(self, time):
        previous = self.ders.x  # <read-der>
        self.ders.x = -self.states.x + 0.0 * previous


class WritesString(Base):
    def do_step(self, time):
        self.ders.x = -self.states.x
        self.outputs.y = "fast"  # <write-string>


class MissingInput(Base):
    def do_step(self, time):
        self.ders.x = -self.inputs.gain * self.states.x  # <missing-key>


class NoDer(Base):
    def __init__(self) -> None:
        super().__init__()
        self.states.v = 0.0  # <no-der-state>

    def do_step(self, time):  # <no-der-do-step>
        self.ders.x = self.states.v


class DerShape(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.q = [1.0, 2.0, 3.0]

    def do_step(self, time):
        self.ders.q = -self.states.q[:2]  # <der-shape>


class ExtraDer(Base):
    def do_step(self, time):
        self.ders.x = -self.states.x
        self.ders.z = 1.0  # <extra-der>


class WritesY(Base):
    def do_step(self, time):
        self.ders.x = -self.states.x
        self.outputs.y = self.states.x  # <first-writer>


def second_writer(system, time):
    system.outputs.y = 2.0 * system.states.x  # <second-writer>


class Feedthrough(Base):
    """y = u + x: an instantaneous path from input to output."""

    def do_step(self, time):
        self.ders.x = -self.states.x
        self.outputs.y = self.inputs.u + self.states.x  # <feedthrough>


class Wrapper(Base):
    def __init__(self, inner: System) -> None:
        super().__init__()
        self.inner = inner
        self.add_subsystem(inner)

    def do_step(self, time):
        self.ders.x = -self.states.x


class Squared(System):
    """dx/dt = x^2 blows up at t = 1 (x(0) = 1)."""

    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0

    def do_step(self, time):
        self.ders.x = self.states.x**2


class Jump(System):
    """The derivative becomes infinite after t = 0.3."""

    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0

    def do_step(self, time):
        self.ders.x = where(time > 0.3, np.inf, 0.0)


def named(system: System, name: str) -> System:
    system.name = name
    return system


# ------------------------------------------------------------------ the hierarchy


def test_error_classes() -> None:
    for cls in (TraceError, ModelError, AlgebraicLoopError, SolverError, dyngen.CodegenError):
        assert issubclass(cls, DyngenError)
    assert issubclass(AlgebraicLoopError, ModelError)
    assert issubclass(SolverError, RuntimeError)
    assert issubclass(DyngenWarning, UserWarning)


# ----------------------------------------------------------------- trace errors


UNTRACEABLE = [
    # class, marker, the problem as stated, what the hint suggests
    (IfOnVector, "if-vector", "`if`", "where("),
    (Interp, "interp", "np.interp with a traced table fp", "k * np.interp(x, xp, fp)"),
    (IndexList, "index-list", "indexing", "constant"),
    (RangeOfState, "range", "range", "constant"),
    (WhileOnState, "while", "`while` loop whose condition depends on a traced value", "for i in range(n)"),
    (WritesState, "write-state", "states are set by the integrator", "self.ders.x ="),
    (ReadsDerFirst, "read-der", "plant.ders.x before", "write the der first"),
    (WritesString, "write-string", "'fast' (a str)", "plain attributes"),
]


@pytest.mark.parametrize("cls, tag, problem, hint", UNTRACEABLE, ids=[row[1] for row in UNTRACEABLE])
def test_untraceable_code_is_a_trace_error_at_its_line(cache, cls, tag, problem, hint) -> None:
    error = build_fails(cache, named(cls(), "plant"), error=TraceError)
    message = str(error)
    assert f"{cls.__name__}.do_step" in message  # the function
    assert "'plant'" in message  # the system path
    assert at(tag) in message  # the model's file:line
    assert error.location is not None and error.location.line == line_of(tag)
    assert problem in message
    assert "write instead" in message and hint in message


def test_a_trace_error_in_a_subsystem_names_its_path(cache) -> None:
    outer = named(Wrapper(RangeOfState()), "top")
    message = str(build_fails(cache, outer, error=TraceError))
    assert "'top.inner'" in message
    assert "RangeOfState.do_step" in message
    assert at("range") in message


def test_indexing_a_numpy_array_with_a_state_is_a_trace_error(cache) -> None:
    message = str(build_fails(cache, IndexArray(), error=TraceError))
    assert "IndexArray.do_step" in message and "'IndexArray'" in message
    assert at("index-array") in message
    assert "index" in message.lower() and "constant indexing" in message


def test_reading_a_missing_key_names_the_key_and_the_known_ones(cache) -> None:
    error = build_fails(cache, named(MissingInput(), "plant"), error=TraceError)
    message = str(error)
    assert "MissingInput.do_step" in message and "'plant'" in message
    assert at("missing-key") in message
    assert "no inputs 'gain'" in message and "KeyError" in message
    assert "['u']" in message  # the keys that do exist


def test_a_missing_key_read_by_connect_signals_points_at_the_connection(cache) -> None:
    a, b = Feedthrough(), Feedthrough()
    a.add_post_connection(connect_signals(a.outputs, "nope", b.inputs, "u"))  # <missing-link>
    message = str(build_fails(cache, a, b, error=TraceError))
    assert "connect_signals" in message and "'Feedthrough[0]'" in message
    assert "no outputs 'nope'" in message
    assert at("missing-link") in message


def test_a_lambda_touching_a_system_outside_the_simulation(cache) -> None:
    inside, outside = named(Feedthrough(), "inside"), Feedthrough()
    inside.add_post_connection(lambda s, t: setattr(outside.inputs, "u", s.outputs.y))  # <foreign-lambda>
    message = str(build_fails(cache, inside, error=TraceError))
    assert "<lambda>" in message and "'inside'" in message
    assert "not part of the simulation" in message
    assert at("foreign-lambda") in message
    assert "add_system" in message  # what to do


def test_connect_signals_to_a_system_outside_the_simulation(cache) -> None:
    inside, outside = named(Feedthrough(), "inside"), Feedthrough()
    inside.add_post_connection(connect_signals(inside.outputs, "y", outside.inputs, "u"))  # <foreign-link>
    message = str(build_fails(cache, inside, error=TraceError))
    assert "connect_signals" in message and "'inside'" in message
    assert "not part of the simulation" in message
    assert at("foreign-link") in message


def test_reading_from_a_system_outside_the_simulation(cache) -> None:
    inside, outside = named(Feedthrough(), "inside"), Feedthrough()
    inside.add_pre_connection(connect_signals(outside.outputs, "y", inside.inputs, "u"))  # <foreign-read>
    message = str(build_fails(cache, inside, error=TraceError))
    assert "reads 'y'" in message and "not part of the simulation" in message
    assert at("foreign-read") in message


# ----------------------------------------------------------------- model errors


def test_a_state_without_der(cache) -> None:
    message = str(build_fails(cache, named(NoDer(), "plant"), error=ModelError))
    assert "'plant'" in message and "NoDer" in message
    assert "state 'v' has no derivative" in message
    assert "self.ders.v" in message


def test_a_der_with_another_shape_than_its_state(cache) -> None:
    message = str(build_fails(cache, named(DerShape(), "plant"), error=ModelError))
    assert "'plant'" in message and "'q'" in message
    assert "(3,)" in message and "(2,)" in message
    assert "shape of its state" in message


def test_ders_for_a_state_that_does_not_exist(cache) -> None:
    message = str(build_fails(cache, named(ExtraDer(), "plant"), error=ModelError))
    assert "'plant'" in message and "['z']" in message
    assert "states: ['x']" in message
    assert "output" in message  # what to use instead


@pytest.mark.parametrize(
    "cls, tags",
    [
        (NoDer, ("no-der-do-step", "no-der-state")),
        (DerShape, ("der-shape",)),
        (ExtraDer, ("extra-der",)),
    ],
)
def test_der_errors_point_at_the_model_source(cache, cls, tags) -> None:
    message = str(build_fails(cache, cls(), error=ModelError))
    assert f"{cls.__name__}.do_step" in message
    assert any(at(tag) in message for tag in tags), message


def test_a_signal_written_by_two_functions(cache) -> None:
    system = named(WritesY(), "plant")
    system.add_post_connection(second_writer)
    message = str(build_fails(cache, system, error=ModelError))
    assert "plant.outputs.y is written by 2 functions" in message
    assert "WritesY.do_step" in message and at("first-writer") in message
    assert "second_writer" in message and at("second-writer") in message
    assert "exactly one place" in message


def _cycle(message: str) -> list[str]:
    line = next(text for text in message.splitlines() if text.startswith("algebraic loop: "))
    chain = line[len("algebraic loop: "):].split(" -> ")
    assert chain[0] == chain[-1], "the cycle closes on itself"
    return chain[:-1]


def _is_rotation(found: list[str], expected: list[str]) -> bool:
    rotations = [expected[i:] + expected[:i] for i in range(len(expected))]
    return found in rotations


def test_an_algebraic_loop_between_named_systems(cache) -> None:
    a, b = named(Feedthrough(), "a"), named(Feedthrough(), "b")
    a.add_post_connection(connect_signals(a.outputs, "y", b.inputs, "u"))  # <loop-ab>
    b.add_post_connection(connect_signals(b.outputs, "y", a.inputs, "u"))  # <loop-ba>
    error = build_fails(cache, a, b, error=AlgebraicLoopError)
    message = str(error)
    expected = ["a.outputs.y", "b.inputs.u", "b.outputs.y", "a.inputs.u"]
    assert _is_rotation(_cycle(message), expected), message
    assert "a.outputs.y -> b.inputs.u" in message
    assert "Feedthrough.do_step" in message and at("feedthrough") in message
    assert at("loop-ab") in message and at("loop-ba") in message
    assert "break the loop with a state" in message


def test_an_algebraic_loop_between_systems_of_one_class_uses_indexed_paths(cache) -> None:
    first, second = Feedthrough(), Feedthrough()

    def forward(system, time):
        second.inputs.u = system.outputs.y  # <loop-forward>

    first.add_post_connection(forward)
    second.add_post_connection(connect_signals(second.outputs, "y", first.inputs, "u"))
    message = str(build_fails(cache, first, second, error=AlgebraicLoopError))
    expected = [
        "Feedthrough[0].outputs.y",
        "Feedthrough[1].inputs.u",
        "Feedthrough[1].outputs.y",
        "Feedthrough[0].inputs.u",
    ]
    assert _is_rotation(_cycle(message), expected), message
    assert "forward" in message and at("loop-forward") in message


def test_an_algebraic_loop_inside_one_system_through_a_connection(cache) -> None:
    plant = named(Feedthrough(), "plant")
    plant.add_post_connection(lambda s, t: setattr(s.inputs, "u", 0.5 * s.outputs.y))  # <self-loop>
    message = str(build_fails(cache, plant, error=AlgebraicLoopError))
    assert _is_rotation(_cycle(message), ["plant.outputs.y", "plant.inputs.u"]), message
    assert at("self-loop") in message and at("feedthrough") in message


def test_the_same_system_object_twice_in_the_tree(cache) -> None:
    shared = Feedthrough()
    left, right = named(Wrapper(shared), "left"), named(Wrapper(shared), "right")
    message = str(build_fails(cache, left, right, error=ModelError))
    assert "'left.inner'" in message and "'right.inner'" in message
    assert "separate instance" in message


def test_a_system_and_its_own_subsystem_at_the_top(cache) -> None:
    inner = named(Feedthrough(), "inner")
    message = str(build_fails(cache, inner, named(Wrapper(inner), "outer"), error=ModelError))
    assert "'inner'" in message and "'outer.inner'" in message


def test_something_that_is_not_a_system(cache) -> None:
    message = str(build_fails(cache, object(), error=ModelError))
    assert "not a dyngen.System" in message


def test_a_stale_read_warns_and_names_the_signal() -> None:
    reader, writer = named(Feedthrough(), "reader"), named(Feedthrough(), "writer")
    # reader's pre-connection runs before writer.do_step: dynode reads last evaluation's y
    reader.add_pre_connection(connect_signals(writer.outputs, "y", reader.inputs, "u"))  # <stale>
    sim = Simulation()
    sim.add_system(reader)
    sim.add_system(writer)
    with pytest.warns(DyngenWarning) as record:
        sim.compile()
    messages = [str(w.message) for w in record if issubclass(w.category, DyngenWarning)]
    assert len(messages) == 1
    message = messages[0]
    assert message.startswith("writer.outputs.y is read by connect_signals of 'reader'")
    assert at("stale") in message
    assert "Feedthrough.do_step of 'writer'" in message and at("feedthrough") in message
    assert "dependees" in message


def test_many_stale_reads_of_one_signal_on_one_line_are_one_warning() -> None:
    """Readers made in a loop: one warning naming the first few, not one per system."""
    writer = named(Feedthrough(), "writer")
    readers = [named(Feedthrough(), f"reader{i}") for i in range(6)]
    sim = Simulation()
    for reader in readers:
        reader.add_pre_connection(connect_signals(writer.outputs, "y", reader.inputs, "u"))  # <stale loop>
        sim.add_system(reader)
    sim.add_system(writer)
    with pytest.warns(DyngenWarning) as record:
        sim.compile()
    messages = [str(w.message) for w in record if issubclass(w.category, DyngenWarning)]
    assert len(messages) == 1
    assert messages[0].startswith(
        "writer.outputs.y is read by connect_signals of 'reader0', 'reader1', 'reader2' and 3 more systems"
    )
    assert at("stale loop") in messages[0]


@pytest.mark.slow
def test_a_stale_read_warning_from_simulate_is_attributed_to_the_callers_line() -> None:
    reader, writer = named(Feedthrough(), "reader"), named(Feedthrough(), "writer")
    reader.add_pre_connection(connect_signals(writer.outputs, "y", reader.inputs, "u"))
    sim = Simulation()
    sim.add_system(reader)
    sim.add_system(writer)
    with pytest.warns(DyngenWarning) as record:
        sim.simulate(0.1, 0.1)  # <stale-simulate>
    assert (record[0].filename, record[0].lineno) == (str(HERE), line_of("stale-simulate"))


def test_an_ordered_model_does_not_warn(recwarn) -> None:
    writer, reader = named(Feedthrough(), "writer"), named(Feedthrough(), "reader")
    writer.add_post_connection(connect_signals(writer.outputs, "y", reader.inputs, "u"))
    sim = Simulation()
    sim.add_system(writer)
    sim.add_system(reader)
    sim.compile()
    assert not [w for w in recwarn if issubclass(w.category, DyngenWarning)]


# ----------------------------------------------------------------- solver errors


@pytest.mark.slow
def test_a_blow_up_is_a_solver_error_naming_the_time() -> None:
    sim = Simulation()
    sim.add_system(named(Squared(), "boom"))
    with pytest.raises(SolverError) as info:
        sim.simulate(2.0, 0.1)
    message = str(info.value)
    assert isinstance(info.value, RuntimeError)
    found = re.search(r"dopri5 failed between t = (\S+) and t = (\S+) \(reached t = ([^)]+)\)", message)
    assert found, message
    start, end, reached = (float(v) for v in found.groups())
    assert start <= reached <= end
    assert end - start == pytest.approx(0.1)
    assert reached == pytest.approx(1.0, abs=1e-3)  # the blow-up of x' = x^2, x(0) = 1


@pytest.mark.slow
def test_too_few_steps_is_a_solver_error_saying_so() -> None:
    sim = Simulation()
    sim.add_system(named(Squared(), "boom"))
    with pytest.raises(SolverError, match="nsteps") as info:
        sim.simulate(0.5, 0.1, nsteps=1)
    assert "t = " in str(info.value)


def test_a_non_finite_state_is_named_by_its_path() -> None:
    sim = Simulation()
    sim.add_system(named(Jump(), "jumpy"))
    with pytest.raises(SolverError) as info:
        sim.simulate(1.0, 0.5, fixed_step=True, integrator="lsoda")
    message = str(info.value)
    assert "jumpy.states.x" in message
    assert "not finite" in message and "t = 0.5" in message


@pytest.mark.slow
def test_a_solver_error_can_be_caught_as_runtime_error_like_dynodes() -> None:
    sim = Simulation()
    sim.add_system(Squared())
    with pytest.raises(RuntimeError):
        sim.simulate(2.0, 0.5)
