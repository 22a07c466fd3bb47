"""Events (System.add_event): located in compiled code by dopri5, dop853 and rodas4 and
on the dense output of scipy's solve_ivp methods, checked against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dyngen import Recorder, Simulation, System
from dyngen.errors import DyngenError, SolverError, TraceError, UsageError

G, H0, E = 9.81, 10.0, 0.9


class Ball(System):
    """A ball dropped from H0 that bounces with restitution E."""

    def __init__(self, h0: float = H0) -> None:
        super().__init__()
        self.states.h = h0
        self.states.v = 0.0
        self.ders.h = 0.0
        self.ders.v = 0.0
        self.inputs.g = G
        self.inputs.e = E
        self.bounces = self.add_event(self.ground, self.bounce, direction=-1)

    def do_step(self, time):
        self.ders.h = self.states.v
        self.ders.v = -self.inputs.g

    @staticmethod
    def ground(system, time):
        return system.states.h

    @staticmethod
    def bounce(system, time):
        system.states.v = -system.inputs.e * system.states.v


def bounce_times(h0: float, n: int) -> list[float]:
    """The closed form: the first impact at sqrt(2 h0 / g), then flights of 2 v_k / g."""
    t, v = math.sqrt(2 * h0 / G), math.sqrt(2 * G * h0)
    times = [t]
    for _ in range(n - 1):
        v *= E
        t += 2 * v / G
        times.append(t)
    return times


def simulated(*systems: System) -> Simulation:
    simulation = Simulation()
    for system in systems:
        simulation.add_system(system)
    return simulation


@pytest.mark.parametrize(
    "integrator, options",
    [("dopri5", {}), ("dop853", {}), ("rodas4", {"rtol": 1e-8}), ("Radau", {})],
)
def test_bouncing_ball_bounce_times_and_speeds_match_the_closed_form(integrator: str, options: dict) -> None:
    ball = Ball()
    simulation = simulated(ball)
    simulation.simulate(20.0, 0.25, integrator=integrator, **{"rtol": 1e-10, "atol": 1e-10, **options})
    events = simulation.events
    expected = [t for t in bounce_times(H0, 100) if t <= 20.0]
    assert len(events) == len(expected) == 13
    for k, (record, t) in enumerate(zip(events, expected)):
        assert (record.system, record.event) == ("Ball", "ground")
        assert record.time == pytest.approx(t, rel=1e-9, abs=0)
        v_impact = math.sqrt(2 * G * H0) * E**k
        assert record.before["Ball.states.v"] == pytest.approx(-v_impact, rel=1e-8)
        assert record.after["Ball.states.v"] == pytest.approx(E * v_impact, rel=1e-8)
    assert abs(ball.states.h) < H0 and ball.states.h >= -1e-9  # never below the floor (at output times)


def test_a_terminal_event_stops_the_run_at_its_time_and_observers_see_that_state() -> None:
    ball = Ball()
    ball.bounces()  # removed: the terminal event only
    ball.add_event(lambda s, t: s.states.h - 5.0, terminal=True, name="half_way")
    simulation = simulated(ball)
    recorder = Recorder()
    recorder.store(ball, "states.h")
    simulation.add_observer(recorder)
    stop = simulation.simulate(10.0, 0.5)
    expected = math.sqrt(2 * 5.0 / G)  # h = 10 - g t^2 / 2 = 5
    assert stop == pytest.approx(expected, rel=1e-12)
    assert [(r.system, r.event, r.terminal) for r in simulation.events] == [("Ball", "half_way", True)]
    times = recorder.results[ball]["time"]
    assert times[:-1] == [0.0, 0.5, 1.0] and times[-1] == stop
    assert recorder.results[ball]["states.h"][-1] == pytest.approx(5.0, abs=1e-12)
    assert ball.states.h == pytest.approx(5.0, abs=1e-12)


class Timer(System):
    """x' = 1; an event at t = at that resets x to 0 and counts in the state n."""

    def __init__(self, at: float) -> None:
        super().__init__()
        self.at = at
        self.states.x = 0.0
        self.states.n = 0.0
        self.ders.x = 0.0
        self.ders.n = 0.0
        self.add_event(self.due, self.reset, direction=1)

    def do_step(self, time):
        self.ders.x = 1.0
        self.ders.n = 0.0

    def due(self, time):
        return time - self.at

    def reset(self, time):
        self.states.x = 0.0
        self.states.n = self.states.n + 1.0


