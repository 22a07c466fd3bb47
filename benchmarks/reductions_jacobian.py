"""Issue 15: build time of models whose Jacobian goes through np.max/np.min/np.prod and nested reductions.

    python benchmarks/reductions_jacobian.py [--repeats 3]

The models of ``tests/lowrank_model.py`` (the ones ``tests/test_lowrank.py`` checks
against central differences and dynode).  Each build runs in a fresh process with
empty dyngen and numba caches; columns (medians over ``--repeats``):

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


def child(builder: str, args: list) -> None:
    """Build one model in this (fresh) process; print the two times."""
    import numpy as np

    sys.path.insert(0, str(HERE.parent / "tests"))
    from dynode_compare import build_simulation

    sim = build_simulation(HERE.parent / "tests" / "lowrank_model.py", "dyngen", builder,
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
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child[0], json.loads(options.child[1]))
        return
    print(f"{'model':<48} {'states':>7} {'rank':>4} {'build s':>8} {'jac compile s':>14}")
    for builder, args in MODELS:
        builds, jacs = [], []
        for _ in range(options.repeats):
            env = dict(os.environ, DYNGEN_CACHE_DIR=tempfile.mkdtemp(), DYNGEN_PROGRESS="0", NUMBA_CACHE_DIR=tempfile.mkdtemp())
            out = subprocess.run([sys.executable, __file__, "--child", builder, json.dumps(args)], env=env,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            build, jac, n, rank = json.loads(out.stdout.splitlines()[-1])
            builds.append(build)
            jacs.append(jac)
        name = f"{builder}{tuple(args)}"
        print(f"{name:<48} {n:>7} {rank:>4} {statistics.median(builds):>8.2f} {statistics.median(jacs):>14.2f}", flush=True)


if __name__ == "__main__":
    main()
