"""Ghost batch norm: batch statistics per virtual batch (Hoffer, Hubara & Soudry 2017,
"Train longer, generalize better", arXiv:1705.08741, section 4).

The batch (axis 0) is cut into consecutive virtual batches of `virtual_batch_size` examples and
each is normalized by plain `batch_norm_forward` with its own statistics. When N is not a
multiple of the size, the leftover rule decides what happens to the last, smaller chunk:

- ``"separate"`` (default): it is a virtual batch of its own, as ``torch.split(x, size, dim=0)``
  does in public implementations (e.g. Nivgil/Asynchronous-SGD gbn.py, the GhostBatchNorm1d
  modules that split by `virtual_batch_size` and normalize each chunk). It must have >= 2
  values per channel.
- ``"merge"``: it is merged into the previous virtual batch, which then has between `size` + 1
  and 2 * `size` - 1 examples.

Dropping the leftover is not offered: a forward pass must give every example an output.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from reference._validation import Float64Array, as_float64_array, check_int, frozen
from reference.batchnorm import DEFAULT_EPS, batch_norm_forward, channel_layout

Leftover = Literal["separate", "merge"]
LEFTOVER_RULES: tuple[str, ...] = ("separate", "merge")


@dataclass(frozen=True)
class GhostBatchNormForward:
    """y and x_hat shaped like x; per virtual batch b, mean/var/inv_std[b] have shape (C,)."""

    y: Float64Array
    x_hat: Float64Array
    mean: Float64Array  # (num_virtual_batches, C)
    var: Float64Array
    inv_std: Float64Array
    bounds: tuple[tuple[int, int], ...]  # [start, stop) of each virtual batch along axis 0


def virtual_batch_bounds(
    batch_size: int, virtual_batch_size: int, leftover: str = "separate"
) -> tuple[tuple[int, int], ...]:
    """The [start, stop) ranges of the virtual batches of a batch of `batch_size` examples.

    Chunks of `virtual_batch_size` from the start; a smaller last chunk follows `leftover`
    ("separate": its own chunk; "merge": joined to the previous chunk, if there is one).
    """
    n = check_int(batch_size, "batch_size", minimum=1)
    size = check_int(virtual_batch_size, "virtual_batch_size", minimum=1)
    if leftover not in LEFTOVER_RULES:
        raise ValueError(f"leftover must be one of {LEFTOVER_RULES}, got {leftover!r}")
    starts = list(range(0, n, size))
    bounds = [(s, min(s + size, n)) for s in starts]
    if leftover == "merge" and len(bounds) > 1 and n % size:
        bounds[-2:] = [(bounds[-2][0], n)]
    return tuple(bounds)


def ghost_batch_norm_forward(
    x: ArrayLike,
    gamma: ArrayLike,
    beta: ArrayLike,
    *,
    virtual_batch_size: int,
    eps: float = DEFAULT_EPS,
    axis: int = 1,
    leftover: Leftover = "separate",
) -> GhostBatchNormForward:
    """Training-mode batch norm with statistics per virtual batch along axis 0.

    For each virtual batch B (see `virtual_batch_bounds`), ``y[B] = batch_norm_forward(x[B])``:
    ``mean_B``, biased ``var_B``, ``y = gamma*(x - mean_B)/sqrt(var_B + eps) + beta``. The
    channel axis must not be 0 (axis 0 is the batch axis that is cut). Every virtual batch
    must have >= 2 values per channel. With ``virtual_batch_size >= N`` this is plain batch norm.
    """
    x64 = as_float64_array(x, "x")
    layout = channel_layout(x64, axis)
    if layout.axis == 0:
        raise ValueError("axis must not be 0: axis 0 is the batch axis cut into virtual batches")
    bounds = virtual_batch_bounds(x64.shape[0], virtual_batch_size, leftover)
    per_example = layout.count // x64.shape[0]  # values per channel in one example
    for start, stop in bounds:
        if (stop - start) * per_example < 2:
            raise ValueError(
                f"every virtual batch must have >= 2 values per channel, but examples "
                f"[{start}, {stop}) give {(stop - start) * per_example} with "
                f"virtual_batch_size={virtual_batch_size} and leftover={leftover!r}; "
                "use leftover='merge' or another virtual_batch_size"
            )
    parts = [batch_norm_forward(x64[a:b], gamma, beta, eps=eps, axis=axis) for a, b in bounds]
    return GhostBatchNormForward(
        y=frozen(np.concatenate([p.y for p in parts], axis=0)),
        x_hat=frozen(np.concatenate([p.x_hat for p in parts], axis=0)),
        mean=frozen(np.stack([p.mean for p in parts])),
        var=frozen(np.stack([p.var for p in parts])),
        inv_std=frozen(np.stack([p.inv_std for p in parts])),
        bounds=bounds,
    )
