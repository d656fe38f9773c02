"""One-click unsubscribe headers (RFC 2369 List-Unsubscribe, RFC 8058 List-Unsubscribe-Post).

They are added to each rendered letter as if the template had them, so they are validated,
built and DKIM-signed like the template's own headers.
"""

from __future__ import annotations

import re
from dataclasses import replace

from .config import CampaignConfig
from .contacts import Contact
from .errors import Problem
from .template import LetterTemplate, RenderedLetter

ONE_CLICK = "List-Unsubscribe=One-Click"
_SPACE_IN_TARGET = re.compile(r"<[^<>]*\s[^<>]*>")


class UnsubscribeHeaders:
    """Adds List-Unsubscribe (and List-Unsubscribe-Post for a URL) to every letter, when set."""

    def __init__(self, settings: CampaignConfig) -> None:
        targets = []
        if settings.unsubscribe_url:
            targets.append(f"<{settings.unsubscribe_url}>")
        if settings.unsubscribe_mailto:
            mailto = settings.unsubscribe_mailto.removeprefix("mailto:")
            targets.append(f"<mailto:{mailto}?subject=unsubscribe>")
        self._template: LetterTemplate | None = None
        if targets:
            lines = [f"List-Unsubscribe: {', '.join(targets)}"]
            # RFC 8058 3.1: the POST goes to the HTTPS URI; a mailto alone takes none.
            if settings.unsubscribe_url:
                lines.append(f"List-Unsubscribe-Post: {ONE_CLICK}")
            source = (
                "campaign.unsubscribe_url"
                if settings.unsubscribe_url
                else "campaign.unsubscribe_mailto"
            )
            self._template = LetterTemplate.from_string("\n".join(lines) + "\n\n", source)

    def add_to(self, rendered: RenderedLetter, contact: Contact) -> RenderedLetter:
        """``rendered`` with the headers rendered for ``contact`` appended (unchanged when off)."""
        if self._template is None:
            return rendered
        extra = self._template.render(contact)
        problems = rendered.problems + extra.problems
        value = extra.header("List-Unsubscribe") or ""
        if _SPACE_IN_TARGET.search(value):
            problems.append(Problem(
                contact.source, contact.row, "List-Unsubscribe",
                f"the unsubscribe URL has a space: {value!r}; pass values through |urlencode",
            ))  # fmt: skip
        return replace(rendered, headers=rendered.headers + extra.headers, problems=problems)
