"""Issue 15: many small components reading single elements of a grid's reductions along an axis.

    python benchmarks/reduced_elements.py [--oscillators 40 200] [--repeats 3]

Model: ``tests/axis_reductions_model.py``'s ``build_with_oscillators(12, 10, n, True)`` --
a 12 x 10 grid in array form whose column means and row maxima are outputs, and ``n``
damped oscillators, each driven by one column's mean and one row's maximum
(``grid.outputs.colmean[k]``).

For each form, in a child process with an empty module cache (median of ``repeats``):

- **before**: ``kernels=False`` -- what such a model got until each element read became
  a sum of its own (``dyngen/element_sums.py``): every oscillator signal unrolled;
- **after**: ``kernels=True`` -- one loop over the oscillators, the element sums before it.

Columns: the build (trace to loaded module), the numba compilation of ``rhs`` and
``jac_values`` (their first calls), the lines of ``rhs`` and of the module, and one
``rhs`` call (median of 2,000).  The two forms' ``rhs`` agree to rounding (checked here;
tests/test_axis_reductions.py checks the model against dynode).
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
sys.path.insert(0, str(HERE))
MODEL = HERE.parent / "tests" / "axis_reductions_model.py"


def child(oscillators: int, kernels: bool) -> None:
    """In a child: build and compile the model; print the figures as JSON."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from child_process import median_rhs_call
    from dynode_compare import build_simulation

    sim = build_simulation(MODEL, "dyngen", "build_with_oscillators", 12, 10, oscillators, True)
    sim.kernels = kernels
    start = time.perf_counter()
    module = sim.compile().module
    built = time.perf_counter()
    y, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    dy, values = np.empty(module.N_STATES), np.empty(module.JAC_NNZ)
    module.rhs(0.0, y, p, dy)
    module.jac_values(0.0, y, p, values)
    compiled = time.perf_counter()
    at_start = dict(zip(module.STATE_NAMES, dy.tolist()))  # (the two forms lay the states out differently)
    y = y + np.random.default_rng(1).normal(0.0, 0.1, y.size)
    rhs_call = median_rhs_call(module, y, p, dy)
    text = Path(module.__file__).read_text()
    rhs = re.search(r"^def rhs\(.*?(?=^\S)", text, re.S | re.M)[0]
    print(json.dumps({"build": built - start, "compile": compiled - built, "rhs_lines": len(rhs.rstrip().splitlines()),
                      "module_lines": text.count("\n"), "rhs_call": rhs_call, "dy": at_start}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--oscillators", type=int, nargs="+", default=[40, 200])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], bool(args.child[1]))
        return
    from child_process import run_json_child

    print(f"a 12 x 10 grid + n oscillators reading its column means and row maxima; median of {args.repeats} cold builds")
    header = f"{'n':>5}  {'form':<32}{'build s':>9}{'compile s':>11}{'rhs lines':>11}{'module lines':>14}{'rhs call us':>13}"
    print(header)
    print("-" * len(header))
    for n in args.oscillators:
        rows = {}
        for label, kernels in (("before: kernels=False (unrolled)", 0), ("after: kernels=True (loops)", 1)):
            runs = []
            for _ in range(args.repeats):
                with tempfile.TemporaryDirectory() as cache:
                    runs.append(run_json_child(__file__, ["--child", str(n), str(kernels)], cache))
            rows[label] = runs
        before, after = (runs[0]["dy"] for runs in rows.values())
        scale = max(abs(x) for x in before.values())
        assert before.keys() == after.keys() and all(abs(before[k] - after[k]) <= 1e-12 * scale for k in before), "rhs differ"
        for label, runs in rows.items():
            med = {key: float(np.median([r[key] for r in runs])) for key in ("build", "compile", "rhs_call")}
            print(f"{n:>5}  {label:<32}{med['build']:>9.2f}{med['compile']:>11.2f}{runs[0]['rhs_lines']:>11,}"
                  f"{runs[0]['module_lines']:>14,}{med['rhs_call'] * 1e6:>13.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
