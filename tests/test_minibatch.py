"""Mini-batches: the course's function reproduced bit for bit, the layouts, every rejection, and
the mini-batch properties: the reference and correct course-form functions pass, broken ones
fail by name.

The course notes' `random_mini_batches` is kept below verbatim (as source text, run with exec, so
neither the formatter nor the linter touches a character of it). It seeds the global RNG; every
call here saves and restores the global state around it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, cast

import numpy as np
import pytest
import user_minibatch_example
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from properties.adapter import ReferenceImplementation
from properties.framework import Property, PropertyFailure, Unsupported, run_property
from properties.minibatch_props import (
    PROPERTIES,
    MiniBatchCase,
    MiniBatchFunction,
    MiniBatchTarget,
    reference_target,
)
from properties.profiles import failure_demo
from properties.registry import by_name
from reference.minibatch import MiniBatch, mini_batch_indices, random_mini_batches

# The course notes (shared/seeds/000_dd8828162062c767.txt), "Mini-Batch Code", unchanged.
COURSE_SOURCE = '''\
def random_mini_batches(X, Y, mini_batch_size = 64, seed = 0):
    """
    Creates a list of random minibatches from (X, Y)
    
    Arguments:
    X -- input data, of shape (input size, number of examples)
    Y -- true "label" vector (1 for blue dot / 0 for red dot), of shape (1, number of examples)
    mini_batch_size -- size of the mini-batches, integer
    
    Returns:
    mini_batches -- list of synchronous (mini_batch_X, mini_batch_Y)
    """
    
    np.random.seed(seed)            # To make your "random" minibatches the same as ours
    m = X.shape[1]                  # number of training examples
    mini_batches = []
        
    # Step 1: Shuffle (X, Y)
    permutation = list(np.random.permutation(m))
    shuffled_X = X[:, permutation]
    shuffled_Y = Y[:, permutation].reshape((1,m))

    # Step 2: Partition (shuffled_X, shuffled_Y). Minus the end case.
    num_complete_minibatches = math.floor(m/mini_batch_size) # number of mini batches of size mini_batch_size in your partitionning
    for k in range(0, num_complete_minibatches):
        ### START CODE HERE ### (approx. 2 lines)
        mini_batch_X = shuffled_X[:, k* mini_batch_size : (k+1) * mini_batch_size]
        mini_batch_Y = shuffled_Y[:, k* mini_batch_size : (k+1) * mini_batch_size]
        ### END CODE HERE ###
        mini_batch = (mini_batch_X, mini_batch_Y)
        mini_batches.append(mini_batch)
    
    # Handling the end case (last mini-batch < mini_batch_size)
    if m % mini_batch_size != 0:
        ### START CODE HERE ### (approx. 2 lines)
        mini_batch_X = shuffled_X[:, -(m-(mini_batch_size*math.floor(m/mini_batch_size))):]
        mini_batch_Y = shuffled_Y[:, -(m-(mini_batch_size*math.floor(m/mini_batch_size))):]
        ### END CODE HERE ###
        mini_batch = (mini_batch_X, mini_batch_Y)
        mini_batches.append(mini_batch)
    
    return mini_batches
'''  # noqa: E501, W293

CourseFunction = Callable[..., list[tuple[NDArray[Any], NDArray[Any]]]]


def _load_course() -> CourseFunction:
    namespace: dict[str, Any] = {"np": np, "math": math}
    exec(COURSE_SOURCE, namespace)  # the course's code, verbatim
    return cast(CourseFunction, namespace["random_mini_batches"])


course_random_mini_batches = _load_course()


@contextmanager
def global_rng_restored() -> Iterator[None]:
    """Save NumPy's global RNG state and put it back afterwards (the course reseeds it)."""
    state = np.random.get_state()  # noqa: NPY002 -- the legacy global state is the subject
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002 -- restoring the legacy global state


def course(X: NDArray[Any], Y: NDArray[Any], size: int, seed: int) -> list[tuple[Any, Any]]:
    with global_rng_restored():
        return course_random_mini_batches(X, Y, size, seed)


