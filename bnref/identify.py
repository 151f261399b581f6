"""`bnref identify TARGET`: which batch norm a black box computes, measured from its outputs.

The target is any `properties.adapter.Implementation` (a built-in target, or a user's
`module:function` with the options `bnref check` takes). `identify` sends it a few probes
(each one forward call, or one running-statistics update, on inputs built for one question)
and fits what comes back. Every probe uses gamma = 1 and beta = 0, and reads only y (never the
mean and variance an adapter may return beside it: for a user forward that returns y alone
they are bnref's own), and the new running statistics.

The adapter protocol makes the channel axis, eps and momentum ARGUMENTS the auditor passes.
`identify` passes the defaults of the convention the target declares (`impl.convention`: what a
user of the target gets out of the box; a user target's `--eps` and `--momentum` when fixed)
and measures what the target does with them. A second probe with other values says whether
the target follows the argument or has a value of its own: a target that ignores the eps it is
given reveals its own eps, one that ignores the momentum its own weight.

Measurements, in order (each needs the ones before it):

axis
    Probes of 3 and 4 dimensions (2 and 5 if those fail), every axis the same length, with an
    offset per index along every axis; the axis passed is the declared one. The channel axis
    is the one along which every slice of y is an increasing affine function of x with mean 0
    and a variance in [1/2, 1] (each slice normalized separately); for any other axis a slice
    mixes channels normalized differently and is no affine function of x. Reported as counted
    from the front or from the end, whichever holds at every rank probed ("-1": the last axis).
    No axis fits: the output is not a batch norm, and nothing else is measured. The later
    probes put the channels on that axis and pass the declared one; when the two differ (a
    target that ignores the axis it is given), the declared axis gets one entry per channel
    and each channel's values are repeated along it, TILED_CHANNELS channels per call.
compute_dtype
    The channels [1, 1 + 2**-k], k = 1 ... 52: the significand has p bits when y resolves the
    two values (y[0] < y[1]) exactly for k < p, since 1 + 2**-k is representable only for
    k <= p - 1. p = 53 float64, 24 float32, 11 float16, 8 bfloat16; any other p is named as
    such. A target that rounds its inputs to float32 inside, whatever dtype it declares, shows
    float32.
eps, normalization_variance, eps_placement
    Channels of values +d, -d, +d, -d (mean exactly 0 in any summation order; biased variance
    v = d**2 exactly) for v on a grid around the eps passed and over 1e-12 ... 1e2. With
    gamma = 1, beta = 0 the variance t of a channel of y is v / (c v + eps) when eps is added
    to the variance (c = 1 for the biased variance, n/(n - 1) for the unbiased one), and
    v / (sqrt(c v) + eps)**2 when it is added to the standard deviation. Each channel whose
    eps share eps / (c v + eps) lies in [0.05, 0.95] gives an estimate eps_i = v (1/t - c)
    (resp. sqrt(v) (1/sqrt(t) - sqrt(c))); the estimate is their median. Of the four models the
    one whose prediction of every channel's t is closest is kept, if it is within FIT_TOLERANCE
    (a wrong correction is off by 1/(n - 1) = 33% at large v, a wrong placement by more near
    v = eps). The uncertainty is the larger of the estimates' spread and the rounding bound
    (c v + eps) 2 SAFETY (n + 8) u of the compute precision. When no channel is informative
    (eps far below the smallest v the precision allows, 4 times its smallest normal number),
    the smallest v gives the estimate and its rounding bound the uncertainty; models that fit
    as well then leave what they differ in null (float16's eps 1e-5 cannot tell where eps is
    added). The reported eps is the decimal with the fewest digits within the uncertainty of
    the estimate (evidence.eps.estimate keeps the estimate). The same probe with a second eps
    (100 times the first) says where eps comes from: "argument" (it follows the eps passed,
    within the uncertainty and the rounding of eps to float32 or the compute precision), "own"
    (the same eps whatever is passed), "fixed" (the target refuses another eps: a user target's
    --eps) or "other" (it changes with the eps passed, but is not it).
variance_algorithm
    Channels x = M + z, |M|/std = 1 ... 1e8 (at lower precision while M u <= std/100, and while
    a sum of squares stays finite), 16 values each, rounded to the compute precision. The
    relative error of the variance of y, |t / t_exact - 1| with t_exact from the fitted eps and
    correction (blind to the common shift that the mean's rounding gives every algorithm), is
    compared with the tolerance `properties.batchnorm_props.moment_bounds` gives the variance
    of y for each accuracy class of `properties.tolerances` (TWO_PASS: ((n + 1) u kappa)**2 and
    n u; STREAMING, any backward-stable algorithm -- Welford, pairwise, Chan's merges:
    K u kappa, K = 2 n + 8), plus what the eps uncertainty moves t. The class is the tightest
    whose bound holds at every |mean|/std probed. "two-pass" needs a level where u kappa, a
    streaming algorithm's error, exceeds the two-pass bound (float16 has none: null). Beyond
    the streaming bound it is "one-pass" when the errors stay within the one-pass growth
    (n + 2) u kappa**2 wherever that has not swamped the variance (the rule of
    `properties.accuracy_props.classify_variance`), else "beyond streaming". These are the
    classes `bnref check` reports; identify measures its own sweep because it judges it
    against the eps, correction and compute precision it measured (a target with an eps of
    its own, or computing in float32 though it declares float64, keeps its class).
running_variance, momentum, momentum_weights
    One update with the momentum passed on a batch of two channels, 4 values each: channel 0
    has running statistics 0 and batch mean 1, variance 1/4; channel 1 running statistics 1 and a
    constant batch (mean and variance 0). In the exponential form
    new = (1 - w) running + w batch (w: the weight of the NEW batch statistic), channel 0's new
    mean is w, channel 1's 1 - w, channel 1's new variance 1 - w and channel 0's w c / 4, with
    c = 1 (biased) or n/(n - 1) (unbiased). momentum is w; a second update with another momentum
    says which way the argument weights: "new" (w = momentum, PyTorch), "old"
    (w = 1 - momentum, Keras, ONNX, Flax), "own" (w whatever momentum is passed). A target
    without a running update (TargetLacks) gives null.
convention
    The named convention (`reference.conventions.CONVENTIONS`) whose axis, eps (within the
    uncertainty and eps's rounding to float32, as ONNX stores it), running variance, default
    weight of the batch statistic and momentum direction all match, with every convention
    normalizing by the biased variance and adding eps to it; measurements that are null are
    not compared. Otherwise null, and `differences` lists, in sentences, what differs from the
    nearest convention (fewest differences; the declared one first among equals).

Nothing here depends on the target being correct: a target that is no batch norm gets
`fitted` false and "could not fit any convention" rather than invented values.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NoReturn

import numpy as np

from properties.adapter import Array, Implementation
from properties.batchnorm_props import moment_bounds
from properties.framework import Unsupported
from properties.tolerances import (
    PRECISIONS,
    SAFETY,
    STREAMING,
    TWO_PASS,
    Precision,
    exact_stats,
)
from reference.conventions import CONVENTIONS, Convention, get_convention

SCHEMA = "bnref-identify"
SCHEMA_VERSION = 1
# A model of y fits when it predicts every channel's variance to within 2%: float16 rounds
# those to ~10 u = 0.5%, while a wrong variance correction is off by 1/(n - 1) = 33% (n = 4)
# and a wrong eps placement by more than 10% near v = eps. bfloat16 (u = 2**-8) rounds them to
# ~4%: there the tolerance is 40 u (16%), the same margin over rounding, still half of the 33%
# of a wrong correction (an eps placement it cannot tell stays open: `fit_eps`'s rivals).
FIT_TOLERANCE = 0.02
# Affine-fit residual, mean and variance window of a slice of y along the channel axis: 1%, or
# 8 u where that is more (bfloat16: a correct slice's residual is ~3 u, x and y being rounded);
# a wrong axis misfits by more than 1.
AXIS_TOLERANCE = 0.01


def fit_tolerance(u: float) -> float:
    """FIT_TOLERANCE, or 40 u in a precision too coarse for it (see there)."""
    return max(FIT_TOLERANCE, 40 * u)


def axis_tolerance(u: float) -> float:
    """AXIS_TOLERANCE, or 8 u in a precision too coarse for it (see there)."""
    return max(AXIS_TOLERANCE, 8 * u)


# A channel gives an eps estimate when eps makes 5% to 95% of c v + eps: its estimate's
# relative error is then at most 20 times that of the channel's variance.
INFORMATIVE_SHARE = (0.05, 0.95)
EPS_FACTOR = 100.0  # the second eps passed, as a multiple of the first
TILED_CHANNELS = 2  # channels per call in a tiled layout (`Prober.forward`)
SWEEP_VALUES = 16  # values per channel of the variance-accuracy sweep
SWEEP_CONDITIONS = tuple(10.0**j for j in range(9))  # |mean| / std: 1 ... 1e8
SIGNIFICAND_BITS = {53: "float64", 24: "float32", 11: "float16", 8: "bfloat16"}
FLOAT32_U = 2.0**-24  # eps stored as a float32 attribute (ONNX) is off by this, relatively
_SEED = 20240917  # the probes are fixed: the same target gives the same report


class ProbeFailed(Exception):  # noqa: N818 -- a probe's outcome, reported, not a bug
    """A probe could not be fitted or the target raised on it; the message says which."""


def _call(what: str, fn: Callable[[], Any]) -> Any:
    """fn(), or ProbeFailed naming `what` and what the target raised."""
    try:
        return fn()
    except Exception as exc:  # the target's exception is the finding, whatever it is
        raise ProbeFailed(f"{what} raised {type(exc).__name__}: {exc}") from exc


def _shortest(value: float, uncertainty: float) -> float:
    """The decimal with the fewest significant digits within `uncertainty` of `value`."""
    for digits in range(1, 18):
        candidate = float(f"{value:.{digits - 1}e}")
        if abs(candidate - value) <= uncertainty:
            return candidate
    return value


def _fmt(value: float) -> str:
    return f"{value:.3g}"


# --- layouts ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """Where a probe puts its channels: an ndim-dimensional x whose axis `channel` indexes them,
    passed to the target with axis=`passed`. When the two differ (a target that normalizes along
    another axis than the one it is given), axis `passed` has as many entries as there are
    channels, each channel's values repeated along it, so that gamma and beta fit both."""

    ndim: int
    channel: int
    passed: int

    def place(self, rows: Array) -> Array:
        """x in this layout holding the channels `rows` (C, n)."""
        c, n = rows.shape
        pad = (1,) * (self.ndim - 2 - (self.channel != self.passed))
        if self.channel == self.passed:
            return np.ascontiguousarray(np.moveaxis(rows.reshape(c, n, *pad), 0, self.channel))
        tiled = np.broadcast_to(rows[:, None, :], (c, c, n)).reshape(c, c, n, *pad)
        return np.ascontiguousarray(np.moveaxis(tiled, [0, 1], [self.channel, self.passed]))

    def take(self, y: Array) -> Array:
        """The channels (C, n_eff) of an array y in this layout (inverse of `place`)."""
        if self.channel == self.passed:
            return np.moveaxis(y, self.channel, 0).reshape(y.shape[self.channel], -1)
        moved = np.moveaxis(y, [self.channel, self.passed], [0, 1])
        return moved.reshape(y.shape[self.channel], -1)


