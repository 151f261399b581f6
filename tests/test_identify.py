"""`bnref identify`: the reference's conventions recovered exactly, planted variants recognised,
a non-batch-norm refused, torch and ONNX measured (oracle), the command's bad input.

The planted variants are user functions (`test_identify:NAME`, channels at axis 1 unless said)
loaded as `bnref identify` loads a `module:function` target.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

from bnref.cli import main as bnref_main
from bnref.identify import (
    FIT_TOLERANCE,
    Fingerprint,
    Layout,
    _shortest,
    fit_eps,
    identify,
    main,
    momentum_direction,
)
from bnref.targets import TARGETS, load_target
from bnref.targets.user_target import load_user_target
from properties.adapter import (
    Array,
    ForwardOutput,
    ReferenceImplementation,
    Rounded,
    RunningStats,
)
from reference.conventions import CONVENTIONS

F = NDArray[np.float64]
HERE = Path(__file__).parent
KEYS = (
    "axis",
    "eps",
    "normalization_variance",
    "running_variance",
    "momentum",
    "variance_algorithm",
    "compute_dtype",
    "convention",
    "differences",
)


# --- planted variants, as a user writes them (channels at axis 1) ----------------------------


def _axes(x: F) -> tuple[int, ...]:
    return (0, *range(2, x.ndim))


def _per_channel(v: NDArray[Any], x: NDArray[Any]) -> NDArray[Any]:
    return np.reshape(v, [-1 if i == 1 else 1 for i in range(x.ndim)])


def honest(x: F, gamma: F, beta: F, eps: float) -> F:
    """y = gamma (x - mean) / sqrt(var + eps) + beta, biased variance (np.var: two-pass)."""
    m = x.mean(axis=_axes(x), keepdims=True)
    v = x.var(axis=_axes(x), keepdims=True)
    out: F = _per_channel(gamma, x) * (x - m) / np.sqrt(v + eps) + _per_channel(beta, x)
    return out


def unbiased(x: F, gamma: F, beta: F, eps: float) -> F:
    """Normalizes by the unbiased variance (ddof=1)."""
    m = x.mean(axis=_axes(x), keepdims=True)
    v = x.var(axis=_axes(x), keepdims=True, ddof=1)
    out: F = _per_channel(gamma, x) * (x - m) / np.sqrt(v + eps) + _per_channel(beta, x)
    return out


def own_eps(x: F, gamma: F, beta: F, eps: float) -> F:  # noqa: ARG001 -- ignores it
    """Ignores the eps it is given and uses 1e-3."""
    return honest(x, gamma, beta, 1e-3)


def one_pass(x: F, gamma: F, beta: F, eps: float) -> F:
    """var = E[x^2] - E[x]^2, clamped at 0."""
    m = x.mean(axis=_axes(x), keepdims=True)
    v = np.maximum((x * x).mean(axis=_axes(x), keepdims=True) - m * m, 0.0)
    out: F = _per_channel(gamma, x) * (x - m) / np.sqrt(v + eps) + _per_channel(beta, x)
    return out


def welford(x: F, gamma: F, beta: F, eps: float) -> F:
    """Welford's streaming mean and variance: correct, less accurate than two-pass."""
    rows = np.moveaxis(x, 1, 0).reshape(x.shape[1], -1)
    mean, s = np.zeros(rows.shape[0]), np.zeros(rows.shape[0])
    for k in range(rows.shape[1]):
        d = rows[:, k] - mean
        mean = mean + d / (k + 1)
        s = s + d * (rows[:, k] - mean)
    var = s / rows.shape[1]
    y = (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + eps)
    out: F = _per_channel(gamma, x) * y + _per_channel(beta, x)
    return out


def float32(x: F, gamma: F, beta: F, eps: float) -> F:
    """Computes in float32 whatever it is given."""
    x32, g32, b32 = (a.astype(np.float32) for a in (x, gamma, beta))
    m = x32.mean(axis=_axes(x), keepdims=True)
    v = x32.var(axis=_axes(x), keepdims=True)
    y = _per_channel(g32, x) * (x32 - m) / np.sqrt(v + np.float32(eps)) + _per_channel(b32, x)
    out: F = y.astype(np.float64)
    return out


def identity(x: F, gamma: F, beta: F, eps: float) -> F:  # noqa: ARG001
    """Not a batch norm: returns x."""
    return x.copy()


