"""float64 batch norm agrees with a 50-digit evaluation to within a derived bound.

The exact values come from `properties.highprec` (mpmath, 50 digits, on the exact float64
inputs). Per channel with n values, unit roundoff u = 2**-53 and gamma_k = k u / (1 - k u),
the exact quantities are m = mean(x), v = mean((x - m)**2), s = sqrt(v + eps), x_hat, y, and
the input magnitudes A = mean|x_i| and D = max|x_i - m|. The conditioning of the channel is
kappa = (A + D) / s; a channel with |mean|/std = 1e8 has kappa ~ 1e8.

Forward (first order in u; each bound is per element or per channel):

F1. Mean: |m' - m| <= dm := gamma_(n+1) (A + D). Summing in any order errs by gamma_(n-1) sum|x|
    and the division by n by u|m|, together <= gamma_n A. The reference's corrected two-pass
    mean m0 + mean(x - m0) errs by u|m| + gamma_(n+1) (D + gamma_n A) (the correction averages
    deviations of size <= D + |m - m0|). dm covers both.
F2. Variance from the deviations x_i - m': since sum(x_i - m) = 0 exactly,
    mean((x_i - m')**2) = v + (m' - m)**2, and the subtraction, square, sum and division
    multiply each positive term by at most 1 + gamma_(n+3):
    |v' - v| <= dv := dm**2 + gamma_(n+3) (v + dm**2).
    A one-pass mean(x**2) - mean(x)**2 instead errs by ~ gamma_n (m**2 + v): relative to v that
    is n u (1 + m**2/v) ~ n u 1e16 at |mean|/std = 1e8 -- every digit (F2 allows ~ (n u 1e8)**2).
F3. inv_std = 1/sqrt(v + eps): relative perturbation P := dv / (v + eps) of the radicand,
    halved by the square root, plus the roundings of + eps, sqrt and 1/:
    |inv_std'/inv_std - 1| <= R := P/2 + gamma_3 (first order in P; P < 1e-3 on these cases).
F4. x_hat_i = (x_i - m') inv_std' (or / s', or the folded x_i inv_std' - m' inv_std', whose
    roundings are relative to |x_i| and |m'| rather than |x_i - m'|):
    |x_hat'_i - x_hat_i| <= E_i := dm/s + (|x_hat_i| + dm/s) R + gamma_3 (|x_i| + |m| + dm)/s.
    The leading term is the common shift (n + 1) u kappa; everything else is relative.
F5. y_i = gamma x_hat_i + beta (or folded a x_i + (beta - m' a), a = gamma inv_std):
    |y'_i - y_i| <= |gamma| E_i + gamma_2 (|gamma x_hat_i| + |beta| + |y_i|).

Backward, closed form dbeta = sum dy, dgamma = sum dy x_hat, dx_i = (gamma inv_std / n) T_i with
T_i = n dy_i - dbeta - x_hat_i dgamma (dy is given exactly; x_hat' carries E):

B1. |dbeta' - dbeta| <= Bb := gamma_(n-1) sum|dy|.
B2. |dgamma' - dgamma| <= Bg := sum |dy_j| E_j + gamma_n sum |dy_j| (|x_hat_j| + E_j).
B3. |T'_i - T_i| <= BT_i := Bb + |x_hat_i| Bg + E_i (|dgamma| + Bg)
                           + gamma_3 (n |dy_i| + |dbeta| + |x_hat_i dgamma|).
    A common shift -delta of x_hat moves T_i by delta dgamma + x_hat_i delta dbeta: the E_i and
    Bg terms. The last term is the rounding of n dy_i, x_hat_i dgamma and the two subtractions;
    it is what bounds dx when T_i cancels (dy constant, or dy proportional to x_hat).
B4. |dx'_i - dx_i| <= |gamma| inv_std / n (BT_i + (R + gamma_3) |T_i|).

Accuracy class. F1 and F2 are the two-pass bounds (`tolerances.TWO_PASS`, what
`bnref check --strict` holds a target to). By default a target is held to any backward-stable
computation of the statistics (`tolerances.STREAMING`: Welford's update, pairwise or chunked
merges; derivation in `properties.tolerances`, steps 1s-2s), with K = 2 n + 8 roundings:

F1s. |m' - m| <= dm := gamma_K (A + D).
F2s. |v' - v| <= dv := 2 gamma_K (A + D) sqrt(v) + dm**2 + gamma_K (v + dm**2): the running mean's
     error enters the sum of squares to first order, multiplied by the deviations.

F3-F5 and B1-B4 follow from dm and dv as written. Flush to zero: where an input, result or
intermediate of a channel is subnormal, dm and dv add the channel's `tolerances.flush_budget`,
x_hat and y the flush of their own subnormal values (tiny each), and the backward's underflow
terms count tiny (the smallest normal number) instead of ETA.

Algebraically equivalent orders (the graph of docs/backward.md, or dividing by n first) round
relative to the same magnitudes; their extra roundings are within the factor SAFETY. Every
tolerance is SAFETY * bound + u |exact| (the rounding of the 50-digit value to float64), and
the bound's ingredients are computed in float64 from the rounded exact values (relative error
O(n u), far inside SAFETY). An implementation computing in float32 or float16 gets the same
bounds with its dtype's u and ETA (`tolerances.precision(impl.dtype)`) on inputs representable
in that dtype; the rounding of the exact value to float64 keeps U64.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from properties.adapter import Array, Implementation
from properties.batchnorm_props import channel_moments, moment_bounds
from properties.checks import compare
from properties.framework import Measurement, Property, PropertyResult
from properties.highprec import HighPrecForward, highprec_backward, highprec_forward
from properties.strategies import (
    EPS_VALUES,
    BatchCase,
    CodeRepr,
    layouts,
    live_channel,
    upstream_gradients,
)
from properties.tolerances import (
    ACCURACY_CLASS,
    PRECISIONS,
    SAFETY,
    STREAMING,
    TWO_PASS,
    U64,
    Precision,
    accuracy_class,
    exact_stats,
    flush_budget,
    flush_floor_y,
    precision,
    roundings,
)

SMALL_SIZE = 48  # values per case: mpmath at 50 digits costs ~10 us per operation
# |offset| / spread per channel: ordinary, large, and the 1e8 where one-pass variance dies
CONDITIONS = (1e4, 1e6, 1e8, -1e8)
# gamma, beta: 0 or 1e-3 <= |value| <= 5; tinier values would test underflow, not rounding
_PARAM = st.one_of(st.just(0.0), st.floats(1e-3, 5.0), st.floats(-5.0, -1e-3))


def _gamma(k: int | Array, u: float = U64) -> Array:
    """gamma_k = k u / (1 - k u), the bound on k successive relative roundings."""
    k_ = np.asarray(k, dtype=np.float64)
    out: Array = k_ * u / (1.0 - k_ * u)
    return out


def _rows(a: Array, axis: int) -> Array:
    """a as (C, n), one row per channel."""
    return np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)


def _col(vector: Array, ndim: int, axis: int) -> Array:
    """A (C,) vector reshaped to broadcast along `axis` of an ndim-dimensional array."""
    shape = [1] * ndim
    shape[axis % ndim] = vector.size
    return vector.reshape(shape)


@dataclass(frozen=True)
class ForwardBound:
    """First-order bounds F1-F5 (before SAFETY): per channel (C,) or per element (x's shape).

    `under` is the underflow unit per operation of each channel (C,): ETA, or the smallest
    normal number where something of the channel is subnormal (flush to zero)."""

    mean: Array  # dm
    var: Array  # dv
    inv_std: Array  # R, relative
    x_hat: Array  # E
    y: Array
    under: Array


def forward_bound(
    case: BatchCase,
    exact: HighPrecForward,
    p: Precision = PRECISIONS["float64"],
    accuracy: str = TWO_PASS,
) -> ForwardBound:
    """The bounds F1-F5 (F1s-F2s for the class STREAMING) of the module docstring for `case`,
    from its 50-digit values, for an implementation of precision p (unit roundoff p.u,
    smallest subnormal p.eta, smallest normal p.tiny) held to the class `accuracy`."""
    x, ax, nd = case.x, case.axis % case.x.ndim, case.x.ndim
    rows = _rows(x, ax)
    n = rows.shape[1]
    s = 1.0 / exact.inv_std
    A = np.mean(np.abs(rows), axis=1)
    D = np.max(np.abs(rows - exact.mean[:, None]), axis=1)
    # Gradual underflow: each of the n + 4 operations behind a statistic may lose ETA/2
    # absolutely when its result is subnormal (data near 1e-159 square into that range);
    # flushed to zero, it loses < tiny: the channel's flush budget.
    flush = flush_budget(exact_stats(x, ax, case.eps), p.tiny, p.u)
    under = (n + 4) * p.eta
    k = roundings(n, accuracy)
    dm = _gamma(k, p.u) * (A + D) + under + flush.shift
    dv = dm**2 + _gamma(n + 3, p.u) * (exact.var + dm**2) + under + flush.var
    if accuracy != TWO_PASS:  # F2s: the running mean's error enters to first order
        dv = dv + 2 * _gamma(k, p.u) * (A + D) * np.sqrt(exact.var) + _gamma(k, p.u) * exact.var
    R = dv / (exact.var + case.eps) / 2 + _gamma(3, p.u)
    shift, R_, s_ = _col(dm / s, nd, ax), _col(R, nd, ax), _col(s, nd, ax)
    xh = np.abs(exact.x_hat)
    E = (
        shift
        + (xh + shift) * R_
        + _gamma(3, p.u) * (np.abs(x) + _col(np.abs(exact.mean) + dm, nd, ax)) / s_
        + under / s_
        + flush_floor_y(exact.x_hat[None], p.tiny)  # x_hat itself flushed
    )
    g, b = _col(np.abs(case.gamma), nd, ax), _col(np.abs(case.beta), nd, ax)
    gx = _col(case.gamma, nd, ax) * exact.x_hat
    y = g * E + _gamma(2, p.u) * (g * xh + b + np.abs(exact.y)) + 2 * p.eta
    y = y + flush_floor_y(np.stack([gx, exact.y]), p.tiny)  # gamma x_hat or y flushed
    unit = np.where(flush.touched, p.tiny, p.eta)
    return ForwardBound(dm, dv, R, E, y, unit)


def _tolerance(bound: Array, exact: Array) -> Array:
    """SAFETY times the first-order bound, plus the rounding of the exact value to float64."""
    tol: Array = SAFETY * bound + U64 * np.abs(exact)
    return tol


def check_forward(impl: Implementation, case: BatchCase) -> list[Measurement]:
    """Forward accuracy: mean, var, x_hat and y within bounds F1-F5 of the 50-digit values.

    x_hat is observed as the output for gamma = 1, beta = 0 (F5 with those parameters).
    """
    exact = highprec_forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    p = precision(impl.dtype)
    fb = forward_bound(case, exact, p, accuracy_class(impl))
    out = impl.forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    c = case.gamma.size
    unit = impl.forward(case.x, np.ones(c), np.zeros(c), eps=case.eps, axis=case.axis)
    x_hat_tol = fb.x_hat + _gamma(2, p.u) * 2 * np.abs(exact.x_hat)  # F5 with gamma=1, beta=0
    return [
        compare("mean", out.mean, exact.mean, _tolerance(fb.mean, exact.mean)),
        compare("var", out.var, exact.var, _tolerance(fb.var, exact.var)),
        compare("x_hat", unit.y, exact.x_hat, _tolerance(x_hat_tol, exact.x_hat)),
        compare("y", out.y, exact.y, _tolerance(fb.y, exact.y)),
    ]


@dataclass(frozen=True, repr=False)
class BackwardCase(CodeRepr):
    """A batch case and an upstream gradient dy of x's shape."""

    case: BatchCase
    dy: Array


def check_backward(impl: Implementation, bc: BackwardCase) -> list[Measurement]:
    """Backward accuracy: dx, dgamma and dbeta within bounds B1-B4 of the 50-digit values."""
    case, dy = bc.case, bc.dy
    x, ax, nd = case.x, case.axis % case.x.ndim, case.x.ndim
    fwd = highprec_forward(x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    exact = highprec_backward(dy, x, case.gamma, eps=case.eps, axis=case.axis)
    p = precision(impl.dtype)
    fb = forward_bound(case, fwd, p, accuracy_class(impl))
    n = x.size // case.gamma.size
    xh, E = np.abs(fwd.x_hat), fb.x_hat
    abs_dy = _rows(np.abs(dy), ax)
    under = (n + 4) * fb.under  # gradual underflow (or a flush to zero), as in forward_bound
    Bb = _gamma(n - 1, p.u) * abs_dy.sum(axis=1) + under  # B1
    Bg = (abs_dy * _rows(E, ax)).sum(axis=1)  # B2
    Bg = Bg + _gamma(n, p.u) * (abs_dy * _rows(xh + E, ax)).sum(axis=1) + under
    db, dg = _col(np.abs(exact.dbeta), nd, ax), _col(np.abs(exact.dgamma), nd, ax)
    BT = _col(Bb, nd, ax) + xh * _col(Bg, nd, ax) + E * (dg + _col(Bg, nd, ax))  # B3
    BT = BT + _gamma(3, p.u) * (n * np.abs(dy) + db + xh * dg)
    k = _col(np.abs(case.gamma) * fwd.inv_std / n, nd, ax)
    T = np.abs(exact.dx) / np.where(k > 0, k, 1.0)  # |T_i| (dx = 0 where gamma = 0)
    Bdx = k * (BT + (_col(fb.inv_std, nd, ax) + _gamma(3, p.u)) * T) + _col(under, nd, ax)  # B4
    got = impl.backward(dy, x, case.gamma, eps=case.eps, axis=case.axis)
    return [
        compare("dx", got.dx, exact.dx, _tolerance(Bdx, exact.dx)),
        compare("dgamma", got.dgamma, exact.dgamma, _tolerance(Bg, exact.dgamma)),
        compare("dbeta", got.dbeta, exact.dbeta, _tolerance(Bb, exact.dbeta)),
    ]


@st.composite
def small_cases(draw: st.DrawFn) -> BatchCase:
    """float64 cases of at most SMALL_SIZE values, x = offset + spread * z per channel.

    The first two z of every channel are -1 and +1, so the channel's std is at least
    spread * sqrt(2/n) and |offset|/spread in CONDITIONS really is |mean|/std up to ~1e8 (times
    at most sqrt(n/2)); spread 0 gives constant channels (conditioning |offset|/sqrt(eps)).
    """
    layout = draw(layouts(max_size=SMALL_SIZE))
    shape, ax, c = layout.shape, layout.axis % len(layout.shape), layout.channels
    z = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1.0, 1.0, allow_subnormal=False)))
    zr = np.moveaxis(z, ax, 0).reshape(c, -1).copy()
    zr[:, :2] = (-1.0, 1.0)
    z = np.moveaxis(zr.reshape((c, *np.delete(shape, ax))), 0, ax)
    spreads = st.one_of(st.just(1.0), st.just(0.0), st.floats(1e-3, 1e3))
    spread = np.array(draw(st.lists(spreads, min_size=c, max_size=c)))
    ratios = st.one_of(st.floats(-10.0, 10.0), st.sampled_from(CONDITIONS))
    offset = np.array(draw(st.lists(ratios, min_size=c, max_size=c))) * np.where(
        spread > 0, spread, 1.0
    )
    x = _col(offset, len(shape), ax) + _col(spread, len(shape), ax) * z
    gamma = np.array(draw(st.lists(_PARAM, min_size=c, max_size=c)))
    beta = np.array(draw(st.lists(_PARAM, min_size=c, max_size=c)))
    return BatchCase(x, gamma, beta, draw(st.sampled_from(EPS_VALUES)), layout.axis, "float64")


