"""How the shared compiled integrators call the model: the forms side by side (issues 17, 18).

    python benchmarks/call_forms.py [--rounds R] [--sizes 1,10] [--before CHECKOUT] [--no-compile]

dyngen's shared DOPRI5/DOP853 (``dyngen/runtime/compiled_methods.py``, compiled once per
installation) reach the model's functions through a pointer.  For Van der Pol pairs (4
states per pair; t = 20, dt = 0.1, rtol 1e-6, atol 1e-12, as benchmarks/run.py) this prints:

- *per call*: a compiled loop calling the model's rhs 10^6 times (ns per call), through
  numba's first-class function type (the arrays passed as whole structures: the form
  before the raw entries), through the module's raw entry (``first_class.ModelEntry``:
  data pointers and lengths), and by name (inlined, as the model's own integrators do);
- *per integration*: one whole run without observers (200 dopri5 intervals): the shared
  routine as simulate() runs it (``run_recorded``) and its ``run_dopri5`` called alone
  (without that Python), its two loop forms (``_dopri5_advance``: loops to the
  run-time n; ``_dopri5_advance_small``: to min(n, 8)), and the model's own integrators
  (``--standalone``); with ``--before CHECKOUT`` (a checkout of dyngen before the raw
  entries) also that checkout's shared run and own run, in a child process;
- *compile* (fresh processes, numba's cache in an empty folder): the shared
  ``run_dopri5``'s compile (once per installation), for this code and ``--before``'s.

Medians of R interleaved rounds.
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
from functools import partial
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CALLS = 1_000_000


def fmt(seconds: float) -> str:
    return f"{seconds * 1e6:.1f} µs" if seconds < 1e-3 else f"{seconds * 1e3:.2f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _models(n: int) -> dict:
    """The shared and the own (standalone) module of n VdP pairs, their y0 and p, and the options."""
    import bench_models as bm
    from dyngen.runtime.integrators import dynode_options

    forms = {}
    for form, standalone in (("shared", False), ("own", True)):
        sim, info = bm.build_vdp_pairs(n)
        sim.standalone = standalone
        sim.model_name = f"call_forms_{n}_{form}"
        forms[form] = (sim.compile().module, sim._model.gather_states(), sim._model.gather_parameters())
    return {"forms": forms, "info": info, "options": dynode_options(info["dt"], False, {"rtol": info["rtol"], "atol": info["atol"]})}


def _call_loops():  # noqa: ANN202
    """Compiled loops calling rhs through each form (made here: numba compiles them once)."""
    from numba import njit, types
    from numba.core import cgutils
    from numba.extending import intrinsic

    from dyngen.runtime.first_class import rhs_function

    vector = types.Array(types.float64, 1, "C")
    plain_type = types.FunctionType(types.none(types.float64, vector, vector, vector))

    @intrinsic
    def function_at(typingctx, c_address, jit_address):  # noqa: ANN001, ANN202, ARG001
        """numba's first-class function value of rhs (the form before the raw entries)."""

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202, ARG001
            pointer = context.get_value_type(types.voidptr)
            value = cgutils.create_struct_proxy(plain_type)(context, builder)
            value.c_addr = builder.inttoptr(args[0], pointer)
            value.py_addr = pointer(None)
            value.jit_addr = builder.inttoptr(args[1], pointer)
            return value._getvalue()

        return plain_type(types.int64, types.int64), codegen

    @njit
    def plain(addresses, y, p, dy, calls):  # noqa: ANN001, ANN202
        rhs = function_at(addresses[0], addresses[1])
        total = 0.0
        for k in range(calls):
            y[0] += 1e-12
            rhs(0.0, y, p, dy)
            total += dy[1]
        return total

    @njit
    def raw(functions, y, p, dy, calls):  # noqa: ANN001, ANN202
        rhs = rhs_function(functions)
        total = 0.0
        for k in range(calls):
            y[0] += 1e-12
            rhs(0.0, y, p, dy)
            total += dy[1]
        return total

    def by_name(module):  # noqa: ANN001, ANN202
        rhs_ = module.rhs

        @njit
        def direct(y, p, dy, calls):  # noqa: ANN001, ANN202
            total = 0.0
            for k in range(calls):
                y[0] += 1e-12
                rhs_(0.0, y, p, dy)
                total += dy[1]
            return total

        return direct

    return plain, raw, by_name


