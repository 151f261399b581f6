"""`bnref.fast` computes what the reference, `reference.batchnorm`, computes, to rounding.

The reference is the oracle: whole-array NumPy expressions of the same formulas. The fast one
reduces an (N, C, L) view block by block, reads float32 input without a float64 copy, checks
finiteness from the channel sums and takes sum(dy * x_hat) as inv_std * sum(dy * (x - mean)). The
blocks are made tiny here (`block` below) so that the small Hypothesis cases are cut into many
boxes, as a real activation is, and the boxes of a pass run on a few threads, whose number must not
change a single bit of any result. Most tests run twice, with the block functions' compiled
kernels (`bnref.fast_kernels`, numba) and with their NumPy steps, which stand in without numba.
Inference mode does, per element, the same three rounded operations in the same order as the
plain version, so there the two agree exactly (tolerance 0).

Tolerance, derived (first order; u = 2**-53). Per channel with n values, mean mu, s = x - mu,
A = mean|x|, D = mean|s|, and g = (n + 4) u, a bound on any order of summation of n terms
((n - 1) u) with room for the divisions by n and the neglected second-order terms (each below
g ~ 1e-13 of a first-order one). Each implementation is within E of the exact value:

    E_mean    = u |mu| + g (D + g A)                    m0's error, corrected up to g |x - m0|
    E_var     = (g + 4u)(var + E_mean**2) + E_mean**2   (x - mean)**2 summed; sum(s) = 0 exactly
    R_inv_std = E_var / (2 (var + eps)) + 3u            relative; + eps, sqrt and 1/ round once each
    E_x_hat   = inv_std (E_mean + |s| (R_inv_std + 2u))
    E_y       = |gamma| E_x_hat + u (2 |gamma x_hat| + |beta|)
    E_dbeta   = g sum|dy|
    E_dgamma  = (g + 2u) sum|dy x_hat| + sum(|dy| E_x_hat)
    E_dx      = |gamma| inv_std / n (3u P + E_dbeta + |x_hat| E_dgamma + |dgamma| E_x_hat)
                + |dx| (R_inv_std + 3u),   P = n |dy| + |dbeta| + |x_hat dgamma|

plus an absolute (n + 10) eta on each, eta = 2**-1074: near zero (subnormal results) every
operation can also err by eta/2, and no result takes more than n + 10 operations after the last
amplification (those before it are in E_mean and E_var). So the two agree within 2 E.
The scales (|s|, P, ...) and not |result| set the bound: dx is a difference of terms of
size P, and x_hat at |mean|/std = 1e8 inherits u |mean| inv_std ~ 1e-8.
"""

from __future__ import annotations

import math
import os
import re
import signal
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray

from bnref import fast as batchnorm
from bnref.fast import batch_norm_backward, batch_norm_forward, batch_norm_inference
from bnref.targets import load_target
from properties.framework import Property
from properties.registry import BATCHNORM_PROPERTIES
from properties.strategies import BatchCase, batch_cases, upstream_gradients
from reference import batchnorm as plain_module
from reference.batchnorm import batch_norm_backward as plain_backward
from reference.batchnorm import batch_norm_forward as plain_forward
from reference.batchnorm import batch_norm_inference as plain_inference

Array = NDArray[np.float64]
T = TypeVar("T")
U = 2.0**-53  # float64 unit roundoff
ETA = 2.0**-1074  # float64's smallest subnormal: the absolute rounding error near zero
BLOCKS = (1, 2, 3, 7, 64, 2**17)  # values per block: one value, odd sizes, one box per case
THREADS = (1, 2, 3)  # one thread (no pool), as many as this machine's cores, more
NO_NUMBA = pytest.mark.skipif(batchnorm._kernels is None, reason="needs numba (bnref[fast])")
# The fast path's block functions: numba's kernels (bnref.fast_kernels), or the NumPy steps that
# run without numba. Each must agree with the reference; the tests that take `engine` run twice.
ENGINES = (pytest.param("compiled", marks=NO_NUMBA), "numpy")


@contextmanager
def block_size(size: int) -> Iterator[None]:
    """Run the fast path with blocks of `size` values (`_blocks` is cached per shape and size)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batchnorm, "_BLOCK", size)
        yield


@contextmanager
def block_functions(kind: str) -> Iterator[None]:
    """Run the fast path's blocks with the compiled kernels ("compiled", as imported) or with
    the NumPy steps ("numpy")."""
    with pytest.MonkeyPatch.context() as patch:
        if kind == "numpy":
            patch.setattr(batchnorm, "_kernels", None)
        yield


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> Iterator[str]:
    """The test runs with each kind of block functions (`block_functions`); its name."""
    with block_functions(request.param):
        yield request.param


@contextmanager
def threads(count: int) -> Iterator[None]:
    """Run the passes of the fast path on `count` threads (1: in the calling thread)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batchnorm, "_WORKERS", count)
        yield


@dataclass(frozen=True)
class Bounds:
    """The first-order error bounds E of the module docstring, per element or per channel."""

    mean: Array
    var: Array
    inv_std: Array
    x_hat: Array
    y: Array
    dbeta: Array
    dgamma: Array
    dx: Array


