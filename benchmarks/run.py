"""dyngen vs dynode 0.4, hand-written code and JiTCODE, side by side in one process.

    python benchmarks/run.py [--quick] [--repeats N] [--only MODEL] [--no-builds]

Builds the same models (``bench_models.py``) for every backend, integrates them with
repeats and prints markdown tables of median run times, ratios, right-hand-side
evaluation counts and the maximum relative error against a tight reference; then,
separately, the one-off build and compile times (dyngen cold and warm in fresh
subprocesses, JiTCODE's C compile, numba's compile of the hand-written peers).

Run columns time integration only: every model is built and compiled, and every
backend warmed up (numba caches loaded), before the first timed run.  ``--quick``
uses fewer repeats and only the small sizes.  See benchmarks/README.md.
"""

from __future__ import annotations

# Only the standard library at module level: the build subprocesses time their imports.
import argparse
import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

NONSTIFF, STIFF = "non-stiff", "stiff"
FULL_CASES = [
    ("vdp_pairs", 1), ("vdp_pairs", 10), ("vdp_pairs", 100), ("mass_chain", 20),
    ("robertson", None), ("stiff_chain", 20), ("stiff_chain", 50),
]  # fmt: skip
QUICK_CASES = [("vdp_pairs", 1), ("vdp_pairs", 10), ("mass_chain", 20), ("robertson", None), ("stiff_chain", 20)]
KIND = {"vdp_pairs": NONSTIFF, "mass_chain": NONSTIFF, "robertson": STIFF, "stiff_chain": STIFF}
# A backend whose run is predicted (from the previous size, time ~ states**alpha) to
# take longer than this is skipped for that size; dynode gets this much in total.
SKIP_SECONDS = 20.0
# The timed runs of a case are made in this many rounds over its backends (measure_case).
ROUNDS = 5


def case_label(model: str, n: int | None) -> str:
    return {
        "vdp_pairs": f"VdP pairs N={n}",
        "mass_chain": f"mass chain {n}",
        "robertson": "Robertson",
        "stiff_chain": f"stiff chain {n}",
    }[model]


class Unavailable(Exception):
    """This backend does not exist here (shown as n/a)."""


@dataclass
class Runner:
    """One backend on one case."""

    name: str
    run: Callable[[], Any]  # the timed call
    trajectory: Callable[[], tuple]  # untimed: (Y at every output time, counts dict, note)
    prepare: Callable[[], None] = lambda: None  # untimed, before every run
    warm: Callable[[], None] = lambda: None  # untimed, once: load/compile what run needs
    alpha: float = 1.0  # run time ~ n_states ** alpha, to predict the next size
    budget: float | None = None  # total seconds for this backend on this case


@dataclass
class Row:
    case: str
    kind: str
    n_states: int
    backend: str
    median: float | None = None
    repeats: int = 0
    counts: dict = field(default_factory=dict)
    error: float | None = None
    note: str = ""


# --------------------------------------------------------------------------------------
# Case set-up: the same model for every backend
# --------------------------------------------------------------------------------------


