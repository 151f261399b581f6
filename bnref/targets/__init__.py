"""Other batch-norm implementations behind the `Implementation` protocol, for `bnref check`.

`load_target(name, dtype)` builds the implementation the properties run on: the reference, bnref's
own fast engine (`fast`, `bnref.fast`), PyTorch (`torch`), the ONNX reference evaluator (`onnx`),
ONNX Runtime (`onnxruntime`), a jax.numpy textbook batch norm (`jax`), Flax's
`nn.BatchNorm` (`flax`; `flax-slow` with `use_fast_variance=False`), Keras 3's
`BatchNormalization` on one backend (`keras-numpy`, `keras-jax`, `keras-torch`,
`keras-tensorflow`; `keras`: the backend Keras itself picks, from KERAS_BACKEND) and
TensorFlow's fused kernel (`tensorflow`). An adapter converts the float64 inputs to `dtype`,
moves the channel axis where its framework wants it (position 1 for PyTorch and ONNX, last for
the channels-last ones, `bnref.targets.channels_last`), runs, moves it back and returns float64
arrays. The frameworks are imported only when their adapter is loaded, so
bnref itself never needs them; a missing one raises an ImportError that names the extra to
install (`EXTRAS`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

from properties.adapter import Array, Implementation, ReferenceImplementation
from properties.framework import Unsupported
from reference._validation import normalize_axis

TARGETS = (
    "reference",
    "fast",
    "torch",
    "onnx",
    "onnxruntime",
    "jax",
    "flax",
    "flax-slow",
    "keras",
    "keras-numpy",
    "keras-jax",
    "keras-torch",
    "keras-tensorflow",
    "tensorflow",
)
# The pip extra each framework target needs: `pip install 'bnref[EXTRA]'`.
EXTRAS = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxruntime": "onnx",
    "jax": "jax",
    "flax": "flax",
    "flax-slow": "flax",
    "keras": "keras,tensorflow",
    "keras-numpy": "keras",
    "keras-jax": "keras,jax",
    "keras-torch": "keras,torch",
    "keras-tensorflow": "keras,tensorflow",
    "tensorflow": "tensorflow",
}
# What each framework target needs, as its ImportError names it.
FRAMEWORKS = {
    "jax": "JAX",
    "flax": "Flax (and JAX)",
    "flax-slow": "Flax (and JAX)",
    "keras": "Keras 3 and its backend (KERAS_BACKEND, TensorFlow by default)",
    "keras-numpy": "Keras 3",
    "keras-jax": "Keras 3 and JAX",
    "keras-torch": "Keras 3 and PyTorch",
    "keras-tensorflow": "Keras 3 and TensorFlow",
    "tensorflow": "TensorFlow",
}
MEMORY_FORMATS = ("contiguous", "channels_last")  # torch's, for `--memory-format`
# bfloat16 (8 exponent bits like float32, 8 significand bits) exists in NumPy through ml_dtypes,
# the package JAX and TensorFlow use for it; `numpy_dtype` loads it when bfloat16 is asked for.
DTYPES = ("float64", "float32", "float16", "bfloat16")
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


def numpy_dtype(dtype: str) -> np.dtype[Any]:
    """The NumPy dtype called `dtype` (one of DTYPES); bfloat16 comes from ml_dtypes, which is
    imported (and registers the name with NumPy) on first use. ImportError naming the extra if
    it is missing."""
    if check_dtype(dtype) == "bfloat16":
        try:
            import ml_dtypes  # noqa: PLC0415 -- only bfloat16 needs it
        except ImportError as exc:
            raise ImportError(
                "--dtype bfloat16 needs ml_dtypes (NumPy's bfloat16): pip install 'bnref[bfloat16]'"
            ) from exc
        bfloat16: np.dtype[Any] = np.dtype(ml_dtypes.bfloat16)
        return bfloat16
    return np.dtype(dtype)


def largest(dtype: str) -> float:
    """The largest finite value of `dtype` (bfloat16: (2 - 2**-7) 2**127, float32's range)."""
    if dtype == "bfloat16":
        return float((2 - 2.0**-7) * 2.0**127)
    return float(np.finfo(numpy_dtype(dtype)).max)


def to_dtype(value: Array, dtype: str, name: str, *, target: str, method: str) -> NDArray[Any]:
    """A C-contiguous copy of `value` rounded to `dtype` (never a view of the caller's array).

    A finite value beyond the range of `dtype` would become infinity and every output NaN, so it
    is refused with TargetLacks naming the argument; values that round to zero are accepted.
    """
    arr = np.asarray(value, dtype=np.float64)
    limit = largest(dtype)
    too_big = np.abs(arr) > limit
    if np.any(too_big):
        worst = float(arr[too_big].flat[0])
        raise TargetLacks(
            target,
            method,
            f"{name} has the value {worst!r}, beyond the {dtype} range (max {limit})",
        )
    return np.array(arr, dtype=numpy_dtype(dtype), order="C", copy=True)


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


# The dtypes each target computes in; the others are refused by `load_target`. TensorFlow's fused
# kernel has no float64 (FusedBatchNormV3's T is half, bfloat16 or float): the tensorflow target
# loads at float64 and reports every property not applicable, with that reason.
TARGET_DTYPES = dict.fromkeys(TARGETS, DTYPES) | {
    "reference": ("float64",),
    "fast": ("float64",),
    "onnx": ("float64", "float32", "float16"),
    "onnxruntime": ("float64", "float32", "float16"),
}


def load_target(
    name: str, dtype: str = "float64", *, memory_format: str = "contiguous"
) -> Implementation:
    """The implementation called `name` (one of TARGETS), computing in `dtype` (one of DTYPES).

    `memory_format` (torch only, one of MEMORY_FORMATS) is the layout torch's tensors are
    given in. The reference computes in float64 only. ImportError (with the pip command) when
    the framework of `name` is not installed; ValueError for an unknown name, dtype or option.
    """
    # The framework modules are imported here, not at the top: they are optional dependencies.
    if name not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}; got {name!r}")
    allowed = TARGET_DTYPES[name]
    if check_dtype(dtype) not in allowed:
        choice = repr(allowed[0]) if len(allowed) == 1 else f"one of {allowed}"
        raise ValueError(f"dtype must be {choice} for the {name} target, got {dtype!r}")
    if memory_format not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {MEMORY_FORMATS}, got {memory_format!r}")
    if memory_format != "contiguous" and name != "torch":
        raise ValueError(f"memory_format {memory_format!r} is torch's; the {name} target has none")
    if dtype == "bfloat16":
        numpy_dtype(dtype)  # ImportError naming the extra before any framework is imported
    if name in ("reference", "fast"):
        if name == "fast":
            from bnref import fast  # noqa: PLC0415 -- its thread pool starts only when audited

            # the report says which block functions it audits (module docstring of bnref.fast)
            blocks = "NumPy blocks" if fast._kernels is None else "compiled blocks"
            return ReferenceImplementation(module=fast, name=f"fast with {blocks}")
        return ReferenceImplementation()
    if name == "torch":
        from bnref.targets.torch_target import TorchTarget  # noqa: PLC0415 -- optional

        return TorchTarget(dtype, memory_format=memory_format)
    if name in ("onnx", "onnxruntime"):
        from bnref.targets import onnx_target  # noqa: PLC0415 -- optional dependency

        if name == "onnx":
            return onnx_target.OnnxReferenceTarget(dtype)
        return onnx_target.OnnxRuntimeTarget(dtype)
    return _load_channels_last(name, dtype)


