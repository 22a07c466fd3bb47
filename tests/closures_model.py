"""Closures that differ only in the numbers they close over (issue 17).

Six copies of one damped oscillator, each driven by three inputs that three kinds of
closure compute from another copy's position and a weight of its own:

* ``u_factory``: a pre-connection made by a factory function (a nested ``def``
  closing over the factory's arguments);
* ``u_default``: a ``def`` in the loop, binding the loop variables as defaults;
* ``u_lambda``: a ``lambda`` in the loop, the same way.

dyngen must give one loop per input over the six copies, the weights read from
per-instance tables (module data), and dynode's trajectories.
"""

import numpy as np

from dyngen import Simulation, System

N = 6
WEIGHTS = [0.7, -0.4, 1.3, 0.25, -1.1, 0.9]


class Oscillator(System):
    def __init__(self, x0):
        super().__init__()
        self.inputs.u_factory = 0.0
        self.inputs.u_default = 0.0
        self.inputs.u_lambda = 0.0
        self.states.x = x0
        self.states.y = 0.0
        self.ders.x = 0.0
        self.ders.y = 0.0

    def do_step(self, time):
        x, y = self.states.x, self.states.y
        u = self.inputs.u_factory + self.inputs.u_default + self.inputs.u_lambda
        self.ders.x = y
        self.ders.y = -x - 0.1 * y + u


def make_coupling(src, w):
    def coupling(sys, t):
        sys.inputs.u_factory = w * np.tanh(src.states.x)

    return coupling


def build(n=N):
    oscillators = [Oscillator(np.cos(2.0 * np.pi * k / n)) for k in range(n)]
    sim = Simulation()
    for k, osc in enumerate(oscillators):
        w = WEIGHTS[k % len(WEIGHTS)] * (1.0 + 0.01 * k)
        left, right = oscillators[k - 1], oscillators[(k + 2) % n]
        osc.add_pre_connection(make_coupling(left, w))

        def pull(sys, t, src=right, w=0.5 * w + 0.05):
            sys.inputs.u_default = w * (src.states.y - sys.states.y)

        osc.add_pre_connection(pull)
        osc.add_pre_connection(lambda sys, t, src=left, w=0.2 - 0.03 * k: sys.inputs.__setitem__("u_lambda", w * src.states.x * sys.states.x))
        sim.add_system(osc)
    return sim


class Probe(System):
    """Low-pass of one oscillator's ``u_factory``: one system reading one instance of a loop."""

    def __init__(self, source):
        super().__init__()
        self.source = source
        self.states.z = 0.0
        self.ders.z = 0.0

    def do_step(self, time):
        self.ders.z = -self.states.z + self.source.inputs.u_factory


def build_with_probe(n=N, watched=1):
    """``build(n)`` and a probe of oscillator ``watched``: its weight, a number of the
    closures' loop, is read outside the loop (CI failure, 2026-12-04)."""
    sim = build(n)
    sim.add_system(Probe(sim.systems[watched]))
    return sim