def _resolve(axis: int, ndim: int) -> int | None:
    return axis % ndim if -ndim <= axis < ndim else None


def _layouts(axis: int, passed: int) -> list[Layout]:
    """The layouts for channel axis `axis` and the axis passed, fewest dimensions first."""
    out = []
    for ndim in (2, 3, 4, 5):
        k, a = _resolve(axis, ndim), _resolve(passed, ndim)
        if k is not None and a is not None and (k == a or ndim >= 3):
            out.append(Layout(ndim, k, a))
    return out


class Prober:
    """Calls of the target in one layout, with gamma = 1, beta = 0."""

    def __init__(self, impl: Implementation, layout: Layout) -> None:
        self.impl = impl
        self.layout = layout

    def forward(self, rows: Array, eps: float, what: str) -> tuple[Array, Array]:
        """(the channels of x as the target saw them, the channels of y), each (C, n_eff).

        A tiled layout repeats each channel's n values once per channel, so it sends the rows
        TILED_CHANNELS at a time (the last group padded with its first row): n_eff stays
        TILED_CHANNELS n, small enough for n/(n - 1) to show.
        """
        if self.layout.channel == self.layout.passed or rows.shape[0] <= TILED_CHANNELS:
            return self._forward(rows, eps, what)
        xs, ys = [], []
        for start in range(0, rows.shape[0], TILED_CHANNELS):
            group = rows[start : start + TILED_CHANNELS]
            size = group.shape[0]
            padded = np.concatenate([group, np.repeat(group[:1], TILED_CHANNELS - size, axis=0)])
            x, y = self._forward(padded, eps, what)
            xs.append(x[:size])
            ys.append(y[:size])
        return np.concatenate(xs), np.concatenate(ys)

    def _forward(self, rows: Array, eps: float, what: str) -> tuple[Array, Array]:
        x = self.layout.place(rows)
        c = x.shape[self.layout.passed]
        out = _call(
            what,
            lambda: self.impl.forward(x, np.ones(c), np.zeros(c), eps=eps, axis=self.layout.passed),
        )
        y = np.asarray(out.y, dtype=np.float64)
        if y.shape != x.shape:
            raise ProbeFailed(f"{what}: y has shape {y.shape}, x has {x.shape}")
        return self.layout.take(x), self.layout.take(y)


def _variance(rows: Array) -> Array:
    """Biased variance of each row with exactly rounded sums (inf/nan rows give nan)."""
    out = []
    for r in rows:
        if not np.all(np.isfinite(r)):
            out.append(math.nan)
            continue
        m = math.fsum(r) / r.size
        out.append(math.fsum((r - m) ** 2) / r.size - (math.fsum(r - m) / r.size) ** 2)
    return np.array(out)


# --- axis ---------------------------------------------------------------------------------------


def _slice_fits(xs: Array, ys: Array) -> float:
    """How far one slice of y is from a normalization of x: the worst of the affine-fit
    residual, |mean| and the distance of the variance from [1/2, 1], relative to std(y)."""
    if not np.all(np.isfinite(ys)):
        return math.inf
    sy = float(np.std(ys))
    if sy == 0.0:
        return math.inf
    design = np.stack([xs - xs.mean(), np.ones_like(xs)], axis=1)
    coef, *_ = np.linalg.lstsq(design, ys, rcond=None)
    if coef[0] <= 0:
        return math.inf
    residual = float(np.max(np.abs(design @ coef - ys))) / sy
    var = sy**2
    window = max(0.5 - var, var - 1.0, 0.0)
    return max(residual, abs(float(np.mean(ys))) / sy, window)


