"""`bnref experiment NAME [--seed N] [--quick] [--out DIR] [--data PATH] [--setting S]`, `--list`.

`bnref experiment ...` (bnref/cli.py) calls this `main`; it also runs alone as
``python -m bnref.experiments.cli NAME``. After a run it prints one line per claim of the course
the run tested, with its numbers and verdict, then every file written. Exit codes: 0 done
(whatever the verdicts: they are results, not errors), 2 bad usage (an unknown name, an option
the experiment does not take, a bad --data file).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType, ModuleType

from bnref.experiments.common import ExperimentResult

# NAME -> (module, one-line summary). Modules are imported only when run, so a missing or
# broken one does not stop the others (hyperparameter-search is written separately).
EXPERIMENTS: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "bn-init-scale": (
            "bnref.experiments.bn_init_scale",
            "with and without batch norm across 16 initial weight scales (digits or --data MNIST)",
        ),
        "overfitting": (
            "bnref.experiments.overfitting",
            "300 training digits, a deep network, then weight decay and dropout",
        ),
        "optimizers": (
            "bnref.experiments.optimizers",
            "gradient descent, momentum and Adam on the course's two moons (--setting for decay)",
        ),
        "hyperparameter-search": (
            "bnref.experiments.hyperparameter_search",
            "random search over learning rate and weight decay, then one coarse-to-fine round",
        ),
    }
)
TAKES_DATA = ("bn-init-scale",)
TAKES_SETTING = ("optimizers",)
DEFAULT_OUT = Path("experiment-results")


def load(name: str) -> ModuleType:
    """The module of experiment `name` (a key of EXPERIMENTS), imported now."""
    if name not in EXPERIMENTS:
        raise ValueError(f"name must be one of {sorted(EXPERIMENTS)}, got {name!r}")
    return importlib.import_module(EXPERIMENTS[name][0])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bnref experiment",
        description="Run one of the course's experiments; write its PNG and its numbers.",
    )
    parser.add_argument("name", nargs="?", help="the experiment (see --list)")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, not minutes")
    parser.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})"
    )
    parser.add_argument(
        "--data", type=Path, default=None, help="bn-init-scale only: a local MNIST .npz or IDX dir"
    )
    parser.add_argument(
        "--setting",
        default=None,
        help="optimizers only: course (default), course-decay or short (see its docs)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress display")
    return parser


def report(result: ExperimentResult, seconds: float) -> str:
    """What a run prints: its time, one line per claim with its verdict, the files written."""
    lines = [f"{result.name}: done in {seconds:.1f} s"]
    lines += [f"  {claim.line}" for claim in result.claims]
    lines.append("files written:")
    lines += [f"  {path}" for path in result.files]
    return "\n".join(lines)


def _usage_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the parsed arguments, or None."""
    if args.name is None:
        return "give an experiment NAME or --list"
    if args.name not in EXPERIMENTS:
        return f"unknown experiment {args.name!r}; known: {', '.join(EXPERIMENTS)} (see --list)"
    if args.data is not None and args.name not in TAKES_DATA:
        return f"--data is only for {', '.join(TAKES_DATA)}, not {args.name!r}"
    if args.setting is not None and args.name not in TAKES_SETTING:
        return f"--setting is only for {', '.join(TAKES_SETTING)}, not {args.name!r}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default sys.argv[1:]), run the experiment, print where its files are."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message
        return int(exc.code) if isinstance(exc.code, int) else 2
    if args.list:
        width = max(map(len, EXPERIMENTS))
        for name, (_, summary) in EXPERIMENTS.items():
            print(f"{name:<{width}}  {summary}")
        return 0
    problem = _usage_problem(args)
    if problem is not None:
        parser.print_usage(sys.stderr)
        print(f"bnref experiment: error: {problem}", file=sys.stderr)
        return 2
    options: dict[str, object] = {"data": args.data} if args.data is not None else {}
    if args.setting is not None:
        options["setting"] = args.setting
    start = time.perf_counter()
    try:
        result = load(args.name).run(
            seed=args.seed,
            quick=args.quick,
            out_dir=args.out,
            progress=not args.no_progress,
            **options,
        )
    except ValueError as exc:  # a bad --seed, --out, --setting or --data file: say which, exit 2
        print(f"bnref experiment: error: {exc}", file=sys.stderr)
        return 2
    print(report(result, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
