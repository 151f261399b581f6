"""Every bad input to the batch-norm core gives a clear error naming the argument."""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from reference import (
    batch_norm_backward,
    batch_norm_backward_graph,
    batch_norm_forward,
    batch_norm_inference,
    identity_params,
)
from reference._validation import as_float64_array, as_float64_labels
from reference.batchnorm import channel_layout

X = np.arange(12.0).reshape(4, 3)
ONES = np.ones(3)
ZEROS = np.zeros(3)


def forward(**kw: Any) -> object:
    args: dict[str, Any] = {"x": X, "gamma": ONES, "beta": ZEROS}
    args.update(kw)
    return batch_norm_forward(args.pop("x"), args.pop("gamma"), args.pop("beta"), **args)


def backward(**kw: Any) -> object:
    args: dict[str, Any] = {"dy": X, "x": X, "gamma": ONES}
    args.update(kw)
    return batch_norm_backward(args.pop("dy"), args.pop("x"), args.pop("gamma"), **args)


def graph(**kw: Any) -> object:
    args: dict[str, Any] = {"dy": X, "x": X, "gamma": ONES}
    args.update(kw)
    return batch_norm_backward_graph(args.pop("dy"), args.pop("x"), args.pop("gamma"), **args)


def inference(**kw: Any) -> object:
    args: dict[str, Any] = {
        "x": X,
        "gamma": ONES,
        "beta": ZEROS,
        "running_mean": ZEROS,
        "running_var": ONES,
    }
    args.update(kw)
    pos = [args.pop(k) for k in ("x", "gamma", "beta", "running_mean", "running_var")]
    return batch_norm_inference(*pos, **args)


TRAINING: list[Callable[..., object]] = [forward, backward, graph]
ALL: list[Callable[..., object]] = [*TRAINING, inference]


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("eps", [0.0, -1e-5, float("nan"), float("inf")])
def test_eps_must_be_finite_and_positive(fn: Callable[..., object], eps: float) -> None:
    with pytest.raises(ValueError, match=r"eps must be a finite number > 0, got"):
        fn(eps=eps)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("eps", ["1e-5", None, True, np.ones(1)])
def test_eps_must_be_a_real_number(fn: Callable[..., object], eps: object) -> None:
    with pytest.raises(TypeError, match="eps must be a real number"):
        fn(eps=eps)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("axis", [2, -3, 7])
def test_axis_out_of_range(fn: Callable[..., object], axis: int) -> None:
    with pytest.raises(ValueError, match=r"axis must be in \[-2, 1\] .* got"):
        fn(axis=axis)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("axis", [1.0, "1", None, True])
def test_axis_must_be_an_integer(fn: Callable[..., object], axis: object) -> None:
    with pytest.raises(TypeError, match="axis must be an integer"):
        fn(axis=axis)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("shape", [(2,), (4,), (3, 1), (1, 3), ()])
def test_gamma_of_the_wrong_shape(fn: Callable[..., object], shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"gamma must have shape \(3,\), one value per channel"):
        fn(gamma=np.ones(shape))


@pytest.mark.parametrize("fn", [forward, inference])
def test_beta_of_the_wrong_shape(fn: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match=r"beta must have shape \(3,\)"):
        fn(beta=np.zeros(4))


