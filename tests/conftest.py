"""Shared pytest fixtures."""

from __future__ import annotations

import base64
import shutil
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.campaigns import RecordingSink, cli_project
from tests.postgres import PostgresServer, find_initdb


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[RecordingSink]:
    """A local SMTP sink on a free port, storing into ``tmp_path/maildir``."""
    with RecordingSink(tmp_path / "maildir") as server:
        yield server


@pytest.fixture
def project(tmp_path: Path, sink: RecordingSink) -> Path:
    """A campaign folder (template, contacts, mailaction.toml) sending to ``sink``."""
    return cli_project(tmp_path, sink.port)


DKIM_SELECTOR = "mailaction"
DKIM_DOMAIN = "example.org"


@pytest.fixture(scope="session")
def dkim_keys(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A 2048-bit RSA private key file and the DNS TXT record of its public key."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed; it is needed to make a test key")
    private = tmp_path_factory.mktemp("dkim") / "private.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(private), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(private), "-pubout", "-outform", "DER"],
        check=True, capture_output=True,
    ).stdout  # fmt: skip
    return private, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


@pytest.fixture
def dkim_dns(dkim_keys: tuple[Path, bytes]) -> Callable[..., bytes | None]:
    """dkimpy's DNS lookup, answering only the TXT query for the test selector's key."""
    wanted = f"{DKIM_SELECTOR}._domainkey.{DKIM_DOMAIN}".encode()

    def txt(name: bytes, timeout: int = 5) -> bytes | None:
        return dkim_keys[1] if name.rstrip(b".") == wanted else None

    return txt


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server for the session (skipped when PostgreSQL is not installed)."""
    initdb = find_initdb()
    if initdb is None:
        pytest.skip("PostgreSQL is not installed (.ci/run installs it)")
    with PostgresServer(initdb) as server:
        yield server


@pytest.fixture
def pg_url(postgres: PostgresServer) -> str:
    """The URL of a fresh database on the session's PostgreSQL server."""
    return postgres.new_database()
