"""The bad-input catalogue: every awkward spreadsheet and template gets one clear line, exit 2,
no traceback and nothing sent, or, when the input is merely unusual, the right letter."""

from __future__ import annotations

import email.policy
import mailbox
import unicodedata
from email.parser import BytesParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailaction.cli import main
from mailaction.sink import Sink

TEMPLATE = """\
To: {{ name }} <{{ email }}>
From: Campaign Team <campaign@example.org>
Subject: A letter for {{ name }}

Dear {{ name }},

Thank you.
"""


def write_campaign(
    folder: Path, port: int, contacts: bytes | str, template: str = TEMPLATE, name: str = "contacts.csv"
) -> Path:
    """A campaign folder with the given contact list and template; returns its config path."""
    data = contacts.encode("utf-8") if isinstance(contacts, str) else contacts
    (folder / name).write_bytes(data)
    (folder / "letter.txt").write_text(template, encoding="utf-8")
    config = folder / "mailaction.toml"
    config.write_text(
        f'[campaign]\nname = "bad input"\ntemplate = "letter.txt"\ncontacts = "{name}"\n\n'
        f"[smtp]\nport = {port}\n\n[sending]\nretry_delay = 0.01\n",
        encoding="utf-8",
    )
    return config


def run(config: Path, *args: str) -> Result:
    return CliRunner().invoke(main, [args[0], "--config", str(config), *args[1:]])


def received(sink: Sink) -> list[bytes]:
    return [bytes(message) for message in mailbox.Maildir(sink.maildir)] if sink.maildir.exists() else []


def assert_refused(config: Path, sink: Sink, *expected: str) -> None:
    """validate and send both exit 2 naming the problem, with no traceback and nothing sent."""
    checked = run(config, "validate")
    assert checked.exit_code == 2, checked.output
    assert "Traceback" not in checked.output
    for text in expected:
        assert text in checked.output
    sent = run(config, "send", "--yes")
    assert sent.exit_code == 2, sent.output
    assert "Traceback" not in sent.output
    assert sink.count == 0
    assert received(sink) == []


def sent_messages(config: Path, sink: Sink, count: int) -> list[email.message.EmailMessage]:
    """Send the campaign; it must succeed with ``count`` letters, returned parsed."""
    result = run(config, "send", "--yes")
    assert result.exit_code == 0, result.output
    messages = [BytesParser(policy=email.policy.default).parsebytes(data) for data in received(sink)]
    assert len(messages) == count
    return messages  # type: ignore[return-value]


# --- contact lists that must be refused ---


@pytest.mark.parametrize(
    ("contacts", "expected"),
    [
        pytest.param(b"email,name\nana@example.org,Ana\n\x81\x8d@example.org,Bo\n", ["contacts.csv"],
                     id="invalid-utf8-and-cp1252"),
        pytest.param("email,name\nana@example.org,Ana\nbo@example.org,Bo,extra\n", ["contacts.csv:3"],
                     id="ragged-row"),
        pytest.param("email,name\nana@example.org,Ana\n,Bo\n", ["contacts.csv:3", "email"],
                     id="missing-address"),
        pytest.param("email,name\nAna@Example.org,Ana\nana@example.ORG,Ana Again\n",
                     ["contacts.csv:3", "row 2"], id="same-address-in-another-case"),
        pytest.param(
            "email,name\n" + unicodedata.normalize("NFC", "josé@example.org,José\n")
            + unicodedata.normalize("NFD", "josé@example.org,José D\n"),
            ["contacts.csv:3", "row 2"], id="same-address-other-unicode-normalisation"),
        pytest.param("email,name\n" + "a" * 65 + "@example.org,Long\n", ["contacts.csv:2 (To)"],
                     id="local-part-over-64"),
        pytest.param("email,name\nroot@localhost,Root\n", ["contacts.csv:2 (To)", "root@localhost"],
                     id="at-localhost"),
        pytest.param("email,name\nroot@[127.0.0.1],Root\n", ["contacts.csv:2 (To)"],
                     id="domain-literal"),
        pytest.param("email,name\nana@example.org,=?UTF-8?Q?Ana=0ABcc:_x@example.org?=\n",
                     ["contacts.csv:2", "header injection"], id="encoded-newline-in-a-header"),
        pytest.param("mail,name\nana@example.org,Ana\n", ["contacts.csv: no column 'email'", "id_column"],
                     id="no-id-column"),
        pytest.param("email,name\n", ["contacts.csv: no contacts below the header row"],
                     id="header-only"),
        pytest.param("email,name\n,\n\n  ,  \n", ["contacts.csv: no contacts below the header row"],
                     id="only-blank-rows"),
    ],
)  # fmt: skip
def test_bad_contact_lists_are_refused(
    tmp_path: Path, sink: Sink, contacts: bytes | str, expected: list[str]
) -> None:
    assert_refused(write_campaign(tmp_path, sink.port, contacts), sink, *expected)


def test_every_bad_row_is_reported_not_only_the_first(tmp_path: Path, sink: Sink) -> None:
    contacts = "email,name\nbad@,One\nana@example.org,Ana\nroot@localhost,Two\n,Three\n"
    config = write_campaign(tmp_path, sink.port, contacts)
    assert_refused(config, sink, "contacts.csv:2", "contacts.csv:4", "contacts.csv:5")


