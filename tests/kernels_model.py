"""Models with many instances of few classes, for tests/test_kernels.py (issue 4, scale).

Loaded under dyngen and, with the import swapped, under dynode (see dynode_compare).

- ``build_ring(n)``: a ring of Van der Pol oscillators, each pulled towards its left
  neighbour by a pre-connection (as ``examples/oscillator_ring.py``).
- ``build_self_rings(n)``: two rings of oscillators whose connection reads
  ``sys.left``: in the first ``left`` is always the instance itself, in the second for
  every third instance (else the left neighbour).  Where ``left`` is the instance
  itself, the connection's and ``do_step``'s derivatives hit the same Jacobian entry.
- ``build_lag_chain(n)``: first-order lags in series, coupled with ``connect_signals``
  (the first driven by sin(t)); rates spread over 1..30.
- ``build_algebraic_chains(n)``: relays whose output is their state plus their
  input, the input being the previous relay's output: instantaneous chains through
  the instances of one class (one coupled with ``connect_signals``, one with a scaled
  pre-connection), next to a small oscillator ring.
- ``build_tops_and_brake(n)``: n copies of a rigid body spinning freely (a 3-element
  vector state, Euler's equations, and a scalar angle), a lone brake added among
  them, whose state torques every body (a pre-connection): vector states inside
  a group, and a system between the group's instances in dynode's layout.
- ``build_rod_with_probes(n_cells, n_probes)``: a rod with a vector state of
  ``n_cells`` temperatures (1-D diffusion with slicing and ``np.concatenate``) heated
  at its left end by the sum of the outputs of ``n_probes`` small heater controllers,
  each tracking the temperature at one point of the rod.
"""

import numpy as np

from dyngen import Simulation, System, connect_signals

# --------------------------------------------------------------------------------------
# Ring of Van der Pol oscillators
# --------------------------------------------------------------------------------------


class RingOscillator(System):
    def __init__(self, mu=1.0, x0=1.0, y0=0.0):
        super().__init__()
        self.inputs.mu = mu
        self.inputs.k = 0.5
        self.inputs.u = 0.0
        self.states.x = x0
        self.states.y = y0
        self.ders.x = 0.0
        self.ders.y = 0.0
        self.outputs.energy = 0.0
        self.left = None

    def do_step(self, time):
        x = self.states.x
        y = self.states.y
        self.ders.x = y
        self.ders.y = self.inputs.mu * (1.0 - x**2) * y - x + self.inputs.u
        self.outputs.energy = 0.5 * (x**2 + y**2)


def pull_of_left_neighbour(sys, t):
    sys.inputs.u = sys.inputs.k * (sys.left.states.x - sys.states.x)


def ring_initial(n):
    angles = 2 * np.pi * np.arange(n) / n
    return [(2.0 * np.cos(a), 2.0 * np.sin(a)) for a in angles]


def build_ring(n):
    ring = [RingOscillator(1.0 + 0.25 * (i % 3), x0, y0) for i, (x0, y0) in enumerate(ring_initial(n))]
    sim = Simulation()
    for i, oscillator in enumerate(ring):
        oscillator.left = ring[i - 1]
        oscillator.add_pre_connection(pull_of_left_neighbour)
        sim.add_system(oscillator)
    return sim


# --------------------------------------------------------------------------------------
# Oscillators whose connection (sometimes, or always) reads the instance itself
# --------------------------------------------------------------------------------------


def nonlinear_pull(sys, t):
    # Reads k, left.x, then the instance's own y: the same roles whether left is sys or not.
    sys.inputs.u = sys.inputs.k * np.sin(sys.left.states.x) * (1.0 + 0.1 * sys.states.y)


def pull_of_itself(sys, t):
    # The same, as another function (another group): here left is always sys.
    sys.inputs.u = sys.inputs.k * np.sin(sys.left.states.x) * (1.0 + 0.1 * sys.states.y)


