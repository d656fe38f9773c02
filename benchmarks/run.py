"""Runs every mailaction benchmark side by side and writes the results.

    .venv/bin/python benchmarks/run.py             the full run (about 12 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py --quick     small sizes, one repetition (under a minute)
    .venv/bin/python benchmarks/run.py --only ratelimit --only validate
    .venv/bin/python benchmarks/run.py --only kills   issue 17's kill tests at full size (~3 min)

Results go to benchmarks/results/<date>-<host>.md and .json (<date>-<host>-<sections>.md with
--only). Run benchmarks/setup.sh first
(`make bench` does) for smtp-sink, smtp-source and the mailmerge environment. Only loopback is used.
The exit status is 1 when a benchmark could not run; a missed target is reported, not an error.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Self

sys.path.insert(0, str(Path(__file__).resolve().parent))

from data import (
    write_contacts,
    write_mailaction_config,
    write_mailmerge_config,
    write_template,
)
from dkim_cost import DOMAIN, SELECTOR, build_letters, make_key, per_letter, signers
from kills import kills
from servers import (
    SMTP_SINK,
    SMTP_SOURCE,
    BenchmarkError,
    Finished,
    PostfixSink,
    SlowSink,
    run_timed,
)
from summary import (
    Figure,
    Target,
    achieved_rate,
    cpu_reference,
    machine,
    markdown,
    max_in_window,
    print_table,
    ratio,
    update_document,
    write_results,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
PERFORMANCE_DOC = HERE.parent / "docs" / "performance.md"
BENCH_VENV = HERE / ".venv-mailmerge" / "bin"
MAILACTION = Path(sys.executable).with_name("mailaction")


@dataclass(frozen=True)
class Sizes:
    """How much each benchmark does."""

    repetitions: int
    letters: int  # throughput, mailaction and the transport baselines
    small_letters: int  # throughput of a small campaign: mailaction and raw aiosmtplib
    concurrencies: tuple[int, ...]
    mailmerge_letters: int
    slow_letters: int  # latency-bound, mailaction
    slow_mailmerge_letters: int
    rate_seconds: float
    validate_rows: tuple[int, ...]
    validate_budget: float  # seconds for the repetitions of the largest validate run
    scale_letters: tuple[int, ...]  # whole campaigns sent once each: cost per letter, memory
    worker_letters: int  # send --workers 1 and 2, side by side
    kill_letters: int  # the kill runs: workers killed and restarted, on SQLite and PostgreSQL
    kills: int


FULL = Sizes(
    3, 10_000, 5_000, (1, 4, 8, 16), 1_000, 2_000, 100, 20.0, (100_000, 1_000_000), 400.0,
    (10_000, 100_000, 300_000), 20_000, 5_000, 20,
)  # fmt: skip
QUICK = Sizes(
    1, 1_000, 500, (1, 8), 100, 200, 10, 2.0, (10_000, 50_000), 30.0, (2_000, 5_000, 10_000), 2_000,
    1_000, 3,
)  # fmt: skip
NAMES = ("throughput", "latency", "ratelimit", "validate", "scale", "dkim", "workers", "kills")
DELAY = 0.020  # the latency-bound sink's wait before each reply
RATES = (200, 50)  # letters per second for the rate-limit benchmark


class Bench:
    """Shared state of one run: scratch space, generated inputs, the clock, progress lines."""

    def __init__(self, scratch: Path, sizes: Sizes) -> None:
        self.scratch = scratch
        self.sizes = sizes
        self.started = time.monotonic()
        self.template = write_template(scratch / "letter.txt")
        self._contacts: dict[int, Path] = {}
        self._runs = itertools.count(1)

    def say(self, text: str) -> None:
        """One progress line with the time since the start."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {text}", flush=True)

    def contacts(self, count: int) -> Path:
        """A generated contact list of ``count`` rows, made once per run."""
        if count not in self._contacts:
            self.say(f"generating {count:,} contacts")
            self._contacts[count] = write_contacts(self.scratch / f"contacts-{count}.csv", count)
        return self._contacts[count]

    def fresh_dir(self, label: str) -> Path:
        """An empty directory for one command: its config and delivery log."""
        path = self.scratch / f"{next(self._runs):03d}-{label}"
        path.mkdir()
        return path

    def mailaction_config(
        self, port: int, letters: int, concurrency: int, rate: str | None = None
    ) -> tuple[Path, Path]:
        """A config in a fresh directory, so every run starts with an empty delivery log."""
        directory = self.fresh_dir(f"mailaction-c{concurrency}")
        log = directory / "log.sqlite"
        config = write_mailaction_config(
            directory / "mailaction.toml", port=port, template=self.template,
            contacts=self.contacts(letters), log=log, concurrency=concurrency, rate=rate,
        )  # fmt: skip
        return config, log

    def measure(self, rounds: list[tuple[Figure, Callable[[], float]]], budget: float = 0) -> None:
        """Repeat each measurement, interleaved round by round so drift hits all alike.

        With a ``budget`` (seconds), stop repeating once another round would not fit in it.
        A measurement that fails is marked on its figure and not tried again.
        """
        began = time.monotonic()
        for rep in range(1, self.sizes.repetitions + 1):
            round_began = time.monotonic()
            for figure, measure in rounds:
                if figure.error:
                    continue
                try:
                    value = measure()
                except BenchmarkError as exc:
                    figure.error = str(exc)
                    self.say(f"{figure.name}: ERROR {str(exc).splitlines()[0]}")
                    continue
                figure.values.append(value)
                self.say(
                    f"{figure.name} ({rep}/{self.sizes.repetitions}): {value:,.1f} {figure.unit}"
                )
            spent = time.monotonic() - began
            if budget and spent + (time.monotonic() - round_began) > budget:
                if rep < self.sizes.repetitions:
                    self.say(
                        f"stopping after {rep} repetition(s): the next would pass {budget:g} s"
                    )
                break


