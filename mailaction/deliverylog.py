"""The campaign's queue and crash-safe delivery log: one SQLite row per (campaign, contact).

`send` writes the whole run into the log before anything goes out: each letter's message as it
was validated and confirmed (attachment parts stored once, by content hash), queued as
`pending`. Delivery then reads only from the log, never from the contact list, the template or
the attachments, so editing them during a run changes nothing in it.

The database runs in WAL mode with ``synchronous=NORMAL``: every committed change survives the
process being killed (even ``kill -9``), and reports can read while a `send` writes. A power loss
or an operating-system crash may lose the last few commits, so a letter in flight then could be
sent twice; ``synchronous=FULL`` would prevent that at the cost of an fsync per state change.

Commits are grouped by one rule: a letter's `sending` mark is committed, with everything written
since the last commit, before its data may go out (`mark_sending`, or `flush` after several
marks). Outcomes wait in memory and are written in the next such commit, or by `flush` (which the
sender calls whenever it is about to wait, and at the end of a run) or `close`: no transaction
stays open while the sender waits, so workers sharing the log never wait for each other long. So a crash can lose only the outcomes of its last
moments: those letters are still `sending` on disk, which the next run turns into `uncertain`
(held, never sent again on its own, never forgotten).
"""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field, fields
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from .errors import DeliveryLogError, DeliveryLogLocked
from .keys import campaign_key, contact_key, letter_identity

if TYPE_CHECKING:
    from .message import Letter

Cursor = Any  # a DB-API cursor: sqlite3's, or psycopg's for a PostgreSQL log

SCHEMA_VERSION = 3

_V2_COLUMN_LIST = (
    "sender TEXT NOT NULL DEFAULT ''",  # envelope MAIL FROM
    "smtputf8 INTEGER NOT NULL DEFAULT 0",
    "identity TEXT NOT NULL DEFAULT ''",  # recipients + content: finds a letter under another key
    "history TEXT NOT NULL DEFAULT ''",  # one line per state change: "time state code reply"
    "account TEXT",  # which [[smtp]] account last tried the letter; NULL for one [smtp]
    "claimed_by TEXT",  # the worker that claimed the letter (`send --workers`, several machines)
)
_V2_COLUMNS = ",\n    ".join(_V2_COLUMN_LIST)
# Workers (`send --workers`, or `send` on several machines) claim queued letters: a claimed
# letter names its worker in `claimed_by`; a worker whose heartbeat is older than the lease is
# dead, and its letters go back to the queue (`uncertain` when they were `sending`). `limits`
# holds the next free slot of each rate shared by the workers ("" global, "@domain").
# The queue's index holds only the pending letters: a letter leaves it when it is first marked
# `sending`, and its later state changes touch no index (version 2 indexed every state, which cost
# two index updates per state change under the write lock that workers share).
PENDING_INDEX = """
DROP INDEX IF EXISTS letters_queue;
CREATE INDEX IF NOT EXISTS letters_pending ON letters (campaign, row, contact_id)
    WHERE state = 'pending';"""
