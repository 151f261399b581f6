"""Dropout: its backward against central differences, its statistics, its masks and p = 0;
and the broken dropouts each check catches.

Gradient: for a fixed mask dropout is linear in x, so T = 0 in the bound model of
tests/central_differences.py; the check's docstring derives E_L and A.

Statistics. Under the claim, each unit j is kept in each of N independent draws with
probability 1 - p, so the number of draws K_j that keep it is Binomial(N, 1 - p) exactly and
the sample mean of the inverted form's output is x_j K_j / (N (1 - p)). The acceptance region
is the central interval of K_j with tail probability ALPHA / (2 D) on each side (D units,
Bonferroni over the units), from scipy's binomial quantiles: a correct implementation fails one
example with probability at most ALPHA = 1e-9, i.e. at most 1e-6 over the 1000 examples of the
thorough profile. The example's seed is fixed, so a run is reproducible.

The masks and p = 0 are exact claims. The checks with a planted mistake below take the dropout
function they check (default: the reference's).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
import pytest
from central_differences import (
    SCALES,
    SEEDS,
    U,
    against_central_differences,
    arrays_code,
    element_atol,
    fsum,
    random_array,
)
from claims import assert_holds, exact, falsified
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from scipy import stats

from properties.adapter import Array
from properties.framework import Measurement
from reference import layers
from reference.gradcheck import default_step
from reference.layers import DropoutKind, dropout_backward, dropout_forward
from reference.layers.dropout import KINDS

ALPHA = 1e-9  # false-alarm probability of one dropout-statistics example (module docstring)
DRAWS = 2000  # draws per unit in the dropout statistics


@dataclass(frozen=True)
class DropoutCase:
    """x, p, the form, training or test mode, the mask's seed and an upstream gradient."""

    x: Array
    p: float
    kind: DropoutKind
    train: bool
    seed: int
    dy: Array

    def __repr__(self) -> str:
        return (
            f"DropoutCase({arrays_code([self.x])}, p={self.p!r}, kind={self.kind!r}, "
            f"train={self.train!r}, seed={self.seed!r}, dy={arrays_code([self.dy])})"
        )

    def forward(self, x: Array) -> Any:
        """dropout_forward with this case's settings and a fresh Generator of its seed."""
        return dropout_forward(
            x,
            self.p,
            kind=self.kind,
            train=self.train,
            rng=np.random.default_rng(self.seed),
        )


_P = st.one_of(st.just(0.0), st.just(0.5), st.floats(0.0, 0.95))


@st.composite
def dropout_cases(draw: st.DrawFn) -> DropoutCase:
    """Both forms, both modes, p in [0, 0.95], x of any sign and of scale 1e-3 .. 30."""
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 5)))
    seed = draw(SEEDS)
    rng = np.random.default_rng(seed + 1)
    return DropoutCase(
        random_array(rng, shape, draw(st.sampled_from(SCALES))),
        draw(_P),
        draw(st.sampled_from(KINDS)),
        draw(st.booleans()),
        seed,
        rng.standard_normal(shape),
    )


def check_dropout_gradient(case: DropoutCase) -> list[Measurement]:
    """`dropout_backward` against central differences of `dropout_forward` with the same mask
    (every evaluation redraws it from the same seed). Linear in x: T = 0. Each output is x
    times 0, 1 or the rounded 1 - p, possibly divided by it (2u), so E_L = 3u sum|dy y| + u|L|;
    A = 2u |g| (the same two roundings)."""
    y = case.forward(case.x)[0]
    e_l = 3 * U * fsum(np.abs(case.dy * y)) + U * abs(fsum(case.dy * y))
    grad = dropout_backward(case.dy, case.forward(case.x)[1]).dx
    steps = default_step(case.x)
    atol = element_atol(e_l, steps, 0.0, 2 * U * np.abs(grad), grad)

    def vjp(dy: Array, x: Array) -> tuple[Array]:
        return (dropout_backward(dy, case.forward(x)[1]).dx,)

    return against_central_differences(
        "dropout",
        lambda x: case.forward(x)[0],
        vjp,
        [case.x],
        upstream=case.dy,
        names=["dx"],
        steps=[steps],
        atols=[atol],
    )


