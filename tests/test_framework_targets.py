"""The plumbing of the framework targets: jax, flax, flax-slow, keras-*, tensorflow, and torch's
memory format and bfloat16.

What is checked is the adapters, not the frameworks' verdicts (`bnref check TARGET` gives
those): shapes and the channel axis survive the trip, eps and momentum reach the layer, dtypes
round-trip, the padding of channels and inference rows changes nothing, the right errors name
what is missing. The tests without a mark need no framework: `bnref.targets.channels_last`
with NumPy kernels, and the messages when a framework is missing. Those marked `oracle` (`nox -s
oracle`) run each target in a worker process of its own (`bnref.isolation.open_target`), as
`bnref check` does: Keras fixes its backend per process.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bnref.cli import main
from bnref.isolation import IsolatedTarget, TargetWorker, open_target
from bnref.targets import (
    EXTRAS,
    TARGET_DTYPES,
    TARGETS,
    TargetLacks,
    load_target,
    numpy_dtype,
)
from bnref.targets.channels_last import (
    CHANNEL_BUCKET,
    ChannelsLastTarget,
    Flat,
    Kernel,
    row_bucket,
)
from properties.adapter import Array
from properties.framework import Unsupported, run_property
from properties.profiles import failure_demo
from properties.registry import BATCHNORM_PROPERTIES
from properties.strategies import layouts
from reference import update_running_stats
from reference.batchnorm import batch_norm_backward, batch_norm_forward, batch_norm_inference

oracle = pytest.mark.oracle

CHANNELS_LAST = (
    "jax",
    "flax",
    "flax-slow",
    "keras-numpy",
    "keras-jax",
    "keras-torch",
    "keras-tensorflow",
    "tensorflow",
)
# What each target needs importable (its extra installs them).
NEEDS = {
    "jax": ("jax",),
    "flax": ("flax", "jax"),
    "flax-slow": ("flax", "jax"),
    "keras-numpy": ("keras",),
    "keras-jax": ("keras", "jax"),
    "keras-torch": ("keras", "torch"),
    "keras-tensorflow": ("keras", "tensorflow"),
    "tensorflow": ("tensorflow",),
}
CONVENTION = dict.fromkeys(CHANNELS_LAST, "keras") | {
    "jax": "flax",
    "flax": "flax",
    "flax-slow": "flax",
    "tensorflow": "tensorflow",
}
# What the adapter's name starts with: the framework and its version.
NAMED = dict.fromkeys(CHANNELS_LAST, "keras ") | {
    "jax": "jax ",
    "flax": "flax ",
    "flax-slow": "flax ",
    "tensorflow": "tensorflow ",
}
# A loose bound for plumbing checks on well-conditioned data (|x_hat| <= 3, |gamma| <= 2): a
# wrong axis, eps or dtype trip errs by O(1) or by eps-sized amounts far above it; float64 is
# held to float32's level because Keras computes a float64 layer in float32 (the audit says so).
TOLERANCE = {"float64": 1e-5, "float32": 1e-5, "float16": 2e-2, "bfloat16": 1e-1}
AUDITED_DTYPES = ("float64", "float32", "bfloat16")


def _installed(target: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in NEEDS[target])


# --- without any framework: names, messages, the layout ---------------------------------------


def test_every_framework_target_is_known_and_has_an_extra() -> None:
    assert set(CHANNELS_LAST) <= set(TARGETS)
    assert set(EXTRAS) == set(TARGETS) - {"reference", "fast"}
    assert TARGET_DTYPES["tensorflow"] == ("float64", "float32", "float16", "bfloat16")


def test_an_unknown_target_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"^target must be one of reference, fast, torch") as info:
        load_target("keras3")
    assert all(name in str(info.value) for name in TARGETS)


@pytest.mark.parametrize(
    ("target", "blocked", "message"),
    [
        ("jax", "jax", r"^bnref check jax needs JAX: pip install 'bnref\[jax\]'$"),
        ("flax", "flax", r"^bnref check flax needs Flax \(and JAX\): pip install 'bnref\[flax\]'$"),
        ("flax-slow", "flax", r"^bnref check flax-slow needs Flax .*'bnref\[flax\]'$"),
        ("keras", "keras", r"^bnref check keras needs Keras 3 and its backend \(KERAS_BACKEND, "),
        ("keras-numpy", "keras", r"^bnref check keras-numpy needs Keras 3: .*'bnref\[keras\]'$"),
        ("keras-jax", "keras", r"^bnref check keras-jax needs Keras 3 and JAX: .*\[keras,jax\]'$"),
        ("keras-torch", "keras", r"^bnref check keras-torch needs .*'bnref\[keras,torch\]'$"),
        ("keras-tensorflow", "keras", r"needs Keras 3 and TensorFlow: .*\[keras,tensorflow\]'$"),
        (
            "tensorflow",
            "tensorflow",
            r"^bnref check tensorflow needs TensorFlow: .*\[tensorflow\]'$",
        ),
    ],
)
def test_a_missing_framework_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, target: str, blocked: str, message: str
) -> None:
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setitem(sys.modules, blocked, None)  # `import blocked` now raises ImportError
    # The adapter modules import their framework when they are imported: import them afresh.
    for module in ("jax", "flax", "keras", "tensorflow"):
        monkeypatch.delitem(sys.modules, f"bnref.targets.{module}_target", raising=False)
    with pytest.raises(ImportError, match=message):
        load_target(target, "float32")


def test_bfloat16_without_ml_dtypes_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ml_dtypes", None)
    with pytest.raises(
        ImportError, match=r"^--dtype bfloat16 needs ml_dtypes .*'bnref\[bfloat16\]'"
    ):
        numpy_dtype("bfloat16")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "flax", "memory_format": "channels_last"}, r"^memory_format 'channels_last' is "),
        ({"name": "torch", "memory_format": "nhwc"}, r"^memory_format must be one of \('conti"),
        ({"name": "onnx", "dtype": "bfloat16"}, r"^dtype must be one of \('float64', 'float32', "),
        ({"name": "fast", "dtype": "bfloat16"}, r"^dtype must be 'float64' for the fast target"),
    ],
)
def test_options_a_target_lacks_are_refused_before_import(
    kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_target(**kwargs)


@settings(max_examples=60, deadline=None)
@given(layouts(), st.sampled_from([0, 4, CHANNEL_BUCKET]), st.integers(0, 2**32 - 1))
def test_the_flat_layout_round_trips(layout: Any, bucket: int, seed: int) -> None:
    """x -> (n, padded) -> x is the identity for every shape and channel axis; each channel's
    values form one column; padding columns hold the fill value."""
    x = np.random.default_rng(seed).standard_normal(layout.shape)
    flat = Flat.of(x, layout.axis, bucket=bucket, target="t", method="m")
    m = flat.matrix(x, fill=7.0)
    assert m.shape == (flat.rows, flat.padded)
    assert flat.padded >= flat.channels
    assert bucket == 0 or flat.padded % bucket == 0
    np.testing.assert_array_equal(flat.restore(m), x)
    ax = layout.axis % x.ndim
    for c in range(flat.channels):
        column = np.sort(m[:, c])
        np.testing.assert_array_equal(column, np.sort(np.take(x, c, axis=ax).ravel()))
    assert np.all(m[:, flat.channels :] == 7.0)
    padded_rows = np.vstack([m, np.full((3, flat.padded), 9.0)])
    np.testing.assert_array_equal(flat.restore(padded_rows), x)  # extra rows are dropped


def test_row_buckets_are_powers_of_two() -> None:
    assert [row_bucket(n) for n in (1, 2, 8, 9, 16, 17, 500, 512, 513)] == [
        8,
        8,
        8,
        16,
        16,
        32,
        512,
        512,
        1024,
    ]


def test_a_one_dimensional_x_is_refused() -> None:
    with pytest.raises(TargetLacks, match=r"lacks forward: x must have at least 2 dimensions"):
        Flat.of(np.zeros(3), 0, bucket=0, target="t", method="forward")


class NumpyChannelsLast(ChannelsLastTarget):
    """The reference's formulas as (n, C) kernels in float64, with both paddings on: what
    `ChannelsLastTarget` adds (layout, padding, casting) must keep them exact."""

    convention = "flax"
    framework = "numpy channels-last"
    channel_bucket = 8
    pad_inference_rows = True

    def train_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        out = batch_norm_forward(x, gamma, beta, eps=eps, axis=1)
        return out.y, out.mean, out.var

    def grad_kernel(
        self, dy: Kernel, x: Kernel, gamma: Kernel, beta: Kernel, *, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        g = batch_norm_backward(dy, x, gamma, eps=eps, axis=1)
        return g.dx, g.dgamma, g.dbeta

    def infer_kernel(
        self, x: Kernel, gamma: Kernel, beta: Kernel, mean: Kernel, var: Kernel, *, eps: float
    ) -> Kernel:
        return batch_norm_inference(x, gamma, beta, mean, var, eps=eps, axis=1)

    def frozen_grad_kernel(
        self,
        dy: Kernel,
        x: Kernel,
        gamma: Kernel,
        beta: Kernel,
        *,
        mean: Kernel,
        var: Kernel,
        eps: float,
    ) -> tuple[Kernel, Kernel, Kernel]:
        s = np.sqrt(var + eps)
        return gamma * dy / s, np.sum(dy * (x - mean) / s, axis=0), np.sum(dy, axis=0)

    def layer_kernel(
        self, x: Kernel, mean: Kernel, var: Kernel, *, momentum: float, eps: float
    ) -> tuple[Kernel, Kernel, Kernel]:
        out = batch_norm_forward(x, np.ones(x.shape[1]), np.zeros(x.shape[1]), eps=eps, axis=1)
        new = update_running_stats(
            mean, var, out.mean, out.var, x.shape[0], convention="flax", momentum=momentum
        )
        return out.y, new.mean, new.var


@pytest.mark.parametrize("prop", BATCHNORM_PROPERTIES, ids=lambda p: p.name)
def test_the_channels_last_plumbing_keeps_every_property(prop: Any) -> None:
    """With the reference's arithmetic behind it, the channels-last adapter (moved axis,
    flattened rows, padded channels and inference rows) passes every property."""
    result = run_property(prop, NumpyChannelsLast("float64"), failure_demo(25))
    assert result.passed, result.failure


def test_the_channels_last_adapter_refuses_momentum_none() -> None:
    impl = NumpyChannelsLast("float32")
    with pytest.raises(TargetLacks, match=r"momentum=None \(a cumulative average\) is PyTorch's"):
        impl.update_running_stats(
            np.zeros((2, 1)), np.zeros(1), np.ones(1), momentum=None, num_batches_tracked=1, axis=1
        )


# --- each framework in its worker ------------------------------------------------------------


@pytest.fixture(scope="module")
def workers() -> Iterator[dict[str, tuple[TargetWorker, dict[str, IsolatedTarget]]]]:
    """One worker per installed framework target, at every audited dtype it has."""
    opened: dict[str, tuple[TargetWorker, dict[str, IsolatedTarget]]] = {}
    try:
        for target in CHANNELS_LAST:
            if _installed(target):
                worker, impls = open_target(target, AUDITED_DTYPES, timeout=300)
                opened[target] = (worker, dict(zip(AUDITED_DTYPES, impls, strict=True)))
        yield opened
    finally:
        for worker, _ in opened.values():
            worker.close()


def _target(
    workers: dict[str, tuple[TargetWorker, dict[str, IsolatedTarget]]], name: str, dtype: str
) -> tuple[TargetWorker, IsolatedTarget]:
    if name not in workers:
        pytest.skip(f"{name} is not installed here: pip install 'bnref[{EXTRAS[name]}]'")
    worker, impls = workers[name]
    return worker, impls[dtype]


def _case(shape: tuple[int, ...], axis: int, seed: int = 0) -> tuple[Array, Array, Array]:
    """Well-conditioned x (|mean| / std ~ 1), gamma and beta for `shape`, rounded to bfloat16
    so that every dtype receives the same values."""
    rng = np.random.default_rng(seed)
    c = shape[axis]
    bf = numpy_dtype("bfloat16")

    def cast(values: Array) -> Array:
        out: Array = np.asarray(values).astype(bf).astype(np.float64)
        return out

    x = cast(
        rng.standard_normal(shape)
        + rng.uniform(-1, 1, size=c).reshape(
            [c if i == axis % len(shape) else 1 for i in range(len(shape))]
        )
    )
    return x, cast(rng.uniform(0.5, 2.0, c)), cast(rng.uniform(-1, 1, c))


def _close(got: Array, want: Array, dtype: str, what: str) -> None:
    got = np.asarray(got)
    assert got.dtype == np.float64, f"{what}: {got.dtype}"
    assert got.shape == np.shape(want), f"{what}: shape {got.shape} != {np.shape(want)}"
    scale = max(1.0, float(np.max(np.abs(want))))
    np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE[dtype] * scale, err_msg=what)


LAYOUTS = [((6, 3), 1), ((5, 4, 3), 1), ((2, 3, 4, 5), -1), ((2, 3, 2, 2, 3), 2), ((7, 2), 0)]


@oracle
@pytest.mark.parametrize("name", CHANNELS_LAST)
@pytest.mark.parametrize("dtype", AUDITED_DTYPES)
def test_forward_keeps_layout_axis_and_dtype(workers: Any, name: str, dtype: str) -> None:
    _, impl = _target(workers, name, dtype)
    assert impl.name.startswith(NAMED[name])
    assert impl.name.endswith(f" {dtype}")
    assert impl.convention == CONVENTION[name]
    assert impl.dtype == dtype
    if name == "tensorflow" and dtype == "float64":
        with pytest.raises(Unsupported, match="FusedBatchNormV3 has no float64 kernel"):
            impl.forward(*_case((4, 3), 1), eps=1e-3, axis=1)
        return
    for shape, axis in LAYOUTS:
        x, gamma, beta = _case(shape, axis)
        before = x.copy()
        out = impl.forward(x, gamma, beta, eps=1e-3, axis=axis)
        want = batch_norm_forward(x, gamma, beta, eps=1e-3, axis=axis)
        _close(out.y, want.y, dtype, f"y {shape} axis {axis}")
        _close(out.mean, want.mean, dtype, "batch mean")
        _close(out.var, want.var, dtype, "biased batch variance")
        np.testing.assert_array_equal(x, before)
        if dtype != "float64":  # the results come back in the target's dtype, exactly
            rounded = out.y.astype(numpy_dtype(dtype)).astype(np.float64)
            np.testing.assert_array_equal(out.y, rounded)


@oracle
@pytest.mark.parametrize("name", CHANNELS_LAST)
def test_eps_reaches_the_layer(workers: Any, name: str) -> None:
    """A batch whose variance (~1e-2) is comparable to eps: y moves with eps as the reference's."""
    _, impl = _target(workers, name, "float32")
    x, gamma, beta = _case((9, 2), 1)
    x = x / 8
    for eps in (1e-5, 1e-2, 1.0):
        want = batch_norm_forward(x, gamma, beta, eps=eps, axis=1).y
        _close(impl.forward(x, gamma, beta, eps=eps, axis=1).y, want, "float32", f"eps {eps}")
        y_inf = impl.inference(x, gamma, beta, np.zeros(2), np.full(2, 1e-2), eps=eps, axis=1)
        want_inf = batch_norm_inference(
            x, gamma, beta, np.zeros(2), np.full(2, 1e-2), eps=eps, axis=1
        )
        _close(y_inf, want_inf, "float32", f"inference eps {eps}")


