"""JAX targets: the programs XLA compiles, and a jax.numpy textbook batch norm (target `jax`).

`XlaTarget` is what every target computed by XLA shares (`jax`, `flax`, `flax-slow`,
`keras-jax`): a subclass writes the layer's training step and its inference as functions of
JAX arrays, and `XlaTarget` compiles two programs around them with `jax.jit`:

* training: (x, gamma, beta, running statistics, dy, eps, momentum) -> y, the new running
  statistics, and dx, dgamma, dbeta by `jax.vjp` -- what a user's jitted training step
  computes. `forward` reads the batch mean and variance as the running statistics after a step
  with momentum 0 from zeros (0 * 0 + 1 * mean is exact), `backward` takes the gradients,
  `update_running_stats` the running statistics and `layer_step` (gamma 1, beta 0) y and the
  running statistics of the same program;
* inference: (x, gamma, beta, running statistics, dy, eps) -> y and its `jax.vjp`
  (`inference`, `frozen_backward`).

eps and momentum are arguments of the programs, not constants: JAX traces a Python float
argument as a weakly typed scalar, so `var + eps` stays in var's dtype and `1 - momentum` is
computed in float64 (x64 is enabled) and rounded where it meets an array, exactly as with the
Python floats a user writes into the layer, and a new eps or momentum needs no new program. So
a program is compiled once per shape and dtype (`bnref.targets.channels_last`: channels padded
to a bucket, inference rows to a power of two): about 100 programs for `bnref check TARGET
--dtype float64,float32` instead of one per example and method.

64-bit floats: JAX computes in float32 unless `jax_enable_x64` is set; importing this module
sets it, as a user auditing float64 must (without it a float64 array silently becomes float32).
It changes nothing for the other dtypes: Python scalars stay weakly typed.

The `jax` target, convention "flax" (momentum weights the old value, biased running
variance): mean = jnp.mean(x, 0), var = jnp.mean((x - mean)**2, 0), y = gamma (x - mean) /
jnp.sqrt(var + eps) + beta, in x's dtype; gradients by `jax.vjp`; running statistics
momentum * r + (1 - momentum) * s as Flax writes them. It is the baseline of XLA itself: what
the platform's reductions and elementwise arithmetic give a plain two-pass batch norm (XLA on
the CPU flushes subnormal results to zero, which the tolerances' flush floor allows).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from bnref.targets import install_hint, numpy_dtype
from bnref.targets.channels_last import CHANNEL_BUCKET, ChannelsLastTarget, Kernel

try:
    import jax
    import jax.numpy as jnp
except ImportError as exc:
    raise ImportError(install_hint("jax", "JAX")) from exc

jax.config.update("jax_enable_x64", True)

# step(x, gamma=, beta=, mean=, var=, eps=, momentum=) -> (y, new running mean, new running var)
TrainStep = Callable[..., tuple[Any, Any, Any]]
# infer(x, gamma=, beta=, mean=, var=, eps=) -> y, with the running statistics mean and var
Inference = Callable[..., Any]


def training_program(step: TrainStep) -> Callable[..., tuple[Any, ...]]:
    """The jitted training program around `step`: y, the new running statistics and the
    gradients of sum(dy * y) with respect to x, gamma and beta."""

    def program(  # noqa: PLR0917 -- jax.jit's arguments, in the order of the calls below
        x: Any, gamma: Any, beta: Any, mean: Any, var: Any, dy: Any, eps: Any, momentum: Any
    ) -> tuple[Any, ...]:
        def layer(x: Any, gamma: Any, beta: Any) -> tuple[Any, tuple[Any, Any]]:
            y, new_mean, new_var = step(
                x, gamma=gamma, beta=beta, mean=mean, var=var, eps=eps, momentum=momentum
            )
            return y, (new_mean, new_var)

        y, vjp, (new_mean, new_var) = jax.vjp(layer, x, gamma, beta, has_aux=True)
        dx, dgamma, dbeta = vjp(jnp.asarray(dy, y.dtype))
        return y, new_mean, new_var, dx, dgamma, dbeta

    compiled: Callable[..., tuple[Any, ...]] = jax.jit(program)
    return compiled


def inference_program(infer: Inference) -> Callable[..., tuple[Any, ...]]:
    """The jitted inference program around `infer`: y and the gradients of sum(dy * y)."""

    def program(  # noqa: PLR0917 -- jax.jit's arguments, in the order of the calls below
        x: Any, gamma: Any, beta: Any, mean: Any, var: Any, dy: Any, eps: Any
    ) -> tuple[Any, ...]:
        def layer(x: Any, gamma: Any, beta: Any) -> Any:
            return infer(x, gamma=gamma, beta=beta, mean=mean, var=var, eps=eps)

        y, vjp = jax.vjp(layer, x, gamma, beta)
        dx, dgamma, dbeta = vjp(jnp.asarray(dy, y.dtype))
        return y, dx, dgamma, dbeta

    compiled: Callable[..., tuple[Any, ...]] = jax.jit(program)
    return compiled


class XlaTarget(ChannelsLastTarget):
    """A target whose layer is a JAX function, run as the two compiled programs of the module
    docstring. Subclasses set `_train` and `_infer` (see `training_program`)."""

    channel_bucket = CHANNEL_BUCKET
    pad_inference_rows = True

    def __init__(self, dtype: str, step: TrainStep, infer: Inference) -> None:
        super().__init__(dtype)
        self._train = training_program(step)
        self._infer = inference_program(infer)

    @staticmethod
    def _zeros(like: Kernel, dtype: str) -> Kernel:
        return np.zeros(np.shape(like), dtype=numpy_dtype(dtype))

    def _stats(self, gamma: Kernel) -> tuple[Kernel, Kernel]:
        """Zero running statistics for a step with momentum 0 (they get weight 0)."""
        zeros = self._zeros(gamma, self.stats_dtype)
        return zeros, zeros.copy()

    def train_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        mean, var = self._stats(gamma)
        y, new_mean, new_var, *_ = self._train(
            x, gamma, beta, mean, var, self._zeros(x, self.dtype), eps, 0.0
        )
        return y, new_mean, new_var

    def grad_kernel(
        self, dy: Kernel, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        mean, var = self._stats(gamma)
        *_, dx, dgamma, dbeta = self._train(x, gamma, beta, mean, var, dy, eps, 0.0)
        return dx, dgamma, dbeta

    def layer_kernel(
        self, x: Kernel, mean: Kernel, var: Kernel, *, momentum: float, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        c = np.shape(mean)[0]
        ones = np.ones(c, dtype=numpy_dtype(self.param_dtype))
        zeros = np.zeros(c, dtype=numpy_dtype(self.param_dtype))
        y, new_mean, new_var, *_ = self._train(
            x, ones, zeros, mean, var, self._zeros(x, self.dtype), eps, momentum
        )
        return y, new_mean, new_var

    def infer_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, mean: Kernel, var: Kernel, *, eps: float
    ) -> Kernel:
        y, *_ = self._infer(x, gamma, beta, mean, var, self._zeros(x, self.dtype), eps)
        return y

    def frozen_grad_kernel(
        self,
        dy: Kernel,
        x: Kernel,
        gamma: Kernel,
        beta: Kernel,
        *,
        mean: Kernel,
        var: Kernel,
        eps: float,
    ) -> tuple[Kernel, Kernel, Kernel]:
        _, dx, dgamma, dbeta = self._infer(x, gamma, beta, mean, var, dy, eps)
        return dx, dgamma, dbeta


def textbook_step(
    x: Any, *, gamma: Any, beta: Any, mean: Any, var: Any, eps: Any, momentum: Any
) -> tuple[Any, Any, Any]:
    """The textbook training step on (n, C) x: two-pass statistics, y, and the running
    statistics momentum * r + (1 - momentum) * s (biased variance)."""
    batch_mean = jnp.mean(x, axis=0)
    batch_var = jnp.mean(jnp.square(x - batch_mean), axis=0)
    y = gamma * (x - batch_mean) / jnp.sqrt(batch_var + eps) + beta
    new_mean = momentum * mean + (1 - momentum) * batch_mean
    new_var = momentum * var + (1 - momentum) * batch_var
    return y, new_mean, new_var


def textbook_inference(x: Any, *, gamma: Any, beta: Any, mean: Any, var: Any, eps: Any) -> Any:
    """y = gamma (x - running_mean) / sqrt(running_var + eps) + beta."""
    return gamma * (x - mean) / jnp.sqrt(var + eps) + beta


class JaxTextbookTarget(XlaTarget):
    """A jax.numpy textbook batch norm, gradients by jax.vjp: XLA's own arithmetic."""

    convention = "flax"

    def __init__(self, dtype: str = "float64") -> None:
        super().__init__(dtype, textbook_step, textbook_inference)
        self.framework = f"jax {jax.__version__} textbook (jax.numpy, jax.vjp)"
