"""Hyperparameter search: the notes' sampling code bit for bit, the laws, searches, narrowing,
every rejection, and the search properties with the broken functions each one catches."""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray
from scipy import stats

from properties.adapter import ReferenceImplementation
from properties.framework import Property, PropertyFailure
from properties.search_props import (
    ALPHA,
    BETA_CASES,
    LOG_CASES,
    PROPERTIES,
    QUARTER_TOLERANCE,
    REFERENCE_FUNCTIONS,
    UNIFORM_CASES,
    BestCase,
    NarrowCase,
    QuartersCase,
    SearchFunctions,
    ks_test,
    search_properties,
)
from properties.tolerances import SAFETY, U64
from reference._validation import RandomSource, random_source
from reference.hyperparameter_search import (
    CoarseToFineResult,
    Distribution,
    LogUniform,
    OneMinusLogUniform,
    SearchResult,
    Trial,
    Uniform,
    coarse_to_fine,
    grid_search,
    narrow_space,
    random_search,
    ranked,
    sample_params,
)

Array = NDArray[np.float64]
SPACE: dict[str, Distribution] = {
    "lr": LogUniform(1e-4, 1.0),
    "lambda": LogUniform(1e-8, 1e-6),
    "beta": OneMinusLogUniform(0.9, 0.999),
    "units": Uniform(50.0, 150.0),
}


@contextmanager
def global_rng_restored() -> Iterator[None]:
    """Save NumPy's global RNG state and put it back afterwards."""
    state = np.random.get_state()  # noqa: NPY002 -- saved to prove it is left alone
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


def quadratic(params: Mapping[str, float]) -> float:
    """A loss with its minimum at lr = 10**-2.5, lambda = 10**-7 (in decades)."""
    return (math.log10(params["lr"]) + 2.5) ** 2 + (math.log10(params["lambda"]) + 7.0) ** 2


# --- (1) the notes' code, bit for bit --------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 10, 2**32 - 1])
def test_learning_rate_is_the_notes_draw_bit_for_bit(seed: int) -> None:
    with global_rng_restored():
        np.random.seed(seed)  # noqa: NPY002 -- the notes' own calls, compared
        notes = []
        for _ in range(50):
            r = -4 * np.random.rand()  # noqa: NPY002 -- "r = -4 * np.random.rand()"
            notes.append(10**r)  # "alpha = 10**r"
    ours = LogUniform(1e-4, 1.0).sample(np.random.RandomState(seed), 50)
    assert np.array_equal(ours, np.array(notes))
    search = random_search(lambda p: p["lr"], {"lr": LogUniform(1e-4, 1.0)}, n_trials=50, seed=seed)
    assert [t.params["lr"] for t in search.trials] == notes


def test_beta_is_one_minus_ten_to_r() -> None:
    u = np.random.RandomState(4).random_sample(20)
    r = math.log10(1 - 0.999) - (math.log10(1 - 0.999) - math.log10(1 - 0.9)) * u  # in [-3, -1]
    beta = OneMinusLogUniform(0.9, 0.999).sample(np.random.RandomState(4), 20)
    assert np.array_equal(beta, np.clip(1 - 10**r, 0.9, 0.999))
    assert ((1 - beta >= 1e-3 * (1 - 4 * U64)) & (1 - beta <= 0.1 * (1 + 4 * U64))).all()


@pytest.mark.parametrize("make", [Uniform, LogUniform, OneMinusLogUniform])
def test_bounds_are_stored_as_python_floats(make: type[Distribution]) -> None:
    low: Any = np.float32(0.25)  # NumPy scalars, not the annotated float: converted
    high: Any = np.float16(0.5)
    dist = make(low, high)
    assert type(dist.low) is float
    assert type(dist.high) is float
    assert (dist.low, dist.high) == (0.25, 0.5)


def test_every_sample_is_inside_its_range_even_when_degenerate() -> None:
    rng = np.random.default_rng(0)
    for dist in (*SPACE.values(), LogUniform(3e-3, 7e-3), OneMinusLogUniform(0.0, 0.5)):
        x = dist.sample(rng, 5000)
        assert ((x >= dist.low) & (x <= dist.high)).all()
    for dist in (LogUniform(0.3, 0.3), OneMinusLogUniform(0.9, 0.9), Uniform(2.0, 2.0)):
        assert (dist.sample(rng, 10) == dist.low).all()
    assert LogUniform(1e-4, 1.0).sample(rng, 0).shape == (0,)


