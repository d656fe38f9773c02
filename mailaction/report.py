"""Delivery reports from the log: a terminal table, CSV, JSON and one self-contained HTML page."""

from __future__ import annotations

import csv
import json
import math
import re
import textwrap
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any, TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .deliverylog import DeliveryLog, Entry, State
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


@dataclass(frozen=True)
class Report:
    """What the delivery log says about one campaign, ready to print or write."""

    campaign: str
    log_path: Path
    generated_at: float  # unix time
    counts: dict[State, int]  # the whole campaign, every state present
    total: int
    first_sent: float | None
    last_sent: float | None
    rate: float | None  # letters per second between the first and the last send
    entries: list[Entry]  # spreadsheet order; only those in `states` when given
    states: frozenset[State] | None = None  # the filter `entries` went through; None for all
    sent_times: tuple[float, ...] = ()  # when each sent letter went, sorted; for the chart
    bounced_times: tuple[float, ...] = ()  # when each letter that later bounced went, sorted
    partly_refused: int = 0  # sent letters that some of their recipients refused


def load_report(log: DeliveryLog, states: Collection[State] | None = None) -> Report:
    """Read a campaign's delivery log in one pass; list only letters in `states` when given."""
    return build_report(log.campaign, log.path, log.entries(), states)


def build_report(
    campaign: str,
    log_path: Path,
    entries: Iterable[Entry],
    states: Collection[State] | None = None,
    *,
    generated_at: float | None = None,
) -> Report:
    """A report from every entry of a campaign, listing only those in `states` when given."""
    wanted = None if states is None else frozenset(states)
    counts = dict.fromkeys(State, 0)
    listed: list[Entry] = []
    sent_times: list[float] = []
    bounced_times: list[float] = []
    partly_refused = 0
    for entry in entries:
        counts[entry.state] += 1
        if entry.state is State.SENT and entry.sent_at is not None:
            sent_times.append(entry.sent_at)
            partly_refused += bool(entry.refused)
        elif entry.state is State.BOUNCED and entry.sent_at is not None:
            bounced_times.append(entry.sent_at)
        if wanted is None or entry.state in wanted:
            listed.append(entry)
    sent_times.sort()
    return Report(
        campaign=campaign,
        log_path=Path(log_path),
        generated_at=time.time() if generated_at is None else generated_at,
        counts=counts,
        total=sum(counts.values()),
        first_sent=sent_times[0] if sent_times else None,
        last_sent=sent_times[-1] if sent_times else None,
        rate=_rate(sent_times),
        entries=listed,
        states=wanted,
        sent_times=tuple(sent_times),
        bounced_times=tuple(sorted(bounced_times)),
        partly_refused=partly_refused,
    )