def test_an_event_exactly_on_an_output_time_is_applied_before_the_sample() -> None:
    timer = Timer(1.0)
    simulation = simulated(timer)
    recorder = Recorder()
    recorder.store(timer, "states.x")
    simulation.add_observer(recorder)
    simulation.simulate(2.0, 0.5)
    assert [r.time for r in simulation.events] == [1.0]
    results = recorder.results[timer]
    assert results["time"] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert results["states.x"] == pytest.approx([0.0, 0.5, 0.0, 0.5, 1.0], abs=1e-12)  # the reset at t = 1 shows


def test_two_systems_events_in_one_step_fire_in_time_order() -> None:
    first, second = Timer(0.31), Timer(0.3)
    simulation = simulated(first, second)
    simulation.simulate(1.0, 1.0)  # x' = 1: dopri5 takes the whole interval in one step
    assert [(r.system, r.time) for r in simulation.events] == [("Timer[1]", pytest.approx(0.3, abs=1e-14)),
                                                               ("Timer[0]", pytest.approx(0.31, abs=1e-14))]  # fmt: skip
    assert first.states.x == pytest.approx(0.69, abs=1e-12) and second.states.x == pytest.approx(0.7, abs=1e-12)
    assert first.states.n == second.states.n == 1.0


def test_a_condition_that_is_zero_at_the_start_does_not_fire_there() -> None:
    timer = Timer(0.0)  # t - 0 is 0 at t = 0, then only grows
    simulation = simulated(timer)
    simulation.simulate(1.0, 0.5)
    assert simulation.events == [] and timer.states.x == pytest.approx(1.0)
    early = Timer(1e-3)  # a crossing inside the first step
    simulation = simulated(early)
    simulation.simulate(1.0, 0.5)
    assert [r.time for r in simulation.events] == [pytest.approx(1e-3, abs=1e-15)]


class Stuck(System):
    """x' = -1 and an action that puts x back just above 0: the condition crosses again at once."""

    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0
        self.ders.x = 0.0
        self.add_event(lambda s, t: s.states.x, self.nudge, direction=-1)

    def do_step(self, time):
        self.ders.x = -1.0

    def nudge(self, time):
        self.states.x = 1e-300


@pytest.mark.parametrize("integrator", ["dopri5", "RK45"])
def test_an_action_that_makes_its_condition_cross_again_at_once_is_an_error(integrator: str) -> None:
    simulation = simulated(Stuck())
    with pytest.raises(SolverError, match=r"100 events in a row at t = 1\.0.*again at once"):
        simulation.simulate(2.0, 0.5, integrator=integrator)


def test_removing_an_event_between_runs_rebuilds_without_it() -> None:
    ball = Ball()
    simulation = simulated(ball)
    simulation.simulate(2.0, 0.5)
    assert len(simulation.events) == 1
    ball.bounces()
    simulation.simulate(3.0, 0.5)  # falls through the floor now
    assert len(simulation.events) == 1
    assert not hasattr(simulation.module, "N_EVENTS")
    assert ball.states.h < -10.0


def test_events_of_many_instances_of_one_class_in_a_model_with_kernels() -> None:
    heights = [10.0, 7.0, 4.0, 2.5]
    balls = [Ball(h) for h in heights]
    simulation = simulated(*balls)
    text = simulation.compile().path.read_text()
    assert "for i in range(4):" in text and text.count("def apply_event_") == 4  # rhs loops; events unrolled
    simulation.simulate(3.0, 0.5, rtol=1e-10, atol=1e-10)
    for k, h0 in enumerate(heights):
        fired = [r.time for r in simulation.events if r.system == f"Ball[{k}]"]
        expected = [t for t in bounce_times(h0, 10) if t <= 3.0]
        assert fired == pytest.approx(expected, rel=1e-9)


class Decay(System):
    """u' = -u for a vector of 100 (array form); stop when the sum has halved."""

    def __init__(self) -> None:
        super().__init__()
        self.states.u = np.ones(100)
        self.ders.u = np.zeros(100)
        self.states.w = np.array([1.0, 2.0, 3.0])
        self.ders.w = np.zeros(3)
        self.add_event(lambda s, t: np.sum(s.states.u) - 50.0, terminal=True, name="half")
        self.add_event(lambda s, t: s.states.w[2] - 2.0, self.refill, name="refill")

    def do_step(self, time):
        self.ders.u = -self.states.u
        self.ders.w = -self.states.w

    def refill(self, time):
        self.states.w = self.states.w * 2.0