def call_times(n: int, rounds: int) -> dict:
    """ns per rhs call through each form."""
    import numpy as np
    from numba import types

    from dyngen.runtime.first_class import _entries, model_functions

    models = _models(n)
    module, y0, p = models["forms"]["shared"]
    plain, raw, by_name = _call_loops()
    array = types.Array(types.float64, 1, "C")
    plain_addresses = np.array(_entries(module.rhs, types.none(types.float64, array, array, array)), dtype=np.int64)
    functions = model_functions(module).addresses()
    direct = by_name(module)
    loops = {
        "first-class function type": lambda y, dy, calls: plain(plain_addresses, y, p, dy, calls),
        "raw entry (ModelEntry)": lambda y, dy, calls: raw(functions, y, p, dy, calls),
        "by name (own integrators)": lambda y, dy, calls: direct(y, p, dy, calls),
    }
    results = {}
    check = {}
    for name, loop in loops.items():
        y, dy = y0.copy(), np.empty(len(y0))
        check[name] = loop(y, dy, 1000)  # compile
        results[name] = []
    assert len(set(check.values())) == 1, check  # the same numbers through every form
    for _ in range(rounds):
        for name, loop in loops.items():
            y, dy = y0.copy(), np.empty(len(y0))
            start = time.perf_counter()
            loop(y, dy, CALLS)
            results[name].append((time.perf_counter() - start) / CALLS)
    return {name: statistics.median(values) for name, values in results.items()}


def run_times(n: int, rounds: int) -> dict:
    """One whole run (no observers) through each form, and whether they end on the same state."""
    import numpy as np
    from numba import njit

    from dyngen.runtime import compiled, compiled_methods
    from dyngen.runtime.first_class import model_functions, rhs_function, shared_routine

    models = _models(n)
    info, options = models["info"], models["options"]
    settings = compiled.explicit_settings("dopri5", options).arguments()
    n_intervals = int(info["t"] / info["dt"])

    def production(form: str) -> np.ndarray:
        module, y0, p = models["forms"][form]
        result = compiled.run_recorded(module, "dopri5", 0.0, y0, p, info["t"], info["dt"], options, True, False,
                                       specialize=False)  # fmt: skip
        assert result.status == 1
        return result.y

    def driver(form: str):  # noqa: ANN202
        """run_dopri5 called directly (what run_recorded calls, without its Python)."""
        module, y0, p = models["forms"][form]
        routine = module.run_dopri5 if form == "own" else partial(shared_routine("run_dopri5"), model_functions(module).addresses())
        times, no_rows = np.empty(n_intervals + 1), np.empty((0, len(y0)))
        no_signals = np.empty((0, module.N_OBSERVED))

        def go() -> np.ndarray:
            y = y0.copy()
            k, status, _ = routine(0.0, y, p, info["dt"], n_intervals, *settings, True, False, False, times, no_rows,
                                   no_signals, np.zeros(4, np.int64))  # fmt: skip
            assert status == 1
            return y

        return go

    forms = {
        "shared (simulate's)": lambda: production("shared"),
        "own (--standalone)": lambda: production("own"),
        "shared run_dopri5 alone": driver("shared"),
        "own run_dopri5 alone": driver("own"),
    }
    small = getattr(compiled_methods, "_dopri5_advance_small", None)
    if small is not None:
        large = compiled_methods._dopri5_advance

        def loop_with(advance):  # noqa: ANN001, ANN202
            @njit(nogil=True)
            def run(functions, t, y, p, dt, intervals, rtol, atol, first, max_step, safety, ifactor, dfactor, beta, nsteps, work, stats):  # noqa: ANN001, ANN202, E501
                rhs = rhs_function(functions)
                for _ in range(intervals):
                    t, status = advance(rhs, t, y, t + dt, p, rtol, atol, first, max_step, safety, ifactor, dfactor, beta, nsteps, work, stats)  # noqa: E501
                return t

            return run

        module, y0, p = models["forms"]["shared"]
        functions = model_functions(module).addresses()

        def variant(run):  # noqa: ANN001, ANN202
            def go() -> np.ndarray:
                y = y0.copy()
                run(functions, 0.0, y, p, info["dt"], n_intervals, *settings, np.empty((8, len(y))), np.zeros(4, np.int64))
                return y

            return go

        forms["shared, loops to run-time n"] = variant(loop_with(large))
        if len(y0) <= 8:
            forms["shared, loops to min(n, 8)"] = variant(loop_with(small))
    finals = {name: go() for name, go in forms.items()}  # compile / load
    samples = {name: [] for name in forms}
    for _ in range(rounds):
        for name, go in forms.items():
            start = time.perf_counter()
            for _ in range(5):
                go()
            samples[name].append((time.perf_counter() - start) / 5)
    reference = finals["own (--standalone)"]
    return {
        name: {"seconds": statistics.median(values), "identical": bool(np.array_equal(finals[name], reference))}
        for name, values in samples.items()
    }


