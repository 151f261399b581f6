"""Named batch-norm conventions: what `momentum` means and how the running variance is updated.

Frameworks agree on the training-mode forward pass but not on the running statistics kept for
inference. Per channel, with batch mean ``mean``, biased batch variance ``var`` over n values and
the weight ``w`` that the batch statistic receives, every convention here computes::

    running_mean <- (1 - w) * running_mean + w * mean
    running_var  <- (1 - w) * running_var  + w * c * var,   c = n/(n-1) if unbiased else 1

and differs only in ``w`` (``momentum`` when momentum weights the new value, ``1 - momentum``
when it weights the old one), in ``c``, and in the defaults. Each entry cites the framework's
own documentation and source code; docs/conventions.md has the table and the discrepancies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from reference._validation import check_int, check_positive_scalar, check_unit_interval

# NumPy 2 arrays have at most 64 dimensions (NPY_MAXDIMS), so an axis outside [-64, 63] names
# no axis of any array.
MAX_DIMS = 64

MomentumWeights = Literal["new", "old"]


def _is_nonempty_string(value: object) -> bool:
    return isinstance(value, str) and value != ""


@dataclass(frozen=True)
class Convention:
    """One framework's running-statistics rule and its defaults.

    momentum          the default momentum
    momentum_weights  "new": momentum is the weight of the batch statistic (PyTorch);
                      "old": momentum is the weight of the running value (Keras, ONNX, Flax)
    unbiased_var      whether the running variance receives n/(n-1) * biased batch variance
    eps               the default epsilon (inside the square root)
    axis              the default channel axis
    cumulative_average  whether momentum=None selects the cumulative moving average with
                      weight 1/num_batches_tracked (PyTorch only)
    applies_to        the layers or operators the convention describes
    formula           the update in one line
    sources           documentation URLs and source files (repo: path) it was checked against
    """

    name: str
    momentum: float
    momentum_weights: MomentumWeights
    unbiased_var: bool
    eps: float
    axis: int
    cumulative_average: bool
    applies_to: str
    formula: str
    sources: tuple[str, ...]

    def __post_init__(self) -> None:
        # A hand-built Convention is accepted by update_running_stats, so it is checked here.
        if not _is_nonempty_string(self.name):
            raise TypeError(f"name must be a non-empty string, got {self.name!r}")
        check_unit_interval(self.momentum, "momentum")
        if self.momentum_weights not in ("new", "old"):
            raise ValueError(
                f"momentum_weights must be 'new' or 'old', got {self.momentum_weights!r}"
            )
        check_positive_scalar(self.eps, "eps")
        # Negative counts from the end; the layer resolves it against its input's ndim.
        axis = check_int(self.axis, "axis", minimum=-MAX_DIMS)
        if axis >= MAX_DIMS:
            raise ValueError(
                f"axis must be in [{-MAX_DIMS}, {MAX_DIMS - 1}] (a NumPy array has at most "
                f"{MAX_DIMS} dimensions), got {axis!r}"
            )

    def weights(self, momentum: float) -> tuple[float, float]:
        """(weight of the running value, weight of the batch statistic) for `momentum`.

        ``(1 - momentum, momentum)`` if momentum weights the new value, else
        ``(momentum, 1 - momentum)``; the subtraction is done once, as the frameworks do.
        """
        if self.momentum_weights == "new":
            return 1.0 - momentum, momentum
        return momentum, 1.0 - momentum


PYTORCH = Convention(
    name="pytorch",
    momentum=0.1,
    momentum_weights="new",
    unbiased_var=True,
    eps=1e-5,
    axis=1,
    cumulative_average=True,
    applies_to="torch.nn.BatchNorm1d/2d/3d, torch.nn.functional.batch_norm",
    formula=(
        "r_mean = (1-m)*r_mean + m*mean; r_var = (1-m)*r_var + m*n/(n-1)*var; "
        "m=None: m = 1/num_batches_tracked (counting this batch)"
    ),
    sources=(
        "https://pytorch.org/docs/stable/generated/torch.nn.BatchNorm2d.html",
        "pytorch/pytorch: torch/nn/modules/batchnorm.py (_BatchNorm.forward: "
        "num_batches_tracked += 1; exponential_average_factor = 1/num_batches_tracked "
        "if momentum is None else momentum)",
        "pytorch/pytorch: aten/src/ATen/native/Normalization.cpp "
        "(batch_norm_cpu_update_stats_template: unbiased_var = var_sum / (n - 1))",
    ),
)

KERAS = Convention(
    name="keras",
    momentum=0.99,
    momentum_weights="old",
    unbiased_var=False,
    eps=1e-3,
    axis=-1,
    cumulative_average=False,
    applies_to="keras.layers.BatchNormalization (Keras 3; tf.keras 2 on its non-fused path)",
    formula="r_mean = m*r_mean + (1-m)*mean; r_var = m*r_var + (1-m)*var",
    sources=(
        "https://keras.io/layers/normalization/ (defaults: axis=-1, momentum=0.99, epsilon=0.001)",
        "keras-team/keras: keras/src/layers/normalization/batch_normalization.py "
        "(moving_variance * momentum + variance * (1 - momentum), variance from ops.moments)",
        "keras-team/keras: keras/src/backend/numpy/nn.py (moments: biased variance)",
    ),
)

TENSORFLOW = Convention(
    name="tensorflow",
    momentum=0.99,
    momentum_weights="old",
    unbiased_var=True,
    eps=1e-3,
    axis=-1,
    cumulative_average=False,
    applies_to=(
        "tf.keras 2 BatchNormalization on its fused path (4-D input, axis 1 or 3), "
        "tf.compat.v1.layers.batch_normalization (fused), tf.nn.fused_batch_norm with "
        "exponential_avg_factor = 1 - m"
    ),
    formula="r_mean = m*r_mean + (1-m)*mean; r_var = m*r_var + (1-m)*n/(n-1)*var",
    sources=(
        "https://www.tensorflow.org/api_docs/python/tf/compat/v1/nn/fused_batch_norm",
        "tensorflow/tensorflow: tensorflow/core/kernels/fused_batch_norm_op.cc "
        "(new_variance = (1-f)*old_variance + (f*rest_size_adjust)*batch_variance, "
        "rest_size_adjust = n/(n-1) 'for Bessel's correction')",
        "tensorflow/tensorflow: tensorflow/python/keras/layers/normalization.py "
        "(_fused_batch_norm; _bessels_correction_test_only = True keeps the correction)",
    ),
)

FLAX = Convention(
    name="flax",
    momentum=0.99,
    momentum_weights="old",
    unbiased_var=False,
    eps=1e-5,
    axis=-1,
    cumulative_average=False,
    applies_to="flax.linen.BatchNorm, flax.nnx.BatchNorm",
    formula="r_mean = m*r_mean + (1-m)*mean; r_var = m*r_var + (1-m)*var",
    sources=(
        "https://flax.readthedocs.io/en/latest/api_reference/flax.nnx/nn/normalization.html",
        "google/flax: flax/linen/normalization.py (BatchNorm.__call__: "
        "ra_var = momentum*ra_var + (1-momentum)*var; _compute_stats, use_fast_variance=True)",
    ),
)

ONNX = Convention(
    name="onnx",
    momentum=0.9,
    momentum_weights="old",
    unbiased_var=False,
    eps=1e-5,
    axis=1,
    cumulative_average=False,
    applies_to="ONNX BatchNormalization, opset 14 and 15, training_mode=1",
    formula="r_mean = m*r_mean + (1-m)*mean; r_var = m*r_var + (1-m)*var",
    sources=(
        "https://onnx.ai/onnx/operators/onnx__BatchNormalization.html",
        "onnx/onnx: onnx/defs/nn/defs.cc (momentum default 0.9, epsilon 1e-5, "
        "'ReduceVar refers to the population variance')",
        "onnx/onnx: onnx/reference/ops/op_batch_normalization.py (_batchnorm_training_mode: "
        "x.var(axis=all but 1), mean * momentum + saved_mean * (1 - momentum))",
    ),
)

# The course notes fix the weighting (beta = 0.9 on the OLD value), the biased variance and the
# (features, examples) layout, but not eps. 1e-5 is chosen: it is the default of
# batch_norm_forward and of PyTorch, ONNX and Flax, and cuDNN refuses eps below 1e-5
# (TensorFlow raises smaller values to 1.001e-5), so 1e-8 could not be matched by a
# cuDNN-backed implementation at all.
TEXTBOOK = Convention(
    name="textbook",
    momentum=0.9,
    momentum_weights="old",
    unbiased_var=False,
    eps=1e-5,
    axis=0,
    cumulative_average=False,
    applies_to=(
        "the course notes: exponentially weighted average V_t = beta*V_(t-1) + (1-beta)*theta_t"
    ),
    formula="r_mean = b*r_mean + (1-b)*mean; r_var = b*r_var + (1-b)*var, b = 0.9",
    sources=(
        "course notes: exponentially weighted averages, beta = 0.9, used for the batch-norm "
        "mean and variance at test time; layout (features, examples)",
    ),
)

CONVENTIONS: Mapping[str, Convention] = MappingProxyType(
    {c.name: c for c in (PYTORCH, KERAS, TENSORFLOW, FLAX, ONNX, TEXTBOOK)}
)


def get_convention(name: str) -> Convention:
    """The `Convention` registered under `name` (a key of `CONVENTIONS`)."""
    if not isinstance(name, str):
        raise TypeError(
            f"convention must be a string, one of {sorted(CONVENTIONS)}, "
            f"got {type(name).__name__} {name!r}"
        )
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"convention must be one of {sorted(CONVENTIONS)}, got {name!r}") from None