def _axis_probe(
    impl: Implementation, ndim: int, passed: int, eps: float, u: float
) -> tuple[int | None, list[float]]:
    """(the axis of an ndim-dimensional probe along which y is normalized, or None; the misfit
    of each axis)."""
    rng = np.random.default_rng(_SEED + ndim)
    side = 6 if ndim <= 3 else 4
    shape = (side,) * ndim
    x = rng.standard_normal(shape)
    for j in range(ndim):
        offsets = rng.uniform(-4.0, 4.0, side).reshape([side if i == j else 1 for i in range(ndim)])
        x = x + offsets
    a = _resolve(passed, ndim)
    if a is None:
        raise ProbeFailed(f"the declared axis {passed} does not exist in {ndim} dimensions")
    out = _call(
        f"forward on a {ndim}-dimensional probe",
        lambda: impl.forward(x, np.ones(side), np.zeros(side), eps=eps, axis=a),
    )
    y = np.asarray(out.y, dtype=np.float64)
    if y.shape != x.shape:
        raise ProbeFailed(f"forward returned y of shape {y.shape} for x of shape {x.shape}")
    misfits = []
    for k in range(ndim):
        xs, ys = np.moveaxis(x, k, 0).reshape(side, -1), np.moveaxis(y, k, 0).reshape(side, -1)
        misfits.append(max(_slice_fits(xr, yr) for xr, yr in zip(xs, ys, strict=True)))
    fitting = [k for k, m in enumerate(misfits) if m <= axis_tolerance(u)]
    return (fitting[0] if len(fitting) == 1 else None), misfits


@dataclass(frozen=True)
class AxisResult:
    """The channel axis found (None: no axis fits), and the per-rank misfits."""

    axis: int | None
    evidence: dict[str, Any]


def measure_axis(impl: Implementation, passed: int, eps: float, u: float) -> AxisResult:
    """The channel axis: the one along which y is normalized, at every rank probed (`u`: the
    unit roundoff of the dtype the target is given)."""
    found: dict[int, int | None] = {}
    evidence: dict[str, Any] = {"axis_passed": passed, "misfit_per_axis": {}, "failed": {}}
    for ndims in ((3, 4), (2, 5)):
        for ndim in ndims:
            try:
                k, misfits = _axis_probe(impl, ndim, passed, eps, u)
            except ProbeFailed as exc:
                evidence["failed"][str(ndim)] = str(exc)
                continue
            found[ndim] = k
            evidence["misfit_per_axis"][str(ndim)] = [_round_misfit(m) for m in misfits]
        if found:
            break
    evidence["found"] = {str(n): k for n, k in found.items()}
    if not found or any(k is None for k in found.values()):
        return AxisResult(None, evidence)
    front = set(found.values())
    back = {k - n for n, k in found.items() if k is not None}
    candidates = []
    if len(front) == 1:
        candidates.append(next(iter(front)))
    if len(back) == 1:
        candidates.append(next(iter(back)))
    if not candidates:
        return AxisResult(None, evidence)
    # Both forms hold at a single rank: the declared axis's form (the sign of `passed`).
    chosen = candidates[0] if len(candidates) == 1 or passed >= 0 else candidates[1]
    return AxisResult(chosen, evidence)


def _round_misfit(value: float) -> float | None:
    return None if not math.isfinite(value) else float(f"{value:.3g}")


# --- compute precision ------------------------------------------------------------------------


@dataclass(frozen=True)
class DtypeResult:
    """The significand bits the target computes with, and their dtype's name."""

    bits: int | None
    name: str | None
    evidence: dict[str, Any]


LADDER = tuple(range(1, 53))


def measure_compute_dtype(prober: Prober, eps: float) -> DtypeResult:
    """The significand bits p of the precision y is computed in: y resolves [1, 1 + 2**-k]
    for every k < p."""
    rows = np.array([[1.0, 1.0 + 2.0**-k] for k in LADDER])
    _, y = prober.forward(rows, eps, "forward on the compute-precision probe")
    # each row holds the pair (repeated in a tiled layout): 1 at even places, 1 + 2**-k at odd
    resolved = [bool(np.all(np.isfinite(r)) and r[0::2].max() < r[1::2].min()) for r in y]
    bits = 0
    for k, ok in zip(LADDER, resolved, strict=True):
        if not ok:
            break
        bits = k + 1
    evidence = {"largest_k_resolved": bits - 1 if bits else None}
    if bits == 0:
        return DtypeResult(None, None, {**evidence, "reason": "y did not resolve 1 from 1.5"})
    name = SIGNIFICAND_BITS.get(bits, f"{bits}-bit significand")
    return DtypeResult(bits, name, evidence)


def _round_to_bits(values: Array, bits: int) -> Array:
    """values rounded to a `bits`-bit significand (round half to even), exponent unbounded."""
    mantissa, exponent = np.frexp(values)
    out: Array = np.ldexp(np.round(mantissa * 2.0**bits) / 2.0**bits, exponent)
    return out


# --- eps and the normalization variance -------------------------------------------------------


@dataclass(frozen=True)
class EpsFit:
    """The fitted model of the variance of y: eps (and its uncertainty), the variance
    correction, where eps is added, the worst relative misfit, the channels that gave eps."""

    eps: float
    uncertainty: float
    correction: str | None  # "biased" | "unbiased"; None: both fit (eps below resolution)
    placement: str | None  # "variance" | "standard deviation"; None: both fit
    misfit: float
    informative: int


def _predict(v: Array, c: float, eps: float, placement: str) -> Array:
    if placement == "variance":
        out: Array = v / (c * v + eps)
    else:
        out = v / (np.sqrt(c * v) + eps) ** 2
    return out


