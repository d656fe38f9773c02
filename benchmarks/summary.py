"""Figures, targets and the results files: medians of repetitions, PASS/FAIL, Markdown and JSON."""

from __future__ import annotations

import json
import math
import operator
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_COMPARE = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}
_SHOWN = {">=": "≥", "<=": "≤", "<": "<", ">": ">"}


@dataclass(frozen=True)
class Target:
    """A bound a figure's median must meet, e.g. ``Target(">=", 3000)``.

    With ``every``, each repetition must meet it: for a limit that may never be passed.
    """

    op: str
    bound: float
    every: bool = False

    def met(self, value: float) -> bool:
        return _COMPARE[self.op](value, self.bound)

    def shown(self, unit: str) -> str:
        every = " in every rep" if self.every else ""
        return f"{_SHOWN[self.op]} {format_value(self.bound, unit)}{every}"


@dataclass
class Figure:
    """One measured quantity: its value in each repetition, and the target it answers to."""

    section: str
    name: str
    unit: str
    values: list[float] = field(default_factory=list)
    target: Target | None = None
    note: str = ""
    derived: bool = False  # a ratio of other figures' medians, not measured itself
    error: str = ""

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def verdict(self) -> str:
        """PASS or FAIL against the target; "" without a target, "ERROR" without a value."""
        if self.error:
            return "ERROR"
        if self.target is None or self.median is None:
            return ""
        judged = self.values if self.target.every else [self.median]
        return "PASS" if all(map(self.target.met, judged)) else "FAIL"

    def as_json(self) -> dict[str, Any]:
        target = self.target
        return {
            "section": self.section, "name": self.name, "unit": self.unit,
            "median": self.median, "min": min(self.values, default=None),
            "max": max(self.values, default=None), "values": self.values,
            "repetitions": len(self.values), "derived": self.derived,
            "target": f"{target.op} {target.bound:g}" + (" every" if target.every else "")
            if target else None,
            "verdict": self.verdict or None, "note": self.note or None, "error": self.error or None,
        }  # fmt: skip


def ratio(section: str, name: str, top: Figure, bottom: Figure, target: Target | None) -> Figure:
    """``top``'s median divided by ``bottom``'s, as a derived figure."""
    figure = Figure(section, name, "×", target=target, derived=True)
    if top.median and bottom.median:
        figure.values.append(top.median / bottom.median)
    else:
        figure.error = "a figure it is made of is missing"
    return figure


def achieved_rate(times: Sequence[float]) -> float:
    """Messages per second between the first and the last arrival: (count - 1) / span."""
    if len(times) < 2 or times[-1] <= times[0]:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def max_in_window(times: Sequence[float], width: float = 1.0) -> int:
    """The most arrivals in any half-open window [t, t + width) of sorted ``times``.

    A window holding the most arrivals can always be slid right until it starts at one of
    them, so windows starting at each arrival are enough.
    """
    best, end = 0, 0
    for start, first in enumerate(times):
        end = max(end, start)
        while end < len(times) and times[end] < first + width:
            end += 1
        best = max(best, end - start)
    return best


def format_value(value: float | None, unit: str) -> str:
    """A value the way the tables show it, unit included."""
    if value is None:
        return "–"
    if unit == "×":
        return f"{value:.2f}×"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MiB":
        return f"{value:.0f} MiB"
    return f"{value:,.0f} {unit}"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    try:
        found = re.search(
            r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.MULTILINE
        )
        model = found.group(1).strip() if found else ""
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "host": socket.gethostname() or "machine",
        "cpu_count": os.cpu_count(),
        "cpu_model": model or platform.processor() or "unknown",
        "python": platform.python_version(),
        "os": _os_name(),
        "kernel": platform.release(),
        "commit": _commit(),
    }


def cpu_reference() -> float:
    """Milliseconds for a fixed pure-Python workload, best of 3: how fast this machine is now.

    Shared machines of one class differ from day to day; figures from two runs compare only as
    far as their references agree.
    """
    best = math.inf
    for _ in range(3):
        began = time.perf_counter()
        sum(i * i for i in range(2_000_000))
        best = min(best, time.perf_counter() - began)
    return best * 1000


def _os_name() -> str:
    try:
        found = re.search(
            r'^PRETTY_NAME="?([^"\n]+)', Path("/etc/os-release").read_text(), re.MULTILINE
        )
    except OSError:
        found = None
    return found.group(1) if found else platform.system()