def _rate(times: list[float]) -> float | None:
    """Sends per second over the intervals between the first and the last send."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


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
    if len(report.sent_times) < 2:
        return "not measured (fewer than two letters sent)"
    return "not measured (every letter sent within the same instant)"


def _iso_time(moment: float | None) -> str | None:
    """ISO 8601 in UTC with milliseconds, or None."""
    if moment is None:
        return None
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds")


def _human_time(moment: float | None, pattern: str = "%Y-%m-%d %H:%M:%S UTC") -> str:
    return "—" if moment is None else datetime.fromtimestamp(moment, UTC).strftime(pattern)


def _refused_lines(entry: Entry) -> list[str]:
    return [f"{recipient}: {reply}" for recipient, reply in entry.refused.items()]


# Terminal


def print_summary(report: Report, console: Console) -> None:
    """The short block a `send` ends with: how the letters stand and the rate achieved."""
    problems = any(summary(report)[key] for key in ("failed", "uncertain", "deferred", "bounced"))
    console.print(terminal_text(_verdict(report), "bold " + ("yellow" if problems else "green")))
    if report.sent_times:
        span = f"{_human_time(report.first_sent)} to {_human_time(report.last_sent)}"
        console.print(terminal_text(f"Rate: {_rate_text(report)}, {span}"))


def print_table(report: Report, console: Console) -> None:
    """The full report for the terminal: counts, timing and the letters that need attention."""
    facts = Table.grid(padding=(0, 2))
    facts.add_row(Text("Campaign", "bold"), terminal_text(report.campaign))
    facts.add_row(Text("Delivery log", "bold"), terminal_text(report.log_path))
    facts.add_row(Text("First sent", "bold"), terminal_text(_human_time(report.first_sent)))
    facts.add_row(Text("Last sent", "bold"), terminal_text(_human_time(report.last_sent)))
    facts.add_row(Text("Rate", "bold"), terminal_text(_rate_text(report)))
    for part in (facts, _counts_table(report)):
        console.print(part)
        console.print()
    console.print(terminal_text(_verdict(report), "bold"))
    title, entries = _listed(report)
    if entries:
        console.print()
        console.print(_entries_table(title, entries[:LIST_LIMIT]))
    if len(entries) > LIST_LIMIT:
        console.print(
            f"… and {len(entries) - LIST_LIMIT:,} more; the CSV and JSON reports list all."
        )


def _counts_table(report: Report) -> Table:
    table = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
    table.add_column("State")
    table.add_column("Letters", justify="right")
    for key, count in summary(report).items():
        if key != "total":
            table.add_row(Text(key, TERMINAL_STYLES[State(key)]), f"{count:,}")
    table.add_row(Text("total", "bold"), Text(f"{report.total:,}", "bold"))
    return table


def _listed(report: Report) -> tuple[str, list[Entry]]:
    """The heading and the letters to list one by one: those asked for, else those with problems."""
    if report.states is not None:
        names = ", ".join(sorted(report.states)) or "none"
        return f"Letters in state {names}", report.entries
    return "Letters that need attention", [e for e in report.entries if _needs_attention(e)]


def _entries_table(title: str, entries: list[Entry]) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=True)
    table.add_column("Row", justify="right", no_wrap=True)
    table.add_column("Contact / recipients", ratio=2, overflow="fold")
    table.add_column("State", no_wrap=True)
    table.add_column("Attempts", justify="right", no_wrap=True)
    table.add_column("Code", justify="right", no_wrap=True)
    table.add_column("Server reply", ratio=3, overflow="fold")
    for entry in entries:
        recipients = "\n".join(entry.recipients)
        if entry.recipients != (entry.contact_id,):
            recipients = f"{entry.contact_id}\n{recipients}"
        reply = "\n".join(
            [entry.last_reply, *(f"refused {line}" for line in _refused_lines(entry))]
        )
        table.add_row(
            str(entry.row),
            terminal_text(recipients),
            Text(entry.state, TERMINAL_STYLES[entry.state]),
            str(entry.attempts),
            "" if entry.last_code is None else str(entry.last_code),
            terminal_text(reply.strip()),
        )
    return table


# CSV and JSON


def _safe_cell(value: object) -> str:
    text = str(value)
    return "'" + text if FORMULA_START.match(text) else text


def write_csv(report: Report, out: TextIO) -> None:
    """One row per letter, safe to open in a spreadsheet (no cell is taken as a formula)."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for entry in report.entries:
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
    # The same text json.dump(indent=2) gives for the whole document, without holding it all.
    out.write(json.dumps(head, ensure_ascii=False, indent=2).removesuffix("\n}"))
    out.write(',\n  "messages": [')
    for number, entry in enumerate(report.entries):
        message = json.dumps(_message(entry), ensure_ascii=False, indent=2)
        out.write(("," if number else "") + "\n" + textwrap.indent(message, "    "))
    out.write("\n  ]\n}\n" if report.entries else "]\n}\n")


# HTML

