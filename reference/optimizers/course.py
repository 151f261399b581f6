"""The course notes' optimizer functions, with their names and argument order, made pure.

The course's ``model()`` calls::

    v = initialize_velocity(parameters)
    v, s = initialize_adam(parameters)
    parameters = update_parameters_with_gd(parameters, grads, learning_rate)
    parameters, v = update_parameters_with_momentum(parameters, grads, v, beta, learning_rate)
    parameters, v, s = update_parameters_with_adam(parameters, grads, v, s,
                                                   t, learning_rate, beta1, beta2, epsilon)

The course's versions assign into the dicts they are given; these return new read-only
mappings and leave their arguments alone, so the same calls work as long as the results are
used (as ``model()`` does). As in the course, the gradient, v and s of parameter "W1" are keyed
"dW1"; every name of `parameters` must have its "d" key and no other key is accepted. The
arithmetic is `Momentum(form="course")` and `Adam(form="explicit")`, in the course's order.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple

from reference._validation import Float64Array, check_int
from reference.optimizers._common import (
    Params,
    ParamsLike,
    check_params,
    read_only,
    zeros_like,
)
from reference.optimizers.adam import Adam, AdamState
from reference.optimizers.momentum import SGD, Momentum, MomentumState, SGDState


class MomentumUpdate(NamedTuple):
    """``(parameters, v)`` as ``update_parameters_with_momentum`` returns them."""

    parameters: Params
    v: Params


class AdamSlots(NamedTuple):
    """``(v, s)`` as ``initialize_adam`` returns them, keyed "dW1", "db1", ..."""

    v: Params
    s: Params


class AdamUpdate(NamedTuple):
    """``(parameters, v, s)`` as ``update_parameters_with_adam`` returns them."""

    parameters: Params
    v: Params
    s: Params


def _to_param_names(
    values: Any, name: str, theta: Mapping[str, Float64Array]
) -> dict[str, Float64Array]:
    """Course keys "dW1" -> parameter names "W1", after checking the keys and shapes."""
    arrays = check_params(values, name)
    want = {"d" + k for k in theta}
    if set(arrays) != want:
        raise ValueError(
            f"{name} must have the keys {sorted(want)} ('d' + each parameter name, as in the "
            f"course), got {sorted(arrays)} (missing {sorted(want - set(arrays))}, "
            f"unexpected {sorted(set(arrays) - want)})"
        )
    for k, ref in theta.items():
        if arrays["d" + k].shape != ref.shape:
            raise ValueError(
                f"{name}['d{k}'] must have the shape of parameters[{k!r}], {ref.shape}, "
                f"got shape {arrays['d' + k].shape}"
            )
    return {k: arrays["d" + k] for k in theta}


def _to_course_names(values: Params) -> Params:
    return read_only({"d" + k: a for k, a in values.items()})


def update_parameters_with_gd(
    parameters: ParamsLike, grads: ParamsLike, learning_rate: float
) -> Params:
    """W <- W - learning_rate * dW for every parameter W (grads keyed "dW")."""
    opt = SGD(learning_rate)
    theta = check_params(parameters, "parameters")
    return opt.step(theta, _to_param_names(grads, "grads", theta), SGDState()).params


def initialize_velocity(parameters: ParamsLike) -> Params:
    """v["dW"] = zeros with the shape of W, for every parameter W."""
    return _to_course_names(zeros_like(check_params(parameters, "parameters")))


def update_parameters_with_momentum(
    parameters: ParamsLike, grads: ParamsLike, v: ParamsLike, beta: float, learning_rate: float
) -> MomentumUpdate:
    """v["dW"] <- beta * v["dW"] + (1 - beta) * dW;  W <- W - learning_rate * v["dW"]."""
    opt = Momentum(learning_rate, beta, form="course")
    theta = check_params(parameters, "parameters")
    state = MomentumState(_to_param_names(v, "v", theta))
    new = opt.step(theta, _to_param_names(grads, "grads", theta), state)
    return MomentumUpdate(new.params, _to_course_names(new.state.v))


def initialize_adam(parameters: ParamsLike) -> AdamSlots:
    """v["dW"] = s["dW"] = zeros with the shape of W, for every parameter W."""
    zeros = _to_course_names(zeros_like(check_params(parameters, "parameters")))
    return AdamSlots(zeros, zeros)


def update_parameters_with_adam(  # noqa: PLR0917 -- the course's positional signature
    parameters: ParamsLike,
    grads: ParamsLike,
    v: ParamsLike,
    s: ParamsLike,
    t: int,
    learning_rate: float = 0.01,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
) -> AdamUpdate:
    """Adam at step t >= 1 (the caller counts t, as the course's model() does)::

    v <- beta1 v + (1 - beta1) dW;   v_corrected = v / (1 - beta1**t)
    s <- beta2 s + (1 - beta2) dW**2; s_corrected = s / (1 - beta2**t)
    W <- W - learning_rate * v_corrected / (sqrt(s_corrected) + epsilon)
    """
    step = check_int(t, "t", minimum=1)
    opt = Adam(learning_rate, beta1, beta2, epsilon, form="explicit")
    theta = check_params(parameters, "parameters")
    state = AdamState(
        _to_param_names(v, "v", theta),
        _to_param_names(s, "s", theta),
        step - 1,
    )
    new = opt.step(theta, _to_param_names(grads, "grads", theta), state)
    return AdamUpdate(new.params, _to_course_names(new.state.v), _to_course_names(new.state.s))
