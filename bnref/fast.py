"""A fast batch norm: the reference's formulas evaluated block by block on a few threads.

`bnref.fast` has the reference's public batch-norm functions (`batch_norm_forward`,
`batch_norm_backward`, `batch_norm_inference`) with the same signatures, checks, error messages
and results to rounding, but several times faster on large inputs (`nox -s bench`). It is not
the oracle: it is one more target that every batch-norm property audits (`bnref check fast`),
and the tests compare it with `reference.batchnorm`, the plain formulas, to rounding.

Where the speed comes from: x is viewed as (N, C, L) and cut into blocks of 2**17 values, and
the blocks of a pass run on a few threads. With numba installed (``bnref[fast]``) a block is one
compiled loop (`bnref.fast_kernels`) that reads each value once, takes it through every step
of the pass and sums in vectorized lanes, without the GIL. Without numba, or for an x or dy
that is not C-contiguous, the block runs the same steps as a chain of NumPy ufuncs, which
release the GIL too: the chain on one block stays in the CPU cache, so it costs one pass over
memory instead of one per step, and its temporaries are a block, not a copy of x. The two
agree to rounding (their sums add in different orders); the kernels are the faster.
The sum of x per channel doubles as its finiteness check, and a float32 x is read in place.
The statistics take two passes over x: its sum, then the sums of x - m0 and its square around
the first mean m0 = sum/n (and of dy and dy (x - m0) for the backward), from which the mean,
the variance and sum(dy x_hat) follow exactly as from sums around the mean (`_statistics`).

The blocked passes take finite input whose steps stay in float64's range. A statistic that comes
out NaN or infinite (a NaN or infinity let through with ``check_finite=False``, or values near
1.8e308 whose sums or squares overflow) sends the call to the reference, which propagates the
former and scales the latter (`reference.float_range`): the two agree there too, at no cost for
the ordinary input. So does a variance small enough that its squares were subnormal, with an eps
too small to dwarf it (`_TINY_VAR`), and per-channel factors of dx beyond float64. A kernel's
box of x_hat and y, or of dx, with a value beyond float64 (gamma * x_hat overflowing, say) is
redone by the NumPy steps, which warn or raise as the caller's ``np.errstate`` asks.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from types import ModuleType
from typing import TypeVar, cast

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference import batchnorm as plain
from reference._validation import (
    Float64Array,
    as_float64_array,
    check_bool,
    check_channel_vector,
    check_positive_scalar,
    check_same_shape,
    frozen,
)
from reference.batchnorm import (
    DEFAULT_EPS,
    BatchNormBackward,
    BatchNormForward,
    ChannelLayout,
    channel_layout,
    training_layout,
)

_kernels: ModuleType | None  # the compiled block kernels, or None without numba ('bnref[fast]')
try:
    from bnref import fast_kernels as _kernels
except ImportError:  # no numba
    _kernels = None
except RuntimeError:  # numba, but no writable directory to cache its kernels in (it says which)
    _kernels = None

# float64, or float32 read in float64 by every step: a float64 copy of x would cost a pass and
# x's size in float64, for the same values.
__all__ = ["batch_norm_backward", "batch_norm_forward", "batch_norm_inference"]

RealArray = NDArray[np.float64] | NDArray[np.float32]


def _real_array(value: ArrayLike, name: str, check_finite: object) -> RealArray:
    """`value` checked to be real numbers; a float32 ndarray as it is, anything else in float64.

    `check_finite` is checked to be a bool, as the reference does before reading x. Finiteness
    is not checked here: `_channel_sums` does it, see `_non_finite_reported_first`.
    """
    check_bool(check_finite, "check_finite")
    if type(value) is np.ndarray and value.dtype == np.float32:
        return value
    return as_float64_array(value, name, check_finite=False)


@contextmanager
def _non_finite_reported_first(
    check_finite: bool, *arguments: tuple[ArrayLike, str]
) -> Iterator[None]:
    """If a check in the block fails, raise first the non-finite error of an earlier argument.

    The fast path learns that an array is finite from its channel sums, after all the other
    checks; the documented order checks each array's finiteness right after its dtype. An input
    with two errors gets the error that order names first.
    """
    try:
        yield
    except (TypeError, ValueError):
        if check_finite:
            for value, name in arguments:
                as_float64_array(value, name)
        raise


# Every block's result depends only on the block and per-channel totals add the blocks' partial
# sums in block order, so each result is bitwise the same for any number of threads.
_BLOCK = 2**17  # values per block: 1 MiB of float64; fewer, larger blocks measured slower
_WORKERS = min(os.cpu_count() or 1, 4)  # threads per pass; passes are memory-bound past a few
_SUM_AXES = (0, 2)  # the axes of (N, C, L) that a channel's statistics reduce over
Box = tuple[slice, slice, slice]  # a block of an (N, C, L) array; box[1] selects its channels
T = TypeVar("T")


def _channel_view(x: RealArray, layout: ChannelLayout) -> RealArray:
    """x as (N, C, L): the axes before the channel axis, the channels, the axes after it.

    A view for a contiguous x (a non-contiguous x is copied once). (N, C) is (N, C, 1),
    the course notes' (C, m) is (1, C, m).
    """
    ax = layout.axis
    return x.reshape(math.prod(x.shape[:ax]), layout.channels, math.prod(x.shape[ax + 1 :]))


@functools.lru_cache(maxsize=64)
def _blocks(shape: tuple[int, ...], size: int) -> tuple[Box, ...]:
    """Boxes of at most `size` (>= 1) values that tile an (N, C, L) array, in memory order."""
    n, c, length = shape
    if n * c * length == 0:
        return ()
    step_l = min(length, size)
    step_c = min(c, max(1, size // step_l))
    step_n = max(1, size // (step_c * step_l))
    return tuple(
        (slice(i, i + step_n), slice(j, j + step_c), slice(k, k + step_l))
        for i in range(0, n, step_n)
        for j in range(0, c, step_c)
        for k in range(0, length, step_l)
    )


@functools.cache
def _pool(workers: int) -> ThreadPoolExecutor:
    """A pool of `workers` threads, made on first use and reused: threads are slow to start."""
    return ThreadPoolExecutor(workers, thread_name_prefix="bnref")


if hasattr(os, "register_at_fork"):  # POSIX: a forked child has the pool but not its threads
    os.register_at_fork(after_in_child=_pool.cache_clear)


def _map_blocks(fn: Callable[[Box, Float64Array], T], shape: tuple[int, ...]) -> list[T]:
    """``[fn(box, scratch) for box in _blocks(shape, _BLOCK)]``, on up to `_WORKERS` threads.

    `scratch` is a buffer of one block of float64 that fn may overwrite. The boxes are cut into
    one contiguous run per thread, each with its own scratch; one box or one worker runs here.
    The caller's `np.errstate` holds in every thread (NumPy keeps it per thread or context).
    """
    boxes = _blocks(shape, _BLOCK)
    scratch_size = min(math.prod(shape), _BLOCK)
    modes, call = np.geterr(), np.geterrcall()  # the caller's np.errstate, for the threads

    def run(part: Sequence[Box]) -> list[T]:
        scratch = np.empty(scratch_size)
        with np.errstate(**modes, call=call) if call else np.errstate(**modes):
            return [fn(box, scratch) for box in part]

    workers = min(_WORKERS, len(boxes))
    if workers < 2:
        return run(boxes)
    cuts = [len(boxes) * i // workers for i in range(workers + 1)]
    parts = [boxes[a:b] for a, b in itertools.pairwise(cuts)]
    try:
        done = _pool(_WORKERS).map(run, parts)
    except RuntimeError:  # no new work for threads once the interpreter is exiting (atexit)
        return run(boxes)
    return [result for results in done for result in results]


def _channel_totals(fn: Callable[[Box, Float64Array], Float64Array], x3: RealArray) -> Float64Array:
    """Per channel of x3, the sum over the boxes of fn(box, scratch), a box's partial sums.

    fn returns an array (..., channels of the box); the partials are added in box order,
    whichever thread computed them.
    """
    parts = _map_blocks(fn, x3.shape)
    total = np.zeros((*parts[0].shape[:-1], x3.shape[1]))
    for box, part in zip(_blocks(x3.shape, _BLOCK), parts, strict=True):
        total[..., box[1]] += part
    return total


def _kernels_for(*arrays: RealArray) -> ModuleType | None:
    """The compiled kernels for a pass over these (N, C, L) arrays, read in place: None
    without numba or for an array that is not C-contiguous, and the block functions of the
    pass run their NumPy steps instead."""
    if _kernels is None or not all(a.flags.c_contiguous for a in arrays):
        return None
    return _kernels


def _bounds(box: Box, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A box of an array of `shape` as the ints a kernel takes: n0, n1, c0, c1, l0, l1."""
    return tuple(i for part, size in zip(box, shape, strict=True) for i in part.indices(size)[:2])


