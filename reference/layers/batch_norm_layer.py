"""The batch-norm layer: `batch_norm_forward` / `backward` / `inference` plus running statistics.

Modes:

    "train"   y from the batch's own mean and biased variance (`batch_norm_forward`); the new
              running statistics are `update_running_stats` under the configured convention;
              backward is `batch_norm_backward`.
    "eval"    y = gamma (x - running_mean) / sqrt(running_var + eps) + beta
              (`batch_norm_inference`); the statistics are left as they are.
    "frozen"  the same function as "eval", used while training (statistics frozen, gamma and
              beta still learnt); its backward is that of the fixed affine map:
              dx = dy * gamma / sqrt(running_var + eps),
              dgamma = sum(dy * (x - running_mean) / sqrt(running_var + eps)), dbeta = sum(dy).

The state is a `BatchNormState`: the running statistics and the number of training batches seen
(PyTorch's num_batches_tracked, needed for its momentum=None cumulative average). A training
step returns a new state; nothing is updated in place. Initial statistics are mean 0 and
variance 1, as in PyTorch (reset_running_stats) and Keras (moving_variance_initializer="ones").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from reference._validation import (
    Float64Array,
    as_float64_array,
    check_channel_vector,
    check_int,
    check_positive_scalar,
    check_same_shape,
    frozen,
)
from reference.batchnorm import (
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_inference,
    channel_layout,
)
from reference.conventions import get_convention
from reference.running_stats import (
    CONVENTION_DEFAULT,
    MomentumDefault,
    RunningStats,
    update_running_stats,
)

BatchNormMode = Literal["train", "eval", "frozen"]
MODES: tuple[BatchNormMode, ...] = ("train", "eval", "frozen")
# The momentum argument of update_running_stats: a float, None (PyTorch's cumulative average)
# or CONVENTION_DEFAULT (the convention's own momentum).
Momentum = float | None | MomentumDefault


@dataclass(frozen=True)
class BatchNormConfig:
    """The running-statistics convention (a key of `reference.CONVENTIONS`), its momentum
    (default: the convention's; None: PyTorch's cumulative average), eps (default: the
    convention's) and whether the statistics are frozen while training."""

    convention: str = "textbook"
    momentum: Momentum = CONVENTION_DEFAULT
    eps: float | None = None
    frozen: bool = False

    def __post_init__(self) -> None:
        conv = get_convention(self.convention)  # raises for an unknown name
        if self.eps is not None:
            check_positive_scalar(self.eps, "eps")
        if not isinstance(self.frozen, bool):
            raise TypeError(f"frozen must be a bool, got {type(self.frozen).__name__}")
        # Validate the momentum now rather than at the first training step: one update of
        # dummy statistics raises exactly what update_running_stats would raise then.
        one, zero = np.ones(1), np.zeros(1)
        update_running_stats(
            zero, one, zero, zero, 2, convention=conv, momentum=self.momentum, num_batches_tracked=1
        )

    @property
    def epsilon(self) -> float:
        """eps, or the convention's default when eps is None."""
        return self.eps if self.eps is not None else get_convention(self.convention).eps


@dataclass(frozen=True)
class BatchNormState:
    """Running statistics (each (C,)) and the number of training batches seen so far."""

    running: RunningStats
    num_batches_tracked: int = 0


def initial_state(channels: int) -> BatchNormState:
    """running_mean = 0, running_var = 1, no batch seen."""
    c = check_int(channels, "channels", minimum=1)
    return BatchNormState(RunningStats(frozen(np.zeros(c)), frozen(np.ones(c))), 0)


class BatchNormCache(NamedTuple):
    """What the backward pass needs: mode, a private copy of x, gamma, eps, axis, and the
    running statistics used in "eval"/"frozen" mode."""

    mode: BatchNormMode
    x: Float64Array
    gamma: Float64Array
    eps: float
    axis: int
    running: RunningStats


class BatchNormLayerOutput(NamedTuple):
    """y (x's shape), the cache, and the state after this step."""

    y: Float64Array
    cache: BatchNormCache
    state: BatchNormState


class BatchNormGrads(NamedTuple):
    """dL/dx (x's shape), dL/dgamma and dL/dbeta (C,)."""

    dx: Float64Array
    dgamma: Float64Array
    dbeta: Float64Array


def batch_norm_layer_forward(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    state: BatchNormState,
    *,
    mode: BatchNormMode,
    config: BatchNormConfig | None = None,
    axis: int = 1,
) -> BatchNormLayerOutput:
    """Batch norm of x over every axis but `axis` (see the module docstring for the modes).

    "train": y = gamma (x - mean) / sqrt(var + eps) + beta with the batch statistics, and the
    state's statistics become `update_running_stats(..., count=n, convention, momentum,
    num_batches_tracked=k+1)`. "eval"/"frozen": y = `batch_norm_inference` with the state's
    statistics, and the state is returned unchanged.
    """
    cfg = config if config is not None else BatchNormConfig()
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if not isinstance(state, BatchNormState):
        raise TypeError(f"state must be a BatchNormState, got {type(state).__name__}")
    eps = cfg.epsilon
    x64 = as_float64_array(x, "x")
    layout = channel_layout(x64, axis)
    c = layout.channels
    g = check_channel_vector(gamma, "gamma", c)
    cache_x = frozen(x64.copy())
    if mode == "train":
        fwd = batch_norm_forward(x64, g, beta, eps=eps, axis=layout.axis)
        k = state.num_batches_tracked + 1
        running = update_running_stats(
            state.running.mean,
            state.running.var,
            fwd.mean,
            fwd.var,
            layout.count,
            convention=cfg.convention,
            momentum=cfg.momentum,
            num_batches_tracked=k,
        )
        cache = BatchNormCache(mode, cache_x, frozen(g.copy()), eps, layout.axis, running)
        return BatchNormLayerOutput(fwd.y, cache, BatchNormState(running, k))
    y = batch_norm_inference(
        x64, g, beta, state.running.mean, state.running.var, eps=eps, axis=layout.axis
    )
    cache = BatchNormCache(mode, cache_x, frozen(g.copy()), eps, layout.axis, state.running)
    return BatchNormLayerOutput(y, cache, state)


def batch_norm_layer_backward(dout: ArrayLike, cache: BatchNormCache) -> BatchNormGrads:
    """ "train": `batch_norm_backward`. "eval"/"frozen": dx = dy gamma / sqrt(rv + eps),
    dgamma = sum(dy (x - rm) / sqrt(rv + eps)), dbeta = sum(dy), sums over all but `axis`."""
    dy = as_float64_array(dout, "dout")
    check_same_shape(dy, "dout", cache.x.shape, "the layer's output")
    if cache.mode == "train":
        g = batch_norm_backward(dy, cache.x, cache.gamma, eps=cache.eps, axis=cache.axis)
        return BatchNormGrads(g.dx, g.dgamma, g.dbeta)
    layout = channel_layout(cache.x, cache.axis)
    inv_std = 1 / np.sqrt(cache.running.var + cache.eps)
    x_hat = (cache.x - layout.expand(cache.running.mean)) * layout.expand(inv_std)
    dx = dy * layout.expand(cache.gamma * inv_std)
    dgamma = np.sum(dy * x_hat, axis=layout.reduce_axes)
    dbeta = np.sum(dy, axis=layout.reduce_axes)
    return BatchNormGrads(frozen(dx), frozen(dgamma), frozen(dbeta))
