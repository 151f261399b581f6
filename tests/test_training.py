"""Training: the loop learns separable problems, is reproducible and pure, and the course
notes' 3-layer model() is reproduced bit for bit.

The course's `model()` is kept below verbatim (shared/seeds/000_dd8828162062c767.txt, as source
text run with exec, so that neither the formatter nor the linter touches a character of it). The
functions it calls are the course's (opt_utils_v1a.py of the Optimization Methods assignment,
e.g. nguyenlinhvn512/Optimization-Methods) restated below with the same operations in the same
order; its `random_mini_batches` is the reference's, which tests/test_minibatch.py proves equal
to the course's bit for bit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from reference import network as net
from reference import training
from reference.layers import BatchNormConfig
from reference.minibatch import random_mini_batches
from reference.optimizers import AdamState, make_optimizer
from reference.training import initialize_parameters, model, train

Array = NDArray[np.float64]
U = 2.0**-53
E_F = 8 * U  # exp/log to 4 ulp (central_differences.E_F, measured in test_layer_gradients.py)

# The course notes, "Mini-Batch Code" section: model(), unchanged.
COURSE_MODEL_SOURCE = '''\
def model(X, Y, layers_dims, optimizer, learning_rate = 0.0007, mini_batch_size = 64, beta = 0.9,
          beta1 = 0.9, beta2 = 0.999,  epsilon = 1e-8, num_epochs = 10000, print_cost = True):
    """
    3-layer neural network model which can be run in different optimizer modes.
    
    Arguments:
    X -- input data, of shape (2, number of examples)
    Y -- true "label" vector (1 for blue dot / 0 for red dot), of shape (1, number of examples)
    layers_dims -- python list, containing the size of each layer
    learning_rate -- the learning rate, scalar.
    mini_batch_size -- the size of a mini batch
    beta -- Momentum hyperparameter
    beta1 -- Exponential decay hyperparameter for the past gradients estimates 
    beta2 -- Exponential decay hyperparameter for the past squared gradients estimates 
    epsilon -- hyperparameter preventing division by zero in Adam updates
    num_epochs -- number of epochs
    print_cost -- True to print the cost every 1000 epochs

    Returns:
    parameters -- python dictionary containing your updated parameters 
    """

    L = len(layers_dims)             # number of layers in the neural networks
    costs = []                       # to keep track of the cost
    t = 0                            # initializing the counter required for Adam update
    seed = 10                        # For grading purposes, so that your "random" minibatches are the same as ours
    m = X.shape[1]                   # number of training examples
    
    # Initialize parameters
    parameters = initialize_parameters(layers_dims)

    # Initialize the optimizer
    if optimizer == "gd":
        pass # no initialization required for gradient descent
    elif optimizer == "momentum":
        v = initialize_velocity(parameters)
    elif optimizer == "adam":
        v, s = initialize_adam(parameters)
    
    # Optimization loop
    for i in range(num_epochs):
        
        # Define the random minibatches. We increment the seed to reshuffle differently the dataset after each epoch
        seed = seed + 1
        minibatches = random_mini_batches(X, Y, mini_batch_size, seed)
        cost_total = 0
        
        for minibatch in minibatches:

            # Select a minibatch
            (minibatch_X, minibatch_Y) = minibatch

            # Forward propagation
            a3, caches = forward_propagation(minibatch_X, parameters)

            # Compute cost and add to the cost total
            cost_total += compute_cost(a3, minibatch_Y)

            # Backward propagation
            grads = backward_propagation(minibatch_X, minibatch_Y, caches)

            # Update parameters
            if optimizer == "gd":
                parameters = update_parameters_with_gd(parameters, grads, learning_rate)
            elif optimizer == "momentum":
                parameters, v = update_parameters_with_momentum(parameters, grads, v, beta, learning_rate)
            elif optimizer == "adam":
                t = t + 1 # Adam counter
                parameters, v, s = update_parameters_with_adam(parameters, grads, v, s,
                                                               t, learning_rate, beta1, beta2,  epsilon)
        cost_avg = cost_total / m
        
        # Print the cost every 1000 epoch
        if print_cost and i % 1000 == 0:
            print ("Cost after epoch %i: %f" %(i, cost_avg))
        if print_cost and i % 100 == 0:
            costs.append(cost_avg)
                
    # plot the cost
    plt.plot(costs)
    plt.ylabel('cost')
    plt.xlabel('epochs (per 100)')
    plt.title("Learning rate = " + str(learning_rate))
    plt.show()

    return parameters
'''  # noqa: E501, W291, W293


@contextmanager
def global_rng_restored() -> Iterator[None]:
    """Save NumPy's global RNG state and put it back afterwards (the course reseeds it)."""
    state = np.random.get_state()  # noqa: NPY002 -- the legacy global state is the subject
    try:
        yield
    finally:
        np.random.set_state(state)  # noqa: NPY002 -- restoring the legacy global state


