"""A local SMTP server that accepts every message and stores it in a Maildir, for trying campaigns.

Each stored file starts with two lines that record the envelope, as a local delivery agent would:
``Return-Path: <sender>`` and ``X-Original-To: <recipient>, ...`` (Bcc recipients included).
Files are not fsynced: the sink is for trying things out, and syncing would cost most of its time.
"""

from __future__ import annotations

import asyncio
import itertools
import mailbox
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import default as default_policy
from pathlib import Path
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from .errors import MailactionError

MAX_MESSAGE_SIZE = 64 * 1024 * 1024


class FreePortController(Controller):
    """An aiosmtpd Controller that can listen on port 0 (the system picks a free port).

    It also reports a failure to listen at once rather than after its ready timeout.
    """

    def _run(self, ready_event: threading.Event) -> None:
        try:
            super()._run(ready_event)
        finally:
            ready_event.set()

    def _trigger_server(self) -> None:
        if self._thread_exception is not None:
            raise self._thread_exception
        assert isinstance(self.server, asyncio.base_events.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]  # unannotated in aiosmtpd


@dataclass(frozen=True)
class StoredMessage:
    """One message the sink accepted: its envelope, identity, and its key in the Maildir."""

    mail_from: str
    recipients: tuple[str, ...]
    message_id: str
    subject: str
    key: str


class Sink:
    """An SMTP server on loopback that stores what it receives in ``maildir``.

    ``on_message`` is called from the server's thread after each message is stored and before
    the client gets its reply.
    """

    def __init__(
        self,
        maildir: Path,
        host: str = "127.0.0.1",
        port: int = 0,
        on_message: Callable[[StoredMessage], None] | None = None,
    ) -> None:
        self.maildir = Path(maildir)
        self.host = host
        self.port = port
        self.count = 0
        self._on_message = on_message
        self._sequence = itertools.count()
        self._controller: Controller | None = None
        self._parser = BytesHeaderParser(policy=default_policy)

    def start(self) -> Self:
        """Start listening; ``port`` is the actual port afterwards."""
        mailbox.Maildir(self.maildir, create=True)
        controller = FreePortController(
            self, hostname=self.host, port=self.port, server_hostname="mailaction-sink",
            data_size_limit=MAX_MESSAGE_SIZE, enable_SMTPUTF8=True,
        )  # fmt: skip
        try:
            controller.start()
        except OSError as exc:
            raise MailactionError(
                f"{self.host}:{self.port}: cannot listen: {exc.strerror}"
            ) from None
        self._controller = controller
        self.port = controller.port
        return self

    def stop(self) -> None:
        """Stop listening and close open connections."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        """Store one message (aiosmtpd handler hook)."""
        assert isinstance(envelope.content, bytes)
        recipients = tuple(envelope.rcpt_tos)
        stamp = f"Return-Path: <{envelope.mail_from}>\r\nX-Original-To: {', '.join(recipients)}\r\n"
        key = self._store(stamp.encode("utf-8") + envelope.content)
        headers = self._parser.parsebytes(envelope.content)
        stored = StoredMessage(
            envelope.mail_from or "", recipients, _header(headers, "Message-ID"),
            _header(headers, "Subject"), key,
        )  # fmt: skip
        self.count += 1
        if self._on_message is not None:
            self._on_message(stored)
        return "250 2.0.0 OK stored"

    def _store(self, data: bytes) -> str:
        """Write one message the Maildir way (into tmp/, then renamed into new/); its key."""
        key = f"{time.time_ns()}.P{os.getpid()}Q{next(self._sequence)}.mailaction-sink"
        temporary = self.maildir / "tmp" / key
        temporary.write_bytes(data)
        os.rename(temporary, self.maildir / "new" / key)
        return key


def _header(headers: Message, name: str) -> str:
    value = headers.get(name)
    return "" if value is None else str(value).strip()
