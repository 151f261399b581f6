"""The audit judged on implementations written the ways people write them (tests/corpus.py).

Both directions: every correct implementation that computes differently from the reference
passes every batch-norm property (no false alarm), and every planted mistake fails the property
it is paired with, which the failure names (no blind spot). The accuracy class, the --strict
bounds and the flush-to-zero note are checked on the same entries.
"""

from __future__ import annotations

import numpy as np
import pytest
from corpus import HONEST, PER_POSITION, PLANTED, Entry, Functions, Planted
from hypothesis import settings

from bnref.cli import main
from properties.accuracy_props import accuracy_report, classify_variance, flush_note
from properties.adapter import ReferenceImplementation, StrictAccuracy
from properties.framework import Property, PropertyFailure, run_property
from properties.profiles import failure_demo
from properties.registry import BATCHNORM_PROPERTIES, by_name
from properties.strategies import BatchCase
from properties.tolerances import ACCURACY_CLASS, STREAMING, TWO_PASS, accuracy_class

AUDIT = failure_demo(150)  # a planted mistake: does the property fail (no shrinking)?
HONEST_RUNS = [
    pytest.param(entry, prop, id=f"{entry.name}-{prop.name}")
    for entry in HONEST
    for prop in BATCHNORM_PROPERTIES
]


@pytest.mark.parametrize(("entry", "prop"), HONEST_RUNS)
def test_a_correct_implementation_passes(entry: Entry, prop: Property) -> None:
    """No false alarm: each honest entry passes every batch-norm property under the active
    profile; only the float64-only claims are not applicable to the float32 entry."""
    result = run_property(prop, Functions(entry), settings())
    assert result.passed, result.failure
    if entry.dtype == "float64":
        assert not result.not_applicable, result.not_applicable
    else:
        assert bool(result.not_applicable) == bool(prop.float64_only), result.not_applicable


@pytest.mark.parametrize("planted", PLANTED, ids=[f"{p.entry.name}->{p.catches}" for p in PLANTED])
def test_a_planted_mistake_fails_by_name(planted: Planted) -> None:
    result = run_property(by_name(planted.catches), Functions(planted.entry), AUDIT)
    assert not result.passed, f"{planted.entry.name} slipped through {planted.catches}"
    assert not result.not_applicable
    assert f"property {planted.catches!r} failed for {planted.entry.name}" in result.failure


# --- the accuracy classes ----------------------------------------------------------------------

WELFORD = next(e for e in HONEST if e.name == "welford")
# |mean|/std = 1e7: Welford's running mean is rounded at the spacing of 1e8 (1.5e-8) and that
# error enters its sum of squares once, multiplied by the deviation 0.099: the variance is off
# by ~u |mean|/std relative, where the two-pass algorithm is off by ~(n u |mean|/std)**2.
OFFSET_CASE = BatchCase(
    x=np.array([[1e8 + 0.19798653], [1e8]]),
    gamma=np.ones(1),
    beta=np.zeros(1),
    eps=1e-5,
    axis=1,
    dtype="float64",
)


def test_welford_passes_by_default_and_fails_strict_on_the_offset_case() -> None:
    y = Functions(WELFORD).forward(OFFSET_CASE.x, np.ones(1), np.zeros(1), eps=1e-5, axis=1).y
    var_y = float(np.var(y))
    rho = 0.0098 / (0.0098 + 1e-5)  # approximately: var = (0.19798653 / 2)**2
    assert 1e-8 < abs(var_y / rho - 1) < 1e-6  # measured 7.5e-8; within the streaming bound
    for name in ("zero-mean-unit-var", "forward-accuracy"):
        by_name(name).judge(Functions(WELFORD), OFFSET_CASE)
        with pytest.raises(PropertyFailure, match=name):
            by_name(name).judge(StrictAccuracy(Functions(WELFORD)), OFFSET_CASE)
        by_name(name).judge(StrictAccuracy(ReferenceImplementation()), OFFSET_CASE)


@pytest.mark.parametrize(
    ("name", "klass"),
    [
        ("welford", STREAMING),
        ("chunked-merge-folded", STREAMING),
        ("numpy-var", TWO_PASS),
        ("staged-graph", TWO_PASS),
        ("flush-to-zero", TWO_PASS),
    ],
)
def test_the_accuracy_class_of_each_correct_implementation(name: str, klass: str) -> None:
    entry = next(e for e in HONEST if e.name == name)
    measured = classify_variance(Functions(entry))
    assert measured.name == klass, measured.line()
    if klass == STREAMING:  # beyond the two-pass bound, at most a few u kappa
        assert measured.two_pass < measured.units <= 10
    assert measured.units <= measured.streaming


