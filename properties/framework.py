"""What a property is, how one example is judged, and how a property is run under Hypothesis.

A `Property` pairs a Hypothesis strategy (the cases) with a check. The check takes an
implementation and one case and returns `Measurement`s: a named error next to the tolerance it
must stay within, with the tolerance's reason. The same objects serve pytest (`as_test`) and the
`bnref check` table (`run_property`), so the two can never disagree.

An implementation computing in float32 or float16 (`impl.dtype`) is given cases whose inputs are
representable in its dtype (`Property.strategy_for`); the checks take their unit roundoff from
it. A property that cannot be stated there (`Property.float64_only`) is not applicable. A
failure comes with `reproduction_code`: the minimal example as Python to paste.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyFailure

from properties.adapter import Implementation
from properties.strategies import cast_case, to_code


@dataclass(frozen=True)
class Measurement:
    """One compared quantity: its worst error and the tolerance it must not exceed.

    An exact claim (a count, an index set, "unchanged") uses tolerance 0 and error 0 or 1.

    `teeth` says whether the comparison could have failed: an exact claim, or a tolerance
    smaller than the magnitude of the quantity compared somewhere (so that an answer of 0
    would break it). A comparison without teeth is counted, not trusted: a property whose
    every comparison lacks teeth is reported inconclusive, not passed.
    """

    quantity: str
    error: float
    tolerance: float
    teeth: bool = True

    @property
    def ratio(self) -> float:
        """error / tolerance; <= 1 passes. An exact claim's ratio is 0 or infinity."""
        if self.tolerance > 0:
            return self.error / self.tolerance
        return 0.0 if self.error == 0 else math.inf

    @property
    def passed(self) -> bool:
        """Whether the error is within tolerance (a NaN error never passes)."""
        return not math.isnan(self.error) and self.error <= self.tolerance


class PropertyFailure(AssertionError):  # noqa: N818 -- a failed claim, not an error
    """A property did not hold; the message names the property, quantity and excess.

    `worst` is the measurement that broke its bound by the largest ratio (None when nothing
    was measured) and `case` the example it broke on, so a report shows the failing numbers,
    not those of the examples that passed.
    """

    def __init__(
        self,
        message: str,
        worst: Measurement | None = None,
        case: Any = None,
        measurements: Sequence[Measurement] = (),
    ) -> None:
        super().__init__(message)
        self.worst = worst
        self.case = case
        self.measurements = tuple(measurements)  # every comparison of the failing example


class Unsupported(Exception):  # noqa: N818 -- a capability the target lacks, not an error
    """Raised by an adapter for something its implementation cannot do (e.g. no backward).

    `run_property` reports the property as not applicable instead of failed.
    """


class TargetStopped(Exception):  # noqa: N818 -- how a call ended, not an error of bnref's
    """A call into the implementation did not finish: the process running it ended (an exit, a
    crash, a signal) or the call ran past its time limit. The message says which, and in which
    method.

    `run_property` fails the property on that example at once, without shrinking it: each
    further try would restart the implementation or wait out the limit.
    """


# The NumPy error state bnref's own work (case generation, checks) runs under: NumPy's
# defaults, whatever the implementation under test did to the process's state.
BNREF_ERRSTATE: dict[str, Any] = {
    "divide": "warn",
    "over": "warn",
    "under": "ignore",
    "invalid": "warn",
}


Check = Callable[[Implementation, Any], Sequence[Measurement]]


def fixed_case_values(impl: Implementation) -> dict[str, object]:
    """The case fields `impl` fixes, from its optional `fixed_case_values` attribute (a mapping
    of field name to value, e.g. {"eps": 1e-3} for a user's function with its own eps)."""
    return dict(getattr(impl, "fixed_case_values", None) or {})


