"""The samplers' laws: their CDFs, the notes' 3/4, and Kolmogorov-Smirnov tests against scipy.

    log-uniform law      LogUniform samples pass a KS test against scipy.stats.loguniform
    one-minus-beta law   1 - beta of OneMinusLogUniform samples pass a KS test against
                         scipy.stats.loguniform(1 - high, 1 - low)
    uniform law          Uniform samples pass a KS test against scipy.stats.uniform
    three quarters       LogUniform(1e-4, 1) lands in [1e-4, 1e-1] with probability 3/4:
                         exactly by scipy's CDF, and in a sample within a binomial band

Statistical claims, made deterministic. Each law case is FIXED (range, seed, n), so its sample
is a fixed array and its KS statistic D a fixed number: the check cannot flip from run to run.
It is judged at the stated significance level ALPHA = 0.01: D must not exceed the critical
value kstwo.isf(ALPHA, n), which is exactly "scipy.stats.kstest's exact two-sided p-value
>= ALPHA" (kstest uses the kstwo distribution for n <= 10000,
https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.kstest.html). Drawing random
seeds instead would make a correct sampler fail once in 1/ALPHA cases: no oracle. The fixed
cases still have teeth: at n = 2000 the critical D is 0.036, so a sampler whose CDF is off by
more than about that everywhere near one point is rejected (the broken samplers below). The
streams are stable: RandomState's is frozen by NumPy's compatibility policy (NEP 19), and a
changed Generator stream could only change D, which is re-derived.

Each check takes the sampler it checks, `sample(dist, rng, n)` (default: the reference's
`dist.sample(rng, n)`), so a test can hand it a broken one.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from claims import assert_holds, broken, exact
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats

from properties.framework import Measurement
from properties.tolerances import SAFETY, U64
from reference._validation import RandomSource
from reference.hyperparameter_search import Distribution, LogUniform, OneMinusLogUniform, Uniform

Array = NDArray[np.float64]
ALPHA = 0.01  # the significance level of every statistical claim here
N_LAW = 2000  # samples per KS case: critical D = kstwo.isf(0.01, 2000) = 0.036
N_QUARTERS = 10_000  # samples for the empirical 3/4: binomial sd sqrt(3/16 / n) = 0.0043

Sampler = Callable[[Distribution, RandomSource, int], Array]


def reference_sample(dist: Distribution, rng: RandomSource, n: int) -> Array:
    """The reference's sampler: n draws of `dist` from `rng`."""
    return dist.sample(rng, n)


# --- the sampling laws and their fixed cases ---------------------------------------------------


@dataclass(frozen=True)
class LawCase:
    """n samples of `dist` from RandomState(seed) (`legacy`) or default_rng(seed)."""

    dist: Distribution
    seed: int
    legacy: bool
    n: int = N_LAW

    def rng(self) -> RandomSource:
        """A fresh random source for the case."""
        if self.legacy:
            return np.random.RandomState(self.seed)
        return np.random.default_rng(self.seed)


# The course's learning rate, the notes' weight decay range 1e-8..1e-6 (MNIST example), a range
# across 1, a narrow one, the course's EMA beta range, a beta range from 0, and linear ranges.
LOG_CASES = (
    LawCase(LogUniform(1e-4, 1.0), seed=0, legacy=True),
    LawCase(LogUniform(1e-8, 1e-6), seed=1, legacy=False),
    LawCase(LogUniform(1e-3, 1e3), seed=2, legacy=False),
    LawCase(LogUniform(50.0, 150.0), seed=3, legacy=True),
)
BETA_CASES = (
    LawCase(OneMinusLogUniform(0.9, 0.999), seed=4, legacy=True),
    LawCase(OneMinusLogUniform(0.0, 0.99), seed=5, legacy=False),
    LawCase(OneMinusLogUniform(0.99, 0.99999), seed=6, legacy=False),
)
UNIFORM_CASES = (
    LawCase(Uniform(50.0, 150.0), seed=7, legacy=True),
    LawCase(Uniform(-1.0, 1.0), seed=8, legacy=False),
)