_QUEUED = "state = 'pending'"  # written out, not bound: PostgreSQL's generic plans can use the index
_WORKER_TABLES = PENDING_INDEX + """
DROP INDEX IF EXISTS letters_state;
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    campaign TEXT NOT NULL,
    heartbeat REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS limits (
    campaign TEXT NOT NULL,
    name TEXT NOT NULL,
    next_slot REAL NOT NULL,
    PRIMARY KEY (campaign, name)
);"""
_V2_TABLES = """
CREATE INDEX IF NOT EXISTS letters_identity ON letters (identity);
CREATE TABLE IF NOT EXISTS messages (
    letter INTEGER PRIMARY KEY,  -- the letters row's rowid
    content BLOB NOT NULL,       -- the message without its large attachment parts
    parts TEXT                   -- JSON [[offset, sha256], ...]: where those parts go back
);
CREATE TRIGGER IF NOT EXISTS letters_gone AFTER DELETE ON letters BEGIN
    DELETE FROM messages WHERE letter = old.rowid;
END;
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,
    data BLOB NOT NULL
);
""" + _WORKER_TABLES
# Beside each letter's state, `messages` keeps what is needed to send it without the contact
# list, the template or the attachments: the message bytes with each large attachment part cut
# out and kept once in `blobs` by its sha256. Messages live in their own table so that the state
# changes, which rewrite a whole row, never rewrite a message.
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
    {_V2_COLUMNS},
    PRIMARY KEY (campaign, contact_id)
);
CREATE INDEX IF NOT EXISTS letters_row ON letters (campaign, row);
{_V2_TABLES}
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');
"""

PROOF_SUFFIX = " [test]"  # proof copies (send --test-to) are logged under "<campaign> [test]"
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
    """The queue and the state of every letter of one campaign, in a SQLite file.

    A file may hold several campaigns; ``campaign`` names the one this object reads and writes
    (trimmed, NFC: see `keys.campaign_key`).
    """

    # The database's clock as unix time: workers' heartbeats and the shared rate limits use it.
    _CLOCK = "unix_time()"
    _SKIP_LOCKED = ""  # SQLite claims under its write lock: one writer at a time
    _FOR_UPDATE = ""
    _PART_DIGESTS = (  # the digests of every stored attachment part
        "SELECT json_extract(part.value, '$[1]') FROM messages, json_each(messages.parts) AS part"
        " WHERE messages.parts IS NOT NULL"
    )

    def __init__(
        self, path: Path, campaign: str, *, lock: bool = False, create: bool = True
    ) -> None:
        self.path = Path(path)
        if not create and (not self.path.is_file() or self.path.stat().st_size == 0):
            raise DeliveryLogError(f"{self.path}: no delivery log yet; run `mailaction send` first")
        self._lock = _LockFile(self.path) if lock else None
        try:
            self._start(self.path, str(self.path), campaign)
        except DeliveryLogError:
            if self._lock is not None:
                self._lock.release()
            raise

    def _start(self, location: Path | str, where: str, campaign: str) -> None:
        """Set up what every backend keeps, then connect."""
        self.location = location  # what `open_log` opens it by
        self.where = where  # how messages name it (a URL without its password)
        self.campaign = campaign_key(campaign)
        self._blobs_written: set[str] = set()
        self._blob_cache: dict[str, bytes] = {}
        self._pending: list[tuple[str, tuple[Any, ...]]] = []  # written with the next statement
        # Letters queued and not yet written: their letters row and messages row, written
        # together, a batch at a time, with the next statement.
        self._queued: list[tuple[tuple[Any, ...], tuple[Any, ...]]] = []
        self.worker: str | None = None  # set by `join`: the worker this log claims letters for
        self._cache_grown = False  # `_grow_cache`
        # The rowids of the letters this worker holds, by contact id, until they are settled.
        self._claimed: dict[str, int] = {}
        self._db = self._open()

    def close(self) -> None:
        """Give back unsettled claims, commit what is pending, close, release the lock."""
        try:
            self.leave()
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
        self._write_pending()
        if self._in_transaction():
            self._commit()

    def rollback(self) -> None:
        """Undo every change written since the last commit."""
        self._pending.clear()
        self._queued.clear()
        if self._in_transaction():
            self._rollback()
        self._blobs_written.clear()

    def _write(self, sql: str, params: tuple[Any, ...] | list[Any]) -> Cursor:
        """Run one statement in the open transaction (begun if need be), committed later."""
        self._write_pending()
        if not self._in_transaction():
            self._begin()
        return self._execute(sql, params)

    def _run(self, sql: str, params: tuple[Any, ...] | list[Any]) -> Cursor:
        """Run one statement, after the outcomes noted so far (so it sees them)."""
        self._write_pending()
        return self._execute(sql, params)

    def _write_pending(self) -> None:
        """Write the letters queued, then the marks and outcomes noted so far, in order, in the
        open transaction (begun if need be).

        They wait in memory rather than in an open transaction, so that workers sharing the log
        never hold its write lock while they wait for a server, nor across a loop turn.
        """
        if not self._pending and not self._queued:
            return
        (pending, self._pending), (queued, self._queued) = (self._pending, []), (self._queued, [])
        if not self._in_transaction():
            self._begin()
        if queued:
            self._execute_many(_QUEUE_LETTER, [letter for letter, _ in queued])
            self._execute_many(_STORE_MESSAGE, [message for _, message in queued])
        for sql, group in itertools.groupby(pending, key=lambda write: write[0]):
            rows = [params for _, params in group]
            if self._execute_many(sql, rows) != len(rows):
                if self.worker is not None:
                    raise self._claim_lost()
                raise KeyError(f"{self.campaign}: a letter marked is not in the delivery log")

    def _mine(self) -> tuple[str, tuple[str, ...]]:
        """The condition that a letter is claimed by this log's worker, if it is one."""
        return ("", ()) if self.worker is None else (" AND claimed_by = ?", (self.worker,))

    def _claim_lost(self) -> DeliveryLogError:
        return DeliveryLogError(
            f"{self.where}: this worker's letters were given to others (it was silent longer than"
            " its lease); it stops"
        )

    def _open(self) -> Any:
        return _connect(self.path)

    def _grow_cache(self) -> None:
        """Give this connection a page cache of CACHE_KIB for planning, once.

        A plan looks up its ids and queues its letters in no order, in two indexes (the key and
        the identity); 16 MiB of pages hold most of them for some 300,000 letters, where SQLite's
        2 MiB would read them back from the WAL, at a cost per letter growing with the campaign.
        A connection that only reads keeps SQLite's 2 MiB: a report reads the whole campaign
        once, and would fill any cache.
        """
        if not self._cache_grown:
            self._execute(f"PRAGMA cache_size = -{CACHE_KIB}", ())
            self._cache_grown = True

    def _commit(self) -> None:
        self._execute("COMMIT", ())

    def _rollback(self) -> None:
        self._execute("ROLLBACK", ())

    def commit_queue(self) -> None:
        """Commit the run just queued, and copy it from the WAL into the database file in a
        thread (`checkpoint`) while sending begins.

        The commit would otherwise run SQLite's automatic checkpoint here: for a campaign of
        300,000 letters, seconds spent copying some 900 MB before the first letter goes out.
        """
        self.automatic_checkpoints(False)
        try:
            self.flush()
        finally:
            self.automatic_checkpoints(True)
        threading.Thread(target=self.checkpoint, daemon=True).start()

    def automatic_checkpoints(self, on: bool) -> None:
        """Let a commit copy the WAL into the database file once the WAL has grown (SQLite's
        default), or not: that automatic checkpoint runs inside the commit, on the caller's
        thread, and holds it for tens of milliseconds (it copies the WAL, then syncs the file).
        A caller that turns it off calls `checkpoint` itself, from another thread."""
        self._execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT if on else 0}", ())

    def checkpoint(self) -> None:
        """Copy the WAL into the database file from another connection (PASSIVE: never blocks);
        safe to call from another thread."""
        try:
            with closing(sqlite3.connect(self.path, timeout=0.1)) as db:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        except sqlite3.Error:
            pass  # the automatic checkpoint will do it, on the loop

    def plan_lock(self) -> None:
        """Hold off other plans of the campaign until this transaction ends (the file's lock
        already does for SQLite)."""

    def _in_transaction(self) -> bool:
        return bool(self._db.in_transaction)

    def _begin(self) -> None:
        # IMMEDIATE: take the write lock now, so a worker waits for it (busy timeout) instead of
        # failing when another committed since this transaction began reading.
        self._execute("BEGIN IMMEDIATE", ())

    def _execute(self, sql: str, params: tuple[Any, ...] | list[Any]) -> Cursor:
        return self._retried(lambda: self._db.execute(sql, params))

    def _execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        """Run one statement for each of ``rows``; how many rows of the table it changed."""
        return int(self._retried(lambda: self._db.executemany(sql, rows)).rowcount)

    def _retried(self, call: Callable[[], Cursor]) -> Cursor:
        """``call()``, tried again while another process holds the log's write lock, for up to
        BUSY_TIMEOUT seconds.

        SQLite's own wait sleeps 1, 2, 5, 10 ms... between tries; another worker holding the
        lock is usually done within a fraction of a millisecond, and every sleep stalls this
        process's event loop. So the tries come after 0.05 ms, doubling up to 1 ms.
        """
        pause, deadline = 0.00005, 0.0
        while True:
            try:
                return call()
            except sqlite3.OperationalError as exc:
                now = time.monotonic()
                deadline = deadline or now + BUSY_TIMEOUT
                if exc.sqlite_errorcode & 0xFF != sqlite3.SQLITE_BUSY or now >= deadline:
                    raise DeliveryLogError(
                        f"{self.where}: cannot write the delivery log: {exc}"
                    ) from None
            except sqlite3.DatabaseError as exc:
                raise DeliveryLogError(f"{self.where}: the delivery log is damaged: {exc}") from None
            time.sleep(pause)
            pause = min(pause * 2, 0.001)

    def _entries(self, sql: str, params: tuple[Any, ...] | list[Any]) -> Iterator[Entry]:
        for values in self._run(sql, params):
            yield self._entry(values)

    def _entry(self, values: tuple[Any, ...]) -> Entry:
        try:
            return _entry(values)
        except (ValueError, TypeError) as exc:
            raise DeliveryLogError(f"{self.where}: the delivery log is damaged: {exc}") from None

    def _update(
        self, contact_id: str, sql: str, params: tuple[Any, ...], extra: tuple[Any, ...] = ()
    ) -> None:
        if self._write(sql, (*params, self.campaign, contact_id, *extra)).rowcount != 1:
            raise KeyError(f"{self.campaign}/{contact_id} is not in the delivery log")

    def campaigns(self) -> list[str]:
        """The campaign keys present in the file."""
        return [r[0] for r in self._run("SELECT DISTINCT campaign FROM letters ORDER BY 1", ())]

    def recover_interrupted(self, silent_for: float | None = None) -> list[Entry]:
        """Turn letters left `sending` by a crash into `uncertain`, and return them.

        Workers silent for ``silent_for`` seconds are dead (every worker when None: the caller
        holds the lock, so none is running), and their other letters go back to the queue.
        """
        self._bury(silent_for)
        cursor = self._write(
            f"UPDATE letters SET state = ?, last_code = NULL, last_reply = ?, claimed_by = NULL,"
            f" history = history || ? WHERE campaign = ? AND state = ?"
            f" AND (claimed_by IS NULL OR {_ORPHANED})"
            f" RETURNING {_COLUMNS}",
            (
                State.UNCERTAIN, _INTERRUPTED, _event(State.UNCERTAIN, None, _INTERRUPTED),
                self.campaign, State.SENDING, self.campaign,
            ),
        )  # fmt: skip
        recovered = sorted(map(_entry, cursor.fetchall()), key=lambda entry: entry.row)
        self._release(_ORPHANED, (self.campaign,), State.PENDING)
        self.flush()
        return recovered

    def _bury(self, silent_for: float | None, worker: str | None = None) -> int:
        """Unregister ``worker``, or the workers silent for ``silent_for`` s (None: every one);
        how many were."""
        params: tuple[Any, ...]
        if worker is not None:
            where, params = "id = ?", (worker,)
        elif silent_for is not None:
            where, params = f"heartbeat < {self._CLOCK} - ?", (silent_for,)
        else:
            where, params = "id IS NOT NULL", ()
        deleted = self._write(
            f"DELETE FROM workers WHERE campaign = ? AND {where}", (self.campaign, *params)
        )
        return int(deleted.rowcount)

    def _release(self, where: str, params: tuple[Any, ...], deferred: State) -> None:
        """Unclaim letters: `sending` ones become `uncertain`, `deferred` ones ``deferred``."""
        self._write(
            "UPDATE letters SET claimed_by = NULL,"  # pragma: no mutate
            " state = CASE state WHEN ? THEN ? WHEN ? THEN ? ELSE state END,"  # pragma: no mutate
            " last_reply = CASE state WHEN ? THEN ? ELSE last_reply END,"  # pragma: no mutate
            " history = history || CASE state WHEN ? THEN ? ELSE '' END"  # pragma: no mutate
            f" WHERE campaign = ? AND {where}",
            (
                State.SENDING, State.UNCERTAIN, State.DEFERRED, deferred,
                State.SENDING, _INTERRUPTED,
                State.SENDING, _event(State.UNCERTAIN, None, _INTERRUPTED),
                self.campaign, *params,
            ),
        )  # fmt: skip

    def join(self, worker: str) -> None:
        """Claim letters from now on as ``worker``, registered with a fresh heartbeat."""
        self._write(
            f"INSERT INTO workers (id, campaign, heartbeat) VALUES (?, ?, {self._CLOCK})"
            " ON CONFLICT (id) DO UPDATE SET heartbeat = excluded.heartbeat",  # pragma: no mutate
            (worker, self.campaign),
        )
        self.flush()
        self.worker = worker
        self._swept = False  # orphaned letters not yet looked for since joining

    def heartbeat(self) -> None:
        """Tell the other workers this one is alive (committing what was written meanwhile)."""
        found = self._write(
            f"UPDATE workers SET heartbeat = {self._CLOCK} WHERE id = ?", (self.worker,)
        )
        if found.rowcount != 1:
            raise self._claim_lost()
        self.flush()

    def leave(self) -> None:
        """Stop being a worker: give back the letters not settled, then unregister."""
        worker, self.worker = self.worker, None
        if worker is None:
            return
        self._claimed.clear()
        self._release("claimed_by = ?", (worker,), State.DEFERRED)
        self._bury(None, worker)
        self.flush()

    def recover_worker(self, worker: str) -> None:
        """Give back the letters of a worker known dead (`sending` ones as `uncertain`)."""
        self._bury(None, worker)
        self._release("claimed_by = ?", (worker,), State.PENDING)
        self.flush()

    def claim(
        self,
        count: int,
        *,
        lease: float,
        after: tuple[int, str] = (-1, ""),
        upto: tuple[int, str] | None = None,
    ) -> list[Letter]:
        """Claim for this worker up to ``count`` pending letters, first in spreadsheet order,
        after ``after`` and none after ``upto`` (a (row, contact id)); first give back the
        letters of workers silent for ``lease`` seconds."""
        assert self.worker is not None, "join() first"
        # Letters are orphaned only when their worker is unregistered, and whoever does that
        # gives them back in the same transaction: look for them (a scan of the campaign) only
        # then, and at a worker's first claim, not at every claim.
        if self._bury(lease) or not self._swept:
            self._release(_ORPHANED, (self.campaign,), State.PENDING)
            self._swept = True
        bound = " AND (row, contact_id) <= (?, ?)" if upto is not None else ""
        claimed = self._write(
            "UPDATE letters SET claimed_by = ? WHERE rowid IN (SELECT rowid FROM letters"  # pragma: no mutate
            f" WHERE campaign = ? AND {_QUEUED} AND (claimed_by IS NULL OR claimed_by = ?)"
            f" AND (row, contact_id) > (?, ?){bound}"
            f" ORDER BY row, contact_id LIMIT ?{self._SKIP_LOCKED}) RETURNING rowid",
            (self.worker, self.campaign, self.worker, *after, *(upto or ()), count),
        ).fetchall()
        # Committed before the letters are read: they are this worker's now, and the other
        # workers need the write lock for every letter they send.
        self.flush()
        letters = []
        if claimed:
            marks = ", ".join("?" * len(claimed))
            rows = self._run(
                f"SELECT letters.rowid, {_LETTER_COLUMNS} FROM letters"
                " LEFT JOIN messages ON letter = letters.rowid"  # pragma: no mutate
                f" WHERE letters.rowid IN ({marks}) ORDER BY row, contact_id",
                [found[0] for found in claimed],
            ).fetchall()
            for rowid, *values in rows:
                letters.append(self._letter(tuple(values)))
                self._claimed[letters[-1].contact_id] = rowid
        return letters

    def work_left(self, upto: tuple[int, str] | None = None) -> bool:
        """Whether letters may still come this worker's way: queued and not claimed (none after
        ``upto``), or held unsettled by other workers (theirs come back if they die)."""
        bound = " AND (row, contact_id) <= (?, ?)" if upto is not None else ""
        queued = self._run(
            f"SELECT 1 FROM letters WHERE campaign = ? AND {_QUEUED} AND claimed_by IS NULL{bound}"
            " LIMIT 1",  # pragma: no mutate
            (self.campaign, *(upto or ())),
        ).fetchone()
        held = queued or self._run(
            "SELECT 1 FROM letters WHERE campaign = ? AND state IN (?, ?, ?)"  # pragma: no mutate
            " AND claimed_by IS NOT NULL AND claimed_by != ? LIMIT 1",  # pragma: no mutate
            (self.campaign, State.PENDING, State.SENDING, State.DEFERRED, self.worker or ""),
        ).fetchone()
        return held is not None

    def queue_end(self, count: int) -> tuple[int, str] | None:
        """The (row, contact id) of the ``count``-th pending letter; None when there are fewer."""
        found = self._run(
            f"SELECT row, contact_id FROM letters WHERE campaign = ? AND {_QUEUED}"
            " ORDER BY row, contact_id LIMIT 1 OFFSET ?",  # pragma: no mutate
            (self.campaign, count - 1),
        ).fetchone()
        return None if found is None else (found[0], found[1])

    def take_slot(self, limits: list[tuple[str, float]]) -> float:
        """Reserve the first moment free under every shared rate of ``limits`` ((name, seconds
        between letters), names sorted); return the seconds from now until that moment."""
        names = [name for name, _ in limits]
        for name in names:
            self._write(
                "INSERT INTO limits (campaign, name, next_slot) VALUES (?, ?, 0)"  # pragma: no mutate
                " ON CONFLICT DO NOTHING",  # pragma: no mutate
                (self.campaign, name),
            )
        marks = ", ".join("?" * len(names))
        taken = self._run(
            f"SELECT next_slot FROM limits WHERE campaign = ? AND name IN ({marks})"
            f" ORDER BY name{self._FOR_UPDATE}",
            (self.campaign, *names),
        ).fetchall()
        now = float(self._run(f"SELECT {self._CLOCK}", ()).fetchone()[0])
        slot = max(now, *(found[0] for found in taken))
        self._execute_many(
            "UPDATE limits SET next_slot = ? WHERE campaign = ? AND name = ?",  # pragma: no mutate
            [(slot + interval, self.campaign, name) for name, interval in limits],
        )
        self.flush()
        return float(slot - now)

    def register(self, letter: Letter) -> Entry:
        """Queue a letter as pending unless already logged; return what the log holds."""
        existing = self.get(letter.contact_id)
        if existing is not None:
            return existing
        self.enqueue(letter, None)
        entry = self.get(letter.contact_id)
        assert entry is not None
        return entry

    def enqueue(self, letter: Letter, entry: Entry | None) -> None:
        """Queue ``letter`` as pending: a new row when ``entry`` is None, else the row replaced.

        The letter's message is stored with it, so sending needs no other file. New letters are
        written a batch at a time, with the next statement (a read included) or `flush`.
        """
        identity = letter_identity(letter.recipients, letter.fingerprint)
        values = (
            letter.row, json.dumps(letter.recipients), letter.subject, State.PENDING,
            letter.message_id, letter.fingerprint, letter.sender, int(letter.smtputf8), identity,
            self.campaign, letter.contact_id,
        )  # fmt: skip
        message = (self.campaign, letter.contact_id, *self._message(letter))
        if entry is None:
            self._grow_cache()
            self._queued.append(((*values, time.time()), message))
            if len(self._queued) >= QUEUE_BATCH:
                self._write_pending()
            return
        found = self._write(
            "UPDATE letters SET row = ?, recipients = ?, subject = ?, state = ?, message_id = ?,"  # pragma: no mutate
            " fingerprint = ?, sender = ?, smtputf8 = ?, identity = ?"  # pragma: no mutate
            " WHERE campaign = ? AND contact_id = ? RETURNING rowid",  # pragma: no mutate
            values,
        ).fetchone()
        if found is None:
            raise KeyError(f"{self.campaign}/{letter.contact_id} is not in the delivery log")
        self._write(_STORE_MESSAGE, message)

    def requeue(self, contact_id: str, row: int) -> None:
        """Queue a logged letter again as it is stored, at its current spreadsheet row."""
        self._update(
            contact_id,
            "UPDATE letters SET state = ?, row = ? WHERE campaign = ? AND contact_id = ?",  # pragma: no mutate
            (State.PENDING, row),
        )

    def move(self, contact_id: str, row: int) -> None:
        """Record that the contact's row in the spreadsheet is now ``row``."""
        self._update(
            contact_id, "UPDATE letters SET row = ? WHERE campaign = ? AND contact_id = ?", (row,)
        )

    def look_up(self, contact_ids: list[str]) -> dict[str, tuple[Entry, bool]]:
        """The entries the log holds for these contacts (one statement), each with whether its
        message is stored (not expired, not from an older log)."""
        self._grow_cache()
        marks = ", ".join("?" * len(contact_ids))
        found: dict[str, tuple[Entry, bool]] = {}
        for values in self._run(
            f"SELECT {_COLUMNS}, EXISTS (SELECT 1 FROM messages WHERE letter = letters.rowid)"
            f" FROM letters WHERE campaign = ? AND contact_id IN ({marks})",
            (self.campaign, *contact_ids),
        ):
            entry = self._entry(values[:-1])
            found[entry.contact_id] = (entry, bool(values[-1]))
        return found

    def get(self, contact_id: str) -> Entry | None:
        """The entry for one contact, or None when the log has never seen it."""
        found = self._entries(
            f"SELECT {_COLUMNS} FROM letters WHERE campaign = ? AND contact_id = ?",
            (self.campaign, contact_id),
        )
        return next(found, None)

    def twin(self, letter: Letter) -> Entry | None:
        """A letter with the same recipients and content that went (or may have gone) out under
        another key: another contact id or campaign name. Proof runs are not counted."""
        identity = letter_identity(letter.recipients, letter.fingerprint)
        found = self._entries(
            f"SELECT {_COLUMNS} FROM letters WHERE identity = ? AND state IN (?, ?, ?, ?)"
            " AND NOT (campaign = ? AND contact_id = ?) AND campaign NOT LIKE ? LIMIT 1",  # pragma: no mutate
            (
                identity, State.SENT, State.SENDING, State.UNCERTAIN, State.BOUNCED,
                self.campaign, letter.contact_id, f"%{PROOF_SUFFIX}",
            ),
        )  # fmt: skip
        return next(found, None)

    def has_delivered(self) -> bool:
        """Whether any letter in the file (any campaign) was sent or may have been."""
        found = self._run(
            "SELECT 1 FROM letters WHERE state IN (?, ?, ?, ?) LIMIT 1",  # pragma: no mutate
            (State.SENT, State.SENDING, State.UNCERTAIN, State.BOUNCED),
        )
        return found.fetchone() is not None

    def start_tally(self) -> None:
        """Begin noting which contacts the current list holds (see `note` and `withdraw_unnoted`)."""
        self._run("CREATE TEMP TABLE IF NOT EXISTS noted (contact_id TEXT PRIMARY KEY)", ())
        self._run("DELETE FROM noted", ())

    def note(self, contact_ids: Iterable[str]) -> None:
        """Note that the contact list still holds these contacts."""
        self._write_pending()
        self._execute_many(
            "INSERT INTO noted (contact_id) VALUES (?) ON CONFLICT DO NOTHING",
            [(contact_id,) for contact_id in contact_ids],
        )

    def withdraw_unnoted(self, *, count_only: bool = False) -> int:
        """Take off the queue the unsent letters of contacts not noted; return how many."""
        where = (
            " FROM letters WHERE campaign = ? AND state IN (?, ?)"  # pragma: no mutate
            " AND contact_id NOT IN (SELECT contact_id FROM noted)"  # pragma: no mutate
        )
        params = (self.campaign, State.PENDING, State.DEFERRED)
        if count_only:
            return int(self._run("SELECT count(*)" + where, params).fetchone()[0])
        return int(self._write("DELETE" + where, params).rowcount)

    def withdraw(self, contact_id: str) -> None:
        """Take one contact's letter off the queue if it was never sent."""
        self._write(
            "DELETE FROM letters WHERE campaign = ? AND contact_id = ? AND state IN (?, ?)",  # pragma: no mutate
            (self.campaign, contact_id, State.PENDING, State.DEFERRED),
        )

    def message(self, contact_id: str) -> bytes | None:
        """The stored message of a letter (as queued, before its Date was set), or None."""
        found = self._run(
            f"SELECT {_LETTER_COLUMNS} FROM letters LEFT JOIN messages ON letter = letters.rowid"
            " WHERE campaign = ? AND contact_id = ?",  # pragma: no mutate
            (self.campaign, contact_id),
        ).fetchone()
        if found is None or found[-2] is None:
            return None
        return self._letter(found).data

    def history(self, contact_id: str) -> list[str]:
        """The letter's state changes, oldest first: "2026-12-01 10:00:00 UTC sent 250 ok"."""
        found = self._run(
            "SELECT history FROM letters WHERE campaign = ? AND contact_id = ?",  # pragma: no mutate
            (self.campaign, contact_id),
        ).fetchone()
        return [] if found is None else found[0].splitlines()

    def find(self, query: str) -> list[Entry]:
        """The campaign's letters for a spreadsheet row number, a contact id or an address."""
        params: list[Any]
        if query.isdigit():
            sql, params = "row = ?", [int(query)]
        else:
            key = contact_key(query)
            sql = "(contact_id = ? OR lower(recipients) LIKE ? ESCAPE '\\')"
            quoted = json.dumps(key).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            params = [key, f"%{quoted}%"]
        return list(
            self._entries(
                f"SELECT {_COLUMNS} FROM letters WHERE campaign = ? AND {sql} ORDER BY row",
                [self.campaign, *params],
            )
        )

    def expire_messages(self, before: float) -> int:
        """Delete the stored messages of letters settled before ``before``; keep their states."""
        cursor = self._write(
            "DELETE FROM messages WHERE letter IN (SELECT rowid FROM letters WHERE campaign = ?"  # pragma: no mutate
            " AND state NOT IN (?, ?, ?) AND coalesce(last_attempt_at, created_at) < ?)",  # pragma: no mutate
            (self.campaign, State.PENDING, State.DEFERRED, State.SENDING, before),
        )
        self._write(f"DELETE FROM blobs WHERE digest NOT IN ({self._PART_DIGESTS})", ())
        self.flush()
        return int(cursor.rowcount)

    def mark_sending(self, contact_id: str, *, commit: bool = True) -> None:
        """Record, committed, that the letter's data is about to be written to the server.

        With ``commit=False`` the caller commits it (`flush`) before the data is written, so the
        marks of letters going out together share one commit. A worker marks only letters it
        still holds: raises DeliveryLogError when its claim was lost (it was taken for dead and
        its letters given to others).
        """
        now = time.time()
        where, key = self._found_by(contact_id)
        self._pending.append(
            (
                _MARK_SENDING + where,
                (State.SENDING, now, now, _event(State.SENDING, None, "", now), *key),
            )
        )  # fmt: skip
        if commit:
            self.flush()

    def mark_outcome(self, contact_id: str, outcome: Outcome) -> None:
        """Record how the last attempt ended (committed with the next `mark_sending` or `flush`)."""
        now = time.time()
        sent_at = now if outcome.state is State.SENT else None
        where, key = self._found_by(contact_id)
        if outcome.state is not State.DEFERRED:
            self._claimed.pop(contact_id, None)  # settled: it will not be marked again
        self._pending.append(
            (
                _MARK_OUTCOME + where,
                (
                    outcome.state, outcome.code, outcome.reply, json.dumps(outcome.refused),
                    sent_at, _event(outcome.state, outcome.code, outcome.reply, now), *key,
                ),
            )
        )  # fmt: skip

    def _found_by(self, contact_id: str) -> tuple[str, tuple[Any, ...]]:
        """The condition a mark finds its letter by, and its parameters: the rowid of a letter
        this worker claimed (one index walk less while the write lock is held), else the
        campaign and contact id; and, for a worker, that it still holds the letter."""
        mine, claim = self._mine()
        rowid = self._claimed.get(contact_id)
        if rowid is None:
            return " WHERE campaign = ? AND contact_id = ?" + mine, (self.campaign, contact_id, *claim)
        return " WHERE rowid = ?" + mine, (rowid, *claim)

    def entries(self, states: Iterable[State] | None = None) -> Iterator[Entry]:
        """The campaign's entries in spreadsheet order, optionally only those in ``states``."""
        sql = f"SELECT {_COLUMNS} FROM letters WHERE campaign = ?"
        params: list[Any] = [self.campaign]
        if states is not None:
            wanted = sorted(set(states))
            sql += f" AND state IN ({', '.join('?' * len(wanted))})"
            params += wanted
        yield from self._entries(sql + " ORDER BY row, contact_id", params)

    def counts(self) -> dict[State, int]:
        """How many letters are in each state, every state present."""
        counts = dict.fromkeys(State, 0)
        rows = self._run(
            "SELECT state, count(*) FROM letters WHERE campaign = ? GROUP BY state",  # pragma: no mutate
            (self.campaign,),
        )
        try:
            counts.update((State(state), n) for state, n in rows)
        except ValueError as exc:
            raise DeliveryLogError(f"{self.where}: the delivery log is damaged: {exc}") from None
        return counts

    def sent_since(self, since: float, account: str | None = None) -> int:
        """How many of the campaign's letters went out at or after ``since`` (bounced later or
        not); with ``account``, only those that account sent."""
        sql = (
            "SELECT count(*) FROM letters WHERE campaign = ? AND state IN (?, ?) AND sent_at >= ?"  # pragma: no mutate
        )
        params: tuple[Any, ...] = (self.campaign, State.SENT, State.BOUNCED, since)
        if account is not None:
            sql, params = sql + " AND account = ?", (*params, account)
        return int(self._run(sql, params).fetchone()[0])

    def note_account(self, contact_id: str, account: str) -> None:
        """Record which account tried the letter last (committed with the next `flush`)."""
        self._update(
            contact_id,
            "UPDATE letters SET account = ? WHERE campaign = ? AND contact_id = ?",  # pragma: no mutate
            (account,),
        )

    def sent_by_account(self) -> dict[str, int]:
        """How many letters each named account sent (none for a campaign of one account)."""
        found = self._run(
            "SELECT account, count(*) FROM letters WHERE campaign = ? AND state IN (?, ?)"  # pragma: no mutate
            " AND account IS NOT NULL GROUP BY account ORDER BY account",  # pragma: no mutate
            (self.campaign, State.SENT, State.BOUNCED),
        )
        return {str(account): int(count) for account, count in found}

    def _message(self, letter: Letter) -> tuple[bytes, str | None]:
        """The message without its large attachment parts (stored once each, by hash), and
        where they go back (JSON), for the messages table."""
        data = letter.data
        pieces: list[bytes] = []
        parts: list[tuple[int, str]] = []
        start = kept = 0
        for attachment in letter.attachments:
            if len(attachment.part) < SHARED_PART_SIZE:
                continue
            at = data.find(attachment.part, start)
            if at < 0:
                continue
            pieces.append(data[start:at])
            kept += at - start
            parts.append((kept, attachment.digest))
            start = at + len(attachment.part)
            if attachment.digest not in self._blobs_written:
                self._write(
                    "INSERT INTO blobs (digest, data) VALUES (?, ?) ON CONFLICT DO NOTHING",  # pragma: no mutate
                    (attachment.digest, attachment.part),
                )
                self._blobs_written.add(attachment.digest)
        content = b"".join((*pieces, data[start:])) if pieces else data
        return content, json.dumps(parts) if parts else None

    def _letter(self, values: tuple[Any, ...]) -> Letter:
        """A Letter from a row of `_LETTER_COLUMNS`."""
        from .message import Letter

        row, contact_id, sender, recipients, subject, message_id, fingerprint, utf8 = values[:8]
        data, parts = values[8:]
        if data is None:
            raise DeliveryLogError(
                f"{self.where}: the message of row {row} ({contact_id}) is no longer stored;"
                " run `mailaction send` again to queue it anew"
            )
        if parts is not None:
            pieces: list[bytes] = []
            start = 0
            for offset, digest in json.loads(parts):
                pieces += (data[start:offset], self._blob(digest))
                start = offset
            pieces.append(data[start:])
            data = b"".join(pieces)
        return Letter(
            row=row, contact_id=contact_id, sender=sender, recipients=tuple(json.loads(recipients)),
            subject=subject, message_id=message_id, fingerprint=fingerprint, data=data,
            smtputf8=bool(utf8),
        )  # fmt: skip

    def _blob(self, digest: str) -> bytes:
        """An attachment part by its sha256; the last few used are kept in memory."""
        blob = self._blob_cache.get(digest)
        if blob is None:
            found = self._run("SELECT data FROM blobs WHERE digest = ?", (digest,)).fetchone()
            if found is None:
                raise DeliveryLogError(f"{self.where}: the delivery log is damaged: no part {digest}")
            if len(self._blob_cache) >= BLOB_CACHE:
                self._blob_cache.pop(next(iter(self._blob_cache)))
            blob = self._blob_cache[digest] = found[0]
        return blob

    def sent_span(self) -> tuple[int, float | None, float | None]:
        """How many letters were sent (bounced later or not), and the first and last send time."""
        count, first, last = self._run(
            "SELECT count(sent_at), min(sent_at), max(sent_at) FROM letters"  # pragma: no mutate
            " WHERE campaign = ? AND state IN (?, ?)",  # pragma: no mutate
            (self.campaign, State.SENT, State.BOUNCED),
        ).fetchone()
        return count, first, last

    def sent_per_bin(
        self, start: float, width: float, states: tuple[State, ...] = (State.SENT, State.BOUNCED)
    ) -> dict[int, int]:
        """Sent letters (in ``states``) per time bin: bin n holds those sent in
        [start + n*width, + width)."""
        rows = self._run(
            "SELECT CAST((sent_at - ?) / ? AS INTEGER) AS bin, count(*) FROM letters"  # pragma: no mutate
            f" WHERE campaign = ? AND state IN ({', '.join('?' * len(states))})"
            " AND sent_at IS NOT NULL GROUP BY bin",  # pragma: no mutate
            (start, width, self.campaign, *states),
        )
        return dict(rows.fetchall())

    def refused_counts(self) -> dict[State, int]:
        """How many letters in each state had some of their recipients refused."""
        counts = dict.fromkeys(State, 0)
        rows = self._run(
            "SELECT state, count(*) FROM letters WHERE campaign = ? AND refused != '{}'"  # pragma: no mutate
            " GROUP BY state",  # pragma: no mutate
            (self.campaign,),
        )
        counts.update((State(state), n) for state, n in rows)
        return counts

    def record_bounce(self, contact_id: str, code: int | None, reply: str, *, permanent: bool) -> bool:
        """Record, committed, that a sent (or uncertain) letter bounced: `bounced` when permanent,
        else a note in its last reply. False when the log already said so, or the letter was not
        sent."""
        state, bouncing = (State.BOUNCED, State.UNCERTAIN) if permanent else (State.SENT, State.SENT)
        changed = self._write(
            "UPDATE letters SET state = ?, last_code = ?, last_reply = ?, history = history || ?"  # pragma: no mutate
            " WHERE campaign = ? AND contact_id = ? AND state IN (?, ?) AND last_reply != ?",  # pragma: no mutate
            (
                state, code, reply, _event(state, code, reply),
                self.campaign, contact_id, State.SENT, bouncing, reply,
            ),
        ).rowcount  # fmt: skip
        self.flush()
        return int(changed) == 1


