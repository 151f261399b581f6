"""The experiments' figures on the site: made by full runs, committed under docs/figures/.

    python docs/generate_figures.py --full     # `nox -s figures`: run them all (minutes)
    python docs/generate_figures.py            # `nox -s docs`: check the committed ones

``--full`` runs every command of `RUNS` (`bnref experiment NAME` without ``--quick``, seed 0, the
command a user types) into docs/figures/NAME/, after emptying that folder so that a figure of
an earlier run can never stand in for a broken experiment, and writes beside the files
``provenance.json``: each command, the commit of the checkout it ran in (and the files of
reference/ and bnref/experiments/, the code the runs execute, that differed from it, if any),
the date, the time it took, the versions of Python, NumPy and matplotlib, and the claim lines
it printed. It exits with the first non-zero
status of a run, or 1 if a claim of a full run does not hold: the full runs are where the
course's published numbers are asserted (too slow for the test suite, which runs the quick
mode). Without ``--full`` it only checks that every experiment has its files and provenance
(docs/conf.py reads them when the site is built).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import json
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
FIGURES = DOCS / "figures"
# The full runs whose files the site shows: every experiment with its defaults, and the
# optimizers' learning-rate decay setting, which reproduces the course's decay section too.
RUNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("bn-init-scale", ()),
    ("overfitting", ()),
    ("optimizers", ()),
    ("optimizers", ("--setting", "course-decay")),
    ("hyperparameter-search", ()),
)
PROVENANCE = "provenance.json"


def _git(*args: str) -> str:
    """The output of ``git ARGS`` in the checkout, or "" where git or the repository is missing."""
    try:
        done = subprocess.run(
            ["git", *args], cwd=ROOT, capture_output=True, text=True, check=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return done.stdout.strip()


def _source() -> dict[str, Any]:
    """The commit the runs are made from and the code files that differ from it."""
    changed = _git("status", "--porcelain", "--", "reference", "bnref/experiments").splitlines()
    return {
        "commit": _git("rev-parse", "HEAD") or "unknown",
        "changed_files": sorted(line[3:] for line in changed),
    }


def _versions() -> dict[str, str]:
    import matplotlib  # noqa: PLC0415 -- imported once sys.path is set
    import numpy  # noqa: PLC0415

    return {
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "matplotlib": matplotlib.__version__,
    }


def _run(name: str, options: Sequence[str]) -> tuple[int, dict[str, Any]]:
    """Run ``bnref experiment NAME OPTIONS --out docs/figures/NAME``; its status and record."""
    from bnref.cli import main as bnref  # noqa: PLC0415 -- imported once sys.path is set

    out = FIGURES / name
    args = ["experiment", name, *options, "--seed", "0", "--out", str(out.relative_to(ROOT))]
    command = "bnref " + " ".join(args)
    print(command, flush=True)
    printed = io.StringIO()
    start = time.perf_counter()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(printed):
        status = bnref(args)
    seconds = time.perf_counter() - start
    print(printed.getvalue(), end="", flush=True)
    # What the command printed (bnref.experiments.cli.report): a first line, the claims, then
    # "files written:" and the files.
    lines = printed.getvalue().splitlines()
    written = lines.index("files written:") if "files written:" in lines else len(lines)
    record = {
        "command": command,
        "seconds": round(seconds, 1),
        "claims": [line.strip() for line in lines[1:written]],
        "files": [Path(line.strip()).name for line in lines[written + 1 :]],
    }
    return status, record


def full() -> int:
    """Run every command of RUNS into docs/figures and write each folder's provenance."""
    source, versions = _source(), _versions()
    date = datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()
    records: dict[str, list[dict[str, Any]]] = {}
    for name, _ in RUNS:
        shutil.rmtree(FIGURES / name, ignore_errors=True)
    failed: list[str] = []
    for name, options in RUNS:
        status, record = _run(name, options)
        if status != 0:
            return status
        records.setdefault(name, []).append(record)
        failed += [f"{record['command']}: {c}" for c in record["claims"] if c.endswith("not hold")]
        provenance = {"date": date, **source, **versions, "runs": records[name]}
        text = json.dumps(provenance, indent=2) + "\n"
        (FIGURES / name / PROVENANCE).write_text(text, encoding="utf-8")
    total = sum(p.stat().st_size for p in FIGURES.rglob("*") if p.is_file())
    print(f"docs/figures: {total / 1e6:.2f} MB in all", flush=True)
    for line in failed:
        print(f"full run, claim does not hold: {line}", file=sys.stderr)
    return 1 if failed else 0


def check() -> int:
    """1 (with the reasons) unless every run of RUNS has its files and provenance."""
    problems = []
    for name in dict(RUNS):
        path = FIGURES / name / PROVENANCE
        if not path.is_file():
            problems.append(f"{path.relative_to(ROOT)} is missing")
            continue
        runs = json.loads(path.read_text(encoding="utf-8"))["runs"]
        expected = [" ".join(["bnref experiment", n, *opts]) for n, opts in RUNS if n == name]
        if [r["command"].split(" --seed")[0] for r in runs] != expected:
            problems.append(f"{path.relative_to(ROOT)} records other runs than {expected}")
        problems += [
            f"docs/figures/{name}/{file} is missing"
            for r in runs
            for file in r["files"]
            if not (FIGURES / name / file).is_file()
        ]
    for problem in problems:
        print(f"generate_figures: {problem}; run `nox -s figures`", file=sys.stderr)
    if not problems:
        print(f"docs/figures: the files of {len(RUNS)} full runs are in place")
    return 1 if problems else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``--full``: run the experiments into docs/figures; otherwise check what is there."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--full", action="store_true", help="run every experiment in full")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))  # the checkout, as docs/conf.py does
    return full() if args.full else check()


if __name__ == "__main__":
    raise SystemExit(main())
