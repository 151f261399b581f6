"""Batch-norm backward pass node by node, following the computation graph of the course notes.

The forward graph, per channel over the n values that share it::

    mu      = (1/n) * sum(x)          xmu     = x - mu
    sq      = xmu ** 2                var     = (1/n) * sum(sq)
    sqrtvar = sqrt(var + eps)         ivar    = 1 / sqrtvar
    xhat    = xmu * ivar              gammax  = gamma * xhat
    out     = gammax + beta

`batch_norm_backward_graph` walks it in reverse, one local derivative per node, exactly as drawn.
It is deliberately unoptimised: its job is to be checkable by eye and to agree with the closed
form in `reference.batchnorm.batch_norm_backward` (the tests prove they agree to rounding).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from reference._validation import Float64Array, frozen
from reference.batchnorm import DEFAULT_EPS, BatchNormBackward, backward_arguments


def batch_norm_backward_graph(
    dy: ArrayLike,
    x: ArrayLike,
    gamma: ArrayLike,
    *,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
    check_finite: bool = True,
) -> BatchNormBackward:
    """Gradients of training-mode batch norm by reverse traversal of the computation graph.

    Same arguments and result as `batch_norm_backward`; see the module docstring for the graph.
    """
    dout, x64, gamma64, eps_, layout = backward_arguments(
        dy, x, gamma, eps=eps, axis=axis, check_finite=check_finite
    )
    g = layout.expand(gamma64)
    n = layout.count

    def channel_sum(values: Float64Array) -> Float64Array:
        total: Float64Array = np.sum(values, axis=layout.reduce_axes, keepdims=True)
        return total

    # Forward, keeping every intermediate node.
    mu = channel_sum(x64) / n
    xmu = x64 - mu
    sq = xmu**2
    var = channel_sum(sq) / n
    sqrtvar = np.sqrt(var + eps_)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar

    # Backward, node by node in reverse order.
    dbeta = channel_sum(dout)  # out = gammax + beta
    dgammax = dout
    dgamma = channel_sum(dgammax * xhat)  # gammax = gamma * xhat
    dxhat = dgammax * g
    divar = channel_sum(dxhat * xmu)  # xhat = xmu * ivar
    dxmu1 = dxhat * ivar
    dsqrtvar = -1.0 / sqrtvar**2 * divar  # ivar = 1 / sqrtvar
    dvar = 0.5 / np.sqrt(var + eps_) * dsqrtvar  # sqrtvar = sqrt(var + eps)
    dsq = np.ones_like(sq) / n * dvar  # var = mean(sq)
    dxmu2 = 2.0 * xmu * dsq  # sq = xmu ** 2
    dx1 = dxmu1 + dxmu2  # xmu = x - mu: x gets both branches that reach xmu
    dmu = -channel_sum(dx1)
    dx2 = np.ones_like(x64) / n * dmu  # mu = mean(x)
    dx = dx1 + dx2

    return BatchNormBackward(
        dx=frozen(dx),
        dgamma=frozen(dgamma.reshape(layout.channels)),
        dbeta=frozen(dbeta.reshape(layout.channels)),
    )
