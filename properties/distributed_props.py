"""Statistics merged from shards, synchronized BN and ghost BN, as properties.

The sharded and ghost modules of the reference (`reference.sharded`, `reference.ghost`) are
compared with plain batch norm as computed by the implementation under test (`impl.forward`,
`impl.backward`) on the concatenated batch or on each virtual batch:

* merge-stats: `merge_stats` of the shards' `shard_stats` (Chan, Golub & LeVeque's pairwise
  update, unequal counts, empty shards) gives the whole batch's mean and biased variance;
* sync-bn-forward / sync-bn-backward: `sync_batch_norm_forward` / `_backward` over the shards
  give plain BN's y, mean, dx, dgamma and dbeta over the concatenated batch;
* ghost-bn-chunks: `ghost_batch_norm_forward` gives, on each virtual batch, plain BN of that
  virtual batch, where the virtual batches follow the stated leftover rule (re-derived here,
  not taken from `virtual_batch_bounds`): chunks of `size` examples from the start; a shorter
  last chunk is its own virtual batch ("separate") or joins the previous one ("merge"); a
  virtual batch with fewer than 2 values per channel is refused with ValueError.

They are registered with the reference's own properties: they check the reference's sharded
and ghost code, using the target only as the plain batch norm it is compared with.

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
The plain side gets the same bounds with S = 0 and its own u; every tolerance is the sum of
both sides' bounds times SAFETY, plus (n + 3S + 4) ETA per statistic for gradual underflow.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st

from properties.adapter import Array, Implementation
from properties.checks import compare
from properties.framework import Measurement, Property
from properties.strategies import BatchCase, batch_cases, upstream_gradients
from properties.tolerances import (
    ETA,
    SAFETY,
    U64,
    ExactStats,
    channel_rows,
    exact_stats,
    expand,
    precision,
)
from reference.ghost import ghost_batch_norm_forward
from reference.sharded import (
    merge_stats,
    shard_stats,
    sync_batch_norm_backward,
    sync_batch_norm_forward,
)

MAX_SHARDS = 8
LEFTOVER_RULES = ("separate", "merge")


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


def _sides(impl: Implementation, sc: ShardedCase) -> tuple[ExactStats, _Side, _Side, float]:
    """Exact statistics, the sharded side's bounds (float64), the plain side's (impl's u), and
    the underflow allowance per statistic."""
    case = sc.case
    stats = exact_stats(case.x, case.axis, case.eps)
    shards = len(sc.cuts) + 1
    p = precision(impl.dtype)
    sharded = _side(stats, case.x.ndim, shards, U64)
    plain = _side(stats, case.x.ndim, 0, p.u)
    under = (stats.count + 3 * shards + 4) * max(ETA, p.eta)
    return stats, sharded, plain, under


def check_merge_stats(impl: Implementation, sc: ShardedCase) -> list[Measurement]:
    """merge_stats(shard_stats of each shard) == (n, mean, biased var) of the whole batch."""
    case = sc.case
    parts = [shard_stats(part, axis=case.axis) for part in sc.shards(case.x)]
    got = merge_stats([s.count for s in parts], [s.mean for s in parts], [s.m2 for s in parts])
    c = case.gamma.size
    plain = impl.forward(case.x, np.ones(c), np.zeros(c), eps=case.eps, axis=case.axis)
    stats, a, b, under = _sides(impl, sc)
    s = stats.scale
    tol_mean = SAFETY * (a.shift + b.shift) * s + under
    tol_var = SAFETY * (a.var_rel + b.var_rel) * s**2 + under
    return [
        Measurement("merged count vs n", 0.0 if got.count == stats.count else 1.0, 0.0),
        compare("merged mean vs whole-batch mean", got.mean, plain.mean, tol_mean),
        compare("merged var vs whole-batch biased var", got.var, plain.var, tol_var),
    ]


def check_sync_forward(impl: Implementation, sc: ShardedCase) -> list[Measurement]:
    """Sync BN over the shards == plain BN over the concatenated batch: y and mean."""
    case = sc.case
    got = sync_batch_norm_forward(
        sc.shards(case.x), case.gamma, case.beta, eps=case.eps, axis=case.axis
    )
    want = impl.forward(case.x, case.gamma, case.beta, eps=case.eps, axis=case.axis)
    stats, a, b, under = _sides(impl, sc)
    nd, u = case.x.ndim, precision(impl.dtype).u
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


def check_sync_backward(impl: Implementation, sc: ShardedCase) -> list[Measurement]:
    """Sync BN's backward over the shards == plain BN's on the concatenated batch: dx, and the
    all-reduced dgamma, dbeta (sums over the whole batch)."""
    case = sc.case
    got = sync_batch_norm_backward(
        sc.shards(sc.dy), sc.shards(case.x), case.gamma, eps=case.eps, axis=case.axis
    )
    want = impl.backward(sc.dy, case.x, case.gamma, eps=case.eps, axis=case.axis)
    stats, a, b, under = _sides(impl, sc)
    nd, n, u = case.x.ndim, stats.count, precision(impl.dtype).u
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


def check_ghost_chunks(impl: Implementation, gc: GhostCase) -> list[Measurement]:
    """Ghost BN == plain BN of each virtual batch of the stated rule; a virtual batch of fewer
    than 2 values per channel makes ghost BN raise ValueError (an exact claim)."""
    case = gc.case
    x = case.x
    chunks = stated_chunks(x.shape[0], gc.virtual_batch_size, gc.leftover)
    per_example = x.size // x.shape[0] // case.gamma.size
    too_small = any((b - a) * per_example < 2 for a, b in chunks)
    try:
        got = ghost_batch_norm_forward(
            x,
            case.gamma,
            case.beta,
            virtual_batch_size=gc.virtual_batch_size,
            eps=case.eps,
            axis=case.axis,
            leftover=gc.leftover,  # type: ignore[arg-type]  # drawn from LEFTOVER_RULES
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
    u = precision(impl.dtype).u
    for k, (a, b) in enumerate(chunks):
        part = BatchCase(x[a:b], case.gamma, case.beta, case.eps, case.axis, case.dtype)
        want = impl.forward(part.x, part.gamma, part.beta, eps=part.eps, axis=part.axis).y
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


PROPERTIES: tuple[Property, ...] = (
    Property(
        "merge-stats",
        "merge_stats of per-shard (count, mean, M2), unequal and empty shards included, gives "
        "the whole batch's count, mean and biased variance (Chan et al.)",
        sharded_cases(),
        check_merge_stats,
        frozenset({"distributed"}),
    ),
    Property(
        "sync-bn-forward",
        "synchronized BN over the shards gives plain BN's y and mean on the concatenated batch",
        sharded_cases(),
        check_sync_forward,
        frozenset({"distributed"}),
    ),
    Property(
        "sync-bn-backward",
        "synchronized BN's backward gives plain BN's dx, and dgamma, dbeta summed over the "
        "whole batch, on the concatenated batch",
        sharded_cases(),
        check_sync_backward,
        frozenset({"distributed", "gradient"}),
    ),
    Property(
        "ghost-bn-chunks",
        "ghost BN gives plain BN of each virtual batch (chunks of size from the start; the "
        "short last chunk alone or merged into the previous); < 2 values per channel refused",
        ghost_cases(),
        check_ghost_chunks,
        frozenset({"distributed"}),
    ),
)
