"""A user's own functions, `module:function`, audited through `UserTarget`."""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
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


@pytest.mark.parametrize("name", ["identity-params", "zero-mean-unit-var", "inference-formula"])
def test_honest_user_functions_pass_at_bfloat16(name: str) -> None:
    """Given bfloat16 (ml_dtypes), the functions return bfloat16: real numbers, read as such
    (NumPy reports ml_dtypes' kind as "V")."""
    impl = load_user_target(
        f"{MOD}:forward", convention="keras", inference=f"{MOD}:inference", dtype="bfloat16"
    )
    result = run_property(by_name(name), impl, FIXED)
    assert result.passed, result.failure
    assert result.examples > 0


def test_honest_running_statistics_pass_at_bfloat16() -> None:
    """The batch statistics the rule is checked on are those of x as the target holds it,
    in bfloat16 (which the reference does not read itself)."""
    impl = load_user_target(
        f"{MOD}:forward", running_stats=f"{MOD}:running_stats", dtype="bfloat16"
    )  # PyTorch's rule, as the pytorch convention has it
    result = run_property(by_name("running-stats-formula"), impl, FIXED)
    assert result.passed, result.failure
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
    with pytest.raises(
        ValueError,
        match=r"^forward user_impl_example:forward_first_example returned an array of shape "
        r"\(3,\) and dtype float64; expected y, an array of shape \(2, 3\), or a tuple "
        r"\(y, mean, var\)$",
    ):
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
    message = (
        r"^update_running_stats user_impl_example:forward returned an array of shape \(1,\) "
        r"and dtype float64; expected a tuple \(new_mean, new_var\) of arrays of shape \(1,\)$"
    )
    with pytest.raises(TypeError, match=message):
        impl.update_running_stats(
            np.ones((2, 1)), np.zeros(1), np.ones(1), momentum=0.1, num_batches_tracked=1, axis=1
        )


# --- what the user's functions return, and what they do to NumPy's state ------------------


def _x() -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    return np.arange(6.0).reshape(3, 2), np.ones(2), np.zeros(2)


def _honest(x: Any, gamma: Any, beta: Any, eps: float) -> Any:
    mean, var = x.mean(axis=0), x.var(axis=0)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


@pytest.mark.parametrize(
    ("returned", "message"),
    [
        (
            lambda y: y + 1e-3j,
            r"returned an array of shape \(3, 2\) and dtype complex128; expected y, an array of "
            r"shape \(3, 2\), or a tuple \(y, mean, var\) of real numbers$",
        ),
        (
            lambda _: None,
            r"returned None; expected y, an array of shape \(3, 2\), or a tuple \(y, mean, var\)$",
        ),
        (
            lambda y: y.tolist(),  # a list of 3 rows, read as (y, mean, var): y is a list
            r"returned y as a list of 2 items \(a float, a float\); expected an array of shape "
            r"\(3, 2\)$",
        ),
        (
            lambda y: y[:2].tolist(),
            r"returned a list of 2 items \(a list of 2 items \(a float, a float\), a list of 2 "
            r"items \(a float, a float\)\); expected y, an array of shape \(3, 2\), or a tuple",
        ),
        (lambda y: (y, y[0]), r"returned a tuple of 2 items \(an array of shape \(3, 2\) and"),
        (lambda y: (y, y[0], y[0], y[0], y[0]), r"returned a tuple of 5 items \(.*, \.\.\.\);"),
        (lambda _: 0.5, r"returned a float; expected y"),
        (
            lambda y: (y, [0.0, 1.0], y[0]),
            r"returned mean as a list of 2 items \(a float, a float\); expected an array of "
            r"shape \(2,\)$",
        ),
        (
            lambda y: (y, y[0], y),
            r"returned var as an array of shape \(3, 2\) and dtype float64; expected an array "
            r"of shape \(2,\)$",
        ),
    ],
)
def test_a_forward_returning_the_wrong_form_is_named(returned: Any, message: str) -> None:
    """Complex values, None, a list, a tuple of the wrong length, a scalar, a list or an array
    of the wrong shape among (y, mean, var): the error names the function (as given), what it
    returned and the form expected."""

    def forward(x: Any, gamma: Any, beta: Any, eps: float) -> Any:
        return returned(_honest(x, gamma, beta, eps))

    impl = UserTarget(forward, convention="keras")
    error = ValueError if message.startswith("returned var") else TypeError  # a wrong shape
    label = f"{__name__}:test_a_forward_returning_the_wrong_form_is_named.<locals>.forward"
    with pytest.raises(error, match=f"^forward {re.escape(label)} {message}"):
        impl.forward(*_x(), eps=1e-5, axis=1)


