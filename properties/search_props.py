"""Hyperparameter-search properties (issue 5): sampling laws, the notes' 3/4, narrowing, splits.

    search-log-uniform-law     LogUniform samples pass a KS test against scipy.stats.loguniform
    search-one-minus-beta-law  1 - beta of OneMinusLogUniform samples pass a KS test against
                               scipy.stats.loguniform(1 - high, 1 - low)
    search-uniform-law         Uniform samples pass a KS test against scipy.stats.uniform
    search-three-quarters      LogUniform(1e-4, 1) lands in [1e-4, 1e-1] with probability 3/4:
                               exactly by scipy's CDF, and in a sample within a binomial band
    search-narrow              a narrowed range holds the best trial, lies inside the old one
                               and is the bounding box of the top_k trials, same law
    search-best-trial          a search's best trial is the first of the best scores
    search-split-partition     a validation split partitions the examples (disjoint, cover,
                               n_val = floor(fraction * m + 1/2)), keeps X with Y, is
                               reproducible from the seed and leaves its inputs alone

Statistical claims, made deterministic. Each law case is FIXED (range, seed, n), so its sample
is a fixed array and its KS statistic D a fixed number: the check cannot flip from run to run.
It is judged at the stated significance level ALPHA = 0.01: D must not exceed the critical
value kstwo.isf(ALPHA, n), which is exactly "scipy.stats.kstest's exact two-sided p-value
>= ALPHA" (kstest uses the kstwo distribution for n <= 10000,
https://docs.scipy.org/doc/scipy/reference/generated/scipy.stats.kstest.html). Drawing random
seeds instead would make a correct sampler fail once in 1/ALPHA cases: no oracle. The fixed
cases still have teeth: at n = 2000 the critical D is 0.036, so a sampler whose CDF is off by
more than about that everywhere near one point is rejected (tests/test_hyperparameter_search.py
plants such samplers). The streams are stable: RandomState's is frozen by NumPy's compatibility
policy (NEP 19), and a changed Generator stream could only change D, which is re-derived.

The checks take the functions under test as a `SearchFunctions` bundle (sample, grid search,
narrow, split); `search_properties(functions)` binds them into `Property` objects whose `impl`
argument is unused. PROPERTIES binds the reference.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats

from properties.adapter import Implementation
from properties.framework import Measurement, Property
from properties.tolerances import SAFETY, U64
from reference._validation import RandomSource
from reference.data_split import validation_split
from reference.hyperparameter_search import (
    Distribution,
    LogUniform,
    OneMinusLogUniform,
    SearchResult,
    Trial,
    Uniform,
    grid_search,
    narrow_space,
)

Array = NDArray[np.float64]
ALPHA = 0.01  # the significance level of every statistical claim here
N_LAW = 2000  # samples per KS case: critical D = kstwo.isf(0.01, 2000) = 0.036
N_QUARTERS = 10_000  # samples for the empirical 3/4: binomial sd sqrt(3/16 / n) = 0.0043

Sampler = Callable[[Distribution, RandomSource, int], Array]
GridSearch = Callable[
    [Callable[[Mapping[str, float]], float], Mapping[str, Sequence[float]], bool], SearchResult
]
Narrow = Callable[
    [Mapping[str, Distribution], Sequence[Trial], int, bool], Mapping[str, Distribution]
]
Split = Callable[[Array, Array, float, int], Sequence[NDArray[Any]]]


@dataclass(frozen=True)
class SearchFunctions:
    """The search functions under test, in the reference's argument order."""

    sample: Sampler
    grid: GridSearch
    narrow: Narrow
    split: Split


def _exact(quantity: str, holds: bool) -> Measurement:
    return Measurement(quantity, 0.0 if holds else 1.0, 0.0)  # exact claim: tolerance 0


# --- the sampling laws -----------------------------------------------------------------------


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


def check_law(functions: SearchFunctions, case: LawCase) -> list[Measurement]:
    """n samples lie in [low, high] and pass the KS test at level ALPHA (D <= critical D)."""
    sample = np.asarray(functions.sample(case.dist, case.rng(), case.n), dtype=np.float64)
    inside = sample.shape == (case.n,) and bool(
        ((sample >= case.dist.low) & (sample <= case.dist.high)).all()
    )
    d, p, critical = ks_test(case.dist, sample)
    return [
        _exact(f"{case.n} samples in [low, high]", inside),
        # The tolerance is the level-ALPHA critical value of the exact KS distribution for n.
        Measurement(f"KS D of {case.dist} (p = {p:.4f}, alpha = {ALPHA})", d, critical),
    ]


