"""Rendered letter → bytes ready for SMTP: MIME structure, envelope and deterministic Message-ID."""

from __future__ import annotations

import base64
import binascii
import email.utils
import hashlib
import json
import mimetypes
import re
import secrets
import time
from dataclasses import dataclass, field, replace
from functools import lru_cache
from html import unescape
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from .addresses import parse_addresses
from .attachments import find_attachment
from .errors import AttachmentError, MailactionError, Problem
from .template import mime_parts
from .validate import LetterRules, check_built, check_rendered

if TYPE_CHECKING:
    import markdown

    from .contacts import Contact
    from .template import RenderedLetter

# Headers whose values are address lists; Bcc only feeds the envelope.
ADDRESS_HEADERS = frozenset({"from", "to", "cc", "bcc", "reply-to", "sender"})
# Template headers that never reach the message as written: the builder sets these itself.
BUILDER_HEADERS = frozenset(
    {"attachment", "bcc", "content-type", "content-transfer-encoding", "date", "message-id",
     "mime-version"}
)  # fmt: skip
# nl2br: a single line break stays a line break, as in mailmerge ("Yours,⏎Ann" is two lines).
MARKDOWN_EXTENSIONS = ("extra", "sane_lists", "nl2br")
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
    recipients: tuple[str, ...]  # RCPT TO: To + Cc + Bcc in order, without repeats (any case)
    subject: str
    message_id: str  # "<...@domain>", deterministic from campaign + contact id
    fingerprint: str  # hash of the letter's content, independent of Date and Message-ID
    data: bytes  # the whole message, CRLF line endings, Bcc removed
    smtputf8: bool = False  # an address needs SMTPUTF8 (non-ASCII local part)
    # The attachments whose parts ``data`` holds, shared by the letters naming the same file:
    # the delivery log stores each part once.
    attachments: tuple[Attachment, ...] = field(default=(), compare=False, repr=False)


@dataclass(frozen=True)
class Attachment:
    """A file attached to every letter that names it, read once per builder."""

    filename: str
    content_type: str  # "application/pdf"
    data: bytes
    digest: str  # sha256 hex of ``data``
    part: bytes  # the MIME part: its headers, a blank line and the base64 lines
    path: Path  # where it was read, symlinks resolved: images in the HTML are matched to it
    encoded: bytes  # ``data`` as base64 lines with CRLF

    def inline_part(self, content_id: str) -> bytes:
        """The part shown inside the HTML (an image it names by ``cid:``)."""
        head = (
            f"Content-Type: {self.content_type}\r\nContent-Transfer-Encoding: base64\r\n"
            f"Content-ID: <{content_id}>\r\n"
            f"{_fold('Content-Disposition', f'inline; {_filename_parameter(self.filename)}')}\r\n\r\n"
        )
        return head.encode("ascii") + self.encoded


@dataclass(frozen=True)
class Envelope:
    """Who a letter is from and to, as SMTP needs it."""

    sender: str
    recipients: tuple[str, ...]
    domain: str  # ASCII domain of the From address, for the Message-ID
    smtputf8: bool


def restamped(letter: Letter) -> Letter:
    """The letter with its Date header set to now, for a letter built a while before sending."""
    data = letter.data
    found = _DATE_FIELD.search(data, 0, data.find(b"\r\n\r\n"))
    if found is None:
        return letter
    date = b"Date: " + _date_header(int(time.time())).encode("ascii")
    # One copy of the message, and no dataclasses.replace: this runs for every letter sent.
    return Letter(
        letter.row, letter.contact_id, letter.sender, letter.recipients, letter.subject,
        letter.message_id, letter.fingerprint, data[: found.start()] + date + data[found.end() :],
        letter.smtputf8, letter.attachments,
    )  # fmt: skip


@lru_cache(maxsize=2)
def _date_header(second: int) -> str:
    return email.utils.formatdate(second, localtime=True)


