"""Run every experiment in quick mode into docs/_generated/experiments/NAME, for `nox -s docs`.

    python docs/generate_figures.py

The experiments page of the site shows what these runs write (docs/conf.py reads the folder).
Each run goes through `bnref experiment NAME --quick`, the command a user types, with seed 0;
the folder is emptied first, so a figure from an earlier run can never stand in for a broken
experiment. Exits with the first non-zero status of a run.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "_generated" / "experiments"


def main() -> int:
    """Run each experiment of `bnref.experiments.cli.EXPERIMENTS` with --quick into OUT/NAME."""
    sys.path.insert(0, str(OUT.parents[2]))  # the checkout, as docs/conf.py does
    from bnref.cli import main as bnref  # noqa: PLC0415
    from bnref.experiments.cli import EXPERIMENTS  # noqa: PLC0415 -- needs the path above

    shutil.rmtree(OUT, ignore_errors=True)
    for name in EXPERIMENTS:
        args = ["experiment", name, "--quick", "--seed", "0", "--out", str(OUT / name)]
        print("bnref " + " ".join(args), flush=True)
        status = bnref([*args, "--no-progress"])
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
