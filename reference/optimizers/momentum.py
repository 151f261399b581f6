"""Gradient descent, momentum and Nesterov momentum: the update of one parameter theta.

g is the gradient, lr the learning rate, beta the momentum coefficient, v the velocity (zero
before the first step)::

    SGD                    theta <- theta - lr * g
    Momentum  "course"     v <- beta * v + (1 - beta) * g      theta <- theta - lr * v
    Momentum  "classic"    v <- beta * v - lr * g              theta <- theta + v
    Momentum  "pytorch"    v <- beta * v + g                   theta <- theta - lr * v
    Nesterov  "pytorch"    v <- beta * v + g                   theta <- theta - lr * (g + beta * v)
    Nesterov  "classic"    v <- beta * v - lr * g              theta <- theta + beta * v - lr * g

Sources. "course": the course notes' ``update_parameters_with_momentum`` (an exponentially
weighted average of the gradients). "classic": Sutskever, Martens, Dahl & Hinton, "On the
importance of initialization and momentum in deep learning", ICML 2013, eq. (1)-(2), and Keras
``SGD`` (keras/src/optimizers/sgd.py: ``velocity = momentum * velocity - learning_rate * g;
w = w + velocity``). "pytorch": torch.optim.SGD with dampening 0
(https://pytorch.org/docs/stable/generated/torch.optim.SGD.html: ``b_t = mu b_(t-1) + g_t``,
``g_t <- g_t + mu b_t`` if nesterov else ``b_t``, ``theta_t = theta_(t-1) - lr g_t``; its note
says it "subtly differs from Sutskever et al." by where lr enters).

The forms are one rule in three scalings. With a constant lr, classic's v is -lr times
pytorch's v, so the parameters agree exactly in real arithmetic; course's v is (1 - beta) times
pytorch's, so course with lr equals pytorch with lr * (1 - beta). With beta = 0 every form is SGD.

Nesterov. Sutskever et al. eq. (3)-(4) take the gradient at the look-ahead point:
``v <- beta v - lr grad f(theta + beta v); theta <- theta + v``. Both Nesterov forms here take
the gradient at the parameters they are given, phi = theta + beta v; substituting gives
``phi <- phi + beta v_new - lr grad f(phi)`` with ``v_new = beta v - lr grad f(phi)``, which is the
"classic" line above (Keras ``SGD(nesterov=True)``), and with v = -lr b the "pytorch" line.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

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

MOMENTUM_FORMS = ("course", "classic", "pytorch")
NESTEROV_FORMS = ("pytorch", "classic")


class SGDState(NamedTuple):
    """Plain gradient descent keeps no state."""


class MomentumState(NamedTuple):
    """The velocity v of every parameter (same names and shapes as the parameters)."""

    v: Params


def _checked(
    params: ParamsLike, grads: ParamsLike
) -> tuple[dict[str, Float64Array], dict[str, Float64Array]]:
    theta = check_params(params)
    return theta, check_like(grads, "grads", theta)


@dataclass(frozen=True)
class SGD:
    """Gradient descent: theta <- theta - lr * g for every parameter."""

    learning_rate: float

    def __post_init__(self) -> None:
        set_checked(
            self, "learning_rate", check_positive_scalar(self.learning_rate, "learning_rate")
        )

    @property
    def name(self) -> str:
        """'sgd'."""
        return "sgd"

    def init(self, params: ParamsLike) -> SGDState:
        """The empty state (after checking the parameters)."""
        check_params(params)
        return SGDState()

    def step(self, params: ParamsLike, grads: ParamsLike, state: SGDState) -> StepResult[SGDState]:
        """theta <- theta - lr * g."""
        check_state(state, SGDState)
        theta, g = _checked(params, grads)
        lr = self.learning_rate
        return StepResult(read_only({k: theta[k] - lr * g[k] for k in theta}), SGDState())


_Pair = tuple[Float64Array, Float64Array]  # (new theta, new v) of one parameter


def _velocity_step(
    params: ParamsLike,
    grads: ParamsLike,
    state: MomentumState,
    update: Callable[[Float64Array, Float64Array, Float64Array], _Pair],
) -> StepResult[MomentumState]:
    """Validate, then apply `update(theta, v, g)` to every parameter: the loop both
    momentum methods share."""
    check_state(state, MomentumState)
    theta, g = _checked(params, grads)
    v = check_like(state.v, "state.v", theta)
    pairs = {k: update(theta[k], v[k], g[k]) for k in theta}
    new_theta = {k: pair[0] for k, pair in pairs.items()}
    new_v = {k: pair[1] for k, pair in pairs.items()}
    return StepResult(read_only(new_theta), MomentumState(read_only(new_v)))


@dataclass(frozen=True)
class Momentum:
    """Gradient descent with momentum in one of the forms of the module docstring.

    form "course" (default):  v <- beta v + (1 - beta) g;  theta <- theta - lr v
    form "classic":           v <- beta v - lr g;          theta <- theta + v
    form "pytorch":           v <- beta v + g;             theta <- theta - lr v
    """

    learning_rate: float
    beta: float = 0.9
    form: str = "course"

    def __post_init__(self) -> None:
        set_checked(
            self, "learning_rate", check_positive_scalar(self.learning_rate, "learning_rate")
        )
        set_checked(self, "beta", check_beta(self.beta, "beta"))
        set_checked(self, "form", check_form(self.form, "form", MOMENTUM_FORMS))

    @property
    def name(self) -> str:
        """'momentum'."""
        return "momentum"

    def init(self, params: ParamsLike) -> MomentumState:
        """v = 0 for every parameter."""
        return MomentumState(zeros_like(check_params(params)))

    def step(
        self, params: ParamsLike, grads: ParamsLike, state: MomentumState
    ) -> StepResult[MomentumState]:
        """One momentum update in `self.form` (formulas in the class docstring)."""
        return _velocity_step(params, grads, state, self._update)

    def _update(self, theta: Float64Array, v: Float64Array, g: Float64Array) -> _Pair:
        lr, beta = self.learning_rate, self.beta
        if self.form == "course":
            new_v = beta * v + (1 - beta) * g
            return theta - lr * new_v, new_v
        if self.form == "classic":
            new_v = beta * v - lr * g
            return theta + new_v, new_v
        new_v = beta * v + g  # pytorch
        return theta - lr * new_v, new_v


@dataclass(frozen=True)
class Nesterov:
    """Nesterov momentum with the gradient taken at the given parameters (module docstring).

    form "pytorch" (default):  v <- beta v + g;     theta <- theta - lr (g + beta v)
    form "classic":            v <- beta v - lr g;  theta <- theta + beta v - lr g
    """

    learning_rate: float
    beta: float = 0.9
    form: str = "pytorch"

    def __post_init__(self) -> None:
        set_checked(
            self, "learning_rate", check_positive_scalar(self.learning_rate, "learning_rate")
        )
        set_checked(self, "beta", check_beta(self.beta, "beta"))
        set_checked(self, "form", check_form(self.form, "form", NESTEROV_FORMS))

    @property
    def name(self) -> str:
        """'nesterov'."""
        return "nesterov"

    def init(self, params: ParamsLike) -> MomentumState:
        """v = 0 for every parameter."""
        return MomentumState(zeros_like(check_params(params)))

    def step(
        self, params: ParamsLike, grads: ParamsLike, state: MomentumState
    ) -> StepResult[MomentumState]:
        """One Nesterov update in `self.form` (formulas in the class docstring)."""
        return _velocity_step(params, grads, state, self._update)

    def _update(self, theta: Float64Array, v: Float64Array, g: Float64Array) -> _Pair:
        lr, beta = self.learning_rate, self.beta
        if self.form == "pytorch":
            new_v = beta * v + g
            return theta - lr * (g + beta * new_v), new_v
        new_v = beta * v - lr * g  # classic (Keras)
        return theta + (beta * new_v - lr * g), new_v
