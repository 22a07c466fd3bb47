"""A connection per synapse adding into its target's input (``+=``), as in dynode.

Each of eight leaky units gets 2, 3 or 4 synapses from others; every synapse is its own
pre-connection of the target (a closure over its source and weight, made by a
factory), registered after a ``reset`` pre-connection that it lists in ``dependees``.  dynode runs them in that
order at every evaluation, so ``inputs.u`` holds the reset value plus every
synapse's term.
"""

import numpy as np

from dyngen import Simulation, System

N = 8


class Unit(System):
    def __init__(self, x0, bias):
        super().__init__()
        self.inputs.u = 0.0
        self.inputs.bias = bias
        self.states.x = x0
        self.ders.x = 0.0

    def do_step(self, time):
        self.ders.x = -self.states.x + np.tanh(self.inputs.u + self.inputs.bias)


def reset(sys, t):
    sys.inputs.u = 0.0


def make_synapse(src, w):
    def synapse(sys, t):
        sys.inputs.u += w * np.tanh(2.0 * src.states.x)

    return synapse


def build(n=N, seed=3):
    rng = np.random.default_rng(seed)
    units = [Unit(float(rng.uniform(-1.0, 1.0)), float(rng.uniform(-0.5, 0.5))) for _ in range(n)]
    sim = Simulation()
    for k, unit in enumerate(units):
        unit.add_pre_connection(reset)
        sources = rng.choice([j for j in range(n) if j != k], size=2 + k % 3, replace=False)
        for j in sources:
            unit.add_pre_connection(make_synapse(units[j], float(rng.uniform(-2.0, 2.0))), dependees=[reset])
        sim.add_system(unit)
    return sim
