"""Sharded statistics, synchronized BN and ghost BN as properties: they hold for the reference,
and each fails when the module it checks is broken on purpose."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import reference.ghost
import reference.sharded
from properties import distributed_props
from properties.adapter import ReferenceImplementation
from properties.distributed_props import GhostCase, ShardedCase, stated_chunks
from properties.framework import Property, run_property
from properties.profiles import failure_demo
from properties.registry import REFERENCE_PROPERTIES, by_name
from properties.strategies import BatchCase
from reference.ghost import virtual_batch_bounds
from reference.sharded import MergedStats

AUDIT = failure_demo(100)
NAMES = ("merge-stats", "sync-bn-forward", "sync-bn-backward", "ghost-bn-chunks")


def test_registered_with_the_reference() -> None:
    names = {p.name for p in REFERENCE_PROPERTIES}
    assert set(NAMES) <= names


@pytest.mark.parametrize("prop", distributed_props.PROPERTIES, ids=lambda p: p.name)
def test_reference_satisfies(prop: Property) -> None:
    prop.as_test(ReferenceImplementation())()


@pytest.mark.parametrize(
    ("n", "size", "leftover"),
    [(10, 4, "separate"), (10, 4, "merge"), (8, 4, "merge"), (3, 4, "merge"), (9, 2, "merge")],
)
def test_stated_rule_matches_the_module(n: int, size: int, leftover: str) -> None:
    assert tuple(stated_chunks(n, size, leftover)) == virtual_batch_bounds(n, size, leftover)


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
    ("broken", "prop_name", "quantity"),
    [
        (_merge_without_delta_term, "merge-stats", "merged var"),
        (_merge_equal_weights, "merge-stats", "merged mean"),
    ],
)
def test_broken_merge_fails(
    monkeypatch: pytest.MonkeyPatch, broken: Any, prop_name: str, quantity: str
) -> None:
    monkeypatch.setattr(distributed_props, "merge_stats", broken)
    result = run_property(by_name(prop_name), ReferenceImplementation(), AUDIT)
    assert not result.passed
    assert quantity in result.failure


def test_sync_forward_with_unbiased_variance_fails(monkeypatch: pytest.MonkeyPatch) -> None:
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

    monkeypatch.setattr(distributed_props, "sync_batch_norm_forward", unbiased)
    result = run_property(by_name("sync-bn-forward"), ReferenceImplementation(), AUDIT)
    assert not result.passed
    assert "sync y vs plain y" in result.failure


def test_sync_backward_with_local_dgamma_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's SyncBatchNorm.backward returns the local shard's dgamma, dbeta: not the sums."""
    good = reference.sharded.sync_batch_norm_backward

    def local(dys: Any, shards: Any, gamma: Any, *, eps: float, axis: int) -> Any:
        out = good(dys, shards, gamma, eps=eps, axis=axis)
        reduce = tuple(i for i in range(np.ndim(dys[0])) if i != axis)
        return type(out)(out.dxs, out.dgamma, np.sum(dys[0], axis=reduce))

    monkeypatch.setattr(distributed_props, "sync_batch_norm_backward", local)
    result = run_property(by_name("sync-bn-backward"), ReferenceImplementation(), AUDIT)
    assert not result.passed
    assert "sync dbeta vs plain dbeta" in result.failure


def test_ghost_with_the_wrong_leftover_rule_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """A ghost BN that always keeps the short last chunk separate, whatever rule it is given."""
    good = reference.ghost.ghost_batch_norm_forward

    def always_separate(x: Any, gamma: Any, beta: Any, **kw: Any) -> Any:
        return good(x, gamma, beta, **{**kw, "leftover": "separate"})

    monkeypatch.setattr(distributed_props, "ghost_batch_norm_forward", always_separate)
    result = run_property(by_name("ghost-bn-chunks"), ReferenceImplementation(), AUDIT)
    assert not result.passed


def test_ghost_refusal_is_checked() -> None:
    """Examples [8, 9) give one value per channel: ghost BN must refuse them."""
    x = np.arange(9.0 * 2).reshape(9, 2)
    case = BatchCase(x, np.ones(2), np.zeros(2), 1e-5, 1, "float64")
    (m,) = distributed_props.check_ghost_chunks(
        ReferenceImplementation(), GhostCase(case, 4, "separate")
    )
    assert m.passed
    assert "refuses" in m.quantity
    merged = distributed_props.check_ghost_chunks(
        ReferenceImplementation(), GhostCase(case, 4, "merge")
    )
    assert len(merged) == 3  # the count and two virtual batches
    assert all(m.passed for m in merged)


def test_sharded_case_with_empty_shards() -> None:
    x = np.arange(12.0).reshape(6, 2)
    case = BatchCase(x, np.ones(2), np.zeros(2), 1e-3, 1, "float64")
    sc = ShardedCase(case, (0, 2, 2, 5), np.ones_like(x))
    assert [s.shape[0] for s in sc.shards(x)] == [0, 2, 0, 3, 1]
    for check in (distributed_props.check_merge_stats, distributed_props.check_sync_forward):
        assert all(m.passed for m in check(ReferenceImplementation(), sc))
