"""dyngen keeps dynode 0.4's behaviour: containers, the System API, Simulation, Recorder.

Numerical results are checked against closed-form solutions (exponential decay,
harmonic oscillator, a first-order lag driven by the oscillator), against scipy's
``ode`` driven directly, and -- for the flat state layout -- against dynode itself.

Every distinct model costs a numba compile, so the tests share a handful of model
classes; a model whose structure is unchanged is reused from the session's cache.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.integrate import ode

import dyngen
from dyngen import Recorder, Simulation, System, SystemInterface, connect_signals

# A model that behaves differently from dynode warns; none of these models should.
pytestmark = pytest.mark.filterwarnings("error::dyngen.DyngenWarning")

TIGHT = {"atol": 1e-10, "rtol": 1e-10}


# --------------------------------------------------------------------------- models


class Decay(System):
    """dx/dt = -k x, so x(t) = x0 exp(-k t)."""

    def __init__(self, x0: float = 1.0, k: float = 0.5) -> None:
        super().__init__()
        self.states.x = x0
        self.ders.x = 0.0
        self.inputs.k = k

    def do_step(self, time):
        self.ders.x = -self.inputs.k * self.states.x


class Oscillator(SystemInterface):
    """x'' = -w^2 x with x(0) = 1, v(0) = 0: x = cos(w t), v = -w sin(w t)."""

    def __init__(self, w: float = 2.0) -> None:
        super().__init__()
        self.states.x = 1.0
        self.states.v = 0.0
        self.ders.x = 0.0
        self.ders.v = 0.0
        self.inputs.w = w
        self.outputs.energy = 0.0

    def do_step(self, time):
        x, v, w = self.states.x, self.states.v, self.inputs.w
        self.ders.x = v
        self.ders.v = -(w**2) * x
        self.outputs.energy = 0.5 * (v**2 + w**2 * x**2)


class Lag(System):
    """A first-order lag y' = (u - y) / tau; u is driven by a connection."""

    def __init__(self, tau: float = 0.5) -> None:
        super().__init__()
        self.states.y = 0.0
        self.inputs.u = 0.0
        self.inputs.tau = tau
        self.outputs.err = 0.0

    def do_step(self, time):
        err = self.inputs.u - self.states.y
        self.ders.y = err / self.inputs.tau
        self.outputs.err = err


class Chain(System):
    """A state plus outputs that pre/post-connections compute from each other."""

    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0
        self.outputs.c = 0.0
        self.outputs.a = 0.0
        self.outputs.b = 0.0

    def do_step(self, time):
        self.ders.x = -self.states.x


class NoStates(System):
    def __init__(self) -> None:
        super().__init__()
        self.outputs.y = 0.0

    def do_step(self, time):
        self.outputs.y = 2.0 * time


def make_tree(base):
    """The same classes on dynode's or dyngen's base class (dynode is the oracle)."""

    class Spring(base):
        def __init__(self):
            super().__init__()
            self.states.x = 1.0
            self.states.v = [0.0]
            self.inputs.w = 2.0

        def do_step(self, time):
            self.ders.x = self.states.v
            self.ders.v = -self.inputs.w**2 * self.states.x

    class Matrix(base):
        def __init__(self):
            super().__init__()
            self.states.q = np.array([[1.0, 2.0], [3.0, 4.0]])
            self.inputs.k = 0.5

        def do_step(self, time):
            self.ders.q = -self.inputs.k * self.states.q

    class Top(base):
        def __init__(self):
            super().__init__()
            self.states.z = 5.0
            self.states.a = [1.0, 2.0, 3.0]
            self.spring = Spring()
            self.matrix = Matrix()
            self.add_subsystem(self.spring)
            self.add_subsystem(self.matrix)

        def do_step(self, time):
            self.ders.z = -self.states.z
            self.ders.a = -0.5 * self.states.a * self.spring.states.x

    return Spring, Top


Spring, Top = make_tree(System)


