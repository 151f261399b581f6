"""Fail if a built page loads anything from the network: ``python docs/check_offline.py DIR``.

The site must read offline (formulas included, see `_ext/mathml.py`): no ``<script src>``,
``<link href>`` stylesheet or ``<img src>`` may name an ``http://``, ``https://`` or
protocol-relative (``//host``) address. Links a reader clicks (``<a href>``) may.
"""

from __future__ import annotations

import sys
from html.parser import HTMLParser
from pathlib import Path

# The attributes through which a page loads a resource when it is opened.
LOADING = {"script": "src", "link": "href", "img": "src", "iframe": "src", "source": "src"}
REMOTE = ("http://", "https://", "//")


class _Loads(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.remote: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attribute = LOADING.get(tag)
        for name, value in attrs:
            if name == attribute and value and value.strip().lower().startswith(REMOTE):
                self.remote.append(f"<{tag} {name}={value!r}>")


def remote_loads(html: str) -> list[str]:
    """The tags of `html` that load a resource from the network, as short descriptions."""
    parser = _Loads()
    parser.feed(html)
    return parser.remote


def main(argv: list[str]) -> int:
    """Check every .html file under the directory argv[0]; 1 and a list if any loads remotely."""
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python docs/check_offline.py BUILT_HTML_DIR", file=sys.stderr)
        return 2
    pages = sorted(Path(argv[0]).rglob("*.html"))
    found = [(page, tag) for page in pages for tag in remote_loads(page.read_text("utf-8"))]
    for page, tag in found:
        print(f"{page}: loads from the network: {tag}")
    print(f"{len(pages)} pages checked, {len(found)} remote loads")
    return 1 if found or not pages else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
