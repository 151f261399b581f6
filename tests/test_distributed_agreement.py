"""Statistics merged from shards, synchronized BN and ghost BN agree with plain batch norm.

The sharded and ghost modules of the reference (`reference.sharded`, `reference.ghost`) are
compared with the reference's plain batch norm (`batch_norm_forward`, `batch_norm_backward`) on
the concatenated batch or on each virtual batch:

* merged statistics: `merge_stats` of the shards' `shard_stats` (Chan, Golub & LeVeque's
  pairwise update, unequal counts, empty shards) gives the whole batch's mean and biased
  variance;
* sync BN forward / backward: `sync_batch_norm_forward` / `_backward` over the shards give plain
  BN's y, mean, dx, dgamma and dbeta over the concatenated batch;
* ghost BN: `ghost_batch_norm_forward` gives, on each virtual batch, plain BN of that virtual
  batch, where the virtual batches follow the stated leftover rule (re-derived here, not taken
  from `virtual_batch_bounds`): chunks of `size` examples from the start; a shorter last chunk is
  its own virtual batch ("separate") or joins the previous one ("merge"); a virtual batch with
  fewer than 2 values per channel is refused with ValueError.

Each check takes the function it checks as an argument (default: the reference's), so a test can
hand it a broken one and see the claim fail.

Tolerances (derived as in `properties.tolerances`; per channel n values in S shards, unit
roundoff u of each side, s = sqrt(var + eps), kappa = max|x| / s, dev = max|x - mean| / s):
a merge step adds <= 3u max|x| to the mean, so the sharded side behaves like a one-pass
computation over n' = n + 3S values:

* mean: |dmean| / s <= shift := (n' + 1) u kappa;
* variance: relative error var_rel := (n' + 2) u + shift**2 + 4 dev shift: the merge term
  delta**2 n_a n_b / n errs by 2 |delta| |d delta| n_a n_b / n**2 <= 2 dev shift relative to
  s**2 (|delta| <= 2 dev s, |d delta| <= 2 shift s, n_a n_b / n**2 <= 1/4), counted twice;
* inv_std: r := var_rel / 2 + 2u; x_hat_i: E_i := shift + |x_hat_i| (r + u);
* dx = gamma inv_std (dy - mean(dy) - x_hat mean(dy x_hat)) with D = max|dy|, X = max|x_hat|:
  |gamma| / s D (r (2 + X**2) + 2 E X + (n + 4) u (2 + X**2)); dgamma: n D E + n u D X;
  dbeta: n u sum|dy|.
The plain side gets the same bounds with S = 0 and its own u (float64, the reference); every
tolerance is the sum of both sides' bounds times SAFETY, plus (n + 3S + 4) ETA per statistic
for gradual underflow.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
from claims import assert_holds, falsified
from hypothesis import given
from hypothesis import strategies as st

import reference.ghost
import reference.sharded
from properties.adapter import Array
from properties.checks import compare
from properties.framework import Measurement
from properties.profiles import failure_demo
from properties.strategies import BatchCase, batch_cases, upstream_gradients
from properties.tolerances import ETA, SAFETY, U64, ExactStats, channel_rows, exact_stats, expand
from reference.batchnorm import batch_norm_backward, batch_norm_forward
from reference.ghost import ghost_batch_norm_forward, virtual_batch_bounds
from reference.sharded import (
    MergedStats,
    merge_stats,
    shard_stats,
    sync_batch_norm_backward,
    sync_batch_norm_forward,
)

MAX_SHARDS = 8
LEFTOVER_RULES = ("separate", "merge")
PLAIN_U = U64  # the plain side's unit roundoff: the reference computes in float64
AUDIT = failure_demo(100)  # a planted mistake must be caught within 100 examples


@dataclass(frozen=True)
class ShardedCase:
    """A batch case (channel axis not 0), the cut points along axis 0 and an upstream dy.

    `cuts` is sorted and may repeat, so some shards are empty; shard k is x[cuts[k-1]:cuts[k]].
    """

    case: BatchCase
    cuts: tuple[int, ...]
    dy: Array

    def shards(self, values: Array) -> list[Array]:
        """`values` (shaped like x) cut into the shards."""
        return np.split(values, list(self.cuts), axis=0)


def _off_axis_zero(case: BatchCase) -> BatchCase:
    """The same values with the channel axis moved off the batch axis 0 (swapped with 1)."""
    if case.axis % case.x.ndim != 0:
        return case
    x = np.swapaxes(case.x, 0, 1).copy()
    return BatchCase(x, case.gamma, case.beta, case.eps, 1, case.dtype)


@st.composite
def sharded_cases(draw: st.DrawFn) -> ShardedCase:
    """Any batch case cut along axis 0 into 1 to MAX_SHARDS shards of unequal sizes (some empty,
    some of one example)."""
    case = _off_axis_zero(draw(batch_cases()))
    n = case.x.shape[0]
    cuts = draw(st.lists(st.integers(0, n), max_size=MAX_SHARDS - 1))
    dy = draw(upstream_gradients(case.x.shape))
    return ShardedCase(case, tuple(sorted(cuts)), dy)


@dataclass(frozen=True)
class _Side:
    """One side's per-channel bounds (before SAFETY): mean shift, var_rel, r, and E per element."""

    shift: Array
    var_rel: Array
    r: Array
    e: Array


