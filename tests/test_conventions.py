"""The named conventions hold the values their frameworks document (docs/conventions.md)."""

import dataclasses
from typing import Any

import numpy as np
import pytest

from reference.conventions import CONVENTIONS, Convention, get_convention

# name: (momentum, momentum weights, unbiased running var, eps, axis, momentum=None allowed),
# each checked against the framework's docs and code (sources in reference/conventions.py).
EXPECTED = {
    "pytorch": (0.1, "new", True, 1e-5, 1, True),
    "keras": (0.99, "old", False, 1e-3, -1, False),
    "tensorflow": (0.99, "old", True, 1e-3, -1, False),
    "flax": (0.99, "old", False, 1e-5, -1, False),
    "onnx": (0.9, "old", False, 1e-5, 1, False),
    "textbook": (0.9, "old", False, 1e-5, 0, False),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_convention_values(name: str) -> None:
    conv = CONVENTIONS[name]
    got = (
        conv.momentum,
        conv.momentum_weights,
        conv.unbiased_var,
        conv.eps,
        conv.axis,
        conv.cumulative_average,
    )
    assert got == EXPECTED[name]
    assert conv.name == name
    assert get_convention(name) is conv


def test_registry_is_exactly_the_documented_conventions() -> None:
    assert set(CONVENTIONS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_convention_cites_sources_and_states_a_formula(name: str) -> None:
    conv = CONVENTIONS[name]
    assert conv.sources
    assert all(conv.sources)
    assert "r_var" in conv.formula
    assert conv.applies_to


@pytest.mark.parametrize("name", ["pytorch", "keras", "tensorflow", "flax", "onnx"])
def test_framework_conventions_cite_the_framework_code(name: str) -> None:
    repo = {
        "pytorch": "pytorch/pytorch",
        "keras": "keras-team/keras",
        "tensorflow": "tensorflow/tensorflow",
        "flax": "google/flax",
        "onnx": "onnx/onnx",
    }[name]
    assert any(s.startswith(repo + ":") for s in CONVENTIONS[name].sources)
    assert any(s.startswith("https://") for s in CONVENTIONS[name].sources)


def test_weights_follow_what_momentum_weights() -> None:
    assert CONVENTIONS["pytorch"].weights(0.25) == (0.75, 0.25)  # momentum on the new value
    assert CONVENTIONS["keras"].weights(0.25) == (0.25, 0.75)  # momentum on the old value
    assert CONVENTIONS["textbook"].weights(0.9) == (0.9, 1.0 - 0.9)


def test_registry_and_conventions_are_read_only() -> None:
    registry: Any = CONVENTIONS
    with pytest.raises(TypeError):
        registry["mine"] = CONVENTIONS["pytorch"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        CONVENTIONS["pytorch"].momentum = 0.5  # type: ignore[misc]  # frozen on purpose


def test_get_convention_rejects_an_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"^convention must be one of") as info:
        get_convention("torch")
    message = str(info.value)
    assert "'torch'" in message
    for name in EXPECTED:
        assert repr(name) in message


def test_get_convention_rejects_a_non_string() -> None:
    bad: Any = 1
    with pytest.raises(TypeError, match=r"^convention must be a string") as info:
        get_convention(bad)
    assert str(info.value).endswith("got int 1")  # the given value and its type


def _custom(**changes: Any) -> Convention:
    fields = dataclasses.asdict(CONVENTIONS["onnx"]) | {"name": "custom"} | changes
    return Convention(**fields)


def test_a_custom_convention_can_be_built() -> None:
    conv = _custom(momentum=0.8, momentum_weights="new")
    assert conv.weights(0.8) == (1.0 - 0.8, 0.8)


@pytest.mark.parametrize(
    ("changes", "error", "argument"),
    [
        ({"name": ""}, TypeError, "name"),
        ({"momentum": 1.5}, ValueError, "momentum"),
        ({"momentum": -0.1}, ValueError, "momentum"),
        ({"momentum": float("nan")}, ValueError, "momentum"),
        ({"momentum": True}, TypeError, "momentum"),
        ({"momentum_weights": "newest"}, ValueError, "momentum_weights"),
        ({"eps": 0.0}, ValueError, "eps"),
        ({"eps": float("inf")}, ValueError, "eps"),
        ({"axis": 1.0}, TypeError, "axis"),
        ({"axis": -65}, ValueError, "axis"),
        ({"axis": 64}, ValueError, "axis"),
        ({"axis": 2**70}, ValueError, "axis"),
    ],
)
def test_convention_rejects_bad_fields(
    changes: dict[str, Any], error: type[Exception], argument: str
) -> None:
    with pytest.raises(error, match=rf"^{argument} must"):
        _custom(**changes)


@pytest.mark.parametrize("axis", [-64, -1, 0, 3, 63, np.int64(-2)])
def test_a_custom_convention_accepts_any_axis_a_numpy_array_can_have(axis: int) -> None:
    # A negative axis counts from the end; the layer resolves it against its input's ndim. NumPy 2
    # arrays have at most 64 dimensions, so [-64, 63] are the axes of some array.
    assert _custom(axis=axis).axis == axis


def test_an_axis_beyond_numpy_dimensions_is_reported_with_the_range() -> None:
    with pytest.raises(
        ValueError,
        match=r"^axis must be in \[-64, 63\] \(a NumPy array has at most 64 dimensions\), got 64$",
    ):
        _custom(axis=64)
    with pytest.raises(ValueError, match=r"^axis must be an integer >= -64, got -65$"):
        _custom(axis=-65)
