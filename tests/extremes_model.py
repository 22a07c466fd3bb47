"""Models whose derivatives read maxima and minima of a few dozen traced elements, for
tests/test_element_extremes.py (issue 15: such models lowered for minutes in element form).

- ``build(n, kind)``: a diffusion on a ring of ``n`` cells relaxing towards an extreme:
  ``max``: ``np.max(u**2)`` and ``np.min(np.cos(u))``; ``method``: ``u.max() - u.min()``;
  ``reduce``: ``np.maximum.reduce(u)``; ``builtin``: ``max(u[i] for i in ...)`` (Python's
  max over a generator); ``nested``: a loop of ``np.maximum``; ``clip``: a chain of
  ``np.clip``; ``sum``: ``np.sum(u**2)`` and ``np.sum(np.cos(u))`` (as ``max``).
- ``build_filled(n)``: ``u - np.max(u)`` next to an item assignment that the array form
  cannot express (traced element by element: a dense Jacobian of n² entries).
- ``build_where_chain(n)``: a value tested, then selected by ``np.where``, eight times.
"""

import numpy as np

from dyngen import Simulation, System


class Extremes(System):
    def __init__(self, n, kind):
        super().__init__()
        self.kind = kind
        self.states.u = 0.8 * np.sin(np.linspace(0.0, 2.0 * np.pi, n, endpoint=False) + 0.3)
        self.ders.u = np.zeros(n)

    def do_step(self, time):
        u = self.states.u
        lap = np.roll(u, 1) - 2.0 * u + np.roll(u, -1)
        if self.kind == "max":
            self.ders.u = lap - (u - np.max(u**2)) * np.min(np.cos(u))
        elif self.kind == "sum":
            self.ders.u = lap - (u - np.sum(u**2)) * np.sum(np.cos(u)) / u.size
        elif self.kind == "method":
            self.ders.u = lap - u + 0.5 * (u.max() - u.min())
        elif self.kind == "reduce":
            self.ders.u = lap - u + np.maximum.reduce(u) * np.minimum.reduce(u)
        elif self.kind == "builtin":
            self.ders.u = lap - u + max(u[i] ** 2 for i in range(u.size))
        elif self.kind == "nested":
            m = u[0]
            for i in range(1, u.size):
                m = np.maximum(m, np.sin(u[i]))
            self.ders.u = lap - u * m
        elif self.kind == "clip":
            v = u
            for k in range(4):
                v = np.clip(v, -0.9 + 0.1 * k, 0.9 - 0.1 * k) * 1.1
            self.ders.u = lap - v


def build(n, kind):
    sim = Simulation()
    sim.add_system(Extremes(n, kind))
    return sim


class Filled(System):
    def __init__(self, n):
        super().__init__()
        self.states.u = np.linspace(0.0, 1.0, n)
        self.ders.u = np.zeros(n)

    def do_step(self, time):
        u = self.states.u
        lap = np.zeros_like(u)
        lap[1:-1] = u[2:] - 2.0 * u[1:-1] + u[:-2]
        self.ders.u = lap - (u - np.max(u))


def build_filled(n):
    sim = Simulation()
    sim.add_system(Filled(n))
    return sim


class WhereChain(System):
    def __init__(self, n):
        super().__init__()
        self.states.u = np.linspace(-1.0, 1.0, n)
        self.ders.u = np.zeros(n)

    def do_step(self, time):
        v = self.states.u
        for k in range(8):
            v = np.where(v > 0.1 * k, v - 0.05, v + 0.05)
        self.ders.u = -v


def build_where_chain(n):
    sim = Simulation()
    sim.add_system(WhereChain(n))
    return sim
