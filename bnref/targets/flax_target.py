"""Flax's `flax.linen.BatchNorm` behind the `Implementation` protocol (targets `flax`, `flax-slow`).

What each method runs (flax/linen/normalization.py of the installed Flax, read: `BatchNorm.
__call__`, `_compute_stats`, `_normalize`), as the two compiled programs of
`bnref.targets.jax_target.XlaTarget` on (n, C) batches, channels last (axis=-1, Flax's default):

* the training step: `nn.BatchNorm(use_running_average=False, momentum=m, epsilon=eps,
  use_fast_variance=...)` applied with `mutable=["batch_stats"]` to the given parameters
  {"scale": gamma, "bias": beta} and batch statistics {"mean", "var"}: y, and the layer's own
  update ra = momentum * ra + (1 - momentum) * s with its own batch statistics s
  (`_compute_stats`: the biased variance; with `use_fast_variance=True`, Flax's default,
  E[x**2] - E[x]**2 clipped at 0, else the mean of the squared deviations). Gradients by
  `jax.vjp` through the layer. Convention "flax".
* inference: the same layer with `use_running_average=True`, and `jax.vjp` through it.

`flax` is the layer as constructed by default (`use_fast_variance=True`); `flax-slow` sets
`use_fast_variance=False`. Parameters are given in the audited dtype (`param_dtype`), `dtype`
is left None (Flax infers it from x and the parameters). Flax keeps the batch statistics in
float32 when `force_float32_reductions` (the default) and computes them in at least float32
(`_compute_stats` promotes x to float32), so the running statistics are given in float32 for
float16 and bfloat16 and in the audited dtype otherwise (a float64 layer's float32 zeros
become float64 at its first update).
"""

from __future__ import annotations

from typing import Any

from bnref.targets import install_hint

try:
    import flax
    import flax.linen as nn
    import jax
except ImportError as exc:
    raise ImportError(install_hint("flax", "Flax (and JAX)")) from exc

from bnref.targets.jax_target import XlaTarget


def _layer(*, training: bool, eps: Any, momentum: Any, fast: bool) -> nn.BatchNorm:
    return nn.BatchNorm(
        use_running_average=not training,
        axis=-1,
        momentum=momentum,
        epsilon=eps,
        use_fast_variance=fast,
    )


def _variables(gamma: Any, beta: Any, mean: Any, var: Any) -> dict[str, Any]:
    return {"params": {"scale": gamma, "bias": beta}, "batch_stats": {"mean": mean, "var": var}}


class FlaxTarget(XlaTarget):
    """flax.linen.BatchNorm, in `dtype`; `fast_variance` is its `use_fast_variance`."""

    convention = "flax"

    def __init__(self, dtype: str = "float64", *, fast_variance: bool = True) -> None:
        fast = bool(fast_variance)

        def step(
            x: Any, *, gamma: Any, beta: Any, mean: Any, var: Any, eps: Any, momentum: Any
        ) -> tuple[Any, Any, Any]:
            layer = _layer(training=True, eps=eps, momentum=momentum, fast=fast)
            y, state = layer.apply(_variables(gamma, beta, mean, var), x, mutable=["batch_stats"])
            stats = state["batch_stats"]
            return y, stats["mean"], stats["var"]

        def infer(x: Any, *, gamma: Any, beta: Any, mean: Any, var: Any, eps: Any) -> Any:
            layer = _layer(training=False, eps=eps, momentum=0.99, fast=fast)
            return layer.apply(_variables(gamma, beta, mean, var), x)

        super().__init__(dtype, step, infer)
        self.fast_variance = fast
        self.framework = (
            f"flax {flax.__version__} (jax {jax.__version__}) linen.BatchNorm"
            f"(use_fast_variance={fast})"
        )

    @property
    def stats_dtype(self) -> str:
        return "float32" if self.dtype in ("float16", "bfloat16") else self.dtype
