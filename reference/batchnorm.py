"""Batch normalization: training forward, closed-form backward, inference, identity parameters.

Notation (Ioffe & Szegedy 2015, Algorithm 1), per channel c over the n values that share it::

    mean    = (1/n) * sum_i x_i
    var     = (1/n) * sum_i (x_i - mean)**2          (biased: divide by n, not n - 1)
    inv_std = 1 / sqrt(var + eps)                     (eps inside the square root)
    x_hat   = (x - mean) * inv_std
    y       = gamma * x_hat + beta

`axis` names the channel axis, which keeps its own statistics; every other axis is reduced.
`axis=1` is PyTorch/ONNX `(N, C, *spatial)`, `axis=-1` Keras/Flax channels-last, `axis=0` the
course notes' `(features, examples)` layout.

This module is the oracle: each formula above is one whole-array NumPy expression in float64,
so that it can be read against the paper. A faster evaluation of the same formulas lives in
`bnref.fast` and is audited against this one like any other implementation. Inputs of any real
dtype are converted to float64 and every result is float64 (a float32 implementation is compared
at that dtype's tolerance, `properties.tolerances`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference import float_range
from reference._validation import (
    Float64Array,
    as_float64_array,
    check_channel_vector,
    check_positive_scalar,
    check_same_shape,
    frozen,
    normalize_axis,
)

DEFAULT_EPS = 1e-5


@dataclass(frozen=True)
class BatchNormForward:
    """Result of `batch_norm_forward`; per-channel arrays have shape (C,), the rest x's shape."""

    y: Float64Array
    x_hat: Float64Array
    mean: Float64Array
    var: Float64Array
    inv_std: Float64Array
    axis: int
    eps: float


@dataclass(frozen=True)
class BatchNormBackward:
    """Gradients of a scalar loss L given dy = dL/dy: dx has x's shape, dgamma/dbeta (C,)."""

    dx: Float64Array
    dgamma: Float64Array
    dbeta: Float64Array


@dataclass(frozen=True)
class IdentityParams:
    """The gamma and beta for which batch norm returns its input: y == x."""

    gamma: Float64Array
    beta: Float64Array


@dataclass(frozen=True)
class ChannelLayout:
    """Where the channel axis is and how per-channel vectors broadcast against x."""

    axis: int
    reduce_axes: tuple[int, ...]
    channels: int
    count: int  # values per channel, n
    broadcast_shape: tuple[int, ...]

    def expand(self, vector: Float64Array) -> Float64Array:
        """Reshape a (C,) vector so that it broadcasts along the channel axis of x."""
        return vector.reshape(self.broadcast_shape)

    def mean(self, values: Float64Array) -> Float64Array:
        """Per channel, ``(1/n) * sum(values)`` over every axis but the channel axis."""
        result: Float64Array = np.mean(values, axis=self.reduce_axes)
        return result

    def sum(self, values: Float64Array) -> Float64Array:
        """Per channel, ``sum(values)`` over every axis but the channel axis."""
        result: Float64Array = np.sum(values, axis=self.reduce_axes)
        return result


def channel_layout(x: NDArray[Any], axis: object, *, name: str = "x") -> ChannelLayout:
    """Validate `axis` against `x` and describe the per-channel reduction."""
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension, got a 0-d array")
    ax = normalize_axis(axis, x.ndim)
    channels = x.shape[ax]
    count = x.size // channels if channels else 0
    broadcast = tuple(channels if i == ax else 1 for i in range(x.ndim))
    reduce_axes = tuple(i for i in range(x.ndim) if i != ax)
    return ChannelLayout(ax, reduce_axes, channels, count, broadcast)


def training_layout(x: NDArray[Any], axis: object) -> ChannelLayout:
    """`channel_layout`, after checking that every channel has the 2 values a variance needs."""
    layout = channel_layout(x, axis)
    if x.size == 0:
        raise ValueError(
            f"x must not be empty (an empty batch has no statistics), got shape {x.shape}"
        )
    if layout.count < 2:
        raise ValueError(
            "x must have at least 2 values per channel in training mode (the variance of one "
            f"value is 0 and carries no information), got {layout.count} for shape {x.shape} "
            f"with channel axis {layout.axis}"
        )
    return layout


Statistics = tuple[Float64Array, Float64Array, Float64Array, Float64Array]


