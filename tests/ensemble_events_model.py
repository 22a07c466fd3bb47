"""Models for tests/test_ensemble_events.py: a bouncing ball (restitution ``inputs.e``,
height ``states.h``) whose bounce is an event, and a terminal event that stops the run
when the ball's height first falls below ``inputs.floor`` after ``inputs.t_arm``."""

from dyngen import Simulation, System

G = 9.81


class Ball(System):
    def __init__(self, h0: float = 10.0, e: float = 0.9, stop_below: bool = False) -> None:
        super().__init__()
        self.states.h = h0
        self.states.v = 0.0
        self.ders.h = 0.0
        self.ders.v = 0.0
        self.inputs.e = e
        self.inputs.floor = 0.5
        self.outputs.energy = 0.0
        self.add_event(self.ground, self.bounce, direction=-1)
        if stop_below:
            self.add_event(self.low_apex, direction=-1, terminal=True)

    def do_step(self, t):
        self.ders.h = self.states.v
        self.ders.v = -G
        self.outputs.energy = 0.5 * self.states.v**2 + G * self.states.h

    def ground(self, t):
        return self.states.h

    def bounce(self, t):
        self.states.v = -self.inputs.e * self.states.v

    def low_apex(self, t):
        """Falls to zero when the energy (per unit mass) drops below G * floor: after a bounce."""
        return 0.5 * self.states.v**2 + G * self.states.h - G * self.inputs.floor


def build(stop_below: bool = False) -> Simulation:
    sim = Simulation()
    sim.add_system(Ball(stop_below=stop_below))
    return sim
