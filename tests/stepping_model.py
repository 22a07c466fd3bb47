"""Two damped oscillators a Python controller steps (tests/test_stepping.py), written
against dyngen and loaded under dynode too (``dynode_compare.load_model_source``).

The model reads constants where a user's edit between two ``simulate()`` calls can
change them: a module global in ``do_step`` (``GAIN``) and in a connection
(``OFFSET``), a helper's default (``saturate``), a class attribute (``damping``) and a
plain attribute (``stiffness``).  ``u`` is the controller's input (a parameter), ``w``
is driven by connections.
"""

import numpy as np

from dyngen import Simulation, System, connect_signals

GAIN = 1.5
OFFSET = 0.0


def saturate(value, limit=2.0):
    return limit * np.tanh(value / limit)


class Plant(System):
    damping = 0.3

    def __init__(self, x0=1.0, v0=0.0):
        super().__init__()
        self.states.x = x0
        self.states.v = v0
        self.ders.x = 0.0
        self.ders.v = 0.0
        self.inputs.u = 0.0
        self.inputs.w = 0.0
        self.outputs.x = x0
        self.stiffness = 2.0

    def do_step(self, time):
        x = self.states.x
        v = self.states.v
        self.ders.x = v
        self.ders.v = -self.stiffness * x - self.damping * v + GAIN * saturate(self.inputs.u) + self.inputs.w
        self.outputs.x = x


def drive(system, time):
    system.inputs.w = OFFSET + 0.5 * np.sin(time)


def build():
    leader = Plant()
    follower = Plant(x0=0.0, v0=1.0)
    leader.add_pre_connection(drive)
    follower.add_pre_connection(connect_signals(leader.outputs, "x", follower.inputs, "w"))
    sim = Simulation()
    sim.add_system(leader)
    sim.add_system(follower)
    return sim
