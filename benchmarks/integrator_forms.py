"""dyngen's shared compiled integrators against a model's own, side by side.

    python benchmarks/integrator_forms.py [--rounds R] [--sizes 1,2,4,10] [--no-compile]

The shared integrators (``dyngen/runtime/compiled_methods.py``) are compiled once per
installation and call the model's rhs through a function pointer; a model's own
(``--standalone``, or ``runtime/specialize.py``) are compiled for it (the rhs called
directly, the number of states a constant).  For Van der Pol pairs (4 states per
pair, t = 20, dt = 0.1, rtol 1e-6, atol 1e-12, as benchmarks/run.py) this prints:

- *run*: one compiled whole run without observers (``compiled.run_recorded``), the
  median of R interleaved rounds of a few runs each, for the two forms; their ratio;
- *call*: a call that integrates nothing (0 intervals): the fixed cost of one call;
- *compile* (fresh subprocesses, numba's cache in an empty folder): the shared
  routines' one-off compile (dopri5 driver) and a model's own (rhs + dopri5 driver),
  against the same model's rhs alone.
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

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

COMPILE_SNIPPET = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import bench_models as bm
from dyngen.runtime import compiled
from dyngen.runtime.integrators import dynode_options
sim, info = bm.build_vdp_pairs(int(sys.argv[2]))
sim.standalone = {"shared": False, "own": True}[sys.argv[3]]
module = sim.compile().module
model = sim._model
y0, p = model.gather_states(), model.gather_parameters()
start = time.perf_counter()
module.rhs(0.0, y0.copy(), p, np.empty(len(y0)))
rhs = time.perf_counter()
compiled.run_recorded(module, "dopri5", 0.0, y0, p, 0.1, 0.1, dynode_options(0.1, False, {}), True, False,
                      specialize=False)
done = time.perf_counter()
print(json.dumps({"rhs": rhs - start, "driver": done - rhs}))
"""


def compile_times(n: int, form: str) -> dict:
    """rhs and dopri5-driver compile times in a new process with empty caches."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as numba_cache:
        env = dict(os.environ, DYNGEN_CACHE_DIR=cache, NUMBA_CACHE_DIR=numba_cache)
        out = subprocess.run(
            [sys.executable, "-c", COMPILE_SNIPPET, str(HERE), str(n), form], env=env, capture_output=True,
            text=True, check=True,
        )  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])


def run_times(n: int, rounds: int) -> dict:
    import numpy as np

    import bench_models as bm
    from dyngen.runtime import compiled
    from dyngen.runtime.integrators import dynode_options

    results = {}
    forms = {}
    for form, standalone in (("shared", False), ("own", True)):
        sim, info = bm.build_vdp_pairs(n)
        sim.standalone = standalone
        sim.model_name = f"integrator_forms_{n}_{form}"
        module = sim.compile().module
        forms[form] = (module, sim._model.gather_states(), sim._model.gather_parameters())
    options = dynode_options(info["dt"], False, {"rtol": info["rtol"], "atol": info["atol"]})

    def run(form: str, duration: float) -> None:
        module, y0, p = forms[form]
        result = compiled.run_recorded(module, "dopri5", 0.0, y0, p, duration, info["dt"], options, True, False,
                                       specialize=False)  # fmt: skip
        assert result.status == 1

    samples = {(form, what): [] for form in forms for what in ("run", "call")}
    for form in forms:
        run(form, info["t"])  # compile / load
    final = {form: None for form in forms}
    for _ in range(rounds):
        for form in forms:
            start = time.perf_counter()
            for _ in range(5):
                run(form, info["t"])
            samples[form, "run"].append((time.perf_counter() - start) / 5)
            start = time.perf_counter()
            for _ in range(200):
                run(form, 0.0)
            samples[form, "call"].append((time.perf_counter() - start) / 200)
    for form in forms:  # the same trajectory, bit for bit
        module, y0, p = forms[form]
        final[form] = compiled.run_recorded(module, "dopri5", 0.0, y0, p, info["t"], info["dt"], options, True, False,
                                            specialize=False).y  # fmt: skip
    results["identical"] = bool(np.array_equal(final["shared"], final["own"]))
    for key, values in samples.items():
        results[key] = statistics.median(values)
    return results


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--sizes", default="1,2,4,10", help="numbers of VdP pairs (4 states each)")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile-time subprocesses")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print("| VdP pairs | states | run shared | run own | shared / own | call shared | call own | same trajectory |")
    print("|---|---|---|---|---|---|---|---|")
    for n in sizes:
        r = run_times(n, args.rounds)
        print(
            f"| {n} | {4 * n} | {fmt(r['shared', 'run'])} | {fmt(r['own', 'run'])} | "
            f"{r['shared', 'run'] / r['own', 'run']:.2f}x | {fmt(r['shared', 'call'])} | {fmt(r['own', 'call'])} | "
            f"{'yes' if r['identical'] else 'NO'} |",
            flush=True,
        )
    if args.no_compile:
        return
    print()
    print("| VdP pairs | form | rhs compile | dopri5 driver compile (once per installation for shared) |")
    print("|---|---|---|---|")
    for form in ("shared", "own"):
        times = [compile_times(1, form) for _ in range(3)]
        print(
            f"| 1 | {form} | {fmt(statistics.median(t['rhs'] for t in times))} | "
            f"{fmt(statistics.median(t['driver'] for t in times))} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
