"""Ensembles (issue 18): 10,000 members of the VdP pair, side by side in one process.

    python benchmarks/ensemble.py [--members M] [--repeats R] [--loop L]

The model is ``run.py``'s "VdP pairs N=1" (``bench_models.build_vdp_pairs(1)``): a Van
der Pol leader driving a follower, t = 20, outputs every 0.1, rtol 1e-6, atol 1e-12,
DOPRI5.  Members sweep the leader's ``mu`` (0.5..2.5) and initial ``x`` (1..3) on a
grid (100 x 100 by default).  Printed, as medians of ``R`` repeats (per member):

* one warm ``simulate()``'s integration (the compiled run alone, as simulate makes it,
  states and outputs kept), averaged over every 100th member of the grid (the work per
  run depends on mu), in rounds interleaved with the 1- and 2-thread ensembles; and a
  whole warm ``simulate()`` with a Recorder (the model's own values);
* ``Simulation.ensemble`` on 1 and on 2 threads (the whole call: values, runs, Dataset),
  with dyngen's shared integrators and with the model's own (``standalone=True``);
* a Python loop of fresh ``Simulation``s (what users write today), ``L`` members;
* peers: JiTCODE in a loop (C code, scipy's dopri5 driven interval by interval, as
  dynode's loop), ``L`` members; CyRK's ``nbsolve_ivp`` (numba, its RK45 with t_eval:
  one run over [0, 20], interpolated outputs, fewer steps) in a numba ``prange`` over
  all members, on 1 and 2 threads: at dyngen's rtol (1000x less accurate here) and at
  ``CYRK_MATCHING_RTOL``, where its error matches dyngen's (printed: max errors against a
  tight reference); the target compares with the latter.

Builds and compiles are done before the first timed run and reported separately.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("DYNGEN_PROGRESS", "0")

import bench_models as bm  # noqa: E402

T, DT, RTOL, ATOL = bm.VDP["t"], bm.VDP["dt"], bm.VDP["rtol"], bm.VDP["atol"]
MU, X0 = "VanDerPol[0].inputs.mu", "VanDerPol[0].states.x"


def median_time(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return statistics.median(times)


def grid_values(members: int) -> tuple[np.ndarray, np.ndarray]:
    side = int(round(members**0.5))
    return np.linspace(0.5, 2.5, side), np.linspace(1.0, 3.0, members // side)


def dyngen_rows(members: int, repeats: int, loop: int) -> tuple[dict, dict]:
    from dyngen import Recorder
    from dyngen.runtime.compiled import run_recorded
    from dyngen.runtime.integrators import dynode_options

    mus, x0s = grid_values(members)
    grid = {MU: mus, X0: x0s}
    count = len(mus) * len(x0s)
    begin = time.perf_counter()
    sim, _ = bm.build_vdp_pairs(1)
    sim.standalone = False  # dyngen's shared integrators throughout (no switch to the model's own mid-way)
    sim.compile()
    build = time.perf_counter() - begin
    begin = time.perf_counter()
    sim.ensemble(T, DT, grid={MU: mus[:2], X0: x0s[:2]}, threads=1, rtol=RTOL, atol=ATOL)
    first_ensemble = time.perf_counter() - begin

    model = sim._model
    options = dynode_options(DT, False, {"rtol": RTOL, "atol": ATOL})
    # The members' own single runs: the compiled run simulate() makes (states and observed
    # signals kept) for every 100th member of the grid (mu changes the work per run).
    base_y, base_p = model.gather_states(), model.gather_parameters()
    mu_at = sim.module.PARAMETERS["VanDerPol[0]"]["inputs.mu"][0]
    x_at = sim.module.STATES["VanDerPol[0]"]["x"][0]
    sample = []
    for j in range(0, count, max(1, count // 100)):  # member j of the grid: mu slowest
        y0, p = base_y.copy(), base_p.copy()
        p[mu_at], y0[x_at] = mus[j // len(x0s)], x0s[j % len(x0s)]
        sample.append((y0, p))

    def sample_integrations() -> float:
        begin = time.perf_counter()
        for y0, p in sample:
            run_recorded(sim.module, "dopri5", 0.0, y0, p, T, DT, options, True, True, specialize=False)
        return (time.perf_counter() - begin) / len(sample)

    sample_integrations()  # warm

    def one_simulate():
        sim.reset()
        sim.simulate(T, DT, rtol=RTOL, atol=ATOL)

    recorder = Recorder()
    for system in sim.systems:
        recorder.store(system, "states.x")
        recorder.store(system, "states.y")
    sim.add_observer(recorder)
    one_simulate()
    whole_simulate = median_time(one_simulate, 10 * repeats)

    sim.reset()  # back to t = 0 and the model's initial states: the members start there
    # interleaved rounds: the members' single integrations, then the ensemble on 1 and 2 threads
    rounds: dict = {"single": [], 1: [], 2: []}
    for _ in range(repeats):
        rounds["single"].append(sample_integrations())
        for threads in (1, 2):
            begin = time.perf_counter()
            sim.ensemble(T, DT, grid=grid, threads=threads, rtol=RTOL, atol=ATOL)
            rounds[threads].append((time.perf_counter() - begin) / count)
    integration = statistics.median(rounds["single"])
    ensemble = {threads: statistics.median(rounds[threads]) for threads in (1, 2)}

    # the same members on the model's own integrators (standalone: what a small model gets
    # after 5 s of runs in the shared ones, runtime/specialize.py)
    own, _ = bm.build_vdp_pairs(1)
    own.standalone = True
    begin = time.perf_counter()
    own.ensemble(T, DT, grid={MU: mus[:2], X0: x0s[:2]}, threads=1, rtol=RTOL, atol=ATOL)
    own_first = time.perf_counter() - begin
    for threads in (1, 2):
        ensemble[f"own {threads}"] = median_time(
            lambda: own.ensemble(T, DT, grid=grid, threads=threads, rtol=RTOL, atol=ATOL), repeats
        ) / count  # fmt: skip

    def python_loop():
        for i in range(loop):
            fresh, _ = bm.build_vdp_pairs(1)
            fresh.standalone = False
            fresh.systems[0].inputs.mu = float(mus[i % len(mus)])
            fresh.systems[0].states.x = float(x0s[i % len(x0s)])
            fresh_recorder = Recorder()
            for system in fresh.systems:
                fresh_recorder.store(system, "states.x")
                fresh_recorder.store(system, "states.y")
            fresh.add_observer(fresh_recorder)
            fresh.simulate(T, DT, rtol=RTOL, atol=ATOL)

    python_loop()  # warm
    loop_time = median_time(python_loop, repeats) / loop
    leader_x = sim.ensemble(T, DT, grid=grid, record="VanDerPol[0].states.x", rtol=RTOL, atol=ATOL)
    rows = {
        "one warm simulate(): compiled integration (mean of every 100th member)": integration,
        "one warm simulate() with a Recorder (whole call)": whole_simulate,
        "ensemble, 1 thread": ensemble[1],
        "ensemble, 2 threads": ensemble[2],
        "ensemble, 1 thread, the model's own integrators": ensemble["own 1"],
        "ensemble, 2 threads, the model's own integrators": ensemble["own 2"],
        "Python loop of fresh Simulations": loop_time,
    }
    rows["_leader_x"] = leader_x["VanDerPol[0].states.x"].values
    return rows, {
        "dyngen build (trace, module, rhs compile)": build,
        "first ensemble call (loads the shared routine)": first_ensemble,
        "build with its own integrators and first ensemble call (compiles them)": own_first,
    }


def jitcode_row(repeats: int, loop: int) -> tuple[float | None, float | None, str]:
    try:
        import symengine
        from jitcode import jitcode, y
    except Exception as exc:  # pragma: no cover - depends on the machine
        return None, None, f"JiTCODE not available: {exc}"
    mu = symengine.Symbol("mu")
    f = [y(1), mu * (1 - y(0) ** 2) * y(1) - y(0), y(3), 1.0 * (1 - y(2) ** 2) * y(3) - y(2) + y(0)]
    begin = time.perf_counter()
    ode = jitcode(f, control_pars=[mu], verbose=False)
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:  # setuptools looks at the working folder
        os.chdir(folder)
        try:
            ode.compile_C()
        finally:
            os.chdir(here)
    compile_time = time.perf_counter() - begin
    mus, x0s = grid_values(10_000)
    out = np.empty((int(T / DT) + 1, 4))

    def run_loop():
        for i in range(loop):
            ode.set_integrator("dopri5", rtol=RTOL, atol=ATOL)
            ode.set_parameters(float(mus[i % len(mus)]))
            ode.set_initial_value(np.array([x0s[i % len(x0s)], 0.0, 0.0, 1.0]), 0.0)
            out[0] = ode.y
            for k in range(int(T / DT)):
                out[k + 1] = ode.integrate(ode.t + DT)

    run_loop()
    return median_time(run_loop, repeats) / loop, compile_time, ""


def cyrk_rows(members: int, repeats: int) -> tuple[dict, float | None, str]:
    try:
        import numba
        from CyRK import nbsolve_ivp
    except Exception as exc:  # pragma: no cover - depends on the machine
        return {}, None, f"CyRK not available: {exc}"

    @numba.njit(cache=False)
    def vdp_pair(t, y, mu):
        dy = np.empty(4)
        dy[0] = y[1]
        dy[1] = mu * (1.0 - y[0] * y[0]) * y[1] - y[0]
        dy[2] = y[3]
        dy[3] = 1.0 * (1.0 - y[2] * y[2]) * y[3] - y[2] + y[0]
        return dy

    @numba.njit(parallel=True, cache=False)
    def sweep(mus, x0s, t_eval, out, status, rtol):
        for j in numba.prange(mus.shape[0]):
            y0 = np.array([x0s[j], 0.0, 0.0, 1.0])
            result = nbsolve_ivp(
                vdp_pair, (0.0, T), y0, args=(mus[j],), rtol=rtol, atol=ATOL, t_eval=t_eval, warnings=False
            )
            status[j] = 1 if result.success else -1
            out[j] = result.y.T

    mus, x0s = grid_values(members)
    all_mu = np.repeat(mus, len(x0s))
    all_x0 = np.tile(x0s, len(mus))
    t_eval = np.linspace(0.0, T, int(T / DT) + 1)
    out = np.empty((all_mu.size, t_eval.size, 4))
    status = np.zeros(all_mu.size, dtype=np.int64)
    begin = time.perf_counter()
    sweep(all_mu[:2], all_x0[:2], t_eval, out[:2], status[:2], RTOL)
    compile_time = time.perf_counter() - begin
    rows = {}
    outs = {}
    # dyngen's settings (its accuracy is ~1000x worse here: it interpolates between the
    # steps of one run, dyngen restarts at every output), and a tolerance that matches dyngen's error
    for rtol in (RTOL, CYRK_MATCHING_RTOL):
        for threads in (1, 2):
            numba.set_num_threads(threads)
            rows[f"CyRK nbsolve_ivp in a numba prange, rtol {rtol:g}, {threads} thread{'s' if threads > 1 else ''}"] = (
                median_time(lambda: sweep(all_mu, all_x0, t_eval, out, status, rtol), repeats) / all_mu.size
            )
        outs[rtol] = out.copy()
    numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    rows["_out"] = outs
    return rows, compile_time, "" if (status == 1).all() else f"{(status != 1).sum()} CyRK runs failed"


CYRK_MATCHING_RTOL = 1e-9


def reference_errors(members: int, cyrk_outs: dict | None, dyngen_x: np.ndarray) -> dict:
    """Max abs error of the leader's x over the samples of members 0, 37 and 91 (grid order)
    against solve_ivp(DOP853, rtol 1e-12, atol 1e-14)."""
    from scipy.integrate import solve_ivp

    mus, x0s = grid_values(members)
    t_eval = np.linspace(0.0, T, int(T / DT) + 1)
    errors = {"dyngen": 0.0, **{f"CyRK rtol {rtol:g}": 0.0 for rtol in cyrk_outs or {}}}
    for j in (0, 37, 91):
        mu, x0 = mus[j // len(x0s)], x0s[j % len(x0s)]

        def f(t, y):
            return [y[1], mu * (1 - y[0] ** 2) * y[1] - y[0], y[3], (1 - y[2] ** 2) * y[3] - y[2] + y[0]]

        exact = solve_ivp(f, (0.0, T), [x0, 0.0, 0.0, 1.0], method="DOP853", rtol=1e-12, atol=1e-14, t_eval=t_eval).y[0]
        errors["dyngen"] = max(errors["dyngen"], float(np.abs(dyngen_x[j] - exact).max()))
        for rtol, out in (cyrk_outs or {}).items():
            key = f"CyRK rtol {rtol:g}"
            errors[key] = max(errors[key], float(np.abs(out[j, :, 0] - exact).max()))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop", type=int, default=200, help="members of the Python loops (per repeat)")
    arguments = parser.parse_args()

    rows, builds = dyngen_rows(arguments.members, arguments.repeats, arguments.loop)
    jitcode_time, jitcode_compile, jitcode_note = jitcode_row(arguments.repeats, arguments.loop)
    if jitcode_time is not None:
        rows["JiTCODE in a Python loop (dopri5, interval by interval)"] = jitcode_time
        builds["JiTCODE C compile"] = jitcode_compile
    cyrk, cyrk_compile, cyrk_note = cyrk_rows(arguments.members, arguments.repeats)
    errors = reference_errors(arguments.members, cyrk.pop("_out", None), rows.pop("_leader_x"))
    rows.update(cyrk)
    if cyrk_compile is not None:
        builds["CyRK sweep numba compile"] = cyrk_compile

    one_thread = rows["ensemble, 1 thread"]
    print(f"\n{arguments.members} members of the VdP pair (t = {T}, observer_dt = {DT}, rtol {RTOL}, atol {ATOL}); "
          f"medians of {arguments.repeats} repeats, per member\n")  # fmt: skip
    print("| run | µs per member | / ensemble on 1 thread |")
    print("|---|---:|---:|")
    for name, seconds in rows.items():
        print(f"| {name} | {seconds * 1e6:.1f} | {seconds / one_thread:.2f} |")
    print("\nTargets: ensemble 1 thread within 1.2x of the compiled integration: "
          f"{one_thread / rows['one warm simulate(): compiled integration (mean of every 100th member)']:.2f}x; 2 threads >= 1.8x faster than 1: "
          f"{one_thread / rows['ensemble, 2 threads']:.2f}x; >= 10x faster than the Python loop: "
          f"{rows['Python loop of fresh Simulations'] / one_thread:.1f}x")  # fmt: skip
    peers = {k: v for k, v in rows.items() if k.startswith("JiTCODE") or f"rtol {CYRK_MATCHING_RTOL:g}" in k}
    if peers:
        best = min(peers, key=peers.get)
        threads = "2 threads" if "2 threads" in best else "1 thread"
        print(f"Best peer at dyngen's accuracy: {best}: the ensemble on as many threads is {peers[best] / rows[f'ensemble, {threads}']:.1f}x "
              f"faster (shared integrators), {peers[best] / rows[f'ensemble, {threads}, the model' + chr(39) + 's own integrators']:.1f}x "
              "(its own); target >= 3x")  # fmt: skip
    print("Max abs error of the leader's x (3 members, every sample) against solve_ivp DOP853 at rtol 1e-12: "
          + ", ".join(f"{name} {error:.1e}" for name, error in errors.items()))
    for note in (jitcode_note, cyrk_note):
        if note:
            print(f"note: {note}")
    print("\nOne-off (seconds):")
    for name, seconds in builds.items():
        print(f"- {name}: {seconds:.2f}")


if __name__ == "__main__":
    main()
