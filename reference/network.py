"""A multi-layer network of `reference.layers`, as pure functions of (spec, params, state, data).

Per hidden layer l = 1..H, then the output layer L = H + 1::

    z_l = affine(a_(l-1); W_l, b_l)          b_l is absent when batch norm follows
    u_l = batch_norm(z_l; gamma_l, beta_l)   if spec.batch_norm, else u_l = z_l
    a_l = dropout(activation(u_l))           dropout if spec.dropout (a_0 = X)
    scores = affine(a_H; W_L, b_L)
    loss = output loss(scores, y) + 0.5 * weight_decay * sum_l sum(W_l**2)

The order affine -> batch norm -> activation -> dropout is DLFS's MultiLayerNetExtend
(oreilly-japan/deep-learning-from-scratch, common/multi_layer_net_extend.py), without the bias
before batch norm. The output loss is the softmax cross-entropy or the sigmoid binary
cross-entropy (`reference.layers.losses`), both means over the examples.

Parameters are an immutable mapping name -> read-only array: "W1", "b1" (no "b" before batch
norm), "gamma1", "beta1", ..., "WL", "bL"; W_l has shape (out, in), the rest (out,). The state
holds each batch-norm layer's running statistics; a training-mode pass returns a new state and
never edits the one it was given. `spec.feature_axis` is 1 for X of shape (N, features) and 0
for the course's (features, N); scores and one-hot or binary labels follow the same layout.

Randomness: dropout masks are drawn from a numpy Generator, layer by layer, or given as
`masks` (one bool array per hidden layer, the shape of its activation), which makes a
training-mode loss a deterministic function of the parameters (for gradient checks).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, NDArray

from reference._validation import (
    Float64Array,
    as_float64_array,
    check_int,
    frozen,
    normalize_axis,
)
from reference.layers import (
    AffineCache,
    BatchNormCache,
    BatchNormConfig,
    BatchNormMode,
    BatchNormState,
    DropoutCache,
    DropoutKind,
    ReluCache,
    SigmoidCache,
    affine_backward,
    affine_forward,
    batch_norm_layer_backward,
    batch_norm_layer_forward,
    check_drop_probability,
    check_weight_decay,
    dropout_backward,
    dropout_forward,
    init_std,
    init_weight,
    initial_state,
    l2_penalty,
    relu_backward,
    relu_forward,
    sigmoid_backward,
    sigmoid_cross_entropy_backward,
    sigmoid_cross_entropy_forward,
    sigmoid_forward,
    softmax_cross_entropy_backward,
    softmax_cross_entropy_forward,
)
from reference.layers.affine import InitMethod
from reference.layers.dropout import check_kind
from reference.layers.losses import (
    SigmoidCrossEntropyCache,
    SoftmaxCrossEntropyCache,
    binary_labels,
    one_hot_targets,
)

Activation = Literal["relu", "sigmoid"]
OutputLoss = Literal["softmax", "sigmoid"]
ACTIVATIONS: tuple[Activation, ...] = ("relu", "sigmoid")
OUTPUT_LOSSES: tuple[OutputLoss, ...] = ("softmax", "sigmoid")
Params = Mapping[str, Float64Array]
Mask = NDArray[np.bool_]


@dataclass(frozen=True)
class DropoutSpec:
    """Dropout after every hidden activation: drop probability p in [0, 1) and the form."""

    p: float
    kind: DropoutKind = "inverted"

    def __post_init__(self) -> None:
        object.__setattr__(self, "p", check_drop_probability(self.p))
        object.__setattr__(self, "kind", check_kind(self.kind))


@dataclass(frozen=True)
class NetworkSpec:
    """The architecture: sizes, activation, initialisation, batch norm, dropout, weight decay,
    output loss and layout (see the module docstring). Validated on construction."""

    input_size: int
    hidden_sizes: Sequence[int]
    output_size: int
    activation: Activation = "relu"
    weight_init: InitMethod | float = "he"
    batch_norm: BatchNormConfig | None = None
    dropout: DropoutSpec | None = None
    weight_decay: float = 0.0
    output: OutputLoss = "softmax"
    feature_axis: int = 1

    def __post_init__(self) -> None:
        check_int(self.input_size, "input_size", minimum=1)
        check_int(self.output_size, "output_size", minimum=1)
        if isinstance(self.hidden_sizes, (str, bytes)) or not isinstance(
            self.hidden_sizes, Sequence
        ):
            raise TypeError(
                "hidden_sizes must be a sequence of integers, "
                f"got {type(self.hidden_sizes).__name__}"
            )
        sizes = tuple(
            check_int(h, f"hidden_sizes[{i}]", minimum=1) for i, h in enumerate(self.hidden_sizes)
        )
        object.__setattr__(self, "hidden_sizes", sizes)
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {list(ACTIVATIONS)}, got {self.activation!r}"
            )
        if self.output not in OUTPUT_LOSSES:
            raise ValueError(f"output must be one of {list(OUTPUT_LOSSES)}, got {self.output!r}")
        if self.output == "softmax" and self.output_size < 2:
            raise ValueError(
                f"output_size must be >= 2 for a softmax output, got {self.output_size}"
            )
        init_std(self.weight_init, 1, 1)  # raises for an unknown method or a bad std
        for name, value, kind in (
            ("batch_norm", self.batch_norm, BatchNormConfig),
            ("dropout", self.dropout, DropoutSpec),
        ):
            if value is not None and not isinstance(value, kind):
                raise TypeError(
                    f"{name} must be a {kind.__name__} or None, got {type(value).__name__}"
                )
        object.__setattr__(self, "weight_decay", check_weight_decay(self.weight_decay))
        object.__setattr__(
            self, "feature_axis", normalize_axis(self.feature_axis, 2, "feature_axis")
        )

    @property
    def sizes(self) -> tuple[int, ...]:
        """(input_size, *hidden_sizes, output_size)."""
        return (self.input_size, *self.hidden_sizes, self.output_size)

    @property
    def num_layers(self) -> int:
        """L, the number of affine layers (hidden layers + 1)."""
        return len(self.sizes) - 1

    def param_shapes(self) -> Mapping[str, tuple[int, ...]]:
        """Each parameter's name and shape, in the order W1, b1, gamma1, beta1, ..., WL, bL."""
        shapes: dict[str, tuple[int, ...]] = {}
        sizes = self.sizes
        for layer in range(1, self.num_layers + 1):
            fan_in, fan_out = sizes[layer - 1], sizes[layer]
            shapes[f"W{layer}"] = (fan_out, fan_in)
            hidden_bn = self.batch_norm is not None and layer < self.num_layers
            if hidden_bn:
                shapes[f"gamma{layer}"] = (fan_out,)
                shapes[f"beta{layer}"] = (fan_out,)
            else:
                shapes[f"b{layer}"] = (fan_out,)
        return MappingProxyType(shapes)


