"""Hypothesis strategies for batch-norm cases: layouts, dtypes, and the hard cases on purpose.

A case is a `BatchCase`: x, gamma, beta, eps and the channel axis. Shapes cover dense (N, C),
conv (N, C, L), (N, C, H, W), (N, C, D, H, W) and every channel axis of them. Values are built
per channel as ``offset + spread * z`` so that the hard cases are reached deliberately:
|offset|/spread up to 1e8 (large offsets with tiny spread), spread 0 (constant channels), a batch
of two, and spreads from 1e-3 to 1e3 (wide ranges). `dtype` float32 means the values are exactly
representable in float32 (the case an implementation running in float32 receives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.typing import NDArray

Array = NDArray[np.float64]

DTYPES = ("float64", "float32")
EPS_VALUES = (1e-5, 1e-3, 1e-8, 1e-1, 1.0)
MAX_SIZE = 512  # values per case: enough for every layout, small enough for 1000 examples
# gamma and beta: 0 or magnitudes in [1e-3, 5]. A gamma of 1e-157 squares to an underflow in
# any variance check: it tests the floating-point range, not batch norm.
_PARAM = st.one_of(st.just(0.0), st.floats(1e-3, 5.0), st.floats(-5.0, -1e-3))


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


@dataclass(frozen=True)
class BatchCase:
    """One batch-norm input: x (float64 holding `dtype`-representable values) and parameters."""

    x: Array
    gamma: Array
    beta: Array
    eps: float
    axis: int
    dtype: str

    def __repr__(self) -> str:
        # Printed by Hypothesis for a falsifying example: valid Python that rebuilds the case.
        return (
            f"BatchCase(x=np.array({self.x.tolist()!r}), gamma=np.array({self.gamma.tolist()!r}), "
            f"beta=np.array({self.beta.tolist()!r}), eps={self.eps!r}, axis={self.axis!r}, "
            f"dtype={self.dtype!r})"
        )


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
