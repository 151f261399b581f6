"""float64 results agree with 50-digit mpmath values within the derived bound.

Also: the bound is tight enough to reject a one-pass variance at |mean|/std = 1e8, and the
50-digit evaluation itself is checked against hand values and finite differences.
"""

import math
from collections.abc import Callable
from typing import Any

import mpmath
import numpy as np
import pytest
from hypothesis import find, given

from properties.accuracy_props import PROPERTIES, BackwardCase, small_cases
from properties.adapter import (
    Array,
    BackwardOutput,
    ForwardOutput,
    ReferenceImplementation,
    StrictAccuracy,
)
from properties.framework import Property, PropertyFailure, run_property
from properties.highprec import highprec_backward, highprec_forward
from properties.strategies import BatchCase, batch_cases
from properties.tolerances import (
    SMALLEST_NORMAL,
    STREAMING,
    TWO_PASS,
    accuracy_class,
    check_accuracy,
    exact_stats,
    flush_budget,
    flush_floor,
    flush_floor_y,
    roundings,
    x_hat_bound,
)
from reference.batchnorm_graph import batch_norm_backward_graph

FORWARD, BACKWARD = PROPERTIES
U = 2.0**-53


class OnePassVariance(ReferenceImplementation):
    """The reference with var = mean(x**2) - mean(x)**2: the textbook cancellation bug."""

    @property
    def name(self) -> str:
        return "one-pass variance"

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        reduce = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
        mean = np.mean(x, axis=reduce, keepdims=True)
        var = np.mean(x * x, axis=reduce, keepdims=True) - mean**2
        x_hat = (x - mean) / np.sqrt(var + eps)
        shape = mean.shape
        y = gamma.reshape(shape) * x_hat + beta.reshape(shape)
        return ForwardOutput(y, mean.ravel(), var.ravel())


class GraphBackward(ReferenceImplementation):
    """The reference with the node-by-node backward of `reference.batchnorm_graph`."""

    @property
    def name(self) -> str:
        return "graph backward"

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        g = batch_norm_backward_graph(dy, x, gamma, eps=eps, axis=axis)
        return BackwardOutput(g.dx, g.dgamma, g.dbeta)


def _offset_case() -> BatchCase:
    """Channels 1e8 + [0, 1, 2, 3] and -1e8 + [0, 2, 4, 6]: |mean|/std = 8.9e7 and 4.5e7."""
    steps = np.arange(4.0)
    x = np.stack([1e8 + steps, -1e8 + 2 * steps], axis=1)
    return BatchCase(x, np.array([1.0, 2.0]), np.array([0.0, 0.5]), 1e-5, 1, "float64")


@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.name)
def test_reference_satisfies(prop: Property) -> None:
    prop.as_test(ReferenceImplementation())()


def test_graph_backward_satisfies() -> None:
    # The bound is not tailored to the closed form: the graph's order of operations passes too.
    BACKWARD.as_test(GraphBackward())()


def test_one_pass_variance_fails_at_1e8_and_reference_passes() -> None:
    case = _offset_case()
    exact = highprec_forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    assert exact.var.tolist() == [1.25, 5.0]  # exact biased variances of the two channels
    with pytest.raises(PropertyFailure, match="var"):
        FORWARD.judge(OnePassVariance(), case)
    FORWARD.judge(ReferenceImplementation(), case)

    ref = ReferenceImplementation().forward(case.x, case.gamma, case.beta, eps=1e-5, axis=1)
    one = OnePassVariance().forward(case.x, case.gamma, case.beta, eps=1e-5, axis=1)
    # Measured: the reference's variance is exact; the one-pass one reads [2, 6] (relative
    # error 0.6 and 0.2: x**2 ~ 1e16 is spaced 2 apart, so no digit of var = 1.25 survives).
    ref_rel = np.abs(ref.var - exact.var) / exact.var
    one_rel = np.abs(one.var - exact.var) / exact.var
    assert np.all(ref_rel <= 8 * U)  # F2 at n = 4: (n + 3) u plus dm**2/v ~ 1e-14, times SAFETY
    assert np.all(one_rel >= 0.1)
    # y of the reference is within 2 u of max|y| here; the one-pass y is off by ~0.28.
    assert np.max(np.abs(ref.y - exact.y)) <= 2 * U * np.max(np.abs(exact.y))
    assert np.max(np.abs(one.y - exact.y)) >= 0.1


def test_one_pass_variance_fails_under_hypothesis() -> None:
    result = run_property(FORWARD, OnePassVariance())
    assert not result.passed
    assert "var" in result.failure


