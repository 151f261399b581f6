"""`bnref check MOD:FN --minibatch` on mini-batch functions that behave as a user's buggy code
does: they exit, crash, hang, raise a BaseException, hide state, or return the wrong form. The
function runs in a worker process (`bnref.isolation.IsolatedMiniBatchTarget`), so each of these
fails the property being checked, naming the function, the example and how it ended; the
course's own function still passes there, and its classic mistakes still fail by name.

Each case calls `bnref.cli.main` in this process (the worker is the process at risk), with the
ci profile (derandomized, no example database) and the hostile functions in a module written
to a temporary directory (`HOSTILE`). `capfd` holds what the worker writes to its stderr.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from hypothesis import settings

from bnref.cli import main

TESTS = Path(__file__).parent
PROPERTIES = (
    "minibatch-cover",
    "minibatch-pairing",
    "minibatch-sizes",
    "minibatch-drop-last",
    "minibatch-deterministic",
    "minibatch-pure",
)

HOSTILE = '''
import os
import signal
import sys
import time

import numpy as np


def honest(X, Y, mini_batch_size=64, seed=0):
    m = X.shape[1]
    order = np.random.RandomState(seed).permutation(m)
    cuts = [order[k : k + mini_batch_size] for k in range(0, m, mini_batch_size)]
    return [(X[:, idx], Y[:, idx]) for idx in cuts]


def exits_zero(X, Y, mini_batch_size=64, seed=0):
    if X.shape[1] > 2:
        sys.exit(0)
    return honest(X, Y, mini_batch_size, seed)


def os_exits_zero(X, Y, mini_batch_size=64, seed=0):
    if X.shape[1] > 2:
        os._exit(0)
    return honest(X, Y, mini_batch_size, seed)


def segfaults(X, Y, mini_batch_size=64, seed=0):
    if X.shape[1] > 2:
        os.kill(os.getpid(), signal.SIGSEGV)
    return honest(X, Y, mini_batch_size, seed)


def sleeps(X, Y, mini_batch_size=64, seed=0):
    if X.shape[1] > 2:
        time.sleep(3600)
    return honest(X, Y, mini_batch_size, seed)


class Stop(BaseException):
    pass


def raises_base_exception(X, Y, mini_batch_size=64, seed=0):
    raise Stop("no more batches")


SEEN = set()


def first_call_differs(X, Y, mini_batch_size=64, seed=0):
    """Hidden state: the first call on an input returns no batches, the calls after it the
    right ones."""
    key = (X.tobytes(), X.shape, mini_batch_size, seed)
    if key not in SEEN:
        SEEN.add(key)
        return []
    return honest(X, Y, mini_batch_size, seed)


def returns_none(X, Y, mini_batch_size=64, seed=0):
    return None


def returns_an_array(X, Y, mini_batch_size=64, seed=0):
    return np.concatenate([X, Y])


def returns_triples(X, Y, mini_batch_size=64, seed=0):
    return [(bx, by, None) for bx, by in honest(X, Y, mini_batch_size, seed)]


def returns_lists(X, Y, mini_batch_size=64, seed=0):
    return [(bx.tolist(), by) for bx, by in honest(X, Y, mini_batch_size, seed)]


def complex_batches(X, Y, mini_batch_size=64, seed=0):
    return [(bx + 0j, by) for bx, by in honest(X, Y, mini_batch_size, seed)]


def flat_labels(X, Y, mini_batch_size=64, seed=0):
    return [(bx, by[0]) for bx, by in honest(X, Y, mini_batch_size, seed)]


def yields(X, Y, mini_batch_size=64, seed=0):
    """Correct, as a generator: iterated as the list it stands for."""
    yield from honest(X, Y, mini_batch_size, seed)


def views(X, Y, mini_batch_size=64, seed=0):
    """No shuffle (allowed), and slices that alias X and Y (not allowed)."""
    m = X.shape[1]
    return [
        (X[:, k : k + mini_batch_size], Y[:, k : k + mini_batch_size])
        for k in range(0, m, mini_batch_size)
    ]


def shuffles_x_in_place(X, Y, mini_batch_size=64, seed=0):
    batches = [(bx.copy(), by.copy()) for bx, by in honest(X, Y, mini_batch_size, seed)]
    X[...] = X[:, ::-1].copy()
    return batches
'''

EXITS_AT_IMPORT = "import sys\nsys.exit(0)\n"


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = tmp_path_factory.mktemp("hostile_minibatch")
    (where / "hostile_mb.py").write_text(HOSTILE)
    (where / "mb_exits_at_import.py").write_text(EXITS_AT_IMPORT)
    return where


@pytest.fixture(autouse=True)
def importable(modules: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The hostile module and tests/ importable (the worker takes this process's sys.path), and
    the Hypothesis profile the run loads put back afterwards."""
    monkeypatch.syspath_prepend(str(modules))
    monkeypatch.syspath_prepend(str(TESTS))
    monkeypatch.chdir(modules)
    profile = settings.get_current_profile_name()
    yield
    settings.load_profile(profile)


