"""Spreadsheet number formats: a cell's number shown as the sheet shows it ("00000" → 02134).

Covers the codes of Excel's "Format Cells" dialog and of LibreOffice's .xls/.xlsx export:
sections and conditions, zero padding, thousands separators and scaling, percentages,
scientific notation, fractions, literal text, currency brackets, dates and times (English
month and day names; elapsed [h]:mm). Colours, fill characters and locale tags change nothing
in text and are dropped.
"""

from __future__ import annotations

import datetime
import math
import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction
from functools import lru_cache

# Excel's built-in formats, by number: workbooks store only the number. 14 and 22 follow the
# reader's regional settings in Excel; they are written here as ISO dates, unambiguous anywhere.
BUILTIN_FORMATS = {
    0: "General", 1: "0", 2: "0.00", 3: "#,##0", 4: "#,##0.00",
    5: '"$"#,##0_);("$"#,##0)', 6: '"$"#,##0_);[Red]("$"#,##0)',
    7: '"$"#,##0.00_);("$"#,##0.00)', 8: '"$"#,##0.00_);[Red]("$"#,##0.00)',
    9: "0%", 10: "0.00%", 11: "0.00E+00", 12: "# ?/?", 13: "# ??/??",
    14: "yyyy-mm-dd", 15: "d-mmm-yy", 16: "d-mmm", 17: "mmm-yy", 18: "h:mm AM/PM",
    19: "h:mm:ss AM/PM", 20: "h:mm", 21: "h:mm:ss", 22: "yyyy-mm-dd h:mm",
    37: "#,##0 ;(#,##0)", 38: "#,##0 ;[Red](#,##0)", 39: "#,##0.00;(#,##0.00)",
    40: "#,##0.00;[Red](#,##0.00)", 45: "mm:ss", 46: "[h]:mm:ss", 47: "mm:ss.0",
    48: "##0.0E+0", 49: "@",
}  # fmt: skip

_MONTHS = [
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
]  # fmt: skip
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_TOKEN = re.compile(
    r'"(?P<quoted>[^"]*)"?|\\(?P<escaped>.)|_(?P<space>.)|\*(?P<fill>.)|\[(?P<bracket>[^\]]*)\]'
    r"|(?P<general>General)|(?P<exponent>E[-+])|(?P<ampm>AM/PM|A/P)"
    r"|(?P<date>y+|m+|d+|h+|s+|e+)(?P<subsecond>\.0+)?"
    r"|(?P<char>.)",
    re.IGNORECASE | re.DOTALL,
)
_CONDITION = re.compile(r"(<=|>=|<>|<|>|=)\s*(-?[\d.]+(?:[eE][-+]?\d+)?)")
_DIGITS = "0#?"


@dataclass(frozen=True)
class _Section:
    """One ;-separated part of a format: its condition and its tokens (kind, text)."""

    condition: tuple[str, float] | None
    tokens: tuple[tuple[str, str], ...]
    is_date: bool
    is_text: bool  # holds "@": the section for text cells


@lru_cache(maxsize=8192)  # a list repeats its dates, shares and amounts
def format_number(value: float, code: str, date1904: bool = False) -> str:
    """``value`` shown in number format ``code``; General shows up to 15 significant digits."""
    numeric = _numeric_sections(code)
    if not numeric or not math.isfinite(value):  # no spreadsheet saves inf or nan; a broken file
        return general(value)
    section, minus = _choose(numeric, value)
    if any(kind == "general" for kind, _ in section.tokens):
        return general(value if minus else abs(value))
    try:
        if section.is_date:
            return _format_date(value, section, date1904)
    except (OverflowError, ValueError):  # beyond the years 1 to 9999: no date to show
        return general(value)
    return _format_plain(value if minus else abs(value), section)


def general(value: float) -> str:
    """A number in the General format: 1234 not 1234.0, 0.3 not 0.30000000000000004."""
    if abs(value) < 1e15 and value == int(value):
        return str(int(value))
    return f"{value:.15g}"


@lru_cache(maxsize=256)
def _numeric_sections(code: str) -> tuple[_Section, ...]:
    """The sections of ``code`` that show numbers; none for General."""
    if code.lower() in ("general", ""):
        return ()
    return tuple(section for section in _parse(code) if not section.is_text)


