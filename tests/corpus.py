"""Batch-norm implementations written the ways people write them, for the audit to judge.

Each entry is a set of plain functions on arrays in PyTorch's layout (N, C, *spatial), channel
axis 1, wrapped by `Functions`, which gives them to the properties through the adapter protocol
(`properties.adapter`) in any layout and dtype:

* forward(x, gamma, beta, eps) -> (y, mean, var), training mode, biased variance;
* backward(dy, x, gamma, eps) -> (dx, dgamma, dbeta);
* inference(x, gamma, beta, running_mean, running_var, eps) -> y;
* update(x, running_mean, running_var, momentum) -> (mean, var): the layer's own running
  statistics after a training step on x, PyTorch's rule (momentum weighs the batch, the batch
  variance enters unbiased), the batch statistics computed by the layer itself;
* frozen_backward(dy, x, gamma, running_mean, running_var, eps) -> (dx, dgamma, dbeta), the
  gradients in inference mode.

`HONEST` holds correct implementations that compute differently from the reference (Welford's
streaming update, np.var, the staged computation graph, float32 accumulation, flushing
subnormals to zero, chunked merges with a folded affine step): each must pass every batch-norm
property. `PLANTED` holds implementations with one mistake a user could plausibly make, each
paired with a property that must fail, naming it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from properties.adapter import Array, BackwardOutput, ForwardOutput, RunningStats

F = NDArray[Any]  # an array in the implementation's own dtype
Forward = Callable[[F, F, F, float], tuple[F, F, F]]
Backward = Callable[[F, F, F, float], tuple[F, F, F]]
Inference = Callable[[F, F, F, F, F, float], F]
Update = Callable[[F, F, F, float], tuple[F, F]]
FrozenBackward = Callable[[F, F, F, F, F, float], tuple[F, F, F]]


def _axes(x: F) -> tuple[int, ...]:
    """The axes a statistic reduces: every one but the channel axis 1."""
    return (0, *range(2, x.ndim))


def _c(v: F, x: F) -> F:
    """A (C,) vector shaped to broadcast along axis 1 of x."""
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _rows(x: F) -> F:
    """x as (n, C): the values of each channel in memory order, one column per channel."""
    return np.moveaxis(x, 1, -1).reshape(-1, x.shape[1])


def _count(x: F) -> int:
    """n, the values per channel."""
    return int(x.size // x.shape[1])


# --- the textbook pieces every entry shares unless it replaces them ----------------------------


def plain_stats(x: F) -> tuple[F, F]:
    """mean(x) and the biased mean((x - mean)**2), two passes."""
    mean = x.mean(axis=_axes(x))
    return mean, ((x - _c(mean, x)) ** 2).mean(axis=_axes(x))


def closed_form_backward(stats: Callable[[F], tuple[F, F]]) -> Backward:
    """The closed form dx = gamma/(n s) (n dy - sum(dy) - x_hat sum(dy x_hat)) with the
    statistics of `stats`."""

    def backward(dy: F, x: F, gamma: F, eps: float) -> tuple[F, F, F]:
        mean, var = stats(x)
        s = np.sqrt(var + eps)
        x_hat = (x - _c(mean, x)) / _c(s, x)
        n = _count(x)
        dbeta = dy.sum(axis=_axes(x))
        dgamma = (dy * x_hat).sum(axis=_axes(x))
        dx = _c(gamma / (n * s), x) * (n * dy - _c(dbeta, x) - x_hat * _c(dgamma, x))
        return dx, dgamma, dbeta

    return backward


def normalizing_forward(stats: Callable[[F], tuple[F, F]]) -> Forward:
    """y = gamma (x - mean) / sqrt(var + eps) + beta with the statistics of `stats`."""

    def forward(x: F, gamma: F, beta: F, eps: float) -> tuple[F, F, F]:
        mean, var = stats(x)
        y = _c(gamma, x) * (x - _c(mean, x)) / _c(np.sqrt(var + eps), x) + _c(beta, x)
        return y, mean, var

    return forward


def plain_inference(x: F, gamma: F, beta: F, running_mean: F, running_var: F, eps: float) -> F:
    """y = gamma (x - running_mean) / sqrt(running_var + eps) + beta."""
    y: F = _c(gamma, x) * (x - _c(running_mean, x)) / _c(np.sqrt(running_var + eps), x)
    return y + _c(beta, x)


def pytorch_update(stats: Callable[[F], tuple[F, F]]) -> Update:
    """PyTorch's rule with the layer's own batch statistics from `stats`: new = (1 - m) old +
    m batch, the batch variance times n/(n-1)."""

    def update(x: F, running_mean: F, running_var: F, momentum: float) -> tuple[F, F]:
        mean, var = stats(x)
        n = _count(x)
        new_mean = (1 - momentum) * running_mean + momentum * mean
        new_var = (1 - momentum) * running_var + momentum * var * (n / (n - 1))
        return new_mean, new_var

    return update


def plain_frozen_backward(
    dy: F, x: F, gamma: F, running_mean: F, running_var: F, eps: float
) -> tuple[F, F, F]:
    """Inference mode: dx = gamma dy / sqrt(rv + eps), dgamma = sum(dy x_r), dbeta = sum(dy)."""
    root = np.sqrt(running_var + eps)
    x_r = (x - _c(running_mean, x)) / _c(root, x)
    return _c(gamma / root, x) * dy, (dy * x_r).sum(axis=_axes(x)), dy.sum(axis=_axes(x))


PLAIN_BACKWARD = closed_form_backward(plain_stats)
PLAIN_UPDATE = pytorch_update(plain_stats)


@dataclass(frozen=True)
class Entry:
    """One implementation: its name, the dtype it computes in and its functions."""

    name: str
    forward: Forward
    backward: Backward = PLAIN_BACKWARD
    inference: Inference = plain_inference
    update: Update = PLAIN_UPDATE
    frozen_backward: FrozenBackward | None = plain_frozen_backward
    dtype: str = "float64"


class Functions:
    """An `Entry` behind the adapter protocol: the channel axis is moved to position 1, the
    arrays are converted to the entry's dtype and the results back to float64. Convention
    "pytorch"; momentum=None is PyTorch's cumulative average, momentum 1/num_batches_tracked."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def dtype(self) -> str:
        return self.entry.dtype

    @property
    def convention(self) -> str:
        return "pytorch"

    def _in(self, a: Array, axis: int | None = None) -> F:
        moved = a if axis is None else np.moveaxis(a, axis, 1)
        return np.array(moved, dtype=self.entry.dtype)

    @staticmethod
    def _out(a: F, axis: int | None = None) -> Array:
        out = np.array(a, dtype=np.float64)
        return out if axis is None else np.moveaxis(out, 1, axis)

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        y, mean, var = self.entry.forward(self._in(x, axis), self._in(gamma), self._in(beta), eps)
        return ForwardOutput(self._out(y, axis), self._out(mean), self._out(var))

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        dx, dgamma, dbeta = self.entry.backward(
            self._in(dy, axis), self._in(x, axis), self._in(gamma), eps
        )
        return BackwardOutput(self._out(dx, axis), self._out(dgamma), self._out(dbeta))

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
        args = (self._in(gamma), self._in(beta), self._in(running_mean), self._in(running_var))
        return self._out(self.entry.inference(self._in(x, axis), *args, eps), axis)

    def update_running_stats(
        self,
        x: Array,
        running_mean: Array,
        running_var: Array,
        *,
        momentum: float | None,
        num_batches_tracked: int | None,
        axis: int,
    ) -> RunningStats:
        if momentum is None:
            if num_batches_tracked is None:
                raise ValueError("num_batches_tracked must be given when momentum is None")
            momentum = 1.0 / num_batches_tracked
        mean, var = self.entry.update(
            self._in(x, axis), self._in(running_mean), self._in(running_var), momentum
        )
        return RunningStats(self._out(mean), self._out(var))

    def __getattr__(self, attribute: str) -> Any:
        # The optional frozen_backward exists only if the entry has one.
        frozen = self.__dict__["entry"].frozen_backward if "entry" in self.__dict__ else None
        if attribute != "frozen_backward" or frozen is None:
            raise AttributeError(attribute)

        def frozen_backward(
            dy: Array,
            x: Array,
            gamma: Array,
            running_mean: Array,
            running_var: Array,
            *,
            eps: float,
            axis: int,
        ) -> BackwardOutput:
            stats = (self._in(gamma), self._in(running_mean), self._in(running_var))
            dx, dgamma, dbeta = frozen(self._in(dy, axis), self._in(x, axis), *stats, eps)
            return BackwardOutput(self._out(dx, axis), self._out(dgamma), self._out(dbeta))

        return frozen_backward


