"""Issue 15: build time of models reading maxima, minima and sums of a few dozen elements.

    python benchmarks/element_extremes.py [--repeats 3] [--only clip]

The models of ``tests/extremes_model.py`` (checked by ``tests/test_element_extremes.py``
against numpy, central differences and dynode).  Each build runs in a fresh process with
an empty dyngen cache; columns are medians over ``--repeats`` of ``sim.compile()`` (trace,
flatten, lower, render, import), its lower stage, and the form the vector took (``array``:
promoted, one low-rank term per reduction; ``element``: element by element).  The last
rows are refusals: the time until the TraceError.
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
MODELS = [("build", [n, kind]) for kind in ("max", "method", "reduce", "sum", "builtin", "nested", "clip") for n in (24, 40, 63)]
MODELS += [("build", [100, "max"]), ("build", [100, "builtin"]), ("build_filled", [200]), ("build_where_chain", [2])]


def child(builder: str, args: list) -> None:
    """Build one model in this (fresh) process; print the times."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from dynode_compare import build_simulation

    sim = build_simulation(HERE.parent / "tests" / "extremes_model.py", "dyngen", builder, *args)
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = sim.compile()
    except Exception as error:  # noqa: BLE001 - a refusal is the measured outcome
        print(json.dumps([time.perf_counter() - start, 0.0, f"refused ({type(error).__name__})"]))
        return
    form = "array" if getattr(result.module, "N_LOWRANK", 0) else "element"
    print(json.dumps([time.perf_counter() - start, result.timings.get("lower", 0.0), form]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", default="", help="rows whose label contains this text (e.g. clip)")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.child:
        child(options.child[0], json.loads(options.child[1]))
        return
    print(f"{'model':<34} {'form':>18} {'build s':>8} {'lower s':>8}")
    for builder, args in MODELS:
        if options.only not in f"{builder}({', '.join(map(repr, args))})":
            continue
        builds, lowers, form = [], [], ""
        for _ in range(options.repeats):
            env = dict(os.environ, DYNGEN_CACHE_DIR=tempfile.mkdtemp(), DYNGEN_PROGRESS="0")
            out = subprocess.run([sys.executable, __file__, "--child", builder, json.dumps(args)], env=env,
                                 capture_output=True, text=True, check=True)  # fmt: skip
            build, lower, form = json.loads(out.stdout.splitlines()[-1])
            builds.append(build)
            lowers.append(lower)
        label = f"{builder}({', '.join(map(repr, args))})"
        print(f"{label:<34} {form:>18} {statistics.median(builds):8.2f} {statistics.median(lowers):8.2f}", flush=True)


if __name__ == "__main__":
    main()
