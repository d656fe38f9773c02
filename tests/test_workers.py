"""send --workers N: worker processes sharing one SQLite queue, killed and restarted mid-run."""

from __future__ import annotations

import bisect
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mailaction import workers
from mailaction.config import load_config
from mailaction.delivery import Hooks, SendOptions, SendPlan, send_campaign
from mailaction.deliverylog import DeliveryLog, State
from mailaction.errors import InvalidCampaign
from tests.campaigns import RecordingSink, numbered_campaign
from tests.processes import started_another, worker_pids

LETTERS = 300
RATE = 100
# The kill test at issue 17's size: 5,000 letters at 250/s (20 s or more), a worker killed every
# 0.5-1 s, 20 times; the parent restarts a worker in about a second (no planning).
KILL_LETTERS = 5_000
KILL_RATE = 250
KILLS = 20
KILL_EVERY = (0.5, 1.0)  # seconds between kills


def start_send(config: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(config), *extra],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def busiest_second(arrivals: list[float]) -> int:
    """The most arrivals in any window of one second."""
    times = sorted(arrivals)
    return max((bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)), default=0)


def check_delivery(states: dict[str, State], sink: RecordingSink, letters: int) -> None:
    """Every sent letter arrived once, an uncertain one at most once, nothing else arrived; the
    log's count of sent letters is the sink's count of letters it did not lose track of."""
    assert len(states) == letters
    assert set(states.values()) <= {State.SENT, State.UNCERTAIN}, Counter(states.values())
    received = sink.received
    assert set(received) <= set(states)
    for message_id, state in states.items():
        assert received[message_id] == 1 if state is State.SENT else received[message_id] <= 1
    uncertain_arrived = sum(received[m] for m, s in states.items() if s is State.UNCERTAIN)
    sent = sum(state is State.SENT for state in states.values())
    assert sum(received.values()) == sent + uncertain_arrived


def log_states(path: Path, campaign: str) -> dict[str, State]:
    with DeliveryLog(path, campaign) as log:
        return {entry.message_id: entry.state for entry in log.entries()}


@pytest.fixture
def campaign(tmp_path: Path, sink: RecordingSink) -> Path:
    return numbered_campaign(
        tmp_path, sink.port, LETTERS, "workers", f'rate = "{RATE}/s"\nconcurrency = 3'
    )


