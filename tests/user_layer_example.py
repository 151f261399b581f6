"""A user's batch-norm layer step, written as a user would (channels at axis 1, PyTorch's
convention: running variance unbiased, momentum the weight of the new batch), and planted
mistakes in it, for `bnref check MOD:FN --layer MOD:FN`."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]


def _axes(x: Array) -> tuple[int, ...]:
    return tuple(i for i in range(x.ndim) if i != 1)


def _shape(x: Array) -> tuple[int, ...]:
    return tuple(-1 if i == 1 else 1 for i in range(x.ndim))


def layer(
    x: Array, running_mean: Array, running_var: Array, momentum: float, eps: float
) -> tuple[Array, Array, Array]:
    """One training step: y from the two-pass batch statistics, then
    running = (1 - momentum) running + momentum batch (variance unbiased)."""
    axes = _axes(x)
    n = x.size // x.shape[1]
    mean = x.mean(axis=axes)
    var = ((x - mean.reshape(_shape(x))) ** 2).mean(axis=axes)
    y = (x - mean.reshape(_shape(x))) / np.sqrt(var.reshape(_shape(x)) + eps)
    new_mean = (1 - momentum) * running_mean + momentum * mean
    new_var = (1 - momentum) * running_var + momentum * var * n / (n - 1)
    return y, new_mean, new_var


def layer_one_pass_running_var(
    x: Array, running_mean: Array, running_var: Array, momentum: float, eps: float
) -> tuple[Array, Array, Array]:
    """y is right, but the running variance is fed from a one-pass E[x^2] - E[x]^2."""
    y, new_mean, _ = layer(x, running_mean, running_var, momentum, eps)
    axes = _axes(x)
    n = x.size // x.shape[1]
    one_pass = (x**2).mean(axis=axes) - x.mean(axis=axes) ** 2
    new_var = (1 - momentum) * running_var + momentum * one_pass * n / (n - 1)
    return y, new_mean, new_var


def layer_momentum_swapped(
    x: Array, running_mean: Array, running_var: Array, momentum: float, eps: float
) -> tuple[Array, Array, Array]:
    """Keras's meaning of momentum under PyTorch's convention: momentum weights the old value."""
    return layer(x, running_mean, running_var, 1 - momentum, eps)


def layer_without_eps(
    x: Array, running_mean: Array, running_var: Array, momentum: float
) -> tuple[Array, Array, Array]:
    """The wrong arity: no eps."""
    return layer(x, running_mean, running_var, momentum, 1e-5)


def layer_returning_two(
    x: Array, running_mean: Array, running_var: Array, momentum: float, eps: float
) -> tuple[Array, Array]:
    """The wrong return: no y."""
    _, new_mean, new_var = layer(x, running_mean, running_var, momentum, eps)
    return new_mean, new_var
