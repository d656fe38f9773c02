"""Replies that make no sense after the data are uncertain; a 452 for some recipients retries those."""

from __future__ import annotations

from collections import Counter

import pytest

from mailaction.delivery import Decision, SendOptions, decide
from mailaction.deliverylog import DeliveryLog, State
from tests.letters import letter
from tests.smtpserver import Action, FaultServer, FaultSession, reject_recipient, reply
from tests.test_sender import both_servers, entry, fresh_log, send

server = pytest.fixture(params=[False, True], ids=["one-by-one", "pipelined"])(both_servers)
log = pytest.fixture(fresh_log)


def deliver_and_reply(text: str) -> Action:
    """At DATA_END: keep the message, then answer ``text`` (which may be several lines)."""

    async def answer(session: FaultSession, arg: str | None) -> str | None:
        session.deliver()
        return text

    return answer


@pytest.mark.parametrize(
    "text",
    [
        "999 nonsense",
        "2_5 ok",
        "250-2.0.0 queued\r\n550 5.0.0 or not",
        "250 2.0.0 queued\r\n250 2.0.0 and again",
        "354 go on",
        "hello there",
    ],
    ids=["999", "2_5", "mixed-codes", "extra-line", "354", "no-code"],
)
async def test_a_reply_that_makes_no_sense_after_the_data_is_uncertain(
    server: FaultServer, log: DeliveryLog, text: str
) -> None:
    server.on("DATA_END", deliver_and_reply(text), times=1)
    summary = await send(server, log, [letter(1), letter(2)])
    found = entry(log, letter(1))
    assert (found.state, found.attempts) == (State.UNCERTAIN, 1)
    assert "may have arrived" in found.last_reply
    assert (summary.uncertain, summary.sent) == (1, 1)
    assert entry(log, letter(2)).state is State.SENT
    assert server.connections == 2  # the confused connection was dropped
    assert server.received_ids() == Counter({letter(1).message_id: 1, letter(2).message_id: 1})
    # Neither --retry-failed nor a plain run sends it again; only --resend-uncertain would.
    assert decide(found, letter(1), SendOptions(retry_failed=True)) is Decision.HELD_UNCERTAIN


async def test_a_malformed_reply_before_the_data_is_retried_on_a_new_connection(
    server: FaultServer, log: DeliveryLog
) -> None:
    server.on("RCPT", reply("2_5 what"), times=1)
    await send(server, log, [letter(1)])
    found = entry(log, letter(1))
    assert (found.state, found.attempts) == (State.SENT, 2)
    assert server.received_ids() == Counter({letter(1).message_id: 1})


async def test_452_for_one_recipient_retries_only_that_recipient(
    server: FaultServer, log: DeliveryLog
) -> None:
    full = reject_recipient("full@example.org", "452 4.2.2 mailbox full")
    gone = reject_recipient("gone@example.org", "550 5.1.1 no such user")
    seen: list[str | None] = []

    async def full_once_gone_always(session: FaultSession, arg: str | None) -> str | None:
        seen.append(arg)
        first = seen.count(arg) == 1
        return (await full(session, arg) if first else None) or await gone(session, arg)

    server.on("RCPT", full_once_gone_always)
    item = letter(1, recipients=("ok@example.org", "full@example.org", "gone@example.org"))
    outcomes: list[tuple[str, State]] = []
    summary = await send(server, log, [item], outcomes=outcomes)
    assert [m.recipients for m in server.messages] == [
        ("ok@example.org",),
        ("full@example.org",),
    ]
    found = entry(log, item)
    assert (found.state, found.attempts) == (State.SENT, 2)
    assert found.refused == {"gone@example.org": "550 5.1.1 no such user"}
    assert outcomes == [(item.contact_id, State.DEFERRED), (item.contact_id, State.SENT)]
    assert (summary.sent, summary.deferred, summary.failed) == (1, 0, 0)


async def test_452_until_the_retries_run_out_keeps_the_letter_sent_with_the_refusal(
    server: FaultServer, log: DeliveryLog
) -> None:
    server.on("RCPT", reject_recipient("full@example.org", "452 4.2.2 mailbox full"))
    item = letter(1, recipients=("ok@example.org", "full@example.org"))
    summary = await send(server, log, [item], max_retries=2)
    assert [m.recipients for m in server.messages] == [("ok@example.org",)]
    found = entry(log, item)
    assert (found.state, found.attempts) == (State.SENT, 3)
    assert found.refused == {"full@example.org": "452 4.2.2 mailbox full"}
    assert (summary.sent, summary.deferred) == (1, 0)


async def test_a_run_stopped_before_the_452_retry_leaves_the_letter_sent(
    server: FaultServer, log: DeliveryLog
) -> None:
    server.on("RCPT", reject_recipient("full@example.org", "452 4.2.2 mailbox full"))
    item = letter(1, recipients=("ok@example.org", "full@example.org"))
    await send(server, log, [item], retry_delay=30.0, pause_after_failures=0, max_retries=0)
    found = entry(log, item)
    assert found.state is State.SENT
    assert found.refused == {"full@example.org": "452 4.2.2 mailbox full"}
    assert [m.recipients for m in server.messages] == [("ok@example.org",)]


async def test_a_recipient_the_server_will_forward_is_accepted(
    server: FaultServer, log: DeliveryLog
) -> None:
    # 251 (RFC 5321 3.4: user not local; will forward) accepts the recipient as 250 does.
    async def will_forward(session: FaultSession, arg: str | None) -> str | None:
        assert arg is not None and session.envelope is not None
        session.envelope.rcpt_tos.append(arg.partition(":")[2].strip(" <>"))
        return "251 2.1.5 user not local; will forward"

    server.on("RCPT", will_forward)
    item = letter(1)
    summary = await send(server, log, [item])
    assert summary.sent == 1 and summary.failed == 0
    assert server.received_ids() == Counter({item.message_id: 1})
    assert entry(log, item).refused == {}
