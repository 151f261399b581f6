"""The training loop over random mini-batches, and the course notes' 3-layer ``model()``.

`train` runs ``num_epochs`` epochs. Epoch e = 1, 2, ... shuffles the examples with
``random_mini_batches(X, y, mini_batch_size, seed + e)`` -- the course's ``seed = seed + 1``
before each epoch -- and for every mini-batch takes the training-mode `network.gradient`
(dropout masks from one ``np.random.default_rng(seed)`` stream for the whole run) and one
optimizer step. The cost of an epoch is the average over its examples of the training loss,
the loss each mini-batch had before its step::

    cost_e = sum_b n_b * loss_b / sum_b n_b        (n_b examples in mini-batch b)

which is the course's ``cost_total += compute_cost(a3, Y)`` (a sum over the batch) followed by
``cost_avg = cost_total / m``. Everything is a function of the arguments: the same seed gives
the same result, and no argument is modified.

After each epoch, an optional ``on_epoch`` callback receives what that epoch produced, an
`EpochResult` (epoch number, cost, parameters, network and optimizer state, steps so far):
enough for a caller to record curves or show progress without a loop of its own. The loop
does not use what the callback returns, and the parameters reach it as a read-only mapping
(of read-only arrays, from the reference's optimizers), so a callback records the run without
changing it; an exception it raises ends the run and reaches the caller of `train`.

Optimizers are those of `reference.optimizers` (``init(params)``, ``step(params, grads,
state) -> StepResult``); `model` picks the course's three by name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from reference._validation import (
    Float64Array,
    as_float64_array,
    as_float64_labels,
    check_int,
    frozen,
)
from reference.minibatch import random_mini_batches
from reference.network import (
    NetworkSpec,
    NetworkState,
    Params,
    check_params,
    gradient,
    init_state,
)
from reference.optimizers import Optimizer, make_optimizer


@dataclass(frozen=True)
class TrainingResult:
    """The trained parameters and state, the cost of every epoch, the optimizer's final state
    and the number of optimizer steps taken."""

    params: Params
    state: NetworkState
    costs: tuple[float, ...]
    optimizer_state: object
    steps: int


class EpochResult(NamedTuple):
    """What epoch `epoch` (1, 2, ..., num_epochs) of `train` produced: its `cost` (cost_e, nan
    for an epoch without a batch), the parameters and network `state` after its last step, the
    optimizer's state then, and the optimizer `steps` taken since the run began."""

    epoch: int
    cost: float
    params: Params
    state: NetworkState
    optimizer_state: object
    steps: int


OnEpoch = Callable[[EpochResult], object]
"""The type of `train`'s ``on_epoch`` callback; what it returns is ignored."""


def _check_optimizer(optimizer: object) -> None:
    for method in ("init", "step"):
        if not callable(getattr(optimizer, method, None)):
            raise TypeError(
                f"optimizer must have init(params) and step(params, grads, state) methods "
                f"(reference.optimizers), got {type(optimizer).__name__}"
            )


def train(
    spec: NetworkSpec,
    params: Mapping[str, ArrayLike],
    X: ArrayLike,
    y: ArrayLike,
    *,
    optimizer: Optimizer[Any],
    num_epochs: int,
    mini_batch_size: int = 64,
    seed: int = 0,
    state: NetworkState | None = None,
    drop_last: bool = False,
    on_epoch: OnEpoch | None = None,
) -> TrainingResult:
    """`num_epochs` epochs of mini-batch training from `params` (see the module docstring).

    The examples lie along axis 0 of X and y for ``spec.feature_axis == 1`` and along the last
    axis for the course's layout (``feature_axis == 0``: X (features, m), y (1, m) or (m,)).
    `state` defaults to `network.init_state(spec)`. With batch norm in training mode a
    mini-batch of one example has no variance: pass ``drop_last=True`` when m % mini_batch_size
    is 1. An epoch left without a batch (``drop_last`` with mini_batch_size > m) takes no
    step and costs nan: it has no example to average over. `on_epoch`, if given, is called
    after every epoch with its `EpochResult` (never before the first). Raises what
    `random_mini_batches`, `network.gradient`, the optimizer and `on_epoch` raise.
    """
    if not isinstance(spec, NetworkSpec):
        raise TypeError(f"spec must be a NetworkSpec, got {type(spec).__name__}")
    # Private read-only copies: the result never aliases the caller's arrays.
    theta: Params = MappingProxyType(
        {k: frozen(v.copy()) for k, v in check_params(spec, params).items()}
    )
    epochs = check_int(num_epochs, "num_epochs", minimum=0)
    _check_optimizer(optimizer)
    if on_epoch is not None and not callable(on_epoch):
        raise TypeError(f"on_epoch must be callable or None, got {type(on_epoch).__name__}")
    net_state = init_state(spec) if state is None else state
    first_seed = check_int(seed, "seed", minimum=0)
    example_axis = -1 if spec.feature_axis == 0 else 0
    dropout_rng = np.random.default_rng(first_seed)
    opt_state = optimizer.init(theta)
    costs: list[float] = []
    steps = 0
    for epoch in range(1, epochs + 1):
        batches = random_mini_batches(
            X, y, mini_batch_size, first_seed + epoch, axis=example_axis, drop_last=drop_last
        )
        weighted: list[float] = []
        for batch in batches:
            result = gradient(spec, theta, net_state, batch.X, batch.Y, rng=dropout_rng)
            weighted.append(result.loss * batch.X.shape[1 - spec.feature_axis])
            theta, opt_state = optimizer.step(theta, result.grads, opt_state)
            net_state = result.state
            steps += 1
        count = sum(b.X.shape[1 - spec.feature_axis] for b in batches)
        costs.append(math.fsum(weighted) / count if count else math.nan)
        if on_epoch is not None:
            view = MappingProxyType(dict(theta))  # read-only, whatever the optimizer returns
            on_epoch(EpochResult(epoch, costs[-1], view, net_state, opt_state, steps))
    return TrainingResult(MappingProxyType(dict(theta)), net_state, tuple(costs), opt_state, steps)


