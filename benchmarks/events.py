"""Events (System.add_event): dyngen's compiled event location against scipy's solve_ivp.

    python benchmarks/events.py               # --repeats 7 by default
    python benchmarks/events.py --repeats 3   # quicker

Rows (medians of ``--repeats`` runs, after one warm-up run that builds and compiles):

- bouncing ball (restitution 0.9, 50 bounces, rtol = atol = 1e-10): every bounce time
  against the closed form, and the time of one run: dyngen's dopri5, dop853 and rodas4 (the compiled
  module built, a fresh ``Simulation`` per run, timed from ``simulate()`` on) against
  ``solve_ivp(RK45)`` (the same method) with the event function and the right-hand
  side in Python, restarted after each bounce with the velocity reset.
- thermostat with hysteresis (a heater mode switched at 22 and 18 degrees) and a
  Coulomb-friction stick-slip oscillator on a moving belt: the switching times of
  dyngen's dopri5, dop853 and rodas4 (rtol = atol = 1e-10) against a tight solve_ivp reference (DOP853,
  rtol = atol = 1e-13, Python events, restarted at each switch), and their run times.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import numpy as np
from scipy.integrate import solve_ivp

from dyngen import Simulation, System, where

G, H0, E = 9.81, 10.0, 0.9


class Ball(System):
    def __init__(self) -> None:
        super().__init__()
        self.states.h = H0
        self.states.v = 0.0
        self.ders.h = 0.0
        self.ders.v = 0.0
        self.inputs.e = E
        self.add_event(self.ground, self.bounce, direction=-1)

    def do_step(self, t):
        self.ders.h = self.states.v
        self.ders.v = -G

    def ground(self, t):
        return self.states.h

    def bounce(self, t):
        self.states.v = -self.inputs.e * self.states.v


def bounce_times(n: int) -> list[float]:
    t, v = math.sqrt(2 * H0 / G), math.sqrt(2 * G * H0)
    times = [t]
    for _ in range(n - 1):
        v *= E
        t += 2 * v / G
        times.append(t)
    return times


def ball_scipy(t_end: float, tol: float, e: float = E, h0: float = H0) -> list[float]:
    """solve_ivp(RK45) with a Python event, restarted with the reset after each bounce."""

    def f(t, y):
        return np.array([y[1], -G])

    def ground(t, y):
        return y[0]

    ground.terminal, ground.direction = True, -1
    t, y, times = 0.0, np.array([h0, 0.0]), []
    while True:
        sol = solve_ivp(f, (t, t_end), y, method="RK45", rtol=tol, atol=tol, events=ground)
        if sol.status != 1:
            return times
        t, y = float(sol.t_events[0][0]), sol.y_events[0][0].copy()
        y[1] = -e * y[1]
        times.append(t)


class Thermostat(System):
    """T' = -a (T - T_out) + q on; the heater switches off at 22 and on at 18 degrees."""

    def __init__(self) -> None:
        super().__init__()
        self.states.T = 18.0
        self.ders.T = 0.0
        self.inputs.on = 1.0
        self.add_event(self.too_warm, self.switch_off, direction=1)
        self.add_event(self.too_cold, self.switch_on, direction=-1)

    def do_step(self, t):
        self.ders.T = -0.1 * (self.states.T - 10.0) + 2.0 * self.inputs.on

    def too_warm(self, t):
        return self.states.T - 22.0

    def too_cold(self, t):
        return self.states.T - 18.0

    def switch_off(self, t):
        self.inputs.on = 0.0

    def switch_on(self, t):
        self.inputs.on = 1.0


def thermostat_scipy(t_end: float) -> list[float]:
    def warm(t, y, on):
        return y[0] - 22.0

    def cold(t, y, on):
        return y[0] - 18.0

    warm.terminal, warm.direction = True, 1
    cold.terminal, cold.direction = True, -1
    t, y, on, times = 0.0, np.array([18.0]), 1.0, []
    while True:
        event = warm if on else cold
        sol = solve_ivp(lambda t, y, on: -0.1 * (y - 10.0) + 2.0 * on, (t, t_end), y, method="DOP853",
                        rtol=1e-13, atol=1e-13, events=event, args=(on,))  # fmt: skip
        if sol.status != 1:
            return times
        t, y, on = float(sol.t_events[0][0]), sol.y_events[0][0].copy(), 1.0 - on
        times.append(t)


