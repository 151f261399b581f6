"""Batch norm's backward is the derivative of its forward, for any `Implementation`.

gradients-full / gradients-fast. For L = sum(dy * y(x, gamma, beta)) with a
non-uniform dy, `impl.backward` agrees with central differences of `impl.forward`, checked by
`reference.gradcheck.full_check` (every element) and `fast_check` (random projections, falling
back to the full check to locate a failure). Per channel c with n values, s = sqrt(var + eps),
u = 2**-53 and c3 = (3u)**(1/3) = 6.9e-6:

Steps. Batch norm is nonlinear on the scale s, not on the scale of x: a constant channel with
eps = 1e-8 has s = 1e-4 whatever its value. So the step for x is c3 * s per channel (the
optimum of `reference.gradcheck` with s as the scale), for gamma and beta c3 * max(|p|, 1).
A channel with gamma = 0 has y = beta whatever its x: no truncation at any step (G1 below is
proportional to |gamma|), only the rounding E_L / h, so it is differenced at the coarsest step of
the case, c3 * max(max_c s_c, 1). At c3 sqrt(eps) its E_L / h, summed into the norm of dx, could
exceed the other channels' whole dx (a constant channel with beta = -5 beside one with
gamma = 1e-3 and s = 50: a relative tolerance of 27, a comparison that could not fail).

Error bound per element (derivative units), the `atol` given to gradcheck:

G1. Truncation. Along x(t) = x + t v with |v_i| <= H per element (the centered direction
    moves each value by <= H), x_hat_i(t) = d_i / sqrt(w) with d_i linear and w quadratic in t;
    its third derivative (verified symbolically) is
    9/4 d_i' w'^2 / w^(5/2) - 3/2 d_i' w'' / w^(3/2) - 15/8 d_i w'^3 / w^(7/2)
    + 9/4 d_i w' w'' / w^(5/2), and |d_i'| <= H, |w'| <= 2 sqrt(w) H, w'' <= 2 H**2 bound it by
    (H/s)**3 (12 + 24 |x_hat_i|). The central difference errs by max|L'''| / 6 per unit of t,
    so element j of channel c errs by at most |gamma_c| H**3 / (6 h s**3) sum_i |dy_i|
    (12 + 24 |x_hat_i|). H = 2h covers both a single element (H = h) and fast-mode directions
    (every value moves by <= h, centered <= 2h). L is linear in gamma and beta: no truncation.
G2. Rounding of L. Any float64 forward has |y' - y| <= |gamma| E + 2u (|gamma x_hat| + |y|)
    (E = `tolerances.x_hat_bound`, plus underflow), and gradcheck's fsum adds u sum|dy y| + u|L|,
    so |L' - L| <= E_L := sum |dy| ((|gamma| + h_gamma) E + 2 (SAFETY + 2) u Y) with Y the
    largest |y| reachable within the steps. A central difference divides 2 E_L by 2h: E_L / h.
    E_L sums over every channel: the bound assumes neither a deterministic forward nor one whose
    untouched channels give the same bits twice.
G3. The analytic gradient's own error, bounds B1-B4 of `properties.accuracy_props` with the
    x_hat bound E above: dbeta Bb = n u sum|dy|; dgamma Bg = sum|dy| E + n u sum|dy| (|x_hat| + E);
    dx |gamma| / (n s) (Bb + |x_hat| Bg + E (|dgamma| + Bg) + 3u (n|dy| + |dbeta| + |x_hat dgamma|)
    + R |n dy - dbeta - x_hat dgamma|), R = `tolerances.scale_error_bound` + 3u.

Steps sized to the function. G1 holds for per-channel batch norm, whose forward varies on the
scale s of the channel. The forward under test may vary faster: the "Deep Learning from Scratch"
layer on 4-D input normalizes each (c, h, w) position over the batch alone, on the scale
sqrt(var_position + eps), which can be 1e3 times smaller than s; its backward is the exact
derivative of that forward, yet a step of c3 s leaves a truncation error far above G1. So when
the check at the steps above fails, it is run again with the step of each channel sized to the
function being differenced:

S0. Does the channel vary faster than batch norm? Central differences at h = c3 s and 4 h:
    for per-channel batch norm the truncation is <= G1(h) at h and <= 16 G1(h) (1 + 16 c3) /
    (1 + 4 c3) < 17.02 G1(h) at 4 h (G1 grows as h**2), the rounding <= E_L / h and E_L / (4 h),
    so |D(4 h) - D(h)| <= allowed := SAFETY (18 G1 + E_L / h + E_L / (4 h)) by G1-G2. A channel
    where some element exceeds `allowed` does not vary like per-channel batch norm. (The coarser
    second step, not a finer one, keeps the rounding of the probe small: a truncation
    T(h) > E_L / h shows as 15 T(h) there.) In a channel within `allowed`, an element's
    central difference at h errs by at most `allowed` plus the analytic bound: its bound.
S1. A channel that varies faster is differenced at h = max(c3 sqrt(eps), 64 u |x_j|): any
    normalization of a group of the channel's values with eps inside the square root varies on
    a scale s_G = sqrt(var_G + eps) >= sqrt(eps), so c3 sqrt(eps) is the optimal step of
    `reference.gradcheck` for the smallest scale the function can have; 64 u |x_j| keeps the
    step resolvable at the input's own magnitude. G1 with s >= sqrt(eps) along the whole
    segment and |x_hat| <= sqrt(m - 1) <= sqrt(n - 1) in a group of m <= n values (the largest
    standardized deviation of m values) bounds its truncation: (1 + 4 c3) |gamma| (2 h)**3 /
    (6 h eps**(3/2)) sum|dy| (12 + 24 sqrt(n - 1)).
S2. Its rounding: x_hat of any group is within E_g = SAFETY (K u k + u k + sqrt(n - 1)
    (K u k + (K u k)**2 / 2 + (K/2 + 6) u)) (plus underflow), k = max|x| / sqrt(eps) and
    K = 2 n + 8 (`tolerances`, any backward-stable class), in G2 in place of E.
S3. The analytic gradients of a normalization over groups G of m values: B1-B4 per group with
    |x_hat| <= sqrt(n - 1), E_g, s_G >= sqrt(eps), each group's sums of |dy| <= S1 = sum|dy|
    over the channel and 1/m <= 1: dx_j errs by <= |gamma| / sqrt(eps) (u S1 + X Bg + E_g
    (X S1 + Bg) + (R + 6u) (|dy_j| + S1 + X**2 S1)) with X = sqrt(n - 1), Bg = S1 E_g + n u S1
    (X + E_g), R the scale error of S2; dgamma by Bg, dbeta by n u S1.

A per-channel batch norm passes S0 in every channel by G1-G2, so a wrong backward of a correct
forward keeps the bounds above (at most 2.5 times looser); S1-S3 are honest for a function of
unknown groups, and where max|x| / sqrt(eps) makes E_g reach the gradient they cannot fail.

Each input passes when ||analytic - numeric||_2 <= ||bound||_2; the reported tolerance is that
bound divided by ||analytic|| + ||numeric||, comparable with the relative error. In fast mode
gradcheck bounds a projection by sum_i bound_i * step_i, the worst direction in the step box.
Where a gradient is below what differences of L can resolve (dgamma when every |x_hat| is
~1e-40, or dx in a channel of s = 1e-4 next to large ones) the tolerance exceeds 1 and that
input's comparison says nothing; the others still do.

Teeth. A comparison has teeth when its tolerance is below 1 (relative: an answer of 0 breaks it)
or, for dx-orthogonality, below the size of the sums' terms somewhere. A case whose every
channel is dead could not fail: gamma = 0 everywhere (dx = 0 exactly, a tolerance of a few
subnormals against sums of size 0), x_hat ~0 everywhere (a constant channel, or values all
~1e-80 whose dgamma ~1e-78 is below L's rounding: tolerances up to 1e285), or pairs (n = 2) of
var >> eps, whose dx is eps / (var + eps) of its terms' size and below the truncation bound G1.
So every case of these properties has a live channel (`strategies.live_channel`: inserted
beside the drawn channels, which are all kept, where none of them is live); the dead channels
are still differenced and compared, within the norm.

Cases (`gradient_cases`): float64 only, kappa <= KAPPA_MAX per channel (see there why), and a
live channel.

dx-orthogonality. Per channel, sum(dx) = 0 and sum(dx * x_hat) = gamma dgamma eps
/ s**3: with dx = gamma/(n s) (n dy - dbeta - x_hat dgamma), sum(x_hat) = 0 and
sum(x_hat**2) = n var / (var + eps). The second sum is 0 only for eps = 0 ("orthogonal to
x_hat" holds up to the eps term, which is large when var is not >> eps).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np
from hypothesis import strategies as st

from properties.adapter import Array, Implementation, forward_ys
from properties.checks import compare
from properties.framework import Measurement, Property
from properties.strategies import (
    BatchCase,
    CodeRepr,
    batch_cases,
    live_channel,
    upstream_gradients,
)
from properties.tolerances import (
    ACCURACY_CLASS,
    PRECISIONS,
    SAFETY,
    STREAMING,
    U64,
    accuracy_class,
    channel_rows,
    exact_stats,
    expand,
    flush_budget,
    roundings,
    scale_error_bound,
    x_hat_bound,
)
from reference.gradcheck import (
    DEFAULT_RELATIVE_STEP,
    GradcheckReport,
    fast_check,
    full_check,
    numeric_gradients,
)

NAMES = ("dx", "dgamma", "dbeta")
# The conditioning that finite differences can resolve. A forward's x_hat carries a common
# shift of up to (n + 1) u kappa per channel (kappa = max|x| / s, `properties.tolerances`),
# which reaches L undamped, while a step of c3 s moves x_hat by only c3 = 6.9e-6: the central
# difference means something only while n u kappa << c3. kappa <= KAPPA_MAX = 100 keeps G2
# below ~1e-3 of the gradient even for n = 512 in one channel (512 * 100 u / c3 = 8e-7 per
# value, summed over <= 512 values). The strategy keeps |offset| / spread <= MAX_CONDITION
# (kappa ~ 20), but a constant channel has kappa = |x| / sqrt(eps) (1e5 for x = 10,
# eps = 1e-8) and clustered values a std far below their spread, so a channel with
# kappa > KAPPA_MAX is shifted by its mean (`_resolvable`). Batch norm is shift-invariant, so
# the gradients are the same function of the deviations; how a backward copes with
# |mean| / std up to 1e8 is `backward-accuracy`'s (a 50-digit reference).
MAX_CONDITION = 10.0
KAPPA_MAX = 100.0
# Gradual underflow: a result below 2**-1022 carries an absolute error up to 2**-1075 instead of
# a relative one (cases hold values down to 2**-1022, whose deviations and products are
# subnormal). TINY = 2**-1074 per operation covers it with a factor 2. A platform that flushes
# subnormals to zero loses up to 2**-1022 on such a result instead: in a channel where an
# input, partial sum, deviation, square, variance or x_hat is subnormal
# (`tolerances.flush_budget`), the unit per operation is FLUSHED = 2**-1022.
TINY = 2.0**-1074
FLUSHED = PRECISIONS["float64"].tiny
PROJECTIONS = 3  # per input: 1 + 2 * 3 inputs * 3 = 19 evaluations of f for a fast check


@dataclass(frozen=True, repr=False)
class GradientCase(CodeRepr):
    """A float64 batch case, a non-uniform upstream gradient dy, and the fast check's seed."""

    case: BatchCase
    dy: Array
    seed: int


