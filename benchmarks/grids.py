"""Issue 15 (array models): 2-D Gray–Scott grids and all-to-all Kuramoto networks.

    python benchmarks/grids.py [--repeats 7] [--cold-repeats 3] [--quick] [--cases NAME ...]

Models: ``tests/grids_model.py`` — Gray–Scott on a periodic n x n grid (2-D states,
``np.roll`` along both axes; the ``flat_`` cases: ``tests/reshape_model.py``, both species
in one flat state read with ``y[:nm].reshape(n, m)`` and written with
``np.concatenate([du.ravel(), dv.ravel()])``) and Kuramoto with N oscillators coupled through an N x N
weight matrix (an input, i.e. a parameter array), written with broadcasting
(``np.sum(W * np.sin(theta[None, :] - theta[:, None]), axis=1)``) and with ``W @ v``.

- **cold build**, in a child process with an empty cache: trace, flatten, lower,
  render, write, load (the pipeline's stages), then numba compiling ``rhs`` (its
  first call) and a first short ``simulate()``; "of it, the run": a second
  ``simulate()`` of the same span (the integration itself, which for Kuramoto 3,000 is
  ~10 RHS calls of ~0.13 s); "build without the run": the cold total minus that;
  module lines (the code, before the default values at its end). Each column is the
  median over ``--cold-repeats`` children (each with its own empty cache).
- **one RHS call** (median over repeats): the generated ``rhs`` against a
  hand-written ``@njit`` loop nest in the same ``(t, y, p, dy)`` layout; they agree to
  rounding (checked).
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
sys.path.insert(0, str(ROOT / "tests"))

STAGES = ("trace", "flatten", "lower", "render", "write", "load")
CASES = {  # name -> (builder, args, simulated time of the first run)
    "gray_scott_100": ("build_gray_scott", (100, 100), 0.5),
    "gray_scott_1000": ("build_gray_scott", (1000, 1000), 0.5),
    "flat_gray_scott_100": ("build_flat_gray_scott", (100, 100, "slices"), 0.5),
    "flat_gray_scott_1000": ("build_flat_gray_scott", (1000, 1000, "slices"), 0.5),
    "kuramoto_300_broadcast": ("build_kuramoto", (300, "broadcast"), 0.1),
    "kuramoto_300_matrix": ("build_kuramoto", (300, "matrix"), 0.1),
    "kuramoto_3000_broadcast": ("build_kuramoto", (3000, "broadcast"), 0.1),
    "kuramoto_3000_matrix": ("build_kuramoto", (3000, "matrix"), 0.1),
}
QUICK = ("gray_scott_100", "flat_gray_scott_100", "kuramoto_300_broadcast", "kuramoto_300_matrix")
DATA_MARKER = "# The model's values when this file was written"  # module lines: the code before the data


def model_of(builder: str):  # noqa: ANN201 - a module
    """The test model module that has ``builder``."""
    import grids_model
    import reshape_model

    return reshape_model if builder.startswith("build_flat_") else grids_model


def child(case: str) -> None:
    """In a child: build, compile and first-run one case; print the timings as JSON."""
    builder, args, span = CASES[case]
    models = model_of(builder)
    sim = getattr(models, builder)(*args)
    sim.model_file = models.__file__
    start = time.perf_counter()
    result = sim.compile()
    built = time.perf_counter()
    module = result.module
    module.rhs(0.0, np.zeros(module.N_STATES), np.zeros(module.N_PARAMETERS), np.empty(module.N_STATES))
    rhs_compiled = time.perf_counter()
    sim.simulate(span, span)
    done = time.perf_counter()
    sim.simulate(span, span)  # the same span again: the run itself, nothing left to compile
    again = time.perf_counter() - done
    print(json.dumps({
        "stages": dict(result.timings), "build": built - start, "rhs_compile": rhs_compiled - built,
        "first_run": done - rhs_compiled, "total": done - start, "run": again,
        "lines": Path(module.__file__).read_text().split(DATA_MARKER)[0].count("\n"),
    }))  # fmt: skip


def run_child(case: str) -> dict:
    from child_process import run_json_child

    with tempfile.TemporaryDirectory(prefix="dyngen-grids-") as cache:
        return run_json_child(__file__, ["--child", case], cache)


def cold_medians(case: str, repeats: int) -> dict:
    """Each timing of the cold build: its median over ``repeats`` children (column by column)."""
    runs = [run_child(case) for _ in range(repeats)]
    median = lambda values: float(np.median(list(values)))  # noqa: E731
    return {
        "stages": {s: median(r["stages"].get(s, 0.0) for r in runs) for s in STAGES},
        **{k: median(r[k] for r in runs) for k in ("build", "rhs_compile", "first_run", "total", "run")},
        "without_run": median(r["total"] - r["run"] for r in runs),
        "lines": runs[0]["lines"],
    }


def hand_written() -> dict:
    """The RHS of each model written by hand as ``@njit`` loop nests (positions in y and p as arguments)."""
    import math

    from numba import njit

    @njit(cache=False)
    def gray_scott(y, p, dy, n, m, iu, iv, pDu, pDv, pF, pk):
        u, v = y[iu:iu + n * m].reshape(n, m), y[iv:iv + n * m].reshape(n, m)
        du, dv = dy[iu:iu + n * m].reshape(n, m), dy[iv:iv + n * m].reshape(n, m)
        Du, Dv, F, k = p[pDu], p[pDv], p[pF], p[pk]
        for i in range(n):  # periodic neighbours without modulo
            up, down = i - 1 if i > 0 else n - 1, i + 1 if i < n - 1 else 0
            for j in range(m):
                left, right = j - 1 if j > 0 else m - 1, j + 1 if j < m - 1 else 0
                uu, vv = u[i, j], v[i, j]
                lap_u = u[up, j] + u[down, j] + u[i, left] + u[i, right] - 4.0 * uu
                lap_v = v[up, j] + v[down, j] + v[i, left] + v[i, right] - 4.0 * vv
                uvv = uu * vv * vv
                du[i, j] = Du * lap_u - uvv + F * (1.0 - uu)
                dv[i, j] = Dv * lap_v + uvv - (F + k) * vv

    @njit(cache=False)
    def kuramoto(y, p, dy, n, pomega, pK, pW):
        K = p[pK]
        for i in range(n):
            total = 0.0
            for j in range(n):
                total += p[pW + i * n + j] * math.sin(y[j] - y[i])
            dy[i] = p[pomega + i] + K / n * total

    return {"gray_scott": gray_scott, "kuramoto": kuramoto}


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def runtime_row(case: str, repeats: int, hand: dict) -> list[str]:
    builder, args, _ = CASES[case]
    with tempfile.TemporaryDirectory(prefix="dyngen-grids-") as cache:
        sim = getattr(model_of(builder), builder)(*args)
        sim.cache_dir = cache
        module = sim.compile().module
    system = sim.systems[0]
    y = np.concatenate([np.ravel(system.states[k]) for k in module.STATES[module.SYSTEMS[0]]])
    p = np.empty(module.N_PARAMETERS)
    layout = module.PARAMETERS[module.SYSTEMS[0]]
    for key, (start, stop, shape) in layout.items():
        p[start:stop] = np.ravel(system.inputs[key.split(".", 1)[1]])
    rng = np.random.default_rng(1)
    y = y + rng.normal(0.0, 0.05, y.size)
    states = module.STATES[module.SYSTEMS[0]]
    if builder in ("build_gray_scott", "build_flat_gray_scott"):
        n, m = args[:2]
        iu, iv = (states["u"][0], states["v"][0]) if "u" in states else (states["y"][0], states["y"][0] + n * m)
        extra = (n, m, iu, iv, *(layout[f"inputs.{k}"][0] for k in ("Du", "Dv", "F", "k")))
        reference = hand["gray_scott"]
    else:
        extra = (args[0], layout["inputs.omega"][0], layout["inputs.K"][0], layout["inputs.W"][0])
        reference = hand["kuramoto"]
    dy_generated, dy_hand = np.empty_like(y), np.empty_like(y)
    module.rhs(0.0, y, p, dy_generated)
    reference(y, p, dy_hand, *extra)
    agreement = float(np.max(np.abs(dy_generated - dy_hand)) / np.max(np.abs(dy_hand)))
    assert agreement < 1e-10, (case, agreement)
    count = max(1, int(2e6 // y.size)) if "gray_scott" in builder else max(1, int(2e6 // args[0] ** 2))
    generated = median_time(lambda: [module.rhs(0.0, y, p, dy_generated) for _ in range(count)], repeats) / count
    by_hand = median_time(lambda: [reference(y, p, dy_hand, *extra) for _ in range(count)], repeats) / count
    return [case, f"{y.size:,}", f"{by_hand * 1e6:.1f} µs", f"{generated * 1e6:.1f} µs", f"**{generated / by_hand:.2f}x**",
            f"{agreement:.0e}"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--cold-repeats", type=int, default=3, help="cold-build children per case (medians)")
    parser.add_argument("--quick", action="store_true", help="the small cases only, 3 repeats")
    parser.add_argument("--cases", nargs="+", choices=tuple(CASES), help="these cases only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    cases = tuple(args.cases) if args.cases else QUICK if args.quick else tuple(CASES)
    repeats = 3 if args.quick else args.repeats
    header = ["case", *STAGES, "build", "rhs compile", "first simulate", "cold total", "of it, the run",
              "build without the run", "module lines"]  # fmt: skip
    cold_repeats = 1 if args.quick else args.cold_repeats
    print(f"Cold build (fresh process and cache, medians of {cold_repeats} children), in s:\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for case in cases:
        cold = cold_medians(case, cold_repeats)
        row = [case, *(f"{cold['stages'].get(s, 0.0):.2f}" for s in STAGES), f"{cold['build']:.2f}",
               f"{cold['rhs_compile']:.2f}", f"{cold['first_run']:.2f}", f"{cold['total']:.2f}", f"{cold['run']:.2f}",
               f"**{cold['without_run']:.2f}**", str(cold["lines"])]  # fmt: skip
        print("| " + " | ".join(row) + " |", flush=True)
    hand = hand_written()
    print(f"\nOne RHS call (median of {repeats}), generated against a hand-written @njit loop nest:\n")
    header = ["case", "states", "hand-written", "generated", "generated / hand", "agreement"]
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for case in cases:
        print("| " + " | ".join(runtime_row(case, repeats, hand)) + " |", flush=True)


if __name__ == "__main__":
    main()