@pytest.mark.parametrize("high", [0.2, 3e-3, 7e-3, 0.07])
def test_the_draw_zero_gives_high_exactly_although_the_power_rounds_above(high: float) -> None:
    # 10**log10(high) by the C library rounds one ulp above high for these (glibc; the
    # reference's power and log10): the clip keeps u = 0 at high.
    assert 10.0 ** math.log10(high) > high
    assert LogUniform(1e-4, high).from_uniform(np.zeros(1))[0] == high


def test_a_range_up_to_the_largest_float_samples_it_without_overflow() -> None:
    # 10**log10(max float) rounds past the largest float: C's pow gives inf there, the clip max.
    top = sys.float_info.max
    assert LogUniform(1.0, top).from_uniform(np.array([0.0, 1.0])).tolist() == [top, 1.0]


def test_power_and_log10_are_the_c_librarys_whatever_numpys_kernel() -> None:
    # NumPy's float64 power and log10 kernels depend on the CPU (SVML on AVX-512 machines) and
    # differ from the C library's by an ulp on some inputs; the reference's are the C library's
    # on every machine, element by element and in the input's shape.
    t = np.linspace(-4.0, 0.0, 2001).reshape(23, 87)
    dist = LogUniform(1e-4, 1.0)
    assert np.array_equal(dist.inverse(t), [[10.0**v for v in row] for row in t.tolist()])
    x = dist.inverse(t)
    assert np.array_equal(dist.transform(x), [[math.log10(v) for v in row] for row in x.tolist()])
    beta = OneMinusLogUniform(0.9, 0.999)
    assert np.array_equal(beta.inverse(t), [[1.0 - 10.0**v for v in row] for row in t.tolist()])
    y = beta.inverse(t[:, :40] / 4)  # in (0, 0.9]: 1 - y >= 0.1 > 0
    expected = [[math.log10(1.0 - v) for v in row] for row in y.tolist()]
    assert np.array_equal(beta.transform(y), expected)


def test_from_uniform_computes_in_float64_whatever_the_float_type_of_u() -> None:
    # u in extended precision (80-bit long double on x86-64) is rounded to float64 first. The
    # span log10(0.5) - log10(1e-3) is no power of two, so t computed from the long double u
    # and then rounded differs from t computed in float64 for about a third of these u (31 of
    # 99 on x86-64); where long double is float64 the test is trivially true.
    u: Any = np.arange(1, 100, dtype=np.longdouble) / 100  # not the annotated float64
    dist = LogUniform(1e-3, 0.5)
    values = dist.from_uniform(u)
    assert values.dtype == np.float64
    assert np.array_equal(values, dist.from_uniform(u.astype(np.float64)))


def test_samples_use_one_uniform_draw_each() -> None:
    rng, twin = np.random.default_rng(9), np.random.default_rng(9)
    LogUniform(1e-4, 1.0).sample(rng, 7)
    twin.random(7)
    assert rng.random() == twin.random()


# --- (2) the CDF and the notes' 3/4 ----------------------------------------------------------


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


# --- (3) searches ----------------------------------------------------------------------------


def test_random_search_is_reproducible_and_prefix_stable() -> None:
    long = random_search(quadratic, SPACE, n_trials=30, seed=5)
    again = random_search(quadratic, SPACE, n_trials=30, seed=5)
    short = random_search(quadratic, SPACE, n_trials=10, seed=5)
    assert long.trials == again.trials
    assert long.trials[:10] == short.trials
    assert [list(t.params) for t in long.trials] == [list(SPACE)] * 30  # the space's order


def test_random_search_with_a_generator_advances_it() -> None:
    rng = np.random.default_rng(2)
    first = random_search(quadratic, SPACE, n_trials=3, seed=rng)
    second = random_search(quadratic, SPACE, n_trials=3, seed=rng)
    both = random_search(quadratic, SPACE, n_trials=6, seed=np.random.default_rng(2))
    assert first.trials + second.trials == both.trials