def _eps_estimates(v: Array, t: Array, c: float, placement: str) -> tuple[Array, Array]:
    """Per channel: the eps estimate and the share eps takes of the denominator."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if placement == "variance":
            estimate = v * (1.0 / t - c)
            share = 1.0 - c * t
        else:
            estimate = np.sqrt(v) * (1.0 / np.sqrt(t) - math.sqrt(c))
            share = 1.0 - np.sqrt(c * t)
    return estimate, share


def fit_eps(v: Array, t: Array, n: int, u: float) -> tuple[EpsFit | None, list[dict[str, Any]]]:
    """The model (correction, placement, eps) that predicts the variances t of y for the
    input variances v best, or None if none is within `fit_tolerance(u)`; and every model's fit."""
    tried: list[dict[str, Any]] = []
    fits: list[EpsFit] = []
    finite = np.isfinite(t) & (t > 0)
    if not np.all(finite):
        return None, [{"reason": "y had a channel with zero or non-finite variance"}]
    for correction, c in (("biased", 1.0), ("unbiased", n / (n - 1))):
        for placement in ("variance", "standard deviation"):
            estimate, share = _eps_estimates(v, t, c, placement)
            lo, hi = INFORMATIVE_SHARE
            use = (share >= lo) & (share <= hi)
            if not np.any(use):  # eps below the grid: the smallest v bounds it best
                use = v == np.min(v)
            eps = max(float(np.median(estimate[use])), 0.0)
            predicted = _predict(v, c, eps, placement)
            misfit = float(np.max(np.abs(t / predicted - 1.0)))
            # rounding of the channel's variance (relative, compute precision) seen in eps
            denominator = c * v + eps if placement == "variance" else v + eps * np.sqrt(v)
            rounding = float(np.max(denominator[use] * 2 * SAFETY * (n + 8) * u))
            spread = float(np.max(np.abs(estimate[use] - eps)))
            fit = EpsFit(eps, max(spread, rounding), correction, placement, misfit, int(use.sum()))
            tried.append(
                {
                    "normalization_variance": correction,
                    "eps_placement": placement,
                    "eps": eps,
                    "misfit": _round_misfit(misfit),
                }
            )
            fits.append(fit)
    best = min(fits, key=lambda f: f.misfit)
    tolerance = fit_tolerance(u)
    if best.misfit > tolerance:
        return None, tried
    # Models that fit as well (eps below what the grid resolves) leave their differences open.
    rivals = [f for f in fits if f.misfit <= tolerance and f is not best]
    spread = max([abs(f.eps - best.eps) + f.uncertainty for f in rivals], default=0.0)
    return (
        EpsFit(
            best.eps,
            max(best.uncertainty, spread),
            None if any(f.correction != best.correction for f in rivals) else best.correction,
            None if any(f.placement != best.placement for f in rivals) else best.placement,
            best.misfit,
            best.informative,
        ),
        tried,
    )


def _eps_grid(eps: float, u: float, tiny: float, top: float) -> Array:
    """Input variances around `eps` and over 1e-12 ... 1e2, each d**2 for a d exact in a
    significand of the compute precision, none below 4 tiny (a normal number) or above `top`."""
    grid = {eps * 10.0 ** (j / 2) for j in range(-6, 7)} | {10.0**k for k in range(-12, 3)}
    bits = max(2, round(-math.log2(u)))
    d = _round_to_bits(np.sqrt(np.array(sorted(grid))), min(bits, 26))
    v = d**2
    keep = (v >= max(1e-12, 4 * tiny)) & (v <= top) & (v > 0)
    return np.unique(d[keep])


@dataclass(frozen=True)
class EpsResult:
    """The fit at the eps passed, where eps comes from, and the fit at the second eps."""

    fit: EpsFit | None
    source: str | None
    passed: float
    second: EpsFit | None
    evidence: dict[str, Any]


def _eps_probe(
    prober: Prober, eps: float, u: float, tiny: float, top: float
) -> tuple[EpsFit | None, dict[str, Any]]:
    d = _eps_grid(eps, u, tiny, top)
    rows = np.stack([d, -d, d, -d], axis=1)
    xs, ys = prober.forward(rows, eps, f"forward on the eps probe (eps={eps:g})")
    v = _variance(xs)
    t = _variance(ys)
    fit, tried = fit_eps(v, t, xs.shape[1], u)
    return fit, {"eps_passed": eps, "channels": int(v.size), "models": tried}


def _eps_close(measured: EpsFit, target: float, u: float) -> bool:
    """measured eps is `target` within its uncertainty and target's rounding to float32 (an
    attribute stored so) or to the compute precision."""
    return abs(measured.eps - target) <= measured.uncertainty + target * max(FLOAT32_U, u)


def measure_eps(
    prober: Prober, eps: float, u: float, tiny: float, top: float, *, fixed: bool
) -> EpsResult:
    """eps and the normalization variance from the eps probe at the eps passed, and where eps
    comes from, from a second probe at EPS_FACTOR times it."""
    fit, evidence = _eps_probe(prober, eps, u, tiny, top)
    if fit is None:
        return EpsResult(None, None, eps, None, {"first": evidence})
    second_eps = eps * EPS_FACTOR
    try:
        second, second_evidence = _eps_probe(prober, second_eps, u, tiny, top)
    except ProbeFailed as exc:
        refused = "fixed" if fixed else None
        return EpsResult(fit, refused, eps, None, {"first": evidence, "second": str(exc)})
    everything: dict[str, Any] = {"first": evidence, "second": second_evidence}
    if second is None:
        return EpsResult(fit, "other", eps, None, everything)
    follows = _eps_close(fit, eps, u) and _eps_close(second, second_eps, u)
    same = abs(fit.eps - second.eps) <= fit.uncertainty + second.uncertainty
    source: str | None = "argument" if follows else "own" if same else "other"
    if follows and same:  # the uncertainty spans both eps passed: a coarse precision
        source = None
        everything["source_reason"] = (
            f"not determined: the eps measured ({fit.eps:.3g} and {second.eps:.3g}) are within "
            f"their uncertainty of both eps passed ({eps:.3g} and {second_eps:.3g})"
        )
    return EpsResult(fit, source, eps, second, everything)


# --- variance accuracy ------------------------------------------------------------------------


@dataclass(frozen=True)
class VarianceResult:
    """The accuracy class of the variance, and the sweep it was measured on."""

    algorithm: str | None
    evidence: dict[str, Any]


def _precision(bits: int, declared: Precision) -> Precision:
    """The `Precision` of a `bits`-bit significand: a known dtype's, else the declared dtype's
    range with u = 2**-bits."""
    for p in PRECISIONS.values():
        if p.u == 2.0**-bits:
            return p
    return replace(declared, dtype=f"{bits}-bit significand", u=2.0**-bits)


