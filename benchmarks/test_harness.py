"""Tests of the benchmark harness itself: `pytest benchmarks` (not part of `make test`)."""

from __future__ import annotations

import csv
import itertools
import json
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import write_contacts
from servers import SMTP_SINK, SMTP_SOURCE, PostfixSink, SlowSink, run_timed
from summary import (
    Figure,
    Target,
    achieved_rate,
    cpu_reference,
    markdown,
    max_in_window,
    ratio,
    update_document,
    write_results,
)

HERE = Path(__file__).resolve().parent


def test_max_in_window_counts_half_open_windows() -> None:
    assert max_in_window([]) == 0
    assert max_in_window([0.0, 0.5, 0.999, 1.0, 1.5]) == 3
    assert max_in_window([0.0, 1.0, 2.0]) == 1
    assert max_in_window([0.0, 0.1, 0.2, 5.0, 5.0, 5.0, 5.9]) == 4


def test_max_in_window_matches_brute_force_on_a_burst() -> None:
    times = [n * 0.005 for n in range(400)] + [2.0 + n * 0.001 for n in range(300)]
    brute = max(sum(1 for u in times if t <= u < t + 1.0) for t in times)
    assert max_in_window(times) == brute == 440  # [1.3, 2.3): 140 + the burst of 300


def test_achieved_rate_is_intervals_per_span() -> None:
    assert achieved_rate([10.0 + n * 0.005 for n in range(201)]) == pytest.approx(200)
    assert achieved_rate([1.0]) == 0.0


def test_figures_give_median_verdict_and_ratio() -> None:
    fast = Figure("s", "fast", "letters/s", [3100.0, 2900.0, 3500.0], Target(">=", 3000))
    slow = Figure("s", "slow", "letters/s", [500.0, 700.0, 600.0])
    assert (fast.median, fast.verdict) == (3100.0, "PASS")
    share = ratio("s", "fast ÷ slow", fast, slow, Target(">=", 6))
    assert share.median == pytest.approx(3100 / 600)
    assert share.verdict == "FAIL"
    info = {"date": "2025-01-02 03:04:05", "host": "h", "cpu_count": 2, "cpu_model": "cpu",
            "python": "3.11", "os": "os", "kernel": "k", "commit": "abc", "load": (0.5, 1.0),
            "cpu_reference": (101.0, 99.0)}  # fmt: skip
    page = markdown([fast, slow, share], info, quick=False)
    assert "| fast | 3,100 letters/s | 2,900 letters/s | 3,500 letters/s | 3 | ≥ 3,000" in page
    assert "| fast ÷ slow | 5.17× | – | – | – | ≥ 6.00× | FAIL |" in page
    assert "at the start and the end: 101 ms and 99 ms" in page


def test_a_limit_for_every_repetition_fails_on_one_over() -> None:
    busiest = Figure("s", "busiest", "letters", [200.0, 201.0, 199.0], Target("<=", 200, every=True))
    assert (busiest.median, busiest.verdict) == (200.0, "FAIL")
    busiest.values[1] = 200.0
    assert busiest.verdict == "PASS"
    assert busiest.target is not None and busiest.target.shown("letters") == "≤ 200 letters in every rep"


def test_the_cpu_reference_is_a_positive_time() -> None:
    assert 0 < cpu_reference() < 60_000


def test_generated_contacts_are_distinct(tmp_path: Path) -> None:
    with write_contacts(tmp_path / "c.csv", 500).open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file))
    assert len(rows) == 500
    assert len({row["email"] for row in rows}) == 500
    assert all(
        row["email"].rsplit("@")[1] in {"example.org", "example.com", "example.net"} for row in rows
    )


def test_slow_sink_delays_each_reply_and_records_arrivals() -> None:
    with SlowSink(0.05, record=True) as sink:
        started = time.monotonic()
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
            greeted = time.monotonic() - started
            client.ehlo()
            for n in range(3):
                client.sendmail("a@example.org", ["b@example.org"], f"Subject: {n}\r\n\r\nhi\r\n")
        times = sink.arrivals()
    assert greeted >= 0.05
    assert len(times) == 3
    # Each letter waits for MAIL, RCPT and DATA replies before its data goes out.
    assert all(later - earlier >= 0.15 for earlier, later in itertools.pairwise(times))


