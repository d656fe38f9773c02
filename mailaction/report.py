"""Delivery reports from the log: a terminal table, CSV, JSON and one self-contained HTML page.

Counts, timing and the chart come from SQL aggregates; letters are streamed from the log one by
one, so a report's memory does not grow with the campaign. A `Report` reads its letters from the
open `DeliveryLog` it was loaded from: write it before closing the log.
"""

from __future__ import annotations

import csv
import json
import math
import re
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .deliverylog import DeliveryLog, Entry, State
from .htmlpage import REPORT_CSP, write_page
from .terminal import terminal_text

PROBLEM_STATES = frozenset({State.FAILED, State.DEFERRED, State.UNCERTAIN, State.BOUNCED})
LIST_LIMIT = 1000  # letters listed one by one in the terminal and in HTML; CSV and JSON list all
SUMMARY_KEYS = ("total", "sent", "failed", "deferred", "uncertain", "pending", "bounced")
CSV_COLUMNS = (
    "row", "contact_id", "recipients", "subject", "state", "attempts", "last_code", "last_reply",
    "refused", "message_id", "first_attempt_at", "last_attempt_at", "sent_at",
)  # fmt: skip
# OWASP CSV injection: a spreadsheet runs a cell starting with one of these as a formula, also
# in their fullwidth forms and behind spaces or invisible characters it skips.
FORMULA_START = re.compile(r"[\s\u180e\u200b-\u200f\u2060-\u2064\ufeff]*[=+\-@\uff1d\uff0b\uff0d\uff20\t\r]")
TERMINAL_STYLES = {
    State.SENT: "green", State.FAILED: "red", State.UNCERTAIN: "yellow",
    State.DEFERRED: "magenta", State.PENDING: "dim", State.SENDING: "dim", State.BOUNCED: "red",
}  # fmt: skip

EntryReader = Callable[[Collection[State] | None], Iterator[Entry]]


@dataclass(frozen=True)
class Report:
    """What the delivery log says about one campaign, ready to print or write."""

    campaign: str
    log_path: Path | str  # a file, or a database URL without its password
    generated_at: float  # unix time
    counts: dict[State, int]  # the whole campaign, every state present
    total: int
    first_sent: float | None
    last_sent: float | None
    rate: float | None  # letters per second between the first and the last send
    sent_count: int  # sent letters with a send time (the chart's letters)
    partly_refused: int  # sent letters that some of their recipients refused
    attention: int  # letters that failed, are deferred or uncertain, or had recipients refused
    histogram: Histogram | None  # sent letters over time; None before the first send
    read_entries: EntryReader = field(repr=False, compare=False)  # DeliveryLog.entries
    states: frozenset[State] | None = None  # the letters listed; None for all
    sent_by_account: dict[str, int] = field(default_factory=dict)  # several [[smtp]] accounts

    @property
    def log_name(self) -> str:
        """The log file's name, or the database's URL."""
        return self.log_path.name if isinstance(self.log_path, Path) else self.log_path

    @property
    def listed(self) -> int:
        """How many letters `entries()` gives."""
        if self.states is None:
            return self.total
        return sum(self.counts[state] for state in self.states)

    def entries(self) -> Iterator[Entry]:
        """The letters listed, in spreadsheet order, read from the log as they are consumed."""
        return self.read_entries(self.states)

    def needing_attention(self) -> Iterator[Entry]:
        """The letters listed that failed, are deferred or uncertain, or had recipients refused."""
        return (entry for entry in self.entries() if _needs_attention(entry))


