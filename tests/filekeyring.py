"""A keyring backend keeping passwords in a JSON file, for tests (never the user's keyring).

In-process tests install it with ``keyring.set_keyring(FileKeyring(path))``; subprocesses get it
with ``PYTHON_KEYRING_BACKEND=tests.filekeyring.FileKeyring`` and ``TEST_KEYRING_FILE=path``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from keyring.backend import KeyringBackend
from keyring.compat import properties
from keyring.errors import PasswordDeleteError


class FileKeyring(KeyringBackend):
    """Passwords by (service, user) in one JSON file."""

    @properties.classproperty
    def priority(cls) -> float:
        """Chosen by keyring's detection only where TEST_KEYRING_FILE names its file."""
        if "TEST_KEYRING_FILE" not in os.environ:
            raise RuntimeError("TEST_KEYRING_FILE is not set")
        return 1

    def __init__(self, path: Path | None = None) -> None:
        super().__init__()
        self.path = path or Path(os.environ["TEST_KEYRING_FILE"])

    def _entries(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        entries: dict[str, str] = json.loads(self.path.read_text(encoding="utf-8"))
        return entries

    def get_password(self, service: str, username: str) -> str | None:
        return self._entries().get(f"{service}\0{username}")

    def set_password(self, service: str, username: str, password: str) -> None:
        entries = self._entries()
        entries[f"{service}\0{username}"] = password
        self.path.write_text(json.dumps(entries), encoding="utf-8")

    def delete_password(self, service: str, username: str) -> None:
        entries = self._entries()
        if entries.pop(f"{service}\0{username}", None) is None:
            raise PasswordDeleteError(username)
        self.path.write_text(json.dumps(entries), encoding="utf-8")
