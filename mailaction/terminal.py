"""Text from contacts, letters and servers, made safe to print in a terminal."""

from __future__ import annotations

import re

from rich.text import Text

CONTROL_CHARACTERS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def terminal_text(value: object, style: str = "") -> Text:
    """``value`` as rich Text: no markup, control characters (escape sequences) made visible."""
    return Text(CONTROL_CHARACTERS.sub("\N{REPLACEMENT CHARACTER}", str(value)), style=style)