class Run:
    """A finished `bnref check ... --minibatch`: its exit status and output."""

    def __init__(self, status: int, out: str, err: str) -> None:
        self.status, self.out, self.err = status, out, err

    def row(self, name: str) -> list[str]:
        """The cells of the table row of property `name`."""
        lines = self.out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("property "))
        table = lines[start : lines.index("", start)]
        (cells,) = [line.split() for line in table if line.split()[0] == name]
        return cells

    def statuses(self) -> dict[str, str]:
        return {name: self.row(name)[-1] for name in PROPERTIES if name in self.out}

    def failed(self) -> set[str]:
        return {name for name, status in self.statuses().items() if status == "FAIL"}


def check(capfd: pytest.CaptureFixture[str], target: str, *argv: str, profile: str = "ci") -> Run:
    """`bnref check target --minibatch --profile PROFILE *argv` in this process: profile ci by
    default, or mutation (ci's examples, a failure not shrunk)."""
    args = ["check", target, "--minibatch", "--profile", profile, "--progress", "never", *argv]
    status = main(args)
    out, err = capfd.readouterr()
    return Run(status, out, err)


def _props(*names: str) -> list[str]:
    return [a for name in names for a in ("--property", name)]


def _no_constant(text: str) -> NoReturn:
    raise ValueError(f"not JSON (RFC 8259): {text}")


def strict_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)


# --- the function ends its process, crashes, hangs or raises a BaseException ---------------


@pytest.mark.parametrize(
    ("function", "ended"),
    [
        ("exits_zero", "exited with status 0 while computing exits_zero"),
        ("os_exits_zero", "exited with status 0 while computing os_exits_zero"),
        (
            "segfaults",
            f"killed by signal {signal.SIGSEGV.value} (SIGSEGV) while computing segfaults",
        ),
    ],
)
def test_an_exit_or_crash_fails_each_property_with_its_example(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, function: str, ended: str
) -> None:
    """Not a green exit status: exit 1, the table, each property failed with how the function
    ended and the example it was given, the run went on past the first, and the JSON report
    is written (strict JSON)."""
    report = tmp_path / "report.json"
    props = _props("minibatch-cover", "minibatch-drop-last", "minibatch-pure")
    run = check(capfd, f"hostile_mb:{function}", *props, "--json", str(report))
    assert run.status == 1, run.out + run.err
    assert run.statuses() == {
        "minibatch-cover": "FAIL",
        "minibatch-drop-last": "n/a",  # the course's form has no drop_last, whatever it does
        "minibatch-pure": "FAIL",  # the audit went on, with a new worker
    }
    assert f"target user hostile_mb:{function} {ended}" in run.out
    assert "The example it was given" in run.out
    assert "MiniBatchCase(m=" in run.out
    assert f"impl = load_user_minibatch_target('hostile_mb:{function}')" in run.out
    data = strict_json(report)
    assert (data["complete"], data["exit_status"]) == (True, 1)
    assert [r["status"] for r in data["results"]] == ["fail", "n/a", "fail"]
    assert data["results"][0]["failure"].startswith(f"target user hostile_mb:{function} {ended}")


