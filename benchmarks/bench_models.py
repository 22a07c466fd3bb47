"""Benchmark models for ``run.py``: dynode-style components that run on dyngen and dynode.

The file is written against dyngen; ``benchmarks/models.py`` loads it a second time
with its ``from dyngen import`` line rewritten to import from dynode, so both
backends integrate the very same component code.

Every ``build_*`` function returns a ``Simulation`` plus a dict of facts about the
run (end time, output interval, tolerances) that the hand-written and JiTCODE peers
in ``peers.py`` reproduce exactly.

- ``build_vdp_pairs(n)``: n pairs of Van der Pol oscillators (mu = 1); the second
  of each pair is driven by the first's output through ``connect_signals``.
- ``build_mass_chain(n)``: n masses in a line, neighbours joined by springs and
  dampers written as pre-connections (closures over the neighbours); mass 0 is tied
  to a wall and pushed by a sinusoidal force.
- ``build_robertson()``: Robertson's stiff chemical kinetics problem.
- ``build_stiff_chain(n)``: n first-order lags in series, x' = k (u - x) - x^3 / 2,
  with rates k spread logarithmically over 1..1e6 (time constants 1e-6..1), each
  driven by the previous one's output; the first by sin(t).
"""

import numpy as np

from dyngen import Simulation, System, connect_signals

# --------------------------------------------------------------------------------------
# Van der Pol pairs
# --------------------------------------------------------------------------------------
VDP = {"t": 20.0, "dt": 0.1, "rtol": 1e-6, "atol": 1e-12}


class VanDerPol(System):
    def __init__(self, mu=1.0, x0=2.0, y0=0.0):
        super().__init__()
        self.inputs.mu = mu
        self.inputs.F = 0.0
        self.states.x = x0
        self.states.y = y0
        self.ders.x = 0.0
        self.ders.y = 0.0
        self.outputs.x = x0

    def do_step(self, time):
        x = self.states.x
        y = self.states.y
        self.ders.x = y
        self.ders.y = self.inputs.mu * (1.0 - x**2) * y - x + self.inputs.F
        self.outputs.x = x


def vdp_initial(n):
    """Initial (x, y) of leader and follower of pair i: slightly different per pair."""
    return [((2.0 + 0.01 * i, 0.0), (0.0, 1.0 - 0.01 * i)) for i in range(n)]


def build_vdp_pairs(n):
    sim = Simulation()
    for (lx, ly), (fx, fy) in vdp_initial(n):
        leader = VanDerPol(1.0, lx, ly)
        follower = VanDerPol(1.0, fx, fy)
        follower.add_pre_connection(connect_signals(leader.outputs, "x", follower.inputs, "F"))
        sim.add_system(leader)  # added first: its output is fresh for the follower
        sim.add_system(follower)
    return sim, dict(VDP, n_states=4 * n)


# --------------------------------------------------------------------------------------
# Mass-spring chain
# --------------------------------------------------------------------------------------
CHAIN = {"t": 20.0, "dt": 0.1, "rtol": 1e-6, "atol": 1e-12}
SPRING_K = 4.0
DAMPER_C = 0.1
PUSH_AMPLITUDE = 1.0
PUSH_OMEGA = 1.3


def chain_masses(n):
    """Mass of element i: between 1 and 2, deterministic."""
    return [1.0 + (i % 5) * 0.25 for i in range(n)]


class Mass(System):
    def __init__(self, m=1.0):
        super().__init__()
        self.inputs.m = m
        self.inputs.force = 0.0
        self.states.x = 0.0
        self.states.v = 0.0
        self.ders.x = 0.0
        self.ders.v = 0.0

    def do_step(self, time):
        self.ders.x = self.states.v
        self.ders.v = self.inputs.force / self.inputs.m


def springs(left, right, push):
    """A pre-connection: the spring/damper forces of the neighbours on a mass."""

    def connection(sys, t):
        x, v = sys.states.x, sys.states.v
        if left is None:  # tied to the wall, pushed
            force = -SPRING_K * x - DAMPER_C * v + push * np.sin(PUSH_OMEGA * t)
        else:
            force = SPRING_K * (left.states.x - x) + DAMPER_C * (left.states.v - v)
        if right is not None:
            force = force + SPRING_K * (right.states.x - x) + DAMPER_C * (right.states.v - v)
        sys.inputs.force = force

    return connection


def build_mass_chain(n):
    masses = [Mass(m) for m in chain_masses(n)]
    sim = Simulation()
    for i, mass in enumerate(masses):
        left = masses[i - 1] if i > 0 else None
        right = masses[i + 1] if i + 1 < n else None
        mass.add_pre_connection(springs(left, right, PUSH_AMPLITUDE))
        sim.add_system(mass)
    return sim, dict(CHAIN, n_states=2 * n)


