"""The queued campaign end to end: identity, changes between and during runs, totals, `show`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailaction.cli import main
from mailaction.deliverylog import DeliveryLog, State
from tests.campaigns import CONTACTS, RecordingSink, numbered_campaign
from tests.test_cli import log_states, run

REPORT_KEYS = ("total", "sent", "pending")


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def summary(project: Path) -> dict[str, int]:
    result = run(project, "report", "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)["summary"]


def test_upper_cased_addresses_send_nothing_again(project: Path, sink: RecordingSink) -> None:
    assert run(project, "send", "--yes").exit_code == 0
    contacts = project / "contacts.csv"
    lines = contacts.read_text(encoding="utf-8").splitlines()
    shouting = [lines[0]] + [line.replace(line.split(",")[0], line.split(",")[0].upper()) for line in lines[1:]]
    contacts.write_text("\n".join(shouting) + "\n", encoding="utf-8")
    again = run(project, "send", "--yes")
    assert again.exit_code == 0, again.output
    assert "Nothing to send." in again.output
    assert "3 already sent" in again.output
    assert sink.count == 3


def test_nfd_addresses_and_ids_send_nothing_again(project: Path, sink: RecordingSink) -> None:
    contacts = project / "contacts.csv"
    contacts.write_text(CONTACTS.replace("ana@", "anaïs@"), encoding="utf-8")
    assert run(project, "send", "--yes").exit_code == 0
    contacts.write_text(unicodedata.normalize("NFD", contacts.read_text(encoding="utf-8")), encoding="utf-8")
    again = run(project, "send", "--yes")
    assert "Nothing to send." in again.output, again.output
    assert sink.count == 3


def test_a_changed_id_column_sends_nothing_again(project: Path, sink: RecordingSink) -> None:
    contacts = project / "contacts.csv"
    contacts.write_text(
        "member,email,first_name,last_name,town\n"
        + "".join(f"M{n},{line}\n" for n, line in enumerate(CONTACTS.splitlines()[1:])),
        encoding="utf-8",
    )
    assert run(project, "send", "--yes").exit_code == 0
    config = project / "mailaction.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('name = "Test action"', 'name = "Test action"\nid_column = "member"'))
    again = run(project, "send", "--yes")
    assert again.exit_code == 0, again.output
    assert "3 already sent under another id or campaign name" in again.output
    assert "row 2 as row 2 of 'Test action'" in again.output
    assert sink.count == 3


@pytest.mark.parametrize("renamed", ["Test action ", "Test action, spring"])
def test_a_renamed_campaign_sends_nothing_again(project: Path, sink: RecordingSink, renamed: str) -> None:
    assert run(project, "send", "--yes").exit_code == 0
    config = project / "mailaction.toml"
    text = config.read_text(encoding="utf-8").replace('name = "Test action"', f'name = "{renamed}"')
    config.write_text(text.replace("[smtp]", 'log = "test-action.sqlite"\n\n[smtp]'), encoding="utf-8")
    again = run(project, "send", "--yes")
    assert "Nothing to send." in again.output, again.output
    assert sink.count == 3


def test_new_rows_are_announced_and_removed_ones_withdrawn(project: Path, sink: RecordingSink) -> None:
    assert run(project, "send", "--yes", "--limit", "1").exit_code == 0
    contacts = project / "contacts.csv"
    rows = CONTACTS.splitlines()
    added = ["dee@example.org,Dee,Ode,Lyon", "eve@example.org,Eve,Ng,"]
    contacts.write_text("\n".join([rows[0], *added, rows[1], rows[3]]) + "\n", encoding="utf-8")
    dry = run(project, "send", "--dry-run")
    assert "Campaign Test action: 3 letters to send" in dry.output
    assert "2 new since the last run" in dry.output
    assert "1 queued earlier but gone from the contact list" in dry.output
    assert "1 already sent" in dry.output
    result = run(project, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert sink.count == 4
    assert set(log_states(project)) == {"ana@example.org", "chen@example.net", "dee@example.org", "eve@example.org"}


def test_show_prints_the_stored_letter_and_its_history(project: Path, sink: RecordingSink) -> None:
    assert run(project, "send", "--yes").exit_code == 0
    shown = run(project, "show", "CHEN@example.net")
    assert shown.exit_code == 0, shown.output
    assert "Row 4 · chen@example.net · sent" in shown.output
    assert " sending" in shown.output and " sent 250" in shown.output
    assert "Dear Chen," in shown.output and "Subject: Hello Chen" in shown.output
    by_row = run(project, "show", "3")
    assert "bo@example.com" in by_row.output
    missing = run(project, "show", "nobody@example.org")
    assert missing.exit_code == 2
    assert "no letter of 'Test action' for 'nobody@example.org'" in missing.output


def test_expired_letter_texts_keep_states_and_counts(project: Path, sink: RecordingSink) -> None:
    assert run(project, "send", "--yes", "--limit", "2").exit_code == 0
    with sqlite3.connect(project / "test-action.sqlite") as db:  # as if sent 40 days ago
        db.execute("UPDATE letters SET last_attempt_at = last_attempt_at - 40 * 86400 WHERE state = 'sent'")
    config = project / "mailaction.toml"
    config.write_text(config.read_text(encoding="utf-8").replace('name = "Test action"', 'name = "Test action"\nkeep_letters_days = 30'))
    assert run(project, "send", "--yes").exit_code == 0
    assert "no longer stored" in run(project, "show", "ana@example.org").output
    assert "Dear Chen" in run(project, "show", "chen@example.net").output  # sent just now
    assert summary(project)["sent"] == 3


def test_a_damaged_log_is_one_line_and_exit_2(project: Path, sink: RecordingSink) -> None:
    assert run(project, "send", "--yes", "--limit", "1").exit_code == 0
    with sqlite3.connect(project / "test-action.sqlite") as db:
        db.execute("UPDATE letters SET state = 'lost' WHERE contact_id = 'ana@example.org'")
    for command in (("report",), ("send", "--yes")):
        result = run(project, *command)
        assert result.exit_code == 2, result.output
        assert "test-action.sqlite: the delivery log is damaged" in result.output
        assert "Traceback" not in result.output
    (project / "test-action.sqlite").write_bytes(b"SQLite format 3\0" + b"\xff" * 4000)
    result = run(project, "report")
    assert result.exit_code == 2 and "test-action.sqlite" in result.output
    assert sink.count == 1


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE letters (
    campaign TEXT NOT NULL, contact_id TEXT NOT NULL, row INTEGER NOT NULL,
    recipients TEXT NOT NULL, subject TEXT NOT NULL, state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0, last_code INTEGER, last_reply TEXT NOT NULL DEFAULT '',
    refused TEXT NOT NULL DEFAULT '{}', message_id TEXT NOT NULL, fingerprint TEXT NOT NULL,
    created_at REAL NOT NULL, first_attempt_at REAL, last_attempt_at REAL, sent_at REAL,
    PRIMARY KEY (campaign, contact_id));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO letters (campaign, contact_id, row, recipients, subject, state, message_id,
    fingerprint, created_at, sent_at)
    VALUES ('Test action', 'Ana@Example.org', 2, '["Ana@Example.org"]', 'Hello Ana', 'sent',
    '<old@example.org>', 'old', 0, 0),
    ('Test action', 'bo@example.com', 3, '["bo@example.com"]', 'Hello Bo', 'pending',
    '<bo@example.org>', 'old', 0, NULL);
"""


