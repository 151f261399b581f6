"""bnref's typed NumPy reference implementation of batch normalization."""

from reference.batchnorm import (
    BatchNormBackward,
    BatchNormForward,
    IdentityParams,
    batch_norm_backward,
    batch_norm_forward,
    batch_norm_inference,
    identity_params,
)
from reference.batchnorm_graph import batch_norm_backward_graph
from reference.minibatch import MiniBatch, mini_batch_indices, random_mini_batches

__all__ = [
    "BatchNormBackward",
    "BatchNormForward",
    "IdentityParams",
    "MiniBatch",
    "batch_norm_backward",
    "batch_norm_backward_graph",
    "batch_norm_forward",
    "batch_norm_inference",
    "identity_params",
    "mini_batch_indices",
    "random_mini_batches",
]
