"""Statistics merged from shards, and synchronized batch norm built on them.

Per channel, a shard k with n_k values contributes (n_k, mean_k, M2_k) where
``M2_k = sum_i (x_i - mean_k)**2``. Two summaries a and b merge by the pairwise update of
Chan, Golub & LeVeque ("Updating formulae and a pairwise algorithm for computing sample
variances", Stanford CS tech. report STAN-CS-79-773, 1979; "Algorithms for computing the sample
variance: analysis and recommendations", The American Statistician 37(3), 1983)::

    n     = n_a + n_b
    delta = mean_b - mean_a
    mean  = mean_a + delta * n_b / n
    M2    = M2_a + M2_b + delta**2 * n_a * n_b / n

The merged summary is that of the concatenated data, with no pass over it: what
`torch.nn.SyncBatchNorm` gathers from every process (pytorch/pytorch
torch/nn/modules/_functions.py, `SyncBatchNorm.forward`: per-process mean, invstd and count,
shards with count 0 masked out, combined by `torch.batch_norm_gather_stats_with_counts`).
The shards are split along axis 0, the batch axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference._validation import (
    Float64Array,
    as_float64_array,
    check_channel_vector,
    check_positive_scalar,
    check_same_shape,
    frozen,
)
from reference.batchnorm import DEFAULT_EPS, ChannelLayout, channel_layout
from reference.float_range import (
    check_gradients_fit,
    check_variance_fits,
    scaling_exponents,
    statistics_exponents,
)


@dataclass(frozen=True)
class ShardStats:
    """One shard's summary per channel: n values, their mean and M2 = sum((x - mean)**2)."""

    count: int
    mean: Float64Array
    m2: Float64Array


@dataclass(frozen=True)
class MergedStats:
    """The merged summary: total count n, mean, M2 and the biased variance var = M2 / n."""

    count: int
    mean: Float64Array
    m2: Float64Array
    var: Float64Array


def _shard_summary(x: Float64Array, layout: ChannelLayout, k: NDArray[np.int_]) -> ShardStats:
    """The summary of x * 2**-k, k per channel (`reference.float_range`; x itself where k = 0)."""
    if layout.count == 0:  # an empty shard contributes nothing
        zeros = np.zeros(layout.channels)
        return ShardStats(0, frozen(zeros), frozen(zeros.copy()))
    xs = np.ldexp(x, -k.reshape(layout.broadcast_shape))
    # Corrected two-pass mean (as in batchnorm.batch_statistics): the residual mean recovers the
    # rounding of the first, so the deviations are accurate even when |mean| >> std.
    m0 = np.mean(xs, axis=layout.reduce_axes)
    mean = m0 + np.mean(xs - layout.expand(m0), axis=layout.reduce_axes)
    centered = xs - layout.expand(mean)
    m2 = np.sum(centered * centered, axis=layout.reduce_axes)
    return ShardStats(layout.count, frozen(mean), frozen(m2))


def shard_stats(x: ArrayLike, axis: int = 1) -> ShardStats:
    """Per-channel ``(n, mean = sum(x)/n, M2 = sum((x - mean)**2))`` of one shard.

    Every axis but the channel axis `axis` is reduced. An empty shard gives n = 0 and zeros.
    A channel whose values reach 2**480 is summarized as x * 2**-k and scaled back, so that no
    sum or square overflows (`reference.float_range`); ValueError if M2 exceeds float64.
    """
    x64 = as_float64_array(x, "x")
    layout = channel_layout(x64, axis)
    k = scaling_exponents(x64, layout.reduce_axes)
    scaled = _shard_summary(x64, layout, k)
    with np.errstate(over="ignore"):  # reported below
        m2 = np.ldexp(scaled.m2, 2 * k)
    too_large = np.isinf(m2)
    if too_large.any():
        c = int(np.argmax(too_large))
        raise ValueError(
            "x must have M2 = sum((x - mean)**2) that float64 can represent (at most 1.8e308) "
            f"in every channel, got about 2**{np.log2(scaled.m2[c]) + 2 * k[c]:.1f} in channel {c}"
        )
    return ShardStats(scaled.count, frozen(np.ldexp(scaled.mean, k)), frozen(m2))