HTML_STYLE = """
:root { color-scheme: light; --sent: #1a7f37; --failed: #cf222e; --uncertain: #b87a00;
  --deferred: #8250df; --pending: #6e7781; --muted: #59636e; --line: #e6eaef;
  --bounced: #a40e26; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f7f9; color: #1f2328;
  font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 64rem; margin: 0 auto; padding: 2rem 1.25rem 3rem; }
.eyebrow { margin: 0; color: var(--muted); font-size: .8rem; letter-spacing: .06em;
  text-transform: uppercase; }
h1 { font-size: 1.7rem; margin: .1rem 0 .25rem; overflow-wrap: anywhere; }
h2 { font-size: 1.15rem; margin: 2.25rem 0 .75rem; }
.meta, .note, figcaption { color: var(--muted); margin: 0; }
.verdict { margin: 1.25rem 0 0; padding: .7rem 1rem; border-radius: 6px; font-weight: 600;
  background: #dafbe1; color: #116329; border: 1px solid #aceebb; }
.verdict.problems { background: #fff8c5; color: #6f4e00; border-color: #f0d88a; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(8.5rem, 1fr)); gap: .75rem;
  margin: 1.25rem 0 0; }
.card { background: #fff; border: 1px solid #d1d9e0; border-top: 4px solid var(--pending);
  border-radius: 6px; padding: .7rem .9rem; }
.card .n { display: block; font-size: 1.75rem; font-weight: 650; line-height: 1.2;
  font-variant-numeric: tabular-nums; }
.card .label { font-weight: 600; }
.card .hint { display: block; color: var(--muted); font-size: .8rem; }
.card.total { border-top-color: #1f2328; }
.card.sent { border-top-color: var(--sent); } .card.sent .n { color: var(--sent); }
.card.failed { border-top-color: var(--failed); } .card.failed .n { color: var(--failed); }
.card.uncertain { border-top-color: var(--uncertain); } .card.uncertain .n { color: var(--uncertain); }
.card.deferred { border-top-color: var(--deferred); } .card.deferred .n { color: var(--deferred); }
.card.bounced { border-top-color: var(--bounced); } .card.bounced .n { color: var(--bounced); }
.bar { display: flex; height: .6rem; margin: .75rem 0 0; border-radius: 3px; overflow: hidden;
  background: var(--line); }
.bar span { display: block; min-width: 2px; }
.timing { display: flex; flex-wrap: wrap; gap: .25rem 2rem; margin: 1rem 0 0; padding: 0;
  list-style: none; }
.timing b { font-weight: 600; }
figure { margin: 0; background: #fff; border: 1px solid #d1d9e0; border-radius: 6px;
  padding: .75rem .75rem .5rem; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: .85rem; padding: .25rem .25rem 0; }
.chart text { fill: var(--muted); font-size: 12px; }
.chart .grid { stroke: var(--line); }
.chart .axis { stroke: #afb8c1; }
.chart rect { fill: var(--sent); } .chart rect.bounced { fill: var(--bounced); }
table { width: 100%; border-collapse: collapse; background: #fff; border: 1px solid #d1d9e0; }
th, td { text-align: left; padding: .4rem .6rem; border-bottom: 1px solid var(--line);
  vertical-align: top; overflow-wrap: anywhere; }
th { background: #f0f2f5; font-weight: 600; white-space: nowrap; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.when { white-space: nowrap; color: var(--muted); }
.compact td, .compact th { padding: .2rem .5rem; font-size: .85rem; }
.recipients { display: block; color: var(--muted); font-size: .85rem; }
.reply { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .85rem; }
.refused { margin: .3rem 0 0; padding-left: 1.1rem; }
.badge { display: inline-block; white-space: nowrap; padding: 0 .45rem; border-radius: 999px;
  font-size: .8rem; font-weight: 600; color: #fff; background: var(--pending); }
.badge.sent { background: var(--sent); } .badge.failed { background: var(--failed); }
.badge.uncertain { background: var(--uncertain); } .badge.deferred { background: var(--deferred); }
.badge.bounced { background: var(--bounced); }
footer { margin-top: 2.5rem; color: var(--muted); font-size: .85rem; }
"""

# The page loads nothing and runs nothing: it must work offline and as an email attachment.
CSP = "default-src 'none'; style-src 'unsafe-inline'"
CARDS = (
    ("total", "Letters", "in the delivery log"),
    ("sent", "Sent", "accepted by the server"),
    ("failed", "Failed", "refused for good"),
    ("deferred", "Deferred", "temporary errors"),
    ("uncertain", "Uncertain", "may have arrived"),
    ("pending", "Pending", "not sent yet"),
    ("bounced", "Bounced", "returned after sending"),
)


