"""Message building: headers, envelope, MIME structure, attachments, encodings, identity."""

from __future__ import annotations

import email.policy
import email.utils
import re
import time
from dataclasses import replace
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser, Parser
from pathlib import Path

import markdown
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailaction.addresses import parse_addresses, smtp_address
from mailaction.errors import AttachmentError
from mailaction.message import (
    ADDRESS_HEADERS,
    BUILDER_HEADERS,
    HTML_DOCUMENT,
    MARKDOWN_EXTENSIONS,
    Attachment,
    Letter,
    LetterBuilder,
    MarkdownRenderer,
    make_message_id,
    markdown_blocks,
    restamped,
)
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
    (tmp_path / "backup.tar.gz").write_bytes(b"\x1f\x8b gzip")
    (tmp_path / "Übersicht 2025.txt").write_bytes("Grüße\n".encode())
    letter = build(
        rendered(
            ("Content-Type", "text/markdown"),
            ("Attachment", "docs/report.pdf"),
            ("Attachment", "data.unknownext"),
            ("Attachment", "Übersicht 2025.txt"),
            ("Attachment", "backup.tar.gz"),
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
        ("application/octet-stream", "backup.tar.gz"),
    ]
    assert [part.get_content_disposition() for part in attached] == ["attachment"] * 4
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


def test_unreadable_attachment_is_an_attachment_error(tmp_path: Path) -> None:
    (tmp_path / "folder.pdf").mkdir()
    for written in ["missing.pdf", "folder.pdf", "nul\0.pdf"]:
        with pytest.raises(AttachmentError) as caught:
            build(rendered(("Attachment", written)), tmp_path)
        assert repr(written) in str(caught.value)
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


@pytest.mark.parametrize(
    ("body", "encoding"),
    [
        ("Plain ASCII, short lines.\n", "7bit"),
        ("Liebe Jörg, schöne Grüße aus Köln.\n", "quoted-printable"),
        ("親愛なる佐藤様、いつもご支援いただきありがとうございます。\n", "base64"),
    ],
)
def test_transfer_encoding_suits_the_text(body: str, encoding: str) -> None:
    message = parse(build(rendered(body=body)))
    assert message["Content-Transfer-Encoding"] == encoding
    assert text(message) == body


def test_body_containing_the_boundary_is_encoded(tmp_path: Path) -> None:
    (tmp_path / "a.pdf").write_bytes(PDF)
    stem = build(rendered()).message_id[1:33]
    body = f"Before\n--=_{stem}_m\nContent-Type: text/html\n\n<b>forged</b>\n--=_{stem}_m--\n"
    letter = build(rendered(("Attachment", "a.pdf"), body=body), tmp_path)
    message = parse(letter)
    assert [part.get_content_type() for part in message.walk()] == [
        "multipart/mixed",
        "text/plain",
        "application/pdf",
    ]
    assert text(message.get_payload()[0]) == body


def test_body_line_ends_are_normalised_and_a_final_newline_added() -> None:
    letter = build(rendered(body="one\r\ntwo\rthree"))
    assert text(parse(letter)) == "one\ntwo\nthree\n"
    assert b"one\r\ntwo\r\nthree\r\n" in letter.data


def test_a_line_with_a_single_dot_survives() -> None:
    body = "First\n.\nLast\n"
    letter = build(rendered(body=body))
    assert b"\r\n.\r\n" in letter.data
    assert text(parse(letter)) == body


def test_header_injection_through_a_value_is_impossible() -> None:
    letter = build(
        rendered(
            ("Subject", "Hi\r\nBcc: thief@example.com"),
            ("X-Note", "a\nTo: thief@example.com"),
            ("Reply-To", '"Eve\r\nBcc: thief@example.com" <eve@example.org>'),
        )
    )
    message = parse(letter)
    assert "Bcc" not in message
    assert message.get_all("To") == [TO]
    assert b"\r\nBcc:" not in letter.data
    assert letter.recipients == ("alice@example.net",)


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


class ReferenceBuilder(LetterBuilder):
    """The straightforward builder: the standard library's EmailMessage with policy SMTP."""

    def message_bytes(
        self,
        rendered: RenderedLetter,
        body: str,
        attachments: list[Attachment],
        message_id: str,
        smtputf8: bool,
    ) -> bytes:
        policy = email.policy.SMTPUTF8 if smtputf8 else email.policy.SMTP
        message = EmailMessage(policy=policy.clone(cte_type="7bit"))
        for name, value in rendered.headers:
            key = name.lower()
            if key in BUILDER_HEADERS:
                continue
            if key in ADDRESS_HEADERS:
                message[name] = [
                    Address(display, address.rpartition("@")[0], address.rpartition("@")[2])
                    for display, address in parse_addresses(value)
                ]
            else:
                message[name] = value
        message["Date"] = email.utils.formatdate(localtime=True)
        message["Message-ID"] = message_id
        kind = rendered.kind
        if kind == "markdown":
            message.set_content(body)
            html = markdown.markdown(body, extensions=list(MARKDOWN_EXTENSIONS))
            message.add_alternative(HTML_DOCUMENT.format(html), subtype="html")
        else:
            message.set_content(body, subtype=kind)
        for attachment in attachments:
            maintype, _, subtype = attachment.content_type.partition("/")
            message.add_attachment(attachment.data, maintype, subtype, filename=attachment.filename)
        return message.as_bytes()


def leaves(message: EmailMessage) -> list[tuple[str, str | None, str | bytes]]:
    """(type, file name, content) of every non-multipart part, text with "\\n" line ends."""
    return [
        (
            part.get_content_type(),
            part.get_filename(),
            text(part) if part.get_filename() is None else part.get_payload(decode=True),
        )
        for part in message.walk()
        if not part.is_multipart()
    ]


def expected_fields(letter: RenderedLetter) -> list[str]:
    """The header names a built letter must have, and no others, in any order."""
    names = [name.lower() for name, _ in letter.headers if name.lower() not in BUILDER_HEADERS]
    own = ["date", "message-id", "mime-version", "content-type"]
    if letter.kind != "markdown" and not letter.all("Attachment"):
        own.append("content-transfer-encoding")
    return sorted(names + own)


def assert_same_letter(letter: RenderedLetter, base_dir: Path) -> None:
    """The fast builder and the reference agree on every header, part and attachment."""
    fast = LetterBuilder("spring", base_dir).build(letter, "c1", 2)
    reference = ReferenceBuilder("spring", base_dir).build(letter, "c1", 2)
    assert (fast.sender, fast.recipients, fast.smtputf8) == (
        reference.sender,
        reference.recipients,
        reference.smtputf8,
    )
    fast_message, reference_message = parse(fast), parse(reference)
    assert sorted(key.lower() for key in fast_message) == expected_fields(letter)
    assert all(len(line) <= 998 for line in lines(fast.data))
    for name, value in letter.headers:
        key = name.lower()
        if key in BUILDER_HEADERS:
            continue
        fast_values, reference_values = fast_message.get_all(name), reference_message.get_all(name)
        if key in ADDRESS_HEADERS:
            # Parsers differ on whitespace at the ends of names; the names must agree otherwise.
            assert [mailboxes(header) for header in fast_values] == [
                mailboxes(header) for header in reference_values
            ]
            assert mailboxes(fast_values[0]) == [
                (squeeze(display), address) for display, address in parse_addresses(value)
            ]
        else:
            # What a mail client shows for the value as written (encoded words decoded).
            assert str(email.policy.default.header_factory(name, value)) in fast_values
            # The stdlib folder can drop a space between encoded words; all else must agree.
            assert [squeeze(v) for v in fast_values] == [squeeze(v) for v in reference_values]
    assert fast_message.get_content_type() == reference_message.get_content_type()
    assert leaves(fast_message) == leaves(reference_message)


def mailboxes(header: object) -> list[tuple[str, str]]:
    """(name, address) pairs, whitespace dropped from the names."""
    return [(squeeze(address.display_name), address.addr_spec) for address in header.addresses]


def squeeze(value: str) -> str:
    return "".join(value.split())


def quoted(name: str) -> str:
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


# Header values as the template renders them: spaces and tabs stripped from the ends.
header_text = st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=120).map(
    lambda value: value.strip(" \t")
)
names = st.text(st.characters(exclude_categories=("Cs", "Cc")), min_size=1, max_size=40)
bodies = st.text(st.characters(exclude_categories=("Cs",)), max_size=400)


