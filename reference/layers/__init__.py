"""Layers with a forward and a backward pass, all pure: nothing is written into an argument.

Every ``*_forward`` returns ``(output, cache)`` (batch norm also the new state) and every
``*_backward(dout, cache)`` a NamedTuple of gradients. Arrays are float64 and read-only.
One concept per module: `affine` (dense layer and initialisations), `activations` (ReLU,
sigmoid), `losses` (softmax / sigmoid cross-entropy), `batch_norm_layer`, `dropout`,
`weight_decay`.
"""

from reference.layers.activations import (
    ActivationGrads,
    ReluCache,
    SigmoidCache,
    relu_backward,
    relu_forward,
    sigmoid,
    sigmoid_backward,
    sigmoid_forward,
)
from reference.layers.affine import (
    INIT_METHODS,
    AffineCache,
    AffineGrads,
    InitMethod,
    affine_backward,
    affine_forward,
    init_std,
    init_weight,
)
from reference.layers.batch_norm_layer import (
    BatchNormCache,
    BatchNormConfig,
    BatchNormGrads,
    BatchNormLayerOutput,
    BatchNormMode,
    BatchNormState,
    batch_norm_layer_backward,
    batch_norm_layer_forward,
    initial_state,
)
from reference.layers.dropout import (
    DropoutCache,
    DropoutGrads,
    DropoutKind,
    check_drop_probability,
    draw_mask,
    dropout_backward,
    dropout_forward,
)
from reference.layers.losses import (
    LossGrads,
    SigmoidCrossEntropyCache,
    SoftmaxCrossEntropyCache,
    log_softmax,
    sigmoid_cross_entropy_backward,
    sigmoid_cross_entropy_forward,
    softmax,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from reference.layers.weight_decay import check_weight_decay, l2_penalty, l2_penalty_gradient

__all__ = [
    "INIT_METHODS",
    "ActivationGrads",
    "AffineCache",
    "AffineGrads",
    "BatchNormCache",
    "BatchNormConfig",
    "BatchNormGrads",
    "BatchNormLayerOutput",
    "BatchNormMode",
    "BatchNormState",
    "DropoutCache",
    "DropoutGrads",
    "DropoutKind",
    "InitMethod",
    "LossGrads",
    "ReluCache",
    "SigmoidCache",
    "SigmoidCrossEntropyCache",
    "SoftmaxCrossEntropyCache",
    "affine_backward",
    "affine_forward",
    "batch_norm_layer_backward",
    "batch_norm_layer_forward",
    "check_drop_probability",
    "check_weight_decay",
    "draw_mask",
    "dropout_backward",
    "dropout_forward",
    "init_std",
    "init_weight",
    "initial_state",
    "l2_penalty",
    "l2_penalty_gradient",
    "log_softmax",
    "relu_backward",
    "relu_forward",
    "sigmoid",
    "sigmoid_backward",
    "sigmoid_cross_entropy_backward",
    "sigmoid_cross_entropy_forward",
    "sigmoid_forward",
    "softmax",
    "softmax_cross_entropy_backward",
    "softmax_cross_entropy_forward",
]