def test_small_cases_reach_mean_over_std_1e8() -> None:
    def ill_conditioned(case: BatchCase) -> bool:
        rows = np.moveaxis(case.x, case.axis, 0).reshape(case.gamma.size, -1)
        std = rows.std(axis=1)
        return bool(np.any((std > 0) & (np.abs(rows.mean(axis=1)) >= 1e8 * std)))

    assert ill_conditioned(find(small_cases(), ill_conditioned))


def test_highprec_hand_values() -> None:
    x = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [4.0, 10.0]])
    out = highprec_forward(x, np.array([2.0, 1.0]), np.array([0.5, -1.0]), eps=0.25, axis=1)
    assert out.mean.tolist() == [2.5, 10.0]
    assert out.var.tolist() == [1.25, 0.0]
    assert out.inv_std[1] == 2.0  # 1/sqrt(0.25) is exact
    assert abs(out.inv_std[0] - math.sqrt(2 / 3)) <= 2 * U  # sqrt(2/3) here rounds twice
    want = np.array([-1.5, -0.5, 0.5, 1.5]) / math.sqrt(1.5)  # each within u of exact
    np.testing.assert_allclose(out.x_hat[:, 0], want, rtol=2 * U, atol=0)
    np.testing.assert_array_equal(out.x_hat[:, 1], 0.0)
    np.testing.assert_allclose(out.y[:, 0], 2 * want + 0.5, rtol=4 * U, atol=0)
    np.testing.assert_array_equal(out.y[:, 1], -1.0)


def test_highprec_leaves_global_precision_alone() -> None:
    before = (mpmath.mp.prec, mpmath.mp.dps)
    highprec_forward(np.array([[1.0], [2.0]]), np.ones(1), np.zeros(1), eps=1e-5, axis=1)
    assert (mpmath.mp.prec, mpmath.mp.dps) == before


def test_highprec_backward_matches_finite_differences() -> None:
    # Independent of the closed form: d/dx_i sum(dy * y) by central differences of the 50-digit
    # forward. Error: h**2 |L'''| ~ 1e-10 truncation + u max|sum(dy y)| / h ~ 1e-11 rounding.
    rng = np.random.default_rng(11)
    x, dy = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    gamma, beta, h = np.array([1.5, -0.7]), np.array([0.2, 0.0]), 1e-5

    def loss(values: Array, g: Array, b: Array) -> float:
        y = highprec_forward(values, g, b, eps=1e-3, axis=1).y
        return math.fsum((dy * y).ravel())

    def derivative(f: Callable[[Array], float], at: Array, e: Array) -> float:
        return (f(at + h * e) - f(at - h * e)) / (2 * h)

    grads = highprec_backward(dy, x, gamma, eps=1e-3, axis=1)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = 1.0
        fd = derivative(lambda v: loss(v, gamma, beta), x, e)
        assert abs(fd - grads.dx[idx]) <= 1e-8
    for c in range(2):
        e = np.zeros(2)
        e[c] = 1.0
        assert abs(derivative(lambda g: loss(x, g, beta), gamma, e) - grads.dgamma[c]) <= 1e-8
        assert abs(derivative(lambda b: loss(x, gamma, b), beta, e) - grads.dbeta[c]) <= 1e-8
    # Per channel sum(dx) = 0 and sum(dx * x_hat) = gamma dgamma eps inv_std**3, which is 0 only
    # for eps = 0 (docs/backward.md); float64 sums of n = 5 rounded terms: within 8 u of sum|.|.
    fwd = highprec_forward(x, gamma, beta, eps=1e-3, axis=1)
    dx_xh = grads.dx * fwd.x_hat
    assert np.all(np.abs(grads.dx.sum(axis=0)) <= 8 * U * np.abs(grads.dx).sum(axis=0))
    want = gamma * grads.dgamma * 1e-3 * fwd.inv_std**3
    assert np.all(np.abs(dx_xh.sum(axis=0) - want) <= 8 * U * np.abs(dx_xh).sum(axis=0))