@settings(max_examples=150, deadline=None)
@given(
    sender=names,
    recipient=names,
    subject=header_text,
    extra=header_text,
    body=bodies,
    kind=st.sampled_from(["text/plain", "text/markdown", "text/html"]),
    attach=st.booleans(),
)
def test_fast_builder_agrees_with_the_reference(
    tmp_path_factory: pytest.TempPathFactory,
    sender: str,
    recipient: str,
    subject: str,
    extra: str,
    body: str,
    kind: str,
    attach: bool,
) -> None:
    base_dir = tmp_path_factory.getbasetemp()
    (base_dir / "plan.pdf").write_bytes(PDF)
    letter = RenderedLetter(
        [
            ("From", f"{quoted(sender)} <team@example.org>"),
            ("To", f"{quoted(recipient)} <alice@example.net>, bob@example.net"),
            ("Subject", subject),
            ("X-Note", extra),
            ("Content-Type", kind),
            *([("Attachment", "plan.pdf")] if attach else []),
        ],
        body,
        [],
    )
    assert_same_letter(letter, base_dir)


@pytest.mark.parametrize(
    "headers",
    [
        [("To", "José <josé@example.org>"), ("Subject", "Grüße " * 30)],
        [("From", "Bücher <info@bücher.example>"), ("Cc", "佐藤 <sato@例え.example>")],
        [("To", '"Doe, John \\"JD\\"" <jd@example.org>'), ("Subject", "x" * 1200)],
        [("Subject", "=?utf-8?q?encoded_by_the_author?= and plain"), ("X-Long", "word " * 80)],
    ],
)
def test_fast_builder_agrees_on_addresses_and_long_headers(
    tmp_path: Path, headers: list[tuple[str, str]]
) -> None:
    assert_same_letter(rendered(*headers, ("Content-Type", "text/markdown")), tmp_path)


