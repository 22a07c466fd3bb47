"""Issue 15 (stiff methods at scale): rodas4 and sparse_bdf on the sparse Jacobian against scipy's BDF.

    python benchmarks/stiff_sparse.py [--n 64 128] [--t-end 1.0] [--rtol 1e-6] [--atol 1e-8] [--repeats 3]
                                      [--reference [--reference-cache DIR]] [--columns sparse_bdf dyngen_bdf bdf_fd ...]
    python benchmarks/stiff_sparse.py --crossover        # dense vs sparse rodas4, 128-512 states
    python benchmarks/stiff_sparse.py --sweep --n 32 --t-end 5   # rodas4 and BDF over tolerances

Model: ``benchmarks/brusselator.py``, the stiff 2-D Brusselator (BRUSS-2D, alpha = 0.1)
on an n x n periodic grid, 2 n^2 states, written with 2-D states and ``np.roll`` along
both axes (dyngen's n-D array form).  Columns, all with the same rtol/atol from the same initial state to ``t_end``:

- **dyngen rodas4**: ``simulate(t_end, t_end, integrator="rodas4")`` of the built
  model: RODAS4 with the exact sparse Jacobian, one SuperLU factorisation per step
  (``dyngen/runtime/sparse_stiff.py``).
- **rodas4 krylov**: the same with ``linear_solver="krylov"``: GMRES on each step's exact
  iteration matrix, preconditioned by a kept SuperLU factor (``dyngen/runtime/stage_solvers.py``).
- **dyngen sparse_bdf**: ``simulate(..., integrator="sparse_bdf")``: dyngen's own BDF/NDF
  that keeps its SuperLU factor across steps (``dyngen/runtime/sparse_bdf.py``); steps,
  factorisations (LUs) and triangular solves from a separate run of the integrator.
- **dyngen BDF**: ``simulate(..., integrator="BDF")``: scipy's BDF given dyngen's exact
  sparse Jacobian, its iteration matrices factorised as rodas4 does (a minimum-degree
  ordering instead of scipy's COLAMD).
- **scipy BDF, FD jac** (the baseline): ``solve_ivp(method="BDF", jac_sparsity=...)``
  (scipy estimates the sparse Jacobian by grouped finite differences) on the true
  pattern.  Its right-hand side is dyngen's compiled ``rhs``, so the columns compare
  solvers, not RHS code.
- **scipy BDF, exact jac**: the same with dyngen's exact sparse Jacobian (a CSC
  matrix from ``jac_values``) and scipy's own LU.

Times are medians over ``--repeats`` rounds, each round running every column once (so
that the load of a shared machine falls on all alike); the build (trace to module) and
the numba compilation are reported once, separately.  ``max |diff|`` is the largest
difference of the final states from scipy's BDF with the exact Jacobian (with the FD one
when that column is not run); ``err`` (with ``--reference``) the largest difference from
rodas4 at rtol 1e-10, atol 1e-12 (``--reference-cache``: kept between runs).
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
sys.path.insert(0, str(HERE.parent))


def median_time(run, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def interleaved(runs: dict, repeats: int) -> tuple[dict, dict]:
    """Medians of ``repeats`` runs of each, every method once per round (so that the load
    of a shared machine falls on all columns alike), and each one's last result."""
    times: dict = {name: [] for name in runs}
    results: dict = {}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            results[name] = run()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}, results


def reference_state(module, p, y0, n: int, t_end: float, state_name, cache: str | None) -> np.ndarray:
    """rodas4 at rtol 1e-10, atol 1e-12 (kept in ``cache`` as a .npy file when given: 128x128 takes minutes)."""
    from dyngen.runtime.sparse_stiff import SparseRosenbrockIntegrator

    path = Path(cache) / f"brusselator_{n}_t{t_end:g}.npy" if cache else None
    if path is not None and path.exists():
        return np.load(path)
    tight = SparseRosenbrockIntegrator(module, p, 0.0, y0, {"rtol": 1e-10, "atol": 1e-12}, state_name)
    tight.advance(t_end)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, tight.y)
    return tight.y


COLUMNS = ("rodas4", "krylov", "dyngen_bdf", "sparse_bdf", "bdf_fd", "bdf_exact")


