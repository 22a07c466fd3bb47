"""The Jacobian through sums over whole arrays (issue 15): J = S + U Vᵀ.

A derivative that reads ``u.mean()`` or ``np.sum(w * u**2)`` depends on every
element; dyngen emits the sparse part ``S`` (``jac_values``) and one low-rank term per
sum (``jac_lowrank``: ``U[:, k] = d(dy)/d(sum k)``, ``V[:, k] = d(sum k)/dy``).
Checked against independent references:

- central finite differences of the generated rhs (S + U Vᵀ assembled by hand from
  the pattern, and the dense ``jac`` for the whole-array sums), for a 1-D mean-field
  Allen–Cahn with two sums and a 2-D grid with a whole-grid mean and a sum over a
  sub-grid;
- scipy's ``solve_ivp`` (DOP853 at rtol 1e-10) on the same equations written by hand,
  for rodas4 on the sparse LU with Woodbury and for solve_ivp(BDF) through dyngen;
- np.max/np.min (one-hot of the first arg-max) and np.prod (products of the other
  factors, exact with a zero factor) over whole arrays: against finite differences on a
  12 x 10 grid and an 80-vector, against dynode running the same file, and rodas4/BDF on
  that Jacobian against dynode's dopri5;
- reductions whose summands read other reductions (a variance, two deep): the chain
  rule through the columns of V, against finite differences;
- a reduction along an axis read at another cell (``np.roll(u.max(axis=1), 1)``): dense
  blocks, shifted (nested reductions: tests/test_nested_reductions.py).

A sum along an axis broadcast back over the grid (``u.mean(axis=1)[:, None]``) is not
low rank: its entries are dense blocks (one per row) in the sparse part; so are a
maximum, minimum or product along an axis (weighted by the one-hot of each row's
arg-max, or the products of its other factors), checked against finite differences,
dynode, and rodas4 against a tight dynode run.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.integrate import solve_ivp
from scipy.sparse import coo_matrix

import dyngen
from dyngen import DyngenError, Recorder
from dyngen.runtime import stiff
from dyngen.runtime.sparse_stiff import LowRankSolve
from dynode_compare import assert_same_runs, build_simulation
from dynode_compare import run as run_compare
from finite_differences import central_differences, random_point, relative

MODELS = Path(__file__).resolve().parent / "lowrank_model.py"


def simulation(builder: str, *args: Any) -> Any:
    return build_simulation(MODELS, "dyngen", builder, *args)


def module_of(builder: str, *args: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dyngen.DyngenWarning)
        return simulation(builder, *args).compile().module


def sparse_plus_lowrank(module: Any, t: float, y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """S (from jac_values and the pattern), U and V, as the sparse solvers see them."""
    n = module.N_STATES
    values = np.empty(module.JAC_NNZ)
    module.jac_values(t, y, p, values)
    S = coo_matrix((values, (module.JAC_ROWS, module.JAC_COLS)), shape=(n, n)).toarray()
    U, V = np.full((n, module.N_LOWRANK), np.nan), np.full((n, module.N_LOWRANK), np.nan)
    module.jac_lowrank(t, y, p, U, V)
    return S, U, V


@pytest.mark.slow
@pytest.mark.parametrize(
    ("builder", "args", "rank", "blocks"),
    [
        ("build_mean_field", (80,), 2, 0),
        ("build_grid_mean", (12, 10), 2, 0),
        ("build_grid_mean", (12, 10, 1), 1, 12 * 10 * 10),  # row means: a dense 10 x 10 block per row in S
        ("build_grid_mean", (12, 10, 0), 1, 10 * 12 * 12),  # column means: a 12 x 12 block per column
    ],
    ids=["mean_field_1d", "grid_mean_2d", "row_means_2d", "column_means_2d"],
)
def test_the_jacobian_through_sums_matches_finite_differences(builder: str, args: tuple, rank: int, blocks: int) -> None:
    module = module_of(builder, *args)
    assert getattr(module, "NO_JACOBIAN", None) is None and module.N_LOWRANK == rank
    n = module.N_STATES
    assert module.JAC_NNZ - blocks < 6 * n  # S: the stencil (and the blocks of sums along an axis), not the dense coupling
    for seed in (1, 2):
        t, y, p = random_point(module, seed)
        reference = central_differences(module, t, y, p)
        if not blocks:  # the dense jac scatters the same values (compiling it costs as much again)
            J = np.full((n, n), np.nan)
            module.jac(t, y, p, J)
            assert relative(J, reference) < 1e-7
        S, U, V = sparse_plus_lowrank(module, t, y, p)
        assert relative(S + U @ V.T, reference) < 1e-7
        assert np.count_nonzero(reference) > 0.6 * n * n  # the sums really couple (almost) everything


def test_the_low_rank_terms_are_loops_whatever_the_size() -> None:
    texts = [Path(module_of("build_mean_field", n).__file__).read_text() for n in (300, 600)]
    bodies = [text.split("\ndef lowrank_values(")[1].split("\n\n\n")[0] for text in texts]
    assert len(bodies[0].splitlines()) == len(bodies[1].splitlines()) < 40
    assert "for i in range(600):" in bodies[1] and "V[i, " in bodies[1]


def test_the_woodbury_solve_is_the_dense_solve() -> None:
    from scipy.sparse import csc_matrix
    from scipy.sparse.linalg import splu

    rng = np.random.default_rng(3)
    n, r = 50, 2
    A = np.diag(rng.uniform(5.0, 6.0, n)) + np.diag(rng.normal(0, 1, n - 1), 1) + np.diag(rng.normal(0, 1, n - 1), -1)
    U, V, b = rng.normal(0, 0.3, (n, r)), rng.normal(0, 0.3, (n, r)), rng.normal(0, 1, n)
    x = LowRankSolve(splu(csc_matrix(A)), U, V).solve(b)
    np.testing.assert_allclose(x, np.linalg.solve(A - U @ V.T, b), rtol=1e-12, atol=1e-12)


def mean_field_reference(module: Any, p: np.ndarray, y0: np.ndarray, times: np.ndarray) -> np.ndarray:
    """DOP853 at rtol 1e-10 on the mean-field equations written by hand (y = [u, e])."""
    n = module.N_STATES - 1
    D, k, w = p[0], p[1], p[2:]
    u_at, e_at = module.STATES["MeanField"]["u"][:2], module.STATES["MeanField"]["e"][:2]
    assert (u_at, e_at) == ((0, n), (n, n + 1))

    def rhs(t: float, y: np.ndarray) -> np.ndarray:
        u, e = y[:n], y[n]
        energy = np.sum(w * u**2) / n
        du = D * (np.roll(u, 1) - 2 * u + np.roll(u, -1)) + u - u**3 - k * (u - u.mean()) - 0.1 * energy * u
        return np.append(du, energy - e)

    solution = solve_ivp(rhs, (0.0, times[-1]), y0, method="DOP853", rtol=1e-10, atol=1e-12, t_eval=times)
    assert solution.success
    return solution.y.T


def run(sim: Any, integrator: str, duration: float, **options: float) -> tuple[np.ndarray, np.ndarray]:
    system = sim.systems[0]
    recorder = Recorder()
    recorder.store(system, "states.u")
    recorder.store(system, "states.e")
    sim.add_observer(recorder)
    sim.simulate(duration, duration / 4, integrator=integrator, **options)
    results = recorder.results[system]
    return np.array(results["time"]), np.hstack((np.array(results["states.u"]), np.array(results["states.e"])[:, None]))


@pytest.mark.slow
@pytest.mark.parametrize(("integrator", "options"), [("rodas4", {}), ("rodas4", {"linear_solver": "krylov"}), ("BDF", {})])
def test_stiff_methods_use_the_low_rank_jacobian_and_reach_the_reference(integrator: str, options: dict) -> None:
    sim = simulation("build_mean_field", 200)  # 201 states: rodas4 on the sparse LU (Woodbury; krylov: also U Vᵀ in products)
    module = sim.compile().module
    assert stiff.uses_sparse_lu(module)
    p, y0 = sim._model.gather_parameters(), sim._model.gather_states()
    times, ours = run(sim, integrator, 2.0, rtol=1e-8, atol=1e-10, **options)
    reference = mean_field_reference(module, p, y0, times)
    np.testing.assert_allclose(ours, reference, rtol=2e-5, atol=2e-6)
    assert np.abs(reference[-1] - reference[0]).max() > 0.3  # the solution moves


@pytest.mark.slow
@pytest.mark.parametrize(
    ("builder", "args", "rank", "min_steps"),
    [("build_mean_field", (200,), 2, 10), ("build_extremes", ((20, 10), "all"), 3, 5), ("build_max_field", (200, True), 2, 5)],
    ids=["sums", "max_min_prod", "variance"],
)
def test_sparse_and_dense_rodas4_take_the_same_steps_with_a_low_rank_part(builder: str, args: tuple, rank: int, min_steps: int) -> None:
    """200 states: the sparse LU with Woodbury on jac_lowrank's U, V against the dense LU
    on jac (S + U Vᵀ), through sums, max/min/prod and a variance."""
    from dyngen.runtime.sparse_stiff import SparseRosenbrockIntegrator

    sim = simulation(builder, *args)
    module, model = sim.compile().module, sim._model
    assert stiff.uses_sparse_lu(module) and module.N_LOWRANK == rank
    p, y0 = model.gather_parameters(), model.gather_states()
    options = {"rtol": 1e-7, "atol": 1e-9}
    dense = stiff.CompiledRosenbrockIntegrator(module, p, 0.0, y0, options, model.state_name)
    ours = SparseRosenbrockIntegrator(module, p, 0.0, y0, options, model.state_name)
    for t_end in (0.5, 2.0):
        dense.advance(t_end)
        ours.advance(t_end)
        np.testing.assert_allclose(ours.y, dense.y, rtol=1e-9, atol=1e-11)
    assert ours.stats[0] == dense.stats[0] > min_steps


def test_what_was_not_derived_has_a_jacobian_now() -> None:
    module = module_of("build_max_field", 100)  # np.max, and (below) a sum of a sum: low-rank terms now
    assert getattr(module, "NO_JACOBIAN", None) is None and module.N_LOWRANK == 1
    shifted = module_of("build_extremes_along_axes", 12, 10, "shifted")  # the previous row's maximum: dense blocks in S
    assert getattr(shifted, "NO_JACOBIAN", None) is None and getattr(shifted, "N_LOWRANK", 0) == 0


@pytest.mark.slow
@pytest.mark.parametrize(("builder", "args", "rank"), [
    ("build_max_field", (100, True), 2), ("build_extremes", ((12, 10), "nested"), 5), ("build_extremes", ((80,), "nested"), 5),
], ids=["variance_1d", "nested_2d", "nested_1d"])  # fmt: skip
def test_the_jacobian_through_reductions_of_reductions_matches_finite_differences(builder: str, args: tuple, rank: int) -> None:
    """A summand that reads another reduction (a variance; a max, sum and prod of
    (u - mean)**2 with the variance inside, two deep): V[:, k] += (d m_k/d m_j) V[:, j]."""
    module = module_of(builder, *args)
    assert getattr(module, "NO_JACOBIAN", None) is None and module.N_LOWRANK == rank
    n = module.N_STATES
    for seed in (1, 2):
        t, y, p = random_point(module, seed)
        reference = central_differences(module, t, y, p)
        J = np.full((n, n), np.nan)
        module.jac(t, y, p, J)
        assert relative(J, reference) < 1e-7
        S, U, V = sparse_plus_lowrank(module, t, y, p)
        assert relative(S + U @ V.T, reference) < 1e-7
        assert np.count_nonzero(reference) == n * n


EXTREMES = [((80,), "max"), ((12, 10), "max"), ((12, 10), "min"), ((12, 10), "amax"), ((12, 10), "amin"),
            ((12, 10), "method_max"), ((80,), "prod"), ((12, 10), "prod"), ((12, 10), "all")]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "op"), EXTREMES, ids=[f"{op}_{len(shape)}d" for shape, op in EXTREMES])
def test_the_jacobian_through_max_min_and_prod_matches_finite_differences(shape: tuple, op: str) -> None:
    """V[:, k] is the one-hot of the first arg-max (arg-min) times the summand's
    derivative there, or the products of the other factors (prod)."""
    module = module_of("build_extremes", shape, op)
    assert getattr(module, "NO_JACOBIAN", None) is None and module.N_LOWRANK == (3 if op == "all" else 1)
    n = module.N_STATES
    assert module.JAC_NNZ < 6 * n
    for seed in (1, 2):
        t, y, p = random_point(module, seed)
        reference = central_differences(module, t, y, p)
        J = np.full((n, n), np.nan)
        module.jac(t, y, p, J)
        assert relative(J, reference) < 1e-7
        S, U, V = sparse_plus_lowrank(module, t, y, p)
        assert relative(S + U @ V.T, reference) < 1e-7
        if op in ("max", "min"):  # one column of the reference is dense: the arg-max's
            extreme = int(np.argmax(y) if op == "max" else np.argmin(y))
            assert np.count_nonzero(V) == 1 and V[extreme, 0] == 1.0
            assert np.count_nonzero(reference[:, extreme]) == n


@pytest.mark.slow
def test_a_product_with_a_zero_factor_has_the_exact_jacobian() -> None:
    """prod(1 + 0.05 u) with one factor exactly 0 (u = -20): the derivative through the
    other factors is 0, through that one the product of the others (no 0/0)."""
    module = module_of("build_extremes", (12, 10), "prod")
    t, y, p = random_point(module, 3)
    for zeros in ([37], [37, 80]):
        y[zeros] = -20.0
        reference = central_differences(module, t, y, p)
        S, U, V = sparse_plus_lowrank(module, t, y, p)
        assert np.all(np.isfinite(V))
        assert relative(S + U @ V.T, reference) < 1e-7
        others = np.prod(np.delete(1.0 + 0.05 * y, 37))
        assert np.count_nonzero(V) == (1 if len(zeros) == 1 else 0)
        if len(zeros) == 1:
            assert V[37, 0] == pytest.approx(0.05 * others, rel=1e-12)


@pytest.mark.slow
@pytest.mark.parametrize(("shape", "op"), [((12, 10), "all"), ((80,), "max")], ids=["all_2d", "max_1d"])
def test_max_min_and_prod_models_match_dynode(shape: tuple, op: str) -> None:
    ours = run_compare(build_simulation(MODELS, "dyngen", "build_extremes", shape, op), "dyngen", 2.0, 0.5)
    theirs = run_compare(build_simulation(MODELS, "dynode", "build_extremes", shape, op), "dynode", 2.0, 0.5)
    assert_same_runs(ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["rodas4", "BDF"])
def test_stiff_methods_with_the_max_min_prod_jacobian_reach_dynode(integrator: str) -> None:
    """rodas4 and BDF on the exact S + U Vᵀ against dynode's dopri5 (both at tight tolerances)."""
    ours = run_compare(build_simulation(MODELS, "dyngen", "build_extremes", (12, 10), "all"), "dyngen", 2.0, 0.5,
                       integrator=integrator, rtol=1e-10, atol=1e-12)  # fmt: skip
    theirs = run_compare(build_simulation(MODELS, "dynode", "build_extremes", (12, 10), "all"), "dynode", 2.0, 0.5,
                         rtol=1e-11, atol=1e-13)  # fmt: skip
    np.testing.assert_allclose(ours.observed_y, theirs.observed_y, rtol=1e-6, atol=1e-8)
    assert np.abs(theirs.observed_y[-1] - theirs.observed_y[0]).max() > 0.05  # the solution moves