@st.composite
def small_backward_cases(draw: st.DrawFn) -> BackwardCase:
    """A `small_cases` case with a live channel (`strategies.live_channel`: where every channel
    has gamma = 0 or x_hat ~0, dx, dgamma or both are ~0 and their comparisons could not fail)
    and a non-uniform upstream gradient."""
    case = draw(small_cases().flatmap(live_channel))
    return BackwardCase(case, draw(upstream_gradients(case.x.shape)))


# --- which accuracy class a target's statistics fall in ---------------------------------------

# Variance of the battery's channels relative to eps: far above it, so var(x_hat) ~ 1.
_BATTERY_EPS = 1e-5
_BATTERY_COUNTS = (2, 16, 128, 512)
_BATTERY_KAPPAS = tuple(10.0**k for k in range(1, 9))  # up to the strategies' 1e8
# A class is told apart only while its bound says something: K u kappa <= 1e-2.
_RESOLVABLE = 1e-2


@dataclass(frozen=True)
class VarianceClass:
    """The accuracy class a target's statistics fall in, measured on a fixed battery.

    `units` is the worst error of var(x_hat) (relative to its exact value var/(var+eps)) in
    units of u kappa among the channels of large kappa (within a factor 100 of the largest
    measured), `count` and `kappa` the channel it was seen on, `two_pass` and
    `streaming` what each class allows there in the same units. `name` is "two-pass" (within
    the reference's own bounds everywhere), "streaming" (within the bound of any
    backward-stable algorithm), "one-pass: FAIL" (beyond it, growing like u kappa**2 as
    E[x^2] - E[x]^2 does), "beyond streaming: FAIL" (beyond it otherwise) or "not measured"
    (with `reason`).
    """

    name: str
    dtype: str
    units: float = math.nan
    count: int = 0
    kappa: float = math.nan
    two_pass: float = math.nan
    streaming: float = math.nan
    channels: int = 0
    reason: str = ""

    def line(self) -> str:
        """One line for the report."""
        head = f"accuracy class [{self.dtype}]: {self.name}"
        if self.reason:
            return f"{head} ({self.reason})"
        return (
            f"{head} -- worst var(x_hat) error {self.units:.3g} u*kappa at large kappa (n = "
            f"{self.count}, kappa = {self.kappa:.1e}, where two-pass allows "
            f"{self.two_pass:.3g} and streaming {self.streaming:.3g} u*kappa), "
            f"{self.channels} channels measured"
        )


