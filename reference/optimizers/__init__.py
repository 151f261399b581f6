"""Optimizers as pure update rules, and `make_optimizer` to pick one by name.

Every optimizer has ``init(params) -> state`` and ``step(params, grads, state) ->
StepResult(params, state)``; parameters and gradients are mappings from names ("W1", "b1",
...) to arrays with the same names and shapes. Nothing is mutated: each step returns new
read-only arrays and a new state (a NamedTuple of read-only mappings).

Modules: `momentum` (SGD, Momentum, Nesterov), `adaptive` (AdaGrad, RMSprop), `adam` (Adam,
explicit and folded forms), `course` (the course notes' function names). Each module's
docstring has the formulas, the epsilon placement and the sources.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from reference.optimizers._common import Optimizer, Params, ParamsLike, StepResult
from reference.optimizers.adam import (
    ADAM_FORMS,
    Adam,
    AdamMoments,
    AdamState,
    bias_corrected_moments,
    equivalent_epsilon_hat,
)
from reference.optimizers.adaptive import RMSPROP_FORMS, AdaGrad, RMSprop, SquareState
from reference.optimizers.course import (
    AdamSlots,
    AdamUpdate,
    MomentumUpdate,
    initialize_adam,
    initialize_velocity,
    update_parameters_with_adam,
    update_parameters_with_gd,
    update_parameters_with_momentum,
)
from reference.optimizers.momentum import (
    MOMENTUM_FORMS,
    NESTEROV_FORMS,
    SGD,
    Momentum,
    MomentumState,
    Nesterov,
    SGDState,
)

# The names `make_optimizer` accepts; "gd" is the course's name for plain gradient descent.
OPTIMIZERS: Mapping[str, type] = MappingProxyType(
    {
        "gd": SGD,
        "sgd": SGD,
        "momentum": Momentum,
        "nesterov": Nesterov,
        "adagrad": AdaGrad,
        "rmsprop": RMSprop,
        "adam": Adam,
    }
)


def make_optimizer(optimizer: str, **hyperparameters: Any) -> Optimizer[Any]:
    """The optimizer called `optimizer`, built with `hyperparameters` (checked by its class).

    Known names: "gd"/"sgd" (SGD), "momentum", "nesterov", "adagrad", "rmsprop", "adam".
    ``make_optimizer("adam", learning_rate=1e-3, beta1=0.9)`` is ``Adam(1e-3, beta1=0.9)``.
    """
    key: object = optimizer  # checked as an object: a list would not even hash
    if not isinstance(key, str) or key not in OPTIMIZERS:
        known = ", ".join(map(repr, OPTIMIZERS))
        raise ValueError(f"optimizer must be one of {known}; got {optimizer!r}")
    cls = OPTIMIZERS[optimizer]
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    unexpected = sorted(set(hyperparameters) - set(names))
    if unexpected:
        raise TypeError(
            f"hyperparameters of optimizer {optimizer!r} are {names}; got unexpected {unexpected}"
        )
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    missing = [name for name in required if name not in hyperparameters]
    if missing:
        raise TypeError(f"optimizer {optimizer!r} requires the hyperparameters {missing}")
    built: Optimizer[Any] = cls(**hyperparameters)
    return built


__all__ = [
    "ADAM_FORMS",
    "MOMENTUM_FORMS",
    "NESTEROV_FORMS",
    "OPTIMIZERS",
    "RMSPROP_FORMS",
    "SGD",
    "AdaGrad",
    "Adam",
    "AdamMoments",
    "AdamSlots",
    "AdamState",
    "AdamUpdate",
    "Momentum",
    "MomentumState",
    "MomentumUpdate",
    "Nesterov",
    "Optimizer",
    "Params",
    "ParamsLike",
    "RMSprop",
    "SGDState",
    "SquareState",
    "StepResult",
    "bias_corrected_moments",
    "equivalent_epsilon_hat",
    "initialize_adam",
    "initialize_velocity",
    "make_optimizer",
    "update_parameters_with_adam",
    "update_parameters_with_gd",
    "update_parameters_with_momentum",
]