@dataclass(frozen=True)
class DropoutStatCase:
    """D units x, p, the seed of the draws."""

    x: Array
    p: float
    seed: int

    def __repr__(self) -> str:
        return f"DropoutStatCase({arrays_code([self.x])}, p={self.p!r}, seed={self.seed!r})"


@st.composite
def dropout_stat_cases(draw: st.DrawFn) -> DropoutStatCase:
    """1-8 units of any sign (0 included), p in [0, 0.95]."""
    d = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(SEEDS))
    x = random_array(rng, (d,), draw(st.sampled_from(SCALES)))
    if draw(st.booleans()):
        x[0] = 0.0
    return DropoutStatCase(x, draw(_P), draw(SEEDS))


def binomial_interval(n: int, q: float, tail: float) -> tuple[int, int]:
    """(lo, hi) with P(K < lo) <= tail and P(K > hi) <= tail for K ~ Binomial(n, q): lo is the
    smallest k with P(K <= k) >= tail (`scipy.stats.binom.ppf`), hi the smallest k with
    P(K > k) <= tail (`binom.isf`), which is the largest k with P(K >= k) > tail. scipy takes
    the tails from Boost's regularized incomplete beta function; the tests below check both
    ends against 50-digit sums of the probabilities."""
    return int(stats.binom.ppf(tail, n, q)), int(stats.binom.isf(tail, n, q))


def _binomial_tolerance(case: DropoutStatCase, expected: Array) -> Array:
    """|mean - expected| allowed per unit (module docstring): |expected| times the largest
    deviation of K / (N (1 - p)) from 1 inside [lo, hi] = `binomial_interval(N, 1 - p,
    ALPHA / (2 D))`, plus the rounding of the outputs (2u) and of their fsum (u)."""
    n, keep = DRAWS, 1.0 - case.p
    lo, hi = binomial_interval(n, keep, ALPHA / (2 * case.x.size))
    spread = max(hi - n * keep, n * keep - lo) / (n * keep)
    tol: Array = np.abs(expected) * (spread + 3 * U)
    return tol


def _draw_means(
    case: DropoutStatCase, kind: DropoutKind, train: bool, forward: Callable[..., Any]
) -> Array:
    """The mean over DRAWS training outputs of each unit, every draw from the case's seed."""
    tiled = np.broadcast_to(case.x, (DRAWS, case.x.size))
    y, _ = forward(
        tiled,
        case.p,
        kind=kind,
        train=train,
        rng=np.random.default_rng(case.seed),
    )
    return np.array([math.fsum(col) / DRAWS for col in y.T.tolist()])


def _compare(quantity: str, got: Array, want: Array, tol: Array) -> Measurement:
    err = np.abs(got - want)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(tol > 0, err / tol, np.where(err == 0, 0.0, np.inf))
    i = int(np.argmax(ratio))
    return Measurement(f"{quantity} (unit {i})", float(err[i]), float(tol[i]))


def check_inverted_expectation(
    case: DropoutStatCase, forward: Callable[..., Any] = dropout_forward
) -> list[Measurement]:
    """Inverted dropout keeps the expectation: the mean of DRAWS training outputs of each unit
    is x within the binomial bound, and the test output is x exactly."""
    means = _draw_means(case, "inverted", True, forward)
    test = forward(case.x, case.p, kind="inverted", train=False)[0]
    return [
        _compare("mean of training outputs vs x", means, case.x, _binomial_tolerance(case, case.x)),
        _compare("test output vs x (exact)", test, case.x, np.zeros_like(case.x)),
    ]


def check_classic_expectation(case: DropoutStatCase) -> list[Measurement]:
    """Classic dropout's test output (1 - p) x equals the expectation of its training output:
    exactly (within the 2u of rounding 1 - p and the product) against (1 - p) x, and the mean
    of DRAWS training outputs within the binomial bound of the test output."""
    want = (1.0 - case.p) * case.x
    test = dropout_forward(case.x, case.p, kind="classic", train=False)[0]
    means = _draw_means(case, "classic", True, dropout_forward)
    return [
        _compare("test output vs (1 - p) x", test, want, 2 * U * np.abs(want)),
        _compare(
            "mean of training outputs vs test output",
            means,
            test,
            _binomial_tolerance(case, test) + 2 * U * np.abs(test),
        ),
    ]