def last_axis(x: F, gamma: F, beta: F, eps: float) -> F:  # noqa: ARG001
    """Normalizes over every axis but the LAST, whatever layout it is declared with."""
    axes = tuple(range(x.ndim - 1))
    out: F = (x - x.mean(axis=axes)) / np.sqrt(x.var(axis=axes) + eps)
    return out


def running_pytorch(rm: F, rv: F, mean: F, var: F, n: int, momentum: float) -> tuple[F, F]:
    """PyTorch's update: momentum weights the batch, the variance unbiased."""
    return (1 - momentum) * rm + momentum * mean, (1 - momentum) * rv + momentum * var * n / (n - 1)


def running_old(rm: F, rv: F, mean: F, var: F, n: int, momentum: float) -> tuple[F, F]:
    """PyTorch's update with momentum weighting the OLD value."""
    return momentum * rm + (1 - momentum) * mean, momentum * rv + (1 - momentum) * var * n / (n - 1)


def layer_pytorch(x: F, rm: F, rv: F, momentum: float, eps: float) -> tuple[F, F, F]:
    """One training step of a whole PyTorch-style layer (gamma 1, beta 0): y, and the running
    statistics updated as `running_pytorch` updates them."""
    n = x.size // x.shape[1]
    mean, var = x.mean(axis=_axes(x)), x.var(axis=_axes(x))
    y = (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + eps)
    new_mean, new_var = running_pytorch(rm, rv, mean, var, n, momentum)
    return y, new_mean, new_var


def layer_old_biased(x: F, rm: F, rv: F, momentum: float, eps: float) -> tuple[F, F, F]:
    """A layer whose momentum weights the OLD value and whose running variance is biased."""
    mean, var = x.mean(axis=_axes(x)), x.var(axis=_axes(x))
    y = (x - _per_channel(mean, x)) / np.sqrt(_per_channel(var, x) + eps)
    return y, momentum * rm + (1 - momentum) * mean, momentum * rv + (1 - momentum) * var


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(HERE))


def _user(name: str, **options: Any) -> Fingerprint:
    return identify(load_user_target(f"test_identify:{name}", **options))


# --- the reference: every named convention, exactly -------------------------------------------


@pytest.mark.parametrize("name", sorted(CONVENTIONS))
def test_the_reference_is_identified_as_each_convention(name: str) -> None:
    conv = CONVENTIONS[name]
    fp = identify(ReferenceImplementation(name))
    assert fp.fitted
    assert (fp.convention, fp.consistent_with, fp.differences, fp.notes) == (name, (name,), (), ())
    assert fp.axis == conv.axis
    assert fp.eps == conv.eps
    assert fp.eps_source == "argument"
    assert fp.eps_placement == "variance"
    assert fp.normalization_variance == "biased"
    assert fp.running_variance == ("unbiased" if conv.unbiased_var else "biased")
    assert fp.momentum == (0.1 if conv.momentum in (0.1, 0.9) else 0.01)
    assert fp.momentum_uncertainty is not None
    assert abs(fp.momentum - conv.weights(conv.momentum)[1]) <= fp.momentum_uncertainty
    assert fp.momentum_weights == conv.momentum_weights
    assert fp.variance_algorithm == "two-pass"
    assert fp.compute_dtype == "float64"
    assert fp.eps_uncertainty is not None
    assert fp.eps_uncertainty < 1e-12 * conv.eps


def test_bnref_fast_is_identified_as_pytorch() -> None:
    fp = identify(load_target("fast"))
    assert (fp.convention, fp.variance_algorithm, fp.compute_dtype) == (
        "pytorch",
        "two-pass",
        "float64",
    )


def test_identify_is_deterministic() -> None:
    first = identify(ReferenceImplementation("keras")).as_json()
    assert identify(ReferenceImplementation("keras")).as_json() == first


# --- planted variants -------------------------------------------------------------------------


@pytest.mark.usefixtures("planted")
def test_a_correct_user_target_is_pytorch() -> None:
    fp = _user("honest", running_stats="test_identify:running_pytorch")
    assert (fp.convention, fp.differences, fp.notes) == ("pytorch", (), ())
    assert (fp.running_variance, fp.momentum, fp.momentum_weights) == ("unbiased", 0.1, "new")


