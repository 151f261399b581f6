"""The layers' backward passes against central differences, within derived bounds: affine,
ReLU, sigmoid, the two output losses and weight decay; and the broken backwards each check
catches. (Batch norm: tests/test_batch_norm_layer_gradients.py; dropout: tests/test_dropout.py;
the whole network: tests/test_network_gradient.py.)

The bound model (u, g_n, c3, SAFETY, E_F; atol_j = SAFETY (T_j + E_L / h_j + A_j) + 2u |g_j|)
is in tests/central_differences.py. Per layer (the derivations are in each check's docstring):

    affine        linear in x, in W and in b: T = 0; E_L from the dot products (g_(in+1))
    relu          linear on each side of 0; steps h_j = c3 |x_j| never reach 0: T = 0
    sigmoid       |sigmoid'''| <= 1/8
    softmax CE    |d3 logsumexp / dz_k3| = |p (1 - p) (1 - 2p)| <= sqrt(3)/18 = 0.0962
    sigmoid CE    |d3 softplus| = |sigmoid''| <= sqrt(3)/18
    weight decay  quadratic: the central difference of a quadratic is exact, T = 0

Each check takes the backward it checks (default: the reference's), so a test hands it a
broken one and sees the check fail.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np
from central_differences import (
    C3,
    E_F,
    LIBM_ULPS,
    SCALES,
    SEEDS,
    U,
    against_central_differences,
    arrays_code,
    element_atol,
    fsum,
    g_n,
    random_array,
    scalar,
)
from claims import assert_holds, falsified
from hypothesis import Phase, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from properties.adapter import Array
from properties.framework import Measurement
from reference import layers
from reference.gradcheck import default_step
from reference.layers import (
    affine_backward,
    affine_forward,
    l2_penalty,
    l2_penalty_gradient,
    relu_backward,
    relu_forward,
    sigmoid,
    sigmoid_backward,
    sigmoid_cross_entropy_backward,
    sigmoid_cross_entropy_forward,
    sigmoid_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)

CUMULANT3_MAX = math.sqrt(3) / 18  # max |p (1-p) (1-2p)|: logsumexp''' along z_k, softplus'''
SIGMOID3_MAX = 1 / 8  # max |sigmoid'''| = max |s(1-s)(1-6s(1-s))|, at x = 0


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
            f"AffineCase({arrays_code([self.x, self.W, self.b])}, "
            f"feature_axis={self.feature_axis}, dy={arrays_code([self.dy])})"
        )


@st.composite
def affine_cases(draw: st.DrawFn) -> AffineCase:
    """1-6 examples, 1-5 inputs and outputs, either layout, with or without a bias."""
    fa = draw(st.sampled_from([0, 1]))
    n, fan_in, fan_out = draw(st.integers(1, 6)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    sx, sw, sb = (draw(st.sampled_from(SCALES)) for _ in range(3))
    rng = np.random.default_rng(draw(SEEDS))
    x = random_array(rng, (n, fan_in) if fa == 1 else (fan_in, n), sx)
    w = random_array(rng, (fan_out, fan_in), sw)
    b = random_array(rng, (fan_out,), sb) if draw(st.booleans()) else None
    dy = rng.standard_normal((n, fan_out) if fa == 1 else (fan_out, n))
    return AffineCase(x, w, b, fa, dy)


def check_affine_gradient(
    case: AffineCase, backward: Callable[..., Any] = affine_backward
) -> list[Measurement]:
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
        fsum(np.abs(dye) * g_n(fan_in + 1) * y_abs)
        + U * fsum(np.abs(dye * y))
        + U * abs(fsum(dye * y))
    )
    a_x = g_n(fan_out) * (np.abs(dye) @ np.abs(case.W))
    a_x = a_x if fa == 1 else a_x.T
    a_w = g_n(n) * (np.abs(dye).T @ np.abs(xe))
    a_b = g_n(n) * np.sum(np.abs(dye), axis=0)
    grads = backward(case.dy, affine_forward(case.x, case.W, case.b, feature_axis=fa)[1])
    inputs = [case.x, case.W] + ([case.b] if case.b is not None else [])
    names = ["dx", "dW"] + (["db"] if has_b else [])
    analytic = [grads.dx, grads.dW] + ([grads.db] if grads.db is not None else [])
    bounds = [a_x, a_w, a_b]
    steps = [default_step(v) for v in inputs]
    atols = [
        element_atol(e_l, h, 0.0, a, g) for h, a, g in zip(steps, bounds, analytic, strict=False)
    ]

    def f(x: Array, w: Array, *b: Array) -> Array:
        return affine_forward(x, w, b[0] if b else None, feature_axis=fa)[0]

    def vjp(dy: Array, x: Array, w: Array, *b: Array) -> tuple[Array, ...]:
        g = backward(dy, affine_forward(x, w, b[0] if b else None, feature_axis=fa)[1])
        return (g.dx, g.dW) + ((g.db,) if g.db is not None else ())

    return against_central_differences(
        "affine", f, vjp, inputs, upstream=case.dy, names=names, steps=steps, atols=atols
    )


# --- activations --------------------------------------------------------------------------


@dataclass(frozen=True)
class ActivationCase:
    """x and dy of one shape; for ReLU no element of x is 0 (the derivative there is a
    convention, not a limit)."""

    x: Array
    dy: Array

    def __repr__(self) -> str:
        return f"ActivationCase({arrays_code([self.x, self.dy])})"


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
        random_array(rng, shape, draw(st.sampled_from(SCALES))), rng.standard_normal(shape)
    )


def check_relu_gradient(
    case: ActivationCase, backward: Callable[..., Any] = relu_backward
) -> list[Measurement]:
    """`relu_backward` against central differences with h_j = c3 |x_j| < |x_j|: the step never
    reaches the kink, L is linear within it (T = 0), relu is exact and so is its backward
    (A = 0); E_L = u sum|dy y| + u |L| (the products and the fsum)."""
    y = np.where(case.x > 0, case.x, 0.0)
    e_l = U * fsum(np.abs(case.dy * y)) + U * abs(fsum(case.dy * y))
    steps = C3 * np.abs(case.x)
    grad = backward(case.dy, relu_forward(case.x)[1]).dx
    atol = element_atol(e_l, steps, 0.0, np.zeros_like(grad), grad)

    def vjp(dy: Array, x: Array) -> tuple[Array]:
        return (backward(dy, relu_forward(x)[1]).dx,)

    return against_central_differences(
        "relu",
        lambda x: relu_forward(x)[0],
        vjp,
        [case.x],
        upstream=case.dy,
        names=["dx"],
        steps=[steps],
        atols=[atol],
    )


def check_sigmoid_gradient(
    case: ActivationCase, backward: Callable[..., Any] = sigmoid_backward
) -> list[Measurement]:
    """`sigmoid_backward` against central differences.

    sigmoid = 1/(1 + exp(-x)) errs by E_F + 2u relative (exp, then + and / once each), so
    E_L = sum |dy| (E_F + 2u) s + u sum|dy s| + u |L|; T_j = h_j**2/6 |dy_j| / 8; the backward
    dy * s(x) * s(-x) errs by A_j = |g_j| (2 E_F + 6u).
    """
    s = sigmoid(case.x)
    e_l = fsum(np.abs(case.dy) * (E_F + 2 * U) * s) + U * fsum(np.abs(case.dy * s))
    e_l += U * abs(fsum(case.dy * s))
    steps = default_step(case.x)
    grad = backward(case.dy, sigmoid_forward(case.x)[1]).dx
    trunc = steps**2 / 6 * np.abs(case.dy) * SIGMOID3_MAX
    atol = element_atol(e_l, steps, trunc, np.abs(grad) * (2 * E_F + 6 * U), grad)

    def vjp(dy: Array, x: Array) -> tuple[Array]:
        return (backward(dy, sigmoid_forward(x)[1]).dx,)

    return against_central_differences(
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
            f"LossCase({arrays_code([self.scores])}, np.array({self.labels.tolist()!r}), "
            f"class_axis={self.class_axis}, v={self.v!r})"
        )


@st.composite
def softmax_cases(draw: st.DrawFn) -> LossCase:
    """1-6 examples, 2-5 classes, scores of scale 1e-3 .. 30, labels as indices or one-hot."""
    axis = draw(st.sampled_from([0, 1]))
    n, k = draw(st.integers(1, 6)), draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(SEEDS))
    z = random_array(rng, (n, k), draw(st.sampled_from(SCALES)))
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
    z = random_array(rng, (n, k), draw(st.sampled_from(SCALES)))
    y = rng.integers(0, 2, (n, k)).astype(np.float64)
    if axis == 0:
        z, y = z.T, y.T
    return LossCase(z, y, axis, float(rng.standard_normal()))


def check_softmax_cross_entropy_gradient(
    case: LossCase, backward: Callable[..., Any] = softmax_cross_entropy_backward
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
    e_l = abs(v) * (fsum(t * r) / n + 2 * U * abs(loss)) + 2 * U * abs(v * loss)
    grad = v * backward(1.0, cache).dscores
    steps = default_step(case.scores)
    trunc = steps**2 / 6 * abs(v) / n * CUMULANT3_MAX
    a = abs(v) / n * (p * (E_F + r) + U * np.abs(p - t))
    atol = element_atol(e_l, steps, trunc, a if axis == 1 else a.T, grad)

    def f(scores: Array) -> Array:
        return scalar(softmax_cross_entropy_forward(scores, case.labels, class_axis=axis)[0])

    def vjp(dv: Array, scores: Array) -> tuple[Array]:
        c = softmax_cross_entropy_forward(scores, case.labels, class_axis=axis)[1]
        return (backward(float(dv), c).dscores,)

    return against_central_differences(
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
    case: LossCase, backward: Callable[..., Any] = sigmoid_cross_entropy_backward
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
    e_l = abs(v) * (fsum(2 * E_F + U * np.abs(per)) / n + 2 * U * abs(loss))
    e_l += 2 * U * abs(v * loss)
    grad = v * backward(1.0, cache).dscores
    steps = default_step(z)
    trunc = steps**2 / 6 * abs(v) / n * CUMULANT3_MAX
    s = cache.probs
    a = abs(v) / n * ((E_F + 2 * U) * s + 4 * U * np.abs(s - y))
    atol = element_atol(e_l, steps, trunc, a, grad)

    def f(scores: Array) -> Array:
        return scalar(sigmoid_cross_entropy_forward(scores, case.labels, class_axis=axis)[0])

    def vjp(dv: Array, scores: Array) -> tuple[Array]:
        c = sigmoid_cross_entropy_forward(scores, case.labels, class_axis=axis)[1]
        return (backward(float(dv), c).dscores,)

    return against_central_differences(
        "sigmoid-CE", f, vjp, [z], upstream=v, names=["dscores"], steps=[steps], atols=[atol]
    )


# --- weight decay -------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightDecayCase:
    """1-3 weight matrices, lambda and the scalar upstream gradient v."""

    weights: tuple[Array, ...]
    weight_decay: float
    v: float

    def __repr__(self) -> str:
        return (
            f"WeightDecayCase(({arrays_code(list(self.weights))},), "
            f"weight_decay={self.weight_decay!r}, v={self.v!r})"
        )


@st.composite
def weight_decay_cases(draw: st.DrawFn) -> WeightDecayCase:
    """1-3 matrices up to 5 x 5 of scale 1e-3 .. 30, lambda 0 or in [1e-4, 10]."""
    rng = np.random.default_rng(draw(SEEDS))
    count = draw(st.integers(1, 3))
    weights = tuple(
        random_array(
            rng, (draw(st.integers(1, 5)), draw(st.integers(1, 5))), draw(st.sampled_from(SCALES))
        )
        for _ in range(count)
    )
    lam = draw(st.one_of(st.just(0.0), st.floats(1e-4, 10.0)))
    return WeightDecayCase(weights, lam, float(rng.standard_normal()))


def check_weight_decay_gradient(
    case: WeightDecayCase, gradient: Callable[..., Any] = l2_penalty_gradient
) -> list[Measurement]:
    """`l2_penalty_gradient` (lambda W) against central differences of `l2_penalty`.

    P = 0.5 lambda fsum(fsum(W**2)): the squares, both fsums and the product with lambda round
    once each, so E_L = 4u |v| P + 2u |v P|. P is quadratic in each element: the central
    difference is exact (T = 0). A: lambda W then * v: 2u |g|.
    """
    lam, v = case.weight_decay, case.v
    penalty = l2_penalty(list(case.weights), lam)
    e_l = 4 * U * abs(v) * penalty + 2 * U * abs(v * penalty)
    steps = [default_step(w) for w in case.weights]
    grads = [v * gradient(w, lam) for w in case.weights]
    atols = [
        element_atol(e_l, h, 0.0, 2 * U * np.abs(g), g) for h, g in zip(steps, grads, strict=True)
    ]

    def f(*ws: Array) -> Array:
        return scalar(l2_penalty(list(ws), lam))

    def vjp(dv: Array, *ws: Array) -> tuple[Array, ...]:
        return tuple(float(dv) * gradient(w, lam) for w in ws)

    names = [f"dW{k + 1}" for k in range(len(case.weights))]
    return against_central_differences(
        "weight decay",
        f,
        vjp,
        list(case.weights),
        upstream=v,
        names=names,
        steps=steps,
        atols=atols,
    )


# --- the reference's layers pass ----------------------------------------------------------


@given(case=affine_cases())
def test_affine_gradient(case: AffineCase) -> None:
    """dx, dW, db of the affine layer equal central differences within the derived bound."""
    assert_holds(check_affine_gradient(case))


@given(case=relu_cases())
def test_relu_gradient(case: ActivationCase) -> None:
    """The ReLU backward equals central differences away from the kink."""
    assert_holds(check_relu_gradient(case))


@given(case=sigmoid_cases())
def test_sigmoid_gradient(case: ActivationCase) -> None:
    """The sigmoid backward equals central differences within the derived bound."""
    assert_holds(check_sigmoid_gradient(case))


@given(case=softmax_cases())
def test_softmax_cross_entropy_gradient(case: LossCase) -> None:
    """dscores = (softmax - t) / N equals central differences of the mean cross-entropy."""
    assert_holds(check_softmax_cross_entropy_gradient(case))


@given(case=sigmoid_loss_cases())
def test_sigmoid_cross_entropy_gradient(case: LossCase) -> None:
    """dscores = (sigmoid - y) / N equals central differences of the mean binary
    cross-entropy."""
    assert_holds(check_sigmoid_cross_entropy_gradient(case))


@given(case=weight_decay_cases())
def test_weight_decay_gradient(case: WeightDecayCase) -> None:
    """lambda W equals central differences of 0.5 lambda sum(W**2)."""
    assert_holds(check_weight_decay_gradient(case))


def test_libm_is_within_the_assumed_ulps() -> None:
    """E_F = 4 ulp for exp, log, log1p: NumPy's against 50-digit mpmath on 2000 points each."""
    rng = np.random.default_rng(0)
    cases: list[tuple[Callable[[Array], Array], Any, Array]] = [
        (np.exp, mpmath.exp, rng.uniform(-700, 700, 2000)),
        (np.log, mpmath.log, 10.0 ** rng.uniform(-300, 300, 2000)),
        (np.log1p, mpmath.log1p, 10.0 ** rng.uniform(-20, 5, 2000)),
    ]
    with mpmath.workdps(50):
        for fn, exact_fn, xs in cases:
            got = fn(xs)
            exact = [exact_fn(mpmath.mpf(float(v))) for v in xs]
            ulps = [
                abs(mpmath.mpf(float(g)) - e) / (2 * U * abs(e))
                for g, e in zip(got, exact, strict=True)
            ]
            assert float(max(ulps)) <= LIBM_ULPS


