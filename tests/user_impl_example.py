"""Batch norm as a user writes it, channels last (Keras layout), for `bnref check mod:fn`.

The honest functions compute y = gamma (x - mean) / sqrt(var + eps) + beta over every axis
but the last; `forward_eps_outside` is the classic mistake (x - mean) / (sqrt(var) + eps).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

F = NDArray[np.float64]


def _stats(x: F) -> tuple[F, F]:
    axes = tuple(range(x.ndim - 1))
    return x.mean(axis=axes), x.var(axis=axes)


def forward(x: F, gamma: F, beta: F, eps: float) -> F:
    """y = gamma (x - mean) / sqrt(var + eps) + beta, statistics over all axes but the last."""
    mean, var = _stats(x)
    return gamma * (x - mean) / np.sqrt(var + eps) + beta


def forward_with_stats(x: F, gamma: F, beta: F, eps: float) -> tuple[F, F, F]:
    """(y, mean, biased var) of `forward`."""
    mean, var = _stats(x)
    return forward(x, gamma, beta, eps), mean, var


def forward_eps_outside(x: F, gamma: F, beta: F, eps: float) -> F:
    """WRONG: y = gamma (x - mean) / (sqrt(var) + eps) + beta."""
    mean, var = _stats(x)
    return gamma * (x - mean) / (np.sqrt(var) + eps) + beta


def backward(dy: F, x: F, gamma: F, eps: float) -> tuple[F, F, F]:
    """dx = gamma/(m sigma) (m dy - sum dy - x_hat sum(dy x_hat)); dgamma, dbeta the sums."""
    axes = tuple(range(x.ndim - 1))
    m = x.size // x.shape[-1]
    mean, var = _stats(x)
    sigma = np.sqrt(var + eps)
    x_hat = (x - mean) / sigma
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * x_hat).sum(axis=axes)
    dx = gamma / (m * sigma) * (m * dy - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


def inference(x: F, gamma: F, beta: F, running_mean: F, running_var: F, eps: float) -> F:
    """y = gamma (x - running_mean) / sqrt(running_var + eps) + beta."""
    return gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta


def forward_first_example(x: F, gamma: F, beta: F, eps: float) -> F:
    """WRONG: returns y of the first example only, shape x.shape[1:]."""
    y: F = forward(x, gamma, beta, eps)[0]
    return y
