"""Issue 15: kernels and the array form combined -- many small components next to a large array.

    python benchmarks/kernels_with_arrays.py [--oscillators 200] [--cells 2000] [--repeats 3] [--mean-field]

Model: ``tests/kernels_arrays_model.py`` (``build(n, cells, coupled_mean=False)``) --
damped oscillators, each reading one cell of a rod, the rod (a 1-D heat equation in
array form) heated by the sum of the oscillators' outputs; the model has an analytic
Jacobian, whose ``jac_values`` lines are counted too.

For each form, in a child process with an empty module cache (median of ``repeats``):

- **before**: ``kernels=False`` -- what a model with arrays got until now: every
  oscillator signal unrolled, one line each (the rod still in array form);
- **after**: ``kernels=True`` -- loops over the oscillators next to the rod's loops.

Columns: the build (trace, flatten, lower, render, write, load), the numba compilation
of ``rhs`` (its first call), the lines of the generated ``rhs``, ``jac_values`` and of the
whole module, and one ``rhs`` call (median of 2,000).  The two forms' ``rhs`` agree to
rounding (checked here; tests/test_kernels_with_arrays.py checks both against dynode).

``--mean-field``: the oscillators and the rod's cells also read the rod's mean
(``build(..., mean_field=True)``): the Jacobian gets a low-rank term (``lowrank_values``,
whose lines are counted), and each child also times ``simulate(1, 0.1, integrator="rodas4")``
(the sparse LU with Woodbury; after a first short run that compiles it).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODEL = ROOT / "tests" / "kernels_arrays_model.py"
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))


def child(oscillators: int, cells: int, kernels: bool, mean_field: bool) -> None:
    """In a child: build and compile the model; print the figures as JSON."""
    from child_process import median_rhs_call
    from dynode_compare import build_simulation

    args = (True, False, True) if mean_field else (False,)  # (with an analytic Jacobian)
    sim = build_simulation(MODEL, "dyngen", "build", oscillators, cells, *args)
    sim.kernels = kernels
    start = time.perf_counter()
    result = sim.compile()
    built = time.perf_counter()
    module = result.module
    y, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    dy = np.empty(module.N_STATES)
    module.rhs(0.0, y, p, dy)
    compiled = time.perf_counter()
    rng = np.random.default_rng(1)
    y_random = y + rng.normal(0.0, 0.1, y.size)
    module.rhs(0.3, y_random, p, dy)
    rhs_call = median_rhs_call(module, y, p, dy)
    text = Path(module.__file__).read_text()
    rhs = re.search(r"^def rhs\(.*?(?=^\S)", text, re.S | re.M)[0]
    jac = re.search(r"^def jac_values\(.*?(?=^\S)", text, re.S | re.M)[0]
    lowrank = re.search(r"^def lowrank_values\(.*?(?=^\S)", text, re.S | re.M)
    rodas4 = None
    if mean_field:
        sim.simulate(0.01, 0.01, integrator="rodas4")
        t0 = time.perf_counter()
        sim.simulate(1.0, 0.1, integrator="rodas4")
        rodas4 = time.perf_counter() - t0
    print(json.dumps({
        "build": built - start, "stages": dict(result.timings), "rhs_compile": compiled - built,
        "rhs_lines": len(rhs.rstrip().splitlines()), "jac_lines": len(jac.rstrip().splitlines()), "module_lines": text.count("\n"),
        "rhs_call": rhs_call, "dy": dy.tolist(), "rodas4": rodas4,
        "lowrank_lines": len(lowrank[0].rstrip().splitlines()) if lowrank else 0,
    }))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oscillators", type=int, default=200)
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--mean-field", action="store_true", help="the oscillators and the cells read the rod's mean")
    parser.add_argument("--child", nargs=4, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], bool(args.child[2]), bool(args.child[3]))
        return
    from child_process import run_json_child

    rows = {}
    for label, kernels in (("before: kernels=False (unrolled)", 0), ("after: kernels=True (loops)", 1)):
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                runs.append(run_json_child(__file__, ["--child", str(args.oscillators), str(args.cells), str(kernels), str(int(args.mean_field))], cache))
        rows[label] = runs
    (before, after) = rows.values()
    dy_before, dy_after = np.array(before[0]["dy"]), np.array(after[0]["dy"])
    agreement = float(np.max(np.abs(dy_before - dy_after)) / np.max(np.abs(dy_before)))
    print(f"{args.oscillators} oscillators + a {args.cells}-cell rod ({2 * args.oscillators + args.cells} states), "
          f"median of {args.repeats} cold builds; the two rhs agree to {agreement:.1e}")  # fmt: skip
    header = f"{'form':<36}{'build s':>9}{'lower s':>9}{'render s':>10}{'rhs compile s':>15}{'rhs lines':>11}{'jac lines':>11}{'module lines':>14}{'rhs call us':>13}"
    if args.mean_field:
        header += f"{'lowrank lines':>15}{'rodas4 s':>10}"
    print(header)
    print("-" * len(header))
    for label, runs in rows.items():
        med = {key: float(np.median([r[key] for r in runs])) for key in ("build", "rhs_compile", "rhs_call")}
        lower = float(np.median([r["stages"].get("lower", 0.0) for r in runs]))
        render = float(np.median([r["stages"].get("render", 0.0) for r in runs]))
        print(f"{label:<36}{med['build']:>9.2f}{lower:>9.2f}{render:>10.2f}{med['rhs_compile']:>15.2f}"
              f"{runs[0]['rhs_lines']:>11,}{runs[0]['jac_lines']:>11,}{runs[0]['module_lines']:>14,}{med['rhs_call'] * 1e6:>13.1f}"
              + (f"{runs[0]['lowrank_lines']:>15,}{np.median([r['rodas4'] for r in runs]):>10.2f}" if args.mean_field else ""))  # fmt: skip


if __name__ == "__main__":
    main()
