"""Issue-level guarantees of `send` on a real local server: volume once each, rate never exceeded."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailaction.cli import main
from mailaction.sink import Sink, StoredMessage


class TimingSink(Sink):
    """A sink that records each Message-ID and when it arrived."""

    def __init__(self, maildir: Path) -> None:
        self.arrivals: list[tuple[float, str]] = []
        super().__init__(maildir, on_message=self._note)

    def _note(self, message: StoredMessage) -> None:
        self.arrivals.append((time.monotonic(), message.message_id))


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[TimingSink]:
    with TimingSink(tmp_path / "maildir") as server:
        yield server


def campaign(folder: Path, port: int, count: int, sending: str) -> Path:
    (folder / "letter.txt").write_text(
        "To: Supporter {{ n }} <{{ email }}>\nFrom: Campaign <campaign@example.org>\n"
        "Subject: Letter {{ n }}\n\nDear supporter {{ n }},\n\nThank you.\n",
        encoding="utf-8",
    )
    rows = "".join(f"p{n}@example.org,{n}\n" for n in range(count))
    (folder / "contacts.csv").write_text("email,n\n" + rows, encoding="utf-8")
    config = folder / "mailaction.toml"
    config.write_text(
        '[campaign]\nname = "volume"\ntemplate = "letter.txt"\ncontacts = "contacts.csv"\n\n'
        f"[smtp]\nport = {port}\n\n[sending]\n{sending}\n",
        encoding="utf-8",
    )
    return config


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


def test_a_thousand_letters_over_8_connections_arrive_once_each(tmp_path: Path, sink: TimingSink) -> None:
    send(campaign(tmp_path, sink.port, 1000, "concurrency = 8"))
    received = Counter(message_id for _, message_id in sink.arrivals)
    assert len(received) == 1000
    assert set(received.values()) == {1}


def test_no_one_second_window_sees_more_than_the_rate(tmp_path: Path, sink: TimingSink) -> None:
    send(campaign(tmp_path, sink.port, 150, 'concurrency = 8\nrate = "50/s"'))
    times = [moment for moment, _ in sink.arrivals]
    assert len(times) == 150
    assert busiest_second(times) <= 50
    achieved = (len(times) - 1) / (max(times) - min(times))
    assert achieved >= 0.9 * 50