# --- correct implementations that compute differently ----------------------------------------


def welford_stats(x: F) -> tuple[F, F]:
    """Welford's streaming update over each channel's values in memory order, all channels at
    once: M_k = M_(k-1) + (x_k - M_(k-1)) / k, S_k = S_(k-1) + (x_k - M_(k-1)) (x_k - M_k);
    var = S_n / n."""
    rows = _rows(x)
    mean = np.zeros(rows.shape[1], dtype=x.dtype)
    s = np.zeros(rows.shape[1], dtype=x.dtype)
    for k, row in enumerate(rows, start=1):
        delta = row - mean
        mean = mean + delta / k
        s = s + delta * (row - mean)
    return mean, s / rows.shape[0]


def numpy_stats(x: F) -> tuple[F, F]:
    """np.mean and np.var (NumPy's pairwise summation, var from the deviations)."""
    return x.mean(axis=_axes(x)), x.var(axis=_axes(x))


LANES = 8  # values a "thread" streams through before the partial results are merged


def chunked_stats(x: F) -> tuple[F, F]:
    """As a GPU kernel computes them: LANES interleaved lanes each run Welford's update, then
    the partial (mean, M2, count) are merged pairwise (Chan, Golub and LeVeque):
    mean = mean_a + d n_b / n, M2 = M2_a + M2_b + d**2 n_a n_b / n, d = mean_b - mean_a."""
    rows = _rows(x)
    parts: list[tuple[F, F, int]] = []
    for lane in range(min(LANES, rows.shape[0])):
        lane_rows = rows[lane::LANES]
        mean = np.zeros(rows.shape[1], dtype=x.dtype)
        m2 = np.zeros(rows.shape[1], dtype=x.dtype)
        for k, row in enumerate(lane_rows, start=1):
            delta = row - mean
            mean = mean + delta / k
            m2 = m2 + delta * (row - mean)
        parts.append((mean, m2, lane_rows.shape[0]))
    while len(parts) > 1:
        merged = []
        for (mean_a, m2_a, n_a), (mean_b, m2_b, n_b) in zip(parts[::2], parts[1::2], strict=False):
            n = n_a + n_b
            d = mean_b - mean_a
            merged.append((mean_a + d * (n_b / n), m2_a + m2_b + d * d * (n_a * n_b / n), n))
        if len(parts) % 2:
            merged.append(parts[-1])
        parts = merged
    mean, m2, n = parts[0]
    return mean, m2 / n