class Course:
    """The course's helper functions (opt_utils_v1a.py), operation for operation, recording
    every (a3, Y, compute_cost) of a run."""

    def __init__(self) -> None:
        self.costs: list[tuple[Array, Array, float]] = []

    @staticmethod
    def initialize_parameters(layer_dims: list[int]) -> dict[str, Array]:
        np.random.seed(3)  # noqa: NPY002 -- the course's own call
        parameters = {}
        for layer in range(1, len(layer_dims)):
            parameters["W" + str(layer)] = np.random.randn(  # noqa: NPY002 -- the course's
                layer_dims[layer], layer_dims[layer - 1]
            ) * np.sqrt(2 / layer_dims[layer - 1])
            parameters["b" + str(layer)] = np.zeros((layer_dims[layer], 1))
        return parameters

    def compute_cost(self, a3: Array, Y: Array) -> float:
        with np.errstate(divide="ignore"):  # the course's log(0) when a3 rounds to 0 or 1
            logprobs = np.multiply(-np.log(a3), Y) + np.multiply(-np.log(1 - a3), 1 - Y)
        cost_total = float(np.sum(logprobs))
        self.costs.append((a3, Y, cost_total))
        return cost_total

    @staticmethod
    def forward_propagation(
        X: Array, parameters: dict[str, Array]
    ) -> tuple[Array, tuple[Any, ...]]:
        W1, b1, W2, b2 = parameters["W1"], parameters["b1"], parameters["W2"], parameters["b2"]
        W3, b3 = parameters["W3"], parameters["b3"]
        z1 = np.dot(W1, X) + b1
        a1 = np.maximum(0, z1)
        z2 = np.dot(W2, a1) + b2
        a2 = np.maximum(0, z2)
        z3 = np.dot(W3, a2) + b3
        a3 = 1 / (1 + np.exp(-z3))
        return a3, (z1, a1, W1, b1, z2, a2, W2, b2, z3, a3, W3, b3)

    @staticmethod
    def backward_propagation(X: Array, Y: Array, cache: tuple[Any, ...]) -> dict[str, Array]:
        m = X.shape[1]
        (_z1, a1, _W1, _b1, _z2, a2, W2, _b2, _z3, a3, W3, _b3) = cache
        dz3 = 1.0 / m * (a3 - Y)
        dW3 = np.dot(dz3, a2.T)
        db3 = np.sum(dz3, axis=1, keepdims=True)
        da2 = np.dot(W3.T, dz3)
        dz2 = np.multiply(da2, np.int64(a2 > 0))
        dW2 = np.dot(dz2, a1.T)
        db2 = np.sum(dz2, axis=1, keepdims=True)
        da1 = np.dot(W2.T, dz2)
        dz1 = np.multiply(da1, np.int64(a1 > 0))
        dW1 = np.dot(dz1, X.T)
        db1 = np.sum(dz1, axis=1, keepdims=True)
        return {"dW3": dW3, "db3": db3, "dW2": dW2, "db2": db2, "dW1": dW1, "db1": db1}

    @staticmethod
    def update_parameters_with_gd(
        parameters: dict[str, Array], grads: dict[str, Array], learning_rate: float
    ) -> dict[str, Array]:
        for k in list(parameters):
            parameters[k] = parameters[k] - learning_rate * grads["d" + k]
        return parameters

    @staticmethod
    def initialize_velocity(parameters: dict[str, Array]) -> dict[str, Array]:
        return {"d" + k: np.zeros(v.shape) for k, v in parameters.items()}

    @staticmethod
    def update_parameters_with_momentum(
        parameters: dict[str, Array],
        grads: dict[str, Array],
        v: dict[str, Array],
        beta: float,
        learning_rate: float,
    ) -> tuple[dict[str, Array], dict[str, Array]]:
        for k in list(parameters):
            v["d" + k] = beta * v["d" + k] + (1 - beta) * grads["d" + k]
            parameters[k] = parameters[k] - learning_rate * v["d" + k]
        return parameters, v

    @staticmethod
    def initialize_adam(parameters: dict[str, Array]) -> tuple[dict[str, Array], dict[str, Array]]:
        zeros = {"d" + k: np.zeros(v.shape) for k, v in parameters.items()}
        return zeros, {k: z.copy() for k, z in zeros.items()}

    @staticmethod
    def update_parameters_with_adam(
        parameters: dict[str, Array],
        grads: dict[str, Array],
        v: dict[str, Array],
        s: dict[str, Array],
        t: int,
        learning_rate: float,
        beta1: float,
        beta2: float,
        epsilon: float,
    ) -> tuple[dict[str, Array], dict[str, Array], dict[str, Array]]:
        # The course writes 1 - np.power(beta1, t). NumPy's float64 power kernel depends on the
        # CPU: the C library's pow on most machines, SVML's on AVX-512 ones, an ulp apart for
        # some t (0.9**12, 0.999**7), so the course's own results differ by machine. Here is the
        # C library's, Python's beta1**t: the course's value where NumPy uses the C library, and
        # the reference's (optimizers._common.one_minus_power) on every machine.
        for k in list(parameters):
            d = "d" + k
            v[d] = beta1 * v[d] + (1 - beta1) * grads[d]
            v_corrected = v[d] / (1 - beta1**t)
            s[d] = beta2 * s[d] + (1 - beta2) * np.power(grads[d], 2)
            s_corrected = s[d] / (1 - beta2**t)
            parameters[k] = parameters[k] - learning_rate * v_corrected / (
                np.sqrt(s_corrected) + epsilon
            )
        return parameters, v, s

    def run(self, X: Array, Y: Array, layers_dims: list[int], optimizer: str, **kw: Any) -> Any:
        """The course's model() itself, with these functions and no plotting."""
        namespace: dict[str, Any] = {
            "np": np,
            "plt": SimpleNamespace(
                plot=_ignore, ylabel=_ignore, xlabel=_ignore, title=_ignore, show=_ignore
            ),
            "random_mini_batches": lambda X, Y, size, seed: [
                tuple(b) for b in random_mini_batches(X, Y, size, seed)
            ],
        }
        for name in dir(self):
            if not name.startswith("_") and name not in {"costs", "run"}:
                namespace[name] = getattr(self, name)
        exec(COURSE_MODEL_SOURCE, namespace)  # the course's code, verbatim
        with global_rng_restored():
            return namespace["model"](X, Y, layers_dims, optimizer, print_cost=False, **kw)


