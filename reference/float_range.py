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
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from reference._validation import Float64Array

# Below 2**480 no step of the two-pass statistics overflows: |x - mean| < 2**481, and a sum of
# n < 2**62 squares of that size stays below 2**1024 (2 * 481 + 62 = 1024).
SAFE_EXPONENT = 480


def scaling_exponents(x: Float64Array, axes: tuple[int, ...]) -> NDArray[np.int_]:
    """Per channel (reducing `axes`), k = 0 if max|x| < 2**480, else the k with
    2**(k-1) <= max|x| < 2**k, so that |x * 2**-k| < 1. NaN and infinity give k = 0."""
    _, exponent = np.frexp(np.max(np.abs(x), axis=axes, initial=0.0))
    k: NDArray[np.int_] = np.where(exponent > SAFE_EXPONENT, exponent, 0)
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