@pytest.mark.usefixtures("planted")
def test_the_running_statistics_come_from_a_layer_step_when_no_update_is_given() -> None:
    """--layer alone: the running variance and the momentum are measured from one step of the
    whole layer, as they would be from --running-stats."""
    fp = _user("honest", layer="test_identify:layer_pytorch")
    assert (fp.convention, fp.differences, fp.notes) == ("pytorch", (), ())
    assert (fp.running_variance, fp.momentum, fp.momentum_weights) == ("unbiased", 0.1, "new")
    old = _user("honest", layer="test_identify:layer_old_biased")
    assert (old.running_variance, old.momentum, old.momentum_weights) == ("biased", 0.9, "old")
    assert old.convention is None


@pytest.mark.usefixtures("planted")
def test_without_update_or_layer_the_running_statistics_are_null() -> None:
    fp = _user("honest")
    assert (fp.running_variance, fp.momentum, fp.momentum_weights) == (None, None, None)
    reason = fp.evidence["running"]["reason"]
    assert reason.startswith("update_running_stats (momentum=0.1) raised TargetLacks: ")


@pytest.mark.usefixtures("planted")
def test_a_correct_user_target_at_bfloat16_is_pytorch() -> None:
    """At bfloat16 (u = 2**-8) the fits allow its rounding: the axis, the variances and the
    momentum are found; whether eps follows the argument is left open when the uncertainty
    spans both eps passed, rather than claimed."""
    fp = _user("honest", dtype="bfloat16", running_stats="test_identify:running_pytorch")
    assert (fp.axis, fp.normalization_variance, fp.compute_dtype) == (1, "biased", "bfloat16")
    assert (fp.running_variance, fp.momentum, fp.momentum_weights) == ("unbiased", 0.1, "new")
    assert (fp.convention, fp.differences) == ("pytorch", ())
    assert fp.eps is not None
    assert fp.eps_uncertainty is not None
    assert abs(fp.eps - 1e-5) <= fp.eps_uncertainty
    if fp.eps_source is None:
        assert fp.evidence["eps"]["source_reason"].startswith("not determined: the eps measured")
    unbiased = _user("unbiased", dtype="bfloat16")
    assert (unbiased.axis, unbiased.normalization_variance) == (1, "unbiased")
    assert unbiased.convention is None
    assert not _user("identity", dtype="bfloat16").fitted


@pytest.mark.usefixtures("planted")
def test_unbiased_normalization_is_recognised() -> None:
    fp = _user("unbiased")
    assert fp.fitted
    assert fp.normalization_variance == "unbiased"
    assert fp.convention is None
    assert fp.nearest_convention == "pytorch"
    assert fp.differences == (
        "it normalizes by the unbiased variance (n/(n-1) times the biased one); every "
        "convention normalizes by the biased variance",
    )


@pytest.mark.usefixtures("planted")
def test_a_target_that_ignores_eps_reveals_its_own() -> None:
    fp = _user("own_eps")
    assert (fp.eps, fp.eps_source, fp.normalization_variance) == (1e-3, "own", "biased")
    assert fp.convention is None
    assert fp.nearest_convention == "pytorch"
    assert len(fp.differences) == 1
    assert fp.differences[0].startswith("its eps is 0.001 (± ")
    assert fp.differences[0].endswith("); pytorch's is 1e-05")
    assert "it uses eps 0.001 whatever eps it is given" in fp.notes


@pytest.mark.usefixtures("planted")
def test_a_fixed_eps_is_measured_and_named_fixed() -> None:
    fp = _user("honest", eps=1e-3)
    assert (fp.eps, fp.eps_source, fp.nearest_convention) == (1e-3, "fixed", "pytorch")


@pytest.mark.usefixtures("planted")
def test_one_pass_variance_is_recognised() -> None:
    fp = _user("one_pass")
    assert fp.variance_algorithm == "one-pass"
    assert any(n.startswith("its variance loses accuracy like the one-pass") for n in fp.notes)
    # everything else of the convention is right: the algorithm is no convention
    assert fp.convention == "pytorch"


@pytest.mark.usefixtures("planted")
@pytest.mark.parametrize(("name", "algorithm"), [("welford", "streaming"), ("honest", "two-pass")])
def test_correct_variance_algorithms_get_their_class(name: str, algorithm: str) -> None:
    assert _user(name).variance_algorithm == algorithm


@pytest.mark.usefixtures("planted")
def test_float32_compute_is_recognised_whatever_the_declared_dtype() -> None:
    fp = _user("float32")
    assert (fp.compute_dtype, fp.declared_dtype) == ("float32", "float64")
    assert "it computes in float32, though it declares float64" in fp.notes
    declared = _user("float32", dtype="float32")
    assert declared.compute_dtype == "float32"
    assert not any("computes in" in n for n in declared.notes)