def _resolvable(case: BatchCase) -> BatchCase:
    """`case` with every channel of kappa > KAPPA_MAX shifted by its mean (see KAPPA_MAX).

    After the shift max|x| <= max|x - mean| + u|mean|, so kappa <= sqrt(n - 1) + tiny.
    """
    stats = exact_stats(case.x, case.axis, case.eps)
    shift = np.where(stats.kappa > KAPPA_MAX, stats.mean, 0.0)
    return replace(case, x=case.x - expand(stats, shift, case.x.ndim))


@st.composite
def gradient_cases(draw: st.DrawFn) -> GradientCase:
    """float64 cases with kappa <= KAPPA_MAX per channel and a live channel (`live_channel`),
    standard-normal dy, and a seed."""
    case = draw(batch_cases(dtypes=("float64",), max_condition=MAX_CONDITION))
    case = _resolvable(draw(live_channel(case)))
    dy = draw(upstream_gradients(case.x.shape))
    return GradientCase(case, dy, draw(st.integers(0, 2**32 - 1)))


@st.composite
def backward_cases(draw: st.DrawFn) -> GradientCase:
    """Every float64 case (|mean| / std up to 1e8, constant channels) with a live channel
    (`live_channel`), a dy and a seed."""
    case = draw(batch_cases(dtypes=("float64",)).flatmap(live_channel))
    dy = draw(upstream_gradients(case.x.shape))
    return GradientCase(case, dy, draw(st.integers(0, 2**32 - 1)))


