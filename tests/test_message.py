"""Message building: headers, envelope, MIME structure, attachments, encodings, identity."""

from __future__ import annotations

import email.policy
import re
import time
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from pathlib import Path

import pytest

from mailaction.errors import TemplateError
from mailaction.message import Letter, LetterBuilder, make_message_id
from mailaction.template import RenderedLetter

FROM = "Campaign Team <team@example.org>"
TO = "Alice Example <alice@example.net>"
BODY = "Dear Alice,\n\nThank you for your support.\n\nThe team\n"
PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4


def rendered(*headers: tuple[str, str], body: str = BODY) -> RenderedLetter:
    """A rendered letter with From, To and Subject unless given, then ``headers``."""
    names = {name.lower() for name, _ in headers}
    defaults = [("From", FROM), ("To", TO), ("Subject", "Hello")]
    return RenderedLetter(
        [pair for pair in defaults if pair[0].lower() not in names] + list(headers), body, []
    )


def build(
    letter: RenderedLetter,
    base_dir: Path | None = None,
    campaign: str = "spring",
    contact: str = "1",
) -> Letter:
    return LetterBuilder(campaign, base_dir or Path.cwd()).build(letter, contact, 2)


def parse(letter: Letter) -> EmailMessage:
    """The letter as a mail client reads it."""
    if letter.smtputf8:
        # BytesParser leaves raw UTF-8 in parsed addresses as surrogate escapes.
        message = Parser(policy=email.policy.default).parsestr(letter.data.decode("utf-8"))
    else:
        message = BytesParser(policy=email.policy.default).parsebytes(letter.data)
    assert isinstance(message, EmailMessage)
    assert not message.defects
    return message


def lines(data: bytes) -> list[bytes]:
    """The message's lines; every one must end in CRLF."""
    assert data.endswith(b"\r\n")
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    return data[:-2].split(b"\r\n")


def text(part: EmailMessage) -> str:
    """A text part's content with "\\n" line endings, as the template had them."""
    return part.get_content().replace("\r\n", "\n")


def raw_headers(data: bytes) -> str:
    return data.partition(b"\r\n\r\n")[0].decode("utf-8")


def test_plain_letter_has_template_headers_and_its_own() -> None:
    letter = build(
        rendered(
            ("Reply-To", "help@example.org"),
            ("X-Campaign", "spring 2025"),
            ("List-Unsubscribe", "<mailto:leave@example.org>"),
        )
    )
    message = parse(letter)
    assert str(message["From"]) == FROM
    assert str(message["To"]) == TO
    assert message["Subject"] == "Hello"
    assert message["Reply-To"] == "help@example.org"
    assert message["X-Campaign"] == "spring 2025"
    assert message["List-Unsubscribe"] == "<mailto:leave@example.org>"
    assert message["MIME-Version"] == "1.0"
    assert message["Message-ID"] == letter.message_id
    assert message["Date"].datetime.timestamp() == pytest.approx(time.time(), abs=5)
    assert message.get_content_type() == "text/plain"
    assert message.get_content_charset() == "utf-8"
    assert message["Content-Transfer-Encoding"] == "7bit"
    assert text(message) == BODY
    assert letter.subject == "Hello"
    assert (letter.row, letter.contact_id) == (2, "1")
    assert letter.sender == "team@example.org"
    assert letter.recipients == ("alice@example.net",)
    assert not letter.smtputf8
    assert all(len(line) <= 78 for line in lines(letter.data))


def test_template_values_for_headers_the_builder_sets_are_replaced() -> None:
    letter = build(
        rendered(
            ("Message-ID", "<mine@example.org>"),
            ("Date", "Mon, 1 Jan 2001 00:00:00 +0000"),
            ("MIME-Version", "2.0"),
            ("Content-Transfer-Encoding", "binary"),
        )
    )
    message = parse(letter)
    assert message.get_all("Message-ID") == [letter.message_id]
    assert len(message.get_all("Date")) == 1
    assert message["Date"].datetime.year > 2001
    assert message.get_all("MIME-Version") == ["1.0"]
    assert message.get_all("Content-Transfer-Encoding") == ["7bit"]


