"""Issue 15: build time of all-to-all coupling of a few dozen phases, with no large array.

    python benchmarks/small_all_to_all.py [--repeats 3] [--sizes 16 40 63] [--loop-sizes 20]

``tests/grids_model.py``'s ``PlainKuramoto`` (checked by ``tests/test_promoted_arrays.py``
against dynode and central differences): under the array form's 64 elements the phases
start in the element form.  ``broadcast`` (``theta[None, :] - theta[:, None]``) and
``outer`` (``np.subtract.outer``) promote them to the array form (``arrays.promote_outer``);
``loops`` (a Python double loop over the elements) stays element by element.

Each build runs in a fresh process with an empty dyngen cache; columns are medians over
``--repeats`` of ``sim.compile()`` (trace, flatten, lower, render, import) and of its
stages, the form the phases took, and the Jacobian's entries.
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


def child(n: int, form: str) -> None:
    """Build one model in this (fresh) process; print the times as JSON."""
    import json

    sys.path.insert(0, str(HERE.parent / "tests"))
    from dynode_compare import build_simulation

    sim = build_simulation(HERE.parent / "tests" / "grids_model.py", "dyngen", "build_plain_kuramoto", n, form)
    start = time.perf_counter()
    result = sim.compile()
    seconds = time.perf_counter() - start
    text = Path(result.module.__file__).read_text(encoding="utf-8")
    rhs = text.split("\ndef rhs(")[1].split("\n\n\n")[0]
    print(json.dumps({"build": seconds, "stages": dict(result.timings), "entries": int(result.module.JAC_NNZ),
                      "array": "for j in range(" in rhs}))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 40, 63])
    parser.add_argument("--loop-sizes", type=int, nargs="*", default=[20])
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(int(args.child[0]), args.child[1])
        return
    from child_process import run_json_child

    cases = [(n, form) for form in ("broadcast", "outer") for n in args.sizes] + [(n, "loops") for n in args.loop_sizes]
    header = f"{'form':<11}{'phases':>7}{'build s':>10}{'trace s':>9}{'lower s':>9}{'render s':>10}{'form taken':>12}{'Jacobian entries':>18}"
    print(f"medians of {args.repeats} cold builds, each in a fresh process with an empty cache")
    print(header)
    print("-" * len(header))
    for n, form in cases:
        runs = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as cache:
                runs.append(run_json_child(__file__, ["--child", str(n), form], cache))
        med = {key: statistics.median(r["stages"].get(key, 0.0) for r in runs) for key in ("trace", "lower", "render")}
        build = statistics.median(r["build"] for r in runs)
        taken = "array" if runs[0]["array"] else "element"
        print(f"{form:<11}{n:>7}{build:>10.2f}{med['trace']:>9.2f}{med['lower']:>9.2f}{med['render']:>10.2f}"
              f"{taken:>12}{runs[0]['entries']:>18,}")  # fmt: skip


if __name__ == "__main__":
    main()