class _Channels:
    """Per-channel helpers for one case: exact statistics, broadcasting and channel sums, for
    an implementation held to the accuracy class `accuracy` (`tolerances.accuracy_class`).

    `unit` (C,) is what one operation may lose absolutely where its result is subnormal: TINY,
    or FLUSHED in a channel where something is subnormal (flush to zero)."""

    def __init__(self, case: BatchCase, accuracy: str) -> None:
        self.stats = exact_stats(case.x, case.axis, case.eps)
        self.ndim = case.x.ndim
        self.accuracy = accuracy
        self.unit = np.where(flush_budget(self.stats, FLUSHED).touched, FLUSHED, TINY)

    def x_hat_error(self) -> Array:
        """`tolerances.x_hat_bound` (flush floor included) plus underflow: x - mean may be
        subnormal (the unit, then divided by s) and so may x_hat itself."""
        bound: Array = x_hat_bound(
            self.stats, self.ndim, accuracy=self.accuracy, tiny=FLUSHED
        ) + self.col(self.unit) * (1 + self.col(1 / self.stats.scale))
        return bound

    def col(self, vector: Array) -> Array:
        """A (C,) vector broadcast along the channel axis."""
        return expand(self.stats, vector, self.ndim)

    def sum(self, values: Array) -> Array:
        """Per-channel sums of an array shaped like x, each exactly rounded (math.fsum)."""
        rows = channel_rows(values, self.stats)
        return np.array([math.fsum(r) for r in rows.tolist()])