def make_message_id(campaign: str, contact_id: str, domain: str) -> str:
    """The Message-ID of a contact's letter in a campaign: the same on every run."""
    key = f"{campaign}\0{contact_id}".encode()
    return f"<{hashlib.sha256(key).hexdigest()[:32]}@{domain}>"


def proof_copy(letter: Letter, address: str) -> Letter:
    """The letter as a proof copy to ``address``, with a Message-ID of its own.

    Each proof is a message of its own: sharing the real letter's Message-ID (or another
    proof's) makes mail programs hide it as a duplicate and thread it with the real one.
    """
    domain = letter.message_id.rpartition("@")[2].rstrip(">")
    message_id = make_message_id(f"proof {secrets.token_hex(16)}", letter.contact_id, domain)
    head, blank, rest = letter.data.partition(b"\r\n\r\n")
    header = b"Message-ID: " + message_id.encode("ascii")
    head = _MESSAGE_ID_FIELD.sub(lambda _: header, head, count=1)
    return replace(letter, recipients=(address,), message_id=message_id, data=head + blank + rest)


_DATE_FIELD = re.compile(rb"^Date: [^\r\n]*", re.MULTILINE)
_MESSAGE_ID_FIELD = re.compile(rb"^Message-ID: [^\r\n]*", re.MULTILINE | re.IGNORECASE)
_IMAGE_SOURCE = re.compile(r"""(<img\b[^>]*?\ssrc=)(["'])([^"'>]*)\2""", re.IGNORECASE)
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def letter_envelope(rendered: RenderedLetter) -> Envelope:
    """Envelope sender and recipients (To, then Cc, then Bcc) from the address headers."""
    found: dict[str, list[str]] = {"from": [], "to": [], "cc": [], "bcc": []}
    ascii_only = True
    for name, value in rendered.headers:
        key = name.lower()
        if key in ADDRESS_HEADERS:
            addresses = [address for _, address in parse_addresses(value)]
            ascii_only = ascii_only and all(address.isascii() for address in addresses)
            if key in found:
                found[key] += addresses
    sender = found["from"][0] if found["from"] else ""
    unique: dict[str, str] = {}
    for address in found["to"] + found["cc"] + found["bcc"]:
        unique.setdefault(address.casefold(), address)
    domain = sender.rpartition("@")[2]
    ascii_domain = domain if domain.isascii() and domain else _NO_DOMAIN
    return Envelope(sender, tuple(unique.values()), ascii_domain, not ascii_only)


def letter_fingerprint(rendered: RenderedLetter, body: str, attachments: list[Attachment]) -> str:
    """sha256 of what the letter says: headers as rendered, attachment contents and body."""
    head = json.dumps([rendered.headers, [attachment.digest for attachment in attachments]])
    digest = hashlib.sha256(head.encode("ascii"))
    digest.update(body.encode())  # after the JSON array, which cannot end any earlier
    if rendered.markup_body is not None:  # the HTML part can differ where the text does not
        digest.update(b"\0" + rendered.markup_body.encode())
    return digest.hexdigest()


def normalise_body(body: str) -> str:
    """The body with "\\n" line endings only."""
    if "\r" not in body:
        return body
    return body.replace("\r\n", "\n").replace("\r", "\n")


def read_attachment(path: Path) -> Attachment:
    """The file at ``path`` as an attachment part; AttachmentError when it cannot be read."""
    try:
        data = path.read_bytes()
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = getattr(exc, "strerror", None) or str(exc)
        raise AttachmentError(f"attachment {path} cannot be read: {reason}") from None
    content_type, compression = mimetypes.guess_type(path.name)
    if content_type is None or compression is not None:  # "a.tar.gz" is gzip data, not a tar
        content_type = "application/octet-stream"
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
    part = (
        f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n"
        f"{_fold('Content-Disposition', f'attachment; {_filename_parameter(path.name)}')}\r\n\r\n"
    ).encode("ascii") + encoded
    digest = hashlib.sha256(data).hexdigest()
    return Attachment(path.name, content_type, data, digest, part, path.resolve(), encoded)


