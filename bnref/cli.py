"""The `bnref` command: `bnref check` runs every property against an implementation;
`bnref experiment NAME` runs one of the course's experiments (see `bnref.experiments.cli`);
`bnref identify TARGET [--json PATH]` measures which batch norm a target computes (its axis,
eps, variances, momentum, variance algorithm, compute precision and named convention; see
`bnref identify --help` and `bnref.identify`).

    bnref check [TARGET] [--dtype float64|float32|float16|bfloat16 ...]
                [--profile dev|ci|thorough] [--property NAME ...] [--json PATH]
                [--timeout SECONDS] [--memory-format contiguous|channels_last]
                [--convention NAME] [--backward MOD:FN] [--inference MOD:FN]
                [--running-stats MOD:FN] [--layer MOD:FN] [--eps EPS] [--momentum M]
                [--strict] [--progress auto|always|never]

TARGET is `reference` (the default), `torch` (--memory-format channels_last: x in torch's
channels-last layout), `onnx` (the ONNX reference evaluator), `onnxruntime`, `jax` (a
jax.numpy textbook batch norm), `flax` and `flax-slow` (use_fast_variance=False), `keras` (on
KERAS_BACKEND) and `keras-numpy`, `keras-jax`, `keras-torch`, `keras-tensorflow`, `tensorflow`
(its fused kernel; `bnref.targets`), or `module:function`: the user's forward
f(x, gamma, beta, eps) -> y (or (y, mean, var)) in the layout of --convention (default
pytorch, channel axis 1; keras: last), with optional --backward g(dy, x, gamma, eps) ->
(dx, dgamma, dbeta), --inference
h(x, gamma, beta, running_mean, running_var, eps) -> y and --running-stats
r(running_mean, running_var, batch_mean, batch_var, n, momentum) -> (new_mean, new_var)
(batch_var biased, momentum in the convention's meaning), and --layer
layer(x, running_mean, running_var, momentum, eps) -> (y, new_running_mean, new_running_var),
one training-mode step of the user's whole layer (property layer-step: y against x_hat, and
the new running statistics against the convention's formula on the exact batch statistics of
x). --eps and --momentum fix the eps and
momentum every check gives the user's functions (a property that needs another value is n/a).

--dtype (repeatable, or a comma-separated list; default float64) is the precision the target
computes in: its inputs are rounded to it, and every tolerance is derived from its unit
roundoff (properties/tolerances.py). The reference computes in float64 only.

The statistics of a target are held to the accuracy of any backward-stable algorithm
(two-pass, Welford's streaming update, pairwise or chunked merges); --strict holds them to the
reference's own two-pass accuracy. After the table, a line per dtype names the accuracy class
the target's variance falls in ("two-pass", "streaming", "one-pass: FAIL", ...), measured on
a fixed battery of channels with |mean|/std up to 1e8, and a note says when the target flushes
subnormals to zero (the bounds then allow the smallest normal number where a value is
subnormal).

The table lists each property and dtype, the examples run, the worst error seen next to its
tolerance (for a failure: the minimal failing example's, "error" if the target raised), and
pass/fail (n/a where the target lacks the capability, e.g. ONNX has no backward, or the
property is not stated at that dtype). A failure prints Hypothesis's minimal example and
a Python snippet that replays it. Other targets run the batch-norm properties only; the
reference also runs the mini-batch properties on its own random_mini_batches, and
`MOD:FN --minibatch` runs them on a user's (in a worker process, as any other target).

The target runs in a worker process of its own (`bnref.isolation`; the reference, which every
check calls in this process anyway, runs here): an exit, a crash or a signal in it, or a call
longer than --timeout SECONDS (default 60; 0: no limit), fails the property being checked, with
the example that caused it, and the audit goes on. The exit status means one thing
each (EXIT_STATUS below): 0 every applicable property ran to completion and passed; 1 a
property failed (an exit, crash or timeout of the target included); 2 a usage error (a bad option
or BNREF_PROFILE, a target that does not import, a --json path that cannot be written), found
before the run starts; 130 interrupted (Ctrl-C), 143 terminated (SIGTERM, as a CI job cancelled
or out of time gets), each after printing the partial table. --json writes
strict JSON (RFC 8259; schema in docs/audit.md, `JSON_SCHEMA_VERSION`).

The run's progress (properties done of the total over the dtypes, the rate, the time left, the
property running) goes to stderr, so stdout carries only the report: a bar on a terminal; off
one, a line every PROGRESS_INTERVAL seconds and a last one, or (--progress auto, the default)
nothing for a run shorter than that; --progress never: nothing (`bnref.progress`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from typing import IO, Any, NoReturn

from hypothesis import settings

from bnref.isolation import (
    DEFAULT_TIMEOUT,
    IsolatedMiniBatchTarget,
    IsolatedTarget,
    TargetLoadError,
    TargetSpec,
    TargetWorker,
)
from bnref.progress import Progress
from bnref.targets import DTYPES, MEMORY_FORMATS, TARGETS, load_target
from properties.adapter import Implementation, StrictAccuracy
from properties.framework import Measurement, Property, PropertyResult, run_property
from properties.profiles import PROFILES, load_profile, profile_name
from reference.conventions import CONVENTIONS

USER_OPTIONS = ("backward", "inference", "running_stats", "layer", "eps", "momentum")
STRICT_CODE = "from properties.adapter import StrictAccuracy\nimpl = StrictAccuracy(impl)"
EXIT_PASSED, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
EXIT_STATUS = (
    "exit status: 0 when every applicable property ran to completion and passed; 1 when a "
    "property failed (the target's exit, crash or timeout included); 2 for a usage error (a bad "
    "option or BNREF_PROFILE, a target that does not import, a --json path that cannot be "
    "written), found before the run starts; 130 when interrupted (Ctrl-C) and 143 when "
    "terminated (SIGTERM), after the partial table."
)
# The --json report's layout (docs/audit.md): a reader checks "schema" and this version, which
# changes whenever a field is renamed, removed or changes meaning.
JSON_SCHEMA = "bnref-check-report"
JSON_SCHEMA_VERSION = 2
# --progress (on stderr): off a terminal, a line every PROGRESS_INTERVAL seconds (a CI log of a
# 20-second `--profile ci` run gets two, a minutes-long framework run a few dozen); a thread
# looks every PROGRESS_TICK seconds, so lines keep coming, and a bar's clock runs, while one
# long property runs. The tests set them (no test waits on the real clock).
PROGRESS_MODES = ("auto", "always", "never")
PROGRESS_INTERVAL = 10.0
PROGRESS_TICK: float | None = 1.0
PROGRESS_CLOCK: Callable[[], float] = time.monotonic


def _usage(message: str) -> NoReturn:
    """Print a usage error naming the problem and exit with status 2."""
    print(f"bnref check: {message}", file=sys.stderr)
    raise SystemExit(2)


def parse_dtypes(values: Sequence[str] | None) -> list[str]:
    """The dtypes of repeated/comma-separated --dtype values, in order, without repeats."""
    out: list[str] = []
    for value in values or ["float64"]:
        for dtype in value.split(","):
            name = dtype.strip()
            if name not in DTYPES:
                _usage(f"--dtype must be one of {', '.join(DTYPES)}; got {name!r}")
            if name not in out:
                out.append(name)
    return out


def _target_code(args: argparse.Namespace, dtype: str) -> str:
    """The Python code that builds the target at `dtype` in a snippet, after checking the
    target's options (a usage error if they do not fit the target)."""
    target = args.target
    if args.memory_format is not None and target != "torch":
        _usage(f"--memory-format is the torch target's; got TARGET {target!r}")
    if ":" in target:
        options = {k: getattr(args, k) for k in USER_OPTIONS}
        kwargs = {"convention": args.convention, "dtype": dtype, **options}
        call = ", ".join([repr(target), *(f"{k}={v!r}" for k, v in kwargs.items())])
        code = "from bnref.targets.user_target import load_user_target\n"
        return code + f"impl = load_user_target({call})"
    given = [f"--{k.replace('_', '-')}" for k in USER_OPTIONS if getattr(args, k) is not None]
    if given:
        _usage(f"{', '.join(given)} need a TARGET module:function, got {target!r}")
    if target not in TARGETS:
        _usage(f"TARGET must be one of {', '.join(TARGETS)} or module:function; got {target!r}")
    layout = "" if args.memory_format is None else f", memory_format={args.memory_format!r}"
    if target in ("reference", "fast") and dtype != "float64":
        _usage(
            f"--dtype {dtype}: {'the reference' if target == 'reference' else 'bnref.fast'} "
            "computes in float64 only (the reference is the oracle the others are judged by); "
            f"check torch, onnx, onnxruntime or module:function at {dtype}"
        )
    call = f"load_target({target!r}, {dtype!r}{layout})"
    return f"from bnref.targets import load_target\nimpl = {call}"