class Case:
    def __init__(self, model: str, n: int | None, with_jitcode: bool) -> None:
        import numpy as np

        import bench_models as bm
        import peers
        from models import load

        self.model, self.n = model, n
        self.label = case_label(model, n)
        self.kind = KIND[model]
        build = bm.BUILDERS[model]
        self.sim, self.info = build(n) if n is not None else build()
        self.sim.model_name = f"bench_{model}" + (f"_{n}" if n is not None else "")
        self.sim.compile()  # builds the module, or loads it from the cache
        again, _ = build(n) if n is not None else build()  # new objects, same model: a hash hit
        again.model_name = self.sim.model_name
        start = time.perf_counter()
        again.compile()
        self.in_process_build = time.perf_counter() - start
        self.snapshot = _snapshot(self.sim.systems)  # the initial states, restored before every run
        fingerprints = []
        for _ in range(5):  # what every simulate() pays to learn that the model is unchanged
            start = time.perf_counter()
            self.sim.compile()
            fingerprints.append(time.perf_counter() - start)
        self.fingerprint = statistics.median(fingerprints)
        self.module = self.sim.module
        self.dynode_models = load(HERE / "bench_models.py", "dynode")
        self.t, self.dt = self.info["t"], self.info["dt"]
        self.rtol, self.atol = self.info["rtol"], self.info["atol"]
        self.n_out = int(self.t / self.dt)
        self.times = self.dt * np.arange(self.n_out + 1)
        rhs, jac, initial = peers.HAND[model]
        self.hand_rhs, self.hand_jac = rhs, jac
        self.y0, self.p_hand = initial(n)
        self.n_states = int(self.module.N_STATES)
        # The generated functions take y in the module's layout, which packs the states of
        # grouped systems; the hand-written peers, the reference and observers use dynode's.
        self.module_y0 = self.sim._model.gather_states()
        if not np.array_equal(self.in_dynode_order(self.module_y0), self.y0):
            raise AssertionError(f"{self.label}: hand-written initial state differs from the model's")
        self.jitcode = None
        self.jitcode_compile: float | str = "not run (--no-jitcode)"
        if with_jitcode:
            reason = peers.jitcode_available()
            if reason is None:
                start = time.perf_counter()
                try:
                    with tempfile.TemporaryDirectory() as tmp, _in_directory(tmp):
                        self.jitcode = peers.jitcode_model(model, n, with_jacobian=self.kind == STIFF)
                    self.jitcode_compile = time.perf_counter() - start
                except Exception as exc:  # a missing compiler, say
                    self.jitcode_compile = f"failed: {type(exc).__name__}: {exc}"[:80]
            else:
                self.jitcode_compile = reason
        self.reference = self._reference()

    def _reference(self):
        """Non-stiff: scipy's dop853 at rtol 1e-13; stiff: Radau at rtol 1e-12 (hand rhs/jac)."""
        import numpy as np
        from scipy.integrate import ode, solve_ivp

        import peers

        f = peers.python_rhs(self.hand_rhs, self.p_hand, self.n_states)
        if self.kind == NONSTIFF:
            solver = ode(lambda t, y: f(t, y).copy())
            solver.set_integrator("dop853", rtol=1e-13, atol=1e-15, nsteps=10**7)
            solver.set_initial_value(self.y0, 0.0)
            out = [self.y0.copy()]
            for time_ in self.times[1:]:
                out.append(solver.integrate(time_).copy())
            return np.array(out)
        jac = peers.python_jac(self.hand_jac, self.p_hand, self.n_states)
        sol = solve_ivp(
            lambda t, y: f(t, y).copy(), (0.0, self.times[-1]), self.y0, method="Radau", t_eval=self.times,
            rtol=1e-12, atol=1e-14, jac=jac,
        )  # fmt: skip
        if not sol.success:
            raise RuntimeError(f"reference failed: {sol.message}")
        return sol.y.T

    def in_dynode_order(self, Y):
        """States (a vector, or samples x states) in the module's layout -> dynode's."""
        return self.sim._model.in_dynode_order(Y)

    def error(self, Y) -> float:
        """max over output times and states of |y - ref| / (|ref| + 1e-3 max_t |ref|)."""
        import numpy as np

        Y = np.asarray(Y)
        ref = self.reference
        if Y.shape != ref.shape:
            return float("nan")
        floor = 1e-3 * np.max(np.abs(ref), axis=0) + 1e-300
        return float(np.max(np.abs(Y - ref) / (np.abs(ref) + floor)))

    def out(self):
        import numpy as np

        return np.empty((self.n_out + 1, self.n_states))


class _in_directory:
    """Run JiTCODE's compiler in a scratch directory (it may write build files)."""

    def __init__(self, path: str) -> None:
        self.path, self.old = path, None

    def __enter__(self):
        self.old = os.getcwd()
        os.chdir(self.path)

    def __exit__(self, *exc):
        os.chdir(self.old)


def _snapshot(systems):
    import numpy as np

    return [(s, {k: np.array(v, copy=True) for k, v in dict.items(s.states)}) for s in systems]


def _restore(sim, snapshot) -> None:
    for system, states in snapshot:
        for key, value in states.items():
            system.states[key] = value.copy()
    sim._t = 0


# --------------------------------------------------------------------------------------
# Backends
# --------------------------------------------------------------------------------------


def dynode_runner(case: Case, integrator: str, budget: float) -> Runner:
    import numpy as np

    build = case.dynode_models.BUILDERS[case.model]
    sim, _ = build(case.n) if case.n is not None else build()
    snapshot = _snapshot(sim.systems)
    options = dict(rtol=case.rtol, atol=case.atol)

    def run():
        sim.simulate(case.t, case.dt, integrator=integrator, **options)

    def trajectory():
        _restore(sim, snapshot)
        recorded, calls = [], [0]
        first = sim.systems[0]
        do_step = first.do_step

        def counting(time_):
            calls[0] += 1
            do_step(time_)

        first.do_step = counting  # dynode calls every system's do_step once per evaluation
        remove = sim.add_observer(lambda t, y: recorded.append(np.array(y, copy=True)))
        try:
            sim.simulate(case.t, case.dt, integrator=integrator, **options)
        finally:
            remove()
            del first.do_step
        return np.array(recorded), {"rhs": calls[0]}, ""

    alpha = 2.0 if integrator == "lsoda" else 1.0  # lsoda: finite-difference Jacobians
    return Runner(f"dynode {integrator}", run, trajectory, prepare=lambda: _restore(sim, snapshot), alpha=alpha, budget=budget)


