"""The batch-norm layer's backward against central differences, in training mode and with
frozen statistics, and the broken backwards each check catches.

Training mode: the layer is seen through the adapter protocol and checked by the `gradients-fast`
property's check (`properties.gradient_props`, its own derivation). Frozen statistics: y is
linear in x, gamma and beta, so T = 0 in the bound model of tests/central_differences.py, and
the check's docstring derives E_L and A. Each check takes the layer's backward it checks
(default: the reference's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from central_differences import (
    SEEDS,
    U,
    against_central_differences,
    arrays_code,
    element_atol,
    fsum,
    g_n,
)
from claims import assert_holds, falsified
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

from properties.adapter import Array, BackwardOutput, ForwardOutput, ReferenceImplementation
from properties.framework import Measurement
from properties.gradient_props import GradientCase, check_gradients_fast, gradient_cases
from properties.strategies import EPS_VALUES, BatchCase, layouts
from properties.tolerances import exact_stats
from reference import layers
from reference.gradcheck import default_step
from reference.layers import (
    BatchNormConfig,
    BatchNormState,
    batch_norm_layer_backward,
    batch_norm_layer_forward,
    initial_state,
)
from reference.running_stats import RunningStats


class BatchNormLayerImplementation(ReferenceImplementation):
    """The batch-norm layer in training mode seen through the adapter protocol, so that
    `properties.gradient_props` checks the layer's forward and backward exactly as it checks
    `batch_norm_forward` / `batch_norm_backward`. `layer_backward` is the layer's backward
    (default: the reference's)."""

    def __init__(self, layer_backward: Callable[..., Any] = batch_norm_layer_backward) -> None:
        super().__init__()
        self._layer_backward = layer_backward

    @property
    def name(self) -> str:
        return "reference batch-norm layer"

    def _forward(
        self, x: Array, gamma: Array, beta: Array, eps: float, axis: int
    ) -> tuple[Array, Any]:
        channels = np.asarray(x).shape[axis]
        out = batch_norm_layer_forward(
            x,
            gamma,
            beta,
            initial_state(channels),
            mode="train",
            config=BatchNormConfig(eps=eps),
            axis=axis,
        )
        return out.y, out.cache

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        y, _ = self._forward(x, gamma, beta, eps, axis)
        stats = exact_stats(np.asarray(x, dtype=np.float64), axis, eps)
        return ForwardOutput(y, stats.mean, stats.var)

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        _, cache = self._forward(x, gamma, np.zeros_like(gamma), eps, axis)
        g = self._layer_backward(dy, cache)
        return BackwardOutput(g.dx, g.dgamma, g.dbeta)


def check_batch_norm_train_gradient(
    case: GradientCase, layer_backward: Callable[..., Any] = batch_norm_layer_backward
) -> list[Measurement]:
    """`properties.gradient_props.check_gradients_fast` on the layer in training mode: random
    projections against central differences with the `gradients-fast` property's derived
    bound, and the full element-wise check (which names the worst element) if a projection
    fails. The layer's training backward is `batch_norm_backward`, which the `gradients-full`
    property checks element by element; what is new here is the layer's wiring, which any
    projection sees."""
    return check_gradients_fast(BatchNormLayerImplementation(layer_backward), case)


@dataclass(frozen=True)
class FrozenCase:
    """A float64 batch case, running statistics of its channels, and an upstream gradient."""

    case: BatchCase
    running_mean: Array
    running_var: Array
    dy: Array

    def __repr__(self) -> str:
        return (
            f"FrozenCase(case={self.case!r}, "
            f"{arrays_code([self.running_mean, self.running_var, self.dy])})"
        )


@st.composite
def frozen_cases(draw: st.DrawFn) -> FrozenCase:
    """Any layout of up to 60 values (`strategies.layouts`; a single example is allowed at
    inference), values offset + spread * N(0, 1) per channel with |offset| <= 10 spread, gamma
    and beta of either sign, the strategies' eps values, and running statistics near the
    batch's (mean + noise, var * [0.5, 2]): the inference map of a trained layer."""
    layout = draw(layouts(min_count=1, max_size=60))
    rng = np.random.default_rng(draw(SEEDS))
    c, axis = layout.channels, layout.axis
    bshape = tuple(c if i == axis % len(layout.shape) else 1 for i in range(len(layout.shape)))
    spread = 10.0 ** rng.uniform(-3, 3, c)
    offset = spread * rng.uniform(-10, 10, c)
    x = offset.reshape(bshape) + spread.reshape(bshape) * rng.standard_normal(layout.shape)
    gamma = rng.uniform(-5, 5, c)
    beta = rng.uniform(-5, 5, c)
    eps = draw(st.sampled_from(EPS_VALUES))
    mean = offset + rng.standard_normal(c) * np.sqrt(spread**2 + eps)
    var = spread**2 * rng.uniform(0.5, 2.0, c)
    case = BatchCase(x, gamma, beta, eps, axis, "float64")
    return FrozenCase(case, mean, var, rng.standard_normal(layout.shape))


def check_batch_norm_frozen_gradient(
    fc: FrozenCase, layer_backward: Callable[..., Any] = batch_norm_layer_backward
) -> list[Measurement]:
    """The layer's "frozen" backward against central differences of its forward.

    y = a (x - rm) + beta with a = gamma / sqrt(rv + eps) (relative error 3u: +, sqrt, /):
    |y' - y| <= 5u |a (x - rm)| + u |y|, so E_L = sum |dy| (5u |a (x - rm)| + u|y|) + u sum|dy y|
    + u|L|. Linear in x, gamma and beta: T = 0. A: dx = dy (gamma inv) 5u |dx|;
    dgamma = sum dy x_hat_r (x_hat_r = (x - rm) inv, 5u) (6u + g_n) sum |dy x_hat_r|;
    dbeta g_n sum |dy| (n values per channel).
    """
    case, dy = fc.case, fc.dy
    state = BatchNormState(RunningStats(fc.running_mean, fc.running_var), 0)
    cfg = BatchNormConfig(eps=case.eps, frozen=True)

    def run(x: Array, gamma: Array, beta: Array) -> Any:
        return batch_norm_layer_forward(
            x, gamma, beta, state, mode="frozen", config=cfg, axis=case.axis
        )

    out = run(case.x, case.gamma, case.beta)
    grads = layer_backward(dy, out.cache)
    ax = case.axis % case.x.ndim
    bshape = tuple(-1 if i == ax else 1 for i in range(case.x.ndim))
    reduce = tuple(i for i in range(case.x.ndim) if i != ax)
    inv = 1 / np.sqrt(fc.running_var + case.eps)
    dev = case.x - fc.running_mean.reshape(bshape)
    scaled = (case.gamma * inv).reshape(bshape) * dev
    e_l = fsum(np.abs(dy) * (5 * U * np.abs(scaled) + U * np.abs(out.y)))
    e_l += U * fsum(np.abs(dy * out.y)) + U * abs(fsum(dy * out.y))
    n = case.x.size // fc.running_mean.size
    x_hat_r = dev * inv.reshape(bshape)
    a_x = 5 * U * np.abs(grads.dx)
    a_g = (6 * U + g_n(n)) * np.sum(np.abs(dy * x_hat_r), axis=reduce)
    a_b = g_n(n) * np.sum(np.abs(dy), axis=reduce)
    inputs = [case.x, case.gamma, case.beta]
    steps = [default_step(v) for v in inputs]
    analytic = [grads.dx, grads.dgamma, grads.dbeta]
    atols = [
        element_atol(e_l, h, 0.0, a, g)
        for h, a, g in zip(steps, [a_x, a_g, a_b], analytic, strict=True)
    ]

    def vjp(d: Array, x: Array, gamma: Array, beta: Array) -> tuple[Array, Array, Array]:
        g = layer_backward(d, run(x, gamma, beta).cache)
        return g.dx, g.dgamma, g.dbeta

    return against_central_differences(
        "batch-norm (frozen)",
        lambda x, g, b: run(x, g, b).y,
        vjp,
        inputs,
        upstream=dy,
        names=["dx", "dgamma", "dbeta"],
        steps=steps,
        atols=atols,
    )


@given(case=gradient_cases())
def test_batch_norm_layer_gradient_in_training_mode(case: GradientCase) -> None:
    """The batch-norm layer in training mode passes the `gradients-fast` check (falling back
    to the full check)."""
    assert_holds(check_batch_norm_train_gradient(case))


@given(fc=frozen_cases())
def test_batch_norm_layer_gradient_with_frozen_statistics(fc: FrozenCase) -> None:
    """The batch-norm layer with frozen statistics: dx, dgamma, dbeta equal central
    differences within the derived bound."""
    assert_holds(check_batch_norm_frozen_gradient(fc))


# --- each check catches a broken backward --------------------------------------------------


def _no_shrink() -> settings:
    """The active profile's settings without the shrink phase: a minimal example is not the
    point, and shrinking a failing gradient check is slow."""
    return settings(phases=[Phase.explicit, Phase.reuse, Phase.generate])


def test_frozen_check_catches_an_unnormalized_dgamma() -> None:
    def raw_dgamma(dout: Any, cache: Any) -> layers.BatchNormGrads:
        g = batch_norm_layer_backward(dout, cache)
        inv = 1 / np.sqrt(cache.running.var + cache.eps)
        return layers.BatchNormGrads(g.dx, g.dgamma / inv, g.dbeta)

    failure = falsified(
        lambda fc: assert_holds(check_batch_norm_frozen_gradient(fc, raw_dgamma)),
        frozen_cases(),
        _no_shrink(),
    )
    assert "dgamma relative error" in failure


def test_train_check_catches_the_frozen_backward() -> None:
    """The training-mode layer differentiated as if its statistics were constants."""

    def as_frozen(dout: Any, cache: Any) -> layers.BatchNormGrads:
        x = cache.x
        axes = tuple(i for i in range(x.ndim) if i != cache.axis)
        mean = x.mean(axis=axes)
        var = x.var(axis=axes)
        frozen = cache._replace(mode="frozen", running=RunningStats(mean, var))
        return batch_norm_layer_backward(dout, frozen)

    falsified(
        lambda case: assert_holds(check_batch_norm_train_gradient(case, as_frozen)),
        gradient_cases(),
        _no_shrink(),
    )
