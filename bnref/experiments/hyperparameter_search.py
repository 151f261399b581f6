"""hyperparameter-search: random search on a log scale finds the good learning rates and weight
decays, and one coarse-to-fine round concentrates the trials there.

The course's procedure (DLFS ch. 6, ch06/hyperparameter_optimization.py in
oreilly-japan/deep-learning-from-scratch, and the notes): hold out 20% of the training examples
for validation; sample the learning rate and the weight decay lambda log-uniformly
(value = 10**r, r uniform); train a small network for a few epochs per trial with SGD and score
it by validation accuracy; then narrow each range to the best trials and search again.

Here (FULL): 500 of scikit-learn's digits, split by `reference.data_split.validation_split`
(400 for training, 100 for validation); a network of three hidden ReLU layers of 100 units
trained by SGD for 30 epochs on mini-batches of 50; lr in [1e-4, 1] (the notes'
r = -4 * np.random.rand()) and lambda in [1e-6, 1] (wide enough that too much decay shows);
60 trials of random search, then 60 more in `narrow_space` of the best 6
(`reference.hyperparameter_search.coarse_to_fine`, rounds = 2, maximizing validation accuracy).
QUICK uses 300 digits, one hidden layer of 50, 6 epochs and 10 + 10 trials (top 3). Every
trial starts from the same initial weights and sees the same mini-batches, so scores differ only
through (lr, lambda). A run whose loss (or validation scores) overflow is diverged and scores 0:
it learned nothing usable. The best trial's network is also scored on the digits never used
(1297 in FULL).
"""

from __future__ import annotations

from collections.abc import Mapping
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
from bnref.experiments.data import digits_split
from bnref.progress import Progress
from reference.data_split import validation_split
from reference.hyperparameter_search import LogUniform, coarse_to_fine
from reference.network import NetworkSpec, accuracy, init_params
from reference.optimizers import make_optimizer

NAME = "hyperparameter-search"
CHANCE = 0.1  # ten digit classes
SPACE = {"learning_rate": LogUniform(1e-4, 1.0), "weight_decay": LogUniform(1e-6, 1.0)}


@dataclass(frozen=True)
class Config:
    """The sizes of one run (FULL as DLFS's example, QUICK a few seconds for the tests)."""

    n_pool: int  # digits for training + validation; the rest test the best trial
    hidden: tuple[int, ...]
    epochs: int
    batch_size: int
    n_trials: int  # per round
    top_k: int  # trials that define the fine range


FULL = Config(500, (100, 100, 100), 30, 50, 60, 6)
QUICK = Config(300, (50,), 6, 30, 10, 3)


def run(
    *, seed: int = 0, quick: bool = False, out_dir: Path, progress: bool = True
) -> ExperimentResult:
    """Coarse random search then one fine round; write hyperparameter-search.{png,json,csv}
    and return the claims (`_claims`) with their verdicts.

    numbers: "config", "seed", "sizes" (train, validation, test), "space" (the coarse and the
    fine [low, high] of each hyperparameter), "trials" (round, learning_rate, weight_decay,
    val_accuracy, diverged_at), "best" (the best trial's hyperparameters, validation and test
    accuracy), and per round "median_val_accuracy", "best_val_accuracy" and
    "worst_val_accuracy".
    """
    seed, out = check_run_args(seed, quick, out_dir, progress)
    config = QUICK if quick else FULL
    digits = digits_split(config.n_pool, seed)
    split = validation_split(digits.X_train, digits.y_train, fraction=0.2, seed=seed, axis=0)
    spec0 = NetworkSpec(split.X_train.shape[1], config.hidden, digits.num_classes)
    theta0 = init_params(spec0, np.random.default_rng(seed))
    records: list[dict[str, Any]] = []  # one per objective call, in trial order

    def objective(params: Mapping[str, float], bar: Progress) -> float:
        spec = NetworkSpec(
            spec0.input_size,
            config.hidden,
            spec0.output_size,
            weight_decay=params["weight_decay"],
        )
        result = fit(
            spec,
            theta0,
            split.X_train,
            split.Y_train,
            optimizer=make_optimizer("sgd", learning_rate=params["learning_rate"]),
            num_epochs=config.epochs,
            mini_batch_size=config.batch_size,
            seed=seed,
            progress=bar,
        )
        diverged_at, score = result.diverged_at, 0.0
        if diverged_at is None:
            try:  # weights that trained finitely can still overflow on new examples
                with np.errstate(over="raise", invalid="raise", divide="raise"):
                    score = accuracy(spec, result.params, result.state, split.X_val, split.Y_val)
            except FloatingPointError:
                diverged_at = config.epochs
        records.append({"diverged_at": diverged_at, "spec": spec, "fit": result})
        return score

    total = 2 * config.n_trials * config.epochs
    with Progress(total, NAME, unit="epochs", enabled=progress) as bar:
        search = coarse_to_fine(
            lambda params: objective(params, bar),
            SPACE,
            n_trials=config.n_trials,
            rounds=2,
            top_k=config.top_k,
            seed=seed,
            minimize=False,
        )
    trials = [
        {
            "round": r,
            "learning_rate": trial.params["learning_rate"],
            "weight_decay": trial.params["weight_decay"],
            "val_accuracy": trial.score,
            "diverged_at": records[r * config.n_trials + i]["diverged_at"],
        }
        for r, result in enumerate(search.rounds)
        for i, trial in enumerate(result.trials)
    ]
    best_index = next(
        r * config.n_trials + i
        for r, result in enumerate(search.rounds)
        for i, trial in enumerate(result.trials)
        if trial is search.best
    )
    best_fit, best_spec = records[best_index]["fit"], records[best_index]["spec"]
    numbers: dict[str, Any] = {
        "config": asdict(config),
        "seed": seed,
        "sizes": {
            "train": int(split.X_train.shape[0]),
            "validation": int(split.X_val.shape[0]),
            "test": int(digits.X_test.shape[0]),
        },
        "space": [
            {name: [dist.low, dist.high] for name, dist in space.items()} for space in search.spaces
        ],
        "trials": trials,
        "best": {
            **dict(search.best.params),
            "round": best_index // config.n_trials,
            "val_accuracy": search.best.score,
            "test_accuracy": accuracy(
                best_spec, best_fit.params, best_fit.state, digits.X_test, digits.y_test
            ),
        },
        "rounds": [
            {
                "median_val_accuracy": float(np.median([t.score for t in result.trials])),
                "best_val_accuracy": result.best.score,
                "worst_val_accuracy": min(t.score for t in result.trials),
            }
            for result in search.rounds
        ],
    }
    claims = _claims(numbers)
    files = write_outputs(
        out, NAME, numbers=numbers, claims=claims, rows=trials, plot=lambda p: _plot(numbers, p)
    )
    return ExperimentResult(NAME, numbers, tuple(claims), files)


