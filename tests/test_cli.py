"""The `bnref` command: table, exit status, JSON report, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from bnref.cli import format_table, main, parse_dtypes
from bnref.isolation import TargetWorker
from properties.adapter import Array, ForwardOutput, ReferenceImplementation
from properties.framework import run_property
from properties.registry import ALL_PROPERTIES, by_name


def test_check_prints_the_table_and_passes(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["check", "--property", "zero-mean-unit-var", "--property", "minibatch-cover"])
    out = capsys.readouterr().out
    assert status == 0
    assert "property" in out
    assert "worst error" in out
    assert "tolerance" in out
    assert "zero-mean-unit-var" in out
    assert "minibatch-cover" in out
    assert out.rstrip().endswith("2 passed, 0 failed")


def test_check_writes_json(tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    assert main(["check", "--property", "identity-params", "--json", str(report)]) == 0
    data = json.loads(report.read_text())
    assert data["target"] == "reference"
    (result,) = data["results"]
    assert result["name"] == "identity-params"
    assert result["passed"] is True
    assert result["examples"] > 0


def _usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """Run `bnref` expecting a usage error: exit status 2, the message on stderr."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_unknown_target_and_property_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert "TARGET must be one of reference" in _usage_error(["check", "pytorch-typo"], capsys)
    with pytest.raises(ValueError, match="property must be one of"):
        by_name("no-such-property")
    err = _usage_error(["check", "--property", "no-such-property"], capsys)
    assert "property must be one of" in err


def test_parse_dtypes_repeated_or_listed(capsys: pytest.CaptureFixture[str]) -> None:
    assert parse_dtypes(None) == ["float64"]
    assert parse_dtypes(["float32", "float64"]) == ["float32", "float64"]
    assert parse_dtypes(["float16,float32", "float32"]) == ["float16", "float32"]
    with pytest.raises(SystemExit):
        parse_dtypes(["float128"])
    assert "--dtype must be one of float64, float32, float16, bfloat16; got 'float128'" in (
        capsys.readouterr().err
    )


def test_reference_at_float32_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["check", "--dtype", "float32"], capsys)
    assert "--dtype float32: the reference computes in float64 only" in err
    err = _usage_error(["check", "reference", "--dtype", "float64,float16"], capsys)
    assert "--dtype float16" in err


def test_user_options_need_a_user_target(capsys: pytest.CaptureFixture[str]) -> None:
    err = _usage_error(["check", "--eps", "1e-3", "--running-stats", "a:b"], capsys)
    assert "--running-stats, --eps need a TARGET module:function, got 'reference'" in err


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_experiment_command_reaches_the_experiments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "--list"]) == 0
    listed = capsys.readouterr().out.split()
    for name in ("bn-init-scale", "overfitting", "optimizers", "hyperparameter-search"):
        assert name in listed
    assert main(["experiment", "no-such-experiment"]) == 2
    assert "no-such-experiment" in capsys.readouterr().err


def test_property_names_are_unique() -> None:
    names = [p.name for p in ALL_PROPERTIES]
    assert len(names) == len(set(names))


class EpsOutsideSqrt(ReferenceImplementation):
    """A classic mistake: x_hat = (x - mean) / (sqrt(var) + eps)."""

    @property
    def name(self) -> str:
        return "eps-outside-sqrt"

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        out = super().forward(x, gamma, beta, eps=eps, axis=axis)
        shape = [1] * x.ndim
        shape[axis] = -1
        x_hat = (x - out.mean.reshape(shape)) / (np.sqrt(out.var).reshape(shape) + eps)
        return ForwardOutput(gamma.reshape(shape) * x_hat + beta.reshape(shape), out.mean, out.var)


def test_a_wrong_implementation_fails_by_name() -> None:
    prop = by_name("zero-mean-unit-var")
    result = run_property(prop, EpsOutsideSqrt(), settings(max_examples=60, database=None))
    assert not result.passed
    assert "zero-mean-unit-var" in result.failure
    assert "eps-outside-sqrt" in result.failure
    table = format_table([result])
    assert "FAIL" in table