def test_repeated_headers_are_all_kept() -> None:
    message = parse(build(rendered(("X-Tag", "one"), ("X-Tag", "two"))))
    assert message.get_all("X-Tag") == ["one", "two"]


def test_bcc_is_in_the_envelope_only() -> None:
    letter = build(
        rendered(
            ("To", "a@example.net, B <b@example.net>"),
            ("Cc", "c@example.net, a@example.net"),
            ("Bcc", "archive@example.org, B@EXAMPLE.NET"),
        )
    )
    assert letter.recipients == (
        "a@example.net",
        "b@example.net",
        "c@example.net",
        "archive@example.org",
    )
    assert b"archive@example.org" not in letter.data
    assert b"bcc" not in letter.data.lower()
    assert str(parse(letter)["Cc"]) == "c@example.net, a@example.net"


def test_bcc_alone_gives_recipients() -> None:
    letter = build(RenderedLetter([("From", FROM), ("Bcc", "x@example.net")], BODY, []))
    assert letter.recipients == ("x@example.net",)
    assert "To" not in parse(letter)


def test_message_id_is_deterministic_per_campaign_and_contact() -> None:
    letter = rendered()
    first = build(letter, campaign="spring", contact="alice@example.net")
    assert re.fullmatch(r"<[0-9a-f]{32}@example\.org>", first.message_id)
    assert build(letter, campaign="spring", contact="alice@example.net").message_id == (
        first.message_id
    )
    assert build(letter, campaign="autumn", contact="alice@example.net").message_id != (
        first.message_id
    )
    assert build(letter, campaign="spring", contact="bob@example.net").message_id != (
        first.message_id
    )
    assert make_message_id("spring", "alice@example.net", "example.org") == first.message_id
    # "a\0b" + "c" and "a" + "b\0c" must not collide through the separator alone.
    assert make_message_id("ab", "c", "x.test") != make_message_id("a", "bc", "x.test")


def test_fingerprint_ignores_date_and_message_id(monkeypatch: pytest.MonkeyPatch) -> None:
    letter = rendered()
    first = build(letter, campaign="spring")
    now = time.time()
    monkeypatch.setattr(time, "time", lambda: now + 86_400)
    later = build(letter, campaign="spring [test]")
    assert parse(first)["Date"] != parse(later)["Date"]
    assert first.message_id != later.message_id
    assert first.fingerprint == later.fingerprint
    assert re.fullmatch(r"[0-9a-f]{64}", first.fingerprint)


