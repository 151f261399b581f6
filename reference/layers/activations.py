"""Element-wise activations: ReLU and the logistic sigmoid, each with its backward pass.

ReLU: ``y = max(x, 0)``, ``dx = dy * [x > 0]``: the derivative at 0 is taken as 0, as PyTorch's
threshold backward and DLFS's ``Relu`` (mask ``x <= 0``) do.

Sigmoid: ``y = 1 / (1 + exp(-x))``, the course's formula (opt_utils_v1a.py ``sigmoid``), so the
course network is reproduced bit for bit. exp(-x) overflows to inf only for x < -709.78, where
1/(1+inf) = 0 is within 2**-1022 of the true value, so the overflow is silenced rather than
avoided. The derivative is ``dx = dy * sigmoid(x) * sigmoid(-x)``: ``sigmoid(-x)`` equals
``1 - sigmoid(x)`` but keeps its relative accuracy where sigmoid(x) rounds to 1 (DLFS's
``dout * (1 - y) * y`` loses every digit there).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference._validation import Float64Array, as_float64_array, check_same_shape, frozen


class ReluCache(NamedTuple):
    """Where x > 0 (the examples that pass the gradient)."""

    positive: NDArray[np.bool_]


class SigmoidCache(NamedTuple):
    """sigmoid(x) and sigmoid(-x), both accurate to a few units of roundoff."""

    y: Float64Array
    y_neg: Float64Array


class ActivationGrads(NamedTuple):
    """dL/dx, x's shape."""

    dx: Float64Array


def relu_forward(x: ArrayLike) -> tuple[Float64Array, ReluCache]:
    """``y = max(x, 0)`` element-wise; returns (y, cache)."""
    x64 = as_float64_array(x, "x")
    positive = x64 > 0
    positive.flags.writeable = False
    return frozen(np.where(positive, x64, 0.0)), ReluCache(positive)


def relu_backward(dout: ArrayLike, cache: ReluCache) -> ActivationGrads:
    """``dx = dout * [x > 0]`` (0 where x <= 0)."""
    dy = as_float64_array(dout, "dout")
    check_same_shape(dy, "dout", cache.positive.shape, "the layer's output")
    return ActivationGrads(frozen(np.where(cache.positive, dy, 0.0)))


def sigmoid(x: ArrayLike) -> Float64Array:
    """``1 / (1 + exp(-x))`` element-wise (exp overflow to inf gives the limit 0)."""
    x64 = as_float64_array(x, "x")
    with np.errstate(over="ignore"):
        y: Float64Array = 1 / (1 + np.exp(-x64))
    return y


def sigmoid_forward(x: ArrayLike) -> tuple[Float64Array, SigmoidCache]:
    """``y = 1 / (1 + exp(-x))`` element-wise; the cache also keeps sigmoid(-x)."""
    x64 = as_float64_array(x, "x")
    y, y_neg = sigmoid(x64), sigmoid(-x64)
    return frozen(y), SigmoidCache(frozen(y.copy()), frozen(y_neg))


def sigmoid_backward(dout: ArrayLike, cache: SigmoidCache) -> ActivationGrads:
    """``dx = dout * sigmoid(x) * sigmoid(-x)`` (= dout * y * (1 - y))."""
    dy = as_float64_array(dout, "dout")
    check_same_shape(dy, "dout", cache.y.shape, "the layer's output")
    return ActivationGrads(frozen(dy * (cache.y * cache.y_neg)))