def initialize_parameters(layers_dims: Sequence[int], seed: int = 3) -> Params:
    """The course's He initialisation: for l = 1..L-1, in order,
    ``W_l = randn(n_l, n_(l-1)) * sqrt(2 / n_(l-1))`` and ``b_l = 0``.

    The course calls ``np.random.seed(3)`` and ``np.random.randn``; ``RandomState(seed).randn``
    draws the same numbers from a private stream, leaving the global RNG alone (course notes,
    opt_utils_v1a.py ``initialize_parameters``). b has shape (n_l,) here, (n_l, 1) in the course.
    """
    dims = _check_dims(layers_dims, minimum_layers=1)
    rs = np.random.RandomState(check_int(seed, "seed", minimum=0))
    params: dict[str, Float64Array] = {}
    for layer in range(1, len(dims)):
        params[f"W{layer}"] = frozen(
            rs.randn(dims[layer], dims[layer - 1]) * np.sqrt(2 / dims[layer - 1])
        )
        params[f"b{layer}"] = frozen(np.zeros(dims[layer]))
    return MappingProxyType(params)


def _check_dims(layers_dims: object, *, minimum_layers: int) -> tuple[int, ...]:
    if isinstance(layers_dims, (str, bytes)) or not isinstance(layers_dims, Sequence):
        raise TypeError(f"layers_dims must be a sequence of integers, got {type(layers_dims)}")
    dims = tuple(check_int(n, f"layers_dims[{i}]", minimum=1) for i, n in enumerate(layers_dims))
    if len(dims) < minimum_layers + 1:
        raise ValueError(
            f"layers_dims must have at least {minimum_layers + 1} entries, got {list(dims)}"
        )
    return dims


@dataclass(frozen=True)
class CourseModelResult:
    """The course's trained ``parameters`` and the cost of every epoch (the course plots every
    100th: ``costs[::100]``); `spec` is the network the parameters belong to."""

    parameters: Params
    costs: tuple[float, ...]
    spec: NetworkSpec


COURSE_OPTIMIZERS = ("gd", "momentum", "adam")


def model(  # noqa: PLR0917 -- the course's positional signature
    X: ArrayLike,
    Y: ArrayLike,
    layers_dims: Sequence[int],
    optimizer: str,
    learning_rate: float = 0.0007,
    mini_batch_size: int = 64,
    beta: float = 0.9,
    beta1: float = 0.9,
    beta2: float = 0.999,
    epsilon: float = 1e-8,
    num_epochs: int = 10000,
    *,
    seed: int = 10,
    init_seed: int = 3,
) -> CourseModelResult:
    """The course notes' 3-layer model: LINEAR -> RELU -> LINEAR -> RELU -> LINEAR -> SIGMOID.

    X has shape (n_x, m) and Y (1, m) with 0/1 labels (integer, floating or boolean);
    layers_dims = [n_x, n_h1, n_h2, 1].
    Parameters start from `initialize_parameters(layers_dims, init_seed)` (the course's seed
    3); epoch e uses the mini-batches of seed ``seed + e`` (the course's seed = 10, incremented
    before each epoch); the loss is the mean binary cross-entropy of the batch; optimizer
    "gd" is W <- W - lr dW, "momentum" the course's v = beta v + (1 - beta) dW, "adam" the
    course's bias-corrected Adam with its own step counter t (`reference.optimizers`). Returns
    the parameters and the cost (average over the m examples) of every epoch; nothing is
    printed or plotted.
    """
    dims = _check_dims(layers_dims, minimum_layers=3)
    if len(dims) != 4 or dims[-1] != 1:
        raise ValueError(
            "layers_dims must be [n_x, n_h1, n_h2, 1], the course's 3-layer model with one "
            f"sigmoid output, got {list(dims)}"
        )
    name: object = optimizer  # checked as an object: a list would not even hash
    if not isinstance(name, str) or name not in COURSE_OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {list(COURSE_OPTIMIZERS)}, got {optimizer!r}")
    x = as_float64_array(X, "X")
    if x.ndim != 2 or x.shape[0] != dims[0]:
        raise ValueError(f"X must have shape ({dims[0]}, m) = (layers_dims[0], m), got {x.shape}")
    y = as_float64_labels(Y, "Y")  # the course's labels may be boolean
    if y.ndim != 2 or y.shape != (1, x.shape[1]):
        raise ValueError(f"Y must have shape (1, m) = (1, {x.shape[1]}), got shape {y.shape}")
    # Checked here so that a bad init_seed is named as such, not as initialize_parameters' seed.
    init = check_int(init_seed, "init_seed", minimum=0)
    spec = NetworkSpec(dims[0], dims[1:3], 1, activation="relu", output="sigmoid", feature_axis=0)
    if optimizer == "gd":
        opt: Optimizer[Any] = make_optimizer("gd", learning_rate=learning_rate)
    elif optimizer == "momentum":
        opt = make_optimizer("momentum", learning_rate=learning_rate, beta=beta, form="course")
    else:
        opt = make_optimizer(
            "adam",
            learning_rate=learning_rate,
            beta1=beta1,
            beta2=beta2,
            epsilon=epsilon,
            form="explicit",
        )
    result = train(
        spec,
        initialize_parameters(dims, init),
        x,
        y,
        optimizer=opt,
        num_epochs=num_epochs,
        mini_batch_size=mini_batch_size,
        seed=seed,
    )
    return CourseModelResult(result.params, result.costs, spec)
