"""The validation split: the size rule, scikit-learn's indices, layouts, every rejection, and the
split as a claim with the broken splits it catches."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from claims import assert_holds, broken, exact
from hypothesis import assume, given
from hypothesis import strategies as st
from numpy.typing import NDArray
from sklearn.model_selection import train_test_split

from properties.framework import Measurement
from reference.data_split import (
    DataSplit,
    SplitIndices,
    validation_indices,
    validation_size,
    validation_split,
)
from reference.minibatch import mini_batch_indices


@contextmanager
def global_rng_restored() -> Iterator[None]:
    """Save NumPy's global RNG state and put it back afterwards."""
    state = np.random.get_state()  # noqa: NPY002 -- saved to prove it is left alone
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002


# --- the size rule ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("m", "fraction", "n_val"),
    [
        (100, 0.2, 20),  # the default
        (5, 0.2, 1),
        (100, 0.07, 7),  # 0.07 * 100 is 7.000000000000001 in float; scikit-learn's ceil gives 8
        (30, 0.1, 3),
        (3, 0.5, 2),  # an exact half rounds up
        (4, 0.125, 1),  # 0.5 rounds up to 1
        (4, 0.375, 2),  # 1.5 rounds up to 2
        (7, 0.2, 1),  # 1.4 rounds down
        (8, 0.2, 2),  # 1.6 rounds up
        (2, 0.5, 1),
        (3, 1 / 3, 1),
    ],
)
def test_validation_size_rounds_to_nearest_half_up(m: int, fraction: float, n_val: int) -> None:
    assert validation_size(m, fraction) == n_val


@given(m=st.integers(2, 10_000), fraction=st.floats(0.0, 1.0, exclude_min=True, exclude_max=True))
def test_validation_size_is_within_half_of_fraction_times_m(m: int, fraction: float) -> None:
    exact = fraction * m  # only for the bound; the rule itself is exact (Fraction)
    n = round(exact)
    assume(1 <= n <= m - 1 and abs(exact - n) < 0.49)  # away from halves, where float matters
    assert validation_size(m, fraction) == n


def test_validation_size_default_fraction_is_a_fifth() -> None:
    # fraction defaults to 0.2: 0.2 * 10 = 2 and 0.2 * 12 = 2.4 -> 2.
    assert validation_size(10) == validation_size(10, 0.2) == 2
    assert validation_size(12) == 2


def test_float_product_does_not_move_the_count() -> None:
    # 0.07 * 100 == 7.000000000000001 in float64, while fl(0.07) * 100 taken exactly is
    # 7.00000000000000066..., nearest 7: the count does not depend on how the product rounds.
    assert 0.07 * 100 > 7
    assert validation_size(100, 0.07) == 7
    assert math.ceil(0.07 * 100) == 8  # scikit-learn's n_test rule


# --- scikit-learn's indices ------------------------------------------------------------------


@pytest.mark.parametrize(("m", "fraction", "seed"), [(10, 0.2, 0), (100, 0.25, 42), (50, 0.1, 7)])
def test_indices_equal_scikit_learn_train_test_split(m: int, fraction: float, seed: int) -> None:
    train, val = validation_indices(m, fraction=fraction, seed=seed)
    sk_train, sk_val = train_test_split(np.arange(m), test_size=fraction, random_state=seed)
    assert np.array_equal(val, sk_val)
    assert np.array_equal(train, sk_train)


@given(m=st.integers(2, 300), k=st.integers(1, 299), seed=st.integers(0, 2**32 - 1))
def test_indices_equal_scikit_learn_whenever_the_sizes_agree(m: int, k: int, seed: int) -> None:
    fraction = min(k, m - 1) / m
    assume(math.ceil(fraction * m) == validation_size(m, fraction))
    train, val = validation_indices(m, fraction=fraction, seed=seed)
    sk_train, sk_val = train_test_split(np.arange(m), test_size=fraction, random_state=seed)
    assert np.array_equal(val, sk_val)
    assert np.array_equal(train, sk_train)


def test_indices_are_the_minibatch_permutation_cut_once() -> None:
    (p,) = mini_batch_indices(20, 20, 5)  # one batch of everything: the permutation itself
    train, val = validation_indices(20, fraction=0.25, seed=5)
    assert np.array_equal(val, p[:5])
    assert np.array_equal(train, p[5:])
    assert isinstance(validation_indices(20, seed=5), SplitIndices)
    assert not train.flags.writeable
    assert not val.flags.writeable


