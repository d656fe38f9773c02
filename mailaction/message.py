"""Rendered letter → bytes ready for SMTP: MIME structure, envelope and deterministic Message-ID."""

from __future__ import annotations

import email.policy
import email.utils
import hashlib
import json
import mimetypes
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import idna
import markdown

from .errors import TemplateError

if TYPE_CHECKING:
    from .template import RenderedLetter

# Headers whose values are address lists; Bcc only feeds the envelope.
ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender"})
RECIPIENT_HEADERS = ("To", "Cc", "Bcc")
# Template headers that never reach the message as written: the builder sets these itself.
_NOT_COPIED = frozenset(
    {"attachment", "bcc", "content-type", "content-transfer-encoding", "date", "message-id",
     "mime-version"}
)  # fmt: skip
_MARKDOWN_EXTENSIONS = ("extra", "sane_lists")
_NO_DOMAIN = "mailaction.invalid"  # Message-ID domain when From has no ASCII-encodable domain
HTML_DOCUMENT = (
    '<!DOCTYPE html>\n<html>\n<head>\n<meta charset="utf-8">\n</head>\n<body>\n{}\n</body>\n'
    "</html>\n"
)


@dataclass(frozen=True)
class Letter:
    """One letter ready for SMTP: envelope, identity and the message bytes."""

    row: int
    contact_id: str
    sender: str  # envelope MAIL FROM
    recipients: tuple[str, ...]  # envelope RCPT TO: To + Cc + Bcc, de-duplicated, in order
    subject: str
    message_id: str  # "<...@domain>", deterministic from campaign + contact id
    fingerprint: str  # hash of the letter's content, independent of Date and Message-ID
    data: bytes  # the whole message, CRLF line endings, Bcc removed
    smtputf8: bool = False  # an address needs SMTPUTF8 (non-ASCII local part)


@dataclass(frozen=True)
class Attachment:
    """A file attached to every letter that names it, read once per builder."""

    filename: str
    content_type: str  # "application/pdf"
    data: bytes
    digest: str  # sha256 hex of ``data``


@dataclass(frozen=True)
class Envelope:
    """Who a letter is from and to, as SMTP needs it."""

    sender: str
    recipients: tuple[str, ...]
    domain: str  # ASCII domain of the From address, for the Message-ID
    smtputf8: bool


def make_message_id(campaign: str, contact_id: str, domain: str) -> str:
    """The Message-ID of a contact's letter in a campaign: the same on every run."""
    key = f"{campaign}\0{contact_id}".encode()
    return f"<{hashlib.sha256(key).hexdigest()[:32]}@{domain}>"


