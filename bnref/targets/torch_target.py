"""PyTorch's batch norm on the CPU behind the `Implementation` protocol.

What each method calls, and why (torch 2.13.0; the installed sources were read, and
pytorch/pytorch at the cited paths):

* forward: y from ``F.batch_norm(training=True)`` (F = torch.nn.functional); the mean and
  BIASED variance from ``torch.batch_norm_update_stats``, which runs the CPU statistics routine of
  the training forward (aten/src/ATen/native/Normalization.cpp,
  batch_norm_cpu_update_stats_template: training keeps ``var_sum / n`` as an inverse std,
  batch_norm_update_stats returns it as the variance).
* backward: autograd through the same training-mode call, dx, dgamma, dbeta = grad of
  sum(dy * y).
* inference: ``F.batch_norm(training=False)`` with the given running statistics.
* frozen_backward (the optional inference-mode backward of `properties.adapter.FrozenBackward`):
  autograd through ``nn.BatchNorm{1,2,3}d`` in eval mode with its running buffers set to the
  given statistics (torch/nn/modules/batchnorm.py, _BatchNorm.forward: eval mode with running
  buffers passes them to F.batch_norm with training=False), dx, dgamma, dbeta = grad of
  sum(dy * y).
* update_running_stats: ``F.batch_norm(training=True, momentum=m)`` on COPIES of the running
  buffers, which torch updates in place (Normalization.cpp: running_var gets
  ``var_sum / (n - 1)``, the unbiased variance). momentum=None goes through
  ``nn.BatchNorm{1,2,3}d(momentum=None)``: torch/nn/modules/batchnorm.py, _BatchNorm.forward,
  first does ``num_batches_tracked.add_(1)`` and then uses ``1.0 / float(num_batches_tracked)``,
  so the counter is set to num_batches_tracked - 1 before the call.
"""

from __future__ import annotations

import numpy as np

from bnref.targets import (
    MEMORY_FORMATS,
    channels_second,
    check_dtype,
    restore_channels,
    to_dtype,
)
from properties.adapter import Array, BackwardOutput, ForwardOutput, RunningStats
from reference._validation import check_int

INSTALL = (
    "bnref check torch needs PyTorch: pip install 'bnref[torch]' "
    "(on this machine pip install torch==2.13.0 takes the CPU wheel)"
)

try:
    import torch
    from torch import nn
    from torch.nn import functional
except ImportError as exc:
    raise ImportError(INSTALL) from exc

