"""The Python around compiled integration: import, warm start, fresh Simulation, stepping.

    python benchmarks/overhead.py               # --repeats 15 by default
    python benchmarks/overhead.py --repeats 5   # quicker
    python benchmarks/overhead.py --clock cpu   # in-process rows in the thread's CPU time

Rows (medians of ``--repeats`` runs; every figure in one run, side by side):

- ``import dyngen``: a new process, ``import dyngen`` alone.
- warm start to first step: a new process whose model (the VdP pair of
  examples/coupled_vanderpol.py) is in the cache, from after ``import dyngen`` to the
  end of a first ``simulate(0.1, 0.1)``; and numba's own share: a new process calling
  one cached ``@njit`` function for the first time (numba sets up its compiler
  context then, whatever the function).  Also whether sympy was imported.
- fresh Simulation overhead: ``build().simulate(30, 0.1)`` on a new Simulation (new
  systems) minus ``simulate(30, 0.1)`` repeated on an existing one (dopri5); shown
  with and without the time the example takes to construct its systems.  The
  example's systems and connection closures form reference cycles: they are
  collected between batches (as ``timeit`` does); the last such row leaves the
  collector running as usual (its full collections walk every object of the
  process, numba's included).
- the same against the same integration work: a repeated ``simulate(30, 0.1)`` goes on
  from where the last one ended (about 17% more steps than the first 30 time units of
  the VdP pair), so the fresh run is also compared with ``reset(); simulate(30, 0.1)``
  repeated, minus ``reset()`` alone.
- continuation fixed cost: ``simulate(0.1, 0.01)`` repeated on the VdP pair (4
  states) minus the compiled ``run_dopri5`` (``compiled_routine``) of the same ten intervals called directly.

``--clock cpu`` times the in-process rows with ``time.thread_time`` (the CPU time of
this thread, the compiled integration included: it runs on this thread) instead of
``time.perf_counter``: on a machine shared with other work the time this process waits
for a core is left out, so medians stay meaningful under load (the rows of new
processes are wall time either way).

The subprocesses use this interpreter and environment (PYTHONPATH decides which
dyngen is measured) and a temporary DYNGEN_CACHE_DIR.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

WARM_SCRIPT = textwrap.dedent(
    """\
    import json, sys, time
    start = time.perf_counter()
    import dyngen
    imported = time.perf_counter()
    sys.path.insert(0, {examples!r})
    import coupled_vanderpol
    sim = coupled_vanderpol.build()
    sim.simulate(0.1, 0.1)
    done = time.perf_counter()
    print(json.dumps({{"import": imported - start, "first_step": done - imported, "sympy": "sympy" in sys.modules}}))
    """
)
NUMBA_SCRIPT = textwrap.dedent(
    """\
    import json, time
    import numba
    start = time.perf_counter()
    from numba_probe import square
    square(2.0)
    print(json.dumps({"first_call": time.perf_counter() - start}))
    """
)
NUMBA_PROBE = "from numba import njit\n\n\n@njit(cache=True)\ndef square(x):\n    return x * x\n"


def _run_json(args: list[str], cwd: Path, env: dict) -> dict:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    return json.loads(done.stdout.splitlines()[-1])


def process_rows(repeats: int) -> dict[str, float | bool]:
    """import dyngen, warm start to the first step, numba's first cached call (new processes)."""
    with tempfile.TemporaryDirectory(prefix="dyngen-overhead-") as folder:
        work = Path(folder)
        env = dict(os.environ, DYNGEN_CACHE_DIR=str(work / "cache"), NUMBA_CACHE_DIR=str(work / "numba"))
        (work / "warm.py").write_text(WARM_SCRIPT.format(examples=str(EXAMPLES)))
        (work / "numba_run.py").write_text(NUMBA_SCRIPT)
        (work / "numba_probe.py").write_text(NUMBA_PROBE)
        _run_json([sys.executable, "warm.py"], work, env)  # cold: builds and caches the module
        _run_json([sys.executable, "numba_run.py"], work, env)  # compiles and caches the probe
        imports, firsts, numba_firsts, sympy = [], [], [], False
        for _ in range(repeats):
            warm = _run_json([sys.executable, "warm.py"], work, env)
            imports.append(warm["import"])
            firsts.append(warm["first_step"])
            sympy = sympy or warm["sympy"]
            numba_firsts.append(_run_json([sys.executable, "numba_run.py"], work, env)["first_call"])
    return {
        "import": statistics.median(imports),
        "first_step": statistics.median(firsts),
        "numba_first_call": statistics.median(numba_firsts),
        "sympy": sympy,
    }


CLOCK = [time.perf_counter]  # the in-process rows' clock (--clock)


def _batch_times(function, number: int, repeats: int) -> list[float]:
    """The time per call of ``number`` calls, for ``repeats`` batches."""
    clock = CLOCK[0]
    times = []
    for _ in range(repeats):
        start = clock()
        for _ in range(number):
            function()
        times.append((clock() - start) / number)
    return times


