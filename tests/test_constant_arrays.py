"""Constant numpy arrays in the array form (issue 15): module data, loops, Jacobian, fail-fast.

A model that reads constant arrays (module globals, ``self`` attributes, class
attributes, closure values) and combines them with traced large arrays — ``W @ sin(theta)``,
``OMEGA + ...``, ``K * u``, a constant matrix elementwise with a traced grid — builds in
array form: the constants become module data (``CONST_<name>``) read by index in the
loops.  Checked against independent references:

- dynode 0.4 running the same model file (``tests/constant_arrays_model.py``) at n = 70;
- scipy's ``solve_ivp`` (DOP853, rtol 1e-12) of the model written in numpy by hand, at
  n = 70 and n = 300;
- the closed-form Jacobian ``k * W * cos(theta_j)`` and central finite differences;
- the fail-fast error: a construct the array form cannot express next to a 300 x 300
  matrix stops the build within seconds, naming the line and what to write instead.
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numba.core.errors import NumbaWarning
from scipy.integrate import solve_ivp

import dyngen
from dyngen.errors import TraceError
from dyngen.ir import BuildOptions
from dyngen.pipeline import build
from dynode_compare import assert_same_runs, build_simulation, load_model_source, run
from finite_differences import central_differences

MODELS = Path(__file__).resolve().parent / "constant_arrays_model.py"


def built(builder: str, *args: Any, tmp_path: Path) -> Any:
    """The build result of a model of MODELS, written to ``tmp_path``; no fallback warning."""
    sim = build_simulation(MODELS, "dyngen", builder, *args)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dyngen.DyngenWarning)  # no element-form fallback
        return build(sim.systems, name=f"{builder}_{'_'.join(map(str, args))}", source_root=str(MODELS.parent),
                     model_file=MODELS.name, options=BuildOptions(output_dir=str(tmp_path)))  # fmt: skip


def functions(text: str) -> dict[str, list[str]]:
    return {name: text.split(f"\ndef {name}(")[1].split("\n\n\n")[0].splitlines() for name in ("rhs", "jac_values", "observe")}


def kuramoto_reference(n: int, form: str, k: float, theta: np.ndarray) -> np.ndarray:
    """The model's derivative written in numpy by hand (from the same weights)."""
    w, omega, _ = load_model_source(MODELS, "dyngen").weights(n)
    if form == "broadcast":
        return omega + k * np.sum(w * np.sin(theta[None, :] - theta[:, None]), axis=1)
    return omega + k * (w @ np.sin(theta))


# ----------------------------------------------------------------------------- the model


@pytest.mark.parametrize(("n", "form"), [(70, "global"), (300, "attribute")])
def test_kuramoto_with_a_constant_matrix_builds_in_array_form_and_matches_scipy(n: int, form: str, tmp_path: Path) -> None:
    start = time.perf_counter()
    result = built("build_kuramoto", n, form, tmp_path=tmp_path)
    seconds = time.perf_counter() - start
    assert seconds < 15.0, f"build took {seconds:.1f} s"  # (about 1 s alone; the element form took 34 s at n = 70)
    module, text = result.module, result.source.text
    sums = 1 if form == "global" else 2  # "attribute": np.dot(W, s) and s @ W.T, a dense block each
    assert not hasattr(module, "NO_JACOBIAN") and module.JAC_NNZ == sums * n * n
    body = functions(text)
    assert any(f"CONST_W[{n}*i + j]" in line for line in body["rhs"])  # read by index in a loop
    assert any("CONST_OMEGA[i]" in line for line in body["rhs"])
    assert len(body["rhs"]) < 30 and len(body["jac_values"]) < 20
    w, omega, theta0 = load_model_source(MODELS, "dyngen").weights(n)
    assert np.array_equal(module.CONST_W, w.ravel()) and np.array_equal(module.CONST_OMEGA, omega)  # exact data

    # the generated rhs and Jacobian at a random point: numpy by hand, the closed form, finite differences
    rng = np.random.default_rng(5)
    y, p = rng.uniform(0.0, 2.0 * np.pi, n), np.array([0.8])
    dy, J = np.empty(n), np.zeros((n, n))
    module.rhs(0.0, y, p, dy)
    with warnings.catch_warnings():  # at n = 300 JAC_ROWS holds 1.4 MB: jac must not read it (numba
        warnings.simplefilter("error", NumbaWarning)  # would not cache a function reading it)
        module.jac(0.0, y, p, J)
    np.testing.assert_allclose(dy, kuramoto_reference(n, form, 0.8, y), rtol=0, atol=1e-14)
    np.testing.assert_allclose(J, 0.8 * w * np.cos(y)[None, :], rtol=0, atol=1e-15)
    if n <= 70:
        np.testing.assert_allclose(J, central_differences(module, 0.0, y, p), rtol=0, atol=1e-8)

    # a run against scipy's DOP853 of the numpy model
    sim = build_simulation(MODELS, "dyngen", "build_kuramoto", n, form)
    sim.simulate(3.0, 1.0, rtol=1e-11, atol=1e-12)
    ours = sim.systems[0].states.theta
    reference = solve_ivp(lambda t, th: kuramoto_reference(n, form, 1.5, th), (0.0, 3.0), theta0,
                          method="DOP853", rtol=1e-12, atol=1e-13)  # fmt: skip
    np.testing.assert_allclose(ours, reference.y[:, -1], rtol=0, atol=1e-8)


