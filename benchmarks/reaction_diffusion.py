"""Issue 4 (scale): a reaction-diffusion component with 100,000-element vector states.

    python benchmarks/reaction_diffusion.py [--n 100000] [--repeats 7] [--quick]

Model: ``examples/reaction_diffusion.py`` (1-D Gray-Scott, Laplacian with slices and
``np.concatenate``, a feed-rate vector input), n points per field (2n states).

- **cold build**, in a child process with an empty cache: trace, flatten, lower,
  render, write, load, then the numba compilation of ``rhs`` (first call) and a first
  short ``simulate()`` (compiles ``observe`` and the dopri5 driver); peak memory.
- **warm start**: a new child on that cache, from after the imports to the end of a
  first short ``simulate()`` (the structure key finds the module: no trace).  The
  short run is about 100 dopri5 steps: diffusion limits explicit steps to ~dx^2/(2 Du).
- **one RHS call** (median over repeats): the generated ``rhs`` against a hand-written
  vectorised ``@njit`` RHS (numpy slicing and temporaries, as one writes it by hand)
  and a hand-written explicit-loop ``@njit`` RHS; all three agree to rounding.
- **same DOPRI5 loop** (``peers.dopri5_run``) on the generated and the vectorised RHS.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "examples"))

STAGES = ("trace", "flatten", "lower", "render", "write", "load")


def child(n: int) -> None:
    """In a child: build, compile and first-run the model; print the timings as JSON."""
    import reaction_diffusion

    sim = reaction_diffusion.build(n)
    sim.model_file = str(ROOT / "examples" / "reaction_diffusion.py")
    start = time.perf_counter()
    result = sim.compile()
    built = time.perf_counter()
    module = result.module
    module.rhs(0.0, module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy(), np.empty(module.N_STATES))
    rhs_compiled = time.perf_counter()
    system = sim.systems[0]
    span = 100 * system.inputs.dx**2 / (2 * system.inputs.Du)  # ~100 explicit steps (diffusion-limited)
    sim.simulate(span, span)
    done = time.perf_counter()
    print(json.dumps({
        "stages": dict(result.timings), "reused": result.reused, "build": built - start,
        "rhs_compile": rhs_compiled - built, "first_run": done - rhs_compiled, "total": done - start,
        "lines": Path(module.__file__).read_text().count("\n"),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))  # fmt: skip


def run_child(n: int, cache: str) -> dict:
    from child_process import run_json_child

    return run_json_child(__file__, ["--child", str(n)], cache)


def hand_written() -> tuple:
    """The Gray-Scott RHS written by hand, in the example's parameter layout (p)."""
    from numba import njit

    @njit(cache=False)
    def vectorised(t, y, p, dy):
        n = y.shape[0] // 2
        u, v = y[:n], y[n:]
        Du, Dv, F, k, dx = p[0], p[1], p[2:n + 2], p[n + 2], p[n + 3]
        inv = 1.0 / dx**2
        lap_u = np.empty(n)
        lap_v = np.empty(n)
        lap_u[1:-1] = u[2:] - 2.0 * u[1:-1] + u[:-2]
        lap_v[1:-1] = v[2:] - 2.0 * v[1:-1] + v[:-2]
        lap_u[0], lap_u[-1] = u[1] - u[0], u[-2] - u[-1]
        lap_v[0], lap_v[-1] = v[1] - v[0], v[-2] - v[-1]
        reaction = u * v**2
        dy[:n] = Du * lap_u * inv - reaction + F * (1.0 - u)
        dy[n:] = Dv * lap_v * inv + reaction - (F + k) * v

    @njit(cache=False)
    def loop(t, y, p, dy):
        n = y.shape[0] // 2
        Du, Dv, k, dx = p[0], p[1], p[n + 2], p[n + 3]
        inv = 1.0 / dx**2
        for i in range(n):
            ul = y[i + 1] if i == 0 else y[i - 1]
            ur = y[i - 1] if i == n - 1 else y[i + 1]
            vl = y[n + i + 1] if i == 0 else y[n + i - 1]
            vr = y[n + i - 1] if i == n - 1 else y[n + i + 1]
            u, v, F = y[i], y[n + i], p[2 + i]
            if i == 0 or i == n - 1:  # zero flux: one neighbour, as the model's concatenate
                lap_u, lap_v = (ul - u), (vl - v)
            else:
                lap_u, lap_v = ul - 2.0 * u + ur, vl - 2.0 * v + vr
            reaction = u * v * v
            dy[i] = Du * lap_u * inv - reaction + F * (1.0 - u)
            dy[n + i] = Dv * lap_v * inv + reaction - (F + k) * v

    return vectorised, loop