def _bounds(case: BatchCase, dy: Array) -> Bounds:
    ref = plain_forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    grad = plain_backward(dy, case.x, case.gamma, eps=case.eps, axis=case.axis)
    axes = tuple(i for i in range(case.x.ndim) if i != ref.axis)
    n = case.x.size // case.x.shape[ref.axis]
    shape = [-1 if i == ref.axis else 1 for i in range(case.x.ndim)]

    def col(v: Array) -> Array:
        return v.reshape(shape)

    g = (n + 4) * U
    floor = (n + 10) * ETA
    s = np.abs(case.x - col(ref.mean))
    e_mean = U * np.abs(ref.mean) + g * (s.mean(axis=axes) + g * np.abs(case.x).mean(axis=axes))
    e_mean += floor
    e_var = (g + 4 * U) * (ref.var + e_mean**2) + e_mean**2 + floor
    r_inv_std = e_var / (2 * (ref.var + case.eps)) + 3 * U
    e_x_hat = col(ref.inv_std) * (col(e_mean) + s * col(r_inv_std + 2 * U))
    gx = np.abs(col(case.gamma) * ref.x_hat)
    e_y = np.abs(col(case.gamma)) * e_x_hat + U * (2 * gx + np.abs(col(case.beta)))
    e_dbeta = g * np.abs(dy).sum(axis=axes)
    e_dgamma = (g + 2 * U) * np.abs(dy * ref.x_hat).sum(axis=axes) + (np.abs(dy) * e_x_hat).sum(
        axis=axes
    )
    big_p = n * np.abs(dy) + col(np.abs(grad.dbeta)) + np.abs(ref.x_hat * col(grad.dgamma))
    e_dx = col(np.abs(case.gamma) * ref.inv_std / n) * (
        3 * U * big_p
        + col(e_dbeta)
        + np.abs(ref.x_hat) * col(e_dgamma)
        + col(np.abs(grad.dgamma)) * e_x_hat
    ) + np.abs(grad.dx) * col(r_inv_std + 3 * U)
    return Bounds(e_mean, e_var, r_inv_std * ref.inv_std, e_x_hat, e_y, e_dbeta, e_dgamma, e_dx)


def _as_input(values: Array, dtype: str) -> NDArray[np.floating]:
    """The values (exactly representable in `dtype`) as an array of that dtype."""
    return values.astype(dtype)


def _assert_close(name: str, fast: Array, plain: Array, bound: Array) -> None:
    error = np.abs(fast - plain)
    worst = np.argmax(error - 2 * bound)
    assert np.all(error <= 2 * bound), (
        f"{name}: |fast - plain| = {error.flat[worst]!r} > 2 E = {2 * bound.flat[worst]!r}"
    )


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("block", BLOCKS)
@given(case=batch_cases(), data=st.data())
def test_fast_forward_agrees_with_plain(
    kind: str, block: int, case: BatchCase, data: st.DataObject
) -> None:
    dy = data.draw(upstream_gradients(case.x.shape))
    bounds = _bounds(case, dy)
    x = _as_input(case.x, case.dtype)
    with block_size(block), block_functions(kind):
        fast = batch_norm_forward(x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    plain = plain_forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    assert fast.axis == plain.axis
    assert fast.eps == plain.eps
    for name in ("mean", "var", "inv_std", "x_hat", "y"):
        _assert_close(name, getattr(fast, name), getattr(plain, name), getattr(bounds, name))


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("block", BLOCKS)
@given(case=batch_cases(), data=st.data())
def test_fast_backward_agrees_with_plain(
    kind: str, block: int, case: BatchCase, data: st.DataObject
) -> None:
    dy = data.draw(upstream_gradients(case.x.shape))
    dy = dy.astype(case.dtype).astype(np.float64)  # representable, so both see the same values
    bounds = _bounds(case, dy)
    x, dy_in = _as_input(case.x, case.dtype), _as_input(dy, case.dtype)
    with block_size(block), block_functions(kind):
        fast = batch_norm_backward(dy_in, x, case.gamma, eps=case.eps, axis=case.axis)
    plain = plain_backward(dy, case.x, case.gamma, eps=case.eps, axis=case.axis)
    for name in ("dbeta", "dgamma", "dx"):
        _assert_close(name, getattr(fast, name), getattr(plain, name), getattr(bounds, name))


@given(
    shape=st.tuples(st.integers(1, 9), st.integers(1, 9), st.integers(1, 9)),
    size=st.integers(1, 800),
)
def test_blocks_tile_the_array_once(shape: tuple[int, int, int], size: int) -> None:
    count = np.zeros(shape, dtype=np.int64)
    for box in batchnorm._blocks(shape, size):
        assert count[box].size <= size
        count[box] += 1
    assert np.all(count == 1)


@pytest.mark.usefixtures("engine")
def test_non_contiguous_and_integer_inputs() -> None:
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 6, 7)).transpose(2, 1, 0)  # a strided view, channel axis 1
    dy = rng.standard_normal((7, 6, 5))[:, :, ::-1]
    g, b = rng.standard_normal(6), rng.standard_normal(6)
    ints = rng.integers(-50, 50, size=(8, 6))
    for xi, dyi in ((x, dy), (ints, ints[::-1])):
        fast = batch_norm_forward(xi, g, b)
        plain = plain_forward(xi, g, b)
        # n <= 35 values per channel, unit-scale data and gamma: the bound of the module
        # docstring is below 1e-13 here.
        np.testing.assert_allclose(fast.y, plain.y, rtol=0, atol=1e-13)
        grad, plain_grad = batch_norm_backward(dyi, xi, g), plain_backward(dyi, xi, g)
        np.testing.assert_allclose(grad.dx, plain_grad.dx, rtol=0, atol=1e-13)


def _message(fn: object, *args: object, **kwargs: object) -> str:
    assert callable(fn)
    with pytest.raises((TypeError, ValueError)) as info:
        fn(*args, **kwargs)
    return str(info.value)


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_non_finite_errors_are_those_of_the_plain_checks(
    dtype: str, value: float, axis: int
) -> None:
    # The fast path detects these from the channel sums: the message must still name the
    # argument, count the values and give the first index, as the full scan does.
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 3, 5)).astype(dtype)
    x[1, 2, 3] = value
    x[3, 0, 0] = value
    dy = rng.standard_normal((4, 3, 5)).astype(dtype)
    c = x.shape[axis]
    g, b = np.ones(c), np.zeros(c)
    expected = _message(plain_forward, x, g, b, axis=axis)
    assert expected.startswith("x must be finite, got 2 non-finite")
    assert _message(batch_norm_forward, x, g, b, axis=axis) == expected
    assert _message(batch_norm_backward, dy, x, g, axis=axis) == expected
    stats = (b, g)  # running_mean 0, running_var 1
    assert _message(plain_inference, x, g, b, *stats, axis=axis) == expected
    assert _message(batch_norm_inference, x, g, b, *stats, axis=axis) == expected
    expected_dy = _message(plain_backward, x, dy, g, axis=axis)
    assert expected_dy.startswith("dy must be finite")
    assert _message(batch_norm_backward, x, dy, g, axis=axis) == expected_dy


