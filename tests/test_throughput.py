"""Issue-level guarantees of `send` on a real local server: volume once each, rate never exceeded."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mailaction.cli import main
from tests.campaigns import RecordingSink, numbered_campaign


def send(config: Path) -> None:
    result = CliRunner().invoke(main, ["send", "--yes", "--config", str(config)])
    assert result.exit_code == 0, result.output


def busiest_second(times: list[float]) -> int:
    """The most arrivals in any window of one second (two pointers over sorted times)."""
    times = sorted(times)
    most, start = 0, 0
    for end, moment in enumerate(times):
        while moment - times[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def test_a_thousand_letters_over_8_connections_arrive_once_each(tmp_path: Path, sink: RecordingSink) -> None:
    send(numbered_campaign(tmp_path, sink.port, 1000, "volume", "concurrency = 8"))
    received = sink.received
    assert len(received) == 1000
    assert set(received.values()) == {1}


def test_no_one_second_window_sees_more_than_the_rate(tmp_path: Path, sink: RecordingSink) -> None:
    send(numbered_campaign(tmp_path, sink.port, 150, "volume", 'concurrency = 8\nrate = "50/s"'))
    times = [moment for moment, _ in sink.arrivals]
    assert len(times) == 150
    assert busiest_second(times) <= 50
    achieved = (len(times) - 1) / (max(times) - min(times))
    assert achieved >= 0.9 * 50
