"""Reports from a real delivery log: summary, terminal table, CSV, JSON and HTML."""

from __future__ import annotations

import csv
import io
import json
import re
import sqlite3
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from mailaction.deliverylog import DeliveryLog, Outcome, State
from mailaction.message import Letter
from mailaction.report import (
    CSV_COLUMNS,
    MAX_BINS,
    Histogram,
    Report,
    _indented,
    load_report,
    make_histogram,
    print_summary,
    print_table,
    summary,
    write_csv,
    write_html,
    write_json,
)

CAMPAIGN = "Free Maryia Kalesnikava"
SCRIPT = "<script>alert(1)</script>"
REJECTED = "5.1.1 <bob@example.org>: Recipient address rejected: User unknown"
GREYLISTED = "4.7.1 Greylisted, please try again later"
DROPPED = "connection lost after the message data was sent"
OFFICE_REFUSED = "550 5.1.1 office@example.org: no such user"


def log_letter(
    log: DeliveryLog,
    row: int,
    contact_id: str,
    outcome: Outcome | None = None,
    recipients: tuple[str, ...] | None = None,
    *,
    attempts: int = 1,
    in_flight: bool = False,
) -> None:
    """Register one letter and play `attempts` attempts ending in `outcome`."""
    letter = Letter(
        row=row,
        contact_id=contact_id,
        sender="campaign@example.org",
        recipients=recipients or (contact_id,),
        subject="Release Maryia Kalesnikava — Свабоду Марыі",
        message_id=f"<{row}.campaign@example.org>",
        fingerprint=f"fp{row}",
        data=b"Subject: test\r\n\r\nHello\r\n",
    )
    log.register(letter)
    for _ in range(attempts if outcome or in_flight else 0):
        log.mark_sending(contact_id)
        if outcome is not None:
            log.mark_outcome(contact_id, outcome)


def fixture_log(path: Path) -> DeliveryLog:
    """A log with a letter in every state, a partial refusal and a hostile contact."""
    log = DeliveryLog(path, CAMPAIGN)
    log_letter(log, 2, "ann@example.org", Outcome(State.SENT, 250, "2.0.0 Ok: queued as 4F2A1"))
    log_letter(log, 3, "bob@example.org", Outcome(State.FAILED, 550, REJECTED))
    log_letter(log, 4, "cat@example.net", Outcome(State.DEFERRED, 451, GREYLISTED), attempts=3)
    log_letter(log, 5, "dan@example.com", Outcome(State.UNCERTAIN, None, DROPPED))
    log_letter(log, 6, "eve@example.com")
    log_letter(log, 7, "fay@example.com", in_flight=True)
    log_letter(
        log,
        8,
        "ministry",
        Outcome(State.SENT, 250, "2.0.0 Ok", {"office@example.org": OFFICE_REFUSED}),
        ("minister@example.org", "office@example.org"),
    )
    log_letter(
        log, 9, SCRIPT, Outcome(State.FAILED, 554, f"5.7.1 {SCRIPT} rejected"), ("x@example.test",)
    )
    return log


@pytest.fixture
def log(tmp_path: Path) -> Iterator[DeliveryLog]:
    with fixture_log(tmp_path / "campaign.sqlite") as log:
        yield log


@pytest.fixture
def report(log: DeliveryLog) -> Report:
    return load_report(log)


def html_of(report: Report) -> str:
    out = io.StringIO()
    write_html(report, out)
    return out.getvalue()


def json_of(report: Report) -> dict:
    out = io.StringIO()
    write_json(report, out)
    return json.loads(out.getvalue())


def csv_rows(report: Report) -> list[dict[str, str]]:
    out = io.StringIO(newline="")
    write_csv(report, out)
    return list(csv.DictReader(io.StringIO(out.getvalue(), newline="")))


def terminal(report: Report, printer=print_table) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    printer(report, console)
    return console.file.getvalue()


