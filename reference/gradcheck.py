"""Gradient checking by central differences: every element (full) or random projections (fast).

For a function ``f`` of several arrays and an upstream gradient ``v`` of f's output shape, the
checked scalar is ``L = sum(v * f(*inputs))`` and the analytic gradients are
``vjp(v, *inputs) = (dL/d inputs[0], dL/d inputs[1], ...)``.

Step. The central difference (L(x + h) - L(x - h)) / (2h) errs by the truncation
``h**2/6 |L'''|`` plus the rounding ``u |L| / h`` (u = 2**-53). If L varies on the scale ``s``
of x (``|L'''| ~ |L| / s**3``) the sum is smallest at ``h = s (3u)**(1/3) = 6.9e-6 s``, where both
terms together are ``~ (3u)**(2/3) |L| / s = 2.3e-10 |L| / s``: about ten digits of the
derivative. The default step is therefore ``DEFAULT_RELATIVE_STEP * max(|x_i|, rms(x))`` per
element (rms over that input; 1.0 for an all-zero input): the element's own magnitude, and
never less than the input's typical magnitude so that a zero element still moves. A caller who
knows the scale on which f is nonlinear (batch norm: ``sqrt(var + eps)``) passes ``step``.
(torch.autograd.gradcheck uses an absolute ``eps=1e-6``: the same for inputs of scale 1.)

Tolerance. The comparison is norm-wise per input, with the relative error
``||a - n|| / (||a|| + ||n||)`` of `relative_error`, and passes when
``||a - n|| <= tolerance (||a|| + ||n||) + ||atol||``: a relative part and an optional absolute
per-element bound ``atol`` (in gradient units) for callers who derived one (torch's
``atol + rtol |b|``, made norm-wise; in fast mode a projection may differ by
``sum_i atol_i step_i``, see `fast_check`). The default ``tolerance = 1e-6`` is the ~2.3e-10 above
with a factor ~4e3 of room for cancellation in L (the rounding is ``u sum|v f|``, not
``u |L|``) and for third derivatives larger than the scale suggests, while a wrong element or
a missing term moves the relative error by far more than 1e-6 unless it is tiny against the
whole gradient.

Rounding of L. L is summed with `math.fsum` over the rounded products, so it is within
``u sum|v f| + u |L|`` of ``sum(v * f)`` for the computed output f; a caller deriving ``atol``
adds that to the error of f itself.

Fast mode follows torch.autograd.gradcheck's ``fast_mode`` (pytorch/pytorch,
torch/autograd/gradcheck.py, ``_fast_gradcheck`` / ``_get_numerical_vJu``, issue #53876): the
analytic ``v^T J u`` (here ``<dL/dx_k, delta>``) is compared with the central difference of L
along a random direction ``delta``, for one input at a time as torch does, so that a failure
names the input. Each projection costs 2 evaluations of f per input; with ``P`` projections and
``K`` inputs a fast check costs ``1 + 2 K P`` evaluations of f (the 1 checks f's output shape)
and one call of vjp, against ``1 + 2 (number of input elements)`` for a full check. Torch draws
``u`` uniform in [0, 1) and normalizes it; here each element moves by ``step * r`` with ``r``
uniform in [-1, 1], so that every element moves by at most its own (well-chosen) step, and the
direction is not concentrated on the all-ones vector, which is orthogonal to gradients that sum
to zero (batch norm's dx). On failure the fast check runs the full check to locate the worst
element (torch's ``_run_slow_mode_and_get_error``).

Batched evaluation. The perturbed points of a check do not depend on f's values, so they are
built first and f is evaluated at all of them, in order, before any difference is taken. A
caller whose f is costly to call once (a function in another process) passes ``f_many``, which
evaluates f at a list of points in one call; the points are handed to it in batches, each sent
once it holds ``BATCH_VALUES`` input values (so fewer than that plus one point's values), so
that memory stays bounded for large inputs. The
numbers are the same as with f: the same points, in the same order, the same arithmetic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from reference._validation import (
    Float64Array,
    as_float64_array,
    check_int,
    real_scalar,
)

U = 2.0**-53  # unit roundoff of float64
DEFAULT_RELATIVE_STEP = (3.0 * U) ** (1.0 / 3.0)  # 6.9e-6: minimizes h**2/6 + u/h (see above)
DEFAULT_TOLERANCE = 1e-6  # (3u)**(2/3) ~ 2.3e-10 times ~4e3 of room (see the module docstring)
DEFAULT_PROJECTIONS = 3  # per input: a wrong gradient is caught by each one with probability 1
BATCH_VALUES = 2**22  # input values per call of f_many (32 MiB of float64): bounded memory

Function = Callable[..., ArrayLike]
VJP = Callable[..., Sequence[ArrayLike]]
Point = tuple[Float64Array, ...]  # the arguments of one evaluation of f
Evaluator = Callable[[Sequence[Point]], Sequence[ArrayLike]]
StepSpec = float | Sequence[float | ArrayLike] | None
AtolSpec = float | Sequence[float | ArrayLike]


def relative_error(analytic: ArrayLike, numeric: ArrayLike) -> float:
    """The norm-wise relative error ``||a - n||_2 / (||a||_2 + ||n||_2)`` over all elements.

    0.0 when both are zero; at most 1.0 otherwise (by the triangle inequality); NaN when either
    holds a NaN or an infinity (a NaN never passes a tolerance). The norms are computed on the
    arrays divided by their largest magnitude, so huge or tiny values neither overflow nor
    underflow.
    """
    a = as_float64_array(analytic, "analytic", check_finite=False)
    n = as_float64_array(numeric, "numeric", check_finite=False)
    if a.shape != n.shape:
        raise ValueError(f"numeric must have the shape of analytic, {a.shape}, got shape {n.shape}")
    if not (np.isfinite(a).all() and np.isfinite(n).all()):
        return math.nan
    denominator = _norm(a) + _norm(n)
    return _norm(a - n) / denominator if denominator > 0 else 0.0


def _norm(values: Float64Array) -> float:
    """The 2-norm computed as max|v| * ||v / max|v|||, so that squares neither overflow nor
    underflow (the bounds of a channel with values ~1e-200 are ~1e-215)."""
    largest = float(np.max(np.abs(values), initial=0.0))
    if largest == 0.0 or not math.isfinite(largest):
        return largest
    return largest * float(np.linalg.norm(values / largest))


@dataclass(frozen=True)
class GradcheckReport:
    """The outcome of a gradient check.

    `relative_errors` and `tolerances` map each input's name to its `relative_error` and to the
    relative error it may reach (``tolerance + ||atol|| / (||a|| + ||n||)``). The worst input is
    the one with the largest error / tolerance. In modes "full" and "fast->full",
    `worst_index` is an element of that input and `analytic` / `numeric` are dL/dx there; in
    mode "fast" it is ``(p,)``, the worst projection p, and the values are the analytic
    ``<dL/dx, delta_p>`` and numeric ``(L(x + delta_p) - L(x - delta_p)) / 2``.
    `fast_relative_errors` holds the fast check's errors (empty in mode "full"); `evaluations`
    counts the calls of f.
    """

    passed: bool
    mode: str
    relative_errors: Mapping[str, float]
    tolerances: Mapping[str, float]
    worst_input: str
    worst_index: tuple[int, ...]
    analytic: float
    numeric: float
    evaluations: int
    fast_relative_errors: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def tolerance(self) -> float:
        """The tolerance of the worst input."""
        return self.tolerances[self.worst_input]

    def __str__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        where = (
            f"projection {self.worst_index[0]}"
            if self.mode == "fast"
            else f"element {self.worst_input}{list(self.worst_index)}"
        )
        lines = [
            f"gradcheck {verdict} ({self.mode} mode, {self.evaluations} evaluations of f): "
            f"worst input {self.worst_input!r}, relative error "
            f"{self.relative_errors[self.worst_input]:.3e} (tolerance {self.tolerance:.3e})",
            f"  worst {where}: analytic {self.analytic!r}, numeric {self.numeric!r}",
        ]
        lines += [
            f"  {name}: relative error {err:.3e}, tolerance {self.tolerances[name]:.3e}"
            for name, err in self.relative_errors.items()
        ]
        if self.mode == "fast->full":
            fast = ", ".join(f"{k} {v:.3e}" for k, v in self.fast_relative_errors.items())
            lines.append(
                f"  the fast check failed (relative errors {fast}); the full check located "
                "the worst element"
            )
        return "\n".join(lines)


@dataclass(frozen=True)
class _Problem:
    """Validated arguments: private copies of the inputs, steps and atol broadcast to shape."""

    f: Function
    f_many: Evaluator | None
    vjp: VJP
    inputs: tuple[Float64Array, ...]
    upstream: Float64Array
    names: tuple[str, ...]
    steps: tuple[Float64Array, ...]
    atols: tuple[Float64Array, ...]
    tolerance: float

    def losses(self, points: Iterable[Sequence[Float64Array]]) -> list[float]:
        """L = fsum(v * f(*point)) at each point, in order, on fresh copies (f can neither see
        nor edit our arrays): with `f_many` on batches sent once they hold BATCH_VALUES values
        (fewer than that plus one point's), else with f one point at a time."""
        out: list[float] = []
        batch: list[Point] = []
        values = 0
        for point in points:
            batch.append(tuple(a.copy() for a in point))
            values += sum(a.size for a in point)
            if values >= BATCH_VALUES:
                out += self._evaluate(batch)
                batch, values = [], 0
        return out + self._evaluate(batch) if batch else out

    def _evaluate(self, points: list[Point]) -> list[float]:
        if self.f_many is None:
            return [self._loss(self.f(*point)) for point in points]
        outputs: object = self.f_many(points)
        if isinstance(outputs, np.ndarray) or not isinstance(outputs, Sequence):
            raise TypeError(
                "f_many must return a list with one output of f per point, "
                f"got {type(outputs).__name__}"
            )
        if len(outputs) != len(points):
            raise ValueError(
                f"f_many must return one output of f per point ({len(points)}), got {len(outputs)}"
            )
        return [self._loss(out) for out in outputs]

    def _loss(self, output: ArrayLike) -> float:
        out = as_float64_array(output, "f's output", check_finite=False)
        if out.shape != self.upstream.shape:
            raise ValueError(
                f"f's output must keep the shape {self.upstream.shape} when its inputs are "
                f"perturbed, got shape {out.shape}"
            )
        return math.fsum((self.upstream * out).ravel().tolist())

    def analytic(self) -> tuple[Float64Array, ...]:
        """The gradients from vjp, checked for count and shapes."""
        grads: object = self.vjp(self.upstream.copy(), *(a.copy() for a in self.inputs))
        if isinstance(grads, np.ndarray) or not isinstance(grads, Sequence):
            raise TypeError(
                f"vjp must return a tuple with one gradient per input, got {type(grads).__name__}"
            )
        if len(grads) != len(self.inputs):
            raise ValueError(
                f"vjp must return one gradient per input ({len(self.inputs)}: "
                f"{', '.join(self.names)}), got {len(grads)}"
            )
        out = []
        for name, x, g in zip(self.names, self.inputs, grads, strict=True):
            garr = as_float64_array(g, f"gradient of {name}", check_finite=False)
            if garr.shape != x.shape:
                raise ValueError(
                    f"vjp's gradient of {name} must have the shape of {name}, {x.shape}, "
                    f"got shape {garr.shape}"
                )
            out.append(garr)
        return tuple(out)


def _check_callable(value: Any, name: str) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__} {value!r}")