def load_report(
    log: DeliveryLog, states: Collection[State] | None = None, *, generated_at: float | None = None
) -> Report:
    """A campaign's report from SQL aggregates; letters (only those in `states` when given) are
    read from `log` when the report is written, so keep it open until then."""
    counts = log.counts()
    sent_count, first, last = log.sent_span()
    refused = log.refused_counts()
    histogram = None
    if first is not None and last is not None:
        histogram = make_histogram(first, last, log.sent_per_bin)
        if counts[State.BOUNCED]:
            bounced = log.sent_per_bin(histogram.start, histogram.width, (State.BOUNCED,))
            histogram = replace(histogram, bounced=_binned(histogram, bounced))
    return Report(
        campaign=log.campaign,
        log_path=log.location if isinstance(log.location, Path) else log.where,
        generated_at=time.time() if generated_at is None else generated_at,
        counts=counts,
        total=sum(counts.values()),
        first_sent=first,
        last_sent=last,
        rate=_rate(sent_count, first, last),
        sent_count=sent_count,
        partly_refused=refused[State.SENT],
        attention=sum(
            counts[state] if state in PROBLEM_STATES else refused[state] for state in State
        ),
        histogram=histogram,
        states=None if states is None else frozenset(states),
        read_entries=log.entries,
        sent_by_account=log.sent_by_account(),
    )


def _rate(sent: int, first: float | None, last: float | None) -> float | None:
    """Sends per second over the intervals between the first and the last send."""
    if sent < 2 or first is None or last is None or last <= first:
        return None
    return (sent - 1) / (last - first)


def summary(report: Report) -> dict[str, int]:
    """The counts under stable keys; `pending` includes letters in flight, values add up to total."""
    counts = report.counts
    return {
        "total": report.total,
        "sent": counts[State.SENT],
        "failed": counts[State.FAILED],
        "deferred": counts[State.DEFERRED],
        "uncertain": counts[State.UNCERTAIN],
        "pending": counts[State.PENDING] + counts[State.SENDING],
        "bounced": counts[State.BOUNCED],  # accepted, then returned by the recipient's server
    }


def _needs_attention(entry: Entry) -> bool:
    """Whether a letter failed, is deferred or uncertain, or had recipients refused."""
    return entry.state in PROBLEM_STATES or bool(entry.refused)


def _verdict(report: Report) -> str:
    """One sentence on how the campaign stands."""
    counts = summary(report)
    if report.total == 0:
        return "The delivery log has no letters for this campaign yet."
    refused = ""
    if report.partly_refused:
        refused = f"; {letter_count(report.partly_refused)} had some recipients refused"
    if counts["sent"] == report.total:
        everything = "The letter was" if report.total == 1 else f"All {report.total:,} letters were"
        return f"{everything} sent{refused}."
    rest = ", ".join(f"{counts[key]:,} {key}" for key in SUMMARY_KEYS[2:] if counts[key])
    return f"{counts['sent']:,} of {letter_count(report.total)} sent; {rest}{refused}."


def letter_count(count: int) -> str:
    """ "1 letter", "2,000 letters"."""
    return f"{count:,} letter{'' if count == 1 else 's'}"


def _number(value: float) -> str:
    return f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _rate_text(report: Report) -> str:
    """The achieved rate, per second and per minute, or why there is none."""
    if report.rate is not None:
        return f"{_number(report.rate)} letters/s ({_number(report.rate * 60)} per minute)"
    if report.sent_count < 2:
        return "not measured (fewer than two letters sent)"
    return "not measured (every letter sent within the same instant)"


