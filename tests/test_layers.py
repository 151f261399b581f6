"""The layers: values, rejections, purity. (Their gradients against central differences:
tests/test_layer_gradients.py, test_batch_norm_layer_gradients.py, test_dropout.py.)"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from reference import layers
from reference.conventions import get_convention
from reference.layers import (
    BatchNormConfig,
    BatchNormState,
    affine_backward,
    affine_forward,
    batch_norm_layer_backward,
    batch_norm_layer_forward,
    dropout_backward,
    dropout_forward,
    init_std,
    init_weight,
    initial_state,
    l2_penalty,
    l2_penalty_gradient,
    log_softmax,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_cross_entropy_backward,
    sigmoid_cross_entropy_forward,
    sigmoid_forward,
    softmax,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from reference.running_stats import RunningStats, update_running_stats

Array = NDArray[np.float64]
# --- values --------------------------------------------------------------------------------


def test_affine_layouts_are_transposes_of_each_other() -> None:
    rng = np.random.default_rng(1)
    x, w, b = rng.integers(-5, 5, (4, 3)), rng.integers(-5, 5, (2, 3)), rng.integers(-5, 5, 2)
    y1, c1 = affine_forward(x, w, b, feature_axis=1)
    y0, c0 = affine_forward(x.T, w, b, feature_axis=0)
    assert np.array_equal(y1, x @ w.T + b)  # small integers: every operation is exact
    assert np.array_equal(y0, y1.T)
    dy = rng.integers(-5, 5, (4, 2)).astype(np.float64)
    g1, g0 = affine_backward(dy, c1), affine_backward(dy.T, c0)
    assert np.array_equal(g1.dx, dy @ w)
    assert np.array_equal(g0.dx, g1.dx.T)
    assert np.array_equal(g0.dW, g1.dW)
    assert g0.db is not None
    assert np.array_equal(g0.db, dy.sum(axis=0))


def test_affine_without_bias_has_no_db() -> None:
    _, cache = affine_forward(np.ones((2, 3)), np.ones((4, 3)))
    assert affine_backward(np.ones((2, 4)), cache).db is None


@pytest.mark.parametrize(
    ("method", "std"),
    [
        ("he", math.sqrt(2 / 6)),
        ("xavier", math.sqrt(1 / 6)),
        ("glorot", math.sqrt(2 / 10)),
        (0.01, 0.01),
    ],
)
def test_init_std(method: Any, std: float) -> None:
    assert init_std(method, 6, 4) == std
    w = init_weight(method, 6, 4, np.random.default_rng(3))
    assert w.shape == (4, 6)
    assert np.array_equal(w, std * np.random.default_rng(3).standard_normal((4, 6)))


def test_relu_and_sigmoid_values() -> None:
    x = np.array([[-2.0, 0.0, 3.0], [-800.0, 800.0, 1e-300]])
    y, cache = relu_forward(x)
    assert np.array_equal(y, [[0.0, 0.0, 3.0], [0.0, 800.0, 1e-300]])
    assert np.array_equal(relu_backward(np.ones_like(x), cache).dx, [[0, 0, 1], [0, 1, 1]])
    assert not cache.positive.flags.writeable  # the cached mask is read-only, like y
    s, scache = sigmoid_forward(x)
    assert s[1, 0] == 0.0
    assert s[1, 1] == 1.0
    assert s[0, 1] == 0.5
    # sigmoid(-x) keeps the derivative where sigmoid(x) rounds to 1: e**-40 is 4.2e-18.
    d = sigmoid_backward(np.ones((1, 1)), sigmoid_forward(np.array([[40.0]]))[1]).dx
    assert d[0, 0] == pytest.approx(math.exp(-40) / (1 + math.exp(-40)) ** 2, rel=1e-14)
    assert np.all(np.isfinite(sigmoid_backward(np.ones_like(x), scache).dx))


def test_softmax_is_stable_and_normalized() -> None:
    z = np.array([[1000.0, 1000.0, -1000.0], [0.0, 1.0, 2.0]])
    p = softmax(z)
    assert np.allclose(p.sum(axis=1), 1.0, rtol=0, atol=4 * 2.0**-53)
    assert p[0, 0] == p[0, 1] == 0.5
    assert p[0, 2] == 0.0
    assert np.array_equal(softmax(z.T, class_axis=0), p.T)


def test_softmax_cross_entropy_indices_equal_one_hot() -> None:
    z = np.random.default_rng(2).standard_normal((5, 3))
    idx = np.array([0, 2, 1, 1, 0])
    loss_i, cache_i = softmax_cross_entropy_forward(z, idx)
    loss_h, cache_h = softmax_cross_entropy_forward(z, np.eye(3)[idx])
    assert loss_i == loss_h
    assert np.array_equal(
        softmax_cross_entropy_backward(1.0, cache_i).dscores,
        softmax_cross_entropy_backward(1.0, cache_h).dscores,
    )
    expected = -math.fsum(math.log(softmax(z)[i, idx[i]]) for i in range(5)) / 5
    # log of a rounded probability: each term within ~(E_F + 4u) |log p| + 4u of the exact one.
    assert loss_i == pytest.approx(expected, rel=1e-14)


def test_sigmoid_cross_entropy_matches_the_course_and_stays_finite() -> None:
    z = np.array([[-3.0, 0.5, 2.0, 40.0]])
    y = np.array([[0.0, 1.0, 1.0, 0.0]])
    loss, cache = sigmoid_cross_entropy_forward(z, y, class_axis=0)
    a = 1 / (1 + np.exp(-z))
    with np.errstate(divide="ignore"):  # the course's formula takes log(0) here
        course = float(np.sum(-np.log(a) * y - np.log(1 - a) * (1 - y))) / 4
    # The course's log(1 - a) loses the digits of 1 - a (a = 1 - 4e-18 rounds to 1: -log 0).
    assert not math.isfinite(course)
    finite = slice(0, 3)
    course3 = float(
        np.sum(-np.log(a[:, finite]) * y[:, finite] - np.log(1 - a[:, finite]) * (1 - y[:, finite]))
    )
    assert loss * 4 == pytest.approx(course3 + 40.0 + math.log1p(math.exp(-40)), rel=1e-14)
    d = sigmoid_cross_entropy_backward(1.0, cache).dscores
    assert np.array_equal(d, 1.0 / 4 * (a - y))  # the course's dz3 = 1./m * (a3 - Y)


def test_batch_norm_layer_train_updates_running_stats_by_convention() -> None:
    x = np.random.default_rng(4).standard_normal((6, 3))
    gamma, beta = np.ones(3), np.zeros(3)
    for name in ("pytorch", "keras", "textbook"):
        cfg = BatchNormConfig(convention=name)
        state = initial_state(3)
        out = batch_norm_layer_forward(x, gamma, beta, state, mode="train", config=cfg)
        want = update_running_stats(
            state.running.mean,
            state.running.var,
            x.mean(axis=0),
            x.var(axis=0),
            6,
            convention=name,
        )
        assert np.allclose(out.state.running.mean, want.mean, rtol=1e-15, atol=1e-16)
        assert np.allclose(out.state.running.var, want.var, rtol=1e-14, atol=0)
        assert out.state.num_batches_tracked == 1
        assert out.cache.eps == get_convention(name).eps
        assert state.num_batches_tracked == 0  # the old state is untouched
        assert out.cache.mode == "train"
        # the cache records the statistics after this step, those of the new state
        assert np.array_equal(out.cache.running.mean, out.state.running.mean)
        assert np.array_equal(out.cache.running.var, out.state.running.var)


def test_batch_norm_layer_cumulative_average() -> None:
    cfg = BatchNormConfig(convention="pytorch", momentum=None)
    rng = np.random.default_rng(5)
    state = initial_state(2)
    batches = [rng.standard_normal((4, 2)) for _ in range(3)]
    for x in batches:
        state = batch_norm_layer_forward(
            x, np.ones(2), np.zeros(2), state, mode="train", config=cfg
        ).state
    assert state.num_batches_tracked == 3
    means = np.mean([b.mean(axis=0) for b in batches], axis=0)
    assert np.allclose(state.running.mean, means, rtol=1e-14, atol=1e-15)


def test_batch_norm_layer_eval_uses_running_statistics() -> None:
    x = np.array([[1.0, 10.0], [3.0, 30.0]])
    state = BatchNormState(RunningStats(np.array([0.0, 5.0]), np.array([4.0, 25.0])), 7)
    cfg = BatchNormConfig(eps=1e-5)
    for mode in ("eval", "frozen"):
        out = batch_norm_layer_forward(x, np.ones(2), np.zeros(2), state, mode=mode, config=cfg)
        want = (x - [0.0, 5.0]) / np.sqrt(np.array([4.0, 25.0]) + 1e-5)
        assert np.allclose(out.y, want, rtol=4 * 2.0**-53, atol=0)
        assert out.state is state
        assert out.cache.mode == mode  # backward picks the fixed affine map by this mode
        assert out.cache.running is state.running  # the statistics y was normalized with
    train = batch_norm_layer_forward(x, np.ones(2), np.zeros(2), state, mode="train", config=cfg)
    assert not np.allclose(train.y, want)  # training mode normalizes with the batch's own
    assert np.allclose(train.y, [[-1, -1], [1, 1]], rtol=1e-5)


def test_log_softmax_values() -> None:
    # Shifted by the row maximum: [1000, 0] -> [0, -1000]; exp gives [1, e**-1000] and
    # e**-1000 underflows to 0, so the sum is 1 and its log exactly 0: the result is exact.
    assert np.array_equal(log_softmax(np.array([[1000.0, 0.0]])), [[0.0, -1000.0]])
    # Each row is shifted by its own maximum: shifted by the overall maximum 1000, the second
    # row would be [-1000, -2000], whose exps both underflow, and log(0) = -inf.
    both = log_softmax(np.array([[1000.0, 0.0], [0.0, -1000.0]]))
    assert np.array_equal(both, [[0.0, -1000.0], [0.0, -1000.0]])
    # Classes along axis 1 by default: the transpose with class_axis=0 is the same result.
    z = np.array([[0.0, 1.0, 2.0], [-3.0, 0.5, 4.0]])
    logp = log_softmax(z)
    assert np.array_equal(logp, log_softmax(z.T, class_axis=0).T)
    # Each row's probabilities sum to 1: 3 terms, each rounded, within a few ulps of 1.
    assert np.allclose(np.exp(logp).sum(axis=1), 1.0, rtol=8 * 2.0**-53, atol=0)


def test_dropout_forms() -> None:
    x = np.arange(1.0, 9.0).reshape(2, 4)
    y, cache = dropout_forward(x, 0.5, kind="inverted", rng=np.random.default_rng(0))
    assert cache.mask is not None
    assert np.array_equal(y, np.where(cache.mask, 2 * x, 0.0))
    y, cache = dropout_forward(x, 0.5, kind="classic", rng=np.random.default_rng(0))
    assert cache.mask is not None
    assert np.array_equal(y, np.where(cache.mask, x, 0.0))
    assert np.array_equal(dropout_forward(x, 0.25, kind="classic", train=False)[0], 0.75 * x)
    assert np.array_equal(dropout_forward(x, 0.25, kind="inverted", train=False)[0], x)
    mask = np.array([[True, False, True, False]] * 2)
    y, cache = dropout_forward(x, 0.5, mask=mask)
    assert np.array_equal(y, np.where(mask, 2 * x, 0.0))
    assert np.array_equal(dropout_backward(np.ones_like(x), cache).dx, np.where(mask, 2.0, 0.0))
    # The cache keeps a read-only copy of the caller's mask: neither side can change the other.
    assert cache.mask is not None
    assert not cache.mask.flags.writeable
    assert not np.shares_memory(cache.mask, mask)


def test_weight_decay_values() -> None:
    w1, w2 = np.array([[1.0, -2.0]]), np.array([[3.0]])
    assert l2_penalty([w1, w2], 0.1) == 0.5 * 0.1 * 14
    assert np.array_equal(l2_penalty_gradient(w1, 0.1), 0.1 * w1)
    assert l2_penalty([w1], 0.0) == 0.0


# --- rejections ----------------------------------------------------------------------------


def _raises(exc: type[Exception], match: str, fn: Callable[[], object]) -> None:
    with pytest.raises(exc, match=match):
        fn()


def bad(value: object) -> Any:
    """A wrongly typed argument, passed on purpose (the type checker would refuse it)."""
    return value


def test_affine_rejects_bad_input() -> None:
    x, w = np.ones((2, 3)), np.ones((4, 3))
    _raises(
        ValueError, r"^W must have shape \(out, 3\)", lambda: affine_forward(x, np.ones((4, 2)))
    )
    _raises(ValueError, r"^x must be a 2-D array", lambda: affine_forward(np.ones(3), w))
    _raises(
        ValueError,
        r"^b must have the shape of W's rows \(out,\), \(4,\), got shape \(3,\)$",
        lambda: affine_forward(x, w, np.ones(3)),
    )
    _raises(
        ValueError,
        r"^feature_axis must be in \[-2, 1\]",
        lambda: affine_forward(x, w, feature_axis=2),
    )
    _raises(TypeError, r"^x must have a real", lambda: affine_forward(x.astype(complex), w))
    _raises(
        ValueError,
        r"^x must be finite, .*; pass check_finite=False to let them propagate$",
        lambda: affine_forward(x * np.nan, w),
    )
    _raises(TypeError, r"^W must have a real", lambda: affine_forward(x, w.astype(complex)))
    _raises(ValueError, r"^b must be finite", lambda: affine_forward(x, w, np.full(4, np.nan)))
    cache = affine_forward(x, w)[1]
    _raises(
        ValueError,
        r"^dout must have the shape of the layer's output, \(2, 4\), got shape \(2, 3\)$",
        lambda: affine_backward(np.ones((2, 3)), cache),
    )
    _raises(
        ValueError, r"^dout must be finite", lambda: affine_backward(np.full((2, 4), np.nan), cache)
    )


def test_init_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    _raises(
        ValueError,
        r"^weight_init must be one of \['he', 'xavier', 'glorot'\] or a positive standard "
        r"deviation, got 'lecun'$",
        lambda: init_std(bad("lecun"), 2, 2),
    )
    _raises(
        ValueError,
        r"^weight_init must be a finite number > 0, got -0\.1$",
        lambda: init_std(-0.1, 2, 2),
    )
    _raises(ValueError, r"^fan_in must be an integer >= 1, got 0$", lambda: init_std("he", 0, 2))
    _raises(ValueError, r"^fan_out must be an integer >= 1, got 0$", lambda: init_std("he", 2, 0))
    _raises(
        TypeError,
        r"^rng must be a numpy\.random\.Generator, got int$",
        lambda: init_weight("he", 2, 2, bad(0)),
    )
    assert init_weight("he", 2, 3, rng).shape == (3, 2)


def test_activations_reject_bad_input() -> None:
    nan = np.full((2, 2), np.nan)
    _raises(ValueError, r"^x must be finite", lambda: relu_forward(nan))
    _raises(ValueError, r"^x must be finite", lambda: layers.sigmoid(nan))
    _raises(ValueError, r"^x must be finite", lambda: sigmoid_forward(nan))
    relu_cache, sigmoid_cache = (
        relu_forward(np.ones((2, 2)))[1],
        sigmoid_forward(np.ones((2, 2)))[1],
    )
    backwards: list[Callable[[Array], object]] = [
        lambda d: relu_backward(d, relu_cache),
        lambda d: sigmoid_backward(d, sigmoid_cache),
    ]
    for backward in backwards:
        _raises(ValueError, r"^dout must be finite", lambda: backward(nan))  # noqa: B023
        _raises(
            ValueError,
            r"^dout must have the shape of the layer's output, \(2, 2\), got shape \(2,\)$",
            lambda: backward(np.ones(2)),  # noqa: B023
        )


def test_losses_reject_bad_labels() -> None:
    z = np.zeros((3, 4))
    _raises(
        ValueError,
        r"^labels must be class indices in \[0, 4\), got .*4.* at example 1$",
        lambda: softmax_cross_entropy_forward(z, np.array([0, 4, 1])),
    )
    _raises(
        ValueError,
        r"^labels must be class indices in \[0, 4\)",
        lambda: softmax_cross_entropy_forward(z, np.array([0, -1, 1])),
    )
    _raises(
        ValueError,
        r"^labels must hold one class index per example, 3, got shape \(2,\)$",
        lambda: softmax_cross_entropy_forward(z, np.array([0, 1])),
    )
    _raises(
        TypeError,
        r"^labels must be an integer vector of class indices or one-hot rows",
        lambda: softmax_cross_entropy_forward(z, np.array([0.0, 1.0, 2.0])),
    )
    _raises(
        ValueError,
        r"^labels must be one-hot: 0/1 values with exactly one 1 per example along class_axis=1$",
        lambda: softmax_cross_entropy_forward(z, np.full((3, 4), 0.25)),
    )
    _raises(
        ValueError,
        r"^labels must have the shape of scores \(one-hot labels\), \(3, 4\), got shape \(4, 4\)$",
        lambda: softmax_cross_entropy_forward(z, np.eye(4)),
    )
    _raises(
        ValueError,
        r"^labels must be finite",
        lambda: softmax_cross_entropy_forward(z, np.full((3, 4), np.nan)),
    )
    _raises(
        ValueError,
        r"^scores must have at least 2 classes along class_axis=1",
        lambda: softmax_cross_entropy_forward(np.zeros((3, 1)), np.zeros(3, int)),
    )
    _raises(
        ValueError,
        r"^labels must be 0 or 1 for the sigmoid cross-entropy",
        lambda: sigmoid_cross_entropy_forward(np.zeros((3, 1)), np.array([[0.0], [2.0], [1.0]])),
    )
    _raises(
        ValueError,
        r"^labels must have the shape of scores, \(3, 1\), got shape \(3,\)$",
        lambda: sigmoid_cross_entropy_forward(np.zeros((3, 1)), np.zeros(3)),
    )
    _raises(
        ValueError,
        r"^labels must be finite",
        lambda: sigmoid_cross_entropy_forward(np.zeros((3, 1)), np.full((3, 1), np.nan)),
    )


def test_losses_reject_bad_scores_and_upstream() -> None:
    _raises(ValueError, r"^scores must be a 2-D array", lambda: softmax(np.zeros(3)))
    _raises(ValueError, r"^scores must be finite", lambda: softmax(np.full((2, 2), np.inf)))
    _raises(
        ValueError,
        r"^class_axis must be in \[-2, 1\]",
        lambda: softmax(np.zeros((2, 2)), class_axis=2),
    )
    _raises(
        ValueError,
        r"^scores must hold at least one example, got shape \(0, 3\)$",
        lambda: softmax(np.zeros((0, 3))),
    )
    cache = softmax_cross_entropy_forward(np.zeros((3, 4)), np.array([0, 1, 2]))[1]
    _raises(
        ValueError,
        r"^dout must be finite, got inf$",
        lambda: softmax_cross_entropy_backward(math.inf, cache),
    )
    _raises(
        TypeError,
        r"^dout must be a real number, got str '1'$",
        lambda: softmax_cross_entropy_backward(bad("1"), cache),
    )


def test_dropout_rejects_bad_input() -> None:
    x = np.ones((2, 2))
    rng = np.random.default_rng(0)
    for p in (1.0, 1.5, -0.1):
        with pytest.raises(ValueError, match=r"^p must lie in \[0, 1"):
            dropout_forward(x, p, rng=rng)
    _raises(
        ValueError,
        r"^p must lie in \[0, 1\) \(p = 1 would drop every unit\), got 1\.0$",
        lambda: dropout_forward(x, 1.0, rng=rng),
    )
    _raises(
        TypeError,
        r"^p must be a real number, got str '0\.5'$",
        lambda: dropout_forward(x, bad("0.5"), rng=rng),
    )
    _raises(
        ValueError,
        r"^kind must be one of \['inverted', 'classic'\], got 'gaussian'$",
        lambda: dropout_forward(x, 0.5, kind=bad("gaussian"), rng=rng),
    )
    _raises(
        ValueError,
        r"^rng must be a numpy\.random\.Generator \(or mask a bool array\) in training mode, "
        r"got neither$",
        lambda: dropout_forward(x, 0.5),
    )
    _raises(
        TypeError,
        r"^mask must be a boolean array, got dtype float64$",
        lambda: dropout_forward(x, 0.5, mask=np.ones((2, 2))),
    )
    _raises(
        ValueError,
        r"^mask must have the shape of x, \(2, 2\), got shape \(2,\)$",
        lambda: dropout_forward(x, 0.5, mask=np.ones(2, bool)),
    )
    _raises(
        TypeError,
        r"^train must be a bool, got int$",
        lambda: dropout_forward(x, 0.5, train=bad(1), rng=rng),
    )
    _raises(ValueError, r"^x must be finite", lambda: dropout_forward(x * np.nan, 0.5, rng=rng))
    _raises(
        TypeError,
        r"^rng must be a numpy\.random\.Generator, got int$",
        lambda: layers.draw_mask((2,), 0.5, bad(3)),
    )
    cache = dropout_forward(x, 0.5, rng=rng)[1]
    _raises(ValueError, r"^dout must be finite", lambda: dropout_backward(x * np.nan, cache))
    _raises(
        ValueError,
        r"^dout must have the shape of the layer's output, \(2, 2\), got shape \(2,\)$",
        lambda: dropout_backward(np.ones(2), cache),
    )


def test_weight_decay_rejects_negative_lambda() -> None:
    for lam in (-0.1, math.nan, math.inf):
        with pytest.raises(
            ValueError, match=r"^weight_decay \(lambda\) must be a finite number >= 0, got "
        ):
            l2_penalty([np.ones(2)], lam)
    _raises(
        ValueError,
        r"^weight_decay \(lambda\) must be a finite number >= 0, got -1\.0$",
        lambda: l2_penalty_gradient(np.ones(2), -1.0),
    )
    _raises(
        TypeError,
        r"^weight_decay must be a real number, got str '0\.1'$",
        lambda: l2_penalty([np.ones(2)], bad("0.1")),
    )
    _raises(
        TypeError,
        r"^weights must be a sequence of arrays, got ndarray$",
        lambda: l2_penalty(bad(np.ones(2)), 0.1),
    )
    _raises(
        ValueError, r"^weights\[1\] must be finite", lambda: l2_penalty([np.ones(2), [np.nan]], 0.1)
    )
    _raises(ValueError, r"^W must be finite", lambda: l2_penalty_gradient([np.nan], 0.1))


def test_batch_norm_layer_rejects_bad_input() -> None:
    x, g, b, s = np.ones((4, 2)), np.ones(2), np.zeros(2), initial_state(2)
    _raises(
        ValueError,
        r"^mode must be one of",
        lambda: batch_norm_layer_forward(x, g, b, s, mode=bad("test")),
    )
    _raises(
        TypeError,
        r"^state must be a BatchNormState, got RunningStats$",
        lambda: batch_norm_layer_forward(x, g, b, bad(s.running), mode="train"),
    )
    nan_var = BatchNormState(RunningStats(np.zeros(2), np.array([1.0, np.nan])), 0)
    _raises(  # the running statistics a training step updates are checked like any input
        ValueError,
        r"^running_var must be finite",
        lambda: batch_norm_layer_forward(x, g, b, nan_var, mode="train"),
    )
    _raises(
        ValueError,
        r"^x must be finite",
        lambda: batch_norm_layer_forward(x * np.nan, g, b, s, mode="train"),
    )
    _raises(ValueError, r"^convention must be one of", lambda: BatchNormConfig(convention="caffe"))
    _raises(
        ValueError,
        r"^momentum=None \(the cumulative moving average\) is defined only for the conventions "
        r"\['pytorch'\], got convention 'keras'; pass a momentum in \[0, 1\]$",
        lambda: BatchNormConfig(convention="keras", momentum=None),
    )
    _raises(ValueError, r"^momentum must lie in \[0, 1\]", lambda: BatchNormConfig(momentum=1.5))
    _raises(
        ValueError, r"^eps must be a finite number > 0, got 0\.0$", lambda: BatchNormConfig(eps=0.0)
    )
    _raises(TypeError, r"^frozen must be a bool, got int$", lambda: BatchNormConfig(frozen=bad(1)))
    _raises(ValueError, r"^channels must be an integer >= 1, got 0$", lambda: initial_state(0))
    _raises(
        ValueError,
        r"^gamma must have shape \(2,\)",
        lambda: batch_norm_layer_forward(x, np.ones(3), b, s, mode="eval"),
    )
    _raises(
        ValueError,
        r"^running_mean must have shape \(2,\)",
        lambda: batch_norm_layer_forward(x, g, b, initial_state(3), mode="eval"),
    )
    _raises(
        ValueError,
        r"^x must have at least 2 values per channel in training mode \(the variance of one "
        r"value is 0 and carries no information\)",
        lambda: batch_norm_layer_forward(x[:1], g, b, s, mode="train"),
    )
    cache = batch_norm_layer_forward(x, g, b, s, mode="eval").cache
    _raises(
        ValueError,
        r"^dout must have the shape of the layer's output, \(4, 2\), got shape \(3, 2\)$",
        lambda: batch_norm_layer_backward(np.ones((3, 2)), cache),
    )
    _raises(
        ValueError,
        r"^dout must be finite",
        lambda: batch_norm_layer_backward(np.full((4, 2), np.nan), cache),
    )


# --- purity --------------------------------------------------------------------------------


def _frozen_and_unshared(out: Array, *inputs: Array) -> None:
    assert not out.flags.writeable
    for a in inputs:
        assert not np.shares_memory(out, a)


def test_no_layer_mutates_or_aliases_its_arguments() -> None:
    rng = np.random.default_rng(9)
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)
    dy2, dy3 = rng.standard_normal((4, 2)), rng.standard_normal((4, 3))
    g, be = rng.standard_normal(3), rng.standard_normal(3)
    args = [x, w, b, dy2, dy3, g, be]
    before = [a.copy() for a in args]
    state = initial_state(3)
    state_before = (state.running.mean.copy(), state.running.var.copy())

    y, c = affine_forward(x, w, b)
    grads = affine_backward(dy2, c)
    for out in (y, grads.dx, grads.dW, grads.db):
        assert out is not None
        _frozen_and_unshared(out, *args)
    out, rcache = relu_forward(x)
    _frozen_and_unshared(out, *args)
    _frozen_and_unshared(relu_backward(dy3, rcache).dx, *args)
    out, scache_ = sigmoid_forward(x)
    _frozen_and_unshared(out, *args)
    _frozen_and_unshared(sigmoid_backward(dy3, scache_).dx, *args)
    for kind in ("inverted", "classic"):
        out, dcache = dropout_forward(x, 0.0, kind=bad(kind), rng=rng)
        _frozen_and_unshared(out, *args)
        _frozen_and_unshared(dropout_backward(dy3, dcache).dx, *args)
    for mode in ("train", "eval", "frozen"):
        bn = batch_norm_layer_forward(x, g, be, state, mode=bad(mode))
        _frozen_and_unshared(bn.y, *args)
        bg = batch_norm_layer_backward(dy3, bn.cache)
        for out in (bg.dx, bg.dgamma, bg.dbeta):
            _frozen_and_unshared(out, *args)
    labels = np.array([0, 2, 1, 1])
    loss, scache = softmax_cross_entropy_forward(x, labels)
    _frozen_and_unshared(softmax_cross_entropy_backward(1.0, scache).dscores, *args)
    l2_penalty([w], 0.1)
    _frozen_and_unshared(l2_penalty_gradient(w, 0.1), *args)

    for a, a0 in zip(args, before, strict=True):
        assert np.array_equal(a, a0)
    assert np.array_equal(labels, [0, 2, 1, 1])
    assert np.array_equal(state.running.mean, state_before[0])
    assert np.array_equal(state.running.var, state_before[1])
    assert math.isfinite(loss)


class _FixedDraws(np.random.Generator):
    """A Generator whose `random` returns the given values, to place a draw exactly at p."""

    def __init__(self, draws: list[float]) -> None:
        super().__init__(np.random.PCG64(0))
        self.draws = draws

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        return np.array(self.draws).reshape(size)


def test_draw_mask_keeps_a_unit_whose_draw_is_at_least_p() -> None:
    # Kept iff u >= p for u uniform in [0, 1): probability exactly 1 - p on NumPy's grid of
    # draws (u = p itself is kept). The mask is read-only, like every mask the layer caches.
    mask = layers.draw_mask((4,), 0.5, _FixedDraws([0.5, 0.25, 0.75, 0.0]))
    assert mask.tolist() == [True, False, True, False]
    assert not mask.flags.writeable
