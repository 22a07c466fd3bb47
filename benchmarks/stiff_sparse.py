"""Issue 15 (stiff methods at scale): rodas4 on the sparse Jacobian against scipy's BDF.

    python benchmarks/stiff_sparse.py [--n 64 128] [--t-end 1.0] [--rtol 1e-6] [--atol 1e-8] [--repeats 3] [--reference]
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
- **dyngen BDF**: ``simulate(..., integrator="BDF")``: scipy's BDF given dyngen's exact
  sparse Jacobian, its iteration matrices factorised as rodas4 does (a minimum-degree
  ordering instead of scipy's COLAMD).
- **scipy BDF, FD jac** (the baseline): ``solve_ivp(method="BDF", jac_sparsity=...)``
  (scipy estimates the sparse Jacobian by grouped finite differences) on the true
  pattern.  Its right-hand side is dyngen's compiled ``rhs``, so the columns compare
  solvers, not RHS code.
- **scipy BDF, exact jac**: the same with dyngen's exact sparse Jacobian (a CSC
  matrix from ``jac_values``) and scipy's own LU.

Times are medians over ``--repeats`` runs; the build (trace to module) and the numba
compilation are reported once, separately.  ``max |diff|`` is the largest difference
of the final states from scipy's BDF with the exact Jacobian; ``err`` (with
``--reference``) the largest difference from rodas4 at rtol 1e-10, atol 1e-12.
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


def measure(n: int, t_end: float, rtol: float, atol: float, repeats: int, reference: bool) -> dict:
    import brusselator
    from scipy.integrate import solve_ivp

    from dyngen.runtime.integrators import jacobian_callable

    start = time.perf_counter()
    sim = brusselator.build(n)
    module = sim.compile().module
    built = time.perf_counter()
    p = sim._model.gather_parameters()
    y0 = sim._model.gather_states()
    module.rhs(0.0, y0, p, np.empty(module.N_STATES))
    module.jac_values(0.0, y0, p, np.empty(module.JAC_NNZ))
    for method in ("rodas4", "BDF"):  # the first simulate() compiles observe (write-back of ders and outputs)
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

    from dyngen.runtime.sparse_stiff import SparseRosenbrockIntegrator

    counter = SparseRosenbrockIntegrator(module, p, 0.0, y0, {"rtol": rtol, "atol": atol}, sim._model.state_name)
    counter.advance(t_end)  # the warm-up run (numba's first calls), which counts the steps
    options = {"rtol": rtol, "atol": atol, "linear_solver": "krylov"}
    counter_krylov = SparseRosenbrockIntegrator(module, p, 0.0, y0, options, sim._model.state_name)
    counter_krylov.advance(t_end)
    krylov, y_krylov = median_time(dyngen_run("rodas4", linear_solver="krylov"), repeats)
    ours, y_ours = median_time(dyngen_run("rodas4"), repeats)
    dyngen_bdf, y_bdf = median_time(dyngen_run("BDF"), repeats)
    fd, (y_fd, sol_fd) = median_time(bdf(jac_sparsity=pattern), repeats)
    ex, (y_ex, sol_ex) = median_time(bdf(jac=exact), repeats)
    errors = {}
    if reference:
        tight = SparseRosenbrockIntegrator(module, p, 0.0, y0, {"rtol": 1e-10, "atol": 1e-12}, sim._model.state_name)
        tight.advance(t_end)
        errors = {key: float(np.abs(y - tight.y).max()) for key, y in
                  (("rodas4", y_ours), ("krylov", y_krylov), ("dyngen_bdf", y_bdf), ("bdf_fd", y_fd), ("bdf_exact", y_ex))}  # fmt: skip
    return {
        "n": n, "states": module.N_STATES, "nnz": module.JAC_NNZ, "build": built - start, "compile": compiled - built,
        "rodas4": ours, "krylov": krylov, "krylov_steps": int(counter_krylov.stats[0]),
        "krylov_stats": counter_krylov.linear_stats, "diff_krylov": float(np.abs(y_krylov - y_ex).max()),
        "diff_krylov_direct": float(np.abs(y_krylov - y_ours).max()), "dyngen_bdf": dyngen_bdf, "bdf_fd": fd, "bdf_exact": ex, "steps": int(counter.stats[0]),
        "bdf_fd_counts": (len(sol_fd.t) - 1, sol_fd.nlu), "bdf_ex_counts": (len(sol_ex.t) - 1, sol_ex.nlu),
        "diff_rodas4": float(np.abs(y_ours - y_ex).max()), "diff_fd": float(np.abs(y_fd - y_ex).max()),
        "diff_bdf": float(np.abs(y_bdf - y_ex).max()), "errors": errors,
        "scale": float(np.abs(y_ex).max()),
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
    parser.add_argument("--crossover", action="store_true", help="only dense against sparse rodas4 on small grids")
    parser.add_argument("--sweep", action="store_true", help="only rodas4 and BDF over tolerances at the first --n")
    args = parser.parse_args()
    os.environ.setdefault("DYNGEN_CACHE_DIR", tempfile.mkdtemp(prefix="dyngen-stiff-sparse-"))
    os.environ.setdefault("DYNGEN_PROGRESS", "0")
    if args.crossover:
        return crossover([8, 10, 12, 16], args.t_end, args.repeats)
    if args.sweep:
        return sweep(args.n[0], args.t_end)
    print(f"t_end = {args.t_end}, rtol = {args.rtol}, atol = {args.atol}, median of {args.repeats}\n")
    print("| grid | states | build + warm-up | dyngen rodas4 (steps) | rodas4 krylov (steps; LUs, solves) | dyngen BDF "
          "| scipy BDF, FD jac (steps, LUs) | scipy BDF, exact jac (steps, LUs) | rodas4 vs FD | krylov vs FD "
          "| dyngen BDF vs FD | max abs diff rodas4 / krylov / dyngen BDF / FD |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    rows = []
    for n in args.n:
        r = measure(n, args.t_end, args.rtol, args.atol, args.repeats, args.reference)
        rows.append(r)
        print(
            f"| {n}x{n} | {r['states']} | {r['build']:.2f} s + {r['compile']:.2f} s "
            f"| {r['rodas4']:.2f} s ({r['steps']}) | {r['krylov']:.2f} s ({r['krylov_steps']}; "
            f"{r['krylov_stats']['factorizations']}, {r['krylov_stats']['solves']}) | {r['dyngen_bdf']:.2f} s "
            f"| {r['bdf_fd']:.2f} s {r['bdf_fd_counts']} | {r['bdf_exact']:.2f} s {r['bdf_ex_counts']} "
            f"| {r['bdf_fd'] / r['rodas4']:.2f}x | {r['bdf_fd'] / r['krylov']:.2f}x | {r['bdf_fd'] / r['dyngen_bdf']:.2f}x "
            f"| {r['diff_rodas4']:.1e} / {r['diff_krylov']:.1e} / {r['diff_bdf']:.1e} / {r['diff_fd']:.1e} |",
            flush=True,
        )  # fmt: skip
    if args.reference:
        print("\nerror against rodas4 at rtol 1e-10, atol 1e-12 (max abs; the states reach about 2-4):\n")
        print("| grid | dyngen rodas4 | rodas4 krylov | dyngen BDF | scipy BDF, FD jac | scipy BDF, exact jac |\n|---|---|---|---|---|---|")
        for r in rows:
            e = r["errors"]
            print(f"| {r['n']}x{r['n']} | {e['rodas4']:.1e} | {e['krylov']:.1e} | {e['dyngen_bdf']:.1e} | {e['bdf_fd']:.1e} | {e['bdf_exact']:.1e} |")
    for r in rows:
        print(f"{r['n']}x{r['n']} krylov: {r['krylov_stats']}, max |krylov - direct| = {r['diff_krylov_direct']:.1e}")


if __name__ == "__main__":
    main()
