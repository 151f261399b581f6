"""Optimizers: the course's own updates reproduced bit for bit, hand-computed forms, every
rejection and purity (their invariants under derived rounding bounds:
tests/test_optimizer_invariants.py).

The seed notes (shared/seeds/000_dd8828162062c767.txt) show the course's ``model()`` calling
``initialize_velocity``, ``initialize_adam``, ``update_parameters_with_gd``,
``update_parameters_with_momentum`` and ``update_parameters_with_adam`` but not their bodies; they
are written below as the course's "Optimization Methods" notebook has them (dicts keyed "W1",
"dW1", updated in place), kept as source text and run with exec so no formatter touches them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

import numpy as np
import pytest

from properties.tolerances import U64
from reference.optimizers import (
    OPTIMIZERS,
    SGD,
    AdaGrad,
    Adam,
    AdamState,
    Momentum,
    MomentumState,
    Nesterov,
    RMSprop,
    SquareState,
    StepResult,
    bias_corrected_moments,
    equivalent_epsilon_hat,
    initialize_adam,
    initialize_velocity,
    make_optimizer,
    update_parameters_with_adam,
    update_parameters_with_gd,
    update_parameters_with_momentum,
)

COURSE_SOURCE = """\
def update_parameters_with_gd(parameters, grads, learning_rate):
    L = len(parameters) // 2
    for l in range(L):
        parameters["W" + str(l+1)] = parameters["W" + str(l+1)] - learning_rate * grads['dW' + str(l+1)]
        parameters["b" + str(l+1)] = parameters["b" + str(l+1)] - learning_rate * grads['db' + str(l+1)]
    return parameters

def initialize_velocity(parameters):
    L = len(parameters) // 2
    v = {}
    for l in range(L):
        v["dW" + str(l+1)] = np.zeros(parameters['W' + str(l+1)].shape)
        v["db" + str(l+1)] = np.zeros(parameters['b' + str(l+1)].shape)
    return v

def update_parameters_with_momentum(parameters, grads, v, beta, learning_rate):
    L = len(parameters) // 2
    for l in range(L):
        v["dW" + str(l+1)] = beta * v["dW" + str(l+1)] + (1 - beta) * grads['dW' + str(l+1)]
        v["db" + str(l+1)] = beta * v["db" + str(l+1)] + (1 - beta) * grads['db' + str(l+1)]
        parameters["W" + str(l+1)] = parameters["W" + str(l+1)] - learning_rate * v["dW" + str(l+1)]
        parameters["b" + str(l+1)] = parameters["b" + str(l+1)] - learning_rate * v["db" + str(l+1)]
    return parameters, v

def initialize_adam(parameters):
    L = len(parameters) // 2
    v = {}
    s = {}
    for l in range(L):
        v["dW" + str(l+1)] = np.zeros(parameters["W" + str(l+1)].shape)
        v["db" + str(l+1)] = np.zeros(parameters["b" + str(l+1)].shape)
        s["dW" + str(l+1)] = np.zeros(parameters["W" + str(l+1)].shape)
        s["db" + str(l+1)] = np.zeros(parameters["b" + str(l+1)].shape)
    return v, s

def update_parameters_with_adam(parameters, grads, v, s, t, learning_rate = 0.01,
                                beta1 = 0.9, beta2 = 0.999,  epsilon = 1e-8):
    L = len(parameters) // 2
    v_corrected = {}
    s_corrected = {}
    for l in range(L):
        v["dW" + str(l+1)] = beta1 * v["dW" + str(l+1)] + (1 - beta1) * grads['dW' + str(l+1)]
        v["db" + str(l+1)] = beta1 * v["db" + str(l+1)] + (1 - beta1) * grads['db' + str(l+1)]
        v_corrected["dW" + str(l+1)] = v["dW" + str(l+1)] / (1 - beta1**t)
        v_corrected["db" + str(l+1)] = v["db" + str(l+1)] / (1 - beta1**t)
        s["dW" + str(l+1)] = beta2 * s["dW" + str(l+1)] + (1 - beta2) * np.square(grads['dW' + str(l+1)])
        s["db" + str(l+1)] = beta2 * s["db" + str(l+1)] + (1 - beta2) * np.square(grads['db' + str(l+1)])
        s_corrected["dW" + str(l+1)] = s["dW" + str(l+1)] / (1 - beta2**t)
        s_corrected["db" + str(l+1)] = s["db" + str(l+1)] / (1 - beta2**t)
        parameters["W" + str(l+1)] = parameters["W" + str(l+1)] - learning_rate * v_corrected["dW" + str(l+1)] / (np.sqrt(s_corrected["dW" + str(l+1)]) + epsilon)
        parameters["b" + str(l+1)] = parameters["b" + str(l+1)] - learning_rate * v_corrected["db" + str(l+1)] / (np.sqrt(s_corrected["db" + str(l+1)]) + epsilon)
    return parameters, v, s