def _ignore(*_: Any) -> None:
    """A stand-in for matplotlib: the course plots its costs."""


def moons(m: int, seed: int) -> tuple[Array, Array]:
    """Two interleaving half circles with noise 0.2, X (2, m), Y (1, m): the course's
    sklearn.datasets.make_moons(n_samples=300, noise=.2) toy set, drawn from a Generator."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, m)
    angle = rng.uniform(0, np.pi, m)
    x = np.where(labels == 0, np.cos(angle), 1 - np.cos(angle))
    y = np.where(labels == 0, np.sin(angle), 0.5 - np.sin(angle))
    X = np.stack([x, y]) + 0.2 * rng.standard_normal((2, m))
    return X, labels.reshape(1, m).astype(np.float64)


def course_cost_tolerance(records: list[tuple[Array, Array, float]], m: int) -> float:
    """How far the course's epoch cost may be from the reference's, both computed from the
    same a3 = sigmoid(z3) (the parameters agree bit for bit).

    Course, per example: -log(a) with a to E_F + 2u relative errs by (E_F + 2u) + (E_F + u)
    |log a|; -log(1 - a) errs by (E_F + 2u) a / (1 - a) + u + (E_F + u) |log(1 - a)| (1 - a
    inherits a's absolute error). Reference: 2 E_F + u |l| per example (the sigmoid
    cross-entropy check of test_layer_gradients). The sums: the course's np.sum and running
    total g_m sum|l|, the reference's fsum, * n_b and / m 4u.
    """
    total = 0.0
    for a, y, _ in records:
        err_course = np.where(
            y == 1,
            (E_F + 2 * U) + (E_F + U) * np.abs(np.log(a)),
            (E_F + 2 * U) * a / (1 - a) + U + (E_F + U) * np.abs(np.log1p(-a)),
        )
        loss = np.where(y == 1, -np.log(a), -np.log1p(-a))
        total += math.fsum((err_course + 2 * E_F + U * loss).ravel())
        total += (m * U / (1 - m * U) + 4 * U) * math.fsum(loss.ravel())
    return 2.0 * total / m  # SAFETY = 2 for the first-order terms


@pytest.mark.parametrize(
    ("optimizer", "hyper"),
    [
        ("gd", {}),
        ("momentum", {}),
        ("adam", {}),
        # Non-default betas and epsilon reach the update (the defaults alone would not show it).
        ("momentum", {"beta": 0.5}),
        ("adam", {"beta1": 0.8, "beta2": 0.99, "epsilon": 1e-2}),
    ],
)
def test_course_model_is_reproduced_bit_for_bit(optimizer: str, hyper: dict[str, Any]) -> None:
    X, Y = moons(100, seed=0)
    course = Course()
    epochs, size, lr = 6, 32, 0.01
    kw: dict[str, Any] = {"learning_rate": lr, "mini_batch_size": size, "num_epochs": epochs}
    params = course.run(X, Y, [2, 5, 3, 1], optimizer, **kw, **hyper)
    ours = model(X, Y, [2, 5, 3, 1], optimizer, **kw, **hyper)
    for k, value in params.items():
        assert np.array_equal(value.reshape(-1), ours.parameters[k].reshape(-1)), k
    per_epoch = math.ceil(100 / size)
    assert len(course.costs) == epochs * per_epoch
    for e in range(epochs):
        records = course.costs[e * per_epoch : (e + 1) * per_epoch]
        course_cost = sum(r[2] for r in records) / 100  # the course's cost_total / m
        assert abs(ours.costs[e] - course_cost) <= course_cost_tolerance(records, 100)


def test_model_defaults_are_the_courses(monkeypatch: pytest.MonkeyPatch) -> None:
    """learning_rate 0.0007 and mini_batch_size 64 (m = 65 > 64, so the size shows), and
    num_epochs 10000, seed 10: what model hands to train (a spy; 10000 epochs would be slow)."""
    X, Y = moons(65, seed=2)
    default = model(X, Y, [2, 3, 2, 1], "gd", num_epochs=1)
    explicit = model(
        X, Y, [2, 3, 2, 1], "gd", learning_rate=0.0007, mini_batch_size=64, num_epochs=1
    )
    assert default.costs == explicit.costs
    assert all(np.array_equal(default.parameters[k], v) for k, v in explicit.parameters.items())
    seen: dict[str, Any] = {}

    def spy(*args: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return train(*args, **{**kwargs, "num_epochs": 0})

    monkeypatch.setattr(training, "train", spy)
    model(X, Y, [2, 3, 2, 1], "gd")
    assert (seen["num_epochs"], seen["mini_batch_size"], seen["seed"]) == (10000, 64, 10)


def test_model_starts_from_init_seed_and_returns_its_spec() -> None:
    X, Y = moons(10, seed=0)
    result = model(X, Y, [2, 4, 3, 1], "adam", num_epochs=0, init_seed=5)
    assert result.costs == ()
    want = initialize_parameters([2, 4, 3, 1], seed=5)
    assert all(np.array_equal(result.parameters[k], v) for k, v in want.items())
    assert not np.array_equal(result.parameters["W1"], initialize_parameters([2, 4, 3, 1])["W1"])
    assert result.spec == net.NetworkSpec(
        2, (4, 3), 1, activation="relu", output="sigmoid", feature_axis=0
    )


def test_course_model_cost_decreases_on_the_toy_set() -> None:
    X, Y = moons(300, seed=1)
    result = model(X, Y, [2, 5, 2, 1], "adam", learning_rate=0.0007, num_epochs=150)
    assert len(result.costs) == 150
    assert result.costs[-1] < 0.9 * result.costs[0]
    first, last = np.mean(result.costs[:10]), np.mean(result.costs[-10:])
    assert last < first


def test_initialize_parameters_is_the_courses_and_leaves_the_global_rng() -> None:
    before = np.random.get_state(legacy=False)  # noqa: NPY002 -- the global state is the subject
    params = initialize_parameters([2, 4, 1])
    after = np.random.get_state(legacy=False)  # noqa: NPY002
    assert np.array_equal(before["state"]["key"], after["state"]["key"])
    assert before["state"]["pos"] == after["state"]["pos"]
    with global_rng_restored():
        want = Course.initialize_parameters([2, 4, 1])
    for k, value in want.items():
        assert np.array_equal(params[k], value.reshape(params[k].shape))


def test_model_rejects_bad_input() -> None:
    X, Y = moons(20, seed=0)
    with pytest.raises(
        ValueError, match=r"^optimizer must be one of \['gd', 'momentum', 'adam'\], got 'rmsprop'$"
    ):
        model(X, Y, [2, 3, 3, 1], "rmsprop")
    course = r"^layers_dims must be \[n_x, n_h1, n_h2, 1\], the course's 3-layer model with one "
    with pytest.raises(ValueError, match=course + r"sigmoid output, got \[2, 3, 1, 1, 1\]$"):
        model(X, Y, [2, 3, 1, 1, 1], "gd")
    with pytest.raises(ValueError, match=course):
        model(X, Y, [2, 3, 3, 2], "gd")
    with pytest.raises(
        ValueError, match=r"^layers_dims must have at least 4 entries, got \[2, 3, 1\]$"
    ):
        model(X, Y, [2, 3, 1], "gd")
    with pytest.raises(
        TypeError, match=r"^layers_dims must be a sequence of integers, got <class 'str'>$"
    ):
        model(X, Y, bad("2331"), "gd")
    with pytest.raises(ValueError, match=r"^layers_dims\[1\] must be an integer >= 1, got 0$"):
        model(X, Y, [2, 0, 3, 1], "gd")
    with pytest.raises(ValueError, match=r"^Y must have shape \(1, m\)"):
        model(X, Y.ravel(), [2, 3, 3, 1], "gd")
    with pytest.raises(
        ValueError, match=r"^Y must have shape \(1, m\) = \(1, 20\), got shape \(1, 19\)$"
    ):
        model(X, Y[:, 1:], [2, 3, 3, 1], "gd")  # two axes, but not (1, m)
    with pytest.raises(ValueError, match=r"^X must have shape \(2, m\)"):
        model(X.T, Y, [2, 3, 3, 1], "gd", num_epochs=1)
    with pytest.raises(ValueError, match=r"^X must be finite"):
        model(X * np.nan, Y, [2, 3, 3, 1], "gd")
    with pytest.raises(ValueError, match=r"^Y must be finite"):
        model(X, Y * np.nan, [2, 3, 3, 1], "gd")
    # The seed of the initial weights is named as model's argument, not initialize_parameters'.
    with pytest.raises(ValueError, match=r"^init_seed must be an integer >= 0, got -1$"):
        model(X, Y, [2, 3, 3, 1], "gd", init_seed=-1)
    with pytest.raises(TypeError, match=r"^init_seed must be an integer, got float 3\.0$"):
        model(X, Y, [2, 3, 3, 1], "gd", init_seed=3.0)  # type: ignore[arg-type]  # rejected


def test_initialize_parameters_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0, got -1$"):
        initialize_parameters([2, 4, 1], seed=-1)
    with pytest.raises(ValueError, match=r"^layers_dims must have at least 2 entries, got \[2\]$"):
        initialize_parameters([2])
    with pytest.raises(TypeError, match=r"^layers_dims must be a sequence of integers"):
        initialize_parameters(bad(3))


# --- the training loop ---------------------------------------------------------------------


def blobs(m: int, k: int, seed: int) -> tuple[Array, NDArray[np.int64]]:
    """k well-separated clusters in 2-D: centres 4 apart on a circle, noise 0.3."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, m)
    angles = 2 * np.pi * np.arange(k) / k
    centres = 4 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    return centres[labels] + 0.3 * rng.standard_normal((m, 2)), labels