WAL_SIZE_LIMIT = 64 * 2**20  # bytes
WAL_AUTOCHECKPOINT = 1000  # pages: SQLite's default
CACHE_KIB = 16 * 1024  # SQLite's page cache per connection
BUSY_TIMEOUT = 5.0  # seconds a statement waits for another process's write lock
SHARED_PART_SIZE = 2048  # attachment parts this large are stored once, not in every letter
BLOB_CACHE = 8  # attachment parts kept in memory while reading the queue
QUEUE_BATCH = 500  # letters queued in memory before they are written, as one statement each
_QUEUE_LETTER = (
    "INSERT INTO letters (row, recipients, subject, state, message_id, fingerprint, sender,"
    " smtputf8, identity, campaign, contact_id, created_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STORE_MESSAGE = (
    "INSERT INTO messages (letter, content, parts)"
    " VALUES ((SELECT rowid FROM letters WHERE campaign = ? AND contact_id = ?), ?, ?)"
    " ON CONFLICT (letter) DO UPDATE SET content = excluded.content, parts = excluded.parts"
)
_MARK_SENDING = (
    "UPDATE letters SET state = ?, attempts = attempts + 1,"
    " first_attempt_at = coalesce(first_attempt_at, ?), last_attempt_at = ?,"
    " history = history || ?"
)
_MARK_OUTCOME = (
    "UPDATE letters SET state = ?, last_code = ?, last_reply = ?, refused = ?,"
    " sent_at = coalesce(?, sent_at), history = history || ?"
)
# A letter claimed by a worker no longer registered (dead, or recovered by another).
_ORPHANED = (
    "claimed_by IS NOT NULL AND claimed_by NOT IN (SELECT id FROM workers WHERE campaign = ?)"
)
_LETTER_COLUMNS = (
    "row, contact_id, sender, recipients, subject, message_id, fingerprint, smtputf8,"
    " content, parts"
)