def batch_statistics(x: Float64Array, layout: ChannelLayout, eps: float) -> Statistics:
    """Per channel ``mean``, biased ``var``, ``inv_std = 1/sqrt(var + eps)`` (shape (C,)), and
    ``x_hat = (x - mean) * inv_std`` (x's shape); accurate for |mean|/std up to about 1e8.

    The corrected two-pass algorithm: ``m0 = mean(x)`` carries an error of order n*u*|mean|;
    the mean of the residuals ``x - m0`` (small when |mean| >> std) recovers it, so the
    deviations ``x - mean`` are as accurate as x itself. Then ``var = mean((x - mean)**2)``
    (the one-pass E[x**2] - E[x]**2 cancels catastrophically and is never used).

    Near 1.8e308 a sum or square overflows where the results exist (x = +-1e154: var = 1e308,
    x_hat = +-1), and below 2**-479 squares underflow: a channel reaching 2**480, or spreading
    less than 2**-479, is computed as x * 2**-k with eps * 4**-k, exactly, and scaled back
    (`reference.float_range`; k = 0 elsewhere). var is inf where float64 cannot hold it."""
    k = float_range.statistics_exponents(x, layout.reduce_axes, eps)
    xs = np.ldexp(x, -k.reshape(layout.broadcast_shape))  # x * 2**-k; x itself where k = 0
    m0 = layout.mean(xs)
    mean = m0 + layout.mean(xs - layout.expand(m0))
    centered = xs - layout.expand(mean)
    var = layout.mean(centered * centered)
    k_var = np.where(var > 0, k, np.minimum(k, 0))  # var = 0 scaled down: eps * 4**-k may be 0
    inv_std = 1.0 / np.sqrt(var + np.ldexp(eps, -2 * k_var))
    x_hat = centered * layout.expand(inv_std)
    with np.errstate(over="ignore"):  # var beyond float64: inf, reported by the forward
        var_x = np.ldexp(var, 2 * k)
    return np.ldexp(mean, k), var_x, np.ldexp(inv_std, -k_var), x_hat


class BackwardArguments(NamedTuple):
    """The validated arguments of a backward pass, in float64."""

    dy: Float64Array
    x: Float64Array
    gamma: Float64Array
    eps: float
    layout: ChannelLayout


def backward_arguments(
    dy: ArrayLike, x: ArrayLike, gamma: ArrayLike, *, eps: object, axis: object, check_finite: bool
) -> BackwardArguments:
    """Validate the arguments shared by the closed-form and the graph backward."""
    eps_ = check_positive_scalar(eps, "eps")
    x64 = as_float64_array(x, "x", check_finite=check_finite)
    layout = training_layout(x64, axis)
    dy64 = as_float64_array(dy, "dy", check_finite=check_finite)
    check_same_shape(dy64, "dy", x64.shape, "x")
    g = check_channel_vector(gamma, "gamma", layout.channels, check_finite=check_finite)
    return BackwardArguments(dy64, x64, g, eps_, layout)


def batch_norm_forward(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
    check_finite: bool = True,
) -> BatchNormForward:
    """Training-mode batch normalization over every axis but `axis`.

    Computes, per channel, ``mean = sum(x)/n``, ``var = sum((x-mean)**2)/n`` (biased),
    ``inv_std = 1/sqrt(var+eps)``, ``x_hat = (x-mean)*inv_std`` and
    ``y = gamma*x_hat + beta``. gamma and beta have shape (C,) with C = x.shape[axis].
    Raises ValueError for an empty batch, fewer than 2 values per channel, eps <= 0,
    an axis out of range, wrongly shaped parameters, non-finite input (unless
    ``check_finite=False``) or a variance beyond float64; TypeError for non-real dtypes.
    """
    eps_ = check_positive_scalar(eps, "eps")
    x64 = as_float64_array(x, "x", check_finite=check_finite)
    layout = training_layout(x64, axis)
    g = check_channel_vector(gamma, "gamma", layout.channels, check_finite=check_finite)
    b = check_channel_vector(beta, "beta", layout.channels, check_finite=check_finite)

    mean, var, inv_std, x_hat = batch_statistics(x64, layout, eps_)
    float_range.check_variance_fits(var, inv_std)  # var is a result: ValueError if inf
    y = layout.expand(g) * x_hat + layout.expand(b)
    return BatchNormForward(
        frozen(y), frozen(x_hat), frozen(mean), frozen(var), frozen(inv_std), layout.axis, eps_
    )


