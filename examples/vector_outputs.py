"""A damped particle in a 2-D harmonic well, with a vector state and outputs.

The state ``q = [x, y, vx, vy]`` is one numpy array.  ``do_step`` unpacks it,
returns the derivative with ``np.array([...])`` and computes outputs: the kinetic
and potential energy (``@`` and ``np.sum``) and the velocity vector.
"""

import numpy as np

from dyngen import Simulation, System


class Particle2D(System):
    def __init__(self, m=1.0, kx=1.0, ky=2.5, c=0.05):
        super().__init__()
        self.inputs.m = m
        self.inputs.stiffness = np.array([kx, ky])
        self.inputs.c = c
        self.states.q = np.array([1.0, 0.0, 0.0, 0.8])
        self.ders.q = np.zeros(4)
        self.outputs.kinetic = 0.0
        self.outputs.potential = 0.0
        self.outputs.velocity = np.zeros(2)

    def do_step(self, time):
        x, y, vx, vy = self.states.q
        m = self.inputs.m
        kx, ky = self.inputs.stiffness
        c = self.inputs.c
        v = np.array([vx, vy])
        self.ders.q = np.array([vx, vy, (-kx * x - c * vx) / m, (-ky * y - c * vy) / m])
        self.outputs.kinetic = 0.5 * m * (v @ v)
        self.outputs.potential = 0.5 * np.sum(self.inputs.stiffness * np.array([x, y]) ** 2)
        self.outputs.velocity = v


def build():
    sim = Simulation()
    sim.add_system(Particle2D())
    return sim
