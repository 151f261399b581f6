"""`bnref check` on targets that behave as a user's buggy code does: it exits, crashes, hangs,
returns the wrong kind of thing, hides state, changes NumPy's global error state, or fails to
import. Each case runs the CLI in a subprocess (as CI would) with its own time limit, so no case
can hang the suite, and checks the exit status, the table and the report.

The hostile functions are written to a module in a temporary directory (`HOSTILE`); `honest`
computes batch norm correctly, channels last (`--convention keras`).
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import pytest

from bnref.isolation import HEARTBEAT, TargetTimedOut, TargetWorker, open_target
from bnref.targets import load_target
from bnref.targets.user_target import load_user_target
from properties.adapter import Array, frozen_backward_of

TESTS = Path(__file__).parent
KERAS = {"convention": "keras"}
LIMIT = 120  # seconds: no case may take longer, whatever the target does

HOSTILE = '''
import ctypes
import os
import sys
import time

import numpy as np


def honest(x, gamma, beta, eps):
    axes = tuple(range(x.ndim - 1))
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def exits_zero(x, gamma, beta, eps):
    if x.size > 2:
        sys.exit(0)
    return honest(x, gamma, beta, eps)


def os_exits_zero(x, gamma, beta, eps):
    if x.size > 2:
        os._exit(0)
    return honest(x, gamma, beta, eps)


def segfaults(x, gamma, beta, eps):
    if x.size > 2:
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    return honest(x, gamma, beta, eps)


def sleeps(x, gamma, beta, eps):
    if x.size > 2:
        time.sleep(3600)
    return honest(x, gamma, beta, eps)


def loops(x, gamma, beta, eps):
    while x.size > 2:
        pass
    return honest(x, gamma, beta, eps)


CALLS = [0]


def hangs_after_forty_calls(x, gamma, beta, eps):
    CALLS[0] += 1
    while CALLS[0] > 40:
        pass
    return honest(x, gamma, beta, eps)


def exits_in_a_batch(x, gamma, beta, eps):
    """Exits on its second call in a process: a gradient check's first call of forward is
    alone, its perturbed points come after it in one batch."""
    CALLS[0] += 1
    if CALLS[0] > 1:
        os._exit(0)
    return honest(x, gamma, beta, eps)


def sleeps_in_a_batch(x, gamma, beta, eps):
    CALLS[0] += 1
    if CALLS[0] == 3:
        time.sleep(3600)
    return honest(x, gamma, beta, eps)


def slow(x, gamma, beta, eps):
    time.sleep(0.1)
    return honest(x, gamma, beta, eps)


def complex_y(x, gamma, beta, eps):
    return honest(x, gamma, beta, eps) + 1e-3j


def two_items(x, gamma, beta, eps):
    return honest(x, gamma, beta, eps), x.mean(axis=0)


def four_items(x, gamma, beta, eps):
    axes = tuple(range(x.ndim - 1))
    return honest(x, gamma, beta, eps), x.mean(axis=axes), x.var(axis=axes), 0.0


def a_list(x, gamma, beta, eps):
    return honest(x, gamma, beta, eps).tolist()


def returns_none(x, gamma, beta, eps):
    return None


def returns_nan(x, gamma, beta, eps):
    return np.full_like(x, np.nan)


SEEN = set()


def first_call_differs(x, gamma, beta, eps):
    """Hidden state: the first call on an input doubles y, the calls after it do not."""
    y = honest(x, gamma, beta, eps)
    key = (x.tobytes(), gamma.tobytes(), beta.tobytes(), eps)
    if key in SEEN:
        return y
    SEEN.add(key)
    return 2 * y + 1


def raises(x, gamma, beta, eps):
    raise FloatingPointError("overflow in the variance")


class OwnError(Exception):
    pass


def raises_its_own(x, gamma, beta, eps):
    raise OwnError("the layer is not initialised")


def raises_keyboard_interrupt(x, gamma, beta, eps):
    if x.size > 2:
        raise KeyboardInterrupt("the target's own")
    return honest(x, gamma, beta, eps)


def prints(x, gamma, beta, eps):
    print("debug output from the target: 0 passed, 0 failed")
    return honest(x, gamma, beta, eps)
'''

SETS_ERRSTATE = '''
import numpy as np

np.seterr(all="raise")  # at import: the process's global state


def forward(x, gamma, beta, eps):
    """Correct, with NumPy set to raise on every floating-point event (its own arithmetic under
    its own choice)."""
    np.seterr(all="raise")
    with np.errstate(all="ignore"):
        axes = tuple(range(x.ndim - 1))
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        return gamma * (x - mean) / np.sqrt(var + eps) + beta
'''

IMPORT_TIME = {
    "import_exits": 'import sys\nsys.exit("cannot run here")\n',
    "import_exits_zero": "import sys\nsys.exit(0)\n",
    "import_os_exits": "import os\nos._exit(3)\n",
    "import_base_exception": "class Stop(BaseException):\n    pass\n\nraise Stop('no')\n",
    "import_keyboard_interrupt": "raise KeyboardInterrupt\n",
    "import_error": "import no_such_module_anywhere\n",
    "import_slowly": "import time\n\ntime.sleep(1.0)\nfrom hostile import honest\n",
}


@pytest.fixture(scope="module")
def modules(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding `hostile.py` and the modules that misbehave at import."""
    where = tmp_path_factory.mktemp("hostile")
    (where / "hostile.py").write_text(HOSTILE)
    (where / "sets_errstate.py").write_text(SETS_ERRSTATE)
    for name, text in IMPORT_TIME.items():
        (where / f"{name}.py").write_text(text)
    return where


