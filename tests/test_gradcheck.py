"""reference.gradcheck: central differences, full and fast checks, reports, bad input."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import pytest

from reference import gradcheck
from reference._validation import Float64Array
from reference.gradcheck import (
    DEFAULT_PROJECTIONS,
    DEFAULT_RELATIVE_STEP,
    DEFAULT_TOLERANCE,
    GradcheckReport,
    default_step,
    fast_check,
    full_check,
    numeric_gradients,
    relative_error,
)

U = 2.0**-53
RNG = np.random.default_rng(20240601)
A = RNG.standard_normal((3, 4))
B = RNG.standard_normal((3, 4))
V = RNG.standard_normal((3, 4))
NAMES = ("a", "b")
WRONG = (1, 2)  # the element a deliberately wrong vjp gets wrong


def f_ab(a: Float64Array, b: Float64Array) -> Float64Array:
    """f(a, b) = a * b + sin(a)."""
    out: Float64Array = a * b + np.sin(a)
    return out


def vjp_ab(v: Float64Array, a: Float64Array, b: Float64Array) -> tuple[Float64Array, ...]:
    """dL/da = v (b + cos a), dL/db = v a."""
    return v * (b + np.cos(a)), v * a


def vjp_one_wrong(v: Float64Array, a: Float64Array, b: Float64Array) -> tuple[Float64Array, ...]:
    ga, gb = vjp_ab(v, a, b)
    ga = ga.copy()
    ga[WRONG] += 1e-3
    return ga, gb


def vjp_missing_term(v: Float64Array, a: Float64Array, b: Float64Array) -> tuple[Float64Array, ...]:
    """Forgets the derivative of sin(a)."""
    return v * b, v * a


M1 = RNG.standard_normal((3, 5))
M2 = RNG.standard_normal((5, 2))
VM = RNG.standard_normal((3, 2))


def vjp_matmul(v: Float64Array, p: Float64Array, q: Float64Array) -> tuple[Float64Array, ...]:
    """For L = sum(v * (p @ q)): dL/dp = v q^T, dL/dq = p^T v."""
    return v @ q.T, p.T @ v


CHECKS: dict[str, Callable[..., GradcheckReport]] = {
    "full": full_check,
    "fast": lambda *a, **k: fast_check(*a, rng=7, **k),
}


# --- relative_error ---------------------------------------------------------------------------


def test_relative_error_formula() -> None:
    assert relative_error([3.0, 4.0], [3.0, 4.0]) == 0.0
    assert relative_error([0.0, 0.0], [0.0, 0.0]) == 0.0
    # ||(1, -1)|| / (1 + 1) = sqrt(2) / 2
    assert relative_error([1.0, 0.0], [0.0, 1.0]) == pytest.approx(math.sqrt(2) / 2, rel=4 * U)
    assert relative_error([1.0], [-1.0]) == 1.0  # the largest possible value
    assert relative_error([2.0], [1.0]) == pytest.approx(1 / 3, rel=4 * U)
    assert relative_error([], []) == 0.0  # empty vectors have norm 0, like zero ones


def test_relative_error_is_scale_free_without_overflow_or_underflow() -> None:
    a, n = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.5, 3.0])
    want = relative_error(a, n)
    for scale in (1e-200, 1e200):
        assert relative_error(a * scale, n * scale) == pytest.approx(want, rel=8 * U)


def test_relative_error_of_non_finite_values_is_nan() -> None:
    assert math.isnan(relative_error([1.0, math.nan], [1.0, 1.0]))
    assert math.isnan(relative_error([1.0], [math.inf]))


def test_relative_error_rejects_different_shapes() -> None:
    with pytest.raises(ValueError, match=r"^numeric must have the shape of analytic"):
        relative_error(np.ones(3), np.ones((3, 1)))


def test_relative_error_rejects_non_real_arrays() -> None:
    with pytest.raises(
        TypeError, match=r"^analytic must have a real integer or floating dtype, got complex"
    ):
        relative_error(np.ones(2, dtype=complex), np.ones(2))
    with pytest.raises(TypeError, match=r"^numeric must have a real integer or floating dtype"):
        relative_error(np.ones(2), np.ones(2, dtype=complex))


def test_default_step_rejects_non_finite_input() -> None:
    with pytest.raises(ValueError, match=r"^x must be finite"):
        default_step(np.array([1.0, math.nan]))


# --- numeric gradients and the step ---------------------------------------------------------


def test_numeric_gradients_match_the_analytic_ones() -> None:
    ga, gb = numeric_gradients(f_ab, (A, B), V)
    wa, wb = vjp_ab(V, A, B)
    # At the derived step the error is ~ (3u)**(2/3) ~ 2e-10 relative; measured ~2e-11.
    assert relative_error(ga, wa) < 1e-9
    assert relative_error(gb, wb) < 1e-9


def test_numeric_gradient_of_a_linear_function_is_exact_to_rounding() -> None:
    (g,) = numeric_gradients(lambda x: 3.0 * x, (np.array([0.0, 1.0, -2.0]),), np.ones(3))
    # No truncation: only the rounding u|L|/h of L, relative ~ u / c3 ~ 2e-11.
    np.testing.assert_allclose(g, 3.0, rtol=1e-9)


def test_default_step_is_the_derived_optimum() -> None:
    """The error at (3u)**(1/3) * scale is smaller than 100x above (truncation) or below
    (rounding): the step is where h**2/6 |f'''| and u|f|/h balance."""
    x = np.array([0.7, -1.3, 2.1])

    def err(relative: float) -> float:
        (g,) = numeric_gradients(np.exp, (x,), np.ones(3), step=relative * np.abs(x))
        return relative_error(g, np.exp(x))

    best = err(DEFAULT_RELATIVE_STEP)
    assert best < 1e-9
    assert best < err(100 * DEFAULT_RELATIVE_STEP)
    assert best < err(DEFAULT_RELATIVE_STEP / 100)
    assert pytest.approx(6.93e-6, rel=1e-3) == DEFAULT_RELATIVE_STEP


def test_default_step_formula() -> None:
    x = np.array([0.0, 3.0, -4.0])
    rms = math.sqrt(25 / 3)
    np.testing.assert_allclose(
        default_step(x), DEFAULT_RELATIVE_STEP * np.array([rms, 3.0, 4.0]), rtol=4 * U
    )
    np.testing.assert_array_equal(default_step(np.zeros(2)), DEFAULT_RELATIVE_STEP)
    # rms < 1: the floor is the rms itself, not 1 (the step scales with the input).
    small = np.array([0.0, 0.3, -0.4])
    np.testing.assert_allclose(
        default_step(small),
        DEFAULT_RELATIVE_STEP * np.array([math.sqrt(0.25 / 3), 0.3, 0.4]),
        rtol=4 * U,  # a few roundings in the mean, sqrt and product
    )
    # An empty input has no elements to step: an empty step, and no mean of an empty slice.
    assert default_step(np.zeros((0, 3))).shape == (0, 3)


def test_the_divisor_is_the_step_actually_taken() -> None:
    """At x = 1e8 a step of 0.3 is rounded; dividing by the representable 2h keeps the slope
    of a linear function exact where dividing by 0.6 would err by ~1e-9."""
    x = np.array([1e8])
    (g,) = numeric_gradients(lambda t: 2.0 * t, (x,), np.ones(1), step=0.3)
    assert g[0] == 2.0


def test_numeric_gradients_with_a_per_input_step() -> None:
    ga, gb = numeric_gradients(f_ab, (A, B), V, step=(1e-6, np.full(4, 2e-6)))
    wa, wb = vjp_ab(V, A, B)
    assert relative_error(ga, wa) < 1e-8
    assert relative_error(gb, wb) < 1e-8


# --- full and fast checks on correct gradients -------------------------------------------------


def test_full_check_passes_correct_gradients() -> None:
    report = full_check(f_ab, vjp_ab, (A, B), upstream=V, names=NAMES)
    assert report.passed
    assert report.mode == "full"
    assert max(report.relative_errors.values()) < 1e-9  # measured ~2e-11
    assert report.evaluations == 1 + 2 * (A.size + B.size)
    assert dict(report.tolerances) == {"a": DEFAULT_TOLERANCE, "b": DEFAULT_TOLERANCE}


def test_full_check_passes_matmul() -> None:
    report = full_check(np.matmul, vjp_matmul, (M1, M2), upstream=VM)
    assert report.passed
    assert max(report.relative_errors.values()) < 1e-9
    assert set(report.relative_errors) == {"inputs[0]", "inputs[1]"}


def test_fast_check_passes_correct_gradients() -> None:
    report = fast_check(f_ab, vjp_ab, (A, B), upstream=V, names=NAMES, rng=3)
    assert report.passed
    assert report.mode == "fast"
    assert max(report.relative_errors.values()) < 1e-9
    assert report.evaluations == 1 + 2 * 2 * DEFAULT_PROJECTIONS
    assert report.fast_relative_errors == {}
    assert dict(report.tolerances) == {"a": DEFAULT_TOLERANCE, "b": DEFAULT_TOLERANCE}
    assert 0 <= report.worst_index[0] < DEFAULT_PROJECTIONS


def test_fast_check_passes_matmul_with_one_projection() -> None:
    report = fast_check(np.matmul, vjp_matmul, (M1, M2), upstream=VM, rng=0, num_projections=1)
    assert report.passed
    assert report.evaluations == 1 + 2 * 2 * 1


def test_fast_check_is_reproducible_from_its_seed() -> None:
    r1 = fast_check(f_ab, vjp_ab, (A, B), upstream=V, rng=11)
    r2 = fast_check(f_ab, vjp_ab, (A, B), upstream=V, rng=np.random.default_rng(11))
    assert r1 == r2


# --- wrong gradients are caught and located ---------------------------------------------------


def _assert_locates_wrong_element(report: GradcheckReport) -> None:
    assert not report.passed
    assert report.worst_input == "a"
    assert report.worst_index == WRONG
    right = vjp_ab(V, A, B)[0][WRONG]
    assert report.analytic == right + 1e-3
    assert report.numeric == pytest.approx(right, abs=1e-9)
    assert report.relative_errors["b"] <= report.tolerances["b"]
    text = str(report)
    assert "a[1, 2]" in text
    assert repr(report.analytic) in text
    assert repr(report.numeric) in text
    assert "FAILED" in text


def test_full_check_locates_one_wrong_element() -> None:
    report = full_check(f_ab, vjp_one_wrong, (A, B), upstream=V, names=NAMES)
    assert report.mode == "full"
    _assert_locates_wrong_element(report)


def test_fast_check_falls_back_and_locates_one_wrong_element() -> None:
    report = fast_check(f_ab, vjp_one_wrong, (A, B), upstream=V, names=NAMES, rng=5)
    assert report.mode == "fast->full"
    _assert_locates_wrong_element(report)
    assert report.fast_relative_errors["a"] > DEFAULT_TOLERANCE
    assert report.fast_relative_errors["b"] <= DEFAULT_TOLERANCE
    assert report.evaluations == 1 + 2 * 2 * DEFAULT_PROJECTIONS + 2 * (A.size + B.size)
    assert "the fast check failed" in str(report)


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_a_missing_term_is_caught_and_named(mode: str) -> None:
    report = CHECKS[mode](f_ab, vjp_missing_term, (A, B), upstream=V, names=NAMES)
    assert not report.passed
    assert report.mode == ("full" if mode == "full" else "fast->full")
    assert report.worst_input == "a"
    assert report.relative_errors["a"] > 1e-2  # cos(a) is of the order of the gradient
    # The worst element is where the missing v * cos(a) is largest.
    assert report.worst_index == np.unravel_index(np.argmax(np.abs(V * np.cos(A))), A.shape)


def test_atol_absorbs_a_known_error() -> None:
    """A gradient wrong by 1e-3 at one element passes once atol allows 1e-3 per element."""
    report = full_check(f_ab, vjp_one_wrong, (A, B), upstream=V, names=NAMES, atol=(1e-3, 0.0))
    assert report.passed
    a_norm = np.linalg.norm(vjp_one_wrong(V, A, B)[0])
    n_norm = np.linalg.norm(numeric_gradients(f_ab, (A, B), V)[0])
    # tolerance + ||atol|| / (||a|| + ||n||), ||atol|| = 1e-3 * sqrt(12)
    want = DEFAULT_TOLERANCE + 1e-3 * math.sqrt(A.size) / (a_norm + n_norm)
    assert report.tolerances["a"] == pytest.approx(want, rel=1e-9)
    fast = fast_check(f_ab, vjp_one_wrong, (A, B), upstream=V, names=NAMES, atol=(1e-3, 0.0), rng=5)
    assert fast.passed
    assert fast.mode == "fast"


def test_tolerance_with_atol_on_a_hand_example() -> None:
    """f = x / 4 at x = 1 with step 1/2: numeric 0.25 exactly; analytic 0.375. Then
    error = 0.125 / (0.375 + 0.25) = 0.2 and tolerance = 0.01 + atol / 0.625 = 0.81."""
    report = full_check(
        lambda a: a / 4,
        lambda w, _a: (w / 4 + 0.125,),
        (np.array([1.0]),),
        upstream=np.ones(1),
        step=0.5,
        tolerance=0.01,
        atol=0.5,
    )
    assert report.numeric == 0.25
    assert report.analytic == 0.375
    assert report.relative_errors["inputs[0]"] == pytest.approx(0.2, rel=4 * U)
    assert report.tolerance == pytest.approx(0.81, rel=4 * U)  # a few roundings
    assert report.passed
    assert report.evaluations == 3


def test_the_worst_input_has_the_largest_error_over_tolerance_not_the_largest_error() -> None:
    """As in the hand example, a errs by 0.2 against 0.81 (ratio 0.25, passes); b's analytic
    0.3 against numeric 0.25 errs by 0.05 / 0.55 = 0.09 against 0.01 (ratio 9, fails)."""
    report = full_check(
        lambda a, b: (a + b) / 4,
        lambda w, _a, _b: (w / 4 + 0.125, w / 4 + 0.05),
        (np.array([1.0]), np.array([1.0])),
        upstream=np.ones(1),
        names=NAMES,
        step=0.5,
        tolerance=0.01,
        atol=(0.5, 0.0),
    )
    assert report.relative_errors["a"] > report.relative_errors["b"]
    # 0.3 - 0.25 cancels: the rounding of 0.3 (u * 0.3) is 6u of the difference, plus a few u.
    assert report.relative_errors["b"] == pytest.approx(0.05 / 0.55, rel=16 * U)
    assert report.worst_input == "b"
    assert not report.passed


def test_a_wrong_second_input_is_the_worst() -> None:
    def vjp_wrong_b(v: Float64Array, a: Float64Array, b: Float64Array) -> tuple[Float64Array, ...]:
        ga, gb = vjp_ab(v, a, b)
        return ga, gb + 1e-3

    report = full_check(f_ab, vjp_wrong_b, (A, B), upstream=V, names=NAMES)
    assert report.relative_errors["a"] > 0.0  # rounding: a nonzero error, far below b's
    assert report.worst_input == "b"


def test_zero_gradients_pass_with_the_relative_tolerance() -> None:
    """||a|| + ||n|| = 0 leaves atol nothing to be relative to: the tolerance is `tolerance`."""
    report = full_check(
        lambda a: 0.0 * a,
        lambda w, _a: (0.0 * w,),
        (np.array([1.0, 2.0]),),
        upstream=np.ones(2),
        atol=1.0,
    )
    assert report.passed
    assert report.relative_errors["inputs[0]"] == 0.0
    assert report.tolerance == DEFAULT_TOLERANCE


def test_a_nan_error_is_worse_than_any_finite_error() -> None:
    """Even an error against a zero tolerance (error / tolerance = inf) ranks below a NaN."""
    x, v = np.array([1.0, -3.0]), np.array([1.0, 2.0])

    def f(a: Float64Array, b: Float64Array) -> Float64Array:
        out: Float64Array = np.square(a) + 3.0 * b
        return out

    def vjp(w: Float64Array, a: Float64Array, _b: Float64Array) -> tuple[Float64Array, ...]:
        return 2 * a * w + 0.5, np.full(2, math.nan)

    report = full_check(f, vjp, (x, x), upstream=v, names=NAMES, step=0.5, tolerance=0.0)
    assert report.relative_errors["a"] > 0.0
    assert math.isnan(report.relative_errors["b"])
    assert report.worst_input == "b"


def test_a_nan_gradient_fails() -> None:
    def vjp_nan(v: Float64Array, a: Float64Array, b: Float64Array) -> tuple[Float64Array, ...]:
        ga, gb = vjp_ab(v, a, b)
        ga = ga.copy()
        ga[0, 1] = math.nan
        return ga, gb

    report = full_check(f_ab, vjp_nan, (A, B), upstream=V, names=NAMES)
    assert not report.passed
    assert report.worst_input == "a"
    assert report.worst_index == (0, 1)
    assert math.isnan(report.relative_errors["a"])
    assert report.tolerances["a"] == DEFAULT_TOLERANCE  # no atol term from a NaN scale
    assert report.relative_errors["b"] <= report.tolerances["b"]


def test_an_infinite_gradient_is_as_bad_as_a_nan_one() -> None:
    """Both differ from the numeric value by an infinite amount; the first such element is the
    worst one."""

    def vjp_inf_nan(v: Float64Array, a: Float64Array, b: Float64Array) -> tuple[Float64Array, ...]:
        ga, gb = vjp_ab(v, a, b)
        ga = ga.copy()
        ga[0, 1], ga[0, 2] = math.inf, math.nan
        return ga, gb

    report = full_check(f_ab, vjp_inf_nan, (A, B), upstream=V, names=NAMES)
    assert not report.passed
    assert report.worst_index == (0, 1)
    assert report.analytic == math.inf


@pytest.mark.parametrize("mode", ["full", "fast"])
def test_a_non_finite_output_of_f_fails_the_check_rather_than_raising(mode: str) -> None:
    """f = x, but +inf once x[0] moves off 1: L(x +- h e_0) = inf, whose difference is NaN."""

    def f_blows_up(a: Float64Array) -> Float64Array:
        return a if a[0] == 1.0 else np.full_like(a, math.inf)

    x = np.array([1.0, 2.0])
    report = CHECKS[mode](f_blows_up, lambda v, _a: (v,), (x,), upstream=np.ones(2))
    assert not report.passed
    assert math.isnan(report.relative_errors["inputs[0]"])
    assert report.tolerances["inputs[0]"] == DEFAULT_TOLERANCE


def test_a_nan_output_of_f_at_the_inputs_fails_the_check_rather_than_raising() -> None:
    report = full_check(
        lambda a: a * math.nan, lambda v, _a: (v,), (np.array([1.0, 2.0]),), upstream=np.ones(2)
    )
    assert not report.passed
    assert math.isnan(report.relative_errors["inputs[0]"])


def test_central_differences_are_exact_for_quadratics() -> None:
    """(x + h)**2 - (x - h)**2 = 4 x h: no truncation. With small integers and a power-of-two
    step every operation is exact, so the gradient is exactly 2 x v."""
    x, v = np.array([1.0, -3.0, 4.0]), np.array([1.0, 2.0, -1.0])
    (g,) = numeric_gradients(np.square, (x,), v, step=0.5)
    np.testing.assert_array_equal(g, 2 * x * v)
    # Generic values at the default step: only the rounding of L, ~u sum|v f| / h.
    y = np.array([0.37, -1.91, 2.53])
    (g,) = numeric_gradients(np.square, (y,), v)
    # u * sum|v y**2| (~14) / h (>= 6.9e-6 * 1.8) ~ 1.3e-10 per element; 1e-9 leaves room x8.
    np.testing.assert_allclose(g, 2 * y * v, rtol=0, atol=1e-9)


def test_worst_input_with_zero_tolerance() -> None:
    """With tolerance 0 an input with error exactly 0 passes and one with any error fails and
    is the worst, whatever their order."""
    x, v = np.array([1.0, -3.0]), np.array([1.0, 2.0])

    def f(a: Float64Array, b: Float64Array) -> Float64Array:
        out: Float64Array = np.square(a) + 3.0 * b
        return out

    def vjp(w: Float64Array, a: Float64Array, _b: Float64Array) -> tuple[Float64Array, ...]:
        return 2 * a * w, 3.0 * w + np.array([0.0, 0.5])  # b's gradient is wrong at index 1

    report = full_check(f, vjp, (x, x), upstream=v, names=NAMES, step=0.5, tolerance=0.0)
    assert report.relative_errors["a"] == 0.0  # exact (see the quadratic test above)
    assert report.relative_errors["b"] > 0.0
    assert not report.passed
    assert report.worst_input == "b"
    assert report.worst_index == (1,)
    assert dict(report.tolerances) == {"a": 0.0, "b": 0.0}
    # atol on b alone: b passes with error / tolerance = 0.5 / ||(1, 1)|| ~ 0.35, which still
    # makes it worse than a, whose 0 / 0 counts as 0.
    report = full_check(
        f, vjp, (x, x), upstream=v, names=NAMES, step=0.5, tolerance=0.0, atol=(0.0, 1.0)
    )
    assert report.passed
    assert report.worst_input == "b"


def test_fast_check_directions_are_steps_times_uniform_draws() -> None:
    """Projection p of input k moves x_k by delta = step_k * r, r ~ uniform(-1, 1) drawn from
    rng for p = 0, 1, ... and, within p, k = 0, 1, ...; a_p = <g_k, delta>, n_p = central
    difference of L over 2 delta. f is linear, so n_p = <dL/dx_k, delta> up to rounding."""
    x, y = np.array([0.5, -1.0, 2.0]), np.array([[1.0, 3.0]])
    v = np.array([1.0, 2.0, -3.0, 0.5, -1.5])
    error = np.array([0.1, -0.2, 0.4])

    def f(a: Float64Array, b: Float64Array) -> Float64Array:
        return np.concatenate([2.0 * a, 3.0 * b.ravel()])

    def vjp(w: Float64Array, _a: Float64Array, _b: Float64Array) -> tuple[Float64Array, ...]:
        return 2.0 * w[:3] + error, 3.0 * w[3:].reshape(1, 2)

    steps, count = (0.25, 0.125), 4
    # tolerance 1 (every relative error is <= 1): the fast report, whatever the values.
    report = fast_check(
        f,
        vjp,
        (x, y),
        upstream=v,
        names=NAMES,
        rng=9,
        num_projections=count,
        step=steps,
        tolerance=1.0,
        atol=(1e-3, 0.0),
    )
    gen = np.random.default_rng(9)
    draws = [
        [h * gen.uniform(-1.0, 1.0, size=z.shape) for h, z in zip(steps, (x, y), strict=True)]
        for _ in range(count)
    ]
    dx = np.array([d[0] for d in draws])  # (count, 3)
    analytic = dx @ (2.0 * v[:3] + error)
    numeric = dx @ (2.0 * v[:3])
    assert report.mode == "fast"
    assert report.evaluations == 1 + 2 * 2 * count
    # Rounding only: x +- delta is exact to ~u 2.25, L to ~u sum|v f| ~ 30 u, against
    # projections of size ~0.1: relative errors agree to ~1e-13; 1e-9 is far above that.
    assert report.relative_errors["a"] == pytest.approx(relative_error(analytic, numeric), rel=1e-9)
    assert report.relative_errors["b"] < 1e-9
    # atol bounds a projection by sum_i atol_i step_i = 3 * 1e-3 * 0.25, and the vector of
    # count projections by sqrt(count) times that; relative to ||a|| + ||n||.
    scale = np.linalg.norm(analytic) + np.linalg.norm(numeric)
    want = 1.0 + math.sqrt(count) * 3 * 1e-3 * 0.25 / scale
    assert report.tolerances["a"] == pytest.approx(want, rel=1e-9)
    assert report.tolerances["b"] == 1.0
    p = int(np.argmax(np.abs(analytic - numeric)))
    assert report.worst_input == "a"
    assert report.worst_index == (p,)
    assert report.analytic == pytest.approx(analytic[p], rel=1e-9)
    assert report.numeric == pytest.approx(numeric[p], rel=1e-9)


# --- purity and report invariants -------------------------------------------------------------


def test_inputs_are_never_modified_even_by_a_mutating_f() -> None:
    a, b, v = A.copy(), B.copy(), V.copy()

    def f_mutating(x: Float64Array, y: Float64Array) -> Float64Array:
        out = f_ab(x, y)
        x[...] = 0.0
        y[...] = 0.0
        return out

    def vjp_mutating(w: Float64Array, x: Float64Array, y: Float64Array) -> Any:
        grads = vjp_ab(w, x, y)
        w[...], x[...], y[...] = 0.0, 0.0, 0.0
        return grads

    full = full_check(f_mutating, vjp_mutating, (a, b), upstream=v)
    fast = fast_check(f_mutating, vjp_mutating, (a, b), upstream=v, rng=1)
    numeric_gradients(f_mutating, (a, b), v)
    np.testing.assert_array_equal(a, A)
    np.testing.assert_array_equal(b, B)
    np.testing.assert_array_equal(v, V)
    assert full.passed  # each call of f got fresh copies, so the check itself is unharmed
    assert fast.passed


@pytest.mark.parametrize("batch_values", [None, 1])
@pytest.mark.parametrize("mode", ["full", "fast"])
def test_the_check_uses_the_inputs_as_they_were_at_the_call(
    mode: str, batch_values: int | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """f modifies the caller's arrays (through a closure) at every call: the check works on
    private copies taken at the call, so it still sees the function x**2 at the original x.
    With batches of one value f runs after each point is built, before the next one: the
    points too are built around the copy, not around the caller's (moved) array."""
    if batch_values is not None:
        monkeypatch.setattr(gradcheck, "BATCH_VALUES", batch_values)
    x, v = np.array([1.0, 2.0]), np.array([1.0, -1.0])
    x0, v0 = x.copy(), v.copy()

    def f_meddling(a: Float64Array) -> Float64Array:
        x[...] += 1.0
        v[...] += 1.0
        out: Float64Array = np.square(a)
        return out

    report = CHECKS[mode](f_meddling, lambda w, a: (2 * a * w,), (x,), upstream=v)
    assert report.passed
    assert report.relative_errors["inputs[0]"] < 1e-9  # as for the quadratic above
    assert not np.array_equal(x, x0)  # the meddling did happen
    assert not np.array_equal(v, v0)


@pytest.mark.parametrize("vjp", [vjp_ab, vjp_one_wrong, vjp_missing_term])
@pytest.mark.parametrize("mode", ["full", "fast"])
def test_report_invariants(mode: str, vjp: Callable[..., Any]) -> None:
    report = CHECKS[mode](f_ab, vjp, (A, B), upstream=V, names=NAMES)
    assert report.mode in {"full", "fast", "fast->full"}
    assert tuple(report.relative_errors) == NAMES == tuple(report.tolerances)
    assert report.passed == all(report.relative_errors[n] <= report.tolerances[n] for n in NAMES)
    assert report.worst_input in NAMES
    assert report.tolerance == report.tolerances[report.worst_input]
    if report.mode == "fast":
        assert len(report.worst_index) == 1
        assert 0 <= report.worst_index[0] < DEFAULT_PROJECTIONS
    else:
        shape = {"a": A.shape, "b": B.shape}[report.worst_input]
        assert len(report.worst_index) == len(shape)
        assert all(0 <= i < s for i, s in zip(report.worst_index, shape, strict=True))
        k = NAMES.index(report.worst_input)
        assert report.analytic == vjp(V, A, B)[k][report.worst_index]
        numeric = numeric_gradients(f_ab, (A, B), V)[k]
        assert report.numeric == numeric[report.worst_index]
        diff = np.abs(vjp(V, A, B)[k] - numeric)
        assert abs(report.analytic - report.numeric) == diff.max()
    for n in NAMES:
        assert 0.0 <= report.relative_errors[n] <= 1.0
    assert report.worst_input in str(report)
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.passed = not report.passed  # type: ignore[misc]  # the point: it is frozen
    with pytest.raises(TypeError):
        report.relative_errors["a"] = 0.0  # type: ignore[index]  # read-only mapping


# --- the report's text ------------------------------------------------------------------------


def _hand_report(passed: bool, mode: str, fast: dict[str, float]) -> GradcheckReport:
    return GradcheckReport(
        passed=passed,
        mode=mode,
        relative_errors=MappingProxyType({"a": 0.5, "b": 1e-12}),
        tolerances=MappingProxyType({"a": 1e-6, "b": 2e-6}),
        worst_input="a",
        worst_index=(2,) if mode == "fast" else (1, 2),
        analytic=1.5,
        numeric=0.5,
        evaluations=7,
        fast_relative_errors=MappingProxyType(fast),
    )


def test_report_text_in_full_mode() -> None:
    assert str(_hand_report(False, "full", {})) == (
        "gradcheck FAILED (full mode, 7 evaluations of f): worst input 'a', relative error "
        "5.000e-01 (tolerance 1.000e-06)\n"
        "  worst element a[1, 2]: analytic 1.5, numeric 0.5\n"
        "  a: relative error 5.000e-01, tolerance 1.000e-06\n"
        "  b: relative error 1.000e-12, tolerance 2.000e-06"
    )


def test_report_text_in_fast_mode_names_the_projection() -> None:
    text = str(_hand_report(True, "fast", {}))
    assert text.startswith("gradcheck passed (fast mode, 7 evaluations of f): ")
    assert text.splitlines()[1] == "  worst projection 2: analytic 1.5, numeric 0.5"
    assert "the fast check failed" not in text


def test_report_text_after_a_fallback_lists_the_fast_errors() -> None:
    text = str(_hand_report(False, "fast->full", {"a": 0.25, "b": 2e-12}))
    assert text.splitlines()[1] == "  worst element a[1, 2]: analytic 1.5, numeric 0.5"
    assert text.splitlines()[-1] == (
        "  the fast check failed (relative errors a 2.500e-01, b 2.000e-12); the full check "
        "located the worst element"
    )


# --- bad input ---------------------------------------------------------------------------------


def _call(mode: str, **kw: Any) -> GradcheckReport:
    args: dict[str, Any] = {"f": f_ab, "vjp": vjp_ab, "inputs": (A, B), "upstream": V}
    args.update(kw)
    f, vjp, inputs = args.pop("f"), args.pop("vjp"), args.pop("inputs")
    report: GradcheckReport = CHECKS[mode](f, vjp, inputs, **args)
    return report


BAD_TYPE: list[tuple[dict[str, Any], str]] = [
    ({"f": "sin"}, r"^f must be callable, got str"),
    ({"vjp": None}, r"^vjp must be callable, got NoneType"),
    (
        {"inputs": A},
        r"^inputs must be a tuple or list of arrays, got ndarray; wrap a single array as \(x,\)$",
    ),
    ({"inputs": (A, B.astype(complex))}, r"^inputs\[1\] must have a real .* complex"),
    ({"inputs": (A, "b")}, r"^inputs\[1\] must be a real numeric array, got str"),
    ({"inputs": (A > 0, B)}, r"^inputs\[0\] must have a real .* boolean"),
    ({"upstream": V.astype(complex)}, r"^upstream must have a real .* complex"),
    (
        {"vjp": lambda v, a, _b: v * a},
        r"^vjp must return a tuple with one gradient per input, got ndarray$",
    ),
    ({"inputs": "ab"}, r"^inputs must be a tuple or list of arrays, got str;"),
    ({"inputs": b"ab"}, r"^inputs must be a tuple or list of arrays, got bytes;"),
    ({"names": {"a", "b"}}, r"^names must be a sequence of strings, got set$"),
    ({"step": "ab"}, r"^step must be a real numeric array, got str"),
    ({"atol": b"ab"}, r"^atol must be a real numeric array, got bytes"),
    ({"atol": (0.0, np.bool_(True))}, r"^atol\[1\] must be a real number or array, got bool"),
    (
        {"vjp": lambda _v, _a, _b: 1.0},
        r"^vjp must return a tuple with one gradient per input, got float$",
    ),
    ({"f": lambda a, _b: (a + 1j).astype(complex)}, r"^f's output must have a real"),
    ({"vjp": lambda v, _a, _b: (v, v * 1j)}, r"^gradient of b must have a real .* complex"),
    ({"names": ("a", 2)}, r"^names must be strings"),
    ({"names": "ab"}, r"^names must be a sequence of strings, got str"),
    ({"step": True}, r"^step must be a real number or array, got bool"),
    ({"tolerance": "1e-6"}, r"^tolerance must be a real number"),
    ({"f_many": "f"}, r"^f_many must be callable, got str"),
    (
        {"f_many": lambda points: np.stack([f_ab(*p) for p in points])},
        r"^f_many must return a list with one output of f per point, got ndarray$",
    ),
    (
        {"f_many": lambda _points: None},
        r"^f_many must return a list with one output of f per point, got NoneType$",
    ),
]

BAD_VALUE: list[tuple[dict[str, Any], str]] = [
    ({"inputs": ()}, r"^inputs must hold at least one array, got an empty sequence$"),
    ({"inputs": (A, np.ones((0, 4)))}, r"^inputs\[1\] must not be empty"),
    (
        {"inputs": (A, np.full((3, 4), math.nan))},
        r"^inputs\[1\] must be finite, .*; pass check_finite=False to let them propagate$",
    ),
    ({"upstream": V[:, :3]}, r"^upstream must have the shape of f\(\*inputs\), \(3, 4\), got"),
    ({"upstream": np.full((3, 4), math.inf)}, r"^upstream must be finite"),
    ({"vjp": lambda v, a, _b: (v * a,)}, r"^vjp must return one gradient per input \(2: a, b\)"),
    ({"vjp": lambda v, _a, _b: (v, v[:, :2])}, r"^vjp's gradient of b must have the shape of b"),
    ({"step": 0.0}, r"^step must be finite and > 0, got 0\.0"),
    ({"step": -1e-6}, r"^step must be finite and > 0"),
    ({"step": math.nan}, r"^step must be finite and > 0"),
    ({"step": math.inf}, r"^step must be finite and > 0"),
    ({"step": (1e-6, np.array([1e-6, 0.0, 1e-6, 1e-6]))}, r"^step\[1\] must be finite and > 0"),
    (
        {"step": np.array([1e-6, 2e-6])},  # one array for every input, not one per input
        r"^step must broadcast to the input's shape \(3, 4\), got shape \(2,\)$",
    ),
    ({"step": (1e-6,)}, r"^step must be a number or one value per input \(2\), got 1"),
    ({"step": (1e-6, np.full(3, 1e-6))}, r"^step\[1\] must broadcast to the input's shape"),
    ({"step": 1e-300}, r"^step for a .*below the spacing"),
    ({"names": ("a",)}, r"^names must have one name per input \(2\), got 1"),
    ({"names": ("a", "a")}, r"^names must be distinct"),
    ({"tolerance": -1e-6}, r"^tolerance must be a finite number >= 0"),
    ({"tolerance": math.inf}, r"^tolerance must be a finite number >= 0"),
    ({"atol": -1.0}, r"^atol must be finite and >= 0, got -1\.0"),
    ({"atol": (0.0, math.nan)}, r"^atol\[1\] must be finite and >= 0"),
    (
        {"f_many": lambda points: [f_ab(*p) for p in points[1:]]},
        r"^f_many must return one output of f per point \(\d+\), got \d+$",
    ),
    (
        {"f_many": lambda points: [f_ab(*p)[:2] for p in points]},
        r"^f's output must keep the shape \(3, 4\) when its inputs are perturbed",
    ),
]


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize(("kw", "match"), BAD_TYPE)
def test_rejects_wrong_types(mode: str, kw: dict[str, Any], match: str) -> None:
    kw = {"names": NAMES, **kw}
    with pytest.raises(TypeError, match=match):
        _call(mode, **kw)


@pytest.mark.parametrize("mode", ["full", "fast"])
@pytest.mark.parametrize(("kw", "match"), BAD_VALUE)
def test_rejects_wrong_values(mode: str, kw: dict[str, Any], match: str) -> None:
    kw = {"names": NAMES, **kw}
    with pytest.raises(ValueError, match=match):
        _call(mode, **kw)


def test_rejects_an_output_whose_shape_changes_under_perturbation() -> None:
    def f_moody(a: Float64Array) -> Float64Array:
        return a if a[0] == 1.0 else a[:1]

    with pytest.raises(ValueError, match=r"^f's output must keep the shape \(2,\)"):
        full_check(f_moody, lambda v, _a: (v,), (np.array([1.0, 2.0]),), upstream=np.ones(2))


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        (
            {"rng": "seed"},
            TypeError,
            r"^rng must be an int seed or a numpy\.random\.Generator, got str$",
        ),
        ({"rng": True}, TypeError, r"^rng must be an int seed"),
        ({"rng": 1.5}, TypeError, r"^rng must be an int seed"),
        ({"rng": 0, "num_projections": 0}, ValueError, r"^num_projections must be an integer >= 1"),
        ({"rng": 0, "num_projections": 2.0}, TypeError, r"^num_projections must be an integer"),
    ],
)
def test_fast_check_rejects_bad_rng_and_projections(
    kw: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        fast_check(f_ab, vjp_ab, (A, B), upstream=V, **kw)


def test_rejects_an_output_that_turns_complex_under_perturbation() -> None:
    def f_complex(a: Float64Array) -> Any:
        return a if a[0] == 1.0 else a.astype(complex)

    with pytest.raises(TypeError, match=r"^f's output must have a real integer or floating dtype"):
        full_check(f_complex, lambda v, _a: (v,), (np.array([1.0, 2.0]),), upstream=np.ones(2))


def test_fast_check_rejects_a_step_below_the_spacing_of_every_value() -> None:
    with pytest.raises(ValueError, match=r"^step for inputs\[0\] is below the spacing"):
        fast_check(
            lambda a: a,
            lambda v, _a: (v,),
            (np.full(3, 1e10),),
            upstream=np.ones(3),
            rng=0,
            step=1e-300,
        )


def test_numeric_gradients_rejects_bad_input() -> None:
    with pytest.raises(TypeError, match=r"^f must be callable, got float 1\.0$"):
        numeric_gradients(1.0, (A,), V)  # type: ignore[arg-type]  # the point: not callable
    with pytest.raises(ValueError, match=r"^upstream must have the shape"):
        numeric_gradients(np.sin, (A,), V.T)
    with pytest.raises(ValueError, match=r"^step must be finite and > 0, got 0\.0$"):
        numeric_gradients(np.sin, (A,), V, step=0.0)


def test_full_check_names_the_element_whose_step_is_below_the_spacing() -> None:
    with pytest.raises(ValueError, match=r"^step for a at index \(0, 0\) is 1e-300, below the"):
        full_check(f_ab, vjp_ab, (A, B), upstream=V, names=NAMES, step=1e-300)


class Many:
    """f_many over f_ab, recording each call's points (copies, as received)."""

    def __init__(self) -> None:
        self.calls: list[list[tuple[Float64Array, ...]]] = []

    def __call__(self, points: Sequence[tuple[Float64Array, ...]]) -> list[Float64Array]:
        arrays = [a for p in points for a in p]
        # fresh copies: no array twice, none the caller's (f may write into what it gets)
        assert len({id(a) for a in arrays}) == len(arrays)
        assert not any(np.shares_memory(a, c) for a in arrays for c in (A, B))
        self.calls.append([tuple(a.copy() for a in p) for p in points])
        return [f_ab(*p) for p in points]


@pytest.mark.parametrize("vjp", [vjp_ab, vjp_one_wrong])
@pytest.mark.parametrize("mode", ["full", "fast"])
def test_f_many_evaluates_every_perturbed_point_in_one_call(
    mode: str, vjp: Callable[..., Any]
) -> None:
    """The same report, to the bit, with f_many as with f; f_many gets the points in one call
    (a fast check that fails: one more for the full check), each point a fresh copy."""
    many = Many()
    with_f = _call(mode, vjp=vjp, names=NAMES)
    with_many = _call(mode, vjp=vjp, names=NAMES, f_many=many)
    assert repr(with_many) == repr(with_f)
    assert with_many.evaluations == with_f.evaluations
    sizes = {"full": [2 * 24], "fast": [2 * 2 * DEFAULT_PROJECTIONS]}[mode]
    if not with_f.passed and mode == "fast":
        sizes.append(2 * 24)
    assert [len(c) for c in many.calls] == sizes


def test_f_many_gets_the_central_points_in_order() -> None:
    """Element j of input k: the inputs with x_j + h_j, then with x_j - h_j, inputs in order."""
    many = Many()
    numeric_gradients(f_ab, (A, B), V, step=1e-3, f_many=many)
    (points,) = many.calls
    assert len(points) == 2 * (A.size + B.size)
    for i, (a, b) in enumerate(points):
        element, minus = divmod(i, 2)
        k, j = divmod(element, A.size)  # A and B have the same size
        want_a, want_b = A.copy(), B.copy()
        moved = (want_a, want_b)[k]
        moved.flat[j] = moved.flat[j] - 1e-3 if minus else moved.flat[j] + 1e-3
        np.testing.assert_array_equal(a, want_a)
        np.testing.assert_array_equal(b, want_b)


def test_f_many_gets_batches_of_bounded_size(monkeypatch: pytest.MonkeyPatch) -> None:
    """Points go to f_many in batches of at most BATCH_VALUES input values (memory stays bounded
    for large inputs); the gradients are the same."""
    want = numeric_gradients(f_ab, (A, B), V)
    monkeypatch.setattr(gradcheck, "BATCH_VALUES", 5 * (A.size + B.size))
    many = Many()
    got = numeric_gradients(f_ab, (A, B), V, f_many=many)
    assert [len(c) for c in many.calls] == [5] * 9 + [3]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("limit", [1, 23, 24, 25, 5 * 24 + 1, 6 * 24, 47 * 24, 48 * 24, 10**6])
def test_f_many_gets_a_batch_as_soon_as_it_reaches_batch_values(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    """A batch goes to f_many as soon as its points hold BATCH_VALUES input values or more:
    each batch is the fewest points that reach the limit (the last one: the points left), so a
    batch exceeds the limit by less than one point. f_many never gets an empty batch, also
    when the last point fills a batch exactly."""
    monkeypatch.setattr(gradcheck, "BATCH_VALUES", limit)
    many = Many()
    numeric_gradients(f_ab, (A, B), V, f_many=many)
    per_point = A.size + B.size  # 24 values in each point (a, b)
    points = 2 * per_point  # two points per element
    full = -(-limit // per_point)  # the fewest points holding >= limit values
    want = [full] * (points // full) + ([points % full] if points % full else [])
    assert [len(c) for c in many.calls] == want
