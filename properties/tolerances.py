"""The tolerance model: how far a correct float64 batch norm may be from the exact result.

Every tolerance in the batch-norm properties comes from the bound derived here, so that it is
stated once. Notation, per channel with n values, unit roundoff u (2**-53 for float64)::

    m = mean(x),  v = mean((x - m)**2),  s = sqrt(v + eps),  x_hat = (x - m) / s
    kappa = max|x| / s            how large the data are relative to the normalizing scale;
                                  |mean|/std = 1e8 gives kappa ~ 1e8

Error of a computed x_hat (first order in u; gamma_k = k*u / (1 - k*u) ~ k*u):

1. Mean: any summation order gives |m' - m| <= gamma_n * max|x| + u*|m| <= (n + 1) * u * max|x|,
   so the deviations x - m' share a common shift dm with |dm| / s <= (n + 1) * u * kappa.
2. Variance from the deviations: relative error <= gamma_(n+2) + (dm / s)**2 (the cross term
   vanishes because the exact deviations sum to zero). A one-pass E[x^2] - E[x]^2 has no such
   bound: its error is ~ n*u*kappa**2 and the properties are meant to catch it.
3. inv_std = 1/sqrt(v + eps): relative error <= half that of the variance, plus 2u.
4. x_hat_i = (x_i - m') * inv_std: |error| <= |dm|/s + |x_hat_i| * (u + relative error of 3).

So  |x_hat'_i - x_hat_i| <= (n + 1) u kappa + |x_hat_i| ((n/2 + 4) u + ((n + 1) u kappa)**2 / 2),
and each bound below is that, times SAFETY for the first-order approximations. The shift-free
part (the second term) alone bounds quantities that are blind to a common shift, such as the
variance of x_hat. The checker's own reference values are computed with math.fsum (exactly
rounded sums), so their error (a few u) is added explicitly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]

U64 = 2.0**-53  # unit roundoff of float64
SAFETY = 2.0  # covers the first-order expansion of gamma_k and the products of error terms
# Gradual underflow: a result in the subnormal range is off by up to ETA/2 absolutely, not by a
# relative u. Data near 1e-159 square into that range, so each bound adds ETA per operation
# that may underflow, scaled by what amplifies it (1/s for x_hat, 1/(var+eps) for var/(var+eps)).
ETA = 2.0**-1074  # the smallest subnormal float64


@dataclass(frozen=True)
class ExactStats:
    """Per-channel statistics computed with exactly rounded sums; shapes broadcast against x."""

    mean: Array
    var: Array
    scale: Array  # s = sqrt(var + eps)
    x_hat: Array
    count: int
    kappa: Array  # max|x| / s per channel
    dev_ratio: Array  # max|x - mean| / s per channel
    axis: int


def _channel_moved(x: Array, axis: int) -> Array:
    """x with the channel axis first and everything else flattened: shape (C, n)."""
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


def exact_stats(x: Array, axis: int, eps: float) -> ExactStats:
    """Mean and biased variance per channel to within a few u, whatever the conditioning.

    The mean is fsum(x)/n corrected once by the fsum of the residuals; the variance is
    mean(d**2) - mean(d)**2 over the deviations d = x - mean, all sums exactly rounded. The
    second term removes the shift (<= u|m|) that rounding the mean to float64 leaves in d, so
    a constant channel gets exactly 0 and the variance is within a few u of the true one.
    """
    ax = axis % x.ndim
    rows = _channel_moved(x, ax)
    n = rows.shape[1]
    mean0 = np.array([math.fsum(r) / n for r in rows])
    # One correction step: the residual mean recovers the rounding of the sum and the division.
    shift = np.array([math.fsum(r - m) / n for r, m in zip(rows, mean0, strict=True)])
    mean = mean0 + shift
    # Subtracting mean(d)**2 cancels the shift left by rounding the mean to float64.
    var = np.array(
        [
            max(math.fsum((r - m) ** 2) / n - (math.fsum(r - m) / n) ** 2, 0.0)
            for r, m in zip(rows, mean, strict=True)
        ]
    )
    scale = np.sqrt(var + eps)
    shape = [1] * x.ndim
    shape[ax] = x.shape[ax]
    x_hat = (x - mean.reshape(shape)) / scale.reshape(shape)
    kappa = np.max(np.abs(rows), axis=1) / scale
    dev_ratio = np.max(np.abs(rows - mean[:, None]), axis=1) / scale
    return ExactStats(mean, var, scale, x_hat, n, kappa, dev_ratio, ax)


def expand(stats: ExactStats, vector: Array, ndim: int) -> Array:
    """Reshape a per-channel vector to broadcast along stats.axis of an ndim-dimensional array."""
    shape = [1] * ndim
    shape[stats.axis] = vector.size
    return vector.reshape(shape)


def mean_shift_bound(stats: ExactStats, u: float = U64) -> Array:
    """Bound on |dm| / s, the common shift of x_hat from the computed mean: (n + 1) u kappa."""
    return (stats.count + 1) * u * stats.kappa


def scale_error_bound(stats: ExactStats, u: float = U64) -> Array:
    """Relative error of a computed x_hat that is not a common shift (terms 2-4 above)."""
    shift = mean_shift_bound(stats, u)
    return (stats.count / 2 + 4) * u + shift**2 / 2


def x_hat_bound(stats: ExactStats, ndim: int, u: float = U64) -> Array:
    """Per-element bound on |x_hat' - x_hat| for any float64 implementation, shaped like x.

    Includes the checker's own x_hat rounding (2u|x_hat| + u kappa) and the underflow of the
    n + 4 operations that form x - mean, amplified by 1/s.
    """
    underflow = (stats.count + 4) * ETA / stats.scale
    shift = expand(stats, mean_shift_bound(stats, u) + u * stats.kappa + underflow, ndim)
    rel = expand(stats, scale_error_bound(stats, u) + 2 * u, ndim)
    return SAFETY * (shift + np.abs(stats.x_hat) * rel)


def underflow_bound(stats: ExactStats, weight: Array | float = 1.0) -> Array:
    """Absolute error a per-channel statistic of y may pick up from gradual underflow.

    n + 4 operations may each lose ETA/2; var/(var+eps) divides the rounding of a subnormal
    variance by var + eps, so its expected value carries ETA (n + 4) / (var + eps) more.
    `weight` scales it (gamma**2 for a variance of y).
    """
    amplify = 1.0 + 1.0 / stats.scale**2  # s**2 = var + eps
    return SAFETY * (stats.count + 4) * ETA * amplify * (1.0 + np.asarray(weight))


def per_channel_max(values: Array, stats: ExactStats) -> Array:
    """Maximum over the reduced axes of an array shaped like x: one value per channel."""
    maxima: Array = np.max(_channel_moved(values, stats.axis), axis=1)
    return maxima


def channel_rows(values: Array, stats: ExactStats) -> Array:
    """An array shaped like x as (C, n) rows, one per channel."""
    return _channel_moved(values, stats.axis)