@pytest.mark.parametrize(
    ("case", "optimizer"),
    [
        ("plain", make_optimizer("adam", learning_rate=0.01)),
        ("bn+dropout+decay", make_optimizer("momentum", learning_rate=0.1, beta=0.9)),
        ("sigmoid", make_optimizer("sgd", learning_rate=0.5)),
    ],
)
def test_separable_problem_is_learnt(case: str, optimizer: Any) -> None:
    X, labels = blobs(64, 3, seed=4)
    kwargs: dict[str, Any] = {}
    if case == "bn+dropout+decay":
        kwargs = {
            "batch_norm": BatchNormConfig(convention="textbook"),
            "dropout": net.DropoutSpec(0.1),
            "weight_decay": 1e-3,
        }
    s = net.NetworkSpec(2, (8, 8), 3, **kwargs)
    y: NDArray[Any] = labels
    if case == "sigmoid":  # binary, the course's layout and output
        s = net.NetworkSpec(2, (8,), 1, activation="sigmoid", output="sigmoid", feature_axis=0)
        X, y = X.T, (labels == 0).astype(np.float64).reshape(1, -1)
    params = net.init_params(s, np.random.default_rng(0))
    result = train(s, params, X, y, optimizer=optimizer, num_epochs=60, mini_batch_size=16)
    assert result.steps == 60 * 4
    assert result.costs[-1] < result.costs[0]
    assert net.accuracy(s, result.params, result.state, X, y) == 1.0
    assert (
        net.loss(s, result.params, result.state, X, y).loss
        < net.loss(s, params, net.init_state(s), X, y).loss
    )


