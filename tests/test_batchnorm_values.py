"""Hand-checked values of the core, and the graph backward equals the closed form."""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from properties.accuracy_props import BackwardCase, check_backward, check_forward
from properties.adapter import (
    BackwardOutput,
    ForwardOutput,
    ReferenceImplementation,
    StrictAccuracy,
)
from properties.framework import Measurement
from properties.highprec import highprec_backward, highprec_forward
from properties.strategies import BatchCase, batch_cases
from properties.tolerances import ETA, U64
from reference import (
    batch_norm_backward,
    batch_norm_backward_graph,
    batch_norm_forward,
    batch_norm_inference,
    identity_params,
)
from reference.batchnorm import BatchNormBackward, batch_statistics, training_layout
from reference.float_range import statistics_exponents


def test_forward_by_hand_course_layout() -> None:
    # Two features (rows) and four examples (columns), the course notes' (n_x, m) layout.
    x = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 10.0, 10.0, 10.0]])
    out = batch_norm_forward(x, np.array([2.0, 1.0]), np.array([0.5, -1.0]), eps=0.75, axis=0)
    np.testing.assert_array_equal(out.mean, [2.5, 10.0])
    np.testing.assert_array_equal(out.var, [1.25, 0.0])  # biased: 5/4, not 5/3
    np.testing.assert_array_equal(out.inv_std, [1 / math.sqrt(2.0), 1 / math.sqrt(0.75)])
    np.testing.assert_allclose(out.x_hat[0], np.array([-1.5, -0.5, 0.5, 1.5]) / math.sqrt(2.0))
    np.testing.assert_array_equal(out.x_hat[1], 0.0)  # constant feature
    np.testing.assert_allclose(out.y[0], 2 * out.x_hat[0] + 0.5, rtol=2 * U64)
    np.testing.assert_array_equal(out.y[1], -1.0)
    assert (out.axis, out.eps) == (0, 0.75)  # the result records the settings it used


def test_forward_records_the_normalized_axis_and_eps() -> None:
    x = np.arange(24.0).reshape(2, 3, 4)
    out = batch_norm_forward(x, np.ones(4), np.zeros(4), axis=-1, eps=0.5)
    assert (out.axis, out.eps) == (2, 0.5)
    default = batch_norm_forward(x, np.ones(3), np.zeros(3))
    assert (default.axis, default.eps) == (1, 1e-5)


def test_large_offset_normalizes() -> None:
    # |mean|/std = 1e8: the one-pass E[x^2]-E[x]^2 returns garbage here, two passes do not.
    x = (1e8 + np.array([-1.0, 0.0, 1.0, 2.0])).reshape(4, 1)
    out = batch_norm_forward(x, np.ones(1), np.zeros(1), eps=1e-12)
    assert out.var[0] == 1.25
    assert out.mean[0] == 1e8 + 0.5
    one_pass = np.mean(x**2) - np.mean(x) ** 2
    assert abs(one_pass - 1.25) > 0.2  # shows the cancellation the reference avoids


def test_inference_formula() -> None:
    x = np.array([[1.0, -2.0], [3.0, 4.0], [5.0, 0.0]])
    y = batch_norm_inference(
        x,
        np.array([2.0, 3.0]),
        np.array([1.0, 0.0]),
        np.array([1.0, 2.0]),
        np.array([3.0, 8.0]),
        eps=1.0,
    )
    np.testing.assert_allclose(y, [[1.0, -4.0], [3.0, 2.0], [5.0, -2.0]], rtol=4 * U64)


def assert_graph_agrees_with_closed_form(
    dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float, axis: int
) -> None:
    """The node-by-node backward and the closed form compute the same gradient.

    Both add up the same O(n) terms in another order, from the same two-pass mean, whose error
    (up to about u |mean| when |mean| >> std) makes the computed x_hat sum to up to n u kappa,
    kappa = max|x| / s, instead of 0: the closed form relies on sum(x_hat) = 0, the graph sums
    its nodes (dmu = -sum(dx1)). In a constant channel (x_hat = 0) the mean is every value,
    exactly, and kappa drops out. Each dx_i is gamma inv_std times a combination of dy_i,
    mean(dy) and x_hat_i mean(dy x_hat), so the two differ by at most (n + 10) u (1 + kappa)
    times gamma inv_std (|dy_i| + mean|dy| + (1 + |x_hat_i|) mean(|dy| (1 + |x_hat|))),
    doubled for the first-order expansion; dgamma = sum(dy x_hat) likewise with
    sum(|dy| (1 + |x_hat|)). inv_std and x_hat are those of the plain reference
    (`batch_statistics`), which exist also where the forward's variance is beyond float64.
    """
    closed = batch_norm_backward(dy, x, gamma, eps=eps, axis=axis)
    nodes = batch_norm_backward_graph(dy, x, gamma, eps=eps, axis=axis)
    layout = training_layout(x, axis)
    _, _, inv_std, x_hat = batch_statistics(x, layout, eps)
    reduce, n, per_channel = layout.reduce_axes, layout.count, layout.expand
    constant = np.all(x_hat == 0, axis=reduce)
    with np.errstate(over="ignore"):  # max|x| / sqrt(eps) of a constant channel: not used
        kappa = np.where(constant, 0.0, np.max(np.abs(x), axis=reduce) * inv_std)
    rel = 2 * (n + 10) * U64 * (1 + kappa)
    weight = np.abs(dy) * (1 + np.abs(x_hat))
    mean_abs_dy = np.mean(np.abs(dy), axis=reduce)
    tol_dx = per_channel(rel * np.abs(gamma) * inv_std) * (
        np.abs(dy)
        + per_channel(mean_abs_dy)
        + (1 + np.abs(x_hat)) * per_channel(np.mean(weight, axis=reduce))
    )
    assert np.all(np.abs(closed.dx - nodes.dx) <= tol_dx)
    np.testing.assert_array_equal(closed.dbeta, nodes.dbeta)  # the same np.sum both times
    tol_g = rel * np.sum(weight, axis=reduce)
    assert np.all(np.abs(closed.dgamma - nodes.dgamma) <= tol_g)


@given(batch_cases(dtypes=("float64",), max_condition=1e4))
def test_graph_backward_equals_closed_form(case: BatchCase) -> None:
    dy = np.random.default_rng(0).standard_normal(case.x.shape)
    assert_graph_agrees_with_closed_form(dy, case.x, case.gamma, case.eps, case.axis)