def test_slow_sink_with_ids_counts_each_message_id_when_it_arrives() -> None:
    with SlowSink(0, ids=True) as sink:
        with smtplib.SMTP("127.0.0.1", sink.port, timeout=10) as client:
            for n in (1, 2, 1):
                body = f"Subject: {n}\r\nMessage-ID: <m{n}@example.org>\r\n\r\nMessage-ID: no\r\n"
                client.sendmail("a@example.org", ["b@example.org"], body)
            client.sendmail("a@example.org", ["b@example.org"], "Subject: none\r\n\r\nhi\r\n")
        arrivals = sink.identified()
    assert [message_id for _, message_id in arrivals] == [
        "<m1@example.org>", "<m2@example.org>", "<m1@example.org>", "-"
    ]
    assert [at for at, _ in arrivals] == sorted(at for at, _ in arrivals)


def test_results_of_some_sections_do_not_overwrite_the_full_run(tmp_path: Path) -> None:
    info = {"date": "2025-01-02 03:04:05", "host": "h", "cpu_count": 2, "cpu_model": "cpu",
            "python": "3.11", "os": "os", "kernel": "k", "commit": "c"}  # fmt: skip
    figures = [Figure("s", "x", "s", [1.0])]
    assert write_results(figures, info, tmp_path, quick=False)[0].name == "2025-01-02-h.md"
    some = write_results(figures, info, tmp_path, quick=False, only=["kills", "workers"])
    assert some[0].name == "2025-01-02-h-kills-workers.md"


@pytest.mark.skipif(not SMTP_SINK.exists(), reason="smtp-sink is not installed")
def test_postfix_sink_counts_what_smtp_source_and_raw_aiosmtplib_send() -> None:
    with PostfixSink() as sink:
        subprocess.run(
            [str(SMTP_SOURCE), "-d", "-s", "2", "-m", "50", f"127.0.0.1:{sink.port}"], check=True
        )
        assert sink.received() == 50
        command = [sys.executable, str(HERE / "raw_aiosmtplib.py"), "--port", str(sink.port),
                   "--count", "40", "--concurrency", "4"]  # fmt: skip
        finished = run_timed(command, timeout=60).check("raw_aiosmtplib.py")
        assert json.loads(finished.output)["letters"] == 40
        assert sink.received() == 90


def test_run_timed_reports_exit_status_and_peak_memory() -> None:
    grow = "x = bytearray(64 * 1024 * 1024); x[::4096] = b'1' * len(x[::4096]); print('ok')"
    finished = run_timed([sys.executable, "-c", grow], timeout=60)
    assert (finished.returncode, finished.output.strip()) == (0, "ok")
    assert finished.max_rss_mib >= 64
    failed = run_timed([sys.executable, "-c", "raise SystemExit('broken')"], timeout=60)
    assert failed.returncode == 1
    with pytest.raises(Exception, match="exited with 1: broken"):
        failed.check("the command")


def test_the_peak_memory_is_the_commands_not_the_benchmarks() -> None:
    # A child's ru_maxrss keeps the peak of the process it was forked from, up to its exec:
    # a large benchmark process made every command it timed as large (a 40 MiB report was
    # recorded as 68 and 91 MiB).
    ballast = bytearray(256 * 1024 * 1024)
    ballast[::4096] = b"1" * len(ballast[::4096])
    finished = run_timed([sys.executable, "-c", "print('small')"], timeout=60)
    assert finished.output.strip() == "small"
    assert finished.max_rss_mib < 64
    killed = run_timed([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"], timeout=60)
    assert killed.returncode == -signal.SIGKILL
    del ballast


def test_slow_sink_answers_pipelined_commands_after_one_delay() -> None:
    with SlowSink(0.1) as sink, socket.create_connection(("127.0.0.1", sink.port), 10) as conn:
        replies = conn.makefile("rb")
        assert replies.readline().startswith(b"220")
        conn.sendall(b"EHLO client.example.org\r\n")
        ehlo = [replies.readline()]
        while ehlo[-1][3:4] == b"-":
            ehlo.append(replies.readline())
        assert b"250-PIPELINING\r\n" in ehlo
        started = time.monotonic()
        conn.sendall(b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
        codes = [replies.readline()[:3] for _ in range(3)]
        waited = time.monotonic() - started
    assert codes == [b"250", b"250", b"354"]
    assert 0.1 <= waited < 0.2


def test_update_document_replaces_only_between_the_markers(tmp_path: Path) -> None:
    doc = tmp_path / "performance.md"
    doc.write_text("# P\n\n<!-- results:start (x) -->\nold\n<!-- results:end -->\n\n## After\n")
    update_document(doc, "new table\n")
    update_document(doc, "newer table\n")
    assert doc.read_text() == (
        "# P\n\n<!-- results:start (x) -->\nnewer table\n<!-- results:end -->\n\n## After\n"
    )
