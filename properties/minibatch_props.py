"""Mini-batch properties: a mini-batch function cuts the shuffled examples into batches that
cover the data, and keeps each X example with its Y.

The target is a mini-batch function, wrapped in a `MiniBatchTarget`, in one of two forms:

* the course's: ``random_mini_batches(X, Y, mini_batch_size=64, seed=0)`` returning a list of
  ``(mini_batch_X, mini_batch_Y)``, with X of shape (n_x, m) and Y of shape (1, m): the
  examples along axis 1 (the course notes' exercise, which a user audits with
  ``bnref check MOD:FN --minibatch``);
* the reference's (`reference.minibatch.random_mini_batches`), which also takes ``axis=``, the
  example axis of X and of Y in any layout, and ``drop_last=``.

A case is a `MiniBatchCase`: m, the batch size s, an integer seed, the layout and drop_last.
Its layout is None for the course layout, X (features, m) and Y (1, m), or a `Layout` (the
example axis and the shape of one example of X and of Y). A course-form target fixes
``layout=None`` and ``drop_last=False`` (`fixed_case_values`), so every case it is given is one
it can take; the drop-last property does not apply to it (n/a).

The check builds X and Y from the example index j so that every batch can be read back:
example j of X holds the values j*F + 1..F (F values per example) and example j of Y holds
-(j*K + 1..K). All values are integers below 2**53, exact in float64, so every claim here is
exact: tolerance 0, error 0.0 (holds) or 1.0 (does not). The claims are deterministic. That
two seeds give two different orders is NOT claimed: it is merely likely, and a property that
can fail on a correct implementation is no oracle. Nor is a particular permutation claimed: any
shuffle drawn from the seed passes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, NoReturn

import numpy as np
from hypothesis import strategies as st
from numpy.typing import ArrayLike, NDArray

from properties.adapter import BackwardOutput, ForwardOutput, Implementation, RunningStats
from properties.framework import Measurement, Property, Unsupported
from reference.minibatch import random_mini_batches

Array = NDArray[np.float64]
Batches = Sequence[tuple[ArrayLike, ArrayLike]]
MiniBatchFunction = Callable[..., Batches]
Form = Literal["course", "reference"]
MAX_EXAMPLES = 80  # m up to 80: several batches of every size below, and cheap per example


@dataclass(frozen=True)
class Layout:
    """The example axis of X and of Y, and the shape of one example of each.

    A negative axis counts from each array's own end."""

    axis: int
    x_example: tuple[int, ...]
    y_example: tuple[int, ...]


@dataclass(frozen=True)
class MiniBatchCase:
    """m examples cut into batches of `size` from `seed`. X and Y are in the course layout,
    X (features, m) and Y (1, m), when `layout` is None, else in `layout`."""

    m: int
    size: int
    seed: int
    features: int
    layout: Layout | None
    drop_last: bool

    def resolved_layout(self) -> Layout:
        """The layout, the course's spelled out when `layout` is None."""
        return self.layout or Layout(axis=1, x_example=(self.features,), y_example=(1,))

    def arrays(self) -> tuple[Array, Array]:
        """X and Y whose example j encodes j (see the module docstring)."""
        lay = self.resolved_layout()
        return _encode(self.m, lay.x_example, lay.axis, 1.0), _encode(
            self.m, lay.y_example, lay.axis, -1.0
        )


class MiniBatches(NamedTuple):
    """What a mini-batch function returned for (X, Y): its batches, and whether any of them
    shares memory with X or Y, decided in the process where the function ran (batches sent
    from a worker process are copies, which share memory with nothing)."""

    batches: list[tuple[ArrayLike, ArrayLike]]
    shares_memory: bool


