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
from reference.conventions import CONVENTIONS, Convention, get_convention
from reference.minibatch import MiniBatch, mini_batch_indices, random_mini_batches
from reference.running_stats import RunningStats, population_statistics, update_running_stats

__all__ = [
    "CONVENTIONS",
    "BatchNormBackward",
    "BatchNormForward",
    "Convention",
    "IdentityParams",
    "MiniBatch",
    "RunningStats",
    "batch_norm_backward",
    "batch_norm_backward_graph",
    "batch_norm_forward",
    "batch_norm_inference",
    "get_convention",
    "identity_params",
    "mini_batch_indices",
    "population_statistics",
    "random_mini_batches",
    "update_running_stats",
]
