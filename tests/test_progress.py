"""`bnref.progress.Progress`, the progress of `bnref check` and of the experiments: a tqdm bar
on a terminal, a line every `interval` seconds and one at the end elsewhere, nothing when
disabled. No test waits on the real clock: a fake clock moves only when the test moves it."""

from __future__ import annotations

import io
import threading
from typing import Any

import pytest

from bnref.progress import Progress, rate_text


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeClock:
    """Seconds that pass only when the test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_progress_off_a_terminal_writes_a_line_every_interval() -> None:
    """Piped or logged, progress is a line every `interval` seconds and one at the end, each
    with the count in its unit, the share, the rate, the time spent and the time left."""
    clock, log = FakeClock(), io.StringIO()
    with Progress(10, "job", unit="epochs", stream=log, interval=5.0, clock=clock) as bar:
        clock.now += 2.0
        bar.update(2)  # 2 s after the start: no line yet
        assert log.getvalue() == ""
        clock.now += 3.0
        bar.update(3)  # 5 s: a line
        clock.now += 1.0
        bar.update()  # 1 s after that line: none
        bar.update(99)  # clamped to the total
    assert bar.done == 10
    assert log.getvalue().splitlines() == [
        "job: 5/10 epochs (50%), 1.00 epochs/s, 00:05 elapsed, 00:05 left",
        "job: 10/10 epochs (100%), 1.67 epochs/s, 00:06 elapsed, 00:00 left",
    ]
    bar.close()  # closed already: nothing more
    assert len(log.getvalue().splitlines()) == 2


def test_many_steps_within_an_interval_write_one_line() -> None:
    """A line per `interval`, not per step: 1000 steps over 12 s at interval 5 give the lines
    at 5 s and 10 s and the last one."""
    clock, log = FakeClock(), io.StringIO()
    with Progress(1000, "job", unit="steps", stream=log, interval=5.0, clock=clock) as bar:
        for _ in range(1000):
            clock.now += 0.012
            bar.update()
    lines = log.getvalue().splitlines()
    assert [line.split(",")[0] for line in lines] == [
        "job: 417/1000 steps (42%)",  # 417 * 0.012 s = 5.004 s: the first step at 5 s or later
        "job: 834/1000 steps (83%)",  # 5.004 s after that line
        "job: 1000/1000 steps (100%)",
    ]


def test_a_tick_writes_a_line_while_a_long_step_runs() -> None:
    """`tick` (what the background thread calls) writes a line when one is due, with what
    runs now, although no step has ended; not before it is due."""
    clock, log = FakeClock(), io.StringIO()
    with Progress(4, "check", unit="properties", stream=log, interval=10.0, clock=clock) as bar:
        bar.status("running slow-property [float32]")
        clock.now += 9.0
        bar.tick()
        assert log.getvalue() == ""
        clock.now += 1.0
        bar.tick()
        assert log.getvalue().splitlines() == [
            "check: 0/4 properties (0%), ? properties/s, 00:10 elapsed, ? left, "
            "running slow-property [float32]"
        ]
        clock.now += 10.0
        bar.update()
        bar.status("running next [float32]")
    assert log.getvalue().splitlines()[1:] == [
        # a step ended: what ran is done; the next `status` names what runs next
        "check: 1/4 properties (25%), one every 20.00 s, 00:20 elapsed, 01:00 left",
        # interrupted before the total: the last line says what was running
        "check: 1/4 properties (25%), one every 20.00 s, 00:20 elapsed, 01:00 left, "
        "running next [float32]",
    ]


def test_the_last_line_of_a_finished_run_names_nothing_running() -> None:
    clock, log = FakeClock(), io.StringIO()
    with Progress(1, "check", unit="properties", stream=log, clock=clock) as bar:
        bar.status("running p [float64]")
        clock.now += 0.5
        bar.update()
    assert (
        log.getvalue()
        == "check: 1/1 properties (100%), 2.00 properties/s, 00:00 elapsed, 00:00 left\n"
    )


def test_quiet_if_short_writes_nothing_for_a_short_run() -> None:
    """With `quiet_if_short` (bnref check --progress auto off a terminal), a run that ends
    within its first interval writes nothing; a longer one its lines and the last one."""
    clock, log = FakeClock(), io.StringIO()
    with Progress(
        3, "check", unit="properties", stream=log, quiet_if_short=True, clock=clock
    ) as bar:
        clock.now += 4.9
        bar.update(3)
    assert log.getvalue() == ""
    with Progress(
        3, "check", unit="properties", stream=log, quiet_if_short=True, clock=clock
    ) as bar:
        clock.now += 5.0
        bar.update()
        bar.update(2)
    assert [line.split(",")[0] for line in log.getvalue().splitlines()] == [
        "check: 1/3 properties (33%)",
        "check: 3/3 properties (100%)",
    ]


def test_progress_on_a_terminal_is_a_tqdm_bar() -> None:
    tty = FakeTerminal()
    with Progress(2, "job", unit="runs", stream=tty) as bar:
        bar.update()
        bar.update(5)
    text = tty.getvalue()
    assert "\r" in text  # redrawn in place
    assert "job: 100%" in text
    assert "2/2 runs" in text
    assert "runs/s" in text
    assert text.endswith("\n")


def test_a_bar_shows_what_runs_and_makes_room_for_other_output() -> None:
    """On a terminal the bar names what runs now; `paused` clears it before other output
    (the report's lines) and draws it again after."""
    tty = FakeTerminal()
    with Progress(2, "check", unit="properties", stream=tty) as bar:
        bar.status("running p [float64]")
        with bar.paused():
            before = tty.getvalue()
            tty.write("REPORT LINE\n")
        bar.update(2)
    text = tty.getvalue()
    assert "running p [float64]" in before
    assert before.endswith("\r")  # the bar's line cleared: the report line starts at column 0
    assert "check:" in text.split("REPORT LINE\n")[1]  # drawn again after it


def test_progress_disabled_writes_nothing() -> None:
    for stream in (FakeTerminal(), io.StringIO()):
        with Progress(
            2, "job", unit="epochs", stream=stream, enabled=False, tick_every=0.001
        ) as bar:
            bar.status("running x")
            bar.tick()
            bar.update(2)
        assert stream.getvalue() == ""
        assert bar.done == 2


class SignalledLog(io.StringIO):
    """A log that says when a line has been written to it."""

    def __init__(self) -> None:
        super().__init__()
        self.written = threading.Event()

    def write(self, text: str) -> int:
        n = super().write(text)
        self.written.set()
        return n


def test_the_background_thread_writes_while_no_step_ends() -> None:
    """With `tick_every`, a thread writes the due line with no step ending (a long property);
    close stops it. The test waits for the line, not for a time."""
    clock, log = FakeClock(), SignalledLog()
    bar = Progress(2, "check", unit="properties", stream=log, clock=clock, tick_every=0.001)
    clock.now += 5.0  # a line is due; only the thread can write it
    assert log.written.wait(timeout=60.0)
    bar.close()
    lines = log.getvalue().splitlines()
    assert lines[0] == "check: 0/2 properties (0%), ? properties/s, 00:05 elapsed, ? left"
    assert lines[-1] == lines[0]  # the last line, at close (the clock has not moved)
    assert not any(t.name == "bnref-progress" for t in threading.enumerate())


def test_rate_text() -> None:
    assert rate_text(0, 0.0, "properties") == "? properties/s"
    assert rate_text(10, 2.0, "properties") == "5.00 properties/s"
    assert rate_text(4, 10.0, "properties") == "one every 2.50 s"
    assert rate_text(4, 10.0, "epochs", rate=3.0) == "3.00 epochs/s"  # tqdm's smoothed rate


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"total": 0}, r"^total must be"),
        ({"unit": " "}, r"^unit must be a non-empty word such as 'epochs', got ' '$"),
        ({"interval": 0.0}, r"^interval must be a number of seconds > 0, got 0.0$"),
        ({"tick_every": -1}, r"^tick_every must be a number of seconds > 0, got -1$"),
        ({"interval": True}, r"^interval must be a number of seconds > 0, got True$"),
    ],
)
def test_progress_rejects(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"total": 3, "unit": "epochs", **kwargs}
    with pytest.raises(ValueError, match=message):
        Progress(args.pop("total"), "job", **args)