def _filename_parameter(filename: str) -> str:
    """``filename="..."``, or its RFC 2231 form when the name is not plain ASCII."""
    if _PLAIN_ASCII.fullmatch(filename) and not _QUOTED_SPECIALS.search(filename):
        return f'filename="{filename}"'
    return f"filename*=utf-8''{quote(filename, safe='')}"


class LetterBuilder:
    """Builds Letters for one campaign; caches what is the same for every letter (attachments)."""

    def __init__(self, campaign: str, base_dir: Path, attachments: Path | None = None) -> None:
        self.campaign = campaign
        self.base_dir = base_dir
        self.attachments_folder = attachments  # where contact values may name attachments
        self._attachments: dict[tuple[str, bool], Attachment] = {}
        self._markdown = MarkdownRenderer()

    def build(self, rendered: RenderedLetter, contact_id: str, row: int) -> Letter:
        """The letter for one contact, from its rendered (and validated) template."""
        envelope = letter_envelope(rendered)
        message_id = make_message_id(self.campaign, contact_id, envelope.domain)
        attachments = [self.attachment(*named) for named in rendered.attachments()]
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
            attachments=tuple(attachments),
        )

    def attachment(self, written: str, literal: bool = True) -> Attachment:
        """The attachment an Attachment header names (see `find_attachment`), read once."""
        key = (written, literal)
        attachment = self._attachments.get(key)
        if attachment is None:
            path = find_attachment(written, literal, self.base_dir, self.attachments_folder)
            attachment = self._attachments[key] = read_attachment(path)
        return attachment

    def message_bytes(
        self,
        rendered: RenderedLetter,
        body: str,
        attachments: list[Attachment],
        message_id: str,
        smtputf8: bool,
    ) -> bytes:
        """The whole message: header fields, then the body part and the attachment parts."""
        stem = message_id[1:33]  # the hex of the id: boundaries derive from it
        head = self._header_block(rendered, message_id, smtputf8)
        shown: dict[str, Attachment] = {}  # content id -> an attachment the HTML shows
        content = self._content(rendered, body, stem, attachments, shown)
        parts = [content.encode()]
        if shown:
            boundary = f"=_{stem}_r"
            parts = [f'Content-Type: multipart/related; boundary="{boundary}"\r\n\r\n'
                     f"--{boundary}\r\n".encode(), *parts]  # fmt: skip
            for content_id, attachment in shown.items():
                parts += (f"\r\n--{boundary}\r\n".encode(), attachment.inline_part(content_id))
            parts.append(f"\r\n--{boundary}--\r\n".encode())
        attached = [item for item in attachments if item not in shown.values()]
        if not attached:
            return head.encode() + b"".join(parts)
        boundary = f"=_{stem}_m"
        parts = [f'{head}Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n'
                 f"--{boundary}\r\n".encode(), *parts]  # fmt: skip
        for attachment in attached:
            parts += (f"\r\n--{boundary}\r\n".encode(), attachment.part)
        parts.append(f"\r\n--{boundary}--\r\n".encode())
        return b"".join(parts)

    def _header_block(self, rendered: RenderedLetter, message_id: str, utf8: bool) -> str:
        """The template's header fields (encoded and folded) and the builder's own."""
        lines = []
        for name, value in rendered.headers:
            key = name.lower()
            if key in BUILDER_HEADERS:
                continue
            if key in ADDRESS_HEADERS:
                lines.append(_address_field(name, value, utf8))
            else:
                lines.append(_text_field(name, value, utf8))
        lines += (f"Date: {self._now()}", f"Message-ID: {message_id}", "MIME-Version: 1.0")
        return "\r\n".join(lines) + "\r\n"

    def _content(
        self,
        rendered: RenderedLetter,
        body: str,
        stem: str,
        attachments: list[Attachment],
        shown: dict[str, Attachment],
    ) -> str:
        """The body as one text part, or alternatives: text and HTML from markdown, or the parts
        the template wrote. Images naming an attachment are pointed at it and added to ``shown``."""
        kind = rendered.kind
        if kind == "markdown":
            source = body if rendered.markup_body is None else normalise_body(rendered.markup_body)
            html = HTML_DOCUMENT.format(self._markdown(source))
            alternatives = [("plain", body), ("html", html)]
        elif kind == "multipart":
            content_type = rendered.header("Content-Type") or ""
            markup = mime_parts(content_type, normalise_body(rendered.markup_body or body))
            alternatives = [
                (subtype, markup[index][1] if subtype == "html" else text)
                for index, (subtype, text) in enumerate(mime_parts(content_type, body))
            ]
        else:
            alternatives = [(kind, body)]
        alternatives = [
            (subtype, self._show_images(text, attachments, shown) if subtype == "html" else text)
            for subtype, text in alternatives
        ]
        if len(alternatives) == 1:
            return _text_part(*alternatives[0], stem)
        boundary = f"=_{stem}_a"
        parts = "".join(
            f"--{boundary}\r\n{_text_part(subtype, text, stem)}\r\n" for subtype, text in alternatives
        )
        return (
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'
            f"{parts}--{boundary}--\r\n"
        )

    def _show_images(
        self, html: str, attachments: list[Attachment], shown: dict[str, Attachment]
    ) -> str:
        """``html`` with every image that names an attached file pointing at it (``cid:``)."""
        if not attachments or "<img" not in html:
            return html
        by_path = {attachment.path: attachment for attachment in attachments}

        def point(match: re.Match[str]) -> str:
            source = unescape(match[3])
            if _URL_SCHEME.match(source):
                return match[0]
            try:
                path = (self.base_dir / unquote(source)).resolve()
            except (OSError, RuntimeError, ValueError):
                return match[0]
            attachment = by_path.get(path)
            if attachment is None:
                return match[0]
            content_id = f"{attachment.digest[:32]}@mailaction.invalid"
            shown[content_id] = attachment
            return f"{match[1]}{match[2]}cid:{content_id}{match[2]}"

        return _IMAGE_SOURCE.sub(point, html)

    def _now(self) -> str:
        """The Date header value, formatted once per second."""
        return _date_header(int(time.time()))