def _profile(name: str | None) -> str:
    """Load the Hypothesis profile --profile NAME, else the environment's; a usage error for a
    BNREF_PROFILE that names none."""
    try:
        return load_profile(name or profile_name())
    except ValueError:
        _usage(f"BNREF_PROFILE must be one of {', '.join(PROFILES)}; got {profile_name()!r}")


def _timeout(seconds: float) -> float | None:
    """--timeout as the worker takes it: None for 0 (no limit); a usage error unless finite and
    >= 0."""
    if not (math.isfinite(seconds) and seconds >= 0):
        _usage(f"--timeout must be a number of seconds >= 0 (0: no limit); got {seconds!r}")
    return seconds or None


def _open_report(path: str | None) -> IO[str] | None:
    """The --json file, opened for writing now, before the run: a path that cannot be written
    is a usage error, not a report lost at the end."""
    if path is None:
        return None
    try:
        return open(path, "w", encoding="utf-8")  # written and closed by `check`
    except OSError as exc:
        _usage(f"--json {path!r} cannot be written: {exc.strerror or exc}")


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.2e}"


def _status(r: PropertyResult) -> str:
    """The status cell: pass, FAIL, n/a or inconclusive (passed, but no comparison could have
    failed)."""
    return {"fail": "FAIL"}.get(r.status, r.status)


