"""The judging machinery: `compare`'s ratio at the edges of the float range, and the case
classes printing as the Python that rebuilds them."""

from __future__ import annotations

import math
import warnings

import numpy as np
from hypothesis.vendor.pretty import pretty

from properties.batchnorm_props import PermutedCase, ShiftScaleCase
from properties.checks import compare
from properties.framework import Measurement
from properties.strategies import BatchCase, to_code

SMALLEST_SUBNORMAL = 5e-324  # 2**-1074


def test_compare_with_a_subnormal_tolerance_does_not_overflow() -> None:
    """err / tol overflows for a subnormal tol: the ratio is then infinite, the element is the
    worst, and no RuntimeWarning is raised inside the property (warnings are errors here)."""
    got = np.array([1.0, 0.5, 0.0])
    want = np.zeros(3)
    tol = np.array([SMALLEST_SUBNORMAL, 1.0, 0.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = compare("q", got, want, tol)
    assert (m.error, m.tolerance) == (1.0, SMALLEST_SUBNORMAL)
    assert m.ratio == math.inf
    assert not m.passed


def test_compare_keeps_the_exact_claim_semantics() -> None:
    """Tolerance 0 is an exact claim: error 0 has ratio 0 and passes, any other error is
    infinitely over; no division by zero is evaluated (no warning)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact = compare("q", np.zeros(3), np.zeros(3), 0.0)
        broken = compare("q", np.array([0.0, 2.0]), np.zeros(2), np.array([1.0, 0.0]))
        nan = compare("q", np.array([np.nan, 0.0]), np.zeros(2), 1.0)
    assert exact == Measurement("q", 0.0, 0.0)
    assert exact.ratio == 0.0
    assert exact.passed
    assert (broken.error, broken.tolerance, broken.ratio) == (2.0, 0.0, math.inf)
    assert (nan.error, nan.tolerance) == (math.inf, 1.0)  # a NaN is an infinite error


def _case() -> BatchCase:
    return BatchCase(
        x=np.array([[0.1, np.nan], [1 / 3, -np.inf]]),
        gamma=np.array([np.nextafter(1.0, 2.0), 1e-310]),
        beta=np.zeros(2),
        eps=1e-5,
        axis=-1,
        dtype="float64",
    )


def test_case_repr_is_python_that_rebuilds_the_case() -> None:
    """repr() and Hypothesis's printer write arrays as np.array(..., dtype=...), floats by
    their round-trip repr (nan and inf as float('nan') / float('inf')): eval gives the case
    back bit for bit, nested cases included."""
    shifted = ShiftScaleCase(_case(), np.array([1.5, -2.0]), 0.25)
    permuted = PermutedCase(_case(), 0, (1, 0))
    scope = {"np": np, "BatchCase": BatchCase, "ShiftScaleCase": ShiftScaleCase}
    scope["PermutedCase"] = PermutedCase
    for text in (repr(shifted), pretty(shifted), repr(permuted), pretty(permuted)):
        assert "array(" not in text.replace("np.array(", "")
    rebuilt = eval(repr(shifted), scope)
    assert isinstance(rebuilt, ShiftScaleCase)
    for name in ("x", "gamma", "beta"):
        assert np.array_equal(getattr(rebuilt.case, name), getattr(shifted.case, name), True)
    assert np.array_equal(rebuilt.shift, shifted.shift)
    assert (rebuilt.scale, rebuilt.case.eps, rebuilt.case.axis) == (0.25, 1e-5, -1)
    assert eval(pretty(permuted), scope).permutation == (1, 0)


def test_to_code_writes_numpy_scalars_as_python_numbers() -> None:
    """repr(np.float64(x)) is 'np.float64(x)' in NumPy 2: to_code writes the number itself."""
    imports: set[str] = set()
    assert to_code(np.float64(0.1), imports) == "0.1"
    assert to_code(np.int64(3), imports) == "3"
    assert to_code((np.float64(np.inf),), imports) == "(float('inf'),)"
    assert imports == set()


def test_to_code_rebuilds_dicts_of_arrays() -> None:
    """Optimizer and network cases hold {name: array} dicts: written item by item."""
    imports: set[str] = set()
    code = to_code({"W": np.array([[1.0, -0.5]]), "b": np.array([np.nan])}, imports)
    want = "{'W': np.array([[1.0, -0.5]], dtype=np.float64), "
    want += "'b': np.array([float('nan')], dtype=np.float64)}"
    assert code == want
    assert imports == {"import numpy as np"}
    rebuilt = eval(code, {"np": np})
    assert np.array_equal(rebuilt["W"], [[1.0, -0.5]])
    assert np.isnan(rebuilt["b"]).all()