def test_a_base_exception_is_named_in_the_report(capfd: pytest.CaptureFixture[str]) -> None:
    """A BaseException that is not SystemExit (here a class of the function's own) fails the
    property as raised, named with where the function raised it; it never reaches the audit as
    itself (a KeyboardInterrupt would read as the user's Ctrl-C)."""
    run = check(capfd, "hostile_mb:raises_base_exception", *_props("minibatch-cover"))
    assert run.status == 1
    assert run.statuses() == {"minibatch-cover": "FAIL"}
    assert "FAILED: TargetRaised: Stop: no more batches\n" in run.out
    assert (
        "raised by target user hostile_mb:raises_base_exception in raises_base_exception, at "
        in run.out
    )


def test_a_hang_is_stopped_at_the_timeout(capfd: pytest.CaptureFixture[str]) -> None:
    run = check(capfd, "hostile_mb:sleeps", *_props("minibatch-sizes"), "--timeout", "1")
    assert run.status == 1, run.out + run.err
    assert run.row("minibatch-sizes")[-1] == "FAIL"
    message = "target user hostile_mb:sleeps did not return from sleeps within 1 s (--timeout)"
    assert message in run.out
    assert "MiniBatchCase(m=" in run.out


def test_hidden_state_is_reported_as_nondeterminism(
    capfd: pytest.CaptureFixture[str], modules: Path
) -> None:
    """The worker keeps the function's state for the whole run, as its own process would: the
    same input giving different results on two calls is named as such, with a snippet that
    shows it by checking the example twice."""
    run = check(capfd, "hostile_mb:first_call_differs", *_props("minibatch-cover"))
    assert run.status == 1, run.out + run.err
    assert run.row("minibatch-cover")[-1] == "FAIL"
    assert "the same input gave different results on two calls" in run.out
    marker = "Reproduce it (paste into Python):\n"
    imports, code, *_ = run.out[run.out.index(marker) + len(marker) :].split("\n\n")
    assert "for call in (1, 2):" in code  # the snippet checks the example twice
    replay = subprocess.run(
        [sys.executable, "-c", f"{imports}\n\n{code}\n"],
        env={**os.environ, "PYTHONPATH": os.pathsep.join(map(str, (modules, TESTS.parent)))},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    assert "check 1: PropertyFailure: property 'minibatch-cover' failed" in replay.stdout
    assert "check 2: passed" in replay.stdout


# --- the function returns the wrong form --------------------------------------------------

FORM = r"expected a list of pairs \(mini_batch_X, mini_batch_Y\), X of shape \(\d, k\)"


@pytest.mark.parametrize(
    ("function", "returned"),
    [
        ("returns_none", rf"returned None; {FORM} and Y of shape \(1, k\)"),
        ("returns_an_array", rf"returned an array of shape \(\d, \d+\) and dtype float64; {FORM}"),
        (
            "returns_triples",
            r"returned batch 0 as a tuple of 3 items \(an array of shape \(\d, \d+\) and dtype "
            r"float64, an array of shape \(1, \d+\) and dtype float64, None\); expected a pair "
            r"\(mini_batch_X, mini_batch_Y\)",
        ),
        (
            "returns_lists",
            r"returned mini_batch_X of batch 0 as a list of \d+ items \(a list of \d+ items "
            r"\(a float[^\n]*; expected an array of shape \(\d, k\)",
        ),
        (
            "complex_batches",
            r"returned mini_batch_X of batch 0 as an array of shape \(\d, \d+\) and dtype "
            r"complex128; expected an array of shape \(\d, k\) of real numbers",
        ),
        (
            "flat_labels",
            r"returned mini_batch_Y of batch 0 as an array of shape \(\d+,\) and dtype float64; "
            r"expected an array of shape \(1, \d+\), as many examples as its mini_batch_X",
        ),
    ],
)
def test_a_bad_return_is_named(
    capfd: pytest.CaptureFixture[str], function: str, returned: str
) -> None:
    """None, an array, a pair of three, a list where an array is expected, complex values, Y
    batches without their axis of 1: each property the function is called for fails with a
    message naming the function, what it returned and the form expected."""
    run = check(capfd, f"hostile_mb:{function}", *_props("minibatch-cover", "minibatch-pure"))
    assert run.status == 1, run.out + run.err
    assert run.failed() == {"minibatch-cover", "minibatch-pure"}
    pattern = rf"mini-batch function hostile_mb:{function} {returned}"
    assert re.search(pattern, run.out), run.out


# --- correct functions pass through the worker, mistakes fail by name ---------------------


@pytest.mark.parametrize(
    "target",
    ["user_minibatch_example:random_mini_batches", "hostile_mb:yields"],
)
def test_correct_functions_pass_through_the_worker(
    capfd: pytest.CaptureFixture[str], tmp_path: Path, target: str
) -> None:
    """The course's solution, and the same written as a generator function (iterated as the
    list it stands for), pass every property they take; drop_last is n/a."""
    report = tmp_path / "report.json"
    run = check(capfd, target, "--json", str(report))
    assert run.status == 0, run.out + run.err
    assert run.statuses() == {
        p: "n/a" if p == "minibatch-drop-last" else "pass" for p in PROPERTIES
    }
    assert run.out.rstrip().endswith("5 passed, 0 failed, 1 not applicable")
    data = strict_json(report)
    assert (data["exit_status"], data["timeout"]) == (0, 60.0)
    assert data["implementations"] == {"float64": f"user {target}"}


@pytest.mark.parametrize(
    ("target", "caught_by"),
    [
        ("user_minibatch_example:random_mini_batches_drops_last", {"cover", "sizes"}),
        ("user_minibatch_example:random_mini_batches_with_replacement", {"cover"}),
        ("user_minibatch_example:random_mini_batches_misaligned", {"pairing"}),
        ("hostile_mb:views", {"pure"}),  # shared memory, seen where the function ran
        # the write comes back from the worker: the second call of a case sees it too
        ("hostile_mb:shuffles_x_in_place", {"pure", "deterministic"}),
    ],
    ids=["drops the last batch", "duplicates examples", "misaligns X and Y", "views", "writes"],
)
def test_mistakes_fail_by_name_through_the_worker(
    capfd: pytest.CaptureFixture[str], target: str, caught_by: set[str]
) -> None:
    """Each mistake fails exactly the properties it breaks (ci's examples, not shrunk: only
    which properties fail is asked here)."""
    run = check(capfd, target, profile="mutation")
    assert run.status == 1, run.out + run.err
    assert run.failed() == {f"minibatch-{name}" for name in caught_by}
    for name in caught_by:
        assert f"property 'minibatch-{name}' failed for user {target}" in run.out


def test_views_and_writes_are_named_by_the_purity_claim_they_break(
    capfd: pytest.CaptureFixture[str],
) -> None:
    run = check(capfd, "hostile_mb:views", *_props("minibatch-pure"))
    assert "batches share no memory with X, Y: error 1.000e+00 > tolerance 0.000e+00" in run.out
    run = check(capfd, "hostile_mb:shuffles_x_in_place", *_props("minibatch-pure"))
    assert "inputs unchanged: error 1.000e+00 > tolerance 0.000e+00" in run.out


# --- usage errors: found before the run, status 2 -----------------------------------------


def test_a_function_that_exits_at_import_is_a_usage_error(
    capfd: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "mb_exits_at_import:random_mini_batches", "--minibatch"])
    assert exc.value.code == 2
    out, err = capfd.readouterr()
    assert (
        "TARGET 'mb_exits_at_import:random_mini_batches': importing module "
        "'mb_exits_at_import' raised SystemExit: 0"
    ) in err
    assert "property " not in out


def test_a_bad_timeout_is_a_usage_error(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["check", "hostile_mb:honest", "--minibatch", "--timeout", "-1"])
    assert exc.value.code == 2
    assert "--timeout must be a number of seconds >= 0" in capfd.readouterr().err