def _iso_time(moment: float | None) -> str | None:
    """ISO 8601 in UTC with milliseconds, or None."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def _human_time(moment: float | None, pattern: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    return "—" if moment is None else datetime.fromtimestamp(moment, UTC).strftime(pattern)


def _short_time(moment: float | None) -> str:
    return _human_time(moment, "%m-%d %H:%M:%S")


def _refused_lines(entry: Entry) -> list[str]:
    return [f"{recipient}: {reply}" for recipient, reply in entry.refused.items()]


def _listed(report: Report) -> tuple[str, int, Iterator[Entry]]:
    """The heading, count and stream of letters to list one by one: those asked for, else those
    that need attention."""
    if report.states is not None:
        names = ", ".join(sorted(report.states)) or "none"
        return f"Letters in state {names}", report.listed, report.entries()
    return "Letters that need attention", report.attention, report.needing_attention()


# Terminal


def print_summary(report: Report, console: Console) -> None:
    """The short block a `send` ends with: how the letters stand and the rate achieved."""
    problems = any(summary(report)[key] for key in ("failed", "uncertain", "deferred", "bounced"))
    console.print(terminal_text(_verdict(report), "bold " + ("yellow" if problems else "green")))
    if report.sent_count:
        span = f"{_human_time(report.first_sent)} to {_human_time(report.last_sent)}"
        console.print(terminal_text(f"Rate: {_rate_text(report)}, {span}"))
    if report.sent_by_account:
        console.print(terminal_text(f"Sent by account: {_accounts_text(report)}"))


def _accounts_text(report: Report) -> str:
    return ", ".join(f"{account} {count:,}" for account, count in report.sent_by_account.items())


def print_table(report: Report, console: Console) -> None:
    """The full report for the terminal: counts, timing and the letters that need attention."""
    facts = Table.grid(padding=(0, 2))
    facts.add_row(Text("Campaign", "bold"), terminal_text(report.campaign))
    facts.add_row(Text("Delivery log", "bold"), terminal_text(report.log_path))
    facts.add_row(Text("First sent", "bold"), terminal_text(_human_time(report.first_sent)))
    facts.add_row(Text("Last sent", "bold"), terminal_text(_human_time(report.last_sent)))
    facts.add_row(Text("Rate", "bold"), terminal_text(_rate_text(report)))
    if report.sent_by_account:
        facts.add_row(Text("Sent by account", "bold"), terminal_text(_accounts_text(report)))
    for part in (facts, _counts_table(report)):
        console.print(part)
        console.print()
    console.print(terminal_text(_verdict(report), "bold"))
    title, count, entries = _listed(report)
    if count:
        console.print()
        console.print(_entries_table(title, islice(entries, LIST_LIMIT)))
    if count > LIST_LIMIT:
        console.print(f"… and {count - LIST_LIMIT:,} more; the CSV and JSON reports list all.")


def _counts_table(report: Report) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
    table.add_column("State")
    table.add_column("Letters", justify="right")
    for key, count in summary(report).items():
        if key != "total":
            table.add_row(Text(key, TERMINAL_STYLES[State(key)]), f"{count:,}")
    table.add_row(Text("total", "bold"), Text(f"{report.total:,}", "bold"))
    return table


def _entries_table(title: str, entries: Iterable[Entry]) -> Table:
    """One line per letter, cut to the width of the terminal (CSV and JSON have every word)."""
    table = Table(title=title, title_justify="left", title_style="bold", expand=True)
    table.add_column("Row", justify="right", no_wrap=True)
    table.add_column("Contact", ratio=2, no_wrap=True, overflow="ellipsis", min_width=12)
    table.add_column("State", no_wrap=True)
    table.add_column("Tries", justify="right", no_wrap=True)
    table.add_column("Code", justify="right", no_wrap=True)
    table.add_column("Server reply", ratio=3, no_wrap=True, overflow="ellipsis", min_width=12)
    for entry in entries:
        contact = entry.contact_id
        if entry.recipients != (entry.contact_id,):
            contact = f"{contact} ({', '.join(entry.recipients)})"
        table.add_row(
            str(entry.row),
            terminal_text(contact),
            Text(entry.state, TERMINAL_STYLES[entry.state]),
            str(entry.attempts),
            "" if entry.last_code is None else str(entry.last_code),
            terminal_text(" · ".join(_reply_parts(entry))),
        )
    return table


def _reply_parts(entry: Entry) -> list[str]:
    """The last reply, then each refused recipient's reply that the last one does not already say."""
    parts = [entry.last_reply] if entry.last_reply else []
    for recipient, reply in entry.refused.items():
        if f"{recipient}: {reply}" not in entry.last_reply:
            parts.append(f"refused {recipient}: {reply}")
    return parts


# CSV and JSON


def _safe_cell(value: object) -> str:
    text = str(value)
    return "'" + text if FORMULA_START.match(text) else text


