"""Baseline (not part of the prototype): today's per-element dyngen pipeline on the
same Gray-Scott model, build time per stage for growing n, each in a child process
with an empty cache under ./tmp.  Runs the dyngen that is installed; writes only here.

    python baseline_dyngen.py [n ...]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHILD = """
import json, time, resource, sys
import numpy as np
from dyngen import Simulation, System

class GrayScott(System):
    def __init__(self, n):
        super().__init__()
        self.states.u = np.ones(n)
        self.states.v = np.zeros(n)
        self.inputs.Du, self.inputs.Dv, self.inputs.F, self.inputs.k = 2e-5, 1e-5, 0.04, 0.06
        self.inputs.dx = 1.0 / n

    def do_step(self, t):
        u, v, p = self.states.u, self.states.v, self.inputs
        lap_u = np.concatenate(([u[1] - u[0]], u[2:] - 2 * u[1:-1] + u[:-2], [u[-2] - u[-1]])) / p.dx**2
        lap_v = np.concatenate(([v[1] - v[0]], v[2:] - 2 * v[1:-1] + v[:-2], [v[-2] - v[-1]])) / p.dx**2
        self.ders.u = p.Du * lap_u - u * v**2 + p.F * (1 - u)
        self.ders.v = p.Dv * lap_v + u * v**2 - (p.F + p.k) * v

sim = Simulation()
sim.add_system(GrayScott({n}))
t0 = time.perf_counter()
result = sim.compile()
print(json.dumps({{"total": time.perf_counter() - t0, "stages": result.timings,
                  "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def main(sizes: list[int], timeout: float = 600) -> dict:
    out = {}
    (HERE / "tmp").mkdir(exist_ok=True)
    for n in sizes:
        with tempfile.TemporaryDirectory(dir=HERE / "tmp") as cache:
            env = dict(os.environ, DYNGEN_CACHE_DIR=cache, DYNGEN_PROGRESS="0", PYTHONWARNINGS="ignore")
            t0 = time.perf_counter()
            try:
                done = subprocess.run([sys.executable, "-c", CHILD.format(n=n)], capture_output=True,
                                      text=True, env=env, cwd=cache, timeout=timeout)
            except subprocess.TimeoutExpired:
                out[n] = {"total": f"> {timeout} s (timed out)"}
                print(n, out[n], flush=True)
                break
            if done.returncode != 0:
                out[n] = {"error": done.stderr[-1500:]}
            else:
                out[n] = json.loads(done.stdout.strip().splitlines()[-1])
            out[n]["wall_s"] = time.perf_counter() - t0
        print(n, out[n], flush=True)
    return out


if __name__ == "__main__":
    sizes = [int(a) for a in sys.argv[1:]] or [100, 300, 1000, 3000]
    res = main(sizes)
    (HERE / "baseline_dyngen.json").write_text(json.dumps(res, indent=2) + "\n")
