"""Letters as a person will see them: in the terminal, as .eml files and as one HTML page."""

from __future__ import annotations

import email.policy
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import EmailMessage, MIMEPart
from email.parser import BytesParser, HeaderParser
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .htmlpage import PREVIEW_CSP, write_page
from .terminal import terminal_text

if TYPE_CHECKING:
    from .campaign import PreparedRow
    from .message import Letter

SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Date")
INLINE_LIMIT = 500
MAX_FILE_NAME = 80
INDEX_NAME = "index.html"
MANIFEST_NAME = ".mailaction-preview"  # the .eml files a preview wrote there, one name a line
EML_NAME = re.compile(r"[A-Za-z0-9._@+-]+\.eml")


@dataclass(frozen=True)
class LetterView:
    """What a person sees of a letter: decoded headers, text, HTML and attachments."""

    headers: list[tuple[str, str]]  # decoded, in SHOWN_HEADERS order
    text: str | None
    html: str | None
    attachments: list[tuple[str, str, int]]  # file name, content type, decoded size in bytes

    def readable_text(self) -> str:
        """The text part, else a plain-text rendering of the HTML part."""
        if self.text is not None:
            return self.text
        return html_to_text(self.html) if self.html is not None else ""


@dataclass
class PreviewResult:
    """What `write_preview` wrote."""

    written: int
    skipped: int
    index: Path


def letter_parts(letter: Letter) -> LetterView:
    """Decode a letter's headers, bodies and attachment list."""
    message = BytesParser(policy=email.policy.default).parsebytes(letter.data)
    assert isinstance(message, EmailMessage)
    # Header fields as text: raw UTF-8 (SMTPUTF8 letters) decoded here, not by the email package.
    head = letter.data.partition(b"\r\n\r\n")[0].decode("utf-8", "replace")
    raw = HeaderParser(policy=email.policy.compat32).parsestr(head)
    headers = [(name, _decoded(value)) for name in SHOWN_HEADERS for value in raw.get_all(name, [])]
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    bodies = [part for part in (text_part, html_part) if part is not None]
    attachments = [
        (part.get_filename() or "(unnamed)", part.get_content_type(), _decoded_size(part))
        for part in message.walk()
        if not part.is_multipart() and not any(part is body for body in bodies)
    ]
    return LetterView(
        headers=headers,
        text=_content(text_part),
        html=_content(html_part),
        attachments=attachments,
    )


def _decoded(text: str) -> str:
    """A header as a mail reader shows it: UTF-8 kept, RFC 2047 encoded words decoded and joined.

    The email package's default policy puts a space between adjacent encoded words inside an
    address's display name ("M aryia"); RFC 2047 says to drop whitespace there.
    """
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError):  # a malformed encoded word: show it as it is
        return " ".join(text.split())


def _content(part: MIMEPart | None) -> str | None:
    return None if part is None else part.get_content().replace("\r\n", "\n")


def _decoded_size(part: EmailMessage) -> int:
    payload = part.get_payload(decode=True)
    return len(payload) if isinstance(payload, bytes) else 0


def human_size(size: int) -> str:
    """A byte count as people read it: 812 B, 12.3 kB, 4.0 MB."""
    if size < 1000:
        return f"{size} B"
    if size < 999_950:
        return f"{size / 1000:.1f} kB"
    return f"{size / 1_000_000:.1f} MB"


def _title(row: int, recipients: str) -> str:
    return f"Row {row} — {recipients}"


def print_letter(letter: Letter, console: Console) -> None:
    """Print one letter in a panel: decoded headers, readable text, attachments."""
    view = letter_parts(letter)
    headers = Table.grid(padding=(0, 1))
    headers.add_column(style="bold", no_wrap=True)
    headers.add_column()
    for name, value in view.headers:
        headers.add_row(f"{name}:", terminal_text(value))
    parts: list[RenderableType] = [headers, Text(""), terminal_text(view.readable_text().rstrip("\n"))]
    if view.attachments:
        parts.append(Text(""))
        parts.extend(
            terminal_text(_attachment_label(*attachment), style="dim")
            for attachment in view.attachments
        )
    title = terminal_text(_title(letter.row, ", ".join(letter.recipients)))
    console.print(Panel(Group(*parts), title=title, title_align="left"), soft_wrap=False)


def _attachment_label(name: str, kind: str, size: int) -> str:
    return f"Attachment: {name} ({kind}, {human_size(size)})"