def scipy_ode_runner(label: str, rhs, p, case: Case, generated: bool = False) -> Runner:
    """The @njit ``rhs(t, y, p, dy)`` in scipy's ode('dopri5'), driven the dynode way
    (``generated``: a generated module's rhs, whose y is in the module's layout)."""
    import peers

    f = peers.python_rhs(rhs, p, case.n_states)
    out = case.out()
    y0 = case.module_y0 if generated else case.y0

    def run():
        peers.scipy_ode_run(f, y0, case.t, case.dt, case.rtol, case.atol, out)

    def trajectory():
        calls = [0]

        def counting(t, y):
            calls[0] += 1
            return f(t, y)

        Y = peers.scipy_ode_run(counting, y0, case.t, case.dt, case.rtol, case.atol, case.out())
        return (case.in_dynode_order(Y) if generated else Y), {"rhs": calls[0]}, ""

    return Runner(label, run, trajectory, warm=lambda: f(0.0, y0))


def hand_scipy_runner(case: Case) -> Runner:
    return scipy_ode_runner("hand @njit rhs + scipy ode dopri5", case.hand_rhs, case.p_hand, case)


def hand_loop_runner(case: Case, compile_times: dict) -> Runner:
    import numpy as np

    import peers

    out = case.out()
    stats = np.zeros(3, dtype=np.int64)

    def run():
        status = peers.dopri5_run(case.hand_rhs, case.y0, case.p_hand, case.t, case.dt, case.rtol, case.atol, out, stats)
        if status != 1:
            raise RuntimeError(f"hand DOPRI5 failed with status {status}")

    def warm():
        seen = case.hand_rhs in compile_times.setdefault("compiled", [])
        start = time.perf_counter()
        tiny = np.empty((2, case.n_states))
        peers.dopri5_run(case.hand_rhs, case.y0, case.p_hand, case.dt, case.dt, case.rtol, case.atol, tiny, stats)
        compile_times[case.label] = "(compiled above)" if seen else time.perf_counter() - start
        compile_times["compiled"].append(case.hand_rhs)

    def trajectory():
        stats[:] = 0
        run()
        return out.copy(), {"rhs": int(stats[0]), "steps": int(stats[1]), "rejected": int(stats[2])}, ""

    return Runner("hand @njit DOPRI5 loop (whole run)", run, trajectory, warm=warm)


def jitcode_runner(case: Case, method: str) -> Runner:
    import peers

    if case.jitcode is None:
        raise Unavailable(str(case.jitcode_compile))
    ode_ = case.jitcode
    options = dict(first_step=case.dt) if method == "dopri5" else {}
    out = case.out()

    def run():
        peers.jitcode_run(ode_, case.y0, case.t, case.dt, case.rtol, case.atol, out, method=method, **options)

    def trajectory():
        if method == "dopri5":  # count through the Python-level ode object
            calls = [0]
            ode_.set_integrator(method, rtol=case.rtol, atol=case.atol, **options)
            ode_.set_initial_value(case.y0, 0.0)
            f = ode_.integrator.f

            def counting(*args):
                calls[0] += 1
                return f(*args)

            ode_.integrator.f = counting
            Y = case.out()
            Y[0] = case.y0
            for k in range(case.n_out):
                Y[k + 1] = ode_.integrate(ode_.t + case.dt)
            return Y, {"rhs": calls[0]}, ""
        Y = peers.jitcode_run(ode_, case.y0, case.t, case.dt, case.rtol, case.atol, case.out(), method=method)
        backend = ode_.integrator.backend
        return Y, {"rhs": backend.nfev, "jac": backend.njev}, ""

    name = f"JiTCODE {method} (" + ("scipy ode" if method == "dopri5" else "solve_ivp, C Jacobian") + ")"
    return Runner(name, run, trajectory, alpha=1.0 if method == "dopri5" else 2.0)


