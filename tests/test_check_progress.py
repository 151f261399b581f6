"""The progress of `bnref check`: on stderr only (stdout and the --json report are the same
bytes with it or without it), per property over the dtypes, a bar on a terminal, off one a
line every PROGRESS_INTERVAL seconds and a last one, nothing with --progress never. The
interval, the clock and the background thread are set by each test: none waits on the clock.
"""

from __future__ import annotations

import io
import itertools
import re
from pathlib import Path

import pytest

from bnref import cli

ARGV = ["check", "--profile", "ci", "--property", "zero-mean-unit-var"]
ARGV += ["--property", "identity-params"]
# A progress line: the count of the total, the share, the rate, the time spent and left.
LINE = re.compile(
    r"^bnref check: (\d+)/(\d+) properties \(\d+%\), (\S+ properties/s|one every \S+ s), "
    r"(\d\d:\d\d) elapsed, (\S+) left(, running \S+ \[float64\])?$"
)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class SteppingClock:
    """A clock that moves `step` seconds each time it is read."""

    def __init__(self, step: float) -> None:
        self.now, self.step = 0.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


@pytest.fixture(autouse=True)
def no_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """No background thread: a line is written only when a property ends or the run does."""
    monkeypatch.setattr(cli, "PROGRESS_TICK", None)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(argv)
    out, err = capsys.readouterr()
    return status, out, err


def test_always_off_a_terminal_writes_the_last_line_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL", 1e9)  # no line before the last
    status, out, err = _run([*ARGV, "--progress", "always"], capsys)
    assert status == 0
    (line,) = err.splitlines()
    match = LINE.match(line)
    assert match is not None, line
    assert match[1] == match[2] == "2"  # done: both properties
    assert match[6] is None  # a finished run names nothing running
    assert "properties/s" not in out
    assert "elapsed" not in out


def test_a_line_at_most_every_interval_and_a_last_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Six properties, a clock that moves 3 s at each reading and an interval of 10 s: fewer
    lines than properties (not a line a property), those before the last 10 s or more apart;
    the last says 6/6."""
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL", 10.0)
    monkeypatch.setattr(cli, "PROGRESS_CLOCK", SteppingClock(3.0))
    names = ["zero-mean-unit-var", "identity-params", "affine-moments", "shift-invariance"]
    names += ["scale-invariance", "inference-formula"]
    argv = ["check", "--profile", "dev", *[f"--property={name}" for name in names]]
    status, _, err = _run(argv, capsys)  # auto: the run is long by this clock
    assert status == 0
    lines = [LINE.match(line) for line in err.splitlines()]
    assert all(lines), err
    found = [m.groups() for m in lines if m]  # (done, total, rate, elapsed, left, running)
    assert 2 <= len(found) < len(names)
    seconds = [int(elapsed[:2]) * 60 + int(elapsed[3:]) for _, _, _, elapsed, _, _ in found]
    periodic = seconds[:-1]  # the last line comes at the end, due or not
    assert all(later - earlier >= 10 for earlier, later in itertools.pairwise(periodic))
    assert {total for _, total, *_ in found} == {"6"}
    assert found[-1][0] == "6"
    assert found[-1][5] is None  # a finished run names nothing running


def test_auto_off_a_terminal_is_silent_for_a_short_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL", 1e9)
    status, _, err = _run(ARGV, capsys)  # auto is the default
    assert (status, err) == (0, "")


def test_never_writes_nothing(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL", 1e-9)  # a line would be due at every step
    monkeypatch.setattr(cli, "PROGRESS_TICK", 1e-3)  # and from a thread
    tty = FakeTerminal()
    monkeypatch.setattr("sys.stderr", tty)  # and a bar on a terminal
    status, _, _ = _run([*ARGV, "--progress", "never"], capsys)
    assert status == 0
    assert tty.getvalue() == ""


def test_on_a_terminal_a_bar_on_stderr(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tty = FakeTerminal()
    monkeypatch.setattr("sys.stderr", tty)
    status, out, _ = _run(ARGV, capsys)
    assert status == 0
    bar = tty.getvalue()
    assert "\r" in bar  # redrawn in place
    assert "running zero-mean-unit-var [float64]" in bar
    assert "running identity-params [float64]" in bar
    assert "bnref check: 100%" in bar
    assert "2/2 properties" in bar
    assert "\r" not in out


def test_several_dtypes_count_every_property_at_every_dtype(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The total is over the dtypes: 1 property at float32 and float64 is 2 to do, and the
    bar names the dtype of the one running."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # tests/ is not a package
    tty = FakeTerminal()
    monkeypatch.setattr("sys.stderr", tty)
    argv = ["check", "user_impl_example:forward", "--convention", "keras", "--profile", "ci"]
    argv += ["--dtype", "float32,float64", "--property", "zero-mean-unit-var"]
    status, _, _ = _run(argv, capsys)
    assert status == 0
    bar = tty.getvalue()
    assert "0/2 properties" in bar
    assert "2/2 properties" in bar
    assert "running zero-mean-unit-var [float32]" in bar
    assert "running zero-mean-unit-var [float64]" in bar


@pytest.mark.parametrize("stderr_is_a_terminal", [False, True])
def test_stdout_and_json_are_the_same_bytes_with_progress_or_without(
    stderr_is_a_terminal: bool,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    """The report is for pipes and files: progress changes no byte of it."""
    monkeypatch.setattr(cli, "PROGRESS_INTERVAL", 1e-9)  # as much progress as there can be
    reports = []
    for mode in ("never", "always"):
        if stderr_is_a_terminal:
            monkeypatch.setattr("sys.stderr", FakeTerminal())
        path = tmp_path / f"{mode}.json"
        status, out, _ = _run([*ARGV, "--progress", mode, "--json", str(path)], capsys)
        reports.append((status, out, path.read_bytes()))
    assert reports[0] == reports[1]
    assert reports[0][0] == 0


def test_progress_is_an_option_with_three_modes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["check", "--progress", "sometimes"])
    assert exc.value.code == 2
    assert "argument --progress: invalid choice: 'sometimes'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["check", "--help"])
    assert "--progress {auto,always,never}" in capsys.readouterr().out


def test_the_documented_interval_is_the_one_used() -> None:
    """docs/audit.md, the README and `bnref check --help` name the interval off a terminal."""
    root = Path(__file__).parent.parent
    seconds = f"{cli.PROGRESS_INTERVAL:g}"
    assert f"a plain line every {seconds} seconds" in (root / "docs" / "audit.md").read_text()
    assert f"a line every {seconds} s elsewhere" in (root / "README.md").read_text()
    assert f"a line every {seconds} s once" in cli.CHECK_DESCRIPTION