@pytest.mark.parametrize(
    ("call", "first"),
    [
        ("forward, bad gamma", "x must be finite"),
        ("forward, bad axis", "x must be finite"),
        ("backward, bad dy shape", "x must be finite"),
        ("backward, bad gamma", "dy must be finite"),
        ("backward, bad dy dtype", "x must be finite"),
        ("inference, bad gamma", "x must be finite"),
        ("inference, negative running_var", "x must be finite"),
    ],
)
def test_with_two_errors_the_plain_order_decides(call: str, first: str) -> None:
    # A non-finite array is reported before a later check's error, as in the plain order.
    good = np.arange(12.0).reshape(4, 3)
    bad = good.copy()
    bad[0, 0] = np.nan
    calls = {
        "forward, bad gamma": (plain_forward, batch_norm_forward, (bad, np.ones(2), np.zeros(3))),
        "forward, bad axis": (plain_forward, batch_norm_forward, (bad, np.ones(3), np.zeros(3))),
        "backward, bad dy shape": (plain_backward, batch_norm_backward, (good.T, bad, np.ones(3))),
        "backward, bad gamma": (plain_backward, batch_norm_backward, (bad, good, np.ones(2))),
        "backward, bad dy dtype": (plain_backward, batch_norm_backward, ("dy", bad, np.ones(3))),
        "inference, bad gamma": (
            plain_inference,
            batch_norm_inference,
            (bad, np.ones(2), np.zeros(3), np.zeros(3), np.ones(3)),
        ),
        "inference, negative running_var": (
            plain_inference,
            batch_norm_inference,
            (bad, np.ones(3), np.zeros(3), np.zeros(3), -np.ones(3)),
        ),
    }
    plain, fast, args = calls[call]
    kwargs = {"axis": 5} if call == "forward, bad axis" else {}
    expected = _message(plain, *args, **kwargs)
    assert expected.startswith(first)
    assert _message(fast, *args, **kwargs) == expected


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "bad",
    [
        {"x": "masked"},
        {"dy": "masked"},
        {"gamma": "masked"},
        {"check_finite": "no"},
        {"check_finite": None},
        {"check_finite": 1},
    ],
    ids=lambda bad: "-".join(f"{k}={v}" for k, v in bad.items()),
)
def test_masked_arrays_and_a_check_finite_that_is_no_bool_are_the_plain_errors(
    dtype: str, bad: dict[str, object]
) -> None:
    # A float32 ndarray skips the float64 conversion in the fast path, a masked float32 array
    # must not: both are refused with the reference's message, as is check_finite="no".
    x = np.arange(12.0).reshape(4, 3).astype(dtype)
    args: dict[str, Any] = {"x": x, "dy": x, "gamma": np.ones(3)}
    for name, value in bad.items():
        args[name] = np.ma.masked_greater(args[name], 5.0) if value == "masked" else value
    flag = {"check_finite": args["check_finite"]} if "check_finite" in args else {}
    cases: list[tuple[Callable[..., object], Callable[..., object], tuple[object, ...]]] = [
        (plain_backward, batch_norm_backward, (args["dy"], args["x"], args["gamma"])),
        (plain_forward, batch_norm_forward, (args["x"], args["gamma"], np.zeros(3))),
        (plain_inference, batch_norm_inference, (args["x"], args["gamma"], *[np.ones(3)] * 3)),
    ]
    for plain, fast, positional in cases:
        if "dy" in bad and plain is not plain_backward:
            continue  # only the backward takes dy
        with pytest.raises(TypeError) as info:
            plain(*positional, **flag)
        assert re.match(
            r"^(x|dy|gamma) must not be a masked array|^check_finite must be a bool",
            str(info.value),
        )
        assert _message(fast, *positional, **flag) == str(info.value)


