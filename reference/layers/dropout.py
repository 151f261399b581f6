"""Dropout in the two forms of the course notes; the mask drawn in forward is used in backward.

Each unit is kept independently with probability 1 - p: ``mask = rng.random(x.shape) >= p``
(U uniform on [0, 1), so P(U >= p) = 1 - p, and p = 0 keeps every unit).

    form        training                     test (and its backward)
    "classic"   y = x * mask                 y = x * (1 - p)         DLFS Dropout
    "inverted"  y = x * mask / (1 - p)       y = x                   the course notes

Both keep the expectation between training and test: E[mask] = 1 - p. The backward pass of a
training step is ``dx = dy * mask`` (classic) or ``dy * mask / (1 - p)`` (inverted) with the mask
from the cache -- never a new draw. p must lie in [0, 1): p = 1 drops everything (and the inverted
form would divide by 0). DLFS: oreilly-japan/deep-learning-from-scratch, common/layers.py
``Dropout`` (``mask = rand > ratio``; test ``x * (1 - ratio)``).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference._validation import (
    Float64Array,
    as_float64_array,
    check_same_shape,
    check_unit_interval,
    frozen,
)

DropoutKind = Literal["inverted", "classic"]
KINDS: tuple[DropoutKind, ...] = ("inverted", "classic")
Mask = NDArray[np.bool_]


class DropoutCache(NamedTuple):
    """The mask of a training step (None at test time), p, the form, and x's shape."""

    mask: Mask | None
    p: float
    kind: DropoutKind
    shape: tuple[int, ...]


class DropoutGrads(NamedTuple):
    """dL/dx, x's shape."""

    dx: Float64Array


def check_drop_probability(p: object) -> float:
    """p as a float after checking 0 <= p < 1."""
    value = check_unit_interval(p, "p")
    if value >= 1.0:
        raise ValueError(f"p must lie in [0, 1) (p = 1 would drop every unit), got {p!r}")
    return value


def check_kind(kind: object) -> DropoutKind:
    """kind after checking it is "inverted" or "classic"."""
    if kind == "inverted":
        return "inverted"
    if kind == "classic":
        return "classic"
    raise ValueError(f"kind must be one of {list(KINDS)}, got {kind!r}")


def draw_mask(shape: tuple[int, ...], p: float, rng: np.random.Generator) -> Mask:
    """``rng.random(shape) >= p``: each unit kept with probability 1 - p (read-only)."""
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a numpy.random.Generator, got {type(rng).__name__}")
    mask = rng.random(shape) >= check_drop_probability(p)
    mask.flags.writeable = False
    return mask


def _mask(value: ArrayLike, shape: tuple[int, ...]) -> Mask:
    arr = np.asarray(value)
    if arr.dtype != np.bool_:
        raise TypeError(f"mask must be a boolean array, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"mask must have the shape of x, {shape}, got shape {arr.shape}")
    out = arr.copy()
    out.flags.writeable = False
    return out


def dropout_forward(
    x: ArrayLike,
    p: float,
    *,
    kind: DropoutKind = "inverted",
    train: bool = True,
    rng: np.random.Generator | None = None,
    mask: ArrayLike | None = None,
) -> tuple[Float64Array, DropoutCache]:
    """Training: y = x * mask (classic) or x * mask / (1 - p) (inverted), with `mask` if given
    (a bool array of x's shape) or else one drawn from `rng`. Test: y = x * (1 - p) (classic)
    or y = x (inverted). Returns (y, cache)."""
    prob = check_drop_probability(p)
    form = check_kind(kind)
    if not isinstance(train, bool):
        raise TypeError(f"train must be a bool, got {type(train).__name__}")
    x64 = as_float64_array(x, "x")
    if not train:
        y = x64 * (1.0 - prob) if form == "classic" else x64.copy()
        return frozen(y), DropoutCache(None, prob, form, x64.shape)
    if mask is not None:
        keep = _mask(mask, x64.shape)
    elif rng is not None:
        keep = draw_mask(x64.shape, prob, rng)
    else:
        raise ValueError(
            "rng must be a numpy.random.Generator (or mask a bool array) in training mode, "
            "got neither"
        )
    cache = DropoutCache(keep, prob, form, x64.shape)
    if form == "classic":
        return frozen(x64 * keep), cache
    return frozen(x64 * keep / (1.0 - prob)), cache


def dropout_backward(dout: ArrayLike, cache: DropoutCache) -> DropoutGrads:
    """Training: dx = dy * mask (classic) or dy * mask / (1 - p) (inverted), the cached mask.
    Test: dx = dy * (1 - p) (classic) or dy (inverted)."""
    dy = as_float64_array(dout, "dout")
    check_same_shape(dy, "dout", cache.shape, "the layer's output")
    if cache.mask is None:
        return DropoutGrads(frozen(dy * (1.0 - cache.p) if cache.kind == "classic" else dy.copy()))
    if cache.kind == "classic":
        return DropoutGrads(frozen(dy * cache.mask))
    return DropoutGrads(frozen(dy * cache.mask / (1.0 - cache.p)))
