"""Output losses: softmax with cross-entropy, and the sigmoid with binary cross-entropy.

Both are means over the N examples; ``class_axis`` is the axis of scores that holds the K
classes (1 for (N, K), 0 for the course's (K, N)); the other axis holds the examples.

Softmax cross-entropy (max subtracted, so exp never overflows), per example i::

    m_i = max_k z_ik,  log p_ik = (z_ik - m_i) - log(sum_k exp(z_ik - m_i))
    loss = (1/N) sum_i -sum_k t_ik log p_ik,     dz = dloss * (p - t) / N

Labels are class indices (an integer vector of N values in [0, K)) or one-hot rows t of the
scores' shape (0/1 values, exactly one 1 per example), the two forms DLFS's SoftmaxWithLoss
accepts (oreilly-japan/deep-learning-from-scratch, common/layers.py).

Sigmoid binary cross-entropy on logits z with labels y in {0, 1} of z's shape::

    loss = (1/N) sum over all elements of  max(z, 0) - z y + log1p(exp(-|z|))
    dz   = dloss * (1/N) * (sigmoid(z) - y)

The loss is the course's ``-(y log a + (1 - y) log(1 - a))`` with a = sigmoid(z) (opt_utils_v1a.py
``compute_cost``, divided by m in ``model``), written so that it stays finite and accurate when a
rounds to 0 or 1, where the course's log gives -inf. The gradient is the course's
``dz3 = 1./m * (a3 - Y)`` operation for operation. Means are sums with math.fsum (exactly rounded)
divided by N.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from reference._validation import (
    Float64Array,
    as_float64_array,
    as_float64_labels,
    check_same_shape,
    frozen,
    normalize_axis,
    real_scalar,
)
from reference.layers.activations import sigmoid


class SoftmaxCrossEntropyCache(NamedTuple):
    """Softmax probabilities p, the one-hot targets t (both the scores' shape), and N."""

    probs: Float64Array
    targets: Float64Array
    num_examples: int


class SigmoidCrossEntropyCache(NamedTuple):
    """sigmoid(z), the labels y (both z's shape), and N."""

    probs: Float64Array
    labels: Float64Array
    num_examples: int


class LossGrads(NamedTuple):
    """dL/dscores, the scores' shape."""

    dscores: Float64Array


def _scores(scores: ArrayLike, class_axis: object) -> tuple[Float64Array, int]:
    z = as_float64_array(scores, "scores")
    if z.ndim != 2:
        raise ValueError(f"scores must be a 2-D array (examples and classes), got shape {z.shape}")
    axis = normalize_axis(class_axis, 2, "class_axis")
    if z.shape[1 - axis] == 0:
        raise ValueError(f"scores must hold at least one example, got shape {z.shape}")
    return z, axis


def one_hot_targets(labels: ArrayLike, shape: tuple[int, int], class_axis: int) -> Float64Array:
    """The one-hot array of `shape` for class indices or one-hot labels (validated)."""
    lab = np.asarray(labels)
    n, k = shape[1 - class_axis], shape[class_axis]
    if lab.dtype.kind in "iu" and lab.ndim == 1:
        if lab.shape != (n,):
            raise ValueError(
                f"labels must hold one class index per example, {n}, got shape {lab.shape}"
            )
        bad = (lab < 0) | (lab >= k)
        if bad.any():
            raise ValueError(
                f"labels must be class indices in [0, {k}), got {lab[bad][0]!r} at example "
                f"{int(np.argmax(bad))}"
            )
        targets = np.zeros((n, k))
        targets[np.arange(n), lab] = 1.0
        return frozen(targets if class_axis == 1 else np.ascontiguousarray(targets.T))
    if lab.ndim == 1:
        raise TypeError(
            f"labels must be an integer vector of class indices or one-hot rows, got a 1-D "
            f"array of dtype {lab.dtype}"
        )
    t = as_float64_labels(labels, "labels")  # one-hot rows may be boolean
    check_same_shape(t, "labels", shape, "scores (one-hot labels)")
    binary = (t == 0) | (t == 1)
    if not binary.all() or not np.all(np.sum(t, axis=class_axis) == 1):
        raise ValueError(
            "labels must be one-hot: 0/1 values with exactly one 1 per example along "
            f"class_axis={class_axis}"
        )
    return frozen(t.copy())


def _upstream(dout: object) -> float:
    value = real_scalar(dout, "dout")
    if not math.isfinite(value):
        raise ValueError(f"dout must be finite, got {dout!r}")
    return value


def softmax(scores: ArrayLike, *, class_axis: int = 1) -> Float64Array:
    """``p_ik = exp(z_ik - m_i) / sum_k exp(z_ik - m_i)`` with ``m_i = max_k z_ik``."""
    z, axis = _scores(scores, class_axis)
    e = np.exp(z - np.max(z, axis=axis, keepdims=True))
    return frozen(e / np.sum(e, axis=axis, keepdims=True))


def log_softmax(scores: ArrayLike, *, class_axis: int = 1) -> Float64Array:
    """``log p_ik = (z_ik - m_i) - log(sum_k exp(z_ik - m_i))``."""
    z, axis = _scores(scores, class_axis)
    shifted = z - np.max(z, axis=axis, keepdims=True)
    return frozen(shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True)))


