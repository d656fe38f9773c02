"""DKIM signatures (RFC 6376) with dkimpy, added to each letter just before it is sent.

A signature covers the Date header, which is set when a letter goes out (`restamped`), so
letters are signed at send time, never when they are built or stored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import dkim  # type: ignore[import-untyped]
import dkim.crypto  # type: ignore[import-untyped]

from .config import DKIMConfig
from .errors import ConfigError

if TYPE_CHECKING:
    from .message import Letter

# The fields a reader sees and a forwarder must not change; each is signed when present.
SIGNED_HEADERS = (
    b"from", b"to", b"cc", b"reply-to", b"subject", b"date", b"message-id", b"mime-version",
    b"content-type", b"content-transfer-encoding", b"list-unsubscribe", b"list-unsubscribe-post",
)  # fmt: skip


class DKIMSigner:
    """Signs messages for one domain and selector with one private key."""

    def __init__(self, settings: DKIMConfig) -> None:
        assert settings.selector and settings.domain and settings.private_key
        self.selector = settings.selector.encode("ascii")
        self.domain = settings.domain.encode("idna")
        self._key = read_private_key(settings)

    def sign(self, data: bytes) -> bytes:
        """The message with a DKIM-Signature field prepended (relaxed/simple, rsa-sha256)."""
        message = dkim.DKIM(data)
        present = {name.lower() for name, _ in message.headers}
        signed = [name for name in SIGNED_HEADERS if name in present]
        field: bytes = message.sign(self.selector, self.domain, self._key, include_headers=signed)
        return field + data

    def sign_letter(self, letter: Letter) -> Letter:
        """The letter with its message signed."""
        return replace(letter, data=self.sign(letter.data))


def read_private_key(settings: DKIMConfig) -> bytes:
    """The PEM key named by ``dkim.private_key``; ConfigError (never showing the key) otherwise."""
    path = settings.private_key
    assert path is not None
    try:
        key = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"dkim.private_key {path}: cannot read the key: {exc.strerror}") from None
    try:
        dkim.crypto.parse_pem_private_key(key)
    except (dkim.crypto.UnparsableKeyError, ValueError, IndexError):
        raise ConfigError(f"dkim.private_key {path}: not a PEM RSA private key") from None
    return key


def letter_signer(settings: DKIMConfig) -> Callable[[Letter], Letter]:
    """What to apply to each letter just before it is sent: a signer, or nothing when unset."""
    if not settings.enabled:
        return _unsigned
    return DKIMSigner(settings).sign_letter


def _unsigned(letter: Letter) -> Letter:
    return letter


def alignment_problem(settings: DKIMConfig, sender: str) -> str | None:
    """Why letters from ``sender`` would fail DMARC alignment with the signing domain, if they do."""
    if not settings.enabled or not sender:
        return None
    assert settings.domain is not None
    domain = settings.domain.lower().rstrip(".")
    from_domain = sender.rpartition("@")[2].lower().rstrip(".")
    if (
        from_domain == domain
        or from_domain.endswith(f".{domain}")
        or domain.endswith(f".{from_domain}")
    ):
        return None
    return (
        f"From domain {from_domain!r} does not align with dkim.domain {domain!r}: "
        "DMARC checks at the recipients' providers will fail"
    )