def merge_stats(counts: ArrayLike, means: ArrayLike, m2s: ArrayLike) -> MergedStats:
    """Merge per-shard (n_k, mean_k, M2_k) with Chan et al.'s pairwise update (module docstring).

    counts has shape (S,), means and m2s (S, C) for S shards and C channels. Shards with
    n_k = 0 are skipped. Returns the total n, mean, M2 and var = M2 / n (biased). Raises
    ValueError for a negative or non-integer count, a total count of 0, mismatched shapes or a
    negative M2.
    """
    c = as_float64_array(counts, "counts")
    if c.ndim != 1 or c.size == 0:
        raise ValueError(f"counts must have shape (num_shards,) with >= 1 shard, got {c.shape}")
    if np.any(c != np.round(c)) or np.any(c < 0):
        raise ValueError(f"counts must be integers >= 0, got {c.tolist()!r}")
    mu = as_float64_array(means, "means")
    if mu.ndim != 2 or mu.shape[0] != c.size:
        raise ValueError(
            f"means must have shape (num_shards, C) = ({c.size}, C), got shape {mu.shape}"
        )
    m2 = as_float64_array(m2s, "m2s")
    check_same_shape(m2, "m2s", mu.shape, "means")
    if np.any(m2 < 0):
        raise ValueError(f"m2s must be >= 0 (a sum of squares), got a minimum {float(m2.min())!r}")
    if c.sum() == 0:
        raise ValueError("counts must not all be 0: the total count is 0, which has no mean")

    n_a = 0.0
    mean_a = np.zeros(mu.shape[1])
    m2_a = np.zeros(mu.shape[1])
    for n_b, mean_b, m2_b in zip(c, mu, m2, strict=True):
        if n_b == 0:
            continue
        n = n_a + n_b
        delta = mean_b - mean_a
        mean_a = mean_a + delta * (n_b / n)
        m2_a = m2_a + m2_b + delta * delta * (n_a * n_b / n)
        n_a = n
    return MergedStats(int(n_a), frozen(mean_a), frozen(m2_a), frozen(m2_a / n_a))


@dataclass(frozen=True)
class SyncBatchNormForward:
    """Per-shard outputs ys and x_hats, and the global per-channel statistics (shape (C,))."""

    ys: tuple[Float64Array, ...]
    x_hats: tuple[Float64Array, ...]
    mean: Float64Array
    var: Float64Array
    inv_std: Float64Array
    count: int


@dataclass(frozen=True)
class SyncBatchNormBackward:
    """Per-shard input gradients dxs, and the all-reduced dgamma and dbeta (shape (C,))."""

    dxs: tuple[Float64Array, ...]
    dgamma: Float64Array
    dbeta: Float64Array


class _Shards(NamedTuple):
    """The shards in float64, their layouts, and the global statistics (x_hat per shard)."""

    xs: tuple[Float64Array, ...]
    layouts: tuple[ChannelLayout, ...]
    n: int  # values per channel in all shards
    mean: Float64Array
    var: Float64Array
    inv_std: Float64Array
    x_hats: tuple[Float64Array, ...]


def _array_list(value: object, name: str) -> list[ArrayLike]:
    """A list or tuple of arrays, one per shard; a single array is refused, not iterated."""
    if not isinstance(value, (list, tuple)) or not value:
        raise TypeError(
            f"{name} must be a non-empty list or tuple of arrays, one per shard, "
            f"got {type(value).__name__}"
        )
    return list(value)


def _global_stats(shards: Sequence[ArrayLike], eps: float, axis: object) -> _Shards:
    items = _array_list(shards, "shards")
    xs = tuple(as_float64_array(s, f"shards[{k}]") for k, s in enumerate(items))
    layouts = tuple(channel_layout(x, axis, name=f"shards[{k}]") for k, x in enumerate(xs))
    if layouts[0].axis == 0:
        raise ValueError("axis must not be 0: the shards split the batch axis 0, got axis 0")
    for index, x in enumerate(xs):
        if x.ndim != xs[0].ndim or x.shape[1:] != xs[0].shape[1:]:
            raise ValueError(
                f"shards[{index}] must have shape (n_k, *{xs[0].shape[1:]}) like shards[0], "
                f"got shape {x.shape}"
            )
    total = sum(lay.count for lay in layouts)
    if total < 2:
        raise ValueError(
            "shards must hold at least 2 values per channel in total (the variance of one value "
            f"carries no information), got {total}"
        )
    # One scale per channel for every shard, that of the whole batch in the plain reference
    # (batchnorm.batch_statistics), so that the summaries merge as they are; scaled back below.
    k = statistics_exponents(np.concatenate(xs), layouts[0].reduce_axes, eps)
    summaries = [_shard_summary(x, lay, k) for x, lay in zip(xs, layouts, strict=True)]
    merged = merge_stats(
        [s.count for s in summaries], [s.mean for s in summaries], [s.m2 for s in summaries]
    )
    k_var = np.where(merged.var > 0, k, np.minimum(k, 0))  # as in batchnorm.batch_statistics
    inv_std = 1.0 / np.sqrt(merged.var + np.ldexp(eps, -2 * k_var))
    x_hats = tuple(
        frozen(
            (np.ldexp(x, -k.reshape(lay.broadcast_shape)) - lay.expand(merged.mean))
            * lay.expand(inv_std)
        )
        for x, lay in zip(xs, layouts, strict=True)
    )
    with np.errstate(over="ignore"):  # a var beyond float64 is inf: the forward reports it
        var = np.ldexp(merged.var, 2 * k)
    mean, inv_std = np.ldexp(merged.mean, k), np.ldexp(inv_std, -k_var)
    return _Shards(xs, layouts, merged.count, frozen(mean), frozen(var), frozen(inv_std), x_hats)


