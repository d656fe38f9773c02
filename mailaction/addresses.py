"""Address headers read one way: the mailboxes validation checks are the ones the message carries."""

from __future__ import annotations

import re
from email.utils import getaddresses
from functools import lru_cache

import idna

# "addr" or "Display Name <addr>" without specials in the display name: getaddresses agrees.
_PLAIN_MAILBOX = re.compile(
    r'(?:([^"<>@,;:\\()\[\].]*)<([^<>"]*)>|([^\s"<>@,;:\\()\[\]]+@[^\s"<>,;:\\()\[\]]+))'
)
_DISPLAY_SPECIALS = frozenset('"\\@,;:()[]<>')
# Commas separate mailboxes except inside a quoted display name or angle brackets.
_QUOTED = re.compile(r'"(?:\\.|[^"\\])*"')
_LIST_PART = re.compile(r'"(?:\\.|[^"\\])*"?|<[^>]*>?|[^,"<]+|,')
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")  # never part of an address; CR or LF would end the field


def list_items(value: str) -> list[str]:
    """The items of an address list, split at the commas that separate mailboxes (unstripped)."""
    if '"' not in value:
        return value.split(",")
    items: list[str] = []
    current: list[str] = []
    for part in _LIST_PART.findall(value):
        if part == ",":
            items.append("".join(current))
            current = []
        else:
            current.append(part)
    items.append("".join(current))
    return items


def read_mailbox(item: str) -> tuple[str, str] | None:
    """(display name, address) of one mailbox, "addr" or "Name <addr>", or None when it is not
    one. The address is as written; whether it is valid is for email-validator to say."""
    item = item.strip()
    plain = _PLAIN_MAILBOX.fullmatch(item)
    if plain:
        if plain[3] is not None:
            return "", plain[3]
        return " ".join(plain[1].split()), plain[2].strip()
    outside_quotes = _QUOTED.sub("", item)
    if "<" not in outside_quotes and ">" not in outside_quotes:
        return "", item  # a bare address: email-validator judges every character of it
    display, _, angle = outside_quotes.partition("<")
    # The email package reads past stray brackets, specials in names, comments and groups
    # ("team: a@..., b@...;"); refuse them, so what passes reads the same everywhere.
    if (
        "<" in angle
        or not angle.endswith(">")
        or not item.endswith(">")
        or any(char in display for char in _DISPLAY_SPECIALS)
    ):
        return None
    address = item[item.rindex("<") + 1 : -1].strip()
    found = getaddresses([item])
    if [mailbox[1] for mailbox in found] != [address]:
        return None
    return found[0][0], address


@lru_cache(maxsize=4096)
def parse_addresses(value: str) -> tuple[tuple[str, str], ...]:
    """(display name, address) pairs of an address header, domains IDNA-encoded where possible.

    Items that are not one mailbox, and addresses with control characters, are left out:
    validation reports them.
    """
    mailboxes = (read_mailbox(item) for item in list_items(value) if item.strip())
    return tuple(
        (name, smtp_address(address))
        for name, address in filter(None, mailboxes)
        if address and not _CONTROL.search(address)
    )


def smtp_address(address: str) -> str:
    """The address with its domain IDNA-encoded (ASCII) when it can be; unchanged otherwise."""
    if address.isascii():
        return address
    local, _, domain = address.rpartition("@")
    if domain.isascii():
        return address
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except (idna.IDNAError, UnicodeError):
        return address
    return f"{local}@{ascii_domain}"