class MiniBatchTarget:
    """A mini-batch function under test, seen as a `bnref check` target.

    `function` is called as ``function(X, Y, mini_batch_size, seed)`` (form "course", X (n_x, m)
    and Y (1, m)) or also with ``axis=`` and ``drop_last=`` keywords (form "reference"), and
    returns the batches as (X_batch, Y_batch) pairs. A mini-batch function computes no batch
    norm: the batch-norm methods raise `Unsupported`, so a batch-norm property run on it is not
    applicable.
    """

    def __init__(self, function: MiniBatchFunction, name: str, *, form: Form = "course") -> None:
        if form not in ("course", "reference"):
            raise ValueError(f"form must be 'course' or 'reference', got {form!r}")
        self._function = function
        self._name = name
        self._form: Form = form

    @property
    def name(self) -> str:
        return self._name

    @property
    def form(self) -> Form:
        return self._form

    @property
    def dtype(self) -> str:
        return "float64"  # batches move values and compute none: no precision to check

    @property
    def fixed_case_values(self) -> dict[str, object]:
        """A course-form function takes the course layout only, and no drop_last."""
        return {"layout": None, "drop_last": False} if self._form == "course" else {}

    def batches(
        self, X: Array, Y: Array, size: int, seed: int, *, layout: Layout | None, drop_last: bool
    ) -> list[tuple[ArrayLike, ArrayLike]]:
        """The function's batches of (X, Y); `Unsupported` for a layout or a drop_last that its
        form does not take."""
        if self._form == "reference":
            axis = 1 if layout is None else layout.axis
            return list(self._function(X, Y, size, seed, axis=axis, drop_last=drop_last))
        if layout is not None:
            raise Unsupported(f"{self._name} takes the course layout only: X (n_x, m), Y (1, m)")
        if drop_last:
            raise Unsupported(f"{self._name} takes no drop_last: it always keeps the last batch")
        return list(self._function(X, Y, size, seed))

    def batches_and_sharing(
        self, X: Array, Y: Array, size: int, seed: int, *, layout: Layout | None, drop_last: bool
    ) -> MiniBatches:
        """The function's batches of (X, Y) (`batches`) and whether any shares memory with X
        or Y, which only the process that called the function can tell."""
        out = self.batches(X, Y, size, seed, layout=layout, drop_last=drop_last)
        shared = any(
            np.shares_memory(np.asarray(b), a) for pair in out for b in pair for a in (X, Y)
        )
        return MiniBatches(out, shared)

    def _no_batch_norm(self, method: str) -> NoReturn:
        raise Unsupported(f"{self._name} is a mini-batch function: it has no batch-norm {method}")

    @property
    def convention(self) -> str:
        self._no_batch_norm("running-statistics convention")

    # The batch-norm methods of the protocol, with any arguments: a mini-batch function has none.
    def forward(self, *_args: Any, **_kwargs: Any) -> ForwardOutput:
        self._no_batch_norm("forward")

    def backward(self, *_args: Any, **_kwargs: Any) -> BackwardOutput:
        self._no_batch_norm("backward")

    def inference(self, *_args: Any, **_kwargs: Any) -> Array:
        self._no_batch_norm("inference")

    def update_running_stats(self, *_args: Any, **_kwargs: Any) -> RunningStats:
        self._no_batch_norm("running statistics")


def reference_target() -> MiniBatchTarget:
    """The reference's `random_mini_batches`, in its own form (any layout, drop_last)."""
    return MiniBatchTarget(random_mini_batches, "reference random_mini_batches", form="reference")


def _target(impl: Implementation) -> MiniBatchTarget:
    """`impl` as a mini-batch function; `Unsupported` for a batch-norm implementation."""
    if not isinstance(impl, MiniBatchTarget):
        raise Unsupported(
            f"{impl.name} is a batch-norm implementation; the mini-batch properties check a "
            "mini-batch function (bnref check MOD:FN --minibatch)"
        )
    return impl


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


def _call(
    target: MiniBatchTarget, case: MiniBatchCase, x: Array, y: Array, *, drop_last: bool
) -> list[tuple[ArrayLike, ArrayLike]]:
    return target.batches(x, y, case.size, case.seed, layout=case.layout, drop_last=drop_last)


def _run(target: MiniBatchTarget, case: MiniBatchCase, *, drop_last: bool) -> list[NDArray[Any]]:
    """The X-decoded example indices of each batch (a -1 marks a damaged example)."""
    x, y = case.arrays()
    lay = case.resolved_layout()
    batches = _call(target, case, x, y, drop_last=drop_last)
    return [_decode(np.asarray(bx), lay.x_example, lay.axis, 1.0) for bx, _ in batches]


def check_cover(impl: Implementation, case: MiniBatchCase) -> list[Measurement]:
    """Without drop_last the batches' examples are 0..m-1, each exactly once."""
    got = np.concatenate(_run(_target(impl), case, drop_last=False) or [np.empty(0, np.int64)])
    return [
        _exact("examples are 0..m-1 once each", np.array_equal(np.sort(got), np.arange(case.m)))
    ]


def check_pairing(impl: Implementation, case: MiniBatchCase) -> list[Measurement]:
    """Each batch's Y example j is the Y of its X example j; every example's values are intact."""
    target = _target(impl)
    x, y = case.arrays()
    lay = case.resolved_layout()
    paired = True
    for bx, by in _call(target, case, x, y, drop_last=case.drop_last):
        jx = _decode(np.asarray(bx), lay.x_example, lay.axis, 1.0)
        jy = _decode(np.asarray(by), lay.y_example, lay.axis, -1.0)
        paired = paired and jx.shape == jy.shape and bool((jx >= 0).all() and (jx == jy).all())
    return [_exact("X and Y examples stay paired and intact", paired)]