"""  # noqa: E501
COURSE: dict[str, Any] = {"np": np}
exec(COURSE_SOURCE, COURSE)  # the course's functions, kept as written

Arrays = dict[str, np.ndarray[Any, np.dtype[np.float64]]]
LAYERS = (3, 4, 2, 1)  # layers_dims of a 3-layer network: W1 (4, 3), ..., W3 (1, 2)


def _network(rng: np.random.Generator) -> Arrays:
    params: Arrays = {}
    for layer in range(1, len(LAYERS)):
        params[f"W{layer}"] = rng.normal(size=(LAYERS[layer], LAYERS[layer - 1]))
        params[f"b{layer}"] = rng.normal(size=(LAYERS[layer], 1))
    return params


def _course_grads(rng: np.random.Generator, params: Mapping[str, Any]) -> Arrays:
    return {
        "d" + k: rng.normal(scale=10.0 ** rng.integers(-3, 2), size=v.shape)
        for k, v in params.items()
    }


def _copy(values: Mapping[str, Any]) -> Arrays:
    return {k: np.array(v, dtype=np.float64) for k, v in values.items()}


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return list(a) == list(b) and all(np.array_equal(a[k], b[k]) for k in a)


def _plain(grads: Mapping[str, Any]) -> Arrays:
    """Course grads keyed "dW1" -> grads keyed by parameter name "W1"."""
    return {k[1:]: np.asarray(v) for k, v in grads.items()}


STEPS = 7


# --- (1) the course's own functions, bit for bit ---------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gd_equals_course(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ours: Mapping[str, Any] = _network(rng)
    theirs = _copy(ours)
    sgd, state = make_optimizer("gd", learning_rate=0.0007), None
    obj: Mapping[str, Any] = _copy(ours)
    for _ in range(STEPS):
        grads = _course_grads(rng, ours)
        theirs = COURSE["update_parameters_with_gd"](theirs, _copy(grads), 0.0007)
        ours = update_parameters_with_gd(ours, grads, 0.0007)
        obj, state = sgd.step(obj, _plain(grads), state if state is not None else sgd.init(obj))
        assert _same(ours, theirs)  # the same operations in the same order: error 0
        assert _same(obj, theirs)


@pytest.mark.parametrize(("seed", "beta"), [(0, 0.9), (1, 0.0), (2, 0.5)])
def test_momentum_equals_course(seed: int, beta: float) -> None:
    rng = np.random.default_rng(seed)
    ours: Mapping[str, Any] = _network(rng)
    theirs = _copy(ours)
    v_theirs = COURSE["initialize_velocity"](theirs)
    v_ours = initialize_velocity(ours)
    assert _same(v_ours, v_theirs)
    opt = make_optimizer("momentum", learning_rate=0.01, beta=beta)
    obj: Mapping[str, Any] = _copy(ours)
    state = opt.init(obj)
    for _ in range(STEPS):
        grads = _course_grads(rng, ours)
        theirs, v_theirs = COURSE["update_parameters_with_momentum"](
            theirs, _copy(grads), v_theirs, beta, 0.01
        )
        ours, v_ours = update_parameters_with_momentum(ours, grads, v_ours, beta, 0.01)
        obj, state = opt.step(obj, _plain(grads), state)
        assert _same(ours, theirs)
        assert _same(v_ours, v_theirs)
        assert _same(obj, theirs)


@pytest.mark.parametrize(
    ("seed", "hyper"),
    [
        (0, {}),  # the course's defaults: 0.01, 0.9, 0.999, 1e-8
        (1, {"learning_rate": 0.0007, "beta1": 0.5, "beta2": 0.9, "epsilon": 1e-3}),
        (2, {"learning_rate": 0.1, "beta1": 0.0, "beta2": 0.0, "epsilon": 1.0}),
    ],
)
def test_adam_equals_course(seed: int, hyper: dict[str, float]) -> None:
    rng = np.random.default_rng(seed)
    ours: Mapping[str, Any] = _network(rng)
    theirs = _copy(ours)
    v_theirs, s_theirs = COURSE["initialize_adam"](theirs)
    v_ours, s_ours = initialize_adam(ours)
    assert _same(v_ours, v_theirs)
    assert _same(s_ours, s_theirs)
    opt = make_optimizer("adam", **{"learning_rate": 0.01, **hyper})
    obj: Mapping[str, Any] = _copy(ours)
    state = opt.init(obj)
    for t in range(1, STEPS + 1):
        grads = _course_grads(rng, ours)
        theirs, v_theirs, s_theirs = COURSE["update_parameters_with_adam"](
            theirs, _copy(grads), v_theirs, s_theirs, t, **hyper
        )
        ours, v_ours, s_ours = update_parameters_with_adam(ours, grads, v_ours, s_ours, t, **hyper)
        obj, state = opt.step(obj, _plain(grads), state)
        assert state.t == t
        assert _same(ours, theirs)
        assert _same(v_ours, v_theirs)
        assert _same(s_ours, s_theirs)
        assert _same(obj, theirs)


# --- (2) hand-computed values of every form ---------------------------------------------------

# theta = 1, gradients 1 then 2, lr = 0.1, beta = 0.5; every number below is a short decimal
# computed by hand. RTOL: a few roundings of numbers of order 1.
RTOL = 8 * U64
HAND: dict[str, tuple[Callable[[], Any], list[float]]] = {
    # v = 0.5, theta = 1 - 0.05; v = 0.25 + 1, theta = 0.95 - 0.125
    "momentum course": (lambda: Momentum(0.1, 0.5, "course"), [0.95, 0.825]),
    # v = -0.1, theta = 0.9; v = -0.05 - 0.2, theta = 0.9 - 0.25
    "momentum classic": (lambda: Momentum(0.1, 0.5, "classic"), [0.9, 0.65]),
    # v = 1, theta = 0.9; v = 0.5 + 2, theta = 0.9 - 0.25  (classic's v is -lr times this v)
    "momentum pytorch": (lambda: Momentum(0.1, 0.5, "pytorch"), [0.9, 0.65]),
    # v = 1, theta = 1 - 0.1 (1 + 0.5); v = 2.5, theta = 0.85 - 0.1 (2 + 1.25)
    "nesterov pytorch": (lambda: Nesterov(0.1, 0.5, "pytorch"), [0.85, 0.525]),
    # v = -0.1, theta = 1 - 0.05 - 0.1; v = -0.25, theta = 0.85 - 0.125 - 0.2
    "nesterov classic": (lambda: Nesterov(0.1, 0.5, "classic"), [0.85, 0.525]),
    # theta = 1 - 0.1 = 0.9; 0.9 - 0.2
    "sgd": (lambda: SGD(0.1), [0.9, 0.7]),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_momentum_forms_by_hand(name: str) -> None:
    build, want = HAND[name]
    opt = build()
    params: Mapping[str, Any] = {"w": np.array([1.0])}
    state = opt.init(params)
    got = []
    for g in (1.0, 2.0):
        params, state = opt.step(params, {"w": np.array([g])}, state)
        got.append(float(params["w"][0]))
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=0)


# The velocity after the two steps of HAND. The forms move theta alike but scale v differently
# (classic's v is -lr times pytorch's, course's (1 - beta) times), so v tells the forms apart.
VELOCITY: dict[str, list[float]] = {
    "momentum course": [0.5, 0.25 + 1.0],  # 0.5 * 1; 0.5 * 0.5 + 0.5 * 2
    "momentum classic": [-0.1, -0.05 - 0.2],  # -0.1 * 1; 0.5 * -0.1 - 0.1 * 2
    "momentum pytorch": [1.0, 0.5 + 2.0],  # 1; 0.5 * 1 + 2
    "nesterov pytorch": [1.0, 0.5 + 2.0],
    "nesterov classic": [-0.1, -0.05 - 0.2],
}


@pytest.mark.parametrize("name", sorted(VELOCITY))
def test_velocity_of_each_form_by_hand(name: str) -> None:
    opt = HAND[name][0]()
    params: Mapping[str, Any] = {"w": np.array([1.0])}
    state = opt.init(params)
    got = []
    for g in (1.0, 2.0):
        params, state = opt.step(params, {"w": np.array([g])}, state)
        got.append(float(state.v["w"][0]))
    np.testing.assert_allclose(got, VELOCITY[name], rtol=RTOL, atol=0)


def _one(opt: Any, grads: list[float]) -> list[float]:
    params: Mapping[str, Any] = {"w": np.array([1.0])}
    state = opt.init(params)
    out = []
    for g in grads:
        params, state = opt.step(params, {"w": np.array([g])}, state)
        out.append(float(params["w"][0]))
    return out


def test_adagrad_by_hand() -> None:
    # s = 9, theta = 1 - 0.1 * 3 / (3 + 0.5); s = 25, theta -= 0.1 * 4 / (5 + 0.5)
    got = _one(AdaGrad(0.1, epsilon=0.5), [3.0, 4.0])
    first = 1 - 0.3 / 3.5
    np.testing.assert_allclose(got, [first, first - 0.4 / 5.5], rtol=RTOL, atol=0)


def test_rmsprop_epsilon_placement_by_hand() -> None:
    # s = 0.5 * 4 = 2; eps = 0.25 outside: 1 - 0.1 * 2 / (sqrt(2) + 0.25); inside: / sqrt(2.25)
    outside = _one(RMSprop(0.1, beta=0.5, epsilon=0.25, form="pytorch"), [2.0])
    inside = _one(RMSprop(0.1, beta=0.5, epsilon=0.25, form="keras"), [2.0])
    np.testing.assert_allclose(outside, [1 - 0.2 / (np.sqrt(2.0) + 0.25)], rtol=RTOL, atol=0)
    np.testing.assert_allclose(inside, [1 - 0.2 / 1.5], rtol=RTOL, atol=0)


def test_adam_forms_by_hand() -> None:
    # beta1 = 0.5, beta2 = 0.75, g = 2, t = 1: v = 1, s = 0.25 * 4 = 1, v_corrected = 2,
    # s_corrected = 4. explicit: 0.1 * 2 / (2 + 0.5) = 0.08. folded: alpha = 0.1 * 0.5 / 0.5 = 0.1,
    # eps_hat = 0.5 * 0.5 = 0.25, 0.1 * 1 / (1 + 0.25) = 0.08. keras: 0.1 * 1 / (1 + 0.5).
    hyper = {"learning_rate": 0.1, "beta1": 0.5, "beta2": 0.75, "epsilon": 0.5}
    for form, step in (("explicit", 0.08), ("folded", 0.08), ("keras", 0.1 / 1.5)):
        got = _one(Adam(**hyper, form=form), [2.0])
        np.testing.assert_allclose(got, [1 - step], rtol=RTOL, atol=0, err_msg=form)
    assert equivalent_epsilon_hat(0.5, 0.75, 1) == 0.25


def test_bias_corrected_moments_by_hand() -> None:
    opt = Adam(0.1, beta1=0.5, beta2=0.75)
    state = opt.init({"w": np.zeros(1)})
    for g in (2.0, 4.0):
        state = opt.step({"w": np.zeros(1)}, {"w": np.array([g])}, state).state
    # v = 0.5 * 1 + 0.5 * 4 = 2.5, over 1 - 0.25: 10/3; s = 0.75 * 1 + 0.25 * 16 = 4.75, over
    # 1 - 0.5625: 4.75 / 0.4375 = 76/7
    moments = bias_corrected_moments(state, 0.5, 0.75)
    np.testing.assert_allclose(moments.v_corrected["w"], [10 / 3], rtol=RTOL, atol=0)
    np.testing.assert_allclose(moments.s_corrected["w"], [76 / 7], rtol=RTOL, atol=0)


def test_classic_and_pytorch_momentum_agree_along_a_run() -> None:
    # In real arithmetic v_classic = -lr v_pytorch, so the parameters are equal. In float64, with
    # W_t = sum_i beta^(t-i) |g_i|, each velocity is within (2t + 1) u W_t of exact (two
    # roundings per step on every earlier term) and each move within (2t + 2) u lr W_t; theta
    # +- move rounds by u |theta_t|. So |theta_t - theta'_t| <= sum over steps of
    # 2 (2t + 2) u lr W_t + u (|theta_t| + |theta'_t|), times SAFETY = 2.
    rng = np.random.default_rng(5)
    grads = [{"w": rng.normal(size=20)} for _ in range(30)]
    lr, beta = 0.05, 0.9
    classic, pytorch = Momentum(lr, beta, "classic"), Momentum(lr, beta, "pytorch")
    p1: Mapping[str, Any] = {"w": rng.normal(size=20)}
    p2, s1, s2 = p1, classic.init(p1), pytorch.init(p1)
    budget, weighted = np.zeros(20), np.zeros(20)
    for t, g in enumerate(grads, 1):
        p1, s1 = classic.step(p1, g, s1)
        p2, s2 = pytorch.step(p2, g, s2)
        weighted = beta * weighted + np.abs(g["w"])
        budget += 2 * (2 * t + 2) * U64 * lr * weighted + U64 * (abs(p1["w"]) + abs(p2["w"]))
        assert np.all(np.abs(p1["w"] - p2["w"]) <= 2 * budget), t


# --- (3) rejections -------------------------------------------------------------------------


BUILDERS: dict[str, Callable[..., Any]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Nesterov,
    "adagrad": AdaGrad,
    "rmsprop": RMSprop,
    "adam": Adam,
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize(
    ("value", "error"),
    [
        (0.0, ValueError),
        (-0.1, ValueError),
        (float("nan"), ValueError),
        (float("inf"), ValueError),
        (True, TypeError),
        ("0.1", TypeError),
    ],
)
def test_rejects_learning_rate(name: str, value: Any, error: type[Exception]) -> None:
    # TypeError: "... must be a real number, got ..."; ValueError: "... must be a finite number"
    match = rf"^learning_rate must be a {'real' if error is TypeError else 'finite'} number"
    with pytest.raises(error, match=match):
        BUILDERS[name](value)
    with pytest.raises(error, match=match):
        make_optimizer(name, learning_rate=value)


# Integer hyperparameters (1 and 0 are valid for every one of them) of each optimizer.
INT_HYPER: dict[str, dict[str, int]] = {
    "sgd": {"learning_rate": 1},
    "momentum": {"learning_rate": 1, "beta": 0},
    "nesterov": {"learning_rate": 1, "beta": 0},
    "adagrad": {"learning_rate": 1, "epsilon": 1},
    "rmsprop": {"learning_rate": 1, "beta": 0, "epsilon": 1},
    "adam": {"learning_rate": 1, "beta1": 0, "beta2": 0, "epsilon": 1},
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_hyperparameters_are_stored_as_floats_and_nothing_else(name: str) -> None:
    opt = BUILDERS[name](**INT_HYPER[name])
    # The instance holds exactly its fields: the checked values replace the given ones.
    assert vars(opt) == {f.name: getattr(opt, f.name) for f in fields(opt)}
    for key, value in INT_HYPER[name].items():
        stored = getattr(opt, key)
        assert type(stored) is float, key
        assert stored == value, key


@pytest.mark.parametrize(
    ("name", "argument"),
    [
        ("momentum", "beta"),
        ("nesterov", "beta"),
        ("rmsprop", "beta"),
        ("adam", "beta1"),
        ("adam", "beta2"),
    ],
)
@pytest.mark.parametrize("value", [-0.1, 1.0, 1.5, float("nan"), float("inf")])
def test_rejects_beta_outside_unit_interval(name: str, argument: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^{argument} must lie in \[0, 1\), got "):
        make_optimizer(name, learning_rate=0.1, **{argument: value})


@pytest.mark.parametrize(
    ("name", "argument"),
    [("momentum", "beta"), ("nesterov", "beta"), ("rmsprop", "beta"), ("adam", "beta1")],
)
@pytest.mark.parametrize("value", ["0.9", True, np.array([0.9])])
def test_rejects_beta_that_is_not_a_real_number(name: str, argument: str, value: Any) -> None:
    with pytest.raises(TypeError, match=rf"^{argument} must be a real number, got "):
        make_optimizer(name, learning_rate=0.1, **{argument: value})


@pytest.mark.parametrize("name", ["adagrad", "rmsprop", "adam"])
@pytest.mark.parametrize("value", [0.0, -1e-8, float("nan"), float("inf")])
def test_rejects_epsilon(name: str, value: float) -> None:
    with pytest.raises(ValueError, match=r"^epsilon must be a finite number > 0, got "):
        make_optimizer(name, learning_rate=0.1, epsilon=value)


@pytest.mark.parametrize(
    ("name", "forms"),
    [
        ("momentum", "'course', 'classic', 'pytorch'"),
        ("nesterov", "'pytorch', 'classic'"),
        ("rmsprop", "'pytorch', 'keras'"),
        ("adam", "'explicit', 'folded', 'keras'"),
    ],
)
def test_rejects_unknown_form(name: str, forms: str) -> None:
    with pytest.raises(ValueError, match=rf"^form must be one of {forms}; got 'sutskever'$"):
        make_optimizer(name, learning_rate=0.1, form="sutskever")


@pytest.mark.parametrize("value", ["sgdm", "Adam", "", 3, None])
def test_make_optimizer_rejects_unknown_name(value: Any) -> None:
    with pytest.raises(ValueError, match=r"^optimizer must be one of") as info:
        make_optimizer(value, learning_rate=0.1)
    message = str(info.value)
    assert all(repr(name) in message for name in ("gd", "sgd", "momentum", "adam", "rmsprop"))
    assert ", ".join(map(repr, OPTIMIZERS)) in message  # the names read as a list
    assert message.endswith(f"got {value!r}")


def test_make_optimizer_rejects_unknown_and_missing_hyperparameters() -> None:
    with pytest.raises(
        TypeError,
        match=r"^hyperparameters of optimizer 'gd' are \['learning_rate'\]; "
        r"got unexpected \['beta'\]$",
    ):
        make_optimizer("gd", learning_rate=0.1, beta=0.9)
    with pytest.raises(
        TypeError, match=r"^optimizer 'adam' requires the hyperparameters \['learning_rate'\]$"
    ):
        make_optimizer("adam")


# Every optimizer name with each of its forms (None: the optimizer has one form).
EVERY_FORM = (
    ("sgd", None),
    ("momentum", "course"),
    ("momentum", "classic"),
    ("momentum", "pytorch"),
    ("nesterov", "pytorch"),
    ("nesterov", "classic"),
    ("adagrad", None),
    ("rmsprop", "pytorch"),
    ("rmsprop", "keras"),
    ("adam", "explicit"),
    ("adam", "folded"),
    ("adam", "keras"),
)


def test_make_optimizer_builds_each_name() -> None:
    for name, form in EVERY_FORM:
        opt = make_optimizer(name, learning_rate=0.1, **({} if form is None else {"form": form}))
        assert opt.name == ("sgd" if name == "gd" else name)
        assert getattr(opt, "form", None) == form
    built = {n: type(make_optimizer(n, learning_rate=0.1)) for n in ("gd", "sgd", "momentum")}
    assert built == {"gd": SGD, "sgd": SGD, "momentum": Momentum}
    opt = make_optimizer("adam", learning_rate=1e-3, beta1=0.8, form="folded")
    assert opt == Adam(1e-3, beta1=0.8, form="folded")
    assert opt.name == "adam"


PARAMS = {"W1": np.ones((2, 3)), "b1": np.zeros((2, 1))}
GRADS = {"W1": np.full((2, 3), 0.5), "b1": np.full((2, 1), -0.5)}


def _each_optimizer() -> list[Any]:
    return [
        SGD(0.1),
        Momentum(0.1),
        Momentum(0.1, form="classic"),
        Nesterov(0.1),
        AdaGrad(0.1),
        RMSprop(0.1, form="keras"),
        Adam(0.1),
        Adam(0.1, form="folded"),
    ]


@pytest.mark.parametrize("opt", _each_optimizer(), ids=repr)
@pytest.mark.parametrize(
    ("grads", "error", "match"),
    [
        (
            {"W1": GRADS["W1"]},
            ValueError,
            r"^grads must have the names of params .*missing \['b1'\]",
        ),
        ({**GRADS, "W2": np.ones(1)}, ValueError, r"^grads must have .*unexpected \['W2'\]"),
        (
            {**GRADS, "b1": np.zeros(2)},
            ValueError,
            r"^grads\['b1'\] must have the shape of params\['b1'\]",
        ),
        ({**GRADS, "b1": np.zeros((1, 2))}, ValueError, r"^grads\['b1'\] must have the shape"),
        (
            {**GRADS, "W1": np.full((2, 3), np.nan)},
            ValueError,
            r"^grads\['W1'\] must be finite, .*; pass check_finite=False to let them propagate$",
        ),
        ({**GRADS, "W1": np.full((2, 3), "x")}, TypeError, r"^grads\['W1'\] must have a real"),
        (
            [GRADS["W1"], GRADS["b1"]],
            TypeError,
            r"^grads must be a mapping from parameter names to arrays, got list$",
        ),
    ],
)
def test_rejects_mismatched_grads(opt: Any, grads: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        opt.step(PARAMS, grads, opt.init(PARAMS))


@pytest.mark.parametrize("opt", _each_optimizer(), ids=repr)
def test_rejects_bad_params(opt: Any) -> None:
    with pytest.raises(
        TypeError, match=r"^params must be a mapping from parameter names to arrays, got list$"
    ):
        opt.init([np.ones(2)])
    with pytest.raises(
        TypeError, match=r"^params must have string keys \(parameter names\), got int 1$"
    ):
        opt.init({1: np.ones(2)})
    with pytest.raises(ValueError, match=r"^params\['W1'\] must be finite"):
        opt.init({"W1": np.array([np.inf])})
    state = opt.init(PARAMS)
    with pytest.raises(TypeError, match=r"^params\['b1'\] must have a real"):
        opt.step({**PARAMS, "b1": np.array([[True], [False]])}, GRADS, state)


@pytest.mark.parametrize("opt", _each_optimizer(), ids=repr)
def test_rejects_a_foreign_state(opt: Any) -> None:
    others: list[Any] = [MomentumState({}), SquareState({}), AdamState({}, {}, 0), None, {}]
    own = type(opt.init(PARAMS))
    for state in others:
        if not isinstance(state, own):
            with pytest.raises(
                TypeError,
                match=rf"^state must be a {own.__name__} \(from this optimizer's init\), "
                rf"got {type(state).__name__}$",
            ):
                opt.step(PARAMS, GRADS, state)


def test_rejects_a_state_of_other_parameters() -> None:
    small = {"W1": np.ones((1, 3)), "b1": np.zeros((1, 1))}
    for opt in (Momentum(0.1), Nesterov(0.1)):
        with pytest.raises(ValueError, match=r"^state\.v\['W1'\] must have the shape"):
            opt.step(PARAMS, GRADS, opt.init(small))
        with pytest.raises(ValueError, match=r"^state\.v must have the names"):
            opt.step(PARAMS, GRADS, opt.init({"W1": np.ones((2, 3))}))
    for sq in (AdaGrad(0.1), RMSprop(0.1)):
        with pytest.raises(ValueError, match=r"^state\.s\['W1'\] must have the shape"):
            sq.step(PARAMS, GRADS, sq.init(small))
    adam = Adam(0.1)
    with pytest.raises(ValueError, match=r"^state\.v\['W1'\] must have the shape"):
        adam.step(PARAMS, GRADS, adam.init(small))
    good = adam.init(PARAMS)
    with pytest.raises(ValueError, match=r"^state\.s must have the names"):
        adam.step(PARAMS, GRADS, good._replace(s={"W1": np.ones((2, 3))}))
    with pytest.raises(ValueError, match=r"^state\.t must be an integer >= 0, got -1$"):
        adam.step(PARAMS, GRADS, good._replace(t=-1))
    with pytest.raises(TypeError, match=r"^state\.t must be an integer, got float"):
        adam.step(PARAMS, GRADS, good._replace(t=1.0))  # type: ignore[arg-type]  # on purpose


def test_bias_corrected_moments_and_epsilon_hat_reject() -> None:
    state = Adam(0.1).init(PARAMS)
    with pytest.raises(ValueError, match=r"^state\.t must be an integer >= 1, got 0$"):
        bias_corrected_moments(state, 0.9, 0.999)
    stepped = Adam(0.1).step(PARAMS, GRADS, state).state
    with pytest.raises(ValueError, match=r"^beta1 must lie in \[0, 1\), got 1\.0$"):
        bias_corrected_moments(stepped, 1.0, 0.999)
    with pytest.raises(TypeError, match=r"^state must be a AdamState"):
        bias_corrected_moments(MomentumState({}), 0.9, 0.999)  # type: ignore[arg-type]  # the wrong type on purpose
    with pytest.raises(ValueError, match=r"^t must be an integer >= 1, got 0$"):
        equivalent_epsilon_hat(1e-8, 0.999, 0)
    with pytest.raises(ValueError, match=r"^epsilon must be a finite number > 0, got 0\.0$"):
        equivalent_epsilon_hat(0.0, 0.999, 1)
    with pytest.raises(ValueError, match=r"^beta2 must lie in \[0, 1\), got 1\.0$"):
        equivalent_epsilon_hat(1e-8, 1.0, 1)
    with pytest.raises(ValueError, match=r"^beta2 must lie in \[0, 1\), got 1\.0$"):
        bias_corrected_moments(stepped, 0.9, 1.0)
    not_a_mapping: Any = []
    with pytest.raises(TypeError, match=r"^state\.v must be a mapping"):
        bias_corrected_moments(stepped._replace(v=not_a_mapping), 0.9, 0.999)
    with pytest.raises(ValueError, match=r"^state\.s must have the names of params"):
        bias_corrected_moments(stepped._replace(s={}), 0.9, 0.999)


COURSE_PARAMS = {"W1": np.ones((2, 3)), "b1": np.zeros((2, 1))}
COURSE_GRADS = {"dW1": np.full((2, 3), 0.5), "db1": np.full((2, 1), -0.5)}


def test_course_functions_reject() -> None:
    v = initialize_velocity(COURSE_PARAMS)
    with pytest.raises(
        ValueError,
        match=r"^grads must have the keys \['dW1', 'db1'\] "
        r"\('d' \+ each parameter name, as in the course\)",
    ):
        update_parameters_with_gd(COURSE_PARAMS, GRADS, 0.1)  # keyed "W1": not the course's
    with pytest.raises(ValueError, match=r"^grads must have the keys .*unexpected \['dA1'\]\)$"):
        update_parameters_with_gd(COURSE_PARAMS, {**COURSE_GRADS, "dA1": np.ones(1)}, 0.1)
    with pytest.raises(TypeError, match=r"^grads must be a mapping from parameter names"):
        update_parameters_with_gd(COURSE_PARAMS, [COURSE_GRADS["dW1"]], 0.1)  # type: ignore[arg-type]  # on purpose
    with pytest.raises(ValueError, match=r"^grads\['db1'\] must be finite"):
        update_parameters_with_gd(
            COURSE_PARAMS, {**COURSE_GRADS, "db1": np.full((2, 1), np.inf)}, 0.1
        )
    with pytest.raises(ValueError, match=r"^grads must have the keys .*missing \['db1'\]"):
        update_parameters_with_momentum(COURSE_PARAMS, {"dW1": COURSE_GRADS["dW1"]}, v, 0.9, 0.1)
    with pytest.raises(ValueError, match=r"^v\['dW1'\] must have the shape of parameters\['W1'\]"):
        update_parameters_with_momentum(
            COURSE_PARAMS, COURSE_GRADS, {**v, "dW1": np.ones(6)}, 0.9, 0.1
        )
    with pytest.raises(ValueError, match=r"^beta must lie in \[0, 1\), got 1\.0$"):
        update_parameters_with_momentum(COURSE_PARAMS, COURSE_GRADS, v, 1.0, 0.1)
    with pytest.raises(TypeError, match=r"^parameters must be a mapping"):
        initialize_adam([np.ones(2)])  # type: ignore[arg-type]  # the wrong type on purpose
    v, s = initialize_adam(COURSE_PARAMS)
    with pytest.raises(ValueError, match=r"^t must be an integer >= 1, got 0$"):
        update_parameters_with_adam(COURSE_PARAMS, COURSE_GRADS, v, s, 0)
    with pytest.raises(TypeError, match=r"^t must be an integer, got float 1\.0$"):
        update_parameters_with_adam(COURSE_PARAMS, COURSE_GRADS, v, s, 1.0)  # type: ignore[arg-type]  # on purpose
    with pytest.raises(ValueError, match=r"^s must have the keys"):
        update_parameters_with_adam(COURSE_PARAMS, COURSE_GRADS, v, {"dW1": s["dW1"]}, 1)
    with pytest.raises(ValueError, match=r"^v must have the keys"):
        update_parameters_with_adam(COURSE_PARAMS, COURSE_GRADS, {"dW1": v["dW1"]}, s, 1)
    with pytest.raises(ValueError, match=r"^grads must have the keys .*missing \['db1'\]"):
        update_parameters_with_adam(COURSE_PARAMS, {"dW1": COURSE_GRADS["dW1"]}, v, s, 1)
    with pytest.raises(ValueError, match=r"^epsilon must be a finite number > 0, got 0\.0$"):
        update_parameters_with_adam(COURSE_PARAMS, COURSE_GRADS, v, s, 1, epsilon=0.0)
    bad_params: Any = [np.ones(2)]
    with pytest.raises(TypeError, match=r"^parameters must be a mapping"):
        update_parameters_with_gd(bad_params, COURSE_GRADS, 0.1)
    with pytest.raises(TypeError, match=r"^parameters must be a mapping"):
        initialize_velocity(bad_params)
    with pytest.raises(TypeError, match=r"^parameters must be a mapping"):
        update_parameters_with_momentum(bad_params, COURSE_GRADS, v, 0.9, 0.1)
    with pytest.raises(TypeError, match=r"^parameters must be a mapping"):
        update_parameters_with_adam(bad_params, COURSE_GRADS, v, s, 1)


# --- (4) purity -----------------------------------------------------------------------------


def _snapshot(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: np.array(v, copy=True) for k, v in value.items()}
    if isinstance(value, tuple):
        return tuple(_snapshot(v) for v in value)
    return value


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict):
        return _same(a, b)
    if isinstance(a, tuple):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.mark.parametrize("opt", _each_optimizer(), ids=repr)
def test_step_mutates_nothing_and_returns_read_only_results(opt: Any) -> None:
    params, grads = _copy(PARAMS), _copy(GRADS)
    state = opt.init(params)
    state = opt.step(params, grads, state).state  # a nonzero state
    before = (_snapshot(params), _snapshot(grads), _snapshot(state))
    result = opt.step(params, grads, state)
    assert isinstance(result, StepResult)
    assert _equal(before, (_snapshot(params), _snapshot(grads), _snapshot(state)))
    new_arrays = list(result.params.values())
    for slot in result.state:
        if isinstance(slot, Mapping):
            new_arrays += list(slot.values())
    for arr in new_arrays:
        assert not arr.flags.writeable
        for old in [*params.values(), *grads.values()]:
            assert not np.shares_memory(arr, old)
    with pytest.raises(TypeError):
        result.params["W1"] = np.zeros((2, 3))  # type: ignore[index]  # read-only on purpose


@pytest.mark.parametrize("opt", _each_optimizer(), ids=repr)
def test_read_only_and_integer_inputs_are_accepted(opt: Any) -> None:
    params = {k: v.copy() for k, v in PARAMS.items()}
    for v in params.values():
        v.flags.writeable = False
    ints = {"W1": np.ones((2, 3), dtype=np.int64), "b1": np.zeros((2, 1), dtype=np.int32)}
    state = opt.init(params)
    new = opt.step(params, ints, state).params
    assert all(v.dtype == np.float64 for v in new.values())


def test_course_functions_mutate_nothing() -> None:
    params, grads = _copy(COURSE_PARAMS), _copy(COURSE_GRADS)
    v, s = (dict(x) for x in initialize_adam(params))
    before = (_snapshot(params), _snapshot(grads), _snapshot(v), _snapshot(s))
    update_parameters_with_gd(params, grads, 0.1)
    update_parameters_with_momentum(params, grads, v, 0.9, 0.1)
    update_parameters_with_adam(params, grads, v, s, 1)
    assert _equal(before, (_snapshot(params), _snapshot(grads), _snapshot(v), _snapshot(s)))