@dataclass(frozen=True)
class NetworkState:
    """One `BatchNormState` per hidden layer when the network has batch norm, else ()."""

    batch_norm: tuple[BatchNormState, ...] = ()


def init_params(spec: NetworkSpec, rng: np.random.Generator) -> Params:
    """W_l drawn by `spec.weight_init` from `rng` (layer by layer), b_l = 0, gamma_l = 1,
    beta_l = 0."""
    params: dict[str, Float64Array] = {}
    for name, shape in spec.param_shapes().items():
        if name.startswith("W"):
            params[name] = init_weight(spec.weight_init, shape[1], shape[0], rng)
        elif name.startswith("gamma"):
            params[name] = frozen(np.ones(shape))
        else:
            params[name] = frozen(np.zeros(shape))
    return MappingProxyType(params)


def init_state(spec: NetworkSpec) -> NetworkState:
    """Running mean 0 and variance 1 for every batch-norm layer."""
    if spec.batch_norm is None:
        return NetworkState()
    return NetworkState(tuple(initial_state(h) for h in spec.hidden_sizes))


def check_params(spec: NetworkSpec, params: Mapping[str, ArrayLike]) -> Params:
    """`params` as read-only float64 arrays after checking the names and shapes of the spec."""
    if not isinstance(params, Mapping):
        raise TypeError(
            f"params must be a mapping from names to arrays, got {type(params).__name__}"
        )
    shapes = spec.param_shapes()
    if set(params) != set(shapes):
        raise ValueError(
            f"params must have exactly the names {list(shapes)}, got {list(params)} (missing "
            f"{sorted(set(shapes) - set(params))}, unexpected {sorted(set(params) - set(shapes))})"
        )
    out: dict[str, Float64Array] = {}
    for name, shape in shapes.items():
        arr = as_float64_array(params[name], f"params[{name!r}]")
        if arr.shape != shape:
            raise ValueError(f"params[{name!r}] must have shape {shape}, got shape {arr.shape}")
        out[name] = arr
    return MappingProxyType(out)