def prepare_letter(
    rendered: RenderedLetter,
    contact: Contact,
    contact_id: str,
    builder: LetterBuilder,
    rules: LetterRules,
) -> tuple[Letter | None, list[Problem]]:
    """The checked Letter for one contact, or None and every problem found."""
    problems = check_rendered(rendered, contact, builder.base_dir, rules)
    if rendered.problems:
        # A part that failed to render is empty; saying so again under the same field is noise.
        failed = {problem.field.lower() for problem in rendered.problems}
        problems = [*rendered.problems, *(p for p in problems if p.field.lower() not in failed)]
    if problems:
        return None, problems
    try:
        letter = builder.build(rendered, contact_id, contact.row)
    # An attachment can vanish or a value can defeat the encoder after the checks above;
    # that is a problem with this letter, not a crash of the whole run.
    except (MailactionError, OSError, ValueError) as exc:
        return None, [Problem(contact.source, contact.row, "", f"cannot build the message: {exc}")]
    problems = check_built(letter.data, contact, rules)
    return (None if problems else letter), problems


class MarkdownRenderer:
    """Markdown → HTML fragment; blocks that render on their own are converted once and cached."""

    def __init__(self, cache_size: int = 4096) -> None:
        self._markdown: markdown.Markdown | None = None  # made on first use: 6 ms to import
        self._block_html = lru_cache(maxsize=cache_size)(self._convert_block)

    def __call__(self, text: str) -> str:
        """The HTML of ``text``, the same as converting it as one document."""
        parts = [self._block_html(block) for block in markdown_blocks(text)]
        if None in parts:
            return self._convert(text)
        return "\n".join(part for part in parts if part)

    def _convert_block(self, block: str) -> str | None:
        """The HTML of one block, or None when it may change how other blocks render."""
        if _linking(block):
            return None
        if _PLAIN_PARAGRAPH.fullmatch(block):
            return f"<p>{block.rstrip(chr(10)).replace(chr(10), '<br />' + chr(10))}</p>"
        return self._convert(block)

    def _convert(self, text: str) -> str:
        if self._markdown is None:
            import markdown

            self._markdown = markdown.Markdown(extensions=list(MARKDOWN_EXTENSIONS))
        try:
            return self._markdown.convert(text)
        finally:
            self._markdown.reset()