@settings(max_examples=100, deadline=None)
@given(
    display=st.text(st.characters(exclude_categories=("Cs",))),
    subject=st.text(st.characters(exclude_categories=("Cs",))).map(
        lambda value: value.strip(" \t")
    ),
)
def test_header_values_never_add_a_header(display: str, subject: str) -> None:
    """Even CR and LF (which validation refuses) cannot start a header field of their own."""
    letter = rendered(("To", f"{quoted(display)} <a@example.net>"), ("Subject", subject))
    built = build(letter)
    message = parse(built)
    assert sorted(key.lower() for key in message) == expected_fields(letter)
    assert message["Subject"] == subject


def reference_html(text: str) -> str:
    return markdown.markdown(text, extensions=list(MARKDOWN_EXTENSIONS))


MARKDOWN_SAMPLE = """Dear Alice,

Thank you for *all* you did in 2024.

- one
- two

  still two

Next paragraph with a [link](https://example.org/) and <b>bold</b>.

1. first

2. second
Term
: definition

> quoted

> more quoted

| a | b |
|---|---|
| 1 | 2 |

    code

    more code
Ending, with love
"""


@pytest.mark.parametrize(
    "extra",
    [
        "",
        "\n[link]: https://example.org/\n",
        "\nA footnote[^1].\n\n[^1]: The note.\n",
        "\n*[HTML]: Hyper Text\n\nHTML here\n",
        "\n```\nfenced\n\nBlock\n```\n",
        '\n<div markdown="1">\n\nInside *div*\n\n</div>\n',
        "\n<!-- a comment\n\nstill comment -->\n",
    ],
)
def test_markdown_renderer_matches_one_document_conversion(extra: str) -> None:
    render = MarkdownRenderer()
    text = MARKDOWN_SAMPLE + extra
    assert render(text) == reference_html(text)
    assert render(text) == reference_html(text)  # again, from the cache