def course_data(n_x: int, m: int, seed: int) -> tuple[NDArray[np.float64], NDArray[np.int64]]:
    """X (n_x, m) of floats and Y (1, m) of 0/1 labels, as in the course (make_moons labels)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n_x, m)), rng.integers(0, 2, size=(1, m))


def same_bits(a: NDArray[Any], b: NDArray[Any]) -> bool:
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def assert_global_state(before: dict[str, Any]) -> None:
    """The global MT19937 state (key, position, cached Gaussian) equals `before`."""
    after = np.random.get_state(legacy=False)  # noqa: NPY002 -- the global state is the subject
    assert after["bit_generator"] == before["bit_generator"]
    assert np.array_equal(after["state"]["key"], before["state"]["key"])
    assert after["state"]["pos"] == before["state"]["pos"]
    assert (after["has_gauss"], after["gauss"]) == (before["has_gauss"], before["gauss"])


# --- (1) the course's own function, bit for bit ---------------------------------------------


@pytest.mark.parametrize(
    ("n_x", "m", "size", "seed"),
    [
        (2, 300, 64, 0),  # the course's default size, 4 full batches and one of 44
        (2, 256, 64, 10),  # s divides m: no smaller last batch
        (3, 148, 64, 1),
        (5, 10, 3, 7),
        (1, 1, 64, 0),  # one example, s > m: one batch of 1
        (4, 64, 64, 2**32 - 1),  # the largest seed np.random.seed accepts, one full batch
        (3, 7, 1, 5),  # batches of one
        (2, 100, 7, 123),
    ],
)
def test_matches_course_function_bit_for_bit(n_x: int, m: int, size: int, seed: int) -> None:
    X, Y = course_data(n_x, m, seed + 1)
    expected = course(X, Y, size, seed)
    got = random_mini_batches(X, Y, size, seed)
    assert len(got) == len(expected) == math.ceil(m / size)
    for (gx, gy), (ex, ey) in zip(got, expected, strict=True):
        assert same_bits(gx, ex)
        assert same_bits(gy, ey)


@given(
    n_x=st.integers(1, 4),
    m=st.integers(1, 200),
    size=st.integers(1, 80),
    seed=st.integers(0, 2**32 - 1),
)
def test_matches_course_function_for_any_sizes(n_x: int, m: int, size: int, seed: int) -> None:
    X, Y = course_data(n_x, m, seed)
    expected = course(X, Y, size, seed)
    got = random_mini_batches(X, Y, size, seed)
    assert len(got) == len(expected)
    assert all(
        same_bits(gx, ex) and same_bits(gy, ey)
        for (gx, gy), (ex, ey) in zip(got, expected, strict=True)
    )


def test_course_default_arguments_and_unpacking() -> None:
    X, Y = course_data(2, 150, 0)
    batches = random_mini_batches(X, Y)  # mini_batch_size=64, seed=0, as the course
    expected = course(X, Y, 64, 0)
    for batch, (ex, ey) in zip(batches, expected, strict=True):
        (minibatch_X, minibatch_Y) = batch  # the course's unpacking
        assert isinstance(batch, MiniBatch)
        assert same_bits(minibatch_X, ex)
        assert same_bits(minibatch_Y, ey)
        assert batch.X is minibatch_X
        assert batch.Y is minibatch_Y


# The course's test case (random_mini_batches_test_case): np.random.seed(1), then X and Y drawn
# from the global RNG, and Y boolean labels; the notebook then calls the function with its
# default seed 0.
COURSE_TEST_CASE = """\
def random_mini_batches_test_case():
    np.random.seed(1)
    mini_batch_size = 64
    X = np.random.randn(12288, 148)
    Y = np.random.randn(1, 148) < 0.5
    return X, Y, mini_batch_size