def _reference_law(dist: Distribution) -> tuple[Callable[[Array], Array], Callable[[Array], Any]]:
    """(map, scipy CDF): the variable the law is about, and its CDF from scipy.stats."""
    if isinstance(dist, LogUniform):
        return (lambda x: x), stats.loguniform(dist.low, dist.high).cdf
    if isinstance(dist, OneMinusLogUniform):
        return (lambda x: 1.0 - x), stats.loguniform(1.0 - dist.high, 1.0 - dist.low).cdf
    return (lambda x: x), stats.uniform(loc=dist.low, scale=dist.high - dist.low).cdf


def ks_test(dist: Distribution, sample: Array) -> tuple[float, float, float]:
    """(D, p-value, critical D at ALPHA) of `sample` against the scipy law of `dist`."""
    variable, cdf = _reference_law(dist)
    result = stats.kstest(variable(sample), cdf)
    critical = float(stats.kstwo.isf(ALPHA, len(sample)))
    return float(result.statistic), float(result.pvalue), critical


def check_law(case: LawCase, sample: Sampler = reference_sample) -> list[Measurement]:
    """n samples lie in [low, high] and pass the KS test at level ALPHA (D <= critical D)."""
    drawn = np.asarray(sample(case.dist, case.rng(), case.n), dtype=np.float64)
    inside = drawn.shape == (case.n,) and bool(
        ((drawn >= case.dist.low) & (drawn <= case.dist.high)).all()
    )
    d, p, critical = ks_test(case.dist, drawn)
    return [
        exact(f"{case.n} samples in [low, high]", inside),
        # The tolerance is the level-ALPHA critical value of the exact KS distribution for n.
        Measurement(f"KS D of {case.dist} (p = {p:.4f}, alpha = {ALPHA})", d, critical),
    ]


@dataclass(frozen=True)
class QuartersCase:
    """LogUniform(1e-4, 1) sampled n times from default_rng(seed)."""

    seed: int = 0
    n: int = N_QUARTERS


# F = ln(x/a) / ln(b/a) at x = fl(0.1), a = fl(1e-4), b = 1: the inputs' representation errors
# (u each) and the quotient x/a (u) move ln(x/a) = 6.9 by <= 2u absolute and ln(b/a) = 9.2 by
# <= u, relative 0.29u and 0.11u; the two logs and the division round once each (3u). So F is
# within 3.4u relative, 2.6u absolute, of 3/4; times SAFETY = 2 and rounded up: 6u.
QUARTER_TOLERANCE = SAFETY * 3 * U64


def empirical_band(n: int, p: float = 0.75) -> float:
    """The half-width, in counts, of the central 1 - ALPHA binomial(n, p) interval (the wider
    side): a fixed correct sample's count lies within it unless it is one of the ALPHA cases."""
    lo, hi = stats.binom.interval(1.0 - ALPHA, n, p)
    return float(max(hi - n * p, n * p - lo))


def check_three_quarters(
    case: QuartersCase, sample: Sampler = reference_sample
) -> list[Measurement]:
    """P(1e-4 <= x <= 1e-1) = 3/4: by the exponents, by scipy's CDF, and counted in a sample."""
    by_exponents = (-1.0 - (-4.0)) / (0.0 - (-4.0))  # the notes' (-1 - (-4)) / (0 - (-4))
    law = stats.loguniform(1e-4, 1.0)
    by_cdf = float(law.cdf(1e-1) - law.cdf(1e-4))
    drawn = np.asarray(sample(LogUniform(1e-4, 1.0), np.random.default_rng(case.seed), case.n))
    count = int(((drawn >= 1e-4) & (drawn <= 1e-1)).sum())
    return [
        exact("(-1 - (-4)) / (0 - (-4)) == 3/4", by_exponents == 0.75),
        Measurement(
            "scipy loguniform(1e-4, 1) mass of [1e-4, 1e-1] - 3/4",
            abs(by_cdf - 0.75),
            QUARTER_TOLERANCE,
        ),
        Measurement(
            f"count in [1e-4, 1e-1] of {case.n} samples - 3n/4 (fraction {count / case.n:.4f})",
            abs(count - 0.75 * case.n),
            empirical_band(case.n),
        ),
    ]


# --- the CDF and the notes' 3/4 --------------------------------------------------------------


