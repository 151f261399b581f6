"""ONNX BatchNormalization (opset 15) behind the `Implementation` protocol.

The model is one BatchNormalization node built with onnx.helper, run by the ONNX reference
evaluator (`onnx.reference.ReferenceEvaluator`, target "onnx") or by ONNX Runtime on the CPU
(target "onnxruntime"). The operator (https://onnx.ai/onnx/operators/onnx__BatchNormalization.html,
onnx/onnx: onnx/defs/nn/defs.cc):

* inference (training_mode=0): Y = (X - input_mean) / sqrt(input_var + epsilon) * scale + B;
* training (training_mode=1, since opset 14; version 15 only widened the types): Y uses the
  batch mean and the POPULATION variance, and the outputs running_mean = input_mean * momentum
  + mean * (1 - momentum), running_var likewise with the biased variance (convention "onnx").
  The batch statistics themselves are no output since opset 14, so `forward` reads them from
  running_mean/var with momentum = 0 and input statistics 0: 0 * 0 + mean * 1 is exact.
* no gradient: the operator has no backward, so `backward` raises TargetLacks, as does
  momentum=None (ONNX has no cumulative average).
* epsilon and momentum are FLOAT (float32) attributes, whatever the tensor type: a float64
  model computes with float32(eps), e.g. 1e-5 becomes 9.99999974738e-06, as any exporter writes
  it. The adapter passes eps and momentum unchanged, so that rounding is the operator's.
* X is (N, C, D1, ..., Dn); (N, C) works too (both runtimes reduce over every axis but 1).
ONNX Runtime's CPU kernel (onnxruntime/core/providers/cpu/nn/batch_norm.h) implements
training mode: it trains iff the node has more than one output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from bnref.targets import (
    TargetLacks,
    channels_second,
    check_dtype,
    restore_channels,
    to_dtype,
)
from properties.adapter import Array, BackwardOutput, ForwardOutput, RunningStats

try:
    import onnx
    from onnx import TensorProto, helper
    from onnx.reference import ReferenceEvaluator
except ImportError as exc:
    raise ImportError("bnref check onnx needs onnx: pip install 'bnref[onnx]'") from exc

OPSET = 15  # the latest BatchNormalization version; training_mode exists since 14
IR_VERSION = 8  # the IR version that came with opset 15 (onnx 1.10): old runtimes load it
_ELEM_TYPES = {
    "float64": TensorProto.DOUBLE,
    "float32": TensorProto.FLOAT,
    "float16": TensorProto.FLOAT16,
}
_INPUTS = ("X", "scale", "B", "input_mean", "input_var")
_MAX_CACHED = 64  # models differ by eps and momentum; scale-invariance draws many eps


def batch_norm_model(
    ndim: int, dtype: str, *, training: bool, eps: float, momentum: float = 0.9
) -> onnx.ModelProto:
    """A checked model of one BatchNormalization node for ndim-dimensional X of `dtype`.

    Outputs: Y, and with `training` also running_mean and running_var.
    """
    elem = _ELEM_TYPES[check_dtype(dtype)]
    outputs = ["Y", "running_mean", "running_var"] if training else ["Y"]
    attrs: dict[str, Any] = {"epsilon": eps, "training_mode": int(training)}
    if training:
        attrs["momentum"] = momentum
    node = helper.make_node("BatchNormalization", list(_INPUTS), outputs, **attrs)
    shape: Sequence[str | None] = ["N", "C", *[None] * (ndim - 2)]
    graph = helper.make_graph(
        [node],
        "batch_norm",
        [helper.make_tensor_value_info("X", elem, shape)]
        + [helper.make_tensor_value_info(n, elem, ["C"]) for n in _INPUTS[1:]],
        [helper.make_tensor_value_info("Y", elem, shape)]
        + [helper.make_tensor_value_info(n, elem, ["C"]) for n in outputs[1:]],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    onnx.checker.check_model(model, full_check=True)
    return model


class _OnnxTarget:
    """The methods shared by both runtimes; subclasses say how a model is run."""

    _runtime = ""

    def __init__(self, dtype: str = "float64") -> None:
        self._dtype = check_dtype(dtype)
        self._cache: dict[tuple[int, bool, float, float], Any] = {}

    @property
    def name(self) -> str:
        return f"{self._runtime} {self._dtype}"

    @property
    def convention(self) -> str:
        return "onnx"

    @property
    def dtype(self) -> str:
        return self._dtype

    def _compile(self, model: onnx.ModelProto) -> Any:
        raise NotImplementedError  # pragma: no cover -- every subclass overrides it

    def _execute(self, runner: Any, feeds: dict[str, NDArray[np.floating]]) -> list[Any]:
        raise NotImplementedError  # pragma: no cover -- every subclass overrides it

    def _run(
        self,
        method: str,
        xs: Array,
        params: Sequence[tuple[Array, str]],
        *,
        training: bool,
        eps: float,
        momentum: float = 0.9,
    ) -> list[Array]:
        """Run the model for X = xs and the four per-channel inputs; float64 outputs."""
        key = (xs.ndim, training, float(eps), float(momentum))
        runner = self._cache.get(key)
        if runner is None:
            if len(self._cache) >= _MAX_CACHED:
                self._cache.clear()
            model = batch_norm_model(
                xs.ndim, self._dtype, training=training, eps=eps, momentum=momentum
            )
            runner = self._cache[key] = self._compile(model)
        feeds = {"X": to_dtype(xs, self._dtype, "x", target=self.name, method=method)}
        for (value, arg), input_name in zip(params, _INPUTS[1:], strict=True):
            feeds[input_name] = to_dtype(value, self._dtype, arg, target=self.name, method=method)
        return [np.array(out, dtype=np.float64) for out in self._execute(runner, feeds)]

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        """Training mode with momentum 0: Y, and the batch mean and biased variance."""
        xs, ax = channels_second(x, axis, target=self.name, method="forward")
        zeros = np.zeros(xs.shape[1])
        y, mean, var = self._run(
            "forward",
            xs,
            [(gamma, "gamma"), (beta, "beta"), (zeros, "input_mean"), (zeros, "input_var")],
            training=True,
            eps=eps,
            momentum=0.0,
        )
        return ForwardOutput(restore_channels(y, ax), mean, var)

    def backward(
        self,
        dy: Array,  # noqa: ARG002 -- the protocol's signature; there is nothing to compute
        x: Array,  # noqa: ARG002
        gamma: Array,  # noqa: ARG002
        *,
        eps: float,  # noqa: ARG002
        axis: int,  # noqa: ARG002
    ) -> BackwardOutput:
        """Not available: ONNX BatchNormalization has no gradient."""
        raise TargetLacks(
            self.name, "backward", "ONNX BatchNormalization is a forward operator, no gradient"
        )

    def inference(
        self,
        x: Array,
        gamma: Array,
        beta: Array,
        running_mean: Array,
        running_var: Array,
        *,
        eps: float,
        axis: int,
    ) -> Array:
        """training_mode=0: Y = (X - running_mean) / sqrt(running_var + eps) * gamma + beta."""
        xs, ax = channels_second(x, axis, target=self.name, method="inference")
        (y,) = self._run(
            "inference",
            xs,
            [
                (gamma, "gamma"),
                (beta, "beta"),
                (running_mean, "running_mean"),
                (running_var, "running_var"),
            ],
            training=False,
            eps=eps,
        )
        return restore_channels(y, ax)

    def update_running_stats(
        self,
        x: Array,
        running_mean: Array,
        running_var: Array,
        *,
        momentum: float | None,
        num_batches_tracked: int | None,  # noqa: ARG002 -- only momentum=None would use it
        axis: int,
    ) -> RunningStats:
        """m * running + (1 - m) * batch, the variance biased (num_batches_tracked is unused)."""
        method = "update_running_stats"
        if momentum is None:
            raise TargetLacks(
                self.name, method, "momentum=None (a cumulative average) does not exist in ONNX"
            )
        xs, _ = channels_second(x, axis, target=self.name, method=method)
        c = xs.shape[1]
        _, mean, var = self._run(
            method,
            xs,
            [
                (np.ones(c), "gamma"),
                (np.zeros(c), "beta"),
                (running_mean, "running_mean"),
                (running_var, "running_var"),
            ],
            training=True,
            eps=1e-5,  # only Y depends on it, and Y is not returned
            momentum=momentum,
        )
        return RunningStats(mean, var)


class OnnxReferenceTarget(_OnnxTarget):
    """The ONNX reference evaluator (NumPy), as shipped with the onnx package."""

    _runtime = f"onnx {onnx.__version__} reference evaluator"

    def _compile(self, model: onnx.ModelProto) -> Any:
        return ReferenceEvaluator(model)

    def _execute(self, runner: Any, feeds: dict[str, NDArray[np.floating]]) -> list[Any]:
        return list(runner.run(None, feeds))


class OnnxRuntimeTarget(_OnnxTarget):
    """ONNX Runtime's CPU execution provider, default session options."""

    def __init__(self, dtype: str = "float64") -> None:
        try:
            import onnxruntime  # noqa: PLC0415 -- optional, and the "onnx" target needs none
        except ImportError as exc:
            raise ImportError(
                "bnref check onnxruntime needs ONNX Runtime: pip install 'bnref[onnx]'"
            ) from exc
        super().__init__(dtype)
        self._ort = onnxruntime
        self._runtime = f"onnxruntime {onnxruntime.__version__}"

    def _compile(self, model: onnx.ModelProto) -> Any:
        options = self._ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings on stderr per session
        return self._ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )

    def _execute(self, runner: Any, feeds: dict[str, NDArray[np.floating]]) -> list[Any]:
        return list(runner.run(None, feeds))
