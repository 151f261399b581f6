"""bnref as an oracle: the properties and a differential check on PyTorch and ONNX.

Tests marked `oracle` need torch, onnx and onnxruntime (`nox -s oracle`); the others check
`load_target` and its error messages and run everywhere.

* float64: every forward and running-statistics property runs on PyTorch. On ONNX the
  operator's epsilon and momentum are float32 attributes, so a float64 ONNX model cannot use
  eps = 1e-5 or momentum = 0.1 exactly (tests below pin that); its properties run on the same
  cases with eps, momentum and the scale of scale-invariance made float32 values.
* float32: every property stated at float32 runs on PyTorch and ONNX Runtime with the
  tolerances of properties.tolerances at u = 2**-24 (`bnref check --dtype float32`).
* float32 and float16: each target is also compared with the reference on the same (rounded)
  inputs, within the bounds of properties.tolerances with u = the target's unit roundoff
  (derivation at `differential`).
  The worst errors are logged (run with -o log_cli=true to see the table).
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import bnref.targets
from bnref.targets import DTYPES, TARGET_DTYPES, TARGETS, TargetLacks, load_target
from properties import batchnorm_props, registry, running_stats_props
from properties.adapter import (
    Array,
    ForwardOutput,
    Implementation,
    ReferenceImplementation,
    Rounded,
    StrictAccuracy,
)
from properties.batchnorm_props import GradientCase, PermutedCase, ShiftScaleCase
from properties.checks import compare, unchanged
from properties.framework import Measurement, Property, PropertyFailure, run_property
from properties.running_stats_props import CumulativeCase, LayerStepCase, RunningStatsCase
from properties.strategies import BatchCase, batch_cases, upstream_gradients
from properties.tolerances import (
    SAFETY,
    SMALLEST_SUBNORMAL,
    U64,
    UNIT_ROUNDOFF,
    ExactStats,
    channel_rows,
    exact_stats,
    expand,
    narrow_x_hat_bound,
    per_channel_max,
    scale_error_bound,
    y_bound,
)
from reference.conventions import get_convention

oracle = pytest.mark.oracle
log = logging.getLogger(__name__)

FRAMEWORKS = ("torch", "onnx", "onnxruntime")
PROPERTIES = batchnorm_props.PROPERTIES + running_stats_props.PROPERTIES
# ONNX has no momentum=None: cumulative-average is not applicable
# (test_onnx_has_no_cumulative_average and the n/a row of `bnref check onnx`). no-mutation
# checks forward and inference alone (ONNX has no backward, so no frozen-mode backward either:
# frozen-backward is n/a, test_onnx_has_no_frozen_backward).
ONNX_PROPERTIES = tuple(
    p for p in PROPERTIES if p.name not in {"cumulative-average", "frozen-backward"}
)


@pytest.fixture(scope="module")
def targets() -> dict[tuple[str, str], Implementation]:
    """One adapter per (framework, dtype), shared: ONNX Runtime sessions are cached inside."""
    return {
        (name, dtype): load_target(name, dtype)
        for name in FRAMEWORKS
        for dtype in DTYPES
        if dtype in TARGET_DTYPES[name]
    }


# --- load_target and its errors (no framework needed) ----------------------------------------


def test_load_target_reference() -> None:
    impl = load_target("reference", "float64")
    assert isinstance(impl, ReferenceImplementation)
    assert TARGETS[:5] == ("reference", "fast", "torch", "onnx", "onnxruntime")


@pytest.mark.parametrize("name", ["tensorflow2", "", "Torch"])
def test_load_target_rejects_unknown_name(name: str) -> None:
    with pytest.raises(ValueError, match="target must be one of"):
        load_target(name, "float64")


@pytest.mark.parametrize("dtype", ["float128", "float8", "f4"])
def test_load_target_rejects_unknown_dtype(dtype: str) -> None:
    with pytest.raises(ValueError, match="dtype must be one of"):
        load_target("reference", dtype)


def test_load_target_rejects_non_string_dtype() -> None:
    with pytest.raises(TypeError, match="dtype must be a string"):
        load_target("reference", np.float32)  # type: ignore[arg-type]  # the wrong type on purpose


def test_reference_target_is_float64_only() -> None:
    with pytest.raises(ValueError, match="dtype must be 'float64' for the reference"):
        load_target("reference", "float32")


@pytest.mark.parametrize(
    ("name", "module", "message"),
    [
        ("torch", "torch", r"needs PyTorch: pip install 'bnref\[torch\]'"),
        ("onnx", "onnx", r"bnref check onnx needs onnx: pip install 'bnref\[onnx\]'"),
        # The onnxruntime adapter builds its model with onnx, so this case needs onnx installed.
        pytest.param(
            "onnxruntime",
            "onnxruntime",
            r"needs ONNX Runtime: pip install 'bnref\[onnx\]'",
            marks=pytest.mark.oracle,
        ),
    ],
)
def test_missing_framework_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, name: str, module: str, message: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    # torch and onnx are imported when their adapter module is: import it afresh (the failed
    # import binds nothing); onnxruntime is imported when its adapter is built.
    adapter = {"torch": "torch_target", "onnx": "onnx_target"}.get(name)
    if adapter is not None:
        monkeypatch.delitem(sys.modules, f"bnref.targets.{adapter}", raising=False)
        monkeypatch.delattr(bnref.targets, adapter, raising=False)
    with pytest.raises(ImportError, match=message):
        load_target(name, "float64")


def test_target_lacks_is_a_value_error_naming_target_and_method() -> None:
    err = TargetLacks("onnx", "backward", "no gradient")
    assert isinstance(err, ValueError)
    assert str(err) == "onnx lacks backward: no gradient"
    assert (err.target, err.method) == ("onnx", "backward")


# --- what a target lacks ------------------------------------------------------------------


@oracle
@pytest.mark.parametrize("name", ["onnx", "onnxruntime"])
def test_onnx_has_no_backward(name: str) -> None:
    x = np.arange(6.0).reshape(3, 2)
    with pytest.raises(TargetLacks, match="lacks backward"):
        load_target(name, "float64").backward(x, x, np.ones(2), eps=1e-5, axis=1)


@oracle
@pytest.mark.parametrize("name", ["onnx", "onnxruntime"])
def test_onnx_has_no_cumulative_average(name: str) -> None:
    x = np.arange(6.0).reshape(3, 2)
    with pytest.raises(TargetLacks, match="lacks update_running_stats: momentum=None"):
        load_target(name, "float64").update_running_stats(
            x, np.zeros(2), np.ones(2), momentum=None, num_batches_tracked=1, axis=1
        )


@oracle
def test_torch_cumulative_average_needs_num_batches_tracked() -> None:
    x = np.arange(6.0).reshape(3, 2)
    with pytest.raises(ValueError, match="num_batches_tracked must be an integer >= 1"):
        load_target("torch", "float64").update_running_stats(
            x, np.zeros(2), np.ones(2), momentum=None, num_batches_tracked=None, axis=1
        )
    with pytest.raises(ValueError, match="num_batches_tracked"):
        load_target("torch", "float64").update_running_stats(
            x, np.zeros(2), np.ones(2), momentum=None, num_batches_tracked=0, axis=1
        )


@oracle
@pytest.mark.parametrize("name", FRAMEWORKS)
@pytest.mark.parametrize("shape", [(6,), (1, 2, 1, 1, 1, 2)])
def test_targets_lack_other_ranks(name: str, shape: tuple[int, ...]) -> None:
    x = np.ones(shape)
    with pytest.raises(TargetLacks, match=r"lacks forward: x must have 2 to 5 dimensions"):
        load_target(name, "float64").forward(x, np.ones(2), np.zeros(2), eps=1e-5, axis=-1)


@oracle
@pytest.mark.parametrize("name", FRAMEWORKS)
def test_values_beyond_the_dtype_range_are_refused(name: str) -> None:
    x = np.array([[1.0, 2.0], [7e4, 3.0]])  # 7e4 > 65504, the largest float16
    with pytest.raises(TargetLacks, match=r"lacks inference: x has the value 70000.0"):
        load_target(name, "float16").inference(
            x, np.ones(2), np.zeros(2), np.zeros(2), np.ones(2), eps=1e-5, axis=1
        )


# --- the properties on float64 targets ------------------------------------------------------


@oracle
@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.name)
def test_torch_float64_satisfies(
    prop: Property, targets: dict[tuple[str, str], Implementation]
) -> None:
    prop.as_test(targets["torch", "float64"])()


@oracle
@pytest.mark.parametrize("prop", registry.BATCHNORM_PROPERTIES, ids=lambda p: p.name)
def test_torch_float32_satisfies(
    prop: Property, targets: dict[tuple[str, str], Implementation]
) -> None:
    """Every property stated at float32 holds for torch in float32 with u = 2**-24; the
    gradient properties are n/a there, with their reason, never a pass."""
    impl = targets["torch", "float32"]
    if prop.float64_only:
        result = run_property(prop, impl, settings())
        assert result.passed
        assert result.not_applicable.startswith("not stated for float32")
        assert result.examples == 0
        return
    prop.as_test(impl)()


# ONNX Runtime folds the mean into a bias (see test_known_failures_are_real) in float32 too:
# backward stable (the default accuracy class admits it), beyond the reference's own two-pass
# accuracy (it fails under --strict, test_onnxruntime_float32_known_failures).
ORT_FLOAT32_KNOWN = {"zero-mean-unit-var", "affine-moments"}


@oracle
@pytest.mark.parametrize(
    "prop",
    [
        p
        for p in registry.BATCHNORM_PROPERTIES
        if not p.float64_only
        and p.name not in {"cumulative-average", "frozen-backward", "backward-accuracy"}
    ],
    ids=lambda p: p.name,
)
def test_onnxruntime_float32_satisfies(
    prop: Property, targets: dict[tuple[str, str], Implementation]
) -> None:
    """At float32, eps and momentum are float32 values, so ONNX's float32 attributes are exact;
    every forward and running-statistics property holds in the default accuracy class, also
    the two whose --strict bounds ONNX Runtime's folded bias breaks
    (test_onnxruntime_float32_known_failures)."""
    prop.as_test(targets["onnxruntime", "float32"])()


@oracle
@pytest.mark.parametrize("prop_name", sorted(ORT_FLOAT32_KNOWN))
def test_onnxruntime_float32_known_failures(
    prop_name: str, targets: dict[tuple[str, str], Implementation]
) -> None:
    """|mean|/std ~ 1e3 in float32: ONNX Runtime's Y = X k + (B - mean k) errs by u |x| k per
    element (var(y) off ~40 times the two-pass bound) while torch and the reference rounded to
    float32 pass the same case, all three held to the reference's accuracy (--strict)."""
    x = np.array([[1e3, 1e3], [1e3 + 1, 1e3 + 1], [1e3 + 0.5, 1e3 + 0.25], [1e3 - 0.75, 1e3]])
    gamma = np.ones(2) if prop_name == "zero-mean-unit-var" else np.array([1.0, 2.0])
    beta = np.zeros(2) if prop_name == "zero-mean-unit-var" else np.array([0.5, 0.0])
    case = BatchCase(x, gamma, beta, _f32(1e-5), 1, "float32")
    prop = registry.by_name(prop_name)
    prop.judge(StrictAccuracy(targets["torch", "float32"]), case)
    prop.judge(StrictAccuracy(Rounded(ReferenceImplementation("onnx"), "float32")), case)
    prop.judge(targets["onnxruntime", "float32"], case)  # backward stable: the default passes
    with pytest.raises(PropertyFailure, match="channel variance of y"):
        prop.judge(StrictAccuracy(targets["onnxruntime", "float32"]), case)


