"""The straightforward batch norm, kept as the oracle of the fast path in `reference.batchnorm`.

This is the textbook evaluation of the same formulas, one whole-array NumPy expression per
step (it was `reference.batchnorm` before the fast path, issue 6). It is used only by the tests,
which check that the fast version agrees with it to rounding (tests/test_fast_path.py).
Per channel over the n values that share it::

    m0      = (1/n) * sum(x)
    mean    = m0 + (1/n) * sum(x - m0)       (corrected two-pass mean)
    var     = (1/n) * sum((x - mean)**2)
    inv_std = 1 / sqrt(var + eps)
    x_hat   = (x - mean) * inv_std,  y = gamma * x_hat + beta
    dbeta   = sum(dy),  dgamma = sum(dy * x_hat)
    dx      = gamma * inv_std / n * (n * dy - dbeta - x_hat * dgamma)

and in inference mode, with fixed statistics::

    y       = gamma / sqrt(running_var + eps) * (x - running_mean) + beta
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from reference._validation import (
    Float64Array,
    as_float64_array,
    check_channel_vector,
    check_positive_scalar,
)
from reference.batchnorm import (
    DEFAULT_EPS,
    BatchNormBackward,
    BatchNormForward,
    ChannelLayout,
    backward_arguments,
    channel_layout,
    training_layout,
)


def _channel_mean(values: Float64Array, layout: ChannelLayout) -> Float64Array:
    mean: Float64Array = np.mean(values, axis=layout.reduce_axes)
    return mean


def plain_statistics(x: Float64Array, layout: ChannelLayout) -> tuple[Float64Array, Float64Array]:
    """Per-channel mean (corrected two-pass) and biased variance, whole-array expressions."""
    m0 = _channel_mean(x, layout)
    mean = m0 + _channel_mean(x - layout.expand(m0), layout)
    centered = x - layout.expand(mean)
    var = _channel_mean(centered * centered, layout)
    return mean, var


def plain_forward(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
    check_finite: bool = True,
) -> BatchNormForward:
    """Training-mode forward: mean, var, inv_std, x_hat and y as in the module docstring."""
    eps_ = check_positive_scalar(eps, "eps")
    x64 = as_float64_array(x, "x", check_finite=check_finite)
    layout = training_layout(x64, axis)
    g = check_channel_vector(gamma, "gamma", layout.channels, check_finite=check_finite)
    b = check_channel_vector(beta, "beta", layout.channels, check_finite=check_finite)

    mean, var = plain_statistics(x64, layout)
    inv_std = 1.0 / np.sqrt(var + eps_)
    x_hat = (x64 - layout.expand(mean)) * layout.expand(inv_std)
    y = layout.expand(g) * x_hat + layout.expand(b)
    return BatchNormForward(y, x_hat, mean, var, inv_std, layout.axis, eps_)


def plain_backward(
    dy: ArrayLike,
    x: ArrayLike,
    gamma: ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
    check_finite: bool = True,
) -> BatchNormBackward:
    """Closed-form backward: dbeta, dgamma and dx as in the module docstring."""
    dy64, x64, g, eps_, layout = backward_arguments(
        dy, x, gamma, eps=eps, axis=axis, check_finite=check_finite
    )
    mean, var = plain_statistics(x64, layout)
    inv_std = 1.0 / np.sqrt(var + eps_)
    x_hat = (x64 - layout.expand(mean)) * layout.expand(inv_std)

    dbeta = np.sum(dy64, axis=layout.reduce_axes)
    dgamma = np.sum(dy64 * x_hat, axis=layout.reduce_axes)
    n = layout.count
    dx = layout.expand(g * inv_std / n) * (
        n * dy64 - layout.expand(dbeta) - x_hat * layout.expand(dgamma)
    )
    return BatchNormBackward(dx=dx, dgamma=dgamma, dbeta=dbeta)


def plain_inference(
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
    """Inference mode: y as in the module docstring; running_var must be >= 0."""
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
            f"running_var must be >= 0 in every channel, got "
            f"{float(rv[rv < 0][0])!r} at channel "
            f"{int(np.argmax(rv < 0))}"
        )
    scale = g / np.sqrt(rv + eps_)
    y: Float64Array = layout.expand(scale) * (x64 - layout.expand(rm)) + layout.expand(b)
    return y
