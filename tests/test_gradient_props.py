"""Properties 4 and 6 hold for the reference and fail for deliberately broken backwards."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given

import reference
from properties.adapter import Array, BackwardOutput, ReferenceImplementation
from properties.framework import Property, run_property
from properties.gradient_props import (
    KAPPA_MAX,
    PROPERTIES,
    GradientCase,
    backward_cases,
    gradient_cases,
)
from properties.tolerances import exact_stats

BY_NAME = {p.name: p for p in PROPERTIES}
GRADIENTS = (BY_NAME["gradients-full"], BY_NAME["gradients-fast"])


def _channel(vector: Array, x: Array, axis: int) -> Array:
    shape = [1] * x.ndim
    shape[axis % x.ndim] = vector.size
    return vector.reshape(shape)


class DroppedMeanTerm(ReferenceImplementation):
    """dx = gamma inv_std / n (n dy - x_hat dgamma): the path through the mean is forgotten."""

    @property
    def name(self) -> str:
        return "dx without the mean term"

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        g = reference.batch_norm_backward(dy, x, gamma, eps=eps, axis=axis)
        fwd = reference.batch_norm_forward(x, gamma, np.zeros_like(gamma), eps=eps, axis=axis)
        n = x.size // gamma.size
        dx = g.dx + _channel(gamma * fwd.inv_std * g.dbeta / n, x, axis)
        return BackwardOutput(dx, g.dgamma, g.dbeta)


class UnnormalizedDgamma(ReferenceImplementation):
    """dgamma = sum(dy * (x - mean)): x_hat without the division by sqrt(var + eps)."""

    @property
    def name(self) -> str:
        return "dgamma without inv_std"

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        g = reference.batch_norm_backward(dy, x, gamma, eps=eps, axis=axis)
        fwd = reference.batch_norm_forward(x, gamma, np.zeros_like(gamma), eps=eps, axis=axis)
        return BackwardOutput(g.dx, g.dgamma / fwd.inv_std, g.dbeta)


@pytest.mark.parametrize("prop", PROPERTIES, ids=lambda p: p.name)
def test_reference_satisfies(prop: Property) -> None:
    prop.as_test(ReferenceImplementation())()


def test_properties_are_exported_by_name() -> None:
    assert tuple(BY_NAME) == ("gradients-full", "gradients-fast", "dx-orthogonality")


@pytest.mark.parametrize("prop", GRADIENTS, ids=lambda p: p.name)
def test_gradient_properties_catch_a_dropped_mean_term(prop: Property) -> None:
    result = run_property(prop, DroppedMeanTerm())
    assert not result.passed
    assert prop.name in result.failure
    assert "dx relative error" in result.failure
    assert "worst element dx[" in result.failure


@pytest.mark.parametrize("prop", GRADIENTS, ids=lambda p: p.name)
def test_gradient_properties_catch_a_wrong_dgamma(prop: Property) -> None:
    result = run_property(prop, UnnormalizedDgamma())
    assert not result.passed
    assert prop.name in result.failure
    assert "dgamma relative error" in result.failure
    assert "worst element dgamma[" in result.failure


def test_orthogonality_catches_a_dropped_mean_term() -> None:
    prop = BY_NAME["dx-orthogonality"]
    result = run_property(prop, DroppedMeanTerm())
    assert not result.passed
    assert prop.name in result.failure
    assert "channel sum of dx vs 0" in result.failure


def test_sum_of_dx_times_x_hat_is_the_eps_term_not_zero() -> None:
    """The issue's "dx orthogonal to x_hat" holds only as eps -> 0: with var = eps = 1 the
    channel sum of dx * x_hat is gamma dgamma eps / (var + eps)**1.5, far from 0."""
    x = np.array([[-1.0], [1.0], [-1.0], [1.0]])  # mean 0, var 1
    gamma, eps = np.array([2.0]), 1.0
    dy = np.array([[1.5], [-1.2], [0.5], [2.5]])
    g = reference.batch_norm_backward(dy, x, gamma, eps=eps, axis=1)
    x_hat = x / np.sqrt(2.0)
    dgamma = float(np.sum(dy * x_hat))
    got = float(np.sum(g.dx * x_hat))
    want = 2.0 * dgamma * 1.0 / 2.0**1.5
    assert abs(want) > 0.3
    assert got == pytest.approx(want, rel=1e-14)
    assert float(np.sum(g.dx)) == pytest.approx(0.0, abs=1e-15)


@given(gc=gradient_cases())
def test_gradient_cases_are_resolvable(gc: GradientCase) -> None:
    """Every channel the finite differences see has kappa <= KAPPA_MAX, and dy is not uniform."""
    case = gc.case
    stats = exact_stats(case.x, case.axis, case.eps)
    assert np.all(stats.kappa <= KAPPA_MAX)
    assert case.dtype == "float64"
    assert gc.dy.shape == case.x.shape
    assert gc.dy.size < 2 or np.ptp(gc.dy) > 0


@given(gc=backward_cases())
def test_backward_cases_are_float64(gc: GradientCase) -> None:
    assert gc.case.dtype == "float64"
    assert gc.dy.shape == gc.case.x.shape