def _per_input(
    spec: float | Sequence[float | ArrayLike],
    what: str,
    inputs: tuple[Float64Array, ...],
    *,
    positive: bool,
) -> tuple[Float64Array, ...]:
    """A float for every input, or one float/array per input, broadcast to each input's shape."""
    if isinstance(spec, (str, bytes, np.ndarray)) or not isinstance(spec, Sequence):
        items: Sequence[Any] = [spec] * len(inputs)
        labels = [what] * len(inputs)
    else:
        if len(spec) != len(inputs):
            raise ValueError(
                f"{what} must be a number or one value per input ({len(inputs)}), "
                f"got {len(spec)} values"
            )
        items = spec
        labels = [f"{what}[{k}]" for k in range(len(inputs))]
    out = []
    for label, item, x in zip(labels, items, inputs, strict=True):
        if isinstance(item, (bool, np.bool_)):
            raise TypeError(f"{label} must be a real number or array, got bool {item!r}")
        arr = as_float64_array(item, label, check_finite=False)
        bad = ~np.isfinite(arr) | ((arr <= 0) if positive else (arr < 0))
        if bad.any():
            want = "finite and > 0" if positive else "finite and >= 0"
            raise ValueError(f"{label} must be {want}, got {float(arr[bad].ravel()[0])!r}")
        try:
            out.append(np.broadcast_to(arr, x.shape).copy())
        except ValueError as exc:
            raise ValueError(
                f"{label} must broadcast to the input's shape {x.shape}, got shape {arr.shape}"
            ) from exc
    return tuple(out)