# F at a power of ten inside [1e-4, 1]: log10 of a decimal input is within (1/ln10 + |t|) u of
# t, |t| <= 4, for each of log10(x) and log10(low), and the subtraction and division round once:
# <= (2 (0.44 + 4) + 2) u / 4 + u on F <= 1, ~4u; times SAFETY: 8u.
CDF_TOLERANCE = SAFETY * 4 * U64


@pytest.mark.parametrize(
    ("dist", "x", "cdf"),
    [
        (LogUniform(1e-4, 1.0), 1e-1, 0.75),  # the notes' 3/4
        (LogUniform(1e-4, 1.0), 1e-2, 0.5),
        (LogUniform(1e-4, 1.0), 1e-3, 0.25),
        (LogUniform(1e-4, 1.0), 1e-4, 0.0),
        (LogUniform(1e-4, 1.0), 1.0, 1.0),
        (LogUniform(1e-4, 1.0), 1e-5, 0.0),
        (LogUniform(1e-4, 1.0), 2.0, 1.0),
        (OneMinusLogUniform(0.9, 0.999), 0.99, 0.5),  # 1 - beta = 1e-2, the middle decade
        (Uniform(50.0, 150.0), 75.0, 0.25),
        (LogUniform(0.5, 0.5), 0.5, 1.0),  # a point mass: a step at low
    ],
)
def test_cdf_at_known_points(dist: Distribution, x: float, cdf: float) -> None:
    assert abs(dist.cdf(x) - cdf) <= CDF_TOLERANCE


@dataclasses.dataclass(frozen=True)
class _ThreeXMinusTwoX(Distribution):
    """t(x) = 3x - 2x: x in exact arithmetic, but 3x rounds, so t is not monotone in float64."""

    def transform(self, x: Array) -> Array:
        return 3.0 * x - 2.0 * x


def test_cdf_stays_in_the_unit_interval_when_the_transform_rounds_non_monotonically() -> None:
    dist, x = _ThreeXMinusTwoX(0.0, 0.7), float(np.nextafter(0.7, 0.0))
    t = dist.transform(np.array([x, 0.7]))
    assert t[0] > t[1]  # the ratio |t(x) - t(low)| / |t(high) - t(low)| exceeds 1
    assert dist.cdf(x) == 1.0


def test_three_quarters_exactly_from_scipy_and_ours() -> None:
    law = stats.loguniform(1e-4, 1.0)
    assert abs(law.cdf(1e-1) - law.cdf(1e-4) - 0.75) <= QUARTER_TOLERANCE
    ours = LogUniform(1e-4, 1.0)
    assert abs(ours.cdf(1e-1) - ours.cdf(1e-4) - 0.75) <= CDF_TOLERANCE
    # and a uniform draw on the value scale lands there with probability (0.1 - 1e-4) / (1 - 1e-4)
    assert Uniform(1e-4, 1.0).cdf(1e-1) == pytest.approx(0.0999, abs=1e-4)


def test_ks_p_values_of_the_fixed_cases_exceed_alpha() -> None:
    """The fixed cases' p-values are fixed numbers; each must exceed the stated level."""
    for case in (*LOG_CASES, *BETA_CASES, *UNIFORM_CASES):
        sample = case.dist.sample(case.rng(), case.n)
        d, p, critical = ks_test(case.dist, sample)
        assert p > ALPHA, (case, p)
        assert d <= critical


def test_ks_rejects_a_plain_uniform_sample() -> None:
    """The test has teeth: the value-scale uniform on [1e-4, 1] is rejected at level ALPHA."""
    case = LOG_CASES[0]
    sample = Uniform(1e-4, 1.0).sample(case.rng(), case.n)
    d, p, critical = ks_test(case.dist, sample)
    assert p < ALPHA
    assert d > critical


# --- the reference's sampler follows each law -------------------------------------------------


@given(case=st.sampled_from(LOG_CASES))
def test_log_uniform_samples_follow_scipys_loguniform(case: LawCase) -> None:
    """LogUniform samples pass a KS test against scipy.stats.loguniform."""
    assert_holds(check_law(case))


@given(case=st.sampled_from(BETA_CASES))
def test_one_minus_beta_follows_scipys_loguniform(case: LawCase) -> None:
    """1 - beta of OneMinusLogUniform samples pass a KS test against
    scipy.stats.loguniform(1 - high, 1 - low)."""
    assert_holds(check_law(case))


