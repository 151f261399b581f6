"""A user's own batch-norm functions, named as `module:function`, behind `Implementation`.

The user writes plain NumPy-style functions in their own layout (the channel axis where their
convention puts it) and positional arguments:

* forward ``f(x, gamma, beta, eps) -> y`` or ``-> (y, mean, var)``, training mode (batch
  statistics, biased variance);
* backward ``g(dy, x, gamma, eps) -> (dx, dgamma, dbeta)``, optional;
* inference ``h(x, gamma, beta, running_mean, running_var, eps) -> y``, optional.

The adapter moves the case's channel axis to the user's axis and the outputs' back. Only
`np.moveaxis` views are passed, never copies, so a function that writes into its arguments is
caught by the no-mutation property. A capability not given (no backward, no inference, and the
running-statistics update, which this adapter does not take) raises `TargetLacks`, so its
properties show n/a.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

import reference
from properties.adapter import Array, BackwardOutput, ForwardOutput, RunningStats
from properties.targets import TargetLacks
from reference._validation import normalize_axis
from reference.conventions import get_convention

UserFunction = Callable[..., Any]


def resolve_function(spec: str, option: str = "TARGET") -> UserFunction:
    """The callable named by `spec` = "package.module:attribute[.attribute...]".

    ValueError naming `option` and `spec` when it is not of that form, the module cannot be
    imported, the attribute is missing or is not callable; TypeError if `spec` is not a string.
    """
    if not isinstance(spec, str):
        raise TypeError(f"{option} must be a string 'module:function', got {type(spec).__name__}")
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ValueError(f"{option} must have the form 'module:function', got {spec!r}")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:  # an import that fails for any reason is the user's spec at fault
        raise ValueError(
            f"{option} {spec!r}: cannot import module {module_name!r} "
            f"({type(exc).__name__}: {exc}); is its directory on sys.path / PYTHONPATH?"
        ) from exc
    owner = module_name
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{option} {spec!r}: {owner!r} has no attribute {part!r}")
        obj, owner = getattr(obj, part), f"{owner}.{part}"
    if not callable(obj):
        raise ValueError(
            f"{option} {spec!r}: {attr_path!r} is not callable, it is a {type(obj).__name__}"
        )
    return obj


def _as_output(value: object, shape: tuple[int, ...], what: str) -> Array:
    """`value` as a new float64 array of `shape`; ValueError naming `what` otherwise."""
    arr = np.array(value, dtype=np.float64, copy=True)
    if arr.shape != shape:
        raise ValueError(f"{what} must have shape {shape}, got {arr.shape}")
    return arr


class UserTarget:
    """The user's functions, with the channel axis at `axis` (default: the convention's).

    If forward returns y alone, the mean and biased variance in `ForwardOutput` are the
    REFERENCE's statistics of x, not the user's: the properties that read them (forward-accuracy)
    then check only the user's y. Return ``(y, mean, var)`` to have the statistics checked too.
    """

    def __init__(
        self,
        forward: str,
        convention: str = "pytorch",
        axis: int | None = None,
        backward: str | None = None,
        inference: str | None = None,
    ) -> None:
        self._spec = forward
        self._forward = resolve_function(forward, "TARGET")
        self._convention = get_convention(convention).name
        self._axis = get_convention(convention).axis if axis is None else axis
        if isinstance(self._axis, bool) or not isinstance(self._axis, int):
            raise TypeError(f"axis must be an int, got {type(self._axis).__name__}")
        self._backward = None if backward is None else resolve_function(backward, "--backward")
        self._inference = None if inference is None else resolve_function(inference, "--inference")

    @property
    def name(self) -> str:
        return f"user {self._spec}"

    @property
    def convention(self) -> str:
        return self._convention

    def _user_axis(self, ndim: int, method: str) -> int:
        """The user's channel axis for an ndim-dimensional x; TargetLacks if out of range."""
        try:
            return normalize_axis(self._axis, ndim)
        except ValueError as exc:
            raise TargetLacks(self.name, method, f"its axis {self._axis} for ndim {ndim}") from exc

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        """y = gamma (x - mean) / sqrt(var + eps) + beta, as the user's function computes it."""
        ax, ux = normalize_axis(axis, x.ndim), self._user_axis(x.ndim, "forward")
        out = self._forward(np.moveaxis(x, ax, ux), gamma, beta, eps)
        user_shape = np.moveaxis(x, ax, ux).shape
        c = (x.shape[ax],)
        if isinstance(out, tuple) and len(out) == 3:
            y = _as_output(out[0], user_shape, f"{self._spec} y")
            mean = _as_output(out[1], c, f"{self._spec} mean")
            var = _as_output(out[2], c, f"{self._spec} var")
        else:
            y = _as_output(out, user_shape, f"{self._spec} y")
            ones, zeros = np.ones(c), np.zeros(c)
            stats = reference.batch_norm_forward(x, ones, zeros, eps=eps, axis=ax)
            mean, var = stats.mean, stats.var
        return ForwardOutput(np.moveaxis(y, ux, ax), mean, var)

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        """(dx, dgamma, dbeta) of sum(dy * y) from the user's backward, if one was given."""
        if self._backward is None:
            raise TargetLacks(self.name, "backward", "no backward function was given")
        ax, ux = normalize_axis(axis, x.ndim), self._user_axis(x.ndim, "backward")
        xs = np.moveaxis(x, ax, ux)
        out = self._backward(np.moveaxis(dy, ax, ux), xs, gamma, eps)
        if not (isinstance(out, tuple | list) and len(out) == 3):
            raise ValueError(f"backward must return (dx, dgamma, dbeta), got {type(out).__name__}")
        c = (x.shape[ax],)
        dx = _as_output(out[0], xs.shape, "backward dx")
        return BackwardOutput(
            np.moveaxis(dx, ux, ax),
            _as_output(out[1], c, "backward dgamma"),
            _as_output(out[2], c, "backward dbeta"),
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
        """y = gamma (x - running_mean) / sqrt(running_var + eps) + beta, by the user's function."""
        if self._inference is None:
            raise TargetLacks(self.name, "inference", "no inference function was given")
        ax, ux = normalize_axis(axis, x.ndim), self._user_axis(x.ndim, "inference")
        xs = np.moveaxis(x, ax, ux)
        out = self._inference(xs, gamma, beta, running_mean, running_var, eps)
        return np.moveaxis(_as_output(out, xs.shape, "inference y"), ux, ax)

    def update_running_stats(
        self,
        x: Array,  # noqa: ARG002 -- the protocol's signature; there is nothing to compute
        running_mean: Array,  # noqa: ARG002
        running_var: Array,  # noqa: ARG002
        *,
        momentum: float | None,  # noqa: ARG002
        num_batches_tracked: int | None,  # noqa: ARG002
        axis: int,  # noqa: ARG002
    ) -> RunningStats:
        """Not taken from the user: always TargetLacks."""
        raise TargetLacks(
            self.name, "update_running_stats", "a user target has no running-statistics update"
        )


def load_user_target(
    spec: str,
    *,
    convention: str = "pytorch",
    backward: str | None = None,
    inference: str | None = None,
) -> UserTarget:
    """`UserTarget(spec, convention, backward=..., inference=...)`, its axis the convention's."""
    return UserTarget(spec, convention, backward=backward, inference=inference)
