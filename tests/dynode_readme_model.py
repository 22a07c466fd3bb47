"""dynode's own README example (PyPI, dynode 0.1-0.3.2), with only the import changed.

Its ders are named ``dx``/``dy`` while the states are ``x``/``y``: dynode pairs
states and ders by position, so for dynode this is a valid model.
"""

from dyngen import Simulation, SystemInterface


class VanDerPol(SystemInterface):
    def __init__(self):
        super().__init__()

        self.inputs.mu = 1.0

        self.states.x = 0.0
        self.ders.dx = 0.0

        self.states.y = 0.0
        self.ders.dy = 0.0

    def do_step(self, time):
        mu = self.inputs.mu
        x = self.states.x
        y = self.states.y

        self.ders.dx = y
        self.ders.dy = mu * (1 - x**2) * y - x


def build():
    sys = VanDerPol()
    sys.states.x = 1
    sim = Simulation()
    sim.add_system(sys)
    return sim