# --- the notes' 3/4 ---------------------------------------------------------------------------


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


def check_three_quarters(functions: SearchFunctions, case: QuartersCase) -> list[Measurement]:
    """P(1e-4 <= x <= 1e-1) = 3/4: by the exponents, by scipy's CDF, and counted in a sample."""
    by_exponents = (-1.0 - (-4.0)) / (0.0 - (-4.0))  # the notes' (-1 - (-4)) / (0 - (-4))
    law = stats.loguniform(1e-4, 1.0)
    by_cdf = float(law.cdf(1e-1) - law.cdf(1e-4))
    sample = np.asarray(
        functions.sample(LogUniform(1e-4, 1.0), np.random.default_rng(case.seed), case.n)
    )
    count = int(((sample >= 1e-4) & (sample <= 1e-1)).sum())
    return [
        _exact("(-1 - (-4)) / (0 - (-4)) == 3/4", by_exponents == 0.75),
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


# --- narrowing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class NarrowCase:
    """A space, trials inside it, top_k and the direction of better."""

    space: Mapping[str, Distribution]
    trials: tuple[Trial, ...]
    top_k: int
    minimize: bool


def _first_best(trials: Sequence[Trial], minimize: bool) -> int:
    scores = [t.score for t in trials]
    target = min(scores) if minimize else max(scores)
    return scores.index(target)


def _top(trials: Sequence[Trial], k: int, minimize: bool) -> list[Trial]:
    order = sorted(range(len(trials)), key=lambda i: (trials[i].score * (1 if minimize else -1), i))
    return [trials[i] for i in order[:k]]


def check_narrow(functions: SearchFunctions, case: NarrowCase) -> list[Measurement]:
    """Each new range holds the best trial, lies in the old range, is the top_k's [min, max]."""
    new = functions.narrow(case.space, case.trials, case.top_k, case.minimize)
    best = case.trials[_first_best(case.trials, case.minimize)]
    top = _top(case.trials, case.top_k, case.minimize)
    same_names = list(new) == list(case.space)
    holds_best = inside = tight = same_law = same_names
    for name, old in case.space.items():
        if not same_names:
            break
        dist = new[name]
        values = [t.params[name] for t in top]
        holds_best = holds_best and dist.low <= best.params[name] <= dist.high
        inside = inside and old.low <= dist.low <= dist.high <= old.high
        tight = tight and (dist.low, dist.high) == (min(values), max(values))
        same_law = same_law and type(dist) is type(old)
    return [
        _exact("same names, in order", same_names),
        _exact("new range holds the best trial", holds_best),
        _exact("new range lies inside the old one", inside),
        _exact("new range is [min, max] of the top_k trials", tight),
        _exact("same law (Uniform, LogUniform, OneMinusLogUniform)", same_law),
    ]


@st.composite
def _distribution(draw: st.DrawFn) -> Distribution:
    kind = draw(st.sampled_from(("uniform", "log", "beta")))
    if kind == "log":
        e = sorted(draw(st.lists(st.integers(-10, 3), min_size=2, max_size=2)))
        return LogUniform(10.0 ** e[0], 10.0 ** e[1])
    if kind == "beta":
        low = draw(st.sampled_from((0.0, 0.5, 0.9, 0.99)))
        return OneMinusLogUniform(low, draw(st.sampled_from((0.99, 0.999, 0.9999))))
    low = draw(st.floats(-100.0, 100.0))
    return Uniform(low, low + draw(st.floats(0.0, 100.0)))


@st.composite
def narrow_cases(draw: st.DrawFn) -> NarrowCase:
    """1-3 hyperparameters of any law, 1-12 trials inside the space with tied and infinite
    scores, top_k in 1..len(trials), minimize or maximize."""
    names = draw(
        st.lists(st.sampled_from(("lr", "lambda", "beta")), min_size=1, max_size=3, unique=True)
    )
    space = {name: draw(_distribution()) for name in names}
    scores = st.one_of(
        st.sampled_from((0.0, 1.0, -1.0, math.inf, -math.inf)), st.floats(-10.0, 10.0)
    )
    trials = draw(
        st.lists(
            st.builds(
                lambda params, score: Trial(params=params, score=score),
                st.fixed_dictionaries({n: st.floats(d.low, d.high) for n, d in space.items()}),
                scores,
            ),
            min_size=1,
            max_size=12,
        )
    )
    return NarrowCase(
        space=space,
        trials=tuple(trials),
        top_k=draw(st.integers(1, len(trials))),
        minimize=draw(st.booleans()),
    )


# --- the best trial ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BestCase:
    """The scores a one-parameter grid's points get, in order, and the direction of better."""

    scores: tuple[float, ...]
    minimize: bool


def check_best_trial(functions: SearchFunctions, case: BestCase) -> list[Measurement]:
    """Trials come back in grid order with their scores; the best is the first optimum."""
    result = functions.grid(
        lambda params: case.scores[int(params["i"])],
        {"i": [float(i) for i in range(len(case.scores))]},
        case.minimize,
    )
    in_order = [t.score for t in result.trials] == list(case.scores) and [
        t.params["i"] for t in result.trials
    ] == [float(i) for i in range(len(case.scores))]
    expected = _first_best(result.trials, case.minimize) if in_order else -1
    best = in_order and result.best == result.trials[expected]
    return [
        _exact("trials in grid order with their scores", in_order),
        _exact("best is the first optimum", best),
    ]


@st.composite
def best_cases(draw: st.DrawFn) -> BestCase:
    """1-20 scores with ties and infinities, minimize or maximize."""
    score = st.one_of(st.sampled_from((0.0, 1.0, math.inf, -math.inf)), st.floats(-1e6, 1e6))
    return BestCase(tuple(draw(st.lists(score, min_size=1, max_size=20))), draw(st.booleans()))


# --- the validation split ---------------------------------------------------------------------


@dataclass(frozen=True)
class SplitCase:
    """m examples split with `fraction` from the integer `seed`."""

    m: int
    fraction: float
    seed: int

    def arrays(self) -> tuple[Array, Array]:
        """X (2, m) with X[:, j] = (j, j + m) and Y (1, m) with Y[0, j] = -(j + 1)."""
        j = np.arange(self.m, dtype=np.float64)
        return np.stack([j, j + self.m]), -(j + 1.0)[None, :]

    def n_val(self) -> int:
        """The stated rule: fraction * m to the nearest integer, a half up, exactly."""
        return math.floor(Fraction(self.fraction) * self.m + Fraction(1, 2))


def _indices(x_part: NDArray[Any], y_part: NDArray[Any], m: int) -> NDArray[np.int64] | None:
    """The example index j of each column, or None when a column is not an intact (X, Y) pair."""
    x, y = np.asarray(x_part, dtype=np.float64), np.asarray(y_part, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] != 2 or y.shape != (1, x.shape[1]):
        return None
    j: Array = x[0]
    if not (np.array_equal(x[1], j + m) and np.array_equal(y[0], -(j + 1.0))):
        return None
    return j.astype(np.int64)


def check_split(functions: SearchFunctions, case: SplitCase) -> list[Measurement]:
    """Disjoint parts covering 0..m-1 with n_val held out, X paired with Y, the same split from
    the same seed, inputs unchanged and unshared; a rule that leaves a part empty is rejected."""
    x, y = case.arrays()
    n_val = case.n_val()
    if not 1 <= n_val <= case.m - 1:
        try:
            functions.split(x, y, case.fraction, case.seed)
        except ValueError:
            return [_exact(f"rejects n_val = {n_val} of m = {case.m}", True)]
        return [_exact(f"rejects n_val = {n_val} of m = {case.m}", False)]
    x0, y0 = x.copy(), y.copy()
    parts = functions.split(x, y, case.fraction, case.seed)
    again = functions.split(x, y, case.fraction, case.seed)
    train = _indices(parts[0], parts[1], case.m)
    val = _indices(parts[2], parts[3], case.m)
    if train is None or val is None:
        train = val = np.empty(0, np.int64)
        paired = False
    else:
        paired = True
    every = np.concatenate([train, val])
    sizes = len(val) == n_val and len(train) == case.m - n_val
    shared = any(np.shares_memory(np.asarray(p), a) for p in parts for a in (x, y))
    return [
        _exact("X and Y stay paired and intact", paired),
        _exact(
            "parts are disjoint and cover 0..m-1", np.array_equal(np.sort(every), np.arange(case.m))
        ),
        _exact(f"n_val = {n_val}, n_train = {case.m - n_val}", paired and sizes),
        _exact(
            "same seed, same split",
            all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True)),
        ),
        _exact("inputs unchanged", np.array_equal(x, x0) and np.array_equal(y, y0)),
        _exact("parts share no memory with X, Y", not shared),
    ]


