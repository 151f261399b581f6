"""The network: parameters, state, layouts, evaluation mode, rejections and purity. (Its
gradient against central differences: tests/test_network_gradient.py.)"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from reference import network as net
from reference.batchnorm import batch_norm_inference
from reference.layers import BatchNormConfig

Array = NDArray[np.float64]


def bad(value: object) -> Any:
    """A wrongly typed argument, passed on purpose (the type checker would refuse it)."""
    return value


def spec(**kwargs: Any) -> net.NetworkSpec:
    base: dict[str, Any] = {"input_size": 3, "hidden_sizes": (4, 3), "output_size": 3}
    base.update(kwargs)
    return net.NetworkSpec(**base)


def data(s: net.NetworkSpec, n: int = 6, seed: int = 0) -> tuple[Array, NDArray[Any]]:
    rng = np.random.default_rng(seed)
    fa = s.feature_axis
    X = rng.standard_normal((n, s.input_size) if fa == 1 else (s.input_size, n))
    if s.output == "softmax":
        return X, rng.integers(0, s.output_size, n)
    shape = (n, s.output_size) if fa == 1 else (s.output_size, n)
    return X, rng.integers(0, 2, shape).astype(np.float64)


# --- parameters and state ------------------------------------------------------------------


def test_parameter_names_and_shapes() -> None:
    plain = spec()
    assert dict(plain.param_shapes()) == {
        "W1": (4, 3),
        "b1": (4,),
        "W2": (3, 4),
        "b2": (3,),
        "W3": (3, 3),
        "b3": (3,),
    }
    with_bn = spec(batch_norm=BatchNormConfig())
    # No bias before batch norm: the mean subtraction would cancel it.
    assert list(with_bn.param_shapes()) == [
        "W1",
        "gamma1",
        "beta1",
        "W2",
        "gamma2",
        "beta2",
        "W3",
        "b3",
    ]
    p = net.init_params(with_bn, np.random.default_rng(0))
    assert np.array_equal(p["gamma1"], np.ones(4))
    assert np.array_equal(p["beta2"], np.zeros(3))
    with pytest.raises(TypeError):
        p["W1"] = np.zeros((4, 3))  # type: ignore[index]  # the mapping is read-only
    assert not p["W1"].flags.writeable
    again = net.init_params(with_bn, np.random.default_rng(0))
    assert all(np.array_equal(p[k], again[k]) for k in p)


def test_init_uses_the_named_standard_deviation() -> None:
    s = spec(weight_init="xavier", hidden_sizes=(4,))
    p = net.init_params(s, np.random.default_rng(1))
    rng = np.random.default_rng(1)
    assert np.array_equal(p["W1"], math.sqrt(1 / 3) * rng.standard_normal((4, 3)))
    assert np.array_equal(p["W2"], math.sqrt(1 / 4) * rng.standard_normal((3, 4)))


def test_gradient_has_the_parameters_names_in_order() -> None:
    s = spec(batch_norm=BatchNormConfig(), dropout=net.DropoutSpec(0.2), weight_decay=0.1)
    p = net.init_params(s, np.random.default_rng(0))
    X, y = data(s)
    g = net.gradient(s, p, net.init_state(s), X, y, rng=np.random.default_rng(1))
    assert list(g.grads) == list(p)
    assert all(g.grads[k].shape == p[k].shape for k in p)


def test_training_pass_returns_new_state_and_leaves_the_old_one() -> None:
    s = spec(batch_norm=BatchNormConfig(convention="pytorch"))
    p = net.init_params(s, np.random.default_rng(0))
    state = net.init_state(s)
    X, y = data(s)
    g = net.gradient(s, p, state, X, y)
    assert state.batch_norm[0].num_batches_tracked == 0
    assert np.array_equal(state.batch_norm[0].running.mean, np.zeros(4))
    assert g.state.batch_norm[0].num_batches_tracked == 1
    assert not np.array_equal(g.state.batch_norm[0].running.mean, np.zeros(4))
    frozen_spec = spec(batch_norm=BatchNormConfig(frozen=True))
    kept = net.gradient(frozen_spec, p, state, X, y).state
    assert kept.batch_norm[0] is state.batch_norm[0]


def test_eval_mode_uses_the_running_statistics() -> None:
    s = spec(hidden_sizes=(4,), batch_norm=BatchNormConfig(convention="textbook"))
    p = net.init_params(s, np.random.default_rng(0))
    X, y = data(s, n=8)
    state = net.init_state(s)
    for seed in range(5):
        state = net.gradient(s, p, state, data(s, n=8, seed=seed + 1)[0], y).state
    scores = net.predict(s, p, state, X)
    rs = state.batch_norm[0].running
    z = X @ p["W1"].T
    u = batch_norm_inference(z, p["gamma1"], p["beta1"], rs.mean, rs.var, eps=1e-5)
    want = np.maximum(u, 0) @ p["W2"].T + p["b2"]
    assert np.allclose(scores, want, rtol=1e-13, atol=1e-15)
    # The batch's own statistics would give other scores, and eval mode is per example.
    train_scores = net.forward(s, p, state, X, train=True).scores
    assert not np.allclose(train_scores, scores, rtol=1e-6)
    one_by_one = np.vstack([net.predict(s, p, state, X[i : i + 1]) for i in range(8)])
    assert np.allclose(one_by_one, scores, rtol=1e-14, atol=1e-15)


def test_layouts_agree() -> None:
    """feature_axis=0 on X.T gives the transposed scores; small integers keep every product
    and sum exact, so the two agree bit for bit."""
    s1, s0 = spec(hidden_sizes=(3,)), spec(hidden_sizes=(3,), feature_axis=0)
    rng = np.random.default_rng(2)
    p = {k: rng.integers(-3, 4, v).astype(np.float64) for k, v in s1.param_shapes().items()}
    X = rng.integers(-3, 4, (5, 3)).astype(np.float64)
    st1, st0 = net.init_state(s1), net.init_state(s0)
    assert np.array_equal(net.predict(s0, p, st0, X.T), net.predict(s1, p, st1, X).T)
    y = np.array([0, 1, 2, 1, 0])
    assert net.loss(s0, p, st0, X.T, y).loss == pytest.approx(
        net.loss(s1, p, st1, X, y).loss, rel=1e-15
    )


def test_dropout_masks_make_the_loss_reproducible() -> None:
    s = spec(dropout=net.DropoutSpec(0.5, "classic"))
    p = net.init_params(s, np.random.default_rng(0))
    X, y = data(s)
    state = net.init_state(s)
    g = net.gradient(s, p, state, X, y, rng=np.random.default_rng(3))
    assert len(g.masks) == 2
    again = net.loss(s, p, state, X, y, train=True, masks=g.masks)
    assert again.loss == g.loss
    eval_a = net.loss(s, p, state, X, y)
    eval_b = net.loss(s, p, state, X, y)
    assert eval_a.loss == eval_b.loss  # no randomness at test time
    assert eval_a.masks == ()


def test_accuracy() -> None:
    s = spec(hidden_sizes=())
    p = {"W1": np.eye(3), "b1": np.zeros(3)}
    X = np.array([[3.0, 0, 0], [0, 2.0, 0], [0, 0, 1.0], [1.0, 0, 0]])
    state = net.init_state(s)
    assert net.accuracy(s, p, state, X, np.array([0, 1, 2, 1])) == 0.75
    assert net.accuracy(s, p, state, X, np.eye(3)[[0, 1, 2, 0]]) == 1.0
    b = spec(hidden_sizes=(), output_size=1, output="sigmoid", input_size=1)
    pb = {"W1": np.array([[1.0]]), "b1": np.array([0.0])}
    Xb, yb = np.array([[-1.0], [2.0]]), np.array([[0.0], [0.0]])
    assert net.accuracy(b, pb, net.init_state(b), Xb, yb) == 0.5


@pytest.mark.parametrize(("bias", "predicted"), [(0.0, 0.0), (0.5, 1.0)])
def test_sigmoid_accuracy_predicts_one_iff_the_score_is_positive(
    bias: float, predicted: float
) -> None:
    # With W = 0 every score is the bias: score 0 is probability exactly 1/2, not > 1/2, so
    # the prediction is 0; score 0.5 (probability 0.62) predicts 1.
    b = spec(hidden_sizes=(), output_size=1, output="sigmoid", input_size=1)
    pb = {"W1": np.zeros((1, 1)), "b1": np.array([bias])}
    X, y = np.ones((4, 1)), np.array([[0.0], [1.0], [predicted], [predicted]])
    assert net.accuracy(b, pb, net.init_state(b), X, y) == 0.75


# --- rejections ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"activation": "tanh"}, ValueError, r"^activation must be one of"),
        ({"output": "linear"}, ValueError, r"^output must be one of"),
        ({"output_size": 1}, ValueError, r"^output_size must be >= 2 for a softmax output, got 1$"),
        (
            {"weight_decay": -0.1},
            ValueError,
            r"^weight_decay \(lambda\) must be .* >= 0, got -0\.1$",
        ),
        ({"weight_decay": math.nan}, ValueError, r"^weight_decay \(lambda\) must be"),
        (
            {"hidden_sizes": (3, 0)},
            ValueError,
            r"^hidden_sizes\[1\] must be an integer >= 1, got 0$",
        ),
        (
            {"hidden_sizes": 3},
            TypeError,
            r"^hidden_sizes must be a sequence of integers, got int$",
        ),
        ({"input_size": 0}, ValueError, r"^input_size must be an integer >= 1, got 0$"),
        ({"output_size": 0}, ValueError, r"^output_size must be an integer >= 1, got 0$"),
        ({"feature_axis": 2}, ValueError, r"^feature_axis must be in \[-2, 1\]"),
        ({"weight_init": "uniform"}, ValueError, r"^weight_init must be one of"),
        (
            {"batch_norm": True},
            TypeError,
            r"^batch_norm must be a BatchNormConfig or None, got bool$",
        ),
        ({"dropout": 0.5}, TypeError, r"^dropout must be a DropoutSpec or None, got float$"),
    ],
)
def test_spec_rejects(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        spec(**kwargs)


def test_dropout_spec_rejects() -> None:
    with pytest.raises(ValueError, match=r"^p must lie in \[0, 1\)"):
        net.DropoutSpec(1.0)
    with pytest.raises(ValueError, match=r"^kind must be one of"):
        net.DropoutSpec(0.5, bad("spatial"))


def test_calls_reject_bad_input() -> None:
    s = spec(batch_norm=BatchNormConfig(), dropout=net.DropoutSpec(0.5))
    p = net.init_params(s, np.random.default_rng(0))
    state = net.init_state(s)
    X, y = data(s)
    rng = np.random.default_rng(1)
    missing = {k: v for k, v in p.items() if k != "beta2"}
    with pytest.raises(
        ValueError, match=r"^params must have exactly the names .*missing \['beta2'\]"
    ):
        net.loss(s, missing, state, X, y)
    with pytest.raises(ValueError, match=r"^params\['W1'\] must have shape \(4, 3\)"):
        net.loss(s, {**p, "W1": np.ones((3, 4))}, state, X, y)
    with pytest.raises(TypeError, match=r"^state must be a NetworkState, got NoneType$"):
        net.loss(s, p, bad(None), X, y)
    # A list of the layers' states is a plausible slip; the message names its type.
    with pytest.raises(TypeError, match=r"^state must be a NetworkState, got list$"):
        net.loss(s, p, bad(list(state.batch_norm)), X, y)
    with pytest.raises(ValueError, match=r"^state must hold 2 batch-norm state"):
        net.loss(s, p, net.NetworkState(), X, y)
    with pytest.raises(ValueError, match=r"^X must have shape \(N, input_size\)"):
        net.loss(s, p, state, X.T, y)
    s0 = spec(feature_axis=0)
    p0 = net.init_params(s0, np.random.default_rng(0))
    with pytest.raises(
        ValueError,
        match=r"^X must have shape \(input_size, N\) with input_size 3, got shape \(6, 3\)$",
    ):
        net.loss(s0, p0, net.init_state(s0), X, y)
    with pytest.raises(ValueError, match=r"^labels must be class indices in \[0, 3\)"):
        net.loss(s, p, state, X, np.array([0, 1, 2, 3, 0, 1]))
    with pytest.raises(
        ValueError,
        match=r"^X must hold at least 2 examples in training mode with batch norm \(one value has "
        r"no variance\), got shape \(1, 3\)$",
    ):
        net.gradient(s, p, state, X[:1], y[:1], rng=rng)
    with pytest.raises(
        ValueError,
        match=r"^rng must be a numpy\.random\.Generator \(or masks given\) for a training-mode "
        r"pass with dropout, got neither$",
    ):
        net.gradient(s, p, state, X, y)
    keep = [np.ones((6, 4), bool), np.ones((6, 3), bool)]
    # One array per layer, but not as a sequence: a short list, a mapping keyed by layer, and
    # a stacked ndarray (here (2, 6, 4): its rows have the shapes of neither layer's mask).
    for wrong in ([keep[0]], {1: keep[0], 2: keep[1]}, np.ones((2, 6, 4), bool)):
        with pytest.raises(
            ValueError, match=r"^masks must be a sequence of 2 bool arrays, one per hidden layer$"
        ):
            net.gradient(s, p, state, X, y, masks=bad(wrong))
    plain = spec()
    pp = net.init_params(plain, rng)
    with pytest.raises(
        TypeError, match=r"^params must be a mapping from names to arrays, got list$"
    ):
        net.loss(s, bad(list(p.items())), state, X, y)
    with pytest.raises(ValueError, match=r"^params\['W2'\] must be finite"):
        net.loss(s, {**p, "W2": np.full((3, 4), np.inf)}, state, X, y)
    with pytest.raises(TypeError, match=r"^params\['gamma1'\] must be a real numeric array"):
        net.loss(s, {**p, "gamma1": bad("1")}, state, X, y)
    with pytest.raises(ValueError, match=r"^X must be finite"):
        net.loss(s, p, state, X * np.nan, y)
    with pytest.raises(ValueError, match=r"^X must hold at least one example, got shape \(0, 3\)$"):
        net.loss(s, p, state, X[:0], y[:0])
    with pytest.raises(ValueError, match=r"^masks must be None for a network without dropout$"):
        net.loss(plain, pp, net.init_state(plain), X, y, train=True, masks=[])


# --- purity --------------------------------------------------------------------------------


def test_nothing_is_mutated() -> None:
    s = spec(batch_norm=BatchNormConfig(), dropout=net.DropoutSpec(0.3), weight_decay=0.1)
    p = {k: np.array(v) for k, v in net.init_params(s, np.random.default_rng(0)).items()}
    X, y = data(s)
    state = net.init_state(s)
    snapshot = ({k: v.copy() for k, v in p.items()}, X.copy(), y.copy())
    running = [(b.running.mean.copy(), b.running.var.copy()) for b in state.batch_norm]
    g = net.gradient(s, p, state, X, y, rng=np.random.default_rng(1))
    net.loss(s, p, g.state, X, y, train=True, masks=g.masks)
    net.predict(s, p, g.state, X)
    net.accuracy(s, p, g.state, X, y)
    assert all(np.array_equal(p[k], snapshot[0][k]) for k in p)
    assert np.array_equal(X, snapshot[1])
    assert np.array_equal(y, snapshot[2])
    for b, (m, v) in zip(state.batch_norm, running, strict=True):
        assert np.array_equal(b.running.mean, m)
        assert np.array_equal(b.running.var, v)
    for k, grad in g.grads.items():
        assert not grad.flags.writeable
        assert not np.shares_memory(grad, p[k])


def test_loss_draws_its_dropout_masks_from_the_rng_given() -> None:
    # The same Generator seed gives the same masks as forward's; without rng (or masks) a
    # training pass with dropout has nothing to draw from and is rejected.
    s = spec(dropout=net.DropoutSpec(0.5))
    p = net.init_params(s, np.random.default_rng(0))
    X, y = data(s)
    state = net.init_state(s)
    fwd = net.forward(s, p, state, X, train=True, rng=np.random.default_rng(7))
    got = net.loss(s, p, state, X, y, train=True, rng=np.random.default_rng(7))
    assert len(got.masks) == len(fwd.masks) == 2
    for a, b in zip(got.masks, fwd.masks, strict=True):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    assert np.array_equal(got.forward.scores, fwd.scores)
    with pytest.raises(ValueError, match=r"^rng must be a numpy\.random\.Generator"):
        net.loss(s, p, state, X, y, train=True)


def test_loss_returns_the_updated_state_in_training_and_the_given_one_otherwise() -> None:
    s = spec(batch_norm=BatchNormConfig())
    p = net.init_params(s, np.random.default_rng(1))
    X, y = data(s)
    state = net.init_state(s)
    trained = net.loss(s, p, state, X, y, train=True)
    fwd = net.forward(s, p, state, X, train=True)

    def leaves(st: net.NetworkState) -> list[Any]:
        return [v for b in st.batch_norm for v in (*b.running, b.num_batches_tracked)]

    pairs = zip(leaves(trained.state), leaves(fwd.state), strict=True)
    assert all(np.array_equal(a, b) for a, b in pairs)
    assert [b.num_batches_tracked for b in trained.state.batch_norm] == [1, 1]  # moved
    assert net.loss(s, p, state, X, y).state is state


@pytest.mark.parametrize("p", [np.float32(0.25), 0.25, 0])
def test_dropout_spec_stores_p_as_a_python_float(p: Any) -> None:
    stored = net.DropoutSpec(p).p
    assert type(stored) is float
    assert stored == float(p)


@pytest.mark.parametrize("kind", [np.str_("classic"), "inverted"])
def test_dropout_spec_stores_kind_as_a_python_str(kind: Any) -> None:
    stored: object = net.DropoutSpec(0.5, kind).kind
    assert type(stored) is str
    assert stored == str(kind)


def test_spec_stores_its_normalized_values() -> None:
    """A list of sizes becomes a tuple of ints (hashable, immutable), weight_decay a float and
    feature_axis the non-negative axis that the layers index with."""
    s = spec(hidden_sizes=[np.int64(4), 3], weight_decay=np.float32(0.25), feature_axis=-2)
    assert type(s.hidden_sizes) is tuple
    assert s.hidden_sizes == (4, 3)
    assert all(type(h) is int for h in s.hidden_sizes)
    assert type(s.weight_decay) is float
    assert s.weight_decay == 0.25  # 0.25 is exact in float32
    assert type(s.feature_axis) is int
    assert s.feature_axis == 0
    assert spec(feature_axis=np.int64(-1)).feature_axis == 1
    hash(s)  # every field is hashable once normalized
    assert spec(weight_decay=1).weight_decay == 1.0
    assert type(spec(weight_decay=1).weight_decay) is float


def test_a_negative_feature_axis_gives_the_layout_of_its_normalized_axis() -> None:
    s0, s_neg = spec(feature_axis=0), spec(feature_axis=-2)
    p = net.init_params(s0, np.random.default_rng(0))
    X, y = data(s0)
    st = net.init_state(s0)
    assert np.array_equal(net.predict(s_neg, p, st, X), net.predict(s0, p, st, X))
    assert net.loss(s_neg, p, st, X, y).loss == net.loss(s0, p, st, X, y).loss


def test_forward_uses_the_spec_batch_norm_config() -> None:
    """eps, convention and momentum of spec.batch_norm, none of them the default config's:
    u = (z - mean) / sqrt(var + eps) with the biased batch variance; PyTorch's update
    rm' = (1 - m) rm + m mean, rv' = (1 - m) rv + m n/(n-1) var from rm = 0, rv = 1."""
    cfg = BatchNormConfig(convention="pytorch", momentum=0.5, eps=0.25)
    s = spec(hidden_sizes=(4,), batch_norm=cfg)
    p = net.init_params(s, np.random.default_rng(0))
    X, _ = data(s, n=6)
    fwd = net.forward(s, p, net.init_state(s), X, train=True)
    z = fwd.hidden[0].z
    mean, var = z.mean(axis=0), z.var(axis=0)
    # |u| <= sqrt(n - 1) ~ 2.3 (z - mean over std) and var + eps >= 0.25: each of the few
    # roundings (mean, var, difference, sqrt, divide) costs <= n u relative, so 1e-14 absolute
    # is ~ 20x that bound.
    want_u = (z - mean) / np.sqrt(var + 0.25)
    assert np.allclose(fwd.hidden[0].pre_activation, want_u, rtol=0, atol=1e-14)
    running = fwd.state.batch_norm[0].running
    assert np.allclose(running.mean, 0.5 * mean, rtol=1e-14, atol=0)
    assert np.allclose(running.var, 0.5 + 0.5 * 6 / 5 * var, rtol=1e-14, atol=0)
    # The eps reaches the backward pass too (through the cache).
    assert fwd.hidden[0].batch_norm is not None
    assert fwd.hidden[0].batch_norm.eps == 0.25


@pytest.mark.parametrize("train", [True, False])
def test_forward_applies_the_spec_dropout_kind(train: bool) -> None:
    """Classic dropout: y = a * mask in training (no 1/(1-p) scaling), y = a * (1 - p) at test
    time; the inverted form would give 2a and a with p = 1/2."""
    s = spec(hidden_sizes=(4,), dropout=net.DropoutSpec(0.5, "classic"))
    p = net.init_params(s, np.random.default_rng(0))
    X, _ = data(s)
    mask = np.arange(24).reshape(6, 4) % 3 != 0
    masks = [mask] if train else None
    h = net.forward(s, p, net.init_state(s), X, train=train, masks=masks).hidden[0]
    a = np.maximum(h.pre_activation, 0)
    # Products by 1, 0 or 0.5 are exact.
    assert np.array_equal(h.output, a * mask if train else a * 0.5)


def test_gradient_loss_includes_the_weight_decay_penalty() -> None:
    """loss = data loss + 0.5 lambda sum_l sum(W_l**2), the same value as `loss` in training
    mode with the same masks."""
    lam = 0.1
    s = spec(dropout=net.DropoutSpec(0.2), weight_decay=lam)
    p = net.init_params(s, np.random.default_rng(0))
    X, y = data(s)
    state = net.init_state(s)
    g = net.gradient(s, p, state, X, y, rng=np.random.default_rng(4))
    ref = net.loss(s, p, state, X, y, train=True, masks=g.masks)
    squares = math.fsum(float(np.sum(p[f"W{k}"] ** 2)) for k in (1, 2, 3))
    # fsum of 3 partial sums of <= 12 squares each: relative error <= 12 u of the exact sum.
    assert ref.penalty == pytest.approx(0.5 * lam * squares, rel=1e-14, abs=0)
    assert ref.penalty > 0.01 * ref.data_loss  # large enough to tell + from -
    assert g.loss == ref.loss == ref.data_loss + ref.penalty