def write_csv(report: Report, out: TextIO) -> None:
    """One row per letter, safe to open in a spreadsheet (no cell is taken as a formula)."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in report.entries():
        cells = (
            entry.row, entry.contact_id, "; ".join(entry.recipients), entry.subject, entry.state,
            entry.attempts, "" if entry.last_code is None else entry.last_code, entry.last_reply,
            "; ".join(_refused_lines(entry)), entry.message_id,
            _iso_time(entry.first_attempt_at) or "", _iso_time(entry.last_attempt_at) or "",
            _iso_time(entry.sent_at) or "",
        )  # fmt: skip
        writer.writerow([_safe_cell(cell) for cell in cells])


def _message(entry: Entry) -> dict[str, Any]:
    return {
        "row": entry.row,
        "contact_id": entry.contact_id,
        "recipients": list(entry.recipients),
        "subject": entry.subject,
        "state": str(entry.state),
        "attempts": entry.attempts,
        "last_code": entry.last_code,
        "last_reply": entry.last_reply,
        "refused": entry.refused,
        "message_id": entry.message_id,
        "first_attempt_at": _iso_time(entry.first_attempt_at),
        "last_attempt_at": _iso_time(entry.last_attempt_at),
        "sent_at": _iso_time(entry.sent_at),
    }


def write_json(report: Report, out: TextIO) -> None:
    """The report as JSON (keys documented in docs/report-json.md), written letter by letter."""
    head = {
        "campaign": report.campaign,
        "log": str(report.log_path),
        "generated_at": _iso_time(report.generated_at),
        "summary": summary(report),
        "first_sent": _iso_time(report.first_sent),
        "last_sent": _iso_time(report.last_sent),
        "rate_per_second": None if report.rate is None else round(report.rate, 3),
    }
    if report.sent_by_account:
        head["sent_by_account"] = report.sent_by_account
    # The same text json.dump(indent=2) gives for the whole document, without holding it all.
    out.write(json.dumps(head, ensure_ascii=False, indent=2).removesuffix("\n}"))
    out.write(',\n  "messages": [')
    written = 0
    for entry in report.entries():
        out.write(("," if written else "") + "\n    " + _indented(_message(entry), "    "))
        written += 1
    out.write("\n  ]\n}\n" if written else "]\n}\n")


# json.dumps(indent=2) runs the pure-Python encoder; per scalar, the C one is several times faster.
_encode = json.JSONEncoder(ensure_ascii=False).encode


def _indented(value: object, margin: str) -> str:
    """json.dumps(value, ensure_ascii=False, indent=2) with every line after the first indented
    by `margin`, for a message's values: scalars, and lists and dicts of them."""
    inner = margin + "  "
    if isinstance(value, list) and value:
        items = ",\n".join(inner + _indented(item, inner) for item in value)
        return f"[\n{items}\n{margin}]"
    if isinstance(value, dict) and value:
        items = ",\n".join(f"{inner}{_encode(k)}: {_indented(v, inner)}" for k, v in value.items())
        return f"{{\n{items}\n{margin}}}"
    return _encode(value)


# HTML


@dataclass(frozen=True)
class _Card:
    key: str
    label: str
    hint: str
    count: int


CARDS = (
    ("total", "Letters", "in the delivery log"),
    ("sent", "Sent", "accepted by the server"),
    ("failed", "Failed", "refused for good"),
    ("deferred", "Deferred", "temporary errors"),
    ("uncertain", "Uncertain", "may have arrived"),
    ("pending", "Pending", "not sent yet"),
    ("bounced", "Bounced", "returned after sending"),
)


@dataclass(frozen=True)
class _Listing:
    title: str
    count: int
    entries: Iterator[Entry]


