"""Stage-by-stage progress on the terminal for builds that take more than a second.

Quiet for fast builds: nothing is printed until the build has run for ``delay``
seconds; from then on every stage prints a line when it starts and when it ends.
On by default when stderr is a terminal; ``DYNGEN_PROGRESS=1`` (or ``0``) forces it.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, TextIO


def progress_wanted(stream: TextIO | None = None) -> bool:
    """Whether to show progress: ``$DYNGEN_PROGRESS`` if set, else whether stderr is a terminal."""
    setting = os.environ.get("DYNGEN_PROGRESS", "").strip()
    if setting:
        return setting not in ("0", "false", "no", "off")
    stream = stream or sys.stderr
    return bool(getattr(stream, "isatty", lambda: False)())


class Progress:
    """Reports the stages of one build of ``label`` on ``stream`` once it is slow."""

    def __init__(self, label: str, enabled: bool | None = None, delay: float = 1.0, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = progress_wanted(self.stream) if enabled is None else enabled
        self.delay = delay
        self.start = time.perf_counter()
        self.shown = False
        self.current: str | None = None
        self._lock = threading.Lock()

    def _print(self, text: str) -> None:
        print(f"dyngen [{self.label}] {text}", file=self.stream, flush=True)

    def _reveal(self) -> None:
        with self._lock:
            if not self.shown and self.current is not None:
                self.shown = True
                self._print(f"{self.current} ...")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time one stage; print it if the build has become slow."""
        if not self.enabled:
            yield
            return
        began = time.perf_counter()
        with self._lock:
            self.current = name
            if not self.shown and began - self.start >= self.delay:
                self.shown = True
            if self.shown:
                self._print(f"{name} ...")
        timer = None
        if not self.shown:
            timer = threading.Timer(max(0.0, self.delay - (began - self.start)), self._reveal)
            timer.daemon = True
            timer.start()
        try:
            yield
        finally:
            if timer is not None:
                timer.cancel()
            with self._lock:
                self.current = None
                if self.shown:
                    self._print(f"{name} done ({time.perf_counter() - began:.2f} s)")
