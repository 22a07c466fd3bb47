"""Models written the way engineers write them for dynode: Python `if` on states and
inputs, `math`, builtins, numba helpers, small vectors built from traced values.

Run unchanged by the real dynode (tests/dynode_compare.py swaps the import) and by
dyngen (tests/test_control_flow.py).
"""

import math

import numpy as np
from numba import njit, vectorize

from dyngen import Simulation, System


class OneSidedSpring(System):
    """if/elif/else on a state, a branch that switches many times during the run,
    assignments to locals and to an output in the branches."""

    def __init__(self):
        super().__init__()
        self.states.x = 1.0
        self.states.v = 0.0
        self.inputs.k = 4.0
        self.inputs.gap = 0.2
        self.outputs.contact = 0.0

    def do_step(self, time):
        x, v = self.states.x, self.states.v
        if x > self.inputs.gap:
            force = -self.inputs.k * (x - self.inputs.gap)
            self.outputs.contact = 1.0
        elif x < -self.inputs.gap:
            force = -self.inputs.k * (x + self.inputs.gap)
            self.outputs.contact = -1.0
        else:
            force = 0.0
            self.outputs.contact = 0.0
        self.ders.x = v
        self.ders.v = force - 0.1 * v + 0.5 * math.sin(1.3 * time)


class Thermostat(System):
    """Nested ifs, and/or/not, a conditional expression, an if on a parameter."""

    def __init__(self):
        super().__init__()
        self.states.T = 28.0
        self.inputs.setpoint = 21.0
        self.inputs.enabled = 1.0
        self.outputs.power = 0.0

    def do_step(self, time):
        T = self.states.T
        outside = 5.0 + 3.0 * math.cos(2 * math.pi * time / 24.0)
        if self.inputs.enabled:
            if T < self.inputs.setpoint - 0.5 and not time > 30.0:
                power = 1.0
            elif T < self.inputs.setpoint + 1.0 or (T < 25.0 and time > 40.0):
                power = 0.5
            else:
                power = 0.0
        else:
            power = 0.0
        power = power * 1.5 if T < 15.0 else power
        self.outputs.power = power
        self.ders.T = 0.2 * (outside - T) + power


class EarlyReturn(System):
    """An early return in do_step and in a helper method with its own if."""

    def __init__(self):
        super().__init__()
        self.states.h = 2.0
        self.inputs.leak = 0.3

    def outflow(self, h):
        if h <= 0.0:
            return 0.0
        return self.inputs.leak * math.sqrt(h)

    def do_step(self, time):
        h = self.states.h
        if h < 0.5:
            self.ders.h = 0.05 * math.cos(time) - self.outflow(h)
            return
        self.ders.h = 0.1 * math.exp(-0.1 * time) - self.outflow(h)


def dead_band(x, width):
    """A module-level helper with Python control flow."""
    if abs(x) < width:
        return 0.0
    return x - width if x > 0 else x + width


class Builtins(System):
    """abs, min, max, round, float, int on traced values; math functions and constants."""

    def __init__(self):
        super().__init__()
        self.states.a = 0.7
        self.states.b = -0.4
        self.outputs.rounded = 0.0
        self.outputs.truncated = 0.0

    def do_step(self, time):
        a, b = self.states.a, self.states.b
        self.outputs.rounded = float(round(3.0 * a))
        self.outputs.truncated = float(int(4.0 * b))
        self.ders.a = min(-a, 0.5 * b) + max(0.0, b) - 0.1 * abs(a) + 0.01 * round(a, 1)
        self.ders.b = dead_band(math.atan2(a, 1.0) - b, 0.05) - 0.2 * math.log(1.0 + b * b) + math.pi / 100


def build():
    sim = Simulation()
    for system in (OneSidedSpring(), Thermostat(), EarlyReturn(), Builtins()):
        sim.add_system(system)
    return sim


# ------------------------------------------------------------------ numba helpers
# The two patterns of dynode's "numba acceleration" page, written afresh.


@njit
def friction(v, mu):
    if v > 0.0:
        return -mu * v / (0.1 + v)
    elif v < 0.0:
        return -mu * v / (0.1 - v)
    return 0.0


class Block(System):
    """A @staticmethod @njit helper and a module-level @njit helper inside do_step."""

    def __init__(self):
        super().__init__()
        self.states.x = 0.0
        self.states.v = 1.0
        self.inputs.mu = 0.2

    @staticmethod
    @njit
    def spring(x, k):
        return -k * x * (1.0 + 0.1 * x * x)

    def do_step(self, time):
        self.ders.x = self.states.v
        self.ders.v = self.spring(self.states.x, 2.0) + friction(self.states.v, self.inputs.mu)


@njit
def chain_ders(q, k):
    n = q.shape[0]
    d = np.zeros(n)
    for i in range(n):
        if i > 0:
            d[i] = k * (q[i - 1] - q[i])
        else:
            d[i] = -k * q[i]
    return d


@vectorize
def soft(x):
    if x > 0.0:
        return x / (1.0 + x)
    return 0.5 * x


class Chain(System):
    """np.zeros(n) filled element by element in a loop with `if i > 0` (in an @njit
    helper and directly in do_step)."""

    def __init__(self, n=6):
        super().__init__()
        self.n = n
        self.states.q = np.linspace(1.0, 0.0, n)
        self.states.r = np.zeros(n)

    def do_step(self, time):
        self.ders.q = chain_ders(self.states.q, 0.8)
        r = self.states.r
        dr = np.zeros(self.n)
        for i in range(self.n):
            if i > 0:
                dr[i] = 0.5 * (r[i - 1] - r[i]) + self.states.q[i]
            else:
                dr[i] = -0.5 * r[i]
        self.ders.r = dr - 0.1 * soft(r - 0.2)


def build_numba():
    sim = Simulation()
    sim.add_system(Block())
    sim.add_system(Chain())
    return sim


# ------------------------------------------------------------------ small vectors

MIX = np.array([
    [0.0, 1.0, 0.0, 0.0],
    [-1.0, -0.1, 0.2, 0.0],
    [0.0, 0.0, 0.0, 1.0],
    [0.3, 0.0, -2.0, -0.2],
])  # fmt: skip


class Rotor(System):
    """np.array([...]) of traced scalars with clip, maximum, minimum, where,
    comparisons, and a constant 4x4 matrix @ the vector."""

    def __init__(self):
        super().__init__()
        self.states.s = np.array([1.0, 0.0, -0.5, 0.2])
        self.outputs.wrench = np.zeros(3)

    def do_step(self, time):
        s0, s1, s2, s3 = self.states.s
        wrench = np.array([s0 + s1, s1 * s2, 2.0 * s3])
        wrench = np.clip(wrench, -0.6, 0.6)
        wrench = np.maximum(wrench, np.array([-0.5, -0.4, -0.3])) + np.minimum(wrench, 0.1)
        limited = np.where(np.abs(wrench) > 0.5, 0.5 * wrench + 0.25 * np.sign(wrench), wrench)
        self.outputs.wrench = limited
        drive = np.array([0.0, limited[0], 0.0, limited[2] - limited[1]])
        self.ders.s = MIX @ np.array([s0, s1, s2, s3]) + drive * (drive > -1.0)


def build_vectors():
    sim = Simulation()
    sim.add_system(Rotor())
    return sim
