"""The adapter protocol: what a batch-norm implementation must offer to be checked.

Properties never import the implementation they check; they receive an object with these four
methods. Arrays go in as float64 NumPy arrays (an adapter converts to its own dtype and back) and
come out as NumPy arrays. `ReferenceImplementation` wraps `reference` (or a module with the same
batch-norm functions, such as `bnref.fast`); the targets in `bnref.targets` wrap PyTorch, ONNX
or a user's functions.

Optional capabilities are further methods an adapter may have: `frozen_backward` (the gradients
of inference mode, `FrozenBackward`), found with `frozen_backward_of`; a target without one is
reported not applicable for the properties that need it. The reference adapter derives its own
from its inference function. `forward_many` (`BatchedForward`) computes y at many inputs in
one call; `forward_ys` uses it where an adapter has it (a target in a worker process: one
message for all the points of a gradient check) and calls `forward` once per input where it has
not. `StrictAccuracy` wraps any implementation to hold it to the reference's two-pass accuracy
(`bnref check --strict`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, NamedTuple, Protocol

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


class FrozenBackward(Protocol):
    """The optional method of an implementation that has a backward pass in inference mode.

    With the running statistics fixed (frozen: a fine-tuned layer in eval mode), y = gamma
    (x - running_mean) / sqrt(running_var + eps) + beta is affine in x, and the gradients of
    sum(dy * y) are dx = gamma dy / sqrt(running_var + eps), dgamma = sum(dy (x - running_mean)
    / sqrt(running_var + eps)) and dbeta = sum(dy), sums over every axis but the channel axis.
    """

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
        """Gradients of sum(dy * y) for inference mode with the given running statistics."""
        ...


FrozenBackwardMethod = Callable[..., BackwardOutput]


def frozen_backward_of(impl: object) -> FrozenBackwardMethod | None:
    """`impl.frozen_backward` if `impl` has that optional method, else None."""
    method = getattr(impl, "frozen_backward", None)
    return method if callable(method) else None


class BatchedForward(Protocol):
    """The optional method of an implementation that computes many forward passes in one call.

    ``forward_many(points, eps=eps, axis=axis)`` returns ``[forward(x, gamma, beta, eps=eps,
    axis=axis).y for x, gamma, beta in points]``: the same calls, in the same order, raising what
    the first failing call raises. It exists for the cost of a call, not for new behaviour: an
    implementation in another process receives all the points in one message.
    """

    def forward_many(
        self, points: Sequence[tuple[Array, Array, Array]], *, eps: float, axis: int
    ) -> list[Array]:
        """y of the training-mode forward pass at each (x, gamma, beta) of `points`, in order."""
        ...


def forward_ys(
    impl: Implementation, points: Sequence[tuple[Array, Array, Array]], *, eps: float, axis: int
) -> list[Array]:
    """y of `impl.forward` at each (x, gamma, beta) of `points`, in order: one call of
    `impl.forward_many` if it has that optional method (`BatchedForward`), else one call of
    `impl.forward` per point."""
    method = getattr(impl, "forward_many", None)
    if callable(method):
        ys: list[Array] = method(points, eps=eps, axis=axis)
        return ys
    return [impl.forward(x, gamma, beta, eps=eps, axis=axis).y for x, gamma, beta in points]


class StrictAccuracy:
    """`inner` held to the reference's own accuracy: the corrected two-pass bounds
    (`properties.tolerances.TWO_PASS`) instead of those of any backward-stable algorithm.

    Every method and attribute is `inner`'s; only `strict_accuracy`, which
    `tolerances.accuracy_class` reads, is added. `bnref check --strict` wraps its target so.
    """

    strict_accuracy = True

    def __init__(self, inner: Implementation) -> None:
        self._inner = inner

    @property
    def inner(self) -> Implementation:
        """The wrapped implementation."""
        return self._inner

    @property
    def name(self) -> str:
        return self._inner.name

    @property
    def dtype(self) -> str:
        return self._inner.dtype

    @property
    def convention(self) -> str:
        return self._inner.convention

    def __getattr__(self, attribute: str) -> Any:
        # Only reached for what this class does not define: inner's optional methods and
        # attributes (frozen_backward, fixed_case_values, ...).
        if attribute == "_inner":  # not set yet (copy/pickle): no recursion
            raise AttributeError(attribute)
        return getattr(self._inner, attribute)

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        return self._inner.forward(x, gamma, beta, eps=eps, axis=axis)

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        return self._inner.backward(dy, x, gamma, eps=eps, axis=axis)

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
        return self._inner.inference(x, gamma, beta, running_mean, running_var, eps=eps, axis=axis)

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
        return self._inner.update_running_stats(
            x,
            running_mean,
            running_var,
            momentum=momentum,
            num_batches_tracked=num_batches_tracked,
            axis=axis,
        )


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
        """Gradients of inference mode from the module's own inference function, which is
        affine in x: dx = inference(dy; gamma, beta = 0, running_mean = 0) = gamma dy /
        sqrt(running_var + eps), dgamma = sum(dy * inference(x; 1, 0, running_mean)),
        dbeta = sum(dy)."""
        c = x.shape[axis]
        reduce = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
        zeros = np.zeros(c)
        dx = self._bn_inference(dy, gamma, zeros, zeros, running_var, eps=eps, axis=axis)
        x_r = self._bn_inference(
            x, np.ones(c), zeros, running_mean, running_var, eps=eps, axis=axis
        )
        return BackwardOutput(
            np.asarray(dx), np.sum(dy * x_r, axis=reduce), np.sum(dy, axis=reduce)
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
