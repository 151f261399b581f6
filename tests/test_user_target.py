"""A user's own functions, `module:function`, audited through `UserTarget`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bnref.targets import TargetLacks
from bnref.targets.user_target import UserTarget, load_user_target, resolve_function
from properties.framework import run_property
from properties.profiles import failure_demo
from properties.registry import by_name

HERE = str(Path(__file__).parent)
MOD = "user_impl_example"
# Fixed, small and reproducible: these tests are about the adapter, not about finding rare cases.
FIXED = failure_demo(50)


@pytest.fixture(autouse=True)
def _example_importable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(HERE)  # tests/ is not a package


def honest() -> UserTarget:
    return load_user_target(
        f"{MOD}:forward",
        convention="keras",  # channels last, as the example is written
        backward=f"{MOD}:backward",
        inference=f"{MOD}:inference",
    )


@pytest.mark.parametrize(
    "name",
    [
        "zero-mean-unit-var",
        "identity-params",
        "layout-equivalence",
        "no-mutation",
        "inference-equals-training",
        "gradients-fast",
    ],
)
def test_honest_user_functions_pass(name: str) -> None:
    result = run_property(by_name(name), honest(), FIXED)
    assert result.passed, result.failure
    assert not result.not_applicable
    assert result.examples > 0


def test_forward_returning_stats_passes_forward_accuracy() -> None:
    impl = load_user_target(f"{MOD}:forward_with_stats", convention="keras")
    result = run_property(by_name("forward-accuracy"), impl, FIXED)
    assert result.passed, result.failure


def test_eps_outside_sqrt_fails_by_name() -> None:
    impl = load_user_target(f"{MOD}:forward_eps_outside", convention="keras")
    result = run_property(by_name("zero-mean-unit-var"), impl, FIXED)
    assert not result.passed
    assert "zero-mean-unit-var" in result.failure
    assert f"user {MOD}:forward_eps_outside" in result.failure


def test_wrong_axis_is_caught() -> None:
    # The channels-last example told that its channels are at axis 1 (the pytorch default).
    impl = load_user_target(f"{MOD}:forward", convention="pytorch")
    result = run_property(by_name("zero-mean-unit-var"), impl, FIXED)
    assert not result.passed


def test_missing_capabilities_are_not_applicable() -> None:
    impl = load_user_target(f"{MOD}:forward", convention="keras")
    for name in ("backward-accuracy", "inference-equals-training", "running-stats-formula"):
        result = run_property(by_name(name), impl, FIXED)
        assert result.passed
        assert "lacks" in result.not_applicable
    with pytest.raises(TargetLacks, match="backward"):
        impl.backward(np.ones((2, 1)), np.ones((2, 1)), np.ones(1), eps=1e-5, axis=1)


def test_axis_moves_to_the_users_position_and_back() -> None:
    impl = load_user_target(f"{MOD}:forward", convention="keras")
    x = np.arange(24.0).reshape(2, 3, 4) ** 1.5  # channels at axis 1 in the case
    gamma, beta = np.array([1.0, 2.0, 3.0]), np.array([0.0, -1.0, 1.0])
    out = impl.forward(x, gamma, beta, eps=1e-5, axis=1)
    xc = np.moveaxis(x, 1, -1)
    mean, var = xc.mean(axis=(0, 1)), xc.var(axis=(0, 1))
    expected = np.moveaxis(gamma * (xc - mean) / np.sqrt(var + 1e-5) + beta, -1, 1)
    assert out.y.shape == x.shape
    np.testing.assert_array_equal(out.y, expected)  # same operations, same order: bit-equal
    np.testing.assert_allclose(out.mean, mean, rtol=1e-15)  # reference vs NumPy summation order
    np.testing.assert_allclose(out.var, var, rtol=1e-13)  # var is relative to mean's rounding


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("nomodule:f", "TARGET 'nomodule:f': cannot import module 'nomodule'"),
        ("json:nosuchfn", "TARGET 'json:nosuchfn': 'json' has no attribute 'nosuchfn'"),
        ("json:__name__", "TARGET 'json:__name__': '__name__' is not callable"),
        ("no-colon", "TARGET must have the form 'module:function', got 'no-colon'"),
        (":f", "TARGET must have the form"),
        ("json:", "TARGET must have the form"),
        ("json.decoder:JSONDecoder.nope", "'json.decoder.JSONDecoder' has no attribute 'nope'"),
    ],
)
def test_bad_specs_are_clear_errors(spec: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        load_user_target(spec)


def test_bad_options_name_the_option() -> None:
    with pytest.raises(ValueError, match="--backward 'json:nosuchfn'"):
        load_user_target(f"{MOD}:forward", backward="json:nosuchfn")
    with pytest.raises(ValueError, match=r"--inference must have the form .*, got 'no-colon'"):
        load_user_target(f"{MOD}:forward", inference="no-colon")
    with pytest.raises(ValueError, match="convention must be one of"):
        load_user_target(f"{MOD}:forward", convention="caffe")
    with pytest.raises(TypeError, match="TARGET must be a string"):
        resolve_function(3)  # type: ignore[arg-type]  # the rejection is what is tested
    with pytest.raises(TypeError, match="axis must be an int"):
        UserTarget(f"{MOD}:forward", axis=1.0)  # type: ignore[arg-type]  # rejection tested


def test_wrong_output_shape_is_reported() -> None:
    impl = load_user_target(f"{MOD}:forward_first_example", convention="keras")
    with pytest.raises(ValueError, match="y must have shape"):
        impl.forward(np.ones((2, 3)), np.ones(3), np.zeros(3), eps=1e-5, axis=1)


# --- dtype, fixed eps and momentum, the running-statistics hook ----------------------------


def test_float32_user_functions_receive_float32_and_pass() -> None:
    impl = load_user_target(
        f"{MOD}:forward", convention="keras", inference=f"{MOD}:inference", dtype="float32"
    )
    assert impl.dtype == "float32"
    assert impl.name.endswith("float32")
    seen: list[np.dtype[np.generic]] = []
    x = np.arange(6.0).reshape(3, 2)

    def spy(*args: Any) -> Any:
        seen.append(args[0].dtype)
        return args[0]

    impl._forward = spy
    impl.forward(x, np.ones(2), np.zeros(2), eps=1e-3, axis=1)
    assert seen == [np.dtype(np.float32)]
    honest = load_user_target(
        f"{MOD}:forward", convention="keras", inference=f"{MOD}:inference", dtype="float32"
    )
    for name in ("zero-mean-unit-var", "affine-moments", "inference-equals-training"):
        result = run_property(by_name(name), honest, FIXED)
        assert result.passed, result.failure
        assert result.dtype == "float32"


def test_float32_eps_outside_sqrt_still_fails() -> None:
    impl = load_user_target(f"{MOD}:forward_eps_outside", convention="keras", dtype="float32")
    result = run_property(by_name("zero-mean-unit-var"), impl, FIXED)
    assert not result.passed
    assert "zero-mean-unit-var" in result.failure


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_writing_into_an_argument_is_caught_at_any_dtype(dtype: str) -> None:
    impl = load_user_target(f"{MOD}:forward_in_place", convention="keras", dtype=dtype)
    x = np.array([[1.0, 2.0], [3.0, 5.0]])
    impl.forward(x, np.ones(2), np.zeros(2), eps=1e-3, axis=1)
    assert x.tolist() == [[-1.0, -1.5], [1.0, 1.5]]  # the caller sees the write
    result = run_property(by_name("no-mutation"), impl, FIXED)
    assert not result.passed
    assert "x after forward" in result.failure


def test_fixed_eps_is_what_the_users_function_receives() -> None:
    impl = load_user_target(f"{MOD}:forward_eps_1e3", convention="keras", eps=1e-3)
    assert impl.fixed_case_values == {"eps": 1e-3}
    for name in ("zero-mean-unit-var", "identity-params", "layout-equivalence"):
        result = run_property(by_name(name), impl, FIXED)
        assert result.passed, result.failure
        assert not result.not_applicable
    # scale-invariance needs eps a**2: not applicable, with the reason, never a pass
    result = run_property(by_name("scale-invariance"), impl, FIXED)
    assert "its eps is fixed at 0.001 (--eps)" in result.not_applicable
    with pytest.raises(TargetLacks, match="eps is fixed"):
        impl.forward(np.ones((2, 1)), np.ones(1), np.zeros(1), eps=1e-5, axis=1)


def test_running_stats_hook_honest_passes() -> None:
    impl = load_user_target(
        f"{MOD}:forward", convention="pytorch", running_stats=f"{MOD}:running_stats"
    )
    for name in ("running-stats-formula", "cumulative-average"):
        result = run_property(by_name(name), impl, FIXED)
        assert result.passed, result.failure
        assert not result.not_applicable


def test_running_stats_hook_without_bessel_fails() -> None:
    impl = load_user_target(
        f"{MOD}:forward", convention="pytorch", running_stats=f"{MOD}:running_stats_biased"
    )
    result = run_property(by_name("running-stats-formula"), impl, FIXED)
    assert not result.passed
    assert "running var vs the convention's formula" in result.failure


def test_fixed_momentum_is_used_and_excludes_the_cumulative_average() -> None:
    impl = load_user_target(
        f"{MOD}:forward",
        convention="pytorch",
        running_stats=f"{MOD}:running_stats",
        momentum=0.25,
    )
    assert impl.fixed_case_values == {"momentum": 0.25, "cumulative": False}
    seen: list[float] = []

    def spy(*args: Any) -> Any:
        seen.append(args[5])  # momentum
        return args[0], args[1]

    impl._running = spy
    impl.update_running_stats(
        np.ones((2, 1)), np.zeros(1), np.ones(1), momentum=0.25, num_batches_tracked=None, axis=1
    )
    assert seen == [0.25]
    honest = load_user_target(
        f"{MOD}:forward",
        convention="pytorch",
        running_stats=f"{MOD}:running_stats",
        momentum=0.25,
    )
    assert run_property(by_name("running-stats-formula"), honest, FIXED).passed
    result = run_property(by_name("cumulative-average"), honest, FIXED)
    assert "momentum=None: --momentum is fixed" in result.not_applicable
    with pytest.raises(TargetLacks, match=r"momentum is fixed at 0\.25"):
        honest.update_running_stats(
            np.ones((2, 1)), np.zeros(1), np.ones(1), momentum=0.1, num_batches_tracked=1, axis=1
        )


def test_cumulative_momentum_is_one_over_num_batches_tracked() -> None:
    impl = load_user_target(
        f"{MOD}:forward", convention="pytorch", running_stats=f"{MOD}:running_stats"
    )
    seen: list[tuple[int, float]] = []

    def spy(*args: Any) -> Any:
        seen.append((args[4], args[5]))  # n, momentum
        return args[0], args[1]

    impl._running = spy
    x = np.arange(6.0).reshape(3, 2)
    impl.update_running_stats(
        x, np.zeros(2), np.ones(2), momentum=None, num_batches_tracked=4, axis=1
    )
    assert seen == [(3, 0.25)]
    with pytest.raises(ValueError, match="num_batches_tracked"):
        impl.update_running_stats(
            x, np.zeros(2), np.ones(2), momentum=None, num_batches_tracked=None, axis=1
        )


def test_bad_eps_momentum_and_hook_output_are_rejected() -> None:
    with pytest.raises(ValueError, match="eps"):
        load_user_target(f"{MOD}:forward", eps=0.0)
    with pytest.raises(ValueError, match="momentum"):
        load_user_target(f"{MOD}:forward", momentum=1.5)
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_user_target(f"{MOD}:forward", dtype="float128")
    with pytest.raises(ValueError, match="--running-stats 'json:nosuchfn'"):
        load_user_target(f"{MOD}:forward", running_stats="json:nosuchfn")
    impl = load_user_target(f"{MOD}:forward", running_stats=f"{MOD}:forward")
    with pytest.raises(TypeError):  # forward's signature does not fit the hook's
        impl.update_running_stats(
            np.ones((2, 1)), np.zeros(1), np.ones(1), momentum=0.1, num_batches_tracked=1, axis=1
        )
    impl._running = lambda *args: args[0]
    with pytest.raises(ValueError, match=r"must return \(new_mean, new_var\)"):
        impl.update_running_stats(
            np.ones((2, 1)), np.zeros(1), np.ones(1), momentum=0.1, num_batches_tracked=1, axis=1
        )
