"""Small models for dynode features the examples do not use (test model file).

Loaded under dyngen and, with the import swapped, under dynode.
"""

import numpy as np

from dyngen import Simulation, System, connect_signals, where


class Matrix(System):
    """A 2x2 matrix state: X' = A X - 0.1 X**n + u (A a matrix input, n an int input)."""

    def __init__(self):
        super().__init__()
        self.inputs.A = np.array([[0.0, 1.0], [-1.0, -0.2]])
        self.inputs.u = 0.0
        self.inputs.n = 2
        self.states.X = [[1.0, 0.0], [0.0, 1.0]]
        self.ders.X = np.zeros((2, 2))
        self.outputs.trace = 0.0

    def do_step(self, t):
        X = self.states.X
        self.ders.X = self.inputs.A @ X - 0.1 * X**self.inputs.n + self.inputs.u
        self.outputs.trace = np.trace(X)


class Lag(System):
    def __init__(self, tau):
        super().__init__()
        self.inputs.tau = tau
        self.inputs.a = 0.0
        self.inputs.b = 0.0
        self.states.z = 0.0
        self.ders.z = 0.0

    def do_step(self, t):
        self.ders.z = (self.inputs.a + self.inputs.b - self.states.z) / self.inputs.tau


def drive(sys, t):
    sys.inputs.a = where(t < 1.5, np.sin(3 * t), -0.5)


def build_dependees():
    """A pre-connection that reads an input written by another one (given as a dependee,
    registered after it), feeding a matrix-state system through connect_signals."""
    m = Matrix()
    l1, l2 = Lag(0.3), Lag(0.7)

    def first(sys, t):
        sys.inputs.a = 2.0 * l1.states.z

    def second(sys, t):
        sys.inputs.b = -0.5 * sys.inputs.a

    l2.add_pre_connection(second, dependees=[first])
    l2.add_pre_connection(first)
    l1.add_pre_connection(drive)
    m.add_pre_connection(connect_signals(l2.states, "z", m.inputs, "u"))
    sim = Simulation()
    for system in (l1, l2, m):
        sim.add_system(system)
    return sim


def build_shared_connection():
    """The same connection function registered on two systems."""
    a, b = Lag(0.5), Lag(0.9)
    a.add_pre_connection(drive)
    b.add_pre_connection(drive)
    sim = Simulation()
    sim.add_system(a)
    sim.add_system(b)
    return sim