@dataclass(frozen=True)
class Property:
    """A claim about batch norm, checkable against any implementation."""

    name: str
    statement: str
    strategy: st.SearchStrategy[Any]
    check: Check
    tags: frozenset[str] = field(default_factory=frozenset)
    # Why the claim cannot be stated for an implementation computing below float64 (empty: it
    # can, with that dtype's unit roundoff). Such a property is not applicable there, not passed.
    float64_only: str = ""

    def strategy_for(self, impl: Implementation) -> st.SearchStrategy[Any]:
        """The cases for `impl`: inputs representable in its dtype, and the case fields it fixes
        (`fixed_case_values`, e.g. a user's own eps) set to its values."""
        dtype, fixed = impl.dtype, fixed_case_values(impl)
        if dtype == "float64" and not fixed:
            return self.strategy
        return self.strategy.map(lambda case: cast_case(case, dtype, fixed))

    def not_applicable(self, impl: Implementation) -> str:
        """Why `impl` cannot be checked for this property, or "" if it can."""
        if impl.dtype != "float64" and self.float64_only:
            return f"not stated for {impl.dtype}: {self.float64_only}"
        return ""

    def judge(self, impl: Implementation, case: Any) -> Measurement:
        """Run the check on one case; return its worst measurement (the largest ratio), or
        raise `PropertyFailure` naming the worst excess (`measure`)."""
        measurements = self.measure(impl, case)
        return max(measurements, key=lambda m: (math.isnan(m.error), m.ratio))

    def measure(self, impl: Implementation, case: Any) -> list[Measurement]:
        """Run the check on one case and return every comparison it made; raise
        `PropertyFailure` naming the worst excess (with all the comparisons attached).

        The failure carries a copy of `case` taken before the check ran: an implementation that
        writes into its inputs must not change the example its report replays. An exception
        raised by the implementation (or the check) carries that copy too (`case_of`).
        """
        original = copy.deepcopy(case)
        try:
            measurements = list(self.check(impl, case))
        except Unsupported:
            raise
        except Exception as exc:
            if isinstance(exc, PropertyFailure):
                exc.case = original if exc.case is None else exc.case
            elif case_of(exc) is None:
                exc.bnref_case = original  # type: ignore[attr-defined]  # read by case_of
            raise
        if not measurements:
            raise PropertyFailure(f"property {self.name!r} measured nothing", None, original)
        # A NaN error ranks worst: it fails, and its ratio (NaN) compares with nothing.
        worst = max(measurements, key=lambda m: (math.isnan(m.error), m.ratio))
        failed = [m for m in measurements if not m.passed]
        if failed:
            lines = "\n".join(
                f"  {m.quantity}: error {m.error:.3e} > tolerance {m.tolerance:.3e}" for m in failed
            )
            raise PropertyFailure(
                f"property {self.name!r} failed for {impl.name}: {self.statement}\n{lines}",
                worst,
                original,
                measurements,
            )
        return measurements

    def as_test(self, impl: Implementation) -> Callable[[], None]:
        """A Hypothesis test function for pytest, using the active settings profile."""

        reason = self.not_applicable(impl)

        def test(case: Any) -> None:
            if reason:
                raise Unsupported(reason)
            self.judge(impl, case)

        strategy = self.strategy_for(impl)
        return given(case=strategy)(_named(test, f"{self.name}_{impl.name}"))


@dataclass(frozen=True)
class PropertyResult:
    """The outcome of running one property: examples run and the worst measurement seen.

    `worst` is the measurement with the largest ratio over every example run (those Hypothesis
    ran while shrinking a failure included): how bad the target is; for a pass, over the
    comparisons with teeth when there are any (one that could not fail says nothing). For a
    failure, `minimal` is the worst measurement of the minimal failing example, the one the
    snippet replays; both are None when the implementation raised instead of returning a
    result. `comparisons` counts the comparisons made over all examples, `with_teeth` those
    that could have failed (`Measurement.teeth`). `cause` names a failure's root cause (the
    failing quantity, or the exception's type and message) so that a report can print
    failures sharing one once.
    """

    name: str
    examples: int
    worst: Measurement | None
    passed: bool
    failure: str = ""
    not_applicable: str = ""  # why the target cannot be checked for this property, if so
    dtype: str = "float64"  # the precision the implementation computed in
    reproduction: str = ""  # for a failure: Python code that replays the minimal example
    minimal: Measurement | None = None  # for a failure: the minimal example's worst measurement
    comparisons: int = 0
    with_teeth: int = 0
    cause: str = ""

    @property
    def inconclusive(self) -> bool:
        """Passed, but not one of its comparisons could have failed: not a pass."""
        return (
            self.passed and not self.not_applicable and self.comparisons > 0 and not self.with_teeth
        )

    @property
    def status(self) -> str:
        """ "pass", "fail", "n/a" or "inconclusive"."""
        if self.not_applicable:
            return "n/a"
        if not self.passed:
            return "fail"
        return "inconclusive" if self.inconclusive else "pass"


