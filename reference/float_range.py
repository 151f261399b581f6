"""Power-of-two scaling that keeps batch norm's sums, squares and differences in float64's range.

Batch norm's results often exist where a step on the way overflows: x = +-1e154 has var = 1e308
and x_hat = +-1, but its squares are 1e308 and their sum overflows; x = 1e200 has an
infinite var yet x_hat, dx and dgamma exist; the mean of [1.7e308] * 3 is 1.7e308, its sum
3 * 1.7e308 is not a float64. Multiplying by a power of two changes only the exponent, so it is
exact unless the result is subnormal or overflows, and batch norm transforms simply under it:
x * 2**-k has mean * 2**-k, var * 4**-k, and x_hat unchanged (with eps * 4**-k). The reference
computes a channel whose values reach 2**480 as x * 2**-k, |x * 2**-k| < 1, and scales back;
the other channels, k = 0, are computed from x itself and their results are those of the plain
formulas bit for bit (ldexp(x, 0) is x).

At the other end squares underflow: x = [1, 2, 3] * 1e-160 has var = 6.7e-321, a subnormal
number with 11 significant bits, and with eps = 2**-1074 that loss reaches inv_std, x_hat and
the gradients (dx 35% off). A channel whose values spread less than 2**-479 is computed as
x * 2**j with eps * 4**j (k = -j < 0; j capped so that eps * 4**j < 2**1000) and scaled back
the same way. The gradients scale too: dy * 2**-j has dbeta, dgamma and dx times 2**-j, and
gamma * 2**-i has dx times 2**-i. The backward writes dy, gamma and inv_std as numbers below 1
times a power of two (frexp, exact), so that no sum or product overflows where the gradients
exist; a gradient beyond float64 is a ValueError. Inference writes its ratio
gamma / sqrt(running_var + eps) so too where it would leave float64 (`inference_y`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from reference._validation import Float64Array

# Below 2**480 no step of the two-pass statistics overflows: |x - mean| < 2**481, and a sum of
# n < 2**62 squares of that size stays below 2**1024 (2 * 481 + 62 = 1024).
SAFE_EXPONENT = 480
# A square below 2**-1022 is subnormal: rounded to a multiple of 2**-1074, off by up to 2**-1075.
# A channel whose values spread (max - min) at least 2**-479 has a deviation |x - mean| of at
# least 2**-480 (the spread is at most twice the largest deviation), so a sum of squares of at
# least 2**-960, and the n < 2**62 underflows cost it at most 2**-1013: below u = 2**-53.
TINY_SPREAD_EXPONENT = -479
# The scaled eps * 4**j stays below 2**1000 (j is capped): var * 4**j < 1 and eps * 4**j add,
# square-root and divide without overflow. Where the cap binds, var * 4**j < 1/4 and
# eps * 4**j >= 2**998: var is too small to change inv_std, and x_hat = centered * inv_std
# < 2**-499, so a deviation's subnormal rounding (2**-1075) reaches x_hat as less than 2**-1574.
SCALED_EPS_EXPONENT = 1000


def scaling_exponents(x: Float64Array, axes: tuple[int, ...]) -> NDArray[np.int_]:
    """Per channel (reducing `axes`), k = 0 if max|x| < 2**480, else the k with
    2**(k-1) <= max|x| < 2**k, so that |x * 2**-k| < 1. NaN and infinity give k = 0."""
    _, exponent = np.frexp(np.max(np.abs(x), axis=axes, initial=0.0))
    k: NDArray[np.int_] = np.where(exponent > SAFE_EXPONENT, exponent, 0)
    return k


def statistics_exponents(x: Float64Array, axes: tuple[int, ...], eps: float) -> NDArray[np.int_]:
    """Per channel the k with which batch norm computes on x * 2**-k and eps * 4**-k: that of
    `scaling_exponents` for values reaching 2**480; for values that spread less than 2**-479
    (but not 0), k = -j with j >= 0 the largest such that spread * 2**j < 1 and
    eps * 4**j < 2**1000; else 0. NaN and infinity give k = 0."""
    with np.errstate(over="ignore", invalid="ignore"):  # inf - inf, or a spread past 1.8e308
        spread = np.max(x, axis=axes) - np.min(x, axis=axes)
    e_spread = np.frexp(spread)[1]  # 2**(e-1) <= spread < 2**e; e = 0 for 0, NaN and infinity
    j = np.minimum(-e_spread, (SCALED_EPS_EXPONENT - np.frexp(eps)[1]) // 2)  # eps < 2**e too
    tiny = e_spread <= TINY_SPREAD_EXPONENT
    k: NDArray[np.int_] = np.where(tiny, -np.maximum(j, 0), scaling_exponents(x, axes))
    return k


def check_variance_fits(var: Float64Array, inv_std: Float64Array, name: str = "x") -> None:
    """ValueError if a variance of `name` is beyond float64 (inf, inv_std finite: x finite)."""
    too_large = np.isinf(var) & np.isfinite(inv_std)
    if too_large.any():
        c = int(np.argmax(too_large))
        raise ValueError(
            f"{name} must have a variance that float64 can represent (at most 1.8e308) in every "
            f"channel, got about 2**{-2 * np.log2(inv_std[c]):.1f} in channel {c}"
        )


GRADIENTS = ("dx", "dgamma", "dbeta")


def check_gradients_fit(
    gradients: tuple[Float64Array, Float64Array, Float64Array],
    dy: Float64Array,
    x: Float64Array,
    gamma: Float64Array,
    axis: int,
    *,
    dy_name: str = "dy",
) -> None:
    """ValueError if, from finite dy, x and gamma, a gradient is inf or NaN: it overflowed.

    `gradients` are dx (x's shape), dgamma and dbeta (one value per channel, as a (C,) vector or
    broadcast along `axis`, the channel axis). dbeta = sum(dy) and dgamma = sum(dy * x_hat) name
    dy (as `dy_name`), dx names dy and gamma. With a NaN or infinity among the inputs
    (``check_finite=False``) nothing is checked: they propagate."""
    if not all(np.isfinite(a).all() for a in (dy, x, gamma)):
        return
    for name, value in zip(GRADIENTS, gradients, strict=True):
        rows = np.moveaxis(value, axis, 0) if value.ndim == x.ndim else value
        overflowed = ~np.isfinite(rows.reshape(gamma.size, -1)).all(axis=1)
        if overflowed.any():
            c = int(np.argmax(overflowed))
            largest = np.max(np.abs(np.take(dy, c, axis=axis)))
            names, of_gamma = (
                (f"{dy_name} and gamma", f" and gamma = {gamma[c]:.3g}")
                if name == "dx"
                else (dy_name, "")
            )
            raise ValueError(
                f"{names} must be small enough that {name} is within float64 (at most 1.8e308), "
                f"got a non-finite {name} in channel {c}, where max|dy| = {largest:.3g}{of_gamma}"
            )


def scaled_difference(x: Float64Array, center: Float64Array, scale: Float64Array) -> Float64Array:
    """``scale * (x - center)`` elementwise (broadcast), also where x - center overflows.

    x - center can exceed float64 only if x or center is near 1.8e308. Where either reaches
    2**1000 the difference of the halves is taken and the product doubled: halving such a number
    is exact, and a partner so small that its half is subnormal is below half an ulp of the
    large one, so it changes neither difference. Elsewhere k = 0: ``scale * (x - center)``.
    """
    k = (np.maximum(np.abs(x), np.abs(center)) >= 2.0**1000).astype(np.int_)  # 1 or 0
    result: Float64Array = np.ldexp(scale * (np.ldexp(x, -k) - np.ldexp(center, -k)), k)
    return result


def inference_y(
    x: Float64Array,
    running_mean: Float64Array,
    running_var: Float64Array,
    gamma: Float64Array,
    beta: Float64Array,
    *,
    eps: float,
) -> Float64Array:
    """``y = gamma / sqrt(running_var + eps) * (x - running_mean) + beta`` elementwise
    (broadcast), with no step overflowing or underflowing where y is a float64; from finite
    arguments, a ValueError where it is not.

    running_var + eps past 1.8e308 is taken in quarters and its root doubled. Where
    2**-1000 < |gamma / sqrt(running_var + eps)| < 2**1000 or gamma = 0 (k = 0), y is
    ``scaled_difference(x, running_mean, gamma / sqrt(running_var + eps)) + beta`` bit for bit.
    Elsewhere that ratio would overflow, or lose its bits to underflow while x - running_mean
    is large: it is r * 2**k (frexp, exact) with 2**500 < |r| < 2**502 if it is large, so that
    r times a subnormal x - running_mean (>= 2**-1074) is normal, and 2**-502 < |r| < 2**-500
    if it is small, so that r times x - running_mean of up to 2**1025 is finite; the product is
    taken with r and scaled by 2**k (where the product is normal, so is r (x - running_mean)).
    Where that y is beyond float64 (h = 1) it is taken again as twice the y of gamma / 2 and
    beta / 2: the product alone can pass 1.8e308 where y, with a beta of the other sign, does
    not.
    """
    with np.errstate(over="ignore"):  # running_var + eps beyond float64: its quarters
        q = np.isinf(running_var + eps).astype(np.int_)
    std = np.ldexp(np.sqrt(np.ldexp(running_var, -2 * q) + np.ldexp(eps, -2 * q)), q)
    (g, i), (s, p) = np.frexp(gamma), np.frexp(std)  # gamma / std = g / s * 2**(i - p)
    # gamma = 0 has i = 0, and 2**-537 <= sqrt(eps) <= std < 2**513: k = 0. |i - p| <= 1000
    # takes in every ratio of the band, 2**(i - p - 1) < |ratio| < 2**(i - p + 1)
    k = np.where(np.abs(i - p) <= 1000, 0, i - p - 501 * np.sign(i - p))
    ratio = np.ldexp(g / s, i - p - k)  # gamma / std itself where k = 0
    with np.errstate(over="ignore"):  # y beyond float64: inf, then a ValueError
        h = np.isinf(np.ldexp(scaled_difference(x, running_mean, ratio), k) + beta)
        half = scaled_difference(x, running_mean, np.ldexp(ratio, -h.astype(np.int_)))
        y: Float64Array = np.ldexp(np.ldexp(half, k) + np.ldexp(beta, -h.astype(np.int_)), h)
    arguments = (x, running_mean, running_var, gamma, beta)
    if all(np.isfinite(a).all() for a in arguments) and not np.isfinite(y).all():
        at = np.unravel_index(np.argmax(~np.isfinite(y)), y.shape)
        rm, rv, g0, b0 = (np.broadcast_to(a, y.shape)[at] for a in arguments[1:])
        raise ValueError(
            "gamma, x and running_var must give y = gamma * (x - running_mean) / "
            "sqrt(running_var + eps) + beta within float64 (at most 1.8e308), got y = "
            f"{y[at]} at x[{', '.join(map(str, at))}] = {x[at]:.3g}, where gamma = {g0:.3g}, "
            f"running_mean = {rm:.3g}, running_var = {rv:.3g}, eps = {eps:.3g} and beta = {b0:.3g}"
        )
    return y
