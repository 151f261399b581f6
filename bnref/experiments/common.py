"""What every experiment shares: its claims, its output files, its signature (its progress is
`bnref.progress.Progress`, which `bnref check` shares).

An experiment module exposes

    run(*, seed: int = 0, quick: bool = False, out_dir: Path, progress: bool = True)
        -> ExperimentResult

It trains small networks from `reference/`, writes one PNG (matplotlib, Agg canvas, no display),
one JSON file of its numbers and one CSV of its curves or trials into `out_dir`, all named after
the experiment (``bn-init-scale.png``, ``bn-init-scale.json``, ``bn-init-scale.csv``), and
returns them with the course's claims it tested, each with its numbers and a verdict
(`Claim`). `quick=True` shrinks the sizes so that a run takes seconds (the tests use it); the
same `seed` gives the same numbers.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, Protocol, TypeVar, cast

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from numpy.typing import ArrayLike
from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]  # no py.typed

from bnref.progress import Progress
from reference._validation import check_int
from reference.minibatch import random_mini_batches
from reference.network import NetworkSpec, NetworkState, Params, check_params, init_state
from reference.optimizers import Optimizer, StepResult
from reference.training import EpochResult, train

R = TypeVar("R")
P = ParamSpec("P")


@dataclass(frozen=True)
class Claim:
    """One claim of the course as a run measured it: `text` says it with the numbers, `holds`
    whether the numbers bear it out."""

    text: str
    holds: bool

    @property
    def line(self) -> str:
        """The claim as printed after a run: ``text: claim holds`` (or ``claim does not hold``)."""
        return f"{self.text}: {'claim holds' if self.holds else 'claim does not hold'}"


@dataclass(frozen=True)
class ExperimentResult:
    """The outcome of one experiment: its `name`, its key `numbers`, the course's `claims`
    with their verdicts, and every file it wrote (`files`: the PNG, the JSON, the CSV)."""

    name: str
    numbers: Mapping[str, Any]
    claims: tuple[Claim, ...]
    files: tuple[Path, ...]

    def _file(self, suffix: str) -> Path:
        return next(path for path in self.files if path.suffix == suffix)

    @property
    def png(self) -> Path:
        """The figure."""
        return self._file(".png")

    @property
    def data(self) -> Path:
        """The JSON file of the numbers."""
        return self._file(".json")

    @property
    def table(self) -> Path:
        """The CSV file of the curves or trials."""
        return self._file(".csv")


class Experiment(Protocol):
    """The signature of `run` in every experiment module (a module satisfies it structurally)."""

    def __call__(
        self, *, seed: int = 0, quick: bool = False, out_dir: Path, progress: bool = True
    ) -> ExperimentResult: ...


def check_run_args(seed: Any, quick: Any, out_dir: Any, progress: Any) -> tuple[int, Path]:
    """Validate the common arguments of `run`; create `out_dir`; return (seed, out_dir)."""
    seed = check_int(seed, "seed", minimum=0)
    for name, flag in (("quick", quick), ("progress", progress)):
        if not isinstance(flag, bool):
            raise TypeError(f"{name} must be a bool, got {type(flag).__name__} {flag!r}")
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir must be a path, got {type(out_dir).__name__} {out_dir!r}")
    path = Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"out_dir must be a directory, got the existing file {str(path)!r}")
    path.mkdir(parents=True, exist_ok=True)
    return seed, path


def to_jsonable(value: Any) -> Any:
    """Return `value` with NumPy scalars/arrays turned into Python numbers/lists.

    A non-finite float becomes None (JSON `null`): strict JSON has no NaN or Infinity, and a
    diverged training run must still leave a readable file.
    """
    if isinstance(value, np.ndarray | np.generic):
        value = value.tolist()  # Python scalars and nested lists, then handled below
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_numbers(numbers: Mapping[str, Any], path: Path) -> Path:
    """Write `numbers` as indented, key-sorted, strict JSON to `path`; return `path`."""
    text = json.dumps(to_jsonable(numbers), indent=2, sort_keys=True, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def write_table(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write `rows` (dicts with the same keys, in order) as CSV to `path`, lines ending in
    "\\n"; return `path`."""
    if not rows:
        raise ValueError("rows must hold at least one row, got an empty sequence")
    fields = list(rows[0])
    for i, row in enumerate(rows):
        if list(row) != fields:
            raise ValueError(f"rows[{i}] must have the keys {fields}, got {list(row)}")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: to_jsonable(v) for k, v in row.items()})
    return path