def test_events_on_arrays() -> None:
    decay = Decay()
    simulation = simulated(decay)
    stop = simulation.simulate(5.0, 0.1, rtol=1e-10, atol=1e-12)
    assert stop == pytest.approx(math.log(2.0), rel=1e-9)
    refill, half = simulation.events
    assert refill.event == "refill" and refill.time == pytest.approx(math.log(1.5), rel=1e-9)
    assert refill.after["Decay.states.w"] == pytest.approx(2 * refill.before["Decay.states.w"], rel=1e-12)
    assert half.terminal and np.sum(decay.states.u) == pytest.approx(50.0, rel=1e-9)


class Thermostat(System):
    """A room heated while the mode input is 1: a mode switched by two events (hysteresis)."""

    def __init__(self) -> None:
        super().__init__()
        self.states.T = 18.0
        self.ders.T = 0.0
        self.inputs.on = 1.0
        self.add_event(lambda s, t: s.states.T - 22.0, self.switch_off, direction=1)
        self.add_event(lambda s, t: s.states.T - 18.0, self.switch_on, direction=-1)

    def do_step(self, time):
        self.ders.T = -0.1 * (self.states.T - 10.0) + self.inputs.on * 2.0

    def switch_off(self, time):
        self.inputs.on = 0.0

    def switch_on(self, time):
        self.inputs.on = 1.0


def test_an_action_sets_a_mode_input_that_the_model_reads_and_the_inputs_keep() -> None:
    room = Thermostat()
    simulation = simulated(room)
    simulation.simulate(20.0, 1.0, rtol=1e-10, atol=1e-10)
    off, on = simulation.events[:2]
    # heating: T = 30 - 12 exp(-0.1 t) reaches 22 at 10 ln(1.5); cooling: T = 10 + 12 exp(-0.1 s) reaches 18 at 10 ln(1.5) later
    assert off.time == pytest.approx(10 * math.log(1.5), rel=1e-9)
    assert on.time == pytest.approx(20 * math.log(1.5), rel=1e-9)
    assert (off.before, off.after) == ({"Thermostat.inputs.on": 1.0}, {"Thermostat.inputs.on": 0.0})
    assert room.inputs.on == (0.0 if len(simulation.events) % 2 else 1.0)


def test_reset_puts_a_mode_an_action_wrote_back_so_the_next_run_repeats_the_first() -> None:
    room = Thermostat()
    simulation = simulated(room)
    simulation.simulate(21.0, 1.0, rtol=1e-10, atol=1e-10)
    first = [(e.time, e.event) for e in simulation.events]
    assert len(first) == 5 and room.inputs.on == 0.0  # the run ended with the heating off
    simulation.reset()
    assert room.inputs.on == 1.0 and room.states.T == 18.0
    simulation.simulate(21.0, 1.0, rtol=1e-10, atol=1e-10)
    assert [(e.time, e.event) for e in simulation.events[len(first):]] == first  # the log keeps both runs


# -- bad input ----------------------------------------------------------------------------
class WritesDer(Ball):
    @staticmethod
    def bounce(system, time):
        system.ders.v = 0.0  # the line the error names


