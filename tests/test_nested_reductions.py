"""Nested reductions get an exact structured Jacobian (issue 15): J = S + U Vᵀ.

``tests/nested_model.py``: communities on a 2-D grid ``u[n, m]`` with a level ``v[n]``
each, coupled through reductions whose summands read other reductions:

- a sum along an axis whose summand reads a sum over the whole grid
  (``np.mean((u - u.mean())**2, axis=1)``, broadcast and at its own cell): U's rows by the
  chain rule through the row sums (``Σ_j f'(T_i) ∂S_ij/∂m``);
- a sum over the whole grid whose summand reads the row means: V by reverse mode through
  them (``jac_adj`` arrays), three levels deep with a global mean inside;
- a reduction along an axis read at another row (``np.roll(u.mean(axis=1), 1)[:, None]``):
  dense blocks in S;
- reductions along an axis whose summands read the row means (a row's spread about its
  mean, the row maxima of ``u * rows``): through ``jac_through`` arrays, dense blocks;
- a vector in the element form (12 levels) whose derivatives read single elements of
  those reductions: a loop over the row per element.

Checked against central finite differences of the generated rhs (S + U Vᵀ as the sparse
solvers see it, and the dense ``jac``), dynode running the same file, the element form
where it builds in seconds (the shifted row means), rodas4 and BDF on the Jacobian
against a tight dynode run, and the module's shape at two grid sizes.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.sparse import coo_matrix

import dyngen
from dynode_compare import assert_same_runs, build_simulation, run
from finite_differences import central_differences, random_point, relative

MODEL = Path(__file__).resolve().parent / "nested_model.py"
CASES = ["row_of_global", "global_of_rows", "shifted", "rows_of_rows", "deep"]
RANKS = {"row_of_global": 2, "global_of_rows": 1, "shifted": 0, "rows_of_rows": 0, "deep": 3}
DENSE = ("row_of_global", "global_of_rows", "deep")  # a low-rank term: (almost) every entry non-zero


def module_of(n: int, m: int, case: str, arrays: bool = True, scaled: bool = True) -> Any:
    sim = build_simulation(MODEL, "dyngen", "build", n, m, case, scaled)
    sim.arrays = arrays
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dyngen.DyngenWarning)
        return sim.compile().module


def structured(module: Any, t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """S + U Vᵀ from jac_values, the pattern and jac_lowrank (what the sparse solvers see)."""
    n = module.N_STATES
    values = np.full(module.JAC_NNZ, np.nan)
    module.jac_values(t, y, p, values)
    J = coo_matrix((values, (module.JAC_ROWS, module.JAC_COLS)), shape=(n, n)).toarray()  # (duplicates add up)
    rank = getattr(module, "N_LOWRANK", 0)
    if rank:
        U, V = np.full((n, rank), np.nan), np.full((n, rank), np.nan)
        module.jac_lowrank(t, y, p, U, V)
        J += U @ V.T
    return J


def jacobians_match_finite_differences(module: Any) -> list[np.ndarray]:
    """S + U Vᵀ and the dense ``jac`` against central differences at two random points
    (which it returns)."""
    n, references = module.N_STATES, []
    for seed in (1, 2):
        t, y, p = random_point(module, seed)
        references.append(central_differences(module, t, y, p))
        assert relative(structured(module, t, y, p), references[-1]) < 1e-7
        J = np.full((n, n), np.nan)
        module.jac(t, y, p, J)
        assert relative(J, references[-1]) < 1e-7
    return references


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("shape", [(12, 10), (9, 8)], ids=["12x10", "9x8"])
def test_the_jacobian_of_nested_reductions_matches_finite_differences(case: str, shape: tuple) -> None:
    module = module_of(*shape, case)
    assert getattr(module, "NO_JACOBIAN", None) is None and getattr(module, "N_LOWRANK", 0) == RANKS[case]
    n = module.N_STATES
    if case in DENSE:  # S holds the stencil and the row blocks, not the dense coupling
        assert module.JAC_NNZ < 3 * shape[0] * shape[1] * shape[1]
    for reference in jacobians_match_finite_differences(module):
        if case in DENSE:
            assert np.count_nonzero(reference) > 0.8 * n * n  # the global sums couple (almost) everything


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_nested_reductions_match_dynode(case: str) -> None:
    ours = run(build_simulation(MODEL, "dyngen", "build", 12, 10, case), "dyngen", 2.0, 0.5)
    theirs = run(build_simulation(MODEL, "dynode", "build", 12, 10, case), "dynode", 2.0, 0.5)
    assert_same_runs(ours, theirs)


@pytest.mark.slow
def test_the_shifted_row_means_match_the_element_form() -> None:
    """The element form (every element its own expression, the Jacobian entry by entry)
    builds in about a second for the shifted row means: the same rhs, Jacobian and run.
    (The other cases take 20 s to minutes that way: dynode and finite differences check them.)"""
    arrays, elements = module_of(6, 5, "shifted"), module_of(6, 5, "shifted", arrays=False)
    assert arrays.STATES == elements.STATES
    for seed in (1, 2):
        t, y, p = random_point(arrays, seed)
        dy_a, dy_e = np.full(arrays.N_STATES, np.nan), np.full(arrays.N_STATES, np.nan)
        arrays.rhs(t, y, p, dy_a)
        elements.rhs(t, y, p, dy_e)
        assert relative(dy_a, dy_e) < 1e-13
        J = np.full((arrays.N_STATES, arrays.N_STATES), np.nan)
        elements.jac(t, y, p, J)
        assert relative(structured(arrays, t, y, p), J) < 1e-12


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["rodas4", "BDF"])
@pytest.mark.parametrize("case", ["row_of_global", "rows_of_rows", "deep"])
def test_stiff_methods_on_the_nested_jacobian_reach_dynode(case: str, integrator: str) -> None:
    """rodas4 and BDF on the exact S + U Vᵀ against dynode's dopri5, both at tight tolerances."""
    ours = run(build_simulation(MODEL, "dyngen", "build", 12, 10, case), "dyngen", 2.0, 0.5,
               integrator=integrator, rtol=1e-10, atol=1e-12)  # fmt: skip
    theirs = run(build_simulation(MODEL, "dynode", "build", 12, 10, case), "dynode", 2.0, 0.5, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ours.observed_y, theirs.observed_y, rtol=1e-6, atol=1e-8)
    assert np.abs(theirs.observed_y[-1] - theirs.observed_y[0]).max() > 0.05  # the solution moves