def folded_forward(x: F, gamma: F, beta: F, eps: float) -> tuple[F, F, F]:
    """Chunked statistics and the affine step folded as ONNX Runtime does:
    k = gamma / sqrt(var + eps), y = x k + (beta - mean k)."""
    mean, var = chunked_stats(x)
    k = gamma / np.sqrt(var + eps)
    return _c(k, x) * x + _c(beta - mean * k, x), mean, var


def folded_inference(x: F, gamma: F, beta: F, running_mean: F, running_var: F, eps: float) -> F:
    """y = x k + (beta - running_mean k), k = gamma / sqrt(running_var + eps)."""
    k = gamma / np.sqrt(running_var + eps)
    y: F = _c(k, x) * x + _c(beta - running_mean * k, x)
    return y


def staged_forward(x: F, gamma: F, beta: F, eps: float) -> tuple[F, F, F]:
    """The course's computation graph, node by node (what `staged_backward` walks back)."""
    y, cache = _staged(x, gamma, beta, eps)
    return y, cache["mu"].ravel(), cache["var"].ravel()


def _staged(x: F, gamma: F, beta: F, eps: float) -> tuple[F, dict[str, F]]:
    axes = _axes(x)
    n = _count(x)
    mu = x.sum(axis=axes, keepdims=True) / n
    xmu = x - mu
    sq = xmu**2
    var = sq.sum(axis=axes, keepdims=True) / n
    sqrtvar = np.sqrt(var + eps)
    ivar = 1.0 / sqrtvar
    xhat = xmu * ivar
    out = _c(gamma, x) * xhat + _c(beta, x)
    return out, {"mu": mu, "xmu": xmu, "var": var, "sqrtvar": sqrtvar, "ivar": ivar, "xhat": xhat}


