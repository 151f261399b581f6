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


def running_stats(
    running_mean: F, running_var: F, batch_mean: F, batch_var: F, n: int, momentum: float
) -> tuple[F, F]:
    """PyTorch's rule: new = (1 - m) old + m batch, the batch variance Bessel-corrected."""
    new_mean = (1 - momentum) * running_mean + momentum * batch_mean
    new_var = (1 - momentum) * running_var + momentum * batch_var * n / (n - 1)
    return new_mean, new_var


def running_stats_biased(
    running_mean: F,
    running_var: F,
    batch_mean: F,
    batch_var: F,
    n: int,  # noqa: ARG001 -- the hook's signature; the mistake is not using it
    momentum: float,
) -> tuple[F, F]:
    """WRONG for the pytorch convention: the biased batch variance, no n/(n-1)."""
    new_mean = (1 - momentum) * running_mean + momentum * batch_mean
    new_var = (1 - momentum) * running_var + momentum * batch_var
    return new_mean, new_var


def forward_eps_1e3(x: F, gamma: F, beta: F, eps: float) -> F:
    """`forward` for a user whose layer always uses eps = 1e-3: refuses any other eps."""
    if eps != 1e-3:
        raise AssertionError(f"this layer's eps is 1e-3, got {eps!r}")
    return forward(x, gamma, beta, eps)


def forward_in_place(x: F, gamma: F, beta: F, eps: float) -> F:
    """WRONG: centers x in place before normalizing (the caller's x changes)."""
    mean, var = _stats(x)
    x -= mean
    y: F = gamma * x / np.sqrt(var + eps) + beta
    return y