K, M, VB, FS, FK = 1.0, 1.0, 0.2, 1.0, 0.8  # spring, mass, belt speed, static and kinetic friction


class StickSlip(System):
    """A mass on a spring, dragged by a belt: stuck (mode 1) it moves with the belt until
    the spring force exceeds static friction; slipping, kinetic friction s * FK acts, and
    it sticks again when its speed reaches the belt's with the spring force below FS."""

    def __init__(self) -> None:
        super().__init__()
        self.states.x = 0.0
        self.states.v = 0.0
        self.ders.x = 0.0
        self.ders.v = 0.0
        self.inputs.mode = 0.0
        self.inputs.s = 1.0
        self.add_event(self.belt_speed, self.stick)
        self.add_event(self.breaks_free, self.slip, direction=1)

    def do_step(self, t):
        stuck = self.inputs.mode > 0.5
        self.ders.x = where(stuck, VB, self.states.v)
        self.ders.v = where(stuck, 0.0, (-K * self.states.x + self.inputs.s * FK) / M)

    def belt_speed(self, t):
        return where(self.inputs.mode > 0.5, 1.0, self.states.v - VB)

    def breaks_free(self, t):
        return where(self.inputs.mode > 0.5, abs(K * self.states.x) - FS, -1.0)

    def stick(self, t):
        holds = abs(K * self.states.x) <= FS
        self.inputs.mode = where(holds, 1.0, 0.0)
        self.states.v = where(holds, VB, self.states.v)
        self.inputs.s = where(holds, self.inputs.s, -self.inputs.s)

    def slip(self, t):
        self.inputs.mode = 0.0
        self.inputs.s = where(self.states.x > 0.0, 1.0, -1.0)


def stick_slip_scipy(t_end: float) -> list[float]:
    """The same switching logic around solve_ivp, restarted at every switch."""

    def slipping(t, y, s):
        return [y[1], (-K * y[0] + s * FK) / M]

    def belt(t, y, s):  # at the start of a slip v = VB: there, the sign v takes just after (solve_ivp
        return slipping(t, y, s)[1] if t == start[0] and y[1] == VB else y[1] - VB  # would stop on the zero at once)

    def free(t, y, s):
        return abs(K * y[0]) - FS

    belt.terminal = free.terminal = True
    free.direction = 1
    t, y, stuck, s, times = 0.0, np.array([0.0, 0.0]), False, 1.0, []
    start = [t]
    while t < t_end:
        if stuck:  # x = x0 + VB (t - t0): free when |K x| = FS, in closed form
            t_free = t + ((FS / K if y[0] >= 0 else -FS / K) - y[0]) / VB
            if t_free > t_end:
                return times
            y = np.array([FS / K if y[0] >= 0 else -FS / K, VB])
            t, stuck, s = t_free, False, (1.0 if y[0] > 0 else -1.0)
            times.append(t)
            continue
        start[0] = t
        sol = solve_ivp(slipping, (t, t_end), y, method="DOP853", rtol=1e-13, atol=1e-13, events=belt, args=(s,))
        if sol.status != 1:
            return times
        t, y = float(sol.t_events[0][0]), sol.y_events[0][0].copy()
        if abs(K * y[0]) <= FS:
            stuck, y[1] = True, VB
        else:
            s = -s
        times.append(t)
    return times


def median_time(run, repeats: int) -> float:
    run()  # warm-up: builds, compiles
    samples = []
    for _ in range(repeats):
        begin = time.perf_counter()
        run()
        samples.append(time.perf_counter() - begin)
    return statistics.median(samples)