def _battery(count: int, p: Precision) -> tuple[Array, list[float]]:
    """x of shape (count, C): one channel per resolvable kappa and sign, each a fixed pattern of
    mean 0 and std 1 (to within rounding) moved to kappa, rounded to p's dtype."""
    k = roundings(count, STREAMING)
    kappas = [kap for kap in _BATTERY_KAPPAS if k * p.u * kap <= _RESOLVABLE]
    pattern = np.cos(np.arange(count) * 2.399963229728653)  # the golden angle: no repeats
    pattern = (pattern - pattern.mean()) / pattern.std()
    columns = [sign * kap + pattern for kap in kappas for sign in (1.0, -1.0)]
    if not columns:
        return np.zeros((count, 0)), []
    x = np.stack(columns, axis=1).astype(p.dtype).astype(np.float64)
    return x, kappas


def classify_variance(impl: Implementation) -> VarianceClass:
    """Which accuracy class `impl`'s statistics fall in (`VarianceClass`).

    Battery: n = 2, 16, 128, 512 values per channel, |mean|/std = 10 ... 1e8 of either sign
    (only where K u kappa <= 1e-2, K = 2 n + 8, so that the classes' bounds still say
    something in the dtype), std 1, eps = 1e-5, gamma = 1, beta = 0, the inputs rounded to the
    dtype. Per channel, var(y') is summed exactly and compared with var/(var+eps) within the
    variance bounds of `batchnorm_props.check_moments` for each class. One-pass is recognized
    where the error exceeds the streaming bound yet stays within SAFETY (n + 2) u kappa**2 of
    the two-pass bound in every channel whose u kappa**2 n is below 0.1 (where the one-pass
    error has not yet swamped the variance).
    """
    p = precision(impl.dtype)
    eps = max(_BATTERY_EPS, p.min_eps)
    rows: list[tuple[float, int, float, float, float, float]] = []
    for count in _BATTERY_COUNTS:
        x, _ = _battery(count, p)
        if x.shape[1] == 0:
            continue
        c = x.shape[1]
        try:
            y = np.asarray(impl.forward(x, np.ones(c), np.zeros(c), eps=eps, axis=1).y)
        except Exception as exc:  # the target's failure is the finding, reported
            return VarianceClass(
                "not measured", impl.dtype, reason=f"forward raised {type(exc).__name__}: {exc}"
            )
        stats = exact_stats(x, 1, eps)
        _, var_y = channel_moments(y, stats)
        ones, zeros = np.ones(c), np.zeros(c)
        strict = moment_bounds(stats, ones, zeros, eps, p=p, accuracy=TWO_PASS)
        loose = moment_bounds(stats, ones, zeros, eps, p=p, accuracy=STREAMING)
        u_kappa = p.u * stats.kappa
        err = np.abs(var_y - strict.want_var)
        err = np.where(np.isnan(err), np.inf, err)
        for j in range(c):
            rows.append(
                (
                    float(err[j]),
                    count,
                    float(stats.kappa[j]),
                    float(u_kappa[j]),
                    float(strict.var[j]),
                    float(loose.var[j]),
                )
            )
    if not rows:
        return VarianceClass(
            "not measured",
            impl.dtype,
            reason=f"no |mean|/std >= 10 keeps K u kappa <= {_RESOLVABLE} in {impl.dtype}",
        )
    # The worst in units of u kappa where kappa is large (within 100 of the largest measured
    # for that n): there the class's kappa-dependent term dominates its n u term.
    top = {n: max(r[2] for r in rows if r[1] == n) for n in {r[1] for r in rows}}
    large = [r for r in rows if r[2] >= top[r[1]] / 100]
    worst = max(large, key=lambda r: r[0] / r[3])
    error, count, kappa, unit, two_pass, streaming = worst
    if all(r[0] <= r[4] for r in rows):
        name = TWO_PASS
    elif all(r[0] <= r[5] for r in rows):
        name = STREAMING
    else:
        unsaturated = [r for r in rows if r[3] * r[2] * r[1] < 0.1]  # u kappa**2 n < 0.1
        one_pass = all(
            r[0] <= r[4] + SAFETY * (r[1] + 2) * r[3] * r[2] for r in unsaturated
        ) and any(r[0] > r[5] for r in unsaturated)
        name = "one-pass: FAIL" if one_pass else "beyond streaming: FAIL"
    return VarianceClass(
        name,
        impl.dtype,
        error / unit,
        count,
        kappa,
        two_pass / unit,
        streaming / unit,
        len(rows),
    )


