"""Properties of the training machinery: each layer's backward against central differences,
dropout's statistics and masks, and the whole network's gradient.

These are claims about the reference itself (`reference.layers`, `reference.network`): a
check's `impl` argument is not used. All arithmetic is float64.

Notation: u = 2**-53; g_n = n u / (1 - n u), the relative bound of a sum or dot product of n
terms in any order (Higham, Accuracy and Stability of Numerical Algorithms, 2002, Lemma 3.1
and Sec. 3.1); c3 = (3u)**(1/3) = 6.9e-6, gradcheck's relative step; SAFETY = 2
(`properties.tolerances`, for the first-order expansions and the move of every magnitude
within a step). E_F = 4 ulp = 8u, the assumed relative error of exp, log and log1p (glibc
documents <= 1 ulp on x86-64; NumPy's own SIMD loops are accurate to a few ulp;
`tests/test_layers.py` measures NumPy's against 50-digit mpmath). sqrt and + - * / are
correctly rounded (IEEE 754): u each.

Layer bounds (`reference.gradcheck.full_check`, tolerance 0, per-element atol). Element j of an
input is moved by +-h_j. If every evaluation of L = sum(v * f) is within E_L of its exact
value, the central difference errs by

    T_j         truncation, h_j**2 / 6 * max |d3 L / dx_j3| along the step
  + E_L / h_j   two evaluations' errors over the width 2 h_j
  + 2u |g_j|    the width (x + h) - (x - h) and the division round once each

and the analytic gradient by A_j, its own rounding. So atol_j = SAFETY (T_j + E_L/h_j + A_j) +
2u |g_j|, and full_check passes input k when ||a_k - n_k|| <= ||atol_k||: the relative error
||a - n|| / (||a|| + ||n||) stays below the reported tolerance ||atol|| / (||a|| + ||n||). E_L
always includes u sum|v f| + u |L| (gradcheck rounds each product v f and then the exactly
rounded fsum). Per layer (the derivations are in each check's docstring):

    affine        linear in x, in W and in b: T = 0; E_L from the dot products (g_(in+1))
    relu          linear on each side of 0; steps h_j = c3 |x_j| never reach 0: T = 0
    sigmoid       |sigmoid'''| <= 1/8
    softmax CE    |d3 logsumexp / dz_k3| = |p (1 - p) (1 - 2p)| <= sqrt(3)/18 = 0.0962
    sigmoid CE    |d3 softplus| = |sigmoid''| <= sqrt(3)/18
    batch norm    train: `properties.gradient_props` (its own derivation; fast check) on the layer;
                  frozen/eval: linear in x, gamma and beta: T = 0
    dropout       linear in x for a fixed mask: T = 0
    weight decay  quadratic: the central difference of a quadratic is exact, T = 0

Whole network (`network-gradient`): L is a chain of the layers above, so its rounding E_L is
bounded by propagating absolute error bounds forward (`_network_rounding`), and its third
derivative is not bounded a priori but estimated by Richardson extrapolation: with D(h) the
central difference at step h, D(h) = g + c h**2 + O(h**4), so c h**2 = (D(2h) - D(h)) / 3 up to
the rounding of both, and |D(h) - g| <= |D(2h) - D(h)| / 3 + 1.5 E_L / h (the O(h**4) rest is
~(c3)**2 = 5e-11 of the c h**2 term, inside SAFETY). The analytic gradient's own rounding (a
few g_n of the same magnitudes) is not added: it is below E_L / h by the factor ~ h / (n u)
~ 1e9 / n, and leaving it out only makes the check stricter. ReLU is not differentiable at 0:
a case where any evaluation changes the sign pattern of a ReLU input is discarded (Hypothesis
`assume`), since a central difference across a kink measures nothing.

Dropout statistics. Under the claim, each unit j is kept in each of N independent draws with
probability 1 - p, so the number of draws K_j that keep it is Binomial(N, 1 - p) exactly and
the sample mean of the inverted form's output is x_j K_j / (N (1 - p)). The acceptance region
is the central interval of K_j with tail probability ALPHA / (2 D) on each side (D units,
Bonferroni over the units): a correct implementation fails one example with probability at
most ALPHA = 1e-9, i.e. at most 1e-6 over the 1000 examples of the thorough profile. The
example's seed is fixed, so a run is reproducible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st
from numpy.typing import NDArray

from properties.adapter import (
    Array,
    BackwardOutput,
    ForwardOutput,
    Implementation,
    ReferenceImplementation,
)
from properties.framework import Measurement, Property
from properties.gradient_props import check_gradients_fast, gradient_cases
from properties.strategies import EPS_VALUES, BatchCase, layouts
from properties.tolerances import SAFETY, U64, exact_stats, x_hat_bound
from reference import network as net
from reference.conventions import CONVENTIONS
from reference.gradcheck import (
    DEFAULT_RELATIVE_STEP,
    GradcheckReport,
    default_step,
    full_check,
    numeric_gradients,
    relative_error,
)
from reference.layers import (
    BatchNormConfig,
    BatchNormState,
    DropoutKind,
    affine_backward,
    affine_forward,
    batch_norm_layer_backward,
    batch_norm_layer_forward,
    dropout_backward,
    dropout_forward,
    initial_state,
    l2_penalty,
    l2_penalty_gradient,
    relu_backward,
    relu_forward,
    sigmoid,
    sigmoid_backward,
    sigmoid_cross_entropy_backward,
    sigmoid_cross_entropy_forward,
    sigmoid_forward,
    softmax,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from reference.layers.dropout import KINDS
from reference.running_stats import RunningStats

U = U64
C3 = DEFAULT_RELATIVE_STEP
LIBM_ULPS = 4
E_F = LIBM_ULPS * 2 * U  # relative error of exp, log, log1p (one ulp is <= 2u relative)
CUMULANT3_MAX = math.sqrt(3) / 18  # max |p (1-p) (1-2p)|: logsumexp''' along z_k, softplus'''
SIGMOID3_MAX = 1 / 8  # max |sigmoid'''| = max |s(1-s)(1-6s(1-s))|, at x = 0
ALPHA = 1e-9  # false-alarm probability of one dropout-statistics example (module docstring)
DRAWS = 2000  # draws per unit in the dropout statistics
SCALES = (1e-3, 0.1, 1.0, 30.0)  # magnitudes of the random arrays
SEEDS = st.integers(0, 2**32 - 1)


def g_n(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u)."""
    return n * U / (1 - n * U)


def _sum(values: Array) -> float:
    return math.fsum(np.asarray(values, dtype=np.float64).ravel().tolist())


def _lists(values: Sequence[Array | None]) -> str:
    return ", ".join("None" if v is None else f"np.array({v.tolist()!r})" for v in values)


def _gradcheck_measurements(report: GradcheckReport, layer: str) -> list[Measurement]:
    """One Measurement per input: its relative error and the tolerance ||atol|| / scale."""
    out = []
    for name, err in report.relative_errors.items():
        label = f"{layer} {name} relative error"
        if name == report.worst_input and not report.passed:
            label += (
                f", worst element {name}{list(report.worst_index)}: analytic "
                f"{report.analytic!r}, numeric {report.numeric!r}"
            )
        out.append(Measurement(label, err, report.tolerances[name]))
    return out


