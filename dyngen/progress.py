"""Stage-by-stage progress of builds that take more than a second, wherever the user is.

Quiet for fast builds: nothing is reported until the build has run for ``delay``
seconds.  From then on:

- on a terminal (stderr is a tty), every stage prints a line when it starts and when
  it ends;
- elsewhere (a notebook, a log file, CI), every stage is one line when it ends (its
  name, its time, the build's time so far and, when an earlier build of the same
  model ran the same stages, about how long the rest takes), plus a
  "running" line every ``heartbeat`` seconds of a long stage, so that a log never
  stays silent for minutes.  The lines are INFO records of the ``dyngen`` logger; when
  the application configured no logging they are plain stderr lines (set the
  ``dyngen`` logger's level to WARNING to silence them).  No carriage returns.

The estimates come from the latest earlier build of the same model: in this process,
or (a slow one) in an earlier process, kept as a small JSON file in the module cache
(``history_file``), so that the build after an edit says how long it will take.  A
stage that knows its own count of work (``advance``: the Jacobian's rows in ``lower``)
says how far it is and how long the rest of that work takes at its pace, in the first
build too; on a terminal too, such a stage prints a line every ``heartbeat`` seconds.

``DYNGEN_PROGRESS=0`` silences both; ``DYNGEN_PROGRESS=1`` prints the terminal form
on any stream.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import logging
import math
import os
import sys
import threading
import time
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache, partial
from pathlib import Path
from typing import Callable, Iterator, Literal, TextIO

LOGGER = logging.getLogger("dyngen")
_OFF = ("0", "false", "no", "off")
DELAY = 1.0  # seconds a build runs silently before its stages are reported

Form = Literal["terminal", "log", "off"]

# label -> [(stage, seconds, when it ended)] of the latest build of that model in this process: the estimates
_HISTORY: dict[str, list[tuple[str, float, float]]] = {}


class _Alarms:
    """One daemon thread that calls functions at given times: a stage arms an alarm
    for a few microseconds instead of starting a thread of its own."""

    def __init__(self) -> None:
        self._due: list[tuple[float, int, list]] = []  # (when, order, [callback or None])
        self._order = 0
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def set(self, wait: float, callback: Callable[[], None]) -> list:
        """Call ``callback`` in ``wait`` seconds (from the alarm thread); returns a
        handle for ``cancel``."""
        entry = [callback]
        with self._wake:
            if len(self._due) > 1000:  # mostly cancelled alarms of fast builds: drop them
                self._due = [due for due in self._due if due[2][0] is not None]
                heapq.heapify(self._due)
            self._order += 1
            heapq.heappush(self._due, (time.monotonic() + max(0.0, wait), self._order, entry))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="dyngen-progress", daemon=True)
                self._thread.start()
            elif self._due[0][2] is entry:
                self._wake.notify()
        return entry

    @staticmethod
    def cancel(entry: list) -> None:
        entry[0] = None

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    self._wake.wait(None if not self._due else self._due[0][0] - time.monotonic())
                callback = heapq.heappop(self._due)[2][0]
            if callback is not None:
                try:
                    callback()
                except Exception:  # a closed stream, say: the next alarms still ring
                    pass


_ALARMS = _Alarms()


def progress_form(stream: TextIO | None = None) -> Form:
    """How to report: ``$DYNGEN_PROGRESS`` if set (``0``: off, else the terminal form),
    else the terminal form when ``stream`` (stderr) is a terminal, log lines when not."""
    setting = os.environ.get("DYNGEN_PROGRESS", "").strip().lower()
    if setting:
        return "off" if setting in _OFF else "terminal"
    stream = stream or sys.stderr
    return "terminal" if bool(getattr(stream, "isatty", lambda: False)()) else "log"


def progress_wanted(stream: TextIO | None = None) -> bool:
    """Whether the terminal form is wanted: ``$DYNGEN_PROGRESS`` if set, else whether stderr is a terminal."""
    return progress_form(stream) == "terminal"


def history_file(cache: str | os.PathLike | None, label: str, place: str) -> Path:
    """Where the stage times of the slow builds of model ``label`` defined at ``place``
    (its model file) are kept: in the module cache ``cache`` (None: the default one)."""
    return _history_file(None if cache is None else os.fspath(cache), os.environ.get("DYNGEN_CACHE_DIR"), label, place)


@lru_cache(maxsize=256)
def _history_file(cache: str | None, environment: str | None, label: str, place: str) -> Path:
    from .cache import cache_dir  # (``environment``: what cache_dir reads, for the memo)

    name = f"{label}_{hashlib.sha256(place.encode('utf-8')).hexdigest()[:12]}.json"
    return cache_dir(cache) / "progress" / name


def _read_history(path: Path) -> list[tuple[str, float, float]] | None:
    """The stages a ``history_file`` holds; None when there is none or it is damaged."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        stages = [(str(name), float(seconds), float(end)) for name, seconds, end in rows]
    except (OSError, ValueError, TypeError):
        return None
    if not all(math.isfinite(x) and x >= 0 for _, seconds, end in stages for x in (seconds, end)):
        return None
    return stages