def test_training_is_reproducible_and_pure() -> None:
    X, labels = blobs(40, 2, seed=5)
    s = net.NetworkSpec(2, (4,), 2, dropout=net.DropoutSpec(0.3), batch_norm=BatchNormConfig())
    params = {k: np.array(v) for k, v in net.init_params(s, np.random.default_rng(0)).items()}
    snapshot = ({k: v.copy() for k, v in params.items()}, X.copy(), labels.copy())
    opt = make_optimizer("adam", learning_rate=0.01)
    runs = [
        train(s, params, X, labels, optimizer=opt, num_epochs=3, mini_batch_size=16, seed=7)
        for _ in range(2)
    ]
    assert runs[0].costs == runs[1].costs
    assert all(np.array_equal(runs[0].params[k], runs[1].params[k]) for k in params)
    assert all(np.array_equal(params[k], snapshot[0][k]) for k in params)
    zero = train(s, params, X, labels, optimizer=opt, num_epochs=0)
    assert zero.costs == ()
    assert not any(np.shares_memory(zero.params[k], params[k]) for k in params)
    assert np.array_equal(X, snapshot[1])
    assert np.array_equal(labels, snapshot[2])
    other = train(s, params, X, labels, optimizer=opt, num_epochs=3, mini_batch_size=16, seed=8)
    assert other.costs != runs[0].costs


