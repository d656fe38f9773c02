"""Queues per recipient domain: each domain at its own limit, the run at their sum, none starved."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, defaultdict
from collections.abc import Iterator

import pytest

from mailaction import sender
from mailaction.config import SendingConfig, SMTPConfig, parse_rate
from mailaction.deliverylog import DeliveryLog
from mailaction.message import Letter
from mailaction.sender import Sender
from tests.letters import letter
from tests.smtpserver import FaultServer, ReceivedMessage, slow
from tests.test_sender import fresh_log, send

log = pytest.fixture(fresh_log)


def to_domains(counts: dict[str, int]) -> list[Letter]:
    """Letters in list order: all of the first domain, then all of the second, and so on."""
    batch: list[Letter] = []
    for domain, count in counts.items():
        for _ in range(count):
            n = len(batch)
            batch.append(letter(n, recipients=(f"p{n}@{domain}",)))
    return batch


def arrivals(messages: list[ReceivedMessage]) -> dict[str, list[float]]:
    """When the server accepted each domain's letters."""
    times: dict[str, list[float]] = defaultdict(list)
    for message in messages:
        times[message.recipients[0].rpartition("@")[2]].append(message.at)
    return {domain: sorted(found) for domain, found in times.items()}


def busiest_second(times: list[float]) -> int:
    """The most letters in any window of one second."""
    return max(
        sum(1 for later in times[i:] if later - start < 1.0) for i, start in enumerate(times)
    )


async def test_three_domains_go_side_by_side_each_at_its_own_limit(log: DeliveryLog) -> None:
    batch = to_domains({"example.org": 20, "example.net": 20, "example.com": 20})
    with FaultServer(pipelining=True) as server:
        started = time.monotonic()
        summary = await send(server, log, batch, concurrency=8, per_domain_rate=parse_rate("5/s"))
        elapsed = time.monotonic() - started
    assert summary.sent == 60
    assert server.received_ids() == Counter({item.message_id: 1 for item in batch})
    times = arrivals(server.messages)
    assert {domain: busiest_second(found) for domain, found in times.items()} == {
        "example.org": 5,
        "example.net": 5,
        "example.com": 5,
    }
    # 20 letters at 5/s take 3.8 s, whichever the domain: the three go at once.
    assert elapsed <= 1.3 * 4.0
    assert all(found[0] - started < 0.5 for found in times.values())


async def test_a_large_domain_does_not_hold_up_the_small_ones(log: DeliveryLog) -> None:
    batch = to_domains({"example.org": 28, "example.net": 6, "example.com": 6})
    with FaultServer(pipelining=True) as server:
        started = time.monotonic()
        await send(server, log, batch, concurrency=4, per_domain_rate=parse_rate("5/s"))
    times = arrivals(server.messages)
    # The small domains finish at their own pace (6 at 5/s: 1 s), not after the large one.
    assert times["example.net"][-1] - started < 2.0
    assert times["example.com"][-1] - started < 2.0
    assert len(times["example.org"]) == 28 and busiest_second(times["example.org"]) == 5


async def test_without_a_per_domain_rate_letters_go_in_list_order(log: DeliveryLog) -> None:
    batch = to_domains({"example.org": 5, "example.net": 5})
    with FaultServer() as server:
        await send(server, log, batch, concurrency=1)
    assert [m.message_id for m in server.messages] == [item.message_id for item in batch]


async def test_the_per_domain_limit_is_wired_from_the_settings(log: DeliveryLog) -> None:
    batch = to_domains({"example.org": 8})
    with FaultServer() as server:
        await send(server, log, batch, concurrency=4, per_domain_rate=parse_rate("4/s"))
    assert busiest_second(arrivals(server.messages)["example.org"]) == 4


@pytest.mark.parametrize("bound", ["letters", "bytes"])
async def test_letters_are_read_ahead_only_up_to_the_lookahead(
    log: DeliveryLog, monkeypatch: pytest.MonkeyPatch, bound: str
) -> None:
    batch = to_domains({"example.org": 100})
    if bound == "letters":
        monkeypatch.setattr(sender, "LOOKAHEAD", 10)
    else:  # letters with large attachments: the window holds 10 letters' worth of data
        monkeypatch.setattr(sender, "LOOKAHEAD_BYTES", 10 * len(batch[0].data))
    for item in batch:
        log.register(item)
    read: list[Letter] = []

    def reading() -> Iterator[Letter]:
        for item in batch:
            read.append(item)
            yield item

    stop = asyncio.Event()
    with FaultServer() as server:
        smtp = SMTPConfig(host="127.0.0.1", port=server.port, security="none")
        settings = SendingConfig(concurrency=4, per_domain_rate=parse_rate("10/s"))
        task = asyncio.create_task(Sender(smtp, settings, log).send(reading(), stop=stop))
        await asyncio.sleep(0.5)
        # Held: the window, and one letter taken by each connection; the rest went out.
        assert len(read) - len(server.messages) <= 10 + 4
        assert len(read) < 30
        stop.set()
        summary = await task
    assert summary.sent == len(server.messages) <= 7


async def test_connections_opening_together_take_letters_of_different_domains(
    log: DeliveryLog,
) -> None:
    # Both connections take a letter while they open: the second takes example.net, since
    # example.org's letter is already taken and waits for nothing but its connection. Taking
    # example.org again would keep that connection waiting for the domain's next slot.
    batch = to_domains({"example.org": 3, "example.net": 3})
    with FaultServer() as server:
        server.on("DATA_END", slow(0.3))
        await send(server, log, batch, concurrency=2, per_domain_rate=parse_rate("5/s"))
    first_two = {message.recipients[0].rpartition("@")[2] for message in server.messages[:2]}
    assert first_two == {"example.org", "example.net"}
