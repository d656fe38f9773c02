"""The HTML report as a browser renders it: headless Chromium, offline, no scripts.

Run this file directly to regenerate docs/report-example.png:
    PYTHONPATH=. .venv/bin/python tests/test_report_browser.py
"""

from __future__ import annotations

import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mailaction.deliverylog import DeliveryLog, Outcome, State
from mailaction.report import Report, load_report, summary, write_html
from tests.test_report import CAMPAIGN, REJECTED, SCRIPT, fixture_log, log_letter, set_times


def _find_chromium() -> str | None:
    found = shutil.which("chromium")
    if found is None and Path("/usr/bin/chromium").exists():
        found = "/usr/bin/chromium"
    return found


CHROMIUM = _find_chromium()
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (neither `chromium` on PATH nor /usr/bin)"
)
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip
WINDOW = (1200, 1600)


def run_chromium(page: Path, workdir: Path, *args: str) -> str:
    """Run headless Chromium on a local page and return what it printed."""
    assert CHROMIUM is not None
    command = [CHROMIUM, *FLAGS, f"--user-data-dir={workdir / 'profile'}", *args, page.as_uri()]
    done = subprocess.run(command, capture_output=True, text=True, timeout=20, check=True)
    return done.stdout


def write_page(report: Report, directory: Path) -> Path:
    page = directory / "report.html"
    with page.open("w", encoding="utf-8") as out:
        write_html(report, out)
    return page


def screenshot(report: Report, workdir: Path, png: Path) -> None:
    """Render the report's HTML page to a PNG of WINDOW size."""
    run_chromium(
        write_page(report, workdir),
        workdir,
        f"--screenshot={png}",
        f"--window-size={WINDOW[0]},{WINDOW[1]}",
        "--hide-scrollbars",
    )


FIRST_NAMES = ("anna", "ales", "olga", "pavel", "iryna", "maksim", "sofia", "jan", "lena", "ivan")
TROUBLE = {
    37: Outcome(State.FAILED, 550, "5.1.1 Recipient address rejected: User unknown"),
    81: Outcome(State.DEFERRED, 451, "4.7.1 Greylisted, please try again in 5 minutes"),
    82: Outcome(State.DEFERRED, 421, "4.7.0 Too many connections from your IP, slow down"),
    144: Outcome(State.UNCERTAIN, None, "connection lost after the message data was sent"),
    203: Outcome(State.FAILED, 552, "5.2.2 Mailbox full, try again in a week"),
    240: Outcome(State.SENT, 250, "2.0.0 Ok", {"press@example.net": "550 5.1.1 no such user"}),
}


@contextmanager
def example_report(directory: Path) -> Iterator[Report]:
    """A realistic campaign: 260 letters sent over about 40 minutes, a pause, a few problems."""
    rng = random.Random(2020)
    with DeliveryLog(directory / "free-maryia-kalesnikava.sqlite", CAMPAIGN) as log:
        for row in range(2, 262):
            address = f"{FIRST_NAMES[row % len(FIRST_NAMES)]}.{row}@example.org"
            outcome = TROUBLE.get(row, Outcome(State.SENT, 250, "2.0.0 Ok: queued"))
            recipients = (address, "press@example.net") if row in TROUBLE and row > 200 else None
            log_letter(log, row, address, outcome if row < 250 else None, recipients)
        clock, times = 1_750_000_000.0, {}
        for entry in log.entries():
            if entry.attempts:
                clock += rng.expovariate(1 / 8) + (300 if entry.row == 120 else 0)
                times[entry.contact_id] = clock
        set_times(log, times)
        yield load_report(log, generated_at=clock + 900)


def test_rendered_page_shows_counts_failures_and_hostile_text_as_text(tmp_path: Path) -> None:
    with fixture_log(tmp_path / "campaign.sqlite") as log:
        report = load_report(log)
        page = write_page(report, tmp_path)
    dom = run_chromium(page, tmp_path, "--dump-dom")
    for key, count in summary(report).items():
        assert f'<div class="card {key}"><span class="n">{count}</span>' in dom
    failed_row = re.search(r'<tr><td class="num">3</td>.*?</tr>', dom, re.DOTALL)
    assert failed_row and "bob@example.org" in failed_row[0]
    assert REJECTED.replace("<", "&lt;").replace(">", "&gt;") in failed_row[0]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert SCRIPT not in dom and "<script" not in dom.lower()
    assert '<svg class="chart"' in dom


def test_screenshot_of_a_realistic_campaign_is_a_png(tmp_path: Path) -> None:
    png = tmp_path / "r.png"
    with example_report(tmp_path) as report:
        screenshot(report, tmp_path, png)
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == WINDOW


if __name__ == "__main__":
    if CHROMIUM is None:
        sys.exit("Chromium is not installed")
    target = Path(__file__).resolve().parent.parent / "docs" / "report-example.png"
    with tempfile.TemporaryDirectory() as workdir, example_report(Path(workdir)) as report:
        screenshot(report, Path(workdir), target)
    print(f"wrote {target}")