def run_property(
    prop: Property,
    impl: Implementation,
    settings: hypothesis_settings | None = None,
    *,
    impl_code: str | None = None,
) -> PropertyResult:
    """Run `prop` on `impl` under `settings` (default: the loaded profile) and summarise it.

    Every example counts, including those Hypothesis runs while shrinking a failure; the
    failure text is Hypothesis's own report with the minimal falsifying example, and
    `reproduction` is that example as a self-contained Python snippet (`reproduction_code`);
    `impl_code` is the code that builds `impl` in it (default: its class called without
    arguments). Beyond a broken bound:

    * an exception raised by `impl` fails the property, with a snippet that raises it again;
    * a failure that does not recur when Hypothesis replays the same example is reported as
      nondeterminism, with a snippet that runs the example twice;
    * `TargetStopped` (the implementation's process ended, or a call timed out) fails the
      property at once on the example that caused it, unshrunk;
    * if `impl` has a `stand_in` (an implementation with the same capabilities around correct
      functions, `bnref.targets.user_target.UserTarget.stand_in`), the check runs on it first:
      if it is not applicable there, it is not applicable to `impl`, whatever `impl` does.

    Case generation and checks run under NumPy's default error state (`BNREF_ERRSTATE`), not
    whatever state the process was left in.
    """
    seen: list[Measurement] = []  # the worst measurement of each example that passed
    every: list[Measurement] = []  # every comparison of every example, failing ones included
    failing: list[Measurement] = []  # the worst measurement of each example that failed
    reason = prop.not_applicable(impl)
    if reason:
        return PropertyResult(prop.name, 0, None, True, not_applicable=reason, dtype=impl.dtype)

    lacks: list[Unsupported] = []
    stopped: list[TargetStopped] = []
    stand_in: Implementation | None = getattr(impl, "stand_in", None)
    failed = 0  # examples that failed (a broken bound or an exception)

    def run(case: Any) -> None:
        nonlocal failed, stand_in
        if lacks or stopped:  # not applicable, or stopped: the remaining examples are not run
            return
        if stand_in is not None:  # once: is the property applicable to these capabilities?
            probe, stand_in = stand_in, None
            lacking = _lacks(prop, probe, case)
            if lacking is not None:
                lacks.append(lacking)
                return
        try:
            measurements = prop.measure(impl, case)
        except Unsupported as exc:
            lacks.append(exc)
        except TargetStopped as exc:  # ends the run: neither shrunk nor replayed, since each
            stopped.append(exc)  # try would restart the target or wait out the time limit
        except PropertyFailure as exc:
            failed += 1
            every.extend(exc.measurements)
            if exc.worst is not None:
                failing.append(exc.worst)
            raise
        except Exception:
            failed += 1
            raise
        else:
            every.extend(measurements)
            seen.append(max(measurements, key=lambda m: (math.isnan(m.error), m.ratio)))

    strategy = prop.strategy_for(impl)
    run = given(case=strategy)(_named(run, f"{prop.name}_{impl.name}"))
    test = settings(run) if settings is not None else run
    try:
        with np.errstate(**BNREF_ERRSTATE):
            test()
    except Unsupported as exc:
        return PropertyResult(
            prop.name, len(seen), None, True, not_applicable=str(exc), dtype=impl.dtype
        )
    except Exception as exc:  # any failure of the implementation is a finding, reported
        return _counted(_failed(prop, impl, exc, len(seen) + failed, impl_code), every, failing)
    if stopped:
        result = _stopped(prop, impl, stopped[0], len(seen) + failed + 1, impl_code)
        return _counted(result, every, failing)
    if lacks:
        return PropertyResult(
            prop.name, len(seen), None, True, not_applicable=str(lacks[0]), dtype=impl.dtype
        )
    worst = max(seen, key=lambda m: m.ratio, default=None)
    return _counted(PropertyResult(prop.name, len(seen), worst, True, dtype=impl.dtype), every, [])


def _counted(
    result: PropertyResult, every: Sequence[Measurement], failing: Sequence[Measurement]
) -> PropertyResult:
    """`result` with its teeth counts over `every` comparison made and, for a failure, the
    worst measurement over all examples (the failing ones' worst measurements `failing`, which
    exceed any passing example's) beside the minimal example's."""
    if result.passed:  # the worst comparison that could have failed, if any could
        bitten = [m for m in every if m.teeth]
        worst = max(bitten, key=lambda m: m.ratio) if bitten else result.worst
        minimal = None
    else:
        worst = max(failing, key=_excess) if failing else result.worst
        minimal = result.worst
    return dataclasses.replace(
        result,
        worst=worst,
        minimal=minimal,
        comparisons=len(every),
        with_teeth=sum(m.teeth for m in every),
    )


