"""The crash-safe delivery log: one SQLite row per (campaign, contact) with its sending state.

The database runs in WAL mode with ``synchronous=NORMAL``: every committed change survives the
process being killed (even ``kill -9``), and reports can read while a `send` writes. A power loss
or an operating-system crash may lose the last few commits, so a letter in flight then could be
sent twice; ``synchronous=FULL`` would prevent that at the cost of an fsync per state change.

Commits are grouped by one rule: a letter's `sending` mark is committed, with everything written
since the last commit, before its data may go out (`mark_sending`). Registrations and outcomes
are written at once but committed with the next such mark, or by `flush` (which the sender calls
whenever it is about to wait, and at the end of a run) or `close`. So a crash can lose only the
outcomes of its last moments: those letters are still `sending` on disk, which the next run turns
into `uncertain` (held, never sent again on its own, never forgotten). A registration lost that
way belongs to a letter whose data never went out; the next run registers it again.
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from .errors import DeliveryLogError, DeliveryLogLocked

if TYPE_CHECKING:
    from .message import Letter

SCHEMA_VERSION = 1

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS letters (
    campaign TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    recipients TEXT NOT NULL,            -- JSON list
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_code INTEGER,
    last_reply TEXT NOT NULL DEFAULT '',
    refused TEXT NOT NULL DEFAULT '{{}}',  -- JSON object: recipient -> reply
    message_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at REAL NOT NULL,
    first_attempt_at REAL,
    last_attempt_at REAL,
    sent_at REAL,
    PRIMARY KEY (campaign, contact_id)
);
CREATE INDEX IF NOT EXISTS letters_state ON letters (campaign, state);
CREATE INDEX IF NOT EXISTS letters_row ON letters (campaign, row);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
"""

_INTERRUPTED = "interrupted while sending; it may have been delivered"


class State(StrEnum):
    """Where a letter stands; the value is what the log stores."""

    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    UNCERTAIN = "uncertain"
    BOUNCED = "bounced"  # accepted, then returned by a delivery status notification (5.x.x)


@dataclass(frozen=True)
class Outcome:
    """How one attempt to send a letter ended."""

    state: State  # SENT, DEFERRED, FAILED or UNCERTAIN
    code: int | None  # last SMTP reply code; None for local/connection errors
    reply: str  # reply text or error description
    refused: dict[str, str] = field(default_factory=dict)  # recipient -> "550 5.1.1 ..."


@dataclass(frozen=True)
class Entry:
    """One letter as the log records it; times are unix times."""

    campaign: str
    contact_id: str
    row: int
    recipients: tuple[str, ...]
    subject: str
    state: State
    attempts: int
    last_code: int | None
    last_reply: str
    refused: dict[str, str]
    message_id: str
    fingerprint: str
    created_at: float
    first_attempt_at: float | None
    last_attempt_at: float | None
    sent_at: float | None


_FIELDS = tuple(f.name for f in fields(Entry))  # the letters table's columns, in order
_COLUMNS = ", ".join(_FIELDS)


def _entry(values: tuple[Any, ...]) -> Entry:
    stored = dict(zip(_FIELDS, values, strict=True))
    stored.update(
        recipients=tuple(json.loads(stored["recipients"])),
        state=State(stored["state"]),
        refused=json.loads(stored["refused"]),
    )
    return Entry(**stored)


class _LockFile:
    """An exclusive ``flock`` on ``<log>.lock``; the kernel drops it when the process dies."""

    def __init__(self, log_path: Path) -> None:
        self.path = Path(f"{log_path}.lock")
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise DeliveryLogError(f"{self.path}: cannot create the lock file: {exc.strerror}")
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode("ascii", "replace").strip()
            os.close(self.fd)
            pid = f" (pid {holder})" if holder.isdigit() else ""
            raise DeliveryLogLocked(
                f"{log_path}: another `mailaction send` is using this delivery log{pid}"
            ) from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"{os.getpid()}\n".encode("ascii"), 0)

    def release(self) -> None:
        """Drop the lock; the file stays, as removing it would race with a waiting opener."""
        os.close(self.fd)