def _counting_module(module, names):
    """Replace module functions by counting wrappers; returns (counts, restore)."""
    counts = {n: 0 for n in names}
    originals = {n: getattr(module, n) for n in names}

    def wrap(n, fn):
        def counted(*args):
            counts[n] += 1
            return fn(*args)

        return counted

    for n, fn in originals.items():
        setattr(module, n, wrap(n, fn))

    def restore():
        for n, fn in originals.items():
            setattr(module, n, fn)

    return counts, restore


def dyngen_simulate_runner(case: Case, integrator: str, standalone: bool = False) -> Runner:
    """``simulate()`` on the case's model: with dyngen's shared integrators, or
    (``standalone``) on a module with its own (``Simulation(standalone=True)``)."""
    import numpy as np

    import bench_models as bm
    import dyngen.runtime.simulation as simulation

    sim = case.sim
    snapshot = case.snapshot
    if standalone:
        build = bm.BUILDERS[case.model]
        sim, _ = build(case.n) if case.n is not None else build()
        sim.model_name = case.sim.model_name
        sim.standalone = True
        sim.compile()
        snapshot = _snapshot(sim.systems)
    options = dict(rtol=case.rtol, atol=case.atol)
    module = sim.module

    def run():
        sim.simulate(case.t, case.dt, integrator=integrator, **options)

    path = {"note": ""}

    def warm():
        _restore(sim, snapshot)
        whole_run = getattr(simulation, "run_recorded", None)
        if whole_run is None:
            sim.simulate(case.dt, case.dt, integrator=integrator, **options)
            return
        used = []

        def spy(*a, **k):
            used.append(True)
            return whole_run(*a, **k)

        simulation.run_recorded = spy  # which path does a run without observers take?
        try:
            sim.simulate(case.dt, case.dt, integrator=integrator, **options)
        finally:
            simulation.run_recorded = whole_run
        if used:
            path["note"] = "timed runs: one compiled call (no observers)"

    def trajectory():
        _restore(sim, snapshot)
        recorded = []
        counts, restore = _counting_module(module, ["rhs", "jac", "jac_values"])
        instances = []
        patched = {}
        for name in ("CompiledRosenbrockIntegrator", "CompiledExplicitIntegrator"):
            cls = getattr(simulation, name, None)
            if isinstance(cls, type):

                def init(self, *a, _cls=cls, **k):
                    _cls.__init__(self, *a, **k)
                    instances.append(self)

                patched[name] = cls
                setattr(simulation, name, type(cls.__name__, (cls,), {"__init__": init}))
        remove = sim.add_observer(lambda t, y: recorded.append(np.array(y, copy=True)))
        try:
            sim.simulate(case.t, case.dt, integrator=integrator, **options)
        finally:
            remove()
            restore()
            for name, cls in patched.items():
                setattr(simulation, name, cls)
        note = ""
        result = {}
        if instances and hasattr(instances[-1], "stats"):
            stats = [int(s) for s in instances[-1].stats]
            result = {"rhs": stats[2], "jac": stats[3], "steps": stats[0], "rejected": stats[1]} if integrator == "rodas4" else {"rhs": stats[0]}
        elif counts["rhs"]:
            result = {"rhs": counts["rhs"]}
            if counts["jac"] or counts["jac_values"]:
                result["jac"] = counts["jac"] + counts["jac_values"]
        elif integrator in ("dopri5", "dop853"):
            note = "compiled (rhs not called from Python)"
        return np.array(recorded), result, "; ".join(x for x in (path["note"], note) if x)

    alpha = {"rodas4": 3.0, "BDF": 2.0, "Radau": 2.0, "lsoda": 2.0}.get(integrator, 1.0)
    name = f"dyngen simulate('{integrator}')" + (", own integrators (standalone)" if standalone else "")
    return Runner(name, run, trajectory, prepare=lambda: _restore(sim, snapshot), warm=warm, alpha=alpha)


def dyngen_rhs_scipy_runner(case: Case) -> Runner:
    """The generated rhs in exactly the hand-written scipy-ode loop (the rhs alone compared)."""
    return scipy_ode_runner(
        "dyngen generated rhs + scipy ode dopri5", case.module.rhs, case.sim._model.gather_parameters(), case, True
    )