@pytest.mark.slow
@pytest.mark.parametrize("op", ["max", "min", "prod", "shifted"])
def test_the_jacobian_through_max_min_prod_along_an_axis_matches_finite_differences(op: str) -> None:
    """Along an axis, broadcast back over the grid (a dense block per row or column in
    S, weighted by the one-hot of each row's arg-max or the products of its other
    factors), read at another row (``np.roll``: shifted blocks) and read at its own cell
    by a vector of the kept axis: no low-rank term."""
    module = module_of("build_extremes_along_axes", 12, 10, op)
    assert getattr(module, "NO_JACOBIAN", None) is None and getattr(module, "N_LOWRANK", 0) == 0
    n = module.N_STATES
    for seed in (1, 2):
        t, y, p = random_point(module, seed)
        reference = central_differences(module, t, y, p)
        J = np.full((n, n), np.nan)
        module.jac(t, y, p, J)
        assert relative(J, reference) < 1e-7
        if op == "max":  # the row maxima: one dense column per row of u (its arg-max)
            u = y[:120].reshape(12, 10)
            first = 10 * np.arange(12) + np.argmax(u, axis=1)
            assert all(np.count_nonzero(reference[10 * r : 10 * r + 10, first[r]]) == 10 for r in range(12))


@pytest.mark.slow
def test_a_product_along_an_axis_with_a_zero_factor_has_the_exact_jacobian() -> None:
    module = module_of("build_extremes_along_axes", 12, 10, "prod")
    t, y, p = random_point(module, 4)
    y[[23, 25, 57]] = -20.0  # factors 1 + 0.05 u exactly 0: one in row 5, two in row 2
    reference = central_differences(module, t, y, p)
    J = np.full((module.N_STATES, module.N_STATES), np.nan)
    module.jac(t, y, p, J)
    assert np.all(np.isfinite(J)) and relative(J, reference) < 1e-7