def _column(vector: Float64Array) -> Float64Array:
    """A (C,) vector as (C, 1), to broadcast along the channel axis of an (N, C, L) block."""
    return vector[:, np.newaxis]


def _centered(x3: RealArray, center: Float64Array, box: Box, scratch: Float64Array) -> Float64Array:
    """x[box] - center, in `scratch`."""
    block = x3[box]
    t = scratch[: block.size].reshape(block.shape)
    np.subtract(block, _column(center[box[1]]), out=t)
    return t


def _channel_sums(
    x3: RealArray, value: ArrayLike, name: str, check_finite: bool
) -> Float64Array | None:
    """sum(x) per channel, which also serves as the finiteness check of x; None if not finite.

    A NaN or infinity anywhere in x makes its channel's sum NaN or infinite, so a finite sum
    proves x finite without a separate scan. Only a non-finite sum pays for the full check,
    which raises the usual error. If it passes (or is not asked for), the sum is None: x holds
    a NaN or infinity let through, or values near the float64 limit whose sum overflowed, and
    the caller leaves such an input to the plain reference (module docstring).
    """

    kernels = _kernels_for(x3)

    def partial(box: Box, _: Float64Array) -> Float64Array:
        if kernels is not None:
            return cast(Float64Array, kernels.channel_sums(x3, _bounds(box, x3.shape)))
        total: Float64Array = np.add.reduce(x3[box], axis=_SUM_AXES, dtype=np.float64)
        return total

    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite sum is diagnosed below
        sums = _channel_totals(partial, x3)
    if np.isfinite(sums).all():
        return sums
    if check_finite:
        as_float64_array(value, name)
    return None


