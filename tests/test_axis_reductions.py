"""Reductions along an axis, small slices and joins meeting a 2-D grid (issue 15).

The arrays these cases reduce to (a row's mean, a column's maximum, a one-column slice:
10 or 12 elements on a 12x10 grid) are smaller than the array form's threshold.  They
used to be traced element by element and then broadcast back over the grid as one line
per cell: the module grew with the grid (1,586 lines at 12x10), its rhs read reduction
arrays it never computed (``NameError: r0``), or its Jacobian pattern had boxes of
negative extent (the module failed to import: "negative dimensions are not allowed").  Checked against independent references:

- dynode 0.4 running the same model file (``tests/axis_reductions_model.py``), 1e-8;
- central finite differences of the generated rhs for the Jacobian;
- the module's shape: the same lines for a 12x10 and a 36x30 grid (7x10 and 7x40 with a
  vector state of 7 elements, which stays in the element form).

Reductions of matrix products (``(u @ W).sum(axis=1)``, ``(np.sin(u) @ W) @ W``,
``np.max(u @ W, axis=0)``, ``(u @ u.T) @ u``) read one reduction along the axis another
reduces; they used to have no Jacobian ("a dense Jacobian: no Jacobian yet").
"""

from __future__ import annotations

import re
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import dyngen
from axis_reductions_model import CASES, SMALL_VECTOR_CASES
from dynode_compare import assert_same_runs, build_simulation, run
from finite_differences import central_differences, random_point, relative

MODEL = Path(__file__).resolve().parent / "axis_reductions_model.py"


def sizes(case: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """A small and a larger grid (7 rows with a small vector state: it stays element form)."""
    return ((7, 10), (7, 40)) if case in SMALL_VECTOR_CASES else ((12, 10), (36, 30))


def module_of(n: int, m: int, case: str) -> Any:
    sim = build_simulation(MODEL, "dyngen", "build", n, m, case)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dyngen.DyngenWarning)  # no fallback to the element form
        return sim.compile().module


