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

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bnref.experiments.common import (
    ExperimentResult,
    ProgressBar,
    check_run_args,
    fit,
    new_figure,
    save_figure,
    write_numbers,
    write_table,
)
from bnref.experiments.data import Split, digits_split, load_mnist
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
    split: Split, config: Config, scale: float, *, batch_norm: bool, seed: int, bar: ProgressBar
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
        bar=bar,
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


def _plot(numbers: Mapping[str, Any], path: Path) -> Path:
    """Left: one panel of training-accuracy curves per scale (a 2-column grid for up to 4
    scales, 4 columns beyond); right: final test accuracy against the scale, diverged runs
    marked x at 0. Panel sizes are fixed, so quick and full figures read the same."""
    scales: list[float] = numbers["scales"]
    cols = 2 if len(scales) <= 4 else 4
    rows = math.ceil(len(scales) / cols)
    grid_width, right_width = 2.4 * cols, 5.0  # inches
    fig = new_figure(width=grid_width + right_width, height=2.1 * rows + 1.3)
    left, right = fig.subfigures(1, 2, width_ratios=[grid_width, right_width], squeeze=False)[0]
    axes = left.subplots(rows, cols, sharex=True, sharey=True, squeeze=False)
    epochs = np.arange(numbers["config"]["epochs"] + 1)
    for i, ax in enumerate(axes.flat):
        if i >= len(scales):
            ax.set_visible(False)
            continue
        ax.plot(epochs, numbers["with_bn"]["train_accuracy"][i], label="batch norm")
        ax.plot(epochs, numbers["without_bn"]["train_accuracy"][i], "--", label="without")
        ax.set_title(f"W std {scales[i]:.1e}", fontsize=9)
        ax.set_ylim(-0.02, 1.02)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    left.legend(handles, labels, loc="outside upper center", ncols=2, fontsize=9)
    left.supxlabel("epoch", fontsize=10)
    left.supylabel("training accuracy", fontsize=10)
    ax = right.subplots()
    series = (("with_bn", "batch norm", "o-", "C0"), ("without_bn", "without", "s--", "C1"))
    for key, label, style, color in series:
        finals = np.array(numbers[key]["final_test_accuracy"], dtype=float)
        ax.semilogx(scales, finals, style, color=color, label=label)
        diverged = [s for s, d in zip(scales, numbers[key]["diverged_at"], strict=True) if d]
        if diverged:  # NaN accuracy, so not on the line: an x at 0 instead
            ax.semilogx(
                diverged,
                [0.0] * len(diverged),
                "x",
                color=color,
                ms=8,
                mew=2,
                label=f"{label}: diverged",
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
    """Train with and without batch norm at each weight scale; write bn-init-scale.{png,json,csv}.

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
    with ProgressBar(total, NAME, enabled=progress) as bar:
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
    write_table(rows, out / f"{NAME}.csv")
    data_path = write_numbers(numbers, out / f"{NAME}.json")
    png = _plot(numbers, out / f"{NAME}.png")
    return ExperimentResult(NAME, numbers, png, data_path)
