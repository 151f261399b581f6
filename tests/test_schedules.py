"""Learning-rate decay: the course's functions, hand values, the staircase, every rejection, and
the schedules against their exact rational values, with the broken schedules that claim catches.

The course's ``update_lr`` and ``schedule_lr_decay`` (Deep Learning Specialization, course 2,
"Optimization Methods") are kept below as source text and run with exec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import numpy as np
import pytest
from claims import assert_holds, decades, exact
from hypothesis import given
from hypothesis import strategies as st

from properties.checks import compare
from properties.framework import Measurement
from properties.tolerances import SAFETY, U64
from reference.schedules import (
    inverse_time_decay,
    schedule_lr_decay,
    stepped_inverse_time_decay,
    update_lr,
)

COURSE_SOURCE = """\
def update_lr(learning_rate0, epoch_num, decay_rate):
    learning_rate = 1/(1 + decay_rate*epoch_num)*learning_rate0
    return learning_rate

def schedule_lr_decay(learning_rate0, epoch_num, decay_rate, time_interval=1000):
    learning_rate = 1/(1 + decay_rate*np.floor(epoch_num/time_interval))*learning_rate0
    return learning_rate
"""
COURSE: dict[str, Any] = {"np": np}
exec(COURSE_SOURCE, COURSE)  # the course's functions, kept as written

# Each side rounds 3 times (product, sum, then division or reciprocal and product), so each is
# within 3u of the exact value and the two within 6u, relative; SAFETY = 2 on top.
COURSE_RTOL = 2 * 6 * U64


@pytest.mark.parametrize("lr0", [0.5, 0.0007, 1.0, 3e-5])
@pytest.mark.parametrize("decay_rate", [0.0, 0.3, 1.0, 7.5e-3])
def test_agrees_with_the_course(lr0: float, decay_rate: float) -> None:
    for epoch in [0, 1, 2, 99, 100, 101, 999, 1000, 1001, 12_345, 10**6]:
        for interval in (1, 100, 1000):
            want = COURSE["schedule_lr_decay"](lr0, epoch, decay_rate, interval)
            got = stepped_inverse_time_decay(lr0, epoch, decay_rate, interval)
            np.testing.assert_allclose(got, want, rtol=COURSE_RTOL, atol=0)
            assert schedule_lr_decay(lr0, epoch, decay_rate, interval) == got
        want = COURSE["update_lr"](lr0, epoch, decay_rate)
        np.testing.assert_allclose(
            inverse_time_decay(lr0, epoch, decay_rate), want, rtol=COURSE_RTOL
        )
        assert update_lr(lr0, epoch, decay_rate) == inverse_time_decay(lr0, epoch, decay_rate)


def test_hand_values() -> None:
    # The course notebook's examples: 0.5 / (1 + 1 * 2); 0.5 / (1 + 0.3 * floor(10 / 100)) and
    # 0.5 / (1 + 0.3 * floor(100 / 100)) = 0.5 / 1.3.
    assert update_lr(0.5, 2, 1) == 0.5 / 3
    assert schedule_lr_decay(0.5, 10, 0.3, 100) == 0.5
    assert schedule_lr_decay(0.5, 100, 0.3, 100) == 0.5 / 1.3
    assert inverse_time_decay(1.0, 4, 0.25) == 0.5  # 1 / (1 + 1), exact


def test_staircase() -> None:
    lrs = [stepped_inverse_time_decay(0.1, e, 1.0) for e in range(3001)]  # time_interval 1000
    assert set(lrs[:1000]) == {0.1}
    assert set(lrs[1000:2000]) == {0.1 / 2}
    assert set(lrs[2000:3000]) == {0.1 / 3}
    assert lrs[3000] == 0.1 / 4


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"learning_rate0": 0.0}, ValueError, r"^learning_rate0 must be a finite number > 0"),
        ({"learning_rate0": -1.0}, ValueError, r"^learning_rate0 must"),
        ({"learning_rate0": float("nan")}, ValueError, r"^learning_rate0 must"),
        ({"learning_rate0": float("inf")}, ValueError, r"^learning_rate0 must"),
        ({"learning_rate0": "0.1"}, TypeError, r"^learning_rate0 must"),
        ({"epoch_num": -1}, ValueError, r"^epoch_num must be an integer >= 0, got -1"),
        ({"epoch_num": 1.5}, TypeError, r"^epoch_num must be an integer, got float"),
        ({"epoch_num": True}, TypeError, r"^epoch_num must be an integer, got bool"),
        ({"decay_rate": -0.1}, ValueError, r"^decay_rate must be a finite number >= 0, got -0.1"),
        ({"decay_rate": float("nan")}, ValueError, r"^decay_rate must"),
        ({"decay_rate": float("inf")}, ValueError, r"^decay_rate must"),
        ({"decay_rate": None}, TypeError, r"^decay_rate must be a real number"),
    ],
)
def test_rejections(kwargs: dict[str, Any], error: type[Exception], match: str) -> None:
    args = {"learning_rate0": 0.1, "epoch_num": 3, "decay_rate": 0.5, **kwargs}
    with pytest.raises(error, match=match):
        inverse_time_decay(**args)
    with pytest.raises(error, match=match):
        stepped_inverse_time_decay(**args, time_interval=10)
    with pytest.raises(error, match=match):
        update_lr(**args)
    with pytest.raises(error, match=match):
        schedule_lr_decay(**args)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (0, ValueError, r"^time_interval must be an integer >= 1, got 0"),
        (-5, ValueError, r"^time_interval must be an integer >= 1"),
        (2.0, TypeError, r"^time_interval must be an integer, got float"),
    ],
)
def test_rejects_time_interval(value: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        stepped_inverse_time_decay(0.1, 3, 0.5, value)


# --- the schedules are their formulas, and what that claim catches ---------------------------


class Schedule(Protocol):
    """A decay schedule under test: (learning_rate0, epoch_num, decay_rate[, time_interval])."""

    def __call__(self, learning_rate0: float, epoch_num: int, decay_rate: float, /) -> float: ...


class SteppedSchedule(Protocol):
    """The stepped schedule under test."""

    def __call__(
        self, learning_rate0: float, epoch_num: int, decay_rate: float, time_interval: int, /
    ) -> float: ...


@dataclass(frozen=True)
class DecayCase:
    """lr0, the decay rate, an epoch and the stepped schedule's time interval."""

    learning_rate0: float
    decay_rate: float
    epoch_num: int
    time_interval: int