@st.composite
def split_cases(draw: st.DrawFn) -> SplitCase:
    """m in 1..120; usual fractions, any fraction in (0, 1), and exact halves (k + 1/2)/m."""
    m = draw(st.integers(1, 120))
    tie = st.builds(
        lambda p, k: (2 * k + 1) / 2 ** (p + 1), st.integers(1, 6), st.integers(0, 31)
    ).filter(lambda f: f < 1.0)
    fraction = draw(
        st.one_of(
            st.sampled_from((0.2, 0.1, 0.25, 0.5, 1 / 3, 0.7)),
            st.floats(0.0, 1.0, exclude_min=True, exclude_max=True),
            tie,
        )
    )
    if draw(st.booleans()):  # a power-of-two m makes (2k + 1) / 2**(p + 1) * m an exact half
        m = 2 ** draw(st.integers(1, 6))
    return SplitCase(m=m, fraction=fraction, seed=draw(st.integers(0, 2**32 - 1)))


# --- binding ----------------------------------------------------------------------------------


def _reference_grid(
    objective: Callable[[Mapping[str, float]], float],
    grid: Mapping[str, Sequence[float]],
    minimize: bool,
) -> SearchResult:
    return grid_search(objective, grid, minimize=minimize)


def _reference_narrow(
    space: Mapping[str, Distribution], trials: Sequence[Trial], top_k: int, minimize: bool
) -> Mapping[str, Distribution]:
    return narrow_space(space, trials, top_k=top_k, minimize=minimize)