def staged_backward(dy: F, x: F, gamma: F, eps: float) -> tuple[F, F, F]:
    """The graph walked back one local derivative per node (the course's staged backward)."""
    _, cache = _staged(x, gamma, np.zeros_like(gamma), eps)
    axes, n = _axes(x), _count(x)
    xmu, ivar, sqrtvar, xhat = cache["xmu"], cache["ivar"], cache["sqrtvar"], cache["xhat"]
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * xhat).sum(axis=axes)
    dxhat = dy * _c(gamma, x)
    divar = (dxhat * xmu).sum(axis=axes, keepdims=True)
    dxmu1 = dxhat * ivar
    dsqrtvar = -1.0 / sqrtvar**2 * divar
    dvar = 0.5 / sqrtvar * dsqrtvar
    dsq = np.ones_like(x) / n * dvar
    dxmu2 = 2 * xmu * dsq
    dx1 = dxmu1 + dxmu2
    dmu = -dx1.sum(axis=axes, keepdims=True)
    dx2 = np.ones_like(x) / n * dmu
    return dx1 + dx2, dgamma, dbeta


def float32_stats(x: F) -> tuple[F, F]:
    """Two passes with float32 accumulators (NumPy's pairwise float32 sums)."""
    mean = x.mean(axis=_axes(x), dtype=np.float32)
    return mean, ((x - _c(mean, x)) ** 2).mean(axis=_axes(x), dtype=np.float32)


TINY64 = 2.0**-1022  # the smallest normal float64


def ftz(a: F) -> F:
    """a with every subnormal flushed to zero, as XLA on the CPU does (and reads them)."""
    out: F = np.where(np.abs(a) < TINY64, 0.0, a)
    return out


def ftz_forward(x: F, gamma: F, beta: F, eps: float) -> tuple[F, F, F]:
    """The two-pass forward on a platform that flushes subnormals: inputs read as zero,
    every intermediate result flushed."""
    x, gamma, beta = ftz(x), ftz(gamma), ftz(beta)
    axes, n = _axes(x), _count(x)
    mean = ftz(ftz(x.sum(axis=axes)) / n)
    dev = ftz(x - _c(mean, x))
    var = ftz(ftz(ftz(dev * dev).sum(axis=axes)) / n)
    x_hat = ftz(dev / _c(np.sqrt(var + eps), x))
    return ftz(ftz(_c(gamma, x) * x_hat) + _c(beta, x)), mean, var


def ftz_backward(dy: F, x: F, gamma: F, eps: float) -> tuple[F, F, F]:
    """The closed-form backward with every intermediate flushed."""
    dy, x, gamma = ftz(dy), ftz(x), ftz(gamma)
    axes, n = _axes(x), _count(x)
    mean = ftz(ftz(x.sum(axis=axes)) / n)
    dev = ftz(x - _c(mean, x))
    var = ftz(ftz(ftz(dev * dev).sum(axis=axes)) / n)
    s = np.sqrt(var + eps)
    x_hat = ftz(dev / _c(s, x))
    dbeta = ftz(dy.sum(axis=axes))
    dgamma = ftz(ftz(dy * x_hat).sum(axis=axes))
    inner = ftz(ftz(n * dy - _c(dbeta, x)) - ftz(x_hat * _c(dgamma, x)))
    return ftz(_c(ftz(gamma / (n * s)), x) * inner), dgamma, dbeta


def ftz_inference(x: F, gamma: F, beta: F, running_mean: F, running_var: F, eps: float) -> F:
    """Inference with every intermediate flushed."""
    x, gamma, beta = ftz(x), ftz(gamma), ftz(beta)
    running_mean, running_var = ftz(running_mean), ftz(running_var)
    x_r = ftz(ftz(x - _c(running_mean, x)) / _c(np.sqrt(running_var + eps), x))
    return ftz(ftz(_c(gamma, x) * x_r) + _c(beta, x))


def ftz_stats(x: F) -> tuple[F, F]:
    """The flushed forward's statistics."""
    _, mean, var = ftz_forward(x, np.ones(x.shape[1]), np.zeros(x.shape[1]), 1.0)
    return mean, var