@pytest.mark.parametrize("form", ["global", "broadcast"])
def test_kuramoto_with_a_constant_matrix_matches_dynode(form: str) -> None:
    ours = run(build_simulation(MODELS, "dyngen", "build_kuramoto", 70, form), "dyngen", 2.0, 0.5)
    theirs = run(build_simulation(MODELS, "dynode", "build_kuramoto", 70, form), "dynode", 2.0, 0.5)
    assert_same_runs(ours, theirs)


@pytest.mark.parametrize("form", ["attribute", "closure", "broadcast", "scaled"])
def test_constants_from_attributes_closures_and_broadcasting(form: str, tmp_path: Path) -> None:
    """self.W with np.dot and traced @ constant.T, a closure's matrix in np.einsum with a
    class attribute, a constant matrix elementwise with a traced grid, k * W: array form,
    exact values, the exact Jacobian; the module's functions have the same lines at n = 70 and 300."""
    lines = {}
    for n in (70, 300):
        result = built("build_kuramoto", n, form, tmp_path=tmp_path)
        module = result.module
        lines[n] = [re.sub(r"\d+", "N", line) for line in functions(result.source.text)["rhs"]]
        rng = np.random.default_rng(n)
        y, p = rng.uniform(0.0, 2.0 * np.pi, n), np.array([1.3])
        dy = np.empty(n)
        module.rhs(0.0, y, p, dy)
        np.testing.assert_allclose(dy, kuramoto_reference(n, form, 1.3, y), rtol=0, atol=1e-13)
        if n == 70:
            J = np.zeros((n, n))
            module.jac(0.0, y, p, J)
            np.testing.assert_allclose(J, central_differences(module, 0.0, y, p), rtol=0, atol=1e-8)
    assert lines[70] == lines[300]
    names = {"attribute": "CONST_W", "closure": "CONST_MATRIX", "broadcast": "CONST_W", "scaled": "CONST_W"}
    data = sorted(name for name in vars(module) if name.startswith("CONST_"))
    omega = "CONST_CLASS_OMEGA" if form == "closure" else "CONST_OMEGA"
    assert data == sorted([names[form], omega])  # self.W.T is read from CONST_W's data: no copy


def test_constant_vectors_elementwise_with_a_traced_vector_match_dynode(tmp_path: Path) -> None:
    """K * u, OMEGA + ..., a constant of equal values (one number, no data), a constant
    in np.concatenate, np.sum of a constant times a traced vector (an output), a boolean
    constant in np.where."""
    result = built("build_scaled", 120, tmp_path=tmp_path)
    # EDGE (equal values) is one number; K[1:] is read from K's data
    assert sorted(name for name in vars(result.module) if name.startswith("CONST_")) == ["CONST_K", "CONST_MASK", "CONST_OMEGA"]
    assert not hasattr(result.module, "NO_JACOBIAN")
    ours = run(build_simulation(MODELS, "dyngen", "build_scaled", 120), "dyngen", 1.0, 0.25)
    theirs = run(build_simulation(MODELS, "dynode", "build_scaled", 120), "dynode", 1.0, 0.25)
    assert_same_runs(ours, theirs)
    module = result.module
    y = module.DEFAULT_STATES + np.random.default_rng(2).normal(0.0, 0.2, 120)
    J = np.zeros((120, 120))
    module.jac(0.0, y, module.DEFAULT_PARAMETERS, J)
    np.testing.assert_allclose(J, central_differences(module, 0.0, y, module.DEFAULT_PARAMETERS), rtol=0, atol=1e-8)


# ----------------------------------------------------------------------------- fail fast


@pytest.mark.parametrize(("form", "why"), [
    ("strided", "the element form would build more than 5,000 scalar operations"),  # stopped by the budget
    ("late_strided", "array elements so far"),  # refused before the element form starts
])  # fmt: skip
def test_what_the_array_form_cannot_express_next_to_a_large_matrix_fails_fast(form: str, why: str, tmp_path: Path) -> None:
    sim = build_simulation(MODELS, "dyngen", "build_kuramoto", 300, form)
    start = time.perf_counter()
    with pytest.raises(TraceError) as caught:
        build(sim.systems, name="slow", source_root=str(MODELS.parent), model_file=MODELS.name,
              options=BuildOptions(output_dir=str(tmp_path)))  # fmt: skip
    seconds = time.perf_counter() - start
    assert seconds < 20.0, f"the error took {seconds:.1f} s"  # (about 0.1 s; the element form would run for minutes)
    message = str(caught.value)
    assert "constant_arrays_model.py:" in message and "do_step" in message
    assert "strided slice" in message and "use slices with step 1" in message
    assert why in message and "cannot be traced element by element in reasonable time" in message
    assert list(tmp_path.iterdir()) == []


def test_editing_a_constant_array_in_place_rebuilds_the_module() -> None:
    model = load_model_source(MODELS, "dyngen")
    sim = model.build_kuramoto(70, "global")
    sim.simulate(0.5, 0.5)
    first = sim.compile().module.MODEL_HASH
    sim.systems[0].states.theta = model.THETA0.copy()
    model.W *= 0.0  # in place: the coupling is gone, theta moves at its own frequency
    sim.simulate(0.5, 0.5, rtol=1e-12, atol=1e-12)
    assert sim.compile().module.MODEL_HASH != first
    np.testing.assert_allclose(sim.systems[0].states.theta, model.THETA0 + 0.5 * model.OMEGA, rtol=0, atol=1e-12)
