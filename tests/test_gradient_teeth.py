"""The gradient comparisons have teeth: every one of them could have failed.

A case whose every channel has gamma = 0 (dx = 0 exactly), x_hat ~0 (a constant channel, or values
all ~1e-80: dgamma ~0) or is a pair of var >> eps (dx a fraction eps / var of its terms) gives
comparisons that no answer of the right size could break. The gradient strategies insert a live
channel into such a case (`strategies.live_channel`), keeping every drawn channel; a channel with
gamma = 0 is differenced at the case's coarsest step, so that its rounding does not swamp the
others' dx in the norm-wise comparison.

frozen-backward (inference mode: dx = gamma dy / sqrt(rv + eps), dgamma = sum(dy x_r)) has the
same gap with the running statistics in the place of the batch's: gamma = 0 everywhere (dx = 0
exactly), x - rm ~0 everywhere (x = rm = 0, one value or several: dgamma ~0). Its cases get a
channel live in inference mode (`strategies.live_frozen_channel`) the same way.
"""

from __future__ import annotations

import numpy as np
import pytest
from corpus import PLANTED, Functions
from hypothesis import given, settings
from hypothesis import strategies as st

import reference
from properties.adapter import Array, BackwardOutput, Implementation, ReferenceImplementation
from properties.batchnorm_props import GradientCase as FrozenCase
from properties.framework import Check, run_property
from properties.gradient_props import (
    GradientCase,
    _plan,
    check_gradients_fast,
    check_gradients_full,
)
from properties.registry import by_name
from properties.running_stats_props import check_frozen_backward, inference_cases
from properties.strategies import (
    LIVE_RATIO,
    LIVE_SCALE,
    PAIR_RATIO,
    BatchCase,
    batch_cases,
    live_channel,
    live_channels,
    live_frozen_channel,
)
from properties.tolerances import exact_stats
from reference.gradcheck import DEFAULT_RELATIVE_STEP

GRADIENT_PROPERTIES = (
    "gradients-full",
    "gradients-fast",
    "dx-orthogonality",
    "backward-accuracy",
    "frozen-backward",
)
CI = settings.get_profile("ci")


@pytest.mark.parametrize("name", GRADIENT_PROPERTIES)
def test_every_gradient_comparison_has_teeth_on_the_ci_profile(name: str) -> None:
    """On ci's 150 examples the reference passes, and every comparison could have failed
    (frozen-backward: 44 of its 450 had none before its cases got a live channel)."""
    result = run_property(by_name(name), ReferenceImplementation(), CI)
    assert result.status == "pass", result.failure
    assert result.comparisons >= 2 * 150
    without = result.comparisons - result.with_teeth
    assert without == 0, f"{without} of {result.comparisons} comparisons without teeth"


# --- the live channel ---------------------------------------------------------------------------


def _channels(case: BatchCase) -> list[tuple[Array, float, float]]:
    """Each channel as (its values, gamma, beta), in order."""
    rows = np.moveaxis(case.x, case.axis, 0)
    return [(rows[c], case.gamma[c], case.beta[c]) for c in range(case.gamma.size)]


def _same(a: list[tuple[Array, float, float]], b: list[tuple[Array, float, float]]) -> bool:
    return len(a) == len(b) and all(
        np.array_equal(xa, xb) and ga == gb and ba == bb
        for (xa, ga, ba), (xb, gb, bb) in zip(a, b, strict=True)
    )


@given(data=st.data(), case=batch_cases(min_count=2))
def test_a_live_channel_is_inserted_only_where_none_is_and_keeps_every_channel(
    data: st.DataObject, case: BatchCase
) -> None:
    out = data.draw(live_channel(case))
    assert live_channels(out).any()
    assert (out.dtype, out.eps, out.axis) == (case.dtype, case.eps, case.axis)
    assert np.array_equal(out.x.astype(out.dtype).astype(np.float64), out.x)
    if live_channels(case).any():
        assert out is case
        return
    before, after = _channels(case), _channels(out)
    assert len(after) == len(before) + 1
    inserted = [k for k in range(len(after)) if _same(after[:k] + after[k + 1 :], before)]
    assert inserted, "the drawn channels are not all kept, in order"
    assert live_channels(out)[inserted[0]]


def _case(x: Array, gamma: list[float], beta: list[float], eps: float) -> BatchCase:
    return BatchCase(x, np.array(gamma), np.array(beta), eps, 1, "float64")


