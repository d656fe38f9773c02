"""The local sink: a real SMTP server that stores what it receives in a Maildir."""

from __future__ import annotations

import mailbox
import smtplib
from pathlib import Path

import pytest

from mailaction.errors import MailactionError
from mailaction.sink import Sink, StoredMessage


def message(n: int, subject: str = "Letter") -> bytes:
    return (
        f"From: campaign@example.org\r\nTo: p{n}@example.org\r\nSubject: {subject} {n}\r\n"
        f"Message-ID: <{n}@campaign.example.org>\r\n\r\nHello {n}.\r\n.a line with a dot\r\n"
    ).encode()


def test_stores_three_messages_and_reports_each(tmp_path: Path) -> None:
    seen: list[StoredMessage] = []
    with Sink(tmp_path / "maildir", on_message=seen.append) as sink:
        assert sink.port > 0
        with smtplib.SMTP("127.0.0.1", sink.port) as client:
            for n in range(3):
                client.sendmail(
                    "campaign@example.org", [f"p{n}@example.org", "cc@example.net"], message(n)
                )
        assert sink.count == 3
    stored = {key: mailbox.Maildir(tmp_path / "maildir")[key] for key in (s.key for s in seen)}
    assert [s.message_id for s in seen] == [f"<{n}@campaign.example.org>" for n in range(3)]
    assert [s.subject for s in seen] == ["Letter 0", "Letter 1", "Letter 2"]
    assert seen[0].mail_from == "campaign@example.org"
    assert seen[0].recipients == ("p0@example.org", "cc@example.net")
    assert len(mailbox.Maildir(tmp_path / "maildir")) == 3
    first = stored[seen[0].key]
    assert first["Return-Path"] == "<campaign@example.org>"
    assert first["X-Original-To"] == "p0@example.org, cc@example.net"
    assert first.get_payload() == "Hello 0.\n.a line with a dot\n"


def test_each_sink_picks_its_own_free_port(tmp_path: Path) -> None:
    with Sink(tmp_path / "a") as first, Sink(tmp_path / "b") as second:
        assert first.port != second.port
        assert 0 < first.port < 65536


def test_accepts_smtputf8_and_decodes_the_subject(tmp_path: Path) -> None:
    seen: list[StoredMessage] = []
    data = "Subject: =?utf-8?q?Caf=C3=A9?=\r\nMessage-ID: <u@example.org>\r\n\r\nol\u00e1\r\n"
    with (
        Sink(tmp_path / "maildir", on_message=seen.append) as sink,
        smtplib.SMTP("127.0.0.1", sink.port) as client,
    ):
        client.ehlo()
        assert client.has_extn("smtputf8") and client.has_extn("8bitmime")
        client.sendmail(
            "jos\u00e9@example.org", ["ana@example.org"], data.encode(), mail_options=["SMTPUTF8"]
        )
    assert seen[0].mail_from == "jos\u00e9@example.org"
    assert seen[0].subject == "Caf\u00e9"


def test_a_port_in_use_is_a_one_line_error(tmp_path: Path) -> None:
    with Sink(tmp_path / "a") as first, pytest.raises(MailactionError, match="cannot listen"):
        Sink(tmp_path / "b", port=first.port).start()