def dyngen_driver_runner(case: Case, method: str) -> Runner:
    """The compiled whole-run driver (``run_<method>``: dyngen's shared one) on the generated module."""
    try:
        from dyngen.runtime import compiled
    except ImportError:
        raise Unavailable("no dyngen.runtime.compiled") from None
    module = case.module
    if not hasattr(compiled, "run_recorded"):
        raise Unavailable("no compiled.run_recorded")
    from dyngen.runtime.integrators import dynode_options

    p = case.sim._model.gather_parameters()
    options = dynode_options(case.dt, False, dict(rtol=case.rtol, atol=case.atol))

    def call(duration):
        result = compiled.run_recorded(module, method, 0.0, case.module_y0, p, duration, case.dt, options, True, False)
        if result.status != 1:
            raise RuntimeError(f"compiled {method} failed with status {result.status}")
        return result

    def trajectory():
        result = call(case.t)
        return case.in_dynode_order(result.Y), {"rhs": int(result.stats[0])}, ""

    def warm():
        try:
            call(case.dt)
        except TypeError as exc:
            raise Unavailable(f"run_recorded API changed: {exc}") from None

    return Runner(f"dyngen compiled {method} (whole-run driver)", lambda: call(case.t), trajectory, warm=warm)


def solve_ivp_runner(case: Case, method: str) -> Runner:
    """scipy's solve_ivp in one call, with the generated rhs and Jacobian."""
    from scipy.integrate import solve_ivp

    import peers
    from dyngen.runtime.integrators import jacobian_callable

    p = case.sim._model.gather_parameters()
    f = peers.python_rhs(case.module.rhs, p, case.n_states)
    jac = jacobian_callable(case.module, p)

    def fun(t, y):
        return f(t, y).copy()

    def warm():
        fun(0.0, case.module_y0)
        jac(0.0, case.module_y0)

    def solve():
        sol = solve_ivp(
            fun, (0.0, case.times[-1]), case.module_y0, method=method, t_eval=case.times, jac=jac,
            rtol=case.rtol, atol=case.atol,
        )  # fmt: skip
        if not sol.success:
            raise RuntimeError(sol.message)
        return sol

    def trajectory():
        sol = solve()
        return case.in_dynode_order(sol.y.T), {"rhs": sol.nfev, "jac": sol.njev}, ""

    return Runner(f"scipy solve_ivp {method} (generated rhs+jac, one call)", solve, trajectory, warm=warm, alpha=2.0)


def runners_for(case: Case, dynode_budget: float, hand_compile: dict) -> list[tuple[str, Callable[[], Runner]]]:
    """(row name, factory) per backend, in table order; a factory may raise Unavailable."""
    if case.kind == NONSTIFF:
        return [
            ("dynode 0.4 dopri5", lambda: dynode_runner(case, "dopri5", dynode_budget)),
            ("hand @njit rhs + scipy ode dopri5", lambda: hand_scipy_runner(case)),
            ("JiTCODE dopri5 (scipy ode)", lambda: jitcode_runner(case, "dopri5")),
            (HAND_LOOP, lambda: hand_loop_runner(case, hand_compile)),
            ("dyngen simulate('dopri5')", lambda: dyngen_simulate_runner(case, "dopri5")),
            ("dyngen simulate('dopri5'), own integrators (standalone)",
             lambda: dyngen_simulate_runner(case, "dopri5", standalone=True)),
            ("dyngen generated rhs + scipy ode dopri5", lambda: dyngen_rhs_scipy_runner(case)),
            ("dyngen compiled dopri5 (whole-run driver)", lambda: dyngen_driver_runner(case, "dopri5")),
            ("dyngen compiled dop853 (whole-run driver)", lambda: dyngen_driver_runner(case, "dop853")),
            ("dyngen simulate('rodas4')", lambda: dyngen_simulate_runner(case, "rodas4")),
            ("dyngen simulate('BDF')", lambda: dyngen_simulate_runner(case, "BDF")),
        ]
    return [
        ("dynode 0.4 lsoda", lambda: dynode_runner(case, "lsoda", dynode_budget)),
        (SOLVE_IVP_BDF, lambda: solve_ivp_runner(case, "BDF")),
        ("JiTCODE BDF (solve_ivp, C Jacobian)", lambda: jitcode_runner(case, "BDF")),
        ("dyngen simulate('rodas4')", lambda: dyngen_simulate_runner(case, "rodas4")),
        ("dyngen simulate('BDF')", lambda: dyngen_simulate_runner(case, "BDF")),
        ("dyngen simulate('Radau')", lambda: dyngen_simulate_runner(case, "Radau")),
        ("dyngen simulate('lsoda')", lambda: dyngen_simulate_runner(case, "lsoda")),
    ]


HAND_LOOP = "hand @njit DOPRI5 loop (whole run)"
SOLVE_IVP_BDF = "scipy solve_ivp BDF (generated rhs+jac, one call)"


