"""Kernels and the array form combined (issue 15): loops over instances next to array loops.

A model with many copies of a small class and one large array
(``tests/kernels_arrays_model.py``: damped oscillators, each reading one cell of a rod
and the rod's mean, the rod heated by the sum of the oscillators' outputs) gets loops
over the oscillators and loop nests over the rod, in one ``rhs``.  Checked against:

- dynode 0.4 running the same model file (every state, der, input and output);
- the unrolled form (``kernels=False``) of the same model: functions at random points
  and trajectories;
- central finite differences of the generated rhs for the Jacobian (the kernel blocks,
  the rod's bands and the chain rule from the rod's heat to the oscillators' states;
  the low-rank term of the rod's mean, read by the oscillators' loop and the rod's
  cells), and rodas4/BDF on it against dynode's dopri5;
- the module's shape: the same functions, with the same number of lines, for 20
  oscillators and 200 cells as for 40 and 400;
- a model whose loop over instances would have to run both before and after a sum
  over the array: unrolled, with a build notice that says why;
- sums over the rod whose summands read signals of the loops (a lamp's power, a
  thermostat's setpoint, the oscillators' total power): the low-rank term's V through
  them, against finite differences, the unrolled form, dynode, and rodas4/BDF.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dyngen
from dynode_compare import Run, build_simulation, run, run_both
from finite_differences import central_differences

MODEL = Path(__file__).resolve().parent / "kernels_arrays_model.py"


def simulation(*args: Any, kernels: bool = True, builder: str = "build") -> Any:
    sim = build_simulation(MODEL, "dyngen", builder, *args)
    sim.kernels = kernels
    return sim


def module_of(*args: Any, kernels: bool = True) -> Any:
    return simulation(*args, kernels=kernels).compile().module


def functions(module: Any) -> dict[str, list[str]]:
    """The generated functions' lines, by name."""
    text = Path(module.__file__).read_text()
    found = {}
    for match in re.finditer(r"^def (\w+)\(.*?(?=^\S)", text, re.S | re.M):
        found[match[1]] = match[0].splitlines()
    return found


def relative(actual: np.ndarray, expected: np.ndarray) -> float:
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-300))


