"""Closures that differ only in the numbers they close over share one loop (issue 17).

A model built in a loop -- a closure per synapse or coupling, each over its own
source system and weight -- traces to assignments that are the same function with
the same expression up to *which* systems they read and the *numbers* in it.  dyngen
groups them as it groups ``do_step``: one loop over the instances, each number that
differs between them read from a table of per-instance values (module data).  Here:

* three closure forms (factory ``def``, ``def`` with defaults, ``lambda``) each give
  one group over all six copies, with their weights as module tables, and the run
  equals the real dynode 0.4's (every signal, 1e-8 relative);
* a Hodgkin-Huxley network with a closure per synapse (``benchmarks/hh_network.py``)
  whose neurons have different numbers of synapses: the synapses of all neurons are
  one loop over all terms (each added into its neuron's ``i_syn``), the run of 8
  neurons equals dynode's, the Jacobian (chain rule through the sums) equals central
  differences, and ``rhs`` and ``jac_values`` have as many lines at 40 neurons as at 8;
* a connection per synapse adding into its target's input (``+=`` after a reset, as
  dynode runs them) is the sum of the terms, equal to dynode's;
* the grouping key ignores sympy's value-dependent order of sums and products, and
  numbers equal in every instance stay inline.
"""

from __future__ import annotations

import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

from dynode_compare import assert_same_runs, build_simulation, run
from finite_differences import central_differences
from dyngen import DyngenWarning
from dyngen.flatten import flatten
from dyngen.groups import _shape, group
from dyngen.lower import lower
from dyngen.render import render
from dyngen.trace import trace

ROOT = Path(__file__).resolve().parent.parent
CLOSURES = Path(__file__).resolve().parent / "closures_model.py"
ACCUMULATE = Path(__file__).resolve().parent / "accumulate_model.py"
HH = ROOT / "benchmarks" / "hh_network.py"


def _kernel(path: Path, *args):
    sim = build_simulation(path, "dyngen", "build", *args)
    flat = flatten(trace(sim.systems, "model", str(path.parent)))
    return flat, lower(flat)


def test_each_closure_form_is_one_group_with_its_weights_as_module_data() -> None:
    flat, kernel = _kernel(CLOSURES)
    groups = group(flat)
    inputs = {g.refs[0].key: g for g in groups if g.refs[0].kind == "inputs"}
    assert sorted(inputs) == ["u_default", "u_factory", "u_lambda"]
    assert all(g.n == 6 for g in inputs.values())
    tables = {name: values for name, values, _ in kernel.constants}
    # u_factory = w * tanh(x_left): its six weights, in the systems' order
    expected = tuple(w * (1.0 + 0.01 * k) for k, w in enumerate([0.7, -0.4, 1.3, 0.25, -1.1, 0.9]))
    assert tables["COUPLING_CONSTANT_0"] == pytest.approx(expected, rel=1e-15)
    assert tables["LAMBDA_CONSTANT_0"] == pytest.approx(tuple(0.2 - 0.03 * k for k in range(6)), rel=1e-15)
    text = _model_functions(render(kernel, CLOSURES.name).text)
    assert "const0 = COUPLING_CONSTANT_0[i]" in text
    loops = [line.strip() for line in text.splitlines() if line.strip().startswith("for ")]
    assert loops and set(loops) == {"for i in range(6):"}  # no instance unrolled
    _, twelve = _kernel(CLOSURES, 12)
    larger = _model_functions(render(twelve, CLOSURES.name).text)
    assert [line.strip() for line in larger.splitlines() if line.strip().startswith("for ")] == [
        loop.replace("6", "12") for loop in loops
    ]
    assert len(larger.splitlines()) == len(text.splitlines())


def _model_functions(text: str) -> str:
    """The text of ``rhs``, ``jac_values`` and ``observe`` (without the integrators)."""
    start = text.index("def rhs(")
    return text[start:text.index("def jac(", start)]


def test_closure_forms_match_dynode() -> None:
    ours, theirs = (run(build_simulation(CLOSURES, backend), backend, 10.0, 0.5) for backend in ("dyngen", "dynode"))
    assert_same_runs(ours, theirs)


def test_one_system_reading_one_instance_of_a_loop_with_per_instance_numbers() -> None:
    # A probe reads oscillator 1's u_factory = w_1 tanh(x_0): outside the loop over the
    # six couplings, w_1 is a number, not COUPLING_CONSTANT_0[i] with no i (CI, 2026-12-04:
    # "Variable 'i' is not defined" in a random tree); its loads name oscillator 1's signals.
    sims = {backend: build_simulation(CLOSURES, backend, "build_with_probe") for backend in ("dyngen", "dynode")}
    ours, theirs = (run(sim, backend, 10.0, 0.5) for backend, sim in sims.items())
    assert_same_runs(ours, theirs)
    module = sims["dyngen"].module
    text = _model_functions(module.__loader__.get_source(module.__name__))
    jac_values = text[text.index("def jac_values("):text.index("def observe(")]
    probe = jac_values[jac_values.index("# Probe:"):]
    w = -0.4 * (1.0 + 0.01)  # the weight of oscillator 1's coupling (closures_model.build)
    assert f"{-w!r}*math.tanh" in probe and "CONSTANT" not in probe
    assert "# Oscillator[0].states.x" in probe  # the one oscillator 1's coupling reads
    y, p = module.DEFAULT_STATES + np.linspace(-1.0, 1.0, module.N_STATES), module.DEFAULT_PARAMETERS.copy()
    J = np.empty((module.N_STATES, module.N_STATES))
    module.jac(0.0, y, p, J)
    np.testing.assert_allclose(J, central_differences(module, 0.0, y, p), rtol=1e-6, atol=1e-8)


