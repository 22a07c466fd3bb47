"""Flat state vectors read as grids, and grids read flat (issue 15: ``reshape``/``ravel``).

Checked against independent references:

- dynode 0.4 running the same model files (``tests/reshape_model.py``: Gray–Scott with
  both species in one flat state, written with slices and with ``reshape(2, n, m)``; a
  grid read flat, a flat output reshaped by the system it drives, a flat parameter read
  as a grid, a recorded output written from a rolled grid), within 1e-8 relative;
- the same Gray–Scott written with 2-D states (``tests/grids_model.py``), rhs at random
  points: the flat form must compute the same numbers in the same layout;
- central finite differences of the generated rhs for the Jacobian, and its sparsity
  (a 5-point stencil of two species: 6 entries a row, as for 2-D states);
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
from dynode_compare import assert_same_runs, build_simulation, run
from finite_differences import central_differences, random_point, relative

HERE = Path(__file__).resolve().parent
MODELS = HERE / "reshape_model.py"
CASES = [
    ("build_flat_gray_scott", (12, 10, "slices")),
    ("build_flat_gray_scott", (12, 10, "stack")),
    ("build_flat_gray_scott", (12, 10, "scaled")),
    ("build_flat_gray_scott", (12, 10, "damped")),
    ("build_flat_field", (12, 10)),
]
IDS = ["gray_scott_slices", "gray_scott_stack", "gray_scott_scaled", "gray_scott_damped", "field_and_follower"]


def module_of(builder: str, *args: Any, models: Path = MODELS) -> Any:
    sim = build_simulation(models, "dyngen", builder, *args)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dyngen.DyngenWarning)  # no notice: nothing falls back to the element form
        return sim.compile().module


def rhs_lines(module: Any) -> int:
    text = Path(module.__file__).read_text()
    return len(text.split("\ndef rhs(")[1].split("\n\n\n")[0].splitlines())


@pytest.mark.slow
@pytest.mark.parametrize(("builder", "args"), CASES, ids=IDS)
def test_reshaped_models_match_dynode(builder: str, args: tuple) -> None:
    ours = run(build_simulation(MODELS, "dyngen", builder, *args), "dyngen", 2.0, 0.5)
    theirs = run(build_simulation(MODELS, "dynode", builder, *args), "dynode", 2.0, 0.5)
    assert_same_runs(ours, theirs)


@pytest.mark.parametrize(("builder", "args"), CASES, ids=IDS)
def test_jacobian_through_reshapes_matches_finite_differences(builder: str, args: tuple) -> None:
    module = module_of(builder, *args)
    assert getattr(module, "NO_JACOBIAN", None) is None
    t, y, p = random_point(module, 5)
    J = np.full((module.N_STATES, module.N_STATES), np.nan)
    module.jac(t, y, p, J)
    assert relative(J, central_differences(module, t, y, p)) < 1e-6
    assert len(set(zip(module.JAC_ROWS.tolist(), module.JAC_COLS.tolist()))) == module.JAC_NNZ
    if builder == "build_flat_gray_scott":  # the 2-D form's sparsity: 6 entries a row
        assert module.JAC_NNZ == 6 * module.N_STATES


@pytest.mark.parametrize("form", ["slices", "stack"])
def test_a_flat_state_computes_what_two_grid_states_compute(form: str) -> None:
    flat = module_of("build_flat_gray_scott", 12, 10, form)
    grids = module_of("build_gray_scott", 12, 10, models=HERE / "grids_model.py")
    assert flat.N_STATES == grids.N_STATES  # both species, u then v, in C order
    np.testing.assert_array_equal(flat.DEFAULT_STATES, grids.DEFAULT_STATES)
    rng = np.random.default_rng(2)
    for _ in range(3):
        y = flat.DEFAULT_STATES + rng.normal(0.0, 0.3, flat.N_STATES)
        p = np.array([0.16, 0.08, 0.035, 0.065]) * rng.uniform(0.8, 1.2, 4)  # Du, Dv, F, k in both
        dy_flat, dy_grids = np.full(flat.N_STATES, np.nan), np.full(grids.N_STATES, np.nan)
        flat.rhs(1.0, y, p, dy_flat)
        grids.rhs(1.0, y, p, dy_grids)
        np.testing.assert_allclose(dy_flat, dy_grids, rtol=1e-13, atol=1e-15)


def test_a_flat_state_is_the_same_loops_for_a_small_and_a_large_grid() -> None:
    small, large = module_of("build_flat_gray_scott", 20, 16), module_of("build_flat_gray_scott", 200, 160)
    assert large.N_STATES == 100 * small.N_STATES
    assert rhs_lines(small) == rhs_lines(large) < 80
    assert "for j in range(" in Path(large.__file__).read_text()  # loop nests over the grid


def test_a_reshape_the_array_form_cannot_read_is_a_clear_error(tmp_path: Path) -> None:
    class Folded(dyngen.System):
        def __init__(self) -> None:
            super().__init__()
            self.states.u = np.ones((60, 60))
            self.ders.u = np.zeros((60, 60))

        def do_step(self, time: float) -> None:
            # a rolled grid's elements moved to other axes, then transposed: only a
            # whole write may take a reshaped value that is not elementwise
            self.ders.u = np.roll(self.states.u, 1, axis=0).reshape(120, 30).T.reshape(60, 60)

    sim = dyngen.Simulation()
    sim.add_system(Folded())
    start = time.perf_counter()
    with pytest.raises(TraceError, match=r"(?s)test_reshape.py:\d+.*reshape of a traced array of shape \(60, 60\) "
                                         r"into \(120, 30\) that moves elements between axes.*only a contiguous run.*"
                                         r"self.ders.y = lap.ravel\(\)"):  # fmt: skip
        build(sim.systems, name="folded", source_root=str(HERE), model_file=Path(__file__).name,
              options=BuildOptions(output_dir=str(tmp_path / "out")))  # fmt: skip
    assert time.perf_counter() - start < 20
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_a_small_reshape_that_moves_elements_is_traced_element_by_element() -> None:
    """Under 64 elements, a reshaped stencil is read element by element (no error)."""

    class Small(dyngen.System):
        def __init__(self) -> None:
            super().__init__()
            self.states.u = np.linspace(0.0, 1.0, 64).reshape(8, 8)
            self.ders.u = np.zeros((8, 8))

        def do_step(self, time: float) -> None:
            rolled = np.roll(self.states.u, 1, axis=0).reshape(4, 16)
            self.ders.u = -rolled.T.reshape(8, 8)

    sim = dyngen.Simulation()
    sim.add_system(Small())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dyngen.DyngenWarning)
        module = sim.compile().module
    y = np.random.default_rng(0).normal(size=64)
    dy = np.full(64, np.nan)
    module.rhs(0.0, y, module.DEFAULT_PARAMETERS, dy)
    np.testing.assert_array_equal(dy, -np.roll(y.reshape(8, 8), 1, axis=0).reshape(4, 16).T.ravel())


def rhs_of(*systems: dyngen.System) -> tuple[Any, np.ndarray]:
    """The module of ``systems`` and its rhs at the default states (no element-form fallback)."""
    sim = dyngen.Simulation()
    for system in systems:
        sim.add_system(system)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dyngen.DyngenWarning)
        module = sim.compile().module
    dy = np.full(module.N_STATES, np.nan)
    module.rhs(0.0, module.DEFAULT_STATES, module.DEFAULT_PARAMETERS, dy)
    return module, dy


def test_fortran_order_reshapes_and_ravels_as_numpy_does() -> None:
    """Fortran order is C order of the axes reversed: these come back to views of the state."""
    start = np.sin(np.arange(120.0)).reshape(12, 10)

    class Fortran(dyngen.System):
        def __init__(self) -> None:
            super().__init__()
            self.states.u = start.copy()
            self.ders.u = np.zeros((12, 10))

        def do_step(self, time: float) -> None:
            u = self.states.u
            back = np.reshape(u.T.ravel(), (12, 10), order="F")  # u again
            self.ders.u = 2.0 * np.ravel(u, "F").reshape(10, 12).T - back + u.flatten(order="F").reshape((12, 10), order="F")

    _, dy = rhs_of(Fortran())
    u = start
    expected = 2.0 * np.ravel(u, "F").reshape(10, 12).T - np.reshape(u.T.ravel(), (12, 10), order="F")
    expected = expected + u.flatten(order="F").reshape((12, 10), order="F")
    np.testing.assert_array_equal(dy, expected.ravel())


def test_a_flat_output_is_read_as_a_grid_through_a_connection() -> None:
    """The output is a slice of a flat state (a contiguous run): its reader reshapes, rolls and transposes it."""
    values = np.cos(np.arange(240.0))

    class Source(dyngen.System):
        def __init__(self) -> None:
            super().__init__()
            self.states.y = values.copy()
            self.ders.y = np.zeros(240)
            self.outputs.f = np.zeros(120)

        def do_step(self, time: float) -> None:
            self.ders.y = -self.states.y
            self.outputs.f = np.sin(self.states.y[120:])

    class Reader(dyngen.System):
        def __init__(self) -> None:
            super().__init__()
            self.states.w = np.zeros((12, 10))
            self.ders.w = np.zeros((12, 10))
            self.inputs.f = np.zeros(120)

        def do_step(self, time: float) -> None:
            f = self.inputs.f
            self.ders.w = np.roll(f.reshape(12, 10), 1, axis=0) + f.reshape(10, 12).T.reshape(12, 10) - self.states.w

    source, reader = Source(), Reader()
    reader.add_pre_connection(dyngen.connect_signals(source.outputs, "f", reader.inputs, "f"))
    _, dy = rhs_of(source, reader)
    f = np.sin(values[120:])
    np.testing.assert_allclose(dy[240:], (np.roll(f.reshape(12, 10), 1, axis=0) + f.reshape(10, 12).T.reshape(12, 10)).ravel(),
                               rtol=1e-15, atol=0)  # fmt: skip


def test_assigning_into_a_der_in_place_is_an_error_not_a_lost_write() -> None:
    class InPlace(dyngen.System):
        def __init__(self) -> None:
            super().__init__()
            self.states.y = np.array([1.0, 2.0, 3.0])
            self.ders.y = np.zeros(3)

        def do_step(self, time: float) -> None:
            self.ders.y[:2] = -self.states.y[:2]  # dynode changes its array in place

    sim = dyngen.Simulation()
    sim.add_system(InPlace())
    with pytest.raises(TraceError, match=r"(?s)assigns into InPlace.ders.y in place.*self.ders.y = d"):
        sim.compile()


def test_reshape_errors_say_what_numpy_says() -> None:
    for body, text in [(lambda y: y.reshape(12, 11), r"cannot reshape array of size 240 into shape \(12,11\)"),
                       (lambda y: y.reshape(-1, -1, 10), "can only specify one unknown dimension"),
                       (lambda y: y.ravel(order="K"), r"(?s)order='K'.*write order='C'")]:  # fmt: skip

        class Wrong(dyngen.System):
            def __init__(self) -> None:
                super().__init__()
                self.states.y = np.zeros(2400)  # too large for the element form: the array form's own error
                self.ders.y = np.zeros(2400)

            def do_step(self, time: float, body: Any = body) -> None:
                self.ders.y = np.resize(0.0, 0) + body(self.states.y[:240]).sum() - self.states.y

        sim = dyngen.Simulation()
        sim.add_system(Wrong())
        with pytest.raises(TraceError, match=text):
            sim.compile()