def raw_seconds(port: int, count: int, python: Path | None = None, *flags: str) -> float:
    """Seconds benchmarks/raw_aiosmtplib.py takes to send ``count`` pre-built letters over 8
    connections (the transport baseline; building them is not timed)."""
    command = [str(python or sys.executable), str(HERE / "raw_aiosmtplib.py"), "--port",
               str(port), "--count", str(count), "--concurrency", "8", *flags]  # fmt: skip
    finished = run_timed(command, timeout=900).check("raw_aiosmtplib.py")
    return float(json.loads(finished.output.strip().splitlines()[-1])["seconds"])


def mailaction_send(config: Path, *options: str, timeout: float) -> Finished:
    """`mailaction send --yes` in a subprocess, which must succeed."""
    command = [str(MAILACTION), "send", "--yes", "--config", str(config), *options]
    return run_timed(command, timeout=timeout, cwd=config.parent).check("mailaction send")


def sent_in_log(log: Path) -> int:
    """Letters the delivery log records as sent."""
    with sqlite3.connect(log) as db:
        return db.execute("SELECT count(*) FROM letters WHERE state = 'sent'").fetchone()[0]


def delivery_seconds(log: Path) -> float:
    """From the first letter tried to the last one sent, as the delivery log records them."""
    with sqlite3.connect(log) as db:
        first, last = db.execute(
            "SELECT min(first_attempt_at), max(sent_at) FROM letters WHERE state = 'sent'"
        ).fetchone()
    return float(last - first)


def expect(what: str, got: int, wanted: int) -> None:
    if got != wanted:
        raise BenchmarkError(f"{what}: {got:,} letters arrived, {wanted:,} expected")


def mailmerge_send(bench: Bench, port: int, letters: int) -> Finished:
    """The mailmerge CLI sending ``letters`` rows of the same campaign."""
    directory = bench.fresh_dir("mailmerge")
    config = write_mailmerge_config(directory / "mailmerge_server.conf", port=port)
    command = [
        str(BENCH_VENV / "mailmerge"), "--no-dry-run", "--no-limit", "--output-format", "text",
        "--template", str(bench.template), "--database", str(bench.contacts(letters)),
        "--config", str(config),
    ]  # fmt: skip
    return run_timed(command, timeout=600, cwd=directory).check("mailmerge")