def test_backward_case_of_offset_channels() -> None:
    # The 1e8 channels through the backward bound, with a non-uniform dy.
    case = _offset_case()
    dy = np.array([[0.5, -1.0], [2.0, 0.25], [-1.5, 1.0], [0.0, 3.0]])
    BACKWARD.judge(ReferenceImplementation(), BackwardCase(case, dy))
    BACKWARD.judge(GraphBackward(), BackwardCase(case, dy))


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"x": np.float64(1.0)}, ValueError, "x"),
        ({"x": np.ones((1, 3))}, ValueError, "x"),
        ({"x": np.zeros((0, 2))}, ValueError, "x"),
        ({"x": np.ones((2, 2), dtype=complex)}, TypeError, "x"),
        ({"gamma": np.ones(3)}, ValueError, "gamma"),
        ({"beta": np.ones((2, 1))}, ValueError, "beta"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"axis": 2}, ValueError, "axis"),
        ({"axis": 1.0}, TypeError, "axis"),
    ],
)
def test_highprec_forward_rejects(
    kwargs: dict[str, Any], error: type[Exception], name: str
) -> None:
    args: dict[str, Any] = {
        "x": np.ones((3, 2)),
        "gamma": np.ones(2),
        "beta": np.zeros(2),
        "eps": 1e-5,
        "axis": 1,
    }
    args.update(kwargs)
    with pytest.raises(error, match=name):
        highprec_forward(**args)


def test_highprec_backward_rejects_dy_shape() -> None:
    with pytest.raises(ValueError, match="dy"):
        highprec_backward(np.ones((2, 2)), np.ones((3, 2)), np.ones(2), eps=1e-5, axis=1)


# --- the accuracy classes and the flush-to-zero floor of properties.tolerances -----------------


@given(case=batch_cases())
def test_the_streaming_bound_contains_the_two_pass_bound(case: BatchCase) -> None:
    """Term by term K >= n + 1: whatever passes two-pass passes streaming."""
    stats = exact_stats(case.x, case.axis, case.eps)
    for u in (U, 2.0**-24):
        strict = x_hat_bound(stats, case.x.ndim, u, accuracy=TWO_PASS, tiny=2.0**-1022)
        loose = x_hat_bound(stats, case.x.ndim, u, accuracy=STREAMING, tiny=2.0**-1022)
        assert np.all(loose >= strict)
    assert roundings(stats.count, STREAMING) == 2 * stats.count + 8
    assert roundings(stats.count) == stats.count + 1


def test_accuracy_names_the_class() -> None:
    with pytest.raises(ValueError, match=r"^accuracy must be one of \('two-pass', 'streaming'\)"):
        roundings(4, "one-pass")
    assert check_accuracy(STREAMING) == STREAMING
    assert accuracy_class(ReferenceImplementation()) == STREAMING
    assert accuracy_class(StrictAccuracy(ReferenceImplementation())) == TWO_PASS


def test_the_smallest_normal_numbers() -> None:
    assert {
        "float64": float(np.finfo(np.float64).smallest_normal),
        "float32": float(np.finfo(np.float32).smallest_normal),
        "float16": float(np.finfo(np.float16).smallest_normal),
        "bfloat16": 2.0**-126,  # float32's exponent range
    } == SMALLEST_NORMAL


def test_the_flush_budget_by_hand() -> None:
    """Channel 0 holds a subnormal input (read as 0 by a flushing platform); channel 1 is of
    ordinary magnitude with values of one sign and nothing subnormal anywhere."""
    tiny = 2.0**-1022
    x = np.array([[tiny / 2, 1.0], [2.0, 2.0], [4.0, 3.0]])
    stats = exact_stats(x, 1, 1e-5)
    budget = flush_budget(stats, tiny)
    assert budget.touched.tolist() == [True, False]
    dev = float(np.max(np.abs(x[:, 0] - np.mean(x[:, 0]))))
    # the input: 2 tiny in the shift, 4 D tiny in the variance; values of both signs? no;
    # one below tiny / u: the partial sums cannot cancel (one sign), so no 2 tiny for sums
    assert budget.shift.tolist() == [2 * tiny, 0.0]
    assert budget.var[0] == pytest.approx(4 * dev * tiny, rel=1e-15)
    assert budget.var[1] == 0.0
    assert np.all(flush_floor(stats, 2, tiny)[:, 1] == 0)
    assert np.all(flush_floor(stats, 2, tiny)[:, 0] > 0)
    assert not flush_budget(stats, 0.0).touched.any()  # no floor asked for
    assert np.all(flush_floor(stats, 2, 0.0) == 0)


def test_the_flush_floor_of_a_subnormal_y() -> None:
    tiny = 2.0**-1022
    terms = np.array([[tiny / 4, 1.0, 0.0], [tiny / 4, 3 * tiny, 5 * tiny]])
    assert flush_floor_y(terms, tiny).tolist() == [2 * tiny, tiny, 0.0]  # margin 4 tiny
    assert flush_floor_y(terms, 0.0).tolist() == [0.0, 0.0, 0.0]