def _with_warnings(fn: Callable[[], T]) -> tuple[T, set[str]]:
    """fn's result and the messages of the warnings it raised."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn()
    return result, {str(w.message) for w in caught}


@pytest.mark.usefixtures("engine")
def test_a_finite_input_whose_sum_overflows_is_not_rejected() -> None:
    # Finite values near the float64 maximum: the channel sum overflows, but x is finite, so no
    # ValueError; the call goes to the reference, which scales channel 0 and finds mean 1e308,
    # var 0 and y = beta there, without a warning. The other channel is unaffected.
    x = np.array([[1e308, 0.5], [1e308, -0.5], [1e308, 1.5]])
    g, b, dy = np.ones(2), np.array([0.25, 0.0]), np.ones((3, 2))
    fast, fast_warnings = _with_warnings(lambda: batch_norm_forward(x, g, b))
    plain, plain_warnings = _with_warnings(lambda: plain_forward(x, g, b))
    assert fast_warnings == plain_warnings == set()
    for name in ("y", "x_hat", "mean", "var", "inv_std"):
        assert getattr(fast, name).tobytes() == getattr(plain, name).tobytes(), name
    np.testing.assert_array_equal(fast.mean, [1e308, 0.5])
    np.testing.assert_array_equal(fast.y[:, 0], 0.25)
    grad, grad_warnings = _with_warnings(lambda: batch_norm_backward(dy, x, g))
    plain_grad = plain_backward(dy, x, g)
    assert grad_warnings == set()
    for name in ("dx", "dgamma", "dbeta"):
        assert getattr(grad, name).tobytes() == getattr(plain_grad, name).tobytes(), name


# (x, dy, the step that overflows in the blocked passes, whether the forward and the backward
# hand the call over): the fast path then returns the reference's results, errors and warnings.
EXTREME = [
    ([[1e154], [-1e154], [1e154], [-1e154]], [[1.0], [0.0], [0.0], [0.0]], "squares", True),
    ([[1e200], [2e200], [3e200]], [[0.0], [0.0], [1.0]], "squares, var 1e400", True),
    ([[-1.7e308], [1.7e308], [1.7e308]], [[1.0], [2.0], [0.0]], "x - mean", True),
    ([[1.7e308]] * 3, [[1.0], [2.0], [4.0]], "sum(x)", True),
    ([[1e-3], [2e-3]], [[1.7e308], [1.7e308]], "sum(dy)", False),
    ([[1e10], [-1e10]], [[1e300], [-1e300]], "sum(dy * (x - mean))", False),
]
FLOAT32_MAX = float(np.finfo(np.float32).max)


@pytest.mark.parametrize(
    ("x", "dy", "step", "forward_hands_over", "dtype"),
    [
        (*case, dtype)
        for case in EXTREME
        for dtype in ("float64", "float32")
        if dtype == "float64" or np.max(np.abs(case[0])) < FLOAT32_MAX  # x representable
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
@pytest.mark.usefixtures("engine")
def test_values_near_the_float64_limit_give_the_plain_results(
    x: list[list[float]], dy: list[list[float]], step: str, forward_hands_over: bool, dtype: str
) -> None:
    x_in, dy_in = np.array(x).astype(dtype), np.array(dy)
    g, b = np.array([0.5]), np.array([0.25])
    handed: list[str] = []

    def spy(name: str) -> Callable[..., object]:
        def call(*args: object, **kwargs: object) -> object:
            handed.append(name)
            return getattr(plain_module, name)(*args, **kwargs)

        return call

    spied = SimpleNamespace(**{n: spy(n) for n in ("batch_norm_forward", "batch_norm_backward")})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batchnorm, "plain", spied)
        assert _outcome(lambda: batch_norm_forward(x_in, g, b)) == _outcome(
            lambda: plain_forward(x_in, g, b)
        ), step
        assert _outcome(lambda: batch_norm_backward(dy_in, x_in, g)) == _outcome(
            lambda: plain_backward(dy_in, x_in, g)
        ), step
    assert handed == ["batch_norm_forward"] * forward_hands_over + ["batch_norm_backward"]


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("eps", [2.0**-1074, 1e-300])
def test_tiny_channels_with_a_tiny_eps_give_the_plain_results(eps: float) -> None:
    """x = [1, 2, 3] 1e-160: the squared deviations are subnormal. With eps = 2**-1074 they are
    not negligible next to eps, and the reference scales the channel up (the unscaled sums are
    1.3e-4 off); the fast path hands the call over. With eps = 1e-300 they are negligible."""
    x = np.array([[1e-160], [2e-160], [3e-160]])
    dy, g, b = np.array([[-1.0], [0.5], [2.0]]), np.array([1.0]), np.array([0.0])
    fast_out, plain_out = batch_norm_forward(x, g, b, eps=eps), plain_forward(x, g, b, eps=eps)
    fast_grad = batch_norm_backward(dy, x, g, eps=eps)
    plain_grad = plain_backward(dy, x, g, eps=eps)
    for name in ("y", "x_hat", "var", "inv_std"):
        np.testing.assert_allclose(getattr(fast_out, name), getattr(plain_out, name), rtol=8 * U)
    for name in ("dx", "dgamma", "dbeta"):
        np.testing.assert_allclose(getattr(fast_grad, name), getattr(plain_grad, name), rtol=8 * U)


@pytest.mark.parametrize(
    ("x", "gamma", "beta", "rv", "eps", "y"),
    [
        # gamma / sqrt(rv + eps) = 1e300 / 2**-537 is beyond float64; x = rm: y = beta
        (0.0, 1e300, 0.25, 0.0, 2.0**-1074, 0.25),
        # gamma / sqrt(rv + eps) = 1e-450 underflows, y = 1e-450 * 1e300 does not
        (1e300, 1e-300, 0.0, 1e300, 1e-5, 1e-150),
        # rv + eps = 2.7e308 overflows, its root does not
        (1e300, 1.0, 0.0, 1.7e308, 1e308, 1e300 / (np.sqrt(2.7) * 1e154)),
        # (x - rm) * scale = 1.87e308 overflows, y = 1.87e308 - 1e308 does not
        (1.7e308, 1.1, -1e308, 0.0, 1.0, 0.87e308),
    ],
    ids=["scale beyond float64", "scale underflows", "rv + eps overflows", "product overflows"],
)
def test_inference_steps_past_float64_give_the_plain_result(
    x: float, gamma: float, beta: float, rv: float, eps: float, y: float
) -> None:
    """Where a step of y = (x - rm) gamma / sqrt(rv + eps) + beta leaves float64 but y does not,
    the reference scales by powers of two; the fast path hands the call over, so its result,
    error or warnings are the reference's (running_mean = 0)."""
    args = (np.array([[x], [0.0]]), np.array([gamma]), np.array([beta]), np.zeros(1))
    got = batch_norm_inference(*args, np.array([rv]), eps=eps)
    assert _outcome(lambda: SimpleNamespace(y=got)) == _outcome(
        lambda: SimpleNamespace(y=plain_inference(*args, np.array([rv]), eps=eps))
    )
    assert got[0, 0] == pytest.approx(y, rel=1e-14)