def set_times(log: DeliveryLog, times: dict[str, float]) -> None:
    """Pretend the letters of these contacts were tried (and, if sent, sent) at these times."""
    log.flush()
    with sqlite3.connect(log.path) as db:
        db.executemany(
            "UPDATE letters SET first_attempt_at = ?1, last_attempt_at = ?1,"
            " sent_at = CASE WHEN state = 'sent' THEN ?1 END WHERE contact_id = ?2",
            [(moment, contact_id) for contact_id, moment in times.items()],
        )


def spread(log: DeliveryLog, start: float, step: float) -> Report:
    """The log's report once its sent letters are sent `step` seconds apart from `start`."""
    sent = [entry.contact_id for entry in log.entries([State.SENT])]
    set_times(log, {contact_id: start + n * step for n, contact_id in enumerate(sent)})
    return load_report(log)


# Summary and loading


def test_summary_counts_add_up_to_total(report: Report) -> None:
    counts = summary(report)
    assert list(counts) == ["total", "sent", "failed", "deferred", "uncertain", "pending", "bounced"]
    assert counts == {
        "total": 8, "sent": 2, "failed": 2, "deferred": 1, "uncertain": 1, "pending": 2,
        "bounced": 0,
    }  # fmt: skip
    assert sum(counts.values()) - counts["total"] == counts["total"]


def test_entries_come_in_spreadsheet_order_with_what_the_log_holds(report: Report) -> None:
    entries = list(report.entries())
    assert [entry.row for entry in entries] == [2, 3, 4, 5, 6, 7, 8, 9]
    deferred = entries[2]
    assert (deferred.attempts, deferred.last_code, deferred.last_reply) == (3, 451, GREYLISTED)
    assert report.partly_refused == 1


def test_state_filter_lists_only_those_letters_but_counts_everything(tmp_path: Path) -> None:
    with fixture_log(tmp_path / "log.sqlite") as log:
        failed = load_report(log, [State.FAILED, State.UNCERTAIN])
        assert [entry.row for entry in failed.entries()] == [3, 5, 9]
        output = terminal(failed)
    assert (failed.total, failed.listed) == (8, 3)
    assert failed.first_sent is not None
    assert "Letters in state failed, uncertain" in output
    assert "cat@example.net" not in output


def test_rate_is_none_with_fewer_than_two_sent_letters(tmp_path: Path) -> None:
    with DeliveryLog(tmp_path / "log.sqlite", CAMPAIGN) as log:
        log_letter(log, 2, "ann@example.org")
        assert load_report(log).rate is None
        log_letter(log, 3, "bob@example.org", Outcome(State.SENT, 250, "Ok"))
        one = load_report(log)
        assert one.first_sent == one.last_sent == list(one.entries())[1].sent_at
    assert one.rate is None
    assert "fewer than two letters sent" in terminal(one)


def test_rate_counts_the_intervals_between_first_and_last_send(log: DeliveryLog) -> None:
    timed = spread(log, 1_750_000_000.0, 4.0)
    assert timed.rate == pytest.approx(0.25)
    assert "0.25 letters/s (15 per minute)" in terminal(timed)


def test_a_big_log_is_summed_up_not_listed_on_the_page(tmp_path: Path) -> None:
    with DeliveryLog(tmp_path / "big.sqlite", CAMPAIGN) as log:
        for row in range(2, 3002):
            log_letter(log, row, f"c{row}@example.org")
        big = load_report(log)
        page = html_of(big)
        assert sum(1 for _ in big.entries()) == 3000
    assert big.total == big.listed == summary(big)["pending"] == 3000
    assert "3,000 letters: too many to list on this page" in page
    assert page.count("<tr>") < 10


# Terminal