def _side(stats: ExactStats, ndim: int, merges: int, u: float) -> _Side:
    """The bounds of the module docstring for n' = n + 3 * merges values at unit roundoff u."""
    n1 = stats.count + 3 * merges
    shift = (n1 + 1) * u * stats.kappa
    var_rel = (n1 + 2) * u + shift**2 + 4 * stats.dev_ratio * shift
    r = var_rel / 2 + 2 * u
    e = expand(stats, shift, ndim) + np.abs(stats.x_hat) * expand(stats, r + u, ndim)
    return _Side(shift, var_rel, r, e)


def _sides(sc: ShardedCase) -> tuple[ExactStats, _Side, _Side, float]:
    """Exact statistics, the sharded side's bounds, the plain side's, and the underflow
    allowance per statistic."""
    case = sc.case
    stats = exact_stats(case.x, case.axis, case.eps)
    shards = len(sc.cuts) + 1
    sharded = _side(stats, case.x.ndim, shards, U64)
    plain = _side(stats, case.x.ndim, 0, PLAIN_U)
    under = (stats.count + 3 * shards + 4) * ETA
    return stats, sharded, plain, under


def check_merge_stats(
    sc: ShardedCase, merge: Callable[..., MergedStats] = merge_stats
) -> list[Measurement]:
    """merge(shard_stats of each shard) == (n, mean, biased var) of the whole batch."""
    case = sc.case
    parts = [shard_stats(part, axis=case.axis) for part in sc.shards(case.x)]
    got = merge([s.count for s in parts], [s.mean for s in parts], [s.m2 for s in parts])
    c = case.gamma.size
    plain = batch_norm_forward(case.x, np.ones(c), np.zeros(c), eps=case.eps, axis=case.axis)
    stats, a, b, under = _sides(sc)
    s = stats.scale
    tol_mean = SAFETY * (a.shift + b.shift) * s + under
    tol_var = SAFETY * (a.var_rel + b.var_rel) * s**2 + under
    return [
        Measurement("merged count vs n", 0.0 if got.count == stats.count else 1.0, 0.0),
        compare("merged mean vs whole-batch mean", got.mean, plain.mean, tol_mean),
        compare("merged var vs whole-batch biased var", got.var, plain.var, tol_var),
    ]


def check_sync_forward(
    sc: ShardedCase, sync_forward: Callable[..., Any] = sync_batch_norm_forward
) -> list[Measurement]:
    """Sync BN over the shards == plain BN over the concatenated batch: y and mean."""
    case = sc.case
    got = sync_forward(sc.shards(case.x), case.gamma, case.beta, eps=case.eps, axis=case.axis)
    want = batch_norm_forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    stats, a, b, under = _sides(sc)
    nd, u = case.x.ndim, PLAIN_U
    g = np.abs(expand(stats, case.gamma, nd))
    y_abs = np.abs(want.y)
    # both sides round gamma x_hat and + beta: 2u relative each
    tol_y = SAFETY * (g * (a.e + b.e) + 2 * (U64 + u) * (g * np.abs(stats.x_hat) + y_abs))
    tol_y = tol_y + under * (1 + g * expand(stats, 1 / stats.scale, nd))
    tol_mean = SAFETY * (a.shift + b.shift) * stats.scale + under
    return [
        compare("sync y vs plain y", np.concatenate(got.ys, axis=0), want.y, tol_y),
        compare("sync mean vs plain mean", got.mean, want.mean, tol_mean),
        Measurement("sync count vs n", 0.0 if got.count == stats.count else 1.0, 0.0),
    ]


