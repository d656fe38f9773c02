"""Sender behaviour that mutation testing found unpinned, each against a server behaving that way."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from mailaction import ratelimit
from mailaction import sender as sender_module
from mailaction.config import Rate, SMTPConfig, parse_rate
from mailaction.deliverylog import DeliveryLog, Outcome, State
from mailaction.errors import SMTPSetupError
from mailaction.message import Letter
from mailaction.sender import (
    MAX_PUT_BACK,
    RATE_MARGIN,
    Sender,
    _domains,
    _Signal,
    _with_margin,
    check_server,
)
from mailaction.transport import Unavailable, open_connection
from tests.letters import letter, letters
from tests.smtpserver import (
    FaultServer,
    FaultSession,
    deliver_then_drop,
    drop,
    reject_recipient,
    reply,
    reply_421_staying_open,
    slow,
)
from tests.test_sender import entry, send, sending_config, smtp_config, states


class CommitAfterLog(DeliveryLog):
    """A delivery log whose first commit waits until ``ready`` is set (at most 5 s).

    The sender commits a letter's ``sending`` mark just before it writes the data, so a test
    can let the server act first at that very moment.
    """

    def __init__(self, path: Path, ready: threading.Event) -> None:
        super().__init__(path, "test")
        self.ready = ready

    def flush(self) -> None:
        if not self.ready.is_set():
            self.ready.wait(5)
            time.sleep(0.05)  # the close reaches this side of the connection
        super().flush()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[DeliveryLog]:
    with DeliveryLog(tmp_path / "log.sqlite", "test") as opened:
        yield opened


async def reply_354_then_close(session: FaultSession, arg: str | None) -> str | None:
    """At DATA: invite the data, then close the connection before any of it comes."""
    await session.push("354 End data with <CR><LF>.<CR><LF>")
    assert session.transport is not None
    session.transport.write_eof()  # the close follows the 354 at once, in the same stream
    return await drop(session, arg)


class CountingLog(DeliveryLog):
    """A delivery log that counts its commits (the sender commits before every wait)."""

    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


# --- the wiring of the limits ---


async def test_the_per_domain_rate_spaces_the_letters_to_one_domain(log: DeliveryLog) -> None:
    # 9 letters to example.org at 4 a second: 8 intervals of a quarter second, at least 2 s.
    # Without the per-domain limit, 4 connections send them in a fraction of a second.
    with FaultServer() as server:
        await send(server, log, letters(9), concurrency=4, per_domain_rate=parse_rate("4/s"))
    arrivals = sorted(message.at for message in server.messages)
    assert len(arrivals) == 9
    assert arrivals[-1] - arrivals[0] >= 1.9


async def test_waiting_for_a_domain_slot_sleeps_until_it_is_due(tmp_path: Path) -> None:
    # 3 letters to one domain at 2 a second: the worker waits twice, half a second each time,
    # committing the log once before each wait; it does not wake and look again meanwhile.
    batch = letters(3)
    with CountingLog(tmp_path / "log.sqlite", "test") as log, FaultServer() as server:
        summary = await send(server, log, batch, per_domain_rate=parse_rate("2/s"))
        flushes = log.flushes
    assert summary.sent == 3
    assert flushes < 20


async def test_a_letter_the_server_slows_down_goes_first_when_it_allows(
    log: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two connections, letters 0..4 to one domain (its limit keeps the rest queued while one
    # is being taken). Letter 0's MAIL FROM is refused for the server's rate: it goes back to
    # the front of the queue, before letters 2, 3 and 4, not behind them.
    monkeypatch.setattr(ratelimit, "SLOW_DOWN_WINDOW", 0.05)
    batch = letters(5)
    with FaultServer() as server:
        server.on("MAIL", reply("450 4.7.1 Error: too much mail from 127.0.0.1"), times=1)
        summary = await send(
            server, log, batch, concurrency=2, per_domain_rate=parse_rate("1000/s")
        )
    assert (summary.sent, summary.slow_downs) == (5, 1)
    assert entry(log, batch[0]).attempts == 1
    arrived = [message.message_id for message in server.messages]
    assert [m for m in arrived if m != batch[1].message_id] == [
        batch[n].message_id for n in (0, 2, 3, 4)
    ]


async def test_a_letter_slowed_down_again_and_again_is_charged_an_attempt_at_last(
    log: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server refuses every MAIL FROM for its rate: the letter is sent back untried
    # MAX_PUT_BACK times, then the next refusal counts as its attempt (here its only one).
    monkeypatch.setattr(ratelimit, "SLOW_DOWN_WINDOW", 0.02)
    item = letter(0)
    with FaultServer() as server:
        server.on("MAIL", reply("450 4.7.1 Error: too much mail from 127.0.0.1"))
        async with asyncio.timeout(10):
            summary = await send(server, log, [item], max_retries=0)
    assert server.commands["MAIL"] == MAX_PUT_BACK + 1
    assert (summary.failed, summary.slow_downs) == (1, MAX_PUT_BACK)
    found = entry(log, item)
    assert (found.state, found.attempts, found.last_code) == (State.FAILED, 1, 450)


@pytest.mark.parametrize(
    ("refusal", "slowed_down"),
    [
        ("450 4.7.1 too much mail", True),
        ("451 4.7.1 too much mail", True),
        ("452 4.7.1 too much mail", True),
        ("452 4.3.1 insufficient system storage", False),
        ("550 4.7.1 a permanent code, whatever the text says", False),
    ],
)
async def test_only_a_4xx_4_7_x_to_mail_from_is_a_slow_down(
    log: DeliveryLog, monkeypatch: pytest.MonkeyPatch, refusal: str, slowed_down: bool
) -> None:
    # A slow-down costs the letter no attempt; any other refusal is an attempt (retried or not).
    monkeypatch.setattr(ratelimit, "SLOW_DOWN_WINDOW", 0.02)
    item = letter(0)
    with FaultServer() as server:
        server.on("MAIL", reply(refusal), times=1)
        summary = await send(server, log, [item])
    assert summary.slow_downs == (1 if slowed_down else 0)
    expected = (State.SENT, 1) if slowed_down else (State.SENT, 2)
    if refusal.startswith("5"):
        expected = (State.FAILED, 1)
    assert (entry(log, item).state, entry(log, item).attempts) == expected


# --- replies before the data ---


async def test_check_server_gives_up_on_a_silent_server_after_the_timeout() -> None:
    with FaultServer() as server:
        server.on("GREETING", slow(3))
        with pytest.raises(SMTPSetupError, match="no reply to connect within 0.3 s"):
            await check_server(smtp_config(server), sending_config(timeout=0.3), None)


@pytest.mark.parametrize(
    ("refusal", "state", "attempts"),
    [("400 4.0.0 try again later", State.SENT, 2), ("500 5.5.2 syntax error", State.FAILED, 1)],
)
async def test_the_bounds_of_a_temporary_refusal(
    log: DeliveryLog, refusal: str, state: State, attempts: int
) -> None:
    item = letter(0)
    with FaultServer() as server:
        server.on("RCPT", reply(refusal), times=1)
        await send(server, log, [item])
    assert (entry(log, item).state, entry(log, item).attempts) == (state, attempts)


@pytest.mark.parametrize(
    ("refusal", "state", "received"),
    [("554 5.5.1 Error: no valid recipients", State.FAILED, 0), ("451 4.3.0 try later", State.SENT, 1)],
)
async def test_a_server_refusing_data_without_pipelining(
    log: DeliveryLog, refusal: str, state: State, received: int
) -> None:
    first, second = letter(0), letter(1)
    with FaultServer(pipelining=False) as server:
        server.on("DATA", reply(refusal), times=1)
        summary = await send(server, log, [first, second])
    assert entry(log, first).state is state
    assert entry(log, second).state is State.SENT
    assert server.received_ids()[first.message_id] == received
    assert server.received_ids()[second.message_id] == 1
    assert server.commands["RSET"] == 1 and server.connections == 1  # reset, then reused
    if state is State.FAILED:
        assert (entry(log, first).last_code, entry(log, first).last_reply) == (
            554, "5.5.1 Error: no valid recipients"
        )  # fmt: skip
        assert (summary.sent, summary.failed) == (1, 1)


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
async def test_421_at_rcpt_closes_and_retries_on_a_new_connection(
    log: DeliveryLog, pipelining: bool
) -> None:
    item = letter(0)
    with FaultServer(pipelining=pipelining) as server:
        server.on("RCPT", reply("421 4.3.2 shutting down"), times=1)
        summary = await send(server, log, [item])
    assert (summary.sent, summary.failed, summary.uncertain) == (1, 0, 0)
    assert server.received_ids() == Counter({item.message_id: 1})
    assert server.connections == 2 and server.commands["RSET"] == 0
    assert entry(log, item).attempts == 2


async def test_421_at_rcpt_keeps_the_server_reply_when_retries_run_out(log: DeliveryLog) -> None:
    item = letter(0)
    with FaultServer() as server:
        server.on("RCPT", reply("421 4.3.2 shutting down"))
        await send(server, log, [item], max_retries=0)
    found = entry(log, item)
    assert (found.state, found.last_code, found.last_reply) == (
        State.FAILED, 421, "4.3.2 shutting down"
    )  # fmt: skip
    assert server.messages == []


@pytest.mark.parametrize(("size_limit", "offered"), [(None, False), (10_000, True)])
async def test_size_is_declared_only_to_a_server_that_offers_it(
    log: DeliveryLog, size_limit: int | None, offered: bool
) -> None:
    item = letter(0, body=("x" * 70 + "\r\n") * 70)
    mail_arguments: list[str] = []

    async def record(session: FaultSession, arg: str | None) -> str | None:
        mail_arguments.append(arg or "")
        return None

    with FaultServer(size_limit=size_limit) as server:
        server.on("MAIL", record)
        summary = await send(server, log, [item])
    assert summary.sent == 1 and server.received_ids() == Counter({item.message_id: 1})
    declared = [part for part in mail_arguments[0].split() if part.startswith("SIZE=")]
    assert declared == ([f"SIZE={len(item.data)}"] if offered else [])


# --- pause_after_failures ---


def refuse_recipients(numbers: set[int]) -> object:
    """At RCPT: 550 for the letters numbered ``numbers`` (to p<n>@example.org)."""
    refused = {f"<p{n}@example.org>" for n in numbers}

    async def refuse(session: FaultSession, arg: str | None) -> str | None:
        address = (arg or "").partition(":")[2].strip().lower()
        return "550 5.1.1 no such user" if address in refused else None

    return refuse


async def test_the_failure_streak_restarts_after_each_letter_sent(log: DeliveryLog) -> None:
    # Letters 0..10: two failures, sent, two failures, sent, three failures: the pause comes
    # exactly at the third failure in a row (letter 8), never one early, and 9, 10 wait.
    batch = letters(11)
    with FaultServer() as server:
        server.on("RCPT", refuse_recipients({0, 1, 3, 4, 6, 7, 8}))  # type: ignore[arg-type]
        summary = await send(server, log, batch, pause_after_failures=3)
    assert (summary.sent, summary.failed, summary.deferred, summary.uncertain) == (2, 7, 0, 0)
    assert summary.stopped_reason is not None
    assert summary.stopped_reason.startswith("paused after 3 failures in a row")
    assert server.received_ids() == Counter({batch[2].message_id: 1, batch[5].message_id: 1})
    assert states(log) == Counter({State.FAILED: 7, State.SENT: 2, State.PENDING: 2})
    assert entry(log, batch[9]).state is State.PENDING


async def test_failures_one_short_of_the_limit_never_pause(log: DeliveryLog) -> None:
    batch = letters(6)
    with FaultServer() as server:
        server.on("RCPT", refuse_recipients({0, 1, 3, 4}))  # type: ignore[arg-type]
        summary = await send(server, log, batch, pause_after_failures=3)
    assert summary.stopped_reason is None
    assert (summary.sent, summary.failed) == (2, 4)
    assert states(log) == Counter({State.FAILED: 4, State.SENT: 2})


async def test_connections_lost_before_the_data_pause_the_run(log: DeliveryLog) -> None:
    # The server hangs up at every MAIL FROM: nothing was sent, the letters are deferred
    # without a reply code, and that is a vanishing server, which counts toward the pause.
    with FaultServer() as server:
        server.on("MAIL", drop)
        summary = await send(server, log, letters(6), pause_after_failures=3)
    assert summary.stopped_reason is not None
    assert summary.stopped_reason.startswith("paused after 3 failures in a row")
    assert summary.deferred == 3 and server.messages == []


async def test_letters_ending_uncertain_do_not_pause_the_run(log: DeliveryLog) -> None:
    # Each letter's data is taken, then the connection drops before the reply: uncertain, not
    # a failure; the run goes on to the end.
    batch = letters(4)
    with FaultServer() as server:
        server.on("DATA_END", deliver_then_drop)
        summary = await send(server, log, batch, pause_after_failures=2)
    assert summary.stopped_reason is None
    assert summary.uncertain == 4
    assert states(log) == Counter({State.UNCERTAIN: 4})


# --- a connection lost between the 354 and the data ---
# Through the sender the close races the data (the client may write before it sees the close);
# the transport is given the moment it writes by its ``before_write``, which waits for it here.


async def test_the_transport_writes_nothing_to_a_connection_lost_after_the_354() -> None:
    with FaultServer() as server:
        server.on("DATA", reply_354_then_close, times=1)
        config = SMTPConfig(host="127.0.0.1", port=server.port, security="none")
        connection = await open_connection(config, 5.0, None, "client.example.org")
        replies = await connection.envelope(
            [b"MAIL FROM:<a@example.org>", b"RCPT TO:<b@example.org>", b"DATA"]
        )
        assert [reply.code for reply in replies] == [250, 250, 354]

        async def until_closed() -> None:
            async with asyncio.timeout(10):
                while connection.is_open:
                    await asyncio.sleep(0.01)

        with pytest.raises(Unavailable) as lost:
            await connection.data(b"Subject: hi\r\n\r\nhello\r\n", until_closed)
        assert lost.value.code is None and lost.value.step == "DATA"
    assert server.messages == []


async def test_a_connection_lost_after_the_354_before_the_data_ends_deferred_and_is_retried(
    tmp_path: Path,
) -> None:
    # The server invites the data and closes; the sender commits the letter's mark only after
    # the close came. Nothing was written: deferred (not uncertain), and sent on a new connection.
    closed = threading.Event()

    async def invite_then_close(session: FaultSession, arg: str | None) -> str | None:
        await session.push("354 End data with <CR><LF>.<CR><LF>")
        assert session.transport is not None
        session.transport.write_eof()
        closed.set()
        return await drop(session, arg)

    item = letter(0)
    told: list[Outcome] = []
    with CommitAfterLog(tmp_path / "log.sqlite", closed) as log, FaultServer() as server:
        server.on("DATA", invite_then_close, times=1)
        log.register(item)
        sender = Sender(smtp_config(server), sending_config(), log)
        summary = await sender.send([item], on_outcome=lambda _, outcome: told.append(outcome))
        found = entry(log, item)
    assert [outcome.state for outcome in told] == [State.DEFERRED, State.SENT]
    assert (told[0].code, told[0].reply) == (None, "the server closed the connection at DATA")
    assert (summary.sent, summary.deferred, summary.uncertain) == (1, 0, 0)
    assert (found.state, found.attempts) == (State.SENT, 2)
    assert server.connections == 2
    assert [message.connection for message in server.messages] == [2]


# --- stopping ---


async def test_a_signal_wakes_a_task_still_waiting_after_another_stopped_waiting() -> None:
    signal = _Signal()
    impatient = asyncio.create_task(signal.wait(0.01))
    patient = asyncio.create_task(signal.wait(None))
    await impatient
    signal.notify()
    async with asyncio.timeout(5):
        await patient


async def test_a_stop_while_a_retry_waits_ends_the_run_at_once(log: DeliveryLog) -> None:
    # Both letters are refused for now and their retries fall due about a minute on; the stop
    # comes while the worker waits for them. The run ends at once (the bound is for a busy
    # machine), the letters left deferred for the next run, the connection closed politely.
    stop = asyncio.Event()
    batch = letters(2)
    loop = asyncio.get_running_loop()
    deferred: list[Outcome] = []

    def stop_soon(_: object, outcome: Outcome) -> None:
        deferred.append(outcome)
        if len(deferred) == 2:
            loop.call_later(0.2, stop.set)  # the worker is waiting for the retries by then

    with FaultServer() as server:
        server.on("RCPT", reply("451 4.3.0 try later"))
        for item in batch:
            log.register(item)
        sender = Sender(smtp_config(server), sending_config(retry_delay=60.0), log)
        started = time.monotonic()
        async with asyncio.timeout(10):
            summary = await sender.send(batch, on_outcome=stop_soon, stop=stop)
        elapsed = time.monotonic() - started
    assert elapsed < 10
    assert (summary.deferred, summary.sent, summary.failed) == (2, 0, 0)
    assert states(log) == Counter({State.DEFERRED: 2})
    assert {entry(log, item).attempts for item in batch} == {1}
    assert server.commands["RCPT"] == 2 and server.commands["QUIT"] == 1


# --- replies after the data, and what MAIL FROM declares ---


async def test_a_421_after_the_data_closes_the_connection_even_if_the_server_does_not(
    log: DeliveryLog,
) -> None:
    # 421 means the server is closing the session: the letter is retried on a new connection,
    # never on this one after an RSET.
    first, second = letter(0), letter(1)
    with FaultServer() as server:
        server.on("DATA_END", reply_421_staying_open("421 4.3.2 shutting down"), times=1)
        summary = await send(server, log, [first, second])
    assert (summary.sent, summary.failed) == (2, 0)
    assert (entry(log, first).state, entry(log, first).attempts) == (State.SENT, 2)
    assert server.commands["RSET"] == 0
    assert {message.connection for message in server.messages} == {2}



async def test_any_2xx_after_the_data_is_sent(log: DeliveryLog) -> None:
    item = letter(0)
    with FaultServer() as server:
        server.on("DATA_END", reply("200 2.0.0 accepted"))
        summary = await send(server, log, [item])
    assert (summary.sent, summary.failed, summary.uncertain) == (1, 0, 0)
    assert (entry(log, item).state, entry(log, item).last_code) == (State.SENT, 200)


@pytest.mark.parametrize(("body", "declared"), [("plain text\r\n", False), ("Grüße\r\n", True)])
async def test_8bitmime_is_declared_only_for_a_letter_that_is_not_ascii(
    log: DeliveryLog, body: str, declared: bool
) -> None:
    item = letter(0, body=body)
    mail_arguments: list[str] = []

    async def record(session: FaultSession, arg: str | None) -> str | None:
        mail_arguments.append(arg or "")
        return None

    with FaultServer() as server:
        server.on("MAIL", record)
        summary = await send(server, log, [item])
    assert summary.sent == 1
    assert ("BODY=8BITMIME" in mail_arguments[0].split()) is declared


async def test_a_retry_ending_uncertain_keeps_the_refusals_of_the_first_attempt(
    log: DeliveryLog,
) -> None:
    # ok@ gets the letter, full@ is refused for now (452), gone@ for good (550); the retry for
    # full@ loses the reply after the data: uncertain, and gone@'s refusal is still recorded.
    seen: list[str | None] = []

    async def full_once_gone_always(session: FaultSession, arg: str | None) -> str | None:
        seen.append(arg)
        if arg is not None and "<gone@" in arg:
            return "550 5.1.1 no such user"
        return "452 4.2.2 mailbox full" if "<full@" in (arg or "") and seen.count(arg) == 1 else None

    async def normally(session: FaultSession, arg: str | None) -> str | None:
        return None

    item = letter(1, recipients=("ok@example.org", "full@example.org", "gone@example.org"))
    with FaultServer() as server:
        server.on("RCPT", full_once_gone_always)
        server.on("DATA_END", normally, times=1)
        server.on("DATA_END", deliver_then_drop)
        log.register(item)
        told: list[Outcome] = []
        sender = Sender(smtp_config(server), sending_config(), log)
        await sender.send([item], on_outcome=lambda _, outcome: told.append(outcome))
    found = entry(log, item)
    assert (found.state, found.attempts) == (State.UNCERTAIN, 2)
    assert found.refused == {"gone@example.org": "550 5.1.1 no such user"}
    # What the progress callback heard: the retry scheduled, with both refusals, then the end.
    assert [outcome.state for outcome in told] == [State.DEFERRED, State.UNCERTAIN]
    assert set(told[0].refused) == {"full@example.org", "gone@example.org"}


async def test_a_retry_refused_for_good_keeps_the_letter_sent_with_the_reply_code(
    log: DeliveryLog,
) -> None:
    # ok@ gets the letter; a@ and b@ are refused for now (452), then for good (550) on the retry.
    async def for_now_then_for_good(session: FaultSession, arg: str | None) -> str | None:
        if arg is None or "<ok@" in arg:
            return None
        return "550 5.1.1 no such user" if session.server.messages else "452 4.2.2 mailbox full"

    item = letter(1, recipients=("ok@example.org", "a@example.org", "b@example.org"))
    with FaultServer() as server:
        server.on("RCPT", for_now_then_for_good)
        log.register(item)
        told: list[Outcome] = []
        sender = Sender(smtp_config(server), sending_config(), log)
        await sender.send([item], on_outcome=lambda _, outcome: told.append(outcome))
    assert [outcome.state for outcome in told] == [State.DEFERRED, State.SENT]
    assert told[0].reply == (
        "sent to the other recipients; a@example.org, b@example.org refused for now, tried again"
    )
    found = entry(log, item)
    assert (found.state, found.attempts, found.last_code) == (State.SENT, 2, 550)
    assert found.last_reply == (
        "sent to the other recipients; every recipient refused:"
        " a@example.org: 550 5.1.1 no such user; b@example.org: 550 5.1.1 no such user"
    )
    assert set(found.refused) == {"a@example.org", "b@example.org"}
    assert server.received_ids() == Counter({item.message_id: 1})


async def test_a_retry_accepted_keeps_the_letter_sent_with_the_servers_code(
    log: DeliveryLog,
) -> None:
    # ok@ gets the letter; full@ is refused for now (452), then accepted on the retry.
    item = letter(1, recipients=("ok@example.org", "full@example.org"))
    with FaultServer() as server:
        # The first two RCPTs, ok@'s and full@'s: full@ is refused, once.
        server.on("RCPT", reject_recipient("full@example.org", "452 4.2.2 mailbox full"), times=2)
        await send(server, log, [item])
    found = entry(log, item)
    assert (found.state, found.attempts, found.last_code) == (State.SENT, 2, 250)
    assert found.refused == {}
    assert server.received_ids() == Counter({item.message_id: 2})  # ok@'s copy, then full@'s


async def test_a_letter_ending_uncertain_keeps_the_refusals_of_its_envelope(
    log: DeliveryLog,
) -> None:
    item = letter(1, recipients=("ok@example.org", "gone@example.org"))
    with FaultServer() as server:
        server.on("RCPT", reject_recipient("gone@example.org", "550 5.1.1 no such user"))
        server.on("DATA_END", deliver_then_drop)
        await send(server, log, [item])
    found = entry(log, item)
    assert (found.state, found.attempts) == (State.UNCERTAIN, 1)
    assert found.refused == {"gone@example.org": "550 5.1.1 no such user"}


async def test_a_letter_of_exactly_the_size_a_server_accepts_goes(log: DeliveryLog) -> None:
    # aiosmtpd counts the data as it arrives, dot-stuffed: this server only announces its SIZE.
    item = letter(0)

    async def announce_size(session: FaultSession, arg: str | None) -> str | None:
        assert session.session is not None
        session.session.host_name = arg
        session.session.extended_smtp = True
        return f"250-faults.test\r\n250-SIZE {len(item.data)}\r\n250 HELP"

    with FaultServer(size_limit=None) as server:
        server.on("EHLO", announce_size)
        summary = await send(server, log, [item])
    assert summary.sent == 1 and server.received_ids() == Counter({item.message_id: 1})


async def test_a_stop_while_a_letter_waits_for_its_slot_keeps_it_from_going(
    log: DeliveryLog,
) -> None:
    # One letter a second: the second waits for its slot when the stop comes; it stays pending.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def stop_soon(_: object, outcome: Outcome) -> None:
        loop.call_later(0.3, stop.set)

    batch = letters(3)
    with FaultServer() as server:
        for item in batch:
            log.register(item)
        settings = sending_config(rate=parse_rate("1/s"))
        summary = await Sender(smtp_config(server), settings, log).send(
            batch, on_outcome=stop_soon, stop=stop
        )
    assert summary.sent == 1 and len(server.messages) == 1
    assert states(log) == Counter({State.SENT: 1, State.PENDING: 2})


async def test_the_outcomes_so_far_are_committed_before_waiting_for_a_slot(
    tmp_path: Path,
) -> None:
    # Two letters a second: while the second waits for its slot, another connection to the
    # log already sees the first as sent.
    seen: list[State] = []
    path = tmp_path / "log.sqlite"
    loop = asyncio.get_running_loop()

    def look(item: object, outcome: Outcome) -> None:
        def read() -> None:
            with DeliveryLog(path, "test") as other:
                found = other.get(batch[0].contact_id)
                assert found is not None
                seen.append(found.state)

        if not seen and outcome.state is State.SENT:
            loop.call_later(0.15, read)

    batch = letters(2)
    with DeliveryLog(path, "test") as log, FaultServer() as server:
        for item in batch:
            log.register(item)
        log.flush()
        settings = sending_config(rate=parse_rate("2/s"))
        await Sender(smtp_config(server), settings, log).send(batch, on_outcome=look)
    assert seen == [State.SENT]


async def test_a_retry_for_the_recipients_left_that_meets_a_lost_connection_is_tried_again(
    log: DeliveryLog,
) -> None:
    # ok@ gets the letter, full@ is refused for now; the retry for full@ loses the connection
    # at RCPT, before the data, so full@ is tried once more, and gets it.
    item = letter(1, recipients=("ok@example.org", "full@example.org"))
    with FaultServer() as server:
        full: list[str | None] = []

        async def full_then_lost(session: FaultSession, arg: str | None) -> str | None:
            if "<full@" not in (arg or ""):
                return None
            full.append(arg)
            if len(full) == 1:
                return "452 4.2.2 mailbox full"
            return await drop(session, arg) if len(full) == 2 else None

        server.on("RCPT", full_then_lost)
        await send(server, log, [item])
    found = entry(log, item)
    assert (found.state, found.attempts, found.refused) == (State.SENT, 3, {})
    assert [message.recipients for message in server.messages] == [
        ("ok@example.org",), ("full@example.org",)
    ]


def test_the_rate_margin_slows_the_configured_rate_never_speeds_it() -> None:
    assert _with_margin(parse_rate("200/s")) == Rate(200, RATE_MARGIN)
    assert _with_margin(None) is None


def test_the_domain_of_an_address_is_after_its_last_at() -> None:
    item = letter(0, recipients=('"a@b"@Example.org', "c@example.net"))
    assert list(_domains(item)) == ["Example.org", "example.net"]


async def test_the_letters_read_ahead_stop_at_the_bytes_bound(
    log: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # With room for three letters' data, waiting for the domain's next slot reads at most three
    # letters ahead, not every letter there is.
    batch = letters(10)
    monkeypatch.setattr(sender_module, "LOOKAHEAD_BYTES", 3 * len(batch[0].data))
    pulled: list[int] = []
    read_when_told: list[int] = []

    def reading() -> Iterator[Letter]:
        for item in batch:
            pulled.append(item.row)
            yield item

    with FaultServer() as server:
        for item in batch:
            log.register(item)
        settings = sending_config(per_domain_rate=parse_rate("10/s"))
        async with asyncio.timeout(10):
            summary = await Sender(smtp_config(server), settings, log).send(
                reading(), on_outcome=lambda *_: read_when_told.append(len(pulled))
            )
    assert summary.sent == 10
    assert max(read_when_told[:3]) <= 5


@pytest.mark.parametrize("cut", ["\r\n", "\n", "\0"], ids=["CRLF", "LF", "NUL"])
async def test_an_address_with_a_control_character_fails_that_letter_before_any_command(
    log: DeliveryLog, cut: str
) -> None:
    # A line break in an address would let it add commands of its own (SMTP injection).
    bad = letter(0, recipients=(f"a@example.org>{cut}RCPT TO:<b@example.org",))
    good = letter(1)
    with FaultServer() as server:
        await send(server, log, [bad, good])
    found = entry(log, bad)
    assert (found.state, found.attempts) == (State.FAILED, 1)
    assert found.last_reply == "control character in an address"
    assert server.commands["MAIL"] == server.commands["RCPT"] == 1
    assert server.received_ids() == Counter({good.message_id: 1})


async def test_a_limiter_given_to_the_sender_is_asked_for_every_letter(log: DeliveryLog) -> None:
    # The rates shared by several processes (`sharedlimit`) take the place of the local ones.
    asked: list[list[str]] = []

    class Shared:
        async def acquire(self, domains: Iterable[str]) -> None:
            asked.append(list(domains))

    batch = [letter(0), letter(1, recipients=("x@example.net",))]
    with FaultServer() as server:
        for item in batch:
            log.register(item)
        settings = sending_config(rate=parse_rate("1/h"))  # kept by the shared limiter instead
        async with asyncio.timeout(10):
            summary = await Sender(smtp_config(server), settings, log, limiter=Shared()).send(batch)
    assert summary.sent == 2
    assert asked == [["example.org"], ["example.net"]]


class CheckpointCountingLog(DeliveryLog):
    """A delivery log counting its commits and the checkpoints asked of it."""

    commits = 0
    checkpoints = 0

    def _commit(self) -> None:
        self.commits += 1
        super()._commit()

    def checkpoint(self) -> None:
        self.checkpoints += 1
        super().checkpoint()


async def test_sending_marks_of_letters_going_out_together_share_a_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sender_module, "CHECKPOINT_EVERY", 20)
    batch = letters(120)
    with CheckpointCountingLog(tmp_path / "log.sqlite", "test") as counted, FaultServer(pipelining=True) as server:
        for item in batch:
            counted.register(item)
        counted.flush()
        before = counted.commits
        summary = await send(server, counted, batch, concurrency=8)
        commits = counted.commits - before
        assert summary.sent == 120
        assert commits < 100  # one per letter (and its outcome) would be 120 or more
        assert counted.checkpoints >= 1  # the WAL copied out from a thread, every 20 marks


# --- queues per domain ---


async def test_a_domain_waiting_for_its_slot_lets_a_free_domain_go_first(
    log: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Read two letters ahead: example.org's second letter is first in line when example.net's
    # is read, and its slot is half a second away; the one connection takes example.net's.
    monkeypatch.setattr(sender_module, "LOOKAHEAD", 2)
    batch = [
        letter(n, recipients=(f"p{n}@{domain}",))
        for n, domain in enumerate(["example.org", "example.org", "example.net"])
    ]
    with FaultServer() as server:
        started = time.monotonic()
        await send(server, log, batch, concurrency=1, per_domain_rate=parse_rate("2/s"))
    order = [message.recipients[0] for message in server.messages]
    assert order == ["p0@example.org", "p2@example.net", "p1@example.org"]
    assert server.messages[1].at - started < 0.3  # not after example.org's slot
    assert server.messages[2].at - server.messages[0].at >= 0.45


# --- what a retry leaves in the log ---


async def test_a_letter_refused_for_now_to_the_end_keeps_its_refusals(log: DeliveryLog) -> None:
    item = letter(1, recipients=("a@example.org", "b@example.org"))
    with FaultServer() as server:
        server.on("RCPT", reply("452 4.2.2 mailbox full"))
        await send(server, log, [item], max_retries=1)
    found = entry(log, item)
    assert (found.state, found.attempts, found.last_code) == (State.FAILED, 2, 452)
    assert found.refused == {
        "a@example.org": "452 4.2.2 mailbox full",
        "b@example.org": "452 4.2.2 mailbox full",
    }


async def test_a_letter_sent_to_some_and_retried_for_the_others_is_no_failure(
    log: DeliveryLog,
) -> None:
    # full@ is refused for now once: the letter is sent to ok@ and retried for full@. That is
    # not a failure of the run, even with pause_after_failures = 1.
    batch = [letter(0, recipients=("ok@example.org", "full@example.org")), *letters(3)[1:]]
    with FaultServer() as server:
        # The first two RCPTs, ok@'s and full@'s: full@ is refused, once.
        server.on("RCPT", reject_recipient("full@example.org", "452 4.2.2 mailbox full"), times=2)
        summary = await send(server, log, batch, pause_after_failures=1)
    assert summary.stopped_reason is None
    assert states(log) == Counter({State.SENT: 3})


async def test_a_letter_due_for_its_retry_goes_before_the_letters_read_ahead(
    log: DeliveryLog,
) -> None:
    # p0 is refused for now once; its retry falls due while p1..p9 wait in their domain's
    # queue for the per-domain rate, and goes before them, not after the last.
    batch = letters(10)
    with FaultServer() as server:
        server.on("RCPT", reply("451 4.3.0 try later"), times=1)  # the first RCPT: p0's
        await send(server, log, batch, retry_delay=0.01, per_domain_rate=parse_rate("20/s"))
    order = [message.recipients[0] for message in server.messages]
    assert len(order) == 10
    assert order.index("p0@example.org") <= 2


async def test_the_global_rate_holds_beside_a_per_domain_rate(log: DeliveryLog) -> None:
    # The per-domain rate would allow them all at once; the global one spaces them: the letter
    # waiting for a global slot waits with its domains.
    batch = letters(12)
    with FaultServer() as server:
        started = time.monotonic()
        await send(
            server, log, batch, concurrency=4, rate=parse_rate("10/s"),
            per_domain_rate=parse_rate("100/s"),
        )  # fmt: skip
    times = sorted(message.at - started for message in server.messages)
    assert len(times) == 12
    assert max(sum(1 for t in times if start <= t < start + 1.0) for start in times) <= 10
    assert times[-1] >= 1.0  # twelve letters at 10/s take over a second
