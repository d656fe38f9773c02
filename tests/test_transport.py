"""The SMTP conversation module: replies parsed strictly, kept in order, the hand-over from aiosmtplib."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib.metadata import version

import pytest

from mailaction.config import SMTPConfig
from mailaction.transport import (
    Connection,
    Reply,
    Unavailable,
    Uncertain,
    _Malformed,
    _ReplyReader,
    open_connection,
)
from tests.smtpserver import FaultServer, FaultSession, drop

Connect = Callable[[], Awaitable[tuple[_ReplyReader, socket.socket]]]


@pytest.fixture
async def connected() -> AsyncIterator[Connect]:
    """A reply reader on one end of a socket pair, and the other end (the server's)."""
    transports: list[asyncio.BaseTransport] = []
    ends: list[socket.socket] = []

    async def connect() -> tuple[_ReplyReader, socket.socket]:
        ours, theirs = socket.socketpair()
        ends.append(theirs)
        loop = asyncio.get_running_loop()
        transport, reader = await loop.connect_accepted_socket(_ReplyReader, ours)
        transports.append(transport)
        return reader, theirs

    yield connect
    for transport in transports:
        transport.close()
    for end in ends:
        end.close()


async def test_replies_arriving_before_the_previous_one_was_read(connected: Connect) -> None:
    # As under load with PIPELINING: the next replies come before the task reads the first.
    reader, _ = await connected()
    for data in (b"250 2.1.0 sender ok\r\n", b"250 2.1.5 recipient ok\r\n", b"354 go on\r\n"):
        reader.data_received(data)
    assert await reader.read(1) == Reply(250, "2.1.0 sender ok")
    assert await reader.read(1) == Reply(250, "2.1.5 recipient ok")
    assert await reader.read(1) == Reply(354, "go on")


async def test_a_reply_split_across_packets_and_lines(connected: Connect) -> None:
    reader, _ = await connected()
    reader.data_received(b"250-first line\r\n25")
    reader.data_received(b"0-second\r\n250 last\r\n")
    assert await reader.read(1) == Reply(250, "first line second last")
    assert not reader.pending()


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"999 nonsense\r\n", "999 nonsense"),
        (b"2_5 ok\r\n", "2_5 ok"),
        (b"250-part one\r\n550 part two\r\n", "codes 250 and 550"),
        (b"hello\r\n", "hello"),
        (b"25\r\n", "25"),
    ],
)
async def test_a_malformed_reply_is_raised_and_closes_the_connection(
    connected: Connect, data: bytes, why: str
) -> None:
    reader, _ = await connected()
    reader.data_received(data)
    with pytest.raises(_Malformed, match=why):
        await reader.read(1)
    assert not reader.is_open


async def test_a_flood_of_unasked_text_closes_the_connection(connected: Connect) -> None:
    reader, _ = await connected()
    reader.data_received(b"250" + b"x" * 40_000)
    with pytest.raises(_Malformed, match="longer than 32 KiB"):
        await reader.read(1)
    assert not reader.is_open


async def test_a_reply_from_the_other_end_of_a_socket(connected: Connect) -> None:
    reader, server = await connected()
    reader.write(b"NOOP\r\n")
    assert server.recv(100) == b"NOOP\r\n"
    server.sendall(b"250 2.0.0 ok\r\n")
    assert await reader.read(1) == Reply(250, "2.0.0 ok")
    with pytest.raises(TimeoutError):
        await reader.read(0.05)
    server.close()
    with pytest.raises(EOFError):
        await reader.read(1)


async def test_the_connection_is_handed_over_from_aiosmtplib() -> None:
    # The one reliance on aiosmtplib beyond its documented API: SMTP.protocol.transport.
    with FaultServer(pipelining=True) as server:
        config = SMTPConfig(host="127.0.0.1", port=server.port, security="none")
        connection = await open_connection(config, 5.0, None, "client.example.org")
        assert connection.pipelining and connection.size_limit > 0 and connection.is_open
        replies = await connection.envelope(
            [b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.org>", b"DATA"]
        )
        assert [reply.code for reply in replies] == [250, 250, 354]

        async def nothing() -> None:
            pass

        reply = await connection.data(b"Subject: hi\r\n\r\n.dot\r\n", nothing)
        assert reply.code == 250
        await connection.quit()
        assert not connection.is_open
    assert server.messages[0].data.endswith(b".dot\r\n")
    assert server.commands["QUIT"] == 1


def test_aiosmtplib_is_the_tested_minor_release() -> None:
    assert version("aiosmtplib").startswith("5.1.")


async def waiting_for_data(server: FaultServer) -> Connection:
    """A connection to ``server`` whose envelope was accepted: the server waits for the data."""
    config = SMTPConfig(host="127.0.0.1", port=server.port, security="none")
    connection = await open_connection(config, 5.0, None, "client.example.org")
    replies = await connection.envelope(
        [b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.org>", b"DATA"]
    )
    assert replies[-1].code == 354
    return connection


async def _354_then_close(session: FaultSession, arg: str | None) -> str | None:
    """At DATA: say "go ahead", then close before any data can come."""
    await session.push("354 End data with <CR><LF>.<CR><LF>")
    assert session.transport is not None
    session.transport.close()
    never: asyncio.Future[str | None] = session.loop.create_future()
    return await never  # never done: the lost connection cancels us


async def test_a_connection_lost_before_the_data_is_written_is_unavailable_not_uncertain() -> None:
    with FaultServer() as server:
        server.on("DATA", _354_then_close)
        connection = await waiting_for_data(server)

        async def commit_slowly() -> None:  # the server's close arrives meanwhile
            await asyncio.sleep(0.2)

        with pytest.raises(Unavailable, match="closed the connection at DATA"):
            await connection.data(b"Subject: hi\r\n\r\nbody\r\n", commit_slowly)
    assert server.commands["DATA_END"] == 0 and not server.messages


async def test_a_connection_lost_after_the_data_is_uncertain() -> None:
    with FaultServer() as server:
        server.on("DATA_END", drop)
        connection = await waiting_for_data(server)

        async def nothing() -> None:
            pass

        with pytest.raises(Uncertain, match="may have arrived"):
            await connection.data(b"Subject: hi\r\n\r\nbody\r\n", nothing)