@pytest.mark.usefixtures("engine")
def test_gradient_factors_past_float64_give_the_plain_results() -> None:
    """With var and eps near 1e-320, gamma inv_std**2 dgamma / n overflows while the
    reference's order of steps (x_hat first) stays finite: the call is handed over."""
    x, dy = np.array([[0.0], [1e-160], [2e-160], [3e-160]]), np.array([[1.0], [-2.0], [0.5], [3.0]])
    g = np.array([1e10])
    fast_grad = batch_norm_backward(dy, x, g, eps=1e-320)
    plain_grad = plain_backward(dy, x, g, eps=1e-320)
    assert np.isfinite(plain_grad.dx).all()
    for name in ("dx", "dgamma", "dbeta"):
        assert getattr(fast_grad, name).tobytes() == getattr(plain_grad, name).tobytes(), name


@pytest.mark.parametrize(
    ("x", "passes"),
    [
        # m0 = sum(x)/n is exact: one pass over x - m0 gives the variance.
        (np.array([[1.0], [2.0], [4.0], [8.0]]), 1),
        # 2**60 + 256 k: the sum rounds to a multiple of 256 n, so m0 is off by about the std
        # and d**2 / mean((x - m0)**2) exceeds the limit: the sums are taken again around
        # the corrected mean.
        (2.0**60 + 256.0 * np.array([[1.0], [0.0], [-1.0], [1.0], [1.0], [0.0], [1.0]]), 2),
    ],
    ids=["exact m0", "m0 off by the std"],
)
@pytest.mark.usefixtures("engine")
def test_shifted_sums_are_taken_again_when_the_first_mean_is_far(x: Array, passes: int) -> None:
    calls: list[int] = []
    shifted_sums = batchnorm._shifted_sums

    def counted(*args: Any) -> Array:
        calls.append(1)
        return shifted_sums(*args)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(batchnorm, "_shifted_sums", counted)
        fast_out = batch_norm_forward(x, np.ones(1), np.zeros(1))
    plain_out = plain_forward(x, np.ones(1), np.zeros(1))
    assert len(calls) == passes
    np.testing.assert_allclose(fast_out.var, plain_out.var, rtol=8 * U)
    np.testing.assert_allclose(fast_out.x_hat, plain_out.x_hat, rtol=0, atol=8 * U)