# --------------------------------------------------------------------------------------
# Measuring
# --------------------------------------------------------------------------------------


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".replace("\n", " ").replace("|", "/")
    return text if len(text) <= 110 else text[:107] + "..."


@dataclass
class _Timing:
    """A backend being timed on a case: its row, runner and the run times so far."""

    row: Row
    runner: Runner
    times: list[float]
    repeats: int


def _timed_run(runner: Runner) -> float:
    runner.prepare()
    gc.disable()  # no collector pauses inside a timed run
    try:
        start = time.perf_counter()
        runner.run()
        return time.perf_counter() - start
    finally:
        gc.enable()


def _first_run(case: Case, name: str, make: Callable[[], Runner], args, history: dict) -> _Timing | Row:
    """Set up one backend: warm it, take its trajectory (counts, error) and time a
    first run, which decides how many runs fit in its budget.  Returns the finished
    Row instead when the backend is unavailable, skipped or failed."""
    row = Row(case.label, case.kind, case.n_states, name)
    try:
        runner = make()
    except Unavailable as exc:
        row.note = f"n/a ({exc})"
        return row
    # Predict from the previous size of this model; skip what would take too long.
    key = (case.model, name)
    if key in history:
        n_prev, t_prev = history[key]
        predicted = t_prev * (case.n_states / n_prev) ** runner.alpha
        limit = runner.budget if runner.budget is not None else SKIP_SECONDS
        if predicted > limit:
            row.note = f"skipped: ~{predicted:.0f} s per run predicted from {n_prev} states"
            return row
    try:
        runner.warm()
        start = time.perf_counter()
        Y, counts, note = runner.trajectory()
        spent = time.perf_counter() - start
    except Unavailable as exc:
        row.note = f"n/a ({exc})"
        return row
    except Exception as exc:
        row.note = f"FAILED: {_short(exc)}"
        if args.verbose:
            traceback.print_exc()
        return row
    row.counts, row.note = counts, note
    row.error = case.error(Y)
    budget = runner.budget if runner.budget is not None else args.budget + spent
    gc.collect()
    try:
        first = _timed_run(runner)
    except Exception as exc:
        row.note = f"FAILED: {_short(exc)}"
        return row
    # how many fit in the budget (many more when a run is short)
    cap = args.repeats * (10 if first < 0.02 else 1)
    return _Timing(row, runner, [first], max(1, min(cap, 1 + int((budget - spent - first) / first))))


def measure_case(case: Case, runners: list[tuple[str, Callable[[], Runner]]], args, history: dict, log: Callable) -> list[Row]:
    """Time every backend on one case, in ROUNDS rounds: in each, every backend that
    still needs runs does a batch of them back to back.  A slow spell of the shared
    machine (they last seconds) then falls on every backend alike instead of on one
    block of runs; within a batch a backend runs as it does in a loop of calls (its
    first run after the others, with caches cold, is one of several)."""
    rows: list[Row] = []
    timings: list[_Timing] = []
    for name, make in runners:
        timing = _first_run(case, name, make, args, history)
        row = timing.row if isinstance(timing, _Timing) else timing
        rows.append(row)
        if isinstance(timing, _Timing):
            timings.append(timing)
        else:
            log(f"  {row.backend}: {row.note}")
    batch = {id(t): math.ceil((t.repeats - 1) / ROUNDS) for t in timings}
    pending = [t for t in timings if len(t.times) < t.repeats]
    while pending:
        for timing in pending:
            try:
                for _ in range(min(batch[id(timing)], timing.repeats - len(timing.times))):
                    timing.times.append(_timed_run(timing.runner))
            except Exception as exc:
                timing.row.note = f"FAILED: {_short(exc)}"
                timing.repeats = 0
        pending = [t for t in pending if len(t.times) < t.repeats]
    for timing in timings:
        row = timing.row
        if timing.repeats:
            row.median, row.repeats = statistics.median(timing.times), len(timing.times)
            history[(case.model, row.backend)] = (case.n_states, row.median)
        log(f"  {row.backend}: {fmt_time(row.median)} {row.note}")
    return rows


# --------------------------------------------------------------------------------------
# Build and compile times (fresh subprocesses)
# --------------------------------------------------------------------------------------