def test_generator_seed_uses_its_permutation_and_advances_it() -> None:
    rng = np.random.default_rng(3)
    first = validation_indices(10, seed=rng)
    second = validation_indices(10, seed=rng)
    ref = np.random.default_rng(3)
    p1, p2 = ref.permutation(10), ref.permutation(10)
    assert np.array_equal(np.concatenate([first.val, first.train]), p1)
    assert np.array_equal(np.concatenate([second.val, second.train]), p2)


# --- the data --------------------------------------------------------------------------------


def test_split_takes_the_indices_along_axis_1() -> None:
    X = np.arange(30.0).reshape(3, 10)
    Y = np.arange(10).reshape(1, 10) % 2
    split = validation_split(X, Y, seed=0)
    train, val = validation_indices(10, seed=0)
    assert isinstance(split, DataSplit)
    X_train, Y_train, X_val, Y_val = split  # unpacks like a 4-tuple
    assert np.array_equal(X_train, X[:, train])
    assert np.array_equal(Y_train, Y[:, train])
    assert np.array_equal(X_val, X[:, val])
    assert np.array_equal(Y_val, Y[:, val])
    assert Y_val.dtype == Y.dtype  # labels keep their dtype


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint16, np.int64])
def test_boolean_and_integer_labels_keep_their_dtype(dtype: type) -> None:
    # The course builds labels as Y = np.random.randn(1, m) < 0.5: boolean labels are split
    # like any other, and every part keeps Y's dtype (X stays real, its own dtype kept too).
    X = np.arange(30.0).reshape(3, 10)
    Y = (np.arange(10).reshape(1, 10) % 3 == 0).astype(dtype)
    split = validation_split(X, Y, seed=2)
    train, val = validation_indices(10, seed=2)
    assert split.Y_train.dtype == split.Y_val.dtype == np.dtype(dtype)
    assert np.array_equal(split.Y_train, Y[:, train])
    assert np.array_equal(split.Y_val, Y[:, val])
    assert np.array_equal(split.X_val, X[:, val])


def test_split_axis_0_and_negative_axis() -> None:
    X = np.arange(10 * 2 * 3, dtype=np.float32).reshape(10, 2, 3)
    Y = np.arange(10) * 10
    split = validation_split(X, Y, fraction=0.3, seed=1, axis=0)
    train, val = validation_indices(10, fraction=0.3, seed=1)
    assert split.X_val.shape == (3, 2, 3)
    assert split.X_train.dtype == np.float32
    assert np.array_equal(split.X_train, X[train])
    assert np.array_equal(split.Y_val, Y[val])
    last = validation_split(X.reshape(10, 6).T, Y, fraction=0.3, seed=1, axis=-1)
    assert np.array_equal(last.X_val, X.reshape(10, 6).T[:, val])
    assert np.array_equal(last.Y_val, Y[val])


def test_parts_are_read_only_copies_and_inputs_unchanged() -> None:
    X = np.arange(20.0).reshape(2, 10)
    Y = -np.arange(10.0).reshape(1, 10)
    X0, Y0 = X.copy(), Y.copy()
    split = validation_split(X, Y, seed=4)
    for part in split:
        assert not np.shares_memory(part, X)
        assert not np.shares_memory(part, Y)
        assert not part.flags.writeable
    assert np.array_equal(X, X0)
    assert np.array_equal(Y, Y0)


def test_global_rng_is_left_alone() -> None:
    with global_rng_restored():
        np.random.seed(11)  # noqa: NPY002 -- a known state, restored afterwards
        before = np.random.random()  # noqa: NPY002
        np.random.seed(11)  # noqa: NPY002
        validation_split(np.zeros((2, 10)), np.zeros((1, 10)), seed=3)
        assert np.random.random() == before  # noqa: NPY002


# --- every rejection -------------------------------------------------------------------------