def test_epoch_cost_is_the_average_over_examples() -> None:
    """Replay one epoch by hand: batches of seed + 1, the loss before each step, weighted by
    the batch sizes (16, 16, 8) and divided by m."""
    X, labels = blobs(40, 2, seed=6)
    s = net.NetworkSpec(2, (4,), 2)
    params = net.init_params(s, np.random.default_rng(0))
    opt = make_optimizer("sgd", learning_rate=0.1)
    result = train(s, params, X, labels, optimizer=opt, num_epochs=1, mini_batch_size=16, seed=3)
    theta, state, weighted = params, net.init_state(s), []
    opt_state = opt.init(theta)
    for batch in random_mini_batches(X, labels, 16, 4, axis=0):
        g = net.gradient(s, theta, state, batch.X, batch.Y)
        weighted.append(g.loss * batch.X.shape[0])
        theta, opt_state = opt.step(theta, g.grads, opt_state)
    assert [len(b.X) for b in random_mini_batches(X, labels, 16, 4, axis=0)] == [16, 16, 8]
    assert result.costs == (math.fsum(weighted) / 40,)
    assert all(np.array_equal(result.params[k], theta[k]) for k in theta)
    default_seed = train(s, params, X, labels, optimizer=opt, num_epochs=1, mini_batch_size=16)
    seed_0 = train(s, params, X, labels, optimizer=opt, num_epochs=1, mini_batch_size=16, seed=0)
    assert default_seed.costs == seed_0.costs != result.costs  # seed defaults to 0


def test_batch_norm_needs_two_examples_per_batch() -> None:
    X, labels = blobs(33, 2, seed=0)
    s = net.NetworkSpec(2, (4,), 2, batch_norm=BatchNormConfig())
    params = net.init_params(s, np.random.default_rng(0))
    opt = make_optimizer("sgd", learning_rate=0.1)
    with pytest.raises(
        ValueError, match=r"^X must hold at least 2 examples in training mode with batch norm"
    ):
        train(s, params, X, labels, optimizer=opt, num_epochs=1, mini_batch_size=16)
    ok = train(
        s, params, X, labels, optimizer=opt, num_epochs=1, mini_batch_size=16, drop_last=True
    )
    assert ok.steps == 2


def test_train_defaults_to_batches_of_64_and_returns_the_optimizer_state() -> None:
    """m = 65: one epoch is 2 steps with batches of 64 (64 + 1), 1 with anything >= 65; the
    optimizer state returned is the one after those steps (Adam counts them in t)."""
    X, labels = blobs(65, 2, seed=1)
    s = net.NetworkSpec(2, (3,), 2)
    params = net.init_params(s, np.random.default_rng(0))
    opt = make_optimizer("adam", learning_rate=0.01)
    default = train(s, params, X, labels, optimizer=opt, num_epochs=1)
    explicit = train(s, params, X, labels, optimizer=opt, num_epochs=1, mini_batch_size=64)
    assert default.steps == explicit.steps == 2
    assert default.costs == explicit.costs
    assert isinstance(default.optimizer_state, AdamState)
    assert default.optimizer_state.t == 2
    theta, opt_state = params, opt.init(params)
    for batch in random_mini_batches(X, labels, 64, 1, axis=0):
        g = net.gradient(s, theta, net.init_state(s), batch.X, batch.Y)
        theta, opt_state = opt.step(theta, g.grads, opt_state)
    for k in theta:
        assert np.array_equal(default.optimizer_state.v[k], opt_state.v[k]), k
        assert np.array_equal(default.optimizer_state.s[k], opt_state.s[k]), k