@lru_cache(maxsize=256)
def _parse(code: str) -> tuple[_Section, ...]:
    sections: list[_Section] = []
    tokens: list[tuple[str, str]] = []
    condition: tuple[str, float] | None = None
    for match in _TOKEN.finditer(code):
        kind = match.lastgroup
        text = match.group(kind or "char")
        if kind == "char" and text == ";":
            sections.append(_section(condition, tokens))
            tokens, condition = [], None
        elif kind == "bracket":
            condition = _bracket(text, tokens) or condition
        elif kind == "date":
            tokens.append(("date", text))
            if match.group("subsecond"):
                tokens.append(("subsecond", match.group("subsecond")))
        elif kind in ("quoted", "escaped"):
            tokens.append(("literal", text))
        elif kind == "space":
            tokens.append(("literal", " "))
        elif kind == "ampm":
            tokens.append(("ampm", text))
        elif kind == "exponent":
            tokens.extend([("char", text[0]), ("char", text[1])])
        elif kind == "general":
            tokens.append(("general", text))
        elif kind == "char":
            tokens.append(("@" if text == "@" else "char", text))
    sections.append(_section(condition, tokens))
    return tuple(sections)


def _bracket(text: str, tokens: list[tuple[str, str]]) -> tuple[str, float] | None:
    """Adds what a [...] shows to ``tokens``; returns its condition, if it is one."""
    condition = _CONDITION.fullmatch(text.strip())
    if condition:
        return condition.group(1), float(condition.group(2))
    if text.startswith("$"):  # [$€-407]: a currency symbol, then a locale
        symbol = text[1:].split("-", 1)[0]
        if symbol:
            tokens.append(("literal", symbol))
    elif re.fullmatch(r"h+|m+|s+", text, re.IGNORECASE):
        tokens.append(("elapsed", text.lower()))
    return None  # a colour or a locale: nothing to show


def _section(condition: tuple[str, float] | None, tokens: list[tuple[str, str]]) -> _Section:
    kinds = {kind for kind, _ in tokens}
    is_date = bool(kinds & {"date", "elapsed", "ampm"})
    return _Section(condition, tuple(tokens), is_date, "@" in kinds)


def _choose(sections: tuple[_Section, ...], value: float) -> tuple[_Section, bool]:
    """The section that shows ``value``, and whether it shows the minus sign itself."""
    if any(section.condition for section in sections):
        for section in sections:
            if section.condition is None or _holds(section.condition, value):
                return section, section.condition is None and value < 0
        return sections[-1], value < 0
    if len(sections) == 1 or value > 0 or (value == 0 and len(sections) < 3):
        return sections[0], value < 0 and len(sections) == 1
    if value < 0:
        return sections[1], False
    return sections[2], False


def _holds(condition: tuple[str, float], value: float) -> bool:
    operator, bound = condition
    return {
        "<": value < bound, "<=": value <= bound, ">": value > bound, ">=": value >= bound,
        "=": value == bound, "<>": value != bound,
    }[operator]  # fmt: skip


@dataclass(frozen=True)
class _Layout:
    """Where a number section puts its digits: worked out once per section."""

    chars: list[tuple[str, str]]  # the tokens that show something
    pattern: str  # one character per token: the character itself, or NUL for literal text
    kind: str  # "text" (no digit placeholder), "fraction", "scientific" or "decimal"
    percent: int  # how many % signs: each multiplies by 100
    scaling: int  # commas right after the last digit placeholder: each divides by 1,000
    point: int  # where the decimal point is, -1 without one
    decimals: int
    end: int  # just after the last placeholder and its scaling commas


@lru_cache(maxsize=256)
def _layout(section: _Section) -> _Layout:
    chars = [(kind, text) for kind, text in section.tokens if kind != "@"]
    pattern = "".join(text if kind == "char" else "\0" for kind, text in chars)
    percent = pattern.count("%")
    if not any(c in pattern for c in _DIGITS):
        return _Layout(chars, pattern, "text", percent, 0, -1, 0, 0)
    if "/" in pattern and re.search(r"[0#?]\s*/\s*[0-9#?]", pattern):
        return _Layout(chars, pattern, "fraction", percent, 0, -1, 0, 0)
    exponent = re.search(r"[eE][-+]", pattern)
    if exponent:
        return _Layout(chars, pattern, "scientific", percent, 0, exponent.start(), 0, 0)
    last_digit = max(pattern.rfind(c) for c in _DIGITS)
    after = pattern[last_digit + 1 :]
    scaling = len(after) - len(after.lstrip(","))
    point = pattern.find(".", 0, last_digit + 1)
    decimals = sum(pattern.count(c, point) for c in _DIGITS) if point >= 0 else 0
    return _Layout(
        chars, pattern, "decimal", percent, scaling, point, decimals, last_digit + 1 + scaling
    )