def test_a_log_of_the_previous_release_is_upgraded_in_place(project: Path, sink: RecordingSink) -> None:
    with sqlite3.connect(project / "test-action.sqlite") as db:
        db.executescript(V1_SCHEMA)
    result = run(project, "send", "--yes")
    assert result.exit_code == 0, result.output
    assert "1 already sent" in result.output
    assert sink.count == 2  # Bo (queued by the old release) and Chen; Ana was sent
    assert log_states(project) == {
        "ana@example.org": State.SENT, "bo@example.com": State.SENT, "chen@example.net": State.SENT,
    }  # fmt: skip


def start_send(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(config)],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def wait_for(sink: RecordingSink, count: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while sink.count < count and process.poll() is None:
        assert time.monotonic() < deadline, "the send did not get going"
        time.sleep(0.01)


def test_sources_edited_during_a_send_change_nothing_in_it(tmp_path: Path, sink: RecordingSink) -> None:
    letters = 150
    config = numbered_campaign(tmp_path, sink.port, letters, "edited", 'rate = "150/s"\nconcurrency = 2')
    (tmp_path / "leaflet.bin").write_bytes(os.urandom(256 * 1024))
    template = tmp_path / "letter.txt"
    template.write_text(template.read_text(encoding="utf-8").replace("Subject:", "Attachment: leaflet.bin\nSubject:"))
    process = start_send(config)
    wait_for(sink, 10, process)
    contacts = tmp_path / "contacts.csv"
    rows = contacts.read_text(encoding="utf-8").splitlines()
    newcomers = [f"new{n}@example.org,{1000 + n}" for n in range(12)]
    contacts.write_text("\n".join([rows[0], *newcomers, *rows[1:]]) + "\n", encoding="utf-8")
    template.write_text("To: {{ email }}\nFrom: x@example.org\nSubject: Changed\n\nChanged.\n")
    (tmp_path / "leaflet.bin").unlink()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr.decode()
    assert sink.count == letters
    assert all(count == 1 for count in sink.received.values())
    texts = [path.read_bytes() for path in (tmp_path / "maildir" / "new").iterdir()]
    assert not any(b"Changed." in text or b"new0@" in text for text in texts)
    assert all(b"leaflet.bin" in text for text in texts)
    with DeliveryLog(tmp_path / "edited.sqlite", "edited") as log:
        assert log.counts()[State.SENT] == letters
    template.write_text(
        template.read_text(encoding="utf-8").replace("From: x@example.org", "From: Campaign <campaign@example.org>")
    )
    dry = subprocess.run(
        [sys.executable, "-m", "mailaction", "send", "--dry-run", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert "12 letters to send" in dry.stdout, dry.stdout + dry.stderr
    assert "12 new since the last run" in dry.stdout


def test_after_ctrl_c_every_report_counts_the_whole_campaign(tmp_path: Path, sink: RecordingSink) -> None:
    letters = 47
    config = numbered_campaign(tmp_path, sink.port, letters, "stopped", 'rate = "20/s"\nconcurrency = 1')
    process = start_send(config)
    wait_for(sink, 5, process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr.decode()
    sent = sink.count
    assert 0 < sent < letters
    report = subprocess.run(
        [sys.executable, "-m", "mailaction", "report", "--format", "json", "--config", str(config)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    counts = json.loads(report.stdout)["summary"]
    assert (counts["total"], counts["sent"], counts["pending"]) == (letters, sent, letters - sent)


def test_a_log_that_cannot_be_written_part_way_ends_with_1(tmp_path: Path, sink: RecordingSink) -> None:
    config = numbered_campaign(tmp_path, sink.port, 60, "blocked", 'rate = "20/s"\nconcurrency = 1')
    process = start_send(config)
    wait_for(sink, 5, process)
    with sqlite3.connect(tmp_path / "blocked.sqlite", isolation_level=None) as other:
        other.execute("BEGIN IMMEDIATE")  # holds the write lock past the sender's 5 s wait
        _, stderr = process.communicate(timeout=30)
        other.execute("ROLLBACK")
    assert process.returncode == 1, stderr.decode()
    lines = stderr.decode().strip().splitlines()
    assert lines[-1].startswith("Error: ") and "blocked.sqlite: cannot write the delivery log" in lines[-1]
    assert "some letters may have gone out" in lines[-1]
    assert "Traceback" not in stderr.decode()
    assert 0 < sink.count < 60


def test_suppressed_addresses_are_never_queued_and_proofs_ignore_the_list(
    tmp_path: Path, sink: RecordingSink
) -> None:
    config = numbered_campaign(tmp_path, sink.port, 5, "held", "concurrency = 1")
    args = ["--config", str(config)]
    assert run_cli("suppress", "add", *args, "P1@example.org", "p3@example.org").exit_code == 0
    first = run_cli("send", "--yes", *args, "--limit", "1")
    assert "2 suppressed: on the suppression list, so not sent" in first.output, first.output
    result = run_cli("send", "--yes", *args)
    assert result.exit_code == 0, result.output
    assert "2 suppressed" in result.output
    assert sink.count == 3
    with DeliveryLog(tmp_path / "held.sqlite", "held") as log:
        assert sorted(entry.contact_id for entry in log.entries()) == [
            "p0@example.org", "p2@example.org", "p4@example.org",
        ]  # fmt: skip
    proof = run_cli("send", "--yes", *args, "--test-to", "me@example.org", "--limit", "5")
    assert proof.exit_code == 0, proof.output
    assert sink.count == 8 and "on the suppression list" not in proof.output


def test_a_queued_letter_whose_text_is_gone_is_built_again(tmp_path: Path, sink: RecordingSink) -> None:
    config = numbered_campaign(tmp_path, sink.port, 3, "rebuilt", "concurrency = 1")
    runner = CliRunner()
    first = runner.invoke(main, ["send", "--yes", "--limit", "1", "--config", str(config)])
    assert first.exit_code == 0, first.output
    with sqlite3.connect(tmp_path / "rebuilt.sqlite") as db:  # as an older log holds them
        db.execute("DELETE FROM messages WHERE letter IN (SELECT rowid FROM letters WHERE state = 'pending')")
    second = runner.invoke(main, ["send", "--yes", "--config", str(config)])
    assert second.exit_code == 0, second.output
    assert sorted(sink.received.values()) == [1, 1, 1]
    with DeliveryLog(tmp_path / "rebuilt.sqlite", "rebuilt") as log:
        assert all(log.message(entry.contact_id) for entry in log.entries())
