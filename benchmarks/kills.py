"""Issue 17's kill tests at full size: workers killed with SIGKILL mid-run and restarted.

Each run sends a campaign to a counting sink in its own process (slow_sink.py --ids: each
message's arrival time and Message-ID) with a rate set:

- SQLite, `send --workers 3`: a random worker process (a child of the `send`) is killed every
  0.5-1 s; the `send` gives its letters back and starts another.
- PostgreSQL, three `send` processes on one queue, as on three machines (`--lease 2`): one of
  those delivering (registered in the queue's `workers` table) is killed and started again,
  at least 1-2 s after the last kill and once another 1/25 of the letters were sent, so the
  20 kills are spread over the first 80 % of the run and the last ones started have letters
  left to send once they have planned. A `send` started again plans against the whole queue
  before it delivers, which takes seconds, so a process still planning is not a worker yet
  and is not chosen; killed every 1-3 s regardless, the three were all planning most of the
  time, and 20 kills came before a tenth of the letters was sent.

Then: every `sent` letter arrived once, an `uncertain` one at most once, no other letter
arrived, the log's counts equal the sink's, and no 1-s window at the sink held more than the
rate. A run that breaks one of these is reported as a FAIL, with the figure that shows it, and
`run.py` exits with 1. How the run went (20 kills, letters left at the last one, letters the
restarted processes sent) has targets too, reported but not an error: a quick run is too short
for them.
"""

from __future__ import annotations

import itertools
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from servers import BenchmarkError, SlowSink
from summary import Figure, Target, max_in_window

if TYPE_CHECKING:
    from run import Bench

ROOT = Path(__file__).resolve().parent.parent
MAILACTION = Path(sys.executable).with_name("mailaction")
SQLITE_EVERY = (0.5, 1.0)  # seconds between kills
POSTGRES_EVERY = (1.0, 2.0)  # at least; and once another 1/kills of 80 % of the letters went
POSTGRES_SPREAD = 0.8  # the last kill once this share of the letters was sent
SQLITE_RATE = 250  # letters per second
POSTGRES_RATE = 100  # lower: kills wait for a restarted `send` to plan before it is a worker
TIMEOUT = 900.0  # seconds for one run, kills and all


@dataclass
class Kill:
    """One SIGKILL: when, how far the run was, and what the killed worker held."""

    at: float  # seconds since the run started
    sent: int  # letters the log called sent at that moment
    held: int | None = None  # letters the worker had claimed and not settled (PostgreSQL)
    sending: int | None = None  # of which `sending`: their data may be on its way


@dataclass
class KillRun:
    """What one run did and what arrived."""

    letters: int
    rate: int
    kills: list[Kill] = field(default_factory=list)
    states: dict[str, str] = field(default_factory=dict)  # Message-ID -> state in the log
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    seconds: float = 0.0
    restarted_sent: int | None = None  # letters sent by restarted `send`s never killed (PostgreSQL)
    problems: list[str] = field(default_factory=list)  # exit codes, tracebacks, no replacement


def kills(bench: Bench) -> list[Figure]:
    """Both kill runs; their figures."""
    sizes = bench.sizes
    figures = _figures(
        f"Kills: send --workers 3 on SQLite, {sizes.kill_letters:,} letters at {SQLITE_RATE}/s, "
        f"a worker killed every {SQLITE_EVERY[0]:g}-{SQLITE_EVERY[1]:g} s",
        lambda: _sqlite_run(bench, sizes.kill_letters, sizes.kills),
        sizes.kills,
    )
    figures += _figures(
        f"Kills: three send on one PostgreSQL queue, {sizes.kill_letters:,} letters at "
        f"{POSTGRES_RATE}/s, a delivering worker killed every "
        f"{int(sizes.kill_letters * POSTGRES_SPREAD) // sizes.kills:,} letters",
        lambda: _postgres_run(bench, sizes.kill_letters, sizes.kills),
        sizes.kills,
    )
    return figures


