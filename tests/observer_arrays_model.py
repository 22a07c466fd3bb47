"""A vector state with a vector der and output, for observers that keep array entries."""

import numpy as np

from dyngen import Recorder, Simulation, System


class Decay(System):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.states.x = np.linspace(1.0, 2.0, n)
        self.ders.x = np.zeros(n)
        self.inputs.k = 0.5
        self.outputs.y = np.zeros(n)

    def do_step(self, time):
        x = self.states.x
        self.ders.x = -self.inputs.k * x
        self.outputs.y = 2.0 * x + time


def build(n: int) -> Simulation:
    """The simulation, with an observer that keeps the entries without copying
    (``sim.kept``) and a Recorder of the der and the output (``sim.recorder``)."""
    sim = Simulation()
    system = Decay(n)
    sim.add_system(system)
    sim.kept = []
    sim.add_observer(lambda t, y: sim.kept.append((system.states.x, system.ders.x, system.outputs.y)))
    sim.recorder = Recorder()
    sim.recorder.store(system, "ders.x")
    sim.recorder.store(system, "outputs.y")
    sim.add_observer(sim.recorder)
    sim.system = system
    return sim
