"""The delivery log, pinned where mutation testing found it loose: the history lines `show`
prints, attachment parts stored once and put back byte for byte, lookups by address, bounces,
accounts, and what workers share (claims given back, rate slots)."""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import shutil
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailaction.cli import main
from mailaction.deliverylog import (
    SHARED_PART_SIZE,
    DeliveryLog,
    Outcome,
    State,
    is_database_url,
    open_log,
)
from mailaction.errors import DeliveryLogError, DeliveryLogLocked
from mailaction.message import Attachment, Letter
from tests.test_deliverylog import letter
from tests.test_queue import V1_SCHEMA

MOMENT = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
SENT = Outcome(State.SENT, 250, "2.0.0 Ok")


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "log.sqlite"


@pytest.fixture
def log(path: Path):
    with DeliveryLog(path, "spring") as log:
        yield log


def stamped(lines: list[str]) -> list[str]:
    """History lines with their time replaced by "T" (after checking it is one)."""
    for line in lines:
        assert re.match(f"{MOMENT} ", line), line
    return [re.sub(f"^{MOMENT}", "T", line) for line in lines]


# --- history: the text of `mailaction show` -------------------------------------------------


def test_show_prints_each_state_change_on_its_own_line(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with DeliveryLog(path, "spring") as log:
        log.register(letter(2, "ana"))
        log.mark_sending("ana@example.org")
        log.mark_outcome("ana@example.org", Outcome(State.DEFERRED, 451, "4.7.1  Try\r\n again\tlater"))
        log.mark_sending("ana@example.org")
        log.mark_outcome("ana@example.org", Outcome(State.FAILED, None, "connection refused"))
    monkeypatch.chdir(tmp_path)  # no mailaction.toml here: the log's only campaign is shown
    shown = CliRunner().invoke(main, ["show", "--log", str(path), "ana@example.org"])
    assert shown.exit_code == 0, shown.output
    head = shown.output.splitlines()[:5]
    assert head[0] == "Row 2 · ana@example.org · failed"
    assert stamped([line.removeprefix("  ") for line in head[1:]]) == [
        "T sending",
        "T deferred 451 4.7.1 Try again later",  # the reply on one line, spaces squeezed
        "T sending",
        "T failed connection refused",  # no code: the reply follows the state
    ]
    assert all(line.startswith("  ") for line in head[1:])


def test_a_long_reply_is_cut_to_200_characters_in_the_history(log: DeliveryLog) -> None:
    log.register(letter(2, "ana"))
    log.mark_sending("ana@example.org")
    log.mark_outcome("ana@example.org", Outcome(State.DEFERRED, 452, "x" * 150 + " " + "y" * 150))
    assert stamped(log.history("ana@example.org")) == [
        "T sending",
        "T deferred 452 " + "x" * 150 + " " + "y" * 49,
    ]
    assert log.get("ana@example.org").last_reply == "x" * 150 + " " + "y" * 150


def test_a_bounce_is_noted_once_in_state_reply_and_history(log: DeliveryLog) -> None:
    for row in (2, 3):
        log.register(letter(row))
        log.mark_sending(f"person{row}@example.org")
        log.mark_outcome(f"person{row}@example.org", SENT)
    log.flush()
    assert log.record_bounce("person2@example.org", 550, "5.1.1 user unknown", permanent=True)
    assert not log.record_bounce("person2@example.org", 550, "5.1.1 user unknown", permanent=True)
    assert log.record_bounce("person3@example.org", 450, "4.2.2 mailbox full", permanent=False)
    assert not log.record_bounce("nobody@example.org", 550, "5.1.1", permanent=True)
    bounced, noted = log.get("person2@example.org"), log.get("person3@example.org")
    assert (bounced.state, bounced.last_code, bounced.last_reply) == (
        State.BOUNCED, 550, "5.1.1 user unknown",
    )  # fmt: skip
    assert (noted.state, noted.last_code, noted.last_reply) == (
        State.SENT, 450, "4.2.2 mailbox full",
    )  # fmt: skip
    assert stamped(log.history("person2@example.org")) == [
        "T sending", "T sent 250 2.0.0 Ok", "T bounced 550 5.1.1 user unknown",
    ]  # fmt: skip
    assert stamped(log.history("person3@example.org"))[-1] == "T sent 450 4.2.2 mailbox full"
    assert log.counts()[State.BOUNCED] == 1 and log.sent_span()[0] == 2


def test_a_permanent_bounce_settles_an_uncertain_letter_too(path: Path) -> None:
    with DeliveryLog(path, "spring") as log:
        log.register(letter(2))
        log.mark_sending("person2@example.org")
    with DeliveryLog(path, "spring") as log:
        assert [entry.row for entry in log.recover_interrupted()] == [2]
        assert not log.record_bounce("person2@example.org", 450, "4.2.2 full", permanent=False)
        assert log.record_bounce("person2@example.org", 550, "5.1.1 unknown", permanent=True)
        assert log.get("person2@example.org").state is State.BOUNCED


# --- attachment parts: stored once, put back byte for byte -----------------------------------


def attachment(name: str, size: int, fill: bytes = b"A") -> Attachment:
    """An attachment whose MIME part is exactly ``size`` bytes."""
    head = f"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename={name}\r\n\r\n"
    body = (fill * size)[: size - len(head)]
    part = head.encode("ascii") + body
    assert len(part) == size
    digest = hashlib.sha256(body).hexdigest()
    return Attachment(name, "application/pdf", body, digest, part, Path(name), body)


def with_parts(row: int, *attachments: Attachment, order: tuple[int, ...] | None = None) -> Letter:
    """A letter holding the parts of ``attachments`` (in ``order`` of their index) in its data."""
    base = letter(row)
    pieces = [base.data.replace(b"\r\n\r\nHi\r\n", b"\r\nContent-Type: multipart/mixed\r\n\r\n")]
    for index in order if order is not None else range(len(attachments)):
        pieces += [b"--b\r\n", attachments[index].part, b"\r\n"]
    data = b"".join(pieces) + b"--b--\r\n"
    return Letter(
        base.row, base.contact_id, base.sender, base.recipients, base.subject, base.message_id,
        f"f{row}", data, attachments=attachments,
    )  # fmt: skip


def stored_parts(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute("SELECT count(*) FROM blobs").fetchone()[0])


def test_letters_with_the_same_attachments_share_their_parts(log: DeliveryLog, path: Path) -> None:
    report, photo = attachment("report.pdf", 6000, b"R"), attachment("photo.pdf", 5000, b"P")
    letters = [with_parts(2, report, photo), with_parts(3, report, photo), with_parts(4, photo)]
    for each in letters:
        log.register(each)
    log.flush()
    assert stored_parts(path) == 2
    assert path.stat().st_size < 3 * 6000 + 3 * 5000  # each part once, not once per letter
    for each in letters:
        assert log.message(each.contact_id) == each.data
    log.join("here")
    assert [claimed.data for claimed in log.claim(10, lease=30)] == [each.data for each in letters]


def test_the_same_part_twice_in_a_letter_is_put_back_twice(log: DeliveryLog, path: Path) -> None:
    report = attachment("report.pdf", 4000)
    twice = with_parts(2, report, report)
    log.register(twice)
    log.flush()
    assert log.message(twice.contact_id) == twice.data
    assert stored_parts(path) == 1
    with sqlite3.connect(path) as db:  # neither copy is left in the message itself
        assert db.execute("SELECT length(content) FROM messages").fetchone()[0] < 1000


def test_a_part_found_out_of_order_stays_in_the_message(log: DeliveryLog, path: Path) -> None:
    first, second = attachment("a.pdf", 3000, b"a"), attachment("b.pdf", 3000, b"b")
    swapped = with_parts(2, first, second, order=(1, 0))  # the data holds b.pdf, then a.pdf
    log.register(swapped)
    log.flush()
    assert log.message(swapped.contact_id) == swapped.data
    assert stored_parts(path) == 1  # a.pdf, looked for after b.pdf, is kept in the message
    third = attachment("c.pdf", 3000, b"c")
    skipped = with_parts(3, first, second, third, order=(1, 0, 2))
    log.register(skipped)
    log.flush()
    assert log.message(skipped.contact_id) == skipped.data
    assert stored_parts(path) == 2  # c.pdf, after the part not found, is still shared


def test_parts_from_2048_bytes_are_stored_apart(log: DeliveryLog, path: Path) -> None:
    small, shared = attachment("s.pdf", SHARED_PART_SIZE - 1, b"s"), attachment("l.pdf", SHARED_PART_SIZE)
    letters = [with_parts(2, small, shared), with_parts(3, small, shared)]
    for each in letters:
        log.register(each)
    log.flush()
    assert stored_parts(path) == 1
    assert [log.message(each.contact_id) for each in letters] == [each.data for each in letters]


def test_reading_more_distinct_parts_than_the_cache_holds(log: DeliveryLog) -> None:
    letters = [with_parts(row, attachment(f"{row}.pdf", 3000, bytes([64 + row]))) for row in range(2, 14)]
    for each in letters:
        log.register(each)
    log.flush()
    for _ in range(2):  # the second pass reads parts the cache let go of
        assert [log.message(each.contact_id) for each in letters] == [each.data for each in letters]


def test_a_replaced_letter_keeps_only_its_new_parts(log: DeliveryLog, path: Path) -> None:
    old, new = attachment("old.pdf", 3000, b"o"), attachment("new.pdf", 3000, b"n")
    log.register(with_parts(2, old))
    log.flush()
    log.enqueue(with_parts(2, new), log.get("person2@example.org"))
    log.flush()
    assert log.message("person2@example.org") == with_parts(2, new).data
    log.mark_sending("person2@example.org")
    log.mark_outcome("person2@example.org", SENT)
    log.flush()
    assert log.expire_messages(time.time() + 1) == 1
    assert stored_parts(path) == 0 and log.message("person2@example.org") is None


# --- lookups by address ----------------------------------------------------------------------


def letter_to(row: int, contact_id: str, *recipients: str) -> Letter:
    base = letter(row)
    return Letter(
        row, contact_id, base.sender, recipients, base.subject, base.message_id, f"f{row}",
        base.data,
    )  # fmt: skip


def test_find_by_an_address_that_is_not_the_contact_id(log: DeliveryLog) -> None:
    log.register(letter_to(2, "M1", "anaïs@example.org"))
    log.register(letter_to(3, "M2", "bo@example.org", "a_b@example.org"))
    log.register(letter_to(4, "M3", "axb@example.org"))
    log.register(letter_to(5, "M4", "100%@example.org"))
    log.register(letter_to(6, "M5", "1000@example.org"))
    assert [entry.row for entry in log.find("ANAÏS@example.org")] == [2]
    assert [entry.row for entry in log.find("a_b@example.org")] == [3]
    assert [entry.row for entry in log.find("100%@example.org")] == [5]
    assert [entry.row for entry in log.find("M3")] == [4]
    assert [entry.row for entry in log.find("6")] == [6]
    assert log.find("nobody@example.org") == []


# --- accounts --------------------------------------------------------------------------------


def test_sent_letters_are_counted_per_account(log: DeliveryLog) -> None:
    start = time.time()
    for row, account in ((2, "b"), (3, "a"), (4, "b"), (5, None)):
        log.register(letter(row))
        if account is not None:
            log.note_account(f"person{row}@example.org", account)
        log.mark_sending(f"person{row}@example.org")
        log.mark_outcome(f"person{row}@example.org", SENT)
    log.register(letter(6))
    log.note_account("person6@example.org", "a")  # tried, not sent
    log.flush()
    assert log.sent_by_account() == {"a": 1, "b": 2}
    assert list(log.sent_by_account()) == ["a", "b"]
    assert (log.sent_since(start, "b"), log.sent_since(start, "a"), log.sent_since(start)) == (2, 1, 4)
    with pytest.raises(KeyError):
        log.note_account("nobody@example.org", "a")


# --- workers ---------------------------------------------------------------------------------


def test_a_worker_leaving_gives_back_what_it_has_not_settled(path: Path) -> None:
    with DeliveryLog(path, "spring") as log:
        for row in (2, 3, 4, 5):
            log.register(letter(row))
        log.join("one")
        assert [claimed.row for claimed in log.claim(3, lease=30)] == [2, 3, 4]
        log.mark_sending("person2@example.org")
        log.mark_outcome("person2@example.org", Outcome(State.DEFERRED, 451, "later"))
        log.mark_sending("person3@example.org")
        log.mark_outcome("person3@example.org", SENT)
        log.leave()
        states = {entry.row: entry.state for entry in log.entries()}
        assert states == {2: State.DEFERRED, 3: State.SENT, 4: State.PENDING, 5: State.PENDING}
        log.join("two")
        assert [claimed.row for claimed in log.claim(10, lease=30)] == [4, 5]


def leave_unsettled(log: DeliveryLog, worker: str, rows: tuple[int, ...]) -> None:
    """Queue ``rows``; as ``worker``, claim the first three, then leave row 2 `sending`, row 3
    `deferred` and row 4 untried."""
    for row in rows:
        log.register(letter(row))
    log.join(worker)
    assert [claimed.row for claimed in log.claim(3, lease=30)] == [2, 3, 4]
    log.mark_sending("person2@example.org")
    log.mark_sending("person3@example.org")
    log.mark_outcome("person3@example.org", Outcome(State.DEFERRED, 451, "later"))
    log.flush()


def test_a_dead_workers_letters_go_back_to_the_queue(path: Path) -> None:
    with DeliveryLog(path, "spring") as dead, DeliveryLog(path, "spring") as alive:
        leave_unsettled(dead, "dead", rows=(2, 3, 4, 5))
        alive.join("alive")
        assert [claimed.row for claimed in alive.claim(10, lease=30)] == [5]
        alive.recover_worker("dead")
        alive.heartbeat()  # only the dead worker was unregistered
        entries = {entry.row: entry for entry in alive.entries()}
        assert (entries[2].state, entries[2].last_reply) == (
            State.UNCERTAIN, "interrupted while sending; it may have been delivered",
        )  # fmt: skip
        assert stamped(alive.history("person2@example.org"))[-1] == (
            "T uncertain interrupted while sending; it may have been delivered"
        )
        assert (entries[3].state, entries[4].state) == (State.PENDING, State.PENDING)
        assert [claimed.row for claimed in alive.claim(10, lease=30)] == [3, 4, 5]  # 5: its own
        with pytest.raises(DeliveryLogError, match="given to others"):
            dead.heartbeat()
        dead.rollback()  # it stops, holding nothing of its own
        dead.worker = None


def test_workers_share_rate_slots(path: Path) -> None:
    with DeliveryLog(path, "spring") as one, DeliveryLog(path, "spring") as two:
        one.register(letter(2))
        one.flush()
        limits = [("", 0.5), ("@example.org", 2.0)]
        assert one.take_slot(limits) == pytest.approx(0, abs=0.1)
        assert two.take_slot(limits) == pytest.approx(2.0, abs=0.1)  # the domain's interval
        # The first moment free under every rate taken, each rate's next slot is that + its own.
        assert one.take_slot([("", 0.5)]) == pytest.approx(2.5, abs=0.1)
        assert one.take_slot([("@example.org", 2.0)]) == pytest.approx(4.0, abs=0.1)
        other = DeliveryLog(path, "autumn")
        try:
            assert other.take_slot(limits) == pytest.approx(0, abs=0.1)  # its own campaign's
        finally:
            other.close()


# --- withdrawing -----------------------------------------------------------------------------


def test_withdraw_takes_off_only_a_letter_never_sent(log: DeliveryLog) -> None:
    for row in (2, 3, 4):
        log.register(letter(row))
    log.mark_sending("person3@example.org")
    log.mark_outcome("person3@example.org", SENT)
    log.mark_sending("person4@example.org")
    log.mark_outcome("person4@example.org", Outcome(State.DEFERRED, 451, "later"))
    for row in (2, 3, 4):
        log.withdraw(f"person{row}@example.org")
    log.flush()
    assert [entry.row for entry in log.entries()] == [3]


# --- where the log is ------------------------------------------------------------------------


def test_database_urls_are_told_from_files() -> None:
    assert is_database_url("postgresql://u@db/mail") and is_database_url("postgres://u@db/mail")
    assert not is_database_url("postgres.sqlite") and not is_database_url(Path("postgres://x"))


def test_a_postgres_url_opens_that_database_for_the_campaign(pg_url: str) -> None:
    short = pg_url.replace("postgresql://", "postgres://", 1)
    with open_log(short, " spring ") as log:
        assert (log.campaign, log.location) == ("spring", short)
        log.register(letter(2))
        log.flush()
    with open_log(pg_url, "spring", create=False) as log:
        assert [entry.row for entry in log.entries()] == [2]
    fresh = pg_url.rsplit("/", 1)[0] + "/postgres"  # a database without a delivery log
    with pytest.raises(DeliveryLogError, match="no delivery log yet"):
        open_log(fresh, "spring", create=False)


# --- queue and report figures ----------------------------------------------------------------


def test_queue_end_is_the_last_letter_of_a_limited_run(log: DeliveryLog) -> None:
    for row in (4, 2, 3):
        log.register(letter(row))
    log.mark_sending("person2@example.org")
    assert log.queue_end(1) == (3, "person3@example.org")  # pending ones only, in row order
    assert log.queue_end(2) == (4, "person4@example.org")
    assert log.queue_end(3) is None


def test_refused_recipients_are_counted_per_state(log: DeliveryLog) -> None:
    for row in (2, 3, 4):
        log.register(letter(row))
        log.mark_sending(f"person{row}@example.org")
    some = {"person2@example.org": "550 5.1.1 no such user"}
    log.mark_outcome("person2@example.org", Outcome(State.SENT, 250, "ok", some))
    log.mark_outcome("person3@example.org", Outcome(State.FAILED, 550, "no", {"x@example.org": "550"}))
    log.mark_outcome("person4@example.org", SENT)
    log.flush()
    assert log.refused_counts() == {**dict.fromkeys(State, 0), State.SENT: 1, State.FAILED: 1}



# --- more worker cases: who is unregistered, what comes back --------------------------------


def test_leaving_or_burying_a_worker_leaves_the_others_registered(path: Path) -> None:
    with DeliveryLog(path, "spring") as one, DeliveryLog(path, "spring") as two:
        for row in (2, 3):
            one.register(letter(row))
        for worker, log in (("one", one), ("two", two), ("three", DeliveryLog(path, "spring"))):
            log.join(worker)
            if worker == "three":
                log.worker = None  # taken for dead: it never comes back
                log.close()
        two.recover_worker("three")
        two.heartbeat()
        one.heartbeat()
        one.leave()
        two.heartbeat()  # still registered: only "one" left
        assert [claimed.row for claimed in two.claim(10, lease=30)] == [2, 3]
        assert two.recover_interrupted(silent_for=30) == []  # "two" is alive: its claims stay
        two.heartbeat()
        assert not two.work_left()


def test_claims_of_a_silent_worker_come_back_deferred_ones_as_pending(path: Path) -> None:
    with DeliveryLog(path, "spring") as silent, DeliveryLog(path, "spring") as other:
        leave_unsettled(silent, "silent", rows=(2, 3, 4))
        assert other.work_left()  # a worker's unsettled letters may still come back
        time.sleep(0.05)
        recovered = other.recover_interrupted(silent_for=0.01)
        assert [entry.row for entry in recovered] == [2]
        assert stamped(other.history("person2@example.org"))[-1] == (
            "T uncertain interrupted while sending; it may have been delivered"
        )
        states = {entry.row: entry.state for entry in other.entries()}
        assert states == {2: State.UNCERTAIN, 3: State.PENDING, 4: State.PENDING}
        with pytest.raises(DeliveryLogError) as lost:
            silent.mark_sending("person4@example.org")
        assert str(lost.value) == (
            f"{path}: this worker's letters were given to others (it was silent longer than its"
            " lease); it stops"
        )
        silent.rollback()
        silent.worker = None


def test_a_silent_workers_deferred_letter_is_claimed_again(path: Path) -> None:
    with DeliveryLog(path, "spring") as silent, DeliveryLog(path, "spring") as other:
        for row in (2, 3):
            silent.register(letter(row))
        silent.join("silent")
        assert [claimed.row for claimed in silent.claim(1, lease=30)] == [2]
        silent.mark_sending("person2@example.org")
        silent.mark_outcome("person2@example.org", Outcome(State.DEFERRED, 451, "later"))
        silent.flush()
        other.join("other")
        assert other.claim(0, lease=30) == []
        time.sleep(0.05)
        claimed = other.claim(10, lease=0.01)
        assert [each.row for each in claimed] == [2, 3]
        assert claimed == [letter(2), letter(3)]  # the letters as queued, whole
        silent.worker = None


# --- error messages --------------------------------------------------------------------------


def test_errors_name_the_log_and_the_letter(log: DeliveryLog, path: Path) -> None:
    with pytest.raises(KeyError, match="'spring/nobody@example.org is not in the delivery log'"):
        log.move("nobody@example.org", 3)
    with pytest.raises(KeyError, match="'spring: a letter marked is not in the delivery log'"):
        log.mark_sending("nobody@example.org")
    log.rollback()
    ghost = letter(2, "ghost")
    log.register(ghost)
    entry = log.get(ghost.contact_id)
    log.withdraw(ghost.contact_id)
    with pytest.raises(KeyError, match="'spring/ghost@example.org is not in the delivery log'"):
        log.enqueue(ghost, entry)
    log.rollback()
    assert log.history("nobody@example.org") == []
    assert log.message("nobody@example.org") is None


def test_a_letter_whose_text_expired_cannot_be_claimed(log: DeliveryLog, path: Path) -> None:
    log.register(letter(2))
    assert log.message("person2@example.org") == letter(2).data
    log.mark_sending("person2@example.org")
    log.mark_outcome("person2@example.org", SENT)
    log.flush()
    log.expire_messages(time.time() + 1)
    assert log.message("person2@example.org") is None
    log.requeue("person2@example.org", 5)
    log.join("here")
    with pytest.raises(DeliveryLogError) as gone:
        log.claim(1, lease=30)
    assert str(gone.value) == (
        f"{path}: the message of row 5 (person2@example.org) is no longer stored; run `mailaction"
        " send` again to queue it anew"
    )
    log.rollback()


def test_a_damaged_log_says_so(log: DeliveryLog, path: Path) -> None:
    log.register(with_parts(2, attachment("a.pdf", 3000)))
    log.flush()
    with sqlite3.connect(path) as db:
        digest = db.execute("SELECT digest FROM blobs").fetchone()[0]
        db.execute("DELETE FROM blobs")
        db.execute("UPDATE letters SET state = 'lost' WHERE row = 2")
    with DeliveryLog(path, "spring") as reopened:
        with pytest.raises(DeliveryLogError) as damaged:
            reopened.message("person2@example.org")
        assert str(damaged.value) == f"{path}: the delivery log is damaged: no part {digest}"
        with pytest.raises(DeliveryLogError) as damaged:
            list(reopened.entries())
        assert str(damaged.value) == (
            f"{path}: the delivery log is damaged: 'lost' is not a valid State"
        )


def test_a_log_damaged_while_it_is_open_says_so(path: Path) -> None:
    with DeliveryLog(path, "spring") as log:
        for n in range(400):
            log.register(letter(n))
    size = path.stat().st_size
    with DeliveryLog(path, "spring") as reopened:  # its letters not read yet
        with path.open("r+b") as file:  # the second half of the file overwritten meanwhile
            file.seek(size // 2)
            file.write(b"\xff" * (size - size // 2))
        with pytest.raises(DeliveryLogError) as damaged:
            reopened.counts()
    assert str(damaged.value) == (
        f"{path}: the delivery log is damaged: database disk image is malformed"
    )


def test_a_log_without_its_version_or_at_a_folder_is_refused(path: Path, tmp_path: Path) -> None:
    with pytest.raises(DeliveryLogError) as folder:
        DeliveryLog(tmp_path, "spring")
    assert str(folder.value) == f"{tmp_path}: cannot open the delivery log: unable to open database file"
    DeliveryLog(path, "spring").close()
    with sqlite3.connect(path) as db:
        db.execute("DELETE FROM meta")
    with pytest.raises(DeliveryLogError, match="not a delivery log this version of mailaction"):
        DeliveryLog(path, "spring")


# --- the lock file ---------------------------------------------------------------------------


def test_the_lock_file_is_readable_by_all_and_names_its_holder(path: Path) -> None:
    old = os.umask(0o022)
    try:
        with DeliveryLog(path, "spring", lock=True):
            lock = Path(f"{path}.lock")
            assert lock.read_text() == f"{os.getpid()}\n"
            assert lock.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


def test_a_lock_held_without_a_pid_is_refused_without_one(path: Path) -> None:
    lock = Path(f"{path}.lock")
    lock.write_bytes(b"\xff\xfe not a pid")
    holder = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX)  # another open file: the same process is refused too
        with pytest.raises(DeliveryLogLocked) as refused:
            DeliveryLog(path, "spring", lock=True)
        assert str(refused.value) == (
            f"{path}: another `mailaction send` is using this delivery log"
        )
        lock.write_bytes(b"")
        with pytest.raises(DeliveryLogLocked) as refused:
            DeliveryLog(path, "spring", lock=True)
        assert str(refused.value).endswith("is using this delivery log")
    finally:
        os.close(holder)


def test_open_log_locks_and_creates_only_when_asked(path: Path) -> None:
    with pytest.raises(DeliveryLogError, match="no delivery log yet"):
        open_log(path, "spring", create=False)
    with open_log(path, "spring", lock=True) as log:
        with pytest.raises(DeliveryLogLocked):
            DeliveryLog(path, "spring", lock=True)
        with open_log(path, "spring") as reader, open_log(path, "spring", create=False) as other:
            assert reader.counts() == other.counts() == log.counts()
    with open_log(path, "spring", lock=True):
        pass


# --- a log of the first release --------------------------------------------------------------


def test_an_upgraded_log_finds_its_letters_under_another_name(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.executescript(V1_SCHEMA)
    with DeliveryLog(path, "Test action") as log:
        assert [entry.contact_id for entry in log.entries()] == ["ana@example.org", "bo@example.com"]
    with DeliveryLog(path, "Renamed") as renamed:
        again = Letter(2, "ana@example.org", "c@example.org", ("Ana@Example.org",), "Hello Ana",
                       "<new@example.org>", "old", b"data")  # fmt: skip
        twin = renamed.twin(again)
        assert twin is not None and (twin.campaign, twin.row) == ("Test action", 2)


def test_a_full_disk_while_writing_outcomes_is_a_clear_error(log: DeliveryLog) -> None:
    for row in (2, 3, 4):
        log.register(letter(row))
    log.flush()
    pages = log._db.execute("PRAGMA page_count").fetchone()[0]
    log._db.execute(f"PRAGMA max_page_count = {pages}")  # SQLITE_FULL, as a full disk gives
    for row in (2, 3, 4):
        log.mark_sending(f"person{row}@example.org", commit=False)
        log.mark_outcome(f"person{row}@example.org", Outcome(State.DEFERRED, 451, "x" * 3000))
    with pytest.raises(DeliveryLogError) as full:
        log.flush()
    assert str(full.value) == f"{log.path}: cannot write the delivery log: database or disk is full"
    log.rollback()


def test_a_checkpoint_copies_what_was_committed_into_the_database_file(
    log: DeliveryLog, path: Path, tmp_path: Path
) -> None:
    main_file_only = tmp_path / "copy.sqlite"

    def letters_in_the_file() -> int:
        shutil.copyfile(path, main_file_only)  # without its WAL
        with closing(sqlite3.connect(main_file_only)) as db:
            return int(db.execute("SELECT count(*) FROM letters").fetchone()[0])

    log.register(letter(2))
    log.flush()
    log.checkpoint()
    assert letters_in_the_file() == 1
    log.register(letter(3))
    log.flush()
    assert letters_in_the_file() == 1  # committed, but still in the WAL only
    log.checkpoint()
    assert letters_in_the_file() == 2


def test_claiming_before_joining_is_a_programming_error(log: DeliveryLog) -> None:
    with pytest.raises(AssertionError) as early:
        log.claim(1, lease=30)
    assert str(early.value) == "join() first"


def test_a_lock_file_that_cannot_be_created_is_refused_with_its_path(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = tmp_path / "file" / "log.sqlite"  # under a file: not even root can create it
    with pytest.raises(DeliveryLogError) as refused:
        DeliveryLog(path, "spring", lock=True)
    assert str(refused.value) == f"{path}.lock: cannot create the lock file: Not a directory"


def test_noting_the_list_holds_no_transaction_open_against_other_writers(path: Path) -> None:
    # Between noting the list and queueing, another process commits a letter: the plan's first
    # write must start from what is on disk then (a transaction SQLite would have opened on its
    # own at the note would hold an older snapshot, and the write would fail for good).
    with DeliveryLog(path, "spring") as log:
        log.register(letter(2))
    with DeliveryLog(path, "spring") as planning, DeliveryLog(path, "spring") as other:
        planning.start_tally()
        planning.note(["person2@example.org"])
        planning.look_up(["person2@example.org"])
        other.register(letter(3))
        other.flush()
        planning.enqueue(letter(4), None)
        planning.flush()
        assert sum(planning.counts().values()) == 3
