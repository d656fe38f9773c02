"""Self-contained HTML pages (report, preview index) from the Jinja2 templates in ``html/``.

Every page inlines the one shared stylesheet, loads nothing and runs no script; the templates
are autoescaped, so text from contacts and servers is always shown as text.
"""

from __future__ import annotations

from functools import cache
from typing import Any, TextIO

from jinja2 import Environment, PackageLoader, StrictUndefined

# The page loads nothing and runs nothing: it must work offline and as an email attachment.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'"
# Letters' own HTML runs in sandboxed iframes without scripts; inline images may be data: URLs.
PREVIEW_CSP = f"{REPORT_CSP}; img-src data:"


@cache
def _environment() -> Environment:
    return Environment(
        loader=PackageLoader("mailaction", "html"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def write_page(name: str, out: TextIO, **context: Any) -> None:
    """Render the template ``html/<name>`` into ``out`` piece by piece (iterators stay lazy)."""
    out.writelines(_environment().get_template(name).generate(**context))