def random_point(module: Any, seed: int) -> tuple[float, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = module.DEFAULT_STATES + rng.normal(0.0, 0.3, module.N_STATES)
    p = module.DEFAULT_PARAMETERS * rng.uniform(0.8, 1.2, module.N_PARAMETERS)
    return 0.7, y, p


def evaluate(module: Any, t: float, y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    dy = np.full(module.N_STATES, np.nan)
    module.rhs(t, y, p, dy)
    out = np.full(module.N_OBSERVED, np.nan)
    module.observe(t, y, p, out)
    return dy, out


def assert_series_close(ours: Run, theirs: Run, bound: float = 1e-9) -> None:
    assert np.array_equal(ours.observed_t, theirs.observed_t)
    assert relative(ours.observed_y, theirs.observed_y) < bound
    for path in ours.paths:
        assert sorted(ours.series[path]) == sorted(theirs.series[path])
        for key, expected in theirs.series[path].items():
            assert relative(ours.series[path][key], expected) < bound, (path, key)


@pytest.mark.slow
def test_oscillators_and_a_rod_match_dynode_with_loops_over_both() -> None:
    ours, theirs = run_both(lambda backend: build_simulation(MODEL, backend, "build", 20, 200), 4.0, 0.2,
                            rtol=1e-10, atol=1e-12)  # fmt: skip
    assert_series_close(ours, theirs)
    rhs = functions(module_of(20, 200))["rhs"]
    text = "\n".join(rhs)
    assert "    for i in range(20):" in text  # the oscillators: one loop over instances
    assert "    for i in range(1, 199):" in text  # the rod's inner cells: one array loop
    assert "    for i in range(200):" in text  # the rod's mean: a sum over the array
    assert not re.search(r"Oscillator\[7\]", text)  # no instance has lines of its own
    # dataflow: the mean before the oscillators that read it, their outputs before the rod's heat
    at = {what: next(k for k, line in enumerate(rhs) if what in line)
          for what in ("r0 = 0.0", "-> ders.v of 20 systems", "-> outputs.power of 20 systems", "sum_heat = 0.0",
                       "d/dt Rod.states.u[i]")}  # fmt: skip
    assert at["r0 = 0.0"] < at["-> ders.v of 20 systems"]
    assert at["-> outputs.power of 20 systems"] < at["sum_heat = 0.0"] < at["d/dt Rod.states.u[i]"]


@pytest.mark.slow
@pytest.mark.parametrize("coupled_mean", [True, False])
def test_kernels_and_the_unrolled_form_compute_the_same(coupled_mean: bool) -> None:
    kernel, unrolled = module_of(12, 150, coupled_mean), module_of(12, 150, coupled_mean, kernels=False)
    assert len(functions(kernel)["rhs"]) < len(functions(unrolled)["rhs"]) / 2
    assert list(kernel.STATES) == list(unrolled.STATES)  # one layout in both forms
    for seed in range(3):
        point = random_point(kernel, seed)
        for ours, theirs in zip(evaluate(kernel, *point), evaluate(unrolled, *point)):
            assert relative(ours, theirs) < 1e-13
    sims = [simulation(12, 150, coupled_mean, kernels=k) for k in (True, False)]
    runs = [run(sim, "dyngen", 3.0, 0.3, rtol=1e-10, atol=1e-12) for sim in sims]
    assert_series_close(*runs, bound=1e-12)


@pytest.mark.slow
def test_jacobian_of_the_loops_matches_finite_differences() -> None:
    module = module_of(10, 120, False)
    assert getattr(module, "NO_JACOBIAN", None) is None
    unrolled = module_of(10, 120, False, kernels=False)
    for seed in range(2):
        t, y, p = random_point(module, seed)
        J = np.full((module.N_STATES, module.N_STATES), np.nan)
        module.jac(t, y, p, J)
        reference = central_differences(module, t, y, p)
        assert np.max(np.abs(J - reference)) < 1e-7 * max(1.0, np.max(np.abs(reference)))
        theirs = np.full_like(J, np.nan)
        unrolled.jac(t, y, p, theirs)
        np.testing.assert_allclose(J, theirs, rtol=1e-13, atol=1e-15)
    # a stiff method on that Jacobian: the same trajectory as the unrolled form's
    sims = [simulation(10, 120, False, kernels=k) for k in (True, False)]
    runs = [run(sim, "dyngen", 2.0, 0.5, integrator="rodas4", rtol=1e-8, atol=1e-10) for sim in sims]
    assert_series_close(*runs, bound=1e-10)


def sparse_plus_lowrank(module: Any, t: float, y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """S + U Vᵀ assembled from jac_values, the pattern and jac_lowrank (what the sparse solvers see)."""
    n = module.N_STATES
    values = np.full(module.JAC_NNZ, np.nan)
    module.jac_values(t, y, p, values)
    J = np.zeros((n, n))
    np.add.at(J, (module.JAC_ROWS, module.JAC_COLS), values)
    U, V = np.full((n, module.N_LOWRANK), np.nan), np.full((n, module.N_LOWRANK), np.nan)
    module.jac_lowrank(t, y, p, U, V)
    return J + U @ V.T


@pytest.mark.parametrize(("args", "rank"), [((6, 100, True), 1), ((6, 100, True, False, True), 2)],
                         ids=["mean", "mean_field"])  # fmt: skip
def test_a_sum_over_the_array_read_by_the_loops_is_a_low_rank_term(args: tuple, rank: int) -> None:
    """The oscillators' loop reads the rod's mean (and with ``mean_field`` so do the rod's
    cells, nonlinearly): J = S + U Vᵀ, U's rows of the oscillators one loop over them,
    against central differences and the unrolled form's Jacobian."""
    module = module_of(*args)
    assert getattr(module, "NO_JACOBIAN", None) is None and module.N_LOWRANK == rank
    unrolled = module_of(*args, kernels=False)
    lowrank_lines = "\n".join(functions(module)["lowrank_values"])
    assert "    for i in range(6):" in lowrank_lines and "U[" in lowrank_lines and "Oscillator[3]" not in lowrank_lines
    for seed in range(2):
        t, y, p = random_point(module, seed)
        reference = central_differences(module, t, y, p)
        scale = max(1.0, np.max(np.abs(reference)))
        ours = sparse_plus_lowrank(module, t, y, p)
        assert np.max(np.abs(ours - reference)) < 1e-7 * scale
        dense = np.full_like(ours, np.nan)
        module.jac(t, y, p, dense)
        theirs = np.full_like(ours, np.nan)
        unrolled.jac(t, y, p, theirs)
        np.testing.assert_allclose(dense, ours, rtol=1e-13, atol=1e-14 * scale)
        np.testing.assert_allclose(dense, theirs, rtol=1e-12, atol=1e-14 * scale)


@pytest.mark.slow
@pytest.mark.parametrize(("size", "integrator"), [((6, 100), "rodas4"), ((20, 200), "rodas4"), ((20, 200), "BDF")],
                         ids=["dense_rodas4", "sparse_rodas4", "BDF"])  # fmt: skip
def test_stiff_methods_on_the_low_rank_term_reach_dynode(size: tuple, integrator: str) -> None:
    """rodas4 (dense below 150 states, SuperLU with Woodbury above) and BDF on S + U Vᵀ
    against dynode's dopri5 on the same file, both at tight tolerances."""
    args = (*size, True, False, True)
    ours = run(simulation(*args), "dyngen", 2.0, 0.5, integrator=integrator, rtol=1e-10, atol=1e-12)
    theirs = run(build_simulation(MODEL, "dynode", "build", *args), "dynode", 2.0, 0.5, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ours.observed_y, theirs.observed_y, rtol=1e-6, atol=1e-8)
    assert np.abs(theirs.observed_y[-1] - theirs.observed_y[0]).max() > 0.05  # the solution moves


# summands that read signals of loops over instances: the lamp-weighted mean (plain and mean
# field), the spread about a thermostat's setpoint, and that spread scaled by the oscillators' total power
READING_LOOPS = [("build", (6, 100, True, False, False, True), 1), ("build", (6, 100, True, False, True, True), 2),
                 ("build_thermostat", (6, 100), 1), ("build_thermostat", (6, 100, True), 1)]  # fmt: skip


@pytest.mark.slow
@pytest.mark.filterwarnings(r"ignore:.*outputs\.power is read by")  # (dynode's order: not compared here)
@pytest.mark.parametrize(("builder", "args", "rank"), READING_LOOPS, ids=["weighted", "weighted_mean_field", "thermostat", "total"])
def test_a_sum_whose_summand_reads_the_loops_is_a_low_rank_term(builder: str, args: tuple, rank: int) -> None:
    """V reaches the instances' states through the signals the summand reads (a lamp's
    power, the thermostat's setpoint, a loop over the terms of the total power): against
    central differences and the unrolled form's Jacobian."""
    module = simulation(*args, builder=builder).compile().module
    assert getattr(module, "NO_JACOBIAN", None) is None and module.N_LOWRANK == rank
    unrolled = simulation(*args, builder=builder, kernels=False).compile().module
    for seed in range(2):
        t, y, p = random_point(module, seed)
        reference = central_differences(module, t, y, p)
        scale = max(1.0, np.max(np.abs(reference)))
        ours = sparse_plus_lowrank(module, t, y, p)
        assert np.max(np.abs(ours - reference)) < 1e-7 * scale
        theirs = np.full_like(ours, np.nan)
        unrolled.jac(t, y, p, theirs)
        np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-14 * scale)


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["rodas4", "BDF"])
def test_stiff_methods_with_the_thermostat_reach_dynode(integrator: str) -> None:
    """dopri5 against dynode's on the same file, and rodas4/BDF on S + U Vᵀ (V through the
    thermostat's setpoint) against a tight dynode run."""
    make = lambda backend: build_simulation(MODEL, backend, "build_thermostat", 20, 200)  # noqa: E731
    if integrator == "rodas4":
        ours, theirs = run_both(make, 2.0, 0.5, rtol=1e-10, atol=1e-12)
        assert_series_close(ours, theirs)
    ours = run(make("dyngen"), "dyngen", 2.0, 0.5, integrator=integrator, rtol=1e-10, atol=1e-12)
    theirs = run(make("dynode"), "dynode", 2.0, 0.5, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ours.observed_y, theirs.observed_y, rtol=1e-6, atol=1e-8)
    assert np.abs(theirs.observed_y[-1] - theirs.observed_y[0]).max() > 0.05  # the solution moves


@pytest.mark.slow
@pytest.mark.filterwarnings(r"ignore:.*outputs\.power is read by")  # (no order of systems suits dynode: not compared)
def test_the_total_power_model_matches_the_unrolled_form_with_rodas4() -> None:
    """The spread scaled by the oscillators' total power: loops and unrolled compute the
    same functions, and rodas4 on the loops' S + U Vᵀ (200 cells: SuperLU and Woodbury)
    reaches the unrolled form's tight dopri5 run."""
    kernel = simulation(20, 200, True, builder="build_thermostat").compile().module
    unrolled = simulation(20, 200, True, builder="build_thermostat", kernels=False).compile().module
    for seed in range(2):
        point = random_point(kernel, seed)
        for ours, theirs in zip(evaluate(kernel, *point), evaluate(unrolled, *point)):
            assert relative(ours, theirs) < 1e-13
    ours = run(simulation(20, 200, True, builder="build_thermostat"), "dyngen", 2.0, 0.5, integrator="rodas4",
               rtol=1e-10, atol=1e-12)  # fmt: skip
    theirs = run(simulation(20, 200, True, builder="build_thermostat", kernels=False), "dyngen", 2.0, 0.5,
                 integrator="dop853", rtol=1e-12, atol=1e-14)  # fmt: skip
    np.testing.assert_allclose(ours.observed_y, theirs.observed_y, rtol=1e-6, atol=1e-8)
    assert np.abs(theirs.observed_y[-1] - theirs.observed_y[0]).max() > 0.05


@pytest.mark.slow
@pytest.mark.filterwarnings(r"ignore:.*outputs\.power is read by")
@pytest.mark.parametrize(("builder", "args"), [("build", (True, False, True, True)), ("build_thermostat", (True,))],
                         ids=["weighted_mean_field", "total"])  # fmt: skip
def test_summands_reading_the_loops_keep_the_lines_at_two_sizes(builder: str, args: tuple) -> None:
    small = functions(simulation(20, 200, *args, builder=builder).compile().module)
    large = functions(simulation(40, 400, *args, builder=builder).compile().module)
    assert sorted(small) == sorted(large) and "lowrank_values" in small
    for name in small:
        assert len(small[name]) == len(large[name]), name


@pytest.mark.slow
@pytest.mark.parametrize("coupled_mean", [True, False])
def test_the_module_has_the_same_lines_at_two_sizes(coupled_mean: bool) -> None:
    """With the mean field (two low-rank terms) too: their U rows and V are loops."""
    small, large = functions(module_of(20, 200, coupled_mean, False, True)), functions(module_of(40, 400, coupled_mean, False, True))
    assert sorted(small) == sorted(large) and "lowrank_values" in small
    for name in small:  # (with coupled_mean=False: the chain rule through the rod's heat is a loop too)
        assert len(small[name]) == len(large[name]), name
    unrolled = functions(module_of(20, 200, coupled_mean, False, True, kernels=False))
    assert len(unrolled["rhs"]) > 2 * len(small["rhs"])


def test_a_loop_that_must_run_before_and_after_a_sum_is_unrolled_with_a_notice() -> None:
    sim = simulation(8, 100, builder="build_loop")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        module = sim.compile().module
    notices = [str(w.message) for w in caught if issubclass(w.category, dyngen.DyngenWarning)]
    assert any("no loops over instances" in n and "both before and after the sum over the array at kernels_arrays_model.py:" in n
               for n in notices), notices  # fmt: skip
    assert "Lamp[5]" in "\n".join(functions(module)["rhs"])  # unrolled: each lamp has its lines
    unrolled = simulation(8, 100, builder="build_loop", kernels=False).compile().module
    point = random_point(module, 0)
    for ours, theirs in zip(evaluate(module, *point), evaluate(unrolled, *point)):
        assert relative(ours, theirs) < 1e-14


@pytest.mark.slow
def test_heat_into_every_cell_gives_a_loop_nest_of_chain_rule_entries() -> None:
    """The rod's heat (a sum of the oscillators' outputs) enters every cell: the entries
    d(d/dt u[j])/d(x_i) are one loop nest over cells and oscillators, not a line each."""
    module = module_of(6, 100, False, True)
    jac_values = "\n".join(functions(module)["jac_values"])
    assert "for j in range(98):" in jac_values and "through Rod.inputs.heat" in jac_values
    t, y, p = random_point(module, 3)
    J = np.full((module.N_STATES, module.N_STATES), np.nan)
    module.jac(t, y, p, J)
    reference = central_differences(module, t, y, p)
    assert np.max(np.abs(J - reference)) < 1e-7 * max(1.0, np.max(np.abs(reference)))
    unrolled = module_of(6, 100, False, True, kernels=False)
    theirs = np.full_like(J, np.nan)
    unrolled.jac(t, y, p, theirs)
    np.testing.assert_allclose(J, theirs, rtol=1e-13, atol=1e-15)