def _atol(e_l: float, steps: Array, trunc: Array | float, analytic: Array, grad: Array) -> Array:
    """SAFETY (T + E_L / h + A) + 2u |g|, per element (module docstring)."""
    atol: Array = SAFETY * (trunc + e_l / steps + analytic) + 2 * U * np.abs(grad)
    return atol


def _run(
    layer: str,
    f: Callable[..., Any],
    vjp: Callable[..., Sequence[Array]],
    inputs: Sequence[Array],
    *,
    upstream: Array | float,
    names: Sequence[str],
    steps: Sequence[Array],
    atols: Sequence[Array],
) -> list[Measurement]:
    report = full_check(
        f,
        vjp,
        inputs,
        upstream=upstream,
        names=names,
        step=list(steps),
        tolerance=0.0,
        atol=list(atols),
    )
    return _gradcheck_measurements(report, layer)


def _random(rng: np.random.Generator, shape: tuple[int, ...], scale: float) -> Array:
    out: Array = scale * rng.standard_normal(shape)
    return out


# --- affine -------------------------------------------------------------------------------


@dataclass(frozen=True)
class AffineCase:
    """x, W (out, in), b (out,) or None, the layout, and the upstream gradient dy."""

    x: Array
    W: Array
    b: Array | None
    feature_axis: int
    dy: Array

    def __repr__(self) -> str:
        return (
            f"AffineCase({_lists([self.x, self.W, self.b])}, feature_axis={self.feature_axis}, "
            f"dy={_lists([self.dy])})"
        )


@st.composite
def affine_cases(draw: st.DrawFn) -> AffineCase:
    """1-6 examples, 1-5 inputs and outputs, either layout, with or without a bias."""
    fa = draw(st.sampled_from([0, 1]))
    n, fan_in, fan_out = draw(st.integers(1, 6)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sx, sw, sb = (draw(st.sampled_from(SCALES)) for _ in range(3))
    rng = np.random.default_rng(draw(SEEDS))
    x = _random(rng, (n, fan_in) if fa == 1 else (fan_in, n), sx)
    w = _random(rng, (fan_out, fan_in), sw)
    b = _random(rng, (fan_out,), sb) if draw(st.booleans()) else None
    dy = rng.standard_normal((n, fan_out) if fa == 1 else (fan_out, n))
    return AffineCase(x, w, b, fa, dy)


def check_affine_gradient(_impl: Implementation, case: AffineCase) -> list[Measurement]:
    """dx, dW, db of `affine_backward` against central differences of `affine_forward`.

    In the (N, features) layout (the other is its transpose): y_ij = sum_k x_ik W_jk + b_j errs
    by g_(in+1) (|x| |W|^T + |b|)_ij, so E_L = sum |dy| g_(in+1) (|x||W|^T + |b|) + u sum|dy y|
    + u |L|. L is linear in each single element: T = 0. A: dx = dy W errs by g_out |dy||W|,
    dW = dy^T x by g_N |dy|^T |x|, db = sum dy by g_N sum |dy|.
    """
    fa, has_b = case.feature_axis, case.b is not None
    xe, dye = (case.x, case.dy) if fa == 1 else (case.x.T, case.dy.T)
    n, fan_in = xe.shape
    fan_out = case.W.shape[0]
    b_abs = np.abs(case.b) if case.b is not None else 0.0
    y_abs = np.abs(xe) @ np.abs(case.W).T + b_abs
    y = xe @ case.W.T + (case.b if case.b is not None else 0.0)
    e_l = (
        _sum(np.abs(dye) * g_n(fan_in + 1) * y_abs)
        + U * _sum(np.abs(dye * y))
        + U * abs(_sum(dye * y))
    )
    a_x = g_n(fan_out) * (np.abs(dye) @ np.abs(case.W))
    a_x = a_x if fa == 1 else a_x.T
    a_w = g_n(n) * (np.abs(dye).T @ np.abs(xe))
    a_b = g_n(n) * np.sum(np.abs(dye), axis=0)
    grads = affine_backward(case.dy, affine_forward(case.x, case.W, case.b, feature_axis=fa)[1])
    inputs = [case.x, case.W] + ([case.b] if case.b is not None else [])
    names = ["dx", "dW"] + (["db"] if has_b else [])
    analytic = [grads.dx, grads.dW] + ([grads.db] if grads.db is not None else [])
    bounds = [a_x, a_w, a_b]
    steps = [default_step(v) for v in inputs]
    atols = [_atol(e_l, h, 0.0, a, g) for h, a, g in zip(steps, bounds, analytic, strict=False)]

    def f(x: Array, w: Array, *b: Array) -> Array:
        return affine_forward(x, w, b[0] if b else None, feature_axis=fa)[0]

    def vjp(dy: Array, x: Array, w: Array, *b: Array) -> tuple[Array, ...]:
        g = affine_backward(dy, affine_forward(x, w, b[0] if b else None, feature_axis=fa)[1])
        return (g.dx, g.dW) + ((g.db,) if g.db is not None else ())

    return _run("affine", f, vjp, inputs, upstream=case.dy, names=names, steps=steps, atols=atols)


# --- activations --------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationCase:
    """x and dy of one shape; for ReLU no element of x is 0 (the derivative there is a
    convention, not a limit)."""

    x: Array
    dy: Array

    def __repr__(self) -> str:
        return f"ActivationCase({_lists([self.x, self.dy])})"


@st.composite
def relu_cases(draw: st.DrawFn) -> ActivationCase:
    """x = sign * 10**e, e uniform in [-3, 3] (never 0), any 2-D shape up to 6 x 5."""
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 5)))
    rng = np.random.default_rng(draw(SEEDS))
    x = rng.choice([-1.0, 1.0], size=shape) * 10.0 ** rng.uniform(-3, 3, size=shape)
    return ActivationCase(x, rng.standard_normal(shape))


@st.composite
def sigmoid_cases(draw: st.DrawFn) -> ActivationCase:
    """x of scale 1e-3 .. 30 (saturated far into both tails), any 2-D shape up to 6 x 5."""
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 5)))
    rng = np.random.default_rng(draw(SEEDS))
    return ActivationCase(
        _random(rng, shape, draw(st.sampled_from(SCALES))), rng.standard_normal(shape)
    )


def check_relu_gradient(_impl: Implementation, case: ActivationCase) -> list[Measurement]:
    """`relu_backward` against central differences with h_j = c3 |x_j| < |x_j|: the step never
    reaches the kink, L is linear within it (T = 0), relu is exact and so is its backward
    (A = 0); E_L = u sum|dy y| + u |L| (the products and the fsum)."""
    y = np.where(case.x > 0, case.x, 0.0)
    e_l = U * _sum(np.abs(case.dy * y)) + U * abs(_sum(case.dy * y))
    steps = C3 * np.abs(case.x)
    grad = relu_backward(case.dy, relu_forward(case.x)[1]).dx
    atol = _atol(e_l, steps, 0.0, np.zeros_like(grad), grad)

    def vjp(dy: Array, x: Array) -> tuple[Array]:
        return (relu_backward(dy, relu_forward(x)[1]).dx,)

    return _run(
        "relu",
        lambda x: relu_forward(x)[0],
        vjp,
        [case.x],
        upstream=case.dy,
        names=["dx"],
        steps=[steps],
        atols=[atol],
    )


