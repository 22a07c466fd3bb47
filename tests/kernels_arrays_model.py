"""Many small components next to a large array, for tests/test_kernels_with_arrays.py.

Loaded under dyngen and, with the import swapped, under dynode (see dynode_compare).

``build(n_oscillators, n_cells)``: ``n_oscillators`` copies of a small damped
oscillator (two states: kernel candidates) and one rod of ``n_cells`` cells (a 1-D
heat equation with insulated ends: array form).  Each oscillator is driven by the
temperature of one cell of the rod (a connection that reads one element) and by the
rod's mean temperature (a sum over the array that a ``Meter`` computes, read by every
oscillator); the rod is heated at one end by the sum of the oscillators' outputs.  With ``coupled_mean=False``
the oscillators do not read the mean (the model then has an analytic Jacobian); with
``spread=True`` the heat enters every cell of the rod.
"""

import numpy as np

from dyngen import Simulation, System


class Rod(System):
    """u' = D (u[j-1] - 2 u[j] + u[j+1]) - loss u, insulated ends; heat enters cell 0."""

    def __init__(self, n_cells, spread=False):
        super().__init__()
        self.spread = spread
        self.inputs.D = 0.4
        self.inputs.loss = 0.05
        self.inputs.heat = 0.0
        self.states.u = np.exp(-((np.arange(n_cells) - 0.3 * n_cells) / (0.05 * n_cells)) ** 2)
        self.ders.u = np.zeros(n_cells)

    def do_step(self, time):
        u = self.states.u
        inner = u[:-2] - 2.0 * u[1:-1] + u[2:]
        laplacian = np.concatenate([np.array([u[1] - u[0]]), inner, np.array([u[-2] - u[-1]])])
        source = np.concatenate([np.array([self.inputs.heat]), 0.0 * u[1:]])
        if self.spread:  # the heat enters every cell, more where it is warm
            source = 0.1 * self.inputs.heat * (1.0 + 0.5 * np.tanh(u))
        self.ders.u = self.inputs.D * laplacian - self.inputs.loss * u + source


class Meter(System):
    """The rod's mean temperature (a sum over the array), for the oscillators to read;
    weighted by a lamp's power when it is given one."""

    def __init__(self, rod, lamp=None):
        super().__init__()
        self.rod, self.lamp = rod, lamp
        self.outputs.mean = 0.0

    def do_step(self, time):
        u = self.rod.states.u
        if self.lamp is not None:
            u = u * self.lamp.outputs.power
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


class MeanFieldOscillator(Oscillator):
    """The oscillator with a drive that grows with the rod's mean (its Jacobian entry
    through the mean depends on the mean and on the oscillator's state)."""

    def do_step(self, time):
        super().do_step(time)
        mean = self.inputs.mean
        self.ders.v = self.ders.v + 0.3 * mean * np.tanh(self.states.x) + 0.1 * mean**2


class MeanFieldRod(Rod):
    """The rod whose cells also relax towards its own mean (a sum over the array read by the array loops)."""

    def do_step(self, time):
        super().do_step(time)
        u = self.states.u
        self.ders.u = self.ders.u + 0.2 * (np.mean(u) - u) * u


def read_cell(index, coupled_mean):
    def connect(sys, t):
        sys.inputs.cell = sys.rod.states.u[index]
        if coupled_mean:
            sys.inputs.mean = sys.meter.outputs.mean

    return connect


def build(n_oscillators=20, n_cells=200, coupled_mean=True, spread=False, mean_field=False, weighted=False):
    """``mean_field``: the oscillators and the rod's cells read the rod's mean nonlinearly
    (MeanFieldOscillator, MeanFieldRod); ``weighted``: the mean the oscillators read is
    weighted by the first oscillator's power."""
    rod = MeanFieldRod(n_cells, spread) if mean_field else Rod(n_cells, spread)
    meter = Meter(rod)
    oscillators = []
    for k in range(n_oscillators):
        osc = (MeanFieldOscillator if mean_field else Oscillator)(1.0 + 0.05 * k, 0.3 + 0.01 * (k % 3))
        osc.rod, osc.meter = rod, meter
        osc.add_pre_connection(read_cell((k * 37 + 11) % n_cells, coupled_mean))
        oscillators.append(osc)

    def total_heat(sys, t):
        sys.inputs.heat = sum(o.outputs.power for o in oscillators)

    rod.add_pre_connection(total_heat)
    if weighted:
        meter.lamp = oscillators[0]
    sim = Simulation()  # in dataflow order: dynode reads no value left from the previous evaluation
    sim.add_system(meter)
    for osc in oscillators:
        sim.add_system(osc)
    sim.add_system(rod)
    return sim


