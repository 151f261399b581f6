"""Properties of the batch-norm forward pass, for any `Implementation`.

Each check computes the exact claim's two sides and compares them within the bound of
`properties.tolerances` (derivation there), written in the unit roundoff u, smallest subnormal
eta and smallest normal number tiny of the dtype the implementation computes in
(`tolerances.precision(impl.dtype)`), for the accuracy class it is held to
(`tolerances.accuracy_class(impl)`: any backward-stable statistics by default, the reference's
two-pass accuracy under `bnref check --strict`); the checker's own float64 roundings keep U64.
Where an exact input, result or intermediate is subnormal, the bounds carry the flush-to-zero
floor (`tolerances.flush_floor`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
from hypothesis import strategies as st

import reference
from properties.adapter import Array, Implementation
from properties.checks import compare, unchanged
from properties.framework import Measurement, Property, Unsupported
from properties.strategies import BatchCase, CodeRepr, batch_cases, upstream_gradients
from properties.tolerances import (
    ACCURACY_CLASS,
    SAFETY,
    U64,
    ExactStats,
    Precision,
    accuracy_class,
    affine_error_bound,
    channel_rows,
    exact_stats,
    expand,
    flush_floor,
    flush_floor_y,
    mean_shift_bound,
    per_channel_max,
    precision,
    scale_error_bound,
    underflow_bound,
    x_hat_bound,
    y_bound,
)


def _forward(impl: Implementation, case: BatchCase) -> Array:
    return impl.forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis).y


def _x_hat_bound(stats: ExactStats, p: Precision, accuracy: str) -> Array:
    """`tolerances.x_hat_bound` at precision p for the class `accuracy`, flush floor included."""
    return x_hat_bound(stats, stats.x_hat.ndim, p.u, p.eta, accuracy=accuracy, tiny=p.tiny)


def _y_bound(stats: ExactStats, case: BatchCase, p: Precision, accuracy: str) -> Array:
    """Bound on |y' - y| for y = gamma*x_hat + beta: gamma times the x_hat bound, plus the
    rounding of the product and the sum (u each, relative to their magnitudes) and their
    flush where subnormal (`tolerances.y_bound`)."""
    return y_bound(stats, case.gamma, case.beta, p.u, p.eta, accuracy=accuracy, tiny=p.tiny)


def _fsum_mean_var(rows: Array) -> tuple[Array, Array]:
    n = rows.shape[1]
    mean = np.array([math.fsum(r) / n for r in rows])
    var = np.array([math.fsum((r - m) ** 2) / n for r, m in zip(rows, mean, strict=True)])
    return mean, var


@dataclass(frozen=True)
class MomentBounds:
    """Per channel: the exact variance of y, gamma**2 var/(var+eps), and how far a correct
    implementation's channel mean and variance of y may be from beta and from it."""

    mean: Array
    want_var: Array
    var: Array


def moment_bounds(
    stats: ExactStats, gamma: Array, beta: Array, eps: float, *, p: Precision, accuracy: str
) -> MomentBounds:
    """The tolerances of `check_moments` (derivation there) for precision p and class
    `accuracy`."""
    rho = stats.var / (stats.var + eps)
    g = np.abs(gamma)
    max_xhat = per_channel_max(np.abs(stats.x_hat), stats)
    max_y = g * max_xhat + np.abs(beta)
    x_err = per_channel_max(_x_hat_bound(stats, p, accuracy), stats)
    rel = scale_error_bound(stats, p.u, accuracy) + 2 * p.u
    # Flush to zero: gamma times x_hat's floor, and a flushed gamma x_hat or y, per element.
    nd = stats.x_hat.ndim
    gx = expand(stats, gamma, nd) * stats.x_hat
    flush_y = per_channel_max(
        flush_floor_y(np.stack([gx, gx + expand(stats, beta, nd)]), p.tiny), stats
    )
    flush = g * per_channel_max(flush_floor(stats, nd, p.tiny, p.u), stats) + flush_y
    rounding = p.u * (g * max_xhat + max_y)
    tol_mean = g * x_err + SAFETY * (rounding + flush_y)
    tol_mean = tol_mean + U64 * np.abs(beta) + underflow_bound(stats, g, p.eta)
    affine = affine_error_bound(stats, p.u, accuracy)  # per element, not a common shift
    r = g * (np.sqrt(rho) * rel + p.u * mean_shift_bound(stats, p.u, accuracy) + affine)
    r = r + rounding + flush
    want_var = g**2 * rho
    # the checker's own fsum variance: 4 U64 var(y) + (2 U64 max|y|)**2
    tol_var = SAFETY * (2 * np.sqrt(want_var) * r + r**2) + 4 * U64 * want_var
    tol_var = tol_var + (2 * U64 * max_y) ** 2 + underflow_bound(stats, g**2, p.eta)
    return MomentBounds(tol_mean, want_var, tol_var)


