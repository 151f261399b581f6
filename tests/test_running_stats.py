"""Running statistics: hand-computed updates per convention, the properties, every rejection."""

import math
from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import properties.running_stats_props as rsp
from properties.adapter import (
    Array,
    BackwardOutput,
    ForwardOutput,
    ReferenceImplementation,
    Rounded,
    RunningStats,
)
from properties.batchnorm_props import GradientCase
from properties.framework import Property, PropertyFailure, Unsupported
from properties.running_stats_props import (
    PROPERTIES,
    CumulativeCase,
    LayerStepCase,
    RunningStatsCase,
    check_cumulative_average,
    check_frozen_backward,
    check_running_stats_formula,
)
from properties.strategies import BatchCase, cast_case
from properties.tolerances import SAFETY, U64, precision
from reference.conventions import CONVENTIONS, Convention
from reference.running_stats import RunningStats as RefStats
from reference.running_stats import population_statistics, update_running_stats

# The batch of the hand computations: channel 0 holds 1, 2, 3, 6 (mean 3, sum of squared
# deviations 4 + 1 + 0 + 9 = 14, biased variance 14/4 = 3.5, unbiased 14/3), channel 1 is
# constant 10 (mean 10, variance 0). Running statistics before the step: mean 0, variance 1.
X = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [6.0, 10.0]])
BATCH_MEAN = np.array([3.0, 10.0])
BATCH_VAR = np.array([3.5, 0.0])
RM0 = np.array([0.0, 0.0])
RV0 = np.array([1.0, 1.0])
# A few roundings of numbers near 1: weights, products, one sum, n/(n-1).
RTOL = 8 * U64

