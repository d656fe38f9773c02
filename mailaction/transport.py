"""The SMTP conversation with one server: connection set-up, the envelope, the data, the replies.

aiosmtplib opens the connection (TCP, TLS or STARTTLS, EHLO, AUTH) through its public API. Then
the connection is handed to `_ReplyReader`, this module's own protocol, with asyncio's public
`Transport.set_protocol`: aiosmtplib reads one reply per command and drops replies that arrive
before it waits for them, which PIPELINING (RFC 2920) needs, and it accepts replies a letter's
fate must not rest on. The one name of aiosmtplib read beyond its documented methods is
``SMTP.protocol.transport`` (public, no underscore, but not documented); ``pyproject.toml`` pins
the tested minor release and ``tests/test_transport.py`` checks the hand-over.

Every byte written to the server after set-up is written here, by one task at a time.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from aiosmtplib import (
    SMTP,
    SMTPConnectError,
    SMTPException,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from .config import SMTPConfig
from .errors import SMTPSetupError
from .smtpauth import Secret, log_in

__all__ = [
    "Connection",
    "Offer",
    "Refused",
    "Reply",
    "Unavailable",
    "Uncertain",
    "is_loopback",
    "open_connection",
]

QUIT_TIMEOUT = 5.0
# A whole reply may not be longer (aiosmtplib's bound); a server sending more is dropped.
MAX_REPLY = 32 * 1024
# RFC 5321 4.2: a reply is a three-digit code, 2yz to 5yz (second digit 0-5), then a space or
# "-" (more lines follow) and text, or the code alone. Anything else is not a reply.
_LINE = re.compile(rb"([2-5][0-5][0-9])(?:([ -])(.*))?\r?\n", re.DOTALL)
_LEADING_DOT = re.compile(rb"(?m)^\.")
_CONNECTION_ERRORS = (SMTPServerDisconnected, SMTPTimeoutError, SMTPConnectError, OSError)


class Reply(NamedTuple):
    """One SMTP reply: its code and its text (lines joined by a space)."""

    code: int
    text: str

    @property
    def temporary(self) -> bool:
        return 400 <= self.code < 500

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


class Unavailable(Exception):
    """The server cannot be used for now (refused, lost or silent) before any data was written.

    ``code`` is the server's reply code, None when the connection was lost or timed out.
    """

    def __init__(self, code: int | None, reply: str, step: str) -> None:
        super().__init__(reply)
        self.code = code
        self.reply = reply
        self.step = step


class Refused(Unavailable):
    """The server answered a refusal at ``step`` before the data was written; code is set."""


class Uncertain(Exception):
    """After the data was written, no sensible reply came: the letter may have arrived."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class _Malformed(Exception):
    """A reply that is not one (bad code, mixed codes in one reply, unended line)."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine (localhost, 127.0.0.0/8, ::1)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def open_connection(
    config: SMTPConfig, timeout: float, password: Secret, local_hostname: str
) -> Connection:
    """Connect, say EHLO, secure the connection and log in, as the config asks.

    Raises SMTPSetupError when the settings or the server's policy rule sending out, and
    `Unavailable` when the server cannot be used for now (``step`` "connect" covers the greeting).
    """
    client = await _open(config, timeout, password, local_hostname)
    return Connection(client, timeout)


async def _open(config: SMTPConfig, timeout: float, password: Secret, local_hostname: str) -> SMTP:
    where = config.address
    if config.username and config.security == "none" and not is_loopback(config.host):
        raise SMTPSetupError(
            f"{where}: refusing to send the password for {config.username!r} over an unencrypted"
            ' connection; set smtp.security to "starttls" or "ssl"'
        )
    if config.ca_file is not None and not config.ca_file.is_file():
        raise SMTPSetupError(f"{where}: smtp.ca_file {str(config.ca_file)!r} is not a file")
    client = SMTP(
        hostname=config.host, port=config.port, timeout=timeout,
        local_hostname=config.helo_name or local_hostname, use_tls=config.security == "ssl",
        start_tls=False, validate_certs=config.verify_certificates,
        cert_bundle=None if config.ca_file is None else str(config.ca_file),
    )  # fmt: skip
    step = "connect"
    try:
        await client.connect()
        step = "EHLO"
        await client.ehlo()
        if config.security == "starttls":
            if not client.supports_extension("starttls"):
                raise SMTPSetupError(
                    f"{where}: the server does not offer STARTTLS; refusing to send the password"
                    " or letters in clear text"
                )
            step = "STARTTLS"
            await client.starttls()
            step = "EHLO"
            await client.ehlo()
        if config.username:
            step = "login"
            await log_in(client, config.username, password, where)
    except (SMTPException, OSError) as exc:
        client.close()
        raise _open_failure(exc, config, step, timeout) from None
    except BaseException:
        client.close()
        raise
    return client


class Offer(NamedTuple):
    """What a server offered in EHLO (after STARTTLS): SIZE (0 when none) and extensions."""

    size_limit: int
    smtputf8: bool
    eight_bit: bool
    pipelining: bool


def server_offer(client: SMTP) -> Offer:
    """What the server said it accepts, from its last EHLO reply."""
    size = client.esmtp_extensions.get("size", "")
    return Offer(
        int(size) if size.isdigit() else 0,
        client.supports_extension("smtputf8"),
        client.supports_extension("8bitmime"),
        client.supports_extension("pipelining"),
    )


async def check_connection(
    config: SMTPConfig, timeout: float, password: Secret, local_hostname: str
) -> Offer:
    """Open a connection as `open_connection` does, then say goodbye; what the server offered."""
    client = await _open(config, timeout, password, local_hostname)
    offer = server_offer(client)
    try:
        if client.is_connected:
            await client.quit(timeout=QUIT_TIMEOUT)
    except (SMTPException, OSError):
        pass
    finally:
        client.close()
    return offer


def _open_failure(exc: Exception, config: SMTPConfig, step: str, timeout: float) -> Exception:
    """SMTPSetupError for what waiting will not fix, `Unavailable` for what it may."""
    where = config.address
    tls = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if isinstance(tls, ssl.SSLCertVerificationError):
        return SMTPSetupError(
            f"{where}: the server's certificate cannot be verified ({tls.verify_message}); if"
            " it comes from a private certificate authority, set smtp.ca_file to that authority's"
            " certificate (PEM); smtp.verify_certificates = false only for a server you trust"
        )
    if isinstance(tls, ssl.SSLError):
        hint = ""
        if tls.reason == "WRONG_VERSION_NUMBER" and config.security == "ssl":
            hint = (
                "; the server does not speak TLS from the start on this port: use"
                ' smtp.security = "starttls" (usually port 587), or port 465 for "ssl"'
            )
        return SMTPSetupError(f"{where}: TLS failed: {tls.reason or tls}{hint}")
    if isinstance(exc, SMTPResponseException):
        reply = f"{exc.code} {_one_line(exc.message)}"
        if 400 <= exc.code < 500:
            return Refused(exc.code, f"{step} refused for now: {reply}", step)
        if step == "login":
            return SMTPSetupError(f"{where}: login refused for user {config.username!r}: {reply}")
        return SMTPSetupError(f"{where}: the server refused {step}: {reply}")
    if isinstance(exc, _CONNECTION_ERRORS):
        return lost(exc, step, timeout)
    return SMTPSetupError(f"{where}: {step} failed: {exc}")


def lost(exc: BaseException, step: str, timeout: float) -> Unavailable:
    """A lost or silent connection, described for the log."""
    if isinstance(exc, SMTPConnectError) and isinstance(exc.__cause__, OSError):
        exc = exc.__cause__  # the reason itself, e.g. "Connection refused"
    if isinstance(exc, TimeoutError | SMTPTimeoutError):
        reply = f"no reply to {step} within {timeout:g} s"
    elif isinstance(exc, SMTPServerDisconnected | EOFError):
        reply = f"the server closed the connection at {step}"
    elif isinstance(exc, _Malformed):
        reply = f"a malformed reply to {step}: {exc}"
    else:
        reply = f"{step}: {_reason(exc)}"
    return Unavailable(None, reply, step)


def _reason(exc: BaseException) -> str:
    """An OS error in words ("Connection refused"), without asyncio's decoration."""
    if not isinstance(exc, OSError):
        return str(exc)
    if exc.errno and not isinstance(exc, socket.gaierror):
        return os.strerror(exc.errno)
    return exc.strerror or str(exc)


