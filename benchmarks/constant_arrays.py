"""Issue 15: constant numpy arrays in the array form (Kuramoto with a constant weight matrix).

    python benchmarks/constant_arrays.py [--repeats 7] [--sizes 300 1000]

Model: ``tests/constant_arrays_model.py``, ``build_kuramoto(n, "matvec")``:
``d theta/dt = omega + k * (W @ np.sin(theta))`` with ``W`` (n x n) and ``omega`` (n)
plain numpy arrays of the system (not inputs): the generated module holds them as
module data (``CONST_W``, ``CONST_OMEGA``) and reads them by index in its loops.

- **cold build**, in a child process with an empty cache: the pipeline's stages, numba
  compiling ``rhs`` (its first call), a first ``simulate()`` of 0.1 time units (compiles
  ``observe`` and the DOPRI5 driver); module lines without the data at its end, and
  the file's size.
- **one RHS call** (median over repeats): the generated ``rhs`` against a hand-written
  ``@njit`` loop (``sin`` once per oscillator, then the double loop) that takes ``W`` as
  an argument; they agree to rounding (checked).
- **a run**: ``simulate(10.0, 0.1)`` with DOPRI5 (rtol 1e-6) of the built model.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MODELS = ROOT / "tests" / "constant_arrays_model.py"
sys.path.insert(0, str(ROOT / "tests"))

STAGES = ("trace", "flatten", "lower", "render", "write", "load")
DATA_MARKER = "# The model's values when this file was written"  # module lines: the code before the data


def child(n: int) -> None:
    """In a child: build, compile and first-run one size; print the timings as JSON."""
    import constant_arrays_model

    sim = constant_arrays_model.build_kuramoto(n, "matvec")
    sim.model_file = str(MODELS)
    start = time.perf_counter()
    result = sim.compile()
    built = time.perf_counter()
    module = result.module
    module.rhs(0.0, np.zeros(module.N_STATES), np.zeros(module.N_PARAMETERS), np.empty(module.N_STATES))
    rhs_compiled = time.perf_counter()
    sim.simulate(0.1, 0.1)
    done = time.perf_counter()
    text = Path(module.__file__).read_text()
    print(json.dumps({
        "stages": dict(result.timings), "build": built - start, "rhs_compile": rhs_compiled - built,
        "first_run": done - rhs_compiled, "total": done - start,
        "lines": text.split(DATA_MARKER)[0].count("\n"), "megabytes": len(text.encode()) / 1e6,
    }))  # fmt: skip


def run_child(n: int) -> dict:
    from child_process import run_json_child

    with tempfile.TemporaryDirectory(prefix="dyngen-constants-") as cache:
        return run_json_child(__file__, ["--child", str(n)], cache)


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def runtime_row(n: int, repeats: int) -> list[str]:
    import math

    from numba import njit

    import constant_arrays_model

    @njit(cache=False)
    def by_hand(y, dy, w, omega, k):
        s = np.empty(y.size)
        for j in range(y.size):  # sin once per oscillator, as the generated rhs does
            s[j] = math.sin(y[j])
        for i in range(y.size):
            total = 0.0
            for j in range(y.size):
                total += w[i, j] * s[j]
            dy[i] = omega[i] + k * total

    with tempfile.TemporaryDirectory(prefix="dyngen-constants-") as cache:
        sim = constant_arrays_model.build_kuramoto(n, "matvec")
        sim.cache_dir = cache
        module = sim.compile().module
        w, omega, theta0 = constant_arrays_model.weights(n)
        y, p = theta0 + np.random.default_rng(1).normal(0.0, 0.05, n), np.array([1.5])
        dy_generated, dy_hand = np.empty(n), np.empty(n)
        module.rhs(0.0, y, p, dy_generated)
        by_hand(y, dy_hand, w, omega, 1.5)
        agreement = float(np.max(np.abs(dy_generated - dy_hand)) / np.max(np.abs(dy_hand)))
        assert agreement < 1e-12, (n, agreement)
        count = max(1, int(2e6 // n**2))
        generated = median_time(lambda: [module.rhs(0.0, y, p, dy_generated) for _ in range(count)], repeats) / count
        hand = median_time(lambda: [by_hand(y, dy_hand, w, omega, 1.5) for _ in range(count)], repeats) / count
        sim.simulate(0.1, 0.1)  # compiled
        start = time.perf_counter()
        sim.simulate(10.0, 0.1, rtol=1e-6)
        run = time.perf_counter() - start
    return [str(n), f"{hand * 1e6:.1f} µs", f"{generated * 1e6:.1f} µs", f"**{generated / hand:.2f}x**",
            f"{agreement:.0e}", f"{run:.2f} s"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--sizes", type=int, nargs="+", default=[300, 1000])
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child))
        return
    header = ["n", *STAGES, "build", "rhs compile", "first simulate", "cold total", "module lines", "module MB"]
    print("Cold build (fresh process and cache), in s:\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for n in args.sizes:
        cold = run_child(n)
        row = [str(n), *(f"{cold['stages'].get(s, 0.0):.2f}" for s in STAGES), f"{cold['build']:.2f}",
               f"{cold['rhs_compile']:.2f}", f"{cold['first_run']:.2f}", f"**{cold['total']:.2f}**", str(cold["lines"]),
               f"{cold['megabytes']:.1f}"]  # fmt: skip
        print("| " + " | ".join(row) + " |", flush=True)
    print(f"\nOne RHS call (median of {args.repeats}) against a hand-written @njit double loop; "
          "simulate(10.0, 0.1) with DOPRI5, rtol 1e-6:\n")  # fmt: skip
    header = ["n", "hand-written", "generated", "generated / hand", "agreement", "simulate 10 time units"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for n in args.sizes:
        print("| " + " | ".join(runtime_row(n, args.repeats)) + " |", flush=True)


if __name__ == "__main__":
    main()
