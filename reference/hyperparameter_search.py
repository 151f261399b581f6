"""Hyperparameter search: sampling on the right scale, random and grid search, coarse to fine.

A search space maps each hyperparameter's name to a distribution over a closed range. Each
distribution is uniform in a transformed coordinate t (the course notes' "appropriate scale")::

    Uniform(low, high)             t = x                value = t
    LogUniform(low, high)          t = log10(x)         value = 10**t        (learning rate)
    OneMinusLogUniform(low, high)  t = log10(1 - x)     value = 1 - 10**t    (EMA beta)

and a sample draws u ~ U[0, 1) and sets t = t(high) - (t(high) - t(low)) * u. For the learning
rate in [1e-4, 1] that is the notes' ``r = -4 * np.random.rand(); alpha = 10**r``, bit for bit
when the random source is ``np.random.RandomState(seed)`` (an integer seed). For beta in
[0.9, 0.999] it is r uniform in [-3, -1] and beta = 1 - 10**r: beta near 1 is sampled as
finely as beta near 0.9. Samples are clipped to [low, high], so the ulp that log10 and the
power may round by never leaves the range.

log10 and the power are the C library's (``math.log10``, ``math.pow``), element by
element, not NumPy's ufuncs: NumPy picks its float64 ``power`` and ``log10`` kernels by the CPU
(SVML on AVX-512 machines), and those differ from the C library's by an ulp on about one
input in twenty. The notes' ``10**r`` (a NumPy float64 scalar) is the C library's pow on every
machine, so the bit-for-bit claim above holds on every machine only this way.

A search calls an objective, params -> score, once per trial; `minimize` says whether lower
(a loss, the default) or higher (an accuracy) is better. The best trial is the first of the
best scores. `narrow_space` is the notes' coarse-to-fine step: each range becomes the smallest
range holding the top_k trials' values (a bounding box in t, which is monotone in the value, so
the same box in the value), inside the previous range by construction.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

import numpy as np
from numpy.typing import NDArray

from reference._validation import RandomSource, check_int, random_source, real_scalar

Float64Array = NDArray[np.float64]
Params = Mapping[str, float]
Objective = Callable[[Params], float]


@dataclass(frozen=True)
class Distribution:
    """Uniform in t(x) between t(low) and t(high); subclasses define t, its inverse and range."""

    low: float
    high: float
    scale: ClassVar[str] = "linear"

    def __post_init__(self) -> None:
        low, high = real_scalar(self.low, "low"), real_scalar(self.high, "high")
        self._check_range(low, high)
        if not low <= high:
            raise ValueError(
                f"low must be <= high for {type(self).__name__}, got low={low!r}, high={high!r}"
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def _check_range(self, low: float, high: float) -> None:
        for name, value in (("low", low), ("high", high)):
            if not math.isfinite(value):
                raise ValueError(f"{name} must be finite for {type(self).__name__}, got {value!r}")

    def transform(self, x: Float64Array) -> Float64Array:
        """t(x), the coordinate in which the distribution is uniform."""
        return x

    def inverse(self, t: Float64Array) -> Float64Array:
        """x(t), the inverse of `transform`."""
        return t

    def sample(self, rng: RandomSource, size: int) -> Float64Array:
        """`size` values x(t), t = t(high) - (t(high) - t(low)) * u, u ~ U[0, 1) from `rng`.

        `rng` is a numpy Generator or RandomState, advanced by `size` uniform draws.
        """
        count = check_int(size, "size", minimum=0)
        if not isinstance(rng, (np.random.Generator, np.random.RandomState)):
            raise TypeError(
                f"rng must be a numpy.random.Generator or RandomState, "
                f"got {type(rng).__name__} {rng!r}"
            )
        return self.from_uniform(np.asarray(rng.random(count), dtype=np.float64))

    def from_uniform(self, u: Float64Array) -> Float64Array:
        """x(t(high) - (t(high) - t(low)) * u) for uniforms u in [0, 1], clipped to [low, high]:
        the value `sample` makes of the draw u (u = 0 gives high, u -> 1 gives low)."""
        t_low, t_high = self.transform(np.array([self.low, self.high]))
        values = self.inverse(t_high - (t_high - t_low) * np.asarray(u, dtype=np.float64))
        return np.clip(values, self.low, self.high)  # log10/pow may round an ulp outside

    def cdf(self, x: float) -> float:
        """P(X <= x) = |t(x) - t(low)| / |t(high) - t(low)|, clipped to [0, 1] (a step at low
        when low == high)."""
        value = real_scalar(x, "x")
        if value < self.low:
            return 0.0
        if value >= self.high:
            return 1.0
        t_x, t_low, t_high = self.transform(np.array([value, self.low, self.high]))
        return float(np.clip(abs(t_x - t_low) / abs(t_high - t_low), 0.0, 1.0))

    def narrowed(self, low: float, high: float) -> Distribution:
        """The same law on [max(low, self.low), min(high, self.high)]."""
        return dataclasses.replace(self, low=max(low, self.low), high=min(high, self.high))

    def contains(self, x: float) -> bool:
        """low <= x <= high."""
        return self.low <= x <= self.high


@dataclass(frozen=True)
class Uniform(Distribution):
    """x uniform on [low, high] (finite, low <= high)."""


@dataclass(frozen=True)
class LogUniform(Distribution):
    """x = 10**r, r uniform on [log10(low), log10(high)], 0 < low <= high: density
    1 / (x ln(high/low)), scipy.stats.loguniform(low, high)."""

    scale: ClassVar[str] = "log"

    def _check_range(self, low: float, high: float) -> None:
        super()._check_range(low, high)
        if not low > 0.0:
            raise ValueError(f"low must be > 0 for LogUniform, got {low!r}")

    def transform(self, x: Float64Array) -> Float64Array:
        """t = log10(x)."""
        return _elementwise(math.log10, x)

    def inverse(self, t: Float64Array) -> Float64Array:
        """x = 10**t."""
        return _elementwise(_ten_to, t)


@dataclass(frozen=True)
class OneMinusLogUniform(Distribution):
    """beta = 1 - 10**r, r uniform on [log10(1 - high), log10(1 - low)], 0 <= low <= high < 1:
    1 - beta is LogUniform(1 - high, 1 - low).

    beta is a float64 near 1, so 1 - beta is resolved to about 2**-53 in absolute terms.
    """

    scale: ClassVar[str] = "one-minus-log"

    def _check_range(self, low: float, high: float) -> None:
        super()._check_range(low, high)
        if not low >= 0.0:
            raise ValueError(f"low must be >= 0 for OneMinusLogUniform, got {low!r}")
        if not high < 1.0:
            raise ValueError(f"high must be < 1 for OneMinusLogUniform, got {high!r}")

    def transform(self, x: Float64Array) -> Float64Array:
        """t = log10(1 - x)."""
        return _elementwise(math.log10, 1.0 - x)

    def inverse(self, t: Float64Array) -> Float64Array:
        """x = 1 - 10**t."""
        return 1.0 - _elementwise(_ten_to, t)


def _ten_to(t: float) -> float:
    """10**t by the C library's pow (``math.pow``, as Python's float power), as the notes'
    ``10**r``; inf past the largest float, as C's pow (Python raises OverflowError instead)."""
    try:
        return math.pow(10.0, t)
    except OverflowError:  # t > log10(max float): 10**log10(high) may round past it
        return math.inf