def check_sizes(impl: Implementation, case: MiniBatchCase) -> list[Measurement]:
    """ceil(m/s) batches (floor(m/s) with drop_last), all of size s but the smaller last one."""
    sizes = [len(j) for j in _run(_target(impl), case, drop_last=case.drop_last)]
    m, s = case.m, case.size
    full, rest = divmod(m, s)
    expected = [s] * full + ([] if case.drop_last or rest == 0 else [rest])
    return [
        _exact("number of batches", len(sizes) == len(expected)),
        _exact("batch sizes", sizes == expected),
    ]


def check_drop_last(impl: Implementation, case: MiniBatchCase) -> list[Measurement]:
    """drop_last keeps the first floor(m/s) batches of the same shuffle: p[:floor(m/s)*s]."""
    target = _target(impl)
    kept = _run(target, case, drop_last=True)
    every = _run(target, case, drop_last=False)
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


def check_deterministic(impl: Implementation, case: MiniBatchCase) -> list[Measurement]:
    """The same seed gives identical batches (X and Y, values and shapes)."""
    target = _target(impl)
    x, y = case.arrays()
    runs = [_call(target, case, x, y, drop_last=case.drop_last) for _ in range(2)]
    same = len(runs[0]) == len(runs[1]) and all(
        np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
        for a, b in zip(runs[0], runs[1], strict=False)
    )
    return [_exact("same seed, same batches", same)]


def check_pure(impl: Implementation, case: MiniBatchCase) -> list[Measurement]:
    """X and Y are unchanged, and no batch shares memory with them (a write cannot reach X)."""
    target = _target(impl)
    x, y = case.arrays()
    x0, y0 = x.copy(), y.copy()
    out = target.batches_and_sharing(
        x, y, case.size, case.seed, layout=case.layout, drop_last=case.drop_last
    )
    unchanged = np.array_equal(x, x0) and np.array_equal(y, y0)
    return [
        _exact("inputs unchanged", unchanged),
        _exact("batches share no memory with X, Y", not out.shares_memory),
    ]


@st.composite
def layouts(draw: st.DrawFn) -> Layout:
    """X of 1 to 3 dimensions with the example axis anywhere (negative too), and a Y that has
    that axis; 1 to 3 values along every other axis."""
    x_ndim = draw(st.integers(1, 3))
    axis = draw(st.integers(-x_ndim, x_ndim - 1))
    # Y must have the example axis too: a non-negative axis needs ndim > axis, a negative one
    # ndim >= -axis.
    y_min = axis + 1 if axis >= 0 else -axis
    y_ndim = draw(st.integers(max(1, y_min), max(2, y_min)))
    dims = st.integers(1, 3)
    x_example = tuple(draw(st.lists(dims, min_size=x_ndim - 1, max_size=x_ndim - 1)))
    y_example = tuple(draw(st.lists(dims, min_size=y_ndim - 1, max_size=y_ndim - 1)))
    return Layout(axis, x_example, y_example)


@st.composite
def minibatch_cases(draw: st.DrawFn, *, max_examples: int = MAX_EXAMPLES) -> MiniBatchCase:
    """m in 1..max_examples; s below, equal to, dividing and above m; the course layout in a
    quarter of the cases, any layout with its axis in the others; with or without drop_last."""
    m = draw(st.integers(1, max_examples))
    divisors = [d for d in range(1, m + 1) if m % d == 0]
    size = draw(st.one_of(st.integers(1, m + 3), st.sampled_from(divisors), st.just(m)))
    features = draw(st.integers(1, 3))
    course = draw(st.integers(0, 3)) == 0
    return MiniBatchCase(
        m=m,
        size=size,
        seed=draw(st.integers(0, 2**32 - 1)),
        features=features,
        layout=None if course else draw(layouts()),
        drop_last=draw(st.booleans()),
    )


_TAGS = frozenset({"minibatch", "exact"})
PROPERTIES: tuple[Property, ...] = (
    Property(
        "minibatch-cover",
        "the batches hold every example exactly once: none lost, none repeated",
        minibatch_cases(),
        check_cover,
        _TAGS,
    ),
    Property(
        "minibatch-pairing",
        "every batch keeps each X example with its own Y, values intact",
        minibatch_cases(),
        check_pairing,
        _TAGS,
    ),
    Property(
        "minibatch-sizes",
        "ceil(m/s) batches of s examples, the last one smaller when s does not divide m "
        "(floor(m/s) with drop_last)",
        minibatch_cases(),
        check_sizes,
        _TAGS,
    ),
    Property(
        "minibatch-drop-last",
        "drop_last keeps the first floor(m/s) batches of the same shuffle",
        minibatch_cases(),
        check_drop_last,
        _TAGS,
    ),
    Property(
        "minibatch-deterministic",
        "the same seed gives the same batches",
        minibatch_cases(),
        check_deterministic,
        _TAGS,
    ),
    Property(
        "minibatch-pure",
        "X and Y are left unchanged and no batch shares memory with them",
        minibatch_cases(),
        check_pure,
        _TAGS,
    ),
)