class _TextExtractor(HTMLParser):
    """Collects the readable text of an HTML body, with line breaks where blocks end."""

    PARAGRAPHS = frozenset(
        ["p", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "table", "blockquote", "pre", "hr"]
    )
    LINES = frozenset(["br", "div", "tr", "section", "article", "header", "footer", "dd", "dt"])
    HIDDEN = frozenset(["script", "style", "title", "template"])

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.hidden = 0
        self.preformatted = 0
        self.line_start = True
        self.links: list[tuple[str, int]] = []  # href, index of the link's first text part

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._break(tag)
        if tag in self.HIDDEN:
            self.hidden += 1
        elif tag == "li":
            self._newline("\n• ")
        elif tag in ("td", "th"):
            self.handle_data(" ")
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.parts)))
        elif tag == "pre":
            self.preformatted += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in self.HIDDEN:
            self.hidden = max(self.hidden - 1, 0)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            shown = "".join(self.parts[start:])
            if href.startswith(("http:", "https:", "mailto:")) and href not in shown:
                self.handle_data(f" ({href.removeprefix('mailto:')})")
        elif tag == "pre":
            self.preformatted = max(self.preformatted - 1, 0)
        self._break(tag)

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if not self.preformatted:
            data = re.sub(r"\s+", " ", data)
            if self.line_start:
                data = data.lstrip(" ")
        if data:
            self.parts.append(data)
            self.line_start = False

    def _break(self, tag: str) -> None:
        if tag in self.PARAGRAPHS:
            self._newline("\n\n")
        elif tag in self.LINES:
            self._newline("\n")

    def _newline(self, text: str) -> None:
        if self.parts and not self.preformatted:
            self.parts[-1] = self.parts[-1].rstrip(" ")
        self.parts.append(text)
        self.line_start = True

    def text(self) -> str:
        """The collected text, without runs of blank lines."""
        return re.sub(r"\n{3,}", "\n\n", "".join(self.parts)).strip("\n") + "\n"


def html_to_text(html: str) -> str:
    """A plain-text rendering of an HTML body, for terminals."""
    extractor = _TextExtractor()
    extractor.feed(html)
    extractor.close()
    return extractor.text()


@dataclass
class _IndexEntry:
    """One letter in the index; `view` only for the letters shown inline."""

    row: int
    recipients: str
    subject: str
    file_name: str
    view: LetterView | None = None

    @property
    def title(self) -> str:
        return _title(self.row, self.recipients)


@dataclass
class _Index:
    """What index.html lists, gathered while the letters stream by."""

    letters: list[_IndexEntry] = field(default_factory=list)
    problems: list[tuple[int, str, list[str]]] = field(default_factory=list)
    inline_limit: int = INLINE_LIMIT

    @property
    def shown(self) -> int:
        return min(len(self.letters), self.inline_limit)


def write_preview(
    rows: Iterable[PreparedRow], out_dir: Path, *, inline_limit: int = INLINE_LIMIT
) -> PreviewResult:
    """Write one .eml per letter and an index.html showing them; rows with problems get none.

    The .eml files an earlier preview wrote to `out_dir` (listed in its MANIFEST_NAME file) are
    removed first; no other file there is touched.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    _remove_previous(out_dir)
    index = _Index(inline_limit=inline_limit)
    taken: set[str] = set()
    with (out_dir / MANIFEST_NAME).open("w", encoding="utf-8") as manifest:
        for prepared in rows:
            letter = prepared.letter
            if letter is None or prepared.problems:
                messages = [str(problem) for problem in prepared.problems]
                index.problems.append((prepared.row, prepared.contact_id, messages))
                continue
            file_name = eml_file_name(letter.row, letter.recipients, taken)
            manifest.write(file_name + "\n")
            (out_dir / file_name).write_bytes(letter.data)
            entry = _IndexEntry(letter.row, ", ".join(letter.recipients), letter.subject, file_name)
            if len(index.letters) < inline_limit:
                entry.view = letter_parts(letter)
            index.letters.append(entry)
    index_path = out_dir / INDEX_NAME
    with index_path.open("w", encoding="utf-8") as out:
        render_index(index, out)
    return PreviewResult(written=len(index.letters), skipped=len(index.problems), index=index_path)


def _remove_previous(out_dir: Path) -> None:
    """Remove the .eml files the last preview into `out_dir` wrote (as its manifest lists them)."""
    manifest = out_dir / MANIFEST_NAME
    if not manifest.is_file():
        return
    for name in manifest.read_text(encoding="utf-8").splitlines():
        if EML_NAME.fullmatch(name):  # a plain name in this folder, as eml_file_name makes them
            (out_dir / name).unlink(missing_ok=True)


def eml_file_name(row: int, recipients: tuple[str, ...], taken: set[str]) -> str:
    """'00012-jane@example.org.eml': ASCII, [A-Za-z0-9._@+-] only, ≤ 80 characters, not in taken."""
    folded = unicodedata.normalize("NFKD", recipients[0] if recipients else "")
    ascii_only = folded.encode("ascii", "ignore").decode("ascii")
    recipient = re.sub(r"[^A-Za-z0-9._@+-]", "_", ascii_only) or "letter"
    stem = f"{row:05d}-{recipient}"
    suffix, number = ".eml", 1
    while True:
        name = stem[: MAX_FILE_NAME - len(suffix)] + suffix
        # Compared case-insensitively: macOS and Windows file systems treat A.eml and a.eml as one.
        if name.lower() not in taken:
            taken.add(name.lower())
            return name
        number += 1
        suffix = f"-{number}.eml"


def render_index(index: _Index, out: TextIO) -> None:
    """Write the whole index.html page."""
    count = len(index.letters)
    letters = f"{count} letter{'s' if count != 1 else ''}"
    summary = f"{letters} written as .eml files beside this page"
    if index.problems:
        summary += f"; {len(index.problems)} row(s) with problems have no letter"
    write_page(
        "preview.html.j2",
        out,
        csp=PREVIEW_CSP,
        title=f"Preview: {letters}",
        summary=summary,
        index=index,
        attachment_label=_attachment_label,
    )
