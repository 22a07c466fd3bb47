"""Two Van der Pol oscillators: the first is forced, the second is driven by the first.

    leader:    x1' = y1,  y1' = mu1 (1 - x1^2) y1 - x1 + F(t),   F(t) = A sin(w t)
    follower:  x2' = y2,  y2' = mu2 (1 - x2^2) y2 - x2 + F2,     F2 = leader's x1

The forcing is a plain pre-connection function; the coupling copies the leader's
output ``x`` into the follower's input ``F`` with ``connect_signals``.
"""

import numpy as np

from dyngen import Simulation, System, connect_signals

A = 1.2
W = 0.8


class ForcedVanDerPol(System):
    def __init__(self, mu=1.0, x0=1.0, y0=0.0):
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


def forcing(sys, t):
    sys.inputs.F = A * np.sin(W * t)


def build():
    leader = ForcedVanDerPol(mu=1.0, x0=2.0)
    follower = ForcedVanDerPol(mu=0.5, x0=0.0, y0=1.0)
    leader.add_pre_connection(forcing)
    follower.add_pre_connection(connect_signals(leader.outputs, "x", follower.inputs, "F"))

    sim = Simulation()
    sim.add_system(leader)  # stepped first, so its output is fresh for the follower
    sim.add_system(follower)
    return sim