def child_build(model: str, size: str) -> None:
    """Run in a subprocess: time import, build, and the first integration steps."""
    start = time.perf_counter()
    import numpy as np  # noqa: F401

    import bench_models as bm

    imported = time.perf_counter()
    n = None if size == "-" else int(size)
    build = bm.BUILDERS[model]
    sim, info = build(n) if n is not None else build()
    sim.model_name = f"bench_{model}" + (f"_{n}" if n is not None else "")
    result = sim.compile()
    built = time.perf_counter()
    options = dict(rtol=info["rtol"], atol=info["atol"])
    first_integrator = "dopri5" if KIND[model] == NONSTIFF else "BDF"  # scipy + the generated rhs (and jac)
    sim.simulate(info["dt"], info["dt"], integrator=first_integrator, **options)  # the first interval
    first = time.perf_counter()
    sim.simulate(info["dt"], info["dt"], integrator="rodas4", **options)
    rodas4 = time.perf_counter()
    report = {
        "import": imported - start,
        "build": built - imported,
        "first_step": first - built,
        "to_first_step": first - start,
        "rodas4": rodas4 - first,
        "reused": bool(result.reused),
        "stages": {k: round(v, 4) for k, v in result.timings.items()},
    }
    module = sim.module
    try:  # the shared drivers (compiled once per installation: loaded from numba's cache here)
        from dyngen.runtime import compiled
        from dyngen.runtime.integrators import dynode_options

        model_ = sim._model
        for method in ("dopri5", "dop853"):
            begin = time.perf_counter()
            compiled.run_recorded(
                module, method, 0.0, model_.gather_states(), model_.gather_parameters(), info["dt"], info["dt"],
                dynode_options(info["dt"], False, options), True, False,
            )  # fmt: skip
            report[f"driver_{method}"] = time.perf_counter() - begin
    except Exception as exc:
        report["driver_error"] = _short(exc)
    print(json.dumps(report))