@oracle
@pytest.mark.parametrize("name", ["onnx", "onnxruntime"])
def test_onnx_no_mutation_checks_forward_and_inference(name: str) -> None:
    """ONNX has no backward: no-mutation runs on forward and inference, it is not n/a."""
    result = run_property(registry.by_name("no-mutation"), load_target(name, "float64"), settings())
    assert result.passed, result.failure
    assert not result.not_applicable
    assert result.worst is not None
    assert "forward/inference (the target has no backward)" in result.worst.quantity


def _f32(value: float) -> float:
    return float(np.float32(value))


def float32_attributes(case: Any) -> Any:
    """The case with eps and momentum rounded to float32, ONNX's attribute type, and the scale
    of scale-invariance rounded to a power of two, so that eps * scale**2 is a float32 too."""
    if isinstance(case, BatchCase):
        return replace(case, eps=_f32(case.eps))
    if isinstance(case, ShiftScaleCase):
        scale = 2.0 ** round(math.log2(case.scale))
        return replace(case, case=float32_attributes(case.case), scale=scale)
    if isinstance(case, (PermutedCase, GradientCase)):
        return replace(case, case=float32_attributes(case.case))
    if isinstance(case, RunningStatsCase):
        return replace(case, momentum=_f32(case.momentum))
    if isinstance(case, LayerStepCase):
        return replace(case, momentum=_f32(case.momentum), eps=_f32(case.eps))
    if isinstance(case, CumulativeCase):  # no eps, no momentum
        return case
    raise TypeError(f"case must be one of the property case types, got {type(case).__name__}")