def test_random_search_leaves_the_global_rng_alone() -> None:
    with global_rng_restored():
        np.random.seed(1)  # noqa: NPY002 -- a known state, restored afterwards
        expected = np.random.random()  # noqa: NPY002
        np.random.seed(1)  # noqa: NPY002
        random_search(quadratic, SPACE, n_trials=5, seed=0)
        assert np.random.random() == expected  # noqa: NPY002


def test_best_trial_minimize_and_maximize() -> None:
    result = random_search(quadratic, SPACE, n_trials=40, seed=0)
    assert isinstance(result, SearchResult)
    assert result.minimize
    assert result.best.score == min(t.score for t in result.trials)
    worst = random_search(quadratic, SPACE, n_trials=40, seed=0, minimize=False)
    assert worst.best.score == max(t.score for t in result.trials)
    assert ranked(result.trials)[0] == result.best


def test_trials_are_read_only() -> None:
    trial = random_search(quadratic, SPACE, n_trials=1, seed=0).best
    params: Any = trial.params  # a read-only mapping: the write below must fail
    with pytest.raises(TypeError):
        params["lr"] = 1.0
    seen: list[Mapping[str, float]] = []

    def objective(params: Mapping[str, float]) -> float:
        seen.append(params)
        return 0.0

    random_search(objective, SPACE, n_trials=2, seed=0)
    assert [list(p) for p in seen] == [list(SPACE)] * 2


def test_grid_search_is_the_product_in_order() -> None:
    grid = {"lr": [1e-3, 3e-3, 1e-1], "lambda": [1e-8, 1e-7]}
    result = grid_search(quadratic, grid)
    points = [(t.params["lr"], t.params["lambda"]) for t in result.trials]
    assert points == [(a, b) for a in grid["lr"] for b in grid["lambda"]]
    assert result.best.params == {"lr": 3e-3, "lambda": 1e-7}  # 0.023 decades from the minimum
    assert result.best == min(result.trials, key=lambda t: t.score)


def test_grid_best_tie_is_the_first() -> None:
    result = grid_search(lambda p: abs(p["x"]), {"x": [-1.0, 1.0, -1.0, 2.0]})
    assert result.best is result.trials[0]


def test_sample_params_and_random_source() -> None:
    rng = random_source(3)
    assert isinstance(rng, np.random.RandomState)
    params = sample_params(SPACE, rng)
    assert list(params) == list(SPACE)
    assert all(SPACE[k].contains(v) for k, v in params.items())
    gen = np.random.default_rng(0)
    assert random_source(gen) is gen


# --- (4) narrowing and coarse to fine --------------------------------------------------------


def test_narrow_space_is_the_top_k_bounding_box() -> None:
    trials = (
        Trial({"lr": 1e-3, "beta": 0.95}, 3.0),
        Trial({"lr": 1e-2, "beta": 0.99}, 1.0),
        Trial({"lr": 1e-1, "beta": 0.91}, 2.0),
        Trial({"lr": 1e-4, "beta": 0.999}, 4.0),
    )
    space = {"lr": LogUniform(1e-4, 1.0), "beta": OneMinusLogUniform(0.9, 0.999)}
    fine = narrow_space(space, trials, top_k=2)
    assert fine == {"lr": LogUniform(1e-2, 1e-1), "beta": OneMinusLogUniform(0.91, 0.99)}
    high = narrow_space(space, trials, top_k=2, minimize=False)
    assert high == {"lr": LogUniform(1e-4, 1e-3), "beta": OneMinusLogUniform(0.95, 0.999)}
    assert narrow_space(space, trials, top_k=1) == {
        "lr": LogUniform(1e-2, 1e-2),
        "beta": OneMinusLogUniform(0.99, 0.99),
    }