def test_lower_precisions_are_measured_and_what_they_cannot_tell_is_null() -> None:
    single = identify(Rounded(ReferenceImplementation(), "float32"))
    assert (single.compute_dtype, single.variance_algorithm) == ("float32", "two-pass")
    assert (single.convention, single.notes) == ("pytorch", ())
    half = identify(Rounded(ReferenceImplementation(), "float16"))
    assert (half.compute_dtype, half.convention) == ("float16", "pytorch")
    # float16 cannot resolve eps 1e-5 (its smallest normal is 6.1e-5) nor tell two-pass from
    # streaming at the |mean|/std it can hold: those stay null, with the reason
    assert half.eps_placement is None
    assert half.variance_algorithm is None
    assert half.eps_uncertainty is not None
    assert half.eps_uncertainty > 1e-5
    assert any(n.startswith("variance algorithm not determined: within the") for n in half.notes)


@pytest.mark.usefixtures("planted")
def test_momentum_weighting_the_old_value_is_recognised() -> None:
    fp = _user("honest", running_stats="test_identify:running_old")
    assert (fp.momentum, fp.momentum_weights, fp.running_variance) == (0.9, "old", "unbiased")
    assert fp.convention is None
    assert fp.nearest_convention == "pytorch"
    assert fp.differences == (
        "its running update gives the batch statistic weight 0.9; pytorch's default "
        "(momentum 0.1) gives it 0.1",
        "its momentum argument weights the running (old) value; pytorch's weights the batch "
        "statistic (new value)",
    )


@pytest.mark.usefixtures("planted")
def test_eps_added_to_the_standard_deviation_is_recognised() -> None:
    fp = identify(load_user_target("user_impl_example:forward_eps_outside", convention="keras"))
    assert (fp.eps_placement, fp.eps, fp.axis) == ("standard deviation", 1e-3, -1)
    assert fp.convention is None
    assert fp.nearest_convention == "keras"
    assert fp.differences[0].startswith("it adds eps to the standard deviation")


@pytest.mark.usefixtures("planted")
@pytest.mark.parametrize("declared", ["pytorch", "textbook"])
def test_the_axis_a_target_really_normalizes_is_found(declared: str) -> None:
    # textbook declares axis 0: the probes then put the channels at the last axis and pass
    # axis 0 with as many entries (the tiled layout)
    fp = _user("last_axis", convention=declared)
    assert (fp.axis, fp.eps, fp.normalization_variance) == (-1, 1e-5, "biased")
    assert fp.convention == "flax"
    assert f"it declares convention {declared}, but what it does matches flax" in fp.notes


@pytest.mark.usefixtures("planted")
def test_a_target_that_is_no_batch_norm_fits_no_convention() -> None:
    fp = _user("identity", running_stats="test_identify:running_pytorch")
    assert not fp.fitted
    assert fp.convention is None
    assert fp.nearest_convention is None
    assert all(getattr(fp, key) is None for key in KEYS if key not in ("differences",))
    assert len(fp.differences) == 1
    assert fp.differences[0].startswith("could not fit any convention: no axis of its output")


class _Raising(ReferenceImplementation):
    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        raise RuntimeError("not today")


def test_a_target_that_always_raises_fits_no_convention() -> None:
    fp = identify(_Raising())
    assert not fp.fitted
    assert fp.differences[0].startswith("could not fit any convention: the target raised")
    assert "RuntimeError: not today" in fp.differences[0]


class _NoRunningStats(ReferenceImplementation):
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
        return RunningStats(running_mean * 0 + 7, running_var)  # not an exponential update


def test_a_running_update_of_another_form_is_not_fitted() -> None:
    fp = identify(_NoRunningStats("onnx"))
    assert (fp.running_variance, fp.momentum, fp.momentum_weights) == (None, None, None)
    assert fp.evidence["running"]["reason"] == "the update is not new = (1 - w) running + w batch"
    # the forward still fits: onnx and textbook differ only in the axis
    assert fp.convention == "onnx"


# --- the pieces -------------------------------------------------------------------------------


def test_shortest_decimal_within_the_uncertainty() -> None:
    assert _shortest(0.010000000000000009, 1e-15) == 0.01
    assert _shortest(9.999999747378752e-06, 1e-18) == 9.999999747379e-06
    assert _shortest(0.123, 0.0) == 0.123


