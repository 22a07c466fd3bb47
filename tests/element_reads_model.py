"""A diffusion chain written two ways, for tests/test_element_reads.py (issue 15).

Loaded under dyngen and, with the import swapped, under dynode (see dynode_compare).
``form="loop"`` reads the neighbours element by element in a Python loop (what a new
user writes first: dyngen traces it one element at a time, and refuses it past
``symbolic.ELEMENT_READS_MAX`` reads); ``form="roll"`` is the same model as whole-array
operations (``np.roll``), which dyngen traces in array form at any size.
"""

import numpy as np

from dyngen import Simulation, System


class LoopChain(System):
    """``n`` cells on a ring relaxing towards their neighbours, with a cubic sink."""

    def __init__(self, n, form):
        super().__init__()
        self.states.u = np.cos(np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)) + 1.5
        self.ders.u = np.zeros(n)
        self.inputs.D = 0.8
        self.form = form

    def do_step(self, time):
        u = self.states.u
        n = len(u)
        if self.form == "loop":
            ders = np.zeros(n)
            for i in range(n):
                ders[i] = self.inputs.D * (u[i - 1] - 2.0 * u[i] + u[(i + 1) % n]) - 0.1 * u[i] ** 3
            self.ders.u = ders
            return
        self.ders.u = self.inputs.D * (np.roll(u, 1) - 2.0 * u + np.roll(u, -1)) - 0.1 * u**3


def build_loop_chain(n=100, form="loop"):
    sim = Simulation()
    sim.add_system(LoopChain(n, form))
    return sim
