"""What every optimizer shares: named parameters, the step result, and the input checks.

Parameters are a mapping from a name ("W1", "b1", "gamma1", ...) to an array; gradients are a
mapping with exactly the same names and shapes (the gradient of parameter "W1" is grads["W1"]).
An update is pure: it returns new read-only arrays in a new read-only mapping and a new state,
and never writes to its arguments.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import numpy as np
from numpy.typing import ArrayLike

from reference._validation import Float64Array, as_float64_array, frozen, real_scalar

Params = Mapping[str, Float64Array]
ParamsLike = Mapping[str, ArrayLike]

S = TypeVar("S")


class StepResult(NamedTuple, Generic[S]):
    """The outcome of one update: the new parameters and the new optimizer state."""

    params: Params
    state: S


class Optimizer(Protocol[S]):
    """An update rule: `init` builds the zero state, `step` applies one gradient.

    ``step(params, grads, state)`` returns ``StepResult(new_params, new_state)`` and mutates
    nothing; feeding the returned state to the next call continues the same run.
    """

    @property
    def name(self) -> str:
        """The name `make_optimizer` knows this rule by."""
        ...

    def init(self, params: ParamsLike) -> S:
        """The state before the first step, for parameters with these names and shapes."""
        ...

    def step(self, params: ParamsLike, grads: ParamsLike, state: S) -> StepResult[S]:
        """One update of every parameter with its gradient."""
        ...


def check_beta(value: Any, name: str) -> float:
    """Return a decay rate as a float after checking it lies in [0, 1).

    beta = 1 would freeze the average at its initial zeros (and divide by zero in Adam's bias
    correction 1 - beta**t), so it is rejected with the values outside [0, 1).
    """
    number = real_scalar(value, name)
    if not (0.0 <= number < 1.0):
        raise ValueError(f"{name} must lie in [0, 1), got {value!r}")
    return number


def check_form(value: Any, name: str, known: tuple[str, ...]) -> str:
    """Return `value` after checking it is one of the `known` strings."""
    if not isinstance(value, str) or value not in known:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, known))}; got {value!r}")
    return value


def check_params(params: Any, name: str = "params") -> dict[str, Float64Array]:
    """The parameters as a dict of float64 arrays, in their order; the inputs are only read.

    A Mapping with string keys and finite real arrays is required: a NaN parameter or gradient
    is a diverged run, and an oracle reports it instead of propagating it.
    """
    if not isinstance(params, Mapping):
        raise TypeError(
            f"{name} must be a mapping from parameter names to arrays, got {type(params).__name__}"
        )
    out: dict[str, Float64Array] = {}
    for key, value in params.items():
        if not isinstance(key, str):
            raise TypeError(
                f"{name} must have string keys (parameter names), got {type(key).__name__} {key!r}"
            )
        out[key] = as_float64_array(value, f"{name}[{key!r}]")
    return out


def check_like(
    values: Any, name: str, params: Mapping[str, Float64Array]
) -> dict[str, Float64Array]:
    """`values` (gradients or a state slot) checked to have exactly the names and shapes of
    `params`."""
    arrays = check_params(values, name)
    if set(arrays) != set(params):
        missing = sorted(set(params) - set(arrays))
        extra = sorted(set(arrays) - set(params))
        raise ValueError(
            f"{name} must have the names of params {sorted(params)}, got {sorted(arrays)} "
            f"(missing {missing}, unexpected {extra})"
        )
    for key, ref in params.items():
        if arrays[key].shape != ref.shape:
            raise ValueError(
                f"{name}[{key!r}] must have the shape of params[{key!r}], {ref.shape}, "
                f"got shape {arrays[key].shape}"
            )
    return {key: arrays[key] for key in params}


def check_state(state: Any, expected: type, name: str = "state") -> None:
    """Raise a TypeError unless `state` is an instance of the optimizer's state type."""
    if not isinstance(state, expected):
        raise TypeError(
            f"{name} must be a {expected.__name__} (from this optimizer's init), "
            f"got {type(state).__name__}"
        )


def set_checked(obj: object, name: str, value: object) -> None:
    """Store a validated hyperparameter on a frozen dataclass (in __post_init__ only)."""
    object.__setattr__(obj, name, value)


def read_only(arrays: Mapping[str, Float64Array]) -> Params:
    """A read-only view of a dict of arrays this module owns, each marked read-only."""
    return MappingProxyType({key: frozen(value) for key, value in arrays.items()})


def zeros_like(params: Mapping[str, Float64Array]) -> Params:
    """A zero array per parameter, with its shape: the initial moment of every rule here."""
    return read_only({key: np.zeros(value.shape) for key, value in params.items()})


def one_minus_power(beta: float, t: int) -> float:
    """1 - beta**t, the weight that the t steps of an average starting at zero have received.

    ``beta ** t`` is Python's float power, as in the course notes (``1 - beta1**t``).
    """
    return 1.0 - beta**t