_X, _Y = np.zeros((2, 10)), np.zeros((1, 10))


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"fraction": 0.0}, ValueError, r"^fraction must"),
        ({"fraction": 1.0}, ValueError, r"^fraction must"),
        ({"fraction": -0.2}, ValueError, r"^fraction must"),
        ({"fraction": 1.5}, ValueError, r"^fraction must"),
        ({"fraction": math.nan}, ValueError, r"^fraction must"),
        ({"fraction": "0.2"}, TypeError, r"^fraction must be a real number, got str '0\.2'$"),
        ({"fraction": True}, TypeError, r"^fraction must"),
        (
            {"fraction": 0.01},
            ValueError,
            r"^fraction=0\.01 of m=10 examples .* leaving the validation part empty",
        ),  # 0.1 rounds to 0
        (
            {"fraction": 0.96},
            ValueError,
            r"^fraction=0\.96 of m=10 examples .* leaving the training part empty",
        ),  # 9.6 rounds to 10
        ({"seed": -1}, ValueError, r"^seed must be an integer >= 0, got -1$"),
        ({"seed": 2**32}, ValueError, r"^seed must"),
        ({"seed": 1.5}, TypeError, r"^seed must"),
        ({"seed": None}, TypeError, r"^seed must"),
        ({"seed": True}, TypeError, r"^seed must"),
        ({"seed": np.random.RandomState(0)}, TypeError, r"^seed must"),
        ({"axis": 2}, ValueError, r"^axis \(for X of shape \(2, 10\)\) must be in \[-2, 1\]"),
        (
            {"axis": 1.0},
            TypeError,
            r"^axis \(for X of shape \(2, 10\)\) must be an integer, got float 1\.0$",
        ),
    ],
)
def test_split_rejects_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    args: dict[str, Any] = {"fraction": 0.2, "seed": 0, "axis": 1}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        validation_split(_X, _Y, **args)


@pytest.mark.parametrize(
    ("X", "Y", "error", "match"),
    [
        (_X, _Y[:, :9], ValueError, r"^X and Y .* 10 in X .* 9 in Y"),
        (
            np.zeros((2, 1)),
            np.zeros((1, 1)),
            ValueError,
            r"^X and Y must hold at least two examples along axis 1 \(one per part\)",
        ),
        (
            np.zeros((2, 0)),
            np.zeros((1, 0)),
            ValueError,
            r"^X and Y must hold at least two examples along axis 1 \(one per part\)",
        ),
        (_X + 0j, _Y, TypeError, r"^X must have a real integer or floating dtype, got complex"),
        (_X > 0, _Y, TypeError, r"^X must have a real integer or floating dtype, got boolean"),
        (
            _X,
            _Y + 0j,
            TypeError,
            r"^Y must have a boolean, integer or floating dtype, got complex dtype complex128$",
        ),
        (_X, _Y.astype(str), TypeError, r"^Y must have a boolean, integer or floating dtype"),
        (
            _X,
            np.ma.array(_Y),
            TypeError,
            r"^Y must not be a masked array \(its mask would be ignored\)",
        ),
        (np.float64(1.0), _Y, ValueError, r"^X must have at least one dimension"),
    ],
)
def test_split_rejects_bad_data(X: Any, Y: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        validation_split(X, Y, seed=0)


@pytest.mark.parametrize(
    ("m", "fraction", "error", "match"),
    [
        (0, 0.2, ValueError, r"^m must"),
        (1, 0.5, ValueError, r"^fraction=0\.5 of m=1 examples .* leaving the training part empty"),
        (2.0, 0.5, TypeError, r"^m must"),
        (True, 0.5, TypeError, r"^m must"),
        (10, None, TypeError, r"^fraction must"),
    ],
)
def test_size_and_indices_reject_bad_m(
    m: Any, fraction: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        validation_size(m, fraction)
    with pytest.raises(error, match=match):
        validation_indices(m, fraction=fraction, seed=0)


# --- the split as a claim, and what it catches ------------------------------------------------

Array = NDArray[np.float64]
Split = Callable[[Array, Array, float, int], Sequence[NDArray[Any]]]


def reference_split(X: Array, Y: Array, fraction: float, seed: int) -> Sequence[NDArray[Any]]:
    """`validation_split` with positional arguments, as a split under test is called."""
    return validation_split(X, Y, fraction=fraction, seed=seed)


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


def check_split(case: SplitCase, split: Split = reference_split) -> list[Measurement]:
    """Disjoint parts covering 0..m-1 with n_val held out, X paired with Y, the same split from
    the same seed, inputs unchanged and unshared; a rule that leaves a part empty is rejected."""
    x, y = case.arrays()
    n_val = case.n_val()
    if not 1 <= n_val <= case.m - 1:
        try:
            split(x, y, case.fraction, case.seed)
        except ValueError:
            return [exact(f"rejects n_val = {n_val} of m = {case.m}", True)]
        return [exact(f"rejects n_val = {n_val} of m = {case.m}", False)]
    x0, y0 = x.copy(), y.copy()
    parts = split(x, y, case.fraction, case.seed)
    again = split(x, y, case.fraction, case.seed)
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
        exact("X and Y stay paired and intact", paired),
        exact(
            "parts are disjoint and cover 0..m-1", np.array_equal(np.sort(every), np.arange(case.m))
        ),
        exact(f"n_val = {n_val}, n_train = {case.m - n_val}", paired and sizes),
        exact(
            "same seed, same split",
            all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True)),
        ),
        exact("inputs unchanged", np.array_equal(x, x0) and np.array_equal(y, y0)),
        exact("parts share no memory with X, Y", not shared),
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


