"""Bounces read back into the log from a real Dovecot IMAP server, a Maildir and an mbox."""

from __future__ import annotations

import csv
import email
import io
import json
import mailbox
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailaction.bounces import Kind, read_notification
from mailaction.campaign import Campaign
from mailaction.cli import main
from mailaction.config import load_config
from mailaction.deliverylog import DeliveryLog, Outcome, State
from mailaction.suppression import SuppressionList
from tests import dsn
from tests.campaigns import RecordingSink, numbered_campaign
from tests.dovecot import PASSWORD, USER, Dovecot

LETTERS = 7
HARD = {
    "p1@example.org": "5.1.1",
    "p2@example.org": "5.1.1",
    "p3@example.org": "5.1.10",
    "p4@example.org": "5.1.1",
}
STYLES = {
    "p1@example.org": dsn.postfix_hard, "p2@example.org": dsn.exim_hard,
    "p3@example.org": dsn.microsoft_hard, "p4@example.org": dsn.google_hard,
    "p5@example.org": dsn.postfix_delayed, "p0@example.org": dsn.out_of_office,
    "p6@example.org": dsn.human_reply,
}  # fmt: skip
STRANGER = dsn.Returned("stranger@example.net", "<0123456789abcdef@example.org>", "Another letter")


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


@pytest.fixture
def config(tmp_path: Path, sink: RecordingSink) -> Path:
    """A campaign of LETTERS letters, sent to the sink."""
    path = numbered_campaign(tmp_path, sink.port, LETTERS, "spring appeal", "concurrency = 1")
    result = invoke("send", "--config", str(path), "--yes")
    assert result.exit_code == 0, result.output
    return path


def returned_letters(config: Path) -> dict[str, dsn.Returned]:
    settings = load_config(config).campaign
    assert settings.log is not None
    with DeliveryLog(settings.log, settings.name) as log:
        return {
            entry.contact_id: dsn.Returned(entry.contact_id, entry.message_id, entry.subject)
            for entry in log.entries()
        }


def mailbox_messages(config: Path) -> list[bytes]:
    """One notification per letter in STYLES, and a bounce of a letter this campaign never sent."""
    letters = returned_letters(config)
    return [style(letters[address]) for address, style in STYLES.items()] + [
        dsn.postfix_hard(STRANGER)
    ]


def states(config: Path) -> dict[str, tuple[State, str]]:
    settings = load_config(config).campaign
    assert settings.log is not None
    with DeliveryLog(settings.log, settings.name) as log:
        return {entry.contact_id: (entry.state, entry.last_reply) for entry in log.entries()}


def suppressed(config: Path) -> set[str]:
    path = load_config(config).campaign.suppression
    assert path is not None
    with SuppressionList(path) as suppression:
        return {entry.address for entry in suppression}


def check_first_reading(config: Path, result: Result) -> None:
    assert result.exit_code == 0, result.output
    assert ": 6 bounces, 1 auto-replies." in result.output
    assert "  4 letters now bounced (hard)" in result.output
    assert "  1 soft bounces noted" in result.output
    assert "  1 bounces of letters this campaign did not send" in result.output
    found = states(config)
    bounced = {address for address, (state, _) in found.items() if state is State.BOUNCED}
    assert bounced == set(HARD)
    for address, status in HARD.items():
        assert found[address][1].startswith(f"bounced {status}: "), found[address]
    assert found["p5@example.org"] == (
        State.SENT,
        "soft bounce 4.2.2: smtp; 452 4.2.2 Mailbox full",
    )
    assert found["p0@example.org"][0] is State.SENT and found["p6@example.org"][0] is State.SENT
    assert suppressed(config) == set(HARD)
    history = invoke("show", "--config", str(config), "p1@example.org").output
    assert "Row 3 · p1@example.org · bounced" in history
    assert re.search(r"UTC sent 250 .*\n.*UTC bounced 550 bounced 5\.1\.1: smtp; 550 5\.1\.1", history)