def _lacks(prop: Property, stand_in: Implementation, case: Any) -> Unsupported | None:
    """The Unsupported that `prop`'s check raises on `stand_in` for `case`, or None.

    Anything else the check raises or returns is not the question asked here."""
    try:
        prop.check(stand_in, copy.deepcopy(case))
    except Unsupported as exc:
        return exc
    except Exception:  # only Unsupported answers the question
        return None
    return None


def _failed(
    prop: Property,
    impl: Implementation,
    exc: Exception,
    examples: int,
    impl_code: str | None,
) -> PropertyResult:
    """The result of a run that Hypothesis ended with `exc`.

    Hypothesis re-raises the failure of its final replay of the minimal example, so the numbers
    and the snippet are those of the example it prints. A FlakyFailure (the example failed,
    then passed on its replay) is reported as nondeterminism.
    """
    measured = _worst_failure(exc)
    worst = measured.worst if measured is not None else None
    flaky = isinstance(exc, FlakyFailure)
    replayed = _replayed(exc)
    code = ""
    if replayed is not None:
        raises = type(replayed).__name__
        code = reproduction_code(
            prop.name, case_of(replayed), impl, impl_code, raises=raises, twice=flaky
        )
    text = _describe(exc)
    if flaky:
        text = (
            "the same input gave different results on two calls: this example failed, then "
            "passed when Hypothesis ran it again (the result depends on hidden state, the order "
            f"of calls or chance):\n\n{text}"
        )
    cause = _cause(exc, worst)
    if flaky:
        cause = f"nondeterministic: {cause}"
    return PropertyResult(
        prop.name, examples, worst, False, text, dtype=impl.dtype, reproduction=code, cause=cause
    )


def _cause(exc: BaseException, worst: Measurement | None) -> str:
    """The root cause of a failure, the same for failures that share one: the failing quantity
    (without the details in parentheses or after a comma, which differ between examples), or
    the first exception's type and the first line of its message."""
    if worst is not None:
        return f"{worst.quantity.split(' (')[0].split(', ')[0]} out of bounds"
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    message = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {message[0]}" if message else type(exc).__name__


def _stopped(
    prop: Property, impl: Implementation, exc: TargetStopped, examples: int, impl_code: str | None
) -> PropertyResult:
    """The failure of a run that `exc` stopped: its message and the example, as it was run."""
    case = case_of(exc)
    text = str(exc)
    code = ""
    if case is not None:
        text += (
            "\nThe example it was given (as generated: not shrunk, since each try would restart "
            f"the target or wait out the time limit):\n{case!r}"
        )
        code = reproduction_code(prop.name, case, impl, impl_code, raises="TargetStopped")
    lines = str(exc).strip().splitlines()
    cause = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return PropertyResult(
        prop.name, examples, None, False, text, dtype=impl.dtype, reproduction=code, cause=cause
    )


def case_of(exc: BaseException) -> Any:
    """The example `exc` was raised on (a copy taken before the check), or None if unknown."""
    if isinstance(exc, PropertyFailure):
        return exc.case
    return getattr(exc, "bnref_case", None)


def _replayed(exc: BaseException) -> BaseException | None:
    """The failure in `exc` that a snippet should replay: the one with the largest excess among
    broken bounds, else the first exception that knows its example; None if none does."""
    measured = _worst_failure(exc)
    if measured is not None and measured.case is not None:
        return measured
    if isinstance(exc, BaseExceptionGroup):
        found = (_replayed(sub) for sub in exc.exceptions)
        return next((f for f in found if f is not None), None)
    return exc if case_of(exc) is not None else None


def _worst_failure(exc: BaseException) -> PropertyFailure | None:
    """The PropertyFailure in `exc` (one of several distinct failures Hypothesis grouped, the
    one with the largest excess), or None if the implementation raised something else."""
    if isinstance(exc, BaseExceptionGroup):
        found = [f for f in map(_worst_failure, exc.exceptions) if f is not None]
        measured = [f for f in found if f.worst is not None]
        if measured:
            return max(measured, key=lambda f: _excess(f.worst))
        return found[0] if found else None
    return exc if isinstance(exc, PropertyFailure) else None


def _excess(m: Measurement | None) -> tuple[bool, float]:
    """The order of failed measurements: a NaN error first, then by ratio."""
    return (m is not None and math.isnan(m.error), m.ratio if m is not None else -math.inf)