def check_masks(
    case: DropoutCase, backward: Callable[..., Any] = dropout_backward
) -> list[Measurement]:
    """In training mode the backward pass uses the forward pass's mask: with x and dy nonzero
    everywhere, the kept units of the output, the cache's mask and the units with a nonzero dx
    are the same set; dx is dy (classic) or dy / (1 - p) (inverted) there, computed exactly as
    the forward pass scales x; the same seed gives the same mask; and backward is repeatable."""
    x = np.where(case.x == 0, 1.0, case.x)
    dy = np.where(case.dy == 0, 1.0, case.dy)
    y, cache = dropout_forward(
        x,
        case.p,
        kind=case.kind,
        train=True,
        rng=np.random.default_rng(case.seed),
    )
    mask = cache.mask
    if mask is None:
        return [exact("training mode caches a mask", False)]
    again = dropout_forward(
        x,
        case.p,
        kind=case.kind,
        train=True,
        rng=np.random.default_rng(case.seed),
    )[1].mask
    dx = backward(dy, cache).dx
    scaled = dy * mask if case.kind == "classic" else dy * mask / (1.0 - case.p)
    return [
        exact("kept units of y == cache mask", bool(np.array_equal(y != 0, mask))),
        exact("nonzero dx == cache mask", bool(np.array_equal(dx != 0, mask))),
        exact("dx == dy scaled on kept units", bool(np.array_equal(dx, scaled))),
        exact("same seed, same mask", again is not None and bool(np.array_equal(again, mask))),
        exact("backward is repeatable", bool(np.array_equal(backward(dy, cache).dx, dx))),
    ]


def check_p0_identity(case: DropoutCase) -> list[Measurement]:
    """p = 0 is the identity in both forms and both modes: y == x and dx == dy, bit for bit."""
    out = []
    for kind in KINDS:
        for train in (True, False):
            y, cache = dropout_forward(
                case.x,
                0.0,
                kind=kind,
                train=train,
                rng=np.random.default_rng(case.seed),
            )
            dx = dropout_backward(case.dy, cache).dx
            tag = f"{kind}, train={train}"
            out.append(exact(f"y == x ({tag})", bool(np.array_equal(y, case.x))))
            out.append(exact(f"dx == dy ({tag})", bool(np.array_equal(dx, case.dy))))
    return out


# --- the reference's dropout passes ---------------------------------------------------------


@given(case=dropout_cases())
def test_dropout_gradient(case: DropoutCase) -> None:
    """The dropout backward (forward's mask) equals central differences with that mask."""
    assert_holds(check_dropout_gradient(case))


@given(case=dropout_stat_cases())
def test_inverted_dropout_keeps_the_expectation(case: DropoutStatCase) -> None:
    """The mean of many inverted-dropout training outputs is x (binomial bound, false-alarm
    probability 1e-9), and the test output is x."""
    assert_holds(check_inverted_expectation(case))


@given(case=dropout_stat_cases())
def test_classic_dropouts_test_output_is_its_expectation(case: DropoutStatCase) -> None:
    """Classic dropout's test output (1 - p) x is the expectation of its training output."""
    assert_holds(check_classic_expectation(case))


@given(case=dropout_cases())
def test_backward_uses_the_forward_mask(case: DropoutCase) -> None:
    """The backward pass uses exactly the mask the forward pass drew."""
    assert_holds(check_masks(case))


@given(case=dropout_cases())
def test_p0_is_the_identity(case: DropoutCase) -> None:
    """Dropout with p = 0 is the identity, forward and backward, in both forms and modes."""
    assert_holds(check_p0_identity(case))


# --- the binomial interval -------------------------------------------------------------------