def write_html(report: Report, out: TextIO) -> None:
    """One self-contained page: counts, a chart of sends over time, problems, the letters."""
    page_title = f"Delivery report: {report.campaign}"
    problems = any(
        summary(report)[key] for key in ("failed", "uncertain", "deferred", "pending", "bounced")
    )
    out.write(
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        f"<title>{escape(page_title)}</title>\n<style>{HTML_STYLE}</style>\n</head>\n<body>\n<main>\n"
        '<header>\n<p class="eyebrow">Delivery report</p>\n'
        f"<h1>{escape(report.campaign)}</h1>\n"
        f'<p class="meta">Generated {_human_time(report.generated_at, "%Y-%m-%d %H:%M UTC")}'
        f" from the delivery log {escape(report.log_path.name)}</p>\n</header>\n"
        f'<p class="verdict{" problems" if problems else ""}">{escape(_verdict(report))}</p>\n'
    )
    out.write(_cards(report))
    out.write(_timing(report))
    out.write("<h2>Letters sent over time</h2>\n")
    out.write(_chart_figure(report.sent_times, report.bounced_times))
    title, entries = _listed(report)
    out.write(f"<h2>{escape(title)} ({len(entries):,})</h2>\n")
    out.write(_problem_table(entries) if entries else '<p class="note">None.</p>\n')
    out.write(
        f"<h2>{'All letters' if report.states is None else 'Letters shown'}"
        f" ({len(report.entries):,})</h2>\n"
    )
    out.write(_letters_table(report.entries))
    out.write(
        "<footer>Made by mailaction from the delivery log. Times are in UTC.</footer>\n"
        "</main>\n</body>\n</html>\n"
    )


def _cards(report: Report) -> str:
    counts = summary(report)
    cards = []
    for key, label, hint in CARDS:
        share = f"{_share(counts[key], report.total)} · " if key != "total" else ""
        cards.append(
            f'<div class="card {key}"><span class="n">{counts[key]:,}</span>'
            f'<span class="label">{label}</span><span class="hint">{share}{hint}</span></div>\n'
        )
    segments = "".join(
        f'<span style="flex: {counts[key]}; background: var(--{key})" title="{key}"></span>'
        for key in SUMMARY_KEYS[1:]
        if counts[key]
    )
    return (
        f'<section class="cards">\n{"".join(cards)}</section>\n<div class="bar">{segments}</div>\n'
    )


def _share(count: int, total: int) -> str:
    """A percentage that shows a few letters among many as more than none."""
    if count == 0 or count == total:
        return f"{100 if count else 0}%"
    return f"{max(1, min(99, round(100 * count / total)))}%"


def _timing(report: Report) -> str:
    facts = (
        ("First sent", _human_time(report.first_sent)),
        ("Last sent", _human_time(report.last_sent)),
        ("Rate", _rate_text(report)),
    )
    items = "".join(f"<li><b>{name}:</b> {escape(value)}</li>" for name, value in facts)
    return f'<ul class="timing">{items}</ul>\n'


def _contact_cell(entry: Entry) -> str:
    cell = escape(entry.contact_id)
    if entry.recipients != (entry.contact_id,):
        cell += f'<span class="recipients">{escape(", ".join(entry.recipients))}</span>'
    return f"<td>{cell}</td>"


def _badge(state: State) -> str:
    return f'<span class="badge {state}">{state}</span>'


