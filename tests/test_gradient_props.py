"""Properties 4 and 6 hold for the reference and fail for deliberately broken backwards."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given

import reference
from properties.adapter import (
    Array,
    BackwardOutput,
    ForwardOutput,
    ReferenceImplementation,
    forward_ys,
)
from properties.framework import Property, run_property
from properties.gradient_props import (
    KAPPA_MAX,
    NAMES,
    PROPERTIES,
    GradientCase,
    _functions,
    _plan,
    backward_cases,
    gradient_cases,
)
from properties.profiles import failure_demo
from properties.strategies import BatchCase
from properties.tolerances import accuracy_class, exact_stats
from reference.gradcheck import full_check

BY_NAME = {p.name: p for p in PROPERTIES}
GRADIENTS = (BY_NAME["gradients-full"], BY_NAME["gradients-fast"])


def _channel(vector: Array, x: Array, axis: int) -> Array:
    shape = [1] * x.ndim
    shape[axis % x.ndim] = vector.size
    return vector.reshape(shape)


class DroppedMeanTerm(ReferenceImplementation):
    """dx = gamma inv_std / n (n dy - x_hat dgamma): the path through the mean is forgotten."""

    @property
    def name(self) -> str:
        return "dx without the mean term"

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        g = reference.batch_norm_backward(dy, x, gamma, eps=eps, axis=axis)
        fwd = reference.batch_norm_forward(x, gamma, np.zeros_like(gamma), eps=eps, axis=axis)
        n = x.size // gamma.size
        dx = g.dx + _channel(gamma * fwd.inv_std * g.dbeta / n, x, axis)
        return BackwardOutput(dx, g.dgamma, g.dbeta)


class UnnormalizedDgamma(ReferenceImplementation):
    """dgamma = sum(dy * (x - mean)): x_hat without the division by sqrt(var + eps)."""

    @property
    def name(self) -> str:
        return "dgamma without inv_std"

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        g = reference.batch_norm_backward(dy, x, gamma, eps=eps, axis=axis)
        fwd = reference.batch_norm_forward(x, gamma, np.zeros_like(gamma), eps=eps, axis=axis)
        return BackwardOutput(g.dx, g.dgamma / fwd.inv_std, g.dbeta)


@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.name)
def test_reference_satisfies(prop: Property) -> None:
    prop.as_test(ReferenceImplementation())()


def test_properties_are_exported_by_name() -> None:
    assert tuple(BY_NAME) == ("gradients-full", "gradients-fast", "dx-orthogonality")


@pytest.mark.parametrize("prop", GRADIENTS, ids=lambda p: p.name)
def test_gradient_properties_catch_a_dropped_mean_term(prop: Property) -> None:
    result = run_property(prop, DroppedMeanTerm())
    assert not result.passed
    assert prop.name in result.failure
    assert "dx relative error" in result.failure
    assert "worst element dx[" in result.failure


@pytest.mark.parametrize("prop", GRADIENTS, ids=lambda p: p.name)
def test_gradient_properties_catch_a_wrong_dgamma(prop: Property) -> None:
    result = run_property(prop, UnnormalizedDgamma())
    assert not result.passed
    assert prop.name in result.failure
    assert "dgamma relative error" in result.failure
    assert "worst element dgamma[" in result.failure


def test_orthogonality_catches_a_dropped_mean_term() -> None:
    prop = BY_NAME["dx-orthogonality"]
    result = run_property(prop, DroppedMeanTerm())
    assert not result.passed
    assert prop.name in result.failure
    assert "channel sum of dx vs 0" in result.failure


def test_sum_of_dx_times_x_hat_is_the_eps_term_not_zero() -> None:
    """The issue's "dx orthogonal to x_hat" holds only as eps -> 0: with var = eps = 1 the
    channel sum of dx * x_hat is gamma dgamma eps / (var + eps)**1.5, far from 0."""
    x = np.array([[-1.0], [1.0], [-1.0], [1.0]])  # mean 0, var 1
    gamma, eps = np.array([2.0]), 1.0
    dy = np.array([[1.5], [-1.2], [0.5], [2.5]])
    g = reference.batch_norm_backward(dy, x, gamma, eps=eps, axis=1)
    x_hat = x / np.sqrt(2.0)
    dgamma = float(np.sum(dy * x_hat))
    got = float(np.sum(g.dx * x_hat))
    want = 2.0 * dgamma * 1.0 / 2.0**1.5
    assert abs(want) > 0.3
    assert got == pytest.approx(want, rel=1e-14)
    assert float(np.sum(g.dx)) == pytest.approx(0.0, abs=1e-15)


@given(gc=gradient_cases())
def test_gradient_cases_are_resolvable(gc: GradientCase) -> None:
    """Every channel the finite differences see has kappa <= KAPPA_MAX, and dy is not uniform."""
    case = gc.case
    stats = exact_stats(case.x, case.axis, case.eps)
    assert np.all(stats.kappa <= KAPPA_MAX)
    assert case.dtype == "float64"
    assert gc.dy.shape == case.x.shape
    assert gc.dy.size < 2 or np.ptp(gc.dy) > 0


@given(gc=backward_cases())
def test_backward_cases_are_float64(gc: GradientCase) -> None:
    assert gc.case.dtype == "float64"
    assert gc.dy.shape == gc.case.x.shape


# --- steps sized to the function ------------------------------------------------------------


def _per_position(x: Array, axis: int, eps: float) -> tuple[Array, Array, Array]:
    """The "Deep Learning from Scratch" layer: every value position normalized over the examples
    (the first non-channel axis) alone. Returns (x_hat, centered, std) per position."""
    along = 0 if axis % x.ndim != 0 else 1
    centered = x - np.mean(x, axis=along, keepdims=True)
    std = np.sqrt(np.mean(centered**2, axis=along, keepdims=True) + eps)
    return centered / std, centered, std


class PerPositionLayer(ReferenceImplementation):
    """Per-position statistics (a wrong forward for per-channel batch norm) with the exact
    derivative of that forward as its backward: the gradient properties must pass it."""

    @property
    def name(self) -> str:
        return "per-position layer"

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        x_hat, _, _ = _per_position(x, axis, eps)
        y = _channel(gamma, x, axis) * x_hat + _channel(beta, x, axis)
        stats = reference.batch_norm_forward(x, gamma, beta, eps=eps, axis=axis)
        return ForwardOutput(y, stats.mean, stats.var)

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        along = 0 if axis % x.ndim != 0 else 1
        x_hat, _, std = _per_position(x, axis, eps)
        reduce = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
        g = _channel(gamma, x, axis) * dy  # dL/dx_hat
        # dx = (g - mean(g) - x_hat mean(g x_hat)) / std, the means over a position's examples
        mean_g = np.mean(g, axis=along, keepdims=True)
        mean_gx = np.mean(g * x_hat, axis=along, keepdims=True)
        dx = (g - mean_g - x_hat * mean_gx) / std
        return BackwardOutput(dx, np.sum(dy * x_hat, axis=reduce), np.sum(dy, axis=reduce))


class PerPositionWrongDgamma(PerPositionLayer):
    """The per-position layer with dgamma = sum(dy): the derivative no longer matches."""

    @property
    def name(self) -> str:
        return "per-position layer, dgamma without x_hat"

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        good = super().backward(dy, x, gamma, eps=eps, axis=axis)
        return BackwardOutput(good.dx, good.dbeta.copy(), good.dbeta)


# Channel 1 holds 1.0 at every position but one, 0.0 there: per position the spread is 0
# (scale sqrt(eps) = 3.2e-3) or 0.5, against the channel's 0.28, so a step of c3 * 0.28 leaves
# a truncation error above G1 (this case failed gradients-full with steps from the channel).
_TIGHT = BatchCase(
    x=np.array([[[0.0, 1.0, 1.0], [1.0, 0.0, 1.0]], [[1.0, 1.0, 1.0], [0.0, 1.0, 1.0]]]),
    gamma=np.array([0.0, 1.0]),
    beta=np.array([0.0, 0.5]),
    eps=1e-5,
    axis=1,
    dtype="float64",
)


def test_the_channel_step_is_too_coarse_for_a_per_position_layer() -> None:
    """Without steps sized to the function the exact backward fails: the failure is the
    step's, which is why the check is run again."""
    gc = GradientCase(_TIGHT, np.random.default_rng(0).standard_normal(_TIGHT.x.shape), 0)
    impl = PerPositionLayer()
    plan = _plan(gc.case, gc.dy, accuracy_class(impl))
    fns = _functions(impl, gc.case)
    report = full_check(
        fns.f,
        fns.vjp,
        (gc.case.x, gc.case.gamma, gc.case.beta),
        upstream=gc.dy,
        names=NAMES,
        f_many=fns.f_many,
        step=plan.steps,
        tolerance=0.0,
        atol=plan.bounds,
    )
    assert not report.passed
    assert report.worst_input == "dx"
    measured = BY_NAME["gradients-full"].check(impl, gc)
    assert all(m.passed for m in measured)
    assert "steps sized to the function: channels [1] differenced at c3 sqrt(eps)" in (
        measured[0].quantity
    )


