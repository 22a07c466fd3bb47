"""Issue 4 (scale): build time per stage, memory and run time of large models.

    python benchmarks/scale.py [--sizes 10 100 1000 10000] [--quick] [--no-jitcode]

Model: ``bench_models.build_vdp_ring(n)``, a ring of n Van der Pol components, each
pulled towards its left neighbour by a pre-connection.  Every build runs in a child
process with an empty cache (cold) and then again in a new child on that cache
(warm), so nothing is shared with this process:

- cold: trace, flatten, lower, render, write, load (import of the module) and the
  first ``simulate()`` (numba compiles rhs/observe and the dopri5 driver), plus the
  peak resident memory of the child;
- warm: a new process on the same cache, from after the imports to the end of a
  first short ``simulate()`` (the structure key finds the module: no trace);
- JiTCODE: the same equations, ``jitcode(...).compile_C()`` (when installed).

Then, in this process, for the 1,000-component ring: the generated ``rhs`` against a
hand-written ``@njit`` ring RHS (median time per call), and both run by the same
compiled DOPRI5 loop (``peers.dopri5_run``), plus dyngen's ``simulate()``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_models as bm  # noqa: E402

STAGES = ("trace", "flatten", "lower", "render", "write", "load")


def child_build(n: int) -> None:
    """In a child: build and first-run the ring; print the timings as JSON."""
    sim, facts = bm.build_vdp_ring(n)
    start = time.perf_counter()
    result = sim.compile()
    built = time.perf_counter()
    sim.simulate(facts["dt"], facts["dt"])
    done = time.perf_counter()
    stages = {k: v for k, v in result.timings.items()}
    print(json.dumps({
        "stages": stages, "reused": result.reused, "build": built - start, "first_run": done - built,
        "total": done - start, "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


def child_jitcode(n: int) -> None:
    import peers

    start = time.perf_counter()
    peers.jitcode_model("vdp_ring", n, with_jacobian=False)
    print(json.dumps({"total": time.perf_counter() - start,
                      "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))  # fmt: skip


def run_child(kind: str, n: int, cache: str, timeout: float) -> dict | None:
    env = dict(os.environ, DYNGEN_CACHE_DIR=cache, DYNGEN_PROGRESS="0", PYTHONWARNINGS="ignore")
    try:
        done = subprocess.run(
            [sys.executable, __file__, "--child", kind, str(n)],
            capture_output=True, text=True, env=env, timeout=timeout, cwd=cache,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise RuntimeError(f"{kind} n={n} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def build_table(sizes: list[int], jitcode: bool, jitcode_budget: float) -> str:
    header = ["n", "states", *STAGES, "first run", "cold total", "peak MB", "warm start", "JiTCODE build"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    jitcode_ok = jitcode
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="dyngen-scale-") as cache:
            cold = run_child("build", n, cache, 3600)
            warm = run_child("build", n, cache, 3600)
        assert not cold["reused"] and warm["reused"]
        jit = None
        if jitcode_ok:
            with tempfile.TemporaryDirectory(prefix="jitcode-scale-") as scratch:
                jit = run_child("jitcode", n, scratch, jitcode_budget)
            jitcode_ok = jit is not None  # over budget: skip the larger sizes
        stages = [f"{cold['stages'].get(s, 0.0):.2f}" for s in STAGES]
        jit_text = f"{jit['total']:.2f} s" if jit else ("> budget" if jitcode else "-")
        row = [str(n), str(2 * n), *stages, f"{cold['first_run']:.2f}", f"**{cold['total']:.2f} s**",
               f"{cold['maxrss_mb']:.0f}", f"{warm['total']:.2f} s", jit_text]  # fmt: skip
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def median_time(fn, repeats: int, number: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return float(np.median(times))


def runtime_table(n: int, repeats: int) -> str:
    from numba import njit

    import peers

    sim, facts = bm.build_vdp_ring(n)
    module = sim.compile().module
    y0_hand, p = peers.vdp_ring_initial(n)
    model = sim._model  # the module packs the ring's states (x of every oscillator, then y)
    y0_module = model.gather_states()
    assert np.array_equal(model.in_dynode_order(y0_module), y0_hand) and np.array_equal(p, module.DEFAULT_PARAMETERS)

    @njit(cache=False)
    def calls(rhs, y, p, dy, count):
        for _ in range(count):
            rhs(0.0, y, p, dy)

    dy = np.empty_like(y0_hand)
    results = {}
    for label, rhs in (("hand-written @njit", peers.vdp_ring_rhs), ("dyngen generated", module.rhs)):
        y0 = y0_module if label == "dyngen generated" else y0_hand
        calls(rhs, y0, p, dy, 1)
        results[("rhs", label)] = median_time(lambda: calls(rhs, y0, p, dy, 1000), repeats, 1) / 1000
        t, dt, rtol, atol = facts["t"], facts["dt"], facts["rtol"], facts["atol"]
        out = np.empty((int(t / dt) + 1, y0.size))
        stats = np.zeros(3, dtype=np.int64)
        peers.dopri5_run(rhs, y0, p, dt, dt, rtol, atol, out[:2], stats)
        results[("loop", label)] = median_time(lambda: peers.dopri5_run(rhs, y0, p, t, dt, rtol, atol, out, stats), repeats, 1)
        if label == "dyngen generated":
            final_generated = model.in_dynode_order(out[-1])
        else:
            final_hand = out[-1].copy()
    assert np.allclose(final_generated, final_hand, rtol=1e-9, atol=1e-12)

    def simulate() -> float:
        """One run from the initial states; the reset is not timed."""
        sim._t = 0
        for system, (x0, v0) in zip(sim.systems, bm.ring_initial(n)):
            system.states.x, system.states.y = x0, v0
        start = time.perf_counter()
        sim.simulate(facts["t"], facts["dt"], rtol=facts["rtol"], atol=facts["atol"])
        return time.perf_counter() - start

    simulate()
    results[("simulate", "dyngen")] = float(np.median([simulate() for _ in range(repeats)]))
    hand_rhs, gen_rhs = results[("rhs", "hand-written @njit")], results[("rhs", "dyngen generated")]
    hand_loop, gen_loop = results[("loop", "hand-written @njit")], results[("loop", "dyngen generated")]
    return "\n".join([
        f"Ring of {n} ({2 * n} states), t = {facts['t']}, dt = {facts['dt']}, rtol {facts['rtol']}, atol {facts['atol']}; "
        f"medians of {repeats}.",
        "",
        "| measure | hand-written @njit RHS | dyngen RHS | ratio |",
        "|---|---|---|---|",
        f"| one RHS call | {hand_rhs * 1e6:.2f} µs | {gen_rhs * 1e6:.2f} µs | {gen_rhs / hand_rhs:.2f}x |",
        f"| same compiled DOPRI5 loop (peers.dopri5_run) | {hand_loop * 1e3:.2f} ms | {gen_loop * 1e3:.2f} ms | {gen_loop / hand_loop:.2f}x |",
        f"| dyngen `simulate()` (its own compiled dopri5) | | {results[('simulate', 'dyngen')] * 1e3:.2f} ms | {results[('simulate', 'dyngen')] / hand_loop:.2f}x |",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100, 1000, 10000])
    parser.add_argument("--quick", action="store_true", help="sizes 10, 100, 1000 and fewer repeats")
    parser.add_argument("--no-jitcode", action="store_true")
    parser.add_argument("--jitcode-budget", type=float, default=600.0, help="seconds per JiTCODE build")
    parser.add_argument("--runtime-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--child", nargs=2, metavar=("KIND", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        {"build": child_build, "jitcode": child_jitcode}[args.child[0]](int(args.child[1]))
        return
    sizes = [10, 100, 1000] if args.quick else args.sizes
    repeats = 3 if args.quick else args.repeats
    jitcode = not args.no_jitcode
    if jitcode:
        import peers

        reason = peers.jitcode_available()
        if reason:
            print(f"JiTCODE skipped: {reason}")
            jitcode = False
    print("Cold build of the VdP ring per stage (s), in a fresh process and cache:\n")
    table = build_table(sizes, jitcode, args.jitcode_budget)
    print("\n" + table + "\n")
    print(runtime_table(args.runtime_size, repeats))


if __name__ == "__main__":
    main()
