"""Progress of a long run (``dyngen run``/``dyngen sweep``): a bar on a terminal, a
line every few seconds elsewhere, nothing for runs shorter than a second.

``DYNGEN_PROGRESS`` decides as for builds (``progress.progress_form``): ``0`` silences
it, ``1`` forces the bar.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

from .progress import progress_form
from .runtime.compiled import EXPLICIT_METHODS

DELAY = 1.0  # seconds a run goes unreported
WIDTH = 30  # characters of the bar


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value < 100 else f"{value:.0f} s"


class RunProgress:
    """Reports ``done`` out of ``total`` (simulated time, or members) for ``label``."""

    def __init__(
        self, label: str, total: float, unit: str = "t", stream: TextIO | None = None, *,
        delay: float = DELAY, every: float = 5.0, clock: Callable[[], float] = time.perf_counter,
    ) -> None:  # fmt: skip
        self.label = label
        self.total = float(total)
        self.unit = unit
        self._stream = stream
        self.form = progress_form(stream)
        self.delay = delay
        self.every = every
        self.clock = clock
        self.began = clock()
        self._pace_from = (self.began, 0.0)  # (when, done): where the pace is measured from
        self.shown = False
        self._last_line = -float("inf")
        self._lock = threading.Lock()

    @property
    def stream(self) -> TextIO:
        return self._stream or sys.stderr

    def restart(self, done: float, delay_too: bool = False) -> None:
        """Measure the pace from here (``done`` reached): the first call's numba compile is
        not the run's pace.  ``delay_too``: the run's time (shown, and against ``delay``)
        counts from here too."""
        with self._lock:
            self._pace_from = (self.clock(), float(done))
            if delay_too:
                self.began = self._pace_from[0]

    def _text(self, done: float, spent: float) -> tuple[str, float]:
        fraction = min(1.0, done / self.total) if self.total > 0 else 1.0
        since, base = self._pace_from
        elapsed = self.clock() - since
        rate = (done - base) / elapsed if elapsed > 0 and done > base else 0.0
        left = f", about {_seconds((self.total - done) / rate)} left" if rate > 0 and fraction < 1 else ""
        count = f"{self.unit} = {done:g} of {self.total:g}" if self.unit == "t" else f"{done:g} of {self.total:g} {self.unit}"
        return f"{fraction:4.0%} {count} ({_seconds(spent)}{left})", fraction

    def update(self, done: float) -> None:
        """``done`` of ``total`` reached; prints once the run has taken ``delay`` seconds."""
        if self.form == "off":
            return
        with self._lock:
            now = self.clock()
            spent = now - self.began
            if spent < self.delay:
                return
            text, fraction = self._text(done, spent)
            if self.form == "terminal":
                filled = int(round(fraction * WIDTH))
                bar = "#" * filled + "." * (WIDTH - filled)
                self.stream.write(f"\rdyngen [{self.label}] run [{bar}] {text}\x1b[K")
                self.stream.flush()
                self.shown = True
            elif now - self._last_line >= self.every:
                print(f"dyngen [{self.label}] run: {text}", file=self.stream, flush=True)
                self._last_line = now
                self.shown = True

    def close(self, done: float | None = None) -> None:
        """The run ended: end the bar's line (or a last log line) if anything was shown."""
        if not self.shown:
            return
        spent = self.clock() - self.began
        done = self.total if done is None else done
        if self.form == "terminal":
            self.update(done)
            self.stream.write("\n")
            self.stream.flush()
        else:
            count = f"t = {done:g}" if self.unit == "t" else f"{done:g} {self.unit}"
            print(f"dyngen [{self.label}] run: done, {count} in {_seconds(spent)}", file=self.stream, flush=True)


def simulate_with_progress(
    simulation: Any, t: float, observer_dt: float, progress: RunProgress, *, fixed_step: bool = False,
    integrator: str = "dopri5", segment_seconds: float = 0.25, **options: Any,
) -> float:  # fmt: skip
    """``simulation.simulate(t, observer_dt, fixed_step, integrator, **options)``, reporting progress.

    dopri5 and dop853 (one compiled call for the whole run) run in segments of whole
    output intervals, each about ``segment_seconds`` long: they restart at every output
    interval and add up the time as one call does, so the samples are the same bits.
    The other integrators step from Python: an observer reports their progress.
    Returns the time reached.
    """
    from .runtime.simulation import check_run_arguments

    check_run_arguments(t, observer_dt)  # before counting intervals (t = nan, observer_dt = 0)
    start = float(simulation._t)
    n_intervals = int(t / observer_dt)
    try:
        if integrator not in EXPLICIT_METHODS or n_intervals <= 1:
            if integrator in EXPLICIT_METHODS:  # one interval: nothing to report between
                return simulation.simulate(t, observer_dt, fixed_step, integrator, **options)
            first = [True]

            def observe(time_: float, _y: Any) -> None:
                if first[0]:  # the initial sample; integration (and any compile) starts now
                    first[0] = False
                    progress.restart(time_ - start, delay_too=True)
                progress.update(time_ - start)

            remove = simulation.add_observer(observe)
            try:
                return simulation.simulate(t, observer_dt, fixed_step, integrator, **options)
            finally:
                remove()
        # one interval first: it holds the numba compile of a new model
        reached = simulation.simulate(1.5 * observer_dt, observer_dt, fixed_step, integrator, **options)
        progress.restart(reached - start, delay_too=True)
        done, size = 1, max(1, n_intervals // 1000)
        while done < n_intervals:
            size = max(1, min(size, n_intervals - done))
            began = time.perf_counter()
            reached = simulation.simulate((size + 0.5) * observer_dt, observer_dt, fixed_step, integrator, **options)
            spent = time.perf_counter() - began
            done += size
            progress.update(reached - start)
            per_interval = spent / size
            size = int(min(4 * size, segment_seconds / per_interval if per_interval > 0 else 4 * size))
        return reached
    finally:
        progress.close(float(simulation._t) - start)
