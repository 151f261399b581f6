"""The target runs apart from the audit: in a worker process, behind the `Implementation` protocol.

`bnref check` never calls a target in its own process. `open_target` starts one worker process
for the target (all its dtypes), which imports and builds the target itself, and returns one
`IsolatedTarget` per dtype: an `Implementation` whose methods send (dtype, method, arguments) to
the worker over a pipe and return what it sends back. So the audit survives what the target
does:

* an exit (`sys.exit`, `os._exit`), a crash (a segfault) or a signal ends the worker, not the
  audit: the call raises `TargetDied` ("target user m:f exited with status 0 while computing
  forward"), the property fails on that example, and the next call starts a new worker;
* a call that runs past `timeout` seconds is stopped (the worker is killed) and raises
  `TargetTimedOut`; the next call starts a new worker;
* whatever the target does to its process's global state (`np.seterr`, monkeypatching, output
  on stdout) stays in the worker: bnref's case generation and checks never see it, and what the
  target prints goes to stderr, so stdout carries only the report.

An exception raised by the target comes back as the same exception (a builtin or NumPy one) or
as `TargetRaised` naming its type (a class of the target's own, which the audit must not import,
or a BaseException other than SystemExit), with a note saying where in the target it was
raised. A write into an argument is copied back into the caller's array, so the no-mutation
property sees it as if the call were in-process.

A user's mini-batch function (`bnref check MOD:FN --minibatch`) runs the same way, as an
`IsolatedMiniBatchTarget`: the worker also decides whether a batch shares memory with X or Y,
which the copies sent back cannot show.

One worker serves the whole run (restarted only after a death or a timeout), so isolation costs
one interpreter start and one pipe round trip per call. The perturbed points of a gradient check
(thousands of forward calls per example) go in one message (`IsolatedTarget.forward_many`): the
worker calls forward on each in turn and sends the ys back together. The time limit still holds
per call of the target: during such a batch the worker reports progress (a short message when
HEARTBEAT seconds or more have passed since its last one, after a call ends), and the audit
stops it when no message comes within the limit plus 2 HEARTBEAT (the slack for the throttled
reports), so a call that hangs inside a batch is stopped as one outside it would be.

The worker is a fresh interpreter (`python -c`, the audit's sys.path sent to it), in a session
of its own (Ctrl-C is the audit's, which then stops it): neither a fork of the audit, whose
threads and state the target must not inherit, nor a `multiprocessing` process, whose spawn and
forkserver methods re-run the audit's `__main__` module in every worker (impossible for
`python -`, and a second audit for a script that does not guard its call of `bnref.cli.main`).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import math
import os
import pickle
import select
import signal
import socket
import subprocess
import sys
import time
import traceback
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, NoReturn

import numpy as np
from numpy.typing import ArrayLike

from bnref.targets import load_target
from bnref.targets.user_minibatch import load_user_minibatch_target
from bnref.targets.user_target import load_user_target, reference_stand_in
from properties.adapter import (
    Array,
    BackwardOutput,
    ForwardOutput,
    Implementation,
    RunningStats,
    frozen_backward_of,
)
from properties.framework import TargetStopped, Unsupported
from properties.minibatch_props import Layout, MiniBatches, MiniBatchTarget
from reference.conventions import get_convention
from reference.minibatch import random_mini_batches

DEFAULT_TIMEOUT = 60.0  # seconds a call of the target may take (`bnref check --timeout`)
# Loading a target imports it and its framework in a fresh process: seconds for jax or
# TensorFlow, more on a busy machine. --timeout limits the calls; an import that hangs is
# stopped after this many seconds, or after --timeout if that is longer.
LOAD_TIME_FLOOR = 120.0
HEARTBEAT = 0.25  # seconds between the worker's progress reports during a batch of calls
_BATCHED = {"forward_many": "forward"}  # a batched method: the target's method it calls
_USER_FUNCTIONS = ("backward", "inference", "running_stats", "layer")  # a user target's optional
_METHOD_OF = {"backward": "backward", "inference": "inference", "layer": "layer_step"}
_METHOD_OF["running_stats"] = "update_running_stats"


class TargetDied(TargetStopped):
    """The worker running the target ended during a call: an exit, a crash or a signal."""


class TargetTimedOut(TargetStopped):
    """A call of the target ran past the time limit; its worker was stopped."""


class TargetRaised(Exception):  # noqa: N818 -- names what the target raised
    """The target raised an exception of a class the audit does not import (the target's own):
    the message is its type's qualified name and its text."""


class TargetLoadError(ValueError):
    """The target could not be loaded in its worker: an import error, an exit or a crash at
    import, a bad option. The message says which; `bnref check` reports it as a usage error."""


@dataclass(frozen=True)
class TargetSpec:
    """What the worker builds: `target` (a name of `bnref.targets.TARGETS` or module:function),
    its dtypes, and for a module:function target the options of `load_user_target`; with
    `minibatch`, the module:function is a mini-batch function of the course's form
    (`load_user_minibatch_target`, float64 only)."""

    target: str
    dtypes: tuple[str, ...]
    options: Mapping[str, Any] = field(default_factory=dict)
    minibatch: bool = False

    @property
    def is_user(self) -> bool:
        return ":" in self.target

    def build(self, dtype: str) -> Implementation:
        """The target's implementation at `dtype`, built in this process (the worker's)."""
        if self.minibatch:
            return load_user_minibatch_target(self.target)
        if self.is_user:
            return load_user_target(self.target, dtype=dtype, **self.options)
        return load_target(self.target, dtype, **self.options)  # torch's memory_format

    def shown(self, method: str) -> str:
        """`method` of the built implementation as the target's user knows it: forward for a
        batch of forward calls, the function's own name for a mini-batch function's methods."""
        if self.minibatch:
            return self.target.rpartition(":")[2]
        return _BATCHED.get(method, method)


@dataclass(frozen=True)
class _Meta:
    """What the audit needs to know of a built implementation without calling it."""

    name: str
    convention: str
    fixed_case_values: dict[str, object]
    has_frozen_backward: bool = False  # the optional method (`properties.adapter.FrozenBackward`)
    has_layer_step: bool = False  # the optional `layer_step` (`properties.running_stats_props`)


def _meta(impl: Implementation) -> _Meta:
    """What the audit needs to know of `impl` (in the worker); a mini-batch function's
    convention is "" (it has none: its `convention` raises Unsupported)."""
    try:
        convention = impl.convention
    except Unsupported:
        convention = ""
    return _Meta(
        impl.name,
        convention,
        dict(getattr(impl, "fixed_case_values", None) or {}),
        frozen_backward_of(impl) is not None,
        callable(getattr(impl, "layer_step", None)),
    )


def _die_with_parent() -> None:
    """On Linux, have the kernel kill this worker when its parent process ends, so a worker in
    an endless loop never outlives an audit that was itself killed."""
    if sys.platform.startswith("linux"):
        pr_set_pdeathsig = 1  # from <sys/prctl.h>
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


# Where the frames of bnref (adapters, reference) and NumPy live: a traceback's innermost frame
# outside them is the target's own line.
_LIBRARY_DIRS = tuple(
    os.path.dirname(os.path.abspath(str(module.__file__))) + os.sep
    for module in (np, sys.modules["bnref"], sys.modules["properties"], sys.modules["reference"])
)


def _where(exc: BaseException) -> str:
    """Where in the target's own code `exc` was raised: the innermost frame of its traceback
    outside bnref and NumPy, as "file:line in function"; "" if every frame is theirs (an
    adapter refusing what the target returned, whose message says so)."""
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if not os.path.abspath(frame.filename).startswith(_LIBRARY_DIRS):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return ""


def _portable(exc: Exception) -> Exception | None:
    """`exc` itself if the audit can receive it as it is (a builtin or NumPy exception that
    pickles), else None: unpickling a class of the target's own would import the target's
    modules into the audit."""
    module = type(exc).__module__
    if module != "builtins" and module.split(".")[0] != "numpy":
        return None
    try:
        pickle.loads(pickle.dumps(exc))  # bnref's own bytes, just made
    except Exception:  # any failure to round-trip means: send it as text
        return None
    return exc


def _send(conn: Connection, message: object) -> None:
    """Send `message` pickled (plain pickle: quicker than `Connection.send` for small arrays)."""
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(conn: Connection) -> Any:
    """The next message on `conn`; EOFError if the other end closed it."""
    return pickle.loads(conn.recv_bytes())  # from bnref itself, at the other end


def serve(fd: int) -> None:
    """The worker's main: `fd` is its end of the socket to the audit.

    The audit sends its sys.path and the `TargetSpec`; the worker builds the target for each
    dtype, reports its names (or why it could not), then answers calls until the socket closes.
    What the target prints goes to stderr. A SystemExit or os._exit in the target ends this
    process, as it would end the target's own program: the audit reports how it ended.
    """
    _die_with_parent()
    os.dup2(2, 1)  # the target's output to stderr: the audit's stdout is its report
    conn = Connection(fd)
    path, spec = _receive(conn)
    sys.path[:] = path
    _send(conn, ("started",))
    try:
        impls = {dtype: spec.build(dtype) for dtype in spec.dtypes}
    except (ValueError, TypeError, ImportError) as exc:  # bnref's own messages about the spec
        _send(conn, ("load-failed", str(exc)))
        return
    except BaseException as exc:  # anything else loading the target raised
        message = f"TARGET {spec.target!r}: loading it raised {type(exc).__name__}: {exc}"
        _send(conn, ("load-failed", message))
        return
    meta = {dtype: _meta(impl) for dtype, impl in impls.items()}
    _send(conn, ("loaded", meta))
    while True:
        try:
            dtype, method, args, kwargs, readonly = _receive(conn)
        except EOFError:  # the audit closed the pipe: the run is over
            return
        for i in readonly:
            args[i].flags.writeable = False  # as the caller's array: a write fails the same way
        before = [a.tobytes() if isinstance(a, np.ndarray) else None for a in args]
        try:
            if method == "forward_many":
                result = _forward_many(conn, impls[dtype], *args, **kwargs)
            else:
                result = getattr(impls[dtype], method)(*args, **kwargs)
            reply: tuple[Any, ...] = ("ok", result)
        except Unsupported as exc:
            reply = ("unsupported", str(exc))
        except Exception as exc:  # the target's exception, sent to the audit
            reply = ("raised", _portable(exc), f"{type(exc).__qualname__}: {exc}", _where(exc))
        except SystemExit:  # the target ends its program: this process ends, as it asked
            raise
        except BaseException as exc:  # named, never re-raised in the audit (a KeyboardInterrupt
            # there would read as the user's Ctrl-C)
            reply = ("raised", None, f"{type(exc).__qualname__}: {exc}", _where(exc))
        writes = {
            i: a
            for i, (a, b) in enumerate(zip(args, before, strict=True))
            if b is not None and a.tobytes() != b
        }
        try:
            _send(conn, (*reply, writes))
        except Exception as exc:  # a result that cannot be sent (pickled)
            text = f"{method} returned a result that cannot be sent to the audit: {exc}"
            _send(conn, ("raised", None, text, "", writes))


def _stacked(arrays: Sequence[Any]) -> Any:
    """`arrays` as one stacked array when they are arrays of one shape and dtype (a single
    buffer to pickle: a gradient check sends thousands of small ones), else as they are.
    Iterating the result gives the arrays back, in order."""
    first = arrays[0] if arrays else None
    if not isinstance(first, np.ndarray) or not all(
        isinstance(a, np.ndarray) and a.shape == first.shape and a.dtype == first.dtype
        for a in arrays
    ):
        return arrays
    return np.stack(arrays)


def _rows(column: Any) -> Sequence[Any]:
    """The arrays `_stacked` made `column` of, each a copy of its own (as the target would get
    it in-process: not a view into a shared buffer)."""
    return [row.copy() for row in column] if isinstance(column, np.ndarray) else column


def _forward_many(
    conn: Connection,
    impl: Implementation,
    xs: Sequence[Array],
    gammas: Sequence[Array],
    betas: Sequence[Array],
    *,
    eps: float,
    axis: int,
) -> Any:
    """y of `impl.forward` at each (xs[i], gammas[i], betas[i]), in order (in the worker),
    stacked if they can be (`_stacked`).

    After a call that ends HEARTBEAT seconds or more after the last message sent, a progress
    message tells the audit that the target is still answering (see the module docstring).
    """
    ys = []
    last = time.monotonic()
    for x, gamma, beta in zip(_rows(xs), _rows(gammas), _rows(betas), strict=True):
        ys.append(impl.forward(x, gamma, beta, eps=eps, axis=axis).y)
        now = time.monotonic()
        if now - last >= HEARTBEAT:
            _send(conn, ("progress",))
            last = now
    return _stacked(ys)


_LIVE: weakref.WeakSet[TargetWorker] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    """Stop every worker still running when the audit's interpreter exits."""
    for worker in list(_LIVE):
        worker.close()


def _how_it_ended(returncode: int | None) -> str:
    """'exited with status N' or 'killed by signal N (SIGNAME)', from a process's return code
    (negative: the signal that killed it, as `subprocess.Popen.returncode` has it)."""
    if returncode is None:
        return "ended"
    if returncode >= 0:
        return f"exited with status {returncode}"
    try:
        name = f" ({signal.Signals(-returncode).name})"
    except ValueError:
        name = ""
    return f"killed by signal {-returncode}{name}"


class TargetWorker:
    """The worker process of one target, for the whole run: started by `start`, restarted by
    the first call after a death or a timeout, stopped by `close`.

    `timeout` (seconds; 0 or None: no limit) bounds each call and the target's loading.
    """

    def __init__(self, spec: TargetSpec, timeout: float | None = DEFAULT_TIMEOUT) -> None:
        self.spec = spec
        self.timeout = timeout or None
        self._process: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._exited: int | None = None  # a pidfd: readable once the worker has ended (Linux)
        self._poller = select.poll()
        self.meta: dict[str, _Meta] = {}
        self.starts = 0  # how many workers were started (1 + the restarts)

    def launch(self) -> None:
        """Start the worker process (it imports and builds the target while the caller goes
        on); `start` waits for it."""
        self.close()
        ours, theirs = socket.socketpair()
        with ours, theirs:
            code = f"from bnref.isolation import serve; serve({theirs.fileno()})"
            self._process = subprocess.Popen(  # this interpreter, running bnref
                [sys.executable, "-c", code], pass_fds=[theirs.fileno()], start_new_session=True
            )
            self._conn = Connection(ours.detach())
        # The worker's end is closed here (`with`): only the worker holds it, so its death is
        # end-of-file on ours. A pidfd (Linux) tells its end even if a child of the target
        # inherited the socket; without one, `_wait` looks every 0.2 s.
        self._poller = select.poll()
        self._poller.register(self._conn.fileno(), select.POLLIN)
        with contextlib.suppress(AttributeError, OSError):
            self._exited = os.pidfd_open(self._process.pid)
            self._poller.register(self._exited, select.POLLIN)
        _send(self._conn, (list(sys.path), self.spec))
        self.starts += 1
        _LIVE.add(self)

    def start(self) -> dict[str, _Meta]:
        """Wait until the worker has built the target (launching it if needed) and return what
        it reported per dtype; TargetLoadError saying why if it could not."""
        if self._process is None:
            self.launch()
        what = f"target {self.spec.target!r}"
        reply = self._next(None, f"{what} ended while its worker started")
        if reply[0] != "started":
            raise TargetLoadError(f"{what}: unexpected reply {reply[0]!r} from its worker")
        limit = None if self.timeout is None else max(self.timeout, LOAD_TIME_FLOOR)
        reply = self._next(
            limit,
            f"{what} ended while being loaded",
            f"loading {what} took longer than {limit or 0:g} s (--timeout, and at least "
            f"{LOAD_TIME_FLOOR:g} s for its imports)",
        )
        if reply[0] == "load-failed":
            self.close()
            raise TargetLoadError(reply[1])
        self.meta = reply[1]
        return self.meta

    def _wait(self, timeout: float | None) -> str:
        """Wait for the worker: "message" (it sent one, or closed its end), "ended" (its
        process ended) or "timeout" (nothing within `timeout` seconds; None: no limit)."""
        assert self._conn is not None
        assert self._process is not None
        if self._exited is not None:
            ms = None if timeout is None else math.ceil(timeout * 1000)
            ready = {fd for fd, _ in self._poller.poll(ms)}
            if not ready:
                return "timeout"
            return "message" if self._conn.fileno() in ready else "ended"
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 0.2 if deadline is None else min(0.2, deadline - time.monotonic())
            if self._conn.poll(max(left, 0.0)):
                return "message"
            if self._process.poll() is not None:
                return "message" if self._conn.poll() else "ended"
            if deadline is not None and time.monotonic() >= deadline:
                return "timeout"

    def _next(self, timeout: float | None, died: str, timed_out: str = "") -> Any:
        """The worker's next message while it starts; TargetLoadError if it ends or is not
        heard within `timeout` seconds (then it is stopped)."""
        assert self._conn is not None
        status = self._wait(timeout)
        if status == "timeout":
            self.close()
            raise TargetLoadError(timed_out)
        if status == "message":
            with contextlib.suppress(EOFError, OSError):
                return _receive(self._conn)
        raise TargetLoadError(f"{died} ({_how_it_ended(self._stop(grace=5.0))})")

    def call(self, dtype: str, method: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        """impl.method(*args, **kwargs) on the worker's implementation at `dtype`.

        Raises TargetDied or TargetTimedOut if the call does not come back, Unsupported (or the
        target's exception) as the worker raised it; writes into array arguments are copied
        into `args`.
        """
        name = self.meta[dtype].name if dtype in self.meta else self.spec.target
        shown = self.spec.shown(method)  # the target's method, as its user knows it
        if self._process is None:
            try:
                self.start()
            except TargetLoadError as exc:
                raise TargetDied(f"target {name} could not be restarted: {exc}") from None
        assert self._conn is not None
        readonly = [
            i for i, a in enumerate(args) if isinstance(a, np.ndarray) and not a.flags.writeable
        ]
        try:
            request = (dtype, method, list(args), kwargs, readonly)
            reply = self._exchange(name, shown, request, batched=method in _BATCHED)
        except BaseException:
            # Interrupted (Ctrl-C) between request and reply: the worker may still be busy with
            # this call, and its late reply would answer the next one. It is stopped instead.
            if self._process is not None:
                self._stop(grace=0.0)
            raise
        kind, *payload, writes = reply
        for i, written in writes.items():
            args[i][...] = written  # the caller's array shows what the target wrote into it
        if kind == "ok":
            return payload[0]
        if kind == "unsupported":
            raise Unsupported(payload[0])
        sent, text, where = payload
        raised = sent if sent is not None else TargetRaised(text)
        if where:
            raised.add_note(f"raised by target {name} in {shown}, at {where}")
        raise raised

    def _exchange(
        self, name: str, method: str, request: tuple[Any, ...], *, batched: bool = False
    ) -> Any:
        """Send `request` and return the worker's reply; TargetDied if the worker ends first,
        TargetTimedOut (the worker stopped) if no reply comes within the timeout. For a
        `batched` request, each progress message of the worker restarts the clock, which then
        allows 2 HEARTBEAT more (the reports are throttled: see the module docstring)."""
        assert self._conn is not None
        try:
            _send(self._conn, request)
        except OSError:  # the worker is gone: its end of the socket is closed
            how = _how_it_ended(self._stop(grace=5.0))
            raise TargetDied(f"target {name} {how} before computing {method}") from None
        limit = self.timeout + 2 * HEARTBEAT if batched and self.timeout else self.timeout
        while True:
            status = self._wait(limit)
            if status == "timeout":
                self._stop(grace=0.0)
                raise TargetTimedOut(
                    f"target {name} did not return from {method} within {self.timeout or 0:g} s "
                    "(--timeout); its process was stopped"
                )
            if status != "message":
                break
            try:
                reply = _receive(self._conn)
            except (EOFError, OSError):
                break
            if reply[0] != "progress":
                return reply
        how = _how_it_ended(self._stop(grace=5.0))
        raise TargetDied(f"target {name} {how} while computing {method}")

    def _stop(self, grace: float = 0.0) -> int | None:
        """Stop the worker and return its return code: wait up to `grace` seconds for it to
        end by itself (it closed its end of the socket: it is exiting), then kill it."""
        process, conn, exited = self._process, self._conn, self._exited
        self._process = self._conn = self._exited = None
        if conn is not None:
            conn.close()
        if exited is not None:
            os.close(exited)
        if process is None:
            return None
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
        if process.poll() is None:
            process.kill()
        return process.wait()

    def close(self) -> None:
        """Stop the worker if one is running; the next call starts a new one."""
        self._stop()
        _LIVE.discard(self)


class IsolatedTarget:
    """The target at one dtype, as the audit sees it: each method is a call into `worker`.

    For a module:function target, `stand_in` is the same adapter around the reference's
    functions (built here, without the target's code): `run_property` asks it which properties
    are not applicable, whatever the target itself does.
    """

    def __init__(self, worker: TargetWorker, dtype: str) -> None:
        self._worker = worker
        self._dtype = dtype
        self._meta = worker.meta[dtype]
        self.stand_in: Implementation | None = None
        spec = worker.spec
        if spec.is_user:
            options = spec.options
            convention = options.get("convention", "pytorch")
            self.stand_in = reference_stand_in(
                convention,
                get_convention(convention).axis,
                dtype=dtype,
                eps=options.get("eps"),
                momentum=options.get("momentum"),
                given=frozenset(
                    {"forward"} | {_METHOD_OF[k] for k in _USER_FUNCTIONS if options.get(k)}
                ),
                name=self._meta.name,
            )

    @property
    def name(self) -> str:
        return self._meta.name

    @property
    def dtype(self) -> str:
        return self._dtype

    @property
    def convention(self) -> str:
        return self._meta.convention

    @property
    def fixed_case_values(self) -> dict[str, object]:
        return dict(self._meta.fixed_case_values)

    def __getattr__(self, attribute: str) -> Any:
        # Only reached for what this class does not define: the optional `frozen_backward`,
        # present exactly when the target's own implementation has it (`frozen_backward_of`).
        meta = self.__dict__.get("_meta")
        if attribute == "frozen_backward" and meta is not None and meta.has_frozen_backward:
            return self._frozen_backward
        if attribute == "layer_step" and meta is not None and meta.has_layer_step:
            return self._layer_step
        raise AttributeError(f"{type(self).__name__} object has no attribute {attribute!r}")

    def _frozen_backward(
        self,
        dy: Array,
        x: Array,
        gamma: Array,
        running_mean: Array,
        running_var: Array,
        *,
        eps: float,
        axis: int,
    ) -> BackwardOutput:
        args = [dy, x, gamma, running_mean, running_var]
        out: BackwardOutput = self._worker.call(
            self._dtype, "frozen_backward", args, {"eps": eps, "axis": axis}
        )
        return out

    def _layer_step(
        self,
        x: Array,
        running_mean: Array,
        running_var: Array,
        *,
        momentum: float,
        eps: float,
        axis: int,
    ) -> tuple[Array, Array, Array]:
        args = [x, running_mean, running_var]
        kwargs = {"momentum": momentum, "eps": eps, "axis": axis}
        out: tuple[Array, Array, Array] = self._worker.call(self._dtype, "layer_step", args, kwargs)
        return out

    def forward(
        self, x: Array, gamma: Array, beta: Array, *, eps: float, axis: int
    ) -> ForwardOutput:
        out: ForwardOutput = self._worker.call(
            self._dtype, "forward", [x, gamma, beta], {"eps": eps, "axis": axis}
        )
        return out

    def backward(
        self, dy: Array, x: Array, gamma: Array, *, eps: float, axis: int
    ) -> BackwardOutput:
        out: BackwardOutput = self._worker.call(
            self._dtype, "backward", [dy, x, gamma], {"eps": eps, "axis": axis}
        )
        return out

    def inference(
        self,
        x: Array,
        gamma: Array,
        beta: Array,
        running_mean: Array,
        running_var: Array,
        *,
        eps: float,
        axis: int,
    ) -> Array:
        args = [x, gamma, beta, running_mean, running_var]
        out: Array = self._worker.call(self._dtype, "inference", args, {"eps": eps, "axis": axis})
        return out

    def forward_many(
        self, points: Sequence[tuple[Array, Array, Array]], *, eps: float, axis: int
    ) -> list[Array]:
        """`properties.adapter.BatchedForward`: forward's y at every point, in one message to
        the worker, which calls the target's forward on each in turn."""
        columns = [_stacked([point[i] for point in points]) for i in range(3)]
        out = self._worker.call(self._dtype, "forward_many", columns, {"eps": eps, "axis": axis})
        return list(out)

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
        kwargs = {"momentum": momentum, "num_batches_tracked": num_batches_tracked, "axis": axis}
        out: RunningStats = self._worker.call(
            self._dtype, "update_running_stats", [x, running_mean, running_var], kwargs
        )
        return out


class IsolatedMiniBatchTarget(MiniBatchTarget):
    """A user's mini-batch function (`TargetSpec.minibatch`), as the mini-batch properties see
    it: `batches` and `batches_and_sharing` are calls into `worker`, where the function runs
    (`load_user_minibatch_target`). Whether a batch shares memory with X or Y is decided there:
    the batches that come back are copies.

    `stand_in` is the course-form adapter around the reference's `random_mini_batches`:
    `run_property` asks it which properties are not applicable (drop_last), without the
    user's code.
    """

    def __init__(self, worker: TargetWorker) -> None:
        name = worker.meta["float64"].name
        super().__init__(self._not_here, name)
        self._worker = worker
        self.stand_in = MiniBatchTarget(random_mini_batches, name)

    @staticmethod
    def _not_here(*_args: object) -> NoReturn:
        raise AssertionError("the mini-batch function runs in the worker, not here")

    def batches(
        self, X: Array, Y: Array, size: int, seed: int, *, layout: Layout | None, drop_last: bool
    ) -> list[tuple[ArrayLike, ArrayLike]]:
        kwargs = {"layout": layout, "drop_last": drop_last}
        out: list[tuple[ArrayLike, ArrayLike]] = self._worker.call(
            "float64", "batches", [X, Y, size, seed], kwargs
        )
        return out

    def batches_and_sharing(
        self, X: Array, Y: Array, size: int, seed: int, *, layout: Layout | None, drop_last: bool
    ) -> MiniBatches:
        kwargs = {"layout": layout, "drop_last": drop_last}
        out: MiniBatches = self._worker.call(
            "float64", "batches_and_sharing", [X, Y, size, seed], kwargs
        )
        return out


def open_target(
    target: str,
    dtypes: Sequence[str],
    options: Mapping[str, Any] | None = None,
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
) -> tuple[TargetWorker, list[IsolatedTarget]]:
    """Start `target`'s worker, wait until it has built the target at each of `dtypes`, and
    return the worker and one `IsolatedTarget` per dtype. TargetLoadError (the worker stopped)
    if the target cannot be loaded, with the reason: close the worker when the run is over."""
    worker = TargetWorker(TargetSpec(target, tuple(dtypes), dict(options or {})), timeout)
    worker.start()
    return worker, [IsolatedTarget(worker, dtype) for dtype in dtypes]
