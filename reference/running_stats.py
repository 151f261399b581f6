"""Running statistics: the per-channel averages that batch norm uses at inference time.

One training step updates, per channel, with the batch mean ``mean``, the BIASED batch variance
``var`` over n values, and the weights ``(a, b)`` that `Convention.weights` gives for the
momentum (``a`` on the running value, ``b`` on the batch statistic)::

    running_mean <- a * running_mean + b * mean
    running_var  <- a * running_var  + b * c * var,     c = n/(n-1) if the convention is
                                                        unbiased (PyTorch, TensorFlow) else 1

PyTorch's ``momentum=None`` is the cumulative moving average: b = 1/num_batches_tracked, the
counter including this batch, so after k batches the running values are the plain averages of
the k batch means and unbiased variances.

`population_statistics` is the estimate of the original paper instead (Ioffe & Szegedy 2015,
Algorithm 2, https://arxiv.org/abs/1502.03167): the average over all training mini-batches.
"""

from __future__ import annotations

import enum
import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from reference._validation import (
    Float64Array,
    as_float64_array,
    check_channel_vector,
    check_int,
    check_unit_interval,
    frozen,
)
from reference.conventions import CONVENTIONS, Convention, get_convention


class RunningStats(NamedTuple):
    """Per-channel running mean and running variance, each of shape (C,)."""

    mean: Float64Array
    var: Float64Array


class _Default(enum.Enum):
    MOMENTUM = "the convention's default momentum"


# The default of `momentum`: take it from the convention. A sentinel, because None already
# means PyTorch's cumulative moving average.
CONVENTION_DEFAULT = _Default.MOMENTUM
# The type of that sentinel, for callers that pass a momentum through (e.g. the BN layer).
MomentumDefault = _Default


def _resolve_convention(convention: str | Convention) -> Convention:
    if isinstance(convention, Convention):
        return convention
    return get_convention(convention)  # raises TypeError for a non-string itself


def _batch_weight(
    conv: Convention, momentum: object, num_batches_tracked: object
) -> tuple[float, float]:
    """(weight of the running value, weight of the batch statistic) after validation."""
    # Checked whenever given, even if a momentum makes it unused (as the docstring promises).
    k = (
        None
        if num_batches_tracked is None
        else check_int(num_batches_tracked, "num_batches_tracked", minimum=1)
    )
    if momentum is CONVENTION_DEFAULT:
        return conv.weights(conv.momentum)
    if momentum is None:
        if not conv.cumulative_average:
            cumulative = sorted(c.name for c in CONVENTIONS.values() if c.cumulative_average)
            raise ValueError(
                f"momentum=None (the cumulative moving average) is defined only for the "
                f"conventions {cumulative}, got convention {conv.name!r}; pass a momentum in "
                "[0, 1]"
            )
        if k is None:
            raise ValueError(
                "num_batches_tracked must be an integer >= 1 (the number of batches seen, "
                "this one included) when momentum is None, got None"
            )
        return 1.0 - 1.0 / k, 1.0 / k
    return conv.weights(check_unit_interval(momentum, "momentum"))


def _check_nonnegative(values: Float64Array, name: str) -> None:
    if np.any(values < 0):
        channel = int(np.argmax(values < 0))
        raise ValueError(
            f"{name} must be >= 0 in every channel (a variance), got {values[channel]!r} "
            f"at channel {channel}"
        )


