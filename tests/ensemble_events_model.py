"""Models for tests/test_ensemble_events.py: a bouncing ball (restitution ``inputs.e``,
height ``states.h``) whose bounce is an event, optionally with a terminal event at
``inputs.t_end``; and a sawtooth whose action puts ``states.x`` back to
``inputs.reset`` each time it falls to 0 (a reset near 0 chatters); a thermostat
whose heater mode is a parameter the actions write; a vector ``states.w`` decaying
that an action multiplies by ``inputs.factor`` each time ``w[2]`` falls to 2."""

import numpy as np

from dyngen import Simulation, System

G = 9.81


class Ball(System):
    def __init__(self, h0: float = 10.0, e: float = 0.9, stop: bool = False) -> None:
        super().__init__()
        self.states.h = h0
        self.states.v = 0.0
        self.ders.h = 0.0
        self.ders.v = 0.0
        self.inputs.e = e
        self.inputs.t_end = 5.0
        self.outputs.energy = 0.0
        self.add_event(self.ground, self.bounce, direction=-1)
        if stop:
            self.add_event(self.time_is_up, direction=1, terminal=True)

    def do_step(self, t):
        self.ders.h = self.states.v
        self.ders.v = -G
        self.outputs.energy = 0.5 * self.states.v**2 + G * self.states.h

    def ground(self, t):
        return self.states.h

    def bounce(self, t):
        self.states.v = -self.inputs.e * self.states.v

    def time_is_up(self, t):
        return t - self.inputs.t_end


class Sawtooth(System):
    """x' = -1; at x = 0 the action sets x = reset: an event every ``reset`` time units."""

    def __init__(self) -> None:
        super().__init__()
        self.states.x = 1.0
        self.ders.x = 0.0
        self.inputs.reset = 1.0
        self.add_event(self.zero, self.back, direction=-1)

    def do_step(self, t):
        self.ders.x = -1.0

    def zero(self, t):
        return self.states.x

    def back(self, t):
        self.states.x = self.inputs.reset


class Thermostat(System):
    """T' = -0.1 (T - 10) + power * on; the heater mode ``on`` (a parameter only the
    actions write) switches off at 22 and on at 18 degrees."""

    def __init__(self) -> None:
        super().__init__()
        self.states.T = 18.0
        self.ders.T = 0.0
        self.inputs.on = 1.0
        self.inputs.power = 2.0
        self.add_event(lambda s, t: s.states.T - 22.0, self.switch_off, direction=1)
        self.add_event(lambda s, t: s.states.T - 18.0, self.switch_on, direction=-1)

    def do_step(self, t):
        self.ders.T = -0.1 * (self.states.T - 10.0) + self.inputs.power * self.inputs.on

    def switch_off(self, t):
        self.inputs.on = 0.0

    def switch_on(self, t):
        self.inputs.on = 1.0


class Refill(System):
    """w' = -w (3 elements); when w[2] falls to 2 the action multiplies w by ``factor``."""

    def __init__(self) -> None:
        super().__init__()
        self.states.w = np.array([1.0, 2.0, 3.0])
        self.ders.w = np.zeros(3)
        self.inputs.factor = 2.0
        self.add_event(lambda s, t: s.states.w[2] - 2.0, self.refill, direction=-1)

    def do_step(self, t):
        self.ders.w = -self.states.w

    def refill(self, t):
        self.states.w = self.states.w * self.inputs.factor


def build_refill() -> Simulation:
    sim = Simulation()
    sim.add_system(Refill())
    return sim


def build_thermostat() -> Simulation:
    sim = Simulation()
    sim.add_system(Thermostat())
    return sim


def build(stop: bool = False) -> Simulation:
    sim = Simulation()
    sim.add_system(Ball(stop=stop))
    return sim


def build_sawtooth() -> Simulation:
    sim = Simulation()
    sim.add_system(Sawtooth())
    return sim