def check_sigmoid_gradient(_impl: Implementation, case: ActivationCase) -> list[Measurement]:
    """`sigmoid_backward` against central differences.

    sigmoid = 1/(1 + exp(-x)) errs by E_F + 2u relative (exp, then + and / once each), so
    E_L = sum |dy| (E_F + 2u) s + u sum|dy s| + u |L|; T_j = h_j**2/6 |dy_j| / 8; the backward
    dy * s(x) * s(-x) errs by A_j = |g_j| (2 E_F + 6u).
    """
    s = sigmoid(case.x)
    e_l = _sum(np.abs(case.dy) * (E_F + 2 * U) * s) + U * _sum(np.abs(case.dy * s))
    e_l += U * abs(_sum(case.dy * s))
    steps = default_step(case.x)
    grad = sigmoid_backward(case.dy, sigmoid_forward(case.x)[1]).dx
    trunc = steps**2 / 6 * np.abs(case.dy) * SIGMOID3_MAX
    atol = _atol(e_l, steps, trunc, np.abs(grad) * (2 * E_F + 6 * U), grad)

    def vjp(dy: Array, x: Array) -> tuple[Array]:
        return (sigmoid_backward(dy, sigmoid_forward(x)[1]).dx,)

    return _run(
        "sigmoid",
        lambda x: sigmoid_forward(x)[0],
        vjp,
        [case.x],
        upstream=case.dy,
        names=["dx"],
        steps=[steps],
        atols=[atol],
    )


# --- output losses ------------------------------------------------------------------------


@dataclass(frozen=True)
class LossCase:
    """Scores (2-D), labels (class indices, one-hot rows or 0/1 labels), the class axis and
    the scalar upstream gradient v."""

    scores: Array
    labels: NDArray[Any]
    class_axis: int
    v: float

    def __repr__(self) -> str:
        return (
            f"LossCase({_lists([self.scores])}, np.array({self.labels.tolist()!r}), "
            f"class_axis={self.class_axis}, v={self.v!r})"
        )


@st.composite
def softmax_cases(draw: st.DrawFn) -> LossCase:
    """1-6 examples, 2-5 classes, scores of scale 1e-3 .. 30, labels as indices or one-hot."""
    axis = draw(st.sampled_from([0, 1]))
    n, k = draw(st.integers(1, 6)), draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(SEEDS))
    z = _random(rng, (n, k), draw(st.sampled_from(SCALES)))
    idx = rng.integers(0, k, n)
    labels: NDArray[Any] = idx
    if draw(st.booleans()):
        labels = np.eye(k)[idx] if axis == 1 else np.eye(k)[idx].T
    return LossCase(z if axis == 1 else z.T, labels, axis, float(rng.standard_normal()))


@st.composite
def sigmoid_loss_cases(draw: st.DrawFn) -> LossCase:
    """1-6 examples, 1-3 outputs, logits of scale 1e-3 .. 30, 0/1 labels."""
    axis = draw(st.sampled_from([0, 1]))
    n, k = draw(st.integers(1, 6)), draw(st.integers(1, 3))
    rng = np.random.default_rng(draw(SEEDS))
    z = _random(rng, (n, k), draw(st.sampled_from(SCALES)))
    y = rng.integers(0, 2, (n, k)).astype(np.float64)
    if axis == 0:
        z, y = z.T, y.T
    return LossCase(z, y, axis, float(rng.standard_normal()))


def _scalar(value: float) -> Array:
    return np.array(value)


def check_softmax_cross_entropy_gradient(
    _impl: Implementation, case: LossCase
) -> list[Measurement]:
    """`softmax_cross_entropy_backward` against central differences of the mean loss.

    Per example i, with shifted = z - max z (error u|shifted|), S = sum exp(shifted) (relative
    error rS = E_F + u max|shifted| + g_K), log p = shifted - log S errs by
    r = u|shifted| + rS + E_F log S + u|log p|; the one-hot selection is exact and
    fsum(.)/N adds 2u|loss|: E_L = |v| (sum_i r_(i,y_i) / N + 2u |loss|) + 2u |v loss|.
    T_j = h_j**2/6 |v| / N * sqrt(3)/18. A: p = exp(log p) errs by p (E_F + r), then p - t,
    / N and * v by u each: A = |v| / N (p (E_F + r) + u |p - t|) + 2u |g|.
    """
    axis = case.class_axis
    z = case.scores if axis == 1 else case.scores.T
    loss, cache = softmax_cross_entropy_forward(case.scores, case.labels, class_axis=axis)
    p = cache.probs if axis == 1 else cache.probs.T
    t = cache.targets if axis == 1 else cache.targets.T
    n, k = z.shape
    shifted = z - np.max(z, axis=1, keepdims=True)
    big_s = np.sum(np.exp(shifted), axis=1, keepdims=True)
    rel_s = E_F + U * np.max(np.abs(shifted), axis=1, keepdims=True) + g_n(k)
    logp = shifted - np.log(big_s)
    r = U * np.abs(shifted) + rel_s + E_F * np.log(big_s) + U * np.abs(logp)
    v = case.v
    e_l = abs(v) * (_sum(t * r) / n + 2 * U * abs(loss)) + 2 * U * abs(v * loss)
    grad = v * softmax_cross_entropy_backward(1.0, cache).dscores
    steps = default_step(case.scores)
    trunc = steps**2 / 6 * abs(v) / n * CUMULANT3_MAX
    a = abs(v) / n * (p * (E_F + r) + U * np.abs(p - t))
    atol = _atol(e_l, steps, trunc, a if axis == 1 else a.T, grad)

    def f(scores: Array) -> Array:
        return _scalar(softmax_cross_entropy_forward(scores, case.labels, class_axis=axis)[0])

    def vjp(dv: Array, scores: Array) -> tuple[Array]:
        c = softmax_cross_entropy_forward(scores, case.labels, class_axis=axis)[1]
        return (softmax_cross_entropy_backward(float(dv), c).dscores,)

    return _run(
        "softmax-CE",
        f,
        vjp,
        [case.scores],
        upstream=v,
        names=["dscores"],
        steps=[steps],
        atols=[atol],
    )