class Run:
    """A finished `bnref check` subprocess: exit status, output, and the seconds it took."""

    def __init__(self, proc: subprocess.CompletedProcess[str], seconds: float) -> None:
        self.status = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr
        self.seconds = seconds

    def row(self, name: str) -> list[str]:
        """The cells of the table row of property `name` (the table: from its header line to
        the first blank line)."""
        lines = self.out.splitlines()
        start = next(i for i, line in enumerate(lines) if line.startswith("property "))
        table = lines[start : lines.index("", start)]
        (cells,) = [line.split() for line in table if line.split()[0] == name]
        return cells


def _env(modules: Path, **extra: str) -> dict[str, str]:
    """The environment of a run: the hostile modules, tests/ and this checkout importable, no
    profile chosen by the environment (each run names its own)."""
    env = {k: v for k, v in os.environ.items() if k not in {"CI", "BNREF_PROFILE"}}
    env["PYTHONPATH"] = os.pathsep.join([str(modules), str(TESTS), str(TESTS.parent)])
    env.update(extra)
    return env


def bnref(modules: Path, *argv: str, limit: float = LIMIT, **env: str) -> Run:
    """`python -m bnref.cli check *argv`, run from `modules` (Hypothesis's example database
    goes there, not into the repository); fails the test if it takes longer than `limit`."""
    start = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "bnref.cli", "check", *argv],
        cwd=modules,
        env=_env(modules, **env),
        capture_output=True,
        text=True,
        timeout=limit,
        check=False,
    )
    return Run(proc, time.monotonic() - start)


def hostile(modules: Path, function: str, *argv: str, limit: float = LIMIT) -> Run:
    """bnref check hostile:`function`, channels last, the dev profile, calls limited to 2 s."""
    args = [f"hostile:{function}", "--convention", "keras", "--profile", "dev", "--timeout", "2"]
    return bnref(modules, *args, *argv, limit=limit)


def _no_constant(text: str) -> NoReturn:
    raise ValueError(f"not JSON (RFC 8259): {text}")


def strict_json(path: Path) -> Any:
    """The report parsed by a strict reader: NaN, Infinity and -Infinity are refused."""
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)


# --- the target ends its process, crashes or hangs ----------------------------------------


@pytest.mark.parametrize(
    ("function", "ended"),
    [
        ("exits_zero", "exited with status 0 while computing forward"),
        ("os_exits_zero", "exited with status 0 while computing forward"),
        ("segfaults", f"killed by signal {signal.SIGSEGV.value} (SIGSEGV) while computing forward"),
    ],
)
def test_an_exit_or_crash_fails_the_property_with_its_example(
    modules: Path, tmp_path: Path, function: str, ended: str
) -> None:
    """The target's exit status 0 is not the audit's: exit 1, a full table, the JSON report,
    each property failed with how the target ended and the example it was given."""
    report = tmp_path / "report.json"
    props = ["--property", "zero-mean-unit-var", "--property", "identity-params"]
    run = hostile(modules, function, *props, "--json", str(report))
    assert run.status == 1, run.err
    assert run.row("zero-mean-unit-var")[-1] == "FAIL"
    assert run.row("identity-params")[-1] == "FAIL"  # the audit went on after the first
    assert f"target user hostile:{function} {ended}" in run.out
    assert "The example it was given" in run.out
    assert "case = BatchCase(" in run.out  # the snippet that replays it
    data = strict_json(report)
    assert data["exit_status"] == 1
    assert data["complete"] is True
    assert [r["status"] for r in data["results"]] == ["fail", "fail"]
    assert ended in data["results"][0]["failure"]