def check_sync_backward(
    sc: ShardedCase, sync_backward: Callable[..., Any] = sync_batch_norm_backward
) -> list[Measurement]:
    """Sync BN's backward over the shards == plain BN's on the concatenated batch: dx, and the
    all-reduced dgamma, dbeta (sums over the whole batch)."""
    case = sc.case
    got = sync_backward(
        sc.shards(sc.dy), sc.shards(case.x), case.gamma, eps=case.eps, axis=case.axis
    )
    want = batch_norm_backward(sc.dy, case.x, case.gamma, eps=case.eps, axis=case.axis)
    stats, a, b, under = _sides(sc)
    nd, n, u = case.x.ndim, stats.count, PLAIN_U
    rows = channel_rows(np.abs(sc.dy), stats)
    d = np.max(rows, axis=1)
    big_x = np.max(channel_rows(np.abs(stats.x_hat), stats), axis=1)
    e_max = [np.max(channel_rows(side.e, stats), axis=1) for side in (a, b)]

    def dx_bound(side: _Side, e: Array, uu: float) -> Array:
        q = 2 + big_x**2
        bound: Array = side.r * q + 2 * e * big_x + (n + 4) * uu * q
        return bound

    scale = np.abs(case.gamma) / stats.scale * d
    tol_dx = SAFETY * scale * (dx_bound(a, e_max[0], U64) + dx_bound(b, e_max[1], u))
    tol_dx = expand(stats, tol_dx + under * (1 + scale), nd)
    tol_dg = SAFETY * n * d * (e_max[0] + e_max[1] + (U64 + u) * big_x) + under
    tol_db = SAFETY * n * (U64 + u) * np.sum(rows, axis=1) + under
    return [
        compare("sync dx vs plain dx", np.concatenate(got.dxs, axis=0), want.dx, tol_dx),
        compare("sync dgamma vs plain dgamma", got.dgamma, want.dgamma, tol_dg),
        compare("sync dbeta vs plain dbeta", got.dbeta, want.dbeta, tol_db),
    ]


@dataclass(frozen=True)
class GhostCase:
    """A batch case (channel axis not 0), a virtual batch size and a leftover rule."""

    case: BatchCase
    virtual_batch_size: int
    leftover: str


@st.composite
def ghost_cases(draw: st.DrawFn) -> GhostCase:
    """Any batch case; virtual batch sizes from 1 to N + 2 (N examples); either leftover rule."""
    case = _off_axis_zero(draw(batch_cases()))
    size = draw(st.integers(1, case.x.shape[0] + 2))
    return GhostCase(case, size, draw(st.sampled_from(LEFTOVER_RULES)))


def stated_chunks(batch: int, size: int, leftover: str) -> list[tuple[int, int]]:
    """The leftover rule as stated: [k size, (k+1) size) from the start; a shorter last chunk
    stays alone ("separate") or joins the previous chunk ("merge") when there is one."""
    chunks = [(start, min(start + size, batch)) for start in range(0, batch, size)]
    if leftover == "merge" and batch % size and len(chunks) > 1:
        (a, _), (_, b) = chunks[-2], chunks[-1]
        chunks[-2:] = [(a, b)]
    return chunks


