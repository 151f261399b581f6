"""optimizers: gradient descent, momentum and Adam on the two moons, and learning-rate decay.

The course's experiment (Deep Learning Specialization, course 2, "Optimization Methods"; the
seed notes' ``model``): 300 points of ``sklearn.datasets.make_moons(noise=0.2)``, the 3-layer
network [2, 5, 2, 1] (ReLU, ReLU, sigmoid) of `reference.training.model`, mini-batches of 64,
learning rate 0.0007, and the optimizers "gd", "momentum" (beta 0.9) and "adam" (0.9, 0.999,
1e-8). The claim: with the same learning rate and epochs Adam reaches a much lower cost than
plain gradient descent and momentum. The variant adds the course's fixed-interval learning-rate
decay ``schedule_lr_decay(lr0, epoch, decay_rate=1, time_interval)`` (reference.schedules) to
gradient descent (lr0 = 0.1) and Adam (lr0 = 0.01), the course's decay runs.

Seed s uses ``make_moons(random_state=s)`` and the course's mini-batch seed 10 + s and
initialisation seed 3 + s, so s = 0 is the course's own setting.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import partial
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
from bnref.experiments.data import two_moons
from reference.network import NetworkSpec, NetworkState, Params, accuracy, predict
from reference.optimizers import make_optimizer
from reference.schedules import schedule_lr_decay
from reference.training import initialize_parameters, model

NAME = "optimizers"
LAYERS = (2, 5, 2, 1)
PLAIN = ("gd", "momentum", "adam")
DECAYED = {"gd_decay": ("gd", 0.1), "adam_decay": ("adam", 0.01)}  # name: (optimizer, lr0)
VARIANTS = (*PLAIN, *DECAYED)


@dataclass(frozen=True)
class Config:
    """The sizes of one run (FULL within minutes, QUICK a few seconds for the tests)."""

    epochs: int  # the course runs 10000; the ordering of the costs shows far earlier
    learning_rate: float
    time_interval: int  # epochs between two decay steps
    grid: int  # decision-boundary grid points per axis


FULL = Config(2000, 0.0007, 400, 200)
QUICK = Config(150, 0.0007, 30, 60)


def _train(
    name: str, X: Any, Y: Any, config: Config, seed: int
) -> tuple[NetworkSpec, Params, tuple[float, ...], tuple[float, ...]]:
    """(spec, params, costs, learning rates) of one variant; the plain ones are `model`'s."""
    if name in PLAIN:
        result = model(
            X,
            Y,
            list(LAYERS),
            name,
            learning_rate=config.learning_rate,
            num_epochs=config.epochs,
            seed=10 + seed,
            init_seed=3 + seed,
        )
        rates = (config.learning_rate,) * config.epochs
        return result.spec, result.parameters, result.costs, rates
    optimizer, lr0 = DECAYED[name]
    spec = NetworkSpec(2, LAYERS[1:3], 1, output="sigmoid", feature_axis=0)
    schedule = partial(
        lambda lr, epoch: schedule_lr_decay(lr, epoch, 1.0, config.time_interval), lr0
    )
    fitted = fit(
        spec,
        initialize_parameters(LAYERS, 3 + seed),
        X,
        Y,
        optimizer=make_optimizer(optimizer, learning_rate=lr0),
        num_epochs=config.epochs,
        seed=10 + seed,
        schedule=schedule,
    )
    return spec, fitted.params, fitted.costs, fitted.learning_rates


def _boundary(spec: NetworkSpec, params: Params, X: Any, grid: int) -> dict[str, Any]:
    """P(y = 1) = sigmoid(score) on a grid x grid lattice covering the points with a margin."""
    lo, hi = X.min(axis=1) - 0.5, X.max(axis=1) + 0.5
    xs, ys = np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid)
    gx, gy = np.meshgrid(xs, ys)
    scores = predict(spec, params, NetworkState(), np.stack([gx.ravel(), gy.ravel()]))
    return {"x": xs, "y": ys, "score": scores.reshape(grid, grid)}


def _plot(
    numbers: Mapping[str, Any],
    boundaries: Mapping[str, Mapping[str, Any]],
    points: tuple[Any, Any],
    path: Path,
) -> Path:
    fig = new_figure(2, 3, width=4.2, height=3.6)
    axes = fig.subplots(2, 3)
    cost_ax = axes[0, 0]
    for name in VARIANTS:
        cost_ax.plot(numbers[name]["cost"], label=f"{name} ({numbers[name]['final_cost']:.3f})")
    cost_ax.set_xlabel("epoch")
    cost_ax.set_ylabel("cost")
    cost_ax.set_title(f"cost per epoch (lr {numbers['config']['learning_rate']})", fontsize=10)
    cost_ax.legend(fontsize=8, loc="best", title="final cost", title_fontsize=8)
    X, y = points
    boundary_axes = axes.flat[1:]
    for ax, name in zip(boundary_axes, VARIANTS, strict=True):
        b = boundaries[name]
        ax.contourf(b["x"], b["y"], b["score"] > 0, levels=1, cmap="coolwarm", alpha=0.4)
        ax.scatter(X[0], X[1], c=y, cmap="coolwarm", s=8, edgecolors="k", linewidths=0.2)
        ax.set_title(f"{name}: training accuracy {numbers[name]['accuracy']:.3f}", fontsize=10)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    fig.suptitle("Optimizers on two moons (300 points, noise 0.2)")
    return save_figure(fig, path)


def run(
    *, seed: int = 0, quick: bool = False, out_dir: Path, progress: bool = True
) -> ExperimentResult:
    """Train the course's model with each optimizer (and the decayed variants); write
    optimizers.{png,json,csv}.

    numbers: "config", "seed", and for each of "gd", "momentum", "adam", "gd_decay",
    "adam_decay": "cost" per epoch, "final_cost" (the last epoch's), "learning_rate" per epoch
    and "accuracy" (training accuracy of the final parameters, score > 0 against the label).
    """
    seed, out = check_run_args(seed, quick, out_dir, progress)
    config = QUICK if quick else FULL
    X, y = two_moons(seed)
    Xc, Yc = X.T, y[None, :].astype(np.float64)  # the course's layout: (2, m) and (1, m)
    numbers: dict[str, Any] = {"config": asdict(config), "seed": seed}
    boundaries: dict[str, dict[str, Any]] = {}
    with ProgressBar(len(VARIANTS), NAME, enabled=progress) as bar:
        for name in VARIANTS:
            spec, params, costs, rates = _train(name, Xc, Yc, config, seed)
            numbers[name] = {
                "cost": costs,
                "final_cost": costs[-1],
                "learning_rate": rates,
                "accuracy": accuracy(spec, params, NetworkState(), Xc, Yc),
            }
            boundaries[name] = _boundary(spec, params, Xc, config.grid)
            bar.update()
    rows = [
        {
            "variant": name,
            "epoch": epoch + 1,
            "cost": numbers[name]["cost"][epoch],
            "learning_rate": numbers[name]["learning_rate"][epoch],
        }
        for name in VARIANTS
        for epoch in range(config.epochs)
    ]
    write_table(rows, out / f"{NAME}.csv")
    data_path = write_numbers(numbers, out / f"{NAME}.json")
    png = _plot(numbers, boundaries, (Xc, y), out / f"{NAME}.png")
    return ExperimentResult(NAME, numbers, png, data_path)
