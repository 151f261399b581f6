"""`mutmut` with the tests of each mutant limited to its module's own test files (issue 7).

mutmut 3 records which tests reach each function (its "stats" run) and runs only those against
a mutant of that function. For the core functions that is most of the suite: every property test
calls `batch_norm_forward` and the input checks, so a surviving mutant there would cost the whole
suite. TESTS_OF maps a module to the test files that state its facts; a mutant of a module listed
there meets only the recorded tests that lie in those files. Modules not listed keep every test
that reaches them.

The filter acts on mutmut's in-memory table after it is loaded and is never written back, so the
cached stats stay those of the whole suite. It relies on `mutmut.__main__.collect_or_load_stats`
and `mutmut.state.state().tests_by_mangled_function_name` (mutmut 3.8); the `mutation` extra pins
that version range.

Usage: python tools/mutation_run.py run [--max-children N] [MUTANT_GLOB ...] (any mutmut command).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mutmut import __main__ as mutmut_main
from mutmut.state import state

TESTS_OF: dict[str, tuple[str, ...]] = {
    "reference.batchnorm": (
        "tests/test_batchnorm_validation.py",
        "tests/test_batchnorm_values.py",
        "tests/test_batchnorm_props.py",
        "tests/test_fast_path.py",
        "tests/test_accuracy.py",
        "tests/test_gradient_props.py",
    ),
}


def module_of(mangled: str) -> str:
    """`reference.batchnorm` of `reference.batchnorm.x_f` or `reference.m.xǁClassǁmethod`."""
    head, _, _ = mangled.partition(".x")
    return head


def limit_to_module_tests(tests_by_function: dict[str, set[str]]) -> None:
    """Keep, for each function of a module in TESTS_OF, only the tests in that module's files."""
    for function, tests in tests_by_function.items():
        files = TESTS_OF.get(module_of(function))
        if files is not None:
            tests_by_function[function] = {t for t in tests if t.split("::")[0] in files}


def _patched(original: Callable[..., None]) -> Callable[..., None]:
    def collect_then_limit(*args: Any, **kwargs: Any) -> None:
        original(*args, **kwargs)
        limit_to_module_tests(state().tests_by_mangled_function_name)

    return collect_then_limit


if __name__ == "__main__":
    mutmut_main.collect_or_load_stats = _patched(mutmut_main.collect_or_load_stats)
    mutmut_main.cli()