@pytest.mark.parametrize(
    "layout", [Layout(2, 1, 1), Layout(2, 0, 0), Layout(4, 1, 1), Layout(3, 2, 0), Layout(4, 0, 3)]
)
def test_layouts_place_and_take_back_the_channels(layout: Layout) -> None:
    rows = np.arange(12.0).reshape(3, 4)
    x = layout.place(rows)
    assert x.ndim == layout.ndim
    assert x.shape[layout.channel] == x.shape[layout.passed] == 3
    taken = layout.take(x)
    copies = 1 if layout.channel == layout.passed else 3
    assert taken.shape == (3, 4 * copies)
    assert np.array_equal(np.sort(taken, axis=1), np.sort(np.tile(rows, copies), axis=1))


def test_fit_eps_recovers_a_synthetic_model_and_refuses_a_wrong_one() -> None:
    v = np.logspace(-8, 2, 21)
    fit, _ = fit_eps(v, v / (4 / 3 * v + 1e-4), 4, 2.0**-53)
    assert fit is not None
    assert (fit.correction, fit.placement) == ("unbiased", "variance")
    assert abs(fit.eps - 1e-4) <= fit.uncertainty < 1e-15
    fit_sd, _ = fit_eps(v, v / (np.sqrt(v) + 1e-4) ** 2, 4, 2.0**-53)
    assert fit_sd is not None
    assert fit_sd.placement == "standard deviation"
    nothing, tried = fit_eps(v, v, 4, 2.0**-53)  # y = x: var(y) = var(x)
    assert nothing is None
    assert min(m["misfit"] for m in tried) > FIT_TOLERANCE


def test_momentum_direction() -> None:
    tol = 1e-15
    assert momentum_direction(0.1, 0.1, 0.25, 0.25, tol, fixed=False) == "new"
    assert momentum_direction(0.1, 0.9, 0.25, 0.75, tol, fixed=False) == "old"
    assert momentum_direction(0.1, 0.3, 0.25, 0.3, tol, fixed=False) == "own"
    assert momentum_direction(0.1, 0.3, 0.25, 0.4, tol, fixed=False) is None
    assert momentum_direction(0.9, 0.1, 0.25, None, tol, fixed=True) == "old"
    assert momentum_direction(0.5, 0.5, 0.25, None, tol, fixed=True) is None  # either way
    # a float32 attribute: 1 - float32(0.9)
    assert momentum_direction(0.9, 1 - float(np.float32(0.9)), 0.25, 0.75, tol, fixed=False) == (
        "old"
    )


# --- the command ------------------------------------------------------------------------------


