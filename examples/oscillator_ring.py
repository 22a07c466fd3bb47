"""A ring of Van der Pol oscillators, each pulled towards its left neighbour.

    x_i' = y_i,   y_i' = mu_i (1 - x_i^2) y_i - x_i + u_i,   u_i = k (x_{i-1} - x_i)

Eight instances of one class with one connection function each: dyngen emits one
loop over the instances (a kernel) instead of eight copies of the equations; see
``generated/oscillator_ring.py``.
"""

import numpy as np

from dyngen import Simulation, System

N = 8
K = 0.5


class RingOscillator(System):
    def __init__(self, mu=1.0, x0=1.0, y0=0.0):
        super().__init__()
        self.inputs.mu = mu
        self.inputs.k = K
        self.inputs.u = 0.0
        self.states.x = x0
        self.states.y = y0
        self.ders.x = 0.0
        self.ders.y = 0.0
        self.left = None  # the neighbour whose position pulls this one

    def do_step(self, time):
        x = self.states.x
        y = self.states.y
        self.ders.x = y
        self.ders.y = self.inputs.mu * (1.0 - x**2) * y - x + self.inputs.u


def pull_of_left_neighbour(sys, t):
    sys.inputs.u = sys.inputs.k * (sys.left.states.x - sys.states.x)


def build():
    angles = 2 * np.pi * np.arange(N) / N
    ring = [RingOscillator(1.0 + 0.25 * (i % 3), 2.0 * np.cos(a), 2.0 * np.sin(a)) for i, a in enumerate(angles)]
    sim = Simulation()
    for i, oscillator in enumerate(ring):
        oscillator.left = ring[i - 1]
        oscillator.add_pre_connection(pull_of_left_neighbour)
        sim.add_system(oscillator)
    return sim