def test_train_continues_from_the_given_state() -> None:
    """Batch norm's running statistics and batch count go on from `state`, not init_state."""
    X, labels = blobs(20, 2, seed=2)
    s = net.NetworkSpec(2, (3,), 2, batch_norm=BatchNormConfig())
    params = net.init_params(s, np.random.default_rng(0))
    opt = make_optimizer("sgd", learning_rate=0.1)
    given = train(s, params, X, labels, optimizer=opt, num_epochs=2, mini_batch_size=10).state
    assert given.batch_norm[0].num_batches_tracked == 4
    assert train(s, params, X, labels, optimizer=opt, num_epochs=0, state=given).state is given
    got = train(s, params, X, labels, optimizer=opt, num_epochs=1, mini_batch_size=10, state=given)
    theta, state = params, given  # replay the epoch (seed 0 + 1) from the given state
    for batch in random_mini_batches(X, labels, 10, 1, axis=0):
        g = net.gradient(s, theta, state, batch.X, batch.Y)
        theta, state = opt.step(theta, g.grads, opt.init(theta))[0], g.state
    assert got.state.batch_norm[0].num_batches_tracked == 6
    for field in ("mean", "var"):
        value = getattr(got.state.batch_norm[0].running, field)
        assert np.array_equal(value, getattr(state.batch_norm[0].running, field)), field


def test_train_course_layout_takes_labels_of_shape_m() -> None:
    """feature_axis 0: X (features, m) with class indices y (m,); the examples are the last
    axis of each array (X's axis 1 is y's axis 0) and the run equals the (m, features) one."""
    X, labels = blobs(10, 2, seed=3)
    opt = make_optimizer("sgd", learning_rate=0.1)
    rows = net.NetworkSpec(2, (3,), 2)
    columns = net.NetworkSpec(2, (3,), 2, feature_axis=0)
    params = net.init_params(rows, np.random.default_rng(0))
    want = train(rows, params, X, labels, optimizer=opt, num_epochs=2, mini_batch_size=4)
    got = train(columns, params, X.T, labels, optimizer=opt, num_epochs=2, mini_batch_size=4)
    assert got.costs == want.costs
    assert got.steps == 6


def test_an_epoch_without_batches_costs_nan() -> None:
    """drop_last with mini_batch_size > m leaves no batch: no step, and no example to average."""
    X, labels = blobs(10, 2, seed=0)
    s = net.NetworkSpec(2, (), 2)
    params = net.init_params(s, np.random.default_rng(0))
    opt = make_optimizer("sgd", learning_rate=0.1)
    result = train(
        s, params, X, labels, optimizer=opt, num_epochs=1, mini_batch_size=16, drop_last=True
    )
    assert result.steps == 0
    assert len(result.costs) == 1
    assert math.isnan(result.costs[0])
    assert all(np.array_equal(result.params[k], params[k]) for k in params)


def test_on_epoch_sees_each_epoch_as_a_shorter_run_ends() -> None:
    """The callback gets epochs 1..n in order; epoch e's params, state, optimizer state and
    steps are those a run of e epochs returns, bit for bit, and its cost is costs[e - 1]."""
    X, labels = blobs(20, 2, seed=7)
    s = net.NetworkSpec(2, (3,), 2, batch_norm=BatchNormConfig(), dropout=net.DropoutSpec(0.2))
    params = net.init_params(s, np.random.default_rng(0))
    opt = make_optimizer("adam", learning_rate=0.01)
    seen: list[training.EpochResult] = []
    result = train(
        s,
        params,
        X,
        labels,
        optimizer=opt,
        num_epochs=3,
        mini_batch_size=8,
        seed=2,
        on_epoch=seen.append,
    )
    assert [e.epoch for e in seen] == [1, 2, 3]
    assert tuple(e.cost for e in seen) == result.costs
    assert [e.steps for e in seen] == [3, 6, 9]  # 8 + 8 + 4 examples per epoch
    for e in seen:
        short = train(
            s, params, X, labels, optimizer=opt, num_epochs=e.epoch, mini_batch_size=8, seed=2
        )
        assert e.steps == short.steps
        assert all(np.array_equal(e.params[k], short.params[k]) for k in params)
        assert isinstance(e.optimizer_state, AdamState)
        assert e.optimizer_state.t == e.steps
        assert isinstance(short.optimizer_state, AdamState)
        for k in params:
            assert np.array_equal(e.optimizer_state.v[k], short.optimizer_state.v[k]), k
        running, want = e.state.batch_norm[0].running, short.state.batch_norm[0].running
        assert np.array_equal(running.mean, want.mean)
        assert np.array_equal(running.var, want.var)
    assert seen[-1].state is result.state
    assert seen[-1].optimizer_state is result.optimizer_state


