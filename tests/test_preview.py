"""Preview: letters decoded for people, .eml files and the index.html page."""

from __future__ import annotations

import email.policy
import hashlib
import io
import re
import shutil
import subprocess
from dataclasses import replace
from email.headerregistry import Address
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rich.console import Console

from mailaction.campaign import PreparedRow
from mailaction.contacts import Contact
from mailaction.errors import Problem
from mailaction.message import Letter, LetterBuilder, prepare_letter
from mailaction.preview import html_to_text, letter_parts, print_letter, write_preview
from mailaction.template import LetterTemplate, RenderedLetter
from mailaction.validate import LetterRules

PDF = b"%PDF-1.4\n" + bytes(range(256)) * 8
SCRIPT = "<script>alert(1)</script>"


def make_letter(
    row: int,
    to: str,
    subject: str,
    text: str | None = "Dear Jane,\n\nThank you.\n",
    html: str | None = None,
    name: str = "Jane Doe",
    attachments: tuple[tuple[str, bytes], ...] = (),
) -> Letter:
    """A letter as the message builder makes one: policy SMTP, CRLF, RFC 2047 headers."""
    message = EmailMessage(policy=email.policy.SMTP)
    message["From"] = Address("Campaign Team", addr_spec="team@example.org")
    message["To"] = Address(name, addr_spec=to)
    message["Reply-To"] = "replies@example.org"
    message["Subject"] = subject
    message["Date"] = "Mon, 02 Jun 2025 09:00:00 +0000"
    message["Message-ID"] = f"<row-{row}@example.org>"
    if text is not None:
        message.set_content(text)
        if html is not None:
            message.add_alternative(html, subtype="html")
    else:
        message.set_content(html or "", subtype="html")
    for file_name, payload in attachments:
        message.add_attachment(payload, "application", "pdf", filename=file_name)
    data = message.as_bytes()
    return Letter(
        row=row,
        contact_id=to,
        sender="team@example.org",
        recipients=(to,),
        subject=subject,
        message_id=message["Message-ID"],
        fingerprint=hashlib.sha256(data).hexdigest(),
        data=data,
    )


def ready(letter: Letter) -> PreparedRow:
    return PreparedRow(letter.row, letter.contact_id, letter, [])


@pytest.fixture
def letters() -> list[Letter]:
    """Plain, text+HTML, with an attachment, non-ASCII, and two letters to one address."""
    return [
        make_letter(2, "jane@example.org", "Plain hello"),
        make_letter(
            3,
            "bob@example.com",
            "Alternative hello",
            text="Hello **Bob**,\n\n- one\n- two\n",
            html="<p>Hello <strong>Bob</strong>,</p><ul><li>one</li><li>two</li></ul>",
            name="Bob",
        ),
        make_letter(4, "ann@example.net", "With a report", attachments=(("report 2025.pdf", PDF),)),
        make_letter(5, "zoe@example.org", "Grüße aus Köln — 10 € Spende", name="Zoë Ångström"),
        make_letter(6, "jane@example.org", "Plain hello again"),
    ]


