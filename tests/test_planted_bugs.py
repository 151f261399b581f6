"""The audit has teeth: implementations with the mistakes people really make fail by name.

Each planted bug overrides one method of the reference adapter. The test runs the property that
must catch it, as `bnref check` does, and asserts that it fails and that the failure names the
property and the implementation. The honest reference passes the same properties elsewhere
(tests/test_*_props.py and `bnref check`).
"""

from __future__ import annotations

import numpy as np
import pytest

from properties.adapter import (
    Array,
    BackwardOutput,
    ForwardOutput,
    ReferenceImplementation,
    Rounded,
    RunningStats,
)
from properties.framework import PropertyFailure, reproduction_code, run_property
from properties.profiles import failure_demo
from properties.registry import by_name
from properties.strategies import BatchCase
from reference import batch_norm_backward, batch_norm_forward

# Shrinking a planted bug's failure took two thirds of this file's time (the default nox run must
# stay short); a test here asks only whether a property fails and replays the example it failed on.
AUDIT = failure_demo(150)


def _channel_shape(x: Array, axis: int) -> list[int]:
    shape = [1] * x.ndim
    shape[axis] = -1
    return shape


def _stats(x: Array, axis: int) -> tuple[Array, Array, int]:
    out = batch_norm_forward(x, np.ones(x.shape[axis]), np.zeros(x.shape[axis]), axis=axis)
    return out.mean, out.var, x.size // x.shape[axis]


class Planted(ReferenceImplementation):
    """A reference adapter with one deliberate mistake, named by `bug`."""

    bug = "planted"

    @property
    def name(self) -> str:
        return self.bug


class MomentumReversed(Planted):
    """PyTorch's momentum applied to the old value: new = m * old + (1 - m) * batch."""

    bug = "momentum-reversed"

    def update_running_stats(
        self,
        x: Array,
        running_mean: Array,
        running_var: Array,
        *,
        momentum: float | None,
        num_batches_tracked: int | None,
        axis: int,
    ) -> RunningStats:
        mean, var, n = _stats(x, axis)
        m = 0.1 if momentum is None else momentum
        return RunningStats(
            m * running_mean + (1 - m) * mean, m * running_var + (1 - m) * var * n / (n - 1)
        )


class RunningVarNotBessel(Planted):
    """The pytorch convention with the biased batch variance in the running average."""

    bug = "running-var-biased"

    def update_running_stats(
        self,
        x: Array,
        running_mean: Array,
        running_var: Array,
        *,
        momentum: float | None,
        num_batches_tracked: int | None,
        axis: int,
    ) -> RunningStats:
        mean, var, _ = _stats(x, axis)
        m = 1.0 / num_batches_tracked if momentum is None and num_batches_tracked else momentum
        w = 0.1 if m is None else m
        return RunningStats((1 - w) * running_mean + w * mean, (1 - w) * running_var + w * var)


class _ForwardBug(Planted):
    """A forward pass x_hat = (x - mean) / denominator with a wrong mean or denominator."""

    def stats(self, x: Array, axis: int, eps: float) -> tuple[Array, Array]:
        """The (mean, denominator) broadcast against x."""
        raise AssertionError("subclasses define the bug")

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        mean, denominator = self.stats(x, axis, eps)
        shape = _channel_shape(x, axis)
        y = gamma.reshape(shape) * (x - mean) / denominator + beta.reshape(shape)
        true_mean, true_var, _ = _stats(x, axis)
        return ForwardOutput(y, true_mean, true_var)


class UnbiasedNormalize(_ForwardBug):
    """Normalizing with the unbiased variance n/(n-1) var (the running-stat estimator)."""

    bug = "unbiased-normalize"

    def stats(self, x: Array, axis: int, eps: float) -> tuple[Array, Array]:
        mean, var, n = _stats(x, axis)
        shape = _channel_shape(x, axis)
        return mean.reshape(shape), np.sqrt(var * n / (n - 1) + eps).reshape(shape)


class EpsOutsideSqrt(_ForwardBug):
    """x_hat = (x - mean) / (sqrt(var) + eps)."""

    bug = "eps-outside-sqrt"

    def stats(self, x: Array, axis: int, eps: float) -> tuple[Array, Array]:
        mean, var, _ = _stats(x, axis)
        shape = _channel_shape(x, axis)
        return mean.reshape(shape), (np.sqrt(var) + eps).reshape(shape)


class OnePassVariance(_ForwardBug):
    """var = E[x^2] - E[x]^2, which cancels catastrophically when |mean| >> std."""

    bug = "one-pass-variance"

    def stats(self, x: Array, axis: int, eps: float) -> tuple[Array, Array]:
        reduce = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
        mean = np.mean(x, axis=reduce, keepdims=True)
        var = np.maximum(np.mean(x * x, axis=reduce, keepdims=True) - mean**2, 0.0)
        return mean, np.sqrt(var + eps)

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        out = super().forward(x, gamma, beta, eps=eps, axis=axis)
        mean, denominator = self.stats(x, axis, eps)
        return ForwardOutput(out.y, mean.ravel(), (denominator**2 - eps).ravel())