# Properties a target fails, each with a case that shows it (test_known_failures_are_real).
KNOWN_FAILURES: dict[tuple[str, str], str] = {
    ("onnxruntime", "zero-mean-unit-var"): "y = x*k + (B - mean*k) without FMA: error u|x|k",
    ("onnxruntime", "affine-moments"): "y = x*k + (B - mean*k) without FMA: error u|x|k",
    ("onnx", "running-stats-formula"): "the weight 1 - momentum is rounded to float32",
    ("onnx", "layer-step"): "the weight 1 - momentum is rounded to float32",
}
# Of those, the ones that fail only against the reference's own accuracy (--strict): the
# default accuracy class admits any backward-stable evaluation, the folded bias included.
STRICT_ONLY = {("onnxruntime", "zero-mean-unit-var"), ("onnxruntime", "affine-moments")}


ONNX_CASES = [
    pytest.param(name, prop, id=f"{name}-{prop.name}")
    for name in ("onnx", "onnxruntime")
    for prop in ONNX_PROPERTIES
    if (name, prop.name) not in KNOWN_FAILURES.keys() - STRICT_ONLY
]


@oracle
@pytest.mark.parametrize(("name", "prop"), ONNX_CASES)
def test_onnx_float64_satisfies_with_float32_attributes(
    name: str, prop: Property, targets: dict[tuple[str, str], Implementation]
) -> None:
    """Every property ONNX can run, except the known failures (pinned below)."""
    restricted = replace(prop, strategy=prop.strategy.map(float32_attributes))
    restricted.as_test(targets[name, "float64"])()


