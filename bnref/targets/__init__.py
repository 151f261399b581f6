"""Other batch-norm implementations behind the `Implementation` protocol, for `bnref check`.

`load_target(name, dtype)` builds the implementation the properties run on: the reference, bnref's
own fast engine (`fast`, `bnref.fast`), PyTorch (`torch`), the ONNX reference evaluator (`onnx`) or
ONNX Runtime (`onnxruntime`). An adapter converts the float64 inputs to `dtype`, moves the channel
axis to position 1 (the only layout PyTorch and ONNX accept), runs, moves it back and returns
float64 arrays. The frameworks are imported only when their adapter is loaded, so bnref itself never
needs them; a missing one raises an ImportError that says what to install.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from properties.adapter import Array, Implementation, ReferenceImplementation
from properties.framework import Unsupported
from reference._validation import normalize_axis

TARGETS = ("reference", "fast", "torch", "onnx", "onnxruntime")
DTYPES = ("float64", "float32", "float16")
MIN_NDIM, MAX_NDIM = 2, 5  # (N, C) to (N, C, D, H, W): what torch.nn.BatchNorm1d/2d/3d accept


class TargetLacks(ValueError, Unsupported):  # noqa: N818 -- names what the target lacks
    """The target cannot do what was asked: a method, an argument value or a layout it lacks.

    The message names the target, the method and the reason.
    """

    def __init__(self, target: str, method: str, reason: str) -> None:
        super().__init__(f"{target} lacks {method}: {reason}")
        self.target = target
        self.method = method


def check_dtype(dtype: object) -> str:
    """`dtype` if it is one of DTYPES; TypeError or ValueError naming `dtype` otherwise."""
    if not isinstance(dtype, str):
        raise TypeError(f"dtype must be a string, one of {DTYPES}, got {type(dtype).__name__}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return dtype


def to_dtype(
    value: Array, dtype: str, name: str, *, target: str, method: str
) -> NDArray[np.floating]:
    """A C-contiguous copy of `value` rounded to `dtype` (never a view of the caller's array).

    A finite value beyond the range of `dtype` would become infinity and every output NaN, so it
    is refused with TargetLacks naming the argument; values that round to zero are accepted.
    """
    arr = np.asarray(value, dtype=np.float64)
    limit = float(np.finfo(dtype).max)
    too_big = np.abs(arr) > limit
    if np.any(too_big):
        worst = float(arr[too_big].flat[0])
        raise TargetLacks(
            target,
            method,
            f"{name} has the value {worst!r}, beyond the {dtype} range (max {limit})",
        )
    return np.array(arr, dtype=dtype, order="C", copy=True)


def channels_second(x: Array, axis: int, *, target: str, method: str) -> tuple[Array, int]:
    """x with its channel axis moved to position 1, and that axis as a non-negative index.

    PyTorch and ONNX reduce over every axis except 1; the other axes are all reduced over, so
    their order does not matter and `restore_channels` undoes the move exactly.
    """
    if not MIN_NDIM <= x.ndim <= MAX_NDIM:
        raise TargetLacks(
            target,
            method,
            f"x must have {MIN_NDIM} to {MAX_NDIM} dimensions ((N, C) to (N, C, D, H, W)), "
            f"got shape {x.shape}",
        )
    ax = normalize_axis(axis, x.ndim)
    return np.moveaxis(x, ax, 1), ax


def restore_channels(y: Array, ax: int) -> Array:
    """Undo `channels_second`: move axis 1 back to position `ax`."""
    return np.moveaxis(y, 1, ax)


def load_target(name: str, dtype: str = "float64") -> Implementation:
    """The implementation called `name` (one of TARGETS), computing in `dtype` (one of DTYPES).

    The reference computes in float64 only. ImportError (with the pip command) when the
    framework of `name` is not installed; ValueError for an unknown name or dtype.
    """
    # The framework modules are imported here, not at the top: they are optional dependencies.
    if name not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {name!r}")
    check_dtype(dtype)
    if name in ("reference", "fast"):
        if dtype != "float64":
            raise ValueError(f"dtype must be 'float64' for the {name} target, got {dtype!r}")
        if name == "fast":
            from bnref import fast  # noqa: PLC0415 -- its thread pool starts only when audited

            return ReferenceImplementation(module=fast, name="fast")
        return ReferenceImplementation()
    if name == "torch":
        from bnref.targets.torch_target import TorchTarget  # noqa: PLC0415 -- optional

        return TorchTarget(dtype)
    from bnref.targets import onnx_target  # noqa: PLC0415 -- optional dependency

    if name == "onnx":
        return onnx_target.OnnxReferenceTarget(dtype)
    return onnx_target.OnnxRuntimeTarget(dtype)
