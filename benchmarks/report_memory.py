"""Peak memory and time of `mailaction report` on a large delivery log, in every format.

    .venv/bin/python benchmarks/report_memory.py                  300,000 letters (a few minutes)
    .venv/bin/python benchmarks/report_memory.py --letters 20000  a quick look

The log is filled through DeliveryLog's own API: most letters sent, some failed,
deferred, uncertain or partly refused, a tail still pending. Each format runs as its own
`mailaction report` process; its peak RSS is that process's own high-water mark (wait4). The
target, at 300,000 letters: under 120 MiB whatever the format. Results go to
benchmarks/results/<date>-<host>-report.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from tempfile import TemporaryDirectory

sys.path.insert(0, str(Path(__file__).resolve().parent))

from servers import run_timed
from summary import Figure, Target, cpu_reference, machine, markdown, print_table

from mailaction.deliverylog import DeliveryLog, Outcome, State
from mailaction.message import Letter

HERE = Path(__file__).resolve().parent
MAILACTION = Path(sys.executable).with_name("mailaction")
CAMPAIGN = "Report benchmark"
FORMATS = ("table", "csv", "json", "html")
TARGET_MIB = 120
TARGET_LETTERS = 300_000
OUTCOMES = {
    97: Outcome(State.FAILED, 550, "5.1.1 <p@example.org>: Recipient address rejected"),
    89: Outcome(State.DEFERRED, 451, "4.7.1 Greylisted, please try again later"),
    83: Outcome(State.UNCERTAIN, None, "connection lost after the message data was sent"),
    79: Outcome(State.SENT, 250, "2.0.0 Ok", {"press@example.net": "550 5.1.1 no such user"}),
}
SENT = Outcome(State.SENT, 250, "2.0.0 Ok: queued")


def fill_log(path: Path, letters: int) -> None:
    """A campaign of `letters` letters; the last 2% still pending."""
    with DeliveryLog(path, CAMPAIGN) as log:
        for number in range(letters):
            address = f"supporter{number}@example.org"
            letter = Letter(
                row=number + 2, contact_id=address, sender="campaign@example.org",
                recipients=(address, "press@example.net"),
                subject=f"Release Maryia Kalesnikava — letter {number}",
                message_id=f"<{number}.report-benchmark@example.org>", fingerprint=f"{number:x}",
                data=b"Subject: Release Maryia Kalesnikava\r\n\r\nDear Minister,\r\n",
            )  # fmt: skip
            log.register(letter)
        log.flush()
        for number in range(letters * 98 // 100):
            address = f"supporter{number}@example.org"
            log.mark_sending(address)
            outcome = next((o for k, o in OUTCOMES.items() if number % k == 0 and number), SENT)
            log.mark_outcome(address, outcome)


def measure(directory: Path, log: Path, fmt: str) -> tuple[float, float, int]:
    """Seconds, peak RSS in MiB and output size in bytes of one `mailaction report`."""
    output = directory / f"report.{fmt}"
    command = [str(MAILACTION), "report", "--log", str(log), "--format", fmt, "-o", str(output)]
    finished = run_timed(command, timeout=1800, cwd=directory).check(f"report --format {fmt}")
    return finished.seconds, finished.max_rss_mib, output.stat().st_size


def main() -> int:
    """Fill a log, report it in every format, write and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=TARGET_LETTERS, help="letters in the log")
    parser.add_argument("--results", type=Path, default=HERE / "results", help="where to write")
    args = parser.parse_args()
    figures: list[Figure] = []
    load_before, reference_before = os.getloadavg()[0], cpu_reference()
    with TemporaryDirectory(prefix="mailaction-report-bench-") as scratch:
        log = Path(scratch) / "log.sqlite"
        started = time.perf_counter()
        fill_log(log, args.letters)
        print(f"filled a log of {args.letters:,} letters in {time.perf_counter() - started:.0f} s")
        section = f"mailaction report, delivery log of {args.letters:,} letters"
        target = Target("<", TARGET_MIB) if args.letters >= TARGET_LETTERS else None
        for fmt in FORMATS:
            seconds, peak, size = measure(Path(scratch), log, fmt)
            print(f"--format {fmt}: {seconds:.1f} s, peak RSS {peak:.1f} MiB, {size:,} bytes")
            figures += [
                Figure(section, f"--format {fmt}: peak RSS", "MiB", [peak], target),
                Figure(section, f"--format {fmt}: wall time", "s", [seconds]),
            ]
    info = machine() | {
        "load": (load_before, os.getloadavg()[0]),
        "cpu_reference": (reference_before, cpu_reference()),
    }
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", info["host"]).strip("-") or "machine"
    stem = args.results / f"{info['date'][:10]}-{host}-report"
    args.results.mkdir(parents=True, exist_ok=True)
    stem.with_suffix(".md").write_text(markdown(figures, info, quick=False), encoding="utf-8")
    document = {"machine": info, "figures": [figure.as_json() for figure in figures]}
    stem.with_suffix(".json").write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    print()
    print_table(figures)
    print(f"\nWrote {stem}.md and .json")
    return 1 if any(figure.verdict == "FAIL" for figure in figures) else 0


if __name__ == "__main__":
    sys.exit(main())