_CONDITIONED = np.array([[1.0, 1.0], [1e6, 1e6 + 1.0]])  # channel 1: |mean|/std = 2e6
_EPS = float(np.float32(1e-5))
KNOWN_FAILURE_CASES: dict[tuple[str, str], Any] = {
    ("onnxruntime", "zero-mean-unit-var"): BatchCase(
        _CONDITIONED, np.ones(2), np.zeros(2), _EPS, axis=0, dtype="float64"
    ),
    ("onnxruntime", "affine-moments"): BatchCase(
        _CONDITIONED, np.array([0.0, 1.0]), np.array([0.0, 0.5]), _EPS, axis=0, dtype="float64"
    ),
    ("onnx", "running-stats-formula"): RunningStatsCase(
        x=np.array([[1.0], [1.0]]),
        axis=1,
        running_mean=np.zeros(1),
        running_var=np.zeros(1),
        momentum=float(np.float32(0.1)),
        cumulative=False,
        num_batches_tracked=1,
    ),
    ("onnx", "layer-step"): LayerStepCase(
        x=np.array([[1.0], [1.0]]),
        axis=1,
        running_mean=np.zeros(1),
        running_var=np.zeros(1),
        momentum=float(np.float32(0.1)),
        eps=_EPS,
    ),
}


@oracle
@pytest.mark.parametrize(
    ("name", "prop_name"), [pytest.param(*key, id="-".join(key)) for key in KNOWN_FAILURES]
)
def test_known_failures_are_real(
    name: str, prop_name: str, targets: dict[tuple[str, str], Implementation]
) -> None:
    """The target fails the property on the case while the reference (same convention)
    passes it: the failure is the target's, not the tolerance's. If this test fails, the
    target was fixed: delete its KNOWN_FAILURES entry.

    ONNX Runtime (onnxruntime/core/providers/cpu/nn/batch_norm.h) folds the mean into a bias,
    Y = X * k + (B - mean * k), k = scale / sqrt(var + eps), in two roundings: each element
    is off by u |x| k, not a common shift, so var(y) is off by ~u |mean| / std relative.
    The ONNX reference evaluator turns every FLOAT attribute into np.float32
    (onnx/reference/op_run.py), so op_batch_normalization.py's 1 - momentum is rounded to
    float32 even in a float64 model.
    """
    prop = next(p for p in PROPERTIES if p.name == prop_name)
    case = KNOWN_FAILURE_CASES[name, prop_name]
    target: Implementation = targets[name, "float64"]
    reference: Implementation = ReferenceImplementation(target.convention)
    if (name, prop_name) in STRICT_ONLY:
        prop.judge(target, case)  # the default accuracy class admits it
        target, reference = StrictAccuracy(target), StrictAccuracy(reference)
    prop.judge(reference, case)
    with pytest.raises(PropertyFailure, match=prop_name):
        prop.judge(target, case)


@oracle
@pytest.mark.parametrize("name", ["onnx", "onnxruntime"])
def test_onnx_float64_epsilon_is_a_float32(
    name: str, targets: dict[tuple[str, str], Implementation]
) -> None:
    """eps = 1e-5 acts as float32(1e-5) = 9.99999974738e-06 in a float64 ONNX model.

    With var = 1e-5 = eps the difference in y is |x_hat| eps (u32 / 2) / (2 (var + eps)),
    ~1e-9 here, far beyond the float64 bound (~1e-15).
    """
    x = np.array([[0.0], [0.0063245553203367585]])  # biased variance 1e-5
    gamma, beta = np.ones(1), np.zeros(1)
    y = targets[name, "float64"].forward(x, gamma, beta, eps=1e-5, axis=1).y
    ref = ReferenceImplementation()
    for eps, holds in ((_f32(1e-5), True), (1e-5, False)):
        want = ref.forward(x, gamma, beta, eps=eps, axis=1).y
        bound = 2 * y_bound(exact_stats(x, 1, eps), gamma, beta, U64)  # both sides' error
        assert compare("y", y, want, bound).passed is holds, (eps, np.abs(y - want).max())