@pytest.mark.parametrize("function", ["sleeps", "loops"])
def test_a_hang_is_stopped_at_the_timeout(modules: Path, tmp_path: Path, function: str) -> None:
    """Sleeping or looping forever fails the property after --timeout, and the run ends: one
    timeout per property (each stops its run at once, nothing is shrunk or replayed)."""
    report = tmp_path / "report.json"
    run = hostile(modules, function, "--property", "zero-mean-unit-var", "--json", str(report))
    assert run.status == 1, run.err
    assert run.row("zero-mean-unit-var")[-1] == "FAIL"
    message = f"target user hostile:{function} did not return from forward within 2 s (--timeout)"
    assert message in run.out
    assert run.seconds < 2 + 30  # the timeout plus start-up, far from forever
    assert strict_json(report)["results"][0]["status"] == "fail"


def test_an_exit_during_the_central_differences_fails_the_property_naming_forward(
    modules: Path, tmp_path: Path
) -> None:
    """The perturbed points of a gradient check go to the worker in one batch: an exit during
    it fails the property with how the target ended, in forward, and the example."""
    report = tmp_path / "report.json"
    backward = ["--backward", "user_impl_example:backward"]
    props = ["--property", "gradients-full", "--property", "gradients-fast"]
    run = hostile(modules, "exits_in_a_batch", *backward, *props, "--json", str(report))
    assert run.status == 1, run.err
    assert run.row("gradients-full")[-1] == "FAIL"
    assert run.row("gradients-fast")[-1] == "FAIL"  # a new worker, the same end
    ended = "target user hostile:exits_in_a_batch exited with status 0 while computing forward"
    assert "The example it was given" in run.out
    assert "case = GradientCase(" in run.out
    results = strict_json(report)["results"]
    assert [r["status"] for r in results] == ["fail", "fail"]
    assert all(r["failure"].startswith(ended) for r in results)


def _lines(proc: subprocess.Popen[str], count: int, deadline: float) -> list[str]:
    """The first `count` lines `proc` prints on stdout; AssertionError if they have not come by
    `deadline` (time.monotonic()), so a hang fails the test instead of blocking it."""
    found: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for _ in range(count):
            found.put(proc.stdout.readline())

    threading.Thread(target=read, daemon=True).start()
    try:
        return [found.get(timeout=max(deadline - time.monotonic(), 0)) for _ in range(count)]
    except queue.Empty:
        raise AssertionError(f"no {count} lines of output within the time limit") from None


@pytest.mark.parametrize(
    ("signum", "status", "said"),
    [(signal.SIGINT, 130, "interrupted (Ctrl-C)"), (signal.SIGTERM, 143, "terminated (SIGTERM)")],
    ids=["ctrl-c", "sigterm"],
)
def test_a_stop_prints_the_partial_table_and_its_own_status(
    modules: Path, tmp_path: Path, signum: signal.Signals, status: int, said: str
) -> None:
    """SIGINT (Ctrl-C) or SIGTERM (a CI job cancelled) during a hang (no --timeout): what
    finished is reported, the JSON says the run is incomplete, and the status is 130 or 143."""
    report = tmp_path / "report.json"
    argv = ["hostile:hangs_after_forty_calls", "--convention", "keras", "--profile", "dev"]
    argv += ["--timeout", "0", "--json", str(report)]
    argv += ["--property", "zero-mean-unit-var", "--property", "identity-params"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "bnref.cli", "check", *argv],
        cwd=modules,
        env=_env(modules),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # SIGINT as a terminal's Ctrl-C: default handling, whatever the test runner inherited
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # noqa: PLW1509
    )
    try:
        lines = _lines(proc, 2, deadline=time.monotonic() + LIMIT)
        assert lines[1].startswith("  zero-mean-unit-var: pass"), lines
        time.sleep(1)  # identity-params is now hanging in the target
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == status, err
    assert f"{said}: the table shows the properties that finished" in out
    assert "Traceback" not in err
    table = [line.split() for line in out.splitlines() if line.startswith("zero-mean-unit-var ")]
    assert table[0][-1] == "pass"
    data = strict_json(report)
    assert (data["complete"], data["exit_status"]) == (False, status)
    assert [r["name"] for r in data["results"]] == ["zero-mean-unit-var"]