def lag_closed_form(t, w, tau):
    """y(t) of the lag driven by u = cos(w t), y(0) = 0."""
    wt = w * tau
    return (np.cos(w * t) + wt * np.sin(w * t) - np.exp(-t / tau)) / (1.0 + wt**2)


class Times:
    """An observer that collects (t, y) pairs."""

    def __init__(self) -> None:
        self.t: list[float] = []
        self.y: list[np.ndarray] = []

    def __call__(self, t, y):
        self.t.append(t)
        self.y.append(np.array(y, copy=True))


def decay_sim(**kw) -> tuple[Simulation, Decay]:
    system = Decay(**kw)
    sim = Simulation()
    sim.add_system(system)
    return sim, system


# ----------------------------------------------------------------------- containers


def test_containers_attribute_and_key_access_are_the_same_entry() -> None:
    s = Decay()
    s.inputs.gain = 3.0
    assert s.inputs["gain"] == 3.0
    s.inputs["offset"] = -1.0
    assert s.inputs.offset == -1.0
    s.states["y"] = 2.0
    assert s.states.y == 2.0
    assert list(s.states) == ["x", "y"]  # insertion order, as a dict
    assert isinstance(s.states, dict) and isinstance(s.inputs, dict)


@pytest.mark.parametrize("kind", ["states", "ders"])
@pytest.mark.parametrize(
    "value, shape",
    [(1, (1,)), (2.5, (1,)), (np.float32(1.5), (1,)), ([1, 2], (2,)), ((1, 2, 3), (3,)),
     (np.arange(4).reshape(2, 2), (2, 2))],
)  # fmt: skip
def test_states_and_ders_are_stored_as_float_arrays(kind, value, shape) -> None:
    container = getattr(Decay(), kind)
    container.v = value
    stored = container["v"]
    assert isinstance(stored, np.ndarray)
    assert stored.dtype == np.float64
    assert stored.shape == shape
    np.testing.assert_array_equal(stored.ravel(), np.ravel(value))


def test_attribute_access_of_a_one_element_state_is_a_float() -> None:
    s = Decay(x0=3)
    assert type(s.states.x) is float and s.states.x == 3.0
    assert isinstance(s.states["x"], np.ndarray) and s.states["x"].shape == (1,)
    s.states.m = [[7.0]]
    assert type(s.states.m) is float and s.states.m == 7.0
    s.states.v = [1.0, 2.0]
    assert isinstance(s.states.v, np.ndarray) and s.states.v.shape == (2,)
    s.ders.v = [0.0, 0.0]
    assert isinstance(s.ders.v, np.ndarray)


def test_states_can_be_set_from_lists() -> None:
    s = Decay()
    s.states.v = [1, 2, 3]
    np.testing.assert_array_equal(s.states.v, [1.0, 2.0, 3.0])


@pytest.mark.parametrize("kind", ["states", "ders"])
@pytest.mark.parametrize("bad", [None, {"a": 1}, object(), {1, 2}])
def test_non_numeric_states_and_ders_are_a_type_error(kind, bad) -> None:
    with pytest.raises(TypeError, match="scalars, lists or np.ndarrays"):
        setattr(getattr(Decay(), kind), "v", bad)


def test_inputs_and_outputs_hold_any_value_unchanged() -> None:
    s = Decay()
    table = [1, 2]
    s.inputs.table = table
    s.outputs.label = "a label"
    assert s.inputs.table is table
    assert s.outputs["label"] == "a label"
    s.inputs.k = 2
    assert type(s.inputs.k) is int


@pytest.mark.parametrize("kind", ["states", "ders", "inputs", "outputs"])
def test_a_missing_key_is_a_key_error(kind) -> None:
    container = getattr(Decay(), kind)
    with pytest.raises(KeyError):
        container["nope"]
    with pytest.raises(KeyError):
        container.nope


# ------------------------------------------------------------------ the System API


def test_systems_are_abstract_without_do_step() -> None:
    class Incomplete(System):
        pass

    with pytest.raises(TypeError):
        Incomplete()
    assert SystemInterface is System


