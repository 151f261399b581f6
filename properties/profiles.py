"""Hypothesis settings profiles: `dev` (quick), `ci` (reproducible), `thorough` (>= 1000 examples),
`mutation` (ci's examples, not shrunk).

`load_profile()` picks `ci` when the CI environment variable is set, else the profile named by
BNREF_PROFILE, else `dev`. The `ci` profile derandomizes (the same examples on every run, so a
green CI stays green) and turns deadlines off (timing on a shared 2-core machine is noise, not a
property of the math); none runs Hypothesis's `explain` phase (see `_PHASES`). `mutation` is
`ci` without the shrink phase, for `nox -s mutation`: a test fails on a mutant exactly when it
fails on one of ci's examples (shrinking only makes that example smaller), and shrinking each of
thousands of killed mutants' failures would cost minutes.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, Phase, settings

PROFILES = ("dev", "ci", "thorough", "mutation")

_NO_TIMING = [HealthCheck.too_slow, HealthCheck.data_too_large]
# Every phase but `explain`: after shrinking a failure, it reruns the minimal example with each
# part of it varied to say which parts matter, and prints the lines of bnref's own checking
# code that only failing runs reached. For a target that fails several properties that was
# about half of `bnref check`'s time (keras-jax at float64 and float32: 172 s with it, 79 s
# without), and the lines it names are the audit's, not the target's.
_PHASES = tuple(phase for phase in Phase if phase is not Phase.explain)
settings.register_profile(
    "dev",
    max_examples=40,
    deadline=None,
    suppress_health_check=_NO_TIMING,
    print_blob=True,
    phases=_PHASES,
)
settings.register_profile(
    "ci",
    max_examples=150,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=_NO_TIMING,
    print_blob=True,
    phases=_PHASES,
)
settings.register_profile(
    "mutation", settings.get_profile("ci"), phases=[Phase.explicit, Phase.generate]
)
settings.register_profile(
    "thorough",
    max_examples=1000,
    deadline=None,
    suppress_health_check=_NO_TIMING,
    print_blob=True,
    phases=_PHASES,
)


def profile_name() -> str:
    """The profile to use in this environment."""
    if os.environ.get("CI"):
        return "ci"
    return os.environ.get("BNREF_PROFILE", "dev")


def load_profile(name: str | None = None) -> str:
    """Load profile `name` (default: `profile_name()`) and return its name."""
    chosen = name or profile_name()
    if chosen not in PROFILES:
        raise ValueError(f"profile must be one of {PROFILES}, got {chosen!r}")
    settings.load_profile(chosen)
    return chosen


def failure_demo(max_examples: int) -> settings:
    """Fixed settings for a test that shows a property failing on a planted mistake.

    Derandomized (a caught mistake stays caught) and without the shrink phase: such a test asks
    only whether the property fails, and shrinking the failure was most of its time.
    """
    return settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
    )
