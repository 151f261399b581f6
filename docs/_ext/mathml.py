"""Math rendered to MathML when the site is built, so that pages need no script and no network.

Sphinx's default, MathJax, loads a script from a CDN: offline, a reader sees raw TeX. Here each
``$...$`` and ``$$...$$`` becomes MathML (latex2mathml, pure Python), which browsers render
natively (MathML Core: Chromium 109+, Firefox, Safari). A formula latex2mathml cannot convert
fails the build (Sphinx runs with warnings as errors), never a page with raw TeX.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx
from sphinx.errors import ExtensionError
from sphinx.writers.html5 import HTML5Translator


def _mathml(latex: str, display: str, node: nodes.Element) -> str:
    try:
        return convert(latex.strip(), display=display)
    except Exception as exc:  # latex2mathml raises its own and builtin errors
        source = f"{node.source}:{node.line}" if node.source else "a page"
        raise ExtensionError(f"cannot render the math {latex!r} in {source}: {exc}") from exc


def visit_inline(self: HTML5Translator, node: nodes.math) -> None:
    """An inline formula as MathML inside a span (the span keeps Sphinx's CSS class)."""
    self.body.append(f'<span class="math">{_mathml(node.astext(), "inline", node)}</span>')
    raise nodes.SkipNode


def visit_block(self: HTML5Translator, node: nodes.math_block) -> None:
    """A displayed formula as block MathML inside a div."""
    self.body.append(f'<div class="math">{_mathml(node.astext(), "block", node)}</div>')
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict[str, Any]:
    """Register the renderer; conf.py selects it with ``html_math_renderer = "mathml"``."""
    app.add_html_math_renderer("mathml", (visit_inline, None), (visit_block, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
