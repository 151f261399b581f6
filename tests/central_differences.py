"""Layer gradients against central differences, within derived bounds: the shared notation and
helpers of tests/test_layer_gradients.py, test_batch_norm_layer_gradients.py, test_dropout.py
and test_network_gradient.py. All arithmetic is float64.

Notation: u = 2**-53; g_n = n u / (1 - n u), the relative bound of a sum or dot product of n
terms in any order (Higham, Accuracy and Stability of Numerical Algorithms, 2002, Lemma 3.1
and Sec. 3.1); c3 = (3u)**(1/3) = 6.9e-6, gradcheck's relative step; SAFETY = 2
(`properties.tolerances`, for the first-order expansions and the move of every magnitude
within a step). E_F = 4 ulp = 8u, the assumed relative error of exp, log and log1p (glibc
documents <= 1 ulp on x86-64; NumPy's own SIMD loops are accurate to a few ulp;
tests/test_layer_gradients.py measures NumPy's against 50-digit mpmath). sqrt and + - * / are
correctly rounded (IEEE 754): u each.

Layer bounds (`reference.gradcheck.full_check`, tolerance 0, per-element atol). Element j of an
input is moved by +-h_j. If every evaluation of L = sum(v * f) is within E_L of its exact
value, the central difference errs by

    T_j         truncation, h_j**2 / 6 * max |d3 L / dx_j3| along the step
  + E_L / h_j   two evaluations' errors over the width 2 h_j
  + 2u |g_j|    the width (x + h) - (x - h) and the division round once each

and the analytic gradient by A_j, its own rounding. So atol_j = SAFETY (T_j + E_L/h_j + A_j) +
2u |g_j|, and full_check passes input k when ||a_k - n_k|| <= ||atol_k||: the relative error
||a - n|| / (||a|| + ||n||) stays below the reported tolerance ||atol|| / (||a|| + ||n||). E_L
always includes u sum|v f| + u |L| (gradcheck rounds each product v f and then the exactly
rounded fsum). Each layer's T, E_L and A are derived in its check's docstring.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st

from properties.adapter import Array
from properties.framework import Measurement
from properties.tolerances import SAFETY, U64
from reference.gradcheck import DEFAULT_RELATIVE_STEP, GradcheckReport, full_check

U = U64
C3 = DEFAULT_RELATIVE_STEP
LIBM_ULPS = 4
E_F = LIBM_ULPS * 2 * U  # relative error of exp, log, log1p (one ulp is <= 2u relative)
SCALES = (1e-3, 0.1, 1.0, 30.0)  # magnitudes of the random arrays
SEEDS = st.integers(0, 2**32 - 1)


def g_n(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u)."""
    return n * U / (1 - n * U)


def fsum(values: Array) -> float:
    """The exactly rounded sum of every element."""
    return math.fsum(np.asarray(values, dtype=np.float64).ravel().tolist())


def arrays_code(values: Sequence[Array | None]) -> str:
    """The arrays as Python that rebuilds them (for a case's repr)."""
    return ", ".join("None" if v is None else f"np.array({v.tolist()!r})" for v in values)


def scalar(value: float) -> Array:
    """A scalar loss as the 0-d array gradcheck differentiates."""
    return np.array(value)


def random_array(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> Array:
    """scale * N(0, 1) of `shape`."""
    out: Array = scale * rng.standard_normal(shape)
    return out


def gradcheck_measurements(report: GradcheckReport, layer: str) -> list[Measurement]:
    """One Measurement per input: its relative error and the tolerance ||atol|| / scale."""
    out = []
    for name, err in report.relative_errors.items():
        label = f"{layer} {name} relative error"
        if name == report.worst_input and not report.passed:
            label += (
                f", worst element {name}{list(report.worst_index)}: analytic "
                f"{report.analytic!r}, numeric {report.numeric!r}"
            )
        out.append(Measurement(label, err, report.tolerances[name]))
    return out


def element_atol(
    e_l: float, steps: Array, trunc: Array | float, analytic: Array, grad: Array
) -> Array:
    """SAFETY (T + E_L / h + A) + 2u |g|, per element (module docstring)."""
    bound: Array = SAFETY * (trunc + e_l / steps + analytic) + 2 * U * np.abs(grad)
    return bound


def against_central_differences(
    layer: str,
    f: Callable[..., Any],
    vjp: Callable[..., Sequence[Array]],
    inputs: Sequence[Array],
    *,
    upstream: Array | float,
    names: Sequence[str],
    steps: Sequence[Array],
    atols: Sequence[Array],
) -> list[Measurement]:
    """`full_check` of vjp against central differences of f at the given steps, tolerance 0
    and per-element atol: one Measurement per input."""
    report = full_check(
        f,
        vjp,
        inputs,
        upstream=upstream,
        names=names,
        step=list(steps),
        tolerance=0.0,
        atol=list(atols),
    )
    return gradcheck_measurements(report, layer)