def test_fingerprint_changes_with_the_content(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(PDF)
    base = build(rendered(("Attachment", "a.pdf")), tmp_path).fingerprint
    changed = [
        build(rendered(("Attachment", "a.pdf"), body=BODY + "P.S.\n"), tmp_path),
        build(rendered(("Attachment", "a.pdf"), ("Subject", "Hello!")), tmp_path),
        build(rendered(("Attachment", "a.pdf"), ("Bcc", "x@example.net")), tmp_path),
        build(rendered(), tmp_path),
    ]
    (tmp_path / "a.pdf").write_bytes(PDF + b"more")
    changed.append(build(rendered(("Attachment", "a.pdf")), tmp_path))
    fingerprints = {letter.fingerprint for letter in changed}
    assert base not in fingerprints
    assert len(fingerprints) == len(changed)


def test_markdown_becomes_text_and_html_alternatives() -> None:
    source = "Dear *Alice*,\n\n- one\n- two\n\nSee [the site](https://example.org/).\n"
    message = parse(build(rendered(("Content-Type", "text/markdown"), body=source)))
    assert message.get_content_type() == "multipart/alternative"
    plain, html = message.iter_parts()
    assert plain.get_content_type() == "text/plain"
    assert text(plain) == source
    assert html.get_content_type() == "text/html"
    assert html.get_content_charset() == "utf-8"
    document = text(html)
    assert '<meta charset="utf-8">' in document
    assert "<p>Dear <em>Alice</em>,</p>" in document
    assert "<li>one</li>" in document
    assert '<a href="https://example.org/">the site</a>' in document
    assert document.startswith("<!DOCTYPE html>")


def test_markdown_extra_and_sane_lists_are_enabled() -> None:
    source = "| a | b |\n|---|---|\n| 1 | 2 |\n\n1. one\n2. two\n\n* star\n"
    message = parse(build(rendered(("Content-Type", "text/markdown; charset=utf-8"), body=source)))
    document = text(message.get_body(preferencelist=("html",)))
    assert "<table>" in document
    assert "<ol>" in document
    assert "<li>star</li>" in document


def test_html_body_is_a_single_html_part() -> None:
    source = "<p>Dear <b>Alice</b></p>\n"
    message = parse(build(rendered(("Content-Type", "text/html"), body=source)))
    assert message.get_content_type() == "text/html"
    assert not message.is_multipart()
    assert text(message) == source


def test_plain_content_type_and_none_give_text_plain() -> None:
    for headers in [(), (("Content-Type", "text/plain"),)]:
        message = parse(build(rendered(*headers)))
        assert message.get_content_type() == "text/plain"
        assert text(message) == BODY


def test_attachments_make_a_mixed_message(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "report.pdf").write_bytes(PDF)
    (tmp_path / "data.unknownext").write_bytes(b"\x00\x01raw")
    (tmp_path / "Übersicht 2025.txt").write_bytes("Grüße\n".encode())
    letter = build(
        rendered(
            ("Content-Type", "text/markdown"),
            ("Attachment", "docs/report.pdf"),
            ("Attachment", "data.unknownext"),
            ("Attachment", "Übersicht 2025.txt"),
            body="Hello *there*\n",
        ),
        tmp_path,
    )
    message = parse(letter)
    assert message.get_content_type() == "multipart/mixed"
    body, *attached = message.iter_parts()
    assert body.get_content_type() == "multipart/alternative"
    assert [(part.get_content_type(), part.get_filename()) for part in attached] == [
        ("application/pdf", "report.pdf"),
        ("application/octet-stream", "data.unknownext"),
        ("text/plain", "Übersicht 2025.txt"),
    ]
    assert [part.get_content_disposition() for part in attached] == ["attachment"] * 3
    assert attached[0].get_payload(decode=True) == PDF
    assert attached[1].get_payload(decode=True) == b"\x00\x01raw"
    assert attached[2].get_payload(decode=True) == "Grüße\n".encode()
    assert "Attachment" not in message
    assert letter.data.isascii()


def test_plain_body_with_attachment(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(PDF)
    message = parse(build(rendered(("Attachment", "a.pdf")), tmp_path))
    body, attached = message.iter_parts()
    assert body.get_content_type() == "text/plain"
    assert text(body) == BODY
    assert attached.get_payload(decode=True) == PDF


def test_attachment_is_read_once_per_builder(tmp_path: Path) -> None:
    path = tmp_path / "a.pdf"
    path.write_bytes(PDF)
    builder = LetterBuilder("spring", tmp_path)
    letter = rendered(("Attachment", "a.pdf"))
    first = builder.build(letter, "1", 2)
    path.unlink()
    second = builder.build(letter, "2", 3)
    assert parse(second).get_payload()[1].get_payload(decode=True) == PDF
    assert second.fingerprint == first.fingerprint


def test_unreadable_attachment_is_a_template_error(tmp_path: Path) -> None:
    (tmp_path / "folder.pdf").mkdir()
    for written in ["missing.pdf", "folder.pdf"]:
        with pytest.raises(TemplateError) as caught:
            build(rendered(("Attachment", written)), tmp_path)
        assert written in str(caught.value)
        assert "\n" not in str(caught.value)


def test_long_body_line_is_encoded() -> None:
    line = "word " * 400
    letter = build(rendered(body=f"Hello\n{line}\nBye\n"))
    assert all(len(raw) <= 998 for raw in lines(letter.data))
    message = parse(letter)
    assert message["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert text(message) == f"Hello\n{line}\nBye\n"


def test_long_line_without_spaces_is_encoded() -> None:
    line = "x" * 2000
    letter = build(rendered(body=line + "\n"))
    assert all(len(raw) <= 998 for raw in lines(letter.data))
    assert text(parse(letter)) == line + "\n"


def test_non_ascii_body_is_not_sent_as_8bit() -> None:
    body = "Liebe Jörg,\n\nvielen Dank für Ihre Unterstützung – 谢谢!\n"
    letter = build(rendered(body=body))
    assert letter.data.isascii()
    message = parse(letter)
    assert message["Content-Transfer-Encoding"] in ("quoted-printable", "base64")
    assert text(message) == body


def test_body_line_ends_are_normalised_and_a_final_newline_added() -> None:
    letter = build(rendered(body="one\r\ntwo\rthree"))
    assert text(parse(letter)) == "one\ntwo\nthree\n"
    assert b"one\r\ntwo\r\nthree\r\n" in letter.data


def test_a_line_with_a_single_dot_survives() -> None:
    body = "First\n.\nLast\n"
    letter = build(rendered(body=body))
    assert b"\r\n.\r\n" in letter.data
    assert text(parse(letter)) == body


def test_non_ascii_display_name_is_encoded_and_parsed_back() -> None:
    letter = build(
        rendered(
            ("From", "Jörg Müller-Lüdenscheidt <jorg@example.org>"),
            ("To", "佐藤 <sato@example.net>"),
        )
    )
    assert raw_headers(letter.data).isascii()
    assert "=?utf-8?" in raw_headers(letter.data).lower()
    message = parse(letter)
    (sender,) = message["From"].addresses
    assert (sender.display_name, sender.addr_spec) == (
        "Jörg Müller-Lüdenscheidt",
        "jorg@example.org",
    )
    (recipient,) = message["To"].addresses
    assert (recipient.display_name, recipient.addr_spec) == ("佐藤", "sato@example.net")
    assert not letter.smtputf8


def test_quoted_display_name_survives() -> None:
    value = '"Doe, John \\"JD\\"" <jd@example.org>, plain@example.org'
    letter = build(rendered(("To", value)))
    addresses = parse(letter)["To"].addresses
    assert [(a.display_name, a.addr_spec) for a in addresses] == [
        ('Doe, John "JD"', "jd@example.org"),
        ("", "plain@example.org"),
    ]
    assert letter.recipients == ("jd@example.org", "plain@example.org")


def test_non_ascii_subject_is_encoded_and_parsed_back() -> None:
    subject = "Grüße, Jörg — 重要なお知らせ " * 6
    letter = build(rendered(("Subject", subject.strip())))
    header_lines = raw_headers(letter.data).split("\r\n")
    assert raw_headers(letter.data).isascii()
    assert all(len(line) <= 78 for line in header_lines)
    assert parse(letter)["Subject"] == subject.strip()
    assert letter.subject == subject.strip()


def test_long_ascii_header_is_folded_and_parsed_back() -> None:
    subject = " ".join(f"word{i}" for i in range(60))
    to = ", ".join(f"Person {i} <p{i}@example.net>" for i in range(20))
    letter = build(rendered(("Subject", subject), ("To", to)))
    assert all(len(line) <= 78 for line in raw_headers(letter.data).split("\r\n"))
    message = parse(letter)
    assert message["Subject"] == subject
    assert [a.addr_spec for a in message["To"].addresses] == [
        f"p{i}@example.net" for i in range(20)
    ]
    assert len(letter.recipients) == 20


def test_non_ascii_local_part_needs_smtputf8() -> None:
    letter = build(rendered(("To", "José <josé@example.org>")))
    assert letter.smtputf8
    assert letter.recipients == ("josé@example.org",)
    (recipient,) = parse(letter)["To"].addresses
    assert (recipient.display_name, recipient.addr_spec) == ("José", "josé@example.org")


def test_non_ascii_local_part_in_reply_to_needs_smtputf8() -> None:
    assert build(rendered(("Reply-To", "josé@example.org"))).smtputf8


def test_non_ascii_domain_is_idna_encoded() -> None:
    letter = build(rendered(("From", "Bücher <info@bücher.example>"), ("To", "bob@straße.example")))
    assert letter.sender == "info@xn--bcher-kva.example"
    assert letter.recipients == ("bob@xn--strae-oqa.example",)
    assert letter.message_id.endswith("@xn--bcher-kva.example>")
    assert not letter.smtputf8
    assert letter.data.isascii()
    message = parse(letter)
    assert message["From"].addresses[0].addr_spec == "info@xn--bcher-kva.example"
    assert message["From"].addresses[0].display_name == "Bücher"