@oracle
@pytest.mark.parametrize("name", CHANNELS_LAST)
@pytest.mark.parametrize("momentum", [0.0, 0.25, 0.99])
def test_momentum_reaches_the_layer(workers: Any, name: str, momentum: float) -> None:
    """One step of the real layer follows its convention with the momentum given."""
    _, impl = _target(workers, name, "float32")
    x, _, _ = _case((5, 3, 2), 1)
    rm, rv = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.25, 3.0])
    got = impl.update_running_stats(x, rm, rv, momentum=momentum, num_batches_tracked=None, axis=1)
    stats = batch_norm_forward(x, np.ones(3), np.zeros(3), eps=1.0, axis=1)
    want = update_running_stats(
        rm, rv, stats.mean, stats.var, 10, convention=impl.convention, momentum=momentum
    )
    _close(got.mean, want.mean, "float32", "running mean")
    _close(got.var, want.var, "float32", "running var")
    with pytest.raises(Unsupported, match="momentum=None"):
        impl.update_running_stats(x, rm, rv, momentum=None, num_batches_tracked=1, axis=1)


@oracle
@pytest.mark.parametrize("name", CHANNELS_LAST)
def test_the_layer_step_is_one_step_of_the_layer(workers: Any, name: str) -> None:
    """y of the step is x_hat with the eps given, and its running statistics are those of
    update_running_stats with the same momentum."""
    worker, impl = _target(workers, name, "float32")
    x, _, _ = _case((4, 3, 2), 1)
    rm, rv = np.array([0.5, -1.0, 2.0]), np.array([1.0, 0.25, 3.0])
    y, new_mean, new_var = worker.call(
        "float32", "layer_step", [x, rm, rv], {"momentum": 0.75, "eps": 0.5, "axis": 1}
    )
    want = batch_norm_forward(x, np.ones(3), np.zeros(3), eps=0.5, axis=1).y
    _close(y, want, "float32", "layer y")
    stats = impl.update_running_stats(x, rm, rv, momentum=0.75, num_batches_tracked=None, axis=1)
    np.testing.assert_array_equal(new_mean, stats.mean)
    np.testing.assert_array_equal(new_var, stats.var)


