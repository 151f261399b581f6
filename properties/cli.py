"""The `bnref` command: `bnref check` runs every property against an implementation.

    bnref check [TARGET] [--profile dev|ci|thorough] [--property NAME ...] [--json PATH]
                [--convention NAME] [--backward MOD:FN] [--inference MOD:FN]

TARGET is `reference` (the default), `torch`, `onnx` (the ONNX reference evaluator),
`onnxruntime`, computing in float64, or `module:function`: the user's forward
f(x, gamma, beta, eps) -> y (or (y, mean, var)) in the layout of --convention (default pytorch,
channel axis 1; keras: last), with optional --backward g(dy, x, gamma, eps) -> (dx, dgamma,
dbeta) and --inference h(x, gamma, beta, running_mean, running_var, eps) -> y. The table lists
each property, the examples run, the worst error seen next to its tolerance, and pass/fail (n/a
where the target lacks the capability, e.g. ONNX has no backward); the exit status is 1 if any
property fails, 2 for a usage error. Other targets run the batch-norm properties only: the
mini-batch and optimizer properties are claims about the reference itself.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import asdict

from hypothesis import settings

from properties.adapter import Implementation
from properties.framework import PropertyResult, run_property
from properties.profiles import PROFILES, load_profile, profile_name
from properties.targets import TARGETS, load_target
from reference.conventions import CONVENTIONS


def _implementation(
    target: str,
    convention: str = "pytorch",
    backward: str | None = None,
    inference: str | None = None,
) -> Implementation:
    if ":" in target:
        from properties.targets.user_target import load_user_target  # noqa: PLC0415

        try:
            return load_user_target(
                target, convention=convention, backward=backward, inference=inference
            )
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"bnref check: {exc}") from exc
    if backward is not None or inference is not None:
        raise SystemExit("bnref check: --backward and --inference need a TARGET module:function")
    if target not in TARGETS:
        raise SystemExit(
            f"bnref check: TARGET must be one of {', '.join(TARGETS)} or module:function; "
            f"got {target!r}"
        )
    try:
        return load_target(target, "float64")
    except ImportError as exc:
        raise SystemExit(f"bnref check: {exc}") from exc


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
        status = "n/a" if r.not_applicable else ("pass" if r.passed else "FAIL")
        rows.append((r.name, str(r.examples), _fmt(err), _fmt(tol), ratio, status))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(lines)


def check(argv: Sequence[str]) -> int:
    """Run `bnref check`; return the exit status."""
    from properties.registry import (  # noqa: PLC0415 -- heavy import
        ALL_PROPERTIES,
        BATCHNORM_PROPERTIES,
        by_name,
    )

    parser = argparse.ArgumentParser(prog="bnref check", description=__doc__.splitlines()[0])
    parser.add_argument(
        "target", nargs="?", default="reference", help=f"one of {TARGETS} or module:function"
    )
    parser.add_argument("--profile", choices=PROFILES, default=None, help="Hypothesis profile")
    parser.add_argument("--property", action="append", default=None, metavar="NAME")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--convention",
        choices=sorted(CONVENTIONS),
        default="pytorch",
        help="module:function target: its layout (channel axis) and running-stats rule",
    )
    parser.add_argument("--backward", metavar="MOD:FN", help="module:function target's backward")
    parser.add_argument("--inference", metavar="MOD:FN", help="module:function target's inference")
    args = parser.parse_args(argv)
    profile = load_profile(args.profile or profile_name())
    impl = _implementation(args.target, args.convention, args.backward, args.inference)
    default = ALL_PROPERTIES if args.target == "reference" else BATCHNORM_PROPERTIES
    props = [by_name(n) for n in args.property] if args.property else list(default)
    print(f"bnref check {impl.name} (profile {profile})", flush=True)
    results = []
    for prop in props:
        result = run_property(prop, impl, settings())
        results.append(result)
        status = "n/a" if result.not_applicable else ("pass" if result.passed else "FAIL")
        print(f"  {prop.name}: {status} ({result.examples} examples)", flush=True)
    print()
    print(format_table(results))
    failures = [r for r in results if not r.passed]
    for r in results:
        if r.not_applicable:
            print(f"\n{r.name}: not applicable: {r.not_applicable}")
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
    skipped = sum(1 for r in results if r.not_applicable)
    passed = len(results) - len(failures) - skipped
    tail = f", {skipped} not applicable" if skipped else ""
    print(f"\n{passed} passed, {len(failures)} failed{tail}")
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
