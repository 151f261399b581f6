"""A user's own batch-norm functions, named as `module:function`, behind `Implementation`.

The user writes plain NumPy-style functions in their own layout (the channel axis where their
convention puts it) and positional arguments:

* forward ``f(x, gamma, beta, eps) -> y`` or ``-> (y, mean, var)``, training mode (batch
  statistics, biased variance);
* backward ``g(dy, x, gamma, eps) -> (dx, dgamma, dbeta)``, optional;
* inference ``h(x, gamma, beta, running_mean, running_var, eps) -> y``, optional;
* running statistics ``r(running_mean, running_var, batch_mean, batch_var, n, momentum)
  -> (new_mean, new_var)``, optional: one update after a training step, given the batch's
  per-channel mean and BIASED variance (computed by the reference from the batch) and the n
  values per channel, with `momentum` in the meaning of the named convention (pytorch: the
  weight of the batch, keras/onnx/...: the weight of the running value). For momentum=None
  (a cumulative average, conventions that have one) r receives the factor that PyTorch uses,
  1/num_batches_tracked. The running-stats properties check r against the convention's
  formula (momentum direction, Bessel's correction n/(n-1) or not).

`eps` and `momentum`, when given, are the values the user's functions always use: every case
is generated with them (`fixed_case_values`), and a check that needs another value (the scaled
eps of scale-invariance, momentum=None of cumulative-average) is not applicable.

`dtype` (default float64) is the precision the user computes in: the functions receive arrays
of that dtype and their results are read back as float64. In float64 only `np.moveaxis` views
are passed, never copies, so a function that writes into its arguments is caught by the
no-mutation property; in a lower dtype the copies it receives are compared after the call and
anything written into them is written back into the caller's arrays, so it is caught too.
A capability not given (no backward, no inference, no running statistics) raises
`TargetLacks`, so its properties show n/a.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

import reference
from bnref.targets import TargetLacks, check_dtype, to_dtype
from properties.adapter import Array, BackwardOutput, ForwardOutput, RunningStats
from reference._validation import check_positive_scalar, check_unit_interval, normalize_axis
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
        *,
        running_stats: str | None = None,
        dtype: str = "float64",
        eps: float | None = None,
        momentum: float | None = None,
    ) -> None:
        self._spec = forward
        self._forward = resolve_function(forward, "TARGET")
        self._convention = get_convention(convention).name
        self._axis = get_convention(convention).axis if axis is None else axis
        if isinstance(self._axis, bool) or not isinstance(self._axis, int):
            raise TypeError(f"axis must be an int, got {type(self._axis).__name__}")
        self._backward = None if backward is None else resolve_function(backward, "--backward")
        self._inference = None if inference is None else resolve_function(inference, "--inference")
        self._running = (
            None if running_stats is None else resolve_function(running_stats, "--running-stats")
        )
        self._dtype = check_dtype(dtype)
        self._eps = None if eps is None else check_positive_scalar(eps, "eps")
        self._momentum = None if momentum is None else check_unit_interval(momentum, "momentum")

    @property
    def name(self) -> str:
        return f"user {self._spec}" + ("" if self._dtype == "float64" else f" {self._dtype}")

    @property
    def convention(self) -> str:
        return self._convention

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def fixed_case_values(self) -> dict[str, object]:
        """The case fields the user fixed: eps, and momentum (then no cumulative average)."""
        fixed: dict[str, object] = {}
        if self._eps is not None:
            fixed["eps"] = self._eps
        if self._momentum is not None:
            fixed.update(momentum=self._momentum, cumulative=False)
        return fixed

    def _check_eps(self, eps: float, method: str) -> None:
        if self._eps is not None and eps != self._eps:
            raise TargetLacks(
                self.name, method, f"its eps is fixed at {self._eps!r} (--eps), asked {eps!r}"
            )

    def _user_axis(self, ndim: int, method: str) -> int:
        """The user's channel axis for an ndim-dimensional x; TargetLacks if out of range."""
        try:
            return normalize_axis(self._axis, ndim)
        except ValueError as exc:
            raise TargetLacks(self.name, method, f"its axis {self._axis} for ndim {ndim}") from exc

    def _call(self, fn: UserFunction, method: str, names: str, *args: Array) -> Any:
        """fn(*args) with the arrays in the user's dtype, and any write into them made visible.

        float64: the arrays themselves (views) are passed. Otherwise copies in `dtype`; after the
        call, a copy that changed is written back (rounded back to float64) into the caller's
        array, so the no-mutation property sees what the function did.
        """
        if self._dtype == "float64":
            return fn(*args)
        labels = names.split(",")
        copies = [
            to_dtype(a, self._dtype, label.strip(), target=self.name, method=method)
            for a, label in zip(args, labels, strict=True)
        ]
        pristine = [c.copy() for c in copies]
        out = fn(*copies)
        for arg, copy, before in zip(args, copies, pristine, strict=True):
            if not np.array_equal(copy, before, equal_nan=True):
                arg[...] = copy  # the caller's array (a view of its data) shows the write
        return out

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        """y = gamma (x - mean) / sqrt(var + eps) + beta, as the user's function computes it."""
        self._check_eps(eps, "forward")
        ax, ux = normalize_axis(axis, x.ndim), self._user_axis(x.ndim, "forward")
        xs = np.moveaxis(x, ax, ux)
        out = self._call(
            lambda a, g, b: self._forward(a, g, b, eps),
            "forward",
            "x, gamma, beta",
            xs,
            gamma,
            beta,
        )
        c = (x.shape[ax],)
        if isinstance(out, tuple) and len(out) == 3:
            y = _as_output(out[0], xs.shape, f"{self._spec} y")
            mean = _as_output(out[1], c, f"{self._spec} mean")
            var = _as_output(out[2], c, f"{self._spec} var")
        else:
            y = _as_output(out, xs.shape, f"{self._spec} y")
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
        self._check_eps(eps, "backward")
        backward = self._backward
        ax, ux = normalize_axis(axis, x.ndim), self._user_axis(x.ndim, "backward")
        xs = np.moveaxis(x, ax, ux)
        out = self._call(
            lambda d, a, g: backward(d, a, g, eps),
            "backward",
            "dy, x, gamma",
            np.moveaxis(dy, ax, ux),
            xs,
            gamma,
        )
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
        self._check_eps(eps, "inference")
        inference = self._inference
        ax, ux = normalize_axis(axis, x.ndim), self._user_axis(x.ndim, "inference")
        xs = np.moveaxis(x, ax, ux)
        out = self._call(
            lambda a, g, b, m, v: inference(a, g, b, m, v, eps),
            "inference",
            "x, gamma, beta, running_mean, running_var",
            xs,
            gamma,
            beta,
            running_mean,
            running_var,
        )
        return np.moveaxis(_as_output(out, xs.shape, "inference y"), ux, ax)

    def _factor(self, momentum: float | None, num_batches_tracked: int | None) -> float:
        """The momentum r receives: the given one, or 1/num_batches_tracked for None."""
        method = "update_running_stats"
        conv = get_convention(self._convention)
        if momentum is not None:
            if self._momentum is not None and momentum != self._momentum:
                raise TargetLacks(
                    self.name,
                    method,
                    f"its momentum is fixed at {self._momentum!r} (--momentum), asked {momentum!r}",
                )
            return momentum
        if self._momentum is not None or not conv.cumulative_average:
            why = "--momentum is fixed" if self._momentum is not None else "no cumulative average"
            raise TargetLacks(self.name, method, f"momentum=None: {why} in this setting")
        if num_batches_tracked is None or num_batches_tracked < 1:
            raise ValueError(
                "num_batches_tracked must be an integer >= 1 when momentum is None, "
                f"got {num_batches_tracked!r}"
            )
        return 1.0 / num_batches_tracked

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
        """r(running_mean, running_var, batch_mean, biased batch_var, n, momentum) of the user."""
        method = "update_running_stats"
        if self._running is None:
            raise TargetLacks(self.name, method, "no running-statistics function was given")
        running = self._running
        factor = self._factor(momentum, num_batches_tracked)
        ax = normalize_axis(axis, x.ndim)
        c = x.shape[ax]
        xd = to_dtype(x, self._dtype, "x", target=self.name, method=method)
        stats = reference.batch_norm_forward(xd, np.ones(c), np.zeros(c), eps=1.0, axis=ax)
        n = x.size // c
        out = self._call(
            lambda rm, rv, bm, bv: running(rm, rv, bm, bv, n, factor),
            method,
            "running_mean, running_var, batch_mean, batch_var",
            running_mean,
            running_var,
            stats.mean.copy(),
            stats.var.copy(),
        )
        if not (isinstance(out, tuple | list) and len(out) == 2):
            raise ValueError(
                f"running statistics must return (new_mean, new_var), got {type(out).__name__}"
            )
        return RunningStats(
            _as_output(out[0], (c,), "running-stats new_mean"),
            _as_output(out[1], (c,), "running-stats new_var"),
        )


def load_user_target(
    spec: str,
    *,
    convention: str = "pytorch",
    backward: str | None = None,
    inference: str | None = None,
    running_stats: str | None = None,
    dtype: str = "float64",
    eps: float | None = None,
    momentum: float | None = None,
) -> UserTarget:
    """`UserTarget(spec, convention, ...)`, its axis the convention's."""
    return UserTarget(
        spec,
        convention,
        backward=backward,
        inference=inference,
        running_stats=running_stats,
        dtype=dtype,
        eps=eps,
        momentum=momentum,
    )
