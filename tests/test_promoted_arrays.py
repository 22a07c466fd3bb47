"""Small vectors against large arrays (issue 15): Kuramoto with 40 oscillators and a 40 x 40
weight matrix.

The weight matrix (1,600 values) is traced in array form, the 40 phases (under the
array form's 64 elements) element by element; ``theta[None, :] - theta[:, None]`` then
made 1,600 element expressions that the array form cannot take as an operand, and the
model failed to build (the element form would build more than 5,000 operations).  Now
the tracer traces such a model again with its small vectors in array form too.

Checked against dynode 0.4 on the same model file, central finite differences of the
generated rhs (the all-to-all Jacobian, dense as the model is), and the module's shape.

With no large array at all, the phases meeting only each other in an outer difference
(``theta[None, :] - theta[:, None]``, ``np.subtract.outer``) are promoted by that
operation (``arrays.promote_outer``): 63 phases built element by element in 49 s, now in
under a second.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dyngen
from dynode_compare import assert_same_runs, build_simulation, run
from finite_differences import central_differences

MODELS = Path(__file__).resolve().parent / "grids_model.py"
FORMS = ["broadcast", "matrix", "einsum"]


def module_of(n: int, form: str) -> Any:
    sim = build_simulation(MODELS, "dyngen", "build_kuramoto", n, form)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dyngen.DyngenWarning)  # no "traced element by element" notice
        return sim.compile().module


def rhs_lines(module: Any) -> list[str]:
    text = Path(module.__file__).read_text(encoding="utf-8")
    return text.split("\ndef rhs(")[1].split("\n\n\n")[0].splitlines()


@pytest.mark.parametrize("form", FORMS)
def test_forty_oscillators_against_a_weight_matrix_match_dynode(form: str) -> None:
    ours = run(build_simulation(MODELS, "dyngen", "build_kuramoto", 40, form), "dyngen", 2.0, 0.5)
    theirs = run(build_simulation(MODELS, "dynode", "build_kuramoto", 40, form), "dynode", 2.0, 0.5)
    assert_same_runs(ours, theirs)


@pytest.mark.parametrize("form", FORMS)
def test_the_jacobian_is_all_to_all_and_matches_finite_differences(form: str) -> None:
    module = module_of(40, form)
    assert getattr(module, "NO_JACOBIAN", None) is None
    rng = np.random.default_rng(7)
    y = module.DEFAULT_STATES + rng.normal(0.0, 0.3, module.N_STATES)
    p = module.DEFAULT_PARAMETERS * rng.uniform(0.8, 1.2, module.N_PARAMETERS)
    J = np.full((module.N_STATES, module.N_STATES), np.nan)
    module.jac(0.7, y, p, J)
    expected = central_differences(module, 0.7, y, p)
    assert np.max(np.abs(J - expected)) / np.max(np.abs(expected)) < 1e-6
    assert np.count_nonzero(J) == 40 * 40


def test_the_small_vectors_are_loops_not_forty_lines() -> None:
    small, larger = module_of(40, "broadcast"), module_of(50, "broadcast")
    assert any(line.strip().startswith("for j in range(") for line in rhs_lines(small))
    assert not any("omega_39" in line for line in rhs_lines(small))
    assert len(rhs_lines(small)) == len(rhs_lines(larger))


@pytest.mark.parametrize(("n", "form"), [(5, "broadcast"), (40, "broadcast"), (5, "outer"), (40, "outer"), (12, "loops")])
def test_all_to_all_phases_with_no_large_array_match_dynode(n: int, form: str) -> None:
    """No large array in the model: 40 phases meet only each other in an outer difference
    (element by element: 1,600 expressions and a dense Jacobian derived entry by entry, a
    49 s build at 63 phases); the outer operation promotes them to the array form.  Five
    phases stay in the element form (np.subtract.outer of element-form vectors too), and so
    do 12 phases coupled in a Python double loop (lower.partial's derivatives)."""
    ours = run(build_simulation(MODELS, "dyngen", "build_plain_kuramoto", n, form), "dyngen", 2.0, 0.5)
    theirs = run(build_simulation(MODELS, "dynode", "build_plain_kuramoto", n, form), "dynode", 2.0, 0.5)
    assert_same_runs(ours, theirs)
    sim = build_simulation(MODELS, "dyngen", "build_plain_kuramoto", n, form)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dyngen.DyngenWarning)
        module = sim.compile().module
    loops = any(line.strip().startswith("for j in range(") for line in rhs_lines(module))
    if n == 40 and form != "loops":  # promoted: loop nests, not a line per phase
        assert loops and not any("theta_39" in line for line in rhs_lines(module))
    else:
        assert not loops
    rng = np.random.default_rng(3)
    y = module.DEFAULT_STATES + rng.normal(0.0, 0.3, module.N_STATES)
    p = module.DEFAULT_PARAMETERS.copy()
    J = np.full((module.N_STATES, module.N_STATES), np.nan)
    module.jac(0.3, y, p, J)
    expected = central_differences(module, 0.3, y, p)
    assert np.max(np.abs(J - expected)) / np.max(np.abs(expected)) < 1e-6