def _all_finite(*arrays: Float64Array) -> bool:
    """Whether every value of every array is finite."""
    return all(bool(np.isfinite(a).all()) for a in arrays)


def _shifted_sums(x3: RealArray, shift: Float64Array, *others: RealArray) -> Float64Array:
    """Per channel, with t = x - shift: sum(t), sum(t**2) and, for each array o in `others`,
    sum(o) and sum(o * t), as rows of a (2 + 2 len(others), C) array: one pass over x and them.
    """

    kernels = _kernels_for(x3, *others) if len(others) <= 1 else None  # they take one o

    def sums(box: Box, scratch: Float64Array) -> Float64Array:
        if kernels is not None:
            where = _bounds(box, x3.shape)
            if others:
                return cast(Float64Array, kernels.shifted_sums_with(x3, shift, *others, where))
            return cast(Float64Array, kernels.shifted_sums(x3, shift, where))
        t = _centered(x3, shift, box, scratch)
        rows = [np.add.reduce(t, axis=_SUM_AXES), np.einsum("ncl,ncl->c", t, t)]
        for other in others:
            o = other[box]
            rows += [np.add.reduce(o, axis=_SUM_AXES, dtype=np.float64), _dot(o, t)]
        return np.stack(rows)

    return _channel_totals(sums, x3)


def _dot(o: RealArray, t: Float64Array) -> Float64Array:
    """sum(o * t) per channel of (N, C, L) blocks, in float64 for a float32 o."""
    dot: Float64Array = np.einsum("ncl,ncl->c", o, t, dtype=np.float64)
    return dot


# How close the first mean m0 must be to the mean for the shifted sums to give the variance:
# var = mean((x - m0)**2) - d**2 with d = mean - m0 cancels the fraction d**2 / mean((x - m0)**2)
# of the first term, which multiplies its relative rounding error by 1 / (1 - that fraction).
# Up to 2**-20 the error stays that of summing the squared deviations from the mean itself
# (within a factor 1 + 1e-6); beyond it (m0 off by more than std / 1024: x near 1e16 times its
# std, or a constant channel whose m0 rounded) the sums are taken again around the corrected
# mean, the reference's two passes.
_SHIFT_LIMIT = 2.0**-20