def check_sigmoid_cross_entropy_gradient(
    _impl: Implementation, case: LossCase
) -> list[Measurement]:
    """`sigmoid_cross_entropy_backward` against central differences of the mean loss.

    Per element max(z, 0) - z y is exact (y is 0 or 1); log1p(exp(-|z|)) errs by
    E_F log1p(e) + E_F e/(1 + e) <= 1.2 E_F; the sum by u|l|: e_el = 2 E_F + u|l|, and
    E_L = |v| (sum e_el / N + 2u|loss|) + 2u |v loss|. T_j = h_j**2/6 |v| / N * sqrt(3)/18.
    A: sigmoid errs by (E_F + 2u) s, then - y, * (1/N) (1/N rounded) and * v by u each:
    A = |v| / N ((E_F + 2u) s + 4u |s - y|).
    """
    axis = case.class_axis
    loss, cache = sigmoid_cross_entropy_forward(case.scores, case.labels, class_axis=axis)
    z, y, n = case.scores, cache.labels, cache.num_examples
    per = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
    v = case.v
    e_l = abs(v) * (_sum(2 * E_F + U * np.abs(per)) / n + 2 * U * abs(loss))
    e_l += 2 * U * abs(v * loss)
    grad = v * sigmoid_cross_entropy_backward(1.0, cache).dscores
    steps = default_step(z)
    trunc = steps**2 / 6 * abs(v) / n * CUMULANT3_MAX
    s = cache.probs
    a = abs(v) / n * ((E_F + 2 * U) * s + 4 * U * np.abs(s - y))
    atol = _atol(e_l, steps, trunc, a, grad)

    def f(scores: Array) -> Array:
        return _scalar(sigmoid_cross_entropy_forward(scores, case.labels, class_axis=axis)[0])

    def vjp(dv: Array, scores: Array) -> tuple[Array]:
        c = sigmoid_cross_entropy_forward(scores, case.labels, class_axis=axis)[1]
        return (sigmoid_cross_entropy_backward(float(dv), c).dscores,)

    return _run(
        "sigmoid-CE", f, vjp, [z], upstream=v, names=["dscores"], steps=[steps], atols=[atol]
    )


# --- batch norm layer ---------------------------------------------------------------------


class BatchNormLayerImplementation(ReferenceImplementation):
    """The batch-norm layer in training mode seen through the adapter protocol, so that
    `properties.gradient_props` checks the layer's forward and backward exactly as it checks
    `batch_norm_forward` / `batch_norm_backward`."""

    @property
    def name(self) -> str:
        return "reference batch-norm layer"

    def _forward(
        self, x: Array, gamma: Array, beta: Array, eps: float, axis: int
    ) -> tuple[Array, Any]:
        channels = np.asarray(x).shape[axis]
        out = batch_norm_layer_forward(
            x,
            gamma,
            beta,
            initial_state(channels),
            mode="train",
            config=BatchNormConfig(eps=eps),
            axis=axis,
        )
        return out.y, out.cache

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        y, _ = self._forward(x, gamma, beta, eps, axis)
        stats = exact_stats(np.asarray(x, dtype=np.float64), axis, eps)
        return ForwardOutput(y, stats.mean, stats.var)

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        _, cache = self._forward(x, gamma, np.zeros_like(gamma), eps, axis)
        g = batch_norm_layer_backward(dy, cache)
        return BackwardOutput(g.dx, g.dgamma, g.dbeta)


def check_batch_norm_train_gradient(impl: Implementation, case: Any) -> list[Measurement]:
    """`properties.gradient_props.check_gradients_fast` on the layer in training mode: random
    projections against central differences with property 4's derived bound, and the full
    element-wise check (which names the worst element) if a projection fails. The layer's
    training backward is `batch_norm_backward`, which property 4 checks element by element
    (`gradients-full`); what is new here is the layer's wiring, which any projection sees."""
    del impl
    return check_gradients_fast(BatchNormLayerImplementation(), case)


@dataclass(frozen=True)
class FrozenCase:
    """A float64 batch case, running statistics of its channels, and an upstream gradient."""

    case: BatchCase
    running_mean: Array
    running_var: Array
    dy: Array

    def __repr__(self) -> str:
        return (
            f"FrozenCase(case={self.case!r}, "
            f"{_lists([self.running_mean, self.running_var, self.dy])})"
        )


@st.composite
def frozen_cases(draw: st.DrawFn) -> FrozenCase:
    """Any layout of up to 60 values (`strategies.layouts`; a single example is allowed at
    inference), values offset + spread * N(0, 1) per channel with |offset| <= 10 spread, gamma
    and beta of either sign, the strategies' eps values, and running statistics near the
    batch's (mean + noise, var * [0.5, 2]): the inference map of a trained layer."""
    layout = draw(layouts(min_count=1, max_size=60))
    rng = np.random.default_rng(draw(SEEDS))
    c, axis = layout.channels, layout.axis
    bshape = tuple(c if i == axis % len(layout.shape) else 1 for i in range(len(layout.shape)))
    spread = 10.0 ** rng.uniform(-3, 3, c)
    offset = spread * rng.uniform(-10, 10, c)
    x = offset.reshape(bshape) + spread.reshape(bshape) * rng.standard_normal(layout.shape)
    gamma = rng.uniform(-5, 5, c)
    beta = rng.uniform(-5, 5, c)
    eps = draw(st.sampled_from(EPS_VALUES))
    mean = offset + rng.standard_normal(c) * np.sqrt(spread**2 + eps)
    var = spread**2 * rng.uniform(0.5, 2.0, c)
    case = BatchCase(x, gamma, beta, eps, axis, "float64")
    return FrozenCase(case, mean, var, rng.standard_normal(layout.shape))


def check_batch_norm_frozen_gradient(_impl: Implementation, fc: FrozenCase) -> list[Measurement]:
    """The layer's "frozen" backward against central differences of its forward.

    y = a (x - rm) + beta with a = gamma / sqrt(rv + eps) (relative error 3u: +, sqrt, /):
    |y' - y| <= 5u |a (x - rm)| + u |y|, so E_L = sum |dy| (5u |a (x - rm)| + u|y|) + u sum|dy y|
    + u|L|. Linear in x, gamma and beta: T = 0. A: dx = dy (gamma inv) 5u |dx|;
    dgamma = sum dy x_hat_r (x_hat_r = (x - rm) inv, 5u) (6u + g_n) sum |dy x_hat_r|;
    dbeta g_n sum |dy| (n values per channel).
    """
    case, dy = fc.case, fc.dy
    state = BatchNormState(RunningStats(fc.running_mean, fc.running_var), 0)
    cfg = BatchNormConfig(eps=case.eps, frozen=True)

    def run(x: Array, gamma: Array, beta: Array) -> Any:
        return batch_norm_layer_forward(
            x, gamma, beta, state, mode="frozen", config=cfg, axis=case.axis
        )

    out = run(case.x, case.gamma, case.beta)
    grads = batch_norm_layer_backward(dy, out.cache)
    ax = case.axis % case.x.ndim
    bshape = tuple(-1 if i == ax else 1 for i in range(case.x.ndim))
    reduce = tuple(i for i in range(case.x.ndim) if i != ax)
    inv = 1 / np.sqrt(fc.running_var + case.eps)
    dev = case.x - fc.running_mean.reshape(bshape)
    scaled = (case.gamma * inv).reshape(bshape) * dev
    e_l = _sum(np.abs(dy) * (5 * U * np.abs(scaled) + U * np.abs(out.y)))
    e_l += U * _sum(np.abs(dy * out.y)) + U * abs(_sum(dy * out.y))
    n = case.x.size // fc.running_mean.size
    x_hat_r = dev * inv.reshape(bshape)
    a_x = 5 * U * np.abs(grads.dx)
    a_g = (6 * U + g_n(n)) * np.sum(np.abs(dy * x_hat_r), axis=reduce)
    a_b = g_n(n) * np.sum(np.abs(dy), axis=reduce)
    inputs = [case.x, case.gamma, case.beta]
    steps = [default_step(v) for v in inputs]
    analytic = [grads.dx, grads.dgamma, grads.dbeta]
    atols = [
        _atol(e_l, h, 0.0, a, g) for h, a, g in zip(steps, [a_x, a_g, a_b], analytic, strict=True)
    ]

    def vjp(d: Array, x: Array, gamma: Array, beta: Array) -> tuple[Array, Array, Array]:
        g = batch_norm_layer_backward(d, run(x, gamma, beta).cache)
        return g.dx, g.dgamma, g.dbeta

    return _run(
        "batch-norm (frozen)",
        lambda x, g, b: run(x, g, b).y,
        vjp,
        inputs,
        upstream=dy,
        names=["dx", "dgamma", "dbeta"],
        steps=steps,
        atols=atols,
    )


