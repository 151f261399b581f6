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

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from properties.adapter import Implementation
from properties.strategies import cast_case, to_code


@dataclass(frozen=True)
class Measurement:
    """One compared quantity: its worst error and the tolerance it must not exceed.

    An exact claim (a count, an index set, "unchanged") uses tolerance 0 and error 0 or 1.
    """

    quantity: str
    error: float
    tolerance: float

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

    def __init__(self, message: str, worst: Measurement | None = None, case: Any = None) -> None:
        super().__init__(message)
        self.worst = worst
        self.case = case


class Unsupported(Exception):  # noqa: N818 -- a capability the target lacks, not an error
    """Raised by an adapter for something its implementation cannot do (e.g. no backward).

    `run_property` reports the property as not applicable instead of failed.
    """


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
        """Run the check on one case; raise `PropertyFailure` naming the worst excess.

        The failure carries a copy of `case` taken before the check ran: an implementation that
        writes into its inputs must not change the example its report replays.
        """
        original = copy.deepcopy(case)
        measurements = list(self.check(impl, case))
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
            )
        return worst

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

    For a failure, `worst` is the measurement of the minimal failing example that broke its
    bound (ratio > 1), or None when the implementation raised instead of returning a result.
    """

    name: str
    examples: int
    worst: Measurement | None
    passed: bool
    failure: str = ""
    not_applicable: str = ""  # why the target cannot be checked for this property, if so
    dtype: str = "float64"  # the precision the implementation computed in
    reproduction: str = ""  # for a failure: Python code that replays the minimal example


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
    arguments).
    """
    seen: list[Measurement] = []
    reason = prop.not_applicable(impl)
    if reason:
        return PropertyResult(prop.name, 0, None, True, not_applicable=reason, dtype=impl.dtype)

    lacks: list[Unsupported] = []
    failed = 0  # examples that failed (a broken bound or an exception)

    def run(case: Any) -> None:
        nonlocal failed
        if lacks:  # not applicable: the remaining examples are not run (nor shrunk)
            return
        try:
            seen.append(prop.judge(impl, case))
        except Unsupported as exc:
            lacks.append(exc)
        except Exception:
            failed += 1
            raise

    strategy = prop.strategy_for(impl)
    run = given(case=strategy)(_named(run, f"{prop.name}_{impl.name}"))
    test = settings(run) if settings is not None else run
    try:
        test()
    except Unsupported as exc:
        return PropertyResult(
            prop.name, len(seen), None, True, not_applicable=str(exc), dtype=impl.dtype
        )
    except Exception as exc:  # any failure of the implementation is a finding, reported
        # Hypothesis re-raises the failure of its final replay of the minimal example, so the
        # numbers and the snippet are those of the example it prints.
        failure = _worst_failure(exc)
        worst = failure.worst if failure is not None else None
        code = ""
        if failure is not None and failure.case is not None:
            code = reproduction_code(prop.name, failure.case, impl, impl_code)
        examples = len(seen) + failed
        return PropertyResult(
            prop.name, examples, worst, False, _describe(exc), dtype=impl.dtype, reproduction=code
        )
    if lacks:
        return PropertyResult(
            prop.name, len(seen), None, True, not_applicable=str(lacks[0]), dtype=impl.dtype
        )
    worst = max(seen, key=lambda m: m.ratio, default=None)
    return PropertyResult(prop.name, len(seen), worst, True, dtype=impl.dtype)


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
    prop_name: str, case: Any, impl: Implementation, impl_code: str | None = None
) -> str:
    """A snippet to paste into Python that replays `case` on `impl` for property `prop_name`.

    Each top-level field of the case becomes a variable (x, gamma, beta, eps, axis, ...), a
    batch case also shows the forward call, and the last line re-runs the check, which raises
    the same PropertyFailure with the same numbers.
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
    if {"x", "gamma", "beta", "eps", "axis"} <= {f.name for f in dataclasses.fields(case)}:
        # copies: a target that writes into its inputs would otherwise change `case`
        forward = "impl.forward(x.copy(), gamma.copy(), beta.copy(), eps=eps, axis=axis)"
        lines.append(f"y, mean, var = {forward}")
    lines.append(f"by_name({prop_name!r}).judge(impl, case)  # raises PropertyFailure")
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
    if isinstance(exc, BaseExceptionGroup):
        parts = [_describe(sub) for sub in exc.exceptions]
        return f"{len(parts)} distinct failures:\n\n" + "\n\n".join(parts)
    # Since Python 3.11 format_exception_only appends the exception's __notes__ (where Hypothesis
    # puts the falsifying example and the reproduce_failure line): they are not added again.
    # https://docs.python.org/3/library/traceback.html#traceback.format_exception_only
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