def _elementwise(function: Callable[[float], float], x: Float64Array) -> Float64Array:
    """`function` (a C-library function) of each element of x, in x's shape: one result on
    every machine, where NumPy's ufunc kernel depends on the CPU (see the module docstring)."""
    values = np.asarray(x)
    # The math functions take each element as a Python float; a list of floats is float64.
    flat = [function(v) for v in values.ravel().tolist()]
    return np.array(flat).reshape(values.shape)


Space = Mapping[str, Distribution]


@dataclass(frozen=True)
class Trial:
    """One evaluated point: the hyperparameters (read-only, in the space's order) and score."""

    params: Params
    score: float


@dataclass(frozen=True)
class SearchResult:
    """All trials in evaluation order and the best one (`minimize`: lower score is better)."""

    trials: tuple[Trial, ...]
    best: Trial
    minimize: bool


@dataclass(frozen=True)
class CoarseToFineResult:
    """Round i searched `spaces[i]` and gave `rounds[i]`; `best` is the best over all rounds."""

    rounds: tuple[SearchResult, ...]
    spaces: tuple[Space, ...]
    best: Trial


def sample_params(space: Space, rng: RandomSource) -> dict[str, float]:
    """One value per hyperparameter, drawn in the space's order (one uniform draw each)."""
    _check_space(space)
    return {name: float(dist.sample(rng, 1)[0]) for name, dist in space.items()}


def ranked(trials: Sequence[Trial], *, minimize: bool = True) -> list[Trial]:
    """The trials best first: ascending score if `minimize` else descending, ties in order."""
    _check_bool(minimize, "minimize")
    return sorted(trials, key=lambda t: t.score if minimize else -t.score)


def random_search(
    objective: Objective,
    space: Space,
    *,
    n_trials: int,
    seed: int | np.random.Generator,
    minimize: bool = True,
) -> SearchResult:
    """Trial i evaluates objective(params_i), params_i = `sample_params(space, rng)`, i < n_trials.

    rng = `random_source(seed)`; the trials are drawn one after the other, so the first n trials
    of a longer search from the same seed are the n trials of a shorter one.
    """
    count = check_int(n_trials, "n_trials", minimum=1)
    _check_space(space)
    return _sampled(objective, space, count, random_source(seed), minimize)


