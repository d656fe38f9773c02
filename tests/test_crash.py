"""Real processes killed mid-campaign: nothing lost, nothing sent twice, the log stays honest."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mailaction.deliverylog import DeliveryLog, State
from tests.campaigns import RecordingSink, numbered_campaign

LETTERS = 120


@pytest.fixture
def campaign(tmp_path: Path, sink: RecordingSink) -> Path:
    return numbered_campaign(
        tmp_path, sink.port, LETTERS, "crash", 'rate = "150/s"\nconcurrency = 3\nretry_delay = 0.01'
    )


def start_send(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(config), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def run_send(config: Path) -> subprocess.CompletedProcess[bytes]:
    """A whole `send` run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(config)],
        check=False, stdin=subprocess.DEVNULL, capture_output=True, timeout=60,
    )  # fmt: skip


def wait_for_sending(sink: RecordingSink, at_least: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while len(sink.arrivals) < at_least and process.poll() is None:
        assert time.monotonic() < deadline, "the send did not start"
        time.sleep(0.01)


def final_states(config: Path) -> dict[str, State]:
    with DeliveryLog(config.parent / "crash.sqlite", "crash") as log:
        return {entry.message_id: entry.state for entry in log.entries()}


def test_kill_9_loop_loses_nothing_and_duplicates_nothing(campaign: Path, sink: RecordingSink) -> None:
    randomness = random.Random(20261125)
    for _ in range(30):
        before = len(sink.arrivals)
        process = start_send(campaign)
        wait_for_sending(sink, before + 1, process)
        time.sleep(randomness.uniform(0, 0.05))
        process.kill()
        process.wait()
        # The whole campaign is queued before the first letter goes: the log counts all of it.
        assert len(final_states(campaign)) == LETTERS
    finish = run_send(campaign)
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
def test_signal_stops_cleanly_and_a_rerun_finishes(campaign: Path, sink: RecordingSink, signum: int) -> None:
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
    rerun = run_send(campaign)
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert Counter(sink.received.values()) == Counter({1: LETTERS})


def test_a_second_send_on_the_same_log_is_refused(tmp_path: Path, sink: RecordingSink) -> None:
    # Slow enough (12 s) that the first run is still going on a loaded machine when the second starts.
    campaign = numbered_campaign(tmp_path, sink.port, LETTERS, "crash", 'rate = "10/s"')
    first = start_send(campaign)
    try:
        wait_for_sending(sink, 1, first)
        assert first.poll() is None
        second = run_send(campaign)
        assert first.poll() is None, "the first run ended before the second could be refused"
        assert second.returncode == 2
        assert b"another" in second.stderr and b"Traceback" not in second.stderr
    finally:
        os.kill(first.pid, signal.SIGINT)
        first.communicate(timeout=30)
    assert max(sink.received.values()) == 1
