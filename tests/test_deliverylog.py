"""The delivery log: states, resume data, locking, durability and concurrent readers."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest

from mailaction.deliverylog import CACHE_KIB, DeliveryLog, Outcome, State
from mailaction.errors import DeliveryLogError, DeliveryLogLocked
from mailaction.message import Letter

ROOT = Path(__file__).resolve().parent.parent
SENT = Outcome(State.SENT, 250, "2.0.0 Ok: queued as 4F2A1")


def letter(row: int, name: str = "", *, fingerprint: str = "f1", subject: str = "Hello") -> Letter:
    name = name or f"person{row}"
    address = f"{name}@example.org"
    message_id = f"<{name}.c1@example.org>"
    data = f"To: {address}\r\nSubject: {subject}\r\nMessage-ID: {message_id}\r\n\r\nHi\r\n".encode()
    return Letter(row, address, "c@example.org", (address,), subject, message_id, fingerprint, data)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log.sqlite"


@pytest.fixture
def log(path: Path):
    with DeliveryLog(path, "spring") as log:
        yield log


def python(code: str, *, prefix: tuple[str, ...] = (), **kwargs) -> subprocess.Popen:
    """Start a Python process running ``code`` with mailaction importable."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [*prefix, sys.executable, "-c", textwrap.dedent(code)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_a_letter_goes_from_pending_through_sending_to_sent(log: DeliveryLog) -> None:
    before = time.time()
    entry = log.register(letter(2, "ana"))
    assert (entry.state, entry.attempts, entry.row, entry.campaign) == (
        State.PENDING,
        0,
        2,
        "spring",
    )
    assert entry.recipients == ("ana@example.org",) and entry.message_id == "<ana.c1@example.org>"
    assert entry.first_attempt_at is None and entry.sent_at is None
    log.mark_sending("ana@example.org")
    sending = log.get("ana@example.org")
    assert (sending.state, sending.attempts) == (State.SENDING, 1)
    assert before <= sending.first_attempt_at == sending.last_attempt_at
    log.mark_outcome("ana@example.org", SENT)
    sent = log.get("ana@example.org")
    assert (sent.state, sent.last_code, sent.last_reply) == (State.SENT, 250, SENT.reply)
    assert sent.sent_at >= sent.last_attempt_at


def test_attempts_count_and_keep_the_first_attempt_time(log: DeliveryLog) -> None:
    log.register(letter(2, "ana"))
    log.mark_sending("ana@example.org")
    refused = {"ana@example.org": "450 4.2.0 mailbox busy"}
    log.mark_outcome("ana@example.org", Outcome(State.DEFERRED, 450, "4.2.0 busy", refused))
    deferred = log.get("ana@example.org")
    assert (deferred.state, deferred.refused, deferred.sent_at) == (State.DEFERRED, refused, None)
    log.mark_sending("ana@example.org")
    log.mark_outcome("ana@example.org", SENT)
    entry = log.get("ana@example.org")
    assert (entry.state, entry.attempts, entry.refused) == (State.SENT, 2, {})
    assert entry.first_attempt_at == deferred.first_attempt_at <= entry.last_attempt_at


def test_register_returns_the_new_entry_as_the_log_holds_it(log: DeliveryLog) -> None:
    entry = log.register(letter(2, "ana"))
    assert entry == log.get("ana@example.org")
    assert (entry.state, entry.attempts, entry.row) == (State.PENDING, 0, 2)


def test_register_returns_an_existing_entry_unchanged(log: DeliveryLog) -> None:
    log.register(letter(2, "ana"))
    log.mark_sending("ana@example.org")
    log.mark_outcome("ana@example.org", Outcome(State.FAILED, 550, "5.1.1 no such user"))
    before = log.get("ana@example.org")
    again = log.register(letter(7, "ana", fingerprint="f2", subject="Changed"))
    assert again == before == log.get("ana@example.org")
    assert (again.fingerprint, again.row, again.state) == ("f1", 2, State.FAILED)


