"""Stage progress for slow builds (dyngen.progress): on a terminal, and as one line
per stage through logging (or plain stderr lines) when stderr is not a terminal."""

from __future__ import annotations

import io
import logging
import re
import time

import pytest

import dyngen.pipeline
import dyngen.progress
from dyngen.progress import LOGGER, Progress, progress_form, progress_wanted


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def run_stages(progress: Progress, clock: Clock, stages: list[tuple[str, float]]) -> None:
    for name, seconds in stages:
        with progress.stage(name):
            clock.now += seconds


@pytest.fixture(autouse=True)
def no_history(monkeypatch) -> None:
    """Every test starts without earlier builds (the estimates come from them)."""
    monkeypatch.setattr(dyngen.progress, "_HISTORY", {})
    monkeypatch.delenv("DYNGEN_PROGRESS", raising=False)


def unconfigured_logging(monkeypatch) -> None:
    """Logging as in a script or a notebook that configured none.  Called in the test's
    body: pytest attaches its handlers to the root and to every non-propagating logger
    when the test's call begins."""
    monkeypatch.setattr(LOGGER, "propagate", False)
    monkeypatch.setattr(LOGGER, "handlers", [])
    monkeypatch.setattr(LOGGER, "level", logging.NOTSET)


def messages(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "dyngen"]


# -- on a terminal ---------------------------------------------------------------------
def test_a_fast_build_prints_nothing_on_a_terminal() -> None:
    stream = Terminal()
    progress = Progress("model", enabled=True, delay=5.0, stream=stream)
    with progress.stage("trace"):
        pass
    assert stream.getvalue() == ""


def test_a_slow_stage_is_announced_while_it_runs_and_then_every_stage() -> None:
    stream = Terminal()
    progress = Progress("model", delay=0.05, stream=stream)
    assert progress.form == "terminal"
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


def test_disabled_progress_prints_nothing_even_when_slow(caplog) -> None:
    caplog.set_level(logging.INFO, "dyngen")
    for stream in (Terminal(), io.StringIO()):
        clock = Clock()
        run_stages(Progress("model", enabled=False, delay=0.0, stream=stream, clock=clock), clock, [("trace", 5.0)])
        assert stream.getvalue() == ""
    assert messages(caplog) == []


def test_the_environment_variable_decides_over_the_terminal(monkeypatch) -> None:
    assert progress_form(io.StringIO()) == "log" and progress_form(Terminal()) == "terminal"
    monkeypatch.setenv("DYNGEN_PROGRESS", "1")
    assert progress_wanted(io.StringIO())
    monkeypatch.setenv("DYNGEN_PROGRESS", "0")
    assert not progress_wanted(Terminal())
    assert progress_form(io.StringIO()) == "off"
    assert not Progress("model", stream=io.StringIO()).enabled
    monkeypatch.delenv("DYNGEN_PROGRESS")
    assert not progress_wanted(io.StringIO())  # not a terminal: log lines instead


# -- elsewhere: one line per stage -----------------------------------------------------
def test_a_fast_build_logs_nothing(caplog) -> None:
    caplog.set_level(logging.INFO, "dyngen")
    clock = Clock()
    stream = io.StringIO()
    run_stages(Progress("model", stream=stream, clock=clock), clock, [("trace", 0.2), ("lower", 0.3), ("load", 0.1)])
    assert messages(caplog) == [] and stream.getvalue() == ""


def test_a_slow_build_logs_one_line_per_stage_including_those_before_it_was_slow(caplog) -> None:
    caplog.set_level(logging.INFO, "dyngen")
    clock = Clock()
    stream = io.StringIO()
    progress = Progress("vdp", stream=stream, clock=clock)
    assert progress.form == "log"
    run_stages(progress, clock, [("trace", 0.4), ("flatten", 0.3)])
    assert messages(caplog) == []  # 0.7 s so far: still quiet
    run_stages(progress, clock, [("lower", 2.5), ("render", 0.25)])
    assert messages(caplog) == [
        "dyngen [vdp] trace: 0.40 s (build 0.40 s so far)",
        "dyngen [vdp] flatten: 0.30 s (build 0.70 s so far)",
        "dyngen [vdp] lower: 2.50 s (build 3.20 s so far)",
        "dyngen [vdp] render: 0.25 s (build 3.45 s so far)",
    ]
    assert all(r.levelno == logging.INFO for r in caplog.records)
    assert stream.getvalue() == ""  # logging is configured (pytest's handlers): it decides, nothing printed


