"""The tolerance model: how far a correct batch norm in a given dtype may be from the exact result.

Every tolerance in the batch-norm properties comes from the bound derived here, so that it is
stated once. Notation, per channel with n values, unit roundoff u of the dtype the
implementation computes in (`PRECISIONS`: 2**-53 float64, 2**-24 float32, 2**-11 float16)::

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

Lower precision. Every bound above is first order in u with the same structure whatever the
dtype, so an implementation computing in float32 or float16 gets the same bounds with its own u
and its own ETA (smallest subnormal), `Precision` below. The checker itself always computes in
float64: its own roundings keep U64. The inputs a low-precision implementation receives are
first made representable in its dtype (`properties.strategies.cast_case`), so the checker's
exact statistics are those of the very values the implementation computes on. A bound of the
form (n + 1) u kappa stops saying anything once it reaches |x_hat| (n u kappa ~ 1: float32 with
|mean|/std ~ 3e4 and n = 512, float16 already near kappa ~ 4): such cases still run, honestly
unable to fail, while the well-conditioned ones keep the bounds tight. Which claims cannot be
stated below float64 at all (the finite-difference gradient checks) is said in
`properties.registry`; they are reported as not applicable there.
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
class Precision:
    """What rounding in one dtype costs: the constants every bound is written in.

    `max_abs` caps the magnitudes of generated inputs so that no correct implementation
    overflows: float16 ends at 65504, and a float16 sum of n <= 512 squared deviations of values
    with |x| <= 4 (deviations <= 8) stays below 512 * 64 = 32768. `min_eps` is the smallest eps
    that is a normal number of the dtype (float16: 1e-5 is subnormal and 1e-8 rounds to 0).
    """

    dtype: str
    u: float  # unit roundoff: a rounded result is x (1 + d), |d| <= u
    eta: float  # smallest subnormal: an underflowing result is off by <= eta / 2 absolutely
    max_abs: float  # largest |value| generated for inputs in this dtype
    min_eps: float  # smallest eps given to an implementation in this dtype


PRECISIONS: dict[str, Precision] = {
    "float64": Precision("float64", U64, ETA, math.inf, 0.0),
    # IEEE binary32: 24-bit significand, emin = -126, so the smallest subnormal is 2**-149.
    "float32": Precision("float32", 2.0**-24, 2.0**-149, math.inf, 0.0),
    # IEEE binary16: 11-bit significand, emin = -14, smallest subnormal 2**-24, max 65504.
    "float16": Precision("float16", 2.0**-11, 2.0**-24, 4.0, 1e-3),
}
UNIT_ROUNDOFF = {name: p.u for name, p in PRECISIONS.items()}
SMALLEST_SUBNORMAL = {name: p.eta for name, p in PRECISIONS.items()}


def precision(dtype: str) -> Precision:
    """The `Precision` of `dtype` (one of PRECISIONS); ValueError naming dtype otherwise."""
    if dtype not in PRECISIONS:
        raise ValueError(f"dtype must be one of {tuple(PRECISIONS)}, got {dtype!r}")
    return PRECISIONS[dtype]


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


def x_hat_bound(stats: ExactStats, ndim: int, u: float = U64, eta: float = ETA) -> Array:
    """Per-element bound on |x_hat' - x_hat| for any implementation of unit roundoff u and
    smallest subnormal eta (float64 by default), shaped like x.

    Includes the checker's own x_hat rounding (2u|x_hat| + u kappa) and the underflow of the
    n + 4 operations that form x - mean, amplified by 1/s.
    """
    underflow = (stats.count + 4) * eta / stats.scale
    shift = expand(stats, mean_shift_bound(stats, u) + u * stats.kappa + underflow, ndim)
    rel = expand(stats, scale_error_bound(stats, u) + 2 * u, ndim)
    return SAFETY * (shift + np.abs(stats.x_hat) * rel)


def underflow_bound(stats: ExactStats, weight: Array | float = 1.0, eta: float = ETA) -> Array:
    """Absolute error a per-channel statistic of y may pick up from gradual underflow.

    n + 4 operations may each lose ETA/2; var/(var+eps) divides the rounding of a subnormal
    variance by var + eps, so its expected value carries ETA (n + 4) / (var + eps) more.
    `weight` scales it (gamma**2 for a variance of y).
    """
    amplify = 1.0 + 1.0 / stats.scale**2  # s**2 = var + eps
    return SAFETY * (stats.count + 4) * eta * amplify * (1.0 + np.asarray(weight))


def per_channel_max(values: Array, stats: ExactStats) -> Array:
    """Maximum over the reduced axes of an array shaped like x: one value per channel."""
    maxima: Array = np.max(_channel_moved(values, stats.axis), axis=1)
    return maxima


def channel_rows(values: Array, stats: ExactStats) -> Array:
    """An array shaped like x as (C, n) rows, one per channel."""
    return _channel_moved(values, stats.axis)


def y_bound(
    stats: ExactStats, gamma: Array, beta: Array, u: float = U64, eta: float = ETA
) -> Array:
    """Bound on |y' - y| for y = gamma x_hat + beta at unit roundoff u: |gamma| times the x_hat
    bound, plus the rounding of the product and the sum (u each, relative to their magnitudes)
    and one underflow (eta)."""
    nd = stats.x_hat.ndim
    g = expand(stats, gamma, nd)
    gx = np.abs(g * stats.x_hat)
    y = np.abs(gx + expand(stats, beta, nd))
    bound: Array = np.abs(g) * x_hat_bound(stats, nd, u, eta) + SAFETY * (u * (gx + y) + eta)
    return bound


def narrow_x_hat_bound(stats: ExactStats, u: float, eta: float, eps: float) -> Array:
    """`x_hat_bound` (u, eta) plus what a narrow dtype (float32, float16) adds, times SAFETY:

    eps rounded in the dtype, u/2 |x_hat| relative; a variance that underflows, (n + 2) eta / 2
    absolute, i.e. |x_hat| (n + 2) eta / (2 (v + eps)); a mean of values near the subnormal
    range, off by eta/2 more, a common shift eta / (2 s) in x_hat; x_hat itself subnormal, eta/2.
    """
    nd = stats.x_hat.ndim
    xh = np.abs(stats.x_hat)
    v = expand(stats, stats.var, nd)
    s = expand(stats, stats.scale, nd)
    narrow = xh * (u / 2 + (stats.count + 2) * eta / (2 * (v + eps))) + eta * (1 / s + 1) / 2
    bound: Array = x_hat_bound(stats, nd, u, eta) + SAFETY * narrow
    return bound