def test_add_subsystem_rejects_self_and_ignores_duplicates() -> None:
    parent, child = Decay(), Decay()
    with pytest.raises(ValueError):
        parent.add_subsystem(parent)
    parent.add_subsystem(child)
    parent.add_subsystem(child)
    assert parent.subsystems == [child]


@pytest.mark.parametrize("kind", ["pre", "post"])
def test_a_connection_cannot_be_added_twice_and_its_remover_works(kind) -> None:
    s = Chain()
    add = getattr(s, f"add_{kind}_connection")

    def con(system, time):
        pass

    remove = add(con)
    with pytest.raises(ValueError):
        add(con)
    assert s.connections == [con]
    remove()
    assert s.connections == []
    add(con)  # allowed again once removed
    assert s.connections == [con]


def test_the_same_function_may_be_a_pre_and_a_post_connection() -> None:
    s = Chain()

    def con(system, time):
        pass

    s.add_pre_connection(con)
    s.add_post_connection(con)
    assert s.connections == [con, con]


def _register_chain(system, log: list[str], *, via_attribute: bool):
    """Three pre- and two post-connections added in the wrong order, fixed by dependees."""

    def first(s, t):
        log.append("first")
        s.outputs.c = s.states.x

    def second(s, t):
        log.append("second")
        s.outputs.a = 2.0 * s.outputs.c

    def third(s, t):
        log.append("third")
        s.outputs.b = s.outputs.a + 1.0

    def post_late(s, t):
        log.append("post_late")
        s.outputs.late = s.outputs.early * 3.0

    def post_early(s, t):
        log.append("post_early")
        s.outputs.early = s.ders.x

    if via_attribute:
        third.dependees = [second]
        second.dependees = [first]
        post_late.dependees = [post_early]
        system.add_pre_connection(third)
        system.add_pre_connection(second)
        system.add_pre_connection(first)
        system.add_post_connection(post_late)
        system.add_post_connection(post_early)
    else:
        system.add_pre_connection(third, dependees=[second])
        system.add_pre_connection(second, dependees=[first])
        system.add_pre_connection(first)
        system.add_post_connection(post_late, dependees=[post_early])
        system.add_post_connection(post_early)
    return [first, second, third, post_early, post_late]


EXPECTED_ORDER = ["first", "second", "third", "post_early", "post_late"]


@pytest.mark.parametrize("via_attribute", [False, True], ids=["argument", "attribute"])
def test_dependees_order_the_connections_as_in_dynode(via_attribute) -> None:
    import dynode

    class DynodeChain(dynode.SystemInterface):
        def do_step(self, time):
            pass

    ours, theirs = Chain(), DynodeChain()
    funcs = _register_chain(ours, [], via_attribute=via_attribute)
    assert ours.connections == funcs
    assert [f.__name__ for f in ours.connections] == EXPECTED_ORDER
    _register_chain(theirs, [], via_attribute=via_attribute)
    assert [f.__name__ for f in theirs.connections] == EXPECTED_ORDER


@pytest.mark.slow
def test_connections_run_in_dependee_order_and_give_dynodes_values() -> None:
    system = Chain()
    log: list[str] = []
    _register_chain(system, log, via_attribute=False)
    sim = Simulation()
    sim.add_system(system)
    sim.compile()  # traces every function once, in dynode's order
    assert log == EXPECTED_ORDER
    end = sim.simulate(1.0, 0.5, **TIGHT)
    x = np.exp(-end)
    assert system.states.x == pytest.approx(x, rel=1e-8)
    assert system.outputs.c == pytest.approx(x, rel=1e-8)
    assert system.outputs.a == pytest.approx(2 * x, rel=1e-8)
    assert system.outputs.b == pytest.approx(2 * x + 1, rel=1e-8)
    assert system.outputs.early == pytest.approx(-x, rel=1e-8)
    assert system.outputs.late == pytest.approx(-3 * x, rel=1e-8)


