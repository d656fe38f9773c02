"""The delivery log in a real PostgreSQL server: the same queue, shared by workers on several
machines (here: several `mailaction send` processes), killed and restarted mid-run."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from mailaction.cli import main
from mailaction.deliverylog import DeliveryLog, Outcome, State, open_log
from mailaction.errors import DeliveryLogError
from mailaction.pglog import PostgresLog, redacted
from tests.campaigns import RecordingSink, numbered_campaign
from tests.test_deliverylog import VERSION_2_INDEX, letter
from tests.test_workers import busiest_second, check_delivery

LETTERS = 300
RATE = 100
SENT = Outcome(State.SENT, 250, "2.0.0 Ok")


def campaign_on(folder: Path, port: int, url: str, count: int, sending: str) -> Path:
    config = numbered_campaign(folder, port, count, "shared", sending)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[campaign]\n", f'[campaign]\nlog = "{url}"\n'), encoding="utf-8")
    return config


def start_send(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(config), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def states_in(url: str) -> dict[str, State]:
    with open_log(url, "shared", create=False) as log:
        return {entry.message_id: entry.state for entry in log.entries()}


def test_the_log_keeps_states_and_messages_as_sqlite_does(pg_url: str) -> None:
    with open_log(pg_url, "spring") as log:
        assert isinstance(log, PostgresLog)
        for row in (3, 2, 4):
            log.register(letter(row))
        log.flush()
        log.join("here")
        claimed = log.claim(10, lease=30)
        assert [item.row for item in claimed] == [2, 3, 4]
        assert claimed[0].data == letter(2).data
        log.mark_sending(claimed[0].contact_id)
        log.mark_outcome(claimed[0].contact_id, SENT)
        log.flush()
    with open_log(pg_url, "spring", create=False) as log:
        counts = log.counts()
        assert (counts[State.SENT], counts[State.PENDING]) == (1, 2)
        assert [entry.row for entry in log.find("PERSON2@example.org")] == [2]
        assert log.history("person2@example.org")[-1].endswith("sent 250 2.0.0 Ok")
        assert log.message("person3@example.org") == letter(3).data



def test_a_log_of_version_2_gets_the_index_of_pending_letters_only(pg_url: str) -> None:
    with open_log(pg_url, "spring") as log:
        for row in (2, 3):
            log.register(letter(row))
        log.flush()
    with psycopg.connect(pg_url) as db:
        db.execute(VERSION_2_INDEX)
    with open_log(pg_url, "spring") as log:
        log.join("here")
        assert [item.row for item in log.claim(10, lease=30)] == [2, 3]
    with psycopg.connect(pg_url) as db:
        indexes = {name for (name,) in db.execute("SELECT indexname FROM pg_indexes")}
        assert "letters_pending" in indexes and "letters_queue" not in indexes
        assert db.execute("SELECT value FROM meta").fetchone() == ("3",)

def test_two_workers_never_claim_the_same_letter(pg_url: str) -> None:
    with open_log(pg_url, "spring") as log:
        for row in range(2, 202):
            log.register(letter(row))
    with open_log(pg_url, "spring") as one, open_log(pg_url, "spring") as other:
        one.join("one")
        other.join("other")
        taken: dict[str, list[str]] = {"one": [], "other": []}
        after = {"one": (-1, ""), "other": (-1, "")}
        for _ in range(40):  # 200 letters, at least 12 a round
            for log, count in ((one, 7), (other, 5)):
                assert log.worker is not None
                batch = log.claim(count, lease=30, after=after[log.worker])
                if batch:
                    after[log.worker] = (batch[-1].row, batch[-1].contact_id)
                taken[log.worker] += [item.contact_id for item in batch]
        both = taken["one"] + taken["other"]
        assert len(both) == len(set(both)) == 200
        assert taken["one"] and taken["other"]


def test_a_silent_worker_loses_its_letters_after_its_lease(pg_url: str) -> None:
    with open_log(pg_url, "spring") as log:
        for row in range(2, 6):
            log.register(letter(row))
    stale, fresh = open_log(pg_url, "spring"), open_log(pg_url, "spring")
    try:
        stale.join("stale")
        held = stale.claim(10, lease=1)
        stale.mark_sending(held[0].contact_id)  # the data may be on its way: uncertain after
        fresh.join("fresh")
        assert fresh.claim(10, lease=1) == []
        time.sleep(1.5)
        again = fresh.claim(10, lease=1)
        assert [item.row for item in again] == [3, 4, 5]
        assert fresh.get(held[0].contact_id).state is State.UNCERTAIN  # type: ignore[union-attr]
        with pytest.raises(DeliveryLogError, match="given to others"):
            stale.mark_sending(held[1].contact_id)
    finally:
        fresh.close()
        stale.worker = None  # it was taken for dead: nothing of its own to give back
        stale.close()


def test_the_password_of_the_url_is_never_shown() -> None:
    url = "postgresql://organiser:s3cret@127.0.0.1:1/campaigns"
    assert redacted(url) == "postgresql://organiser@127.0.0.1:1/campaigns"
    with pytest.raises(DeliveryLogError) as refused:
        open_log(url, "spring")
    assert "s3cret" not in str(refused.value)
    assert str(refused.value).startswith("postgresql://organiser@127.0.0.1:1/campaigns: cannot connect")


def test_send_report_and_show_on_postgresql(tmp_path: Path, sink: RecordingSink, pg_url: str) -> None:
    config = campaign_on(tmp_path, sink.port, pg_url, 5, "concurrency = 2")
    runner = CliRunner()
    sent = runner.invoke(main, ["send", "--yes", "--config", str(config)])
    assert sent.exit_code == 0, sent.output
    assert Counter(sink.received.values()) == Counter({1: 5})
    report = runner.invoke(main, ["report", "--format", "json", "--config", str(config)])
    assert report.exit_code == 0, report.output
    assert '"sent": 5' in report.output
    show = runner.invoke(main, ["show", "p3@example.org", "--config", str(config)])
    assert show.exit_code == 0, show.output
    assert "Dear supporter 3," in show.output
    assert not (tmp_path / "shared.sqlite").exists()


def test_killed_senders_on_one_postgresql_queue_send_every_letter_once(
    tmp_path: Path, sink: RecordingSink, pg_url: str
) -> None:
    """Three `send` processes (as on three machines), one killed every so often and started
    again: a letter arrives once, or is `uncertain`; the rate holds across them."""
    config = campaign_on(tmp_path, sink.port, pg_url, LETTERS, f'rate = "{RATE}/s"\nconcurrency = 3')
    randomness = random.Random(20261201)
    lease = ("--lease", "2")
    senders = [start_send(config, *lease) for _ in range(3)]
    kills = 0
    deadline = time.monotonic() + 180
    while kills < 6 and time.monotonic() < deadline:
        time.sleep(randomness.uniform(0.3, 0.8))
        if not sink.arrivals:
            continue
        if all(sender.poll() is not None for sender in senders):
            break
        victim = randomness.randrange(len(senders))
        senders[victim].send_signal(signal.SIGKILL)
        senders[victim].wait()
        senders[victim] = start_send(config, *lease)
        kills += 1
    for sender in senders:
        _, stderr = sender.communicate(timeout=120)
        assert sender.returncode in (0, 1), stderr.decode()
        assert b"Traceback" not in stderr
    assert kills >= 3, "the senders ended before they could be killed"
    check_delivery(states_in(pg_url), sink, LETTERS)
    assert busiest_second([at for at, _ in sink.arrivals]) <= RATE


def test_sqlite_stays_the_default(tmp_path: Path, sink: RecordingSink) -> None:
    config = numbered_campaign(tmp_path, sink.port, 3, "local", "concurrency = 1")
    result = CliRunner().invoke(main, ["send", "--yes", "--config", str(config)])
    assert result.exit_code == 0, result.output
    with DeliveryLog(tmp_path / "local.sqlite", "local", create=False) as log:
        assert log.counts()[State.SENT] == 3