def test_binomial_interval_matches_exact_sums() -> None:
    n, q, tail = 30, 0.7, 0.01
    lo, hi = binomial_interval(n, q, tail)
    pmf = [math.comb(n, k) * q**k * (1 - q) ** (n - k) for k in range(n + 1)]
    assert math.fsum(pmf[:lo]) <= tail < math.fsum(pmf[: lo + 1])
    assert math.fsum(pmf[hi + 1 :]) <= tail < math.fsum(pmf[hi:])
    assert binomial_interval(n, 1.0, tail) == (n, n)
    assert binomial_interval(n, 0.0, tail) == (0, 0)


def _lgamma_interval(n: int, q: float, tail: float) -> tuple[int, int]:
    """The interval as exp(log-pmf) from math.lgamma, summed in float64: how it was computed
    before scipy's quantiles, kept to compare the two."""
    ks = np.arange(n + 1)
    log_pmf = (
        math.lgamma(n + 1)
        - np.array([math.lgamma(k + 1) + math.lgamma(n - k + 1) for k in range(n + 1)])
        + ks * math.log(q)
        + (n - ks) * math.log1p(-q)
    )
    pmf = np.exp(log_pmf)
    cdf = np.cumsum(pmf)
    sf = np.cumsum(pmf[::-1])[::-1]  # sf[k] = P(K >= k)
    return int(np.argmax(cdf > tail)), int(n - np.argmax(sf[::-1] > tail))


@pytest.mark.parametrize("p", [0.0, 1e-3, 0.05, 0.3, 0.5, 0.7, 0.95])
@pytest.mark.parametrize("units", [1, 8])
def test_binomial_interval_is_exact_at_the_dropout_statistics_sizes(p: float, units: int) -> None:
    """At N = DRAWS and the tails of 1 and 8 units, each end meets its definition against
    the probabilities summed in 50 digits (P(K < lo) <= tail < P(K <= lo), P(K > hi) <= tail <
    P(K >= hi)), and equals the former lgamma computation's."""
    n, q, tail = DRAWS, 1.0 - p, ALPHA / (2 * units)
    lo, hi = binomial_interval(n, q, tail)
    with mpmath.workdps(50):
        mq = mpmath.mpf(q)
        pmf = [mpmath.binomial(n, k) * mq**k * (1 - mq) ** (n - k) for k in range(n + 1)]
        below, upto = mpmath.fsum(pmf[:lo]), mpmath.fsum(pmf[: lo + 1])
        above, from_hi = mpmath.fsum(pmf[hi + 1 :]), mpmath.fsum(pmf[hi:])
        assert below <= tail < upto
        assert above <= tail < from_hi
    if q < 1.0:  # the lgamma form takes log1p(-q): defined below q = 1
        assert _lgamma_interval(n, q, tail) == (lo, hi)


# --- each check catches a broken dropout -----------------------------------------------------


def _no_shrink() -> settings:
    """The active profile's settings without the shrink phase: a minimal example is not the
    point."""
    return settings(phases=[Phase.explicit, Phase.reuse, Phase.generate])


def test_mask_check_catches_a_fresh_mask() -> None:
    def redraw(dout: Any, cache: Any) -> layers.DropoutGrads:
        if cache.mask is None:
            return dropout_backward(dout, cache)
        mask = np.random.default_rng(12345).random(cache.shape) >= cache.p
        return dropout_backward(dout, cache._replace(mask=mask))

    assert falsified(
        lambda case: assert_holds(check_masks(case, redraw)), dropout_cases(), _no_shrink()
    )


def test_expectation_check_catches_an_unscaled_inverted_dropout() -> None:
    """Inverted dropout that forgets the 1/(1-p) is classic dropout: its mean is (1-p) x."""

    def unscaled(x: Any, p: float, **kwargs: Any) -> tuple[Array, layers.DropoutCache]:
        kwargs["kind"] = "classic"
        return dropout_forward(x, p, **kwargs)

    falsified(
        lambda case: assert_holds(check_inverted_expectation(case, unscaled)),
        dropout_stat_cases(),
        _no_shrink(),
    )