def channel_moments(y: Array, stats: ExactStats) -> tuple[Array, Array]:
    """Per channel, the mean and biased variance of y (shaped like x), exactly rounded sums."""
    return _fsum_mean_var(channel_rows(y, stats))


def check_moments(impl: Implementation, case: BatchCase) -> list[Measurement]:
    """Properties 1 and 3: channel mean of y is beta, its variance gamma**2 * var/(var+eps).

    Variance bound: y' = y + common shift + r with rms(r) <= R, so
    |var(y') - var(y)| <= 2 sqrt(var(y)) R + R**2, R = |gamma| (sqrt(rho) rel + u shift
    + the per-element error of a folded affine step, `tolerances.affine_error_bound`)
    + u (|gamma| max|x_hat| + max|y|) for the rounding of gamma*x_hat + beta, plus the flush
    of x_hat, gamma x_hat and y where subnormal; the checker's own fsum variance adds
    4u var(y) + (2u max|y|)**2.
    """
    y = _forward(impl, case)
    stats = exact_stats(case.x, case.axis, case.eps)
    p, acc = precision(impl.dtype), accuracy_class(impl)
    if y.shape != case.x.shape:
        return [Measurement(f"shape of y {y.shape} != {case.x.shape}", math.inf, 0.0)]
    mean_y, var_y = channel_moments(y, stats)
    bounds = moment_bounds(stats, case.gamma, case.beta, case.eps, p=p, accuracy=acc)
    want_var, tol_var = bounds.want_var, bounds.var
    # |sd' - sd| <= min(sqrt(|dvar|), |dvar| / (sd' + sd)) for sd', sd >= 0; the checker's two
    # square roots round by U64/2 relative each (within U64 (sd' + sd) together).
    sd_y, want_sd = np.sqrt(var_y), np.sqrt(want_var)
    with np.errstate(divide="ignore", invalid="ignore"):  # 0/0 -> nan; fmin keeps the sqrt
        tol_sd = np.fmin(np.sqrt(tol_var), tol_var / (sd_y + want_sd))
    tol_sd = tol_sd + U64 * (sd_y + want_sd)
    # The size of each quantity, for its teeth: y's values are |gamma| x_hat + beta with
    # rms(x_hat) <= 1, so a channel's mean is of size |beta| + |gamma|, its variance of gamma^2
    # (0 for a constant channel, which a wrong normalization would not give) and its std |gamma|.
    g = np.abs(case.gamma)
    return [
        compare(
            "channel mean of y vs beta", mean_y, case.beta, bounds.mean, scale=g + np.abs(case.beta)
        ),
        compare(
            "channel variance of y vs gamma^2 var/(var+eps)", var_y, want_var, tol_var, scale=g**2
        ),
        compare("channel std of y vs |gamma| sqrt(var/(var+eps))", sd_y, want_sd, tol_sd, scale=g),
    ]


def check_identity(impl: Implementation, case: BatchCase) -> list[Measurement]:
    """Identity parameters: with gamma, beta = identity_params(mean, var, eps), y == x.

    y_i = s x_hat'_i + m: error <= s * (x_hat bound) + u (2 s |x_hat_i| + |x_i| + |m|) from
    rounding gamma = sqrt(var+eps), beta = m, the product and the sum.
    """
    stats = exact_stats(case.x, case.axis, case.eps)
    params = reference.identity_params(stats.mean, stats.var, case.eps)
    y = impl.forward(case.x, params.gamma, params.beta, eps=case.eps, axis=case.axis).y
    nd, p = case.x.ndim, precision(impl.dtype)
    s, m = expand(stats, stats.scale, nd), expand(stats, stats.mean, nd)
    flush = flush_floor_y(np.stack([s * stats.x_hat, case.x]), p.tiny)  # product, sum flushed
    tol = s * _x_hat_bound(stats, p, accuracy_class(impl)) + SAFETY * (
        p.u * (2 * s * np.abs(stats.x_hat) + np.abs(case.x) + np.abs(m)) + p.eta + flush
    )
    return [compare("y with identity_params vs x", y, case.x, tol)]


@dataclass(frozen=True, repr=False)
class ShiftScaleCase(CodeRepr):
    """A case, a per-channel shift c and a positive scale a."""

    case: BatchCase
    shift: Array
    scale: float