# --- the target returns the wrong kind of thing -------------------------------------------


@pytest.mark.parametrize(
    ("function", "returned", "expected"),
    [
        ("complex_y", r"an array of shape \(\d+(, \d+)*\) and dtype complex128", "of real numbers"),
        ("two_items", r"a tuple of 2 items \(an array of shape", r"or a tuple \(y, mean, var\)"),
        ("four_items", r"a tuple of 4 items \(an array of shape", r"or a tuple \(y, mean, var\)"),
        ("a_list", r"a list of \d+ items \(a list of", r"y, an array of shape"),
        ("returns_none", r"None", r"y, an array of shape \(\d+(, \d+)*\)"),
    ],
)
def test_a_bad_return_is_named(modules: Path, function: str, returned: str, expected: str) -> None:
    """Complex values, a tuple of the wrong length, a list, None: the failure names the
    function, what it returned and the form expected (no NumPy "inhomogeneous shape" error,
    no imaginary part silently dropped)."""
    run = hostile(modules, function, "--property", "zero-mean-unit-var")
    assert run.status == 1, run.err
    assert run.row("zero-mean-unit-var")[-1] == "FAIL"
    pattern = rf"forward hostile:{function} returned {returned}[^\n]*; expected [^\n]*{expected}"
    assert re.search(pattern, run.out), run.out
    assert "inhomogeneous" not in run.out
    assert "ComplexWarning" not in run.out + run.err


def test_an_infinite_error_is_null_in_strict_json(modules: Path, tmp_path: Path) -> None:
    """A NaN output is an infinite error: the report stays RFC 8259 JSON, the number null with
    its text beside it."""
    report = tmp_path / "report.json"
    run = hostile(modules, "returns_nan", "--property", "zero-mean-unit-var", "--json", str(report))
    assert run.status == 1, run.err
    text = report.read_text(encoding="utf-8")
    assert "Infinity" not in text
    assert "NaN" not in text
    data = strict_json(report)
    assert (data["schema"], data["schema_version"]) == ("bnref-check-report", 2)
    (result,) = data["results"]
    worst = result["worst"]
    assert (worst["error"], worst["error_text"]) == (None, "inf")
    assert worst["tolerance"] is not None
    assert float(worst["tolerance_text"]) == worst["tolerance"]
    assert (worst["ratio"], worst["ratio_text"]) == (None, "inf")
    assert data["summary"] == {"passed": 0, "failed": 1, "inconclusive": 0, "not_applicable": 0}


# --- hidden state, exceptions, missing functions ------------------------------------------


def _run_snippet(modules: Path, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=modules,
        env=_env(modules),
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )


def _snippet(out: str) -> str:
    """The first paste-able snippet the report printed: its imports, a blank line, its code."""
    marker = "Reproduce it (paste into Python):\n"
    imports, code, *_ = out[out.index(marker) + len(marker) :].split("\n\n")
    return f"{imports}\n\n{code}\n"


def test_hidden_state_is_reported_as_nondeterminism(modules: Path) -> None:
    """The same input giving different results is named as such, with a snippet that runs it
    twice and shows the difference."""
    run = hostile(modules, "first_call_differs", "--property", "zero-mean-unit-var")
    assert run.status == 1, run.err
    assert "the same input gave different results on two calls" in run.out
    code = _snippet(run.out)
    assert "for call in (1, 2):" in code
    replay = _run_snippet(modules, code)
    assert replay.returncode == 0, replay.stderr
    assert "forward gave the same output on both calls: False" in replay.stdout


def test_an_exception_in_the_target_comes_with_a_snippet_that_raises_it(modules: Path) -> None:
    run = hostile(modules, "raises", "--property", "identity-params")
    assert run.status == 1, run.err
    assert "FloatingPointError: overflow in the variance" in run.out
    assert "raised by target user hostile:raises in forward, at " in run.out
    assert "@reproduce_failure" not in run.out
    code = _snippet(run.out)
    assert code.rstrip().endswith("# raises FloatingPointError")
    replay = _run_snippet(modules, code)
    assert replay.returncode == 1
    assert "FloatingPointError: overflow in the variance" in replay.stderr