def test_what_is_live() -> None:
    x = np.array([[1.0, 5.0, 1e-80, 1.0], [3.0, 5.0, -1e-80, 2.0], [2.0, 5.0, 0.0, 3.0]])
    case = _case(x, [1.0, 1.0, 1.0, 0.0], [0.0] * 4, 1e-5)
    # spread, constant, values ~1e-80 (x_hat ~1e-75), gamma = 0
    assert live_channels(case).tolist() == [True, False, False, False]
    pair = _case(np.array([[0.0, 0.0], [2.0, 2e-3]]), [1.0, 1.0], [0.0, 0.0], 1e-5)
    var = exact_stats(pair.x, 1, pair.eps).var  # 1 and 1e-6: eps / (var + eps) 1e-5 and 0.9
    assert var[0] >= LIVE_RATIO * (var[0] + pair.eps)
    assert pair.eps < PAIR_RATIO * (var[0] + pair.eps)
    assert live_channels(pair).tolist() == [False, True]


@given(data=st.data())
def test_a_case_without_a_live_channel_gets_one(data: st.DataObject) -> None:
    x = np.array([[1.0, 5.0, 1e-80], [3.0, 5.0, -1e-80], [2.0, 5.0, 0.0]])
    case = _case(x, [0.0, 1.0, 2.0], [1.0, -5.0, 0.5], 1e-8)
    out = data.draw(live_channel(case))
    assert out.x.shape == (3, 4)
    assert int(np.sum(live_channels(out))) == 1


@given(data=st.data(), eps=st.sampled_from([1e-8, 1e-5, 1.0]))
def test_a_pair_gets_a_live_pair(data: st.DataObject, eps: float) -> None:
    case = _case(np.array([[-1e3, 0.0], [1e3, 1e3]]), [1.0, -2.0], [0.0, 0.0], eps)
    assert not live_channels(case).any()  # var >> eps: dx is eps / var of its terms' size
    out = data.draw(live_channel(case))
    assert out.x.shape == (2, 3)
    assert live_channels(out).any()


@given(data=st.data())
def test_one_value_per_channel_is_left_alone(data: st.DataObject) -> None:
    case = _case(np.array([[1.0, 2.0]]), [0.0, 0.0], [0.0, 0.0], 1e-5)
    assert data.draw(live_channel(case)) is case


# --- a channel with gamma = 0 does not swamp the others -----------------------------------------


def _dead_beside_live() -> GradientCase:
    """Channel 0: constant, gamma = 0, beta = -5, so its step c3 sqrt(eps) would be 7e-10 and
    its rounding E_L / h larger than channel 1's whole dx (gamma = -1e-3, s ~ 50)."""
    rng = np.random.default_rng(7)
    n = 108
    x = np.stack([np.full(n, 3.0), 50.0 * rng.uniform(-1.0, 1.0, n) + 20.0], axis=1)
    case = _case(x, [0.0, -1e-3], [-5.0, 0.5806], 1e-8)
    return GradientCase(case, rng.standard_normal(x.shape), 11)


def test_a_channel_with_zero_gamma_is_differenced_at_the_coarsest_step() -> None:
    gc = _dead_beside_live()
    steps = _plan(gc.case, gc.dy, "streaming").steps[0]
    scale = exact_stats(gc.case.x, 1, gc.case.eps).scale
    assert np.all(steps[:, 1] == DEFAULT_RELATIVE_STEP * scale[1])
    assert np.all(steps[:, 0] == DEFAULT_RELATIVE_STEP * scale[1])  # the coarsest, not 7e-10


@pytest.mark.parametrize("check", [check_gradients_full, check_gradients_fast])
def test_dx_beside_a_channel_with_zero_gamma_has_teeth(check: Check) -> None:
    """At the step c3 sqrt(eps) the full check's dx tolerance was 27 (relative: no teeth). The
    fast check bounds a projection by sum(bound * step), in which the step cancels."""
    dx = check(ReferenceImplementation(), _dead_beside_live())[0]
    assert dx.quantity.startswith("dx relative error")
    assert dx.passed
    assert dx.teeth
    assert dx.tolerance < 1e-2


class DxIgnoresZeroGamma(ReferenceImplementation):
    """dx computed with gamma = 1 where gamma = 0 (a backward that 'guards' a zero gamma)."""

    @property
    def name(self) -> str:
        return "dx with gamma 0 taken as 1"

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        g = reference.batch_norm_backward(dy, x, gamma, eps=eps, axis=axis)
        guarded = reference.batch_norm_backward(
            dy, x, np.where(gamma == 0, 1.0, gamma), eps=eps, axis=axis
        )
        return BackwardOutput(guarded.dx, g.dgamma, g.dbeta)


