"""The sender against real SMTP servers that misbehave: nothing sent twice, nothing lost."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailaction.config import SendingConfig, SMTPConfig, parse_rate
from mailaction.deliverylog import DeliveryLog, Entry, Outcome, State
from mailaction.errors import DeliveryLogError, SMTPSetupError
from mailaction.message import Letter
from mailaction.sender import (
    Sender,
    SendSummary,
    check_server,
    is_loopback,
    retry_delay,
)
from tests.letters import letter, letters
from tests.smtpserver import (
    Certificate,
    FaultServer,
    deliver_then_drop,
    drop,
    make_certificate,
    reject_recipient,
    reject_sender,
    reply,
    slow,
)


def both_servers(request: pytest.FixtureRequest) -> Iterator[FaultServer]:
    """The fault server, once answering commands one by one and once offering PIPELINING."""
    with FaultServer(pipelining=request.param) as running:
        yield running


def fresh_log(tmp_path: Path) -> Iterator[DeliveryLog]:
    """An empty delivery log for the campaign "test"."""
    with DeliveryLog(tmp_path / "log.sqlite", "test") as opened:
        yield opened


# The other test_sender_*.py files share these two fixtures the same way.
server = pytest.fixture(params=[False, True], ids=["one-by-one", "pipelined"])(both_servers)
log = pytest.fixture(fresh_log)


def smtp_config(server: FaultServer, **settings: object) -> SMTPConfig:
    return SMTPConfig(**{"host": "127.0.0.1", "port": server.port, "security": "none", **settings})


def sending_config(**settings: object) -> SendingConfig:
    return SendingConfig(**{"retry_delay": 0.01, "timeout": 5.0, "concurrency": 1, **settings})


async def send(
    server: FaultServer,
    log: DeliveryLog,
    batch: list[Letter],
    *,
    smtp: SMTPConfig | None = None,
    password: str | None = None,
    outcomes: list[tuple[str, State]] | None = None,
    stop: asyncio.Event | None = None,
    **settings: object,
) -> SendSummary:
    """Register ``batch`` in the log and send it; ``outcomes`` collects (contact, state) calls."""
    for item in batch:
        log.register(item)  # type: ignore[arg-type]
    sender = Sender(smtp or smtp_config(server), sending_config(**settings), log, password=password)

    def record(item: Letter, outcome: Outcome) -> None:
        if outcomes is not None:
            outcomes.append((item.contact_id, outcome.state))

    return await sender.send(batch, on_outcome=record, stop=stop)  # type: ignore[arg-type]


def states(log: DeliveryLog) -> Counter[State]:
    return Counter({state: n for state, n in log.counts().items() if n})


def nested_mail(server: FaultServer) -> bool:
    """Whether a MAIL FROM came while a transaction was still open (a session not reset)."""
    return any(text.startswith("503 Error: nested MAIL") for text in server.replies)


def entry(log: DeliveryLog, item: Letter) -> Entry:
    found = log.get(item.contact_id)
    assert found is not None
    return found


# --- many letters, few connections ---


async def test_200_letters_over_4_connections_each_received_once(
    server: FaultServer, log: DeliveryLog
) -> None:
    batch = letters(200)
    summary = await send(server, log, batch, concurrency=4)
    assert summary.sent == 200 and summary.failed == summary.deferred == summary.uncertain == 0
    assert server.received_ids() == Counter({item.message_id: 1 for item in batch})
    assert server.connections <= 4
    assert states(log) == Counter({State.SENT: 200})
    assert summary.started <= summary.finished
    body = server.messages[0].message.get_content()
    assert ".a line that starts with a dot" in body and "..a line" not in body


async def test_every_outcome_is_committed_when_the_run_ends(
    server: FaultServer, log: DeliveryLog
) -> None:
    await send(server, log, letters(20), concurrency=4)
    with DeliveryLog(log.path, log.campaign) as other:  # sees only what was committed
        assert states(other) == Counter({State.SENT: 20})


async def test_reconnects_after_max_messages_per_connection(
    server: FaultServer, log: DeliveryLog
) -> None:
    summary = await send(server, log, letters(25), max_messages_per_connection=10)
    assert summary.sent == 25
    assert server.connections == 3
    assert Counter(m.connection for m in server.messages) == Counter({1: 10, 2: 10, 3: 5})
    assert server.commands["QUIT"] == 3


async def test_a_server_closing_after_3_messages_costs_no_attempt(log: DeliveryLog) -> None:
    with FaultServer(max_messages_per_connection=3) as server:
        batch = letters(10)
        summary = await send(server, log, batch)
    assert summary.sent == 10
    assert server.received_ids() == Counter({item.message_id: 1 for item in batch})
    assert server.connections == 4
    assert {entry(log, item).attempts for item in batch} == {1}


async def test_an_idle_connection_closed_by_the_server_is_replaced(log: DeliveryLog) -> None:
    with FaultServer(idle_timeout=0.1) as server:
        summary = await send(server, log, letters(3), rate=parse_rate("5/s"))
    assert summary.sent == 3
    assert server.connections == 3
    assert {entry(log, item).attempts for item in letters(3)} == {1}


# --- replies and retries ---


async def test_421_greeting_then_ok(server: FaultServer, log: DeliveryLog) -> None:
    server.on("GREETING", reply("421 4.7.0 too busy, try later"), times=1)
    summary = await send(server, log, [letter(1)])
    assert summary.sent == 1
    assert entry(log, letter(1)).state is State.SENT
    assert entry(log, letter(1)).attempts == 2
    assert server.connections == 2
    assert server.received_ids() == Counter({letter(1).message_id: 1})


@pytest.mark.parametrize(
    ("command", "text"),
    [
        ("RCPT", "450 4.2.1 mailbox busy"),
        ("RCPT", "451 4.7.1 greylisted, try later"),
        ("RCPT", "452 4.5.3 too many recipients"),
        ("MAIL", "454 4.7.0 too many messages, slow down"),
        ("MAIL", "421 4.7.0 too many messages on this connection"),
    ],
)
async def test_a_temporary_refusal_once_then_sent_on_the_second_attempt(
    server: FaultServer, log: DeliveryLog, command: str, text: str
) -> None:
    server.on(command, reply(text), times=1)
    outcomes: list[tuple[str, State]] = []
    await send(server, log, [letter(1)], outcomes=outcomes)
    found = entry(log, letter(1))
    assert (found.state, found.attempts, found.last_code) == (State.SENT, 2, 250)
    assert outcomes == [("p1@example.org", State.DEFERRED), ("p1@example.org", State.SENT)]
    assert not nested_mail(server)


async def test_550_at_rcpt_fails_with_the_reply(server: FaultServer, log: DeliveryLog) -> None:
    server.on("RCPT", reply("550 5.1.1 no such user"))
    summary = await send(server, log, [letter(1)])
    found = entry(log, letter(1))
    assert (found.state, found.attempts, found.last_code) == (State.FAILED, 1, 550)
    assert "no such user" in found.last_reply
    assert summary.failed == 1 and not server.messages


async def test_one_recipient_of_two_refused_is_sent_and_recorded(
    server: FaultServer, log: DeliveryLog
) -> None:
    server.on("RCPT", reject_recipient("bad@example.org", "550 5.1.1 no such user"))
    item = letter(1, recipients=("good@example.org", "bad@example.org"))
    await send(server, log, [item])
    found = entry(log, item)
    assert found.state is State.SENT
    assert found.refused == {"bad@example.org": "550 5.1.1 no such user"}
    assert server.messages[0].recipients == ("good@example.org",)


async def test_all_recipients_refused_with_a_4xx_among_them_is_retried(
    server: FaultServer, log: DeliveryLog
) -> None:
    server.on("RCPT", reply("452 4.2.2 mailbox full"), times=1)
    server.on("RCPT", reject_recipient("bad@example.org", "550 5.1.1 no such user"))
    item = letter(1, recipients=("full@example.org", "bad@example.org"))
    await send(server, log, [item])
    found = entry(log, item)
    assert (found.state, found.attempts) == (State.SENT, 2)
    assert server.messages[0].recipients == ("full@example.org",)


async def test_554_after_the_data_fails(server: FaultServer, log: DeliveryLog) -> None:
    server.on("DATA_END", reply("554 5.7.1 message rejected as spam"))
    await send(server, log, [letter(1)])
    found = entry(log, letter(1))
    assert (found.state, found.last_code) == (State.FAILED, 554)
    assert found.last_reply == "5.7.1 message rejected as spam"
    assert not server.messages


@pytest.mark.parametrize("fault", [drop, deliver_then_drop])
async def test_dropped_after_the_data_is_uncertain_and_never_resent(
    server: FaultServer, log: DeliveryLog, fault: object
) -> None:
    server.on("DATA_END", fault)  # type: ignore[arg-type]
    summary = await send(server, log, [letter(1), letter(2)])
    assert entry(log, letter(1)).state is State.UNCERTAIN
    assert "may have arrived" in entry(log, letter(1)).last_reply
    assert entry(log, letter(1)).attempts == 1
    assert summary.uncertain == 2
    assert all(n <= 1 for n in server.received_ids().values())


@pytest.mark.parametrize("command", ["GREETING", "EHLO", "MAIL", "RCPT", "DATA"])
async def test_dropped_before_the_data_is_retried_and_sent_once(
    server: FaultServer, log: DeliveryLog, command: str
) -> None:
    server.on(command, drop, times=1)
    await send(server, log, [letter(1)])
    found = entry(log, letter(1))
    assert (found.state, found.attempts) == (State.SENT, 2)
    assert server.received_ids() == Counter({letter(1).message_id: 1})


@pytest.mark.parametrize("command", ["EHLO", "RCPT"])
async def test_a_reply_slower_than_the_timeout_is_retried(
    server: FaultServer, log: DeliveryLog, command: str
) -> None:
    server.on(command, slow(0.5), times=1)
    await send(server, log, [letter(1)], timeout=0.2)
    found = entry(log, letter(1))
    assert (found.state, found.attempts) == (State.SENT, 2)
    assert server.connections == 2
    assert server.received_ids() == Counter({letter(1).message_id: 1})


async def test_a_slow_reply_after_the_data_is_uncertain(
    server: FaultServer, log: DeliveryLog
) -> None:
    server.on("DATA_END", slow(0.5))
    await send(server, log, [letter(1)], timeout=0.2)
    found = entry(log, letter(1))
    assert (found.state, found.attempts) == (State.UNCERTAIN, 1)
    assert found.last_reply.startswith("no reply to the end of data within 0.2 s")
    assert server.commands["DATA_END"] == 1


async def test_with_pipelining_the_envelope_and_data_go_in_one_write(
    log: DeliveryLog,
) -> None:
    with FaultServer(pipelining=True) as server:
        await send(server, log, letters(3))
    assert server.sent_with_mail == [
        b"RCPT TO:<p%d@example.org>\r\nDATA\r\n" % number for number in range(3)
    ]
    assert server.received_ids() == Counter({item.message_id: 1 for item in letters(3)})


async def test_pipelined_replies_arriving_apart_are_all_read(log: DeliveryLog) -> None:
    # The reply to MAIL comes late, those to RCPT and DATA right after it, each on its own.
    with FaultServer(pipelining=True) as server:
        server.on("MAIL", slow(0.05))
        server.on("RCPT", slow(0))
        server.on("DATA", slow(0))
        summary = await send(server, log, letters(5), timeout=2.0)
    assert (summary.sent, summary.deferred, summary.failed) == (5, 0, 0)
    assert server.connections == 1
    assert server.received_ids() == Counter({item.message_id: 1 for item in letters(5)})


async def test_a_pipelined_data_accepted_after_a_refused_envelope_sends_nothing(
    log: DeliveryLog,
) -> None:
    with FaultServer(pipelining=True) as server:
        server.on("RCPT", reject_recipient("p0@example.org", "550 5.1.1 no such user"))
        server.on("DATA", reply("354 go ahead anyway"), times=1)
        summary = await send(server, log, letters(2))
    assert (summary.sent, summary.failed) == (1, 1)
    assert entry(log, letter(0)).last_reply.startswith("every recipient refused")
    assert server.received_ids() == Counter({letter(1).message_id: 1})
    assert server.connections == 2  # the session waiting for data was closed, never reused


async def test_rset_after_a_failed_transaction_keeps_the_connection_clean(
    server: FaultServer, log: DeliveryLog
) -> None:
    server.on("RCPT", reject_recipient("p1@example.org", "550 5.1.1 no such user"))
    summary = await send(server, log, letters(4))
    assert (summary.sent, summary.failed) == (3, 1)
    assert server.commands["RSET"] == 1
    assert server.connections == 1
    assert not nested_mail(server)


async def test_a_refused_rset_means_a_new_connection(server: FaultServer, log: DeliveryLog) -> None:
    server.on("MAIL", reject_sender("bounce@example.org", "550 5.7.1 sender refused"))
    server.on("RSET", reply("500 5.5.1 no"))
    batch = [letter(1, sender="bounce@example.org"), letter(2)]
    summary = await send(server, log, batch)
    assert (summary.sent, summary.failed) == (1, 1)
    assert server.connections == 2
    assert server.messages[0].connection == 2


async def test_max_retries_exhausted_fails_keeping_the_last_reply(
    server: FaultServer, log: DeliveryLog
) -> None:
    server.on("DATA_END", reply("451 4.3.0 try again later"))
    outcomes: list[tuple[str, State]] = []
    summary = await send(server, log, [letter(1)], max_retries=2, outcomes=outcomes)
    found = entry(log, letter(1))
    assert (found.state, found.attempts, found.last_code) == (State.FAILED, 3, 451)
    assert found.last_reply == "4.3.0 try again later"
    assert [state for _, state in outcomes] == [State.DEFERRED, State.DEFERRED, State.FAILED]
    assert (summary.failed, summary.deferred) == (1, 0)


def test_retry_delay_doubles_with_jitter_and_a_ceiling() -> None:
    assert 1.5 <= retry_delay(2.0, 1) <= 2.5
    assert 6.0 <= retry_delay(2.0, 3) <= 10.0
    assert retry_delay(2.0, 40) <= 300.0


def test_retry_delay_jitter_spans_a_quarter_either_way() -> None:
    random.seed(20261201)
    delays = [retry_delay(4.0, 1) for _ in range(400)]
    assert 3.0 <= min(delays) < 3.1 and 4.9 < max(delays) <= 5.0


# --- stopping ---


async def test_pause_after_failures_stops_and_leaves_the_rest_untouched(
    server: FaultServer, log: DeliveryLog
) -> None:
    server.on("MAIL", reply("554 5.7.1 your IP is blocked"))
    summary = await send(server, log, letters(20), pause_after_failures=3)
    assert summary.stopped_reason == (
        "paused after 3 failures in a row (sending.pause_after_failures); the server may be"
        " refusing us: 554 5.7.1 your IP is blocked. Run send again to go on with the letters"
        " left; set pause_after_failures = 0 never to pause"
    )
    assert states(log) == Counter({State.FAILED: 3, State.PENDING: 17})


async def test_temporary_refusals_never_pause_the_run(
    server: FaultServer, log: DeliveryLog
) -> None:
    server.on("RCPT", reply("450 4.2.1 mailbox busy"))
    summary = await send(server, log, letters(5), pause_after_failures=2, max_retries=1)
    assert summary.stopped_reason is None
    assert summary.failed == 5
    assert {entry(log, item).attempts for item in letters(5)} == {2}


async def test_an_unreachable_server_pauses_the_run(free_port: int, log: DeliveryLog) -> None:
    for item in letters(5):
        log.register(item)
    smtp = SMTPConfig(host="127.0.0.1", port=free_port, security="none")
    settings = sending_config(pause_after_failures=2, retry_delay=30.0)
    summary = await Sender(smtp, settings, log).send(letters(5))
    assert summary.stopped_reason is not None
    assert summary.stopped_reason.startswith("paused after 2 failures in a row")
    assert "server may be refusing us: None" not in summary.stopped_reason  # no reply code
    assert states(log) == Counter({State.DEFERRED: 2, State.PENDING: 3})


async def test_stop_event_finishes_in_flight_letters_and_leaves_the_rest(
    server: FaultServer, log: DeliveryLog
) -> None:
    stop = asyncio.Event()
    server.on("DATA_END", slow(0.02))

    class StopAtFifth(list[tuple[str, State]]):
        def append(self, value: tuple[str, State]) -> None:
            super().append(value)
            if len(self) == 5:
                stop.set()

    outcomes = StopAtFifth()
    summary = await send(server, log, letters(50), concurrency=3, outcomes=outcomes, stop=stop)
    assert 5 <= summary.sent <= 7
    assert states(log) == Counter({State.SENT: summary.sent, State.PENDING: 50 - summary.sent})
    assert len(server.messages) == summary.sent


async def test_cancelling_leaves_no_letter_sending(server: FaultServer, log: DeliveryLog) -> None:
    server.on("DATA_END", slow(10))
    task = asyncio.create_task(send(server, log, letters(20), concurrency=4))
    deadline = time.monotonic() + 5
    while server.commands["DATA_END"] < 4:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert states(log) == Counter({State.UNCERTAIN: 4, State.PENDING: 16})
    assert "may have arrived" in entry(log, letter(0)).last_reply


async def test_a_log_that_cannot_be_written_stops_the_run(
    server: FaultServer, tmp_path: Path
) -> None:
    class FullDisk(DeliveryLog):
        def mark_outcome(self, contact_id: str, outcome: Outcome) -> None:
            if contact_id == "p3@example.org":
                raise DeliveryLogError(f"{self.path}: cannot write the delivery log: disk full")
            super().mark_outcome(contact_id, outcome)

    with FullDisk(tmp_path / "log.sqlite", "test") as log:
        with pytest.raises(DeliveryLogError, match="disk full"):
            await send(server, log, letters(10))
        assert states(log) == Counter({State.SENT: 3, State.SENDING: 1, State.PENDING: 6})
    assert len(server.messages) == 4


# --- what the server supports ---


async def test_smtputf8_missing_fails_without_sending(log: DeliveryLog) -> None:
    with FaultServer(smtputf8=False) as server:
        await send(server, log, [letter(1, sender="jos\u00e9@example.org", smtputf8=True)])
    found = entry(log, letter(1))
    assert (found.state, found.attempts) == (State.FAILED, 1)  # no retry: it cannot go there
    assert found.last_reply == "server does not support SMTPUTF8 (non-ASCII address)"
    assert server.commands["MAIL"] == 0


async def test_smtputf8_letter_goes_when_supported(server: FaultServer, log: DeliveryLog) -> None:
    await send(server, log, [letter(1, sender="jos\u00e9@example.org", smtputf8=True)])
    assert entry(log, letter(1)).state is State.SENT
    assert server.messages[0].mail_from == "jos\u00e9@example.org"


async def test_a_non_ascii_address_without_smtputf8_fails_that_letter_only(
    server: FaultServer, log: DeliveryLog
) -> None:
    await send(server, log, [letter(1, recipients=("jos\u00e9@example.org",)), letter(2)])
    assert (entry(log, letter(1)).state, entry(log, letter(1)).attempts) == (State.FAILED, 1)
    assert entry(log, letter(1)).last_reply == (
        "non-ASCII address in a letter not marked as needing SMTPUTF8"
    )
    assert entry(log, letter(2)).state is State.SENT


async def test_a_letter_over_the_size_limit_fails_without_sending(log: DeliveryLog) -> None:
    with FaultServer(size_limit=1000) as server:
        await send(server, log, [letter(1, body="x" * 900 + "\r\n"), letter(2)])
    found = entry(log, letter(1))
    assert (found.state, found.attempts) == (State.FAILED, 1)  # no retry: it cannot go there
    assert "SIZE" in found.last_reply
    assert entry(log, letter(2)).state is State.SENT
    assert server.commands["MAIL"] == 1


# --- connection set-up: STARTTLS, TLS, AUTH ---


async def test_starttls_required_but_not_offered(server: FaultServer, log: DeliveryLog) -> None:
    smtp = smtp_config(server, security="starttls")
    with pytest.raises(SMTPSetupError, match="does not offer STARTTLS") as error:
        await check_server(smtp, sending_config(), None)
    assert str(error.value).startswith(f"127.0.0.1:{server.port}: ")
    with pytest.raises(SMTPSetupError, match="does not offer STARTTLS"):
        await send(server, log, [letter(1)], smtp=smtp)
    assert not server.messages
    assert entry(log, letter(1)).state is State.PENDING


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "::1", "[::1]"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["smtp.example.org", "192.0.2.1", "2001:db8::1", "localhost.example"]
)
def test_hosts_that_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


async def test_auth_over_plain_text_to_a_remote_host_is_refused() -> None:
    smtp = SMTPConfig(host="smtp.example.org", port=25, security="none", username="ana")
    with pytest.raises(SMTPSetupError, match="over an unencrypted connection"):
        await check_server(smtp, sending_config(), "s3cret")


async def test_login_refused_names_the_user_but_never_the_password() -> None:
    with FaultServer(auth={"ana": "right-password"}) as server:
        smtp = smtp_config(server, username="ana")
        with pytest.raises(SMTPSetupError) as error:
            await check_server(smtp, sending_config(), "wrong-Pa55word")
    message = str(error.value)
    assert message.startswith(f"127.0.0.1:{server.port}: login refused for user 'ana': 535")
    assert "wrong-Pa55word" not in message + repr(error.value)


async def test_login_then_send(log: DeliveryLog) -> None:
    with FaultServer(auth={"ana": "right-password"}) as server:
        smtp = smtp_config(server, username="ana")
        await check_server(smtp, sending_config(), "right-password")
        await send(server, log, letters(3), smtp=smtp, password="right-password")
    assert len(server.messages) == 3
    assert server.logins == ["ana", "ana"]


async def test_a_server_that_is_down(free_port: int) -> None:
    smtp = SMTPConfig(host="127.0.0.1", port=free_port, security="none")
    with pytest.raises(SMTPSetupError, match=f"127.0.0.1:{free_port}: connect: .*refused"):
        await check_server(smtp, sending_config(), None)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.mark.parametrize("security", ["starttls", "ssl"])
async def test_tls_with_a_trusted_certificate(
    certificate: Certificate, log: DeliveryLog, monkeypatch: pytest.MonkeyPatch, security: str
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    context = certificate.server_context()
    with FaultServer(tls=context, implicit_tls=security == "ssl", auth={"ana": "pw"}) as server:
        smtp = smtp_config(server, security=security, username="ana")
        await send(server, log, letters(2), smtp=smtp, password="pw")
    assert len(server.messages) == 2 and server.logins == ["ana"]


async def test_tls_with_an_unknown_certificate_is_refused(
    certificate: Certificate, log: DeliveryLog
) -> None:
    with FaultServer(tls=certificate.server_context(), require_starttls=True) as server:
        smtp = smtp_config(server, security="starttls")
        with pytest.raises(SMTPSetupError, match="certificate cannot be verified"):
            await check_server(smtp, sending_config(), None)
        unverified = smtp_config(server, security="starttls", verify_certificates=False)
        await send(server, log, [letter(1)], smtp=unverified)
    assert len(server.messages) == 1