def default_step(x: ArrayLike) -> Float64Array:
    """The default step per element: ``DEFAULT_RELATIVE_STEP * max(|x_i|, rms(x))``.

    For an all-zero input the scale is 1. See the module docstring for the derivation.
    """
    arr = as_float64_array(x, "x")
    rms = float(np.sqrt(np.mean(np.square(arr)))) if arr.size else 0.0
    scale = np.maximum(np.abs(arr), rms if rms > 0 else 1.0)
    step: Float64Array = DEFAULT_RELATIVE_STEP * scale
    return step


def _labels(names: Sequence[str] | None, count: int) -> tuple[str, ...]:
    """The inputs' names: `names` checked (one distinct string per input), or inputs[k]."""
    if names is None:
        return tuple(f"inputs[{k}]" for k in range(count))
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(f"names must be a sequence of strings, got {type(names).__name__}")
    if len(names) != count:
        raise ValueError(
            f"names must have one name per input ({count}), got {len(names)}: {names!r}"
        )
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"names must be strings, got {names!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be distinct, got {names!r}")
    return tuple(names)


def _problem(
    f: Any,
    vjp: Any,
    inputs: Any,
    upstream: ArrayLike,
    *,
    names: Sequence[str] | None,
    step: StepSpec,
    tolerance: float,
    atol: AtolSpec,
    f_many: Any = None,
) -> tuple[_Problem, int]:
    """Validate everything; return the problem and the number of f calls made (1)."""
    _check_callable(f, "f")
    if f_many is not None:
        _check_callable(f_many, "f_many")
    _check_callable(vjp, "vjp")
    if isinstance(inputs, (np.ndarray, str, bytes)) or not isinstance(inputs, Sequence):
        raise TypeError(
            f"inputs must be a tuple or list of arrays, got {type(inputs).__name__}; "
            "wrap a single array as (x,)"
        )
    if len(inputs) == 0:
        raise ValueError("inputs must hold at least one array, got an empty sequence")
    # Private copies: nothing below can reach the caller's arrays.
    xs = tuple(
        np.array(as_float64_array(x, f"inputs[{k}]"), copy=True) for k, x in enumerate(inputs)
    )
    for k, x in enumerate(xs):
        if x.size == 0:
            raise ValueError(f"inputs[{k}] must not be empty, got shape {x.shape}")
    labels = _labels(names, len(xs))
    tol = real_scalar(tolerance, "tolerance")
    if not (math.isfinite(tol) and tol >= 0):
        raise ValueError(f"tolerance must be a finite number >= 0, got {tolerance!r}")
    steps = (
        tuple(default_step(x) for x in xs)
        if step is None
        else _per_input(step, "step", xs, positive=True)
    )
    atols = _per_input(atol, "atol", xs, positive=False)
    v = np.array(as_float64_array(upstream, "upstream"), copy=True)
    out = as_float64_array(f(*(x.copy() for x in xs)), "f's output", check_finite=False)
    if v.shape != out.shape:
        raise ValueError(
            f"upstream must have the shape of f(*inputs), {out.shape}, got shape {v.shape}"
        )
    return _Problem(f, f_many, vjp, xs, v, labels, steps, atols, tol), 1


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    """The multi-index of a flat (C-order) position, as plain ints."""
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def _numeric(problem: _Problem) -> tuple[tuple[Float64Array, ...], int]:
    """Central differences of L for every element; the divisor is the representable 2h.

    Element j of input k is differenced at the points with x_j + h_j and x_j - h_j: all the
    points are evaluated (`_Problem.losses`, in this order) before the differences are taken.
    """
    widths = []
    for k, (x, h) in enumerate(zip(problem.inputs, problem.steps, strict=True)):
        width = (x + h) - (x - h)  # the steps actually taken, after rounding
        if not width.all():
            j = int(np.flatnonzero(width == 0)[0])
            raise ValueError(
                f"step for {problem.names[k]} at index {_index(j, x.shape)} is "
                f"{float(h.flat[j])!r}, below the spacing of the value "
                f"{float(x.flat[j])!r} there"
            )
        widths.append(width)
    losses = iter(problem.losses(_central_points(problem)))
    grads = []
    for width in widths:
        grad = np.empty_like(width)
        for j in range(width.size):
            l_plus, l_minus = next(losses), next(losses)
            grad.flat[j] = (l_plus - l_minus) / width.flat[j]
        grads.append(grad)
    return tuple(grads), 2 * sum(w.size for w in widths)


