"""Contact values are data: in markdown and HTML letters they show as literal text, never markup."""

from __future__ import annotations

import csv
import email.policy
from email.parser import BytesParser
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailaction.cli import main
from mailaction.contacts import Contact
from mailaction.message import LetterBuilder
from mailaction.preview import letter_parts
from mailaction.template import LetterTemplate, markdown_text
from tests.smtpserver import FaultServer

PAYLOADS = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "<style>body{display:none}</style>",
    "![](http://example.org/t.png)",
    "[bank](http://example.org/)",
    "<a href='http://example.org/'>bank</a>",
    "**bold** _it_ `code` # heading",
    "&amp; &lt;b&gt;",
    "1. a list?",
]
MARKDOWN_LETTER = (
    "To: {{ email }}\nFrom: Campaign <campaign@example.org>\nSubject: Hello\n"
    "Content-Type: text/markdown\n\nDear **{{ name }}**,\n\n{{ name }}\n\nYours,\nAnn\nTown\n"
)


class _Html(HTMLParser):
    """Tags, attributes and text of an HTML document."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def build(template: str, name: str, base_dir: Path) -> tuple[str, str]:
    """(text part, HTML part) of the letter ``template`` makes for a contact called ``name``."""
    rendered = LetterTemplate.from_string(template, base_dir=base_dir).render(
        Contact(2, {"email": "ana@example.org", "name": name}, "contacts.csv")
    )
    assert rendered.problems == []
    view = letter_parts(LetterBuilder("data", base_dir).build(rendered, "ana@example.org", 2))
    return view.text or "", view.html or ""


@pytest.mark.parametrize("payload", PAYLOADS)
def test_markdown_letters_show_contact_values_as_text(tmp_path: Path, payload: str) -> None:
    text, html = build(MARKDOWN_LETTER, payload, tmp_path)
    assert text.count(payload) == 2
    parsed = _Html(html)
    assert set(parsed.tags) == {"html", "head", "meta", "body", "p", "strong", "br"}
    assert "".join(parsed.text).count(payload) == 2
    assert "Yours,\nAnn\nTown" in "".join(parsed.text)  # the template's own line breaks stay


@pytest.mark.parametrize("payload", PAYLOADS)
def test_html_letters_escape_contact_values(tmp_path: Path, payload: str) -> None:
    template = MARKDOWN_LETTER.replace("text/markdown", "text/html").replace("**", "")
    _, html = build(template, payload, tmp_path)
    parsed = _Html(html)
    assert set(parsed.tags) == set()
    assert "".join(parsed.text).count(payload) == 2


def test_trusted_filter_keeps_a_columns_markdown(tmp_path: Path) -> None:
    template = MARKDOWN_LETTER.replace("{{ name }}\n\n", "{{ name | trusted }}\n\n")
    _, html = build(template, "[our site](http://example.org/)", tmp_path)
    assert '<a href="http://example.org/">our site</a>' in html
    assert "Dear [our site](http://example.org/)," in "".join(_Html(html).text)  # elsewhere: text


def test_markdown_text_neutralises_every_syntax_character() -> None:
    assert markdown_text("Ann O'Neil") == "Ann O&#39;Neil"
    assert markdown_text("a\n    b") == "a\n&#32;   b"
    assert markdown_text("Ünïcödé 123") == "Ünïcödé 123"


def test_payloads_arrive_as_text_at_the_server(tmp_path: Path) -> None:
    (tmp_path / "letter.txt").write_text(MARKDOWN_LETTER, encoding="utf-8")
    with (tmp_path / "contacts.csv").open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["email", "name"])
        writer.writerows([f"p{n}@example.org", payload] for n, payload in enumerate(PAYLOADS))
    with FaultServer() as server:
        config = tmp_path / "mailaction.toml"
        config.write_text(
            '[campaign]\nname = "data"\ntemplate = "letter.txt"\ncontacts = "contacts.csv"\n'
            f'[smtp]\nhost = "127.0.0.1"\nport = {server.port}\nsecurity = "none"\n',
            encoding="utf-8",
        )
        result = CliRunner().invoke(main, ["send", "--yes", "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert len(server.messages) == len(PAYLOADS)
        for received in server.messages:
            payload = PAYLOADS[int(received.recipients[0][1:].partition("@")[0])]
            text = received.message.get_body(preferencelist=("plain",))
            html = received.message.get_body(preferencelist=("html",))
            assert text is not None and html is not None
            assert text.get_content().count(payload) == 2
            parsed = _Html(html.get_content())
            assert "".join(parsed.text).count(payload) == 2
            assert not {"script", "img", "a", "style"} & set(parsed.tags)


def test_validate_refuses_files_chosen_by_contacts(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "north.pdf").write_bytes(b"%PDF-1.4")
    (tmp_path.parent / "outside.txt").write_text("secret", encoding="utf-8")
    (tmp_path / "letter.txt").write_text(
        "To: {{ email }}\nFrom: campaign@example.org\nSubject: Hi\nAttachment: shared/{{ doc }}\n\nHi\n",
        encoding="utf-8",
    )
    (tmp_path / "contacts.csv").write_text(
        "email,doc\nann@example.org,north.pdf\nbo@example.org,../../../../proc/self/environ\n"
        "cy@example.org,../../outside.txt\n",
        encoding="utf-8",
    )
    config = tmp_path / "mailaction.toml"
    config.write_text(
        '[campaign]\ntemplate = "letter.txt"\ncontacts = "contacts.csv"\nattachments = "shared"\n',
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["validate", "--config", str(config)])
    assert result.exit_code == 2, result.output
    assert "contacts.csv:2" not in result.output
    for row, doc in [(3, "../../../../proc/self/environ"), (4, "../../outside.txt")]:
        assert (
            f"contacts.csv:{row} (Attachment): attachment 'shared/{doc}' comes from the contact list"
        ) in result.output
    assert result.output.count("(from column doc)") == 2


def test_images_naming_an_attachment_show_inline_and_other_files_stay_attached(tmp_path: Path) -> None:
    (tmp_path / "chart.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    (tmp_path / "brief.pdf").write_bytes(b"%PDF-1.4\n")
    template = (
        "To: {{ email }}\nFrom: campaign@example.org\nSubject: Hi\nContent-Type: text/markdown\n"
        "Attachment: chart.png\nAttachment: brief.pdf\n\n"
        '![Chart](./chart.png)\n\n<img src="chart.png" alt="again">\n\n![](http://example.org/x.png)\n'
    )
    rendered = LetterTemplate.from_string(template, base_dir=tmp_path).render(
        Contact(2, {"email": "ana@example.org"}, "contacts.csv")
    )
    letter = LetterBuilder("data", tmp_path).build(rendered, "ana@example.org", 2)
    message = BytesParser(policy=email.policy.default).parsebytes(letter.data)
    assert [part.get_content_type() for part in message.walk()] == [
        "multipart/mixed", "multipart/related", "multipart/alternative", "text/plain", "text/html",
        "image/png", "application/pdf",
    ]  # fmt: skip
    image = next(part for part in message.walk() if part.get_content_type() == "image/png")
    content_id = image["Content-ID"][1:-1]
    assert image.get_content_disposition() == "inline"
    html = message.get_body(preferencelist=("html",)).get_content()
    assert html.count(f'src="cid:{content_id}"') == 2
    assert 'src="http://example.org/x.png"' in html
    assert [part.get_filename() for part in message.iter_attachments()] == ["brief.pdf"]


def test_written_alternatives_escape_values_in_the_html_part_only(tmp_path: Path) -> None:
    template = (
        "To: {{ email }}\nFrom: campaign@example.org\nSubject: Hi\n"
        'Content-Type: multipart/alternative; boundary="b"\n\n'
        "--b\nContent-Type: text/plain\n\nDear {{ name }}\n--b\nContent-Type: text/html\n\n"
        "<p>Dear <b>{{ name }}</b></p>\n--b--\n"
    )
    text, html = build(template, PAYLOADS[0], tmp_path)
    assert text == f"Dear {PAYLOADS[0]}\n"
    parsed = _Html(html)
    assert parsed.tags == ["p", "b"]
    assert "".join(parsed.text).strip() == f"Dear {PAYLOADS[0]}"


def test_a_written_multipart_body_without_parts_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "letter.txt").write_text(
        "To: {{ email }}\nFrom: campaign@example.org\nSubject: Hi\n"
        "Content-Type: multipart/alternative; boundary=b\n\nno parts here\n",
        encoding="utf-8",
    )
    (tmp_path / "contacts.csv").write_text("email\nann@example.org\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["validate", "--template", str(tmp_path / "letter.txt"), "--contacts", str(tmp_path / "contacts.csv")]
    )
    assert result.exit_code == 2
    assert "contacts.csv:2 (body): no part starts with the boundary line '--b'" in result.output


def test_a_written_multipart_body_needs_a_boundary(tmp_path: Path) -> None:
    (tmp_path / "letter.txt").write_text(
        "To: {{ email }}\nFrom: campaign@example.org\nSubject: Hi\n"
        "Content-Type: multipart/alternative\n\n--b\nContent-Type: image/png\n\nx\n",
        encoding="utf-8",
    )
    (tmp_path / "contacts.csv").write_text("email\nann@example.org\n", encoding="utf-8")
    result = CliRunner().invoke(
        main, ["validate", "--template", str(tmp_path / "letter.txt"), "--contacts", str(tmp_path / "contacts.csv")]
    )
    assert result.exit_code == 2
    assert "contacts.csv:2 (body): a multipart body needs a boundary= parameter" in result.output
    text = (tmp_path / "letter.txt").read_text(encoding="utf-8")
    (tmp_path / "letter.txt").write_text(text.replace("alternative", "alternative; boundary=b"), encoding="utf-8")
    result = CliRunner().invoke(
        main, ["validate", "--template", str(tmp_path / "letter.txt"), "--contacts", str(tmp_path / "contacts.csv")]
    )
    assert "contacts.csv:2 (body): a written part is image/png; parts must be text" in result.output


def test_a_content_type_chosen_per_row_still_escapes_values(tmp_path: Path) -> None:
    template = MARKDOWN_LETTER.replace("text/markdown", "text/{{ fmt }}")
    rendered = LetterTemplate.from_string(template, base_dir=tmp_path).render(
        Contact(2, {"email": "ana@example.org", "name": PAYLOADS[0], "fmt": "markdown"}, "contacts.csv")
    )
    view = letter_parts(LetterBuilder("data", tmp_path).build(rendered, "ana@example.org", 2))
    assert "script" not in _Html(view.html or "").tags
    assert "".join(_Html(view.html or "").text).count(PAYLOADS[0]) == 2
