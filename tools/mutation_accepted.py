"""The accepted equivalent mutants (tools/mutation_accepted.txt), pinned to their code.

mutmut names a mutant by its function and a number counted within that function, so editing a
function renumbers its mutants: an accepted name could come to mean another mutant, which would
then never be run. Each entry therefore carries the fingerprint of its mutation, `@` and 12 hex
digits of the SHA-256 of the diff's changed lines (context and file names left out):

    reference.m.x_f__mutmut_7  @0123456789ab  # why it is equivalent

An entry counts (is skipped by tools/mutation_run.py and reported as accepted) only while the
mutant of that name still makes that change; otherwise it is run like any other mutant and
reported as stale. `python tools/mutation_accepted.py stamp` (in the directory holding
`mutants/`) writes the fingerprint of every entry that has none, and for each stale entry names
the mutant of the same function that now makes the recorded change, if there is one. Stamp a
new entry against the mutants/ tree it was judged on: stamped later, after an edit, it would
pin whatever change the name has come to mean.
"""

from __future__ import annotations

import hashlib
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from mutmut.mutation.data import SourceFileMutationData
from mutmut.mutation.diff_apply import get_diff_for_mutant
from mutmut.utils.file_utils import walk_mutatable_files

ACCEPTED = Path(__file__).with_name("mutation_accepted.txt")
_ENTRY = re.compile(r"^(?P<name>\S+)(?:\s+@(?P<fp>[0-9a-f]{12}))?(?P<rest>\s*(?:#.*)?)$")


def read_accepted(path: Path | None) -> dict[str, str | None]:
    """Name -> recorded fingerprint (None if not stamped yet) of each non-comment line."""
    if path is None or not path.exists():
        return {}
    entries: dict[str, str | None] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ENTRY.match(line.strip())
        if line.strip() and not line.lstrip().startswith("#") and match:
            entries[match["name"]] = match["fp"]
    return entries


def fingerprint(diff: str) -> str:
    """12 hex digits of SHA-256 over the stripped `-`/`+` lines of a unified diff, in order."""
    changed = [
        line[0] + line[1:].strip()
        for line in diff.splitlines()
        if line[:1] in "-+" and not line.startswith(("---", "+++"))
    ]
    return hashlib.sha256("\n".join(changed).encode()).hexdigest()[:12]


def verified(entries: Mapping[str, str | None], diff_of: Callable[[str], str | None]) -> set[str]:
    """The entries whose mutant still exists and makes the recorded change.

    diff_of(name) is the mutant's diff, or None if no mutant has that name. An unstamped entry
    is not verified: it has nothing to compare with.
    """
    result = set()
    for name, recorded in entries.items():
        diff = diff_of(name)
        if recorded is not None and diff is not None and fingerprint(diff) == recorded:
            result.add(name)
    return result


def mutmut_diff(name: str) -> str | None:
    """The diff mutmut shows for a mutant of the mutants/ tree here, None if there is none."""
    try:
        diff: str = get_diff_for_mutant(name)
    except (FileNotFoundError, KeyError, ValueError):
        return None
    return diff


def _siblings(name: str, names: Iterable[str]) -> list[str]:
    """The other mutants of the same function as `name`."""
    function = name.rpartition("__mutmut_")[0]
    return sorted(n for n in names if n.rpartition("__mutmut_")[0] == function and n != name)


def _makes(name: str, recorded: str | None) -> bool:
    """Whether mutant `name` makes the change of fingerprint `recorded`."""
    diff = mutmut_diff(name)
    return diff is not None and fingerprint(diff) == recorded


def stamp(path: Path = ACCEPTED) -> int:
    """Write missing fingerprints into `path`; print the stale entries. Exit status 1 if any."""
    every: list[str] = []
    for source in walk_mutatable_files():
        data = SourceFileMutationData(path=source)
        data.load()
        every.extend(data.exit_code_by_key)
    lines, stale = [], 0
    for line in path.read_text(encoding="utf-8").splitlines():
        match = _ENTRY.match(line.strip())
        if not line.strip() or line.lstrip().startswith("#") or match is None:
            lines.append(line)
            continue
        name, recorded, rest = match["name"], match["fp"], match["rest"]
        diff = mutmut_diff(name)
        now = None if diff is None else fingerprint(diff)
        if recorded is None and now is not None:
            lines.append(f"{name}  @{now}{rest if rest.startswith(' ') else ' ' + rest}".rstrip())
            continue
        if recorded != now:
            stale += 1
            moved = [n for n in _siblings(name, every) if _makes(n, recorded)]
            print(f"stale: {name} (now {now}); the recorded change is made by {moved or 'none'}")
        lines.append(line)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return 1 if stale else 0


if __name__ == "__main__":
    if sys.argv[1:] != ["stamp"]:
        sys.exit("usage: python tools/mutation_accepted.py stamp")
    sys.exit(stamp())