def test_the_next_build_of_the_same_model_says_what_is_left(caplog) -> None:
    caplog.set_level(logging.INFO, "dyngen")
    clock = Clock()
    stages = [("trace", 1.0), ("lower", 4.0), ("numba compile", 15.0)]
    run_stages(Progress("vdp", clock=clock, stream=io.StringIO()), clock, stages)
    caplog.clear()
    clock.now += 60.0  # the user edits the model
    run_stages(Progress("vdp", clock=clock, stream=io.StringIO()), clock, [("trace", 1.5), ("lower", 3.0)])
    assert messages(caplog) == [
        "dyngen [vdp] trace: 1.50 s (build 1.50 s so far, about 19 s left)",
        "dyngen [vdp] lower: 3.00 s (build 4.50 s so far, about 15 s left)",
    ]
    caplog.clear()  # another model: no estimate from vdp's builds
    run_stages(Progress("other", clock=clock, stream=io.StringIO()), clock, [("trace", 1.5)])
    assert messages(caplog) == ["dyngen [other] trace: 1.50 s (build 1.50 s so far)"]


def test_the_first_build_in_a_new_process_says_what_is_left_from_the_last_slow_one(caplog, monkeypatch, tmp_path) -> None:
    caplog.set_level(logging.INFO, "dyngen")
    clock = Clock()
    history = dyngen.progress.history_file(tmp_path, "vdp", "/models/vdp.py")
    stages = [("trace", 1.0), ("lower", 4.0), ("numba compile", 15.0)]
    run_stages(Progress("vdp", clock=clock, stream=io.StringIO(), history=history), clock, stages)
    assert history.is_file()
    monkeypatch.setattr(dyngen.progress, "_HISTORY", {})  # a new process
    caplog.clear()
    run_stages(Progress("vdp", clock=clock, stream=io.StringIO(), history=history), clock, [("trace", 2.0)])
    assert messages(caplog) == ["dyngen [vdp] trace: 2.00 s (build 2.00 s so far, about 19 s left)"]
    # the same name defined in another file has its own history
    other = dyngen.progress.history_file(tmp_path, "vdp", "/elsewhere/vdp.py")
    assert other != history and not other.exists()


@pytest.mark.parametrize("content", ["", "not json", "[[1, 2]]", '[["trace", -1.0, 2.0]]', '[["trace", NaN, 1.0]]'])
def test_a_damaged_history_gives_no_estimate_and_is_replaced(caplog, monkeypatch, tmp_path, content: str) -> None:
    caplog.set_level(logging.INFO, "dyngen")
    clock = Clock()
    history = dyngen.progress.history_file(tmp_path, "vdp", "/models/vdp.py")
    history.parent.mkdir(parents=True)
    history.write_text(content)
    run_stages(Progress("vdp", clock=clock, stream=io.StringIO(), history=history), clock, [("trace", 2.0)])
    assert messages(caplog) == ["dyngen [vdp] trace: 2.00 s (build 2.00 s so far)"]
    assert dyngen.progress._read_history(history) == [("trace", 2.0, 2.0)]


def test_fast_builds_leave_no_history(tmp_path) -> None:
    clock = Clock()
    history = dyngen.progress.history_file(tmp_path, "vdp", "/models/vdp.py")
    run_stages(Progress("vdp", clock=clock, stream=io.StringIO(), history=history), clock, [("trace", 0.2), ("lower", 0.3)])
    assert not history.exists()


def test_a_long_stage_is_reported_while_it_runs_never_minutes_of_silence(caplog) -> None:
    caplog.set_level(logging.INFO, "dyngen")
    progress = Progress("big", stream=io.StringIO(), delay=0.05, heartbeat=0.1)
    with progress.stage("trace"):
        pass
    with progress.stage("numba compile"):
        time.sleep(0.35)
    found = messages(caplog)
    assert found[0].startswith("dyngen [big] trace: ")
    running = [m for m in found if "numba compile: running for" in m]
    assert 2 <= len(running) <= 4, found  # about every 0.1 s
    assert found[-1].startswith("dyngen [big] numba compile: 0.3")
    assert len(found) == 2 + len(running)
    count = len(found)
    time.sleep(0.25)  # the stage ended: no more lines
    assert len(messages(caplog)) == count


