"""What the channels-last targets (jax, flax, keras-*, tensorflow) share: the layout, the dtypes
and the five methods of the `Implementation` protocol, written once over five kernels.

Flax and Keras normalize over every axis but the last by default (axis=-1) and TensorFlow's
fused kernel takes NHWC. Batch norm per channel reduces over every other axis, so an adapter
hands the framework x as a 2-D batch (n, C): the channel axis moved last and the other axes
flattened into one. Each channel's n values are the same multiset whatever the order and
grouping of the other axes, so no statistic changes; `Flat` records how to undo the move.

Shape buckets. XLA (jax, flax, keras-jax) compiles a program per input shape, about 0.1-0.3 s
each on a 2-core machine, and the properties draw a new shape for nearly every example. Two
paddings change no result of the real channels and rows, and let one program serve many shapes:

* channels: extra channels of their own (x = 0, gamma = 1, beta = 0, running mean 0 and running
  variance 1, dy = 0) up to a multiple of `CHANNEL_BUCKET`. Channels never mix: each real
  channel's statistics, outputs and gradients are those of the unpadded call.
* rows, in inference mode only: each example's output depends on its own row and the running
  statistics alone (the property `inference-per-example` checks exactly that), so rows with
  x = running_mean and dy = 0 (x_hat = 0, nothing can overflow) pad n up to a power of two
  (`row_bucket`). They add exact zeros to the sums of the frozen backward's dgamma and dbeta.
  A training batch is never padded: every row enters the batch statistics.

What is left is one compile per (n, dtype) in training mode and per (row bucket, dtype) in
inference mode.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from bnref.targets import TargetLacks, check_dtype, to_dtype
from properties.adapter import Array, BackwardOutput, ForwardOutput, RunningStats
from reference._validation import normalize_axis

CHANNEL_BUCKET = 32  # the strategies draw at most 24 channels: one program for all of them
MIN_ROW_BUCKET = 8


def row_bucket(n: int) -> int:
    """The padded row count of an inference batch of n rows: the next power of two, at least
    MIN_ROW_BUCKET."""
    return max(MIN_ROW_BUCKET, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


@dataclass(frozen=True)
class Flat:
    """How x (channel axis `axis`) becomes the (n, padded) batch of a channels-last framework.

    `moved` is x's shape with the channel axis last; `channels` is C and `padded` >= C the
    number of columns handed over (C plus independent padding channels).
    """

    moved: tuple[int, ...]
    axis: int
    channels: int
    padded: int

    @classmethod
    def of(cls, x: Array, axis: int, *, bucket: int, target: str, method: str) -> Flat:
        """The layout of x: at least 2 dimensions (N, C, ...); TargetLacks otherwise."""
        if x.ndim < 2:
            raise TargetLacks(
                target, method, f"x must have at least 2 dimensions (N, C, ...), got {x.shape}"
            )
        ax = normalize_axis(axis, x.ndim)
        moved = (*x.shape[:ax], *x.shape[ax + 1 :], x.shape[ax])
        c = x.shape[ax]
        padded = bucket * max(1, -(-c // bucket)) if bucket else c
        return cls(moved, ax, c, padded)

    @property
    def rows(self) -> int:
        """n, the number of values per channel."""
        return math.prod(self.moved[:-1])

    def matrix(self, values: Array, fill: float = 0.0) -> Array:
        """An x-shaped array as the (n, padded) batch, padding columns set to `fill`."""
        m = np.moveaxis(np.asarray(values, dtype=np.float64), self.axis, -1).reshape(
            self.rows, self.channels
        )
        return self._pad(m, fill)

    def vector(self, values: Array, fill: float) -> Array:
        """A (C,) per-channel vector padded to (padded,) with `fill`."""
        row: Array = self._pad(np.asarray(values, dtype=np.float64).reshape(1, -1), fill)[0]
        return row

    def _pad(self, m: Array, fill: float) -> Array:
        if self.padded == self.channels:
            return m
        out = np.full((m.shape[0], self.padded), fill, dtype=np.float64)
        out[:, : self.channels] = m
        return out

    def restore(self, rows: Any) -> Array:
        """The (n', padded) result (n' >= n: padding rows are dropped) in x's layout, float64."""
        m = as_float64(rows)[: self.rows, : self.channels]
        return np.moveaxis(m.reshape(self.moved), -1, self.axis)

    def per_channel(self, vector: Any) -> Array:
        """A (padded,) per-channel result without its padding, float64."""
        return as_float64(vector)[: self.channels]