def test_an_exception_class_of_the_targets_own_is_named(modules: Path) -> None:
    """The audit does not import the target's classes: the exception comes back by name."""
    run = hostile(modules, "raises_its_own", "--property", "identity-params")
    assert run.status == 1, run.err
    assert "TargetRaised: OwnError: the layer is not initialised" in run.out


def test_a_base_exception_of_the_target_is_named_and_the_audit_goes_on(modules: Path) -> None:
    """A KeyboardInterrupt raised by the target (not the user's Ctrl-C) fails the property as
    raised, named; it is not taken for an interrupt of the audit (exit 1, not 130), and the
    next property runs."""
    props = ["identity-params", "zero-mean-unit-var"]
    run = hostile(
        modules, "raises_keyboard_interrupt", *(a for p in props for a in ("--property", p))
    )
    assert run.status == 1, run.err
    assert [run.row(name)[-1] for name in props] == ["FAIL", "FAIL"]
    assert "TargetRaised: KeyboardInterrupt: the target's own" in run.out
    assert "raised by target user hostile:raises_keyboard_interrupt in forward, at " in run.out


def test_functions_not_given_are_not_applicable_whatever_forward_does(modules: Path) -> None:
    """A raising forward with no backward and no inference: the properties of the missing
    functions are n/a, not failures."""
    props = ["gradients-full", "gradients-fast", "inference-equals-training", "identity-params"]
    run = hostile(modules, "raises", *(a for p in props for a in ("--property", p)))
    assert run.status == 1, run.err
    for name in props[:3]:
        assert run.row(name)[-1] == "n/a", run.out
    assert run.row("identity-params")[-1] == "FAIL"
    assert "lacks backward: no backward function was given" in run.out
    assert "lacks inference: no inference function was given" in run.out


# --- the target's global state and output stay its own ------------------------------------


def test_a_target_that_sets_numpy_to_raise_passes(modules: Path) -> None:
    """np.seterr(all="raise") at import and in every call: bnref's case generation and checks
    keep their own error state (they run in another process), and so does the adapter's code
    around the call; the properties of functions not given are n/a."""
    props = ["zero-mean-unit-var", "identity-params", "scale-invariance", "gradients-full"]
    argv = ["sets_errstate:forward", "--convention", "keras", "--profile", "dev"]
    run = bnref(modules, *argv, *(a for p in props for a in ("--property", p)))
    assert run.status == 0, run.out + run.err
    assert [run.row(p)[-1] for p in props] == ["pass", "pass", "pass", "n/a"]