def _statistics(
    x3: RealArray, sums: Float64Array, *others: RealArray
) -> tuple[Float64Array, Float64Array, Float64Array, Float64Array]:
    """Per channel of an (N, C, L) x: the mean, the biased variance and, for the arrays o in
    `others`, rows of sum(o) and of sum(o * (x - mean)); accurate for |mean|/std up to ~1e8.

    The first mean m0 = sums/n carries an error d of order n*u*|mean|. One pass over x - m0
    gives d = mean(x - m0), so mean = m0 + d, var = mean((x - m0)**2) - d**2 (see
    `_SHIFT_LIMIT`) and sum(o * (x - mean)) = sum(o * (x - m0)) - d * sum(o). The one-pass
    form E[x^2] - E[x]^2, which cancels catastrophically, is never used.
    """
    n = x3.size // x3.shape[1]
    m0 = sums / n
    totals = _shifted_sums(x3, m0, *others)
    d = totals[0] / n
    mean: Float64Array = m0 + d
    square = totals[1] / n  # mean((x - m0)**2)
    if np.all(d * d <= _SHIFT_LIMIT * square):
        var: Float64Array = np.maximum(square - d * d, 0.0)
        return mean, var, totals[2::2], totals[3::2] - d * totals[2::2]
    totals = _shifted_sums(x3, mean, *others)  # around the corrected mean: d is ~u|mean| now
    return mean, totals[1] / n, totals[2::2], totals[3::2]


def _finite_statistics(
    x3: RealArray, sums: Float64Array | None, *others: RealArray
) -> tuple[Float64Array, Float64Array, Float64Array, Float64Array] | None:
    """`_statistics` of x, or None where the reference must take over (module docstring).

    `sums` is None unless x is finite. Then an overflow on the way (a square, x - m0) or a
    NaN or infinity in `others` shows in a non-finite result, so the pass runs with overflow
    and invalid ignored and its results are checked, instead of warning about what the
    reference computes fine.
    """
    if sums is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):
        stats = _statistics(x3, sums, *others)
    return stats if _all_finite(*stats) else None


# A variance below 2**-958 comes from deviations below 2**-479, whose squares may be
# subnormal and lose bits (`reference.float_range.statistics_exponents`, which scales such
# channels). That loss is at most about the variance itself, so it is below u/16 of var + eps
# unless eps < 2**-900 too; only then does the call go to the reference.
_TINY_VAR, _TINY_EPS = 2.0**-958, 2.0**-900
# Where gamma / sqrt(rv + eps) is beyond 2**+-1000 the reference takes it as a mantissa times a
# power of two (`reference.float_range.inference_y`); inside, y = (x - rm) * scale + beta bit for
# bit. The fast path keeps to a margin inside and hands the rest over.
_SCALE_LOW, _SCALE_HIGH = 2.0**-998, 2.0**998


def _subnormal_squares_matter(var: Float64Array, eps: float) -> bool:
    """Whether some channel's variance may have lost bits to subnormal squares that eps does
    not dwarf (see `_TINY_VAR`)."""
    return eps < _TINY_EPS and bool(np.any(var < _TINY_VAR))


