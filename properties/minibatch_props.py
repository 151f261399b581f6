"""Property 10: random mini-batches partition the shuffled examples, and X stays paired with Y.

A case is a `MiniBatchCase`: m, the batch size s, an integer seed, the example axis, the shape of
one example of X and of Y, and drop_last. The check builds X and Y from the example index j so
that every batch can be read back: example j of X holds the values j*F + 0..F-1 (F values per
example) and example j of Y holds -(j*K + 1..K). All values are integers below 2**53, exact in
float64, so every claim here is exact: tolerance 0, error 0.0 (holds) or 1.0 (does not).

The claims are deterministic. That two seeds give two different orders is NOT claimed: it is
merely likely, and a property that can fail on a correct implementation is no oracle.

The checks take the function under test, a `Partition`, not a batch-norm `Implementation`;
`minibatch_properties(partition)` binds one into `Property` objects, whose `impl` argument is
then unused. `PROPERTIES` binds the reference `random_mini_batches`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from hypothesis import strategies as st
from numpy.typing import NDArray

from properties.adapter import Implementation
from properties.framework import Measurement, Property
from reference.minibatch import random_mini_batches

Array = NDArray[np.float64]
MAX_EXAMPLES = 80  # m up to 80: several batches of every size below, and cheap per example


class Partition(Protocol):
    """A mini-batch function under test: (X, Y) -> [(batch_X, batch_Y), ...].

    `axis` is the example axis of X and of Y; a negative axis counts from each array's own end.
    """

    def __call__(
        self, X: Array, Y: Array, mini_batch_size: int, seed: int, *, axis: int, drop_last: bool
    ) -> Sequence[tuple[NDArray[Any], NDArray[Any]]]: ...


@dataclass(frozen=True)
class MiniBatchCase:
    """m examples of shape `x_example` (X) and `y_example` (Y), example axis `axis`."""

    m: int
    size: int
    seed: int
    axis: int
    x_example: tuple[int, ...]
    y_example: tuple[int, ...]
    drop_last: bool

    def arrays(self) -> tuple[Array, Array]:
        """X and Y whose example j encodes j (see the module docstring)."""
        return _encode(self.m, self.x_example, self.axis, 1.0), _encode(
            self.m, self.y_example, self.axis, -1.0
        )


def _encode(m: int, example: tuple[int, ...], axis: int, sign: float) -> Array:
    """An array with m examples along `axis`; example j holds sign * (j*F + 1..F)."""
    f = int(np.prod(example))
    flat = sign * (np.arange(m)[:, None] * f + np.arange(1, f + 1)[None, :]).astype(np.float64)
    return np.moveaxis(flat.reshape((m, *example)), 0, axis % (len(example) + 1))


def _decode(batch: NDArray[Any], example: tuple[int, ...], axis: int, sign: float) -> NDArray[Any]:
    """The example index j of each example of `batch`, or -1 where its values are not intact."""
    ax = axis % (len(example) + 1)
    if batch.ndim != len(example) + 1 or tuple(np.delete(batch.shape, ax)) != example:
        return np.full(batch.shape[ax] if batch.ndim > ax else 0, -1)
    f = int(np.prod(example))
    rows = sign * np.moveaxis(np.asarray(batch, dtype=np.float64), ax, 0).reshape(-1, f)
    j = (rows[:, 0] - 1) // f
    intact = (rows == j[:, None] * f + np.arange(1, f + 1)[None, :]).all(axis=1)
    return np.where(intact, j, -1).astype(np.int64)


def _exact(quantity: str, holds: bool) -> Measurement:
    return Measurement(quantity, 0.0 if holds else 1.0, 0.0)  # exact claim: tolerance 0


def _run(partition: Partition, case: MiniBatchCase, *, drop_last: bool) -> list[NDArray[Any]]:
    """The X-decoded example indices of each batch (a -1 marks a damaged example)."""
    x, y = case.arrays()
    batches = partition(x, y, case.size, case.seed, axis=case.axis, drop_last=drop_last)
    return [_decode(np.asarray(bx), case.x_example, case.axis, 1.0) for bx, _ in batches]


def check_cover(partition: Partition, case: MiniBatchCase) -> list[Measurement]:
    """Without drop_last the batches' examples are 0..m-1, each exactly once."""
    got = np.concatenate(_run(partition, case, drop_last=False) or [np.empty(0, np.int64)])
    return [
        _exact("examples are 0..m-1 once each", np.array_equal(np.sort(got), np.arange(case.m)))
    ]


def check_pairing(partition: Partition, case: MiniBatchCase) -> list[Measurement]:
    """Each batch's Y example j is the Y of its X example j; every example's values are intact."""
    x, y = case.arrays()
    batches = partition(x, y, case.size, case.seed, axis=case.axis, drop_last=case.drop_last)
    paired = True
    for bx, by in batches:
        jx = _decode(np.asarray(bx), case.x_example, case.axis, 1.0)
        jy = _decode(np.asarray(by), case.y_example, case.axis, -1.0)
        paired = paired and jx.shape == jy.shape and bool((jx >= 0).all() and (jx == jy).all())
    return [_exact("X and Y examples stay paired and intact", paired)]