def median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def runtime_table(n: int, repeats: int) -> str:
    import peers
    import reaction_diffusion

    sim = reaction_diffusion.build(n)
    module = sim.compile().module
    y, p = module.DEFAULT_STATES.copy(), module.DEFAULT_PARAMETERS.copy()
    vectorised, loop = hand_written()

    rng = np.random.default_rng(1)
    y_random = y + rng.normal(0.0, 0.05, y.size)
    reference = np.empty_like(y)
    vectorised(0.0, y_random, p, reference)
    per_call, agreement = {}, {}
    count = 20
    for label, rhs in (("generated", module.rhs), ("vectorised", vectorised), ("loop", loop)):
        dy = np.empty_like(y)
        rhs(0.0, y_random, p, dy)
        agreement[label] = float(np.max(np.abs(dy - reference)) / np.max(np.abs(reference)))
        per_call[label] = median_time(lambda: [rhs(0.0, y, p, dy) for _ in range(count)], repeats) / count
    assert max(agreement.values()) < 1e-12, agreement

    # The diffusion limits explicit steps to about dx^2 / (2 Du): run ~100 of them.
    Du, dx = p[0], p[-1]
    dt = 100 * dx**2 / (2 * Du)
    t_end = 2 * dt
    out = np.empty((int(t_end / dt) + 1, y.size))
    stats = np.zeros(3, dtype=np.int64)
    loops, finals, evaluations = {}, {}, {}
    for label, rhs in (("generated", module.rhs), ("vectorised", vectorised)):
        peers.dopri5_run(rhs, y, p, dt, dt, 1e-6, 1e-9, out[:2], stats)
        stats[:] = 0
        status = peers.dopri5_run(rhs, y, p, t_end, dt, 1e-6, 1e-9, out, stats)
        assert status == 1, f"DOPRI5 failed ({status})"
        evaluations[label] = int(stats[0])
        loops[label] = median_time(lambda: peers.dopri5_run(rhs, y, p, t_end, dt, 1e-6, 1e-9, out, stats), max(3, repeats // 2))
        finals[label] = out[-1].copy()
    drift = float(np.max(np.abs(finals["generated"] - finals["vectorised"])) / np.max(np.abs(finals["vectorised"])))
    g, v, lp = per_call["generated"], per_call["vectorised"], per_call["loop"]
    return "\n".join([
        f"Gray-Scott, n = {n} per field ({2 * n} states); medians of {repeats}; agreement with the "
        f"vectorised RHS on random states: generated {agreement['generated']:.1e}, loop {agreement['loop']:.1e}.",
        "",
        "| measure | hand-written vectorised @njit | hand-written loop @njit | dyngen generated | generated / vectorised |",
        "|---|---|---|---|---|",
        f"| one RHS call | {v * 1e6:.1f} µs | {lp * 1e6:.1f} µs | {g * 1e6:.1f} µs | **{g / v:.2f}x** |",
        f"| same DOPRI5 loop, t = {t_end:.3g}, dt = {dt:.3g}, rtol 1e-6 ({evaluations['generated']} RHS calls) | "
        f"{loops['vectorised'] * 1e3:.1f} ms | | {loops['generated'] * 1e3:.1f} ms | {loops['generated'] / loops['vectorised']:.2f}x |",
        "",
        f"Final states of the two DOPRI5 runs differ by {drift:.1e} (relative to the largest).",
    ])  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="points per field")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="n = 10,000 and 3 repeats")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    n, repeats = (10_000, 3) if args.quick else (args.n, args.repeats)
    with tempfile.TemporaryDirectory(prefix="dyngen-rd-") as cache:
        cold = run_child(n, cache)
        warm = run_child(n, cache)
    assert not cold["reused"] and warm["reused"]
    header = ["n per field", "states", *STAGES, "rhs compile", "first simulate", "cold total", "peak MB", "module lines", "warm start"]
    row = [str(n), str(2 * n), *(f"{cold['stages'].get(s, 0.0):.2f}" for s in STAGES), f"{cold['rhs_compile']:.2f}",
           f"{cold['first_run']:.2f}", f"**{cold['total']:.2f} s**", f"{cold['maxrss_mb']:.0f}", str(cold["lines"]),
           f"{warm['total']:.2f} s"]  # fmt: skip
    print("Cold build (fresh process and cache), per stage in s:\n")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n| " + " | ".join(row) + " |\n")
    print(runtime_table(n, repeats))


if __name__ == "__main__":
    main()