def _write_history(path: Path, stages: list[tuple[str, float, float]]) -> None:
    from .write import write_text_atomic

    try:
        write_text_atomic(path, json.dumps(stages))
    except OSError:
        pass  # the next build has no estimate: nothing else depends on it


def _seconds(value: float) -> str:
    return f"{value:.2f} s" if value < 10 else f"{value:.0f} s"


class _Part:
    """How far the running stage is through a counted piece of its work (``advance``)."""

    def __init__(self, what: str, total: int, began: float) -> None:
        self.what, self.total, self.began, self.done, self.at = what, total, began, 0, began

    def text(self) -> str:
        """``; Jacobian rows 1,200 of 3,969, about 25 s left for them`` (the pace so far)."""
        left = ""
        if 0 < self.done < self.total:
            left = f", about {_seconds((self.at - self.began) / self.done * (self.total - self.done))} left for them"
        return f"; {self.what} {self.done:,} of {self.total:,}{left}"


_RUNNING: ContextVar["Progress | None"] = ContextVar("dyngen_progress", default=None)


def advance(what: str, done: int, total: int) -> None:
    """Within the stage that runs: ``done`` of ``total`` ``what`` are finished (call it
    with 0 when that work begins; else its pace is counted from the stage's start).
    Costs a context-variable lookup when no build is being reported."""
    progress = _RUNNING.get()
    running = progress._running if progress is not None else None
    if running is None:
        return
    part = progress._part
    now = progress.clock()
    if part is None or part.what != what or part.total != total:
        part = progress._part = _Part(what, total, now if done == 0 else running[1])
    part.done, part.at = done, now


