"""merge_stats and synchronized batch norm: hand values, equality with whole-batch BN, rejections.

Tolerances. The sync and the plain computation differ only in how mean and M2 are formed
(Chan's pairwise merge of per-shard summaries versus one pass over the batch). Per channel, with
n values in S shards, u = 2**-53, s = sqrt(var + eps), kappa = max|x|/s, dev = max|x - mean|/s:

- mean: each shard mean errs by <= (n_k + 1) u max|x|; each of the S merge steps adds <= 3 u
  of max|x|, so |dmean|/s <= shift := (n + 3S + 1) u kappa (properties.tolerances, step 1,
  with n replaced by n' = n + 3S).
- M2: the deviations' part errs relatively by (n' + 2) u + shift**2 (tolerances step 2); the
  merge term delta**2 n_a n_b / n adds 2 |delta| |d delta| n_a n_b / n**2 <= 2 dev shift
  relative to s**2 (|delta| <= 2 dev s, |d delta| <= 2 shift s, n_a n_b / n**2 <= 1/4).
  So the relative error of var + eps is var_rel := (n' + 2) u + shift**2 + 4 dev shift (x2).
- inv_std: r := var_rel / 2 + 2u; x_hat: E := shift + max|x_hat| (r + u).
Both computations obey these bounds (n' >= n), so they differ by at most twice, times SAFETY.
y = gamma x_hat + beta adds |gamma| E and 2u |y| rounding. For dx = g inv_std (dy - mean(dy) -
x_hat mean(dy x_hat)) with D = max|dy|, X = max|x_hat|: |d dx| <= |g|/s D (r (2 + X**2) +
2 E X + (n + 4) u (2 + X**2)); dgamma = sum(dy x_hat) errs by <= n D E + n u D X; dbeta by
<= n u sum|dy| (two summation orders).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from test_batchnorm_values import GRADIENT_OVERFLOWS as SINGLE_BATCH_OVERFLOWS

from properties.accuracy_props import BackwardCase, check_backward, check_forward
from properties.adapter import BackwardOutput, ForwardOutput, ReferenceImplementation
from properties.strategies import BatchCase, batch_cases, upstream_gradients
from properties.tolerances import SAFETY, U64
from reference.batchnorm import (
    batch_norm_backward,
    batch_norm_forward,
    batch_statistics,
    channel_layout,
)
from reference.float_range import statistics_exponents
from reference.sharded import (
    merge_stats,
    shard_stats,
    sync_batch_norm_backward,
    sync_batch_norm_forward,
)

Array = np.ndarray[Any, np.dtype[np.float64]]
WORST: dict[str, float] = {}  # worst error / tolerance seen, printed by test_report_worst


def _note(name: str, error: Array, tol: Array) -> None:
    tol = tol + 1e-300  # an exactly-zero bound (gamma 0, dy 0) must not give 0/0 in the ratio
    ratio = float(np.max(error / tol)) if error.size else 0.0
    WORST[name] = max(WORST.get(name, 0.0), ratio)
    assert np.all(error <= tol), f"{name}: worst error/tolerance {ratio:.3g}"


# ---- merge_stats by hand --------------------------------------------------------------------


def test_merge_by_hand_unequal_counts() -> None:
    # Shard a: [1, 2] (n 2, mean 1.5, M2 0.5); shard b: [3, 6, 9] (n 3, mean 6, M2 9+0+9=18).
    # All five: mean 21/5 = 4.2, M2 = sum((x-4.2)**2) = 10.24+4.84+1.44+3.24+23.04 = 42.8.
    # Chan: delta 4.5; 0.5 + 18 + 4.5**2 * 2*3/5 = 18.5 + 24.3 = 42.8.
    got = merge_stats([2, 3], [[1.5], [6.0]], [[0.5], [18.0]])
    assert got.count == 5
    np.testing.assert_allclose(got.mean, [4.2], rtol=4 * U64)
    np.testing.assert_allclose(got.m2, [42.8], rtol=8 * U64)
    np.testing.assert_allclose(got.var, [42.8 / 5], rtol=8 * U64)


def test_merge_skips_empty_shards_and_single_shard_is_itself() -> None:
    got = merge_stats([0, 4, 0], [[7.0, 0.0], [1.0, -2.0], [5.0, 5.0]], [[0, 0], [3, 8], [0, 0]])
    assert got.count == 4
    assert got.mean.tolist() == [1.0, -2.0]
    assert got.m2.tolist() == [3.0, 8.0]
    assert got.var.tolist() == [0.75, 2.0]


@given(case=batch_cases(), data=st.data())
def test_merge_equals_whole_batch(case: BatchCase, data: st.DataObject) -> None:
    x = np.moveaxis(case.x, case.axis, -1).reshape(-1, case.x.shape[case.axis])  # (n, C)
    cuts = sorted(data.draw(st.sets(st.integers(1, x.shape[0] - 1), max_size=6)))
    parts = np.split(x, cuts)
    summaries = [shard_stats(p, axis=1) for p in parts]
    got = merge_stats(
        [s.count for s in summaries], [s.mean for s in summaries], [s.m2 for s in summaries]
    )
    whole = batch_norm_forward(x, np.ones(x.shape[1]), np.zeros(x.shape[1]), eps=case.eps)
    n, shards = x.shape[0], len(parts)
    assert got.count == n
    s = np.sqrt(whole.var + case.eps)
    kappa = np.max(np.abs(x), axis=0) / s
    dev = np.max(np.abs(x - whole.mean), axis=0) / s
    shift = (n + 3 * shards + 1) * U64 * kappa
    var_rel = (n + 3 * shards + 2) * U64 + shift**2 + 4 * dev * shift
    _note("merge mean", np.abs(got.mean - whole.mean), 2 * SAFETY * shift * s)
    _note("merge var", np.abs(got.var - whole.var), 2 * SAFETY * var_rel * s**2)


def test_shard_mean_is_corrected_when_mean_dominates() -> None:
    # |mean| / std = 1e10. The corrected mean m0 + mean(x - m0) is within one rounding of the
    # exact mean: x_i - m0 is exact (Sterbenz: x_i and m0 within a factor 2), so the correction
    # c errs only by its own summation, |dc| <= (n + 1) u max|x - m0|, where max|x - m0| <=
    # max|x - mean| + (n + 1) u max|x| (the first mean's error); m0 + c rounds once, <= u |mean|.
    # On these 64 channels of 64 values np.mean alone is off by up to 5.8 u |mean| (the corrected
    # mean by 0.67 u |mean|); a correction of the wrong sign doubles np.mean's error instead.
    n, channels = 64, 64
    rng = np.random.default_rng(20240611)
    x = 1e8 + 1e-2 * rng.standard_normal((n, channels))
    exact = [
        sum((Fraction(v) for v in x[:, c].tolist()), start=Fraction(0)) / n for c in range(channels)
    ]
    got = shard_stats(x).mean
    error = np.array(
        [float(abs(Fraction(g) - m)) for g, m in zip(got.tolist(), exact, strict=True)]
    )
    mean = np.array([float(m) for m in exact])
    spread = np.max(np.abs(x - mean), axis=0) + (n + 1) * U64 * np.max(np.abs(x), axis=0)
    tol = U64 * np.abs(mean) + SAFETY * (n + 1) * U64 * spread
    _note("shard mean at |mean| >> std", error, tol)


# ---- synchronized batch norm equals plain batch norm over the concatenated batch ------------


@st.composite
def sharded_cases(draw: st.DrawFn) -> tuple[BatchCase, list[Array]]:
    """A batch case with the channel axis off axis 0, cut along axis 0 into 1..8 shards."""
    case = draw(batch_cases())
    x, axis = case.x, case.axis % case.x.ndim
    if axis == 0:  # move the channels to axis 1: axis 0 is the batch axis that is sharded
        x, axis = np.swapaxes(x, 0, 1).copy(), 1
    case = BatchCase(x, case.gamma, case.beta, case.eps, axis, case.dtype)
    n = x.shape[0]
    cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=7))) if n > 1 else []
    return case, np.split(x, cuts, axis=0)


def _bounds(case: BatchCase, shards: int) -> tuple[Array, Array, Array, Array, Array, int]:
    """Per-channel (s, E, r, X, bshape-expanded helpers) for the bounds in the module docstring."""
    whole = batch_norm_forward(
        case.x, np.ones(case.gamma.size), np.zeros(case.gamma.size), eps=case.eps, axis=case.axis
    )
    reduce = tuple(i for i in range(case.x.ndim) if i != case.axis)
    n = case.x.size // case.gamma.size
    n1 = n + 3 * shards
    s = np.sqrt(whole.var + case.eps)
    kappa = np.max(np.abs(case.x), axis=reduce) / s
    big_x = np.max(np.abs(whole.x_hat), axis=reduce)
    dev = big_x * s * whole.inv_std  # max|x - mean| / s
    shift = (n1 + 1) * U64 * kappa
    var_rel = (n1 + 2) * U64 + shift**2 + 4 * dev * shift
    r = var_rel / 2 + 2 * U64
    e = shift + big_x * (r + U64)
    return s, e, r, big_x, whole.x_hat, n


@given(pair=sharded_cases())
def test_sync_forward_equals_plain(pair: tuple[BatchCase, list[Array]]) -> None:
    case, parts = pair
    got = sync_batch_norm_forward(parts, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    want = batch_norm_forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    s, e, r, _, _, n = _bounds(case, len(parts))
    assert got.count == n
    bshape = tuple(-1 if i == case.axis else 1 for i in range(case.x.ndim))
    tol_x_hat = (2 * SAFETY * e).reshape(bshape)
    x_hat = np.concatenate(got.x_hats, axis=0)
    y = np.concatenate(got.ys, axis=0)
    _note("sync x_hat", np.abs(x_hat - want.x_hat), tol_x_hat)
    tol_y = np.abs(case.gamma).reshape(bshape) * tol_x_hat + 2 * SAFETY * U64 * np.abs(want.y)
    _note("sync y", np.abs(y - want.y), tol_y)
    _note("sync mean", np.abs(got.mean - want.mean), 2 * SAFETY * e * s)
    # inv_std is 1/sqrt(var + eps) of the merged var (the same operations, so bit for bit) where
    # the channel is computed on x itself (a channel spreading less than 2**-479 is computed on
    # x * 2**j, as in batch_statistics), and each side's inv_std errs relatively by <= r (module
    # docstring): twice that between them.
    reduce = tuple(i for i in range(case.x.ndim) if i != case.axis)
    itself = statistics_exponents(case.x, reduce, case.eps) == 0
    want_inv_std = 1.0 / np.sqrt(got.var + case.eps)
    assert np.array_equal(got.inv_std[itself], want_inv_std[itself])
    _note("sync inv_std", np.abs(got.inv_std - want.inv_std), 2 * SAFETY * r / s)


@given(pair=sharded_cases(), data=st.data())
def test_sync_backward_equals_plain(
    pair: tuple[BatchCase, list[Array]], data: st.DataObject
) -> None:
    case, parts = pair
    dy = data.draw(upstream_gradients(case.x.shape))
    dys = np.split(dy, np.cumsum([p.shape[0] for p in parts])[:-1], axis=0)
    got = sync_batch_norm_backward(dys, parts, case.gamma, eps=case.eps, axis=case.axis)
    want = batch_norm_backward(dy, case.x, case.gamma, eps=case.eps, axis=case.axis)
    s, e, r, big_x, _, n = _bounds(case, len(parts))
    reduce = tuple(i for i in range(case.x.ndim) if i != case.axis)
    d = np.max(np.abs(dy), axis=reduce)
    bshape = tuple(-1 if i == case.axis else 1 for i in range(case.x.ndim))
    tol_dx = (
        2
        * SAFETY
        * np.abs(case.gamma)
        / s
        * d
        * (r * (2 + big_x**2) + 2 * e * big_x + (n + 4) * U64 * (2 + big_x**2))
    )
    _note("sync dx", np.abs(np.concatenate(got.dxs, axis=0) - want.dx), tol_dx.reshape(bshape))
    tol_dgamma = 2 * SAFETY * (n * d * e + n * U64 * d * big_x)
    _note("sync dgamma", np.abs(got.dgamma - want.dgamma), tol_dgamma)
    tol_dbeta = 2 * SAFETY * n * U64 * np.sum(np.abs(dy), axis=reduce)
    _note("sync dbeta", np.abs(got.dbeta - want.dbeta), tol_dbeta)


def test_sync_one_example_per_shard() -> None:
    x = np.array([[1.0, 10.0], [2.0, 10.0], [3.0, 10.0], [6.0, 10.0]])
    g, b = np.array([2.0, 1.0]), np.array([0.5, -1.0])
    got = sync_batch_norm_forward([x[i : i + 1] for i in range(4)], g, b)
    want = batch_norm_forward(x, g, b)
    np.testing.assert_allclose(np.concatenate(got.ys), want.y, rtol=16 * U64, atol=16 * U64)


def test_inputs_not_mutated() -> None:
    parts = [np.array([[1.0], [2.0]]), np.array([[4.0]])]
    dys = [np.array([[1.0], [-1.0]]), np.array([[0.5]])]
    copies = [p.copy() for p in parts + dys]
    sync_batch_norm_backward(dys, parts, [1.0])
    sync_batch_norm_forward(parts, [1.0], [0.0])
    for a, c in zip(parts + dys, copies, strict=True):
        assert np.array_equal(a, c)


# ---- values near the float64 limit (1.8e308) --------------------------------------------------


@pytest.mark.parametrize(
    ("x", "cuts"),
    [
        ([[1e154], [-1e154], [1e154], [-1e154]], [1, 3]),  # squares 1e308, their sum beyond
        ([[1.7e308], [1.7e308], [1.7e308]], [2]),  # the sum overflows, var = 0
        ([[1e200], [2e200], [3e200]], [1]),  # var = 6.7e399: only the gradients exist
        ([[1e154, 1.0], [-1e154, 2.0], [5e-324, 4.0]], [1, 1]),  # an empty shard, k = 0 beside
        ([[1e-160], [2e-160], [3e-160]], [1]),  # subnormal squares: x * 2**j
    ],
)
@pytest.mark.parametrize("eps", [1e-5, 2.0**-1074])
def test_sync_near_the_float64_limit_equals_plain(
    x: list[list[float]], cuts: list[int], eps: float
) -> None:
    # One scale per channel for every shard, the plain reference's for the whole batch: the
    # results are those of plain batch norm of the whole batch to rounding (the merge adds the
    # shards in another order), or its ValueError. (A constant channel with eps = 2**-1074 keeps
    # the scale of x: eps * 4**-k would be 0.)
    whole = np.array(x)
    parts = np.split(whole, cuts)
    c = whole.shape[1]
    g, b = np.full(c, 0.5), np.full(c, 0.25)
    dy = np.linspace(-1.0, 2.0, whole.size).reshape(whole.shape)
    try:
        want = batch_norm_forward(whole, g, b, eps=eps)
    except ValueError as exc:
        message = str(exc).replace("x must", "shards must")
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            sync_batch_norm_forward(parts, g, b, eps=eps)
    else:
        got = sync_batch_norm_forward(parts, g, b, eps=eps)
        np.testing.assert_allclose(np.concatenate(got.ys), want.y, rtol=16 * U64)
        np.testing.assert_allclose(got.mean, want.mean, rtol=4 * U64)
        np.testing.assert_allclose(got.var, want.var, rtol=16 * U64)
        np.testing.assert_allclose(got.inv_std, want.inv_std, rtol=16 * U64)
    grad = sync_batch_norm_backward(list(np.split(dy, cuts)), parts, g, eps=eps)
    want_grad = batch_norm_backward(dy, whole, g, eps=eps)
    assert np.isfinite(want_grad.dgamma).all()
    # dx = g inv_std (dy - mean(dy) - x_hat mean(dy x_hat)) is a difference: its error is a
    # few n u of the terms' size, |g| inv_std max|dy| (2 + max|x_hat|**2) (module docstring).
    _, _, inv_std, x_hat = batch_statistics(whole, channel_layout(whole, 1), eps)
    terms = np.abs(g) * inv_std * np.max(np.abs(dy)) * (2 + np.max(x_hat**2, axis=0))
    dx_error = np.abs(np.concatenate(grad.dxs) - want_grad.dx)
    assert np.all(dx_error <= 16 * whole.shape[0] * U64 * terms)
    np.testing.assert_allclose(grad.dgamma, want_grad.dgamma, rtol=16 * U64)


def test_shard_stats_near_the_float64_limit() -> None:
    # The mean of 3 * 1.7e308 (whose sum overflows) is 1.7e308 with M2 = 0; the M2 of
    # +-1e154 is 4e308, beyond float64: a ValueError naming x, M2's size and the channel.
    got = shard_stats(np.full((3, 2), 1.7e308) * [1, -1])
    assert got.mean.tolist() == [1.7e308, -1.7e308]
    assert got.m2.tolist() == [0.0, 0.0]
    with pytest.raises(
        ValueError,
        match=r"^x must have M2 = sum\(\(x - mean\)\*\*2\) that float64 can represent "
        r"\(at most 1\.8e308\) in every channel, got about 2\*\*1025\.2 in channel 1$",
    ):
        shard_stats(np.array([[0.0, 1e154], [1.0, -1e154], [2.0, 1e154], [3.0, -1e154]]))
    # Values from 2**480 on are summarized as x * 2**-k and scaled back: M2 by 4**k.
    # [3, 1] * 2**500 has mean 2**501 and M2 = 2 * (2**500)**2 = 2**1001, exactly.
    got = shard_stats(np.array([[3.0 * 2.0**500, 1.0], [2.0**500, 3.0]]))
    np.testing.assert_array_equal(got.mean, [2.0**501, 2.0], strict=True)
    np.testing.assert_array_equal(got.m2, [2.0**1001, 2.0], strict=True)


# ---- tiny values, huge gradients: the plain reference's scales --------------------------------


class ShardedAtScale(ReferenceImplementation):
    """Synchronized batch norm of the batch cut along axis 0 at `cuts`, run on x * 2**sx with
    eps * 4**sx and its results scaled back (mean 2**-sx, var 4**-sx, dx 2**sx): an extreme case
    judged as the ordinary case it scales to, against that case's 50-digit values within the
    bounds of any backward-stable algorithm (`properties.accuracy_props`), which have teeth
    there."""

    def __init__(self, cuts: list[int], sx: int) -> None:
        super().__init__(name="synchronized batch norm at scale")
        self.cuts, self.sx = cuts, sx

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        parts = np.split(np.ldexp(x, self.sx), self.cuts)
        at = sync_batch_norm_forward(
            parts, gamma, beta, eps=math.ldexp(eps, 2 * self.sx), axis=axis
        )
        mean, var = np.ldexp(at.mean, -self.sx), np.ldexp(at.var, -2 * self.sx)
        return ForwardOutput(np.concatenate(at.ys), mean, var)

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        parts = np.split(np.ldexp(x, self.sx), self.cuts)
        dys = np.split(dy, self.cuts)
        at = sync_batch_norm_backward(
            dys, parts, gamma, eps=math.ldexp(eps, 2 * self.sx), axis=axis
        )
        return BackwardOutput(np.ldexp(np.concatenate(at.dxs), self.sx), at.dgamma, at.dbeta)


TINY = np.array([[1e-160], [2e-160], [3e-160]])  # var = 6.7e-321, subnormal: 11 bits


@pytest.mark.parametrize("cuts", [[1], [2], [1, 2], [0, 3]])
@pytest.mark.parametrize(("eps", "s"), [(2.0**-1074, -531), (1e-300, -531), (1e-5, -500)])
def test_sync_tiny_values_with_a_tiny_eps_against_50_digits(
    eps: float, s: int, cuts: list[int]
) -> None:
    # The squares of [1, 2, 3] * 1e-160 are subnormal: with eps = 2**-1074 the shards' summaries
    # of x itself gave dx = +-8.87e156 for +-1.36e157. The whole batch's scale, x * 2**531
    # (`statistics_exponents`, as in the plain reference), gives the results of the ordinary
    # case TINY * 2**-s within its bounds, but var itself: a subnormal number.
    case = BatchCase(
        np.ldexp(TINY, -s), np.ones(1), np.zeros(1), math.ldexp(eps, -2 * s), 1, "float64"
    )
    impl = ShardedAtScale(cuts, s)
    dy = np.array([[-1.0], [0.5], [2.0]])
    measured = check_forward(impl, case) + check_backward(impl, BackwardCase(case, dy))
    for m in measured:
        assert m.quantity == "var" or m.passed, m
    assert [m.teeth for m in measured if m.quantity in ("x_hat", "dx")] == [True, True]


def _exponent_range(values: Array, power: int = 1) -> tuple[int, int]:
    """The j for which every nonzero value * 2**(power * j) is a normal float64: a range."""
    exponents = np.frexp(values[values != 0])[1]  # 2**(e - 1) <= |value| < 2**e
    ends = sorted(
        (
            (-1021 - exponents.min(initial=1024)) / power,
            (1024 - exponents.max(initial=-1021)) / power,
        )
    )
    return math.ceil(ends[0]), math.floor(ends[1])


@given(pair=sharded_cases(), data=st.data())
def test_sync_scales_exactly_with_a_power_of_two(
    pair: tuple[BatchCase, list[Array]], data: st.DataObject
) -> None:
    # For every j that keeps x * 2**j, mean * 2**j, var * 4**j, eps * 4**j and dx * 2**-j normal
    # (or 0), eps * 4**j below 2**998 (a tiny channel's scale is capped by eps * 4**j < 2**1000):
    # synchronized batch norm of the shards * 2**j with eps * 4**j is that of the shards exactly,
    # whether a channel is computed on x itself, scaled down (reaching 2**480) or scaled up
    # (spreading less than 2**-479). A channel whose variance underflows is not normal: left out.
    case, parts = pair
    e = math.frexp(case.eps)[1]
    eps = math.ldexp(case.eps, data.draw(st.integers(-1021 - e, 998 - e), label="eps * 2**i"))
    dy = np.random.default_rng(3).standard_normal(case.x.shape)
    dys = np.split(dy, np.cumsum([p.shape[0] for p in parts])[:-1])
    out = sync_batch_norm_forward(parts, case.gamma, case.beta, eps=eps, axis=case.axis)
    grads = sync_batch_norm_backward(dys, parts, case.gamma, eps=eps, axis=case.axis)
    reduce = tuple(i for i in range(case.x.ndim) if i != case.axis)
    spread = np.ptp(case.x, axis=reduce)
    assume(np.all((out.var >= 2.0**-1022) | (spread == 0)))
    ranges = [
        _exponent_range(np.concatenate([case.x.ravel(), out.mean])),
        _exponent_range(out.var, 2),
        _exponent_range(np.array([eps]), 2),
        _exponent_range(np.concatenate(grads.dxs), -1),
        (-1000, (998 - math.frexp(eps)[1]) // 2),  # eps * 4**j < 2**998
    ]
    lowest, highest = max(r[0] for r in ranges), min(r[1] for r in ranges)
    assume(lowest <= 0 <= highest)  # x itself is normal
    ends = st.sampled_from([lowest, highest])  # the extreme scales, where a step leaves float64
    j = data.draw(ends | st.integers(lowest, highest), label="j")
    scaled_parts, scaled_eps = [np.ldexp(p, j) for p in parts], math.ldexp(eps, 2 * j)
    scaled = sync_batch_norm_forward(
        scaled_parts, case.gamma, case.beta, eps=scaled_eps, axis=case.axis
    )
    for name in ("ys", "x_hats"):
        for got, want in zip(getattr(scaled, name), getattr(out, name), strict=True):
            np.testing.assert_array_equal(got, want, strict=True, err_msg=name)
    for name, power in (("mean", 1), ("var", 2), ("inv_std", -1)):
        want = np.ldexp(getattr(out, name), power * j)
        np.testing.assert_array_equal(getattr(scaled, name), want, strict=True, err_msg=name)
    scaled_grads = sync_batch_norm_backward(
        dys, scaled_parts, case.gamma, eps=scaled_eps, axis=case.axis
    )
    np.testing.assert_array_equal(scaled_grads.dgamma, grads.dgamma, strict=True)
    np.testing.assert_array_equal(scaled_grads.dbeta, grads.dbeta, strict=True)
    for got, want in zip(scaled_grads.dxs, grads.dxs, strict=True):
        np.testing.assert_array_equal(got, np.ldexp(want, -j), strict=True)


# Representable gradients whose unscaled steps overflow (to inf and NaN): n * dy = 4e308 and
# gamma * inv_std = 1e200 * 2**500. (x, dy, gamma, eps) of one channel, cut after 2 values.
INTERMEDIATE_OVERFLOWS = {
    "n * dy": ([0.0, 0.0, 2.0, 2.0], [1e308, -1e308, 0.0, 0.0], 1.0, 1e-5),
    "gamma * inv_std": ([0.0, 0.0, 0.0], [1e-200, -1e-200, 0.0], 1e200, 2.0**-1000),
}


@pytest.mark.parametrize(
    "values", INTERMEDIATE_OVERFLOWS.values(), ids=INTERMEDIATE_OVERFLOWS.keys()
)
def test_sync_gradients_whose_steps_overflow_equal_plain(
    values: tuple[list[float], list[float], float, float],
) -> None:
    # The plain reference's gradients (checked against 50 digits in test_batchnorm_values):
    # here the merged statistics are exact (mean 1, var 1 or a constant channel), and dbeta
    # = 0, dgamma = 0 and dx take the plain operations on the same values: to one rounding.
    x_column, dy_column, gamma0, eps = values
    x, dy, gamma = np.array([x_column]).T, np.array([dy_column]).T, np.array([gamma0])
    got = sync_batch_norm_backward(np.split(dy, [2]), np.split(x, [2]), gamma, eps=eps)
    want = batch_norm_backward(dy, x, gamma, eps=eps)
    assert np.isfinite(want.dx).all()
    np.testing.assert_allclose(np.concatenate(got.dxs), want.dx, rtol=2 * U64, atol=0)
    np.testing.assert_array_equal(got.dgamma, want.dgamma)
    np.testing.assert_array_equal(got.dbeta, want.dbeta)


# The single-batch backward's overflow cases (dx, dgamma, dbeta beyond float64): sharded, the
# same message names dys, the argument that holds the shards of dy.
GRADIENT_OVERFLOWS = {
    case: (*values[:4], "dys" + values[4].removeprefix("dy"))
    for case, values in SINGLE_BATCH_OVERFLOWS.items()
}


@pytest.mark.parametrize("cuts", [[1], [0, 3]])
@pytest.mark.parametrize("values", GRADIENT_OVERFLOWS.values(), ids=GRADIENT_OVERFLOWS.keys())
def test_sync_gradients_beyond_float64_are_a_value_error(
    values: tuple[list[float], list[float], float, float, str], cuts: list[int]
) -> None:
    x_column, dy_column, gamma1, eps, message = values
    x = np.stack([np.arange(1.0, 4.0), x_column], axis=1)
    dy = np.stack([np.zeros(3), dy_column], axis=1)
    with pytest.raises(ValueError, match="^" + re.escape(message) + "$"):
        sync_batch_norm_backward(
            np.split(dy, cuts), np.split(x, cuts), np.array([1.0, gamma1]), eps=eps
        )


# ---- rejections -----------------------------------------------------------------------------
# Each message starts with the argument's name: the anchored matches pin that contract.


@pytest.mark.parametrize(
    ("counts", "means", "m2s", "match"),
    [
        ([-1, 3], [[0.0], [1.0]], [[0.0], [1.0]], r"^counts must be integers >= 0"),
        ([1.5, 3], [[0.0], [1.0]], [[0.0], [1.0]], r"^counts must be integers >= 0"),
        ([0, 0], [[0.0], [1.0]], [[0.0], [1.0]], r"^counts must not all be 0"),
        ([[1, 2]], [[0.0], [1.0]], [[0.0], [1.0]], r"^counts must have shape"),
        ([1, np.nan], [[0.0], [1.0]], [[0.0], [1.0]], r"^counts must be finite"),
        ([1, 2], [[0.0]], [[0.0]], r"^means must have shape"),
        ([1, 2], [0.0, 1.0], [0.0, 1.0], r"^means must have shape"),
        ([1, 2], [[0.0], [np.nan]], [[0.0], [1.0]], r"^means must be finite"),
        ([1, 2], [[0.0], [1.0]], [[0.0, 1.0]], r"^m2s must have the shape of means"),
        ([1, 2], [[0.0], [1.0]], [[0.0], [-1e-3]], r"^m2s must be >= 0"),
        ([1, 2], [[0.0], [1.0]], [[0.0], [np.inf]], r"^m2s must be finite"),
    ],
)
def test_merge_rejects(counts: Any, means: Any, m2s: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        merge_stats(counts, means, m2s)


ONE = np.ones((1, 2))
G, B = [1.0, 1.0], [0.0, 0.0]


@pytest.mark.parametrize(
    ("shards", "gamma", "beta", "kwargs", "error", "match"),
    [
        # an array is not a list of shards: the message names the type given
        (np.ones((4, 2)), G, B, {}, TypeError, r"^shards must be a non-empty list .* got ndarray$"),
        ([], G, B, {}, TypeError, r"^shards must be a non-empty list .* got list$"),
        ([ONE], G, B, {}, ValueError, r"^shards must hold at least 2 values per channel"),
        ([ONE, [[1.0, np.nan]]], G, B, {}, ValueError, r"^shards\[1\] must be finite"),
        ([ONE, np.float64(1.0)], G, B, {}, ValueError, r"^shards\[1\] must have at least one"),
        # the expected shape is shards[0]'s trailing shape (2,), not the offending shard's (3,)
        (
            [ONE, np.ones((2, 3))],
            G,
            B,
            {},
            ValueError,
            r"^shards\[1\] must have shape \(n_k, \*\(2,\)\)",
        ),
        ([ONE, ONE], [1.0], [0.0], {"axis": 0}, ValueError, r"^axis must not be 0"),
        ([ONE, ONE], [1.0], B, {}, ValueError, r"^gamma must have shape"),
        ([ONE, ONE], G, [0.0], {}, ValueError, r"^beta must have shape"),
        ([ONE, ONE], G, B, {"eps": 0.0}, ValueError, r"^eps must be a finite number > 0"),
    ],
)
def test_sync_forward_rejects(
    shards: Any, gamma: Any, beta: Any, kwargs: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        sync_batch_norm_forward(shards, gamma, beta, **kwargs)


@pytest.mark.parametrize(
    ("dys", "gamma", "kwargs", "error", "match"),
    [
        (np.ones((2, 2)), G, {}, TypeError, r"^dys must be a non-empty list .* got ndarray$"),
        ([ONE], G, {}, ValueError, r"^dys must hold 2 arrays"),
        ([ONE, [[np.nan, 1.0]]], G, {}, ValueError, r"^dys\[1\] must be finite"),
        (
            [ONE, np.ones((2, 2))],
            G,
            {},
            ValueError,
            r"^dys\[1\] must have the shape of shards\[1\]",
        ),
        ([ONE, ONE], [1.0], {}, ValueError, r"^gamma must have shape"),
        ([ONE, ONE], G, {"eps": -1.0}, ValueError, r"^eps must be a finite number > 0"),
    ],
)
def test_sync_backward_rejects(
    dys: Any, gamma: Any, kwargs: Any, error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        sync_batch_norm_backward(dys, [ONE, ONE], gamma, **kwargs)


def test_shard_stats_empty_and_rejects() -> None:
    empty = shard_stats(np.zeros((0, 3)))
    assert empty.count == 0
    assert empty.mean.tolist() == [0.0] * 3
    assert empty.m2.tolist() == [0.0] * 3
    with pytest.raises(ValueError, match=r"^axis must be in"):
        shard_stats(np.zeros((2, 3)), axis=2)
    with pytest.raises(ValueError, match=r"^x must be finite"):
        shard_stats(np.array([[1.0, np.nan]]))


def test_report_worst() -> None:
    """Runs last in this file: prints the worst error/tolerance ratios (pytest -s shows them)."""
    for name, ratio in sorted(WORST.items()):
        print(f"{name}: worst error/tolerance {ratio:.3g}")