def _central_points(problem: _Problem) -> Iterator[Point]:
    """For each input k and element j in turn: the inputs with x_j + h_j, then with x_j - h_j."""
    for k, (x, h) in enumerate(zip(problem.inputs, problem.steps, strict=True)):
        for j in range(x.size):
            plus, minus = x.copy(), x.copy()
            plus.flat[j] = x.flat[j] + h.flat[j]
            minus.flat[j] = x.flat[j] - h.flat[j]
            yield _replaced(problem.inputs, k, plus)
            yield _replaced(problem.inputs, k, minus)


def _replaced(inputs: tuple[Float64Array, ...], k: int, value: Float64Array) -> Point:
    """`inputs` with input k replaced by `value`."""
    return (*inputs[:k], value, *inputs[k + 1 :])


def numeric_gradients(
    f: Function,
    inputs: Sequence[ArrayLike],
    upstream: ArrayLike,
    *,
    step: StepSpec = None,
    f_many: Evaluator | None = None,
) -> tuple[Float64Array, ...]:
    """Central-difference gradients of ``L = sum(upstream * f(*inputs))``, one per input.

    Element j of input k: ``(L(x + h_j e_j) - L(x - h_j e_j)) / ((x_j + h_j) - (x_j - h_j))``,
    the divisor being the step actually taken after rounding. `step` is None (the derived
    default, see `default_step`), one positive number for every element, or one positive
    number or array (broadcast to the input's shape) per input. The inputs are never modified:
    f only ever receives fresh copies. `f_many`, if given, evaluates f at the perturbed points:
    ``f_many(points)``, for a list of argument tuples, returns the list of f's outputs in order
    (one call per batch of points instead of one call of f per point; the same numbers).
    """
    problem, _ = _problem(
        f,
        _no_vjp,
        inputs,
        upstream,
        names=None,
        step=step,
        tolerance=0.0,
        atol=0.0,
        f_many=f_many,
    )
    grads, _ = _numeric(problem)
    return grads


