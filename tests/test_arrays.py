"""Large vector states in array form (issue 4): loops over the vector, not a line per element.

Checked against independent references:

- dynode 0.4 running the same model files (``examples/reaction_diffusion.py`` with
  500-point vectors, ``tests/arrays_model.py``) within 1e-9 relative;
- the element form of the same model (``Simulation(arrays=False)``): rhs, Jacobian
  and observed signals at random points, and the trajectories;
- central finite differences of the generated rhs for the Jacobian (bands, columns
  and the chain rule through another system's output);
- the module's shape: the same loops and lines for 1,000 and 100,000 points.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dyngen
from dyngen.errors import DyngenError, TraceError
from dyngen.ir import BuildOptions
from dyngen.pipeline import build
from dynode_compare import Run, assert_same_runs, build_simulation, load_model_source, run, run_both
from finite_differences import central_differences

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "reaction_diffusion.py"
MODELS = Path(__file__).resolve().parent / "arrays_model.py"


def simulation(path: Path, builder: str, *args: Any, arrays: bool = True) -> Any:
    sim = build_simulation(path, "dyngen", builder, *args)
    sim.arrays = arrays
    return sim


def module_of(path: Path, builder: str, n: int, arrays: bool = True) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dyngen.DyngenWarning)
        return simulation(path, builder, n, arrays=arrays).compile().module


def relative(actual: np.ndarray, expected: np.ndarray) -> float:
    """Largest difference relative to the largest magnitude (vectors: normwise)."""
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300))


def evaluate(module: Any, t: float, y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dy = np.full(module.N_STATES, np.nan)
    module.rhs(t, y, p, dy)
    J = np.full((module.N_STATES, module.N_STATES), np.nan)
    module.jac(t, y, p, J)
    out = np.full(module.N_OBSERVED, np.nan)
    module.observe(t, y, p, out)
    return dy, J, out


def long_loops(lines: list[str]) -> list[str]:
    """The ``for i in range(...)`` lines of a function that run over 50 or more elements."""
    found = []
    for line in lines:
        match = re.fullmatch(r"\s*for i in range\((\d+)(?:, (\d+))?\):", line)
        if match:
            start, stop = (0, int(match[1])) if match[2] is None else (int(match[1]), int(match[2]))
            if stop - start >= 50:
                found.append(line.strip())
    return found


def random_point(module: Any, seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = module.DEFAULT_STATES + rng.normal(0.0, 0.3, module.N_STATES)
    p = module.DEFAULT_PARAMETERS * rng.uniform(0.8, 1.2, module.N_PARAMETERS)
    return 1.3, y, p


def assert_series_close(ours: Run, theirs: Run, states: float = 1e-9) -> None:
    """States within ``states`` of dynode's (normwise per vector and sample); ders and
    outputs within 1e-6: a Laplacian multiplies the states' last-digit differences by
    1/dx^2."""
    assert np.array_equal(ours.observed_t, theirs.observed_t)
    assert relative(ours.observed_y, theirs.observed_y) < states
    for path in ours.paths:
        assert sorted(ours.series[path]) == sorted(theirs.series[path])
        for key, expected in theirs.series[path].items():
            bound = states if key.startswith(("states.", "inputs.", "time")) else 1e-6
            assert relative(ours.series[path][key], expected) < bound, (path, key)


# ----------------------------------------------------------------------------- against dynode


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["dopri5", "dop853"])
def test_reaction_diffusion_with_500_points_matches_dynode(integrator: str) -> None:
    # Tight tolerances: with dynode's (rtol 1e-6) a step that is accepted or rejected by
    # rounding (both compute the same maths in another order) moves the result by ~rtol.
    ours, theirs = run_both(lambda backend: build_simulation(EXAMPLE, backend, "build", 500), 10.0, 0.5,
                            integrator=integrator, rtol=1e-10, atol=1e-12)  # fmt: skip
    assert_series_close(ours, theirs)


@pytest.mark.slow
def test_lattice_with_rolls_where_clip_and_a_coupled_system_matches_dynode() -> None:
    ours, theirs = run_both(lambda backend: build_simulation(MODELS, backend, "build_lattice", 300), 5.0, 0.1,
                            rtol=1e-10, atol=1e-12)  # fmt: skip
    # At these tolerances the lattice's error estimates are at rounding level: a
    # rounding difference (the rhs's order of operations, the error norm's order of
    # additions) picks other step sizes, and the two runs differ by their global
    # errors, a few rtol (2.8e-9 measured against dynode).
    assert_series_close(ours, theirs, states=1e-8)


# ----------------------------------------------------------------------------- against the element form


@pytest.mark.slow
@pytest.mark.parametrize(
    ("path", "builder", "n"),  # n: the smallest size whose vectors all stay in array form (ARRAY_MIN)
    [(EXAMPLE, "build", 70), (MODELS, "build_lattice", 64), (MODELS, "build_springs_and_bank", 70)],
    ids=["gray_scott", "lattice", "springs_and_bank"],
)
def test_array_and_element_forms_compute_the_same_functions(path: Path, builder: str, n: int) -> None:
    arrays, elements = module_of(path, builder, n), module_of(path, builder, n, arrays=False)
    assert long_loops(_functions(Path(arrays.__file__).read_text())["rhs"])
    assert not long_loops(_functions(Path(elements.__file__).read_text())["rhs"])
    # The element form may pack the states of its loops (layout.pack_states): y_e = y_a[to_e]
    to_e = np.empty(arrays.N_STATES, dtype=np.intp)
    assert list(arrays.STATES) == list(elements.STATES)
    for path, signals in arrays.STATES.items():
        assert list(signals) == list(elements.STATES[path])
        for key, (start, stop, shape) in signals.items():
            e_start, e_stop, e_shape = elements.STATES[path][key]
            assert shape == e_shape
            to_e[e_start:e_stop] = np.arange(start, stop)
    assert np.array_equal(np.sort(to_e), np.arange(arrays.N_STATES))
    assert elements.STATE_NAMES == tuple(arrays.STATE_NAMES[i] for i in to_e)
    assert arrays.OBSERVED_NAMES == elements.OBSERVED_NAMES
    assert np.array_equal(arrays.DEFAULT_STATES[to_e], elements.DEFAULT_STATES)
    assert np.array_equal(arrays.DEFAULT_PARAMETERS, elements.DEFAULT_PARAMETERS)
    for seed in range(3):
        t, y, p = random_point(arrays, seed)
        dy_a, J_a, out_a = evaluate(arrays, t, y, p)
        dy_e, J_e, out_e = evaluate(elements, t, y[to_e], p)
        assert relative(dy_a[to_e], dy_e) < 1e-13
        assert relative(J_a[np.ix_(to_e, to_e)], J_e) < 1e-13
        assert relative(out_a, out_e) < 1e-13
        # the sparse pattern holds every non-zero of the element form's Jacobian
        pattern = np.zeros_like(J_a, dtype=bool)
        pattern[arrays.JAC_ROWS, arrays.JAC_COLS] = True
        assert not np.any(J_e[~pattern[np.ix_(to_e, to_e)]])


@pytest.mark.slow
def test_array_and_element_forms_give_the_same_trajectories() -> None:
    runs = [run(simulation(MODELS, "build_lattice", 100, arrays=arrays), "dyngen", 3.0, 0.1) for arrays in (True, False)]
    assert relative(runs[0].observed_y, runs[1].observed_y) < 1e-10
    for key, values in runs[1].series["1:Lattice"].items():
        assert relative(runs[0].series["1:Lattice"][key], values) < 1e-10, key


@pytest.mark.slow
def test_jacobian_of_the_loops_matches_finite_differences() -> None:
    module = module_of(MODELS, "build_lattice", 70)
    t, y, p = random_point(module, 7)
    y[module.STATES["Lattice"]["phase"][0]] = 0.2 - t  # the clipped drive inside its bounds
    _, J, _ = evaluate(module, t, y, p)
    fd = central_differences(module, t, y, p)
    assert relative(J, fd) < 1e-6
    driver_z = module.STATES["Driver"]["z"][0]
    assert np.any(J[2:, driver_z] != 0)  # the chain rule through the connected gain


# ----------------------------------------------------------------------------- the module's shape


def _functions(text: str) -> dict[str, list[str]]:
    out = {}
    for name in ("rhs", "jac_values", "observe"):
        body = text.split(f"\ndef {name}(")[1].split("\n\n\n")[0]
        out[name] = body.splitlines()
    return out


@pytest.mark.slow
def test_the_module_is_the_same_loops_for_1000_and_100000_points(tmp_path: Path) -> None:
    texts = {}
    for n in (1000, 100_000):
        model = load_model_source(EXAMPLE, "dyngen")
        sim = model.build(n)
        result = build(sim.systems, name=f"gs{n}", source_root=str(ROOT / "examples"), model_file=EXAMPLE.name,
                       options=BuildOptions(output_dir=str(tmp_path)))  # fmt: skip
        assert result.flat.n_states == 2 * n
        texts[n] = _functions(result.source.text)
        assert result.kernel.jac_nnz == len(result.module.JAC_ROWS) == len(result.module.JAC_COLS)
    small, large = texts[1000], texts[100_000]
    for name in small:
        assert len(small[name]) == len(large[name]) < 120, name
        assert sum("for i in range(" in line for line in large[name]) >= 1
    assert any("for i in range(1, 99999):" in line for line in large["rhs"])


# ----------------------------------------------------------------------------- what the array form cannot express


@pytest.mark.slow
def test_an_unsupported_operation_on_a_small_vector_falls_back_to_the_element_form_with_a_warning() -> None:
    with pytest.warns(dyngen.DyngenWarning, match=r"(?s)traced element by element.*item assignment"):
        ours, theirs = run_both(lambda backend: build_simulation(MODELS, backend, "build_filled", 100), 2.0, 0.1)
    assert_same_runs(ours, theirs)


@pytest.mark.slow
def test_a_vector_passed_between_systems_is_composed_into_the_readers_loops() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", dyngen.DyngenWarning)  # no fallback to the element form
        ours, theirs = run_both(lambda backend: build_simulation(MODELS, backend, "build_shared", 80), 2.0, 0.1)
    assert_same_runs(ours, theirs)
    module = module_of(MODELS, "build_shared", 80)
    t, y, p = random_point(module, 5)
    dy, J, out = evaluate(module, t, y, p)
    u, w = y[:80], y[80:]
    assert relative(dy, np.concatenate((-u, 2.0 * u - w))) < 1e-15
    expected = np.zeros((160, 160))
    expected[np.arange(80), np.arange(80)] = -1.0
    expected[80 + np.arange(80), np.arange(80)] = 2.0
    expected[80 + np.arange(80), 80 + np.arange(80)] = -1.0
    assert np.array_equal(J, expected)


def test_a_vector_read_before_it_is_computed_is_a_clear_error_at_scale(tmp_path: Path) -> None:
    sim = build_simulation(MODELS, "dyngen", "build_shared", 3000, False)
    with pytest.raises(TraceError, match=r"(?s)reads the large array Source\.outputs\.u before.*make the writer run first"):
        build(sim.systems, name="late", source_root=str(MODELS.parent), model_file=MODELS.name,
              options=BuildOptions(output_dir=str(tmp_path)))  # fmt: skip


def test_an_unsupported_operation_on_a_large_vector_is_a_clear_error(tmp_path: Path) -> None:
    sim = build_simulation(MODELS, "dyngen", "build_filled", 5000)
    with pytest.raises(TraceError, match=r"item assignment to a traced large array") as caught:
        build(sim.systems, name="large", source_root=str(MODELS.parent), model_file=MODELS.name,
              options=BuildOptions(output_dir=str(tmp_path)))  # fmt: skip
    message = str(caught.value)
    assert "arrays_model.py:" in message and "do_step" in message and "np.concatenate" in message
    assert "cannot be traced element by element in reasonable time" in message
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_sums_over_a_large_vector_are_loops_and_match_dynode() -> None:
    """np.mean, np.dot with a parameter vector and @: one accumulation loop each; the
    derivatives then depend on every element: the Jacobian is a sparse part plus one
    low-rank term per sum (J = S + U V^T, tests/test_lowrank.py)."""
    ours, theirs = run_both(lambda backend: build_simulation(MODELS, backend, "build_summed", 3000), 2.0, 0.1,
                            rtol=1e-10, atol=1e-12)  # fmt: skip
    assert_series_close(ours, theirs)
    sim = simulation(MODELS, "build_summed", 3000)
    module = sim.compile().module
    functions = _functions(Path(module.__file__).read_text())
    loops = [line.strip() for line in functions["rhs"] if line.strip().startswith("for i in range(")]
    assert loops == ["for i in range(3000):"] * 2 + ["for i in range(1, 2999):"]  # 2 sums, the interior
    assert any(line.strip() == "r2 = r2 + y[i]**2" for line in functions["observe"])  # u @ u
    assert getattr(module, "NO_JACOBIAN", None) is None and module.N_LOWRANK == 2  # the mean and the dot
    assert module.JAC_NNZ < 4 * module.N_STATES  # S: the stencil and the diagonal, not the dense coupling
    stiff_run = simulation(MODELS, "build_summed", 3000)
    stiff_run.simulate(0.1, 0.1, integrator="rodas4", rtol=1e-9, atol=1e-11)  # sparse LU + Woodbury
    sim.simulate(0.1, 0.1, integrator="dop853", rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(stiff_run._model.gather_states(), sim._model.gather_states(), rtol=1e-7, atol=1e-9)


@pytest.mark.slow
def test_a_rod_in_array_form_coupled_to_heaters_matches_dynode() -> None:
    """tests/kernels_model.py's rod (500 cells, its mean an output: a sum) with 6 heater
    systems that read single cells and heat the rod through a connection."""
    kernels_model = Path(__file__).resolve().parent / "kernels_model.py"
    ours, theirs = run_both(lambda backend: build_simulation(kernels_model, backend, "build_rod_with_probes", 500, 6),
                            5.0, 0.1, rtol=1e-10, atol=1e-12)  # fmt: skip
    assert_series_close(ours, theirs)
    module = simulation(kernels_model, "build_rod_with_probes", 500).compile().module
    text = Path(module.__file__).read_text()
    assert "for i in range(1, 499):" in text and "sum over 500 elements" in text


def test_integrators_with_a_dense_jacobian_refuse_huge_models() -> None:
    sim = build_simulation(EXAMPLE, "dyngen", "build", 6000)  # 12,000 states
    with pytest.raises(DyngenError, match=r"'vode' works with the dense 12000 x 12000 Jacobian.*'rodas4'.*'BDF'"):
        sim.simulate(0.1, 0.1, integrator="vode")  # rodas4 factorises it sparse (tests/test_sparse_rodas4.py)


@pytest.mark.slow
def test_solve_ivp_lsoda_gets_a_dense_jacobian_and_bdf_a_sparse_one() -> None:
    """scipy's LSODA accepts only a dense Jacobian (it failed for 100+ states before)."""
    def final(method: str, **tolerances: float) -> np.ndarray:
        sim = simulation(EXAMPLE, "build", 100)
        sim.simulate(1.0, 0.5, integrator=method, **tolerances)
        gray_scott = sim.systems[0]
        return np.concatenate((gray_scott.states.u, gray_scott.states.v))

    expected = final("dop853", rtol=1e-12, atol=1e-14)
    for method in ("LSODA", "BDF"):
        assert relative(final(method, rtol=1e-8, atol=1e-10), expected) < 1e-5, method


class Shifted(dyngen.System):
    def __init__(self) -> None:
        super().__init__()
        self.states.u = np.linspace(0.0, 1.0, 70)

    def do_step(self, time):
        u = self.states.u
        self.ders.u = np.hstack((u[1:], 0.5)) - np.hstack((0.25, u[:-1])) * u


def test_hstack_takes_scalars_as_numpy_does() -> None:
    sim = dyngen.Simulation()
    sim.add_system(Shifted())
    module = sim.compile().module
    y = np.random.default_rng(2).random(70)
    dy = np.empty(70)
    module.rhs(0.0, y, module.DEFAULT_PARAMETERS, dy)
    assert relative(dy, np.hstack((y[1:], 0.5)) - np.hstack((0.25, y[:-1])) * y) < 1e-15
    assert long_loops(_functions(Path(module.__file__).read_text())["rhs"])