def test_coarse_to_fine_rounds_are_nested_and_the_best_is_overall() -> None:
    result = coarse_to_fine(quadratic, SPACE, n_trials=20, rounds=3, top_k=5, seed=0)
    assert isinstance(result, CoarseToFineResult)
    assert len(result.rounds) == len(result.spaces) == 3
    for outer, inner in zip(result.spaces, result.spaces[1:], strict=False):
        for name in SPACE:
            assert outer[name].low <= inner[name].low <= inner[name].high <= outer[name].high
    for space, rnd in zip(result.spaces, result.rounds, strict=True):
        assert all(space[k].contains(v) for t in rnd.trials for k, v in t.params.items())
    assert result.best.score == min(t.score for r in result.rounds for t in r.trials)
    # Maximizing: the best is the highest score over all rounds, not the lowest round best.
    high = coarse_to_fine(
        lambda p: -quadratic(p), SPACE, n_trials=20, rounds=3, top_k=5, seed=0, minimize=False
    )
    assert high.best.score == max(t.score for r in high.rounds for t in r.trials)
    assert high.best.score > min(r.best.score for r in high.rounds)
    one = coarse_to_fine(quadratic, SPACE, n_trials=20, rounds=1, top_k=5, seed=0)
    assert one.rounds[0].trials == random_search(quadratic, SPACE, n_trials=20, seed=0).trials


@given(
    seed=st.integers(0, 2**32 - 1),
    n=st.integers(1, 8),
    rounds=st.integers(1, 4),
    k=st.integers(1, 8),
    minimize=st.booleans(),
)
def test_coarse_to_fine_nesting_for_any_seed(
    seed: int, n: int, rounds: int, k: int, minimize: bool
) -> None:
    k = min(k, n)
    result = coarse_to_fine(
        quadratic, SPACE, n_trials=n, rounds=rounds, top_k=k, seed=seed, minimize=minimize
    )
    for r in range(1, rounds):
        best = result.rounds[r - 1].best
        for name, dist in result.spaces[r].items():
            previous = result.spaces[r - 1][name]
            assert previous.low <= dist.low <= best.params[name] <= dist.high <= previous.high


# --- (5) every rejection ---------------------------------------------------------------------


_GEN = np.random.default_rng(0)


@pytest.mark.parametrize(
    ("make", "args", "error", "match"),
    [
        (LogUniform, (0.0, 1.0), ValueError, r"^low must be > 0"),
        (LogUniform, (-1.0, 1.0), ValueError, r"^low must be > 0"),
        (
            LogUniform,
            (1.0, 0.5),
            ValueError,
            r"^low must be <= high for LogUniform, got low=1\.0, high=0\.5$",
        ),
        (LogUniform, (math.nan, 1.0), ValueError, r"^low must be finite for LogUniform, got nan$"),
        (LogUniform, (1e-3, math.inf), ValueError, r"^high must be finite"),
        (LogUniform, ("1e-3", 1.0), TypeError, r"^low must"),
        (LogUniform, (1e-3, True), TypeError, r"^high must"),
        (OneMinusLogUniform, (-0.1, 0.5), ValueError, r"^low must be >= 0"),
        (OneMinusLogUniform, (0.5, 1.0), ValueError, r"^high must be < 1"),
        (OneMinusLogUniform, (0.9, 0.8), ValueError, r"^low must be <= high"),
        (Uniform, (math.nan, 1.0), ValueError, r"^low must be finite"),
        (Uniform, (2.0, 1.0), ValueError, r"^low must be <= high"),
        (
            LogUniform(1e-3, 1.0).sample,
            (_GEN, -1),
            ValueError,
            r"^size must be an integer >= 0, got -1$",
        ),
        (LogUniform(1e-3, 1.0).sample, (_GEN, 2.0), TypeError, r"^size must"),
        (
            LogUniform(1e-3, 1.0).sample,
            (0, 2),
            TypeError,
            r"^rng must be a numpy\.random\.Generator or RandomState, got int 0$",
        ),
        (LogUniform(1e-3, 1.0).cdf, ("x",), TypeError, r"^x must"),
        (sample_params, (SPACE, 3), TypeError, r"^rng must"),
        (random_source, (1.5,), TypeError, r"^seed must"),
        (random_source, (-1,), ValueError, r"^seed must be an integer >= 0, got -1$"),
        (sample_params, ({}, _GEN), ValueError, r"^space must be a non-empty mapping"),
        (lambda m: ranked([], minimize=m), ("yes",), TypeError, r"^minimize must be a bool"),
    ],
)
def test_distributions_reject_bad_arguments(
    make: Any, args: tuple[Any, ...], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        make(*args)


class _NaNAt:
    """An objective that returns NaN on its call number `bad` (counting from 0), else 1."""

    def __init__(self, bad: int) -> None:
        self.bad, self.calls = bad, 0

    def __call__(self, params: Mapping[str, float]) -> float:
        del params
        self.calls += 1
        return math.nan if self.calls - 1 == self.bad else 1.0


def _returns(value: object) -> Callable[[Mapping[str, float]], Any]:
    return lambda _params: value


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n_trials": 0}, ValueError, r"^n_trials must be an integer >= 1, got 0$"),
        ({"n_trials": 1.0}, TypeError, r"^n_trials must"),
        ({"seed": -1}, ValueError, r"^seed must"),
        ({"seed": 2**32}, ValueError, r"^seed must"),
        ({"seed": None}, TypeError, r"^seed must"),
        ({"seed": np.random.RandomState(0)}, TypeError, r"^seed must"),
        ({"space": {}}, ValueError, r"^space must"),
        ({"space": [1]}, ValueError, r"^space must"),
        ({"space": {"lr": 0.1}}, TypeError, r"^space\['lr'\] must be a Distribution, got float$"),
        ({"space": {1: SPACE["lr"]}}, TypeError, r"^space keys must be str, got int 1$"),
        ({"objective": "f"}, TypeError, r"^objective must be callable, got str$"),
        ({"minimize": 1}, TypeError, r"^minimize must be a bool, got int 1$"),
        ({"objective": _returns("1")}, TypeError, r"^the objective's score for trial 0 "),
        ({"objective": _returns(True)}, TypeError, r"^the objective's score for trial 0 "),
        ({"objective": _returns(np.ones(1))}, TypeError, r"^the objective's score for trial 0 "),
        (
            {"objective": _NaNAt(2), "n_trials": 5},
            ValueError,
            r"^the objective's score for trial 2 .* is NaN$",
        ),
    ],
)
def test_random_search_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"objective": quadratic, "space": SPACE, "n_trials": 2, "seed": 0}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        random_search(args.pop("objective"), args.pop("space"), **args)


