"""The judging machinery: `compare`'s ratio at the edges of the float range, the case
classes printing as the Python that rebuilds them, and `run_property` on implementations that
raise, stop, hide state or change NumPy's error state."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.vendor.pretty import pretty

from bnref.cli import failure_groups, format_table
from bnref.targets.user_target import UserTarget
from properties.adapter import Array, ForwardOutput, ReferenceImplementation
from properties.batchnorm_props import PermutedCase, ShiftScaleCase
from properties.checks import compare
from properties.framework import (
    Check,
    Measurement,
    Property,
    PropertyResult,
    TargetStopped,
    run_property,
)
from properties.profiles import failure_demo
from properties.registry import by_name
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


# --- run_property on implementations that raise, stop, hide state or touch NumPy's state --


NO_SHRINK = failure_demo(30)


class _Raising(ReferenceImplementation):
    """forward raises, as a user's code might."""

    @property
    def name(self) -> str:
        return "raising"

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        raise FloatingPointError("overflow in the variance")


def test_an_exception_comes_with_a_snippet_that_raises_it_again() -> None:
    result = run_property(by_name("identity-params"), _Raising(), NO_SHRINK)
    assert not result.passed
    assert "FloatingPointError: overflow in the variance" in result.failure
    code = result.reproduction
    assert code.rstrip().endswith("# raises FloatingPointError")
    assert "@reproduce_failure" not in result.failure
    with pytest.raises(FloatingPointError, match=r"^overflow in the variance$"):
        exec(code, {})  # the snippet bnref prints, run as a user would


class _FirstCallDiffers(ReferenceImplementation):
    """Hidden state: the first call on an input returns a wrong y, later calls the right one."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[bytes] = set()

    @property
    def name(self) -> str:
        return "first-call-differs"

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        out = super().forward(x, gamma, beta, eps=eps, axis=axis)
        key = x.tobytes() + gamma.tobytes() + beta.tobytes()
        if key in self.seen:
            return out
        self.seen.add(key)
        return ForwardOutput(2 * out.y + 1, out.mean, out.var)


def test_nondeterminism_is_reported_as_such_with_a_two_call_snippet() -> None:
    result = run_property(by_name("zero-mean-unit-var"), _FirstCallDiffers(), failure_demo(20))
    assert not result.passed
    assert result.failure.startswith("the same input gave different results on two calls")
    assert "failed for first-call-differs" in result.failure  # the failure, as first seen
    assert "1 distinct failures" not in result.failure
    assert "for call in (1, 2):" in result.reproduction
    assert "forward gave the same output on both calls" in result.reproduction


class _StopsOnThirdCall(ReferenceImplementation):
    """A worker that ends on the third call (as `bnref.isolation` reports an exit)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    @property
    def name(self) -> str:
        return "stops"

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        self.calls += 1
        if self.calls == 3:
            raise TargetStopped("target stops exited with status 0 while computing forward")
        return super().forward(x, gamma, beta, eps=eps, axis=axis)


def test_a_stopped_target_fails_at_once_on_the_example_it_was_given() -> None:
    """TargetStopped ends the run: no shrinking, no replay (each would restart the target or
    wait out the time limit); the report has the message, the example and a snippet."""
    impl = _StopsOnThirdCall()
    result = run_property(by_name("zero-mean-unit-var"), impl, settings(max_examples=40))
    assert not result.passed
    assert impl.calls == 3
    assert result.examples == 3
    assert result.worst is None
    assert result.failure.startswith("target stops exited with status 0 while computing forward")
    assert "The example it was given (as generated: not shrunk" in result.failure
    assert "BatchCase(x=np.array(" in result.failure
    assert result.reproduction.rstrip().endswith("# raises TargetStopped")


def _raising_forward(*args: object) -> Array:
    raise FloatingPointError(f"overflow in forward of {len(args)} arguments")


@pytest.mark.parametrize(
    ("name", "lacks"),
    [
        ("gradients-full", "lacks backward"),
        ("gradients-fast", "lacks backward"),
        ("inference-equals-training", "lacks inference"),
        ("running-stats-formula", "lacks update_running_stats"),
    ],
)
def test_functions_not_given_are_not_applicable_whatever_forward_does(
    name: str, lacks: str
) -> None:
    """The stand-in answers: the property needs a function the target lacks."""
    impl = UserTarget(_raising_forward, convention="keras")
    result = run_property(by_name(name), impl, NO_SHRINK)
    assert result.passed
    assert lacks in result.not_applicable
    assert result.examples == 0


def test_bnref_checks_keep_their_own_numpy_error_state() -> None:
    """A process left with np.seterr(all="raise") (by a target's import, say): case generation
    and checks still run under NumPy's defaults."""
    with np.errstate(all="raise"):
        for name in ("zero-mean-unit-var", "scale-invariance", "gradients-fast"):
            result = run_property(by_name(name), ReferenceImplementation(), NO_SHRINK)
            assert result.passed, result.failure
        assert np.geterr()["under"] == "raise"  # the caller's state is the caller's again


