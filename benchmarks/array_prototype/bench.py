"""Measure the array tracer on Gray-Scott: build time, numba compile time, time per
RHS call against hand-written @njit code, and correctness.

    python bench.py [n]      (default n = 100000; writes bench_results.json)
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
REPEATS = 5
PY = sys.executable

# Run in a fresh interpreter: sympy/numba caches are cold, as for a first build.
COLD_BUILD = """
import time, sys
t0 = time.perf_counter()
import emit, gray_scott
t1 = time.perf_counter()
src = emit.build(gray_scott.GrayScott({n}))
t2 = time.perf_counter()
print(t1 - t0, t2 - t1)
"""
COMPILE = """
import time, sys, importlib
import numpy as np, numba
sys.path.insert(0, "generated")
if {warm}:  # compile a trivial function first: numba's one-off start-up cost
    numba.njit(lambda x: x + 1.0)(1.0)
t0 = time.perf_counter()
m = importlib.import_module("{name}")
t1 = time.perf_counter()
y, p = np.full(m.N_STATES, 0.5), np.ones(len(m.PARAMETERS))
m.rhs(0.0, y, p, np.empty(m.N_STATES))
t2 = time.perf_counter()
m.jac_values(0.0, y, p, np.empty(m.JAC_NNZ))
t3 = time.perf_counter()
print(t1 - t0, t2 - t1, t3 - t2)
"""


def median_of(fn, repeats=REPEATS):
    return statistics.median(fn() for _ in range(repeats))


def run(code: str) -> list[float]:
    out = subprocess.run([PY, "-c", code], cwd=HERE, check=True, capture_output=True, text=True).stdout
    return [float(x) for x in out.split()]


def per_call(fn, args, calls: int) -> float:
    def once():
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(*args)
        return (time.perf_counter() - t0) / calls

    return median_of(once)


def main(n: int) -> dict:
    import emit
    from check import load
    from gray_scott import GrayScott, rhs_loop, rhs_loop_peeled, rhs_vectorised

    res: dict = {"n": n, "n_states": 2 * n}

    # 1. trace + segment + emit (warm: in this process; cold: fresh interpreter)
    def build_once(size: int) -> float:
        t0 = time.perf_counter()
        emit.build(GrayScott(size))
        return time.perf_counter() - t0

    build_once(n)
    res["build_warm_s"] = median_of(lambda: build_once(n))
    cold = [run(COLD_BUILD.format(n=n)) for _ in range(REPEATS)]
    res["import_emit_cold_s"] = statistics.median(c[0] for c in cold)
    res["build_cold_s"] = statistics.median(c[1] for c in cold)
    res["build_warm_by_n_s"] = {size: median_of(lambda: build_once(size)) for size in (1_000, 100_000, 10_000_000)}

    # 2. numba compile of the written module (fresh interpreter each time, no cache)
    name = f"gs_{n}"
    source = emit.build(GrayScott(n))
    m = load(source, name)
    res["module_lines"] = source.count("\n")
    res["jac_nnz"] = m.JAC_NNZ
    for warm in (False, True):
        comp = [run(COMPILE.format(name=name, warm=warm)) for _ in range(REPEATS)]
        tag = "_after_numba_warmup" if warm else ""
        res["module_import_s" + tag] = statistics.median(c[0] for c in comp)
        res["compile_rhs_first_call_s" + tag] = statistics.median(c[1] for c in comp)
        res["compile_jac_first_call_s" + tag] = statistics.median(c[2] for c in comp)

    # 3. correctness against the hand-written RHS on random data
    rng = np.random.default_rng(1)
    g = GrayScott(n)
    p = np.array([getattr(g.params, k) for k in m.PARAMETERS])
    y = rng.uniform(0.0, 1.0, 2 * n)
    dys = {}
    for label, fn in (("emitted", m.rhs), ("vectorised", rhs_vectorised), ("loop", rhs_loop), ("peeled", rhs_loop_peeled)):
        dys[label] = np.empty(2 * n)
        fn(0.0, y, p, dys[label])
    scale = np.max(np.abs(dys["vectorised"]))
    res["rel_err_emitted_vs_vectorised"] = float(np.max(np.abs(dys["emitted"] - dys["vectorised"])) / scale)
    res["rel_err_emitted_vs_loop"] = float(np.max(np.abs(dys["emitted"] - dys["loop"])) / scale)
    res["rel_err_emitted_vs_peeled"] = float(np.max(np.abs(dys["emitted"] - dys["peeled"])) / scale)
    # elementwise, where the value is not a cancellation near zero
    big = np.abs(dys["vectorised"]) > 1e-6 * scale
    res["max_elementwise_rel_err_vs_vectorised"] = float(np.max(np.abs(dys["emitted"] - dys["vectorised"])[big] / np.abs(dys["vectorised"])[big]))

    # 4. time per call (medians of 5 repeats of `calls` calls)
    calls = max(20, int(2e7 // n))
    dy = np.empty(2 * n)
    res["calls_per_repeat"] = calls
    res["us_per_call"] = {
        "emitted rhs": per_call(m.rhs, (0.0, y, p, dy), calls) * 1e6,
        "hand vectorised @njit": per_call(rhs_vectorised, (0.0, y, p, dy), calls) * 1e6,
        "hand loop @njit": per_call(rhs_loop, (0.0, y, p, dy), calls) * 1e6,
        "hand loop @njit, boundaries peeled": per_call(rhs_loop_peeled, (0.0, y, p, dy), calls) * 1e6,
        "emitted jac_values": per_call(m.jac_values, (0.0, y, p, np.empty(m.JAC_NNZ)), calls) * 1e6,
    }

    # 5. Jacobian vs finite differences (small n) and rhs vs do_step on numpy arrays
    from check import Nonlocal, check_model

    res["checks"] = [check_model(GrayScott(50), "gs50", rng), check_model(Nonlocal(20), "nonlocal20", rng)]
    return res


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    res = main(n)
    text = json.dumps(res, indent=2, default=float)
    print(text)
    (HERE / "bench_results.json").write_text(text + "\n")
