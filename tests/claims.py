"""Measured claims for the tests of the reference's own machinery (layers, network, dropout,
optimizers, schedules, search, splits, sharded and ghost batch norm).

A check returns `Measurement`s (`properties.framework`): a named error next to the tolerance it
must not exceed. `assert_holds` judges them as `Property.judge` does: at least one quantity is
measured, and every error is within its tolerance (error <= tolerance; a NaN error never is);
`broken` says whether they fail so. `exact` states an exact claim (tolerance 0, error 0 or 1).
`falsified` runs a check of a deliberately broken function over a strategy and returns the
failure: the test of a planted mistake asserts that it is caught, and by which quantity.
`decades` draws magnitudes spread over powers of ten, as several of the checks' cases do.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from typing import Any

from hypothesis import given
from hypothesis import settings as Settings  # noqa: N812 -- the class, not an instance
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

from properties.framework import Measurement


def decades(low_exp: int, high_exp: int) -> st.SearchStrategy[float]:
    """m * 10**e with m in [1, 10) and integer e in [low_exp, high_exp]."""
    return st.builds(
        lambda m, e: m * 10.0**e,
        st.floats(1.0, 10.0, exclude_max=True),
        st.integers(low_exp, high_exp),
    )


def exact(quantity: str, holds: bool) -> Measurement:
    """An exact claim: error 0 if it holds, 1 if not, against tolerance 0."""
    return Measurement(quantity, 0.0 if holds else 1.0, 0.0)


def broken(measurements: Sequence[Measurement]) -> bool:
    """Whether the measurements break their claim: nothing measured, or an error beyond its
    tolerance (what `assert_holds` rejects)."""
    return not measurements or not all(m.passed for m in measurements)


def assert_holds(measurements: Sequence[Measurement]) -> None:
    """Every measurement within its tolerance; AssertionError naming each excess otherwise."""
    measured = list(measurements)
    if not measured:
        raise AssertionError("the check measured nothing")
    failed = [m for m in measured if not m.passed]
    if failed:
        raise AssertionError(
            "\n".join(
                f"{m.quantity}: error {m.error:.3e} > tolerance {m.tolerance:.3e}" for m in failed
            )
        )


def falsified(
    claim: Callable[[Any], object],
    strategy: st.SearchStrategy[Any],
    settings: Settings,
) -> str:
    """The failure text of `claim` on the examples of `strategy` under `settings`.

    `claim` raises (an AssertionError of `assert_holds`, or whatever the broken function raises)
    on a falsifying example; the text is the exception with Hypothesis's notes (the falsifying
    example), every one of several distinct failures. No example database is read or written:
    whether a planted mistake is caught depends on the strategy and the settings alone.
    AssertionError if the claim holds on every example.
    """

    def falsify(case: Any) -> None:
        claim(case)

    test = Settings(settings, database=None)(given(case=strategy)(falsify))
    try:
        test()
    except HypothesisException:
        raise  # Unsatisfiable and the like: no example falsified the claim
    except Exception as exc:  # the planted mistake, caught: an excess or an exception
        return _describe(exc)
    raise AssertionError("the claim held on every example: the planted mistake went unnoticed")


def _describe(exc: BaseException) -> str:
    """The exception's text with its notes; each member of an exception group, joined."""
    if isinstance(exc, BaseExceptionGroup):
        return "\n\n".join(_describe(sub) for sub in exc.exceptions)
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()
