"""A 1-DOF mass-spring-damper pushed by a force pulse.

    m x'' + c x' + k x = F(t),   F(t) = F0 for t < 1, else 0

The force is applied by a pre-connection; the switch on time is written with
``where`` so that it can be compiled.
"""

from dyngen import Simulation, System, where


class MassSpringDamper(System):
    def __init__(self, m=1.0, c=0.4, k=4.0):
        super().__init__()
        self.inputs.m = m
        self.inputs.c = c
        self.inputs.k = k
        self.inputs.force = 0.0
        self.states.x = 0.0
        self.states.v = 0.0
        self.ders.x = 0.0
        self.ders.v = 0.0

    def do_step(self, time):
        x = self.states.x
        v = self.states.v
        self.ders.x = v
        self.ders.v = (self.inputs.force - self.inputs.c * v - self.inputs.k * x) / self.inputs.m


def push(sys, t):
    sys.inputs.force = where(t < 1.0, 1.0, 0.0)


def build():
    msd = MassSpringDamper()
    msd.add_pre_connection(push)
    sim = Simulation()
    sim.add_system(msd)
    return sim