def _figures(section: str, run: Callable[[], KillRun], wanted_kills: int) -> list[Figure]:
    try:
        result = run()
    except BenchmarkError as exc:
        return [Figure(section, "the run", "", error=str(exc))]
    received = Counter(message_id for _, message_id in result.arrivals)
    sent = [m for m, state in result.states.items() if state == "sent"]
    uncertain = [m for m, state in result.states.items() if state == "uncertain"]
    uncertain_arrived = sum(min(received[m], 1) for m in uncertain)
    duplicates = sum(count - 1 for count in received.values() if count > 1)
    strangers = sum(count for m, count in received.items() if m not in result.states)
    others = len(result.states) - len(sent) - len(uncertain)
    lost = sum(received[m] == 0 for m in sent)
    busiest = max_in_window([at for at, _ in result.arrivals])
    last = result.kills[-1] if result.kills else None
    zero = Target("<=", 0)  # the promises: nothing twice, nothing lost, counts equal, the rate
    rate = Target("<=", result.rate, every=True)

    def figure(name: str, unit: str, value: float, target: Target | None = None,
               note: str = "") -> Figure:  # fmt: skip
        return Figure(section, name, unit, [value], target, note)

    found = [
        figure("letters in the log", "letters", len(result.states),
               Target(">=", result.letters)),
        figure("kills (SIGKILL, then a worker started again)", "kills", len(result.kills),
               Target(">=", wanted_kills), "seconds into the run (letters sent then): " + ", ".join(
                   f"{kill.at:.1f} ({kill.sent:,})" for kill in result.kills)),
        figure("letters not yet sent when the last kill came", "letters",
               result.letters - last.sent if last else 0, Target(">=", result.letters // 10),
               "the worker started after it had letters left to send"),
        figure("sent letters that arrived exactly once", "letters",
               sum(received[m] == 1 for m in sent)),
        figure("uncertain letters (killed while sending)", "letters", len(uncertain)),
        figure("uncertain letters that arrived (once)", "letters", uncertain_arrived),
        figure("letters arrived twice or more (extra copies)", "letters", duplicates, zero),
        figure("sent letters that never arrived", "letters", lost, zero),
        figure("arrivals of letters not in the log", "letters", strangers, zero),
        figure("letters neither sent nor uncertain at the end", "letters", others, zero),
        figure("sink's arrivals - (log's sent + uncertain that arrived)", "letters",
               abs(len(result.arrivals) - len(sent) - uncertain_arrived), zero,
               "0: the log's counts equal the sink's"),
        figure("most letters in any 1-second window at the sink", "letters", busiest, rate),
        figure("whole run, first process started to last ended", "s", result.seconds),
    ]  # fmt: skip
    gaps = sorted(b.at - a.at for a, b in itertools.pairwise(result.kills))
    if gaps:
        found.append(figure("seconds between kills, median (min-max)", "s", gaps[len(gaps) // 2],
                            note=f"{gaps[0]:.1f}-{gaps[-1]:.1f} s"))  # fmt: skip
    if result.restarted_sent is not None:
        found.append(figure("letters sent by the send processes started again, never killed",
                            "letters", result.restarted_sent, Target(">", 0)))  # fmt: skip
    held = [k.held for k in result.kills if k.held is not None]
    if held:
        found.append(figure("letters held by the killed worker, summed over the kills", "letters",
                            sum(held), note="claimed, not settled: given back after the lease"))  # fmt: skip
    for problem in result.problems:
        found.append(Figure(section, "a process", "", error=problem))
    promises = [f for f in found if f.target in (zero, rate)]
    failed = [f.name for f in promises if f.verdict == "FAIL"]
    if failed:  # not a missed target: a promise broken; the run exits with 1
        found.append(Figure(section, "the checks", "", error="FAIL: " + "; ".join(failed)))
    return found


def _sqlite_run(bench: Bench, letters: int, wanted: int) -> KillRun:
    sys.path.insert(0, str(ROOT))
    from tests.processes import started_another, worker_pids

    result = KillRun(letters, SQLITE_RATE)
    with SlowSink(0, ids=True) as sink:
        config, log = bench.mailaction_config(sink.port, letters, 3, rate=f"{SQLITE_RATE}/s")
        output = config.parent / "output.txt"
        randomness = random.Random(20261201)
        started = time.monotonic()
        bench.say(f"sqlite: {letters:,} letters, killing a worker {wanted} times")
        process = _start([str(MAILACTION), "send", "--yes", "--config", str(config),
                          "--workers", "3"], output)  # fmt: skip
        try:
            seen: set[int] = set()
            while process.poll() is None and len(result.kills) < wanted:
                _within(started)
                time.sleep(randomness.uniform(*SQLITE_EVERY))
                pids = worker_pids(process.pid)
                seen.update(pids)
                sent = _sent_in_sqlite(log)
                if pids and sent:
                    _kill(randomness.choice(pids))
                    result.kills.append(Kill(time.monotonic() - started, sent))
                    _say_kill(bench, result)
            if not started_another(process.pid, seen):
                result.problems.append("no worker was started after the last kill")
            _wait(process, started)
        finally:
            _stop_group(process)
        result.seconds = time.monotonic() - started
        _check_output(result, "send --workers 3", process, output)
        result.arrivals = sink.identified()
    with closing(sqlite3.connect(log)) as db:
        result.states = dict(db.execute("SELECT message_id, state FROM letters").fetchall())
    bench.say(f"sqlite: {len(result.kills)} kills, {result.seconds:.1f} s")
    return result


def _postgres_run(bench: Bench, letters: int, wanted: int) -> KillRun:
    sys.path.insert(0, str(ROOT))
    import psycopg

    from tests.postgres import PostgresServer, find_initdb

    initdb = find_initdb()
    if initdb is None:
        raise BenchmarkError("PostgreSQL is not installed (initdb not found)")
    result = KillRun(letters, POSTGRES_RATE)
    with PostgresServer(initdb) as server, SlowSink(0, ids=True) as sink:
        url = server.new_database()
        config, _ = bench.mailaction_config(sink.port, letters, 3, rate=f"{POSTGRES_RATE}/s")
        text = config.read_text(encoding="utf-8")
        config.write_text(_with_log(text, url), encoding="utf-8")
        command = [str(MAILACTION), "send", "--yes", "--config", str(config), "--lease", "2"]
        outputs = [config.parent / f"output-{n}.txt" for n in range(3)]
        randomness = random.Random(20261201)
        started = time.monotonic()
        bench.say(f"postgresql: {letters:,} letters, killing a worker {wanted} times")
        senders = [_start(command, outputs[n]) for n in range(3)]
        restarted = [False] * 3
        try:
            with psycopg.connect(url, autocommit=True) as db:
                while len(result.kills) < wanted and any(s.poll() is None for s in senders):
                    _within(started)
                    time.sleep(randomness.uniform(*POSTGRES_EVERY))
                    due = int((len(result.kills) + 1) * letters * POSTGRES_SPREAD) // wanted
                    workers = _postgres_workers(db, senders)
                    while (not workers or _sent_in_postgres(db) < due) and any(
                        s.poll() is None for s in senders
                    ):
                        _within(started)
                        time.sleep(0.1)
                        workers = _postgres_workers(db, senders)
                    if not workers:
                        break
                    victim, worker = randomness.choice(sorted(workers.items()))
                    _kill(senders[victim].pid)
                    senders[victim].wait()
                    result.kills.append(_postgres_kill(db, worker, started))
                    _say_kill(bench, result)
                    _check_output(result, f"send {victim + 1}", senders[victim], outputs[victim])
                    senders[victim] = _start(command, outputs[victim])
                    restarted[victim] = True
            result.restarted_sent = 0
            for n, sender in enumerate(senders):
                _wait(sender, started)
                _check_output(result, f"send {n + 1}", sender, outputs[n])
                if restarted[n]:
                    result.restarted_sent += _sent_by_last(outputs[n])
        finally:
            for sender in senders:
                _stop_group(sender)
        result.seconds = time.monotonic() - started
        result.arrivals = sink.identified()
        with psycopg.connect(url) as db:
            result.states = dict(db.execute("SELECT message_id, state FROM letters").fetchall())
    bench.say(f"postgresql: {len(result.kills)} kills, {result.seconds:.1f} s")
    return result


def _say_kill(bench: Bench, result: KillRun) -> None:
    kill = result.kills[-1]
    held = "" if kill.held is None else f"; it held {kill.held} letters, {kill.sending} sending"
    bench.say(f"kill {len(result.kills)} at {kill.at:.1f} s, {kill.sent:,} letters sent{held}")


def _sent_in_postgres(db: Any) -> int:
    return int(_rows(db, "SELECT count(*) FROM letters WHERE state = 'sent'", [(0,)])[0][0])


def _rows(db: Any, sql: str, before: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The rows of a query on the queue; ``before`` while the first `send` has not made it."""
    import psycopg

    try:
        return list(db.execute(sql).fetchall())
    except psycopg.errors.UndefinedTable:
        return before


def _sent_by_last(output: Path) -> int:
    """Letters the last `send` writing to ``output`` sent ("This run: 1,234 letters sent");
    the ones before it were killed before they could say."""
    found = _THIS_RUN.findall(output.read_text(encoding="utf-8", errors="replace"))
    return int(found[-1].replace(",", "")) if found else 0


_THIS_RUN = re.compile(r"This run: ([\d,]+) letters? sent")


def _with_log(config: str, url: str) -> str:
    """The config's `log = "..."` line pointing at ``url`` instead."""
    lines = [f'log = "{url}"' if line.startswith("log = ") else line for line in config.split("\n")]
    return "\n".join(lines)


def _postgres_workers(db: Any, senders: list[subprocess.Popen[bytes]]) -> dict[int, str]:
    """The senders (by index) registered as workers in the queue now: those delivering."""
    pids = {sender.pid: n for n, sender in enumerate(senders) if sender.poll() is None}
    found = {}
    for (worker,) in _rows(db, "SELECT id FROM workers", []):
        pid = int(worker.rsplit(":", 2)[1])  # host:pid:random (workers.worker_id)
        if pid in pids:
            found[pids[pid]] = worker
    return found


def _postgres_kill(db: Any, worker: str, started: float) -> Kill:
    """The kill just made: letters sent so far, and what the killed worker held."""
    sent, held, sending = db.execute(
        "SELECT count(*) FILTER (WHERE state = 'sent'),"
        " count(*) FILTER (WHERE claimed_by = %s AND state IN ('pending', 'sending', 'deferred')),"
        " count(*) FILTER (WHERE claimed_by = %s AND state = 'sending') FROM letters",
        (worker, worker),
    ).fetchone()
    return Kill(time.monotonic() - started, sent, held, sending)


def _start(command: list[str], output: Path) -> subprocess.Popen[bytes]:
    """A process in a session of its own (so it can be stopped with all its workers), its
    output appended to ``output``."""
    with output.open("ab") as out:
        return subprocess.Popen(
            command, cwd=output.parent, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Kill what is left of a process and its workers (after a failure or a timeout)."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def _within(started: float) -> None:
    if time.monotonic() - started > TIMEOUT:
        raise BenchmarkError(f"the run did not end within {TIMEOUT:g} s")


def _wait(process: subprocess.Popen[bytes], started: float) -> None:
    try:
        process.wait(timeout=max(TIMEOUT - (time.monotonic() - started), 1))
    except subprocess.TimeoutExpired:
        raise BenchmarkError(f"the run did not end within {TIMEOUT:g} s") from None


def _check_output(
    result: KillRun, what: str, process: subprocess.Popen[bytes], output: Path
) -> None:
    """Note a process that ended badly: an exit status other than 0 or 1 (1: letters
    uncertain), a traceback."""
    text = output.read_text(encoding="utf-8", errors="replace")
    if "Traceback" in text:
        result.problems.append(f"{what}: a traceback: {text[text.rindex('Traceback'):][:2000]}")
    code = process.returncode
    if code not in (0, 1, -signal.SIGKILL):
        result.problems.append(f"{what} exited with {code}: {text[-500:]}")


def _sent_in_sqlite(log: Path) -> int:
    try:
        with closing(sqlite3.connect(log, timeout=1)) as db:
            return int(db.execute("SELECT count(*) FROM letters WHERE state = 'sent'").fetchone()[0])
    except sqlite3.Error:
        return 0  # not created yet, or busy: try again at the next kill
