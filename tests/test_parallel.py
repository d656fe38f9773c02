"""Validation and letters built in worker processes give exactly what one process gives."""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from mailaction import campaign as campaign_module
from mailaction import parallel
from mailaction.campaign import Campaign, PreparedRow
from mailaction.config import load_config
from mailaction.delivery import send_campaign
from mailaction.deliverylog import DeliveryLog, State
from mailaction.parallel import ordered_map
from tests.campaigns import RecordingSink, numbered_campaign

MAILACTION = Path(sys.executable).with_name("mailaction")

TEMPLATE = """\
To: {{ name }} <{{ email }}>
From: Campaign <campaign@example.org>
Subject: {{ subject }}

Dear {{ name }},

Thank you.
"""


def write_campaign(folder: Path, count: int) -> Path:
    """A campaign of ``count`` contacts, a few of them bad in each way; returns its config."""
    with (folder / "contacts.csv").open("w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["email", "name", "subject"])
        for n in range(count):
            email, subject = f"p{n}@example.org", f"Letter {n}"
            if n % 97 == 5:
                email = f"p{n}@"
            if n % 89 == 7:
                subject = f"Letter {n}\r\nBcc: everyone@example.net"
            if n % 83 == 11:
                email = f"p{n - 3}@example.org"
            if n % 251 == 13:
                email = ""
            writer.writerow([email, f"Person {n}", subject])
    (folder / "letter.txt").write_text(TEMPLATE, encoding="utf-8")
    config = folder / "mailaction.toml"
    config.write_text(
        '[campaign]\nname = "Parallel"\ntemplate = "letter.txt"\ncontacts = "contacts.csv"\n',
        encoding="utf-8",
    )
    return config


@pytest.mark.parametrize("keep", [100, 10_000])
def test_workers_find_the_same_problems_in_the_same_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keep: int
) -> None:
    config = load_config(write_campaign(tmp_path, 3_000))
    monkeypatch.setattr(campaign_module, "CHUNK_ROWS", 64)  # many chunks, several in flight

    alone = Campaign(config).validate(keep=keep, workers=0)
    shared = Campaign(config).validate(keep=keep, workers=2)

    assert shared == alone
    assert alone.invalid_rows > 100 and alone.ready > 2_500
    fields = {problem.field for problem in alone.problems}
    assert {"email", "To", "Subject"} <= fields