# the seconds a module has spent in compiled integration (dyngen.runtime.specialize.add_time)
_COMPILED_SECONDS = "_dyngen_shared_integration_seconds"


def dyngen_run(system_class: type, t_end: float, observer_dt: float, integrator: str, **options) -> tuple:
    """A fresh Simulation of a fresh system (the module is cached in the process), its
    build outside the timed part; returns (seconds in simulate(), event times, seconds
    of it in the compiled call: the rest is simulate()'s Python)."""
    simulation = Simulation()
    simulation.add_system(system_class())
    simulation.compile()
    namespace = simulation.module.__dict__
    compiled = namespace.get(_COMPILED_SECONDS, 0.0)
    begin = time.perf_counter()
    simulation.simulate(t_end, observer_dt, integrator=integrator, **options)
    elapsed = time.perf_counter() - begin
    return elapsed, [r.time for r in simulation.events], namespace.get(_COMPILED_SECONDS, 0.0) - compiled


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    repeats = args.repeats

    exact = bounce_times(51)
    t_end = 0.5 * (exact[49] + exact[50])  # 50 bounces
    scipy_times = ball_scipy(t_end, 1e-10)
    theirs = median_time(lambda: ball_scipy(t_end, 1e-10), repeats)
    print(f"bouncing ball: 50 bounces until t = {t_end:.3f}, rtol = atol = 1e-10, medians of {repeats}")
    error = max(abs(a - b) / b for a, b in zip(scipy_times, exact))
    print(f"  solve_ivp RK45 (Python rhs and event): {len(scipy_times)} bounces, max relative error {error:.1e}, "
          f"{theirs * 1e3:.1f} ms")  # fmt: skip
    for integrator, intervals in (("dopri5", 256), ("dopri5", 8), ("dop853", 256), ("rodas4", 256)):
        dt = t_end / intervals  # simulate() runs int(t / observer_dt) intervals, as dynode does
        dyngen_run(Ball, dt * intervals, dt, integrator, rtol=1e-10, atol=1e-10)  # warm-up
        runs = [dyngen_run(Ball, dt * intervals, dt, integrator, rtol=1e-10, atol=1e-10) for _ in range(repeats)]
        ours, times = statistics.median(r[0] for r in runs), runs[0][1]
        compiled = statistics.median(r[2] for r in runs)
        error = max(abs(a - b) / b for a, b in zip(times, exact))
        print(f"  dyngen {integrator}, {intervals} observer intervals: {len(times)} bounces, max relative error "
              f"{error:.1e}, {ours * 1e3:.3f} ms (compiled call {compiled * 1e3:.3f} ms), {theirs / ours:.0f}x faster")  # fmt: skip

    for name, system_class, reference, t_stop, dt in (
        ("thermostat", Thermostat, thermostat_scipy, 200.0, 1.0),
        ("stick-slip", StickSlip, stick_slip_scipy, 100.0, 0.5),
    ):
        expected = reference(t_stop)
        their_time = median_time(lambda: reference(t_stop), repeats)
        print(f"{name}: {len(expected)} switches until t = {t_stop}; reference solve_ivp DOP853 1e-13 "
              f"(Python events) {their_time * 1e3:.1f} ms")  # fmt: skip
        for integrator, tol in (("dopri5", 1e-10), ("dop853", 1e-10), ("rodas4", 1e-10)):
            dyngen_run(system_class, t_stop, dt, integrator, rtol=tol, atol=tol)  # warm-up
            runs = [dyngen_run(system_class, t_stop, dt, integrator, rtol=tol, atol=tol) for _ in range(repeats)]
            found = runs[0][1]
            worst = max(abs(a - b) for a, b in zip(found, expected)) if len(found) == len(expected) else math.nan
            print(f"  {integrator:7s} rtol=atol={tol:g}: {len(found)} switches, max |t - t_ref| {worst:.1e}, "
                  f"{statistics.median(r[0] for r in runs) * 1e3:.2f} ms")  # fmt: skip


if __name__ == "__main__":
    main()