@dataclass(frozen=True)
class _AnalyticBound:
    """G3: bounds on a float64 backward's errors (before SAFETY) and the exact dgamma, dbeta."""

    dx: Array
    dgamma: Array
    dbeta: Array
    exact_dgamma: Array
    exact_dbeta: Array


def _analytic_bound(ch: _Channels, case: BatchCase, dy: Array) -> _AnalyticBound:
    """Bounds B1-B4 of `properties.accuracy_props` with E = `tolerances.x_hat_bound`."""
    stats, col, n = ch.stats, ch.col, ch.stats.count
    xh, E, ady = np.abs(stats.x_hat), ch.x_hat_error(), np.abs(dy)
    dbeta, dgamma = ch.sum(dy), ch.sum(dy * stats.x_hat)
    # Each rounding below may also underflow: + one unit (TINY, or FLUSHED) per operation.
    unit = ch.unit
    b_b = n * U64 * ch.sum(ady) + n * unit
    b_g = ch.sum(ady * E) + n * U64 * ch.sum(ady * (xh + E)) + 2 * n * unit
    t_abs = np.abs(n * dy - col(dbeta) - stats.x_hat * col(dgamma))
    b_t = (
        col(b_b)
        + xh * col(b_g)
        + E * col(np.abs(dgamma) + b_g)
        + 3 * U64 * (n * ady + col(np.abs(dbeta)) + xh * col(np.abs(dgamma)))
        + 4 * col(unit)
    )
    rel = col(scale_error_bound(stats, U64, ch.accuracy) + 3 * U64)
    b_x = col(np.abs(case.gamma) / (n * stats.scale)) * (b_t + rel * t_abs) + 2 * col(unit)
    return _AnalyticBound(b_x, b_g, b_b, dgamma, dbeta)