class Progress:
    """Reports the stages of one build of ``label`` once it is slow.

    ``enabled``: None decides by ``progress_form``; False is silent; True reports in
    the form the stream suits (the terminal form on a terminal, log lines elsewhere).
    ``delay`` defaults to ``DELAY``; ``clock`` is the time source (``time.perf_counter``; tests pass a fake one).
    ``history``: the model's ``history_file``, read when this process has not built it
    yet and written when this build is slow.
    """

    def __init__(
        self,
        label: str,
        enabled: bool | None = None,
        delay: float | None = None,
        stream: TextIO | None = None,
        *,
        heartbeat: float = 15.0,
        clock: Callable[[], float] = time.perf_counter,
        history: Path | None = None,
    ) -> None:
        self.label = label
        self._stream = stream
        form = progress_form(stream)
        if enabled is None:
            self.form: Form = form
        else:
            self.form = ("log" if form == "log" else "terminal") if enabled else "off"
        self.enabled = self.form != "off"
        self.delay = DELAY if delay is None else delay
        self.heartbeat = heartbeat
        self.clock = clock
        self.shown = False
        # finished stages: name, seconds, and the build's time at its end (the stages' time
        # added up: a pause between compile() and the first simulate() is not the build's)
        self.done: list[tuple[str, float, float]] = []
        self.previous = _HISTORY.get(label)  # the latest earlier build of this model
        self._history = history if self.enabled else None
        if self.previous is None and self._history is not None:
            self.previous = _read_history(self._history)  # one in an earlier process
        _HISTORY[label] = self.done
        self._reported = 0  # of ``done``, in the log form
        self._running: tuple[str, float] | None = None  # the stage that runs: name, when it began
        self._alarm: list | None = None
        self._part: _Part | None = None  # the running stage's counted work, if it says (advance)
        self._lock = threading.Lock()

    @property
    def stream(self) -> TextIO:
        """Where lines are printed (stderr as it is when printing, unless a stream was given)."""
        return self._stream or sys.stderr

    # -- output ---------------------------------------------------------------
    def _print(self, text: str) -> None:
        print(f"dyngen [{self.label}] {text}", file=self.stream, flush=True)

    def _log(self, text: str) -> None:
        """One line: a ``dyngen`` INFO record, or a stderr line when logging is not configured."""
        if LOGGER.hasHandlers():  # the application's logging decides where it goes, and whether
            LOGGER.info("dyngen [%s] %s", self.label, text)
        elif LOGGER.level <= logging.INFO and not LOGGER.disabled and LOGGER.manager.disable < logging.INFO:
            self._print(text)

    def _left(self, count: int, running: str | None = None, spent: float = 0.0) -> str:
        """``, about N s left`` after the first ``count`` finished stages (and ``spent``
        seconds of the ``running`` one), when the latest earlier build of this model
        began with the same stages; else nothing."""
        names = [name for name, _, _ in self.done[:count]] + ([running] if running else [])
        previous = self.previous
        if not previous or len(previous) <= count or [name for name, _, _ in previous[: len(names)]] != names:
            return ""
        left = sum(seconds for _, seconds, _ in previous[count:]) - spent
        return f", about {_seconds(left)} left" if left > 0 else ""

    def _report_done(self) -> None:
        """Log form: one line for each finished stage not reported yet."""
        while self._reported < len(self.done):
            name, seconds, end = self.done[self._reported]
            self._reported += 1
            self._log(f"{name}: {_seconds(seconds)} (build {_seconds(end)} so far{self._left(self._reported)})")

    # -- the timer: reports while a stage runs ------------------------------------
    def _arm(self, wait: float) -> None:
        """Call ``_tick`` in ``wait`` seconds for the stage that runs (lock held)."""
        self._alarm = _ALARMS.set(wait, partial(self._tick, self._running))

    def _tick(self, running: tuple[str, float]) -> None:
        with self._lock:
            if self._running is not running:  # that stage has ended
                return
            name, began = running
            part = self._part
            spent = self.clock() - began
            if self.form == "terminal":
                if not self.shown:  # the build became slow during this stage
                    self.shown = True
                    self._print(f"{name} ...")
                elif part is not None:
                    self._print(f"{name}: running for {_seconds(spent)}{part.text()}")
                self._arm(self.heartbeat)  # (a line only once the stage counts its work)
                return
            self.shown = True
            self._report_done()
            so_far = self._busy() + spent
            left = self._left(len(self.done), name, spent)
            counted = part.text() if part is not None else ""
            self._log(f"{name}: running for {_seconds(spent)} (build {_seconds(so_far)} so far{left}{counted})")
            self._arm(self.heartbeat)

    def _busy(self) -> float:
        """The build's time so far: its finished stages' (lock held)."""
        return self.done[-1][2] if self.done else 0.0

    # -- stages ---------------------------------------------------------------
    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage; report it if the build has become slow."""
        if not self.enabled:
            yield
            return
        with self._lock:
            began = self.clock()
            self._running = (name, began)
            if self.form == "terminal":
                busy = self._busy()
                if not self.shown and busy >= self.delay:
                    self.shown = True
                if self.shown:
                    self._print(f"{name} ...")
                else:
                    self._arm(self.delay - busy)
            else:
                self._arm(self.heartbeat)
        failed = True
        token = _RUNNING.set(self)
        try:
            yield
            failed = False
        finally:
            _RUNNING.reset(token)
            with self._lock:
                if self._alarm is not None:
                    _ALARMS.cancel(self._alarm)
                    self._alarm = None
                self._running = None
                self._part = None
                if not failed:  # a stage that raised has no line: the error says what went wrong
                    self._finished(name, began)

    def _finished(self, name: str, began: float) -> None:
        """Stage ``name`` ended: its line, if the build is slow (lock held)."""
        seconds = self.clock() - began
        busy = self._busy() + seconds
        self.done.append((name, seconds, busy))
        if self._history is not None and busy >= self.delay:
            _write_history(self._history, self.done)
        if self.form == "terminal":
            if self.shown:
                self._print(f"{name} done ({seconds:.2f} s{self._left(len(self.done))})")
        elif self.shown or busy >= self.delay:
            self.shown = True
            self._report_done()
