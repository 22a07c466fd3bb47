"""Lookup tables: ``np.interp`` on constant tables (issue 14).

The compiled lookup is checked against numpy's own ``np.interp`` bit for bit (at
breakpoints, repeated points, outside the table, NaN and infinities, with
``left``/``right``/``period``), its Jacobian against finite differences, whole models
against the real dynode 0.4 (which runs ``np.interp`` natively), and a stiff model
under ``rodas4`` against scipy's Radau.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.integrate import solve_ivp

from dyngen import Recorder, Simulation, System, TraceError
from dyngen.runtime.fingerprint import structure_key
from dynode_compare import assert_same_runs, build_simulation, load_model_source, run_both
from finite_differences import central_differences

MODELS = Path(__file__).resolve().parent / "interp_model.py"

REPEATED_XP = np.array([-1.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 3.5])
LONG_XP = np.linspace(0.0, 10.0, 41)
PERIODIC_XP = [-0.5, 0.3, 1.7, 2.4, 7.1, 2.5]  # outside [0, period), unsorted, a tie after % 2.5
# (xp, fp, keyword arguments): every case is one output of Lookups
CASES = [
    (REPEATED_XP, np.array([3.0, -1.0, 4.0, 2.0, 0.5, 7.0, -2.0, 1.0]), {}),
    (REPEATED_XP, np.array([3.0, -1.0, 4.0, 2.0, 0.5, 7.0, -2.0, 1.0]), {"left": -7.5, "right": np.nan}),
    ([1.0], [4.0], {"left": -1.0, "right": 2.0}),  # one point: numpy returns fp[0] for NaN
    ([0.5, 1.5], [1, 3], {}),  # integer values
    (np.arange(6.0), np.array([0.0, 1.0, np.inf, np.inf, 2.0, -np.inf]), {}),  # non-finite values
    (PERIODIC_XP, [1.0, 2.0, -3.0, 0.5, 4.0, 6.0], {"period": 2.5}),
    (PERIODIC_XP, [1.0, 2.0, -3.0, 0.5, 4.0, 6.0], {"period": -2.5, "left": 9.0}),  # left is ignored
    (LONG_XP, np.sin(LONG_XP) + 0.1 * LONG_XP, {}),
]
FINITE = (0, 5, 7)  # the cases summed into ders.x (for the Jacobian)
WIDTH = 16


class Lookups(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = np.linspace(-2.0, 11.0, WIDTH)
        for k in range(len(CASES)):
            self.outputs[f"o{k}"] = np.zeros(WIDTH)

    def do_step(self, time):
        total = 0.0
        for k, (xp, fp, options) in enumerate(CASES):
            value = np.interp(self.states.x, xp, fp, **options)
            self.outputs[f"o{k}"] = value
            if k in FINITE:
                total = total + value
        self.ders.x = total


def _breakpoints() -> np.ndarray:
    points = [np.asarray(xp, dtype=float) for xp, _, _ in CASES]
    wrapped = np.remainder(PERIODIC_XP, 2.5)
    points += [wrapped + k * 2.5 for k in range(-2, 5)]
    return np.unique(np.concatenate(points))


def _points() -> np.ndarray:
    breaks = _breakpoints()
    near = np.concatenate([np.nextafter(breaks, np.inf), np.nextafter(breaks, -np.inf), breaks + 1e-9])
    rng = np.random.default_rng(14)
    special = [np.nan, np.inf, -np.inf, -0.0, 0.0, 1e300, -1e300, 2.5, -2.5, 5.0, 12.5, -1e-17, 1e-300]
    points = np.concatenate([breaks, near, special, rng.uniform(-3.0, 12.0, 300), (breaks[:-1] + breaks[1:]) / 2])
    return np.concatenate([points, np.zeros(-len(points) % WIDTH)])


@pytest.fixture(scope="module")
def lookups():
    sim = Simulation()
    sim.add_system(Lookups())
    module = sim.compile().module
    return module


def _observe(module, x: np.ndarray) -> np.ndarray:
    y, out = np.empty(module.N_STATES), np.empty(module.N_OBSERVED)
    start, stop, _ = module.STATES["Lookups"]["x"]
    y[start:stop] = x
    module.observe(0.0, y, module.DEFAULT_PARAMETERS, out)
    return out


@pytest.mark.slow
def test_the_lookup_is_numpys_interp_bit_for_bit(lookups) -> None:
    points = _points()
    for k, (xp, fp, options) in enumerate(CASES):
        start, stop, _ = lookups.OBSERVED["Lookups"][f"outputs.o{k}"]
        got = np.concatenate([_observe(lookups, chunk)[start:stop] for chunk in points.reshape(-1, WIDTH)])
        with np.errstate(invalid="ignore"):  # numpy's x % period of inf
            expected = np.interp(points, xp, fp, **options)
        np.testing.assert_array_equal(got, expected, err_msg=f"case {k}: {options}")
        assert np.array_equal(np.signbit(got), np.signbit(expected), equal_nan=True)


def test_the_tables_are_module_data_with_the_model_line(lookups) -> None:
    source = Path(lookups.__file__).read_text(encoding="utf-8")
    line = next(i for i, text in enumerate(Path(__file__).read_text().splitlines(), 1) if "value = np.interp(" in text)
    # one pair of arrays per distinct (xp, fp): cases 0/1 and 5/6 share theirs
    assert source.count("_XP = np.array(") == len(CASES) - 2
    # the file relative to the model's folder: the test file's own, or the working folder
    # when no main script names it (a pytest-xdist worker)
    assert re.search(rf"# np\.interp table at (tests/)?test_interp\.py:{line}: 41 points\n", source)
    assert "INTERP_" in source and "Piecewise" not in source
    tables = dict(re.findall(r"\n(INTERP_\d+_[XF]P) = (np\.array\(.*?dtype=np\.float64\))", source, re.S))
    long_xp = tables[re.search(r"41 points\n(INTERP_\d+)_XP", source).group(1) + "_XP"]
    assert np.array_equal(eval(long_xp, {"np": np, "math": math}), LONG_XP)  # floats printed exactly


@pytest.mark.slow
def test_the_jacobian_is_the_segment_slope(lookups) -> None:
    breaks = _breakpoints()
    p = lookups.DEFAULT_PARAMETERS
    J = np.empty((lookups.N_STATES, lookups.N_STATES))
    rng = np.random.default_rng(3)
    x = rng.uniform(-1.5, 11.5, 200)
    x = x[np.min(np.abs(x[:, None] - breaks[None, :]), axis=1) > 1e-3][:WIDTH * 8]
    for chunk in x.reshape(-1, WIDTH):
        y = np.empty(lookups.N_STATES)
        y[:] = chunk
        lookups.jac(0.0, y, p, J)
        np.testing.assert_allclose(J, central_differences(lookups, 0.0, y, p), rtol=1e-6, atol=1e-8)
    # at a breakpoint: the slope from the right (the segment numpy uses there)
    y = breaks[(breaks > -1.0) & (breaks < 10.0)][:WIDTH]
    h = 1e-7
    lookups.jac(0.0, y, p, J)
    plus, here = np.empty(WIDTH), np.empty(WIDTH)
    lookups.rhs(0.0, y + h, p, plus)
    lookups.rhs(0.0, y, p, here)
    np.testing.assert_allclose(np.diag(J), (plus - here) / h, rtol=1e-5, atol=1e-6)
    assert np.count_nonzero(J - np.diag(np.diag(J))) == 0


@pytest.mark.slow
def test_a_model_with_tables_matches_dynode() -> None:
    ours, theirs = run_both(lambda backend: build_simulation(MODELS, backend), 4.0, 0.05)
    assert_same_runs(ours, theirs)
    assert np.ptp(ours.series["0:Resistor"]["outputs.R"]) > 0.1  # the table was used


@pytest.mark.slow
def test_the_array_form_interpolates_elementwise_like_dynode() -> None:
    ours, theirs = run_both(lambda backend: build_simulation(MODELS, backend, "build_cells", 100), 2.0, 0.1)
    assert_same_runs(ours, theirs)
    sim = build_simulation(MODELS, "dyngen", "build_cells", 100)
    module = sim.compile().module
    source = Path(module.__file__).read_text(encoding="utf-8")
    assert "for i in range(" in source and "interp_slope(y[i]" in source  # a loop, not 100 lines
    rng = np.random.default_rng(5)
    y = rng.uniform(-0.4, 2.4, module.N_STATES)
    J = np.empty((module.N_STATES, module.N_STATES))
    module.jac(0.0, y, module.DEFAULT_PARAMETERS, J)
    np.testing.assert_allclose(J, central_differences(module, 0.0, y, module.DEFAULT_PARAMETERS), rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_rodas4_with_a_rate_table_matches_radau() -> None:
    sim = build_simulation(MODELS, "dyngen", "build_stiff")
    reaction = sim.systems[0]
    recorder = Recorder()
    recorder.store(reaction, "states.c")
    recorder.store(reaction, "states.T")
    sim.add_observer(recorder)
    sim.simulate(20.0, 0.5, integrator="rodas4", rtol=1e-9, atol=1e-12)
    times = np.array(recorder.results[reaction]["time"])
    ours = np.column_stack([recorder.results[reaction]["states.c"], recorder.results[reaction]["states.T"]])

    table_t = np.array([280.0, 300.0, 320.0, 340.0, 360.0, 380.0, 400.0])  # written out again: independent
    table_k = np.array([1e-2, 0.3, 5.0, 60.0, 500.0, 3000.0, 1e4])

    def rhs(t, z):
        c, temperature = z
        k = np.interp(temperature, table_t, table_k)
        return [-k * c, (330.0 - temperature) / 5.0 + 40.0 * k * c]

    reference = solve_ivp(rhs, (0.0, 20.0), [1.0, 330.0], method="Radau", rtol=1e-10, atol=1e-12, t_eval=times)
    assert reference.success
    assert ours[:, 1].max() > 365.0  # the run went through the stiff part of the table (k > 1000)
    np.testing.assert_allclose(ours, reference.y.T, rtol=1e-6, atol=1e-9)


# ----------------------------------------------------------------- tables change


class Heater(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.T = 0.5
        self.ders.T = 0.0
        self.curve = np.array([1.0, 2.0, 4.0])

    def do_step(self, time):
        self.ders.T = np.interp(self.states.T, [0.0, 1.0, 2.0], self.curve)


def test_a_changed_table_rebuilds_and_copies_share_a_kernel() -> None:
    heaters = [Heater() for _ in range(4)]
    sim = Simulation()
    for heater in heaters:
        sim.add_system(heater)
    key = structure_key(heaters, ("heater",))
    first = sim.compile()
    assert "for i in range(4):" in Path(first.module.__file__).read_text(encoding="utf-8")  # one loop over the copies
    heaters[2].curve[1] = 3.0  # edited in place: the next build must see it
    assert structure_key(heaters, ("heater",)) != key
    second = sim.compile()
    assert second.digest != first.digest
    module, dy = second.module, np.empty(4)
    y = np.array([0.5, 1.0, 1.0, 1.5])  # (dynode's order: no packing for 4 systems of one state)
    module.rhs(0.0, y, module.DEFAULT_PARAMETERS, dy)
    assert dy.tolist() == [1.5, 2.0, 3.0, 3.0]


def test_the_structure_key_covers_global_and_closure_tables() -> None:
    lookups = Lookups()
    key = structure_key([lookups], ("lookups",))
    LONG_XP[3] += 1e-9  # a global table (inside the CASES list)
    try:
        assert structure_key([lookups], ("lookups",)) != key
    finally:
        LONG_XP[3] -= 1e-9
    assert structure_key([lookups], ("lookups",)) == key
    fan = load_model_source(MODELS, "dyngen").Fan()
    key = structure_key([fan], ("fan",))
    fan.rate.__closure__[1].cell_contents[2] = 5.0  # the closure's ys
    assert structure_key([fan], ("fan",)) != key


# ----------------------------------------------------------------- errors


class TracedTable(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 0.0
        self.inputs.table = np.array([1.0, 2.0, 3.0])  # an input is a runtime parameter

    def do_step(self, time):
        self.ders.x = np.interp(self.states.x, [0.0, 1.0, 2.0], self.inputs.table)


class Unsorted(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.x = 0.0

    def do_step(self, time):
        self.ders.x = np.interp(self.states.x, [0.0, 2.0, 1.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    ("cls", "message", "line_text"),
    [
        (TracedTable, "np.interp with a traced table fp", "self.inputs.table)"),
        (Unsorted, "xp is not increasing (xp[1] = 2.0 > xp[2] = 1.0)", "[0.0, 2.0, 1.0]"),
    ],
)
def test_tables_that_are_not_constant_or_not_sorted_are_trace_errors(cls, message: str, line_text: str) -> None:
    sim = Simulation()
    sim.add_system(cls())
    with pytest.raises(TraceError) as raised:
        sim.compile()
    text = str(raised.value)
    line = next(i for i, t in enumerate(Path(__file__).read_text().splitlines(), 1) if line_text in t)
    assert message in text and f"test_interp.py:{line}" in text and "write instead" in text, text