def test_on_epoch_cannot_change_the_run() -> None:
    """With or without a callback, the same costs and parameters; the callback's parameters
    are read-only even when the optimizer returns a plain dict; what it returns is ignored."""

    class PlainDictSGD:
        """SGD whose step returns a plain, writable dict of writable arrays."""

        name = "plain-dict-sgd"

        def init(self, params: Any) -> None:
            return None

        def step(self, params: Any, grads: Any, state: None) -> tuple[dict[str, Array], None]:
            return {k: np.array(params[k] - 0.1 * grads[k]) for k in params}, state

    X, labels = blobs(12, 2, seed=8)
    s = net.NetworkSpec(2, (3,), 2)
    params = net.init_params(s, np.random.default_rng(1))
    opt: Any = PlainDictSGD()
    plain = train(s, params, X, labels, optimizer=opt, num_epochs=2, mini_batch_size=5)

    def meddle(epoch: training.EpochResult) -> object:
        with pytest.raises(TypeError):
            epoch.params["W1"] = np.zeros((3, 2))  # type: ignore[index]  # a read-only mapping
        return "ignored"

    watched = train(
        s, params, X, labels, optimizer=opt, num_epochs=2, mini_batch_size=5, on_epoch=meddle
    )
    assert watched.costs == plain.costs
    assert all(np.array_equal(watched.params[k], plain.params[k]) for k in params)


def test_on_epoch_is_not_called_without_epochs_and_sees_an_empty_one() -> None:
    """num_epochs = 0 calls nothing; an epoch without batches (drop_last, mini_batch_size > m)
    is still reported: cost nan, no step, the starting parameters."""
    X, labels = blobs(10, 2, seed=0)
    s = net.NetworkSpec(2, (), 2)
    params = net.init_params(s, np.random.default_rng(0))
    opt = make_optimizer("sgd", learning_rate=0.1)
    seen: list[training.EpochResult] = []
    train(s, params, X, labels, optimizer=opt, num_epochs=0, on_epoch=seen.append)
    assert seen == []
    train(
        s,
        params,
        X,
        labels,
        optimizer=opt,
        num_epochs=1,
        mini_batch_size=16,
        drop_last=True,
        on_epoch=seen.append,
    )
    (empty,) = seen
    assert (empty.epoch, empty.steps) == (1, 0)
    assert math.isnan(empty.cost)
    assert all(np.array_equal(empty.params[k], params[k]) for k in params)


def test_an_exception_in_on_epoch_ends_the_run() -> None:
    X, labels = blobs(10, 2, seed=0)
    s = net.NetworkSpec(2, (), 2)
    params = net.init_params(s, np.random.default_rng(0))
    opt = make_optimizer("sgd", learning_rate=0.1)
    seen: list[int] = []

    class StopError(Exception):
        pass

    def stop_after_two(epoch: training.EpochResult) -> None:
        seen.append(epoch.epoch)
        if epoch.epoch == 2:
            raise StopError

    with pytest.raises(StopError):
        train(s, params, X, labels, optimizer=opt, num_epochs=5, on_epoch=stop_after_two)
    assert seen == [1, 2]


def test_train_rejects_bad_input() -> None:
    X, labels = blobs(10, 2, seed=0)
    s = net.NetworkSpec(2, (), 2)
    params = net.init_params(s, np.random.default_rng(0))
    opt = make_optimizer("sgd", learning_rate=0.1)
    with pytest.raises(ValueError, match=r"^num_epochs must be an integer >= 0, got -1$"):
        train(s, params, X, labels, optimizer=opt, num_epochs=-1)
    with pytest.raises(ValueError, match=r"^seed must be an integer >= 0, got -1$"):
        train(s, params, X, labels, optimizer=opt, num_epochs=1, seed=-1)
    with pytest.raises(
        TypeError,
        match=r"^optimizer must have init\(params\) and step\(params, grads, state\) methods "
        r"\(reference\.optimizers\), got object$",
    ):
        train(s, params, X, labels, optimizer=bad(object()), num_epochs=1)
    with pytest.raises(TypeError, match=r"^on_epoch must be callable or None, got int$"):
        train(s, params, X, labels, optimizer=opt, num_epochs=1, on_epoch=bad(3))
    # Not None: "NoneType" would also be what a message naming type(None) says.
    with pytest.raises(TypeError, match=r"^spec must be a NetworkSpec, got str$"):
        train(bad("spec"), params, X, labels, optimizer=opt, num_epochs=1)
    with pytest.raises(ValueError, match=r"^X and Y must hold the same number of examples"):
        train(s, params, X, labels[:5], optimizer=opt, num_epochs=1)
    with pytest.raises(ValueError, match=r"^labels must be class indices in \[0, 2\)"):
        train(s, params, X, labels + 1, optimizer=opt, num_epochs=1)


def bad(value: object) -> Any:
    """A wrongly typed argument, passed on purpose (the type checker would refuse it)."""
    return value