@oracle
@pytest.mark.parametrize("name", CHANNELS_LAST)
@pytest.mark.parametrize("dtype", ["float64", "bfloat16"])
def test_gradients_come_from_the_framework(workers: Any, name: str, dtype: str) -> None:
    """backward and frozen_backward against the reference's formulas, with an n that is no
    power of two and a C below the channel bucket (both paddings in play)."""
    worker, impl = _target(workers, name, dtype)
    shape, axis = (3, 5, 3), 1
    x, gamma, _ = _case(shape, axis)
    dy = np.random.default_rng(1).standard_normal(shape)
    rm, rv = np.array([0.1, -0.2, 0.3, 0.0, 1.0]), np.array([0.5, 1.0, 2.0, 0.1, 1.0])
    kwargs: dict[str, Any] = {"eps": 1e-3, "axis": axis}
    if name == "keras-numpy" or (name == "tensorflow" and dtype == "float64"):
        with pytest.raises(Unsupported, match=r"no autodiff|no float64 kernel"):
            impl.backward(dy, x, gamma, **kwargs)
        with pytest.raises(Unsupported, match=r"no autodiff|no float64 kernel"):
            worker.call(dtype, "frozen_backward", [dy, x, gamma, rm, rv], kwargs)
        return
    g = impl.backward(dy, x, gamma, **kwargs)
    want = batch_norm_backward(dy, x, gamma, **kwargs)
    scale = float(np.max(np.abs(want.dx))) * 8  # dx mixes values up to n times larger
    _close(g.dx / scale, want.dx / scale, dtype, "dx")
    _close(g.dgamma / 15, want.dgamma / 15, dtype, "dgamma")
    _close(g.dbeta / 15, want.dbeta / 15, dtype, "dbeta")
    f = worker.call(dtype, "frozen_backward", [dy, x, gamma, rm, rv], kwargs)
    s = np.sqrt(rv + 1e-3).reshape(1, 5, 1)
    _close(f.dx, gamma.reshape(1, 5, 1) * dy / s, dtype, "frozen dx")
    dgamma = np.sum(dy * (x - rm.reshape(1, 5, 1)) / s, axis=(0, 2))
    _close(f.dgamma / 15, dgamma / 15, dtype, "frozen dgamma")
    _close(f.dbeta / 15, np.sum(dy, axis=(0, 2)) / 15, dtype, "frozen dbeta")