@dataclass(frozen=True)
class _Plan:
    """Steps and per-element error bounds (G1-G3) for x, gamma and beta, and their parts:
    `noise`, each element's term of E_L (G2: E_L is their exactly rounded sum), `trunc`, G1
    per channel at the step of x, and `analytic`, G3."""

    steps: tuple[Array, Array, Array]
    bounds: tuple[Array, Array, Array]
    noise: Array
    trunc: Array
    analytic: _AnalyticBound


def _plan(case: BatchCase, dy: Array, accuracy: str) -> _Plan:
    """The steps of the module docstring and the bounds G1-G3, each shaped like its input."""
    ch = _Channels(case, accuracy)
    stats, col, c3 = ch.stats, ch.col, DEFAULT_RELATIVE_STEP
    g_abs, b_abs = np.abs(case.gamma), np.abs(case.beta)
    h_g, h_b = c3 * np.maximum(g_abs, 1.0), c3 * np.maximum(b_abs, 1.0)
    # A channel with gamma = 0 has y = beta whatever its x (G1 is 0 at any step), so only the
    # rounding E_L / h is left, smallest for the largest step: the coarsest step of the case.
    h_x = np.where(g_abs > 0, c3 * stats.scale, c3 * max(float(np.max(stats.scale)), 1.0))
    xh, E, ady = np.abs(stats.x_hat), ch.x_hat_error(), np.abs(dy)
    # G2: the rounding of L, with the magnitudes reachable within the steps (x_hat moves by
    # <= 2 c3 when x moves by <= 2 h_x, centered).
    y_max = col(g_abs + h_g) * (xh + 2 * c3) + col(b_abs + h_b)
    noise = ady * (col(g_abs + h_g) * E + 2 * (SAFETY + 2) * U64 * y_max + 4 * col(ch.unit))
    e_l = math.fsum(noise.ravel())
    # G1: truncation for x with H = 2 h; (1 + 4 c3) covers the change of s along the segment.
    H = 2 * h_x
    trunc = (1 + 4 * c3) * g_abs * H**3 / (6 * h_x * stats.scale**3)
    trunc = trunc * ch.sum(ady * (12 + 24 * (xh + 2 * c3)))
    analytic = _analytic_bound(ch, case, dy)
    bound_x = SAFETY * analytic.dx + e_l / col(h_x) + col(trunc)
    bound_g = SAFETY * analytic.dgamma + e_l / h_g
    bound_b = SAFETY * analytic.dbeta + e_l / h_b
    return _Plan(
        (np.broadcast_to(col(h_x), case.x.shape).copy(), h_g, h_b),
        (bound_x, bound_g, bound_b),
        noise,
        trunc,
        analytic,
    )


@dataclass(frozen=True)
class _Generic:
    """G1-G3 for a forward that normalizes over unknown groups of a channel (S1-S3 of the
    module docstring): the step of x, each element's term of E_L, and the bounds of the
    analytic gradients before SAFETY; x-shaped, or (C,) for dgamma and dbeta."""

    step: Array
    noise: Array
    trunc: Array
    dx: Array
    dgamma: Array
    dbeta: Array