@st.composite
def _shift_scale_cases(draw: st.DrawFn) -> ShiftScaleCase:
    case = draw(batch_cases(unit_affine=True))
    c = case.x.shape[case.axis]
    shift = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=c, max_size=c)))
    scale = draw(st.floats(1e-3, 1e3))
    return ShiftScaleCase(case, shift, scale)


def check_shift_invariance(impl: Implementation, sc: ShiftScaleCase) -> list[Measurement]:
    """Shift invariance: BN(x + c) == BN(x) for a per-channel constant c (the bias is redundant).

    x + c is rounded (|d_i| <= u max|x + c|), which moves x_hat_i by at most
    max|d| (2 + |x_hat_i|) / s; the rest is the x_hat bound of each side.
    """
    case = sc.case
    stats = exact_stats(case.x, case.axis, case.eps)
    moved = case.x + expand(stats, sc.shift, case.x.ndim)
    moved_stats = exact_stats(moved, case.axis, case.eps)
    y0 = _forward(impl, case)
    y1 = _forward(impl, replace(case, x=moved))
    nd, p, acc = case.x.ndim, precision(impl.dtype), accuracy_class(impl)
    d = expand(stats, (per_channel_max(np.abs(moved), stats) * p.u + p.eta) / stats.scale, nd)
    tol = (
        _x_hat_bound(stats, p, acc)
        + _x_hat_bound(moved_stats, p, acc)
        + SAFETY * d * (2 + np.abs(stats.x_hat))
    )
    return [compare("BN(x + c) vs BN(x)", y1, y0, tol)]


def check_scale_invariance(impl: Implementation, sc: ShiftScaleCase) -> list[Measurement]:
    """Scale invariance: BN(a x; eps a**2) == BN(x; eps) for a > 0.

    Rounding a*x moves x_hat_i by <= u kappa (2 + |x_hat_i|); rounding eps*a**2 moves s by
    u/2 relative, so x_hat_i by u|x_hat_i|/2.
    """
    case = sc.case
    a = sc.scale
    stats = exact_stats(case.x, case.axis, case.eps)
    scaled = replace(case, x=a * case.x, eps=case.eps * a * a)
    scaled_stats = exact_stats(scaled.x, scaled.axis, scaled.eps)
    y0 = _forward(impl, case)
    y1 = _forward(impl, scaled)
    nd, p, acc = case.x.ndim, precision(impl.dtype), accuracy_class(impl)
    xh = np.abs(stats.x_hat)
    kappa = expand(stats, stats.kappa, nd)
    # a x may round into the subnormal range of a narrow dtype: eta / s more per value (a
    # flushed one is read as 0: the flush floor of scaled_stats counts it as a subnormal input)
    tol = (
        _x_hat_bound(stats, p, acc)
        + _x_hat_bound(scaled_stats, p, acc)
        + SAFETY * (p.u * (kappa * (2 + xh) + xh / 2) + p.eta / expand(stats, stats.scale, nd))
    )
    return [compare("BN(a x; eps a^2) vs BN(x; eps)", y1, y0, tol)]


@dataclass(frozen=True, repr=False)
class PermutedCase(CodeRepr):
    """A case and a permutation of its first non-channel axis (the examples)."""

    case: BatchCase
    along: int
    permutation: tuple[int, ...]


@st.composite
def _permuted_cases(draw: st.DrawFn) -> PermutedCase:
    case = draw(batch_cases())
    ax = case.axis % case.x.ndim
    along = 0 if ax != 0 else 1
    perm = draw(st.permutations(range(case.x.shape[along])))
    return PermutedCase(case, along, tuple(perm))


def check_permutation(impl: Implementation, pc: PermutedCase) -> list[Measurement]:
    """Permutation equivariance: permuting the examples permutes the output the same way.

    Only the summation order changes, so each side is within the y bound of the exact value.
    """
    case = pc.case
    perm = np.array(pc.permutation, dtype=np.intp)
    permuted = replace(case, x=np.take(case.x, perm, axis=pc.along))
    y0 = np.take(_forward(impl, case), perm, axis=pc.along)
    y1 = _forward(impl, permuted)
    stats = exact_stats(case.x, case.axis, case.eps)
    bound = _y_bound(stats, case, precision(impl.dtype), accuracy_class(impl))
    tol = 2 * np.take(bound, perm, axis=pc.along)
    return [compare("BN(x[perm]) vs BN(x)[perm]", y1, y0, tol)]