def build_self_rings(n):
    """Two rings of n: in the first every oscillator's ``left`` is itself; in the second
    every third one's is (the others: the left neighbour)."""
    sim = Simulation()
    for ring_index, (connection, self_every) in enumerate(((pull_of_itself, 1), (nonlinear_pull, 3))):
        initial = ring_initial(n)
        ring = [RingOscillator(1.0 + 0.2 * ((i + ring_index) % 4), x0, y0) for i, (x0, y0) in enumerate(initial)]
        for i, oscillator in enumerate(ring):
            oscillator.left = oscillator if i % self_every == 0 else ring[i - 1]
            oscillator.add_pre_connection(connection)
            sim.add_system(oscillator)
    return sim


# --------------------------------------------------------------------------------------
# Chain of lags coupled with connect_signals
# --------------------------------------------------------------------------------------


class Lag(System):
    def __init__(self, rate=1.0, x0=0.0):
        super().__init__()
        self.inputs.rate = rate
        self.inputs.u = 0.0
        self.states.x = x0
        self.ders.x = 0.0
        self.outputs.y = x0

    def do_step(self, time):
        x = self.states.x
        self.ders.x = self.inputs.rate * (self.inputs.u - x) - 0.5 * x**3
        self.outputs.y = x


def sine_source(sys, t):
    sys.inputs.u = np.sin(t)


def build_lag_chain(n):
    rates = np.logspace(0.0, np.log10(30.0), n)[np.random.default_rng(7).permutation(n)]
    sim = Simulation()
    previous = None
    for i, rate in enumerate(rates):
        lag = Lag(float(rate), 0.5 * np.cos(0.3 * i))
        if previous is None:
            lag.add_pre_connection(sine_source)
        else:
            lag.add_pre_connection(connect_signals(previous.outputs, "y", lag.inputs, "u"))
        sim.add_system(lag)
        previous = lag
    return sim


# --------------------------------------------------------------------------------------
# Spinning bodies with vector states, and a lone brake among them
# --------------------------------------------------------------------------------------


class Top(System):
    def __init__(self, w0, inertia=(1.0, 2.0, 3.0)):
        super().__init__()
        self.inputs.torque = 0.0
        self.inputs.i1, self.inputs.i2, self.inputs.i3 = inertia
        self.states.w = np.array(w0, dtype=float)
        self.states.angle = 0.0
        self.ders.w = np.zeros(3)
        self.ders.angle = 0.0
        self.outputs.spin = float(w0[2])
        self.brake = None

    def do_step(self, time):
        w = self.states.w
        i1, i2, i3 = self.inputs.i1, self.inputs.i2, self.inputs.i3
        self.ders.w = np.array([
            ((i2 - i3) * w[1] * w[2] + self.inputs.torque) / i1,
            (i3 - i1) * w[2] * w[0] / i2,
            (i1 - i2) * w[0] * w[1] / i3,
        ])
        self.ders.angle = w[2]
        self.outputs.spin = w[2]


class Brake(System):
    def __init__(self):
        super().__init__()
        self.states.v = 1.0
        self.ders.v = 0.0

    def do_step(self, time):
        self.ders.v = -0.5 * self.states.v


def braking_torque(sys, t):
    sys.inputs.torque = -0.1 * sys.brake.states.v


def build_tops_and_brake(n):
    sim = Simulation()
    brake = Brake()
    for i in range(n):
        top = Top([0.1 + 0.05 * i, 1.0, 0.3 - 0.02 * i], (1.0, 2.0 + 0.1 * i, 3.0))
        top.brake = brake
        top.add_pre_connection(braking_torque)
        sim.add_system(top)
        if i == 1:
            sim.add_system(brake)
    return sim


# --------------------------------------------------------------------------------------
# An algebraic chain through the instances of one class
# --------------------------------------------------------------------------------------