@oracle
@pytest.mark.parametrize(
    ("name", "weight"),
    [
        pytest.param("onnxruntime", 1.0 - _f32(0.1), id="onnxruntime"),  # double 1. - m
        pytest.param("onnx", _f32(1.0 - _f32(0.1)), id="onnx"),  # numpy float32: float32(0.9)
    ],
)
def test_onnx_float64_momentum_is_a_float32(
    name: str, weight: float, targets: dict[tuple[str, str], Implementation]
) -> None:
    """momentum = 0.1 acts as float32(0.1) = 0.100000001490116: from 0, a batch of mean 1
    gives the weight of the batch, 1 - m, which is 1.5e-9 (ONNX Runtime) or 2.4e-8 (the
    reference evaluator, whose 1 - m is a float32 too) away from 0.9; float64 would be 1e-16."""
    x = np.array([[0.0], [2.0]])
    got = targets[name, "float64"].update_running_stats(
        x, np.zeros(1), np.zeros(1), momentum=0.1, num_batches_tracked=None, axis=1
    )
    assert got.mean[0] == weight  # m * 0 + 1 * w: exact
    assert abs(got.mean[0] - 0.9) > 1e-9


@oracle
def test_onnx_reference_evaluator_float16_variance_overflows() -> None:
    """Pins a discrepancy with the ONNX specification, which says ReduceMean and ReduceVar
    "use float to avoid overflow for float16 inputs": onnx 1.23's reference evaluator computes
    the variance with numpy's float16 x.var(), whose sum of squares overflows, while the mean
    (numpy accumulates float16 means in float32) and ONNX Runtime are right.

    64 values 2000 and one 2001 per channel: var = 64/65**2 = 0.0151..., but the float16 sum
    of the 65 values (~130000) is beyond 65504. If this fails, onnx fixed it.
    """
    x = np.full((65, 1), 2000.0)
    x[0, 0] = 2001.0
    args = (x, np.ones(1), np.zeros(1))
    with pytest.warns(RuntimeWarning, match="overflow"):
        evaluator = load_target("onnx", "float16").forward(*args, eps=1e-3, axis=1)
    runtime = load_target("onnxruntime", "float16").forward(*args, eps=1e-3, axis=1)
    assert np.isinf(evaluator.var[0])
    assert np.all(evaluator.y == 0.0)  # (x - mean) / sqrt(inf): every output lost
    assert abs(runtime.var[0] - 64 / 65**2) <= 4 * 2.0**-11 * 64 / 65**2  # a few float16 ulps


# --- differential: float32 and float16 against the reference ------------------------------


@dataclass(frozen=True)
class DiffCase:
    """Inputs already rounded to the target's dtype (held as float64), and the attributes."""

    x: Array
    gamma: Array
    beta: Array
    dy: Array
    running_mean: Array
    running_var: Array
    eps: float
    momentum: float
    num_batches_tracked: int
    axis: int


def _rounded(value: Array, dtype: str) -> Array:
    out: Array = np.asarray(value).astype(dtype).astype(np.float64)
    return out


def make_diff_case(
    case: BatchCase, dy: Array, stats: tuple[Array, Array, float, int], dtype: str
) -> DiffCase:
    """Round a case to `dtype`. float16: x is first scaled by a power of two (exact) to
    max|x| <= 4, so that a float16 sum of n <= 512 squared deviations (<= 8**2) cannot
    overflow; eps and momentum are rounded to dtype and then are float32 values too."""
    x = case.x
    if dtype == "float16":
        peak = float(np.max(np.abs(x)))
        if peak > 4.0:
            x = x * 2.0 ** -math.ceil(math.log2(peak / 4.0))
    rm, rv, momentum, tracked = stats
    return DiffCase(
        x=_rounded(x, dtype),
        gamma=_rounded(case.gamma, dtype),
        beta=_rounded(case.beta, dtype),
        dy=_rounded(dy, dtype),
        running_mean=_rounded(rm, dtype),
        running_var=_rounded(rv, dtype),
        eps=float(np.array(case.eps, dtype=dtype)),
        momentum=float(np.array(momentum, dtype=dtype)),
        num_batches_tracked=tracked,
        axis=case.axis,
    )


@st.composite
def diff_cases(draw: st.DrawFn, dtype: str) -> DiffCase:
    """batch_cases (hard cases included), dy, running statistics and a momentum, in dtype.

    float16 keeps eps >= 1e-3 (1e-5 and 1e-8 are subnormal or zero in float16) and running
    statistics within +-100 (the range ends at 65504).
    """
    case = draw(batch_cases(dtypes=("float32",)))
    if dtype == "float16":
        case = replace(case, eps=draw(st.sampled_from([1e-3, 1e-1, 1.0])))
    c = case.x.shape[case.axis]
    big = 1e2 if dtype == "float16" else 1e6
    rm = np.array(draw(st.lists(st.floats(-big, big), min_size=c, max_size=c)))
    rv = np.array(draw(st.lists(st.floats(0.0, big), min_size=c, max_size=c)))
    momentum = draw(st.sampled_from([0.0, 1.0, 0.1, 0.9]) | st.floats(0.0, 1.0))
    tracked = draw(st.integers(1, 1000))
    dy = draw(upstream_gradients(case.x.shape))
    return make_diff_case(case, dy, (rm, rv, momentum, tracked), dtype)


