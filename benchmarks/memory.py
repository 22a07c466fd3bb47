"""Issue 16 (memory): resident memory of one process that builds and runs many
distinct models, one after the other, keeping none of them.

    python benchmarks/memory.py [--models 30] [--keep] [--cache DIR]

Model ``i`` is a scalar decay whose rate is a class constant ``1 + i / 1000`` (the
constant is baked into the generated module, so every model is a distinct module:
trace, render, import and numba compilation of ``rhs``, ``observe`` and the dopri5
driver).  After each ``simulate()`` the ``Simulation`` is dropped (``--keep``: kept
in a list, as a notebook that holds every model would) and the garbage collected;
the resident set size (VmRSS) is printed.  A fresh temporary cache is used unless
``--cache`` is given.  The last line is the growth per model over the second half
of the run (the first models also load numba, sympy and scipy code once).
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time


def rss_mb() -> float:
    """This process's resident set size, in MB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def make_class(index: int) -> type:
    from dyngen import System

    class Decay(System):
        rate = 1.0 + index / 1000

        def __init__(self) -> None:
            super().__init__()
            self.states.x = 1.0
            self.ders.x = 0.0

        def do_step(self, time: float) -> None:
            self.ders.x = -self.rate * self.states.x

    Decay.__qualname__ = Decay.__name__ = f"Decay{index}"
    return Decay


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=30)
    parser.add_argument("--keep", action="store_true", help="keep every Simulation alive")
    parser.add_argument("--cache", default=None, help="cache folder (default: a fresh temporary one)")
    args = parser.parse_args()
    cache = args.cache or tempfile.mkdtemp(prefix="dyngen-memory-")
    os.environ["DYNGEN_CACHE_DIR"] = cache

    from dyngen import Simulation

    kept = []
    figures = []
    print(f"# cache {cache}; start {rss_mb():.1f} MB", flush=True)
    for index in range(args.models):
        start = time.perf_counter()
        sim = Simulation()
        system = make_class(index)()
        sim.add_system(system)
        sim.simulate(1.0, 0.5)
        if args.keep:
            kept.append(sim)
        del sim, system
        gc.collect()
        figures.append(rss_mb())
        print(f"model {index + 1:3d}: {figures[-1]:8.1f} MB  ({time.perf_counter() - start:.1f} s)", flush=True)
    half = len(figures) // 2
    if len(figures) - half >= 2:
        per_model = (figures[-1] - figures[half - 1]) / (len(figures) - half)
        print(f"growth per model over models {half + 1}-{len(figures)}: {per_model:.2f} MB")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