@pytest.fixture
def pools(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The size of each pool of workers the campaign starts, in order."""
    started: list[int] = []

    def counted_ordered_map(*args: Any, **kwargs: Any) -> Iterator[Any]:
        started.append(kwargs["workers"])
        return ordered_map(*args, **kwargs)

    monkeypatch.setattr(campaign_module, "ordered_map", counted_ordered_map)
    return started


@pytest.mark.parametrize("large", [False, True])
def test_only_contact_files_past_the_threshold_start_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pools: list[int], large: bool
) -> None:
    config = load_config(write_campaign(tmp_path, 1_500))
    size = (tmp_path / "contacts.csv").stat().st_size
    monkeypatch.setattr(campaign_module, "PARALLEL_FROM", size if large else size + 1)
    monkeypatch.setattr(campaign_module, "CHUNK_ROWS", 100)
    monkeypatch.setattr(campaign_module, "pool_size", lambda: 2)

    shared = Campaign(config).validate(keep=1_000)

    assert pools == ([2] if large else [])
    assert shared == Campaign(config).validate(keep=1_000, workers=0)


def _worker_pid(chunk: int) -> int:
    if chunk == 3:
        raise ZeroDivisionError("a bug in a worker")
    return os.getpid()


def _nothing() -> None:
    pass


def test_an_exception_in_a_worker_is_raised_in_the_main_process() -> None:
    results = ordered_map(_worker_pid, ((n, n) for n in range(8)), workers=2, initializer=_nothing)
    with pytest.raises(ZeroDivisionError, match="a bug in a worker"):
        list(results)


def test_an_interrupt_in_the_main_process_stops_the_workers() -> None:
    pids: list[int] = []

    def chunks() -> Iterator[tuple[int, int]]:
        for n in range(100):
            if len(pids) >= 4:
                raise KeyboardInterrupt
            yield n, n + 100

    with pytest.raises(KeyboardInterrupt):
        for _, pid in ordered_map(_worker_pid, chunks(), workers=2, initializer=_nothing):
            pids.append(pid)

    assert pids and os.getpid() not in pids
    for pid in set(pids):
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_a_ctrl_c_while_a_worker_starts_is_raised_once_it_has_started() -> None:
    finished = False
    with pytest.raises(KeyboardInterrupt), parallel.interrupts_held():
        signal.raise_signal(signal.SIGINT)
        finished = True

    assert finished


def _session_size(session: int) -> int:
    """Processes alive in a session (Linux /proc)."""
    count = 0
    for entry in os.listdir("/proc"):
        try:
            stat = (Path("/proc") / entry / "stat").read_text()
        except (OSError, ValueError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[3]) == session:
            count += 1
    return count


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_ctrl_c_during_validate_exits_130_without_tracebacks(tmp_path: Path) -> None:
    config = write_campaign(tmp_path, 200_000)
    process = subprocess.Popen(
        [str(MAILACTION), "validate", "--config", str(config)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while _session_size(process.pid) < 1 + parallel.pool_size() and time.monotonic() < deadline:
        time.sleep(0.05)  # the main process and its workers
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: every process in the group
    _, stderr = process.communicate(timeout=20)

    assert process.returncode == 130
    assert "Interrupted." in stderr.decode()
    assert "Traceback" not in stderr.decode()
    deadline = time.monotonic() + 5  # the workers follow the main process
    while _session_size(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _session_size(process.pid) == 0


def test_cli_counts_bad_rows_checked_by_workers_like_one_process(tmp_path: Path) -> None:
    config = write_campaign(tmp_path, 30_000)
    assert (tmp_path / "contacts.csv").stat().st_size >= campaign_module.PARALLEL_FROM  # workers
    alone = Campaign(load_config(config)).validate(workers=0)

    finished = subprocess.run(
        [str(MAILACTION), "validate", "--config", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip

    assert finished.returncode == 2
    printed = finished.stdout + finished.stderr
    said = finished.stdout.splitlines()
    assert said[0] == "contacts.csv, header on row 1"
    assert [str(problem) for problem in alone.problems] == said[1:101]
    assert (
        f"{alone.problem_count} problem(s) in {alone.invalid_rows} row(s) of contacts.csv "
        f"with letter.txt; {alone.ready} letter(s) ready."
    ) in " ".join(printed.split())


def undated(rows: Iterable[PreparedRow]) -> list[PreparedRow]:
    """The rows with their letters' Date header (the second they were built) left out."""
    return [
        replace(row, letter=replace(row.letter, data=re.sub(rb"\r\nDate: [^\r]*", b"", row.letter.data)))
        if row.letter is not None else row
        for row in rows
    ]  # fmt: skip


def test_letters_built_by_workers_are_the_letters_built_here(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(write_campaign(tmp_path, 600))
    monkeypatch.setattr(campaign_module, "CHUNK_ROWS", 50)

    alone = undated(Campaign(config).rows(workers=0))
    shared = undated(Campaign(config).rows(workers=2))

    assert shared == alone
    built = [prepared.letter for prepared in alone if prepared.letter is not None]
    assert len(built) > 550 and all(letter.data for letter in built)
    assert any(prepared.problems and prepared.letter is None for prepared in alone)


def test_letters_with_attachments_are_built_in_this_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_path = write_campaign(tmp_path, 20)
    (tmp_path / "leaflet.pdf").write_bytes(b"%PDF-1.4 leaflet\n" * 500)
    letter = tmp_path / "letter.txt"
    letter.write_text(letter.read_text().replace("Subject:", "Attachment: leaflet.pdf\nSubject:"))
    pools: list[int] = []
    monkeypatch.setattr(campaign_module, "ordered_map", lambda *a, **k: pools.append(1) or iter(()))

    prepared = list(Campaign(load_config(config_path)).rows(workers=2))

    assert pools == []
    assert all(b"leaflet.pdf" in row.letter.data for row in prepared if row.letter is not None)


def test_a_large_campaign_is_built_by_workers_and_sent_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pools: list[int], sink: RecordingSink
) -> None:
    config_path = numbered_campaign(tmp_path, sink.port, 400, "built", "concurrency = 4")
    monkeypatch.setattr(campaign_module, "PARALLEL_FROM", 0)
    monkeypatch.setattr(campaign_module, "CHUNK_ROWS", 64)
    monkeypatch.setattr(campaign_module, "pool_size", lambda: 2)

    result = send_campaign(load_config(config_path))

    assert pools == [2]  # one per core; this process reads and queues meanwhile
    assert result.summary.sent == 400
    assert Counter(sink.received.values()) == Counter({1: 400})
    with DeliveryLog(tmp_path / "built.sqlite", "built") as log:
        assert log.counts()[State.SENT] == 400
        assert all(f"p{entry.row - 2}@example.org" == entry.contact_id for entry in log.entries())


def planning_send(folder: Path, sink: RecordingSink, name: str) -> subprocess.Popen[bytes]:
    """`send` of 150,000 letters in a session of its own, once its workers build the plan."""
    config = numbered_campaign(folder, sink.port, 150_000, name, "concurrency = 2")
    process = subprocess.Popen(
        [str(MAILACTION), "send", "--yes", "--config", str(config)],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 20
    while _session_size(process.pid) < 1 + parallel.pool_size() and time.monotonic() < deadline:
        time.sleep(0.05)  # the main process and its workers
    assert _session_size(process.pid) == 1 + parallel.pool_size()
    return process


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_ctrl_c_while_workers_build_the_plan_queues_and_sends_nothing(
    tmp_path: Path, sink: RecordingSink
) -> None:
    process = planning_send(tmp_path, sink, "stopped")
    os.killpg(process.pid, signal.SIGINT)
    _, stderr = process.communicate(timeout=30)

    assert process.returncode == 130, stderr.decode()
    assert "Interrupted." in stderr.decode() and "Traceback" not in stderr.decode()
    assert sink.count == 0
    with DeliveryLog(tmp_path / "stopped.sqlite", "stopped") as log:
        assert sum(log.counts().values()) == 0


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_of_a_killed_send_leave_and_free_the_log(tmp_path: Path, sink: RecordingSink) -> None:
    process = planning_send(tmp_path, sink, "killed")
    process.kill()
    process.communicate(timeout=30)  # the workers hold the output pipes too, until they leave
    deadline = time.monotonic() + 5  # the workers find their parent gone within ORPHAN_POLL
    while _session_size(process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)

    assert _session_size(process.pid) == 0
    assert sink.count == 0
    with DeliveryLog(tmp_path / "killed.sqlite", "killed", lock=True) as log:  # free again
        assert sum(log.counts().values()) == 0