@pytest.mark.parametrize("name", ["running_mean", "running_var"])
def test_running_stats_of_the_wrong_shape(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must have shape \(3,\)"):
        inference(**{name: np.ones((3, 1))})


def test_negative_running_var() -> None:
    with pytest.raises(ValueError, match=r"^running_var must be >= 0"):
        inference(running_var=np.array([1.0, -0.5, 1.0]))


def test_running_var_of_zero_or_below_one_is_accepted() -> None:
    # Only running_var < 0 is rejected. eps = 1 makes sqrt(running_var + eps) = 1, 1.25, 2
    # exactly, so y = x / sqrt(...) = 1, 2 up to two roundings (the scale 1/1.25 and x * scale).
    x = np.array([[1.0, 1.25, 2.0], [2.0, 2.5, 4.0]])
    y = batch_norm_inference(x, ONES, ZEROS, ZEROS, np.array([0.0, 0.5625, 3.0]), eps=1.0)
    np.testing.assert_allclose(y, [[1.0] * 3, [2.0] * 3], rtol=2 * 2**-53, atol=0)


def test_negative_running_var_reports_the_first_negative_value_and_its_channel() -> None:
    # 0.0 and 0.5 come first and are valid variances, -3.0 is a later negative one: the message
    # names the first value < 0 (-0.25) and its channel (3), not the first <= 0 or < 1.
    running_var = np.array([2.0, 0.5, 0.0, -0.25, -3.0])
    five = np.ones(5)
    with pytest.raises(
        ValueError, match=r"^running_var must be >= 0 in every channel, got -0\.25 at channel 3$"
    ):
        batch_norm_inference(np.ones((2, 5)), five, 0 * five, 0 * five, running_var)


@pytest.mark.parametrize("fn", [backward, graph])
def test_dy_of_the_wrong_shape(fn: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match=r"dy must have the shape of x, \(4, 3\), got shape"):
        fn(dy=np.ones((4, 1)))


# (x, the kind the message names): the kinds without a name of their own (datetime64,
# timedelta64, void) are named by their dtype.
BAD_DTYPES = [
    (X.astype(np.complex128), "complex"),
    (X > 3, "boolean"),
    (X.astype(object), "object"),
    (np.array([["a", "b", "c"]] * 2), "string"),
    (np.array([[b"a", b"b", b"c"]] * 2), "bytes"),
    (np.arange(12).reshape(4, 3).astype("datetime64[D]"), "datetime64[D]"),
    (np.arange(12).reshape(4, 3).astype("timedelta64[s]"), "timedelta64[s]"),
    (np.zeros((4, 3), dtype="V4"), "|V4"),
]


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize(("bad", "what"), BAD_DTYPES)
def test_non_real_x(fn: Callable[..., object], bad: np.ndarray, what: str) -> None:
    with pytest.raises(
        TypeError,
        match=rf"^x must have a real integer or floating dtype, got {re.escape(what)} "
        rf"dtype {re.escape(str(bad.dtype))}$",
    ):
        fn(x=bad)


@pytest.mark.parametrize("fn", ALL)
def test_non_numeric_gamma(fn: Callable[..., object]) -> None:
    with pytest.raises(TypeError, match="gamma must"):
        fn(gamma="one")


@pytest.mark.parametrize("fn", ALL)
def test_ragged_x(fn: Callable[..., object]) -> None:
    with pytest.raises(TypeError, match=r"^x must be a real numeric array, got list$"):
        fn(x=[[1.0, 2.0, 3.0], [1.0]])


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_x_is_rejected_by_default(fn: Callable[..., object], value: float) -> None:
    x = X.copy()
    x[2, 1] = value
    with pytest.raises(
        ValueError, match=r"^x must be finite, got 1 non-finite value\(s\).*\(2, 1\)"
    ):
        fn(x=x)


@pytest.mark.parametrize("fn", ALL)
def test_non_finite_gamma_is_rejected(fn: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match=r"^gamma must be finite"):
        fn(gamma=np.array([1.0, np.nan, 1.0]))


@pytest.mark.parametrize("fn", [backward, graph])
def test_non_finite_dy_is_rejected(fn: Callable[..., object]) -> None:
    dy = X.copy()
    dy[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^dy must be finite"):
        fn(dy=dy)


def test_non_finite_beta_is_rejected_in_forward() -> None:
    with pytest.raises(ValueError, match=r"^beta must be finite"):
        forward(beta=np.array([0.0, np.inf, 0.0]))


# With check_finite=False a NaN is computed with, not rejected, and reaches exactly the results
# that depend on it. A NaN in x[2, 1] or dy[2, 1] enters channel 1's sums (mean, var, sum(dy),
# sum(dy * x_hat)) and through them every element of column 1; a NaN in gamma[1] or beta[1]
# enters only y[:, 1] (forward) or dx[:, 1] = gamma * inv_std / n * (...) (backward): x_hat and
# the statistics do not use them, nor do dgamma = sum(dy * x_hat) and dbeta = sum(dy).
NO_ELEMENT, NO_CHANNEL = np.zeros((4, 3), dtype=bool), np.zeros(3, dtype=bool)
COLUMN, CHANNEL = NO_ELEMENT.copy(), NO_CHANNEL.copy()
COLUMN[:, 1] = CHANNEL[1] = True
REACH: list[tuple[Callable[..., object], str, dict[str, np.ndarray]]] = [
    (forward, "x", {"y": COLUMN, "x_hat": COLUMN, "mean": CHANNEL, "var": CHANNEL}),
    (forward, "gamma", {"y": COLUMN, "x_hat": NO_ELEMENT, "mean": NO_CHANNEL, "var": NO_CHANNEL}),
    (forward, "beta", {"y": COLUMN, "x_hat": NO_ELEMENT, "mean": NO_CHANNEL, "var": NO_CHANNEL}),
    *(
        (fn, name, reach)
        for fn in (backward, graph)
        for name, reach in (
            ("x", {"dx": COLUMN, "dgamma": CHANNEL, "dbeta": NO_CHANNEL}),
            ("dy", {"dx": COLUMN, "dgamma": CHANNEL, "dbeta": CHANNEL}),
            ("gamma", {"dx": COLUMN, "dgamma": NO_CHANNEL, "dbeta": NO_CHANNEL}),
        )
    ),
]


@pytest.mark.parametrize(("fn", "name", "reach"), REACH)
def test_check_finite_false_passes_nan_to_exactly_what_it_reaches(
    fn: Callable[..., object], name: str, reach: dict[str, np.ndarray]
) -> None:
    value = (X if name in ("x", "dy") else ONES).copy()
    value[(2, 1) if value.ndim == 2 else 1] = np.nan
    dy = {"dy": np.linspace(-1.0, 2.0, 12).reshape(4, 3)} if fn is not forward else {}
    with pytest.raises(ValueError, match=f"^{name} must be finite"):
        fn(**{**dy, name: value})
    out = fn(**{**dy, name: value}, check_finite=False)
    for field, where in reach.items():
        np.testing.assert_array_equal(np.isnan(getattr(out, field)), where, err_msg=field)


@pytest.mark.parametrize("fn", [backward, graph])
@pytest.mark.parametrize("bad", [X.astype(np.complex128), [[1.0, 2.0, 3.0], [1.0]]])
def test_non_real_dy_is_rejected_by_name(fn: Callable[..., object], bad: object) -> None:
    with pytest.raises(TypeError, match=r"^dy must"):
        fn(dy=bad)


def test_an_infinity_in_float32_x_leaves_the_other_channels_as_they_are_alone() -> None:
    # Channels are independent: with check_finite=False an infinity in channel 0 of a float32 x
    # makes channel 0 non-finite and leaves channels 1 and 2 bit for bit as computed without
    # channel 0. Their statistics are float64 sums of float32 values whatever channel 0 holds
    # (a float32 sum of these 1000 values rounds differently).
    x = np.random.default_rng(3).normal(1.0, 3.0, (1000, 3)).astype(np.float32)
    x[5, 0] = np.inf
    with np.errstate(invalid="ignore"):  # inf - inf in channel 0's deviations
        out = batch_norm_forward(x, ONES, ZEROS, check_finite=False)
    alone = batch_norm_forward(x[:, 1:], ONES[1:], ZEROS[1:])
    assert not np.isfinite(out.y[:, 0]).any()
    for field in ("y", "x_hat", "mean", "var"):
        np.testing.assert_array_equal(getattr(out, field)[..., 1:], getattr(alone, field))


def test_check_finite_false_lets_nan_propagate() -> None:
    x = X.copy()
    x[1, 0] = np.nan
    out = batch_norm_forward(x, ONES, ZEROS, check_finite=False)
    assert np.isnan(out.y[:, 0]).all()
    assert np.isfinite(out.y[:, 1:]).all()


@pytest.mark.parametrize(
    ("shape", "count"), [((4, 0), 0), ((0, 0, 3), 0), ((2, 3, 5), 10), ((0, 3), 0)]
)
def test_the_layout_counts_the_values_of_each_channel(shape: tuple[int, ...], count: int) -> None:
    # n = size / C values per channel, an int; with no channel there are no values (0, not 1).
    layout = channel_layout(np.zeros(shape), 1)
    assert (layout.channels, layout.count) == (shape[1], count)
    assert type(layout.count) is int


@pytest.mark.parametrize("fn", TRAINING)
def test_one_value_per_channel_is_rejected_in_training(fn: Callable[..., object]) -> None:
    x = np.arange(3.0).reshape(1, 3)
    message = (
        r"^x must have at least 2 values per channel in training mode \(the variance of one "
        r"value is 0 and carries no information\), got 1 for shape \(1, 3\) with channel axis 1$"
    )
    with pytest.raises(ValueError, match=message):
        fn(x=x, dy=x) if fn is not forward else fn(x=x)


def test_one_example_is_fine_in_inference() -> None:
    y = batch_norm_inference(np.arange(3.0).reshape(1, 3), ONES, ZEROS, ZEROS, ONES, eps=1.0)
    np.testing.assert_array_equal(y, np.arange(3.0).reshape(1, 3) / np.sqrt(2.0))


@pytest.mark.parametrize("fn", TRAINING)
@pytest.mark.parametrize("shape", [(0, 3), (0, 3, 4), (2, 3, 0)])
def test_empty_batch_is_rejected_in_training(
    fn: Callable[..., object], shape: tuple[int, ...]
) -> None:
    x = np.zeros(shape)
    with pytest.raises(ValueError, match="x must not be empty"):
        fn(x=x, dy=x) if fn is not forward else fn(x=x)


@pytest.mark.parametrize("fn", ALL)
def test_zero_dimensional_x(fn: Callable[..., object]) -> None:
    with pytest.raises(ValueError, match="x must have at least one dimension"):
        fn(x=np.float64(1.0))


def test_identity_params_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"^var must have the shape of mean"):
        identity_params(np.zeros(3), np.ones(2))
    with pytest.raises(ValueError, match=r"^var must be >= 0, got a minimum of -2\.0$"):
        identity_params(np.zeros(3), np.array([-0.5, 1.0, -2.0]))
    with pytest.raises(ValueError, match="eps must be a finite number > 0"):
        identity_params(np.zeros(2), np.ones(2), eps=0.0)


def test_integer_and_float32_input_compute_in_float64() -> None:
    ints = np.arange(12).reshape(4, 3)
    out_int = batch_norm_forward(ints, ONES, ZEROS)
    out_f32 = batch_norm_forward(ints.astype(np.float32), ONES.astype(np.float32), ZEROS)
    out_f64 = batch_norm_forward(ints.astype(np.float64), ONES, ZEROS)
    for out in (out_int, out_f32):
        assert out.y.dtype == np.float64
        np.testing.assert_array_equal(out.y, out_f64.y)


def test_results_are_read_only() -> None:
    out = batch_norm_forward(X, ONES, ZEROS)
    for arr in (out.y, out.x_hat, out.mean, out.var, out.inv_std):
        with pytest.raises(ValueError, match="read-only"):
            arr[...] = 0.0


def test_inputs_stay_writable_and_unchanged() -> None:
    x, g, b = X.copy(), ONES.copy(), ZEROS.copy()
    batch_norm_forward(x, g, b)
    batch_norm_backward(x, x, g)
    batch_norm_inference(x, g, b, b, g)
    identity_params(b, g)
    for arr, ref in ((x, X), (g, ONES), (b, ZEROS)):
        assert arr.flags.writeable
        np.testing.assert_array_equal(arr, ref)


@pytest.mark.parametrize("name", ["mean", "var"])
@pytest.mark.parametrize(
    ("bad", "error"),
    [(np.array([0.0, np.nan]), ValueError), (np.array([1.0, 2.0j]), TypeError), ("one", TypeError)],
)
def test_identity_params_names_the_bad_argument(
    name: str, bad: object, error: type[Exception]
) -> None:
    args: dict[str, Any] = {"mean": np.zeros(2), "var": np.ones(2)}
    args[name] = bad
    with pytest.raises(error, match=f"^{name} must"):
        identity_params(**args)


def test_a_float64_array_is_read_in_place_and_other_inputs_are_converted() -> None:
    """as_float64_array's contract: a float64 input is only read, never copied (the memory
    bound of the fast path counts on it); any other real input is converted to a new array."""
    x = X.copy()
    assert as_float64_array(x, "x") is x
    as_int = np.arange(6).reshape(2, 3)
    converted = as_float64_array(as_int, "x")
    assert converted.dtype == np.float64
    assert not np.shares_memory(converted, as_int)
    np.testing.assert_array_equal(converted, as_int)


def test_opposite_infinities_raise_the_finiteness_error_without_a_warning() -> None:
    """inf + -inf would be a NaN sum with an "invalid" warning; the finiteness check comes
    first and names x."""
    opposite = X.copy()
    opposite[0, 0], opposite[1, 0] = np.inf, -np.inf  # inf + -inf: invalid, a NaN sum
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fn in (forward, backward):
            with pytest.raises(ValueError, match=r"^x must be finite"):
                fn(x=opposite)


MASKED_MESSAGE = (
    r"must not be a masked array \(its mask would be ignored\), got MaskedArray; fill it "
    r"\(\.filled\(value\)\) or compress it \(\.compressed\(\)\) first$"
)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("name", ["x", "gamma"])
def test_a_masked_array_is_refused(fn: Callable[..., object], name: str) -> None:
    # A masked 1e6 would move the mean to 3.3e5 if its mask were dropped; even a mask that
    # hides nothing is refused: the caller decides what a masked value means.
    value = np.ma.masked_greater(X if name == "x" else ONES, 1e5)
    with pytest.raises(TypeError, match=rf"^{name} {MASKED_MESSAGE}"):
        fn(**{name: value})


@pytest.mark.parametrize("fn", [backward, graph])
def test_a_masked_dy_is_refused(fn: Callable[..., object]) -> None:
    with pytest.raises(TypeError, match=rf"^dy {MASKED_MESSAGE}"):
        fn(dy=np.ma.array(X, mask=X > 5))


@pytest.mark.parametrize("name", ["beta", "running_mean", "running_var"])
def test_masked_parameters_are_refused_in_inference(name: str) -> None:
    with pytest.raises(TypeError, match=rf"^{name} {MASKED_MESSAGE}"):
        inference(**{name: np.ma.array(ONES)})


def test_masked_statistics_are_refused_by_identity_params() -> None:
    with pytest.raises(TypeError, match=rf"^mean {MASKED_MESSAGE}"):
        identity_params(np.ma.array([0.0, 1e6], mask=[False, True]), np.ones(2))


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize(
    ("value", "shown"),
    [("no", "str 'no'"), (None, "NoneType None"), (0, "int 0"), (1.0, "float 1.0")],
)
def test_check_finite_must_be_a_bool(fn: Callable[..., object], value: object, shown: str) -> None:
    # "no" is truthy: taken as a flag it would check, the opposite of what it says.
    with pytest.raises(TypeError, match=rf"^check_finite must be a bool, got {re.escape(shown)}$"):
        fn(check_finite=value)


@pytest.mark.parametrize("fn", ALL)
def test_check_finite_accepts_numpy_bools(fn: Callable[..., object]) -> None:
    x = X.copy()
    x[0, 0] = np.nan
    with pytest.raises(ValueError, match=r"^x must be finite"):
        fn(x=x, check_finite=np.True_)
    with np.errstate(invalid="ignore"):
        fn(x=x, check_finite=np.False_)  # NaN propagates, no error


# --- labels and dtype names ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "want"),
    [
        (np.array([[True, False, True]]), [[1.0, 0.0, 1.0]]),
        (np.array([[2, 0, -1]], dtype=np.int8), [[2.0, 0.0, -1.0]]),
        (np.array([[0.5, 1.0]], dtype=np.float32), [[0.5, 1.0]]),
    ],
    ids=["boolean", "int8", "float32"],
)
def test_labels_are_read_as_float64_numbers(labels: Any, want: list[list[float]]) -> None:
    """The course's Y = (randn(1, m) < 0.5) is boolean; labels of every real kind come back as
    float64 0/1 or their values, and the input is not modified."""
    before = labels.copy()
    got = as_float64_labels(labels, "Y")
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(labels, before)