def sync_batch_norm_forward(
    shards: Sequence[ArrayLike],
    gamma: ArrayLike,
    beta: ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
) -> SyncBatchNormForward:
    """Synchronized batch norm: every shard is normalized with the statistics of all shards.

    With (n, mean, M2) = `merge_stats` of the shards' `shard_stats`, var = M2/n (biased) and
    ``inv_std = 1/sqrt(var + eps)``, shard k gives ``y_k = gamma*(x_k - mean)*inv_std + beta``.
    Shards share every dimension but axis 0 (the batch axis); the channel axis must not be 0.
    A shard may hold 0 or 1 examples; the total must have >= 2 values per channel. Each channel
    is computed at the power-of-two scale the plain reference gives the whole batch
    (`reference.float_range.statistics_exponents`), so that no square overflows or underflows.
    """
    eps_ = check_positive_scalar(eps, "eps")
    s = _global_stats(shards, eps_, axis)
    channels = s.layouts[0].channels
    g = check_channel_vector(gamma, "gamma", channels)
    b = check_channel_vector(beta, "beta", channels)
    check_variance_fits(s.var, s.inv_std, "shards")  # var is a result here
    ys = tuple(
        frozen(lay.expand(g) * xh + lay.expand(b))
        for xh, lay in zip(s.x_hats, s.layouts, strict=True)
    )
    return SyncBatchNormForward(ys, s.x_hats, s.mean, s.var, s.inv_std, s.n)


def sync_batch_norm_backward(
    dys: Sequence[ArrayLike],
    shards: Sequence[ArrayLike],
    gamma: ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
) -> SyncBatchNormBackward:
    """Gradients of synchronized batch norm, from sums all-reduced over the shards.

    Each shard computes ``sum(dy_k)`` and ``sum(dy_k * x_hat_k)``; their sums over the shards
    are dbeta and dgamma (pytorch/pytorch torch/nn/modules/_functions.py, SyncBatchNorm.backward,
    all-reduces sum_dy and sum_dy_xmu with ReduceOp.SUM). Then, with the global n and inv_std,
    ``dx_k = gamma * inv_std / n * (n * dy_k - dbeta - x_hat_k * dgamma)``.
    dgamma and dbeta are the sums over all shards, the gradient of the loss summed over the
    whole batch. torch returns only the local shard's part and leaves the reduction to the
    data-parallel wrapper (DistributedDataParallel averages over processes, i.e. divides
    this sum by the number of processes). From finite arguments, a gradient beyond float64 is
    a ValueError naming dys (`reference.float_range.check_gradients_fit`).
    """
    eps_ = check_positive_scalar(eps, "eps")
    s = _global_stats(shards, eps_, axis)
    g = check_channel_vector(gamma, "gamma", s.layouts[0].channels)
    dy_items = _array_list(dys, "dys")
    if len(dy_items) != len(s.xs):
        raise ValueError(f"dys must hold {len(s.xs)} arrays, one per shard, got {len(dy_items)}")
    dy64 = tuple(as_float64_array(d, f"dys[{k}]") for k, d in enumerate(dy_items))
    for k, (d, x) in enumerate(zip(dy64, s.xs, strict=True)):
        check_same_shape(d, f"dys[{k}]", x.shape, f"shards[{k}]")
    x_hats, layout = s.x_hats, s.layouts[0]
    # As in batchnorm.batch_norm_backward, exactly dy = ds 2**j (per channel over all shards,
    # |ds| < 1), gamma = gs 2**i and inv_std = r 2**m: no step overflows where the gradients do
    # not, and a gradient beyond float64 is a ValueError (float_range.check_gradients_fit).
    j = np.frexp(np.max(np.abs(np.concatenate(dy64)), axis=layout.reduce_axes))[1]
    ds = tuple(np.ldexp(d, -lay.expand(j)) for d, lay in zip(dy64, s.layouts, strict=True))
    (gs, i), (r, m) = np.frexp(g), np.frexp(s.inv_std)
    # The all-reduce: per-shard partial sums, added over the shards.
    dbeta = sum(
        (np.sum(d, axis=lay.reduce_axes) for d, lay in zip(ds, s.layouts, strict=True)),
        start=np.zeros(g.size),
    )
    dgamma = sum(
        (
            np.sum(d * xh, axis=lay.reduce_axes)
            for d, xh, lay in zip(ds, x_hats, s.layouts, strict=True)
        ),
        start=np.zeros(g.size),
    )
    n = s.n
    with np.errstate(over="ignore"):  # a gradient beyond float64: ValueError below
        dxs = tuple(
            np.ldexp(
                lay.expand(gs * r / n) * (n * d - lay.expand(dbeta) - xh * lay.expand(dgamma)),
                lay.expand(i + j + m),
            )
            for d, xh, lay in zip(ds, x_hats, s.layouts, strict=True)
        )
        dgamma, dbeta = np.ldexp(dgamma, j), np.ldexp(dbeta, j)
    grads, dy = (np.concatenate(dxs), dgamma, dbeta), np.concatenate(dy64)
    check_gradients_fit(grads, dy, np.concatenate(s.xs), g, layout.axis, dy_name="dys")
    return SyncBatchNormBackward(tuple(frozen(dx) for dx in dxs), frozen(dgamma), frozen(dbeta))