def _check_state(spec: NetworkSpec, state: NetworkState) -> None:
    if not isinstance(state, NetworkState):
        raise TypeError(f"state must be a NetworkState, got {type(state).__name__}")
    want = len(spec.hidden_sizes) if spec.batch_norm is not None else 0
    if len(state.batch_norm) != want:
        raise ValueError(
            f"state must hold {want} batch-norm state(s), one per hidden layer with batch norm, "
            f"got {len(state.batch_norm)}"
        )


def _check_inputs(spec: NetworkSpec, X: ArrayLike) -> Float64Array:
    x = as_float64_array(X, "X")
    fa = spec.feature_axis
    if x.ndim != 2 or x.shape[fa] != spec.input_size:
        want = "(N, input_size)" if fa == 1 else "(input_size, N)"
        raise ValueError(
            f"X must have shape {want} with input_size {spec.input_size}, got shape {x.shape}"
        )
    if x.shape[1 - fa] == 0:
        raise ValueError(f"X must hold at least one example, got shape {x.shape}")
    return x


def _check_masks(spec: NetworkSpec, masks: object) -> tuple[ArrayLike | None, ...]:
    count = len(spec.hidden_sizes)
    if masks is None:
        return (None,) * count
    if spec.dropout is None:
        raise ValueError("masks must be None for a network without dropout")
    if not isinstance(masks, Sequence) or len(masks) != count:  # an ndarray is no Sequence
        raise ValueError(f"masks must be a sequence of {count} bool arrays, one per hidden layer")
    return tuple(masks)


class HiddenLayerCache(NamedTuple):
    """One hidden layer's caches and values: z (affine output), u (activation input) and a
    (the layer's output, after dropout)."""

    affine: AffineCache
    batch_norm: BatchNormCache | None
    activation: ReluCache | SigmoidCache
    dropout: DropoutCache | None
    z: Float64Array
    pre_activation: Float64Array
    output: Float64Array


class NetworkForward(NamedTuple):
    """The scores, every layer's cache, the state after this pass and the dropout masks used
    (one per hidden layer in training mode with dropout, else ())."""

    scores: Float64Array
    hidden: tuple[HiddenLayerCache, ...]
    output_affine: AffineCache
    state: NetworkState
    masks: tuple[Mask, ...]


