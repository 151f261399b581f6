"""A validation split: shuffle the m examples once, then hold out a fraction of them.

With a permutation p of 0..m-1 drawn from `seed` (the same draw as `random_mini_batches`: an
integer seed is ``np.random.RandomState(seed).permutation(m)``, a Generator its own
``permutation(m)``) and a held-out count n_val::

    validation examples  =  p[:n_val]
    training examples    =  p[n_val:]

n_val is fraction * m rounded to the nearest integer, a half rounded up, computed exactly from
the float `fraction` (``floor(Fraction(fraction) * m + 1/2)``), so no float rounding of the
product can move it. Both parts must hold at least one example.

The order is scikit-learn's ShuffleSplit (held-out first, ``ind_test = permutation[:n_test]``,
``ind_train = permutation[n_test:...]`` with ``check_random_state(seed)``, i.e. the same
RandomState permutation; scikit-learn/scikit-learn, sklearn/model_selection/_split.py). Its
size rule differs: ``n_test = ceil(test_size * n_samples)`` rounds the float product up, so a
product that rounds to 7.000000000000001 (0.07 * 100) holds out 8. Whenever the two counts agree,
`validation_indices` equals ``train_test_split(..., random_state=seed)``'s indices.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference._validation import check_int, frozen, paired_examples, real_scalar
from reference.minibatch import _permutation

IndexArray = NDArray[np.intp]


class SplitIndices(NamedTuple):
    """The example indices of each part, in the shuffled order (read-only)."""

    train: IndexArray
    val: IndexArray


class DataSplit(NamedTuple):
    """The training and validation parts of (X, Y), examples along the split axis."""

    X_train: NDArray[Any]
    Y_train: NDArray[Any]
    X_val: NDArray[Any]
    Y_val: NDArray[Any]


def validation_size(m: int, fraction: float = 0.2) -> int:
    """n_val = floor(fraction * m + 1/2): fraction * m to the nearest integer, halves up.

    The product is taken exactly (the float `fraction` as the rational it is), so the count is
    the same on every machine. Raises ValueError unless 0 < fraction < 1 and
    1 <= n_val <= m - 1 (each part keeps at least one example).
    """
    count = check_int(m, "m", minimum=1)
    f = real_scalar(fraction, "fraction")
    if not 0.0 < f < 1.0:
        raise ValueError(f"fraction must lie in the open interval (0, 1), got {fraction!r}")
    n_val = math.floor(Fraction(f) * count + Fraction(1, 2))
    if not 1 <= n_val <= count - 1:
        part = "validation" if n_val < 1 else "training"
        raise ValueError(
            f"fraction={fraction!r} of m={count} examples holds out round(fraction * m) = "
            f"{n_val}, leaving the {part} part empty; both parts need at least one example"
        )
    return n_val


def validation_indices(
    m: int, *, fraction: float = 0.2, seed: int | np.random.Generator
) -> SplitIndices:
    """SplitIndices(train=p[n_val:], val=p[:n_val]), p the permutation of 0..m-1 from `seed`.

    n_val = `validation_size(m, fraction)`. An integer seed must lie in [0, 2**32 - 1] (as
    ``np.random.seed``); a Generator is advanced by one ``permutation(m)``.
    """
    n_val = validation_size(m, fraction)
    p = _permutation(int(m), seed)
    p.flags.writeable = False  # the parts are views of p: read-only, so no caller can edit p
    return SplitIndices(train=p[n_val:], val=p[:n_val])


def validation_split(
    X: ArrayLike,
    Y: ArrayLike,
    *,
    fraction: float = 0.2,
    seed: int | np.random.Generator,
    axis: int = 1,
) -> DataSplit:
    """DataSplit(X[train], Y[train], X[val], Y[val]), indices taken along `axis`.

    (train, val) = `validation_indices(m, fraction=fraction, seed=seed)`, m the number of
    examples along `axis` (the course layout X (n_x, m), Y (1, m) by default; ``axis=0`` for
    (m, ...)). Every part is a read-only copy keeping the input's dtype; X and Y are never
    modified. X holds real numbers; Y may also be boolean labels. Raises ValueError when X and Y
    disagree on m or a part would be empty; TypeError for non-numeric data.
    """
    x, x_axis, y, y_axis, m = paired_examples(X, Y, axis)
    if m < 2:
        raise ValueError(
            f"X and Y must hold at least two examples along axis {axis} (one per part), got "
            f"X of shape {x.shape} and Y of shape {y.shape}"
        )
    train, val = validation_indices(m, fraction=fraction, seed=seed)
    return DataSplit(
        X_train=frozen(np.take(x, train, axis=x_axis)),
        Y_train=frozen(np.take(y, train, axis=y_axis)),
        X_val=frozen(np.take(x, val, axis=x_axis)),
        Y_val=frozen(np.take(y, val, axis=y_axis)),
    )
