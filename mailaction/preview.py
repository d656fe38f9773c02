"""Letters as a person will see them: in the terminal, as .eml files and as one HTML page."""

from __future__ import annotations

import email.policy
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from email.message import EmailMessage
from email.parser import BytesParser, HeaderParser
from html import escape
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .terminal import terminal_text

if TYPE_CHECKING:
    from .campaign import PreparedRow
    from .message import Letter

SHOWN_HEADERS = ("From", "To", "Cc", "Reply-To", "Subject", "Date")
INLINE_LIMIT = 500
MAX_FILE_NAME = 80
INDEX_NAME = "index.html"


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


def _content(part: EmailMessage | None) -> str | None:
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
    parts = [headers, Text(""), terminal_text(view.readable_text().rstrip("\n"))]
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
    """Write one .eml per letter and an index.html showing them; rows with problems get none."""
    out_dir.mkdir(parents=True, exist_ok=True)
    index = _Index(inline_limit=inline_limit)
    taken: set[str] = set()
    for prepared in rows:
        letter = prepared.letter
        if letter is None or prepared.problems:
            messages = [str(problem) for problem in prepared.problems]
            index.problems.append((prepared.row, prepared.contact_id, messages))
            continue
        file_name = eml_file_name(letter.row, letter.recipients, taken)
        (out_dir / file_name).write_bytes(letter.data)
        entry = _IndexEntry(letter.row, ", ".join(letter.recipients), letter.subject, file_name)
        if len(index.letters) < inline_limit:
            entry.view = letter_parts(letter)
        index.letters.append(entry)
    index_path = out_dir / INDEX_NAME
    index_path.write_text(render_index(index), encoding="utf-8")
    return PreviewResult(written=len(index.letters), skipped=len(index.problems), index=index_path)


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


STYLE = """
:root { color-scheme: light; }
body { margin: 0; background: #f6f7f9; color: #1f2328;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 60rem; margin: 0 auto; padding: 2rem 1.25rem 4rem; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.2rem; margin: 2.5rem 0 .75rem; }
.summary, .note { color: #59636e; margin: 0 0 1rem; }
table.list { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid #d1d9e0; }
.list th, .list td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid #e6eaef;
  vertical-align: top; overflow-wrap: anywhere; }
.list th { background: #f0f2f5; font-weight: 600; }
.list td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.list ul { margin: 0; padding-left: 1.1rem; }
.problems td { color: #8a1c1c; }
a { color: #0a58ca; }
article { background: #fff; border: 1px solid #d1d9e0; border-radius: 6px; margin: 1.25rem 0;
  overflow: hidden; }
article h3 { font-size: 1rem; margin: 0; padding: .6rem .9rem; background: #f0f2f5;
  border-bottom: 1px solid #e6eaef; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .15rem .75rem; margin: 0;
  padding: .75rem .9rem; border-bottom: 1px solid #e6eaef; }
dt { color: #59636e; }
dd { margin: 0; overflow-wrap: anywhere; }
iframe { display: block; width: 100%; height: 28rem; border: 0; resize: vertical; background: #fff; }
pre { margin: 0; padding: .9rem; white-space: pre-wrap; overflow-wrap: anywhere;
  font: 14px/1.5 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.footer { display: flex; flex-wrap: wrap; gap: .25rem 1rem; padding: .5rem .9rem;
  border-top: 1px solid #e6eaef; color: #59636e; font-size: .9rem; }
.footer ul { margin: 0; padding: 0; list-style: none; }
"""

# Letters' own HTML runs in sandboxed iframes without scripts; the page itself loads nothing.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"


def render_index(index: _Index) -> str:
    """The whole index.html page."""
    count = len(index.letters)
    letters = f"{count} letter{'s' if count != 1 else ''}"
    title = f"Preview: {letters}"
    summary = f"{letters} written as .eml files beside this page"
    if index.problems:
        summary += f"; {len(index.problems)} row(s) with problems have no letter"
    parts = [
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n',
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n',
        f"<title>{escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n<main>\n",
        f'<h1 id="top">{escape(title)}</h1>\n<p class="summary">{summary}. Nothing was sent.</p>\n',
        _letters_table(index),
        _problems_table(index.problems),
        _letter_views(index),
        "</main>\n</body>\n</html>\n",
    ]
    return "".join(parts)


def _letters_table(index: _Index) -> str:
    rows = []
    for number, entry in enumerate(index.letters):
        row = str(entry.row)
        if entry.view is not None:
            row = f'<a href="#letter-{number}">{row}</a>'
        rows.append(
            f'<tr><td class="num">{row}</td><td>{escape(entry.recipients)}</td>'
            f"<td>{escape(entry.subject)}</td><td>{_eml_link(entry.file_name)}</td></tr>\n"
        )
    return (
        '<table class="list"><thead><tr><th>Row</th><th>Recipients</th><th>Subject</th>'
        f"<th>File</th></tr></thead>\n<tbody>\n{''.join(rows)}</tbody></table>\n"
    )


def _problems_table(problems: list[tuple[int, str, list[str]]]) -> str:
    if not problems:
        return ""
    rows = "".join(
        f'<tr><td class="num">{row}</td><td>{escape(contact_id)}</td><td><ul>'
        + "".join(f"<li>{escape(message)}</li>" for message in messages)
        + "</ul></td></tr>\n"
        for row, contact_id, messages in problems
    )
    return (
        f'<h2 id="problems">Rows with problems ({len(problems)})</h2>\n'
        '<table class="list problems"><thead><tr><th>Row</th><th>Contact</th><th>Problems</th>'
        f"</tr></thead>\n<tbody>\n{rows}</tbody></table>\n"
    )


def _letter_views(index: _Index) -> str:
    if not index.letters:
        return ""
    parts = ["<h2>Letters</h2>\n"]
    if index.shown < len(index.letters):
        parts.append(
            f'<p class="note">Showing the first {index.shown} of {len(index.letters)} letters; '
            "every letter is in its .eml file.</p>\n"
        )
    for number, entry in enumerate(index.letters[: index.shown]):
        assert entry.view is not None
        parts.append(_letter_view(number, entry, entry.view))
    return "".join(parts)


def _letter_view(number: int, entry: _IndexEntry, view: LetterView) -> str:
    headers = "".join(
        f"<dt>{escape(name)}</dt><dd>{escape(value)}</dd>" for name, value in view.headers
    )
    if view.html is not None:
        # A bare `sandbox` grants nothing: no scripts, no forms, no top navigation, no popups.
        body = (
            f'<iframe sandbox srcdoc="{escape(view.html, quote=True)}" '
            f'title="Letter for row {entry.row}" loading="lazy"></iframe>'
        )
    else:
        body = f"<pre>{escape(view.text or '')}</pre>"
    attachments = "".join(
        f"<li>{escape(_attachment_label(*attachment))}</li>" for attachment in view.attachments
    )
    if attachments:
        attachments = f"<ul>{attachments}</ul>"
    return (
        f'<article id="letter-{number}">\n'
        f"<h3>{escape(_title(entry.row, entry.recipients))}</h3>\n"
        f"<dl>{headers}</dl>\n{body}\n"
        f'<div class="footer">{attachments}'
        f'<span>{_eml_link(entry.file_name)} · <a href="#top">back to the list</a></span></div>\n'
        "</article>\n"
    )


def _eml_link(file_name: str) -> str:
    return f'<a href="{escape(quote(file_name))}">{escape(file_name)}</a>'