def forward(
    spec: NetworkSpec,
    params: Mapping[str, ArrayLike],
    state: NetworkState,
    X: ArrayLike,
    *,
    train: bool,
    rng: np.random.Generator | None = None,
    masks: Sequence[ArrayLike] | None = None,
) -> NetworkForward:
    """The scores (logits) of X, layer by layer as in the module docstring.

    train=True: batch norm uses the batch statistics (or the running ones when
    `spec.batch_norm.frozen`) and returns updated running statistics; dropout applies `masks`
    or draws from `rng`. train=False: batch norm uses the running statistics, dropout its test
    form, and the state is returned unchanged.
    """
    p = check_params(spec, params)
    _check_state(spec, state)
    a = _check_inputs(spec, X)
    fa = spec.feature_axis
    given = _check_masks(spec, masks)
    bn_mode: BatchNormMode = "eval"
    if train and spec.batch_norm is not None:
        bn_mode = "frozen" if spec.batch_norm.frozen else "train"
        if bn_mode == "train" and a.shape[1 - fa] < 2:
            raise ValueError(
                "X must hold at least 2 examples in training mode with batch norm (one value "
                f"has no variance), got shape {a.shape}"
            )
    if train and spec.dropout is not None and masks is None and rng is None:
        raise ValueError(
            "rng must be a numpy.random.Generator (or masks given) for a training-mode pass "
            "with dropout, got neither"
        )
    hidden: list[HiddenLayerCache] = []
    new_states: list[BatchNormState] = []
    for i in range(len(spec.hidden_sizes)):
        layer = i + 1
        z, aff = affine_forward(a, p[f"W{layer}"], p.get(f"b{layer}"), feature_axis=fa)
        bn_cache: BatchNormCache | None = None
        u = z
        if spec.batch_norm is not None:
            out = batch_norm_layer_forward(
                z,
                p[f"gamma{layer}"],
                p[f"beta{layer}"],
                state.batch_norm[i],
                mode=bn_mode,
                config=spec.batch_norm,
                axis=fa,
            )
            u, bn_cache = out.y, out.cache
            new_states.append(out.state)
        act: ReluCache | SigmoidCache
        if spec.activation == "relu":
            a, act = relu_forward(u)
        else:
            a, act = sigmoid_forward(u)
        drop: DropoutCache | None = None
        if spec.dropout is not None:
            mask = given[i]
            a, drop = dropout_forward(
                a,
                spec.dropout.p,
                kind=spec.dropout.kind,
                train=train,
                rng=rng if mask is None else None,
                mask=mask,
            )
        hidden.append(HiddenLayerCache(aff, bn_cache, act, drop, z, u, a))
    last = spec.num_layers
    scores, out_aff = affine_forward(a, p[f"W{last}"], p[f"b{last}"], feature_axis=fa)
    used = tuple(
        h.dropout.mask for h in hidden if h.dropout is not None and h.dropout.mask is not None
    )
    return NetworkForward(scores, tuple(hidden), out_aff, NetworkState(tuple(new_states)), used)


class LossResult(NamedTuple):
    """loss = data_loss + penalty; the state after the pass; the dropout masks used; the
    forward pass itself (scores and every layer's values)."""

    loss: float
    data_loss: float
    penalty: float
    state: NetworkState
    masks: tuple[Mask, ...]
    forward: NetworkForward


def _data_loss(
    spec: NetworkSpec, scores: Float64Array, y: ArrayLike
) -> tuple[float, SoftmaxCrossEntropyCache | SigmoidCrossEntropyCache]:
    if spec.output == "softmax":
        return softmax_cross_entropy_forward(scores, y, class_axis=spec.feature_axis)
    return sigmoid_cross_entropy_forward(scores, y, class_axis=spec.feature_axis)


def _penalty(spec: NetworkSpec, params: Params) -> float:
    weights = [params[f"W{layer}"] for layer in range(1, spec.num_layers + 1)]
    return l2_penalty(weights, spec.weight_decay)


def loss(
    spec: NetworkSpec,
    params: Mapping[str, ArrayLike],
    state: NetworkState,
    X: ArrayLike,
    y: ArrayLike,
    *,
    train: bool = False,
    rng: np.random.Generator | None = None,
    masks: Sequence[ArrayLike] | None = None,
) -> LossResult:
    """``output_loss(scores(X), y) + 0.5 * weight_decay * sum_l sum(W_l**2)``; `train` as in
    `forward` (default False: running statistics, no dropout)."""
    fwd = forward(spec, params, state, X, train=train, rng=rng, masks=masks)
    data, _ = _data_loss(spec, fwd.scores, y)
    penalty = _penalty(spec, check_params(spec, params))
    return LossResult(data + penalty, data, penalty, fwd.state if train else state, fwd.masks, fwd)