def _generic(ch: _Channels, case: BatchCase, dy: Array, h_g: Array, h_b: Array) -> _Generic:
    """The bounds S1-S3 of the module docstring for every channel of `case`."""
    stats, col, c3, u = ch.stats, ch.col, DEFAULT_RELATIVE_STEP, U64
    n, ady, unit = stats.count, np.abs(dy), ch.unit
    s_min = math.sqrt(case.eps)
    k = roundings(n, STREAMING)  # covers the two-pass class too
    kappa = stats.kappa * stats.scale / s_min  # max|x| / sqrt(eps)
    top = math.sqrt(max(n - 1, 1))  # |x_hat| <= sqrt(m - 1) in a group of m <= n values
    shift = k * u * kappa
    rel = shift + shift**2 / 2 + (k / 2 + 4) * u  # scale error, sd/s <= 1
    e = SAFETY * (shift + u * kappa + (n + 4) * unit / s_min + top * (rel + 2 * u))
    e = e + unit * (1 + 1 / s_min)  # (C,): the x_hat bound of any group
    step = np.maximum(c3 * s_min, 64 * u * np.abs(case.x))
    g_abs, b_abs = np.abs(case.gamma), np.abs(case.beta)
    y_max = col(g_abs + h_g) * (top + 2 * step / s_min) + col(b_abs + h_b)
    noise = ady * (col((g_abs + h_g) * e) + 2 * (SAFETY + 2) * u * y_max + 4 * col(unit))
    s1 = ch.sum(ady)
    trunc = (1 + 4 * c3) * col(g_abs * ch.sum(ady * (12 + 24 * top)))
    trunc = trunc * (2 * step) ** 3 / (6 * step * s_min**3)
    b_g = s1 * e + n * u * s1 * (top + e)
    t = ady + col(s1 + top**2 * s1)  # |T_j| / m
    b_t = u * s1 + top * b_g + e * (top * s1 + b_g)  # BT_j / m, but for its |dy_j| term
    dx = col(g_abs / s_min) * (col(b_t) + 3 * u * t + col(rel + 3 * u) * t) + 2 * col(unit)
    return _Generic(step, noise, trunc, dx, b_g + 2 * n * unit, n * u * s1 + n * unit)


def _function_sized(
    impl: Implementation, gc: GradientCase, plan: _Plan, accuracy: str
) -> list[Measurement]:
    """The full check again with steps sized to the function (module docstring, S0-S3): a
    channel where central differences at h and 4 h disagree by more than per-channel batch
    norm allows is differenced at c3 sqrt(eps) with the bounds of any normalization."""
    case, dy = gc.case, gc.dy
    fns = _functions(impl, case)
    ch = _Channels(case, accuracy)
    col = ch.col
    h_x, h_g, h_b = plan.steps

    def of_x(x: Array) -> Array:
        return fns.f(x, case.gamma, case.beta)

    def of_x_many(points: Sequence[tuple[Array, ...]]) -> list[Array]:
        return fns.f_many([(x, case.gamma, case.beta) for (x,) in points])

    (fine,) = numeric_gradients(of_x, (case.x,), dy, step=(h_x,), f_many=of_x_many)
    (coarse,) = numeric_gradients(of_x, (case.x,), dy, step=(4 * h_x,), f_many=of_x_many)
    e_l = math.fsum(plan.noise.ravel())
    allowed = SAFETY * (18 * col(plan.trunc) + e_l / h_x + e_l / (4 * h_x))  # S0
    over = (np.abs(coarse - fine) > allowed).astype(np.float64)
    faster = np.max(channel_rows(over, ch.stats), axis=1) > 0
    generic = _generic(ch, case, dy, h_g, h_b)
    wide = col(faster.astype(np.float64)) > 0  # broadcasts against x
    noise = np.where(wide, generic.noise, plan.noise)
    e_l = math.fsum(noise.ravel())
    step_x = np.where(wide, generic.step, h_x)
    # S1-S3 where the channel varies faster; elsewhere the S0 allowance at the step h
    bound_x = np.where(
        wide,
        SAFETY * generic.dx + e_l / step_x + generic.trunc,
        SAFETY * (plan.analytic.dx + 18 * col(plan.trunc) + e_l / h_x + e_l / (4 * h_x)),
    )
    analytic_g = np.where(faster, generic.dgamma, plan.analytic.dgamma)
    analytic_b = np.where(faster, generic.dbeta, plan.analytic.dbeta)
    report = full_check(
        fns.f,
        fns.vjp,
        (case.x, case.gamma, case.beta),
        upstream=dy,
        names=NAMES,
        f_many=fns.f_many,
        step=(step_x, h_g, h_b),
        tolerance=0.0,
        atol=(
            bound_x,
            SAFETY * (analytic_g + e_l / h_g),
            SAFETY * (analytic_b + e_l / h_b),
        ),
    )
    channels = [int(c) for c in np.flatnonzero(faster)]
    where = f"channels {channels} differenced at c3 sqrt(eps)" if channels else "no channel"
    return _measurements(report, f"{report.mode}, steps sized to the function: {where}")