_DTYPES = {
    "float64": torch.float64,
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def one_thread() -> None:
    """Run torch's CPU kernels on one thread. The audit's batches hold at most a few hundred
    values per channel, below ATen's parallel grain size (at::internal::GRAIN_SIZE = 32768), so
    more threads add no speed; on a shared machine they only wait for each other (a float64
    gradients-full run took 59 s with torch's default of one thread per core on a loaded
    2-core machine, 3.3 s with one). Sums may be split differently across threads; every
    summation order is within the audit's bounds."""
    if torch.get_num_threads() != 1:
        torch.set_num_threads(1)


# nn.BatchNorm1d takes (N, C) and (N, C, L), 2d (N, C, H, W), 3d (N, C, D, H, W).
_MODULES: dict[int, type[nn.Module]] = {
    2: nn.BatchNorm1d,
    3: nn.BatchNorm1d,
    4: nn.BatchNorm2d,
    5: nn.BatchNorm3d,
}


# The channels-last memory formats torch defines, by the number of dimensions of x.
_CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


class TorchTarget:
    """torch.nn.functional.batch_norm on the CPU in `dtype`, convention "pytorch".

    `memory_format="channels_last"` hands torch x and dy in its channels-last layouts (4-D:
    torch.channels_last, 5-D: torch.channels_last_3d), which ATen's CPU kernels take other
    code paths for (Normalization.cpp, batch_norm_cpu_*_channels_last); torch defines none
    for 2-D (already channels last in memory) and 3-D tensors, which stay contiguous.
    bfloat16 values reach torch through float64, which holds them exactly.
    """

    def __init__(self, dtype: str = "float64", *, memory_format: str = "contiguous") -> None:
        self._dtype = check_dtype(dtype)
        self._torch_dtype = _DTYPES[dtype]
        if memory_format not in MEMORY_FORMATS:
            raise ValueError(
                f"memory_format must be one of {MEMORY_FORMATS}, got {memory_format!r}"
            )
        self.memory_format = memory_format
        one_thread()

    @property
    def name(self) -> str:
        layout = "" if self.memory_format == "contiguous" else f" {self.memory_format}"
        return f"torch {torch.__version__}{layout} {self._dtype}"

    @property
    def convention(self) -> str:
        return "pytorch"

    @property
    def dtype(self) -> str:
        return self._dtype

    def _tensor(
        self, value: Array, name: str, method: str, *, requires_grad: bool = False
    ) -> torch.Tensor:
        """A new tensor holding `value` rounded to the dtype, in the target's memory format
        if it has one for that many dimensions; it shares no memory with value."""
        arr = to_dtype(value, self._dtype, name, target=self.name, method=method)
        # torch reads no ml_dtypes bfloat16 array: through float64, exact for every dtype here
        t = torch.tensor(arr.astype(np.float64)).to(self._torch_dtype)
        layout = _CHANNELS_LAST.get(t.ndim)
        if self.memory_format == "channels_last" and layout is not None:
            t = t.contiguous(memory_format=layout)
        return t.requires_grad_(requires_grad)

    @staticmethod
    def _array(t: torch.Tensor) -> Array:
        out: Array = t.detach().to(torch.float64).numpy().copy()
        return out

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        """y = gamma (x - mean) / sqrt(var + eps) + beta with the batch mean and biased var."""
        xs, ax = channels_second(x, axis, target=self.name, method="forward")
        xt = self._tensor(xs, "x", "forward")
        g = self._tensor(gamma, "gamma", "forward")
        b = self._tensor(beta, "beta", "forward")
        with torch.no_grad():
            y = functional.batch_norm(xt, None, None, g, b, training=True, eps=eps)
            mean, var = torch.batch_norm_update_stats(xt, None, None, 0.0)
        return ForwardOutput(
            restore_channels(self._array(y), ax), self._array(mean), self._array(var)
        )

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        """Gradients of sum(dy * y) for the training forward, by autograd."""
        xs, ax = channels_second(x, axis, target=self.name, method="backward")
        xt = self._tensor(xs, "x", "backward", requires_grad=True)
        g = self._tensor(gamma, "gamma", "backward", requires_grad=True)
        b = torch.zeros_like(g, requires_grad=True)  # dbeta does not depend on beta
        dyt = self._tensor(
            channels_second(dy, axis, target=self.name, method="backward")[0], "dy", "backward"
        )
        y = functional.batch_norm(xt, None, None, g, b, training=True, eps=eps)
        dx, dg, db = torch.autograd.grad(y, (xt, g, b), grad_outputs=dyt)
        return BackwardOutput(
            restore_channels(self._array(dx), ax), self._array(dg), self._array(db)
        )

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
        xs, ax = channels_second(x, axis, target=self.name, method="inference")
        xt = self._tensor(xs, "x", "inference")
        rm = self._tensor(running_mean, "running_mean", "inference")
        rv = self._tensor(running_var, "running_var", "inference")
        g = self._tensor(gamma, "gamma", "inference")
        b = self._tensor(beta, "beta", "inference")
        with torch.no_grad():
            y = functional.batch_norm(xt, rm, rv, g, b, training=False, eps=eps)
        return restore_channels(self._array(y), ax)

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
        """Gradients of sum(dy * y) in eval mode, y = gamma (x - running_mean) /
        sqrt(running_var + eps) + beta: the module's eval() forward, then autograd."""
        method = "frozen_backward"
        xs, ax = channels_second(x, axis, target=self.name, method=method)
        xt = self._tensor(xs, "x", method, requires_grad=True)
        dyt = self._tensor(
            channels_second(dy, axis, target=self.name, method=method)[0], "dy", method
        )
        module = _MODULES[xt.ndim](xt.shape[1], eps=eps, dtype=self._torch_dtype)
        with torch.no_grad():
            module.get_parameter("weight").copy_(self._tensor(gamma, "gamma", method))
            module.get_parameter("bias").zero_()  # dbeta does not depend on beta
            module.get_buffer("running_mean").copy_(
                self._tensor(running_mean, "running_mean", method)
            )
            module.get_buffer("running_var").copy_(self._tensor(running_var, "running_var", method))
        module.eval()
        y = module(xt)
        weight, bias = module.get_parameter("weight"), module.get_parameter("bias")
        dx, dg, db = torch.autograd.grad(y, (xt, weight, bias), grad_outputs=dyt)
        return BackwardOutput(
            restore_channels(self._array(dx), ax), self._array(dg), self._array(db)
        )

    def update_running_stats(
        self,
        x: Array,
        running_mean: Array,
        running_var: Array,
        *,
        momentum: float | None,
        num_batches_tracked: int | None,
        axis: int,
    ) -> RunningStats:
        """(1 - m) running + m batch, the variance unbiased; m = 1/num_batches_tracked if None."""
        method = "update_running_stats"
        xs, _ = channels_second(x, axis, target=self.name, method=method)
        xt = self._tensor(xs, "x", method)
        rm = self._tensor(running_mean, "running_mean", method)
        rv = self._tensor(running_var, "running_var", method)
        with torch.no_grad():
            if momentum is not None:
                functional.batch_norm(xt, rm, rv, None, None, training=True, momentum=momentum)
                return RunningStats(self._array(rm), self._array(rv))
            if num_batches_tracked is None:
                raise ValueError(
                    "num_batches_tracked must be an integer >= 1 (this batch included) when "
                    "momentum is None, got None"
                )
            tracked = check_int(num_batches_tracked, "num_batches_tracked", minimum=1)
            module = _MODULES[xt.ndim](
                xt.shape[1], momentum=None, affine=False, dtype=self._torch_dtype
            )
            module.get_buffer("running_mean").copy_(rm)
            module.get_buffer("running_var").copy_(rv)
            module.get_buffer("num_batches_tracked").fill_(tracked - 1)  # forward adds 1
            module.train()
            module(xt)
            return RunningStats(
                self._array(module.get_buffer("running_mean")),
                self._array(module.get_buffer("running_var")),
            )