def _strict(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise ValueError(f"not RFC 8259 JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_identify_command_prints_and_writes_strict_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "id.json"
    assert bnref_main(["identify", "reference", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("bnref identify reference (declares convention pytorch, dtype float64;")
    assert "  convention              pytorch\n" in out
    report = _strict(path.read_text(encoding="utf-8"))
    assert report["schema"] == "bnref-identify"
    assert report["schema_version"] == 1
    assert {k: report[k] for k in KEYS} == {
        "axis": 1,
        "eps": 1e-05,
        "normalization_variance": "biased",
        "running_variance": "unbiased",
        "momentum": 0.1,
        "variance_algorithm": "two-pass",
        "compute_dtype": "float64",
        "convention": "pytorch",
        "differences": [],
    }


@pytest.mark.usefixtures("planted")
def test_identify_command_takes_a_user_layer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`bnref identify MOD:FN --layer MOD:FN`: the layer runs in the target's worker and gives
    the running variance and the momentum."""
    path = tmp_path / "id.json"
    argv = ["identify", "test_identify:honest", "--layer", "test_identify:layer_pytorch"]
    assert bnref_main([*argv, "--json", str(path)]) == 0
    assert "  running_variance        unbiased\n" in capsys.readouterr().out
    report = _strict(path.read_text(encoding="utf-8"))
    assert (report["running_variance"], report["momentum"]) == ("unbiased", 0.1)
    assert (report["convention"], report["differences"]) == ("pytorch", [])


@pytest.mark.usefixtures("planted")
def test_identify_command_user_target_that_fits_nothing_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "id.json"
    assert main(["test_identify:identity", "--json", str(path)]) == 1
    assert "could not fit any convention" in capsys.readouterr().out
    report = _strict(path.read_text(encoding="utf-8"))
    assert report["fitted"] is False
    assert report["convention"] is None
    assert all(report[k] is None for k in KEYS if k != "differences")


def _usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


def test_unknown_target_is_a_usage_error_listing_the_known_ones(
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _usage(["pytroch"], capsys)
    known = ", ".join(TARGETS)
    assert known.startswith("reference, fast, torch, onnx, onnxruntime")
    assert (
        err == f"bnref identify: TARGET must be one of {known} or module:function; got 'pytroch'\n"
    )


def test_other_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert "--eps need a TARGET module:function" in _usage(["torch", "--eps", "1e-3"], capsys)
    assert "reference computes in float64 only" in _usage(
        ["reference", "--dtype", "float32"], capsys
    )
    assert "cannot import module 'no_such_module'" in _usage(["no_such_module:f"], capsys)
    assert f"--json '{tmp_path}' cannot be written" in _usage(
        ["reference", "--json", str(tmp_path)], capsys
    )


# --- the frameworks (oracle) ------------------------------------------------------------------


def _float32_close(measured: float, exact: float, uncertainty: float) -> bool:
    """An attribute stored as float32 (ONNX's eps and momentum) is off by 2**-24 relatively."""
    return abs(measured - exact) <= uncertainty + exact * 2.0**-24


@pytest.mark.oracle
@pytest.mark.parametrize(
    ("name", "convention", "running", "weights"),
    [
        ("torch", "pytorch", "unbiased", "new"),
        ("onnx", "onnx", "biased", "old"),
        ("onnxruntime", "onnx", "biased", "old"),
    ],
)
def test_frameworks_are_identified(name: str, convention: str, running: str, weights: str) -> None:
    fp = identify(load_target(name, "float64"))
    assert (fp.convention, fp.differences) == (convention, ())
    assert (fp.axis, fp.normalization_variance, fp.running_variance) == (1, "biased", running)
    assert fp.momentum_weights == weights
    assert fp.compute_dtype == "float64"
    assert fp.eps is not None
    assert fp.eps_uncertainty is not None
    assert _float32_close(fp.eps, 1e-5, fp.eps_uncertainty)
    assert fp.momentum is not None
    assert fp.momentum_uncertainty is not None
    # the weight of the new batch statistic: torch's momentum 0.1, ONNX's 1 - 0.9
    assert abs(fp.momentum - 0.1) <= fp.momentum_uncertainty + 0.9 * 2.0**-24
    assert fp.eps_source == "argument"


@pytest.mark.oracle
def test_onnx_stores_eps_and_momentum_as_float32() -> None:
    fp = identify(load_target("onnx", "float64"))
    assert fp.eps == 9.999999747379e-06
    assert fp.momentum == 0.100000023841858
    assert fp.notes == (
        "its eps is 1e-05 rounded to float32 (9.999999747378752e-06)",
        "its momentum is 0.9 rounded to float32 (0.8999999761581421)",
    )


@pytest.mark.oracle
@pytest.mark.parametrize("name", ["torch", "onnx", "onnxruntime"])
def test_frameworks_in_float32_compute_in_float32(name: str) -> None:
    fp = identify(load_target(name, "float32"))
    assert fp.compute_dtype == "float32"
    assert fp.convention == ("pytorch" if name == "torch" else "onnx")


@pytest.mark.oracle
def test_identify_command_on_torch(capsys: pytest.CaptureFixture[str]) -> None:
    assert bnref_main(["identify", "torch"]) == 0
    out = capsys.readouterr().out
    for line in (
        "  axis                    1\n",
        "  normalization_variance  biased\n",
        "  running_variance        unbiased\n",
        "  convention              pytorch\n",
        "  differences             none\n",
    ):
        assert line in out


def exits(x: F, gamma: F, beta: F, eps: float) -> F:  # noqa: ARG001
    """Ends its process."""
    os._exit(0)


def hangs(x: F, gamma: F, beta: F, eps: float) -> F:  # noqa: ARG001
    """Never returns (in time)."""
    time.sleep(60)
    return x


@pytest.mark.parametrize(
    ("name", "how"),
    [("exits", "exited with status 0"), ("hangs", "did not return from forward within 0.5 s")],
)
def test_a_target_that_exits_or_hangs_fits_nothing_and_says_how(name: str, how: str) -> None:
    # the command in a process of its own, with a limit of its own: it must never hang the suite
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *sys.path])}
    argv = [sys.executable, "-m", "bnref.cli", "identify", f"test_identify:{name}"]
    run = subprocess.run(
        [*argv, "--timeout", "0.5"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 1, run.stderr
    assert "could not fit any convention: the target raised on every probe" in run.stdout
    assert how in run.stdout