class Relay(System):
    def __init__(self, rate=1.0, x0=0.0):
        super().__init__()
        self.inputs.rate = rate
        self.inputs.u = 0.1
        self.states.x = x0
        self.ders.x = 0.0
        self.outputs.y = x0 + 0.1

    def do_step(self, time):
        x = self.states.x
        self.outputs.y = x + self.inputs.u  # instantaneous: depends on the input
        self.ders.x = -self.inputs.rate * x + 0.3 * np.tanh(self.inputs.u)


def scaled_previous_output(sys, t):
    sys.inputs.u = 0.5 * sys.previous.outputs.y


def build_algebraic_chains(n, ring=6):
    """Two chains of n relays (one coupled with ``connect_signals``, one with a scaled
    pre-connection), then a ring of oscillators that could be one kernel on its own."""
    sim = Simulation()
    for copy in (True, False):
        previous = None
        for i in range(n):
            relay = Relay(1.0 + 0.1 * i, np.sin(1.0 + i + 0.5 * copy))
            if previous is not None:
                if copy:
                    relay.add_pre_connection(connect_signals(previous.outputs, "y", relay.inputs, "u"))
                else:
                    relay.previous = previous
                    relay.add_pre_connection(scaled_previous_output)
            sim.add_system(relay)
            previous = relay
    for oscillator in build_ring(ring).systems:
        sim.add_system(oscillator)
    return sim


# --------------------------------------------------------------------------------------
# A rod with a long vector state, and small heater controllers
# --------------------------------------------------------------------------------------


class Rod(System):
    """u' = D (u[j-1] - 2 u[j] + u[j+1]) - loss u, insulated ends; heat enters cell 0."""

    def __init__(self, n_cells):
        super().__init__()
        self.inputs.D = 0.4
        self.inputs.loss = 0.05
        self.inputs.heat = 0.0
        self.states.u = np.exp(-((np.arange(n_cells) - 0.3 * n_cells) / (0.05 * n_cells)) ** 2)
        self.ders.u = np.zeros(n_cells)
        self.outputs.mean = 0.0

    def do_step(self, time):
        u = self.states.u
        inner = u[:-2] - 2.0 * u[1:-1] + u[2:]
        laplacian = np.concatenate([np.array([u[1] - u[0]]), inner, np.array([u[-2] - u[-1]])])
        source = np.concatenate([np.array([self.inputs.heat]), 0.0 * u[1:]])
        self.ders.u = self.inputs.D * laplacian - self.inputs.loss * u + source
        self.outputs.mean = np.sum(u) / u.shape[0]


class Heater(System):
    """Tracks the rod temperature at its probe (a lag) and heats in proportion to the error."""

    def __init__(self, setpoint, gain):
        super().__init__()
        self.inputs.setpoint = setpoint
        self.inputs.gain = gain
        self.inputs.T = 0.0
        self.states.z = 0.0
        self.ders.z = 0.0
        self.outputs.power = 0.0

    def do_step(self, time):
        z = self.states.z
        self.ders.z = 2.0 * (self.inputs.T - z)
        self.outputs.power = self.inputs.gain * np.tanh(self.inputs.setpoint - z)


def probe(index):
    def read_temperature(sys, t):
        sys.inputs.T = sys.rod.states.u[index]

    return read_temperature


def build_rod_with_probes(n_cells=500, n_probes=6):
    rod = Rod(n_cells)
    heaters = []
    for k in range(n_probes):
        heater = Heater(0.5 + 0.05 * k, 0.2 + 0.01 * k)
        heater.rod = rod
        heater.add_pre_connection(probe((k * 37 + 11) % n_cells))
        heaters.append(heater)

    def total_heat(sys, t):
        sys.inputs.heat = sum(h.outputs.power for h in heaters)

    rod.add_pre_connection(total_heat)
    sim = Simulation()
    for heater in heaters:
        sim.add_system(heater)
    sim.add_system(rod)
    return sim