# Subnormal probe: x = [-a, a] with a = 2 tiny, eps = 1, gamma = 1/8: x_hat = a exactly
# (a**2 + 1 rounds to 1) and y = +-tiny/4, a subnormal of the dtype; flushed, it is 0. The same
# with gamma = 2**8 / 8 gives a normal y = +-2**8 tiny/4: a forward that gets that one right
# and returns 0 for the first flushes subnormals (a wrong forward gets the control wrong too).
def flushes_subnormals(impl: Implementation) -> bool | None:
    """Whether `impl` returns 0 for a subnormal y (True), the subnormal itself (False), or
    neither (None: a wrong control value, another shape or an error)."""
    p = precision(impl.dtype)
    a = 2 * p.tiny
    x = np.array([[-a], [a]])
    try:
        y = np.asarray(impl.forward(x, np.array([0.125]), np.zeros(1), eps=1.0, axis=1).y)
        control = np.asarray(impl.forward(x, np.array([32.0]), np.zeros(1), eps=1.0, axis=1).y)
    except Exception:  # a target that cannot run the probe says nothing
        return None
    want = np.array([[-p.tiny / 4], [p.tiny / 4]])
    if not np.array_equal(control, want * 2.0**8):
        return None
    if np.array_equal(y, want):
        return False
    return True if y.shape == x.shape and np.all(y == 0) else None