@pytest.mark.slow
@pytest.mark.parametrize("op", ["max", "prod"])
def test_max_and_prod_along_an_axis_match_dynode_with_rodas4(op: str) -> None:
    """dopri5 against dynode's dopri5 (1e-8), and rodas4 on the exact Jacobian against a tight dynode run."""
    make = lambda backend: build_simulation(MODELS, backend, "build_extremes_along_axes", 12, 10, op)  # noqa: E731
    assert_same_runs(run_compare(make("dyngen"), "dyngen", 2.0, 0.5), run_compare(make("dynode"), "dynode", 2.0, 0.5))
    theirs = run_compare(make("dynode"), "dynode", 2.0, 0.5, rtol=1e-11, atol=1e-13)
    stiff_run = run_compare(make("dyngen"), "dyngen", 2.0, 0.5, integrator="rodas4", rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stiff_run.observed_y, theirs.observed_y, rtol=1e-6, atol=1e-8)
    assert np.abs(theirs.observed_y[-1] - theirs.observed_y[0]).max() > 0.05


def test_scipy_gets_no_dense_jacobian_it_cannot_afford() -> None:
    from dyngen.runtime.integrators import DENSE_MAX_STATES, jacobian_callable

    fake = type("M", (), {"N_STATES": DENSE_MAX_STATES + 1, "N_LOWRANK": 1, "JAC_NNZ": 10})()
    with pytest.raises(DyngenError, match="sums over whole arrays.*rank-1.*'rodas4'"):
        jacobian_callable(fake, np.zeros(1))