def _measured(m: Measurement | None, r: PropertyResult) -> tuple[str, str, str]:
    """The (error, tolerance, ratio) cells of measurement `m` of `r`: "inf" for a broken exact
    claim, and "error" when `r` failed without a measurement (the implementation raised)."""
    if m is None:
        return ("error", "-", "-") if not (r.passed or r.not_applicable) else ("-", "-", "-")
    exact = "exact" if m.passed else "inf"  # an exact claim (tolerance 0): ratio 0 or infinite
    return _fmt(m.error), _fmt(m.tolerance), _fmt(m.ratio) if m.tolerance > 0 else exact


def _teeth(r: PropertyResult) -> str:
    """The teeth cell: comparisons that could have failed / comparisons made."""
    return "-" if r.not_applicable or not r.comparisons else f"{r.with_teeth}/{r.comparisons}"


def format_table(results: Sequence[PropertyResult]) -> str:
    """A plain-text table: property, dtype, examples, worst error, tolerance, error/tolerance,
    teeth (comparisons that could have failed / all), status. The numbers are those of the
    worst measurement over all examples run: for a failure, the largest excess seen, not only
    the minimal example's (which the failure section gives)."""
    header = ["property", "dtype", "examples", "worst error", "tolerance", "ratio", "teeth"]
    header.append("status")
    rows = [
        (r.name, r.dtype, str(r.examples), *_measured(r.worst, r), _teeth(r), _status(r))
        for r in results
    ]
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def _minibatch_code(args: argparse.Namespace) -> str:
    """`bnref check MOD:FN --minibatch`: the Python code that builds the user's mini-batch
    function as a target in a snippet, after checking the options (a usage error if they do
    not fit a mini-batch function)."""
    if ":" not in args.target:
        _usage(f"--minibatch needs a TARGET module:function, got {args.target!r}")
    given = [f"--{k.replace('_', '-')}" for k in USER_OPTIONS if getattr(args, k) is not None]
    if given:
        _usage(f"{', '.join(given)} do not apply to a mini-batch function (--minibatch)")
    if args.memory_format is not None:
        _usage(f"--memory-format is the torch target's; got TARGET {args.target!r}")
    if parse_dtypes(args.dtype) != ["float64"]:
        _usage("--dtype: a mini-batch function moves values and computes none; it is checked once")
    return (
        "from bnref.targets.user_minibatch import load_user_minibatch_target\n"
        f"impl = load_user_minibatch_target({args.target!r})"
    )