@given(case=split_cases())
def test_a_split_partitions_the_examples(case: SplitCase) -> None:
    """A validation split partitions the examples (disjoint, cover, n_val = floor(fraction * m
    + 1/2)), keeps X with Y, is reproducible from the seed and leaves its inputs alone."""
    assert_holds(check_split(case))


def _ceil_rule(X: Array, Y: Array, fraction: float, seed: int) -> Sequence[NDArray[Any]]:
    p = np.random.RandomState(seed).permutation(X.shape[1])
    n = math.ceil(fraction * X.shape[1])  # scikit-learn's rule, not the stated one
    return X[:, p[n:]], Y[:, p[n:]], X[:, p[:n]], Y[:, p[:n]]


def _overlap(X: Array, Y: Array, fraction: float, seed: int) -> Sequence[NDArray[Any]]:
    s = validation_split(X, Y, fraction=fraction, seed=seed)
    return (
        np.concatenate([s.X_train[:, 1:], s.X_val[:, :1]], axis=1),
        np.concatenate([s.Y_train[:, 1:], s.Y_val[:, :1]], axis=1),
        s.X_val,
        s.Y_val,
    )  # one validation example also in training, one training one lost


def _unpaired(X: Array, Y: Array, fraction: float, seed: int) -> Sequence[NDArray[Any]]:
    s = validation_split(X, Y, fraction=fraction, seed=seed)
    return s.X_train, s.Y_train[:, ::-1], s.X_val, s.Y_val


_calls = itertools.count()


def _drifts(X: Array, Y: Array, fraction: float, seed: int) -> Sequence[NDArray[Any]]:
    del seed
    return validation_split(X, Y, fraction=fraction, seed=next(_calls) % 2**32)


def _views(X: Array, Y: Array, fraction: float, seed: int) -> Sequence[NDArray[Any]]:
    del seed  # no shuffle, and slices that alias X and Y
    n = validation_size(X.shape[1], fraction)
    return X[:, n:], Y[:, n:], X[:, :n], Y[:, :n]


def _mutates(X: Array, Y: Array, fraction: float, seed: int) -> Sequence[NDArray[Any]]:
    s = validation_split(X, Y, fraction=fraction, seed=seed)
    X[...] = X[:, ::-1].copy()
    return s


def _accepts_empty(X: Array, Y: Array, fraction: float, seed: int) -> Sequence[NDArray[Any]]:
    p = np.random.RandomState(seed).permutation(X.shape[1])
    n = math.floor(fraction * X.shape[1] + 0.5)  # no check that both parts are non-empty
    return X[:, p[n:]], Y[:, p[n:]], X[:, p[:n]], Y[:, p[:n]]


_CASE = SplitCase(m=100, fraction=0.07, seed=3)  # 0.07 * 100: the two size rules disagree
_EMPTY = SplitCase(m=10, fraction=0.01, seed=3)  # round(0.1) = 0: must be rejected


@pytest.mark.parametrize(
    ("split", "case", "caught"),
    [
        (_ceil_rule, _CASE, True),
        (_overlap, _CASE, True),
        (_unpaired, _CASE, True),
        (_drifts, _CASE, True),
        (_views, _CASE, True),
        (_mutates, _CASE, True),
        (_accepts_empty, _EMPTY, True),
        (_accepts_empty, _CASE, False),  # correct where a split is possible
    ],
)
def test_split_claim_catches_broken_splits(split: Split, case: SplitCase, caught: bool) -> None:
    assert broken(check_split(case, split)) is caught
    assert_holds(check_split(case))  # and the reference passes the same case