@pytest.mark.slow
def test_sparse_rodas4_with_woodbury_takes_the_dense_steps() -> None:
    """A 40 x 10 grid (440 states): rodas4 on the sparse LU with the rank-3 term by
    Woodbury takes the same steps as on the dense LU of the same Jacobian."""
    from dyngen.runtime import stiff
    from dyngen.runtime.sparse_stiff import SparseRosenbrockIntegrator

    sim = build_simulation(MODEL, "dyngen", "build", 40, 10, "deep")
    module, model = sim.compile().module, sim._model
    assert stiff.uses_sparse_lu(module) and module.N_LOWRANK == 3
    p, y0 = model.gather_parameters(), model.gather_states()
    options = {"rtol": 1e-7, "atol": 1e-9}
    dense = stiff.CompiledRosenbrockIntegrator(module, p, 0.0, y0, options, model.state_name)
    ours = SparseRosenbrockIntegrator(module, p, 0.0, y0, options, model.state_name)
    for t_end in (0.5, 2.0):
        dense.advance(t_end)
        ours.advance(t_end)
        np.testing.assert_allclose(ours.y, dense.y, rtol=1e-9, atol=1e-11)
    assert ours.stats[0] == dense.stats[0] > 5


def functions(module: Any) -> dict[str, int]:
    """The generated functions' line counts, by name."""
    text = Path(module.__file__).read_text()
    return {match[1]: len(match[0].splitlines()) for match in re.finditer(r"^def (\w+)\(.*?(?=^\S)", text, re.S | re.M)}


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_the_module_has_the_same_lines_at_two_sizes(case: str) -> None:
    small, large = functions(module_of(12, 10, case)), functions(module_of(120, 100, case))
    assert small == large
    assert ("lowrank_values" in small) == (RANKS[case] > 0)


@pytest.mark.slow
def test_a_vector_in_the_element_form_reading_the_reductions_has_the_jacobian() -> None:
    """``scaled=False``: ``v`` (7 elements: under PROMOTE_MIN, never promoted) is traced
    element by element, each derivative reading one element of a row spread about the
    global mean (``spread[3]``): its entries are a loop over that row of the summand (and
    U's entry through the global mean), so the lines do not grow with the rows' length."""
    module = module_of(7, 20, "row_of_global", scaled=False)
    assert getattr(module, "NO_JACOBIAN", None) is None and module.N_LOWRANK == 2
    assert "d(Communities.states.v[3])/d(Communities.states.v[3])" in Path(module.__file__).read_text()  # element form
    for seed in (1, 2):
        t, y, p = random_point(module, seed)
        assert relative(structured(module, t, y, p), central_differences(module, t, y, p)) < 1e-7
    assert functions(module) == functions(module_of(7, 100, "row_of_global", scaled=False))


@pytest.mark.slow
def test_the_element_form_levels_match_dynode_and_rodas4_reaches_it() -> None:
    make = lambda backend: build_simulation(MODEL, backend, "build", 12, 10, "row_of_global", False)  # noqa: E731
    assert_same_runs(run(make("dyngen"), "dyngen", 2.0, 0.5), run(make("dynode"), "dynode", 2.0, 0.5))
    ours = run(make("dyngen"), "dyngen", 2.0, 0.5, integrator="rodas4", rtol=1e-10, atol=1e-12)
    theirs = run(make("dynode"), "dynode", 2.0, 0.5, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ours.observed_y, theirs.observed_y, rtol=1e-6, atol=1e-8)


def test_row_sums_of_the_column_means_have_the_jacobian_through_them() -> None:
    """A sum along an axis whose summand reads another one at a cell that moves along the
    reduced axis (each row weighted by every column's mean): it used to have no Jacobian."""
    module = module_of(12, 80, "cross")  # (with 10 columns each column's mean is read at a constant)
    assert getattr(module, "NO_JACOBIAN", None) is None
    jacobians_match_finite_differences(module)