# --------------------------------------------------------------------------------------
# Robertson
# --------------------------------------------------------------------------------------
ROBERTSON = {"t": 1e5, "dt": 1e3, "rtol": 1e-6, "atol": 1e-10}


class Robertson(System):
    def __init__(self):
        super().__init__()
        self.inputs.k1 = 0.04
        self.inputs.k2 = 3e7
        self.inputs.k3 = 1e4
        self.states.a = 1.0
        self.states.b = 0.0
        self.states.c = 0.0
        self.ders.a = 0.0
        self.ders.b = 0.0
        self.ders.c = 0.0

    def do_step(self, time):
        a, b, c = self.states.a, self.states.b, self.states.c
        k1, k2, k3 = self.inputs.k1, self.inputs.k2, self.inputs.k3
        self.ders.a = -k1 * a + k3 * b * c
        self.ders.b = k1 * a - k3 * b * c - k2 * b**2
        self.ders.c = k2 * b**2


def build_robertson():
    sim = Simulation()
    sim.add_system(Robertson())
    return sim, dict(ROBERTSON, n_states=3)


# --------------------------------------------------------------------------------------
# Stiff chain of lags
# --------------------------------------------------------------------------------------
STIFF = {"t": 10.0, "dt": 0.1, "rtol": 1e-6, "atol": 1e-10}


def stiff_rates(n):
    """Rates spread logarithmically over 1..1e6, in a fixed shuffled order."""
    rates = np.logspace(0.0, 6.0, n)
    return [float(r) for r in rates[np.random.default_rng(1234).permutation(n)]]


class Lag(System):
    def __init__(self, rate=1.0):
        super().__init__()
        self.inputs.rate = rate
        self.inputs.u = 0.0
        self.states.x = 0.0
        self.ders.x = 0.0
        self.outputs.y = 0.0

    def do_step(self, time):
        x = self.states.x
        self.ders.x = self.inputs.rate * (self.inputs.u - x) - 0.5 * x**3
        self.outputs.y = x


def sine_source(sys, t):
    sys.inputs.u = np.sin(t)


def build_stiff_chain(n):
    sim = Simulation()
    previous = None
    for rate in stiff_rates(n):
        lag = Lag(rate)
        if previous is None:
            lag.add_pre_connection(sine_source)
        else:
            lag.add_pre_connection(connect_signals(previous.outputs, "y", lag.inputs, "u"))
        sim.add_system(lag)
        previous = lag
    return sim, dict(STIFF, n_states=n)


BUILDERS = {
    "vdp_pairs": build_vdp_pairs,
    "mass_chain": build_mass_chain,
    "robertson": lambda n=None: build_robertson(),
    "stiff_chain": build_stiff_chain,
}


# --------------------------------------------------------------------------------------
# Ring of Van der Pol oscillators (issue 4: scale)
# --------------------------------------------------------------------------------------
RING = {"t": 10.0, "dt": 0.1, "rtol": 1e-6, "atol": 1e-10}
RING_COUPLING = 0.5


class RingOscillator(System):
    """A Van der Pol oscillator pulled towards its left neighbour's position."""

    def __init__(self, mu=1.0, x0=2.0, y0=0.0):
        super().__init__()
        self.inputs.mu = mu
        self.inputs.k = RING_COUPLING
        self.inputs.u = 0.0
        self.states.x = x0
        self.states.y = y0
        self.ders.x = 0.0
        self.ders.y = 0.0
        self.outputs.x = x0
        self.left = None

    def do_step(self, time):
        x = self.states.x
        y = self.states.y
        self.ders.x = y
        self.ders.y = self.inputs.mu * (1.0 - x**2) * y - x + self.inputs.u
        self.outputs.x = x


def ring_coupling(sys, t):
    """A pre-connection: the pull of the left neighbour."""
    sys.inputs.u = sys.inputs.k * (sys.left.states.x - sys.states.x)


def ring_initial(n):
    """Initial (x, y) of oscillator i: a wave around the ring."""
    return [(2.0 * np.cos(2 * np.pi * i / n), 2.0 * np.sin(2 * np.pi * i / n)) for i in range(n)]


def build_vdp_ring(n):
    oscillators = [RingOscillator(1.0 + 0.1 * (i % 3), x0, y0) for i, (x0, y0) in enumerate(ring_initial(n))]
    sim = Simulation()
    for i, osc in enumerate(oscillators):
        osc.left = oscillators[i - 1]
        osc.add_pre_connection(ring_coupling)
        sim.add_system(osc)
    return sim, dict(RING, n_states=2 * n)