def write_html(report: Report, out: TextIO) -> None:
    """One self-contained page: counts, a chart of sends over time, problems, the letters."""
    counts = summary(report)
    title, count, entries = _listed(report)
    everything = "All letters" if report.states is None else "Letters shown"
    write_page(
        "report.html.j2",
        out,
        csp=REPORT_CSP,
        title=f"Delivery report: {report.campaign}",
        report=report,
        generated=_human_time(report.generated_at, "%Y-%m-%d %H:%M UTC"),
        problems=any(
            counts[key] for key in ("failed", "uncertain", "deferred", "pending", "bounced")
        ),
        verdict=_verdict(report),
        cards=[_card(key, label, hint, counts, report.total) for key, label, hint in CARDS],
        timing=[
            ("First sent", _human_time(report.first_sent)),
            ("Last sent", _human_time(report.last_sent)),
            ("Rate", _rate_text(report)),
        ],
        chart=_chart(report),
        attention=_Listing(title, count, islice(entries, LIST_LIMIT)),
        letters=_Listing(everything, report.listed, islice(report.entries(), LIST_LIMIT)),
        letters_too_many=letter_count(report.listed),
        list_limit=LIST_LIMIT,
        short_time=_short_time,
        refused_lines=_refused_lines,
    )


def _card(key: str, label: str, hint: str, counts: Mapping[str, int], total: int) -> _Card:
    share = f"{_share(counts[key], total)} · " if key != "total" else ""
    return _Card(key, label, share + hint, counts[key])


def _share(count: int, total: int) -> str:
    """A percentage that shows a few letters among many as more than none."""
    if count == 0 or count == total:
        return f"{100 if count else 0}%"
    return f"{max(1, min(99, round(100 * count / total)))}%"


# The chart: letters sent per time bin, as inline SVG

CHART_WIDTH, CHART_HEIGHT = 880, 240
PLOT_LEFT, PLOT_RIGHT, PLOT_TOP, PLOT_BOTTOM = 48, 868, 12, 212
MAX_BINS = 60
# Bin widths in seconds that make readable axis labels.
BIN_WIDTHS = (
    1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
    86400, 172800, 604800,
)  # fmt: skip
MAX_X_LABELS = 6


@dataclass(frozen=True)
class Histogram:
    """Letters sent per bin of `width` seconds, the first bin starting at `start` (unix time)."""

    start: float
    width: int
    counts: list[int]
    bounced: list[int] = field(default_factory=list)  # of `counts`, the letters that bounced

    def bin_start(self, number: int) -> float:
        """When bin `number` starts."""
        return self.start + number * self.width


