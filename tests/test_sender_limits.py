"""The server's limits are not failures: fewer connections, a slower pace, no letter charged."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest

from mailaction import ratelimit
from mailaction.config import parse_rate
from mailaction.deliverylog import DeliveryLog, State
from tests.letters import letters
from tests.smtpserver import FaultServer, FaultSession, reject_recipient, reply, slow
from tests.test_sender import entry, fresh_log, send, smtp_config, states

log = pytest.fixture(fresh_log)


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
async def test_a_server_allowing_2_connections_gets_every_letter_and_charges_none(
    log: DeliveryLog, pipelining: bool
) -> None:
    batch = letters(60)
    with FaultServer(max_connections=2, pipelining=pipelining) as server:
        summary = await send(server, log, batch, concurrency=8, pause_after_failures=3)
    assert summary.sent == 60 and summary.stopped_reason is None
    assert server.received_ids() == Counter({item.message_id: 1 for item in batch})
    assert {entry(log, item).attempts for item in batch} == {1}
    assert server.most_open_connections == 2
    # One wave of refusals halves the 8 connections to 4, the next to 2; then no more.
    assert 1 <= server.refused_connections <= 8
    assert summary.refused_connections == server.refused_connections


async def test_refusals_answered_late_bring_no_reconnection_storm(log: DeliveryLog) -> None:
    # Eight connections, two taken; the six refused answer 0.3 s later, as one wave. The next
    # try waits a second from then, so in the 1.5 s the letters take there are two waves at most.
    batch = letters(60)
    with FaultServer(max_connections=2, refusal_delay=0.3) as server:
        server.on("DATA_END", slow(0.05))
        summary = await send(server, log, batch, concurrency=8)
    assert summary.sent == 60
    assert server.received_ids() == Counter({item.message_id: 1 for item in batch})
    assert 6 <= server.refused_connections <= 8


async def test_a_refused_connection_waits_before_the_next_try(log: DeliveryLog) -> None:
    with FaultServer(max_connections=1) as server:
        started = time.monotonic()
        summary = await send(server, log, letters(30), concurrency=4)
        elapsed = time.monotonic() - started
    assert summary.sent == 30
    assert server.refused_connections <= 4  # no storm of reconnections
    assert elapsed < 5


async def test_after_a_refusal_the_run_keeps_to_the_connections_that_worked(
    log: DeliveryLog,
) -> None:
    # One connection allowed, two tried: the refused one is not tried again while the run
    # lasts (3 s, three times the wait after a refusal), since one connection is working. The
    # refusal comes once that connection is open, so that it counts as working.
    with FaultServer(max_connections=1, refusal_delay=0.3) as server:
        server.on("DATA_END", slow(0.1))
        batch = letters(30)
        summary = await send(server, log, batch, concurrency=2)
    assert summary.sent == 30
    assert server.refused_connections == 1
    assert server.most_open_connections == 1
    # The refusal charged no letter: the one taken for the refused connection was put back.
    assert {entry(log, item).attempts for item in batch} == {1}


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
async def test_a_message_rate_limit_slows_the_run_instead_of_failing_letters(
    log: DeliveryLog, monkeypatch: pytest.MonkeyPatch, pipelining: bool
) -> None:
    # Postfix's anvil at 100 a minute, scaled down: 20 letters per 2 s.
    monkeypatch.setattr(ratelimit, "SLOW_DOWN_WINDOW", 2.0)
    batch = letters(60)
    with FaultServer(message_rate=(20, 2.0), pipelining=pipelining) as server:
        started = time.monotonic()
        summary = await send(server, log, batch, concurrency=4, pause_after_failures=3)
        elapsed = time.monotonic() - started
    assert summary.sent == 60 and summary.stopped_reason is None
    assert server.received_ids() == Counter({item.message_id: 1 for item in batch})
    assert {entry(log, item).attempts for item in batch} == {1}
    assert states(log) == Counter({State.SENT: 60})
    # The run learnt the pace after the first refusals, not by refusing every window.
    assert 1 <= server.refused_messages <= 12
    assert summary.slow_downs == server.refused_messages
    # 20 at once, then 40 at 10/s: about 6 s; never the minutes of per-letter backoff.
    assert elapsed < 10
    # A refused MAIL FROM costs at most the RCPT and DATA pipelined with it (two 503s): no
    # errors pile up beyond its own transaction. (Several connections may be refused at once.)
    assert sum(text.startswith("503") for text in server.replies) <= 2 * server.refused_messages


async def test_the_connections_grow_back_when_the_server_allows(
    log: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ratelimit, "PROBE_AFTER", 0.2)
    with FaultServer(max_connections=2, pipelining=True) as server:
        server.on("DATA_END", slow(0.02))
        summary = await send(server, log, letters(80), concurrency=4)
    assert summary.sent == 80
    # Probing up again finds the limit again now and then, but never floods it.
    assert 2 <= server.refused_connections <= 12


async def test_a_server_refusing_every_connection_pauses_the_run(log: DeliveryLog) -> None:
    with FaultServer() as server:
        server.on("GREETING", reply("421 4.3.2 service not available"))
        summary = await send(server, log, letters(5), pause_after_failures=2, retry_delay=30.0)
    assert summary.stopped_reason is not None
    assert "421 connect refused for now" in summary.stopped_reason
    assert states(log) == Counter({State.DEFERRED: 2, State.PENDING: 3})


@pytest.mark.parametrize("refusal_delay", [0.0, 0.3], ids=["refused-at-once", "refused-late"])
async def test_both_limits_at_once_as_postfix_anvil_keeps_them(
    log: DeliveryLog, monkeypatch: pytest.MonkeyPatch, refusal_delay: float
) -> None:
    # Refused late, the connections beyond two come back after the first two are working: the
    # wave of six refusals is one, and its wait one second, not 32 (1 + 2 + ... per refusal).
    monkeypatch.setattr(ratelimit, "SLOW_DOWN_WINDOW", 2.0)
    batch = letters(60)
    with FaultServer(
        max_connections=2, refusal_delay=refusal_delay, message_rate=(20, 2.0), pipelining=True
    ) as server:
        started = time.monotonic()
        summary = await send(server, log, batch, concurrency=8)
        elapsed = time.monotonic() - started
    assert summary.sent == 60 and summary.stopped_reason is None
    assert server.received_ids() == Counter({item.message_id: 1 for item in batch})
    attempts = [entry(log, item).attempts for item in batch]
    if refusal_delay:
        # A connection opened while the server still counts one just closed can be refused
        # with no other open: that letter is charged the attempt, and sent at the next.
        assert sum(attempts) <= 62
    else:
        assert set(attempts) == {1}
    assert server.refused_connections <= 8 and server.refused_messages <= 12
    assert elapsed < 10


async def test_a_slow_down_closes_the_connections_beyond_those_it_allows(
    log: DeliveryLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 8 letters per 2 s: the first refusal halves the 4 connections to 2, and the two beyond
    # them close after their next letter instead of staying open for the rest of the run.
    monkeypatch.setattr(ratelimit, "SLOW_DOWN_WINDOW", 2.0)
    samples: list[tuple[float, int]] = []  # (seconds since the first refusal, open connections)
    with FaultServer(message_rate=(8, 2.0), pipelining=True) as server:

        async def watch() -> None:
            first = 0.0
            while True:
                if server.refused_messages:
                    first = first or time.monotonic()
                    samples.append((time.monotonic() - first, server.open_connections))
                await asyncio.sleep(0.05)

        watcher = asyncio.create_task(watch())
        summary = await send(server, log, letters(24), concurrency=4)
        watcher.cancel()
    assert summary.sent == 24
    later = [count for since, count in samples if since >= 2.5]
    assert later and max(later) <= 2



async def test_a_connection_closed_along_the_way_is_not_counted_among_those_working(
    log: DeliveryLog,
) -> None:
    # Four connections. A refused recipient makes one of them reset, the server closes it
    # instead, and its next connection is refused: three were working then, so the run keeps
    # three (half of four would be two, and the one closed counted as open four), which it
    # knows only by counting the one it closed. The run lasts past the 1 s wait after the
    # refusal, when a fourth would be tried again.
    batch = letters(100)
    open_then: list[int] = []

    async def refuse_the_fifth(session: FaultSession, arg: str | None) -> str | None:
        return "421 4.7.0 too many connections" if session.number == 5 else None

    async def count_open(session: FaultSession, arg: str | None) -> str | None:
        await asyncio.sleep(0.05)
        if session.server.connections >= 5:  # after the refusal
            open_then.append(session.server.open_connections)
        return None

    with FaultServer() as server:
        server.on("RCPT", reject_recipient(batch[4].recipients[0], "550 5.1.1 no such user"))
        server.on("RSET", reply("421 4.3.2 closing"), times=1)
        server.on("GREETING", refuse_the_fifth)
        server.on("DATA_END", count_open)
        summary = await send(server, log, batch, concurrency=4, max_retries=0)
    assert summary.sent == 99 and summary.failed == 1
    assert server.connections == 5
    # (The refused connection is counted open for the moment it takes to refuse it.)
    assert len(open_then) > 20 and set(open_then[-20:]) == {3}


async def test_workers_waiting_for_a_connection_do_not_spin(log: DeliveryLog) -> None:
    # One connection allowed, four workers: once the refusals have lowered the connections to
    # one and the wait after the last refusal is over, three workers wait with nothing to wait
    # for but a connection given back. Looking again and again meanwhile burns a core (2.6 s
    # of CPU in this 5-s run, where waiting to be woken takes 0.1 s).
    with FaultServer(max_connections=1, refusal_delay=0.2) as server:
        server.on("DATA_END", slow(0.1))
        started, cpu = time.monotonic(), time.process_time()
        summary = await send(server, log, letters(50), concurrency=4)
        elapsed, used = time.monotonic() - started, time.process_time() - cpu
    assert summary.sent == 50 and elapsed > 4.5
    assert used < 1.0, f"{used:.2f} s of CPU in {elapsed:.2f} s"


async def test_a_run_waiting_for_a_retry_does_not_spin(log: DeliveryLog) -> None:
    # One letter deferred once (451), retried 1.5 s later (a retry waits 0.75-1.25 times the
    # delay): the run has nothing to do meanwhile but wait.
    with FaultServer() as server:
        server.on("DATA_END", reply("451 4.3.0 try again later"), times=1)
        started, cpu = time.monotonic(), time.process_time()
        summary = await send(server, log, letters(1), retry_delay=1.5)
        elapsed, used = time.monotonic() - started, time.process_time() - cpu
    assert summary.sent == 1 and elapsed > 1.0
    assert used < 0.5, f"{used:.2f} s of CPU in {elapsed:.2f} s"


async def test_a_login_refused_for_now_defers_its_letter_and_is_no_connection_limit(
    log: DeliveryLog,
) -> None:
    # Only a refusal at connect or greeting is the server's limit on connections. A 454 at
    # AUTH (a temporary failure of the server's authentication) defers the letter taken for
    # that connection, which is tried again; the connections are not lowered for it.
    batch = letters(10)
    with FaultServer(auth={"ana": "pw"}) as server:
        server.on("AUTH", reply("454 4.7.0 temporary authentication failure"), times=1)
        smtp = smtp_config(server, username="ana")
        summary = await send(server, log, batch, smtp=smtp, password="pw", concurrency=2)
    assert summary.sent == 10 and summary.refused_connections == 0
    assert sorted(entry(log, item).attempts for item in batch) == [1] * 9 + [2]


async def test_a_refused_connection_frees_the_domain_of_the_letter_it_took(
    log: DeliveryLog,
) -> None:
    # With a per-domain rate a letter taken marks its domain busy until it has its slot; the
    # letter of the refused connection goes back, and its domain must be free for the next.
    batch = letters(20)
    with FaultServer(max_connections=1, refusal_delay=0.1) as server:
        server.on("DATA_END", slow(0.05))
        summary = await asyncio.wait_for(
            send(server, log, batch, concurrency=2, per_domain_rate=parse_rate("50/s")), 20
        )
    assert summary.sent == 20 and server.refused_connections >= 1