class PageParser(HTMLParser):
    """The tags and attributes of the top-level page (srcdoc content stays an attribute)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def page_tags(index: Path) -> list[tuple[str, dict[str, str | None]]]:
    parser = PageParser()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser.tags


def test_eml_files_hold_the_exact_letter_bytes(tmp_path: Path, letters: list[Letter]) -> None:
    result = write_preview(map(ready, letters), tmp_path / "out")

    assert result.written == len(letters) and result.skipped == 0
    emls = sorted((tmp_path / "out").glob("*.eml"))
    assert len(emls) == len(letters)
    assert sorted(path.read_bytes() for path in emls) == sorted(letter.data for letter in letters)
    assert (tmp_path / "out" / "00004-ann@example.net.eml").read_bytes() == letters[2].data


def test_file_names_are_safe_and_unique(tmp_path: Path) -> None:
    addresses = [
        (7, "jane@example.org"),
        (7, "jane@example.org"),
        (7, "JANE@example.org"),
        (8, "josé.ñúñez@exämple.org"),
        (9, "../a/b\\c d'e\"f@example.org"),
        (10, "x" * 120 + "@example.org"),
        (11, ""),
    ]
    letter = make_letter(7, "jane@example.org", "Hello")
    awkward = [replace(letter, row=row, recipients=(to,)) for row, to in addresses]
    write_preview(map(ready, awkward), tmp_path)

    names = sorted(path.name for path in tmp_path.glob("*.eml"))
    assert len(names) == len(awkward)
    assert len({name.lower() for name in names}) == len(names)
    for name in names:
        assert re.fullmatch(r"[A-Za-z0-9._@+-]+\.eml", name) and len(name) <= 80, name
    assert "00008-jose.nunez@example.org.eml" in names and "00011-letter.eml" in names


def test_index_lists_every_letter_and_links_resolve(tmp_path: Path, letters: list[Letter]) -> None:
    result = write_preview(map(ready, letters), tmp_path)

    assert result.index == tmp_path / "index.html"
    page = result.index.read_text(encoding="utf-8")
    assert "<title>Preview: 5 letters</title>" in page
    for subject in ("Plain hello", "Alternative hello", "With a report", "Plain hello again"):
        assert subject in page
    assert "Grüße aus Köln — 10 € Spende" in page
    tags = page_tags(result.index)
    ids = {attrs["id"] for _, attrs in tags if attrs.get("id")}
    hrefs = [attrs["href"] or "" for tag, attrs in tags if tag == "a"]
    eml_links = [href for href in hrefs if not href.startswith("#")]
    assert len(set(eml_links)) == len(letters)
    assert all((tmp_path / unquote(href)).is_file() for href in eml_links)
    anchors = [href[1:] for href in hrefs if href.startswith("#")]
    assert anchors and all(anchor in ids for anchor in anchors)
    assert {f"letter-{n}" for n in range(len(letters))} <= set(anchors)


def test_index_shows_html_in_a_sandboxed_iframe_and_text_in_pre(
    tmp_path: Path, letters: list[Letter]
) -> None:
    write_preview(map(ready, letters), tmp_path)

    tags = page_tags(tmp_path / "index.html")
    frames = [attrs for tag, attrs in tags if tag == "iframe"]
    assert len(frames) == 1
    assert "sandbox" in frames[0] and not (frames[0]["sandbox"] or "").split()
    assert "<strong>Bob</strong>" in (frames[0]["srcdoc"] or "")
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert page.count("<pre>") == 4
    assert "Attachment: report 2025.pdf (application/pdf, 2.1 kB)" in page


def test_rows_with_problems_are_listed_without_eml(tmp_path: Path, letters: list[Letter]) -> None:
    bad = PreparedRow(
        9,
        "bob@",
        None,
        [
            Problem("contacts.csv", 9, "email", "'bob@' is not a valid address"),
            Problem("letter.txt", 9, "", "undefined variable 'town'"),
        ],
    )
    rows = [ready(letters[0]), bad, ready(letters[1])]

    result = write_preview(rows, tmp_path)

    assert (result.written, result.skipped) == (2, 1)
    assert not list(tmp_path.glob("00009-*"))
    page = result.index.read_text(encoding="utf-8")
    assert "Rows with problems (1)" in page
    assert "contacts.csv:9 (email): &#39;bob@&#39; is not a valid address" in page
    assert "letter.txt:9: undefined variable &#39;town&#39;" in page


def test_contact_data_is_escaped_and_no_script_can_run(tmp_path: Path) -> None:
    hostile = make_letter(
        2,
        "mallory@example.org",
        f"Hi {SCRIPT}",
        text=f"Dear {SCRIPT},\n",
        html=f'<p>Dear {SCRIPT}<img src="x" onerror="alert(2)"></p>',
        name=SCRIPT,
    )
    plain = make_letter(3, "eve@example.org", f"Hi {SCRIPT}", text=f"Dear {SCRIPT}\n", name=SCRIPT)
    problem = Problem("contacts.csv", 4, "name", f"bad value {SCRIPT}")
    rows = [ready(hostile), ready(plain), PreparedRow(4, SCRIPT, None, [problem])]

    write_preview(rows, tmp_path)

    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    tags = page_tags(tmp_path / "index.html")
    assert not [tag for tag, _ in tags if tag in ("script", "img", "object", "embed", "link")]
    assert not [attrs for _, attrs in tags if any(name.startswith("on") for name in attrs)]
    frame = next(attrs for tag, attrs in tags if tag == "iframe")
    assert "sandbox" in frame and not (frame["sandbox"] or "").split()
    assert SCRIPT in (frame["srcdoc"] or "")


def test_index_loads_nothing_from_outside(tmp_path: Path) -> None:
    linked = make_letter(
        2,
        "jane@example.org",
        "Links",
        html='<p><a href="https://example.org/donate">Donate</a><img src="https://example.org/l.png"></p>',
    )
    write_preview([ready(linked)], tmp_path)

    for tag, attrs in page_tags(tmp_path / "index.html"):
        for name in ("src", "href", "action", "data", "poster"):
            assert not re.match(r"\s*(https?:)?//", attrs.get(name) or ""), (tag, attrs)
    page = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "@import" not in page and "url(" not in page


def test_inline_views_are_capped_but_every_eml_is_written(
    tmp_path: Path, letters: list[Letter]
) -> None:
    result = write_preview(map(ready, letters), tmp_path, inline_limit=2)

    assert result.written == len(letters)
    assert len(list(tmp_path.glob("*.eml"))) == len(letters)
    page = result.index.read_text(encoding="utf-8")
    assert "Showing the first 2 of 5 letters" in page
    assert page.count("<article") == 2
    assert all(subject in page for subject in ("Plain hello again", "With a report"))


def test_existing_directory_keeps_unrelated_files(tmp_path: Path, letters: list[Letter]) -> None:
    (tmp_path / "notes.txt").write_text("keep me")

    write_preview(map(ready, letters[:1]), tmp_path)
    write_preview(map(ready, letters[:1]), tmp_path)

    assert (tmp_path / "notes.txt").read_text() == "keep me"
    assert len(list(tmp_path.glob("*.eml"))) == 1


def test_letter_parts_decodes_headers_bodies_and_attachments(letters: list[Letter]) -> None:
    _, alternative, with_file, non_ascii, _ = letters
    assert b"=?utf-8?" in non_ascii.data

    view = letter_parts(non_ascii)
    assert dict(view.headers)["Subject"] == "Grüße aus Köln — 10 € Spende"
    assert dict(view.headers)["To"] == "Zoë Ångström <zoe@example.org>"
    assert [name for name, _ in view.headers] == ["From", "To", "Reply-To", "Subject", "Date"]
    assert (view.text, view.html, view.attachments) == ("Dear Jane,\n\nThank you.\n", None, [])

    both = letter_parts(alternative)
    assert both.text.startswith("Hello **Bob**") and "<strong>Bob</strong>" in (both.html or "")

    attached = letter_parts(with_file)
    assert attached.attachments == [("report 2025.pdf", "application/pdf", len(PDF))]
    assert attached.text == "Dear Jane,\n\nThank you.\n"


def test_print_letter_shows_decoded_headers_body_and_attachments(letters: list[Letter]) -> None:
    console = Console(record=True, width=100)

    print_letter(letters[3], console)
    print_letter(letters[2], console)

    out = console.export_text()
    assert "Row 5 — zoe@example.org" in out
    assert "Grüße aus Köln — 10 € Spende" in out and "Zoë Ångström" in out
    assert "Thank you." in out
    assert "report 2025.pdf" in out and "2.1 kB" in out


def test_print_letter_keeps_escape_sequences_from_the_terminal() -> None:
    letter = make_letter(7, "jane@example.org", "Hi", text="Dear \x1b]0;owned\x07Jane\x1b[2J\n")
    output = io.StringIO()

    print_letter(letter, Console(file=output, force_terminal=True, width=100))

    assert "\x1b]0;" not in output.getvalue() and "\x1b[2J" not in output.getvalue()
    assert "Dear" in output.getvalue() and "Jane" in output.getvalue()


def test_print_letter_renders_html_only_letters_as_text() -> None:
    letter = make_letter(
        7,
        "jane@example.org",
        "HTML only",
        text=None,
        html="<html><head><style>p{color:red}</style></head><body><h1>News</h1>"
        "<p>Read <a href='https://example.org/n'>more</a> [bold]here[/bold]</p>"
        f"<ul><li>first</li><li>second</li></ul><p>{SCRIPT}</p></body></html>",
    )
    console = Console(record=True, width=100)

    print_letter(letter, console)

    out = console.export_text()
    assert "News" in out and "more (https://example.org/n) [bold]here[/bold]" in out
    assert "• first" in out and "• second" in out
    assert "color:red" not in out and "<h1>" not in out and "alert(1)" not in out


def test_html_to_text_keeps_paragraphs_and_preformatted_text() -> None:
    html = "<p>One\n   two</p><p>Three<br>four</p><pre>  a\n    b</pre><p>x&amp;y</p>"

    assert html_to_text(html) == "One two\n\nThree\nfour\n\n  a\n    b\n\nx&y\n"


@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs chromium")
def test_browser_runs_no_injected_script(tmp_path: Path) -> None:
    payload = (
        "<script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">"
    )
    letter = make_letter(
        2, "jane@example.org", f"Hi {payload}", text=f"Dear {payload}", html=f"<p>{payload}</p>"
    )
    write_preview([ready(letter)], tmp_path)

    dom = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom",
         (tmp_path / "index.html").as_uri()],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip

    assert "<title>Preview: 1 letter</title>" in dom
    assert "pwned</title>" not in dom


@pytest.mark.parametrize(
    "name",
    ["Алёна Иванова via Free Maryia Kalesnikava", "王芳 and 佐藤 花子 writing for the Free Maryia Kalesnikava campaign"],
)
def test_long_encoded_display_names_show_as_written(tmp_path: Path, name: str) -> None:
    rendered = RenderedLetter(
        [("From", f"{name} <letters@example.org>"), ("To", "minister@example.org"), ("Subject", name)],
        "Dear Minister,\n",
        [],
    )
    letter = LetterBuilder("campaign", tmp_path).build(rendered, "ana@example.org", 2)
    headers = dict(letter_parts(letter).headers)
    assert headers["From"] == f"{name} <letters@example.org>"
    assert headers["Subject"] == name


def test_a_new_preview_removes_the_letters_of_the_last_one_and_nothing_else(
    tmp_path: Path, letters: list[Letter]
) -> None:
    mine = tmp_path / "00099-mine@example.org.eml"
    mine.write_bytes(b"Subject: kept\r\n\r\nMine.\r\n")
    write_preview(map(ready, letters), tmp_path)
    assert len(list(tmp_path.glob("*.eml"))) == len(letters) + 1

    result = write_preview(map(ready, letters[:1]), tmp_path)

    remaining = sorted(path.name for path in tmp_path.glob("*.eml"))
    assert remaining == sorted([mine.name, unquote(first_eml_link(result.index))])
    assert mine.read_bytes().startswith(b"Subject: kept")


def test_a_hostile_manifest_removes_nothing_outside_the_folder(tmp_path: Path, letters: list[Letter]) -> None:
    outside = tmp_path / "outside.eml"
    outside.write_text("keep")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / ".mailaction-preview").write_text("../outside.eml\n/etc/hostname\n")

    write_preview(map(ready, letters[:1]), tmp_path / "out")

    assert outside.read_text() == "keep"


def first_eml_link(index: Path) -> str:
    return next(
        attrs["href"] or ""
        for tag, attrs in page_tags(index)
        if tag == "a" and not (attrs["href"] or "").startswith("#")
    )


def test_non_ascii_local_part_previews_in_terminal_file_and_index(tmp_path: Path) -> None:
    rendered = RenderedLetter(
        [("From", "Jörg <jörg@example.org>"), ("To", "jörg@example.org"), ("Subject", "Grüße")],
        "Liebe Jörg,\n",
        [],
    )
    letter = LetterBuilder("campaign", tmp_path).build(rendered, "jörg@example.org", 2)
    assert letter.smtputf8
    assert dict(letter_parts(letter).headers)["To"] == "jörg@example.org"
    console = Console(file=io.StringIO(), width=100)
    print_letter(letter, console)
    assert "jörg@example.org" in console.file.getvalue()
    result = write_preview([PreparedRow(2, letter.contact_id, letter, [])], tmp_path / "out")
    assert result.written == 1
    assert "Grüße" in result.index.read_text(encoding="utf-8")


PROPERTY_TEMPLATES = {
    "plain": "",
    "markdown": "Content-Type: text/markdown\n",
    "html": "Content-Type: text/html\n",
}
LOCAL_PARTS = st.text(st.characters(categories=("Ll", "Lu", "Lo", "Nd")), min_size=1, max_size=12)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    kind=st.sampled_from(sorted(PROPERTY_TEMPLATES)),
    local=LOCAL_PARTS,
    domain=st.sampled_from(["example.org", "bücher.example", "例え.example"]),
    name=st.text(max_size=40),
    subject=st.text(max_size=60),
    body=st.text(max_size=200),
)
def test_every_letter_validate_accepts_previews(
    tmp_path: Path, kind: str, local: str, domain: str, name: str, subject: str, body: str
) -> None:
    template = LetterTemplate.from_string(
        'From: "{{ name }}" <campaign@example.org>\nTo: {{ email }}\nSubject: {{ subject }}\n'
        f"{PROPERTY_TEMPLATES[kind]}\nDear {{{{ name }}}},\n\n{{{{ body }}}}\n",
        "letter.txt",
        tmp_path,
    )
    values = {"email": f"{local}@{domain}", "name": name, "subject": subject, "body": body}
    contact = Contact(2, values, "contacts.csv")
    letter, problems = prepare_letter(
        template.render(contact), contact, values["email"], LetterBuilder("p", tmp_path), LetterRules()
    )
    if letter is None:
        assert problems
        return
    console = Console(file=io.StringIO(), width=80)
    print_letter(letter, console)
    assert console.file.getvalue()
    out = tmp_path / "out"
    result = write_preview([PreparedRow(2, letter.contact_id, letter, [])], out)
    assert result.written == 1
    assert len(list(out.glob("*.eml"))) == 1
    assert "<article" in result.index.read_text(encoding="utf-8")
    shutil.rmtree(out)
