"""Documented defaults and rejections that mutation testing found unexercised.

Each test states what a docstring promises: the default of an argument is the value it names,
and a non-finite argument of inference is rejected by name unless ``check_finite=False``.
"""

from __future__ import annotations

import numpy as np
import pytest

from reference.batchnorm import batch_norm_inference
from reference.ghost import virtual_batch_bounds
from reference.minibatch import mini_batch_indices
from reference.schedules import schedule_lr_decay


def test_schedule_lr_decay_steps_every_1000_epochs_by_default() -> None:
    # lr0 / (1 + r * floor(epoch / 1000)): the step happens at epoch 1000, not before.
    assert schedule_lr_decay(0.5, 999, 1.0) == 0.5
    assert schedule_lr_decay(0.5, 1000, 1.0) == 0.25
    assert schedule_lr_decay(0.5, 1000, 1.0) == schedule_lr_decay(0.5, 1000, 1.0, 1000)


@pytest.mark.parametrize("m", [1, 63, 64, 65, 200])
def test_mini_batch_indices_defaults_are_size_64_seed_0(m: int) -> None:
    default = mini_batch_indices(m)
    explicit = mini_batch_indices(m, 64, 0)
    assert len(default) == len(explicit) == -(-m // 64)
    for a, b in zip(default, explicit, strict=True):
        np.testing.assert_array_equal(a, b)
    # The permutation is the legacy RandomState(0) one, as np.random.seed(0) gives.
    np.testing.assert_array_equal(np.concatenate(default), np.random.RandomState(0).permutation(m))


def test_virtual_batches_keep_the_leftover_separate_by_default() -> None:
    assert virtual_batch_bounds(10, 4) == ((0, 4), (4, 8), (8, 10))
    assert virtual_batch_bounds(10, 4) == virtual_batch_bounds(10, 4, "separate")
    assert virtual_batch_bounds(10, 4, "merge") == ((0, 4), (4, 10))


_INFERENCE_ARGUMENTS = ("x", "gamma", "beta", "running_mean", "running_var")


def _inference_arguments() -> dict[str, np.ndarray]:
    return {
        "x": np.arange(6.0).reshape(3, 2),
        "gamma": np.array([1.0, 2.0]),
        "beta": np.array([0.5, -0.5]),
        "running_mean": np.array([1.0, 2.0]),
        "running_var": np.array([4.0, 9.0]),
    }


def _inference(args: dict[str, np.ndarray], *, check_finite: bool = True) -> np.ndarray:
    x, gamma, beta, mean, var = (args[n] for n in _INFERENCE_ARGUMENTS)
    return batch_norm_inference(x, gamma, beta, mean, var, check_finite=check_finite)


@pytest.mark.parametrize("name", _INFERENCE_ARGUMENTS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_inference_rejects_a_non_finite_argument_by_name(name: str, bad: float) -> None:
    args = _inference_arguments()
    args[name] = args[name].copy()
    args[name].flat[1] = bad
    with pytest.raises(ValueError, match=rf"\b{name} must"):
        _inference(args)


@pytest.mark.parametrize("name", _INFERENCE_ARGUMENTS)
def test_inference_without_the_finite_check_propagates_nan_to_exactly_its_reach(
    name: str,
) -> None:
    # y = gamma * (x - m) / sqrt(v + eps) + beta elementwise: a NaN in x reaches its own
    # element only; a NaN in a channel parameter reaches that channel's column only.
    args = _inference_arguments()
    args[name] = args[name].copy()
    args[name].flat[1] = np.nan
    y = _inference(args, check_finite=False)
    expected = np.zeros((3, 2), dtype=bool)
    if name == "x":
        expected.flat[1] = True
    else:
        expected[:, 1] = True
    np.testing.assert_array_equal(np.isnan(y), expected)
