"""bn-init-scale: batch norm tolerates bad initial weight scales (course notes; DLFS ch. 6).

The course's experiment (oreilly-japan/deep-learning-from-scratch, ch06/batch_norm_test.py):
a network of 5 hidden ReLU layers of 100 units, trained with and without batch norm by SGD
(learning rate 0.01, mini-batches of 100) for 20 epochs on 1000 training images, once for each
of the 16 initial weight standard deviations ``np.logspace(0, -4, 16)``; the claim is that with
batch norm training makes progress at every scale, while without it a too small (or too large)
scale does not learn at all. Here the images are scikit-learn's digits (1797 of 8x8 pixels,
bundled, so nothing is downloaded), or a local MNIST given with ``--data`` (`data.load_mnist`).

Batch norm uses eps = 1e-6, DLFS's ``np.sqrt(var + 10e-7)`` (common/layers.py): with a weight
scale of 1e-4 the pre-activations have a variance near 1e-7, and eps = 1e-5 would swamp it
(the scale-invariance that the experiment shows needs var >> eps).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnref.experiments.common import (
    Claim,
    ExperimentResult,
    check_run_args,
    fit,
    new_figure,
    save_figure,
    write_outputs,
)
from bnref.experiments.data import Split, digits_split, load_mnist
from bnref.progress import Progress
from reference.layers import BatchNormConfig
from reference.network import NetworkSpec, NetworkState, Params, accuracy, init_params
from reference.optimizers import make_optimizer

NAME = "bn-init-scale"
BN_EPS = 1e-6  # DLFS's 10e-7, see the module docstring


@dataclass(frozen=True)
class Config:
    """The sizes of one run (FULL is the course's, QUICK a few seconds for the tests)."""

    n_train: int
    n_test: int  # test examples scored after every epoch (at most what the data set has)
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    learning_rate: float
    scales: tuple[float, ...]


ALL_SCALES = tuple(float(s) for s in np.logspace(0, -4, 16))
FULL = Config(1000, 2000, (100,) * 5, 20, 100, 0.01, ALL_SCALES)
# Every 5th scale (1, 4.6e-2, 2.2e-3, 1e-4): the extremes and two between, on a smaller net.
QUICK = Config(500, 500, (50,) * 4, 8, 50, 0.01, ALL_SCALES[::5])


def _subsample(split: Split, config: Config, seed: int) -> Split:
    rng = np.random.default_rng(seed)
    train = rng.permutation(len(split.X_train))[: config.n_train]
    test = rng.permutation(len(split.X_test))[: config.n_test]
    return Split(split.X_train[train], split.y_train[train], split.X_test[test], split.y_test[test])


def _load(config: Config, seed: int, data: Path | None) -> tuple[Split, str]:
    if data is None:
        return digits_split(config.n_train, seed), "scikit-learn digits"
    return _subsample(load_mnist(data), config, seed), f"MNIST from {data}"


def _train_one(
    split: Split, config: Config, scale: float, *, batch_norm: bool, seed: int, bar: Progress
) -> dict[str, Any]:
    spec = NetworkSpec(
        split.X_train.shape[1],
        config.hidden,
        split.num_classes,
        weight_init=scale,
        batch_norm=BatchNormConfig(eps=BN_EPS) if batch_norm else None,
    )

    def evaluate(theta: Params, state: NetworkState) -> Mapping[str, float]:
        return {
            "train": accuracy(spec, theta, state, split.X_train, split.y_train),
            "test": accuracy(spec, theta, state, split.X_test, split.y_test),
        }

    result = fit(
        spec,
        init_params(spec, np.random.default_rng(seed)),
        split.X_train,
        split.y_train,
        optimizer=make_optimizer("sgd", learning_rate=config.learning_rate),
        num_epochs=config.epochs,
        mini_batch_size=config.batch_size,
        seed=seed,
        evaluate=evaluate,
        progress=bar,
    )
    return {
        "train_accuracy": result.metrics["train"],
        "test_accuracy": result.metrics["test"],
        "diverged_at": result.diverged_at,
    }


def _summary(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {
        "final_train_accuracy": [r["train_accuracy"][-1] for r in runs],
        "final_test_accuracy": [r["test_accuracy"][-1] for r in runs],
        "train_accuracy": [r["train_accuracy"] for r in runs],
        "test_accuracy": [r["test_accuracy"] for r in runs],
        "diverged_at": [r["diverged_at"] for r in runs],
    }


LEARNS = 3.0  # a run learned if its test accuracy is at least 3 x chance
FAILS = 2.0  # it did not if it diverged or stayed below 2 x chance (ten classes: 0.3, 0.2)


def _span(scales: Sequence[float]) -> str:
    lo, hi = min(scales), max(scales)
    return f"{lo:.1e}" if lo == hi else f"{lo:.1e} to {hi:.1e}"


def _range(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return f"{lo:.2f}" if f"{lo:.2f}" == f"{hi:.2f}" else f"{lo:.2f} to {hi:.2f}"


def _claims(numbers: Mapping[str, Any], num_classes: int, *, quick: bool) -> list[Claim]:
    """DLFS's claim in three parts: with batch norm the network learns at every scale; without
    it, too small a scale does not learn, and too large a one diverges or does not learn
    (learning: test accuracy >= LEARNS x chance; not learning: diverged or < FAILS x chance).
    The too-small and too-large scales are the runs of such failures from each end of the
    range, within its half. Quick mode (four scales, a smaller network, 8 epochs) claims the
    small end only: there even batch norm does not learn at scale 1 in 8 epochs."""
    chance = 1.0 / num_classes
    scales: list[float] = numbers["scales"]
    bn = [float(a) for a in numbers["with_bn"]["final_test_accuracy"]]
    plain = [float(a) for a in numbers["without_bn"]["final_test_accuracy"]]
    diverged = numbers["without_bn"]["diverged_at"]
    bn_learns = [math.isfinite(a) and a >= LEARNS * chance for a in bn]
    plain_fails = [
        d is not None or not math.isfinite(a) or a < FAILS * chance
        for a, d in zip(plain, diverged, strict=True)
    ]
    order = [int(i) for i in np.argsort(scales)]  # smallest first
    half = len(scales) // 2
    claims = []
    if not quick:
        worst, best = int(np.nanargmin(bn)), int(np.nanargmax(bn))
        claims.append(
            Claim(
                f"with batch norm the network learns at all {len(scales)} weight scales: test "
                f"accuracy {bn[worst]:.2f} (at {scales[worst]:.1e}) to {bn[best]:.2f} (at "
                f"{scales[best]:.1e}); learning is >= {LEARNS * chance:.2f}, {LEARNS:g} x chance",
                all(bn_learns),
            )
        )
    for end, words, most in (
        (order[:half], "small", "smallest"),
        (order[::-1][:half], "large", "largest"),
    ):
        if quick and words == "large":
            continue
        run_ = list(itertools.takewhile(lambda i: plain_fails[i], end))
        if not run_:
            i = end[0]
            said = "diverged" if diverged[i] is not None else f"reaches {plain[i]:.2f}"
            claims.append(
                Claim(
                    f"without batch norm too {words} a scale does not learn: the {most}, "
                    f"{scales[i]:.1e}, {said}",
                    False,
                )
            )
            continue
        whole = (
            f" (the {'lower' if words == 'small' else 'upper'} half)" if len(run_) == half else ""
        )
        gone = [i for i in run_ if diverged[i] is not None]
        stayed = [plain[i] for i in run_ if diverged[i] is None]
        parts = []
        if stayed:
            parts.append(f"test accuracy {_range(stayed)} (under {FAILS * chance:.2f})")
        if gone:
            at = sorted({int(diverged[i]) for i in gone})
            parts.append(f"{len(gone)} diverged (loss overflow in epoch {', '.join(map(str, at))})")
        claims.append(
            Claim(
                f"without batch norm too {words} a scale does not learn: at the {len(run_)} "
                f"{most} scales{whole}, {_span([scales[i] for i in run_])}, {' and '.join(parts)}; "
                f"batch norm reaches {_range([bn[i] for i in run_])} there",
                all(bn_learns[i] for i in run_),
            )
        )
    return claims


def _plot(numbers: Mapping[str, Any], num_classes: int, path: Path) -> Path:
    """Left: one panel of training-accuracy curves per scale (a 2-column grid for up to 4
    scales, 4 columns beyond), a diverged run marked where it stopped; right: final test
    accuracy against the scale, with chance, diverged runs marked x at 0. Panel sizes are
    fixed, so quick and full figures read the same."""
    scales: list[float] = numbers["scales"]
    cols = 2 if len(scales) <= 4 else 4
    rows = math.ceil(len(scales) / cols)
    grid_width, right_width = 2.4 * cols, 5.0  # inches
    fig = new_figure(width=grid_width + right_width, height=2.1 * rows + 1.5)
    left, right = fig.subfigures(1, 2, width_ratios=[grid_width, right_width], squeeze=False)[0]
    axes = left.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    epochs = np.arange(numbers["config"]["epochs"] + 1)
    series = (("with_bn", "batch norm", "-", "C0"), ("without_bn", "without", "--", "C1"))
    for i, ax in enumerate(axes.flat):
        if i >= len(scales):
            ax.set_visible(False)
            continue
        for key, label, style, color in series:
            curve = np.array(numbers[key]["train_accuracy"][i], dtype=float)
            ax.plot(epochs, curve, style, color=color, label=label)
            stopped = numbers[key]["diverged_at"][i]
            if stopped is not None:  # the curve ends before this epoch: say so where it ends
                last = float(curve[np.isfinite(curve)][-1])
                ax.plot([stopped], [last], "X", color="C3", ms=9, label="diverged")
                ax.annotate(
                    f"{label}:\ndiverged in\nepoch {stopped}",
                    (stopped, last),
                    xytext=(0.5, 0.55),
                    textcoords="axes fraction",
                    ha="center",
                    fontsize=8,
                    color="C3",
                    arrowprops={"arrowstyle": "->", "color": "C3", "lw": 0.8},
                )
        ax.set_title(f"W std {scales[i]:.1e}", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    left.legend(handles.values(), handles.keys(), loc="outside upper center", ncols=3, fontsize=9)
    left.supxlabel("epoch", fontsize=10)
    left.supylabel("training accuracy", fontsize=10)
    ax = right.subplots()
    for key, label, style, color in series:
        finals = np.array(numbers[key]["final_test_accuracy"], dtype=float)
        ax.semilogx(
            scales, finals, style, marker="o" if key == "with_bn" else "s", color=color, label=label
        )
        diverged = [s for s, d in zip(scales, numbers[key]["diverged_at"], strict=True) if d]
        if diverged:  # NaN accuracy, so not on the line: an X at 0 instead
            ax.semilogx(
                diverged, [0.0] * len(diverged), "X", color="C3", ms=9, label=f"{label}: diverged"
            )
    chance = 1.0 / num_classes
    ax.axhline(chance, color="0.5", ls=":", lw=1)
    ax.text(
        max(scales), chance + 0.015, f"chance {chance:.2f}", ha="right", fontsize=8, color="0.4"
    )
    ax.set_xlabel("initial weight std")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"test accuracy after {numbers['config']['epochs']} epochs", fontsize=10)
    ax.set_ylim(-0.05, 1.05)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncols=2)
    fig.suptitle(f"Batch norm vs initial weight scale ({numbers['data']})")
    return save_figure(fig, path)


def run(
    *,
    seed: int = 0,
    quick: bool = False,
    out_dir: Path,
    progress: bool = True,
    data: Path | None = None,
) -> ExperimentResult:
    """Train with and without batch norm at each weight scale; write bn-init-scale.{png,json,csv}
    and return the claims (`_claims`) with their verdicts.

    numbers: "scales", "config", "data", and for "with_bn" and "without_bn" the accuracy
    curves ``train_accuracy[i][e]`` / ``test_accuracy[i][e]`` (scale i, after epoch e; e = 0
    before training), their last values "final_train_accuracy" / "final_test_accuracy", and
    "diverged_at" (the epoch whose loss overflowed, or None). A diverged run's accuracies are
    NaN in memory and null in the JSON.
    """
    seed, out = check_run_args(seed, quick, out_dir, progress)
    config = QUICK if quick else FULL
    split, source = _load(config, seed, data)
    runs: dict[str, list[dict[str, Any]]] = {"with_bn": [], "without_bn": []}
    total = 2 * len(config.scales) * config.epochs
    with Progress(total, NAME, unit="epochs", enabled=progress) as bar:
        for scale in config.scales:
            for key, key_runs in runs.items():
                bn = key == "with_bn"
                key_runs.append(_train_one(split, config, scale, batch_norm=bn, seed=seed, bar=bar))
    numbers: dict[str, Any] = {
        "scales": list(config.scales),
        "config": asdict(config),
        "data": source,
        "seed": seed,
        "with_bn": _summary(runs["with_bn"]),
        "without_bn": _summary(runs["without_bn"]),
    }
    rows = [
        {
            "scale": scale,
            "batch_norm": key == "with_bn",
            "epoch": epoch,
            "train_accuracy": run_["train_accuracy"][epoch],
            "test_accuracy": run_["test_accuracy"][epoch],
        }
        for key, key_runs in runs.items()
        for scale, run_ in zip(config.scales, key_runs, strict=True)
        for epoch in range(config.epochs + 1)
    ]
    claims = _claims(numbers, split.num_classes, quick=quick)
    files = write_outputs(
        out,
        NAME,
        numbers=numbers,
        claims=claims,
        rows=rows,
        plot=lambda path: _plot(numbers, split.num_classes, path),
    )
    return ExperimentResult(NAME, numbers, tuple(claims), files)
