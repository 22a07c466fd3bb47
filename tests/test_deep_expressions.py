"""Issue 16: deeply nested conditionals compile, and exploding ones are a clear error.

A chain of 240 ``np.where`` (a lookup written as a loop) failed with a RecursionError
from sympy while tracing, and chains of more than about 100 with "too many nested
parentheses" when the module was imported; both now build (a deep-stack retry of the
build, statements split by height) and match the closed form. A loop that uses the
previous value in both branches (``x = np.where(s > k, x + 1, x)``) doubles the
expression per iteration and never finished building; it is now a TraceError at its
line that says how to write it.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from dyngen import Simulation, System, TraceError

LEVELS = 240


class Chain(System):
    """x(s) = number of k < LEVELS with s > k, as a chain of where; v' = x(s), s' = 1."""

    def __init__(self) -> None:
        super().__init__()
        self.states.s = 0.0
        self.states.v = 0.0
        self.outputs.x = 0.0

    def do_step(self, time):
        s = self.states.s
        x = 0.0
        for k in range(LEVELS):
            x = np.where(s > k, k + 1.0, x)
        self.outputs.x = x
        self.ders.s = 1.0
        self.ders.v = x


class Doubling(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.s = 0.0
        self.outputs.x = 0.0

    def do_step(self, time):
        s = self.states.s
        x = 0.0 * s
        for k in range(90):
            x = np.where(s > k, x + 1, x)  # the line the error names
        self.outputs.x = x
        self.ders.s = 1.0


@pytest.mark.slow
def test_a_chain_of_240_where_builds_and_matches_the_closed_form() -> None:
    sim = Simulation()
    chain = Chain()
    sim.add_system(chain)
    seen = []
    sim.add_observer(lambda t, y: seen.append((t, float(chain.outputs.x), float(chain.states.v))))
    sim.simulate(250.0, 12.5, rtol=1e-8, atol=1e-8, nsteps=100_000)  # v' has a step at every integer
    assert len(seen) == 21
    for t, x, v in seen:
        assert x == min(math.ceil(t), LEVELS)  # t = 12.5, 25, ...: never on a step
        assert v == pytest.approx(sum(max(0.0, t - k) for k in range(LEVELS)), rel=1e-4)  # dopri5 across 240 steps of v'


def test_a_conditional_that_doubles_per_iteration_names_its_line() -> None:
    sim = Simulation()
    sim.add_system(Doubling())
    with pytest.raises(TraceError) as caught:
        sim.simulate(1.0, 0.5)
    message = str(caught.value)
    line = next(i for i, text in enumerate(open(__file__).read().splitlines(), 1) if "the line the error names" in text)
    assert f"test_deep_expressions.py:{line}" in message
    assert "x = x + where(s > k, 1.0, 0.0)" in message


def test_a_condition_on_conditional_values_is_nested_ites_with_the_same_truth() -> None:
    """``where(...) + where(...) > c``: sympy folds such a condition into a Piecewise
    of conditions and rewrote it as ITE by a method that took seconds per condition
    (a 4-state model traced 12 s); dyngen builds the ITE itself. The result holds no
    Piecewise, and is true exactly where the original condition is."""
    import sympy as sp

    from dyngen.symbolic import unfolded

    a, b = sp.symbols("a b")
    clipped = sp.Min(0.1, sp.Max(-0.6, a * b))
    limited = sp.Piecewise((0.5 * clipped + 0.25 * sp.sign(clipped), sp.Abs(clipped) > 0.05), (clipped, True))
    other = sp.Piecewise((2 * b, b > a), (a - b, True))
    condition = limited + other > 0.2
    flat = unfolded(condition)
    assert not flat.has(sp.Piecewise)
    x, y = np.random.default_rng(3).uniform(-2.0, 2.0, (2, 2000))
    expected = sp.lambdify((a, b), condition, "numpy")(x, y)
    assert 0.1 < np.mean(expected) < 0.9  # both outcomes are tried
    np.testing.assert_array_equal(sp.lambdify((a, b), flat, "numpy")(x, y), expected)


class Limited(System):
    """A der that multiplies a sum of clipped, limited values by a condition on it."""

    def __init__(self) -> None:
        super().__init__()
        self.states.s = np.array([0.3, -0.2, 0.5])

    def do_step(self, time):
        s = self.states.s
        w = np.clip(s * s[::-1], -0.6, 0.6)
        limited = np.where(np.abs(w) > 0.1, 0.5 * w + 0.05 * np.sign(w), w)
        drive = limited + limited[::-1]
        self.ders.s = -s + drive * (drive > -0.05) + np.sin(time)


def test_a_der_scaled_by_a_condition_on_limited_values_matches_numpy(tmp_path) -> None:
    def rhs(t: float, s: np.ndarray) -> np.ndarray:
        w = np.clip(s * s[::-1], -0.6, 0.6)
        limited = np.where(np.abs(w) > 0.1, 0.5 * w + 0.05 * np.sign(w), w)
        drive = limited + limited[::-1]
        return -s + drive * (drive > -0.05) + np.sin(t)

    simulation = Simulation(cache_dir=tmp_path)
    simulation.add_system(Limited())
    module = simulation.compile().module
    rng = np.random.default_rng(4)
    for _ in range(200):
        y, t = rng.uniform(-1.5, 1.5, 3), float(rng.uniform(0.0, 10.0))
        dy = np.empty(3)
        module.rhs(t, y, module.DEFAULT_PARAMETERS, dy)
        np.testing.assert_allclose(dy, rhs(t, y), rtol=1e-14, atol=1e-15)