@lru_cache(maxsize=4096)
def parse_addresses(value: str) -> tuple[tuple[str, str], ...]:
    """(display name, address) pairs of an address header, domains IDNA-encoded where possible."""
    return tuple(
        (name, smtp_address(address))
        for name, address in email.utils.getaddresses([value])
        if address
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


def letter_envelope(rendered: RenderedLetter) -> Envelope:
    """Envelope sender and recipients from From, To, Cc and Bcc."""
    senders = [address for value in rendered.all("From") for _, address in parse_addresses(value)]
    sender = senders[0] if senders else ""
    seen: set[str] = set()
    recipients: list[str] = []
    for name in RECIPIENT_HEADERS:
        for value in rendered.all(name):
            for _, address in parse_addresses(value):
                key = address.casefold()
                if key not in seen:
                    seen.add(key)
                    recipients.append(address)
    domain = sender.rpartition("@")[2]
    return Envelope(
        sender,
        tuple(recipients),
        domain if domain.isascii() and domain else _NO_DOMAIN,
        not _ascii_addresses(rendered),
    )


def _ascii_addresses(rendered: RenderedLetter) -> bool:
    """True when every address in every address header can be written in ASCII."""
    return all(
        address.isascii()
        for name, value in rendered.headers
        if name.lower() in ADDRESS_HEADERS and not value.isascii()
        for _, address in parse_addresses(value)
    )


def letter_fingerprint(rendered: RenderedLetter, body: str, attachments: list[Attachment]) -> str:
    """sha256 of what the letter says: headers as rendered, body and attachment contents."""
    content = [rendered.headers, body, [attachment.digest for attachment in attachments]]
    return hashlib.sha256(json.dumps(content).encode("ascii")).hexdigest()


def normalise_body(body: str) -> str:
    """The body with "\\n" line endings only."""
    if "\r" not in body:
        return body
    return body.replace("\r\n", "\n").replace("\r", "\n")


def body_type(rendered: RenderedLetter) -> str:
    """The body kind from the template's Content-Type header: "markdown", "html" or "plain"."""
    value = (rendered.header("Content-Type") or "").partition(";")[0].strip().lower()
    return {"text/markdown": "markdown", "text/html": "html"}.get(value, "plain")


def read_attachment(base_dir: Path, written: str) -> Attachment:
    """The file named by an Attachment header; TemplateError when it cannot be read."""
    path = base_dir / written
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TemplateError(f"attachment {written!r} ({path}) cannot be read: {reason}") from None
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Attachment(path.name, content_type, data, hashlib.sha256(data).hexdigest())


class LetterBuilder:
    """Builds Letters for one campaign; caches what is the same for every letter (attachments)."""

    def __init__(self, campaign: str, base_dir: Path) -> None:
        self.campaign = campaign
        self.base_dir = base_dir
        self._attachments: dict[str, Attachment] = {}
        self._markdown = markdown.Markdown(extensions=list(_MARKDOWN_EXTENSIONS))

    def build(self, rendered: RenderedLetter, contact_id: str, row: int) -> Letter:
        """The letter for one contact, from its rendered (and validated) template."""
        envelope = letter_envelope(rendered)
        message_id = make_message_id(self.campaign, contact_id, envelope.domain)
        attachments = [self.attachment(written) for written in rendered.all("Attachment")]
        body = normalise_body(rendered.body)
        data = self.message_bytes(rendered, body, attachments, message_id, envelope.smtputf8)
        return Letter(
            row=row,
            contact_id=contact_id,
            sender=envelope.sender,
            recipients=envelope.recipients,
            subject=rendered.header("Subject") or "",
            message_id=message_id,
            fingerprint=letter_fingerprint(rendered, body, attachments),
            data=data,
            smtputf8=envelope.smtputf8,
        )

    def attachment(self, written: str) -> Attachment:
        """The attachment named ``written`` (relative to the template's folder), read once."""
        attachment = self._attachments.get(written)
        if attachment is None:
            attachment = self._attachments[written] = read_attachment(self.base_dir, written)
        return attachment

    def markdown_html(self, text: str) -> str:
        """Markdown source as an HTML fragment."""
        try:
            return self._markdown.convert(text)
        finally:
            self._markdown.reset()

    def message_bytes(
        self,
        rendered: RenderedLetter,
        body: str,
        attachments: list[Attachment],
        message_id: str,
        smtputf8: bool,
    ) -> bytes:
        """The whole message, built with the standard library's EmailMessage."""
        policy = email.policy.SMTPUTF8 if smtputf8 else email.policy.SMTP
        message = EmailMessage(policy=policy.clone(cte_type="7bit"))
        for name, value in rendered.headers:
            lower = name.lower()
            if lower in _NOT_COPIED:
                continue
            if lower in ADDRESS_HEADERS:
                message[name] = [_address(pair) for pair in parse_addresses(value)]
            else:
                message[name] = value
        message["Date"] = email.utils.formatdate(localtime=True)
        message["Message-ID"] = message_id
        kind = body_type(rendered)
        if kind == "markdown":
            message.set_content(body)
            html = HTML_DOCUMENT.format(self.markdown_html(body))
            message.add_alternative(html, subtype="html")
        else:
            message.set_content(body, subtype=kind)
        for attachment in attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            message.add_attachment(attachment.data, maintype, subtype, filename=attachment.filename)
        return message.as_bytes()


def _address(pair: tuple[str, str]) -> Address:
    name, address = pair
    local, _, domain = address.rpartition("@")
    return Address(name, local, domain)