@st.composite
def decay_cases(draw: st.DrawFn) -> DecayCase:
    """lr0 in [1e-6, 10), decay rate 0 or in [1e-4, 1e2), epoch up to 1e6, interval up to 5000."""
    return DecayCase(
        learning_rate0=draw(decades(-6, 0)),
        decay_rate=draw(st.one_of(st.just(0.0), decades(-4, 1))),
        epoch_num=draw(st.one_of(st.integers(0, 20), st.integers(0, 10**6))),
        time_interval=draw(st.one_of(st.sampled_from([1, 10, 1000]), st.integers(1, 5000))),
    )


def check_decay(
    case: DecayCase,
    plain: Schedule = inverse_time_decay,
    stepped: SteppedSchedule = stepped_inverse_time_decay,
) -> list[Measurement]:
    """lr0 / (1 + r e) and lr0 / (1 + r floor(e / T)) match their exact rational values to
    3 roundings (product, sum, division: 3u relative, times SAFETY, plus u/2 for rounding the
    exact value); lr(0) = lr0 exactly; the plain schedule never increases; the stepped one is
    constant on each interval of T epochs and is the plain one for T = 1 (same operations)."""
    lr0, r, e, interval = case.learning_rate0, case.decay_rate, case.epoch_num, case.time_interval
    lr0_q, r_q = Fraction(lr0), Fraction(r)
    want_plain = float(lr0_q / (1 + r_q * e))
    want_stepped = float(lr0_q / (1 + r_q * (e // interval)))
    rel = (3 * SAFETY + 0.5) * U64
    got_plain = plain(lr0, e, r)
    got_stepped = stepped(lr0, e, r, interval)
    start = e // interval * interval
    return [
        compare(
            "inverse-time decay vs lr0 / (1 + r e)",
            np.array(got_plain),
            np.array(want_plain),
            rel * want_plain,
        ),
        compare(
            "stepped decay vs lr0 / (1 + r floor(e / T))",
            np.array(got_stepped),
            np.array(want_stepped),
            rel * want_stepped,
        ),
        exact("lr at epoch 0 is lr0", plain(lr0, 0, r) == lr0 == stepped(lr0, 0, r, interval)),
        exact("inverse-time decay does not increase", plain(lr0, e + 1, r) <= got_plain),
        exact(
            "stepped decay is constant on its interval",
            stepped(lr0, start, r, interval) == got_stepped,
        ),
        exact("stepped decay with T = 1 is the plain decay", stepped(lr0, e, r, 1) == got_plain),
    ]


@given(case=decay_cases())
def test_the_decay_schedules_are_their_formulas(case: DecayCase) -> None:
    assert_holds(check_decay(case))


def _no_floor(lr0: float, epoch: int, rate: float, interval: int) -> float:
    return lr0 / (1 + rate * epoch / interval)  # forgets the floor: no staircase


def _per_interval_plain(lr0: float, epoch: int, rate: float) -> float:
    return lr0 / (1 + rate * (epoch + 1))  # off by one epoch: lr(0) < lr0


@pytest.mark.parametrize(
    ("plain", "stepped", "quantity"),
    [
        (inverse_time_decay, _no_floor, "stepped decay vs lr0 / (1 + r floor(e / T))"),
        (_per_interval_plain, stepped_inverse_time_decay, "inverse-time decay vs lr0"),
    ],
)
def test_decay_claim_catches_broken_schedules(
    plain: Schedule, stepped: SteppedSchedule, quantity: str
) -> None:
    case = DecayCase(learning_rate0=0.1, decay_rate=0.5, epoch_num=1234, time_interval=1000)
    with pytest.raises(AssertionError, match=re.escape(quantity)):
        assert_holds(check_decay(case, plain, stepped))
    assert_holds(check_decay(case))