def test_killed_workers_are_restarted_and_nothing_arrives_twice(
    tmp_path: Path, sink: RecordingSink
) -> None:
    """Issue 17's kill test: 5,000 letters; a random worker of `send --workers 3` is killed 20
    times while letters remain, and the parent starts another each time."""
    config = numbered_campaign(
        tmp_path, sink.port, KILL_LETTERS, "workers", f'rate = "{KILL_RATE}/s"\nconcurrency = 3'
    )
    randomness = random.Random(20261201)
    errors = tmp_path / "stderr.txt"
    with errors.open("wb") as stderr:  # not a pipe: nobody reads it until the end
        process = subprocess.Popen(
            [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(config),
             "--workers", "3"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        )  # fmt: skip
    arrived_at_kills: list[int] = []
    seen: set[int] = set()
    deadline = time.monotonic() + 300
    while process.poll() is None and len(arrived_at_kills) < KILLS:
        assert time.monotonic() < deadline, f"{len(arrived_at_kills)} kills in 300 s"
        time.sleep(randomness.uniform(*KILL_EVERY))
        pids = worker_pids(process.pid)
        seen.update(pids)
        if sink.arrivals and pids:
            os.kill(randomness.choice(pids), signal.SIGKILL)
            arrived_at_kills.append(len(sink.arrivals))
    replaced = started_another(process.pid, seen)
    process.wait(timeout=300)
    output = errors.read_text(encoding="utf-8", errors="replace")
    assert process.returncode in (0, 1), output
    assert "Traceback" not in output
    assert len(arrived_at_kills) == KILLS, f"the run ended after {len(arrived_at_kills)} kills"
    assert replaced, "no worker was started after the last kill"
    assert arrived_at_kills[-1] <= KILL_LETTERS - 500, f"late kills: {arrived_at_kills}"
    check_delivery(log_states(config.parent / "workers.sqlite", "workers"), sink, KILL_LETTERS)
    assert busiest_second([at for at, _ in sink.arrivals]) <= KILL_RATE


def test_workers_share_the_rate_and_all_letters_arrive_once(
    campaign: Path, sink: RecordingSink
) -> None:
    process = start_send(campaign, "--workers", "3")
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert b"300 letters sent" in stdout
    assert Counter(sink.received.values()) == Counter({1: LETTERS})
    assert busiest_second([at for at, _ in sink.arrivals]) <= RATE
    with DeliveryLog(campaign.parent / "workers.sqlite", "workers") as log:
        assert log.counts()[State.SENT] == LETTERS
        assert {entry.state for entry in log.entries()} == {State.SENT}


def test_workers_keep_a_queue_per_domain(tmp_path: Path, sink: RecordingSink) -> None:
    """Issue 18's three domains, 20 letters each at 5/s a domain, with two workers: the domains
    go side by side (the limits allow about 4 s), each at its own rate across both workers."""
    config = numbered_campaign(
        tmp_path, sink.port, 60, "domains", 'per_domain_rate = "5/s"\nconcurrency = 8'
    )
    domains = ("example.org", "example.net", "example.com")
    rows = "".join(f"p{n}@{domains[n // 20]},{n}\n" for n in range(60))
    (tmp_path / "contacts.csv").write_text("email,n\n" + rows, encoding="utf-8")
    process = start_send(config, "--workers", "2")
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 0, stderr.decode()
    assert Counter(sink.received.values()) == Counter({1: 60})
    times = {domain: sorted(found) for domain, found in sink.by_domain.items()}
    assert {domain: len(found) for domain, found in times.items()} == dict.fromkeys(domains, 20)
    assert {domain: busiest_second(found) for domain, found in times.items()} == dict.fromkeys(
        domains, 5
    )
    first = min(found[0] for found in times.values())
    # Each domain starts with the run and ends about 3.8 s on; one after another takes 12 s.
    assert all(found[0] - first < 0.5 for found in times.values()), times
    assert all(found[-1] - first < 1.3 * 4.0 for found in times.values()), times


def test_ctrl_c_stops_every_worker_and_a_rerun_finishes(campaign: Path, sink: RecordingSink) -> None:
    process = start_send(campaign, "--workers", "2")
    deadline = time.monotonic() + 60
    while len(sink.arrivals) < 20:
        assert process.poll() is None and time.monotonic() < deadline, "the send did not start"
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr.decode()
    states = log_states(campaign.parent / "workers.sqlite", "workers")
    assert State.SENDING not in states.values()
    assert sum(sink.received.values()) == sum(s is State.SENT for s in states.values()) < LETTERS
    rerun = subprocess.run(
        [sys.executable, "-m", "mailaction", "send", "--yes", "--config", str(campaign),
         "--workers", "2"],
        check=False, stdin=subprocess.DEVNULL, capture_output=True, timeout=120,
    )  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr.decode()
    assert Counter(sink.received.values()) == Counter({1: LETTERS})


def test_workers_must_be_a_number_or_auto(campaign: Path) -> None:
    for bad in ("0", "two", "-1"):
        result = start_send(campaign, "--workers", bad)
        _, stderr = result.communicate(timeout=60)
        assert result.returncode == 2
        assert f"{bad!r} is not a number of workers" in stderr.decode()


@pytest.mark.parametrize("ending", ["invalid row", "declined", "sent"])
def test_standby_workers_leave_with_the_run_however_it_ends(
    tmp_path: Path, sink: RecordingSink, ending: str
) -> None:
    config_path = numbered_campaign(tmp_path, sink.port, 40, "standby", "concurrency = 2")
    if ending == "invalid row":
        with (tmp_path / "contacts.csv").open("a", encoding="utf-8") as contacts:
            contacts.write("not-an-address,99\n")
    started: list[int] = []

    def plan(_: SendPlan) -> None:  # the standby workers wait while the plan is shown
        started.extend(child.pid or 0 for child in multiprocessing.active_children())

    hooks = Hooks(plan=plan, confirm=lambda _: ending == "sent")
    try:
        result = send_campaign(load_config(config_path), SendOptions(workers=2), hooks)
    except InvalidCampaign:
        assert ending == "invalid row"
    else:
        assert result.declined == (ending == "declined")

    assert multiprocessing.active_children() == []
    assert len(started) == (0 if ending == "invalid row" else 2)
    assert sink.count == (40 if ending == "sent" else 0)


def test_a_killed_send_leaves_no_standby_worker(tmp_path: Path, sink: RecordingSink) -> None:
    config = numbered_campaign(tmp_path, sink.port, 60_000, "orphans", "concurrency = 2")
    process = start_send(config, "--workers", "2")
    deadline = time.monotonic() + 20
    while len(worker_pids(process.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)  # two standby workers, forked before the plan
    children = worker_pids(process.pid)
    assert len(children) >= 2
    process.kill()
    process.wait()
    deadline = time.monotonic() + 5

    def alive() -> list[int]:
        return [pid for pid in children if Path(f"/proc/{pid}").exists()]

    while alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert alive() == []
    assert sink.count == 0


def test_the_progress_counts_the_log_for_at_most_a_small_share_of_the_time(tmp_path: Path) -> None:
    """Counting reads the whole campaign, so the parent of the workers counts a large log less
    often than it looks at its workers; the last count, when the run ends, is never put off."""
    counted: list[float] = []
    settled_in_run = 3  # from the third count on (the run's first), a letter reads as sent

    class SlowToCount(DeliveryLog):
        def counts(self) -> dict[State, int]:
            counted.append(time.monotonic())
            time.sleep(0.02)  # as a campaign of some 50,000 letters takes
            found = super().counts()
            found[State.SENT] += len(counted) > settled_in_run
            return found

    with SlowToCount(tmp_path / "log.sqlite", "spring") as log:
        supervisor = workers._Supervisor(job=None, log=log, on_interrupt=None, standby=None)
        advanced: list[tuple[State, int]] = []
        seen = dict.fromkeys(State, 0)
        for _ in range(10):
            seen = supervisor._show(seen, lambda state, count: advanced.append((state, count)))
        assert len(counted) == 1
        time.sleep(0.02 / workers.COUNTING_SHARE)
        supervisor._show(seen, lambda state, count: None)
        assert len(counted) == 2
        finished = supervisor.run(0, lambda state, count: advanced.append((state, count)))
        assert finished.summary.sent == 1
        assert advanced == [(State.SENT, 1)]  # the last progress, not put off
        assert len(counted) == 4  # before and after the run: the log is not read twice at its end
