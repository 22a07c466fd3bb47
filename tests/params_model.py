"""Models for tests/test_reset_and_parameters.py: plain attributes that do_step reads.

``Tilt``: a scalar and a vector state, an input, an output, and attributes: ``k`` and
``max_tilt`` read as numbers, ``n`` used as an index (cannot be a parameter),
``unused`` never read by the model, ``label`` not a number.  ``Osc``: a chain of four
copies of one class (emitted as kernels), coupled by ``connect_signals``, each with
its own ``c``.  ``Holder``: a Tilt as subsystem, and an attribute read across systems.
"""

import math

import numpy as np

from dyngen import Simulation, System, connect_signals


class Tilt(System):
    def __init__(self, k=2.0, max_tilt=0.3):
        super().__init__()
        self.k = k
        self.max_tilt = max_tilt
        self.n = 3
        self.unused = 1.0
        self.label = "tilt"
        self.states.x = 1.0
        self.states.v = np.array([0.0, 1.0])
        self.ders.x = 0.0
        self.ders.v = np.zeros(2)
        self.inputs.u = 0.0
        self.outputs.y = 0.0

    def do_step(self, time):
        drive = np.clip(self.states.v[self.n - 3] + self.inputs.u, -self.max_tilt, self.max_tilt)
        self.ders.x = -self.k * self.states.x + drive
        self.ders.v = np.array([self.states.v[1], -self.states.v[0]])
        self.outputs.y = self.k * self.states.x


class Osc(System):
    def __init__(self, c, x0):
        super().__init__()
        self.c = c
        self.states.x = x0
        self.states.y = 0.0
        self.ders.x = 0.0
        self.ders.y = 0.0
        self.inputs.u = 0.0
        self.outputs.x = x0

    def do_step(self, time):
        x, y = self.states.x, self.states.y
        self.ders.x = y
        self.ders.y = -x - 0.1 * y + self.c * (self.inputs.u - x)
        self.outputs.x = x


class Holder(System):
    """A system with a Tilt as subsystem (path "Holder.tilt"), whose do_step reads
    its own ``gain`` and the subsystem's ``k``: z' = gain * k - z."""

    def __init__(self):
        super().__init__()
        self.tilt = Tilt()
        self.add_subsystem(self.tilt)
        self.gain = 0.5
        self.states.z = 0.0

    def do_step(self, time):
        self.ders.z = self.gain * self.tilt.k - self.states.z


class Switch(System):
    """x' = -rate x, rate = k above 2.5 and sqrt(k) below: a Python ``if`` on ``self.k``."""

    def __init__(self):
        super().__init__()
        self.k = 1.0
        self.states.x = 1.0

    def do_step(self, time):
        if self.k > 2.5:
            self.ders.x = -self.k * self.states.x
        else:
            self.ders.x = -math.sqrt(self.k) * self.states.x


def build_switch():
    sim = Simulation()
    sim.add_system(Switch())
    return sim


def build_holder():
    sim = Simulation()
    sim.add_system(Holder())
    return sim


def build_tilt(k=2.0, max_tilt=0.3):
    sim = Simulation()
    sim.add_system(Tilt(k, max_tilt))
    return sim


def build_chain(cs=(0.5, 0.6, 0.7, 0.8)):
    oscs = [Osc(c, 0.2 * (i + 1)) for i, c in enumerate(cs)]
    for left, osc in zip(oscs, oscs[1:]):  # a chain, in dataflow order
        osc.add_pre_connection(connect_signals(left.outputs, "x", osc.inputs, "u"))
    sim = Simulation()
    for osc in oscs:
        sim.add_system(osc)
    return sim
