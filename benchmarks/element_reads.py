"""Issue 15: element-by-element loops over arrays, refused fast past ELEMENT_READS_MAX reads.

    python benchmarks/element_reads.py [--repeats 3] [--limit N]

Models: ``tests/element_reads_model.py``'s ``LoopChain`` (a ring of cells, neighbours read
as ``u[i - 1]``, ``u[i]`` (twice), ``u[(i + 1) % n]`` in a Python loop: 4 reads a cell; ``roll``: the same
with ``np.roll``) and ``tests/grids_model.py``'s ``PlainKuramoto`` (``loops``: a Python
double loop over the phases, 2 reads a pair; ``broadcast``: ``theta[None, :] -
theta[:, None]``).  Each case runs in a fresh process with an empty cache: the time to the
end of a first ``simulate(0.1, 0.1)`` (trace to numba compile), or to the ``TraceError``
when the model is refused.  ``--limit 0`` lifts the limit (the behaviour before it).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

CASES = [
    ("chain", "loop", 100), ("chain", "loop", 300), ("chain", "loop", 500), ("chain", "loop", 1000),
    ("chain", "roll", 1000),
    ("kuramoto", "loops", 20), ("kuramoto", "loops", 30), ("kuramoto", "loops", 40), ("kuramoto", "loops", 64),
    ("kuramoto", "broadcast", 64),
]  # fmt: skip
MODELS = {"chain": ("element_reads_model.py", "build_loop_chain"), "kuramoto": ("grids_model.py", "build_plain_kuramoto")}


def child(model: str, form: str, n: int, limit: int) -> None:
    """Build and first-run one model in this (fresh) process; print the outcome as JSON."""
    import json

    sys.path.insert(0, str(HERE.parent / "tests"))
    from dynode_compare import build_simulation

    from dyngen import trace
    from dyngen.errors import TraceError

    if limit == 0:
        trace.ELEMENT_READS_MAX = 10**12
    elif limit is not None:
        trace.ELEMENT_READS_MAX = limit
    file, builder = MODELS[model]
    sim = build_simulation(HERE.parent / "tests" / file, "dyngen", builder, n, form)
    start = time.perf_counter()
    try:
        result = sim.compile()
        stages = dict(result.timings)
        sim.simulate(0.1, 0.1)
        outcome = "built"
    except TraceError:
        stages, outcome = {}, "refused"
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "outcome": outcome,
                      "front": sum(stages.get(k, 0.0) for k in ("trace", "flatten", "lower", "render"))}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=None, help="ELEMENT_READS_MAX in the children (0: no limit)")
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, form, n, limit = args.child
        child(model, form, int(n), None if limit == "default" else int(limit))
        return
    from child_process import run_json_child

    from dyngen.symbolic import ELEMENT_READS_MAX

    limit = "default" if args.limit is None else str(args.limit)
    shown = ELEMENT_READS_MAX if args.limit is None else ("none" if args.limit == 0 else args.limit)
    print(f"limit {shown} reads; medians of {args.repeats} fresh processes, empty cache each")
    header = f"{'model':<10}{'form':<11}{'n':>6}{'reads':>8}{'outcome':>9}{'to result s':>13}{'trace..render s':>17}"
    print(header)
    print("-" * len(header))
    for model, form, n in CASES:
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                runs.append(run_json_child(__file__, ["--child", model, form, str(n), limit], cache))
        reads = {"loop": 4 * n, "loops": 2 * n * n}.get(form, 0)
        outcome = "/".join(sorted({r["outcome"] for r in runs}))
        seconds = statistics.median(r["seconds"] for r in runs)
        front = statistics.median(r["front"] for r in runs)
        print(f"{model:<10}{form:<11}{n:>6}{reads:>8,}{outcome:>9}{seconds:>13.2f}{front:>17.2f}")


if __name__ == "__main__":
    main()