def check_sizes(partition: Partition, case: MiniBatchCase) -> list[Measurement]:
    """ceil(m/s) batches (floor(m/s) with drop_last), all of size s but the smaller last one."""
    sizes = [len(j) for j in _run(partition, case, drop_last=case.drop_last)]
    m, s = case.m, case.size
    full, rest = divmod(m, s)
    expected = [s] * full + ([] if case.drop_last or rest == 0 else [rest])
    return [
        _exact("number of batches", len(sizes) == len(expected)),
        _exact("batch sizes", sizes == expected),
    ]


def check_drop_last(partition: Partition, case: MiniBatchCase) -> list[Measurement]:
    """drop_last keeps the first floor(m/s) batches of the same shuffle: p[:floor(m/s)*s]."""
    kept = _run(partition, case, drop_last=True)
    every = _run(partition, case, drop_last=False)
    n = case.m // case.size
    same = len(kept) == n and all(
        np.array_equal(a, b) for a, b in zip(kept, every[:n], strict=False)
    )
    flat = np.concatenate([*kept, np.empty(0, np.int64)])
    distinct = len(np.unique(flat)) == len(flat) == n * case.size
    return [
        _exact("drop_last batches equal the first floor(m/s) batches", same),
        _exact("drop_last keeps floor(m/s)*s distinct examples", distinct),
    ]


def check_deterministic(partition: Partition, case: MiniBatchCase) -> list[Measurement]:
    """The same seed gives identical batches (X and Y, values and shapes)."""
    x, y = case.arrays()
    runs = [
        partition(x, y, case.size, case.seed, axis=case.axis, drop_last=case.drop_last)
        for _ in range(2)
    ]
    same = len(runs[0]) == len(runs[1]) and all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        for a, b in zip(runs[0], runs[1], strict=False)
    )
    return [_exact("same seed, same batches", same)]


def check_pure(partition: Partition, case: MiniBatchCase) -> list[Measurement]:
    """X and Y are unchanged, and no batch shares memory with them (a write cannot reach X)."""
    x, y = case.arrays()
    x0, y0 = x.copy(), y.copy()
    batches = partition(x, y, case.size, case.seed, axis=case.axis, drop_last=case.drop_last)
    shared = any(
        np.shares_memory(np.asarray(b), a) for pair in batches for b in pair for a in (x, y)
    )
    unchanged = np.array_equal(x, x0) and np.array_equal(y, y0)
    return [
        _exact("inputs unchanged", unchanged),
        _exact("batches share no memory with X, Y", not shared),
    ]


@st.composite
def minibatch_cases(draw: st.DrawFn, *, max_examples: int = MAX_EXAMPLES) -> MiniBatchCase:
    """m in 1..max_examples; s below, equal to, dividing and above m; any layout with axis."""
    m = draw(st.integers(1, max_examples))
    divisors = [d for d in range(1, m + 1) if m % d == 0]
    size = draw(st.one_of(st.integers(1, m + 3), st.sampled_from(divisors), st.just(m)))
    x_ndim = draw(st.integers(1, 3))
    axis = draw(st.integers(-x_ndim, x_ndim - 1))
    # Y must have the example axis too: a non-negative axis needs ndim > axis, a negative one
    # ndim >= -axis.
    y_min = axis + 1 if axis >= 0 else -axis
    y_ndim = draw(st.integers(max(1, y_min), max(2, y_min)))
    dims = st.integers(1, 3)
    x_example = tuple(draw(st.lists(dims, min_size=x_ndim - 1, max_size=x_ndim - 1)))
    y_example = tuple(draw(st.lists(dims, min_size=y_ndim - 1, max_size=y_ndim - 1)))
    return MiniBatchCase(
        m=m,
        size=size,
        seed=draw(st.integers(0, 2**32 - 1)),
        axis=axis,
        x_example=x_example,
        y_example=y_example,
        drop_last=draw(st.booleans()),
    )


def minibatch_properties(partition: Partition) -> tuple[Property, ...]:
    """Property 10's claims as `Property` objects checking `partition` (impl is not used)."""

    def bind(
        check: Callable[[Partition, MiniBatchCase], list[Measurement]],
    ) -> Callable[[Implementation, Any], list[Measurement]]:
        def run(_impl: Implementation, case: Any) -> list[Measurement]:
            return check(partition, case)

        return run

    tags = frozenset({"minibatch", "exact"})
    claims = (
        ("minibatch-cover", check_cover),
        ("minibatch-pairing", check_pairing),
        ("minibatch-sizes", check_sizes),
        ("minibatch-drop-last", check_drop_last),
        ("minibatch-deterministic", check_deterministic),
        ("minibatch-pure", check_pure),
    )
    return tuple(
        Property(name, (check.__doc__ or name).strip(), minibatch_cases(), bind(check), tags)
        for name, check in claims
    )


PROPERTIES: tuple[Property, ...] = minibatch_properties(random_mini_batches)
