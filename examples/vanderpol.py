"""A single Van der Pol oscillator.

    x' = y
    y' = mu * (1 - x**2) * y - x

``mu`` is an input that nothing drives, so it is a runtime parameter: change
``sys.inputs.mu`` between runs without rebuilding.
"""

from dyngen import Simulation, System


class VanDerPol(System):
    def __init__(self, mu=1.0, x0=1.0, y0=0.0):
        super().__init__()
        self.inputs.mu = mu
        self.states.x = x0
        self.states.y = y0
        self.ders.x = 0.0
        self.ders.y = 0.0

    def do_step(self, time):
        mu = self.inputs.mu
        x = self.states.x
        y = self.states.y
        self.ders.x = y
        self.ders.y = mu * (1.0 - x**2) * y - x


def build():
    sim = Simulation()
    sim.add_system(VanDerPol(mu=1.5, x0=2.0, y0=0.0))
    return sim
