"""Models with lookup tables (``np.interp`` on constant tables), for tests/test_interp.py.

Loaded under dyngen and, with the import swapped, under dynode (see dynode_compare),
which runs ``np.interp`` natively.

- ``build()``: a heated resistor whose resistance is a measured curve of its
  temperature (a table held as attributes, with a repeated point: a step in the
  curve), a cooling fan whose efficiency is a global table with ``left``/``right``,
  a supply voltage from a periodic schedule of time (``period``), a small vector of
  cell temperatures mapped through a closure table elementwise, and a
  pre-connection that looks the fan's speed up in a table of the resistor's output.
- ``build_stiff()``: a first-order reaction whose rate constant comes from an
  Arrhenius-like table of temperature (rates from 1e-2 to 1e4: stiff), coupled to the
  temperature it heats.
- ``build_cells(n)``: ``n`` cells (a large vector, traced in array form) relaxing at a
  rate looked up from their own temperature, plus one element read as a scalar.
"""

import numpy as np

from dyngen import Simulation, System

FAN_SPEED = [0.0, 400.0, 800.0, 1600.0, 2400.0]  # rpm
FAN_EFFICIENCY = [0.10, 0.55, 0.80, 0.72, 0.40]
SUPPLY_TIMES = [0.0, 0.5, 1.25, 2.0]
SUPPLY_VOLTS = [8.0, 12.0, 12.0, 6.0]

RATE_T = np.array([280.0, 300.0, 320.0, 340.0, 360.0, 380.0, 400.0])
RATE_K = np.array([1e-2, 0.3, 5.0, 60.0, 500.0, 3000.0, 1e4])


def cell_table():
    xs = np.linspace(0.0, 2.0, 9)
    ys = 1.0 + 0.5 * np.sin(3.0 * xs)

    def cell_rate(u):
        return np.interp(u, xs, ys)  # a closure value

    return cell_rate


class Resistor(System):
    def __init__(self):
        super().__init__()
        self.temp_points = np.array([250.0, 300.0, 350.0, 350.0, 450.0])  # a step at 350 K
        self.ohm_points = np.array([4.0, 4.4, 5.0, 5.6, 7.5])
        self.states.T = 290.0
        self.ders.T = 0.0
        self.inputs.cooling = 0.5
        self.inputs.heat_capacity = 2.0
        self.outputs.R = 0.0
        self.outputs.power = 0.0

    def do_step(self, time):
        R = np.interp(self.states.T, self.temp_points, self.ohm_points)
        volts = np.interp(time, SUPPLY_TIMES, SUPPLY_VOLTS, period=2.0)
        power = volts**2 / R
        self.outputs.R = R
        self.outputs.power = power
        self.ders.T = (power - self.inputs.cooling * (self.states.T - 290.0)) / self.inputs.heat_capacity


class Fan(System):
    def __init__(self):
        super().__init__()
        self.inputs.speed = 500.0
        self.states.cells = np.array([0.1, 0.6, 1.2, 1.9])
        self.ders.cells = np.zeros(4)
        self.outputs.efficiency = 0.0
        self.rate = cell_table()

    def do_step(self, time):
        efficiency = np.interp(self.inputs.speed, FAN_SPEED, FAN_EFFICIENCY, left=0.0, right=0.05)
        self.outputs.efficiency = efficiency
        self.ders.cells = efficiency - self.rate(self.states.cells) * self.states.cells


def fan_speed(fan, resistor):
    def connection(system, time):
        system.inputs.speed = np.interp(resistor.outputs.power, [0.0, 1.0, 3.0, 6.0], [0.0, 600.0, 1500.0, 2600.0])

    return connection


def build():
    resistor, fan = Resistor(), Fan()
    fan.add_pre_connection(fan_speed(fan, resistor))
    sim = Simulation()
    sim.add_system(resistor)
    sim.add_system(fan)
    return sim


class Reaction(System):
    """dc/dt = -k(T) c; dT/dt = (T_ambient - T) / tau + heat * k(T) c."""

    def __init__(self):
        super().__init__()
        self.states.c = 1.0
        self.states.T = 330.0
        self.ders.c = 0.0
        self.ders.T = 0.0
        self.inputs.tau = 5.0
        self.inputs.heat = 40.0
        self.inputs.ambient = 330.0

    def do_step(self, time):
        k = np.interp(self.states.T, RATE_T, RATE_K)
        self.ders.c = -k * self.states.c
        self.ders.T = (self.inputs.ambient - self.states.T) / self.inputs.tau + self.inputs.heat * k * self.states.c


def build_stiff():
    sim = Simulation()
    sim.add_system(Reaction())
    return sim


class Cells(System):
    def __init__(self, n):
        super().__init__()
        self.states.u = np.linspace(-0.5, 2.5, n)
        self.ders.u = np.zeros(n)
        self.outputs.rate = np.zeros(n)
        self.xs = np.array([0.0, 0.5, 1.8, 1.8, 2.0])
        self.ys = np.array([2.0, 1.0, 0.5, 0.6, 0.25])

    def do_step(self, time):
        rate = np.interp(self.states.u, self.xs, self.ys, left=3.0)
        self.outputs.rate = rate
        self.ders.u = np.interp(self.states.u[0], self.xs, self.ys) - rate * self.states.u


def build_cells(n):
    sim = Simulation()
    sim.add_system(Cells(n))
    return sim