@oracle
@pytest.mark.parametrize("name", CHANNELS_LAST)
def test_inference_rows_are_independent_of_the_padding(workers: Any, name: str) -> None:
    """Batches of 1, 3 and 9 rows (padded to 8, 8 and 16 inside) give each example the
    output it gets alone."""
    _, impl = _target(workers, name, "float32")
    x, gamma, beta = _case((9, 4), 1)
    rm, rv = np.array([0.5, -0.5, 0.0, 1.0]), np.array([2.0, 0.5, 1.0, 1.0])
    whole = impl.inference(x, gamma, beta, rm, rv, eps=1e-3, axis=1)
    for rows in (slice(0, 1), slice(2, 5), slice(0, 9)):
        part = impl.inference(x[rows], gamma, beta, rm, rv, eps=1e-3, axis=1)
        np.testing.assert_array_equal(part, whole[rows])


@oracle
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_keras_takes_the_backend_keras_picks(backend: str) -> None:
    """The target `keras` is Keras on KERAS_BACKEND, as a user's own import would be."""
    if not _installed(f"keras-{backend}"):
        pytest.skip(f"needs Keras and {backend}: pip install 'bnref[{EXTRAS['keras-' + backend]}]'")
    code = "from bnref.targets import load_target\nprint(load_target('keras', 'float32').name)\n"
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
        env={**os.environ, "KERAS_BACKEND": backend},
    )
    assert "BatchNormalization float32" in run.stdout
    assert f"({backend})" in run.stdout