@pytest.mark.parametrize(
    ("objective", "grid", "error", "match"),
    [
        (quadratic, {}, ValueError, r"^grid must be a non-empty mapping"),
        (quadratic, [0.1], ValueError, r"^grid must be a non-empty mapping"),
        (quadratic, {"lr": []}, ValueError, r"^grid\['lr'\]"),
        (quadratic, {"lr": "abc"}, ValueError, r"^grid\['lr'\]"),
        (quadratic, {"lr": [0.1, "x"]}, TypeError, r"^grid\['lr'\]"),
        (quadratic, {3: [0.1]}, TypeError, r"^grid keys must be str, got int 3$"),
        (
            _returns(math.nan),
            {"x": [0.0, 1.0]},
            ValueError,
            r"^the objective's score for trial 0 .* is NaN$",
        ),
        (_returns(None), {"x": [0.0]}, TypeError, r"^the objective's score for trial 0 "),
    ],
)
def test_grid_search_rejects_bad_arguments(
    objective: Any, grid: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        grid_search(objective, grid)


_TRIALS = (Trial({"lr": 1e-3}, 1.0), Trial({"lr": 1e-2}, 2.0))
_LR = {"lr": LogUniform(1e-4, 1.0)}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"top_k": 0}, ValueError, r"^top_k must"),
        ({"top_k": 3}, ValueError, r"^top_k must be <= the number of trials, 2"),
        ({"top_k": 1.0}, TypeError, r"^top_k must"),
        ({"trials": ()}, ValueError, r"^trials must"),
        ({"trials": "ab"}, ValueError, r"^trials must"),
        ({"trials": (_TRIALS[0], 3)}, TypeError, r"^trials\[1\] must be a Trial, got int$"),
        ({"trials": (Trial({"x": 1.0}, 0.0),)}, ValueError, r"^trials\[0\] has no value for 'lr'"),
        ({"trials": (Trial({"lr": 2.0}, 0.0),)}, ValueError, r"^trials\[0\] has lr=2.0 outside"),
        ({"space": {}}, ValueError, r"^space must"),
        ({"minimize": None}, TypeError, r"^minimize must"),
    ],
)
def test_narrow_space_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"space": _LR, "trials": _TRIALS, "top_k": 1}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        narrow_space(args.pop("space"), args.pop("trials"), **args)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rounds": 0}, ValueError, r"^rounds must be an integer >= 1, got 0$"),
        ({"rounds": 2.0}, TypeError, r"^rounds must"),
        ({"top_k": 6}, ValueError, r"^top_k must be <= n_trials = 5"),
        ({"top_k": 0}, ValueError, r"^top_k must"),
        ({"n_trials": 0}, ValueError, r"^n_trials must be an integer >= 1, got 0$"),
        ({"seed": -1}, ValueError, r"^seed must"),
        ({"minimize": "yes"}, TypeError, r"^minimize must"),
    ],
)
def test_coarse_to_fine_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"n_trials": 5, "rounds": 2, "top_k": 2, "seed": 0}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        coarse_to_fine(quadratic, SPACE, **args)


