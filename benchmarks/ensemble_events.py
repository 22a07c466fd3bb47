"""Ensembles of a model with events (issues 18 and 19): 1000 bouncing balls.

    python benchmarks/ensemble_events.py [--members M] [--repeats R] [--loop L] [--integrator dopri5|dop853|rodas4]

The ball of ``events.py`` (g = 9.81, the bounce an event with direction -1 whose action
sets v = -e v), t = 8, a sample every 0.1, rtol = atol = 1e-10, DOPRI5.  Member j has
restitution e_j in 0.85..0.95 and initial height h_j in 5..15 (zipped, ``members=``):
2 to 6 bounces each (3635 in all), no Zeno point before t = 8.  Printed, as medians of ``R`` repeats,
in microseconds per member:

* ``Simulation.ensemble`` on 1 and on 2 threads (the whole call: values, runs, Dataset
  with the event arrays), with dyngen's shared integrators (``standalone=False``);
* a Python loop of fresh ``Simulation``s (build from the module cache, set e and h,
  ``simulate()``, read ``sim.events``), ``L`` members;
* a Python loop on one ``Simulation`` with ``sim.reset()`` between members, ``L`` members;
* ``scipy.integrate.solve_ivp(RK45)`` with the event in Python (terminal, restarted
  after each bounce with the velocity reset, as ``events.py``), ``L`` members.

Every member's bounce times in the loops are checked equal to the ensemble's (bit for
bit), and scipy's against the closed form.  Builds and compiles happen before the first
timed run and are reported separately.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("DYNGEN_PROGRESS", "0")

from dyngen import Simulation, System  # noqa: E402
from events import ball_scipy  # noqa: E402  (the same solve_ivp restart loop)

G, T, DT, TOL = 9.81, 8.0, 0.1, 1e-10
E, H = "Ball.inputs.e", "Ball.states.h"


class Ball(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.h = 10.0
        self.states.v = 0.0
        self.ders.h = 0.0
        self.ders.v = 0.0
        self.inputs.e = 0.9
        self.add_event(self.ground, self.bounce, direction=-1)

    def do_step(self, t):
        self.ders.h = self.states.v
        self.ders.v = -G

    def ground(self, t):
        return self.states.h

    def bounce(self, t):
        self.states.v = -self.inputs.e * self.states.v


def build() -> Simulation:
    sim = Simulation()
    sim.add_system(Ball())
    sim.standalone = False  # the shared integrators throughout (no switch to the model's own midway)
    return sim


def closed_form(e: float, h0: float, t_end: float) -> list[float]:
    t, v, times = math.sqrt(2 * h0 / G), math.sqrt(2 * G * h0), []
    while t <= t_end:
        times.append(t)
        v *= e
        t += 2 * v / G
    return times


def median_per_member(function, repeats: int, count: int) -> float:
    times = []
    for _ in range(repeats):
        begin = time.perf_counter()
        function()
        times.append(time.perf_counter() - begin)
    return statistics.median(times) / count * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--members", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--loop", type=int, default=100, help="members run by the Python loops and scipy")
    parser.add_argument("--integrator", default="dopri5", choices=["dopri5", "dop853", "rodas4"])
    args = parser.parse_args()
    method = dict(integrator=args.integrator, rtol=TOL, atol=TOL)
    restitution = np.linspace(0.85, 0.95, args.members)
    heights = np.linspace(5.0, 15.0, args.members)
    members = {E: restitution, H: heights}
    loop = min(args.loop, args.members)
    picked = np.linspace(0, args.members - 1, loop).astype(int)

    begin = time.perf_counter()
    sim = build()
    sim.compile()
    build_time = time.perf_counter() - begin
    begin = time.perf_counter()
    first = sim.ensemble(T, DT, members={E: restitution[:2], H: heights[:2]}, threads=1, **method)
    first_time = time.perf_counter() - begin
    assert (first["status"].values == 1).all()

    def ensemble(threads: int):
        return sim.ensemble(T, DT, members=members, threads=threads, **method)

    reference = ensemble(2)
    assert (reference["status"].values == 1).all(), reference["reason"].values
    counts = reference["event_count"].values
    found = reference["event_time"].values
    worst = max(
        float(np.max(np.abs(found[j, : counts[j]] / closed_form(restitution[j], heights[j], T) - 1)))
        for j in range(args.members)
    )  # fmt: skip

    def check(j: int, events: list) -> None:
        found = [r.time for r in events]
        expected = reference["event_time"].values[j, : counts[j]].tolist()
        assert found == expected, f"member {j}: the loop's events differ from the ensemble's"

    def fresh_loop() -> None:
        for j in picked:
            s = build()
            s.systems[0].inputs.e, s.systems[0].states.h = float(restitution[j]), float(heights[j])
            s.simulate(T, DT, **method)
            check(j, s.events)

    one = build()
    ball = one.systems[0]

    def reset_loop() -> None:
        for j in picked:
            one.reset()
            one.events.clear()
            ball.inputs.e, ball.states.h = float(restitution[j]), float(heights[j])
            one.simulate(T, DT, **method)
            check(j, one.events)

    def scipy_loop() -> None:
        for j in picked:
            found = ball_scipy(T, TOL, restitution[j], heights[j])
            assert np.allclose(found, closed_form(restitution[j], heights[j], T), rtol=1e-8, atol=0)

    fresh_loop()  # warm (and checked)
    reset_loop()
    rows = {"ensemble, 1 thread": [], "ensemble, 2 threads": [], "loop of fresh Simulations": [],
            "loop with sim.reset()": [], "solve_ivp(RK45), event in Python": []}  # fmt: skip
    for _ in range(args.repeats):  # interleaved rounds: the machine's load hits every row alike
        rows["ensemble, 1 thread"].append(median_per_member(lambda: ensemble(1), 1, args.members))
        rows["ensemble, 2 threads"].append(median_per_member(lambda: ensemble(2), 1, args.members))
        rows["loop of fresh Simulations"].append(median_per_member(fresh_loop, 1, loop))
        rows["loop with sim.reset()"].append(median_per_member(reset_loop, 1, loop))
        rows["solve_ivp(RK45), event in Python"].append(median_per_member(scipy_loop, 1, loop))

    print(f"{args.members} bouncing balls, {args.integrator}, t = {T}, dt = {DT}, rtol = atol = {TOL}: "
          f"{int(counts.min())}..{int(counts.max())} bounces per member ({int(counts.sum())} in all); build {build_time:.2f} s, first ensemble call "
          f"{first_time:.2f} s; medians of {args.repeats} rounds; loops and scipy over {loop} members")  # fmt: skip
    print(f"bounce times vs the closed form: max relative error {worst:.1e}; the loops' equal the ensemble's bit for bit")
    base = statistics.median(rows["ensemble, 1 thread"])
    print("| run | µs per member | / ensemble on 1 thread |")
    print("|---|---|---|")
    for name, values in rows.items():
        value = statistics.median(values)
        print(f"| {name} | {value:.1f} | {value / base:.2f} |")


if __name__ == "__main__":
    main()