class GradientResult(NamedTuple):
    """The training-mode loss, its gradient (a mapping with the parameters' names), the new
    state, and the dropout masks used."""

    loss: float
    grads: Params
    state: NetworkState
    masks: tuple[Mask, ...]


def gradient(
    spec: NetworkSpec,
    params: Mapping[str, ArrayLike],
    state: NetworkState,
    X: ArrayLike,
    y: ArrayLike,
    *,
    rng: np.random.Generator | None = None,
    masks: Sequence[ArrayLike] | None = None,
) -> GradientResult:
    """Backpropagation of the training-mode `loss` through every layer, in reverse.

    dscores from the output loss; then per layer, last to first: the affine backward (dW, db,
    da), dropout (the forward pass's mask), the activation, batch norm (dgamma, dbeta);
    weight decay adds ``weight_decay * W_l`` to every dW_l.
    """
    p = check_params(spec, params)
    fwd = forward(spec, p, state, X, train=True, rng=rng, masks=masks)
    data, loss_cache = _data_loss(spec, fwd.scores, y)
    if isinstance(loss_cache, SoftmaxCrossEntropyCache):
        d = softmax_cross_entropy_backward(1.0, loss_cache).dscores
    else:
        d = sigmoid_cross_entropy_backward(1.0, loss_cache).dscores
    grads: dict[str, Float64Array] = {}
    last = spec.num_layers
    out = affine_backward(d, fwd.output_affine)
    grads[f"W{last}"] = out.dW
    if out.db is not None:  # the output layer always has a bias
        grads[f"b{last}"] = out.db
    d = out.dx
    for i in reversed(range(len(spec.hidden_sizes))):
        layer, h = i + 1, fwd.hidden[i]
        if h.dropout is not None:
            d = dropout_backward(d, h.dropout).dx
        if isinstance(h.activation, ReluCache):
            d = relu_backward(d, h.activation).dx
        else:
            d = sigmoid_backward(d, h.activation).dx
        if h.batch_norm is not None:
            bn = batch_norm_layer_backward(d, h.batch_norm)
            grads[f"gamma{layer}"], grads[f"beta{layer}"], d = bn.dgamma, bn.dbeta, bn.dx
        aff = affine_backward(d, h.affine)
        grads[f"W{layer}"] = aff.dW
        if aff.db is not None:
            grads[f"b{layer}"] = aff.db
        d = aff.dx
    lam = spec.weight_decay
    for layer in range(1, last + 1):
        grads[f"W{layer}"] = frozen(grads[f"W{layer}"] + lam * p[f"W{layer}"])
    ordered = {name: grads[name] for name in spec.param_shapes()}
    return GradientResult(data + _penalty(spec, p), MappingProxyType(ordered), fwd.state, fwd.masks)


def predict(
    spec: NetworkSpec, params: Mapping[str, ArrayLike], state: NetworkState, X: ArrayLike
) -> Float64Array:
    """The test-time scores (logits): batch norm with the running statistics, dropout in its
    test form. Class probabilities are softmax(scores) or sigmoid(scores)."""
    return forward(spec, params, state, X, train=False).scores


def accuracy(
    spec: NetworkSpec,
    params: Mapping[str, ArrayLike],
    state: NetworkState,
    X: ArrayLike,
    y: ArrayLike,
) -> float:
    """The fraction of correct test-time predictions: argmax of the scores against the class
    (softmax), or ``score > 0`` (probability > 1/2) against each 0/1 label (sigmoid)."""
    scores = predict(spec, params, state, X)
    fa = spec.feature_axis
    shape = (scores.shape[0], scores.shape[1])
    if spec.output == "softmax":
        targets = one_hot_targets(y, shape, fa)
        hits = np.argmax(scores, axis=fa) == np.argmax(targets, axis=fa)
    else:
        hits = (scores > 0) == (binary_labels(y, shape) == 1)
    return float(np.mean(hits))