def _problem_table(entries: list[Entry]) -> str:
    rows = []
    for entry in entries[:LIST_LIMIT]:
        refused = "".join(f"<li>{escape(line)}</li>" for line in _refused_lines(entry))
        if refused:
            refused = f'<ul class="refused">{refused}</ul>'
        rows.append(
            f'<tr><td class="num">{entry.row}</td>{_contact_cell(entry)}'
            f"<td>{_badge(entry.state)}</td>"
            f'<td class="num">{entry.attempts}</td><td class="num">{entry.last_code or ""}</td>'
            f'<td class="when">{_human_time(entry.last_attempt_at, "%m-%d %H:%M:%S")}</td>'
            f'<td class="reply">{escape(entry.last_reply)}{refused}</td></tr>\n'
        )
    more = ""
    if len(entries) > LIST_LIMIT:
        more = (
            f'<p class="note">… and {len(entries) - LIST_LIMIT:,} more; '
            "the CSV and JSON reports list every letter.</p>\n"
        )
    return (
        '<table class="problems"><thead><tr><th>Row</th><th>Contact / recipients</th>'
        "<th>State</th><th>Attempts</th><th>Code</th><th>Last attempt</th><th>Server reply</th>"
        f"</tr></thead>\n<tbody>\n{''.join(rows)}</tbody></table>\n{more}"
    )


def _letters_table(entries: list[Entry]) -> str:
    if not entries:
        return '<p class="note">None.</p>\n'
    if len(entries) > LIST_LIMIT:
        return (
            f'<p class="note">{letter_count(len(entries))}: too many to list on this page; '
            "the CSV and JSON reports list every letter.</p>\n"
        )
    rows = "".join(
        f'<tr><td class="num">{entry.row}</td>{_contact_cell(entry)}'
        f"<td>{escape(entry.subject)}</td><td>{_badge(entry.state)}</td>"
        f'<td class="num">{entry.attempts}</td>'
        f'<td class="when">{_human_time(entry.sent_at, "%m-%d %H:%M:%S")}</td></tr>\n'
        for entry in entries
    )
    return (
        '<table class="compact"><thead><tr><th>Row</th><th>Contact / recipients</th>'
        "<th>Subject</th><th>State</th><th>Attempts</th><th>Sent</th></tr></thead>\n"
        f"<tbody>\n{rows}</tbody></table>\n"
    )


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

    def bin_start(self, number: int) -> float:
        """When bin `number` starts."""
        return self.start + number * self.width