def measure(
    n: int, t_end: float, rtol: float, atol: float, repeats: int, reference: bool, columns: tuple = COLUMNS,
    reference_cache: str | None = None,
) -> dict:  # fmt: skip
    import brusselator
    from scipy.integrate import solve_ivp

    from dyngen.runtime.integrators import jacobian_callable
    from dyngen.runtime.sparse_bdf import SparseBdfIntegrator
    from dyngen.runtime.sparse_stiff import SparseRosenbrockIntegrator

    start = time.perf_counter()
    sim = brusselator.build(n)
    module = sim.compile().module
    built = time.perf_counter()
    p = sim._model.gather_parameters()
    y0 = sim._model.gather_states()
    state_name = sim._model.state_name
    module.rhs(0.0, y0, p, np.empty(module.N_STATES))
    module.jac_values(0.0, y0, p, np.empty(module.JAC_NNZ))
    for method in ("rodas4", "BDF", "sparse_bdf"):  # the first simulate() compiles observe (write-back of ders and outputs)
        brusselator.build(n).simulate(1e-3 * t_end, 1e-3 * t_end, integrator=method, rtol=rtol, atol=atol)
    compiled = time.perf_counter()

    def dyngen_run(method: str, **extra: object):
        def run() -> np.ndarray:
            fresh = brusselator.build(n)  # the same structure: the module is found, not rebuilt
            fresh.simulate(t_end, t_end, integrator=method, rtol=rtol, atol=atol, **extra)
            system = fresh.systems[0]
            return np.concatenate((system.states.u.ravel(), system.states.v.ravel()))

        return run

    def f(t: float, y: np.ndarray) -> np.ndarray:
        dy = np.empty_like(y)
        module.rhs(t, y, p, dy)
        return dy

    pattern = brusselator.sparsity(n)
    exact = jacobian_callable(module, p)
    J0 = exact(0.0, y0)
    outside = J0 - J0.multiply(pattern.astype(float))  # the non-zeros that the pattern misses
    assert not outside.count_nonzero(), "brusselator.sparsity misses entries of the Jacobian"

    def bdf(**jac: object):
        def run() -> tuple[np.ndarray, object]:
            solution = solve_ivp(f, (0.0, t_end), y0, method="BDF", rtol=rtol, atol=atol, **jac)
            assert solution.success, solution.message
            return solution.y[:, -1], solution

        return run

    counts: dict = {}  # the step counts, from a run of each integrator itself (not load-dependent)
    if "rodas4" in columns:
        counter = SparseRosenbrockIntegrator(module, p, 0.0, y0, {"rtol": rtol, "atol": atol}, state_name)
        counter.advance(t_end)
        counts["rodas4"] = int(counter.stats[0])
    if "krylov" in columns:
        options = {"rtol": rtol, "atol": atol, "linear_solver": "krylov"}
        counter_krylov = SparseRosenbrockIntegrator(module, p, 0.0, y0, options, state_name)
        counter_krylov.advance(t_end)
        counts["krylov"] = (int(counter_krylov.stats[0]), counter_krylov.linear_stats)
    if "sparse_bdf" in columns:
        counter_bdf = SparseBdfIntegrator(module, p, 0.0, y0, t_end, {"rtol": rtol, "atol": atol}, state_name)
        counter_bdf.advance(t_end)
        counts["sparse_bdf"] = dict(counter_bdf.stats)
    runs = {
        "rodas4": dyngen_run("rodas4"), "krylov": dyngen_run("rodas4", linear_solver="krylov"),
        "dyngen_bdf": dyngen_run("BDF"), "sparse_bdf": dyngen_run("sparse_bdf"),
        "bdf_fd": bdf(jac_sparsity=pattern), "bdf_exact": bdf(jac=exact),
    }  # fmt: skip
    times, results = interleaved({name: runs[name] for name in columns}, repeats)
    finals = {name: (result[0] if name.startswith("bdf_") else result) for name, result in results.items()}
    for name in ("bdf_fd", "bdf_exact"):
        if name in results:
            counts[name] = (len(results[name][1].t) - 1, results[name][1].nlu)
    base = finals.get("bdf_exact", finals.get("bdf_fd"))
    errors = {}
    if reference:
        tight = reference_state(module, p, y0, n, t_end, state_name, reference_cache)
        errors = {name: float(np.abs(y - tight).max()) for name, y in finals.items()}
    return {
        "n": n, "states": module.N_STATES, "nnz": module.JAC_NNZ, "build": built - start, "compile": compiled - built,
        "times": times, "counts": counts, "errors": errors, "scale": float(np.abs(base).max()),
        "diffs": {name: float(np.abs(y - base).max()) for name, y in finals.items()},
        "base": "bdf_exact" if "bdf_exact" in finals else "bdf_fd",
    }  # fmt: skip