def test_graph_backward_defaults_shapes_and_finite_check() -> None:
    # Defaults axis=1, eps=1e-5 and check_finite=True, as batch_norm_backward's; one dgamma
    # and one dbeta per channel, of shape (C,).
    x = np.arange(24.0).reshape(2, 3, 4) ** 1.5
    dy = np.linspace(-1.0, 1.0, 24).reshape(2, 3, 4)
    gamma = np.array([1.0, 2.0, 3.0])
    nodes = batch_norm_backward_graph(dy, x, gamma)
    explicit = batch_norm_backward_graph(dy, x, gamma, eps=1e-5, axis=1, check_finite=True)
    for field in ("dx", "dgamma", "dbeta"):
        np.testing.assert_array_equal(getattr(nodes, field), getattr(explicit, field), strict=True)
    assert (nodes.dx.shape, nodes.dgamma.shape, nodes.dbeta.shape) == (x.shape, (3,), (3,))
    dy[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"^dy must be finite"):
        batch_norm_backward_graph(dy, x, gamma)
    # Without the check the NaN reaches channel 2's sum(dy) and sum(dy * x_hat) only.
    dbeta = batch_norm_backward_graph(dy, x, gamma, check_finite=False).dbeta
    np.testing.assert_array_equal(np.isnan(dbeta), [False, False, True])


def test_identity_params_by_hand() -> None:
    # gamma = sqrt(var + eps), beta = mean; var = 0 and var < 1 are valid variances.
    # eps = 1 makes the square roots exact: sqrt(1) = 1, sqrt(1.5625) = 1.25.
    params = identity_params(np.array([1.0, -2.0]), np.array([0.0, 0.5625]), eps=1.0)
    np.testing.assert_array_equal(params.gamma, [1.0, 1.25], strict=True)
    np.testing.assert_array_equal(params.beta, [1.0, -2.0], strict=True)


# --- Values near the float64 limit (1.8e308): right results, or a ValueError naming x --------


def test_plus_minus_1e154_normalizes_to_plus_minus_one() -> None:
    # var = 1e308 is a float64, the squares 1e308 are too, but their sum 4e308 is not: the
    # channel is computed as x * 2**-512 and scaled back (eps = 1e-5 is below var's rounding).
    x = np.array([[1e154], [-1e154], [1e154], [-1e154]])
    out = batch_norm_forward(x, np.ones(1), np.zeros(1))
    np.testing.assert_array_equal(out.mean, [0.0])
    np.testing.assert_array_equal(out.var, [1e308])  # (1e154)**2, rounded once
    np.testing.assert_allclose(out.inv_std, [1e-154], rtol=2 * U64)
    np.testing.assert_allclose(out.y[:, 0], [1.0, -1.0, 1.0, -1.0], rtol=4 * U64)


def test_the_gradients_exist_where_the_variance_does_not() -> None:
    # x = [1, 2, 3] * 1e200 has var = 6.7e399, beyond float64, yet x_hat = [-1.22, 0, 1.22]
    # and every gradient are ordinary numbers: those of the same data times 1e-190, with dx
    # scaled by 1e190 (the scaling is not by a power of two: equal to a few roundings).
    dy = np.array([[0.0], [0.0], [1.0]])
    big = batch_norm_backward(dy, np.array([[1.0], [2.0], [3.0]]) * 1e200, np.ones(1))
    small = batch_norm_backward(dy, np.array([[1.0], [2.0], [3.0]]) * 1e10, np.ones(1))
    np.testing.assert_allclose(big.dgamma, [math.sqrt(1.5)], rtol=8 * U64)
    np.testing.assert_allclose(big.dgamma, small.dgamma, rtol=8 * U64)
    np.testing.assert_allclose(big.dx * 1e190, small.dx, rtol=16 * U64)
    np.testing.assert_array_equal(big.dbeta, [1.0])
    with pytest.raises(ValueError, match=r"^x must have a variance that float64 can represent"):
        batch_norm_forward(np.array([[1.0], [2.0], [3.0]]) * 1e200, np.ones(1), np.zeros(1))


def test_the_mean_of_values_whose_sum_overflows() -> None:
    # 3 * 1.7e308 is not a float64, their mean is: mean = 1.7e308, var = 0, y = beta. Any two
    # distinct values this large are at least an ulp (2**971) apart, so a channel that is not
    # constant has a variance beyond float64: a ValueError that names x, the size of the
    # variance (1.09e615 = 2**2043.1) and its channel.
    out = batch_norm_forward(np.full((3, 2), 1.7e308) * [1, -1], np.ones(2), np.array([0.5, 2.0]))
    np.testing.assert_array_equal(out.mean, [1.7e308, -1.7e308])
    np.testing.assert_array_equal(out.var, [0.0, 0.0])
    np.testing.assert_array_equal(out.y, [[0.5, 2.0]] * 3)
    x = np.array([[1.0, 1.7e308], [2.0, 1.7e308], [3.0, 1e308]])
    with pytest.raises(
        ValueError,
        match=r"^x must have a variance that float64 can represent \(at most 1\.8e308\) in "
        r"every channel, got about 2\*\*2043\.1 in channel 1$",
    ):
        batch_norm_forward(x, np.ones(2), np.zeros(2))


