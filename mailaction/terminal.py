"""Text from contacts, files and servers made safe for the terminal."""

from __future__ import annotations

import re

from rich.text import Text

CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def plain_text(value: object, style: str = "") -> Text:
    """Rich text shown as written: no markup parsed, control characters made visible."""
    return Text(CONTROL_CHARACTERS.sub("\N{REPLACEMENT CHARACTER}", str(value)), style=style)