def test_enqueue_over_an_entry_refreshes_the_letter_but_keeps_its_history(log: DeliveryLog) -> None:
    log.register(letter(2, "ana"))
    log.mark_sending("ana@example.org")
    log.mark_outcome("ana@example.org", Outcome(State.DEFERRED, 421, "4.7.0 try later"))
    changed = Letter(
        9, "ana@example.org", "c@example.org", ("ana@example.org", "cc@example.net"), "New",
        "<x@example.org>", "f2", b"Subject: New\r\n\r\nChanged\r\n",
    )  # fmt: skip
    log.enqueue(changed, log.get("ana@example.org"))
    entry = log.get("ana@example.org")
    assert (entry.row, entry.recipients, entry.subject) == (9, changed.recipients, "New")
    assert (entry.message_id, entry.fingerprint) == ("<x@example.org>", "f2")
    # Queued again as it is now, its attempts and last reply kept.
    assert (entry.state, entry.attempts, entry.last_code) == (State.PENDING, 1, 421)
    assert log.message("ana@example.org") == changed.data


def test_marking_an_unknown_contact_is_an_error(log: DeliveryLog) -> None:
    with pytest.raises(KeyError):
        log.mark_sending("nobody@example.org")


def test_recover_interrupted_turns_sending_into_uncertain(path: Path) -> None:
    with DeliveryLog(path, "spring [test]") as other:
        other.register(letter(3, "ana"))
        other.mark_sending("ana@example.org")
    with DeliveryLog(path, "spring") as log:
        for row in (5, 3, 4):
            log.register(letter(row))
        log.mark_sending("person5@example.org")
        log.mark_sending("person3@example.org")
        log.mark_sending("person4@example.org")
        log.mark_outcome("person4@example.org", SENT)
        recovered = log.recover_interrupted()
        assert [entry.row for entry in recovered] == [3, 5]
        assert {entry.state for entry in recovered} == {State.UNCERTAIN}
        assert log.get("person5@example.org").last_reply == (
            "interrupted while sending; it may have been delivered"
        )
        assert log.get("person4@example.org").state is State.SENT
        assert log.recover_interrupted() == []
    with DeliveryLog(path, "spring [test]") as other:
        assert other.get("ana@example.org").state is State.SENDING


def test_counts_include_every_state(log: DeliveryLog) -> None:
    assert log.counts() == {state: 0 for state in State}
    log.register(letter(2))
    log.register(letter(3))
    log.mark_sending("person3@example.org")
    assert log.counts() == {**{state: 0 for state in State}, State.PENDING: 1, State.SENDING: 1}


def test_entries_come_in_row_order_and_filter_by_state(log: DeliveryLog) -> None:
    for row in (9, 2, 5, 7):
        log.register(letter(row))
    for row, outcome in ((9, SENT), (5, Outcome(State.FAILED, 550, "no")), (7, SENT)):
        log.mark_sending(f"person{row}@example.org")
        log.mark_outcome(f"person{row}@example.org", outcome)
    assert [entry.row for entry in log.entries()] == [2, 5, 7, 9]
    assert [entry.row for entry in log.entries([State.SENT])] == [7, 9]
    assert [entry.row for entry in log.entries(iter([State.FAILED, State.PENDING]))] == [2, 5]
    assert list(log.entries([])) == []


def test_sent_since_counts_only_sent_letters_in_the_period(log: DeliveryLog) -> None:
    start = time.time()
    for row in (2, 3, 4):
        log.register(letter(row))
        log.mark_sending(f"person{row}@example.org")
    log.mark_outcome("person2@example.org", SENT)
    log.mark_outcome("person3@example.org", SENT)
    log.mark_outcome("person4@example.org", Outcome(State.DEFERRED, 451, "later"))
    assert log.sent_since(start) == 2
    assert log.sent_since(time.time() + 60) == 0


