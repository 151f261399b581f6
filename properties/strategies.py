"""Hypothesis strategies for batch-norm cases: layouts, dtypes, and the hard cases on purpose.

A case is a `BatchCase`: x, gamma, beta, eps and the channel axis. Shapes cover dense (N, C),
conv (N, C, L), (N, C, H, W), (N, C, D, H, W) and every channel axis of them. Values are built
per channel as ``offset + spread * z`` so that the hard cases are reached deliberately:
|offset|/spread up to 1e8 (large offsets with tiny spread), spread 0 (constant channels), a batch
of two, and spreads from 1e-3 to 1e3 (wide ranges). `dtype` float32 means the values are exactly
representable in float32 (the case an implementation running in float32 receives).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

from properties.tolerances import exact_stats, precision

Array = NDArray[np.float64]
T = TypeVar("T")

DTYPES = ("float64", "float32")
EPS_VALUES = (1e-5, 1e-3, 1e-8, 1e-1, 1.0)
MAX_SIZE = 512  # values per case: enough for every layout, small enough for 1000 examples
# gamma and beta: 0 or magnitudes in [1e-3, 5]. A gamma of 1e-157 squares to an underflow in
# any variance check: it tests the floating-point range, not batch norm.
_PARAM = st.one_of(st.just(0.0), st.floats(1e-3, 5.0), st.floats(-5.0, -1e-3))


def to_code(value: object, imports: set[str]) -> str:
    """Python source that rebuilds `value`: arrays as np.array(nested lists, dtype=...), floats by
    their round-trip repr (float('nan') / float('inf') where repr is no literal), numpy scalars
    as Python numbers, lists, tuples and dicts item by item, case dataclasses by their
    constructor; the import lines it needs are added to `imports`."""
    if isinstance(value, np.generic):  # repr(np.float64(1.0)) is 'np.float64(1.0)'
        value = value.item()
    if isinstance(value, np.ndarray):
        imports.add("import numpy as np")
        return f"np.array({to_code(value.tolist(), imports)}, dtype=np.{value.dtype.name})"
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else f"float({repr(value)!r})"
    if isinstance(value, list | tuple | dict):
        return _container_code(value, imports)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        imports.add(f"from {cls.__module__} import {cls.__qualname__}")
        fields = ", ".join(
            f"{f.name}={to_code(getattr(value, f.name), imports)}"
            for f in dataclasses.fields(value)
        )
        return f"{cls.__qualname__}({fields})"
    return repr(value)


def _container_code(value: list[Any] | tuple[Any, ...] | dict[Any, Any], imports: set[str]) -> str:
    """`to_code` of a list, tuple or dict: its items' code in the container's brackets."""
    if isinstance(value, dict):
        pairs = (f"{to_code(k, imports)}: {to_code(v, imports)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    items = [to_code(v, imports) for v in value]
    if isinstance(value, list):
        return "[" + ", ".join(items) + "]"
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


class CodeRepr:
    """Mixin for a case dataclass (declared with repr=False, so the dataclass repr does not
    replace this one): repr() and Hypothesis's falsifying-example printout are Python that
    rebuilds the case (`to_code`), e.g. np.array([...], dtype=np.float64), never numpy's
    `array(...)`. Hypothesis prints a dataclass field by field, ignoring __repr__, unless it
    defines `_repr_pretty_` (hypothesis/vendor/pretty.py, RepresentationPrinter.pretty)."""

    def __repr__(self) -> str:
        return to_code(self, set())

    def _repr_pretty_(self, printer: Any, _cycle: bool) -> None:
        printer.text(repr(self))


@dataclass(frozen=True)
class Layout:
    """An input shape and the channel axis (possibly negative) chosen for it."""

    shape: tuple[int, ...]
    axis: int

    @property
    def channels(self) -> int:
        """C = shape[axis]."""
        return self.shape[self.axis]

    @property
    def count(self) -> int:
        """n, the number of values that share one channel's statistics."""
        return int(np.prod(self.shape)) // self.channels