def test_backward_inference_and_running_stats_returns_are_named() -> None:
    x, gamma, beta = _x()

    def backward(*args: Any) -> Any:
        return [args[0], args[2]]  # [dy, gamma]

    def inference(*args: Any) -> Any:
        return args[0].tolist()

    def running(*args: Any) -> Any:
        return args[0], args[1], 1.0

    impl = UserTarget(
        _honest, "keras", backward=backward, inference=inference, running_stats=running
    )
    with pytest.raises(
        TypeError,
        match=r"^backward .*\.backward returned a list of 2 items \(an array of shape \(3, 2\) "
        r"and dtype float64, an array of shape \(2,\) and dtype float64\); expected a tuple "
        r"\(dx, dgamma, dbeta\) of arrays of shapes \(3, 2\), \(2,\), \(2,\)$",
    ):
        impl.backward(np.ones((3, 2)), x, gamma, eps=1e-5, axis=1)
    with pytest.raises(TypeError, match=r"^inference .*\.inference returned a list of 3 items"):
        impl.inference(x, gamma, beta, np.zeros(2), np.ones(2), eps=1e-5, axis=1)
    with pytest.raises(
        TypeError,
        match=r"^update_running_stats .*\.running returned a tuple of 3 items \(.*\); expected "
        r"a tuple \(new_mean, new_var\) of arrays of shape \(2,\)$",
    ):
        impl.update_running_stats(
            x, np.zeros(2), np.ones(2), momentum=0.1, num_batches_tracked=1, axis=1
        )


def _write_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str) -> None:
    (tmp_path / f"{name}.py").write_text(text)
    monkeypatch.syspath_prepend(str(tmp_path))


def test_an_exit_or_base_exception_at_import_is_a_value_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sys.exit or a BaseException raised while importing the user's module is the spec's
    fault (ValueError naming it), never an exit of bnref."""
    _write_module(tmp_path, monkeypatch, "exits_at_import", "import sys\nsys.exit(0)\n")
    _write_module(tmp_path, monkeypatch, "stops_at_import", "raise GeneratorExit('stop')\n")
    with pytest.raises(
        ValueError,
        match=r"^TARGET 'exits_at_import:f': importing module 'exits_at_import' raised "
        r"SystemExit: 0$",
    ):
        load_user_target("exits_at_import:f")
    with pytest.raises(ValueError, match=r"raised GeneratorExit: stop$"):
        load_user_target("stops_at_import:f")


ERRSTATE_MODULE = """
import numpy as np

np.seterr(all="raise")
SEEN = []


def forward(x, gamma, beta, eps):
    SEEN.append(np.geterr()["under"])
    np.seterr(under="warn")  # what the user leaves is theirs, for their next call
    axes = tuple(range(x.ndim - 1))
    with np.errstate(all="ignore"):  # its own arithmetic under its own choice
        mean, var = x.mean(axis=axes), x.var(axis=axes)
        return gamma * (x - mean) / np.sqrt(var + eps) + beta
"""


def test_the_users_numpy_error_state_stays_the_users(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """np.seterr at the user's import and in their calls holds for their functions, and never
    for bnref's code around them."""
    _write_module(tmp_path, monkeypatch, "errstate_user", ERRSTATE_MODULE)
    before = np.geterr()
    impl = load_user_target("errstate_user:forward", convention="keras")
    assert np.geterr() == before  # the import's np.seterr(all="raise") was confined
    seen = importlib.import_module("errstate_user").SEEN
    impl.forward(*_x(), eps=1e-5, axis=1)
    impl.forward(*_x(), eps=1e-5, axis=1)
    assert seen == ["raise", "warn"]  # the user's state, as the user left it
    assert np.geterr() == before
    result = run_property(by_name("zero-mean-unit-var"), impl, FIXED)
    assert result.passed, result.failure


def test_the_stand_in_lacks_exactly_what_the_target_lacks() -> None:
    """A target's stand-in: the reference's functions in the same adapter, with the same name,
    layout, fixed eps and missing functions."""
    impl = load_user_target(f"{MOD}:forward_eps_1e3", convention="keras", eps=1e-3)
    stand_in = impl.stand_in
    assert (stand_in.name, stand_in.convention, stand_in.dtype) == (impl.name, "keras", "float64")
    assert stand_in.fixed_case_values == {"eps": 1e-3}
    x, gamma, beta = _x()
    out = stand_in.forward(x, gamma, beta, eps=1e-3, axis=1)
    np.testing.assert_allclose(out.y, _honest(x, gamma, beta, 1e-3), rtol=1e-14)
    calls: list[Callable[[UserTarget], object]] = [
        lambda t: t.backward(np.ones((3, 2)), x, gamma, eps=1e-3, axis=1),
        lambda t: t.forward(x, gamma, beta, eps=1e-5, axis=1),
    ]
    for call in calls:
        with pytest.raises(TargetLacks) as theirs:
            call(stand_in)
        with pytest.raises(TargetLacks) as ours:
            call(impl)
        assert str(theirs.value) == str(ours.value)