class PerPosition(_ForwardBug):
    """Statistics per position (over the batch axis only), as a well-known textbook does for
    conv input: every (C, H, W) value gets its own mean and variance."""

    bug = "per-position-statistics"

    def stats(self, x: Array, axis: int, eps: float) -> tuple[Array, Array]:
        batch_axis = 0 if axis % x.ndim != 0 else 1
        mean = np.mean(x, axis=batch_axis, keepdims=True)
        var = np.mean((x - mean) ** 2, axis=batch_axis, keepdims=True)
        return mean, np.sqrt(var + eps)


class _BackwardBug(Planted):
    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        good = batch_norm_backward(dy, x, gamma, eps=eps, axis=axis)
        fwd = batch_norm_forward(x, gamma, np.zeros_like(gamma), eps=eps, axis=axis)
        return self.mistake(
            good.dx, good.dgamma, good.dbeta, dy, fwd.x_hat, fwd.inv_std, gamma, axis
        )

    def mistake(
        self,
        dx: Array,
        dgamma: Array,
        dbeta: Array,
        dy: Array,
        x_hat: Array,
        inv_std: Array,
        gamma: Array,
        axis: int,
    ) -> BackwardOutput:
        raise AssertionError("subclasses define the bug")


class DgammaMissingXhat(_BackwardBug):
    """dgamma = sum(dy), the x_hat factor forgotten."""

    bug = "dgamma-missing-x_hat"

    def mistake(
        self,
        dx: Array,
        dgamma: Array,
        dbeta: Array,
        dy: Array,
        x_hat: Array,
        inv_std: Array,
        gamma: Array,
        axis: int,
    ) -> BackwardOutput:
        return BackwardOutput(dx, dbeta.copy(), dbeta)


class DxMissingVarianceTerm(_BackwardBug):
    """dx without the path through the variance: gamma inv_std / n (n dy - sum(dy))."""

    bug = "dx-missing-variance-term"

    def mistake(
        self,
        dx: Array,
        dgamma: Array,
        dbeta: Array,
        dy: Array,
        x_hat: Array,
        inv_std: Array,
        gamma: Array,
        axis: int,
    ) -> BackwardOutput:
        shape = _channel_shape(dy, axis)
        n = dy.size // dy.shape[axis]
        wrong = (gamma * inv_std / n).reshape(shape) * (n * dy - dbeta.reshape(shape))
        return BackwardOutput(wrong, dgamma, dbeta)


PLANTED = [
    (MomentumReversed(), "running-stats-formula"),
    (RunningVarNotBessel(), "running-stats-formula"),
    (UnbiasedNormalize(), "zero-mean-unit-var"),
    (EpsOutsideSqrt(), "zero-mean-unit-var"),
    (OnePassVariance(), "forward-accuracy"),
    (PerPosition(), "zero-mean-unit-var"),
    (DgammaMissingXhat(), "gradients-full"),
    (DxMissingVarianceTerm(), "gradients-full"),
    (DxMissingVarianceTerm(), "dx-orthogonality"),
]


@pytest.mark.parametrize(("impl", "prop_name"), PLANTED, ids=[f"{i.bug}->{p}" for i, p in PLANTED])
def test_planted_bug_fails_the_property_by_name(impl: Planted, prop_name: str) -> None:
    result = run_property(by_name(prop_name), impl, AUDIT)
    assert not result.passed, f"{impl.bug} slipped through {prop_name}"
    assert not result.not_applicable
    assert f"property {prop_name!r} failed for {impl.bug}" in result.failure


# --- at float32: the bounds widen with u = 2**-24 and still catch the mistakes -------------

FLOAT32_PLANTED = [
    (EpsOutsideSqrt(), "zero-mean-unit-var"),
    (DxMissingVarianceTerm(), "backward-accuracy"),
    (MomentumReversed(), "running-stats-formula"),
]


@pytest.mark.parametrize(
    ("impl", "prop_name"), FLOAT32_PLANTED, ids=[f"{i.bug}->{p}" for i, p in FLOAT32_PLANTED]
)
def test_planted_bug_is_caught_at_float32(impl: Planted, prop_name: str) -> None:
    """The bug wrapped as a float32 implementation (inputs and outputs rounded to float32, so it
    is judged with float32 tolerances) still fails, while the honest reference wrapped the same
    way passes: the float32 bounds have teeth."""
    prop = by_name(prop_name)
    honest = run_property(prop, Rounded(ReferenceImplementation(), "float32"), AUDIT)
    assert honest.passed, honest.failure
    assert not honest.not_applicable
    result = run_property(prop, Rounded(impl, "float32"), AUDIT)
    assert not result.passed, f"{impl.bug} slipped through {prop_name} at float32"
    assert result.dtype == "float32"
    assert f"property {prop_name!r} failed for {impl.bug} float32" in result.failure


# --- the failure report's snippet replays the failure ----------------------------------------