def test_markdown_renderer_keeps_leading_blank_lines_with_the_first_block() -> None:
    render = MarkdownRenderer()
    text = "\t\n\n" + MARKDOWN_SAMPLE
    assert "<pre><code>" in reference_html(text)
    assert render(text) == reference_html(text)
    assert render(text) == reference_html(text)  # again, from the cache


def test_markdown_blocks_split_before_paragraphs_only() -> None:
    blocks = markdown_blocks("Dear Bob,\n\nFirst.\n  \n- item\n\n\nLast\n\n: defined")
    assert blocks == ["Dear Bob,", "First.\n  \n- item", "Last\n\n: defined"]
    assert markdown_blocks("\t\n\nDear Bob,") == ["\t\n\nDear Bob,"]


def test_a_definition_in_one_block_applies_to_another() -> None:
    render = MarkdownRenderer()
    first = "Dear Bob,\n\nSee [the site][x].\n\nThanks\n"
    assert render(first) == reference_html(first)
    text = first + "\n[x]: https://example.org/\n"
    assert '<a href="https://example.org/">the site</a>' in render(text)
    assert render(text) == reference_html(text)


MARKDOWN_ALPHABET = st.sampled_from(
    list("aZé1 \t\n\n\n-*+>#`~[]()!:|^_={}.<&\\/'\"")
    + ["1. ", "- ", "    ", "```", "<div>", "</div>", "<!--", "-->", "[^1]", "]: ", "Dear ", ": "]
    + ["&#46;", "&#60;", "&#35; ", "&#", "&#x41;"]  # escaped contact values, and near misses
)
markdown_texts = st.lists(MARKDOWN_ALPHABET, max_size=60).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(markdown_texts, min_size=1, max_size=4))
def test_markdown_renderer_agrees_with_markdown(texts: list[str]) -> None:
    render = MarkdownRenderer(cache_size=8)  # shared by the texts: what one caches, all use
    for text in texts:
        assert render(text) == reference_html(text)


@settings(max_examples=200, deadline=None)
@given(st.text(st.characters(exclude_categories=("Cs",)), max_size=80))
def test_markdown_renderer_agrees_on_any_text(text: str) -> None:
    assert MarkdownRenderer()(text) == reference_html(text)


@settings(max_examples=200, deadline=None)
@given(st.text(st.sampled_from(list("abZé日ß1 ,.;?!'\n")), max_size=40))
def test_plain_paragraphs_skip_the_converter_with_the_same_result(text: str) -> None:
    assert MarkdownRenderer()(text) == reference_html(text)


words = st.text(st.characters(categories=("L", "N")) | st.just("_"), min_size=1, max_size=6)


@settings(max_examples=200, deadline=None)
@given(
    name=st.lists(words, max_size=3).map(" ".join),
    local=st.lists(words, min_size=1, max_size=3).map(".".join),
    domain=st.lists(words, min_size=1, max_size=3).map("-".join),
)
def test_simple_addresses_are_read_as_getaddresses_reads_them(
    name: str, local: str, domain: str
) -> None:
    address = f"{local}@{domain}.example"
    for value in (address, f"{name} <{address}>", f"{name}<{address}>", f"{name} <{address}> "):
        expected = tuple(
            (display, smtp_address(found))
            for display, found in email.utils.getaddresses([value])
            if found
        )
        assert parse_addresses(value) == expected


def test_restamped_sets_date_to_now_and_changes_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(time, "time", lambda: 1_700_000_000.0)
    letter = build(rendered(("Subject", "Date: in the subject"), ("X-Note", "Date: not a header")))
    monkeypatch.setattr(time, "time", lambda: 1_700_003_600.0)
    later = restamped(letter)
    before, after = parse(letter), parse(later)
    assert after["Date"].datetime.timestamp() == 1_700_003_600
    assert before["Date"].datetime.timestamp() == 1_700_000_000
    assert [(k, v) for k, v in after.items() if k != "Date"] == [(k, v) for k, v in before.items() if k != "Date"]
    assert after.get_body().get_content() == before.get_body().get_content()
    assert replace(later, data=letter.data) == letter
