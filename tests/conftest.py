"""Shared pytest fixtures."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.campaigns import RecordingSink, cli_project


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
