"""Property 11: float64 batch norm agrees with a 50-digit evaluation to within a derived bound.

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

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from properties.adapter import Array, Implementation
from properties.checks import compare
from properties.framework import Measurement, Property
from properties.highprec import HighPrecForward, highprec_backward, highprec_forward
from properties.strategies import EPS_VALUES, BatchCase, CodeRepr, layouts, upstream_gradients
from properties.tolerances import (
    PRECISIONS,
    SAFETY,
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
    """Property 11 (forward): mean, var, x_hat and y within bounds F1-F5 of the 50-digit values.

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
    """Property 11 (backward): dx, dgamma and dbeta within bounds B1-B4 of the 50-digit values."""
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
    """A `small_cases` case with a non-uniform upstream gradient."""
    case = draw(small_cases())
    return BackwardCase(case, draw(upstream_gradients(case.x.shape)))


PROPERTIES: tuple[Property, ...] = (
    Property(
        "forward-accuracy",
        "float64 mean, var, x_hat and y agree with a 50-digit evaluation within the derived "
        "bound, up to |mean|/std = 1e8",
        small_cases(),
        check_forward,
        frozenset({"float64", "high-precision"}),
    ),
    Property(
        "backward-accuracy",
        "float64 dx, dgamma and dbeta agree with a 50-digit evaluation within the derived "
        "bound, up to |mean|/std = 1e8",
        small_backward_cases(),
        check_backward,
        frozenset({"float64", "high-precision"}),
    ),
)