def _power_of_two_case(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(rng.uniform(-5, 5), rng.uniform(0.1, 10), (7, 3, 5))
    return x, rng.standard_normal(x.shape), rng.standard_normal(3), rng.standard_normal(3)


@pytest.mark.parametrize("seed", range(5))
def test_scaling_x_by_a_power_of_two_changes_nothing_but_the_scale(seed: int) -> None:
    # x * 2**490 reaches 2**480: it is computed as x * 2**-k and scaled back. With eps scaled by
    # 4**490 too, batch norm of x * 2**490 is that of x exactly (power-of-two products are
    # exact): x_hat, y, dgamma and dbeta bit for bit, mean, var, inv_std and dx by the scale.
    x, dy, gamma, beta = _power_of_two_case(seed)
    s = 490
    eps = 2.0**-20
    big = batch_norm_forward(np.ldexp(x, s), gamma, beta, eps=np.ldexp(eps, 2 * s))
    ref = batch_norm_forward(x, gamma, beta, eps=eps)
    np.testing.assert_array_equal(big.x_hat, ref.x_hat, strict=True)
    np.testing.assert_array_equal(big.y, ref.y, strict=True)
    np.testing.assert_array_equal(big.mean, np.ldexp(ref.mean, s), strict=True)
    np.testing.assert_array_equal(big.var, np.ldexp(ref.var, 2 * s), strict=True)
    np.testing.assert_array_equal(big.inv_std, np.ldexp(ref.inv_std, -s), strict=True)
    # The backward at 2**600, where var (about 2**1200) is beyond float64 and the forward raises.
    s = 600
    big_grad = batch_norm_backward(dy, np.ldexp(x, s), gamma, eps=np.ldexp(eps, 2 * s - 1000))
    ref_grad = batch_norm_backward(dy, x, gamma, eps=np.ldexp(eps, -1000))
    np.testing.assert_array_equal(big_grad.dgamma, ref_grad.dgamma, strict=True)
    np.testing.assert_array_equal(big_grad.dbeta, ref_grad.dbeta, strict=True)
    np.testing.assert_array_equal(big_grad.dx, np.ldexp(ref_grad.dx, -s), strict=True)


def _unscaled_formulas(
    x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float, axis: int
) -> tuple[np.ndarray, ...]:
    """The two-pass formulas computed on x itself, with no scaling at all."""
    axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    m0 = np.mean(x, axis=axes, keepdims=True)
    mean = m0 + np.mean(x - m0, axis=axes, keepdims=True)
    centered = x - mean
    var = np.mean(centered * centered, axis=axes, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = centered * inv_std
    shape = [-1 if i == axis % x.ndim else 1 for i in range(x.ndim)]
    y = gamma.reshape(shape) * x_hat + beta.reshape(shape)
    return mean.ravel(), var.ravel(), inv_std.ravel(), x_hat, y


@given(batch_cases(dtypes=("float64",)))
def test_ordinary_input_gives_the_unscaled_formulas_bit_for_bit(case: BatchCase) -> None:
    # Channels below 2**480 that spread at least 2**-479 have k = 0 (ldexp(x, 0) is x): their
    # results are those of the plain two-pass formulas on x, not merely close to them. (The
    # strategy's z can make a channel of values near 2e-308: that one is scaled up.)
    out = batch_norm_forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    mean, var, inv_std, x_hat, y = _unscaled_formulas(
        case.x, case.gamma, case.beta, case.eps, case.axis
    )
    layout = training_layout(case.x, case.axis)
    plain = statistics_exponents(case.x, layout.reduce_axes, case.eps) == 0
    for got, want in ((out.mean, mean), (out.var, var), (out.inv_std, inv_std)):
        np.testing.assert_array_equal(got[plain], want[plain], strict=True)
    for got, want in ((out.x_hat, x_hat), (out.y, y)):
        kept = np.compress(plain, got, axis=layout.axis), np.compress(plain, want, axis=layout.axis)
        np.testing.assert_array_equal(*kept, strict=True)


def _exponent_range(values: np.ndarray, power: int = 1) -> tuple[int, int]:
    """The j for which every nonzero value * 2**(power * j) is a normal float64: a range."""
    exponents = np.frexp(values[values != 0])[1]  # 2**(e - 1) <= |value| < 2**e
    ends = sorted(
        (
            (-1021 - exponents.min(initial=1024)) / power,
            (1024 - exponents.max(initial=-1021)) / power,
        )
    )
    return math.ceil(ends[0]), math.floor(ends[1])


@given(batch_cases(dtypes=("float64",)), st.data())
def test_forward_and_backward_scale_exactly_with_a_power_of_two(
    case: BatchCase, data: st.DataObject
) -> None:
    # For every j (|j| <= 1000) that keeps x * 2**j, mean * 2**j, var * 4**j and dx * 2**-j
    # normal (or 0), with eps * 4**j normal and below 2**998 (a tiny channel's scale is capped
    # by eps * 4**j < 2**1000): batch norm of x * 2**j with eps * 4**j is that of x exactly --
    # x_hat, y, dgamma and dbeta bit for bit, mean, var, inv_std and dx by the scale -- whether
    # a channel is computed on x itself, scaled down (reaching 2**480) or scaled up (spreading
    # less than 2**-479). A channel whose variance underflows is not normal: left out.
    layout = training_layout(case.x, case.axis)
    e = math.frexp(case.eps)[1]
    eps = math.ldexp(case.eps, data.draw(st.integers(-1021 - e, 998 - e), label="eps * 2**i"))
    dy = np.random.default_rng(3).standard_normal(case.x.shape)
    out = batch_norm_forward(case.x, case.gamma, case.beta, eps=eps, axis=case.axis)
    grads = batch_norm_backward(dy, case.x, case.gamma, eps=eps, axis=case.axis)
    spread = np.ptp(case.x, axis=layout.reduce_axes)
    assume(np.all((out.var >= 2.0**-1022) | (spread == 0)))
    ranges = [
        _exponent_range(np.concatenate([case.x.ravel(), out.mean])),
        _exponent_range(out.var, 2),
        _exponent_range(np.array([eps]), 2),
        _exponent_range(grads.dx, -1),
        (-1000, 1000),
        (-1000, (998 - math.frexp(eps)[1]) // 2),  # eps * 4**j < 2**998
    ]
    lowest, highest = max(r[0] for r in ranges), min(r[1] for r in ranges)
    assume(lowest <= 0 <= highest)  # x itself is normal
    j = data.draw(st.integers(lowest, highest), label="j")
    scaled_x, scaled_eps = np.ldexp(case.x, j), math.ldexp(eps, 2 * j)
    scaled = batch_norm_forward(scaled_x, case.gamma, case.beta, eps=scaled_eps, axis=case.axis)
    for name, power in (("x_hat", 0), ("y", 0), ("mean", 1), ("var", 2), ("inv_std", -1)):
        want = np.ldexp(getattr(out, name), power * j)
        np.testing.assert_array_equal(getattr(scaled, name), want, strict=True, err_msg=name)
    scaled_grads = batch_norm_backward(dy, scaled_x, case.gamma, eps=scaled_eps, axis=case.axis)
    np.testing.assert_array_equal(scaled_grads.dgamma, grads.dgamma, strict=True)
    np.testing.assert_array_equal(scaled_grads.dbeta, grads.dbeta, strict=True)
    np.testing.assert_array_equal(scaled_grads.dx, np.ldexp(grads.dx, -j), strict=True)


def test_inference_where_x_minus_running_mean_overflows() -> None:
    # 1e308 - (-1e308) is not a float64, (2e308) / sqrt(1e308) = 2e154 is: the halves are
    # subtracted and the product doubled. A subnormal x beside a huge running_mean is absorbed
    # as it would be without halving; the other channel is untouched.
    x = np.array([[1e308, 3.0], [-1e308, 5e-324], [5e-324, -2.0]])
    y = batch_norm_inference(
        x,
        np.ones(2),
        np.array([0.0, 0.5]),
        np.array([-1e308, 0.0]),
        np.array([1e308, 3.0]),
        eps=1.0,
    )
    np.testing.assert_allclose(y[:, 0], [2e154, 0.0, 1e154], rtol=4 * U64)
    np.testing.assert_array_equal(y[:, 1], [2.0, 0.5 + 5e-324 / 2, -0.5])


# --- The graph backward near the float64 limit: the plain reference's results, scaled exactly --

# (x, s, eps): x * 2**-s is O(1), and eps * 4**-s is a float64 exactly. Squares overflow at
# +-1e154 (their sum 4e308), the variance does at 1e200, 1.7e308 and -1e300, squares underflow at
# 1e-160.
EXTREME_CHANNELS = {
    "+-1e154": ([1e154, -1e154, 1e154, -1e154], 512, 2.0**-36),
    "+-1e200": ([1e200, -1e200, 1e200, -1e200], 665, 2.0**270),
    "[1, 2, 3] * 1e200": ([1e200, 2e200, 3e200], 666, 2.0**270),
    "[1.7, 1.7, 1] * 1e308": ([1.7e308, 1.7e308, 1e308], 1024, 2.0**988),
    "-1e300 beside 0 and 1": ([-1e300, 0.0, 1.0], 997, 2.0**934),
    "+-1e-160": ([1e-160, -1e-160, 1e-160, -1e-160], -531, 2.0**-1074),
    "[1, 2, 3] * 1e-160": ([1e-160, 2e-160, 3e-160], -530, 2.0**-1074),
}


@pytest.mark.parametrize("values", EXTREME_CHANNELS.values(), ids=EXTREME_CHANNELS.keys())
def test_graph_backward_near_the_float64_limit(values: tuple[list[float], int, float]) -> None:
    # Where the unscaled graph overflowed (var = inf: dx = 0, dgamma = 0) or divided by a
    # flushed square, it agrees with the plain reference, next to an ordinary channel (each
    # channel has its own scale), and equals the graph of the data scaled to O(1) exactly:
    # x * 2**-s with eps * 4**-s has the same dgamma and dbeta, and dx times 2**s.
    column, s, eps = values
    x = np.stack([np.array(column), np.arange(1.0, len(column) + 1)], axis=1)
    dy = np.random.default_rng(1).standard_normal(x.shape)
    gamma = np.array([1.5, -0.5])
    assert_graph_agrees_with_closed_form(dy, x, gamma, 1e-5, 1)
    scale = np.array([s, 0])
    small_x, small_eps = np.ldexp(x, -scale), math.ldexp(eps, -2 * s)
    assert np.array_equal(np.ldexp(small_x, scale), x)  # exact: the same data
    assert math.ldexp(small_eps, 2 * s) == eps  # exact, neither 0 nor inf
    big = batch_norm_backward_graph(dy[:, :1], x[:, :1], gamma[:1], eps=eps)
    small = batch_norm_backward_graph(dy[:, :1], small_x[:, :1], gamma[:1], eps=small_eps)
    np.testing.assert_array_equal(big.dgamma, small.dgamma, strict=True)
    np.testing.assert_array_equal(big.dbeta, small.dbeta, strict=True)
    np.testing.assert_array_equal(big.dx, np.ldexp(small.dx, -s), strict=True)


@pytest.mark.parametrize("eps", [1e-5, 2.0**-1074])
def test_graph_backward_of_a_constant_channel_at_any_size(eps: float) -> None:
    # x_hat = 0 and dx = gamma / sqrt(eps) * (dy - mean(dy)), whatever the constant: the sum
    # 3 * 1.7e308 overflows, and with eps = 2**-1074 so does 1 / sqrtvar**2 = 1 / eps. Both
    # are the plain reference's (whose two-pass mean is exactly 1.7e308), bit for bit those of
    # the constant 1 (x enters only through xmu = 0), and dgamma is exactly 0.
    dy = np.array([[0.5, 1.0], [-2.0, 1.0], [0.0, 1.0]])  # mean(dy[:, 0]) = -0.5
    x = np.array([[1.7e308, 1.0]] * 3)
    gamma = np.array([1.5, -0.5])
    assert_graph_agrees_with_closed_form(dy, x, gamma, eps, 1)
    big = batch_norm_backward_graph(dy, x, gamma, eps=eps)
    ones = batch_norm_backward_graph(dy, np.ones_like(x), gamma, eps=eps)
    for field in ("dx", "dgamma", "dbeta"):
        np.testing.assert_array_equal(getattr(big, field), getattr(ones, field), strict=True)
    np.testing.assert_array_equal(big.dgamma, [0.0, 0.0])
    np.testing.assert_allclose(big.dx[:, 0], 1.5 / math.sqrt(eps) * (dy[:, 0] + 0.5), rtol=8 * U64)


@given(batch_cases(dtypes=("float64",)), st.data())
def test_graph_backward_scales_exactly_with_a_power_of_two(
    case: BatchCase, data: st.DataObject
) -> None:
    # For every j that keeps x * 2**j normal and finite (up to |j| = 1000), with eps * 4**j
    # normal too: the graph of x * 2**j has the same dgamma and dbeta as that of x, and dx
    # times 2**-j, bit for bit (every node is computed on the same x * 2**-k).
    exponents = np.frexp(case.x[case.x != 0])[1]
    lowest = -1021 - int(exponents.min(initial=1024))  # |x| * 2**j >= 2**-1022
    highest = 1024 - int(exponents.max(initial=-1021))  # |x| * 2**j < 2**1024
    j = data.draw(st.integers(max(-1000, lowest), min(1000, highest)), label="j")
    e = data.draw(st.integers(max(-1021, -1021 - 2 * j), min(1024, 1024 - 2 * j)), label="e")
    eps = math.ldexp(math.frexp(case.eps)[0], e)  # eps and eps * 4**j are normal floats
    dy = np.random.default_rng(2).standard_normal(case.x.shape)
    base = batch_norm_backward_graph(dy, case.x, case.gamma, eps=eps, axis=case.axis)
    scaled = batch_norm_backward_graph(
        dy, np.ldexp(case.x, j), case.gamma, eps=math.ldexp(eps, 2 * j), axis=case.axis
    )
    np.testing.assert_array_equal(scaled.dgamma, base.dgamma, strict=True)
    np.testing.assert_array_equal(scaled.dbeta, base.dbeta, strict=True)
    np.testing.assert_array_equal(scaled.dx, np.ldexp(base.dx, -j), strict=True)


# --- Tiny data, huge gradients: the results of the same data scaled to O(1), or a ValueError ------


class AtScale(ReferenceImplementation):
    """The reference run on data scaled by powers of two, its results scaled back: it computes
    on x * 2**sx with eps * 4**sx, dy * 2**sdy and gamma * 2**sg. Batch norm commutes with that
    exactly (mean times 2**sx, var 4**sx, x_hat and y unchanged, dgamma and dbeta 2**sdy, dx
    2**(sdy + sg - sx)), so an extreme case is judged as the ordinary case it scales to: against
    that case's 50-digit values within its derived bounds (`properties.accuracy_props`), which
    have teeth there, as they have not where a flush to zero is allowed for."""

    def __init__(self, *, x: int = 0, dy: int = 0, gamma: int = 0) -> None:
        super().__init__(name="reference at scale")
        self.sx, self.sdy, self.sg = x, dy, gamma

    def forward(
        self, x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, *, eps: float, axis: int
    ) -> ForwardOutput:
        at = batch_norm_forward(
            np.ldexp(x, self.sx), gamma, beta, eps=math.ldexp(eps, 2 * self.sx), axis=axis
        )
        return ForwardOutput(at.y, np.ldexp(at.mean, -self.sx), np.ldexp(at.var, -2 * self.sx))

    def backward(
        self, dy: np.ndarray, x: np.ndarray, gamma: np.ndarray, *, eps: float, axis: int
    ) -> BackwardOutput:
        sx, sdy, sg = self.sx, self.sdy, self.sg
        at = batch_norm_backward(
            np.ldexp(dy, sdy),
            np.ldexp(x, sx),
            np.ldexp(gamma, sg),
            eps=math.ldexp(eps, 2 * sx),
            axis=axis,
        )
        dx = np.ldexp(at.dx, sx - sdy - sg)
        return BackwardOutput(dx, np.ldexp(at.dgamma, -sdy), np.ldexp(at.dbeta, -sdy))


def assert_within_the_derived_bounds(
    measured: list[Measurement], *, skip: str = "", teeth: tuple[str, ...] = ()
) -> None:
    """Every measurement but `skip` passes; those named in `teeth` (all if empty) could have
    failed (`Measurement.teeth`: an exact value of 0 leaves nothing to miss)."""
    for m in measured:
        assert m.quantity == skip or m.passed, m
        assert m.quantity == skip or m.teeth or m.quantity not in (teeth or m.quantity), m


TINY = np.array([[1e-160], [2e-160], [3e-160]])  # var = 6.7e-321, subnormal: 11 bits
TINY_DY = np.array([[-1.0], [0.5], [2.0]])


@pytest.mark.parametrize(("eps", "s"), [(2.0**-1074, -531), (1e-300, -531), (1e-5, -500)])
def test_tiny_values_with_a_tiny_eps_against_50_digits(eps: float, s: int) -> None:
    # The squares of [1, 2, 3] * 1e-160 are subnormal, and so is var = 6.7e-321 (11 bits): with
    # eps = 2**-1074 the unscaled formulas give dx = +-8.87e156 for +-1.36e157, dgamma 1.3e-4
    # too large. The channel is computed on x * 2**531 and scaled back: its results are those
    # of the ordinary case TINY * 2**-s (eps * 4**-s), within that case's two-pass bounds,
    # except var itself, a subnormal number, within ETA (its rounding) of the 50-digit value.
    case = BatchCase(
        np.ldexp(TINY, -s), np.ones(1), np.zeros(1), math.ldexp(eps, -2 * s), 1, "float64"
    )
    impl = StrictAccuracy(AtScale(x=s))
    measured = check_forward(impl, case) + check_backward(impl, BackwardCase(case, TINY_DY))
    assert_within_the_derived_bounds(measured, skip="var")
    exact = highprec_backward(TINY_DY, TINY, np.ones(1), eps=eps, axis=1)  # the same yardstick
    scaled = highprec_backward(TINY_DY, case.x, np.ones(1), eps=case.eps, axis=1)
    np.testing.assert_array_equal(exact.dx, np.ldexp(scaled.dx, -s), strict=True)
    var = batch_norm_forward(TINY, np.ones(1), np.zeros(1), eps=eps).var
    exact_var = highprec_forward(TINY, np.ones(1), np.zeros(1), eps=eps, axis=1).var
    assert abs(var[0] - exact_var[0]) <= ETA


def test_a_variance_negligible_next_to_eps_keeps_the_scale_of_x() -> None:
    # [0, 2**-540] spreads below 2**-479, but eps = 2**996 allows x * 2 at most (eps * 4**j
    # < 2**1000): its squares 2**-1080 still round to 0, and var = 0 must not undo that
    # scale. x_hat = +-2**-541 / sqrt(2**996) = +-2**-1039 exactly (a subnormal number).
    out = batch_norm_forward(np.array([[0.0], [2.0**-540]]), np.ones(1), np.zeros(1), eps=2.0**996)
    np.testing.assert_array_equal(out.mean, [2.0**-541])
    np.testing.assert_array_equal(out.var, [0.0])  # 2**-1082 rounds to 0
    np.testing.assert_array_equal(out.inv_std, [2.0**-498])
    np.testing.assert_array_equal(out.x_hat[:, 0], [-(2.0**-1039), 2.0**-1039])


@pytest.mark.parametrize(
    ("column", "eps", "k"),
    [
        ([2.0**500, 0.0], 1e-5, 501),  # reaching 2**480: x * 2**-501
        ([-1.7e308, 1.7e308], 1e-5, 1024),  # the spread 3.4e308 overflows: no warning
        ([2.0**479, 0.0], 1e-5, 0),
        ([0.0, 2.0**-479], 1e-5, 0),  # spread 2**-479: squares of 2**-958 are normal
        ([0.0, 2.0**-480], 1e-5, -479),  # spread 2**-480: x * 2**479 spreads 1/2
        ([-(2.0**-500), 2.0**-500], 1e-5, -498),  # the spread is max - min = 2**-499
        ([0.0, 2.0**-1074], 2.0**-1074, -1036),  # eps * 4**1036 = 2**998, below 2**1000
        ([0.0, 2.0**-540], 2.0**996, -1),  # eps * 4 = 2**998
        ([0.0, 2.0**-540], 2.0**1000, 0),  # not even x * 2: x itself
        ([3.0, 3.0], 2.0**-1074, 0),  # no spread: x itself
        ([np.inf, np.inf], 1e-5, 0),  # inf - inf is NaN: no warning
        ([np.nan, 1.0], 1e-5, 0),
    ],
)
def test_the_scale_each_channel_is_computed_at(column: list[float], eps: float, k: int) -> None:
    # x * 2**-k and eps * 4**-k (`reference.float_range`), k per channel: > 0 for values
    # reaching 2**480, < 0 for values spreading less than 2**-479, 0 for the rest.
    # An ordinary channel beside it, k = 0, with the lowest value: each channel's spread is
    # its own max - min.
    x = np.array([column, [-2.0, 1.0]]).T
    np.testing.assert_array_equal(statistics_exponents(x, (0,), eps), [k, 0])


# From finite arguments a non-finite gradient can only be an overflow: of dx = gamma /
# sqrt(eps) ~ 4.5e321 itself, of dgamma = sum(dy * x_hat) = -2.4e308 or of dbeta = sum(dy) =
# 2e308. Both backwards say so in one message, naming dy, and gamma for dx.
GRADIENT_OVERFLOWS = {
    # case: (x's channel 1, dy's channel 1, gamma[1], eps, the message)
    "dx": (
        [0.0, 2.0**-1074, 2.0**-1073],
        [1.0, 0.0, -1.0],
        1e160,
        2.0**-1074,
        "dy and gamma must be small enough that dx is within float64 (at most 1.8e308), got a "
        "non-finite dx in channel 1, where max|dy| = 1 and gamma = 1e+160",
    ),
    "dgamma": (
        [1.0, 2.0, 3.0],
        [1e308, 0.0, -1e308],
        1e-10,
        1e-5,
        "dy must be small enough that dgamma is within float64 (at most 1.8e308), got a "
        "non-finite dgamma in channel 1, where max|dy| = 1e+308",
    ),
    # the largest |dy| of channel 1 is not its first value: max|dy| is over the channel
    "dgamma, max|dy| after a small dy": (
        [2.0, 1.0, 3.0],
        [0.5, -1e308, 1e308],
        1e-10,
        1e-5,
        "dy must be small enough that dgamma is within float64 (at most 1.8e308), got a "
        "non-finite dgamma in channel 1, where max|dy| = 1e+308",
    ),
    "dbeta": (
        [1.0, 2.0, 3.0],
        [1e308, 1e308, 1.0],
        1e-10,
        1e-5,
        "dy must be small enough that dbeta is within float64 (at most 1.8e308), got a "
        "non-finite dbeta in channel 1, where max|dy| = 1e+308",
    ),
}


@pytest.mark.parametrize("backward", [batch_norm_backward, batch_norm_backward_graph])
@pytest.mark.parametrize("check_finite", [True, False])
@pytest.mark.parametrize("values", GRADIENT_OVERFLOWS.values(), ids=GRADIENT_OVERFLOWS.keys())
def test_gradients_beyond_float64_are_a_value_error(
    values: tuple[list[float], list[float], float, float, str],
    check_finite: bool,
    backward: Callable[..., BatchNormBackward],
) -> None:
    x_column, dy_column, gamma_1, eps, message = values
    x = np.stack([np.arange(1.0, 4.0), x_column], axis=1)
    dy = np.stack([np.zeros(3), dy_column], axis=1)
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        backward(dy, x, np.array([1.0, gamma_1]), eps=eps, check_finite=check_finite)


def test_a_sum_of_dy_beyond_float64_is_a_value_error_not_nan() -> None:
    # dbeta = 1e308 + 1e308 + 1 is not a float64 (unscaled, it is inf and dx NaN, with only
    # RuntimeWarnings); dgamma = -1.2e308 and dx (about -2e307) are, and are not named.
    x, dy = np.array([[1.0], [2.0], [3.0]]), np.array([[1e308], [1e308], [1.0]])
    with pytest.raises(
        ValueError,
        match=r"^dy must be small enough that dbeta is within float64 \(at most 1\.8e308\), got "
        r"a non-finite dbeta in channel 0, where max\|dy\| = 1e\+308$",
    ):
        batch_norm_backward(dy, x, np.ones(1))
    # With a NaN among the arguments (check_finite=False) nothing is checked: it propagates.
    dy2 = np.hstack([[[np.nan], [0.0], [1.0]], dy])
    out = batch_norm_backward(dy2, np.hstack([x, x]), np.ones(2), check_finite=False)
    np.testing.assert_array_equal(out.dbeta, [np.nan, np.inf])


# Representable gradients whose unscaled steps overflow (to inf and NaN): n * dy = 4e308;
# gamma * inv_std = 1e200 * 2**500; and the graph's node dy * gamma = 1e310, where the graph
# raises. (x, dy, gamma, eps, the scales of `AtScale` that make the case ordinary.)
INTERMEDIATE_OVERFLOWS = {
    "n * dy": ([0.0, 0.0, 2.0, 2.0], [1e308, -1e308, 0.0, 0.0], 1.0, 1e-5, (0, 1000, 0)),
    "gamma * inv_std": (
        [0.0, 0.0, 0.0],
        [1e-200, -1e-200, 0.0],
        1e200,
        2.0**-1000,
        (-500, -664, 664),
    ),
    "dy * gamma": ([1e100, 2e100, 3e100], [1e10, 1e10, -1e10], 1e300, 1e-5, (333, 33, 997)),
}


@pytest.mark.parametrize(
    "values", INTERMEDIATE_OVERFLOWS.values(), ids=INTERMEDIATE_OVERFLOWS.keys()
)
def test_gradients_whose_steps_overflow_are_computed(
    values: tuple[list[float], list[float], float, float, tuple[int, int, int]],
) -> None:
    x_column, dy_column, gamma_0, eps, (sx, sdy, sg) = values
    x, dy, gamma = np.array([x_column]).T, np.array([dy_column]).T, np.array([gamma_0])
    impl = StrictAccuracy(AtScale(x=sx, dy=sdy, gamma=sg))
    scaled = BatchCase(
        np.ldexp(x, -sx), np.ldexp(gamma, -sg), np.zeros(1), math.ldexp(eps, -2 * sx), 1, "float64"
    )
    measured = check_backward(impl, BackwardCase(scaled, np.ldexp(dy, -sdy)))
    assert_within_the_derived_bounds(measured, teeth=("dx",))
    out = batch_norm_backward(dy, x, gamma, eps=eps)
    assert np.isfinite(out.dx).all()


def test_the_graph_raises_where_its_node_dy_times_gamma_overflows() -> None:
    # The graph forms dy * gamma (1e10 * 1e300) as a node of its own: beyond float64, where the
    # closed form above computes dx. Its inf meets x - mu = 0 (inf * 0, NaN) on the way: no
    # RuntimeWarning escapes, the ValueError names dy and gamma.
    x_column, dy_column, gamma_0, eps, _ = INTERMEDIATE_OVERFLOWS["dy * gamma"]
    x, dy, gamma = np.array([x_column]).T, np.array([dy_column]).T, np.array([gamma_0])
    with pytest.raises(
        ValueError,
        match=r"^dy and gamma must be small enough that dx is within float64 \(at most "
        r"1\.8e308\), got a non-finite dx in channel 0, where max\|dy\| = 1e\+10 and "
        r"gamma = 1e\+300$",
    ):
        batch_norm_backward_graph(dy, x, gamma, eps=eps)


# --- Inference where a step leaves float64: y exactly, or a ValueError ---------------------------

# One channel's (x, gamma, beta, running_mean, running_var, eps) and its exact y, where the plain
# gamma / sqrt(running_var + eps) * (x - running_mean) + beta leaves float64 on the way: every
# value a power of two times a small integer, so y is exact.
INFERENCE_STEPS_OUT_OF_RANGE = {
    # gamma / sqrt(2**-1074) = 1e300 * 2**537 overflows; inf * 0 was NaN
    "the ratio overflows, x = running_mean": (0.5, 1e300, 3.0, 0.5, 0.0, 2.0**-1074, 3.0),
    "the ratio overflows": (2.0**-600, 1e300, 0.0, 0.0, 0.0, 2.0**-1074, math.ldexp(1e300, -63)),
    # the ratio 1.5 * 2**1536 times a subnormal x - running_mean: 3 * 2**-1074
    "the ratio overflows, x - running_mean is subnormal": (
        3.0 * 2.0**-1074,
        1.5 * 2.0**999,
        0.0,
        0.0,
        0.0,
        2.0**-1074,
        9.0 * 2.0**461,
    ),
    # gamma = 1.5 * 2**469 is below sqrt(eps) * 2**1006 = 2**469 * 2: the ratio 1.5 * 2**1006
    # overflows though gamma's exponent plus sqrt(eps)'s is negative; y = 9 * 2**-69
    "the ratio overflows from a gamma below 2**470, x - running_mean is subnormal": (
        3.0 * 2.0**-1074,
        1.5 * 2.0**469,
        0.0,
        0.0,
        0.0,
        2.0**-1074,
        9.0 * 2.0**-69,
    ),
    # gamma / sqrt(running_var) = 2**-1100 underflows to 0, x - running_mean = 2**1000: y was beta
    "the ratio underflows": (
        2.0**1000,
        2.0**-1000,
        2.0**-101,
        0.0,
        2.0**200,
        2.0**-1074,
        1.5 * 2.0**-100,
    ),
    # running_var + eps = 2**1024: sqrt(inf) gave y = beta
    "running_var + eps overflows": (2.0**600, 3.0, 0.0, 0.0, 2.0**1023, 2.0**1023, 3.0 * 2.0**88),
    # gamma * (x - running_mean) = 2.25 * 2**1023 is beyond float64, y with beta = -2**1023 is not
    "the product overflows, y does not": (
        2.0**1023,
        1.5,
        -(2.0**1023),
        -(2.0**1022),
        0.0,
        1.0,
        1.25 * 2.0**1023,
    ),
}


@pytest.mark.parametrize(
    "values", INFERENCE_STEPS_OUT_OF_RANGE.values(), ids=INFERENCE_STEPS_OUT_OF_RANGE.keys()
)
def test_inference_where_a_step_leaves_float64(
    values: tuple[float, float, float, float, float, float, float],
) -> None:
    # The channel gives its exact y (at x = running_mean: beta); an ordinary channel beside it
    # gives the plain formula's values bit for bit.
    x0, gamma0, beta0, rm0, rv0, eps, want = values
    x = np.array([[x0, 3.0], [rm0, -1.0]])
    gamma, beta = np.array([gamma0, 2.0]), np.array([beta0, 0.5])
    rm, rv = np.array([rm0, 1.0]), np.array([rv0, 3.0])
    y = batch_norm_inference(x, gamma, beta, rm, rv, eps=eps)
    np.testing.assert_array_equal(y[:, 0], [want, beta0], strict=True)
    plain = 2.0 / np.sqrt(3.0 + eps) * (x[:, 1] - 1.0) + 0.5
    np.testing.assert_array_equal(y[:, 1], plain, strict=True)


INFERENCE_BEYOND_FLOAT64 = {
    "the product": (
        (1.5, 1e300, 3.0, 0.5, 0.0, 2.0**-1074),
        "got y = inf at x[0, 0] = 1.5, where gamma = 1e+300, running_mean = 0.5, "
        "running_var = 0, eps = 4.94e-324 and beta = 3",
    ),
    "the sum with beta": (
        (2.0**1023, 1.0, 2.0**1023, 0.0, 0.0, 1.0),
        "got y = inf at x[0, 0] = 8.99e+307, where gamma = 1, running_mean = 0, "
        "running_var = 0, eps = 1 and beta = 8.99e+307",
    ),
    "below -1.8e308": (
        (-(2.0**1000), 2.0**600, 0.0, 0.0, 2.0**-1000, 2.0**-1000),
        "got y = -inf at x[0, 0] = -1.07e+301, where gamma = 4.15e+180, running_mean = 0, "
        "running_var = 9.33e-302, eps = 9.33e-302 and beta = 0",
    ),
}


@pytest.mark.parametrize(
    "values", INFERENCE_BEYOND_FLOAT64.values(), ids=INFERENCE_BEYOND_FLOAT64.keys()
)
def test_an_inference_y_beyond_float64_is_a_value_error(
    values: tuple[tuple[float, float, float, float, float, float], str],
) -> None:
    (x0, gamma0, beta0, rm0, rv0, eps), where = values
    x = np.array([[x0, 1.0], [rm0, 2.0]])
    arguments = ([gamma0, 1.0], [beta0, 0.0], [rm0, 0.0], [rv0, 1.0])
    message = (
        "gamma, x and running_var must give y = gamma * (x - running_mean) / "
        "sqrt(running_var + eps) + beta within float64 (at most 1.8e308), " + where
    )
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        batch_norm_inference(x, *map(np.array, arguments), eps=eps)


def test_an_inference_y_at_the_edge_of_the_band_is_the_plain_formula() -> None:
    """gamma / sqrt(running_var + eps) just above 2**-1000, its exponents 1000 apart: y is
    the plain formula's bit for bit, as promised inside the band (a product rounded once to a
    subnormal, not scaled and rounded twice, which differs here by one subnormal ulp)."""
    x, rm = np.array([[1.8807909614559864e-37]]), np.array([-1.1920928955078128e-07])
    rv, gamma, beta = (
        np.array([2.532663311168619e176]),
        np.array([1.485227786447805e-213]),
        np.zeros(1),
    )
    ratio = gamma / np.sqrt(rv + 5e-324)
    assert 2.0**-1000 < ratio[0] < 2.0**-999
    want = ratio * (x - rm) + beta
    got = batch_norm_inference(x, gamma, beta, rm, rv, eps=5e-324)
    assert got[0, 0].hex() == want[0, 0].hex() == "0x0.800000005e6a5p-1022"


def test_an_inference_y_beyond_float64_is_named_where_it_is() -> None:
    # Channel 0 is ordinary; in channel 1, x = running_mean gives y = beta in row 0, and row 1
    # overflows: the message names x[1, 1] and its channel's arguments.
    x = np.array([[1.0, 0.5], [2.0, 1.5]])
    message = (
        "gamma, x and running_var must give y = gamma * (x - running_mean) / "
        "sqrt(running_var + eps) + beta within float64 (at most 1.8e308), got y = inf at "
        "x[1, 1] = 1.5, where gamma = 1e+300, running_mean = 0.5, running_var = 0, "
        "eps = 4.94e-324 and beta = 3"
    )
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        batch_norm_inference(
            x,
            np.array([1.0, 1e300]),
            np.array([0.0, 3.0]),
            np.array([0.0, 0.5]),
            np.array([1.0, 0.0]),
            eps=2.0**-1074,
        )


def test_infinite_x_and_beta_of_one_sign_propagate_without_a_warning() -> None:
    # As in the plain formula: gamma / sqrt(running_var + eps) * (inf - 0) + inf is inf, with
    # no "invalid value" RuntimeWarning on the way (check_finite=False lets them in).
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        y = batch_norm_inference(
            np.array([[np.inf, -np.inf]]),
            np.ones(2),
            np.array([np.inf, -np.inf]),
            np.zeros(2),
            np.ones(2),
            check_finite=False,
        )
    np.testing.assert_array_equal(y, [[np.inf, -np.inf]])


# (x, gamma, beta, running_mean, running_var, eps) of one channel whose ratio
# gamma / sqrt(running_var + eps) is ordinary (between 2**-1000 and 2**1000), where
# x - running_mean is not: y is the plain formula's, bit for bit.
INFERENCE_ORDINARY_RATIO = {
    # ratio 2.1: no step may scale the ratio up, 1e200 * 2**501 is not a float64
    "x - running_mean = 2e200": (1e200, 3.0, 0.5, -1e200, 2.0, 1e-5),
    # a subnormal product, 2.99998 * 2**-1074 rounded once to 3 * 2**-1074
    "subnormal x - running_mean": (3.0 * 2.0**-1074, 1.0, 0.0, 0.0, 1.0, 1e-5),
    # x and running_mean near 2000 are subtracted as they are (halves only from 2**1000 on):
    # the product 2**-1032 + 2**-1074, an odd multiple of 2**-1074, is exact
    "subnormal product of values near 2000": (
        2000.0 + 2.0**-42,
        2.0**-990 + 2.0**-1032,
        0.0,
        2000.0,
        0.75,
        0.25,
    ),
}


@pytest.mark.parametrize(
    "values", INFERENCE_ORDINARY_RATIO.values(), ids=INFERENCE_ORDINARY_RATIO.keys()
)
def test_inference_with_an_ordinary_ratio_is_the_plain_formula(
    values: tuple[float, float, float, float, float, float],
) -> None:
    x, gamma, beta, rm, rv = (np.array([v]) for v in values[:5])
    eps = values[5]
    y = batch_norm_inference(x.reshape(1, 1), gamma, beta, rm, rv, eps=eps)
    plain = gamma / np.sqrt(rv + eps) * (x - rm) + beta
    np.testing.assert_array_equal(y[0], plain, strict=True)


def test_an_inference_y_beyond_float64_propagates_beside_a_nan() -> None:
    # With a NaN among the arguments (check_finite=False) nothing is checked: inf comes back.
    x = np.array([[1.5, np.nan]])
    y = batch_norm_inference(
        x,
        np.array([1e300, 1.0]),
        np.zeros(2),
        np.array([0.5, 0.0]),
        np.zeros(2),
        eps=2.0**-1074,
        check_finite=False,
    )
    np.testing.assert_array_equal(y, [[np.inf, np.nan]])


@st.composite
def _running_statistics(draw: st.DrawFn, channels: int) -> tuple[np.ndarray, np.ndarray]:
    """running_mean and running_var (>= 0, zero included) for `channels` channels."""
    mean = draw(st.lists(st.floats(-1e3, 1e3), min_size=channels, max_size=channels))
    var = st.one_of(st.just(0.0), st.floats(1e-6, 1e3))
    return np.array(mean), np.array(draw(st.lists(var, min_size=channels, max_size=channels)))


@given(batch_cases(dtypes=("float64",), min_count=1), st.data())
def test_inference_scales_exactly_with_powers_of_two(case: BatchCase, data: st.DataObject) -> None:
    # y of (x, running_mean) * 2**j, (running_var, eps) * 4**j and (gamma, beta) * 2**i is
    # y * 2**i bit for bit, for every j and i that keep those values, x - running_mean,
    # running_var + eps, y and the product gamma / sqrt(running_var + eps) * (x - running_mean)
    # normal (or 0), whichever step would leave float64 on the way: the ratio gamma /
    # sqrt(running_var + eps), scaled by 2**(i - j), the product and x - running_mean may pass
    # 1.8e308, running_var + eps too.
    rm, rv = data.draw(_running_statistics(case.gamma.size), label="running statistics")
    shape = tuple(-1 if a == case.axis % case.x.ndim else 1 for a in range(case.x.ndim))
    args = (case.gamma, case.beta, rm, rv)
    y = batch_norm_inference(case.x, *args, eps=case.eps, axis=case.axis)
    d = case.x - rm.reshape(shape)
    product = (case.gamma / np.sqrt(rv + case.eps)).reshape(shape) * d
    eps = np.array([case.eps])
    by_j = [(case.x, 1), (rm, 1), (rv, 2), (eps, 2)]  # and d, rv + eps: not past 2**1025
    by_i = [(case.gamma, 1), (case.beta, 1), (y, 1)]  # and the product: not past 2**1025
    low_j = max(_exponent_range(v, p)[0] for v, p in [*by_j, (d, 1), (rv + eps, 2)])
    high_j = min(_exponent_range(v, p)[1] for v, p in by_j)
    low_i = max(_exponent_range(v, p)[0] for v, p in [*by_i, (product, 1)])
    high_i = min(_exponent_range(v, p)[1] for v, p in by_i)
    assume(low_j <= 0 <= high_j and low_i <= 0 <= high_i)  # the unscaled values are normal
    j = data.draw(st.sampled_from([low_j, high_j]) | st.integers(low_j, high_j), label="j")
    # i - j the furthest from 0 scales the ratio gamma / sqrt(running_var + eps) past 2**+-1000
    far = high_i if j <= 0 else low_i
    i = data.draw(st.just(far) | st.integers(low_i, high_i), label="i")
    scaled = batch_norm_inference(
        np.ldexp(case.x, j),
        np.ldexp(case.gamma, i),
        np.ldexp(case.beta, i),
        np.ldexp(rm, j),
        np.ldexp(rv, 2 * j),
        eps=math.ldexp(case.eps, 2 * j),
        axis=case.axis,
    )
    np.testing.assert_array_equal(scaled, np.ldexp(y, i), strict=True)