def _minibatch_properties(names: Sequence[str] | None) -> list[Property]:
    """The properties `--minibatch` runs: the mini-batch ones, or those of --property NAME
    (a usage error for a batch-norm property: a mini-batch function has no batch norm)."""
    from properties.registry import MINIBATCH_PROPERTIES, by_name  # noqa: PLC0415

    try:
        props = [by_name(n) for n in names] if names else list(MINIBATCH_PROPERTIES)
    except ValueError as exc:
        _usage(str(exc))
    other = [p.name for p in props if p not in MINIBATCH_PROPERTIES]
    if other:
        known = ", ".join(p.name for p in MINIBATCH_PROPERTIES)
        _usage(
            f"--minibatch checks the mini-batch properties ({known}); "
            f"{', '.join(other)} need a batch-norm TARGET"
        )
    return props


def _target_of(
    prop: Property, impl: Implementation, code: str, target: str
) -> tuple[Implementation, str]:
    """What `prop` runs on, and the code that builds it: for a mini-batch property when the
    reference is checked, the reference's own `random_mini_batches` (in this process), else
    `impl`."""
    from properties.minibatch_props import reference_target  # noqa: PLC0415
    from properties.registry import MINIBATCH_PROPERTIES  # noqa: PLC0415

    if target == "reference" and prop in MINIBATCH_PROPERTIES:
        code = "from properties.minibatch_props import reference_target\n"
        return reference_target(), code + "impl = reference_target()"
    return impl, code


def list_properties() -> str:
    """Every property `bnref check` knows, one line each: its name and what it claims."""
    from properties.registry import BATCHNORM_PROPERTIES, MINIBATCH_PROPERTIES  # noqa: PLC0415

    width = max(len(p.name) for p in (*BATCHNORM_PROPERTIES, *MINIBATCH_PROPERTIES))
    groups = (
        ("batch-norm properties (every target):", BATCHNORM_PROPERTIES),
        (
            "mini-batch properties (the reference's random_mini_batches, or MOD:FN --minibatch):",
            MINIBATCH_PROPERTIES,
        ),
    )
    lines: list[str] = []
    for title, props in groups:
        if lines:
            lines.append("")
        lines.append(title)
        lines += [f"  {p.name.ljust(width)}  {' '.join(p.statement.split())}" for p in props]
    return "\n".join(lines)