def differential(impl: Implementation, case: DiffCase, dtype: str) -> list[Measurement]:
    """impl (computing in dtype) against the reference (float64) on the same inputs.

    u = u_dtype + u_64 bounds both sides' rounding to first order; ETA is the dtype's smallest
    subnormal (one underflowing operation). With exact per-channel n, mean m, biased var v,
    s = sqrt(v + eps), kappa = max|x| / s:

    * x_hat: X_i = the bound of properties.tolerances (with u), plus the underflows of a
      narrow dtype (`tolerances.narrow_x_hat_bound`);
    * y: |gamma| X_i + u (|gamma x_hat_i| + |y_i|) + ETA (1 + 1/s) (gamma (x - m) may
      underflow before the division by s);
    * mean: E_m = (n + 1) u max|x| + ETA; var: E_v = (n + 2) u v + E_m**2 + (n + 2) ETA;
    * inference, y = gamma (x - rm) / sqrt(rv + eps) + beta, direct or fused as
      x * k + (beta - rm * k), k = gamma / sqrt(rv + eps): with r = |gamma| / sqrt(rv + eps),
      u (6 r |x - rm| + 2 r |x| + 3 r |rm| + |beta| + |y|), plus ETA (1 + |gamma|)
      (1 + 1 / sqrt(rv + eps)) for an intermediate that underflows;
    * backward, dx = gamma / s (dy - A - x_hat B), A = sum(dy) / n, B = sum(dy x_hat) / n:
      dbeta n u sum|dy|; dgamma sum|dy| X + (n + 1) u sum|dy x_hat|; dx
      |gamma| / s (dA + |x_hat| dB + X (|B| + dB) + 2u (|dy| + |A| + |x_hat B|))
      + |dx| (rel_s + 4u) + ETA (1 + |gamma| / s); X dB is second order but not small when
      X is (a constant channel with eps = 1e-8 in float32: X ~ 0.1);
    * running statistics as in running_stats_props with E_m, E_v of this dtype.
    Each bound times SAFETY, plus 4 ETA.
    """
    u = UNIT_ROUNDOFF[dtype] + U64
    eta = SMALLEST_SUBNORMAL[dtype]
    ref = ReferenceImplementation(impl.convention)
    x, ax, nd, eps = case.x, case.axis, case.x.ndim, case.eps
    stats = exact_stats(x, ax, eps)
    n = stats.count
    xh = np.abs(stats.x_hat)
    g = np.abs(expand(stats, case.gamma, nd))
    before = {k: v.copy() for k, v in vars(case).items() if isinstance(v, np.ndarray)}
    out: list[Measurement] = []

    got = impl.forward(x, case.gamma, case.beta, eps=eps, axis=ax)
    want = ref.forward(x, case.gamma, case.beta, eps=eps, axis=ax)
    # gamma (x - m) may underflow before the division by s: ETA / s more
    inv_s = expand(stats, 1 / stats.scale, nd)
    tol_y = g * narrow_x_hat_bound(stats, u, eta, eps) + SAFETY * u * (g * xh + np.abs(want.y))
    tol_y = tol_y + SAFETY * eta * (1 + inv_s) + 4 * eta
    e_m = (n + 1) * u * per_channel_max(np.abs(x), stats) + eta
    e_v = (n + 2) * u * stats.var + e_m**2 + (n + 2) * eta
    out += [
        compare("forward y", got.y, want.y, tol_y),
        compare("forward mean", got.mean, want.mean, SAFETY * e_m + 4 * eta),
        compare("forward var", got.var, want.var, SAFETY * e_v + 4 * eta),
    ]

    rm, rv = case.running_mean, case.running_var
    y_inf = ref.inference(x, case.gamma, case.beta, rm, rv, eps=eps, axis=ax)
    r = np.abs(expand(stats, case.gamma / np.sqrt(rv + eps), nd))
    rm_x = expand(stats, rm, nd)
    beta_x = np.abs(expand(stats, case.beta, nd))
    terms = 6 * r * np.abs(x - rm_x) + 2 * r * np.abs(x) + 3 * r * np.abs(rm_x) + beta_x
    # an intermediate (x - rm, gamma (x - rm), its quotient) may underflow, ETA/2 each, then
    # be multiplied by |gamma| and divided by sqrt(rv + eps)
    inv_s_inf = expand(stats, 1 / np.sqrt(rv + eps), nd)
    underflow = eta * (1 + g) * (1 + inv_s_inf)
    tol_inf = SAFETY * (u * (terms + np.abs(y_inf)) + underflow) + 4 * eta
    got_inf = impl.inference(x, case.gamma, case.beta, rm, rv, eps=eps, axis=ax)
    out.append(compare("inference y", got_inf, y_inf, tol_inf))

    if impl.convention == "pytorch":  # the ONNX operator has no backward
        out += _backward(impl, case, stats, u, eta)
    out += _running(impl, case, stats, errors=(e_m, e_v), u=u, eta=eta, cumulative=False)
    if get_convention(impl.convention).cumulative_average:
        out += _running(impl, case, stats, errors=(e_m, e_v), u=u, eta=eta, cumulative=True)
    out += [unchanged(f"{k} after every method", v, getattr(case, k)) for k, v in before.items()]
    return out