"""


def test_the_course_test_case_bit_for_bit() -> None:
    namespace: dict[str, Any] = {"np": np}
    exec(COURSE_TEST_CASE, namespace)  # the course's code, as it is
    with global_rng_restored():
        X, Y, size = namespace["random_mini_batches_test_case"]()
    assert (X.shape, Y.shape, Y.dtype, size) == ((12288, 148), (1, 148), np.dtype(bool), 64)
    expected = course(X, Y, size, 0)
    got = random_mini_batches(X, Y, size)
    assert [b.X.shape for b in got] == [(12288, 64), (12288, 64), (12288, 20)]
    assert [b.Y.shape for b in got] == [(1, 64), (1, 64), (1, 20)]
    for (gx, gy), (ex, ey) in zip(got, expected, strict=True):
        assert same_bits(gx, ex)
        assert same_bits(gy, ey)  # boolean batches, as the course's
    # The notebook's sanity check prints the first three values of the first batch's first row.
    np.testing.assert_array_equal(
        np.round(got[0].X[0][0:3], 8), [0.90085595, -0.7612069, 0.2344157]
    )


@pytest.mark.parametrize("dtype", [np.bool_, np.int8, np.uint8, np.int32, np.int64])
def test_labels_keep_their_dtype_and_values(dtype: type) -> None:
    # int64 labels above 2**53 would not survive a detour through float64; they come back whole.
    X, Y = course_data(3, 23, 1)
    labels: NDArray[Any] = (Y + (2**60 if dtype is np.int64 else 0)).astype(dtype)
    batches = random_mini_batches(X, labels, 5, 3)
    expected = course(X, labels, 5, 3)
    for batch, (ex, ey) in zip(batches, expected, strict=True):
        assert batch.Y.dtype == np.dtype(dtype)
        assert same_bits(batch.Y, ey)
        assert same_bits(batch.X, ex)


def test_indices_are_the_legacy_permutation_cut_into_batches() -> None:
    idx = mini_batch_indices(10, 3, 42)
    assert [len(i) for i in idx] == [3, 3, 3, 1]
    expected = np.random.RandomState(42).permutation(10)
    assert np.array_equal(np.concatenate(idx), expected)
    with global_rng_restored():
        np.random.seed(42)  # noqa: NPY002 -- the course's own calls, compared
        course_p = np.random.permutation(10)  # noqa: NPY002
        assert np.array_equal(np.concatenate(idx), course_p)
    assert not any(i.flags.writeable for i in idx)


def test_batches_are_the_indexed_examples() -> None:
    X, Y = course_data(3, 23, 4)
    batches = random_mini_batches(X, Y, 5, 9)
    for batch, idx in zip(batches, mini_batch_indices(23, 5, 9), strict=True):
        assert np.array_equal(batch.X, X[:, idx])
        assert np.array_equal(batch.Y, Y[:, idx])


# --- (2) the global RNG is left alone --------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 10, np.random.default_rng(3)])
def test_global_rng_state_is_unchanged(seed: int | np.random.Generator) -> None:
    X, Y = course_data(2, 50, 0)
    with global_rng_restored():
        np.random.seed(2024)  # noqa: NPY002 -- a known global state, restored afterwards
        before = np.random.get_state(legacy=False)  # noqa: NPY002
        random_mini_batches(X, Y, 8, seed)
        mini_batch_indices(50, 8, 5)
        assert_global_state(before)


# --- (3) axis 0, Generator seeds, drop_last --------------------------------------------------


def test_axis_0_is_the_transposed_course_layout() -> None:
    X, Y = course_data(3, 20, 1)
    expected = random_mini_batches(X, Y, 6, 4)
    for labels in (Y.T, Y.ravel()):  # Y (m, 1) and Y (m,)
        got = random_mini_batches(X.T, labels, 6, 4, axis=0)
        assert len(got) == len(expected) == 4
        for g, e in zip(got, expected, strict=True):
            assert np.array_equal(g.X, e.X.T)
            assert g.Y.shape == (e.Y.shape[1], *labels.shape[1:])
            assert np.array_equal(g.Y.ravel(), e.Y.ravel())


def test_axis_0_with_image_examples_and_negative_axis() -> None:
    X = np.arange(7 * 2 * 3, dtype=np.float32).reshape(7, 2, 3)  # 7 examples of 2x3
    Y = np.arange(7) * 10
    batches = random_mini_batches(X, Y, 3, 1, axis=0)
    idx = mini_batch_indices(7, 3, 1)
    assert [b.X.shape for b in batches] == [(3, 2, 3), (3, 2, 3), (1, 2, 3)]
    for b, i in zip(batches, idx, strict=True):
        assert b.X.dtype == np.float32
        assert np.array_equal(b.X, X[i])
        assert np.array_equal(b.Y, Y[i])
    # axis=-1 is each array's last axis: X (n_x, m) and Y (m,)
    Xc = np.arange(14.0).reshape(2, 7)
    last = random_mini_batches(Xc, Y, 3, 1, axis=-1)
    for b, i in zip(last, idx, strict=True):
        assert np.array_equal(b.X, Xc[:, i])
        assert np.array_equal(b.Y, Y[i])


def test_generator_seed_uses_generator_permutation() -> None:
    X, Y = course_data(2, 30, 0)
    batches = random_mini_batches(X, Y, 7, np.random.default_rng(5))
    p = np.random.default_rng(5).permutation(30)
    assert np.array_equal(np.concatenate([b.X for b in batches], axis=1), X[:, p])
    assert np.array_equal(np.concatenate([b.Y for b in batches], axis=1), Y[:, p])
    again = random_mini_batches(X, Y, 7, np.random.default_rng(5))
    assert all(np.array_equal(a.X, b.X) for a, b in zip(batches, again, strict=True))


def test_generator_is_advanced_so_successive_epochs_reshuffle() -> None:
    rng = np.random.default_rng(0)
    first = np.concatenate(mini_batch_indices(20, 4, rng))
    second = np.concatenate(mini_batch_indices(20, 4, rng))
    reference_rng = np.random.default_rng(0)
    assert np.array_equal(first, reference_rng.permutation(20))
    assert np.array_equal(second, reference_rng.permutation(20))


@pytest.mark.parametrize(("m", "size", "count"), [(10, 3, 3), (10, 5, 2), (10, 10, 1), (5, 64, 0)])
def test_drop_last_keeps_the_full_batches_of_the_same_shuffle(
    m: int, size: int, count: int
) -> None:
    X, Y = course_data(2, m, 0)
    every = random_mini_batches(X, Y, size, 3)
    full = random_mini_batches(X, Y, size, 3, drop_last=True)
    assert len(full) == count == m // size
    assert all(b.X.shape[1] == size for b in full)
    for a, b in zip(full, every[:count], strict=True):
        assert np.array_equal(a.X, b.X)
        assert np.array_equal(a.Y, b.Y)


def test_size_larger_than_m_gives_one_batch_of_everything() -> None:
    X, Y = course_data(2, 5, 0)
    (batch,) = random_mini_batches(X, Y, 64, 0)
    assert batch.X.shape == (2, 5)
    assert np.array_equal(np.sort(batch.X, axis=1), np.sort(X, axis=1))


def test_lists_and_integer_dtypes_are_accepted_and_kept() -> None:
    X = [[1, 2, 3, 4], [5, 6, 7, 8]]
    Y = [[0, 1, 0, 1]]
    batches = random_mini_batches(X, Y, 2, 0)
    assert [b.X.dtype for b in batches] == [np.dtype(np.int_)] * 2
    assert np.array_equal(
        np.concatenate([b.X for b in batches], axis=1)[0] + 4,
        np.concatenate([b.X for b in batches], axis=1)[1],
    )


# --- (4) every rejection ---------------------------------------------------------------------

_X, _Y = course_data(2, 6, 0)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mini_batch_size": 0}, ValueError, "^mini_batch_size must"),
        ({"mini_batch_size": -3}, ValueError, "^mini_batch_size must"),
        ({"mini_batch_size": 2.0}, TypeError, "^mini_batch_size must"),
        ({"mini_batch_size": True}, TypeError, "^mini_batch_size must"),
        ({"mini_batch_size": "4"}, TypeError, "^mini_batch_size must"),
        ({"seed": -1}, ValueError, "^seed must"),
        ({"seed": 2**32}, ValueError, "^seed must"),
        ({"seed": 1.5}, TypeError, "^seed must"),
        ({"seed": "0"}, TypeError, "^seed must"),
        ({"seed": None}, TypeError, "^seed must"),
        ({"seed": True}, TypeError, "^seed must"),
        ({"seed": np.random.RandomState(0)}, TypeError, "^seed must"),
        ({"axis": 2}, ValueError, r"^axis \(for X"),
        ({"axis": -3}, ValueError, r"^axis \(for X"),
        ({"axis": 1.0}, TypeError, r"^axis \(for X"),
        # The message gives the type of the value passed, not only its repr.
        ({"drop_last": 1}, TypeError, r"^drop_last must .* got int 1$"),
        ({"drop_last": None}, TypeError, r"^drop_last must .* got NoneType None$"),
    ],
)
def test_rejects_bad_arguments(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args: dict[str, Any] = {"mini_batch_size": 2, "seed": 0, "axis": 1, "drop_last": False}
    args.update(kwargs)
    with pytest.raises(error, match=match):
        random_mini_batches(_X, _Y, args.pop("mini_batch_size"), args.pop("seed"), **args)


@pytest.mark.parametrize(
    ("X", "Y", "error", "match"),
    [
        (_X, _Y[:, :5], ValueError, r"X and Y .* 6 in X .* 5 in Y"),  # names both
        (np.zeros((2, 0)), np.zeros((1, 0)), ValueError, "at least one example"),
        (np.array(["a", "b"]), _Y[:, :2], TypeError, "X"),
        (_X + 0j, _Y, TypeError, "X"),
        (_X > 0, _Y, TypeError, "X"),
        (np.array([None] * 6, dtype=object).reshape(1, 6), _Y, TypeError, "X"),
        ("abc", _Y, TypeError, "X"),
        (_X, _Y + 0j, TypeError, r"^Y must have a boolean, integer or floating dtype, got complex"),
        (_X, _Y.astype(str), TypeError, r"^Y must have a boolean, integer or floating dtype"),
        (_X, np.ma.array(_Y), TypeError, r"^Y must not be a masked array"),
        (np.ma.array(_X), _Y, TypeError, r"^X must not be a masked array"),
        (_X > 0, _Y > 0, TypeError, r"^X must have a real integer or floating dtype, got boolean"),
        (_X, [[1, 2], [3]], TypeError, "Y"),
        (np.float64(3.0), _Y, ValueError, "X must have at least one dimension"),
        (_X, np.arange(6), ValueError, r"axis \(for Y"),  # Y (m,) has no axis 1
    ],
)
def test_rejects_bad_data(X: Any, Y: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        random_mini_batches(X, Y, 2, 0)


@pytest.mark.parametrize(
    ("m", "error", "match"),
    [(0, ValueError, "^m must"), (2.0, TypeError, "^m must"), (-1, ValueError, "^m must")],
)
def test_indices_reject_bad_m(m: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        mini_batch_indices(m, 2, 0)


# --- (5) no mutation, no aliasing ------------------------------------------------------------


def test_inputs_unchanged_and_batches_are_read_only_copies() -> None:
    X, Y = course_data(3, 17, 2)
    X0, Y0 = X.copy(), Y.copy()
    batches = random_mini_batches(X, Y, 4, 0)
    assert np.array_equal(X, X0)
    assert np.array_equal(Y, Y0)
    for b in batches:
        for arr in b:
            assert not np.shares_memory(arr, X)
            assert not np.shares_memory(arr, Y)
            assert not arr.flags.writeable
            with pytest.raises(ValueError, match="read-only"):
                arr[...] = 0
    # a copy the caller makes is theirs to edit, and X is still untouched
    editable = batches[0].X.copy()
    editable[...] = -1.0
    assert np.array_equal(X, X0)


def test_read_only_inputs_are_accepted() -> None:
    X, Y = course_data(2, 9, 0)
    X.flags.writeable = False
    Y.flags.writeable = False
    assert len(random_mini_batches(X, Y, 4, 0, drop_last=True)) == 2


# --- (6) the mini-batch properties ----------------------------------------------------------

REFERENCE = reference_target()


@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.name)
def test_the_reference_satisfies(prop: Property) -> None:
    prop.as_test(REFERENCE)()


def _course_notes(X: Any, Y: Any, mini_batch_size: int = 64, seed: int = 0) -> Any:
    return course(X, Y, mini_batch_size, seed)  # the global generator restored after each call


# Functions of the course's form, (X, Y, mini_batch_size, seed) with X (n_x, m) and Y (1, m):
# the reference called so, the course notes' own function, and correct code of another shape.
COURSE_FORM = {
    "reference": MiniBatchTarget(random_mini_batches, "reference as the course's"),
    "course notes": MiniBatchTarget(_course_notes, "the course notes' function"),
    "course solution": MiniBatchTarget(
        user_minibatch_example.random_mini_batches, "user_minibatch_example:random_mini_batches"
    ),
    "own generator": MiniBatchTarget(
        user_minibatch_example.random_mini_batches_generator, "a Generator and slices"
    ),
}


@pytest.mark.parametrize("name", COURSE_FORM)
@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.name)
def test_course_form_functions_satisfy(prop: Property, name: str) -> None:
    """Correct functions of the course's form pass every property they take; the drop-last
    property is not applicable to them (the course's function has no drop_last)."""
    result = run_property(prop, COURSE_FORM[name], settings())
    assert result.passed, result.failure
    if prop.name == "minibatch-drop-last":
        assert result.not_applicable.endswith("takes no drop_last: it always keeps the last batch")
    else:
        assert not result.not_applicable
        assert result.examples > 0


def test_course_form_cases_are_the_course_layout() -> None:
    """A course-form target is given X (n_x, m) and Y (1, m) only, without drop_last."""
    seen: list[tuple[tuple[int, ...], tuple[int, ...]]] = []

    def spy(X: Any, Y: Any, mini_batch_size: int, seed: int) -> Any:
        seen.append((X.shape, Y.shape))
        return random_mini_batches(X, Y, mini_batch_size, seed)

    target = MiniBatchTarget(spy, "spy")
    result = run_property(by_name("minibatch-sizes"), target, failure_demo(50))
    assert result.passed
    assert seen
    assert all(len(x) == 2 and y == (1, x[1]) for x, y in seen)


@pytest.mark.parametrize(
    ("function", "caught_by"),
    [
        (user_minibatch_example.random_mini_batches_drops_last, {"cover", "sizes"}),
        (user_minibatch_example.random_mini_batches_with_replacement, {"cover"}),
        (user_minibatch_example.random_mini_batches_misaligned, {"pairing"}),
    ],
    ids=["drops the last batch", "duplicates examples", "misaligns X and Y"],
)
def test_course_form_mistakes_fail_by_name(function: Any, caught_by: set[str]) -> None:
    target = MiniBatchTarget(function, f"user_minibatch_example:{function.__name__}")
    results = [run_property(prop, target, failure_demo(100)) for prop in PROPERTIES]
    failed = {r.name.removeprefix("minibatch-") for r in results if not r.passed}
    assert failed == caught_by
    for r in results:
        if not r.passed:
            assert f"property {r.name!r} failed for {target.name}" in r.failure


def test_a_batch_norm_target_is_not_a_mini_batch_function() -> None:
    result = run_property(by_name("minibatch-cover"), ReferenceImplementation(), settings())
    assert result.passed
    assert result.not_applicable.startswith("reference is a batch-norm implementation")


def test_a_mini_batch_function_has_no_batch_norm() -> None:
    result = run_property(by_name("zero-mean-unit-var"), REFERENCE, settings())
    assert result.not_applicable == (
        "reference random_mini_batches is a mini-batch function: it has no batch-norm forward"
    )
    with pytest.raises(Unsupported, match=r"^spy is a mini-batch function: it has no batch-norm"):
        _ = MiniBatchTarget(random_mini_batches, "spy").convention
    with pytest.raises(ValueError, match=r"^form must be 'course' or 'reference', got 'keras'$"):
        # A form outside the Literal on purpose: the rejection is what is tested.
        MiniBatchTarget(random_mini_batches, "x", form="keras")  # type: ignore[arg-type]


# Each property must be able to fail: a broken mini-batch function of the reference's form is
# caught by the claim it breaks, on a fixed case (m = 10, s = 3: three full batches and one of 1).
_CASE = MiniBatchCase(m=10, size=3, seed=0, features=2, layout=None, drop_last=False)


def _loses_last(
    X: Any, Y: Any, mini_batch_size: int, seed: int, *, axis: int, drop_last: bool
) -> Sequence[tuple[Any, Any]]:
    del drop_last  # always drops the smaller last batch
    return random_mini_batches(X, Y, mini_batch_size, seed, axis=axis, drop_last=True)


def _unpaired(
    X: Any, Y: Any, mini_batch_size: int, seed: int, *, axis: int, drop_last: bool
) -> Sequence[tuple[Any, Any]]:
    xs = random_mini_batches(X, Y, mini_batch_size, seed, axis=axis, drop_last=drop_last)
    ys = random_mini_batches(X, Y, mini_batch_size, seed + 1, axis=axis, drop_last=drop_last)
    return [(bx.X, by.Y) for bx, by in zip(xs, ys, strict=True)]  # Y shuffled separately


def _scrambled(
    X: Any, Y: Any, mini_batch_size: int, seed: int, *, axis: int, drop_last: bool
) -> Sequence[tuple[Any, Any]]:
    batches = random_mini_batches(X, Y, mini_batch_size, seed, axis=axis, drop_last=drop_last)
    return [(np.flip(b.X, axis=0).copy(), b.Y) for b in batches]  # features reversed


def _views(
    X: Any, Y: Any, mini_batch_size: int, seed: int, *, axis: int, drop_last: bool
) -> Sequence[tuple[Any, Any]]:
    del seed, axis  # no shuffle (allowed), and slices that alias X and Y (not allowed)
    m = X.shape[1]
    end = m - m % mini_batch_size if drop_last else m
    return [
        (X[:, k : k + mini_batch_size], Y[:, k : k + mini_batch_size])
        for k in range(0, end, mini_batch_size)
    ]


def _mutates(
    X: Any, Y: Any, mini_batch_size: int, seed: int, *, axis: int, drop_last: bool
) -> Sequence[tuple[Any, Any]]:
    batches = random_mini_batches(X, Y, mini_batch_size, seed, axis=axis, drop_last=drop_last)
    X[...] = X[:, ::-1].copy()  # shuffles the caller's X in place
    return batches


_calls = itertools.count()


def _drifts(
    X: Any, Y: Any, mini_batch_size: int, seed: int, *, axis: int, drop_last: bool
) -> Sequence[tuple[Any, Any]]:
    del seed  # a hidden counter instead of the seed: each call reshuffles differently
    return random_mini_batches(
        X, Y, mini_batch_size, next(_calls) % 2**32, axis=axis, drop_last=drop_last
    )


def _reshuffles_when_dropping(
    X: Any, Y: Any, mini_batch_size: int, seed: int, *, axis: int, drop_last: bool
) -> Sequence[tuple[Any, Any]]:
    return random_mini_batches(
        X, Y, mini_batch_size, seed + int(drop_last), axis=axis, drop_last=drop_last
    )


@pytest.mark.parametrize(
    ("function", "caught_by"),
    [
        (_loses_last, {"minibatch-cover", "minibatch-sizes"}),
        (_unpaired, {"minibatch-pairing"}),
        # a damaged example cannot be read back, so it is also missing from the cover
        (_scrambled, {"minibatch-pairing", "minibatch-cover", "minibatch-drop-last"}),
        (_views, {"minibatch-pure"}),
        # the second call sees the mutated X, so the batches also differ between calls
        (_mutates, {"minibatch-pure", "minibatch-deterministic"}),
        (_drifts, {"minibatch-deterministic", "minibatch-drop-last"}),
        (_reshuffles_when_dropping, {"minibatch-drop-last"}),
    ],
)
def test_properties_catch_broken_functions(
    function: MiniBatchFunction, caught_by: set[str]
) -> None:
    target = MiniBatchTarget(function, function.__name__, form="reference")
    failed: set[str] = set()
    for prop in PROPERTIES:
        try:
            prop.judge(target, _CASE)
        except PropertyFailure:
            failed.add(prop.name)
    assert failed == caught_by
    for prop in PROPERTIES:  # and the reference passes the same case
        prop.judge(REFERENCE, _CASE)


def test_partitions_carry_non_finite_values_as_they_are() -> None:
    # Partitioning looks only at positions: NaN and infinity are examples like any other, so they
    # are neither rejected nor changed (examples_array checks the type only).
    X = np.array([[1.0, np.nan, 3.0, np.inf, 5.0]])
    Y = np.array([[0.0, 1.0, -np.inf, 1.0, 0.0]])
    batches = random_mini_batches(X, Y, mini_batch_size=2, seed=0)
    order = np.concatenate(mini_batch_indices(5, 2, seed=0))
    got_x = np.concatenate([b.X for b in batches], axis=1)
    got_y = np.concatenate([b.Y for b in batches], axis=1)
    assert np.array_equal(got_x, X[:, order], equal_nan=True)
    assert np.array_equal(got_y, Y[:, order])


@pytest.mark.parametrize(("seed", "kind"), [(1.5, "float"), ("3", "str"), (None, "NoneType")])
def test_a_seed_that_is_not_an_integer_is_named_with_its_type(seed: object, kind: str) -> None:
    X, Y = np.zeros((1, 4)), np.zeros((1, 4))
    message = rf"^seed must be an integer or a numpy\.random\.Generator, got {kind} "
    with pytest.raises(TypeError, match=message):
        random_mini_batches(X, Y, seed=seed)  # type: ignore[arg-type]  # rejected
