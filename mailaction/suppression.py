"""The suppression list: addresses never written to (opted out, bounced hard), in a SQLite file.

One file can serve several campaigns (`campaign.suppression`); by default it lies beside the
delivery log. Addresses are compared case-insensitively after Unicode NFC normalisation.
"""

from __future__ import annotations

import sqlite3
import time
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Self

from email_validator import EmailNotValidError, validate_email

from .config import CampaignConfig
from .errors import MailactionError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS suppressed (
    key TEXT PRIMARY KEY,      -- the address, NFC and case-folded
    address TEXT NOT NULL,     -- as first written
    reason TEXT NOT NULL,      -- "manual", "import", "bounce: 5.1.1 ..."
    added_at REAL NOT NULL
);
"""


class SuppressionError(MailactionError):
    """The suppression list cannot be read or written, or an address to add is not one."""


@dataclass(frozen=True)
class Suppressed:
    """One address on the list."""

    address: str
    reason: str
    added_at: float  # unix time


def address_key(address: str) -> str:
    """The form addresses are compared in: NFC, case-folded, surrounding space removed."""
    return unicodedata.normalize("NFC", address.strip()).casefold()


def checked_address(address: str, where: str) -> str:
    """``address`` trimmed, or SuppressionError naming ``where`` when it is not an address."""
    try:
        validate_email(address.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise SuppressionError(
            f"{where}: {address.strip()!r} is not a valid address: {exc}"
        ) from None
    return address.strip()


class SuppressionList:
    """The addresses of one suppression file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise SuppressionError(
                f"{self.path}: cannot open the suppression list: {exc}"
            ) from None

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def add(self, address: str, reason: str = "manual") -> bool:
        """Put ``address`` on the list; False when it was already there (its reason kept)."""
        return self.add_many([address], reason) == 1

    def add_many(self, addresses: Iterable[str], reason: str) -> int:
        """Put every address on the list in one transaction; how many were new."""
        now = time.time()
        rows = ((address_key(address), address.strip(), reason, now) for address in addresses)
        with self._transaction():
            before = self._db.total_changes
            self._db.executemany(
                "INSERT INTO suppressed (key, address, reason, added_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT DO NOTHING",
                rows,
            )
            added = self._db.total_changes - before
        return added

    def remove(self, address: str) -> bool:
        """Take ``address`` off the list; False when it was not on it."""
        with self._transaction():
            before = self._db.total_changes
            self._db.execute("DELETE FROM suppressed WHERE key = ?", (address_key(address),))
            removed = self._db.total_changes - before
        return removed == 1

    def __contains__(self, address: object) -> bool:
        if not isinstance(address, str):
            return False
        found = self._db.execute("SELECT 1 FROM suppressed WHERE key = ?", (address_key(address),))
        return found.fetchone() is not None

    def suppressed(self, addresses: Iterable[str]) -> bool:
        """True when any of ``addresses`` (a letter's recipients) is on the list."""
        return any(address in self for address in addresses)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT count(*) FROM suppressed").fetchone()[0])

    def __iter__(self) -> Iterator[Suppressed]:
        """Every address, in the order they were added."""
        rows = self._db.execute(
            "SELECT address, reason, added_at FROM suppressed ORDER BY added_at, key"
        )
        for address, reason, added_at in rows:
            yield Suppressed(address, reason, added_at)

    def import_file(self, path: Path) -> int:
        """Add every address of a text file (one a line; blank and ``#`` lines skipped); how many
        were new. Nothing is added when any line is not an address."""
        try:
            lines = path.read_text(encoding="utf-8-sig").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise SuppressionError(f"{path}: cannot read the file: {reason}") from None
        addresses = [
            checked_address(line, f"{path}:{number}")
            for number, line in enumerate(lines, start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
        return self.add_many(addresses, f"import: {path.name}")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One committed write; SuppressionError when the file cannot be written."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            yield
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise SuppressionError(
                f"{self.path}: cannot write the suppression list: {exc}"
            ) from None


def open_suppression(settings: CampaignConfig) -> SuppressionList:
    """The campaign's suppression list (created empty when it does not exist yet)."""
    assert settings.suppression is not None, "load_config sets the default"
    return SuppressionList(settings.suppression)


class HeldBack:
    """Whether a letter to some recipients is held back: a snapshot of the suppression list."""

    def __init__(self, keys: frozenset[str]) -> None:
        self._keys = keys

    def __call__(self, recipients: Sequence[str]) -> bool:
        return any(address_key(address) in self._keys for address in recipients)

    def __len__(self) -> int:
        """How many addresses are held back."""
        return len(self._keys)


def recipient_filter(settings: CampaignConfig, *, proof: bool) -> HeldBack:
    """What the campaign's suppression list holds back: nothing for a proof (--test-to) run."""
    if proof or settings.suppression is None or not settings.suppression.exists():
        return HeldBack(frozenset())
    with SuppressionList(settings.suppression) as suppression:
        return HeldBack(frozenset(address_key(entry.address) for entry in suppression))