def _outcome(fn: Callable[[], object]) -> tuple[str, ...]:
    """The bytes of every array fn returns, or its error's type and message; the warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = fn()
        except (TypeError, ValueError) as exc:
            got: tuple[str, ...] = (type(exc).__name__, str(exc))
        else:
            got = tuple(
                f"{k}={v.tobytes().hex()}"
                for k, v in vars(result).items()
                if isinstance(v, np.ndarray)
            )
    return (*got, *sorted(str(w.message) for w in caught))


@pytest.mark.usefixtures("engine")
def test_a_variance_beyond_float64_is_the_plain_error() -> None:
    # The sums overflow and the variance (about 2**2037) cannot be held: the same ValueError.
    x = np.array([[1.7e308], [1.7e308], [1e308]])
    message = _message(plain_forward, x, np.ones(1), np.zeros(1))
    assert message.startswith("x must have a variance that float64 can represent")
    assert _message(batch_norm_forward, x, np.ones(1), np.zeros(1)) == message


def test_inference_where_x_minus_running_mean_overflows_is_the_plain_result() -> None:
    # 1e308 - (-1e308) exceeds float64, y = (2e308) / 1e154 = 2e154 does not: both halve.
    x = np.array([[1e308, 1.0], [-1e308, 2.0], [5e-324, 3.0]])
    args = (np.ones(2), np.zeros(2), np.array([-1e308, 0.5]), np.array([1e308, 4.0]))
    with block_size(2):
        fast, fast_warnings = _with_warnings(lambda: batch_norm_inference(x, *args))
    plain, plain_warnings = _with_warnings(lambda: plain_inference(x, *args))
    assert fast_warnings == plain_warnings == set()
    assert fast.tobytes() == plain.tobytes()
    np.testing.assert_allclose(fast[:, 0], [2e154, 0.0, 1e154], rtol=4 * U)


@pytest.mark.usefixtures("engine")
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_check_finite_false_propagates_like_the_plain_version(value: float) -> None:
    x = np.arange(12.0).reshape(4, 3)
    x[2, 1] = value
    g, b, dy = np.ones(3), np.zeros(3), np.ones((4, 3))
    with np.errstate(invalid="ignore"):  # inf - inf and inf * 0, in both versions
        fast = batch_norm_forward(x, g, b, check_finite=False)
        plain = plain_forward(x, g, b, check_finite=False)
        grad = batch_norm_backward(dy, x, g, check_finite=False)
        plain_grad = plain_backward(dy, x, g, check_finite=False)
        # gamma = 0 in channel 1: inf * 0 is NaN there, as in the plain version.
        y = batch_norm_inference(x, g * [1, 0, 1], b, b, g, check_finite=False)
        plain_y = plain_inference(x, g * [1, 0, 1], b, b, g, check_finite=False)
    assert y.tobytes() == plain_y.tobytes()
    for got, want in ((fast.y, plain.y), (fast.mean, plain.mean), (grad.dx, plain_grad.dx)):
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(got[..., [0, 2]], want[..., [0, 2]])


@pytest.mark.usefixtures("engine")
def test_float32_input_is_read_in_float64() -> None:
    # A float32 x is not copied to float64 up front, but every step computes in float64: the
    # result equals that of the same values passed as float64, bit for bit.
    rng = np.random.default_rng(5)
    x32 = (1e4 + rng.standard_normal((6, 4, 5))).astype(np.float32)
    dy32 = rng.standard_normal((6, 4, 5)).astype(np.float32)
    g, b = rng.standard_normal(4), rng.standard_normal(4)
    assert batchnorm._real_array(x32, "x", True) is x32  # read where it is, not copied
    a, c = batch_norm_forward(x32, g, b), batch_norm_forward(x32.astype(np.float64), g, b)
    for name in ("y", "x_hat", "mean", "var", "inv_std"):
        assert getattr(a, name).dtype == np.float64
        np.testing.assert_array_equal(getattr(a, name), getattr(c, name))
    da = batch_norm_backward(dy32, x32, g)
    dc = batch_norm_backward(dy32.astype(np.float64), x32.astype(np.float64), g)
    for name in ("dx", "dgamma", "dbeta"):
        np.testing.assert_array_equal(getattr(da, name), getattr(dc, name))
    rm, rv = rng.standard_normal(4), rng.random(4)
    y32 = batch_norm_inference(x32, g, b, rm, rv)
    assert y32.dtype == np.float64
    np.testing.assert_array_equal(y32, batch_norm_inference(x32.astype(np.float64), g, b, rm, rv))


# Shapes of x (channel axis 1, as (N, C, L)) and values per block that cut it in every way.
CUTS = [
    ((310, 40), 1024),  # L = 1: boxes of 25 whole rows of one value, the last of 10
    ((7, 5, 3), 40),  # rows of 3 values: boxes of 2 x 5 rows, the last of 1 x 5
    ((2, 200), 64),  # more channels than a block: boxes of 64, 64, 64 and 8 channels
    ((3, 4, 150), 64),  # rows longer than a block: parts of a row, 64, 64 and 22 values
    ((50, 2, 700), 2**17),  # one box of rows of 700 values: 10 x 64 in lanes, 60 after them
]


@NO_NUMBA
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("offset", [0.0, 1e8])
@pytest.mark.parametrize(("shape", "block"), CUTS)
def test_the_compiled_and_the_numpy_blocks_agree(
    shape: tuple[int, ...], block: int, offset: float, dtype: str
) -> None:
    """The kernels sum in another order than NumPy: each result is within E of the exact one
    (module docstring), so the two are within 2 E of each other, and of the reference, also at
    |mean|/std = 1e8."""
    rng = np.random.default_rng(8)
    x = (offset + rng.standard_normal(shape)).astype(dtype).astype(np.float64)
    dy = rng.standard_normal(shape).astype(dtype).astype(np.float64)
    c = shape[1]
    case = BatchCase(x, rng.standard_normal(c), rng.standard_normal(c), 1e-5, 1, dtype)
    bounds = _bounds(case, dy)
    x_in, dy_in = _as_input(x, dtype), _as_input(dy, dtype)
    results = {}
    with block_size(block):
        for kind in ("compiled", "numpy"):
            with block_functions(kind):
                fwd = batch_norm_forward(x_in, case.gamma, case.beta)
                grad = batch_norm_backward(dy_in, x_in, case.gamma)
            results[kind] = {**vars(fwd), **vars(grad)}
    plain = {
        **vars(plain_forward(x, case.gamma, case.beta)),
        **vars(plain_backward(dy, x, case.gamma)),
    }
    for name in ("mean", "var", "inv_std", "x_hat", "y", "dbeta", "dgamma", "dx"):
        compiled, bound = results["compiled"][name], getattr(bounds, name)
        _assert_close(name, compiled, results["numpy"][name], bound)
        _assert_close(name, compiled, plain[name], bound)


@NO_NUMBA
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(("shape", "block"), CUTS)
def test_the_elementwise_kernels_round_as_the_numpy_steps(
    shape: tuple[int, ...], block: int, dtype: str
) -> None:
    """`normalize` and `gradient` round the same operations in the same order as the NumPy
    steps: from the same per-channel numbers, box by box, the same bits."""
    kernels = batchnorm._kernels
    assert kernels is not None
    rng = np.random.default_rng(9)
    x3 = rng.standard_normal(shape).astype(dtype).reshape(shape[0], shape[1], -1)
    dy3 = rng.standard_normal(x3.shape).astype(dtype)
    mean, inv_std, g, b, factor, shift = rng.standard_normal((6, shape[1]))

    def col(v: Array) -> Array:
        return v[:, np.newaxis]

    x_hat = (x3 - col(mean)) * col(inv_std)
    y = col(g) * x_hat + col(b)
    dx = dy3.astype(np.float64) * col(g) - (x3 - col(mean)) * col(factor) - col(shift)
    got_x_hat, got_y, got_dx = np.empty(x3.shape), np.empty(x3.shape), np.empty(x3.shape)
    for box in batchnorm._blocks(x3.shape, block):
        where = batchnorm._bounds(box, x3.shape)
        assert kernels.normalize(x3, (mean, inv_std, g, b), got_x_hat, got_y, where)
        assert kernels.gradient(x3, dy3, (mean, g, factor, shift), got_dx, where)
    assert got_x_hat.tobytes() == x_hat.tobytes()
    assert got_y.tobytes() == y.tobytes()
    assert got_dx.tobytes() == dx.tobytes()


@pytest.mark.parametrize(("offset", "limit"), [(0.0, 1e-10), (1e8, 1e-5)])
def test_the_bound_is_tight_enough_to_catch_a_slip(offset: float, limit: float) -> None:
    # 2 E must stay far below the effect of a real mistake: eps outside the square root or
    # n - 1 for n moves x_hat and dx by ~1e-2 here, a one-pass variance at |mean|/std = 1e8
    # by O(1). The bound is ~n u (n**2 u for the sum dgamma) at unit scale, and ~n u |mean| / std
    # at the large offset.
    rng = np.random.default_rng(6)
    x = offset + rng.standard_normal((64, 3))
    case = BatchCase(x, rng.standard_normal(3), rng.standard_normal(3), 1e-5, 1, "float64")
    bounds = _bounds(case, rng.standard_normal(x.shape))
    for name in ("x_hat", "y", "dx", "dgamma", "inv_std"):
        assert np.max(2 * getattr(bounds, name)) < limit, name
    wrong_n = plain_forward(x, case.gamma, case.beta, eps=case.eps).x_hat * math.sqrt(63 / 64)
    assert np.max(np.abs(wrong_n - plain_forward(x, case.gamma, case.beta).x_hat)) > 1e-3


@st.composite
def running_statistics(draw: st.DrawFn, channels: int) -> tuple[Array, Array]:
    """running_mean and running_var (>= 0, zero included) for `channels` channels."""
    mean = draw(st.lists(st.floats(-1e3, 1e3), min_size=channels, max_size=channels))
    var = draw(
        st.lists(
            st.one_of(st.just(0.0), st.floats(1e-6, 1e3)), min_size=channels, max_size=channels
        )
    )
    return np.array(mean), np.array(var)


@pytest.mark.parametrize("block", BLOCKS)
@given(case=batch_cases(min_count=1), data=st.data())
def test_fast_inference_equals_plain(block: int, case: BatchCase, data: st.DataObject) -> None:
    # Exact: both compute (x - running_mean), times the scale, plus beta, each rounded once.
    c = case.gamma.shape[0]
    rm, rv = data.draw(running_statistics(c))
    x = _as_input(case.x, case.dtype)
    with block_size(block):
        fast = batch_norm_inference(x, case.gamma, case.beta, rm, rv, eps=case.eps, axis=case.axis)
    plain = plain_inference(case.x, case.gamma, case.beta, rm, rv, eps=case.eps, axis=case.axis)
    assert fast.dtype == np.float64
    assert fast.tobytes() == plain.tobytes()


@pytest.mark.parametrize(("shape", "axis"), [((0, 3), 1), ((2, 0), 1), ((0, 3, 4), 1), ((3,), 0)])
def test_inference_of_empty_and_one_dimensional_batches(shape: tuple[int, ...], axis: int) -> None:
    x = np.arange(float(math.prod(shape))).reshape(shape)
    c = shape[axis]
    args = (x, np.full(c, 2.0), np.ones(c), np.full(c, 0.5), np.full(c, 3.0))
    fast = batch_norm_inference(*args, axis=axis)
    plain = plain_inference(*args, axis=axis)
    assert fast.shape == plain.shape == shape
    assert fast.tobytes() == plain.tobytes()


def _all_results(case: BatchCase, dy: Array, rm: Array, rv: Array) -> list[bytes]:
    """The bytes of every array that forward, backward and inference return for the case."""
    x, dy_in = _as_input(case.x, case.dtype), _as_input(dy, case.dtype)
    eps, axis = case.eps, case.axis
    fwd = batch_norm_forward(x, case.gamma, case.beta, eps=eps, axis=axis)
    grad = batch_norm_backward(dy_in, x, case.gamma, eps=eps, axis=axis)
    y = batch_norm_inference(x, case.gamma, case.beta, rm, rv, eps=eps, axis=axis)
    arrays = (fwd.y, fwd.x_hat, fwd.mean, fwd.var, fwd.inv_std, grad.dx, grad.dgamma, grad.dbeta, y)
    return [a.tobytes() for a in arrays]


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("block", [1, 3, 64])
@given(case=batch_cases(), data=st.data())
def test_results_do_not_depend_on_the_number_of_threads(
    kind: str, block: int, case: BatchCase, data: st.DataObject
) -> None:
    dy = data.draw(upstream_gradients(case.x.shape))
    rm, rv = data.draw(running_statistics(case.gamma.shape[0]))
    results = []
    for count in THREADS:
        with block_size(block), threads(count), block_functions(kind):
            results.append(_all_results(case, dy, rm, rv))
    assert results[1] == results[0]  # bit for bit
    assert results[2] == results[0]


def test_the_runs_of_a_pass_run_at_the_same_time() -> None:
    # Each call waits for a partner at the barrier: one thread alone would wait 10 s and fail.
    shape = (4, 1, 1)  # four boxes of one value: two runs of two
    barrier = threading.Barrier(2, timeout=10)

    def meet(_box: batchnorm.Box, _scratch: Array) -> int:
        barrier.wait()
        return threading.get_ident()

    with block_size(1), threads(2):
        assert len(set(batchnorm._map_blocks(meet, shape))) == 2
        for count in THREADS:
            with threads(count):
                boxes = batchnorm._map_blocks(lambda box, _: box, shape)
            assert boxes == list(batchnorm._blocks(shape, 1))  # every box once, in order


def test_a_pass_runs_on_the_one_pool_of_its_worker_count() -> None:
    # _pool(_WORKERS) is made once and reused: its threads, never more than _WORKERS, are the
    # ones that ran the pass (a pool of another size would leave this one without threads).
    with block_size(1), threads(2):
        ran = set(batchnorm._map_blocks(lambda _box, _: threading.get_ident(), (4, 1, 1)))
        pool_threads = {thread.ident for thread in batchnorm._pool(2)._threads}
    assert ran <= pool_threads
    assert len(pool_threads) in {1, 2}  # at least the one that ran, at most _WORKERS = 2


@pytest.mark.usefixtures("engine")
def test_the_callers_errstate_holds_in_every_thread() -> None:
    # gamma * x_hat overflows in channel 1 (gamma = 1.7e308, |x_hat| up to 1.5), in the pass that
    # normalizes, on the pool threads: ignored, or raised, as the caller asked. A thread with
    # NumPy's default state would warn instead (an error in this test suite).
    x = np.arange(24.0).reshape(2, 3, 4)
    g, b = np.array([1.0, 1.7e308, 1.0]), np.zeros(3)
    with block_size(4), threads(2):
        with np.errstate(over="ignore"):
            fast = batch_norm_forward(x, g, b)
        assert np.isinf(fast.y[:, 1]).any()
        np.testing.assert_array_equal(np.isinf(fast.y), np.isinf(plain_forward_quiet(x, g, b)))
        with np.errstate(over="raise"), pytest.raises(FloatingPointError, match="overflow"):
            batch_norm_forward(x, g, b)
        # The caller's callback too: a thread without it raises NameError ("no function found").
        seen: list[str] = []
        with np.errstate(over="call", call=lambda kind, _flag: seen.append(kind)):
            batch_norm_forward(x, g, b)
        assert seen
        assert set(seen) == {"overflow"}


def plain_forward_quiet(x: Array, g: Array, b: Array) -> Array:
    """The reference's y, its overflow warning ignored."""
    with np.errstate(over="ignore"):
        return plain_forward(x, g, b).y