# Syntax that lets one block change another: reference, footnote and abbreviation
# definitions; fenced code, comments and raw HTML blocks, which may contain blank lines.
_LINKING_MARKS = ("]:", "[^", "```", "~~~", "<!", "<?")
_HTML_BLOCK = re.compile(r"^[ \t]*<", re.MULTILINE)
# Lines of words that Markdown turns into one <p> unchanged: no markup, no trailing spaces;
# numeric character references (escaped contact values) pass through Markdown as they are.
_PLAIN_PARAGRAPH = re.compile(r"(?:[^\W\d_](?:[^\W_]|[ ,.;?!']|&#\d+;)*(?<! )(?:\n|\Z))+")


def _linking(block: str) -> bool:
    """True when ``block`` may change how another block renders (none of the marks spans one)."""
    # Looking for one character first is many times faster than for two.
    if any(mark[0] in block and mark in block for mark in _LINKING_MARKS):
        return True
    return "<" in block and _HTML_BLOCK.search(block) is not None


def markdown_blocks(text: str) -> list[str]:
    """``text`` cut at blank lines before paragraphs Markdown renders apart from what precedes.

    Definitions, fences and raw HTML may still tie blocks together: see `_linking`.
    """
    first, *pieces = text.split("\n\n")
    if not first.strip(" \t\n"):  # Markdown may make a code block of leading blank lines
        return [text]
    blocks = [first]
    for piece in pieces:
        start = piece.lstrip("\n")
        # After a blank line, a line starting with a letter starts a new paragraph: it cannot
        # continue a list, quote, code block or definition that came before.
        if start[:1].isalpha():
            blocks.append(start)
        else:
            blocks[-1] += "\n\n" + piece
    return blocks


_MAX_LINE = 78  # RFC 5322 2.1.1: lines SHOULD be at most 78 characters
_MAX_LINE_HARD = 998  # ... and MUST be at most 998
_FOLD_POINT = re.compile(r"(?<=[^ \t])(?=[ \t])")
_PLAIN_ASCII = re.compile(r"[\t\x20-\x7e]*")
_PLAIN_UTF8 = re.compile(r"[^\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]*")
_QUOTED_SPECIALS = re.compile(r'[][\\()<>@,:;".]')  # a display name with these is quoted
_ESCAPED = re.compile(r'[\\"]')
_WORD_TEXT = 48  # encoded text per RFC 2047 word, so "Subject: =?utf-8?q?...?=" fits 78
# RFC 2047 5(3): the characters a "Q" encoded word may carry as they are, even in a phrase.
_Q_LITERAL = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!*+-/"
_Q_BYTE = tuple(
    chr(byte) if byte in _Q_LITERAL else "_" if byte == 0x20 else f"={byte:02X}"
    for byte in range(256)
)


def _fold(name: str, value: str) -> str:
    """``name: value``, with CRLF put before whitespace to keep lines within 78 where it can."""
    line = f"{name}: {value}"
    if len(line) <= _MAX_LINE:
        return line
    first, *pieces = _FOLD_POINT.split(value)
    lines = []
    current = f"{name}: {first}"
    for piece in pieces:
        # Each piece starts with whitespace; a line of whitespace only is not allowed.
        if len(current) + len(piece) > _MAX_LINE and piece.strip(" \t"):
            lines.append(current)
            current = piece
        else:
            current += piece
    lines.append(current)
    return "\r\n".join(lines)


