"""Hand-checked values of the core, and the graph backward equals the closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given

from properties.strategies import BatchCase, batch_cases
from properties.tolerances import U64
from reference import (
    batch_norm_backward,
    batch_norm_backward_graph,
    batch_norm_forward,
    batch_norm_inference,
    identity_params,
)


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


@given(batch_cases(dtypes=("float64",), max_condition=1e4))
def test_graph_backward_equals_closed_form(case: BatchCase) -> None:
    """The node-by-node backward and the closed form compute the same gradient.

    Both add up the same O(n) terms in another order, and the graph version uses a plain
    (uncorrected) mean, whose error shifts x_hat by up to (n + 1) u kappa, kappa = max|x| / s.
    Each dx_i is gamma inv_std times a combination of dy_i, mean(dy) and x_hat_i mean(dy x_hat),
    so the two differ by at most (n + 10) u (1 + kappa) times gamma inv_std
    (|dy_i| + mean|dy| + (1 + |x_hat_i|) mean(|dy| (1 + |x_hat|))), doubled for the
    first-order expansion; dgamma = sum(dy x_hat) likewise with sum(|dy| (1 + |x_hat|)).
    """
    rng = np.random.default_rng(0)
    dy = rng.standard_normal(case.x.shape)
    closed = batch_norm_backward(dy, case.x, case.gamma, eps=case.eps, axis=case.axis)
    nodes = batch_norm_backward_graph(dy, case.x, case.gamma, eps=case.eps, axis=case.axis)
    fwd = batch_norm_forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    reduce = tuple(i for i in range(case.x.ndim) if i != fwd.axis)
    n = case.x.size // case.x.shape[fwd.axis]
    shape = [1] * case.x.ndim
    shape[fwd.axis] = -1

    def per_channel(v: np.ndarray) -> np.ndarray:
        return v.reshape(shape)

    kappa = np.max(np.abs(case.x), axis=reduce) * fwd.inv_std
    rel = 2 * (n + 10) * U64 * (1 + kappa)
    weight = np.abs(dy) * (1 + np.abs(fwd.x_hat))
    mean_abs_dy = np.mean(np.abs(dy), axis=reduce)
    tol_dx = per_channel(rel * np.abs(case.gamma) * fwd.inv_std) * (
        np.abs(dy)
        + per_channel(mean_abs_dy)
        + (1 + np.abs(fwd.x_hat)) * per_channel(np.mean(weight, axis=reduce))
    )
    assert np.all(np.abs(closed.dx - nodes.dx) <= tol_dx)
    np.testing.assert_array_equal(closed.dbeta, nodes.dbeta)  # the same np.sum both times
    tol_g = rel * np.sum(weight, axis=reduce)
    assert np.all(np.abs(closed.dgamma - nodes.dgamma) <= tol_g)


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