# What `bnref check --help` says beside the options: whole sentences, the targets, the
# signatures of a user's functions and the exit status (printed as written, not rewrapped).
CHECK_DESCRIPTION = f"""\
Run bnref's properties against TARGET and print a table: for each property the
examples run, the worst error seen beside its derived tolerance, and pass, FAIL,
or n/a where the target lacks what the property needs. A failure prints
Hypothesis's minimal example and Python code that replays it.

Progress (properties done, rate, time left, the property running) goes to
stderr, so stdout carries only the report. --progress auto (the default): a bar
on a terminal; elsewhere (a pipe, a log, CI) a line every {PROGRESS_INTERVAL:g} s once
the run has lasted that long, and a last line at the end; a shorter run writes
none. always: the same, and the last line even for a short run. never: none."""
CHECK_SIGNATURES = """\
targets:
  reference       the reference (default): the batch-norm and mini-batch properties
  fast            bnref.fast, the blocked threaded engine (compiled blocks with 'bnref[fast]')
  torch           PyTorch (pip install 'bnref[torch]')
  onnx            the ONNX reference evaluator (pip install 'bnref[onnx]')
  onnxruntime     ONNX Runtime (pip install 'bnref[onnx]')
  jax             a jax.numpy textbook batch norm, jax.vjp (pip install 'bnref[jax]')
  flax            flax.linen.BatchNorm; flax-slow: use_fast_variance=False ('bnref[flax]')
  keras           Keras 3's BatchNormalization on KERAS_BACKEND; keras-numpy, keras-jax,
                  keras-torch, keras-tensorflow: on that backend ('bnref[keras]' and the
                  backend's extra)
  tensorflow      tf.compat.v1.nn.fused_batch_norm, no float64 ('bnref[tensorflow]')
  MOD:FN          your batch-norm forward; with --minibatch, your mini-batch function

your functions (positional arguments, the channel axis where --convention puts it):
  forward         TARGET MOD:FN
                  f(x, gamma, beta, eps) -> y  or  -> (y, mean, var)
                  training mode: the batch's mean and biased variance
  backward        --backward MOD:FN
                  g(dy, x, gamma, eps) -> (dx, dgamma, dbeta), the gradients of sum(dy * y)
  inference       --inference MOD:FN
                  h(x, gamma, beta, running_mean, running_var, eps) -> y
  running stats   --running-stats MOD:FN
                  r(running_mean, running_var, batch_mean, batch_var, n, momentum)
                    -> (new_mean, new_var)
                  batch_var biased, n values per channel, momentum as --convention means it
  layer step      --layer MOD:FN
                  layer(x, running_mean, running_var, momentum, eps)
                    -> (y, new_running_mean, new_running_var)
                  one training-mode step (gamma 1, beta 0); its running statistics are
                  checked against the formula on the exact batch statistics of x
  mini-batches    TARGET MOD:FN --minibatch
                  random_mini_batches(X, Y, mini_batch_size=64, seed=0)
                    -> [(mini_batch_X, mini_batch_Y), ...]
                  X (n_x, m), Y (1, m); run in a worker process like the others

bnref check --list-properties prints every property with what it claims."""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bnref check",
        description=CHECK_DESCRIPTION,
        epilog=CHECK_SIGNATURES + "\n\n" + textwrap.fill(EXIT_STATUS, width=79),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "target",
        nargs="?",
        default="reference",
        help=f"{', '.join(TARGETS)} or MOD:FN (default reference; see targets below)",
    )
    parser.add_argument(
        "--dtype",
        action="append",
        metavar="DTYPE",
        help=f"precision the target computes in, one of {DTYPES}; repeat or comma-separate",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default=None,
        help="Hypothesis profile: dev (40 examples a property, the default), ci (150, the same "
        "every run), thorough (1000)",
    )
    parser.add_argument(
        "--property",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this property (repeatable; --list-properties names them all)",
    )
    parser.add_argument(
        "--json", metavar="PATH", help="also write the results as strict JSON (RFC 8259)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="the longest a call of the target may take before it is stopped and the property "
        f"fails (default {DEFAULT_TIMEOUT:g}; 0: no limit)",
    )
    parser.add_argument(
        "--memory-format",
        choices=MEMORY_FORMATS,
        default=None,
        help="torch target: the memory layout of x and dy (channels_last: torch.channels_last "
        "for 4-D, channels_last_3d for 5-D input)",
    )
    parser.add_argument(
        "--convention",
        choices=sorted(CONVENTIONS),
        default="pytorch",
        help="module:function target: its layout (channel axis) and running-stats rule",
    )
    parser.add_argument("--backward", metavar="MOD:FN", help="module:function target's backward")
    parser.add_argument("--inference", metavar="MOD:FN", help="module:function target's inference")
    parser.add_argument(
        "--running-stats",
        metavar="MOD:FN",
        help="module:function target's r(running_mean, running_var, batch_mean, batch_var, n, "
        "momentum) -> (new_mean, new_var)",
    )
    parser.add_argument(
        "--layer",
        metavar="MOD:FN",
        help="module:function target's layer(x, running_mean, running_var, momentum, eps) -> "
        "(y, new_running_mean, new_running_var), one training step of the whole layer",
    )
    parser.add_argument("--eps", type=float, help="module:function target: its fixed eps")
    parser.add_argument(
        "--strict",
        action="store_true",
        help="hold the target's statistics to the reference's two-pass accuracy instead of "
        "that of any backward-stable algorithm",
    )
    parser.add_argument("--momentum", type=float, help="module:function target: its fixed momentum")
    parser.add_argument(
        "--minibatch",
        action="store_true",
        help="TARGET module:function is a mini-batch function of the course's form; run the "
        "mini-batch properties on it",
    )
    parser.add_argument(
        "--progress",
        choices=PROGRESS_MODES,
        default="auto",
        help="progress on stderr: auto (the default: a bar on a terminal, else a line every "
        f"{PROGRESS_INTERVAL:g} s once the run lasts that long), always, never",
    )
    parser.add_argument(
        "--list-properties",
        action="store_true",
        help="print every property with what it claims, and exit",
    )
    return parser


