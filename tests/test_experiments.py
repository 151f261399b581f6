"""The experiments in quick mode: each writes its files, and each course claim holds on its numbers.

The margins asserted are about half the smallest margin measured over seeds 0..3 in quick mode
(see each test), so a change that weakens an effect fails while noise does not. The optimizers
experiment reproduces the course's own numbers: in quick mode its printed costs of the first
1001 epochs, exactly. The full runs take minutes (optimizers alone 10000 epochs of three
optimizers, about 45 s of one core), more than the suite's budget: `nox -s figures` runs them
and fails if a claim of theirs does not hold (docs/generate_figures.py).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from threadpoolctl import threadpool_info  # type: ignore[import-untyped]  # no py.typed

from bnref.experiments import bn_init_scale, cli, optimizers, overfitting
from bnref.experiments.common import (
    Claim,
    ExperimentResult,
    check_run_args,
    fit,
    to_jsonable,
    write_numbers,
    write_table,
)
from bnref.experiments.data import course_moons, digits_split, two_moons
from bnref.progress import Progress
from reference.minibatch import random_mini_batches
from reference.network import DropoutSpec, NetworkSpec, NetworkState, gradient, init_params
from reference.optimizers import Momentum, make_optimizer
from reference.training import model, train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_files(result: ExperimentResult, keys: set[str]) -> dict[str, Any]:
    """The files are the experiment's PNG, JSON and CSV, named after it; the PNG is a PNG,
    the JSON parses as strict JSON, has `keys` and the claims; return it."""
    assert [p.name for p in result.files] == [f"{result.name}.{x}" for x in ("png", "json", "csv")]
    assert result.png.read_bytes()[:8] == PNG_MAGIC
    assert result.png.stat().st_size > 10_000  # a drawn figure, not an empty canvas
    loaded: dict[str, Any] = json.loads(
        result.data.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}")
    )
    assert keys <= set(loaded)
    assert loaded["claims"] == [{"text": c.text, "holds": c.holds} for c in result.claims]
    assert result.table.stat().st_size > 0
    return loaded


@pytest.fixture(scope="module")
def bn_result(tmp_path_factory: pytest.TempPathFactory) -> ExperimentResult:
    out = tmp_path_factory.mktemp("bn")
    return bn_init_scale.run(seed=0, quick=True, out_dir=out, progress=False)


@pytest.fixture(scope="module")
def overfit_result(tmp_path_factory: pytest.TempPathFactory) -> ExperimentResult:
    out = tmp_path_factory.mktemp("overfit")
    return overfitting.run(seed=0, quick=True, out_dir=out, progress=False)


@pytest.fixture(scope="module")
def optimizers_run(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Mapping[str, Any], list[dict[str, str]], str]:
    """optimizers in the course's setting, run through the CLI (which is also under test
    here): its JSON, its CSV rows and what it printed."""
    out = tmp_path_factory.mktemp("opt")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert cli.main(["optimizers", "--quick", "--out", str(out), "--no-progress"]) == 0
    numbers: Mapping[str, Any] = json.loads((out / "optimizers.json").read_text())
    assert (out / "optimizers.png").read_bytes()[:8] == PNG_MAGIC
    with (out / "optimizers.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return numbers, rows, printed.getvalue()


def test_bn_init_scale_files(bn_result: ExperimentResult) -> None:
    loaded = check_files(bn_result, {"scales", "config", "data", "seed", "with_bn", "without_bn"})
    assert loaded["scales"] == pytest.approx(list(np.logspace(0, -4, 16)[::5]), rel=1e-15)
    for key in ("with_bn", "without_bn"):
        run_ = loaded[key]
        assert set(run_) == {
            "final_train_accuracy",
            "final_test_accuracy",
            "train_accuracy",
            "test_accuracy",
            "diverged_at",
        }
        assert len(run_["train_accuracy"]) == len(loaded["scales"])
        assert all(len(c) == loaded["config"]["epochs"] + 1 for c in run_["train_accuracy"])


def test_bn_tolerates_small_initial_scales(bn_result: ExperimentResult) -> None:
    """With BN the final test accuracy at the two smallest scales (2.2e-3, 1e-4) is far above
    the network without BN, which stays at chance (~0.1). Quick mode, seeds 0..3: the smallest
    margin measured was 0.28 (0.378 vs 0.092 at 1e-4); asserted: 0.15."""
    with_bn = bn_result.numbers["with_bn"]["final_test_accuracy"]
    without = bn_result.numbers["without_bn"]["final_test_accuracy"]
    for i in (-2, -1):
        assert with_bn[i] > without[i] + 0.15
        assert without[i] < 0.2  # no learning without BN at these scales


def test_bn_init_scale_claims(bn_result: ExperimentResult) -> None:
    """Quick mode claims the small end only (four scales, 8 epochs: at scale 1 even batch norm
    has not learned yet), and it holds."""
    (claim,) = bn_result.claims
    assert claim.holds
    assert claim.text.startswith(
        "without batch norm too small a scale does not learn: at the 2 smallest scales"
    )


def test_overfitting_files(overfit_result: ExperimentResult) -> None:
    loaded = check_files(overfit_result, {"config", "seed", *overfitting.VARIANTS})
    config = loaded["config"]
    epochs, tail, every = config["epochs"], config["tail"], config["eval_every"]
    # scored: every `eval_every`-th epoch and every tail epoch; the others null
    expected = [e for e in range(epochs + 1) if e % every == 0 or e > epochs - tail]
    assert every > 1  # quick mode skips epochs, so the check below has teeth
    for variant in overfitting.VARIANTS:
        run_ = loaded[variant]
        assert {"train_accuracy", "test_accuracy", "gap", "final_train_accuracy"} <= set(run_)
        for key in ("train_accuracy", "test_accuracy"):
            assert [e for e, v in enumerate(run_[key]) if v is not None] == expected
        train, test = run_["train_accuracy"][-tail:], run_["test_accuracy"][-tail:]
        gaps = [a - b for a, b in zip(train, test, strict=True)]
        # the same `tail` differences in [-1, 1], summed by np.mean and by fsum: they differ
        # by a few ulp(1) = 2.2e-16 at most, far inside 1e-12
        assert run_["gap"] == pytest.approx(math.fsum(gaps) / tail, abs=1e-12)


def test_regularisation_narrows_the_gap(overfit_result: ExperimentResult) -> None:
    """No regularisation: training accuracy ~1 and the largest train - test gap; weight decay
    and dropout both have a smaller gap. Quick mode, seeds 0..3 (re-measured with BLAS on one
    thread, as `fit` runs it), gaps none / weight decay / dropout:
    0.064 / 0.039 / 0.039, 0.070 / 0.034 / 0.021, 0.064 / 0.048 / 0.046, 0.074 / 0.016 / 0.025;
    smallest margin 0.0156 (seed 2, weight decay); asserted: about half, 0.008. The plain
    network's final training accuracy was 1.000, 0.993, 1.000, 1.000 (asserted: >= 0.99)."""
    numbers = overfit_result.numbers
    assert numbers["none"]["final_train_accuracy"] >= 0.99
    for variant in ("weight_decay", "dropout"):
        assert numbers[variant]["gap"] < numbers["none"]["gap"] - 0.008