def check_second_reading_changes_nothing(
    config: Path, result: Result, before: dict[str, tuple[State, str]]
) -> None:
    assert result.exit_code == 0, result.output
    assert "Nothing new for the delivery log." in result.output
    assert "  5 bounces already in the delivery log" in result.output
    assert states(config) == before
    assert suppressed(config) == set(HARD)


@pytest.fixture
def dovecot(free_port: int) -> Iterator[Dovecot]:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        starttls_port = other.getsockname()[1]
    server = Dovecot(free_port, starttls_port)
    yield server
    server.stop()


def with_imap(config: Path, port: int, security: str = "ssl") -> Path:
    with config.open("a", encoding="utf-8") as out:
        out.write(
            f'\n[imap]\nhost = "127.0.0.1"\nport = {port}\nusername = "{USER}"\n'
            f'password_env = "TEST_IMAP_PASSWORD"\nsecurity = "{security}"\n'
        )
    return config


def first_imap_reading(
    config: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch, port: int, security: str
) -> None:
    """The campaign's bounces put in Dovecot, then read over IMAP with ``security``."""
    with_imap(config, port, security)
    dovecot.append(*mailbox_messages(config))
    monkeypatch.setenv("TEST_IMAP_PASSWORD", PASSWORD)
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.certificate.cert))
    result = invoke("bounces", "--config", str(config))
    check_first_reading(config, result)
    assert f"Read 8 messages from 127.0.0.1:{port}/INBOX" in result.output


def test_bounces_from_dovecot_over_imap(
    config: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_imap_reading(config, dovecot, monkeypatch, dovecot.port, "ssl")
    before = states(config)
    check_second_reading_changes_nothing(config, invoke("bounces", "--config", str(config)), before)
    assert dovecot.count() == 8  # read without deleting
    result = invoke("bounces", "--config", str(config), "--delete-processed")
    assert "  5 bounce messages deleted from the mailbox" in result.output
    assert dovecot.count() == 3  # the auto-reply, the person's reply, the stranger's bounce
    assert states(config) == before


def test_bounces_over_imap_with_starttls(
    config: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    first_imap_reading(config, dovecot, monkeypatch, dovecot.starttls_port, "starttls")


@pytest.mark.parametrize(
    ("password", "trusted", "args", "message"),
    [
        (PASSWORD, False, [], "the server's certificate cannot be verified"),
        ("not-the-password", True, [], "login failed"),
        (PASSWORD, True, ["--folder", "Bounces"], "select Bounces refused: Mailbox doesn't exist"),
    ],
)
def test_imap_problems_are_one_line_naming_the_server(
    config: Path, dovecot: Dovecot, monkeypatch: pytest.MonkeyPatch,
    password: str, trusted: bool, args: list[str], message: str,
) -> None:  # fmt: skip
    with_imap(config, dovecot.port)
    monkeypatch.setenv("TEST_IMAP_PASSWORD", password)
    if trusted:
        monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.certificate.cert))
    result = invoke("bounces", "--config", str(config), *args)
    assert result.exit_code == 2
    assert f"Error: 127.0.0.1:{dovecot.port}: {message}" in result.output
    assert "Traceback" not in result.output and "not-the-password" not in result.output


def write_maildir(path: Path, messages: list[bytes]) -> None:
    box = mailbox.Maildir(path, create=True)
    for message in messages:
        box.add(message)


def write_mbox(path: Path, messages: list[bytes]) -> None:
    box = mailbox.mbox(path, create=True)
    for message in messages:
        box.add(message)
    box.flush()


@pytest.mark.parametrize(
    ("option", "write"), [("--maildir", write_maildir), ("--mbox", write_mbox)]
)
def test_bounces_from_a_local_mailbox(
    config: Path, tmp_path: Path, option: str, write: Callable[[Path, list[bytes]], None]
) -> None:
    path = tmp_path / "bounces"
    write(path, mailbox_messages(config))
    check_first_reading(config, invoke("bounces", "--config", str(config), option, str(path)))
    before = states(config)
    check_second_reading_changes_nothing(
        config, invoke("bounces", "--config", str(config), option, str(path)), before
    )
    result = invoke("bounces", "--config", str(config), option, str(path), "--delete-processed")
    assert "  5 bounce messages deleted from the mailbox" in result.output
    box = (
        mailbox.Maildir(path, create=False)
        if option == "--maildir"
        else mailbox.mbox(path, create=False)
    )
    assert sorted(str(message["Subject"]) for message in box) == [
        "Automatic reply: Letter 0",
        "Re: Letter 6",
        "Undelivered Mail Returned to Sender",
    ]