def check(argv: Sequence[str]) -> int:
    """Run `bnref check`; return the exit status (EXIT_STATUS). Every usage error is found
    before the first property runs: the options, the profile, the property names, the target
    (loaded in its worker) and the --json path."""
    args = _parser().parse_args(argv)
    if args.list_properties:
        print(list_properties())
        return EXIT_PASSED
    if args.minibatch:
        return _check_minibatch(args)
    profile = _profile(args.profile)
    timeout = _timeout(args.timeout)
    dtypes = parse_dtypes(args.dtype)
    codes = [_target_code(args, dtype) for dtype in dtypes]
    user = ":" in args.target
    options = {k: getattr(args, k) for k in ("convention", *USER_OPTIONS)} if user else {}
    if args.memory_format is not None:  # `_target_code` checked that the target is torch
        options = {"memory_format": args.memory_format}
    worker = None
    if args.target != "reference":  # the oracle stays here: every check calls it here anyway
        worker = TargetWorker(TargetSpec(args.target, tuple(dtypes), options), timeout)
        worker.launch()  # the worker imports the target while the audit imports its properties
    try:
        from properties.registry import (  # noqa: PLC0415 -- heavy import
            ALL_PROPERTIES,
            BATCHNORM_PROPERTIES,
            by_name,
        )

        default = ALL_PROPERTIES if args.target == "reference" else BATCHNORM_PROPERTIES
        try:
            props = [by_name(n) for n in args.property] if args.property else list(default)
        except ValueError as exc:
            _usage(str(exc))
        if worker is not None:
            try:
                worker.start()
            except TargetLoadError as exc:
                _usage(str(exc))
        report = _open_report(args.json)
        impls: list[Implementation] = (
            [load_target("reference")]
            if worker is None
            else [IsolatedTarget(worker, dtype) for dtype in dtypes]
        )
        if args.strict:
            impls = [StrictAccuracy(impl) for impl in impls]
            codes = [f"{code}\n{STRICT_CODE}" for code in codes]
        try:
            pairs = list(zip(impls, codes, strict=True))
            return _run(args, profile, pairs, props, timeout=timeout, report=report)
        finally:
            if report is not None:
                report.close()
    finally:
        if worker is not None:
            worker.close()


def _check_minibatch(args: argparse.Namespace) -> int:
    """`bnref check MOD:FN --minibatch`: the mini-batch properties on the user's function, which
    runs in a worker process as every other target does (`IsolatedMiniBatchTarget`)."""
    profile = _profile(args.profile)
    timeout = _timeout(args.timeout)
    code = _minibatch_code(args)
    worker = TargetWorker(TargetSpec(args.target, ("float64",), minibatch=True), timeout)
    worker.launch()  # the worker imports the function while the audit imports its properties
    try:
        props = _minibatch_properties(args.property)
        try:
            worker.start()
        except TargetLoadError as exc:
            _usage(str(exc))
        report = _open_report(args.json)
        impl = IsolatedMiniBatchTarget(worker)
        try:
            return _run(args, profile, [(impl, code)], props, timeout=timeout, report=report)
        finally:
            if report is not None:
                report.close()
    finally:
        worker.close()


class Terminated(KeyboardInterrupt):
    """SIGTERM during the run (a CI job cancelled or out of time): it stops the run as Ctrl-C
    does, so what finished is reported before the exit."""