def _no_vjp(*_: Any) -> Sequence[ArrayLike]:  # a placeholder: numeric_gradients needs no vjp
    raise AssertionError("numeric_gradients never calls vjp")


def _verdict(
    analytic: Float64Array, numeric: Float64Array, tolerance: float, atol_norm: float
) -> tuple[float, float]:
    """(relative error, relative tolerance) for one input: passes when error <= tolerance."""
    err = relative_error(analytic, numeric)
    scale = _norm(analytic) + _norm(numeric)
    # ||a - n|| <= tolerance (||a|| + ||n||) + ||atol||, divided by the scale.
    rel_tol = tolerance + atol_norm / scale if scale > 0 and math.isfinite(scale) else tolerance
    return err, rel_tol


def _worst(errors: Mapping[str, float], tolerances: Mapping[str, float]) -> str:
    def badness(name: str) -> tuple[bool, float]:
        err, tol = errors[name], tolerances[name]
        if math.isnan(err):
            return True, math.inf
        return False, err / tol if tol > 0 else (0.0 if err == 0 else math.inf)

    return max(errors, key=badness)


def _report(
    mode: str,
    problem: _Problem,
    analytic: Sequence[Float64Array],
    numeric: Sequence[Float64Array],
    *,
    atol_norms: Sequence[float],
    evaluations: int,
    fast_errors: Mapping[str, float] | None = None,
) -> GradcheckReport:
    errors, tolerances = {}, {}
    for name, a, n, atol_norm in zip(problem.names, analytic, numeric, atol_norms, strict=True):
        errors[name], tolerances[name] = _verdict(a, n, problem.tolerance, atol_norm)
    worst = _worst(errors, tolerances)
    k = problem.names.index(worst)
    diff = np.abs(analytic[k] - numeric[k])
    diff = np.where(np.isnan(diff), np.inf, diff)
    index = _index(int(np.argmax(diff)), diff.shape)
    passed = all(errors[n] <= tolerances[n] for n in problem.names)
    return GradcheckReport(
        passed=passed,
        mode=mode,
        relative_errors=MappingProxyType(errors),
        tolerances=MappingProxyType(tolerances),
        worst_input=worst,
        worst_index=index,
        analytic=float(analytic[k][index]),
        numeric=float(numeric[k][index]),
        evaluations=evaluations,
        fast_relative_errors=MappingProxyType(dict(fast_errors or {})),
    )