HONEST: tuple[Entry, ...] = (
    Entry(
        "welford",
        normalizing_forward(welford_stats),
        closed_form_backward(welford_stats),
        update=pytorch_update(welford_stats),
    ),
    Entry(
        "numpy-var",
        normalizing_forward(numpy_stats),
        closed_form_backward(numpy_stats),
        update=pytorch_update(numpy_stats),
    ),
    Entry(
        "chunked-merge-folded",
        folded_forward,
        closed_form_backward(chunked_stats),
        folded_inference,
        pytorch_update(chunked_stats),
    ),
    Entry("staged-graph", staged_forward, staged_backward),
    Entry(
        "float32-accumulation",
        normalizing_forward(float32_stats),
        closed_form_backward(float32_stats),
        update=pytorch_update(float32_stats),
        dtype="float32",
    ),
    Entry(
        "flush-to-zero",
        ftz_forward,
        ftz_backward,
        ftz_inference,
        pytorch_update(ftz_stats),
    ),
)


# --- mistakes a user could plausibly make ------------------------------------------------------


def _training_inference(x: F, gamma: F, beta: F, running_mean: F, running_var: F, eps: float) -> F:
    """WRONG: inference normalizes with the batch's own statistics (train/eval confusion)."""
    del running_mean, running_var
    return normalizing_forward(plain_stats)(x, gamma, beta, eps)[0]


def _inference_without_eps(
    x: F, gamma: F, beta: F, running_mean: F, running_var: F, eps: float
) -> F:
    """WRONG: y = gamma (x - running_mean) / sqrt(running_var) + beta, eps forgotten."""
    del eps
    with np.errstate(divide="ignore", invalid="ignore"):
        y: F = _c(gamma, x) * (x - _c(running_mean, x)) / _c(np.sqrt(running_var), x)
    return y + _c(beta, x)


def _inference_var_as_std(
    x: F, gamma: F, beta: F, running_mean: F, running_var: F, eps: float
) -> F:
    """WRONG: divides by running_var + eps, the square root forgotten."""
    y: F = _c(gamma, x) * (x - _c(running_mean, x)) / _c(running_var + eps, x)
    return y + _c(beta, x)


def _one_pass_stats(x: F) -> tuple[F, F]:
    """WRONG: var = E[x^2] - E[x]^2 (clamped at 0), which cancels when |mean| >> std."""
    mean = x.mean(axis=_axes(x))
    return mean, np.maximum((x * x).mean(axis=_axes(x)) - mean * mean, 0.0)


def _unbiased_stats(x: F) -> tuple[F, F]:
    """WRONG for normalizing: the unbiased variance n/(n-1) var (np.var(ddof=1))."""
    return x.mean(axis=_axes(x)), x.var(axis=_axes(x), ddof=1)


def _eps_outside(x: F, gamma: F, beta: F, eps: float) -> tuple[F, F, F]:
    """WRONG: y = gamma (x - mean) / (sqrt(var) + eps) + beta."""
    mean, var = plain_stats(x)
    y = _c(gamma, x) * (x - _c(mean, x)) / _c(np.sqrt(var) + eps, x) + _c(beta, x)
    return y, mean, var


def _across_channels(x: F, gamma: F, beta: F, eps: float) -> tuple[F, F, F]:
    """WRONG axis: the statistics of each example over its channels (axis 1 reduced, as a
    layer norm), not of each channel over the batch."""
    mean = x.mean(axis=1, keepdims=True)
    var = x.var(axis=1, keepdims=True)
    y = _c(gamma, x) * (x - mean) / np.sqrt(var + eps) + _c(beta, x)
    good_mean, good_var = plain_stats(x)
    return y, good_mean, good_var


def _momentum_swapped(x: F, running_mean: F, running_var: F, momentum: float) -> tuple[F, F]:
    """WRONG: PyTorch's momentum read as Keras's, new = m old + (1 - m) batch."""
    mean, var = plain_stats(x)
    n = _count(x)
    return (
        momentum * running_mean + (1 - momentum) * mean,
        momentum * running_var + (1 - momentum) * var * (n / (n - 1)),
    )


def _frozen_with_batch_stats(
    dy: F, x: F, gamma: F, running_mean: F, running_var: F, eps: float
) -> tuple[F, F, F]:
    """WRONG: the training-mode backward (batch statistics) used in inference mode."""
    del running_mean, running_var
    return closed_form_backward(plain_stats)(dy, x, gamma, eps)


def _dbeta_averaged(dy: F, x: F, gamma: F, eps: float) -> tuple[F, F, F]:
    """WRONG: dbeta = mean(dy) instead of sum(dy)."""
    dx, dgamma, dbeta = closed_form_backward(plain_stats)(dy, x, gamma, eps)
    return dx, dgamma, dbeta / _count(x)


