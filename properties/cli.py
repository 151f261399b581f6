"""The `bnref` command: `bnref check` runs every property against an implementation.

    bnref check [TARGET] [--profile dev|ci|thorough] [--property NAME ...] [--json PATH]

TARGET is `reference` (the default and, for now, the only target). The table lists each
property, the examples run, the worst error seen next to its tolerance, and pass/fail; the exit
status is 1 if any property fails, 2 for a usage error.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict

from hypothesis import settings

from properties.adapter import Implementation, ReferenceImplementation
from properties.framework import PropertyResult, run_property
from properties.profiles import PROFILES, load_profile, profile_name

TARGETS = ("reference",)


def _implementation(target: str) -> Implementation:
    if target == "reference":
        return ReferenceImplementation()
    raise SystemExit(f"bnref check: TARGET must be one of {', '.join(TARGETS)}; got {target!r}")


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2e}"


def format_table(results: Sequence[PropertyResult]) -> str:
    """A plain-text table: property, examples, worst error, tolerance, error/tolerance, status."""
    header = ("property", "examples", "worst error", "tolerance", "ratio", "status")
    rows = []
    for r in results:
        w = r.worst
        err, tol = (w.error, w.tolerance) if w is not None else (math.nan, math.nan)
        ratio = _fmt(w.ratio) if w is not None and w.tolerance > 0 else ("exact" if w else "-")
        rows.append(
            (r.name, str(r.examples), _fmt(err), _fmt(tol), ratio, "pass" if r.passed else "FAIL")
        )
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def check(argv: Sequence[str]) -> int:
    """Run `bnref check`; return the exit status."""
    from properties.registry import ALL_PROPERTIES, by_name  # noqa: PLC0415 -- heavy import

    parser = argparse.ArgumentParser(prog="bnref check", description=__doc__.splitlines()[0])
    parser.add_argument("target", nargs="?", default="reference", help=f"one of {TARGETS}")
    parser.add_argument("--profile", choices=PROFILES, default=None, help="Hypothesis profile")
    parser.add_argument("--property", action="append", default=None, metavar="NAME")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile or profile_name())
    impl = _implementation(args.target)
    props = [by_name(n) for n in args.property] if args.property else list(ALL_PROPERTIES)
    print(f"bnref check {impl.name} (profile {profile})", flush=True)
    results = []
    for prop in props:
        result = run_property(prop, impl, settings())
        results.append(result)
        print(
            f"  {prop.name}: {'pass' if result.passed else 'FAIL'} ({result.examples} examples)",
            flush=True,
        )
    print()
    print(format_table(results))
    failures = [r for r in results if not r.passed]
    for r in failures:
        print(f"\n{r.name} FAILED:\n{r.failure}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(
                {"target": impl.name, "profile": profile, "results": [asdict(r) for r in results]},
                fh,
                indent=2,
                default=float,
            )
    print(f"\n{len(results) - len(failures)} passed, {len(failures)} failed")
    return 1 if failures else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `bnref` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in {"-h", "--help"}:
        print(__doc__)
        return 0 if args else 2
    if args[0] == "check":
        return check(args[1:])
    print(f"bnref: unknown command {args[0]!r}; the commands are: check", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