def softmax_cross_entropy_forward(
    scores: ArrayLike, labels: ArrayLike, *, class_axis: int = 1
) -> tuple[float, SoftmaxCrossEntropyCache]:
    """``loss = (1/N) sum_i -sum_k t_ik log softmax(z)_ik``; returns (loss, cache)."""
    z, axis = _scores(scores, class_axis)
    if z.shape[axis] < 2:
        raise ValueError(
            f"scores must have at least 2 classes along class_axis={axis} (softmax of one class "
            f"is 1 and its loss 0), got shape {z.shape}"
        )
    t = one_hot_targets(labels, (z.shape[0], z.shape[1]), axis)
    logp = log_softmax(z, class_axis=axis)
    per_example = -np.sum(t * logp, axis=axis)
    n = z.shape[1 - axis]
    loss = math.fsum(per_example.tolist()) / n
    return loss, SoftmaxCrossEntropyCache(frozen(np.exp(logp)), t, n)


def softmax_cross_entropy_backward(dout: float, cache: SoftmaxCrossEntropyCache) -> LossGrads:
    """``dz = dout * (p - t) / N``."""
    d = _upstream(dout)
    return LossGrads(frozen(d * ((cache.probs - cache.targets) / cache.num_examples)))


def binary_labels(labels: ArrayLike, shape: tuple[int, ...]) -> Float64Array:
    """The 0/1 labels as a float64 array of `shape` (validated; booleans are 0 and 1)."""
    y = as_float64_labels(labels, "labels")
    check_same_shape(y, "labels", shape, "scores")
    bad = (y != 0) & (y != 1)
    if bad.any():
        raise ValueError(
            f"labels must be 0 or 1 for the sigmoid cross-entropy, got {y[bad][0]!r} at index "
            f"{tuple(int(i) for i in np.argwhere(bad)[0])}"
        )
    return frozen(y.copy())


def sigmoid_cross_entropy_forward(
    scores: ArrayLike, labels: ArrayLike, *, class_axis: int = 1
) -> tuple[float, SigmoidCrossEntropyCache]:
    """``loss = (1/N) sum max(z, 0) - z y + log1p(exp(-|z|))`` (= -(y log a + (1-y) log(1-a))
    with a = sigmoid(z)), summed over outputs and averaged over the N examples."""
    z, axis = _scores(scores, class_axis)
    y = binary_labels(labels, z.shape)
    per_element = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
    n = z.shape[1 - axis]
    loss = math.fsum(per_element.ravel().tolist()) / n
    return loss, SigmoidCrossEntropyCache(frozen(sigmoid(z)), y, n)


def sigmoid_cross_entropy_backward(dout: float, cache: SigmoidCrossEntropyCache) -> LossGrads:
    """``dz = dout * (1/N) * (sigmoid(z) - y)`` (the course's ``1./m * (a3 - Y)`` for dout=1)."""
    d = _upstream(dout)
    return LossGrads(frozen(d * ((1.0 / cache.num_examples) * (cache.probs - cache.labels))))
