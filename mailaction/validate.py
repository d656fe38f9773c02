"""Checks on a rendered letter and on its built bytes; bad data gives Problems, never exceptions."""

from __future__ import annotations

import base64
import binascii
import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import email_validator
from email_validator import EmailNotValidError, validate_email

from .addresses import list_items, read_mailbox
from .attachments import find_attachment
from .errors import AttachmentError, Problem, shown
from .template import mime_parts

if TYPE_CHECKING:
    from .contacts import Contact
    from .template import RenderedLetter

ADDRESS_HEADERS = frozenset({"from", "sender", "reply-to", "to", "cc", "bcc"})
RECIPIENT_HEADERS = frozenset({"to", "cc", "bcc"})
# RFC 5322 section 3.6: these fields may appear at most once in a message.
SINGLE_HEADERS = frozenset({"from", "sender", "reply-to", "to", "cc", "bcc", "subject"})
CONTENT_TYPES = frozenset({"text/plain", "text/markdown", "text/html", "multipart/alternative"})
MAX_LINE_OCTETS = 998  # RFC 5321 section 4.5.3.1.6, without the CRLF
_CACHE_SIZE = 4096

_LINE_BREAK = re.compile(r"[\r\n\0]")
# RFC 2047 encoded word, found as leniently as mail readers decode them (anywhere in the value).
_ENCODED_WORD = re.compile(r"=\?([^?]*)\?([QqBb])\?([^?]*)\?=")
_QUOTED_PRINTABLE = re.compile(rb"=([0-9A-Fa-f]{2})")
# A subset of what email-validator accepts (plain ASCII, no IDNA, no quoting), checked here
# without its cost; everything else goes to email-validator itself.
_PLAIN_ADDRESS = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)
_SPECIAL_USE_SUFFIXES = tuple("." + name for name in email_validator.SPECIAL_USE_DOMAIN_NAMES)
# "Doe, John <jd@example.org>": one mailbox whose unquoted name holds a character that splits it.
_UNQUOTED_NAME = re.compile(r'\s*[^"<\s][^"<]*[,;:()@][^"<]*<[^<>]*>\s*')


@dataclass(frozen=True)
class LetterRules:
    """Limits a letter must respect."""

    max_message_size: int = 10_000_000
    check_deliverability: bool = False  # email-validator's DNS check; needs the network
    attachments: Path | None = None  # a folder contact values may name attachments in


def check_rendered(
    rendered: RenderedLetter, contact: Contact, base_dir: Path, rules: LetterRules
) -> list[Problem]:
    """Every problem in a rendered letter's headers, body and attachments."""
    problems: list[Problem] = []

    def add(field: str, message: str) -> None:
        problems.append(Problem(contact.source, contact.row, field, message))

    keys = [name.lower() for name, _ in rendered.headers]
    filled: set[str] = set()  # keys of headers with a non-blank value
    for index, (key, (name, value)) in enumerate(zip(keys, rendered.headers)):
        if value.strip():
            filled.add(key)
        injection = _header_injection(value)
        if injection:
            add(name, injection)
        elif key in ADDRESS_HEADERS and key in filled:
            for message in _address_list_problems(value, rules.check_deliverability):
                add(name, message)
        elif key == "attachment":
            literal = index not in rendered.templated
            refusal = _attachment_problem(value, literal, base_dir, rules)
            if refusal:
                add(name, refusal if literal else refusal + _columns_in(value, contact))
        elif key == "content-type" and _media_type(value) not in CONTENT_TYPES:
            add(name, f"{shown(value)} is not supported; use {', '.join(sorted(CONTENT_TYPES))}")
        elif key == "content-type" and rendered.kind == "multipart":
            try:
                mime_parts(value, rendered.body)
            except ValueError as exc:
                add("body", str(exc))
    if len(set(keys)) < len(keys):
        for name, count in _repeated_headers(rendered.headers):
            add(name, f"appears {count} times; a message may have only one {name} header")
    if "from" not in filled:
        add("From", "no sender: the From header is missing or empty")
    if filled.isdisjoint(RECIPIENT_HEADERS):
        add("To", "no recipient: To, Cc and Bcc are all missing or empty")
    if "subject" in keys and "subject" not in filled:  # no Subject at all: a template warning
        add("Subject", "the subject is empty")
    return problems


def check_built(data: bytes, contact: Contact, rules: LetterRules) -> list[Problem]:
    """Problems with a built message's bytes: total size and SMTP line length."""
    problems: list[Problem] = []
    size = len(data)
    if size > rules.max_message_size:
        message = f"the message is {_size(size)}, over the limit of {_size(rules.max_message_size)}"
        problems.append(Problem(contact.source, contact.row, "", message))
    long_line = _first_long_line(data)
    if long_line:
        number, length = long_line
        message = (
            f"line {number} of the message is {length:,} octets long; SMTP allows {MAX_LINE_OCTETS}"
        )
        problems.append(Problem(contact.source, contact.row, "", message))
    return problems


def _header_injection(value: str) -> str | None:
    """Why a header value could smuggle in another header line, or None when it cannot."""
    if _LINE_BREAK.search(value):
        return f"header injection: {shown(value)} contains a line break or NUL character"
    if "=?" in value and any(
        _LINE_BREAK.search(_decode_word(*m.groups())) for m in _ENCODED_WORD.finditer(value)
    ):
        return f"header injection: {shown(value)} hides a line break in an encoded word"
    return None