def write_outputs(
    out: Path,
    stem: str,
    *,
    numbers: Mapping[str, Any],
    claims: Sequence[Claim],
    rows: Sequence[Mapping[str, Any]],
    plot: Callable[[Path], Path],
) -> tuple[Path, ...]:
    """Write ``stem.csv`` (`rows`), ``stem.json`` (`numbers` and the claims, as "claims":
    [{"text", "holds"}]) and ``stem.png`` (drawn by `plot`) into `out`; return the three paths."""
    table = write_table(rows, out / f"{stem}.csv")
    said = [{"text": claim.text, "holds": claim.holds} for claim in claims]
    data = write_numbers({**numbers, "claims": said}, out / f"{stem}.json")
    return plot(out / f"{stem}.png"), data, table


def new_figure(
    nrows: int = 1, ncols: int = 1, *, width: float = 6.0, height: float = 4.0
) -> Figure:
    """Return a Figure on an Agg canvas (no display, no pyplot global state), nrows x ncols."""
    fig = Figure(figsize=(width * ncols, height * nrows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> Path:
    """Write `fig` to `path` as PNG at 100 dpi (a 12-inch figure is 1200 pixels wide); return
    `path`."""
    fig.savefig(path, format="png", dpi=100)
    return path


Evaluate = Callable[[Params, NetworkState], Mapping[str, float]]
Schedule = Callable[[int], float]


@dataclass(frozen=True)
class FitResult:
    """`reference.training.train`'s outcome plus what was recorded after every epoch.

    costs[e - 1] is epoch e's cost (as in `train`); metrics[k][e] the value `evaluate` gave
    for k after epoch e (metrics[k][0]: before training); learning_rates[e - 1] the rate of
    epoch e (with a schedule: learning_rates[0] is the optimizer's own rate and
    learning_rates[i] = schedule(i - 1), see `fit`). A run whose loss, gradient or update
    overflowed (or divided by zero, or made an invalid operation such as inf - inf) stops
    there: `diverged_at` is that epoch, the later entries are NaN, and `params` and `state`
    are those after the last complete epoch (before training if it was the first). Otherwise
    `diverged_at` is None.
    """

    params: Params
    state: NetworkState
    costs: tuple[float, ...]
    metrics: Mapping[str, tuple[float, ...]]
    learning_rates: tuple[float, ...]
    diverged_at: int | None


def _check_schedulable(optimizer: object) -> None:
    """Raise TypeError unless `optimizer` is a dataclass instance with a learning_rate field."""
    if isinstance(optimizer, type) or not (
        dataclasses.is_dataclass(optimizer) and hasattr(optimizer, "learning_rate")
    ):  # a class is excluded above, which mypy's narrowing of is_dataclass does not see
        raise TypeError(
            "optimizer must be a dataclass with a learning_rate field to follow a schedule, "
            f"got {type(optimizer).__name__}"
        )


def _with_rate(optimizer: object, learning_rate: float) -> Optimizer[Any]:
    """`optimizer` with another learning rate (the optimizers are frozen dataclasses)."""
    _check_schedulable(optimizer)
    replaced = dataclasses.replace(optimizer, learning_rate=learning_rate)  # type: ignore[type-var]  # mypy's is_dataclass narrowing admits a class, excluded above
    return cast("Optimizer[Any]", replaced)  # the same class as `optimizer`, an Optimizer


@dataclass(frozen=True)
class _Scheduled:
    """`optimizer` following a learning-rate schedule: step k (from 0) is taken by
    ``per_epoch[k // batches_per_epoch]``, `optimizer` at the rate of its epoch, and the state
    (velocity, moments, step count) carries over from epoch to epoch. Its own state is
    (the optimizer's state, k)."""

    optimizer: Optimizer[Any]
    per_epoch: tuple[Optimizer[Any], ...]
    batches_per_epoch: int

    @property
    def name(self) -> str:
        """The scheduled optimizer's name."""
        return self.optimizer.name

    def init(self, params: Mapping[str, ArrayLike]) -> tuple[object, int]:
        """The optimizer's initial state, and no step taken yet."""
        return self.optimizer.init(params), 0

    def step(
        self,
        params: Mapping[str, ArrayLike],
        grads: Mapping[str, ArrayLike],
        state: tuple[object, int],
    ) -> StepResult[tuple[object, int]]:
        """Step k, taken at the learning rate of its epoch."""
        inner, k = state
        new_params, inner = self.per_epoch[k // self.batches_per_epoch].step(params, grads, inner)
        return StepResult(new_params, (inner, k + 1))


def _on_one_blas_thread(fn: Callable[P, R]) -> Callable[P, R]:
    """`fn` with BLAS limited to one thread while it runs (restored after)."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return run


@_on_one_blas_thread
def fit(
    spec: NetworkSpec,
    params: Params,
    X: ArrayLike,
    y: ArrayLike,
    *,
    optimizer: Optimizer[Any],
    num_epochs: int,
    mini_batch_size: int = 64,
    seed: int = 0,
    schedule: Schedule | None = None,
    evaluate: Evaluate | None = None,
    progress: Progress | None = None,
) -> FitResult:
    """`reference.training.train`, recording `evaluate` before training and after each epoch.

    The training is `train`'s (same mini-batches, dropout masks, costs and parameters); its
    ``on_epoch`` callback records the cost, `evaluate`'s values and advances `progress` by one
    epoch.

    With a `schedule`, the learning rate changes between epochs as in the course's ``model``:
    the first epoch runs at the optimizer's own rate (the course's ``learning_rate0``), and
    after the epoch the course numbers i (from 0) the rate becomes ``schedule(i)``, the
    course's ``learning_rate = decay(learning_rate0, i, decay_rate)`` at the end of its loop
    body. So the epoch numbered i >= 1 runs at ``schedule(i - 1)``: with the course's
    ``schedule_lr_decay`` (time_interval 1000) the rate first drops for the epoch numbered
    1001. The optimizer's state (velocity, moments, step count) carries over from epoch to
    epoch.

    Training runs under ``np.errstate(over="raise", invalid="raise", divide="raise")``: a
    floating-point error is a diverged run, recorded (see `FitResult`), not a crash. With
    finite data and parameters, which the reference checks, a loss or gradient cannot become
    non-finite without one. `evaluate` runs under the caller's error state, as it would
    outside `fit` (only if that state raises can an error in `evaluate` end a run as diverged).

    BLAS runs on one thread meanwhile (`threadpoolctl.threadpool_limits`, restored after): the
    experiments' products are small (a few thousand examples by a few hundred units at most)
    and a BLAS thread pool mostly adds synchronisation. Measured on a 2-core machine with other
    jobs running: a (300, 100) @ (100, 100) product took 1.84 ms with OpenBLAS's default two
    threads and 0.15 ms with one, and the quick `overfitting` run 52 s and 8.6 s.
    """
    epochs = check_int(num_epochs, "num_epochs", minimum=0)
    first_seed = check_int(seed, "seed", minimum=0)
    if schedule is not None:
        _check_schedulable(optimizer)  # before training, whatever the number of epochs
    per_epoch = tuple(
        optimizer if schedule is None or i == 0 else _with_rate(optimizer, schedule(i - 1))
        for i in range(epochs)
    )
    rates = [float(getattr(opt, "learning_rate", math.nan)) for opt in per_epoch]
    trained_by = optimizer
    if schedule is not None:
        # Every epoch has as many mini-batches as train's first: split it the same way.
        axis = -1 if spec.feature_axis == 0 else 0
        batches = len(random_mini_batches(X, y, mini_batch_size, first_seed + 1, axis=axis))
        trained_by = _Scheduled(optimizer, per_epoch, batches)
    caller_errors = np.geterr()
    costs: list[float] = []
    metrics: dict[str, list[float]] = {}

    def record(theta: Params, state: NetworkState) -> None:
        with np.errstate(**caller_errors):
            values = {} if evaluate is None else evaluate(theta, state)
        for key, value in values.items():
            metrics.setdefault(key, []).append(float(value))

    # The latest complete epoch; epoch 0 is the start (no optimizer state is needed from it).
    last = EpochResult(0, math.nan, check_params(spec, params), init_state(spec), None, 0)

    def on_epoch(epoch: EpochResult) -> None:
        nonlocal last
        record(epoch.params, epoch.state)
        costs.append(epoch.cost)
        last = epoch
        if progress is not None:
            progress.update()

    record(last.params, last.state)
    diverged: int | None = None
    try:
        with np.errstate(over="raise", invalid="raise", divide="raise"):
            result = train(
                spec,
                params,
                X,
                y,
                optimizer=trained_by,
                num_epochs=epochs,
                mini_batch_size=mini_batch_size,
                seed=first_seed,
                on_epoch=on_epoch,
            )
        theta, net_state = result.params, result.state
    except FloatingPointError:
        diverged = last.epoch + 1
        theta, net_state = last.params, last.state
    missing = epochs - len(costs)
    if progress is not None and missing:
        progress.update(missing)
    begun = epochs if diverged is None else diverged  # a diverged epoch had its rate
    return FitResult(
        params=theta,
        state=net_state,
        costs=(*costs, *[math.nan] * missing),
        metrics={k: (*v, *[math.nan] * (epochs + 1 - len(v))) for k, v in metrics.items()},
        learning_rates=(*rates[:begun], *[math.nan] * (epochs - begun)),
        diverged_at=diverged,
    )