def test_overfitting_claims(overfit_result: ExperimentResult) -> None:
    texts = [c.text.split(":")[0] for c in overfit_result.claims]
    assert texts == [
        "without regularisation the network overfits",
        "weight decay narrows the gap",
        "dropout narrows the gap",
    ]
    assert all(c.holds for c in overfit_result.claims)


def test_optimizers_files(optimizers_run: tuple[Mapping[str, Any], Any, str]) -> None:
    numbers, rows, _ = optimizers_run
    names = [v.name for v in optimizers.SETTINGS["course"].variants]
    assert names == ["gd", "momentum", "adam"]
    assert {"config", "seed", "epochs", "claims", *names} <= set(numbers)
    assert numbers["config"]["setting"] == "course"
    assert numbers["epochs"] == 1001  # the course's epochs 0..1000
    for name in names:
        assert set(numbers[name]) == {
            "final_cost",
            "accuracy",
            "printed_costs",
            "first_learning_rate",
            "last_learning_rate",
        }
        assert numbers[name]["first_learning_rate"] == numbers[name]["last_learning_rate"]
    assert [int(r["epoch"]) for r in rows] == list(range(1, 1002))
    assert list(rows[0]) == ["epoch", "gd_cost", "momentum_cost", "adam_cost"]
    final = numbers["adam"]["final_cost"]
    assert float(rows[-1]["adam_cost"]) == float(f"{final:.10g}")  # the CSV keeps 10 digits


