"""The `bnref` command: table, exit status, JSON report, usage errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import settings

from properties.adapter import Array, ForwardOutput, ReferenceImplementation
from properties.cli import format_table, main
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


def test_unknown_target_and_property_are_usage_errors() -> None:
    with pytest.raises(SystemExit, match="TARGET must be one of reference"):
        main(["check", "pytorch-typo"])
    with pytest.raises(ValueError, match="property must be one of"):
        by_name("no-such-property")


def test_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


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
    assert "zero-mean-unit-var FAILED" in out
    assert out.rstrip().endswith("0 passed, 1 failed")
