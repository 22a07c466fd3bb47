"""A network of Hodgkin-Huxley neurons coupled by one closure per synapse.

Written as a dynode user writes it: an ``HHNeuron`` system (states v, m, h, n; a
constant drive ``i_ext`` and a synaptic current ``i_syn``), a ``Network`` that holds
the neurons as subsystems, and random sparse connectivity (fixed seed, 5 to 10
inputs per neuron).  Every synapse is a closure over its source neuron and its
weight, in one of two forms: ``form="sum"`` (``make_synapse``), the closures a
neuron's one pre-connection adds up; ``form="connections"``
(``make_synaptic_connection``), one pre-connection per synapse doing
``sys.inputs.i_syn += ...`` after a reset (listed in ``dependees``).

``build(n)`` returns the ``Simulation``; ``python benchmarks/hh_network.py`` times a
cold build (see ``benchmarks/README.md``).
"""

import numpy as np

from dyngen import Simulation, System

N_NEURONS = 100
SEED = 17
G_NA, G_K, G_L = 120.0, 36.0, 0.3
E_NA, E_K, E_L = 50.0, -77.0, -54.387


def sigmoid(v):
    """The presynaptic activation: about 0 at rest, about 1 during a spike."""
    return 1.0 / (1.0 + np.exp(-(v + 20.0) / 2.0))


class HHNeuron(System):
    def __init__(self, i_ext=10.0, v0=-65.0):
        super().__init__()
        self.inputs.i_ext = i_ext
        self.inputs.i_syn = 0.0
        self.states.v = v0
        self.states.m = 0.05
        self.states.h = 0.6
        self.states.n = 0.32
        self.ders.v = self.ders.m = self.ders.h = self.ders.n = 0.0
        self.synapses = []  # closures: each gives the current of one incoming synapse

    def do_step(self, time):
        v, m, h, n = self.states.v, self.states.m, self.states.h, self.states.n
        alpha_m = 0.1 * (v + 40.0) / (1.0 - np.exp(-(v + 40.0) / 10.0))
        beta_m = 4.0 * np.exp(-(v + 65.0) / 18.0)
        alpha_h = 0.07 * np.exp(-(v + 65.0) / 20.0)
        beta_h = 1.0 / (1.0 + np.exp(-(v + 35.0) / 10.0))
        alpha_n = 0.01 * (v + 55.0) / (1.0 - np.exp(-(v + 55.0) / 10.0))
        beta_n = 0.125 * np.exp(-(v + 65.0) / 80.0)
        i_ion = G_NA * m**3 * h * (v - E_NA) + G_K * n**4 * (v - E_K) + G_L * (v - E_L)
        self.ders.v = self.inputs.i_ext + self.inputs.i_syn - i_ion
        self.ders.m = alpha_m * (1.0 - m) - beta_m * m
        self.ders.h = alpha_h * (1.0 - h) - beta_h * h
        self.ders.n = alpha_n * (1.0 - n) - beta_n * n


def make_synapse(src, w):
    """The current one synapse from ``src`` injects: a closure over ``src`` and ``w``."""

    def synapse():
        return w * sigmoid(src.states.v)

    return synapse


def make_synaptic_connection(src, w):
    """The other form: one pre-connection per synapse, adding into the target's input."""

    def synapse(sys, t):
        sys.inputs.i_syn += w * sigmoid(src.states.v)

    return synapse


def reset_synaptic_input(sys, t):
    sys.inputs.i_syn = 0.0


def synaptic_input(sys, t):
    total = 0.0
    for synapse in sys.synapses:
        total += synapse()
    sys.inputs.i_syn = total


class Network(System):
    def __init__(self, n=N_NEURONS, seed=SEED, in_degree=None, form="sum"):
        super().__init__()
        self.outputs.mean_v = 0.0  # the population's mean membrane potential
        rng = np.random.default_rng(seed)
        self.neurons = [HHNeuron(i_ext=float(rng.uniform(6.0, 14.0)), v0=float(rng.uniform(-70.0, -60.0))) for _ in range(n)]
        for neuron in self.neurons:
            self.add_subsystem(neuron)
        for k, dst in enumerate(self.neurons):
            n_inputs = in_degree or (int(rng.integers(5, 11)) if n > 10 else 2 + k % 3)
            sources = rng.choice([j for j in range(n) if j != k], size=n_inputs, replace=False)
            if form == "connections":
                dst.add_pre_connection(reset_synaptic_input)
            for j in sources:
                w = float(rng.uniform(-1.5, 3.0))
                if form == "connections":
                    dst.add_pre_connection(make_synaptic_connection(self.neurons[j], w), dependees=[reset_synaptic_input])
                else:
                    dst.synapses.append(make_synapse(self.neurons[j], w))
            if form != "connections":
                dst.add_pre_connection(synaptic_input)

    def do_step(self, time):
        self.outputs.mean_v = sum(neuron.states.v for neuron in self.neurons) / len(self.neurons)


def build(n=N_NEURONS, seed=SEED, in_degree=None, form="sum"):
    """``n`` neurons; each gets ``in_degree`` inputs (None: 5 to 10 at random; 2, 3, 4, 2, ... when n <= 10)."""
    sim = Simulation()
    sim.add_system(Network(n, seed, in_degree, form))
    return sim


def _cold_build(n: int, in_degree: int | None, form: str) -> None:
    """One cold build (run in a new process with an empty DYNGEN_CACHE_DIR): the time
    of each pipeline stage, of the first simulate (numba compiles rhs, observe and the
    DOPRI5 driver) and the generated module's size."""
    import time as clock
    from pathlib import Path

    start = clock.perf_counter()
    sim = build(n, in_degree=in_degree, form=form)
    result = sim.compile()  # trace .. load
    built = clock.perf_counter()
    sim.simulate(10.0, 0.1)
    done = clock.perf_counter()
    stages = ", ".join(f"{stage} {seconds:.2f}" for stage, seconds in result.timings.items())
    text = Path(result.path).read_text(encoding="utf-8")
    start_fns = text.index("def rhs(")
    functions = text[start_fns:text.index("def jac(", start_fns)]
    print(f"{form}: n={n} in_degree={in_degree or ('5-10' if n > 10 else '2-4')}: total {done - start:.2f} s = build() {built - start - sum(result.timings.values()):.2f} "
          f"+ {stages} + first simulate(10, 0.1) {done - built:.2f} s; module {len(text.splitlines())} lines "
          f"(rhs/jac_values/observe {len(functions.splitlines())}, {functions.count('for i in range(')} loops)")


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=N_NEURONS)
    parser.add_argument("--in-degree", type=int, default=None, help="inputs per neuron (default: 5 to 10 at random)")
    parser.add_argument("--form", choices=("sum", "connections"), default="sum",
                        help="sum: one pre-connection adds up the synapse closures; connections: one += pre-connection per synapse")
    options = parser.parse_args()
    _cold_build(options.n, options.in_degree, options.form)