def test_optimizers_reproduce_the_course_printed_costs(
    optimizers_run: tuple[Mapping[str, Any], Any, str],
) -> None:
    """The course prints the cost of its epochs 0 and 1000 (counted from 0) to 6 decimals;
    the quick run's are the same: the same data, initialisation, mini-batches and updates."""
    numbers, _, _ = optimizers_run
    for name, printed in optimizers.COURSE_COSTS["course"].items():
        ours = numbers[name]["printed_costs"]
        assert sorted(ours) == ["0", "1000"]
        assert [f"{ours[k]:.6f}" for k in ("0", "1000")] == list(printed[:2])


def test_optimizers_claims_and_what_is_printed(
    optimizers_run: tuple[Mapping[str, Any], Any, str],
) -> None:
    """Quick mode claims the printed costs, Adam's lead and momentum's closeness to gd, and
    all three hold; the CLI prints each claim line with its verdict, then the three files.
    Adam's cost at the course's epoch 1000 is 0.168 against gd's 0.668 (course: 0.167845 and
    0.668101), and momentum's cost stays within 8.1e-05 of gd's."""
    numbers, _, printed = optimizers_run
    claims = [Claim(c["text"], c["holds"]) for c in numbers["claims"]]
    assert len(claims) == 3
    assert all(c.holds for c in claims)
    assert "6 of 6" in claims[0].text
    assert claims[1].text.startswith("Adam outperforms gd and momentum: cost 0.168")
    lines = printed.splitlines()
    assert lines[0].startswith("optimizers: done in ")
    assert lines[1 : 1 + len(claims)] == [f"  {c.line}" for c in claims]
    assert lines[1 + len(claims)] == "files written:"
    assert [Path(line.strip()).name for line in lines[2 + len(claims) :]] == [
        "optimizers.png",
        "optimizers.json",
        "optimizers.csv",
    ]
    assert numbers["adam"]["final_cost"] < numbers["gd"]["final_cost"] - 0.4


def test_optimizers_train_as_the_course_model() -> None:
    """Each plain variant is `reference.training.model` with the course's arguments: the same
    costs and parameters, bit for bit (5 epochs)."""
    X, Y = optimizers.load_points(optimizers.SETTINGS["course"], 0)
    for variant in optimizers.PLAIN:
        spec, fitted = optimizers.train_variant(variant, X, Y, epochs=5, seed=0)
        course = model(X, Y, list(optimizers.LAYERS), variant.optimizer, num_epochs=5)
        assert spec == course.spec
        assert fitted.costs == course.costs
        assert set(fitted.params) == set(course.parameters)
        assert all(np.array_equal(fitted.params[k], v) for k, v in course.parameters.items())


def test_optimizers_decay_follows_the_course_schedule() -> None:
    """The course's gd with decay (learning_rate0 0.1, schedule_lr_decay every 1000 epochs)
    sets the rate after each epoch, so its epoch numbered 1000 still runs at 0.1: its printed
    costs of epochs 0 and 1000, 0.701091 and 0.127161, are ours to 6 decimals. A schedule one
    epoch ahead gives 0.126687 at epoch 1000 (measured)."""
    setting = optimizers.SETTINGS["course-decay"]
    X, Y = optimizers.load_points(setting, 0)
    gd = setting.variants[0]
    _, fitted = optimizers.train_variant(gd, X, Y, epochs=1002, seed=0)
    printed = optimizers.COURSE_COSTS["course-decay"]["gd"]
    assert [f"{fitted.costs[i]:.6f}" for i in (0, 1000)] == list(printed[:2])
    rates = fitted.learning_rates
    assert rates[:1001] == (0.1,) * 1001
    assert rates[1001] == 0.05  # the course: "learning rate after epoch 1000: 0.050000"