COMPILE_SNIPPET = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import bench_models as bm
from dyngen.runtime.first_class import shared_routine
start = time.perf_counter()
shared_routine("run_dopri5")
compiled = time.perf_counter()
sim, info = bm.build_vdp_pairs(int(sys.argv[2]))
sim.simulate(info["t"], info["dt"])
print(json.dumps({"run_dopri5": compiled - start, "first_simulate": time.perf_counter() - compiled}))
"""


def compile_times(code: str | None, n: int) -> dict:
    """The shared run_dopri5's compile in a new process with an empty numba cache, then
    the first simulate() of n VdP pairs there (trace, build, the model's compile)."""
    with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as numba_cache:
        env = dict(os.environ, DYNGEN_CACHE_DIR=cache, NUMBA_CACHE_DIR=numba_cache, DYNGEN_PROGRESS="0")
        if code:
            env["PYTHONPATH"] = code
        out = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET, str(HERE), str(n)], env=env, capture_output=True,
                             text=True, check=True, cwd=cache)  # fmt: skip
        return json.loads(out.stdout.strip().splitlines()[-1])


def child(arguments: argparse.Namespace) -> None:
    """--child: this process runs the code on PYTHONPATH (e.g. --before's); one JSON line."""
    sizes = [int(s) for s in arguments.sizes.split(",")]
    print(json.dumps({str(n): {k: v["seconds"] for k, v in run_times(n, arguments.rounds).items()} for n in sizes}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--sizes", default="1,10", help="numbers of VdP pairs (4 states each)")
    parser.add_argument("--before", help="a checkout of dyngen before the raw entries, measured in a child process")
    parser.add_argument("--no-compile", action="store_true", help="skip the compile-time subprocesses")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print("Per call (a compiled loop of 10^6 rhs calls):\n")
    print("| VdP pairs | states | " + " | ".join(["first-class function type", "raw entry (ModelEntry)", "by name (own integrators)"]) + " |")
    print("|---|---|---|---|---|")
    for n in sizes:
        r = call_times(n, args.rounds)
        print(f"| {n} | {4 * n} | " + " | ".join(f"{v * 1e9:.1f} ns" for v in r.values()) + " |", flush=True)
    print("\nPer integration (one whole run, no observers):\n")
    for n in sizes:
        before = None
        if args.before:
            with tempfile.TemporaryDirectory() as cache:
                env = dict(os.environ, PYTHONPATH=args.before, DYNGEN_CACHE_DIR=cache, DYNGEN_PROGRESS="0")
                done = subprocess.run([sys.executable, __file__, "--child", "--sizes", str(n), "--rounds", str(args.rounds)],
                                      env=env, capture_output=True, text=True, check=True, cwd=cache)  # fmt: skip
                before = json.loads(done.stdout.strip().splitlines()[-1])[str(n)]
        r = run_times(n, args.rounds)
        print(f"{n} VdP pairs ({4 * n} states):\n")
        print("| form | run | / own | same final state as own |")
        print("|---|---|---|---|")
        own = r["own (--standalone)"]["seconds"]
        for name, v in r.items():
            print(f"| {name} | {fmt(v['seconds'])} | {v['seconds'] / own:.2f}x | {'yes' if v['identical'] else 'NO'} |")
        if before:
            for name, seconds in before.items():
                print(f"| before: {name} | {fmt(seconds)} | {seconds / before['own (--standalone)']:.2f}x (its own) | — |")
        print(flush=True)
    if args.no_compile:
        return
    print("Compile in a fresh process with an empty numba cache (median of 3):\n")
    print("| code | shared run_dopri5 (once per installation) | then first simulate() of 1 VdP pair |")
    print("|---|---|---|")
    for label, code in (("this", None), ("before", args.before)):
        if label == "before" and not code:
            continue
        times = [compile_times(code, 1) for _ in range(3)]
        print(f"| {label} | {fmt(statistics.median(t['run_dopri5'] for t in times))} | "
              f"{fmt(statistics.median(t['first_simulate'] for t in times))} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
