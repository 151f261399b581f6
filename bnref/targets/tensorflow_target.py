"""TensorFlow's fused batch norm kernel on the CPU behind the `Implementation` protocol (target
`tensorflow`).

`tf.compat.v1.nn.fused_batch_norm` (tensorflow/python/ops/nn_impl.py of the installed
TensorFlow, read) passes its arguments to the op FusedBatchNormV3 unchanged (no epsilon clamp in
this version) and returns three of its outputs; the adapter calls the op itself,
`tf.raw_ops.FusedBatchNormV3`, for the fourth (tensorflow/core/kernels/fused_batch_norm_op.cc,
CPU kernel), on NHWC batches (n, 1, 1, C) (`bnref.targets.channels_last`):

* forward: is_training=True, exponential_avg_factor=1: y; `reserve_space_1` the batch mean and
  `reserve_space_2` the biased batch variance the kernel normalizes with (the output
  `batch_variance` is the Bessel-corrected n/(n-1) one, for the running statistics);
* backward: tf.GradientTape through the same call (the registered gradient,
  FusedBatchNormGradV3);
* inference: is_training=False with the given mean and variance, and its GradientTape for
  `frozen_backward`;
* update_running_stats: is_training=True with the running statistics as `mean` and `variance`
  and exponential_avg_factor = 1 - momentum: the outputs `batch_mean` and `batch_variance` are
  (1 - f) * running + f * batch statistic with the variance unbiased, convention "tensorflow"
  (momentum weights the old value, as tf.keras 2 passes it). The factor is a float attribute:
  TensorFlow rounds 1 - momentum to float32. `layer_step` is that call with gamma 1, beta 0 and
  the given eps: y and the new running statistics.

The op's T (x and y) is half, bfloat16 or float, its U (scale, offset, statistics) float: the
target computes in float32, float16 or bfloat16, with gamma, beta and the running statistics in
float32. There is no float64 kernel: at float64 every method raises TargetLacks and every
property is reported not applicable.

Importing this module limits TensorFlow to one intra-op and one inter-op thread (before its
runtime starts): the audit's batches are small, and on a shared machine more threads only wait
for each other.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bnref.targets import TargetLacks, install_hint
from bnref.targets.channels_last import ChannelsLastTarget, Kernel

try:
    import tensorflow as tf
except ImportError as exc:
    raise ImportError(install_hint("tensorflow", "TensorFlow")) from exc

try:
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:  # pragma: no cover -- the runtime had started (Keras imported it first)
    pass

_KERNEL_DTYPES = ("float32", "float16", "bfloat16")


class FusedBatchNormTarget(ChannelsLastTarget):
    """tf.compat.v1.nn.fused_batch_norm (FusedBatchNormV3) on the CPU, NHWC, in `dtype`."""

    convention = "tensorflow"

    def __init__(self, dtype: str = "float32") -> None:
        super().__init__(dtype)
        self.framework = f"tensorflow {tf.__version__} fused_batch_norm"

    @property
    def param_dtype(self) -> str:
        return "float32"

    @property
    def stats_dtype(self) -> str:
        return "float32"

    def _check(self, method: str) -> None:
        if self.dtype not in _KERNEL_DTYPES:
            raise TargetLacks(
                self.name,
                method,
                f"FusedBatchNormV3 has no {self.dtype} kernel (its T is half, bfloat16 or float)",
            )

    @staticmethod
    def _nhwc(x: Kernel) -> Any:
        n, c = np.shape(x)
        return tf.reshape(tf.constant(x), (n, 1, 1, c))

    @staticmethod
    def _rows(y: Any) -> Kernel:
        return np.asarray(tf.reshape(y, (y.shape[0], y.shape[3])))

    @staticmethod
    def _op(x: Any, gamma: Any, beta: Any, *, mean: Any, var: Any, **attrs: Any) -> Any:
        return tf.raw_ops.FusedBatchNormV3(
            x=x, scale=gamma, offset=beta, mean=mean, variance=var, data_format="NHWC", **attrs
        )

    def _empty(self) -> Any:
        return tf.zeros((0,), tf.float32)  # no running statistics: exponential_avg_factor 1

    def train_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        self._check("forward")
        out = self._op(
            self._nhwc(x),
            gamma,
            beta,
            mean=self._empty(),
            var=self._empty(),
            epsilon=eps,
            is_training=True,
        )
        return self._rows(out.y), np.asarray(out.reserve_space_1), np.asarray(out.reserve_space_2)

    def _tape(
        self, dy: Kernel, x: Kernel, gamma: Kernel, beta: Kernel, **attrs: Any
    ) -> tuple[Kernel, Kernel, Kernel]:
        """The gradients of sum(dy * y) for the op with `attrs` (mean and variance included)."""
        xt, gt, bt = self._nhwc(x), tf.constant(gamma), tf.constant(beta)
        with tf.GradientTape() as tape:
            tape.watch([xt, gt, bt])
            y = self._op(xt, gt, bt, **attrs).y
        dx, dgamma, dbeta = tape.gradient(y, [xt, gt, bt], output_gradients=self._nhwc(dy))
        return self._rows(dx), np.asarray(dgamma), np.asarray(dbeta)

    def grad_kernel(
        self, dy: Kernel, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        self._check("backward")
        empty = self._empty()
        return self._tape(dy, x, gamma, beta, mean=empty, var=empty, epsilon=eps, is_training=True)

    def infer_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, mean: Kernel, var: Kernel, *, eps: float
    ) -> Kernel:
        self._check("inference")
        out = self._op(
            self._nhwc(x), gamma, beta, mean=mean, var=var, epsilon=eps, is_training=False
        )
        return self._rows(out.y)

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
        self._check("frozen_backward")
        return self._tape(dy, x, gamma, beta, mean=mean, var=var, epsilon=eps, is_training=False)

    def layer_kernel(
        self, x: Kernel, mean: Kernel, var: Kernel, *, momentum: float, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        self._check("a training step")
        c = np.shape(mean)[0]
        ones, zeros = np.ones(c, np.float32), np.zeros(c, np.float32)
        out = self._op(
            self._nhwc(x),
            ones,
            zeros,
            mean=mean,
            var=var,
            epsilon=eps,
            is_training=True,
            exponential_avg_factor=1.0 - momentum,
        )
        return self._rows(out.y), np.asarray(out.batch_mean), np.asarray(out.batch_variance)