@pytest.mark.usefixtures("engine")
def test_a_forked_child_starts_its_own_threads() -> None:
    # The child inherits the pool object but not its threads. Without a pool of its own, its
    # first threaded pass would wait forever; the alarm ends such a child with SIGALRM.
    x = np.random.default_rng(7).standard_normal((6, 4, 5))
    g, b = np.ones(4), np.zeros(4)
    with block_size(8), threads(2):
        expected = batch_norm_forward(x, g, b).y  # the parent's pool now exists
        with warnings.catch_warnings():
            # Python 3.12+ warns that forking a process with threads may deadlock: the very case.
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:
            signal.alarm(20)
            same = np.array_equal(batch_norm_forward(x, g, b).y, expected)
            os._exit(0 if same else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


@pytest.mark.usefixtures("engine")
def test_two_threads_that_call_at_once_get_the_results_of_calls_alone() -> None:
    # Both callers' passes share the pool (and the kernels, which run without the GIL).
    rng = np.random.default_rng(10)
    xs = [rng.standard_normal((40, 6, 50)), (5 + rng.standard_normal((300, 20))).astype("float32")]

    def call(x: NDArray[np.floating]) -> list[bytes]:
        c = x.shape[1]
        fwd = batch_norm_forward(x, np.ones(c), np.zeros(c))
        grad = batch_norm_backward(x[::-1].copy(), x, np.ones(c))
        return [a.tobytes() for a in (fwd.y, fwd.x_hat, fwd.mean, fwd.var, grad.dx, grad.dgamma)]

    got: dict[int, list[list[bytes]]] = {}
    barrier = threading.Barrier(2, timeout=10)

    def work(k: int) -> None:
        barrier.wait()
        got[k] = [call(xs[(k + i) % 2]) for i in range(10)]

    with block_size(256), threads(2):
        alone = [call(x) for x in xs]
        callers = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for caller in callers:
            caller.start()
        for caller in callers:
            caller.join(timeout=60)
    for k in range(2):
        assert got[k] == [alone[(k + i) % 2] for i in range(10)]


class _ShutDownPool:
    """A pool at interpreter exit: concurrent.futures takes no new work then."""

    def map(self, *_: object) -> Iterator[object]:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")


def test_a_pool_that_takes_no_work_leaves_every_box_to_the_calling_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # In-process twin of the exit test below (a subprocess does not see a mutmut mutant).
    monkeypatch.setattr(batchnorm, "_pool", lambda _workers: _ShutDownPool())
    shape = (4, 1, 1)
    with block_size(1), threads(2):
        boxes = batchnorm._map_blocks(lambda box, _: (box, threading.get_ident()), shape)
    assert [box for box, _ in boxes] == list(batchnorm._blocks(shape, 1))
    assert {ident for _, ident in boxes} == {threading.get_ident()}


def test_a_call_at_interpreter_exit_runs_without_the_pool(engine: str) -> None:
    # At exit the pool takes no new work (RuntimeError); an atexit hook still gets its result.
    code = (
        "import atexit, numpy as np\n"
        "import bnref.fast as bn\n"
        "bn._BLOCK, bn._WORKERS = 4, 2\n"
        f"bn._kernels = {'None' if engine == 'numpy' else 'bn._kernels'}\n"
        "x = np.arange(90.0).reshape(6, 3, 5)\n"
        "y = bn.batch_norm_forward(x, np.ones(3), np.zeros(3)).y\n"
        "atexit.register(lambda: print(np.array_equal("
        "bn.batch_norm_forward(x, np.ones(3), np.zeros(3)).y, y)))\n"
    )
    root = Path(__file__).resolve().parents[1]
    command = [sys.executable, "-c", code]
    done = subprocess.run(
        command, check=False, cwd=root, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


@pytest.mark.usefixtures("engine")
def test_the_sum_that_checks_finiteness_warns_never() -> None:
    """The channel sums double as the finiteness check, taken with overflow and invalid
    ignored: a finite x whose sum overflows gives None without a warning (the caller hands
    such an input to the reference), and opposite infinities raise the finiteness error with
    no warning."""
    x3 = np.array([[1e308, 0.5], [1e308, -0.5]])[:, :, np.newaxis]  # (N, C, L), C = 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert batchnorm._channel_sums(x3, x3, "x", True) is None
        assert batchnorm._channel_sums(x3, x3, "x", False) is None
        sums = batchnorm._channel_sums(x3[1:], x3, "x", True)  # one row: 1e308 and -0.5
        np.testing.assert_array_equal(sums, [1e308, -0.5])
    opposite = np.arange(12.0).reshape(4, 3)
    opposite[0, 0], opposite[1, 0] = np.inf, -np.inf  # inf + -inf: invalid, a NaN sum
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match=r"^x must be finite"):
            batch_norm_forward(opposite, np.ones(3), np.zeros(3))
        with pytest.raises(ValueError, match=r"^x must be finite"):
            batch_norm_backward(opposite, opposite, np.ones(3))


@pytest.mark.parametrize("prop", BATCHNORM_PROPERTIES, ids=lambda p: p.name)
def test_the_fast_target_satisfies(prop: Property) -> None:
    """`bnref check fast`: every batch-norm property holds for the fast engine as a target."""
    impl = load_target("fast")
    assert impl.name == (
        "fast with NumPy blocks" if batchnorm._kernels is None else "fast with compiled blocks"
    )
    prop.as_test(impl)()