@pytest.mark.parametrize("method", ["LSODA", "vode", "lsoda"])
def test_a_dense_method_on_a_large_sparse_plus_low_rank_jacobian_is_told_rodas4(method: str) -> None:
    from dyngen.runtime.integrators import DENSE_MAX_STATES, check_dense_jacobian

    n = DENSE_MAX_STATES + 1
    with pytest.raises(DyngenError, match=rf"'{method}'.*sparse part \(30003 entries\) plus a rank-2 term.*'rodas4' "
                       r"without events.*rank-2 term by the Woodbury identity.*'dopri5'/'dop853'"):  # fmt: skip
        check_dense_jacobian(method, n, 3 * n, lowrank=2)
    with pytest.raises(DyngenError, match=r"use 'rodas4', or solve_ivp's 'BDF'"):  # no low-rank term: as before
        check_dense_jacobian(method, n, 3 * n)
    check_dense_jacobian(method, DENSE_MAX_STATES, 3 * n, lowrank=2)  # affordable: no refusal


@pytest.mark.slow
@pytest.mark.parametrize("method", ["LSODA", "vode"])
def test_a_large_mean_field_model_names_the_methods_that_use_its_low_rank_term(method: str) -> None:
    from dyngen.runtime.integrators import DENSE_MAX_STATES

    sim = simulation("build_mean_field", DENSE_MAX_STATES + 100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dyngen.DyngenWarning)
        module = sim.compile().module
    assert module.N_LOWRANK == 2
    with pytest.raises(DyngenError, match=rf"'{method}'.*plus a rank-2 term U Vᵀ.*'rodas4' without events"):
        sim.simulate(0.01, 0.01, integrator=method)