def crossover(grids: list[int], t_end: float, repeats: int) -> None:
    """Dense (compiled) against sparse rodas4 on small grids: where SPARSE_RODAS4_MIN_STATES lies."""
    import brusselator

    from dyngen.runtime.sparse_stiff import SparseRosenbrockIntegrator
    from dyngen.runtime.stiff import CompiledRosenbrockIntegrator

    print("| grid | states | dense rodas4 | sparse rodas4 | steps |\n|---|---|---|---|---|")
    for n in grids:
        sim = brusselator.build(n)
        module, model = sim.module, sim._model
        p, y0 = model.gather_parameters(), model.gather_states()
        times = []
        for kind in (CompiledRosenbrockIntegrator, SparseRosenbrockIntegrator):
            kind(module, p, 0.0, y0, {"rtol": 1e-6, "atol": 1e-8}, model.state_name).advance(1e-3)  # compile
            solvers = []

            def run() -> None:
                solvers.append(kind(module, p, 0.0, y0, {"rtol": 1e-6, "atol": 1e-8}, model.state_name))
                solvers[-1].advance(t_end)

            times.append(median_time(run, repeats)[0])
        print(f"| {n}x{n} | {module.N_STATES} | {times[0] * 1e3:.1f} ms | {times[1] * 1e3:.1f} ms | {solvers[-1].stats[0]} |")