@oracle
def test_keras_refuses_a_second_backend_in_one_process() -> None:
    if not (_installed("keras-numpy") and _installed("keras-torch")):
        pytest.skip("needs Keras and PyTorch: pip install 'bnref[keras,torch]'")
    code = (
        "from bnref.targets import load_target\n"
        "load_target('keras-numpy', 'float32')\n"
        "load_target('keras-torch', 'float32')\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert run.returncode == 1
    assert (
        "ValueError: keras-torch: Keras is already imported in this process with the 'numpy' "
        "backend" in run.stderr
    )


# --- torch: memory format and bfloat16 (in this process, as tests/test_targets.py) ---------


@oracle
@pytest.mark.parametrize("dtype", AUDITED_DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 3, 2, 3, 2), (6, 3)])
def test_torch_channels_last_and_bfloat16(dtype: str, shape: tuple[int, ...]) -> None:
    import torch  # noqa: PLC0415 -- an optional dependency

    impl = load_target("torch", dtype, memory_format="channels_last")
    assert impl.name.endswith(f" channels_last {dtype}")
    # load_target returns the protocol type; _tensor is the torch adapter's own conversion,
    # the one place where the memory format is set, so it is what this test looks at.
    tensor = impl._tensor(np.zeros(shape), "x", "forward")  # type: ignore[attr-defined]
    layout = {4: torch.channels_last, 5: torch.channels_last_3d}.get(len(shape))
    if layout is not None:
        assert tensor.is_contiguous(memory_format=layout)
        assert not tensor.is_contiguous()
    x, gamma, beta = _case(shape, 1)
    dy = np.random.default_rng(2).standard_normal(shape)
    out = impl.forward(x, gamma, beta, eps=1e-3, axis=1)
    _close(out.y, batch_norm_forward(x, gamma, beta, eps=1e-3, axis=1).y, dtype, "y")
    g = impl.backward(dy, x, gamma, eps=1e-3, axis=1)
    want = batch_norm_backward(dy, x, gamma, eps=1e-3, axis=1)
    scale = float(np.max(np.abs(want.dx))) * 8
    _close(g.dx / scale, want.dx / scale, dtype, "dx")


# --- bnref check --memory-format ----------------------------------------------------------------


@pytest.mark.parametrize("target", ["flax", "reference", "user_impl_example:forward"])
def test_memory_format_is_the_torch_targets(
    target: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["check", target, "--memory-format", "channels_last"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert f"bnref check: --memory-format is the torch target's; got TARGET {target!r}" in err


@oracle
def test_check_torch_in_channels_last(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["check", "torch", "--memory-format", "channels_last", "--dtype", "float32"]
    assert main([*argv, "--property", "forward-accuracy", "--property", "backward-accuracy"]) == 0
    assert " channels_last float32 (dtype float32, profile " in capsys.readouterr().out