# --- dropout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class DropoutCase:
    """x, p, the form, training or test mode, the mask's seed and an upstream gradient."""

    x: Array
    p: float
    kind: DropoutKind
    train: bool
    seed: int
    dy: Array

    def __repr__(self) -> str:
        return (
            f"DropoutCase({_lists([self.x])}, p={self.p!r}, kind={self.kind!r}, "
            f"train={self.train!r}, seed={self.seed!r}, dy={_lists([self.dy])})"
        )

    def forward(self, x: Array) -> Any:
        """dropout_forward with this case's settings and a fresh Generator of its seed."""
        return dropout_forward(
            x,
            self.p,
            kind=self.kind,
            train=self.train,
            rng=np.random.default_rng(self.seed),
        )


_P = st.one_of(st.just(0.0), st.just(0.5), st.floats(0.0, 0.95))


@st.composite
def dropout_cases(draw: st.DrawFn) -> DropoutCase:
    """Both forms, both modes, p in [0, 0.95], x of any sign and of scale 1e-3 .. 30."""
    shape = (draw(st.integers(1, 6)), draw(st.integers(1, 5)))
    seed = draw(SEEDS)
    rng = np.random.default_rng(seed + 1)
    return DropoutCase(
        _random(rng, shape, draw(st.sampled_from(SCALES))),
        draw(_P),
        draw(st.sampled_from(KINDS)),
        draw(st.booleans()),
        seed,
        rng.standard_normal(shape),
    )


def check_dropout_gradient(_impl: Implementation, case: DropoutCase) -> list[Measurement]:
    """`dropout_backward` against central differences of `dropout_forward` with the same mask
    (every evaluation redraws it from the same seed). Linear in x: T = 0. Each output is x
    times 0, 1 or the rounded 1 - p, possibly divided by it (2u), so E_L = 3u sum|dy y| + u|L|;
    A = 2u |g| (the same two roundings)."""
    y = case.forward(case.x)[0]
    e_l = 3 * U * _sum(np.abs(case.dy * y)) + U * abs(_sum(case.dy * y))
    grad = dropout_backward(case.dy, case.forward(case.x)[1]).dx
    steps = default_step(case.x)
    atol = _atol(e_l, steps, 0.0, 2 * U * np.abs(grad), grad)

    def vjp(dy: Array, x: Array) -> tuple[Array]:
        return (dropout_backward(dy, case.forward(x)[1]).dx,)

    return _run(
        "dropout",
        lambda x: case.forward(x)[0],
        vjp,
        [case.x],
        upstream=case.dy,
        names=["dx"],
        steps=[steps],
        atols=[atol],
    )


@dataclass(frozen=True)
class DropoutStatCase:
    """D units x, p, the seed of the draws."""

    x: Array
    p: float
    seed: int

    def __repr__(self) -> str:
        return f"DropoutStatCase({_lists([self.x])}, p={self.p!r}, seed={self.seed!r})"


@st.composite
def dropout_stat_cases(draw: st.DrawFn) -> DropoutStatCase:
    """1-8 units of any sign (0 included), p in [0, 0.95]."""
    d = draw(st.integers(1, 8))
    rng = np.random.default_rng(draw(SEEDS))
    x = _random(rng, (d,), draw(st.sampled_from(SCALES)))
    if draw(st.booleans()):
        x[0] = 0.0
    return DropoutStatCase(x, draw(_P), draw(SEEDS))


def binomial_interval(n: int, q: float, tail: float) -> tuple[int, int]:
    """(lo, hi) with P(K < lo) <= tail and P(K > hi) <= tail for K ~ Binomial(n, q): lo is the
    smallest k with P(K <= k) > tail, hi the largest with P(K >= k) > tail. The probabilities
    are exp(log-pmf) from math.lgamma (relative error ~1e-13, immaterial at these tails)."""
    if q >= 1.0:
        return n, n
    if q <= 0.0:
        return 0, 0
    ks = np.arange(n + 1)
    log_pmf = (
        math.lgamma(n + 1)
        - np.array([math.lgamma(k + 1) + math.lgamma(n - k + 1) for k in range(n + 1)])
        + ks * math.log(q)
        + (n - ks) * math.log1p(-q)
    )
    pmf = np.exp(log_pmf)
    cdf = np.cumsum(pmf)
    sf = np.cumsum(pmf[::-1])[::-1]  # sf[k] = P(K >= k)
    return int(np.argmax(cdf > tail)), int(n - np.argmax(sf[::-1] > tail))


def _binomial_tolerance(case: DropoutStatCase, expected: Array) -> Array:
    """|mean - expected| allowed per unit (module docstring): |expected| times the largest
    deviation of K / (N (1 - p)) from 1 inside [lo, hi] = `binomial_interval(N, 1 - p,
    ALPHA / (2 D))`, plus the rounding of the outputs (2u) and of their fsum (u)."""
    n, keep = DRAWS, 1.0 - case.p
    lo, hi = binomial_interval(n, keep, ALPHA / (2 * case.x.size))
    spread = max(hi - n * keep, n * keep - lo) / (n * keep)
    tol: Array = np.abs(expected) * (spread + 3 * U)
    return tol


def _draw_means(case: DropoutStatCase, kind: DropoutKind, train: bool) -> Array:
    tiled = np.broadcast_to(case.x, (DRAWS, case.x.size))
    y, _ = dropout_forward(
        tiled,
        case.p,
        kind=kind,
        train=train,
        rng=np.random.default_rng(case.seed),
    )
    return np.array([math.fsum(col) / DRAWS for col in y.T.tolist()])


def _compare(quantity: str, got: Array, want: Array, tol: Array) -> Measurement:
    err = np.abs(got - want)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(tol > 0, err / tol, np.where(err == 0, 0.0, np.inf))
    i = int(np.argmax(ratio))
    return Measurement(f"{quantity} (unit {i})", float(err[i]), float(tol[i]))


