"""Issue 15: build time of models whose Jacobian goes through np.max/np.min/np.prod and nested reductions.

    python benchmarks/reductions_jacobian.py [--repeats 3] [--only lowrank|nested]

The models of ``tests/lowrank_model.py`` (the ones ``tests/test_lowrank.py`` checks
against central differences and dynode) and, with ``nested``, those of
``tests/nested_model.py`` (reductions whose summands read other reductions,
``tests/test_nested_reductions.py``) and ``tests/kernels_arrays_model.py`` (sums over an
array whose summands read signals of loops over instances), each at two sizes.  Each
build runs in a fresh process with empty dyngen and numba caches; columns (medians over
``--repeats``):

- **build**: ``sim.compile()`` (trace, flatten, lower, render, import);
- **jac compile**: the first calls of ``jac_values`` and ``jac_lowrank`` (numba).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
NESTED = [  # (model file, builder, args)
    *[("nested_model.py", "build", [n, m, case]) for case in ("row_of_global", "global_of_rows", "shifted", "rows_of_rows", "deep")
      for n, m in ((12, 10), (200, 150))],
    ("kernels_arrays_model.py", "build", [20, 200, True, False, True, True]),
    ("kernels_arrays_model.py", "build", [200, 2000, True, False, True, True]),
    ("kernels_arrays_model.py", "build_thermostat", [20, 200, True]),
    ("kernels_arrays_model.py", "build_thermostat", [200, 2000, True]),
]
MODELS = [
    ("build_extremes", [[80], "max"]),
    ("build_extremes", [[12, 10], "max"]),
    ("build_extremes", [[12, 10], "prod"]),
    ("build_extremes", [[12, 10], "all"]),
    ("build_extremes", [[12, 10], "nested"]),
    ("build_max_field", [100, True]),
    ("build_extremes_along_axes", [12, 10, "max"]),
    ("build_extremes_along_axes", [12, 10, "min"]),
    ("build_extremes_along_axes", [12, 10, "prod"]),
    ("build_extremes", [[200, 150], "all"]),
    ("build_extremes_along_axes", [200, 150, "max"]),
]


def child(model: str, builder: str, args: list) -> None:
    """Build one model in this (fresh) process; print the two times."""
    import numpy as np

    sys.path.insert(0, str(HERE.parent / "tests"))
    from dynode_compare import build_simulation

    sim = build_simulation(HERE.parent / "tests" / model, "dyngen", builder,
                           *[tuple(a) if isinstance(a, list) else a for a in args])  # fmt: skip
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        module = sim.compile().module
    built = time.perf_counter()
    y, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    module.jac_values(0.0, y, p, np.empty(module.JAC_NNZ))
    if getattr(module, "N_LOWRANK", 0):
        U = np.zeros((module.N_STATES, module.N_LOWRANK))
        module.jac_lowrank(0.0, y, p, U, U.copy())
    print(json.dumps([built - start, time.perf_counter() - built, module.N_STATES, int(getattr(module, "N_LOWRANK", 0))]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=("lowrank", "nested"))
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child[0], options.child[1], json.loads(options.child[2]))
        return
    models = [("lowrank_model.py", builder, args) for builder, args in MODELS] if options.only != "nested" else []
    models += NESTED if options.only != "lowrank" else []
    print(f"{'model':<56} {'states':>7} {'rank':>4} {'build s':>8} {'jac compile s':>14}")
    for model, builder, args in models:
        builds, jacs = [], []
        for _ in range(options.repeats):
            env = dict(os.environ, DYNGEN_CACHE_DIR=tempfile.mkdtemp(), DYNGEN_PROGRESS="0", NUMBA_CACHE_DIR=tempfile.mkdtemp())
            out = subprocess.run([sys.executable, __file__, "--child", model, builder, json.dumps(args)], env=env,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            build, jac, n, rank = json.loads(out.stdout.splitlines()[-1])
            builds.append(build)
            jacs.append(jac)
        name = f"{builder}{tuple(args)}"
        print(f"{name:<56} {n:>7} {rank:>4} {statistics.median(builds):>8.2f} {statistics.median(jacs):>14.2f}", flush=True)


if __name__ == "__main__":
    main()