class DeliveryLog:
    """The state of every letter of one campaign, in a SQLite file shared by campaigns."""

    def __init__(
        self, path: Path, campaign: str, *, lock: bool = False, create: bool = True
    ) -> None:
        self.path = Path(path)
        self.campaign = campaign
        if not create and (not self.path.is_file() or self.path.stat().st_size == 0):
            raise DeliveryLogError(f"{self.path}: no delivery log yet; run `mailaction send` first")
        self._lock = _LockFile(self.path) if lock else None
        try:
            self._db = _connect(self.path)
        except DeliveryLogError:
            if self._lock is not None:
                self._lock.release()
            raise

    def close(self) -> None:
        """Commit what is pending, close the database and release the lock."""
        try:
            self.flush()
        finally:
            self._db.close()
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def flush(self) -> None:
        """Commit every change written so far."""
        if self._db.in_transaction:
            self._run("COMMIT", ())

    def _write(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        """Run one statement in the open transaction (begun if need be), committed later."""
        if not self._db.in_transaction:
            self._run("BEGIN", ())
        return self._run(sql, params)

    def _run(self, sql: str, params: tuple[Any, ...]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except sqlite3.OperationalError as exc:
            raise DeliveryLogError(f"{self.path}: cannot write the delivery log: {exc}") from None

    def _update(self, contact_id: str, sql: str, params: tuple[Any, ...]) -> None:
        if self._write(sql, (*params, self.campaign, contact_id)).rowcount != 1:
            raise KeyError(f"{self.campaign}/{contact_id} is not in the delivery log")

    def campaigns(self) -> list[str]:
        """The campaign keys present in the file."""
        return [r[0] for r in self._db.execute("SELECT DISTINCT campaign FROM letters ORDER BY 1")]

    def recover_interrupted(self) -> list[Entry]:
        """Turn letters left `sending` by a crash into `uncertain`, and return them."""
        cursor = self._write(
            f"UPDATE letters SET state = ?, last_code = NULL, last_reply = ?"
            f" WHERE campaign = ? AND state = ? RETURNING {_COLUMNS}",
            (State.UNCERTAIN, _INTERRUPTED, self.campaign, State.SENDING),
        )
        recovered = sorted(map(_entry, cursor.fetchall()), key=lambda entry: entry.row)
        self.flush()
        return recovered

    def register(self, letter: Letter) -> Entry:
        """Record a letter as pending unless already logged; return what the log holds."""
        entry = Entry(
            campaign=self.campaign,
            contact_id=letter.contact_id,
            row=letter.row,
            recipients=tuple(letter.recipients),
            subject=letter.subject,
            state=State.PENDING,
            attempts=0,
            last_code=None,
            last_reply="",
            refused={},
            message_id=letter.message_id,
            fingerprint=letter.fingerprint,
            created_at=time.time(),
            first_attempt_at=None,
            last_attempt_at=None,
            sent_at=None,
        )
        inserted = self._write(
            "INSERT INTO letters (campaign, contact_id, row, recipients, subject, state,"
            " message_id, fingerprint, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT DO NOTHING",
            (
                entry.campaign,
                entry.contact_id,
                entry.row,
                json.dumps(entry.recipients),
                entry.subject,
                entry.state,
                entry.message_id,
                entry.fingerprint,
                entry.created_at,
            ),
        )
        if inserted.rowcount == 1:
            return entry
        existing = self.get(letter.contact_id)
        assert existing is not None
        return existing

    def update_letter(self, letter: Letter) -> None:
        """Store the current row, recipients, subject and identity of a letter about to go again."""
        self._update(
            letter.contact_id,
            "UPDATE letters SET row = ?, recipients = ?, subject = ?, message_id = ?,"
            " fingerprint = ? WHERE campaign = ? AND contact_id = ?",
            (
                letter.row,
                json.dumps(letter.recipients),
                letter.subject,
                letter.message_id,
                letter.fingerprint,
            ),
        )

    def get(self, contact_id: str) -> Entry | None:
        """The entry for one contact, or None when the log has never seen it."""
        values = self._db.execute(
            f"SELECT {_COLUMNS} FROM letters WHERE campaign = ? AND contact_id = ?",
            (self.campaign, contact_id),
        ).fetchone()
        return None if values is None else _entry(values)

    def mark_sending(self, contact_id: str) -> None:
        """Record, committed, that the letter's data is about to be written to the server."""
        now = time.time()
        self._update(
            contact_id,
            "UPDATE letters SET state = ?, attempts = attempts + 1,"
            " first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = ?"
            " WHERE campaign = ? AND contact_id = ?",
            (State.SENDING, now, now),
        )
        self.flush()

    def mark_outcome(self, contact_id: str, outcome: Outcome) -> None:
        """Record how the last attempt ended (committed with the next `mark_sending` or `flush`)."""
        sent_at = time.time() if outcome.state is State.SENT else None
        self._update(
            contact_id,
            "UPDATE letters SET state = ?, last_code = ?, last_reply = ?, refused = ?,"
            " sent_at = coalesce(?, sent_at) WHERE campaign = ? AND contact_id = ?",
            (outcome.state, outcome.code, outcome.reply, json.dumps(outcome.refused), sent_at),
        )

    def entries(self, states: Iterable[State] | None = None) -> Iterator[Entry]:
        """The campaign's entries in spreadsheet order, optionally only those in ``states``."""
        sql = f"SELECT {_COLUMNS} FROM letters WHERE campaign = ?"
        params: list[Any] = [self.campaign]
        if states is not None:
            wanted = sorted(set(states))
            sql += f" AND state IN ({', '.join('?' * len(wanted))})"
            params += wanted
        for values in self._db.execute(sql + " ORDER BY row, contact_id", params):
            yield _entry(values)

    def counts(self) -> dict[State, int]:
        """How many letters are in each state, every state present."""
        counts = dict.fromkeys(State, 0)
        rows = self._db.execute(
            "SELECT state, count(*) FROM letters WHERE campaign = ? GROUP BY state",
            (self.campaign,),
        )
        counts.update((State(state), n) for state, n in rows)
        return counts

    def untried(self) -> set[str]:
        """The contacts whose letter is logged as pending and was never tried."""
        rows = self._db.execute(
            "SELECT contact_id FROM letters WHERE campaign = ? AND state = ? AND attempts = 0",
            (self.campaign, State.PENDING),
        )
        return {contact_id for (contact_id,) in rows}

    def forget_untried(self, contact_ids: Iterable[str]) -> None:
        """Remove these contacts' letters, committed, if they are still pending and never tried."""
        for contact_id in contact_ids:
            self._write(
                "DELETE FROM letters WHERE campaign = ? AND contact_id = ? AND state = ?"
                " AND attempts = 0",
                (self.campaign, contact_id, State.PENDING),
            )
        self.flush()

    def sent_since(self, since: float) -> int:
        """How many of the campaign's letters were sent at or after ``since`` (a unix time)."""
        return self._db.execute(
            "SELECT count(*) FROM letters WHERE campaign = ? AND state = ? AND sent_at >= ?",
            (self.campaign, State.SENT, since),
        ).fetchone()[0]

    def record_bounce(self, contact_id: str, code: int | None, reply: str, *, permanent: bool) -> bool:
        """Record, committed, that a sent (or uncertain) letter bounced: `bounced` when permanent,
        else a note in its last reply. False when the log already said so, or the letter was not
        sent."""
        state, bouncing = (State.BOUNCED, State.UNCERTAIN) if permanent else (State.SENT, State.SENT)
        changed = self._write(
            "UPDATE letters SET state = ?, last_code = ?, last_reply = ? WHERE campaign = ?"
            " AND contact_id = ? AND state IN (?, ?) AND last_reply != ?",
            (state, code, reply, self.campaign, contact_id, State.SENT, bouncing, reply),
        ).rowcount
        self.flush()
        return changed == 1


def _connect(path: Path) -> sqlite3.Connection:
    """Open the file in WAL mode, creating the tables on first use."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
    except sqlite3.Error as exc:
        raise DeliveryLogError(f"{path}: cannot open the delivery log: {exc}") from None
    try:
        # Each state change writes its row's page and two index pages to the WAL; on a new file,
        # 2 KiB pages instead of 4 KiB make that about a quarter faster.
        db.execute("PRAGMA page_size = 2048")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        if not _has_schema(db):
            db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    except sqlite3.Error as exc:
        db.close()
        raise DeliveryLogError(f"{path}: cannot open the delivery log: {exc}") from None
    if version is None or int(version[0]) > SCHEMA_VERSION:
        db.close()
        raise DeliveryLogError(f"{path}: not a delivery log this version of mailaction can read")
    return db


def _has_schema(db: sqlite3.Connection) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'letters'")
    return found.fetchone() is not None
