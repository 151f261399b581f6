"""The course's mini-batch exercise as a user writes it, audited by
`bnref check user_minibatch_example:random_mini_batches --minibatch` (docs/audit.md).

X is (n_x, m) and Y is (1, m): the examples along axis 1. `random_mini_batches` is the course's
solution, drawing its permutation as the course does (the course seeds NumPy's global generator
with np.random.seed(seed) and calls np.random.permutation(m); RandomState(seed) draws the same
permutation without touching the global state). `random_mini_batches_generator` is correct too,
in another way: its own Generator and a list of index slices. The last three make mistakes the
mini-batch properties catch.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import NDArray

Batches = list[tuple[NDArray[Any], NDArray[Any]]]


def random_mini_batches(
    X: NDArray[Any], Y: NDArray[Any], mini_batch_size: int = 64, seed: int = 0
) -> Batches:
    """Shuffle (X, Y) with one permutation, then cut it into batches of mini_batch_size."""
    m = X.shape[1]
    mini_batches = []
    permutation = list(np.random.RandomState(seed).permutation(m))
    shuffled_X = X[:, permutation]
    shuffled_Y = Y[:, permutation].reshape((1, m))
    num_complete_minibatches = math.floor(m / mini_batch_size)
    for k in range(num_complete_minibatches):
        mini_batch_X = shuffled_X[:, k * mini_batch_size : (k + 1) * mini_batch_size]
        mini_batch_Y = shuffled_Y[:, k * mini_batch_size : (k + 1) * mini_batch_size]
        mini_batches.append((mini_batch_X, mini_batch_Y))
    if m % mini_batch_size != 0:
        mini_batch_X = shuffled_X[:, num_complete_minibatches * mini_batch_size :]
        mini_batch_Y = shuffled_Y[:, num_complete_minibatches * mini_batch_size :]
        mini_batches.append((mini_batch_X, mini_batch_Y))
    return mini_batches


def random_mini_batches_generator(
    X: NDArray[Any], Y: NDArray[Any], mini_batch_size: int = 64, seed: int = 0
) -> Batches:
    """Correct, differently: a permutation from np.random.default_rng(seed), cut into slices."""
    order = np.random.default_rng(seed).permutation(X.shape[1])
    cuts = [order[k : k + mini_batch_size] for k in range(0, len(order), mini_batch_size)]
    return [(X[:, idx], Y[:, idx]) for idx in cuts]


def random_mini_batches_drops_last(
    X: NDArray[Any], Y: NDArray[Any], mini_batch_size: int = 64, seed: int = 0
) -> Batches:
    """A mistake: the end case is forgotten, so the last m % mini_batch_size examples are lost."""
    m = X.shape[1]
    permutation = np.random.RandomState(seed).permutation(m)
    shuffled_X, shuffled_Y = X[:, permutation], Y[:, permutation]
    return [
        (shuffled_X[:, k : k + mini_batch_size], shuffled_Y[:, k : k + mini_batch_size])
        for k in range(0, m - mini_batch_size + 1, mini_batch_size)
    ]


def random_mini_batches_with_replacement(
    X: NDArray[Any], Y: NDArray[Any], mini_batch_size: int = 64, seed: int = 0
) -> Batches:
    """A mistake: the order is drawn with replacement, so some examples come twice and others
    never (np.random.randint where np.random.permutation is meant)."""
    m = X.shape[1]
    order = np.random.RandomState(seed).randint(0, m, m)
    shuffled_X, shuffled_Y = X[:, order], Y[:, order]
    return [
        (shuffled_X[:, k : k + mini_batch_size], shuffled_Y[:, k : k + mini_batch_size])
        for k in range(0, m, mini_batch_size)
    ]


def random_mini_batches_misaligned(
    X: NDArray[Any], Y: NDArray[Any], mini_batch_size: int = 64, seed: int = 0
) -> Batches:
    """A mistake: X and Y are shuffled with two different permutations, so the labels no
    longer belong to their examples."""
    m = X.shape[1]
    rng = np.random.RandomState(seed)
    shuffled_X = X[:, rng.permutation(m)]
    shuffled_Y = Y[:, rng.permutation(m)]
    return [
        (shuffled_X[:, k : k + mini_batch_size], shuffled_Y[:, k : k + mini_batch_size])
        for k in range(0, m, mini_batch_size)
    ]
