"""The adapter protocol: what a batch-norm implementation must offer to be checked.

Properties never import the implementation they check; they receive an object with these four
methods. Arrays go in as float64 NumPy arrays (an adapter converts to its own dtype and back) and
come out as NumPy arrays. `ReferenceImplementation` wraps `reference`; later adapters wrap
PyTorch, ONNX Runtime or a user's functions.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import numpy as np
from numpy.typing import NDArray

import reference

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
    `reference.CONVENTIONS`), which fixes what its `momentum` means.
    """

    @property
    def name(self) -> str: ...

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
    """The reference itself, seen through the adapter protocol."""

    def __init__(self, convention: str = "pytorch") -> None:
        self._convention = convention

    @property
    def name(self) -> str:
        return "reference"

    @property
    def convention(self) -> str:
        return self._convention

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        out = reference.batch_norm_forward(x, gamma, beta, eps=eps, axis=axis)
        return ForwardOutput(out.y, out.mean, out.var)

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        g = reference.batch_norm_backward(dy, x, gamma, eps=eps, axis=axis)
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
        return reference.batch_norm_inference(
            x, gamma, beta, running_mean, running_var, eps=eps, axis=axis
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
        channels = x.shape[axis]
        stats = reference.batch_norm_forward(
            x, np.ones(channels), np.zeros(channels), eps=1.0, axis=axis
        )
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
