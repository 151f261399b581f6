"""The affine (dense) layer and its weight initialisations.

W has shape (out, in) in both layouts -- PyTorch's ``nn.Linear.weight`` and the course notes'
``W[l]`` of shape (n[l], n[l-1]) -- and b has shape (out,). ``feature_axis`` says where the
features of x are (the other axis holds the N examples)::

    feature_axis=1:  x (N, in) -> y (N, out),  y = x W^T + b        (PyTorch, DLFS)
    feature_axis=0:  x (in, N) -> y (out, N),  y = W x + b[:, None]  (the course, Z = W A + b)

Backward, for dy = dL/dy::

    feature_axis=1:  dx = dy W,    dW = dy^T x,  db = sum over examples of dy
    feature_axis=0:  dx = W^T dy,  dW = dy x^T,  db = sum over examples of dy

The products use ``np.dot`` in exactly the course's order (``np.dot(W, A)``, ``np.dot(dZ, A.T)``,
``np.sum(dZ, axis=1)``, ``np.dot(W.T, dZ)``; course notes, opt_utils_v1a.py, e.g.
nguyenlinhvn512/Optimization-Methods: opt_utils_v1a.py), so the course's network is reproduced
bit for bit. When batch norm follows, the layer has no bias (b=None): batch norm subtracts the
mean, which removes any constant b (the course notes' point that b is redundant).

Initialisations draw ``W = std * N(0, 1)`` of shape (out, in) from a numpy Generator::

    "he"      std = sqrt(2 / fan_in)              He et al. 2015; DLFS 'relu'/'he'
    "xavier"  std = sqrt(1 / fan_in)              DLFS 'sigmoid'/'xavier' and the course notes
    "glorot"  std = sqrt(2 / (fan_in + fan_out))  Glorot & Bengio 2010; torch.nn.init.xavier_normal_
    a float   std = that number                   DLFS weight_init_std=0.01

(DLFS: oreilly-japan/deep-learning-from-scratch, common/multi_layer_net_extend.py, __init_weight;
PyTorch: pytorch/pytorch, torch/nn/init.py, xavier_normal_: std = gain*sqrt(2/(fan_in+fan_out)).)
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from reference._validation import (
    Float64Array,
    as_float64_array,
    check_int,
    check_positive_scalar,
    check_same_shape,
    frozen,
    normalize_axis,
)

InitMethod = Literal["he", "xavier", "glorot"]
INIT_METHODS: tuple[InitMethod, ...] = ("he", "xavier", "glorot")


def init_std(method: InitMethod | float, fan_in: int, fan_out: int) -> float:
    """The standard deviation of `method`: sqrt(2/fan_in), sqrt(1/fan_in), sqrt(2/(in+out)),
    or the given positive float itself."""
    n_in = check_int(fan_in, "fan_in", minimum=1)
    n_out = check_int(fan_out, "fan_out", minimum=1)
    if isinstance(method, str):
        if method == "he":
            return math.sqrt(2.0 / n_in)
        if method == "xavier":
            return math.sqrt(1.0 / n_in)
        if method == "glorot":
            return math.sqrt(2.0 / (n_in + n_out))
        raise ValueError(
            f"weight_init must be one of {list(INIT_METHODS)} or a positive standard deviation, "
            f"got {method!r}"
        )
    return check_positive_scalar(method, "weight_init")


def init_weight(
    method: InitMethod | float, fan_in: int, fan_out: int, rng: np.random.Generator
) -> Float64Array:
    """``W = init_std(method, fan_in, fan_out) * rng.standard_normal((fan_out, fan_in))``."""
    std = init_std(method, fan_in, fan_out)
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    return frozen(std * rng.standard_normal((fan_out, fan_in)))


class AffineCache(NamedTuple):
    """What the backward pass needs: a private copy of x, W, whether there is a bias, the axis."""

    x: Float64Array
    W: Float64Array
    has_bias: bool
    feature_axis: int


class AffineGrads(NamedTuple):
    """dL/dx (x's shape), dL/dW (out, in) and dL/db (out,), or None when there is no bias."""

    dx: Float64Array
    dW: Float64Array  # noqa: N815 -- the course's and DLFS's name for dL/dW
    db: Float64Array | None


def affine_forward(
    x: ArrayLike, W: ArrayLike, b: ArrayLike | None = None, *, feature_axis: int = 1
) -> tuple[Float64Array, AffineCache]:
    """``y = x W^T + b`` (feature_axis=1, x (N, in)) or ``y = W x + b`` (feature_axis=0,
    x (in, N)); W (out, in), b (out,) or None for no bias. Returns (y, cache)."""
    axis = normalize_axis(feature_axis, 2, "feature_axis")
    x64 = as_float64_array(x, "x")
    w64 = as_float64_array(W, "W")
    if x64.ndim != 2:
        raise ValueError(f"x must be a 2-D array (examples and features), got shape {x64.shape}")
    if w64.ndim != 2 or w64.shape[1] != x64.shape[axis]:
        raise ValueError(
            f"W must have shape (out, {x64.shape[axis]}) to match x's {x64.shape[axis]} "
            f"features along feature_axis={axis}, got shape {w64.shape}"
        )
    y = np.dot(x64, w64.T) if axis == 1 else np.dot(w64, x64)
    if b is not None:
        b64 = as_float64_array(b, "b")
        check_same_shape(b64, "b", (w64.shape[0],), "W's rows (out,)")
        y = y + (b64 if axis == 1 else b64[:, None])
    cache = AffineCache(frozen(x64.copy()), frozen(w64.copy()), b is not None, axis)
    return frozen(y), cache


def affine_backward(dout: ArrayLike, cache: AffineCache) -> AffineGrads:
    """dx = dy W, dW = dy^T x (feature_axis=1) or dx = W^T dy, dW = dy x^T (feature_axis=0);
    db = the sum of dy over the examples (None without a bias)."""
    x, w, axis = cache.x, cache.W, cache.feature_axis
    dy = as_float64_array(dout, "dout")
    out_shape = (x.shape[0], w.shape[0]) if axis == 1 else (w.shape[0], x.shape[1])
    check_same_shape(dy, "dout", out_shape, "the layer's output")
    if axis == 1:
        dx, dw = np.dot(dy, w), np.dot(dy.T, x)
    else:
        dx, dw = np.dot(w.T, dy), np.dot(dy, x.T)
    db = frozen(np.sum(dy, axis=1 - axis)) if cache.has_bias else None
    return AffineGrads(frozen(dx), frozen(dw), db)
