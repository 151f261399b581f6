"""L2 weight decay: ``penalty = 0.5 * weight_decay * sum over weights of sum(W**2)``.

Only the weight matrices W are penalised -- not biases, gamma or beta -- as in DLFS's
MultiLayerNetExtend (``0.5 * lambda * np.sum(W**2)`` over W1..WL, gradient
``dW + lambda * W``; oreilly-japan/deep-learning-from-scratch, common/multi_layer_net_extend.py).
The gradient of the penalty with respect to each W is ``weight_decay * W``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from numpy.typing import ArrayLike

from reference._validation import Float64Array, as_float64_array, frozen, real_scalar


def check_weight_decay(weight_decay: object) -> float:
    """weight_decay (lambda) as a float after checking it is finite and >= 0."""
    value = real_scalar(weight_decay, "weight_decay")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(
            f"weight_decay (lambda) must be a finite number >= 0, got {weight_decay!r}"
        )
    return value


def l2_penalty(weights: Sequence[ArrayLike], weight_decay: float) -> float:
    """``0.5 * weight_decay * sum_W sum(W**2)``, the squares summed with math.fsum."""
    lam = check_weight_decay(weight_decay)
    if isinstance(weights, (str, bytes)) or not isinstance(weights, Sequence):
        raise TypeError(f"weights must be a sequence of arrays, got {type(weights).__name__}")
    squares = [
        math.fsum((as_float64_array(w, f"weights[{k}]") ** 2).ravel().tolist())
        for k, w in enumerate(weights)
    ]
    return 0.5 * lam * math.fsum(squares)


def l2_penalty_gradient(W: ArrayLike, weight_decay: float) -> Float64Array:
    """``d penalty / dW = weight_decay * W``."""
    lam = check_weight_decay(weight_decay)
    return frozen(lam * as_float64_array(W, "W"))
