"""Hyperparameter search: the notes' sampling code bit for bit, searches, narrowing, every
rejection, and the narrowing and best-trial claims with the broken functions each one catches
(the samplers' laws: tests/test_sampling_laws.py)."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from claims import assert_holds, broken, exact
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray

from properties.framework import Measurement
from properties.tolerances import U64
from reference._validation import random_source
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


# --- (2) searches ----------------------------------------------------------------------------


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


# --- (3) narrowing and coarse to fine --------------------------------------------------------


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


# --- (4) every rejection ---------------------------------------------------------------------


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


# --- (5) narrowing and the best trial as claims, and what each one catches -------------------

GridSearch = Callable[
    [Callable[[Mapping[str, float]], float], Mapping[str, Sequence[float]], bool], SearchResult
]
Narrow = Callable[
    [Mapping[str, Distribution], Sequence[Trial], int, bool], Mapping[str, Distribution]
]


def reference_grid(
    objective: Callable[[Mapping[str, float]], float],
    grid: Mapping[str, Sequence[float]],
    minimize: bool,
) -> SearchResult:
    """`grid_search` with positional arguments, as a grid search under test is called."""
    return grid_search(objective, grid, minimize=minimize)


def reference_narrow(
    space: Mapping[str, Distribution], trials: Sequence[Trial], top_k: int, minimize: bool
) -> Mapping[str, Distribution]:
    """`narrow_space` with positional arguments, as a narrowing under test is called."""
    return narrow_space(space, trials, top_k=top_k, minimize=minimize)


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


def check_narrow(case: NarrowCase, narrow: Narrow = reference_narrow) -> list[Measurement]:
    """Each new range holds the best trial, lies in the old range, is the top_k's [min, max]."""
    new = narrow(case.space, case.trials, case.top_k, case.minimize)
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
        exact("same names, in order", same_names),
        exact("new range holds the best trial", holds_best),
        exact("new range lies inside the old one", inside),
        exact("new range is [min, max] of the top_k trials", tight),
        exact("same law (Uniform, LogUniform, OneMinusLogUniform)", same_law),
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


def check_best_trial(case: BestCase, grid: GridSearch = reference_grid) -> list[Measurement]:
    """Trials come back in grid order with their scores; the best is the first optimum."""
    result = grid(
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
        exact("trials in grid order with their scores", in_order),
        exact("best is the first optimum", best),
    ]


@st.composite
def best_cases(draw: st.DrawFn) -> BestCase:
    """1-20 scores with ties and infinities, minimize or maximize."""
    score = st.one_of(st.sampled_from((0.0, 1.0, math.inf, -math.inf)), st.floats(-1e6, 1e6))
    return BestCase(tuple(draw(st.lists(score, min_size=1, max_size=20))), draw(st.booleans()))


@given(case=narrow_cases())
def test_narrowed_ranges_are_the_bounding_box_of_the_top_trials(case: NarrowCase) -> None:
    """A narrowed range holds the best trial, lies inside the old one and is the bounding box
    of the top_k trials, same law."""
    assert_holds(check_narrow(case))


@given(case=best_cases())
def test_the_best_trial_is_the_first_of_the_best_scores(case: BestCase) -> None:
    """A search's trials come in grid order; its best trial is the first of the best scores."""
    assert_holds(check_best_trial(case))


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
def test_narrow_claim_catches_broken_narrowing(narrow: Narrow, caught: bool) -> None:
    assert broken(check_narrow(_NARROW, narrow)) is caught
    assert not broken(check_narrow(_NARROW))


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
def test_best_trial_claim_catches_broken_searches(grid: GridSearch, case: BestCase) -> None:
    assert broken(check_best_trial(case, grid))
    assert not broken(check_best_trial(case))