def functions(module: Any) -> dict[str, int]:
    """The generated functions' line counts, by name."""
    text = Path(module.__file__).read_text()
    return {match[1]: len(match[0].splitlines()) for match in re.finditer(r"^def (\w+)\(.*?(?=^\S)", text, re.S | re.M)}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_dynode(case: str) -> None:
    n, m = sizes(case)[0]
    ours = run(build_simulation(MODEL, "dyngen", "build", n, m, case), "dyngen", 2.0, 0.5)
    theirs = run(build_simulation(MODEL, "dynode", "build", n, m, case), "dynode", 2.0, 0.5)
    assert_same_runs(ours, theirs)


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(CASES))
def test_jacobian_matches_finite_differences_and_the_module_does_not_grow(case: str) -> None:
    small, large = sizes(case)
    module = module_of(*small, case)
    assert getattr(module, "NO_JACOBIAN", None) is None
    for seed in (1, 2):
        t, y, p = random_point(module, seed)
        J = np.zeros((module.N_STATES, module.N_STATES))
        module.jac(t, y, p, J)
        assert relative(J, central_differences(module, t, y, p)) < 1e-7
    assert functions(module) == functions(module_of(*large, case))


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["rodas4", "sparse_bdf", "BDF"])
@pytest.mark.parametrize("case", ["sum_of_a_product", "gram_product_shifted"])
def test_stiff_methods_on_the_jacobian_through_products_reach_dynode(case: str, integrator: str) -> None:
    """The implicit methods on those Jacobians (entries of one (row, column) from several
    blocks add up, sparse or dense) against dynode's dopri5, both at tight tolerances."""
    ours = run(build_simulation(MODEL, "dyngen", "build", 12, 10, case), "dyngen", 2.0, 0.5,
               integrator=integrator, rtol=1e-10, atol=1e-12)  # fmt: skip
    theirs = run(build_simulation(MODEL, "dynode", "build", 12, 10, case), "dynode", 2.0, 0.5, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ours.observed_y, theirs.observed_y, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(
    ("case", "shape", "says"),
    [
        ("product_of_three", (12, 10), ["three reductions nested that way", "u @ (W @ W) is one reduction", "axis_reductions_model.py:"]),
        ("max_of_a_product", (70, 70), ["= np.max of ", "axis_reductions_model.py:", "): 24,010,000 entries", "a dense Jacobian"]),
        # a dense 1,920 x 1,920 block per element of the 40-element maximum, and the diagonal
        ("max_then_sum", (48, 40), [f"would write {40 * 1920**2 + 1920:,} entries", "np.max(u @ W, axis=0).sum()"]),
    ],
)
def test_what_has_no_jacobian_says_why(case: str, shape: tuple[int, int], says: list[str]) -> None:
    """Three nested reductions, a Jacobian through two that would be dense beyond 20
    million entries (each of the 4,900 derivatives reads every cell), and a scalar
    adding up a reduction's 40 elements (a dense block each: the module's pattern alone
    took 4.8 GB): the module builds, without a Jacobian, and says why."""
    module = module_of(*shape, case)
    for part in says:
        assert part in module.NO_JACOBIAN


@pytest.mark.slow
@pytest.mark.parametrize("readers", [False, True], ids=["unread", "read_by_the_oscillators"])
def test_small_outputs_reduced_along_an_axis_beside_many_small_components(readers: bool) -> None:
    """A column mean and a row maximum as outputs (10 and 12 elements) no longer stop the
    loops over the 40 oscillators beside the grid: they are computed in ``observe`` as loops;
    read by the oscillators (a column's mean, a row's maximum), each element is a reduction of its own."""
    ours = run(build_simulation(MODEL, "dyngen", "build_with_oscillators", 12, 10, 40, readers), "dyngen", 2.0, 0.5)
    theirs = run(build_simulation(MODEL, "dynode", "build_with_oscillators", 12, 10, 40, readers), "dynode", 2.0, 0.5)
    assert_same_runs(ours, theirs)
    sim = build_simulation(MODEL, "dyngen", "build_with_oscillators", 12, 10, 40, readers)
    with warnings.catch_warnings():
        warnings.simplefilter("error", dyngen.DyngenWarning)  # "no loops over instances ..." is one
        module = sim.compile().module
    text = Path(module.__file__).read_text()
    assert "for i in range(40):" in functions_text(text, "rhs")  # the oscillators' loop
    assert "for i in range(10):" in functions_text(text, "observe")  # the column means' loop
    if readers:  # each column's sum and row's maximum the oscillators read: low-rank terms of the Jacobian
        assert module.N_LOWRANK == 10 + 12
        for seed in (1, 2):
            t, y, p = random_point(module, seed)
            J = np.zeros((module.N_STATES, module.N_STATES))
            module.jac(t, y, p, J)
            assert relative(J, central_differences(module, t, y, p)) < 1e-7


@pytest.mark.slow
@pytest.mark.parametrize("integrator", ["rodas4", "sparse_bdf", "BDF"])
def test_stiff_methods_with_oscillators_reading_reduced_elements_reach_dynode(integrator: str) -> None:
    """The sums of single elements as low-rank terms (S + U Vᵀ: Woodbury in rodas4 and
    sparse_bdf, dense in BDF) against dynode's dopri5, both at tight tolerances."""
    ours = run(build_simulation(MODEL, "dyngen", "build_with_oscillators", 12, 10, 40, True), "dyngen", 2.0, 0.5,
               integrator=integrator, rtol=1e-10, atol=1e-12)  # fmt: skip
    theirs = run(build_simulation(MODEL, "dynode", "build_with_oscillators", 12, 10, 40, True), "dynode", 2.0, 0.5,
                 rtol=1e-11, atol=1e-13)  # fmt: skip
    np.testing.assert_allclose(ours.observed_y, theirs.observed_y, rtol=1e-6, atol=1e-8)


@pytest.mark.slow
def test_accumulating_the_extremes_of_a_large_grid_compiles_in_seconds(tmp_path: Path) -> None:
    """np.max/np.min over a whole 24x20 grid: numba compiled the loop's np.maximum (and the
    Jacobian's arg-max pass) for minutes or forever (at 16x16 and 24x20, not at 48x40:
    LLVM's unrolling decides); a child process, so that a hang fails the test instead of
    stalling the suite."""
    child = (
        "import sys, numpy as np, warnings\n"
        f"sys.path.insert(0, {str(MODEL.parent)!r})\n"
        "from dynode_compare import build_simulation\n"
        f"sim = build_simulation({str(MODEL)!r}, 'dyngen', 'build', 24, 20, 'extremes_of_the_grid')\n"
        f"sim.cache_dir = {str(tmp_path)!r}\n"
        "m = sim.compile().module\n"
        "y, p = m.DEFAULT_STATES, m.DEFAULT_PARAMETERS\n"
        "m.rhs(0.0, y, p, np.empty(m.N_STATES))\n"
        "m.jac(0.0, y, p, np.empty((m.N_STATES, m.N_STATES)))\n"
    )
    done = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def functions_text(text: str, name: str) -> str:
    return text.split(f"\ndef {name}(")[1].split("\n\n\n")[0]


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("-u[np.arange(200)[::-1], :]", ["integer array", "np.concatenate((u[3:4], u[0:3]))", "G.states.u is 200x200"]),
        ("-u * (u > 0.5)[u > 0.5].sum()", ["boolean mask", "np.where(mask, u, 0.0)"]),
        ("-np.cumsum(u, axis=1)", ["np.cumsum of a traced large array", "u @ np.triu(np.ones((m, m)))"]),
    ],
    ids=["fancy", "mask", "unsupported"],
)
def test_index_arrays_and_unsupported_functions_fail_fast_with_what_to_write(tmp_path: Path, line: str, says: list) -> None:
    source = (
        "import numpy as np\nfrom dyngen import Simulation, System\n\n\nclass G(System):\n"
        "    def __init__(self):\n        super().__init__()\n"
        "        self.states.u = np.ones((200, 200))\n        self.ders.u = np.zeros((200, 200))\n\n"
        f"    def do_step(self, t):\n        u = self.states.u\n        self.ders.u = {line}\n"
    )
    (tmp_path / "fails.py").write_text(source)
    namespace: dict = {}
    exec(compile(source, str(tmp_path / "fails.py"), "exec"), namespace)
    sim = dyngen.Simulation(cache_dir=tmp_path / "cache")
    sim.add_system(namespace["G"]())
    with pytest.raises(dyngen.errors.TraceError) as raised:
        sim.compile()
    text = str(raised.value)
    assert "fails.py:13" in text
    for part in says:
        assert part in text
    assert "truth value" not in text