def test_a_sending_mark_commits_what_came_before_and_outcomes_wait_for_a_flush(
    path: Path,
) -> None:
    with DeliveryLog(path, "spring") as log, DeliveryLog(path, "spring") as other:
        log.register(letter(2, "ana"))
        assert other.get("ana@example.org") is None  # not committed yet
        log.mark_sending("ana@example.org")
        assert other.get("ana@example.org").state is State.SENDING
        log.mark_outcome("ana@example.org", SENT)
        assert other.get("ana@example.org").state is State.SENDING
        log.flush()
        assert other.get("ana@example.org").state is State.SENT
        log.register(letter(3, "ben"))
    with DeliveryLog(path, "spring") as reopened:  # close() committed the rest
        assert reopened.get("ben@example.org").state is State.PENDING


def test_two_campaigns_in_one_file_are_independent(path: Path) -> None:
    with DeliveryLog(path, "spring") as real, DeliveryLog(path, "spring [test]") as proof:
        real.register(letter(2, "ana"))
        real.flush()  # a writer holds the file until it commits
        proof.register(letter(2, "ana"))
        proof.mark_sending("ana@example.org")
        proof.mark_outcome("ana@example.org", SENT)
        assert real.get("ana@example.org").state is State.PENDING
        assert real.counts()[State.SENT] == 0 and proof.counts()[State.SENT] == 1
        assert real.sent_since(0) == 0
        assert real.campaigns() == proof.campaigns() == ["spring", "spring [test]"]



def test_a_workers_marks_reach_the_letter_it_claimed_and_no_other(path: Path) -> None:
    """A worker marks the letters it claimed by their rowid: the same contact id in another
    campaign of the file is left alone, a deferred letter is marked again at its retry, and a
    settled one is still found by its contact id."""
    with DeliveryLog(path, "spring") as other, DeliveryLog(path, "autumn") as log:
        for row in (2, 3, 4):
            other.register(letter(row))
        other.flush()
        for row in (2, 3, 4):
            log.register(letter(row))
        log.flush()
        log.join("w1")
        statements: list[str] = []
        log._db.set_trace_callback(statements.append)
        assert [item.row for item in log.claim(3, lease=30)] == [2, 3, 4]
        log.mark_sending("person3@example.org")
        log.mark_outcome("person3@example.org", Outcome(State.DEFERRED, 451, "4.3.0 later"))
        log.mark_sending("person3@example.org")
        log.mark_outcome("person3@example.org", SENT)
        log.flush()
        marks = [sql for sql in statements if sql.startswith("UPDATE letters SET state")]
        assert len(marks) == 4 and all("WHERE rowid = " in sql for sql in marks)
        log.mark_sending("person3@example.org")  # settled: found by campaign and contact id
        log.mark_outcome("person3@example.org", SENT)
        log.flush()
        assert "WHERE campaign = " in statements[-2]
        assert [log.get(f"person{row}@example.org").state for row in (2, 3, 4)] == [
            State.PENDING, State.SENT, State.PENDING,
        ]  # fmt: skip
        assert log.get("person3@example.org").attempts == 3
        assert [other.get(f"person{row}@example.org").state for row in (2, 3, 4)] == [
            State.PENDING
        ] * 3
        assert other.get("person3@example.org").attempts == 0


VERSION_2_INDEX = """
DROP INDEX letters_pending;
CREATE INDEX letters_queue ON letters (campaign, state, row, contact_id);
UPDATE meta SET value = '2' WHERE key = 'schema_version';
"""