# --- (6) the properties and what each one catches --------------------------------------------

_SEARCH = [p for p in PROPERTIES if p.name != "search-split-partition"]  # split: test_data_split


@pytest.mark.parametrize("prop", _SEARCH, ids=lambda p: p.name)
def test_property(prop: Property) -> None:
    prop.as_test(ReferenceImplementation())()


def _sampler(
    transform: Callable[[Distribution, Array], Array],
) -> Callable[[Distribution, RandomSource, int], Array]:
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


def _judge_all(prop: Property, cases: Sequence[Any]) -> bool:
    """Whether `prop` fails on any of `cases`."""
    impl = ReferenceImplementation()
    for case in cases:
        try:
            prop.judge(impl, case)
        except PropertyFailure:
            return True
    return False


_FIXED_CASES: dict[str, tuple[Any, ...]] = {
    "search-log-uniform-law": LOG_CASES,
    "search-one-minus-beta-law": BETA_CASES,
    "search-uniform-law": UNIFORM_CASES,
    "search-three-quarters": (QuartersCase(),),
}


@pytest.mark.parametrize(
    ("transform", "caught_by"),
    [
        (
            _value_scale,
            {"search-log-uniform-law", "search-one-minus-beta-law", "search-three-quarters"},
        ),
        (_exponents_off_by_one, {"search-log-uniform-law", "search-three-quarters"}),
        (_natural_log, {"search-log-uniform-law", "search-three-quarters"}),
        (_beta_log_uniform, {"search-one-minus-beta-law"}),
        (
            _skewed,
            {
                "search-log-uniform-law",
                "search-one-minus-beta-law",
                "search-uniform-law",
                "search-three-quarters",
            },
        ),
    ],
)
def test_law_properties_catch_broken_samplers(
    transform: Callable[[Distribution, Array], Array], caught_by: set[str]
) -> None:
    functions = SearchFunctions(
        sample=_sampler(transform),
        grid=REFERENCE_FUNCTIONS.grid,
        narrow=REFERENCE_FUNCTIONS.narrow,
        split=REFERENCE_FUNCTIONS.split,
    )
    props = {p.name: p for p in search_properties(functions)}
    failed = {name for name, cases in _FIXED_CASES.items() if _judge_all(props[name], cases)}
    assert failed == caught_by


def test_law_cases_pass_with_a_replayed_reference() -> None:
    """The planted samplers differ from the reference only in their map: the reference map of
    the same uniforms passes."""
    functions = SearchFunctions(
        sample=_sampler(lambda d, u: d.from_uniform(u)),
        grid=REFERENCE_FUNCTIONS.grid,
        narrow=REFERENCE_FUNCTIONS.narrow,
        split=REFERENCE_FUNCTIONS.split,
    )
    props = {p.name: p for p in search_properties(functions)}
    assert not any(_judge_all(props[name], cases) for name, cases in _FIXED_CASES.items())


# Narrowing: a fixed case where each mistake shows.
_NARROW = NarrowCase(
    space={"lr": LogUniform(1e-4, 1.0), "beta": OneMinusLogUniform(0.9, 0.999)},
    trials=(
        Trial({"lr": 1e-3, "beta": 0.95}, 3.0),
        Trial({"lr": 1e-2, "beta": 0.99}, 1.0),
        Trial({"lr": 1e-1, "beta": 0.91}, 2.0),
        Trial({"lr": 1e-4, "beta": 0.999}, 4.0),
    ),
    top_k=2,
    minimize=False,
)


