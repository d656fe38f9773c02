"""A real SMTP server (aiosmtpd, on 127.0.0.1) that misbehaves on request, for tests.

Each misbehaviour is a small named action replacing one command's response, so a test reads like
the story it checks:

    with FaultServer() as server:
        server.on("RCPT", reply("451 4.7.1 try later"), times=1)  # first RCPT 451, then normal
        server.on("DATA_END", drop)         # close after the final "." without replying
        ...
        assert server.received_ids() == Counter({"<1@example.org>": 1})

Commands: GREETING (the banner), EHLO, MAIL, RCPT, DATA (the command, before 354), DATA_END
(after the final "."), RSET, QUIT, AUTH. An action is ``async (session, arg) -> str | None``:
the reply to send instead of the normal one, or None to carry on normally. A 421 reply closes
the connection, as RFC 5321 says it must (``reply_421_staying_open`` does not); so does any
refused greeting.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import ssl
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.parser import BytesParser
from email.policy import default as default_policy
from functools import cached_property
from pathlib import Path
from typing import Any, Self, cast

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailaction.sink import FreePortController

COMMANDS = ("GREETING", "EHLO", "MAIL", "RCPT", "DATA", "DATA_END", "RSET", "QUIT", "AUTH")
DEFAULT_SIZE_LIMIT = 2**25

Action = Callable[["FaultSession", "str | None"], Awaitable["str | None"]]


def reply(text: str) -> Action:
    """Answer with ``text`` instead of the normal reply (421 also closes the connection)."""

    async def replace(session: FaultSession, arg: str | None) -> str | None:
        return text

    return replace


async def drop(session: FaultSession, arg: str | None) -> str | None:
    """Close the connection without replying."""
    assert session.transport is not None
    session.transport.close()
    return await session.loop.create_future()  # never done: the lost connection cancels us


async def deliver_then_drop(session: FaultSession, arg: str | None) -> str | None:
    """At DATA_END: keep the message, then close without replying (the reply is lost)."""
    session.deliver()
    return await drop(session, arg)


def reply_421_staying_open(text: str) -> Action:
    """Answer ``text``, a 421, but keep the connection open (a server against RFC 5321 3.8)."""

    async def replace(session: FaultSession, arg: str | None) -> str | None:
        session.close_after_421 = False
        return text

    return replace


def slow(seconds: float) -> Action:
    """Wait ``seconds``, then answer normally."""

    async def wait(session: FaultSession, arg: str | None) -> str | None:
        await asyncio.sleep(seconds)
        return None

    return wait


def reject_recipient(address: str, text: str) -> Action:
    """At RCPT: answer ``text`` for ``address``, normally for everyone else."""
    wanted = f"<{address.lower()}>"

    async def reject(session: FaultSession, arg: str | None) -> str | None:
        return text if arg is not None and wanted in arg.lower() else None

    return reject


def reject_sender(address: str, text: str) -> Action:
    """At MAIL: answer ``text`` for ``address``, normally for everyone else."""
    return reject_recipient(address, text)


@dataclass
class ReceivedMessage:
    """One message the server accepted."""

    mail_from: str
    recipients: tuple[str, ...]
    data: bytes
    connection: int  # 1 for the first connection the server accepted
    at: float  # time.monotonic() when its MAIL FROM came

    @cached_property
    def message(self) -> EmailMessage:
        return cast(EmailMessage, BytesParser(policy=default_policy).parsebytes(self.data))

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"]).strip()


@dataclass
class _Fault:
    action: Action
    times: int | None  # None: every time


class FaultSession(SMTP):
    """One client connection; runs the server's faults in place of normal replies."""

    def __init__(self, server: FaultServer, *, probe: bool, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        self.server = server
        self.probe = probe  # the controller's start-up connection, which faults never touch
        self.number = 0
        self.delivered = 0
        self.counted = False  # among the server's open connections
        self.mail_at = 0.0  # when the current transaction's MAIL FROM came
        self.close_after_421 = True

    def connection_lost(self, error: Exception | None) -> None:
        if self.counted:
            self.counted = False
            self.server._close_connection()
        super().connection_lost(error)

    async def _handle_client(self) -> None:
        if not self.probe:
            self.number = self.server._connected()
            if not self.server._open_connection():
                if self.server.refusal_delay:
                    await asyncio.sleep(self.server.refusal_delay)
                await self._reply("421 4.7.0 too many connections from your address")
                return
            self.counted = True
        status = await self._fault("GREETING", None)
        if status is None:
            await super()._handle_client()
            return
        await self.push(status)
        assert self.transport is not None
        self.transport.close()

    async def push(self, status: Any) -> None:
        if self.number:
            self.server.replies.append(status if isinstance(status, str) else status.decode())
        await super().push(status)

    async def _fault(self, command: str, arg: str | None) -> str | None:
        if not self.number:
            return None
        self.server.commands[command] += 1
        action = self.server._take(command)
        return None if action is None else await action(self, arg)

    async def _reply(self, status: str) -> None:
        await self.push(status)
        if status.startswith("421") and self.close_after_421:
            assert self.transport is not None
            self.transport.close()

    async def _command(self, command: str, arg: str | None, normal: Callable[..., Any]) -> None:
        status = await self._fault(command, arg)
        if status is None:
            await normal(arg)
        else:
            await self._reply(status)

    async def smtp_EHLO(self, arg: str) -> None:
        await self._command("EHLO", arg, super().smtp_EHLO)

    async def smtp_MAIL(self, arg: str | None) -> None:
        self.mail_at = time.monotonic()
        # What the client sent after MAIL FROM before hearing its reply (PIPELINING).
        self.server.sent_with_mail.append(bytes(self._reader._buffer))  # type: ignore[attr-defined]
        limit = self.server.max_messages_per_connection
        if limit and self.delivered >= limit:
            await self._reply("421 4.7.0 too many messages on one connection")
            return
        if not self.server._message_allowed():
            await self._reply("450 4.7.1 Error: too much mail from 127.0.0.1")
            return
        await self._command("MAIL", arg, super().smtp_MAIL)

    async def smtp_RCPT(self, arg: str | None) -> None:
        await self._command("RCPT", arg, super().smtp_RCPT)

    async def smtp_DATA(self, arg: str) -> None:
        await self._command("DATA", arg, super().smtp_DATA)

    async def smtp_RSET(self, arg: str) -> None:
        await self._command("RSET", arg, super().smtp_RSET)

    async def smtp_QUIT(self, arg: str) -> None:
        await self._command("QUIT", arg, super().smtp_QUIT)

    async def smtp_AUTH(self, arg: str) -> None:
        await self._command("AUTH", arg, super().smtp_AUTH)

    async def end_of_data(self) -> str:
        """The reply after the final "." (DATA_END faults apply here)."""
        status = await self._fault("DATA_END", None)
        if status is None:
            self.deliver()
            return "250 2.0.0 OK queued"
        if status.startswith("421") and self.close_after_421:
            assert self.transport is not None
            self.loop.call_soon(self.transport.close)  # after aiosmtpd has written the reply
        return status

    def deliver(self) -> None:
        """Accept the message of the current transaction."""
        envelope = self.envelope
        assert envelope is not None and isinstance(envelope.original_content, bytes)
        self.delivered += 1
        self.server.messages.append(
            ReceivedMessage(
                envelope.mail_from or "",
                tuple(envelope.rcpt_tos),
                envelope.original_content,
                self.number,
                self.mail_at,
            )
        )


class FaultServer:
    """An SMTP server on 127.0.0.1 (a free port) whose replies tests can replace.

    Options: ``smtputf8`` (advertise SMTPUTF8), ``size_limit`` (advertised SIZE; None for no
    SIZE), ``auth`` (``{"user": "secret"}``: offer AUTH, also without TLS), ``tls`` (a server
    SSLContext: offer STARTTLS, or use TLS from the start with ``implicit_tls``),
    ``require_starttls``, ``idle_timeout`` (seconds before an idle connection is closed),
    ``max_messages_per_connection`` (421 once a connection has delivered that many),
    ``pipelining`` (advertise PIPELINING; aiosmtpd answers commands sent together in order), and
    limits per client as Postfix's anvil keeps them: ``max_connections`` at a time (more are
    refused with 421 at greeting, ``refusal_delay`` seconds after they connect) and ``message_rate`` = (count, seconds) MAIL FROM requests per
    window (one more gets 450 4.7.1; a window starts at the first request after the last ended).
    """

    def __init__(
        self,
        *,
        smtputf8: bool = True,
        size_limit: int | None = DEFAULT_SIZE_LIMIT,
        auth: dict[str, str] | None = None,
        tls: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        require_starttls: bool = False,
        idle_timeout: float = 300,
        max_messages_per_connection: int = 0,
        pipelining: bool = False,
        max_connections: int = 0,
        refusal_delay: float = 0.0,
        message_rate: tuple[int, float] | None = None,
    ) -> None:
        self.max_messages_per_connection = max_messages_per_connection
        self.max_connections = max_connections
        self.refusal_delay = refusal_delay
        self.message_rate = message_rate
        self.open_connections = 0
        self.most_open_connections = 0
        self.refused_connections = 0
        self.refused_messages = 0
        self._window = (-math.inf, 0)  # (start, MAIL FROM requests counted)
        self.pipelining = pipelining
        self.messages: list[ReceivedMessage] = []
        self.replies: list[str] = []
        self.commands: Counter[str] = Counter()
        self.sent_with_mail: list[bytes] = []
        self.logins: list[str] = []
        self.connections = 0
        self._auth = auth
        self._faults: dict[str, list[_Fault]] = {command: [] for command in COMMANDS}
        self._lock = threading.Lock()
        self._controller = _Controller(
            self,
            ssl_context=tls if implicit_tls else None,
            tls_context=None if implicit_tls else tls,
            require_starttls=require_starttls,
            enable_SMTPUTF8=smtputf8,
            data_size_limit=size_limit,
            timeout=idle_timeout,
            authenticator=self._authenticate if auth else None,
            auth_require_tls=not auth,
        )

    @property
    def port(self) -> int:
        return self._controller.port

    def start(self) -> Self:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def on(self, command: str, action: Action, times: int | None = None) -> None:
        """Use ``action`` for ``command`` (the next ``times`` times, or always).

        Of the faults set for a command, the first one registered that has times left is used.
        """
        if command not in COMMANDS:
            raise ValueError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
        with self._lock:
            self._faults[command].append(_Fault(action, times))

    def received_ids(self) -> Counter[str]:
        """How many times each Message-ID was received."""
        return Counter(message.message_id for message in self.messages)

    def _take(self, command: str) -> Action | None:
        with self._lock:
            for fault in self._faults[command]:
                if fault.times is None:
                    return fault.action
                if fault.times > 0:
                    fault.times -= 1
                    return fault.action
        return None

    def _open_connection(self) -> bool:
        """Count one more open connection, unless the limit is reached (then count a refusal)."""
        with self._lock:
            if self.max_connections and self.open_connections >= self.max_connections:
                self.refused_connections += 1
                return False
            self.open_connections += 1
            self.most_open_connections = max(self.most_open_connections, self.open_connections)
            return True

    def _close_connection(self) -> None:
        with self._lock:
            self.open_connections -= 1

    def _message_allowed(self) -> bool:
        """Count a MAIL FROM request in the current window; False when over the limit."""
        if self.message_rate is None:
            return True
        count, seconds = self.message_rate
        with self._lock:
            now = time.monotonic()
            start, requests = self._window
            if now - start >= seconds:
                start, requests = now, 0
            self._window = (start, requests + 1)
            if requests < count:
                return True
            self.refused_messages += 1
            return False

    def _connected(self) -> int:
        with self._lock:
            self.connections += 1
            return self.connections

    def _authenticate(
        self, smtp: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert self._auth is not None and isinstance(data, LoginPassword)
        user, password = data.login.decode(), data.password.decode()
        if self._auth.get(user) != password:
            return AuthResult(success=False, handled=False)
        self.logins.append(user)
        return AuthResult(success=True)

    async def handle_EHLO(
        self, smtp: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        """aiosmtpd's EHLO reply, with PIPELINING when the server offers it."""
        session.host_name = hostname
        if not self.pipelining:
            return responses
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def handle_DATA(self, smtp: SMTP, session: Session, envelope: Envelope) -> str:
        """aiosmtpd handler hook: the reply after the final "."."""
        return await cast(FaultSession, smtp).end_of_data()


class _Controller(FreePortController):
    def __init__(self, server: FaultServer, **kwargs: Any) -> None:
        super().__init__(
            server, hostname="127.0.0.1", port=0, server_hostname="faults.test", **kwargs
        )
        self.fault_server = server
        self.sessions = 0

    def factory(self) -> FaultSession:
        """A session; the first is `start`'s probe, even when it runs after `start` returned."""
        self.sessions += 1
        return FaultSession(self.fault_server, probe=self.sessions == 1, **self.SMTP_kwargs)


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for localhost and 127.0.0.1."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def make_certificate(directory: Path) -> Certificate:
    """Create a certificate with `openssl`; skip the test when openssl is not installed."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed; it is needed to make a test certificate")
    certificate = Certificate(directory / "cert.pem", directory / "key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(certificate.key),
         "-out", str(certificate.cert), "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return certificate
