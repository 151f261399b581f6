"""Speed and memory of bnref's batch norm against PyTorch CPU, ONNX and textbook NumPy.

Run ``python -m benchmarks.bench_batchnorm`` (``--quick`` for small shapes and 1 repeat,
``--repeats K`` to change k). Every time is the median of k calls of `time.perf_counter` after
one warm-up call (first-touch page faults, lazy imports), all competitors in the same run with
their calls interleaved (see `median_times`).
A ratio is ``bnref time / other time``: above 1 bnref is slower.

* PyTorch CPU, threads = os.cpu_count(): forward ``F.batch_norm(training=True)``; backward
  ``torch.ops.aten.native_batch_norm_backward`` with the saved mean/invstd of one
  ``torch.native_batch_norm`` call made before timing; forward+backward both aten ops
  (pytorch/pytorch aten/src/ATen/native/native_functions.yaml). No autograd graph is built.
* ONNX reference evaluator (``onnx.reference.ReferenceEvaluator``) on one BatchNormalization node
  in training mode, opset 15 (`onnx_batch_norm_model`); it has no backward, so only the forward
  row has a ratio.
* Textbook NumPy (below): the plain formulas in the input dtype, backward from the forward's cache.

Two bnref implementations are timed, in the same run, through their public functions with their
default checks (dtype, shape and finiteness), as a user calls them:
* `fast` (`bnref.fast`): an (N, C, L) view reduced block by block, the blocks of each pass on
  min(os.cpu_count(), 4) threads, float32 input read without a float64 copy, finiteness checked
  from the channel sums;
* `reference` (`reference.batchnorm`, the oracle): the plain whole-array float64 formulas, one
  NumPy expression per step, on one thread.
Both backwards take x (not saved statistics), so they recompute mean, var and x_hat: their
backward row does a forward's statistics as well.
Peak extra memory is tracemalloc's peak (NumPy reports its buffers to it) over the call, the
results included, in multiples of x.nbytes in float64. Torch and onnx are optional.

Targets for `fast`, printed after the table: float64 forward+backward <= 1.5x torch, float32
<= 3x, forward <= 0.5x the ONNX reference evaluator, peak extra memory <= 4x. The reference
has no speed target; its cost against `fast` is printed (`reference/fast`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

import numpy as np
from numpy.typing import NDArray

from bnref import fast
from reference import batchnorm as plain
from reference.gradcheck import GradcheckReport, fast_check, full_check

OPS = ("forward", "backward", "forward+backward")
FULL_SHAPES: dict[str, tuple[int, ...]] = {"dense": (4096, 1024), "conv": (32, 64, 56, 56)}
QUICK_SHAPES: dict[str, tuple[int, ...]] = {"dense": (64, 16), "conv": (4, 3, 5, 5)}
DTYPES = ("float64", "float32")
DEFAULT_REPEATS = 7  # medians of 7: the machine is shared, single calls vary by 2x
EPS = 1e-5
NOT_INSTALLED = "n/a (not installed)"
NO_BACKWARD = "n/a (no backward)"
GRADCHECK_SHAPE = (16, 8)

Array = NDArray[Any]
Thunk = Callable[[], object]


def median_times(fns: Sequence[Thunk], repeats: int) -> list[float]:
    """Median wall time in seconds of `repeats` calls of each fn, after one warm-up call each.

    The calls are interleaved (fn0, fn1, ..., fn0, fn1, ...) so that every competitor sees the
    same background load on a shared machine, which a ratio of medians taken minutes apart
    would not.
    """
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, samples in zip(fns, times, strict=True):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
    return [statistics.median(samples) for samples in times]


def _reduce_axes(x: Array) -> tuple[int, ...]:
    return tuple(i for i in range(x.ndim) if i != 1)


def _column(v: Array, x: Array) -> Array:
    """A (C,) vector shaped to broadcast along axis 1 of x."""
    return v.reshape([-1 if i == 1 else 1 for i in range(x.ndim)])


def textbook_forward(
    x: Array, gamma: Array, beta: Array, eps: float = EPS
) -> tuple[Array, Array, Array]:
    """Textbook training forward in x's dtype: (y, x_hat, inv_std), channel axis 1.

    ``mean = mean(x)``, ``var = mean((x - mean)**2)``, ``inv_std = 1/sqrt(var + eps)``,
    ``x_hat = (x - mean) * inv_std``, ``y = gamma * x_hat + beta``.
    """
    axes = _reduce_axes(x)
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    y = _column(gamma, x) * x_hat + _column(beta, x)
    return y, x_hat, inv_std


def textbook_backward(
    dy: Array, x_hat: Array, inv_std: Array, gamma: Array
) -> tuple[Array, Array, Array]:
    """Closed-form backward from the forward's cache: (dx, dgamma, dbeta).

    ``dbeta = sum(dy)``, ``dgamma = sum(dy * x_hat)``,
    ``dx = gamma * inv_std / n * (n * dy - dbeta - x_hat * dgamma)``.
    """
    axes = _reduce_axes(dy)
    n = dy.size // dy.shape[1]
    dbeta = dy.sum(axis=axes)
    dgamma = (dy * x_hat).sum(axis=axes)
    dx = (_column(gamma, dy) * inv_std / n) * (
        n * dy - _column(dbeta, dy) - x_hat * _column(dgamma, dy)
    )
    return dx, dgamma, dbeta


@dataclass(frozen=True)
class Inputs:
    """One benchmark case: x, gamma, beta and dy of the same dtype."""

    x: Array
    gamma: Array
    beta: Array
    dy: Array


def make_inputs(shape: tuple[int, ...], dtype: str, seed: int = 0) -> Inputs:
    """Standard normal x and dy, gamma near 1 and beta near 0, drawn in float64 then cast."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    x = rng.standard_normal(shape)
    dy = rng.standard_normal(shape)
    gamma = 1.0 + 0.1 * rng.standard_normal(c)
    beta = 0.1 * rng.standard_normal(c)
    return Inputs(*(a.astype(dtype) for a in (x, gamma, beta, dy)))


