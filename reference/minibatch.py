"""Random mini-batches: shuffle the examples once, then cut the shuffled order into batches.

With m examples, batch size s and a permutation p of 0..m-1 drawn from `seed`::

    batch k  =  examples p[k*s : (k+1)*s],   k = 0, 1, ..., ceil(m/s) - 1

Every batch holds s examples except the last, which holds m - (ceil(m/s) - 1)*s (between 1
and s). With ``drop_last=True`` that last batch is dropped when it is smaller than s, leaving
floor(m/s) batches: the first floor(m/s)*s entries of the same p (the meaning of PyTorch
DataLoader's ``drop_last``, https://pytorch.org/docs/stable/data.html).

The course notes' ``random_mini_batches`` calls ``np.random.seed(seed)`` and then
``np.random.permutation(m)``. ``np.random.seed`` reseeds NumPy's singleton legacy ``RandomState``
(https://numpy.org/devdocs/reference/random/generated/numpy.random.seed.html), so
``np.random.RandomState(seed).permutation(m)`` draws exactly the same p from a private MT19937
stream: the course's batches are reproduced bit for bit and the global RNG is left alone.
A ``numpy.random.Generator`` seed uses ``generator.permutation(m)`` (and advances that
generator, which is what handing over a Generator means).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference._validation import check_int, frozen, paired_examples, random_source

IndexArray = NDArray[np.intp]


class MiniBatch(NamedTuple):
    """One mini-batch: the X examples and their Y labels, in the shuffled order.

    A NamedTuple of exactly two fields, so ``(mini_batch_X, mini_batch_Y) = batch`` unpacks it
    like the course's tuples. The example indices are given by `mini_batch_indices`.
    """

    X: NDArray[Any]
    Y: NDArray[Any]


def _permutation(m: int, seed: object) -> IndexArray:
    """p, a permutation of 0..m-1 drawn from `seed` (an int in [0, 2**32 - 1] or a Generator)."""
    return np.asarray(random_source(seed).permutation(m), dtype=np.intp)


def mini_batch_indices(
    m: int,
    mini_batch_size: int = 64,
    seed: int | np.random.Generator = 0,
    *,
    drop_last: bool = False,
) -> list[IndexArray]:
    """The example indices of each mini-batch: batch k is p[k*s : (k+1)*s].

    p is the permutation of 0..m-1 drawn from `seed` (see the module docstring), s is
    `mini_batch_size`. There are ceil(m/s) batches, all of size s but the last; with
    `drop_last` there are floor(m/s), all of size s (none when s > m). The arrays are read-only.
    """
    count = check_int(m, "m", minimum=1)
    size = check_int(mini_batch_size, "mini_batch_size", minimum=1)
    if not isinstance(drop_last, (bool, np.bool_)):
        raise TypeError(f"drop_last must be a bool, got {type(drop_last).__name__} {drop_last!r}")
    p = _permutation(count, seed)
    p.flags.writeable = False  # slices of p are views: read-only, so no caller can edit p
    batches = count // size if drop_last else -(-count // size)  # floor or ceil of m/s
    return [p[k * size : (k + 1) * size] for k in range(batches)]


def random_mini_batches(
    X: ArrayLike,
    Y: ArrayLike,
    mini_batch_size: int = 64,
    seed: int | np.random.Generator = 0,
    *,
    axis: int = 1,
    drop_last: bool = False,
) -> list[MiniBatch]:
    """Shuffle the examples of (X, Y) with one permutation p and cut it into mini-batches.

    Batch k is ``MiniBatch(X[..., p[k*s:(k+1)*s], ...], Y[..., p[k*s:(k+1)*s], ...])`` with the
    indices taken along `axis` of each array, s = `mini_batch_size`; there are ceil(m/s) batches,
    the last one smaller when s does not divide m, and floor(m/s) with `drop_last` (p and the
    batch indices are `mini_batch_indices(m, s, seed, drop_last=drop_last)`).

    `axis` is the example axis, applied to X and to Y (a negative axis counts from each array's
    own end). The default ``axis=1`` is the course layout, X (n_x, m) and Y (1, m), and with an
    integer seed gives the course function's batches exactly. ``axis=0`` is the (m, ...) layout:
    X (m, ...) with Y (m,) or (m, k). Y keeps its shape (the course reshapes Y to (1, m), which
    is the same thing for a (1, m) Y) and both keep their dtype: a shuffle moves values, it
    computes none, and int64 labels above 2**53 would not survive float64. X holds real numbers
    (integer or floating); Y may also be boolean, as the course's test case builds it
    (``Y = np.random.randn(1, 148) < 0.5``).

    Every batch is a read-only copy: nothing returned shares memory with X or Y, and neither
    input is modified. Raises ValueError when X and Y disagree on m, when m = 0, or for a
    negative or too large seed; TypeError for non-numeric data (complex, strings, objects, a
    boolean X, masked arrays) or a seed of another type.
    """
    x, x_axis, y, y_axis, m = paired_examples(X, Y, axis)
    if m == 0:
        raise ValueError(
            f"X and Y must hold at least one example along axis {axis}, got X of shape "
            f"{x.shape} and Y of shape {y.shape}"
        )
    return [
        MiniBatch(frozen(np.take(x, idx, axis=x_axis)), frozen(np.take(y, idx, axis=y_axis)))
        for idx in mini_batch_indices(m, mini_batch_size, seed, drop_last=drop_last)
    ]