def batch_norm_forward(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
    check_finite: bool = True,
) -> BatchNormForward:
    """Training-mode batch normalization over every axis but `axis`.

    Computes, per channel, ``mean = sum(x)/n``, ``var = sum((x-mean)**2)/n`` (biased),
    ``inv_std = 1/sqrt(var+eps)``, ``x_hat = (x-mean)*inv_std`` and
    ``y = gamma*x_hat + beta``. gamma and beta have shape (C,) with C = x.shape[axis].
    Raises ValueError for an empty batch, fewer than 2 values per channel, eps <= 0,
    an axis out of range, wrongly shaped parameters, or non-finite input (unless
    ``check_finite=False``); TypeError for non-real dtypes.
    """
    eps_ = check_positive_scalar(eps, "eps")
    x_arr = _real_array(x, "x", check_finite)
    with _non_finite_reported_first(check_finite, (x, "x")):
        layout = training_layout(x_arr, axis)
        g = check_channel_vector(gamma, "gamma", layout.channels, check_finite=check_finite)
        b = check_channel_vector(beta, "beta", layout.channels, check_finite=check_finite)

    x3 = _channel_view(x_arr, layout)
    stats = _finite_statistics(x3, _channel_sums(x3, x, "x", check_finite))
    if stats is None or _subnormal_squares_matter(stats[1], eps_):  # see the module docstring
        return plain.batch_norm_forward(
            x, gamma, beta, eps=eps, axis=axis, check_finite=check_finite
        )
    mean, var, _, _ = stats
    inv_std = 1.0 / np.sqrt(var + eps_)
    x_hat, y = np.empty(x_arr.shape), np.empty(x_arr.shape)
    x_hat3, y3 = _channel_view(x_hat, layout), _channel_view(y, layout)
    kernels, channel = _kernels_for(x3), (mean, inv_std, g, b)

    def normalize(box: Box, _: Float64Array) -> None:
        where = _bounds(box, x3.shape)
        if kernels is not None and kernels.normalize(x3, channel, x_hat3, y3, where):
            return  # else a value beyond float64: redone below (module docstring)
        c = box[1]
        xh, yb = x_hat3[box], y3[box]
        np.subtract(x3[box], _column(mean[c]), out=xh)
        xh *= _column(inv_std[c])  # x_hat = (x - mean) * inv_std
        np.multiply(_column(g[c]), xh, out=yb)
        yb += _column(b[c])  # y = gamma * x_hat + beta

    _map_blocks(normalize, x3.shape)
    return BatchNormForward(
        y=frozen(y),
        x_hat=frozen(x_hat),
        mean=frozen(mean),
        var=frozen(var),
        inv_std=frozen(inv_std),
        axis=layout.axis,
        eps=eps_,
    )


def batch_norm_backward(
    dy: ArrayLike,
    x: ArrayLike,
    gamma: ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
    check_finite: bool = True,
) -> BatchNormBackward:
    """Closed-form gradients of training-mode batch norm, given the upstream gradient dy.

    With x_hat and inv_std recomputed from x as in `batch_norm_forward`, per channel::

        dbeta  = sum(dy)
        dgamma = sum(dy * x_hat)
        dx     = gamma * inv_std / n * (n * dy - dbeta - x_hat * dgamma)

    The derivation from the computation graph is in docs/backward.md; the node-by-node version
    is `reference.batchnorm_graph.batch_norm_backward_graph`.
    """
    eps_ = check_positive_scalar(eps, "eps")
    x_arr = _real_array(x, "x", check_finite)
    with _non_finite_reported_first(check_finite, (x, "x")):
        layout = training_layout(x_arr, axis)
        dy_arr = _real_array(dy, "dy", check_finite)
    with _non_finite_reported_first(check_finite, (x, "x"), (dy, "dy")):
        check_same_shape(cast(Float64Array, dy_arr), "dy", x_arr.shape, "x")  # reads the shape
        g = check_channel_vector(gamma, "gamma", layout.channels, check_finite=check_finite)

    x3, dy3 = _channel_view(x_arr, layout), _channel_view(dy_arr, layout)
    x_sums = _channel_sums(x3, x, "x", check_finite)
    stats = _finite_statistics(x3, x_sums, dy3)
    if stats is None:  # see the module docstring
        if check_finite and x_sums is not None:
            as_float64_array(dy, "dy")  # a NaN or infinity in dy: the error that locates it
        return plain.batch_norm_backward(
            dy, x, gamma, eps=eps, axis=axis, check_finite=check_finite
        )
    mean, var, dy_sums, dy_dots = stats
    if _subnormal_squares_matter(var, eps_):
        return plain.batch_norm_backward(
            dy, x, gamma, eps=eps, axis=axis, check_finite=check_finite
        )
    n = layout.count
    inv_std = 1.0 / np.sqrt(var + eps_)
    dbeta = dy_sums[0]  # sum(dy)
    dgamma = inv_std * dy_dots[0]  # sum(dy * x_hat), as x_hat = (x - mean) * inv_std
    # dx = scale * (n dy - dbeta - x_hat dgamma), scale = gamma inv_std / n, with the per-channel
    # factors multiplied first: dx = (scale n) dy - (scale inv_std dgamma)(x - mean) - scale dbeta.
    # Five whole-block operations instead of seven; each folded factor adds one rounding of a
    # per-channel number, relative u, as the seven-step form has one per step.
    with np.errstate(over="ignore", invalid="ignore"):  # a product past float64: see below
        scale = g * inv_std / n
        dy_factor, deviation_factor, shift = scale * n, scale * inv_std * dgamma, scale * dbeta
    if not _all_finite(dy_factor, deviation_factor, shift):  # inv_std**2 beyond float64 (tiny
        # eps and var), where the reference's order of steps stays finite: the reference
        return plain.batch_norm_backward(
            dy, x, gamma, eps=eps, axis=axis, check_finite=check_finite
        )
    dx = np.empty(x_arr.shape)
    dx3 = _channel_view(dx, layout)
    kernels, channel = _kernels_for(x3, dy3), (mean, dy_factor, deviation_factor, shift)

    def gradient(box: Box, scratch: Float64Array) -> None:
        where = _bounds(box, x3.shape)
        if kernels is not None and kernels.gradient(x3, dy3, channel, dx3, where):
            return  # else a value beyond float64: redone below (module docstring)
        c = box[1]
        t = _centered(x3, mean, box, scratch)
        t *= _column(deviation_factor[c])  # the path through the variance
        dxb = dx3[box]
        # The direct path, in float64 also for a float32 dy; then the path through the mean.
        np.multiply(dy3[box], _column(dy_factor[c]), out=dxb, dtype=np.float64)
        dxb -= t
        dxb -= _column(shift[c])

    _map_blocks(gradient, x3.shape)
    return BatchNormBackward(dx=frozen(dx), dgamma=frozen(dgamma), dbeta=frozen(dbeta))


