"""optimizers: gradient descent, momentum and Adam on the course's two moons, and learning-rate
decay.

The course's experiment (Deep Learning Specialization, course 2, "Optimization Methods"; the
seed notes' ``model``): the 300 points of its ``load_dataset`` (``np.random.seed(3)`` then
``make_moons(n_samples=300, noise=.2)``, `data.course_moons`), the 3-layer network
[2, 5, 2, 1] (ReLU, ReLU, sigmoid) with the course's He initialisation (seed 3), mini-batches
of 64 (seed 10, plus one per epoch), learning rate 0.0007 and 10000 epochs, trained with "gd",
"momentum" (beta 0.9) and "adam" (0.9, 0.999, 1e-8): `reference.training.model`'s settings.
The course's results, which this reproduces exactly:

* training accuracy gd 79.7%, momentum 79.7%, Adam 94% (the edition of the notebook with
  10000 epochs prints ``Accuracy: 0.796666666667``, ``0.796666666667`` and ``0.94``);
* the cost of every 1000th epoch, printed to 6 decimals by the edition with 5000 epochs (the
  same loop, data and seeds: its first 5000 epochs are these) -- `COURSE_COSTS`;
* its words: Adam clearly outperforms gradient descent and momentum, and momentum's impact is
  almost negligible here, with so small a learning rate and so simple a data set.

Settings (``setting=``, ``--setting`` on the command line):

* ``course`` (the default): the above. Quick mode runs the first 1001 epochs, enough to
  compare the course's printed costs of its epochs 0 and 1000.
* ``course-decay``: the notebook's learning-rate decay section, 5000 epochs with
  ``schedule_lr_decay(learning_rate0, epoch, decay_rate=1, time_interval=1000)``
  (`reference.schedules`) for gd (learning_rate0 0.1), momentum (0.1) and Adam (0.01); the
  course prints their costs (`COURSE_COSTS`) and says that with decay gradient descent and
  momentum reach Adam's accuracy (its table: >94.6%, >95.6%, 94%).
* ``short``: ``make_moons(300, noise=0.2, random_state=seed)`` and 2000 epochs (quick: 150),
  the three optimizers at 0.0007 and the decayed gd (0.1) and Adam (0.01) at intervals of 400
  epochs: a smaller run on other points, with no published numbers to compare.

Seed s draws the course's points from ``RandomState(3 + s)`` (``random_state=s`` in
``short``), initialises with seed 3 + s and shuffles with seed 10 + s: s = 0 is the course's
own setting.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from matplotlib.ticker import FormatStrFormatter

from bnref.experiments.common import (
    Claim,
    ExperimentResult,
    FitResult,
    check_run_args,
    fit,
    new_figure,
    save_figure,
    write_outputs,
)
from bnref.experiments.data import course_moons, two_moons
from bnref.progress import Progress
from reference.network import NetworkSpec, NetworkState, Params, accuracy, predict
from reference.optimizers import Optimizer, make_optimizer
from reference.schedules import schedule_lr_decay
from reference.training import initialize_parameters

NAME = "optimizers"
LAYERS = (2, 5, 2, 1)
MINI_BATCH_SIZE = 64


@dataclass(frozen=True)
class Variant:
    """One training run: the course's `optimizer` ("gd", "momentum", "adam") at
    `learning_rate` (the course's learning_rate0 when decayed), its rate divided by
    1 + floor(epoch / `decay_interval`) after each epoch if `decay_interval` is set."""

    name: str
    optimizer: str
    learning_rate: float
    decay_interval: int | None = None

    def build(self) -> Optimizer[Any]:
        """The optimizer as `reference.training.model` builds it."""
        if self.optimizer == "momentum":
            return make_optimizer(
                "momentum", learning_rate=self.learning_rate, beta=0.9, form="course"
            )
        if self.optimizer == "adam":
            return make_optimizer(
                "adam",
                learning_rate=self.learning_rate,
                beta1=0.9,
                beta2=0.999,
                epsilon=1e-8,
                form="explicit",
            )
        return make_optimizer("gd", learning_rate=self.learning_rate)

    def schedule(self) -> Callable[[int], float] | None:
        """The course's ``schedule_lr_decay(learning_rate0, i, 1, decay_interval)``, or None."""
        if self.decay_interval is None:
            return None
        return partial(_stepped, self.learning_rate, self.decay_interval)


def _stepped(learning_rate0: float, interval: int, epoch: int) -> float:
    return schedule_lr_decay(learning_rate0, epoch, 1.0, interval)


@dataclass(frozen=True)
class Setting:
    """The data, epochs and variants of one setting (see the module docstring)."""

    name: str
    course_data: bool  # the course's points (course_moons), else make_moons(random_state=seed)
    epochs: int
    quick_epochs: int
    variants: tuple[Variant, ...]
    grid: int = 200  # decision-boundary grid points per axis

    def sizes(self, quick: bool) -> dict[str, Any]:
        """The numbers of a run, for its JSON file."""
        return {
            "setting": self.name,
            "epochs": self.quick_epochs if quick else self.epochs,
            "mini_batch_size": MINI_BATCH_SIZE,
            "layers": list(LAYERS),
            "data": (
                "the course's: np.random.seed(3 + seed); make_moons(n_samples=300, noise=.2)"
                if self.course_data
                else "make_moons(n_samples=300, noise=0.2, random_state=seed)"
            ),
            "variants": {
                v.name: {
                    "optimizer": v.optimizer,
                    "learning_rate": v.learning_rate,
                    "decay_interval": v.decay_interval,
                }
                for v in self.variants
            },
        }


PLAIN = tuple(Variant(name, name, 0.0007) for name in ("gd", "momentum", "adam"))
SETTINGS: Mapping[str, Setting] = MappingProxyType(
    {
        "course": Setting("course", True, 10000, 1001, PLAIN),
        "course-decay": Setting(
            "course-decay",
            True,
            5000,
            1001,
            (
                Variant("gd", "gd", 0.1, 1000),
                Variant("momentum", "momentum", 0.1, 1000),
                Variant("adam", "adam", 0.01, 1000),
            ),
        ),
        "short": Setting(
            "short",
            False,
            2000,
            150,
            (*PLAIN, Variant("gd-decay", "gd", 0.1, 400), Variant("adam-decay", "adam", 0.01, 400)),
            grid=60,
        ),
    }
)
DEFAULT_SETTING = "course"

# The costs the course prints ("Cost after epoch i: %f", every 1000th epoch, i from 0) in the
# runs of each setting with seed 0, and the accuracies it prints or tabulates.
COURSE_COSTS: Mapping[str, Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "course": {
            "gd": ("0.702405", "0.668101", "0.635288", "0.600491", "0.573367"),
            "momentum": ("0.702413", "0.668167", "0.635388", "0.600591", "0.573444"),
            "adam": ("0.702166", "0.167845", "0.141316", "0.138788", "0.136066"),
        },
        "course-decay": {
            "gd": ("0.701091", "0.127161", "0.120304", "0.117033", "0.117512"),
            "momentum": ("0.702226", "0.128974", "0.125965", "0.123375", "0.123218"),
            "adam": ("0.699346", "0.130074", "0.129826", "0.129282", "0.128361"),
        },
    }
)
PRINTED_EVERY = 1000
# The 10000-epoch edition's "Accuracy: 0.796666666667" (239 of 300 points) and 0.94 (282).
COURSE_ACCURACY = MappingProxyType({"gd": 239 / 300, "momentum": 239 / 300, "adam": 282 / 300})
# The decay section's summary table, as the course writes it (not printed by a run).
COURSE_DECAY_TABLE = MappingProxyType({"gd": ">94.6%", "momentum": ">95.6%", "adam": "94%"})


