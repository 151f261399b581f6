"""The adapter protocol: what a batch-norm implementation must offer to be checked.

Properties never import the implementation they check; they receive an object with these four
methods. Arrays go in as float64 NumPy arrays (an adapter converts to its own dtype and back) and
come out as NumPy arrays. `ReferenceImplementation` wraps `reference` (or a module with the same
batch-norm functions, such as `bnref.fast`); the targets in `bnref.targets` wrap PyTorch, ONNX
or a user's functions.
"""

from __future__ import annotations

from types import ModuleType
from typing import NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

import reference
from reference.batchnorm import batch_norm_backward, batch_norm_forward, batch_norm_inference

Array = NDArray[np.float64]


class ForwardOutput(NamedTuple):
    """Training-mode forward: the output and the batch statistics it used (biased variance)."""

    y: Array
    mean: Array
    var: Array


class BackwardOutput(NamedTuple):
    """Gradients of sum(dy * y) with respect to x, gamma and beta."""

    dx: Array
    dgamma: Array
    dbeta: Array


class RunningStats(NamedTuple):
    """A running-statistics pair after one update."""

    mean: Array
    var: Array


class Implementation(Protocol):
    """A batch-norm implementation under test.

    `convention` names the running-statistics rule it follows (a key of
    `reference.CONVENTIONS`), which fixes what its `momentum` means. `dtype` is the precision
    it computes in ("float64", "float32" or "float16"): the properties derive their tolerances
    from its unit roundoff (`properties.tolerances.precision`) and give it inputs representable
    in it (`properties.strategies.cast_case`).
    """

    @property
    def name(self) -> str: ...

    @property
    def dtype(self) -> str: ...

    @property
    def convention(self) -> str: ...

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        """Training-mode forward pass."""
        ...

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        """Gradients of the training-mode forward pass for upstream gradient dy."""
        ...

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
        """Inference-mode forward pass with the given statistics."""
        ...

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
        """Running statistics after one training step on batch x, under `convention`."""
        ...


class ReferenceImplementation:
    """The reference itself, seen through the adapter protocol.

    `module` is where the three batch-norm functions come from: `reference.batchnorm` by
    default, or another module with the same names and signatures (`bnref.fast`), so that the
    same adapter audits it under `name`.
    """

    def __init__(
        self,
        convention: str = "pytorch",
        *,
        module: ModuleType | None = None,
        name: str = "reference",
    ) -> None:
        self._convention = convention
        self._name = name
        self._bn_forward = batch_norm_forward if module is None else module.batch_norm_forward
        self._bn_backward = batch_norm_backward if module is None else module.batch_norm_backward
        self._bn_inference = batch_norm_inference if module is None else module.batch_norm_inference

    @property
    def name(self) -> str:
        return self._name

    @property
    def dtype(self) -> str:
        return "float64"

    @property
    def convention(self) -> str:
        return self._convention

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        out = self._bn_forward(x, gamma, beta, eps=eps, axis=axis)
        return ForwardOutput(out.y, out.mean, out.var)

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        g = self._bn_backward(dy, x, gamma, eps=eps, axis=axis)
        return BackwardOutput(g.dx, g.dgamma, g.dbeta)

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
        return self._bn_inference(x, gamma, beta, running_mean, running_var, eps=eps, axis=axis)

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
        channels = x.shape[axis]
        stats = self._bn_forward(x, np.ones(channels), np.zeros(channels), eps=1.0, axis=axis)
        new = reference.update_running_stats(
            running_mean,
            running_var,
            stats.mean,
            stats.var,
            x.size // channels,
            convention=self._convention,
            momentum=momentum,
            num_batches_tracked=num_batches_tracked,
        )
        return RunningStats(new.mean, new.var)


def _rounded(value: Array, dtype: str) -> Array:
    out: Array = np.asarray(value, dtype=np.float64).astype(dtype).astype(np.float64)
    return out


class Rounded:
    """`inner` (a float64 implementation) seen as one computing in `dtype`: every array argument
    is rounded to `dtype` before the call and every array result after it.

    Used to show that a mistake is still caught at low precision: the wrapped implementation is
    at least as accurate as a real `dtype` one, so an honest `inner` passes the `dtype` bounds.
    """

    def __init__(self, inner: Implementation, dtype: str) -> None:
        self._inner = inner
        self._dtype = dtype

    @property
    def name(self) -> str:
        return f"{self._inner.name} {self._dtype}"

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def convention(self) -> str:
        return self._inner.convention

    def _r(self, value: Array) -> Array:
        return _rounded(value, self._dtype)

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        out = self._inner.forward(self._r(x), self._r(gamma), self._r(beta), eps=eps, axis=axis)
        return ForwardOutput(*(self._r(a) for a in out))

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        out = self._inner.backward(self._r(dy), self._r(x), self._r(gamma), eps=eps, axis=axis)
        return BackwardOutput(*(self._r(a) for a in out))

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
        args = (x, gamma, beta, running_mean, running_var)
        return self._r(self._inner.inference(*(self._r(a) for a in args), eps=eps, axis=axis))

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
        out = self._inner.update_running_stats(
            self._r(x),
            self._r(running_mean),
            self._r(running_var),
            momentum=momentum,
            num_batches_tracked=num_batches_tracked,
            axis=axis,
        )
        return RunningStats(self._r(out.mean), self._r(out.var))