def measure_variance_algorithm(
    prober: Prober, eps: float, fit: EpsFit, p: Precision, top: float
) -> VarianceResult:
    """The accuracy class of the variance: the tightest bound that holds at every |mean|/std."""
    rng = np.random.default_rng(_SEED)
    bits = round(-math.log2(p.u))
    levels = [k for k in SWEEP_CONDITIONS if k * p.u <= 1e-2]
    # a one-pass sum of squares must not overflow: that would be overflow, not rounding
    levels = [k for k in levels if SWEEP_VALUES * (k + 4) ** 2 <= top]
    if not levels:
        return VarianceResult(None, {"reason": "no |mean|/std level fits this precision"})
    rows = []
    for k in levels:
        for sign in (1.0, -1.0, 1.0, -1.0):
            z = rng.standard_normal(SWEEP_VALUES)
            rows.append(_round_to_bits(sign * k + z, bits))
    xs, ys = prober.forward(np.array(rows), eps, "forward on the variance-accuracy sweep")
    n = xs.shape[1]
    c = n / (n - 1) if fit.correction == "unbiased" else 1.0
    v = _variance(xs)
    t = _variance(ys)
    exact = _predict(v, c, fit.eps, fit.placement or "variance")
    with np.errstate(invalid="ignore", divide="ignore"):
        error = np.abs(t / exact - 1.0)
    error = np.where(np.isfinite(error), error, math.inf)
    stats = exact_stats(xs, 0, fit.eps)
    ones, zeros = np.ones(v.size), np.zeros(v.size)
    # the measured eps's uncertainty moves t by at most unc / (c v + eps), relatively
    eps_part = fit.uncertainty / (c * v + fit.eps)
    bounds = {}
    for cls in (TWO_PASS, STREAMING):
        b = moment_bounds(stats, ones, zeros, fit.eps, p=p, accuracy=cls)
        bounds[cls] = b.var / b.want_var + eps_part  # relative, as `check_moments` bounds it
    u_kappa = p.u * stats.kappa
    table = []
    for i, k in enumerate(levels):
        part = slice(4 * i, 4 * i + 4)
        worst = float(np.max(error[part]))
        table.append(
            {
                "mean_over_std": k,
                "relative_error_of_var": worst,
                "in_units_of_u_kappa": worst / float(np.max(u_kappa[part])),
                "two_pass_bound": float(np.max(bounds[TWO_PASS][part])),
                "streaming_bound": float(np.max(bounds[STREAMING][part])),
            }
        )
    evidence = {"values_per_channel": n, "u": p.u, "sweep": table}
    if np.all(error <= bounds[TWO_PASS]):
        # A streaming algorithm errs by ~u kappa: only where that exceeds the two-pass bound
        # does staying within it say "two-pass" (not so in float16, where kappa stays small).
        if not np.any(u_kappa > bounds[TWO_PASS]):
            evidence["reason"] = (
                "within the two-pass bound, but at this precision a streaming algorithm would "
                "be too (u kappa stays below the two-pass bound at every |mean|/std probed)"
            )
            return VarianceResult(None, evidence)
        algorithm = "two-pass"
    elif np.all(error <= bounds[STREAMING]):
        algorithm = "streaming"
    else:
        # E[x^2] - E[x]^2 errs by up to (n + 2) u kappa**2 relatively, as long as that has not
        # swamped the variance (u kappa**2 n < 0.1): within it everywhere, beyond streaming
        # somewhere, it is one-pass (the rule of `accuracy_props.classify_variance`).
        unsaturated = u_kappa * stats.kappa * n < 0.1
        one_pass_bound = bounds[TWO_PASS] + SAFETY * (n + 2) * u_kappa * stats.kappa
        one_pass = bool(
            np.all(error[unsaturated] <= one_pass_bound[unsaturated])
            and np.any(error[unsaturated] > bounds[STREAMING][unsaturated])
        )
        algorithm = "one-pass" if one_pass else "beyond streaming"
    return VarianceResult(algorithm, evidence)


# --- running statistics -----------------------------------------------------------------------


@dataclass(frozen=True)
class RunningResult:
    """The running update: its variance correction, the batch statistic's weight (and its
    uncertainty), and which way the momentum argument weights."""

    variance: str | None
    weight: float | None  # of the new batch statistic
    uncertainty: float | None
    weights: str | None  # "new" | "old" | "own"
    evidence: dict[str, Any]


def _running_update(
    prober: Prober, momentum: float, eps: float
) -> tuple[float, float, float, float]:
    """(w from channel 0's mean, 1 - w from channel 1's, w c / 4 from channel 0's variance,
    1 - w from channel 1's) after one update with `momentum`: from the target's
    update_running_stats, or, for a target that has none, from one step of its whole layer
    (`layer_step`, given `eps`), whose new running statistics are the same update."""
    rows = np.array([[0.5, 1.5, 0.5, 1.5], [0.0, 0.0, 0.0, 0.0]])
    x = prober.layout.place(rows)
    rm, rv = np.array([0.0, 1.0]), np.array([0.0, 1.0])
    axis = prober.layout.passed
    method = "update_running_stats"
    try:
        out = prober.impl.update_running_stats(
            x, rm, rv, momentum=momentum, num_batches_tracked=None, axis=axis
        )
        stats = (out.mean, out.var)
    except Unsupported as exc:  # no update of its own: its layer's step, if it has one
        lacks = f"{method} (momentum={momentum:g}) raised {type(exc).__name__}: {exc}"
        step = getattr(prober.impl, "layer_step", None)
        if not callable(step):
            raise ProbeFailed(lacks) from exc
        method = "layer_step"
        try:
            _, *stats = step(x, rm, rv, momentum=momentum, eps=eps, axis=axis)
        except Unsupported as also:  # neither: the first says why
            raise ProbeFailed(f"{lacks}; {method} raised {type(also).__name__}: {also}") from also
        except Exception as raised:  # the target's exception is the finding, whatever it is
            raise ProbeFailed(
                f"{method} (momentum={momentum:g}) raised {type(raised).__name__}: {raised}"
            ) from raised
    except Exception as exc:  # the target's exception is the finding, whatever it is
        raise ProbeFailed(
            f"{method} (momentum={momentum:g}) raised {type(exc).__name__}: {exc}"
        ) from exc
    mean, var = (np.asarray(a, dtype=np.float64).ravel() for a in stats)
    if mean.shape != (2,) or var.shape != (2,):
        raise ProbeFailed(f"{method} returned statistics of shapes {mean.shape}, {var.shape}")
    return float(mean[0]), float(mean[1]), float(var[0]), float(var[1])


def measure_running(
    prober: Prober, momentum: float, u: float, eps: float, *, fixed: bool
) -> RunningResult:
    """The running update's weight of the batch statistic, its variance correction, and which
    way the momentum argument weights (`eps`: what a layer step is given)."""
    try:
        w, rest, var0, var1 = _running_update(prober, momentum, eps)
    except ProbeFailed as exc:
        return RunningResult(None, None, None, None, {"reason": str(exc)})
    n = prober.layout.take(prober.layout.place(np.zeros((2, 4)))).shape[1]
    tol = 4 * u + 1e-15
    evidence: dict[str, Any] = {
        "momentum_passed": momentum,
        "new_mean": [w, rest],
        "new_var": [var0, var1],
        "values_per_channel": n,
    }
    w_var = 1.0 - var1
    if not (abs(w + rest - 1.0) <= 2 * tol and abs(w_var - w) <= 2 * tol and 0 < w <= 1):
        evidence["reason"] = "the update is not new = (1 - w) running + w batch"
        return RunningResult(None, None, None, None, evidence)
    c = var0 / (0.25 * w)
    if abs(c - 1.0) <= fit_tolerance(u):
        variance: str | None = "biased"
    elif abs(c - n / (n - 1)) <= fit_tolerance(u):
        variance = "unbiased"
    else:
        variance = None
        evidence["reason"] = f"the running variance is {c:.4g} times the batch's biased one"
    evidence["variance_factor"] = c
    second = 0.25 if momentum != 0.25 else 0.375
    try:
        w2: float | None = _running_update(prober, second, eps)[0]
        evidence["second"] = {"momentum_passed": second, "weight": w2}
    except ProbeFailed as exc:
        evidence["second"] = str(exc)
        w2 = None
    weights = momentum_direction(momentum, w, second, w2, tol, fixed=fixed)
    return RunningResult(variance, w, tol, weights, evidence)


def _weight_close(measured: float, exact: float, momentum: float, tol: float) -> bool:
    """measured is the weight `exact` made of `momentum`, within tol and the rounding of the
    momentum to float32 (an attribute stored so, as ONNX does): FLOAT32_U momentum."""
    return abs(measured - exact) <= tol + FLOAT32_U * momentum


def momentum_direction(
    momentum: float, w: float, second: float, w2: float | None, tol: float, *, fixed: bool
) -> str | None:
    """Which way the momentum argument weights, from the batch statistic's weight w for
    `momentum` and w2 for `second` (None: the target refused a second momentum)."""
    new = _weight_close(w, momentum, momentum, tol)
    old = _weight_close(w, 1 - momentum, momentum, tol)
    if w2 is None:  # one momentum only: 0.5 weights both ways alike
        if new != old:
            return "new" if new else "old"
        return "own" if fixed and not new else None
    if new and _weight_close(w2, second, second, tol):
        return "new"
    if old and _weight_close(w2, 1 - second, second, tol):
        return "old"
    if abs(w - w2) <= 2 * tol:
        return "own"
    return None


