"""`mutmut` with each mutant's tests limited to its module's own test files, and the accepted
equivalent mutants left out.

mutmut 3 records which tests reach each function (its "stats" run) and runs only those against
a mutant of that function. For the core functions that is most of the suite: every property test
calls `batch_norm_forward` and the input checks, so a surviving mutant there would cost the whole
suite, and the session must finish within 60 minutes on two cores. TESTS_OF maps each module to
the test files that state its facts; a mutant meets only the recorded tests that lie in its
module's files. A module not listed keeps every test that reaches it.

A mutant named in tools/mutation_accepted.txt has been shown equivalent (the file says why) and
is not run again unless named exactly on the command line; the report counts it as accepted.
An entry counts only while its mutant still makes the change recorded by its fingerprint
(tools/mutation_accepted.py): a renumbered or changed mutant is run like any other.

A mutant's tests run fastest first (mutmut stops at the first failure), under the `mutation`
Hypothesis profile: the `ci` profile's derandomized examples without shrinking. mutmut sorts a
mutant's node IDs that way, but pytest 9 runs the node IDs it is given grouped by file, in path
order; `_InGivenOrder` restores the order given. Without it, a batchnorm mutant that a rejection
test kills in 0.01 s first ran every test of test_accuracy.py (measured: 37 s against 3.7 s).

The filters act on mutmut's in-memory tables after they are loaded and are never written back,
so the cached stats stay those of the whole selection. They rely on
`mutmut.__main__.collect_or_load_stats`, `mutmut.__main__.collect_source_file_mutation_data` and
`mutmut.state.state().tests_by_mangled_function_name` (mutmut 3.8); the `mutation` extra pins
that version range.

Usage: python tools/mutation_run.py run [--max-children N] [MUTANT_GLOB ...] (any mutmut command).
"""

from __future__ import annotations

import os
import sys
import tomllib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from mutation_accepted import ACCEPTED, mutmut_diff, read_accepted, verified  # tools/, here
from mutmut import __main__ as mutmut_main
from mutmut.runners.harness import PytestRunner
from mutmut.state import state

_LAYER_GRADIENTS = (
    "tests/test_layer_gradients.py",
    "tests/test_batch_norm_layer_gradients.py",
    "tests/test_dropout.py",
)
_VALIDATION = (
    "tests/test_batchnorm_validation.py",
    "tests/test_gradcheck.py",
    "tests/test_data_split.py",
    "tests/test_hyperparameter_search.py",
    "tests/test_sampling_laws.py",
    "tests/test_minibatch.py",
    "tests/test_schedules.py",
    "tests/test_conventions.py",
    "tests/test_documented_defaults.py",
    "tests/test_sharded.py",
    "tests/test_ghost.py",
    "tests/test_layers.py",
    *_LAYER_GRADIENTS,
    "tests/test_optimizers.py",
    "tests/test_optimizer_invariants.py",
)
_LAYERS = (
    "tests/test_layers.py",
    *_LAYER_GRADIENTS,
    "tests/test_network.py",
    "tests/test_network_gradient.py",
    "tests/test_documented_defaults.py",
)
_OPTIMIZERS = (
    "tests/test_optimizers.py",
    "tests/test_optimizer_invariants.py",
    "tests/test_documented_defaults.py",
)

