"""Adam with bias correction, in the explicit form and in the folded-learning-rate form.

Per parameter, with gradient g, step count t (1 at the first step) and the moments v, s (zero
before the first step; the course's names, Kingma & Ba's m and v)::

    v <- beta1 * v + (1 - beta1) * g
    s <- beta2 * s + (1 - beta2) * g**2

    "explicit"  v_corrected = v / (1 - beta1**t),   s_corrected = s / (1 - beta2**t)
                theta <- theta - lr * v_corrected / (sqrt(s_corrected) + eps)
    "folded"    alpha_t = lr * sqrt(1 - beta2**t) / (1 - beta1**t)
                eps_hat = eps * sqrt(1 - beta2**t)
                theta <- theta - alpha_t * v / (sqrt(s) + eps_hat)
    "keras"     as "folded" with the constant eps_hat = eps

Sources. "explicit": Kingma & Ba, "Adam: A Method for Stochastic Optimization", ICLR 2015
(https://arxiv.org/abs/1412.6980), Algorithm 1 (eps outside the root of the bias-corrected
s); the course notes' ``update_parameters_with_adam``; torch.optim.Adam
(https://pytorch.org/docs/stable/generated/torch.optim.Adam.html:
``theta_t = theta_(t-1) - lr m_hat_t / (sqrt(v_hat_t) + eps)``). "folded": the same paper,
end of Section 2: "the efficiency of algorithm 1 can ... be improved upon by changing the order
of computation, e.g. by replacing the last three lines in the loop with ``alpha_t = alpha *
sqrt(1 - beta2^t) / (1 - beta1^t)`` and ``theta_t <- theta_(t-1) - alpha_t m_t / (sqrt(v_t) +
eps_hat)``". "keras": Keras 3 (keras/src/optimizers/adam.py: ``alpha = lr * sqrt(1 -
beta_2_power) / (1 - beta_1_power)``, ``variable -= m * alpha / (sqrt(v) + epsilon)``) and
tf.raw_ops.ApplyAdam, whose docs say their epsilon "is 'epsilon hat' in the Kingma and Ba
paper ..., not the epsilon in Algorithm 1".

Equivalence. Multiplying numerator and denominator of the explicit step by sqrt(1 - beta2**t)
> 0::

    lr * (v / (1 - beta1**t)) / (sqrt(s) / sqrt(1 - beta2**t) + eps)
        = [lr * sqrt(1 - beta2**t) / (1 - beta1**t)] * v / (sqrt(s) + eps * sqrt(1 - beta2**t))
        = alpha_t * v / (sqrt(s) + eps_hat_t)

so "folded" with eps_hat_t = eps * sqrt(1 - beta2**t) (`equivalent_epsilon_hat`) is the
explicit form in real arithmetic, and the two differ only by rounding. "keras" with a constant
eps_hat is the explicit form with the time-varying eps / sqrt(1 - beta2**t): larger early on
(about 31.6 * eps at t = 1 for beta2 = 0.999), the same once beta2**t is negligible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from reference._validation import Float64Array, check_int, check_positive_scalar
from reference.optimizers._common import (
    Params,
    ParamsLike,
    StepResult,
    check_beta,
    check_form,
    check_like,
    check_params,
    check_state,
    one_minus_power,
    read_only,
    set_checked,
    zeros_like,
)

ADAM_FORMS = ("explicit", "folded", "keras")


class AdamState(NamedTuple):
    """The moments of every parameter and the number of steps taken.

    v  exponentially weighted average of the gradients (Kingma & Ba's m)
    s  exponentially weighted average of the squared gradients (Kingma & Ba's v)
    t  steps taken so far; the next step uses t + 1 in its bias correction
    """

    v: Params
    s: Params
    t: int


class AdamMoments(NamedTuple):
    """The bias-corrected moments v / (1 - beta1**t) and s / (1 - beta2**t)."""

    v_corrected: Params
    s_corrected: Params


def equivalent_epsilon_hat(epsilon: float, beta2: float, t: int) -> float:
    """eps_hat_t = eps * sqrt(1 - beta2**t): the folded form's epsilon at step t that makes it
    the explicit form (derivation in the module docstring)."""
    eps = check_positive_scalar(epsilon, "epsilon")
    b2 = check_beta(beta2, "beta2")
    step = check_int(t, "t", minimum=1)
    return eps * math.sqrt(one_minus_power(b2, step))


def bias_corrected_moments(state: AdamState, beta1: float, beta2: float) -> AdamMoments:
    """v_corrected = v / (1 - beta1**t) and s_corrected = s / (1 - beta2**t) of a state after
    t >= 1 steps (Kingma & Ba 2015, Algorithm 1; the course's v_corrected, s_corrected)."""
    check_state(state, AdamState)
    b1 = check_beta(beta1, "beta1")
    b2 = check_beta(beta2, "beta2")
    t = check_int(state.t, "state.t", minimum=1)
    v = check_params(state.v, "state.v")
    s = check_like(state.s, "state.s", v)
    c1, c2 = one_minus_power(b1, t), one_minus_power(b2, t)
    return AdamMoments(read_only({k: v[k] / c1 for k in v}), read_only({k: s[k] / c2 for k in v}))


@dataclass(frozen=True)
class Adam:
    """Adam with bias correction; `form` is "explicit" (default), "folded" or "keras".

    The formulas and their sources are in the module docstring; `epsilon` is always the constant
    the caller passes: Algorithm 1's eps for "explicit" and "folded", eps_hat for "keras".
    """

    learning_rate: float
    beta1: float = 0.9
    beta2: float = 0.999
    epsilon: float = 1e-8
    form: str = "explicit"

    def __post_init__(self) -> None:
        set_checked(
            self, "learning_rate", check_positive_scalar(self.learning_rate, "learning_rate")
        )
        set_checked(self, "beta1", check_beta(self.beta1, "beta1"))
        set_checked(self, "beta2", check_beta(self.beta2, "beta2"))
        set_checked(self, "epsilon", check_positive_scalar(self.epsilon, "epsilon"))
        set_checked(self, "form", check_form(self.form, "form", ADAM_FORMS))

    @property
    def name(self) -> str:
        """'adam'."""
        return "adam"

    def init(self, params: ParamsLike) -> AdamState:
        """v = s = 0 for every parameter, t = 0."""
        theta = check_params(params)
        return AdamState(zeros_like(theta), zeros_like(theta), 0)

    def step(
        self, params: ParamsLike, grads: ParamsLike, state: AdamState
    ) -> StepResult[AdamState]:
        """One Adam update at step t = state.t + 1, in `self.form`."""
        check_state(state, AdamState)
        theta = check_params(params)
        g = check_like(grads, "grads", theta)
        v = check_like(state.v, "state.v", theta)
        s = check_like(state.s, "state.s", theta)
        t = check_int(state.t, "state.t", minimum=0) + 1
        b1, b2 = self.beta1, self.beta2
        new_v = {k: b1 * v[k] + (1 - b1) * g[k] for k in theta}
        new_s = {k: b2 * s[k] + (1 - b2) * g[k] ** 2 for k in theta}
        new_theta = {k: self._move(theta[k], new_v[k], new_s[k], t) for k in theta}
        return StepResult(read_only(new_theta), AdamState(read_only(new_v), read_only(new_s), t))

    def _move(self, theta: Float64Array, v: Float64Array, s: Float64Array, t: int) -> Any:
        lr, eps = self.learning_rate, self.epsilon
        c1, c2 = one_minus_power(self.beta1, t), one_minus_power(self.beta2, t)
        if self.form == "explicit":
            # The course's order: lr * v_corrected / (np.sqrt(s_corrected) + epsilon).
            v_corrected, s_corrected = v / c1, s / c2
            return theta - lr * v_corrected / (np.sqrt(s_corrected) + eps)
        alpha_t = lr * math.sqrt(c2) / c1
        eps_hat = eps * math.sqrt(c2) if self.form == "folded" else eps
        return theta - alpha_t * v / (np.sqrt(s) + eps_hat)
