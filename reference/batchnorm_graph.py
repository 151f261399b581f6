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

The graph is walked on ``x * 2**-k`` with ``eps * 4**-k``, k per channel the exponent of the
larger of max|x| and sqrt(eps), so that every node is at most about 1 in size: x = +-1e154
has squares whose sum overflows, x = +-1e-160 squares that underflow, yet the gradients exist.
Batch norm transforms simply under this scaling: xhat, dgamma and dbeta are unchanged and dx
is that of ``x * 2**-k`` times 2**-k. Multiplying by a power of two changes only the exponent,
so where no node overflows or is subnormal the scaled walk gives the unscaled one's results
bit for bit. mu is the two-pass mean of `reference.batchnorm.batch_statistics`, so that a
constant channel has xmu = 0 exactly; its xhat is 0 and dx = gamma/sqrt(eps) * (dy - mean(dy))
at any size of x, so there eps and dx are scaled by sqrt(eps)'s exponent alone (eps * 4**-k
could underflow). From finite arguments, a result beyond float64 raises a ValueError.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference._validation import Float64Array, frozen
from reference.batchnorm import (
    DEFAULT_EPS,
    BatchNormBackward,
    backward_arguments,
    batch_statistics,
)
from reference.float_range import check_gradients_fit


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

    Same arguments and result as `batch_norm_backward`; see the module docstring for the graph
    and its power-of-two scaling. From finite arguments, a gradient or the node ``dy * gamma``
    beyond float64 (at most 1.8e308) raises a ValueError instead of returning inf or NaN.
    """
    dout, x64, gamma64, eps_, layout = backward_arguments(
        dy, x, gamma, eps=eps, axis=axis, check_finite=check_finite
    )
    g = layout.expand(gamma64)
    n = layout.count

    def channel_sum(values: Float64Array) -> Float64Array:
        total: Float64Array = np.sum(values, axis=layout.reduce_axes, keepdims=True)
        return total

    # The scale, per channel: 2**k_x > max|x|, 2**k_eps > sqrt(eps) (module docstring).
    k_x = np.frexp(np.max(np.abs(x64), axis=layout.reduce_axes, keepdims=True))[1]
    k_eps = np.frexp(np.sqrt(eps_))[1]
    k: NDArray[np.int_] = np.maximum(k_x, k_eps)

    with np.errstate(over="ignore", invalid="ignore"):  # overflow: ValueError below
        # Forward, keeping every intermediate node, on x * 2**-k.
        xs = np.ldexp(x64, -k)
        mu = layout.expand(batch_statistics(xs, layout, eps_)[0])  # (1/n) sum(x), two-pass
        xmu = xs - mu
        sq = xmu**2
        var = channel_sum(sq) / n
        k = np.where(np.any(xmu != 0, axis=layout.reduce_axes, keepdims=True), k, k_eps)
        eps_k = np.ldexp(eps_, -2 * k)  # eps * 4**-k
        sqrtvar = np.sqrt(var + eps_k)
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
        dvar = 0.5 / np.sqrt(var + eps_k) * dsqrtvar  # sqrtvar = sqrt(var + eps)
        dsq = np.ones_like(sq) / n * dvar  # var = mean(sq)
        dxmu2 = 2.0 * xmu * dsq  # sq = xmu ** 2
        dx1 = dxmu1 + dxmu2  # xmu = x - mu: x gets both branches that reach xmu
        dmu = -channel_sum(dx1)
        dx2 = np.ones_like(x64) / n * dmu  # mu = mean(x)
        dx = np.ldexp(dx1 + dx2, -k)  # the gradient with respect to x, not x * 2**-k

    check_gradients_fit((dx, dgamma, dbeta), dout, x64, gamma64, layout.axis)  # inf, NaN: overflow
    return BatchNormBackward(
        dx=frozen(dx),
        dgamma=frozen(dgamma.reshape(layout.channels)),
        dbeta=frozen(dbeta.reshape(layout.channels)),
    )