def load_points(setting: Setting, seed: int) -> tuple[Any, Any]:
    """X (2, 300) and Y (1, 300) in the course's layout for `setting` and `seed`."""
    X, y = course_moons(seed) if setting.course_data else two_moons(seed)
    return X.T, y[None, :].astype(np.float64)


def train_variant(
    variant: Variant,
    X: Any,
    Y: Any,
    *,
    epochs: int,
    seed: int,
    progress: Progress | None = None,
) -> tuple[NetworkSpec, FitResult]:
    """`variant` trained as `reference.training.model` trains it (the same network,
    initialisation, mini-batches and optimizer), through `common.fit`, for `epochs` epochs."""
    spec = NetworkSpec(2, LAYERS[1:3], 1, activation="relu", output="sigmoid", feature_axis=0)
    fitted = fit(
        spec,
        initialize_parameters(LAYERS, 3 + seed),
        X,
        Y,
        optimizer=variant.build(),
        num_epochs=epochs,
        mini_batch_size=MINI_BATCH_SIZE,
        seed=10 + seed,
        schedule=variant.schedule(),
        progress=progress,
    )
    return spec, fitted


def _boundary(spec: NetworkSpec, params: Params, X: Any, grid: int) -> dict[str, Any]:
    """The score on a grid x grid lattice covering the points with a margin (class 1 where
    the score is > 0, i.e. the sigmoid > 0.5)."""
    lo, hi = X.min(axis=1) - 0.5, X.max(axis=1) + 0.5
    xs, ys = np.linspace(lo[0], hi[0], grid), np.linspace(lo[1], hi[1], grid)
    gx, gy = np.meshgrid(xs, ys)
    scores = predict(spec, params, NetworkState(), np.stack([gx.ravel(), gy.ravel()]))
    return {"x": xs, "y": ys, "score": scores.reshape(grid, grid)}