def throughput(bench: Bench) -> list[Figure]:
    """Full pipeline against smtp-sink at several concurrencies, and the baselines beside it."""
    sizes = bench.sizes
    letters = sizes.letters
    section = f"Throughput: {letters:,} letters to smtp-sink"
    if not SMTP_SINK.exists():
        raise BenchmarkError("smtp-sink is not installed; run benchmarks/setup.sh")
    with PostfixSink() as sink:

        def counted(what: str, wanted: int, run: Callable[[], float]) -> float:
            before = sink.received()
            seconds = run()
            expect(what, sink.received() - before, wanted)
            return wanted / seconds

        def smtp_source() -> float:
            command = [str(SMTP_SOURCE), "-d", "-s", "8", "-m", str(letters), "-l", "2500",
                       f"127.0.0.1:{sink.port}"]  # fmt: skip
            return run_timed(command, timeout=120).check("smtp-source").seconds

        def raw(python: Path, *flags: str, count: int = letters) -> Callable[[], float]:
            return lambda: raw_seconds(sink.port, count, python, *flags)

        def mailaction(concurrency: int, count: int = letters) -> Callable[[], float]:
            def run() -> float:
                config, log = bench.mailaction_config(sink.port, count, concurrency)
                seconds = mailaction_send(config, timeout=900).seconds
                expect("mailaction's log", sent_in_log(log), count)
                return seconds

            return run

        def mailmerge() -> float:
            return mailmerge_send(bench, sink.port, sizes.mailmerge_letters).seconds

        rounds: list[tuple[Figure, Callable[[], float]]] = []

        def add(name: str, wanted: int, run: Callable[[], float], **extra: object) -> Figure:
            figure = Figure(section, name, "letters/s", **extra)  # type: ignore[arg-type]
            rounds.append((figure, lambda: counted(name, wanted, run)))
            return figure

        source = add("smtp-source -d -s 8 (C, the loopback limit)", letters, smtp_source)
        raw_figure = add("raw aiosmtplib, pre-built bytes, 8 connections", letters,
                         raw(Path(sys.executable)))  # fmt: skip
        if (BENCH_VENV / "python").exists():
            add(
                "raw aiosmtplib on uvloop, 8 connections",
                letters,
                raw(BENCH_VENV / "python"),
                note="the same script on uvloop's event loop, for the headroom uvloop would give",
            )
        sends = {
            c: add(f"mailaction send, concurrency {c}", letters, mailaction(c),
                   target=Target(">=", 3000) if c == 8 else None)
            for c in sizes.concurrencies
        }  # fmt: skip
        small = sizes.small_letters
        small_raw = add(f"raw aiosmtplib, {small:,} letters, 8 connections", small,
                        raw(Path(sys.executable), count=small))  # fmt: skip
        small_send = add(f"mailaction send, {small:,} letters, concurrency 8", small,
                         mailaction(8, small))  # fmt: skip
        merge = add(f"mailmerge CLI ({sizes.mailmerge_letters:,} rows)", sizes.mailmerge_letters,
                    mailmerge)  # fmt: skip
        if not (BENCH_VENV / "mailmerge").exists():
            merge.error = "benchmarks/.venv-mailmerge is missing; run benchmarks/setup.sh"
        sends[8].note = ("wall time of the whole command: start-up, load, render, validate, "
                         "build, send, delivery log")  # fmt: skip
        bench.measure(rounds)
    top = sends[8]
    return [figure for figure, _ in rounds] + [
        ratio(section, "mailaction c=8 ÷ raw aiosmtplib", top, raw_figure, None),
        ratio(section, f"mailaction ÷ raw aiosmtplib at {small:,}", small_send, small_raw,
              Target(">=", 0.75)),
        ratio(section, "mailaction c=8 ÷ mailmerge", top, merge, Target(">=", 5)),
        ratio(section, "mailaction c=8 ÷ smtp-source", top, source, None),
    ]


