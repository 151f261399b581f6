"""The site's offline check (docs/check_offline.py, run by `nox -s docs` on the built HTML): a page
that loads a script, stylesheet or image from the network fails it; local files and links pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CHECK = Path(__file__).resolve().parents[1] / "docs" / "check_offline.py"


def _check(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(CHECK), str(folder)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "tag",
    [
        '<script src="https://cdn.jsdelivr.net/npm/mathjax@3/es5/tex-mml-chtml.js"></script>',
        '<link rel="stylesheet" href="http://fonts.googleapis.com/css?family=X">',
        '<img src="//example.org/a.png">',
        '<SCRIPT SRC=" HTTPS://cdn.example/x.js"></SCRIPT>',
    ],
)
def test_a_remote_load_fails(tmp_path: Path, tag: str) -> None:
    (tmp_path / "page.html").write_text(f"<html><head>{tag}</head></html>", "utf-8")
    done = _check(tmp_path)
    assert done.returncode == 1
    assert "page.html: loads from the network" in done.stdout


def test_local_resources_and_links_pass(tmp_path: Path) -> None:
    page = (
        '<script src="_static/doctools.js"></script><link rel="stylesheet" href="_static/a.css">'
        '<a href="https://www.sphinx-doc.org/">Sphinx</a><img src="_images/figure.png">'
    )
    (tmp_path / "index.html").write_text(page, "utf-8")
    done = _check(tmp_path)
    assert done.returncode == 0, done.stdout
    assert done.stdout.strip() == "1 pages checked, 0 remote loads"


def test_no_pages_or_no_folder_is_not_a_pass(tmp_path: Path) -> None:
    assert _check(tmp_path).returncode == 1  # an empty build checks nothing
    assert _check(tmp_path / "missing").returncode == 2
