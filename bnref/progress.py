"""The progress of a long run on stderr, shared by `bnref check` (per property) and the
experiments (per epoch): how many of the total are done, the rate, the time spent and the time
left, and what is running now.

On a terminal it is a tqdm bar redrawn in place. On any other stream (a pipe, a log file, CI)
it is a plain line every `interval` seconds and one at the end, so that a log shows the run
advancing without the carriage returns of a bar:

    bnref check: 12/40 properties (30%), one every 2.50 s, 00:30 elapsed, 01:10 left, running
    gradients-fast [float64]

(on one line). tqdm computes the share, the times and the time left (its estimate: the average
rate so far; a bar smooths it).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TextIO

from tqdm import tqdm  # type: ignore[import-untyped]  # no py.typed (stubs: types-tqdm)

from reference._validation import check_int

# What the progress shows: done/total in its unit, the share done, the rate, the time spent,
# the time left and (tqdm's postfix, ", " before it) what is running now.
_LINE_FORMAT = (
    "{desc}: {n_fmt}/{total_fmt} {unit} ({percentage:.0f}%), {rate_text}, "
    "{elapsed} elapsed, {remaining} left{postfix}"
)
_BAR_FORMAT = (
    "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} {unit} "
    "[{elapsed}<{remaining}, {rate_text}]{postfix}"
)


def rate_text(done: int, elapsed: float, unit: str, rate: float | None = None) -> str:
    """The rate as read aloud: ``5.00 properties/s`` at one or more a second, ``one every
    2.50 s`` below (tqdm's own ``2.50s/ properties`` reads badly), ``? properties/s`` before
    the first is done. `rate` (per second) is tqdm's smoothed estimate on a bar; without it,
    done / elapsed."""
    if rate is None or rate <= 0:
        rate = done / elapsed if done > 0 and elapsed > 0 else None
    if rate is None:
        return f"? {unit}/s"
    if rate >= 1:
        return f"{rate:.2f} {unit}/s"
    return f"one every {1 / rate:.2f} s"


class _Bar(tqdm):  # type: ignore[misc]  # tqdm is untyped
    """tqdm's bar with the field `rate_text` for its format (the way tqdm's documentation
    adds a field: through `format_dict`)."""

    @property
    def format_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = super().format_dict
        d["rate_text"] = rate_text(d["n"], d["elapsed"], d["unit"], d["rate"])
        return d


class Progress:
    """The progress of a run of `total` steps counted in `unit` ("epochs", "properties") on
    stderr (or `stream`): see the module docstring.

    Off a terminal a line is written when a step ends or `tick` is called `interval` seconds
    or more after the last line (or the start), and one line at `close`; with
    `quiet_if_short`, a run that ends before its first line writes nothing at all. With
    `tick_every` (seconds), a background thread calls `tick` that often: a bar's clock then
    runs, and the lines keep coming, while one long step runs. `status` names what runs now,
    until the next `update`. With `enabled` False it writes nothing. `clock` (seconds,
    monotonic) is for the tests.
    """

    def __init__(
        self,
        total: int,
        label: str,
        *,
        unit: str,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = 5.0,
        quiet_if_short: bool = False,
        tick_every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = check_int(total, "total", minimum=1)
        unit_given: object = unit  # checked as an object: the type is the caller's promise
        if not isinstance(unit_given, str) or not unit.strip():
            raise ValueError(f"unit must be a non-empty word such as 'epochs', got {unit!r}")
        for name, seconds in (("interval", interval), ("tick_every", tick_every)):
            given: object = seconds
            if given is None and name == "tick_every":
                continue
            if not isinstance(given, int | float) or isinstance(given, bool) or not given > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {seconds!r}")
        self.label = label
        self.unit = unit
        self.stream = sys.stderr if stream is None else stream
        self.enabled = enabled
        self.interval = float(interval)
        self.quiet_if_short = quiet_if_short
        self.done = 0
        self.lines = 0  # lines written (off a terminal)
        self._status = ""
        self._clock = clock
        self._start = clock()
        self._last_line = self._start
        self._lock = threading.RLock()  # the caller's thread and the ticker's
        self._bar: Any = None
        if enabled and self.stream.isatty():
            self._bar = _Bar(
                total=self.total,
                desc=label,
                unit=unit,
                file=self.stream,
                bar_format=_BAR_FORMAT,
                dynamic_ncols=True,
            )
        self._closed = threading.Event()
        self._ticker: threading.Thread | None = None
        if enabled and tick_every is not None:
            self._ticker = threading.Thread(
                target=self._tick_until_closed,
                args=(float(tick_every),),
                name="bnref-progress",
                daemon=True,
            )
            self._ticker.start()

    def line(self) -> str:
        """The progress now, as one line (the text written off a terminal)."""
        elapsed = self._clock() - self._start
        text = tqdm.format_meter(
            self.done,
            self.total,
            elapsed,
            prefix=self.label,
            unit=self.unit,
            bar_format=_LINE_FORMAT,
            postfix=self._status,
            rate_text=rate_text(self.done, elapsed, self.unit),
        )
        return " ".join(str(text).split())  # without the padding tqdm puts in its fields

    def status(self, text: str) -> None:
        """Name what runs now ("running gradients-fast [float64]"); "" for nothing."""
        with self._lock:
            self._status = text
            if self._bar is not None:
                self._bar.set_postfix_str(text)

    def update(self, n: int = 1) -> None:
        """Advance by `n` (at most to the total) and show it if it is time to. What ran is
        done: the status is cleared until the next `status`."""
        step = min(self.total - self.done, check_int(n, "n", minimum=0))
        with self._lock:
            self.done += step
            self._status = ""
            if self._bar is not None:
                self._bar.set_postfix_str("", refresh=False)
                self._bar.update(step)
            else:
                self._line_if_due()

    def tick(self) -> None:
        """Show the progress if it is time to, without a step: a bar is redrawn (its clock
        and time left move on), a line is written when `interval` seconds have passed."""
        with self._lock:
            if self._bar is not None:
                self._bar.refresh()
            else:
                self._line_if_due()

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Around other output to the terminal (the report's lines on stdout): the bar is
        cleared before and drawn again after, so that neither breaks the other."""
        with self._lock:
            if self._bar is not None:
                self._bar.clear()
            try:
                yield
            finally:
                if self._bar is not None:
                    self._bar.refresh()

    def _tick_until_closed(self, seconds: float) -> None:
        while not self._closed.wait(seconds):
            self.tick()

    def _line_if_due(self) -> None:
        if self.enabled and self._clock() - self._last_line >= self.interval:
            self._write_line()

    def _write_line(self) -> None:
        self._last_line = self._clock()
        self.lines += 1
        self.stream.write(self.line() + "\n")
        self.stream.flush()

    def close(self) -> None:
        """End the bar (on a terminal) or write the last line (elsewhere; with
        `quiet_if_short`, only after other lines). A run stopped during a step (Ctrl-C) still
        names it."""
        self._closed.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None
        with self._lock:
            if self._bar is not None:
                self._bar.close()
                self._bar = None
            elif self.enabled and (self.lines or not self.quiet_if_short):
                self._write_line()
            self.enabled = False  # closed: a second close writes nothing

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