def _reference_split(X: Array, Y: Array, fraction: float, seed: int) -> Sequence[NDArray[Any]]:
    return validation_split(X, Y, fraction=fraction, seed=seed)


REFERENCE_FUNCTIONS = SearchFunctions(
    sample=lambda dist, rng, n: dist.sample(rng, n),
    grid=_reference_grid,
    narrow=_reference_narrow,
    split=_reference_split,
)


def search_properties(functions: SearchFunctions) -> tuple[Property, ...]:
    """The search claims as `Property` objects checking `functions` (impl is not used)."""

    def bind(
        check: Callable[[SearchFunctions, Any], list[Measurement]],
    ) -> Callable[[Implementation, Any], list[Measurement]]:
        def run(_impl: Implementation, case: Any) -> list[Measurement]:
            return check(functions, case)

        return run

    statistical = frozenset({"search", "statistical"})
    exact = frozenset({"search", "exact"})
    claims: tuple[
        tuple[
            str,
            Callable[[SearchFunctions, Any], list[Measurement]],
            st.SearchStrategy[Any],
            frozenset[str],
        ],
        ...,
    ] = (
        ("search-log-uniform-law", check_law, st.sampled_from(LOG_CASES), statistical),
        ("search-one-minus-beta-law", check_law, st.sampled_from(BETA_CASES), statistical),
        ("search-uniform-law", check_law, st.sampled_from(UNIFORM_CASES), statistical),
        ("search-three-quarters", check_three_quarters, st.just(QuartersCase()), statistical),
        ("search-narrow", check_narrow, narrow_cases(), exact),
        ("search-best-trial", check_best_trial, best_cases(), exact),
        ("search-split-partition", check_split, split_cases(), exact),
    )
    return tuple(
        Property(name, (check.__doc__ or name).strip(), strategy, bind(check), tags)
        for name, check, strategy, tags in claims
    )


PROPERTIES: tuple[Property, ...] = search_properties(REFERENCE_FUNCTIONS)