def test_a_wrong_dx_in_a_channel_with_zero_gamma_fails() -> None:
    gc = _dead_beside_live()
    x = gc.case.x.copy()
    x[:, 0] += np.linspace(-1.0, 1.0, x.shape[0])  # not constant: its dx would be nonzero
    wrong = GradientCase(_case(x, [0.0, -1e-3], [-5.0, 0.5806], 1e-8), gc.dy, gc.seed)
    dx = check_gradients_full(DxIgnoresZeroGamma(), wrong)[0]
    assert dx.quantity.startswith("dx relative error")
    assert not dx.passed


# --- frozen-backward: a channel live in inference mode ------------------------------------------


def _frozen(
    x: Array, gamma: list[float], rm: list[float], rv: list[float], eps: float = 1e-5
) -> FrozenCase:
    case = _case(x, gamma, [0.5] * len(gamma), eps)
    dy = np.random.default_rng(3).standard_normal(x.shape)
    return FrozenCase(case, dy, np.array(rm), np.array(rv))


def _frozen_live(fc: FrozenCase) -> list[bool]:
    return [bool(v) for v in live_channels(fc.case, (fc.running_mean, fc.running_var))]


def test_what_is_live_in_inference_mode() -> None:
    x = np.array([[1.0, 2.0, 0.0, 1e-80, 1e8 + 2.0, 3.0], [3.0, 2.0, 0.0, -1e-80, 1e8, 3.0]])
    fc = _frozen(x, [1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [2.0, 2.0, 0.0, 0.0, 1e8, 0.0], [1.0] * 6)
    # deviations; x = rm; x = rm = 0; x_r ~1e-80; |x - rm| / (|x| + |rm|) 1e-8; gamma = 0
    assert _frozen_live(fc) == [True, False, False, False, False, False]
    # one value per channel is enough, whatever the running variance
    one = _frozen(np.array([[1.0, 1e3]]), [2.0, -1.0], [0.0, 0.0], [0.0, 1e6])
    assert _frozen_live(one) == [True, True]
    # the threshold: |x - rm| against sqrt(rv + eps) (here 1) and |x| + |rm|
    edge = _frozen(
        np.array([[LIVE_SCALE, 0.99 * LIVE_SCALE]]), [1.0, 1.0], [0.0, 0.0], [1.0 - 1e-5] * 2
    )
    assert _frozen_live(edge) == [True, False]


def _frozen_channels(fc: FrozenCase) -> list[tuple[Array, float, float, float, float]]:
    """Each channel as (its values, gamma, beta, rm, rv), in order."""
    return [
        (xc, g, b, fc.running_mean[c], fc.running_var[c])
        for c, (xc, g, b) in enumerate(_channels(fc.case))
    ]


@given(data=st.data(), fc=inference_cases())
def test_a_frozen_live_channel_is_inserted_only_where_none_is_and_keeps_every_channel(
    data: st.DataObject, fc: FrozenCase
) -> None:
    case, rm, rv = data.draw(live_frozen_channel(fc.case, fc.running_mean, fc.running_var))
    out = FrozenCase(case, fc.dy, rm, rv)
    assert any(_frozen_live(out))
    assert (case.dtype, case.eps, case.axis) == (fc.case.dtype, fc.case.eps, fc.case.axis)
    assert np.array_equal(case.x.astype(case.dtype).astype(np.float64), case.x)
    if any(_frozen_live(fc)):
        assert case is fc.case
        assert rm is fc.running_mean
        assert rv is fc.running_var
        return
    before, after = _frozen_channels(fc), _frozen_channels(out)
    assert len(after) == len(before) + 1

    def same(a: list[tuple[Array, float, float, float, float]]) -> bool:
        return len(a) == len(before) and all(
            np.array_equal(xa, xb) and (ga, ba, ma, va) == (gb, bb, mb, vb)
            for (xa, ga, ba, ma, va), (xb, gb, bb, mb, vb) in zip(a, before, strict=True)
        )

    inserted = [k for k in range(len(after)) if same(after[:k] + after[k + 1 :])]
    assert inserted, "the drawn channels are not all kept, in order"
    k = inserted[0]
    assert _frozen_live(out)[k]
    for value in (rm[k], rv[k]):  # the inserted statistics are in the case's dtype
        assert np.float64(value).astype(case.dtype).astype(np.float64) == value


def _dead_frozen() -> FrozenCase:
    """Every channel dead in inference mode, the commonest case measured: gamma = 0 and
    x = rm = 0 (dx = 0 and dgamma = 0 exactly), one value per channel."""
    return _frozen(np.array([[0.0, 0.0]]), [0.0, 0.0], [0.0, 0.0], [0.0, 1.0])


class FrozenWithoutRoot(ReferenceImplementation):
    """WRONG: dx = gamma dy and dgamma = sum(dy x), the division by sqrt(rv + eps) dropped,
    and the running mean ignored."""

    @property
    def name(self) -> str:
        return "frozen backward without sqrt(rv + eps) and rm"

    def frozen_backward(
        self,
        dy: Array,
        x: Array,
        gamma: Array,
        running_mean: Array,
        running_var: Array,
        *,
        eps: float,
        axis: int,
    ) -> BackwardOutput:
        right = super().frozen_backward(dy, x, gamma, running_mean, running_var, eps=eps, axis=axis)
        c = x.shape[axis]
        rows = np.moveaxis(x, axis, 0).reshape(c, -1)
        dyr = np.moveaxis(dy, axis, 0).reshape(c, -1)
        dx = np.moveaxis(np.moveaxis(dy, axis, -1) * gamma, -1, axis)
        return BackwardOutput(dx, np.sum(dyr * rows, axis=1), right.dbeta)


class FrozenReflected(ReferenceImplementation):
    """WRONG: the gradients of gamma (rm - x) / sqrt(rv + eps) + beta (x - rm written the other
    way round): dx and dgamma of the wrong sign. Wrong wherever dx or dgamma is not 0."""

    @property
    def name(self) -> str:
        return "frozen backward of the reflected map"

    def frozen_backward(
        self,
        dy: Array,
        x: Array,
        gamma: Array,
        running_mean: Array,
        running_var: Array,
        *,
        eps: float,
        axis: int,
    ) -> BackwardOutput:
        right = super().frozen_backward(dy, x, gamma, running_mean, running_var, eps=eps, axis=axis)
        return BackwardOutput(-right.dx, -right.dgamma, right.dbeta)


@pytest.mark.parametrize("impl", [FrozenWithoutRoot(), FrozenReflected()], ids=["root", "sign"])
def test_a_wrong_frozen_backward_passes_a_dead_case(impl: ReferenceImplementation) -> None:
    """On a case whose every channel is dead the dx and dgamma comparisons could not fail, and
    wrong backwards pass them: why the live channel is there."""
    dead = _dead_frozen()
    assert not any(_frozen_live(dead))
    wrong = check_frozen_backward(impl, dead)
    assert all(m.passed for m in wrong)
    assert [m.teeth for m in wrong] == [False, False, True]  # dx, dgamma; dbeta = sum(dy)


def test_a_dead_case_with_its_live_channel_has_teeth_and_catches_a_wrong_sign() -> None:
    dead = _dead_frozen()

    @given(data=st.data())
    @settings(max_examples=20, database=None)
    def with_live_channel(data: st.DataObject) -> None:
        case, rm, rv = data.draw(
            live_frozen_channel(dead.case, dead.running_mean, dead.running_var)
        )
        dy = np.random.default_rng(5).standard_normal(case.x.shape)
        live = FrozenCase(case, dy, rm, rv)
        right = check_frozen_backward(ReferenceImplementation(), live)
        assert all(m.passed and m.teeth for m in right)
        dx, dgamma, _ = check_frozen_backward(FrozenReflected(), live)
        assert not dx.passed
        assert not dgamma.passed

    with_live_channel()


# The corpus's planted mistake: the batch's statistics in the place of the running ones.
(FROZEN_WITH_BATCH_STATISTICS,) = (
    p.entry for p in PLANTED if p.entry.name == "frozen-backward-batch-stats"
)


@pytest.mark.parametrize(
    ("impl", "quantity"),
    [
        (FrozenWithoutRoot(), "frozen dx vs gamma dy / sqrt(rv + eps)"),
        (Functions(FROZEN_WITH_BATCH_STATISTICS), "frozen dx vs gamma dy / sqrt(rv + eps)"),
    ],
    ids=["without-root", "batch-statistics"],
)
def test_a_wrong_frozen_backward_fails_frozen_backward_by_name(
    impl: Implementation, quantity: str
) -> None:
    result = run_property(by_name("frozen-backward"), impl, CI)
    assert result.status == "fail"
    assert result.name == "frozen-backward"
    assert result.cause.startswith(quantity), result.cause