class VectorCondition(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = np.array([1.0, 2.0])
        self.ders.x = np.zeros(2)
        self.add_event(lambda s, t: s.states.x - 1.5)

    def do_step(self, time):
        self.ders.x = -self.states.x


class Untraceable(Ball):
    @staticmethod
    def ground(system, time):
        return np.linalg.norm(system.states.h, ord=1)  # the line the error names: not traceable


class Driven(System):
    """An action that writes an input a connection drives, and a condition that writes an output."""

    def __init__(self, writes_output: bool) -> None:
        super().__init__()
        self.states.x = 1.0
        self.ders.x = 0.0
        self.inputs.u = 0.0
        self.outputs.y = 0.0
        self.add_pre_connection(Driven.drive)
        if writes_output:
            self.add_event(Driven.writes_in_condition)
        else:
            self.add_event(lambda s, t: s.states.x - 0.5, Driven.set_driven)

    @staticmethod
    def drive(system, time):
        system.inputs.u = -system.states.x

    def do_step(self, time):
        self.ders.x = self.inputs.u
        self.outputs.y = self.states.x

    @staticmethod
    def writes_in_condition(system, time):
        system.outputs.y = 1.0  # the line the error names
        return system.states.x

    @staticmethod
    def set_driven(system, time):
        system.inputs.u = 1.0  # the line the error names


@pytest.mark.parametrize(
    "system, message",
    [
        (WritesDer, r"writes WritesDer\.ders\.v: ders are what do_step computes"),
        (lambda: Driven(False), r"writes Driven\.inputs\.u: that input is driven by a connection"),
        (lambda: Driven(True), r"the event condition .*writes_in_condition writes Driven\.outputs\.y"),
        (VectorCondition, r"returns a value of shape \(2,\); a condition is one number"),
        (Untraceable, r"cannot trace Untraceable.ground(.|\n)*np.linalg.norm with ord=1 cannot be traced"),
    ],
)
def test_bad_events_are_trace_errors_that_name_the_line(system: type, message: str) -> None:
    simulation = simulated(system())
    with pytest.raises(TraceError, match=message) as caught:
        simulation.compile()
    assert "test_events.py:" in str(caught.value)


def test_add_event_refuses_bad_arguments_where_it_is_called() -> None:
    ball = Ball()
    with pytest.raises(UsageError, match=r"direction must be \+1.*test_events.py:"):
        ball.add_event(Ball.ground, direction=2, name="other")
    with pytest.raises(UsageError, match="already been added"):
        ball.add_event(Ball.ground)
    with pytest.raises(UsageError, match="condition must be a function"):
        ball.add_event(0.0)


class Sawtooth(System):
    """x' = 1, reset to 0 at x = 0.001: a thousand events a second."""

    def __init__(self) -> None:
        super().__init__()
        self.states.x = 0.0
        self.ders.x = 0.0
        self.add_event(lambda s, t: s.states.x - 0.001, self.reset, direction=1)

    def do_step(self, time):
        self.ders.x = 1.0

    def reset(self, time):
        self.states.x = 0.0


@pytest.mark.parametrize("observer", ["none", "recorder", "function"])
def test_more_events_than_one_compiled_call_logs(observer: str) -> None:
    """The compiled run returns to have its log read (256 events) and goes on where it stopped."""
    saw = Sawtooth()
    simulation = simulated(saw)
    seen = []
    if observer == "recorder":
        recorder = Recorder()
        recorder.store(saw, "states.x")
        simulation.add_observer(recorder)
    elif observer == "function":
        simulation.add_observer(lambda t, y: seen.append(t))
    simulation.simulate(1.0, 0.25)
    times = [r.time for r in simulation.events]
    assert len(times) in (999, 1000)  # the 1000th is at t = 1.0 up to rounding
    assert np.allclose(times[:999], 0.001 * np.arange(1, 1000), rtol=0, atol=1e-12)
    if observer == "recorder":
        assert recorder.results[saw]["time"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    if observer == "function":
        assert seen == [0.0, 0.25, 0.5, 0.75, 1.0]


@pytest.mark.slow  # a standalone module: numba compiles its own integrators
@pytest.mark.parametrize("integrator", ["dopri5", "rodas4"])
def test_a_standalone_module_locates_events_as_the_shared_integrators_do(integrator: str) -> None:
    runs = []
    for standalone in (False, True):
        ball = Ball()
        simulation = simulated(ball)
        simulation.standalone = standalone
        recorder = Recorder()
        recorder.store(ball, "states.h")
        simulation.add_observer(recorder)
        simulation.simulate(10.0, 0.25, integrator=integrator, rtol=1e-9, atol=1e-9)
        runs.append(([r.time for r in simulation.events], recorder.results[ball]["states.h"]))
    (shared_times, shared_h), (own_times, own_h) = runs
    assert len(shared_times) == 4 and shared_times == own_times and np.array_equal(shared_h, own_h)  # bit for bit


def test_verify_compares_a_model_with_events_up_to_its_first_event() -> None:
    from dyngen.interpreted import verify

    simulation = simulated(Ball())
    report = verify(simulation, 5.0, 0.1)
    assert report.samples == 15  # t = 0.0 .. 1.4, before the first bounce at 1.428
    assert report.max_rel_state < 1e-9 and report.max_rel_signal < 1e-9 and simulation.events == []


def test_the_shared_event_routines_refuse_arrays_that_do_not_fit_and_unset_functions() -> None:
    from dyngen.runtime.compiled import work_rows
    from dyngen.runtime.first_class import model_functions, shared_routine

    module = simulated(Ball()).module
    functions = model_functions(module).addresses(events=True)
    n, m = module.N_STATES, module.N_PARAMETERS
    settings = (1e-9, 1e-9, 0.0, 0.0, 0.9, 10.0, 0.2, 0.0, 500)
    kinds = np.array([[-1, 0]], dtype=np.int64)
    good = dict(kinds=kinds, ew=np.zeros((15, n)), eg=np.zeros((3, 1)), log_t=np.zeros(8),
                log_i=np.zeros(8, dtype=np.int64), log_v=np.zeros((8, 2 * (n + m))))  # fmt: skip
    advance = shared_routine("dopri5_advance_events")

    def run(functions: np.ndarray, **changed: np.ndarray) -> tuple:
        y = module.DEFAULT_STATES.copy()
        arrays = {**good, **changed}
        ctl = np.zeros(11)
        ctl[7] = 2.0  # the first output time
        samples = dict(times=np.zeros(1), Y=np.zeros((1, n)), OUT=np.zeros((1, 0)))
        samples = {k: v for k, v in {**samples, **changed}.items() if k in samples}
        return advance(functions, 0.0, y, 2.0, module.DEFAULT_PARAMETERS.copy(), *settings,
                       np.empty((work_rows("dopri5"), n)), np.zeros(4, dtype=np.int64),
                       *(arrays[k] for k in good), changed.get("ctl", ctl), 1, 2.0, True, False,
                       *samples.values())  # fmt: skip

    t, status, count, stored = run(functions)
    assert status == 1 and count == 1 and good["log_t"][0] == pytest.approx(math.sqrt(2 * H0 / G), rel=1e-9)
    assert stored == 1 and t == 2.0
    for name, bad in [("log_v", np.zeros((8, 2 * (n + m) - 1))), ("eg", np.zeros((3, 2))), ("ew", np.zeros((14, n))),
                      ("kinds", np.zeros((2, 2), dtype=np.int64)), ("log_i", np.zeros(7, dtype=np.int64)),
                      ("ctl", np.zeros(10)), ("Y", np.zeros((1, n + 1))), ("times", np.zeros(0))]:  # fmt: skip
        assert run(functions, **{name: bad})[1] == -12, name
    unset = functions.copy()
    unset[9:13] = 0  # the events' functions not compiled yet: refused, never called
    assert run(unset) == (0.0, -12, 0, 0)


def test_an_ensemble_of_a_model_with_events_on_a_scipy_method_is_refused_not_run_without_them() -> None:
    """Ensembles locate events on the compiled methods (tests/test_ensemble_events.py); on
    scipy's not yet: a clear error instead of members that miss them."""
    with pytest.raises(DyngenError, match=r"ensemble: integrator 'BDF' does not run a model with events .*sim\.reset\(\)"):
        simulated(Ball()).ensemble(1.0, 0.5, grid={"Ball.inputs.e": [0.5, 0.9]}, integrator="BDF")


def ball_height(t: float, h0: float = H0) -> float:
    """The closed form of the ball's height at t: the flight that t falls in."""
    impacts = [0.0] + bounce_times(h0, 200)
    k = max(i for i, s in enumerate(impacts) if s <= t)
    v0 = 0.0 if k == 0 else math.sqrt(2 * G * h0) * E**k  # upwards after impact k
    return (h0 if k == 0 else 0.0) + v0 * (t - impacts[k]) - 0.5 * G * (t - impacts[k]) ** 2


@pytest.mark.slow  # (dop853's and rodas4's event routines compile once per installation)
@pytest.mark.parametrize("integrator", ["dopri5", "dop853", "rodas4", "Radau"])
def test_fifty_bounces_at_every_output_time_match_the_closed_form(integrator: str) -> None:
    """dopri5 and dop853 step continuously (samples from the steps' continuous extensions,
    a restart only at a bounce): every bounce time and every sample against the closed form."""
    exact = bounce_times(H0, 51)
    t_end = 0.5 * (exact[49] + exact[50])
    dt = t_end / 256
    ball = Ball()
    simulation = simulated(ball)
    recorder = Recorder()
    recorder.store(ball, "states.h")
    simulation.add_observer(recorder)
    simulation.simulate(dt * 256, dt, integrator=integrator, rtol=1e-10, atol=1e-10)
    times = [r.time for r in simulation.events]
    assert len(times) == 50
    assert max(abs(a - b) / b for a, b in zip(times, exact)) < 1e-9
    results = recorder.results[ball]
    assert len(results["time"]) == 257
    heights = np.array([ball_height(t) for t in results["time"]])
    assert np.max(np.abs(np.array(results["states.h"]) - heights)) < 1e-7  # the heights: 10 m down to 1e-3 m


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["dopri5", "dop853"])
def test_a_function_observer_sees_the_samples_a_recorder_gets_bit_for_bit(integrator: str) -> None:
    """The stepper is kept between observer calls: Python observers, or a Recorder filled
    by one compiled call, see the same continuous integration."""
    runs = []
    for observer in ("recorder", "function"):
        ball = Ball()
        simulation = simulated(ball)
        seen: list = []
        if observer == "recorder":
            recorder = Recorder()
            recorder.store(ball, "states.h")
            recorder.store(ball, "states.v")
            simulation.add_observer(recorder)
        else:
            simulation.add_observer(lambda t, y: seen.append((t, *y)))
        simulation.simulate(5.0, 0.1, integrator=integrator, rtol=1e-10, atol=1e-10)
        if observer == "recorder":
            r = recorder.results[ball]
            seen = list(zip(r["time"], r["states.h"], r["states.v"]))
        runs.append((seen, [r.time for r in simulation.events], ball.states.h))
    assert runs[0] == runs[1]
    assert len(runs[0][0]) == 51 and len(runs[0][1]) == 2


def test_an_observer_that_changes_a_parameter_restarts_the_integration_there() -> None:
    """The stepper runs ahead of the output time; a parameter an observer sets there
    applies from there on (as in dynode), so the integration starts afresh at it."""
    ball = Ball()
    simulation = simulated(ball)

    def lighter(t: float, y: np.ndarray) -> None:
        if abs(t - 1.0) < 1e-9:
            ball.inputs.g = G / 4  # from t = 1 on, before the first impact (t = 1.43)

    simulation.add_observer(lighter)
    simulation.simulate(2.0, 0.5, rtol=1e-10, atol=1e-10)
    h1, v1 = H0 - 0.5 * G, -G  # at t = 1
    g = G / 4
    impact = 1.0 + (-v1 - math.sqrt(v1 * v1 + 2 * g * h1)) / -g  # h1 + v1 s - g s^2 / 2 = 0
    assert [r.time for r in simulation.events] == [pytest.approx(impact, rel=1e-10)]


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["dopri5", "dop853", "rodas4"])
def test_thermostat_samples_between_switches_match_the_closed_form(integrator: str) -> None:
    """Samples read from the steps' continuous extensions (dopri5, dop853: one integration
    over the run) are as accurate as the steps: T(t) in closed form, switches every 10 ln 1.5."""
    tau = 10 * math.log(1.5)

    def exact(t: float) -> float:
        j = int(t // tau)
        s = t - j * tau
        return 30.0 - 12.0 * math.exp(-0.1 * s) if j % 2 == 0 else 10.0 + 12.0 * math.exp(-0.1 * s)

    room = Thermostat()
    simulation = simulated(room)
    recorder = Recorder()
    recorder.store(room, "states.T")
    simulation.add_observer(recorder)
    simulation.simulate(60.0, 0.5, integrator=integrator, rtol=1e-10, atol=1e-10)
    results = recorder.results[room]
    assert len(results["time"]) == 121
    assert max(abs(T - exact(t)) for t, T in zip(results["time"], results["states.T"])) < 1e-8
    assert [r.time for r in simulation.events] == pytest.approx([k * tau for k in range(1, 15)], rel=1e-10)


@pytest.mark.slow  # (the observer path's compiled routine)
def test_a_function_observer_sees_an_event_on_an_output_time_after_it_and_a_terminal_stop() -> None:
    """The observer path keeps the stepper between calls: an event exactly on an output
    time shows in that sample; a terminal event ends the run at its time, observed."""
    timer = Timer(1.0)
    simulation = simulated(timer)
    seen: list = []
    simulation.add_observer(lambda t, y: seen.append((t, y[0])))
    simulation.simulate(2.0, 0.5)
    assert [t for t, _ in seen] == [0.0, 0.5, 1.0, 1.5, 2.0]
    assert [x for _, x in seen] == pytest.approx([0.0, 0.5, 0.0, 0.5, 1.0], abs=1e-12)

    ball = Ball()
    ball.bounces()
    ball.add_event(lambda s, t: s.states.h - 5.0, terminal=True, name="half_way")
    simulation = simulated(ball)
    seen = []
    simulation.add_observer(lambda t, y: seen.append((t, y[0])))
    stop = simulation.simulate(10.0, 0.5)
    assert stop == pytest.approx(math.sqrt(2 * 5.0 / G), rel=1e-12)
    assert [t for t, _ in seen[:-1]] == [0.0, 0.5, 1.0] and seen[-1] == (stop, pytest.approx(5.0, abs=1e-12))
