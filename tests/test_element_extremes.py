"""Maxima and minima over a few dozen traced elements (issue 15): built in seconds, with
the right derivatives, or refused at once with the line and what to write instead.

- np.max/np.min/u.max()/np.maximum.reduce/np.sum over a vector of 16 to 63 elements
  (under the array form's threshold) promote it to the array form (one low-rank term per
  reduction), where element by element every derivative read every element (np.max of 40
  elements lowered in 82 s, np.sum of 60 in 29 s);
- Python's max over a generator, a loop of np.maximum and np.clip chains stay in element
  form, as MaxOf/MinOf (no pairwise comparisons) whose derivative is the one-hot of the
  first extreme argument (np.argmax);
- checked against numpy evaluating the same do_step, central differences of the
  generated rhs, and dynode running the same file;
- the element form (when the array form cannot express the model) counts the dense
  Jacobian of a reduction read by every element, and stops with the line; a condition
  on a value selected by np.where in a loop is refused before its cases are folded.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sympy as sp

import dyngen
from dyngen.errors import TraceError
from dyngen.extremes import ArgMaxOf, MaxOf, MinOf
from dyngen.printer import NumbaPrinter
from dynode_compare import assert_same_runs, build_simulation, run_both
from finite_differences import central_differences

MODELS = Path(__file__).resolve().parent / "extremes_model.py"


def compiled(builder: str, *args: Any, cache: Path) -> Any:
    sim = build_simulation(MODELS, "dyngen", builder, *args)
    sim.cache_dir = str(cache)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dyngen.DyngenWarning)
        return sim.compile().module


def check_against_numpy_and_differences(module: Any, n: int, kind: str) -> None:
    """rhs equals numpy running the same do_step; jac (dense, S + U Vᵀ) equals central differences."""
    reference = build_simulation(MODELS, "dynode", "build", n, kind).systems[0]
    for seed in (1, 2):
        y = np.random.default_rng(seed).uniform(-1.0, 1.2, n)
        p = module.DEFAULT_PARAMETERS.copy()
        dy = np.empty(n)
        module.rhs(0.0, y, p, dy)
        reference.states.u = y.copy()
        reference.do_step(0.0)
        assert np.max(np.abs(dy - np.asarray(reference.ders.u))) < 1e-13
        J = np.full((n, n), np.nan)
        module.jac(0.0, y, p, J)
        C = central_differences(module, 0.0, y, p)
        assert np.max(np.abs(J - C)) / np.max(np.abs(C)) < 1e-7


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["max", "method", "reduce", "sum"])
def test_reductions_over_a_few_dozen_elements_take_the_array_form(kind: str, tmp_path: Path) -> None:
    module = compiled("build", 40, kind, cache=tmp_path)
    assert module.N_LOWRANK >= 1  # a low-rank term per reduction: the array form's
    check_against_numpy_and_differences(module, 40, kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["builtin", "nested", "clip"])
def test_element_form_extremes_build_with_the_first_extremes_derivative(kind: str, tmp_path: Path) -> None:
    """Python's max over 30 elements was 2^29 paths of Python `if`s; a loop of np.maximum
    and np.clip chains rebuilt sympy's Max with pairwise comparisons at every step."""
    module = compiled("build", 30, kind, cache=tmp_path)
    assert not getattr(module, "N_LOWRANK", 0) and getattr(module, "NO_JACOBIAN", None) is None
    check_against_numpy_and_differences(module, 30, kind)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["max", "builtin"])
def test_extremes_match_dynode(kind: str) -> None:
    ours, theirs = run_both(lambda backend: build_simulation(MODELS, backend, "build", 24, kind), 2.0, 0.1)
    assert_same_runs(ours, theirs)


def test_a_max_of_many_arguments_is_built_without_comparing_them() -> None:
    """MaxOf keeps every argument (sympy's Max compares each pair, at every rebuild),
    flattens nested ones, folds numbers, and prints as a balanced tree of np.maximum."""
    x = sp.symbols("x0:200", real=True)
    node = MaxOf(*(a**2 for a in x), MaxOf(x[0], x[1], 3), 2)
    assert isinstance(node, sp.Max) and len(node.args) == 203  # 200 squares, x0, x1, the number 3
    rebuilt = node.xreplace({x[5]: x[6]})
    assert isinstance(rebuilt, MaxOf) and len(rebuilt.args) == 202  # x5**2 became x6**2: one repeat dropped
    assert MinOf(x[0], x[0]) == x[0] and MaxOf(x[0], sp.oo) == sp.oo
    text = NumbaPrinter().doprint(node)
    depth = max(np.cumsum([1 if c == "(" else -1 if c == ")" else 0 for c in text]))
    assert text.count("np.maximum(") == 202 and depth < 30  # log2(203) levels, not 202
    weight = node.diff(x[7])
    assert weight.has(ArgMaxOf) and "np.argmax(np.array((" in NumbaPrinter().doprint(weight)


def test_the_element_form_stops_at_a_dense_jacobian_with_the_line(tmp_path: Path) -> None:
    """The array form cannot express the item assignment; element by element, every one
    of 200 derivatives would read np.max of 200 elements: refused by the element form's
    budget, at the line that reads it (counted, before any derivative is built)."""
    sim = build_simulation(MODELS, "dyngen", "build_filled", 200)
    sim.cache_dir = str(tmp_path)
    with pytest.raises(TraceError, match=r"item assignment") as caught:
        sim.compile()
    message = str(caught.value)
    assert "dense Jacobian of 40,000 entries" in message and "np.max" in message
    assert f"extremes_model.py:{_line_of('lap - (u - np.max(u))')}" in message
    assert "cannot be traced element by element in reasonable time" in message and "np.concatenate" in message


def test_a_condition_on_a_value_selected_in_a_loop_is_refused_before_folding(tmp_path: Path) -> None:
    sim = build_simulation(MODELS, "dyngen", "build_where_chain", 2)
    sim.cache_dir = str(tmp_path)
    with pytest.raises(TraceError, match=r"(?s)more than 16 conditional values.*x = x \+ where") as caught:
        sim.compile()
    assert f"extremes_model.py:{_line_of('v = np.where(v > 0.1 * k')}" in str(caught.value)


def _line_of(text: str) -> int:
    lines = MODELS.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if text in line)


def test_sorting_traced_values_is_refused_with_what_to_write_instead(tmp_path: Path) -> None:
    class Sorted(dyngen.System):
        def __init__(self) -> None:
            super().__init__()
            self.states.u = np.linspace(0.0, 1.0, 5)
            self.ders.u = np.zeros(5)

        def do_step(self, time):
            self.ders.u = np.sort(self.states.u) - self.states.u

    sim = dyngen.Simulation(cache_dir=tmp_path)
    sim.add_system(Sorted())
    with pytest.raises(TraceError, match=r"(?s)np.sort of traced values.*orders them.*write instead: np.max/np.min") as caught:
        sim.compile()
    assert "test_element_extremes.py:" in str(caught.value)