def bnref_ops(d: Inputs, module: Any = fast) -> dict[str, Thunk]:
    """Forward, backward and forward+backward on d of `module`'s batch-norm functions
    (`bnref.fast` or the plain reference, `reference.batchnorm`)."""

    def forward() -> object:
        return module.batch_norm_forward(d.x, d.gamma, d.beta, eps=EPS)

    def backward() -> object:
        return module.batch_norm_backward(d.dy, d.x, d.gamma, eps=EPS)

    def both() -> object:
        return forward(), backward()

    return {"forward": forward, "backward": backward, "forward+backward": both}


def textbook_ops(d: Inputs) -> dict[str, Thunk]:
    """The textbook version's three operations; backward alone uses a cache made beforehand."""
    _, x_hat, inv_std = textbook_forward(d.x, d.gamma, d.beta)

    def both() -> object:
        _, xh, s = textbook_forward(d.x, d.gamma, d.beta)
        return textbook_backward(d.dy, xh, s, d.gamma)

    return {
        "forward": lambda: textbook_forward(d.x, d.gamma, d.beta),
        "backward": lambda: textbook_backward(d.dy, x_hat, inv_std, d.gamma),
        "forward+backward": both,
    }


def torch_ops(d: Inputs) -> dict[str, Thunk] | str:
    """PyTorch CPU's three operations (see the module docstring), or why there are none."""
    # Optional and slow to import: imported only when measured (PLC0415 on purpose).
    try:
        import torch  # noqa: PLC0415
        from torch.nn import functional  # noqa: PLC0415
    except ImportError:
        return NOT_INSTALLED
    torch.set_num_threads(os.cpu_count() or 1)
    x, g, b, dy = (torch.from_numpy(a) for a in (d.x, d.gamma, d.beta, d.dy))
    mask = [True, True, True]
    _, save_mean, save_invstd = torch.native_batch_norm(x, g, b, None, None, True, 0.0, EPS)

    def backward() -> object:
        return torch.ops.aten.native_batch_norm_backward(
            dy, x, g, None, None, save_mean, save_invstd, True, EPS, mask
        )

    def both() -> object:
        _, m, s = torch.native_batch_norm(x, g, b, None, None, True, 0.0, EPS)
        return torch.ops.aten.native_batch_norm_backward(
            dy, x, g, None, None, m, s, True, EPS, mask
        )

    return {
        "forward": lambda: functional.batch_norm(x, None, None, g, b, training=True, eps=EPS),
        "backward": backward,
        "forward+backward": both,
    }


