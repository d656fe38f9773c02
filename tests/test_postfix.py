"""Core sending scenarios against Postfix's smtp-sink: a server this project did not write.

smtp-sink's options inject the faults: -f (5xx), -r (4xx), -Q (421 and disconnect), -q (disconnect
without a reply) after a given command, -W (slow reply). Skipped only where Postfix is not installed;
`.ci/run` installs it.
"""

from __future__ import annotations

import asyncio
import email.policy
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email.parser import BytesHeaderParser
from pathlib import Path

import pytest

from mailaction.config import SendingConfig, SMTPConfig
from mailaction.deliverylog import DeliveryLog, State
from mailaction.sender import Sender, SendSummary
from tests.letters import letters

SMTP_SINK = "/usr/sbin/smtp-sink"

pytestmark = pytest.mark.skipif(
    not os.access(SMTP_SINK, os.X_OK), reason="Postfix's smtp-sink is not installed (apt-get install postfix)"
)


class PostfixSink:
    """A running smtp-sink on a free loopback port that dumps each accepted message to a file."""

    def __init__(self, port: int, *options: str) -> None:
        # smtp-sink drops root privileges to -u; that user must be able to write the dumps.
        self.dumps = Path(tempfile.mkdtemp(prefix="smtp-sink-"))
        self.dumps.chmod(0o777)
        user = ["-u", "nobody"] if os.geteuid() == 0 else []
        self.port = port
        self.process = subprocess.Popen(
            [SMTP_SINK, *user, "-d", f"{self.dumps}/%H%M%S.", *options, f"127.0.0.1:{port}", "64"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.process.stderr.read().decode()  # type: ignore[union-attr]
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        raise AssertionError("smtp-sink did not start listening")

    def received_ids(self) -> Counter[str]:
        """Message-IDs of the messages smtp-sink accepted and dumped."""
        parser = BytesHeaderParser(policy=email.policy.default)
        ids: Counter[str] = Counter()
        for dump in self.dumps.rglob("*"):
            if dump.is_file():
                ids[str(parser.parsebytes(dump.read_bytes())["Message-ID"])] += 1
        return ids

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)
        shutil.rmtree(self.dumps, ignore_errors=True)


@pytest.fixture
def postfix(free_port: int) -> Iterator[Callable[..., PostfixSink]]:
    started: list[PostfixSink] = []

    def start(*options: str) -> PostfixSink:
        started.append(PostfixSink(free_port, *options))
        return started[-1]

    yield start
    for sink in started:
        sink.stop()


@pytest.fixture
def log(tmp_path: Path) -> Iterator[DeliveryLog]:
    with DeliveryLog(tmp_path / "log.sqlite", "postfix") as opened:
        yield opened


def send(sink: PostfixSink, log: DeliveryLog, count: int, **settings: object) -> SendSummary:
    """Register ``count`` letters and send them to ``sink``."""
    batch = letters(count)
    for item in batch:
        log.register(item)
    smtp = SMTPConfig(host="127.0.0.1", port=sink.port, security="none")
    sending = SendingConfig(**{"retry_delay": 0.01, "timeout": 5.0, "concurrency": 2, **settings})
    return asyncio.run(Sender(smtp, sending, log).send(batch))


def states(log: DeliveryLog) -> Counter[State]:
    return Counter({state: n for state, n in log.counts().items() if n})


def test_every_letter_arrives_once_over_reused_connections(
    postfix: Callable[..., PostfixSink], log: DeliveryLog
) -> None:
    sink = postfix()
    summary = send(sink, log, 300, concurrency=4, max_messages_per_connection=40)
    assert summary.sent == 300
    assert states(log) == {State.SENT: 300}
    received = sink.received_ids()
    assert len(received) == 300
    assert set(received.values()) == {1}
    assert set(received) == {entry.message_id for entry in log.entries()}


def test_hard_refusal_at_rcpt_fails_with_the_server_reply(
    postfix: Callable[..., PostfixSink], log: DeliveryLog
) -> None:
    sink = postfix("-f", "RCPT")
    summary = send(sink, log, 3)
    assert states(log) == {State.FAILED: 3}
    assert summary.failed == 3
    for entry in log.entries():
        assert entry.attempts == 1
        assert entry.last_code is not None and 500 <= entry.last_code < 600
        assert entry.last_reply
    assert sink.received_ids() == Counter()


def test_soft_refusal_is_retried_then_fails_with_the_last_reply(
    postfix: Callable[..., PostfixSink], log: DeliveryLog
) -> None:
    sink = postfix("-r", "RCPT")
    send(sink, log, 2, max_retries=2)
    assert states(log) == {State.FAILED: 2}
    for entry in log.entries():
        assert entry.attempts == 3
        assert entry.last_code is not None and 400 <= entry.last_code < 500


def test_421_and_disconnect_at_mail_is_retried_then_fails(
    postfix: Callable[..., PostfixSink], log: DeliveryLog
) -> None:
    sink = postfix("-Q", "MAIL")
    send(sink, log, 2, max_retries=1)
    assert states(log) == {State.FAILED: 2}
    assert {entry.last_code for entry in log.entries()} == {421}


def test_a_disconnect_after_the_final_dot_is_uncertain_and_not_resent(
    postfix: Callable[..., PostfixSink], log: DeliveryLog
) -> None:
    sink = postfix("-q", ".")
    summary = send(sink, log, 3, max_retries=3)
    assert summary.uncertain == 3
    assert states(log) == {State.UNCERTAIN: 3}
    assert {entry.attempts for entry in log.entries()} == {1}


def test_repeated_failures_pause_the_run_and_leave_the_rest_pending(
    postfix: Callable[..., PostfixSink], log: DeliveryLog
) -> None:
    sink = postfix("-f", "RCPT")
    summary = send(sink, log, 30, concurrency=1, pause_after_failures=5)
    assert summary.stopped_reason is not None and "5 failures in a row" in summary.stopped_reason
    assert states(log) == {State.FAILED: 5, State.PENDING: 25}


def test_a_reply_slower_than_the_timeout_is_retried_then_fails(
    postfix: Callable[..., PostfixSink], log: DeliveryLog
) -> None:
    # -p: without PIPELINING, as smtp-sink's -W sends the replies that follow a delayed one first.
    sink = postfix("-p", "-W", "RCPT:2")
    send(sink, log, 1, timeout=0.5, max_retries=1)
    (entry,) = log.entries()
    assert entry.state is State.FAILED
    assert entry.attempts == 2
    assert entry.last_reply == "no reply to RCPT TO within 0.5 s"
