"""The whole network's gradient against central differences of its loss, within a derived
bound, and the broken backprops it catches.

L is a chain of the layers (tests/test_layer_gradients.py and the others check each alone), so
its rounding E_L is bounded by propagating absolute error bounds forward (`_network_rounding`),
and its third derivative is not bounded a priori but estimated by Richardson extrapolation:
with D(h) the central difference at step h, D(h) = g + c h**2 + O(h**4), so c h**2 = (D(2h) -
D(h)) / 3 up to the rounding of both, and |D(h) - g| <= |D(2h) - D(h)| / 3 + 1.5 E_L / h (the
O(h**4) rest is ~(c3)**2 = 5e-11 of the c h**2 term, inside SAFETY). The analytic gradient's
own rounding (a few g_n of the same magnitudes) is not added: it is below E_L / h by the factor
~ h / (n u) ~ 1e9 / n, and leaving it out only makes the check stricter. ReLU is not
differentiable at 0: a case where any evaluation changes the sign pattern of a ReLU input is
discarded (Hypothesis `assume`), since a central difference across a kink measures nothing.
The notation (u, g_n, c3, SAFETY, E_F) is that of tests/central_differences.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest
from central_differences import E_F, SEEDS, U, fsum, g_n, scalar
from claims import assert_holds, falsified
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

from properties.adapter import Array
from properties.framework import Measurement
from properties.tolerances import SAFETY, exact_stats, x_hat_bound
from reference import network as net
from reference.conventions import CONVENTIONS
from reference.gradcheck import default_step, numeric_gradients, relative_error
from reference.layers import BatchNormConfig, batch_norm_layer_backward, sigmoid, softmax
from reference.layers.dropout import KINDS
from reference.running_stats import RunningStats


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
    e_data = fsum(per_example) / n + 2 * U * abs(result.data_loss)
    return SAFETY * (e_data + 4 * U * result.penalty + 2 * U * abs(result.loss))


def _relu_pattern(result: net.LossResult) -> tuple[bytes, ...]:
    return tuple(np.packbits(h.pre_activation > 0).tobytes() for h in result.forward.hidden)


def check_network_gradient(case: NetworkCase) -> list[Measurement]:
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
        return scalar(res.loss)

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


@given(case=network_cases())
def test_network_gradient(case: NetworkCase) -> None:
    """Backprop through affine, batch norm, activation, dropout (fixed mask) and weight decay
    equals central differences of the loss for every parameter, within the derived bound."""
    assert_holds(check_network_gradient(case))


# --- the check catches broken backprops ------------------------------------------------------


def _fails() -> str:
    """The check on a deliberately broken gradient must fail; the active profile's settings
    without the shrink phase (a minimal example is not the point, and shrinking a failing
    gradient check is slow)."""
    no_shrink = settings(phases=[Phase.explicit, Phase.reuse, Phase.generate])
    return falsified(
        lambda case: assert_holds(check_network_gradient(case)), network_cases(), no_shrink
    )


def _patched_gradient(monkeypatch: pytest.MonkeyPatch, edit: Any) -> None:
    original = net.gradient

    def broken(*args: Any, **kwargs: Any) -> net.GradientResult:
        result = original(*args, **kwargs)
        grads = dict(result.grads)
        edit(args[0], grads, args[1])
        return result._replace(grads=grads)

    monkeypatch.setattr(net, "gradient", broken)


def test_check_catches_a_missing_weight_decay_term(monkeypatch: pytest.MonkeyPatch) -> None:
    def edit(s: net.NetworkSpec, grads: dict[str, Array], params: Mapping[str, Array]) -> None:
        for k, value in grads.items():
            if k.startswith("W"):
                grads[k] = value - s.weight_decay * params[k]

    _patched_gradient(monkeypatch, edit)
    assert "network W" in _fails()


def test_check_catches_a_gradient_of_the_wrong_layer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The last layer's bias gradient scaled by the batch size (a sum instead of a mean)."""

    def edit(s: net.NetworkSpec, grads: dict[str, Array], _params: Any) -> None:
        grads[f"b{s.num_layers}"] = 2 * grads[f"b{s.num_layers}"]

    _patched_gradient(monkeypatch, edit)
    assert "network b" in _fails()


def test_check_catches_batch_norm_treated_as_frozen(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backprop through batch norm as if the batch statistics were constants."""

    def as_frozen(dout: Any, cache: Any) -> Any:
        if cache.mode != "train":
            return batch_norm_layer_backward(dout, cache)
        x = np.moveaxis(cache.x, cache.axis, -1).reshape(-1, cache.x.shape[cache.axis])
        running = RunningStats(x.mean(axis=0), x.var(axis=0))
        return batch_norm_layer_backward(dout, cache._replace(mode="frozen", running=running))

    monkeypatch.setattr(net, "batch_norm_layer_backward", as_frozen)
    assert "network" in _fails()
