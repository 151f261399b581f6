"""Input checks shared by the reference functions.

Every public function of `reference` validates its arguments here before any arithmetic, so that
bad input ends in a `TypeError` or `ValueError` that names the argument, what was expected and
what was given -- never a NaN, a silent broadcast or a traceback from inside NumPy.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

Float64Array = NDArray[np.float64]


def check_bool(value: object, name: str) -> None:
    """Check that `value` is a bool (a string such as "no" is truthy: refused)."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {type(value).__name__} {value!r}")


def real_array(value: ArrayLike, name: str, *, allow_bool: bool = False) -> NDArray[Any]:
    """`value` as an array of real numbers in its own dtype (read in place when it is an array).

    Accepted dtypes are the real integer and floating kinds (float16/32/64, int, uint), and
    booleans with `allow_bool` (labels). Complex numbers, strings, objects and the rest are
    rejected with a `TypeError`, and so is a masked array: its mask would be dropped silently.
    """
    if isinstance(value, (str, bytes)):
        raise TypeError(f"{name} must be a real numeric array, got {type(value).__name__}")
    if isinstance(value, np.ma.MaskedArray):
        raise TypeError(
            f"{name} must not be a masked array (its mask would be ignored), got "
            f"{type(value).__name__}; fill it (.filled(value)) or compress it (.compressed()) "
            "first"
        )
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:  # ragged nested sequences end up here
        raise TypeError(f"{name} must be a real numeric array, got {type(value).__name__}") from exc
    kind = arr.dtype.kind
    if kind not in ("biuf" if allow_bool else "iuf"):
        what = {
            "b": "boolean",
            "c": "complex",
            "O": "object",
            "U": "string",
            "S": "bytes",
        }.get(kind, str(arr.dtype))
        expected = "a boolean, integer or floating" if allow_bool else "a real integer or floating"
        raise TypeError(f"{name} must have {expected} dtype, got {what} dtype {arr.dtype}")
    return arr


def as_float64_array(value: ArrayLike, name: str, *, check_finite: bool = True) -> Float64Array:
    """Return `value` as a float64 array after checking that it holds real numbers.

    Accepted dtypes are the real integer and floating kinds (float16/32/64, int, uint); they are
    converted to float64. Booleans, complex numbers, strings, objects and masked arrays are
    rejected with a `TypeError` (`real_array`), and so is a `check_finite` that is not a bool.
    With `check_finite` (the default) NaN or infinity raise a `ValueError`.
    The input is never modified: a conversion makes a copy, and a float64 input is only read.
    """
    check_bool(check_finite, "check_finite")
    out = real_array(value, name).astype(np.float64, copy=False)
    if check_finite and not np.isfinite(out).all():
        bad = np.argwhere(~np.isfinite(out))
        first = tuple(int(i) for i in bad[0]) if out.ndim else ()
        raise ValueError(
            f"{name} must be finite, got {len(bad)} non-finite value(s), the first "
            f"{out[first] if out.ndim else out} at index {first}; pass check_finite=False "
            "to let them propagate"
        )
    return out


def as_float64_labels(value: ArrayLike, name: str) -> Float64Array:
    """Labels as a float64 array: `as_float64_array`, with booleans accepted too (as 0 and 1).

    The course builds labels as ``Y = ... < 0.5`` and computes with them as numbers.
    """
    arr = real_array(value, name, allow_bool=True)
    return as_float64_array(arr.astype(np.float64) if arr.dtype.kind == "b" else arr, name)


def check_positive_scalar(value: Any, name: str) -> float:
    """Return `value` as a float after checking it is a finite real number > 0 (e.g. eps)."""
    number = real_scalar(value, name)
    if not (math.isfinite(number) and number > 0.0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def check_unit_interval(value: Any, name: str) -> float:
    """Return `value` as a float after checking it lies in the closed interval [0, 1]."""
    number = real_scalar(value, name)
    if not (0.0 <= number <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1], got {value!r}")
    return number


def real_scalar(value: Any, name: str) -> float:
    """Return `value` as a float; reject booleans, non-numbers and arrays with a `TypeError`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r}")
    return float(value)


def check_int(value: Any, name: str, *, minimum: int) -> int:
    """Return `value` as an int after checking it is an integer >= `minimum`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if int(value) < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def normalize_axis(axis: Any, ndim: int, name: str = "axis") -> int:
    """Return `axis` as a non-negative index into an array of `ndim` dimensions."""
    if isinstance(axis, (bool, np.bool_)) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(axis).__name__} {axis!r}")
    if not -ndim <= int(axis) < ndim:
        raise ValueError(
            f"{name} must be in [{-ndim}, {ndim - 1}] for an input with {ndim} dimension(s), "
            f"got {axis}"
        )
    return int(axis) % ndim