def build_times(model: str, n: int | None) -> dict:
    """dyngen cold (empty cache) and warm (that cache) start in fresh subprocesses."""
    result = {}
    with tempfile.TemporaryDirectory(prefix="dyngen_bench_") as cache:
        env = dict(os.environ, DYNGEN_CACHE_DIR=cache)
        for label in ("cold", "warm"):
            proc = subprocess.run(
                [sys.executable, str(Path(__file__).resolve()), "--child-build", model, "-" if n is None else str(n)],
                env=env, capture_output=True, text=True,
            )  # fmt: skip
            if proc.returncode != 0:
                result[label] = {"error": (proc.stderr.strip().splitlines() or ["?"])[-1][:100]}
            else:
                result[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


# --------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------


def fmt_time(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds:.2f} s"


def fmt_ratio(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:.3g}x" if value < 100 else f"{value:.0f}x"


def fmt_counts(counts: dict) -> tuple[str, str]:
    rhs = counts.get("rhs")
    jac = counts.get("jac")
    return (f"{rhs:,}" if rhs is not None else "—"), (f"{jac:,}" if jac is not None else "—")


def run_table(rows: list[Row], kind: str) -> str:
    if kind == NONSTIFF:
        base_names = ("dynode 0.4 dopri5", HAND_LOOP)
        head = "| case | backend | median run | runs | speed-up vs dynode | time / hand loop | RHS evals | max rel err | note |"
    else:
        base_names = ("dynode 0.4 lsoda", SOLVE_IVP_BDF)
        head = "| case | backend | median run | runs | speed-up vs dynode | time / solve_ivp BDF | RHS evals | Jac evals | max rel err | note |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    cases = []
    for r in rows:
        if r.kind == kind and r.case not in cases:
            cases.append(r.case)
    for case in cases:
        group = [r for r in rows if r.case == case]
        base = {r.backend: r.median for r in group}
        dyn, ref = base.get(base_names[0]), base.get(base_names[1])
        for r in group:
            speed = dyn / r.median if (dyn and r.median) else None
            rel = r.median / ref if (ref and r.median) else None
            rhs, jac = fmt_counts(r.counts)
            err = f"{r.error:.1e}" if r.error is not None else "—"
            label = f"{case} ({r.n_states} states)"
            cells = [label, r.backend, fmt_time(r.median), str(r.repeats or "—"), fmt_ratio(speed), fmt_ratio(rel), rhs]
            if kind == STIFF:
                cells.append(jac)
            cells += [err, r.note]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_table(builds: dict, cases: list) -> str:
    head = (
        "| case | states | dyngen cold: import | build (trace→module) | first simulate() interval (numba JIT) "
        "| import→first step | + rodas4 JIT | + dopri5 / dop853 driver JIT | dyngen warm: import→first step "
        "| + rodas4 load | in-process re-build (hash hit) | simulate() model check | JiTCODE compile | hand @njit compile |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]

    def s(v):
        return "—" if v is None else (v if isinstance(v, str) else fmt_time(v))

    for case in cases:
        b = builds.get(case.label, {})
        cold, warm = b.get("cold", {}), b.get("warm", {})
        if "error" in cold:
            cold_cells = [f"FAILED: {cold['error']}"] + ["—"] * 5
        else:
            drivers = [cold.get("driver_dopri5"), cold.get("driver_dop853")]
            driver = (
                "n/a" if drivers == [None, None] and "driver_error" not in cold
                else cold.get("driver_error") or " / ".join(s(d) for d in drivers)
            )  # fmt: skip
            cold_cells = [s(cold.get("import")), s(cold.get("build")), s(cold.get("first_step")),
                          s(cold.get("to_first_step")), s(cold.get("rodas4")), driver]  # fmt: skip
        warm_cells = [f"FAILED: {warm['error']}", "—"] if "error" in warm else [s(warm.get("to_first_step")), s(warm.get("rodas4"))]
        if not b:
            cold_cells, warm_cells = ["not measured"] + ["—"] * 5, ["—", "—"]
        cells = [case.label, str(case.n_states), *cold_cells, *warm_cells, s(case.in_process_build),
                 fmt_time(case.fingerprint), s(case.jitcode_compile), s(b.get("hand"))]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment() -> str:
    import numba
    import numpy
    import scipy

    import dyngen

    versions = [f"python {platform.python_version()}", f"numpy {numpy.__version__}", f"scipy {scipy.__version__}",
                f"numba {numba.__version__}", f"dyngen {dyngen.__version__}"]  # fmt: skip
    for name in ("dynode", "jitcode"):
        try:
            from importlib.metadata import version

            versions.append(f"{name} {version(name)}")
        except Exception:
            versions.append(f"{name} missing")
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores; " + ", ".join(versions)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repeats, only the small sizes")
    parser.add_argument("--repeats", type=int, default=None, help="at most this many timed runs per cell")
    parser.add_argument("--budget", type=float, default=None, help="seconds of timed runs per cell (fewer repeats for slow cells)")
    parser.add_argument("--only", action="append", default=[], help="only this model (vdp_pairs, mass_chain, robertson, stiff_chain)")
    parser.add_argument("--no-builds", action="store_true", help="skip the cold/warm build subprocesses")
    parser.add_argument("--no-jitcode", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    parser.add_argument("--child-build", nargs=2, metavar=("MODEL", "SIZE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_build:
        child_build(*args.child_build)
        return
    args.repeats = args.repeats or (3 if args.quick else 7)
    args.budget = args.budget or (1.0 if args.quick else 3.0)
    dynode_budget = 10.0 if args.quick else SKIP_SECONDS
    cases_spec = QUICK_CASES if args.quick else FULL_CASES
    if args.only:
        cases_spec = [c for c in cases_spec if c[0] in args.only]

    warnings.simplefilter("ignore")  # scipy's per-interval warnings; failures are reported
    wall = time.perf_counter()

    def log(text: str) -> None:  # progress, on stderr
        print(f"[{time.perf_counter() - wall:6.1f} s] {text}", file=sys.stderr, flush=True)

    print(f"# dyngen benchmarks ({'--quick' if args.quick else 'full'})", flush=True)
    print(f"\n{environment()}", flush=True)
    print(f"Up to {args.repeats} timed runs per cell (fewer when one run is slow: about {args.budget:.0f} s per cell; "
          f"dynode at most ~{dynode_budget:.0f} s per case). Medians.\n", flush=True)  # fmt: skip

    rows: list[Row] = []
    cases: list[Case] = []
    history: dict = {}
    hand_compile: dict = {}
    builds: dict = {}
    for model, n in cases_spec:
        label = case_label(model, n)
        log(f"{label}: setting up")
        case = Case(model, n, with_jitcode=not args.no_jitcode)
        cases.append(case)
        rows += measure_case(case, runners_for(case, dynode_budget, hand_compile), args, history, log)
        builds[label] = {"hand": hand_compile.get(label)}
    if not args.no_builds:
        for case in cases:
            log(f"{case.label}: cold/warm build subprocesses")
            builds[case.label].update(build_times(case.model, case.n))

    print("## Run times: non-stiff models (dopri5-type work)\n")
    print(run_table(rows, NONSTIFF))
    print("\n## Run times: stiff models\n")
    print(run_table(rows, STIFF))
    print("\n## One-off build and compile times\n")
    print(build_table(builds, cases) if not args.no_builds else "(skipped: --no-builds)")
    print(f"\nTotal wall time: {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