class Lamp(System):
    """An oscillator whose output also follows a level it reads (the loop case below)."""

    def __init__(self, k):
        super().__init__()
        self.inputs.k = k
        self.inputs.level = 0.0
        self.states.x = 0.1
        self.ders.x = 0.0
        self.outputs.power = 0.0

    def do_step(self, time):
        self.ders.x = -self.inputs.k * self.states.x + 0.1
        self.outputs.power = 0.01 * self.states.x + 0.1 * self.inputs.level


def read_level(sys, t):
    sys.inputs.level = sys.meter.outputs.mean


def build_loop(n_lamps=8, n_cells=100):
    """Lamp 0's power weighs a sum over the rod whose mean the other lamps' powers read
    (lamp 0 reads the plain mean): the loop over the lamps' powers would have to run
    both before and after that sum."""
    rod = Rod(n_cells)
    lamps = [Lamp(1.0 + 0.1 * k) for k in range(n_lamps)]
    plain, weighted = Meter(rod), Meter(rod, lamps[0])  # one loop computes both means
    for k, lamp in enumerate(lamps):
        lamp.meter = plain if k == 0 else weighted
        lamp.add_pre_connection(read_level)

    def total_heat(sys, t):
        sys.inputs.heat = sum(lamp.outputs.power for lamp in lamps)

    rod.add_pre_connection(total_heat)
    sim = Simulation()
    sim.add_system(plain)
    sim.add_system(lamps[0])
    sim.add_system(weighted)
    for lamp in lamps[1:]:
        sim.add_system(lamp)
    sim.add_system(rod)
    return sim


class Thermostat(System):
    """An integral controller: its setpoint follows the error of the rod's first cell it integrates."""

    def __init__(self):
        super().__init__()
        self.inputs.level = 0.0
        self.states.z = 0.2
        self.ders.z = 0.0
        self.outputs.setpoint = 0.0

    def do_step(self, time):
        self.ders.z = 0.5 * (self.inputs.level - 0.4) - 0.1 * self.states.z
        self.outputs.setpoint = 0.3 + 0.2 * np.tanh(self.states.z)


class Spread(System):
    """The rod's mean squared deviation from the thermostat's setpoint, the deviation
    scaled by the lamps' total power (``total``): sums whose summands read signals
    computed by instances."""

    def __init__(self, rod, thermostat, total):
        super().__init__()
        self.rod, self.thermostat = rod, thermostat
        self.inputs.total = 0.0
        self.use_total = total
        self.outputs.spread = 0.0

    def do_step(self, time):
        u = self.rod.states.u
        deviation = u - self.thermostat.outputs.setpoint
        if self.use_total:
            deviation = deviation * (1.0 + self.inputs.total)
        self.outputs.spread = np.mean(deviation**2)


def build_thermostat(n_oscillators=20, n_cells=200, total=False):
    """Oscillators driven by the spread of a rod about a thermostat's setpoint (the
    thermostat reads the rod's first cell); with ``total`` the deviations are scaled by the sum
    of the oscillators' outputs.  The rod is heated by that sum, as in ``build``."""
    rod = Rod(n_cells)
    thermostat = Thermostat()
    spread = Spread(rod, thermostat, total)
    oscillators = []
    for k in range(n_oscillators):
        osc = MeanFieldOscillator(1.0 + 0.05 * k, 0.3 + 0.01 * (k % 3))
        osc.rod, osc.spread = rod, spread

        def connect(sys, t, index=(k * 37 + 11) % n_cells):
            sys.inputs.cell = sys.rod.states.u[index]
            sys.inputs.mean = sys.spread.outputs.spread

        osc.add_pre_connection(connect)
        oscillators.append(osc)

    def total_heat(sys, t):
        sys.inputs.heat = sum(o.outputs.power for o in oscillators)

    def read_level(sys, t):
        sys.inputs.level = rod.states.u[0]

    def read_total(sys, t):
        sys.inputs.total = sum(o.outputs.power for o in oscillators)

    rod.add_pre_connection(total_heat)
    thermostat.add_pre_connection(read_level)
    if total:
        spread.add_pre_connection(read_total)
    sim = Simulation()  # in dataflow order (with ``total``, the spread reads the oscillators' outputs: no such order)
    sim.add_system(thermostat)
    sim.add_system(spread)
    for osc in oscillators:
        sim.add_system(osc)
    sim.add_system(rod)
    return sim
