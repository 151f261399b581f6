"""Keras 3's `keras.layers.BatchNormalization` on one backend behind the `Implementation`
protocol (targets `keras-numpy`, `keras-jax`, `keras-torch`, `keras-tensorflow`, and `keras`:
the backend Keras picks by itself, KERAS_BACKEND or else its config file or TensorFlow).

Keras fixes its backend when it is imported (the KERAS_BACKEND environment variable), so one
process serves one backend: this module sets KERAS_BACKEND before importing Keras, and refuses
a second backend in a process where Keras is already imported with another (`bnref check` runs
each target in a worker process of its own).

What each method runs (keras/src/layers/normalization/batch_normalization.py of the installed
Keras, read): one layer `BatchNormalization(axis=-1, dtype=DTYPE)` per channel count, built
for (n, C) batches (`bnref.targets.channels_last`), called with `Layer.stateless_call` on the
given gamma, beta and moving statistics:

* training (`training=True`): the layer's own `ops.moments` over the batch (the biased
  variance; the NumPy and PyTorch backends compute it as E[x**2] - E[x]**2, the JAX backend
  with jnp.var, TensorFlow with tf.nn.moments), y from `ops.batch_normalization` (x * inv +
  (beta - mean * inv), inv = gamma / sqrt(var + epsilon)), and the new moving statistics
  moving * momentum + s * (1 - momentum): convention "keras". `forward` reads the batch
  statistics as the moving statistics after a step with momentum 0 from zeros; `layer_step` and
  `update_running_stats` take y and the moving statistics of one step (gamma 1, beta 0);
* inference (`training=False`): the moving statistics in place of the batch's;
* gradients through the backend's own autodiff: `jax.vjp` (keras-jax, inside the two compiled
  programs of `bnref.targets.jax_target.XlaTarget`), `torch.autograd.grad` (keras-torch),
  `tf.GradientTape` (keras-tensorflow). The NumPy backend has no autodiff: `backward` and
  `frozen_backward` are not applicable there.

epsilon and momentum are attributes of the layer, read when it is called; the adapter sets
them before each call (on keras-jax, to the programs' traced arguments while a program is
traced, so that one program serves every value). Keras computes the layer in
`backend.result_type(x.dtype, "float32")`, which on every backend but TensorFlow maps float64
to float32 (keras/src/backend/common/dtypes.py, BIT64_TO_BIT32_DTYPE, "to be aligned with JAX's
default behavior"): a float64 layer computes in float32 there and returns float64. The audit
at float64 reports what that costs.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import numpy as np

from bnref.targets import FRAMEWORKS, TargetLacks, install_hint, numpy_dtype
from bnref.targets.channels_last import ChannelsLastTarget, Kernel

BACKENDS = ("numpy", "jax", "torch", "tensorflow")


def default_backend() -> str:
    """The backend Keras picks by itself: KERAS_BACKEND, else the one Keras is imported with
    (its config file ~/.keras/keras.json, else TensorFlow), imported here if need be."""
    chosen = os.environ.get("KERAS_BACKEND")
    if chosen:
        return chosen
    try:
        import keras  # noqa: PLC0415 -- an optional dependency
    except ImportError as exc:
        raise ImportError(install_hint("keras", FRAMEWORKS["keras"])) from exc
    backend: str = keras.backend.backend()
    return backend


def import_keras(backend: str) -> Any:
    """Keras imported with `backend` (one of BACKENDS); ValueError if this process has Keras
    with another backend, ImportError naming the extra if Keras or the backend is missing."""
    if backend not in BACKENDS:
        raise ValueError(f"Keras backend must be one of {BACKENDS}, got {backend!r}")
    target = f"keras-{backend}"
    loaded = sys.modules.get("keras")
    if loaded is not None:
        current = loaded.backend.backend()
        if current != backend:
            raise ValueError(
                f"{target}: Keras is already imported in this process with the {current!r} "
                "backend, and Keras fixes its backend when it is imported (KERAS_BACKEND); "
                f"check {target} in a process of its own (bnref check runs each target in its "
                "own worker process)"
            )
        return loaded
    before = os.environ.get("KERAS_BACKEND")
    os.environ["KERAS_BACKEND"] = backend
    try:
        # Before Keras: float64 in JAX (jax_target), one TensorFlow thread (tensorflow_target).
        if backend in ("jax", "tensorflow"):
            importlib.import_module(f"bnref.targets.{backend}_target")
        import keras  # noqa: PLC0415 -- the backend must be set first
    except ImportError as exc:
        if before is None:
            del os.environ["KERAS_BACKEND"]
        else:
            os.environ["KERAS_BACKEND"] = before
        raise ImportError(install_hint(target, FRAMEWORKS[target])) from exc
    if keras.backend.backend() != backend:  # pragma: no cover -- keras ignoring KERAS_BACKEND
        raise ValueError(f"{target}: Keras started with the {keras.backend.backend()!r} backend")
    return keras


class _Layers:
    """One built BatchNormalization layer per channel count, in `dtype`."""

    def __init__(self, keras: Any, dtype: str) -> None:
        self._keras = keras
        self._dtype = dtype
        self._layers: dict[int, Any] = {}

    def __call__(self, channels: int) -> Any:
        layer = self._layers.get(channels)
        if layer is None:
            layer = self._keras.layers.BatchNormalization(axis=-1, dtype=self._dtype)
            layer.build((None, channels))
            trainable = [v.name for v in layer.trainable_variables]
            state = [v.name for v in layer.non_trainable_variables]
            if trainable != ["gamma", "beta"] or state != ["moving_mean", "moving_variance"]:
                raise ValueError(  # pragma: no cover -- a Keras whose layer changed
                    f"Keras BatchNormalization has the variables {trainable} and {state}, not "
                    "[gamma, beta] and [moving_mean, moving_variance]"
                )
            self._layers[channels] = layer
        return layer


def stateless(
    layer: Any, x: Any, *, gamma: Any, beta: Any, mean: Any, var: Any, **options: Any
) -> tuple[Any, Any, Any]:
    """(y, new moving mean, new moving variance) of one call of `layer` with `options`
    (training, epsilon, momentum) on the given values, without changing the layer."""
    training = options.pop("training")
    saved = {name: getattr(layer, name) for name in options}
    try:
        for name, value in options.items():
            setattr(layer, name, value)
        y, (new_mean, new_var) = layer.stateless_call(
            [gamma, beta], [mean, var], x, training=training
        )
    finally:
        for name, value in saved.items():
            setattr(layer, name, value)
    return y, new_mean, new_var


def load_keras(backend: str | None, dtype: str = "float64") -> KerasTarget:
    """The keras-BACKEND target in `dtype` (see the module docstring); backend None: the one
    Keras picks by itself (`default_backend`), the target `keras`."""
    if backend is None:
        backend = default_backend()
    if backend == "jax":
        return KerasJaxTarget(dtype)
    return KerasEagerTarget(backend, dtype)


class KerasTarget(ChannelsLastTarget):
    """keras.layers.BatchNormalization on `backend`, in `dtype` (its dtype policy)."""

    convention = "keras"

    def __init__(self, backend: str, dtype: str = "float64") -> None:
        super().__init__(dtype)
        self.keras = import_keras(backend)
        self.backend = backend
        self.layers = _Layers(self.keras, dtype)
        self.framework = f"keras {self.keras.__version__} ({backend}) BatchNormalization"


class KerasJaxTarget(KerasTarget):
    """keras-jax: the layer inside the compiled programs of `XlaTarget`, which this target
    runs its kernels through."""

    def __init__(self, dtype: str = "float64") -> None:
        super().__init__("jax", dtype)
        from bnref.targets.jax_target import XlaTarget  # noqa: PLC0415 -- JAX is loaded now

        layers = self.layers

        def step(x: Any, **values: Any) -> tuple[Any, Any, Any]:
            eps, momentum = values.pop("eps"), values.pop("momentum")
            layer = layers(x.shape[-1])
            return stateless(layer, x, training=True, epsilon=eps, momentum=momentum, **values)

        def infer(x: Any, **values: Any) -> Any:
            eps = values.pop("eps")
            layer = layers(x.shape[-1])
            return stateless(layer, x, training=False, epsilon=eps, **values)[0]

        self._xla = XlaTarget(dtype, step, infer)
        self.channel_bucket = self._xla.channel_bucket
        self.pad_inference_rows = self._xla.pad_inference_rows

    def train_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        return self._xla.train_kernel(x, gamma, beta, eps=eps)

    def grad_kernel(
        self, dy: Kernel, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        return self._xla.grad_kernel(dy, x, gamma, beta, eps=eps)

    def infer_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, mean: Kernel, var: Kernel, *, eps: float
    ) -> Kernel:
        return self._xla.infer_kernel(x, gamma, beta, mean, var, eps=eps)

    def frozen_grad_kernel(
        self,
        dy: Kernel,
        x: Kernel,
        gamma: Kernel,
        beta: Kernel,
        *,
        mean: Kernel,
        var: Kernel,
        eps: float,
    ) -> tuple[Kernel, Kernel, Kernel]:
        return self._xla.frozen_grad_kernel(dy, x, gamma, beta, mean=mean, var=var, eps=eps)

    def layer_kernel(
        self, x: Kernel, mean: Kernel, var: Kernel, *, momentum: float, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        return self._xla.layer_kernel(x, mean, var, momentum=momentum, eps=eps)


class KerasEagerTarget(KerasTarget):
    """keras-numpy, keras-torch, keras-tensorflow: the layer called eagerly."""

    def __init__(self, backend: str, dtype: str = "float64") -> None:
        super().__init__(backend, dtype)
        self._autodiff = _AUTODIFF[backend](dtype)

    def _zeros(self, like: Kernel, dtype: str) -> Kernel:
        return np.zeros(np.shape(like), dtype=numpy_dtype(dtype))

    def _call(
        self, x: Kernel, gamma: Kernel, beta: Kernel, mean: Kernel, var: Kernel, **options: Any
    ) -> tuple[Kernel, Kernel, Kernel]:
        t, a = self._autodiff.tensor, self._autodiff.array
        layer = self.layers(np.shape(x)[-1])
        y, new_mean, new_var = stateless(
            layer, t(x), gamma=t(gamma), beta=t(beta), mean=t(mean), var=t(var), **options
        )
        return a(y), a(new_mean), a(new_var)

    def _grads(
        self,
        method: str,
        dy: Kernel,
        inputs: tuple[Kernel, Kernel, Kernel],
        stats: tuple[Kernel, Kernel],
        **options: Any,
    ) -> tuple[Kernel, Kernel, Kernel]:
        """The gradients of sum(dy * y) with respect to `inputs` (x, gamma, beta), the moving
        statistics fixed to `stats`."""
        layer = self.layers(np.shape(inputs[0])[-1])
        mean, var = (self._autodiff.tensor(s) for s in stats)

        def f(x: Any, gamma: Any, beta: Any) -> Any:
            return stateless(layer, x, gamma=gamma, beta=beta, mean=mean, var=var, **options)[0]

        grads: tuple[Kernel, Kernel, Kernel] | None = self._autodiff.vjp(f, inputs, dy)
        if grads is None:
            raise TargetLacks(self.name, method, "the Keras NumPy backend has no autodiff")
        return grads

    def train_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        zeros = self._zeros(gamma, self.stats_dtype)
        return self._call(x, gamma, beta, zeros, zeros, training=True, epsilon=eps, momentum=0.0)

    def grad_kernel(
        self, dy: Kernel, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        zeros = self._zeros(gamma, self.stats_dtype)
        options = {"training": True, "epsilon": eps, "momentum": 0.0}
        return self._grads("backward", dy, (x, gamma, beta), (zeros, zeros), **options)

    def infer_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, mean: Kernel, var: Kernel, *, eps: float
    ) -> Kernel:
        return self._call(x, gamma, beta, mean, var, training=False, epsilon=eps)[0]

    def frozen_grad_kernel(
        self,
        dy: Kernel,
        x: Kernel,
        gamma: Kernel,
        beta: Kernel,
        *,
        mean: Kernel,
        var: Kernel,
        eps: float,
    ) -> tuple[Kernel, Kernel, Kernel]:
        options = {"training": False, "epsilon": eps}
        return self._grads("frozen_backward", dy, (x, gamma, beta), (mean, var), **options)

    def layer_kernel(
        self, x: Kernel, mean: Kernel, var: Kernel, *, momentum: float, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        ones = np.ones(np.shape(mean), dtype=numpy_dtype(self.param_dtype))
        zeros = self._zeros(mean, self.param_dtype)
        return self._call(x, ones, zeros, mean, var, training=True, epsilon=eps, momentum=momentum)


class _NumpyAutodiff:
    """The NumPy backend: arrays as they are, no gradients."""

    def __init__(self, dtype: str) -> None:
        self.dtype = dtype

    def tensor(self, value: Kernel) -> Any:
        """`value` (a NumPy array in the target's dtype) as the backend's tensor."""
        return value

    def array(self, value: Any) -> Kernel:
        """A backend tensor as a NumPy array."""
        return np.asarray(value)

    def vjp(self, f: Any, inputs: tuple[Kernel, ...], dy: Kernel) -> Any:  # noqa: ARG002
        """The gradients of sum(dy * f(*inputs)) with respect to inputs; None: no autodiff."""
        return None


class _TorchAutodiff(_NumpyAutodiff):
    """The PyTorch backend: CPU tensors, gradients by torch.autograd.grad."""

    def __init__(self, dtype: str) -> None:
        super().__init__(dtype)
        import torch  # noqa: PLC0415 -- Keras imported it already

        from bnref.targets.torch_target import one_thread  # noqa: PLC0415

        one_thread()
        self.torch = torch
        self.torch_dtype = getattr(torch, dtype)

    def tensor(self, value: Kernel) -> Any:
        # torch cannot read ml_dtypes' bfloat16: through float64, which holds it exactly
        return self.torch.tensor(np.asarray(value, dtype=np.float64)).to(self.torch_dtype)

    def array(self, value: Any) -> Kernel:
        return value.detach().to(self.torch.float64).numpy()

    def vjp(self, f: Any, inputs: tuple[Kernel, ...], dy: Kernel) -> Any:
        xs = [self.tensor(v).requires_grad_(True) for v in inputs]
        y = f(*xs)
        grads = self.torch.autograd.grad(y, xs, grad_outputs=self.tensor(dy).to(y.dtype))
        return tuple(self.array(g) for g in grads)


class _TensorflowAutodiff(_NumpyAutodiff):
    """The TensorFlow backend: eager tensors, gradients by tf.GradientTape."""

    def __init__(self, dtype: str) -> None:
        super().__init__(dtype)
        import tensorflow as tf  # noqa: PLC0415 -- Keras imported it already

        self.tf = tf

    def tensor(self, value: Kernel) -> Any:
        return self.tf.constant(value)

    def vjp(self, f: Any, inputs: tuple[Kernel, ...], dy: Kernel) -> Any:
        xs = [self.tensor(v) for v in inputs]
        with self.tf.GradientTape() as tape:
            tape.watch(xs)
            y = f(*xs)
        grads = tape.gradient(y, xs, output_gradients=self.tf.cast(self.tensor(dy), y.dtype))
        return tuple(self.array(g) for g in grads)


_AUTODIFF: dict[str, type[_NumpyAutodiff]] = {
    "numpy": _NumpyAutodiff,
    "torch": _TorchAutodiff,
    "tensorflow": _TensorflowAutodiff,
}