def check_inverted_expectation(_impl: Implementation, case: DropoutStatCase) -> list[Measurement]:
    """Inverted dropout keeps the expectation: the mean of DRAWS training outputs of each unit
    is x within the binomial bound, and the test output is x exactly."""
    means = _draw_means(case, "inverted", True)
    test = dropout_forward(case.x, case.p, kind="inverted", train=False)[0]
    return [
        _compare("mean of training outputs vs x", means, case.x, _binomial_tolerance(case, case.x)),
        _compare("test output vs x (exact)", test, case.x, np.zeros_like(case.x)),
    ]


def check_classic_expectation(_impl: Implementation, case: DropoutStatCase) -> list[Measurement]:
    """Classic dropout's test output (1 - p) x equals the expectation of its training output:
    exactly (within the 2u of rounding 1 - p and the product) against (1 - p) x, and the mean
    of DRAWS training outputs within the binomial bound of the test output."""
    want = (1.0 - case.p) * case.x
    test = dropout_forward(case.x, case.p, kind="classic", train=False)[0]
    means = _draw_means(case, "classic", True)
    return [
        _compare("test output vs (1 - p) x", test, want, 2 * U * np.abs(want)),
        _compare(
            "mean of training outputs vs test output",
            means,
            test,
            _binomial_tolerance(case, test) + 2 * U * np.abs(test),
        ),
    ]


def _exact(quantity: str, holds: bool) -> Measurement:
    return Measurement(quantity, 0.0 if holds else 1.0, 0.0)  # exact claim: tolerance 0


def check_masks(_impl: Implementation, case: DropoutCase) -> list[Measurement]:
    """In training mode the backward pass uses the forward pass's mask: with x and dy nonzero
    everywhere, the kept units of the output, the cache's mask and the units with a nonzero dx
    are the same set; dx is dy (classic) or dy / (1 - p) (inverted) there, computed exactly as
    the forward pass scales x; the same seed gives the same mask; and backward is repeatable."""
    x = np.where(case.x == 0, 1.0, case.x)
    dy = np.where(case.dy == 0, 1.0, case.dy)
    y, cache = dropout_forward(
        x,
        case.p,
        kind=case.kind,
        train=True,
        rng=np.random.default_rng(case.seed),
    )
    mask = cache.mask
    if mask is None:
        return [_exact("training mode caches a mask", False)]
    again = dropout_forward(
        x,
        case.p,
        kind=case.kind,
        train=True,
        rng=np.random.default_rng(case.seed),
    )[1].mask
    dx = dropout_backward(dy, cache).dx
    scaled = dy * mask if case.kind == "classic" else dy * mask / (1.0 - case.p)
    return [
        _exact("kept units of y == cache mask", bool(np.array_equal(y != 0, mask))),
        _exact("nonzero dx == cache mask", bool(np.array_equal(dx != 0, mask))),
        _exact("dx == dy scaled on kept units", bool(np.array_equal(dx, scaled))),
        _exact("same seed, same mask", again is not None and bool(np.array_equal(again, mask))),
        _exact("backward is repeatable", bool(np.array_equal(dropout_backward(dy, cache).dx, dx))),
    ]


def check_p0_identity(_impl: Implementation, case: DropoutCase) -> list[Measurement]:
    """p = 0 is the identity in both forms and both modes: y == x and dx == dy, bit for bit."""
    out = []
    for kind in KINDS:
        for train in (True, False):
            y, cache = dropout_forward(
                case.x,
                0.0,
                kind=kind,
                train=train,
                rng=np.random.default_rng(case.seed),
            )
            dx = dropout_backward(case.dy, cache).dx
            tag = f"{kind}, train={train}"
            out.append(_exact(f"y == x ({tag})", bool(np.array_equal(y, case.x))))
            out.append(_exact(f"dx == dy ({tag})", bool(np.array_equal(dx, case.dy))))
    return out


# --- weight decay -------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightDecayCase:
    """1-3 weight matrices, lambda and the scalar upstream gradient v."""

    weights: tuple[Array, ...]
    weight_decay: float
    v: float

    def __repr__(self) -> str:
        return (
            f"WeightDecayCase(({_lists(list(self.weights))},), "
            f"weight_decay={self.weight_decay!r}, v={self.v!r})"
        )


@st.composite
def weight_decay_cases(draw: st.DrawFn) -> WeightDecayCase:
    """1-3 matrices up to 5 x 5 of scale 1e-3 .. 30, lambda 0 or in [1e-4, 10]."""
    rng = np.random.default_rng(draw(SEEDS))
    count = draw(st.integers(1, 3))
    weights = tuple(
        _random(
            rng, (draw(st.integers(1, 5)), draw(st.integers(1, 5))), draw(st.sampled_from(SCALES))
        )
        for _ in range(count)
    )
    lam = draw(st.one_of(st.just(0.0), st.floats(1e-4, 10.0)))
    return WeightDecayCase(weights, lam, float(rng.standard_normal()))


def check_weight_decay_gradient(_impl: Implementation, case: WeightDecayCase) -> list[Measurement]:
    """`l2_penalty_gradient` (lambda W) against central differences of `l2_penalty`.

    P = 0.5 lambda fsum(fsum(W**2)): the squares, both fsums and the product with lambda round
    once each, so E_L = 4u |v| P + 2u |v P|. P is quadratic in each element: the central
    difference is exact (T = 0). A: lambda W then * v: 2u |g|.
    """
    lam, v = case.weight_decay, case.v
    penalty = l2_penalty(list(case.weights), lam)
    e_l = 4 * U * abs(v) * penalty + 2 * U * abs(v * penalty)
    steps = [default_step(w) for w in case.weights]
    grads = [v * l2_penalty_gradient(w, lam) for w in case.weights]
    atols = [_atol(e_l, h, 0.0, 2 * U * np.abs(g), g) for h, g in zip(steps, grads, strict=True)]

    def f(*ws: Array) -> Array:
        return _scalar(l2_penalty(list(ws), lam))

    def vjp(dv: Array, *ws: Array) -> tuple[Array, ...]:
        return tuple(float(dv) * l2_penalty_gradient(w, lam) for w in ws)

    names = [f"dW{k + 1}" for k in range(len(case.weights))]
    return _run(
        "weight decay",
        f,
        vjp,
        list(case.weights),
        upstream=v,
        names=names,
        steps=steps,
        atols=atols,
    )


# --- the whole network --------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkCase:
    """An architecture, a batch size and the seed of everything else: parameters (biases,
    gamma and beta away from their initial 0 and 1), X, labels and the dropout masks."""

    spec: net.NetworkSpec
    n: int
    seed: int
    params: net.Params = field(repr=False)
    X: Array = field(repr=False)
    y: NDArray[Any] = field(repr=False)
    masks: tuple[NDArray[np.bool_], ...] | None = field(repr=False)
    state: net.NetworkState = field(repr=False)

    def __repr__(self) -> str:
        return f"network_case({self.spec!r}, n={self.n!r}, seed={self.seed!r})"