def grid_search(
    objective: Objective, grid: Mapping[str, Sequence[float]], *, minimize: bool = True
) -> SearchResult:
    """Evaluate every point of the Cartesian product of the grid's values (itertools.product
    order: the first name varies slowest)."""
    given: object = grid  # checked as an object: the annotation is the contract, not a fact
    if not isinstance(given, Mapping) or not given:
        raise ValueError(f"grid must be a non-empty mapping name -> values, got {grid!r}")
    axes: dict[str, list[float]] = {}
    for name, values in given.items():
        if not isinstance(name, str):
            raise TypeError(f"grid keys must be str, got {type(name).__name__} {name!r}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
            raise ValueError(
                f"grid[{name!r}] must be a non-empty sequence of numbers, got {values!r}"
            )
        axes[name] = [real_scalar(v, f"grid[{name!r}]") for v in values]
    points = (dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values()))
    return _evaluate(objective, points, minimize)


def narrow_space(
    space: Space, trials: Sequence[Trial], *, top_k: int, minimize: bool = True
) -> dict[str, Distribution]:
    """Each range becomes [min, max] of the top_k best trials' values, same law (coarse to fine).

    The new range holds the best trial and lies inside the old one: every trial must have a
    value inside the space's range for every name (ValueError otherwise, naming the trial).
    """
    _check_space(space)
    given: object = trials  # checked as an object: the annotation is the contract, not a fact
    if isinstance(given, (str, bytes)) or not isinstance(given, Sequence) or not given:
        raise ValueError(f"trials must be a non-empty sequence of Trial, got {trials!r}")
    k = check_int(top_k, "top_k", minimum=1)
    if k > len(given):
        raise ValueError(f"top_k must be <= the number of trials, {len(given)}, got {top_k!r}")
    for i, trial in enumerate(given):
        if not isinstance(trial, Trial):
            raise TypeError(f"trials[{i}] must be a Trial, got {type(trial).__name__}")
        for name, dist in space.items():
            if name not in trial.params:
                raise ValueError(f"trials[{i}] has no value for {name!r}: {dict(trial.params)}")
            if not dist.contains(trial.params[name]):
                raise ValueError(
                    f"trials[{i}] has {name}={trial.params[name]!r} outside the space's range "
                    f"[{dist.low!r}, {dist.high!r}]"
                )
    top = ranked(trials, minimize=minimize)[:k]
    return {
        name: dist.narrowed(min(t.params[name] for t in top), max(t.params[name] for t in top))
        for name, dist in space.items()
    }


def coarse_to_fine(
    objective: Objective,
    space: Space,
    *,
    n_trials: int,
    rounds: int,
    top_k: int,
    seed: int | np.random.Generator,
    minimize: bool = True,
) -> CoarseToFineResult:
    """Round 0 is `random_search` on `space`; round r + 1 searches
    narrow_space(space_r, trials of round r, top_k) with the same rng (`random_source(seed)`)."""
    count = check_int(rounds, "rounds", minimum=1)
    k = check_int(top_k, "top_k", minimum=1)
    n = check_int(n_trials, "n_trials", minimum=1)
    if k > n:
        raise ValueError(f"top_k must be <= n_trials = {n}, got {top_k!r}")
    rng = random_source(seed)
    spaces: list[Space] = [MappingProxyType(dict(space))]
    results: list[SearchResult] = []
    for r in range(count):
        if r > 0:
            narrowed = narrow_space(spaces[-1], results[-1].trials, top_k=k, minimize=minimize)
            spaces.append(MappingProxyType(narrowed))
        results.append(_sampled(objective, spaces[-1], n, rng, minimize))
    best = ranked([res.best for res in results], minimize=minimize)[0]
    return CoarseToFineResult(rounds=tuple(results), spaces=tuple(spaces), best=best)


def _sampled(
    objective: Objective, space: Space, n_trials: int, rng: RandomSource, minimize: bool
) -> SearchResult:
    """n_trials trials, each drawn with `sample_params(space, rng)` just before it is scored."""
    return _evaluate(objective, (sample_params(space, rng) for _ in range(n_trials)), minimize)


def _evaluate(
    objective: Objective, points: Iterable[dict[str, float]], minimize: bool
) -> SearchResult:
    """Score each point in order; reject a score that is not a real number or is NaN."""
    _check_bool(minimize, "minimize")
    if not callable(objective):
        raise TypeError(f"objective must be callable, got {type(objective).__name__}")
    trials: list[Trial] = []
    for i, point in enumerate(points):
        params = MappingProxyType(point)
        returned: object = objective(params)  # checked as an object: a user's callable
        score = real_scalar(returned, f"the objective's score for trial {i} {point}")
        if math.isnan(score):
            raise ValueError(f"the objective's score for trial {i} {point} is NaN")
        trials.append(Trial(params=params, score=score))
    return SearchResult(
        trials=tuple(trials), best=ranked(trials, minimize=minimize)[0], minimize=minimize
    )


def _check_space(space: object) -> None:
    if not isinstance(space, Mapping) or not space:
        raise ValueError(f"space must be a non-empty mapping name -> Distribution, got {space!r}")
    for name, dist in space.items():
        if not isinstance(name, str):
            raise TypeError(f"space keys must be str, got {type(name).__name__} {name!r}")
        if not isinstance(dist, Distribution):
            raise TypeError(f"space[{name!r}] must be a Distribution, got {type(dist).__name__}")


def _check_bool(value: object, name: str) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")