def latency(bench: Bench) -> list[Figure]:
    """A sink that waits 20 ms before every reply: mailaction at concurrency 8 vs mailmerge."""
    sizes = bench.sizes
    section = f"Latency-bound: {DELAY * 1000:.0f} ms before every reply (aiosmtpd)"

    def mailaction() -> float:
        with SlowSink(DELAY, record=True) as sink:
            config, _ = bench.mailaction_config(sink.port, sizes.slow_letters, 8)
            seconds = mailaction_send(config, timeout=600).seconds
            expect("slow sink", len(sink.arrivals()), sizes.slow_letters)
        return sizes.slow_letters / seconds

    def mailmerge() -> float:
        with SlowSink(DELAY, record=True) as sink:
            seconds = mailmerge_send(bench, sink.port, sizes.slow_mailmerge_letters).seconds
            expect("slow sink", len(sink.arrivals()), sizes.slow_mailmerge_letters)
        return sizes.slow_mailmerge_letters / seconds

    ours = Figure(section, f"mailaction send, concurrency 8 ({sizes.slow_letters:,} letters)",
                  "letters/s")  # fmt: skip
    theirs = Figure(section, f"mailmerge CLI ({sizes.slow_mailmerge_letters:,} rows)", "letters/s")
    bench.measure([(ours, mailaction), (theirs, mailmerge)])
    return [ours, theirs, ratio(section, "mailaction ÷ mailmerge", ours, theirs, Target(">=", 20))]


def ratelimit(bench: Bench) -> list[Figure]:
    """Arrival times at the sink for each configured rate: achieved rate and the busiest second."""
    return [figure for rate in RATES for figure in _rate(bench, rate)]


def _rate(bench: Bench, rate: int) -> list[Figure]:
    letters = round(rate * bench.sizes.rate_seconds)
    section = f'Rate limit: rate = "{rate}/s", {letters:,} letters'
    achieved = Figure(section, "achieved rate (count - 1) / span at the sink", "letters/s",
                      target=Target(">=", 0.98 * rate))  # fmt: skip
    busiest = Figure(section, "most letters in any 1-second window", "letters",
                     target=Target("<=", rate, every=True))  # fmt: skip

    def run() -> float:
        with SlowSink(0, record=True) as sink:
            config, _ = bench.mailaction_config(sink.port, letters, 8, rate=f"{rate}/s")
            mailaction_send(config, timeout=bench.sizes.rate_seconds * 3 + 60)
            times = sink.arrivals()
        expect("rate sink", len(times), letters)
        busiest.values.append(max_in_window(times))
        bench.say(f"{busiest.name}: {busiest.values[-1]:,}")
        return achieved_rate(times)

    bench.measure([(achieved, run)])
    busiest.error = achieved.error
    return [achieved, busiest]