ONNX_OPSET = 15  # BatchNormalization-15; training_mode exists since opset 14
_ONNX_INPUTS = ("X", "scale", "B", "input_mean", "input_var")


def onnx_batch_norm_model(ndim: int, dtype: str) -> Any:
    """One BatchNormalization node (opset 15, training_mode=1) for ndim-D X of `dtype`.

    Built here rather than with `bnref.targets.onnx_target.batch_norm_model` because
    `properties` imports hypothesis, which the bench environment (bnref[onnx]) lacks; the node
    is the same (https://onnx.ai/onnx/operators/onnx__BatchNormalization.html). Outputs Y,
    running_mean and running_var: training mode needs them (ONNX Runtime trains iff > 1 output).
    """
    from onnx import TensorProto, checker, helper  # noqa: PLC0415 -- optional dependency

    elem = {"float64": TensorProto.DOUBLE, "float32": TensorProto.FLOAT}[dtype]
    outputs = ["Y", "running_mean", "running_var"]
    node = helper.make_node(
        "BatchNormalization", list(_ONNX_INPUTS), outputs, epsilon=EPS, training_mode=1
    )
    shape = ["N", "C", *[None] * (ndim - 2)]
    graph = helper.make_graph(
        [node],
        "batch_norm",
        [helper.make_tensor_value_info("X", elem, shape)]
        + [helper.make_tensor_value_info(n, elem, ["C"]) for n in _ONNX_INPUTS[1:]],
        [helper.make_tensor_value_info("Y", elem, shape)]
        + [helper.make_tensor_value_info(n, elem, ["C"]) for n in outputs[1:]],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ONNX_OPSET)])
    checker.check_model(model, full_check=True)
    return model


def onnx_forward(d: Inputs) -> Thunk | str:
    """The ONNX reference evaluator's training forward, or why there is none."""
    try:  # optional: imported only when measured (PLC0415 on purpose)
        from onnx.reference import ReferenceEvaluator  # noqa: PLC0415
    except ImportError:
        return NOT_INSTALLED
    session = ReferenceEvaluator(onnx_batch_norm_model(d.x.ndim, str(d.x.dtype)))
    c = d.gamma.shape[0]
    feeds = {
        "X": d.x,
        "scale": d.gamma,
        "B": d.beta,
        "input_mean": np.zeros(c, d.x.dtype),
        "input_var": np.ones(c, d.x.dtype),
    }
    return lambda: session.run(None, feeds)


@dataclass(frozen=True)
class Row:
    """One table row: fast's median seconds and its ratio to each competitor (or why not), and
    the plain reference's seconds and ratios to torch and to fast."""

    op: str
    layout: str
    shape: tuple[int, ...]
    dtype: str
    seconds: float
    torch: float | str
    onnx: float | str
    textbook: float
    reference_seconds: float
    reference_torch: float | str