def check_layouts(impl: Implementation, case: BatchCase) -> list[Measurement]:
    """Layout agreement: channel axis k equals channels-last on the moved array and equals the dense
    (n, C) form on the reshape; only the summation order differs."""
    ax = case.axis % case.x.ndim
    y = _forward(impl, case)
    stats = exact_stats(case.x, case.axis, case.eps)
    tol = 2 * _y_bound(stats, case, precision(impl.dtype), accuracy_class(impl))
    last = np.moveaxis(case.x, ax, -1)
    y_last = np.moveaxis(_forward(impl, replace(case, x=last, axis=-1)), -1, ax)
    dense = last.reshape(-1, case.x.shape[ax])
    y_dense = _forward(impl, replace(case, x=dense, axis=1))
    y_dense = np.moveaxis(y_dense.reshape(last.shape), -1, ax)
    return [
        compare("channels-last vs channel axis", y_last, y, tol),
        compare("dense (n, C) reshape vs channel axis", y_dense, y, tol),
    ]


@dataclass(frozen=True, repr=False)
class GradientCase(CodeRepr):
    """A case with an upstream gradient dy and running statistics."""

    case: BatchCase
    dy: Array
    running_mean: Array
    running_var: Array


@st.composite
def gradient_cases(draw: st.DrawFn) -> GradientCase:
    """A batch case with a non-uniform dy and arbitrary non-negative running statistics."""
    case = draw(batch_cases())
    c = case.x.shape[case.axis]
    dy = draw(upstream_gradients(case.x.shape))
    rm = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=c, max_size=c)))
    rv = np.array(draw(st.lists(st.floats(0.0, 1e3), min_size=c, max_size=c)))
    return GradientCase(case, dy, rm, rv)


def check_no_mutation(impl: Implementation, gc: GradientCase) -> list[Measurement]:
    """No mutation: forward, backward and inference leave every argument bit-for-bit intact.

    A target without a backward (ONNX) or an inference (a user's forward alone) raises
    `Unsupported` there; it is checked on the methods it has, and the measurement names them.
    """
    c = gc.case
    args = {
        "x": c.x,
        "gamma": c.gamma,
        "beta": c.beta,
        "dy": gc.dy,
        "running_mean": gc.running_mean,
        "running_var": gc.running_var,
    }
    copies = {k: v.copy() for k, v in args.items()}
    calls: dict[str, Callable[[], object]] = {
        "backward": lambda: impl.backward(gc.dy, c.x, c.gamma, eps=c.eps, axis=c.axis),
        "inference": lambda: impl.inference(
            c.x, c.gamma, c.beta, gc.running_mean, gc.running_var, eps=c.eps, axis=c.axis
        ),
    }
    impl.forward(c.x, c.gamma, c.beta, eps=c.eps, axis=c.axis)
    ran, lacks = ["forward"], []
    for method, call in calls.items():
        try:
            call()
            ran.append(method)
        except Unsupported:
            lacks.append(method)
    methods = "/".join(ran) + (f" (the target has no {', '.join(lacks)})" if lacks else "")
    return [unchanged(f"{k} after {methods}", copies[k], v) for k, v in args.items()]


PROPERTIES: tuple[Property, ...] = (
    Property(
        "zero-mean-unit-var",
        "with gamma=1, beta=0 each channel of y has mean 0 and variance var/(var+eps)",
        batch_cases(unit_affine=True),
        check_moments,
        frozenset({ACCURACY_CLASS}),
    ),
    Property(
        "identity-params",
        "with gamma, beta = identity_params(mean, var, eps), forward returns x",
        batch_cases(),
        check_identity,
        frozenset({ACCURACY_CLASS}),
    ),
    Property(
        "affine-moments",
        "each channel of y has mean beta and std |gamma| sqrt(var/(var+eps))",
        batch_cases(),
        check_moments,
        frozenset({ACCURACY_CLASS}),
    ),
    Property(
        "shift-invariance",
        "adding a per-channel constant to x changes nothing (the bias before BN is redundant)",
        _shift_scale_cases(),
        check_shift_invariance,
        frozenset({ACCURACY_CLASS}),
    ),
    Property(
        "scale-invariance",
        "BN(a x; eps a^2) == BN(x; eps) for a > 0",
        _shift_scale_cases(),
        check_scale_invariance,
        frozenset({ACCURACY_CLASS}),
    ),
    Property(
        "permutation-equivariance",
        "permuting the examples permutes the output the same way",
        _permuted_cases(),
        check_permutation,
        frozenset({ACCURACY_CLASS}),
    ),
    Property(
        "layout-equivalence",
        "channel axis k == channels-last on the moved array == dense form on the (n, C) reshape",
        batch_cases(),
        check_layouts,
        frozenset({ACCURACY_CLASS}),
    ),
    Property(
        "no-mutation",
        "forward, backward and inference do not modify their arguments",
        gradient_cases(),
        check_no_mutation,
    ),
)