def _format_plain(value: float, section: _Section) -> str:
    """A number through a section of digit placeholders and literal text."""
    layout = _layout(section)
    if layout.kind == "text":
        return "".join(text for _, text in layout.chars)
    if layout.kind == "fraction":
        return _format_fraction(value, layout.chars)
    number = Decimal(repr(float(value))) * (100**layout.percent)
    if layout.kind == "scientific":
        return _format_scientific(number, layout.chars, layout.point)
    number /= Decimal(1000) ** layout.scaling
    rounded = abs(number).quantize(Decimal(1).scaleb(-layout.decimals), rounding=ROUND_HALF_UP)
    whole, _, fraction = f"{rounded:f}".partition(".")
    sign = "-" if number < 0 and rounded != 0 else ""
    return sign + _place_digits(layout, whole, fraction)


def _place_digits(layout: _Layout, whole: str, fraction: str) -> str:
    """Fills the placeholders: the integer digits right to left, the decimals left to right."""
    chars, pattern, point, end = layout.chars, layout.pattern, layout.point, layout.end
    split = point if point >= 0 else end
    head = [i for i in range(split) if pattern[i] in _DIGITS]
    grouping = bool(head) and "," in pattern[head[0] : split]
    digits = "" if whole == "0" else whole
    if grouping and digits:
        digits = f"{int(digits):,}"
    out = [text for _, text in chars]
    for index in range(head[0] if head else 0, end):
        if pattern[index] == ",":  # a thousands separator or a scaling comma: not shown
            out[index] = ""
    for index in reversed(head):
        if digits:
            take = 2 if digits[-1] == "," else 1  # "1,234": the comma goes out with its digit
            out[index], digits = digits[-take:], digits[:-take]
        else:
            out[index] = {"0": "0", "?": " ", "#": ""}[pattern[index]]
    if head:
        out[head[0]] = digits + out[head[0]]
    tail = [i for i in range(split + 1, end) if pattern[i] in _DIGITS] if point >= 0 else []
    fraction = fraction.ljust(len(tail), "0")
    significant = len(fraction.rstrip("0"))
    for position, index in enumerate(tail):
        if position < significant or pattern[index] == "0":
            out[index] = fraction[position]
        else:
            out[index] = " " if pattern[index] == "?" else ""
    return "".join(out)


def _format_scientific(number: Decimal, chars: list[tuple[str, str]], at: int) -> str:
    pattern = "".join(text if kind == "char" else "\0" for kind, text in chars)
    mantissa_part, exponent_part = pattern[:at], pattern[at + 2 :]
    decimals = mantissa_part.partition(".")[2].count("0") + mantissa_part.partition(".")[2].count(
        "#"
    )
    whole_digits = max(sum(mantissa_part.partition(".")[0].count(c) for c in _DIGITS), 1)
    if number == 0:
        power = 0
    else:
        power = number.copy_abs().adjusted()
        power -= power % whole_digits if whole_digits > 1 else 0
    mantissa = (number / Decimal(10) ** power).quantize(Decimal(1).scaleb(-decimals), ROUND_HALF_UP)
    sign = "-" if power < 0 else ("+" if pattern[at + 1] == "+" else "")
    width = sum(exponent_part.count(c) for c in _DIGITS)
    return f"{mantissa:f}{pattern[at]}{sign}{abs(power):0{width}d}"