def _full(
    problem: _Problem,
    evaluations: int,
    mode: str,
    fast: Mapping[str, float] | None,
    analytic: tuple[Float64Array, ...],
) -> GradcheckReport:
    numeric, count = _numeric(problem)
    atol_norms = [_norm(a) for a in problem.atols]
    return _report(
        mode,
        problem,
        analytic,
        numeric,
        atol_norms=atol_norms,
        evaluations=evaluations + count,
        fast_errors=fast,
    )


def full_check(
    f: Function,
    vjp: VJP,
    inputs: Sequence[ArrayLike],
    *,
    upstream: ArrayLike,
    names: Sequence[str] | None = None,
    step: StepSpec = None,
    tolerance: float = DEFAULT_TOLERANCE,
    atol: AtolSpec = 0.0,
    f_many: Evaluator | None = None,
) -> GradcheckReport:
    """Compare every element of ``vjp(upstream, *inputs)`` with `numeric_gradients`.

    Input k passes when ``||a_k - n_k|| <= tolerance (||a_k|| + ||n_k||) + ||atol_k||`` (2-norms
    over the input's elements); `atol` is 0, a number, or one number/array per input, in
    gradient units. Costs ``1 + 2 * (total number of input elements)`` evaluations of f
    (all but the first through `f_many` if given, as in `numeric_gradients`).
    Raises TypeError for a non-callable f, vjp or f_many, inputs that are not real arrays, or
    a vjp or f_many that returns no tuple or list; ValueError for an upstream of the wrong
    shape, a vjp result of the wrong length or shape (naming the input), an f_many result of
    the wrong length, a step <= 0 or not finite, or wrong names.
    """
    problem, evaluations = _problem(
        f,
        vjp,
        inputs,
        upstream,
        names=names,
        step=step,
        tolerance=tolerance,
        atol=atol,
        f_many=f_many,
    )
    return _full(problem, evaluations, "full", None, problem.analytic())


