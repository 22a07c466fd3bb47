"""Models for tests/test_ensemble.py: a Van der Pol oscillator driving a damped
particle in the plane (a vector state, a vector input and outputs), and a leader
whose output drives the follower's input (a connected input is not a parameter)."""

import numpy as np

from dyngen import Simulation, System, connect_signals


class VanDerPol(System):
    def __init__(self, mu=1.0, x0=2.0):
        super().__init__()
        self.inputs.mu = mu
        self.states.x = x0
        self.states.y = 0.0
        self.ders.x = 0.0
        self.ders.y = 0.0
        self.outputs.x = x0

    def do_step(self, time):
        x, y = self.states.x, self.states.y
        self.ders.x = y
        self.ders.y = self.inputs.mu * (1.0 - x**2) * y - x
        self.outputs.x = x


class Particle(System):
    def __init__(self):
        super().__init__()
        self.inputs.force = 0.0
        self.inputs.stiffness = np.array([1.0, 2.0])
        self.states.q = np.array([1.0, 0.0, 0.0, 0.5])  # x, y, vx, vy
        self.ders.q = np.zeros(4)
        self.outputs.energy = 0.0

    def do_step(self, time):
        q = self.states.q
        k = self.inputs.stiffness
        self.ders.q = np.array([q[2], q[3], -k[0] * q[0] - 0.1 * q[2] + self.inputs.force, -k[1] * q[1] - 0.1 * q[3]])
        self.outputs.energy = 0.5 * (q[2] ** 2 + q[3] ** 2 + k[0] * q[0] ** 2 + k[1] * q[1] ** 2)


def build():
    leader = VanDerPol(mu=1.5)
    follower = Particle()
    follower.add_pre_connection(connect_signals(leader.outputs, "x", follower.inputs, "force"))
    sim = Simulation()
    sim.add_system(leader)
    sim.add_system(follower)
    return sim