def test_what_the_target_prints_goes_to_stderr(modules: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    run = hostile(modules, "prints", "--property", "identity-params", "--json", str(report))
    assert run.status == 0, run.err
    assert "debug output from the target" in run.err
    assert "debug output from the target" not in run.out
    assert run.out.rstrip().endswith("1 passed, 0 failed")
    data = strict_json(report)
    assert (data["complete"], data["exit_status"], data["timeout"]) == (True, 0, 2.0)
    assert data["summary"] == {"passed": 1, "failed": 0, "inconclusive": 0, "not_applicable": 0}


# --- usage errors: found before the run, status 2, a message and no traceback -------------


def _usage_error(run: Run, message: str) -> None:
    assert run.status == 2, run.out + run.err
    assert message in run.err
    assert "Traceback" not in run.err
    assert "property " not in run.out  # no table: the run never started


@pytest.mark.parametrize(
    ("module", "message"),
    [
        ("import_exits", "importing module 'import_exits' raised SystemExit: cannot run here"),
        ("import_exits_zero", "importing module 'import_exits_zero' raised SystemExit: 0"),
        ("import_base_exception", "importing module 'import_base_exception' raised Stop: no"),
        ("import_keyboard_interrupt", "loading it raised KeyboardInterrupt"),
        (
            "import_error",
            "importing module 'import_error' raised ModuleNotFoundError: "
            "No module named 'no_such_module_anywhere'",
        ),
        ("import_os_exits", "ended while being loaded (exited with status 3)"),
    ],
)
def test_a_target_that_does_not_import_is_a_usage_error(
    modules: Path, module: str, message: str
) -> None:
    run = bnref(modules, f"{module}:forward", "--property", "identity-params")
    _usage_error(run, message)
    assert f"'{module}:forward'" in run.err


def test_a_bad_profile_or_timeout_is_a_usage_error(modules: Path) -> None:
    run = bnref(modules, "--property", "identity-params", BNREF_PROFILE="nonsense")
    _usage_error(run, "BNREF_PROFILE must be one of dev, ci, thorough, mutation; got 'nonsense'")
    run = bnref(modules, "--timeout", "-1")
    _usage_error(run, "--timeout must be a number of seconds >= 0 (0: no limit); got -1.0")
    run = bnref(modules, "--timeout", "soon")
    _usage_error(run, "argument --timeout: invalid float value: 'soon'")


@pytest.mark.parametrize("where", ["directory", "missing/report.json"])
def test_an_unwritable_json_path_is_a_usage_error_before_the_run(
    modules: Path, tmp_path: Path, where: str
) -> None:
    path = tmp_path if where == "directory" else tmp_path / where
    run = hostile(modules, "honest", "--property", "identity-params", "--json", str(path))
    _usage_error(run, f"--json {str(path)!r} cannot be written: ")


# --- the worker, called from this process -------------------------------------------------


@pytest.fixture
def on_path(modules: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(modules))  # the worker takes this process's sys.path


def _case() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return np.arange(12.0).reshape(4, 3) ** 1.5, np.ones(3), np.zeros(3)


@pytest.mark.usefixtures("on_path")
def test_one_worker_serves_every_call_and_writes_come_back() -> None:
    """Many calls, one worker; a write into an argument reaches the caller's array (so the
    no-mutation property sees it), and a read-only argument stays read-only in the worker."""
    worker, (impl,) = open_target("user_impl_example:forward_in_place", ["float64"], KERAS)
    try:
        x, gamma, beta = _case()
        want = x - x.mean(axis=0)  # what forward_in_place leaves in x
        impl.forward(x, gamma, beta, eps=1e-5, axis=1)
        np.testing.assert_array_equal(x, want)
        frozen = _case()[0]
        frozen.flags.writeable = False
        with pytest.raises(ValueError, match="read-only"):
            impl.forward(frozen, gamma, beta, eps=1e-5, axis=1)
        for _ in range(50):
            impl.forward(*_case(), eps=1e-5, axis=1)
        assert worker.starts == 1
    finally:
        worker.close()


@pytest.mark.usefixtures("on_path")
def test_loading_may_take_longer_than_a_call() -> None:
    """--timeout limits the target's calls; its imports (a framework's take seconds, more on a
    busy machine) have at least LOAD_TIME_FLOOR: a 1 s import loads under a 0.25 s limit."""
    worker, (impl,) = open_target("import_slowly:honest", ["float64"], KERAS, timeout=0.25)
    try:
        x, gamma, beta = _case()
        y = impl.forward(x, gamma, beta, eps=1e-5, axis=1).y
        np.testing.assert_allclose(y, (x - x.mean(axis=0)) / x.std(axis=0), rtol=1e-6)
    finally:
        worker.close()


@pytest.mark.usefixtures("on_path")
def test_an_interrupted_call_stops_the_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl-C between request and reply: the worker is stopped, so its late reply can never
    answer the next call, which gets a new worker and the right result."""
    worker, (impl,) = open_target("hostile:honest", ["float64"], KERAS)
    try:
        wait = TargetWorker._wait

        def interrupted(*_: object) -> str:
            monkeypatch.setattr(TargetWorker, "_wait", wait)
            raise KeyboardInterrupt

        monkeypatch.setattr(TargetWorker, "_wait", interrupted)
        x, gamma, beta = _case()
        with pytest.raises(KeyboardInterrupt):
            impl.forward(x, gamma, beta, eps=1e-5, axis=1)
        y = impl.forward(x, 2 * gamma, beta, eps=1e-5, axis=1).y  # not the first call's y
        np.testing.assert_allclose(y, 2 * (x - x.mean(axis=0)) / x.std(axis=0), rtol=1e-6)
        assert worker.starts == 2
    finally:
        worker.close()


def _points(count: int) -> list[tuple[Array, Array, Array]]:
    x, gamma, beta = _case()
    return [(x + i, (1 + i) * gamma, beta) for i in range(count)]


@pytest.mark.usefixtures("on_path")
def test_a_batch_is_one_message_and_the_time_limit_holds_per_call() -> None:
    """forward_many returns forward's y at every point; its calls together may take longer
    than the limit, each one alone may not (the worker's progress reports restart the clock)."""
    worker, (impl,) = open_target("hostile:slow", ["float64"], KERAS, timeout=0.5)
    try:
        points = _points(15)  # 1.5 s in all: over the limit and its slack, each call within it
        ys = impl.forward_many(points, eps=1e-5, axis=1)
        want = [impl.forward(*p, eps=1e-5, axis=1).y for p in points[:2]]
        assert len(ys) == 15
        for y, w in zip(ys, want, strict=False):
            np.testing.assert_array_equal(y, w)
        assert worker.starts == 1
    finally:
        worker.close()


@pytest.mark.usefixtures("on_path")
@pytest.mark.parametrize("shapes", [[(4, 3)] * 6, [(4, 3), (5, 3), (4, 3), (6, 2)]])
def test_a_batch_gives_each_call_its_own_arrays(shapes: list[tuple[int, int]]) -> None:
    """Points of one shape cross as stacked arrays, of several shapes as a list: either way the
    ys are those of one in-process forward call per point, and a target that writes into its
    x (forward_in_place) writes into its own copy, not into the next point's."""
    rng = np.random.default_rng(3)
    points = [
        (rng.normal(size=s), rng.uniform(0.5, 2, s[1]), rng.normal(size=s[1])) for s in shapes
    ]
    local = load_user_target("user_impl_example:forward_in_place", convention="keras")
    want = [local.forward(x.copy(), g, b, eps=1e-5, axis=1).y for x, g, b in points]
    worker, (impl,) = open_target("user_impl_example:forward_in_place", ["float64"], KERAS)
    try:
        ys = impl.forward_many(points, eps=1e-5, axis=1)
        assert len(ys) == len(points)
        for y, w in zip(ys, want, strict=True):
            np.testing.assert_array_equal(y, w)
    finally:
        worker.close()


@pytest.mark.usefixtures("on_path")
def test_a_call_that_hangs_in_a_batch_is_stopped_at_the_time_limit() -> None:
    """The third call of a batch sleeps: TargetTimedOut names forward, within the limit plus
    the progress reports' slack (2 HEARTBEAT) and the worker's stop."""
    worker, (impl,) = open_target("hostile:sleeps_in_a_batch", ["float64"], KERAS, timeout=0.5)
    try:
        start = time.monotonic()
        with pytest.raises(
            TargetTimedOut,
            match=r"^target user hostile:sleeps_in_a_batch did not return from forward within "
            r"0\.5 s \(--timeout\)",
        ):
            impl.forward_many(_points(5), eps=1e-5, axis=1)
        assert time.monotonic() - start < 0.5 + 2 * HEARTBEAT + 5
    finally:
        worker.close()


@pytest.mark.usefixtures("on_path")
def test_an_exception_in_a_batch_comes_back_naming_forward() -> None:
    """What the target raises during a batch is raised by forward_many, with forward named."""
    worker, (impl,) = open_target("hostile:raises", ["float64"], KERAS)
    try:
        with pytest.raises(FloatingPointError, match=r"^overflow in the variance") as caught:
            impl.forward_many(_points(3), eps=1e-5, axis=1)
        (note,) = caught.value.__notes__
        assert note.startswith("raised by target user hostile:raises in forward, at ")
    finally:
        worker.close()


@pytest.mark.usefixtures("on_path")
def test_the_optional_frozen_backward_crosses_to_the_worker_when_the_target_has_it() -> None:
    """`fast` has frozen_backward: its isolated target offers it, with the same result as in
    this process (so the frozen-backward property is checked, not n/a); a user target, which
    has none, offers none."""
    worker, (impl,) = open_target("fast", ["float64"])
    try:
        method = frozen_backward_of(impl)
        assert method is not None
        x, gamma, _ = _case()
        dy = np.cos(x)
        stats = (x.mean(axis=0), x.var(axis=0) + 0.5)
        got = method(dy, x, gamma, *stats, eps=1e-5, axis=1)
        local = frozen_backward_of(load_target("fast", "float64"))
        assert local is not None
        want = local(dy, x, gamma, *stats, eps=1e-5, axis=1)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_array_equal(g, w)
    finally:
        worker.close()
    worker, (user,) = open_target("hostile:honest", ["float64"], KERAS)
    try:
        assert frozen_backward_of(user) is None
        with pytest.raises(AttributeError, match="frozen_backward"):
            user.frozen_backward  # noqa: B018 -- the attribute's absence is the point
    finally:
        worker.close()