@contextlib.contextmanager
def _sigterm_stops_the_run() -> Iterator[None]:
    """While the run lasts, SIGTERM raises Terminated (in the main thread, where signal
    handlers run); the previous handler is restored after it."""

    def stop(_signum: int, _frame: object) -> None:
        raise Terminated

    if threading.current_thread() is not threading.main_thread():  # handlers: main thread only
        yield
        return
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(
    args: argparse.Namespace,
    profile: str,
    impls: Sequence[tuple[Implementation, str]],
    props: list[Property],
    *,
    timeout: float | None,
    report: IO[str] | None,
) -> int:
    """Run `props` on each implementation, print the table and the failures, write the JSON
    report; return the exit status. Ctrl-C or SIGTERM stops the run: what finished is reported."""
    results: list[PropertyResult] = []
    interrupted: KeyboardInterrupt | None = None
    try:
        with _sigterm_stops_the_run(), _progress(args.progress, len(impls) * len(props)) as bar:
            for impl, code in impls:
                with bar.paused():
                    print(
                        f"bnref check {impl.name} (dtype {impl.dtype}, profile {profile})",
                        flush=True,
                    )
                for prop in props:
                    bar.status(f"running {prop.name} [{impl.dtype}]")
                    target, target_code = _target_of(prop, impl, code, args.target)
                    result = run_property(prop, target, settings(), impl_code=target_code)
                    results.append(result)
                    with bar.paused():
                        examples = f"({result.examples} examples)"
                        print(f"  {prop.name}: {_status(result)} {examples}", flush=True)
                    bar.update()
    except KeyboardInterrupt as stopped:
        interrupted = stopped
        how = "terminated (SIGTERM)" if isinstance(stopped, Terminated) else "interrupted (Ctrl-C)"
        print(f"\n{how}: the table shows the properties that finished", flush=True)
    print()
    print(format_table(results))
    from properties.accuracy_props import accuracy_report  # noqa: PLC0415 -- heavy import

    # After Ctrl-C the target is not called again: the user asked the run to stop.
    stopped_early = interrupted is not None
    for line in [] if stopped_early else accuracy_report([i for i, _ in impls], props, results):
        print(line)
    failures = [r for r in results if not r.passed]
    inconclusive = [r for r in results if r.inconclusive]
    for r in results:
        if r.not_applicable:
            print(f"\n{r.name} [{r.dtype}]: not applicable: {r.not_applicable}")
    for r in inconclusive:
        print(
            f"\n{r.name} [{r.dtype}]: inconclusive: none of its {r.comparisons} comparisons "
            "could have failed (each tolerance was at least the size of the quantity compared)"
        )
    groups = failure_groups(failures)
    for group in groups:
        print("\n" + _format_group(group))
    if interrupted is not None:
        status = EXIT_TERMINATED if isinstance(interrupted, Terminated) else EXIT_INTERRUPTED
    else:
        status = EXIT_FAILED if failures else EXIT_PASSED
    skipped = sum(1 for r in results if r.not_applicable)
    passed = len(results) - len(failures) - skipped - len(inconclusive)
    if report is not None:
        summary = {
            "passed": passed,
            "failed": len(failures),
            "inconclusive": len(inconclusive),
            "not_applicable": skipped,
        }
        document = {
            "schema": JSON_SCHEMA,
            "schema_version": JSON_SCHEMA_VERSION,
            "complete": not stopped_early,
            "exit_status": status,
            "target": args.target,
            "implementations": {impl.dtype: impl.name for impl, _ in impls},
            "dtypes": [impl.dtype for impl, _ in impls],
            "profile": profile,
            "timeout": timeout,
            "summary": summary,
            "results": [_json_result(r) for r in results],
            "groups": [
                {
                    "cause": group[0].cause,
                    "properties": [{"name": r.name, "dtype": r.dtype} for r in group],
                }
                for group in groups
            ],
        }
        json.dump(document, report, indent=2, allow_nan=False)
        report.write("\n")
    tail = f", {len(inconclusive)} inconclusive" if inconclusive else ""
    tail += f", {skipped} not applicable" if skipped else ""
    stop = " (interrupted)" if stopped_early else ""
    print(f"\n{passed} passed, {len(failures)} failed{tail}{stop}")
    return status


def _progress(mode: str, total: int) -> Progress:
    """The progress of a run of `total` properties on stderr, as --progress `mode` asks:
    auto and always differ only off a terminal, where auto writes nothing for a run shorter
    than PROGRESS_INTERVAL."""
    return Progress(
        total,
        "bnref check",
        unit="properties",
        enabled=mode != "never",
        interval=PROGRESS_INTERVAL,
        quiet_if_short=mode == "auto",
        tick_every=PROGRESS_TICK,
        clock=PROGRESS_CLOCK,
    )