def test_optimizers_short_setting(tmp_path: Path) -> None:
    """The former setting stays available: make_moons(random_state=seed), the decayed
    variants beside the plain ones; Adam beats gd, and gd from 0.1 ends below gd at 0.0007.
    Quick mode, seeds 0..2: Adam's smallest margin over gd 0.185 (0.527 vs 0.712); asserted
    0.09."""
    result = optimizers.run(quick=True, out_dir=tmp_path, progress=False, setting="short")
    n = result.numbers
    assert [p.name for p in result.files] == [
        f"optimizers-short.{x}" for x in ("png", "json", "csv")
    ]
    assert n["adam"]["final_cost"] < n["gd"]["final_cost"] - 0.09
    assert n["gd-decay"]["final_cost"] < n["gd"]["final_cost"]
    assert all(c.holds for c in result.claims)
    X, _ = two_moons(0)
    assert np.array_equal(optimizers.load_points(optimizers.SETTINGS["short"], 0)[0], X.T)
    with result.table.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert {float(r["gd-decay_learning_rate"]) for r in rows} == {0.1}  # 150 < 400 epochs
    with pytest.raises(ValueError, match=r"^setting must be one of \['course', "):
        optimizers.run(quick=True, out_dir=tmp_path, progress=False, setting="nope")


def test_course_moons_are_the_course_loader() -> None:
    """np.random.seed(3); make_moons(n_samples=300, noise=.2), the course's load_dataset, and
    without touching NumPy's global RandomState."""
    from sklearn.datasets import make_moons  # noqa: PLC0415 -- only this test compares with it

    saved = np.random.get_state()  # noqa: NPY002 -- restored below
    try:
        np.random.seed(3)  # noqa: NPY002 -- the course's own call, compared here
        X, y = make_moons(n_samples=300, noise=0.2)
        untouched = np.random.random()  # noqa: NPY002 -- the global stream's next draw
        np.random.seed(3)  # noqa: NPY002
        make_moons(n_samples=300, noise=0.2)
        ours_X, ours_y = course_moons()
        after = np.random.random()  # noqa: NPY002 -- the same draw: course_moons took none
    finally:
        np.random.set_state(saved)  # noqa: NPY002
    assert after == untouched
    assert np.array_equal(ours_X, X)
    assert np.array_equal(ours_y, y)


def test_fit_matches_reference_train() -> None:
    """Without a schedule, fit is train's loop: the same costs and parameters, bit for bit
    (dropout on, so the masks' random stream is compared too)."""
    split = digits_split(120, 1)
    spec = NetworkSpec(64, [16, 16], 10, dropout=DropoutSpec(0.2))
    params = init_params(spec, np.random.default_rng(2))
    opt = make_optimizer("adam", learning_rate=1e-3)
    ours = fit(spec, params, split.X_train, split.y_train, optimizer=opt, num_epochs=3, seed=4)
    ref = train(spec, params, split.X_train, split.y_train, optimizer=opt, num_epochs=3, seed=4)
    assert ours.costs == ref.costs
    assert all(np.array_equal(ours.params[k], ref.params[k]) for k in ref.params)
    assert ours.diverged_at is None
    assert ours.learning_rates == (1e-3,) * 3