def as_float64(value: Any) -> Array:
    """A float64 NumPy copy of a framework's array (a NumPy, JAX, TensorFlow array or a
    detached CPU torch tensor converted by the caller)."""
    return np.array(np.asarray(value), dtype=np.float64)


def pad_rows(m: Array, rows: int, fill: Array) -> Array:
    """m (n, C) with rows added up to `rows`, each equal to `fill` (C,)."""
    if m.shape[0] == rows:
        return m
    out = np.empty((rows, m.shape[1]), dtype=np.float64)
    out[: m.shape[0]] = m
    out[m.shape[0] :] = fill
    return out


Kernel = Any  # an array in the framework's own type, as its kernels take and return it


class ChannelsLastTarget(ABC):
    """The `Implementation` protocol (and the optional `frozen_backward`) over five kernels on
    2-D (n, C) batches, which subclasses write in their framework.

    Arguments reach a kernel as NumPy arrays rounded to the target's dtype (`to_dtype`; a
    value beyond its range is refused there): x and dy in `dtype`, gamma and beta in
    `param_dtype`, running statistics in `stats_dtype` (the dtypes the framework's own layer
    keeps them in). eps and momentum are passed as Python floats, as a user passes them. A
    kernel may return any array NumPy can read; it becomes float64 here.
    """

    convention = ""  # a key of reference.CONVENTIONS: what momentum means
    framework = ""  # e.g. "flax 0.12.8 (jax 0.10.2)"
    channel_bucket = 0  # pad the channels to a multiple of this (0: never)
    pad_inference_rows = False  # pad inference batches to `row_bucket` rows

    def __init__(self, dtype: str) -> None:
        self._dtype = check_dtype(dtype)

    @property
    def name(self) -> str:
        return f"{self.framework} {self._dtype}"

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def param_dtype(self) -> str:
        """The dtype gamma and beta are given in."""
        return self._dtype

    @property
    def stats_dtype(self) -> str:
        """The dtype the running statistics are given in."""
        return self._dtype

    # --- the kernels -----------------------------------------------------------------------

    @abstractmethod
    def train_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        """Training mode: (y, batch mean, biased batch variance)."""

    @abstractmethod
    def grad_kernel(
        self, dy: Kernel, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        """Gradients of sum(dy * y) in training mode: (dx, dgamma, dbeta)."""

    @abstractmethod
    def infer_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, mean: Kernel, var: Kernel, *, eps: float
    ) -> Kernel:
        """Inference mode with the given running statistics: y."""

    @abstractmethod
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
        """Gradients of sum(dy * y) in inference mode: (dx, dgamma, dbeta)."""

    @abstractmethod
    def layer_kernel(
        self, x: Kernel, mean: Kernel, var: Kernel, *, momentum: float, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        """One training step of the layer (gamma 1, beta 0) on x from the given running
        statistics: (y, new running mean, new running variance)."""

    # --- the protocol ------------------------------------------------------------------------

    def _flat(self, x: Array, axis: int, method: str) -> Flat:
        return Flat.of(x, axis, bucket=self.channel_bucket, target=self.name, method=method)

    def _cast(self, value: Array, dtype: str, name: str, method: str) -> Kernel:
        return to_dtype(value, dtype, name, target=self.name, method=method)

    def _params(self, flat: Flat, gamma: Array, beta: Array, method: str) -> tuple[Kernel, Kernel]:
        g = self._cast(flat.vector(gamma, 1.0), self.param_dtype, "gamma", method)
        b = self._cast(flat.vector(beta, 0.0), self.param_dtype, "beta", method)
        return g, b

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        """y = gamma (x - mean) / sqrt(var + eps) + beta, with the batch mean and biased var."""
        flat = self._flat(x, axis, "forward")
        g, b = self._params(flat, gamma, beta, "forward")
        xk = self._cast(flat.matrix(x), self._dtype, "x", "forward")
        y, mean, var = self.train_kernel(xk, g, b, eps=eps)
        return ForwardOutput(flat.restore(y), flat.per_channel(mean), flat.per_channel(var))

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        """Gradients of sum(dy * y) for the training forward, by the framework's autodiff."""
        flat = self._flat(x, axis, "backward")
        g, b = self._params(flat, gamma, np.zeros(flat.channels), "backward")
        xk = self._cast(flat.matrix(x), self._dtype, "x", "backward")
        dyk = self._cast(flat.matrix(dy), self._dtype, "dy", "backward")
        dx, dg, db = self.grad_kernel(dyk, xk, g, b, eps=eps)
        return BackwardOutput(flat.restore(dx), flat.per_channel(dg), flat.per_channel(db))

    def _eval_inputs(
        self, flat: Flat, x: Array, running_mean: Array, running_var: Array, method: str
    ) -> tuple[Array, Kernel, Kernel]:
        """x as the (rows, padded) batch (rows padded with the running mean where this target
        pads inference batches) and the running statistics cast."""
        rm = flat.vector(running_mean, 0.0)
        rv = flat.vector(running_var, 1.0)
        xm = flat.matrix(x)
        if self.pad_inference_rows:
            xm = pad_rows(xm, row_bucket(flat.rows), rm)
        mean = self._cast(rm, self.stats_dtype, "running_mean", method)
        var = self._cast(rv, self.stats_dtype, "running_var", method)
        return xm, mean, var

    def inference(
        self,
        x: Array,
        gamma: Array,
        beta: Array,
        running_mean: Array,
        running_var: Array,
        *,
        eps: float,
        axis: int,
    ) -> Array:
        """y = gamma (x - running_mean) / sqrt(running_var + eps) + beta."""
        flat = self._flat(x, axis, "inference")
        g, b = self._params(flat, gamma, beta, "inference")
        xm, mean, var = self._eval_inputs(flat, x, running_mean, running_var, "inference")
        xk = self._cast(xm, self._dtype, "x", "inference")
        return flat.restore(self.infer_kernel(xk, g, b, mean, var, eps=eps))

    def frozen_backward(
        self,
        dy: Array,
        x: Array,
        gamma: Array,
        running_mean: Array,
        running_var: Array,
        *,
        eps: float,
        axis: int,
    ) -> BackwardOutput:
        """Gradients of sum(dy * y) in inference mode, by the framework's autodiff."""
        method = "frozen_backward"
        flat = self._flat(x, axis, method)
        g, b = self._params(flat, gamma, np.zeros(flat.channels), method)
        xm, mean, var = self._eval_inputs(flat, x, running_mean, running_var, method)
        xk = self._cast(xm, self._dtype, "x", method)
        dym = pad_rows(flat.matrix(dy), xm.shape[0], np.zeros(flat.padded))
        dyk = self._cast(dym, self._dtype, "dy", method)
        dx, dg, db = self.frozen_grad_kernel(dyk, xk, g, b, mean=mean, var=var, eps=eps)
        return BackwardOutput(flat.restore(dx), flat.per_channel(dg), flat.per_channel(db))

    def update_running_stats(
        self,
        x: Array,
        running_mean: Array,
        running_var: Array,
        *,
        momentum: float | None,
        num_batches_tracked: int | None,  # noqa: ARG002 -- only momentum=None would use it
        axis: int,
    ) -> RunningStats:
        """The layer's running statistics after one training step on x (its own batch
        statistics, its own update rule)."""
        method = "update_running_stats"
        if momentum is None:
            raise TargetLacks(
                self.name, method, "momentum=None (a cumulative average) is PyTorch's only"
            )
        flat = self._flat(x, axis, method)
        xk = self._cast(flat.matrix(x), self._dtype, "x", method)
        mean = self._cast(flat.vector(running_mean, 0.0), self.stats_dtype, "running_mean", method)
        var = self._cast(flat.vector(running_var, 1.0), self.stats_dtype, "running_var", method)
        # eps only changes y, which is not returned; 1e-3 is representable in every dtype
        _, new_mean, new_var = self.layer_kernel(xk, mean, var, momentum=momentum, eps=1e-3)
        return RunningStats(flat.per_channel(new_mean), flat.per_channel(new_var))

    def layer_step(
        self,
        x: Array,
        running_mean: Array,
        running_var: Array,
        *,
        momentum: float,
        eps: float,
        axis: int,
    ) -> tuple[Array, Array, Array]:
        """One training step of the real layer (gamma 1, beta 0): y and its new running
        statistics (`properties.running_stats_props`, layer-step)."""
        method = "layer_step"
        flat = self._flat(x, axis, method)
        xk = self._cast(flat.matrix(x), self._dtype, "x", method)
        mean = self._cast(flat.vector(running_mean, 0.0), self.stats_dtype, "running_mean", method)
        var = self._cast(flat.vector(running_var, 1.0), self.stats_dtype, "running_var", method)
        y, new_mean, new_var = self.layer_kernel(xk, mean, var, momentum=momentum, eps=eps)
        return flat.restore(y), flat.per_channel(new_mean), flat.per_channel(new_var)