@pytest.mark.parametrize("prop", GRADIENTS, ids=lambda p: p.name)
def test_an_exact_backward_of_a_per_position_forward_passes(prop: Property) -> None:
    result = run_property(prop, PerPositionLayer())
    assert result.passed, result.failure


@pytest.mark.parametrize("prop", GRADIENTS, ids=lambda p: p.name)
def test_a_wrong_backward_of_a_per_position_forward_still_fails(prop: Property) -> None:
    result = run_property(prop, PerPositionWrongDgamma(), failure_demo(150))
    assert not result.passed
    assert "dgamma relative error" in result.failure


def test_a_correct_forward_keeps_its_bounds_when_its_backward_is_wrong() -> None:
    """A per-channel batch norm passes the test for a faster-varying function in every
    channel, so the check run again keeps the derived bounds: the wrong dgamma fails there
    too, no channel differenced at sqrt(eps)."""
    case = replace(_TIGHT, gamma=np.array([1.0, 1.0]))
    gc = GradientCase(case, np.random.default_rng(1).standard_normal(case.x.shape), 0)
    measured = BY_NAME["gradients-full"].check(UnnormalizedDgamma(), gc)
    assert not all(m.passed for m in measured)
    assert "steps sized to the function: no channel" in measured[0].quantity


class Batched(ReferenceImplementation):
    """The reference with the optional `forward_many`, counting its calls and points (and the
    single calls of forward), to show what crosses to an implementation in another process."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.single = 0

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        self.single += 1
        return super().forward(x, gamma, beta, eps=eps, axis=axis)

    def forward_many(
        self, points: Sequence[tuple[Array, Array, Array]], *, eps: float, axis: int
    ) -> list[Array]:
        self.batches.append(len(points))
        return [super(Batched, self).forward(*p, eps=eps, axis=axis).y for p in points]


_BATCH_CASE = BatchCase(
    x=np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -3.0], [-2.0, 1.0, 0.5], [0.0, 2.5, 1.0]]),
    gamma=np.array([1.5, -0.5, 2.0]),
    beta=np.array([0.1, 0.0, -1.0]),
    eps=1e-5,
    axis=1,
    dtype="float64",
)


@pytest.mark.parametrize(
    ("prop", "points"),
    [(GRADIENTS[0], 2 * (12 + 3 + 3)), (GRADIENTS[1], 2 * 3 * 3)],
    ids=["full", "fast"],
)
def test_the_perturbed_points_go_through_forward_many_in_one_call(
    prop: Property, points: int
) -> None:
    """An implementation with `forward_many` gets every perturbed point of an example in one
    call (forward itself only once, for the output's shape), and the measurements are those
    of the one-call-per-point path, to the bit."""
    gc = GradientCase(_BATCH_CASE, np.random.default_rng(1).standard_normal((4, 3)), 7)
    batched = Batched()
    got = prop.check(batched, gc)
    assert (batched.batches, batched.single) == ([points], 1)
    assert got == prop.check(ReferenceImplementation(), gc)


class BatchedDroppedMeanTerm(Batched, DroppedMeanTerm):
    """A wrong backward, with `forward_many`."""


@pytest.mark.parametrize("prop", GRADIENTS, ids=lambda p: p.name)
def test_a_failure_is_the_same_through_forward_many(prop: Property) -> None:
    """A wrong backward fails with the same numbers through `forward_many`, including the
    fast check's fall-back to the full check and the steps sized to the function; each check
    makes one batched call and one single call of forward."""
    gc = GradientCase(_BATCH_CASE, np.random.default_rng(1).standard_normal((4, 3)), 7)
    batched = BatchedDroppedMeanTerm()
    got = prop.check(batched, gc)
    assert got == prop.check(DroppedMeanTerm(), gc)
    assert not all(m.passed for m in got)
    assert 0 < batched.single <= len(batched.batches) <= 5


def test_forward_ys_calls_forward_per_point_without_forward_many() -> None:
    """Without the optional method, `forward_ys` is a loop over forward, in order."""
    impl = ReferenceImplementation()
    x = _BATCH_CASE.x
    points = [
        (x, _BATCH_CASE.gamma, _BATCH_CASE.beta),
        (2 * x, -_BATCH_CASE.gamma, _BATCH_CASE.beta),
    ]
    ys = forward_ys(impl, points, eps=1e-5, axis=1)
    want = [impl.forward(*p, eps=1e-5, axis=1).y for p in points]
    assert len(ys) == 2
    for y, w in zip(ys, want, strict=True):
        np.testing.assert_array_equal(y, w)
    batched = Batched()
    assert len(forward_ys(batched, points, eps=1e-5, axis=1)) == 2
    assert (batched.batches, batched.single) == ([2], 0)