def test_fit_runs_blas_on_one_thread_and_restores_it() -> None:
    """`fit` limits BLAS to one thread while it trains and evaluates, then restores it."""
    before = [info["num_threads"] for info in threadpool_info() if info["user_api"] == "blas"]
    seen: list[list[int]] = []

    def evaluate(_theta: Any, _state: Any) -> Mapping[str, float]:
        seen.append([i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"])
        return {}

    X, y = two_moons(0, n_samples=20)
    spec = NetworkSpec(2, [3], 2)
    opt = make_optimizer("sgd", learning_rate=0.1)
    params = init_params(spec, np.random.default_rng(0))
    fit(spec, params, X, y, optimizer=opt, num_epochs=2, evaluate=evaluate)
    assert before  # NumPy's BLAS is visible to threadpoolctl
    assert seen == [[1] * len(before)] * 3  # before training and after each of 2 epochs
    assert [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"] == before


def test_fit_records_metrics_and_schedule() -> None:
    X, y = two_moons(0, n_samples=40)
    spec = NetworkSpec(2, [4], 2)
    params = init_params(spec, np.random.default_rng(0))
    calls: list[int] = []

    def evaluate(theta: Any, state: Any) -> Mapping[str, float]:
        assert set(theta) == set(params)
        assert state.batch_norm == ()
        calls.append(1)
        return {"n": float(len(calls))}

    result = fit(
        spec,
        params,
        X,
        y,
        optimizer=make_optimizer("momentum", learning_rate=0.5),
        num_epochs=4,
        schedule=lambda e: 0.3 / (1 + e),
        evaluate=evaluate,
    )
    assert result.metrics["n"] == (1.0, 2.0, 3.0, 4.0, 5.0)  # before training, then per epoch
    # the first epoch at the optimizer's rate, then schedule(0), schedule(1), schedule(2)
    assert result.learning_rates == (0.5, 0.3, 0.15, 0.3 / 3)


def test_fit_rejects_a_schedule_for_a_non_dataclass_optimizer() -> None:
    class Plain:
        name = "plain"

        def init(self, params: Any) -> None:
            return None

        def step(self, params: Any, grads: Any, state: Any) -> Any:
            return params, state

    X, y = two_moons(0, n_samples=20)
    spec = NetworkSpec(2, [3], 2)
    with pytest.raises(TypeError, match="optimizer must be a dataclass"):
        fit(
            spec,
            init_params(spec, np.random.default_rng(0)),
            X,
            y,
            optimizer=Plain(),
            num_epochs=1,
            schedule=lambda e: 0.1 / (1 + e),
        )


def test_fit_stops_a_diverged_run() -> None:
    """Huge weights and learning rate overflow: recorded as diverged, later entries NaN; the
    parameters are those after the last complete epoch, not those of the overflowing step
    (measured: epoch 2's second mini-batch of 40, 40, 20); the progress still reaches its end."""
    split = digits_split(100, 0)
    spec = NetworkSpec(64, [100] * 5, 10, weight_init=1.0)
    params = init_params(spec, np.random.default_rng(0))
    opt = make_optimizer("sgd", learning_rate=0.1)
    bar = Progress(20, "test", unit="epochs", enabled=False)
    result = fit(
        spec,
        params,
        split.X_train,
        split.y_train,
        optimizer=opt,
        num_epochs=20,
        mini_batch_size=40,
        evaluate=lambda theta, state: {"one": float(len(theta) > 0) + 0 * len(state.batch_norm)},
        progress=bar,
    )
    d = result.diverged_at
    assert d is not None
    assert d > 1  # so that the last complete epoch below is one of training
    assert all(math.isfinite(c) for c in result.costs[: d - 1])
    assert all(math.isnan(c) for c in result.costs[d - 1 :])
    assert result.metrics["one"][:d] == (1.0,) * d  # before training and epochs 1..d-1
    assert all(math.isnan(v) for v in result.metrics["one"][d:])
    assert result.learning_rates[:d] == (0.1,) * d  # the diverged epoch began at its rate
    assert all(math.isnan(r) for r in result.learning_rates[d:])
    before = train(
        spec,
        params,
        split.X_train,
        split.y_train,
        optimizer=opt,
        num_epochs=d - 1,
        mini_batch_size=40,
    )
    assert all(np.array_equal(result.params[k], before.params[k]) for k in params)
    assert bar.done == 20


def test_fit_follows_the_schedule_epoch_by_epoch() -> None:
    """A schedule changes the learning rate between epochs as the course's loop does (the
    first epoch at the optimizer's rate; after the epoch the course numbers i, the rate
    schedule(i)) and keeps the optimizer's state: fit equals a replay by hand, bit for bit
    (m = 40 in mini-batches of 16, 16, 8)."""
    X, y = two_moons(0, n_samples=40)
    spec = NetworkSpec(2, [4], 2)
    params = init_params(spec, np.random.default_rng(0))
    opt = Momentum(learning_rate=0.5, beta=0.9)
    result = fit(
        spec,
        params,
        X,
        y,
        optimizer=opt,
        num_epochs=3,
        mini_batch_size=16,
        seed=5,
        schedule=lambda e: 0.3 / (1 + e),
    )
    theta, opt_state, costs = params, opt.init(params), []
    for epoch, rate in ((1, 0.5), (2, 0.3), (3, 0.15)):
        at_rate = dataclasses.replace(opt, learning_rate=rate)
        weighted = []
        for batch in random_mini_batches(X, y, 16, 5 + epoch, axis=0):
            g = gradient(spec, theta, NetworkState(), batch.X, batch.Y)
            weighted.append(g.loss * len(batch.X))
            theta, opt_state = at_rate.step(theta, g.grads, opt_state)
        costs.append(math.fsum(weighted) / 40)
    assert result.costs == tuple(costs)
    assert all(np.array_equal(result.params[k], theta[k]) for k in params)
    assert result.learning_rates == (0.5, 0.3, 0.15)


def test_json_and_csv_writers(tmp_path: Path) -> None:
    numbers = {"a": np.float64(np.nan), "b": np.arange(3), "c": (np.int64(2), math.inf)}
    assert to_jsonable(numbers) == {"a": None, "b": [0, 1, 2], "c": [2, None]}
    path = write_numbers(numbers, tmp_path / "n.json")
    assert json.loads(path.read_text()) == {"a": None, "b": [0, 1, 2], "c": [2, None]}
    table = write_table([{"x": 1, "y": 2.5}, {"x": 2, "y": np.nan}], tmp_path / "t.csv")
    assert table.read_text().splitlines() == ["x,y", "1,2.5", "2,"]
    with pytest.raises(ValueError, match="rows"):
        write_table([], tmp_path / "e.csv")
    with pytest.raises(ValueError, match=r"rows\[1\]"):
        write_table([{"x": 1}, {"y": 2}], tmp_path / "e.csv")


def test_report_says_claims_then_files(tmp_path: Path) -> None:
    result = ExperimentResult(
        "demo",
        {},
        (Claim("a holds, 0.9", True), Claim("b, 0.1", False)),
        (tmp_path / "demo.png", tmp_path / "demo.json"),
    )
    assert cli.report(result, 1.25).splitlines() == [
        "demo: done in 1.2 s",
        "  a holds, 0.9: claim holds",
        "  b, 0.1: claim does not hold",
        "files written:",
        f"  {tmp_path / 'demo.png'}",
        f"  {tmp_path / 'demo.json'}",
    ]


def test_check_run_args(tmp_path: Path) -> None:
    assert check_run_args(3, True, tmp_path / "new", False) == (3, tmp_path / "new")
    assert (tmp_path / "new").is_dir()
    with pytest.raises(ValueError, match="seed"):
        check_run_args(-1, True, tmp_path, False)
    with pytest.raises(TypeError, match="quick"):
        check_run_args(0, 1, tmp_path, False)
    with pytest.raises(TypeError, match="progress"):
        check_run_args(0, True, tmp_path, "yes")
    with pytest.raises(TypeError, match="out_dir"):
        check_run_args(0, True, 5, False)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        check_run_args(0, True, tmp_path / "file", False)


def test_cli_list(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in ("bn-init-scale", "overfitting", "optimizers", "hyperparameter-search"):
        assert name in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["nope"], "unknown experiment 'nope'"),
        ([], "give an experiment NAME"),
        (["optimizers", "--data", "x.npz"], "--data is only for bn-init-scale"),
        (["overfitting", "--setting", "course"], "--setting is only for optimizers"),
        (["optimizers", "--setting", "nope", "--quick"], "setting must be one of"),
        (["optimizers", "--seed", "x"], "invalid int value"),
    ],
)
def test_cli_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_bad_data_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    argv = ["bn-init-scale", "--quick", "--data", str(bad), "--out", str(tmp_path)]
    assert cli.main([*argv, "--no-progress"]) == 2
    assert "bad.npz" in capsys.readouterr().err


def test_cli_bn_init_scale_on_a_tiny_mnist(tmp_path: Path) -> None:
    """--data reaches the loader: a tiny npz in MNIST's layout runs end to end."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(
        path,
        x_train=rng.integers(0, 256, (40, 6, 6), dtype=np.uint8),
        y_train=np.arange(40, dtype=np.uint8) % 10,
        x_test=rng.integers(0, 256, (20, 6, 6), dtype=np.uint8),
        y_test=np.arange(20, dtype=np.uint8) % 10,
    )
    out = tmp_path / "out"
    argv = ["bn-init-scale", "--quick", "--data", str(path), "--out", str(out), "--no-progress"]
    assert cli.main(argv) == 0
    numbers = json.loads((out / "bn-init-scale.json").read_text())
    assert numbers["data"] == f"MNIST from {path}"
    assert (out / "bn-init-scale.png").read_bytes()[:8] == PNG_MAGIC
