"""One timed child process of a benchmark script: the script run again with its
arguments, an own module cache, and the JSON line it prints last."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def run_json_child(script: str, arguments: list[str], cache: str) -> dict:
    """Run ``python script *arguments`` with ``DYNGEN_CACHE_DIR=cache`` (quietly, in
    ``cache``) and return the JSON object of its last stdout line."""
    env = dict(os.environ, DYNGEN_CACHE_DIR=cache, DYNGEN_PROGRESS="0", PYTHONWARNINGS="ignore")
    done = subprocess.run([sys.executable, script, *arguments], capture_output=True, text=True, env=env,
                          cwd=cache, timeout=3600)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"child {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def median_rhs_call(module: object, y: object, p: object, dy: object, calls: int = 2000) -> float:
    """The median time of ``calls`` calls of the module's ``rhs`` at ``(0.3, y)``."""
    import time

    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        module.rhs(0.3, y, p, dy)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2]