def _format_fraction(value: float, chars: list[tuple[str, str]]) -> str:
    """A number as a fraction: "# ?/?" shows 1.5 as 1 1/2, "?/8" as eighths."""
    pattern = "".join(text for _, text in chars)
    match = re.search(r"([#0?]+)?(\s*)[#0?]+\s*/\s*([#0?]+|\d+)", pattern)
    assert match is not None  # _format_plain checked the pattern holds a fraction
    whole_part, gap, bottom = match.groups()
    whole = int(abs(value)) if whole_part else 0
    rest = abs(value) - whole
    if bottom.isdigit():
        numerator, denominator = round(rest * int(bottom)), int(bottom)
    else:
        fraction = Fraction(rest).limit_denominator(10 ** len(bottom) - 1)
        numerator, denominator = fraction.numerator, fraction.denominator
    if numerator == denominator:
        whole, numerator = whole + 1, 0
    sign = "-" if value < 0 else ""
    if numerator == 0:
        shown = str(whole)
    elif whole:
        shown = f"{whole}{gap}{numerator}/{denominator}"
    else:
        shown = f"{numerator}/{denominator}"
    return pattern[: match.start()] + sign + shown + pattern[match.end() :]


def _format_date(value: float, section: _Section, date1904: bool) -> str:
    """A serial day number through a date or time section."""
    tokens = section.tokens
    places = max((len(text) - 1 for kind, text in tokens if kind == "subsecond"), default=0)
    seconds = round(value * 86400, places)
    moment = _from_serial(seconds, date1904)
    twelve_hour = any(kind == "ampm" for kind, _ in tokens)
    minutes = _minute_tokens(tokens)
    out: list[str] = []
    for index, (kind, text) in enumerate(tokens):
        if kind == "date":
            out.append(_date_part(text.lower(), moment, index in minutes, twelve_hour))
        elif kind == "subsecond":
            fraction = f"{seconds % 1:.{places}f}"[1:]
            out.append(fraction)
        elif kind == "elapsed":
            unit = {"h": 3600, "m": 60, "s": 1}[text[0]]
            out.append(str(int(seconds // unit)).zfill(len(text)))
        elif kind == "ampm":
            out.append(_ampm(text, moment.hour))
        elif kind in ("literal", "char"):
            out.append(text)
    return "".join(out)


def _minute_tokens(tokens: tuple[tuple[str, str], ...]) -> set[int]:
    """Indexes of "m"/"mm" tokens that mean minutes: after an hour, or before a second."""
    units = [
        (i, text.lower()[0]) for i, (kind, text) in enumerate(tokens) if kind in ("date", "elapsed")
    ]
    minutes = set()
    for position, (index, unit) in enumerate(units):
        if unit != "m" or len(tokens[index][1]) > 2:
            continue
        before = units[position - 1][1] if position else ""
        after = units[position + 1][1] if position + 1 < len(units) else ""
        if before == "h" or after == "s":
            minutes.add(index)
    return minutes


def _from_serial(seconds: float, date1904: bool) -> datetime.datetime:
    days = seconds / 86400
    if date1904:
        epoch = datetime.datetime(1904, 1, 1)
    elif days < 60:  # Excel counts a 29 February 1900 that never was
        epoch = datetime.datetime(1899, 12, 31)
    else:
        epoch = datetime.datetime(1899, 12, 30)
    return epoch + datetime.timedelta(seconds=int(seconds // 1))


def _date_part(token: str, moment: datetime.datetime, minute: bool, twelve_hour: bool) -> str:
    unit, width = token[0], len(token)
    if unit in "ye":
        return str(moment.year) if width > 2 or unit == "e" else f"{moment.year % 100:02d}"
    if unit == "m" and minute:
        return f"{moment.minute:0{width}d}"
    if unit == "m":
        name = _MONTHS[moment.month - 1]
        return {1: str(moment.month), 2: f"{moment.month:02d}", 3: name[:3], 5: name[0]}.get(
            width, name
        )
    if unit == "d":
        name = _DAYS[moment.weekday()]
        return {1: str(moment.day), 2: f"{moment.day:02d}", 3: name[:3]}.get(width, name)
    if unit == "h":
        hour = (moment.hour % 12 or 12) if twelve_hour else moment.hour
        return f"{hour:0{min(width, 2)}d}"
    if unit == "s":
        return f"{moment.second:0{min(width, 2)}d}"
    return token  # "b" (Buddhist year) and others: shown as written


def _ampm(text: str, hour: int) -> str:
    morning = hour < 12
    if len(text) == 3:  # A/P
        letter = text[0] if morning else text[2]
        return letter
    word = "AM" if morning else "PM"
    return word if text[0].isupper() else word.lower()
