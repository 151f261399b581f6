"""Assertion helpers: turn arrays of errors and bounds into one `Measurement`."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from properties.framework import Measurement

Array = NDArray[np.float64]


def compare(
    quantity: str,
    got: Array,
    want: Array,
    tolerance: Array | float,
    *,
    scale: Array | float | None = None,
) -> Measurement:
    """The element of |got - want| that comes closest to (or furthest past) its own tolerance.

    A shape mismatch or a NaN is an infinite error: an implementation that returns the wrong
    shape or a NaN fails, it is never compared by broadcasting.

    The comparison has teeth (`Measurement.teeth`) when some element's tolerance is 0 (an
    exact claim) or smaller than the magnitude of the quantity compared there: `scale`
    (broadcast like `want`), by default |want|. Pass `scale` when the value wanted may be 0
    while the quantity is not small (a channel mean of y that should be beta = 0 is of the
    size of y's spread).
    """
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return Measurement(f"{quantity} (shape {got.shape} != {want.shape})", np.inf, 0.0)
    tol = np.broadcast_to(np.asarray(tolerance, dtype=np.float64), want.shape)
    if want.size == 0:  # nothing compared: nothing that could fail
        return Measurement(quantity, 0.0, 0.0, teeth=False)
    size = np.abs(want) if scale is None else np.asarray(scale, dtype=np.float64)
    teeth = bool(np.any((tol == 0) | (tol < np.broadcast_to(size, want.shape))))
    err = np.abs(got - want)
    err = np.where(np.isnan(err), np.inf, err)
    # ratio = err / tol where tol > 0; an exact claim (tol 0) has ratio 0 if err == 0, else inf.
    # np.divide with where= divides only where tol > 0 (np.where would evaluate err / 0 too);
    # a subnormal tol can still overflow err / tol to inf, which is the right ratio: no warning.
    # inf / inf (an infinite error against an infinite bound) is NaN, which argmax picks first.
    exact = np.where(err == 0, 0.0, np.inf)
    with np.errstate(over="ignore", invalid="ignore"):
        ratio = np.divide(err, tol, out=exact, where=tol > 0)
    i = np.unravel_index(int(np.argmax(ratio)), want.shape)
    return Measurement(quantity, float(err[i]), float(tol[i]), teeth=teeth)


def unchanged(quantity: str, before: Array, after: Array) -> Measurement:
    """An exact claim: `after` is bit-for-bit `before` (used for "inputs are not mutated")."""
    same = before.shape == after.shape and bool(np.array_equal(before, after, equal_nan=True))
    return Measurement(quantity, 0.0 if same else 1.0, 0.0)