def _claims(numbers: Mapping[str, Any]) -> list[Claim]:
    """The notes' claims: over these log-scale ranges the hyperparameters decide between
    learning and not learning (the best trial scores >= 5 x chance, the worst coarse one
    <= 2 x chance), and the fine round's typical (median) trial beats the coarse round's."""
    best, (coarse, fine) = numbers["best"], numbers["rounds"]
    return [
        Claim(
            f"random search on a log scale finds a good region: the best trial (learning rate "
            f"{best['learning_rate']:.2g}, lambda {best['weight_decay']:.2g}) scores "
            f"{best['val_accuracy']:.2f} in validation and {best['test_accuracy']:.2f} on "
            f"{numbers['sizes']['test']} unseen digits, the worst coarse trial "
            f"{coarse['worst_val_accuracy']:.2f} (chance {CHANCE:.2f})",
            best["val_accuracy"] >= 5 * CHANCE and coarse["worst_val_accuracy"] <= 2 * CHANCE,
        ),
        Claim(
            f"coarse to fine concentrates the trials there: median validation accuracy "
            f"{fine['median_val_accuracy']:.2f} in the fine round against "
            f"{coarse['median_val_accuracy']:.2f} in the coarse one",
            fine["median_val_accuracy"] > coarse["median_val_accuracy"],
        ),
    ]


def _plot(numbers: Mapping[str, Any], path: Path) -> Path:
    fig = new_figure(1, 2, width=5.2, height=4.2)
    scatter_ax, rank_ax = fig.subplots(1, 2)
    trials = numbers["trials"]
    for r, marker, label in ((0, "o", "coarse"), (1, "^", "fine")):
        mine = [t for t in trials if t["round"] == r]
        points = scatter_ax.scatter(
            [t["learning_rate"] for t in mine],
            [t["weight_decay"] for t in mine],
            c=[t["val_accuracy"] for t in mine],
            cmap="viridis",
            vmin=0.0,
            vmax=1.0,
            marker=marker,
            edgecolors="k",
            linewidths=0.4,
            label=label,
        )
        scores = sorted((t["val_accuracy"] for t in mine), reverse=True)
        rank_ax.plot(range(1, len(scores) + 1), scores, marker=marker, label=f"{label} round")
    fine = numbers["space"][1]
    (lr_lo, lr_hi), (wd_lo, wd_hi) = fine["learning_rate"], fine["weight_decay"]
    scatter_ax.plot(
        [lr_lo, lr_hi, lr_hi, lr_lo, lr_lo], [wd_lo, wd_lo, wd_hi, wd_hi, wd_lo], "r-", lw=1
    )
    best = numbers["best"]
    scatter_ax.scatter(
        [best["learning_rate"]],
        [best["weight_decay"]],
        marker="*",
        s=250,
        c="red",
        label="best",
        clip_on=False,  # a best trial at the edge of the range stays whole
        zorder=3,
    )
    coarse = numbers["space"][0]
    scatter_ax.set_xscale("log")
    scatter_ax.set_yscale("log")
    scatter_ax.set_xlim(*coarse["learning_rate"])
    scatter_ax.set_ylim(*coarse["weight_decay"])
    scatter_ax.set_xlabel("learning rate")
    scatter_ax.set_ylabel("weight decay lambda")
    scatter_ax.set_title("trials (red box: the fine round's range)", fontsize=9)
    scatter_ax.legend(loc="lower left", fontsize=8)
    fig.colorbar(points, ax=scatter_ax, label="validation accuracy")
    rank_ax.set_xlabel("rank within the round")
    rank_ax.set_ylabel("validation accuracy")
    rank_ax.set_ylim(0.0, 1.02)
    rank_ax.legend(loc="lower left", fontsize=8)
    rank_ax.set_title(
        f"best: lr {best['learning_rate']:.2g}, lambda {best['weight_decay']:.2g}, "
        f"val {best['val_accuracy']:.3f}, test {best['test_accuracy']:.3f}",
        fontsize=9,
    )
    fig.suptitle("Random search on a log scale, then one coarse-to-fine round (digits)")
    return save_figure(fig, path)
