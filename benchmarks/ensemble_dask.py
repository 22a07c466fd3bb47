"""An ensemble on one thread, on two threads and on a 2-worker Dask LocalCluster (issue 18).

    python benchmarks/ensemble_dask.py               # 10,000 members, --repeats 5
    python benchmarks/ensemble_dask.py --members 2000 --repeats 3

The model is the VdP pair of ``run.py`` at N = 1 (``bench_models.build_vdp_pairs``: 4
states, rtol 1e-6, atol 1e-12, t = 20, outputs every 0.1, dopri5), built with its own
integrators (``Simulation(standalone=True)``: what a small model has after 5 s of runs,
so no run switches to them midway).  The members sweep the leader's ``mu`` and its
initial ``x`` on a 100 x 100 grid and record the 4 states (201 samples each).

Rows: ``Simulation.ensemble`` with ``threads=1``, ``threads=2`` and ``client=`` a
``LocalCluster(n_workers=2, threads_per_worker=1, processes=True)`` whose workers have
a fresh module cache of their own.  Medians and minimums of ``--repeats`` rounds, each
round running the three one after the other (so the load of a shared machine weighs on
all alike), after one warm-up round; the cluster's start-up and the first run on it (the
workers write the module into their cache, import it and compile its numba code) are
reported on their own rows, not in the ratios, and so is the first run on a second
cluster whose workers find the module (and numba's cache of it) in their cache.  The Dask Dataset is checked to be the threaded
one, bit for bit.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

T, DT = 20.0, 0.1


def build():
    """``bench_models.build_vdp_pairs(1)`` with the model's own integrators."""
    import bench_models
    from dyngen import Simulation, connect_signals

    sim = Simulation(standalone=True)
    (lx, ly), (fx, fy) = bench_models.vdp_initial(1)[0]
    leader, follower = bench_models.VanDerPol(1.0, lx, ly), bench_models.VanDerPol(1.0, fx, fy)
    follower.add_pre_connection(connect_signals(leader.outputs, "x", follower.inputs, "F"))
    sim.add_system(leader)
    sim.add_system(follower)
    return sim