def _measurements(report: GradcheckReport, mode: str | None = None) -> list[Measurement]:
    out = []
    for name in NAMES:
        label = f"{name} relative error ({mode or report.mode})"
        err, tol = report.relative_errors[name], report.tolerances[name]
        if name == report.worst_input and not report.passed:
            label += (
                f", worst element {name}{list(report.worst_index)}: analytic "
                f"{report.analytic!r}, numeric {report.numeric!r}"
            )
        # a relative error of 1 is an answer of 0: the comparison has teeth below that
        out.append(Measurement(label, err, tol, teeth=tol < 1))
    return out


Forward = Callable[[Array, Array, Array], Array]
ForwardMany = Callable[[Sequence[tuple[Array, ...]]], list[Array]]
Backward = Callable[[Array, Array, Array, Array], tuple[Array, Array, Array]]


@dataclass(frozen=True)
class _Functions:
    """What gradcheck differentiates, for `impl` on one case: f(x, gamma, beta) = y, f_many
    (y at many (x, gamma, beta) in one call of the implementation where it can: the perturbed
    points of a check cross to a worker process in one message) and vjp(dy, x, gamma, beta) =
    (dx, dgamma, dbeta)."""

    f: Forward
    f_many: ForwardMany
    vjp: Backward


def _functions(impl: Implementation, case: BatchCase) -> _Functions:
    """f, f_many and vjp of `impl` at the case's eps and axis."""

    def f(x: Array, gamma: Array, beta: Array) -> Array:
        return impl.forward(x, gamma, beta, eps=case.eps, axis=case.axis).y

    def f_many(points: Sequence[tuple[Array, ...]]) -> list[Array]:
        triples = [(x, gamma, beta) for x, gamma, beta in points]
        return forward_ys(impl, triples, eps=case.eps, axis=case.axis)

    def vjp(dy: Array, x: Array, gamma: Array, _beta: Array) -> tuple[Array, Array, Array]:
        g = impl.backward(dy, x, gamma, eps=case.eps, axis=case.axis)
        return (g.dx, g.dgamma, g.dbeta)

    return _Functions(f, f_many, vjp)


def check_gradients_full(impl: Implementation, gc: GradientCase) -> list[Measurement]:
    """Finite differences, full: every element of dx, dgamma, dbeta agrees with them."""
    case = gc.case
    plan = _plan(case, gc.dy, accuracy_class(impl))
    fns = _functions(impl, case)
    report = full_check(
        fns.f,
        fns.vjp,
        (case.x, case.gamma, case.beta),
        upstream=gc.dy,
        names=NAMES,
        f_many=fns.f_many,
        step=plan.steps,
        tolerance=0.0,
        atol=plan.bounds,
    )
    if report.passed:
        return _measurements(report)
    return _function_sized(impl, gc, plan, accuracy_class(impl))


def check_gradients_fast(impl: Implementation, gc: GradientCase) -> list[Measurement]:
    """Finite differences, fast: random projections of dx, dgamma, dbeta agree with central
    differences; a failure falls back to the full check, which names the element."""
    case = gc.case
    plan = _plan(case, gc.dy, accuracy_class(impl))
    fns = _functions(impl, case)
    report = fast_check(
        fns.f,
        fns.vjp,
        (case.x, case.gamma, case.beta),
        upstream=gc.dy,
        rng=gc.seed,
        num_projections=PROJECTIONS,
        names=NAMES,
        f_many=fns.f_many,
        step=plan.steps,
        tolerance=0.0,
        atol=plan.bounds,
    )
    if report.passed:
        return _measurements(report)
    return _function_sized(impl, gc, plan, accuracy_class(impl))