def _always_minimize(
    space: Mapping[str, Distribution], trials: Sequence[Trial], top_k: int, minimize: bool
) -> Mapping[str, Distribution]:
    del minimize
    return narrow_space(space, trials, top_k=top_k)


def _all_trials(
    space: Mapping[str, Distribution], trials: Sequence[Trial], top_k: int, minimize: bool
) -> Mapping[str, Distribution]:
    del top_k
    return narrow_space(space, trials, top_k=len(trials), minimize=minimize)


def _widened(
    space: Mapping[str, Distribution], trials: Sequence[Trial], top_k: int, minimize: bool
) -> Mapping[str, Distribution]:
    new = narrow_space(space, trials, top_k=top_k, minimize=minimize)
    # a decade of margin on each side of a log range, not clipped to the old range
    return {
        k: LogUniform(d.low / 10, d.high * 10) if isinstance(d, LogUniform) else d
        for k, d in new.items()
    }


def _relabelled(
    space: Mapping[str, Distribution], trials: Sequence[Trial], top_k: int, minimize: bool
) -> Mapping[str, Distribution]:
    new = narrow_space(space, trials, top_k=top_k, minimize=minimize)
    return {k: Uniform(d.low, d.high) for k, d in new.items()}


def _reordered(
    space: Mapping[str, Distribution], trials: Sequence[Trial], top_k: int, minimize: bool
) -> Mapping[str, Distribution]:
    new = narrow_space(space, trials, top_k=top_k, minimize=minimize)
    return dict(reversed(new.items()))


def _without_best(
    space: Mapping[str, Distribution], trials: Sequence[Trial], top_k: int, minimize: bool
) -> Mapping[str, Distribution]:
    best = ranked(trials, minimize=minimize)[0]
    rest = [t for t in trials if t is not best]
    return narrow_space(space, rest, top_k=min(top_k, len(rest)), minimize=minimize)


@pytest.mark.parametrize(
    ("narrow", "caught"),
    [
        (_always_minimize, True),
        (_all_trials, True),
        (_widened, True),
        (_relabelled, True),
        (_reordered, True),
        (_without_best, True),
    ],
)
def test_narrow_property_catches_broken_narrowing(narrow: Any, caught: bool) -> None:
    functions = SearchFunctions(
        sample=REFERENCE_FUNCTIONS.sample,
        grid=REFERENCE_FUNCTIONS.grid,
        narrow=narrow,
        split=REFERENCE_FUNCTIONS.split,
    )
    props = {p.name: p for p in search_properties(functions)}
    assert _judge_all(props["search-narrow"], [_NARROW]) is caught
    assert not _judge_all({p.name: p for p in PROPERTIES}["search-narrow"], [_NARROW])


def _last_of_ties(
    objective: Callable[[Mapping[str, float]], float],
    grid: Mapping[str, Sequence[float]],
    minimize: bool,
) -> SearchResult:
    result = grid_search(objective, grid, minimize=minimize)
    return SearchResult(result.trials, ranked(result.trials[::-1], minimize=minimize)[0], minimize)


def _ignores_direction(
    objective: Callable[[Mapping[str, float]], float],
    grid: Mapping[str, Sequence[float]],
    minimize: bool,
) -> SearchResult:
    del minimize
    return grid_search(objective, grid)


@pytest.mark.parametrize(
    ("grid", "case"),
    [
        (_last_of_ties, BestCase((2.0, 1.0, 3.0, 1.0), minimize=True)),
        (_ignores_direction, BestCase((2.0, 1.0, 3.0), minimize=False)),
    ],
)
def test_best_trial_property_catches_broken_searches(grid: Any, case: BestCase) -> None:
    functions = SearchFunctions(
        sample=REFERENCE_FUNCTIONS.sample,
        grid=grid,
        narrow=REFERENCE_FUNCTIONS.narrow,
        split=REFERENCE_FUNCTIONS.split,
    )
    props = {p.name: p for p in search_properties(functions)}
    assert _judge_all(props["search-best-trial"], [case])
    assert not _judge_all({p.name: p for p in PROPERTIES}["search-best-trial"], [case])


def test_fixed_law_case_shapes() -> None:
    assert all(c.n == 2000 for c in (*LOG_CASES, *BETA_CASES, *UNIFORM_CASES))