def network_case(spec: net.NetworkSpec, n: int, seed: int) -> NetworkCase:
    """The case of `spec`, n examples and `seed` (deterministic)."""
    rng = np.random.default_rng(seed)
    params = dict(net.init_params(spec, rng))
    for name, value in params.items():
        if name.startswith(("b", "beta")):
            params[name] = 0.5 * rng.standard_normal(value.shape)
        elif name.startswith("gamma"):
            params[name] = rng.uniform(0.5, 2.0, value.shape) * rng.choice([-1.0, 1.0], value.shape)
    fa = spec.feature_axis
    X = rng.standard_normal((n, spec.input_size) if fa == 1 else (spec.input_size, n))
    k = spec.output_size
    if spec.output == "softmax":
        y: NDArray[Any] = rng.integers(0, k, n)
    else:
        y = rng.integers(0, 2, (n, k) if fa == 1 else (k, n)).astype(np.float64)
    state = net.init_state(spec)
    masks = net.forward(spec, params, state, X, train=True, rng=rng).masks
    return NetworkCase(spec, n, seed, params, X, y, masks if spec.dropout else None, state)


@st.composite
def network_cases(draw: st.DrawFn) -> NetworkCase:
    """Random small architectures: 0-2 hidden layers of 1-3 units, 1-3 inputs, softmax (2-3
    classes) or sigmoid (1-2 outputs), relu or sigmoid, optional batch norm (any convention,
    eps 1e-5 .. 0.1, sometimes frozen), optional dropout (either form), weight decay 0 or up
    to 1, either layout, 2-5 examples."""
    output = draw(st.sampled_from(net.OUTPUT_LOSSES))
    bn = None
    if draw(st.booleans()):
        bn = BatchNormConfig(
            convention=draw(st.sampled_from(sorted(CONVENTIONS))),
            eps=draw(st.sampled_from([1e-5, 1e-3, 0.1])),
            frozen=draw(st.sampled_from([False, False, False, True])),
        )
    dropout = None
    if draw(st.booleans()):
        dropout = net.DropoutSpec(draw(st.floats(0.0, 0.7)), draw(st.sampled_from(KINDS)))
    spec = net.NetworkSpec(
        input_size=draw(st.integers(1, 3)),
        hidden_sizes=tuple(draw(st.lists(st.integers(1, 3), max_size=2))),
        output_size=draw(st.integers(2, 3)) if output == "softmax" else draw(st.integers(1, 2)),
        activation=draw(st.sampled_from(net.ACTIVATIONS)),
        weight_init=draw(st.sampled_from(["he", "xavier", "glorot", 0.5])),
        batch_norm=bn,
        dropout=dropout,
        weight_decay=draw(st.one_of(st.just(0.0), st.floats(1e-3, 1.0))),
        output=output,
        feature_axis=draw(st.sampled_from([0, 1])),
    )
    return network_case(spec, draw(st.integers(2, 5)), draw(SEEDS))


def _examples_first(a: NDArray[Any], fa: int) -> NDArray[Any]:
    return a if fa == 1 else a.T


def _affine_error(e_in: Array, a: Array, w: Array, b: Array | float) -> Array:
    """|x W^T + b| error: propagated |e| |W|^T plus the dot products' g_(in+1) (|x||W|^T + |b|)."""
    out: Array = e_in @ np.abs(w).T + g_n(w.shape[1] + 1) * (np.abs(a) @ np.abs(w).T + np.abs(b))
    return out


def _network_rounding(case: NetworkCase, result: net.LossResult) -> float:
    """E_L: a first-order bound on |L' - L| for one evaluation of the training-mode loss.

    Absolute bounds e (shape of each layer's values, examples first) are pushed forward:
    affine     e_z = e_a |W|^T + g_(in+1) (|a| |W|^T + |b|)
    batch norm (train) x_hat = (z - m)/s moves by (e_z + mean e_z + |x_hat| mean(|x_hat| e_z))/s
               (its first-order variation), plus its own rounding `tolerances.x_hat_bound`;
               u = gamma x_hat + beta adds 2u (|gamma x_hat| + |u|). (frozen) the fixed map
               a (z - rm) + beta: |a| e_z + 5u |a (z - rm)| + u |u|.
    relu       1-Lipschitz: e unchanged.   sigmoid: e / 4 + (E_F + 2u) s.
    dropout    e * mask / (1 - p) + 2u |out| (the division by the rounded 1 - p).
    loss       softmax CE: sum_k |p - t| e_k + the layer's rounding (see its check);
               sigmoid CE: sum_k |s - y| e_k + 2 E_F + u |l|; the mean: + 2u |loss|.
    penalty    4u P. The sum L = data + P and the checker's fsum: 2u |L|.
    Everything is multiplied by SAFETY.
    """
    spec, fwd = case.spec, result.forward
    fa, p = spec.feature_axis, case.params
    e = np.zeros_like(_examples_first(case.X, fa))
    for i, h in enumerate(fwd.hidden):
        layer = i + 1
        a_prev = _examples_first(h.affine.x, fa)
        e = _affine_error(e, a_prev, p[f"W{layer}"], p.get(f"b{layer}", 0.0))
        u_val = _examples_first(h.pre_activation, fa)
        if h.batch_norm is not None:
            gamma = p[f"gamma{layer}"]
            z = _examples_first(h.z, fa)
            if h.batch_norm.mode == "train":
                st_ = exact_stats(z, 1, h.batch_norm.eps)
                xh = np.abs(st_.x_hat)
                e = (e + e.mean(axis=0) + xh * (xh * e).mean(axis=0)) / st_.scale
                e = e + x_hat_bound(st_, 2)
                e = np.abs(gamma) * e + 2 * U * (np.abs(gamma * st_.x_hat) + np.abs(u_val))
            else:
                rs = h.batch_norm.running
                a = gamma / np.sqrt(rs.var + h.batch_norm.eps)
                e = np.abs(a) * e + 5 * U * np.abs(a * (z - rs.mean)) + U * np.abs(u_val)
        if spec.activation == "sigmoid":
            s = sigmoid(u_val)
            e = e / 4 + (E_F + 2 * U) * s
        if h.dropout is not None and h.dropout.mask is not None:
            out = _examples_first(h.output, fa)
            mask = _examples_first(h.dropout.mask, fa)
            scale = 1.0 / (1.0 - h.dropout.p) if h.dropout.kind == "inverted" else 1.0
            e = e * mask * scale + 2 * U * np.abs(out)
    last = spec.num_layers
    a_last = _examples_first(fwd.output_affine.x, fa)
    e = _affine_error(e, a_last, p[f"W{last}"], p[f"b{last}"])
    z = _examples_first(fwd.scores, fa)
    n, k = int(z.shape[0]), int(z.shape[1])
    if spec.output == "softmax":
        t = np.eye(k)[case.y]
        probs = softmax(z, class_axis=1)
        shifted = z - z.max(axis=1, keepdims=True)
        big_s = np.exp(shifted).sum(axis=1, keepdims=True)
        logp = shifted - np.log(big_s)
        rel_s = E_F + U * np.abs(shifted).max(axis=1, keepdims=True) + g_n(k)
        r = U * np.abs(shifted) + rel_s + E_F * np.log(big_s) + U * np.abs(logp)
        per_example = np.sum(np.abs(probs - t) * e, axis=1) + np.sum(t * r, axis=1)
    else:
        y = _examples_first(np.asarray(case.y, dtype=np.float64), fa)
        s = sigmoid(z)
        per = np.maximum(z, 0.0) - z * y + np.log1p(np.exp(-np.abs(z)))
        per_example = np.sum(np.abs(s - y) * e + 2 * E_F + U * np.abs(per), axis=1)
    e_data = _sum(per_example) / n + 2 * U * abs(result.data_loss)
    return SAFETY * (e_data + 4 * U * result.penalty + 2 * U * abs(result.loss))