def _commit() -> str:
    try:
        result = subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
            timeout=10, check=False, cwd=Path(__file__).resolve().parent,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return result.stdout.strip()


def markdown(figures: list[Figure], info: dict[str, Any], *, quick: bool, level: int = 1) -> str:
    """The results as Markdown: a title at ``level``, the machine, then one table per section."""
    lines = [
        "#" * level
        + f" mailaction benchmarks, {info['date'][:10]}"
        + (" (quick run)" if quick else ""),
        "",
        (
            f"- Machine: {info['cpu_count']} × {info['cpu_model']}, {info['os']}"
            f" (Linux {info['kernel']}), host `{info['host']}`"
        ),
        f"- Python {info['python']}; mailaction at `{info['commit'] or 'unknown'}`",
        (
            "- Load average (1 min) at the start and the end: "
            + " and ".join(f"{load:.2f}" for load in info.get("load", ()))
            + "; other work on the machine slows every figure"
        ),
        (
            "- CPU reference (a fixed pure-Python loop; lower is faster) at the start and the end: "
            + " and ".join(f"{ms:.0f} ms" for ms in info.get("cpu_reference", ()))
        ),
        (
            "- Each figure is the median of its repetitions (min and max beside it); ratios are "
            "of medians measured in the same run."
        ),
    ]
    if quick:
        lines.append(
            "- Quick run: small sizes and one repetition; a smoke test, not a measure, so no"
            " figure is judged against its target (start-up time dominates at these sizes)."
        )
    for section in dict.fromkeys(f.section for f in figures):
        lines += ["", "#" * (level + 1) + f" {section}", "", _TABLE_HEAD]
        lines += [_row(f) for f in figures if f.section == section]
    notes = [f"- {f.name}: {f.note}" for f in figures if f.note]
    errors = [f"- {f.section} / {f.name}: {f.error.splitlines()[0]}" for f in figures if f.error]
    if notes:
        lines += ["", "Notes:", "", *notes]
    if errors:
        lines += ["", "Errors:", "", *errors]
    return "\n".join(lines) + "\n"


_TABLE_HEAD = "| what | median | min | max | reps | target | |\n|---|---:|---:|---:|---:|---|---|"


def _row(figure: Figure) -> str:
    unit = figure.unit
    low, high = (
        (None, None)
        if figure.derived
        else (min(figure.values, default=None), max(figure.values, default=None))
    )
    shown = figure.target.shown(unit) if figure.target else ""
    cells = [
        figure.name, format_value(figure.median, unit), format_value(low, unit),
        format_value(high, unit), "–" if figure.derived else str(len(figure.values)), shown,
        figure.verdict,
    ]  # fmt: skip
    return "| " + " | ".join(cells) + " |"


def write_results(
    figures: list[Figure],
    info: dict[str, Any],
    directory: Path,
    *,
    quick: bool,
    only: Sequence[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``<date>-<host>[-<only>...][-quick].md`` and ``.json`` into ``directory`` (a run of
    some sections does not overwrite the day's full run); their paths."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", info["host"]).strip("-") or "machine"
    sections = "".join(f"-{name}" for name in dict.fromkeys(only or ()))
    stem = f"{info['date'][:10]}-{host}{sections}" + ("-quick" if quick else "")
    directory.mkdir(parents=True, exist_ok=True)
    md, js = directory / f"{stem}.md", directory / f"{stem}.json"
    md.write_text(markdown(figures, info, quick=quick), encoding="utf-8")
    document = {"machine": info, "quick": quick, "figures": [f.as_json() for f in figures]}
    js.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return md, js


def update_document(path: Path, results: str) -> None:
    """Put ``results`` between the results markers of a Markdown document."""
    text = path.read_text(encoding="utf-8")
    start, end = _MARKERS.search(text).span(2)  # type: ignore[union-attr]
    path.write_text(text[:start] + "\n" + results + text[end:], encoding="utf-8")


_MARKERS = re.compile(r"(<!-- results:start[^>]*-->)(.*?)(?=<!-- results:end -->)", re.DOTALL)


def print_table(figures: list[Figure], out: Any = sys.stdout) -> None:
    """The figures as aligned text under their section, for the terminal."""
    for section in dict.fromkeys(f.section for f in figures):
        print(section, file=out)
        for figure in (f for f in figures if f.section == section):
            shown = figure.target.shown(figure.unit) if figure.target else ""
            value = format_value(figure.median, figure.unit)
            print(f"  {figure.name[:52]:<52} {value:>16}  {shown:<26} {figure.verdict}", file=out)