def arguments(sim, members: int) -> dict:
    """The ensemble's arguments: mu and x(t0) of the leader on a square grid, the 4 states kept."""
    sim.compile()
    module = sim._model.module
    mu = next(n for n in module.PARAMETER_NAMES if n.endswith(".inputs.mu"))
    x = module.STATE_NAMES[0]
    side = int(round(members**0.5))
    grid = {mu: np.linspace(0.5, 3.0, side), x: np.linspace(1.0, 3.0, members // side)}
    record = [n for n in module.STATE_NAMES]
    return dict(grid=grid, record=record, rtol=1e-6, atol=1e-12)


def cpu_seconds() -> float:
    """User + system CPU seconds of this process (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def count_chunk_cpu() -> None:
    """On a worker: wrap ``run_chunk`` so that the thread CPU seconds of the chunks it runs
    add up in ``ensemble_dask._chunk_cpu`` (read by ``chunk_cpu``)."""
    import dyngen.runtime.ensemble_dask as on_worker

    if hasattr(on_worker, "_chunk_cpu"):
        return
    run_chunk, on_worker._chunk_cpu = on_worker.run_chunk, [0.0]

    def counted(*args, **kwargs):
        start = time.thread_time()
        try:
            return run_chunk(*args, **kwargs)
        finally:
            on_worker._chunk_cpu[0] += time.thread_time() - start

    on_worker.run_chunk = counted


def chunk_cpu() -> float:
    """On a worker: the CPU seconds spent in ``run_chunk`` so far (``count_chunk_cpu``)."""
    import dyngen.runtime.ensemble_dask as on_worker

    return on_worker._chunk_cpu[0]


class ClusterCPU:
    """CPU seconds of this process (with the scheduler) and of the workers, read before and
    after each run (``interleaved`` calls it so); ``runs`` keeps each run's (client,
    workers, the workers' ``run_chunk``) seconds."""

    def __init__(self, client) -> None:
        self.client, self.start, self.runs = client, None, []

    def __call__(self) -> float:
        now = (cpu_seconds(), sum(self.client.run(cpu_seconds).values()), sum(self.client.run(chunk_cpu).values()))
        if self.start is None:
            self.start = now
        else:
            self.runs.append(tuple(b - a for a, b in zip(self.start, now)))
            self.start = None
        return now[0] + now[1]


def interleaved(runs: dict, repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    """Wall and CPU seconds of ``repeats`` rounds of every run in ``runs`` (label -> (run,
    cpu: the CPU seconds of the processes it uses)), one after the other in each round (a
    shared machine's load then weighs on all alike), after one warm-up round."""
    seconds: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in runs}
    for round_ in range(repeats + 1):
        for label, (run, cpu) in runs.items():
            cpu_before = cpu()
            start = time.perf_counter()
            run()
            wall = time.perf_counter() - start
            cpu_used = cpu() - cpu_before  # (read in the warm-up round too: ClusterCPU pairs its readings)
            if round_:
                seconds[label][0].append(wall)
                seconds[label][1].append(cpu_used)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dt", type=float, default=DT, help="output interval (less data per member when larger)")
    options = parser.parse_args()
    dt = options.dt

    import distributed
    import xarray as xr

    sim = build()
    kw = arguments(sim, options.members)
    count = int(np.prod([len(v) for v in kw["grid"].values()]))
    threaded = sim.ensemble(T, dt, threads=2, **kw)  # compiles (or loads) the routine in this process
    once: list[tuple[str, float]] = []
    worker_cache = tempfile.mkdtemp(prefix="cache-dask-w")  # not the client's: the workers write the module there
    try:
        start = time.perf_counter()
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
            env={"DYNGEN_CACHE_DIR": worker_cache}, silence_logs=40,
        ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
            client.wait_for_workers(2)
            once.append(("Dask: LocalCluster start-up", time.perf_counter() - start))
            client.run(count_chunk_cpu)
            start = time.perf_counter()
            first = sim.ensemble(T, dt, client=client, **kw)
            once.append(("Dask: first run (module to the workers)", time.perf_counter() - start))
            results = {}
            cluster_cpu = ClusterCPU(client)

            runs = {
                "1 thread": (lambda: sim.ensemble(T, dt, threads=1, **kw), cpu_seconds),
                "2 threads": (lambda: sim.ensemble(T, dt, threads=2, **kw), cpu_seconds),
                "Dask: 2 workers": (lambda: results.__setitem__("dask", sim.ensemble(T, dt, client=client, **kw)),
                                    cluster_cpu),
            }  # fmt: skip
            seconds = interleaved(runs, options.repeats)
        with distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
            env={"DYNGEN_CACHE_DIR": worker_cache}, silence_logs=40,
        ) as cluster, distributed.Client(cluster) as client:  # fmt: skip
            client.wait_for_workers(2)
            start = time.perf_counter()
            sim.ensemble(T, dt, client=client, **kw)
            once.append(("Dask: first run on new workers whose cache has the module", time.perf_counter() - start))
        xr.testing.assert_identical(first, threaded)
        xr.testing.assert_identical(results["dask"], threaded)
    finally:
        shutil.rmtree(worker_cache, ignore_errors=True)

    print(f"{count} members of the VdP pair (4 states, dopri5 rtol 1e-6, t = {T:g}, dt = {dt:g}); "
          f"{options.repeats} interleaved rounds; Dask Dataset == threaded Dataset bit for bit\n")  # fmt: skip
    one = seconds["1 thread"][0]
    print("| run | median s | min s | µs/member (median) | vs 1 thread (medians) | (minimums) | CPU s (median) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for label, (times, cpu) in seconds.items():
        median, best = statistics.median(times), min(times)
        print(f"| {label} | {median:.3f} | {best:.3f} | {median / count * 1e6:.1f} | "
              f"{statistics.median(one) / median:.2f}x | {min(one) / best:.2f}x | {statistics.median(cpu):.2f} |")  # fmt: skip
    for label, value in once:
        print(f"| {label} (once, not in the ratios) | {value:.3f} | | | | | |")
    parts = [statistics.median(run[i] for run in cluster_cpu.runs[1:]) for i in range(3)]  # (after the warm-up)
    print(f"\nDask's CPU seconds per run (medians): client (with the scheduler) {parts[0]:.2f}, workers "
          f"{parts[1]:.2f}, of which running the chunks (`run_chunk`) {parts[2]:.2f} and Dask's own work "
          f"{parts[1] - parts[2]:.2f}; one thread's run: {statistics.median(seconds['1 thread'][1]):.2f}")
    print(f"cores: {os.cpu_count()}; load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
