"""n-D arrays in array form (issue 15): 2-D/3-D grids and matrices traced whole, emitted as loop nests.

Checked against independent references:

- dynode 0.4 running the same model files (``tests/grids_model.py``: Gray–Scott on a
  periodic grid, a heat equation with padded walls, broadcasting and reductions, a 3-D
  state, all-to-all Kuramoto written three ways), within 1e-8 relative;
- the element form of the same model (``Simulation(arrays=False)``, Gray–Scott): rhs
  and observed signals at random points;
- central finite differences of the generated rhs for the Jacobian (2-D and 3-D
  stencils; all-to-all coupling through sums along an axis, ``@`` and ``np.einsum``);
- the module's shape: the same lines for a 20x16 and a 200x160 grid.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dyngen
from dyngen.errors import TraceError
from dyngen.ir import BuildOptions
from dyngen.pipeline import build
from dynode_compare import assert_same_runs, build_simulation, load_model_source, run
from finite_differences import central_differences

MODELS = Path(__file__).resolve().parent / "grids_model.py"


def module_of(builder: str, *args: Any, arrays: bool = True) -> Any:
    sim = build_simulation(MODELS, "dyngen", builder, *args)
    sim.arrays = arrays
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dyngen.DyngenWarning)
        return sim.compile().module


def relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300))


def random_point(module: Any, seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = module.DEFAULT_STATES + rng.normal(0.0, 0.3, module.N_STATES)
    p = module.DEFAULT_PARAMETERS * rng.uniform(0.8, 1.2, module.N_PARAMETERS)
    return 1.3, y, p


def functions(text: str) -> dict[str, list[str]]:
    return {name: text.split(f"\ndef {name}(")[1].split("\n\n\n")[0].splitlines() for name in ("rhs", "jac_values", "observe")}


# ----------------------------------------------------------------------------- against dynode


@pytest.mark.slow
@pytest.mark.parametrize(
    ("builder", "args"),
    [
        ("build_gray_scott", (12, 10)),
        ("build_grid_ops", (12, 10)),
        ("build_cube", (8,)),
        ("build_kuramoto", (70, "broadcast")),
        ("build_kuramoto", (70, "matrix")),
        ("build_kuramoto", (70, "einsum")),
    ],
    ids=["gray_scott", "grid_ops", "cube", "kuramoto_broadcast", "kuramoto_matrix", "kuramoto_einsum"],
)
def test_grid_models_match_dynode(builder: str, args: tuple) -> None:
    ours = run(build_simulation(MODELS, "dyngen", builder, *args), "dyngen", 2.0, 0.5)
    theirs = run(build_simulation(MODELS, "dynode", builder, *args), "dynode", 2.0, 0.5)
    assert_same_runs(ours, theirs)


@pytest.mark.slow
def test_small_matrices_in_the_element_form_match_dynode() -> None:
    """N = 7: every signal is under 64 elements, so np.max/np.mean along an axis, @ and
    broadcasting run in the element form."""
    ours = run(build_simulation(MODELS, "dyngen", "build_kuramoto", 7, "matrix"), "dyngen", 2.0, 0.5)
    theirs = run(build_simulation(MODELS, "dynode", "build_kuramoto", 7, "matrix"), "dynode", 2.0, 0.5)
    assert_same_runs(ours, theirs)


# ----------------------------------------------------------------------------- against the element form


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["build_gray_scott"])  # grid_ops: 3 minutes in the element form
def test_array_and_element_forms_compute_the_same_functions(builder: str) -> None:
    arrays, elements = module_of(builder, 12, 10), module_of(builder, 12, 10, arrays=False)
    text = Path(arrays.__file__).read_text()
    assert any(line.strip().startswith("for j in range(") for line in functions(text)["rhs"])  # a loop nest
    assert list(arrays.STATES) == list(elements.STATES)
    to_e = np.empty(arrays.N_STATES, dtype=np.intp)
    for path, signals in arrays.STATES.items():
        for key, (start, stop, shape) in signals.items():
            e_start, e_stop, e_shape = elements.STATES[path][key]
            assert shape == e_shape
            to_e[e_start:e_stop] = np.arange(start, stop)
    assert arrays.OBSERVED_NAMES == elements.OBSERVED_NAMES
    for seed in range(3):
        t, y, p = random_point(arrays, seed)
        dy_a, dy_e = np.full(arrays.N_STATES, np.nan), np.full(arrays.N_STATES, np.nan)
        arrays.rhs(t, y, p, dy_a)
        elements.rhs(t, y[to_e], p, dy_e)
        assert relative(dy_a[to_e], dy_e) < 1e-13
        out_a, out_e = np.full(arrays.N_OBSERVED, np.nan), np.full(arrays.N_OBSERVED, np.nan)
        arrays.observe(t, y, p, out_a)
        elements.observe(t, y[to_e], p, out_e)
        assert relative(out_a, out_e) < 1e-13


# ----------------------------------------------------------------------------- the Jacobian


@pytest.mark.slow
@pytest.mark.parametrize(("builder", "args"), [("build_gray_scott", (12, 10)), ("build_cube", (8,))])
def test_jacobian_of_grid_stencils_matches_finite_differences(builder: str, args: tuple) -> None:
    module = module_of(builder, *args)
    assert getattr(module, "NO_JACOBIAN", None) is None
    t, y, p = random_point(module, 3)
    J = np.full((module.N_STATES, module.N_STATES), np.nan)
    module.jac(t, y, p, J)
    assert relative(J, central_differences(module, t, y, p)) < 1e-6
    # sparse: a 5-point stencil of two species (and the reaction's coupling): 6 entries a row
    if builder == "build_gray_scott":
        assert module.JAC_NNZ == 6 * module.N_STATES
        assert len(set(zip(module.JAC_ROWS.tolist(), module.JAC_COLS.tolist()))) == module.JAC_NNZ


@pytest.mark.slow
@pytest.mark.parametrize("form", ["broadcast", "matrix", "einsum"])
def test_jacobian_through_sums_along_an_axis_matches_finite_differences(form: str) -> None:
    module = module_of("build_kuramoto", 70, form)
    assert getattr(module, "NO_JACOBIAN", None) is None
    t, y, p = random_point(module, 5)
    J = np.full((module.N_STATES, module.N_STATES), np.nan)
    module.jac(t, y, p, J)
    assert relative(J, central_differences(module, t, y, p)) < 1e-6
    assert np.count_nonzero(J) == 70 * 70  # all-to-all: dense, as the model is


@pytest.mark.slow
def test_a_sum_over_a_whole_grid_read_by_a_derivative_is_a_low_rank_jacobian_term() -> None:
    """np.mean(T) and np.sum(T[1:-1, 1:-1]) read by derivatives: J = S + U V^T, one
    term per sum (tests/test_lowrank.py); it used to be "no Jacobian"."""
    module = module_of("build_grid_ops", 12, 10)
    assert getattr(module, "NO_JACOBIAN", None) is None and module.N_LOWRANK == 2
    t, y, p = random_point(module, 4)
    J = np.full((module.N_STATES, module.N_STATES), np.nan)
    module.jac(t, y, p, J)
    assert relative(J, central_differences(module, t, y, p)) < 1e-6
    stiff_run = build_simulation(MODELS, "dyngen", "build_grid_ops", 12, 10)
    explicit = build_simulation(MODELS, "dyngen", "build_grid_ops", 12, 10)
    stiff_run.simulate(1.0, 0.5, integrator="rodas4", rtol=1e-9, atol=1e-11)
    explicit.simulate(1.0, 0.5, integrator="dop853", rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(stiff_run.systems[0].states.T, explicit.systems[0].states.T, rtol=1e-6, atol=1e-8)


# ----------------------------------------------------------------------------- the module's shape


def test_the_module_is_the_same_loops_for_a_small_and_a_large_grid(tmp_path: Path) -> None:
    texts, seconds = {}, {}
    for n, m in ((20, 16), (200, 160)):
        sim = load_model_source(MODELS, "dyngen").build_gray_scott(n, m)
        start = time.perf_counter()
        result = build(sim.systems, name=f"gs{n}", source_root=str(MODELS.parent), model_file=MODELS.name,
                       options=BuildOptions(output_dir=str(tmp_path)))  # fmt: skip
        seconds[n] = time.perf_counter() - start
        assert result.flat.n_states == 2 * n * m
        assert result.kernel.jac_nnz == len(result.module.JAC_ROWS) == 6 * 2 * n * m
        texts[n] = functions(result.source.text)
    small, large = texts[20], texts[200]
    for name in small:
        assert len(small[name]) == len(large[name]) < 160, name
    assert any("for j in range(1, 159):" in line for line in large["rhs"])
    assert seconds[200] < 10 * seconds[20] + 5  # not one expression per element


def test_the_cube_is_the_same_loops_at_two_sizes() -> None:
    """A stack of matrices @ a matrix and np.diff(..., prepend=) stay in the array form
    (they used to fall back to the element form, one line per cell)."""
    texts = {}
    for n in (16, 40):  # (from 16: q[0] has 64 elements, the array form's threshold)
        sim = build_simulation(MODELS, "dyngen", "build_cube", n)
        with warnings.catch_warnings():
            warnings.simplefilter("error", dyngen.DyngenWarning)  # no fallback to the element form
            texts[n] = functions(Path(sim.compile().module.__file__).read_text())
    assert {k: len(v) for k, v in texts[16].items()} == {k: len(v) for k, v in texts[40].items()}


# ----------------------------------------------------------------------------- what the array form refuses


def test_a_product_with_a_stack_of_matrices_on_the_right_names_the_einsum_to_write(tmp_path: Path) -> None:
    stack = np.ones((2, 60, 60))  # a constant (closure value)

    class Stacked(dyngen.System):
        def __init__(self) -> None:
            super().__init__()
            self.states.u = np.ones((60, 60))
            self.ders.u = np.zeros((60, 60))

        def do_step(self, time: float) -> None:
            self.ders.u = -(self.states.u @ stack).sum(axis=0)

    sim = dyngen.Simulation()
    sim.add_system(Stacked())
    with pytest.raises(TraceError, match=r"(?s)right operand of more than 2 dimensions.*np.einsum\('ij,kjm->kim', a, b\)"):
        build(sim.systems, name="stacked", source_root=str(Path(__file__).parent), model_file=Path(__file__).name,
              options=BuildOptions(output_dir=str(tmp_path / "out")))  # fmt: skip


def test_item_assignment_on_a_large_grid_fails_fast_with_what_to_write(tmp_path: Path) -> None:
    class Filled(dyngen.System):
        def __init__(self) -> None:
            super().__init__()
            self.states.u = np.ones((300, 300))
            self.ders.u = np.zeros((300, 300))

        def do_step(self, time: float) -> None:
            u = self.states.u
            lap = np.zeros_like(u)
            lap[1:-1, :] = u[2:, :] - 2 * u[1:-1, :] + u[:-2, :]
            self.ders.u = lap

    sim = dyngen.Simulation()
    sim.add_system(Filled())
    start = time.perf_counter()
    with pytest.raises(TraceError, match=r"(?s)item assignment to a traced large array of 2 dimensions.*w = np.pad\(u, 1, mode='edge'\)") as caught:
        build(sim.systems, name="filled", source_root=str(Path(__file__).parent), model_file=Path(__file__).name,
              options=BuildOptions(output_dir=str(tmp_path / "out")))  # fmt: skip
    assert time.perf_counter() - start < 20
    assert "test_grids.py:" in str(caught.value) and "do_step" in str(caught.value)


def test_a_large_fresh_array_filled_element_by_element_fails_fast(tmp_path: Path) -> None:
    class Looped(dyngen.System):
        def __init__(self) -> None:
            super().__init__()
            self.states.u = np.ones((200, 200))
            self.ders.u = np.zeros((200, 200))

        def do_step(self, time: float) -> None:
            u = self.states.u
            lap = np.zeros((200, 200))
            for i in range(1, 199):
                for j in range(200):
                    lap[i, j] = u[i + 1, j] - 2 * u[i, j] + u[i - 1, j]
            self.ders.u = lap

    sim = dyngen.Simulation()
    sim.add_system(Looped())
    start = time.perf_counter()
    with pytest.raises(TraceError, match=r"(?s)np.zeros\(...\) makes a fresh array of 40,000 elements.*np.roll/np.pad") as caught:
        build(sim.systems, name="looped", source_root=str(Path(__file__).parent), model_file=Path(__file__).name,
              options=BuildOptions(output_dir=str(tmp_path / "out")))  # fmt: skip
    assert time.perf_counter() - start < 20
    assert "test_grids.py:" in str(caught.value)