def batch_norm_backward(
    dy: ArrayLike,
    x: ArrayLike,
    gamma: ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
    check_finite: bool = True,
) -> BatchNormBackward:
    """Closed-form gradients of training-mode batch norm, given the upstream gradient dy.

    With x_hat and inv_std recomputed from x as in `batch_norm_forward`, per channel::

        dbeta  = sum(dy)
        dgamma = sum(dy * x_hat)
        dx     = gamma * inv_std / n * (n * dy - dbeta - x_hat * dgamma)

    The derivation from the computation graph is in docs/backward.md; the node-by-node version
    is `reference.batchnorm_graph.batch_norm_backward_graph`. From finite arguments, a gradient
    beyond float64 is a ValueError (`reference.float_range.check_gradients_fit`).
    """
    dy64, x64, g, eps_, layout = backward_arguments(
        dy, x, gamma, eps=eps, axis=axis, check_finite=check_finite
    )
    _, _, inv_std, x_hat = batch_statistics(x64, layout, eps_)
    # Exactly dy = dys 2**j (per channel, |dys| < 1), gamma = gs 2**i, inv_std = s 2**m: no overflow
    j = np.frexp(np.max(np.abs(dy64), axis=layout.reduce_axes))[1]
    dys, (gs, i), (s, m) = np.ldexp(dy64, -layout.expand(j)), np.frexp(g), np.frexp(inv_std)
    dbeta, dgamma, n = layout.sum(dys), layout.sum(dys * x_hat), layout.count
    # The three terms: the direct path, the path through the mean, the path through the variance.
    dx = layout.expand(gs * s / n) * (
        n * dys - layout.expand(dbeta) - x_hat * layout.expand(dgamma)
    )
    with np.errstate(over="ignore"):  # a gradient beyond float64: ValueError below
        grads = np.ldexp(dx, layout.expand(i + j + m)), np.ldexp(dgamma, j), np.ldexp(dbeta, j)
    float_range.check_gradients_fit(grads, dy64, x64, g, layout.axis)
    return BatchNormBackward(*(frozen(v) for v in grads))


def batch_norm_inference(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    running_mean: ArrayLike,
    running_var: ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
    check_finite: bool = True,
) -> Float64Array:
    """Inference-mode batch norm with fixed statistics.

    ``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta``, per channel. Unlike
    training mode any batch size is accepted, including a single example or an empty batch.
    running_var must be >= 0 (a negative variance would give NaN). No step overflows where y
    is a float64, and a y beyond float64 is a ValueError (`reference.float_range.inference_y`).
    """
    eps_ = check_positive_scalar(eps, "eps")
    x64 = as_float64_array(x, "x", check_finite=check_finite)
    layout = channel_layout(x64, axis)
    c = layout.channels
    g = check_channel_vector(gamma, "gamma", c, check_finite=check_finite)
    b = check_channel_vector(beta, "beta", c, check_finite=check_finite)
    rm = check_channel_vector(running_mean, "running_mean", c, check_finite=check_finite)
    rv = check_channel_vector(running_var, "running_var", c, check_finite=check_finite)
    if np.any(rv < 0):
        raise ValueError(
            f"running_var must be >= 0 in every channel, got {float(rv[rv < 0][0])!r} at "
            f"channel {int(np.argmax(rv < 0))}"
        )
    # y = gamma / sqrt(running_var + eps) * (x - running_mean) + beta
    y = float_range.inference_y(x64, *map(layout.expand, (rm, rv, g, b)), eps=eps_)
    return frozen(y)


def identity_params(mean: ArrayLike, var: ArrayLike, eps: float = DEFAULT_EPS) -> IdentityParams:
    """The gamma and beta that undo the normalization: ``gamma = sqrt(var + eps)``, ``beta = mean``.

    With these, ``gamma * (x - mean) / sqrt(var + eps) + beta == x`` (the course notes' remark
    that batch norm can learn the identity).
    """
    eps_ = check_positive_scalar(eps, "eps")
    m = as_float64_array(mean, "mean")
    v = as_float64_array(var, "var")
    check_same_shape(v, "var", m.shape, "mean")
    if np.any(v < 0):
        raise ValueError(f"var must be >= 0, got a minimum of {float(v.min())!r}")
    return IdentityParams(gamma=frozen(np.sqrt(v + eps_)), beta=frozen(m.copy()))