def check_channel_vector(
    value: ArrayLike, name: str, channels: int, *, check_finite: bool = True
) -> Float64Array:
    """Return a per-channel parameter as a float64 vector of shape (channels,).

    Only the exact shape is accepted: a (C, 1) column or a scalar would broadcast silently in
    NumPy, and an oracle that guesses the layout can hide the very bug it should find.
    """
    arr = as_float64_array(value, name, check_finite=check_finite)
    if arr.shape != (channels,):
        raise ValueError(
            f"{name} must have shape ({channels},), one value per channel, got shape {arr.shape}"
        )
    return arr


def check_same_shape(value: Float64Array, name: str, shape: tuple[int, ...], ref: str) -> None:
    """Raise a `ValueError` unless `value` has exactly `shape` (the shape of argument `ref`)."""
    if value.shape != shape:
        raise ValueError(f"{name} must have the shape of {ref}, {shape}, got shape {value.shape}")


def frozen(arr: Float64Array) -> Float64Array:
    """Mark an array the function owns as read-only, so results cannot be edited in place."""
    arr.flags.writeable = False
    return arr


# The seeds np.random.seed accepts as a single integer: the MT19937 key is one uint32.
MAX_SEED = 2**32 - 1
RandomSource = np.random.Generator | np.random.RandomState


def random_source(seed: object) -> RandomSource:
    """The random source for `seed`: a ``numpy.random.Generator`` as given (the caller's stream
    advances), an integer in [0, 2**32 - 1] as ``np.random.RandomState(seed)``, the stream
    ``np.random.seed(seed)`` starts in the course notes' code, without touching NumPy's global
    RNG. TypeError for anything else, ValueError for an integer out of range."""
    if isinstance(seed, np.random.Generator):
        return seed
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral):
        raise TypeError(
            f"seed must be an integer or a numpy.random.Generator, "
            f"got {type(seed).__name__} {seed!r}"
        )
    value = check_int(seed, "seed", minimum=0)
    if value > MAX_SEED:
        raise ValueError(
            f"seed must be an integer in [0, 2**32 - 1] (as np.random.seed), got {seed!r}"
        )
    return np.random.RandomState(value)


def examples_array(
    value: ArrayLike, name: str, axis: object, *, labels: bool = False
) -> tuple[NDArray[Any], int]:
    """`value` as an array of real numbers (its own dtype kept) and its example axis.

    With `labels` booleans are accepted too: the course builds its labels as ``Y = ... < 0.5``.
    """
    arr = real_array(value, name, allow_bool=labels)
    if arr.ndim == 0:
        raise ValueError(f"{name} must have at least one dimension (the examples), got a scalar")
    return arr, normalize_axis(axis, arr.ndim, f"axis (for {name} of shape {arr.shape})")


class PairedExamples(NamedTuple):
    """X and Y as arrays (dtypes kept), the example axis of each, and m, their common count."""

    x: NDArray[Any]
    x_axis: int
    y: NDArray[Any]
    y_axis: int
    m: int


def paired_examples(X: ArrayLike, Y: ArrayLike, axis: object) -> PairedExamples:
    """X and Y with their example axes; ValueError unless they hold the same number m.

    X holds real numbers; Y, the labels, may also be boolean (the course's ``Y = ... < 0.5``).
    """
    x, x_axis = examples_array(X, "X", axis)
    y, y_axis = examples_array(Y, "Y", axis, labels=True)
    m, m_y = x.shape[x_axis], y.shape[y_axis]
    if m != m_y:
        raise ValueError(
            f"X and Y must hold the same number of examples along axis {axis}, got "
            f"{m} in X (shape {x.shape}) and {m_y} in Y (shape {y.shape})"
        )
    return PairedExamples(x, x_axis, y, y_axis, m)