def make_histogram(
    first: float, last: float, count_per_bin: Callable[[float, int], Mapping[int, int]]
) -> Histogram:
    """At most MAX_BINS bins of a round width from `first` to `last`; `count_per_bin(start,
    width)` says how many letters fall in each bin number (DeliveryLog.sent_per_bin)."""
    span = last - first
    fallback = math.ceil(span / (MAX_BINS - 2))
    width = next((w for w in BIN_WIDTHS if span / w <= MAX_BINS - 2), fallback)
    start = math.floor(first / width) * width
    counts = [0] * (int((last - start) // width) + 1)
    return Histogram(start, width, _binned(Histogram(start, width, counts), count_per_bin(start, width)))


def _binned(bins: Histogram, per_bin: Mapping[int, int]) -> list[int]:
    """Counts per bin number laid on ``bins``' bins."""
    counts = [0] * len(bins.counts)
    for number, count in per_bin.items():
        # Clamped: the counter's rounding may differ from ours by one bin at the very edges.
        counts[min(max(number, 0), len(counts) - 1)] += count
    return counts


@dataclass(frozen=True)
class _Gridline:
    x1: int
    x2: int
    y: float
    label: str


@dataclass(frozen=True)
class _Bar:
    x: str
    y: str
    width: str
    height: str
    label: str


@dataclass(frozen=True)
class _Tick:
    x: float
    anchor: str
    label: str


@dataclass(frozen=True)
class _Chart:
    """What the report template draws: numbers and labels, in SVG user units."""

    description: str
    caption: str = ""
    gridlines: list[_Gridline] = field(default_factory=list)
    bars: list[_Bar] = field(default_factory=list)
    bounced: list[_Bar] = field(default_factory=list)  # drawn over the bars, in their colour
    ticks: list[_Tick] = field(default_factory=list)
    width: int = CHART_WIDTH
    height: int = CHART_HEIGHT
    left: int = PLOT_LEFT
    right: int = PLOT_RIGHT
    bottom: int = PLOT_BOTTOM


def _duration(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        if seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'}"
    raise AssertionError("unreachable: every whole number of seconds divides by 1")


def _nice_step(value: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50, ... not below `value`."""
    if value <= 1:
        return 1
    magnitude = int(10 ** math.floor(math.log10(value)))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= value)


def _chart(report: Report) -> _Chart:
    bins = report.histogram
    if bins is None:
        return _Chart("No letter has been sent yet.")
    clock = "%H:%M:%S" if bins.width < 60 else "%H:%M"
    if len(bins.counts) * bins.width > 86400:
        clock = "%d %b %H:%M"
    description = (
        f"{letter_count(report.sent_count)} sent from {_human_time(report.first_sent)} "
        f"to {_human_time(report.last_sent)}, in {len(bins.counts)} bars of "
        f"{_duration(bins.width)} each; the busiest bar has {letter_count(max(bins.counts))}"
    )
    caption = f"Each bar: letters sent in {_duration(bins.width)}."
    returned = sum(bins.bounced)
    if returned:
        description += f"; {letter_count(returned)} of them bounced later"
        caption += " The red part: letters that bounced later."
    return _Chart(
        description + ".",
        caption=caption + " Times in UTC.",
        gridlines=_gridlines(max(bins.counts)),
        bars=_bars(bins, bins.counts, clock),
        bounced=_bars(bins, bins.bounced, clock, " bounced"),
        ticks=_ticks(bins, clock),
    )


def _y_scale(peak: int) -> tuple[int, int]:
    """The step between gridlines and the top of the axis, for a tallest bar of `peak`."""
    step = _nice_step(peak / 4)
    return step, math.ceil(peak / step) * step


def _y(value: float, top: int) -> float:
    return PLOT_BOTTOM - value / top * (PLOT_BOTTOM - PLOT_TOP)


def _gridlines(peak: int) -> list[_Gridline]:
    step, top = _y_scale(peak)
    return [
        _Gridline(PLOT_LEFT, PLOT_RIGHT, round(_y(value, top), 1), f"{value:,}")
        for value in range(0, top + 1, step)
    ]


def _bars(bins: Histogram, heights: list[int], clock: str, what: str = "") -> list[_Bar]:
    """One bar per bin of ``heights`` that is not empty, on the scale of ``bins``."""
    _, top = _y_scale(max(bins.counts))
    slot = (PLOT_RIGHT - PLOT_LEFT) / len(bins.counts)
    gap = min(2.0, slot / 4)
    bars = []
    for number, count in enumerate(heights):
        if not count:
            continue
        y = _y(count, top)
        start, end = bins.bin_start(number), bins.bin_start(number + 1)
        label = f"{_human_time(start, clock)}–{_human_time(end, clock)}: {letter_count(count)}{what}"
        x, height = PLOT_LEFT + number * slot + gap / 2, PLOT_BOTTOM - y
        bars.append(_Bar(f"{x:.1f}", f"{y:.1f}", f"{slot - gap:.1f}", f"{height:.1f}", label))
    return bars


def _ticks(bins: Histogram, clock: str) -> list[_Tick]:
    """The time axis, labelled at round times a few bars apart."""
    count = len(bins.counts)
    slot = (PLOT_RIGHT - PLOT_LEFT) / count
    fewest = bins.width * math.ceil((count + 1) / MAX_X_LABELS)
    step = next((w for w in BIN_WIDTHS if w % bins.width == 0 and w >= fewest), fewest)
    ticks = []
    for number in range(count + 1):
        if bins.bin_start(number) % step:
            continue
        anchor = "start" if number == 0 else "end" if number == count else "middle"
        label = _human_time(bins.bin_start(number), clock)
        ticks.append(_Tick(round(PLOT_LEFT + number * slot, 1), anchor, label))
    return ticks