def check_ghost_chunks(
    gc: GhostCase, ghost_forward: Callable[..., Any] = ghost_batch_norm_forward
) -> list[Measurement]:
    """Ghost BN == plain BN of each virtual batch of the stated rule; a virtual batch of fewer
    than 2 values per channel makes ghost BN raise ValueError (an exact claim)."""
    case = gc.case
    x = case.x
    chunks = stated_chunks(x.shape[0], gc.virtual_batch_size, gc.leftover)
    per_example = x.size // x.shape[0] // case.gamma.size
    too_small = any((b - a) * per_example < 2 for a, b in chunks)
    try:
        got = ghost_forward(
            x,
            case.gamma,
            case.beta,
            virtual_batch_size=gc.virtual_batch_size,
            eps=case.eps,
            axis=case.axis,
            leftover=gc.leftover,
        )
    except ValueError:
        return [
            Measurement(
                "ghost BN refuses a virtual batch < 2 values", 0.0 if too_small else 1.0, 0.0
            )
        ]
    if too_small:
        return [Measurement("ghost BN accepted a virtual batch of < 2 values", 1.0, 0.0)]
    out = [Measurement("number of virtual batches", float(len(got.bounds) != len(chunks)), 0.0)]
    u = PLAIN_U
    for k, (a, b) in enumerate(chunks):
        part = BatchCase(x[a:b], case.gamma, case.beta, case.eps, case.axis, case.dtype)
        want = batch_norm_forward(part.x, part.gamma, part.beta, eps=part.eps, axis=part.axis).y
        stats = exact_stats(part.x, part.axis, part.eps)
        nd = part.x.ndim
        g = np.abs(expand(stats, case.gamma, nd))
        ref_side, impl_side = _side(stats, nd, 0, U64), _side(stats, nd, 0, u)
        tol = SAFETY * (
            g * (ref_side.e + impl_side.e)
            + 2 * (U64 + u) * (g * np.abs(stats.x_hat) + np.abs(want))
        ) + (stats.count + 4) * ETA * (1 + g * expand(stats, 1 / stats.scale, nd))
        out.append(compare(f"virtual batch {k} [{a}, {b}) vs plain BN", got.y[a:b], want, tol))
    return out


# --- the reference agrees -------------------------------------------------------------------


@given(sc=sharded_cases())
def test_merged_statistics_are_the_whole_batch_statistics(sc: ShardedCase) -> None:
    """merge_stats of per-shard (count, mean, M2), unequal and empty shards included, gives the
    whole batch's count, mean and biased variance (Chan et al.)."""
    assert_holds(check_merge_stats(sc))


@given(sc=sharded_cases())
def test_sync_forward_is_plain_batch_norm_of_the_whole_batch(sc: ShardedCase) -> None:
    """Synchronized BN over the shards gives plain BN's y and mean on the concatenated batch."""
    assert_holds(check_sync_forward(sc))


@given(sc=sharded_cases())
def test_sync_backward_is_plain_backward_of_the_whole_batch(sc: ShardedCase) -> None:
    """Synchronized BN's backward gives plain BN's dx, and dgamma, dbeta summed over the whole
    batch, on the concatenated batch."""
    assert_holds(check_sync_backward(sc))


@given(gc=ghost_cases())
def test_ghost_is_plain_batch_norm_of_each_virtual_batch(gc: GhostCase) -> None:
    """Ghost BN gives plain BN of each virtual batch (chunks of size from the start; the short
    last chunk alone or merged into the previous); < 2 values per channel refused."""
    assert_holds(check_ghost_chunks(gc))


@pytest.mark.parametrize(
    ("n", "size", "leftover"),
    [(10, 4, "separate"), (10, 4, "merge"), (8, 4, "merge"), (3, 4, "merge"), (9, 2, "merge")],
)
def test_stated_rule_matches_the_module(n: int, size: int, leftover: str) -> None:
    assert tuple(stated_chunks(n, size, leftover)) == virtual_batch_bounds(n, size, leftover)


# --- each claim catches a broken module ------------------------------------------------------


def _merge_without_delta_term(counts: Any, means: Any, m2s: Any) -> MergedStats:
    """Chan's merge with the delta**2 n_a n_b / n term forgotten: M2 = sum of the shards' M2."""
    good = reference.sharded.merge_stats(counts, means, m2s)
    m2 = np.sum(np.asarray(m2s, dtype=np.float64), axis=0)
    return MergedStats(good.count, good.mean, m2, m2 / good.count)


def _merge_equal_weights(counts: Any, means: Any, m2s: Any) -> MergedStats:
    """The shard means averaged with equal weights, as if every shard had the same count."""
    good = reference.sharded.merge_stats(counts, means, m2s)
    c = np.asarray(counts)
    mean = np.mean(np.asarray(means)[c > 0], axis=0)
    return MergedStats(good.count, mean, good.m2, good.var)


