"""Whatever in do_step would run only once, at build time, is warned about (with its
file:line), and the model still runs correctly."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import pytest

from dyngen import DyngenWarning, Simulation, System

LOG = logging.getLogger("model")
CALLS = 0
HISTORY: list = []


class Opaque:
    """A callable of a library, not the model's (its __call__ is not in a user file)."""

    __call__ = staticmethod(len)


class Decay(System):
    def __init__(self, log_file: str):
        super().__init__()
        self.states.x = 1.0
        self.history = []
        self.evaluations = 0
        self.log_file = log_file

    def do_step(self, time):
        global CALLS
        x = self.states.x
        print("x =", x)  # <print>
        LOG.info("step at %s", time)  # <logging>
        self.evaluations += 1  # <counter>
        self.history.append(x)  # <append>
        HISTORY.append(x)  # <global-append>
        label = f"{x}"  # <f-string>
        with open(self.log_file, "a") as f:  # <open>
            f.write(label)
        CALLS += 1
        scratch = []
        scratch.append(x)  # <local> a list that does not outlive the call
        self.ders.x = -scratch[0]


def _line(tag: str) -> int:
    lines = Path(__file__).read_text().splitlines()
    return next(i for i, text in enumerate(lines, 1) if f"# <{tag}>" in text)


@pytest.mark.slow
def test_every_build_time_side_effect_is_warned_at_its_line_and_the_model_runs(tmp_path) -> None:
    system = Decay(str(tmp_path / "log.txt"))
    sim = Simulation(cache_dir=tmp_path / "cache")
    sim.add_system(system)
    with pytest.warns(DyngenWarning) as caught:
        sim.simulate(1.0, 0.5)
    assert system.states.x == pytest.approx(math.exp(-1.0), rel=1e-6)  # still runs, correctly
    messages = [str(w.message) for w in caught]
    here = os.path.basename(__file__)
    for tag, what in [
        ("print", "print(...)"),
        ("logging", "logging call"),
        ("counter", "'evaluations'"),
        ("append", "list.append() stores a traced value"),
        ("global-append", "list.append() stores a traced value"),
        ("f-string", "turned into text"),
        ("open", "open(...)"),
    ]:
        found = [m for m in messages if f"{here}:{_line(tag)}" in m and what in m]
        assert found, f"no warning for {tag} ({what}) in {messages}"
        assert "build time" in found[0]
    assert any("assigns the global CALLS" in m for m in messages)
    # a local list that does not outlive the call is not a side effect
    assert not any(f"{here}:{_line('local')}" in m for m in messages)
    # and the warnings are about one build: a second run is quiet
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", DyngenWarning)
        sim.simulate(1.0, 0.5)


class PassesToLibrary(System):
    def __init__(self):
        super().__init__()
        self.states.x = 1.0

    def do_step(self, time):
        size = Opaque()([self.states.x])  # <opaque>
        self.ders.x = -self.states.x * size


def test_a_traced_value_given_to_an_untraced_callable_is_warned(tmp_path) -> None:
    sim = Simulation(cache_dir=tmp_path)
    system = PassesToLibrary()
    sim.add_system(system)
    with pytest.warns(DyngenWarning, match=rf"{os.path.basename(__file__)}:{_line('opaque')}.*does not trace into"):
        sim.simulate(1.0, 0.5)
    assert system.states.x == pytest.approx(math.exp(-1.0), rel=1e-6)