def test_connect_signals_copies_a_signal_when_called() -> None:
    a, b = Decay(x0=4.0), Lag()
    link = connect_signals(a.states, "x", b.inputs, "u")
    link(b, 0.0)  # a connection function: (system, time)
    assert b.inputs.u == 4.0 and type(b.inputs.u) is float
    a.inputs.k = 7.0
    connect_signals(a.inputs, "k", b.inputs, "tau")()
    assert b.inputs.tau == 7.0


# ---------------------------------------------------------------------- Simulation


def test_simulation_systems_in_order_and_no_duplicates() -> None:
    sim = Simulation()
    a, b = Decay(), Decay()
    sim.add_system(a)
    sim.add_system(b)
    assert sim.systems == [a, b]
    with pytest.raises(ValueError):
        sim.add_system(a)
    assert sim.systems == [a, b]


def test_simulate_needs_a_system() -> None:
    with pytest.raises(RuntimeError):
        Simulation().simulate(1.0, 0.1)


def test_simulate_needs_a_state() -> None:
    sim = Simulation()
    sim.add_system(NoStates())
    with pytest.raises(RuntimeError):
        sim.simulate(1.0, 0.1)


@pytest.mark.slow
def test_add_observer_rejects_duplicates_and_returns_a_remover() -> None:
    sim, _ = decay_sim()
    kept, dropped = Times(), Times()
    sim.add_observer(kept)
    remove = sim.add_observer(dropped)
    with pytest.raises(ValueError):
        sim.add_observer(dropped)
    sim.simulate(0.2, 0.1)
    assert len(dropped.t) == 3
    remove()
    sim.simulate(0.2, 0.1)
    assert len(dropped.t) == 3  # no longer called
    assert len(kept.t) == 5
    sim.add_observer(dropped)  # may be added again once removed