# --- the fingerprint --------------------------------------------------------------------------


@dataclass(frozen=True)
class Fingerprint:
    """What `identify` measured; null (None) where a measurement could not be made or fitted.

    The first fields are the report's keys (`as_json`); `eps` and `momentum` are the decimals with
    the fewest digits within their uncertainty of the measured values (`evidence` keeps those).
    """

    target: str
    declared_convention: str
    declared_dtype: str
    fitted: bool
    axis: int | None
    eps: float | None
    eps_uncertainty: float | None
    eps_source: str | None  # "argument" | "own" | "fixed" | "other"
    eps_placement: str | None  # "variance" | "standard deviation"
    normalization_variance: str | None  # "biased" | "unbiased"
    running_variance: str | None
    momentum: float | None  # the weight of the new batch statistic
    momentum_uncertainty: float | None
    momentum_weights: str | None  # "new" | "old" | "own": what the momentum argument weights
    variance_algorithm: str | None  # "two-pass" | "streaming" | "one-pass"
    compute_dtype: str | None
    convention: str | None
    nearest_convention: str | None
    consistent_with: tuple[str, ...]
    differences: tuple[str, ...]
    notes: tuple[str, ...]
    evidence: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The report as strict JSON values (RFC 8259: no NaN or infinity, those become null)."""
        body = {name: getattr(self, name) for name in _FIELDS}
        body["consistent_with"] = list(self.consistent_with)
        body["differences"] = list(self.differences)
        body["notes"] = list(self.notes)
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **_finite(body)}


_FIELDS = (
    "target",
    "declared_convention",
    "declared_dtype",
    "fitted",
    "axis",
    "eps",
    "eps_uncertainty",
    "eps_source",
    "eps_placement",
    "normalization_variance",
    "running_variance",
    "momentum",
    "momentum_uncertainty",
    "momentum_weights",
    "variance_algorithm",
    "compute_dtype",
    "convention",
    "nearest_convention",
    "consistent_with",
    "differences",
    "notes",
    "evidence",
)


def _finite(value: Any) -> Any:
    """value with every non-finite float replaced by None, NumPy scalars by Python ones."""
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _batch_weight(conv: Convention) -> float:
    """The weight the convention's default momentum gives the new batch statistic."""
    return conv.weights(conv.momentum)[1]


def compare(fp: Fingerprint, conv: Convention, u: float) -> list[str]:
    """Sentences for what the measured `fp` does differently from `conv`; null measurements
    are not compared."""
    out = []
    name = conv.name
    if fp.axis is not None and fp.axis != conv.axis:
        out.append(f"its channel axis is {fp.axis}; {name}'s is {conv.axis}")
    if fp.eps_placement == "standard deviation":
        out.append(
            "it adds eps to the standard deviation, (x - mean) / (sqrt(var) + eps); every "
            "convention adds it to the variance, (x - mean) / sqrt(var + eps)"
        )
    if fp.normalization_variance == "unbiased":
        out.append(
            "it normalizes by the unbiased variance (n/(n-1) times the biased one); every "
            "convention normalizes by the biased variance"
        )
    if fp.eps is not None and fp.eps_uncertainty is not None:
        measured = EpsFit(fp.eps, fp.eps_uncertainty, "", "", 0.0, 0)
        if not _eps_close(measured, conv.eps, u):
            out.append(
                f"its eps is {fp.eps!r} (± {_fmt(fp.eps_uncertainty)}); {name}'s is {conv.eps:g}"
            )
    if fp.running_variance is not None:
        want = "unbiased" if conv.unbiased_var else "biased"
        if fp.running_variance != want:
            out.append(
                f"its running variance takes the {fp.running_variance} batch variance; "
                f"{name}'s takes the {want} one"
            )
    if fp.momentum is not None and fp.momentum_uncertainty is not None:
        weight = _batch_weight(conv)
        if not _weight_close(fp.momentum, weight, conv.momentum, fp.momentum_uncertainty + 4 * u):
            out.append(
                f"its running update gives the batch statistic weight {fp.momentum!r}; "
                f"{name}'s default (momentum {conv.momentum:g}) gives it {weight:g}"
            )
    if fp.momentum_weights is not None and fp.momentum_weights != conv.momentum_weights:
        what = {
            "new": "the batch statistic (new value)",
            "old": "the running (old) value",
            "own": "nothing: it ignores the momentum it is given",
        }
        out.append(
            f"its momentum argument weights {what[fp.momentum_weights]}; "
            f"{name}'s weights {what[conv.momentum_weights]}"
        )
    return out


def _not_fitted(
    impl: Implementation, reason: str, evidence: dict[str, Any], **measured: Any
) -> Fingerprint:
    values: dict[str, Any] = {
        "axis": None,
        "eps": None,
        "eps_uncertainty": None,
        "eps_source": None,
        "eps_placement": None,
        "normalization_variance": None,
        "running_variance": None,
        "momentum": None,
        "momentum_uncertainty": None,
        "momentum_weights": None,
        "variance_algorithm": None,
        "compute_dtype": None,
    }
    values.update(measured)
    return Fingerprint(
        target=impl.name,
        declared_convention=impl.convention,
        declared_dtype=impl.dtype,
        fitted=False,
        convention=None,
        nearest_convention=None,
        consistent_with=(),
        differences=(f"could not fit any convention: {reason}",),
        notes=(),
        evidence=evidence,
        **values,
    )


