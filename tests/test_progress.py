"""Stage progress for slow builds (dyngen.progress)."""

import io
import time

from dyngen.progress import Progress, progress_wanted


def test_a_fast_build_prints_nothing() -> None:
    stream = io.StringIO()
    progress = Progress("model", enabled=True, delay=5.0, stream=stream)
    with progress.stage("trace"):
        pass
    assert stream.getvalue() == ""


def test_a_slow_stage_is_announced_while_it_runs_and_then_every_stage() -> None:
    stream = io.StringIO()
    progress = Progress("model", enabled=True, delay=0.05, stream=stream)
    with progress.stage("lower"):
        time.sleep(0.3)
        assert stream.getvalue() == "dyngen [model] lower ...\n"  # announced by the timer
    with progress.stage("render"):
        pass
    lines = stream.getvalue().splitlines()
    assert lines[0] == "dyngen [model] lower ..."
    assert lines[1].startswith("dyngen [model] lower done (") and lines[1].endswith(" s)")
    assert lines[2] == "dyngen [model] render ..."
    assert lines[3].startswith("dyngen [model] render done (")


def test_disabled_progress_prints_nothing_even_when_slow() -> None:
    stream = io.StringIO()
    progress = Progress("model", enabled=False, delay=0.0, stream=stream)
    with progress.stage("trace"):
        time.sleep(0.05)
    assert stream.getvalue() == ""


def test_the_environment_variable_decides_over_the_terminal(monkeypatch) -> None:
    monkeypatch.setenv("DYNGEN_PROGRESS", "1")
    assert progress_wanted(io.StringIO())
    monkeypatch.setenv("DYNGEN_PROGRESS", "0")
    assert not progress_wanted(io.StringIO())
    monkeypatch.delenv("DYNGEN_PROGRESS")
    assert not progress_wanted(io.StringIO())  # not a terminal
