"""What a person at a terminal sees: names printed as written, the question, Ctrl-C and Ctrl-D."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from click.testing import CliRunner

from mailaction.cli import main
from tests.campaigns import RecordingSink, numbered_campaign
from tests.terminal import Terminal

MARKUP = "Stop [/] now [bold]:fire:"


def test_names_with_rich_markup_are_printed_as_written(tmp_path: Path, sink: RecordingSink) -> None:
    config = numbered_campaign(tmp_path, sink.port, 3, MARKUP, "concurrency = 1")
    text = config.read_text(encoding="utf-8").replace("contacts.csv", "[red]list.csv")
    config.write_text(text, encoding="utf-8")
    (tmp_path / "contacts.csv").rename(tmp_path / "[red]list.csv")

    checked = CliRunner().invoke(main, ["validate", "--config", str(config)])
    sent = CliRunner().invoke(main, ["send", "--yes", "--config", str(config)])

    assert checked.exit_code == 0, checked.output
    assert "([red]list.csv with letter.txt)" in checked.output
    assert sent.exit_code == 0, sent.output
    assert f"Campaign {MARKUP}: 3 letters" in sent.output
    assert len(sink.arrivals) == 3


def test_ctrl_d_at_the_question_sends_nothing_and_exits_0(tmp_path: Path, sink: RecordingSink) -> None:
    config = numbered_campaign(tmp_path, sink.port, 3, "Ctrl-D", "concurrency = 1")
    with Terminal("send", "--config", str(config), cwd=tmp_path) as terminal:
        terminal.wait_for("[y/N]")
        terminal.type(b"\x04")
        code = terminal.finish()
    assert code == 0, terminal.output
    assert b"Nothing was sent." in terminal.output
    assert b"Aborted" not in terminal.output
    assert sink.arrivals == []


def test_the_stopping_line_starts_a_line_of_its_own(tmp_path: Path, sink: RecordingSink) -> None:
    config = numbered_campaign(tmp_path, sink.port, 60, "Stopping", 'rate = "20/s"\nconcurrency = 2')
    with Terminal("send", "--config", str(config), cwd=tmp_path) as terminal:
        terminal.wait_for("[y/N]")
        terminal.type(b"y\n")
        terminal.wait_for("/60")
        deadline = time.monotonic() + 20
        while len(sink.arrivals) < 5:
            assert time.monotonic() < deadline, terminal.output
            time.sleep(0.02)
        terminal.process.send_signal(signal.SIGINT)
        code = terminal.finish()
    assert code == 130, terminal.output
    # Printed at the start of a line, or of a line the bar was erased from, never after the bar.
    assert re.search(rb"(\n|\r\x1b\[2K)Stopping after the letters in flight", terminal.output)
    assert len(sink.arrivals) < 60