@pytest.mark.parametrize("form", ["log", "terminal"])
def test_a_stage_that_counts_its_work_says_how_far_it_is_and_what_is_left_in_the_first_build(caplog, form: str) -> None:
    """No earlier build to estimate from: the stage's own count (``advance``, as lower's
    Jacobian rows) gives the line its position and the time left at its pace."""
    caplog.set_level(logging.INFO, "dyngen")
    stream = Terminal() if form == "terminal" else io.StringIO()
    progress = Progress("big", stream=stream, delay=0.05, heartbeat=0.1)
    dyngen.progress.advance("Jacobian rows", 1, 8)  # outside a stage: nothing to report to
    with progress.stage("lower"):
        dyngen.progress.advance("Jacobian rows", 0, 8)
        for row in range(1, 9):
            time.sleep(0.06)
            dyngen.progress.advance("Jacobian rows", row, 8)
    lines = stream.getvalue().splitlines() if form == "terminal" else messages(caplog)
    counted = [line for line in lines if "lower: running for" in line]
    assert counted, lines
    found = [re.search(r"Jacobian rows (\d) of 8(, about ([\d.]+) s left for them)?", line) for line in counted]
    assert all(found), counted
    rows = [int(m[1]) for m in found]
    assert rows == sorted(rows) and 1 <= rows[0] < 8
    for m in found:  # the pace so far: about 0.06 s a row for the rows that are left
        if m[3] is not None:
            assert 0.03 * (8 - int(m[1])) <= float(m[3]) <= 0.5 * (8 - int(m[1])), m[0]
    assert progress._part is None and dyngen.progress._RUNNING.get() is None  # nothing left behind


def test_without_logging_configured_the_lines_go_to_stderr_without_carriage_returns(monkeypatch, capsys) -> None:
    unconfigured_logging(monkeypatch)
    clock = Clock()
    run_stages(Progress("vdp", clock=clock), clock, [("trace", 0.5), ("lower", 1.5)])
    captured = capsys.readouterr()
    assert captured.err == "dyngen [vdp] trace: 0.50 s (build 0.50 s so far)\ndyngen [vdp] lower: 1.50 s (build 2.00 s so far)\n"
    assert "\r" not in captured.err and captured.out == ""


def test_the_dyngen_logger_level_silences_the_stderr_lines(monkeypatch, capsys) -> None:
    unconfigured_logging(monkeypatch)
    LOGGER.setLevel(logging.WARNING)
    clock = Clock()
    run_stages(Progress("vdp", clock=clock), clock, [("lower", 5.0)])
    assert capsys.readouterr().err == ""


def test_a_real_build_reports_every_pipeline_stage_when_slow(monkeypatch, caplog, tmp_path) -> None:
    """Simulation.compile of a small model, stderr not a terminal, lower made slow."""
    from dynode_readme_model import build  # tests/ is on sys.path (rootdir conftest)

    import dyngen.lower  # the pipeline imports it when it builds

    real_lower = dyngen.lower.lower

    def slow_lower(*args, **kwargs):
        time.sleep(0.1)
        return real_lower(*args, **kwargs)

    monkeypatch.setattr(dyngen.lower, "lower", slow_lower)
    monkeypatch.setattr(dyngen.progress, "DELAY", 0.05)
    caplog.set_level(logging.INFO, "dyngen")
    sim = build()
    sim.cache_dir = tmp_path
    sim.compile()
    stages = [re.match(r"dyngen \[\w+\] ([\w ()]+): ", m).group(1) for m in messages(caplog)]
    assert stages == ["trace", "flatten", "lower", "render", "write", "load"]
    # the slow build's stage times are in the module cache: a new process estimates from them
    (history,) = (tmp_path / "progress").glob("*.json")
    assert [name for name, _, _ in dyngen.progress._read_history(history)] == stages


def test_a_stage_that_raises_has_no_line_and_the_error_goes_through(caplog) -> None:
    caplog.set_level(logging.INFO, "dyngen")
    clock = Clock()
    progress = Progress("vdp", clock=clock, stream=io.StringIO())
    run_stages(progress, clock, [("trace", 2.0)])
    with pytest.raises(ZeroDivisionError):
        with progress.stage("lower"):
            clock.now += 1.0
            1 / 0
    assert messages(caplog) == ["dyngen [vdp] trace: 2.00 s (build 2.00 s so far)"]


def test_many_fast_builds_leave_no_pending_alarms_behind() -> None:
    """A fresh Simulation per parameter set: each build arms and cancels alarms."""
    for _ in range(3000):
        progress = Progress("many", stream=io.StringIO())
        with progress.stage("load"):
            pass
    assert len(dyngen.progress._ALARMS._due) <= 1001


def test_a_pause_between_stages_is_not_build_time(monkeypatch, capsys) -> None:
    """compile() at once, simulate() a minute later: the first run's stage is not
    reported as part of a slow build (the build took 0.3 s)."""
    unconfigured_logging(monkeypatch)
    clock = Clock()
    progress = Progress("vdp", clock=clock)
    run_stages(progress, clock, [("trace", 0.2), ("lower", 0.05)])
    clock.now += 60.0  # the user does something else
    run_stages(progress, clock, [("numba compile (first run) and integrate", 0.05)])
    assert capsys.readouterr().err == ""
    run_stages(progress, clock, [("more", 1.0)])  # now it is slow: its stages, with the build's own time
    err = capsys.readouterr().err
    assert "trace: 0.20 s (build 0.20 s so far" in err and "more: 1.00 s (build 1.30 s so far" in err
