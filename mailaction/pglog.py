"""The delivery log in PostgreSQL: one queue for workers on several machines.

The same tables, states and rules as the SQLite log (`deliverylog.DeliveryLog`, whose methods
this class inherits); only the connection, the dialect and the locks differ. Workers claim
letters with ``SELECT ... FOR UPDATE SKIP LOCKED``, so two never take the same one and none
waits for another; the shared rate limits lock their rows ``FOR UPDATE``; heartbeats and rate
slots use the database's clock, so the machines' clocks need not agree. Planning holds an
advisory lock until its transaction ends, so two machines never queue a campaign at once.
"""

from __future__ import annotations

import functools
from typing import Any

import psycopg
from psycopg.pq import TransactionStatus

from .deliverylog import PENDING_INDEX, SCHEMA_VERSION, Cursor, DeliveryLog
from .errors import DeliveryLogError

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS letters (
    rowid BIGSERIAL UNIQUE,
    campaign TEXT NOT NULL,
    contact_id TEXT NOT NULL,
    row INTEGER NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_code INTEGER,
    last_reply TEXT NOT NULL DEFAULT '',
    refused TEXT NOT NULL DEFAULT '{{}}',
    message_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    first_attempt_at DOUBLE PRECISION,
    last_attempt_at DOUBLE PRECISION,
    sent_at DOUBLE PRECISION,
    sender TEXT NOT NULL DEFAULT '',
    smtputf8 INTEGER NOT NULL DEFAULT 0,
    identity TEXT NOT NULL DEFAULT '',
    history TEXT NOT NULL DEFAULT '',
    account TEXT,
    claimed_by TEXT,
    PRIMARY KEY (campaign, contact_id)
);
{PENDING_INDEX}
CREATE INDEX IF NOT EXISTS letters_row ON letters (campaign, row);
CREATE INDEX IF NOT EXISTS letters_identity ON letters (identity);
CREATE TABLE IF NOT EXISTS messages (
    letter BIGINT PRIMARY KEY REFERENCES letters (rowid) ON DELETE CASCADE,
    content BYTEA NOT NULL,
    parts TEXT
);
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY,
    data BYTEA NOT NULL
);
CREATE TABLE IF NOT EXISTS workers (
    id TEXT PRIMARY KEY,
    campaign TEXT NOT NULL,
    heartbeat DOUBLE PRECISION NOT NULL
);
CREATE TABLE IF NOT EXISTS limits (
    campaign TEXT NOT NULL,
    name TEXT NOT NULL,
    next_slot DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (campaign, name)
);
INSERT INTO meta (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}') ON CONFLICT DO NOTHING;
"""
_SCHEMA_LOCK = 0x6D61696C  # the advisory lock held while the tables are created ("mail")


class PostgresLog(DeliveryLog):
    """The queue and the state of every letter of one campaign, in a PostgreSQL database."""

    _CLOCK = "extract(epoch FROM clock_timestamp())::float8"
    _SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    _FOR_UPDATE = " FOR UPDATE"
    _PART_DIGESTS = (
        "SELECT part ->> 1 FROM messages, jsonb_array_elements(messages.parts::jsonb) AS part"
        " WHERE messages.parts IS NOT NULL"
    )

    def __init__(self, url: str, campaign: str, *, create: bool = True) -> None:
        self._create = create
        self._lock = None
        self._start(url, redacted(url), campaign)

    def _open(self) -> psycopg.Connection[Any]:
        try:
            db = psycopg.connect(str(self.location), connect_timeout=10)
        except psycopg.Error as exc:
            raise DeliveryLogError(f"{self.where}: cannot connect: {_first_line(exc)}") from None
        try:
            found = db.execute("SELECT to_regclass('letters') IS NOT NULL").fetchone()
            if not (found and found[0]):
                if not self._create:
                    raise DeliveryLogError(
                        f"{self.where}: no delivery log yet; run `mailaction send` first"
                    )
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                db.execute(_SCHEMA)
            version = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            if version is not None and version[0] == "2":  # the queue's index of pending letters
                db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                db.execute(PENDING_INDEX)
                db.execute(
                    "UPDATE meta SET value = %s WHERE key = 'schema_version'", (str(SCHEMA_VERSION),)
                )
                version = (str(SCHEMA_VERSION),)
            db.commit()
        except psycopg.Error as exc:
            db.close()
            raise DeliveryLogError(f"{self.where}: cannot open the delivery log: {exc}") from None
        except DeliveryLogError:
            db.close()
            raise
        if version is None or version[0] != str(SCHEMA_VERSION):
            db.close()
            raise DeliveryLogError(
                f"{self.where}: not a delivery log this version of mailaction can read"
            )
        return db

    def _in_transaction(self) -> bool:
        return bool(self._db.info.transaction_status != TransactionStatus.IDLE)

    def _begin(self) -> None:
        """psycopg begins a transaction with the first statement."""

    def _commit(self) -> None:
        try:
            self._db.commit()
        except psycopg.Error as exc:
            raise DeliveryLogError(f"{self.where}: cannot write the delivery log: {exc}") from None

    def _rollback(self) -> None:
        try:
            self._db.rollback()
        except psycopg.Error as exc:
            raise DeliveryLogError(f"{self.where}: cannot write the delivery log: {exc}") from None

    def _execute(self, sql: str, params: tuple[Any, ...] | list[Any]) -> Cursor:
        try:
            return self._db.execute(_dialect(sql), params)
        except psycopg.Error as exc:
            raise DeliveryLogError(f"{self.where}: cannot write the delivery log: {exc}") from None

    def _execute_many(self, sql: str, rows: list[tuple[Any, ...]]) -> int:
        try:
            with self._db.cursor() as cursor:
                cursor.executemany(_dialect(sql), rows)
                return int(cursor.rowcount)
        except psycopg.Error as exc:
            raise DeliveryLogError(f"{self.where}: cannot write the delivery log: {exc}") from None

    def commit_queue(self) -> None:
        """Commit the run just queued (PostgreSQL checkpoints by itself)."""
        self.flush()

    def checkpoint(self) -> None:
        """PostgreSQL checkpoints by itself."""

    def _grow_cache(self) -> None:
        """PostgreSQL's server keeps the cache."""

    def automatic_checkpoints(self, on: bool) -> None:
        """PostgreSQL checkpoints by itself."""

    def plan_lock(self) -> None:
        """Hold off other machines' plans of this campaign until this transaction ends."""
        self._write("SELECT pg_advisory_xact_lock(hashtext(?))", (self.campaign,))


@functools.lru_cache(maxsize=256)
def _dialect(sql: str) -> str:
    """A statement written for SQLite, with psycopg's placeholders."""
    return sql.replace("%", "%%").replace("?", "%s")


def redacted(url: str) -> str:
    """The URL without its password, to name the database in messages."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    user = f"{info['user']}@" if info.get("user") else ""
    port = f":{info['port']}" if info.get("port") else ""
    return f"postgresql://{user}{info.get('host', '')}{port}/{info.get('dbname', '')}"


def _first_line(exc: Exception) -> str:
    return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