def _digits(value: float) -> float:
    """`value` to 10 significant digits, for the per-epoch CSV: 10000 epochs of three costs
    at full precision (17 digits) made 0.6 MB; the course prints 6 decimals."""
    return float(f"{value:.10g}")


def _percent(fraction: float) -> str:
    return f"{100 * fraction:.1f}%"


def _printed_claim(
    setting: Setting, runs: Mapping[str, Mapping[str, Any]], seed: int
) -> Claim | None:
    """Each printed cost the run reached, against ours rounded to the course's 6 decimals."""
    printed = COURSE_COSTS.get(setting.name)
    if printed is None or seed != 0:
        return None
    pairs = [
        (name, i * PRINTED_EVERY, text, runs[name]["costs"][i * PRINTED_EVERY])
        for name, texts in printed.items()
        for i, text in enumerate(texts)
        if i * PRINTED_EVERY < len(runs[name]["costs"])
    ]
    same = sum(f"{ours:.6f}" == text for _, _, text, ours in pairs)
    name, epoch, text, ours = max(pairs, key=lambda p: (p[1], p[0] == "adam"))
    epochs = sorted({p[1] for p in pairs})
    return Claim(
        f"the cost of the course's epochs {', '.join(map(str, epochs))} (counted from 0) is "
        f"its printed cost to 6 decimals for {same} of {len(pairs)} (e.g. {name} at {epoch}: "
        f"{ours:.6f}, the course {text})",
        same == len(pairs),
    )


def _claims(
    setting: Setting, runs: Mapping[str, Mapping[str, Any]], seed: int, quick: bool
) -> list[Claim]:
    """The course's claims about this setting, as far as this run can test them."""
    claims = []
    printed = _printed_claim(setting, runs, seed)
    if printed is not None:
        claims.append(printed)
    names = [v.name for v in setting.variants]
    if setting.name == "course" and not quick and seed == 0:
        ours = ", ".join(f"{n} {_percent(runs[n]['accuracy'])}" for n in names)
        theirs = ", ".join(f"{n} {_percent(COURSE_ACCURACY[n])}" for n in names)
        same = all(abs(runs[n]["accuracy"] - COURSE_ACCURACY[n]) < 0.5 / 300 for n in names)
        claims.append(Claim(f"training accuracy {ours}; the course: {theirs}", same))
    if setting.name == "course-decay" and not quick:
        adam = runs["adam"]["accuracy"]
        ours = ", ".join(f"{n} {_percent(runs[n]['accuracy'])}" for n in names)
        table = ", ".join(f"{n} {COURSE_DECAY_TABLE[n]}" for n in names)
        claims.append(
            Claim(
                f"with decay, gd and momentum reach Adam's accuracy (within 1 point or above): "
                f"{ours} (the course's table: {table})",
                all(runs[n]["accuracy"] >= adam - 0.01 for n in ("gd", "momentum")),
            )
        )
    if {"gd", "momentum", "adam"} <= set(runs) and setting.name != "course-decay":
        adam, gd, momentum = (runs[n] for n in ("adam", "gd", "momentum"))
        better = adam["final_cost"] < min(gd["final_cost"], momentum["final_cost"])
        if not quick:
            better = better and adam["accuracy"] > max(gd["accuracy"], momentum["accuracy"])
        accuracies = (
            ""
            if quick
            else f"; accuracy {_percent(adam['accuracy'])} against {_percent(gd['accuracy'])} "
            f"and {_percent(momentum['accuracy'])}"
        )
        claims.append(
            Claim(
                f"Adam outperforms gd and momentum: cost {adam['final_cost']:.3f} after "
                f"{len(adam['costs'])} epochs against {gd['final_cost']:.3f} and "
                f"{momentum['final_cost']:.3f}{accuracies}",
                better,
            )
        )
        gap = float(np.max(np.abs(np.subtract(momentum["costs"], gd["costs"]))))
        relative = gap / float(np.min(gd["costs"]))
        claims.append(
            Claim(
                f"momentum's impact is almost negligible: its cost is within {gap:.2g} of gd's "
                f"at every epoch ({100 * relative:.2g}% of gd's lowest cost; under 1% counts)",
                relative < 0.01,
            )
        )
    if "gd-decay" in runs:
        decayed, gd = runs["gd-decay"], runs["gd"]
        claims.append(
            Claim(
                f"decay from learning rate 0.1 ends gd far lower: cost {decayed['final_cost']:.3f} "
                f"against {gd['final_cost']:.3f} at 0.0007",
                decayed["final_cost"] < gd["final_cost"],
            )
        )
    return claims


