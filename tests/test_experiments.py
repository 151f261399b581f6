"""The experiments in quick mode: each writes its files, and each course claim holds on its numbers.

The margins asserted are about half the smallest margin measured over seeds 0..3 in quick mode
(see each test), so a change that weakens an effect fails while noise does not.
"""

from __future__ import annotations

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
    ExperimentResult,
    ProgressBar,
    check_run_args,
    fit,
    to_jsonable,
    write_numbers,
    write_table,
)
from bnref.experiments.data import digits_split, two_moons
from reference.minibatch import random_mini_batches
from reference.network import DropoutSpec, NetworkSpec, NetworkState, gradient, init_params
from reference.optimizers import Momentum, make_optimizer
from reference.schedules import schedule_lr_decay
from reference.training import train

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def check_files(result: ExperimentResult, keys: set[str]) -> dict[str, Any]:
    """The PNG is a PNG, the JSON parses as strict JSON and has `keys`; return it."""
    assert result.png.read_bytes()[:8] == PNG_MAGIC
    assert result.png.stat().st_size > 10_000  # a drawn figure, not an empty canvas
    loaded: dict[str, Any] = json.loads(
        result.data.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}")
    )
    assert keys <= set(loaded)
    assert result.data.with_suffix(".csv").stat().st_size > 0
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
def optimizers_numbers(tmp_path_factory: pytest.TempPathFactory) -> Mapping[str, Any]:
    """optimizers, run through the CLI (which is also under test here)."""
    out = tmp_path_factory.mktemp("opt")
    assert cli.main(["optimizers", "--quick", "--out", str(out), "--no-progress"]) == 0
    numbers: Mapping[str, Any] = json.loads((out / "optimizers.json").read_text())
    assert (out / "optimizers.png").read_bytes()[:8] == PNG_MAGIC
    return numbers


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


def test_optimizers_files(optimizers_numbers: Mapping[str, Any]) -> None:
    assert {"config", "seed", *optimizers.VARIANTS} <= set(optimizers_numbers)
    for variant in optimizers.VARIANTS:
        run_ = optimizers_numbers[variant]
        assert set(run_) == {"cost", "final_cost", "learning_rate", "accuracy"}
        assert len(run_["cost"]) == optimizers_numbers["config"]["epochs"]


def test_adam_beats_gradient_descent(optimizers_numbers: Mapping[str, Any]) -> None:
    """Same learning rate and epochs: Adam's final cost is lower than GD's. Quick mode, seeds
    0..2: smallest margin 0.185 (0.527 vs 0.712); asserted 0.09. The decayed GD (lr0 = 0.1)
    ends below plain GD at lr 0.0007, and its learning rate falls by the course's staircase."""
    n = optimizers_numbers
    assert n["adam"]["final_cost"] < n["gd"]["final_cost"] - 0.09
    assert n["gd_decay"]["final_cost"] < n["gd"]["final_cost"]
    interval = n["config"]["time_interval"]
    expected = [schedule_lr_decay(0.1, e, 1.0, interval) for e in range(n["config"]["epochs"])]
    assert n["gd_decay"]["learning_rate"] == expected


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
        schedule=lambda e: 0.5 / (1 + e),
        evaluate=evaluate,
    )
    assert result.metrics["n"] == (1.0, 2.0, 3.0, 4.0, 5.0)  # before training, then per epoch
    assert result.learning_rates == (0.5, 0.25, 0.5 / 3, 0.125)


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
    (measured: epoch 2's second mini-batch of 40, 40, 20); the bar still reaches its end."""
    split = digits_split(100, 0)
    spec = NetworkSpec(64, [100] * 5, 10, weight_init=1.0)
    params = init_params(spec, np.random.default_rng(0))
    opt = make_optimizer("sgd", learning_rate=0.1)
    bar = ProgressBar(20, "test", enabled=False)
    result = fit(
        spec,
        params,
        split.X_train,
        split.y_train,
        optimizer=opt,
        num_epochs=20,
        mini_batch_size=40,
        evaluate=lambda theta, state: {"one": float(len(theta) > 0) + 0 * len(state.batch_norm)},
        bar=bar,
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
    """A schedule changes the learning rate between epochs and keeps the optimizer's state:
    fit equals a replay by hand, bit for bit (m = 40 in mini-batches of 16, 16, 8)."""
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
        schedule=lambda e: 0.5 / (1 + e),
    )
    theta, opt_state, costs = params, opt.init(params), []
    for epoch in (1, 2, 3):
        at_rate = dataclasses.replace(opt, learning_rate=0.5 / epoch)
        weighted = []
        for batch in random_mini_batches(X, y, 16, 5 + epoch, axis=0):
            g = gradient(spec, theta, NetworkState(), batch.X, batch.Y)
            weighted.append(g.loss * len(batch.X))
            theta, opt_state = at_rate.step(theta, g.grads, opt_state)
        costs.append(math.fsum(weighted) / 40)
    assert result.costs == tuple(costs)
    assert all(np.array_equal(result.params[k], theta[k]) for k in params)
    assert result.learning_rates == (0.5, 0.25, 0.5 / 3)


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


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_only_on_a_terminal() -> None:
    quiet = io.StringIO()
    with ProgressBar(3, "job", stream=quiet) as bar:
        bar.update()
    assert quiet.getvalue() == ""
    tty = FakeTerminal()
    with ProgressBar(2, "job", stream=tty) as bar:
        bar.update()
        bar.update(5)  # clamped to the total
    assert "job [" in tty.getvalue()
    assert "2/2" in tty.getvalue()
    assert tty.getvalue().endswith("\n")
    off = FakeTerminal()
    with ProgressBar(2, "job", stream=off, enabled=False) as bar:
        bar.update()
    assert off.getvalue() == ""
    with pytest.raises(ValueError, match="total"):
        ProgressBar(0, "job")


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