class TreeMemory:
    """While open, samples the memory of every descendant of this process; keeps the peaks.

    Two sums, sampled together: RSS, in which a page shared by several processes (a forked
    worker shares its parent's) counts once per process, so the sum errs high; and PSS
    (proportional set size), in which such a page is split among the processes sharing it, so
    the sum is the memory the command holds. The worker processes of a command are its children,
    so wait4()'s ru_maxrss (one process's peak) would miss them.
    """

    INTERVAL = 0.1  # seconds; one sample reads /proc/<pid>/stat and smaps_rollup of each process

    def __init__(self) -> None:
        self.peak_rss_mib = 0.0
        self.peak_pss_mib = 0.0
        self._page_mib = os.sysconf("SC_PAGE_SIZE") / 2**20
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.wait(self.INTERVAL):
            rss, pss = 0.0, 0.0
            for pid, pages in self._descendants().items():
                rss += pages * self._page_mib
                pss += _pss_mib(pid)
            self.peak_rss_mib = max(self.peak_rss_mib, rss)
            self.peak_pss_mib = max(self.peak_pss_mib, pss)

    def _descendants(self) -> dict[int, int]:
        """Every descendant of this process right now, with the pages it has resident."""
        children: dict[int, list[int]] = {}
        pages: dict[int, int] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat", "rb") as stat:
                    fields = stat.read().rsplit(b")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            pid = int(entry)
            children.setdefault(int(fields[1]), []).append(pid)  # fields[1]: the parent's pid
            pages[pid] = int(fields[21])  # rss
        found: dict[int, int] = {}
        parents = [os.getpid()]
        while parents:
            for child in children.get(parents.pop(), []):
                found[child] = pages[child]
                parents.append(child)
        return found


def _pss_mib(pid: int) -> float:
    """The process's proportional set size in MiB; 0 once it has ended."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as rollup:
            for line in rollup:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def validate(bench: Bench) -> list[Figure]:
    """`mailaction validate` on large lists: rows per second, wall time and peak memory."""
    sizes = bench.sizes.validate_rows
    largest = max(sizes)
    figures = [
        _validate(bench, rows, budget=bench.sizes.validate_budget if rows == largest else 0)
        for rows in sizes
    ]
    flat = ratio(figures[-1][0].section, f"peak memory, {largest:,} ÷ {min(sizes):,} contacts",
                 figures[-1][2], figures[0][2], None)  # fmt: skip
    flat.note = f"memory flat as the list grows {largest // min(sizes)}-fold: this stays near 1"
    return [figure for group in figures for figure in group] + [flat]


def _validate(bench: Bench, rows: int, *, budget: float) -> list[Figure]:
    section = f"Preflight: mailaction validate, {rows:,} contacts"
    speed = Figure(section, "rows per second (wall time of the command)", "rows/s",
                   target=Target(">=", 25_000))  # fmt: skip
    wall = Figure(section, "wall time", "s")
    memory = Figure(section, "peak memory (PSS)", "MiB",
                    target=Target("<", 400) if budget else None,
                    note="summed over the command's processes (workers included), "
                    f"sampled every {TreeMemory.INTERVAL:g} s")  # fmt: skip
    resident = Figure(section, "peak RSS, summed", "MiB",
                      note="pages shared with forked workers counted once per process")
    directory = bench.fresh_dir(f"validate-{rows}")
    config = write_mailaction_config(
        directory / "mailaction.toml", port=1025, template=bench.template,
        contacts=bench.contacts(rows), log=directory / "log.sqlite", concurrency=1,
    )  # fmt: skip
    command = [str(MAILACTION), "validate", "--config", str(config)]

    def run() -> float:
        with TreeMemory() as tree:
            finished = run_timed(command, timeout=1800, cwd=directory)
        finished.check("mailaction validate")
        wall.values.append(finished.seconds)
        memory.values.append(tree.peak_pss_mib)
        # The sampled sum can miss a short peak; the main process's own exact peak bounds it below.
        resident.values.append(max(finished.max_rss_mib, tree.peak_rss_mib))
        return rows / finished.seconds

    bench.measure([(speed, run)], budget=budget)
    memory.error = resident.error = wall.error = speed.error
    return [speed, wall, memory, resident]


def scale(bench: Bench) -> list[Figure]:
    """Whole campaigns of growing size sent once each: cost per letter, peak memory, the report.

    The delivery log is the queue: every letter is built once, stored, and read back to be sent,
    so the cost per letter and the memory must not grow with the campaign.
    """
    sizes = bench.sizes.scale_letters
    section = f"Scale: one campaign of {', '.join(f'{n:,}' for n in sizes)} letters, concurrency 8"
    if not SMTP_SINK.exists():
        raise BenchmarkError("smtp-sink is not installed; run benchmarks/setup.sh")
    figures: list[Figure] = []
    cost: dict[int, Figure] = {}
    with PostfixSink() as sink:
        for letters in sizes:
            cost[letters] = Figure(section, f"cost per letter, {letters:,} letters", "µs",
                                   note="wall time of the whole `send` ÷ letters")  # fmt: skip
            memory = Figure(section, f"send peak memory (PSS), {letters:,} letters", "MiB",
                            target=Target("<", 250) if letters == max(sizes) else None,
                            note="summed over the command's processes")  # fmt: skip
            resident = Figure(section, f"send peak RSS summed, {letters:,} letters", "MiB",
                              note="pages shared with forked workers counted once per process")
            report = Figure(section, f"report peak RSS, {letters:,} letters", "MiB",
                            target=Target("<", 120) if letters == max(sizes) else None)  # fmt: skip
            figures += (cost[letters], memory, resident, report)
            config, log = bench.mailaction_config(sink.port, letters, 8)
            with TreeMemory() as tree:
                finished = mailaction_send(config, timeout=3600)
            expect("mailaction's log", sent_in_log(log), letters)
            cost[letters].values.append(finished.seconds / letters * 1e6)
            memory.values.append(tree.peak_pss_mib)
            resident.values.append(max(finished.max_rss_mib, tree.peak_rss_mib))
            command = [str(MAILACTION), "report", "--config", str(config), "--format", "json",
                       "-o", str(config.parent / "report.json")]  # fmt: skip
            reported = run_timed(command, timeout=600, cwd=config.parent).check("mailaction report")
            report.values.append(reported.max_rss_mib)
            bench.say(f"{letters:,} letters: {cost[letters].values[0]:,.0f} µs each, "
                      f"{memory.values[0]:,.0f} MiB; report {report.values[0]:,.0f} MiB")  # fmt: skip
        middle = sorted(sizes)[len(sizes) // 2]
        raw = Figure(section, f"raw aiosmtplib, {middle:,} pre-built letters, 8 connections",
                     "letters/s", values=[middle / raw_seconds(sink.port, middle)])  # fmt: skip
        send_rate = Figure(section, f"mailaction send, {middle:,} letters", "letters/s",
                           values=[1e6 / cost[middle].values[0]])  # fmt: skip
        figures += (raw, send_rate)
    largest, smallest = max(sizes), min(sizes)
    flat = ratio(section, f"cost per letter, {largest:,} ÷ {smallest:,}", cost[largest],
                 cost[smallest], Target("<=", 1.15))  # fmt: skip
    return figures + [
        flat,
        ratio(section, f"mailaction ÷ raw aiosmtplib at {middle:,}", send_rate, raw,
              Target(">=", 0.75)),
    ]  # fmt: skip


def workers(bench: Bench) -> list[Figure]:
    """`send --workers 1` and `--workers 2` side by side on one campaign, against smtp-sink."""
    letters = bench.sizes.worker_letters
    section = f"Workers: send --workers 1 and 2, {letters:,} letters to smtp-sink, concurrency 8"
    if not SMTP_SINK.exists():
        raise BenchmarkError("smtp-sink is not installed; run benchmarks/setup.sh")
    rounds: list[tuple[Figure, Callable[[], float]]] = []
    delivery: dict[int, Figure] = {}
    command: dict[int, Figure] = {}
    with PostfixSink() as sink:
        for count in (1, 2):
            walls: list[float] = []

            def run(count: int = count, walls: list[float] = walls) -> float:
                config, log = bench.mailaction_config(sink.port, letters, 8)
                before = sink.received()
                finished = mailaction_send(config, "--workers", str(count), timeout=900)
                expect(f"--workers {count}", sink.received() - before, letters)
                expect(f"--workers {count}, the log", sent_in_log(log), letters)
                walls.append(letters / finished.seconds)
                return letters / delivery_seconds(log)

            delivery[count] = Figure(
                section, f"--workers {count}: sending (first try to last sent, in the log)",
                "letters/s",
            )  # fmt: skip
            command[count] = Figure(section, f"--workers {count}: whole command", "letters/s",
                                    values=walls)  # fmt: skip
            rounds.append((delivery[count], run))
        raw = Figure(section, "raw aiosmtplib, pre-built bytes, 8 connections", "letters/s")
        rounds.append((raw, lambda: letters / raw_seconds(sink.port, letters)))
        bench.measure(rounds)
    delivery[2].note = "planning and queueing stay in one process; the sending is shared"
    return [*delivery.values(), *command.values(), raw,
        ratio(section, "sending, 2 workers ÷ 1", delivery[2], delivery[1], Target(">=", 1.6)),
        ratio(section, "whole command, 2 workers ÷ 1", command[2], command[1], None),
        ratio(section, "whole command, 2 workers ÷ raw aiosmtplib", command[2], raw,
              Target(">=", 1.0)),
    ]  # fmt: skip


def dkim_signing(bench: Bench) -> list[Figure]:
    """DKIM: what signing costs a letter (in process), and `send` with and without it."""
    count = bench.sizes.letters
    section = f"DKIM signing: RSA 2048, {count:,} letters"
    if not SMTP_SINK.exists():
        raise BenchmarkError("smtp-sink is not installed; run benchmarks/setup.sh")
    key = make_key(bench.fresh_dir("dkim-key"))
    ours, dkimpy = signers(key)
    built: list[bytes] = []

    def build() -> float:
        built[:], cost = build_letters(bench.fresh_dir("dkim-letters"), count)
        return cost

    build_figure = Figure(section, "building a letter (render, check, MIME), in process", "µs")
    sign_figure = Figure(section, "signing a letter, mailaction (OpenSSL)", "µs",
                         target=Target("<=", 1000))  # fmt: skip
    dkimpy_figure = Figure(section, "signing a letter, dkimpy (pure-Python RSA; 1 letter in 20)",
                           "µs")  # fmt: skip
    rounds: list[tuple[Figure, Callable[[], float]]] = [
        (build_figure, build),
        (sign_figure, lambda: per_letter(ours, built)),
        (dkimpy_figure, lambda: per_letter(dkimpy, built[: max(len(built) // 20, 10)])),
    ]
    with PostfixSink() as sink:

        def send(signed: bool) -> Callable[[], float]:
            def run() -> float:
                config, log = bench.mailaction_config(sink.port, count, 8)
                if signed:
                    with config.open("a", encoding="utf-8") as out:
                        out.write(f'\n[dkim]\nselector = "{SELECTOR}"\ndomain = "{DOMAIN}"\n'
                                  f'private_key = "{key}"\n')  # fmt: skip
                seconds = mailaction_send(config, timeout=900).seconds
                expect("mailaction's log", sent_in_log(log), count)
                return count / seconds

            return run

        unsigned_figure = Figure(section, "mailaction send, concurrency 8, unsigned", "letters/s")
        signed_figure = Figure(section, "mailaction send, concurrency 8, signed", "letters/s")
        rounds += [(unsigned_figure, send(False)), (signed_figure, send(True))]
        bench.measure(rounds)
    return [figure for figure, _ in rounds] + [
        ratio(section, "signing ÷ building a letter", sign_figure, build_figure, None),
        ratio(section, "send signed ÷ unsigned", signed_figure, unsigned_figure, None),
    ]


BENCHMARKS: dict[str, Callable[[Bench], list[Figure]]] = {
    "throughput": throughput, "latency": latency, "ratelimit": ratelimit, "validate": validate,
    "scale": scale,
    "dkim": dkim_signing,
    "workers": workers,
    "kills": kills,
}  # fmt: skip


def main() -> int:
    """Parse the options, run the chosen benchmarks, write and print the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 repetition, no targets judged (< 60 s)")
    parser.add_argument("--only", action="append", choices=NAMES, help="run only this (repeatable)")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the results")
    args = parser.parse_args()
    if not MAILACTION.exists():
        parser.error(f"{MAILACTION} not found: run with the project's .venv/bin/python")
    sizes = QUICK if args.quick else FULL
    figures: list[Figure] = []
    failed = False
    load_before, reference_before = os.getloadavg()[0], cpu_reference()
    with TemporaryDirectory(prefix="mailaction-bench-") as scratch:
        bench = Bench(Path(scratch), sizes)
        for name in args.only or NAMES:
            bench.say(f"== {name}")
            try:
                found = BENCHMARKS[name](bench)
            except BenchmarkError as exc:
                bench.say(f"{name}: ERROR {exc}")
                found = [Figure(name, name, "", error=str(exc))]
            figures += found
            failed |= any(f.error for f in found)
        bench.say("done")
    if args.quick:  # start-up time dominates at these sizes: the targets are for the full run
        for figure in figures:
            figure.target = None
    info = machine() | {
        "load": (load_before, os.getloadavg()[0]),
        "cpu_reference": (reference_before, cpu_reference()),
    }
    md, js = write_results(figures, info, args.results, quick=args.quick, only=args.only)
    if not args.quick and args.only is None and args.results == RESULTS:
        update_document(PERFORMANCE_DOC, markdown(figures, info, quick=False, level=3))
        print(f"Updated {PERFORMANCE_DOC}")
    print()
    print_table(figures)
    print(f"\nWrote {md} and {js}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