@given(case=st.sampled_from(UNIFORM_CASES))
def test_uniform_samples_follow_scipys_uniform(case: LawCase) -> None:
    """Uniform samples pass a KS test against scipy.stats.uniform."""
    assert_holds(check_law(case))


@given(case=st.just(QuartersCase()))
def test_three_quarters_of_the_learning_rates_lie_in_the_lower_three_decades(
    case: QuartersCase,
) -> None:
    """LogUniform(1e-4, 1) lands in [1e-4, 1e-1] with probability 3/4: exactly by scipy's CDF,
    and in a sample within a binomial band."""
    assert_holds(check_three_quarters(case))


def test_fixed_law_case_shapes() -> None:
    assert all(c.n == 2000 for c in (*LOG_CASES, *BETA_CASES, *UNIFORM_CASES))


# --- each law catches a broken sampler --------------------------------------------------------


def _sampler(transform: Callable[[Distribution, Array], Array]) -> Sampler:
    """A sampler that draws u ~ U[0, 1) as the reference and maps it with `transform`."""

    def sample(dist: Distribution, rng: RandomSource, n: int) -> Array:
        return transform(dist, np.asarray(rng.random(n), dtype=np.float64))

    return sample


def _value_scale(dist: Distribution, u: Array) -> Array:
    return dist.high - (dist.high - dist.low) * u  # uniform on the value scale: no log


def _exponents_off_by_one(dist: Distribution, u: Array) -> Array:
    if not isinstance(dist, LogUniform):
        return dist.from_uniform(u)
    a, b = math.log10(dist.low) + 1.0, math.log10(dist.high)  # loses the lowest decade
    return np.asarray(10.0 ** (b - (b - a) * u))


def _natural_log(dist: Distribution, u: Array) -> Array:
    if not isinstance(dist, LogUniform):
        return dist.from_uniform(u)
    a, b = math.log(dist.low), math.log(dist.high)  # ln for the range, 10** for the value
    return np.clip(10.0 ** (b - (b - a) * u), dist.low, dist.high)


def _beta_log_uniform(dist: Distribution, u: Array) -> Array:
    if not isinstance(dist, OneMinusLogUniform) or dist.low == 0.0:
        return dist.from_uniform(u)
    return LogUniform(dist.low, dist.high).from_uniform(u)  # beta log-uniform, not 1 - beta


def _skewed(dist: Distribution, u: Array) -> Array:
    return dist.from_uniform(u**1.2)  # the CDF off by up to 0.067 everywhere


def _caught(
    check: Callable[[Any, Sampler], list[Measurement]], cases: tuple[Any, ...], sample: Sampler
) -> bool:
    """Whether `check` of `sample` fails on any of `cases`."""
    return any(broken(check(case, sample)) for case in cases)


_FIXED_CASES: dict[str, tuple[Callable[[Any, Sampler], list[Measurement]], tuple[Any, ...]]] = {
    "log-uniform law": (check_law, LOG_CASES),
    "one-minus-beta law": (check_law, BETA_CASES),
    "uniform law": (check_law, UNIFORM_CASES),
    "three quarters": (check_three_quarters, (QuartersCase(),)),
}


@pytest.mark.parametrize(
    ("transform", "caught_by"),
    [
        (_value_scale, {"log-uniform law", "one-minus-beta law", "three quarters"}),
        (_exponents_off_by_one, {"log-uniform law", "three quarters"}),
        (_natural_log, {"log-uniform law", "three quarters"}),
        (_beta_log_uniform, {"one-minus-beta law"}),
        (_skewed, {"log-uniform law", "one-minus-beta law", "uniform law", "three quarters"}),
    ],
)
def test_laws_catch_broken_samplers(
    transform: Callable[[Distribution, Array], Array], caught_by: set[str]
) -> None:
    sample = _sampler(transform)
    failed = {
        name for name, (check, cases) in _FIXED_CASES.items() if _caught(check, cases, sample)
    }
    assert failed == caught_by


def test_law_cases_pass_with_a_replayed_reference() -> None:
    """The planted samplers differ from the reference only in their map: the reference map of
    the same uniforms passes."""
    sample = _sampler(lambda d, u: d.from_uniform(u))
    assert not any(_caught(check, cases, sample) for check, cases in _FIXED_CASES.values())
