"""dynode 0.4 vs dyngen on the examples: simulate time and cold/warm build time.

    python benchmarks/core_vs_dynode.py [--repeats N] [--t T] [--dt DT]

All timings are medians of repeated runs in one process (the build ones in fresh
subprocesses).  "run" is simulate() on an already built model (scipy's ode calling
the generated rhs); "first" is simulate() on a fresh Simulation in a process that
has the module loaded (its structure key finds the module); "cold build" is a
new process with an empty cache, from after the imports to the end of a first
simulate() with a Recorder of the first system's states (trace, lower, render,
write, numba compile of rhs and observe; the dopri5 driver is compiled once per
installation, not per model); "warm build" is the same in a new process with the
cache filled.
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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from models import EXAMPLES, load  # noqa: E402

BUILD_SNIPPET = r"""
import json, sys, time
start = time.perf_counter()
import numpy as np
from dyngen.modelfile import load_model
imported = time.perf_counter()
from dyngen import Recorder
sim = load_model(sys.argv[1])
result = sim.compile()
recorder = Recorder()
recorder.store(sim.systems[0], "states")  # a user looks at the states: observe is compiled too
sim.add_observer(recorder)
sim.simulate(0.1, 0.1)  # the first interval: rhs, observe and the dopri5 driver
done = time.perf_counter()
print(json.dumps({"build": done - imported, "reused": result.reused}))
"""


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def simulate_times(path: Path, t: float, dt: float, repeats: int) -> dict[str, float]:
    dynode_model = load(path, "dynode")
    dyngen_model = load(path, "dyngen")

    def dynode_run() -> None:
        dynode_model.build().simulate(t, dt)

    dyngen_model.build().simulate(t, dt)  # warm up: load module, numba cache
    sims = [dyngen_model.build() for _ in range(repeats)]
    for sim in sims:
        sim.compile()
    queue = list(sims)

    def dyngen_run() -> None:
        queue.pop().simulate(t, dt)

    def dyngen_first() -> None:
        dyngen_model.build().simulate(t, dt)

    return {
        "dynode": _median_time(dynode_run, repeats),
        "dyngen run": _median_time(dyngen_run, repeats),
        "dyngen first": _median_time(dyngen_first, repeats),
    }


def build_times(path: Path, repeats: int) -> dict[str, float]:
    cold, warm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as cache:
            env = dict(os.environ, DYNGEN_CACHE_DIR=cache)
            for bucket in (cold, warm):
                out = subprocess.run(
                    [sys.executable, "-c", BUILD_SNIPPET, str(path)],
                    env=env, capture_output=True, text=True, check=True,
                )  # fmt: skip
                bucket.append(json.loads(out.stdout)["build"])
    return {"cold build": statistics.median(cold), "warm build": statistics.median(warm)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--build-repeats", type=int, default=3)
    parser.add_argument("--t", type=float, default=20.0)
    parser.add_argument("--dt", type=float, default=0.1)
    args = parser.parse_args()

    header = (
        f"{'example':<20} {'dynode':>10} {'dyngen run':>11} {'speed-up':>9} "
        f"{'first sim':>10} {'cold build':>11} {'warm build':>11}"
    )
    print(f"t = {args.t}, observer_dt = {args.dt}, dopri5; medians of {args.repeats} runs "
          f"(builds: {args.build_repeats} fresh processes)")
    print(header)
    print("-" * len(header))
    for path in EXAMPLES:
        sim = simulate_times(path, args.t, args.dt, args.repeats)
        build = build_times(path, args.build_repeats)
        print(
            f"{path.stem:<20} {sim['dynode'] * 1e3:8.2f}ms {sim['dyngen run'] * 1e3:9.2f}ms "
            f"{sim['dynode'] / sim['dyngen run']:8.1f}x {sim['dyngen first'] * 1e3:8.2f}ms "
            f"{build['cold build']:10.2f}s {build['warm build']:10.2f}s",
            flush=True,
        )


if __name__ == "__main__":
    main()