@pytest.mark.parametrize(
    ("name", "klass"),
    [
        ("one-pass-variance", "one-pass: FAIL"),
        ("eps-outside-sqrt", "beyond streaming: FAIL"),
        ("unbiased-normalize", "beyond streaming: FAIL"),
    ],
)
def test_the_accuracy_class_of_a_wrong_variance(name: str, klass: str) -> None:
    entry = next(p.entry for p in PLANTED if p.entry.name == name)
    measured = classify_variance(Functions(entry))
    assert measured.name == klass, measured.line()
    assert measured.units > measured.streaming
    assert measured.line().startswith(f"accuracy class [float64]: {klass} -- worst var(x_hat)")


def test_the_reference_is_two_pass_and_a_float16_class_is_not_measured() -> None:
    assert classify_variance(ReferenceImplementation()).name == TWO_PASS
    half = replace_dtype(WELFORD, "float16")
    measured = classify_variance(Functions(half))
    assert measured.name == "not measured"
    assert "K u kappa <= 0.01 in float16" in measured.line()


def replace_dtype(entry: Entry, dtype: str) -> Entry:
    """`entry` computing in `dtype`."""
    return Entry(entry.name, entry.forward, entry.backward, dtype=dtype)


@pytest.mark.parametrize(
    "prop", [p for p in BATCHNORM_PROPERTIES if ACCURACY_CLASS in p.tags], ids=lambda p: p.name
)
def test_the_reference_meets_the_strict_bounds(prop: Property) -> None:
    """--strict keeps the bounds the reference was held to: it still meets them."""
    impl = StrictAccuracy(ReferenceImplementation())
    assert accuracy_class(impl) == TWO_PASS
    result = run_property(prop, impl, settings())
    assert result.passed, result.failure


def test_strict_changes_nothing_without_a_statistics_dependent_property() -> None:
    impl = StrictAccuracy(ReferenceImplementation())
    props = [by_name("inference-formula")]
    results = [run_property(props[0], impl, failure_demo(5))]
    lines = accuracy_report([impl], props, results)
    assert lines == [
        "--strict [float64] changes nothing here: no property that ran compares "
        "statistics-dependent values (var, x_hat, y, the moments of y, or what is computed from "
        "them), the only bounds --strict tightens"
    ]
    default = accuracy_report([ReferenceImplementation()], props, results)
    assert default == []


# --- flush to zero -----------------------------------------------------------------------------

FTZ = next(e for e in HONEST if e.name == "flush-to-zero")


def test_a_platform_that_flushes_is_noted_and_the_others_are_not() -> None:
    note = flush_note(Functions(FTZ))
    assert note.startswith("note [float64]: flush-to-zero flushes subnormal results to zero")
    assert "2.23e-308" in note
    assert flush_note(ReferenceImplementation()) == ""
    assert flush_note(Functions(WELFORD)) == ""
    impl = Functions(FTZ)
    report = accuracy_report([impl], [by_name("zero-mean-unit-var")], [])
    assert report[1] == note


def test_a_flushed_subnormal_result_passes_where_gradual_underflow_was_required() -> None:
    """y = gamma x_hat with a subnormal exact value: the flushing platform returns 0, off by
    2**-1024, which no ETA-based bound allows and the floor of the smallest normal does."""
    tiny = 2.0**-1022
    case = BatchCase(
        x=np.array([[-2 * tiny], [2 * tiny]]),
        gamma=np.array([0.125]),
        beta=np.zeros(1),
        eps=1.0,
        axis=1,
        dtype="float64",
    )
    y = Functions(FTZ).forward(case.x, case.gamma, case.beta, eps=1.0, axis=1).y
    assert np.all(y == 0)
    for name in ("affine-moments", "identity-params", "forward-accuracy", "layout-equivalence"):
        by_name(name).judge(Functions(FTZ), case)


# --- a forward that is not per-channel batch norm, with its exact backward ----------------------


@pytest.mark.parametrize("name", ["gradients-full", "gradients-fast"])
def test_an_exact_backward_of_a_per_position_forward_passes_the_gradient_checks(name: str) -> None:
    result = run_property(by_name(name), Functions(PER_POSITION), settings())
    assert result.passed, result.failure


def test_the_per_position_forward_fails_as_batch_norm() -> None:
    result = run_property(by_name("zero-mean-unit-var"), Functions(PER_POSITION), AUDIT)
    assert not result.passed
    assert "property 'zero-mean-unit-var' failed for deep-learning-from-scratch" in result.failure


# --- what bnref check reports ----------------------------------------------------------------


def test_bnref_check_names_the_accuracy_class(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--property", "zero-mean-unit-var", "--profile", "dev"]) == 0
    out = capsys.readouterr().out
    assert "accuracy class [float64]: two-pass -- worst var(x_hat) error" in out
    assert "flushes subnormal" not in out


def test_bnref_check_says_when_strict_changes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["check", "--strict", "--property", "inference-formula", "--profile", "dev"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "--strict [float64] changes nothing here" in out
    assert "accuracy class" not in out  # no property that depends on it was selected