# --- how bad, what it is: the worst over all examples, teeth, groups ------------------------


def test_compare_has_teeth_only_where_a_tolerance_is_below_the_quantity() -> None:
    """A comparison has teeth when some element's tolerance is 0 or below the magnitude
    compared (|want|, or `scale`): a bound as large as the value could not have failed."""
    want = np.array([0.5, 1.0])
    assert not compare("q", want, want, 3.57).teeth  # a variance <= 1 against 3.57
    assert compare("q", want, want, np.array([3.57, 0.1])).teeth  # the second element bites
    assert compare("q", want, want, 0.0).teeth  # an exact claim
    assert not compare("q", np.zeros(2), np.zeros(2), 1e-15).teeth  # 0 vs 0: an answer of 0
    assert compare("q", np.zeros(2), np.zeros(2), 1e-15, scale=1.0).teeth  # of size 1
    assert not compare("q", np.zeros(0), np.zeros(0), 0.0).teeth  # nothing compared


class _Abs:
    """A stand-in implementation: only its name and dtype are read by the runner."""

    name = "abs"
    dtype = "float64"


@dataclass(frozen=True)
class _Value:
    """A toy property's case: one number."""

    x: float


def _toy(name: str, check: Check) -> Property:
    return Property(name, "a toy claim", st.builds(_Value, st.floats(0, 1e6)), check)


def _run(prop: Property, examples: int) -> PropertyResult:
    # _Abs is a toy with only the methods the toy claims call, not a whole Implementation.
    return run_property(prop, _Abs(), settings(max_examples=examples, database=None))  # type: ignore[arg-type]


def _over_one(_impl: object, case: _Value) -> list[Measurement]:
    return [Measurement("x", case.x, 1.0)]


def _vacuous(_impl: object, _case: _Value) -> list[Measurement]:
    return [Measurement("v", 0.3, 3.57, teeth=False)]


def _partly_vacuous(_impl: object, _case: _Value) -> list[Measurement]:
    return [Measurement("v", 0.3, 3.57, teeth=False), Measurement("w", 0.0, 0.0)]


def _raises(_impl: object, _case: _Value) -> list[Measurement]:
    raise ValueError("the target's variance is negative")


def _over(factor: float) -> Check:
    def check(_impl: object, case: _Value) -> list[Measurement]:
        return [Measurement("var of y (details)", factor * (1 + case.x), 1.0)]

    return check


def test_a_failed_row_shows_the_worst_ratio_over_all_examples_and_the_minimal_apart() -> None:
    """error = x against tolerance 1: Hypothesis shrinks to x just above 1 (ratio ~1), but the
    examples it ran reached ratios far above; `worst` is the largest, `minimal` the shrunk."""
    result = _run(_toy("toy-abs", _over_one), 50)
    assert result.status == "fail"
    assert result.worst is not None
    assert result.minimal is not None
    assert result.minimal.ratio <= 2  # the minimal example only just fails (x = 2 here)
    assert result.worst.ratio > 100 * result.minimal.ratio
    assert result.cause == "x out of bounds"
    row = format_table([result]).splitlines()[2].split()
    assert float(row[5]) == pytest.approx(result.worst.ratio, rel=1e-2)


def test_a_property_whose_comparisons_all_lack_teeth_is_inconclusive() -> None:
    """Nothing exceeded a bound, but nothing could have: inconclusive, not pass; one
    comparison with teeth in each example makes it a pass, and the row shows that one."""
    result = _run(_toy("toy-vacuous", _vacuous), 20)
    assert (result.passed, result.inconclusive, result.status) == (True, True, "inconclusive")
    assert (result.with_teeth, result.comparisons) == (0, 20)
    assert "0/20" in format_table([result])
    result = _run(_toy("toy-some", _partly_vacuous), 20)
    assert (result.status, result.with_teeth, result.comparisons) == ("pass", 20, 40)
    assert result.worst == Measurement("w", 0.0, 0.0)


def test_failures_sharing_a_root_cause_are_grouped() -> None:
    """The same failing quantity, or the same exception type and message, is one group,
    whatever property failed; within a group the worst excess comes first."""
    props = [_toy("a", _over(2.0)), _toy("b", _raises), _toy("c", _over(5.0)), _toy("d", _raises)]
    groups = failure_groups([_run(prop, 10) for prop in props])
    assert [[r.name for r in g] for g in groups] == [["c", "a"], ["b", "d"]]
    assert groups[0][0].cause == "var of y out of bounds"
    assert groups[1][0].cause == "ValueError: the target's variance is negative"