def _backward(
    impl: Implementation, case: DiffCase, stats: ExactStats, u: float, eta: float
) -> list[Measurement]:
    """dx, dgamma, dbeta within the bounds of `differential`."""
    x, ax, nd = case.x, case.axis, case.x.ndim
    n = stats.count
    got = impl.backward(case.dy, x, case.gamma, eps=case.eps, axis=ax)
    want = ReferenceImplementation().backward(case.dy, x, case.gamma, eps=case.eps, axis=ax)
    xb = narrow_x_hat_bound(stats, u, eta, case.eps)
    dy = np.abs(case.dy)
    xh = np.abs(stats.x_hat)
    sum_dy = np.sum(channel_rows(dy, stats), axis=1)
    tol_db = SAFETY * n * u * sum_dy + eta
    tol_dg = (
        SAFETY
        * (
            np.sum(channel_rows(dy * xb, stats), axis=1)
            + (n + 1) * u * np.sum(channel_rows(dy * xh, stats), axis=1)
        )
        + eta
    )
    a = np.abs(want.dbeta) / n
    b = np.abs(want.dgamma) / n
    d_a = expand(stats, tol_db / n + u * a, nd)
    d_b = expand(stats, tol_dg / n + u * b, nd)
    a_x, b_x = expand(stats, a, nd), expand(stats, b, nd)
    # x_hat' B' - x_hat B: the second-order X dB matters when X is large (a constant channel)
    d_t = d_a + xh * d_b + xb * (b_x + d_b) + 2 * u * (dy + a_x + xh * b_x)
    scale = np.abs(expand(stats, case.gamma / stats.scale, nd))
    rel = expand(stats, scale_error_bound(stats, u) + 4 * u, nd)
    tol_dx = SAFETY * (scale * d_t + np.abs(want.dx) * rel + eta * (1 + scale)) + 4 * eta
    return [
        compare("backward dx", got.dx, want.dx, tol_dx),
        compare("backward dgamma", got.dgamma, want.dgamma, tol_dg),
        compare("backward dbeta", got.dbeta, want.dbeta, tol_db),
    ]


def _running(
    impl: Implementation,
    case: DiffCase,
    stats: ExactStats,
    *,
    errors: tuple[Array, Array],
    u: float,
    eta: float,
    cumulative: bool,
) -> list[Measurement]:
    """One update; weights (a, b) of the convention, c = n/(n-1) if unbiased (bounds as in
    running_stats_props.check_running_stats_formula)."""
    conv = get_convention(impl.convention)
    momentum = None if cumulative else case.momentum
    tracked = case.num_batches_tracked if cumulative else None
    kwargs: dict[str, Any] = {"momentum": momentum, "num_batches_tracked": tracked}
    rm, rv, x, ax = case.running_mean, case.running_var, case.x, case.axis
    got = impl.update_running_stats(x, rm, rv, axis=ax, **kwargs)
    want = ReferenceImplementation(conv.name).update_running_stats(x, rm, rv, axis=ax, **kwargs)
    n = stats.count
    b = 1.0 / tracked if tracked is not None else conv.weights(case.momentum)[1]
    c = n / (n - 1) if conv.unbiased_var else 1.0
    e_m, e_v = errors
    label = "cumulative" if cumulative else "running"
    tol_m = SAFETY * (b * e_m + 4 * u * (np.abs(rm) + np.abs(stats.mean)) + 4 * eta)
    tol_v = SAFETY * (b * c * e_v + 4 * u * (rv + c * stats.var) + 2 * u * b * c * stats.var)
    return [
        compare(f"{label} mean", got.mean, want.mean, tol_m),
        compare(f"{label} var", got.var, want.var, tol_v + SAFETY * 4 * eta),
    ]


WORST: dict[tuple[str, str, str], Measurement] = {}


def _record(label: tuple[str, str], measurements: list[Measurement]) -> None:
    """Keep the worst (highest error/tolerance) measurement per target, dtype and quantity."""
    for m in measurements:
        key = (*label, m.quantity)
        if key not in WORST or m.ratio > WORST[key].ratio:
            WORST[key] = m


@pytest.fixture(scope="module", autouse=True)
def _log_worst() -> Iterator[None]:
    yield
    for (name, dtype, quantity), m in sorted(WORST.items()):
        log.info(
            "%-12s %-8s %-18s error %.2e tolerance %.2e ratio %.3f",
            name,
            dtype,
            quantity,
            m.error,
            m.tolerance,
            m.ratio,
        )