def _one_line(message: str) -> str:
    return message.replace("\n", " ") if "\n" in message else message


def dot_stuffed(data: bytes) -> bytes:
    """The message as DATA sends it: leading dots doubled (RFC 5321 4.5.2), then CRLF "." CRLF."""
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return _LEADING_DOT.sub(b"..", data) + b".\r\n"


class Connection:
    """An SMTP session ready for transactions, with what the server offered in EHLO."""

    def __init__(self, client: SMTP, timeout: float) -> None:
        self.timeout = timeout
        self.size_limit, self.smtputf8, self.eight_bit, self.pipelining = server_offer(client)
        self._mail_refused = False
        self._reader = _ReplyReader()
        protocol = client.protocol
        transport = None if protocol is None else protocol.transport
        if transport is None or transport.is_closing():
            self._reader.connection_lost(None)
        else:
            transport.set_protocol(self._reader)
            self._reader.connection_made(transport)

    @property
    def is_open(self) -> bool:
        return self._reader.is_open

    async def _pipelined(self, commands: list[bytes], replies: list[Reply]) -> None:
        """Write the commands at once (RFC 2920) and read their replies, up to a 421."""
        self._reader.write(b"".join(command + b"\r\n" for command in commands))
        for _ in commands:
            replies.append(await self._reader.read(self.timeout))
            if replies[-1].code == 421:
                return

    async def envelope(self, commands: list[bytes]) -> list[Reply]:
        """MAIL FROM, RCPT TO.. and DATA; the replies read, stopping where going on is pointless.

        With PIPELINING the commands go out in one write (one round trip instead of several);
        otherwise one by one, stopping where a reply makes the rest pointless. Once a MAIL FROM
        was refused on the connection, MAIL FROM goes alone first and the rest only after its
        250, so refusals do not pile up RCPT and DATA errors until the server drops us. A reply that is no reply, or a lost connection, raises
        `Unavailable` after closing the connection.
        """
        replies: list[Reply] = []
        try:
            if self._reader.pending():
                raise _Malformed("a reply nobody asked for, before MAIL FROM")
            if self.pipelining and not self._mail_refused:
                await self._pipelined(commands, replies)
            elif self.pipelining:
                # MAIL was refused on this connection before: ask for it alone first, so that
                # another refusal does not bring a 503 for every RCPT and the DATA after it.
                await self._pipelined(commands[:1], replies)
                if replies[0].code == 250:
                    await self._pipelined(commands[1:], replies)
            else:
                for command in commands:
                    if replies and not _worth_going_on(replies, len(commands) - 2):
                        break
                    self._reader.write(command + b"\r\n")
                    replies.append(await self._reader.read(self.timeout))
        except (OSError, EOFError, _Malformed) as exc:
            self.close()
            raise lost(exc, _step(len(replies), len(commands)), self.timeout) from None
        self._mail_refused = self._mail_refused or replies[0].code != 250
        if replies[-1].code == 421:
            self.close()  # RFC 5321 3.8: the server closes the session after a 421
        return replies

    async def data(self, message: bytes, before_write: Callable[[], Awaitable[None]]) -> Reply:
        """Write the message once the server waits for it, and read the reply after the ".".

        ``before_write`` is awaited first (the delivery log commits the letter's ``sending``
        mark there). The connection lost by then raises `Unavailable` (nothing was written);
        after the write, no reply, or one that makes no sense (a malformed reply, or more than
        one reply), raises `Uncertain` and closes the connection.
        """
        await before_write()
        reader = self._reader
        if not reader.is_open:
            raise lost(EOFError(), "DATA", self.timeout)
        # No await between the write and the read, so the reply cannot be missed.
        reader.write(dot_stuffed(message))
        try:
            response = await reader.read(self.timeout)
            if reader.pending():
                raise _Malformed(f"{response} followed by an unasked reply")
        except (OSError, EOFError, _Malformed) as exc:
            self.close()
            why = lost(exc, "the end of data", self.timeout).reply
            raise Uncertain(f"{why}, after the message was sent; it may have arrived") from None
        except asyncio.CancelledError:
            self.close()
            raise
        if 300 <= response.code < 400:
            self.close()
            raise Uncertain(f"{response} is no answer to the end of data; it may have arrived")
        return response

    async def reset(self) -> bool:
        """RSET after a failed transaction; True when the server reset the session (250).

        Reusing a session the server did not reset gives "503 sender already specified".
        """
        try:
            self._reader.write(b"RSET\r\n")
            reset = (await self._reader.read(self.timeout)).code == 250
        except (OSError, EOFError, _Malformed):
            reset = False
        if not reset:
            self.close()
        return reset

    async def quit(self) -> None:
        """Say goodbye politely if the connection is still up, then close it."""
        try:
            if self._reader.is_open:
                self._reader.write(b"QUIT\r\n")
                await self._reader.read(QUIT_TIMEOUT)
        except (OSError, EOFError, _Malformed):
            pass
        finally:
            self.close()

    def close(self) -> None:
        self._reader.close()