def test_check_a_users_module_function(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    honest = ["check", "user_impl_example:forward", "--convention", "keras"]
    assert main([*honest, "--property", "zero-mean-unit-var"]) == 0
    buggy = ["check", "user_impl_example:forward_eps_outside", "--convention", "keras"]
    assert main([*buggy, "--property", "zero-mean-unit-var"]) == 1
    out = capsys.readouterr().out
    assert "zero-mean-unit-var [float64] FAILED" in out
    assert out.rstrip().endswith("0 passed, 1 failed")


def test_check_per_dtype_table_json_and_snippet(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Two dtypes give one row each; a failure prints a paste-able snippet, also in the JSON."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    report = tmp_path / "report.json"
    argv = ["check", "user_impl_example:forward_eps_outside", "--convention", "keras"]
    argv += ["--dtype", "float32", "--dtype", "float64", "--property", "zero-mean-unit-var"]
    assert main([*argv, "--property", "gradients-fast", "--json", str(report)]) == 1
    out = capsys.readouterr().out
    table = out.split("\n\n")[1]  # progress lines, blank line, the table
    rows = [line.split() for line in table.splitlines() if line.startswith("zero-mean-unit-var ")]
    assert [(r[1], r[-1]) for r in rows] == [("float32", "FAIL"), ("float64", "FAIL")]
    assert "] FAILED: channel " in out
    assert "gradients-fast [float32]: not applicable: not stated for float32" in out
    snippet = "load_user_target('user_impl_example:forward_eps_outside', convention='keras', "
    assert snippet + "dtype='float" in out
    assert out.rstrip().endswith("0 passed, 2 failed, 2 not applicable")
    data = json.loads(report.read_text())
    assert data["dtypes"] == ["float32", "float64"]
    by_key = {(r["name"], r["dtype"]): r for r in data["results"]}
    failed = by_key["zero-mean-unit-var", "float32"]
    assert failed["passed"] is False
    assert failed["reproduction"].startswith("# Reproduce zero-mean-unit-var")
    # each root cause printed once: one snippet per group, every failure in one group
    groups = data["groups"]
    assert out.count("Reproduce it (paste into Python):") == len(groups)
    grouped = sorted((p["name"], p["dtype"]) for g in groups for p in g["properties"])
    assert grouped == [("zero-mean-unit-var", "float32"), ("zero-mean-unit-var", "float64")]
    assert all(g["cause"].startswith("channel ") for g in groups)
    assert by_key["gradients-fast", "float32"]["not_applicable"]
    assert "lacks backward" in by_key["gradients-fast", "float64"]["not_applicable"]


def _row(table: str, name: str) -> dict[str, str]:
    """The cells of the table row of property `name`, by column header."""
    lines = table.splitlines()
    header = ["property", "dtype", "examples", "worst error", "tolerance", "ratio", "teeth"]
    header.append("status")
    starts = [lines[0].index(h) for h in header]
    (line,) = [row for row in lines[2:] if row.startswith(f"{name} ")]
    ends = [*starts[1:], len(line)]
    return {h: line[a:b].strip() for h, a, b in zip(header, starts, ends, strict=True)}


def test_a_failed_row_shows_the_failing_measurement() -> None:
    """A FAIL row shows the minimal failing example's numbers: error > tolerance, ratio > 1
    (not the worst of the examples that passed, whose ratio is below 1)."""
    prop = by_name("zero-mean-unit-var")
    result = run_property(prop, EpsOutsideSqrt(), settings(max_examples=60, database=None))
    assert not result.passed
    assert result.worst is not None
    assert result.worst.error > result.worst.tolerance
    assert result.worst.ratio > 1
    assert result.worst.quantity in result.failure  # a quantity the failure report names
    row = _row(format_table([result]), "zero-mean-unit-var")
    assert row["status"] == "FAIL"
    assert float(row["ratio"]) > 1
    assert float(row["worst error"]) > float(row["tolerance"])


class RaisingForward(ReferenceImplementation):
    """A forward that raises: the failure is an exception, not a measurement."""

    @property
    def name(self) -> str:
        return "raising-forward"

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        raise FloatingPointError("overflow in the variance")


def test_a_raising_implementation_shows_error_not_a_ratio() -> None:
    """A failure that is an exception has no measurement: the row says "error", no ratio."""
    prop = by_name("identity-params")
    result = run_property(prop, RaisingForward(), settings(max_examples=10, database=None))
    assert not result.passed
    assert result.worst is None
    assert "FloatingPointError: overflow in the variance" in result.failure
    assert result.examples >= 1  # the failing example counts
    row = _row(format_table([result]), "identity-params")
    assert (row["worst error"], row["tolerance"], row["ratio"]) == ("error", "-", "-")
    assert (row["teeth"], row["status"]) == ("-", "FAIL")


def test_failure_report_prints_the_failing_numbers_and_hypothesis_block_once(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`bnref check` on a buggy function: the FAIL row and the JSON carry the failing
    measurement (ratio > 1), and Hypothesis's falsifying example appears once, not twice; its
    reproduce_failure line (print_blob in every profile) does not: it would decorate bnref's
    internal test function, so the paste-able snippet stands in for it."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    report = tmp_path / "report.json"
    argv = ["check", "user_impl_example:forward_eps_outside", "--convention", "keras"]
    assert main([*argv, "--property", "identity-params", "--json", str(report)]) == 1
    out = capsys.readouterr().out
    assert out.count("Failing test case:") == 1
    assert out.count("@reproduce_failure(") == 0
    assert out.count("Reproduce it (paste into Python):") == 1
    row = _row(out.split("\n\n")[1], "identity-params")
    assert row["status"] == "FAIL"
    assert float(row["ratio"]) > 1
    (result,) = json.loads(report.read_text())["results"]
    assert result["passed"] is False
    assert result["worst"]["error"] > result["worst"]["tolerance"] > 0
    assert result["worst"]["quantity"] in result["failure"]


# --- mini-batch functions and the list of properties ---------------------------------------


def test_the_reference_runs_the_mini_batch_properties_on_its_own_function(
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["check", "--property", "minibatch-cover", "--property", "minibatch-drop-last"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("2 passed, 0 failed")


def test_check_a_users_mini_batch_function(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A course-form function passes what it takes (no drop_last: n/a); a mistake fails by
    the property's name, with a snippet that replays it."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert main(["check", "user_minibatch_example:random_mini_batches", "--minibatch"]) == 0
    out = capsys.readouterr().out
    assert out.rstrip().endswith("5 passed, 0 failed, 1 not applicable")
    assert (
        "minibatch-drop-last [float64]: not applicable: user "
        "user_minibatch_example:random_mini_batches takes no drop_last"
    ) in out
    argv = ["check", "user_minibatch_example:random_mini_batches_misaligned", "--minibatch"]
    assert main([*argv, "--property", "minibatch-pairing"]) == 1
    out = capsys.readouterr().out
    assert "minibatch-pairing [float64] FAILED" in out
    assert (
        "property 'minibatch-pairing' failed for user "
        "user_minibatch_example:random_mini_batches_misaligned"
    ) in out
    assert "impl = load_user_minibatch_target(" in out
    assert out.rstrip().endswith("0 passed, 1 failed")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--minibatch needs a TARGET module:function, got 'reference'"),
        (
            ["user_minibatch_example:random_mini_batches", "--eps", "1e-3"],
            "--eps do not apply to a mini-batch function (--minibatch)",
        ),
        (
            ["user_minibatch_example:random_mini_batches", "--dtype", "float32"],
            "--dtype: a mini-batch function moves values and computes none",
        ),
        (
            ["user_minibatch_example:random_mini_batches", "--property", "zero-mean-unit-var"],
            "zero-mean-unit-var need a batch-norm TARGET",
        ),
        (["no_such_module_here:f"], "TARGET 'no_such_module_here:f': cannot import module"),
    ],
)
def test_minibatch_usage_errors(
    argv: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    assert message in _usage_error(["check", "--minibatch", *argv], capsys)


def test_list_properties_gives_each_property_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--list-properties"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for prop in ALL_PROPERTIES:
        (line,) = [line for line in lines if line.split()[:1] == [prop.name]]
        assert line.split(maxsplit=1)[1] == " ".join(prop.statement.split())
    assert "batch-norm properties (every target):" in lines
    assert any(line.startswith("mini-batch properties") for line in lines)


def test_check_help_is_complete(capsys: pytest.CaptureFixture[str]) -> None:
    """`bnref check --help`: whole sentences, every target, the signature of each function a
    user can give, and the exit status."""
    with pytest.raises(SystemExit) as exc:
        main(["check", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    description = out.split("\n\n")[1]
    assert description.startswith("Run bnref's properties against TARGET")
    assert description.endswith("Python code that replays it.")
    for text in (
        "f(x, gamma, beta, eps) -> y  or  -> (y, mean, var)",
        "g(dy, x, gamma, eps) -> (dx, dgamma, dbeta)",
        "h(x, gamma, beta, running_mean, running_var, eps) -> y",
        "r(running_mean, running_var, batch_mean, batch_var, n, momentum)",
        "-> (new_mean, new_var)",
        "random_mini_batches(X, Y, mini_batch_size=64, seed=0)",
        "-> [(mini_batch_X, mini_batch_Y), ...]",
        "--list-properties",
    ):
        assert text in out
    for target in ("reference", "fast", "torch", "onnx", "onnxruntime", "MOD:FN"):
        assert f"\n  {target} " in out
    status = out.split("exit status:")[1]
    for code in ("0 when", "1 when", "2 for", "130 when", "143 when"):
        assert code in " ".join(status.split())
    assert out.rstrip().endswith(".")


def test_the_reference_runs_in_this_process_and_other_targets_in_a_worker(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The oracle is called in-process by every check anyway: no worker for it. `fast` (a
    target under audit, with threads of its own) gets one."""
    started: list[str] = []
    launch = TargetWorker.launch

    def spy(worker: TargetWorker) -> None:
        started.append(worker.spec.target)
        launch(worker)

    monkeypatch.setattr(TargetWorker, "launch", spy)
    assert main(["check", "--property", "identity-params"]) == 0
    assert started == []
    assert main(["check", "fast", "--property", "identity-params"]) == 0
    assert started == ["fast"]
    assert capsys.readouterr().out.rstrip().endswith("1 passed, 0 failed")
