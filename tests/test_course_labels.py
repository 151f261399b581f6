"""The course's labels are accepted wherever labels are taken: boolean as well as 0/1 numbers.

The course builds labels as ``Y = np.random.randn(1, m) < 0.5`` (random_mini_batches' test
case) and computes with them as numbers (``np.multiply(-np.log(a3), Y)``). Booleans are labels
only: X and scores stay real numbers, and complex or string labels are refused by name.
"""

from __future__ import annotations

import numpy as np
import pytest

from reference import training
from reference.layers.losses import sigmoid_cross_entropy_forward, softmax_cross_entropy_forward
from reference.network import NetworkSpec, accuracy, gradient, init_params, init_state

RNG = np.random.RandomState(1)  # the course's legacy stream, privately
X = RNG.randn(2, 30)
Y = RNG.randn(1, 30) < 0.5  # the course's boolean labels


def test_the_course_model_takes_boolean_labels_as_0_and_1() -> None:
    # Bit for bit the run with the same labels as floats: costs and every parameter.
    by_bool = training.model(X, Y, [2, 3, 2, 1], "adam", num_epochs=3)
    by_float = training.model(X, Y.astype(np.float64), [2, 3, 2, 1], "adam", num_epochs=3)
    assert by_bool.costs == by_float.costs
    for name, value in by_float.parameters.items():
        assert by_bool.parameters[name].tobytes() == value.tobytes(), name


def test_network_gradient_and_accuracy_take_boolean_labels() -> None:
    spec = NetworkSpec(2, [4], 1, output="sigmoid", feature_axis=0)
    params = init_params(spec, np.random.default_rng(0))
    by_bool = gradient(spec, params, init_state(spec), X, Y)
    by_float = gradient(spec, params, init_state(spec), X, Y.astype(np.float64))
    assert by_bool.loss == by_float.loss
    for name, value in by_float.grads.items():
        assert by_bool.grads[name].tobytes() == value.tobytes(), name
    assert accuracy(spec, params, init_state(spec), X, Y) == accuracy(
        spec, params, init_state(spec), X, Y.astype(np.int64)
    )


def test_the_losses_take_boolean_labels() -> None:
    scores = np.linspace(-3.0, 3.0, 30).reshape(1, 30)
    loss, cache = sigmoid_cross_entropy_forward(scores, Y, class_axis=0)
    assert (loss, cache.labels.tobytes()) == (
        sigmoid_cross_entropy_forward(scores, Y.astype(np.float64), class_axis=0)[0],
        Y.astype(np.float64).tobytes(),
    )
    one_hot = np.stack([~Y[0], Y[0]], axis=1)  # (30, 2) boolean one-hot rows
    softmax_scores = np.linspace(-1.0, 1.0, 60).reshape(30, 2)
    assert (
        softmax_cross_entropy_forward(softmax_scores, one_hot)[0]
        == softmax_cross_entropy_forward(softmax_scores, one_hot.astype(np.float64))[0]
    )


@pytest.mark.parametrize(
    ("labels", "what"),
    [(Y + 0j, "complex dtype complex128"), (Y.astype(str), "string dtype <U5")],
)
def test_other_kinds_of_labels_are_refused_by_name(labels: np.ndarray, what: str) -> None:
    message = rf"must have a boolean, integer or floating dtype, got {what}$"
    with pytest.raises(TypeError, match=rf"^Y {message}"):
        training.model(X, labels, [2, 3, 2, 1], "gd", num_epochs=1)
    with pytest.raises(TypeError, match=rf"^labels {message}"):
        sigmoid_cross_entropy_forward(np.zeros((1, 30)), labels, class_axis=0)


def test_booleans_are_labels_only() -> None:
    with pytest.raises(
        TypeError, match=r"^X must have a real integer or floating dtype, got boolean dtype bool$"
    ):
        training.model(X > 0, Y, [2, 3, 2, 1], "gd", num_epochs=1)
    with pytest.raises(
        TypeError,
        match=r"^scores must have a real integer or floating dtype, got boolean dtype bool$",
    ):
        sigmoid_cross_entropy_forward(np.zeros((1, 30)) > 0, Y, class_axis=0)
