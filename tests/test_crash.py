"""Real processes killed mid-campaign: nothing lost, nothing sent twice, the log stays honest."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailaction.deliverylog import DeliveryLog, State
from mailaction.sink import Sink, StoredMessage

LETTERS = 120


class CountingSink(Sink):
    """A sink that counts received Message-IDs."""

    def __init__(self, maildir: Path) -> None:
        self.received: Counter[str] = Counter()
        super().__init__(maildir, on_message=self._count)

    def _count(self, message: StoredMessage) -> None:
        self.received[message.message_id] += 1


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[CountingSink]:
    with CountingSink(tmp_path / "maildir") as server:
        yield server


@pytest.fixture
def campaign(tmp_path: Path, sink: CountingSink) -> Path:
    (tmp_path / "letter.txt").write_text(
        "To: <{{ email }}>\nFrom: Campaign <campaign@example.org>\nSubject: Letter {{ n }}\n\nHello {{ n }}.\n",
        encoding="utf-8",
    )
    rows = "".join(f"p{n}@example.org,{n}\n" for n in range(LETTERS))
    (tmp_path / "contacts.csv").write_text("email,n\n" + rows, encoding="utf-8")
    config = tmp_path / "mailaction.toml"
    config.write_text(
        f"""
[campaign]
name = "crash"
template = "letter.txt"
contacts = "contacts.csv"

[smtp]
port = {sink.port}

[sending]
rate = "150/s"
concurrency = 3
retry_delay = 0.01
""",
        encoding="utf-8",
    )
    return config


def start_send(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(config), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def wait_for_sending(sink: CountingSink, at_least: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while sum(sink.received.values()) < at_least and process.poll() is None:
        assert time.monotonic() < deadline, "the send did not start"
        time.sleep(0.01)


def final_states(config: Path) -> dict[str, State]:
    with DeliveryLog(config.parent / "crash.sqlite", "crash") as log:
        return {entry.message_id: entry.state for entry in log.entries()}


def test_kill_9_loop_loses_nothing_and_duplicates_nothing(campaign: Path, sink: CountingSink) -> None:
    randomness = random.Random(20261125)
    for _ in range(20):
        before = sum(sink.received.values())
        process = start_send(campaign)
        wait_for_sending(sink, before + 1, process)
        time.sleep(randomness.uniform(0, 0.05))
        process.kill()
        process.wait()
    finish = subprocess.run(
        [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(campaign)],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
    )  # fmt: skip
    assert finish.returncode in (0, 1), finish.stderr.decode()
    states = final_states(campaign)
    assert len(states) == LETTERS
    assert set(states.values()) <= {State.SENT, State.UNCERTAIN}
    for message_id, state in states.items():
        if state is State.SENT:
            assert sink.received[message_id] == 1, message_id
        else:
            assert sink.received[message_id] <= 1, message_id
    assert set(sink.received) <= set(states)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_cleanly_and_a_rerun_finishes(campaign: Path, sink: CountingSink, signum: int) -> None:
    process = start_send(campaign)
    wait_for_sending(sink, 5, process)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr.decode()
    assert b"Traceback" not in stderr
    states = final_states(campaign)
    assert State.SENDING not in states.values()
    assert State.UNCERTAIN not in states.values()
    assert sum(sink.received.values()) == sum(s is State.SENT for s in states.values())
    rerun = subprocess.run(
        [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(campaign)],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert Counter(sink.received.values()) == Counter({1: LETTERS})


def test_a_second_send_on_the_same_log_is_refused(campaign: Path, sink: CountingSink) -> None:
    first = start_send(campaign)
    try:
        wait_for_sending(sink, 1, first)
        second = subprocess.run(
            [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(campaign)],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
        )  # fmt: skip
        assert second.returncode == 2
        assert b"another" in second.stderr and b"Traceback" not in second.stderr
    finally:
        os.kill(first.pid, signal.SIGINT)
        first.communicate(timeout=30)
    assert max(sink.received.values()) == 1