def _step(index: int, count: int) -> str:
    return "MAIL FROM" if index == 0 else "DATA" if index == count - 1 else "RCPT TO"


def _worth_going_on(replies: list[Reply], recipients: int) -> bool:
    """Whether the next command of a transaction can still lead to the letter going out."""
    if replies[0].code != 250 or replies[-1].code == 421:
        return False
    if len(replies) == recipients + 1:  # DATA is next: only with a recipient accepted
        return any(response.code in (250, 251) for response in replies[1:])
    return True


class _ReplyReader(asyncio.Protocol):
    """Parses the server's replies as they come and keeps them, in order, until read."""

    def __init__(self) -> None:
        self._transport: asyncio.WriteTransport | None = None
        self._buffer = bytearray()
        self._replies: deque[Reply | _Malformed] = deque()
        self._lost: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._late = False  # the reply awaited did not come in time

    @property
    def is_open(self) -> bool:
        return self._transport is not None and not self._transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or EOFError()
        self._transport = None
        self._wake()

    def eof_received(self) -> bool:
        return False  # close our side too

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        try:
            while (reply := self._parse()) is not None:
                self._replies.append(reply)
        except _Malformed as exc:
            self._replies.append(exc)
            self.close()
        if len(self._buffer) > MAX_REPLY:
            self._replies.append(_Malformed("a reply longer than 32 KiB"))
            self.close()
        self._wake()

    def _parse(self) -> Reply | None:
        """The first whole reply in the buffer, taken out of it; None when none is whole yet."""
        buffer = self._buffer
        code = b""
        lines: list[str] = []
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            match = _LINE.fullmatch(buffer, start, end + 1)
            if match is None:
                raise _Malformed(repr(bytes(buffer[start : end + 1]))[2:-1][:80])
            if code and match[1] != code:
                raise _Malformed(f"one reply with codes {code.decode()} and {match[1].decode()}")
            code = match[1]
            lines.append((match[3] or b"").strip().decode("utf-8", "replace"))
            start = end + 1
            if match[2] != b"-":
                del buffer[:start]
                return Reply(int(code), " ".join(lines))
        return None

    def _time_out(self) -> None:
        self._late = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def pending(self) -> bool:
        """Whether anything came that was not read (a reply nobody asked for)."""
        return bool(self._replies or self._buffer.strip())

    def write(self, data: bytes) -> None:
        if self._transport is None or self._transport.is_closing():
            raise EOFError("connection lost")
        self._transport.write(data)

    async def read(self, timeout: float) -> Reply:
        """The next reply; raises EOFError when the connection is lost, TimeoutError when late."""
        if not self._replies and self._lost is None:
            # One timer per reply, rather than asyncio.timeout, which costs about three times as
            # much: this runs three times for every letter.
            loop = asyncio.get_running_loop()
            timer = loop.call_later(timeout, self._time_out)
            try:
                while not self._replies and self._lost is None:
                    if self._late:
                        raise TimeoutError
                    self._waiter = loop.create_future()
                    try:
                        await self._waiter
                    finally:
                        self._waiter = None
            finally:
                timer.cancel()
                self._late = False
        if self._replies:
            reply = self._replies.popleft()
            if isinstance(reply, _Malformed):
                raise reply
            return reply
        assert self._lost is not None
        raise EOFError("connection lost") from self._lost

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