def check_orthogonality(impl: Implementation, gc: GradientCase) -> list[Measurement]:
    """dx orthogonality: per channel sum(dx) = 0 and sum(dx * x_hat) = gamma dgamma eps / s**3.

    With dx' the implementation's dx (|dx' - dx| <= SAFETY * G3 per element) and the checker's
    x_hat (error <= 2u|x_hat| + u kappa, `tolerances`), summed with math.fsum:
    |sum dx'| <= sum |dx' - dx| + u|sum dx'|, and sum dx' x_hat' errs by
    sum |dx' - dx| |x_hat| + sum |dx'| (2u|x_hat| + u kappa) + u sum |dx' x_hat'| (the products)
    + u |sum|; the right side's dgamma errs by sum |dy| (2u|x_hat| + u kappa) + u sum|dy x_hat|,
    its eps / s**3 by ~10u relative (s from fsum statistics within a few u). Every operation
    that may underflow adds TINY.
    """
    case, dy = gc.case, gc.dy
    ch = _Channels(case, accuracy_class(impl))
    stats, n = ch.stats, ch.stats.count
    dx = np.asarray(impl.backward(dy, case.x, case.gamma, eps=case.eps, axis=case.axis).dx)
    if dx.shape != case.x.shape:
        return [Measurement(f"shape of dx {dx.shape} != {case.x.shape}", math.inf, 0.0)]
    bound = _analytic_bound(ch, case, dy)
    b_dx = SAFETY * bound.dx
    xh = np.abs(stats.x_hat)
    # The checker's own x_hat rounding (`tolerances`), and its underflow.
    unit = ch.col(ch.unit)
    e_xh = 2 * U64 * xh + U64 * ch.col(stats.kappa) + unit * (1 + ch.col(1 / stats.scale))
    sum_dx = ch.sum(dx)
    sum_dx_xh = ch.sum(dx * stats.x_hat)
    factor = np.abs(case.gamma) * (case.eps / stats.scale**3)
    # eps / s**3 first: gamma * dgamma * eps could underflow where the result does not.
    want = case.gamma * (case.eps / stats.scale**3) * bound.exact_dgamma
    tol_sum = ch.sum(b_dx) + U64 * np.abs(sum_dx)
    tol_xh = SAFETY * (
        ch.sum(b_dx * xh)
        + ch.sum(np.abs(dx) * e_xh)
        + U64 * ch.sum(np.abs(dx) * xh)
        + factor * (ch.sum(np.abs(dy) * e_xh) + U64 * ch.sum(np.abs(dy) * xh) + n * ch.unit)
        + 10 * U64 * np.abs(want)
        + (n + 3) * ch.unit  # the products dx * x_hat and the three of `want` may underflow
    ) + U64 * np.abs(sum_dx_xh)
    # The size of the sums, for their teeth: dx's terms are of size |gamma| |dy| / s (a dx
    # without its mean or x_hat term leaves sums of that size), whatever the exact sums are.
    size = np.abs(case.gamma) / stats.scale
    return [
        compare(
            "channel sum of dx vs 0",
            sum_dx,
            np.zeros_like(sum_dx),
            tol_sum,
            scale=size * ch.sum(np.abs(dy)),
        ),
        compare(
            "channel sum of dx * x_hat vs gamma dgamma eps / s^3",
            sum_dx_xh,
            want,
            tol_xh,
            scale=size * ch.sum(np.abs(dy) * xh),
        ),
    ]


PROPERTIES: tuple[Property, ...] = (
    Property(
        "gradients-full",
        "every element of dx, dgamma, dbeta equals the central difference of "
        "L = sum(dy * y) within the derived bound",
        gradient_cases(),
        check_gradients_full,
        frozenset({"float64", "gradient", ACCURACY_CLASS}),
    ),
    Property(
        "gradients-fast",
        "random projections <grad, delta> equal central differences of L along delta within "
        "the derived bound (a failure is located by the full check)",
        gradient_cases(),
        check_gradients_fast,
        frozenset({"float64", "gradient", ACCURACY_CLASS}),
    ),
    Property(
        "dx-orthogonality",
        "per channel sum(dx) = 0 and sum(dx * x_hat) = gamma dgamma eps / (var + eps)^(3/2) "
        "(0 as eps -> 0): dx is orthogonal to the constants and, up to eps, to x_hat",
        backward_cases(),
        check_orthogonality,
        frozenset({"float64", "gradient", ACCURACY_CLASS}),
    ),
)
