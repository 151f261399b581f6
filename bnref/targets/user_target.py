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
`TargetLacks`, so its properties show n/a; `stand_in` is the same adapter around the
reference's functions, so a property is n/a exactly when it would be for correct functions,
whatever the user's forward does.

A result that is not of the expected form (None, a list, a tuple of the wrong length, complex
values, the wrong shape) is refused with a TypeError or ValueError naming the function, what it
returned and the form expected. The user's functions run under their own NumPy error state
(`np.seterr` at import or in a call stays theirs), bnref's code under the caller's.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

import numpy as np

import reference
from bnref.targets import TargetLacks, check_dtype, to_dtype
from properties.adapter import Array, BackwardOutput, ForwardOutput, RunningStats
from reference._validation import check_positive_scalar, check_unit_interval, normalize_axis
from reference.conventions import get_convention

UserFunction = Callable[..., Any]


def _raised(exc: BaseException) -> str:
    """What was raised, for a message: "SystemExit: 0", "ValueError: bad value"."""
    return f"{type(exc).__name__}: {exc}"


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
    except ModuleNotFoundError as exc:
        missing = exc.name is not None and (module_name + ".").startswith(exc.name + ".")
        if not missing:  # the module was found; something it imports was not
            raise ValueError(
                f"{option} {spec!r}: importing module {module_name!r} raised {_raised(exc)}"
            ) from exc
        raise ValueError(
            f"{option} {spec!r}: cannot import module {module_name!r} "
            f"({type(exc).__name__}: {exc}); is its directory on sys.path / PYTHONPATH?"
        ) from exc
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # an import that fails for any reason (an exception,
        # sys.exit, a BaseException) is the user's spec at fault, never bnref's exit
        raise ValueError(
            f"{option} {spec!r}: importing module {module_name!r} raised {_raised(exc)}"
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


def _function(function: str | UserFunction, option: str) -> UserFunction:
    """`function` itself if it is callable, else the function its spec names."""
    return function if callable(function) else resolve_function(function, option)


def describe_value(value: object) -> str:
    """What a function returned, in words: "None", "an array of shape (4, 3) and dtype
    complex128", "a tuple of 2 items (an array of shape (4, 3) ..., a float)"."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, tuple | list):
        items = ", ".join(describe_value(v) for v in value[:4])
        items += ", ..." if len(value) > 4 else ""
        return f"a {type(value).__name__} of {len(value)} items ({items})"
    return f"a {type(value).__name__}"


def _as_output(value: object, shape: tuple[int, ...], what: str, expected: str) -> Array:
    """`value` as a new float64 array of `shape`.

    `value` must be an array (a NumPy array, or an object NumPy reads as one through
    `__array__`, such as a framework's tensor) of real numbers. Anything else (None, a list, a
    scalar, complex values) is a TypeError, another shape a ValueError; both say `what` returned
    (e.g. "forward mod:fn returned y as ..."), and `expected`, the form the caller wanted.
    """
    if not hasattr(value, "__array__") or isinstance(value, np.generic):
        raise TypeError(f"{what} {describe_value(value)}; expected {expected}")
    arr = np.asarray(value)
    # complex, bool, object, strings: not real numbers; ml_dtypes' bfloat16 (which the target is
    # given at --dtype bfloat16) is, though NumPy reports its kind as "V"
    if arr.dtype.kind not in "fiu" and arr.dtype.name != "bfloat16":
        raise TypeError(f"{what} {describe_value(arr)}; expected {expected} of real numbers")
    if arr.shape != shape:
        raise ValueError(f"{what} {describe_value(arr)}; expected {expected}")
    return np.array(arr, dtype=np.float64, copy=True)


def _parts(value: object, count: int, what: str, expected: str) -> tuple[object, ...]:
    """`value`, a tuple or list of `count` items; TypeError naming `what` otherwise."""
    if not (isinstance(value, tuple | list) and len(value) == count):
        raise TypeError(f"{what} {describe_value(value)}; expected {expected}")
    return tuple(value)


def _label(function: str | UserFunction) -> str:
    """How messages name a user's function: its `module:function` spec, as given."""
    if isinstance(function, str):
        return function
    return f"{getattr(function, '__module__', '?')}:{getattr(function, '__qualname__', function)}"


class UserTarget:
    """The user's functions, with the channel axis at `axis` (default: the convention's).

    Each function is a `module:function` spec (imported here) or the callable itself. If
    forward returns y alone, the mean and biased variance in `ForwardOutput` are the
    REFERENCE's statistics of x, not the user's: the properties that read them (forward-accuracy)
    then check only the user's y. Return ``(y, mean, var)`` to have the statistics checked too.
    """

    def __init__(
        self,
        forward: str | UserFunction,
        convention: str = "pytorch",
        axis: int | None = None,
        backward: str | UserFunction | None = None,
        inference: str | UserFunction | None = None,
        *,
        running_stats: str | UserFunction | None = None,
        layer: str | UserFunction | None = None,
        dtype: str = "float64",
        eps: float | None = None,
        momentum: float | None = None,
        name: str | None = None,
    ) -> None:
        self._spec = _label(forward)
        self._labels = {
            "forward": self._spec,
            "backward": None if backward is None else _label(backward),
            "inference": None if inference is None else _label(inference),
            "update_running_stats": None if running_stats is None else _label(running_stats),
            "layer_step": None if layer is None else _label(layer),
        }
        # Importing the user's modules may set NumPy's error state (np.seterr): that state is
        # the user's, kept for their calls (`_call`); the caller's is put back.
        state, callback = np.geterr(), np.geterrcall()
        try:
            self._forward = _function(forward, "TARGET")
            self._backward = None if backward is None else _function(backward, "--backward")
            self._inference = None if inference is None else _function(inference, "--inference")
            self._running = (
                None if running_stats is None else _function(running_stats, "--running-stats")
            )
            self._layer = None if layer is None else _function(layer, "--layer")
        finally:
            self._errstate, self._errcall = np.geterr(), np.geterrcall()
            np.seterr(**state)
            np.seterrcall(callback)
        self._convention = get_convention(convention).name
        self._axis = get_convention(convention).axis if axis is None else axis
        if isinstance(self._axis, bool) or not isinstance(self._axis, int):
            raise TypeError(f"axis must be an int, got {type(self._axis).__name__}")
        self._dtype = check_dtype(dtype)
        self._eps = None if eps is None else check_positive_scalar(eps, "eps")
        self._momentum = None if momentum is None else check_unit_interval(momentum, "momentum")
        self._name = name

    @property
    def name(self) -> str:
        if self._name is not None:
            return self._name
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

    @property
    def stand_in(self) -> UserTarget:
        """This adapter around the reference's functions, with the same capabilities.

        Same name, layout, dtype, fixed eps and momentum, and the same functions missing: it
        raises `TargetLacks` exactly where this target does, since those refusals are the
        adapter's and never depend on what the user's functions compute. `run_property` asks
        it which properties are not applicable before calling the user's code.
        """
        return reference_stand_in(
            self._convention,
            self._axis,
            dtype=self._dtype,
            eps=self._eps,
            momentum=self._momentum,
            given=frozenset(k for k, v in self._labels.items() if v is not None),
            name=self.name,
        )

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

    def _returned(self, method: str) -> str:
        """The start of a message about what the user's function for `method` returned."""
        return f"{method} {self._labels[method]} returned"

    def _call(self, fn: UserFunction, method: str, names: str, *args: Array) -> Any:
        """fn(*args) with the arrays in the user's dtype, and any write into them made visible.

        float64: the arrays themselves (views) are passed. Otherwise copies in `dtype`; after the
        call, a copy that changed is written back (rounded back to float64) into the caller's
        array, so the no-mutation property sees what the function did. fn runs under the user's
        NumPy error state, and what it sets there is kept for its next call, not left to bnref.
        """
        if self._dtype == "float64":
            return self._under_users_errstate(fn, *args)
        labels = names.split(",")
        copies = [
            to_dtype(a, self._dtype, label.strip(), target=self.name, method=method)
            for a, label in zip(args, labels, strict=True)
        ]
        pristine = [c.copy() for c in copies]
        out = self._under_users_errstate(fn, *copies)
        for arg, copy, before in zip(args, copies, pristine, strict=True):
            if not np.array_equal(copy, before, equal_nan=True):
                arg[...] = copy  # the caller's array (a view of its data) shows the write
        return out

    def _under_users_errstate(self, fn: UserFunction, *args: Any) -> Any:
        """fn(*args) under the user's NumPy error state; the state it leaves is the user's.

        Leaving the `np.errstate` block puts the caller's state back, callback included.
        """
        with np.errstate(**self._errstate):
            np.seterrcall(self._errcall)
            try:
                return fn(*args)
            finally:
                self._errstate, self._errcall = np.geterr(), np.geterrcall()

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        """y = gamma (x - mean) / sqrt(var + eps) + beta, as the user's function computes it.

        The function returns y (an array of x's shape in the user's layout) or the tuple
        (y, mean, var); anything else is a TypeError or ValueError saying what it returned.
        """
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
        form = f"y, an array of shape {xs.shape}, or a tuple (y, mean, var)"
        returned = self._returned("forward")
        if isinstance(out, tuple | list):
            y_out, mean_out, var_out = _parts(out, 3, returned, form)
            y = _as_output(y_out, xs.shape, f"{returned} y as", f"an array of shape {xs.shape}")
            mean = _as_output(mean_out, c, f"{returned} mean as", f"an array of shape {c}")
            var = _as_output(var_out, c, f"{returned} var as", f"an array of shape {c}")
        else:
            y = _as_output(out, xs.shape, returned, form)
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
        c = (x.shape[ax],)
        returned = self._returned("backward")
        form = f"a tuple (dx, dgamma, dbeta) of arrays of shapes {xs.shape}, {c}, {c}"
        dx_out, dgamma_out, dbeta_out = _parts(out, 3, returned, form)
        dx = _as_output(dx_out, xs.shape, f"{returned} dx as", f"an array of shape {xs.shape}")
        return BackwardOutput(
            np.moveaxis(dx, ux, ax),
            _as_output(dgamma_out, c, f"{returned} dgamma as", f"an array of shape {c}"),
            _as_output(dbeta_out, c, f"{returned} dbeta as", f"an array of shape {c}"),
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
        form = f"y, an array of shape {xs.shape}"
        y = _as_output(out, xs.shape, self._returned("inference"), form)
        return np.moveaxis(y, ux, ax)

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
        # the exact statistics of x as the target holds it (float64 holds every value of the
        # narrower dtypes exactly; the reference does not read ml_dtypes' bfloat16 itself)
        exact = np.asarray(xd, dtype=np.float64)
        stats = reference.batch_norm_forward(exact, np.ones(c), np.zeros(c), eps=1.0, axis=ax)
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
        returned = self._returned(method)
        form = f"a tuple (new_mean, new_var) of arrays of shape {(c,)}"
        new_mean, new_var = _parts(out, 2, returned, form)
        return RunningStats(
            _as_output(new_mean, (c,), f"{returned} new_mean as", f"an array of shape {(c,)}"),
            _as_output(new_var, (c,), f"{returned} new_var as", f"an array of shape {(c,)}"),
        )

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
        """(y, new_running_mean, new_running_var): one training-mode step of the user's layer,
        layer(x, running_mean, running_var, momentum, eps) with x in the user's layout and
        momentum in the convention's meaning. A layer of another arity, or one returning
        anything but three arrays of those shapes, is a TypeError or ValueError naming it and
        the form expected (`LAYER_FORM`)."""
        return _layer_step(
            self, x, running_mean, running_var, momentum=momentum, eps=eps, axis=axis
        )


LAYER_FORM = (
    "layer(x, running_mean, running_var, momentum, eps) -> (y, new_running_mean, new_running_var)"
)


def _check_arity(fn: UserFunction, label: str, count: int, form: str) -> None:
    """TypeError naming the function and `form` unless fn takes `count` positional arguments."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return
    try:
        signature.bind(*range(count))
    except TypeError:
        raise TypeError(f"--layer {label} has the signature {signature}; expected {form}") from None


def _layer_step(
    target: UserTarget,
    x: Array,
    running_mean: Array,
    running_var: Array,
    *,
    momentum: float,
    eps: float,
    axis: int,
) -> tuple[Array, Array, Array]:
    """One training-mode step of the user's layer (`UserTarget.layer_step`)."""
    method = "layer_step"
    if target._layer is None:
        raise TargetLacks(target.name, method, "no layer function was given (--layer)")
    layer = target._layer
    label = target._labels[method]
    _check_arity(layer, str(label), 5, LAYER_FORM)
    target._check_eps(eps, method)
    factor = target._factor(momentum, None)
    ax, ux = normalize_axis(axis, x.ndim), target._user_axis(x.ndim, method)
    xs = np.moveaxis(x, ax, ux)
    out = target._call(
        lambda a, rm, rv: layer(a, rm, rv, factor, eps),
        method,
        "x, running_mean, running_var",
        xs,
        running_mean,
        running_var,
    )
    c = (x.shape[ax],)
    returned = f"--layer {label} returned"
    form = f"{LAYER_FORM}, y of shape {xs.shape} and the statistics of shape {c}"
    y_out, mean_out, var_out = _parts(out, 3, returned, form)
    y = _as_output(y_out, xs.shape, f"{returned} y as", f"an array of shape {xs.shape}")
    mean = _as_output(mean_out, c, f"{returned} new_running_mean as", f"an array of shape {c}")
    var = _as_output(var_out, c, f"{returned} new_running_var as", f"an array of shape {c}")
    return np.moveaxis(y, ux, ax), mean, var


def load_user_target(
    spec: str,
    *,
    convention: str = "pytorch",
    backward: str | None = None,
    inference: str | None = None,
    running_stats: str | None = None,
    layer: str | None = None,
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
        layer=layer,
        dtype=dtype,
        eps=eps,
        momentum=momentum,
    )


def reference_stand_in(
    convention: str,
    axis: int,
    *,
    dtype: str,
    eps: float | None,
    momentum: float | None,
    given: frozenset[str],
    name: str,
) -> UserTarget:
    """A `UserTarget` around the reference's batch-norm functions, in the layout `axis`, with
    only the methods named in `given` ("forward", "backward", "inference",
    "update_running_stats"): the capabilities of a user's target, without the user's code.

    Its functions read their arguments as float64 and do not check finiteness: only where it
    refuses (`TargetLacks`) matters, and that must not hinge on the values of a case.
    """

    def forward(x: Array, gamma: Array, beta: Array, eps: float) -> Array:
        f = np.float64
        out = reference.batch_norm_forward(
            x.astype(f), gamma.astype(f), beta.astype(f), eps=eps, axis=axis, check_finite=False
        )
        return out.y

    def backward(dy: Array, x: Array, gamma: Array, eps: float) -> tuple[Array, Array, Array]:
        f = np.float64
        g = reference.batch_norm_backward(
            dy.astype(f), x.astype(f), gamma.astype(f), eps=eps, axis=axis, check_finite=False
        )
        return g.dx, g.dgamma, g.dbeta

    def inference(  # noqa: PLR0917 -- the user's signature, positional
        x: Array, gamma: Array, beta: Array, rm: Array, rv: Array, eps: float
    ) -> Array:
        args = [a.astype(np.float64) for a in (x, gamma, beta, rm, rv)]
        return reference.batch_norm_inference(*args, eps=eps, axis=axis, check_finite=False)

    def running(  # noqa: PLR0917 -- the user's signature, positional
        rm: Array, rv: Array, bm: Array, bv: Array, n: int, m: float
    ) -> tuple[Array, Array]:
        new = reference.update_running_stats(rm, rv, bm, bv, n, convention=convention, momentum=m)
        return new.mean, new.var

    def layer(x: Array, rm: Array, rv: Array, m: float, eps: float) -> tuple[Array, Array, Array]:
        c = x.shape[axis]
        out = reference.batch_norm_forward(
            x.astype(np.float64), np.ones(c), np.zeros(c), eps=eps, axis=axis, check_finite=False
        )
        n = x.size // c
        new = reference.update_running_stats(
            rm, rv, out.mean, out.var, n, convention=convention, momentum=m
        )
        return out.y, new.mean, new.var

    return UserTarget(
        forward,
        convention,
        axis,
        backward if "backward" in given else None,
        inference if "inference" in given else None,
        running_stats=running if "update_running_stats" in given else None,
        layer=layer if "layer_step" in given else None,
        dtype=dtype,
        eps=eps,
        momentum=momentum,
        name=name,
    )