def test_hh_network_matches_dynode() -> None:
    # 8 neurons with 2, 3 or 4 synapses: one loop over the 23 terms of all neurons
    sims = {backend: build_simulation(HH, backend, "build", 8) for backend in ("dyngen", "dynode")}
    # dynode starts each interval with a step of observer_dt; a long one (or steps
    # over 0.01) can reach states where Python's float ** overflows inside the model
    ours, theirs = (run(sim, backend, 10.0, 0.1, max_step=0.01) for backend, sim in sims.items())
    assert_same_runs(ours, theirs)
    assert max(abs(v) for v in theirs.series["0:Network/0:HHNeuron"]["inputs.i_syn"]) > 0.1  # the synapses drive
    module = sims["dyngen"].module
    assert "for i in range(23):" in module.__loader__.get_source(module.__name__)
    # the Jacobian: the chain rule through the sums, against central differences of rhs
    y, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    y[: module.N_STATES // 4] += np.linspace(-5.0, 30.0, module.N_STATES // 4)  # some neurons spiking
    J = np.empty((module.N_STATES, module.N_STATES))
    module.jac(0.0, y, p, J)
    np.testing.assert_allclose(J, central_differences(module, 0.0, y, p), rtol=1e-6, atol=1e-6)


def test_hh_network_module_does_not_grow_with_the_network() -> None:
    lines = {}
    for n in (8, 40):  # 2, 3 or 4 synapses per neuron, then 5 to 10
        flat, kernel = _kernel(HH, n)
        (synapses,) = [g for g in group(flat) if g.refs[0].key == "i_syn"]
        assert synapses.n == n and synapses.terms is not None
        assert sorted(Counter(synapses.terms.owners).values())[0] >= 2
        assert len(set(Counter(synapses.terms.owners).values())) > 1  # different numbers of synapses
        text = _model_functions(render(kernel, HH.name).text)
        lines[n] = len(text[:text.index("def observe(")].splitlines())  # (observe sums mean_v over n)
        weights = [values for _, values, _ in kernel.constants]
        assert [len(w) for w in weights] == [synapses.terms.n]  # one table: a weight per synapse
    assert lines[8] == lines[40]


def test_connections_adding_into_one_input_match_dynode() -> None:
    # a reset, then one pre-connection per synapse doing ``sys.inputs.u += ...``
    sims = {backend: build_simulation(ACCUMULATE, backend) for backend in ("dyngen", "dynode")}
    with warnings.catch_warnings():
        warnings.simplefilter("error", DyngenWarning)  # no "read before written" warning: it is a sum
        ours, theirs = (run(sim, backend, 10.0, 0.5) for backend, sim in sims.items())
    assert_same_runs(ours, theirs)
    flat = flatten(trace(sims["dyngen"].systems, "model", str(ACCUMULATE.parent)))
    (u,) = [g for g in group(flat) if g.refs[0].key == "u"]
    assert u.n == 8 and u.terms is not None and u.terms.n == 23  # 2, 3 or 4 synapses per unit
    module = sims["dyngen"].module
    y, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    J = np.empty((module.N_STATES, module.N_STATES))
    module.jac(0.0, y, p, J)
    np.testing.assert_allclose(J, central_differences(module, 0.0, y, p), rtol=1e-6, atol=1e-8)


def test_shape_ignores_the_order_sympy_gives_by_value() -> None:
    a, b = sp.symbols("a b", real=True)
    names = {a: "_r0_0", b: "_r1_0"}
    e1 = sp.Float(0.5) * sp.tanh(a) + sp.Float(0.25) * sp.tanh(b)
    e2 = sp.Float(0.25) * sp.tanh(a) + sp.Float(0.5) * sp.tanh(b)
    (t1, v1), (t2, v2) = _shape(e1, names, {}), _shape(e2, names, {})
    assert t1 == t2
    assert v1 == (0.5, 0.25) and v2 == (0.25, 0.5)  # the weight of tanh(a) first in both
    # exp(0.5 a) * exp(0.3 a) vs exp(0.3 a) * exp(0.5 a): args of the same text, so the
    # numbers are part of the text (only identical expressions group)
    e3 = sp.Mul(sp.exp(sp.Float(0.5) * a), sp.exp(sp.Float(0.3) * a), evaluate=False)
    e4 = sp.Mul(sp.exp(sp.Float(0.7) * a), sp.exp(sp.Float(0.3) * a), evaluate=False)
    assert _shape(e3, names, {})[0] != _shape(e4, names, {})[0]
