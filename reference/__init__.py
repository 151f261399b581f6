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
from reference.gradcheck import (
    GradcheckReport,
    fast_check,
    full_check,
    numeric_gradients,
    relative_error,
)
from reference.minibatch import MiniBatch, mini_batch_indices, random_mini_batches
from reference.running_stats import RunningStats, population_statistics, update_running_stats

__all__ = [
    "CONVENTIONS",
    "BatchNormBackward",
    "BatchNormForward",
    "Convention",
    "GradcheckReport",
    "IdentityParams",
    "MiniBatch",
    "RunningStats",
    "batch_norm_backward",
    "batch_norm_backward_graph",
    "batch_norm_forward",
    "batch_norm_inference",
    "fast_check",
    "full_check",
    "get_convention",
    "identity_params",
    "mini_batch_indices",
    "numeric_gradients",
    "population_statistics",
    "random_mini_batches",
    "relative_error",
    "update_running_stats",
]