def flush_note(impl: Implementation) -> str:
    """The report's note when `impl` flushes subnormals to zero ("" otherwise)."""
    if flushes_subnormals(impl) is not True:
        return ""
    tiny = precision(impl.dtype).tiny
    return (
        f"note [{impl.dtype}]: {impl.name} flushes subnormal results to zero; wherever an "
        f"input, result or intermediate was subnormal the bounds allowed the absolute floor "
        f"of the smallest normal number, {tiny:.3g} (properties.tolerances.flush_budget), "
        "and results there passed by that floor"
    )


def accuracy_report(
    impls: Sequence[Implementation], props: Sequence[Property], results: Sequence[PropertyResult]
) -> list[str]:
    """The report's lines on accuracy, per implementation (one per dtype): its accuracy class
    (`classify_variance`) when a selected property depends on it, the flush-to-zero note when
    it flushes subnormals, and, for an implementation held to two-pass (`--strict`) where no
    property that depends on the class ran, that --strict changed nothing."""
    depends = {p.name for p in props if ACCURACY_CLASS in p.tags}
    lines: list[str] = []
    for impl in impls:
        ran = [
            r.name
            for r in results
            if r.dtype == impl.dtype and r.name in depends and not r.not_applicable
        ]
        if depends:
            lines.append(classify_variance(impl).line())
        note = flush_note(impl)
        if note:
            lines.append(note)
        if accuracy_class(impl) == TWO_PASS and not ran:
            lines.append(
                f"--strict [{impl.dtype}] changes nothing here: no property that ran compares "
                "statistics-dependent values (var, x_hat, y, the moments of y, or what is "
                "computed from them), the only bounds --strict tightens"
            )
    return lines


PROPERTIES: tuple[Property, ...] = (
    Property(
        "forward-accuracy",
        "float64 mean, var, x_hat and y agree with a 50-digit evaluation within the derived "
        "bound, up to |mean|/std = 1e8",
        small_cases(),
        check_forward,
        frozenset({"float64", "high-precision", ACCURACY_CLASS}),
    ),
    Property(
        "backward-accuracy",
        "float64 dx, dgamma and dbeta agree with a 50-digit evaluation within the derived "
        "bound, up to |mean|/std = 1e8",
        small_backward_cases(),
        check_backward,
        frozenset({"float64", "high-precision", ACCURACY_CLASS}),
    ),
)
