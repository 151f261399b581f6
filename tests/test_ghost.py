"""Ghost batch norm: the virtual batches, the leftover rule, equality with plain BN, rejections.

Ghost BN calls `batch_norm_forward` on each virtual batch, so the comparisons below are exact
(tolerance 0): what is tested is where the batch is cut and how the pieces are put back.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from properties.strategies import BatchCase, batch_cases
from reference.batchnorm import batch_norm_forward
from reference.ghost import ghost_batch_norm_forward, virtual_batch_bounds


def _off_axis_zero(case: BatchCase) -> BatchCase:
    """The same values with the channel axis moved off the batch axis 0."""
    if case.axis % case.x.ndim != 0:
        return case
    return BatchCase(np.swapaxes(case.x, 0, 1).copy(), case.gamma, case.beta, case.eps, 1, "")


@pytest.mark.parametrize(
    ("n", "size", "leftover", "want"),
    [
        (10, 4, "separate", ((0, 4), (4, 8), (8, 10))),  # torch.split(x, 4): 4, 4, 2
        (10, 4, "merge", ((0, 4), (4, 10))),  # the 2 leftover examples join the previous 4
        (8, 4, "separate", ((0, 4), (4, 8))),
        (8, 4, "merge", ((0, 4), (4, 8))),  # no leftover: both rules agree
        (3, 4, "merge", ((0, 3),)),  # a single, short chunk has nothing to merge into
        (3, 4, "separate", ((0, 3),)),
        (9, 2, "merge", ((0, 2), (2, 4), (4, 6), (6, 9))),
    ],
)
def test_bounds_by_hand(
    n: int, size: int, leftover: str, want: tuple[tuple[int, int], ...]
) -> None:
    assert virtual_batch_bounds(n, size, leftover) == want


@given(case=batch_cases(), data=st.data())
def test_each_chunk_is_plain_bn_of_that_chunk(case: BatchCase, data: st.DataObject) -> None:
    case = _off_axis_zero(case)
    x = case.x
    size = data.draw(st.integers(1, x.shape[0] + 2))
    per_example = x.size // x.shape[0] // case.gamma.size
    leftover = data.draw(st.sampled_from(["separate", "merge"]))
    bounds = virtual_batch_bounds(x.shape[0], size, leftover)
    if any((b - a) * per_example < 2 for a, b in bounds):
        with pytest.raises(ValueError, match="virtual batch"):
            ghost_batch_norm_forward(
                x,
                case.gamma,
                case.beta,
                virtual_batch_size=size,
                eps=case.eps,
                axis=case.axis,
                leftover=leftover,  # type: ignore[arg-type]  # drawn str
            )
        return
    got = ghost_batch_norm_forward(
        x,
        case.gamma,
        case.beta,
        virtual_batch_size=size,
        eps=case.eps,
        axis=case.axis,
        leftover=leftover,  # type: ignore[arg-type]  # drawn from the two allowed values
    )
    assert got.bounds == bounds
    # The chunks tile the batch in order, each of `size` except the rule's last one.
    assert bounds[0][0] == 0
    assert bounds[-1][1] == x.shape[0]
    assert all(b[1] == c[0] for b, c in itertools.pairwise(bounds))
    assert all(b - a == size for a, b in bounds[:-1])
    for k, (a, b) in enumerate(bounds):
        want = batch_norm_forward(x[a:b], case.gamma, case.beta, eps=case.eps, axis=case.axis)
        assert np.array_equal(got.y[a:b], want.y)
        assert np.array_equal(got.x_hat[a:b], want.x_hat)
        assert np.array_equal(got.mean[k], want.mean)
        assert np.array_equal(got.var[k], want.var)
        assert np.array_equal(got.inv_std[k], want.inv_std)


@given(case=batch_cases(), extra=st.integers(0, 3))
def test_virtual_batch_at_least_n_is_plain_bn(case: BatchCase, extra: int) -> None:
    case = _off_axis_zero(case)
    n = case.x.shape[0]
    for leftover in ("separate", "merge"):
        got = ghost_batch_norm_forward(
            case.x,
            case.gamma,
            case.beta,
            virtual_batch_size=n + extra,
            eps=case.eps,
            axis=case.axis,
            leftover=leftover,
        )
        want = batch_norm_forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
        assert np.array_equal(got.y, want.y)
        assert got.bounds == ((0, n),)


def test_leftover_rule_changes_the_statistics() -> None:
    # 5 examples, size 2: "separate" normalizes [4] alone (impossible: 1 value), "merge" uses
    # examples 2..4 = [3, 5, 10] (mean 6) for the last virtual batch.
    x = np.array([[1.0], [2.0], [3.0], [5.0], [10.0]])
    with pytest.raises(ValueError, match="leftover"):
        ghost_batch_norm_forward(x, [1.0], [0.0], virtual_batch_size=2)
    got = ghost_batch_norm_forward(x, [1.0], [0.0], virtual_batch_size=2, leftover="merge")
    assert got.mean.tolist() == [[1.5], [6.0]]
    # 6 examples, size 4: separate gives chunks [0, 4) and [4, 6).
    x6 = np.arange(6.0).reshape(6, 1)
    sep = ghost_batch_norm_forward(x6, [1.0], [0.0], virtual_batch_size=4)
    assert sep.mean.tolist() == [[1.5], [4.5]]
    merged = ghost_batch_norm_forward(x6, [1.0], [0.0], virtual_batch_size=4, leftover="merge")
    assert merged.mean.tolist() == [[2.5]]


def test_bounds_default_rule_is_separate() -> None:
    assert virtual_batch_bounds(10, 4) == ((0, 4), (4, 8), (8, 10))


# Each message starts with the argument's name: the anchored matches pin that contract.
X4 = np.ones((4, 2))


@pytest.mark.parametrize(
    ("x", "gamma", "kwargs", "error", "match"),
    [
        (X4, [1.0] * 4, {"virtual_batch_size": 2, "axis": 0}, ValueError, r"^axis must not be 0"),
        (X4, [1.0] * 2, {"virtual_batch_size": 0}, ValueError, r"^virtual_batch_size must"),
        (X4, [1.0] * 2, {"virtual_batch_size": 2.0}, TypeError, r"^virtual_batch_size must"),
        # "drop" would leave examples without output
        (
            X4,
            [1.0] * 2,
            {"virtual_batch_size": 3, "leftover": "drop"},
            ValueError,
            r"^leftover must",
        ),
        (X4, [1.0] * 3, {"virtual_batch_size": 2}, ValueError, r"^gamma must"),
        (X4, [1.0] * 2, {"virtual_batch_size": 2, "eps": -1.0}, ValueError, r"^eps must"),
        (
            [[1.0, np.nan]] * 4,
            [1.0] * 2,
            {"virtual_batch_size": 2},
            ValueError,
            r"^x must be finite",
        ),
    ],
)
def test_rejects(x: Any, gamma: Any, kwargs: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ghost_batch_norm_forward(x, gamma, [0.0] * len(gamma), **kwargs)


def test_rejects_a_virtual_batch_of_one_value() -> None:
    # 5 examples of 1 value per channel, size 2, "separate": the last virtual batch [4, 5) holds
    # 1 value. The message names the chunk, its count (an integer) and the way out.
    with pytest.raises(
        ValueError,
        match=r"^every virtual batch must have >= 2 values per channel, but examples \[4, 5\) "
        r"give 1 with .*; use leftover='merge' or another virtual_batch_size$",
    ):
        ghost_batch_norm_forward(np.ones((5, 1)), [1.0], [0.0], virtual_batch_size=2)


def test_bounds_rejects() -> None:
    with pytest.raises(ValueError, match=r"^batch_size must be an integer >= 1"):
        virtual_batch_bounds(0, 2)
    with pytest.raises(ValueError, match=r"^virtual_batch_size must be an integer >= 1"):
        virtual_batch_bounds(4, 0)
    with pytest.raises(ValueError, match=r"^leftover must be one of"):
        virtual_batch_bounds(4, 2, "drop")


def test_input_not_mutated() -> None:
    x = np.arange(8.0).reshape(4, 2)
    before = x.copy()
    ghost_batch_norm_forward(x, [1.0, 2.0], [0.0, 1.0], virtual_batch_size=2)
    assert np.array_equal(x, before)


def test_values_near_the_float64_limit_are_normalized_per_virtual_batch() -> None:
    # Each virtual batch goes through batch_norm_forward, which scales values reaching 2**480:
    # +-1e154 (squares summing beyond float64) gives +-1, a constant 1.7e308 (whose sum
    # overflows) gives beta; a virtual batch with a variance beyond float64 is its ValueError.
    x = np.array([[1e154, 1.7e308], [-1e154, 1.7e308], [-1e154, 1.7e308], [1e154, 1.7e308]])
    out = ghost_batch_norm_forward(x, [1.0, 1.0], [0.0, 0.5], virtual_batch_size=2)
    np.testing.assert_allclose(out.y[:, 0], [1.0, -1.0, -1.0, 1.0], rtol=4 * 2.0**-53)
    np.testing.assert_array_equal(out.y[:, 1], 0.5)
    np.testing.assert_array_equal(out.mean, [[0.0, 1.7e308]] * 2)
    np.testing.assert_array_equal(out.var, [[1e308, 0.0]] * 2)
    x[0, 1] = 1e308
    with pytest.raises(ValueError, match=r"^x must have a variance that float64 can represent"):
        ghost_batch_norm_forward(x, [1.0, 1.0], [0.0, 0.5], virtual_batch_size=2)