# --- templates that must be refused ---


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        pytest.param(TEMPLATE.replace("Thank you.", "Thank you.\n\n{% if name %}\nno end"),
                     ["letter.txt:9"], id="unclosed-block"),
        pytest.param(TEMPLATE.replace("Dear {{ name }}", "Dear {{ name }"), ["letter.txt:5"],
                     id="unclosed-variable"),
        pytest.param(TEMPLATE.replace("Thank you.", "{{ nmae }}"), ["uses {{ nmae }}", "did you mean {{ name }}?"],
                     id="undefined-variable"),
        pytest.param(TEMPLATE.replace("Thank you.", "{{ ''.__class__.__mro__[1].__subclasses__() }}"),
                     ["unsafe"], id="sandbox-escape"),
        pytest.param(TEMPLATE.replace("Subject: A letter for {{ name }}", "Subject:"),
                     ["Subject"], id="empty-subject"),
        pytest.param("Attachment: missing.pdf\n" + TEMPLATE, ["missing.pdf"],
                     id="missing-attachment"),
    ],
)  # fmt: skip
def test_bad_templates_are_refused(tmp_path: Path, sink: Sink, template: str, expected: list[str]) -> None:
    contacts = "email,name\nana@example.org,Ana\n"
    assert_refused(write_campaign(tmp_path, sink.port, contacts, template), sink, *expected)


# --- unusual but valid input: the right letter goes out ---


def test_utf16_contacts_are_read(tmp_path: Path, sink: Sink) -> None:
    contacts = "email,name\nana@example.org,Zoë Ångström\nbo@example.org,Алёна\n"
    config = write_campaign(tmp_path, sink.port, contacts.encode("utf-16"))
    names = sorted(str(message["To"].addresses[0].display_name) for message in sent_messages(config, sink, 2))
    assert names == ["Zoë Ångström", "Алёна"]


def test_capitalised_headers_are_found_by_the_template_and_the_id_column(tmp_path: Path, sink: Sink) -> None:
    contacts = "Email,Name\nana@example.org,Ana\nANA@example.org,Ana again\nbo@example.org,Bo\n"
    config = write_campaign(tmp_path, sink.port, contacts)
    assert_refused(config, sink, "contacts.csv:3 (Email): duplicate of row 2")
    (tmp_path / "contacts.csv").write_text("Email,Name\nana@example.org,Ana\nbo@example.org,Bo\n")
    names = sorted(str(message["To"].addresses[0]) for message in sent_messages(config, sink, 2))
    assert names == ["Ana <ana@example.org>", "Bo <bo@example.org>"]


def test_cp1252_contacts_are_read(tmp_path: Path, sink: Sink) -> None:
    config = write_campaign(tmp_path, sink.port, "email,name\nzoe@example.org,Zoë\n".encode("cp1252"))
    (message,) = sent_messages(config, sink, 1)
    assert message["Subject"] == "A letter for Zoë"


def test_a_quoted_newline_is_one_row_and_later_rows_keep_their_numbers(tmp_path: Path, sink: Sink) -> None:
    contacts = 'email,name\nana@example.org,"Ana\nSilva"\nbad@,Bo\n'
    config = write_campaign(tmp_path, sink.port, contacts, TEMPLATE.replace("{{ name }} <", "<"))
    assert_refused(config, sink, "contacts.csv:3 (To)")


def test_a_quoted_display_name_with_comma_and_quotes_survives(tmp_path: Path, sink: Sink) -> None:
    contacts = 'email,to,name\njd@example.org,"""Doe, John \\""JD\\"""" <jd@example.org>",John\n'
    template = TEMPLATE.replace("To: {{ name }} <{{ email }}>", "To: {{ to }}")
    config = write_campaign(tmp_path, sink.port, contacts, template)
    (message,) = sent_messages(config, sink, 1)
    (address,) = message["To"].addresses
    assert (address.display_name, address.addr_spec) == ('Doe, John "JD"', "jd@example.org")


def test_template_like_contact_values_are_printed_literally(tmp_path: Path, sink: Sink) -> None:
    config = write_campaign(tmp_path, sink.port, "email,name\nana@example.org,{{ 7*7 }}\n")
    (message,) = sent_messages(config, sink, 1)
    assert "Dear {{ 7*7 }}," in message.get_content()
    assert "49" not in message.get_content()


def test_a_long_line_and_a_lone_dot_arrive_intact(tmp_path: Path, sink: Sink) -> None:
    long_line = "word " * 400
    template = TEMPLATE.replace("Thank you.", f"{long_line.strip()}\n.\nThank you.")
    config = write_campaign(tmp_path, sink.port, "email,name\nana@example.org,Ana\n", template)
    (message,) = sent_messages(config, sink, 1)
    (raw,) = received(sink)
    assert max(len(line) for line in raw.split(b"\n")) <= 998
    lines = message.get_content().splitlines()
    assert long_line.strip() in lines
    assert lines[lines.index(long_line.strip()) + 1] == "."
