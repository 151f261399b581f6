"""What a property is, how one example is judged, and how a property is run under Hypothesis.

A `Property` pairs a Hypothesis strategy (the cases) with a check. The check takes an
implementation and one case and returns `Measurement`s: a named error next to the tolerance it
must stay within, with the tolerance's reason. The same objects serve pytest (`as_test`) and the
`bnref check` table (`run_property`), so the two can never disagree.
"""

from __future__ import annotations

import math
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from properties.adapter import Implementation


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
    """A property did not hold; the message names the property, quantity and excess."""


class Unsupported(Exception):  # noqa: N818 -- a capability the target lacks, not an error
    """Raised by an adapter for something its implementation cannot do (e.g. no backward).

    `run_property` reports the property as not applicable instead of failed.
    """


Check = Callable[[Implementation, Any], Sequence[Measurement]]


@dataclass(frozen=True)
class Property:
    """A claim about batch norm, checkable against any implementation."""

    name: str
    statement: str
    strategy: st.SearchStrategy[Any]
    check: Check
    tags: frozenset[str] = field(default_factory=frozenset)

    def judge(self, impl: Implementation, case: Any) -> Measurement:
        """Run the check on one case; raise `PropertyFailure` naming the worst excess."""
        measurements = list(self.check(impl, case))
        if not measurements:
            raise PropertyFailure(f"property {self.name!r} measured nothing")
        worst = max(measurements, key=lambda m: (math.isnan(m.error), m.ratio))
        failed = [m for m in measurements if not m.passed]
        if failed:
            lines = "\n".join(
                f"  {m.quantity}: error {m.error:.3e} > tolerance {m.tolerance:.3e}" for m in failed
            )
            raise PropertyFailure(
                f"property {self.name!r} failed for {impl.name}: {self.statement}\n{lines}"
            )
        return worst

    def as_test(self, impl: Implementation) -> Callable[[], None]:
        """A Hypothesis test function for pytest, using the active settings profile."""

        def test(case: Any) -> None:
            self.judge(impl, case)

        return given(case=self.strategy)(_named(test, f"{self.name}_{impl.name}"))


@dataclass(frozen=True)
class PropertyResult:
    """The outcome of running one property: examples run and the worst measurement seen."""

    name: str
    examples: int
    worst: Measurement | None
    passed: bool
    failure: str = ""
    not_applicable: str = ""  # why the target cannot be checked for this property, if so


def run_property(
    prop: Property, impl: Implementation, settings: hypothesis_settings | None = None
) -> PropertyResult:
    """Run `prop` on `impl` under `settings` (default: the loaded profile) and summarise it.

    Every example counts, including those Hypothesis runs while shrinking a failure; the
    failure text is Hypothesis's own report with the minimal falsifying example.
    """
    seen: list[Measurement] = []

    def run(case: Any) -> None:
        try:
            seen.append(prop.judge(impl, case))
        except PropertyFailure:
            seen.append(Measurement("failure", math.inf, 0.0))
            raise

    run = given(case=prop.strategy)(_named(run, f"{prop.name}_{impl.name}"))
    test = settings(run) if settings is not None else run
    try:
        test()
    except Unsupported as exc:
        return PropertyResult(prop.name, len(seen), None, True, not_applicable=str(exc))
    except Exception as exc:  # any failure of the implementation is a finding, reported
        worst = max(
            (m for m in seen if math.isfinite(m.error)), key=lambda m: m.ratio, default=None
        )
        return PropertyResult(prop.name, len(seen), worst, False, _describe(exc))
    worst = max(seen, key=lambda m: m.ratio, default=None)
    return PropertyResult(prop.name, len(seen), worst, True)


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
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    notes = "\n".join(getattr(exc, "__notes__", []))
    return f"{text}\n{notes}".strip()