@lru_cache(maxsize=_CACHE_SIZE)
def _address_list_problems(value: str, check_deliverability: bool) -> tuple[str, ...]:
    """One message per bad item of an address list like "Ann <ann@example.org>, bob@...."."""
    items = [item.strip() for item in list_items(value)]
    messages: list[str] = []
    if "" in items:
        messages.append(f"{shown(value)} has an empty item between commas")
    for item in filter(None, items):
        mailbox = read_mailbox(item)
        address = None if mailbox is None else mailbox[1]
        reason = _address_problem(
            address if address is not None else _bare(item), check_deliverability
        )
        if reason is None and address is None:
            reason = "it cannot be read as one mailbox like 'Name <name@example.org>'"
        if reason is not None:
            messages.append(f"{shown(item)} is not a valid address: {reason}")
    if messages and _UNQUOTED_NAME.fullmatch(value):
        messages[-1] += (
            ' (a name holding a comma, parentheses, @, ; or : must be in double quotes'
            ' in the template, like "{{ name }}" <{{ email }}>)'
        )
    return tuple(messages)


def _address_problem(address: str, check_deliverability: bool = False) -> str | None:
    """Why email-validator rejects one bare address, or None when it is valid."""
    if not check_deliverability and _is_plain_address(address):
        return None
    return _validator_problem(address, check_deliverability)


@lru_cache(maxsize=_CACHE_SIZE)
def _validator_problem(address: str, check_deliverability: bool) -> str | None:
    """email-validator's reason for rejecting ``address``, cached: senders repeat on every row."""
    try:
        validate_email(address, check_deliverability=check_deliverability, strict=True)
    except EmailNotValidError as exc:
        return " ".join(str(exc).split())
    return None


def _is_plain_address(address: str) -> bool:
    """True for common ASCII addresses that email-validator is known to accept."""
    if len(address) > 254 or "--" in address or not _PLAIN_ADDRESS.fullmatch(address):
        return False
    local, _, domain = address.rpartition("@")
    return len(local) <= 64 and not ("." + domain.lower()).endswith(_SPECIAL_USE_SUFFIXES)


def _bare(item: str) -> str:
    """The part of an unreadable item that looks like the address, for email-validator's reason."""
    start, end = item.rfind("<"), item.rfind(">")
    return item[start + 1 : end] if -1 < start < end else item


def _attachment_problem(value: str, literal: bool, base_dir: Path, rules: LetterRules) -> str | None:
    """Why the file an Attachment header names cannot be attached, or None when it can."""
    try:
        size = find_attachment(value, literal, base_dir, rules.attachments).stat().st_size
    except AttachmentError as exc:
        return str(exc)
    except OSError as exc:  # gone since it was found
        return f"attachment {shown(value)} cannot be read: {exc.strerror}"
    if size > rules.max_message_size:
        return (
            f"attachment {shown(value)} is {_size(size)}, "
            f"over the message size limit of {_size(rules.max_message_size)}"
        )
    return None


def _columns_in(value: str, contact: Contact) -> str:
    """" (from column doc)": the columns whose values the rendered path holds, for messages."""
    columns = [column for column, cell in contact.values.items() if cell and cell in value]
    return f" (from column {', '.join(columns)})" if columns else ""


def _media_type(value: str) -> str:
    """The media type of a Content-Type value, lower case, without parameters."""
    return value.partition(";")[0].strip().lower()


def _first_long_line(data: bytes) -> tuple[int, int] | None:
    """(line number, length) of the first line over the SMTP limit, or None."""
    lines = data.split(b"\n")
    # Every line but the last still ends with its CR.
    if max(map(len, lines)) <= MAX_LINE_OCTETS + 1:
        return None
    return next(
        (number, len(line.rstrip(b"\r")))
        for number, line in enumerate(lines, 1)
        if len(line.rstrip(b"\r")) > MAX_LINE_OCTETS
    )


def _repeated_headers(headers: list[tuple[str, str]]) -> list[tuple[str, int]]:
    """(name as first written, count) for single-instance headers the template repeats."""
    counts = Counter(name.lower() for name, _ in headers)
    repeated = {key for key, count in counts.items() if count > 1 and key in SINGLE_HEADERS}
    if not repeated:
        return []
    first: dict[str, str] = {}
    for name, _ in headers:
        first.setdefault(name.lower(), name)
    return [(first[key], counts[key]) for key in sorted(repeated)]


def _decode_word(charset: str, encoding: str, text: str) -> str:
    """The text of one RFC 2047 encoded word; "" when it does not decode."""
    try:
        raw = text.encode("ascii")
        if encoding in "Bb":
            data = base64.b64decode(raw + b"=" * (-len(raw) % 4))
        else:
            data = _QUOTED_PRINTABLE.sub(
                lambda m: bytes.fromhex(m[1].decode()), raw.replace(b"_", b" ")
            )
        return data.decode(charset.partition("*")[0] or "ascii", "replace")
    except (UnicodeError, binascii.Error, LookupError):
        return ""


def _size(octets: int) -> str:
    """A size for people: "812.3 KB", "10.5 MB"."""
    if octets >= 1_000_000:
        return f"{octets / 1_000_000:.1f} MB"
    return f"{octets / 1000:.1f} KB"