def sweep(n: int, t_end: float) -> None:
    """rodas4 and scipy's BDF (FD Jacobian) over tolerances, with their errors against rodas4 at rtol 1e-11."""
    import brusselator
    from scipy.integrate import solve_ivp

    from dyngen.runtime.sparse_stiff import SparseRosenbrockIntegrator

    sim = brusselator.build(n)
    module, model = sim.module, sim._model
    p, y0 = model.gather_parameters(), model.gather_states()

    def f(t: float, y: np.ndarray) -> np.ndarray:
        dy = np.empty_like(y)
        module.rhs(t, y, p, dy)
        return dy

    reference = SparseRosenbrockIntegrator(module, p, 0.0, y0, {"rtol": 1e-11, "atol": 1e-13}, model.state_name)
    reference.advance(t_end)
    print("| rtol / atol | rodas4 | steps | error | scipy BDF, FD jac | steps, LUs | error |\n|---|---|---|---|---|---|---|")
    for rtol, atol in ((1e-3, 1e-5), (1e-4, 1e-6), (1e-6, 1e-8), (1e-8, 1e-10)):
        ours = SparseRosenbrockIntegrator(module, p, 0.0, y0, {"rtol": rtol, "atol": atol}, model.state_name)
        start = time.perf_counter()
        ours.advance(t_end)
        mid = time.perf_counter()
        theirs = solve_ivp(f, (0.0, t_end), y0, method="BDF", jac_sparsity=brusselator.sparsity(n), rtol=rtol, atol=atol)
        end = time.perf_counter()
        print(f"| {rtol:g} / {atol:g} | {mid - start:.2f} s | {ours.stats[0]} | {np.abs(ours.y - reference.y).max():.1e} "
              f"| {end - mid:.2f} s | {len(theirs.t) - 1}, {theirs.nlu} | {np.abs(theirs.y[:, -1] - reference.y).max():.1e} |",
              flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[64, 128])
    parser.add_argument("--t-end", type=float, default=1.0)
    parser.add_argument("--rtol", type=float, default=1e-6)
    parser.add_argument("--atol", type=float, default=1e-8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference", action="store_true", help="also the error against rodas4 at rtol 1e-10")
    parser.add_argument("--reference-cache", help="a folder that keeps the tight reference states between runs")
    parser.add_argument("--columns", nargs="+", choices=COLUMNS, default=list(COLUMNS), help="the methods to time")
    parser.add_argument("--crossover", action="store_true", help="only dense against sparse rodas4 on small grids")
    parser.add_argument("--sweep", action="store_true", help="only rodas4 and BDF over tolerances at the first --n")
    args = parser.parse_args()
    os.environ.setdefault("DYNGEN_CACHE_DIR", tempfile.mkdtemp(prefix="dyngen-stiff-sparse-"))
    os.environ.setdefault("DYNGEN_PROGRESS", "0")
    if args.crossover:
        return crossover([8, 10, 12, 16], args.t_end, args.repeats)
    if args.sweep:
        return sweep(args.n[0], args.t_end)
    columns = tuple(args.columns)
    print(f"t_end = {args.t_end}, rtol = {args.rtol}, atol = {args.atol}, median of {args.repeats} (interleaved)\n")
    labels = {
        "rodas4": "dyngen rodas4 (steps)", "krylov": "rodas4 krylov (steps; LUs, solves)", "dyngen_bdf": "dyngen BDF",
        "sparse_bdf": "dyngen sparse_bdf (steps, LUs, solves)", "bdf_fd": "scipy BDF, FD jac (steps, LUs)",
        "bdf_exact": "scipy BDF, exact jac (steps, LUs)",
    }  # fmt: skip
    shown = [c for c in columns]
    ratios = [c for c in columns if c not in ("bdf_fd",)] if "bdf_fd" in columns else []
    short = {c: labels[c].split(" (")[0] for c in COLUMNS}
    header = ["grid", "states", "build + warm-up", *(labels[c] for c in shown), *(f"{short[c]} vs FD" for c in ratios),
              "max abs diff from " + ("scipy BDF exact" if "bdf_exact" in columns else "scipy BDF FD") + ": "
              + " / ".join(short[c] for c in shown)]  # fmt: skip
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows = []
    for n in args.n:
        r = measure(n, args.t_end, args.rtol, args.atol, args.repeats, args.reference, columns, args.reference_cache)
        rows.append(r)
        t, counts = r["times"], r["counts"]
        cells = [f"{n}x{n}", str(r["states"]), f"{r['build']:.2f} s + {r['compile']:.2f} s"]
        for c in shown:
            extra = ""
            if c == "rodas4":
                extra = f" ({counts['rodas4']})"
            elif c == "krylov":
                steps, stats = counts["krylov"]
                extra = f" ({steps}; {stats['factorizations']}, {stats['solves']})"
            elif c == "sparse_bdf":
                stats = counts["sparse_bdf"]
                extra = f" ({stats['steps']}, {stats['factorizations']}, {stats['solves']})"
            elif c in ("bdf_fd", "bdf_exact"):
                extra = f" {counts[c]}"
            cells.append(f"{t[c]:.2f} s{extra}")
        cells += [f"{t['bdf_fd'] / t[c]:.2f}x" for c in ratios]
        cells.append(" / ".join(f"{r['diffs'][c]:.1e}" for c in shown))
        print("| " + " | ".join(cells) + " |", flush=True)
    if args.reference:
        print("\nerror against rodas4 at rtol 1e-10, atol 1e-12 (max abs; the states reach about 2-4):\n")
        print("| grid | " + " | ".join(short[c] for c in shown) + " |\n|" + "---|" * (len(shown) + 1))
        for r in rows:
            print(f"| {r['n']}x{r['n']} | " + " | ".join(f"{r['errors'][c]:.1e}" for c in shown) + " |")
    for r in rows:
        if "krylov" in r["counts"]:
            print(f"{r['n']}x{r['n']} krylov: {r['counts']['krylov'][1]}")
        if "sparse_bdf" in r["counts"]:
            print(f"{r['n']}x{r['n']} sparse_bdf: {r['counts']['sparse_bdf']}")

if __name__ == "__main__":
    main()