@dataclass(frozen=True, repr=False)
class BatchCase(CodeRepr):
    """One batch-norm input: x (float64 holding `dtype`-representable values) and parameters."""

    x: Array
    gamma: Array
    beta: Array
    eps: float
    axis: int
    dtype: str


@st.composite
def layouts(draw: st.DrawFn, *, min_count: int = 2, max_size: int = MAX_SIZE) -> Layout:
    """Dense and conv shapes with any channel axis, at least `min_count` values per channel."""
    ndim = draw(st.sampled_from([2, 2, 3, 4, 5]))
    # Keep the total small: the budget per dimension shrinks as dimensions are added.
    per_dim = {2: 24, 3: 8, 4: 6, 5: 4}[ndim]
    shape = tuple(draw(st.lists(st.integers(1, per_dim), min_size=ndim, max_size=ndim)))
    axis = draw(st.integers(-ndim, ndim - 1))
    layout = Layout(shape, axis)
    if layout.count < min_count:
        # Grow the first non-channel axis until the channel has enough values.
        other = next(i for i in range(ndim) if i != axis % ndim)
        grown = list(shape)
        grown[other] = -(-min_count * shape[other] // layout.count)
        layout = Layout(tuple(grown), axis)
    if int(np.prod(layout.shape)) > max_size:
        layout = Layout((min_count, layout.channels), draw(st.sampled_from([1, -1])))
    return layout


def _channel_values(draw: st.DrawFn, layout: Layout, *, max_condition: float) -> Array:
    """x = offset_c + spread_c * z with z in [-1, 1]; hard cases are drawn on purpose."""
    shape = layout.shape
    z = draw(
        hnp.arrays(
            np.float64,
            shape,
            elements=st.floats(-1.0, 1.0, allow_nan=False, allow_subnormal=False),
        )
    )
    c = layout.channels
    spread = np.array(
        draw(
            st.lists(
                st.one_of(
                    st.just(1.0),
                    st.just(0.0),  # constant channel
                    st.floats(1e-3, 1e3),  # wide range of scales
                ),
                min_size=c,
                max_size=c,
            )
        )
    )
    condition = np.array(
        draw(
            st.lists(
                st.one_of(
                    st.just(0.0),
                    st.floats(-10.0, 10.0),
                    st.sampled_from([max_condition, -max_condition, 1e4, 1e6]).filter(
                        lambda v: abs(v) <= max_condition
                    ),  # large offset, tiny spread
                ),
                min_size=c,
                max_size=c,
            )
        )
    )
    offset = condition * np.where(spread > 0, spread, 1.0)
    bshape = tuple(c if i == layout.axis % len(shape) else 1 for i in range(len(shape)))
    x: Array = offset.reshape(bshape) + spread.reshape(bshape) * z
    return x


@st.composite
def batch_cases(
    draw: st.DrawFn,
    *,
    dtypes: tuple[str, ...] = DTYPES,
    max_condition: float = 1e8,
    min_count: int = 2,
    unit_affine: bool = False,
) -> BatchCase:
    """Any valid training-mode batch-norm input, hard cases included.

    `max_condition` bounds |offset|/spread per channel; `unit_affine` fixes gamma=1, beta=0.
    """
    layout = draw(layouts(min_count=min_count))
    dtype = draw(st.sampled_from(dtypes))
    x = _channel_values(draw, layout, max_condition=max_condition)
    x = x.astype(dtype).astype(np.float64)
    c = layout.channels
    if unit_affine:
        gamma, beta = np.ones(c), np.zeros(c)
    else:
        gamma = np.array(draw(st.lists(_PARAM, min_size=c, max_size=c)))
        beta = np.array(draw(st.lists(_PARAM, min_size=c, max_size=c)))
        gamma = gamma.astype(dtype).astype(np.float64)
        beta = beta.astype(dtype).astype(np.float64)
    eps = draw(st.sampled_from(EPS_VALUES))
    return BatchCase(x, gamma, beta, eps, layout.axis, dtype)


@st.composite
def upstream_gradients(draw: st.DrawFn, shape: tuple[int, ...]) -> Array:
    """A non-uniform upstream gradient dy (uniform dy hides the mean and variance terms)."""
    seed = draw(st.integers(0, 2**32 - 1))
    return np.random.default_rng(seed).standard_normal(shape)


# A channel is live when a backward's outputs there are of a size that can be checked: gamma != 0
# (else dx = gamma (...) is 0 exactly) and var >= LIVE_RATIO (var + eps), i.e. x_hat of rms
# >= 1e-3, what the smallest deliberate spread 1e-3 gives against the largest eps 1 (else
# dgamma = sum(dy x_hat) and sum(dx x_hat) are ~0: a constant channel, or one whose values are
# all ~1e-80, has x_hat ~0, and a comparison of those sums has nothing of their size to miss).
# A pair (n = 2) has x_hat = +-sqrt(var / (var + eps)) whatever its values, so that its
# dx_1 = -dx_2 = gamma (dy_1 - dy_2) eps / (2 s**3) is a fraction eps / (var + eps) of its
# terms' size |gamma dy| / s: a pair is live only with eps >= PAIR_RATIO (var + eps) too.
LIVE_RATIO = 1e-6
PAIR_RATIO = 1e-3
# The inserted live channel's spread: {1} and [0.1, 1e3], so that var >= 2 spread**2 / n >=
# 2 * 0.01 / MAX_SIZE = 3.9e-5 >= LIVE_RATIO (var + 1) for any eps <= 1 (see `live_channel`);
# a pair's var / eps in [1e-2, 1e2], within both ratios by a factor >= 9.
_LIVE_SPREAD = st.one_of(st.just(1.0), st.floats(0.1, 1e3))
_PAIR_VAR = st.floats(1e-2, 1e2)
# In inference mode with running statistics rm, rv (a frozen backward: dx = gamma dy / sqrt(rv +
# eps), dgamma = sum(dy (x - rm)) / sqrt(rv + eps)), a channel is live when gamma != 0 (else
# dx = 0 exactly) and some |x - rm| >= LIVE_SCALE = sqrt(LIVE_RATIO) times both sqrt(rv + eps)
# (x_r = (x - rm) / sqrt(rv + eps) of size >= 1e-3, as x_hat's rms in training mode: else
# dgamma is ~0: x - rm = 0 exactly, or ~1e-80, down to its underflow terms) and |x| + |rm| (else
# dgamma's bound, (n + 5) u sum(|dy| (|x| + |rm|)) / sqrt(rv + eps) for the folded form
# sum(dy x) - rm sum(dy), exceeds the cancelled sum it bounds).
LIVE_SCALE = math.sqrt(LIVE_RATIO)
_NONZERO = st.one_of(st.floats(1e-3, 5.0), st.floats(-5.0, -1e-3))


def live_channels(case: BatchCase, frozen: tuple[Array, Array] | None = None) -> NDArray[np.bool_]:
    """Per channel, in training mode: gamma != 0, var >= LIVE_RATIO (var + eps) and, for a pair
    (two values per channel), eps >= PAIR_RATIO (var + eps) (see LIVE_RATIO).

    With `frozen` = (running_mean, running_var), in inference mode with those statistics:
    gamma != 0 and max|x - rm| >= LIVE_SCALE max(max(|x| + |rm|), sqrt(rv + eps)) over the
    channel's values (see LIVE_SCALE); one value per channel is enough.
    """
    if frozen is not None:
        rm, rv = frozen
        rows = np.moveaxis(case.x, case.axis, 0).reshape(case.gamma.size, -1)
        dev = np.max(np.abs(rows - rm[:, None]), axis=1)
        size = np.maximum(
            np.max(np.abs(rows) + np.abs(rm)[:, None], axis=1), np.sqrt(rv + case.eps)
        )
        frozen_live: NDArray[np.bool_] = (case.gamma != 0) & (dev >= LIVE_SCALE * size)
        return frozen_live
    stats = exact_stats(case.x, case.axis, case.eps)
    var, eps = stats.var, case.eps
    live: NDArray[np.bool_] = (case.gamma != 0) & (var >= LIVE_RATIO * (var + eps))
    if stats.count == 2:
        live &= eps >= PAIR_RATIO * (var + eps)
    return live


@st.composite
def _with_live_channel(
    draw: st.DrawFn, case: BatchCase, spreads: st.SearchStrategy[float]
) -> tuple[BatchCase, int, float, float]:
    """(case with a channel inserted, its position, offset and spread): the inserted channel
    has |gamma| in [1e-3, 5], beta as usual, and values offset + spread * w, spread drawn from
    `spreads`, |offset| <= 10 spread, w in [-1, 1] with w = -1, +1 among them (-1 for n = 1)."""
    n = case.x.size // case.gamma.size
    ax = case.axis % case.x.ndim
    rest = tuple(d for i, d in enumerate(case.x.shape) if i != ax)
    w = draw(hnp.arrays(np.float64, (n,), elements=st.floats(-1.0, 1.0, allow_subnormal=False)))
    w[:2] = (-1.0, 1.0)[:n]
    spread = draw(spreads)
    offset = draw(st.floats(-10.0, 10.0)) * spread
    values = (offset + spread * w).astype(case.dtype).astype(np.float64).reshape(rest)
    where = draw(st.integers(0, case.gamma.size))
    rows = np.moveaxis(case.x, ax, 0)
    x = np.moveaxis(np.concatenate([rows[:where], values[None], rows[where:]]), 0, ax)
    gamma = np.insert(case.gamma, where, draw(_NONZERO))
    beta = np.insert(case.beta, where, draw(_PARAM))
    out = dataclasses.replace(
        case,
        x=np.ascontiguousarray(x),
        gamma=gamma.astype(case.dtype).astype(np.float64),
        beta=beta.astype(case.dtype).astype(np.float64),
    )
    return out, where, offset, spread


@st.composite
def live_channel(draw: st.DrawFn, case: BatchCase) -> BatchCase:
    """`case` if some channel is live (`live_channels`), else `case` with one live channel
    inserted at a drawn position along the channel axis.

    Every drawn channel is kept as it is (constant channels, gamma = 0, values ~1e-80, a pair
    of var >> eps: the hard cases stay), and a backward's comparisons get one channel where a
    wrong answer shows. The inserted channel has |gamma| in [1e-3, 5], beta as usual, and
    values offset + spread * w with |offset| <= 10 spread, w in [-1, 1] and w = -1, +1 among
    them: the squared deviations of two values 2 spread apart sum to >= 2 spread**2, so
    var >= 2 spread**2 / n, live for spread >= 0.1, n <= MAX_SIZE and eps <= 1 (_LIVE_SPREAD).
    A pair is offset -+ spread with spread**2 = var = eps r, r in [1e-2, 1e2] (_PAIR_VAR).
    A channel of one value (n = 1) has var 0: such a case is returned unchanged.
    """
    n = case.x.size // case.gamma.size
    if n < 2 or live_channels(case).any():
        return case
    spreads = _PAIR_VAR.map(lambda r: math.sqrt(case.eps * r)) if n == 2 else _LIVE_SPREAD
    return draw(_with_live_channel(case, spreads))[0]


@st.composite
def live_frozen_channel(
    draw: st.DrawFn, case: BatchCase, running_mean: Array, running_var: Array
) -> tuple[BatchCase, Array, Array]:
    """(case, running_mean, running_var) if some channel is live in inference mode with those
    running statistics (`live_channels` with `frozen`), else the three with one such channel
    inserted at a drawn position: `live_channel`'s values and parameters, with running mean
    offset and running variance spread**2 r, r in [1e-2, 1e2] (_PAIR_VAR).

    Every drawn channel is kept (gamma = 0, x = rm, values ~1e-80: the hard cases stay). The
    inserted channel is live for any n >= 1: its w = -1 value has |x - rm| = spread (to the
    dtype's rounding of offset + spread w, |offset| <= 10 spread), against
    max(|x| + |rm|) <= 21 spread and sqrt(rv + eps) <= sqrt(100 spread**2 + 1) <= 15 spread
    (spread >= 0.1, eps <= 1): a ratio >= 1/21 >= LIVE_SCALE.
    """
    if live_channels(case, (running_mean, running_var)).any():
        return case, running_mean, running_var
    out, where, offset, spread = draw(_with_live_channel(case, _LIVE_SPREAD))
    rv = spread**2 * draw(_PAIR_VAR)
    mean = np.insert(running_mean, where, np.float64(offset).astype(case.dtype))
    var = np.insert(running_var, where, np.float64(rv).astype(case.dtype))
    return out, mean.astype(np.float64), var.astype(np.float64)


def _cast_array(value: Array, dtype: str, max_abs: float) -> Array:
    """value scaled by a power of two (exact) to max|value| <= max_abs, then rounded to dtype."""
    peak = float(np.max(np.abs(value))) if value.size else 0.0
    if math.isfinite(max_abs) and peak > max_abs:
        value = value * 2.0 ** -math.ceil(math.log2(peak / max_abs))
    out: Array = value.astype(dtype).astype(np.float64)
    return out


def _cast_scalar(name: str, value: float, dtype: str, min_eps: float) -> float:
    """eps and momentum rounded to dtype (eps at least min_eps); the scale of
    scale-invariance in float16 a power of two in [1/8, 1], so that a x keeps |a x| <= 4."""
    if name == "eps":
        return float(np.array(max(value, min_eps), dtype=dtype))
    if name == "momentum":
        return float(np.array(value, dtype=dtype))
    if name == "scale" and dtype == "float16":
        return 2.0 ** min(0, max(-3, round(math.log2(value))))
    return value


def cast_case(case: T, dtype: str, fixed: Mapping[str, object] | None = None) -> T:
    """`case` (any property's case dataclass) with its inputs representable in `dtype`.

    Every float64 array, also inside nested cases and tuples, is rounded to dtype, first scaled
    by a power of two into the dtype's safe range (`tolerances.Precision.max_abs`: float16
    keeps |value| <= 4, so no correct float16 computation overflows); eps and momentum are
    rounded to dtype (eps at least `Precision.min_eps`), a `dtype` field is set to dtype.
    Scaling by a power of two changes no claim: every property holds for any values. Then each
    field named in `fixed` (e.g. the eps a user's function always uses) takes that value, in
    nested cases too. float64 with nothing fixed returns `case` unchanged.
    """
    if not (dataclasses.is_dataclass(case) and not isinstance(case, type)):
        raise TypeError(f"case must be a dataclass instance, got {type(case).__name__}")
    prec = precision(dtype)
    pinned = dict(fixed or {})
    if dtype == "float64" and not pinned:
        return case

    def cast(name: str, value: object) -> object:
        out = value
        if name in pinned:
            out = pinned[name]
        elif _is_case(value):
            out = cast_case(value, dtype, pinned)
        elif dtype == "float64":
            pass  # only the pinned fields change
        elif isinstance(value, np.ndarray) and value.dtype == np.float64:
            out = _cast_array(value, dtype, prec.max_abs)
        elif isinstance(value, tuple):
            out = tuple(cast(name, v) for v in value)
        elif isinstance(value, float):
            out = _cast_scalar(name, value, dtype, prec.min_eps)
        elif name == "dtype" and isinstance(value, str):
            out = dtype
        return out

    changes = {f.name: cast(f.name, getattr(case, f.name)) for f in dataclasses.fields(case)}
    out: T = dataclasses.replace(case, **changes)
    return out


def _is_case(value: object) -> bool:
    return dataclasses.is_dataclass(value) and not isinstance(value, type)
