"""AdaGrad and RMSprop: per-coordinate steps divided by the root of a sum of squared gradients.

g is the gradient, lr the learning rate, s the accumulator (zero before the first step)::

    AdaGrad            s <- s + g**2                      theta <- theta - lr g / (sqrt(s) + eps)
    RMSprop "pytorch"  s <- beta s + (1 - beta) g**2      theta <- theta - lr g / (sqrt(s) + eps)
    RMSprop "keras"    s <- beta s + (1 - beta) g**2      theta <- theta - lr g / sqrt(s + eps)

Epsilon placement, with sources:

* AdaGrad: outside the root. Duchi, Hazan & Singer, "Adaptive Subgradient Methods for Online
  Learning and Stochastic Optimization", JMLR 12 (2011), Figure 1: the diagonal step divides by
  delta + ||g_(1:t,i)||_2; torch.optim.Adagrad
  (https://pytorch.org/docs/stable/generated/torch.optim.Adagrad.html):
  ``theta_t = theta_(t-1) - lr g_t / (sqrt(state_sum_t) + eps)``, default eps 1e-10 (used here;
  PyTorch's lr_decay and initial_accumulator_value are left at their defaults, 0).
* RMSprop "pytorch": outside the root, as torch.optim.RMSprop
  (https://pytorch.org/docs/stable/generated/torch.optim.RMSprop.html:
  ``theta_t = theta_(t-1) - lr g_t / (sqrt(v_t) + eps)``; its older docstring: "takes the
  square root of the gradient average before adding epsilon (note that TensorFlow interchanges
  these two operations)") and the course's RMSprop, ``W <- W - alpha dW / (sqrt(S_dW) + eps)``.
* RMSprop "keras": inside the root, as Keras 3 (keras/src/optimizers/rmsprop.py:
  ``denominator = velocity + epsilon; increment = lr * gradient / sqrt(denominator)``).
  Hinton's lecture 6e (the source every one of them cites) has no epsilon.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from reference._validation import Float64Array, check_positive_scalar
from reference.optimizers._common import (
    Params,
    ParamsLike,
    StepResult,
    check_beta,
    check_form,
    check_like,
    check_params,
    check_state,
    read_only,
    set_checked,
    zeros_like,
)

RMSPROP_FORMS = ("pytorch", "keras")


class SquareState(NamedTuple):
    """The accumulated squared gradients s of every parameter (AdaGrad's sum, RMSprop's
    average)."""

    s: Params


@dataclass(frozen=True)
class AdaGrad:
    """s <- s + g**2;  theta <- theta - lr * g / (sqrt(s) + eps)   (eps outside the root)."""

    learning_rate: float
    epsilon: float = 1e-10

    def __post_init__(self) -> None:
        set_checked(
            self, "learning_rate", check_positive_scalar(self.learning_rate, "learning_rate")
        )
        set_checked(self, "epsilon", check_positive_scalar(self.epsilon, "epsilon"))

    @property
    def name(self) -> str:
        """'adagrad'."""
        return "adagrad"

    def init(self, params: ParamsLike) -> SquareState:
        """s = 0 for every parameter."""
        return SquareState(zeros_like(check_params(params)))

    def step(
        self, params: ParamsLike, grads: ParamsLike, state: SquareState
    ) -> StepResult[SquareState]:
        """One AdaGrad update (formula in the class docstring)."""
        check_state(state, SquareState)
        theta = check_params(params)
        g = check_like(grads, "grads", theta)
        s = check_like(state.s, "state.s", theta)
        lr, eps = self.learning_rate, self.epsilon
        new_s = {k: s[k] + g[k] ** 2 for k in theta}
        new_theta = {k: theta[k] - lr * g[k] / (np.sqrt(new_s[k]) + eps) for k in theta}
        return StepResult(read_only(new_theta), SquareState(read_only(new_s)))


@dataclass(frozen=True)
class RMSprop:
    """s <- beta s + (1 - beta) g**2, then with form

    "pytorch" (default):  theta <- theta - lr * g / (sqrt(s) + eps)   (eps outside the root)
    "keras":              theta <- theta - lr * g / sqrt(s + eps)     (eps inside the root)
    """

    learning_rate: float
    beta: float = 0.9
    epsilon: float = 1e-8
    form: str = "pytorch"

    def __post_init__(self) -> None:
        set_checked(
            self, "learning_rate", check_positive_scalar(self.learning_rate, "learning_rate")
        )
        set_checked(self, "beta", check_beta(self.beta, "beta"))
        set_checked(self, "epsilon", check_positive_scalar(self.epsilon, "epsilon"))
        set_checked(self, "form", check_form(self.form, "form", RMSPROP_FORMS))

    @property
    def name(self) -> str:
        """'rmsprop'."""
        return "rmsprop"

    def init(self, params: ParamsLike) -> SquareState:
        """s = 0 for every parameter."""
        return SquareState(zeros_like(check_params(params)))

    def step(
        self, params: ParamsLike, grads: ParamsLike, state: SquareState
    ) -> StepResult[SquareState]:
        """One RMSprop update in `self.form` (formulas in the class docstring)."""
        check_state(state, SquareState)
        theta = check_params(params)
        g = check_like(grads, "grads", theta)
        s = check_like(state.s, "state.s", theta)
        lr, beta, eps = self.learning_rate, self.beta, self.epsilon
        new_s = {k: beta * s[k] + (1 - beta) * g[k] ** 2 for k in theta}
        new_theta: dict[str, Float64Array] = {}
        for k in theta:
            denominator = (
                np.sqrt(new_s[k]) + eps if self.form == "pytorch" else np.sqrt(new_s[k] + eps)
            )
            new_theta[k] = theta[k] - lr * g[k] / denominator
        return StepResult(read_only(new_theta), SquareState(read_only(new_s)))