def update_running_stats(
    running_mean: ArrayLike,
    running_var: ArrayLike,
    batch_mean: ArrayLike,
    batch_var: ArrayLike,
    count: int,
    *,
    convention: str | Convention = "pytorch",
    momentum: float | _Default | None = CONVENTION_DEFAULT,
    num_batches_tracked: int | None = None,
) -> RunningStats:
    """The running statistics after one training step, under `convention`.

    ``running_mean' = a * running_mean + b * batch_mean`` and
    ``running_var' = a * running_var + b * c * batch_var`` with ``(a, b)`` the weights of the
    convention for `momentum` (PyTorch: ``(1 - momentum, momentum)``; Keras, TensorFlow, Flax,
    ONNX and the textbook: ``(momentum, 1 - momentum)``) and ``c = count / (count - 1)`` for
    the unbiased conventions (PyTorch, TensorFlow), else 1.

    batch_var is the BIASED variance of the batch (as `batch_norm_forward` returns it) and
    count is n, the number of values per channel. All four vectors have shape (C,).
    momentum defaults to the convention's; ``momentum=None`` (PyTorch only) gives
    ``b = 1 / num_batches_tracked``, the counter including this batch. num_batches_tracked is
    otherwise ignored, as in PyTorch, but still has to be an integer >= 1 if given.
    Inputs are never modified. Raises ValueError for an unknown convention, a momentum outside
    [0, 1], shape mismatches, negative or non-finite values, or count < 1 (count < 2 when the
    convention is unbiased); TypeError for non-numeric arguments.
    """
    conv = _resolve_convention(convention)
    old_w, new_w = _batch_weight(conv, momentum, num_batches_tracked)
    rm = as_float64_array(running_mean, "running_mean")
    if rm.ndim != 1:
        raise ValueError(
            f"running_mean must be a vector of shape (C,), one value per channel, "
            f"got shape {rm.shape}"
        )
    channels = rm.shape[0]
    rv = check_channel_vector(running_var, "running_var", channels)
    bm = check_channel_vector(batch_mean, "batch_mean", channels)
    bv = check_channel_vector(batch_var, "batch_var", channels)
    _check_nonnegative(rv, "running_var")
    _check_nonnegative(bv, "batch_var")
    n = check_int(count, "count", minimum=1)
    if conv.unbiased_var and n < 2:
        raise ValueError(
            f"count must be an integer >= 2 for convention {conv.name!r}, whose running "
            f"variance is unbiased (n/(n-1) * var), got {count!r}"
        )
    correction = n / (n - 1) if conv.unbiased_var else 1.0
    mean = old_w * rm + new_w * bm
    # correction * bv can pass 1.8e308 where the weighted term does not (bv = 1.5e308, n = 2):
    # from 2**1022 on, bv is halved and the weighted term doubled, both exactly (h = 1).
    h = (bv >= 2.0**1022).astype(np.int_)
    with np.errstate(over="ignore"):  # a running variance beyond float64: ValueError below
        var = old_w * rv + np.ldexp(new_w * (correction * np.ldexp(bv, -h)), h)
    if not np.isfinite(var).all():
        c = int(np.argmax(~np.isfinite(var)))
        raise ValueError(
            "running_var and batch_var must give a running variance within float64 (at most "
            f"1.8e308), got a * running_var + b * c * batch_var beyond it in channel {c}, where "
            f"running_var = {rv[c]:.3g}, batch_var = {bv[c]:.3g}, (a, b) = ({old_w:.3g}, "
            f"{new_w:.3g}) and c = {correction:.3g}"
        )
    return RunningStats(mean=frozen(mean), var=frozen(var))


def population_statistics(
    batch_means: ArrayLike, batch_vars: ArrayLike, count: int
) -> RunningStats:
    """Inference statistics from all training mini-batches (Ioffe & Szegedy 2015, Algorithm 2).

    With K mini-batches of m = `count` values per channel, batch means mu_k and biased batch
    variances sigma2_k, per channel::

        E[x]   = (1/K) * sum_k mu_k
        Var[x] = m/(m-1) * (1/K) * sum_k sigma2_k

    batch_means and batch_vars have shape (K, C); K >= 1, count >= 2. Both are computed exactly
    (fractions.Fraction: no sum overflows or rounds) and rounded once. Raises ValueError for
    mismatched or wrong shapes, K = 0, negative variances, non-finite values, count < 2 or a
    Var[x] beyond float64.
    """
    means = as_float64_array(batch_means, "batch_means")
    variances = as_float64_array(batch_vars, "batch_vars")
    if means.ndim != 2 or means.shape[0] == 0:
        raise ValueError(
            f"batch_means must have shape (num_batches, C) with num_batches >= 1, "
            f"got shape {means.shape}"
        )
    if variances.shape != means.shape:
        raise ValueError(
            f"batch_vars must have the shape of batch_means, {means.shape}, "
            f"got shape {variances.shape}"
        )
    if np.any(variances < 0):
        raise ValueError(
            f"batch_vars must be >= 0 (biased variances), got a minimum of "
            f"{float(variances.min())!r}"
        )
    m = check_int(count, "count", minimum=2)
    mean = np.array([float(_exact_mean(column)) for column in means.T])
    var = np.array(
        [_rounded(Fraction(m, m - 1) * _exact_mean(v), c) for c, v in enumerate(variances.T)]
    )
    return RunningStats(mean=frozen(mean), var=frozen(var))


def _exact_mean(column: Float64Array) -> Fraction:
    """The mean of `column`'s float64 values as an exact fraction."""
    return sum(map(Fraction, column.tolist()), Fraction(0)) / column.size


def _rounded(var: Fraction, channel: int) -> float:
    """`var` rounded to float64; ValueError, naming batch_vars and count, beyond float64."""
    try:
        return float(var)
    except OverflowError:
        exponent = math.log2(var.numerator) - math.log2(var.denominator)
        raise ValueError(
            "batch_vars and count must give Var[x] = m/(m-1) * mean(batch_vars) within float64 "
            f"(at most 1.8e308), got about 2**{exponent:.1f} in channel {channel}"
        ) from None