TESTS_OF: dict[str, tuple[str, ...]] = {
    "reference._validation": _VALIDATION,
    "reference.batchnorm": (
        "tests/test_batchnorm_validation.py",
        "tests/test_batchnorm_values.py",
        "tests/test_batchnorm_props.py",
        "tests/test_fast.py",
        "tests/test_accuracy.py",
        "tests/test_gradient_props.py",
        "tests/test_documented_defaults.py",
    ),
    "reference.batchnorm_graph": ("tests/test_accuracy.py", "tests/test_batchnorm_values.py"),
    "reference.conventions": (
        "tests/test_conventions.py",
        "tests/test_running_stats.py",
        "tests/test_documented_defaults.py",
    ),
    "reference.data_split": ("tests/test_data_split.py",),
    "reference.ghost": (
        "tests/test_ghost.py",
        "tests/test_distributed_agreement.py",
        "tests/test_documented_defaults.py",
    ),
    "reference.gradcheck": ("tests/test_gradcheck.py", "tests/test_gradient_props.py"),
    "reference.hyperparameter_search": (
        "tests/test_hyperparameter_search.py",
        "tests/test_sampling_laws.py",
    ),
    "reference.minibatch": (
        "tests/test_minibatch.py",
        "tests/test_data_split.py",
        "tests/test_documented_defaults.py",
    ),
    "reference.network": (
        "tests/test_network.py",
        "tests/test_network_gradient.py",
        "tests/test_training.py",
    ),
    "reference.running_stats": (
        "tests/test_running_stats.py",
        "tests/test_layers.py",
        "tests/test_batch_norm_layer_gradients.py",
        "tests/test_documented_defaults.py",
    ),
    "reference.schedules": ("tests/test_schedules.py", "tests/test_documented_defaults.py"),
    "reference.sharded": ("tests/test_sharded.py", "tests/test_distributed_agreement.py"),
    # The scaling near the float64 limit, reached through batchnorm, sharded and their tests.
    "reference.float_range": (
        "tests/test_batchnorm_values.py",
        "tests/test_batchnorm_validation.py",
        "tests/test_sharded.py",
    ),
    "reference.training": ("tests/test_training.py", "tests/test_documented_defaults.py"),
    **{
        f"reference.layers.{m}": _LAYERS
        for m in ("activations", "affine", "batch_norm_layer", "dropout", "losses", "weight_decay")
    },
    **{
        f"reference.optimizers.{m}": _OPTIMIZERS
        for m in ("_common", "adam", "adaptive", "course", "momentum")
    },
    "reference.optimizers": _OPTIMIZERS,
}

# The stats run and the clean run cover these files only: every file a module above names.
TEST_SELECTION = sorted({f for files in TESTS_OF.values() for f in files})


def module_of(mangled: str) -> str:
    """`reference.batchnorm` of `reference.batchnorm.x_f` or `reference.m.xǁClassǁmethod`."""
    head, _, _ = mangled.partition(".x")
    return head


def limit_to_module_tests(tests_by_function: dict[str, Any], duration: Mapping[str, float]) -> None:
    """Keep, for each function of a module in TESTS_OF, only the tests in that module's files,
    and list every function's tests fastest first.

    mutmut runs a mutant's tests with -x in the order given: a killed mutant usually fails a
    quick test (a value, a rejection), and reaching it after the slow properties cost the most.
    """
    for function, tests in tests_by_function.items():
        files = TESTS_OF.get(module_of(function))
        kept = [t for t in tests if files is None or t.split("::")[0] in files]
        tests_by_function[function] = sorted(kept, key=lambda t: (duration.get(t, 0.0), t))