def _assert_within(measurements: list[Measurement]) -> None:
    failed = [m for m in measurements if not m.passed]
    assert not failed, "\n".join(
        f"{m.quantity}: error {m.error:.3e} > tolerance {m.tolerance:.3e}" for m in failed
    )


@oracle
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("name", FRAMEWORKS)
def test_differential(
    name: str, dtype: str, targets: dict[tuple[str, str], Implementation]
) -> None:
    """Every target in float32 and float16 agrees with the reference within the dtype's bound.

    The ONNX reference evaluator's float16 variance overflows on larger data (pinned above);
    float16 cases keep max|x| <= 4, where no float16 sum of squares can overflow.
    """
    impl = targets[name, dtype]

    @given(case=diff_cases(dtype))
    def check(case: DiffCase) -> None:
        measurements = differential(impl, case, dtype)
        _record((f"{name} hypo", dtype), measurements)
        _assert_within(measurements)

    check()


# Well-conditioned data, one shape per layer kind: the errors a user sees in practice.
SHAPES = {
    "dense": (64, 8),
    "conv1d": (16, 8, 32),
    "conv2d": (8, 8, 8, 8),
    "conv3d": (4, 8, 4, 4, 4),
}


@oracle
@pytest.mark.parametrize("shape", SHAPES.values(), ids=SHAPES.keys())
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("name", FRAMEWORKS)
def test_differential_standard_normal(
    name: str, dtype: str, shape: tuple[int, ...], targets: dict[tuple[str, str], Implementation]
) -> None:
    """x, dy ~ N(0, 1), gamma ~ N(1, 0.1), beta ~ N(0, 0.1), eps 1e-3, momentum 0.1."""
    rng = np.random.default_rng(20240601)
    c = shape[1]
    case = BatchCase(
        x=rng.standard_normal(shape),
        gamma=1 + 0.1 * rng.standard_normal(c),
        beta=0.1 * rng.standard_normal(c),
        eps=1e-3,
        axis=1,
        dtype=dtype,
    )
    running = (0.1 * rng.standard_normal(c), 1 + 0.1 * rng.random(c), 0.1, 3)
    diff = make_diff_case(case, rng.standard_normal(shape), running, dtype)
    measurements = differential(targets[name, dtype], diff, dtype)
    _record((name, dtype), measurements)
    _assert_within(measurements)


class _OnePassFloat32(ReferenceImplementation):
    """A float32 forward with the one-pass variance E[x^2] - E[x]^2: what the bounds exist
    to catch (its error grows like u kappa**2, the bound's only like u kappa)."""

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        xs = np.moveaxis(x, axis, -1).astype(np.float32)
        reduce = tuple(range(xs.ndim - 1))
        mean = xs.mean(axis=reduce, dtype=np.float32)
        var = (xs * xs).mean(axis=reduce, dtype=np.float32) - mean * mean
        scale = np.sqrt(np.maximum(var, 0) + np.float32(eps))
        y = (xs - mean) / scale * gamma.astype(np.float32) + beta.astype(np.float32)
        as64 = partial(np.asarray, dtype=np.float64)
        return ForwardOutput(as64(np.moveaxis(y, -1, axis)), as64(mean), as64(var))


@oracle
def test_differential_bounds_can_fail(targets: dict[tuple[str, str], Implementation]) -> None:
    """The float32 bounds are tight enough to reject a float16 computation and a one-pass
    variance: float16 torch on N(0, 1) data, and the one-pass float32 forward on data with
    |mean|/std ~ 1e3, both judged as float32."""
    rng = np.random.default_rng(7)
    shape = SHAPES["conv1d"]
    c = shape[1]
    case = BatchCase(rng.standard_normal(shape), np.ones(c), np.zeros(c), 1e-3, 1, "float32")
    running = (np.zeros(c), np.ones(c), 0.1, 1)
    diff = make_diff_case(case, rng.standard_normal(shape), running, "float32")
    half = differential(targets["torch", "float16"], diff, "float32")
    assert {m.quantity for m in half if not m.passed} >= {"forward y", "backward dx"}
    shifted = replace(diff, x=_rounded(diff.x + 1e3, "float32"))
    one_pass = differential(_OnePassFloat32(), shifted, "float32")
    assert {m.quantity for m in one_pass if not m.passed} == {"forward y", "forward var"}


@oracle
@pytest.mark.parametrize("name", ["onnx", "onnxruntime"])
def test_onnx_has_no_frozen_backward(name: str) -> None:
    """ONNX has no backward at all: frozen-backward is n/a with the reason, never a pass."""
    result = run_property(
        registry.by_name("frozen-backward"), load_target(name, "float64"), settings()
    )
    assert result.passed
    assert result.not_applicable
    assert result.examples == 0