def _event(state: State, code: int | None, reply: str, moment: float | None = None) -> str:
    """One line of a letter's history: "2026-12-01 10:00:00 UTC sent 250 2.0.0 Ok"."""
    line = f"{_utc(int(moment or time.time()))} {state}"
    if code:
        line += f" {code}"
    if reply:
        line += " " + " ".join(reply.split())[:200]
    return line + "\n"


@lru_cache(maxsize=2)
def _utc(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(second))

def _connect(path: Path) -> sqlite3.Connection:
    """Open the file in WAL mode, creating the tables on first use and upgrading older ones."""
    try:
        db = sqlite3.connect(path, isolation_level=None)
        db.create_function("unix_time", 0, time.time)
    except sqlite3.Error as exc:
        raise DeliveryLogError(f"{path}: cannot open the delivery log: {exc}") from None
    try:
        # Each state change writes its row's page (and the first one an index page) to the WAL;
        # on a new file, 2 KiB pages instead of 4 KiB made that about a quarter faster.
        db.execute("PRAGMA page_size = 2048")
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        # Queueing a large campaign is one transaction, which grows the WAL to its size; once it
        # is checkpointed, the WAL file is cut back to this.
        db.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}")
        if not _has_schema(db):
            db.executescript(f"BEGIN IMMEDIATE; {_SCHEMA} COMMIT;")
        version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        if version is not None and version[0] in ("1", "2"):
            _upgrade(db, from_version=version[0])
            version = (str(SCHEMA_VERSION),)
    except sqlite3.Error as exc:
        db.close()
        raise DeliveryLogError(f"{path}: cannot open the delivery log: {exc}") from None
    if version is None or not str(version[0]).isdigit() or int(version[0]) > SCHEMA_VERSION:
        db.close()
        raise DeliveryLogError(f"{path}: not a delivery log this version of mailaction can read")
    db.execute("PRAGMA busy_timeout = 0")  # waits for the write lock are `DeliveryLog._retried`'s
    return db