def test_table_shows_counts_timing_and_problem_letters(report: Report) -> None:
    output = terminal(report)
    assert CAMPAIGN in output and "campaign.sqlite" in output
    assert re.search(r"failed\s+2\b", output) and re.search(r"total\s+8\b", output)
    assert "Letters that need attention" in output
    for text in (REJECTED, GREYLISTED, DROPPED, OFFICE_REFUSED, SCRIPT):
        assert text in output
    assert output.count(REJECTED) == 1
    assert "ann@example.org" not in output
    assert "2 of 8 letters sent; 2 failed, 1 deferred, 1 uncertain, 2 pending" in output


def test_table_says_plainly_when_everything_went_out(tmp_path: Path) -> None:
    with DeliveryLog(tmp_path / "log.sqlite", CAMPAIGN) as log:
        for row in (2, 3, 4):
            log_letter(log, row, f"c{row}@example.org", Outcome(State.SENT, 250, "Ok"))
        done = load_report(log)
    output = terminal(done)
    assert "All 3 letters were sent." in output
    assert "need attention" not in output
    assert "All 3 letters were sent." in terminal(done, print_summary)


def test_terminal_output_carries_no_control_characters_from_servers(tmp_path: Path) -> None:
    with DeliveryLog(tmp_path / "log.sqlite", CAMPAIGN) as log:
        hostile = "550 \x1b[2J\x1b]0;pwned\x07 denied"
        log_letter(log, 2, "ann@example.org", Outcome(State.FAILED, 550, hostile))
        output = terminal(load_report(log))
    assert "\x1b" not in output and "\x07" not in output
    assert "denied" in output


def test_summary_block_gives_counts_and_rate(log: DeliveryLog) -> None:
    output = terminal(spread(log, 1_750_000_000.0, 0.5), print_summary)
    assert "2 of 8 letters sent; 2 failed" in output
    assert "Rate: 2 letters/s (120 per minute)" in output
    assert "2025-06-15 15:06:40 UTC" in output


# CSV


def test_csv_has_one_row_per_letter_with_every_column(report: Report) -> None:
    rows = csv_rows(report)
    assert tuple(rows[0]) == CSV_COLUMNS
    assert [row["row"] for row in rows] == ["2", "3", "4", "5", "6", "7", "8", "9"]
    bob, ministry, eve = rows[1], rows[6], rows[4]
    assert (bob["state"], bob["last_code"], bob["last_reply"]) == ("failed", "550", REJECTED)
    assert ministry["recipients"] == "minister@example.org; office@example.org"
    assert ministry["refused"] == f"office@example.org: {OFFICE_REFUSED}"
    assert ministry["subject"] == "Release Maryia Kalesnikava — Свабоду Марыі"
    assert datetime.fromisoformat(ministry["sent_at"]).utcoffset().total_seconds() == 0
    assert eve["sent_at"] == eve["first_attempt_at"] == eve["last_code"] == ""


@pytest.mark.parametrize(
    "prefix",
    ["=", "+", "-", "@", "\t", "\r", "＝", "＋", "－", "＠", "  =", "\u200b=", "\ufeff+", "\u00a0 @", "\u2060－"],
)
def test_csv_cells_never_start_a_formula(tmp_path: Path, prefix: str) -> None:
    formula = f'{prefix}HYPERLINK("http://x.invalid","click")'
    with DeliveryLog(tmp_path / "log.sqlite", CAMPAIGN) as log:
        outcome = Outcome(State.FAILED, 550, formula, {formula: formula})
        log_letter(log, 2, formula, outcome, (formula, "ann@example.org"))
        rows = csv_rows(load_report(log))
    assert len(rows) == 1
    cells = rows[0]
    assert cells["contact_id"] == cells["last_reply"] == "'" + formula
    assert cells["recipients"] == f"'{formula}; ann@example.org"
    assert cells["refused"].startswith("'" + formula)
    assert not any(value.startswith(("=", "+", "-", "@", "\t", "\r")) for value in cells.values())


# JSON

