"""One identity rule for contacts, campaigns and letters, shared by the contact list and the log."""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable


def contact_key(value: str) -> str:
    """A contact id as the log and duplicate detection compare it.

    Trimmed and in Unicode NFC form; an address (an id holding "@") is also case-folded, so
    ``Ann@Example.org`` re-saved in upper case or in NFD form by another program is the same
    contact.
    """
    value = value.strip()
    if value.isascii():  # already NFC, and case-folding ASCII is lower-casing it
        return value.lower() if "@" in value else value
    value = unicodedata.normalize("NFC", value)
    return value.casefold() if "@" in value else value


def campaign_key(name: str) -> str:
    """A campaign name as the log stores it: trimmed, NFC."""
    return unicodedata.normalize("NFC", name.strip())


def letter_identity(recipients: Iterable[str], fingerprint: str) -> str:
    """What a letter is, whatever key it is logged under: its recipients and its content."""
    who = "\n".join(sorted(contact_key(recipient) for recipient in recipients))
    return hashlib.sha256(f"{who}\0{fingerprint}".encode("utf-8", "surrogatepass")).hexdigest()[:32]