def _upgrade(db: sqlite3.Connection, from_version: str) -> None:
    """Bring a log of an earlier version to this one, in one transaction.

    From version 1: the queue's columns and tables, and ids under today's key rule (letters
    logged before hold no message: the next `send` builds and stores the unsent ones). From
    version 2: the queue's index of pending letters only.
    """
    steps = PENDING_INDEX
    if from_version == "1":
        db.create_function("contact_key", 1, contact_key, deterministic=True)
        db.create_function(
            "identity", 2, lambda recipients, fingerprint: letter_identity(
                json.loads(recipients), fingerprint
            ),
        )  # fmt: skip
        columns = "".join(f"ALTER TABLE letters ADD COLUMN {column};\n" for column in _V2_COLUMN_LIST)
        steps = (
            f"{columns}{_V2_TABLES}\n"
            "UPDATE OR IGNORE letters SET contact_id = contact_key(contact_id);\n"  # pragma: no mutate
            "UPDATE letters SET identity = identity(recipients, fingerprint);"  # pragma: no mutate
        )
    db.executescript(
        f"BEGIN IMMEDIATE;\n{steps}\n"
        f"UPDATE meta SET value = '{SCHEMA_VERSION}' WHERE key = 'schema_version';\n"
        "COMMIT;"  # pragma: no mutate
    )


def _has_schema(db: sqlite3.Connection) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'letters'")
    return found.fetchone() is not None


def open_log(
    location: Path | str, campaign: str, *, lock: bool = False, create: bool = True
) -> DeliveryLog:
    """The delivery log at ``location``: a SQLite file, or a PostgreSQL database
    ("postgresql://..."), whose workers on several machines share its queue. ``lock`` (SQLite
    only) takes the file's lock for a `send`."""
    if is_database_url(location):
        from .pglog import PostgresLog

        return PostgresLog(str(location), campaign, create=create)
    return DeliveryLog(Path(location), campaign, lock=lock, create=create)


def is_database_url(location: Path | str) -> bool:
    """Whether the log location names a PostgreSQL database rather than a file."""
    return isinstance(location, str) and location.startswith(("postgresql://", "postgres://"))