def in_process_rows(repeats: int) -> dict[str, tuple[float, float]]:
    """Fresh-Simulation overhead and the continuation fixed cost (this process): per
    measure, the median and the minimum over batches (the minimum: the least disturbed
    batch, on a shared machine)."""
    import numpy as np

    sys.path.insert(0, str(EXAMPLES))
    import coupled_vanderpol as example
    from dyngen.runtime.compiled import explicit_settings
    from dyngen.runtime.integrators import dynode_options

    sim = example.build()
    sim.simulate(30, 0.1)
    again = example.build()  # reset() to the initial state before every run: a fresh run's work
    again.simulate(30, 0.1)
    for _ in range(20):  # warm up every path
        example.build().simulate(30, 0.1)
    repeated, fresh, construct, fresh_gc, reset_runs, resets = [], [], [], [], [], []

    def reset_run() -> None:
        again.reset()
        again.simulate(30, 0.1)

    for _ in range(repeats * 4):  # side by side, batch by batch
        gc.collect()  # the model's own reference cycles (systems and their connection closures):
        gc.disable()  # collected between batches, as timeit does
        try:
            repeated += _batch_times(lambda: sim.simulate(30, 0.1), 20, 1)
            fresh += _batch_times(lambda: example.build().simulate(30, 0.1), 20, 1)
            construct += _batch_times(example.build, 20, 1)
            reset_runs += _batch_times(reset_run, 20, 1)
            resets += _batch_times(again.reset, 20, 1)
        finally:
            gc.enable()
        fresh_gc += _batch_times(lambda: example.build().simulate(30, 0.1), 20, 1)  # collections included

    stepper = example.build()
    stepper.simulate(0.1, 0.01)
    module = stepper.module
    y = stepper._model.gather_states()  # the state it steps from
    p = stepper._model.gather_parameters()
    settings = explicit_settings("dopri5", dynode_options(0.01, False, {})).arguments()
    times, no_rows, stats = np.empty(10), np.empty((0, module.N_STATES)), np.zeros(4, dtype=np.int64)
    no_out = np.empty((0, module.N_OBSERVED))
    from dyngen.runtime.compiled import compiled_routine

    run = compiled_routine(module, "run_dopri5")  # the routine simulate() calls (shared, or the model's own)

    def compiled() -> None:  # the same ten intervals of 0.01, the driver called directly
        run(0.0, y.copy(), p, 0.01, 10, *settings, False, False, False, times, no_rows, no_out, stats)

    gc.collect()
    calls, bare = [], []
    for _ in range(repeats * 10):  # side by side, batch by batch
        calls += _batch_times(lambda: stepper.simulate(0.1, 0.01), 200, 1)
        bare += _batch_times(compiled, 200, 1)
    found = {"repeated": repeated, "fresh": fresh, "construct": construct, "fresh_gc": fresh_gc, "call": calls,
             "compiled": bare, "reset_run": reset_runs, "reset": resets}  # fmt: skip
    return {name: (statistics.median(times), min(times)) for name, times in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall", help="in-process rows: perf_counter or thread_time")
    args = parser.parse_args()
    CLOCK[0] = time.thread_time if args.clock == "cpu" else time.perf_counter
    processes = process_rows(args.repeats)
    local = in_process_rows(args.repeats)
    import dyngen

    clock = "thread CPU time" if args.clock == "cpu" else "wall time"
    print(f"dyngen {dyngen.__version__} from {Path(dyngen.__file__).parent}, medians of {args.repeats} runs ({clock})\n")
    print("| measure | median | min | target |")
    print("|---|---|---|---|")
    print(f"| `import dyngen` (new process) | {processes['import']:.2f} s | | reported |")
    print(f"| warm start: after import to end of first `simulate` | {processes['first_step']:.2f} s | | < 0.3 s |")
    print(f"| of which numba's first cached call (any function) | {processes['numba_first_call']:.2f} s | | |")
    print(f"| sympy imported by the warm start | {'yes' if processes['sympy'] else 'no'} | | no |")

    def row(label: str, value: tuple[float, float], target: str = "", digits: int = 0) -> None:
        print(f"| {label} | {value[0] * 1e6:.{digits}f} µs | {value[1] * 1e6:.{digits}f} µs | {target} |")

    def minus(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
        return (a[0] - b[0], a[1] - b[1])

    row("`simulate(30, 0.1)` repeated", local["repeated"])
    row("fresh `build().simulate(30, 0.1)`", local["fresh"])
    row("of which the example constructs its systems", local["construct"])
    overhead = minus(local["fresh"], local["repeated"])
    row("**fresh Simulation overhead**", overhead, "≤ 100 µs")
    row("fresh Simulation overhead without constructing the systems", minus(overhead, local["construct"]), "≤ 100 µs")
    row("fresh Simulation overhead, garbage collector running as usual", minus(local["fresh_gc"], local["repeated"]))
    # A repeated simulate(30, 0.1) goes on from where the last one ended (on the limit cycle: about
    # 17% more steps than the first 30 time units); reset() first, it does a fresh run's work.
    row("`reset(); simulate(30, 0.1)` repeated", local["reset_run"])
    row("of which `reset()`", local["reset"])
    same_work = minus(local["reset_run"], local["reset"])
    row("fresh Simulation overhead without constructing, against the same integration", minus(minus(local["fresh"], local["construct"]), same_work), "≤ 100 µs")
    row("`simulate(0.1, 0.01)` continuation call", local["call"], digits=2)
    row("compiled `run_dopri5`, same ten intervals", local["compiled"], digits=2)
    row("**continuation fixed cost**", minus(local["call"], local["compiled"]), "≤ 8 µs", digits=2)

if __name__ == "__main__":
    main()
