"""What a user gets when the server refuses DATA, answers 421 to RCPT, offers no SIZE, or drops us."""

from __future__ import annotations

from collections import Counter

import pytest

from mailaction.deliverylog import DeliveryLog, State
from tests.letters import letter, letters
from tests.smtpserver import FaultServer, FaultSession, reply
from tests.test_sender import entry, fresh_log, send, states

log = pytest.fixture(fresh_log)


@pytest.mark.parametrize(
    ("text", "state"),
    [("554 5.5.1 no valid recipients", State.FAILED), ("451 4.3.0 try later", State.SENT)],
)
async def test_data_refused_by_a_server_without_pipelining(
    log: DeliveryLog, text: str, state: State
) -> None:
    with FaultServer(pipelining=False) as server:
        server.on("DATA", reply(text), times=1)
        summary = await send(server, log, [letter(1)])
    found = entry(log, letter(1))
    assert found.state is state
    assert server.commands["DATA_END"] == (1 if state is State.SENT else 0)
    if state is State.FAILED:
        assert (found.last_code, found.attempts, summary.failed) == (554, 1, 1)
        assert not server.messages
    else:
        assert found.attempts == 2
        assert server.received_ids() == Counter({letter(1).message_id: 1})


@pytest.mark.parametrize("pipelining", [False, True], ids=["one-by-one", "pipelined"])
async def test_421_to_rcpt_closes_the_connection_and_the_letter_goes_later(
    log: DeliveryLog, pipelining: bool
) -> None:
    with FaultServer(pipelining=pipelining) as server:
        server.on("RCPT", reply("421 4.3.2 shutting down"), times=1)
        summary = await send(server, log, [letter(1), letter(2)])
    found = entry(log, letter(1))
    assert (found.state, found.attempts) == (State.SENT, 2)
    assert summary.sent == 2 and summary.stopped_reason is None
    assert server.connections >= 2  # the session the server closed was not reused
    assert server.received_ids() == Counter({letter(1).message_id: 1, letter(2).message_id: 1})


async def test_no_size_offered_means_no_size_parameter_and_no_local_limit(
    log: DeliveryLog,
) -> None:
    big = letter(1, body="x" * 70 + "\r\n" * 2000)
    with FaultServer(size_limit=None) as server:
        server.on("MAIL", _record_mail_args)
        MAIL_ARGS.clear()
        await send(server, log, [big])
    assert entry(log, big).state is State.SENT
    assert MAIL_ARGS == ["FROM:<campaign@example.org>"]


MAIL_ARGS: list[str | None] = []


async def _record_mail_args(session: FaultSession, arg: str | None) -> str | None:
    MAIL_ARGS.append(arg)
    return None


async def test_size_offered_is_announced_in_mail_from(log: DeliveryLog) -> None:
    item = letter(1)
    with FaultServer(size_limit=100_000) as server:
        server.on("MAIL", _record_mail_args)
        MAIL_ARGS.clear()
        await send(server, log, [item])
    assert MAIL_ARGS == [f"FROM:<campaign@example.org> SIZE={len(item.data)}"]


async def test_a_success_resets_the_failure_streak(log: DeliveryLog) -> None:
    # Refused, refused, sent, refused, refused: never three in a row.
    with FaultServer() as server:
        refused = {f"<p{number}@example.org>" for number in (0, 1, 3, 4)}

        async def refuse(session: FaultSession, arg: str | None) -> str | None:
            return "550 5.1.1 no" if arg is not None and arg.split(":", 1)[1] in refused else None

        server.on("RCPT", refuse)
        summary = await send(server, log, letters(5), pause_after_failures=3)
    assert summary.stopped_reason is None
    assert (summary.sent, summary.failed, summary.deferred, summary.uncertain) == (1, 4, 0, 0)
    assert states(log) == Counter({State.FAILED: 4, State.SENT: 1})


async def test_three_failures_in_a_row_pause_exactly_at_the_third(log: DeliveryLog) -> None:
    with FaultServer() as server:
        server.on("RCPT", reply("550 5.1.1 no"))
        summary = await send(server, log, letters(6), pause_after_failures=3)
    assert summary.failed == 3 and summary.sent == 0
    assert states(log) == Counter({State.FAILED: 3, State.PENDING: 3})