def test_another_campaign_sharing_the_list_skips_the_bounced(
    config: Path, tmp_path: Path, sink: RecordingSink
) -> None:
    path = tmp_path / "bounces"
    write_maildir(path, mailbox_messages(config))
    assert invoke("bounces", "--config", str(config), "--maildir", str(path)).exit_code == 0
    other = tmp_path / "autumn"
    other.mkdir()
    second = numbered_campaign(other, sink.port, LETTERS, "autumn appeal", "")
    text = second.read_text().replace(
        "[campaign]\n", f'[campaign]\nsuppression = "{tmp_path / "suppressed.sqlite"}"\n'
    )
    second.write_text(text)
    result = invoke("validate", "--config", str(second))
    assert result.exit_code == 0
    assert "  4 suppressed: on the suppression list" in result.output
    first_run = set((tmp_path / "maildir" / "new").iterdir())
    result = invoke("send", "--config", str(second), "--yes")
    assert result.exit_code == 0, result.output
    assert "  4 suppressed" in result.output
    arrived = set((tmp_path / "maildir" / "new").iterdir()) - first_run
    recipients = {
        str(email.message_from_bytes(path.read_bytes())["X-Original-To"]) for path in arrived
    }
    assert recipients == {f"p{n}@example.org" for n in range(LETTERS)} - set(HARD)


def test_without_a_message_id_only_a_recipient_with_one_letter_matches(tmp_path: Path) -> None:
    config = numbered_campaign(tmp_path, 1025, 3, "official", "")
    # Rows 2 and 3 are supporters writing to the same official: a bounce from that address
    # that names no letter cannot say which one it was.
    (tmp_path / "contacts.csv").write_text(
        "email,n,to\np0@example.org,0,minister@example.net\np1@example.org,1,minister@example.net\n"
        "p2@example.org,2,office@example.com\n"
    )
    template = tmp_path / "letter.txt"
    template.write_text(
        template.read_text().replace("To: Supporter {{ n }} <{{ email }}>", "To: {{ to }}")
    )
    settings = load_config(config).campaign
    assert settings.log is not None
    with DeliveryLog(settings.log, settings.name) as log:
        for letter in Campaign(load_config(config)).letters():
            log.register(letter)
            log.mark_outcome(letter.contact_id, Outcome(State.SENT, 250, "ok"))
    no_id = [
        dsn.exim_hard(dsn.Returned(address, "<>", "Letter")).replace(b"Message-ID: <>\r\n", b"")
        for address in ("minister@example.net", "office@example.com")
    ]
    write_mbox(tmp_path / "mbox", no_id)
    result = invoke("bounces", "--config", str(config), "--mbox", str(tmp_path / "mbox"))
    assert result.exit_code == 0, result.output
    assert "  1 bounces of letters this campaign did not send" in result.output
    assert {address: state for address, (state, _) in states(config).items()} == {
        "p0@example.org": State.SENT, "p1@example.org": State.SENT, "p2@example.org": State.BOUNCED,
    }  # fmt: skip