def reproduction_code(
    prop_name: str,
    case: Any,
    impl: Implementation,
    impl_code: str | None = None,
    *,
    raises: str = "PropertyFailure",
    twice: bool = False,
) -> str:
    """A snippet to paste into Python that replays `case` on `impl` for property `prop_name`.

    Each top-level field of the case becomes a variable (x, gamma, beta, eps, axis, ...), a
    batch case also shows the forward call, and the last line re-runs the check, which raises
    the same PropertyFailure with the same numbers (or `raises`, the exception the audit saw).
    With `twice` (a failure that did not recur), the check runs twice and prints each outcome,
    and a batch case's forward is called twice and its outputs compared.
    """
    imports: set[str] = {"import numpy as np", "from properties.registry import by_name"}
    lines = []
    for f in dataclasses.fields(case):
        lines.append(f"{f.name} = {to_code(getattr(case, f.name), imports)}")
    cls = type(case)
    imports.add(f"from {cls.__module__} import {cls.__qualname__}")
    names = ", ".join(f"{f.name}={f.name}" for f in dataclasses.fields(case))
    lines.append(f"case = {cls.__qualname__}({names})")
    if impl_code is None:
        kind = type(impl)
        impl_code = (
            f"from {kind.__module__} import {kind.__qualname__}\nimpl = {kind.__qualname__}()"
        )
    lines += impl_code.splitlines()
    batch = {"x", "gamma", "beta", "eps", "axis"} <= {f.name for f in dataclasses.fields(case)}
    # copies: a target that writes into its inputs would otherwise change `case`
    forward = "impl.forward(x.copy(), gamma.copy(), beta.copy(), eps=eps, axis=axis)"
    if twice:
        if batch:
            lines += [
                f"first, second = {forward}, {forward}",
                "same = all(np.array_equal(a, b, equal_nan=True) for a, b in zip(first, second))",
                'print("forward gave the same output on both calls:", same)',
            ]
        lines += [
            "for call in (1, 2):  # the same example, checked twice",
            "    try:",
            f"        by_name({prop_name!r}).judge(impl, case)",
            '        print(f"check {call}: passed")',
            "    except Exception as exc:",
            '        print(f"check {call}: {type(exc).__name__}: {exc}")',
        ]
    else:
        if batch:
            lines.append(f"y, mean, var = {forward}")
        lines.append(f"by_name({prop_name!r}).judge(impl, case)  # raises {raises}")
    header = [f"# Reproduce {prop_name} on {impl.name} (bnref installed or on sys.path):"]
    ordered = sorted(imports, key=lambda line: (not line.startswith("import "), line))
    return "\n".join([*header, *ordered, "", *lines])


def _named(fn: Callable[[Any], None], name: str) -> Callable[[Any], None]:
    """Give a generated test its property's name: Hypothesis keys its example database by the
    function's name, so each property replays its own failures, not another's."""
    identifier = "".join(c if c.isalnum() else "_" for c in name)  # must be an identifier
    fn.__name__ = fn.__qualname__ = f"property_{identifier}"
    return fn


def _describe(exc: BaseException) -> str:
    """The failure text, with the falsifying example Hypothesis attached as notes.

    Hypothesis raises an ExceptionGroup when it finds several distinct failures; each one is
    described, so the message names every broken quantity.
    """
    if isinstance(exc, FlakyFailure):  # one failure that did not recur: it, and its example
        parts = [_describe(sub) for sub in exc.exceptions]
        return "\n\n".join([*parts, *_notes(exc)])
    if isinstance(exc, BaseExceptionGroup):
        parts = [_describe(sub) for sub in exc.exceptions]
        return f"{len(parts)} distinct failures:\n\n" + "\n\n".join(parts)
    # The exception's __notes__ (where Hypothesis puts the falsifying example) follow its
    # message, as format_exception_only prints them since Python 3.11, less those `_notes` drops.
    # https://docs.python.org/3/library/traceback.html#traceback.TracebackException.__notes__
    formatted = traceback.TracebackException(type(exc), exc, None)
    formatted.__notes__ = _notes(exc)
    return "".join(formatted.format_exception_only()).strip()


def _notes(exc: BaseException) -> list[str]:
    """The notes of `exc` a bnref user can act on: without Hypothesis's advice to decorate
    bnref's internal test function with @reproduce_failure(...) (the snippet replays the
    example instead), and without tracebacks of bnref's internals."""
    notes = getattr(exc, "__notes__", None) or []
    return [
        n
        for n in notes
        if isinstance(n, str) and "@reproduce_failure(" not in n and "Traceback (most" not in n
    ]
