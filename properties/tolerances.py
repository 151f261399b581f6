"""The tolerance model: how far a correct batch norm in a given dtype may be from the exact result.

Every tolerance in the batch-norm properties comes from the bounds derived here, so that they
are stated once. Notation, per channel with n values, unit roundoff u of the dtype the
implementation computes in (`PRECISIONS`: 2**-53 float64, 2**-24 float32, 2**-11 float16,
2**-8 bfloat16)::

    m = mean(x),  v = mean((x - m)**2),  sd = sqrt(v),  s = sqrt(v + eps),  x_hat = (x - m) / s
    M = max|x|,   kappa = M / s       how large the data are relative to the normalizing scale;
                                      kappa <= |mean|/std + max|x - mean|/std, so a channel with
                                      |mean|/std = 1e8 has kappa ~ 1e8

Accuracy classes. How a correct implementation computes m and v decides how far its x_hat may
be; bnref holds each target to the class of algorithms that are backward stable (`STREAMING`,
the default) and, with `bnref check --strict`, to the corrected two-pass algorithm of the
reference (`TWO_PASS`). Chan, Golub and LeVeque ("Algorithms for computing the sample
variance", The American Statistician 37(3), 1983) give the relative errors of the sum of
squared deviations S = n v with the condition number k = ||x|| / sqrt(S) <= kappa: n u + (n u k)**2
for the two-pass algorithm, n u k for the updating (Welford) and pairwise/merging algorithms, and
n u k**2 for the one-pass E[x^2] - E[x]^2. The bounds below are those, with constants derived
for any summation or merge order.

TWO_PASS (gamma_k = k u / (1 - k u) ~ k u; first order in u):

1. Mean: any summation order gives |m' - m| <= gamma_n M + u|m| <= (n + 1) u M, so the
   deviations x - m' share a common shift dm with |dm| / s <= (n + 1) u kappa.
2. Variance from the deviations: relative error <= gamma_(n+2) + (dm / s)**2 (the cross term
   vanishes because the exact deviations sum to zero).
3. inv_std = 1/sqrt(v + eps): relative error <= half that of the variance, plus 2u.
4. x_hat_i = (x_i - m') * inv_std: |error| <= |dm|/s + |x_hat_i| * (u + relative error of 3).

So  |x_hat'_i - x_hat_i| <= (n + 1) u kappa + |x_hat_i| ((n/2 + 4) u + ((n + 1) u kappa)**2 / 2).

STREAMING: any backward-stable computation of the statistics -- two-pass, Welford's streaming
update, pairwise or chunked merges (Chan, Golub and LeVeque's M = M_a + (M_b - M_a) n_b / n,
S = S_a + S_b + (M_b - M_a)**2 n_a n_b / n in any tree), each value rounded at most K = 2 n + 8
times on its way:

1s. Mean: |m' - m| <= dm = gamma_K M. Welford's M_k = M_(k-1) + (x_k - M_(k-1)) / k rounds
    three times per step, (4/k + 1) u M at step k, and an error made at step k reaches M_n
    damped by k / n: (n/2 + 5) u M in all. A merge tree damps the same way (a node of k values
    weighs k / n in the final mean).
2s. Variance: |v' - v| <= dv = 2 gamma_K M sd + (gamma_K M)**2 + gamma_K v. The increments of
    Welford's S, d_k (x_k - M_k) with d_k = x_k - M_(k-1), use the rounded running mean, so the
    error of M_k (<= (k/2 + 5) u M) enters S once per step multiplied by |d_k| -- first order,
    not squared as in the two-pass form; with sum_k d_k**2 <= 2 S (Welford's identity
    S = sum_k (k - 1)/k d_k**2) and Cauchy-Schwarz, sum_k |d_k| (k/2 + 5) u M
    <= sqrt(2) n (n/2 + 5) u M sd, i.e. |v' - v| <= sqrt(2) (n/2 + 5) u M sd + (n + 6) u v. A
    merge adds the error of (M_b - M_a)**2 n_a n_b / n, 2 |M_b - M_a| |e| n_a n_b / n with |e| the
    error of the two means, and the same Cauchy-Schwarz over the tree (the merge terms sum to
    at most S) gives the same form. 2 gamma_K M sd covers both with a factor >= 2.
3s. inv_std: relative error <= dv / (2 s**2) + 2u
    <= K u kappa sd/s + (K u kappa)**2 / 2 + (K/2 + 4) u.
4s. x_hat as in 4, with the shift K u kappa; and the affine step may be folded, as ONNX
    Runtime and fused kernels do: k = gamma / sqrt(v + eps), y = x k + (beta - m k). Its
    product x k rounds by u |x_i| k, i.e. x_hat_i by u |x_i| / s <= u kappa per element, not as
    a common shift: the exact result for x_i perturbed by u relative, backward stable like the
    statistics. The class allows 2 u kappa per element for it (`affine_error_bound`).

So  |x_hat'_i - x_hat_i| <= K u kappa + 2 u kappa + |x_hat_i| (K u kappa sd/s + (K u kappa)**2/2
+ (K/2 + 5) u), the first term a common shift, the second per element.

The streaming bound contains the two-pass one term by term (K >= n + 1), so a two-pass
implementation passes both, a streaming one passes only this one (its variance errs by ~u kappa,
against (n u kappa)**2 for two-pass), and the one-pass E[x^2] - E[x]^2, whose variance errs by
~n u kappa**2, fails both as soon as kappa >> 4 K (kappa = 1e4, 1e6, 1e8 are drawn on purpose:
at 1e8 its relative error is ~1, against 4 K u kappa <= 5e-5 allowed). `classify_variance`
(`properties.accuracy_props`) measures which class a target's variance falls in.

Each bound below is the first-order bound times SAFETY for the first-order approximations. The
shift-free part (the second term) alone bounds quantities that are blind to a common shift,
such as the variance of x_hat. The checker's own reference values are computed with math.fsum
(exactly rounded sums), so their error (a few u) is added explicitly.

Underflow and flush-to-zero. A result in the subnormal range is off by up to ETA/2 absolutely
(gradual underflow), not by a relative u; each bound adds ETA per operation that may underflow.
A platform that flushes subnormal results (and reads subnormal inputs) as zero -- XLA on the
CPU does -- is off by up to the smallest NORMAL number `Precision.tiny` instead. That is not a
discrepancy of batch norm: wherever an exact input, result or intermediate of a channel lies in
the subnormal range, the bounds add the absolute floor of `flush_floor` (derivation there),
counted in `tiny`; nowhere else, so the bounds keep their teeth on normal-range values.

Lower precision. Every bound above is first order in u with the same structure whatever the
dtype, so an implementation computing in float32 or float16 gets the same bounds with its own u,
ETA and tiny (`Precision` below). The checker itself always computes in float64: its own
roundings keep U64. The inputs a low-precision implementation receives are first made
representable in its dtype (`properties.strategies.cast_case`), so the checker's exact
statistics are those of the very values the implementation computes on. A bound of the form
K u kappa stops saying anything once it reaches |x_hat| (float32 with |mean|/std ~ 3e4 and
n = 512, float16 already near kappa ~ 4): such cases still run, honestly unable to fail, while
the well-conditioned ones keep the bounds tight. Which claims cannot be stated below float64 at
all (the finite-difference gradient checks) is said in `properties.registry`; they are reported
as not applicable there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from numpy.typing import NDArray

Array = NDArray[np.float64]
T = TypeVar("T", bound=np.generic)

U64 = 2.0**-53  # unit roundoff of float64
SAFETY = 2.0  # covers the first-order expansion of gamma_k and the products of error terms
# Gradual underflow: a result in the subnormal range is off by up to ETA/2 absolutely, not by a
# relative u. Data near 1e-159 square into that range, so each bound adds ETA per operation
# that may underflow, scaled by what amplifies it (1/s for x_hat, 1/(var+eps) for var/(var+eps)).
ETA = 2.0**-1074  # the smallest subnormal float64

TWO_PASS = "two-pass"  # the reference's corrected two-pass accuracy: `bnref check --strict`
STREAMING = "streaming"  # any backward-stable statistics (Welford, pairwise, Chan): the default
ACCURACY_CLASSES = (TWO_PASS, STREAMING)
# The tag of the properties whose bounds depend on the accuracy class (they compare the
# statistics, x_hat, y, the moments of y or what is computed from them): --strict changes them.
ACCURACY_CLASS = "accuracy-class"


@dataclass(frozen=True)
class Precision:
    """What rounding in one dtype costs: the constants every bound is written in.

    `max_abs` caps the magnitudes of generated inputs so that no correct implementation
    overflows: float16 ends at 65504, and a float16 sum of n <= 512 squared deviations of values
    with |x| <= 4 (deviations <= 8) stays below 512 * 64 = 32768. `min_eps` is the smallest eps
    that is a normal number of the dtype (float16: 1e-5 is subnormal and 1e-8 rounds to 0).
    `tiny` is the smallest normal number: what a platform that flushes subnormals to zero may
    lose on a subnormal result (`flush_floor`).
    """

    dtype: str
    u: float  # unit roundoff: a rounded result is x (1 + d), |d| <= u
    eta: float  # smallest subnormal: an underflowing result is off by <= eta / 2 absolutely
    max_abs: float  # largest |value| generated for inputs in this dtype
    min_eps: float  # smallest eps given to an implementation in this dtype
    tiny: float  # smallest normal number: a flushed subnormal is off by < tiny absolutely


PRECISIONS: dict[str, Precision] = {
    # IEEE binary64: 53-bit significand, emin = -1022.
    "float64": Precision("float64", U64, ETA, math.inf, 0.0, 2.0**-1022),
    # IEEE binary32: 24-bit significand, emin = -126, so the smallest subnormal is 2**-149.
    "float32": Precision("float32", 2.0**-24, 2.0**-149, math.inf, 0.0, 2.0**-126),
    # IEEE binary16: 11-bit significand, emin = -14, smallest subnormal 2**-24, max 65504.
    "float16": Precision("float16", 2.0**-11, 2.0**-24, 4.0, 1e-3, 2.0**-14),
    # bfloat16: 8-bit significand (u = 2**-8), float32's exponent range (emin = -126, smallest
    # subnormal 2**-133), so no overflow guard and eps 1e-8 is a normal number. NumPy knows it
    # through ml_dtypes (`precision` loads it).
    "bfloat16": Precision("bfloat16", 2.0**-8, 2.0**-133, math.inf, 0.0, 2.0**-126),
}
UNIT_ROUNDOFF = {name: p.u for name, p in PRECISIONS.items()}
SMALLEST_SUBNORMAL = {name: p.eta for name, p in PRECISIONS.items()}
SMALLEST_NORMAL = {name: p.tiny for name, p in PRECISIONS.items()}


def precision(dtype: str) -> Precision:
    """The `Precision` of `dtype` (one of PRECISIONS); ValueError naming dtype otherwise."""
    if dtype not in PRECISIONS:
        raise ValueError(f"dtype must be one of {tuple(PRECISIONS)}, got {dtype!r}")
    if dtype == "bfloat16":
        # Importing ml_dtypes registers the name "bfloat16" with NumPy, which the strategies
        # round inputs to (`properties.strategies.cast_case`).
        import ml_dtypes  # noqa: F401, PLC0415 -- an optional dependency, for bfloat16 only
    return PRECISIONS[dtype]


def check_accuracy(accuracy: str) -> str:
    """`accuracy` if it is one of ACCURACY_CLASSES; ValueError naming it otherwise."""
    if accuracy not in ACCURACY_CLASSES:
        raise ValueError(f"accuracy must be one of {ACCURACY_CLASSES}, got {accuracy!r}")
    return accuracy


def accuracy_class(impl: object) -> str:
    """The class whose bounds `impl` is held to: TWO_PASS if it carries `strict_accuracy = True`
    (`properties.adapter.StrictAccuracy`, `bnref check --strict`), STREAMING otherwise."""
    return TWO_PASS if getattr(impl, "strict_accuracy", False) is True else STREAMING


def roundings(count: int, accuracy: str = TWO_PASS) -> int:
    """K, the roundings a value may pass through on its way into the mean: n + 1 for a
    summation (TWO_PASS), 2 n + 8 for any backward-stable update or merge order (STREAMING)."""
    return count + 1 if check_accuracy(accuracy) == TWO_PASS else 2 * count + 8


@dataclass(frozen=True)
class ExactStats:
    """Per-channel statistics computed with exactly rounded sums; shapes broadcast against x.

    `min_abs` and `min_dev` are the smallest nonzero |x| and |x - mean| of each channel (inf if
    there is none) and `mixed_signs` whether it holds values of both signs: they say where a
    subnormal input, partial sum or deviation can occur (`flush_floor`).
    """

    mean: Array
    var: Array
    scale: Array  # s = sqrt(var + eps)
    x_hat: Array
    count: int
    kappa: Array  # max|x| / s per channel
    dev_ratio: Array  # max|x - mean| / s per channel
    axis: int
    min_abs: Array
    min_dev: Array
    mixed_signs: NDArray[np.bool_]


def _channel_moved(x: NDArray[T], axis: int) -> NDArray[T]:
    """x with the channel axis first and everything else flattened: shape (C, n)."""
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


def _smallest_nonzero(rows: Array) -> Array:
    """The smallest nonzero |value| of each row, inf where a row is all zeros."""
    magnitudes = np.abs(rows)
    out: Array = np.min(np.where(magnitudes > 0, magnitudes, np.inf), axis=1, initial=np.inf)
    return out


def exact_stats(x: Array, axis: int, eps: float) -> ExactStats:
    """Mean and biased variance per channel to within a few u, whatever the conditioning.

    The mean is fsum(x)/n corrected once by the fsum of the residuals; the variance is
    mean(d**2) - mean(d)**2 over the deviations d = x - mean, all sums exactly rounded. The
    second term removes the shift (<= u|m|) that rounding the mean to float64 leaves in d, so
    a constant channel gets exactly 0 and the variance is within a few u of the true one.
    """
    ax = axis % x.ndim
    rows = _channel_moved(x, ax)
    n = rows.shape[1]
    mean0 = np.array([math.fsum(r) / n for r in rows])
    # One correction step: the residual mean recovers the rounding of the sum and the division.
    shift = np.array([math.fsum(r - m) / n for r, m in zip(rows, mean0, strict=True)])
    mean = mean0 + shift
    # Subtracting mean(d)**2 cancels the shift left by rounding the mean to float64.
    var = np.array(
        [
            max(math.fsum((r - m) ** 2) / n - (math.fsum(r - m) / n) ** 2, 0.0)
            for r, m in zip(rows, mean, strict=True)
        ]
    )
    scale = np.sqrt(var + eps)
    shape = [1] * x.ndim
    shape[ax] = x.shape[ax]
    x_hat = (x - mean.reshape(shape)) / scale.reshape(shape)
    kappa = np.max(np.abs(rows), axis=1) / scale
    deviations = rows - mean[:, None]
    dev_ratio = np.max(np.abs(deviations), axis=1) / scale
    mixed = np.any(rows > 0, axis=1) & np.any(rows < 0, axis=1)
    return ExactStats(
        mean,
        var,
        scale,
        x_hat,
        n,
        kappa,
        dev_ratio,
        ax,
        _smallest_nonzero(rows),
        _smallest_nonzero(deviations),
        mixed,
    )


def expand(stats: ExactStats, vector: Array, ndim: int) -> Array:
    """Reshape a per-channel vector to broadcast along stats.axis of an ndim-dimensional array."""
    shape = [1] * ndim
    shape[stats.axis] = vector.size
    return vector.reshape(shape)


def mean_shift_bound(stats: ExactStats, u: float = U64, accuracy: str = TWO_PASS) -> Array:
    """Bound on |dm| / s, the common shift of x_hat from the computed mean: K u kappa, with
    K = `roundings(n, accuracy)` ((n + 1) u kappa for TWO_PASS, step 1; 1s for STREAMING)."""
    return roundings(stats.count, accuracy) * u * stats.kappa


def scale_error_bound(stats: ExactStats, u: float = U64, accuracy: str = TWO_PASS) -> Array:
    """Relative error of a computed x_hat that is not a common shift (steps 2-4 or 2s-4s).

    TWO_PASS: (n/2 + 4) u + shift**2 / 2. STREAMING: K u kappa sd/s + (K u kappa)**2 / 2
    + (K/2 + 4) u, the variance's first-order error 2 K u M sd halved by the square root.
    """
    shift = mean_shift_bound(stats, u, accuracy)
    if accuracy == TWO_PASS:
        return (stats.count / 2 + 4) * u + shift**2 / 2
    k = roundings(stats.count, accuracy)
    sd_over_s = np.sqrt(stats.var) / stats.scale
    out: Array = shift * sd_over_s + shift**2 / 2 + (k / 2 + 4) * u
    return out


def _subnormal(values: Array, limit: float) -> NDArray[np.bool_]:
    """Where 0 < |values| < limit."""
    magnitudes = np.abs(values)
    out: NDArray[np.bool_] = (magnitudes > 0) & (magnitudes < limit)
    return out


@dataclass(frozen=True)
class FlushBudget:
    """What flushing subnormals to zero may cost one channel's statistics (see `flush_budget`):
    absolute errors, (C,) each, and whether anything of the channel can be subnormal."""

    shift: Array  # of every deviation x_i - m' (a common shift)
    var: Array  # of the variance
    touched: NDArray[np.bool_]  # an input, partial sum, deviation, square, var or x_hat


def affine_error_bound(stats: ExactStats, u: float = U64, accuracy: str = TWO_PASS) -> Array:
    """Per channel, what the affine step may add to each x_hat beyond a common shift and a
    common scale (step 4s): 0 for TWO_PASS, whose x_hat = (x - m') inv_std rounds relative to
    |x_hat|; 2 u kappa for STREAMING, which admits the folded y = x k + (beta - m k), off by
    u |x_i| k per element (|x_i| / s <= kappa)."""
    if check_accuracy(accuracy) == TWO_PASS:
        return np.zeros_like(stats.kappa)
    out: Array = 2 * u * stats.kappa
    return out


def flush_budget(stats: ExactStats, tiny: float, u: float = U64) -> FlushBudget:
    """The flush-to-zero floor of each channel's statistics; `tiny` is the dtype's smallest
    normal number, 0 for no floor (all zeros).

    A platform that flushes reads a subnormal input as 0 and returns 0 for a subnormal result:
    each such value is off by < tiny absolutely (gradual underflow: < ETA/2). Per channel, with
    D = max|x - m| and the exact values deciding what can be subnormal (a margin of 4 tiny
    covers their own roundings; a computed value that crosses into the range from further out
    is off by more than tiny already, which the shift and scale bounds cover):

    * an input 0 < |x_i| < tiny, read as 0: x_i and the mean move by < tiny each, the variance
      by 2 |x_i - m| tiny / n per such value, <= 2 D tiny in all (with the deviation: 4 D tiny);
    * a partial sum of the mean or the mean itself subnormal (values of both signs among which
      one is below tiny / u -- only then can a sum of them cancel below tiny, since a sum of
      floats is a multiple of the smallest one's spacing -- or 0 < |m| < 4 tiny): the n partial
      sums lose < n tiny, the mean < tiny more: 2 tiny in the mean;
    * a deviation 0 < |x_i - m| < 4 tiny flushed: tiny in that deviation, 2 D tiny in the
      variance; a square (x_i - m)**2 < 4 tiny flushed, and the partial sums of the squares:
      2 tiny in the variance; the variance itself < 4 tiny flushed: tiny.

    So the deviations share a shift <= tiny (2 [input] + 2 [sums] + [deviation]) and the
    variance errs by <= tiny (4 D [input] + 2 D [deviation] + 2 [square] + [variance]).
    """
    zeros = np.zeros_like(stats.var)
    if tiny <= 0:
        return FlushBudget(zeros, zeros, zeros > 0)
    limit = 4 * tiny
    dev = stats.dev_ratio * stats.scale  # D
    inputs = stats.min_abs < tiny
    sums = (stats.mixed_signs & (stats.min_abs < tiny / u)) | _subnormal(stats.mean, limit)
    deviations = stats.min_dev < limit
    squares = stats.min_dev < math.sqrt(limit)
    variance = _subnormal(stats.var, limit)
    x_hat = np.any(_channel_moved(_subnormal(stats.x_hat, limit), stats.axis), axis=1)
    shift = tiny * (2.0 * inputs + 2.0 * sums + 1.0 * deviations)
    var = tiny * (4 * dev * inputs + 2 * dev * deviations + 2.0 * squares + 1.0 * variance)
    touched = inputs | sums | deviations | squares | variance | x_hat
    return FlushBudget(shift, var, touched)


def flush_floor(stats: ExactStats, ndim: int, tiny: float, u: float = U64) -> Array:
    """What flushing subnormals to zero may add to x_hat, per element (0 where nothing of the
    channel is subnormal): shift / s + |x_hat_i| var / (2 s**2) with the `flush_budget` of the
    channel, plus tiny where x_hat_i itself is subnormal (0 < |x_hat_i| < 4 tiny)."""
    if tiny <= 0:
        return np.zeros_like(stats.x_hat)
    budget = flush_budget(stats, tiny, u)
    xh = np.abs(stats.x_hat)
    own = np.where(_subnormal(xh, 4 * tiny), tiny, 0.0)
    s = expand(stats, stats.scale, ndim)
    out: Array = (
        expand(stats, budget.shift, ndim) / s
        + xh * expand(stats, budget.var, ndim) / (2 * s**2)
        + own
    )
    return out


def flush_floor_y(y_terms: Array, tiny: float) -> Array:
    """tiny for each element of each array in `y_terms` (e.g. gamma x_hat and y) whose exact
    value is subnormal (0 < |value| < 4 tiny): a flushed product or sum is off by < tiny."""
    if tiny <= 0:
        return np.zeros_like(y_terms[0])
    out: Array = tiny * np.sum(_subnormal(y_terms, 4 * tiny), axis=0)
    return out


def x_hat_bound(
    stats: ExactStats,
    ndim: int,
    u: float = U64,
    eta: float = ETA,
    *,
    accuracy: str = TWO_PASS,
    tiny: float = 0.0,
) -> Array:
    """Per-element bound on |x_hat' - x_hat| for any implementation of unit roundoff u,
    smallest subnormal eta and accuracy class `accuracy` (float64 two-pass by default), shaped
    like x; `tiny` > 0 (the dtype's smallest normal number) adds the flush-to-zero floor.

    Includes the checker's own x_hat rounding (2u|x_hat| + u kappa), the underflow of the
    n + 4 operations that form x - mean, amplified by 1/s, and for STREAMING the per-element
    error of a folded affine step (`affine_error_bound`).
    """
    underflow = (stats.count + 4) * eta / stats.scale
    shift = expand(stats, mean_shift_bound(stats, u, accuracy) + u * stats.kappa + underflow, ndim)
    rel = expand(stats, scale_error_bound(stats, u, accuracy) + 2 * u, ndim)
    affine = expand(stats, affine_error_bound(stats, u, accuracy), ndim)
    flush = flush_floor(stats, ndim, tiny, u)
    return SAFETY * (shift + affine + np.abs(stats.x_hat) * rel + flush)


def underflow_bound(stats: ExactStats, weight: Array | float = 1.0, eta: float = ETA) -> Array:
    """Absolute error a per-channel statistic of y may pick up from gradual underflow.

    n + 4 operations may each lose ETA/2; var/(var+eps) divides the rounding of a subnormal
    variance by var + eps, so its expected value carries ETA (n + 4) / (var + eps) more.
    `weight` scales it (gamma**2 for a variance of y).
    """
    amplify = 1.0 + 1.0 / stats.scale**2  # s**2 = var + eps
    return SAFETY * (stats.count + 4) * eta * amplify * (1.0 + np.asarray(weight))


def per_channel_max(values: Array, stats: ExactStats) -> Array:
    """Maximum over the reduced axes of an array shaped like x: one value per channel."""
    maxima: Array = np.max(_channel_moved(values, stats.axis), axis=1)
    return maxima


def channel_rows(values: Array, stats: ExactStats) -> Array:
    """An array shaped like x as (C, n) rows, one per channel."""
    return _channel_moved(values, stats.axis)


def y_bound(
    stats: ExactStats,
    gamma: Array,
    beta: Array,
    u: float = U64,
    eta: float = ETA,
    *,
    accuracy: str = TWO_PASS,
    tiny: float = 0.0,
) -> Array:
    """Bound on |y' - y| for y = gamma x_hat + beta at unit roundoff u: |gamma| times the x_hat
    bound, plus the rounding of the product and the sum (u each, relative to their magnitudes),
    one underflow (eta) and, for tiny > 0, the flush of a subnormal product or sum."""
    nd = stats.x_hat.ndim
    g = expand(stats, gamma, nd)
    gx = g * stats.x_hat
    y = gx + expand(stats, beta, nd)
    flush = flush_floor_y(np.stack([gx, y]), tiny)
    bound: Array = np.abs(g) * x_hat_bound(
        stats, nd, u, eta, accuracy=accuracy, tiny=tiny
    ) + SAFETY * (u * (np.abs(gx) + np.abs(y)) + eta + flush)
    return bound


def narrow_x_hat_bound(
    stats: ExactStats,
    u: float,
    eta: float,
    eps: float,
    *,
    accuracy: str = TWO_PASS,
    tiny: float = 0.0,
) -> Array:
    """`x_hat_bound` (u, eta, accuracy, tiny) plus what a narrow dtype (float32, float16) adds,
    times SAFETY:

    eps rounded in the dtype, u/2 |x_hat| relative; a variance that underflows, (n + 2) eta / 2
    absolute, i.e. |x_hat| (n + 2) eta / (2 (v + eps)); a mean of values near the subnormal
    range, off by eta/2 more, a common shift eta / (2 s) in x_hat; x_hat itself subnormal, eta/2.
    """
    nd = stats.x_hat.ndim
    xh = np.abs(stats.x_hat)
    v = expand(stats, stats.var, nd)
    s = expand(stats, stats.scale, nd)
    narrow = xh * (u / 2 + (stats.count + 2) * eta / (2 * (v + eps))) + eta * (1 / s + 1) / 2
    bound: Array = x_hat_bound(stats, nd, u, eta, accuracy=accuracy, tiny=tiny) + SAFETY * narrow
    return bound