_PLAIN = Entry("plain", normalizing_forward(plain_stats))


@dataclass(frozen=True)
class Planted:
    """An implementation with one mistake and the property that must fail for it."""

    entry: Entry
    catches: str


PLANTED: tuple[Planted, ...] = (
    Planted(
        replace(_PLAIN, name="inference-ignores-running-stats", inference=_training_inference),
        "inference-formula",
    ),
    Planted(
        replace(_PLAIN, name="inference-ignores-running-stats", inference=_training_inference),
        "inference-per-example",
    ),
    Planted(
        replace(_PLAIN, name="inference-without-eps", inference=_inference_without_eps),
        "inference-formula",
    ),
    Planted(
        replace(_PLAIN, name="inference-var-as-std", inference=_inference_var_as_std),
        "inference-formula",
    ),
    Planted(
        replace(_PLAIN, name="one-pass-variance", forward=normalizing_forward(_one_pass_stats)),
        "forward-accuracy",
    ),
    Planted(
        replace(_PLAIN, name="one-pass-variance", forward=normalizing_forward(_one_pass_stats)),
        "zero-mean-unit-var",
    ),
    Planted(
        replace(_PLAIN, name="unbiased-normalize", forward=normalizing_forward(_unbiased_stats)),
        "zero-mean-unit-var",
    ),
    Planted(replace(_PLAIN, name="eps-outside-sqrt", forward=_eps_outside), "zero-mean-unit-var"),
    Planted(
        replace(_PLAIN, name="statistics-across-channels", forward=_across_channels),
        "zero-mean-unit-var",
    ),
    Planted(
        replace(_PLAIN, name="momentum-swapped", update=_momentum_swapped), "running-stats-formula"
    ),
    Planted(
        replace(_PLAIN, name="running-var-one-pass", update=pytorch_update(_one_pass_stats)),
        "running-stats-formula",
    ),
    Planted(
        replace(
            _PLAIN, name="frozen-backward-batch-stats", frozen_backward=_frozen_with_batch_stats
        ),
        "frozen-backward",
    ),
    Planted(replace(_PLAIN, name="dbeta-averaged", backward=_dbeta_averaged), "gradients-full"),
)


# --- a layer whose forward is not per-channel batch norm, with the exact backward of it -------


def _per_position(x: F, eps: float) -> tuple[F, F]:
    """x_hat and the std of the "Deep Learning from Scratch" layer: x reshaped to (N, -1), each
    column (a (c, h, w) position) normalized over the N examples."""
    flat = x.reshape(x.shape[0], -1)
    centered = flat - flat.mean(axis=0)
    std = np.sqrt((centered**2).mean(axis=0) + eps)
    return (centered / std).reshape(x.shape), std


def per_position_forward(x: F, gamma: F, beta: F, eps: float) -> tuple[F, F, F]:
    """WRONG for batch norm on conv input (statistics per position), as the book writes it."""
    x_hat, _ = _per_position(x, eps)
    mean, var = plain_stats(x)
    return _c(gamma, x) * x_hat + _c(beta, x), mean, var


def per_position_backward(dy: F, x: F, gamma: F, eps: float) -> tuple[F, F, F]:
    """The book's backward: the exact derivative of `per_position_forward`."""
    x_hat, std = _per_position(x, eps)
    flat_hat = x_hat.reshape(x.shape[0], -1)
    dxn = (dy * _c(gamma, x)).reshape(x.shape[0], -1)
    dxc = dxn / std
    dstd = -np.sum(dxn * flat_hat * std / (std * std), axis=0)
    dvar = 0.5 * dstd / std
    dxc = dxc + (2.0 / x.shape[0]) * flat_hat * std * dvar
    dx = dxc - dxc.mean(axis=0)
    return dx.reshape(x.shape), (dy * x_hat).sum(axis=_axes(x)), dy.sum(axis=_axes(x))


PER_POSITION = Entry("deep-learning-from-scratch", per_position_forward, per_position_backward)


def exact_variance(values: list[float]) -> float:
    """The biased variance of `values`, from exactly rounded sums (for the tests' hand cases)."""
    n = len(values)
    mean = math.fsum(values) / n
    return math.fsum((v - mean) ** 2 for v in values) / n
