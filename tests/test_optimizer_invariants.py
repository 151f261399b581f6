"""The optimizers' invariants, checked with derived rounding bounds, and the broken optimizers
each one catches.

    beta = 0 is SGD            every momentum and Nesterov form with beta = 0 is SGD, bit for bit
    Adam's first step          -lr g / (|g| + eps): about lr, against g
    constant gradient          with a constant g Adam's bias-corrected moments are g and g**2,
                               and every step is -lr g / (|g| + eps)
    exact scaling              AdaGrad, RMSprop, Adam: scaling g and eps by c = 2**k (eps by c**2
                               where eps is inside the root) changes no bit of the run
    scaling up to eps          the same for any c > 0 up to rounding, and with eps fixed up to
                               the derived effect of eps
    folded Adam                the folded-learning-rate form is the explicit form

The checks take the optimizers under test as a factory like `make_optimizer` (name,
**hyperparameters), by default the reference's. The Adam state must be an `AdamState` (the
moments are read from it). The learning-rate schedules are checked in tests/test_schedules.py.

Measuring a step. No rule here reads the parameters into its state, so a checker can pass
theta = 0 at every step and carry the state on: the returned parameters are exactly minus the
step (0 - s is exact) and the state evolves as in any run with those gradients.

Rounding model (u = 2**-53; first order, times SAFETY = 2 as in properties.tolerances). At step
t an adaptive step is lr * N / den: N is a weighted sum of the past gradients (divided by
1 - beta1**t in Adam; N = g in AdaGrad and RMSprop), den = sqrt(S) + eps (sqrt(S + eps) in
Keras's RMSprop) with S a nonnegative weighted sum of past squared gradients. A is N's sum with
|g| in place of g. A recursion m <- beta m + (1 - beta) x rounds twice per step on the old value,
so after t steps N is within (2t + 1) u A and S within (2t + 3) u S (one more for g**2, one for
1 - beta). 1 - beta**t, from a power with relative error <= t u, has relative error
<= u + t u cond, cond = beta**t / (1 - beta**t) (cancellation when beta**t is near 1). The root
halves S's error and adds u; + eps, the division, lr * and the folded form's alpha_t and eps_hat
add a few u more. So a correct float64 step is within

    R_t = k_t u lr A / den,    k_t = 3t + 12 + t (cond1 + cond2)    (cond = 0 without Adam)

of the exact step of the same float inputs. Rounding the scaled inputs c g and c eps in the
checker adds 4 to k. The checker computes A, S and den in float64 for the tolerances only; their
own relative errors (k u << 1) are covered by SAFETY.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from claims import assert_holds, broken, decades, exact
from hypothesis import given
from hypothesis import strategies as st
from numpy.typing import NDArray

from properties.checks import compare
from properties.framework import Measurement
from properties.tolerances import SAFETY, U64
from reference.optimizers import (
    AdaGrad,
    Adam,
    AdamState,
    Momentum,
    MomentumState,
    Optimizer,
    ParamsLike,
    SquareState,
    StepResult,
    bias_corrected_moments,
    make_optimizer,
)

Array = NDArray[np.float64]
Factory = Callable[..., Optimizer[Any]]

MAX_STEPS = 6  # steps of a random gradient sequence
MAX_CONSTANT_STEPS = 30  # steps with a constant gradient

# kind: (make_optimizer name, form): the optimizers the properties exercise
KINDS: Mapping[str, tuple[str, str | None]] = {
    "sgd": ("sgd", None),
    "momentum-course": ("momentum", "course"),
    "momentum-classic": ("momentum", "classic"),
    "momentum-pytorch": ("momentum", "pytorch"),
    "nesterov-pytorch": ("nesterov", "pytorch"),
    "nesterov-classic": ("nesterov", "classic"),
    "adagrad": ("adagrad", None),
    "rmsprop": ("rmsprop", "pytorch"),
    "rmsprop-keras": ("rmsprop", "keras"),
    "adam": ("adam", "explicit"),
    "adam-folded": ("adam", "folded"),
    "adam-keras": ("adam", "keras"),
}
MOMENTUM_KINDS = ("momentum-course", "momentum-classic", "momentum-pytorch")
NESTEROV_KINDS = ("nesterov-pytorch", "nesterov-classic")
ADAPTIVE_KINDS = ("adagrad", "rmsprop", "rmsprop-keras", "adam", "adam-folded", "adam-keras")
ALGORITHM1_KINDS = ("adam", "adam-folded")  # eps is Algorithm 1's eps
EPS_INSIDE = frozenset({"rmsprop-keras"})


@dataclass(frozen=True)
class OptimizerCase:
    """Hyperparameters, parameters, a gradient sequence and two scale factors.

    beta1 is the momentum or RMSprop beta where there is one beta. `scale_exponent` gives
    c = 2**scale_exponent for the exact scaling claim, `scale` any c > 0.
    """

    kind: str
    learning_rate: float
    beta1: float
    beta2: float
    epsilon: float
    params: Mapping[str, Array]
    grads: tuple[Mapping[str, Array], ...]
    constant_steps: int
    scale_exponent: int
    scale: float

    def build(self, factory: Factory, *, kind: str | None = None, **changes: Any) -> Any:
        """The optimizer of `kind` (default self.kind) from `factory`, with these changes."""
        name, form = KINDS[kind or self.kind]
        hyper: dict[str, Any] = {"learning_rate": self.learning_rate}
        if name in ("momentum", "nesterov", "rmsprop"):
            hyper["beta"] = self.beta1
        if name == "adam":
            hyper.update(beta1=self.beta1, beta2=self.beta2)
        if name in ("adagrad", "rmsprop", "adam"):
            hyper["epsilon"] = self.epsilon
        if form is not None:
            hyper["form"] = form
        hyper.update(changes)
        return factory(name, **hyper)

    def __repr__(self) -> str:
        # Printed by Hypothesis for a falsifying example: valid Python that rebuilds the case.
        def arrays(m: Mapping[str, Array]) -> str:
            return "{" + ", ".join(f"{k!r}: np.array({v.tolist()!r})" for k, v in m.items()) + "}"

        grads = ", ".join(arrays(g) for g in self.grads)
        return (
            f"OptimizerCase(kind={self.kind!r}, learning_rate={self.learning_rate!r}, "
            f"beta1={self.beta1!r}, beta2={self.beta2!r}, epsilon={self.epsilon!r}, "
            f"params={arrays(self.params)}, grads=({grads},), "
            f"constant_steps={self.constant_steps!r}, scale_exponent={self.scale_exponent!r}, "
            f"scale={self.scale!r})"
        )


# Gradients: 0 or |g| in [1e-8, 1e5). With c up to 2**30 and 1 - beta2 >= 1e-4 every square,
# product and sum stays far inside the normal float64 range, so scaling by 2**k is exact.
_GRAD = st.one_of(
    st.just(0.0), st.builds(lambda s, m: s * m, st.sampled_from([-1.0, 1.0]), decades(-8, 4))
)
_PARAM = st.floats(-10.0, 10.0, allow_subnormal=False)
# Betas: 0 or in [1e-3, 0.999] (beta2 up to 0.9999). With |g| >= 1e-8 and t <= 30 every
# product beta**t * g then stays above 1e-98, in the normal range where the relative rounding
# model holds; a beta of 1e-311 makes subnormal moments that test the float format instead.
_BETA1 = st.one_of(st.sampled_from([0.0, 0.5, 0.9, 0.99]), st.floats(1e-3, 0.999))
_BETA2 = st.one_of(st.sampled_from([0.0, 0.9, 0.999, 0.9999]), st.floats(1e-3, 0.9999))


def _mapping(
    draw: st.DrawFn, shapes: Mapping[str, tuple[int, ...]], values: st.SearchStrategy[float]
) -> dict[str, Array]:
    out = {}
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        flat = draw(st.lists(values, min_size=size, max_size=size))
        out[name] = np.array(flat, dtype=np.float64).reshape(shape)
    return out


@st.composite
def optimizer_cases(draw: st.DrawFn, kinds: Sequence[str]) -> OptimizerCase:
    """A case for one of `kinds`: parameters "W1" (a, b) and "b1" (a, 1), a, b in 1..3."""
    a, b = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    shapes = {"W1": (a, b), "b1": (a, 1)}
    steps = draw(st.integers(1, MAX_STEPS))
    return OptimizerCase(
        kind=draw(st.sampled_from(list(kinds))),
        learning_rate=draw(decades(-6, 0)),
        beta1=draw(_BETA1),
        beta2=draw(_BETA2),
        epsilon=draw(decades(-12, -1)),
        params=_mapping(draw, shapes, _PARAM),
        grads=tuple(_mapping(draw, shapes, _GRAD) for _ in range(steps)),
        constant_steps=draw(st.integers(1, MAX_CONSTANT_STEPS)),
        scale_exponent=draw(st.integers(-30, 30)),
        scale=draw(st.floats(1e-3, 1e3)),
    )


# --- helpers ---------------------------------------------------------------------------------


def _flat(values: Mapping[str, Any], names: Sequence[str]) -> Array:
    """All arrays of a mapping as one vector, in `names` order."""
    return np.concatenate([np.asarray(values[k], dtype=np.float64).ravel() for k in names])


def _zeros(case: OptimizerCase) -> dict[str, Array]:
    return {k: np.zeros(v.shape) for k, v in case.params.items()}


def _moves(opt: Any, case: OptimizerCase, grads: Sequence[Mapping[str, Array]]) -> list[Array]:
    """The step of each update (flattened), measured from theta = 0 (module docstring)."""
    zero = _zeros(case)
    state = opt.init(zero)
    moves = []
    for g in grads:
        new, state = opt.step(zero, g, state)
        moves.append(_flat(new, list(zero)))
    return moves


def _trajectory(opt: Any, case: OptimizerCase, grads: Sequence[Mapping[str, Array]]) -> list[Array]:
    """The parameters (flattened) after each step of a real run from case.params."""
    params: Mapping[str, Any] = case.params
    state = opt.init(params)
    out = []
    for g in grads:
        params, state = opt.step(params, g, state)
        out.append(_flat(params, list(case.params)))
    return out


def _scaled(grads: Sequence[Mapping[str, Array]], c: float) -> list[dict[str, Array]]:
    return [{k: c * v for k, v in g.items()} for g in grads]


def _cond(beta: float, t: int) -> float:
    """beta**t / (1 - beta**t): how much 1 - beta**t amplifies the error of beta**t."""
    power = beta**t
    return power / (1.0 - power)


@dataclass(frozen=True)
class StepModel:
    """Per coordinate at one step t: A (numerator magnitude), S (second moment), den, k_t, and
    eps_t, the epsilon added to sqrt(S) in the explicit form (outside placements only)."""

    a: Array
    s: Array
    den: Array
    k: float
    eps: float


def step_models(case: OptimizerCase, grads: Sequence[Mapping[str, Array]]) -> list[StepModel]:
    """The rounding model of the module docstring along `grads`, for case.kind and case.epsilon.

    For Adam, A and S are bias corrected, and "adam-keras" (constant eps_hat) is the explicit
    form with eps_t = eps / sqrt(1 - beta2**t).
    """
    names = list(case.params)
    kind, eps, b1, b2 = case.kind, case.epsilon, case.beta1, case.beta2
    a_sum = np.zeros(sum(v.size for v in case.params.values()))
    s_sum = np.zeros_like(a_sum)
    out = []
    for t, grad in enumerate(grads, start=1):
        g = _flat(grad, names)
        k = 3.0 * t + 12.0
        eps_t = eps
        if kind == "adagrad":
            a, s_sum = np.abs(g), s_sum + g**2
            s = s_sum
        elif kind.startswith("rmsprop"):
            a, s_sum = np.abs(g), b1 * s_sum + (1 - b1) * g**2
            s = s_sum
        else:  # adam
            a_sum = b1 * a_sum + (1 - b1) * np.abs(g)
            s_sum = b2 * s_sum + (1 - b2) * g**2
            a, s = a_sum / (1 - b1**t), s_sum / (1 - b2**t)
            k += t * (_cond(b1, t) + _cond(b2, t))
            if kind == "adam-keras":
                eps_t = eps / float(np.sqrt(1 - b2**t))
        den = np.sqrt(s + eps) if kind in EPS_INSIDE else np.sqrt(s) + eps_t
        out.append(StepModel(a, s, den, k, eps_t))
    return out


def _rounding(case: OptimizerCase, model: StepModel, extra: float = 0.0) -> Array:
    """R_t = (k_t + extra) u lr A / den: how far a correct float64 step may be from exact."""
    bound: Array = (model.k + extra) * U64 * case.learning_rate * model.a / model.den
    return bound


# --- the checks ------------------------------------------------------------------------------


def check_beta_zero(case: OptimizerCase, factory: Factory = make_optimizer) -> list[Measurement]:
    """Momentum (every form) and Nesterov (every form) with beta = 0 give SGD's parameters
    exactly, step after step: 0 * v vanishes and (1 - 0) * g = g, so no rounding differs."""
    sgd = _trajectory(case.build(factory, kind="sgd"), case, case.grads)
    got = _trajectory(case.build(factory, beta=0.0), case, case.grads)
    same = all(np.array_equal(x, y) for x, y in zip(got, sgd, strict=True))
    return [exact(f"{case.kind} with beta=0 equals SGD at every step", same)]


def _first_step_exact(case: OptimizerCase, g: Array) -> Array:
    """lr g / (|g| + eps) per coordinate, exactly in rationals and rounded once."""
    lr, eps = Fraction(case.learning_rate), Fraction(case.epsilon)
    return np.array([float(lr * Fraction(x) / (abs(Fraction(x)) + eps)) for x in g.tolist()])


def check_adam_first_step(
    case: OptimizerCase, factory: Factory = make_optimizer
) -> list[Measurement]:
    """From zero moments, Adam's first step is exactly -lr g / (|g| + eps): v_corrected = g and
    sqrt(s_corrected) = |g|. So each coordinate moves against sign(g) by lr |g| / (|g| + eps)
    = lr - lr eps / (|g| + eps): about lr, never more, and a zero gradient does not move it.

    Tolerance: R_1 of the module docstring, here k_1 u |s| (A / den = |g| / (|g| + eps)), plus
    the u/2 of rounding the exact value once.
    """
    g = _flat(case.grads[0], list(case.params))
    (move,) = _moves(case.build(factory), case, case.grads[:1])
    s = _first_step_exact(case, g)
    (model,) = step_models(case, case.grads[:1])
    tol = SAFETY * _rounding(case, model) + U64 / 2 * np.abs(s)
    resolvable = np.abs(s) > tol
    direction = bool(
        np.all(np.sign(move[resolvable]) == -np.sign(g[resolvable])) and np.all(move[g == 0] == 0)
    )
    lr = case.learning_rate
    # max(|move|, lr) - lr is exact (Sterbenz), so this measures how far |move| exceeds lr.
    capped = np.maximum(np.abs(move), lr)
    return [
        compare("first step vs -lr g / (|g| + eps)", move, -s, tol),
        exact("first step is against sign(g), zero where g = 0", direction),
        compare("|first step| <= lr", capped, np.full_like(g, lr), tol),
    ]


def check_adam_constant_gradient(
    case: OptimizerCase, factory: Factory = make_optimizer
) -> list[Measurement]:
    """With the same gradient g at every step, v_corrected = g and s_corrected = g**2 at every t
    (v_t = (1 - beta1**t) g exactly in real arithmetic), so every step is -lr g / (|g| + eps).

    Tolerances at step t: v_corrected within (2t + 4 + t cond1) u |g| (2t + 1 roundings of the
    recursion, the division and 1 - beta1**t), s_corrected within (2t + 6 + t cond2) u g**2
    (one more for g**2, u/2 for the checker's g**2), the step within R_t; all times SAFETY.
    """
    names = list(case.params)
    g = _flat(case.grads[0], names)
    grads = case.grads[:1] * case.constant_steps
    opt = case.build(factory)
    zero = _zeros(case)
    state = opt.init(zero)
    s_exact = _first_step_exact(case, g)
    b1, b2 = case.beta1, case.beta2
    out = []
    for t, (grad, model) in enumerate(zip(grads, step_models(case, grads), strict=True), 1):
        new, state = opt.step(zero, grad, state)
        if not isinstance(state, AdamState):
            return [exact("the Adam state is an AdamState", False)]
        moments = bias_corrected_moments(state, b1, b2)
        tol_v = SAFETY * (2 * t + 4 + t * _cond(b1, t)) * U64 * np.abs(g)
        tol_s = SAFETY * (2 * t + 6 + t * _cond(b2, t)) * U64 * g**2
        tol_step = SAFETY * _rounding(case, model) + U64 / 2 * np.abs(s_exact)
        out += [
            compare(f"t={t}: v_corrected vs g", _flat(moments.v_corrected, names), g, tol_v),
            compare(f"t={t}: s_corrected vs g**2", _flat(moments.s_corrected, names), g**2, tol_s),
            compare(f"t={t}: step vs -lr g / (|g| + eps)", _flat(new, names), -s_exact, tol_step),
        ]
    return out


def _scaled_epsilon(case: OptimizerCase, c: float) -> float:
    """eps scaled with the gradient: c eps outside the root, c**2 eps inside it."""
    return case.epsilon * (c * c if case.kind in EPS_INSIDE else c)


def check_scale_exact(case: OptimizerCase, factory: Factory = make_optimizer) -> list[Measurement]:
    """Scaling every gradient by c = 2**k and eps by c (c**2 where eps is inside the root) leaves
    every parameter of the run unchanged, bit for bit: each moment scales by c or c**2 exactly,
    the root of c**2 S is c sqrt(S) exactly, and N / den is the same quotient of the same floats
    times c / c. (No value leaves the normal range, by the case's magnitudes.)"""
    c = 2.0**case.scale_exponent
    base = _trajectory(case.build(factory), case, case.grads)
    opt = case.build(factory, epsilon=_scaled_epsilon(case, c))
    scaled = _trajectory(opt, case, _scaled(case.grads, c))
    same = all(np.array_equal(x, y) for x, y in zip(scaled, base, strict=True))
    return [exact(f"{case.kind}: run with g, eps scaled by 2**{case.scale_exponent}", same)]


def _eps_effect(case: OptimizerCase, model: StepModel, c: float) -> Array:
    """|step(c g, eps) / step(g, eps) - 1| in real arithmetic, from the unscaled S.

    eps outside: step(c g) = lr N / (sqrt(S) + eps_t / c), so the ratio is
    (sqrt(S) + eps_t) / (sqrt(S) + eps_t / c) and |ratio - 1| = eps_t |1 - 1/c| / (sqrt(S) +
    eps_t / c). eps inside: ratio = sqrt(x / y), x = S + eps, y = S + eps / c**2, and
    |ratio - 1| = |x - y| / (y (ratio + 1)) with x - y = eps (1 - 1/c**2). Both forms avoid
    cancellation.
    """
    if case.kind in EPS_INSIDE:
        x, y = model.s + case.epsilon, model.s + case.epsilon / c**2
        effect: Array = case.epsilon * abs(1 - 1 / c**2) / (y * (np.sqrt(x / y) + 1))
        return effect
    eps_t = model.eps  # eps, or Adam-Keras's eps / sqrt(1 - beta2**t)
    outside: Array = eps_t * abs(1 - 1 / c) / (np.sqrt(model.s) + eps_t / c)
    return outside


def check_scale_eps(case: OptimizerCase, factory: Factory = make_optimizer) -> list[Measurement]:
    """For any c > 0: scaling g and eps by c changes each step by rounding only (R_t of each
    run); scaling g alone changes it by at most |step| * effect more (see `_eps_effect`).

    Rounding: the scaled run's inputs c g and c eps are rounded, so its bound uses k_t + 4.
    With eps fixed, its denominator is c times (sqrt(S) + eps_t / c), so its A / den, and with
    it its rounding bound, is that of the unscaled run times the ratio of the two steps, at
    most 1 + effect.
    """
    c = case.scale
    base = _moves(case.build(factory), case, case.grads)
    with_eps = _moves(
        case.build(factory, epsilon=_scaled_epsilon(case, c)), case, _scaled(case.grads, c)
    )
    fixed_eps = _moves(case.build(factory), case, _scaled(case.grads, c))
    out = []
    for t, model in enumerate(step_models(case, case.grads), 1):
        i = t - 1
        own, scaled = _rounding(case, model), _rounding(case, model, extra=4)
        out.append(
            compare(
                f"t={t}: step with c g, c eps vs with g, eps",
                with_eps[i],
                base[i],
                SAFETY * (own + scaled),
            )
        )
        effect = _eps_effect(case, model, c)
        tol = SAFETY * (own + scaled * (1 + effect) + effect * np.abs(base[i]))
        out.append(compare(f"t={t}: step with c g, eps vs with g, eps", fixed_eps[i], base[i], tol))
    return out


def check_folded_equals_explicit(
    case: OptimizerCase, factory: Factory = make_optimizer
) -> list[Measurement]:
    """Adam's folded form (alpha_t = lr sqrt(1 - beta2**t) / (1 - beta1**t), eps_hat_t = eps
    sqrt(1 - beta2**t)) takes the explicit form's steps: each within R_t of the exact step, so
    the two within 2 R_t. Along a real run the parameters also differ by the rounding of
    theta - step in each run: u (|theta| + |theta'|) per step. The moments are one recursion."""
    explicit = case.build(factory, kind="adam")
    folded = case.build(factory, kind="adam-folded")
    models = step_models(case, case.grads)
    steps_e = _moves(explicit, case, case.grads)
    steps_f = _moves(folded, case, case.grads)
    out = []
    for t, (model, se, sf) in enumerate(zip(models, steps_e, steps_f, strict=True), 1):
        out.append(
            compare(f"t={t}: folded vs explicit step", sf, se, 2 * SAFETY * _rounding(case, model))
        )
    run_e = _trajectory(explicit, case, case.grads)
    run_f = _trajectory(folded, case, case.grads)
    budget = np.zeros_like(run_e[0])
    for model, pe, pf in zip(models, run_e, run_f, strict=True):
        budget = budget + SAFETY * (2 * _rounding(case, model) + U64 * (np.abs(pe) + np.abs(pf)))
    out.append(compare("folded vs explicit parameters after the run", run_f[-1], run_e[-1], budget))
    zero = _zeros(case)
    state_e, state_f = explicit.init(zero), folded.init(zero)
    same = True
    for g in case.grads:
        state_e = explicit.step(zero, g, state_e).state
        state_f = folded.step(zero, g, state_f).state
        same = same and all(
            np.array_equal(_flat(x, list(zero)), _flat(y, list(zero)))
            for x, y in ((state_e.v, state_f.v), (state_e.s, state_f.s))
        )
    return [*out, exact("folded and explicit moments are equal", same)]


# --- the reference's optimizers keep every invariant ----------------------------------------


@given(case=optimizer_cases(MOMENTUM_KINDS + NESTEROV_KINDS))
def test_momentum_and_nesterov_with_beta_zero_are_sgd(case: OptimizerCase) -> None:
    assert_holds(check_beta_zero(case))


@given(case=optimizer_cases(ALGORITHM1_KINDS))
def test_adams_first_step_is_about_lr_against_the_gradient(case: OptimizerCase) -> None:
    assert_holds(check_adam_first_step(case))


@given(case=optimizer_cases(ALGORITHM1_KINDS))
def test_adam_with_a_constant_gradient_steps_lr_g_over_abs_g_plus_eps(case: OptimizerCase) -> None:
    assert_holds(check_adam_constant_gradient(case))


@given(case=optimizer_cases(ADAPTIVE_KINDS))
def test_scaling_gradients_and_eps_by_a_power_of_two_changes_no_bit(case: OptimizerCase) -> None:
    assert_holds(check_scale_exact(case))


@given(case=optimizer_cases(ADAPTIVE_KINDS))
def test_scaling_gradients_changes_the_steps_by_rounding_and_eps_only(case: OptimizerCase) -> None:
    assert_holds(check_scale_eps(case))


@given(case=optimizer_cases(("adam",)))
def test_folded_adam_takes_the_explicit_forms_steps(case: OptimizerCase) -> None:
    assert_holds(check_folded_equals_explicit(case))


# Each invariant must be able to fail: a broken optimizer is caught by the claims it breaks, on
# fixed cases where eps matters (eps = 0.1 against gradients of 0.01 to 1).
_RNG = np.random.default_rng(7)
_SHAPES = {"W1": (2, 3), "b1": (2, 1)}


def _fixed_case(kind: str) -> OptimizerCase:
    return OptimizerCase(
        kind=kind,
        learning_rate=0.1,
        beta1=0.9,
        beta2=0.999,
        epsilon=0.1,
        params={k: _RNG.normal(size=s) for k, s in _SHAPES.items()},
        grads=tuple(
            {
                k: _RNG.choice([-1.0, 1.0], size=s) * 10.0 ** _RNG.uniform(-2, 0, size=s)
                for k, s in _SHAPES.items()
            }
            for _ in range(3)
        ),
        constant_steps=5,
        scale_exponent=3,
        scale=3.0,
    )


Check = Callable[[OptimizerCase, Factory], list[Measurement]]
CASES: dict[str, tuple[Check, OptimizerCase]] = {
    "beta = 0 is SGD": (check_beta_zero, _fixed_case("momentum-course")),
    "Adam's first step": (check_adam_first_step, _fixed_case("adam")),
    "constant gradient": (check_adam_constant_gradient, _fixed_case("adam")),
    "exact scaling": (check_scale_exact, _fixed_case("adagrad")),
    "scaling up to eps": (check_scale_eps, _fixed_case("adagrad")),
    "folded Adam": (check_folded_equals_explicit, _fixed_case("adam")),
}


@dataclass(frozen=True)
class _LaggingMomentum(Momentum):
    """theta moves with the velocity BEFORE this step's gradient: with beta = 0 it never moves."""

    def step(self, params: ParamsLike, grads: ParamsLike, state: MomentumState) -> Any:
        new = super().step(params, grads, state)
        moved = {k: np.asarray(params[k]) - self.learning_rate * state.v[k] for k in params}
        return StepResult(moved, new.state)


@dataclass(frozen=True)
class _NoBiasCorrection(Adam):
    """theta -= lr v / (sqrt(s) + eps): Adam without the division by 1 - beta**t."""

    def _move(self, theta: Any, v: Any, s: Any, t: int) -> Any:
        if self.form != "explicit":
            return super()._move(theta, v, s, t)
        return theta - self.learning_rate * v / (np.sqrt(s) + self.epsilon)


@dataclass(frozen=True)
class _FirstStepCorrection(Adam):
    """The explicit form with the bias correction of step 1 at every step (t frozen at 1)."""

    def _move(self, theta: Any, v: Any, s: Any, t: int) -> Any:
        return super()._move(theta, v, s, 1 if self.form == "explicit" else t)


@dataclass(frozen=True)
class _KerasAsFolded(Adam):
    """The folded form with a constant eps_hat = eps (Keras's) where Algorithm 1's eps is meant."""

    def _move(self, theta: Any, v: Any, s: Any, t: int) -> Any:
        form = "keras" if self.form == "folded" else self.form
        return Adam(self.learning_rate, self.beta1, self.beta2, self.epsilon, form)._move(
            theta, v, s, t
        )


@dataclass(frozen=True)
class _AdaGradEpsInside(AdaGrad):
    """theta -= lr g / sqrt(s + eps), while claiming eps outside the root (PyTorch's)."""

    def step(self, params: ParamsLike, grads: ParamsLike, state: SquareState) -> Any:
        new = super().step(params, grads, state)
        s = new.state.s
        moved = {
            k: np.asarray(params[k])
            - self.learning_rate * np.asarray(grads[k]) / np.sqrt(s[k] + self.epsilon)
            for k in params
        }
        return StepResult(moved, new.state)


@dataclass(frozen=True)
class _AdaGradNoRoot(AdaGrad):
    """theta -= lr g / (s + eps): the accumulator without its square root."""

    def step(self, params: ParamsLike, grads: ParamsLike, state: SquareState) -> Any:
        new = super().step(params, grads, state)
        s = new.state.s
        moved = {
            k: np.asarray(params[k])
            - self.learning_rate * np.asarray(grads[k]) / (s[k] + self.epsilon)
            for k in params
        }
        return StepResult(moved, new.state)


def _factory(replacements: dict[str, type]) -> Callable[..., Any]:
    def build(name: str, **hyper: Any) -> Any:
        if name in replacements:
            return replacements[name](**hyper)
        return make_optimizer(name, **hyper)

    return build


@pytest.mark.parametrize(
    ("replacements", "caught_by"),
    [
        ({"momentum": _LaggingMomentum}, {"beta = 0 is SGD"}),
        (
            {"adam": _NoBiasCorrection},
            {"Adam's first step", "constant gradient", "folded Adam"},
        ),
        ({"adam": _FirstStepCorrection}, {"constant gradient", "folded Adam"}),
        ({"adam": _KerasAsFolded}, {"folded Adam"}),
        ({"adagrad": _AdaGradEpsInside}, {"exact scaling", "scaling up to eps"}),
        ({"adagrad": _AdaGradNoRoot}, {"exact scaling", "scaling up to eps"}),
    ],
    ids=lambda v: ",".join(sorted(v)) if isinstance(v, set) else next(iter(v.values())).__name__,
)
def test_invariants_catch_broken_optimizers(
    replacements: dict[str, type], caught_by: set[str]
) -> None:
    factory = _factory(replacements)
    failed = {name for name, (check, case) in CASES.items() if broken(check(case, factory))}
    assert failed == caught_by
    for check, case in CASES.values():  # and the reference passes the same cases
        assert_holds(check(case, make_optimizer))