def failure_groups(failures: Sequence[PropertyResult]) -> list[list[PropertyResult]]:
    """The failures grouped by root cause (`PropertyResult.cause`: the same failing quantity,
    or the same exception type and message), in the order each cause first failed; within a
    group the failure with the largest excess comes first (it is the one printed)."""
    groups: dict[str, list[PropertyResult]] = {}
    for r in failures:
        groups.setdefault(r.cause or r.failure, []).append(r)
    return [sorted(g, key=lambda r: _excess(r.worst), reverse=True) for g in groups.values()]


def _excess(m: Measurement | None) -> tuple[bool, float]:
    """The order of failures by how bad: a NaN error first, then by ratio."""
    if m is None:
        return (False, -math.inf)
    return (math.isnan(m.error), m.ratio if not math.isnan(m.ratio) else math.inf)


def _format_group(group: Sequence[PropertyResult]) -> str:
    """One root cause, printed once: the properties it failed, the worst excess over all
    their examples, then the failure text, minimal example and snippet of the worst one."""
    first = group[0]
    lines = [f"{first.name} [{first.dtype}] FAILED: {first.cause or 'see below'}"]
    if len(group) > 1:
        hit = ", ".join(f"{r.name} [{r.dtype}]" for r in group)
        lines.append(f"  the same cause failed {len(group)} properties: {hit}")
    if first.worst is not None:
        error, tol, ratio = _measured(first.worst, first)
        lines.append(
            f"  worst over all examples: {first.worst.quantity}: error {error}, tolerance {tol}, "
            f"ratio {ratio}"
        )
    if first.minimal is not None:
        error, tol, ratio = _measured(first.minimal, first)
        lines.append(f"  minimal example (below): error {error}, tolerance {tol}, ratio {ratio}")
    lines.append(f"\n{first.failure}")
    if first.reproduction:
        lines.append(f"\nReproduce it (paste into Python):\n{first.reproduction}")
    return "\n".join(lines)


def _json_number(value: float) -> float | None:
    """`value` as a JSON number: None (null) when it is not finite, which RFC 8259 cannot
    write (section 6); its text goes beside it."""
    return value if math.isfinite(value) else None


def _json_measurement(m: Measurement) -> dict[str, Any]:
    """A measurement for the JSON report: each number with its text beside it
    (error / error_text, tolerance / tolerance_text, ratio / ratio_text): null and "inf" for
    an infinite error, 3.1e-08 and "3.1e-08" for a finite one; and whether it had teeth."""
    out: dict[str, Any] = {"quantity": m.quantity}
    for key, value in (("error", m.error), ("tolerance", m.tolerance), ("ratio", m.ratio)):
        out[key] = _json_number(value)
        out[f"{key}_text"] = repr(float(value))
    out["teeth"] = m.teeth
    return out


def _json_result(r: PropertyResult) -> dict[str, Any]:
    """One result for the JSON report: PropertyResult's fields, its status ("pass", "fail",
    "inconclusive", "n/a"), the worst measurement over all examples (`worst`) and, for a
    failure, the minimal example's (`minimal`), each as `_json_measurement`."""
    out = asdict(r)
    out["status"] = r.status
    out["worst"] = None if r.worst is None else _json_measurement(r.worst)
    out["minimal"] = None if r.minimal is None else _json_measurement(r.minimal)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bnref` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if args else 2
    if args[0] == "check":
        return check(args[1:])
    if args[0] == "experiment":
        try:
            from bnref.experiments.cli import main as experiment  # noqa: PLC0415 -- optional extra
        except ImportError as exc:  # matplotlib or scikit-learn missing
            print(
                f"bnref experiment: {exc}; install the extra: pip install 'bnref[experiments]'",
                file=sys.stderr,
            )
            return 2
        return experiment(args[1:])
    if args[0] == "identify":
        from bnref.identify import main as identify  # noqa: PLC0415 -- only when asked

        return identify(args[1:])
    print(
        f"bnref: unknown command {args[0]!r}; the commands are: check, experiment, identify",
        file=sys.stderr,
    )
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