@pytest.mark.parametrize(
    ("broken", "quantity"),
    [(_merge_without_delta_term, "merged var"), (_merge_equal_weights, "merged mean")],
)
def test_broken_merge_fails(broken: Callable[..., MergedStats], quantity: str) -> None:
    failure = falsified(
        lambda sc: assert_holds(check_merge_stats(sc, merge=broken)), sharded_cases(), AUDIT
    )
    assert quantity in failure


def test_sync_forward_with_unbiased_variance_fails() -> None:
    """Sync BN normalizing with the unbiased global variance M2/(n-1) instead of M2/n."""
    good = reference.sharded.sync_batch_norm_forward

    def unbiased(shards: Any, gamma: Any, beta: Any, *, eps: float, axis: int) -> Any:
        out = good(shards, gamma, beta, eps=eps, axis=axis)
        n = out.count
        x = np.concatenate(shards, axis=0)
        wrong = reference.batch_norm_forward(x, gamma, beta, eps=eps, axis=axis)
        scale = np.sqrt((out.var + eps) / (out.var * n / (n - 1) + eps))
        shape = [1] * x.ndim
        shape[axis] = -1
        beta_ = np.asarray(beta).reshape(shape)
        y = (wrong.y - beta_) * scale.reshape(shape) + beta_
        cuts = np.cumsum([s.shape[0] for s in shards])[:-1]
        return type(out)(
            tuple(np.split(y, cuts, axis=0)), out.x_hats, out.mean, out.var, out.inv_std, n
        )

    failure = falsified(
        lambda sc: assert_holds(check_sync_forward(sc, sync_forward=unbiased)),
        sharded_cases(),
        AUDIT,
    )
    assert "sync y vs plain y" in failure


def test_sync_backward_with_local_dgamma_fails() -> None:
    """torch's SyncBatchNorm.backward returns the local shard's dgamma, dbeta: not the sums."""
    good = reference.sharded.sync_batch_norm_backward

    def local(dys: Any, shards: Any, gamma: Any, *, eps: float, axis: int) -> Any:
        out = good(dys, shards, gamma, eps=eps, axis=axis)
        reduce = tuple(i for i in range(np.ndim(dys[0])) if i != axis)
        return type(out)(out.dxs, out.dgamma, np.sum(dys[0], axis=reduce))

    failure = falsified(
        lambda sc: assert_holds(check_sync_backward(sc, sync_backward=local)),
        sharded_cases(),
        AUDIT,
    )
    assert "sync dbeta vs plain dbeta" in failure


def test_ghost_with_the_wrong_leftover_rule_fails() -> None:
    """A ghost BN that always keeps the short last chunk separate, whatever rule it is given."""
    good = reference.ghost.ghost_batch_norm_forward

    def always_separate(x: Any, gamma: Any, beta: Any, **kw: Any) -> Any:
        return good(x, gamma, beta, **{**kw, "leftover": "separate"})

    falsified(
        lambda gc: assert_holds(check_ghost_chunks(gc, ghost_forward=always_separate)),
        ghost_cases(),
        AUDIT,
    )


def test_ghost_refusal_is_checked() -> None:
    """Examples [8, 9) give one value per channel: ghost BN must refuse them."""
    x = np.arange(9.0 * 2).reshape(9, 2)
    case = BatchCase(x, np.ones(2), np.zeros(2), 1e-5, 1, "float64")
    (m,) = check_ghost_chunks(GhostCase(case, 4, "separate"))
    assert m.passed
    assert "refuses" in m.quantity
    merged = check_ghost_chunks(GhostCase(case, 4, "merge"))
    assert len(merged) == 3  # the count and two virtual batches
    assert all(m.passed for m in merged)


def test_sharded_case_with_empty_shards() -> None:
    x = np.arange(12.0).reshape(6, 2)
    case = BatchCase(x, np.ones(2), np.zeros(2), 1e-3, 1, "float64")
    sc = ShardedCase(case, (0, 2, 2, 5), np.ones_like(x))
    assert [s.shape[0] for s in sc.shards(x)] == [0, 2, 0, 3, 1]
    assert_holds(check_merge_stats(sc))
    assert_holds(check_sync_forward(sc))