def identify(impl: Implementation) -> Fingerprint:
    """Measure the batch norm `impl` computes (module docstring: the probes and fits)."""
    declared = get_convention(impl.convention)
    fixed = dict(getattr(impl, "fixed_case_values", {}) or {})
    eps0 = float(fixed.get("eps", declared.eps))
    momentum0 = float(fixed.get("momentum", declared.momentum))
    precision = PRECISIONS.get(impl.dtype, PRECISIONS["float64"])
    evidence: dict[str, Any] = {"eps_passed": eps0, "momentum_passed": momentum0}

    axis_result = measure_axis(impl, declared.axis, eps0, precision.u)
    evidence["axis"] = axis_result.evidence
    if axis_result.axis is None:
        failed = axis_result.evidence.get("failed", {})
        if failed and not axis_result.evidence.get("found"):
            reason = "the target raised on every probe: " + "; ".join(failed.values())
        else:
            reason = (
                "no axis of its output is a batch normalization of x (along no axis is every "
                "slice of y an increasing affine function of x with mean 0 and variance "
                "at most 1)"
            )
        return _not_fitted(impl, reason, evidence)
    axis = axis_result.axis

    prober: Prober | None = None
    dtype_result: DtypeResult | None = None
    for layout in _layouts(axis, declared.axis):
        try:
            dtype_result = measure_compute_dtype(Prober(impl, layout), eps0)
        except ProbeFailed as exc:
            evidence.setdefault("layouts_refused", []).append(f"{layout}: {exc}")
            continue
        prober = Prober(impl, layout)
        break
    if prober is None or dtype_result is None:
        return _not_fitted(
            impl, "the target raised on every layout of the probes", evidence, axis=axis
        )
    evidence["layout"] = {
        "ndim": prober.layout.ndim,
        "channel": prober.layout.channel,
        "passed": prober.layout.passed,
    }
    evidence["compute_dtype"] = dtype_result.evidence
    bits = dtype_result.bits or round(-math.log2(precision.u))
    compute = _precision(bits, precision)
    u = compute.u
    tiny = max(compute.tiny, precision.tiny)
    top = _largest(compute.dtype, precision.dtype) / 64  # sums of squares stay finite

    try:
        eps_result = measure_eps(prober, eps0, u, tiny, min(top, 1e2), fixed="eps" in fixed)
    except ProbeFailed as exc:
        return _not_fitted(impl, str(exc), evidence, axis=axis, compute_dtype=dtype_result.name)
    evidence["eps"] = {
        **eps_result.evidence,
        "estimate": None if eps_result.fit is None else eps_result.fit.eps,
        "source": eps_result.source,
    }
    fit = eps_result.fit
    if fit is None:
        return _not_fitted(
            impl,
            "the variance of y fits no form v / (c v + eps) or v / (sqrt(c v) + eps)**2 with "
            "c = 1 or n/(n-1) (models tried in evidence.eps)",
            evidence,
            axis=axis,
            compute_dtype=dtype_result.name,
        )

    try:
        variance = measure_variance_algorithm(prober, eps0, fit, compute, top)
    except ProbeFailed as exc:
        variance = VarianceResult(None, {"reason": str(exc)})
    evidence["variance_algorithm"] = variance.evidence

    running = measure_running(prober, momentum0, u, eps0, fixed="momentum" in fixed)
    evidence["running"] = running.evidence

    eps_value = _shortest(fit.eps, fit.uncertainty)
    momentum = (
        None if running.weight is None else _shortest(running.weight, running.uncertainty or 0.0)
    )
    measured = Fingerprint(
        target=impl.name,
        declared_convention=impl.convention,
        declared_dtype=impl.dtype,
        fitted=True,
        axis=axis,
        eps=eps_value,
        eps_uncertainty=fit.uncertainty,
        eps_source=eps_result.source,
        eps_placement=fit.placement,
        normalization_variance=fit.correction,
        running_variance=running.variance,
        momentum=momentum,
        momentum_uncertainty=running.uncertainty,
        momentum_weights=running.weights,
        variance_algorithm=variance.algorithm,
        compute_dtype=dtype_result.name,
        convention=None,
        nearest_convention=None,
        consistent_with=(),
        differences=(),
        notes=(),
        evidence=evidence,
    )
    return _matched(measured, fit, eps_result, u)


# The largest finite value of each dtype identify probes; bfloat16 has float32's exponent range
# and an 8-bit significand: (2 - 2**-7) 2**127 (np.finfo knows it only once ml_dtypes is loaded).
LARGEST = {
    "float64": float(np.finfo(np.float64).max),
    "float32": float(np.finfo(np.float32).max),
    "float16": float(np.finfo(np.float16).max),
    "bfloat16": (2.0 - 2.0**-7) * 2.0**127,
}


def _largest(*dtypes: str) -> float:
    """The largest finite value of the narrowest of `dtypes` that identify knows."""
    return min(LARGEST[d] for d in dtypes if d in LARGEST)


def _matched(fp: Fingerprint, fit: EpsFit, eps_result: EpsResult, u: float) -> Fingerprint:
    """fp with its convention, the nearest one's differences and the notes."""
    order = [fp.declared_convention, *(n for n in CONVENTIONS if n != fp.declared_convention)]
    found = {name: compare(fp, CONVENTIONS[name], u) for name in order}
    matches = tuple(name for name in order if not found[name])
    nearest = min(order, key=lambda name: len(found[name]))
    notes = []
    if matches and matches[0] != fp.declared_convention:
        notes.append(
            f"it declares convention {fp.declared_convention}, but what it does matches "
            f"{matches[0]}"
        )
    if fp.compute_dtype is not None and fp.compute_dtype != fp.declared_dtype:
        notes.append(f"it computes in {fp.compute_dtype}, though it declares {fp.declared_dtype}")
    passed = eps_result.passed
    if eps_result.source == "own":
        notes.append(f"it uses eps {fp.eps!r} whatever eps it is given")
    elif eps_result.source == "other" and eps_result.second is not None:
        notes.append(
            f"its eps changes with the eps it is given but is not it: given {passed:g} it uses "
            f"{fit.eps:g}, given {passed * EPS_FACTOR:g} it uses {eps_result.second.eps:g}"
        )
    elif eps_result.source == "fixed" and not _eps_close(fit, passed, u):
        notes.append(f"its eps was fixed at {passed:g} (--eps) but it uses {fp.eps!r}")
    rounded = float(np.float32(passed))
    if rounded != passed and abs(fit.eps - rounded) <= fit.uncertainty < abs(fit.eps - passed):
        notes.append(f"its eps is {passed:g} rounded to float32 ({rounded!r})")
    running = fp.evidence.get("running", {})
    if fp.momentum_weights in ("new", "old") and fp.momentum_uncertainty is not None:
        m = float(running["momentum_passed"])
        w = float(running["new_mean"][0])
        m32 = float(np.float32(m))
        exact, rounded = (m, m32) if fp.momentum_weights == "new" else (1 - m, 1 - m32)
        if abs(w - rounded) <= fp.momentum_uncertainty < abs(w - exact):
            notes.append(f"its momentum is {m:g} rounded to float32 ({m32!r})")
    variance = fp.evidence.get("variance_algorithm", {})
    if fp.variance_algorithm is None and "reason" in variance:
        notes.append(f"variance algorithm not determined: {variance['reason']}")
    if fp.variance_algorithm == "beyond streaming":
        notes.append(
            "its variance is less accurate than any backward-stable algorithm allows, though its "
            "error does not grow like the one-pass E[x^2] - E[x]^2 either"
        )
    if fp.variance_algorithm == "one-pass":
        notes.append(
            "its variance loses accuracy like the one-pass E[x^2] - E[x]^2 (beyond the bound of "
            "any backward-stable algorithm): channels with a large |mean|/std are normalized "
            "wrongly"
        )
    if fp.running_variance is None and fp.momentum is None:
        notes.append(f"no running update was measured: {running.get('reason', '')}")
    return Fingerprint(
        **{
            **{name: getattr(fp, name) for name in _FIELDS},
            "convention": matches[0] if matches else None,
            "nearest_convention": nearest,
            "consistent_with": matches,
            "differences": () if matches else tuple(found[nearest]),
            "notes": tuple(notes),
        }
    )


# --- the command ------------------------------------------------------------------------------

USER_OPTIONS = ("backward", "inference", "running_stats", "layer", "eps", "momentum")
EXIT_FITTED, EXIT_NOT_FITTED, EXIT_USAGE = 0, 1, 2
SOURCES = {
    "argument": "follows the eps it is given",
    "own": "its own: the same whatever eps it is given",
    "fixed": "fixed: it refuses any other eps",
    "other": "changes with the eps it is given, but is not it",
}
DIRECTIONS = {
    "new": "the momentum passed is this weight",
    "old": "the momentum passed weights the old running value: this is 1 - momentum",
    "own": "the same whatever momentum is passed",
}