def test_reproduction_snippet_replays_the_failure() -> None:
    """The snippet of a failure is self-contained Python: exec() of it raises the same
    PropertyFailure, with the same numbers, as the minimal example Hypothesis reported."""
    result = run_property(by_name("zero-mean-unit-var"), EpsOutsideSqrt(), AUDIT)
    assert not result.passed
    code = result.reproduction
    assert "import numpy as np" in code
    assert "x = np.array([" in code
    assert "dtype=np.float64)" in code
    assert "array(" not in code.replace("np.array(", "")  # no bare numpy repr
    assert "from test_planted_bugs import EpsOutsideSqrt" in code
    assert (
        "y, mean, var = impl.forward(x.copy(), gamma.copy(), beta.copy(), eps=eps, axis=axis)"
        in (code)
    )
    with pytest.raises(PropertyFailure) as replay:
        exec(compile(code, "<snippet>", "exec"), {})
    message = str(replay.value)
    assert message.startswith("property 'zero-mean-unit-var' failed for eps-outside-sqrt")
    assert message in result.failure  # the very quantities, errors and tolerances reported


def test_reproduction_snippet_rebuilds_floats_exactly() -> None:
    """Floats are written by their round-trip repr: the rebuilt case is bit-identical."""
    case = BatchCase(
        x=np.array([[0.1, 1e-310], [1 / 3, -2.5e30]]),
        gamma=np.array([np.nextafter(1.0, 2.0), 1.0]),
        beta=np.zeros(2),
        eps=1e-5,
        axis=1,
        dtype="float64",
    )
    code = reproduction_code("identity-params", case, ReferenceImplementation())
    scope: dict[str, object] = {}
    exec(compile(code, "<snippet>", "exec"), scope)
    rebuilt = scope["case"]
    assert isinstance(rebuilt, BatchCase)
    for name in ("x", "gamma", "beta"):
        assert np.array_equal(getattr(rebuilt, name), getattr(case, name))
    assert (rebuilt.eps, rebuilt.axis, rebuilt.dtype) == (1e-5, 1, "float64")


class NoCentering(_ForwardBug):
    """x_hat = x / sqrt(var + eps): the mean never subtracted."""

    bug = "no-centering"

    def stats(self, x: Array, axis: int, eps: float) -> tuple[Array, Array]:
        _, var, _ = _stats(x, axis)
        return np.zeros(()), np.sqrt(var + eps).reshape(_channel_shape(x, axis))


class FirstExampleCentering(_ForwardBug):
    """x - x[0]: centred on the first example of the batch instead of the mean."""

    bug = "first-example-centering"

    def stats(self, x: Array, axis: int, eps: float) -> tuple[Array, Array]:
        _, var, _ = _stats(x, axis)
        along = 0 if axis % x.ndim != 0 else 1  # the first non-channel axis
        first = np.take(x, [0], axis=along)
        return first, np.sqrt(var + eps).reshape(_channel_shape(x, axis))


class InPlaceCentering(Planted):
    """Centres x in place (x -= mean) to save memory: the caller's x is modified."""

    bug = "in-place-centering"

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        out = super().forward(x, gamma, beta, eps=eps, axis=axis)
        x -= out.mean.reshape(_channel_shape(x, axis))
        return out


# One planted bug per kind of Hypothesis example (the case class of the property), so the
# snippet of each kind is shown to replay: ShiftScaleCase, PermutedCase, the no-mutation
# GradientCase, the finite-difference GradientCase, BackwardCase, RunningStatsCase,
# CumulativeCase.
CASE_KINDS = [
    (NoCentering(), "shift-invariance", "ShiftScaleCase"),
    (FirstExampleCentering(), "permutation-equivariance", "PermutedCase"),
    (InPlaceCentering(), "no-mutation", "GradientCase"),
    (DgammaMissingXhat(), "gradients-full", "GradientCase"),
    (DxMissingVarianceTerm(), "backward-accuracy", "BackwardCase"),
    (MomentumReversed(), "running-stats-formula", "RunningStatsCase"),
    (RunningVarNotBessel(), "cumulative-average", "CumulativeCase"),
]


@pytest.mark.parametrize(
    ("impl", "prop_name", "kind"), CASE_KINDS, ids=[f"{p}-{k}" for _, p, k in CASE_KINDS]
)
def test_every_case_kind_replays_from_its_snippet(impl: Planted, prop_name: str, kind: str) -> None:
    """For every kind of example the failure report is paste-able Python: Hypothesis's
    falsifying example and the snippet write arrays as np.array(...), never numpy's bare
    array(...) repr, and exec() of the snippet raises the very PropertyFailure reported."""
    result = run_property(by_name(prop_name), impl, AUDIT)
    assert not result.passed, f"{impl.bug} slipped through {prop_name}"
    code = result.reproduction
    assert f"case = {kind}(" in code
    for text in (code, result.failure):
        assert "np.array(" in text
        assert "array(" not in text.replace("np.array(", "")  # no bare numpy repr
    with pytest.raises(PropertyFailure) as replay:
        exec(compile(code, "<snippet>", "exec"), {})
    message = str(replay.value)
    assert message.startswith(f"property {prop_name!r} failed for {impl.bug}")
    assert message in result.failure  # the very quantities, errors and tolerances reported
    assert result.worst is not None
    assert result.worst.ratio > 1  # the table shows the failing numbers, not a pass's