def test_float64_labels_are_read_in_place() -> None:
    """As as_float64_array's input: float64 labels are only read, never copied; only boolean
    labels (and other dtypes) are converted to a new array."""
    labels = np.array([[1.0, 0.0, 1.0]])
    assert as_float64_labels(labels, "Y") is labels


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.array([1 + 2j]), "Y must have a boolean, integer or floating dtype, got complex"),
        (np.array([np.nan, 1.0]), "Y must be finite, got 1 non-finite value(s)"),
    ],
)
def test_labels_that_are_not_real_finite_numbers_are_refused_by_name(
    labels: Any, message: str
) -> None:
    with pytest.raises((TypeError, ValueError), match="^" + re.escape(message)):
        as_float64_labels(labels, "Y")


def test_a_boolean_array_is_refused_where_labels_are_not_expected() -> None:
    with pytest.raises(
        TypeError, match=r"^x must have a real integer or floating dtype, got boolean"
    ):
        as_float64_array(np.array([True, False]), "x")


@pytest.mark.parametrize(
    ("value", "what"),
    [
        (np.array([object()]), "object dtype object"),
        (np.array(["a"]), "string dtype <U1"),
        (np.array([b"a"]), "bytes dtype |S1"),
        (np.array([1j]), "complex dtype complex128"),
        (np.array(["2026-12-05"], dtype="datetime64[D]"), "datetime64[D] dtype datetime64[D]"),
    ],
)
def test_a_refused_dtype_is_named_in_words(value: Any, what: str) -> None:
    message = f"x must have a real integer or floating dtype, got {what}"
    with pytest.raises(TypeError, match="^" + re.escape(message) + "$"):
        as_float64_array(value, "x")