def test_a_log_of_version_2_gets_the_index_of_pending_letters_only(path: Path) -> None:
    with DeliveryLog(path, "spring") as log:
        for row in (2, 3, 4):
            log.register(letter(row))
        log.mark_sending("person2@example.org")
        log.mark_outcome("person2@example.org", SENT)
        log.flush()
    with closing(sqlite3.connect(path)) as db:
        db.executescript(VERSION_2_INDEX)
    with DeliveryLog(path, "spring") as log:
        indexes = {name for (name,) in log._db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
        assert "letters_pending" in indexes and "letters_queue" not in indexes
        assert log._db.execute("SELECT value FROM meta").fetchone() == ("3",)
        log.join("w1")
        statements: list[tuple[str, object]] = []  # as written, parameters apart
        execute = log._execute
        log._execute = lambda sql, params: statements.append((sql, params)) or execute(sql, params)
        assert [item.row for item in log.claim(10, lease=30)] == [3, 4]
        ((claim, params),) = [found for found in statements if "RETURNING rowid" in found[0]]
        plan = " ".join(map(str, log._db.execute(f"EXPLAIN QUERY PLAN {claim}", params)))
        assert "USING INDEX letters_pending" in plan, plan
        assert log.queue_end(2) == (4, "person4@example.org")


def test_only_a_log_that_plans_grows_its_page_cache(path: Path) -> None:
    # A plan looks up and queues ids in no order in two indexes and needs the pages at hand; a report
    # reads the whole campaign once and would only fill its cache.
    cache = lambda log: log._db.execute("PRAGMA cache_size").fetchone()[0]
    with DeliveryLog(path, "spring") as log:
        assert cache(log) == -2000  # SQLite's own
        log.register(letter(2))
        assert cache(log) == -CACHE_KIB
    with DeliveryLog(path, "spring") as reader:
        reader.counts(), list(reader.entries())
        assert cache(reader) == -2000
        reader.look_up(["person2@example.org"])  # as a plan begins
        assert cache(reader) == -CACHE_KIB

HOLD_LOCK = """
    import sys, time
    from pathlib import Path
    from mailaction.deliverylog import DeliveryLog
    log = DeliveryLog(Path(sys.argv[1]), "spring", lock=True)
    print("locked", flush=True)
    time.sleep(60)
"""


def test_lock_refuses_a_second_sender_until_the_first_is_killed(path: Path) -> None:
    holder = python(HOLD_LOCK.replace("sys.argv[1]", repr(str(path))))
    try:
        assert holder.stdout.readline() == "locked\n", holder.stderr.read()
        with pytest.raises(DeliveryLogLocked) as refused:
            DeliveryLog(path, "spring", lock=True)
        assert str(refused.value) == (
            f"{path}: another `mailaction send` is using this delivery log (pid {holder.pid})"
        )
        with DeliveryLog(path, "spring", create=False) as reader:
            assert reader.counts()[State.SENT] == 0
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with DeliveryLog(path, "spring", lock=True) as log:
        log.register(letter(2))


def test_a_closed_log_releases_its_lock(path: Path) -> None:
    DeliveryLog(path, "spring", lock=True).close()
    with DeliveryLog(path, "spring", lock=True):
        pass


def test_mark_sending_survives_kill_9(path: Path) -> None:
    killed = python(f"""
        import os, signal
        from pathlib import Path
        from mailaction.deliverylog import DeliveryLog
        from tests.test_deliverylog import letter
        log = DeliveryLog(Path({str(path)!r}), "spring", lock=True)
        log.register(letter(2, "ana"))
        log.mark_sending("ana@example.org")
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    killed.wait(timeout=30)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.read()
    with DeliveryLog(path, "spring", lock=True) as log:
        entry = log.get("ana@example.org")
        assert (entry.state, entry.attempts) == (State.SENDING, 1)


def test_a_reader_and_the_writer_do_not_wait_for_each_other(path: Path) -> None:
    started = time.monotonic()
    with DeliveryLog(path, "spring", lock=True) as writer:
        for row in (2, 3, 4):
            writer.register(letter(row))
        writer.flush()
        with DeliveryLog(path, "spring", create=False) as reader:
            reading = reader.entries()
            assert next(reading).row == 2  # the reader is inside a read transaction now
            writer.mark_sending("person3@example.org")
            assert [entry.state for entry in reading] == [State.PENDING, State.PENDING]
            assert reader.get("person3@example.org").state is State.SENDING
            other = sqlite3.connect(path, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")
            other.execute("UPDATE letters SET state = 'sent'")
            assert reader.counts()[State.SENT] == 0
            other.execute("COMMIT")
            other.close()
            assert reader.counts()[State.SENT] == 3
    assert time.monotonic() - started < 1  # no side waited out the 5 s busy timeout


def test_create_false_refuses_a_missing_log(path: Path) -> None:
    with pytest.raises(DeliveryLogError) as missing:
        DeliveryLog(path, "spring", create=False)
    assert str(missing.value) == f"{path}: no delivery log yet; run `mailaction send` first"
    assert not path.exists()


def test_create_false_leaves_an_empty_file_alone(path: Path) -> None:
    path.touch()
    with pytest.raises(DeliveryLogError, match="no delivery log yet"):
        DeliveryLog(path, "spring", create=False)
    assert path.stat().st_size == 0


def test_a_file_that_is_not_a_database_is_refused(path: Path) -> None:
    path.write_text("email,name\nana@example.org,Ana\n" * 200)
    with pytest.raises(DeliveryLogError) as refused:
        DeliveryLog(path, "spring")
    message = str(refused.value)
    assert message.startswith(f"{path}: ") and "not a database" in message and "\n" not in message


def test_a_log_from_a_newer_version_is_refused(path: Path) -> None:
    DeliveryLog(path, "spring").close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(DeliveryLogError, match="this version of mailaction"):
        DeliveryLog(path, "spring")


def test_a_read_only_directory_is_refused_with_the_path() -> None:
    prefix: tuple[str, ...] = ()
    if os.geteuid() == 0:  # root ignores permissions unless it gives up the capability to
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv to drop CAP_DAC_OVERRIDE")
        prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
    with tempfile.TemporaryDirectory() as directory:
        os.chmod(directory, 0o555)
        target = Path(directory) / "log.sqlite"
        attempt = python(
            f"""
            from pathlib import Path
            from mailaction.deliverylog import DeliveryLog
            from mailaction.errors import DeliveryLogError
            try:
                DeliveryLog(Path({str(target)!r}), "spring")
            except DeliveryLogError as error:
                print(error)
        """,
            prefix=prefix,
        )
        out, err = attempt.communicate(timeout=30)
        os.chmod(directory, 0o755)
    assert out.startswith(f"{target}: cannot open the delivery log"), err
    assert out.count("\n") == 1


def test_a_full_disk_stops_writes_with_a_clear_error(log: DeliveryLog) -> None:
    # max_page_count makes SQLite report SQLITE_FULL exactly as a full disk does.
    log._db.execute("PRAGMA max_page_count = 8")
    with pytest.raises(DeliveryLogError) as full:
        for row in range(2, 10_000):
            log.register(letter(row, subject="x" * 500))
    assert str(full.value) == (
        f"{log.path}: cannot write the delivery log: database or disk is full"
    )


def test_withdraw_takes_off_only_unsent_letters_of_contacts_not_noted(path: Path) -> None:
    a, b, c, d = (letter(row) for row in (2, 3, 4, 5))
    with DeliveryLog(path, "spring") as log:
        for each in (a, b, c, d):
            log.register(each)
        log.mark_sending(b.contact_id)
        log.mark_outcome(b.contact_id, Outcome(State.SENT, 250, "ok"))
        log.mark_sending(c.contact_id)
        log.mark_outcome(c.contact_id, Outcome(State.DEFERRED, 451, "later"))
        log.start_tally()
        log.note([d.contact_id])
        assert log.withdraw_unnoted(count_only=True) == 2  # a (pending) and c (deferred)
        assert len(list(log.entries())) == 4
        assert log.withdraw_unnoted() == 2
        log.flush()
        assert [entry.contact_id for entry in log.entries()] == [b.contact_id, d.contact_id]
    with DeliveryLog(path, "spring") as again:
        assert again.get(a.contact_id) is None


def test_claims_look_for_orphaned_letters_only_when_a_worker_was_buried(path: Path) -> None:
    """Looking for letters whose worker is gone scans the campaign: a claim does it at a
    worker's first claim and after unregistering silent workers, never at every claim (which
    made delivery cost grow with the campaign)."""
    with DeliveryLog(path, "spring") as log:
        for row in range(2, 12):
            log.register(letter(row))
        log.flush()
    statements: list[str] = []
    stale, fresh = DeliveryLog(path, "spring"), DeliveryLog(path, "spring")
    try:
        stale.join("stale")
        held = stale.claim(2, lease=30)
        stale._db.execute("UPDATE workers SET heartbeat = 0 WHERE id = 'stale'")  # silent long
        fresh.join("fresh")
        fresh._db.set_trace_callback(statements.append)
        sweeps = lambda: sum("NOT IN (SELECT id FROM workers" in sql for sql in statements)
        first = fresh.claim(3, lease=30)  # buries "stale" and gives its letters back
        assert sweeps() == 1
        more = fresh.claim(3, lease=30, after=(first[-1].row, first[-1].contact_id))
        assert sweeps() == 1
        assert [item.row for item in first] == [2, 3, 4]  # the buried worker's 2 and 3 among them
        assert [item.row for item in held] == [2, 3]
        stale.join("stale again")
        again = stale.claim(10, lease=30)  # the rest: 8 to 11
        stale._db.execute("UPDATE workers SET heartbeat = 0 WHERE id = 'stale again'")
        assert fresh.claim(3, lease=30, after=(more[-1].row, more[-1].contact_id)) == again[:3]
        assert sweeps() == 2
    finally:
        fresh.close()
        stale.worker = None  # taken for dead: nothing of its own to give back
        stale.close()


def test_a_write_waits_for_another_process_holding_the_lock(path: Path) -> None:
    """The log retries a statement refused while another connection holds the write lock (it
    waits in short steps of its own, not SQLite's), and writes once the lock is free."""
    with DeliveryLog(path, "spring") as log:
        log.register(letter(2))
        log.flush()
        other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        other.execute("BEGIN IMMEDIATE")
        threading.Timer(0.3, other.execute, ("ROLLBACK",)).start()
        started = time.monotonic()
        log.mark_sending(letter(2).contact_id)
        waited = time.monotonic() - started
        other.close()
        assert 0.25 <= waited < 0.9  # tried again within a millisecond of the lock freed
        assert log.get(letter(2).contact_id).state is State.SENDING  # type: ignore[union-attr]


def test_the_queue_committed_is_copied_into_the_database_by_a_thread(path: Path) -> None:
    automatic: list[int] = []  # SQLite's automatic checkpoint, as the queue's commit found it

    class Watched(DeliveryLog):
        def flush(self) -> None:
            automatic.append(self._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0])
            super().flush()

    with Watched(path, "spring") as log:
        for row in range(2, 1_002):
            log.enqueue(letter(row), None)
        log.commit_queue()
        assert automatic == [0]  # not in the commit: it would copy the whole queue there
        assert log._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000
        log.automatic_checkpoints(False)  # as a run turns it off while it sends
        assert log._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
        deadline = time.monotonic() + 10
        while path.stat().st_size < 400_000 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert path.stat().st_size >= 400_000  # the letters' pages, out of the WAL
        assert log.counts()[State.PENDING] == 1_000


def test_an_error_other_than_a_lock_is_not_waited_for(path: Path) -> None:
    with DeliveryLog(path, "spring") as log:
        log.register(letter(2))
        log.flush()
        with closing(sqlite3.connect(path)) as other:
            other.execute("DROP TABLE messages")
            other.commit()
        started = time.monotonic()
        with pytest.raises(DeliveryLogError, match="cannot write the delivery log: no such table"):
            log.message(letter(2).contact_id)
        assert time.monotonic() - started < 1


def test_a_letter_left_claimed_by_an_unregistered_worker_goes_to_the_next_first_claim(
    path: Path,
) -> None:
    with DeliveryLog(path, "spring") as log:
        for row in range(2, 5):
            log.register(letter(row))
        log.flush()
    with closing(sqlite3.connect(path)) as other:
        other.execute("UPDATE letters SET claimed_by = 'gone' WHERE row = 2")
        other.commit()
    with DeliveryLog(path, "spring") as log:
        log.join("next")
        assert [item.row for item in log.claim(10, lease=30)] == [2, 3, 4]
