"""DKIM signatures (RFC 6376, rsa-sha256, relaxed/simple), added to each letter as it goes out.

A signature covers the Date header, which is set when a letter goes out (`restamped`), so
letters are signed at send time, never when they are built or stored.

The RSA operation runs in OpenSSL through `cryptography`: about 0.5 ms a letter, where
dkimpy's pure-Python RSA takes about 20 ms (docs/performance.md). The tests verify every
signature with dkimpy, an implementation this one shares no code with.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

from .config import DKIMConfig
from .errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

    from .message import Letter

# The fields a reader sees and a forwarder must not change; each is signed when present.
SIGNED_HEADERS = (
    "from", "to", "cc", "reply-to", "subject", "date", "message-id", "mime-version",
    "content-type", "content-transfer-encoding", "list-unsubscribe", "list-unsubscribe-post",
)  # fmt: skip
MIN_KEY_BITS = 1024  # RFC 8301: verifiers refuse shorter RSA keys; 2048 is recommended
_FIELD = re.compile(rb"([^:\r\n]+):((?:[^\r\n]*)(?:\r\n[ \t][^\r\n]*)*)\r\n")
_WSP = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r\n(?=[ \t])")


class DKIMSigner:
    """Signs messages for one domain and selector with one RSA private key."""

    def __init__(self, settings: DKIMConfig) -> None:
        assert settings.selector and settings.domain and settings.private_key
        self.selector = settings.selector
        self.domain = settings.domain.encode("idna").decode("ascii")
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        key = read_private_key(settings)
        self._sign = functools.partial(
            key.sign, padding=padding.PKCS1v15(), algorithm=hashes.SHA256()
        )

    def sign(self, data: bytes) -> bytes:
        """The message (CRLF line ends) with a DKIM-Signature field prepended."""
        head, _, body = data.partition(b"\r\n\r\n")
        fields = _FIELD.findall(head + b"\r\n")
        last = {name.strip().lower(): (name, value) for name, value in fields}
        signed = [name for name in SIGNED_HEADERS if name.encode() in last]
        body_hash = base64.b64encode(hashlib.sha256(_simple_body(body)).digest()).decode()
        tags = (
            f"v=1; a=rsa-sha256; c=relaxed/simple; d={self.domain}; s={self.selector};\r\n"
            f" t={int(time.time())}; h={':'.join(signed)};\r\n bh={body_hash};\r\n b="
        )
        hashed = b"".join(_relaxed(*last[name.encode()]) + b"\r\n" for name in signed)
        hashed += _relaxed(b"DKIM-Signature", b" " + tags.encode())
        signature = self._sign(hashed)
        value = base64.b64encode(signature).decode()
        folded = "\r\n ".join(value[i : i + 72] for i in range(0, len(value), 72))
        return f"DKIM-Signature: {tags}{folded}\r\n".encode() + data

    def sign_letter(self, letter: Letter) -> Letter:
        """The letter with its message signed."""
        return replace(letter, data=self.sign(letter.data))


def _relaxed(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2: name lower-cased; value unfolded, runs of spaces made one, ends trimmed."""
    value = _WSP.sub(b" ", _FOLD.sub(b"", value)).strip(b" ")
    return name.strip().lower() + b":" + value


def _simple_body(body: bytes) -> bytes:
    """RFC 6376 3.4.3: the body with its trailing empty lines removed, ending in one CRLF."""
    return body.rstrip(b"\r\n") + b"\r\n"


def read_private_key(settings: DKIMConfig) -> RSAPrivateKey:
    """The PEM key named by ``dkim.private_key``; ConfigError (never showing the key) otherwise."""
    # cryptography is imported only when a campaign signs: 7 ms at every start otherwise.
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    path = settings.private_key
    assert path is not None
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"dkim.private_key {path}: cannot read the key: {exc.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(
            f"dkim.private_key {path}: not a PEM RSA private key without a passphrase"
        ) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"dkim.private_key {path}: not an RSA key (rsa-sha256 needs one)")
    if key.key_size < MIN_KEY_BITS:
        raise ConfigError(
            f"dkim.private_key {path}: a {key.key_size}-bit key is refused by receivers;"
            " use 2048 bits"
        )
    return key


def letter_signer(settings: DKIMConfig) -> Callable[[Letter], Letter]:
    """What to apply to each letter just before it is sent: a signer, or nothing when unset."""
    if not settings.enabled:
        return _unsigned
    return DKIMSigner(settings).sign_letter


def _unsigned(letter: Letter) -> Letter:
    return letter


def alignment_problem(settings: DKIMConfig, sender: str) -> str | None:
    """Why letters from ``sender`` would fail DMARC alignment with the signing domain, if so.

    Relaxed alignment: the From domain and the signing domain are the same, or one is under the
    other (a public-suffix list would be needed to be exact about organisational domains).
    """
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
