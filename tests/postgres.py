"""A real PostgreSQL server for the tests: initdb into a temporary folder, on 127.0.0.1.

Run as an unprivileged user: as root, the `postgres` system user that Debian's package creates
(or one made here with useradd). Only loopback TCP; no Unix socket outside the folder.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import Self

import psycopg

SERVICE_USER = "postgres"


def find_initdb() -> Path | None:
    """initdb on the PATH, or in Debian's versioned folder; None when PostgreSQL is missing."""
    found = shutil.which("initdb")
    if found:
        return Path(found)
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(versions[-1]) if versions else None


class PostgresServer:
    """A throwaway cluster; ``url(db)`` names a database in it, ``new_database()`` makes one."""

    def __init__(self, initdb: Path) -> None:
        self.bin = initdb.resolve().parent
        self.folder = Path(tempfile.mkdtemp(prefix="mailaction-pg-"))
        self.data = self.folder / "data"
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self._as: list[str] = []
        if os.geteuid() == 0:
            _ensure_user(SERVICE_USER)
            shutil.chown(self.folder, SERVICE_USER)
            self._as = ["runuser", "-u", SERVICE_USER, "--"]
        self._databases = 0

    def __enter__(self) -> Self:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.folder} -c fsync=off"
        self._run("pg_ctl", "start", "-w", "-D", str(self.data), "-l",
                  str(self.folder / "server.log"), "-o", options)  # fmt: skip
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", check=False)
        shutil.rmtree(self.folder, ignore_errors=True)

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """The URL of a fresh, empty database."""
        self._databases += 1
        name = f"test_{self._databases}"
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def _run(self, program: str, *args: str, check: bool = True) -> None:
        subprocess.run(
            [*self._as, str(self.bin / program), *args],
            check=check, capture_output=True, cwd=self.folder,
        )  # fmt: skip


def _ensure_user(name: str) -> None:
    """A system user to run the server as (PostgreSQL refuses to run as root)."""
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", name], check=True)