def _relu_pattern(result: net.LossResult) -> tuple[bytes, ...]:
    return tuple(np.packbits(h.pre_activation > 0).tobytes() for h in result.forward.hidden)


def check_network_gradient(_impl: Implementation, case: NetworkCase) -> list[Measurement]:
    """`network.gradient` against central differences of the training-mode `network.loss`
    (batch norm in training mode or frozen, dropout with the case's fixed masks, weight decay),
    for every parameter: relative error below ||atol|| / (||a|| + ||n||) with
    atol_j = SAFETY |D(2h) - D(h)|_j / 3 + 1.5 E_L / h_j + 2u |D(h)_j| (module docstring)."""
    spec, names = case.spec, list(case.params)
    inputs = [np.asarray(case.params[k], dtype=np.float64) for k in names]
    base = net.loss(spec, case.params, case.state, case.X, case.y, train=True, masks=case.masks)
    pattern = _relu_pattern(base) if spec.activation == "relu" else ()
    crossed: list[bool] = []

    def f(*arrays: Array) -> Array:
        res = net.loss(
            spec,
            dict(zip(names, arrays, strict=True)),
            case.state,
            case.X,
            case.y,
            train=True,
            masks=case.masks,
        )
        if pattern and _relu_pattern(res) != pattern:
            crossed.append(True)
        return _scalar(res.loss)

    h1 = [default_step(x) for x in inputs]
    d1 = numeric_gradients(f, inputs, 1.0, step=h1)
    d2 = numeric_gradients(f, inputs, 1.0, step=[2 * h for h in h1])
    assume(not crossed)  # a step crossed a ReLU kink: the differences measure nothing here
    analytic = net.gradient(spec, case.params, case.state, case.X, case.y, masks=case.masks).grads
    e_l = _network_rounding(case, base)
    out = []
    for name, h, n1, n2 in zip(names, h1, d1, d2, strict=True):
        a = np.asarray(analytic[name])
        atol = SAFETY * np.abs(n2 - n1) / 3 + 1.5 * e_l / h + 2 * U * np.abs(n1)
        err = relative_error(a, n1)
        scale = float(np.linalg.norm(a) + np.linalg.norm(n1))
        tol = float(np.linalg.norm(atol)) / scale if scale > 0 else 0.0
        label = f"network {name} relative error"
        if not err <= tol:
            j = int(np.argmax(np.abs(a - n1)))
            label += f", worst element {j}: analytic {a.flat[j]!r}, numeric {n1.flat[j]!r}"
        out.append(Measurement(label, err, tol))
    return out


PROPERTIES: tuple[Property, ...] = (
    Property(
        "affine-gradient",
        "dx, dW, db of the affine layer equal central differences within the derived bound",
        affine_cases(),
        check_affine_gradient,
        frozenset({"float64", "gradient", "layers"}),
    ),
    Property(
        "relu-gradient",
        "the ReLU backward equals central differences away from the kink",
        relu_cases(),
        check_relu_gradient,
        frozenset({"float64", "gradient", "layers"}),
    ),
    Property(
        "sigmoid-gradient",
        "the sigmoid backward equals central differences within the derived bound",
        sigmoid_cases(),
        check_sigmoid_gradient,
        frozenset({"float64", "gradient", "layers"}),
    ),
    Property(
        "softmax-cross-entropy-gradient",
        "dscores = (softmax - t) / N equals central differences of the mean cross-entropy",
        softmax_cases(),
        check_softmax_cross_entropy_gradient,
        frozenset({"float64", "gradient", "layers"}),
    ),
    Property(
        "sigmoid-cross-entropy-gradient",
        "dscores = (sigmoid - y) / N equals central differences of the mean binary cross-entropy",
        sigmoid_loss_cases(),
        check_sigmoid_cross_entropy_gradient,
        frozenset({"float64", "gradient", "layers"}),
    ),
    Property(
        "batch-norm-layer-gradient-train",
        "the batch-norm layer in training mode passes property 4's gradient check (fast, "
        "falling back to full)",
        gradient_cases(),
        check_batch_norm_train_gradient,
        frozenset({"float64", "gradient", "layers"}),
    ),
    Property(
        "batch-norm-layer-gradient-frozen",
        "the batch-norm layer with frozen statistics: dx, dgamma, dbeta equal central "
        "differences within the derived bound",
        frozen_cases(),
        check_batch_norm_frozen_gradient,
        frozenset({"float64", "gradient", "layers"}),
    ),
    Property(
        "dropout-gradient",
        "the dropout backward (forward's mask) equals central differences with that mask",
        dropout_cases(),
        check_dropout_gradient,
        frozenset({"float64", "gradient", "layers", "dropout"}),
    ),
    Property(
        "weight-decay-gradient",
        "lambda W equals central differences of 0.5 lambda sum(W**2)",
        weight_decay_cases(),
        check_weight_decay_gradient,
        frozenset({"float64", "gradient", "layers"}),
    ),
    Property(
        "inverted-dropout-expectation",
        "the mean of many inverted-dropout training outputs is x (binomial bound, false-alarm "
        "probability 1e-9), and the test output is x",
        dropout_stat_cases(),
        check_inverted_expectation,
        frozenset({"dropout", "statistical"}),
    ),
    Property(
        "classic-dropout-expectation",
        "classic dropout's test output (1 - p) x is the expectation of its training output",
        dropout_stat_cases(),
        check_classic_expectation,
        frozenset({"dropout", "statistical"}),
    ),
    Property(
        "dropout-masks",
        "the backward pass uses exactly the mask the forward pass drew",
        dropout_cases(),
        check_masks,
        frozenset({"dropout", "exact"}),
    ),
    Property(
        "dropout-p0-identity",
        "dropout with p = 0 is the identity, forward and backward, in both forms and modes",
        dropout_cases(),
        check_p0_identity,
        frozenset({"dropout", "exact"}),
    ),
    Property(
        "network-gradient",
        "backprop through affine, batch norm, activation, dropout (fixed mask) and weight decay "
        "equals central differences of the loss for every parameter, within the derived bound",
        network_cases(),
        check_network_gradient,
        frozenset({"float64", "gradient", "network"}),
    ),
)
