"""`--layer MOD:FN`: one training step of a user's whole layer, its y and its own running
statistics checked against the exact batch statistics of x (property layer-step)."""

from __future__ import annotations

from pathlib import Path

import pytest
import user_layer_example as example
from hypothesis import settings

from bnref.cli import main
from bnref.targets.user_target import UserFunction, UserTarget
from properties.framework import PropertyResult, run_property
from properties.registry import by_name
from properties.running_stats_props import LayerStepCase

LAYER_STEP = by_name("layer-step")
FORWARD = "user_layer_example:layer"  # any forward: the layer-step property reads the layer


def _result(layer: UserFunction, examples: int = 100) -> PropertyResult:
    target = UserTarget(FORWARD, "pytorch", layer=layer)
    return run_property(LAYER_STEP, target, settings(max_examples=examples, database=None))


def test_a_correct_layer_passes() -> None:
    result = _result(example.layer)
    assert result.status == "pass", result.failure
    assert result.with_teeth > 0


def test_a_running_variance_from_a_one_pass_formula_fails_by_name() -> None:
    """y is right and so is the update rule: only the variance fed to it is inaccurate."""
    result = _result(example.layer_one_pass_running_var)
    assert result.status == "fail"
    assert "property 'layer-step' failed" in result.failure
    assert "running var vs the convention's formula" in result.failure


def test_a_layer_with_momentum_meaning_swapped_fails_by_name() -> None:
    result = _result(example.layer_momentum_swapped)
    assert result.status == "fail"
    assert "property 'layer-step' failed" in result.failure
    assert "vs the convention's formula: error" in result.failure


def test_a_target_without_a_layer_is_not_applicable() -> None:
    target = UserTarget(FORWARD, "pytorch")
    result = run_property(LAYER_STEP, target, settings(max_examples=5, database=None))
    assert result.status == "n/a"
    assert "no layer function was given (--layer)" in result.not_applicable


def _case() -> LayerStepCase:
    import numpy as np  # noqa: PLC0415

    x = np.arange(12.0).reshape(4, 3)
    return LayerStepCase(x, 1, np.zeros(3), np.ones(3), 0.1, 1e-5)


def test_the_wrong_arity_is_named_with_the_expected_form() -> None:
    target = UserTarget(FORWARD, "pytorch", layer="user_layer_example:layer_without_eps")
    case = _case()
    with pytest.raises(TypeError, match=r"^--layer user_layer_example:layer_without_eps has "):
        target.layer_step(
            case.x, case.running_mean, case.running_var, momentum=0.1, eps=1e-5, axis=1
        )
    with pytest.raises(TypeError, match=r"expected layer\(x, running_mean, running_var, "):
        target.layer_step(
            case.x, case.running_mean, case.running_var, momentum=0.1, eps=1e-5, axis=1
        )


def test_a_wrong_return_is_named_with_the_expected_form() -> None:
    target = UserTarget(FORWARD, "pytorch", layer="user_layer_example:layer_returning_two")
    case = _case()
    with pytest.raises(
        TypeError, match=r"^--layer user_layer_example:layer_returning_two returned a tuple of 2"
    ):
        target.layer_step(
            case.x, case.running_mean, case.running_var, momentum=0.1, eps=1e-5, axis=1
        )


def test_bnref_check_layer_passes_and_names_a_bad_layer(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Through the CLI (the layer runs in the target's worker): a correct layer passes; a layer
    of the wrong arity fails naming the function and the expected form."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    argv = ["check", "user_impl_example:forward", "--property", "layer-step"]
    assert main([*argv, "--layer", "user_layer_example:layer"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("1 passed, 0 failed")
    assert main([*argv, "--layer", "user_layer_example:layer_without_eps"]) == 1
    out = capsys.readouterr().out
    assert "--layer user_layer_example:layer_without_eps has the signature" in out
    assert "expected layer(x, running_mean, running_var, momentum, eps)" in out