# convention: (running mean, running var) after one step with the default momentum. The
# weights are written as the floats the conventions use: 0.99 is not exactly 99/100, and
# 1 - 0.99 = 0.010000000000000009 exactly (Sterbenz), so "0.01 * 3" would be 9e-16 off.
_K = 1 - 0.99  # Keras, TensorFlow, Flax: weight of the batch
HAND = {
    # 0.9*0 + 0.1*3 ; 0.9*1 + 0.1*(14/3)
    "pytorch": ([0.1 * 3, 0.1 * 10], [0.9 + 0.1 * 14 / 3, 0.9]),
    # 0.99*0 + 0.01*3 ; 0.99*1 + 0.01*3.5
    "keras": ([_K * 3, _K * 10], [0.99 + _K * 3.5, 0.99]),
    # as keras, but the variance enters unbiased: 0.99 + 0.01*(14/3)
    "tensorflow": ([_K * 3, _K * 10], [0.99 + _K * 14 / 3, 0.99]),
    "flax": ([_K * 3, _K * 10], [0.99 + _K * 3.5, 0.99]),
    # 0.9*0 + 0.1*3 ; 0.9*1 + 0.1*3.5
    "onnx": ([(1 - 0.9) * 3, (1 - 0.9) * 10], [0.9 + (1 - 0.9) * 3.5, 0.9]),
    "textbook": ([(1 - 0.9) * 3, (1 - 0.9) * 10], [0.9 + (1 - 0.9) * 3.5, 0.9]),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_one_update_by_hand(name: str) -> None:
    want_mean, want_var = HAND[name]
    got = update_running_stats(RM0, RV0, BATCH_MEAN, BATCH_VAR, 4, convention=name)
    np.testing.assert_allclose(got.mean, want_mean, rtol=RTOL, atol=0)
    np.testing.assert_allclose(got.var, want_var, rtol=RTOL, atol=0)


@pytest.mark.parametrize("name", sorted(HAND))
def test_the_adapter_computes_the_batch_statistics_itself(name: str) -> None:
    conv = CONVENTIONS[name]
    impl = ReferenceImplementation(name)
    got = impl.update_running_stats(
        X, RM0, RV0, momentum=conv.momentum, num_batches_tracked=None, axis=1
    )
    want_mean, want_var = HAND[name]
    np.testing.assert_allclose(got.mean, want_mean, rtol=RTOL, atol=0)
    np.testing.assert_allclose(got.var, want_var, rtol=RTOL, atol=0)


def test_pytorch_default_momentum_is_0_1() -> None:
    default = update_running_stats(RM0, RV0, BATCH_MEAN, BATCH_VAR, 4)
    explicit = update_running_stats(RM0, RV0, BATCH_MEAN, BATCH_VAR, 4, momentum=0.1)
    np.testing.assert_array_equal(default.mean, explicit.mean)
    np.testing.assert_array_equal(default.var, explicit.var)


@pytest.mark.parametrize(("name", "keeps", "replaces"), [("pytorch", 0.0, 1.0), ("onnx", 1.0, 0.0)])
def test_momentum_extremes_keep_or_replace_exactly(
    name: str, keeps: float, replaces: float
) -> None:
    kept = update_running_stats(RM0, RV0, BATCH_MEAN, BATCH_VAR, 4, convention=name, momentum=keeps)
    np.testing.assert_array_equal(kept.mean, RM0)
    np.testing.assert_array_equal(kept.var, RV0)
    new = update_running_stats(
        RM0, RV0, BATCH_MEAN, BATCH_VAR, 4, convention=name, momentum=replaces
    )
    np.testing.assert_array_equal(new.mean, BATCH_MEAN)
    factor = 4 / 3 if CONVENTIONS[name].unbiased_var else 1.0
    np.testing.assert_array_equal(new.var, BATCH_VAR * factor)


def test_cumulative_average_by_hand() -> None:
    # num_batches_tracked = 1: weight 1 on the batch, the starting values are forgotten.
    first = update_running_stats(
        [5.0, -7.0], [9.0, 9.0], BATCH_MEAN, BATCH_VAR, 4, momentum=None, num_batches_tracked=1
    )
    np.testing.assert_array_equal(first.mean, BATCH_MEAN)
    np.testing.assert_allclose(first.var, [14 / 3, 0.0], rtol=RTOL, atol=0)
    # num_batches_tracked = 2 from (1, 2): weights 1/2, 1/2.
    second = update_running_stats(
        [1.0, 1.0], [2.0, 2.0], BATCH_MEAN, BATCH_VAR, 4, momentum=None, num_batches_tracked=2
    )
    np.testing.assert_array_equal(second.mean, [2.0, 5.5])
    np.testing.assert_allclose(second.var, [1 + 7 / 3, 1.0], rtol=RTOL, atol=0)


def test_num_batches_tracked_is_ignored_when_momentum_is_given() -> None:
    with_counter = update_running_stats(
        RM0, RV0, BATCH_MEAN, BATCH_VAR, 4, momentum=0.1, num_batches_tracked=7
    )
    without = update_running_stats(RM0, RV0, BATCH_MEAN, BATCH_VAR, 4, momentum=0.1)
    np.testing.assert_array_equal(with_counter.mean, without.mean)
    np.testing.assert_array_equal(with_counter.var, without.var)


def test_a_custom_convention_object_is_accepted() -> None:
    # MindSpore-style: momentum 0.9 on the old value, biased (a hand-built Convention).
    fields = {f: getattr(CONVENTIONS["onnx"], f) for f in CONVENTIONS["onnx"].__dataclass_fields__}
    custom = Convention(**(fields | {"name": "custom", "momentum": 0.5}))
    got = update_running_stats(RM0, RV0, BATCH_MEAN, BATCH_VAR, 4, convention=custom)
    np.testing.assert_array_equal(got.mean, [1.5, 5.0])
    np.testing.assert_array_equal(got.var, [2.25, 0.5])


def test_results_are_read_only_float64_vectors() -> None:
    got = update_running_stats([0, 0], [1, 1], [3, 10], [3.5, 0], 4)
    assert got.mean.dtype == np.float64
    assert got.var.dtype == np.float64
    with pytest.raises(ValueError, match="read-only"):
        got.mean[0] = 1.0


def test_inputs_are_not_mutated() -> None:
    rm, rv, bm, bv = (a.copy() for a in (RM0, RV0, BATCH_MEAN, BATCH_VAR))
    for name in CONVENTIONS:
        update_running_stats(rm, rv, bm, bv, 4, convention=name)
    update_running_stats(rm, rv, bm, bv, 4, momentum=None, num_batches_tracked=3)
    for before, after in zip((RM0, RV0, BATCH_MEAN, BATCH_VAR), (rm, rv, bm, bv), strict=True):
        np.testing.assert_array_equal(before, after)
    means = np.array([[1.0, 2.0], [3.0, 4.0]])
    variances = np.array([[1.0, 2.0], [3.0, 4.0]])
    population_statistics(means, variances, 3)
    np.testing.assert_array_equal(means, [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(variances, [[1.0, 2.0], [3.0, 4.0]])


# --- c) PyTorch momentum m is Keras momentum 1 - m, up to the unbiased factor ----------------
# A fact about two conventions, not about an implementation: a plain test of the reference.


@pytest.mark.parametrize("m", [0.5, 0.75, 0.875, 1.0])
def test_pytorch_and_keras_momentum_agree_exactly_when_1_minus_m_is_exact(m: float) -> None:
    # For m in [0.5, 1], 1 - m and 1 - (1 - m) are exact (Sterbenz), so both sides are the
    # same floating-point expression.
    unbiased = BATCH_VAR * (4 / 3)
    torch = update_running_stats(RM0, RV0, BATCH_MEAN, BATCH_VAR, 4, momentum=m)
    keras = update_running_stats(
        RM0, RV0, BATCH_MEAN, unbiased, 4, convention="keras", momentum=1.0 - m
    )
    np.testing.assert_array_equal(torch.mean, keras.mean)
    np.testing.assert_array_equal(torch.var, keras.var)


_VALUE = st.floats(-1e6, 1e6, allow_subnormal=False)
_VARIANCE = st.floats(0.0, 1e6, allow_subnormal=False)


@given(
    running=st.tuples(_VALUE, _VARIANCE),
    batch=st.tuples(_VALUE, _VARIANCE),
    n=st.integers(2, 10_000),
    m=st.floats(0.0, 1.0),
)
def test_pytorch_momentum_m_is_keras_momentum_1_minus_m(
    running: tuple[float, float], batch: tuple[float, float], n: int, m: float
) -> None:
    # Both weigh the running value by a = fl(1 - m): those products are identical. Keras
    # weighs the batch by fl(1 - a), within u (absolute) of m, so the batch products differ by
    # <= 3u|batch|, and the two final sums round once each: 5u|batch| + 2u|running| in all.
    (rm, rv), (bm, bv) = running, batch
    unbiased = bv * (n / (n - 1))  # the same expression update_running_stats evaluates
    torch = update_running_stats([rm], [rv], [bm], [bv], n, momentum=m)
    keras = update_running_stats(
        [rm], [rv], [bm], [unbiased], n, convention="keras", momentum=1 - m
    )
    np.testing.assert_allclose(
        keras.mean, torch.mean, rtol=0, atol=U64 * (5 * abs(bm) + 2 * abs(rm))
    )
    np.testing.assert_allclose(keras.var, torch.var, rtol=0, atol=U64 * (5 * unbiased + 2 * rv))


# --- population statistics (Ioffe & Szegedy 2015, Algorithm 2) -------------------------------


def test_population_statistics_by_hand() -> None:
    # Two batches of m = 3 values per channel; E[x] averages the means, Var[x] = 3/2 * mean var.
    got = population_statistics([[1.0, 2.0], [3.0, 6.0]], [[2.0, 0.0], [4.0, 1.0]], 3)
    np.testing.assert_array_equal(got.mean, [2.0, 4.0])
    np.testing.assert_array_equal(got.var, [4.5, 0.75])


def test_population_statistics_at_the_smallest_count() -> None:
    # m = 2 is allowed (m/(m-1) = 2 is finite): Var[x] = 2 * mean of the biased variances.
    got = population_statistics([[1.0], [3.0]], [[0.25], [1.0]], 2)
    np.testing.assert_array_equal(got.mean, [2.0])
    np.testing.assert_array_equal(got.var, [1.25])


def test_population_statistics_is_the_mean_of_unbiased_batch_variances() -> None:
    rng = np.random.default_rng(0)
    batches = rng.normal(3.0, 2.0, size=(5, 8, 3))  # 5 batches of m = 8 values, 3 channels
    got = population_statistics(batches.mean(axis=1), batches.var(axis=1), 8)
    np.testing.assert_allclose(got.mean, batches.mean(axis=(0, 1)), rtol=1e-14)
    np.testing.assert_allclose(got.var, batches.var(axis=1, ddof=1).mean(axis=0), rtol=1e-14)


def test_population_statistics_with_equal_batch_means_and_the_concatenated_batch() -> None:
    # Three batches of m = 4 values, every batch mean exactly 2: the biased variance of the
    # concatenation is then the mean of the batch variances, so Var[x] = m/(m-1) * that.
    # The concatenation's own unbiased variance uses km/(km-1) instead and is smaller.
    batches = np.array([[1.0, 3.0, 1.0, 3.0], [0.0, 4.0, 2.0, 2.0], [2.0, 2.0, 2.0, 2.0]])
    assert np.all(batches.mean(axis=1) == 2.0)
    got = population_statistics(batches.mean(axis=1)[:, None], batches.var(axis=1)[:, None], 4)
    whole = batches.ravel()
    assert got.mean[0] == whole.mean() == 2.0
    # batch variances 1, 2, 0: mean 1; concatenated biased variance 12/12 = 1.
    assert whole.var() == 1.0
    assert got.var[0] == 4 / 3 * whole.var()
    k, m = batches.shape
    np.testing.assert_allclose(
        whole.var(ddof=1), got.var[0] * (m - 1) / m * (k * m) / (k * m - 1), rtol=4 * U64
    )


# --- near the float64 limit: no step overflows where the result exists, else a ValueError ------

MAX = float(np.finfo(np.float64).max)


@pytest.mark.parametrize("convention", ["pytorch", "tensorflow"])
def test_an_unbiased_batch_variance_beyond_float64_is_weighted(convention: str) -> None:
    # n/(n-1) * batch_var = 2 * 1.5e308 is not a float64; b * 2 * 1.5e308 is (b = 0.1 or
    # fl(1 - 0.99), the default momenta), and so is a * 1e300 + that: the exact value rounded
    # once, then the sum. The unweighted product overflowed (inf with a RuntimeWarning only).
    a, b = CONVENTIONS[convention].weights(CONVENTIONS[convention].momentum)
    got = update_running_stats([0.0], [0.0], [0.0], [1.5e308], 2, convention=convention)
    assert got.var[0] == float(Fraction(b) * 2 * Fraction(1.5e308))
    got = update_running_stats([0.0], [1e300], [0.0], [1.5e308], 2, convention=convention)
    assert got.var[0] == a * 1e300 + float(Fraction(b) * 2 * Fraction(1.5e308))


def test_a_running_variance_beyond_float64_is_a_value_error() -> None:
    # 0.9 * 1.7e308 + 0.1 * 2 * 1.7e308 = 1.87e308 is beyond float64 (at most 1.8e308).
    with pytest.raises(
        ValueError,
        match=r"^running_var and batch_var must give a running variance within float64 \(at "
        r"most 1\.8e308\), got a \* running_var \+ b \* c \* batch_var beyond it in channel 1, "
        r"where running_var = 1\.7e\+308, batch_var = 1\.7e\+308, \(a, b\) = \(0\.9, 0\.1\) and "
        r"c = 2$",
    ):
        update_running_stats([0.0, 0.0], [1.0, 1.7e308], [0.0, 0.0], [1.0, 1.7e308], 2)


_UNIT = st.one_of(st.just(0.0), st.floats(1e-3, 1e3))


@given(
    statistics=st.lists(_UNIT, min_size=4, max_size=4),
    n=st.integers(2, 10_000),
    m=st.floats(0.0, 1.0),
    convention=st.sampled_from(sorted(CONVENTIONS)),
    data=st.data(),
)
def test_running_statistics_scale_exactly_with_a_power_of_two(
    statistics: list[float], n: int, m: float, convention: str, data: st.DataObject
) -> None:
    # Means times 2**j and variances times 4**j give results times 2**j and 4**j, bit for bit,
    # for every j that keeps the arguments, the results and the weighted terms a * running_var
    # and b * c * batch_var normal (or 0), c * batch_var included or not: from 2**1022 on, it
    # may pass 1.8e308.
    rm, rv, bm, bv = statistics
    base = update_running_stats([rm], [rv], [bm], [bv], n, convention=convention, momentum=m)
    a, b = CONVENTIONS[convention].weights(m)
    c = n / (n - 1) if CONVENTIONS[convention].unbiased_var else 1.0
    means = np.array([rm, bm, base.mean[0], a * rm, b * bm])
    variances = np.array([rv, bv, base.var[0], a * rv, b * (c * bv)])

    def exponents(values: np.ndarray, power: int) -> tuple[int, int]:
        e = np.frexp(values[values != 0])[1]  # 2**(e - 1) <= |value| < 2**e: normal from e = -1021
        low, high = (-1021 - e.min(initial=1024)) / power, (1024 - e.max(initial=-1021)) / power
        return math.ceil(low), math.floor(high)

    (low_m, high_m), (low_v, high_v) = exponents(means, 1), exponents(variances, 2)
    low, high = max(low_m, low_v), min(high_m, high_v)
    assume(low <= 0 <= high)  # the unscaled values are normal
    j = data.draw(st.sampled_from([low, high]) | st.integers(low, high), label="j")
    got = update_running_stats(
        [math.ldexp(rm, j)],
        [math.ldexp(rv, 2 * j)],
        [math.ldexp(bm, j)],
        [math.ldexp(bv, 2 * j)],
        n,
        convention=convention,
        momentum=m,
    )
    np.testing.assert_array_equal(got.mean, np.ldexp(base.mean, j), strict=True)
    np.testing.assert_array_equal(got.var, np.ldexp(base.var, 2 * j), strict=True)


def test_population_statistics_whose_sums_overflow() -> None:
    # The sum of the means, 2**1024, and of the variances, 4 * 2**1023, are beyond float64 (fsum
    # raised OverflowError); E[x] = 2**1022 and Var[x] = 3/2 * 2**1023 are not.
    got = population_statistics(
        [[2.0**1023], [2.0**1023], [2.0**1023], [-(2.0**1023)]], [[2.0**1023]] * 4, 3
    )
    np.testing.assert_array_equal(got.mean, [2.0**1022], strict=True)
    np.testing.assert_array_equal(got.var, [1.5 * 2.0**1023], strict=True)
    # Both are exact before one rounding: 1.5e308 / 3 and 1000/999 * 1.5e308 once rounded.
    got = population_statistics([[MAX], [MAX], [-MAX]], [[1.5e308]] * 3, 1000)
    assert got.mean[0] == float(Fraction(MAX) / 3)
    assert got.var[0] == float(Fraction(1000, 999) * Fraction(1.5e308))


def test_a_population_variance_beyond_float64_is_a_value_error() -> None:
    # m/(m-1) * mean = 3/2 * MAX = 2**1024.58 is beyond float64 (the sum of the variances too).
    with pytest.raises(
        ValueError,
        match=r"^batch_vars and count must give Var\[x\] = m/\(m-1\) \* mean\(batch_vars\) "
        r"within float64 \(at most 1\.8e308\), got about 2\*\*1024\.6 in channel 1$",
    ):
        population_statistics([[0.0, 0.0], [0.0, 0.0]], [[1.0, MAX], [1.0, MAX]], 3)
    # (2 MAX + 1) / 3 * 2/1 = 2**1024.4: the exact Var[x] has the denominator 3, which the
    # size in the message divides by.
    with pytest.raises(ValueError, match=r"got about 2\*\*1024\.4 in channel 0$"):
        population_statistics([[0.0]] * 3, [[MAX], [MAX], [1.0]], 2)


@pytest.mark.parametrize(
    ("batch_var", "count", "momentum"),
    [
        (2045.0, 2**20 + 1, 5e-324),  # b * c * batch_var = 2045.002 * 2**-1074, subnormal
        (3001.0, 2**20 + 1, 5e-324),
        (1e300, 3, 0.1),
        (1.5 * 2.0**1021, 2, 0.1),  # c * batch_var = 1.5 * 2**1022, still a float64
    ],
)
def test_a_running_variance_below_2_1022_is_the_plain_formula(
    batch_var: float, count: int, momentum: float
) -> None:
    # Only from batch_var = 2**1022 on may c * batch_var pass 1.8e308 (c = n/(n-1) <= 2); below,
    # a * running_var + b * (c * batch_var) is computed as it is, bit for bit, also where
    # b * c * batch_var is subnormal (halving batch_var first would round it a second time).
    got = update_running_stats([0.0], [0.0], [0.0], [batch_var], count, momentum=momentum)
    a, b = CONVENTIONS["pytorch"].weights(momentum)
    c = count / (count - 1)
    np.testing.assert_array_equal(got.var, [a * 0.0 + b * (c * batch_var)], strict=True)


@given(
    batches=st.integers(1, 5).flatmap(
        lambda k: st.tuples(
            st.lists(st.floats(-1e3, 1e3), min_size=k, max_size=k),
            st.lists(_UNIT, min_size=k, max_size=k),
        )
    ),
    count=st.integers(2, 1000),
    data=st.data(),
)
def test_population_statistics_scale_exactly_with_a_power_of_two(
    batches: tuple[list[float], list[float]], count: int, data: st.DataObject
) -> None:
    # Exact values rounded once: means times 2**j and variances times 4**j give E[x] times
    # 2**j and Var[x] times 4**j bit for bit wherever those stay normal (or 0), the sums too
    # beyond float64.
    means, variances = (np.array(v)[:, None] for v in batches)
    base = population_statistics(means, variances, count)
    values = [
        (np.concatenate([means.ravel(), base.mean]), 1),
        (np.concatenate([variances.ravel(), base.var]), 2),
    ]
    low = max(math.ceil((-1021 - np.frexp(v[v != 0])[1].min(initial=1024)) / p) for v, p in values)
    high = min(
        math.floor((1024 - np.frexp(v[v != 0])[1].max(initial=-1021)) / p) for v, p in values
    )
    assume(low <= 0 <= high)  # the unscaled values are normal
    j = data.draw(st.sampled_from([low, high]) | st.integers(low, high), label="j")
    got = population_statistics(np.ldexp(means, j), np.ldexp(variances, 2 * j), count)
    np.testing.assert_array_equal(got.mean, np.ldexp(base.mean, j), strict=True)
    np.testing.assert_array_equal(got.var, np.ldexp(base.var, 2 * j), strict=True)


# --- the properties, wired to the reference --------------------------------------------------

_WIRED = [
    (prop, name)
    for prop in PROPERTIES
    for name in sorted(CONVENTIONS)
    if prop.name != "cumulative-average" or CONVENTIONS[name].cumulative_average
]


@pytest.mark.parametrize(("prop", "name"), _WIRED, ids=lambda v: getattr(v, "name", v))
def test_reference_satisfies(prop: Property, name: str) -> None:
    prop.as_test(ReferenceImplementation(name))()


def test_cumulative_average_is_not_applicable_without_momentum_none() -> None:
    case = CumulativeCase((X,), 1, RM0, RV0)
    with pytest.raises(Unsupported, match="convention 'keras' of reference has no momentum=None"):
        check_cumulative_average(ReferenceImplementation("keras"), case)


# --- the properties catch wrong implementations ----------------------------------------------

CASE = RunningStatsCase(
    x=X,
    axis=1,
    running_mean=RM0,
    running_var=RV0,
    momentum=0.1,
    cumulative=False,
    num_batches_tracked=1,
)
_BY_NAME = {p.name: p for p in PROPERTIES}


class _Reports(ReferenceImplementation):
    """Computes with convention `actual` but claims convention `claimed`."""

    def __init__(self, actual: str, claimed: str) -> None:
        super().__init__(actual)
        self._claimed = claimed

    @property
    def convention(self) -> str:
        return self._claimed


@pytest.mark.parametrize(
    ("actual", "claimed"),
    [("keras", "pytorch"), ("keras", "tensorflow"), ("pytorch", "onnx"), ("flax", "tensorflow")],
)
def test_formula_property_catches_the_wrong_convention(actual: str, claimed: str) -> None:
    with pytest.raises(PropertyFailure, match="running"):
        _BY_NAME["running-stats-formula"].judge(_Reports(actual, claimed), CASE)


@pytest.mark.parametrize(("actual", "claimed"), [("flax", "textbook"), ("keras", "onnx")])
def test_conventions_that_differ_only_in_defaults_share_the_formula(
    actual: str, claimed: str
) -> None:
    # The case passes its momentum explicitly, so only the formula is compared.
    _BY_NAME["running-stats-formula"].judge(_Reports(actual, claimed), CASE)


class _MutatesRunningMean(ReferenceImplementation):
    def update_running_stats(
        self, x: Array, running_mean: Array, running_var: Array, **kw: Any
    ) -> RunningStats:
        out = super().update_running_stats(x, running_mean, running_var, **kw)
        running_mean[...] = out.mean  # what a module buffer update does
        return out


def test_formula_property_catches_an_in_place_update() -> None:
    with pytest.raises(PropertyFailure, match="running_mean after"):
        _BY_NAME["running-stats-formula"].judge(_MutatesRunningMean("pytorch"), CASE)


class _OnePassVariance(ReferenceImplementation):
    """Batch variance as E[x^2] - E[x]^2 (Flax's use_fast_variance=True default)."""

    def update_running_stats(
        self, x: Array, running_mean: Array, running_var: Array, **kw: Any
    ) -> RunningStats:
        mean = x.mean(axis=0)
        var = np.maximum((x * x).mean(axis=0) - mean * mean, 0.0)
        conv = CONVENTIONS[self.convention]
        momentum = conv.momentum if kw["momentum"] is None else kw["momentum"]
        out = update_running_stats(
            running_mean, running_var, mean, var, x.shape[0], convention=conv, momentum=momentum
        )
        return RunningStats(out.mean, out.var)


def test_formula_property_catches_a_one_pass_variance() -> None:
    # |mean|/std ~ 1e8: E[x^2] ~ 1e16 has a spacing of 2, larger than the variance 1.25.
    x = 1e8 + np.array([[0.0], [1.0], [2.0], [3.0]])
    case = RunningStatsCase(x, 1, np.zeros(1), np.ones(1), 0.5, False, 1)
    with pytest.raises(PropertyFailure, match="running var"):
        _BY_NAME["running-stats-formula"].judge(_OnePassVariance("flax"), case)
    _BY_NAME["running-stats-formula"].judge(ReferenceImplementation("flax"), case)


class _IgnoresCounter(ReferenceImplementation):
    def update_running_stats(
        self, x: Array, running_mean: Array, running_var: Array, **kw: Any
    ) -> RunningStats:
        if kw["momentum"] is None:
            kw = kw | {"momentum": 0.1, "num_batches_tracked": None}
        return super().update_running_stats(x, running_mean, running_var, **kw)


def test_cumulative_property_catches_an_exponential_average() -> None:
    case = CumulativeCase((X, X + 1.0), 1, RM0, RV0)
    with pytest.raises(PropertyFailure, match="cumulative"):
        _BY_NAME["cumulative-average"].judge(_IgnoresCounter("pytorch"), case)
    assert all(m.passed for m in check_cumulative_average(ReferenceImplementation(), case))


class _UnbiasedInference(ReferenceImplementation):
    def inference(
        self,
        x: Array,
        gamma: Array,
        beta: Array,
        running_mean: Array,
        running_var: Array,
        *,
        eps: float,
        axis: int,
    ) -> Array:
        n = x.size // x.shape[axis]
        return super().inference(
            x, gamma, beta, running_mean, running_var * n / (n - 1), eps=eps, axis=axis
        )


def test_inference_property_catches_an_unbiased_variance_at_inference() -> None:
    case = BatchCase(X, np.ones(2), np.zeros(2), 1e-5, 1, "float64")
    with pytest.raises(PropertyFailure, match="inference"):
        _BY_NAME["inference-equals-training"].judge(_UnbiasedInference(), case)
    _BY_NAME["inference-equals-training"].judge(ReferenceImplementation(), case)


# --- inference with running statistics unrelated to the batch --------------------------------

RM_FAR, RV_FAR = np.array([-5.0, 7.0]), np.array([0.25, 4.0])
INFERENCE_CASE = GradientCase(
    BatchCase(X, np.array([2.0, -1.0]), np.array([0.5, 0.0]), 1e-5, 1, "float64"),
    np.array([[0.5, -1.0], [2.0, 0.25], [-1.5, 1.0], [0.0, 3.0]]),
    RM_FAR,
    RV_FAR,
)


class _TrainingInference(ReferenceImplementation):
    """inference returns the training-mode output: the running statistics are ignored."""

    def inference(
        self,
        x: Array,
        gamma: Array,
        beta: Array,
        running_mean: Array,
        running_var: Array,
        *,
        eps: float,
        axis: int,
    ) -> Array:
        return self.forward(x, gamma, beta, eps=eps, axis=axis).y


def test_the_inference_formula_by_hand() -> None:
    """gamma (x - rm) / sqrt(rv + eps) + beta: channel 0 at x = 1 is 2 * 6 / sqrt(0.25 + eps)
    + 0.5, and the reference passes."""
    y = ReferenceImplementation().inference(
        X, INFERENCE_CASE.case.gamma, INFERENCE_CASE.case.beta, RM_FAR, RV_FAR, eps=1e-5, axis=1
    )
    assert y[0, 0] == pytest.approx(2 * 6 / np.sqrt(0.25 + 1e-5) + 0.5, rel=4 * U64)
    for name in ("inference-formula", "inference-per-example", "frozen-backward"):
        _BY_NAME[name].judge(ReferenceImplementation(), INFERENCE_CASE)


def test_an_inference_that_ignores_its_running_statistics_fails() -> None:
    """It passes inference-equals-training (the running statistics equal the batch's there)
    and fails the properties that draw them independently."""
    impl = _TrainingInference()
    _BY_NAME["inference-equals-training"].judge(
        impl, BatchCase(X, np.ones(2), np.zeros(2), 1e-5, 1, "float64")
    )
    with pytest.raises(PropertyFailure, match="inference y vs gamma"):
        _BY_NAME["inference-formula"].judge(impl, INFERENCE_CASE)
    # the batch of one: the training path refuses a single value per channel
    with pytest.raises(ValueError, match=r"^x must have at least 2 values per channel"):
        _BY_NAME["inference-per-example"].judge(impl, INFERENCE_CASE)


def test_frozen_backward_is_not_applicable_without_the_method() -> None:
    impl = Rounded(ReferenceImplementation(), "float32")  # has no frozen_backward
    with pytest.raises(Unsupported, match=r"^reference float32 has no frozen_backward"):
        check_frozen_backward(impl, INFERENCE_CASE)


def test_frozen_backward_by_hand() -> None:
    """dx = gamma dy / sqrt(rv + eps); dgamma = sum(dy (x - rm) / sqrt(rv + eps)); dbeta =
    sum(dy), channel 1 here: gamma = -1, rm = 7, rv = 4, x = 10."""
    got = ReferenceImplementation().frozen_backward(
        INFERENCE_CASE.dy, X, INFERENCE_CASE.case.gamma, RM_FAR, RV_FAR, eps=1e-5, axis=1
    )
    root = np.sqrt(4.0 + 1e-5)
    dy1 = INFERENCE_CASE.dy[:, 1]
    np.testing.assert_allclose(got.dx[:, 1], -dy1 / root, rtol=4 * U64)
    assert got.dgamma[1] == pytest.approx(np.sum(dy1 * 3.0 / root), rel=8 * U64)
    assert got.dbeta[1] == pytest.approx(np.sum(dy1), rel=4 * U64)


def test_formula_check_passes_on_the_hand_case() -> None:
    assert all(m.passed for m in check_running_stats_formula(ReferenceImplementation(), CASE))


# --- flush to zero: a platform that flushes subnormals is not a discrepancy --------------------


def _flushed(values: Any, dtype: str) -> Any:
    """values in `dtype` with every subnormal read or returned as 0, as XLA and TensorFlow's
    kernels on the CPU do."""
    a = np.asarray(values, dtype=dtype)
    return np.where(np.abs(a) < np.finfo(a.dtype).tiny, np.zeros_like(a), a)


class _FlushesToZero(ReferenceImplementation):
    """A correct two-pass batch norm computing in `dtype` on a platform that flushes
    subnormals: every input read and every intermediate result that is subnormal becomes 0
    (the batch statistics, the weights, a r, b s and the running statistic after the step)."""

    def __init__(self, dtype: str, convention: str = "pytorch") -> None:
        super().__init__(convention, name=f"flush-to-zero {dtype}")
        self._dt = dtype

    @property
    def dtype(self) -> str:
        return self._dt

    def _f(self, values: Any) -> Any:
        return _flushed(values, self._dt)

    def _stats(self, x: Array, axis: int) -> tuple[Any, Any, Any]:
        """(mean, var, x - mean), mean and var shaped to broadcast against x."""
        f, xs = self._f, self._f(x)
        axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
        n = xs.size // xs.shape[axis]
        mean = f(f(xs.sum(axis=axes, keepdims=True)) / n)
        dev = f(xs - mean)
        var = f(f(f(dev * dev).sum(axis=axes, keepdims=True)) / n)
        return mean, var, dev

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        f = self._f
        mean, var, dev = self._stats(x, axis)
        shape = mean.shape
        x_hat = f(dev / f(np.sqrt(f(var + f(eps)))))
        y = f(f(f(gamma).reshape(shape) * x_hat) + f(beta).reshape(shape))
        out = (y, mean.ravel(), var.ravel())
        return ForwardOutput(*(np.asarray(v, dtype=np.float64) for v in out))

    def weights(self, momentum: float | None, tracked: int | None) -> tuple[Any, Any]:
        """(a, b), the weights of the running statistic and of the batch's, in dtype."""
        if momentum is None:
            b = self._f(1.0) / self._f(float(tracked or 1))
            return self._f(1 - b), b
        m = self._f(momentum)
        new = CONVENTIONS[self.convention].momentum_weights == "new"
        return (self._f(1 - m), m) if new else (m, self._f(1 - m))

    def update_running_stats(
        self,
        x: Array,
        running_mean: Array,
        running_var: Array,
        *,
        momentum: float | None,
        num_batches_tracked: int | None,
        axis: int,
    ) -> RunningStats:
        f = self._f
        mean, var, _ = self._stats(x, axis)
        mean, var = mean.ravel(), var.ravel()
        n = x.size // x.shape[axis]
        if CONVENTIONS[self.convention].unbiased_var:
            var = f(var * f(n / (n - 1)))
        a, b = self.weights(momentum, num_batches_tracked)
        new_mean = f(f(a * f(running_mean)) + f(b * mean))
        new_var = f(f(a * f(running_var)) + f(b * var))
        return RunningStats(np.asarray(new_mean, np.float64), np.asarray(new_var, np.float64))


class _FlushedFrozenBackward(_FlushesToZero):
    """The frozen-mode backward as autodiff orders it, dgamma = sum(dy (x - rm)) / sqrt(rv +
    eps), on a platform that flushes: a subnormal dy (x - rm) is read as 0 before the division."""

    def frozen_backward(
        self,
        dy: Array,
        x: Array,
        gamma: Array,
        running_mean: Array,
        running_var: Array,
        *,
        eps: float,
        axis: int,
    ) -> BackwardOutput:
        f = self._f
        shape = [1] * x.ndim
        shape[axis % x.ndim] = -1
        axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
        root = f(np.sqrt(f(f(running_var) + f(eps)))).reshape(shape)
        dev = f(f(x) - f(running_mean).reshape(shape))
        dgamma = f(f(f(f(dy) * dev).sum(axis=axes)) / root.ravel())
        dx = f(f(f(gamma).reshape(shape) * f(dy)) / root)
        out = (dx, dgamma, f(f(dy).sum(axis=axes)))
        return BackwardOutput(*(np.asarray(v, dtype=np.float64) for v in out))


class _FrozenDgammaZero(_FlushedFrozenBackward):
    """WRONG: dgamma = 0 (gamma treated as a constant)."""

    def frozen_backward(self, *args: Any, **kwargs: Any) -> BackwardOutput:
        right = super().frozen_backward(*args, **kwargs)
        return right._replace(dgamma=np.zeros_like(right.dgamma))


def _flax_frozen_case(dy: float) -> GradientCase:
    """The case Flax failed at float32: x = 2**-126 (the smallest normal float32), rm = rv = 0,
    gamma = 0, dy = 0.1257: dy (x - rm) = 1.5e-39 is subnormal in float32 and flushed, and the
    exact dgamma is 4.7e-37 (r = 1 / sqrt(eps) = 316)."""
    tiny32 = float(np.finfo(np.float32).tiny)
    case = BatchCase(
        np.array([[tiny32]]), np.zeros(1), np.zeros(1), float(np.float32(1e-5)), 0, "float32"
    )
    return GradientCase(case, np.array([[dy]]), np.zeros(1), np.zeros(1))


def test_a_flushed_frozen_backward_product_passes() -> None:
    impl = _FlushedFrozenBackward("float32")
    case = _flax_frozen_case(0.1257302165031433)
    got = impl.frozen_backward(
        case.dy,
        case.case.x,
        case.case.gamma,
        case.running_mean,
        case.running_var,
        eps=case.case.eps,
        axis=0,
    )
    assert got.dgamma[0] == 0.0  # flushed indeed: the exact value is 4.7e-37
    assert all(m.passed for m in check_frozen_backward(impl, case))


def test_a_wrong_frozen_dgamma_still_fails_where_nothing_is_subnormal() -> None:
    """The floor is added only where a value is subnormal: with dy = 1e3 the product dy x is
    1.2e-35, normal, and dgamma = 0 is a discrepancy."""
    case = _flax_frozen_case(1e3)
    assert all(m.passed for m in check_frozen_backward(_FlushedFrozenBackward("float32"), case))
    with pytest.raises(PropertyFailure, match="frozen dgamma"):
        _BY_NAME["frozen-backward"].judge(_FrozenDgammaZero("float32"), case)


class _MomentumOnTheWrongSide(_FlushesToZero):
    """WRONG: the momentum weighs the other statistic (a and b swapped)."""

    def weights(self, momentum: float | None, tracked: int | None) -> tuple[Any, Any]:
        a, b = super().weights(momentum, tracked)
        return b, a


class _DropsTheRunningStatistic(_FlushesToZero):
    """WRONG: new = b * batch statistic, the running statistic's term a * r forgotten."""

    def weights(self, momentum: float | None, tracked: int | None) -> tuple[Any, Any]:
        _, b = super().weights(momentum, tracked)
        return self._f(0.0), b


_FTZ_PROPERTIES = ("running-stats-formula", "layer-step")
_DTYPES = ("float64", "float32")


def _ftz_case(prop: str, x: Array, rm: Array, rv: Array, momentum: float) -> Any:
    """The same step as a case of `prop`, the channel axis last."""
    if prop == "layer-step":
        return LayerStepCase(x, 1, rm, rv, momentum, 1e-5)
    return RunningStatsCase(x, 1, rm, rv, momentum, False, 1)


def _subnormal_running_stats(dtype: str) -> tuple[Array, Array, Array]:
    """The batch X (normal values) and running statistics below the smallest normal number."""
    tiny = precision(dtype).tiny
    return X, tiny * np.array([0.5, -0.25]), tiny * np.array([0.75, 0.125])


def _subnormal_batch(dtype: str) -> tuple[Array, Array, Array]:
    """A batch of subnormal values (a subnormal mean, a variance of 0 once squared) and normal
    running statistics."""
    tiny = precision(dtype).tiny
    x = tiny * np.array([[0.5, -0.125], [0.25, 0.0], [0.75, -0.5], [1.0, 0.25]])
    return x, np.array([1.0, -2.0]), np.array([1.0, 3.0])


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("prop", _FTZ_PROPERTIES)
@pytest.mark.parametrize("convention", ["pytorch", "flax", "tensorflow"])
def test_a_flushed_running_statistic_passes(prop: str, dtype: str, convention: str) -> None:
    """A running variance of tiny/4 kept by a weight of 1 is returned as 0 (measured on jax,
    keras-jax and TensorFlow); a running statistic of 2**-126 times a momentum of 0.1 too."""
    impl = _FlushesToZero(dtype, convention)
    tiny = precision(dtype).tiny
    keep = 0.0 if convention == "pytorch" else 1.0  # the momentum that keeps the running value
    cases = [
        _ftz_case(prop, np.zeros((2, 1)), np.zeros(1), np.array([tiny / 4]), keep),
        _ftz_case(prop, np.zeros((2, 1)), np.array([tiny]), np.array([tiny]), 0.1),
        _ftz_case(prop, *_subnormal_running_stats(dtype), 0.1),
        _ftz_case(prop, *_subnormal_batch(dtype), 0.1),
    ]
    for case in cases:
        _BY_NAME[prop].judge(impl, case)
    # the first case is flushed indeed: the exact result tiny/4 comes back as 0
    first = cases[0]
    got = impl.update_running_stats(
        first.x,
        first.running_mean,
        first.running_var,
        momentum=keep,
        num_batches_tracked=None,
        axis=1,
    )
    assert got.var[0] == 0.0


# Subnormal-range cases: values of x and of the running statistics below the smallest normal
# number (or 0, or normal), drawn per dtype and rounded to it.
def _values(tiny: float, low: float) -> st.SearchStrategy[float]:
    return st.one_of(
        st.just(0.0),
        st.floats(low, 4.0).map(lambda v: v * tiny),
        st.floats(low, 1e3, allow_subnormal=False),
    )


@st.composite
def _flush_cases(draw: st.DrawFn, prop: str, dtype: str) -> Any:
    tiny = precision(dtype).tiny
    c, n = draw(st.integers(1, 3)), draw(st.integers(2, 6))
    x = np.array(draw(st.lists(_values(tiny, -4.0), min_size=n * c, max_size=n * c)))
    rm = np.array(draw(st.lists(_values(tiny, -4.0), min_size=c, max_size=c)))
    rv = np.array(draw(st.lists(_values(tiny, 0.0), min_size=c, max_size=c)))
    momentum = draw(st.sampled_from([0.0, 1.0, 0.1, 0.9, 0.99]) | st.floats(0.0, 1.0))
    return cast_case(_ftz_case(prop, x.reshape(n, c), rm, rv, momentum), dtype)


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("prop", _FTZ_PROPERTIES)
@pytest.mark.parametrize("convention", ["pytorch", "flax", "tensorflow"])
def test_a_platform_that_flushes_passes_on_subnormal_statistics(
    prop: str, dtype: str, convention: str
) -> None:
    impl = _FlushesToZero(dtype, convention)

    @given(case=_flush_cases(prop, dtype))
    def run(case: Any) -> None:
        _BY_NAME[prop].judge(impl, case)

    run()


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("prop", _FTZ_PROPERTIES)
def test_a_platform_that_flushes_passes_the_properties(prop: str, dtype: str) -> None:
    _BY_NAME[prop].as_test(_FlushesToZero(dtype))()


@pytest.mark.parametrize("dtype", _DTYPES)
@pytest.mark.parametrize("prop", _FTZ_PROPERTIES)
@pytest.mark.parametrize(
    ("mistake", "step", "quantity"),
    [
        (_MomentumOnTheWrongSide, _subnormal_running_stats, "running mean vs the convention's"),
        (_MomentumOnTheWrongSide, _subnormal_batch, "running mean vs the convention's"),
        (_DropsTheRunningStatistic, _subnormal_batch, "running mean vs the convention's"),
    ],
    ids=["wrong-side-subnormal-running", "wrong-side-subnormal-batch", "drops-running"],
)
def test_a_mistake_beyond_the_flush_floor_still_fails(
    prop: str,
    dtype: str,
    mistake: type[_FlushesToZero],
    step: Callable[[str], tuple[Array, Array, Array]],
    quantity: str,
) -> None:
    """Where the floor applies (something is subnormal) a mistake of O(1) still fails, and
    the honest flushing update passes the same case."""
    case = _ftz_case(prop, *step(dtype), 0.1)
    _BY_NAME[prop].judge(_FlushesToZero(dtype), case)
    with pytest.raises(PropertyFailure, match=quantity):
        _BY_NAME[prop].judge(mistake(dtype), case)


def _tolerances(impl: Any, case: Any) -> list[float]:
    return [m.tolerance for m in check_running_stats_formula(impl, case)]


@pytest.mark.parametrize("dtype", _DTYPES)
def test_the_flush_floor_is_added_only_where_a_value_is_subnormal(
    dtype: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tolerances of a normal-range step are those without a floor (tiny = 0), bit for
    bit, and those bnref had before the floor; with subnormal running statistics they grow
    by the floor: c tiny (c = n/(n-1) <= 2 for the unbiased variance) for each of the at most
    eight subnormal values of the step, times SAFETY."""
    impl = _FlushesToZero(dtype)
    p = precision(dtype)
    normal = _ftz_case("running-stats-formula", X, RM0 + 0.5, RV0, 0.1)
    subnormal = _ftz_case(
        "running-stats-formula",
        np.zeros((2, 1)),
        np.array([p.tiny / 2]),
        np.array([p.tiny / 4]),
        0.1,
    )
    with_floor = _tolerances(impl, normal), _tolerances(impl, subnormal)
    monkeypatch.setattr(rsp, "precision", lambda _: replace(p, tiny=0.0))
    without = _tolerances(impl, normal), _tolerances(impl, subnormal)
    assert with_floor[0] == without[0]
    # and those of the bounds before the floor existed, measured then
    before = {"float64": [5.323519403077626e-15, 1.8306071003661236e-14]}
    before["float32"] = [6.9141387941062945e-06, 4.768614114950923e-07]
    assert with_floor[0][:2] == pytest.approx(before[dtype], rel=1e-12)
    floor = np.array(with_floor[1][:2]) - np.array(without[1][:2])
    assert np.all(floor >= SAFETY * p.tiny)
    assert np.all(floor <= SAFETY * 2 * 8 * p.tiny)


# --- every rejection ------------------------------------------------------------------------

GOOD: dict[str, Any] = {
    "running_mean": RM0,
    "running_var": RV0,
    "batch_mean": BATCH_MEAN,
    "batch_var": BATCH_VAR,
    "count": 4,
}


def _call(**changes: Any) -> RefStats:
    kwargs = GOOD | changes
    positional = [
        kwargs.pop(k) for k in ("running_mean", "running_var", "batch_mean", "batch_var", "count")
    ]
    return update_running_stats(*positional, **kwargs)


@pytest.mark.parametrize(
    ("changes", "error", "argument"),
    [
        ({"convention": "torch"}, ValueError, "convention"),
        ({"convention": 3}, TypeError, "convention"),
        ({"momentum": 1.5}, ValueError, "momentum"),
        ({"momentum": -0.1}, ValueError, "momentum"),
        ({"momentum": float("nan")}, ValueError, "momentum"),
        ({"momentum": "0.1"}, TypeError, "momentum"),
        (
            {"momentum": None, "convention": "keras", "num_batches_tracked": 1},
            ValueError,
            "momentum",
        ),
        ({"momentum": None}, ValueError, "num_batches_tracked"),
        ({"momentum": None, "num_batches_tracked": 0}, ValueError, "num_batches_tracked"),
        ({"momentum": None, "num_batches_tracked": 1.0}, TypeError, "num_batches_tracked"),
        ({"num_batches_tracked": -1}, ValueError, "num_batches_tracked"),
        ({"running_mean": [[0.0, 0.0]]}, ValueError, "running_mean"),
        ({"running_var": [1.0, 1.0, 1.0]}, ValueError, "running_var"),
        ({"batch_mean": [3.0]}, ValueError, "batch_mean"),
        ({"batch_var": [[3.5, 0.0]]}, ValueError, "batch_var"),
        ({"running_var": [1.0, -1e-300]}, ValueError, "running_var"),
        ({"batch_var": [-3.5, 0.0]}, ValueError, "batch_var"),
        ({"running_mean": [np.inf, 0.0]}, ValueError, "running_mean"),
        ({"running_var": [np.nan, 1.0]}, ValueError, "running_var"),
        ({"batch_mean": [3.0, -np.inf]}, ValueError, "batch_mean"),
        ({"batch_var": [np.nan, 0.0]}, ValueError, "batch_var"),
        ({"batch_mean": ["a", "b"]}, TypeError, "batch_mean"),
        ({"count": 0}, ValueError, "count"),
        ({"count": 1}, ValueError, "count"),  # pytorch is unbiased: n/(n-1) needs n >= 2
        ({"count": 4.0}, TypeError, "count"),
        ({"count": 1, "convention": "tensorflow"}, ValueError, "count"),
    ],
)
def test_update_running_stats_rejects(
    changes: dict[str, Any], error: type[Exception], argument: str
) -> None:
    # The message starts with the argument's name (anchored: a name inside other text is not it).
    with pytest.raises(error, match=rf"^{argument}\b"):
        _call(**changes)


def test_momentum_none_messages_name_the_expected_and_the_given_value() -> None:
    # Only PyTorch has the cumulative average; the message lists it and says what to pass.
    with pytest.raises(ValueError, match=r"^momentum=None") as info:
        _call(momentum=None, convention="keras", num_batches_tracked=1)
    assert "['pytorch'], got convention 'keras'" in str(info.value)
    assert str(info.value).endswith("pass a momentum in [0, 1]")
    with pytest.raises(ValueError, match=r"^num_batches_tracked must be an integer >= 1") as info:
        _call(momentum=None)
    assert str(info.value).endswith("when momentum is None, got None")


@pytest.mark.parametrize("name", ["running_var", "batch_var"])
def test_a_negative_variance_is_reported_at_its_first_channel(name: str) -> None:
    # Channel 0 is 0 (allowed, a constant channel) and channel 1 is in (0, 1), so only the
    # test "< 0" picks channel 2; the message names the value and that channel.
    args = {
        "running_mean": np.zeros(3),
        "running_var": np.ones(3),
        "batch_mean": np.zeros(3),
        "batch_var": np.ones(3),
    } | {name: np.array([0.0, 0.5, -2.0])}
    with pytest.raises(ValueError, match=rf"^{name} must be >= 0") as info:
        _call(**args)
    assert str(info.value).endswith("-2.0) at channel 2")


def test_a_biased_convention_accepts_a_single_value_per_channel() -> None:
    got = _call(count=1, convention="keras")
    np.testing.assert_allclose(got.mean, HAND["keras"][0], rtol=RTOL, atol=0)


@pytest.mark.parametrize(
    ("means", "variances", "count", "error", "argument"),
    [
        ([1.0, 2.0], [1.0, 2.0], 3, ValueError, "batch_means"),  # not (num_batches, C)
        (np.zeros((0, 2)), np.zeros((0, 2)), 3, ValueError, "batch_means"),  # no batch
        ([[1.0, 2.0]], [[1.0]], 3, ValueError, "batch_vars"),
        ([[1.0, 2.0]], [[1.0, -2.0]], 3, ValueError, "batch_vars"),
        ([[1.0, np.nan]], [[1.0, 2.0]], 3, ValueError, "batch_means"),
        ([[1.0, 2.0]], [[np.inf, 2.0]], 3, ValueError, "batch_vars"),
        ([[1.0, 2.0]], [[1.0, 2.0]], 1, ValueError, "count"),
        ([[1.0, 2.0]], [[1.0, 2.0]], 2.5, TypeError, "count"),
        ([[True, False]], [[1.0, 2.0]], 3, TypeError, "batch_means"),
    ],
)
def test_population_statistics_rejects(
    means: Any, variances: Any, count: Any, error: type[Exception], argument: str
) -> None:
    with pytest.raises(error, match=rf"^{argument} must"):
        population_statistics(means, variances, count)