def measure_case(layout: str, shape: tuple[int, ...], dtype: str, repeats: int) -> list[Row]:
    """The three rows of one (shape, dtype) case."""
    d = make_inputs(shape, dtype)
    ours = bnref_ops(d, fast)
    oracle = bnref_ops(d, plain)
    book = textbook_ops(d)
    theirs = torch_ops(d)
    onnx_fwd = onnx_forward(d)
    rows = []
    for op in OPS:
        fns = [ours[op], oracle[op], book[op]]
        if not isinstance(theirs, str):
            fns.append(theirs[op])
        if op == "forward" and not isinstance(onnx_fwd, str):
            fns.append(onnx_fwd)
        t, t_ref, t_book, *others = median_times(fns, repeats)
        r_torch: float | str = NOT_INSTALLED
        ref_torch: float | str = NOT_INSTALLED
        if not isinstance(theirs, str):
            t_torch = others.pop(0)
            r_torch, ref_torch = t / t_torch, t_ref / t_torch
        t_onnx: float | str = NO_BACKWARD
        if op == "forward":
            t_onnx = onnx_fwd if isinstance(onnx_fwd, str) else t / others.pop(0)
        rows.append(Row(op, layout, shape, dtype, t, r_torch, t_onnx, t / t_book, t_ref, ref_torch))
    return rows


def peak_memory(shape: tuple[int, ...], module: Any = fast) -> tuple[float, float, float]:
    """tracemalloc peaks of `module`'s forward, backward, and forward then backward (forward's
    result alive), each divided by x.nbytes of a float64 x of `shape`."""
    d = make_inputs(shape, "float64")
    peaks = []
    for calls in (("forward",), ("backward",), ("forward", "backward")):
        ops = bnref_ops(d, module)
        tracemalloc.start()
        try:
            kept = [ops[name]() for name in calls]
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        del kept
        peaks.append(peak / d.x.nbytes)
    return peaks[0], peaks[1], peaks[2]


@dataclass(frozen=True)
class GradcheckTiming:
    """Median seconds, verdict and f-evaluation count of one gradient check mode."""

    mode: str
    seconds: float
    passed: bool
    evaluations: int


def gradcheck_timings(repeats: int) -> list[GradcheckTiming]:
    """Time fast_check and full_check of the reference batch norm on a (16, 8) float64 input."""
    d = make_inputs(GRADCHECK_SHAPE, "float64", seed=1)

    def f(x: Array, g: Array, b: Array) -> Array:
        return plain.batch_norm_forward(x, g, b, eps=EPS).y

    def vjp(v: Array, x: Array, g: Array, _b: Array) -> tuple[Array, Array, Array]:
        r = plain.batch_norm_backward(v, x, g, eps=EPS)
        return r.dx, r.dgamma, r.dbeta

    inputs = [d.x, d.gamma, d.beta]
    names = ["x", "gamma", "beta"]
    checks: dict[str, Callable[[], GradcheckReport]] = {
        "fast": lambda: fast_check(f, vjp, inputs, upstream=d.dy, rng=0, names=names),
        "full": lambda: full_check(f, vjp, inputs, upstream=d.dy, names=names),
    }
    timings = []
    for mode, check in checks.items():
        report = check()
        (seconds,) = median_times([check], repeats)
        timings.append(GradcheckTiming(mode, seconds, report.passed, report.evaluations))
    return timings


def _ratio(value: float | str) -> str:
    return value if isinstance(value, str) else f"{value:.3g}x"


def format_table(rows: Sequence[Row]) -> list[str]:
    """The rows as fixed-width text lines, with a header."""
    header = (
        "op",
        "layout",
        "shape",
        "dtype",
        "fast ms",
        "fast/torch",
        "fast/onnx-ref",
        "fast/textbook",
        "reference ms",
        "reference/torch",
        "reference/fast",
    )
    cells = [header] + [
        (
            r.op,
            r.layout,
            "x".join(map(str, r.shape)),
            r.dtype,
            f"{1e3 * r.seconds:.2f}",
            _ratio(r.torch),
            _ratio(r.onnx),
            _ratio(r.textbook),
            f"{1e3 * r.reference_seconds:.2f}",
            _ratio(r.reference_torch),
            _ratio(r.reference_seconds / r.seconds),
        )
        for r in rows
    ]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    return [
        "  ".join(c.ljust(w) for c, w in zip(cell, widths, strict=True)).rstrip() for cell in cells
    ]


