"""Running statistics and inference, for any `Implementation`.

* inference-equals-training: inference with the batch's own mean and biased variance as the
  running statistics gives the training-mode output.
* inference-formula: inference with ARBITRARY running statistics, unrelated to the batch, is
  gamma (x - running_mean) / sqrt(running_var + eps) + beta. (With the batch's own statistics
  only, an inference that ignores its running statistics and normalizes with the batch's, the
  commonest train/eval mistake, would pass.)
* inference-per-example: inference treats each example on its own: an example's output does
  not change when the other examples of the batch do, and a batch of one example works.
* frozen-backward: where the target has a backward in inference mode (the optional
  `frozen_backward` of `properties.adapter.FrozenBackward`), its gradients are those of the
  affine map above; a target without one is not applicable.
* running-stats-formula: one update follows the written formula of `impl.convention`.
* cumulative-average: PyTorch's momentum=None averages the batch statistics arithmetically.

The PyTorch/Keras momentum relation (c) is a fact about two conventions, not about an
implementation, so it is a plain test of the reference (tests/test_running_stats.py): as a
Property it would be reported as "passed" for any implementation without looking at it.

Expected values are exact: the batch mean and variance are rational functions of the float
inputs, computed with `fractions.Fraction` and rounded once, so the checker's own error is u/2
relative. The tolerances bound what a correct float64 implementation may add (u = 2**-53):

* batch mean over n values with max|x| = M: |m' - m| <= E_m = K u M, K = n + 1 for a
  summation in any order, 2 n + 8 for any backward-stable update (the accuracy class of the
  implementation, `tolerances.accuracy_class`; derivation in properties.tolerances);
* biased variance from the deviations: |v' - v| <= E_v = (n + 2) u v + E_m**2 (two-pass: the
  shift of the mean adds E_m**2, the cross term cancels), plus 2 K u M sd + K u v for a
  streaming or merged computation (its running mean's error enters to first order), plus the
  channel's flush-to-zero budget (`tolerances.flush_budget`) where something is subnormal;
* the weights a, b <= 1 (and n/(n-1)) are computed with an absolute error <= 2u, and each
  product and sum rounds once more (u relative);
* gradual underflow: a product or quotient in the subnormal range may also be off by ETA/2
  absolutely (ETA = 2**-1074), so each bound adds ETA per such operation (data of 1e-159
  have a subnormal variance that no float64 implementation gets to u relative);
* flush to zero: where a running statistic, an intermediate of the update or its result is
  subnormal, the update's flush floor (`update_flush_floor`), tiny per such value; nowhere
  else, so the bounds keep their teeth on normal-range values.
Each bound is first order and multiplied by SAFETY, as in properties.tolerances. An
implementation computing in float32 or float16 gets the same bounds with its dtype's u and ETA
(`tolerances.precision(impl.dtype)`); the checker's own roundings (float64) keep U64.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from properties.adapter import Array, Implementation, RunningStats, frozen_backward_of
from properties.batchnorm_props import GradientCase
from properties.checks import compare, unchanged
from properties.framework import Measurement, Property, Unsupported
from properties.strategies import (
    BatchCase,
    CodeRepr,
    Layout,
    batch_cases,
    layouts,
    live_frozen_channel,
    upstream_gradients,
)
from properties.tolerances import (
    ACCURACY_CLASS,
    SAFETY,
    TWO_PASS,
    U64,
    ExactStats,
    Precision,
    accuracy_class,
    channel_rows,
    exact_stats,
    expand,
    flush_budget,
    flush_floor,
    flush_floor_y,
    precision,
    roundings,
    x_hat_bound,
    y_bound,
)
from reference.conventions import Convention, get_convention

# Running statistics drawn for a case: moderate magnitudes, no subnormals.
_RUNNING_MEAN = st.floats(-1e6, 1e6, allow_subnormal=False)
_RUNNING_VAR = st.floats(0.0, 1e6, allow_subnormal=False)
_MOMENTUM = st.one_of(st.sampled_from([0.0, 1.0, 0.1, 0.9, 0.99]), st.floats(0.0, 1.0))
MAX_BATCHES = 6  # batches fed in a row for the cumulative average
ETA = 2.0**-1074  # the smallest subnormal float64: the absolute error unit of underflow


@dataclass(frozen=True)
class ExactMoments:
    """Per-channel batch mean and biased variance as exact rationals, and max|x| per channel."""

    mean: tuple[Fraction, ...]
    var: tuple[Fraction, ...]
    count: int
    max_abs: Array


def exact_moments(x: Array, axis: int) -> ExactMoments:
    """mean = sum(x)/n and var = sum((x - mean)**2)/n per channel, in exact rational arithmetic."""
    rows = np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)
    n = rows.shape[1]
    means, variances = [], []
    for row in rows:
        values = [Fraction(v) for v in row.tolist()]
        mean = sum(values, Fraction(0)) / n
        means.append(mean)
        variances.append(sum(((v - mean) ** 2 for v in values), Fraction(0)) / n)
    return ExactMoments(tuple(means), tuple(variances), n, np.max(np.abs(rows), axis=1))


def _as_floats(values: list[Fraction]) -> Array:
    return np.array([float(v) for v in values], dtype=np.float64)


def _stat_errors(
    moments: ExactMoments, p: Precision, accuracy: str, flush: ExactStats
) -> tuple[Array, Array]:
    """(E_m, E_v) per channel: what a correct batch mean and biased variance in p, of the
    accuracy class `accuracy`, may miss; `flush` (the batch's exact statistics) says where the
    flush-to-zero budget applies."""
    n = moments.count
    k = roundings(n, accuracy)
    budget = flush_budget(flush, p.tiny, p.u)
    var = _as_floats(list(moments.var))
    # the division by n may underflow (eta), or flush (the budget's shift)
    e_mean = k * p.u * moments.max_abs + p.eta + budget.shift
    # n squares may underflow, ETA/2 each; the squared mean shift adds e_mean**2
    e_var = (n + 2) * p.u * var + e_mean**2 + (n + 2) * p.eta + budget.var
    if accuracy != TWO_PASS:  # the running mean's error, to first order (tolerances, 2s)
        e_var = e_var + 2 * k * p.u * moments.max_abs * np.sqrt(var) + k * p.u * var
    return e_mean, e_var


# --- a) inference with the batch's own statistics equals training ---------------------------


def check_inference_equals_training(impl: Implementation, case: BatchCase) -> list[Measurement]:
    """inference(x; running_mean = mean(x), running_var = var(x)) == forward(x).y.

    Training side: the y bound of the forward properties, |gamma| * x_hat_bound plus the
    rounding of gamma*x_hat + beta. Inference side, y = gamma (x - rm) / sqrt(rv + eps) + beta
    with the checker's rm, rv rounded (|rm - m| <= 2u|m|, rv = (v + dm**2)(1 + 5u)): the
    shift costs |gamma| 2u kappa, the scale |gamma x_hat| (6.5u + 2 (u kappa)**2), the final
    sum u|y|. In a narrow dtype an intermediate may underflow: ETA (1 + |gamma|) (1 + 1/s).
    """
    stats = exact_stats(case.x, case.axis, case.eps)
    p = precision(impl.dtype)
    y_train = impl.forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis).y
    y_inf = impl.inference(
        case.x, case.gamma, case.beta, stats.mean, stats.var, eps=case.eps, axis=case.axis
    )
    nd = case.x.ndim
    g = np.abs(expand(stats, case.gamma, nd))
    gx = g * np.abs(stats.x_hat)
    y = expand(stats, case.gamma, nd) * stats.x_hat + expand(stats, case.beta, nd)
    y_abs = np.abs(y)
    kappa = expand(stats, stats.kappa, nd)
    inv_s = expand(stats, 1 / stats.scale, nd)
    acc = accuracy_class(impl)
    # Flush to zero, on both sides: x_hat's floor times gamma, and gamma x_hat or y flushed.
    flush = g * flush_floor(stats, nd, p.tiny, p.u)
    flush = flush + flush_floor_y(np.stack([gx, y]), p.tiny)
    train = g * x_hat_bound(stats, nd, p.u, p.eta, accuracy=acc, tiny=p.tiny) + SAFETY * (
        p.u * (gx + y_abs) + p.eta + flush
    )
    infer = SAFETY * (
        g * p.u * (2 * kappa + np.abs(stats.x_hat) * (7 + 2 * p.u * kappa**2))
        + p.u * y_abs
        + p.eta * (1 + g) * (1 + inv_s)
        + flush
    )
    return [
        compare(
            "inference with the batch's statistics vs training y", y_inf, y_train, train + infer
        )
    ]


# --- inference with arbitrary running statistics ---------------------------------------------

# Running statistics unrelated to the batch: zero, ordinary and far outside the data's range;
# variances from 0 (where eps alone normalizes) through tiny to large.
_ANY_MEAN = st.one_of(
    st.just(0.0),
    st.floats(-10.0, 10.0, allow_subnormal=False),
    st.floats(-1e6, 1e6, allow_subnormal=False),
)
_ANY_VAR = st.one_of(
    st.just(0.0),
    st.floats(1e-8, 1e-2, allow_subnormal=False),
    st.floats(0.0, 1e6, allow_subnormal=False),
)


@st.composite
def inference_cases(draw: st.DrawFn) -> GradientCase:
    """Any batch, one example or more, a non-uniform dy, and running statistics drawn
    independently of the batch."""
    case = draw(batch_cases(min_count=1))
    c = case.x.shape[case.axis]
    dy = draw(upstream_gradients(case.x.shape))
    rm = np.array(draw(st.lists(_ANY_MEAN, min_size=c, max_size=c)))
    rv = np.array(draw(st.lists(_ANY_VAR, min_size=c, max_size=c)))
    return GradientCase(case, dy, rm, rv)


@st.composite
def frozen_backward_cases(draw: st.DrawFn) -> GradientCase:
    """An `inference_cases` case with a channel live in inference mode
    (`strategies.live_frozen_channel`: where every channel has gamma = 0, dx = 0 exactly, or
    x - rm ~0, dgamma ~0, those comparisons could not fail), every drawn channel kept; where a
    channel is inserted, dy is drawn anew for the grown shape."""
    gc = draw(inference_cases())
    case, rm, rv = draw(live_frozen_channel(gc.case, gc.running_mean, gc.running_var))
    if case is gc.case:
        return gc
    return GradientCase(case, draw(upstream_gradients(case.x.shape)), rm, rv)


@dataclass(frozen=True)
class _Affine:
    """Inference's exact terms, shaped like x: a = |gamma| / sqrt(rv + eps), the deviations
    x - rm, x_r = (x - rm) / sqrt(rv + eps) and y = gamma x_r + beta, each computed in float64
    within 4 U64 of its magnitude (one subtraction, sqrt of a rounded sum, one division)."""

    a: Array
    dev: Array
    x_r: Array
    y: Array
    root: Array


def _affine(gc: GradientCase, x: Array) -> _Affine:
    case = gc.case
    shape = [1] * x.ndim
    shape[case.axis % x.ndim] = -1
    root = np.sqrt(gc.running_var + case.eps).reshape(shape)
    dev = x - gc.running_mean.reshape(shape)
    x_r = dev / root
    y = case.gamma.reshape(shape) * x_r + case.beta.reshape(shape)
    a = np.abs(case.gamma).reshape(shape) / root
    return _Affine(np.broadcast_to(a, x.shape), dev, x_r, y, root)


def inference_bound(impl: Implementation, gc: GradientCase, x: Array) -> tuple[Array, Array]:
    """(y, tolerance): the inference output for batch x from the formula, and how far a correct
    implementation in impl's dtype may be from it, per element.

    Direct, y = gamma ((x - rm) / sqrt(rv + eps)) + beta: the subtraction (u |x - rm|), the
    radicand, square root and division (2.5 u), the product (u) and the sum (u |y|). Folded,
    k = gamma / sqrt(rv + eps), y = x k + (beta - rm k): k (3.5 u), the two products (u each,
    relative to |x| k and |rm| k) and the two sums (u (|beta| + |y|)). Both are within
    5 u a (|x| + |rm|) + u (|beta| + |y|), a = |gamma| / sqrt(rv + eps). Underflow: eta per
    operation, (3 + a) eta. Flush to zero: tiny where an input x or rm, x - rm, x_r, gamma x_r,
    y, x k or rm k is subnormal (weighted by a for those before the scaling, |gamma| for x_r), and
    a subnormal rv read as 0 moves the radicand by < tiny: |y - beta| tiny / (2 (rv + eps)).
    All times SAFETY, plus the checker's own 4 U64 a |x - rm| + U64 |y|.
    """
    case, p = gc.case, precision(impl.dtype)
    f = _affine(gc, x)
    shape = f.root.shape
    rm = np.broadcast_to(gc.running_mean.reshape(shape), x.shape)
    g = np.broadcast_to(case.gamma.reshape(shape), x.shape)
    beta = np.abs(case.beta).reshape(shape)
    flush = f.a * flush_floor_y(np.stack([x, rm, f.dev]), p.tiny)
    flush = flush + np.abs(g) * flush_floor_y(f.x_r[None], p.tiny)
    flush = flush + flush_floor_y(np.stack([g * f.x_r, f.y, x * f.a, rm * f.a]), p.tiny)
    rv = gc.running_var.reshape(shape)
    daz = np.where((rv > 0) & (rv < p.tiny), p.tiny / (2 * (rv + case.eps)), 0.0)
    flush = flush + np.abs(f.y - case.beta.reshape(shape)) * daz
    tol = SAFETY * (
        5 * p.u * f.a * (np.abs(x) + np.abs(rm))
        + p.u * (beta + np.abs(f.y))
        + (3 + f.a) * p.eta
        + flush
    )
    return f.y, tol + U64 * (4 * f.a * np.abs(f.dev) + np.abs(f.y))


def check_inference_formula(impl: Implementation, gc: GradientCase) -> list[Measurement]:
    """inference(x; running_mean, running_var) == gamma (x - rm) / sqrt(rv + eps) + beta for
    running statistics unrelated to x (bound: `inference_bound`)."""
    case = gc.case
    got = impl.inference(
        case.x,
        case.gamma,
        case.beta,
        gc.running_mean,
        gc.running_var,
        eps=case.eps,
        axis=case.axis,
    )
    want, tol = inference_bound(impl, gc, case.x)
    return [compare("inference y vs gamma (x - rm) / sqrt(rv + eps) + beta", got, want, tol)]


def _first_example_axis(x: Array, axis: int) -> int:
    """The axis along which the examples are: the first axis that is not the channel axis."""
    return 0 if axis % x.ndim != 0 else 1


def check_inference_per_example(impl: Implementation, gc: GradientCase) -> list[Measurement]:
    """Inference is per example: the first example's output is the same alone (a batch of one)
    and with the other examples of the batch replaced by other values (x + (1 + |x|) dy).

    Each side is within `inference_bound` of the formula, so they agree within twice it.
    """
    case = gc.case
    along = _first_example_axis(case.x, case.axis)

    def infer(x: Array) -> Array:
        return impl.inference(
            x,
            case.gamma,
            case.beta,
            gc.running_mean,
            gc.running_var,
            eps=case.eps,
            axis=case.axis,
        )

    first = np.take(case.x, [0], axis=along)
    changed = case.x + (1 + np.abs(case.x)) * gc.dy
    index: list[slice | int] = [slice(None)] * case.x.ndim
    index[along] = 0
    changed[tuple(index)] = case.x[tuple(index)]
    y = np.take(np.asarray(infer(case.x)), [0], axis=along)
    alone = np.asarray(infer(first))
    with_others = np.take(np.asarray(infer(changed)), [0], axis=along)
    _, tol = inference_bound(impl, gc, first)
    return [
        compare("first example alone (a batch of one) vs in the batch", alone, y, 2 * tol),
        compare(
            "first example with the other examples changed vs unchanged", with_others, y, 2 * tol
        ),
    ]


def check_frozen_backward(impl: Implementation, gc: GradientCase) -> list[Measurement]:
    """The optional `frozen_backward` (inference mode, running statistics fixed) returns
    dx = gamma dy / sqrt(rv + eps), dgamma = sum(dy (x - rm) / sqrt(rv + eps)), dbeta = sum(dy).

    Bounds, per channel of n values, a = |gamma| / sqrt(rv + eps): dx rounds the radicand, the
    square root, the division and two products, 4 u a |dy|; dbeta sums n values,
    (n - 1) u sum|dy|; dgamma sums n products of terms within 4 u, directly or folded as
    (sum(dy x) - rm sum(dy)) / sqrt(rv + eps): (n + 5) u sum(|dy| (|x| + |rm|)) / sqrt(rv + eps).
    Underflow per operation: eta, or tiny where an input, x - rm, x_r or a product dy x_r,
    dy (x - rm) or dy x of the channel is subnormal (flush to zero): (2 + a), n and
    (n + 3)(1 + r) of them, r = 1 / sqrt(rv + eps): a product of dy with x - rm or x flushed
    before the division by sqrt(rv + eps) (the folded order, or autodiff's) is off by tiny r
    in dgamma, whatever gamma (measured: Flax at float32 returns dgamma = 0 for
    dy (x - rm) = 1.5e-39, a float32 subnormal, with r = 316). All times
    SAFETY, plus the checker's own rounding (math.fsum sums: 3 U64 for dx, U64 |sum| plus
    4 U64 sum|dy x_r| for dgamma).
    """
    method = frozen_backward_of(impl)
    if method is None:
        raise Unsupported(
            f"{impl.name} has no frozen_backward (a backward pass in inference mode, the "
            "optional method of properties.adapter.FrozenBackward)"
        )
    case, dy = gc.case, gc.dy
    p = precision(impl.dtype)
    got = method(
        dy,
        case.x,
        case.gamma,
        gc.running_mean,
        gc.running_var,
        eps=case.eps,
        axis=case.axis,
    )
    f = _affine(gc, case.x)
    stats = exact_stats(case.x, case.axis, case.eps)  # for its channel layout only
    n = stats.count
    shape = f.root.shape
    rm = np.broadcast_to(gc.running_mean.reshape(shape), case.x.shape)

    def sums(values: Array) -> Array:
        return np.array([math.fsum(r) for r in channel_rows(values, stats).tolist()])

    want_dx = case.gamma.reshape(shape) * dy / f.root
    want_dgamma = sums(dy * f.x_r)
    want_dbeta = sums(dy)
    products = [dy * f.x_r, dy * f.dev, dy * case.x]
    subnormal = flush_floor_y(np.stack([case.x, rm, f.dev, f.x_r, *products]), 1.0) > 0
    touched = np.any(channel_rows(subnormal.astype(np.float64), stats) > 0, axis=1)
    unit = np.where(touched, p.tiny, p.eta)
    a = f.a.reshape(case.x.shape)
    r_c = 1.0 / np.sqrt(gc.running_var + case.eps)
    tol_dx = SAFETY * (4 * p.u * a * np.abs(dy) + expand(stats, unit, case.x.ndim) * (2 + a))
    tol_dx = tol_dx + 3 * U64 * a * np.abs(dy)
    ady = np.abs(dy)
    tol_db = SAFETY * ((n - 1) * p.u * sums(ady) + n * unit) + U64 * np.abs(want_dbeta)
    spread = sums(ady * (np.abs(case.x) + np.abs(rm))) / np.sqrt(gc.running_var + case.eps)
    tol_dg = SAFETY * ((n + 5) * p.u * spread + (n + 3) * (1 + r_c) * unit)
    tol_dg = tol_dg + U64 * np.abs(want_dgamma) + 4 * U64 * sums(np.abs(dy * f.x_r))
    return [
        compare("frozen dx vs gamma dy / sqrt(rv + eps)", got.dx, want_dx, tol_dx),
        compare(
            "frozen dgamma vs sum(dy (x - rm) / sqrt(rv + eps))", got.dgamma, want_dgamma, tol_dg
        ),
        compare("frozen dbeta vs sum(dy)", got.dbeta, want_dbeta, tol_db),
    ]


# --- b) one update follows the convention's formula ------------------------------------------


@dataclass(frozen=True, repr=False)
class RunningStatsCase(CodeRepr):
    """A batch x, running statistics before the step, and the momentum to use.

    With `cumulative` and a convention that has a cumulative average, momentum=None and
    num_batches_tracked are used instead of `momentum`.
    """

    x: Array
    axis: int
    running_mean: Array
    running_var: Array
    momentum: float
    cumulative: bool
    num_batches_tracked: int


@st.composite
def running_stats_cases(draw: st.DrawFn) -> RunningStatsCase:
    """Any batch of `batch_cases` (hard cases included) with running statistics and momentum."""
    case = draw(batch_cases(unit_affine=True))
    c = case.x.shape[case.axis]
    rm = np.array(draw(st.lists(_RUNNING_MEAN, min_size=c, max_size=c)))
    rv = np.array(draw(st.lists(_RUNNING_VAR, min_size=c, max_size=c)))
    return RunningStatsCase(
        x=case.x,
        axis=case.axis,
        running_mean=rm,
        running_var=rv,
        momentum=draw(_MOMENTUM),
        cumulative=draw(st.booleans()),
        num_batches_tracked=draw(st.integers(1, 10_000)),
    )


def _exact_weights(
    conv: Convention, momentum: float, tracked: int | None
) -> tuple[Fraction, Fraction]:
    """(a, b): the exact weights of the running value and of the batch statistic.

    `tracked` is given exactly when the cumulative average is used (momentum=None).
    """
    if tracked is not None:
        b = Fraction(1, tracked)
        return 1 - b, b
    m = Fraction(momentum)
    return (1 - m, m) if conv.momentum_weights == "new" else (m, 1 - m)


def update_flush_floor(
    a: Fraction,
    b: Fraction,
    running: list[Fraction],
    batch: list[Fraction],
    tiny: float,
    *,
    c: Fraction = Fraction(1),
) -> Array:
    """What flushing subnormals to zero may cost one update new = a r + b c v of each channel,
    beyond the batch statistic's own flush budget (in E_m, E_v): `tiny` (the dtype's smallest
    normal number) per value of the step whose exact value is subnormal, times c; 0 where no
    value is.

    `running` holds the running statistics r before the step and `batch` the batch statistics
    v, exact; s = c v enters the update (c = n/(n-1) for an unbiased variance, 1 otherwise). A
    platform that flushes reads a subnormal input as 0 and returns 0 for a subnormal result,
    so each such value is off by < tiny (gradual underflow: < ETA/2). The update is computed as
    a r + b s (PyTorch, Flax, Keras) or as r + b (s - r) or r - b (r - s) (an exponential
    moving average), with the weights a, b <= 1; what each flushed value costs the result:

    * r read as 0: a |r| < tiny (in either form: r - b r = a r);
    * s = c v flushed: b |s| < tiny; or, with c applied last, b v flushed: c |b v| < c tiny;
    * a r, b s, s - r or b (s - r) flushed: < tiny, s - r weighted by b <= 1;
    * the result flushed: < tiny.

    So the result errs by < c tiny per subnormal value among r, a r, s, b s, s - r, b (s - r),
    the result and (c != 1) b v, summed (`tolerances.flush_floor_y` counts them, with its
    margin of 4 tiny for their own rounding; a computed value that crosses into the range from
    further out is off by more than tiny already, which the rounding bounds cover). A
    subnormal weight (a momentum below tiny) needs nothing more: flushed, it errs by
    < tiny <= 2u, within the 2u absolute error the bounds already allow each weight.
    """
    values: list[list[Fraction]] = []
    for r, v in zip(running, batch, strict=True):
        s = c * v
        row = [r, a * r, s, b * s, s - r, b * (s - r), a * r + b * s]
        values.append(row + ([b * v] if c != 1 else []))
    terms = np.array([[float(q) for q in row] for row in values]).reshape(len(values), -1)
    out: Array = float(c) * flush_floor_y(terms.T, tiny)
    return out


def check_running_stats_formula(impl: Implementation, case: RunningStatsCase) -> list[Measurement]:
    """One update equals a*running + b*batch (and b*c*var) with the convention's a, b, c.

    Mean: |error| <= b E_m + 4u (|rm| + |m|) (weights 2u absolute, product and sum u each).
    Variance: |error| <= b c E_v + 4u (rv + c v) + 2u b c v (rounding of c = n/(n-1)).
    Both plus 4 ETA for underflow and, where a value of the step is subnormal, the flush floor
    of `update_flush_floor`, times SAFETY, plus the checker's own rounding u|expected| + ETA.
    Also: no argument changes.
    """
    conv = get_convention(impl.convention)
    cumulative = case.cumulative and conv.cumulative_average
    momentum = None if cumulative else case.momentum
    tracked = case.num_batches_tracked if cumulative else None
    x, rm, rv = case.x.copy(), case.running_mean.copy(), case.running_var.copy()
    got = impl.update_running_stats(
        x, rm, rv, momentum=momentum, num_batches_tracked=tracked, axis=case.axis
    )
    return [
        *_formula_measurements(impl, case, case.momentum, tracked, got),
        unchanged("x after update_running_stats", case.x, x),
        unchanged("running_mean after update_running_stats", case.running_mean, rm),
        unchanged("running_var after update_running_stats", case.running_var, rv),
    ]


def _formula_measurements(
    impl: Implementation,
    case: RunningStatsCase | LayerStepCase,
    momentum: float,
    tracked: int | None,
    got: RunningStats,
) -> list[Measurement]:
    """The new running mean and variance `got` against the convention's formula applied to
    the exact batch statistics of case.x (`check_running_stats_formula` derives the bounds)."""
    conv = get_convention(impl.convention)
    moments = exact_moments(case.x, case.axis)
    n = moments.count
    a, b = _exact_weights(conv, momentum, tracked)
    c = Fraction(n, n - 1) if conv.unbiased_var else Fraction(1)
    rm_q = [Fraction(v) for v in case.running_mean.tolist()]
    rv_q = [Fraction(v) for v in case.running_var.tolist()]
    want_mean = _as_floats([a * r + b * m for r, m in zip(rm_q, moments.mean, strict=True)])
    want_var = _as_floats([a * r + b * c * v for r, v in zip(rv_q, moments.var, strict=True)])

    p = precision(impl.dtype)
    batch = exact_stats(case.x, case.axis, 1.0)  # where the flush budget applies (eps unused)
    e_mean, e_var = _stat_errors(moments, p, accuracy_class(impl), batch)
    bf, cf = float(b), float(c)
    mean_abs = np.abs(_as_floats(list(moments.mean)))
    var = _as_floats(list(moments.var))
    # flush to zero: (c) tiny per subnormal value of the step, 0 where none is
    flush_mean = update_flush_floor(a, b, rm_q, list(moments.mean), p.tiny)
    flush_var = update_flush_floor(a, b, rv_q, list(moments.var), p.tiny, c=c)
    # + 4 ETA: up to four products per output (weights, n/(n-1)) may underflow
    tol_mean = SAFETY * (
        bf * e_mean + 4 * p.u * (np.abs(case.running_mean) + mean_abs) + 4 * p.eta + flush_mean
    )
    tol_var = SAFETY * (
        bf * cf * e_var
        + 4 * p.u * (case.running_var + cf * var)
        + 2 * p.u * bf * cf * var
        + 4 * p.eta
        + flush_var
    )
    return [
        compare(
            "running mean vs the convention's formula",
            got.mean,
            want_mean,
            tol_mean + U64 * np.abs(want_mean) + ETA,
        ),
        compare(
            "running var vs the convention's formula",
            got.var,
            want_var,
            tol_var + U64 * np.abs(want_var) + ETA,
        ),
    ]


# --- e) one training step of a whole layer: y and its own running statistics ---------------


@dataclass(frozen=True, repr=False)
class LayerStepCase(CodeRepr):
    """A batch x, the running statistics before the step, the momentum and eps."""

    x: Array
    axis: int
    running_mean: Array
    running_var: Array
    momentum: float
    eps: float


@st.composite
def layer_step_cases(draw: st.DrawFn) -> LayerStepCase:
    """Any batch of `batch_cases` (hard cases included), running statistics and a momentum."""
    case = draw(batch_cases(unit_affine=True))
    c = case.x.shape[case.axis]
    rm = np.array(draw(st.lists(_RUNNING_MEAN, min_size=c, max_size=c)))
    rv = np.array(draw(st.lists(_RUNNING_VAR, min_size=c, max_size=c)))
    return LayerStepCase(case.x, case.axis, rm, rv, draw(_MOMENTUM), case.eps)


LayerStep = Callable[..., tuple[Array, Array, Array]]


def layer_step_of(impl: object) -> LayerStep | None:
    """`impl.layer_step` if `impl` has that optional method, else None."""
    method = getattr(impl, "layer_step", None)
    return method if callable(method) else None


def check_layer_step(impl: Implementation, case: LayerStepCase) -> list[Measurement]:
    """One training-mode step of the implementation's own layer,
    ``layer_step(x, running_mean, running_var, momentum=, eps=, axis=) -> (y, new_mean,
    new_var)`` (gamma 1, beta 0): y is x_hat of the exact batch statistics within the forward's
    bound (`tolerances.x_hat_bound` for the implementation's accuracy class), and the new
    running statistics are the convention's formula applied to the EXACT batch statistics of
    x, within the bounds of `check_running_stats_formula`. So a layer that feeds its running
    variance from another or an inaccurate computation (a one-pass variance) fails here even
    when its y and its update rule are right. No argument changes.

    A target without `layer_step` is stepped through its own `forward` (gamma 1, beta 0) and
    `update_running_stats` on the same batch: for `torch` that is PyTorch's training-mode batch
    norm itself, which computes the batch statistics it feeds the update.
    """
    step = layer_step_of(impl)
    x, rm, rv = case.x.copy(), case.running_mean.copy(), case.running_var.copy()
    if step is not None:
        y, new_mean, new_var = step(x, rm, rv, momentum=case.momentum, eps=case.eps, axis=case.axis)
    else:  # the step as the target's own forward and running update on the same batch
        c = case.x.shape[case.axis]
        y = impl.forward(x, np.ones(c), np.zeros(c), eps=case.eps, axis=case.axis).y
        new_mean, new_var = impl.update_running_stats(
            x, rm, rv, momentum=case.momentum, num_batches_tracked=None, axis=case.axis
        )
    y = np.asarray(y, dtype=np.float64)
    if y.shape != case.x.shape:
        return [Measurement(f"shape of the layer's y {y.shape} != {case.x.shape}", math.inf, 0.0)]
    stats = exact_stats(case.x, case.axis, case.eps)
    p, c = precision(impl.dtype), case.x.shape[case.axis]
    # the forward's bound on y with gamma 1, beta 0 (a layer may fold its affine step)
    tol_y = y_bound(
        stats, np.ones(c), np.zeros(c), p.u, p.eta, accuracy=accuracy_class(impl), tiny=p.tiny
    )
    got = RunningStats(np.asarray(new_mean), np.asarray(new_var))
    return [
        compare("layer y vs x_hat of the batch", y, stats.x_hat, tol_y, scale=1.0),
        *_formula_measurements(impl, case, case.momentum, None, got),
        unchanged("x after layer_step", case.x, x),
        unchanged("running_mean after layer_step", case.running_mean, rm),
        unchanged("running_var after layer_step", case.running_var, rv),
    ]


# --- d) momentum=None: the cumulative (arithmetic) average -----------------------------------


@dataclass(frozen=True, repr=False)
class CumulativeCase(CodeRepr):
    """Batches of one layout fed in order, starting from arbitrary running statistics."""

    batches: tuple[Array, ...]
    axis: int
    running_mean: Array
    running_var: Array


@st.composite
def _batch(draw: st.DrawFn, layout: Layout) -> Array:
    """x = offset_c + spread_c * z, z in [-1, 1]: constant channels and |offset|/spread up to
    1e8 on purpose, as in properties.strategies."""
    c = layout.channels
    z = draw(
        hnp.arrays(np.float64, layout.shape, elements=st.floats(-1.0, 1.0, allow_subnormal=False))
    )
    spread = draw(
        hnp.arrays(np.float64, (c,), elements=st.sampled_from([0.0, 1.0]) | st.floats(1e-3, 1e3))
    )
    condition = draw(
        hnp.arrays(
            np.float64, (c,), elements=st.sampled_from([0.0, 1e4, 1e8, -1e8]) | st.floats(-10, 10)
        )
    )
    offset = condition * np.where(spread > 0, spread, 1.0)
    shape = tuple(c if i == layout.axis % len(layout.shape) else 1 for i in range(z.ndim))
    x: Array = offset.reshape(shape) + spread.reshape(shape) * z
    return x


@st.composite
def cumulative_cases(draw: st.DrawFn) -> CumulativeCase:
    """1 to MAX_BATCHES batches of one layout and the running statistics before the first."""
    layout = draw(layouts())
    k = draw(st.integers(1, MAX_BATCHES))
    batches = tuple(draw(_batch(layout)) for _ in range(k))
    c = layout.channels
    rm = np.array(draw(st.lists(_RUNNING_MEAN, min_size=c, max_size=c)))
    rv = np.array(draw(st.lists(_RUNNING_VAR, min_size=c, max_size=c)))
    return CumulativeCase(batches, layout.axis, rm, rv)


def check_cumulative_average(impl: Implementation, case: CumulativeCase) -> list[Measurement]:
    """After batches 1..k with momentum=None and num_batches_tracked=j, the running mean is
    the mean of the k batch means and the running var that of the k unbiased batch variances;
    the starting values carry weight 1 - 1/1 = 0.

    Step j computes r_j = (1 - 1/j) r_(j-1) + (1/j) s_j with a local error
    l_j <= (1/j) E_j + 4u (|r_(j-1)| + |s_j|); it reaches r_k damped by prod_(i>j)(1 - 1/i)
    = j/k, so |r_k' - r_k| <= mean_j(E_j) + 4u (k + 1) max_j|s_j|, times SAFETY. For the
    variance E_j = c E_v + 2u c v (c = n/(n-1)). A convention without momentum=None is
    reported as not applicable (one exact measurement that holds).
    """
    conv = get_convention(impl.convention)
    if not conv.cumulative_average:
        raise Unsupported(f"convention {conv.name!r} of {impl.name} has no momentum=None")
    rm, rv = case.running_mean, case.running_var
    for j, x in enumerate(case.batches, start=1):
        rm, rv = impl.update_running_stats(
            x, rm, rv, momentum=None, num_batches_tracked=j, axis=case.axis
        )
    k = len(case.batches)
    all_moments = [exact_moments(x, case.axis) for x in case.batches]
    n = all_moments[0].count
    c = Fraction(n, n - 1)
    channels = len(all_moments[0].mean)
    want_mean = _as_floats(
        [sum((mo.mean[ch] for mo in all_moments), Fraction(0)) / k for ch in range(channels)]
    )
    want_var = _as_floats(
        [sum((c * mo.var[ch] for mo in all_moments), Fraction(0)) / k for ch in range(channels)]
    )
    p, acc = precision(impl.dtype), accuracy_class(impl)
    errors = [
        _stat_errors(mo, p, acc, exact_stats(x, case.axis, 1.0))
        for mo, x in zip(all_moments, case.batches, strict=True)
    ]
    e_mean = np.mean([e for e, _ in errors], axis=0)  # (1/k) sum_j E_j, per channel
    variances = np.array([_as_floats(list(mo.var)) for mo in all_moments])  # (k, C)
    cf = float(c)
    e_var = np.mean([cf * ev for _, ev in errors], axis=0) + 2 * p.u * cf * np.mean(
        variances, axis=0
    )
    s_mean = np.max([np.abs(_as_floats(list(mo.mean))) for mo in all_moments], axis=0)
    s_var = cf * np.max(variances, axis=0)
    # Underflow: four products per step, ETA/2 each, damped by j/k: <= 4 (k + 1) ETA.
    tol_mean = SAFETY * (e_mean + 4 * (k + 1) * (p.u * s_mean + p.eta))
    tol_var = SAFETY * (e_var + 4 * (k + 1) * (p.u * s_var + p.eta))
    tol_mean = tol_mean + U64 * np.abs(want_mean) + ETA  # the checker's own rounding
    tol_var = tol_var + U64 * np.abs(want_var) + ETA
    return [
        compare("cumulative running mean vs mean of batch means", rm, want_mean, tol_mean),
        compare("cumulative running var vs mean of unbiased variances", rv, want_var, tol_var),
    ]


PROPERTIES: tuple[Property, ...] = (
    Property(
        name="inference-equals-training",
        statement=(
            "inference with running_mean = batch mean and running_var = biased batch variance "
            "returns the training-mode output"
        ),
        strategy=batch_cases(),
        check=check_inference_equals_training,
        tags=frozenset({"running-stats", "inference", ACCURACY_CLASS}),
    ),
    Property(
        name="inference-formula",
        statement=(
            "inference with running statistics unrelated to the batch returns "
            "gamma (x - running_mean) / sqrt(running_var + eps) + beta"
        ),
        strategy=inference_cases(),
        check=check_inference_formula,
        tags=frozenset({"inference"}),
    ),
    Property(
        name="inference-per-example",
        statement=(
            "inference treats each example on its own: its output is the same alone (a batch "
            "of one) and with the other examples of the batch changed"
        ),
        strategy=inference_cases(),
        check=check_inference_per_example,
        tags=frozenset({"inference"}),
    ),
    Property(
        name="frozen-backward",
        statement=(
            "in inference mode (frozen running statistics) dx = gamma dy / sqrt(running_var + "
            "eps), dgamma = sum(dy (x - running_mean) / sqrt(running_var + eps)), "
            "dbeta = sum(dy)"
        ),
        strategy=frozen_backward_cases(),
        check=check_frozen_backward,
        tags=frozenset({"inference", "gradient"}),
    ),
    Property(
        name="running-stats-formula",
        statement=(
            "one update gives a*running + b*batch (variance: b*c*var, c = n/(n-1) if unbiased) "
            "with the weights of the implementation's convention, and changes no argument"
        ),
        strategy=running_stats_cases(),
        check=check_running_stats_formula,
        tags=frozenset({"running-stats", ACCURACY_CLASS}),
    ),
    Property(
        name="layer-step",
        statement=(
            "one training step of the layer gives y = x_hat of the batch and running "
            "statistics equal to the convention's formula on the exact batch mean and variance"
        ),
        strategy=layer_step_cases(),
        check=check_layer_step,
        tags=frozenset({"running-stats", ACCURACY_CLASS}),
    ),
    Property(
        name="cumulative-average",
        statement=(
            "momentum=None with num_batches_tracked = 1..k gives the mean of the k batch means "
            "and of the k unbiased batch variances"
        ),
        strategy=cumulative_cases(),
        check=check_cumulative_average,
        tags=frozenset({"running-stats", "cumulative-average", ACCURACY_CLASS}),
    ),
)