@pytest.mark.parametrize(
    ("style", "kind", "permanent"),
    [
        (dsn.postfix_hard, Kind.BOUNCE, True), (dsn.exim_hard, Kind.BOUNCE, True),
        (dsn.microsoft_hard, Kind.BOUNCE, True), (dsn.google_hard, Kind.BOUNCE, True),
        (dsn.postfix_delayed, Kind.BOUNCE, False), (dsn.out_of_office, Kind.AUTO_REPLY, None),
        (dsn.human_reply, Kind.OTHER, None),
    ],
)  # fmt: skip
def test_each_style_is_read_with_its_recipient_and_returned_message_id(
    style: Callable[[dsn.Returned], bytes], kind: Kind, permanent: bool | None
) -> None:
    returned = dsn.Returned("p1@example.net", "<abc123@example.org>", "Letter 1")
    notification = read_notification(email.message_from_bytes(style(returned)))
    assert notification.kind is kind
    if permanent is None:
        assert notification.bounces == ()
        return
    (bounce,) = notification.bounces
    assert (bounce.recipient, bounce.message_id, bounce.permanent) == (
        "p1@example.net", "<abc123@example.org>", permanent,
    )  # fmt: skip
    assert bounce.status[0] == ("5" if permanent else "4")
    assert bounce.code == (550 if permanent else 452)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--maildir", "no-such-folder"], "no-such-folder: not a Maildir"),
        (["--mbox", "no-such-file"], "no-such-file: no such mbox file"),
        ([], "no mailbox to read: set host and username in the [imap] section"),
    ],
)
def test_bad_mailbox_is_one_line_and_exit_2(config: Path, args: list[str], message: str) -> None:
    result = invoke("bounces", "--config", str(config), *args)
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_every_report_format_shows_the_bounced_letters(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "bounces"
    write_maildir(path, mailbox_messages(config))
    assert invoke("bounces", "--config", str(config), "--maildir", str(path)).exit_code == 0
    data = json.loads(invoke("report", "--config", str(config), "--format", "json").output)
    assert data["summary"] | {"sent": 3, "bounced": 4, "total": LETTERS} == data["summary"]
    bounced = {m["contact_id"]: m for m in data["messages"] if m["state"] == "bounced"}
    assert set(bounced) == set(HARD)
    assert bounced["p3@example.org"]["last_code"] == 550
    assert bounced["p3@example.org"]["last_reply"].startswith(
        "bounced 5.1.10: smtp;550 5.1.10 RESOLVER.ADR.RecipientNotFound"
    )
    rows = list(
        csv.DictReader(
            io.StringIO(invoke("report", "--config", str(config), "--format", "csv").output)
        )
    )
    assert sorted(row["contact_id"] for row in rows if row["state"] == "bounced") == sorted(HARD)
    table = invoke("report", "--config", str(config)).output
    assert re.search(r"^ *bounced +4 *$", table, re.MULTILINE), table
    assert "Letters that need attention" in table and "bounced 5.1.1:" in table
    html = invoke("report", "--config", str(config), "--format", "html").output
    assert (
        '<div class="card bounced"><span class="n">4</span><span class="label">Bounced</span>'
        in html
    )
    assert (
        html.count('<span class="badge bounced">bounced</span>') == 8
    )  # attention table + all letters
    assert '<span class="bounced" style="flex: 4" title="bounced"></span>' in html  # the state bar
    assert (
        "bounced 5.1.1: smtp; 550-5.1.1 The email account that you tried to reach does not exist."
        in html
    )


def test_a_bounced_letter_is_never_sent_again(config: Path, tmp_path: Path) -> None:
    path = tmp_path / "bounces"
    write_maildir(path, mailbox_messages(config))
    assert invoke("bounces", "--config", str(config), "--maildir", str(path)).exit_code == 0
    result = invoke("send", "--config", str(config), "--yes")
    assert result.exit_code == 0, result.output
    assert "Nothing to send." in result.output
    # A bounced letter went out: it counts as sent (and is never sent again), on the
    # suppression list or off it.
    assert f"  {LETTERS} already sent" in result.output and "suppressed" not in result.output
    assert invoke("suppress", "remove", "--config", str(config), *HARD).exit_code == 0
    result = invoke("send", "--config", str(config), "--yes")
    assert result.exit_code == 0, result.output
    assert "Nothing to send." in result.output
    assert f"  {LETTERS} already sent" in result.output


def test_a_success_notification_is_no_bounce() -> None:
    returned = dsn.Returned("p1@example.net", "<abc123@example.org>", "Letter 1")
    delivered = dsn.postfix_hard(returned).replace(b"Action: failed", b"Action: delivered")
    delivered = delivered.replace(b"Status: 5.1.1", b"Status: 2.0.0")
    assert read_notification(email.message_from_bytes(delivered)).kind is Kind.OTHER
