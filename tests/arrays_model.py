"""Models with large vector states, for tests/test_arrays.py (issue 4, array form).

Loaded under dyngen and, with the import swapped, under dynode (see dynode_compare).

- ``build_lattice(n)``: a periodic lattice (``np.roll``) with a space-varying
  coupling (a vector input, i.e. a parameter vector), ``np.where`` on a comparison,
  ``np.clip`` of a drive that depends on time, a scalar state and an output that read
  single elements, and a vector output.  A small ``Driver`` system feeds the
  lattice's gain through ``connect_signals``, so the lattice's loops depend on an
  element signal (the chain rule through it gives Jacobian columns).
- ``build_summed(n)``: diffusion whose decay is the mean of the vector (``np.mean``,
  ``np.dot`` with a parameter vector), a scalar state that follows the mean, and an
  output ``u @ u``: sums over the vector (dense Jacobian: small n is traced element
  by element, large n has no analytic Jacobian).
- ``build_springs_and_bank(n)``: five copies of a small class (kernel candidates) next
  to a vector system with constant defaults, an unwritten output vector, a state named
  like an index expression (``u_ip1``) and a sum read by an output.
- ``build_filled(n)``: a Laplacian written with item assignment, which the array form
  does not support (small n is traced element by element).
- ``build_shared(n, source_first)``: one system computes a vector output that a
  connection passes to another system (its value is composed into the reader's
  loops); added in the other order, the connection reads it before it is computed.
"""

import numpy as np

from dyngen import Simulation, System, connect_signals


class Driver(System):
    def __init__(self):
        super().__init__()
        self.states.z = 0.2
        self.ders.z = 0.0
        self.outputs.gain = 0.0

    def do_step(self, time):
        self.ders.z = -self.states.z + 0.3 * np.sin(2.0 * time)
        self.outputs.gain = 0.3 + self.states.z**2


class Lattice(System):
    def __init__(self, n):
        super().__init__()
        x = np.arange(n) / n
        self.states.u = 0.6 * np.sin(2 * np.pi * x) + 0.1 * np.cos(6 * np.pi * x)
        self.states.phase = 0.0
        self.ders.u = np.zeros(n)
        self.ders.phase = 0.0
        self.inputs.c = 0.5 + 0.25 * np.cos(2 * np.pi * x)
        self.inputs.gain = 0.3
        self.outputs.flux = np.zeros(n)
        self.outputs.probe = 0.0

    def do_step(self, time):
        u = self.states.u
        right, left = np.roll(u, -1), np.roll(u, 1)
        flux = self.inputs.c * (right - u)
        drive = np.clip(self.inputs.gain * np.sin(time + self.states.phase), -0.2, 0.2)
        local = np.where(u > 0.3, 0.03 - (u - 0.3) ** 2, 0.1 * u)  # continuous at 0.3
        self.ders.u = self.inputs.c * (right - 2.0 * u + left) + local + drive
        self.ders.phase = 1.0 + 0.1 * u[0] - 0.05 * u[-1]
        self.outputs.flux = flux
        self.outputs.probe = u[0] + u[len(u) // 2]


def build_lattice(n=300):
    sim = Simulation()
    driver, lattice = Driver(), Lattice(n)
    lattice.add_pre_connection(connect_signals(driver.outputs, "gain", lattice.inputs, "gain"))
    sim.add_system(driver)
    sim.add_system(lattice)
    return sim


class Summed(System):
    def __init__(self, n):
        super().__init__()
        self.states.u = np.linspace(0.0, 1.0, n) ** 2
        self.states.level = 0.0
        self.ders.u = np.zeros(n)
        self.ders.level = 0.0
        self.inputs.w = np.linspace(1.0, 2.0, n)
        self.outputs.energy = 0.0

    def do_step(self, time):
        u = self.states.u
        lap = np.concatenate(([u[1] - u[0]], u[2:] - 2.0 * u[1:-1] + u[:-2], [u[-2] - u[-1]]))
        mean = np.mean(u)
        self.ders.u = lap - 0.1 * mean * u + 0.01 * np.dot(self.inputs.w, u) / len(u)
        self.ders.level = mean - self.states.level
        self.outputs.energy = u @ u / len(u)


def build_summed(n=3000):
    sim = Simulation()
    sim.add_system(Summed(n))
    return sim


class Filled(System):
    def __init__(self, n):
        super().__init__()
        self.states.u = np.linspace(0.0, 1.0, n)
        self.ders.u = np.zeros(n)

    def do_step(self, time):
        u = self.states.u
        lap = np.zeros_like(u)
        lap[1:-1] = u[2:] - 2.0 * u[1:-1] + u[:-2]
        self.ders.u = lap


def build_filled(n=5000):
    sim = Simulation()
    sim.add_system(Filled(n))
    return sim


class Source(System):
    def __init__(self, n):
        super().__init__()
        self.states.u = np.linspace(0.0, 1.0, n)
        self.ders.u = np.zeros(n)
        self.outputs.u = np.zeros(n)

    def do_step(self, time):
        self.ders.u = -self.states.u
        self.outputs.u = 2.0 * self.states.u


class Sink(System):
    def __init__(self, n):
        super().__init__()
        self.states.w = np.zeros(n)
        self.ders.w = np.zeros(n)
        self.inputs.u = np.zeros(n)

    def do_step(self, time):
        self.ders.w = self.inputs.u - self.states.w


def build_shared(n=100, source_first=True):
    sim = Simulation()
    source, sink = Source(n), Sink(n)
    sink.add_pre_connection(connect_signals(source.outputs, "u", sink.inputs, "u"))
    for system in (source, sink) if source_first else (sink, source):
        sim.add_system(system)
    return sim


class Spring(System):
    def __init__(self, k):
        super().__init__()
        self.states.x = 1.0
        self.states.v = 0.0
        self.ders.x = 0.0
        self.ders.v = 0.0
        self.inputs.k = k

    def do_step(self, time):
        self.ders.x = self.states.v
        self.ders.v = -self.inputs.k * self.states.x


class Bank(System):
    """Constant defaults (np.full runs), an unwritten output vector (a parameter vector),
    a state whose name looks like an index expression, and a sum read by an output."""

    def __init__(self, n):
        super().__init__()
        self.states.u = np.zeros(n)
        self.states.u_ip1 = 0.5
        self.ders.u = np.zeros(n)
        self.ders.u_ip1 = 0.0
        self.inputs.c = np.where(np.arange(n) < n // 2, 1.0, 2.0)
        self.outputs.g = np.zeros(n)
        self.outputs.total = 0.0

    def do_step(self, time):
        u = self.states.u
        self.ders.u = np.concatenate((u[:-1] * self.states.u_ip1 + u[1:], [0.0])) + self.inputs.c - u
        self.ders.u_ip1 = -self.states.u_ip1 + 0.1 * u[3]
        self.outputs.total = np.sum(u)


def build_springs_and_bank(n=100):
    sim = Simulation()
    for k in (1.0, 2.0, 3.0, 4.0, 5.0):
        sim.add_system(Spring(k))
    sim.add_system(Bank(n))
    return sim