TORCH_TARGET = {"float64": 1.5, "float32": 3.0}  # forward+backward, fast / torch
ONNX_TARGET = 0.5  # forward, fast / onnx-ref: at least 2x faster
MEMORY_TARGET = 4.0  # peak extra memory / x.nbytes in float64


def _verdict(value: float | str, limit: float) -> str:
    if isinstance(value, str):
        return value
    return f"{value:.3g}x <= {limit:g}x {'met' if value <= limit else 'NOT met'}"


def target_lines(rows: Sequence[Row], peaks: Sequence[tuple[str, float]]) -> list[str]:
    """One line per target and case: the measured ratio, the limit, met or not."""
    lines = [
        f"target fast {r.dtype} {r.layout} forward+backward /torch: "
        + _verdict(r.torch, TORCH_TARGET[r.dtype])
        for r in rows
        if r.op == "forward+backward"
    ]
    lines += [
        f"target fast {r.dtype} {r.layout} forward /onnx-ref: {_verdict(r.onnx, ONNX_TARGET)}"
        for r in rows
        if r.op == "forward"
    ]
    lines += [f"target fast peak memory {name}: {_verdict(p, MEMORY_TARGET)}" for name, p in peaks]
    return lines


def run(*, quick: bool, repeats: int, out: TextIO) -> list[Row]:
    """Measure everything and print the report to `out`; returns the timing rows."""
    shapes = QUICK_SHAPES if quick else FULL_SHAPES
    print(
        f"bnref batch norm benchmark: median of k={repeats} interleaved calls after 1 warm-up; "
        f"os.cpu_count()={os.cpu_count()}, numpy {np.__version__}",
        file=out,
    )
    print(
        "ratio = time / other time (>1: slower). torch: F.batch_norm(training=True)"
        " forward, aten.native_batch_norm_backward backward, threads=os.cpu_count(). "
        "fast (bnref.fast): threads=min(os.cpu_count(), 4). reference: the plain oracle. "
        "onnx-ref: ReferenceEvaluator forward, opset 15, training_mode=1.",
        file=out,
    )
    rows = [
        row
        for dtype in DTYPES
        for layout, shape in shapes.items()
        for row in measure_case(layout, shape, dtype, repeats)
    ]
    for line in format_table(rows):
        print(line, file=out)
    peaks = []
    for layout, shape in shapes.items():
        for name, module in (("fast", fast), ("reference", plain)):
            fwd, bwd, both = peak_memory(shape, module)
            if module is fast:
                peaks.append((f"{layout} forward+backward", both))
            print(
                f"peak extra memory of {name}, float64 {layout} {shape}, in multiples of "
                f"x.nbytes: forward {fwd:.2f}, backward {bwd:.2f}, forward+backward {both:.2f}",
                file=out,
            )
    for g in gradcheck_timings(repeats):
        print(
            f"gradcheck {g.mode} on {GRADCHECK_SHAPE} float64: {1e3 * g.seconds:.2f} ms, "
            f"passed={g.passed}, {g.evaluations} evaluations of f",
            file=out,
        )
    for line in target_lines(rows, peaks):
        print(line, file=out)
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``python -m benchmarks.bench_batchnorm [--quick] [--repeats K]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small shapes and 1 repeat")
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per measurement")
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (1 if args.quick else DEFAULT_REPEATS)
    if repeats < 1:
        parser.error(f"--repeats must be >= 1, got {repeats}")
    run(quick=args.quick, repeats=repeats, out=sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