def _load_channels_last(name: str, dtype: str) -> Implementation:
    """The jax, flax, keras-* and tensorflow targets (`bnref.targets.channels_last`);
    ImportError naming the target and its extra when its framework is missing."""
    try:
        return _channels_last(name, dtype)
    except ImportError as exc:
        raise ImportError(install_hint(name, FRAMEWORKS[name])) from exc


def _channels_last(name: str, dtype: str) -> Implementation:
    # Each framework is an optional dependency, imported when its target is chosen.
    if name == "jax":
        from bnref.targets.jax_target import JaxTextbookTarget  # noqa: PLC0415

        return JaxTextbookTarget(dtype)
    if name in ("flax", "flax-slow"):
        from bnref.targets.flax_target import FlaxTarget  # noqa: PLC0415

        return FlaxTarget(dtype, fast_variance=name == "flax")
    if name.startswith("keras"):
        from bnref.targets.keras_target import load_keras  # noqa: PLC0415

        return load_keras(name.removeprefix("keras").removeprefix("-") or None, dtype)
    from bnref.targets.tensorflow_target import FusedBatchNormTarget  # noqa: PLC0415

    return FusedBatchNormTarget(dtype)


def install_hint(name: str, what: str) -> str:
    """The message of the ImportError raised when target `name`'s framework (`what`) is
    missing: what to install."""
    return f"bnref check {name} needs {what}: pip install 'bnref[{EXTRAS[name]}]'"
