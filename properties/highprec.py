"""Batch norm evaluated in 50-digit arithmetic (mpmath), the yardstick for float64 accuracy.

The inputs are float64 numbers, and ``mpf(float)`` is exact, so the only error of these values is
the 50-digit rounding of each operation: relative 1e-50 per step, amplified by at most the
conditioning |mean|/std <= ~1e8 of the cases used -- still below 1e-40, far under float64's
u = 2**-53 ~ 1.1e-16. Each result is then rounded once to the nearest float64, so it is within
u (relative) of the exact value. The formulas are those of `reference.batchnorm` (biased
variance, eps inside the square root); the layout (channel axis kept, every other axis reduced)
is recomputed here independently of the reference.

All arithmetic runs in a private `mpmath.MPContext`: mpmath's global precision is never changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference._validation import (
    as_float64_array,
    check_channel_vector,
    check_positive_scalar,
    check_same_shape,
    normalize_axis,
)

Array = NDArray[np.float64]
DIGITS = 50  # decimal digits of the working precision


@dataclass(frozen=True)
class HighPrecForward:
    """Forward results rounded from 50 digits; per-channel arrays are (C,), the rest x's shape."""

    mean: Array
    var: Array
    inv_std: Array
    x_hat: Array
    y: Array


@dataclass(frozen=True)
class HighPrecBackward:
    """Closed-form gradients rounded from 50 digits: dx has x's shape, dgamma/dbeta are (C,)."""

    dx: Array
    dgamma: Array
    dbeta: Array


def _context() -> Any:
    """A fresh mpmath context at DIGITS digits (mpmath is untyped, hence Any)."""
    ctx = mpmath.MPContext()
    ctx.dps = DIGITS
    return ctx


def _rows(x: Array, axis: int) -> Array:
    """x as (C, n): one row per channel holding every value that shares its statistics."""
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


def _unrows(rows: list[list[float]], shape: tuple[int, ...], axis: int) -> Array:
    """Inverse of `_rows`: (C, n) values back to an array of `shape` with channel axis `axis`."""
    moved = (shape[axis], *(s for i, s in enumerate(shape) if i != axis))
    out: Array = np.moveaxis(np.array(rows, dtype=np.float64).reshape(moved), 0, axis)
    return out


def _inputs(
    x: ArrayLike, gamma: ArrayLike, eps: float, axis: int
) -> tuple[Array, Array, float, int]:
    x64 = as_float64_array(x, "x")
    if x64.ndim == 0:
        raise ValueError("x must have at least one dimension, got a 0-d array")
    ax = normalize_axis(axis, x64.ndim)
    c = x64.shape[ax]
    if x64.size == 0 or x64.size // c < 2:
        raise ValueError(
            f"x must have at least 2 values per channel, got shape {x64.shape} with channel "
            f"axis {ax}"
        )
    return x64, check_channel_vector(gamma, "gamma", c), check_positive_scalar(eps, "eps"), ax


def _channel_stats(ctx: Any, row: Array, eps: float) -> tuple[Any, Any, Any, list[Any]]:
    """mean, biased var, inv_std and x_hat of one channel, all as 50-digit mpf numbers."""
    xs = [ctx.mpf(float(v)) for v in row]
    n = len(xs)
    mean = ctx.fsum(xs) / n
    dev = [v - mean for v in xs]
    var = ctx.fsum(d * d for d in dev) / n
    inv_std = 1 / ctx.sqrt(var + ctx.mpf(eps))
    return mean, var, inv_std, [d * inv_std for d in dev]


def highprec_forward(
    x: ArrayLike, gamma: ArrayLike, beta: ArrayLike, *, eps: float, axis: int
) -> HighPrecForward:
    """Training-mode batch norm in 50 digits, rounded to float64.

    Per channel: ``mean = sum(x)/n``, ``var = sum((x-mean)**2)/n``, ``inv_std = 1/sqrt(var+eps)``,
    ``x_hat = (x-mean)*inv_std``, ``y = gamma*x_hat + beta``. Raises like `batch_norm_forward`.
    """
    x64, g, eps_, ax = _inputs(x, gamma, eps, axis)
    b = check_channel_vector(beta, "beta", g.size)
    ctx = _context()
    means, variances, inv_stds, x_hats, ys = [], [], [], [], []
    for row, gc, bc in zip(_rows(x64, ax), g, b, strict=True):
        mean, var, inv_std, xh = _channel_stats(ctx, row, eps_)
        gm, bm = ctx.mpf(float(gc)), ctx.mpf(float(bc))
        means.append(float(mean))
        variances.append(float(var))
        inv_stds.append(float(inv_std))
        x_hats.append([float(v) for v in xh])
        ys.append([float(gm * v + bm) for v in xh])
    return HighPrecForward(
        mean=np.array(means),
        var=np.array(variances),
        inv_std=np.array(inv_stds),
        x_hat=_unrows(x_hats, x64.shape, ax),
        y=_unrows(ys, x64.shape, ax),
    )


def highprec_backward(
    dy: ArrayLike, x: ArrayLike, gamma: ArrayLike, *, eps: float, axis: int
) -> HighPrecBackward:
    """Closed-form batch-norm gradients in 50 digits, rounded to float64.

    Per channel: ``dbeta = sum(dy)``, ``dgamma = sum(dy*x_hat)``,
    ``dx = gamma*inv_std/n * (n*dy - dbeta - x_hat*dgamma)`` (derivation: docs/backward.md).
    """
    x64, g, eps_, ax = _inputs(x, gamma, eps, axis)
    dy64 = as_float64_array(dy, "dy")
    check_same_shape(dy64, "dy", x64.shape, "x")
    ctx = _context()
    dxs, dgammas, dbetas = [], [], []
    for row, drow, gc in zip(_rows(x64, ax), _rows(dy64, ax), g, strict=True):
        _, _, inv_std, xh = _channel_stats(ctx, row, eps_)
        d = [ctx.mpf(float(v)) for v in drow]
        n = len(d)
        dbeta = ctx.fsum(d)
        dgamma = ctx.fsum(di * hi for di, hi in zip(d, xh, strict=True))
        k = ctx.mpf(float(gc)) * inv_std / n
        dxs.append(
            [float(k * (n * di - dbeta - hi * dgamma)) for di, hi in zip(d, xh, strict=True)]
        )
        dgammas.append(float(dgamma))
        dbetas.append(float(dbeta))
    return HighPrecBackward(
        dx=_unrows(dxs, x64.shape, ax), dgamma=np.array(dgammas), dbeta=np.array(dbetas)
    )