def batch_norm_inference(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    running_mean: ArrayLike,
    running_var: ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
    check_finite: bool = True,
) -> Float64Array:
    """Inference-mode batch norm with fixed statistics.

    ``y = gamma * (x - running_mean) / sqrt(running_var + eps) + beta``, per channel. Unlike
    training mode any batch size is accepted, including a single example or an empty batch.
    running_var must be >= 0 (a negative variance would give NaN).
    """
    eps_ = check_positive_scalar(eps, "eps")
    x_arr = _real_array(x, "x", check_finite)
    with _non_finite_reported_first(check_finite, (x, "x")):
        layout = channel_layout(x_arr, axis)
        c = layout.channels
        g = check_channel_vector(gamma, "gamma", c, check_finite=check_finite)
        b = check_channel_vector(beta, "beta", c, check_finite=check_finite)
        rm = check_channel_vector(running_mean, "running_mean", c, check_finite=check_finite)
        rv = check_channel_vector(running_var, "running_var", c, check_finite=check_finite)
        if np.any(rv < 0):
            raise ValueError(
                f"running_var must be >= 0 in every channel, got "
                f"{float(rv[rv < 0][0])!r} at channel "
                f"{int(np.argmax(rv < 0))}"
            )

    def _plain_inference() -> Float64Array:
        return plain.batch_norm_inference(
            x, gamma, beta, running_mean, running_var, eps=eps, axis=axis, check_finite=check_finite
        )

    with np.errstate(over="ignore"):  # rv + eps or gamma / sqrt(rv + eps) past float64
        scale = g / np.sqrt(rv + eps_)
    size = np.abs(scale)
    if not _all_finite(scale) or np.any((size > _SCALE_HIGH) | ((g != 0) & (size < _SCALE_LOW))):
        return _plain_inference()
    x3 = _channel_view(x_arr, layout)
    y = np.empty(x_arr.shape)
    y3 = _channel_view(y, layout)

    def normalize(box: Box, _: Float64Array) -> bool:
        """y = (x - running_mean) * scale + beta on the box; whether every value is finite."""
        xb, yb = x3[box], y3[box]
        # Checked before the arithmetic, which would warn about inf - inf or inf * 0.
        if check_finite and not np.isfinite(xb).all():
            as_float64_array(x, "x")  # raises the error that counts and locates them all
        with np.errstate(over="ignore", invalid="ignore"):  # a non-finite y: see below
            np.subtract(xb, _column(rm[box[1]]), out=yb)
            yb *= _column(scale[box[1]])
            yb += _column(b[box[1]])
        return bool(np.isfinite(yb).all())

    # NaN or infinity let through, or a step beyond float64 (x - running_mean, the product,
    # the sum): the reference propagates the former and scales the latter, or raises.
    if not all(_map_blocks(normalize, x3.shape)):
        return _plain_inference()
    return frozen(y)