# --- each check catches a broken backward --------------------------------------------------


def _no_shrink() -> settings:
    """The active profile's settings without the shrink phase: a minimal example is not the
    point, and shrinking a failing gradient check is slow."""
    return settings(phases=[Phase.explicit, Phase.reuse, Phase.generate])


def test_affine_check_catches_a_doubled_db() -> None:
    def db_times_two(dout: Any, cache: Any) -> layers.AffineGrads:
        g = affine_backward(dout, cache)
        return layers.AffineGrads(g.dx, g.dW, None if g.db is None else 2 * g.db)

    failure = falsified(
        lambda case: assert_holds(check_affine_gradient(case, db_times_two)),
        affine_cases(),
        _no_shrink(),
    )
    assert "db relative error" in failure


def test_sigmoid_check_catches_a_missing_factor() -> None:
    def without_y_neg(dout: Any, cache: Any) -> layers.ActivationGrads:
        return layers.ActivationGrads(np.asarray(dout) * cache.y)

    failure = falsified(
        lambda case: assert_holds(check_sigmoid_gradient(case, without_y_neg)),
        sigmoid_cases(),
        _no_shrink(),
    )
    assert "worst element" in failure


def test_relu_check_catches_a_leaky_backward() -> None:
    def leaky(dout: Any, cache: Any) -> layers.ActivationGrads:
        return layers.ActivationGrads(np.where(cache.positive, dout, 0.01 * np.asarray(dout)))

    falsified(
        lambda case: assert_holds(check_relu_gradient(case, leaky)), relu_cases(), _no_shrink()
    )


def test_softmax_check_catches_a_missing_mean() -> None:
    def summed(dout: float, cache: Any) -> layers.LossGrads:
        return layers.LossGrads(dout * (cache.probs - cache.targets))

    falsified(
        lambda case: assert_holds(check_softmax_cross_entropy_gradient(case, summed)),
        softmax_cases(),
        _no_shrink(),
    )


def test_sigmoid_cross_entropy_check_catches_a_sign_error() -> None:
    def flipped(dout: float, cache: Any) -> layers.LossGrads:
        return layers.LossGrads(dout * (cache.labels - cache.probs) / cache.num_examples)

    falsified(
        lambda case: assert_holds(check_sigmoid_cross_entropy_gradient(case, flipped)),
        sigmoid_loss_cases(),
        _no_shrink(),
    )


def test_weight_decay_check_catches_a_factor_two() -> None:
    def doubled(w: Any, lam: float) -> Array:
        out: Array = 2 * lam * np.asarray(w)
        return out

    falsified(
        lambda case: assert_holds(check_weight_decay_gradient(case, doubled)),
        weight_decay_cases(),
        _no_shrink(),
    )
