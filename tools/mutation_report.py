"""Per-module mutation score of `reference/` from mutmut's results (`nox -s mutation`).

mutmut 3 writes, next to each mutated copy `mutants/reference/M.py`, a JSON file
`mutants/reference/M.py.meta` whose `exit_code_by_key` maps each mutant's name to the exit code
of the tests run against it (None: not run yet). The codes are mutmut's (mutmut/stats.py,
`status_by_exit_code`): 1 and 3 killed, 0 survived, 5 and 33 no test reached the mutant,
34 skipped, 36/24/-24/152/255 timeout, 37 caught by the type checker, -9/-11 killed by a signal.

score = killed / (mutants run - accepted equivalents), where a timeout or a crash counts as killed
(the tests noticed) and "no tests" counts as a survivor (nothing would notice). Accepted
equivalent mutants are listed, one name per line with its fingerprint and a `# why` comment, in
the file given by --accepted; they leave the denominator but are still printed. An entry whose
mutant no longer makes the recorded change counts as the mutant's own result
(tools/mutation_accepted.py).

Usage: python tools/mutation_report.py [--accepted FILE] [--fail-under PERCENT] [GLOB ...]
where each GLOB is a mutant-name pattern as `mutmut run` takes it (fnmatch, e.g.
`reference.batchnorm.*`); only the mutants it matches are counted. Default: all.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mutation_accepted import mutmut_diff, read_accepted, verified  # tools/, the script's dir

KILLED = frozenset({1, 3, 24, -24, 152, 255, 36, 37, -9, -11})
# Timeouts count as killed (a mutant that loops is noticed) but are also shown apart: on a loaded
# machine a mutant's tests can outrun mutmut's wall-clock limit, so a timeout is worth a re-run.
TIMEOUT = frozenset({24, -24, 152, 255, 36})
SURVIVED = frozenset({0, 5, 33})
NOT_RUN = frozenset({None, 2, 34})


@dataclass
class ModuleScore:
    """Mutant counts of one module."""

    module: str
    killed: int = 0
    timeouts: list[str] = field(default_factory=list)  # counted in killed
    not_run: int = 0
    accepted: list[str] = field(default_factory=list)
    survivors: list[tuple[str, str]] = field(default_factory=list)  # (name, status)

    @property
    def run(self) -> int:
        """Mutants whose tests ran to an end."""
        return self.killed + len(self.accepted) + len(self.survivors)

    @property
    def score(self) -> float | None:
        """Killed / (run - accepted equivalents), in percent; None when nothing counts."""
        counted = self.killed + len(self.survivors)
        return None if counted == 0 else 100.0 * self.killed / counted


def status_of(code: int | None) -> str:
    """mutmut's name for an exit code that is neither killed nor not run."""
    return {0: "survived", 5: "no tests", 33: "no tests"}.get(code or 0, f"exit {code}")


def scores(mutants_dir: Path, globs: list[str], accepted: set[str]) -> list[ModuleScore]:
    """One ModuleScore per `.py.meta` file under mutants_dir/reference with a mutant in globs."""
    result = []
    for meta in sorted((mutants_dir / "reference").rglob("*.py.meta")):
        module = meta.relative_to(mutants_dir).as_posix().removesuffix(".meta")
        codes: dict[str, int | None] = {
            name: code
            for name, code in json.loads(meta.read_text(encoding="utf-8"))[
                "exit_code_by_key"
            ].items()
            if not globs or any(fnmatch.fnmatch(name, g) for g in globs)
        }
        if not codes:
            continue
        entry = ModuleScore(module)
        for name, code in sorted(codes.items()):
            if name in accepted:  # not run again (tools/mutation_run.py), counted as accepted
                entry.accepted.append(name)
            elif code in NOT_RUN:
                entry.not_run += 1
            elif code in KILLED:
                entry.killed += 1
                if code in TIMEOUT:
                    entry.timeouts.append(name)
            else:  # survived, no tests, or an exit code mutmut calls suspicious
                entry.survivors.append((name, status_of(code)))
        result.append(entry)
    return result


def report(entries: list[ModuleScore]) -> str:
    """The score table, then every survivor (inspect one with `mutmut show NAME`)."""
    head = (
        f"{'module':40s} {'killed':>6s} {'(t/o)':>5s} {'surv':>5s} {'accept':>6s} {'notrun':>6s}"
        f" {'score':>7s}"
    )
    lines = [head, "-" * len(head)]
    for e in entries:
        s = "-" if e.score is None else f"{e.score:6.1f}%"
        lines.append(
            f"{e.module:40s} {e.killed:6d} {len(e.timeouts):5d} {len(e.survivors):5d}"
            f" {len(e.accepted):6d} {e.not_run:6d} {s:>7s}"
        )
    lines.append("")
    for e in entries:
        for name, status in e.survivors:
            lines.append(f"{status:9s} {name}")
        for name in e.timeouts:
            lines.append(f"{'timeout':9s} {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Print the report; exit 1 if a module that ran is below --fail-under."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "globs", nargs="*", help="mutant names to count, e.g. reference.batchnorm.*"
    )
    parser.add_argument("--mutants", type=Path, default=Path("mutants"))
    parser.add_argument("--accepted", type=Path, default=None)
    parser.add_argument("--fail-under", type=float, default=None)
    args = parser.parse_args(argv)
    entries = scores(args.mutants, args.globs, verified(read_accepted(args.accepted), mutmut_diff))
    print(report(entries))
    low = [
        e
        for e in entries
        if args.fail_under is not None and e.score is not None and e.score < args.fail_under
    ]
    for e in low:
        print(f"{e.module}: {e.score:.1f}% < {args.fail_under}%", file=sys.stderr)
    return 1 if low else 0


if __name__ == "__main__":
    sys.exit(main())