def _limit_tests(original: Callable[..., None]) -> Callable[..., None]:
    def collect_then_limit(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        limit_to_module_tests(state().tests_by_mangled_function_name, state().duration_by_test)

    return collect_then_limit


def _skip_accepted(original: Callable[..., Any], named: set[str]) -> Callable[..., Any]:
    entries = read_accepted(ACCEPTED)

    def collect_without_accepted(*args: Any, **kwargs: Any) -> Any:
        mutants, by_path = original(*args, **kwargs)  # mutants/ is up to date from here on
        accepted = verified(entries, mutmut_diff) - named
        for name in sorted(set(entries) - accepted - named):
            print(f"accepted entry not verified, run: {name} (tools/mutation_accepted.py stamp)")
        return [m for m in mutants if m[1] not in accepted], by_path

    return collect_without_accepted


# Where each killed mutant's child writes the test that failed (the file is named after the
# mutant); absolute, since the children run in mutants/.
KILLERS = Path.cwd() / "mutants" / "killers"
_KILLERS_TRIED = 8  # a function's last killers tried first; each costs a test when none kills


class _InGivenOrder:
    """A pytest plugin: run the collected tests in the order their node IDs were given, and
    record the first test that fails against a mutant in KILLERS."""

    def __init__(self, params: Sequence[str]) -> None:
        self.rank = {param: i for i, param in enumerate(params)}

    @pytest.hookimpl(trylast=True)  # after every other plugin has chosen and ordered the items
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        # A stable sort: items not named one by one (whole files) keep pytest's order, last.
        items.sort(key=lambda item: self.rank.get(item.nodeid, len(self.rank)))

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        mutant = os.environ.get("MUTANT_UNDER_TEST", "")  # set by mutmut in the child
        if report.failed and "__mutmut_" in mutant:
            function = KILLERS / mutant.rpartition("__mutmut_")[0]
            function.mkdir(parents=True, exist_ok=True)
            (function / mutant).write_text(report.nodeid, encoding="utf-8")


def killers_first(mutant: str, tests: Sequence[str], killers: Path = KILLERS) -> list[str]:
    """`tests` with the tests that killed this mutant's function's other mutants first, the
    latest first, up to _KILLERS_TRIED of them; the rest in the given order (fastest first).

    The mutants of a function mostly die on the same test, and often on one late in the
    fastest-first order (the first test whose input the mutation changes), after minutes of
    passing properties.
    """
    function = killers / mutant.rpartition("__mutmut_")[0]
    found = function.iterdir() if function.is_dir() else iter(())
    latest = sorted(found, key=lambda f: f.stat().st_mtime_ns, reverse=True)
    own = set(tests)
    names = (f.read_text(encoding="utf-8") for f in latest)
    first = list(dict.fromkeys(t for t in names if t in own))[:_KILLERS_TRIED]
    chosen = set(first)
    return [*first, *(t for t in tests if t not in chosen)]


def _in_given_order(original: Callable[..., int]) -> Callable[..., int]:
    def execute_pytest(self: PytestRunner, params: list[str], **kwargs: Any) -> int:
        plugins = [*kwargs.pop("plugins", []), _InGivenOrder(params)]
        return original(self, params, plugins=plugins, **kwargs)

    return execute_pytest


class _FullStats:
    """Whether this invocation ran mutmut's stats over every selected test (which must pass)."""

    ran = False


def _note_full_stats(original: Callable[..., None]) -> Callable[..., None]:
    def run_stats_collection(runner: Any, tests: Any = None) -> None:
        original(runner, tests)
        _FullStats.ran = _FullStats.ran or not tests

    return run_stats_collection


def _clean_run_once(original: Callable[..., Any]) -> Callable[..., Any]:
    """The runner, without the clean run when the stats run has just passed the same tests.

    mutmut stops if its stats run (every selected test, unmutated) fails, so a clean run right
    after it repeats the whole selection to learn nothing: minutes of the 60-minute budget.
    """

    def get_mutant_runner(*args: Any, **kwargs: Any) -> Any:
        runner = original(*args, **kwargs)
        clean = runner.run_clean_tests

        def run_clean_tests(tests: Any) -> int:
            return 0 if _FullStats.ran else int(clean(tests))

        runner.run_clean_tests = run_clean_tests
        submit = runner.submit  # the forkserver runner runs the tests in the order submitted

        def submit_killers_first(mutant: str, tests: list[str], *args: Any) -> None:
            submit(mutant, killers_first(mutant, tests), *args)

        runner.submit = submit_killers_first
        return runner

    return get_mutant_runner


def check_selection(pyproject: Path = Path("pyproject.toml")) -> None:
    """Stop if [tool.mutmut]'s test selection is not the union of TESTS_OF's files."""
    config = tomllib.loads(pyproject.read_text(encoding="utf-8"))["tool"]["mutmut"]
    listed = sorted(config["pytest_add_cli_args_test_selection"])
    if listed != TEST_SELECTION:
        sys.exit(f"[tool.mutmut] pytest_add_cli_args_test_selection must be {TEST_SELECTION}")


if __name__ == "__main__":
    check_selection()
    runner: Any = PytestRunner  # assigning a method: typed Any with or without mutmut installed
    runner.execute_pytest = _in_given_order(runner.execute_pytest)
    mutmut_main.collect_or_load_stats = _limit_tests(mutmut_main.collect_or_load_stats)
    mutmut_main.run_stats_collection = _note_full_stats(mutmut_main.run_stats_collection)
    # get_mutant_runner is imported into mutmut.__main__, where `_run` looks it up.
    namespace = vars(mutmut_main)  # not re-exported there, so not an attribute to mypy
    namespace["get_mutant_runner"] = _clean_run_once(namespace["get_mutant_runner"])
    mutmut_main.collect_source_file_mutation_data = _skip_accepted(
        mutmut_main.collect_source_file_mutation_data, set(sys.argv[1:])
    )
    mutmut_main.cli()