def fast_check(
    f: Function,
    vjp: VJP,
    inputs: Sequence[ArrayLike],
    *,
    upstream: ArrayLike,
    rng: int | np.random.Generator,
    num_projections: int = DEFAULT_PROJECTIONS,
    names: Sequence[str] | None = None,
    step: StepSpec = None,
    tolerance: float = DEFAULT_TOLERANCE,
    atol: AtolSpec = 0.0,
    f_many: Evaluator | None = None,
) -> GradcheckReport:
    """Compare random projections of the gradient; fall back to `full_check` on failure.

    For each input k and projection p: ``delta = step_k * r`` with r uniform in [-1, 1]
    (drawn from `rng`, a seed or a numpy Generator), analytic ``a_p = <dL/dx_k, delta'>`` and
    numeric ``n_p = (L(x_k + delta) - L(x_k - delta)) / 2``, where ``delta'`` is half the
    displacement actually taken after rounding. Input k passes when the vectors over p satisfy
    ``||a - n|| <= tolerance (||a|| + ||n||) + sqrt(P) sum_i atol_i step_i``: if atol_i bounds
    the full check's error at element i, the worst projection in the box |delta_i| <= step_i
    errs by at most sum_i atol_i step_i (the analytic part by sum_i atol_i |delta_i|; the
    rounding of L, which enters a projection once rather than per element, by any one term).
    Costs ``1 + 2 * len(inputs) * num_projections`` evaluations of f and one vjp call; when an
    input fails, the full check runs as well and the report (mode "fast->full") names the worst
    element. `f_many` as for `full_check`. Errors as for `full_check`, plus for `rng` and
    `num_projections`.
    """
    problem, evaluations = _problem(
        f,
        vjp,
        inputs,
        upstream,
        names=names,
        step=step,
        tolerance=tolerance,
        atol=atol,
        f_many=f_many,
    )
    count = check_int(num_projections, "num_projections", minimum=1)
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, (int, np.random.Generator)):
        raise TypeError(
            f"rng must be an int seed or a numpy.random.Generator, got {type(rng).__name__}"
        )
    gen = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    grads = problem.analytic()
    analytic = [np.empty(count) for _ in problem.inputs]
    numeric = [np.empty(count) for _ in problem.inputs]
    # The worst projection error that per-element atol allows over the step box |delta| <= h.
    box = [
        math.fsum((a * h).ravel().tolist())
        for a, h in zip(problem.atols, problem.steps, strict=True)
    ]
    # The directions first (drawn in the order p, k), then L at x_k + delta and x_k - delta
    # for each, evaluated together.
    halves: list[list[Float64Array]] = []  # per projection p, per input k
    points: list[Point] = []
    for _ in range(count):
        halves.append([])
        for k, (x, h) in enumerate(zip(problem.inputs, problem.steps, strict=True)):
            delta = h * gen.uniform(-1.0, 1.0, size=x.shape)
            plus, minus = x + delta, x - delta
            half = (plus - minus) / 2  # the displacement actually taken, after rounding
            if not half.any():
                raise ValueError(
                    f"step for {problem.names[k]} is below the spacing of its values: "
                    f"x + delta == x - delta for every element (largest step {float(h.max())!r})"
                )
            halves[-1].append(half)
            points += [_replaced(problem.inputs, k, plus), _replaced(problem.inputs, k, minus)]
    losses = iter(problem.losses(points))
    evaluations += len(points)
    for p, directions in enumerate(halves):
        for k, half in enumerate(directions):
            l_plus, l_minus = next(losses), next(losses)
            numeric[k][p] = (l_plus - l_minus) / 2
            analytic[k][p] = math.fsum((grads[k] * half).ravel().tolist())
    report = _report(
        "fast",
        problem,
        analytic,
        numeric,
        atol_norms=[math.sqrt(count) * b for b in box],
        evaluations=evaluations,
    )
    if report.passed:
        return report
    return _full(problem, evaluations, "fast->full", report.relative_errors, grads)
