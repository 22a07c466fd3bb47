"""Many small components next to a large array, for tests/test_kernels_with_arrays.py.

Loaded under dyngen and, with the import swapped, under dynode (see dynode_compare).

``build(n_oscillators, n_cells)``: ``n_oscillators`` copies of a small damped
oscillator (two states: kernel candidates) and one rod of ``n_cells`` cells (a 1-D
heat equation with insulated ends: array form).  Each oscillator is driven by the
temperature of one cell of the rod (a connection that reads one element) and by the
rod's mean temperature (a sum over the array, read by every oscillator); the rod is
heated at one end by the sum of the oscillators' outputs.  With ``coupled_mean=False``
the oscillators do not read the mean (the model then has an analytic Jacobian).
"""

import numpy as np

from dyngen import Simulation, System


class Rod(System):
    """u' = D (u[j-1] - 2 u[j] + u[j+1]) - loss u, insulated ends; heat enters cell 0."""

    def __init__(self, n_cells):
        super().__init__()
        self.inputs.D = 0.4
        self.inputs.loss = 0.05
        self.inputs.heat = 0.0
        self.states.u = np.exp(-((np.arange(n_cells) - 0.3 * n_cells) / (0.05 * n_cells)) ** 2)
        self.ders.u = np.zeros(n_cells)
        self.outputs.mean = 0.0

    def do_step(self, time):
        u = self.states.u
        inner = u[:-2] - 2.0 * u[1:-1] + u[2:]
        laplacian = np.concatenate([np.array([u[1] - u[0]]), inner, np.array([u[-2] - u[-1]])])
        source = np.concatenate([np.array([self.inputs.heat]), 0.0 * u[1:]])
        self.ders.u = self.inputs.D * laplacian - self.inputs.loss * u + source
        self.outputs.mean = np.sum(u) / u.shape[0]


class Oscillator(System):
    """x'' + c x' + k x = drive: a damped oscillator driven by its cell and the rod's mean."""

    def __init__(self, k, c):
        super().__init__()
        self.inputs.k = k
        self.inputs.c = c
        self.inputs.cell = 0.0
        self.inputs.mean = 0.0
        self.states.x = 0.1
        self.states.v = 0.0
        self.ders.x = 0.0
        self.ders.v = 0.0
        self.outputs.power = 0.0

    def do_step(self, time):
        x, v = self.states.x, self.states.v
        self.ders.x = v
        self.ders.v = -self.inputs.k * x - self.inputs.c * v + 0.5 * self.inputs.cell + 0.2 * self.inputs.mean
        self.outputs.power = 0.01 * np.tanh(x) ** 2


def read_cell(index, coupled_mean):
    def connect(sys, t):
        sys.inputs.cell = sys.rod.states.u[index]
        if coupled_mean:
            sys.inputs.mean = sys.rod.outputs.mean

    return connect


def build(n_oscillators=20, n_cells=200, coupled_mean=True):
    rod = Rod(n_cells)
    oscillators = []
    for k in range(n_oscillators):
        osc = Oscillator(1.0 + 0.05 * k, 0.3 + 0.01 * (k % 3))
        osc.rod = rod
        osc.add_pre_connection(read_cell((k * 37 + 11) % n_cells, coupled_mean))
        oscillators.append(osc)

    def total_heat(sys, t):
        sys.inputs.heat = sum(o.outputs.power for o in oscillators)

    rod.add_pre_connection(total_heat)
    sim = Simulation()
    sim.add_system(rod)
    for osc in oscillators:
        sim.add_system(osc)
    return sim