def histogram(times: Collection[float]) -> Histogram:
    """Bucket send times (at least one) into at most MAX_BINS bins of a round width."""
    first, last = min(times), max(times)
    span = last - first
    fallback = math.ceil(span / (MAX_BINS - 2))
    width = next((w for w in BIN_WIDTHS if span / w <= MAX_BINS - 2), fallback)
    start = math.floor(first / width) * width
    counts = [0] * (int((last - start) // width) + 1)
    for moment in times:
        counts[int((moment - start) // width)] += 1
    return Histogram(start, width, counts)


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
    magnitude = 10 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= value)


def _chart_figure(sent: tuple[float, ...], bounced: tuple[float, ...] = ()) -> str:
    """Bars of the letters accepted over time; the part of each that bounced later in its colour."""
    times = tuple(sorted(sent + bounced)) if bounced else sent
    if not times:
        svg = _svg(
            "No letter has been sent yet.",
            f'<text x="{CHART_WIDTH / 2}" y="{CHART_HEIGHT / 2}" text-anchor="middle">'
            "No letters sent yet</text>",
        )
        return f"<figure>{svg}</figure>\n"
    bins = histogram(times)
    clock = "%H:%M:%S" if bins.width < 60 else "%H:%M"
    if len(bins.counts) * bins.width > 86400:
        clock = "%d %b %H:%M"
    description = (
        f"{letter_count(len(times))} sent from {_human_time(times[0])} to {_human_time(times[-1])}, "
        f"in {len(bins.counts)} bars of {_duration(bins.width)} each; "
        f"the busiest bar has {letter_count(max(bins.counts))}"
        + (f"; {letter_count(len(bounced))} of them bounced later." if bounced else ".")
    )
    returned = _binned(bins, bounced)
    bars = _bars(bins, clock, returned)
    svg = _svg(description, _y_axis(max(bins.counts)) + bars + _x_axis(bins, clock))
    caption = f"Each bar: letters sent in {_duration(bins.width)}."
    if bounced:
        caption += " The red part: letters that bounced later."
    caption += " Times in UTC."
    return f"<figure>{svg}<figcaption>{caption}</figcaption></figure>\n"


def _svg(description: str, body: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" role="img" '
        'aria-labelledby="chart-title chart-desc">'
        '<title id="chart-title">Letters sent over time</title>'
        f'<desc id="chart-desc">{escape(description)}</desc>{body}</svg>'
    )


def _y_scale(peak: int) -> tuple[int, int]:
    """The step between gridlines and the top of the axis, for a tallest bar of `peak`."""
    step = _nice_step(peak / 4)
    return step, math.ceil(peak / step) * step


def _y(value: float, top: int) -> float:
    return PLOT_BOTTOM - value / top * (PLOT_BOTTOM - PLOT_TOP)


def _y_axis(peak: int) -> str:
    step, top = _y_scale(peak)
    lines = []
    for value in range(0, top + 1, step):
        y = round(_y(value, top), 1)
        lines.append(
            f'<line class="grid" x1="{PLOT_LEFT}" x2="{PLOT_RIGHT}" y1="{y}" y2="{y}"/>'
            f'<text x="{PLOT_LEFT - 8}" y="{y + 4}" text-anchor="end">{value:,}</text>'
        )
    return "".join(lines)


def _binned(bins: Histogram, times: Collection[float]) -> list[int]:
    """How many of ``times`` fall in each of the histogram's bins."""
    counts = [0] * len(bins.counts)
    for moment in times:
        counts[int((moment - bins.start) // bins.width)] += 1
    return counts


def _bars(bins: Histogram, clock: str, bounced: list[int]) -> str:
    _, top = _y_scale(max(bins.counts))
    slot = (PLOT_RIGHT - PLOT_LEFT) / len(bins.counts)
    gap = min(2.0, slot / 4)
    bars = []
    for number, count in enumerate(bins.counts):
        if not count:
            continue
        y = _y(count, top)
        start, end = bins.bin_start(number), bins.bin_start(number + 1)
        label = f"{_human_time(start, clock)}–{_human_time(end, clock)}: {letter_count(count)}"
        x = f"{PLOT_LEFT + number * slot + gap / 2:.1f}"
        bars.append(
            f'<rect x="{x}" y="{y:.1f}" '
            f'width="{slot - gap:.1f}" height="{PLOT_BOTTOM - y:.1f}"><title>{label}</title></rect>'
        )
        if bounced[number]:
            low = _y(bounced[number], top)
            bars.append(
                f'<rect class="bounced" x="{x}" y="{low:.1f}" width="{slot - gap:.1f}" '
                f'height="{PLOT_BOTTOM - low:.1f}"><title>{label}, {bounced[number]:,} bounced'
                "</title></rect>"
            )
    return "".join(bars)


def _x_axis(bins: Histogram, clock: str) -> str:
    """The time axis, labelled at round times a few bars apart."""
    count = len(bins.counts)
    slot = (PLOT_RIGHT - PLOT_LEFT) / count
    fewest = bins.width * math.ceil((count + 1) / MAX_X_LABELS)
    step = next((w for w in BIN_WIDTHS if w % bins.width == 0 and w >= fewest), fewest)
    baseline = f'x1="{PLOT_LEFT}" x2="{PLOT_RIGHT}" y1="{PLOT_BOTTOM}" y2="{PLOT_BOTTOM}"'
    parts = [f'<line class="axis" {baseline}/>']
    for number in range(count + 1):
        if bins.bin_start(number) % step:
            continue
        x = round(PLOT_LEFT + number * slot, 1)
        anchor = "start" if number == 0 else "end" if number == count else "middle"
        parts.append(
            f'<line class="axis" x1="{x}" x2="{x}" y1="{PLOT_BOTTOM}" y2="{PLOT_BOTTOM + 4}"/>'
            f'<text x="{x}" y="{PLOT_BOTTOM + 18}" text-anchor="{anchor}">'
            f"{_human_time(bins.bin_start(number), clock)}</text>"
        )
    return "".join(parts)
