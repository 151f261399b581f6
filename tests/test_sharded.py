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

from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from properties.strategies import BatchCase, batch_cases, upstream_gradients
from properties.tolerances import SAFETY, U64
from reference.batchnorm import batch_norm_backward, batch_norm_forward
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
    s, e, _, _, _, n = _bounds(case, len(parts))
    assert got.count == n
    bshape = tuple(-1 if i == case.axis else 1 for i in range(case.x.ndim))
    tol_x_hat = (2 * SAFETY * e).reshape(bshape)
    x_hat = np.concatenate(got.x_hats, axis=0)
    y = np.concatenate(got.ys, axis=0)
    _note("sync x_hat", np.abs(x_hat - want.x_hat), tol_x_hat)
    tol_y = np.abs(case.gamma).reshape(bshape) * tol_x_hat + 2 * SAFETY * U64 * np.abs(want.y)
    _note("sync y", np.abs(y - want.y), tol_y)
    _note("sync mean", np.abs(got.mean - want.mean), 2 * SAFETY * e * s)


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


# ---- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("counts", "means", "m2s", "match"),
    [
        ([-1, 3], [[0.0], [1.0]], [[0.0], [1.0]], "counts"),
        ([1.5, 3], [[0.0], [1.0]], [[0.0], [1.0]], "counts"),
        ([0, 0], [[0.0], [1.0]], [[0.0], [1.0]], "counts"),
        ([[1, 2]], [[0.0], [1.0]], [[0.0], [1.0]], "counts"),
        ([1, 2], [[0.0]], [[0.0]], "means"),
        ([1, 2], [0.0, 1.0], [0.0, 1.0], "means"),
        ([1, 2], [[0.0], [1.0]], [[0.0, 1.0]], "m2s"),
        ([1, 2], [[0.0], [1.0]], [[0.0], [-1e-3]], "m2s"),
        ([1, 2], [[0.0], [np.nan]], [[0.0], [1.0]], "means"),
    ],
)
def test_merge_rejects(counts: Any, means: Any, m2s: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        merge_stats(counts, means, m2s)


def test_sync_rejects() -> None:
    one = np.ones((1, 2))
    with pytest.raises(TypeError, match="shards"):
        sync_batch_norm_forward(np.ones((4, 2)), [1.0, 1.0], [0.0, 0.0])  # type: ignore[arg-type]  # an array is not a list of shards
    with pytest.raises(TypeError, match="shards"):
        sync_batch_norm_forward([], [1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="shards"):
        sync_batch_norm_forward([one], [1.0, 1.0], [0.0, 0.0])  # one value per channel
    with pytest.raises(ValueError, match=r"shards\[1\]"):
        sync_batch_norm_forward([one, np.ones((2, 3))], [1.0, 1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="axis"):
        sync_batch_norm_forward([one, one], [1.0], [0.0], axis=0)
    with pytest.raises(ValueError, match="gamma"):
        sync_batch_norm_forward([one, one], [1.0], [0.0, 0.0])
    with pytest.raises(ValueError, match="eps"):
        sync_batch_norm_forward([one, one], [1.0, 1.0], [0.0, 0.0], eps=0.0)
    with pytest.raises(ValueError, match="dys"):
        sync_batch_norm_backward([one], [one, one], [1.0, 1.0])
    with pytest.raises(ValueError, match=r"dys\[1\]"):
        sync_batch_norm_backward([one, np.ones((2, 2))], [one, one], [1.0, 1.0])


def test_shard_stats_empty_and_rejects() -> None:
    empty = shard_stats(np.zeros((0, 3)))
    assert empty.count == 0
    assert empty.mean.tolist() == [0.0] * 3
    with pytest.raises(ValueError, match="axis"):
        shard_stats(np.zeros((2, 3)), axis=2)


def test_report_worst() -> None:
    """Runs last in this file: prints the worst error/tolerance ratios (pytest -s shows them)."""
    for name, ratio in sorted(WORST.items()):
        print(f"{name}: worst error/tolerance {ratio:.3g}")
