"""The hyperparameter-search experiment in quick mode: its files, and the notes' claims on its
numbers (log-scale random search finds a good region; coarse to fine concentrates on it)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from bnref.experiments.common import ExperimentResult
from bnref.experiments.hyperparameter_search import NAME, QUICK, SPACE, run

CHANCE = 0.1  # ten digit classes


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> ExperimentResult:
    return run(seed=0, quick=True, out_dir=tmp_path_factory.mktemp("hp"), progress=False)


def test_writes_png_json_and_csv(result: ExperimentResult) -> None:
    assert result.name == NAME
    assert [p.name for p in result.files] == [f"{NAME}.png", f"{NAME}.json", f"{NAME}.csv"]
    assert result.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(result.data.read_text(encoding="utf-8"))["seed"] == 0
    with result.table.open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 2 * QUICK.n_trials


def test_split_and_trials_are_as_stated(result: ExperimentResult) -> None:
    numbers: dict[str, Any] = dict(result.numbers)
    assert numbers["sizes"]["validation"] == round(0.2 * QUICK.n_pool)  # 60 of 300: no half
    assert numbers["sizes"]["train"] == QUICK.n_pool - numbers["sizes"]["validation"]
    trials = numbers["trials"]
    assert [t["round"] for t in trials] == [0] * QUICK.n_trials + [1] * QUICK.n_trials
    coarse, fine = numbers["space"]
    for name, dist in SPACE.items():
        assert coarse[name] == [dist.low, dist.high]
        assert dist.low <= fine[name][0] <= fine[name][1] <= dist.high  # fine inside coarse
    for t in trials:
        lo, hi = numbers["space"][t["round"]]["learning_rate"]
        assert lo <= t["learning_rate"] <= hi
    assert numbers["best"]["val_accuracy"] == max(t["val_accuracy"] for t in trials)
    coarse_best = max((t for t in trials if t["round"] == 0), key=lambda t: t["val_accuracy"])
    for name in SPACE:  # the fine range holds the coarse round's best trial
        assert fine[name][0] <= coarse_best[name] <= fine[name][1]


def test_log_scale_search_finds_a_good_region(result: ExperimentResult) -> None:
    """The best trial is far above chance while the worst coarse trial is near it: over these
    ranges the hyperparameters decide between learning and not learning."""
    rounds = result.numbers["rounds"]
    assert result.numbers["best"]["val_accuracy"] >= 5 * CHANCE
    assert rounds[0]["worst_val_accuracy"] <= 2 * CHANCE
    assert result.claims[0].holds
    assert result.claims[0].text.startswith("random search on a log scale finds a good region")


def test_coarse_to_fine_concentrates_the_trials(result: ExperimentResult) -> None:
    """The fine round's typical trial beats the coarse round's typical trial."""
    coarse, fine = result.numbers["rounds"]
    assert fine["median_val_accuracy"] > coarse["median_val_accuracy"]
    assert result.claims[1].holds
    assert result.claims[1].text.startswith("coarse to fine concentrates the trials there")


def test_same_seed_same_numbers(result: ExperimentResult, tmp_path: Path) -> None:
    again = run(seed=0, quick=True, out_dir=tmp_path, progress=False)
    assert again.numbers["trials"] == result.numbers["trials"]


def test_rejects_a_bad_seed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="seed"):
        run(seed=-1, quick=True, out_dir=tmp_path, progress=False)