class _ElementMax(dyngen.System):
    """A 12-element vector (element form: below ARRAY_MIN) whose derivatives read
    np.max and np.min of expressions of every element."""

    def __init__(self) -> None:
        super().__init__()
        self.states.u = np.linspace(-1.0, 1.2, 12)
        self.ders.u = np.zeros(12)

    def do_step(self, time):
        u = self.states.u
        self.ders.u = np.roll(u, 1) - 2.0 * u + np.roll(u, -1) - (u - np.max(u**2)) * np.min(np.cos(u))


@pytest.mark.slow
def test_an_element_form_max_and_min_get_the_first_extremes_derivative(tmp_path) -> None:
    """sympy's own derivative of a Max of n arguments builds a Max of n - 1 per argument
    and variable (minutes of lowering at a few dozen elements); dyngen's is the one-hot of
    the first largest argument, as in the array form."""
    sim = dyngen.Simulation(cache_dir=tmp_path)
    sim.add_system(_ElementMax())
    module = sim.compile().module
    assert getattr(module, "NO_JACOBIAN", None) is None and not getattr(module, "N_LOWRANK", 0)
    n = module.N_STATES
    for seed in (1, 2):
        t, y, p = random_point(module, seed)
        J = np.full((n, n), np.nan)
        module.jac(t, y, p, J)
        assert relative(J, central_differences(module, t, y, p)) < 1e-7