def _usage(message: str) -> NoReturn:
    print(f"bnref identify: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


def _parser() -> argparse.ArgumentParser:
    from bnref.isolation import DEFAULT_TIMEOUT  # noqa: PLC0415 -- keeps `import bnref` light
    from bnref.targets import DTYPES, TARGETS  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="bnref identify",
        description="Measure which batch norm TARGET computes, from its outputs alone: channel "
        "axis, eps, normalization and running variance, momentum, variance algorithm, compute "
        "precision, and the named convention it matches.",
        epilog="Method (docs/audit.md, 'Which batch norm is it'): the adapter protocol makes the "
        "axis, eps and momentum arguments; identify passes the defaults of the convention the "
        "target declares (a user target's --eps/--momentum when fixed), measures what the target "
        "does with them, and passes other values to see whether it follows them or has its own "
        "(a target that ignores the eps it is given reveals its own). The target runs in a worker "
        "process of its own: an exit, a crash or a call longer than --timeout fails the probe it "
        "happened in. Exit status: 0 when the "
        "outputs fit a batch norm (whether or not a named convention matches), 1 when they fit "
        "none, 2 for a usage error.",
    )
    parser.add_argument("target", help=f"one of {', '.join(TARGETS)}, or module:function")
    parser.add_argument("--json", metavar="PATH", help="also write the report as strict JSON")
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"the longest a call of the target may take (default {DEFAULT_TIMEOUT:g}; 0: no "
        "limit); a call stopped so fails its probe",
    )
    parser.add_argument(
        "--dtype", choices=DTYPES, default="float64", help="the dtype the target is given"
    )
    parser.add_argument(
        "--convention",
        choices=sorted(CONVENTIONS),
        default="pytorch",
        help="module:function target: the convention it declares (its layout and momentum)",
    )
    parser.add_argument("--backward", metavar="MOD:FN", help="module:function target's backward")
    parser.add_argument("--inference", metavar="MOD:FN", help="module:function target's inference")
    parser.add_argument(
        "--running-stats",
        metavar="MOD:FN",
        help="module:function target's r(running_mean, running_var, batch_mean, batch_var, n, "
        "momentum) -> (new_mean, new_var)",
    )
    parser.add_argument(
        "--layer",
        metavar="MOD:FN",
        help="module:function target's layer(x, running_mean, running_var, momentum, eps) -> "
        "(y, new_running_mean, new_running_var), one training step of the whole layer: its "
        "running statistics are measured from it when --running-stats is not given",
    )
    parser.add_argument("--eps", type=float, help="module:function target: its fixed eps")
    parser.add_argument("--momentum", type=float, help="module:function target: its fixed momentum")
    return parser


def target_options(args: argparse.Namespace) -> dict[str, Any]:
    """The options of the target's worker (`bnref.isolation.TargetSpec`), after the checks that
    need no import: a usage error (exit 2) for an unknown name, user options without a user
    target, the reference or `fast` below float64."""
    from bnref.targets import TARGETS  # noqa: PLC0415 -- keeps `import bnref` light

    target = args.target
    if ":" in target:
        return {"convention": args.convention, **{k: getattr(args, k) for k in USER_OPTIONS}}
    given = [f"--{k.replace('_', '-')}" for k in USER_OPTIONS if getattr(args, k) is not None]
    if given:
        _usage(f"{', '.join(given)} need a TARGET module:function, got {target!r}")
    if target not in TARGETS:
        _usage(f"TARGET must be one of {', '.join(TARGETS)} or module:function; got {target!r}")
    if target in ("reference", "fast") and args.dtype != "float64":
        _usage(f"--dtype {args.dtype}: {target} computes in float64 only")
    return {}


def _value(value: object) -> str:
    return "null" if value is None else str(value)


def format_report(fp: Fingerprint) -> str:
    """The report as text: one line per measurement, then the convention and differences."""
    ev = fp.evidence
    lines = [
        f"bnref identify {fp.target} (declares convention {fp.declared_convention}, dtype "
        f"{fp.declared_dtype}; passed eps {ev['eps_passed']:g}, momentum "
        f"{ev['momentum_passed']:g})"
    ]
    eps = _value(fp.eps)
    if fp.eps is not None and fp.eps_uncertainty is not None:
        eps = f"{fp.eps!r} ± {_fmt(fp.eps_uncertainty)}"
        detail = [SOURCES[fp.eps_source]] if fp.eps_source else []
        if fp.eps_placement:
            detail.append(f"added to the {fp.eps_placement}")
        eps += f" ({'; '.join(detail)})" if detail else ""
    momentum = _value(fp.momentum)
    if fp.momentum is not None and fp.momentum_uncertainty is not None:
        momentum = f"{fp.momentum!r} ± {_fmt(fp.momentum_uncertainty)} (weight of the new batch "
        momentum += "statistic"
        momentum += f"; {DIRECTIONS[fp.momentum_weights]})" if fp.momentum_weights else ")"
    rows = [
        ("axis", _value(fp.axis)),
        ("eps", eps),
        ("normalization_variance", _value(fp.normalization_variance)),
        ("running_variance", _value(fp.running_variance)),
        ("momentum", momentum),
        ("variance_algorithm", _value(fp.variance_algorithm)),
        ("compute_dtype", _value(fp.compute_dtype)),
        ("convention", _value(fp.convention)),
    ]
    if fp.convention is None and fp.nearest_convention is not None:
        rows.append(("nearest convention", fp.nearest_convention))
    elif len(fp.consistent_with) > 1:
        rows.append(("also consistent with", ", ".join(fp.consistent_with[1:])))
    width = max(len(name) for name, _ in rows)
    lines += [f"  {name.ljust(width)}  {value}" for name, value in rows]
    lines.append(f"  {'differences'.ljust(width)}  none" if not fp.differences else "  differences")
    lines += [f"    - {d}" for d in fp.differences]
    if fp.notes:
        lines.append("  notes")
        lines += [f"    - {n}" for n in fp.notes]
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    """`bnref identify`; return the exit status (0 fitted, 1 fits no batch norm, 2 usage).

    The target runs in a worker process of its own (`bnref.isolation`, as for `bnref check`):
    an exit, a crash or a call longer than --timeout fails the probe it happened in, and the
    fingerprint says so instead of ending the command.
    """
    from bnref.isolation import TargetLoadError, open_target  # noqa: PLC0415

    args = _parser().parse_args(argv)
    if not (math.isfinite(args.timeout) and args.timeout >= 0):
        _usage(f"--timeout must be a number of seconds >= 0 (0: no limit); got {args.timeout!r}")
    options = target_options(args)
    report = None
    if args.json:
        try:
            report = open(args.json, "w", encoding="utf-8")  # noqa: SIM115 -- closed below
        except OSError as exc:
            _usage(f"--json {args.json!r} cannot be written: {exc.strerror or exc}")
    try:
        try:
            worker, (impl,) = open_target(
                args.target, [args.dtype], options, timeout=args.timeout or None
            )
        except TargetLoadError as exc:
            _usage(str(exc))
        try:
            fp = identify(impl)
        finally:
            worker.close()
        print(format_report(fp))
        if report is not None:
            json.dump(fp.as_json(), report, indent=2, allow_nan=False)
            report.write("\n")
    finally:
        if report is not None:
            report.close()
    return EXIT_FITTED if fp.fitted else EXIT_NOT_FITTED