def _coinciding(runs: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> dict[str, str]:
    """For each curve that lies on an earlier one (at most 1% of the plot's height apart at
    every epoch), the name of that earlier curve."""
    curves = {n: np.asarray(runs[n]["costs"]) for n in names}
    height = max(float(c.max()) for c in curves.values()) - min(
        float(c.min()) for c in curves.values()
    )
    on: dict[str, str] = {}
    for i, name in enumerate(names):
        for earlier in names[:i]:
            if np.max(np.abs(curves[name] - curves[earlier])) <= 0.01 * height:
                on[name] = earlier
                break
    return on


# Wide and faint first, narrow and dashed after: a curve drawn on top of another shows both.
_STYLES = (
    {"lw": 4.0, "alpha": 0.45, "ls": "-"},
    {"lw": 1.6, "alpha": 1.0, "ls": (0, (5, 3))},
    {"lw": 1.6, "alpha": 1.0, "ls": "-"},
    {"lw": 1.6, "alpha": 1.0, "ls": ":"},
    {"lw": 1.6, "alpha": 1.0, "ls": "-."},
)


def _rates(variants: Sequence[Variant]) -> str:
    """The learning rates of `variants` in words, the decayed ones grouped by interval."""
    plain = [v for v in variants if v.decay_interval is None]
    parts = []
    if plain:
        same = len({v.learning_rate for v in plain}) == 1
        each = (
            [f"{plain[0].learning_rate:g}"]
            if same
            else [f"{v.name} {v.learning_rate:g}" for v in plain]
        )
        parts.append(f"learning rate {', '.join(each)}")
    for interval in sorted({v.decay_interval for v in variants if v.decay_interval is not None}):
        decayed = [v for v in variants if v.decay_interval == interval]
        starts = ", ".join(f"{v.name} from {v.learning_rate:g}" for v in decayed)
        parts.append(f"{starts}, after epoch i divided by 1 + floor(i / {interval})")
    return "; ".join(parts)


def _plot(  # noqa: PLR0917 -- private, called once with everything the figure shows
    setting: Setting,
    numbers: Mapping[str, Any],
    runs: Mapping[str, Mapping[str, Any]],
    boundaries: Mapping[str, Mapping[str, Any]],
    points: tuple[Any, Any],
    path: Path,
) -> Path:
    names = [v.name for v in setting.variants]
    cols = 2 if len(names) <= 3 else 3
    fig = new_figure(2, cols, width=4.4, height=3.7)
    axes = fig.subplots(2, cols)
    cost_ax = axes[0, 0]
    on = _coinciding(runs, names)
    notes = []
    for name, style in zip(names, _STYLES, strict=False):
        label = f"{name}: {runs[name]['final_cost']:.3f}"
        if name in on:
            gap = np.max(np.abs(np.subtract(runs[name]["costs"], runs[on[name]]["costs"])))
            label += f" (on {on[name]}'s)"
            notes.append(f"{name} dashed on {on[name]}: at most {gap:.1g} apart")
        epochs = np.arange(1, len(runs[name]["costs"]) + 1)
        cost_ax.plot(epochs, runs[name]["costs"], label=label, **style)
    cost_ax.set_yscale("log")  # the final costs of the decayed runs differ by a few %
    lowest = min(float(np.nanmin(runs[name]["costs"])) for name in names)
    cost_ax.set_ylim(bottom=min(0.1, 0.9 * lowest))  # down to a labelled tick
    cost_ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    cost_ax.yaxis.set_minor_formatter(FormatStrFormatter("%g"))
    cost_ax.tick_params(axis="y", which="minor", labelsize=7)
    cost_ax.set_xlabel("epoch")
    cost_ax.set_ylabel("cost (log scale)")
    cost_ax.set_title("\n".join(["cost per epoch", *notes]), fontsize=9.5)
    cost_ax.legend(fontsize=7.5, loc="best", title="final cost", title_fontsize=8)
    X, y = points
    for ax, name in zip(axes.flat[1:], names, strict=False):
        b = boundaries[name]
        ax.contourf(b["x"], b["y"], b["score"] > 0, levels=1, cmap="coolwarm", alpha=0.4)
        ax.scatter(X[0], X[1], c=y, cmap="coolwarm", s=8, edgecolors="k", linewidths=0.2)
        title = f"{name}: training accuracy {_percent(runs[name]['accuracy'])}"
        if setting.name == "course" and numbers["epochs"] == setting.epochs and not numbers["seed"]:
            title += f" (course {_percent(COURSE_ACCURACY[name])})"
        ax.set_title(title, fontsize=9.5)
        ax.set_xlabel("x1")
        ax.set_ylabel("x2")
    for ax in axes.flat[1 + len(names) :]:
        ax.set_visible(False)
    fig.suptitle(
        f"Optimizers on two moons, setting {setting.name!r}: {numbers['epochs']} epochs, "
        f"mini-batches of {MINI_BATCH_SIZE}\n{_rates(setting.variants)}",
        fontsize=10.5,
    )
    return save_figure(fig, path)


def run(
    *,
    seed: int = 0,
    quick: bool = False,
    out_dir: Path,
    progress: bool = True,
    setting: str = DEFAULT_SETTING,
) -> ExperimentResult:
    """Train the course's model with each variant of `setting` (a key of SETTINGS); write
    optimizers.{png,json,csv} (optimizers-SETTING.* for a setting other than the default).

    numbers: "config" (the setting's sizes), "seed", and per variant "final_cost", "accuracy"
    (training accuracy of the final parameters), "printed_costs" (the cost of the epochs the
    course prints, every 1000th counted from 0, that the run reached) and the learning rate
    of the first and last epoch. The CSV has one row per epoch (1, 2, ...; the course's epoch
    i is row i + 1): each variant's cost, and its learning rate if it decays, to 10
    significant digits (the JSON's numbers are exact).
    """
    if setting not in SETTINGS:  # before check_run_args creates the output directory
        raise ValueError(f"setting must be one of {list(SETTINGS)}, got {setting!r}")
    seed, out = check_run_args(seed, quick, out_dir, progress)
    chosen = SETTINGS[setting]
    epochs = chosen.quick_epochs if quick else chosen.epochs
    X, Y = load_points(chosen, seed)
    runs: dict[str, dict[str, Any]] = {}
    boundaries: dict[str, dict[str, Any]] = {}
    total = epochs * len(chosen.variants)
    with Progress(total, NAME, unit="epochs", enabled=progress) as bar:
        for variant in chosen.variants:
            spec, fitted = train_variant(variant, X, Y, epochs=epochs, seed=seed, progress=bar)
            runs[variant.name] = {
                "costs": fitted.costs,
                "learning_rates": fitted.learning_rates,
                "final_cost": fitted.costs[-1],
                "accuracy": accuracy(spec, fitted.params, NetworkState(), X, Y),
            }
            boundaries[variant.name] = _boundary(spec, fitted.params, X, chosen.grid)
    claims = _claims(chosen, runs, seed, quick)
    numbers: dict[str, Any] = {"config": chosen.sizes(quick), "seed": seed, "epochs": epochs}
    for name, r in runs.items():
        numbers[name] = {
            "final_cost": r["final_cost"],
            "accuracy": r["accuracy"],
            "printed_costs": {str(i): r["costs"][i] for i in range(0, epochs, PRINTED_EVERY)},
            "first_learning_rate": r["learning_rates"][0],
            "last_learning_rate": r["learning_rates"][-1],
        }
    decayed = [v.name for v in chosen.variants if v.decay_interval is not None]
    rows = [
        {
            "epoch": e + 1,
            **{f"{name}_cost": _digits(runs[name]["costs"][e]) for name in runs},
            **{
                f"{name}_learning_rate": _digits(runs[name]["learning_rates"][e])
                for name in decayed
            },
        }
        for e in range(epochs)
    ]
    stem = NAME if setting == DEFAULT_SETTING else f"{NAME}-{setting}"
    files = write_outputs(
        out,
        stem,
        numbers=numbers,
        claims=claims,
        rows=rows,
        plot=lambda path: _plot(chosen, numbers, runs, boundaries, (X, Y[0]), path),
    )
    return ExperimentResult(NAME, numbers, tuple(claims), files)