MESSAGE_KEYS = [
    "row", "contact_id", "recipients", "subject", "state", "attempts", "last_code", "last_reply",
    "refused", "message_id", "first_attempt_at", "last_attempt_at", "sent_at",
]  # fmt: skip


def test_json_keys_are_exactly_the_documented_ones(report: Report) -> None:
    data = json_of(report)
    assert list(data) == [
        "campaign", "log", "generated_at", "summary", "first_sent", "last_sent",
        "rate_per_second", "messages",
    ]  # fmt: skip
    assert data["campaign"] == CAMPAIGN
    assert data["summary"] == summary(report)
    assert [list(message) for message in data["messages"]] == [MESSAGE_KEYS] * 8
    documented = Path(__file__).parent.parent / "docs" / "report-json.md"
    for key in [*data, *data["summary"], *MESSAGE_KEYS]:
        assert f"`{key}`" in documented.read_text(encoding="utf-8")


def test_json_values_keep_their_types(report: Report) -> None:
    data = json_of(report)
    ministry, dan = data["messages"][6], data["messages"][3]
    assert ministry["recipients"] == ["minister@example.org", "office@example.org"]
    assert ministry["refused"] == {"office@example.org": OFFICE_REFUSED}
    assert (dan["state"], dan["last_code"], dan["sent_at"]) == ("uncertain", None, None)
    assert datetime.fromisoformat(data["first_sent"]).timestamp() == pytest.approx(
        report.first_sent, abs=0.001
    )
    assert data["rate_per_second"] is None or data["rate_per_second"] > 0


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=12,
)


@given(JSON_VALUES)
def test_json_values_are_indented_as_json_dumps_does(value: object) -> None:
    assert _indented(value, "") == json.dumps(value, ensure_ascii=False, indent=2)


def test_json_is_written_as_one_indented_utf8_document(report: Report) -> None:
    out = io.StringIO()
    write_json(report, out)
    text = out.getvalue()
    assert text == json.dumps(json.loads(text), ensure_ascii=False, indent=2) + "\n"
    assert "Свабоду" in text


# HTML