@pytest.mark.slow
def test_observers_get_time_and_the_flat_state_vector_in_dynodes_layout() -> None:
    import dynode

    DynSpring, DynTop = make_tree(dynode.SystemInterface)
    seen = {}
    for name, (spring_cls, top_cls, sim) in {
        "dynode": (DynSpring, DynTop, dynode.Simulation()),
        "dyngen": (Spring, Top, Simulation()),
    }.items():
        sim.add_system(spring_cls())
        sim.add_system(top_cls())
        obs = Times()
        sim.add_observer(obs)
        sim.simulate(1.0, 0.25, **TIGHT)
        seen[name] = obs

    # subsystems' states first, then the parent's own, each in insertion order
    expected_y0 = [1.0, 0.0] + [1.0, 0.0] + [1.0, 2.0, 3.0, 4.0] + [5.0] + [1.0, 2.0, 3.0]
    ours, theirs = seen["dyngen"], seen["dynode"]
    assert all(isinstance(y, np.ndarray) and y.dtype == np.float64 for y in ours.y)
    np.testing.assert_array_equal(ours.y[0], expected_y0)
    np.testing.assert_allclose(ours.t, theirs.t, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.array(ours.y), np.array(theirs.y), rtol=1e-9, atol=1e-12)
    t = np.array(ours.t)
    np.testing.assert_allclose(np.array(ours.y)[:, 0], np.cos(2 * t), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(np.array(ours.y)[:, 8], 5 * np.exp(-t), rtol=1e-6)


@pytest.mark.slow
def test_observers_see_t0_once_and_a_second_simulate_continues() -> None:
    sim, system = decay_sim()
    obs = Times()
    sim.add_observer(obs)
    end1 = sim.simulate(1.0, 0.25, **TIGHT)
    assert end1 == pytest.approx(1.0, abs=1e-12)
    end2 = sim.simulate(1.0, 0.25, **TIGHT)
    assert end2 == pytest.approx(2.0, abs=1e-12)
    np.testing.assert_allclose(obs.t, np.arange(9) * 0.25, atol=1e-12)
    assert obs.t.count(0.0) == 1
    np.testing.assert_allclose([y[0] for y in obs.y], np.exp(-0.5 * np.array(obs.t)), rtol=1e-6)
    assert system.states.x == pytest.approx(np.exp(-0.5 * end2), rel=1e-6)


def test_simulate_returns_the_time_reached_even_for_no_steps() -> None:
    sim, _ = decay_sim()
    obs = Times()
    sim.add_observer(obs)
    assert sim.simulate(0.05, 0.1) == 0.0  # int(0.5) == 0 steps, as in dynode
    assert obs.t == [0.0]
    # the time is still 0, so observers see t = 0 again (dynode: [0, 0, 0.1, 0.2, 0.3])
    assert sim.simulate(0.35, 0.1) == pytest.approx(0.3)  # int(3.4999...) steps
    np.testing.assert_allclose(obs.t, [0.0, 0.0, 0.1, 0.2, 0.3], atol=1e-12)


def test_an_observer_returning_true_stops_the_run() -> None:
    sim, system = decay_sim()
    before, after = Times(), Times()
    sim.add_observer(before)
    sim.add_observer(lambda t, y: t > 0.25)
    sim.add_observer(after)
    end = sim.simulate(1.0, 0.1, **TIGHT)
    assert end == pytest.approx(0.3)
    np.testing.assert_allclose(before.t, [0.0, 0.1, 0.2, 0.3], atol=1e-12)
    np.testing.assert_allclose(after.t, [0.0, 0.1, 0.2], atol=1e-12)  # not called after the stop
    assert system.states.x == pytest.approx(np.exp(-0.5 * 0.3), rel=1e-6)
    # the next run goes on from where the observer stopped it
    assert sim.simulate(0.1, 0.1, **TIGHT) == pytest.approx(0.4)


def test_every_observer_is_called_at_t0_even_after_one_returns_true() -> None:
    sim, _ = decay_sim()
    later = Times()
    sim.add_observer(lambda t, y: True)
    sim.add_observer(later)
    assert sim.simulate(1.0, 0.1) == pytest.approx(0.1)
    assert later.t == [0.0]  # dynode 0.4 gives [0]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["decay", "oscillator"])
def test_fixed_step_is_scipy_dopri5_with_infinite_atol_and_first_step_dt(model) -> None:
    dt, n = 0.2, 10
    if model == "decay":
        system = Decay(x0=2.0, k=1.5)

        def rhs(t, y):
            return -1.5 * y

        y0 = [2.0]
    else:
        system = Oscillator(w=3.0)

        def rhs(t, y):
            return np.array([y[1], -9.0 * y[0]])

        y0 = [1.0, 0.0]
    sim = Simulation()
    sim.add_system(system)
    obs = Times()
    sim.add_observer(obs)
    end = sim.simulate(n * dt, dt, fixed_step=True)

    ref = ode(rhs).set_integrator("dopri5", atol=np.inf, first_step=dt)
    ref.set_initial_value(y0, 0.0)
    expected_t, expected_y = [0.0], [np.array(y0)]
    for _ in range(n):
        ref.integrate(ref.t + dt)
        assert ref.successful()
        expected_t.append(ref.t)
        expected_y.append(ref.y.copy())
    assert end == ref.t
    np.testing.assert_allclose(obs.t, expected_t, rtol=0, atol=1e-15)
    np.testing.assert_allclose(np.array(obs.y), np.array(expected_y), rtol=1e-12, atol=1e-14)
    # and it is really a coarse fixed step: far from the closed form
    exact = 2.0 * np.exp(-1.5 * 2.0) if model == "decay" else np.cos(3.0 * 2.0)
    assert abs(obs.y[-1][0] - exact) > 1e-7


@pytest.mark.slow
def test_containers_hold_the_final_values_after_simulate() -> None:
    osc, lag = Oscillator(w=2.0), Lag(tau=0.5)
    osc.add_post_connection(connect_signals(osc.states, "x", lag.inputs, "u"))
    sim = Simulation()
    sim.add_system(osc)
    sim.add_system(lag)
    end = sim.simulate(1.5, 0.5, **TIGHT)
    assert end == pytest.approx(1.5)
    x, v = np.cos(2 * end), -2 * np.sin(2 * end)
    y = lag_closed_form(end, 2.0, 0.5)
    assert osc.states.x == pytest.approx(x, rel=1e-6)
    assert osc.states.v == pytest.approx(v, rel=1e-6)
    assert isinstance(osc.states["x"], np.ndarray) and osc.states["x"].shape == (1,)
    assert lag.states.y == pytest.approx(y, rel=1e-6)
    # signals computed by do_step and by connections are left in the containers too
    assert lag.inputs.u == pytest.approx(osc.states.x, rel=1e-12)
    assert lag.outputs.err == pytest.approx(osc.states.x - lag.states.y, rel=1e-9)
    assert osc.outputs.energy == pytest.approx(2.0, rel=1e-6)
    assert osc.ders.x == pytest.approx(osc.states.v, rel=1e-9)
    assert osc.ders.v == pytest.approx(-4 * osc.states.x, rel=1e-9)
    assert lag.ders.y == pytest.approx(lag.outputs.err / 0.5, rel=1e-9)
    # parameters keep the values the user gave them
    assert lag.inputs.tau == 0.5 and osc.inputs.w == 2.0


class PhaseOscillator(SystemInterface):
    """Oscillator's equations, with the phase point (x, v) as an array output."""

    def __init__(self, w: float = 2.0) -> None:
        super().__init__()
        self.states.x = 1.0
        self.states.v = 0.0
        self.ders.x = 0.0
        self.ders.v = 0.0
        self.inputs.w = w
        self.outputs.energy = 0.0
        self.outputs.point = np.zeros(2)

    def do_step(self, time):
        x, v, w = self.states.x, self.states.v, self.inputs.w
        self.ders.x = v
        self.ders.v = -(w**2) * x
        self.outputs.energy = 0.5 * (v**2 + w**2 * x**2)
        self.outputs.point = np.array([x, v])


@pytest.mark.slow
@pytest.mark.parametrize("edit", ["state", "der", "output", "array output", "state and der"])
def test_every_entry_holds_the_final_value_whatever_was_set_between_runs(edit) -> None:
    """simulate() places its results again only in the kinds of container written
    since its last run (states, ders, signals: each counted apart)."""
    osc = PhaseOscillator(w=2.0)
    sim = Simulation()
    sim.add_system(osc)
    sim.simulate(0.5, 0.5, **TIGHT)
    if "state" in edit:
        osc.states.x, osc.states.v = 1.0, 0.0  # back to the start: the run ends at t = 1.0 - 0.5
    if "der" in edit:
        osc.ders.x = 123.0
    if edit == "output":
        osc.outputs.energy = -1.0
    if edit == "array output":
        osc.outputs.point = np.array([9.0, 9.0])
    end = sim.simulate(1.0, 0.5, **TIGHT)
    elapsed = end - (0.0 if "state" not in edit else 0.5)
    x, v = np.cos(2 * elapsed), -2 * np.sin(2 * elapsed)
    assert osc.states.x == pytest.approx(x, rel=1e-6) and osc.states.v == pytest.approx(v, rel=1e-6)
    assert osc.ders.x == pytest.approx(v, rel=1e-6) and osc.ders.v == pytest.approx(-4 * x, rel=1e-6)
    assert osc.outputs.energy == pytest.approx(2.0, rel=1e-6)
    np.testing.assert_allclose(osc.outputs.point, [x, v], rtol=1e-6)


def test_changing_a_parameter_or_a_state_needs_no_rebuild() -> None:
    sim, system = decay_sim(k=0.5)
    first = sim.compile()
    sim.simulate(1.0, 0.5, **TIGHT)
    system.inputs.k = 2.0
    assert sim.compile() is first  # same build, same module
    sim.simulate(1.0, 0.5, **TIGHT)
    assert system.states.x == pytest.approx(np.exp(-0.5) * np.exp(-2.0), rel=1e-6)
    system.states.x = 3.0
    sim.simulate(1.0, 0.5, **TIGHT)
    assert system.states.x == pytest.approx(3.0 * np.exp(-2.0), rel=1e-6)
    assert sim.compile() is first
    assert sim.module is first.module


@pytest.mark.slow
@pytest.mark.parametrize("order", ["C", "F"])
def test_a_matrix_state_set_between_runs_is_read_row_by_row(order) -> None:
    """simulate() joins the states' bytes when it gathers them; a Fortran-ordered
    matrix cannot be joined and must still be read as dynode reads it (C order)."""
    top = Top()
    sim = Simulation()
    sim.add_system(top)
    sim.simulate(0.5, 0.5, **TIGHT)
    q0 = np.array([[1.0, -2.0], [3.0, 5.0]], order=order)
    top.matrix.states.q = q0
    top.matrix.states.q[0, 1] = -2.5  # dynode stores a copy: the write reaches the container's array
    sim.simulate(1.0, 0.5, **TIGHT)  # ders.q = -k q with k = 0.5
    expected = np.array([[1.0, -2.5], [3.0, 5.0]]) * np.exp(-0.5)
    np.testing.assert_allclose(top.matrix.states.q, expected, rtol=1e-7)
    assert q0[0, 1] == -2.0


def test_an_equal_model_reuses_the_cached_module() -> None:
    sim1, _ = decay_sim(k=0.5)
    module = sim1.module
    sim2, _ = decay_sim(x0=9.0, k=3.0)  # other values, same structure
    again = sim2.compile()
    assert again.reused
    assert again.module is module


@pytest.mark.slow
def test_adding_or_removing_a_connection_rebuilds() -> None:
    osc, lag = Oscillator(w=2.0), Lag(tau=0.5)
    osc.add_post_connection(connect_signals(osc.states, "x", lag.inputs, "u"))
    sim = Simulation()
    sim.add_system(osc)
    sim.add_system(lag)
    before = sim.compile()

    def scale(system, time):
        system.outputs.scaled = 3.0 * system.states.y

    remove = lag.add_post_connection(scale)
    after = sim.compile()
    assert after is not before and after.module is not before.module
    end = sim.simulate(1.0, 0.5, **TIGHT)
    assert lag.states.y == pytest.approx(lag_closed_form(end, 2.0, 0.5), rel=1e-6)
    assert lag.outputs.scaled == pytest.approx(3.0 * lag.states.y, rel=1e-12)

    remove()
    restored = sim.compile()
    assert restored is not after and restored.module is not after.module
    left = lag.outputs.scaled  # now nobody writes it: it keeps its value, as in dynode
    sim.simulate(0.5, 0.5, **TIGHT)
    assert lag.outputs.scaled == left
    assert lag.states.y == pytest.approx(lag_closed_form(1.5, 2.0, 0.5), rel=1e-6)


@pytest.mark.slow
def test_recorder_layout_and_values_against_the_closed_form() -> None:
    osc = Oscillator(w=2.0)
    sim = Simulation()
    sim.add_system(osc)
    rec = Recorder()
    rec.store(osc, "states.x")
    rec.store(osc, "states.v", alias="velocity")
    rec.store(osc, "outputs.energy")
    rec.store(osc, "inputs.w", alias="w")
    rec.store(osc, "ders.v")
    sim.add_observer(rec)
    sim.simulate(2.0, 0.1, **TIGHT)

    results = rec.results
    assert list(results) == [osc]
    series = results[osc]
    assert set(series) == {"time", "states.x", "velocity", "outputs.energy", "w", "ders.v"}
    t = np.array(series["time"])
    assert len(t) == 21 and t[0] == 0.0
    np.testing.assert_allclose(t, np.arange(21) * 0.1, atol=1e-12)
    assert all(type(v) is float for v in series["states.x"])  # one-element state -> float
    np.testing.assert_allclose(series["states.x"], np.cos(2 * t), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(series["velocity"], -2 * np.sin(2 * t), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(series["outputs.energy"], 2.0, rtol=1e-6)
    np.testing.assert_allclose(series["ders.v"], -4 * np.cos(2 * t), rtol=1e-6, atol=1e-8)
    assert series["w"] == [2.0] * 21


@pytest.mark.slow
def test_recorder_records_vector_states_and_subsystems_like_dynode() -> None:
    import dynode

    DynSpring, DynTop = make_tree(dynode.SystemInterface)
    recorded = {}
    for name, (top, sim, rec) in {
        "dynode": (DynTop(), dynode.Simulation(), dynode.Recorder()),
        "dyngen": (Top(), Simulation(), Recorder()),
    }.items():
        sim.add_system(top)
        rec.store(top, "states.a")
        rec.store(top, "states.z", alias="z")
        rec.store(top.matrix, "states.q")
        rec.store(top.spring, "states.x")
        sim.add_observer(rec)
        sim.simulate(1.0, 0.25, **TIGHT)
        recorded[name] = (rec.results, top)

    (ours, our_top), (theirs, their_top) = recorded["dyngen"], recorded["dynode"]
    assert set(ours) == {our_top, our_top.matrix, our_top.spring}
    pairs = [(our_top, their_top), (our_top.matrix, their_top.matrix), (our_top.spring, their_top.spring)]
    for mine, other in pairs:
        assert list(ours[mine]) == list(theirs[other])
        for key in ours[mine]:
            a, b = ours[mine][key], theirs[other][key]
            assert len(a) == len(b) == 5
            assert [np.shape(v) for v in a] == [np.shape(v) for v in b], key
            np.testing.assert_allclose(
                np.array(a, dtype=float), np.array(b, dtype=float), rtol=1e-7, atol=1e-10
            )
    assert ours[our_top.matrix]["states.q"][0].shape == (2, 2)


def test_recorder_store_rejects_what_does_not_exist() -> None:
    rec = Recorder()
    with pytest.raises(KeyError):
        rec.store(Decay(), "states.nope")
    with pytest.raises(AttributeError):
        rec.store(Decay(), "nothing.x")


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["dopri5", "dop853", "vode", "lsoda"])
def test_every_integrator_reaches_the_closed_form(integrator) -> None:
    osc = Oscillator(w=2.0)
    sim = Simulation()
    sim.add_system(osc)
    rec = Recorder()
    rec.store(osc, "states.x")
    rec.store(osc, "states.v")
    sim.add_observer(rec)
    end = sim.simulate(3.0, 0.25, integrator=integrator, **TIGHT)
    assert end == pytest.approx(3.0)
    t = np.array(rec.results[osc]["time"])
    np.testing.assert_allclose(rec.results[osc]["states.x"], np.cos(2 * t), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(rec.results[osc]["states.v"], -2 * np.sin(2 * t), rtol=1e-6, atol=1e-7)


def test_an_unknown_integrator_is_a_dyngen_error() -> None:
    sim, system = decay_sim()
    with pytest.raises(dyngen.DyngenError, match="euler") as info:
        sim.simulate(1.0, 0.1, integrator="euler")
    assert "dopri5" in str(info.value)  # says what to use instead
    assert system.states.x == 1.0
    assert sim.simulate(0.1, 0.1) == pytest.approx(0.1)  # nothing was advanced


@pytest.mark.slow
def test_non_finite_initial_values_are_allowed_as_in_dynode() -> None:
    system = Decay(x0=1.0, k=0.5)
    system.inputs.limit = np.inf  # an unused parameter, e.g. an open saturation limit
    sim = Simulation()
    sim.add_system(system)
    sim.simulate(1.0, 0.5)
    assert system.states.x == pytest.approx(np.exp(-0.5), rel=1e-5)