def _plain(value: str, utf8: bool) -> bool:
    """True when ``value`` can be written as it is (no control characters, ASCII unless UTF-8)."""
    if value.isascii():
        return _PLAIN_ASCII.fullmatch(value) is not None
    return utf8 and _PLAIN_UTF8.fullmatch(value) is not None


def _text_field(name: str, value: str, utf8: bool) -> str:
    """An unstructured header field; RFC 2047 encoded words unless it can be written as it is."""
    if _plain(value, utf8):
        field = _fold(name, value)
        if len(field) <= _MAX_LINE_HARD or max(map(len, field.split("\r\n"))) <= _MAX_LINE_HARD:
            return field
    return _fold(name, _encoded_words(value))


@lru_cache(maxsize=4096)
def _address_field(name: str, value: str, utf8: bool) -> str:
    """An address header field, every address written again from its parsed form."""
    mailboxes = (_mailbox(display, address, utf8) for display, address in parse_addresses(value))
    return _fold(name, ", ".join(mailboxes))


def _mailbox(display: str, address: str, utf8: bool) -> str:
    """``address`` or ``display name <address>``, the name quoted or encoded as needed."""
    if not display:
        return address
    if not _plain(display, utf8):
        return f"{_encoded_words(display)} <{address}>"
    if _QUOTED_SPECIALS.search(display):
        escaped = _ESCAPED.sub(r"\\\g<0>", display)
        return f'"{escaped}" <{address}>'
    return f"{display} <{address}>"


def _encoded_words(text: str) -> str:
    """``text`` as RFC 2047 UTF-8 encoded words ("Q" or "B", whichever is shorter)."""
    data = text.encode()
    escaped = len(data.translate(None, _Q_LITERAL + b" "))
    q = len(data) + 2 * escaped <= len(data) * 4 / 3
    limit = _WORD_TEXT if q else _WORD_TEXT // 4 * 3
    chunks: list[str] = []
    chunk: list[str] = []
    used = 0
    for char in text:
        raw = char.encode()
        cost = sum(len(_Q_BYTE[byte]) for byte in raw) if q else len(raw)
        if chunk and used + cost > limit:
            chunks.append("".join(chunk))
            chunk, used = [], 0
        chunk.append(char)
        used += cost
    chunks.append("".join(chunk))
    if q:
        return " ".join(
            f"=?utf-8?q?{''.join(_Q_BYTE[byte] for byte in word.encode())}?=" for word in chunks
        )
    return " ".join(f"=?utf-8?b?{base64.b64encode(word.encode()).decode()}?=" for word in chunks)


def _text_part(subtype: str, text: str, stem: str) -> str:
    """A text part: Content-Type, Content-Transfer-Encoding, a blank line and the encoded text."""
    encoding, encoded = _encode_text(text, stem)
    return (
        f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n{encoded}"
    )


def _encode_text(text: str, stem: str) -> tuple[str, str]:
    """(transfer encoding, text with CRLF line ends): 7bit when it can be, else QP or base64."""
    if not text.endswith("\n"):
        text += "\n"
    # A 7bit part must not contain the boundaries, which all start with "=_<stem>".
    if text.isascii() and "\0" not in text and stem not in text and _short_lines(text):
        return "7bit", text.replace("\n", "\r\n")
    data = text.replace("\n", "\r\n").encode()
    encoded = binascii.b2a_qp(data)
    if len(encoded) > len(data) * 3 // 2:  # mostly non-Latin text: base64 is shorter
        encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")
        return "base64", encoded.decode("ascii")
    return "quoted-printable", encoded.decode("ascii")


def _short_lines(text: str) -> bool:
    """True when no line of ``text`` is longer than 998 characters."""
    return len(text) <= _MAX_LINE_HARD or max(map(len, text.split("\n"))) <= _MAX_LINE_HARD