class TagCollector(HTMLParser):
    """Every start tag with its attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def tags_of(page: str) -> list[tuple[str, dict[str, str | None]]]:
    collector = TagCollector()
    collector.feed(page)
    return collector.tags


def test_html_shows_counts_and_failures_with_their_replies(report: Report) -> None:
    page = html_of(report)
    assert "<h1>Free Maryia Kalesnikava</h1>" in page
    for key, count in summary(report).items():
        assert f'<div class="card {key}"><span class="n">{count}</span>' in page
    assert "Letters that need attention (5)" in page
    failed_row = re.search(r'<tr><td class="num">3</td>.*?</tr>', page)
    assert failed_row and "bob@example.org" in failed_row[0]
    assert "Recipient address rejected: User unknown" in failed_row[0]
    assert ">550<" in failed_row[0]
    assert "office@example.org: 550 5.1.1 office@example.org: no such user" in page


def test_html_escapes_everything_from_contacts_and_servers(report: Report) -> None:
    page = html_of(report)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script" not in page.lower()
    assert "&lt;bob@example.org&gt;" in page
    assert not [tag for tag, _ in tags_of(page) if tag in {"script", "iframe", "img", "link"}]


def test_html_loads_nothing_from_outside(report: Report) -> None:
    page = html_of(report)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "@import" not in page and "url(" not in page
    assert all("src" not in attrs and "href" not in attrs for _, attrs in tags_of(page))


def test_html_chart_is_inline_svg_with_title_and_bars(log: DeliveryLog) -> None:
    page = html_of(spread(log, 1_750_000_000.0, 90.0))
    chart = re.search(r'<svg class="chart".*?</svg>', page, re.DOTALL)
    assert chart
    assert '<title id="chart-title">Letters sent over time</title>' in chart[0]
    assert "2 letters sent from 2025-06-15 15:06:40 UTC to 2025-06-15 15:08:10 UTC" in chart[0]
    assert chart[0].count("<rect") == 2
    assert all(f">{label}</text>" in chart[0] for label in ("15:07:00", "15:07:30", "15:08:00"))


def test_html_chart_handles_a_single_sent_letter(tmp_path: Path) -> None:
    with DeliveryLog(tmp_path / "log.sqlite", CAMPAIGN) as log:
        log_letter(log, 2, "ann@example.org", Outcome(State.SENT, 250, "Ok"))
        page = html_of(load_report(log))
    assert page.count("<rect") == 1
    assert "not measured (fewer than two letters sent)" in page


def histogram(times: list[float]) -> Histogram:
    """The chart's bins for these send times, counted in Python."""

    def count_per_bin(start: float, width: int) -> Counter[int]:
        return Counter(int((moment - start) // width) for moment in times)

    return make_histogram(min(times), max(times), count_per_bin)


@given(st.lists(st.floats(1e9, 2e9), min_size=1, max_size=200), st.floats(0, 1e8))
def test_histogram_keeps_every_letter_in_at_most_max_bins(times: list[float], span: float) -> None:
    times = [*times, times[0] + span]
    bins = histogram(times)
    assert sum(bins.counts) == len(times)
    assert 1 <= len(bins.counts) <= MAX_BINS
    assert bins.start <= min(times) < bins.bin_start(1)
    assert max(times) < bins.bin_start(len(bins.counts))


def test_histogram_uses_30_to_60_round_bins_over_a_run() -> None:
    start = 1_750_000_000.0
    bins = histogram([start + second for second in range(0, 1800, 3)])
    assert bins.width == 60
    assert 30 <= len(bins.counts) <= 60
    assert sum(bins.counts) == 600


# Empty log


def test_an_empty_log_renders_in_every_format(tmp_path: Path) -> None:
    with DeliveryLog(tmp_path / "log.sqlite", CAMPAIGN) as log:
        empty = load_report(log)
        rows, data, page = csv_rows(empty), json_of(empty), html_of(empty)
    assert summary(empty) == dict.fromkeys(summary(empty), 0)
    assert (empty.rate, empty.first_sent, empty.last_sent) == (None, None, None)
    assert "no letters for this campaign yet" in terminal(empty)
    assert "no letters" in terminal(empty, print_summary)
    assert rows == []
    assert data["messages"] == [] and data["summary"]["total"] == 0
    assert data["first_sent"] is None and data["rate_per_second"] is None
    assert "No letters sent yet" in page and "<svg" in page
    assert page.rstrip().endswith("</html>")


def test_listed_letters_take_one_line_each_in_80_columns(tmp_path: Path) -> None:
    with fixture_log(tmp_path / "log.sqlite") as log:
        refused = "550 5.1.1 <gil@example.org>: Recipient address rejected: User unknown"
        reply = f"every recipient refused: gil@example.org: {refused}"  # as the sender says it
        outcome = Outcome(State.FAILED, 550, reply, {"gil@example.org": refused})
        log_letter(log, 10, "gil@example.org", outcome)
        failed = load_report(log, [State.FAILED])
        console = Console(file=io.StringIO(), width=80, color_system=None)
        print_table(failed, console)
    lines = console.file.getvalue().splitlines()
    assert max(map(len, lines)) <= 80
    listed = [line for line in lines if line.startswith("│")]
    assert len(listed) == 3
    assert [re.search(r"\b(3|9|10)\b", line) is not None for line in listed] == [True] * 3
    gil = next(line for line in listed if "gil@example.org" in line)
    assert "every recipient refused" in gil
    wide = Console(file=io.StringIO(), width=400, color_system=None)
    with DeliveryLog(tmp_path / "log.sqlite", CAMPAIGN) as log:
        print_table(load_report(log, [State.FAILED]), wide)
    assert wide.file.getvalue().count("<gil@example.org>: Recipient address rejected") == 1
