"""Learning-rate decay: the learning rate of epoch `epoch_num` (0 for the first) from lr0.

    inverse_time_decay          lr = lr0 / (1 + decay_rate * epoch_num)
    stepped_inverse_time_decay  lr = lr0 / (1 + decay_rate * floor(epoch_num / time_interval))

Both are the course's (Deep Learning Specialization, course 2, "Optimization Methods"):
``update_lr(learning_rate0, epoch_num, decay_rate)`` and ``schedule_lr_decay(learning_rate0,
epoch_num, decay_rate, time_interval=1000)``, which compute ``1 / (1 + decay_rate * epoch_num) *
learning_rate0`` and the same with ``floor(epoch_num / time_interval)``; they are provided under
those names too. The stepped form keeps lr constant for `time_interval` epochs at a time (a
staircase); with time_interval = 1 it is the plain form.

The floor is taken in integer arithmetic (epoch_num // time_interval), exact for any integers.
In floating point the quotient is computed with 3 roundings (product, sum, division), so it is
within 3u (u = 2**-53) of the exact rational value of the float inputs. The course's own
``1 / (1 + ...) * lr0`` also rounds 3 times, so the two agree to within 6u relative.

The course notes bnref grew from (the seed notes on hyperparameters) name learning-rate decay
as a hyperparameter but give no other schedule, so exponential (0.95**epoch * lr0) and
k / sqrt(epoch) decay are not provided.
"""

from __future__ import annotations

import math
from typing import Any

from reference._validation import check_int, check_positive_scalar, real_scalar


def _check_decay_rate(decay_rate: Any) -> float:
    rate = real_scalar(decay_rate, "decay_rate")
    if not (math.isfinite(rate) and rate >= 0.0):
        raise ValueError(f"decay_rate must be a finite number >= 0, got {decay_rate!r}")
    return rate


def inverse_time_decay(learning_rate0: float, epoch_num: int, decay_rate: float) -> float:
    """lr = learning_rate0 / (1 + decay_rate * epoch_num), for an integer epoch_num >= 0."""
    lr0 = check_positive_scalar(learning_rate0, "learning_rate0")
    count = check_int(epoch_num, "epoch_num", minimum=0)
    rate = _check_decay_rate(decay_rate)
    return lr0 / (1.0 + rate * count)


def stepped_inverse_time_decay(
    learning_rate0: float, epoch_num: int, decay_rate: float, time_interval: int = 1000
) -> float:
    """lr = learning_rate0 / (1 + decay_rate * floor(epoch_num / time_interval)).

    epoch_num is an integer >= 0, time_interval an integer >= 1 (the course's default, 1000).
    """
    lr0 = check_positive_scalar(learning_rate0, "learning_rate0")
    count = check_int(epoch_num, "epoch_num", minimum=0)
    rate = _check_decay_rate(decay_rate)
    interval = check_int(time_interval, "time_interval", minimum=1)
    return lr0 / (1.0 + rate * (count // interval))


def update_lr(learning_rate0: float, epoch_num: int, decay_rate: float) -> float:
    """The course's name: learning_rate0 / (1 + decay_rate * epoch_num)."""
    return inverse_time_decay(learning_rate0, epoch_num, decay_rate)


def schedule_lr_decay(
    learning_rate0: float, epoch_num: int, decay_rate: float, time_interval: int = 1000
) -> float:
    """The course's name: learning_rate0 / (1 + decay_rate * floor(epoch_num / time_interval))."""
    return stepped_inverse_time_decay(learning_rate0, epoch_num, decay_rate, time_interval)
